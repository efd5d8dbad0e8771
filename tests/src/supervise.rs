//! Helpers of the supervision suites (`restart_policy.rs`, `adoption.rs`, `logs.rs`,
//! `exec_health.rs`, `live_limits.rs`, `cp.rs`, `supervision.rs`): the agent they start, polls
//! with generous upper bounds that only catch a hung agent, and what they read from the host.
//!
//! Time: nothing asserts how fast something is; the few assertions about time are about features
//! that are about time (the restart back-off, the systemd watchdog) and compare intervals with each
//! other or use bounds many times the nominal value (each says why).

use crate::agent::{alive, cgroup_v1_mount, Agent, Snapshot};
use crate::{assert_one_error, poll, require_root, s};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Upper bound for anything we wait for: only a hung or broken agent takes this long.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// What the busybox fixture's `/etc/passwd` holds (the host's is different).
pub const CONTAINER_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";

pub fn agent() -> Agent {
    require_root();
    Agent::with_busybox()
}

/// An agent on a root holding busybox, after one container has run (so the cgroup parent exists
/// and "nothing left" is checked against a store that has been used).
pub fn seeded() -> Agent {
    let a = agent();
    let (code, _, err) = a.code(&["run", "--rm", "busybox", "true"]);
    assert_eq!(code, 0, "warm-up run --rm busybox true: {err}");
    a
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Polls `inspect -f TEMPLATE NAME` until it prints `want`; panics with the last value otherwise.
pub fn wait_inspect(a: &Agent, name: &str, template: &str, want: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = a.inspect_f(name, template);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: inspect -f '{template}' is {got:?}, still not {want:?} after {PATIENCE:?}");
        sleep_ms(50);
    }
}

/// Waits until the container wrote `/tmp/ready` (seen from the host through `/proc/<pid>/root`).
pub fn wait_ready(a: &Agent, name: &str) {
    let pid = a.pid_of(name);
    let marker = format!("/proc/{pid}/root/tmp/ready");
    poll(&format!("container {name} writes /tmp/ready"), PATIENCE, || Path::new(&marker).exists().then_some(()));
}

pub fn wait_file(path: &Path) {
    poll(&format!("{} appears", path.display()), PATIENCE, || path.exists().then_some(()));
}

pub fn wait_dead(pid: u32, what: &str) {
    poll(&format!("{what} (pid {pid}) ends"), PATIENCE, || (!alive(pid)).then_some(()));
}

/// Host processes whose command line is exactly `argv` (as `/proc/<pid>/cmdline` has it).
pub fn procs_with_argv(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain(std::iter::once(0))).collect();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want) && alive(pid) {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// `comm` of a process ("" once it is gone).
pub fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// Parent pid of a process (0 once it is gone).
pub fn ppid(pid: u32) -> u32 {
    let st = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    st.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(1)).and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// Live `berth-monitor` processes of this agent's root (a monitor re-executes berth with its
/// container's directory, `<root>/containers/<id>`, on its command line; one that could not is
/// a fork of the agent, whose command line names the root).
pub fn monitors(a: &Agent) -> BTreeSet<u32> {
    let root = s(a.root().path()).as_bytes().to_vec();
    let containers = [root.as_slice(), b"/containers/"].concat();
    let mut out = BTreeSet::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if comm(pid) != "berth-monitor" || !alive(pid) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|arg| arg == root.as_slice() || arg.starts_with(&containers)) {
            out.insert(pid);
        }
    }
    out
}

/// Pids in a container's cgroup of the v1 `pids` hierarchy (empty if it does not exist).
pub fn cgroup_pids(a: &Agent, id: &str) -> BTreeSet<u32> {
    let mnt = cgroup_v1_mount("pids").expect("a cgroup v1 pids hierarchy is mounted");
    let procs = mnt.join(a.cgroup_parent()).join(id).join("cgroup.procs");
    fs::read_to_string(procs).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The container's cgroup directory in the v1 hierarchy of `controller`.
pub fn cgroup_dir(a: &Agent, controller: &str, id: &str) -> PathBuf {
    cgroup_v1_mount(controller).unwrap_or_else(|| panic!("no cgroup v1 {controller} hierarchy")).join(a.cgroup_parent()).join(id)
}

pub fn read_trim(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())).trim().to_string()
}

pub fn id_of(a: &Agent, name: &str) -> String {
    a.inspect_f(name, "{{.Id}}")
}

/// `berth events --since 10m --until 0s --format json [--filter F]...`: what the agent kept.
pub fn past_events(a: &Agent, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["events", "--since", "10m", "--until", "0s", "--format", "json"];
    for f in filters {
        args.extend_from_slice(&["--filter", f]);
    }
    let out = a.ok(&args);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event is not JSON ({e}): {l}")))
        .collect()
}

pub fn actions(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["Action"].as_str().unwrap_or("?").to_string()).collect()
}

/// A container that was running before the agent went away, as the test saw it then.
pub struct Seen {
    pub name: &'static str,
    pub pid: u32,
    /// The command line of the container's own long-lived process (pid 1, or its child under
    /// `--init`): exactly one such process may exist on the host.
    pub argv: Vec<&'static str>,
}

