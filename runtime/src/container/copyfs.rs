//! The copy fallback for kernels without overlayfs: the image's layers are merged once into the
//! container's own directory (whiteouts applied), which then serves as its root file system.
//! Costs the image's full size per container; `berth info` says when it is in use.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::cstring;
use crate::image::export::merged;

/// Whether the running kernel offers overlayfs.
pub fn overlay_supported() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.lines().any(|l| l.split_whitespace().last() == Some("overlay")))
}

fn times_and_owner(p: &Path, m: &fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(m.uid()), Some(m.gid())).ctx_path("chown", p)?;
    if !m.file_type().is_symlink() {
        fs::set_permissions(p, fs::Permissions::from_mode(m.mode() & 0o7777)).ctx_path("chmod", p)?;
    }
    let c = cstring(p)?;
    let t = libc::timespec { tv_sec: m.mtime() as _, tv_nsec: m.mtime_nsec() as _ };
    let times = [t, t];
    // SAFETY: `c` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(Error::io_at("set times of", p, io::Error::last_os_error()));
    }
    Ok(())
}

/// Copies the merged view of `layer_roots` (lowest first) into the empty directory `dest`.
pub fn materialize(layer_roots: &[PathBuf], dest: &Path) -> Result<()> {
    copy_entries(merged(layer_roots)?.into_iter(), dest)
}

/// Docker's copy-up into a new, empty volume: the image's content at `sub` (a directory in the
/// merged layers) is copied into `dest` with owners, modes and times, and `dest` itself takes
/// the directory's owner and mode. Returns false (copying nothing) when the image has no
/// directory there.
pub fn copy_up(layer_roots: &[PathBuf], sub: &str, dest: &Path) -> Result<bool> {
    let key: Vec<u8> = sub.trim_matches('/').as_bytes().to_vec();
    if key.is_empty() {
        return Err(Error::invalid("a volume cannot be mounted at /"));
    }
    let all = merged(layer_roots)?;
    let Some((_, top)) = all.get(&key).filter(|(_, m)| m.is_dir()) else { return Ok(false) };
    let top = top.clone();
    let mut prefix = key.clone();
    prefix.push(b'/');
    let entries = all.into_iter().filter_map(|(rel, v)| rel.strip_prefix(&prefix[..]).map(|r| (r.to_vec(), v)));
    copy_entries(entries, dest)?;
    std::os::unix::fs::lchown(dest, Some(top.uid()), Some(top.gid())).ctx_path("chown", dest)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(top.mode() & 0o7777)).ctx_path("chmod", dest)?;
    Ok(true)
}

fn copy_entries(entries: impl Iterator<Item = (Vec<u8>, (PathBuf, fs::Metadata))>, dest: &Path) -> Result<()> {
    let mut dirs = Vec::new();
    let mut links = std::collections::HashMap::new();
    for (rel, (src, m)) in entries {
        let to = dest.join(std::ffi::OsStr::from_bytes(&rel));
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).ctx_path("create", &to)?;
            dirs.push((to, m));
            continue;
        }
        if ft.is_symlink() {
            symlink(fs::read_link(&src).ctx_path("read link", &src)?, &to).ctx_path("symlink", &to)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    fs::hard_link(first, &to).ctx_path("link", &to)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), to.clone());
            }
            fs::copy(&src, &to).ctx_paths("copy", &src, &to)?;
        } else {
            // FIFOs and sockets; device nodes never come out of an image.
            continue;
        }
        times_and_owner(&to, &m)?;
    }
    for (d, m) in dirs.iter().rev() {
        times_and_owner(d, m)?;
    }
    Ok(())
}
