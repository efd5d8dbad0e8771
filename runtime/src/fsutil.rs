//! File-system helpers for crash-safe writes: temp file, fsync, rename, fsync the directory.
//! A write that finds the disk full draws on the agent's reserve and is retried (`reserve.rs`).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).ctx_path("open directory", dir)?;
    f.sync_all().ctx_path("fsync directory", dir)
}

/// Replaces `path` with `data` so that a crash at any instant leaves the old or the new content.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    atomic_write_mode(path, data, 0o644)
}

/// [`atomic_write`] with the file's permission bits (0o600 for secrets: the temp file is never
/// readable by others either).
pub fn atomic_write_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = crate::reserve::retry(|| synced_rename(path, data, mode, File::sync_all))?;
    fsync_dir(dir)
}

/// Replaces `path` so that a power cut leaves the old or the new content, never a torn one, like
/// [`atomic_write`] but without the directory's fsync: for a file whose older content stays
/// correct (a checkpoint that lists less than was received), where losing the rename in a power
/// cut only costs redoing a little work. It does not draw on the reserve: such a checkpoint
/// (a transfer's progress) is data arriving, which a full disk should stop.
pub fn replace_synced(path: &Path, data: &[u8]) -> Result<()> {
    synced_rename(path, data, 0o644, File::sync_data).map(|_| ())
}

/// Writes `data` to a temp file beside `path` with `mode`, `sync`s it, renames it over `path`;
/// returns the directory (for the caller's fsync). The temp file never outlives a failure.
fn synced_rename<'a>(path: &'a Path, data: &[u8], mode: u32, sync: fn(&File) -> std::io::Result<()>) -> Result<&'a Path> {
    let dir = path.parent().ok_or_else(|| Error::invalid(format!("{} has no parent", path.display())))?;
    // A bare file name lives in the current directory.
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(name);
    let _ = fs::remove_file(&tmp);
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).ctx_path("create", &tmp)?;
        f.write_all(data).ctx_path("write", &tmp)?;
        sync(&f).ctx_path("fsync", &tmp)?;
        fs::rename(&tmp, path).ctx_paths("rename", &tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map(|()| dir)
}

/// Starts writing `f`'s dirty pages to the disk without waiting for them: a later fsync then
/// finds most of the work done, and the disk works while the caller goes on.
pub fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads the descriptor, which `f` keeps open for the call; a
    // failure (an old kernel, a file system without it) only loses the head start.
    unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Replaces `path` atomically (temp file + rename) without waiting for the disk: for state whose
/// loss in a power cut is harmless (a running container's pid is meaningless after a reboot),
/// while a crashed process still finds the old or the new content, never a torn one.
pub fn replace(path: &Path, data: &[u8]) -> Result<()> {
    crate::reserve::retry(|| replace_once(path, data))
}

fn replace_once(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::invalid(format!("{} has no parent", path.display())))?;
    // A bare file name lives in the current directory.
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(name);
    let res = fs::write(&tmp, data).ctx_path("write", &tmp).and_then(|()| fs::rename(&tmp, path).ctx_paths("rename", &tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Flushes every dirty page of the file system holding `path`: one call makes a whole unpacked
/// layer durable, far cheaper than an fsync per file.
pub fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).ctx_path("open", path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `f` keeps open for the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(Error::io_at("syncfs", path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Removes a file or a whole tree; missing is fine.
pub fn remove_all(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io_at("stat", path, e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).ctx_path("remove", path),
        Ok(_) => fs::remove_file(path).ctx_path("remove", path),
    }
}

pub fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::invalid(format!("path {} contains a NUL byte", p.display())))
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64> {
    let c = cstring(path)?;
    // SAFETY: statvfs is a plain C struct: all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes only into `st`, which we own; `c` is NUL-terminated.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(Error::io_at("statvfs", path, std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Total size in bytes of the regular files under `path` (not following symlinks).
pub fn tree_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if m.is_file() {
            total += m.len();
        }
    }
    total
}
