//! berth's runtime library: the image store now; rootfs, process setup and cgroups follow.
//! Synchronous and small: no async, no threads.

pub mod build;
pub mod cgroup;
pub mod compress;
pub mod container;
pub mod decimal;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod gzip;
pub mod image;
pub mod kernel;
pub mod lock;
pub mod net;
pub mod paths;
pub mod random;
pub mod reserve;
pub mod seccomp;
pub mod selfexe;
pub mod shared;
pub mod tarstream;
pub mod timefmt;
pub mod userns;
pub mod volume;

pub use error::{Error, IoContext, Kind, Result};
