//! `exec` into a running container, and health checks.
//!
//! A real `berth agent` on a throw-away root and the busybox fixture image; what happens is checked
//! from the host too (`/proc`, cgroup files, the root's directories), never only through berth's
//! own answers. Every test needs root and its own agent; tests that compare mounts take
//! `host_exclusive`, all others `host_shared`. Helpers: `berth_tests::supervise`. Nothing here
//! asserts how fast something is (see `tests/src/supervise.rs`).

use berth_tests::agent::{alive, host_exclusive, host_shared};
use berth_tests::supervise::*;
use berth_tests::{poll, Stdin};
use std::time::{Duration, Instant};

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
