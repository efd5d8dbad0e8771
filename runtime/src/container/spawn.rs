//! Starting a container's process. The process model, all from a single-threaded caller:
//!
//! ```text
//! agent ── fork ──> monitor: setns/unshare(mnt, uts, ipc, pid[, net])
//!                        └─ fork ──> pid 1 of the new namespaces: joins the cgroup, rootfs,
//!                                     pivot_root, hostname, rlimits, capabilities, user, exec
//!                                     (or, with --init, a tiny init that forks the command and
//!                                     forwards signals)
//! ```
//! The monitor (podman's conmon plays this part) stays outside the container's cgroup, so an
//! OOM kill never takes it. It reaps the container, copies its output into the size-capped log
//! ring, writes the exit status to `<container dir>/exit` and exits with it. Should the agent
//! die, containers keep running and logging; a new agent re-adopts them by the monitor's pid.
//! Once the container runs, the monitor re-executes the berth binary as a monitor alone
//! ([`MONITOR_ARG`]): a fork would keep a private copy of every page of the agent's heap that the
//! agent writes later (copy-on-write), most of a monitor's memory.
//! Namespaces come from unshare()+fork(), never clone() with CLONE_NEW* flags, which qemu-user
//! rejects. Every failure in the children travels back over a close-on-exec pipe: end-of-file
//! means the command was exec'd.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::cgroup::Cgroup;
use crate::container::caps;
use crate::container::logs::{LogConfig, Ring};
use crate::container::rootfs::{self, Layout};
use crate::container::spec::{Net, Spec};
use crate::error::{Error, Result};
use crate::net::netlink::Netlink;
use crate::net::network::{self, Attach};

/// Why a container could not start, with Docker's exit code: 125 berth's own failure, 126 the
/// command cannot be run, 127 it does not exist.
#[derive(Debug, Clone)]
pub struct StartError {
    pub code: i32,
    pub msg: String,
}

impl From<Error> for StartError {
    fn from(e: Error) -> Self {
        StartError { code: 125, msg: e.to_string() }
    }
}

/// Where the container's stdio goes.
pub enum Output {
    /// Descriptors that become the container's 0, 1 and 2 (a foreground client's).
    Passed([RawFd; 3]),
    /// stdin from /dev/null; stdout and stderr into the log ring.
    Log(LogConfig),
}

pub struct Launch<'a> {
    pub spec: &'a Spec,
    pub layout: Layout<'a>,
    pub cgroup: &'a Cgroup,
    pub output: Output,
    /// `/proc/<pid>/ns/net` of the container whose network this one joins.
    pub join_net: Option<PathBuf>,
    /// The container's directory: logs and the `exit` file go there.
    pub dir: &'a Path,
    /// Bridge network endpoints to make in a new network namespace before the command runs.
    pub attach: &'a [Attach],
}

/// A started container: its pid 1 and its monitor (the agent's child).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub pid: i32,
    pub monitor: i32,
}

/// The exit status a monitor recorded, if it has.
pub fn recorded_exit(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("exit")).ok()?.trim().parse().ok()
}

/// The start time (clock ticks since boot) of a live `pid`, to tell a process from a later one
/// that reuses its pid. None for a zombie: an orphaned monitor that has exited may wait a while
/// for the host's init to reap it.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    if matches!(fields.next(), Some("Z") | Some("X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("pipe", io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn send(fd: RawFd, tag: u8, payload: &[u8]) {
    let mut msg = Vec::with_capacity(payload.len() + 5);
    msg.push(tag);
    msg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    msg.extend_from_slice(payload);
    // SAFETY: writes from a live buffer to a descriptor we hold; a short or failed write only
    // loses the report, and the parent then sees an unexplained exit.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

fn fail(fd: RawFd, code: i32, msg: &str) -> ! {
    let mut p = vec![code as u8];
    p.extend_from_slice(msg.as_bytes());
    send(fd, b'E', &p);
    // SAFETY: _exit never returns and runs no destructors or atexit handlers of the parent image.
    unsafe { libc::_exit(code) }
}

/// Reads the children's reports until end of file (the command was exec'd, or they died): the
/// process's pid ('P') and a failure ('E'), if any.
fn read_reports(rd: OwnedFd) -> (Option<i32>, Option<StartError>) {
    let mut r = io::BufReader::new(std::fs::File::from(rd));
    let (mut pid, mut failure) = (None, None);
    loop {
        let mut head = [0u8; 5];
        if r.read_exact(&mut head).is_err() {
            break;
        }
        let mut payload = vec![0u8; u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize];
        if r.read_exact(&mut payload).is_err() {
            break;
        }
        match head[0] {
            b'P' if payload.len() == 4 => pid = Some(i32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]])),
            b'E' if !payload.is_empty() => {
                failure = Some(StartError { code: i32::from(payload[0]), msg: String::from_utf8_lossy(&payload[1..]).into_owned() });
            }
            _ => {}
        }
    }
    (pid, failure)
}

