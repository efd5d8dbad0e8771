//! End-to-end container tests: a real `berth agent` on a throw-away root, the busybox fixture
//! image, and the CLI with Docker's flags. What runs inside is checked from inside (`/proc/self/*`,
//! files, exit codes) and from the host (cgroup files, `/proc/<pid>`, the root's directories).
//!
//! Every test needs root and its own agent ([`Agent`]). Tests that compare the host's mount table
//! take [`host_exclusive`]; all others take [`host_shared`], so they may run in parallel.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use berth_tests::agent::{
    alive, cgroup_dir_of, code_of, host_exclusive, host_shared, parse_mountinfo, status_field, Agent, MountInfo, Snapshot,
};
use berth_tests::{is_hex64, require_root, s, Stdin};

/// Docker's default capability set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
/// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP), as /proc/self/status shows it.
const DOCKER_CAPS: &str = "00000000a80425fb";
const NO_CAPS: &str = "0000000000000000";

/// Docker's masked paths (bound to /dev/null, or an empty read-only tmpfs for directories).
const MASKED: &[&str] = &[
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
const READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn agent() -> Agent {
    require_root();
    Agent::with_busybox()
}

/// `berth run --rm FLAGS... busybox sh -c SCRIPT`: (exit code, stdout, stderr).
fn sh(a: &Agent, flags: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    a.code(&args)
}

/// Like [`sh`], asserting exit 0; returns stdout.
fn sh_ok(a: &Agent, flags: &[&str], script: &str) -> String {
    let (code, out, err) = sh(a, flags, script);
    assert_eq!(code, 0, "run {flags:?} sh -c {script:?}: exit {code}\nstdout: {out}\nstderr: {err}");
    out
}

/// `/proc/self/status` of a `busybox cat` in a container with these flags.
fn proc_status(a: &Agent, flags: &[&str]) -> String {
    sh_ok(a, flags, "cat /proc/self/status")
}

fn field(status: &str, name: &str) -> String {
    status_field(status, name).unwrap_or_else(|| panic!("no {name} in:\n{status}"))
}

/// The value `key=VALUE` printed on a line of its own.
fn kv<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).unwrap_or_else(|| panic!("no {key}= line in:\n{out}"))
}

/// Waits until the container wrote `/tmp/ready` (seen from the host through `/proc/<pid>/root`).
fn wait_ready(a: &Agent, name: &str) {
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
fn assert_no_containers(a: &Agent, before: &Snapshot) {
    let ps = a.ps_all();
    assert!(ps.is_empty(), "ps -a still lists containers: {ps:?}");
    let now = a.snapshot();
    let left = Snapshot { mounts: before.mounts.clone(), ..now }.diff(before);
    assert!(left.is_empty(), "containers left something behind:\n{left}");
}

fn host_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").expect("read host hostname").trim().to_string()
}

fn container_mountinfo(out: &str) -> Vec<MountInfo> {
    let (_, rest) = out.split_once("MOUNTINFO\n").unwrap_or_else(|| panic!("no MOUNTINFO marker in:\n{out}"));
    parse_mountinfo(rest)
}

fn mount_at<'a>(mounts: &'a [MountInfo], point: &str) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.point == point)
}

// ---------------------------------------------------------------------------------------------
// The agent itself

/// Stops the harness's agent and starts one by hand, returning as soon as its socket first
/// accepts (spinning, not sleeping, so the moment right after the agent binds is caught).
fn spawn_agent_and_catch_first_accept(a: &mut Agent) -> std::process::Child {
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

fn sigterm_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: signals our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().expect("wait agent")
}

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

// ---------------------------------------------------------------------------------------------
// Processes: exit codes, stdio, environment

#[test]
fn exit_codes_are_the_containers() {
    let _h = host_shared();
    let a = agent();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["true"], 0, ""),
        (&["false"], 1, ""),
        (&["sh", "-c", "exit 3"], 3, ""),
        (&["nosuchcmd"], 127, "exec: \"nosuchcmd\": executable file not found in $PATH"),
        (&["/etc/passwd"], 126, "/etc/passwd"),
    ];
    for (cmd, want, msg) in cases {
        let mut args = vec!["run", "--rm", "busybox"];
        args.extend_from_slice(cmd);
        let (code, out, err) = a.code(&args);
        assert_eq!(code, *want, "berth {}: stdout {out:?} stderr {err:?}", args.join(" "));
        assert!(err.contains(msg), "berth {}: stderr lacks {msg:?}: {err}", args.join(" "));
    }

    // Killed in the background: wait and inspect report 137.
    a.run_detached(&["--name", "bg", "busybox", "sleep", "1000"]);
    assert_eq!(a.ok(&["kill", "bg"]).trim(), "bg");
    assert_eq!(a.ok(&["wait", "bg"]).trim(), "137");
    assert_eq!(a.inspect_f("bg", "{{.State.ExitCode}} {{.State.OOMKilled}}"), "137 false");

    // Killed while `run` waits in the foreground: run exits 137.
    let mut fg = a.command(&["run", "--name", "fg", "busybox", "sleep", "1000"]);
    let mut child = fg.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start foreground run");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = a.cmd(&["inspect", "-f", "{{.State.Status}}", "fg"]);
        if String::from_utf8_lossy(&out.stdout).trim() == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "foreground container fg never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.ok(&["kill", "fg"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        if let Some(st) = child.try_wait().expect("wait foreground run") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth run did not return after its container was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(137), "foreground run of a killed container");
    a.ok(&["rm", "bg", "fg"]);
}

#[test]
fn stdio_passes_through_and_stdin_only_with_i() {
    let _h = host_shared();
    let a = agent();
    let out = a.cmd_in(&["run", "--rm", "-i", "busybox", "cat"], Stdin::Bytes(b"hello stdin\n".to_vec()));
    let (code, stdout, stderr) = code_of(&out, &["run", "-i"]);
    assert_eq!((code, stdout.as_str()), (0, "hello stdin\n"), "run -i cat; stderr {stderr}");
    let out = a.cmd_in(&["run", "--rm", "busybox", "cat"], Stdin::Bytes(b"not for the container\n".to_vec()));
    let (code, stdout, stderr) = code_of(&out, &["run"]);
    assert_eq!((code, stdout.as_str()), (0, ""), "run without -i: the container's stdin is empty; stderr {stderr}");
    let (code, stdout, stderr) = sh(&a, &[], "echo to-out; echo to-err >&2; exit 2");
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (2, "to-out\n", "to-err\n"), "stdout and stderr are the container's own");
}

