//! Container commands given bad input: each case must fail with Docker's exit code (125 when `run`
//! or `create` itself fails, 126/127 for a command that cannot run, 1 for other commands), exactly
//! one `Error: ` line naming the problem, and leave nothing behind: no new `<root>/containers`
//! entry, no new cgroup directory under the root's `berth-<hash>` parent, no new host mount, and
//! `ps -a` as before.
//!
//! Every test compares the host's mount table, so each holds [`host_exclusive`] (they run one at a
//! time within this binary).

use std::fs;

use berth_tests::agent::{alive, host_exclusive, Agent};
use berth_tests::{assert_one_error, require_root, s};

/// An agent on a root holding busybox, after one container has run (so the cgroup parent exists
/// and "nothing new" is checked against a store that has been used).
fn seeded() -> Agent {
    require_root();
    let a = Agent::with_busybox();
    let (code, _, err) = a.code(&["run", "--rm", "busybox", "true"]);
    assert_eq!(code, 0, "warm-up run --rm busybox true: {err}");
    a
}

fn ps_ids(a: &Agent) -> Vec<String> {
    a.ps_all().iter().map(|r| r["ID"].as_str().expect("ps ID").to_string()).collect()
}

/// Runs berth and checks the refusal: exit `code`, one `Error: ` line with one of `words`, nothing
/// left behind. Returns the error line.
fn refused(a: &Agent, args: &[&str], code: i32, words: &[&str]) -> String {
    let before = a.snapshot();
    let ps_before = ps_ids(a);
    let (got, out, err) = a.code(args);
    assert_eq!(got, code, "berth {}: exit code; stdout: {out} stderr: {err}", args.join(" "));
    let line = assert_one_error(&err, words);
    println!("berth {}: {line}", args.join(" "));
    assert_nothing_left(a, &before, &ps_before, &args.join(" "));
    line
}

fn assert_nothing_left(a: &Agent, before: &berth_tests::agent::Snapshot, ps_before: &[String], what: &str) {
    let after = a.snapshot();
    assert!(after == *before, "berth {what} left something behind:\n{}", after.diff(before));
    assert_eq!(ps_ids(a), ps_before, "berth {what}: ps -a changed");
}

#[test]
fn unknown_image() {
    let _h = host_exclusive();
    let a = seeded();
    for cmd in ["run", "create"] {
        let line = refused(&a, &[cmd, "nosuch:1", "true"], 125, &["Unable to find image"]);
        assert_eq!(line, "Error: Unable to find image 'nosuch:1' locally");
    }
}

#[test]
fn name_already_in_use() {
    let _h = host_exclusive();
    let a = seeded();
    let id = a.run_detached(&["--name", "dup", "busybox", "sleep", "1000"]);
    let pid = a.pid_of("dup");
    for cmd in ["run", "create"] {
        let line = refused(&a, &[cmd, "--name", "dup", "busybox", "true"], 125, &["Conflict"]);
        assert!(line.contains("The container name \"/dup\" is already in use") && line.contains(&id), "{line}");
    }
    assert_eq!(a.inspect_f("dup", "{{.Id}} {{.State.Running}}"), format!("{id} true"), "the first container is still there");
    assert!(alive(pid), "the first container's process still runs");
    a.ok(&["rm", "-f", "dup"]);
}

#[test]
fn memory_below_the_minimum() {
    let _h = host_exclusive();
    let a = seeded();
    let line = refused(&a, &["run", "-m", "4m", "busybox", "true"], 125, &["Minimum memory limit"]);
    assert_eq!(line, "Error: Minimum memory limit allowed is 6MB");
}

#[test]
fn bad_tmpfs_option() {
    let _h = host_exclusive();
    let a = seeded();
    let line = refused(&a, &["run", "--tmpfs", "/x:bogus=1", "busybox", "true"], 125, &["tmpfs"]);
    assert!(line.starts_with("Error: --tmpfs ") && line.contains("invalid tmpfs option") && line.contains("bogus"), "{line}");
    refused(&a, &["run", "--tmpfs", "relative", "busybox", "true"], 125, &["absolute"]);
}

#[test]
fn memory_swap_below_memory() {
    let _h = host_exclusive();
    let a = seeded();
    refused(&a, &["run", "-m", "32m", "--memory-swap", "16m", "busybox", "true"], 125, &["memoryswap", "memory-swap", "swap"]);
    refused(&a, &["run", "-m", "32m", "--memory-reservation", "64m", "busybox", "true"], 125, &["reservation"]);
}

#[test]
fn ulimit_soft_above_hard() {
    let _h = host_exclusive();
    let a = seeded();
    refused(&a, &["run", "--ulimit", "nofile=10:5", "busybox", "true"], 125, &["soft limit", "ulimit"]);
    refused(&a, &["run", "--ulimit", "bogus=1", "busybox", "true"], 125, &["bogus"]);
}

#[test]
fn unsupported_network_modes() {
    let _h = host_exclusive();
    let a = seeded();
    refused(&a, &["run", "--net", "nosuchnet", "busybox", "true"], 125, &["network nosuchnet not found"]);
    refused(&a, &["run", "--net", "container:nosuch", "busybox", "true"], 125, &["nosuch"]);
}

#[test]
fn unknown_capability() {
    let _h = host_exclusive();
    let a = seeded();
    refused(&a, &["run", "--cap-add", "NOT_A_CAP", "busybox", "true"], 125, &["NOT_A_CAP"]);
    refused(&a, &["run", "--cap-drop", "NOT_A_CAP", "busybox", "true"], 125, &["NOT_A_CAP"]);
}