/// The container's system call filter, compiled here, in the agent, so that a profile the kernel
/// or berth cannot take is reported before anything forks; none with `--privileged`.
type Filter = Option<Vec<libc::sock_filter>>;

fn filter(spec: &Spec) -> Result<Filter> {
    match spec.seccomp.source() {
        Some(json) if !spec.privileged => Ok(Some(crate::seccomp::compile(json, &spec.caps)?)),
        _ => Ok(None),
    }
}

/// Installs the filter at the point runc and crun do: with no_new_privs, as late as possible,
/// just before exec (`late`); without it the kernel wants CAP_SYS_ADMIN, so while the process
/// still holds it, before the user and capabilities change (the profile must then allow the few
/// calls left: setgroups, setres[ug]id, capset, prctl, chdir, execve: Docker's does).
fn install_filter(f: &Filter, spec: &Spec, late: bool) -> std::result::Result<(), StartError> {
    match f {
        Some(prog) if late == spec.no_new_privs => Ok(crate::seccomp::install(prog)?),
        _ => Ok(()),
    }
}

/// Forks the monitor, which starts the container.
pub fn start(l: &Launch) -> std::result::Result<Started, StartError> {
    let filter = filter(l.spec)?;
    let (rd, wr) = pipe()?;
    // SAFETY: the caller is single-threaded (the agent's current-thread runtime, no blocking
    // pool), so the child's copy of the address space holds no lock another thread owned.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io("fork", io::Error::last_os_error()).into());
    }
    if pid == 0 {
        drop(rd);
        intermediate(l, &filter, wr.as_raw_fd())
    }
    drop(wr);
    let (container, outcome) = read_reports(rd);
    match (outcome, container) {
        (None, Some(p)) => Ok(Started { pid: p, monitor: pid }),
        (Some(e), _) => {
            // The monitor reaps the failed container and exits; reap it here so the failure is
            // over (and leaves no zombie) when the caller cleans up.
            let mut st = 0;
            // SAFETY: waits for our direct child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            Err(e)
        }
        (None, None) => {
            let mut st = 0;
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            Err(StartError { code: 125, msg: "container setup ended without a report".into() })
        }
    }
}