#[test]
fn env_workdir_user_and_hostname_are_visible_inside() {
    let _h = host_shared();
    let a = agent();
    let env_file = a.root().scratch().join("env.list");
    fs::write(&env_file, "# a comment\n\nFROMFILE=yes\nFOO=from-file\nSPACED=a b\n").expect("write env file");
    let flags = [
        "--env-file",
        s(&env_file),
        "-e",
        "FOO=bar",
        "-e",
        "EMPTY=",
        "-e",
        "PASSTHRU",
        "-e",
        "BERTH_TEST_UNSET_VAR",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "-h",
        "myhost",
    ];
    let script = "env; echo \"cwd=$(pwd)\"; echo \"ids=$(id -u):$(id -g)\"; echo \"host=$(hostname)\"; echo \"etc=$(cat /etc/hostname)\"";
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(&flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    let mut c = a.command(&args);
    c.env("PASSTHRU", "from-cli").env_remove("BERTH_TEST_UNSET_VAR");
    let (code, out, err) = code_of(&berth_tests::run(&mut c, Stdin::Null), &args);
    assert_eq!(code, 0, "stderr: {err}");
    let env: BTreeSet<&str> = out.lines().collect();
    for want in [
        "FOO=bar",
        "FROMFILE=yes",
        "SPACED=a b",
        "EMPTY=",
        "PASSTHRU=from-cli",
        "HOSTNAME=myhost",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ] {
        assert!(env.contains(want), "container env lacks {want:?}:\n{out}");
    }
    assert!(!out.contains("BERTH_TEST_UNSET_VAR"), "-e NAME of an unset variable must be dropped:\n{out}");
    assert!(!env.contains("FOO=from-file"), "-e overrides --env-file:\n{out}");
    assert_eq!(kv(&out, "cwd"), "/tmp");
    assert_eq!(kv(&out, "ids"), "1000:1000");
    assert_eq!(kv(&out, "host"), "myhost");
    assert_eq!(kv(&out, "etc"), "myhost");

    // A missing working directory is created (as root).
    assert_eq!(sh_ok(&a, &["-w", "/new/sub/dir"], "pwd"), "/new/sub/dir\n");

    // The same settings in inspect.
    let mut cargs = vec!["create", "--name", "envc"];
    cargs.extend_from_slice(&flags[..6]);
    cargs.extend_from_slice(&["-w", "/tmp", "-u", "1000:1000", "-h", "myhost", "busybox", "true"]);
    a.ok(&cargs);
    let v = a.inspect("envc");
    let env: Vec<&str> = v["Config"]["Env"].as_array().expect("Config.Env").iter().map(|e| e.as_str().expect("env string")).collect();
    for want in ["FOO=bar", "FROMFILE=yes", "EMPTY="] {
        assert!(env.contains(&want), "Config.Env lacks {want}: {env:?}");
    }
    assert_eq!(v["Config"]["Hostname"], "myhost");
    assert_eq!(v["Config"]["User"], "1000:1000");
    assert_eq!(v["Config"]["WorkingDir"], "/tmp");
    assert_eq!(v["Config"]["Cmd"], json!(["true"]));
    a.ok(&["rm", "envc"]);
}

#[test]
fn missing_workdir_is_created_for_a_non_root_user() {
    let _h = host_shared();
    let a = agent();
    // Docker creates the working directory before switching to the user: this prints /new/dir.
    let (code, out, err) = sh(&a, &["-u", "1000", "-w", "/new/dir"], "pwd");
    assert_eq!((code, out.as_str()), (0, "/new/dir\n"), "run -u 1000 -w /new/dir: stderr {err}");
}

#[test]
fn hostname_defaults() {
    let _h = host_shared();
    let a = agent();
    let out = a.ok(&["run", "--name", "hn", "--net", "none", "busybox", "sh", "-c", "hostname; cat /etc/hostname; echo $HOSTNAME"]);
    let id = a.inspect_f("hn", "{{.Id}}");
    let short = &id[..12];
    assert_eq!(out, format!("{short}\n{short}\n{short}\n"), "--net none: hostname is the short ID");
    assert_eq!(a.inspect_f("hn", "{{.Config.Hostname}}"), short);
    let host = host_hostname();
    assert_eq!(sh_ok(&a, &[], "hostname"), format!("{host}\n"), "--net host (default): the host's hostname");
    assert_eq!(sh_ok(&a, &["-h", "other-name"], "hostname"), "other-name\n", "-h with the host network");
    assert_eq!(host_hostname(), host, "the host's hostname is unchanged");
    a.ok(&["rm", "hn"]);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle: --rm, -d, ps, inspect, stop, kill, wait, create/start

#[test]
fn rm_flag_removes_the_container() {
    let _h = host_shared();
    let a = agent();
    sh_ok(&a, &[], "true");
    let before = a.snapshot();
    assert!(a.container_entries().is_empty(), "--rm left {:?}", a.container_entries());
    assert_eq!(sh(&a, &["--name", "r1"], "true").0, 0);
    assert_eq!(sh(&a, &["--name", "r2"], "exit 7").0, 7);
    a.run_detached(&["--rm", "--name", "r3", "busybox", "sh", "-c", "sleep 0.3"]);
    a.run_detached(&["--rm", "--name", "r4", "busybox", "sleep", "1000"]);
    a.ok(&["kill", "r4"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.ps_all().is_empty() {
        assert!(Instant::now() < deadline, "--rm containers still listed after 20 s: {:?}", a.ps_all());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_no_containers(&a, &before);
}

#[test]
fn detached_ps_inspect_stop() {
    let _h = host_shared();
    let a = agent();
    let id = a.run_detached(&["--name", "sl", "-l", "app=web", "-l", "tier=1", "busybox", "sleep", "1000"]);
    let id_filter = format!("id={}", &id[..6]);
    let pid = a.pid_of("sl");
    assert!(alive(pid), "pid {pid} of sl is alive");

    // ps, with and without filters.
    assert_eq!(a.ok(&["ps", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(a.ok(&["ps", "-q"]).trim(), &id[..12]);
    let table = a.ok(&["ps"]);
    assert!(table.starts_with("CONTAINER ID") && table.contains(&id[..12]) && table.contains("sl"), "ps table:\n{table}");
    let rows = a.ps_all();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["ID"], id);
    assert_eq!(rows[0]["Names"], "sl");
    assert_eq!(rows[0]["State"], "running");
    for (filter, shown) in [
        ("label=app=web", true),
        ("label=app", true),
        ("label=app=db", false),
        ("name=sl", true),
        ("name=nope", false),
        (id_filter.as_str(), true),
        ("status=running", true),
        ("status=exited", false),
    ] {
        let got = a.ok(&["ps", "-a", "-q", "--no-trunc", "--filter", filter]);
        assert_eq!(got.trim() == id, shown, "ps --filter {filter}: {got:?}");
    }

    // inspect.
    let v = a.inspect("sl");
    assert_eq!(v["Id"], id);
    assert_eq!(v["Name"], "/sl");
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["State"]["Running"], true);
    assert_eq!(v["State"]["OOMKilled"], false);
    assert_eq!(v["State"]["Pid"], pid);
    assert_eq!(v["Config"]["Cmd"], json!(["sleep", "1000"]));
    assert_eq!(v["Config"]["Labels"], json!({"app": "web", "tier": "1"}));
    assert_eq!(v["HostConfig"]["NetworkMode"], "host");
    let mem_cg = cgroup_dir_of(pid, "memory");
    assert!(mem_cg.ends_with(format!("{}/{id}", a.cgroup_parent())), "sl runs in cgroup {}", mem_cg.display());

    // stop: sleep as pid 1 ignores SIGTERM, so it is killed after the timeout.
    assert_eq!(a.ok(&["stop", "-t", "2", "sl"]).trim(), "sl");
    let v = a.inspect("sl");
    assert_eq!(
        (&v["State"]["Status"], &v["State"]["Running"], &v["State"]["ExitCode"], &v["State"]["OOMKilled"], &v["State"]["Pid"]),
        (&json!("exited"), &json!(false), &json!(137), &json!(false), &json!(0)),
        "state after stop: {}",
        v["State"]
    );
    assert!(!alive(pid), "pid {pid} still alive after stop");
    assert!(!mem_cg.exists(), "cgroup {} left after stop", mem_cg.display());
    assert_eq!(a.ok(&["ps", "-q"]).trim(), "", "ps without -a lists only running containers");
    let rows = a.ps_all();
    assert!(rows[0]["Status"].as_str().expect("Status").starts_with("Exited (137)"), "{rows:?}");
    assert_eq!(a.ok(&["ps", "-a", "-q", "--no-trunc", "--filter", "status=exited"]).trim(), id);
    assert_eq!(a.ok(&["stop", "sl"]).trim(), "sl", "stop of a stopped container succeeds (as Docker)");

    // -d output goes to the container's log file.
    let id2 = a.run_detached(&["--name", "lg", "busybox", "sh", "-c", "echo to-stdout; echo to-stderr >&2"]);
    assert_eq!(a.ok(&["wait", "lg"]).trim(), "0");
    let log = fs::read_to_string(a.container_dir(&id2).join("container.log")).expect("read container.log");
    assert!(log.contains("to-stdout\n") && log.contains("to-stderr\n"), "container.log: {log:?}");

    assert_eq!(a.ok(&["rm", "sl", "lg"]), "sl\nlg\n");
    assert!(a.ps_all().is_empty());
    assert!(!a.container_dir(&id).exists() && !a.container_dir(&id2).exists(), "rm removed the container directories");
}

#[test]
fn stop_with_init_stop_signal_or_trap() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&["--name", "i1", "--init", "busybox", "sleep", "1000"]);
    a.run_detached(&["--name", "k1", "--stop-signal", "KILL", "busybox", "sleep", "1000"]);
    a.run_detached(&["--name", "t1", "busybox", "sh", "-c", "trap 'exit 0' TERM; echo > /tmp/ready; while :; do sleep 0.1; done"]);
    wait_ready(&a, "t1");
    assert_eq!(a.inspect_f("i1", "{{.HostConfig.Init}}"), "true");
    assert_eq!(a.inspect_f("k1", "{{.Config.StopSignal}}"), "SIGKILL");
    assert_eq!(a.ok(&["stop", "i1", "k1", "t1"]), "i1\nk1\nt1\n");
    for (name, code) in [("i1", 143), ("k1", 137), ("t1", 0)] {
        assert_eq!(
            a.inspect_f(name, "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}"),
            format!("exited {code} false"),
            "{name}"
        );
    }
    a.ok(&["rm", "i1", "k1", "t1"]);
}

#[test]
fn kill_with_a_signal_reaches_the_process() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&[
        "--name",
        "u1",
        "--init",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 42' USR1; echo > /tmp/ready; while :; do sleep 0.1; done",
    ]);
    wait_ready(&a, "u1");
    assert_eq!(a.ok(&["kill", "-s", "USR1", "u1"]).trim(), "u1");
    assert_eq!(a.ok(&["wait", "u1"]).trim(), "42");
    assert_eq!(a.inspect_f("u1", "{{.State.ExitCode}}"), "42");
    let (code, _, err) = a.code(&["kill", "u1"]);
    assert_eq!(code, 1, "kill of a stopped container fails: {err}");
    assert!(err.contains("not running"), "kill of a stopped container: {err}");
    a.ok(&["rm", "u1"]);
}

#[test]
fn wait_prints_exit_codes() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&["--name", "w1", "busybox", "sh", "-c", "sleep 0.5; exit 9"]);
    a.run_detached(&["--name", "w2", "busybox", "sh", "-c", "exit 4"]);
    assert_eq!(a.ok(&["wait", "w1", "w2"]), "9\n4\n");
    assert_eq!(a.ok(&["wait", "w2"]), "4\n", "wait on an exited container returns at once");
    let (code, _, err) = a.code(&["wait", "nosuch"]);
    assert_eq!(code, 1, "wait nosuch: {err}");
    assert!(err.to_lowercase().contains("no such container"), "wait nosuch: {err}");
    a.ok(&["rm", "w1", "w2"]);
}

