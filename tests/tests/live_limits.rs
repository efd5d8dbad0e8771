//! `stats` against the cgroup's own numbers, and `update` of live limits.
//!
//! A real `berth agent` on a throw-away root and the busybox fixture image; what happens is checked
//! from the host too (`/proc`, cgroup files, the root's directories), never only through berth's
//! own answers. Every test needs root and its own agent; tests that compare mounts take
//! `host_exclusive`, all others `host_shared`. Helpers: `berth_tests::supervise`. Nothing here
//! asserts how fast something is (see `tests/src/supervise.rs`).

use berth_tests::agent::{alive, cgroup_dir_of, host_exclusive, host_shared};
use berth_tests::poll;
use berth_tests::supervise::*;
use serde_json::Value;
use std::fs;

#[test]
fn stats_memory_matches_the_cgroup() {
    let _h = host_shared();
    let a = agent();
    // A shell variable of 20 MB: anonymous memory the container holds (the shell must stay alive,
    // so the command after `sleep` keeps it from exec'ing sleep).
    let id = a.run_detached(&[
        "--name",
        "mem",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo > /tmp/ready; sleep 100901; echo ${#x}",
    ]);
    wait_ready(&a, "mem");
    let cg = cgroup_dir(&a, "memory", &id);
    let cg_figure = || -> u64 {
        let usage: u64 = read_trim(&cg.join("memory.usage_in_bytes")).parse().expect("usage_in_bytes");
        let stat = fs::read_to_string(cg.join("memory.stat")).expect("memory.stat");
        let cache: u64 =
            stat.lines().find_map(|l| l.strip_prefix("total_cache ")).and_then(|v| v.trim().parse().ok()).expect("total_cache");
        usage - cache
    };
    let held = cg_figure();
    assert!(held >= 18_000_000, "test setup: the container holds only {held} bytes by its cgroup");
    let out = a.ok(&["stats", "--no-stream", "--format", "json", "mem"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("stats --format json is not one JSON object ({e}):\n{out}"));
    let after = cg_figure();
    let got = v["MemBytes"].as_u64().unwrap_or_else(|| panic!("MemBytes: {v}"));
    let (lo, hi) = (held.min(after) as f64 * 0.9, held.max(after) as f64 * 1.1);
    assert!((lo..=hi).contains(&(got as f64)), "stats MemBytes {got}, cgroup says {held}..{after} (usage - total_cache)");
    assert_eq!(v["Name"], "mem");
    assert!(id.starts_with(v["ID"].as_str().unwrap_or("?")), "stats ID {} of {id}", v["ID"]);
    assert_eq!(v["PIDs"], "2", "sh and sleep: {v}");
    assert_eq!(v["OOMKills"], 0);
    // MemPerc is MemBytes against the 64 MiB limit: about 31 %.
    let perc: f64 = v["MemPerc"].as_str().and_then(|p| p.trim_end_matches('%').parse().ok()).unwrap_or_else(|| panic!("MemPerc: {v}"));
    let want = got as f64 * 100.0 / (64.0 * 1024.0 * 1024.0);
    assert!((perc - want).abs() < 1.0, "MemPerc {perc} for {got} of a 64 MiB limit (expected {want:.2})");
    // The table form lists it too.
    let table = a.ok(&["stats", "--no-stream"]);
    assert!(table.lines().any(|l| l.contains("mem") && l.contains(&id[..12])), "stats table:\n{table}");
    a.ok(&["rm", "-f", "mem"]);
}

#[test]
fn update_changes_live_limits() {
    let _h = host_shared();
    let a = agent();
    let id = a.run_detached(&["--name", "up", "-m", "64m", "busybox", "sleep", "101001"]);
    let pid = a.pid_of("up");
    let mem = cgroup_dir(&a, "memory", &id);
    let limit = || read_trim(&mem.join("memory.limit_in_bytes"));
    assert_eq!(limit(), "67108864");
    assert_eq!(a.ok(&["update", "-m", "128m", "up"]).trim(), "up");
    assert_eq!(limit(), "134217728", "raised live");
    assert_eq!(a.inspect_f("up", "{{.HostConfig.Memory}}"), "134217728");
    assert_eq!(a.ok(&["update", "-m", "48m", "up"]).trim(), "up");
    assert_eq!(limit(), "50331648", "lowered live");
    assert_eq!(a.inspect_f("up", "{{.HostConfig.Memory}}"), "50331648");
    a.ok(&["update", "-m", "48m", "--memory-swap", "96m", "up"]);
    assert_eq!(read_trim(&mem.join("memory.memsw.limit_in_bytes")), "100663296", "--memory-swap live");
    assert_eq!(a.inspect_f("up", "{{.HostConfig.MemorySwap}}"), "100663296");
    a.ok(&["update", "--memory-reservation", "32m", "--pids-limit", "50", "--cpus", "0.5", "--cpu-shares", "512", "up"]);
    assert_eq!(read_trim(&mem.join("memory.soft_limit_in_bytes")), "33554432");
    assert_eq!(read_trim(&cgroup_dir_of(pid, "pids").join("pids.max")), "50");
    let cpu = cgroup_dir_of(pid, "cpu");
    assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read_trim(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");
    assert_eq!(
        a.inspect_f("up", "{{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.MemoryReservation}}"),
        "50 500000000 512 33554432"
    );
    a.ok(&["update", "--restart", "always", "up"]);
    assert_eq!(a.inspect_f("up", "{{.HostConfig.RestartPolicy.Name}}"), "always");
    assert_eq!(a.pid_of("up"), pid, "update does not restart the container");
    // The new policy is in force: the container comes back after its process is killed.
    // SAFETY: kill(2) of the container's pid 1, which this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    poll("up restarted under the policy set by update", PATIENCE, || {
        (a.inspect_f("up", "{{.State.Status}} {{.RestartCount}}") == "running 1").then_some(())
    });
    // The limits survive the restart.
    let id2 = id_of(&a, "up");
    assert_eq!(read_trim(&cgroup_dir(&a, "memory", &id2).join("memory.limit_in_bytes")), "50331648", "limit after the restart");
    a.ok(&["rm", "-f", "up"]);
}

#[test]
fn bad_update_memory_below_current_usage() {
    let _h = host_exclusive();
    let a = seeded();
    let id = a.run_detached(&[
        "--name",
        "hog",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo > /tmp/ready; sleep 101601; echo ${#x}",
    ]);
    wait_ready(&a, "hog");
    let pid = a.pid_of("hog");
    let limit = cgroup_dir(&a, "memory", &id).join("memory.limit_in_bytes");
    refused(&a, &["update", "-m", "10m", "hog"], 1, &["Cannot update memory limit below current usage"]);
    assert_eq!(read_trim(&limit), "67108864", "the live limit is unchanged");
    assert_eq!(a.inspect_f("hog", "{{.HostConfig.Memory}} {{.State.Status}} {{.State.Pid}}"), format!("67108864 running {pid}"));
    assert!(alive(pid));
    a.ok(&["rm", "-f", "hog"]);
}