fn reset_signals() {
    // SAFETY: restoring default dispositions and an empty mask; no Rust state is involved.
    unsafe {
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn intermediate(l: &Launch, filter: &Filter, report: RawFd) -> ! {
    reset_signals();
    install_panic_report(report);
    // The container's stdio: passed descriptors, or pipes into the log ring.
    let (stdio, pipes) = match &l.output {
        Output::Passed(fds) => (*fds, None),
        Output::Log(_) => {
            let (Ok((out_r, out_w)), Ok((err_r, err_w))) = (pipe(), pipe()) else {
                fail(report, 125, &format!("log pipes: {}", io::Error::last_os_error()));
            };
            let null = match std::fs::File::open("/dev/null") {
                Ok(f) => OwnedFd::from(f),
                Err(e) => fail(report, 125, &format!("open /dev/null: {e}")),
            };
            ([null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()], Some((out_r, err_r, out_w, err_w, null)))
        }
    };
    let mut keep = vec![0, 1, 2, report];
    keep.extend(stdio);
    if let Some((r1, r2, ..)) = &pipes {
        keep.extend([r1.as_raw_fd(), r2.as_raw_fd()]);
    }
    close_other_fds(&keep);
    if let Some(ns) = &l.join_net {
        let f = match std::fs::File::open(ns) {
            Ok(f) => f,
            Err(e) => fail(report, 125, &format!("join network of {}: {e}", ns.display())),
        };
        // SAFETY: setns on a namespace descriptor we opened.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            fail(report, 125, &format!("join network namespace: {}", io::Error::last_os_error()));
        }
    }
    // Not the mount namespace: pivot_root moves the root of every process in a namespace, and
    // the monitor must keep the host's view to write logs and the exit status. The container
    // makes its own (below).
    let mut flags = libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
    if matches!(l.spec.net, Net::Bridge(_)) && l.attach.is_empty() {
        fail(report, 125, "bridge network: no endpoint to attach");
    }
    if l.spec.net == Net::None || !l.attach.is_empty() {
        flags |= libc::CLONE_NEWNET;
    }
    // `--userns=auto`: the namespace is made (maps written) here, in the host's pid namespace,
    // where the helper's pid names it in /proc; pid 1 enters it once its mounts are made.
    let userns = match &l.spec.userns {
        Some(m) => match crate::userns::create(m) {
            Ok(fd) => Some(fd),
            Err(e) => fail(report, 125, &e.to_string()),
        },
        None => None,
    };
    // The bridge side of the veth pairs is made from the namespace we leave.
    let host_nl = match l.attach.is_empty() {
        true => None,
        false => match Netlink::open() {
            Ok(nl) => Some(nl),
            Err(e) => fail(report, 125, &e.to_string()),
        },
    };
    // SAFETY: unshare only changes this process's namespaces.
    if unsafe { libc::unshare(flags) } != 0 {
        fail(report, 125, &format!("create namespaces: {}", io::Error::last_os_error()));
    }
    if let Some(mut host) = host_nl {
        if let Err(e) = attach_networks(&mut host, l.attach) {
            fail(report, 125, &e.to_string());
        }
    }
    // SIGCHLD is blocked before the fork so that the monitor's signalfd cannot miss an early exit.
    let sfd = match chld_signalfd() {
        Ok(fd) => fd,
        Err(e) => fail(report, 125, &e.to_string()),
    };
    let cgroup2 = l.cgroup.cgroup2_dir().and_then(|d| std::fs::File::open(d).ok());
    let (pid, born_in_cgroup2) = match fork_into(cgroup2.as_ref()) {
        Ok(r) => r,
        Err(e) => fail(report, 125, &format!("fork: {e}")),
    };
    if pid == 0 {
        container_init(l, filter, stdio, report, userns.as_ref().map(AsRawFd::as_raw_fd), born_in_cgroup2);
    }
    drop(userns);
    send(report, b'P', &pid.to_le_bytes());
    // Only the container may hold its ends of stdio: EOF on the logs (and on a foreground
    // client's terminal) must come when the container is gone.
    let readers = pipes.map(|(out_r, err_r, ..)| (out_r, err_r));
    if let Output::Passed(fds) = l.output {
        for fd in fds {
            // SAFETY: closes our copies of the passed descriptors; the container has its own.
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: closing our end of the report pipe: the agent sees EOF once the container execs.
    unsafe { libc::close(report) };
    let cfg = match &l.output {
        Output::Log(cfg) => Some(cfg.clone()),
        Output::Passed(_) => None,
    };
    exec_monitor(pid, &sfd, readers.as_ref(), cfg.as_ref(), l.dir);
    // The exec failed: this copy of the agent monitors (more memory, the same work).
    monitor(pid, sfd, readers, cfg.map(|c| Ring::new(l.dir, c)), Some(l.dir))
}

/// The first argument of the berth binary run as a container's monitor, by the monitor itself.
pub const MONITOR_ARG: &str = "__berth-monitor";

/// Replaces this process (the container's parent: exec keeps the child, the signal mask and the
/// signalfd) with a fresh berth that only monitors. Returns if the exec fails.
fn exec_monitor(child: i32, sfd: &OwnedFd, readers: Option<&(OwnedFd, OwnedFd)>, log: Option<&LogConfig>, dir: &Path) {
    let inherit = |fd: RawFd| {
        // SAFETY: clears close-on-exec on a descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        fd.to_string()
    };
    let (out, err) = match readers {
        Some((o, e)) => (inherit(o.as_raw_fd()), inherit(e.as_raw_fd())),
        None => ("-".to_string(), "-".to_string()),
    };
    let log = log.map_or("-".to_string(), |c| format!("{}:{}:{}", u8::from(c.enabled), c.max_size, c.max_files));
    let args = ["berth-monitor".to_string(), MONITOR_ARG.to_string(), child.to_string(), inherit(sfd.as_raw_fd()), out, err, log];
    let mut cargs: Vec<CString> = args.iter().filter_map(|a| CString::new(a.as_str()).ok()).collect();
    let Ok(d) = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str())) else { return };
    cargs.push(d);
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated strings that outlive
    // the call; execve returns only on failure.
    unsafe { libc::execve(c"/proc/self/exe".as_ptr(), argv.as_ptr(), envp.as_ptr()) };
}

/// The monitor run by [`exec_monitor`]: `args` are what follows [`MONITOR_ARG`].
pub fn monitor_main(args: &[std::ffi::OsString]) -> ! {
    // As the helpers before their exec: no core dumps or ptrace from the containers' side.
    // SAFETY: PR_SET_DUMPABLE takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    let arg = |i: usize| args.get(i).and_then(|a| a.to_str());
    let fd = |i: usize| -> Option<OwnedFd> {
        let n: RawFd = arg(i)?.parse().ok()?;
        // SAFETY: the descriptor was handed over by number across our own exec; nothing else in
        // this fresh process owns it.
        Some(unsafe { OwnedFd::from_raw_fd(n) })
    };
    let (Some(child), Some(sfd), Some(dir)) = (arg(0).and_then(|c| c.parse::<i32>().ok()), fd(1), args.get(5)) else {
        // SAFETY: leaves at once; the agent then reports the missing exit status.
        unsafe { libc::_exit(255) }
    };
    let readers = fd(2).zip(fd(3));
    let log = arg(4).and_then(|c| {
        let mut f = c.split(':');
        let (e, size, files) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
        Some(LogConfig { enabled: e == "1", max_size: size, max_files: files })
    });
    let dir = PathBuf::from(dir);
    monitor(child, sfd, readers, log.map(|c| Ring::new(&dir, c)), Some(&dir))
}

/// Makes the container's network interfaces in the namespace this process has just entered:
/// the pid 1 forked next finds them ready.
fn attach_networks(host: &mut Netlink, attach: &[Attach]) -> Result<()> {
    let ns = std::fs::File::open("/proc/self/ns/net").map_err(|e| Error::io("open /proc/self/ns/net", e))?;
    let mut inner = Netlink::open()?;
    for a in attach {
        network::plumb(host, &mut inner, ns.as_raw_fd(), a)?;
    }
    Ok(())
}

/// Closes every descriptor but `keep`: what a fork inherits from the agent (its lock file, its
/// sockets, other containers' pipes) must not live on in a monitor or a container. With
/// close_range(2) (Linux 5.9) the gaps between the kept ones go a range at a time; older kernels
/// get the list from /proc/self/fd (a directory read and a close per descriptor).
fn close_other_fds(keep: &[RawFd]) {
    let mut kept: Vec<u32> = keep.iter().filter_map(|fd| u32::try_from(*fd).ok()).collect();
    kept.sort_unstable();
    kept.dedup();
    let mut first = 0u32;
    for next in kept.iter().map(|k| Some(*k)).chain([None]) {
        let last = match next {
            Some(k) if k == first => {
                first = k.saturating_add(1);
                continue;
            }
            Some(k) => k - 1,
            None => u32::MAX,
        };
        // SAFETY: closes the descriptors numbered first..=last of this process; nothing else
        // uses them after the fork.
        if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0 {
            return close_listed_fds(keep);
        }
        first = next.map_or(u32::MAX, |k| k.saturating_add(1));
    }
}

fn close_listed_fds(keep: &[RawFd]) {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect())
        .unwrap_or_default();
    for fd in fds {
        if !keep.contains(&fd) {
            // SAFETY: closing a descriptor number this process has; nothing else uses it after
            // the fork. (The directory iterator's own descriptor is already closed here.)
            unsafe { libc::close(fd) };
        }
    }
}

