//! End-to-end fleet updates over MQTT (issue 7, docs/update-protocol.md): a real mosquitto on a
//! free loopback port (plain or mutual TLS), real `berth agent`s each on its own `--root` and
//! device id, `berth fleet` as the operator, and docker-save tarballs made with umoci and skopeo
//! (the 3-layer `layered` fixture plus one layer per version: multi-layer images).
//!
//! What `berth fleet` never sends (bad signatures, replays, wrong digests, broken, duplicated and
//! shuffled chunks, oversized or concurrent updates) is built here with `berth_proto::{wire,
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

use berth_proto::sign::{self, SecretKey};
use berth_proto::wire::{Chunk, CHUNK_HEADER};
use berth_tests::agent::{alive, host_shared, Agent};
use berth_tests::fixtures::read_archive;
use berth_tests::mqtt::{
    app_image, device, random_hex32, root_of, state_of, update_files, wait_online, wait_result, Background, Broker, Crafted, Fleet,
    Subscriber,
};
use berth_tests::{poll, require_root, s, Root};

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

/// `berth system verify`: the store is whole after what the test did.
fn assert_store_whole(a: &Agent, after: &str) {
    let (code, out, err) = a.code(&["system", "verify"]);
    assert_eq!(code, 0, "berth system verify after {after}: exit {code}\nstdout: {out}\nstderr: {err}");
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
    lab_on(if tls { Broker::start_tls() } else { Broker::start() })
}

fn lab_on(broker: Broker) -> Lab {
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

/// A broker given by host name: rumqttc looks `localhost` up with getaddrinfo on a thread of
/// tokio's blocking pool. That thread must end once the lookup is done (tokio's default kept it
/// 10 s): the agent forks containers, and DESIGN.md keeps it single-threaded.
#[test]
fn an_agent_given_its_broker_by_name_is_single_threaded_once_online() {
    let lab = lab(false);
    let url = lab.broker.url().replace("127.0.0.1", "localhost");
    assert!(url.contains("localhost"), "{url}");
    let a = berth_tests::mqtt::device_on(Root::new(), &url, "byname", &lab.fleet.public, &[], &[]);
    lab.online(&a, "byname");
    let pid = a.pid().expect("the agent is our child");
    let threads = || fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads() != 1 {
        assert!(Instant::now() < deadline, "5 s after coming online the agent has {} threads, not 1\nagent log:\n{}", threads(), a.log());
        sleep_ms(50);
    }
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
        assert_store_whole(a, "a rollback");
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
    // A line naming the broker and the TLS failure (rustls: "received fatal alert: CertificateRequired").
    let port = lab.broker.port().to_string();
    poll("the agent without a client certificate logs why it cannot connect", PATIENCE, || {
        n.log()
            .lines()
            .any(|l| {
                let l = lower(l);
                l.contains(&port) && ["certificate", "handshake", "alert"].iter().any(|w| l.contains(w))
            })
            .then_some(())
    });
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

/// A broker whose TLS takes only P-256 for key exchange: the agent's TLS (berth-tls, P-256 from
/// the p256 crate) must do the P-256 ECDH (its only key share: it offers no X25519),
/// check the P-256 server chain and sign with its P-256 client key, then take an update.
#[test]
fn mutual_tls_with_a_broker_that_takes_only_p256_key_exchange() {
    let _h = host_shared();
    require_root();
    let lab = lab_on(Broker::start_tls_with_groups("P-256"));
    // The peer really is limited: another group is refused, P-256 taken.
    assert!(!lab.broker.tls_handshake_with_group("probe", "X25519"), "the broker took X25519:\n{}", lab.broker.log());
    assert!(lab.broker.tls_handshake_with_group("probe", "P-256"), "the broker refused P-256:\n{}", lab.broker.log());
    let a = lab.device("p256-a", &[]);
    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    let mark = lab.sub.mark();
    let out = lab.fleet.push_ok(&["p256-a"], &v1, WINDOW, &app_run("1"));
    let r = wait_result(&lab.sub, mark, "p256-a", None, PATIENCE);
    assert_eq!(r["result"], "committed", "push over P-256-only TLS: {r}\n{out}");
    wait_running(&a, "app", &v1_id);
}

#[test]
fn agent_refuses_to_start_on_a_bad_mqtt_configuration() {
    let _h = host_shared();
    require_root();
    let broker = Broker::start();
    let dir = broker.dir().to_path_buf();
    let key = dir.join("k.pem");
    sign::keygen(&key).expect("make a key");
    let public = broker_pub(&key);
    let url = broker.url();
    let typo = dir.join("typo.toml");
    fs::write(&typo, format!("[mqtt]\nbroker = \"{url}\"\ndevice_id = \"x\"\n")).expect("write typo.toml");
    let missing_key = dir.join("missing.pub");
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        ("a misspelt key in berth.toml", vec!["--config".into(), s(&typo).into()], vec!["typo.toml", "broker"]),
        (
            "a --trust file that does not exist",
            vec!["--mqtt".into(), url.clone(), "--device-id".into(), "d1".into(), "--trust".into(), s(&missing_key).into()],
            vec!["missing.pub"],
        ),
        (
            "a device id that cannot be a topic level",
            vec!["--mqtt".into(), url.clone(), "--device-id".into(), "a/b".into(), "--trust".into(), s(&public).into()],
            vec!["a/b", "device"],
        ),
        (
            "a broker URL of another scheme",
            vec!["--mqtt".into(), "http://127.0.0.1:1".into(), "--device-id".into(), "d1".into(), "--trust".into(), s(&public).into()],
            vec!["http", "scheme"],
        ),
    ];
    for (what, opts, words) in cases {
        let root = Root::new();
        let sock = root.scratch().join("berth.sock");
        let host = format!("unix://{}", s(&sock));
        let mut args = vec!["-H", host.as_str(), "agent"];
        args.extend(opts.iter().map(String::as_str));
        let mut bg = Background::spawn(root.command(&args), root.scratch(), "agent");
        let (code, out, err) = bg.wait(Duration::from_secs(60));
        assert_ne!(code, 0, "the agent started with {what}:\nstdout: {out}\nstderr: {err}");
        assert!(words.iter().any(|w| err.contains(w)), "the agent's error for {what} does not name it (one of {words:?}):\n{err}");
    }
}

#[test]
fn agent_fails_over_to_the_next_broker_in_berth_toml() {
    let _h = host_shared();
    let lab = lab(false);
    // The first broker in the list is a port nobody listens on.
    let dead = format!("mqtt://127.0.0.1:{}", berth_tests::mqtt::free_port());
    let cfg = lab.broker.dir().join("failover.toml");
    fs::write(
        &cfg,
        format!(
            "[mqtt]\nbrokers = [\"{dead}\", \"{}\"]\ndevice_id = \"fo-dev\"\n[update]\ntrusted_keys = [\"{}\"]\n",
            lab.broker.url(),
            s(&lab.fleet.public)
        ),
    )
    .expect("write failover.toml");
    let a = Agent::start_with(Root::new(), &[], &["--config", s(&cfg)]);
    lab.online(&a, "fo-dev");
    let v1 = app_image("1", 0);
    lab.fleet.push_ok(&["fo-dev"], &v1, WINDOW, &app_run("1"));
    wait_running(&a, "app", &image_id(&v1));
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
    // Unsigned: an empty signature, and one that is not base64 of 64 bytes.
    for sig in ["", "AAAA"] {
        let mut u = Crafted::deploy(&b.key, 2, &["sig-dev"], &tar, 0, &run2, WINDOW);
        u.envelope = serde_json::to_vec(&serde_json::json!({"manifest": u.text, "sig": sig})).expect("envelope");
        b.refused(&u, "sig-dev", &["signature", "signed"]);
    }
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
    // protocol (every chunk re-read, none damaged: the sender sent other bytes than it signed).
    assert_eq!(r["result"], "failed", "digest mismatch: {r}");
    let reason = lower(r["reason"].as_str().unwrap_or_default());
    assert!(reason.contains("sha256") || reason.contains("digest"), "the reason does not name the digest: {r}");
    assert_untouched(&a, "app", &before, "a digest mismatch");
    assert_eq!(names(&a), vec!["app".to_string()]);
    let images = a.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains("app:2"), "the mismatching tarball was loaded anyway:\n{images}");
    // The bad download is not kept (it can never verify).
    poll("the mismatching tarball is removed from <root>/updates", PATIENCE, || update_data(&a).is_empty().then_some(()));
}

