//! Running containers with Docker's flags: exit codes, stdio, env/workdir/user/hostname, `--rm`, `ps`/`inspect`/`stop`/`kill`/`wait`, `create` then `start`, `--net none|host|container:`.
//!
//! A real `berth agent` on a throw-away root, the busybox fixture image, and the CLI with Docker's
//! flags. What runs inside is checked from inside (`/proc/self/*`, files, exit codes) and from the
//! host (cgroup files, `/proc/<pid>`, the root's directories). Every test needs root and its own
//! agent; tests that compare mounts take `host_exclusive`, all others `host_shared`. Helpers:
//! `berth_tests::container`.

use berth_tests::agent::{alive, cgroup_dir_of, code_of, host_shared};
use berth_tests::container::*;
use berth_tests::{is_hex64, s, Stdin};
use serde_json::json;
use std::collections::BTreeSet;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

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
// Naming a container: id, unique id prefix, name, `/name`

/// Docker's lookup, in the CLI (`inspect`) and in the agent (`rm`): an exact id or name wins over
/// id prefixes, a prefix must be unique, and a leading `/` is ignored.
#[test]
fn containers_are_found_by_id_prefix_and_name() {
    let _h = host_shared();
    let a = agent();
    let id_of = |name: &str| a.ok(&["create", "--name", name, "busybox", "true"]).trim().to_string();
    let id_named = |key: &str| a.ok(&["inspect", "--type", "container", "-f", "{{.Id}}", key]).trim().to_string();
    // Two ids that share their first character: at most 17 containers (16 hex digits).
    let mut ids: Vec<String> = Vec::new();
    let (first, second) = loop {
        let id = id_of(&format!("p{}", ids.len()));
        if let Some(other) = ids.iter().find(|o| o[..1] == id[..1]) {
            break (other.clone(), id);
        }
        ids.push(id);
        assert!(ids.len() <= 16, "17 random ids without a shared first character: {ids:?}");
    };
    let shared = &first[..1];
    let (code, _, err) = a.code(&["inspect", "--type", "container", shared]);
    assert_ne!(code, 0, "inspect of an ambiguous prefix {shared} succeeded");
    assert!(err.contains("multiple IDs found with provided prefix"), "inspect {shared}: {err}");
    let (code, _, err) = a.code(&["rm", shared]);
    assert_ne!(code, 0, "rm of an ambiguous prefix {shared} succeeded");
    assert!(err.contains("multiple IDs found with provided prefix"), "rm {shared}: {err}");

    // A unique prefix, the full id, the name and /name all name the same container.
    let unique = (2..=12).map(|n| &second[..n]).find(|p| !ids.iter().any(|o| o.starts_with(p))).unwrap_or(&second[..12]);
    assert_eq!(id_named(unique), second, "inspect {unique}");
    assert_eq!(id_named(&second), second);
    assert_eq!(id_named("/p0"), ids[0]);

    // A container named like another's id prefix: the name wins, in the CLI and in the agent.
    let prefix = &second[..6];
    let named = id_of(prefix);
    assert_eq!(id_named(prefix), named);
    a.ok(&["rm", prefix]);
    assert_eq!(id_named(&second), second, "rm {prefix} removed the container it prefixes");
    let (code, _, err) = a.code(&["inspect", "--type", "container", &named]);
    assert_ne!(code, 0, "the container named {prefix} is still there");
    assert!(err.contains("No such"), "inspect of a removed container: {err}");
    a.ok(&["rm", unique]);
    let (code, _, err) = a.code(&["rm", "nosuch"]);
    assert_eq!(code, 1, "rm nosuch: {err}");
    assert!(err.contains("No such container: nosuch"), "rm nosuch: {err}");
}