#[test]
fn create_then_start() {
    let _h = host_shared();
    let a = agent();
    let id = a.ok(&["create", "--name", "c1", "busybox", "sh", "-c", "echo from-c1; exit 5"]).trim().to_string();
    assert!(is_hex64(&id), "create prints the ID: {id:?}");
    assert_eq!(a.inspect_f("c1", "{{.State.Status}} {{.State.Running}}"), "created false");
    assert_eq!(a.ok(&["ps", "-q"]).trim(), "", "a created container is not running");
    let rows = a.ps_all();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["Status"], "Created");
    let (code, out, err) = a.code(&["start", "-a", "c1"]);
    assert_eq!((code, out.as_str()), (5, "from-c1\n"), "start -a c1: stderr {err}");
    assert_eq!(a.inspect_f("c1", "{{.State.Status}} {{.State.ExitCode}}"), "exited 5");
    let (code, out, err) = a.code(&["start", "-a", "c1"]);
    assert_eq!((code, out.as_str()), (5, "from-c1\n"), "an exited container starts again: stderr {err}");

    a.ok(&["create", "--name", "c2", "busybox", "sh", "-c", "exit 6"]);
    assert_eq!(a.ok(&["start", "c2"]).trim(), "c2");
    assert_eq!(a.ok(&["wait", "c2"]).trim(), "6");
    a.ok(&["rm", "c1", "c2"]);
    assert!(a.container_entries().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Resources: memory, pids, cpu

#[test]
fn memory_limit_kills_a_hog_and_reports_oom() {
    let _h = host_shared();
    let a = agent();
    let (code, _, err) = a.code(&["run", "--name", "oom", "-m", "32m", "busybox", "sh", "-c", "x=aaaaaaaaaa; while :; do x=$x$x; done"]);
    assert_eq!(code, 137, "memory hog under -m 32m: stderr {err}");
    let v = a.inspect("oom");
    assert_eq!(v["State"]["OOMKilled"], true, "State: {}", v["State"]);
    assert_eq!(v["State"]["ExitCode"], 137);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["HostConfig"]["Memory"], 32 << 20);
    assert_eq!(a.inspect_f("oom", "{{.State.OOMKilled}}"), "true");
    a.ok(&["rm", "oom"]);
}

