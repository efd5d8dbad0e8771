//! End-to-end supervision tests: restart policies, the agent killed (`kill -9`) at awkward moments
//! and restarted, log files and `logs`, `exec`, health checks, `stats`, `update`, `cp`, `rename`,
//! `container prune`, `events`, damaged records, systemd's notify protocol, `--live-restore` and
//! `--log-level`. A real `berth agent` on a throw-away root and the busybox fixture image, as in
//! `containers.rs`; what happens is checked from the host too (`/proc`, cgroup files, the root's
//! directories), never only through berth's own answers.
//!
//! Every test needs root and its own agent ([`Agent`]). Tests that compare the host's mount table
//! take [`host_exclusive`]; all others take [`host_shared`], so they may run in parallel.
//!
//! Time: nothing here asserts how fast something is. Polls have generous upper bounds that only
//! catch a hung agent; the few assertions about time are about features that are about time (the
//! restart back-off, the systemd watchdog) and compare intervals with each other or use bounds
//! many times the nominal value (each says why).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use berth_tests::agent::{alive, cgroup_dir_of, cgroup_v1_mount, host_exclusive, host_shared, Agent, Snapshot};
use berth_tests::{assert_one_error, berth_bin, poll, require_root, run, s, Stdin};

/// Upper bound for anything we wait for: only a hung or broken agent takes this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// What the busybox fixture's `/etc/passwd` holds (the host's is different).
const CONTAINER_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";

fn agent() -> Agent {
    require_root();
    Agent::with_busybox()
}

/// An agent on a root holding busybox, after one container has run (so the cgroup parent exists
/// and "nothing left" is checked against a store that has been used).
fn seeded() -> Agent {
    let a = agent();
    let (code, _, err) = a.code(&["run", "--rm", "busybox", "true"]);
    assert_eq!(code, 0, "warm-up run --rm busybox true: {err}");
    a
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Polls `inspect -f TEMPLATE NAME` until it prints `want`; panics with the last value otherwise.
fn wait_inspect(a: &Agent, name: &str, template: &str, want: &str) {
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
fn wait_ready(a: &Agent, name: &str) {
    let pid = a.pid_of(name);
    let marker = format!("/proc/{pid}/root/tmp/ready");
    poll(&format!("container {name} writes /tmp/ready"), PATIENCE, || Path::new(&marker).exists().then_some(()));
}

fn wait_file(path: &Path) {
    poll(&format!("{} appears", path.display()), PATIENCE, || path.exists().then_some(()));
}

fn wait_dead(pid: u32, what: &str) {
    poll(&format!("{what} (pid {pid}) ends"), PATIENCE, || (!alive(pid)).then_some(()));
}

/// Host processes whose command line is exactly `argv` (as `/proc/<pid>/cmdline` has it).
fn procs_with_argv(argv: &[&str]) -> Vec<u32> {
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
fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// Parent pid of a process (0 once it is gone).
fn ppid(pid: u32) -> u32 {
    let st = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    st.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(1)).and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// Live `berth-monitor` processes of this agent's root (a monitor is a fork of the agent: its
/// command line names the root).
fn monitors(a: &Agent) -> BTreeSet<u32> {
    let root = s(a.root().path()).as_bytes().to_vec();
    let mut out = BTreeSet::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if comm(pid) != "berth-monitor" || !alive(pid) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|arg| arg == root.as_slice()) {
            out.insert(pid);
        }
    }
    out
}

/// Pids in a container's cgroup of the v1 `pids` hierarchy (empty if it does not exist).
fn cgroup_pids(a: &Agent, id: &str) -> BTreeSet<u32> {
    let mnt = cgroup_v1_mount("pids").expect("a cgroup v1 pids hierarchy is mounted");
    let procs = mnt.join(a.cgroup_parent()).join(id).join("cgroup.procs");
    fs::read_to_string(procs).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The container's cgroup directory in the v1 hierarchy of `controller`.
fn cgroup_dir(a: &Agent, controller: &str, id: &str) -> PathBuf {
    cgroup_v1_mount(controller).unwrap_or_else(|| panic!("no cgroup v1 {controller} hierarchy")).join(a.cgroup_parent()).join(id)
}

fn read_trim(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())).trim().to_string()
}

fn id_of(a: &Agent, name: &str) -> String {
    a.inspect_f(name, "{{.Id}}")
}

/// `berth events --since 10m --until 0s --format json [--filter F]...`: what the agent kept.
fn past_events(a: &Agent, filters: &[&str]) -> Vec<Value> {
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

fn actions(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["Action"].as_str().unwrap_or("?").to_string()).collect()
}

/// A container that was running before the agent went away, as the test saw it then.
struct Seen {
    name: &'static str,
    pid: u32,
    /// The command line of the container's own long-lived process (pid 1, or its child under
    /// `--init`): exactly one such process may exist on the host.
    argv: Vec<&'static str>,
}

/// After a new agent started: each container is still recorded as running, with the same pid, its
/// process alive, exactly one process with its command line on the host, that process in the
/// container's cgroup, pid 1 a child of a monitor; and one monitor per running container (plus
/// `unrecorded`: monitors of containers the agent cannot see, e.g. behind a damaged record).
fn assert_adopted(a: &Agent, seen: &[Seen], unrecorded: usize) {
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
fn rm_all_and_assert_clean(a: &Agent, before: &Snapshot, with_mounts: bool) {
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

// ---------------------------------------------------------------------------------------------
// Restart policies

#[test]
fn on_failure_restarts_up_to_its_count_then_stays_exited() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&["--name", "of3", "--restart", "on-failure:3", "busybox", "sh", "-c", "echo attempt; exit 1"]);
    // 1 run + 3 restarts (after 100, 200 and 400 ms of back-off).
    poll("of3 ran four times", PATIENCE, || (a.ok(&["logs", "of3"]).lines().filter(|l| *l == "attempt").count() >= 4).then_some(()));
    wait_inspect(&a, "of3", "{{.State.Status}}", "exited");
    // A fifth run would come 800 ms after the fourth: wait well past that.
    sleep_ms(2500);
    let runs = a.ok(&["logs", "of3"]).lines().filter(|l| *l == "attempt").count();
    assert_eq!(runs, 4, "on-failure:3 runs the container 1 + 3 times");
    assert_eq!(a.inspect_f("of3", "{{.RestartCount}} {{.State.Status}} {{.State.Running}} {{.State.ExitCode}}"), "3 exited false 1");
    let ev = past_events(&a, &["container=of3"]);
    let dies: Vec<&Value> = ev.iter().filter(|e| e["Action"] == "die").collect();
    assert_eq!(dies.len(), 4, "four die events: {:?}", actions(&ev));
    assert!(dies.iter().all(|e| e["Actor"]["Attributes"]["exitCode"] == "1"), "every die has exitCode 1: {dies:?}");
    assert_eq!(actions(&ev).iter().filter(|a| *a == "start").count(), 4, "four start events: {:?}", actions(&ev));

    // A success is not a failure: no restart.
    a.run_detached(&["--name", "ok0", "--restart", "on-failure:3", "busybox", "true"]);
    wait_inspect(&a, "ok0", "{{.State.Status}}", "exited");
    sleep_ms(1000);
    assert_eq!(a.inspect_f("ok0", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}"), "0 exited 0");

    // on-failure without a count keeps going.
    a.run_detached(&["--name", "ofn", "--restart", "on-failure", "busybox", "sh", "-c", "exit 2"]);
    poll("on-failure (unlimited) restarts at least 4 times", PATIENCE, || {
        (a.inspect_f("ofn", "{{.RestartCount}}").parse::<u32>().expect("RestartCount") >= 4).then_some(())
    });
    a.ok(&["rm", "-f", "of3", "ok0", "ofn"]);
    assert!(a.ps_all().is_empty());
}

#[test]
fn restart_policy_in_inspect_is_dockers() {
    let _h = host_shared();
    let a = agent();
    let cases: &[(Option<&str>, &str)] = &[
        (None, "no 0"),
        (Some("no"), "no 0"),
        (Some("on-failure"), "on-failure 0"),
        (Some("on-failure:3"), "on-failure 3"),
        (Some("always"), "always 0"),
        (Some("unless-stopped"), "unless-stopped 0"),
    ];
    let mut wrong = Vec::new();
    for (i, (flag, want)) in cases.iter().enumerate() {
        let name = format!("p{i}");
        let mut args = vec!["create", "--name", name.as_str()];
        if let Some(f) = flag {
            args.extend_from_slice(&["--restart", f]);
        }
        args.extend_from_slice(&["busybox", "true"]);
        a.ok(&args);
        let got = a.inspect_f(&name, "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}");
        if got != *want {
            wrong.push(format!("--restart {flag:?}: RestartPolicy Name/MaximumRetryCount {got:?}, Docker says {want:?}"));
        }
    }
    a.ok(&["update", "--restart", "on-failure:2", "p0"]);
    let got = a.inspect_f("p0", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}");
    if got != "on-failure 2" {
        wrong.push(format!("update --restart on-failure:2: {got:?}, expected \"on-failure 2\""));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn always_restarts_until_stopped_or_killed() {
    let _h = host_shared();
    let a = agent();
    // Exits 0 after a second: `always` restarts it anyway.
    a.run_detached(&["--name", "alw", "--restart", "always", "busybox", "sh", "-c", "echo run; sleep 1"]);
    poll("always restarted a container that exited 0 three times", PATIENCE, || {
        (a.inspect_f("alw", "{{.RestartCount}}").parse::<u32>().expect("RestartCount") >= 3).then_some(())
    });
    assert_eq!(a.ok(&["stop", "-t", "1", "alw"]).trim(), "alw");
    wait_inspect(&a, "alw", "{{.State.Status}}", "exited");
    let count = a.inspect_f("alw", "{{.RestartCount}}");
    // Longer than any back-off reached so far (at most 800 ms after 4 quick exits) plus a run.
    sleep_ms(3000);
    assert_eq!(
        a.inspect_f("alw", "{{.State.Status}} {{.RestartCount}}"),
        format!("exited {count}"),
        "stop leaves an always container stopped"
    );

    // kill too; and a container killed from outside (not by the user through berth) comes back.
    a.run_detached(&["--name", "alk", "--restart", "always", "busybox", "sleep", "100001"]);
    let pid = a.pid_of("alk");
    // SAFETY: kill(2) of the container's pid 1, which this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    poll("alk restarted after its process was killed from the host", PATIENCE, || {
        (a.inspect_f("alk", "{{.State.Status}} {{.RestartCount}}") == "running 1").then_some(())
    });
    let pid2 = a.pid_of("alk");
    assert_ne!(pid, pid2, "a new process after the restart");
    assert_eq!(procs_with_argv(&["sleep", "100001"]), vec![pid2], "exactly one process of alk");
    assert_eq!(a.ok(&["kill", "alk"]).trim(), "alk");
    wait_inspect(&a, "alk", "{{.State.Status}} {{.State.ExitCode}}", "exited 137");
    sleep_ms(2000);
    assert_eq!(a.inspect_f("alk", "{{.State.Status}} {{.RestartCount}}"), "exited 1", "kill leaves an always container stopped");
    a.ok(&["rm", "-f", "alw", "alk"]);
}

#[test]
fn restart_command_gives_a_new_process() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&["--name", "rs", "busybox", "sleep", "100151"]);
    let pid = a.pid_of("rs");
    assert_eq!(a.ok(&["restart", "-t", "1", "rs"]).trim(), "rs");
    let pid2 = a.pid_of("rs");
    assert_ne!(pid, pid2, "restart runs a new process");
    assert!(!alive(pid), "the old process is gone");
    assert_eq!(procs_with_argv(&["sleep", "100151"]), vec![pid2], "exactly one process after restart");
    // A stopped container is started.
    a.ok(&["stop", "-t", "0", "rs"]);
    assert_eq!(a.ok(&["restart", "rs"]).trim(), "rs");
    assert_eq!(a.inspect_f("rs", "{{.State.Status}}"), "running");
    let acts = actions(&past_events(&a, &["container=rs"]));
    a.ok(&["rm", "-f", "rs"]);
    assert!(acts.iter().any(|x| x == "restart"), "Docker emits a restart event for `restart`; got {acts:?}");
}