fn chld_signalfd() -> Result<OwnedFd> {
    // SAFETY: builds and applies a signal mask; signalfd returns a new descriptor we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(Error::io("signalfd", io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The monitor's loop: copy output into the log ring until the container exits, then record the
/// exit status and leave with it. Plain poll() and signalfd: old board kernels have no pidfd.
fn monitor(child: i32, sfd: OwnedFd, readers: Option<(OwnedFd, OwnedFd)>, mut log: Option<Ring>, dir: Option<&Path>) -> ! {
    // Our own name in `ps`, instead of a copy of the agent's command line: a container's monitor,
    // or the waiter of an `exec` (and of a health check).
    let name = if dir.is_some() { c"berth-monitor" } else { c"berth-exec" };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    let mut streams: Vec<Option<OwnedFd>> = match readers {
        Some((o, e)) => vec![Some(o), Some(e)],
        None => Vec::new(),
    };
    // 16 KiB (conmon reads 8 KiB at a time): a 64 KiB buffer, zeroed, was a fifth of a monitor's
    // own memory.
    let mut buf = vec![0u8; 16 * 1024];
    let mut code = None;
    loop {
        let mut pfds = vec![libc::pollfd { fd: sfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        for s in &streams {
            pfds.push(libc::pollfd { fd: s.as_ref().map_or(-1, |f| f.as_raw_fd()), events: libc::POLLIN, revents: 0 });
        }
        // Once the container is gone, only drain what is left in the pipes.
        let timeout = if code.is_some() { 0 } else { -1 };
        // SAFETY: `pfds` is a valid array of pollfd for the given length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
        for (i, s) in streams.iter_mut().enumerate() {
            if pfds[i + 1].revents == 0 {
                continue;
            }
            let Some(fd) = s else { continue };
            // SAFETY: reads into our buffer from a pipe we own.
            let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                if let Some(l) = &mut log {
                    l.write(i, &buf[..r as usize]);
                }
            } else {
                if let Some(l) = &mut log {
                    l.flush(i);
                }
                *s = None;
            }
        }
        if pfds[0].revents != 0 {
            let mut info = [0u8; 128];
            // SAFETY: drains the signalfd into a buffer of siginfo size.
            unsafe { libc::read(sfd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) };
            loop {
                let mut st = 0;
                // SAFETY: reaps any child; the container is our only one.
                let p = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
                if p <= 0 {
                    break;
                }
                if p == child {
                    code = Some(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) });
                }
            }
        }
        if code.is_some() && (n == 0 || streams.iter().all(Option::is_none)) {
            break;
        }
    }
    for i in 0..streams.len() {
        if let Some(l) = &mut log {
            l.flush(i);
        }
    }
    if let Some(l) = &mut log {
        l.report_dropped();
    }
    let code = code.unwrap_or(255);
    if let Some(dir) = dir {
        // A re-executed monitor has not the agent's reserve set: `<root>/containers/<id>`.
        if let Some(root) = dir.parent().and_then(Path::parent) {
            crate::reserve::attach(root);
        }
        let _ = crate::fsutil::replace(&dir.join("exit"), format!("{code}\n").as_bytes());
    }
    // SAFETY: leaves without running the agent's destructors.
    unsafe { libc::_exit(code) }
}

