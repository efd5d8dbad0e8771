//! End-to-end fleet updates over MQTT (issue 7, docs/update-protocol.md): a real mosquitto on a
//! free loopback port (plain or mutual TLS), real `berth agent`s each on its own `--root` and
//! device id, `berth fleet` as the operator, and docker-save tarballs made with umoci and skopeo
//! (the 3-layer `layered` fixture plus one layer per version: multi-layer images).
//!
//! What `berth fleet` never sends (bad signatures, replays, wrong digests, broken, duplicated and
//! shuffled chunks, oversized or concurrent updates) is built here with `berth::update::{wire,
//! sign}` and published with `mosquitto_pub`; those tests use no `berth fleet` at all.
//!
//! What the devices do is observed on the broker (`mosquitto_sub` on `berth/v1/#`, chunk topics
//! excluded) and on each device through its own socket (`ps`, `inspect`) and its root's files.
//!
//! Time: nothing asserts how fast anything is. Every wait is a bounded poll whose bound only a
//! hung agent reaches; health windows are short (2 s) to keep the suite quick.
//!
//! Needs root, mosquitto, mosquitto-clients, openssl, umoci, skopeo (scripts/test installs them);
//! every test fails loudly without them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use berth::update::sign::{self, SecretKey};
use berth::update::wire::{Chunk, CHUNK_HEADER};
use berth_tests::agent::{alive, host_shared, Agent};
use berth_tests::fixtures::read_archive;
use berth_tests::mqtt::{
    app_image, device, random_hex32, root_of, state_of, update_files, wait_online, wait_result, Broker, Crafted, Fleet, Subscriber,
};
use berth_tests::{require_root, s, Root};

/// Upper bound of any wait: only a hung or broken agent, broker or fleet command takes this long.
const PATIENCE: Duration = Duration::from_secs(120);

/// Health window of the pushes that should commit (seconds).
const WINDOW: u32 = 2;

/// A long-lived application: prints its version, then sleeps.
fn app_run(tag: &str) -> String {
    format!("--name app --restart always app:{tag} sh -c 'echo started-{tag}; cat /app/version; exec sleep 100000'")
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Calls `f` every 100 ms until it returns `Some`, for up to `timeout`; panics naming `what`.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: still not the case after {timeout:?}");
        sleep_ms(100);
    }
}

/// The image ID (`sha256:...`) of a one-image archive, from the JSON inside it.
fn image_id(tar: &Path) -> String {
    read_archive(tar)[0].id.clone()
}

fn diff_ids(tar: &Path) -> Vec<String> {
    read_archive(tar)[0].diff_ids.clone()
}

/// `inspect` of a container as JSON, or `None` if berth does not know it (right now).
fn try_inspect(a: &Agent, name: &str) -> Option<Value> {
    let (code, out, _) = a.code(&["inspect", "--type", "container", name]);
    if code != 0 {
        return None;
    }
    let v: Value = serde_json::from_str(&out).ok()?;
    v.as_array().and_then(|a| a.first().cloned())
}

/// What the test remembers of a running container.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Running {
    id: String,
    pid: u64,
    image: String,
}

/// Waits until container `name` runs image `image_id`; returns its id, pid and image.
fn wait_running(a: &Agent, name: &str, image_id: &str) -> Running {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = try_inspect(a, name);
        if let Some(v) = &v {
            if v["State"]["Status"] == "running" && v["Image"] == image_id {
                let pid = v["State"]["Pid"].as_u64().unwrap_or(0);
                assert!(pid > 0 && alive(pid as u32), "{name} is said to run with pid {pid}, which is not alive");
                return Running { id: v["Id"].as_str().unwrap_or_default().to_string(), pid, image: image_id.to_string() };
            }
        }
        if Instant::now() > deadline {
            let ps = a.cmd(&["ps", "-a", "--no-trunc"]);
            panic!(
                "container {name} does not run image {image_id} after {PATIENCE:?}; inspect: {}\nps -a:\n{}\nagent log:\n{}",
                v.map(|v| format!("status {} image {}", v["State"]["Status"], v["Image"])).unwrap_or_else(|| "no such container".into()),
                String::from_utf8_lossy(&ps.stdout),
                a.log()
            );
        }
        sleep_ms(100);
    }
}

/// The same container as before, untouched: same id, same process, still running.
fn assert_untouched(a: &Agent, name: &str, before: &Running, after_what: &str) {
    let v = try_inspect(a, name).unwrap_or_else(|| panic!("after {after_what}: container {name} is gone\nagent log:\n{}", a.log()));
    let now = Running {
        id: v["Id"].as_str().unwrap_or_default().to_string(),
        pid: v["State"]["Pid"].as_u64().unwrap_or(0),
        image: v["Image"].as_str().unwrap_or_default().to_string(),
    };
    assert_eq!(&now, before, "after {after_what}: container {name} changed (status {})", v["State"]["Status"]);
    assert_eq!(v["State"]["Status"], "running", "after {after_what}: {name} is not running");
    assert!(alive(before.pid as u32), "after {after_what}: {name}'s process {} is gone", before.pid);
}

/// Names of all containers (`ps -a`), sorted.
fn names(a: &Agent) -> Vec<String> {
    let mut v: Vec<String> = a.ps_all().iter().map(|r| r["Names"].as_str().unwrap_or("?").to_string()).collect();
    v.sort();
    v
}

/// A broker, the operator's key, and a subscriber on every device topic (chunks excluded).
/// Field order is drop order: the subscriber goes before the broker.
struct Lab {
    sub: Subscriber,
    fleet: Fleet,
    broker: Broker,
}

