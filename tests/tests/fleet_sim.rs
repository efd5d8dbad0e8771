//! `berth-lab fleet-sim` (the simulated fleet of bench/rows/98-fleet-scale.sh) against the real
//! operator: `berth fleet push` on a real mosquitto to 20 simulated devices must complete as it
//! does against agents, every device reporting the tarball's digest; a push signed with a key the
//! devices do not trust is refused by every one of them; a group push finds every member through a
//! broker whose per-client queue is smaller than the group's retained states.
//!
//! Needs root (the broker helper's rule), mosquitto, mosquitto-clients and openssl (scripts/test
//! installs them), and the debug berth-lab (`cargo build --workspace --bins`; BERTH_LAB overrides).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_tests::fixtures::pseudo_random;
use berth_tests::mqtt::{root_of, state_of, Broker, Fleet, Subscriber};
use berth_tests::{poll, s, sha256_hex, workspace_root};

const DEVICES: usize = 20;
/// Upper bound of any wait: only a hung simulator, broker or push takes this long.
const PATIENCE: Duration = Duration::from_secs(120);

fn lab_bin() -> PathBuf {
    let p = std::env::var_os("BERTH_LAB").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target/debug/berth-lab"));
    assert!(p.is_file(), "{} is missing: cargo build --workspace --bins first (scripts/test does)", p.display());
    p
}

/// A running `berth-lab fleet-sim`, its stdout lines collected; killed (and reaped) on drop.
struct Sim {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sim {
    fn start(broker: &Broker, trust: &Path, group: &str) -> Sim {
        let mut child = Command::new(lab_bin())
            .args(["fleet-sim", "--mqtt", &broker.url(), "--devices", &DEVICES.to_string(), "--trust", s(trust), "--group", group])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start berth-lab fleet-sim: {e}"));
        let out = child.stdout.take().expect("stdout is piped");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let sim = Sim { child, lines };
        sim.wait_line(&format!("{DEVICES} devices online"));
        sim
    }