/// A panic in a child must not hang it (pid 1 ignores SIGABRT) nor unwind into agent code.
fn install_panic_report(report: RawFd) {
    std::panic::set_hook(Box::new(move |info| {
        fail(report, 125, &format!("internal error in container setup: {info}"));
    }));
}

/// Until it execs, a process that enters a container is berth: the container must not be able
/// to ptrace it or open its `/proc/<pid>/exe` (CVE-2019-5736). Non-dumpable, only a holder of
/// CAP_SYS_PTRACE could; exec makes the command dumpable again.
fn hide_from_container() {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// fork() for a container's process (pid 1, or an `exec`), born in the cgroup2 group `cgroup2`
/// (its open directory) when there is one and the kernel takes clone3 with CLONE_INTO_CGROUP
/// (Linux 5.7): a move into a cgroup2 group afterwards (cgroup.procs) takes the kernel's global
/// threadgroup lock and, as its first writer after a quiet spell, waits an RCU grace period: a
/// few ms to tens of ms per start. Returns the pid (0 in the child) and whether the child was
/// born there; falls back to fork() where clone3 is refused (an older kernel, qemu-user: ENOSYS).
/// The caller is single-threaded. clone3 skips the C library's fork bookkeeping: in the child
/// only the thread id the C library caches is stale (musl's raise() uses it), which nothing
/// between here and the container's exec relies on (a panic there ends the process by trap).
fn fork_into(cgroup2: Option<&std::fs::File>) -> io::Result<(i32, bool)> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    /// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    if let Some(dir) = cgroup2 {
        let args =
            CloneArgs { flags: CLONE_INTO_CGROUP, exit_signal: libc::SIGCHLD as u64, cgroup: dir.as_raw_fd() as u64, ..Default::default() };
        // SAFETY: clone3 without CLONE_VM or a stack is fork(): the child gets a copy of this
        // single-threaded process and returns here with 0; `args` outlives the call.
        let r = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
        if r >= 0 {
            return Ok((r as i32, true));
        }
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EOPNOTSUPP | libc::EPERM)) {
            return Err(e);
        }
    }
    // SAFETY: the caller is single-threaded (a fresh fork of the agent).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((pid, false))
}

fn container_init(l: &Launch, filter: &Filter, stdio: [RawFd; 3], report: RawFd, userns: Option<RawFd>, born_in_cgroup2: bool) -> ! {
    hide_from_container();
    reset_signals();
    // The container joins its cgroup itself, so the monitor stays outside it.
    if let Err(e) = l.cgroup.join_self(born_in_cgroup2) {
        fail(report, 125, &e.to_string());
    }
    // SAFETY: unshare only changes this process's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        fail(report, 125, &format!("create mount namespace: {}", io::Error::last_os_error()));
    }
    let report = match wire_stdio(stdio, report, userns) {
        Ok(fd) => fd,
        Err(e) => fail(report, 125, &e.to_string()),
    };
    install_panic_report(report);
    match setup(l, filter, report, userns) {
        Err(e) => fail(report, e.code, &e.msg),
        // exec does not return on success
        Ok(()) => fail(report, 125, "container setup returned without exec"),
    }
}

/// Puts the given descriptors on 0, 1, 2 and closes everything else but `keep` (returned under
/// a new number) and `also` (close-on-exec descriptors the setup still needs).
fn wire_stdio(stdio: [RawFd; 3], keep: RawFd, also: Option<RawFd>) -> Result<RawFd> {
    // SAFETY: descriptor juggling on fds this process owns. The report pipe first moves above
    // any of the stdio numbers so dup2 cannot clobber it.
    unsafe {
        let keep = libc::fcntl(keep, libc::F_DUPFD_CLOEXEC, 10);
        if keep < 0 {
            return Err(Error::io("dup report pipe", io::Error::last_os_error()));
        }
        let high: Vec<RawFd> = stdio.iter().map(|fd| libc::fcntl(*fd, libc::F_DUPFD, 10)).collect();
        for (i, fd) in high.iter().enumerate() {
            if *fd < 0 || libc::dup2(*fd, i as RawFd) < 0 {
                return Err(Error::io("set up stdio", io::Error::last_os_error()));
            }
        }
        let mut open = vec![0, 1, 2, keep];
        open.extend(also);
        close_other_fds(&open);
        Ok(keep)
    }
}