/// After a new agent started: each container is still recorded as running, with the same pid, its
/// process alive, exactly one process with its command line on the host, that process in the
/// container's cgroup, pid 1 a child of a monitor; and one monitor per running container (plus
/// `unrecorded`: monitors of containers the agent cannot see, e.g. behind a damaged record).
pub fn assert_adopted(a: &Agent, seen: &[Seen], unrecorded: usize) {
    for c in seen {
        let st = a.inspect_f(c.name, "{{.State.Status}} {{.State.Pid}}");
        assert_eq!(st, format!("running {}", c.pid), "{}: after the agent restart, expected the same process still running", c.name);
        assert!(alive(c.pid), "{}: pid {} is gone", c.name, c.pid);
        let procs = procs_with_argv(&c.argv);
        assert_eq!(procs.len(), 1, "{}: processes with command line {:?} on the host: {procs:?} (exactly one expected)", c.name, c.argv);
        let id = id_of(a, c.name);
        let cg = cgroup_pids(a, &id);
        assert!(cg.contains(&procs[0]), "{}: pid {} not in the container's pids cgroup {cg:?}", c.name, procs[0]);
        let mon = ppid(c.pid);
        assert_eq!(
            comm(mon),
            "berth-monitor",
            "{}: parent of pid 1 ({}) is {mon} ({:?}), expected a berth-monitor",
            c.name,
            c.pid,
            comm(mon)
        );
    }
    let running = a.ps_all().iter().filter(|r| r["State"] == "running").count();
    let mons = monitors(a);
    assert_eq!(
        mons.len(),
        running + unrecorded,
        "one berth-monitor per running container expected: monitors {mons:?}, {running} running (+{unrecorded} unrecorded)"
    );
}

/// `rm -f` of every container, then: `ps -a` empty and the snapshot as `before` (mounts too when
/// `with_mounts`, for tests holding [`host_exclusive`]).
pub fn rm_all_and_assert_clean(a: &Agent, before: &Snapshot, with_mounts: bool) {
    let ids: Vec<String> = a.ps_all().iter().map(|r| r["ID"].as_str().expect("ps ID").to_string()).collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        a.ok(&args);
    }
    let ps = a.ps_all();
    assert!(ps.is_empty(), "ps -a still lists containers after rm -f of all: {ps:?}");
    let now = a.snapshot();
    let now = if with_mounts { now } else { Snapshot { mounts: before.mounts.clone(), ..now } };
    let diff = now.diff(before);
    assert!(diff.is_empty(), "containers left something behind after rm -f:\n{diff}");
}

/// A small xorshift generator: random enough to pick an instant, and its seed is printed.
pub fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

// ---------------------------------------------------------------------------------------------
// Logs

/// Checks one log file line: `<RFC3339 with fraction>Z <stdout|stderr> <F|P> <text>`.
pub fn check_log_line(line: &str, file: &Path) {
    let mut f = line.splitn(4, ' ');
    let (ts, stream, part) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
    let ok_ts = ts.len() >= 21
        && ts.as_bytes()[4] == b'-'
        && ts.as_bytes()[10] == b'T'
        && ts.ends_with('Z')
        && ts.split_once('.').is_some_and(|(_, frac)| frac.len() >= 2 && frac[..frac.len() - 1].bytes().all(|b| b.is_ascii_digit()));
    assert!(
        ok_ts && (stream == "stdout" || stream == "stderr") && (part == "F" || part == "P"),
        "bad line in {}: {line:?}",
        file.display()
    );
}

/// `container.log*` files of a container: name -> size.
pub fn log_files(a: &Agent, id: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(rd) = fs::read_dir(a.container_dir(id)) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("container.log") {
                if let Ok(m) = e.metadata() {
                    out.insert(n, m.len());
                }
            }
        }
    }
    out
}

pub fn health(a: &Agent, name: &str) -> Value {
    serde_json::from_str(&a.inspect_f(name, "{{json .State.Health}}")).expect("State.Health is JSON")
}

// ---------------------------------------------------------------------------------------------
// cp, rename, prune, events

/// Starts `cpr` with symlinks that point out of the container if followed on the host:
/// /data/esc -> /etc, /data/rootlink -> /, /data/victim -> /etc/passwd.
pub fn cp_container(a: &Agent) {
    a.run_detached(&[
        "--name",
        "cpr",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data; busybox ln -s /etc /data/esc; busybox ln -s / /data/rootlink; busybox ln -s /etc/passwd /data/victim; \
         echo inner > /data/in; echo > /tmp/ready; exec sleep 101101",
    ]);
    wait_ready(a, "cpr");
}

/// Receives datagrams until one satisfies `f` (or `timeout`); returns all received.
pub fn recv_until(rx: &UnixDatagram, timeout: Duration, f: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        rx.set_read_timeout(Some(left)).expect("set_read_timeout");
        match rx.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = f(&m);
                got.push(m);
                if done {
                    return got;
                }
            }
            Err(_) => return got,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: Docker's exit code, one Error line, nothing lost

pub fn ps_state(a: &Agent) -> Vec<(String, String, String)> {
    a.ps_all()
        .iter()
        .map(|r| {
            (
                r["ID"].as_str().unwrap_or("").to_string(),
                r["Names"].as_str().unwrap_or("").to_string(),
                r["State"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Runs berth and checks the refusal: exit `code`, one `Error: ` line with one of `words`, and
/// nothing changed (snapshot and `ps -a`). Returns the error line.
pub fn refused(a: &Agent, args: &[&str], code: i32, words: &[&str]) -> String {
    let before = a.snapshot();
    let ps = ps_state(a);
    let (got, out, err) = a.code(args);
    assert_eq!(got, code, "berth {}: exit code; stdout: {out} stderr: {err}", args.join(" "));
    let line = assert_one_error(&err, words);
    println!("berth {}: {line}", args.join(" "));
    let after = a.snapshot();
    assert!(after == before, "berth {} left something behind:\n{}", args.join(" "), after.diff(&before));
    assert_eq!(ps_state(a), ps, "berth {}: ps -a changed", args.join(" "));
    line
}
