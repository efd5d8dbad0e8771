//! `--storage-opt size=SIZE`: a project quota on the container's writable layer (its overlay
//! upper and work directories), where the file system has project quotas: ext4 with the
//! `project,quota` features mounted with `prjquota`, or xfs mounted with `pquota`. The
//! directories get a project id of their own with the inherit flag, so everything the container
//! writes counts against it, and the limit is set with quotactl.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// `struct fsxattr` of <linux/fs.h> (not in the libc crate).
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

// _IOR('X', 31, struct fsxattr) and _IOW('X', 32, struct fsxattr): the generic ioctl encoding
// of x86, arm and aarch64.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x200;
const PRJQUOTA: i32 = 2;
const QIF_BLIMITS: u32 = 1;

pub const UNSUPPORTED: &str =
    "--storage-opt is supported only for overlay over xfs with 'pquota' mount option or ext4 with project quotas ('prjquota')";

/// The writable layer's limit in bytes from `--storage-opt` values (None without one).
pub fn parse(opts: &[String]) -> Result<Option<u64>> {
    let mut size = None;
    for o in opts {
        match o.split_once('=') {
            Some(("size", v)) => {
                let n = crate::cgroup::parse_size(v)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::invalid(format!("invalid storage option size {v:?}")))?;
                size = Some(n as u64);
            }
            _ => return Err(Error::invalid(format!("--storage-opt {o}: unknown option (size=SIZE)"))),
        }
    }
    Ok(size)
}

/// A project id of the container's own, from its (random) id: never 0, the default project.
pub fn project_id(container_id: &str) -> u32 {
    let n = u32::from_str_radix(container_id.get(..8).unwrap_or("1"), 16).unwrap_or(1) & 0x7fff_ffff;
    n.max(1)
}

/// Puts `dirs` in project `projid` (inherited by what is made in them) and limits the project
/// to `bytes` on their file system; a file system without project quotas is [`UNSUPPORTED`].
pub fn limit(dirs: &[&Path], projid: u32, bytes: u64) -> Result<()> {
    let unsupported = |what: &str, e: std::io::Error| Error::invalid(format!("{UNSUPPORTED} ({what}: {e})"));
    for d in dirs {
        let f = File::open(d).ctx_path("open", d)?;
        let mut x = FsXattr::default();
        // SAFETY: FS_IOC_FSGETXATTR writes one struct fsxattr into `x`, which we own.
        if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSGETXATTR as _, &mut x as *mut FsXattr) } != 0 {
            return Err(unsupported(&d.display().to_string(), std::io::Error::last_os_error()));
        }
        x.projid = projid;
        x.xflags |= FS_XFLAG_PROJINHERIT;
        // SAFETY: FS_IOC_FSSETXATTR reads one struct fsxattr from `x`.
        if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSSETXATTR as _, &x as *const FsXattr) } != 0 {
            return Err(unsupported(&d.display().to_string(), std::io::Error::last_os_error()));
        }
    }
    let Some(first) = dirs.first() else { return Ok(()) };
    set_quota(first, projid, bytes.div_ceil(1024)).map_err(|e| unsupported(&format!("quota on {}", first.display()), e))
}

/// Drops project `projid`'s limit (the container is gone); failures are of no consequence.
pub fn clear(dir: &Path, projid: u32) {
    let _ = set_quota(dir, projid, 0);
}

/// Q_SETQUOTA on PRJQUOTA for the file system holding `dir`: `kib` KiB (0: no limit).
fn set_quota(dir: &Path, projid: u32, kib: u64) -> std::io::Result<()> {
    // SAFETY: dqblk is a plain C struct: all zeroes is a valid value.
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    q.dqb_bhardlimit = kib;
    q.dqb_bsoftlimit = kib;
    q.dqb_valid = QIF_BLIMITS;
    let cmd = (libc::Q_SETQUOTA << 8) | PRJQUOTA;
    let f = File::open(dir)?;
    // SAFETY: quotactl_fd reads one dqblk from `q` for the file system of the open descriptor.
    let rc = unsafe { libc::syscall(libc::SYS_quotactl_fd, f.as_raw_fd(), cmd, projid, &mut q as *mut libc::dqblk) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    // Kernels before 5.14: the classic call, which wants the file system's block device.
    let dev = crate::fsutil::cstring(&block_device(dir)?).map_err(|e| std::io::Error::other(e.to_string()))?;
    // SAFETY: quotactl reads one dqblk from `q`; `dev` is NUL-terminated.
    if unsafe { libc::quotactl(cmd, dev.as_ptr(), projid as i32, (&mut q as *mut libc::dqblk).cast()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The block device of the file system holding `dir`, from /proc/self/mountinfo.
fn block_device(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir)?.dev();
    let want = format!("{}:{}", libc::major(dev), libc::minor(dev));
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    info.lines()
        .filter(|l| l.split(' ').nth(2) == Some(want.as_str()))
        .find_map(|l| l.split_once(" - ").and_then(|(_, r)| r.split(' ').nth(1)).filter(|s| s.starts_with('/')).map(Into::into))
        .ok_or_else(|| std::io::Error::other(format!("no block device for {want}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_size_and_rejects_the_rest() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&["size=8m".into()]).unwrap(), Some(8 << 20));
        assert!(parse(&["size=x".into()]).is_err() && parse(&["inodes=3".into()]).is_err());
        assert_eq!(project_id("00000000ab"), 1);
        assert_eq!(project_id("ffffffffab"), 0x7fff_ffff);
    }
}
