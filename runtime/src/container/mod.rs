//! Containers: the spec, the root file system and the process setup.

pub mod caps;
pub mod changes;
pub mod copyfs;
pub mod inroot;
pub mod logs;
pub mod mounts;
pub mod quota;
pub mod record;
pub mod rootfs;
pub mod spawn;
pub mod spec;
pub mod user;
