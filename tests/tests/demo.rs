//! `scripts/demo`, the README's first command, run as a user would (with the debug binaries, via
//! `BERTH_DEMO_BIN` and `BERTH_DEMO_LAB`, instead of its release build): it must succeed and leave
//! nothing it started behind: no process (agent, broker, container), no mount under its scratch
//! directory, no cgroup of its agent's root, no scratch directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::agent::cgroup_mounts;
use berth_tests::{berth_bin, require_root, run, sha256_hex, workspace_root, Stdin};

/// Processes whose command line or working directory mentions `dir`.
fn processes_in(dir: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default();
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        if cmdline.contains(dir) || cwd.starts_with(dir) {
            out.push((pid, format!("{cmdline} (cwd {cwd})")));
        }
    }
    out
}

fn mounts_under(dir: &str) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(dir)).map(str::to_string).collect()
}

#[test]
fn the_demo_runs_and_leaves_nothing_behind() {
    require_root();
    let lab = workspace_root().join("target/debug/berth-lab");
    assert!(lab.is_file(), "{} is missing: cargo build --workspace --bins first (scripts/test does)", lab.display());
    let mut cmd = Command::new(workspace_root().join("scripts/demo"));
    cmd.env("BERTH_DEMO_BIN", berth_bin()).env("BERTH_DEMO_LAB", &lab).current_dir(workspace_root());
    let out = run(&mut cmd, Stdin::Null);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let work = stdout
        .lines()
        .find_map(|l| l.strip_prefix("scratch directory: "))
        .unwrap_or_else(|| panic!("the demo did not say its scratch directory:\n{stdout}\n{stderr}"))
        .to_string();
    // The cgroup parent of the demo's agent: berth-<sha256(root)[..12]> (the root is absolute
    // and under a directory mktemp made, so it is already canonical).
    let parent = format!("berth-{}", &sha256_hex(format!("{work}/device").as_bytes())[..12]);
    let cgroups: Vec<PathBuf> = cgroup_mounts().into_iter().map(|h| h.join(&parent)).filter(|p| p.exists()).collect();
    let procs = processes_in(&work);
    let mounts = mounts_under(&work);
    let scratch_left = Path::new(&work).exists();
    // Clean up whatever is left before asserting, so that a failure leaves the host as it was.
    for (pid, _) in &procs {
        // SAFETY: a plain kill of a process this test identified as the demo's.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    for m in mounts.iter().rev() {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
    for c in &cgroups {
        for d in walk(c).iter().rev() {
            if let Ok(pids) = fs::read_to_string(d.join("cgroup.procs")) {
                for p in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    // SAFETY: a plain kill of a process in the demo agent's own cgroup.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
            let _ = fs::remove_dir(d);
        }
    }
    if scratch_left {
        let _ = fs::remove_dir_all(&work);
    }
    assert!(out.status.success(), "scripts/demo failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("rolled back, as it should"), "the demo's story:\n{stdout}");
    assert!(stdout.contains("the whole application rolled back, as it should"), "the demo's application story:\n{stdout}");
    assert!(procs.is_empty(), "processes of the demo still running after it ended: {procs:?}");
    assert!(mounts.is_empty(), "mounts under {work} after the demo: {mounts:?}");
    assert!(cgroups.is_empty(), "cgroups of the demo's agent after the demo: {cgroups:?}");
    assert!(!scratch_left, "the demo's scratch directory {work} is still there");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}