fn lab(tls: bool) -> Lab {
    require_root();
    let broker = if tls { Broker::start_tls() } else { Broker::start() };
    let fleet = Fleet::new(&broker, broker.dir());
    let sub = broker.subscribe(&["berth/v1/#"], &["berth/v1/updates/#"]);
    Lab { sub, fleet, broker }
}

impl Lab {
    /// An agent for device `id` trusting the fleet key, once it said `online`.
    fn device(&self, id: &str, extra: &[&str]) -> Agent {
        let a = device(&self.broker, id, &self.fleet.public, extra);
        self.online(&a, id);
        a
    }

    fn online(&self, a: &Agent, id: &str) {
        let topic = format!("{}status", root_of(id));
        let deadline = Instant::now() + PATIENCE;
        while !self.sub.messages().iter().any(|m| m.topic == topic && m.payload == "online") {
            assert!(Instant::now() < deadline, "device {id} never published a retained online on {topic}\nagent log:\n{}", a.log());
            sleep_ms(50);
        }
    }

    /// Waits for a `state` of `id` at or after `mark` that `pred` accepts.
    fn wait_state(&self, mark: usize, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let topic = format!("{}state", root_of(id));
        self.sub.wait_from(mark, &format!("{id}: state {what}"), PATIENCE, |m| m.topic == topic && pred(&m.json_or_null())).json()
    }
}

/// The state's deployment record of container `name`.
fn deployment<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["deployments"].as_array()?.iter().find(|d| d["name"] == name)
}

fn has_str(list: &Value, want: &str) -> bool {
    list.as_array().is_some_and(|l| l.iter().any(|x| x == want))
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// The harness itself (no berth involved): a wrong broker setup must fail here, not in berth's tests.

#[test]
fn harness_brokers_relay_messages_require_client_certs_and_restart_on_the_same_port() {
    let _h = host_shared();
    require_root();
    let mut plain = Broker::start();
    let sub = plain.subscribe(&["t/#"], &["t/skip/#"]);
    let mark = sub.mark();
    plain.publish("t/skip/x", b"no", false);
    plain.publish("t/a", b"{\"x\":1}", false);
    let m = sub.wait_from(mark, "t/a", PATIENCE, |m| m.topic == "t/a");
    assert_eq!(m.json()["x"], 1);
    assert!(sub.on("t/skip/x", mark).is_empty(), "excluded topic delivered");
    drop(sub);
    let port = plain.port();
    plain.publish("t/retained", b"r1", true);
    plain.restart();
    assert_eq!(plain.port(), port);
    let sub = plain.subscribe(&["t/#"], &[]);
    plain.publish("t/b", b"after restart", false);
    sub.wait_from(0, "t/b after a restart", PATIENCE, |m| m.topic == "t/b" && m.payload == "after restart");
    assert!(sub.on("t/retained", 0).is_empty(), "persistence false: retained messages do not survive a restart");

    let tls = Broker::start_tls();
    let sub = tls.subscribe(&["t/#"], &[]);
    tls.publish("t/c", b"over tls", false);
    sub.wait_from(0, "t/c over TLS", PATIENCE, |m| m.payload == "over tls");
    // Without a client certificate the broker refuses the connection.
    let out = berth_tests::run(
        std::process::Command::new("mosquitto_pub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &tls.port().to_string(),
            "--cafile",
            s(&tls.pki().ca),
            "-t",
            "t/d",
            "-m",
            "x",
        ]),
        berth_tests::Stdin::Null,
    );
    assert!(!out.status.success(), "mosquitto_pub without a client certificate was accepted by the mutual-TLS broker");
}

#[test]
fn harness_app_images_are_distinct_multi_layer_docker_archives_berth_loads() {
    let _h = host_shared();
    require_root();
    let (v1, v2) = (app_image("1", 0), app_image("2", 0));
    let (i1, i2) = (read_archive(&v1), read_archive(&v2));
    assert_eq!((i1.len(), i2.len()), (1, 1));
    assert_ne!(i1[0].id, i2[0].id, "two versions with one image ID");
    assert_eq!(i1[0].tags, vec!["app:1".to_string()]);
    assert!(i1[0].diff_ids.len() >= 4, "app:1 has {} layers", i1[0].diff_ids.len());
    assert_eq!(i1[0].diff_ids[..3], i2[0].diff_ids[..3], "versions share the layered fixture's layers");
    let root = Root::new();
    for (tar, img) in [(&v1, &i1[0]), (&v2, &i2[0])] {
        let out = root.ok(&["load", "-i", s(tar)]);
        assert!(out.contains(&img.tags[0]), "berth load {}: {out}", tar.display());
    }
}

// ---------------------------------------------------------------------------------------------
// berth fleet push: several devices at once, commit, then a failing image rolls them all back.

