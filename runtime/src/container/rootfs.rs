//! The container's file system, built inside its own mount namespace so that it all disappears
//! with the container (no mount can leak): overlayfs over the shared layers, /proc, a small /dev,
//! read-only /sys, Docker's masked and read-only paths, volumes, tmpfs, then pivot_root.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::container::inroot::{fd_path, Root};
use crate::container::spec::{tmpfs_options, Mount, Spec};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::cstring;
use crate::userns::IdMap;
use std::os::fd::{AsRawFd, RawFd};

/// Paths Docker hides from containers (unless privileged).
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Character devices every container gets: (name, major, minor).
const DEVICES: &[(&str, u32, u32)] = &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

pub fn mount(src: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: &str) -> Result<()> {
    let (s, t, f, d) = (CString::new(src), cstring(target)?, CString::new(fstype), CString::new(data));
    let (Ok(s), Ok(f), Ok(d)) = (s, f, d) else { return Err(Error::invalid("mount argument holds a NUL byte")) };
    let dp = if data.is_empty() { std::ptr::null() } else { d.as_ptr().cast() };
    let fp = if fstype.is_empty() { std::ptr::null() } else { f.as_ptr() };
    // SAFETY: all strings are NUL-terminated and live across the call; null pointers are allowed
    // for fstype and data.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), fp, flags, dp) };
    if rc != 0 {
        return Err(Error::io(format!("mount {fstype} {src} on {}", target.display()), io::Error::last_os_error()));
    }
    Ok(())
}

/// mount(2) onto a descriptor resolved inside the root; errors name the container's path.
fn mount_on(src: &str, fd: &std::os::fd::OwnedFd, shown: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> Result<()> {
    let p = fd_path(fd);
    mount(src, &p, fstype, flags, data).map_err(|e| Error::new(e.kind(), e.message().replace(&*p.to_string_lossy(), shown)))
}

/// Resolves `path` inside `root` as the container would see it: symlinks are followed but an
/// absolute target or `..` can never leave `root` (the runc "securejoin" rule). Without it an
/// image's `/data -> /etc` link would make a volume mount land on the host's /etc.
pub fn scoped_join(root: &Path, path: &str) -> Result<PathBuf> {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = Path::new(path).components().rev().filter_map(comp_name).collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        let mut cur = root.to_path_buf();
        cur.extend(&parts);
        cur.push(&c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(Error::invalid(format!("too many levels of symbolic links in {path}")));
                }
                let target = fs::read_link(&cur).ctx_path("read link", &cur)?;
                if target.is_absolute() {
                    parts.clear();
                }
                todo.extend(target.components().rev().filter_map(comp_name));
            }
            _ => parts.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&parts);
    Ok(out)
}

fn comp_name(c: Component) -> Option<std::ffi::OsString> {
    match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    }
}

fn mkdir_p(p: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o755).create(p).ctx_path("create", p)
}

fn mknod_char(p: &Path, major: u32, minor: u32, mode: u32) -> Result<()> {
    let c = cstring(p)?;
    // SAFETY: `c` is NUL-terminated; makedev and mknod only read their arguments.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | mode, libc::makedev(major, minor)) };
    if rc != 0 {
        return Err(Error::io_at("mknod", p, io::Error::last_os_error()));
    }
    // mknod honours the umask; the nodes must be 0666 whatever it is.
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).ctx_path("chmod", p)
}

/// Everything from the overlay mount to just before pivot_root. Runs in the container's
/// (private) mount namespace as root.
pub struct Layout<'a> {
    /// Layer roots, lowest first, relative to `layers_dir`.
    pub layers: &'a [String],
    pub layers_dir: &'a Path,
    pub upper: &'a Path,
    pub work: &'a Path,
    pub rootfs: &'a Path,
    /// hosts, hostname, resolv.conf prepared by the agent.
    pub etc_dir: &'a Path,
    /// `rootfs` already holds a merged copy of the layers (no overlayfs on this kernel).
    pub copy: bool,
    /// The upper directory is thrown away with the container (`--rm`): overlayfs may skip
    /// syncing it (`volatile`). Without that, the kernel syncs the whole file system holding the
    /// upper directory when the container's mount namespace goes away, and the container's pid 1
    /// is not reaped until that sync ends: most of a short `run --rm`'s time on a busy disk.
    pub volatile: bool,
}