#[test]
fn run_arguments_the_protocol_forbids_are_refused_before_download() {
    let _h = host_shared();
    let b = bench();
    let (a, before) = b.device_with_v1("args-dev", &[]);
    let files = update_files(a.root().path());
    let tar = fs::read(app_image("2", 0)).expect("read app:2");
    // `--name` must be there and equal the manifest's name; --rm, -i, -t, -a are not for updates.
    let cases: &[(&str, &[&str])] = &[
        ("no --name", &["app:2", "sleep", "100000"]),
        ("--name other than the manifest's", &["--name", "other", "app:2", "sleep", "100000"]),
        ("--rm", &["--name", "app", "--rm", "app:2", "sleep", "100000"]),
        ("-i", &["--name", "app", "-i", "app:2", "sleep", "100000"]),
        ("-t", &["--name", "app", "-t", "app:2", "sleep", "100000"]),
        ("-a", &["--name", "app", "-a", "stdout", "app:2", "sleep", "100000"]),
    ];
    for (seq, (what, args)) in (2u64..).zip(cases) {
        let mut m = Crafted::deploy(&b.key, seq, &["args-dev"], &tar, 0, &["--name", "app", "app:2", "true"], WINDOW).manifest;
        m.run = args.iter().map(|s| s.to_string()).collect();
        let c = Crafted::signed(&b.key, m, tar.clone());
        let mark = b.sub.mark();
        c.send_envelope(&b.broker, "args-dev");
        let r = wait_result(&b.sub, mark, "args-dev", Some(c.id()), PATIENCE);
        assert_eq!(r["result"], "refused", "run arguments with {what} ({args:?}): {r}\nagent log:\n{}", a.log());
        assert!(
            !b.sub.on(&format!("{}progress", root_of("args-dev")), mark).iter().any(|m| m.json_or_null()["id"] == c.id()),
            "{what}: the device started downloading an update it must refuse"
        );
    }
    assert_untouched(&a, "app", &before, "refused run arguments");
    assert_eq!(update_files(a.root().path()), files, "refused updates changed <root>/updates");
}

#[test]
fn an_image_that_does_not_load_fails_and_the_old_version_keeps_running() {
    let _h = host_shared();
    let b = bench();
    let (a, before) = b.device_with_v1("load-dev", &[]);
    // Signed and whole (its sha256 matches), but not an image archive.
    let junk = berth_tests::fixtures::pseudo_random(300 * 1024, 0x10ad);
    let c = Crafted::deploy(&b.key, 2, &["load-dev"], &junk, 0, &["--name", "app", "app:2", "sleep", "100000"], WINDOW);
    let r = c.deliver(&b.broker, &b.sub, "load-dev", PATIENCE);
    assert_eq!(r["result"], "failed", "an image that does not load: {r}");
    assert!(!r["reason"].as_str().unwrap_or_default().is_empty(), "no reason: {r}");
    assert_untouched(&a, "app", &before, "an image that does not load");
    assert_eq!(names(&a), vec!["app".to_string()]);
    poll("the unloadable tarball is removed from <root>/updates", PATIENCE, || update_data(&a).is_empty().then_some(()));
    assert_store_whole(&a, "an image that did not load");
    // The device still takes the next update.
    let tar = fs::read(app_image("2", 0)).expect("read app:2");
    let c3 = Crafted::deploy(&b.key, 3, &["load-dev"], &tar, 0, &["--name", "app", "app:2", "sleep", "100000"], WINDOW);
    let r = c3.deliver(&b.broker, &b.sub, "load-dev", PATIENCE);
    assert_eq!(r["result"], "committed", "the update after a failed one: {r}");
}

