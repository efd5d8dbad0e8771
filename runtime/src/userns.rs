//! User namespaces (`--userns=auto`): the container's root is a host ID of its own, unprivileged
//! range. Three parts:
//! - ranges: where host IDs come from (`/etc/subuid`/`/etc/subgid` entries of a user, else
//!   berth's own range) and choosing a free one; the agent's container records are the
//!   allocation table, so a range is taken exactly as long as its container's record exists;
//! - the namespace: made by a short-lived helper process whose maps its parent writes (runc's
//!   order: the child unshares, the privileged parent writes the maps);
//! - id-mapped mounts (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)` + `move_mount`, Linux
//!   5.12; under overlayfs 5.19): the shared image layers and bind mounts show host root's
//!   files as the container's root's without copying or chowning anything.
//!
//! The container's other namespaces stay owned by the host's user namespace: its pid 1 enters
//! the user namespace last, after everything is mounted (`spawn.rs`), so no mount made for it can
//! be undone from inside and no namespaced CAP_SYS_ADMIN reaches a kernel mount or network path.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::cstring;

/// Docker and podman's default: a whole 16-bit ID space per container.
pub const DEFAULT_SIZE: u32 = 65536;
/// berth's own range when the user has no `/etc/subuid` entry: above anything `useradd`
/// hands out (podman's subuid ranges start at 100000) and below 2^31, which some tools print
/// as negative. Room for 4096 containers of 65536 IDs.
pub const OWN_RANGE: (u32, u32) = (1_000_000_000, 4096 * 65536);

/// Container root is host `uid`/`gid`; container ID n is host `uid + n`, for n below `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

impl IdMap {
    /// The host ID of the container's `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.uid + id)
    }
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.gid + id)
    }
}

/// `--userns` as given: host (the default) or auto with a size.
pub fn parse_mode(s: &str) -> Result<Option<u32>> {
    match s {
        "" | "host" => Ok(None),
        "auto" => Ok(Some(DEFAULT_SIZE)),
        _ => {
            let bad = || Error::invalid(format!("invalid --userns {s:?}: host, auto or auto:size=N"));
            let n = s.strip_prefix("auto:size=").ok_or_else(bad)?;
            match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(bad()),
            }
        }
    }
}

/// Where ranges come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// (first, count) host uids and gids that may be handed out.
    pub uids: Vec<(u32, u32)>,
    pub gids: Vec<(u32, u32)>,
    /// Says where they come from, for messages.
    pub origin: String,
}

/// `name:first:count` lines of a subordinate-ID file for `user`.
pub fn subid_ranges(text: &str, user: &str) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (n, a, c) = (f.next()?, f.next()?, f.next()?);
            let (a, c) = (a.parse::<u32>().ok()?, c.parse::<u32>().ok()?);
            (n == user && c > 0 && a.checked_add(c).is_some()).then_some((a, c))
        })
        .collect()
}

impl Pool {
    /// The ranges of `user` in `subuid`/`subgid`. `required`: an operator named the user
    /// (`userns-remap NAME`), so no entry is an error; otherwise berth's own range is used.
    pub fn load(user: &str, subuid: &Path, subgid: &Path, required: bool) -> Result<Pool> {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let (u, g) = (subid_ranges(&read(subuid), user), subid_ranges(&read(subgid), user));
        if !u.is_empty() && !g.is_empty() {
            return Ok(Pool { uids: u, gids: g, origin: format!("{} and {} ranges of {user}", subuid.display(), subgid.display()) });
        }
        if required {
            let which = if u.is_empty() { subuid } else { subgid };
            return Err(Error::invalid(format!(
                "user namespaces: no range for user {user:?} in {} (add a line such as {user}:{}:{})",
                which.display(),
                OWN_RANGE.0,
                OWN_RANGE.1
            )));
        }
        let own = vec![OWN_RANGE];
        Ok(Pool { uids: own.clone(), gids: own, origin: format!("berth's own range {}:{}", OWN_RANGE.0, OWN_RANGE.1) })
    }

