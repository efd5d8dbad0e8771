//! The agent killed (`kill -9`) or stopped at awkward moments and restarted: it adopts what runs, cleans what an interrupted start left, reports what died meanwhile; `--live-restore`; damaged records.
//!
//! A real `berth agent` on a throw-away root and the busybox fixture image; what happens is checked
//! from the host too (`/proc`, cgroup files, the root's directories), never only through berth's
//! own answers. Every test needs root and its own agent; tests that compare mounts take
//! `host_exclusive`, all others `host_shared`. Helpers: `berth_tests::supervise`. Nothing here
//! asserts how fast something is (see `tests/src/supervise.rs`).

use berth_tests::agent::{alive, cgroup_v1_mount, host_exclusive, host_shared, Agent};
use berth_tests::supervise::*;
use berth_tests::{berth_bin, poll, run, s, Stdin};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
