//! The agent's own life: pid file, SIGTERM as soon as it serves and with containers running (each one's stop timeout), its start-up line, one agent per root.
//!
//! A real `berth agent` on a throw-away root, the busybox fixture image, and the CLI with Docker's
//! flags. What runs inside is checked from inside (`/proc/self/*`, files, exit codes) and from the
//! host (cgroup files, `/proc/<pid>`, the root's directories). Every test needs root and its own
//! agent; tests that compare mounts take `host_exclusive`, all others `host_shared`. Helpers:
//! `berth_tests::container`.

use berth_tests::agent::{alive, host_shared};
use berth_tests::container::*;
use berth_tests::s;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn agent_writes_its_pid_file_before_it_serves() {
    let _h = host_shared();
    let mut a = agent();
    let mut child = spawn_agent_and_catch_first_accept(&mut a);
    let pidfile = fs::read_to_string(a.root().path().join("agent.pid"));
    let lock = a.root().path().join("agent.lock").exists();
    std::thread::sleep(Duration::from_millis(500));
    sigterm_and_wait(&mut child);
    assert!(lock, "<root>/agent.lock exists while the agent runs");
    match pidfile {
        Ok(p) => assert_eq!(p.trim(), child.id().to_string(), "<root>/agent.pid holds the agent's pid"),
        Err(e) => panic!("<root>/agent.pid missing ({e}) although the socket already accepts connections"),
    }
}

#[test]
fn agent_handles_sigterm_as_soon_as_it_serves() {
    let _h = host_shared();
    let mut a = agent();
    let mut child = spawn_agent_and_catch_first_accept(&mut a);
    let st = sigterm_and_wait(&mut child);
    assert!(st.success(), "SIGTERM right after the socket accepts: agent exit {st}, expected a clean exit 0");
    assert!(!a.socket().exists(), "socket {} left behind", a.socket().display());
    assert!(!a.root().path().join("agent.pid").exists(), "agent.pid left behind");
}

