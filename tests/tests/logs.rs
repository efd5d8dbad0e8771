//! Log files and `logs`/`attach`: following, rotation under a cap, stdout and stderr apart, `--log-level`.
//!
//! A real `berth agent` on a throw-away root and the busybox fixture image; what happens is checked
//! from the host too (`/proc`, cgroup files, the root's directories), never only through berth's
//! own answers. Every test needs root and its own agent; tests that compare mounts take
//! `host_exclusive`, all others `host_shared`. Helpers: `berth_tests::supervise`. Nothing here
//! asserts how fast something is (see `tests/src/supervise.rs`).

use berth_tests::agent::{host_exclusive, host_shared, Agent};
use berth_tests::supervise::*;
use berth_tests::{assert_one_error, poll};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

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
        for l in fs::read_to_string(&p).expect("read log file").split('\0').next().unwrap_or("").lines() {
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