/// The user namespace the container will enter (`--userns=auto`) and its map.
pub type Mapped = Option<(RawFd, IdMap)>;

/// chown to the container's `uid`/`gid` as the host sees them (no-op without a user namespace).
fn chown_mapped(p: &Path, m: &Mapped, uid: u32, gid: u32) -> Result<()> {
    let Some((_, map)) = m else { return Ok(()) };
    let (Some(u), Some(g)) = (map.host_uid(uid), map.host_gid(gid)) else { return Ok(()) };
    std::os::unix::fs::lchown(p, Some(u), Some(g)).ctx_path("chown", p)
}

/// tmpfs data with its owner moved into the container's range (tmpfs is made by host root).
fn tmpfs_data(data: &str, m: &Mapped) -> String {
    let Some((_, map)) = m else { return data.to_string() };
    let mut out: Vec<String> = Vec::new();
    let (mut uid, mut gid) = (false, false);
    for o in data.split(',').filter(|o| !o.is_empty()) {
        let shifted = |v: &str, f: &dyn Fn(u32) -> Option<u32>| v.parse::<u32>().ok().and_then(f).map(|h| h.to_string());
        match o.split_once('=') {
            Some(("uid", v)) => {
                uid = true;
                out.push(format!("uid={}", shifted(v, &|i| map.host_uid(i)).unwrap_or_else(|| v.to_string())));
            }
            Some(("gid", v)) => {
                gid = true;
                out.push(format!("gid={}", shifted(v, &|i| map.host_gid(i)).unwrap_or_else(|| v.to_string())));
            }
            _ => out.push(o.to_string()),
        }
    }
    if !uid {
        out.push(format!("uid={}", map.uid));
    }
    if !gid {
        out.push(format!("gid={}", map.gid));
    }
    out.join(",")
}