#[test]
fn attach_shows_output_from_now_and_returns_the_exit_code() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&[
        "--name",
        "at",
        "busybox",
        "sh",
        "-c",
        "echo early; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo late; echo lateerr >&2; exit 7",
    ]);
    let pid = a.pid_of("at");
    poll("at printed its first line", PATIENCE, || (a.ok(&["logs", "at"]) == "early\n").then_some(()));
    let child =
        a.command(&["attach", "at"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("berth attach");
    // attach has no "attached" signal: give it a moment to connect before the container goes on
    // (a late attach would miss "late" and fail the test, not pass it).
    sleep_ms(1000);
    fs::write(format!("/proc/{pid}/root/tmp/go"), "").expect("touch /tmp/go in the container");
    let out = child.wait_with_output().expect("attach output");
    assert_eq!(out.status.code(), Some(7), "attach exits with the container's code; stderr {:?}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n", "attach shows stdout from now on");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "lateerr\n", "attach shows stderr on stderr");
    a.ok(&["rm", "at"]);
}

#[test]
fn agent_start_cleans_what_an_interrupted_start_left() {
    let _h = host_shared();
    let mut a = agent();
    // As if an agent died between forking a container and recording it as running: a created
    // container with a process in its cgroups, and a container directory without a record.
    let id = a.ok(&["create", "--name", "half", "busybox", "sleep", "100161"]).trim().to_string();
    a.stop();
    let mut stray = Command::new("sleep").arg("100162").stdin(Stdio::null()).spawn().expect("start a host sleep");
    let mut dirs = Vec::new();
    for ctl in ["pids", "memory", "freezer"] {
        if let Some(m) = cgroup_v1_mount(ctl) {
            dirs.push(m.join(a.cgroup_parent()).join(&id));
        }
    }
    if let Some(u) = berth_tests::agent::mountinfo().into_iter().find(|m| m.fstype == "cgroup2") {
        dirs.push(PathBuf::from(u.point).join(a.cgroup_parent()).join(&id));
    }
    for d in &dirs {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        fs::write(d.join("cgroup.procs"), stray.id().to_string()).unwrap_or_else(|e| panic!("move the sleep into {}: {e}", d.display()));
    }
    let orphan = a.root().path().join("containers").join("ab".repeat(32));
    fs::create_dir_all(orphan.join("upper/etc")).expect("mkdir orphan dir");
    fs::write(orphan.join("upper/etc/x"), "x").expect("write into orphan dir");
    a.restart();
    let deadline = Instant::now() + PATIENCE;
    let st = loop {
        if let Some(st) = stray.try_wait().expect("try_wait stray sleep") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = stray.kill();
            let _ = stray.wait();
            panic!("the process left in the cgroup of created container {id} still runs after the agent started");
        }
        sleep_ms(50);
    };
    println!("stray process: {st}");
    assert!(!orphan.exists(), "a container directory without a record survived the agent start");
    assert_eq!(a.inspect_f("half", "{{.State.Status}}"), "created", "the record is kept");
    for d in &dirs {
        assert!(!d.exists(), "cgroup {} left after the agent start", d.display());
    }
    // The container still starts normally.
    a.ok(&["start", "half"]);
    assert_eq!(procs_with_argv(&["sleep", "100161"]).len(), 1);
    a.ok(&["rm", "-f", "half"]);
}

#[test]
fn policy_containers_after_an_agent_restart() {
    let _h = host_shared();
    let mut a = agent();
    // --init: SIGTERM (from stop or the agent's shutdown) ends them at once.
    let run = |name: &str, policy: &str, secs: &str| {
        let mut args = vec!["--name", name, "--init"];
        if !policy.is_empty() {
            args.extend_from_slice(&["--restart", policy]);
        }
        args.extend_from_slice(&["busybox", "sleep", secs]);
        a.run_detached(&args);
    };
    run("always-up", "always", "100101");
    run("unless-up", "unless-stopped", "100102");
    run("always-stopped", "always", "100103");
    run("unless-user-stopped", "unless-stopped", "100104");
    run("unless-killed", "unless-stopped", "100105");
    run("no-policy", "", "100106");
    a.ok(&["stop", "always-stopped", "unless-user-stopped"]);
    a.ok(&["kill", "unless-killed"]);
    for n in ["always-stopped", "unless-user-stopped", "unless-killed"] {
        wait_inspect(&a, n, "{{.State.Status}}", "exited");
    }
    let (st, _) = a.stop();
    assert!(st.success(), "agent exit {st}");
    for n in ["always-up", "unless-up", "no-policy"] {
        assert_eq!(a.inspect_f(n, "{{.State.Status}}"), "exited", "{n}: the agent's SIGTERM stopped it");
    }
    a.restart();
    // Docker: `always` comes back even after a user stop; `unless-stopped` only if not stopped.
    for (n, secs) in [("always-up", "100101"), ("unless-up", "100102"), ("always-stopped", "100103")] {
        wait_inspect(&a, n, "{{.State.Status}}", "running");
        assert_eq!(procs_with_argv(&["sleep", secs]).len(), 1, "{n}: exactly one process after the agent restart");
    }
    sleep_ms(2000);
    for (n, code) in [("unless-user-stopped", "143"), ("unless-killed", "137"), ("no-policy", "143")] {
        assert_eq!(a.inspect_f(n, "{{.State.Status}} {{.State.ExitCode}}"), format!("exited {code}"), "{n} stays stopped");
    }
    for secs in ["100104", "100105", "100106"] {
        assert!(procs_with_argv(&["sleep", secs]).is_empty(), "sleep {secs} runs although its container is stopped");
    }
    a.ok(&["rm", "-f", "always-up", "unless-up", "always-stopped", "unless-user-stopped", "unless-killed", "no-policy"]);
}

#[test]
fn restart_back_off_grows() {
    let _h = host_shared();
    let a = agent();
    let dir = a.root().scratch().join("backoff");
    fs::create_dir_all(&dir).expect("mkdir backoff");
    let vol = format!("{}:/v", s(&dir));
    // Each run appends the machine's uptime (10 ms resolution; /proc/uptime is not namespaced).
    a.run_detached(&[
        "--name",
        "bo",
        "--restart",
        "on-failure:5",
        "-v",
        &vol,
        "busybox",
        "sh",
        "-c",
        "cat /proc/uptime >> /v/starts; exit 1",
    ]);
    let starts = dir.join("starts");
    let times: Vec<f64> = poll("five runs of bo recorded", PATIENCE, || {
        let text = fs::read_to_string(&starts).unwrap_or_default();
        let t: Vec<f64> = text.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
        (t.len() >= 5).then_some(t)
    });
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("gaps between restarts (s): {gaps:?}");
    // Docker's back-off doubles from 100 ms: gaps of about 0.1, 0.2, 0.4, 0.8 s plus the start
    // time. Only compare gaps with each other, two doublings apart, so a noisy machine cannot
    // reverse them.
    assert!(gaps[2] > gaps[0], "the third gap ({:.2} s) is not longer than the first ({:.2} s): {gaps:?}", gaps[2], gaps[0]);
    assert!(gaps[3] > gaps[1], "the fourth gap ({:.2} s) is not longer than the second ({:.2} s): {gaps:?}", gaps[3], gaps[1]);
    a.ok(&["rm", "-f", "bo"]);
}

// ---------------------------------------------------------------------------------------------
// The agent killed (SIGKILL) and started again