#[test]
fn command_not_found_or_not_executable() {
    let _h = host_exclusive();
    let a = seeded();
    for flags in [&[][..], &["--rm"][..], &["-d"][..]] {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "nosuchcmd"]);
        let line = refused(&a, &args, 127, &["nosuchcmd"]);
        assert_eq!(line, "Error: exec: \"nosuchcmd\": executable file not found in $PATH");
    }
    refused(&a, &["run", "busybox", "/etc/passwd"], 126, &["/etc/passwd"]);
    refused(&a, &["run", "--entrypoint", "nosuch-entry", "busybox"], 127, &["nosuch-entry"]);
}

#[test]
fn image_of_another_architecture() {
    let _h = host_exclusive();
    let a = seeded();
    let dir = a.root().scratch().join("arm-rootfs");
    fs::create_dir_all(&dir).expect("mkdir arm rootfs");
    fs::write(dir.join("hello.txt"), "hello\n").expect("write arm rootfs file");
    let out = a.ok(&["import", "--platform", "linux/arm64", s(&dir), "arm:1"]);
    assert!(out.trim().starts_with("sha256:"), "import printed {out:?}");
    for cmd in ["run", "create"] {
        let line = refused(&a, &[cmd, "arm:1", "true"], 125, &["arm64"]);
        assert!(line.contains("linux/arm64"), "{line}");
    }
}

#[test]
fn rm_of_a_running_container_without_force() {
    let _h = host_exclusive();
    let a = seeded();
    let id = a.run_detached(&["--name", "busy", "busybox", "sleep", "1000"]);
    let pid = a.pid_of("busy");
    let line = refused(&a, &["rm", "busy"], 1, &["You cannot remove a running container"]);
    assert!(line.contains(&id), "{line}");
    assert_eq!(a.inspect_f("busy", "{{.State.Status}}"), "running");
    assert!(alive(pid), "rm without -f killed the container");
    a.ok(&["rm", "-f", "busy"]);
    assert!(!alive(pid), "rm -f leaves the process alive");
}

#[test]
fn agent_not_running() {
    let _h = host_exclusive();
    let mut a = seeded();
    let id = a.ok(&["create", "--name", "rec", "busybox", "true"]).trim().to_string();
    let (st, _) = a.stop();
    assert!(st.success(), "agent exit {st}");
    let want = format!("Cannot connect to the berth agent at {}", a.host());
    for cmd in [&["run", "busybox", "true"][..], &["create", "busybox", "true"][..]] {
        let line = refused(&a, cmd, 125, &[&want]);
        assert!(line.contains("Is the agent running?"), "{line}");
    }
    // ps and inspect read the records: they work without the agent.
    let ps = a.ok(&["ps", "-a", "-q", "--no-trunc"]);
    assert_eq!(ps.trim(), id, "ps -a without the agent");
    assert_eq!(a.inspect_f("rec", "{{.State.Status}}"), "created");
    for cmd in [
        &["stop", "rec"][..],
        &["start", "rec"][..],
        &["kill", "rec"][..],
        &["rm", "rec"][..],
        &["wait", "rec"][..],
        &["start", "-a", "rec"][..],
    ] {
        let line = refused(&a, cmd, 1, &[&want]);
        assert!(line.contains("Is the agent running?"), "{line}");
    }
    a.restart();
    a.ok(&["rm", "rec"]);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let _h = host_exclusive();
    let a = seeded();
    for cmd in ["run", "create"] {
        let before = a.snapshot();
        let ps_before = ps_ids(&a);
        let (code, out, err) = a.code(&[cmd, "--bogus", "busybox"]);
        assert_eq!(code, 125, "{cmd} --bogus: stdout {out} stderr {err}");
        assert_eq!(err, format!("unknown flag: --bogus\nSee 'berth {cmd} --help'.\n"), "{cmd} --bogus: usage message");
        assert_nothing_left(&a, &before, &ps_before, &format!("{cmd} --bogus busybox"));
    }
}

#[test]
fn relative_working_directory() {
    let _h = host_exclusive();
    let a = seeded();
    // Docker: "the working directory 'relative' is invalid, it needs to be an absolute path".
    refused(&a, &["run", "-w", "relative", "busybox", "true"], 125, &["working directory"]);
}

#[test]
fn other_bad_run_options() {
    let _h = host_exclusive();
    let a = seeded();
    refused(&a, &["run", "--cpus", "64", "busybox", "true"], 125, &["CPUs"]);
    refused(&a, &["run", "--name", "bad/name", "busybox", "true"], 125, &["Invalid container name"]);
    refused(&a, &["run", "--stop-signal", "BOGUS", "busybox", "true"], 125, &["signal"]);
    refused(&a, &["run", "--security-opt", "seccomp=x", "busybox", "true"], 125, &["seccomp"]);
    refused(&a, &["run", "-e", "=x", "busybox", "true"], 125, &["environment variable"]);
    refused(&a, &["run", "--pids-limit", "abc", "busybox", "true"], 125, &["pids-limit"]);
    let missing = a.root().scratch().join("never-created");
    let spec = format!("{}:relative", s(&missing));
    refused(&a, &["run", "-v", &spec, "busybox", "true"], 125, &["volume", "relative"]);
    assert!(!missing.exists(), "a refused -v created the host directory {}", missing.display());
    let env_file = a.root().scratch().join("no-such-env-file");
    refused(&a, &["run", "--env-file", s(&env_file), "busybox", "true"], 125, &["no-such-env-file"]);
}