fn setup(l: &Launch, filter: &Filter, report: RawFd, userns: Option<RawFd>) -> std::result::Result<(), StartError> {
    let spec = l.spec;
    let mapped = userns.zip(spec.userns);
    if mapped.is_some() && spec.net != Net::Host && l.join_net.is_none() {
        // Docker's defaults for a container's own network namespace; under a user namespace
        // they are what lets its root bind ports below 1024 and ping (that namespace is the
        // host user namespace's, where the container holds no capability). Before `--sysctl`,
        // which may override them.
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
        let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    }
    // Through the agent's /proc, still mounted here: a /proc/sys file acts on the namespaces of
    // the process that writes it, which are already the container's (network, IPC).
    for (k, v) in &spec.sysctls {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).map_err(|e| Error::io(format!("set sysctl {k}={v} ({path})"), e))?;
    }
    rootfs::build(&l.layout, spec, mapped)?;
    if spec.net == Net::None {
        rootfs::loopback_up()?;
    }
    rootfs::pivot(l.layout.rootfs)?;
    sethostname(&spec.hostname)?;
    if spec.tty {
        // The pty slave on 0/1/2 becomes the controlling terminal of a new session, so job
        // control and ^C work as in `docker run -t`.
        // SAFETY: setsid and an ioctl on our own stdin.
        if unsafe { libc::setsid() } < 0 || unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
            return Err(Error::io("make the pty the controlling terminal", io::Error::last_os_error()).into());
        }
    }
    set_rlimits(spec)?;
    if let Some(ns) = userns {
        // Last, after every mount and host-privileged step: from here on this process is the
        // root of its user namespace only.
        crate::userns::enter(ns)?;
        // SAFETY: closes our copy of the namespace descriptor; nothing else uses it.
        unsafe { libc::close(ns) };
    }
    if spec.no_new_privs {
        // SAFETY: prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Error::io("set no_new_privs", io::Error::last_os_error()).into());
        }
    }
    let cwd = if spec.cwd.is_empty() { "/" } else { spec.cwd.as_str() };
    // Docker creates a missing working directory, as root, before switching user.
    std::fs::create_dir_all(cwd).map_err(|e| StartError { code: 125, msg: format!("cannot create working directory {cwd:?}: {e}") })?;
    let caps_set = caps::apply_bounding(&spec.caps)?;
    let ids = crate::container::user::resolve(&spec.user)?;
    // While still root: a non-dumpable process's /proc/self files are root's.
    set_oom_score_adj(0);
    install_filter(filter, spec, false)?;
    crate::container::user::switch(ids.uid, ids.gid, &ids.groups)?;
    if ids.uid == 0 {
        caps::apply_sets(&caps_set)?;
    }
    std::env::set_current_dir(cwd).map_err(|e| StartError { code: 125, msg: format!("cannot use working directory {cwd:?}: {e}") })?;
    cwd_inside_root(cwd)?;
    let (path, argv, envp) = command(spec, &ids.home)?;
    install_filter(filter, spec, true)?;
    if spec.init {
        run_init(report, &path, &argv, &envp)
    }
    set_oom_score_adj(0);
    exec(report, &path, &argv, &envp)
}

/// CVE-2024-21626: a working directory such as `/proc/self/fd/N` naming a descriptor of the
/// host that is still open would put the process outside the container's root. The kernel's
/// getcwd says so (a path not starting with '/'); libcs differ in how they pass that on, so the
/// system call is asked directly.
fn cwd_inside_root(cwd: &str) -> std::result::Result<(), StartError> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: getcwd writes at most buf.len() bytes into our buffer.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n <= 0 || buf[0] != b'/' {
        return Err(StartError { code: 125, msg: format!("working directory {cwd:?} is outside the container") });
    }
    Ok(())
}

fn sethostname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(Error::io(format!("set hostname {name:?}"), io::Error::last_os_error()));
    }
    Ok(())
}

