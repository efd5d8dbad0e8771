//! Fleet updates of whole applications (`berth fleet push --app compose.yaml`, issue 16): a real
//! mosquitto, real `berth agent`s, real containers from docker-save tarballs (`app_image`), the
//! compose file read by the operator's `berth fleet`. An application of two services: `server`
//! with a health check, `client` depending on it `service_healthy`, both `network_mode: none`
//! (no network of the machine is touched).
//!
//! Checked: pushed, upgraded, and a failing service rolls both back (the old containers run
//! again under their names); the agent `kill -9`'d at each journaled step of an application
//! update ends with the whole old revision or the whole new one; bad input (an image neither on
//! the device nor in the update; a `depends_on` cycle) changes nothing.
//!
//! Nothing asserts how fast anything is; every wait is a bounded poll. Needs root, mosquitto,
//! mosquitto-clients, umoci, skopeo (scripts/test installs them).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use berth::daemon::update::journal::{Journal, Step};
use berth_tests::agent::{host_shared, Agent};
use berth_tests::fixtures::read_archive;
use berth_tests::mqtt::{app_image, device_on, root_of, Broker, Fleet, Subscriber};
use berth_tests::{poll, require_root, s, try_poll, Root};

const PATIENCE: Duration = Duration::from_secs(180);
const WINDOW: u32 = 2;
const SERVER: &str = "shop-server-1";
const CLIENT: &str = "shop-client-1";

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn image_id(tar: &Path) -> String {
    read_archive(tar)[0].id.clone()
}

/// The compose file of revision `tag`: the client exits with code 3 when `client_fails`.
fn compose(tag: &str, client_fails: bool) -> String {
    let client_cmd = if client_fails { "cat /app/version; exit 3" } else { "cat /app/version; exec sleep 100000" };
    format!(
        "name: shop
services:
  server:
    image: app:{tag}
    command: [sh, -c, 'cat /app/version; exec sleep 100000']
    restart: always
    network_mode: none
    healthcheck:
      test: [CMD, cat, /app/version]
      interval: 200ms
      retries: 3
  client:
    image: app:{tag}
    command: [sh, -c, '{client_cmd}']
    restart: always
    network_mode: none
    depends_on:
      server:
        condition: service_healthy
"
    )
}

/// Like [`compose`], with the server appending its revision to `/data/log` on a revision-bound
/// volume at each start.
fn compose_with_volume(tag: &str, client_fails: bool) -> String {
    compose(tag, client_fails).replace(
        "command: [sh, -c, 'cat /app/version; exec sleep 100000']\n    restart: always\n    network_mode: none\n    healthcheck:",
        &format!(
            "command: [sh, -c, 'echo rev-{tag} >> /data/log; exec sleep 100000']\n    volumes: [data:/data]\n    restart: always\n    network_mode: none\n    healthcheck:"
        ),
    ) + "volumes:\n  data:\n    x-berth:\n      revision-bound: true\n"
}

