//! Paths resolved inside the container's root through descriptors, for mount targets
//! (CVE-2021-30465). A volume shared with another, running container may have any of its
//! entries swapped for a symlink to a host path between the moment a target is checked and the
//! moment it is mounted on; resolving it once more by path would then follow the link out of the
//! root. Here every step goes from the root's descriptor with `openat2(RESOLVE_IN_ROOT)` (Linux
//! 5.6): a symlink, absolute or `..`, stays inside; directories are made with `mkdirat` on a
//! parent resolved that way, and the mount goes onto `/proc/self/fd/N`, the resolved object.
//! Older kernels: the path is resolved by `scoped_join`, opened without following a last
//! symlink, and the descriptor's real path compared with the expected one (runc's check before
//! openat2): a swap in between fails the start instead of escaping.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::container::rootfs::scoped_join;
use crate::error::{Error, Result};

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b).map_err(|_| Error::invalid("path holds a NUL byte"))
}

/// `/proc/self/fd/N`: what mount(2) takes to act on a resolved descriptor.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The path's components relative to the root ("/a/../b" → ["a", "..", "b"]).
fn parts(path: &str) -> Vec<&std::ffi::OsStr> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(std::ffi::OsStr::new("..")),
            _ => None,
        })
        .collect()
}

fn join(ps: &[&std::ffi::OsStr]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in ps {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(p.as_bytes());
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: open with a NUL-terminated path; the descriptor is ours.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io_at("open", path, io::Error::last_os_error()));
        }
        // SAFETY: a descriptor just opened.
        Ok(Root { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path: path.to_path_buf() })
    }

    /// openat2 from the root; Err(None) when the kernel has no openat2.
    fn openat2(&self, rel: &[u8], flags: i32) -> std::result::Result<OwnedFd, Option<io::Error>> {
        let c = CString::new(rel).map_err(|_| Some(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: 0, resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
        // SAFETY: openat2 reads the path and the open_how of the size given.
        let fd = unsafe {
            libc::syscall(libc::SYS_openat2, self.fd.as_raw_fd(), c.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ENOSYS) { None } else { Some(e) });
        }
        // SAFETY: a descriptor just opened.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    /// Without openat2: resolve by path inside the root, open without following a last link,
    /// and check that the descriptor is what was resolved.
    fn open_checked(&self, path: &str, flags: i32) -> Result<OwnedFd> {
        let p = scoped_join(&self.path, path)?;
        let c = cstr(p.as_os_str().as_bytes())?;
        // SAFETY: open with a NUL-terminated path; the descriptor is ours.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io(format!("open {path} in the container"), io::Error::last_os_error()));
        }
        // SAFETY: a descriptor just opened.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let real = std::fs::read_link(fd_path(&fd)).map_err(|e| Error::io(format!("read the path of {path}"), e))?;
        if real != p {
            return Err(Error::invalid(format!("{path} changed while it was being mounted on (now {})", real.display())));
        }
        Ok(fd)
    }

    /// An O_PATH descriptor of `path` as the container sees it.
    pub fn open_path(&self, path: &str) -> Result<OwnedFd> {
        match self.openat2(&join(&parts(path)), libc::O_PATH) {
            Ok(fd) => Ok(fd),
            Err(Some(e)) => Err(Error::io(format!("open {path} in the container"), e)),
            Err(None) => self.open_checked(path, libc::O_PATH),
        }
    }

    /// Makes the directory `path` and its parents inside the root; its O_PATH descriptor.
    pub fn mkdir_all(&self, path: &str) -> Result<OwnedFd> {
        self.mkdir_hops(path, 0)
    }

    fn mkdir_hops(&self, path: &str, hops: u32) -> Result<OwnedFd> {
        if hops > 40 {
            return Err(Error::invalid(format!("too many levels of symbolic links in {path}")));
        }
        let ps = parts(path);
        for i in 1..=ps.len() {
            match self.openat2(&join(&ps[..i]), libc::O_PATH | libc::O_DIRECTORY) {
                Ok(_) => continue,
                Err(None) => {
                    let p = scoped_join(&self.path, path)?;
                    std::fs::DirBuilder::new().recursive(true).create(&p).map_err(|e| Error::io_at("create", &p, e))?;
                    return self.open_checked(path, libc::O_PATH | libc::O_DIRECTORY);
                }
                Err(Some(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let parent = self.openat2(&join(&ps[..i - 1]), libc::O_PATH | libc::O_DIRECTORY).map_err(|e| {
                        Error::io(
                            format!("open {} in the container", String::from_utf8_lossy(&join(&ps[..i - 1]))),
                            e.unwrap_or(io::ErrorKind::Other.into()),
                        )
                    })?;
                    let name = cstr(ps[i - 1].as_bytes())?;
                    // SAFETY: mkdirat with a directory descriptor and a single-component name.
                    if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
                        let e = io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(Error::io(format!("create {path} in the container"), e));
                        }
                        // A symlink to nowhere (yet): make what it points to, inside the root.
                        if let Ok(link) = std::fs::read_link(fd_path(&parent).join(ps[i - 1])) {
                            let base = if link.is_absolute() { Vec::new() } else { join(&ps[..i - 1]) };
                            let mut next = String::from_utf8_lossy(&base).into_owned();
                            next.push('/');
                            next.push_str(&link.to_string_lossy());
                            for p in &ps[i..] {
                                next.push('/');
                                next.push_str(&p.to_string_lossy());
                            }
                            return self.mkdir_hops(&next, hops + 1);
                        }
                    }
                }
                Err(Some(e)) => return Err(Error::io(format!("open {path} in the container"), e)),
            }
        }
        self.open_path(path)
    }

    /// Makes `path` a file (if nothing is there) inside the root, parents included; its O_PATH
    /// descriptor.
    pub fn create_file(&self, path: &str) -> Result<OwnedFd> {
        let ps = parts(path);
        let Some((name, dirs)) = ps.split_last() else { return self.open_path(path) };
        let dir = String::from_utf8_lossy(&join(dirs)).into_owned();
        let parent = self.mkdir_all(&dir)?;
        // O_PATH descriptors cannot be used with openat: reopen the parent as a directory.
        let parent = match self.openat2(&join(dirs), libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(_) => parent,
        };
        let n = cstr(name.as_bytes())?;
        // SAFETY: openat on a directory descriptor with a single-component name, never following
        // a symlink there; the descriptor is closed at once.
        let fd = unsafe {
            libc::openat(parent.as_raw_fd(), n.as_ptr(), libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_WRONLY, 0o644)
        };
        if fd >= 0 {
            // SAFETY: ours, just opened.
            unsafe { libc::close(fd) };
        }
        self.open_path(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_files_are_made_inside_the_root() {
        let base = std::env::temp_dir().join(format!("berth-inroot-{}", std::process::id()));
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // Absolute and relative links out, and one to a place that does not exist yet.
        std::os::unix::fs::symlink(&outside, root.join("data/abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("data/up")).unwrap();
        std::os::unix::fs::symlink("/nowhere/yet", root.join("data/dangling")).unwrap();
        let r = Root::open(&root).unwrap();
        r.mkdir_all("/data/abs/sub").unwrap();
        r.mkdir_all("/data/up/etc/x").unwrap();
        r.mkdir_all("/data/dangling/deeper").unwrap();
        r.create_file("/data/abs/file").unwrap();
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "made something outside the root");
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert!(inside.join("sub").is_dir() && inside.join("file").is_file());
        assert!(root.join("etc/x").is_dir());
        assert!(root.join("nowhere/yet/deeper").is_dir());
        let fd = r.open_path("/data/abs/sub").unwrap();
        assert_eq!(std::fs::read_link(fd_path(&fd)).unwrap(), inside.join("sub"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