#[test]
fn push_multi_layer_image_to_three_devices_commits_then_failing_image_rolls_all_back() {
    let _h = host_shared();
    let lab = lab(false);
    let ids = ["m-dev1", "m-dev2", "m-dev3"];
    let agents: Vec<Agent> = ids.iter().map(|id| lab.device(id, &[])).collect();
    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    let v1_layers = diff_ids(&v1);
    assert!(v1_layers.len() >= 4, "the test image has {} layers, expected a multi-layer image", v1_layers.len());

    let mark = lab.sub.mark();
    let out = lab.fleet.push_ok(&ids, &v1, WINDOW, &app_run("1"));
    let mut first = Vec::new();
    for (id, a) in ids.iter().zip(&agents) {
        assert!(out.contains(id), "push output does not name device {id}:\n{out}");
        let r = wait_result(&lab.sub, mark, id, None, PATIENCE);
        assert_eq!(r["result"], "committed", "{id}: result {r}");
        assert_eq!(r["image"], v1_id.as_str(), "{id}: result image {r}");
        let seq = r["seq"].as_u64().unwrap_or_else(|| panic!("{id}: result without a numeric seq: {r}"));
        let running = wait_running(a, "app", &v1_id);
        let ps: Vec<Value> = a.ps_all().into_iter().filter(|c| c["Names"] == "app").collect();
        assert_eq!(ps.len(), 1, "{id}: ps -a lists app {} times: {ps:?}", ps.len());
        assert_eq!(ps[0]["State"], "running", "{id}: ps: {:?}", ps[0]);
        assert_eq!(ps[0]["Image"], "app:1", "{id}: ps: {:?}", ps[0]);
        let logs = a.ok(&["logs", "app"]);
        assert!(logs.contains("started-1"), "{id}: the new container's output is not in its logs: {logs:?}");
        // Retained state: the image, its layers, the deployment and its seq.
        let st = lab.wait_state(mark, id, "showing the committed deployment", |st| {
            deployment(st, "app").is_some_and(|d| d["image_id"] == v1_id.as_str()) && st["seq"].as_u64() == Some(seq)
        });
        assert!(has_str(&st["images"], &v1_id), "{id}: state images lack {v1_id}: {st}");
        for l in &v1_layers {
            assert!(has_str(&st["layers"], l), "{id}: state layers lack {l}: {st}");
        }
        let c = st["containers"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "app").cloned());
        let c = c.unwrap_or_else(|| panic!("{id}: state containers lack app: {st}"));
        assert_eq!(c["status"], "running", "{id}: {st}");
        assert_eq!(c["image_id"], v1_id.as_str(), "{id}: {st}");
        assert_eq!(st["device"], *id, "{id}: {st}");
        assert_eq!(st["last_result"]["result"], "committed", "{id}: {st}");
        // It is retained: a new subscriber gets it at once.
        let late = lab.broker.subscribe(&[&format!("{}state", root_of(id))], &[]);
        let kept = late.wait_from(0, &format!("{id}: retained state"), PATIENCE, |m| m.retained);
        assert_eq!(kept.json()["seq"].as_u64(), Some(seq), "{id}: retained state: {}", kept.payload);
        drop(late);
        first.push(running);
    }

    // v2 exits at once with code 7: every device rolls back to v1, the same container.
    let v2 = app_image("2", 0);
    let v2_id = image_id(&v2);
    let mark = lab.sub.mark();
    let (code, out, err) = lab.fleet.push(&ids, &v2, WINDOW, "--name app --restart always app:2 sh -c 'echo dying; exit 7'");
    assert_ne!(code, 0, "push of an image that exits at once ended with exit 0:\nstdout: {out}\nstderr: {err}");
    let text = format!("{out}\n{err}");
    for id in ids {
        assert!(text.contains(id), "the failed push does not name device {id}:\n{text}");
    }
    assert!(lower(&text).contains("roll"), "the failed push does not say the devices rolled back:\n{text}");
    for ((id, a), before) in ids.iter().zip(&agents).zip(&first) {
        let r = wait_result(&lab.sub, mark, id, None, PATIENCE);
        assert_eq!(r["result"], "rolled_back", "{id}: result {r}");
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(reason.contains('7') && lower(reason).contains("exit"), "{id}: the reason does not give the exit code 7: {r}");
        assert_eq!(r["image"], v1_id.as_str(), "{id}: after the rollback the result names the running image: {r}");
        let now = wait_running(a, "app", &v1_id);
        assert_eq!(now.id, before.id, "{id}: the rollback did not restart the previous container (a new one runs)");
        assert_eq!(names(a), vec!["app".to_string()], "{id}: containers left after the rollback");
        assert_ne!(v2_id, v1_id);
        let st = lab.wait_state(mark, id, "after the rollback", |st| st["last_result"]["result"] == "rolled_back");
        let d = deployment(&st, "app").unwrap_or_else(|| panic!("{id}: no deployment of app: {st}"));
        assert_eq!(d["image_id"], v1_id.as_str(), "{id}: deployment after the rollback: {st}");
    }
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS, berth.toml and groups.