#[test]
fn agent_exits_cleanly_on_sigterm() {
    let _h = host_shared();
    let mut a = agent();
    a.ok(&["ps"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.root().path().join("agent.pid").exists() {
        assert!(Instant::now() < deadline, "no <root>/agent.pid after 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st, _) = a.stop();
    assert!(st.success(), "agent exits 0 on SIGTERM, got {st}\nlog:\n{}", a.log());
    assert!(!a.socket().exists(), "socket {} removed on exit", a.socket().display());
    assert!(!a.root().path().join("agent.pid").exists(), "agent.pid removed on exit");
    let log = a.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "the agent writes one line on stderr:\n{log}");
    assert!(lines[0].starts_with("berth agent: serving on "), "startup line: {:?}", lines[0]);
}

#[test]
fn agent_startup_line_names_the_socket_plainly() {
    let _h = host_shared();
    let a = agent();
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = a.log();
        if log.contains('\n') || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let line = log.lines().find(|l| l.starts_with("berth agent: serving on ")).unwrap_or_else(|| panic!("no startup line in:\n{log}"));
    assert!(line.contains(s(a.socket())), "startup line names the socket {}: {line:?}", a.socket().display());
    assert!(!line.contains("Some(") && !line.contains('"'), "startup line shows a Rust debug value instead of the socket: {line:?}");
}

#[test]
fn second_agent_on_the_same_root_is_refused() {
    let _h = host_shared();
    let a = agent();
    let first = a.pid().expect("agent running");
    // (agent_writes_its_pid_file_before_it_serves covers the moment before the pid file exists.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.root().path().join("agent.pid").exists() {
        assert!(Instant::now() < deadline, "no <root>/agent.pid after 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    for sock in [a.root().scratch().join("other.sock"), a.socket().to_path_buf()] {
        let mut c = Command::new(berth_tests::berth_bin());
        c.arg("--root").arg(a.root().path()).arg("-H").arg(format!("unix://{}", s(&sock))).arg("agent");
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("start a second agent");
        let deadline = Instant::now() + Duration::from_secs(15);
        let st = loop {
            if let Some(st) = child.try_wait().expect("wait second agent") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("a second agent on {} (socket {}) kept running", a.root().path().display(), sock.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().expect("second agent output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(st.code(), Some(1), "second agent exit code; stderr: {stderr}");
        let line = berth_tests::assert_one_error(&stderr, &["another berth agent is already running"]);
        assert_eq!(
            line,
            format!("Error: another berth agent is already running on {} (pid {first})", a.root().path().display()),
            "refusal names the root and the first agent's pid"
        );
        if sock != a.socket() {
            assert!(!sock.exists(), "the refused agent left its socket {}", sock.display());
        }
    }
    assert_eq!(fs::read_to_string(a.root().path().join("agent.pid")).expect("agent.pid").trim(), first.to_string(), "agent.pid unchanged");
    let (code, out, err) = sh(&a, &[], "echo still-serving");
    assert_eq!((code, out.as_str()), (0, "still-serving\n"), "the first agent still serves; stderr: {err}");
}

#[test]
fn agent_sigterm_stops_running_containers() {
    let _h = host_shared();
    let mut a = agent();
    let ids = [
        a.run_detached(&["--name", "ignores-term", "--stop-timeout", "2", "busybox", "sleep", "1000"]),
        a.run_detached(&["--name", "with-init", "--init", "busybox", "sleep", "1000"]),
        a.run_detached(&[
            "--name",
            "traps-term",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo > /tmp/ready; while :; do sleep 0.1; done",
        ]),
    ];
    wait_ready(&a, "traps-term");
    let pids: Vec<u32> = ["ignores-term", "with-init", "traps-term"].iter().map(|n| a.pid_of(n)).collect();
    let (st, took) = a.stop();
    println!("agent stopped three containers in {took:?}");
    assert!(st.success(), "agent exit status {st}\nlog:\n{}", a.log());
    for (pid, name) in pids.iter().zip(["ignores-term", "with-init", "traps-term"]) {
        assert!(!alive(*pid), "{name}: pid {pid} still alive after the agent exited");
    }
    assert!(!a.socket().exists(), "socket removed");
    // ps and inspect read the records: they work without the agent.
    for (name, code) in [("ignores-term", 137), ("with-init", 143), ("traps-term", 7)] {
        assert_eq!(a.inspect_f(name, "{{.State.Status}} {{.State.Running}} {{.State.ExitCode}}"), format!("exited false {code}"), "{name}");
    }
    let cg = a.cgroup_dirs();
    for id in &ids {
        assert!(!cg.iter().any(|d| d.ends_with(id.as_str())), "cgroup of {id} left after the agent stopped it: {cg:?}");
    }
    a.restart();
    assert_eq!(a.ps_all().len(), 3, "the records survive an agent restart");
    a.ok(&["rm", "ignores-term", "with-init", "traps-term"]);
    assert!(a.ps_all().is_empty());
    assert!(a.container_entries().is_empty(), "rm removed <root>/containers entries: {:?}", a.container_entries());
}

#[test]
fn agent_sigterm_honours_each_containers_stop_timeout() {
    let _h = host_shared();
    let mut a = agent();
    // One container ignores SIGTERM and has a 1 s stop timeout; the other (default 10 s timeout)
    // exits on SIGTERM at once. The first must be killed after its own 1 s, not after 10 s.
    a.run_detached(&["--name", "short-timeout", "--stop-timeout", "1", "busybox", "sleep", "1000"]);
    a.run_detached(&["--name", "quick-exit", "--init", "busybox", "sleep", "1000"]);
    let (st, took) = a.stop();
    assert!(st.success(), "agent exit status {st}");
    assert_eq!(a.inspect_f("short-timeout", "{{.State.ExitCode}}"), "137");
    assert_eq!(a.inspect_f("quick-exit", "{{.State.ExitCode}}"), "143");
    assert!(took < Duration::from_secs(7), "agent took {took:?} to stop; the longest stop timeout still running was 1 s");
}