/// Never above the current hard limit: raising it needs CAP_SYS_RESOURCE, which many locked-down
/// boards (and this build machine) do not grant.
fn set_rlimits(spec: &Spec) -> Result<()> {
    for u in &spec.ulimits {
        let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit read and write the plain struct we pass.
        unsafe {
            libc::getrlimit(u.resource as _, &mut cur);
            let hard = u.hard.min(cur.rlim_max);
            let new = libc::rlimit { rlim_cur: u.soft.min(hard), rlim_max: hard };
            if libc::setrlimit(u.resource as _, &new) != 0 {
                return Err(Error::io(format!("set ulimit {}", u.name), io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

fn set_oom_score_adj(v: i32) {
    // Best effort: lowering it needs CAP_SYS_RESOURCE; raising it back to 0 never does.
    let _ = std::fs::write("/proc/self/oom_score_adj", v.to_string());
}

type Command = (CString, Vec<CString>, Vec<CString>);

/// The executable to run, found in the container's PATH, as Docker reports failures.
fn command(spec: &Spec, home: &str) -> std::result::Result<Command, StartError> {
    let cs = |s: &str| CString::new(s).map_err(|_| StartError { code: 125, msg: format!("argument {s:?} holds a NUL byte") });
    let argv: Vec<CString> = spec.args.iter().map(|a| cs(a)).collect::<std::result::Result<_, _>>()?;
    let env = crate::container::user::with_home(&spec.env, home);
    let envp: Vec<CString> = env.iter().map(|e| cs(e)).collect::<std::result::Result<_, _>>()?;
    let Some(prog) = spec.args.first() else {
        return Err(StartError { code: 125, msg: "no command specified".into() });
    };
    if prog.contains('/') {
        return Ok((cs(prog)?, argv, envp));
    }
    let path =
        spec.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = format!("{dir}/{prog}");
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() {
                return Ok((cs(&p)?, argv, envp));
            }
        }
    }
    Err(StartError { code: 127, msg: format!("exec: \"{prog}\": executable file not found in $PATH") })
}

fn exec(report: RawFd, path: &CString, argv: &[CString], envp: &[CString]) -> std::result::Result<(), StartError> {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    let err = io::Error::last_os_error();
    let p = path.to_string_lossy();
    let (code, msg) = match err.raw_os_error() {
        Some(libc::ENOENT) => (127, format!("exec: \"{p}\": no such file or directory")),
        Some(libc::EACCES) | Some(libc::EPERM) => (126, format!("exec: \"{p}\": permission denied")),
        Some(libc::ENOEXEC) => (126, format!("exec: \"{p}\": exec format error (built for another architecture?)")),
        _ => (126, format!("exec: \"{p}\": {err}")),
    };
    fail(report, code, &msg)
}

/// `--init`: pid 1 stays ours, forwards every signal to the command and reaps every zombie;
/// it exits with the command's status.
fn run_init(report: RawFd, path: &CString, argv: &[CString], envp: &[CString]) -> ! {
    // SAFETY: signal-mask manipulation and fork in a single-threaded process; the child unblocks
    // everything before exec so the command starts with a clean mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        let child = libc::fork();
        if child < 0 {
            fail(report, 125, &format!("fork: {}", io::Error::last_os_error()));
        }
        if child == 0 {
            reset_signals();
            set_oom_score_adj(0);
            let _ = exec(report, path, argv, envp);
            libc::_exit(127);
        }
        libc::close(report);
        // The command is the process the OOM killer should take, never its init.
        set_oom_score_adj(-999);
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&all, &mut info);
            if sig == libc::SIGCHLD {
                loop {
                    let mut st = 0;
                    let p = libc::waitpid(-1, &mut st, libc::WNOHANG);
                    if p <= 0 {
                        break;
                    }
                    if p == child {
                        let code = if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) };
                        libc::_exit(code);
                    }
                }
            } else if sig > 0 {
                libc::kill(child, sig);
            }
        }
    }
}

/// A process to run inside a running container (`exec`).
pub struct ExecLaunch<'a> {
    /// The container's pid 1, whose namespaces are joined.
    pub target: i32,
    pub cgroup: &'a Cgroup,
    /// The container's spec with args, env, user and cwd replaced by the exec's.
    pub spec: &'a Spec,
    pub stdio: [RawFd; 3],
}

/// Starts a process in a running container; returns its waiter (our child, which exits with the
/// process's status) and the process itself (to kill it on a health-check timeout).
pub fn exec_in(l: &ExecLaunch) -> std::result::Result<Started, StartError> {
    let filter = filter(l.spec)?;
    let (rd, wr) = pipe()?;
    // Namespaces are opened before the fork so a vanished container is reported here, cleanly.
    let mut ns = Vec::new();
    for (name, flag) in [
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let p = format!("/proc/{}/ns/{name}", l.target);
        let f = std::fs::File::open(&p).map_err(|e| StartError { code: 125, msg: format!("container is not running ({p}: {e})") })?;
        ns.push((f, flag));
    }
    // Under `--userns=auto` the process enters the container's user namespace last (as its pid 1
    // did), after joining the others while still privileged over them.
    let userns = match l.spec.userns {
        Some(_) => {
            let p = format!("/proc/{}/ns/user", l.target);
            Some(std::fs::File::open(&p).map_err(|e| StartError { code: 125, msg: format!("container is not running ({p}: {e})") })?)
        }
        None => None,
    };
    // The cgroup files are opened here: inside the container's mount namespace there is no
    // /sys/fs/cgroup to open them by path. Each with whether it is the cgroup2 group's, which the
    // process need not write when it is born in that group.
    let mut procs = Vec::new();
    for (p, v2) in l.cgroup.self_join_files() {
        let f = std::fs::OpenOptions::new().write(true).open(&p).map_err(|e| Error::io_at("open", &p, e))?;
        procs.push((v2, f));
    }
    let cgroup2 = l.cgroup.cgroup2_dir().and_then(|d| std::fs::File::open(d).ok());
    // SAFETY: single-threaded caller, as in `start`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io("fork", io::Error::last_os_error()).into());
    }
    if pid == 0 {
        drop(rd);
        exec_waiter(l, &filter, &ns, (&procs, cgroup2.as_ref()), userns.as_ref().map(AsRawFd::as_raw_fd), wr.as_raw_fd())
    }
    drop(wr);
    drop(ns);
    let (child, failure) = read_reports(rd);
    if let Some(e) = failure {
        let mut st = 0;
        // SAFETY: reaps our failed child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        return Err(e);
    }
    let child = child.unwrap_or(0);
    Ok(Started { pid: child, monitor: pid })
}