    /// The lowest free range of `size` IDs, disjoint from every range in `used`.
    pub fn allocate(&self, size: u32, used: &[IdMap]) -> Result<IdMap> {
        let pick = |ranges: &[(u32, u32)], taken: &dyn Fn(&IdMap) -> (u32, u32)| -> Option<u32> {
            for &(first, count) in ranges {
                let end = u64::from(first) + u64::from(count);
                let mut at = u64::from(first);
                while at + u64::from(size) <= end {
                    let clash =
                        used.iter().map(taken).find(|&(b, n)| at < u64::from(b) + u64::from(n) && u64::from(b) < at + u64::from(size));
                    match clash {
                        // Jump past the range in the way (ranges need not be aligned).
                        Some((b, n)) => at = u64::from(b) + u64::from(n),
                        None => return u32::try_from(at).ok(),
                    }
                }
            }
            None
        };
        let uid = pick(&self.uids, &|m| (m.uid, m.size));
        let gid = pick(&self.gids, &|m| (m.gid, m.size));
        match (uid, gid) {
            (Some(uid), Some(gid)) => Ok(IdMap { uid, gid, size }),
            _ => Err(Error::invalid(format!("user namespaces: no free range of {size} IDs left in {}", self.origin))),
        }
    }
}

/// Whether the kernel lets berth make user namespaces at all; the reason when it does not.
pub fn kernel_support() -> std::result::Result<(), String> {
    if !Path::new("/proc/self/ns/user").exists() {
        return Err("this kernel has no user namespaces (CONFIG_USER_NS)".into());
    }
    match std::fs::read_to_string("/proc/sys/user/max_user_namespaces").map(|s| s.trim().parse::<u64>()) {
        Ok(Ok(0)) => Err("user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)".into()),
        _ => Ok(()),
    }
}

fn write_all(fd: RawFd, b: &[u8]) {
    // SAFETY: writes from a live buffer; a failure shows up as the parent's read error.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

/// A new user namespace with `map` written, as a descriptor (`/proc/<pid>/ns/user`): a helper
/// process unshares it and waits; we write its maps, keep the namespace open and end the helper.
/// The caller must be single-threaded (it forks) and privileged in the host's user namespace.
pub fn create(map: &IdMap) -> Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("pipe", io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just made and belong to nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the caller is single-threaded; the child only makes raw system calls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: unshare, write, pause and _exit only touch this process.
        unsafe {
            let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
            write_all(wr.as_raw_fd(), if ok { b"1" } else { b"0" });
            if ok {
                libc::pause();
            }
            libc::_exit(0);
        }
    }
    drop(wr);
    let res = (|| {
        let mut b = [0u8; 1];
        std::fs::File::from(rd).read_exact(&mut b).map_err(|e| Error::io("user namespace helper", e))?;
        if b[0] != b'1' {
            return Err(Error::invalid(format!("create user namespace: {}", kernel_support().err().unwrap_or_else(|| "refused".into()))));
        }
        let line = |base: u32| format!("0 {base} {}\n", map.size);
        for (file, base) in [("uid_map", map.uid), ("gid_map", map.gid)] {
            let p = format!("/proc/{pid}/{file}");
            let mut f = std::fs::OpenOptions::new().write(true).open(&p).map_err(|e| Error::io(format!("open {p}"), e))?;
            f.write_all(line(base).as_bytes()).map_err(|e| Error::io(format!("write {p} ({})", line(base).trim()), e))?;
        }
        let p = format!("/proc/{pid}/ns/user");
        std::fs::File::open(&p).map(OwnedFd::from).map_err(|e| Error::io(format!("open {p}"), e))
    })();
    // SAFETY: ends and reaps our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
    res
}