#[test]
fn agent_killed_in_the_health_window_ends_with_one_version_running_and_a_result() {
    let _h = host_shared();
    let b = bench();
    let (mut a, before) = b.device_with_v1("win-dev", &[]);
    let v1_id = before.image.clone();
    let v2 = app_image("2", 0);
    let v2_id = image_id(&v2);
    let tar = fs::read(&v2).expect("read app:2");
    let c = Crafted::deploy(&b.key, 2, &["win-dev"], &tar, 0, &["--name", "app", "--restart", "always", "app:2", "sleep", "100000"], 8);
    let mark = b.sub.mark();
    c.send_envelope(&b.broker, "win-dev");
    c.wait_receiving(&b.sub, mark, "win-dev", PATIENCE);
    c.send(&b.broker, &(0..c.count()).collect::<Vec<_>>());
    // The new container runs; the window (8 s) has not ended: kill -9 the agent there.
    wait_running(&a, "app", &v2_id);
    a.kill9();
    assert!(
        !b.sub.on(&format!("{}result", root_of("win-dev")), mark).iter().any(|m| m.json_or_null()["id"] == c.id()),
        "the update already had a result before the kill: the window is too short for this test"
    );
    a.restart();
    let r = c.finish(&b.broker, &b.sub, mark, "win-dev", PATIENCE);
    let want = match r["result"].as_str() {
        Some("committed") => &v2_id,
        Some("rolled_back") => &v1_id,
        _ => panic!("after a kill -9 in the health window: {r}\nagent log:\n{}", a.log()),
    };
    assert_eq!(r["image"], want.as_str(), "the result names another image than the one kept: {r}");
    let now = wait_running(&a, "app", want);
    if want == &v1_id {
        assert_eq!(now.id, before.id, "rolled back to another container than the kept v1");
    }
    // Exactly one app running; no second container left running beside it.
    let running: Vec<Value> = a.ps_all().into_iter().filter(|c| c["State"] == "running").collect();
    assert_eq!(running.len(), 1, "running containers after the restart: {running:?}");
    assert_store_whole(&a, "a kill -9 in the health window");
}

#[test]
fn commits_keep_one_previous_version_stopped_and_remove_older_ones_with_their_images() {
    let _h = host_shared();
    let b = bench();
    let (a, first) = b.device_with_v1("keep-dev", &[]);
    let ids: Vec<String> = ["1", "2", "3"].iter().map(|v| image_id(&app_image(v, 0))).collect();
    let mut kept = Vec::new();
    for (seq, v) in [(2u64, "2"), (3, "3")] {
        let tar = fs::read(app_image(v, 0)).expect("read app image");
        let img = format!("app:{v}");
        let c = Crafted::deploy(
            &b.key,
            seq,
            &["keep-dev"],
            &tar,
            0,
            &["--name", "app", "--restart", "always", &img, "sleep", "100000"],
            WINDOW,
        );
        let r = c.deliver(&b.broker, &b.sub, "keep-dev", PATIENCE);
        assert_eq!(r["result"], "committed", "v{v}: {r}");
        let now = wait_running(&a, "app", &ids[seq as usize - 1]);
        kept.push(now);
        // keep = 1: app runs, and exactly one previous version stays, stopped, as app.prev-*.
        let all = a.ps_all();
        let prev: Vec<&Value> = all.iter().filter(|c| c["Names"] != "app").collect();
        assert_eq!(prev.len(), 1, "after v{v}: containers besides app: {all:?}");
        assert!(prev[0]["Names"].as_str().unwrap_or_default().starts_with("app.prev-"), "after v{v}: {all:?}");
        assert_ne!(prev[0]["State"], "running", "after v{v}: the previous version still runs: {all:?}");
        let want_prev = if seq == 2 { &first.id } else { &kept[0].id };
        assert_eq!(
            prev[0]["ID"].as_str(),
            Some(want_prev.as_str()),
            "after v{v}: the kept previous container is not the one that ran before"
        );
    }
    // v1 is beyond keep: its container and its image are gone; v2's image stays (rollback target).
    let images = a.ok(&["images", "--no-trunc", "--format", "{{.ID}}"]);
    assert!(!images.contains(&ids[0]), "v1's image is still in the store after two newer commits:\n{images}");
    assert!(images.contains(&ids[1]), "v2's image (the rollback target) is gone:\n{images}");
    let topic = format!("{}state", root_of("keep-dev"));
    let st = b
        .sub
        .wait_from(0, "state with v3 deployed", PATIENCE, |m| {
            m.topic == topic && deployment(&m.json_or_null(), "app").is_some_and(|d| d["image_id"] == ids[2].as_str())
        })
        .json();
    let d = deployment(&st, "app").unwrap_or_else(|| panic!("no deployment of app: {st}"));
    assert_eq!(d["image_id"], ids[2].as_str(), "{st}");
    assert!(has_str(&d["previous"], &ids[1]) && !has_str(&d["previous"], &ids[0]), "previous versions in the state: {st}");
    assert!(!has_str(&st["images"], &ids[0]), "state still lists v1's image: {st}");
    assert_store_whole(&a, "v1 and its image removed beyond keep");
    assert!(st["agent"].as_str().is_some_and(|v| !v.is_empty()), "state without the agent version: {st}");
    assert!(
        st["disk_free"].as_u64().unwrap_or(0) > 0 && st["mem_available"].as_u64().unwrap_or(0) > 0,
        "state without free disk or memory: {st}"
    );
}