    fn wait_line(&self, text: &str) -> String {
        poll(&format!("fleet-sim to print {text:?}"), PATIENCE, || {
            self.lines.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|l| l.contains(text)).cloned()
        })
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids() -> Vec<String> {
    (1..=DEVICES).map(|i| format!("sim-{i}")).collect()
}

/// A real tar archive of pseudo-random bytes (the simulated devices hash it and load nothing).
fn tarball(dir: &Path) -> PathBuf {
    let src = dir.join("blob");
    std::fs::write(&src, pseudo_random(700_000, 21)).expect("write blob");
    let tar = dir.join("update.tar");
    let st = Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(dir).arg("blob").status().expect("run tar");
    assert!(st.success(), "tar -cf {} failed", tar.display());
    tar
}

/// Waits until every device's retained state satisfies `pred`; returns the states.
fn states(sub: &Subscriber, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
    poll(what, PATIENCE, || {
        let all: Vec<_> = ids().iter().map(|id| state_of(sub, id)).collect();
        all.iter().all(&pred).then_some(all)
    })
}

#[test]
fn a_push_to_twenty_simulated_devices_completes_with_the_right_digest_everywhere() {
    let broker = Broker::start();
    let fleet = Fleet::new(&broker, broker.dir());
    let tar = tarball(broker.dir());
    let digest = format!("sha256:{}", sha256_hex(&std::fs::read(&tar).expect("read the tarball")));
    let sub = broker.subscribe(&["berth/v1/+/state", "berth/v1/+/result", "berth/v1/+/update"], &[]);
    let sim = Sim::start(&broker, &fleet.public, "lab");
    // Small chunks: several per device, gaps and progress as in a real transfer.
    let (code, out, err) = fleet.run(&[
        "push",
        "--key",
        s(&fleet.key),
        "--group",
        "lab",
        "--chunk-size",
        "65536",
        "--health-window",
        "1",
        s(&tar),
        "--run",
        "--name app app:1",
    ]);
    assert_eq!(code, 0, "push to the simulated fleet failed:\nstdout: {out}\nstderr: {err}");
    for id in ids() {
        assert!(out.contains(&format!("{id}: committed app (")), "{id} did not commit:\n{out}\n{err}");
    }
    let update = out
        .lines()
        .find_map(|l| l.strip_prefix("update ").and_then(|r| r.split(':').next()))
        .unwrap_or_else(|| panic!("push named no update:\n{out}"))
        .to_string();
    let line = sim.wait_line(&format!("update {update}:"));
    assert!(line.contains(&format!("{DEVICES} committed, 0 refused, 0 failed")), "{line}");
    for id in ids() {
        let r = sub.latest(&format!("{}result", root_of(&id))).unwrap_or_else(|| panic!("no result from {id}")).json();
        assert_eq!(
            (r["id"].as_str(), r["result"].as_str(), r["image"].as_str()),
            (Some(update.as_str()), Some("committed"), Some(digest.as_str())),
            "{id}"
        );
    }
    // Each device's envelope is signed for it alone: its size does not grow with the fleet.
    for id in ids() {
        let env = sub.latest(&format!("{}update", root_of(&id))).unwrap_or_else(|| panic!("no envelope to {id}")).json();
        let m: serde_json::Value = serde_json::from_str(env["manifest"].as_str().unwrap_or_default()).expect("the manifest is JSON");
        assert_eq!((m["id"].as_str(), &m["targets"]), (Some(update.as_str()), &serde_json::json!([id])), "{id}: {m}");
    }
    let st =
        states(&sub, "every device's state to show the update committed", |s| s["seq"] == 1 && s["last_result"]["result"] == "committed");
    for s in st {
        assert_eq!(s["deployments"][0]["image_id"], digest.as_str(), "{s}");
        assert_eq!(s["deployments"][0]["update"], update.as_str(), "{s}");
        assert_eq!(s["simulated"], true, "{s}");
    }
}

/// A group's devices are found from their retained states, which the broker sends as one burst
/// when the push subscribes. On a broker whose per-client queue is smaller than that burst (here 10
/// queued and 2 in flight, for 20 devices' 40 retained messages) the push must still find every
/// member: at QoS 1 it found the first few, updated them, and exited 0.
#[test]
fn a_group_push_finds_every_member_through_a_broker_with_a_small_client_queue() {
    let broker = Broker::start_with_small_queues(10, 2);
    let fleet = Fleet::new(&broker, broker.dir());
    let tar = tarball(broker.dir());
    let _sim = Sim::start(&broker, &fleet.public, "lab");
    let (code, out, err) =
        fleet.run(&["push", "--key", s(&fleet.key), "--group", "lab", "--health-window", "1", s(&tar), "--run", "--name app app:1"]);
    assert_eq!(code, 0, "push to the simulated fleet failed:\nstdout: {out}\nstderr: {err}");
    for id in ids() {
        assert!(out.contains(&format!("{id}: committed app (")), "{id} was not updated:\n{out}\n{err}");
    }
}

#[test]
fn a_push_signed_with_an_untrusted_key_is_refused_by_every_simulated_device() {
    let broker = Broker::start();
    let fleet = Fleet::new(&broker, broker.dir());
    let rogue = Fleet::with_key_name(&broker, broker.dir(), "rogue.key");
    let tar = tarball(broker.dir());
    let sub = broker.subscribe(&["berth/v1/+/state", "berth/v1/+/result"], &[]);
    let _sim = Sim::start(&broker, &fleet.public, "lab");
    let (code, out, err) =
        rogue.run(&["push", "--key", s(&rogue.key), "--group", "lab", "--health-window", "1", s(&tar), "--run", "--name app app:1"]);
    assert_eq!(code, 1, "a push with an untrusted key did not fail:\nstdout: {out}\nstderr: {err}");
    for id in ids() {
        assert!(err.contains(&format!("{id}: refused: bad signature")), "{id} did not refuse:\n{err}");
        let r = sub.latest(&format!("{}result", root_of(&id))).unwrap_or_else(|| panic!("no result from {id}")).json();
        assert_eq!(r["result"], "refused", "{id}: {r}");
    }
    // Nothing was received: no device moved its sequence or holds a deployment.
    let st = states(&sub, "every device's state to show the refusal", |s| s["last_result"]["result"] == "refused");
    for s in st {
        assert_eq!((s["seq"].as_u64(), s["deployments"].as_array().map(Vec::len)), (Some(0), Some(0)), "{s}");
        assert!(s["update"].is_null(), "{s}");
    }
}
