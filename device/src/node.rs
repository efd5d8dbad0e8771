//! Device nodes: what a host node is (type, major:minor, mode, owner), every node under a directory,
//! making one inside a container's `/dev`, and doing so in a running container's mount namespace
//! (hotplug) from a short-lived child.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rule::{Access, Rule, Type};

/// A device node to give a container: made at `path` with the host node's numbers, mode and owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// In the container.
    pub path: String,
    /// On the host (for messages and `inspect`).
    pub host: String,
    pub kind: Type,
    pub major: u32,
    pub minor: u32,
    /// Permission bits (`0o7777` part of st_mode).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub access: Access,
    /// The host node lives on a devpts instance (a pty slave): the kernel finds a pty through the
    /// devpts mount its node is on, so a copy made with mknod opens with EIO. Such a node is bind
    /// mounted instead.
    pub bind: bool,
}

impl Node {
    /// The cgroup rule that lets the container use this node as asked.
    pub fn rule(&self) -> Rule {
        Rule { kind: self.kind, major: Some(self.major), minor: Some(self.minor), access: self.access }
    }
}

/// Docker's message for a path it cannot pass (daemon `devicesFromPath`).
fn gather_error(kind: crate::Kind, host: &str, why: impl std::fmt::Display) -> Error {
    Error::new(kind, format!("error gathering device information while adding custom device \"{host}\": {why}"))
}

fn io_kind(e: &io::Error) -> crate::Kind {
    if e.kind() == io::ErrorKind::NotFound {
        crate::Kind::NotFound
    } else {
        crate::Kind::Io
    }
}

fn node_of(host: &Path, md: &fs::Metadata, container: String, access: Access) -> Option<Node> {
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        Type::Char
    } else if ft.is_block_device() {
        Type::Block
    } else {
        return None;
    };
    let rdev = md.rdev();
    let bind = on_devpts(host);
    Some(Node {
        path: container,
        host: host.to_string_lossy().into_owned(),
        kind,
        major: libc::major(rdev),
        minor: libc::minor(rdev),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        access,
        bind,
    })
}

const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

fn on_devpts(p: &Path) -> bool {
    let Ok(c) = cpath(p) else { return false };
    // SAFETY: a zeroed statfs filled in by the kernel for a NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == DEVPTS_SUPER_MAGIC
    }
}

/// The nodes `--device HOST[:CONTAINER]` gives: the node itself (symlinks followed, as Docker
/// does), or every node below a directory with its path re-rooted at CONTAINER.
pub fn gather(host: &str, container: Option<&str>, access: Access) -> Result<Vec<Node>> {
    let md = fs::metadata(host).map_err(|e| gather_error(io_kind(&e), host, lower_io(&e)))?;
    let target = container.unwrap_or(host).to_string();
    if md.is_dir() {
        let mut out = Vec::new();
        walk(Path::new(host), &target, access, &mut out, 0)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        return Ok(out);
    }
    node_of(Path::new(host), &md, target, access)
        .map(|n| vec![n])
        .ok_or_else(|| gather_error(crate::Kind::Invalid, host, "not a device node"))
}

/// Go's error strings are lower-case (`no such file or directory`); Rust's `io::Error` prints the
/// libc text with a capital and an os error number.
fn lower_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

fn walk(dir: &Path, target: &str, access: Access, out: &mut Vec<Node>, depth: u32) -> Result<()> {
    // /dev trees are shallow; a loop of bind mounts must not run forever.
    if depth > 16 {
        return Ok(());
    }
    let rd = fs::read_dir(dir).map_err(|e| gather_error(io_kind(&e), &dir.to_string_lossy(), lower_io(&e)))?;
    for entry in rd.flatten() {
        let p = entry.path();
        let name = entry.file_name();
        let t = format!("{}/{}", target.trim_end_matches('/'), name.to_string_lossy());
        // Like Docker, links inside a directory are not followed: they usually point back into it.
        let Ok(md) = fs::symlink_metadata(&p) else { continue };
        if md.is_dir() {
            walk(&p, &t, access, out, depth + 1)?;
        } else if let Some(n) = node_of(&p, &md, t, access) {
            out.push(n);
        }
    }
    Ok(())
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::invalid(format!("path {} holds a NUL byte", p.display())))
}

