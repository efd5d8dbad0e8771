//! Resource limits reaching the cgroup (memory and the OOM killer, CPU, pids against a fork bomb), and no leaks after many runs, also concurrent ones.
//!
//! A real `berth agent` on a throw-away root, the busybox fixture image, and the CLI with Docker's
//! flags. What runs inside is checked from inside (`/proc/self/*`, files, exit codes) and from the
//! host (cgroup files, `/proc/<pid>`, the root's directories). Every test needs root and its own
//! agent; tests that compare mounts take `host_exclusive`, all others `host_shared`. Helpers:
//! `berth_tests::container`.

use berth_tests::agent::{alive, cgroup_dir_of, host_exclusive, host_shared, status_field};
use berth_tests::container::*;
use berth_tests::{is_hex64, s};
use serde_json::json;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

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
    // The container moves itself in (v1: through `tasks`, one thread; cgroup2: `cgroup.procs`):
    // every hierarchy berth drives holds it, the hybrid host's cgroup2 tree too.
    let id = v["Id"].as_str().expect("Id");
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/PID/cgroup");
    for ctl in ["cpuset", "memory", "pids", "cpu", "cpuacct", "freezer", "devices"] {
        assert!(cgroup_dir_of(pid, ctl).ends_with(format!("{}/{id}", a.cgroup_parent())), "{ctl}: {own}");
    }
    if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        let unified = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_else(|| panic!("no cgroup2 line: {own}"));
        assert!(unified.ends_with(&format!("{}/{id}", a.cgroup_parent())), "cgroup2: {own}");
    }
    // An `exec` joins the same groups (born in the cgroup2 one, moved into the v1 ones).
    let exec = a.ok(&["exec", "lim", "cat", "/proc/self/cgroup"]);
    let lines: Vec<&str> = exec
        .lines()
        .filter(|l| ["cpuset", "memory", "pids", "freezer", "devices", ""].iter().any(|c| l.split(':').nth(1) == Some(*c)))
        .collect();
    assert!(lines.len() >= 5, "exec: {exec}");
    for l in lines {
        assert!(l.ends_with(&format!("{}/{id}", a.cgroup_parent())), "exec: {l}\n{exec}");
    }
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