struct Lab {
    sub: Subscriber,
    fleet: Fleet,
    broker: Broker,
    dir: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        let broker = Broker::start();
        let fleet = Fleet::new(&broker, broker.dir());
        let sub = broker.subscribe(&["berth/v1/#"], &["berth/v1/updates/#"]);
        let dir = broker.dir().join("apps");
        fs::create_dir_all(&dir).expect("mkdir apps");
        Lab { sub, fleet, broker, dir }
    }

    fn device(&self, id: &str, env: &[(&str, &str)]) -> Agent {
        let a = device_on(Root::new(), &self.broker.url(), id, &self.fleet.public, &[], env);
        let topic = format!("{}status", root_of(id));
        let deadline = Instant::now() + PATIENCE;
        while !self.sub.messages().iter().any(|m| m.topic == topic && m.payload == "online") {
            assert!(Instant::now() < deadline, "device {id} never came online\nagent log:\n{}", a.log());
            sleep_ms(50);
        }
        a
    }

    /// The compose file for revision `tag` written to the lab's dir.
    fn file(&self, tag: &str, client_fails: bool) -> PathBuf {
        let p = self.dir.join(format!("compose-{tag}-{client_fails}.yaml"));
        fs::write(&p, compose(tag, client_fails)).expect("write compose file");
        p
    }

    fn file_with_volume(&self, tag: &str, client_fails: bool) -> PathBuf {
        let p = self.dir.join(format!("compose-vol-{tag}-{client_fails}.yaml"));
        let text = compose_with_volume(tag, client_fails);
        assert!(text.contains("/data/log"), "the server writes the volume:\n{text}");
        fs::write(&p, text).expect("write compose file");
        p
    }

    fn push_args(&self, dev: &str, file: &Path, tars: &[&Path]) -> Vec<String> {
        let mut a: Vec<String> =
            ["push", "--key", s(&self.fleet.key), "--to", dev, "--health-window", &WINDOW.to_string(), "--app", s(file)]
                .iter()
                .map(|x| x.to_string())
                .collect();
        a.extend(tars.iter().map(|t| s(t).to_string()));
        a
    }

    fn push(&self, dev: &str, file: &Path, tars: &[&Path]) -> (i32, String, String) {
        self.push_with(dev, file, tars, &[])
    }

    /// `push` with more options (before the tarballs).
    fn push_with(&self, dev: &str, file: &Path, tars: &[&Path], opts: &[&str]) -> (i32, String, String) {
        let mut a = self.push_args(dev, file, &[]);
        a.extend(opts.iter().map(|o| o.to_string()));
        a.extend(tars.iter().map(|t| s(t).to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.fleet.run(&a)
    }
}

/// (container id, image id, running) of `name`, if it exists.
fn ctr(a: &Agent, name: &str) -> Option<(String, String, bool)> {
    let (code, out, _) = a.code(&["inspect", "--type", "container", name]);
    if code != 0 {
        return None;
    }
    let v: Value = serde_json::from_str(&out).ok()?;
    let v = v.as_array()?.first()?.clone();
    Some((v["Id"].as_str()?.to_string(), v["Image"].as_str()?.to_string(), v["State"]["Status"] == "running"))
}

/// Waits until both services run image `image`; returns their container ids.
fn wait_app(a: &Agent, image: &str) -> (String, String) {
    let got = try_poll(&format!("both services run {image}"), Duration::from_secs(90), || match (ctr(a, SERVER), ctr(a, CLIENT)) {
        (Some((s, si, true)), Some((c, ci, true))) if si == image && ci == image => Some((s, c)),
        _ => None,
    });
    got.unwrap_or_else(|e| {
        panic!("{e}: server {:?} client {:?}\nps -a: {:?}\nagent log:\n{}", ctr(a, SERVER), ctr(a, CLIENT), names(a), a.log())
    })
}

fn names(a: &Agent) -> Vec<String> {
    let mut v: Vec<String> = a.ps_all().iter().map(|r| r["Names"].as_str().unwrap_or("?").to_string()).collect();
    v.sort();
    v
}

fn journal(a: &Agent) -> Journal {
    Journal::load(a.root().path()).unwrap_or_else(|e| panic!("the update journal: {e}"))
}

#[test]
fn an_application_is_pushed_upgraded_and_a_failing_service_rolls_both_back() {
    let _h = host_shared();
    let lab = Lab::new();
    let a = lab.device("app-dev1", &[]);
    let (v1, v2) = (app_image("1", 0), app_image("2", 0));
    let (id1, id2) = (image_id(&v1), image_id(&v2));

    let (code, out, err) = lab.push("app-dev1", &lab.file("1", false), &[&v1]);
    assert_eq!(code, 0, "first revision: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    wait_app(&a, &id1);

    // The upgrade as a delta: the layers the device holds (app:1's base) are left out.
    let (code, out, err) = lab.push_with("app-dev1", &lab.file("2", false), &[&v2], &["--delta"]);
    assert_eq!(code, 0, "upgrade: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    assert!(out.contains("delta:") && out.contains("left out"), "the upgrade went as a delta: {out}");
    let (server2, client2) = wait_app(&a, &id2);
    let all = names(&a);
    assert!(
        all.iter().any(|n| n.starts_with("shop-server-1.prev-")) && all.iter().any(|n| n.starts_with("shop-client-1.prev-")),
        "the first revision is kept as the rollback target: {all:?}"
    );
    let d = journal(&a).deployments["shop"].app.clone().expect("an application deployment");
    assert_eq!(d.services.iter().map(|m| m.service.as_str()).collect::<Vec<_>>(), ["server", "client"], "start order");

    // Revision 3: the client exits; the server is fine. Its image (app:2) is on the board: no tarball.
    let mark = lab.sub.mark();
    let (code, out, err) = lab.push("app-dev1", &lab.file("2", true), &[]);
    assert_ne!(code, 0, "a failing revision must not report success\nstdout: {out}\nstderr: {err}");
    let topic = format!("{}result", root_of("app-dev1"));
    let r = lab.sub.wait_from(mark, "the rolled back result", PATIENCE, |m| m.topic == topic).json();
    assert_eq!(r["result"], "rolled_back", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("service client"), "the reason names the failing service: {reason}");
    let (server, client) = wait_app(&a, &id2);
    assert_eq!((server, client), (server2, client2), "the old containers run again, under their names");
    let j = journal(&a);
    assert!(j.active.is_none());
    assert_eq!(j.deployments["shop"].app.as_ref().map(|d| d.previous.len()), Some(1));

    // The device's own view: deployment status shows the application and its services.
    let st = a.ok(&["deployment", "status", "--format", "json"]);
    assert!(st.contains("shop") && st.contains(SERVER) && st.contains(CLIENT), "deployment status: {st}");
    let table = a.ok(&["deployment", "status"]);
    assert!(table.contains("shop (app)") && table.contains(&format!("  {CLIENT}")), "deployment status:\n{table}");

    // The operator's view: the application's revision and each service's state.
    let line = poll("fleet status shows the application", PATIENCE, || {
        let (code, out, _) = lab.fleet.run(&["status", "--format", "json", "app-dev1"]);
        let v: Value = serde_json::from_str(out.lines().next().unwrap_or("null")).unwrap_or(Value::Null);
        let c = v["Containers"].as_str().unwrap_or_default().to_string();
        (code == 0 && c.contains("server=app:2 running (healthy)") && c.contains("client=app:2 running")).then_some(c)
    });
    assert!(line.starts_with("shop@"), "{line}");

    // On the device: `berth rollback shop` brings the whole first revision back.
    let out = a.ok(&["rollback", "shop"]);
    assert!(out.contains("rolled back"), "{out}");
    wait_app(&a, &id1);
    assert!(ctr(&a, &format!("{SERVER}.prev-1")).is_none(), "the first revision runs under its names again: {:?}", names(&a));
}

#[test]
fn bad_applications_change_nothing() {
    let _h = host_shared();
    let lab = Lab::new();
    let a = lab.device("app-dev2", &[]);
    let v1 = app_image("1", 0);
    let id1 = image_id(&v1);
    // Two tarballs (the application's image and another): merged into one update.
    let extra = app_image("extra", 0);
    let (code, out, err) = lab.push("app-dev2", &lab.file("1", false), &[&v1, &extra]);
    assert_eq!(code, 0, "first revision: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    assert!(out.contains("images: 2 tarballs merged into one"), "{out}");
    let before = wait_app(&a, &id1);
    assert_eq!(a.code(&["image", "inspect", "app:extra"]).0, 0, "both tarballs' images were loaded");

    // Several tarballs without --app, or one that is not a docker-save archive: nothing is sent.
    let mark = lab.sub.mark();
    let one = ["push", "--key", s(&lab.fleet.key), "--to", "app-dev2", "--run", "--name xy app:1", s(&v1), s(&extra)];
    let (code, _, err) = lab.fleet.run(&one);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("several are for --app"), "{err}");
    let junk = lab.dir.join("junk.tar");
    fs::write(&junk, b"not a tarball").expect("write");
    let (code, _, err) = lab.push("app-dev2", &lab.file("1", false), &[&v1, &junk]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("merge the image tarballs") && err.contains("junk.tar"), "{err}");
    // One container whose --run image the tarball does not hold (a typo, a wrong tag): the
    // operator is told at once; the devices would load it and fail.
    let typo = ["push", "--key", s(&lab.fleet.key), "--to", "app-dev2", "--run", "--name xy app:2", s(&v1)];
    let (code, _, err) = lab.fleet.run(&typo);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("holds no image app:2 (it holds app:1)"), "{err}");
    sleep_ms(500);
    assert!(lab.sub.since(mark).iter().all(|m| !m.topic.ends_with("/update")), "nothing was sent");

    // An image that is neither on the device nor in the update: refused, nothing changed.
    let mark = lab.sub.mark();
    let (code, _, _) = lab.push("app-dev2", &lab.file("nowhere", false), &[]);
    assert_ne!(code, 0);
    let topic = format!("{}result", root_of("app-dev2"));
    let r = lab.sub.wait_from(mark, "the refusal", PATIENCE, |m| m.topic == topic).json();
    assert_eq!(r["result"], "refused", "{r}");
    assert!(r["reason"].as_str().unwrap_or_default().contains("image app:nowhere is neither on the device nor in the update"), "{r}");
    assert_eq!(wait_app(&a, &id1), before, "the running revision was not touched");

    // A single container's update under the application's name: refused, the application stays.
    let mark = lab.sub.mark();
    let single = ["push", "--key", s(&lab.fleet.key), "--to", "app-dev2", "--run", "--name shop app:1", s(&v1)];
    let (code, _, _) = lab.fleet.run(&single);
    assert_ne!(code, 0);
    let r = lab.sub.wait_from(mark, "the refusal of a single deploy named shop", PATIENCE, |m| m.topic == topic).json();
    assert_eq!(r["result"], "refused", "{r}");
    assert!(r["reason"].as_str().unwrap_or_default().contains("shop is an application (update it with --app)"), "{r}");
    assert!(journal(&a).deployments["shop"].app.is_some(), "the application's journal entry stays");
    assert!(ctr(&a, "shop").is_none(), "no container named shop was made: {:?}", names(&a));
    assert_eq!(wait_app(&a, &id1), before, "the running revision was not touched");

    // A depends_on cycle: the operator refuses it, nothing is sent.
    let cyc = lab.dir.join("cycle.yaml");
    fs::write(&cyc, "services:\n  a:\n    image: app:1\n    depends_on: [b]\n  b:\n    image: app:1\n    depends_on: [a]\n")
        .expect("write");
    let mark = lab.sub.mark();
    let (code, _, err) = lab.push("app-dev2", &cyc, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cycle"), "the error names the cycle: {err}");
    sleep_ms(500);
    assert!(lab.sub.since(mark).iter().all(|m| !m.topic.ends_with("/update")), "nothing was sent");
    assert_eq!(wait_app(&a, &id1), before);
}

/// The other way round: an application named like a single container's deployment is refused,
/// and that deployment, its journal entry and its container stay.
#[test]
fn an_application_named_like_a_single_deployment_is_refused() {
    let _h = host_shared();
    let lab = Lab::new();
    let a = lab.device("app-dev6", &[]);
    let v1 = app_image("1", 0);
    let id1 = image_id(&v1);
    let single = ["push", "--key", s(&lab.fleet.key), "--to", "app-dev6", "--run", "--name shop app:1 sleep 100000", s(&v1)];
    let (code, out, err) = lab.fleet.run(&single);
    assert_eq!(code, 0, "single deploy: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    let (shop, image, running) = ctr(&a, "shop").expect("the deployed container");
    assert!(running && image == id1, "shop runs app:1: {:?}", ctr(&a, "shop"));

    let mark = lab.sub.mark();
    let (code, _, _) = lab.push("app-dev6", &lab.file("1", false), &[]);
    assert_ne!(code, 0);
    let topic = format!("{}result", root_of("app-dev6"));
    let r = lab.sub.wait_from(mark, "the refusal", PATIENCE, |m| m.topic == topic).json();
    assert_eq!(r["result"], "refused", "{r}");
    assert!(r["reason"].as_str().unwrap_or_default().contains("shop is a single container's deployment, not an application"), "{r}");
    let d = &journal(&a).deployments["shop"];
    assert!(d.app.is_none() && d.container == shop, "the single deployment's entry stays: {d:?}");
    assert_eq!(ctr(&a, "shop"), Some((shop, id1, true)), "its container was not touched");
    assert!(ctr(&a, SERVER).is_none() && ctr(&a, CLIENT).is_none(), "no service was started: {:?}", names(&a));
}

/// Step pause of the agent in the kill trials (ms).
const STEP_DELAY: u64 = 300;

#[test]
fn kill_9_at_each_step_of_an_application_update_ends_all_old_or_all_new() {
    let _h = host_shared();
    let lab = Lab::new();
    let delay = STEP_DELAY.to_string();
    let mut a = lab.device("app-dev3", &[("BERTH_UPDATE_STEP_DELAY_MS", &delay)]);
    let tars = [app_image("1", 0), app_image("2", 0)];
    let ids = [image_id(&tars[0]), image_id(&tars[1])];
    let (code, out, err) = lab.push("app-dev3", &lab.file("1", false), &[&tars[0]]);
    assert_eq!(code, 0, "first revision: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    wait_app(&a, &ids[0]);
    let mut cur = 0;
    let plan = [
        (Step::Verified, true),
        (Step::Loaded, true),
        (Step::OldStopped, true),
        (Step::Started, true),
        (Step::Committing, true),
        (Step::OldStopped, false),
        (Step::RollingBack, false),
    ];
    let mut table = Vec::new();
    for (n, &(step, good)) in plan.iter().enumerate() {
        let k = 1 - cur;
        let tag = if k == 0 { "1" } else { "2" };
        let args = lab.push_args("app-dev3", &lab.file(tag, !good), &[&tars[k]]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let push = berth_tests::mqtt::Background::spawn(lab.fleet.command(&args), &lab.dir, &format!("push-{n}"));
        let prior = journal(&a).last.map(|l| l.id);
        let id = poll(&format!("trial {n}: the update reaches {step:?}"), PATIENCE, || {
            let j = journal(&a);
            j.active.as_ref().filter(|x| x.step == step && Some(&x.id) != prior.as_ref()).map(|x| x.id.clone())
        });
        sleep_ms(STEP_DELAY / 2 + (n as u64 * 97) % STEP_DELAY);
        a.kill9();
        let landed = journal(&a).active.map(|x| x.step);
        a.restart();
        let j = poll(&format!("trial {n}: the update ends"), PATIENCE, || {
            let j = journal(&a);
            (j.active.is_none() && j.last.as_ref().is_some_and(|l| l.id == id)).then_some(j)
        });
        let result = j.last.map(|l| l.result).unwrap_or_default();
        let ended = if result == "committed" { k } else { cur };
        if !good {
            assert_ne!(result, "committed", "trial {n}: a revision whose client exits was committed");
        }
        wait_app(&a, &ids[ended]);
        sleep_ms(1000);
        let (s1, c1) = (ctr(&a, SERVER), ctr(&a, CLIENT));
        assert!(
            s1.as_ref().is_some_and(|x| x.1 == ids[ended] && x.2) && c1.as_ref().is_some_and(|x| x.1 == ids[ended] && x.2),
            "trial {n}: both services stay on one revision: {s1:?} {c1:?}"
        );
        let running: Vec<String> =
            a.ps_all().iter().filter(|r| r["State"] == "running").map(|r| r["Names"].as_str().unwrap_or("?").to_string()).collect();
        assert_eq!(running.len(), 2, "trial {n}: only the two services run: {running:?}");
        table.push(format!("{step:?} good={good} landed={landed:?} -> {result}"));
        drop(push);
        cur = ended;
    }
    eprintln!("application kill -9 trials:\n{}", table.join("\n"));
}

#[test]
fn a_revision_bound_volume_returns_to_the_old_data_after_a_rollback() {
    let _h = host_shared();
    let lab = Lab::new();
    let a = lab.device("app-dev4", &[]);
    let (v1, v2) = (app_image("1", 0), app_image("2", 0));
    let (id1, id2) = (image_id(&v1), image_id(&v2));
    let log = a.root().path().join("volumes/shop_data/_data/log");
    let read = || fs::read_to_string(&log).unwrap_or_default();
    let (code, out, err) = lab.push("app-dev4", &lab.file_with_volume("1", false), &[&v1]);
    assert_eq!(code, 0, "first revision: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    wait_app(&a, &id1);
    let (code, out, err) = lab.push("app-dev4", &lab.file_with_volume("2", false), &[&v2]);
    assert_eq!(code, 0, "second revision: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    wait_app(&a, &id2);
    assert_eq!(read(), "rev-1\nrev-2\n", "revision 2 wrote the volume after revision 1");
    let snaps: Vec<String> = fs::read_dir(a.root().path().join("volumes/shop_data"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(snaps.iter().any(|n| n.starts_with("snap-")), "revision 1's data is kept for a rollback: {snaps:?}");

    // Revision 3 (image app:1 again, on the board) writes its mark, then its client fails.
    let (code, _, _) = lab.push("app-dev4", &lab.file_with_volume("1", true), &[]);
    assert_ne!(code, 0);
    wait_app(&a, &id2);
    let text = poll("the old server wrote its restart mark", PATIENCE, || {
        let t = read();
        (t.lines().count() >= 3).then_some(t)
    });
    assert_eq!(text, "rev-1\nrev-2\nrev-2\n", "the volume is as revision 2 left it, then revision 2 started again");
}

#[test]
fn an_application_whose_images_are_pinned_by_digest_is_pulled_by_the_device() {
    use berth_tests::registry::{Auth, Registry};
    let _h = host_shared();
    let lab = Lab::new();
    let reg = Registry::start(false, Auth::None);
    let a = lab.device("app-dev5", &[]);
    let v1 = app_image("1", 0);
    let id1 = image_id(&v1);
    reg.put(&format!("docker-archive:{}", s(&v1)), "fleet/app:1");
    let (_, digest) = reg.raw_manifest("fleet/app:1");
    let pinned = format!("{}/fleet/app@{digest}", reg.host);
    let file = lab.dir.join("pinned.yaml");
    fs::write(&file, compose("1", false).replace("image: app:1", &format!("image: {pinned}"))).expect("write compose file");

    // No tarball: only the signed, digest-pinned references go over MQTT; the device pulls.
    let mark = lab.sub.mark();
    let (code, out, err) = lab.push("app-dev5", &file, &[]);
    assert_eq!(code, 0, "exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    wait_app(&a, &id1);
    let progress = format!("{}progress", root_of("app-dev5"));
    assert!(
        lab.sub.since(mark).iter().any(|m| m.topic == progress && m.json_or_null()["phase"] == "pulling"),
        "no 'pulling' progress:\n{}",
        lab.sub.dump(mark)
    );
    assert!(out.contains("with the images on the devices") && out.contains("chunks: 0 sent, 0 resent"), "no tarball, no chunks: {out}");

    // A digest the registry does not hold: the update fails at the pull, nothing changes.
    let before = wait_app(&a, &id1);
    let wrong = format!("{}/fleet/app@sha256:{}", reg.host, "0".repeat(64));
    fs::write(&file, compose("1", false).replace("image: app:1", &format!("image: {wrong}"))).expect("write compose file");
    let mark = lab.sub.mark();
    let (code, _, _) = lab.push("app-dev5", &file, &[]);
    assert_ne!(code, 0);
    let topic = format!("{}result", root_of("app-dev5"));
    let r = lab.sub.wait_from(mark, "the failure", PATIENCE, |m| m.topic == topic).json();
    assert_eq!(r["result"], "failed", "{r}");
    assert!(r["reason"].as_str().unwrap_or_default().contains("does not pull"), "{r}");
    assert_eq!(wait_app(&a, &id1), before, "the running revision was not touched");
}