#[test]
fn mutual_tls_push_commits_and_an_agent_without_a_client_cert_stays_offline() {
    let _h = host_shared();
    let lab = lab(true);
    let a = lab.device("tls-a", &[]);
    // tls-b takes everything from berth.toml: broker, device id, TLS files, trusted key, group.
    let pki = lab.broker.pki();
    let cert = pki.client("tls-b");
    let cfg = lab.broker.dir().join("tls-b.toml");
    fs::write(
        &cfg,
        format!(
            "[mqtt]\nbrokers = [\"{}\"]\ndevice_id = \"tls-b\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\ngroups = [\"lab\"]\n\
             [update]\ntrusted_keys = [\"{}\"]\n",
            lab.broker.url(),
            s(&pki.ca),
            s(&cert.cert),
            s(&cert.key),
            s(&lab.fleet.public)
        ),
    )
    .expect("write tls-b.toml");
    let b = Agent::start_with(Root::new(), &[], &["--config", s(&cfg)]);
    lab.online(&b, "tls-b");

    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    let mark = lab.sub.mark();
    let args = lab.fleet.push_args(&["tls-a"], &v1, WINDOW, &app_run("1"));
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.splice(1..1, ["--group", "lab"]);
    let (code, out, err) = lab.fleet.run(&args);
    assert_eq!(code, 0, "push over mutual TLS to tls-a and group lab: exit {code}\nstdout: {out}\nstderr: {err}");
    for (id, ag) in [("tls-a", &a), ("tls-b", &b)] {
        let r = wait_result(&lab.sub, mark, id, None, PATIENCE);
        assert_eq!(r["result"], "committed", "{id}: {r}");
        wait_running(ag, "app", &v1_id);
    }

    // No client certificate: the broker refuses it; the agent says why and keeps serving locally.
    let url = lab.broker.url();
    let n = Agent::start_with(
        Root::new(),
        &[],
        &["--mqtt", &url, "--device-id", "tls-nocert", "--trust", s(&lab.fleet.public), "--mqtt-ca", s(&pki.ca)],
    );
    let log = poll("the agent without a client certificate logs its failed connection", PATIENCE, || {
        let l = n.log();
        let ll = lower(&l);
        (["certificate", "tls", "handshake", "alert", "connection", "connect"].iter().any(|w| ll.contains(w))).then_some(l)
    });
    assert!(!log.trim().is_empty());
    let (code, _, err) = n.code(&["ps"]);
    assert_eq!(code, 0, "the agent without a broker no longer serves its socket: {err}\nlog:\n{}", n.log());
    // It never got online; the broker saw a client without a certificate.
    let topic = format!("{}status", root_of("tls-nocert"));
    assert!(
        !lab.sub.messages().iter().any(|m| m.topic == topic && m.payload == "online"),
        "an agent without a client certificate got online on a require_certificate broker"
    );
    let blog = lower(&lab.broker.log());
    assert!(
        blog.contains("certificate") || blog.contains("ssl") || blog.contains("tls"),
        "the broker log shows no refused TLS client:\n{blog}"
    );
}

// ---------------------------------------------------------------------------------------------
// New versions that fail in other ways: OOM-killed, health check failing.

#[test]
fn oom_killed_new_version_is_rolled_back_with_oom_as_the_reason() {
    let _h = host_shared();
    let lab = lab(false);
    let a = lab.device("oom-dev", &[]);
    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    lab.fleet.push_ok(&["oom-dev"], &v1, WINDOW, &app_run("1"));
    let before = wait_running(&a, "app", &v1_id);

    // The command really is OOM-killed under -m 8m (busybox dd allocates its 64 MiB block).
    let hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];
    let mut args = vec!["run", "-d", "--name", "oomcheck", "-m", "8m", "app:1"];
    args.extend_from_slice(&hog);
    a.ok(&args);
    poll("oomcheck exits", PATIENCE, || (a.inspect_f("oomcheck", "{{.State.Status}}") == "exited").then_some(()));
    let oom = a.inspect("oomcheck");
    assert_eq!(oom["State"]["OOMKilled"], true, "the OOM command was not OOM-killed here, the test proves nothing: {}", oom["State"]);
    a.ok(&["rm", "oomcheck"]);

    let v3 = app_image("3", 0);
    let mark = lab.sub.mark();
    let (code, out, err) = lab.fleet.push(&["oom-dev"], &v3, WINDOW, &format!("--name app -m 8m app:3 {}", hog.join(" ")));
    assert_ne!(code, 0, "push of an OOM-killed version exited 0:\nstdout: {out}\nstderr: {err}");
    let r = wait_result(&lab.sub, mark, "oom-dev", None, PATIENCE);
    assert_eq!(r["result"], "rolled_back", "{r}");
    let reason = lower(r["reason"].as_str().unwrap_or_default());
    assert!(reason.contains("oom") || reason.contains("out of memory"), "the reason does not say OOM: {r}");
    let now = wait_running(&a, "app", &v1_id);
    assert_eq!(now.id, before.id, "rolled back to a different container");
    assert_eq!(names(&a), vec!["app".to_string()]);
}

#[test]
fn failing_health_check_is_rolled_back_with_its_output_as_the_reason() {
    let _h = host_shared();
    let lab = lab(false);
    let a = lab.device("hc-dev", &[]);
    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    lab.fleet.push_ok(&["hc-dev"], &v1, WINDOW, &app_run("1"));
    let before = wait_running(&a, "app", &v1_id);

    let v4 = app_image("4", 0);
    let mark = lab.sub.mark();
    let run = "--name app --restart always --health-cmd 'echo sensor-not-ready; exit 1' --health-interval 1s --health-retries 1 \
               app:4 sleep 100000";
    let (code, out, err) = lab.fleet.push(&["hc-dev"], &v4, 4, run);
    assert_ne!(code, 0, "push of a version failing its health check exited 0:\nstdout: {out}\nstderr: {err}");
    let r = wait_result(&lab.sub, mark, "hc-dev", None, PATIENCE);
    assert_eq!(r["result"], "rolled_back", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("sensor-not-ready"), "the reason does not carry the health check's output: {r}");
    let now = wait_running(&a, "app", &v1_id);
    assert_eq!(now.id, before.id, "rolled back to a different container");
    assert_eq!(names(&a), vec!["app".to_string()]);
}

// ---------------------------------------------------------------------------------------------
// Hand-made messages: a device with v1 deployed by the test itself (no berth fleet involved).

struct Bench {
    sub: Subscriber,
    broker: Broker,
    key: SecretKey,
    /// A key the device does not trust.
    other: SecretKey,
    public: PathBuf,
}

