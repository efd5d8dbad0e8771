//! The agent runs its own binary through a read-only mount (CVE-2019-5736).
//!
//! Every process that enters a container is a fork of the agent until it execs, and a container
//! can make such a process exec the agent's binary again (`#!/proc/self/exe` as the command of an
//! `exec`). A process in the container may then open `/proc/<pid>/exe` and, once it is no longer
//! running anywhere, reopen it for writing: the host's berth is replaced. Re-executing the agent
//! once at start from a read-only bind mount of its binary, detached right after it was opened,
//! makes every such reopen fail with EROFS, and costs no copy of the binary (runc took the same
//! approach before it moved to a memfd or overlay copy). The helpers are also non-dumpable until
//! they exec (spawn.rs), so a container cannot open their `/proc/<pid>/exe` or ptrace them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Set in the environment of the re-executed agent (and removed there).
const MARKER: &str = "BERTH_EXE_READ_ONLY";

fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b).map_err(|_| Error::invalid("an argument or environment entry holds a NUL byte"))
}

/// Whether this process already runs from the read-only mount; clears the marker.
fn already() -> bool {
    if std::env::var_os(MARKER).is_none() {
        return false;
    }
    // SAFETY: the agent is still single-threaded here: nothing reads the environment concurrently.
    unsafe { std::env::remove_var(MARKER) };
    // execveat with an empty path names the process after the descriptor ("3"): be "berth".
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"berth".as_ptr()) };
    true
}

/// Re-executes the calling (single-threaded) process from a read-only, detached bind mount of
/// its binary, with the same arguments and environment; returns only when it is already running
/// that way, or with an error when it cannot (the caller decides whether to go on without).
/// `scratch` is a directory on the host for the moment the mount needs a place.
pub fn reexec_read_only(scratch: &Path) -> Result<()> {
    if already() {
        return Ok(());
    }
    std::fs::create_dir_all(scratch).map_err(|e| Error::io(format!("create {}", scratch.display()), e))?;
    let target = scratch.join(format!(".berth-exe-{}", std::process::id()));
    std::fs::write(&target, b"").map_err(|e| Error::io(format!("create {}", target.display()), e))?;
    let res = open_read_only(&target);
    let _ = std::fs::remove_file(&target);
    let fd = res?;
    let mut argv = Vec::new();
    for a in std::env::args_os() {
        argv.push(cstr(a.as_bytes())?);
    }
    let mut envp = Vec::new();
    for (k, v) in std::env::vars_os() {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(cstr(&kv)?);
    }
    envp.push(cstr(format!("{MARKER}=1").as_bytes())?);
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: execveat on a descriptor we own with NULL-terminated arrays of NUL-terminated
    // strings that outlive the call; it returns only on failure.
    unsafe { libc::syscall(libc::SYS_execveat, fd.as_raw_fd(), c"".as_ptr(), a.as_ptr(), e.as_ptr(), libc::AT_EMPTY_PATH) };
    Err(Error::io("re-execute berth from its read-only mount", io::Error::last_os_error()))
}

/// Binds /proc/self/exe onto `target`, makes the bind read-only, opens it (O_PATH) and detaches
/// the mount: the descriptor keeps it alive, and nothing of it is left in the mount table.
fn open_read_only(target: &Path) -> Result<OwnedFd> {
    let t = cstr(target.as_os_str().as_bytes())?;
    let fail = |what: &str| Error::io(format!("{what} {}", target.display()), io::Error::last_os_error());
    // SAFETY: mount/umount2/open with NUL-terminated paths that outlive the calls.
    unsafe {
        if libc::mount(c"/proc/self/exe".as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
            return Err(fail("bind berth's binary onto"));
        }
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        if libc::mount(std::ptr::null(), t.as_ptr(), std::ptr::null(), flags, std::ptr::null()) != 0 {
            let err = fail("make read-only");
            libc::umount2(t.as_ptr(), libc::MNT_DETACH);
            return Err(err);
        }
        let fd = libc::open(t.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        let err = fail("open");
        libc::umount2(t.as_ptr(), libc::MNT_DETACH);
        if fd < 0 {
            return Err(err);
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
