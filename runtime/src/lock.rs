//! The store lock: one `flock` on `<root>/lock`. Writers (load, rmi, tag, prune) hold it
//! exclusively; long readers (save, export) hold it shared so nothing they read is deleted
//! under them. Listing needs no lock: records are replaced atomically.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn exclusive(root: &Path) -> Result<StoreLock> {
        Self::take(root, libc::LOCK_EX)
    }
    pub fn shared(root: &Path) -> Result<StoreLock> {
        Self::take(root, libc::LOCK_SH)
    }
    fn take(root: &Path, op: libc::c_int) -> Result<StoreLock> {
        let path = root.join("lock");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).ctx_path("open lock file", &path)?;
        loop {
            // SAFETY: flock on a descriptor we own; the lock is released when `file` is closed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(StoreLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io_at("lock", &path, e));
            }
        }
    }
}
