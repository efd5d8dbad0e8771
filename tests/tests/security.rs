//! Confinement end to end: the seccomp filter every container gets (Docker's default profile,
//! custom profiles, `--privileged` unconfined, `exec` under the container's filter), a probe of
//! system calls compared with what Docker's default profile decides, and regression tests for the
//! runtime escapes of recent years, each reproducing the attack's technique against berth.
//!
//! Every test needs root and its own agent; all take [`host_shared`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::agent::{host_shared, Agent};
use berth_tests::{require_root, s};

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

fn sh_ok(a: &Agent, flags: &[&str], script: &str) -> String {
    let (code, out, err) = sh(a, flags, script);
    assert_eq!(code, 0, "run {flags:?} sh -c {script:?}: exit {code}\nstdout: {out}\nstderr: {err}");
    out
}

fn kv<'a>(out: &'a str, key: &str) -> &'a str {
    let p = format!("{key}=");
    out.lines().find_map(|l| l.strip_prefix(p.as_str())).unwrap_or_else(|| panic!("no {key}= in:\n{out}"))
}

// ---------------------------------------------------------------------------------------------
// Seccomp

#[test]
fn default_container_is_filtered_and_cannot_make_a_user_namespace() {
    let _h = host_shared();
    let a = agent();
    let out = sh_ok(
        &a,
        &[],
        "grep -E '^Seccomp(_filters)?:' /proc/self/status; unshare -U -r true; echo unshare=$?; unshare -m true; echo unshare_m=$?",
    );
    assert!(out.contains("Seccomp:\t2"), "no filter in a default container:\n{out}");
    assert_eq!(kv(&out, "unshare"), "1", "unshare -U -r must be refused:\n{out}");
    assert_eq!(kv(&out, "unshare_m"), "1", "unshare -m must be refused:\n{out}");
}
