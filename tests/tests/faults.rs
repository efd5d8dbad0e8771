//! Fault injection for fleet updates (issue 9, parts 1 and 4): a real mosquitto, real agents each
//! on its own `--root` and device id, real containers, and real faults:
//!
//! - the agent `kill -9`'d at every journaled step of an apply (after download, during load,
//!   after stop-old, after start-new / during the health window, during roll-back, during commit),
//!   at random instants inside the step (`BERTH_UPDATE_STEP_DELAY_MS` widens each step), half
//!   with a good new image and half with one that exits at once; after the restart exactly one
//!   container `app` runs, with the old or the new image (whichever the journal's result says),
//!   `berth system verify` passes, and the retained state and `berth deployment status` agree;
//! - the broker restarted (same port, sessions lost; SIGTERM and SIGKILL) several times
//!   mid-transfer, with this file's sender and with `berth fleet push`: the transfer resumes and
//!   commits, the chunks sent again stay within the sender's window per restart, and the device
//!   gets no chunk it already had from a sender that resends exactly what it reports missing;
//! - the TCP connection between agent and broker cut several times mid-transfer (a proxy in this
//!   process): the transfer resumes and commits;
//! - the disk (a small tmpfs as `--root`) full mid-transfer and mid-load: `failed` with the
//!   reason, the old version untouched, nothing half-applied, the space given back;
//! - a chunk damaged on disk while the agent was down: found at restart, fetched again, committed;
//! - a fleet of agents (`BERTH_FAULT_FLEET`, default 50) updated with one push through one
//!   mosquitto, with the broker's and the agents' memory measured;
//! - the README's per-device mosquitto ACL enforced by a mutual-TLS broker: an update goes
//!   through, and another device cannot publish on a device's topics.
//!
//! Most senders here are this file's [`Pusher`]: it follows docs/update-protocol.md (a window of
//! chunks beyond the slowest target's `next`, exactly the `missing` ranges resent) and counts every
//! chunk it sends, so resends can be asserted on; the fleet test and one broker-restart test use
//! `berth fleet push` itself (its `chunks: N sent, M resent` line).
//!
//! Every test prints its table to stderr and appends it to `<target>/faults-table.txt` (beside
//! `debug/berth`); scripts/test prints that file after the tests. Knobs: `BERTH_FAULT_TRIALS`
//! (kill trials per step, default 4), `BERTH_FAULT_FLEET` (agents in the fleet test, default 50),
//! `BERTH_FAULT_SEED` (the random instants); `scripts/faults --trials N --fleet M` sets them for a
//! longer run outside CI.
//!
//! Nothing asserts how fast anything is: every wait is a bounded poll that only a hung agent
//! reaches. Needs root, mosquitto, mosquitto-clients, umoci, skopeo (scripts/test installs them).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use berth::daemon::update::journal::{Journal, Step};
use berth_proto::sign::SecretKey;
use berth_tests::agent::{alive, host_shared, Agent};
use berth_tests::fixtures::read_archive;
use berth_tests::mqtt::{app_image, device_on, root_of, update_files, wait_online, Background, Broker, Crafted, Fleet, Msg, Subscriber};
use berth_tests::{berth_bin, fill, free_bytes, require_root, try_poll, Root};

/// Upper bound of any wait: only a hung or broken agent or broker takes this long.
const PATIENCE: Duration = Duration::from_secs(180);

/// Health window of every update here (seconds).
const WINDOW: u32 = 2;

/// Chunks the sender keeps in flight beyond the slowest target's `next`.
const SEND_WINDOW: u32 = 16;

/// A chunk a target still lacks is sent again at most this often.
const RESEND_AFTER: Duration = Duration::from_secs(3);