#[test]
fn resource_flags_reach_the_cgroup() {
    let _h = host_shared();
    let a = agent();
    a.run_detached(&[
        "--name",
        "lim",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--memory-reservation",
        "32m",
        "--pids-limit",
        "77",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid = a.pid_of("lim");
    let read = |ctl: &str, file: &str| -> String {
        let p = cgroup_dir_of(pid, ctl).join(file);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())).trim().to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), (64u64 << 20).to_string());
    assert_eq!(read("memory", "memory.soft_limit_in_bytes"), (32u64 << 20).to_string());
    if cgroup_dir_of(pid, "memory").join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(read("memory", "memory.memsw.limit_in_bytes"), (128u64 << 20).to_string());
    }
    assert_eq!(read("pids", "pids.max"), "77");
    let quota: i64 = read("cpu", "cpu.cfs_quota_us").parse().expect("quota");
    let period: i64 = read("cpu", "cpu.cfs_period_us").parse().expect("period");
    assert_eq!(quota * 2, period, "--cpus 0.5: quota {quota} / period {period}");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    let v = a.inspect("lim");
    let hc = &v["HostConfig"];
    assert_eq!(
        (&hc["Memory"], &hc["MemorySwap"], &hc["MemoryReservation"], &hc["PidsLimit"], &hc["NanoCpus"], &hc["CpuShares"]),
        (&json!(64 << 20), &json!(128 << 20), &json!(32 << 20), &json!(77), &json!(500_000_000), &json!(512)),
        "HostConfig: {hc}"
    );
    a.ok(&["rm", "-f", "lim"]);
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let _h = host_shared();
    let a = agent();
    // The subshell forks until the limit stops it; pid 1 execs sleep, so it needs no fork itself.
    let id = a.run_detached(&[
        "--name",
        "bomb",
        "--pids-limit",
        "50",
        "busybox",
        "sh",
        "-c",
        "(for i in $(busybox seq 200); do sleep 30 & done; wait) & exec sleep 60",
    ]);
    let pid = a.pid_of("bomb");
    let cg = cgroup_dir_of(pid, "pids");
    assert!(cg.ends_with(format!("{}/{id}", a.cgroup_parent())), "bomb runs in pids cgroup {}", cg.display());
    let read = |f: &str| fs::read_to_string(cg.join(f)).unwrap_or_else(|e| panic!("read {}/{f}: {e}", cg.display()));
    assert_eq!(read("pids.max").trim(), "50");
    let mut max_seen = 0;
    let mut limit_hit = false;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let cur: u32 = read("pids.current").trim().parse().expect("pids.current");
        max_seen = max_seen.max(cur);
        limit_hit |= read("pids.events").split_whitespace().nth(1).is_some_and(|n| n != "0");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("fork bomb: pids.current peaked at {max_seen} (sampled), pids.events: {}", read("pids.events").trim());
    assert!(max_seen <= 50, "pids.current reached {max_seen} > 50");
    assert!(limit_hit, "the fork bomb never hit the pids limit (pids.events {:?})", read("pids.events"));
    if cg.join("pids.peak").exists() {
        let peak: u32 = read("pids.peak").trim().parse().expect("pids.peak");
        assert!(peak <= 50, "pids.peak {peak} > 50");
    }
    let log = fs::read_to_string(a.container_dir(&id).join("container.log")).expect("container.log");
    assert!(log.contains("can't fork"), "the bomb's shell reports failed forks: {log:?}");

    // The host is fine: we can fork, the agent answers.
    assert!(Command::new("true").status().expect("fork on the host").success());
    a.ok(&["ps"]);

    let procs: Vec<u32> = read("cgroup.procs").lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(procs.len() >= 40, "expected the bomb's processes in cgroup.procs, got {}", procs.len());
    assert_eq!(a.ok(&["kill", "bomb"]).trim(), "bomb");
    assert_eq!(a.ok(&["wait", "bomb"]).trim(), "137");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<&u32> = procs.iter().filter(|p| alive(**p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes of the killed container still alive: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!cg.exists(), "pids cgroup {} left after kill", cg.display());
    a.ok(&["rm", "bomb"]);
}

// ---------------------------------------------------------------------------------------------
// File systems: tmpfs, read-only root, volumes

