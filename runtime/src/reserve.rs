//! The agent's disk reserve: `<root>/reserve`, a file of preallocated blocks on the root's file
//! system. An application that fills the disk (its writable layer, a volume, a bind mount on the
//! same file system) would otherwise leave no room for berth's own records: the update journal,
//! container records, the image database. When such a write fails with ENOSPC, a slice of the
//! reserve is punched out and the write retried; the reserve is regrown once space is back.
//!
//! Why a file and not the file system's root-reserved blocks: ext4 keeps those from containers
//! without CAP_SYS_RESOURCE, but not from privileged ones, and tmpfs, xfs and images made with
//! `mkfs.ext4 -m 0` have none; the agent's own image loads would eat them too. The file's length
//! is the configured size; its allocated blocks are what is held, so `berth info` reads both.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, IoContext, Kind, Result};

/// What one ENOSPC gives back: enough for any record berth writes, small enough that a
/// container racing for the space does not get the whole reserve at once.
pub const SLICE: u64 = 1 << 20;

/// The reserve file of this process's root (set by the agent at start; unset elsewhere, where
/// writes fail as they would).
static RESERVE: Mutex<Option<PathBuf>> = Mutex::new(None);

pub fn path(root: &Path) -> PathBuf {
    root.join("reserve")
}

/// Makes `<root>/reserve` `size` bytes long (0 removes it; rounded up to whole slices) and holds
/// what fits now; this
/// process's ENOSPC retries then draw on it.
pub fn install(root: &Path, size: u64) -> Result<()> {
    let p = path(root);
    if size == 0 {
        let _ = std::fs::remove_file(&p);
        *RESERVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        return Ok(());
    }
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(&p).ctx_path("create", &p)?;
    f.set_len(size.div_ceil(SLICE) * SLICE).ctx_path("size", &p)?;
    *RESERVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    refill(root);
    Ok(())
}

/// Lets this process's writes draw on the reserve an agent made under `root` (the CLI's own
/// writes: `rmi` rewriting the image database on a full disk); the agent regrows it.
pub fn attach(root: &Path) {
    *RESERVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(path(root));
}

/// (held, size) of the reserve under `root`, if there is one.
pub fn status(root: &Path) -> Option<(u64, u64)> {
    let f = File::open(path(root)).ok()?;
    let size = f.metadata().ok()?.len();
    Some((held(&f, size), size))
}

/// Bytes allocated from the start of the file (releases punch from the end), in whole slices:
/// the blocks count may include a little metadata. (SEEK_HOLE cannot tell: ext4 reports
/// preallocated, never written blocks as a hole.)
fn held(f: &File, size: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let blocks = f.metadata().map_or(0, |m| m.blocks() * 512);
    blocks.min(size) / SLICE * SLICE
}

fn fallocate(f: &File, mode: i32, off: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: fallocate on a descriptor `f` keeps open; it changes only that file's blocks.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives back one slice of the reserve; false when nothing is left to give.
pub fn release_slice() -> bool {
    let Some(p) = RESERVE.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return false };
    let Ok(f) = OpenOptions::new().write(true).open(&p) else { return false };
    let size = f.metadata().map_or(0, |m| m.len());
    let have = held(&f, size);
    if have == 0 {
        return false;
    }
    let from = have.saturating_sub(SLICE);
    let punched = fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, from, have - from);
    if punched.is_err() {
        // A file system without hole punching: give it all back (length 0 means "released").
        let _ = f.set_len(0);
        let _ = f.set_len(size);
    }
    true
}

/// Regrows the reserve when the file system has room for it and as much again to spare, so a
/// disk that is still nearly full is not made full by berth itself. True when it is whole.
pub fn refill(root: &Path) -> bool {
    let p = path(root);
    let Ok(f) = OpenOptions::new().write(true).open(&p) else { return false };
    let size = f.metadata().map_or(0, |m| m.len());
    let missing = size - held(&f, size);
    if missing == 0 {
        return true;
    }
    let free = crate::fsutil::free_bytes(root).unwrap_or(0);
    if free < missing + size {
        return false;
    }
    fallocate(&f, 0, 0, size).is_ok()
}

/// Runs `op`, and again after each slice of the reserve given back while it fails for lack of
/// space: berth's own records get written on a disk an application has filled.
pub fn retry<T>(mut op: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == Kind::NoSpace && release_slice() => continue,
            other => return other,
        }
    }
}

/// A size for the reserve: `16m`, `0` (none) or a percentage of the root's file system (`2%`).
pub fn parse_size(v: &str, root: &Path) -> Result<u64> {
    let bad = || Error::invalid(format!("invalid disk reserve {v:?}: a size (16m) or a percentage of the disk (2%)"));
    if let Some(pct) = v.strip_suffix('%') {
        let pct = crate::decimal::parse_f64(pct.trim()).filter(|p| (0.0..=50.0).contains(p)).ok_or_else(bad)?;
        return Ok((total_bytes(root)? as f64 * pct / 100.0) as u64);
    }
    crate::cgroup::parse_size(v).ok().and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)
}

/// Size of the file system holding `path`.
pub fn total_bytes(path: &Path) -> Result<u64> {
    let c = crate::fsutil::cstring(path)?;
    // SAFETY: statvfs is a plain C struct: all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes only into `st`, which we own; `c` is NUL-terminated.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io_at("statvfs", path, std::io::Error::last_os_error()));
    }
    Ok(st.f_blocks as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_releases_by_slices_and_regrows() {
        let root = std::env::temp_dir().join(format!("berth-reserve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        install(&root, 3 * SLICE).unwrap();
        assert_eq!(status(&root), Some((3 * SLICE, 3 * SLICE)));
        assert!(release_slice());
        assert_eq!(status(&root), Some((2 * SLICE, 3 * SLICE)));
        let mut n = 0;
        let r: Result<()> = retry(|| {
            n += 1;
            Err(Error::new(Kind::NoSpace, "full"))
        });
        assert!(r.is_err() && n == 3, "two slices left, then the error: {n} tries");
        assert_eq!(status(&root), Some((0, 3 * SLICE)));
        assert!(!release_slice());
        assert!(refill(&root));
        assert_eq!(status(&root), Some((3 * SLICE, 3 * SLICE)));
        assert_eq!(parse_size("16m", &root).unwrap(), 16 << 20);
        assert!(parse_size("1%", &root).unwrap() > 0);
        assert!(parse_size("x", &root).is_err() && parse_size("80%", &root).is_err());
        install(&root, 0).unwrap();
        assert_eq!(status(&root), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
