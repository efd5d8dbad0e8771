//! `rename`, `container prune`, `events`, systemd's notify protocol, and bad flags of the supervision features.
//!
//! A real `berth agent` on a throw-away root and the busybox fixture image; what happens is checked
//! from the host too (`/proc`, cgroup files, the root's directories), never only through berth's
//! own answers. Every test needs root and its own agent; tests that compare mounts take
//! `host_exclusive`, all others `host_shared`. Helpers: `berth_tests::supervise`. Nothing here
//! asserts how fast something is (see `tests/src/supervise.rs`).

use berth_tests::agent::{alive, host_exclusive, host_shared};
use berth_tests::supervise::*;
use berth_tests::{assert_one_error, s};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// The monitor re-executes berth as a monitor alone (a fork would keep a copy of the agent's
/// heap): its command line is its own, naming the container's directory, and it still keeps the
/// container's output and exit code.
#[test]
fn the_monitor_is_berth_re_executed_and_keeps_logs_and_the_exit_code() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&[
        "--name",
        "mon",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 5",
    ]);
    let pid = a.pid_of("mon");
    let mon = ppid(pid);
    assert_eq!(comm(mon), "berth-monitor", "parent of the container's pid 1 ({pid}) is {mon} ({:?})", comm(mon));
    let cmdline = std::fs::read(format!("/proc/{mon}/cmdline")).expect("read the monitor's cmdline");
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let dir = a.root().path().join("containers").join(id_of(&a, "mon"));
    assert_eq!(args.get(1).map(String::as_str), Some("__berth-monitor"), "the monitor did not re-execute berth: {args:?}");
    assert!(args.iter().any(|x| *x == s(&dir)), "the monitor's command line does not name {}: {args:?}", dir.display());
    std::fs::write(format!("/proc/{pid}/root/tmp/go"), "").expect("touch /tmp/go in the container");
    wait_inspect(&a, "mon", "{{.State.Status}}", "exited");
    assert_eq!(a.inspect_f("mon", "{{.State.ExitCode}}"), "5");
    let out = a.command(&["logs", "mon"]).output().expect("berth logs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    a.ok(&["rm", "mon"]);
}

/// A `--rm` container's overlay is volatile (its upper directory is thrown away: no sync of the
/// whole disk when it ends); a kept container's is not (its changes must survive a power cut).
/// Needs Linux 5.10 or later.
#[test]
fn a_rm_containers_overlay_is_volatile_a_kept_ones_is_not() {
    let _h = host_shared();
    let a = agent();
    let opts = |args: &[&str]| -> String {
        let out = a.ok(args);
        out.lines().find(|l| l.starts_with("overlay / ")).unwrap_or_else(|| panic!("no overlay root in /proc/mounts:\n{out}")).to_string()
    };
    // Linux 6.x shows it as `fsync=volatile`, 5.10-5.19 as `volatile`.
    let volatile = |line: &str| line.split([',', ' ']).any(|o| o == "volatile" || o == "fsync=volatile");
    let rm = opts(&["run", "--rm", "busybox", "cat", "/proc/mounts"]);
    assert!(volatile(&rm), "a --rm container's overlay is not volatile: {rm}");
    let kept = opts(&["run", "--name", "kept", "busybox", "cat", "/proc/mounts"]);
    assert!(!volatile(&kept), "a kept container's overlay is volatile: {kept}");
    a.ok(&["rm", "kept"]);
}
