//! Exit codes of `kill`, `rename`, `update` and `create` as Docker's CLI gives them (docker/cli
//! `cli/command/container/{kill,rename,update}.go`, and `docker.go`'s `getExitCode`): a bad flag
//! or flag value is 125 (cobra/pflag's usage error); the daemon refusing is 1.

use berth_tests::agent::Agent;
use berth_tests::{assert_one_error, require_root};

/// Runs berth and checks the exit code and that stderr names one of `words`.
fn fails(a: &Agent, args: &[&str], code: i32, words: &[&str]) -> String {
    let (got, out, err) = a.code(args);
    assert_eq!(got, code, "berth {}: exit code; stdout: {out} stderr: {err}", args.join(" "));
    assert!(out.is_empty(), "berth {}: nothing on stdout when it fails: {out}", args.join(" "));
    assert!(words.iter().any(|w| err.contains(w)), "berth {}: stderr names none of {words:?}: {err}", args.join(" "));
    err
}

#[test]
fn kill_rename_update_and_create() {
    require_root();
    let a = Agent::with_busybox();
    a.run_detached(&["--name", "up", "busybox", "sleep", "1000"]);
    a.ok(&["create", "--name", "idle", "busybox", "true"]);

    // kill: the daemon's refusals are 1; a bad flag 125.
    assert_one_error(&fails(&a, &["kill", "nosuch"], 1, &["No such container"]), &["nosuch"]);
    fails(&a, &["kill", "idle"], 1, &["is not running", "not running"]);
    fails(&a, &["kill", "-s", "BOGUS", "up"], 1, &["BOGUS"]);
    fails(&a, &["kill", "--bogus", "up"], 125, &["unknown flag: --bogus"]);
    fails(&a, &["kill"], 125, &["requires at least 1 argument"]);

    // rename: 1 for whatever the daemon refuses, 125 for a wrong number of arguments.
    fails(&a, &["rename", "nosuch", "other"], 1, &["No such container"]);
    fails(&a, &["rename", "idle", "up"], 1, &["already in use", "Conflict"]);
    fails(&a, &["rename", "idle", "bad/name"], 1, &["Invalid container name"]);
    fails(&a, &["rename", "idle"], 125, &["requires exactly 2 arguments"]);

    // update: a size or number that does not parse is a flag error (125); a bad restart policy
    // or a missing container is the daemon's refusal (1).
    fails(&a, &["update", "-m", "bogus", "up"], 125, &["--memory"]);
    fails(&a, &["update", "--cpus", "many", "up"], 125, &["--cpus"]);
    fails(&a, &["update", "--pids-limit", "x", "up"], 125, &["--pids-limit"]);
    fails(&a, &["update", "--restart", "sometimes", "up"], 1, &["sometimes"]);
    fails(&a, &["update", "-m", "64m", "nosuch"], 1, &["No such container"]);
    assert_eq!(a.ok(&["update", "-m", "64m", "up"]).trim(), "up");

    // create: flags it cannot parse are 125 (berth's agent-side refusals stay 125 too, see
    // cli/run.rs `create`).
    fails(&a, &["create", "-m", "bogus", "busybox", "true"], 125, &["--memory"]);
    fails(&a, &["create", "--bogus", "busybox"], 125, &["unknown flag: --bogus"]);
    fails(&a, &["run", "--name", "up", "busybox", "true"], 125, &["already in use", "Conflict"]);

    a.ok(&["rm", "-f", "up", "idle"]);
}