#[test]
fn cmd_topic_answers_read_only_commands_and_takes_changes_only_signed() {
    let _h = host_shared();
    let b = bench();
    let (a, before) = b.device_with_v1("cmd-dev", &[]);
    let cmd = format!("{}cmd", root_of("cmd-dev"));
    let resp = format!("{}resp", root_of("cmd-dev"));
    let ask = |payload: &str, token: &str| -> Value {
        let mark = b.sub.mark();
        b.broker.publish(&cmd, payload.as_bytes(), false);
        b.sub.wait_from(mark, &format!("answer to {payload}"), PATIENCE, |m| m.topic == resp && m.json_or_null()["token"] == token).json()
    };
    let st = ask(r#"{"cmd":"status","token":"t-status"}"#, "t-status");
    assert_eq!(st["ok"], true, "{st}");
    let body: Value = match &st["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|e| panic!("status body is not JSON ({e}): {st}")),
        other => other.clone(),
    };
    assert_eq!(body["device"], "cmd-dev", "status body: {body}");
    assert!(deployment(&body, "app").is_some(), "status body without the app deployment: {body}");
    a.ok(&["exec", "app", "sh", "-c", "for i in 1 2 3; do echo cmd-line-$i; done > /proc/1/fd/1"]);
    let logs = poll("logs over cmd show the last line", PATIENCE, || {
        let l = ask(r#"{"cmd":"logs","name":"app","tail":1,"token":"t-logs"}"#, "t-logs");
        l["body"].as_str().is_some_and(|b| b.contains("cmd-line-3")).then_some(l)
    });
    assert_eq!(logs["ok"], true, "{logs}");
    assert!(!logs["body"].as_str().unwrap_or_default().contains("cmd-line-2"), "--tail 1 gave more: {logs}");
    let nosuch = ask(r#"{"cmd":"logs","name":"nosuch","tail":1,"token":"t-nosuch"}"#, "t-nosuch");
    assert_eq!(nosuch["ok"], false, "logs of a container that does not exist: {nosuch}");

    // Changes are not read-only commands: unsigned restart and rollback do nothing.
    for (c, token) in [("restart", "t-restart"), ("rollback", "t-rollback")] {
        let r = ask(&format!(r#"{{"cmd":"{c}","name":"app","token":"{token}"}}"#), token);
        assert_eq!(r["ok"], false, "an unsigned {c} on cmd was accepted: {r}");
    }
    assert_untouched(&a, "app", &before, "unsigned restart and rollback commands");

    // Signed, a restart is done: the same container, a new process.
    let seq = state_of(&b.sub, "cmd-dev")["seq"].as_u64().expect("state seq");
    let m = berth_proto::wire::Manifest {
        version: 1,
        id: random_hex32(),
        seq: seq + 1,
        kind: berth_proto::wire::Kind::Restart,
        created: 0,
        targets: vec!["cmd-dev".into()],
        groups: vec![],
        name: "app".into(),
        image: None,
        pull: None,
        run: vec![],
        health_window: WINDOW,
        keep: 1,
        app: None,
    };
    let c = Crafted::signed(&b.key, m, Vec::new());
    let mark = b.sub.mark();
    b.broker.publish(&cmd, &c.envelope, false);
    let r = wait_result(&b.sub, mark, "cmd-dev", Some(c.id()), PATIENCE);
    assert_eq!(r["result"], "committed", "signed restart: {r}");
    let now = poll("app runs again with a new process", PATIENCE, || {
        let v = try_inspect(&a, "app")?;
        let pid = v["State"]["Pid"].as_u64().unwrap_or(0);
        (v["State"]["Status"] == "running" && pid != before.pid && pid > 0).then_some(v)
    });
    assert_eq!(now["Id"], before.id.as_str(), "a restart made another container");
}

#[test]
fn a_redelivered_envelope_resumes_and_a_newer_update_replaces_one_being_received() {
    let _h = host_shared();
    let b = bench();
    let (a, _) = b.device_with_v1("swap-dev", &[]);
    let tar2 = fs::read(app_image("2", 0)).expect("read app:2");
    let c2 = Crafted::deploy(&b.key, 2, &["swap-dev"], &tar2, 32 * 1024, &["--name", "app", "app:2", "sleep", "100000"], WINDOW);
    let n = c2.count();
    assert!(n >= 8, "{n} chunks");
    let progress = format!("{}progress", root_of("swap-dev"));
    let have_of = |mark: usize, id: &str, min: u64| {
        b.sub.wait_from(mark, &format!("progress of {id} with at least {min} chunks"), PATIENCE, |m| {
            let j = m.json_or_null();
            m.topic == progress && j["id"] == id && j["have"].as_u64().unwrap_or(0) >= min
        })
    };
    let mark = b.sub.mark();
    c2.send_envelope(&b.broker, "swap-dev");
    c2.wait_receiving(&b.sub, mark, "swap-dev", PATIENCE);
    let half: Vec<u32> = (0..n / 2).collect();
    c2.send(&b.broker, &half);
    have_of(mark, c2.id(), u64::from(n / 2));
    // The same envelope again (a QoS 1 redelivery): the transfer goes on, nothing starts over.
    let mark2 = b.sub.mark();
    c2.send_envelope(&b.broker, "swap-dev");
    let p = c2.wait_receiving(&b.sub, mark2, "swap-dev", PATIENCE);
    assert!(p["have"].as_u64().unwrap_or(0) >= u64::from(n / 2), "a redelivered envelope restarted the transfer: {p}");
    assert!(
        !b.sub.on(&format!("{}result", root_of("swap-dev")), mark).iter().any(|m| m.json_or_null()["id"] == c2.id()),
        "a redelivered envelope ended the transfer: {}",
        b.sub.dump(mark)
    );

    // A newer update while v2 is only being received replaces it.
    let v3 = app_image("3", 0);
    let tar3 = fs::read(&v3).expect("read app:3");
    let c3 = Crafted::deploy(&b.key, 3, &["swap-dev"], &tar3, 0, &["--name", "app", "app:3", "sleep", "100000"], WINDOW);
    let r3 = c3.deliver(&b.broker, &b.sub, "swap-dev", PATIENCE);
    assert_eq!(r3["result"], "committed", "the newer update: {r3}\n{}", b.sub.dump(mark));
    wait_running(&a, "app", &image_id(&v3));
    // The rest of v2 arriving late changes nothing, and its partial download is gone.
    c2.send(&b.broker, &(n / 2..n).collect::<Vec<_>>());
    poll("the replaced update's partial download is removed", PATIENCE, || update_data(&a).is_empty().then_some(()));
    let st = state_of(&b.sub, "swap-dev");
    assert_eq!(st["seq"], 3, "{st}");
    let v3_id = image_id(&v3);
    assert_eq!(wait_running(&a, "app", &v3_id).image, v3_id);
    assert_store_whole(&a, "a replaced transfer");
}

#[test]
fn answers_on_resp_are_at_most_64_kib() {
    let _h = host_shared();
    let b = bench();
    let (a, _) = b.device_with_v1("cap-dev", &[]);
    let cmd = format!("{}cmd", root_of("cap-dev"));
    let resp = format!("{}resp", root_of("cap-dev"));
    // Two logs of about 300 KiB: plain lines, then lines of ANSI escapes (as coloured output has),
    // each ESC byte is 6 bytes in JSON ("\u001b").
    let cases = [
        ("plain", "line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "plain-last"),
        ("ansi", "ansi-$i-\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033\\033", "ansi-last"),
    ];
    let mut sizes = Vec::new();
    for (what, line, last) in cases {
        let script =
            format!("i=0; while [ $i -lt 5000 ]; do printf \"{line}\\n\"; i=$((i+1)); done > /proc/1/fd/1; echo {last} > /proc/1/fd/1");
        a.ok(&["exec", "app", "sh", "-c", &script]);
        poll(&format!("the {what} lines are in the logs"), PATIENCE, || a.ok(&["logs", "--tail", "1", "app"]).contains(last).then_some(()));
        let token = format!("big-{what}");
        let mark = b.sub.mark();
        b.broker.publish(&cmd, format!(r#"{{"cmd":"logs","name":"app","tail":100000,"token":"{token}"}}"#).as_bytes(), false);
        let m = b.sub.wait_from(mark, &format!("the answer to a big logs command ({what})"), PATIENCE, |m| {
            m.topic == resp && m.json_or_null()["token"] == token.as_str()
        });
        let j = m.json();
        assert_eq!(j["ok"], true, "{}", &m.payload[..m.payload.len().min(300)]);
        let body = j["body"].as_str().unwrap_or_default();
        assert!(body.trim_end().ends_with(last), "a capped answer keeps the newest lines ({what})");
        assert!(body.len() < 300 * 1024, "the {what} logs answer was not capped ({} bytes of body)", body.len());
        sizes.push(format!("{what}: {} bytes", m.payload.len()));
        if what == "ansi" {
            assert!(body.contains('\u{1b}'), "the ANSI lines lost their escapes: the test proves nothing");
        }
    }
    // docs/update-protocol.md: "ROOT/resp ... {"token","ok","body"}, at most 64 KiB" (the message,
    // which has to fit brokers with 128 KB limits).
    let over: Vec<&String> = sizes
        .iter()
        .filter(|s| s.split(": ").nth(1).and_then(|n| n.trim_end_matches(" bytes").parse::<usize>().ok()).is_some_and(|n| n > 64 * 1024))
        .collect();
    assert!(over.is_empty(), "answers on {resp} over the protocol's 64 KiB: {sizes:?}");
}

#[test]
fn a_broker_with_a_128_kb_message_limit_carries_updates_and_log_answers() {
    let _h = host_shared();
    require_root();
    // Cloud IoT brokers cap messages at 128 KB: default 96 KiB chunks are made for them.
    let broker = Broker::start_limited(128 * 1024);
    let fleet = Fleet::new(&broker, broker.dir());
    let sub = broker.subscribe(&["berth/v1/#"], &["berth/v1/updates/#"]);
    let lab = Lab { sub, fleet, broker };
    let a = lab.device("lim-dev", &[]);
    let v1 = app_image("1", 0);
    lab.fleet.push_ok(&["lim-dev"], &v1, WINDOW, &app_run("1"));
    wait_running(&a, "app", &image_id(&v1));
    // Output dense with ANSI escapes (each ESC is 6 bytes in JSON) in the logs, then fleet logs
    // of all of it: the answer is capped to fit the protocol's 64 KiB, so it arrives.
    let esc = "\\033[1m\\033\\033\\033\\033".repeat(8);
    let script =
        format!("i=0; while [ $i -lt 3000 ]; do printf \"{esc}err-$i\\n\"; i=$((i+1)); done > /proc/1/fd/1; echo lim-last > /proc/1/fd/1");
    a.ok(&["exec", "app", "sh", "-c", &script]);
    poll("the coloured lines are in the logs", PATIENCE, || a.ok(&["logs", "--tail", "1", "app"]).contains("lim-last").then_some(()));
    let (code, out, err) = lab.fleet.run(&["logs", "lim-dev", "app", "--tail", "100000"]);
    assert_eq!(code, 0, "fleet logs through a 128 KB broker: exit {code}\nstderr: {err}\nbroker log:\n{}", lab.broker.log());
    assert!(out.trim_end().ends_with("lim-last"), "fleet logs lacks the newest line: ...{}", &out[out.len().saturating_sub(200)..]);
    // The device is still connected (a message over the limit gets a client disconnected).
    let (code, out, err) = lab.fleet.run(&["status"]);
    assert_eq!(code, 0, "fleet status: {err}");
    assert!(out.lines().any(|l| l.contains("lim-dev") && (l.contains("yes") || l.contains("online"))), "lim-dev is not online:\n{out}");
    // And it still takes updates.
    let v2 = app_image("2", 0);
    lab.fleet.push_ok(&["lim-dev"], &v2, WINDOW, &app_run("2"));
    wait_running(&a, "app", &image_id(&v2));
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
    assert_eq!(r["result"], "committed", "a rollback that was done is reported as committed: {r}");
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
    // A quarter of the chunks: past the agent's first checkpoint (it makes chunks durable in
    // batches; what came after the last one is fetched again, by design).
    let p = lab.sub.wait_from(mark, "progress with a quarter of the chunks", PATIENCE, |m| {
        let j = m.json_or_null();
        m.topic == topic && j["have"].as_u64().unwrap_or(0) * 4 >= j["total"].as_u64().unwrap_or(u64::MAX)
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
    assert_store_whole(&a, "a kill -9 mid-transfer and the resumed update");
}

// ---------------------------------------------------------------------------------------------
// The broker restarts (without persistence: sessions and retained messages are gone).

#[test]
fn after_a_broker_restart_the_agent_reconnects_republishes_and_takes_updates() {
    let _h = host_shared();
    let mut lab = lab(false);
    let a = lab.device("re-dev", &[]);
    let v1 = app_image("1", 0);
    lab.fleet.push_ok(&["re-dev"], &v1, WINDOW, &app_run("1"));
    wait_running(&a, "app", &image_id(&v1));

    drop(std::mem::replace(&mut lab.sub, lab.broker.subscribe(&["berth-test/none"], &[])));
    lab.broker.restart();
    let sub = lab.broker.subscribe(&["berth/v1/#"], &["berth/v1/updates/#"]);
    // A new session: the agent says online again and publishes its retained state again.
    let status = format!("{}status", root_of("re-dev"));
    sub.wait_from(0, "re-dev online after the broker restart", PATIENCE, |m| m.topic == status && m.payload == "online");
    let state = format!("{}state", root_of("re-dev"));
    let st = sub.wait_from(0, "re-dev's state after the broker restart", PATIENCE, |m| m.topic == state).json();
    assert_eq!(st["seq"], 1, "state after the broker restart: {st}");
    // It subscribed again: the next push reaches it.
    let v2 = app_image("2", 0);
    let mark = sub.mark();
    let (code, out, err) = lab.fleet.push(&["re-dev"], &v2, WINDOW, &app_run("2"));
    assert_eq!(code, 0, "push after the broker restart: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    let r = wait_result(&sub, mark, "re-dev", None, PATIENCE);
    assert_eq!(r["result"], "committed", "{r}");
    wait_running(&a, "app", &image_id(&v2));
    lab.sub = sub;
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
    // Online or not: an ONLINE column (yes/no) or the words online/offline in the row.
    let online = |out: &str, dev: &str| -> bool {
        let r = lower(&row(out, dev));
        let header: Vec<String> = out.lines().next().unwrap_or_default().split_whitespace().map(lower).collect();
        let cell = header.iter().position(|h| h == "online" || h == "status").and_then(|i| r.split_whitespace().nth(i).map(str::to_string));
        match cell.as_deref() {
            Some("yes" | "online" | "true") => true,
            Some("no" | "offline" | "false") => false,
            _ if r.contains("offline") => false,
            _ if r.contains("online") => true,
            _ => panic!("fleet status does not say whether {dev} is online:\n{out}"),
        }
    };
    let (code, out, err) = lab.fleet.run(&["status"]);
    assert_eq!(code, 0, "fleet status: {err}");
    for dev in ["st-a", "st-b"] {
        let r = lower(&row(&out, dev));
        assert!(online(&out, dev), "{dev} is not online in fleet status:\n{out}");
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
    assert!(!online(&out, "st-b"), "st-b is not offline in fleet status:\n{out}");
    assert!(online(&out, "st-a"), "st-a is not online in fleet status:\n{out}");

    poll("app printed its five lines", PATIENCE, || a.ok(&["logs", "app"]).contains("line-5").then_some(()));
    let (code, out, err) = lab.fleet.run(&["logs", "st-a", "app", "--tail", "2"]);
    assert_eq!(code, 0, "fleet logs st-a app --tail 2: exit {code}\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("line-4") && out.contains("line-5"), "fleet logs lacks the last two lines:\n{out}");
    assert!(!out.contains("line-3") && !out.contains("line-1"), "fleet logs --tail 2 shows more than two lines:\n{out}");
    let (code, out, err) = lab.fleet.run(&["logs", "st-a", "nosuch", "--tail", "2"]);
    assert_ne!(code, 0, "fleet logs of a container that does not exist exited 0:\nstdout: {out}\nstderr: {err}");
    assert!(err.contains("nosuch") || lower(&err).contains("no such"), "fleet logs does not say what is missing:\n{err}");
    // Nothing to roll back to (one version only): the fleet says so and exits non-zero.
    let key = s(&lab.fleet.key).to_string();
    let (code, out, err) = lab.fleet.run(&["rollback", "--key", &key, "--to", "st-a"]);
    assert_ne!(code, 0, "fleet rollback with no previous version exited 0:\nstdout: {out}\nstderr: {err}");
    assert!(format!("{out}{err}").contains("st-a"), "the failed rollback does not name the device:\nstdout: {out}\nstderr: {err}");
    wait_running(&a, "app", &v1_id);
    // A device that never shows up: the push gives up after its --timeout and names it.
    let v1_path = s(&v1).to_string();
    let (code, out, err) = lab.fleet.run(&[
        "push",
        "--key",
        &key,
        "--to",
        "ghost",
        "--timeout",
        "3",
        "--health-window",
        "2",
        &v1_path,
        "--run",
        &app_run("1"),
    ]);
    assert_ne!(code, 0, "a push to a device that never came online exited 0:\nstdout: {out}\nstderr: {err}");
    assert!(format!("{out}{err}").contains("ghost"), "the failed push does not name the device:\nstdout: {out}\nstderr: {err}");
}

// ---------------------------------------------------------------------------------------------
// Issue 9: delta transfer and canary rollouts.

/// A push with extra flags (`--delta`, `--canary N`, `--max-parallel K`).
fn push_with(lab: &Lab, flags: &[&str], ids: &[&str], tar: &Path, run: &str) -> (i32, String, String) {
    let mut a = lab.fleet.push_args(ids, tar, WINDOW, run);
    for (i, f) in flags.iter().enumerate() {
        a.insert(1 + i, f.to_string());
    }
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    lab.fleet.run(&a)
}

/// `chunks: N sent, M resent` from a push's output.
fn chunks_sent(out: &str) -> u64 {
    let line = out.lines().rev().find(|l| l.starts_with("chunks: ")).unwrap_or_else(|| panic!("no 'chunks:' line in:\n{out}"));
    line["chunks: ".len()..].split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad chunks line {line:?}"))
}

/// Stops at once on SIGTERM (`sleep` as pid 1 would ignore it and cost the stop timeout).
fn quick_run(tag: &str) -> String {
    format!("--name app --stop-timeout 1 app:{tag} sh -c 'trap \"exit 0\" TERM; cat /app/version; sleep 100000 & wait'")
}

#[test]
fn delta_push_sends_only_the_layers_a_device_lacks_and_falls_back_to_the_whole_tarball() {
    let _h = host_shared();
    let lab = lab(false);
    let ids = ["d-dev1", "d-dev2"];
    let agents: Vec<Agent> = ids.iter().map(|id| lab.device(id, &[])).collect();
    // The fixture's three base layers are shared; each version adds a small top layer.
    let v1 = app_image("1", 0);
    let v2 = app_image("2", 0);
    let (v1_id, v2_id) = (image_id(&v1), image_id(&v2));
    let full = lab.fleet.push_ok(&ids, &v1, WINDOW, &quick_run("1"));
    let full_chunks = chunks_sent(&full);
    for a in &agents {
        wait_running(a, "app", &v1_id);
    }
    // Both hold v1's layers: only v2's new top layer travels, and it is still checked on load.
    let mark = lab.sub.mark();
    let (code, out, err) = push_with(&lab, &["--delta"], &ids, &v2, &quick_run("2"));
    assert_eq!(code, 0, "delta push failed:\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("delta: ") && out.contains("left out"), "the push does not report the delta:\n{out}");
    let delta_chunks = chunks_sent(&out);
    let v2_size = fs::metadata(&v2).map(|m| m.len()).unwrap_or(0);
    let v2_chunks = v2_size.div_ceil(96 * 1024);
    eprintln!("delta: {delta_chunks} chunks sent for v2 ({v2_chunks} for the whole {v2_size}-byte tarball; v1 took {full_chunks})");
    assert!(delta_chunks * 4 < v2_chunks, "the delta sent {delta_chunks} chunks of {v2_chunks}: the shared layers travelled again");
    for (id, a) in ids.iter().zip(&agents) {
        assert_eq!(wait_result(&lab.sub, mark, id, None, PATIENCE)["result"], "committed", "{id}");
        wait_running(a, "app", &v2_id);
        assert!(a.ok(&["logs", "app"]).contains('2'), "{id}: v2 does not run");
        assert_store_whole(a, "a delta update");
    }
    // d-dev2 loses its images while the state the sender reads still lists their layers (a stale
    // state, as after a reboot that lost the store): the delta lacks a layer there, the load
    // fails, and the sender sends that device the whole tarball.
    let b = &agents[1];
    let mark = lab.sub.mark();
    b.ok(&["rm", "-f", "app", "app.prev-1"]);
    let st = lab.wait_state(mark, ids[1], "without containers", |st| st["containers"].as_array().is_some_and(|c| c.is_empty()));
    b.ok(&["rmi", "-f", "app:1", "app:2"]);
    let mut stale = st.clone();
    stale["layers"] = serde_json::json!(diff_ids(&v2));
    lab.broker.publish(&format!("{}state", root_of(ids[1])), stale.to_string().as_bytes(), true);
    let v3 = app_image("3", 0);
    let mark = lab.sub.mark();
    let (code, out, err) = push_with(&lab, &["--delta"], &ids[1..], &v3, &quick_run("3"));
    assert_eq!(code, 0, "a delta push to a device that lost its layers must still commit:\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("whole tarball"), "the push does not say it fell back to the whole tarball:\n{out}");
    let r = wait_result(&lab.sub, mark, ids[1], None, PATIENCE);
    assert!(r["result"] == "failed" && r["reason"].as_str().unwrap_or_default().contains("missing"), "first result {r}");
    wait_running(b, "app", &image_id(&v3));
    assert_store_whole(b, "a fallback from a delta");
}

#[test]
fn canary_that_fails_stops_the_rollout_and_max_parallel_batches_the_rest() {
    let _h = host_shared();
    let lab = lab(false);
    let ids = ["c-dev1", "c-dev2", "c-dev3"];
    let agents: Vec<Agent> = ids.iter().map(|id| lab.device(id, &[])).collect();
    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    lab.fleet.push_ok(&ids, &v1, WINDOW, &quick_run("1"));
    let before: Vec<Running> = agents.iter().map(|a| wait_running(a, "app", &v1_id)).collect();

    // A v2 that dies at once: the canary (the first target) rolls back, nobody else is touched.
    let v2 = app_image("2", 0);
    let mark = lab.sub.mark();
    let (code, out, err) = push_with(&lab, &["--canary", "1"], &ids, &v2, "--name app app:2 sh -c 'exit 9'");
    assert_ne!(code, 0, "a failed canary must fail the push:\nstdout: {out}\nstderr: {err}");
    assert!(err.contains("canary failed"), "the push does not say the canary failed:\n{err}");
    let r = wait_result(&lab.sub, mark, ids[0], None, PATIENCE);
    assert_eq!(r["result"], "rolled_back", "canary result {r}");
    for ((id, a), b) in ids.iter().zip(&agents).zip(&before).skip(1) {
        assert!(err.contains(&format!("{id}: no result: not updated")), "{id} is not reported as left alone:\n{err}");
        assert_untouched(a, "app", b, "a failed canary");
        let got = lab.sub.on(&format!("{}result", root_of(id)), mark);
        assert!(got.is_empty(), "{id} got an update after the canary failed: {:?}", got.iter().map(|m| &m.payload).collect::<Vec<_>>());
    }

    // A good v2, canary 1 then batches of 1: all commit, one batch (update) per device.
    let v2_id = image_id(&v2);
    let mark = lab.sub.mark();
    let (code, out, err) = push_with(&lab, &["--canary", "1", "--max-parallel", "1"], &ids, &v2, &quick_run("2"));
    assert_eq!(code, 0, "canary + batches push failed:\nstdout: {out}\nstderr: {err}");
    let mut updates = BTreeSet::new();
    for (id, a) in ids.iter().zip(&agents) {
        let r = wait_result(&lab.sub, mark, id, None, PATIENCE);
        assert_eq!(r["result"], "committed", "{id}: {r}");
        updates.insert(r["id"].as_str().unwrap_or_default().to_string());
        wait_running(a, "app", &v2_id);
    }
    assert_eq!(updates.len(), 3, "--max-parallel 1 sends one update per device: {updates:?}");
}

// ---------------------------------------------------------------------------------------------
// Fleets that pull by digest (issue 19): the update carries only the signed reference.

#[test]
fn push_by_digest_makes_two_devices_pull_from_the_registry_and_an_unknown_digest_changes_nothing() {
    use berth_tests::registry::{Auth, Registry};
    let _h = host_shared();
    let lab = lab(false);
    let reg = Registry::start(false, Auth::None);
    let ids = ["p-dev1", "p-dev2"];
    let agents: Vec<Agent> = ids.iter().map(|id| lab.device(id, &[])).collect();
    let v1 = app_image("1", 0);
    let v1_id = image_id(&v1);
    reg.put(&format!("docker-archive:{}", s(&v1)), "fleet/app:1");
    let (_, digest) = reg.raw_manifest("fleet/app:1");
    let pinned = format!("{}/fleet/app@{digest}", reg.host);
    let run = format!("--name app --restart always {pinned} sh -c 'echo started-pulled; exec sleep 100000'");

    // A tag is refused before anything is sent: a tag can move under a signed update.
    let tagged = format!("{}/fleet/app:1", reg.host);
    let (code, _, err) = lab.fleet.run(&["push", "--key", s(&lab.fleet.key), "--to", ids[0], "--pull", &tagged, "--run", &run]);
    assert_eq!(code, 125, "--pull of a tag: {err}");
    assert!(err.contains("by digest"), "{err}");

    let mark = lab.sub.mark();
    let mut args = vec!["push", "--key", s(&lab.fleet.key), "--health-window", "2", "--pull", &pinned, "--run", &run];
    for id in &ids {
        args.extend(["--to", id]);
    }
    let (code, out, err) = lab.fleet.run(&args);
    assert_eq!(code, 0, "fleet push --pull: exit {code}\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("pulled by the devices"), "{out}");
    let mut first = Vec::new();
    for (id, a) in ids.iter().zip(&agents) {
        let r = wait_result(&lab.sub, mark, id, None, PATIENCE);
        assert_eq!(r["result"], "committed", "{id}: result {r}\nagent log:\n{}", a.log());
        assert_eq!(r["image"], v1_id.as_str(), "{id}: the image pulled is the one pushed: {r}");
        first.push(wait_running(a, "app", &v1_id));
        assert!(a.ok(&["logs", "app"]).contains("started-pulled"), "{id}: logs");
        let progress = format!("{}progress", root_of(id));
        assert!(
            lab.sub.since(mark).iter().any(|m| m.topic == progress && m.json_or_null()["phase"] == "pulling"),
            "{id}: no 'pulling' progress:\n{}",
            lab.sub.dump(mark)
        );
        assert!(update_data(a).is_empty(), "{id}: no chunk was stored: {:?}", update_data(a));
        assert_store_whole(a, "a pull by digest");
        // What the agent reads every second to report the pull's bytes: whole at the end.
        let file = std::path::Path::new("/run/berth").join(a.cgroup_parent()).join("pull.progress");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{id}: {}: {e}", file.display()));
        let n: Vec<u64> = text.split_whitespace().map(|w| w.parse().expect("a byte count")).collect();
        assert!(n.len() == 2 && n[0] == n[1] && n[0] > 0, "{id}: pull progress {text:?}");
    }

    // A digest the registry does not hold (another image's, or one substituted under the tag):
    // the pull fails, nothing changes on the devices.
    let v2 = app_image("2", 0);
    reg.put(&format!("docker-archive:{}", s(&v2)), "fleet/app:1");
    let wrong = format!("{}/fleet/app@sha256:{}", reg.host, "0".repeat(64));
    let run2 = format!("--name app --restart always {wrong} sh -c 'exec sleep 100000'");
    let mark = lab.sub.mark();
    let mut args = vec!["push", "--key", s(&lab.fleet.key), "--health-window", "2", "--pull", &wrong, "--run", &run2];
    for id in &ids {
        args.extend(["--to", id]);
    }
    let (code, out, err) = lab.fleet.run(&args);
    assert_eq!(code, 1, "a pull of an unknown digest must fail:\nstdout: {out}\nstderr: {err}");
    for ((id, a), before) in ids.iter().zip(&agents).zip(&first) {
        let r = wait_result(&lab.sub, mark, id, None, PATIENCE);
        assert_eq!(r["result"], "failed", "{id}: {r}");
        assert!(r["reason"].as_str().unwrap_or_default().contains("does not pull"), "{id}: {r}");
        assert_untouched(a, "app", before, "a failed pull");
        assert!(update_data(a).is_empty(), "{id}: the failed update left {:?}", update_data(a));
        assert_store_whole(a, "a failed pull");
    }
}
