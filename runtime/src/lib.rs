//! berth's runtime library: the image store now; rootfs, process setup and cgroups follow.
//! Synchronous and small: no async, no threads.

pub mod compress;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod lock;
pub mod tarstream;
pub mod timefmt;

pub use error::{Error, Kind, Result};
