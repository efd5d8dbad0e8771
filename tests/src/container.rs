//! Helpers of the container suites (`containers.rs`, `agent_lifecycle.rs`, `resources.rs`,
//! `mounts.rs`, `security.rs`): the agent they start, shell runs inside a container, what Docker
//! sets by default (capabilities, masked paths), and what they read from `/proc` and mountinfo.

use crate::agent::{parse_mountinfo, status_field, Agent, MountInfo, Snapshot};
use crate::require_root;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Docker's default capability set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
/// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP), as /proc/self/status shows it.
pub const DOCKER_CAPS: &str = "00000000a80425fb";

pub const NO_CAPS: &str = "0000000000000000";

/// Docker's masked paths (bound to /dev/null, or an empty read-only tmpfs for directories).
pub const MASKED: &[&str] = &[
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

/// Docker's read-only paths under /proc.
pub const READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

pub fn agent() -> Agent {
    require_root();
    Agent::with_busybox()
}

/// `berth run --rm FLAGS... busybox sh -c SCRIPT`: (exit code, stdout, stderr).
pub fn sh(a: &Agent, flags: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    a.code(&args)
}

/// Like [`sh`], asserting exit 0; returns stdout.
pub fn sh_ok(a: &Agent, flags: &[&str], script: &str) -> String {
    let (code, out, err) = sh(a, flags, script);
    assert_eq!(code, 0, "run {flags:?} sh -c {script:?}: exit {code}\nstdout: {out}\nstderr: {err}");
    out
}

/// `/proc/self/status` of a `busybox cat` in a container with these flags.
pub fn proc_status(a: &Agent, flags: &[&str]) -> String {
    sh_ok(a, flags, "cat /proc/self/status")
}

pub fn field(status: &str, name: &str) -> String {
    status_field(status, name).unwrap_or_else(|| panic!("no {name} in:\n{status}"))
}

/// The value `key=VALUE` printed on a line of its own.
pub fn kv<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).unwrap_or_else(|| panic!("no {key}= line in:\n{out}"))
}

/// Waits until the container wrote `/tmp/ready` (seen from the host through `/proc/<pid>/root`).
pub fn wait_ready(a: &Agent, name: &str) {
    let pid = a.pid_of(name);
    let marker = format!("/proc/{pid}/root/tmp/ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(&marker).exists() {
        assert!(Instant::now() < deadline, "container {name} did not write /tmp/ready within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts nothing is left of any container: `ps -a` empty, `<root>/containers` empty, the
/// cgroup dirs as in `before` (mounts are compared only by tests holding the exclusive guard).
pub fn assert_no_containers(a: &Agent, before: &Snapshot) {
    let ps = a.ps_all();
    assert!(ps.is_empty(), "ps -a still lists containers: {ps:?}");
    let now = a.snapshot();
    let left = Snapshot { mounts: before.mounts.clone(), ..now }.diff(before);
    assert!(left.is_empty(), "containers left something behind:\n{left}");
}

pub fn host_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").expect("read host hostname").trim().to_string()
}

pub fn container_mountinfo(out: &str) -> Vec<MountInfo> {
    let (_, rest) = out.split_once("MOUNTINFO\n").unwrap_or_else(|| panic!("no MOUNTINFO marker in:\n{out}"));
    parse_mountinfo(rest)
}

pub fn mount_at<'a>(mounts: &'a [MountInfo], point: &str) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.point == point)
}

// ---------------------------------------------------------------------------------------------
// The agent itself

/// Stops the harness's agent and starts one by hand, returning as soon as its socket first
/// accepts (spinning, not sleeping, so the moment right after the agent binds is caught).
pub fn spawn_agent_and_catch_first_accept(a: &mut Agent) -> std::process::Child {
    // An answer from the agent proves it handles SIGTERM by now, so the stop below is clean.
    let (code, _, err) = a.code(&["stop", "no-such-container"]);
    assert!(code == 1 && err.contains("No such container"), "agent answers: exit {code}, {err}");
    let (st, _) = a.stop();
    assert!(st.success(), "first agent exit {st}");
    assert!(!a.root().path().join("agent.pid").exists(), "agent.pid left by a cleanly stopped agent");
    let mut child = a.agent_command().stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start berth agent");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(a.socket()).is_err() {
        assert!(Instant::now() < deadline && child.try_wait().expect("try_wait").is_none(), "agent never served");
        std::thread::yield_now();
    }
    child
}

pub fn sigterm_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: signals our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().expect("wait agent")
}

// ---------------------------------------------------------------------------------------------
// Networking

pub fn interfaces(proc_net_dev: &str) -> Vec<String> {
    proc_net_dev.lines().skip(2).filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string())).collect()
}

// ---------------------------------------------------------------------------------------------
// Leaks and concurrency

pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|rd| rd.count()).unwrap_or(0)
}

pub fn zombie_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() > 1 && f[0] == "Z" && f[1] == pid.to_string() {
            out.push(p);
        }
    }
    out
}