pub fn build(l: &Layout, spec: &Spec, mapped: Mapped) -> Result<()> {
    // Nothing mounted here may propagate back to the host; host unmounts still reach us.
    mount("none", Path::new("/"), "", libc::MS_REC | libc::MS_SLAVE, "")?;
    let m = &mapped;
    if l.copy && m.is_some() {
        return Err(Error::invalid("--userns=auto needs overlayfs (this agent copies image layers)"));
    }
    if l.copy {
        // pivot_root needs a mount point.
        mount(&l.rootfs.to_string_lossy(), l.rootfs, "", libc::MS_BIND | libc::MS_REC, "")?;
    } else {
        // Relative lower dirs keep the option string short: it is limited to one page.
        std::env::set_current_dir(l.layers_dir).ctx_path("chdir", l.layers_dir)?;
        let lower: Vec<&str> = l.layers.iter().rev().map(String::as_str).collect();
        if let Some((ns, map)) = m {
            // The shared layers stay host root's on disk; an id-mapped copy of each, stacked on
            // it in this mount namespace only, shows them as the container's root's. The upper
            // layer is not mapped: what the container writes is its range's on the host.
            for d in &lower {
                crate::userns::idmap_in_place(&l.layers_dir.join(d), *ns)?;
            }
            for d in [l.upper, l.work] {
                std::os::unix::fs::chown(d, Some(map.uid), Some(map.gid)).ctx_path("chown", d)?;
            }
        }
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), l.upper.display(), l.work.display());
        if opts.len() >= 4000 {
            return Err(Error::invalid(format!("image has too many layers for one overlay mount ({})", l.layers.len())));
        }
        // Kernels before 5.10 do not know `volatile` (EINVAL): they get the plain mount.
        let volatile = l.volatile && mount("overlay", l.rootfs, "overlay", 0, &format!("{opts},volatile")).is_ok();
        if !volatile {
            mount("overlay", l.rootfs, "overlay", 0, &opts)?;
        }
    }
    let r = l.rootfs;
    let at = |p: &str| scoped_join(r, p);
    let _owner = match m {
        Some((_, map)) => Some(crate::userns::as_mapped_root(map)?),
        None => None,
    };

    let proc_ = at("/proc")?;
    mkdir_p(&proc_)?;
    mount("proc", &proc_, "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "")?;

    let dev = at("/dev")?;
    mkdir_p(&dev)?;
    if spec.privileged {
        // All host devices, including ones plugged in later.
        mount("/dev", &dev, "", libc::MS_BIND | libc::MS_REC, "")?;
    } else {
        mount("tmpfs", &dev, "tmpfs", libc::MS_NOSUID | libc::MS_STRICTATIME, &tmpfs_data("mode=755,size=65536k", m))?;
        for (name, major, minor) in DEVICES {
            mknod_char(&dev.join(name), *major, *minor, 0o666)?;
            chown_mapped(&dev.join(name), m, 0, 0)?;
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
            ("core", "/proc/kcore"),
        ] {
            symlink(target, dev.join(link)).ctx(|| format!("symlink /dev/{link}"))?;
        }
        let pts = dev.join("pts");
        mkdir_p(&pts)?;
        let tty_gid = m.as_ref().and_then(|(_, map)| map.host_gid(5)).unwrap_or(5);
        mount("devpts", &pts, "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, &format!("newinstance,ptmxmode=0666,mode=0620,gid={tty_gid}"))?;
        let shm = dev.join("shm");
        mkdir_p(&shm)?;
        mount("shm", &shm, "tmpfs", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, &tmpfs_data("mode=1777,size=65536k", m))?;
        let mq = dev.join("mqueue");
        mkdir_p(&mq)?;
        // POSIX message queues are an optional kernel feature; containers that need them fail
        // visibly when they open one.
        let _ = mount("mqueue", &mq, "mqueue", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "");
    }
    // `--device` nodes. A privileged container has the host's /dev already, and making a node in it
    // would make it on the host.
    if !spec.privileged {
        for n in &spec.devices {
            let p = at(&n.path)?;
            berth_device::node::make(&p, n)?;
            // A copy made here (not a bind of the host's node) takes the container's view of
            // its owner, so the container's root opens it as host root opens the original.
            if !n.bind {
                chown_mapped(&p, m, n.uid, n.gid)?;
            }
        }
    }

    let sys = at("/sys")?;
    mkdir_p(&sys)?;
    let ro = if spec.privileged { 0 } else { libc::MS_RDONLY };
    mount("sysfs", &sys, "sysfs", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | ro, "")?;

    // From here on, targets may lie in volumes that other containers can change while this one
    // starts: each is resolved and mounted on through a descriptor (inroot.rs).
    let root = Root::open(r)?;
    for name in ["hosts", "hostname", "resolv.conf"] {
        let src = l.etc_dir.join(name);
        let t = format!("/etc/{name}");
        bind_file(&root, &src, &t, m)?;
    }

    for mnt in &spec.mounts {
        match mnt {
            Mount::Bind { source, target, readonly } => bind(&root, source, target, *readonly, None, m)?,
            Mount::BindWith { source, target, readonly, propagation } => bind(&root, source, target, *readonly, Some(propagation), m)?,
            Mount::Tmpfs { target, options } => {
                let (flags, data) = tmpfs_options(options)?;
                mount_on("tmpfs", &root.mkdir_all(target)?, target, "tmpfs", flags, &tmpfs_data(&data, m))?;
            }
        }
    }

    if !spec.privileged {
        for p in MASKED {
            let Ok(fd) = root.open_path(p) else { continue };
            match fs::metadata(fd_path(&fd)) {
                Ok(m) if m.is_dir() => mount_on("tmpfs", &fd, p, "tmpfs", libc::MS_RDONLY, "size=0")?,
                Ok(_) => mount_on("/dev/null", &fd, p, "", libc::MS_BIND, "")?,
                Err(_) => {}
            }
        }
        for p in READONLY {
            let Ok(fd) = root.open_path(p) else { continue };
            mount_on(&fd_path(&fd).to_string_lossy(), &fd, p, "", libc::MS_BIND | libc::MS_REC, "")?;
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC;
            mount_on("none", &root.open_path(p)?, p, "", flags, "")?;
        }
    }
    if spec.read_only {
        mount("none", r, "", libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, "")?;
    }
    Ok(())
}

/// A bind mount of a file, directory, socket or device node: the mount point is made as an
/// empty file for anything but a directory (mounting a file on a directory fails).
fn bind(root: &Root, source: &Path, target: &str, readonly: bool, propagation: Option<&str>, mapped: &Mapped) -> Result<()> {
    let m = fs::metadata(source).ctx_path("bind source", source)?;
    let fd = if m.is_dir() { root.mkdir_all(target)? } else { root.create_file(target)? };
    match mapped {
        // Under a user namespace the host's files are seen id-mapped: host root's are the
        // container root's, and what the container writes there is host root's, as without one.
        Some((ns, _)) => crate::userns::attach(&crate::userns::idmapped_tree(source, *ns, true)?, fd.as_raw_fd(), target)?,
        None => mount_on(&source.to_string_lossy(), &fd, target, "", libc::MS_BIND | libc::MS_REC, "")?,
    }
    if readonly {
        // The mount just made, not the directory underneath.
        mount_on("none", &root.open_path(target)?, target, "", libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, "")?;
    }
    if let Some(p) = propagation {
        mount_on("none", &root.open_path(target)?, target, "", crate::container::mounts::propagation_flags(p), "")?;
    }
    Ok(())
}

/// The /etc files the agent writes, bound onto the container's (id-mapped under a user namespace,
/// so that its root may edit them as Docker lets it).
fn bind_file(root: &Root, src: &Path, target: &str, mapped: &Mapped) -> Result<()> {
    let fd = root.create_file(target)?;
    match mapped {
        Some((ns, _)) => crate::userns::attach(&crate::userns::idmapped_tree(src, *ns, false)?, fd.as_raw_fd(), target),
        None => mount_on(&src.to_string_lossy(), &fd, target, "", libc::MS_BIND, ""),
    }
}

/// pivot_root into `rootfs` without a spare directory (runc's trick: pivot onto itself, then
/// detach the old root stacked underneath).
pub fn pivot(rootfs: &Path) -> Result<()> {
    std::env::set_current_dir(rootfs).ctx_path("chdir", rootfs)?;
    let dot: &CStr = c".";
    // SAFETY: plain syscalls on NUL-terminated constant strings.
    unsafe {
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
            return Err(Error::io("pivot_root", io::Error::last_os_error()));
        }
        if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(Error::io("detach old root", io::Error::last_os_error()));
        }
    }
    std::env::set_current_dir("/").ctx(|| "chdir /".into())
}