#[test]
fn tmpfs_size_and_mode() {
    let _h = host_shared();
    let a = agent();
    let (code, out, err) = sh(
        &a,
        &["--tmpfs", "/scratch:size=1m,mode=1777"],
        "dd if=/dev/zero of=/scratch/small bs=1k count=512 2>/dev/null; echo small=$?; rm /scratch/small; \
         dd if=/dev/zero of=/scratch/big bs=1k count=2048; echo big=$?; echo mode=$(stat -c %a /scratch); \
         echo MOUNTINFO; cat /proc/self/mountinfo",
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(kv(&out, "small"), "0", "a 512 KB write fits in size=1m");
    assert_eq!(kv(&out, "big"), "1", "a 2 MB write must fail in size=1m");
    assert!(err.contains("No space left on device"), "dd error: {err}");
    assert_eq!(kv(&out, "mode"), "1777");
    let mi = container_mountinfo(&out);
    let m = mount_at(&mi, "/scratch").unwrap_or_else(|| panic!("no /scratch mount inside:\n{out}"));
    assert_eq!(m.fstype, "tmpfs");
    assert!(m.super_opts.contains("size=1024k"), "/scratch options: {}", m.super_opts);
}

#[test]
fn read_only_root_allows_only_tmpfs_and_volumes() {
    let _h = host_shared();
    let a = agent();
    let rw = a.root().scratch().join("rw");
    let ro = a.root().scratch().join("ro");
    fs::create_dir_all(&rw).expect("mkdir rw");
    fs::create_dir_all(&ro).expect("mkdir ro");
    fs::write(ro.join("hello"), "read me\n").expect("write ro/hello");
    let rw_spec = format!("{}:/rw", s(&rw));
    let ro_spec = format!("{}:/ro:ro", s(&ro));
    let out = a.ok(&[
        "run",
        "--name",
        "rofs",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "-v",
        &rw_spec,
        "-v",
        &ro_spec,
        "busybox",
        "sh",
        "-c",
        "touch /x; echo root=$?; touch /tmp/x; echo tmp=$?; touch /scratch/x; echo tmpfs=$?; touch /rw/x; echo rw=$?; \
         touch /ro/x; echo ro=$?; cat /ro/hello",
    ]);
    assert_eq!(kv(&out, "root"), "1", "--read-only: / is not writable:\n{out}");
    assert_eq!(kv(&out, "tmp"), "1", "--read-only: /tmp is not writable (no implicit tmpfs):\n{out}");
    assert_eq!(kv(&out, "tmpfs"), "0", "--tmpfs /scratch is writable:\n{out}");
    assert_eq!(kv(&out, "rw"), "0", "a -v volume is writable:\n{out}");
    assert_eq!(kv(&out, "ro"), "1", "a :ro volume is not writable:\n{out}");
    assert!(out.contains("read me\n"), "the :ro volume is readable:\n{out}");
    assert!(rw.join("x").is_file(), "the write to /rw reached the host");
    assert!(!ro.join("x").exists(), "the :ro volume was written on the host");
    let v = a.inspect("rofs");
    assert_eq!(v["HostConfig"]["ReadonlyRootfs"], true);
    let mounts = v["Mounts"].as_array().expect("Mounts");
    assert!(
        mounts.iter().any(|m| m["Destination"] == "/ro" && m["RW"] == false && m["Source"] == s(&ro)),
        "inspect Mounts shows the :ro bind: {mounts:?}"
    );
    a.ok(&["rm", "rofs"]);

    // Without --read-only a container writes its own upper layer; the next one does not see it.
    sh_ok(&a, &[], "touch /x");
    assert_eq!(sh(&a, &[], "test -e /x").0, 1, "a file written by one container appears in another");
}

#[test]
fn volumes_bind_named_and_anonymous() {
    let _h = host_shared();
    let a = agent();
    let host = a.root().scratch().join("hostdir");
    fs::create_dir_all(&host).expect("mkdir hostdir");
    fs::write(host.join("in"), "from-host\n").expect("write hostdir/in");
    let spec = format!("{}:/data", s(&host));
    assert_eq!(sh_ok(&a, &["-v", &spec], "cat /data/in; echo from-ctr > /data/out"), "from-host\n");
    assert_eq!(fs::read_to_string(host.join("out")).expect("read hostdir/out"), "from-ctr\n");

    // A missing host directory is created, as Docker does.
    let missing = a.root().scratch().join("not/yet/there");
    let spec = format!("{}:/x", s(&missing));
    sh_ok(&a, &["-v", &spec], "touch /x/f");
    assert!(missing.join("f").is_file(), "-v with a missing host dir: {} not created", missing.display());

    // A named volume outlives its containers.
    sh_ok(&a, &["-v", "myvol:/data"], "echo persisted > /data/f");
    assert_eq!(sh_ok(&a, &["-v", "myvol:/data"], "cat /data/f"), "persisted\n", "named volume content in a second container");
    assert!(a.root().path().join("volumes").is_dir(), "named volumes live under <root>/volumes");

    // An anonymous volume is a writable directory.
    assert_eq!(sh_ok(&a, &["-v", "/anon"], "touch /anon/x && echo ok"), "ok\n");
}

#[test]
fn anonymous_volumes_go_with_their_container() {
    let _h = host_shared();
    let a = agent();
    sh_ok(&a, &["-v", "keep:/keep"], "true");
    let before = a.volume_entries();
    assert!(before.contains("keep"), "named volume under <root>/volumes: {before:?}");
    // Docker: --rm removes the container's anonymous volumes; named ones stay.
    sh_ok(&a, &["-v", "/anon", "-v", "keep:/keep"], "touch /anon/x");
    assert_eq!(a.volume_entries(), before, "run --rm -v /anon left its anonymous volume behind");
    // Docker: rm -v removes anonymous volumes too.
    a.run_detached(&["--name", "av", "-v", "/anon2", "-v", "keep:/keep", "busybox", "true"]);
    a.ok(&["wait", "av"]);
    a.ok(&["rm", "-v", "av"]);
    assert_eq!(a.volume_entries(), before, "rm -v left the container's anonymous volume behind");
}

// ---------------------------------------------------------------------------------------------
// Security defaults

#[test]
fn default_capabilities_are_dockers() {
    let _h = host_shared();
    let a = agent();
    let st = proc_status(&a, &[]);
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(&st, f), DOCKER_CAPS, "{f} of root in a default container");
    }
    assert_eq!(field(&st, "CapAmb"), NO_CAPS);
    assert_eq!(field(&st, "NoNewPrivs"), "0", "no_new_privs only when asked");
    let st = proc_status(&a, &["-u", "1000"]);
    assert_eq!(field(&st, "CapEff"), NO_CAPS, "a non-root user has no effective capabilities");
    assert_eq!(field(&st, "CapPrm"), NO_CAPS);
    assert_eq!(field(&st, "CapBnd"), DOCKER_CAPS);
    let st = proc_status(&a, &["--cap-drop", "NET_RAW"]);
    assert_eq!(field(&st, "CapEff"), "00000000a80405fb", "--cap-drop NET_RAW");
    let st = proc_status(&a, &["--cap-add", "cap_sys_admin"]);
    assert_eq!(field(&st, "CapEff"), "00000000a82425fb", "--cap-add cap_sys_admin (prefix and case as Docker accepts)");
}