fn bench() -> Bench {
    require_root();
    let broker = Broker::start();
    let k = broker.dir().join("k.pem");
    sign::keygen(&k).expect("make the update key");
    let o = broker.dir().join("other.pem");
    sign::keygen(&o).expect("make another key");
    let key = SecretKey::load(&k).expect("load the update key");
    let other = SecretKey::load(&o).expect("load the other key");
    let sub = broker.subscribe(&["berth/v1/#"], &["berth/v1/updates/#"]);
    Bench { sub, broker, key, other, public: broker_pub(&k) }
}

fn broker_pub(k: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", s(k)))
}

const RUN1: &[&str] = &["--name", "app", "--restart", "always", "app:1", "sleep", "100000"];

impl Bench {
    /// Device `id` with v1 (seq 1) deployed by hand and running; returns the agent, the running
    /// container and the files under `<root>/updates` then.
    fn device_with_v1(&self, id: &str, extra: &[&str]) -> (Agent, Running) {
        let a = device(&self.broker, id, &self.public, extra);
        wait_online(&self.sub, id, PATIENCE);
        let tar = fs::read(app_image("1", 0)).expect("read app:1");
        let v1 = Crafted::deploy(&self.key, 1, &[id], &tar, 0, RUN1, WINDOW);
        let r = v1.deliver(&self.broker, &self.sub, id, PATIENCE);
        assert_eq!(r["result"], "committed", "{id}: v1 by hand: {r}\nagent log:\n{}", a.log());
        let running = wait_running(&a, "app", &image_id(&app_image("1", 0)));
        (a, running)
    }

    /// Sends a whole envelope and waits for its result.
    fn refused(&self, c: &Crafted, dev: &str, words: &[&str]) -> Value {
        let mark = self.sub.mark();
        c.send_envelope(&self.broker, dev);
        // Its id, or none (an agent may not echo the id of a manifest it cannot trust).
        let topic = format!("{}result", root_of(dev));
        let r = self
            .sub
            .wait_from(mark, &format!("{dev}: result of update {}", c.id()), PATIENCE, |m| {
                let id = m.json_or_null()["id"].clone();
                m.topic == topic && (id == c.id() || id.is_null() || id == "")
            })
            .json();
        assert_eq!(r["result"], "refused", "{dev}: update {}: {r}", c.id());
        let reason = lower(r["reason"].as_str().unwrap_or_default());
        assert!(words.iter().any(|w| reason.contains(w)), "{dev}: the reason does not say why (one of {words:?}): {r}");
        // Nothing was downloaded: the device never reported progress for it.
        let progress = self.sub.on(&format!("{}progress", root_of(dev)), mark);
        assert!(
            !progress.iter().any(|m| m.json_or_null()["id"] == c.id()),
            "{dev}: progress for a refused update: {:?}",
            progress.iter().map(|m| m.payload.clone()).collect::<Vec<_>>()
        );
        r
    }
}

/// Files under `<root>/updates` that hold data (journal and small bookkeeping aside).
fn update_data(a: &Agent) -> BTreeSet<String> {
    update_files(a.root().path())
        .into_iter()
        .filter(|(n, len)| !n.contains("journal") && *len > 4096)
        .map(|(n, l)| format!("{n} ({l} bytes)"))
        .collect()
}

#[test]
fn bad_signature_tampering_replay_and_wrong_target_are_refused_and_nothing_is_downloaded() {
    let _h = host_shared();
    let b = bench();
    let (a, before) = b.device_with_v1("sig-dev", &[]);
    let files = update_files(a.root().path());
    let tar = fs::read(app_image("2", 0)).expect("read app:2");
    let run2 = ["--name", "app", "--restart", "always", "app:2", "sleep", "100000"];

    // Signed by a key the device does not trust.
    let c = Crafted::deploy(&b.other, 2, &["sig-dev"], &tar, 0, &run2, WINDOW);
    b.refused(&c, "sig-dev", &["signature"]);
    // Signed, then changed (seq raised): the signature no longer matches.
    let mut t = Crafted::deploy(&b.key, 2, &["sig-dev"], &tar, 0, &run2, WINDOW);
    let mut env: Value = serde_json::from_slice(&t.envelope).expect("envelope JSON");
    let tampered = t.text.replace("\"seq\":2", "\"seq\":3");
    assert_ne!(tampered, t.text);
    env["manifest"] = Value::String(tampered);
    t.envelope = serde_json::to_vec(&env).expect("envelope");
    b.refused(&t, "sig-dev", &["signature"]);
    // A replay: v1's seq again, correctly signed (a new id), and a deploy with seq 1 re-sent.
    let replay = Crafted::deploy(&b.key, 1, &["sig-dev"], &tar, 0, &run2, WINDOW);
    b.refused(&replay, "sig-dev", &["replay", "seq", "sequence"]);
    // Not a target.
    let other_dev = Crafted::deploy(&b.key, 5, &["someone-else"], &tar, 0, &run2, WINDOW);
    b.refused(&other_dev, "sig-dev", &["target", "not for"]);

    assert_untouched(&a, "app", &before, "the refused updates");
    assert_eq!(update_files(a.root().path()), files, "refused updates changed <root>/updates");
    assert!(update_data(&a).is_empty(), "data under <root>/updates after refused updates: {:?}", update_data(&a));
    let st = state_of(&b.sub, "sig-dev");
    assert_eq!(st["seq"], 1, "refused updates changed the device's seq: {st}");
    // A correctly signed update with a higher seq is still taken after all that.
    let good = Crafted::deploy(&b.key, 2, &["sig-dev"], &tar, 0, &run2, WINDOW);
    let r = good.deliver(&b.broker, &b.sub, "sig-dev", PATIENCE);
    assert_eq!(r["result"], "committed", "{r}");
    wait_running(&a, "app", &image_id(&app_image("2", 0)));
}