/// Makes `node` at `at` (its path already resolved inside the container's root), parents first;
/// an existing file there is replaced (the image may ship a stale node).
pub fn make(at: &Path, node: &Node) -> Result<()> {
    if let Some(parent) = at.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(format!("create {} for device {}", parent.display(), node.host), e))?;
    }
    match fs::symlink_metadata(at) {
        Ok(m) if m.is_dir() => {
            return Err(Error::invalid(format!("cannot make device {} at {}: a directory is there", node.host, node.path)))
        }
        Ok(_) => fs::remove_file(at).map_err(|e| Error::io(format!("replace {}", at.display()), e))?,
        Err(_) => {}
    }
    let c = cpath(at)?;
    if node.bind {
        fs::File::create(at).map_err(|e| Error::io(format!("create {} for device {}", node.path, node.host), e))?;
        let src = cpath(Path::new(&node.host))?;
        // SAFETY: NUL-terminated paths that outlive the call; no file system type or data.
        if unsafe { libc::mount(src.as_ptr(), c.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) } != 0 {
            return Err(Error::io(format!("bind {} to {}", node.host, node.path), io::Error::last_os_error()));
        }
        return Ok(());
    }
    let fmt = match node.kind {
        Type::Block => libc::S_IFBLK,
        _ => libc::S_IFCHR,
    };
    // SAFETY: `c` is a NUL-terminated path that outlives the calls; mknod, chown and chmod only
    // read their arguments.
    unsafe {
        if libc::mknod(c.as_ptr(), fmt | (node.mode & 0o777), libc::makedev(node.major, node.minor)) != 0 {
            return Err(Error::io(
                format!("mknod {} ({} {}:{})", node.path, node.kind.letter(), node.major, node.minor),
                io::Error::last_os_error(),
            ));
        }
        if libc::chown(c.as_ptr(), node.uid, node.gid) != 0 {
            return Err(Error::io(format!("chown {}", node.path), io::Error::last_os_error()));
        }
        // mknod honours the umask; the host's mode is what the container must see.
        if libc::chmod(c.as_ptr(), node.mode) != 0 {
            return Err(Error::io(format!("chmod {}", node.path), io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// In the mount namespace of the running process `pid` (a container's pid 1), makes `node`
/// (`Some`) or removes the device node at `path` (`None`). A forked child enters the namespace,
/// so the caller (the single-threaded agent) never changes its own; the child's exit status says
/// how it went, and its error text comes back over a pipe.
pub fn in_namespace(pid: i32, path: &str, node: Option<&Node>) -> Result<()> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(Error::invalid(format!("device path {path:?} must be absolute and plain")));
    }
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = fs::File::open(&ns_path).map_err(|e| Error::io(format!("open {ns_path} (container gone?)"), e))?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("pipe", io::Error::last_os_error()));
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: the caller is single-threaded (the agent's current-thread runtime forks containers
    // the same way), so the child's copy of the address space holds no lock another thread owned.
    // The child only makes syscalls and leaves with _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing the descriptors just made.
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
        return Err(Error::io("fork", e));
    }
    if child == 0 {
        use std::os::fd::AsRawFd;
        let res = (|| -> Result<()> {
            // SAFETY: setns on a namespace descriptor we opened; it also moves our root and working
            // directory to the container's root.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
                return Err(Error::io("enter the container's mount namespace", io::Error::last_os_error()));
            }
            let at = PathBuf::from(path);
            match node {
                Some(n) => make(&at, n),
                None => match fs::symlink_metadata(&at) {
                    Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => {
                        fs::remove_file(&at).map_err(|e| Error::io(format!("remove {path}"), e))
                    }
                    _ => Ok(()),
                },
            }
        })();
        let code = match res {
            Ok(()) => 0,
            Err(e) => {
                let m = e.to_string();
                // SAFETY: writes from a live buffer to our end of the pipe.
                unsafe { libc::write(wr, m.as_ptr().cast(), m.len()) };
                1
            }
        };
        // SAFETY: leaves without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(code) }
    }
    drop(ns);
    // SAFETY: the parent's copy of the write end; the child holds its own.
    unsafe { libc::close(wr) };
    let mut msg = Vec::new();
    {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        // SAFETY: `rd` is ours and is closed when the file drops.
        let mut f = unsafe { fs::File::from_raw_fd(rd) };
        let _ = f.read_to_end(&mut msg);
    }
    let mut st = 0;
    // SAFETY: waits for our own child; `st` is a plain int.
    while unsafe { libc::waitpid(child, &mut st, 0) } < 0 {
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(Error::io("wait for the device helper", io::Error::last_os_error()));
        }
    }
    if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
        return Ok(());
    }
    let what = if node.is_some() { "create" } else { "remove" };
    let msg = String::from_utf8_lossy(&msg);
    Err(Error::new(
        crate::Kind::Io,
        format!("{what} {path} in container (pid {pid}): {}", if msg.is_empty() { "helper failed" } else { &msg }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_null_and_refuses_others() {
        let n = gather("/dev/null", Some("/dev/mynull"), Access::ALL).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!((n[0].kind, n[0].major, n[0].minor, n[0].path.as_str()), (Type::Char, 1, 3, "/dev/mynull"));
        assert_eq!(n[0].rule().to_string(), "c 1:3 rwm");
        let e = gather("/dev/does-not-exist", None, Access::ALL).unwrap_err();
        assert_eq!(
            e.message(),
            "error gathering device information while adding custom device \"/dev/does-not-exist\": no such file or directory"
        );
        assert_eq!(e.kind(), crate::Kind::NotFound);
        let e = gather("/etc/hostname", None, Access::ALL).unwrap_err();
        assert_eq!(e.message(), "error gathering device information while adding custom device \"/etc/hostname\": not a device node");
    }
}