#[test]
fn inheritable_capabilities_are_empty() {
    let _h = host_shared();
    let a = agent();
    // Docker (since 20.10.14 / CVE-2022-24769) leaves the inheritable set empty.
    for flags in [&[][..], &["--cap-add", "NET_ADMIN"][..], &["--privileged"][..]] {
        assert_eq!(field(&proc_status(&a, flags), "CapInh"), NO_CAPS, "CapInh with {flags:?}");
    }
}

#[test]
fn cap_drop_all_cap_add_net_raw() {
    let _h = host_shared();
    let a = agent();
    let st = proc_status(&a, &["--cap-drop", "ALL", "--cap-add", "NET_RAW"]);
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(&st, f), "0000000000002000", "{f} with --cap-drop ALL --cap-add NET_RAW");
    }
    a.ok(&["create", "--name", "cc", "--cap-drop", "ALL", "--cap-add", "NET_RAW", "busybox", "true"]);
    let v = a.inspect("cc");
    assert_eq!(v["HostConfig"]["CapAdd"], json!(["NET_RAW"]));
    assert_eq!(v["HostConfig"]["CapDrop"], json!(["ALL"]));
    a.ok(&["rm", "cc"]);
}

#[test]
fn privileged_gets_the_whole_bounding_set_and_host_devices() {
    let _h = host_shared();
    let a = agent();
    let mine = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let bnd = field(&mine, "CapBnd");
    let out = sh_ok(&a, &["--privileged"], "cat /proc/self/status; echo DEV; ls -A /dev; echo MOUNTINFO; cat /proc/self/mountinfo");
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(&out, f), bnd, "{f} of a --privileged container vs the agent's bounding set");
    }
    let dev: BTreeSet<&str> =
        out.split("DEV\n").nth(1).expect("DEV marker").split("MOUNTINFO\n").next().expect("dev list").lines().collect();
    let mut host_devs = Vec::new();
    for e in fs::read_dir("/dev").expect("read /dev").flatten() {
        let ft = e.file_type().expect("file type");
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() || ft.is_block_device() {
            host_devs.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    let missing: Vec<&String> = host_devs.iter().filter(|d| !dev.contains(d.as_str())).collect();
    assert!(missing.is_empty(), "--privileged: host devices missing from /dev: {missing:?}");
    let mi = container_mountinfo(&out);
    for p in ["/proc/keys", "/proc/timer_list", "/sys/firmware"] {
        assert!(mount_at(&mi, p).is_none(), "--privileged: {p} is still masked");
    }
    let sys = mount_at(&mi, "/sys").expect("/sys mounted");
    assert!(sys.opts.split(',').any(|o| o == "rw"), "--privileged: /sys is read-write as in Docker ({})", sys.opts);
    a.ok(&["create", "--name", "pv", "--privileged", "busybox", "true"]);
    assert_eq!(a.inspect_f("pv", "{{.HostConfig.Privileged}}"), "true");
    a.ok(&["rm", "pv"]);
}

#[test]
fn no_new_privileges_and_ulimits() {
    let _h = host_shared();
    let a = agent();
    let st = proc_status(&a, &["--security-opt", "no-new-privileges"]);
    assert_eq!(field(&st, "NoNewPrivs"), "1");
    let out = sh_ok(&a, &["--ulimit", "nofile=100:200"], "cat /proc/self/limits; echo soft=$(ulimit -n)");
    let line = out.lines().find(|l| l.starts_with("Max open files")).unwrap_or_else(|| panic!("no Max open files in:\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&f[3..5], ["100", "200"], "{line}");
    assert_eq!(kv(&out, "soft"), "100");
}

#[test]
fn masked_and_read_only_paths() {
    let _h = host_shared();
    let a = agent();
    let mut script = String::new();
    for p in MASKED {
        script.push_str(&format!(
            "if [ -d {p} ]; then echo \"M {p} dir $(ls -A {p} | wc -l)\"; elif [ -e {p} ]; then echo \"M {p} file $(cat {p} | wc -c)\"; \
             else echo \"M {p} absent\"; fi; "
        ));
    }
    script.push_str(
        "v=$(cat /proc/sys/kernel/printk_ratelimit); echo $v > /proc/sys/kernel/printk_ratelimit; echo procsys=$?; \
         touch /sys/berth-test; echo sys=$?; touch /sys/firmware/x; echo fw=$?; echo MOUNTINFO; cat /proc/self/mountinfo",
    );
    let (code, out, err) = sh(&a, &[], &script);
    assert_eq!(code, 0, "stderr: {err}");
    let mi = container_mountinfo(&out);
    let mut checked = 0;
    for p in MASKED {
        let line = out.lines().find(|l| l.starts_with(&format!("M {p} "))).unwrap_or_else(|| panic!("no line for {p}:\n{out}"));
        let on_host = Path::new(p).exists();
        if !on_host {
            println!("{p}: not on this host's kernel, not checked");
            continue;
        }
        checked += 1;
        assert!(line.ends_with(" 0"), "{p} is not masked (exists on the host; inside: {line:?})");
        let m = mount_at(&mi, p).unwrap_or_else(|| panic!("{p} exists on the host but no mount masks it inside"));
        if Path::new(p).is_dir() {
            assert!(m.fstype == "tmpfs" && m.opts.split(',').any(|o| o == "ro"), "{p} masked by {} ({})", m.fstype, m.opts);
        } else {
            assert!(m.root.ends_with("/null"), "{p} is masked by {}:{}, not /dev/null", m.fstype, m.root);
        }
    }
    assert!(checked >= 2, "too few masked paths exist on this host to check anything");
    if Path::new("/proc/kcore").exists() {
        let m = mount_at(&mi, "/proc/kcore").expect("/proc/kcore masked by a mount");
        assert_eq!(m.root, "/null", "/proc/kcore is bound to /dev/null");
    }
    let fw = mount_at(&mi, "/sys/firmware").expect("/sys/firmware masked by a mount");
    assert_eq!(fw.fstype, "tmpfs");
    assert!(fw.opts.split(',').any(|o| o == "ro"), "/sys/firmware read-only: {}", fw.opts);
    for p in READONLY {
        if Path::new(p).exists() {
            let m = mount_at(&mi, p).unwrap_or_else(|| panic!("{p} has no read-only mount inside"));
            assert!(m.opts.split(',').any(|o| o == "ro"), "{p} mounted {}", m.opts);
        }
    }
    let sys = mount_at(&mi, "/sys").expect("/sys mounted");
    assert!(sys.opts.split(',').any(|o| o == "ro"), "/sys mounted {}", sys.opts);
    assert_eq!(kv(&out, "procsys"), "1", "/proc/sys must not be writable");
    assert_eq!(kv(&out, "sys"), "1");
    assert_eq!(kv(&out, "fw"), "1");
    assert!(err.contains("Read-only file system"), "writes fail with EROFS: {err}");
}

#[test]
fn dev_holds_the_standard_nodes_and_the_device_cgroup_denies_others() {
    let _h = host_shared();
    let a = agent();
    // The block device the host's / lives on: a container may mknod it (CAP_MKNOD) but not open it.
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata("/").expect("stat /").dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let script = format!(
        "stat -c '%n %F %t:%T' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; echo hi > /dev/null; echo null=$?; \
         echo zero=$(head -c 4 /dev/zero | wc -c); echo x > /dev/full; echo full=$?; \
         busybox mknod /tmp/disk b {maj} {min}; echo mknod=$?; head -c 1 /tmp/disk > /dev/null; echo disk=$?; \
         echo DEV; ls -A /dev; echo MOUNTINFO; cat /proc/self/mountinfo"
    );
    let (code, out, err) = sh(&a, &[], &script);
    assert_eq!(code, 0, "stderr: {err}");
    for (name, nums) in [("null", "1:3"), ("zero", "1:5"), ("full", "1:7"), ("random", "1:8"), ("urandom", "1:9"), ("tty", "5:0")] {
        let want = format!("/dev/{name} character special file {nums}");
        assert!(out.lines().any(|l| l == want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(kv(&out, "null"), "0");
    assert_eq!(kv(&out, "zero"), "4");
    assert_eq!(kv(&out, "full"), "1", "writing /dev/full fails");
    assert_eq!(kv(&out, "mknod"), "0", "mknod works with Docker's default caps");
    assert_eq!(kv(&out, "disk"), "1", "the device cgroup must deny the host's disk {maj}:{min}");
    assert!(err.contains("Operation not permitted"), "opening the host disk: {err}");
    let listed: BTreeSet<&str> = out.split("DEV\n").nth(1).expect("DEV").split("MOUNTINFO\n").next().expect("ls").lines().collect();
    let allowed: BTreeSet<&str> = [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "console", "fd", "stdin", "stdout", "stderr",
        "core",
    ]
    .into_iter()
    .collect();
    let extra: Vec<&&str> = listed.difference(&allowed).collect();
    assert!(extra.is_empty(), "unexpected entries in the container's /dev: {extra:?}");
    for need in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"] {
        assert!(listed.contains(need), "/dev/{need} missing: {listed:?}");
    }
    let mi = container_mountinfo(&out);
    for (p, fs) in [("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"), ("/dev/mqueue", "mqueue")] {
        let m = mount_at(&mi, p).unwrap_or_else(|| panic!("{p} not mounted inside"));
        assert_eq!(m.fstype, fs, "{p}");
    }
}

// ---------------------------------------------------------------------------------------------
// Networking

fn interfaces(proc_net_dev: &str) -> Vec<String> {
    proc_net_dev.lines().skip(2).filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string())).collect()
}

#[test]
fn net_none_has_only_loopback_and_host_is_the_default() {
    let _h = host_shared();
    let a = agent();
    let out = sh_ok(&a, &["--net", "none"], "cat /proc/net/dev; echo flags=$(cat /sys/class/net/lo/flags)");
    assert_eq!(interfaces(&out), ["lo"], "--net none: /proc/net/dev:\n{out}");
    let flags = u32::from_str_radix(kv(&out, "flags").trim_start_matches("0x"), 16).expect("lo flags");
    assert!(flags & 1 == 1, "lo is up (flags {flags:#x})");
    let host_ns = fs::read_link("/proc/self/ns/net").expect("readlink own net ns");
    let out = sh_ok(&a, &[], "readlink /proc/self/ns/net; cat /proc/net/dev");
    assert_eq!(out.lines().next(), Some(s(&host_ns)), "the default network is the host's");
    let mut want = interfaces(&fs::read_to_string("/proc/net/dev").expect("host /proc/net/dev"));
    let mut got = interfaces(&out);
    want.sort();
    got.sort();
    assert_eq!(got, want, "the default network shows the host's interfaces");
    a.ok(&["create", "--name", "nn", "--net", "none", "busybox", "true"]);
    assert_eq!(a.inspect_f("nn", "{{.HostConfig.NetworkMode}}"), "none");
    a.ok(&["rm", "nn"]);
}

#[test]
fn net_container_shares_the_network_namespace() {
    let _h = host_shared();
    let a = agent();
    let id = a.run_detached(&["--name", "netsrc", "--net", "none", "busybox", "sleep", "1000"]);
    let pid = a.pid_of("netsrc");
    let ns = fs::read_link(format!("/proc/{pid}/ns/net")).expect("readlink ns/net of netsrc");
    let host_ns = fs::read_link("/proc/self/ns/net").expect("readlink own net ns");
    assert_ne!(ns, host_ns, "--net none has its own namespace");
    for target in ["container:netsrc".to_string(), format!("container:{}", &id[..12])] {
        let out = sh_ok(&a, &["--net", &target], "readlink /proc/self/ns/net; cat /proc/net/dev");
        assert_eq!(out.lines().next(), Some(s(&ns)), "--net {target} joins netsrc's namespace");
        assert_eq!(interfaces(&out), ["lo"], "--net {target}: interfaces");
    }
    a.ok(&["create", "--name", "joiner", "--net", "container:netsrc", "busybox", "true"]);
    assert_eq!(a.inspect_f("joiner", "{{.HostConfig.NetworkMode}}"), "container:netsrc");
    a.ok(&["rm", "-f", "netsrc", "joiner"]);
}

// ---------------------------------------------------------------------------------------------
// Leaks and concurrency

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|rd| rd.count()).unwrap_or(0)
}

fn zombie_children(pid: u32) -> Vec<u32> {
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

#[test]
fn no_leaks_after_200_run_rm_cycles() {
    let _h = host_exclusive();
    let a = agent();
    let agent_pid = a.pid().expect("agent running");
    sh_ok(&a, &[], "true"); // the first container creates the cgroup parent
    let before = a.snapshot();
    let fds_before = fd_count(agent_pid);
    let rss = |p: u32| status_field(&fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default(), "VmRSS").unwrap_or_default();
    let rss_before = rss(agent_pid);
    const CYCLES: usize = 200;
    let t0 = Instant::now();
    for i in 0..CYCLES {
        let (code, out, err) = a.code(&["run", "--rm", "busybox", "true"]);
        assert_eq!(code, 0, "cycle {i}: run --rm busybox true: stdout {out:?} stderr {err:?}");
    }
    let took = t0.elapsed();
    println!("{CYCLES} run --rm cycles in {took:?}; agent RSS {rss_before} -> {}", rss(agent_pid));
    let after = a.snapshot();
    assert!(
        after == before,
        "after {CYCLES} run --rm cycles: mounts {} -> {}, cgroup dirs {} -> {}, containers {} -> {}\n{}",
        before.mount_count(),
        after.mount_count(),
        before.cgroups.len(),
        after.cgroups.len(),
        before.containers.len(),
        after.containers.len(),
        after.diff(&before)
    );
    assert!(a.ps_all().is_empty(), "ps -a after --rm cycles: {:?}", a.ps_all());
    assert_eq!(fd_count(agent_pid), fds_before, "the agent's open descriptors grew over {CYCLES} cycles");
    assert_eq!(zombie_children(agent_pid), Vec::<u32>::new(), "unreaped children of the agent");
    assert!(took < Duration::from_secs(180), "{CYCLES} cycles took {took:?} (budget 3 minutes)");

    // The same with most features at once (a named volume made by the warm-up run).
    let host = a.root().scratch().join("leak-bind");
    fs::create_dir_all(&host).expect("mkdir leak-bind");
    let bind = format!("{}:/h", s(&host));
    #[rustfmt::skip]
    let args = [
        "run", "--rm", "--net", "none", "--read-only", "--tmpfs", "/t:size=1m", "-v", &bind, "-v", "leakvol:/n", "-m", "32m",
        "--pids-limit", "20", "--cpus", "0.5", "--init", "-e", "A=b", "-w", "/h", "-u", "0:0", "--cap-drop", "ALL", "--ulimit",
        "nofile=100:200", "busybox", "sh", "-c", "touch /t/x /h/x /n/x",
    ];
    let (code, _, err) = a.code(&args);
    assert_eq!(code, 0, "warm-up of the many-features run: {err}");
    let before = a.snapshot();
    let fds_before = fd_count(agent_pid);
    for i in 0..25 {
        let (code, _, err) = a.code(&args);
        assert_eq!(code, 0, "many-features cycle {i}: {err}");
    }
    let after = a.snapshot();
    assert!(after == before, "after 25 many-features run --rm cycles:\n{}", after.diff(&before));
    assert_eq!(fd_count(agent_pid), fds_before, "the agent's open descriptors grew over the many-features cycles");
    assert_eq!(zombie_children(agent_pid), Vec::<u32>::new(), "unreaped children of the agent");
}

#[test]
fn concurrent_run_and_rm() {
    let _h = host_shared();
    let a = agent();
    sh_ok(&a, &[], "true");
    let before = a.snapshot();
    const N: usize = 10;
    let names: Vec<String> = (0..N).map(|i| format!("cc{i}")).collect();
    let a = &a;
    std::thread::scope(|sc| {
        let hs: Vec<_> = names.iter().map(|n| sc.spawn(move || a.code(&["run", "-d", "--name", n, "busybox", "sleep", "1000"]))).collect();
        for (h, n) in hs.into_iter().zip(&names) {
            let (code, out, err) = h.join().expect("thread");
            assert!(code == 0 && is_hex64(out.trim()), "concurrent run -d --name {n}: exit {code}, stdout {out:?}, stderr {err:?}");
        }
    });
    let running = a.ok(&["ps", "-q"]);
    assert_eq!(running.lines().count(), N, "ps after {N} concurrent run -d:\n{running}");
    std::thread::scope(|sc| {
        let hs: Vec<_> = names.iter().map(|n| sc.spawn(move || a.code(&["rm", "-f", n]))).collect();
        for (h, n) in hs.into_iter().zip(&names) {
            let (code, out, err) = h.join().expect("thread");
            assert_eq!((code, out.trim()), (0, n.as_str()), "concurrent rm -f {n}: stderr {err:?}");
        }
    });
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..N).map(|i| sc.spawn(move || sh(a, &[], &format!("echo {i}")))).collect();
        for (i, h) in hs.into_iter().enumerate() {
            let (code, out, err) = h.join().expect("thread");
            assert_eq!((code, out.clone()), (0, format!("{i}\n")), "concurrent run --rm #{i}: stderr {err:?}");
        }
    });
    assert_no_containers(a, &before);
}

