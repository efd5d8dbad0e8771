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

/// This process's environment with `set` added, an entry of `set` replacing an inherited one of
/// the same name, as `NAME=value` strings for exec.
fn environment(set: &[(&str, &std::ffi::OsStr)]) -> Result<Vec<CString>> {
    let inherited = std::env::vars_os().filter(|(k, _)| !set.iter().any(|(n, _)| k.as_bytes() == n.as_bytes()));
    let mut envp = Vec::new();
    for (k, v) in inherited {
        envp.push(cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
    }
    for (k, v) in set {
        envp.push(cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
    }
    Ok(envp)
}

/// The NULL-terminated pointer array exec takes; valid while `strings` lives.
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
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
    std::fs::create_dir_all(scratch).map_err(|e| Error::io_at("create", scratch, e))?;
    let target = scratch.join(format!(".berth-exe-{}", std::process::id()));
    std::fs::write(&target, b"").map_err(|e| Error::io_at("create", &target, e))?;
    let res = open_read_only(&target);
    let _ = std::fs::remove_file(&target);
    let fd = res?;
    let mut argv = Vec::new();
    for a in std::env::args_os() {
        argv.push(cstr(a.as_bytes())?);
    }
    let envp = environment(&[(MARKER, "1".as_ref())])?;
    let (a, e) = (pointers(&argv), pointers(&envp));
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

/// Starts berth itself as a child (`/proc/self/exe ARGS`, the agent's environment plus `env`),
/// with stdin and stdout on /dev/null and stderr into `stderr`; returns its pid for the caller's
/// SIGCHLD reaper. For the update manager's `load` and `pull`, which run out of the agent's
/// process. Not std's `Command`: this is the only place the firmware would use it, and it brings
/// about 10 KB of spawning code (posix_spawn, its own environment map) for these two calls.
pub fn spawn(args: &[&std::ffi::OsStr], env: &[(&str, &std::ffi::OsStr)], stderr: &std::fs::File) -> Result<i32> {
    let mut argv = vec![cstr(b"berth")?];
    for a in args {
        argv.push(cstr(a.as_bytes())?);
    }
    let envp = environment(env)?;
    let (a, e) = (pointers(&argv), pointers(&envp));
    let null = std::fs::File::options().read(true).write(true).open("/dev/null").map_err(|e| Error::io("open /dev/null", e))?;
    let (null, err) = (null.as_raw_fd(), stderr.as_raw_fd());
    // SAFETY: the child makes only async-signal-safe calls on memory prepared above (it does
    // not allocate or take a lock another thread may have held at the fork) and leaves by exec
    // or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; the signal mask is emptied, as a fresh process has it (exec keeps
        // the mask, and the caller may block signals).
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            if libc::dup2(null, 0) >= 0 && libc::dup2(null, 1) >= 0 && libc::dup2(err, 2) >= 0 {
                libc::execve(c"/proc/self/exe".as_ptr(), a.as_ptr(), e.as_ptr());
            }
            libc::_exit(127)
        }
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child half of the test below: this test binary, started again by `spawn` with
    /// `SELFEXE_PROBE` set, reports what it was given on its stderr. Run on its own it does nothing.
    #[test]
    fn spawn_probe_child() {
        if std::env::var_os("SELFEXE_PROBE").is_none() {
            return;
        }
        let environ = std::fs::read("/proc/self/environ").unwrap_or_default();
        let paths = environ.split(|b| *b == 0).filter(|kv| kv.starts_with(b"PATH=")).count();
        // This thread's own mask (thread-self): /proc/self is the main thread, whose mask is all
        // blocked for a moment while it starts a thread (as it does to run this test).
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("").trim().to_string();
        let stdin = std::fs::read_link("/proc/self/fd/0").unwrap_or_default();
        let stdout = std::fs::read_link("/proc/self/fd/1").unwrap_or_default();
        eprintln!("probe={:?}", std::env::var("SELFEXE_PROBE"));
        eprintln!("path={:?} entries={paths}", std::env::var("PATH"));
        eprintln!("stdin={} stdout={}", stdin.display(), stdout.display());
        eprintln!("blocked={}", field("SigBlk:"));
    }

    #[test]
    fn spawn_runs_berth_with_its_environment_stdio_and_an_empty_signal_mask() {
        let dir = std::env::temp_dir().join(format!("berth-selfexe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err_path = dir.join("stderr");
        let err = std::fs::File::create(&err_path).unwrap();
        // A signal blocked by the caller must not stay blocked in the child.
        // SAFETY: sigset operations on a local set; pthread_sigmask on this thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR2);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let args = ["--exact".as_ref(), "selfexe::tests::spawn_probe_child".as_ref(), "--nocapture".as_ref(), "--test-threads=1".as_ref()];
        let env = [("SELFEXE_PROBE", "yes".as_ref()), ("PATH", "/probe/bin".as_ref())];
        let pid = spawn(&args, &env, &err).unwrap();
        let mut st = 0;
        // SAFETY: waits for the child just started.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "child status {st}");
        let out = std::fs::read_to_string(&err_path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.contains("probe=Ok(\"yes\")"), "{out}");
        assert!(out.contains("path=Ok(\"/probe/bin\") entries=1"), "an entry given replaces the inherited one: {out}");
        assert!(out.contains("stdin=/dev/null stdout=/dev/null"), "{out}");
        assert!(out.contains("blocked=0000000000000000"), "{out}");
    }
}