fn env_num(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("BERTH_FAULT_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1);
        eprintln!("faults: BERTH_FAULT_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

static TABLE: OnceLock<Mutex<PathBuf>> = OnceLock::new();

/// Prints `text` under `title` to stderr and appends it to `<target>/faults-table.txt` (the file
/// is started afresh by the first report of a test process).
fn report(title: &str, text: &str) {
    let lock = TABLE.get_or_init(|| {
        let bin = berth_bin();
        let dir = bin.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        let path = dir.join("faults-table.txt");
        let _ = fs::remove_file(&path);
        Mutex::new(path)
    });
    let path = lock.lock().unwrap_or_else(|e| e.into_inner());
    let block = format!("\n== {title}\n{text}");
    eprintln!("{block}");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&*path) {
        let _ = f.write_all(block.as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// The bed: a broker, a subscriber on every device topic, a signing key.

struct Bed {
    sub: Subscriber,
    /// `berth fleet` on this broker; its key (made by `berth fleet keygen`) also signs what this
    /// file's [`Pusher`] sends.
    fleet: Fleet,
    broker: Broker,
    key: SecretKey,
    public: PathBuf,
}

fn bed() -> Bed {
    require_root();
    let broker = Broker::start();
    let fleet = Fleet::new(&broker, broker.dir());
    let key = SecretKey::load(&fleet.key).expect("load the fleet key");
    let public = fleet.public.clone();
    let sub = broker.subscribe(&["berth/v1/#"], &["berth/v1/updates/#"]);
    Bed { sub, fleet, broker, key, public }
}

/// `berth fleet push` of `tar` to `devs` with `--chunk-size chunk`, in the background.
fn fleet_push(bed: &Bed, devs: &[&str], tar: &Path, chunk: u32, run: &[String]) -> Background {
    let line = run.iter().map(|w| if w.contains(' ') { format!("'{w}'") } else { w.clone() }).collect::<Vec<_>>().join(" ");
    let mut args = bed.fleet.push_args(devs, tar, WINDOW, &line);
    args.insert(1, "--chunk-size".into());
    args.insert(2, chunk.to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Background::spawn(bed.fleet.command(&a), bed.broker.dir(), "push")
}

/// `chunks: N sent, M resent` from `berth fleet push`'s output.
fn push_counts(out: &str) -> Option<(u64, u64)> {
    let l = out.lines().find_map(|l| l.trim().strip_prefix("chunks: "))?;
    let (a, b) = l.split_once(" sent, ")?;
    Some((a.trim().parse().ok()?, b.trim_end_matches(" resent").trim().parse().ok()?))
}

/// What the agent logged when the last chunk came: (duplicates, malformed).
fn agent_duplicates(log: &str) -> Option<(u64, u64)> {
    let l = log.lines().rev().find(|l| l.contains("chunks received ("))?;
    let inner = l.split_once("chunks received (")?.1;
    let (d, rest) = inner.split_once(" duplicates, ")?;
    let r = rest.split_whitespace().next()?;
    Some((d.trim().parse().ok()?, r.parse().ok()?))
}

impl Bed {
    /// An agent for device `id` on `root`, connected to `url` (the broker, or a proxy in front of
    /// it), with `env`; returns once it is online.
    fn device(&self, root: Root, url: &str, id: &str, env: &[(&str, &str)]) -> Agent {
        let a = device_on(root, url, id, &self.public, &[], env);
        wait_online(&self.sub, id, PATIENCE);
        a
    }

    /// Pushes `tar` to `devs` as `run` (seq `seq`) and returns every target's result.
    fn push(&self, devs: &[&str], seq: u64, tar: &Path, chunk: u32, run: &[&str]) -> (Vec<Value>, Pusher<'_>) {
        let bytes = fs::read(tar).unwrap_or_else(|e| panic!("read {}: {e}", tar.display()));
        let c = Crafted::deploy(&self.key, seq, devs, &bytes, chunk, run, WINDOW);
        let mut p = Pusher::start(self, c, devs);
        let r = p.run(PATIENCE, |_| {});
        (r, p)
    }
}

fn image_id(tar: &Path) -> String {
    read_archive(tar)[0].id.clone()
}

fn run_args(tag: &str, good: bool) -> Vec<String> {
    let mut v: Vec<String> =
        ["--name", "app", "--restart", "always", "--stop-signal", "KILL", &format!("app:{tag}")].iter().map(|s| s.to_string()).collect();
    if good {
        v.extend(["sleep".into(), "100000".into()]);
    } else {
        v.extend(["sh".into(), "-c".into(), "echo failing; exit 3".into()]);
    }
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// The sender.

/// What the sender knows of one target.
#[derive(Default, Clone)]
struct Target {
    progress: Option<Value>,
    result: Option<Value>,
    changed: Option<Instant>,
}

/// A sender that follows the protocol: envelopes to each target, then chunks on the shared topic,
/// at most [`SEND_WINDOW`] beyond the slowest target's `next`, and again whatever a target's
/// progress says it lacks (at most every [`RESEND_AFTER`] per chunk). Counts every send.
struct Pusher<'a> {
    bed: &'a Bed,
    c: Crafted,
    devices: Vec<String>,
    targets: BTreeMap<String, Target>,
    cursor: usize,
    /// Per chunk: how often it was sent, and when last.
    sends: Vec<u32>,
    last: Vec<Option<Instant>>,
}

impl<'a> Pusher<'a> {
    /// Sends the envelope to every target and waits until each reports progress for it.
    fn start(bed: &'a Bed, c: Crafted, devs: &[&str]) -> Pusher<'a> {
        let cursor = bed.sub.mark();
        for d in devs {
            c.send_envelope(&bed.broker, d);
        }
        let n = c.count() as usize;
        let mut p = Pusher {
            bed,
            c,
            devices: devs.iter().map(|d| d.to_string()).collect(),
            targets: devs.iter().map(|d| (d.to_string(), Target::default())).collect(),
            cursor,
            sends: vec![0; n],
            last: vec![None; n],
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            p.read();
            if p.targets.values().all(|t| t.progress.is_some() || t.result.is_some()) {
                break;
            }
            assert!(Instant::now() < deadline, "no progress for update {} from some of {devs:?}:\n{}", p.c.id(), p.bed.sub.dump(cursor));
            sleep_ms(50);
        }
        p
    }

    fn id(&self) -> String {
        self.c.id().to_string()
    }

    /// Takes the messages that arrived since the last call.
    fn read(&mut self) {
        let msgs: Vec<Msg> = self.bed.sub.since(self.cursor);
        self.cursor += msgs.len();
        let id = self.id();
        for m in msgs {
            let Some(rest) = m.topic.strip_prefix("berth/v1/") else { continue };
            let Some((dev, what)) = rest.split_once('/') else { continue };
            let Some(t) = self.targets.get_mut(dev) else { continue };
            let j = m.json_or_null();
            if j["id"] != id.as_str() {
                continue;
            }
            match what {
                "progress" => {
                    if t.progress.as_ref().is_none_or(|p| p["have"] != j["have"] || p["phase"] != j["phase"]) {
                        t.changed = Some(Instant::now());
                    }
                    t.progress = Some(j);
                }
                "result" => t.result = Some(j),
                _ => {}
            }
        }
    }

    /// Does target `t` still lack chunk `i`, as far as its last progress tells?
    fn lacks(p: &Value, i: u32) -> bool {
        let next = p["next"].as_u64().unwrap_or(0) as u32;
        if i < next {
            return false;
        }
        let ranges: Vec<(u32, u32)> = p["missing"]
            .as_array()
            .map(|a| a.iter().map(|r| (r[0].as_u64().unwrap_or(0) as u32, r[1].as_u64().unwrap_or(0) as u32)).collect())
            .unwrap_or_default();
        let top = ranges.iter().map(|r| r.1).max();
        ranges.iter().any(|(a, b)| (*a..=*b).contains(&i)) || top.is_none_or(|top| i > top)
    }

    fn receiving(t: &Target) -> bool {
        t.result.is_none() && t.progress.as_ref().is_none_or(|p| p["phase"] == "receiving")
    }

    fn send(&mut self, i: u32) {
        self.c.send(&self.bed.broker, &[i]);
        self.sends[i as usize] += 1;
        self.last[i as usize] = Some(Instant::now());
    }

    /// One round: read, then send what the targets lack within the window. True when every
    /// target has a result.
    fn tick(&mut self) -> bool {
        self.read();
        if self.targets.values().all(|t| t.result.is_some()) {
            return true;
        }
        let active: Vec<Value> = self.targets.values().filter(|t| Self::receiving(t)).filter_map(|t| t.progress.clone()).collect();
        if active.is_empty() {
            return false;
        }
        let count = self.c.count();
        let slowest = active.iter().map(|p| p["next"].as_u64().unwrap_or(0) as u32).min().unwrap_or(0);
        let end = count.min(slowest.saturating_add(SEND_WINDOW));
        let mut budget = SEND_WINDOW;
        for i in slowest..end {
            if budget == 0 {
                break;
            }
            let recent = self.last[i as usize].is_some_and(|t| t.elapsed() < RESEND_AFTER);
            if recent || !active.iter().any(|p| Self::lacks(p, i)) {
                continue;
            }
            self.send(i);
            budget -= 1;
        }
        false
    }

    /// Ticks until every target has a result (or `timeout`: panics); `hook` runs after each tick.
    fn run(&mut self, timeout: Duration, mut hook: impl FnMut(&mut Self)) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        while !self.tick() {
            hook(self);
            assert!(
                Instant::now() < deadline,
                "update {}: not every target has a result after {timeout:?}: {:?}",
                self.id(),
                self.targets.iter().map(|(d, t)| (d.clone(), t.progress.clone(), t.result.clone())).collect::<Vec<_>>()
            );
            sleep_ms(20);
        }
        self.devices.iter().map(|d| self.targets[d].result.clone().unwrap_or(Value::Null)).collect()
    }

    /// Chunks sent in all, distinct chunks sent, and sends beyond the first of a chunk.
    fn counts(&self) -> (u32, u32, u32) {
        let total: u32 = self.sends.iter().sum();
        let unique = self.sends.iter().filter(|n| **n > 0).count() as u32;
        (total, unique, total - unique)
    }

    /// The highest chunk index sent so far + 1.
    fn sent_up_to(&self) -> u32 {
        self.sends.iter().rposition(|n| *n > 0).map_or(0, |i| i as u32 + 1)
    }
}

// ---------------------------------------------------------------------------------------------
// What a device runs, as the suite checks it.

/// `inspect` of a container as JSON, or `None`.
fn try_inspect(a: &Agent, name: &str) -> Option<Value> {
    let (code, out, _) = a.code(&["inspect", "--type", "container", name]);
    if code != 0 {
        return None;
    }
    let v: Value = serde_json::from_str(&out).ok()?;
    v.as_array().and_then(|a| a.first().cloned())
}

/// (image id, pid) of `app` if it runs.
fn app_running(a: &Agent) -> Option<(String, u64)> {
    let v = try_inspect(a, "app")?;
    (v["State"]["Status"] == "running")
        .then(|| (v["Image"].as_str().unwrap_or_default().to_string(), v["State"]["Pid"].as_u64().unwrap_or(0)))
}

fn running_names(a: &Agent) -> Vec<String> {
    let (code, out, _) = a.code(&["ps", "-a", "--no-trunc", "--format", "json"]);
    if code != 0 {
        return vec![format!("(ps failed: {out})")];
    }
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["State"] == "running")
        .map(|v| v["Names"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn journal(root: &Path) -> Journal {
    // Written by rename: a reader sees the old or the new one whole.
    Journal::load(root).unwrap_or_else(|e| panic!("the update journal of {}: {e}", root.display()))
}

fn deployment_image(state: &Value) -> Option<String> {
    state["deployments"].as_array()?.iter().find(|d| d["name"] == "app").and_then(|d| d["image_id"].as_str()).map(str::to_string)
}

/// `berth --root R system verify`: Ok, or its output.
fn store_verify(root: &Root) -> Result<(), String> {
    let out = root.cmd(&["system", "verify"]);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "berth system verify: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// After update `id` ended on device `dev`: exactly one container runs, `app`, with the image
/// the journal's result names (new when committed, old otherwise); it stays up; the store
/// verifies; the retained state and `deployment status` say the same. Returns (ended new, result).
fn check_end(bed: &Bed, a: &Agent, dev: &str, id: &str, old: &str, new: &str) -> Result<(bool, String), String> {
    let root = a.root().path().to_path_buf();
    let j = try_poll("the update ended in the journal", PATIENCE, || {
        let j = journal(&root);
        (j.active.is_none() && j.last.as_ref().is_some_and(|l| l.id == id)).then_some(j)
    })?;
    let result = j.last.as_ref().map(|l| l.result.clone()).unwrap_or_default();
    let want = if result == "committed" { new } else { old };
    let (img, pid) =
        try_poll(&format!("app runs {want} (result {result})"), Duration::from_secs(60), || app_running(a).filter(|(i, _)| i == want))
            .map_err(|e| format!("{e}; app: {:?}", try_inspect(a, "app").map(|v| (v["State"].clone(), v["Image"].clone()))))?;
    sleep_ms(1500);
    match app_running(a) {
        Some((i, p)) if i == img && p == pid => {}
        other => return Err(format!("app did not stay up with {img} (pid {pid}): now {other:?}")),
    }
    if !alive(pid as u32) {
        return Err(format!("app's pid {pid} is not alive"));
    }
    let names = running_names(a);
    if names != ["app"] {
        return Err(format!("running containers should be exactly [app], are {names:?}"));
    }
    store_verify(a.root())?;
    let topic = format!("{}state", root_of(dev));
    try_poll("the retained state names the running image", Duration::from_secs(30), || {
        let st = bed.sub.latest(&topic)?.json_or_null();
        (deployment_image(&st).as_deref() == Some(want) && st["update"].is_null() && st["last_result"]["id"] == id).then_some(())
    })
    .map_err(|e| format!("{e}: {}", bed.sub.latest(&topic).map(|m| m.payload).unwrap_or_default()))?;
    let (code, out, err) = a.code(&["deployment", "status", "--format", "json"]);
    let st: Value = serde_json::from_str(&out).map_err(|e| format!("deployment status --format json ({code}): {e}: {out}{err}"))?;
    if deployment_image(&st).as_deref() != Some(want) {
        return Err(format!("deployment status does not name {want}: {out}"));
    }
    Ok((img == new, result))
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 at every journaled step.

const STEPS: [Step; 6] = [Step::Verified, Step::Loaded, Step::OldStopped, Step::Started, Step::RollingBack, Step::Committing];

fn step_name(s: Step) -> &'static str {
    match s {
        Step::Verified => "verified (load next)",
        Step::Loaded => "loaded (stop old next)",
        Step::OldStopped => "old stopped (start next)",
        Step::Started => "started (health window)",
        Step::RollingBack => "rolling back",
        Step::Committing => "committing",
    }
}

fn order(s: Step) -> u32 {
    match s {
        Step::Verified => 0,
        Step::Loaded => 1,
        Step::OldStopped => 2,
        Step::Started => 3,
        Step::RollingBack | Step::Committing => 4,
    }
}

/// Step pause of the agents in the kill trials (ms).
const STEP_DELAY: u64 = 300;

/// How long after a step is journaled the kill may land: the pause plus about the step's own
/// work (a failing new version ends its health window at once).
fn spread(s: Step, good: bool) -> u64 {
    STEP_DELAY
        + match s {
            Step::Verified => 700,
            Step::Started if good => u64::from(WINDOW) * 1000,
            _ => 300,
        }
}

struct Trial {
    step: Step,
    good: bool,
    /// Where the journal was when the agent died (`None`: the update had ended).
    landed: Option<Step>,
    ended_new: bool,
    error: Option<String>,
}

/// One device running trials one after another. `plan`: (step to kill in, good image?).
fn kill_worker(bed: &Bed, dev: &str, plan: &[(Step, bool)], seed: u64) -> Vec<Trial> {
    let mut rng = Rng(seed | 1);
    let delay = STEP_DELAY.to_string();
    let env = [("BERTH_UPDATE_STEP_DELAY_MS", delay.as_str())];
    let tags = ["ka", "kb"];
    let imgs: Vec<PathBuf> = tags.iter().map(|t| app_image(t, 0)).collect();
    let ids: Vec<String> = imgs.iter().map(|p| image_id(p)).collect();
    let mut a = bed.device(Root::new(), &bed.broker.url(), dev, &env);
    let mut seq = 1;
    let (r, _) = bed.push(&[dev], seq, &imgs[0], 0, &strs(&run_args(tags[0], true)));
    assert_eq!(r[0]["result"], "committed", "{dev}: first version: {}\nagent log:\n{}", r[0], a.log());
    let mut out = Vec::new();
    for &(step, good) in plan {
        seq += 1;
        let Some((cur, _)) = app_running(&a) else {
            panic!("{dev}: app does not run before a trial:\nagent log:\n{}", a.log());
        };
        let k = usize::from(cur == ids[0]);
        let (old, new) = (cur.clone(), ids[k].clone());
        let bytes = fs::read(&imgs[k]).expect("read the image");
        let c = Crafted::deploy(&bed.key, seq, &[dev], &bytes, 0, &strs(&run_args(tags[k], good)), WINDOW);
        let id = c.id().to_string();
        let mut p = Pusher::start(bed, c, &[dev]);
        let root = a.root().path().to_path_buf();
        let deadline = Instant::now() + PATIENCE;
        let reached = loop {
            p.tick();
            let j = journal(&root);
            match j.active.as_ref().filter(|x| x.id == id) {
                Some(x) if x.step == step => break true,
                Some(x) if order(x.step) > order(step) => break false,
                _ => {}
            }
            if j.last.as_ref().is_some_and(|l| l.id == id) {
                break false;
            }
            assert!(Instant::now() < deadline, "{dev}: update {id} never reached {step:?}\nagent log:\n{}", a.log());
            sleep_ms(10);
        };
        let mut trial = Trial { step, good, landed: None, ended_new: false, error: None };
        if !reached {
            trial.error = Some(format!("the kill instant was missed: the journal went past {step:?}"));
        } else {
            sleep_ms(rng.below(spread(step, good)));
            a.kill9();
            trial.landed = journal(&root).active.filter(|x| x.id == id).map(|x| x.step);
            a.restart();
            match check_end(bed, &a, dev, &id, &old, &new) {
                Ok((ended_new, result)) => {
                    trial.ended_new = ended_new;
                    if !good && result == "committed" {
                        trial.error = Some("a new version that exits at once was committed".into());
                    } else if good && ended_new != (result == "committed") {
                        trial.error = Some(format!("result {result} but ended new = {ended_new}"));
                    }
                }
                Err(e) => trial.error = Some(e),
            }
        }
        if let Some(e) = &trial.error {
            let log = a.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            trial.error = Some(format!(
                "{dev} update {id} step {step:?} good={good} landed {:?}: {e}\nagent log (tail):\n{}",
                trial.landed,
                tail.join("\n")
            ));
            // A device in an unknown state would spoil the next trials: a fresh one.
            drop(a);
            a = bed.device(Root::new(), &bed.broker.url(), dev, &env);
            seq += 1;
            let (r, _) = bed.push(&[dev], seq, &imgs[0], 0, &strs(&run_args(tags[0], true)));
            assert_eq!(r[0]["result"], "committed", "{dev}: first version of a fresh device: {}\nagent log:\n{}", r[0], a.log());
        }
        eprintln!(
            "faults: {dev} trial {:?} good={good} landed={:?} ended {} {}",
            step,
            trial.landed,
            if trial.ended_new { "new" } else { "old" },
            if trial.error.is_some() { "FAILED" } else { "ok" }
        );
        out.push(trial);
    }
    out
}

#[test]
fn kill_9_at_every_journaled_step_ends_with_the_old_or_the_new_version_and_a_sound_store() {
    let _h = host_shared();
    let n = env_num("BERTH_FAULT_TRIALS", 4).max(1);
    let bed = bed();
    // Half good, half failing where both can happen; roll-back needs a failing image and commit
    // a good one.
    let mut plan: Vec<(Step, bool)> = Vec::new();
    for i in 0..n {
        for s in STEPS {
            let good = match s {
                Step::RollingBack => false,
                Step::Committing => true,
                _ => i % 2 == 0,
            };
            plan.push((s, good));
        }
    }
    let mut rng = Rng::new();
    // Two devices in parallel, each taking every other trial.
    let plans: [Vec<(Step, bool)>; 2] = [
        plan.iter().copied().enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, p)| p).collect(),
        plan.iter().copied().enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, p)| p).collect(),
    ];
    let seeds = [rng.next(), rng.next()];
    let t0 = Instant::now();
    let trials: Vec<Trial> = std::thread::scope(|sc| {
        let hs: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(w, p)| {
                let bed = &bed;
                let seed = seeds[w];
                sc.spawn(move || kill_worker(bed, &format!("kill-dev{w}"), p, seed))
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("a kill worker panicked")).collect()
    });
    let mut t = format!(
        "kill -9 of the agent at each journaled step ({n} trials per step, step pause {STEP_DELAY} ms, {} s in all)\n",
        t0.elapsed().as_secs()
    );
    let _ = writeln!(
        t,
        "{:<26} {:>6} {:>5} {:>8} {:>9} {:>9} {:>8}",
        "step", "trials", "good", "failing", "ended old", "ended new", "failures"
    );
    for s in STEPS {
        let mine: Vec<&Trial> = trials.iter().filter(|x| x.step == s).collect();
        let _ = writeln!(
            t,
            "{:<26} {:>6} {:>5} {:>8} {:>9} {:>9} {:>8}",
            step_name(s),
            mine.len(),
            mine.iter().filter(|x| x.good).count(),
            mine.iter().filter(|x| !x.good).count(),
            mine.iter().filter(|x| x.error.is_none() && !x.ended_new).count(),
            mine.iter().filter(|x| x.error.is_none() && x.ended_new).count(),
            mine.iter().filter(|x| x.error.is_some()).count(),
        );
    }
    let _ = writeln!(t, "the same trials by the journal's step when the agent died (\"ended\": the update had just ended):");
    let mut landed: BTreeMap<(u32, String), (usize, usize, usize)> = BTreeMap::new();
    for x in &trials {
        let key =
            x.landed.map_or((9, "ended".to_string()), |s| (order(s) * 2 + u32::from(s == Step::Committing), step_name(s).to_string()));
        let e = landed.entry(key).or_default();
        match (&x.error, x.ended_new) {
            (Some(_), _) => e.2 += 1,
            (None, false) => e.0 += 1,
            (None, true) => e.1 += 1,
        }
    }
    for ((_, name), (old, new, failed)) in &landed {
        let _ = writeln!(t, "{:<26} {:>6} {:>5} {:>8} {:>9} {:>9} {:>8}", name, old + new + failed, "", "", old, new, failed);
    }
    let failures: Vec<&String> = trials.iter().filter_map(|x| x.error.as_ref()).collect();
    for f in &failures {
        let _ = writeln!(t, "FAILED: {f}");
    }
    report("kill -9 at each step", &t);
    assert!(failures.is_empty(), "{} of {} kill trials failed (table above)", failures.len(), trials.len());
}

// ---------------------------------------------------------------------------------------------
// 2. and 3. The broker restarted, and the connection cut, mid-transfer.

/// A TCP proxy on loopback in front of the broker whose connections can be cut.
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = l.local_addr().expect("proxy address").port();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for inc in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(down) = inc else { continue };
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (Ok(d2), Ok(u2), Ok(d3), Ok(u3)) = (down.try_clone(), up.try_clone(), down.try_clone(), up.try_clone()) else {
                    continue;
                };
                {
                    let mut c = c2.lock().unwrap_or_else(|e| e.into_inner());
                    c.push(d3);
                    c.push(u3);
                }
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                };
                pipe(down, up);
                pipe(u2, d2);
            }
        });
        Proxy { port, conns, stop }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Drops every connection through the proxy (both ends see the TCP connection go).
    fn cut(&self) -> usize {
        let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        for s in c.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let n = c.len() / 2;
        c.clear();
        n
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.cut();
    }
}