#[test]
fn inspect_reports_host_config_and_unknown_names() {
    let _h = host_shared();
    let a = agent();
    a.ok(&["create", "--name", "hc", "--read-only", "--tmpfs", "/t:size=1m", "-m", "16m", "--pids-limit", "20", "busybox", "true"]);
    let v = a.inspect("hc");
    let hc = &v["HostConfig"];
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["Memory"], 16 << 20);
    assert_eq!(hc["PidsLimit"], 20);
    assert_eq!(hc["Privileged"], false);
    assert_eq!(hc["Tmpfs"], json!({"/t": "size=1m"}));
    assert_eq!(a.inspect_f("hc", "{{.Name}} {{.State.Status}}"), "/hc created");
    let line = a.ok(&["inspect", "-f", "json", "hc"]);
    let obj: serde_json::Value =
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("inspect -f json is not one JSON object ({e}): {line}"));
    assert_eq!(obj["Name"], "/hc");
    let both = a.ok(&["inspect", "-f", "{{.Id}}", "busybox", "hc"]);
    assert_eq!(both.lines().count(), 2, "inspect of an image and a container together: {both}");
    let (code, _, err) = a.code(&["inspect", "--type", "container", "busybox"]);
    assert_eq!(code, 1, "inspect --type container of an image: {err}");
    let (code, _, err) = a.code(&["inspect", "nosuch"]);
    assert_eq!(code, 1, "inspect nosuch: {err}");
    assert!(err.to_lowercase().contains("no such"), "inspect nosuch: {err}");
    a.ok(&["rm", "hc"]);
}
