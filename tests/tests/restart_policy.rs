//! Restart policies (`--restart`): counts, back-off, `restart`, and policy containers across an agent restart.
//!
//! A real `berth agent` on a throw-away root and the busybox fixture image; what happens is checked
//! from the host too (`/proc`, cgroup files, the root's directories), never only through berth's
//! own answers. Every test needs root and its own agent; tests that compare mounts take
//! `host_exclusive`, all others `host_shared`. Helpers: `berth_tests::supervise`. Nothing here
//! asserts how fast something is (see `tests/src/supervise.rs`).

use berth_tests::agent::{alive, host_shared};
use berth_tests::supervise::*;
use berth_tests::{poll, s};
use serde_json::Value;
use std::fs;

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