/// A device with v1 running, then a larger update (`pad` bytes, `chunk`-byte chunks) whose
/// transfer `fault` interrupts `times` times, evenly spread over the chunks; waits for the device
/// to come back online after each. Returns (result, pusher counts, faults done, chunk count).
fn transfer_with_faults(
    bed: &mut Bed,
    dev: &str,
    url: &str,
    pad: usize,
    chunk: u32,
    times: u32,
    mut fault: impl FnMut(&mut Bed),
) -> (Value, (u32, u32, u32), u32, u32, Agent) {
    let a = bed.device(Root::new(), url, dev, &[]);
    let v1 = app_image("f1", 0);
    let (r, _) = bed.push(&[dev], 1, &v1, 0, &strs(&run_args("f1", true)));
    assert_eq!(r[0]["result"], "committed", "{dev}: v1: {}\nagent log:\n{}", r[0], a.log());
    let big = app_image(&format!("big-{dev}"), pad);
    let bytes = fs::read(&big).expect("read the big image");
    let c = Crafted::deploy(&bed.key, 2, &[dev], &bytes, chunk, &strs(&run_args(&format!("big-{dev}"), true)), WINDOW);
    let count = c.count();
    let at: Vec<u32> = (1..=times).map(|k| count * k / (times + 1)).collect();
    let status = format!("{}status", root_of(dev));
    // The pusher borrows the bed, and the fault needs it mutably: the pusher is rebuilt around
    // each fault from its counts.
    let mut done = 0;
    let mut sends: Vec<u32> = vec![0; count as usize];
    let mut crafted = Some(c);
    let result = loop {
        let c = crafted.take().expect("the update");
        let mut p = Pusher::start(bed, c, &[dev]);
        for (i, n) in sends.iter().enumerate() {
            p.sends[i] = *n;
            if *n > 0 {
                p.last[i] = Some(Instant::now());
            }
        }
        let next_fault = at.get(done as usize).copied();
        let mut hit = false;
        let deadline = Instant::now() + PATIENCE;
        while !p.tick() {
            if next_fault.is_some_and(|f| p.sent_up_to() >= f) {
                hit = true;
                break;
            }
            assert!(Instant::now() < deadline, "{dev}: the transfer did not end\nagent log:\n{}", a.log());
            sleep_ms(20);
        }
        sends = p.sends.clone();
        let r = p.targets[dev].result.clone();
        crafted = Some(p.c);
        if !hit {
            break r.unwrap_or(Value::Null);
        }
        let mark = bed.sub.mark();
        fault(bed);
        done += 1;
        bed.sub
            .wait_from(mark, &format!("{dev} online again after fault {done}"), PATIENCE, |m| m.topic == status && m.payload == "online");
    };
    let total: u32 = sends.iter().sum();
    let unique = sends.iter().filter(|n| **n > 0).count() as u32;
    (result, (total, unique, total - unique), done, count, a)
}