/// Enters the user namespace `ns` and becomes its root (host ID `map.uid`). Capabilities are then
/// the namespace's: full over it, none over the host's namespaces the process is in.
pub fn enter(ns: RawFd) -> Result<()> {
    // SAFETY: setns on a namespace descriptor; setres[ug]id to the namespace's root, which is
    // mapped, so only this process's credentials change.
    unsafe {
        if libc::setns(ns, libc::CLONE_NEWUSER) != 0 {
            return Err(Error::io("join the container's user namespace", io::Error::last_os_error()));
        }
        if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
            return Err(Error::io("become root of the container's user namespace", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// While alive, what this process creates belongs to the container's root (fs IDs switched to
/// its host IDs): mount points and /dev entries the setup makes are then the container's, as
/// they are without a user namespace. The file capabilities the switch takes from the effective
/// set are raised again; dropping the guard goes back to host root (and the kernel restores them).
pub struct AsMappedRoot(());

pub fn as_mapped_root(map: &IdMap) -> Result<AsMappedRoot> {
    // SAFETY: setfsgid/setfsuid only change this process's file system IDs.
    unsafe {
        libc::setfsgid(map.gid);
        libc::setfsuid(map.uid);
    }
    let guard = AsMappedRoot(());
    let err = |e: caps::errors::CapsError| Error::invalid(format!("raise capabilities: {e}"));
    let permitted = caps::read(None, caps::CapSet::Permitted).map_err(err)?;
    caps::set(None, caps::CapSet::Effective, &permitted).map_err(err)?;
    Ok(guard)
}

impl Drop for AsMappedRoot {
    fn drop(&mut self) {
        // SAFETY: as above, back to host root.
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
    }
}

// New mount API: the same numbers on every architecture berth ships (unified since Linux 5.1).
const SYS_OPEN_TREE: libc::c_long = 428;
const SYS_MOVE_MOUNT: libc::c_long = 429;
const SYS_MOUNT_SETATTR: libc::c_long = 442;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount tree at `src` (recursive with `rec`) whose IDs are shifted by the
/// user namespace `ns`: on it, host ID 0 is the container's root.
pub fn idmapped_tree(src: &Path, ns: RawFd, rec: bool) -> Result<OwnedFd> {
    let c = cstring(src)?;
    let rflag = if rec { AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree reads the NUL-terminated path and returns a new descriptor we own.
    let fd = unsafe { libc::syscall(SYS_OPEN_TREE, libc::AT_FDCWD, c.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | rflag) };
    if fd < 0 {
        return Err(Error::io(format!("open_tree {}", src.display()), io::Error::last_os_error()));
    }
    // SAFETY: a descriptor open_tree just returned.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: ns as u64 };
    let empty: &std::ffi::CStr = c"";
    // SAFETY: mount_setattr reads the attribute struct of the size given.
    let rc = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | rflag,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(Error::io(format!("id-mapped mount of {}", src.display()), io::Error::last_os_error()));
    }
    Ok(tree)
}

/// Attaches a detached tree on the file or directory `target` (an O_PATH descriptor).
pub fn attach(tree: &OwnedFd, target: RawFd, shown: &str) -> Result<()> {
    let empty: &std::ffi::CStr = c"";
    // SAFETY: move_mount between two descriptors we hold, with empty paths.
    let rc = unsafe {
        libc::syscall(
            SYS_MOVE_MOUNT,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target,
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(Error::io(format!("mount on {shown}"), io::Error::last_os_error()));
    }
    Ok(())
}

/// Stacks an id-mapped copy of the directory `dir` on itself (the overlay's lower layers).
pub fn idmap_in_place(dir: &Path, ns: RawFd) -> Result<()> {
    let tree = idmapped_tree(dir, ns, false)?;
    let c = cstring(dir)?;
    // SAFETY: opens the directory as an O_PATH descriptor we then own.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY) };
    if fd < 0 {
        return Err(Error::io_at("open", dir, io::Error::last_os_error()));
    }
    // SAFETY: a descriptor open just returned.
    let target = unsafe { OwnedFd::from_raw_fd(fd) };
    attach(&tree, target.as_raw_fd(), &dir.display().to_string())
}

/// Whether an overlay over an id-mapped lower directory can be made here, tried in a throwaway
/// process (own mount namespace) under `scratch`: what `berth check` reports. Needs root.
pub fn probe_idmapped_overlay(scratch: &Path) -> std::result::Result<(), String> {
    kernel_support()?;
    let dir = scratch.join(format!("userns-probe-{}", std::process::id()));
    let sub = |n: &str| dir.join(n);
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(sub(d)).map_err(|e| format!("create {}: {e}", sub(d).display()))?;
    }
    let res = (|| {
        let ns = create(&IdMap { uid: OWN_RANGE.0, gid: OWN_RANGE.0, size: 1 }).map_err(|e| e.to_string())?;
        // SAFETY: the caller is single-threaded; the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", io::Error::last_os_error()));
        }
        if pid == 0 {
            let code = (|| -> Result<()> {
                // SAFETY: unshare only changes this process's mount namespace.
                if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
                    return Err(Error::io("unshare", io::Error::last_os_error()));
                }
                crate::container::rootfs::mount("none", Path::new("/"), "", libc::MS_REC | libc::MS_PRIVATE, "")?;
                idmap_in_place(&sub("lower"), ns.as_raw_fd())?;
                let opts =
                    format!("lowerdir={},upperdir={},workdir={}", sub("lower").display(), sub("upper").display(), sub("work").display());
                crate::container::rootfs::mount("overlay", &sub("merged"), "overlay", 0, &opts)
            })();
            let code = match code {
                Ok(()) => 0,
                Err(e) => match e.message().contains("id-mapped") {
                    true => 2,
                    false => 3,
                },
            };
            // SAFETY: leaves the probe child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        let mut st = 0;
        // SAFETY: reaps our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        match libc::WIFEXITED(st).then(|| libc::WEXITSTATUS(st)) {
            Some(0) => Ok(()),
            Some(2) => Err("the kernel or file system refuses id-mapped mounts (Linux 5.12+, and a file system that has them)".into()),
            _ => Err("overlayfs refuses id-mapped lower layers (Linux 5.19+)".into()),
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_ranges_and_allocation() {
        assert_eq!(parse_mode("host").unwrap(), None);
        assert_eq!(parse_mode("auto").unwrap(), Some(65536));
        assert_eq!(parse_mode("auto:size=1024").unwrap(), Some(1024));
        assert!(parse_mode("auto:size=0").is_err());
        assert!(parse_mode("private").is_err());
        let text = "alice:100000:65536\nberth:200000:131072\nberth:bad:1\nberth:500000:65536\n";
        assert_eq!(subid_ranges(text, "berth"), vec![(200000, 131072), (500000, 65536)]);
        let pool = Pool { uids: subid_ranges(text, "berth"), gids: subid_ranges(text, "berth"), origin: "t".into() };
        let a = pool.allocate(65536, &[]).unwrap();
        assert_eq!(a, IdMap { uid: 200000, gid: 200000, size: 65536 });
        let b = pool.allocate(65536, &[a]).unwrap();
        assert_eq!(b.uid, 265536);
        let c = pool.allocate(65536, &[a, b]).unwrap();
        assert_eq!(c.uid, 500000);
        assert!(pool.allocate(65536, &[a, b, c]).is_err());
        // A freed range is handed out again; an odd-sized neighbour is stepped over.
        assert_eq!(pool.allocate(65536, &[b, c]).unwrap().uid, 200000);
        let odd = IdMap { uid: 200000, gid: 200000, size: 10 };
        assert_eq!(pool.allocate(65536, &[odd]).unwrap().uid, 200010);
        assert_eq!(a.host_uid(0), Some(200000));
        assert_eq!(a.host_uid(65536), None);
    }
}