fn exec_waiter(
    l: &ExecLaunch,
    filter: &Filter,
    ns: &[(std::fs::File, libc::c_int)],
    (procs, cgroup2): (&[(bool, std::fs::File)], Option<&std::fs::File>),
    userns: Option<RawFd>,
    report: RawFd,
) -> ! {
    reset_signals();
    install_panic_report(report);
    let mut keep = vec![0, 1, 2, report];
    keep.extend(l.stdio);
    keep.extend(ns.iter().map(|(f, _)| f.as_raw_fd()));
    keep.extend(procs.iter().map(|(_, f)| f.as_raw_fd()));
    keep.extend(cgroup2.map(AsRawFd::as_raw_fd));
    keep.extend(userns);
    close_other_fds(&keep);
    for (f, flag) in ns {
        // SAFETY: setns on namespace descriptors we opened; the mount namespace comes last, as
        // it also moves our root and working directory into the container.
        if unsafe { libc::setns(f.as_raw_fd(), *flag) } != 0 {
            fail(report, 125, &format!("join the container's namespaces: {}", io::Error::last_os_error()));
        }
    }
    let sfd = match chld_signalfd() {
        Ok(fd) => fd,
        Err(e) => fail(report, 125, &e.to_string()),
    };
    // The child enters the container's pid namespace.
    let (child, born_in_cgroup2) = match fork_into(cgroup2) {
        Ok(r) => r,
        Err(e) => fail(report, 125, &format!("fork: {e}")),
    };
    if child == 0 {
        hide_from_container();
        reset_signals();
        for (_, f) in procs.iter().filter(|(v2, _)| !(born_in_cgroup2 && *v2)) {
            if let Err(e) = std::io::Write::write_all(&mut &*f, b"0") {
                fail(report, 125, &format!("join the container's cgroup: {e}"));
            }
        }
        if let Some(fd) = userns {
            if let Err(e) = crate::userns::enter(fd) {
                fail(report, 125, &e.to_string());
            }
        }
        let report = match wire_stdio(l.stdio, report, None) {
            Ok(fd) => fd,
            Err(e) => fail(report, 125, &e.to_string()),
        };
        let res = (|| -> std::result::Result<(), StartError> {
            let spec = l.spec;
            if spec.tty {
                // SAFETY: setsid and an ioctl on our own stdin.
                if unsafe { libc::setsid() } < 0 || unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
                    return Err(Error::io("make the pty the controlling terminal", io::Error::last_os_error()).into());
                }
            }
            if spec.no_new_privs {
                // SAFETY: prctl with constant arguments.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            }
            let caps_set = caps::apply_bounding(&spec.caps)?;
            let ids = crate::container::user::resolve(&spec.user)?;
            set_oom_score_adj(0);
            install_filter(filter, spec, false)?;
            crate::container::user::switch(ids.uid, ids.gid, &ids.groups)?;
            if ids.uid == 0 {
                caps::apply_sets(&caps_set)?;
            }
            let cwd = if spec.cwd.is_empty() { "/" } else { spec.cwd.as_str() };
            std::env::set_current_dir(cwd)
                .map_err(|e| StartError { code: 125, msg: format!("cannot use working directory {cwd:?}: {e}") })?;
            cwd_inside_root(cwd)?;
            let (path, argv, envp) = command(spec, &ids.home)?;
            install_filter(filter, spec, true)?;
            set_oom_score_adj(0);
            exec(report, &path, &argv, &envp)
        })();
        match res {
            Err(e) => fail(report, e.code, &e.msg),
            Ok(()) => fail(report, 125, "exec returned"),
        }
    }
    send(report, b'P', &child.to_le_bytes());
    for fd in l.stdio {
        // SAFETY: our copies of the passed descriptors; the process has its own.
        unsafe { libc::close(fd) };
    }
    // SAFETY: our end of the report pipe: the agent sees EOF once the command runs.
    unsafe { libc::close(report) };
    monitor(child, sfd, None, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked child (the test harness's threads and descriptors stay untouched): the kept
    /// descriptors stay open, every other one is closed, by close_range and by the /proc list.
    #[test]
    fn close_other_fds_keeps_exactly_the_kept_ones() {
        for listed in [false, true] {
            // SAFETY: the child only makes plain calls on its own descriptors and leaves with _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
            if pid == 0 {
                let open = |_| {
                    // SAFETY: opens /dev/null; the descriptor is ours.
                    unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) }
                };
                let fds: Vec<RawFd> = (0..8).map(open).collect();
                let keep = [0, 1, 2, fds[2], fds[3], fds[6]];
                if listed {
                    close_listed_fds(&keep);
                } else {
                    close_other_fds(&keep);
                }
                // SAFETY: F_GETFD only asks whether the descriptor is open.
                let is_open = |fd: RawFd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
                let ok = fds.iter().all(|fd| is_open(*fd) == keep.contains(fd)) && (0..3).all(is_open) && !is_open(200);
                // SAFETY: leaves the child without running the harness's exit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut st = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "listed={listed}: status {st:#x}");
        }
    }
}