#[test]
fn kill9_while_idle_then_readopt() {
    let _h = host_exclusive();
    let mut a = seeded();
    let before = a.snapshot();
    let vol = a.root().scratch().join("v");
    fs::create_dir_all(&vol).expect("mkdir v");
    let volspec = format!("{}:/v", s(&vol));
    let loop_script = "echo > /tmp/ready; while :; do echo tick; sleep 0.2; done";
    a.run_detached(&["--name", "plain", "busybox", "sleep", "100201"]);
    a.run_detached(&["--name", "init", "--init", "busybox", "sleep", "100202"]);
    a.run_detached(&["--name", "loop", "--restart", "always", "busybox", "sh", "-c", loop_script]);
    a.run_detached(&[
        "--name",
        "ends",
        "-v",
        &volspec,
        "busybox",
        "sh",
        "-c",
        "while [ ! -e /v/go ]; do sleep 0.05; done; echo bye; exit 5",
    ]);
    let (code, _, err) = a.code(&["run", "--name", "done", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "run done: {err}");
    wait_ready(&a, "loop");
    let init_pid = a.pid_of("init");
    let seen = vec![
        Seen { name: "plain", pid: a.pid_of("plain"), argv: vec!["sleep", "100201"] },
        Seen { name: "init", pid: init_pid, argv: vec!["sleep", "100202"] },
        Seen { name: "loop", pid: a.pid_of("loop"), argv: vec!["sh", "-c", loop_script] },
    ];
    let ends_pid = a.pid_of("ends");

    let st = a.kill9();
    println!("agent: {st}");
    for c in &seen {
        assert!(alive(c.pid), "{}: the container died with the agent", c.name);
    }
    // Ends while no agent runs.
    fs::write(vol.join("go"), "").expect("touch v/go");
    wait_dead(ends_pid, "container ends");
    a.restart();

    assert_adopted(&a, &seen, 0);
    let names: BTreeSet<String> = a.ps_all().iter().map(|r| r["Names"].as_str().expect("Names").to_string()).collect();
    let want: BTreeSet<String> = ["plain", "init", "loop", "ends", "done"].iter().map(|s| s.to_string()).collect();
    assert_eq!(names, want, "every record is there after the agent restart");
    wait_inspect(&a, "ends", "{{.State.Status}} {{.State.ExitCode}}", "exited 5");
    assert_eq!(a.ok(&["logs", "ends"]), "bye\n", "output written while no agent ran is in the log");
    assert_eq!(a.inspect_f("done", "{{.State.Status}} {{.State.ExitCode}}"), "exited 3");

    // The adopted containers are supervised: logs keep growing, policies apply, stop and kill work.
    let ticks = |a: &Agent| a.ok(&["logs", "loop"]).lines().filter(|l| *l == "tick").count();
    let t1 = ticks(&a);
    poll("loop's log grows after the agent restart", PATIENCE, || (ticks(&a) > t1).then_some(()));
    let loop_pid = seen[2].pid;
    // SAFETY: kill(2) of the container's pid 1, which this test started.
    unsafe { libc::kill(loop_pid as i32, libc::SIGKILL) };
    poll("the adopted always container is restarted after its process was killed", PATIENCE, || {
        (a.inspect_f("loop", "{{.State.Status}} {{.RestartCount}}") == "running 1").then_some(())
    });
    assert_eq!(procs_with_argv(&["sh", "-c", loop_script]).len(), 1, "exactly one loop process after its restart");
    assert_eq!(a.ok(&["stop", "-t", "1", "plain"]).trim(), "plain");
    assert_eq!(a.inspect_f("plain", "{{.State.Status}} {{.State.ExitCode}}"), "exited 137", "stop of an adopted container");
    assert_eq!(a.ok(&["kill", "init"]).trim(), "init");
    assert_eq!(a.ok(&["wait", "init"]).trim(), "137", "wait for an adopted container");
    assert!(!alive(init_pid));
    rm_all_and_assert_clean(&a, &before, true);
}

#[test]
fn kill9_right_after_run_d_returns() {
    let _h = host_exclusive();
    let mut a = seeded();
    let before = a.snapshot();
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("k-plain", &[], &["sleep", "100211"]),
        ("k-init", &["--init"], &["sleep", "100212"]),
        ("k-always", &["--restart", "always"], &["sleep", "100213"]),
        ("k-health", &["--health-cmd", "true", "--health-interval", "300ms"], &["sleep", "100214"]),
    ];
    let mut seen = Vec::new();
    for (name, flags, argv) in cases {
        let mut args = vec!["--name", *name];
        args.extend_from_slice(flags);
        args.push("busybox");
        args.extend_from_slice(argv);
        a.run_detached(&args);
        a.kill9();
        // inspect reads the record: it works without the agent.
        let pid: u32 = a.inspect_f(name, "{{.State.Pid}}").parse().expect("State.Pid");
        assert!(pid > 0 && alive(pid), "{name}: recorded pid {pid} is not running right after run -d returned");
        a.restart();
        seen.push(Seen { name, pid, argv: argv.to_vec() });
        assert_adopted(&a, &seen, 0);
    }
    wait_inspect(&a, "k-health", "{{.State.Health.Status}}", "healthy");
    rm_all_and_assert_clean(&a, &before, true);
}

/// A small xorshift generator: random enough to pick an instant, and its seed is printed.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[test]
fn kill9_during_a_stream_of_runs() {
    let _h = host_exclusive();
    let mut a = seeded();
    let before = a.snapshot();
    let mut seed = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos() as u64 | 1;
    println!("seed {seed}");
    // How long one `run -d` takes here, to spread the kill over the whole stream.
    let t0 = Instant::now();
    a.run_detached(&["--name", "probe", "busybox", "true"]);
    let one = t0.elapsed();
    a.ok(&["rm", "-f", "probe"]);
    let base = s(a.root().path()).to_string();
    let host = a.host();
    let mut bad_codes = Vec::new();
    for round in 0..3 {
        let span = (one * 20).as_millis() as u64;
        let delay = xorshift(&mut seed) % span.max(1);
        println!("round {round}: one run -d takes {one:?}; killing the agent after {delay} ms");
        let (base2, host2) = (base.clone(), host.clone());
        let stream = std::thread::spawn(move || {
            (0..20)
                .map(|i| {
                    let name = format!("r{round}s{i}");
                    let secs = format!("{}", 100300 + round * 100 + i);
                    let mut c = Command::new(berth_bin());
                    c.args(["--root", &base2, "-H", &host2, "run", "-d", "--name", &name, "busybox", "sleep", &secs]);
                    c.env_remove("BERTH_ROOT").env_remove("BERTH_HOST");
                    let out = run(&mut c, Stdin::Null);
                    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    (name, secs, out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_string(), stderr)
                })
                .collect::<Vec<_>>()
        });
        sleep_ms(delay);
        a.kill9();
        let results = stream.join().expect("run -d stream thread");
        a.restart();
        let ok = results.iter().filter(|r| r.2 == Some(0)).count();
        println!("round {round}: {ok} of 20 runs succeeded before the kill");
        if let Some((name, _, code, _, err)) = results.iter().find(|r| r.2 != Some(0)) {
            let st = a.ps_all().iter().find(|r| r["Names"] == name.as_str()).map(|r| r["State"].to_string());
            println!("round {round}: first failed run {name} (exit {code:?}: {err}) left: {st:?}");
        }

        let ps = a.ps_all();
        let by_name: BTreeMap<String, &Value> = ps.iter().map(|r| (r["Names"].as_str().expect("Names").to_string(), r)).collect();
        for (name, secs, code, id, err) in &results {
            let procs = procs_with_argv(&["sleep", secs]);
            assert!(procs.len() <= 1, "{name}: {} processes of one container: {procs:?}", procs.len());
            match by_name.get(name) {
                Some(rec) if rec["State"] == "running" => {
                    let pid = a.pid_of(name);
                    assert_eq!(procs, vec![pid], "{name}: recorded running with pid {pid}; processes on the host: {procs:?}");
                }
                Some(_) => assert!(procs.is_empty(), "{name}: not running by its record, yet its process runs: {procs:?}"),
                None => {
                    assert!(procs.is_empty(), "{name}: no record, yet its process runs: {procs:?}");
                    assert_ne!(*code, Some(0), "{name}: run -d succeeded (printed {id}) but no record is left");
                }
            }
            // The agent went away under `run -d`: berth failed, not the container (Docker: 125).
            // Checked last, so the invariants above are checked for every round first.
            let one_line = err.lines().filter(|l| !l.trim().is_empty()).count() == 1 && err.starts_with("Error: ");
            if *code != Some(0) && (*code != Some(125) || !one_line) {
                bad_codes.push(format!("{name}: run -d failed with exit {code:?} (want 125 and one Error line): {err:?}"));
            }
            if *code == Some(0) {
                assert_eq!(by_name.get(name).map(|r| r["State"].as_str().unwrap_or("?")), Some("running"), "{name}: run -d succeeded");
                assert_eq!(id_of(&a, name), *id, "{name}: the ID run -d printed");
            }
        }
        // No directory without a record, one monitor per running container.
        let ids: BTreeSet<String> = ps.iter().map(|r| r["ID"].as_str().expect("ID").to_string()).collect();
        assert_eq!(a.container_entries(), ids, "<root>/containers entries vs records");
        let running = ps.iter().filter(|r| r["State"] == "running").count();
        assert_eq!(monitors(&a).len(), running, "one monitor per running container");
        // The restarted agent serves.
        let (code, out, err) = a.code(&["run", "--rm", "busybox", "echo", "served"]);
        assert_eq!((code, out.as_str()), (0, "served\n"), "after the restart: {err}");
    }
    rm_all_and_assert_clean(&a, &before, true);
    assert!(bad_codes.is_empty(), "{}", bad_codes.join("\n"));
}

#[test]
fn kill9_while_health_checks_run() {
    let _h = host_exclusive();
    let mut a = seeded();
    let before = a.snapshot();
    // Each check takes half a second, every 300 ms: most of the time one is running.
    a.run_detached(&[
        "--name",
        "hc",
        "--health-cmd",
        "sleep 0.5; test -e /tmp/ok",
        "--health-interval",
        "300ms",
        "--health-timeout",
        "10s",
        "--health-retries",
        "1",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/ok; exec sleep 100401",
    ]);
    wait_inspect(&a, "hc", "{{.State.Health.Status}}", "healthy");
    let id = id_of(&a, "hc");
    let pid = a.pid_of("hc");
    poll("a health check runs in hc's cgroup", PATIENCE, || (cgroup_pids(&a, &id).len() > 1).then_some(()));
    a.kill9();
    let last_before: String = a.inspect_f("hc", "{{json .State.Health}}");
    a.restart();
    assert_adopted(&a, &[Seen { name: "hc", pid, argv: vec!["sleep", "100401"] }], 0);
    // Checks go on under the new agent: a newer Log entry appears, and a failure is noticed.
    let last_start = |a: &Agent| -> String {
        let h: Value = serde_json::from_str(&a.inspect_f("hc", "{{json .State.Health}}")).expect("Health JSON");
        h["Log"].as_array().and_then(|l| l.last()).map(|e| e["Start"].as_str().unwrap_or("").to_string()).unwrap_or_default()
    };
    let before_start = {
        let h: Value = serde_json::from_str(&last_before).expect("Health JSON");
        h["Log"].as_array().and_then(|l| l.last()).map(|e| e["Start"].as_str().unwrap_or("").to_string()).unwrap_or_default()
    };
    poll("a health check ran after the agent restart", PATIENCE, || (last_start(&a) > before_start).then_some(()));
    a.ok(&["exec", "hc", "rm", "/tmp/ok"]);
    wait_inspect(&a, "hc", "{{.State.Health.Status}}", "unhealthy");
    assert_eq!(a.pid_of("hc"), pid, "health checks do not restart the container");
    rm_all_and_assert_clean(&a, &before, true);
}