#[test]
fn oversized_updates_are_refused_before_anything_is_downloaded() {
    let _h = host_shared();
    let b = bench();
    let cfg = b.broker.dir().join("max.toml");
    fs::write(&cfg, "[update]\nmax_size = \"8m\"\n").expect("write max.toml");
    let (a, before) = b.device_with_v1("big-dev", &["--config", s(&cfg)]);
    let files = update_files(a.root().path());
    let tar = fs::read(app_image("2", 0)).expect("read app:2");
    let run2 = ["--name", "app", "app:2", "sleep", "100000"];

    // Far above the free disk (3 TiB in 1 MiB chunks).
    let mut huge = Crafted::deploy(&b.key, 2, &["big-dev"], &tar, 1 << 20, &run2, WINDOW).manifest;
    huge.image.as_mut().expect("image").size = 3 << 40;
    let huge = Crafted::signed(&b.key, huge, tar.clone());
    let mark = b.sub.mark();
    b.refused(&huge, "big-dev", &["disk", "space", "large", "size"]);
    // Chunks sent anyway reach nobody who stores them.
    huge.send(&b.broker, &[0]);
    // Above max_size (8m) but far below the free disk.
    let mut over = Crafted::deploy(&b.key, 3, &["big-dev"], &tar, 0, &run2, WINDOW).manifest;
    over.image.as_mut().expect("image").size = 64 << 20;
    let over = Crafted::signed(&b.key, over, tar.clone());
    b.refused(&over, "big-dev", &["large", "size", "max"]);

    assert_untouched(&a, "app", &before, "oversized updates");
    assert_eq!(update_files(a.root().path()), files, "refused updates changed <root>/updates");
    assert!(update_data(&a).is_empty(), "data under <root>/updates: {:?}", update_data(&a));
    assert!(b.sub.on(&format!("{}progress", root_of("big-dev")), mark).is_empty(), "progress after refused updates:\n{}", b.sub.dump(mark));
}