/// Brings up `lo` in a fresh network namespace (it starts down).
pub fn loopback_up() -> Result<()> {
    // SAFETY: a plain socket used only for the two ioctls; `ifr` is a zeroed C struct with the
    // interface name copied in, and the descriptor is closed before returning.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(Error::io("socket for lo", io::Error::last_os_error()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(s, libc::SIOCSIFFLAGS as _, &ifr);
        }
        let e = io::Error::last_os_error();
        libc::close(s);
        if rc != 0 {
            return Err(Error::io("bring up lo", e));
        }
    }
    Ok(())
}

pub fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_join_never_leaves_root() {
        let root = std::env::temp_dir().join(format!("berth-sj-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../..", root.join("real/up")).unwrap();
        symlink("real", root.join("rel")).unwrap();
        assert_eq!(scoped_join(&root, "/abs/passwd").unwrap(), root.join("etc/passwd"));
        assert_eq!(scoped_join(&root, "/real/up/x").unwrap(), root.join("x"));
        assert_eq!(scoped_join(&root, "/../../x").unwrap(), root.join("x"));
        assert_eq!(scoped_join(&root, "/rel/sub").unwrap(), root.join("real/sub"));
        symlink("loop", root.join("loop")).unwrap();
        assert!(scoped_join(&root, "/loop/x").is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}
