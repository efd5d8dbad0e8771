//! The image store: content-addressed blobs, a shared layer store, and the image records.

pub mod archive;
pub mod commit;
pub mod db;
pub mod delta;
pub mod export;
pub mod history;
pub mod import;
pub mod layer;
pub mod platform;
pub mod reference;
pub mod save;
pub mod store;
pub mod tarwrite;