#[test]
fn digest_mismatch_after_transfer_is_not_applied() {
    let _h = host_shared();
    let b = bench();
    let (a, before) = b.device_with_v1("sha-dev", &[]);
    let tar = fs::read(app_image("2", 0)).expect("read app:2");
    let run2 = ["--name", "app", "app:2", "sleep", "100000"];
    // Every chunk is sound on its own; the manifest names the sha256 of other bytes.
    let mut m = Crafted::deploy(&b.key, 2, &["sha-dev"], &tar, 0, &run2, WINDOW).manifest;
    let mut other = tar.clone();
    other[0] ^= 0xff;
    m.image.as_mut().expect("image").sha256 = berth_tests::sha256_hex(&other);
    let c = Crafted::signed(&b.key, m, tar);
    let r = c.deliver(&b.broker, &b.sub, "sha-dev", PATIENCE);
    // Not a refusal before download (the manifest is fine), nothing applied: `failed` per the
    // protocol ("could not be applied ... the old version kept running"); `refused` is accepted
    // as the only other outcome that means nothing was done.
    assert!(r["result"] == "failed" || r["result"] == "refused", "digest mismatch: {r}");
    let reason = lower(r["reason"].as_str().unwrap_or_default());
    assert!(reason.contains("sha256") || reason.contains("digest"), "the reason does not name the digest: {r}");
    assert_untouched(&a, "app", &before, "a digest mismatch");
    assert_eq!(names(&a), vec!["app".to_string()]);
    let images = a.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains("app:2"), "the mismatching tarball was loaded anyway:\n{images}");
    // The bad download is not kept (it can never verify).
    poll("the mismatching tarball is removed from <root>/updates", PATIENCE, || update_data(&a).is_empty().then_some(()));
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn broken_chunks_are_dropped_and_shuffled_duplicated_chunks_still_commit() {
    let _h = host_shared();
    let b = bench();
    let (a, before) = b.device_with_v1("chunk-dev", &[]);
    let v2 = app_image("2", 0);
    let tar = fs::read(&v2).expect("read app:2");
    let run2 = ["--name", "app", "--restart", "always", "app:2", "sleep", "100000"];
    let c = Crafted::deploy(&b.key, 2, &["chunk-dev"], &tar, 64 * 1024, &run2, WINDOW);
    let n = c.count();
    assert!(n >= 8, "{n} chunks: the image is too small for this test");
    let mark = b.sub.mark();
    c.send_envelope(&b.broker, "chunk-dev");
    c.wait_receiving(&b.sub, mark, "chunk-dev", PATIENCE);

    let cs = 64 * 1024;
    let data = |i: u32| &tar[i as usize * cs..((i as usize + 1) * cs).min(tar.len())];
    let mut bad: Vec<Vec<u8>> = Vec::new();
    // Wrong size for its index (its own digest is right): one byte short, one byte long.
    bad.push(Chunk::encode(c.id(), 0, n, &data(0)[..cs - 1]));
    let mut long = data(1).to_vec();
    long.push(0);
    bad.push(Chunk::encode(c.id(), 1, n, &long));
    // The last chunk padded to a full chunk.
    let mut last = data(n - 1).to_vec();
    last.resize(cs, 0);
    bad.push(Chunk::encode(c.id(), n - 1, n, &last));
    // Index out of range, wrong count, another update's id.
    bad.push(Chunk::encode(c.id(), n, n + 1, data(2)));
    bad.push(Chunk::encode(c.id(), 2, n + 1, data(2)));
    bad.push(Chunk::encode(&random_hex32(), 3, n, data(3)));
    // Data that does not match its digest; a header cut short; no magic.
    let mut flipped = c.chunk(4);
    *flipped.last_mut().expect("chunk has data") ^= 1;
    bad.push(flipped);
    bad.push(c.chunk(5)[..CHUNK_HEADER - 1].to_vec());
    let mut nomagic = c.chunk(6);
    nomagic[0] = b'X';
    bad.push(nomagic);
    c.send_raw(&b.broker, &bad);

    // Then every chunk, shuffled, a third of them twice.
    let mut order: Vec<u32> = (0..n).chain((0..n).filter(|i| i % 3 == 0)).collect();
    let mut st = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..order.len()).rev() {
        let j = (xorshift(&mut st) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    c.send(&b.broker, &order);
    let r = c.finish(&b.broker, &b.sub, mark, "chunk-dev", PATIENCE);
    assert_eq!(r["result"], "committed", "{r}\nagent log:\n{}", a.log());
    let now = wait_running(&a, "app", &image_id(&v2));
    assert_ne!(now.id, before.id);
}

#[test]
fn second_update_during_an_apply_is_refused_busy() {
    let _h = host_shared();
    let b = bench();
    let (a, _) = b.device_with_v1("busy-dev", &[]);
    let v2 = app_image("2", 0);
    let v2_id = image_id(&v2);
    let tar2 = fs::read(&v2).expect("read app:2");
    let run2 = ["--name", "app", "--restart", "always", "app:2", "sleep", "100000"];
    // A long health window: the apply lasts at least that long.
    let c2 = Crafted::deploy(&b.key, 2, &["busy-dev"], &tar2, 0, &run2, 10);
    let mark = b.sub.mark();
    c2.send_envelope(&b.broker, "busy-dev");
    c2.wait_receiving(&b.sub, mark, "busy-dev", PATIENCE);
    c2.send(&b.broker, &(0..c2.count()).collect::<Vec<_>>());
    // The new container runs and no result has come yet: the device is in its health window.
    wait_running(&a, "app", &v2_id);
    assert!(
        !b.sub.on(&format!("{}result", root_of("busy-dev")), mark).iter().any(|m| m.json_or_null()["id"] == c2.id()),
        "v2 already has a result: the window is too short for this test"
    );
    let tar3 = fs::read(app_image("3", 0)).expect("read app:3");
    let c3 = Crafted::deploy(&b.key, 3, &["busy-dev"], &tar3, 0, &["--name", "app", "app:3", "sleep", "100000"], WINDOW);
    b.refused(&c3, "busy-dev", &["busy"]);
    let r2 = wait_result(&b.sub, mark, "busy-dev", Some(c2.id()), PATIENCE);
    assert_eq!(r2["result"], "committed", "the update being applied: {r2}");
    wait_running(&a, "app", &v2_id);
    let st = b.sub.wait_from(mark, "state with seq 2", PATIENCE, |m| {
        m.topic == format!("{}state", root_of("busy-dev")) && m.json_or_null()["seq"] == 2
    });
    assert_eq!(st.json()["seq"], 2);
}

// ---------------------------------------------------------------------------------------------
// Rollback: by the fleet, and locally over the agent's socket with no broker.

#[test]
fn fleet_rollback_and_local_rollback_bring_back_the_previous_version() {
    let _h = host_shared();
    let mut lab = lab(false);
    let ra = lab.device("rb-a", &[]);
    let rb = lab.device("rb-b", &[]);
    let v1 = app_image("1", 0);
    let v2 = app_image("2", 0);
    let (v1_id, v2_id) = (image_id(&v1), image_id(&v2));
    lab.fleet.push_ok(&["rb-a", "rb-b"], &v1, WINDOW, &app_run("1"));
    let first_a = wait_running(&ra, "app", &v1_id);
    lab.fleet.push_ok(&["rb-a", "rb-b"], &v2, WINDOW, &app_run("2"));
    wait_running(&ra, "app", &v2_id);
    wait_running(&rb, "app", &v2_id);

    let mark = lab.sub.mark();
    let key = s(&lab.fleet.key).to_string();
    let (code, out, err) = lab.fleet.run(&["rollback", "--key", &key, "--to", "rb-a"]);
    assert_eq!(code, 0, "fleet rollback --to rb-a: exit {code}\nstdout: {out}\nstderr: {err}");
    let back = wait_running(&ra, "app", &v1_id);
    assert_eq!(back.id, first_a.id, "the rollback started another container than the kept v1");
    let r = wait_result(&lab.sub, mark, "rb-a", None, PATIENCE);
    assert_eq!(r["image"], v1_id.as_str(), "rollback result: {r}");
    assert!(r["result"] != "refused" && r["result"] != "failed", "rollback result: {r}");
    // rb-b was not a target.
    wait_running(&rb, "app", &v2_id);

    // Locally, with the broker gone.
    lab.broker.stop();
    let (code, status, err) = rb.code(&["deployment", "status"]);
    assert_eq!(code, 0, "deployment status: {err}");
    assert!(status.contains("app"), "deployment status does not list app:\n{status}");
    assert!(status.contains("app:2") || status.contains(&v2_id["sha256:".len()..][..12]), "deployment status does not show v2:\n{status}");
    let (code, out, err) = rb.code(&["rollback", "app"]);
    assert_eq!(code, 0, "berth rollback app with no broker: exit {code}\nstdout: {out}\nstderr: {err}");
    wait_running(&rb, "app", &v1_id);
    let status = rb.ok(&["deployment", "status"]);
    assert!(status.contains("app:1") || status.contains(&v1_id["sha256:".len()..][..12]), "deployment status after rollback:\n{status}");
    assert!(names(&rb).contains(&"app".to_string()));
}

// ---------------------------------------------------------------------------------------------
// The agent killed in the middle of a transfer resumes it.

#[test]
fn agent_killed_mid_transfer_resumes_and_the_push_commits() {
    let _h = host_shared();
    let lab = lab(false);
    let mut a = lab.device("kill-dev", &[]);
    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    lab.fleet.push_ok(&["kill-dev"], &v1, WINDOW, &app_run("1"));
    let before = wait_running(&a, "app", &v1_id);

    // 32 MiB of incompressible bytes: hundreds of 96 KiB chunks.
    let big = app_image("big", 32 << 20);
    let big_id = image_id(&big);
    let mark = lab.sub.mark();
    let mut push = lab.fleet.spawn_push(&["kill-dev"], &big, WINDOW, &app_run("big"));
    let topic = format!("{}progress", root_of("kill-dev"));
    let p = lab.sub.wait_from(mark, "progress with some chunks", PATIENCE, |m| {
        let j = m.json_or_null();
        m.topic == topic && j["have"].as_u64().unwrap_or(0) > 0
    });
    a.kill9();
    let seen = p.json();
    let (have, total) = (seen["have"].as_u64().unwrap_or(0), seen["total"].as_u64().unwrap_or(0));
    assert!(have < total, "the whole tarball had arrived before the kill ({have}/{total}): nothing to resume");
    let update = seen["id"].as_str().expect("progress names its update").to_string();
    // The old version keeps running without its agent.
    assert!(alive(before.pid as u32), "the running v1 died with its agent");
    let mid = update_files(a.root().path());
    assert!(!mid.is_empty(), "nothing under <root>/updates after {have} chunks");

    let mark2 = lab.sub.mark();
    a.restart();
    lab.sub.wait_from(mark2, "kill-dev online again", PATIENCE, |m| {
        m.topic == format!("{}status", root_of("kill-dev")) && m.payload == "online"
    });
    let resumed =
        lab.sub.wait_from(mark2, "progress after the restart", PATIENCE, |m| m.topic == topic && m.json_or_null()["id"] == update.as_str());
    let rj = resumed.json();
    assert!(rj["have"].as_u64().unwrap_or(0) > 0, "after the restart the device starts over instead of resuming: {rj}");
    let (code, out, err) = push.wait(PATIENCE * 2);
    assert_eq!(code, 0, "the push across the agent restart: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    let r = wait_result(&lab.sub, mark2, "kill-dev", Some(&update), PATIENCE);
    assert_eq!(r["result"], "committed", "{r}");
    wait_running(&a, "app", &big_id);
    poll("the received tarball is removed after the commit", PATIENCE, || update_data(&a).is_empty().then_some(()));
}

// ---------------------------------------------------------------------------------------------
// fleet status (online/offline via the last will) and fleet logs.

#[test]
fn fleet_status_shows_online_and_offline_devices_and_fleet_logs_tails_a_container() {
    let _h = host_shared();
    let lab = lab(false);
    let a = lab.device("st-a", &[]);
    let mut b = lab.device("st-b", &[]);
    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    let run = "--name app --restart always app:1 sh -c 'for i in 1 2 3 4 5; do echo line-$i; done; exec sleep 100000'";
    lab.fleet.push_ok(&["st-a", "st-b"], &v1, WINDOW, run);
    wait_running(&a, "app", &v1_id);

    let row = |out: &str, dev: &str| -> String {
        out.lines()
            .find(|l| l.split_whitespace().any(|w| w == dev))
            .unwrap_or_else(|| panic!("fleet status has no row for {dev}:\n{out}"))
            .to_string()
    };
    let (code, out, err) = lab.fleet.run(&["status"]);
    assert_eq!(code, 0, "fleet status: {err}");
    for dev in ["st-a", "st-b"] {
        let r = lower(&row(&out, dev));
        assert!(r.contains("online") && !r.contains("offline"), "{dev} is not online in fleet status:\n{out}");
        assert!(
            r.contains("app:1") || r.contains(&v1_id["sha256:".len()..][..12]) || r.contains("committed"),
            "{dev}'s row lacks its image or result:\n{out}"
        );
    }

    // kill -9: the broker publishes st-b's last will.
    let mark = lab.sub.mark();
    b.kill9();
    lab.sub.wait_from(mark, "st-b's last will", PATIENCE, |m| m.topic == format!("{}status", root_of("st-b")) && m.payload == "offline");
    let (code, out, err) = lab.fleet.run(&["status"]);
    assert_eq!(code, 0, "fleet status: {err}");
    assert!(lower(&row(&out, "st-b")).contains("offline"), "st-b is not offline in fleet status:\n{out}");
    let ra = lower(&row(&out, "st-a"));
    assert!(ra.contains("online") && !ra.contains("offline"), "st-a is not online:\n{out}");

    poll("app printed its five lines", PATIENCE, || a.ok(&["logs", "app"]).contains("line-5").then_some(()));
    let (code, out, err) = lab.fleet.run(&["logs", "st-a", "app", "--tail", "2"]);
    assert_eq!(code, 0, "fleet logs st-a app --tail 2: exit {code}\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("line-4") && out.contains("line-5"), "fleet logs lacks the last two lines:\n{out}");
    assert!(!out.contains("line-3") && !out.contains("line-1"), "fleet logs --tail 2 shows more than two lines:\n{out}");
}