#[test]
fn kill9_while_containers_are_being_stopped() {
    let _h = host_exclusive();
    let mut a = seeded();
    let before = a.snapshot();
    let vol = a.root().scratch().join("v");
    fs::create_dir_all(&vol).expect("mkdir v");
    let volspec = format!("{}:/v", s(&vol));
    // t7 takes a second to exit 7 after SIGTERM; ign ignores SIGTERM (only SIGKILL, after its 30 s
    // stop timeout, would end it).
    let t7 = "trap 'echo > /v/t7-term; sleep 1; exit 7' TERM; echo > /tmp/ready; while :; do sleep 0.1; done";
    let ign = "trap 'echo > /v/ign-term' TERM; echo > /tmp/ready; while :; do sleep 0.1; done";
    a.run_detached(&["--name", "t7", "-v", &volspec, "busybox", "sh", "-c", t7]);
    a.run_detached(&["--name", "ign", "-v", &volspec, "busybox", "sh", "-c", ign]);
    wait_ready(&a, "t7");
    wait_ready(&a, "ign");
    let (t7_pid, ign_pid) = (a.pid_of("t7"), a.pid_of("ign"));
    let mut stop = a
        .command(&["stop", "-t", "30", "t7", "ign"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start berth stop");
    wait_file(&vol.join("t7-term"));
    wait_file(&vol.join("ign-term"));
    a.kill9();
    let st = stop.wait().expect("wait berth stop");
    println!("berth stop, its agent killed under it: {st}");
    wait_dead(t7_pid, "t7 after SIGTERM");
    a.restart();
    wait_inspect(&a, "t7", "{{.State.Status}} {{.State.ExitCode}}", "exited 7");
    assert_adopted(&a, &[Seen { name: "ign", pid: ign_pid, argv: vec!["sh", "-c", ign] }], 0);
    assert_eq!(a.ok(&["stop", "-t", "1", "ign"]).trim(), "ign");
    assert_eq!(a.inspect_f("ign", "{{.State.Status}} {{.State.ExitCode}}"), "exited 137");
    assert!(!alive(ign_pid));
    rm_all_and_assert_clean(&a, &before, true);
}

#[test]
fn container_that_died_while_the_agent_was_down_reports_its_exit_status() {
    let _h = host_shared();
    let mut a = agent();
    let vol = a.root().scratch().join("v");
    fs::create_dir_all(&vol).expect("mkdir v");
    let volspec = format!("{}:/v", s(&vol));
    let e42_script = "while [ ! -e /v/go ]; do sleep 0.05; done; echo bye; exit 42";
    a.run_detached(&["--name", "e42", "-v", &volspec, "busybox", "sh", "-c", e42_script]);
    a.run_detached(&["--name", "k9", "busybox", "sleep", "100501"]);
    a.run_detached(&["--name", "up", "busybox", "sleep", "100502"]);
    let (e42, k9, up) = (a.pid_of("e42"), a.pid_of("k9"), a.pid_of("up"));
    a.kill9();
    fs::write(vol.join("go"), "").expect("touch v/go");
    // SAFETY: kill(2) of k9's pid 1, which this test started.
    unsafe { libc::kill(k9 as i32, libc::SIGKILL) };
    wait_dead(e42, "e42");
    wait_dead(k9, "k9");
    assert_eq!(a.ok(&["logs", "e42"]), "bye\n", "logs with no agent running");
    a.restart();
    for (n, want) in [("e42", "exited 42"), ("k9", "exited 137")] {
        wait_inspect(&a, n, "{{.State.Status}} {{.State.ExitCode}}", want);
    }
    assert_adopted(&a, &[Seen { name: "up", pid: up, argv: vec!["sleep", "100502"] }], 0);
    assert_eq!(a.ok(&["wait", "e42"]).trim(), "42", "wait of a container that ended while no agent ran");
    let ps = a.ps_all();
    let e42_status = ps.iter().find(|r| r["Names"] == "e42").map(|r| r["Status"].as_str().unwrap_or("").to_string()).unwrap_or_default();
    assert!(e42_status.starts_with("Exited (42)"), "ps Status of e42: {e42_status:?}");
    let ev = past_events(&a, &["event=die"]);
    let code_of =
        |name: &str| ev.iter().find(|e| e["Actor"]["Attributes"]["name"] == name).map(|e| e["Actor"]["Attributes"]["exitCode"].clone());
    assert_eq!(code_of("e42"), Some(Value::from("42")), "the new agent reports e42's death as an event: {ev:?}");
    assert_eq!(code_of("k9"), Some(Value::from("137")), "the new agent reports k9's death as an event: {ev:?}");
    a.ok(&["rm", "-f", "e42", "k9", "up"]);
    assert!(monitors(&a).is_empty(), "monitors left: {:?}", monitors(&a));
}

#[test]
fn logs_follow_without_an_agent_ends_when_the_container_exits() {
    let _h = host_shared();
    let mut a = agent();
    a.run_detached(&["--name", "lf", "busybox", "sh", "-c", "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo last words"]);
    let lf = a.pid_of("lf");
    poll("lf printed its first line", PATIENCE, || (a.ok(&["logs", "lf"]) == "first\n").then_some(()));
    a.kill9();
    // `logs -f` reads the files: it works with no agent, and follows until the container ends.
    let mut follow =
        a.command(&["logs", "-f", "lf"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("logs -f");
    sleep_ms(500);
    fs::write(format!("/proc/{lf}/root/tmp/go"), "").expect("touch lf's /tmp/go");
    wait_dead(lf, "lf");
    let deadline = Instant::now() + PATIENCE;
    while follow.try_wait().expect("try_wait logs -f").is_none() {
        if Instant::now() > deadline {
            let _ = follow.kill();
            let out = follow.wait_with_output().expect("logs -f output");
            panic!(
                "logs -f lf (no agent running) did not return within {PATIENCE:?} after lf ended; it printed {:?}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        sleep_ms(50);
    }
    let out = follow.wait_with_output().expect("logs -f output");
    assert_eq!(out.status.code(), Some(0), "logs -f exit; stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nlast words\n", "logs -f with no agent");
    a.restart();
    wait_inspect(&a, "lf", "{{.State.Status}} {{.State.ExitCode}}", "exited 0");
    a.ok(&["rm", "lf"]);
}

// ---------------------------------------------------------------------------------------------
// Logs

/// Checks one log file line: `<RFC3339 with fraction>Z <stdout|stderr> <F|P> <text>`.
fn check_log_line(line: &str, file: &Path) {
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
fn log_files(a: &Agent, id: &str) -> BTreeMap<String, u64> {
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

#[test]
fn log_rotation_under_a_tight_cap() {
    let _h = host_shared();
    let a = agent();
    // 4000 lines of about 60 bytes in the file, with short pauses so the files are watched while
    // they rotate.
    let script = "i=0; while [ $i -lt 4000 ]; do echo \"rotation line $i\"; i=$((i+1)); [ $((i % 100)) -eq 0 ] && sleep 0.05; done; \
                  echo > /tmp/ready; exec sleep 100601";
    let id = a.run_detached(&["--name", "rot", "--log-opt", "max-size=8k", "--log-opt", "max-file=2", "busybox", "sh", "-c", script]);
    let pid = a.pid_of("rot");
    // Watch the files while the container writes.
    let mut samples = 0;
    let marker = format!("/proc/{pid}/root/tmp/ready");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let done = Path::new(&marker).exists();
        let files = log_files(&a, &id);
        samples += 1;
        assert!(files.len() <= 2, "more than max-file=2 log files: {files:?}");
        assert!(files.values().all(|n| *n <= 8192), "a log file over max-size=8k: {files:?}");
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "rot never finished writing");
        sleep_ms(2);
    }
    println!("{samples} samples of the log files while rot wrote");
    assert!(samples > 5, "test setup: only {samples} looks at the files while rot wrote");
    sleep_ms(300);
    let files = log_files(&a, &id);
    assert!(files.len() <= 2 && files.values().all(|n| *n <= 8192), "after writing: {files:?}");
    assert!(files.contains_key("container.log") && files.contains_key("container.log.1"), "rotation happened: {files:?}");
    for n in files.keys() {
        let p = a.container_dir(&id).join(n);
        for l in fs::read_to_string(&p).expect("read log file").lines() {
            check_log_line(l, &p);
        }
    }
    let out = a.ok(&["logs", "rot"]);
    let nums: Vec<u32> = out
        .lines()
        .map(|l| l.strip_prefix("rotation line ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("unexpected logs line {l:?}")))
        .collect();
    assert_eq!(nums.last(), Some(&3999), "the newest line is in the logs");
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "logs are a contiguous run of lines, in order: {:?}...",
        &nums[..nums.len().min(10)]
    );
    assert!(nums.len() >= 100, "only {} lines kept in 2 × 8k", nums.len());
    let tail = a.ok(&["logs", "--tail", "5", "rot"]);
    let want: String = (3995..4000).map(|i| format!("rotation line {i}\n")).collect();
    assert_eq!(tail, want, "logs --tail 5");
    let ts = a.ok(&["logs", "-t", "--tail", "1", "rot"]);
    let (t, text) = ts.trim_end().split_once(' ').unwrap_or_else(|| panic!("logs -t line: {ts:?}"));
    assert!(t.contains('T') && t.ends_with('Z') && text == "rotation line 3999", "logs -t --tail 1: {ts:?}");
    a.ok(&["rm", "-f", "rot"]);
}

#[test]
fn logs_keep_stdout_and_stderr_apart() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&["--name", "se", "busybox", "sh", "-c", "echo out1; echo err1 >&2; echo out2"]);
    wait_inspect(&a, "se", "{{.State.Status}}", "exited");
    let (code, out, err) = a.code(&["logs", "se"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "out1\nout2\n", "err1\n"));
    let (_, out, err) = a.code(&["logs", "--since", "1h", "se"]);
    assert_eq!((out.as_str(), err.as_str()), ("out1\nout2\n", "err1\n"), "logs --since 1h");
    // A whole second after the container's output (RFC 3339, seconds): nothing.
    sleep_ms(2100);
    let now = berth_tests::tool("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).trim().to_string();
    let (code, out, err) = a.code(&["logs", "--since", &now, "se"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""), "logs --since {now}, after the container's last output");
    a.ok(&["rm", "se"]);
    // json-file keeps logs the same way.
    a.run_detached(&["--name", "js", "--log-driver", "json-file", "busybox", "sh", "-c", "echo out1; echo err1 >&2"]);
    wait_inspect(&a, "js", "{{.State.Status}}", "exited");
    let (code, out, err) = a.code(&["logs", "js"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "out1\n", "err1\n"), "--log-driver json-file");
    a.ok(&["rm", "js"]);
}

#[test]
fn logs_follow_across_rotation_ends_when_the_container_exits() {
    let _h = host_shared();
    let a = agent();
    // About 20 bytes of text a line, 50 lines then a pause: the 8k files rotate several times
    // while `logs -f` reads.
    let script = "sleep 1; i=0; while [ $i -lt 1200 ]; do echo \"follow line $i\"; i=$((i+1)); \
                  [ $((i % 50)) -eq 0 ] && sleep 0.1; done; exit 3";
    let id = a.run_detached(&["--name", "lf", "--log-opt", "max-size=8k", "--log-opt", "max-file=2", "busybox", "sh", "-c", script]);
    let (code, out, err) = a.code(&["logs", "-f", "lf"]);
    assert_eq!(code, 0, "logs -f exit code; stderr: {err}");
    let want: String = (0..1200).map(|i| format!("follow line {i}\n")).collect();
    if out != want {
        let got: Vec<&str> = out.lines().collect();
        let first_bad = got.iter().enumerate().find(|(i, l)| **l != format!("follow line {i}")).map(|(i, l)| format!("line {i}: {l:?}"));
        panic!("logs -f lost or repeated lines across rotation: {} lines, first difference at {first_bad:?}", got.len());
    }
    assert_eq!(a.inspect_f("lf", "{{.State.Status}} {{.State.ExitCode}}"), "exited 3", "logs -f returned because lf ended");
    assert!(log_files(&a, &id).len() <= 2);
    a.ok(&["rm", "lf"]);
}

// ---------------------------------------------------------------------------------------------
// exec, health checks, stats, update

#[test]
fn exec_joins_the_containers_namespaces_and_cgroup() {
    let _h = host_shared();
    let a = agent();
    let id = a.run_detached(&["--name", "ex", "-h", "exhost", "busybox", "sleep", "100701"]);
    let out = a.ok(&["exec", "ex", "sh", "-c", "echo pid=$$; echo host=$(hostname); echo one=$(cat /proc/1/cmdline | tr '\\0' ' ')"]);
    let kv = |k: &str| {
        out.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).unwrap_or_else(|| panic!("no {k}= in {out}"))
    };
    let pid: u32 = kv("pid").parse().expect("pid");
    assert!(pid < 10, "exec'd shell has pid {pid}: not in the container's pid namespace");
    assert_eq!(kv("host"), "exhost", "hostname inside exec");
    assert_eq!(kv("one"), "sleep 100701", "/proc/1/cmdline inside exec is the container's command");
    assert_eq!(a.ok(&["exec", "-e", "A=B", "-w", "/tmp", "-u", "1000", "ex", "sh", "-c", "echo $A $(pwd) $(id -u)"]), "B /tmp 1000\n");
    assert_eq!(a.code(&["exec", "ex", "sh", "-c", "exit 4"]).0, 4, "exec exit code is the command's");
    let out = a.cmd_in(&["exec", "-i", "ex", "cat"], Stdin::Bytes(b"piped in\n".to_vec()));
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()), (Some(0), "piped in\n".to_string()), "exec -i");
    let out = a.cmd_in(&["exec", "ex", "cat"], Stdin::Bytes(b"not for it\n".to_vec()));
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), String::new()),
        "exec without -i: empty stdin"
    );
    let (code, _, err) = a.code(&["exec", "ex", "nosuchcmd"]);
    assert_eq!(code, 127, "exec of a missing command: {err}");
    // exec -d: the process runs in the container's cgroup; top lists it.
    a.ok(&["exec", "-d", "ex", "sleep", "100702"]);
    let p = poll("exec -d sleep 100702 runs", PATIENCE, || procs_with_argv(&["sleep", "100702"]).first().copied());
    assert!(cgroup_pids(&a, &id).contains(&p), "exec'd pid {p} not in the container's pids cgroup {:?}", cgroup_pids(&a, &id));
    let top = a.ok(&["top", "ex"]);
    assert!(
        top.lines().next().is_some_and(|h| h.split_whitespace().collect::<Vec<_>>() == ["UID", "PID", "PPID", "TIME", "CMD"]),
        "top header:\n{top}"
    );
    assert!(top.lines().any(|l| l.contains(&p.to_string()) && l.ends_with("sleep 100702")), "top lists the exec'd process {p}:\n{top}");
    assert!(
        past_events(&a, &["container=ex"]).iter().any(|e| e["Action"].as_str().is_some_and(|s| s.starts_with("exec_start"))),
        "an exec_start event"
    );
    a.ok(&["rm", "-f", "ex"]);
    assert!(!alive(p), "the exec'd process outlived rm -f");
}