#[test]
fn broker_restarted_mid_transfer_several_times_resumes_without_resending_what_the_device_has() {
    let _h = host_shared();
    let mut bed = bed();
    let url = bed.broker.url();
    let times = 4;
    let mut k = 0;
    // Alternately a clean stop (SIGTERM) and a crash (SIGKILL), right after a burst of chunks.
    let (r, (total, unique, resent), done, count, a) =
        transfer_with_faults(&mut bed, "restart-dev", &url, 6 << 20, 32 * 1024, times, |b| {
            k += 1;
            if k % 2 == 0 {
                b.broker.kill_restart()
            } else {
                b.broker.restart()
            }
        });
    report(
        "broker restarted mid-transfer",
        &format!(
            "{done} broker restarts (SIGTERM and SIGKILL alternately); {count} chunks: sent {total}, distinct {unique}, resent {resent} (window {SEND_WINDOW}); \
             the agent received (duplicates, malformed) {:?}; result {}\n",
            agent_duplicates(&a.log()),
            r["result"]
        ),
    );
    let (dup, _) = agent_duplicates(&a.log()).unwrap_or_else(|| panic!("the agent did not log its chunk counts:\n{}", a.log()));
    assert!(u64::from(resent) >= dup, "the device got {dup} chunks twice, but only {resent} were sent twice");
    assert_eq!(r["result"], "committed", "{r}\nagent log:\n{}", a.log());
    assert_eq!(done, times, "not every planned restart happened");
    assert_eq!(unique, count, "every chunk was sent");
    assert!(
        resent <= done * SEND_WINDOW,
        "{resent} chunks sent again over {done} restarts: more than the {SEND_WINDOW}-chunk window that can be in flight per restart"
    );
    store_verify(a.root()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn broker_restarted_several_times_during_a_berth_fleet_push_the_push_resumes_and_commits() {
    let _h = host_shared();
    let mut bed = bed();
    let dev = "fpush-dev";
    let a = bed.device(Root::new(), &bed.broker.url(), dev, &[]);
    let v1 = app_image("f1", 0);
    let mut push = fleet_push(&bed, &[dev], &v1, 96 * 1024, &run_args("f1", true));
    let (code, out, err) = push.wait(PATIENCE);
    assert_eq!(code, 0, "v1 push: {out}\n{err}\nagent log:\n{}", a.log());
    let big = app_image("fpush", 24 << 20);
    let bytes = fs::metadata(&big).expect("the big image").len();
    let chunk: u32 = 16 * 1024;
    let count = bytes.div_ceil(u64::from(chunk));
    let times = 3u64;
    let mark = bed.sub.mark();
    let mut push = fleet_push(&bed, &[dev], &big, chunk, &run_args("fpush", true));
    let topic = format!("{}progress", root_of(dev));
    let status = format!("{}status", root_of(dev));
    let mut done = 0;
    let mut at_restart = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while done < times && push.running() {
        let have = bed
            .sub
            .since(mark)
            .iter()
            .rev()
            .find(|m| m.topic == topic)
            .map(|m| m.json_or_null()["have"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        // Each restart once the device got a few more chunks after the last one.
        let prev = at_restart.last().copied().unwrap_or(0);
        if have > 0 && have >= prev + count / 16 && have < count {
            let m2 = bed.sub.mark();
            if done % 2 == 0 {
                bed.broker.restart();
            } else {
                bed.broker.kill_restart();
            }
            done += 1;
            at_restart.push(have);
            bed.sub.wait_from(m2, &format!("{dev} online after broker restart {done}"), PATIENCE, |m| {
                m.topic == status && m.payload == "online"
            });
        }
        assert!(Instant::now() < deadline, "{dev}: the push did not get far enough for its restarts");
        sleep_ms(20);
    }
    let (code, out, err) = push.wait(PATIENCE * 2);
    let counts = push_counts(&out);
    let dups = agent_duplicates(&a.log());
    report(
        "broker restarted during berth fleet push",
        &format!(
            "{done} broker restarts (SIGTERM, SIGKILL, SIGTERM) at device chunk counts {at_restart:?}; {count} chunks of {} KiB; \
             berth fleet push: exit {code}, (sent, resent) {counts:?}; the agent received (duplicates, malformed) {dups:?}\n",
            chunk >> 10
        ),
    );
    assert_eq!(code, 0, "the push across broker restarts: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}", a.log());
    assert_eq!(done, times, "the push ended before every restart: {out}");
    assert!(at_restart.iter().all(|h| *h < count), "a restart came after the transfer: {at_restart:?} of {count}");
    let (sent, resent) = counts.unwrap_or_else(|| panic!("berth fleet push printed no 'chunks: N sent, M resent':\n{out}"));
    assert!(sent >= count, "sent {sent} of {count} chunks");
    // Resends make up for what each restart lost: berth fleet push keeps 16 MiB of chunks in
    // flight (agent/src/fleet/window.rs, window_for), at most that much per restart.
    let window = ((16u64 << 20) / u64::from(chunk)).clamp(8, 500);
    assert!(resent <= times * window, "{resent} chunks resent over {times} restarts: more than the {window}-chunk window per restart");
    // What the issue asks: no chunk the device already had is sent again. Only a chunk on its way
    // while the device reported its gaps may come twice: allow 2 MiB of them per restart.
    let (dup, _) = dups.unwrap_or_else(|| panic!("the agent did not log its chunk counts:\n{}", a.log()));
    let slack = times * (2 << 20) / u64::from(chunk);
    assert!(dup <= slack, "the device got {dup} chunks it already had over {times} restarts (at most {slack} may be in flight)");
    store_verify(a.root()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn tcp_connection_cut_mid_transfer_several_times_resumes_and_commits() {
    let _h = host_shared();
    let mut bed = bed();
    let proxy = Proxy::start(bed.broker.port());
    let url = proxy.url();
    let times = 3;
    let mut cuts = Vec::new();
    let (r, (total, unique, resent), done, count, a) =
        transfer_with_faults(&mut bed, "cut-dev", &url, 6 << 20, 32 * 1024, times, |_b: &mut Bed| cuts.push(proxy.cut()));
    report(
        "TCP connection cut mid-transfer",
        &format!(
            "{done} cuts (connections dropped each time: {cuts:?}); {count} chunks: sent {total}, distinct {unique}, resent {resent}; result {}\n",
            r["result"]
        ),
    );
    assert_eq!(r["result"], "committed", "{r}\nagent log:\n{}", a.log());
    assert_eq!(done, times, "not every planned cut happened");
    assert!(cuts.iter().all(|n| *n >= 1), "a cut found no connection to drop: {cuts:?}");
    assert!(resent <= done * SEND_WINDOW, "{resent} chunks sent again over {done} cuts: more than the window per cut");
    store_verify(a.root()).unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// 4. Disk full mid-transfer and mid-load.

struct Full {
    case: &'static str,
    reason: String,
    free_before: u64,
    free_after: u64,
    problems: Vec<String>,
}

/// One disk-full case on a 96 MiB tmpfs root: v1 runs, a 16 MiB update comes, and the disk is
/// filled while it is received (`in_load` false) or before its load (`in_load` true).
fn disk_full_case(bed: &Bed, dev: &str, in_load: bool) -> Full {
    let delay = if in_load { "2500" } else { "0" };
    let a = bed.device(Root::on_tmpfs("96m"), &bed.broker.url(), dev, &[("BERTH_UPDATE_STEP_DELAY_MS", delay)]);
    let root = a.root().path().to_path_buf();
    let v1 = app_image("f1", 0);
    let (r, _) = bed.push(&[dev], 1, &v1, 0, &strs(&run_args("f1", true)));
    assert_eq!(r[0]["result"], "committed", "{dev}: v1: {}\nagent log:\n{}", r[0], a.log());
    let (v1_img, v1_pid) = app_running(&a).unwrap_or_else(|| panic!("{dev}: v1 does not run"));
    let layers_before = a.root().layer_dirs();
    let images_before = a.ok(&["images", "-q", "--no-trunc"]);
    sleep_ms(500);
    let free_before = free_bytes(&root);
    let tag = format!("full-{dev}");
    let big = app_image(&tag, 16 << 20);
    let bytes = fs::read(&big).expect("read the big image");
    let c = Crafted::deploy(&bed.key, 2, &[dev], &bytes, 64 * 1024, &strs(&run_args(&tag, true)), WINDOW);
    let id = c.id().to_string();
    let mut p = Pusher::start(bed, c, &[dev]);
    let mut filler: Option<PathBuf> = None;
    let deadline = Instant::now() + PATIENCE;
    while !p.tick() {
        if filler.is_none() {
            if in_load {
                if journal(&root).active.as_ref().is_some_and(|x| x.id == id && x.step == Step::Verified) {
                    filler = Some(fill(&root, 512 * 1024));
                }
            } else if p.targets[dev].progress.as_ref().is_some_and(|x| x["have"].as_u64().unwrap_or(0) >= 20) {
                filler = Some(fill(&root, 0));
            }
        }
        assert!(Instant::now() < deadline, "{dev}: no result\nagent log:\n{}", a.log());
        sleep_ms(20);
    }
    let r = p.targets[dev].result.clone().unwrap_or(Value::Null);
    let mut problems = Vec::new();
    if filler.is_none() {
        problems.push("the disk was never filled (the update ended first)".to_string());
    }
    if let Some(f) = &filler {
        fs::remove_file(f).expect("remove the filler");
    }
    let reason = r["reason"].as_str().unwrap_or_default().to_string();
    if r["result"] != "failed" {
        problems.push(format!("result {} (expected failed): {r}", r["result"]));
    }
    let low = reason.to_lowercase();
    if !(low.contains("space") || low.contains("disk") || low.contains("enospc")) {
        problems.push(format!("the reason does not say the disk is full: {reason:?}"));
    }
    match app_running(&a) {
        Some((i, pid)) if i == v1_img && pid == v1_pid => {}
        other => problems.push(format!("v1 is not running untouched: {other:?} (was {v1_img} pid {v1_pid})")),
    }
    if running_names(&a) != ["app"] {
        problems.push(format!("running: {:?}", running_names(&a)));
    }
    if let Err(e) = store_verify(a.root()) {
        problems.push(e);
    }
    let images_after = a.ok(&["images", "-q", "--no-trunc"]);
    if images_after != images_before {
        problems.push(format!("images changed: before {images_before:?}, after {images_after:?}"));
    }
    let layers_after = a.root().layer_dirs();
    if layers_after != layers_before {
        problems.push(format!("layer dirs changed: before {layers_before:?}, after {layers_after:?}"));
    }
    let leftovers: Vec<String> = update_files(&root).into_keys().filter(|k| k != "journal" && !k.starts_with("clock")).collect();
    if !leftovers.is_empty() {
        problems.push(format!("left under <root>/updates: {leftovers:?}"));
    }
    // The space comes back (a little slack for the journal, logs and the state of the store).
    let free_after = try_poll("free space back", Duration::from_secs(30), || {
        let f = free_bytes(&root);
        (f + (1 << 20) >= free_before).then_some(f)
    })
    .unwrap_or_else(|e| {
        problems.push(e);
        free_bytes(&root)
    });
    if !problems.is_empty() {
        problems.push(format!("agent log:\n{}", a.log()));
    }
    Full { case: if in_load { "mid-load" } else { "mid-transfer" }, reason, free_before, free_after, problems }
}

#[test]
fn disk_full_mid_transfer_and_mid_load_fails_the_update_keeps_the_old_version_and_gives_the_space_back() {
    let _h = host_shared();
    let bed = bed();
    let cases = [disk_full_case(&bed, "full-transfer", false), disk_full_case(&bed, "full-load", true)];
    let mut t = String::new();
    for c in &cases {
        let _ = writeln!(
            t,
            "{:<13} free before {} KiB, after {} KiB; reason: {}; {}",
            c.case,
            c.free_before >> 10,
            c.free_after >> 10,
            c.reason,
            if c.problems.is_empty() { "ok".to_string() } else { format!("FAILED: {}", c.problems.join("; ")) }
        );
    }
    report("disk full (96 MiB tmpfs root, 16 MiB update)", &t);
    let bad: Vec<&Full> = cases.iter().filter(|c| !c.problems.is_empty()).collect();
    assert!(bad.is_empty(), "disk-full cases failed: {}", bad.iter().map(|c| c.problems.join("\n")).collect::<Vec<_>>().join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 5. A chunk damaged on disk while the agent was down.

#[test]
fn chunk_damaged_on_disk_after_a_restart_is_fetched_again_and_the_update_commits() {
    let _h = host_shared();
    let bed = bed();
    let dev = "corrupt-dev";
    let mut a = bed.device(Root::new(), &bed.broker.url(), dev, &[]);
    let v1 = app_image("f1", 0);
    let (r, _) = bed.push(&[dev], 1, &v1, 0, &strs(&run_args("f1", true)));
    assert_eq!(r[0]["result"], "committed", "{dev}: v1: {}\nagent log:\n{}", r[0], a.log());
    let big = app_image("corrupt", 4 << 20);
    let bytes = fs::read(&big).expect("read the image");
    let cs: u32 = 32 * 1024;
    let c = Crafted::deploy(&bed.key, 2, &[dev], &bytes, cs, &strs(&run_args("corrupt", true)), WINDOW);
    let id = c.id().to_string();
    let count = c.count();
    assert!(count > 80, "the image is too small for this test: {count} chunks");
    // The first 70 chunks by hand: the agent checkpoints after its 64th.
    let mark = bed.sub.mark();
    c.send_envelope(&bed.broker, dev);
    c.wait_receiving(&bed.sub, mark, dev, PATIENCE);
    let first: Vec<u32> = (0..70).collect();
    c.send(&bed.broker, &first);
    let dir = a.root().path().join("updates").join(&id);
    let topic = format!("{}progress", root_of(dev));
    bed.sub.wait_from(mark, "progress with 70 chunks", PATIENCE, |m| {
        m.topic == topic && m.json_or_null()["id"] == id.as_str() && m.json_or_null()["have"].as_u64().unwrap_or(0) >= 70
    });
    assert!(dir.join("have").is_file(), "no checkpoint after 70 chunks in {}", dir.display());
    a.kill9();
    // Damage chunk 5, which the checkpoint vouches for.
    let data = dir.join("data");
    let mut d = fs::read(&data).expect("read the partial tarball");
    let off = 5 * cs as usize + 1000;
    for b in &mut d[off..off + 16] {
        *b ^= 0xff;
    }
    fs::write(&data, &d).expect("write the damaged tarball");
    let mark2 = bed.sub.mark();
    a.restart();
    let resumed = bed
        .sub
        .wait_from(mark2, "progress after the restart", PATIENCE, |m| m.topic == topic && m.json_or_null()["id"] == id.as_str())
        .json();
    let mut p = Pusher::start(&bed, c, &[dev]);
    for i in 0..70 {
        p.sends[i] = 1;
    }
    let r = p.run(PATIENCE, |_| {});
    let (total, unique, resent) = p.counts();
    report(
        "chunk damaged on disk",
        &format!(
            "chunk 5 damaged while the agent was down; first progress after restart: have {} next {} missing {}; \
             chunk 5 sent {} times; {count} chunks: sent {total}, distinct {unique}, resent {resent}; result {}\n",
            resumed["have"], resumed["next"], resumed["missing"], p.sends[5], r[0]["result"]
        ),
    );
    assert!(
        Pusher::lacks(&resumed, 5),
        "after the restart the device does not ask for the damaged chunk 5: {resumed}\nagent log:\n{}",
        a.log()
    );
    assert!(a.log().contains("damaged"), "the agent's log does not mention the damaged chunk:\n{}", a.log());
    assert_eq!(r[0]["result"], "committed", "{}\nagent log:\n{}", r[0], a.log());
    assert!(p.sends[5] >= 2, "chunk 5 was not sent again");
    store_verify(a.root()).unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// 6. A fleet on one machine.

fn kib_field(path: &str, field: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (mosquitto RSS, agents' PSS each) in KiB.
fn memory(bed: &Bed, agents: &[Agent]) -> (u64, Vec<u64>) {
    let broker = bed.broker.pid().map_or(0, |p| kib_field(&format!("/proc/{p}/status"), "VmRSS:"));
    let pss = agents.iter().filter_map(Agent::pid).map(|p| kib_field(&format!("/proc/{p}/smaps_rollup"), "Pss:")).collect();
    (broker, pss)
}

fn summary(v: &[u64]) -> String {
    let mut s = v.to_vec();
    s.sort_unstable();
    let total: u64 = s.iter().sum();
    let median = s.get(s.len() / 2).copied().unwrap_or(0);
    let max = s.last().copied().unwrap_or(0);
    format!("total {} MiB, median {median} KiB, max {max} KiB", total >> 10)
}

#[test]
fn fleet_of_agents_on_one_machine_all_commit_one_push() {
    let _h = host_shared();
    let n = env_num("BERTH_FAULT_FLEET", 50).max(1);
    let bed = bed();
    let url = bed.broker.url();
    let t0 = Instant::now();
    let mut agents = Vec::new();
    let names: Vec<String> = (0..n).map(|i| format!("fleet-{i:03}")).collect();
    for d in &names {
        agents.push(device_on(Root::new(), &url, d, &bed.public, &[], &[]));
    }
    for d in &names {
        wait_online(&bed.sub, d, PATIENCE);
    }
    let started = t0.elapsed();
    let (idle_broker, idle_agents) = memory(&bed, &agents);
    let devs: Vec<&str> = names.iter().map(String::as_str).collect();
    // A tiny busybox `sleep` as the application, the layered fixture plus one layer as the image.
    let tar = app_image("fleet", 0);
    let want = image_id(&tar);
    let size = fs::metadata(&tar).expect("the image").len();
    let t1 = Instant::now();
    let mut push = fleet_push(&bed, &devs, &tar, 96 * 1024, &run_args("fleet", true));
    let mut peak = (0u64, 0u64, Vec::new());
    let deadline = Instant::now() + PATIENCE * 3;
    while push.running() {
        let (b, ag) = memory(&bed, &agents);
        let sum: u64 = ag.iter().sum();
        peak.0 = peak.0.max(b);
        if sum > peak.1 {
            peak.1 = sum;
            peak.2 = ag;
        }
        assert!(Instant::now() < deadline, "the push to {n} agents did not end");
        sleep_ms(1000);
    }
    let (code, out, err) = push.wait(PATIENCE);
    let took = t1.elapsed();
    let counts = push_counts(&out);
    // Each device's own journal says how its update ended (a test subscriber may drop messages
    // when hundreds of devices report at once; the push itself saw them all).
    let results: Vec<Value> = agents
        .iter()
        .map(|a| {
            let j = journal(a.root().path());
            match j.last {
                Some(o) if j.active.is_none() => serde_json::json!({"result": o.result, "reason": o.reason}),
                _ => Value::Null,
            }
        })
        .collect();
    let committed = results.iter().filter(|r| r["result"] == "committed").count();
    let mut wrong = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        match app_running(a) {
            Some((img, _)) if img == want => {}
            other => wrong.push(format!("{}: {other:?} result {}", names[i], results[i])),
        }
    }
    let (after_broker, after_agents) = memory(&bed, &agents);
    report(
        "fleet on one machine",
        &format!(
            "{n} agents (each its own root and device id), started and online in {} s; one berth fleet push of {} KiB to all \
             (exit {code}): {committed}/{n} committed in {} s; (chunks sent, resent) {counts:?}\n\
             mosquitto RSS: idle {idle_broker} KiB, peak during the update {} KiB, after {after_broker} KiB\n\
             agents PSS idle: {}\nagents PSS at the peak sample: {}\nagents PSS after: {}\n",
            started.as_secs(),
            size >> 10,
            took.as_secs(),
            peak.0,
            summary(&idle_agents),
            summary(&peak.2),
            summary(&after_agents),
        ),
    );
    assert_eq!(code, 0, "berth fleet push to {n} agents: exit {code}\nstdout: {out}\nstderr: {err}");
    assert_eq!(committed, n, "not every agent committed: {:?}", results.iter().filter(|r| r["result"] != "committed").collect::<Vec<_>>());
    assert!(wrong.is_empty(), "agents not running the new image: {wrong:?}");
}

// ---------------------------------------------------------------------------------------------
// 7. The README's per-device ACL, enforced by a mutual-TLS mosquitto.

/// The mosquitto ACL block of the README's "Large fleets" section.
fn readme_acl() -> String {
    let readme = fs::read_to_string(berth_tests::workspace_root().join("README.md")).expect("read README.md");
    let start = readme.find("```\n# every client (a device)").expect("the README's mosquitto ACL block") + 4;
    let len = readme[start..].find("```").expect("the end of the ACL block");
    readme[start..start + len].to_string()
}

#[test]
fn readme_acl_lets_devices_update_and_keeps_them_off_each_others_topics() {
    let _h = host_shared();
    // The README's rules, plus the test's own observer.
    let acl = format!("{}\nuser tester\ntopic readwrite #\n", readme_acl());
    let broker = Broker::start_tls_with_acl(&acl);
    let fleet = Fleet::new(&broker, broker.dir());
    let sub = broker.subscribe(&["berth/v1/#"], &["berth/v1/updates/#"]);
    let dev = "acl-dev";
    let a = device_on(Root::new(), &broker.url(), dev, &fleet.public, &strs(&broker.berth_tls_args(dev)), &[]);
    wait_online(&sub, dev, PATIENCE);
    let v1 = app_image("f1", 0);
    let line = run_args("f1", true).join(" ");
    let (code, out, err) = fleet.push(&[dev], &v1, WINDOW, &line);
    assert_eq!(
        code,
        0,
        "push through the README's ACL: exit {code}\nstdout: {out}\nstderr: {err}\nagent log:\n{}\nbroker log:\n{}",
        a.log(),
        broker.log()
    );
    assert!(app_running(&a).is_some_and(|(i, _)| i == image_id(&v1)), "v1 does not run after the push");
    // Another device may neither speak for acl-dev nor send it updates.
    let mark = sub.mark();
    let pub_bin = berth_tests::mqtt::find_tool("mosquitto_pub", "mosquitto-clients");
    for topic in ["berth/v1/acl-dev/result", "berth/v1/acl-dev/update"] {
        let mut args = broker.client_args("acl-other");
        args.extend(["-q".into(), "1".into(), "-t".into(), topic.into(), "-m".into(), "forged".into()]);
        let _ = std::process::Command::new(&pub_bin).args(&args).status();
    }
    // A probe from the observer after them: once it is seen, the forged ones would have been.
    broker.publish("berth/v1/acl-dev/probe-after", b"probe", false);
    sub.wait_from(mark, "the observer's probe", PATIENCE, |m| m.topic == "berth/v1/acl-dev/probe-after");
    let forged: Vec<String> = sub.since(mark).into_iter().filter(|m| m.payload == "forged").map(|m| m.topic).collect();
    assert!(forged.is_empty(), "acl-other published on acl-dev's topics: {forged:?}");
    report(
        "README ACL",
        "mutual TLS with the README's mosquitto ACL: the push committed; another device's forged result and update were dropped\n",
    );
}