fn health(a: &Agent, name: &str) -> Value {
    serde_json::from_str(&a.inspect_f(name, "{{json .State.Health}}")).expect("State.Health is JSON")
}

#[test]
fn health_checks_start_on_an_idle_agent() {
    let _h = host_shared();
    let a = agent();
    // One container and nothing else: no other request or child exit wakes the agent. Only
    // inspect (which reads the files) is used while waiting.
    a.run_detached(&["--name", "solo", "--health-cmd", "true", "--health-interval", "300ms", "busybox", "sleep", "100811"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = String::new();
    while Instant::now() < deadline {
        status = a.inspect_f("solo", "{{.State.Health.Status}}");
        if status == "healthy" {
            break;
        }
        sleep_ms(100);
    }
    // 20 s is 60 intervals of 300 ms.
    assert_eq!(status, "healthy", "no health check ran within 20 s (interval 300 ms) of run -d on an otherwise idle agent");
    a.ok(&["rm", "-f", "solo"]);
}

#[test]
fn health_checks_mark_containers_healthy_or_unhealthy() {
    let _h = host_shared();
    let a = agent();
    let hc = |name: &str, cmd: &str, extra: &[&str]| {
        let mut args = vec!["--name", name, "--health-cmd", cmd, "--health-interval", "300ms", "--health-retries", "2"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sleep", "100801"]);
        a.run_detached(&args);
    };
    hc("good", "true", &[]);
    hc("bad", "echo failing; exit 1", &[]);
    hc("slow", "sleep 5.25", &["--health-timeout", "500ms"]);
    let ps_status = |name: &str| {
        a.ps_all().iter().find(|r| r["Names"] == name).map(|r| r["Status"].as_str().unwrap_or("").to_string()).unwrap_or_default()
    };
    wait_inspect(&a, "good", "{{.State.Health.Status}}", "healthy");
    wait_inspect(&a, "bad", "{{.State.Health.Status}}", "unhealthy");
    wait_inspect(&a, "slow", "{{.State.Health.Status}}", "unhealthy");
    assert!(ps_status("good").ends_with("(healthy)"), "ps Status of good: {:?}", ps_status("good"));
    assert!(ps_status("bad").ends_with("(unhealthy)"), "ps Status of bad: {:?}", ps_status("bad"));
    let h = health(&a, "bad");
    assert!(h["FailingStreak"].as_u64().unwrap_or(0) >= 2, "FailingStreak of bad: {h}");
    let log = h["Log"].as_array().expect("Health.Log");
    assert!(!log.is_empty() && log.len() <= 5, "Health.Log keeps the last 5: {}", log.len());
    assert!(log.iter().all(|e| e["ExitCode"] == 1 && e["Output"] == "failing\n"), "bad's Log: {log:?}");
    let h = health(&a, "slow");
    let last = h["Log"].as_array().and_then(|l| l.last()).expect("slow's Log").clone();
    assert!(last["Output"].as_str().is_some_and(|o| o.contains("Health check exceeded timeout")), "slow's last check: {last}");
    assert!(procs_with_argv(&["sleep", "5.25"]).len() <= 1, "timed-out checks are killed, not left running");
    let h = health(&a, "good");
    assert_eq!(h["FailingStreak"], 0, "good: {h}");
    let ev = past_events(&a, &[]);
    let has = |name: &str, action: &str| ev.iter().any(|e| e["Actor"]["Attributes"]["name"] == name && e["Action"] == action);
    assert!(has("good", "health_status: healthy"), "a health_status: healthy event for good: {:?}", actions(&ev));
    assert!(has("bad", "health_status: unhealthy"), "a health_status: unhealthy event for bad: {:?}", actions(&ev));
    let pid = a.pid_of("good");
    a.ok(&["rm", "-f", "good", "bad", "slow"]);
    assert!(!alive(pid));
    // No check configured: no Health, no health in ps.
    a.run_detached(&["--name", "none", "busybox", "sleep", "100802"]);
    assert_eq!(a.inspect_f("none", "{{json .State.Health}}"), "null", "no health check configured");
    assert!(!ps_status("none").contains("health"), "ps Status without a check: {:?}", ps_status("none"));
    a.ok(&["rm", "-f", "none"]);
}

#[test]
fn stats_memory_matches_the_cgroup() {
    let _h = host_shared();
    let a = agent();
    // A shell variable of 20 MB: anonymous memory the container holds (the shell must stay alive,
    // so the command after `sleep` keeps it from exec'ing sleep).
    let id = a.run_detached(&[
        "--name",
        "mem",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo > /tmp/ready; sleep 100901; echo ${#x}",
    ]);
    wait_ready(&a, "mem");
    let cg = cgroup_dir(&a, "memory", &id);
    let cg_figure = || -> u64 {
        let usage: u64 = read_trim(&cg.join("memory.usage_in_bytes")).parse().expect("usage_in_bytes");
        let stat = fs::read_to_string(cg.join("memory.stat")).expect("memory.stat");
        let cache: u64 =
            stat.lines().find_map(|l| l.strip_prefix("total_cache ")).and_then(|v| v.trim().parse().ok()).expect("total_cache");
        usage - cache
    };
    let held = cg_figure();
    assert!(held >= 18_000_000, "test setup: the container holds only {held} bytes by its cgroup");
    let out = a.ok(&["stats", "--no-stream", "--format", "json", "mem"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("stats --format json is not one JSON object ({e}):\n{out}"));
    let after = cg_figure();
    let got = v["MemBytes"].as_u64().unwrap_or_else(|| panic!("MemBytes: {v}"));
    let (lo, hi) = (held.min(after) as f64 * 0.9, held.max(after) as f64 * 1.1);
    assert!((lo..=hi).contains(&(got as f64)), "stats MemBytes {got}, cgroup says {held}..{after} (usage - total_cache)");
    assert_eq!(v["Name"], "mem");
    assert!(id.starts_with(v["ID"].as_str().unwrap_or("?")), "stats ID {} of {id}", v["ID"]);
    assert_eq!(v["PIDs"], "2", "sh and sleep: {v}");
    assert_eq!(v["OOMKills"], 0);
    // MemPerc is MemBytes against the 64 MiB limit: about 31 %.
    let perc: f64 = v["MemPerc"].as_str().and_then(|p| p.trim_end_matches('%').parse().ok()).unwrap_or_else(|| panic!("MemPerc: {v}"));
    let want = got as f64 * 100.0 / (64.0 * 1024.0 * 1024.0);
    assert!((perc - want).abs() < 1.0, "MemPerc {perc} for {got} of a 64 MiB limit (expected {want:.2})");
    // The table form lists it too.
    let table = a.ok(&["stats", "--no-stream"]);
    assert!(table.lines().any(|l| l.contains("mem") && l.contains(&id[..12])), "stats table:\n{table}");
    a.ok(&["rm", "-f", "mem"]);
}

#[test]
fn update_changes_live_limits() {
    let _h = host_shared();
    let a = agent();
    let id = a.run_detached(&["--name", "up", "-m", "64m", "busybox", "sleep", "101001"]);
    let pid = a.pid_of("up");
    let mem = cgroup_dir(&a, "memory", &id);
    let limit = || read_trim(&mem.join("memory.limit_in_bytes"));
    assert_eq!(limit(), "67108864");
    assert_eq!(a.ok(&["update", "-m", "128m", "up"]).trim(), "up");
    assert_eq!(limit(), "134217728", "raised live");
    assert_eq!(a.inspect_f("up", "{{.HostConfig.Memory}}"), "134217728");
    assert_eq!(a.ok(&["update", "-m", "48m", "up"]).trim(), "up");
    assert_eq!(limit(), "50331648", "lowered live");
    assert_eq!(a.inspect_f("up", "{{.HostConfig.Memory}}"), "50331648");
    a.ok(&["update", "-m", "48m", "--memory-swap", "96m", "up"]);
    assert_eq!(read_trim(&mem.join("memory.memsw.limit_in_bytes")), "100663296", "--memory-swap live");
    assert_eq!(a.inspect_f("up", "{{.HostConfig.MemorySwap}}"), "100663296");
    a.ok(&["update", "--memory-reservation", "32m", "--pids-limit", "50", "--cpus", "0.5", "--cpu-shares", "512", "up"]);
    assert_eq!(read_trim(&mem.join("memory.soft_limit_in_bytes")), "33554432");
    assert_eq!(read_trim(&cgroup_dir_of(pid, "pids").join("pids.max")), "50");
    let cpu = cgroup_dir_of(pid, "cpu");
    assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read_trim(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");
    assert_eq!(
        a.inspect_f("up", "{{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.MemoryReservation}}"),
        "50 500000000 512 33554432"
    );
    a.ok(&["update", "--restart", "always", "up"]);
    assert_eq!(a.inspect_f("up", "{{.HostConfig.RestartPolicy.Name}}"), "always");
    assert_eq!(a.pid_of("up"), pid, "update does not restart the container");
    // The new policy is in force: the container comes back after its process is killed.
    // SAFETY: kill(2) of the container's pid 1, which this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    poll("up restarted under the policy set by update", PATIENCE, || {
        (a.inspect_f("up", "{{.State.Status}} {{.RestartCount}}") == "running 1").then_some(())
    });
    // The limits survive the restart.
    let id2 = id_of(&a, "up");
    assert_eq!(read_trim(&cgroup_dir(&a, "memory", &id2).join("memory.limit_in_bytes")), "50331648", "limit after the restart");
    a.ok(&["rm", "-f", "up"]);
}

// ---------------------------------------------------------------------------------------------
// cp, rename, prune, events

/// Starts `cpr` with symlinks that point out of the container if followed on the host:
/// /data/esc -> /etc, /data/rootlink -> /, /data/victim -> /etc/passwd.
fn cp_container(a: &Agent) {
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

#[test]
fn cp_both_ways_stays_inside_the_container() {
    let _h = host_exclusive();
    let a = seeded();
    let before = a.snapshot();
    let host_passwd = fs::read("/etc/passwd").expect("read host /etc/passwd");
    cp_container(&a);
    let scratch = a.root().scratch().to_path_buf();
    let uniq = format!("berth-cp-{}", std::process::id());
    let src = scratch.join(&uniq);
    fs::write(&src, "from the host\n").expect("write cp source");

    for stopped in [false, true] {
        let tag = if stopped { "stopped" } else { "running" };
        if stopped {
            a.ok(&["stop", "-t", "0", "cpr"]);
        }
        // out, a plain file
        let out = scratch.join(format!("in-{tag}"));
        a.ok(&["cp", "cpr:/data/in", s(&out)]);
        assert_eq!(fs::read_to_string(&out).expect("read copied file"), "inner\n", "{tag}: cp out");
        // in, through /data/esc -> /etc: lands in the container's /etc, never the host's.
        let name = format!("{uniq}-{tag}");
        let src2 = scratch.join(&name);
        fs::write(&src2, format!("{tag}\n")).expect("write source");
        a.ok(&["cp", s(&src2), "cpr:/data/esc/"]);
        assert!(!Path::new("/etc").join(&name).exists(), "{tag}: cp into /data/esc/ (-> /etc) wrote the host's /etc/{name}");
        let back = scratch.join(format!("back-{tag}"));
        a.ok(&["cp", &format!("cpr:/etc/{name}"), s(&back)]);
        assert_eq!(fs::read_to_string(&back).expect("read"), format!("{tag}\n"), "{tag}: the file is in the container's /etc");
        // out, through /data/rootlink -> / : the container's /etc/passwd, not the host's.
        let pw = scratch.join(format!("pw-{tag}"));
        a.ok(&["cp", "cpr:/data/rootlink/etc/passwd", s(&pw)]);
        assert_eq!(fs::read_to_string(&pw).expect("read"), CONTAINER_PASSWD, "{tag}: cp out through an absolute symlink");
        // `..` cannot climb out of the container either.
        let dd = scratch.join(format!("dotdot-{tag}"));
        a.ok(&["cp", "cpr:/data/../../../../etc/passwd", s(&dd)]);
        assert_eq!(fs::read_to_string(&dd).expect("read"), CONTAINER_PASSWD, "{tag}: cp out through ..");
        // Onto an absolute symlink: whatever berth does with the link, the host's file is safe
        // (cp_onto_a_symlink_replaces_the_link checks what happens inside).
        a.ok(&["cp", s(&src), "cpr:/data/victim"]);
        assert_eq!(fs::read("/etc/passwd").expect("read /etc/passwd"), host_passwd, "{tag}: the host's /etc/passwd changed");
        assert!(!Path::new("/etc").join(&uniq).exists(), "{tag}: cp wrote the host's /etc");
        if !stopped {
            // Undo whatever that did inside, for the next round.
            a.ok(&[
                "exec",
                "cpr",
                "sh",
                "-c",
                "echo root:x:0:0:root:/root:/bin/sh > /etc/passwd; rm /data/victim; busybox ln -s /etc/passwd /data/victim",
            ]);
        }
    }
    // The copies into the stopped container are there when it runs again.
    a.ok(&["start", "cpr"]);
    wait_inspect(&a, "cpr", "{{.State.Status}}", "running");
    assert_eq!(a.ok(&["exec", "cpr", "cat", &format!("/etc/{uniq}-stopped")]), "stopped\n");
    rm_all_and_assert_clean(&a, &before, true);
}

#[test]
fn cp_onto_a_symlink_replaces_the_link() {
    let _h = host_shared();
    let a = agent();
    cp_container(&a);
    let scratch = a.root().scratch().to_path_buf();
    let src = scratch.join("src");
    fs::write(&src, "from the host\n").expect("write cp source");
    for stopped in [false, true] {
        let tag = if stopped { "stopped" } else { "running" };
        if stopped {
            a.ok(&["exec", "cpr", "sh", "-c", "rm /data/victim; busybox ln -s /etc/passwd /data/victim"]);
            a.ok(&["stop", "-t", "0", "cpr"]);
        }
        // berth's contract (README, cp.rs): a symlink at the destination is replaced, never
        // followed. (Docker's CLI instead follows it, resolved inside the container.)
        a.ok(&["cp", s(&src), "cpr:/data/victim"]);
        let pw = scratch.join(format!("pw-{tag}"));
        a.ok(&["cp", "cpr:/etc/passwd", s(&pw)]);
        let v = scratch.join(format!("victim-{tag}"));
        a.ok(&["cp", "-L", "cpr:/data/victim", s(&v)]);
        assert_eq!(
            fs::read_to_string(&pw).expect("read"),
            CONTAINER_PASSWD,
            "{tag}: cp SRC cpr:/data/victim (a link to /etc/passwd) wrote the container's /etc/passwd through the link"
        );
        assert_eq!(fs::read_to_string(&v).expect("read"), "from the host\n", "{tag}: /data/victim holds the copy");
    }
    a.ok(&["rm", "-f", "cpr"]);
}

#[test]
fn cp_with_relative_host_paths() {
    let _h = host_shared();
    let a = agent();
    cp_container(&a);
    let cwd = a.root().scratch().join("cwd");
    fs::create_dir_all(&cwd).expect("mkdir cwd");
    fs::write(cwd.join("rel-src"), "relative\n").expect("write rel-src");
    let layers_before: BTreeSet<String> = fs::read_dir(a.root().path().join("layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut wrong = Vec::new();
    for stopped in [false, true] {
        let tag = if stopped { "stopped" } else { "running" };
        if stopped {
            a.ok(&["stop", "-t", "0", "cpr"]);
        }
        // Relative host paths are relative to the working directory of `berth cp`, as Docker's.
        for args in [
            vec!["cp".to_string(), "rel-src".to_string(), format!("cpr:/data/rel-{tag}")],
            vec!["cp".to_string(), "cpr:/data/in".to_string(), format!("out-{tag}")],
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(a.command(&args).current_dir(&cwd), Stdin::Null);
            if !out.status.success() {
                wrong.push(format!(
                    "{tag}: (cd {}; berth {}) failed: {}",
                    cwd.display(),
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        match fs::read_to_string(cwd.join(format!("out-{tag}"))) {
            Ok(t) if t == "inner\n" => {}
            other => wrong.push(format!("{tag}: cp cpr:/data/in out-{tag} (relative): {}/out-{tag} is {other:?}", cwd.display())),
        }
    }
    let layers_after: BTreeSet<String> = fs::read_dir(a.root().path().join("layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let strays: Vec<&String> = layers_after.difference(&layers_before).collect();
    if !strays.is_empty() {
        wrong.push(format!("berth cp wrote into the image store: new entries in <root>/layers: {strays:?}"));
    }
    a.ok(&["start", "cpr"]);
    wait_inspect(&a, "cpr", "{{.State.Status}}", "running");
    for tag in ["running", "stopped"] {
        let (code, out, _) = a.code(&["exec", "cpr", "cat", &format!("/data/rel-{tag}")]);
        if (code, out.as_str()) != (0, "relative\n") {
            wrong.push(format!("{tag}: cp rel-src cpr:/data/rel-{tag} did not arrive (exit {code}, {out:?})"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    a.ok(&["rm", "-f", "cpr"]);
}

#[test]
fn cp_of_a_symlink_copies_the_link_unless_follow_link() {
    let _h = host_shared();
    let a = agent();
    cp_container(&a);
    let scratch = a.root().scratch().to_path_buf();
    // Docker copies a symlink source as a symlink; -L copies what it points to (in the container).
    let l = scratch.join("link");
    a.ok(&["cp", "cpr:/data/victim", s(&l)]);
    let md = fs::symlink_metadata(&l).expect("lstat copied link");
    let follow = scratch.join("followed");
    a.ok(&["cp", "-L", "cpr:/data/victim", s(&follow)]);
    assert_eq!(fs::read_to_string(&follow).expect("read"), CONTAINER_PASSWD, "cp -L follows the link inside the container");
    assert!(
        md.file_type().is_symlink() && fs::read_link(&l).expect("readlink") == Path::new("/etc/passwd"),
        "cp CONTAINER:/data/victim (a symlink to /etc/passwd) without -L: Docker copies the link itself; got a {}",
        if md.file_type().is_symlink() { "symlink to something else" } else { "regular file (the link was followed)" }
    );
    a.ok(&["rm", "-f", "cpr"]);
}

#[test]
fn rename_and_container_prune() {
    let _h = host_shared();
    let a = agent();
    let id = a.run_detached(&["--name", "old", "busybox", "sleep", "101201"]);
    a.run_detached(&["--name", "other", "busybox", "sleep", "101202"]);
    let pid = a.pid_of("old");
    let (code, out, err) = a.code(&["rename", "old", "new"]);
    assert_eq!((code, out.as_str()), (0, ""), "rename: {err}");
    assert_eq!(a.inspect_f("new", "{{.Id}} {{.Name}} {{.State.Pid}}"), format!("{id} /new {pid}"), "renamed, same container and process");
    assert_eq!(a.code(&["inspect", "old"]).0, 1, "the old name is gone");
    assert!(past_events(&a, &["container=new"]).iter().any(|e| e["Action"] == "rename"), "a rename event");
    let (code, _, err) = a.code(&["rename", "new", "other"]);
    assert_eq!(code, 1, "rename to a name in use: {err}");
    assert_one_error(&err, &["already in use", "Conflict"]);
    let (code, _, err) = a.code(&["rename", "nosuch", "x"]);
    assert_eq!(code, 1);
    assert_eq!(assert_one_error(&err, &["No such container"]), "Error: No such container: nosuch");
    assert_eq!(a.inspect_f("new", "{{.Name}}"), "/new", "failed renames changed nothing");

    // prune removes exactly the containers that are not running.
    let mut gone = BTreeSet::new();
    for (name, cmd) in [("e0", "true"), ("e1", "false")] {
        let _ = a.code(&["run", "--name", name, "busybox", cmd]);
        gone.insert(id_of(&a, name));
    }
    let _ = a.code(&["run", "--name", "e1x", "busybox", "sh", "-c", "exit 9"]);
    gone.insert(id_of(&a, "e1x"));
    a.ok(&["create", "--name", "c0", "busybox", "true"]);
    gone.insert(id_of(&a, "c0"));
    let out = a.ok(&["container", "prune", "-f"]);
    let printed: BTreeSet<String> = out.lines().filter(|l| berth_tests::is_hex64(l.trim())).map(|l| l.trim().to_string()).collect();
    assert_eq!(printed, gone, "prune prints the IDs it removed:\n{out}");
    let left: BTreeSet<String> = a.ps_all().iter().map(|r| r["Names"].as_str().expect("Names").to_string()).collect();
    assert_eq!(left, ["new", "other"].iter().map(|s| s.to_string()).collect(), "prune kept the running containers");
    for g in &gone {
        assert!(!a.container_dir(g).exists(), "pruned container {g} left its directory");
    }
    let ls = a.ok(&["container", "ls"]);
    assert!(ls.contains("new") && ls.contains("other") && ls.lines().count() == 3, "container ls:\n{ls}");
    assert!(alive(pid));
    a.ok(&["rm", "-f", "new", "other"]);
}

#[test]
fn events_stream_create_start_die_destroy() {
    let _h = host_shared();
    let a = agent();
    let mut child = a
        .command(&["events", "--format", "json", "--filter", "container=evs"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start berth events");
    let stdout = child.stdout.take().expect("events stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The stream is open before anything happens: a container it must not show, then evs.
    sleep_ms(500);
    a.ok(&["run", "--rm", "busybox", "true"]);
    let (code, _, err) = a.code(&["run", "--name", "evs", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "{err}");
    let id = id_of(&a, "evs");
    a.ok(&["rm", "evs"]);
    let mut got: Vec<Value> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !got.iter().any(|e| e["Action"] == "destroy") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => got.push(serde_json::from_str(&l).unwrap_or_else(|e| panic!("events line is not JSON ({e}): {l}"))),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let acts = actions(&got);
    assert_eq!(acts, ["create", "start", "die", "destroy"], "events of evs, in order");
    assert!(got.iter().all(|e| e["id"] == id.as_str() && e["Actor"]["ID"] == id.as_str() && e["Type"] == "container"), "{got:?}");
    assert_eq!(got[2]["Actor"]["Attributes"]["exitCode"], "3", "die carries exitCode: {}", got[2]);
    assert_eq!(got[2]["Actor"]["Attributes"]["name"], "evs");
    // The same from memory, filtered by event.
    let dies = past_events(&a, &["event=die", "container=evs"]);
    assert_eq!(dies.len(), 1, "{dies:?}");
    assert_eq!(dies[0]["Actor"]["Attributes"]["exitCode"], "3");
}

// ---------------------------------------------------------------------------------------------
// Damaged records, systemd, --live-restore, --log-level

#[test]
fn a_damaged_state_record_is_skipped_and_the_rest_served() {
    let _h = host_shared();
    let mut a = agent();
    a.run_detached(&["--name", "c1", "busybox", "sleep", "101301"]);
    let bad = a.run_detached(&["--name", "c2", "busybox", "sleep", "101302"]);
    a.ok(&["run", "--name", "c3", "busybox", "true"]);
    let c1 = a.pid_of("c1");
    let state = a.container_dir(&bad).join("state");
    let mut bytes = fs::read(&state).expect("read state");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&state, &bytes).expect("write damaged state");

    let (code, out, err) = a.code(&["ps", "-a", "--format", "json"]);
    assert_eq!(code, 0, "ps -a with a damaged record: {err}");
    let names: BTreeSet<String> =
        out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter_map(|v| v["Names"].as_str().map(str::to_string)).collect();
    assert_eq!(names, ["c1", "c3"].iter().map(|s| s.to_string()).collect(), "ps -a lists the others");
    assert!(err.contains(&bad) && err.to_lowercase().contains("damaged"), "ps -a warns about the damaged record: {err:?}");

    a.kill9();
    let log_len = a.log().len();
    a.restart();
    let log = a.log()[log_len..].to_string();
    assert!(log.contains(&bad), "the agent names the damaged record it skips:\n{log}");
    assert_adopted(&a, &[Seen { name: "c1", pid: c1, argv: vec!["sleep", "101301"] }], 1);
    assert_eq!(a.inspect_f("c3", "{{.State.Status}} {{.State.ExitCode}}"), "exited 0");
    let (code, out, err) = a.code(&["run", "--rm", "busybox", "echo", "served"]);
    assert_eq!((code, out.as_str()), (0, "served\n"), "{err}");
    assert_eq!(fs::read(&state).expect("the damaged record is still there"), bytes, "the damaged record was changed or removed");
    a.ok(&["rm", "-f", "c1", "c3"]);
}

/// Receives datagrams until one satisfies `f` (or `timeout`); returns all received.
fn recv_until(rx: &UnixDatagram, timeout: Duration, f: impl Fn(&str) -> bool) -> Vec<String> {
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

#[test]
fn systemd_notify_ready_watchdog_stopping() {
    let _h = host_shared();
    let mut a = agent();
    a.stop();
    let path = a.root().scratch().join("notify.sock");
    let rx = UnixDatagram::bind(&path).expect("bind notify socket");
    a.set_agent_env("NOTIFY_SOCKET", Some(s(&path)));
    a.set_agent_env("WATCHDOG_USEC", Some("400000"));
    a.restart();
    let pid = a.pid().expect("agent pid");
    let got = recv_until(&rx, PATIENCE, |m| m.lines().any(|l| l == "READY=1"));
    let ready = got.iter().find(|m| m.lines().any(|l| l == "READY=1")).unwrap_or_else(|| panic!("no READY=1; got {got:?}"));
    assert!(ready.lines().any(|l| l == format!("MAINPID={pid}")), "READY names the agent's pid {pid}: {ready:?}");
    assert!(UnixStream::connect(a.socket()).is_ok(), "READY=1 sent but the socket does not accept");
    // WATCHDOG_USEC=400000: a ping every 200 ms. Three pings within 20 s is a bound that only a
    // missing or stuck watchdog misses.
    let pings = std::cell::Cell::new(0);
    let got = recv_until(&rx, Duration::from_secs(20), |m| {
        if m == "WATCHDOG=1" {
            pings.set(pings.get() + 1);
        }
        pings.get() >= 3
    });
    assert!(pings.get() >= 3, "{} WATCHDOG=1 within 20 s (interval 200 ms): {got:?}", pings.get());
    let (st, _) = a.stop();
    assert!(st.success(), "agent exit {st}");
    let got = recv_until(&rx, Duration::from_secs(5), |m| m == "STOPPING=1");
    assert!(got.iter().any(|m| m == "STOPPING=1"), "no STOPPING=1 on SIGTERM; got {got:?}");

    // WATCHDOG_PID names another process: the watchdog is not the agent's to feed.
    a.set_agent_env("WATCHDOG_PID", Some("1"));
    a.restart();
    let got = recv_until(&rx, PATIENCE, |m| m.starts_with("READY=1"));
    assert!(got.iter().any(|m| m.starts_with("READY=1")), "READY=1 again: {got:?}");
    // Five intervals of 200 ms: long enough to see pings that should not be there.
    let got = recv_until(&rx, Duration::from_millis(1000), |_| false);
    assert!(!got.iter().any(|m| m == "WATCHDOG=1"), "WATCHDOG=1 sent although WATCHDOG_PID is another process: {got:?}");
    a.stop();
    a.set_agent_env("NOTIFY_SOCKET", None);
    a.set_agent_env("WATCHDOG_USEC", None);
    a.set_agent_env("WATCHDOG_PID", None);
}

#[test]
fn live_restore_keeps_containers_across_an_agent_sigterm() {
    let _h = host_exclusive();
    let mut a = seeded();
    let before = a.snapshot();
    a.stop();
    a.set_agent_args(&[], &["--live-restore"]);
    a.restart();
    a.run_detached(&["--name", "lr-plain", "--stop-timeout", "30", "busybox", "sleep", "101401"]);
    a.run_detached(&["--name", "lr-init", "--init", "busybox", "sleep", "101402"]);
    let seen = vec![
        Seen { name: "lr-plain", pid: a.pid_of("lr-plain"), argv: vec!["sleep", "101401"] },
        Seen { name: "lr-init", pid: a.pid_of("lr-init"), argv: vec!["sleep", "101402"] },
    ];
    let (st, took) = a.stop();
    assert!(st.success(), "agent exit {st}\n{}", a.log());
    println!("agent with --live-restore stopped in {took:?}");
    assert!(!a.socket().exists(), "socket removed");
    for c in &seen {
        assert!(alive(c.pid), "{}: --live-restore, yet the agent's SIGTERM ended it", c.name);
        assert_eq!(a.inspect_f(c.name, "{{.State.Status}}"), "running", "{}: the record says running", c.name);
    }
    a.restart();
    assert_adopted(&a, &seen, 0);
    a.ok(&["stop", "-t", "1", "lr-plain", "lr-init"]);
    assert_eq!(a.inspect_f("lr-plain", "{{.State.ExitCode}}"), "137");
    assert_eq!(a.inspect_f("lr-init", "{{.State.ExitCode}}"), "143");
    rm_all_and_assert_clean(&a, &before, true);
}

#[test]
fn log_level_debug_shows_requests() {
    let _h = host_shared();
    let mut a = agent();
    let with = |a: &mut Agent, global: &[&str], env: Option<&str>| -> String {
        a.stop();
        a.set_agent_args(global, &[]);
        a.set_agent_env("BERTH_LOG_LEVEL", env);
        let from = a.log().len();
        a.restart();
        let (code, _, err) = a.code(&["run", "--rm", "busybox", "true"]);
        assert_eq!(code, 0, "{err}");
        a.ok(&["inspect", "busybox"]);
        let (st, _) = a.stop();
        assert!(st.success());
        let log = a.log()[from..].to_string();
        a.restart();
        log
    };
    let requests = |log: &str| log.lines().filter(|l| l.starts_with("berth agent: debug: request")).count();
    let log = with(&mut a, &["--log-level", "debug"], None);
    assert!(requests(&log) >= 2, "--log-level debug: request lines expected:\n{log}");
    let log = with(&mut a, &[], Some("debug"));
    assert!(requests(&log) >= 2, "BERTH_LOG_LEVEL=debug: request lines expected:\n{log}");
    let log = with(&mut a, &[], None);
    assert!(!log.contains("debug:"), "default level: no debug lines:\n{log}");
    let log = with(&mut a, &["--log-level", "error"], Some("debug"));
    assert!(!log.contains("debug:"), "--log-level error beats BERTH_LOG_LEVEL=debug:\n{log}");
    assert!(!log.contains("serving on"), "--log-level error hides the info line:\n{log}");
}

// ---------------------------------------------------------------------------------------------
// Bad input: Docker's exit code, one Error line, nothing lost

fn ps_state(a: &Agent) -> Vec<(String, String, String)> {
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
fn refused(a: &Agent, args: &[&str], code: i32, words: &[&str]) -> String {
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

#[test]
fn bad_exec_into_a_stopped_container() {
    let _h = host_exclusive();
    let a = seeded();
    a.run_detached(&["--name", "st", "busybox", "sh", "-c", "echo kept; exec sleep 101501"]);
    a.ok(&["stop", "-t", "0", "st"]);
    let line = refused(&a, &["exec", "st", "true"], 125, &["is not running"]);
    assert_eq!(line, "Error: container st is not running");
    assert_eq!(a.inspect_f("st", "{{.State.Status}} {{.State.ExitCode}}"), "exited 137");
    assert_eq!(a.ok(&["logs", "st"]), "kept\n", "the log is intact");
}

#[test]
fn bad_update_memory_below_current_usage() {
    let _h = host_exclusive();
    let a = seeded();
    let id = a.run_detached(&[
        "--name",
        "hog",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo > /tmp/ready; sleep 101601; echo ${#x}",
    ]);
    wait_ready(&a, "hog");
    let pid = a.pid_of("hog");
    let limit = cgroup_dir(&a, "memory", &id).join("memory.limit_in_bytes");
    refused(&a, &["update", "-m", "10m", "hog"], 1, &["Cannot update memory limit below current usage"]);
    assert_eq!(read_trim(&limit), "67108864", "the live limit is unchanged");
    assert_eq!(a.inspect_f("hog", "{{.HostConfig.Memory}} {{.State.Status}} {{.State.Pid}}"), format!("67108864 running {pid}"));
    assert!(alive(pid));
    a.ok(&["rm", "-f", "hog"]);
}

#[test]
fn bad_logs_of_an_unknown_container() {
    let _h = host_exclusive();
    let mut a = seeded();
    let line = refused(&a, &["logs", "nosuch"], 1, &["No such container"]);
    assert_eq!(line, "Error: No such container: nosuch");
    a.run_detached(&["--name", "nolog", "--log-driver", "none", "busybox", "sh", "-c", "echo x"]);
    wait_inspect(&a, "nolog", "{{.State.Status}}", "exited");
    refused(&a, &["logs", "nolog"], 1, &["log"]);
    a.ok(&["rm", "nolog"]);
    // The same without an agent: logs reads the files.
    a.stop();
    let (code, _, err) = a.code(&["logs", "nosuch"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(assert_one_error(&err, &["No such container"]), "Error: No such container: nosuch");
}

#[test]
fn bad_run_flags_of_supervision() {
    let _h = host_exclusive();
    let a = seeded();
    a.run_detached(&["--name", "bystander", "busybox", "sleep", "101701"]);
    let pid = a.pid_of("bystander");
    let cases: &[(&[&str], &[&str])] = &[
        (&["run", "--restart", "bogus", "busybox", "true"], &["restart"]),
        (&["run", "--restart", "on-failure:x", "busybox", "true"], &["restart", "retry"]),
        (&["run", "--restart", "always", "--rm", "busybox", "true"], &["Conflicting options"]),
        (&["create", "--restart", "always", "--rm", "busybox", "true"], &["Conflicting options"]),
        (&["run", "-d", "--restart", "unless-stopped", "--rm", "busybox", "true"], &["Conflicting options"]),
        (&["run", "--log-opt", "max-size=1", "busybox", "true"], &["max-size"]),
        (&["run", "--log-opt", "max-file=0", "busybox", "true"], &["max-file"]),
        (&["run", "--log-driver", "syslog", "busybox", "true"], &["syslog"]),
        (&["run", "--health-cmd", "true", "--health-interval", "bogus", "busybox", "true"], &["bogus", "duration"]),
        (&["run", "--health-interval", "bogus", "busybox", "true"], &["bogus", "duration"]),
        (&["run", "--health-timeout", "bogus", "busybox", "true"], &["bogus", "duration"]),
        (&["run", "--health-start-period", "bogus", "busybox", "true"], &["bogus", "duration"]),
    ];
    let mut wrong = Vec::new();
    for (args, words) in cases {
        let before = a.snapshot();
        let ps = ps_state(&a);
        let (got, out, err) = a.code(args);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let ok_line = lines.len() == 1
            && lines[0].starts_with("Error: ")
            && words.iter().any(|w| lines[0].to_lowercase().contains(&w.to_lowercase()));
        if got != 125 || !ok_line {
            wrong.push(format!(
                "berth {}: exit {got} (want 125), stdout {out:?}, stderr {err:?} (want one Error line naming {words:?})",
                args.join(" ")
            ));
        }
        let after = a.snapshot();
        if after != before || ps_state(&a) != ps {
            wrong.push(format!("berth {}: left something behind:\n{}", args.join(" "), after.diff(&before)));
            // Clean up so the next case starts from the same state.
            for r in a.ps_all() {
                if r["Names"] != "bystander" {
                    let _ = a.code(&["rm", "-f", r["ID"].as_str().unwrap_or("")]);
                }
            }
        }
    }
    assert!(alive(pid) && a.pid_of("bystander") == pid, "the running container was disturbed");
    assert!(wrong.is_empty(), "{} of {} refusals wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}
