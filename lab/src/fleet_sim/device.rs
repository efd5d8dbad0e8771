//! One simulated device: what a real agent does with an update from the broker, up to (not
//! including) applying it, with its memory kept small. It checks the envelope with
//! `berth_proto`'s own signature and manifest checks, receives the chunks as the agent does
//! (duplicates and any order taken, gaps reported as `missing`), hashes the tarball as it arrives
//! (no copy of it is kept: a have-bitmap and the running sha256), and on a match reports what a
//! committed update reports (result, `done` progress, retained state).
//!
//! What a real agent does and a simulated one does not: no disk (no partial file, checkpoint,
//! journal, free-space check), no load, no container, no health window; a whole-tarball digest
//! that does not match fails at once (the agent re-reads its chunks first, to fetch a damaged one
//! again: here nothing was written that could have been damaged).

use std::collections::BTreeMap;

use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};

use berth_proto::sign::{self, PublicKey};
use berth_proto::wire::{self, Chunk, Envelope, Kind, Manifest, Outcome, Progress};
use berth_runtime::digest::Hasher;

/// Chunks between progress messages from the receive path, as the agent (PROGRESS_EVERY).
const PROGRESS_EVERY: u32 = 32;
/// Chunks that arrived before a gap is filled are kept (in memory: there is no file to read them
/// back from) up to this many; more are dropped and asked for again as missing.
pub const REORDER_MAX: usize = 32;

/// What the simulated fleet counts, over all its devices.
#[derive(Default, Debug)]
pub struct Stats {
    pub online: usize,
    pub chunks: u64,
    pub duplicates: u64,
    /// Chunks of an update the device had already finished (resends fanned out to it while it
    /// was still subscribed): traffic a real device receives and drops too.
    pub late: u64,
    /// Chunks dropped because too many had arrived ahead of a gap (`REORDER_MAX`).
    pub dropped: u64,
    /// Chunks that failed their checks (update, count, length).
    pub malformed: u64,
    /// Per update id: how many devices committed, refused, failed it.
    pub outcomes: BTreeMap<String, [usize; 3]>,
}

/// The settings every simulated device shares.
pub struct Shared {
    pub keys: Vec<PublicKey>,
    pub groups: Vec<String>,
}

/// An update being received: the manifest without its target list (which is as long as the
/// fleet), a have-bitmap and the running hash.
struct Rx {
    /// sha256 of the envelope (manifest and signature): the same update again resumes.
    envelope: [u8; 32],
    manifest: Manifest,
    have_bits: Vec<u64>,
    have: u32,
    /// Highest index seen + 1: gaps below it are reported as missing.
    seen: u32,
    hasher: Hasher,
    /// Chunks `0..hashed` are in the hash.
    hashed: u32,
    /// Chunks held (bit set) but not yet hashed, waiting for the gap before them.
    early: BTreeMap<u32, Vec<u8>>,
    reported: u32,
    /// Ticker state: `have` at the last tick's progress, ticks since.
    last_have: u32,
    quiet: u32,
}

impl Rx {
    fn total(&self) -> u32 {
        self.manifest.chunks()
    }

    fn has(&self, i: u32) -> bool {
        self.have_bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u32) {
        self.have_bits[(i / 64) as usize] |= 1 << (i % 64);
    }

    fn topic(&self) -> String {
        self.manifest.image.as_ref().map(|i| i.topic.clone()).unwrap_or_default()
    }

    /// As the agent's `Transfer::progress`: ranges missing below the highest chunk seen (all of
    /// them when `all`), at most `MAX_RANGES`.
    fn progress(&self, phase: &str, all: bool) -> Progress {
        let limit = if all { self.total() } else { self.seen };
        let mut missing = Vec::new();
        let mut i = 0;
        while i < limit && missing.len() < wire::MAX_RANGES {
            if !self.has(i) {
                let start = i;
                while i < limit && !self.has(i) {
                    i += 1;
                }
                missing.push((start, i - 1));
            }
            i += 1;
        }
        let next = (0..self.total()).find(|&i| !self.has(i)).unwrap_or(self.total());
        Progress { id: self.manifest.id.clone(), have: self.have, total: self.total(), next, missing, phase: phase.into() }
    }
}

/// What the session must do after a message.
pub enum Then {
    Nothing,
    /// The transfer ended: its chunk topic is no longer wanted.
    Unsubscribe(String),
}

pub struct Device {
    pub id: String,
    /// Topic root, ending in `/`.
    pub root: String,
    client: AsyncClient,
    seq: u64,
    /// The committed deployment: (container name, update id, image digest, run image).
    deployed: Option<(String, String, String, String)>,
    last: Option<Outcome>,
    rx: Option<Rx>,
    /// The id (as chunk headers carry it) of the last update received to the end.
    finished: [u8; 16],
    state_dirty: bool,
    last_state: String,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Device {
    pub fn new(id: String, root: String, client: AsyncClient) -> Device {
        Device {
            id,
            root,
            client,
            seq: 0,
            deployed: None,
            last: None,
            rx: None,
            finished: [0; 16],
            state_dirty: true,
            last_state: String::new(),
        }
    }

    pub fn unsubscribe(&self, topic: String) {
        let _ = self.client.try_unsubscribe(topic);
    }

    fn publish(&self, sub: &str, qos: QoS, retain: bool, payload: Vec<u8>) {
        // As the agent: never wait on the client's queue; a full queue loses a message that
        // is repeated later anyway (progress, state).
        let _ = self.client.try_publish(format!("{}{sub}", self.root), qos, retain, payload);
    }

    fn publish_json<T: serde::Serialize>(&self, sub: &str, qos: QoS, v: &T) {
        if let Ok(b) = serde_json::to_vec(v) {
            self.publish(sub, qos, false, b);
        }
    }

    fn publish_progress(&self, p: &Progress, urgent: bool) {
        self.publish_json("progress", if urgent { QoS::AtLeastOnce } else { QoS::AtMostOnce }, p);
    }

    /// On (re)connection: the subscriptions, `online`, the state, and a transfer's progress.
    pub fn connected(&mut self, shared: &Shared) {
        let _ = self.client.try_subscribe(format!("{}update", self.root), QoS::AtLeastOnce);
        let _ = self.client.try_subscribe(format!("{}cmd", self.root), QoS::AtLeastOnce);
        if let Some(rx) = &self.rx {
            let _ = self.client.try_subscribe(rx.topic(), QoS::AtLeastOnce);
            self.publish_progress(&rx.progress("receiving", true), true);
        }
        self.publish("status", QoS::AtLeastOnce, true, b"online".to_vec());
        self.publish_state(shared, true);
    }

    fn end(&mut self, stats: &mut Stats, o: Outcome) {
        if !o.id.is_empty() {
            let slot = match o.result.as_str() {
                "committed" => 0,
                "refused" => 1,
                _ => 2,
            };
            stats.outcomes.entry(o.id.clone()).or_default()[slot] += 1;
        }
        self.publish_json("result", QoS::AtLeastOnce, &o);
        if o.result != "refused" {
            self.seq = self.seq.max(o.seq);
            self.publish_progress(&Progress { id: o.id.clone(), phase: "done".into(), ..Default::default() }, true);
        }
        self.last = Some(o);
        self.state_dirty = true;
    }

    fn refuse(&mut self, stats: &mut Stats, m: Option<&Manifest>, reason: String) -> Then {
        let o = Outcome::refused(m, reason, now());
        self.end(stats, o);
        Then::Nothing
    }

    /// As the agent's `Manager::check`: signature, format, addressing, replay.
    fn check(&self, shared: &Shared, env: &Envelope) -> berth_runtime::Result<Manifest> {
        sign::verify(&shared.keys, env.manifest.as_bytes(), &env.sig)?;
        let m = Manifest::parse(&env.manifest)?;
        if !m.targets_device(&self.id, &shared.groups) {
            return Err(berth_runtime::Error::invalid(format!("update {} is not for device {}", m.id, self.id)));
        }
        if m.seq <= self.seq {
            return Err(berth_runtime::Error::invalid(format!("replayed update: seq {} is not above the current {}", m.seq, self.seq)));
        }
        Ok(m)
    }

    /// A message on `ROOT/update` (or a signed one on `ROOT/cmd`).
    pub fn on_envelope(&mut self, shared: &Shared, stats: &mut Stats, payload: &[u8]) -> Then {
        let env = match Envelope::decode(payload) {
            Ok(e) => e,
            Err(e) => return self.refuse(stats, None, e.to_string()),
        };
        let digest = {
            let mut h = Hasher::new();
            h.update(env.manifest.as_bytes());
            h.update(&[0]);
            h.update(env.sig.as_bytes());
            h.finish_bytes()
        };
        if let Some(rx) = &self.rx {
            if rx.envelope == digest {
                let _ = self.client.try_subscribe(rx.topic(), QoS::AtLeastOnce);
                self.publish_progress(&rx.progress("receiving", true), true);
                return Then::Nothing;
            }
        }
        if let Ok(m) = Manifest::parse(&env.manifest) {
            if let Some(last) = self.last.as_ref().filter(|l| l.id == m.id && l.result != "refused") {
                self.publish_json("result", QoS::AtLeastOnce, last);
                return Then::Nothing;
            }
        }
        let mut m = match self.check(shared, &env) {
            Ok(m) => m,
            Err(e) => {
                let parsed = Manifest::parse(&env.manifest).ok();
                return self.refuse(stats, parsed.as_ref(), e.to_string());
            }
        };
        if m.kind != Kind::Deploy || m.image.is_none() || m.pull.is_some() {
            let what = if m.pull.is_some() { "a pull (--pull)" } else { m.kind.name() };
            return self.refuse(stats, Some(&m), format!("berth-lab fleet-sim takes deploys of a tarball, not {what}"));
        }
        if m.app.is_none() {
            match berth_proto::run::parse_run_words(&m.run) {
                Ok(o) if o.name.as_deref() != Some(m.name.as_str()) => {
                    return self.refuse(stats, Some(&m), format!("run arguments must name the container --name {}", m.name));
                }
                Ok(o) if o.auto_remove || o.interactive || o.tty => {
                    return self.refuse(stats, Some(&m), "run arguments must not use --rm, -i or -t for an update".into());
                }
                Ok(_) => {}
                Err(e) => return self.refuse(stats, Some(&m), format!("run arguments: {e}")),
            }
        }
        // The target list is as long as the fleet: each device keeps only what it needs.
        m.targets = Vec::new();
        m.groups = Vec::new();
        m.app = None;
        let image = m.run.iter().rev().find(|w| !w.starts_with('-')).cloned().unwrap_or_default();
        m.run = vec![image];
        let count = m.chunks();
        let old = self.rx.take().map(|r| r.topic());
        let rx = Rx {
            envelope: digest,
            manifest: m,
            have_bits: vec![0; count.div_ceil(64) as usize],
            have: 0,
            seen: 0,
            hasher: Hasher::new(),
            hashed: 0,
            early: BTreeMap::new(),
            reported: 0,
            last_have: u32::MAX,
            quiet: 0,
        };
        let topic = rx.topic();
        if let Some(old) = old.filter(|o| *o != topic) {
            let _ = self.client.try_unsubscribe(old);
        }
        self.rx = Some(rx);
        self.state_dirty = true;
        if let Some(rx) = &self.rx {
            // The agent's order: subscribe, then say it receives (the sender waits for that).
            let _ = self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
            self.publish_progress(&rx.progress("receiving", true), true);
        }
        Then::Nothing
    }

    /// A chunk on the update's topic.
    pub fn on_chunk(&mut self, stats: &mut Stats, payload: &[u8]) -> Then {
        let Some(rx) = self.rx.as_mut() else {
            if Chunk::decode(payload).is_ok_and(|c| c.update == self.finished) {
                stats.late += 1;
            }
            return Then::Nothing;
        };
        let c = match Chunk::decode(payload).and_then(|c| c.fits(&rx.manifest).map(|_| c)) {
            Ok(c) => c,
            Err(_) => {
                stats.malformed += 1;
                return Then::Nothing;
            }
        };
        if rx.has(c.index) {
            stats.duplicates += 1;
            return Then::Nothing;
        }
        if c.index == rx.hashed {
            rx.hasher.update(c.data);
            rx.hashed += 1;
            while let Some(d) = rx.early.remove(&rx.hashed) {
                rx.hasher.update(&d);
                rx.hashed += 1;
            }
        } else if rx.early.len() < REORDER_MAX {
            rx.early.insert(c.index, c.data.to_vec());
        } else {
            stats.dropped += 1;
            return Then::Nothing;
        }
        stats.chunks += 1;
        rx.set(c.index);
        rx.have += 1;
        rx.seen = rx.seen.max(c.index + 1);
        if rx.have < rx.total() {
            if rx.have >= rx.reported + PROGRESS_EVERY {
                rx.reported = rx.have;
                let p = rx.progress("receiving", false);
                self.publish_progress(&p, false);
            }
            return Then::Nothing;
        }
        let Some(rx) = self.rx.take() else { return Then::Nothing };
        self.finished = rx.manifest.id_bytes();
        self.publish_progress(&rx.progress("verifying", false), true);
        let got = rx.hasher.clone().finish().hex().to_string();
        let m = &rx.manifest;
        let want = m.image.as_ref().map(|i| i.sha256.clone()).unwrap_or_default();
        let topic = rx.topic();
        let mut o = Outcome {
            id: m.id.clone(),
            seq: m.seq,
            name: m.name.clone(),
            result: "committed".into(),
            reason: String::new(),
            image: format!("sha256:{got}"),
            time: now(),
        };
        if got == want {
            self.publish_progress(&rx.progress("applying", false), true);
            let image = m.run.first().cloned().unwrap_or_default();
            self.deployed = Some((m.name.clone(), m.id.clone(), o.image.clone(), image));
        } else {
            o.result = "failed".into();
            o.reason = format!("digest mismatch: the tarball's sha256 is {got}, the manifest says {want}");
            o.image = String::new();
        }
        self.end(stats, o);
        Then::Unsubscribe(topic)
    }

    /// `ROOT/cmd`: a signed envelope goes the update way; `status` is answered with the state.
    pub fn on_command(&mut self, shared: &Shared, stats: &mut Stats, payload: &[u8]) -> Then {
        if payload.first() == Some(&b'{') && serde_json::from_slice::<Value>(payload).is_ok_and(|v| v.get("manifest").is_some()) {
            return self.on_envelope(shared, stats, payload);
        }
        let (token, ok, body) = match wire::Command::decode(payload) {
            Ok(c) if c.cmd == "status" => (c.token, true, self.state(shared).to_string()),
            Ok(c) => (c.token, false, format!("berth-lab fleet-sim answers status only, not {:?}", c.cmd)),
            Err(e) => (String::new(), false, e.to_string()),
        };
        self.publish_json("resp", QoS::AtLeastOnce, &json!({"token": token, "ok": ok, "body": body}));
        Then::Nothing
    }

    /// Every 250 ms, as the agent's ticker: progress while receiving (when it moved, or every
    /// 2 s unchanged; QoS 1 when it lists gaps) and the state when it changed.
    pub fn tick(&mut self, shared: &Shared) {
        if let Some(rx) = self.rx.as_mut() {
            rx.quiet += 1;
            if rx.have != rx.last_have || rx.quiet >= 8 {
                rx.last_have = rx.have;
                rx.quiet = 0;
                let p = rx.progress("receiving", false);
                let urgent = !p.missing.is_empty();
                self.publish_progress(&p, urgent);
            }
        }
        if self.state_dirty {
            self.publish_state(shared, false);
        }
    }

    /// The retained state, when it changed (`force`: always).
    fn publish_state(&mut self, shared: &Shared, force: bool) {
        self.state_dirty = false;
        let s = self.state(shared).to_string();
        if s != self.last_state || force {
            self.publish("state", QoS::AtLeastOnce, true, s.clone().into_bytes());
            self.last_state = s;
        }
    }

    /// The state a real device would show after the same updates (fields as the agent's; a
    /// simulated device runs nothing, so its container is a record only, and it says so).
    fn state(&self, shared: &Shared) -> Value {
        let (containers, images, deployments) = match &self.deployed {
            Some((name, update, digest, image)) => (
                json!([{"name": name, "id": "", "image": image, "image_id": digest, "status": "running"}]),
                json!([digest]),
                json!([{"name": name, "seq": self.seq, "update": update, "container": "", "image_id": digest, "previous": []}]),
            ),
            None => (json!([]), json!([]), json!([])),
        };
        let update = match &self.rx {
            Some(rx) => json!({"id": rx.manifest.id, "name": rx.manifest.name, "phase": "receiving", "have": rx.have, "total": rx.total()}),
            None => Value::Null,
        };
        json!({
            "device": self.id,
            "agent": concat!("berth-lab fleet-sim ", env!("CARGO_PKG_VERSION")),
            "simulated": true,
            "groups": shared.groups,
            "seq": self.seq,
            "containers": containers,
            "images": images,
            "layers": [],
            "deployments": deployments,
            "update": update,
            "last_result": self.last,
            "disk_free": 0,
            "mem_available": 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::sign::SecretKey;
    use berth_proto::wire::ImageRef;
    use berth_runtime::digest::to_hex as hex;

    fn setup(data: &[u8], chunk: u32, key: &SecretKey) -> (Device, Shared, Manifest, Vec<u8>, rumqttc::EventLoop) {
        let (client, events) = AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 64);
        let d = Device::new("sim-1".into(), "berth/v1/sim-1/".into(), client);
        let shared = Shared { keys: vec![key.public()], groups: vec![] };
        let m = Manifest {
            version: 1,
            id: "00112233445566778899aabbccddeeff".into(),
            seq: 1,
            kind: Kind::Deploy,
            created: 0,
            targets: vec!["sim-1".into()],
            groups: vec![],
            name: "app".into(),
            image: Some(ImageRef { size: data.len() as u64, sha256: hex(&wire::sha256(data)), chunk_size: chunk, topic: "t/u".into() }),
            pull: None,
            run: vec!["--name".into(), "app".into(), "img:1".into()],
            health_window: 1,
            keep: 1,
            app: None,
        };
        let text = serde_json::to_string(&m).unwrap();
        let env = serde_json::to_vec(&Envelope { sig: key.sign(text.as_bytes()), manifest: text }).unwrap();
        (d, shared, m, env, events)
    }

    #[test]
    fn receives_in_any_order_and_commits_the_right_digest() {
        let (key, _) = SecretKey::generate().unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let (mut d, shared, m, env, _ev) = setup(&data, 64, &key);
        let mut st = Stats::default();
        d.on_envelope(&shared, &mut st, &env);
        assert!(d.rx.is_some());
        let chunk = |i: u32| Chunk::encode(&m.id, i, 16, &data[i as usize * 64..((i as usize + 1) * 64).min(data.len())]);
        for i in [3, 1, 1, 0] {
            d.on_chunk(&mut st, &chunk(i));
        }
        let p = d.rx.as_ref().unwrap().progress("receiving", false);
        assert_eq!((p.have, p.next, p.missing), (3, 2, vec![(2, 2)]));
        assert_eq!(st.duplicates, 1);
        for i in 2..16 {
            d.on_chunk(&mut st, &chunk(i));
        }
        assert!(d.rx.is_none());
        let last = d.last.clone().unwrap();
        assert_eq!((last.result.as_str(), last.image.clone()), ("committed", format!("sha256:{}", hex(&wire::sha256(&data)))));
        // a resend reaching a device that has finished is counted, not taken
        d.on_chunk(&mut st, &chunk(4));
        assert_eq!((st.late, st.chunks), (1, 16));
        // the same update again: its result repeated, nothing received again
        d.on_envelope(&shared, &mut st, &env);
        assert!(d.rx.is_none());
        assert_eq!(st.outcomes[&m.id], [1, 0, 0]);
    }

    #[test]
    fn refuses_other_keys_and_replays() {
        let (key, _) = SecretKey::generate().unwrap();
        let (other, _) = SecretKey::generate().unwrap();
        let (mut d, _, _, env, _ev) = setup(b"abc", 64, &other);
        let shared = Shared { keys: vec![key.public()], groups: vec![] };
        let mut st = Stats::default();
        d.on_envelope(&shared, &mut st, &env);
        let last = d.last.clone().unwrap();
        assert_eq!(last.result, "refused");
        assert!(last.reason.contains("bad signature"), "{}", last.reason);
        d.seq = 5;
        let (mut d2, shared2, _, env2, _ev2) = setup(b"abc", 64, &key);
        d2.seq = 5;
        d2.on_envelope(&shared2, &mut st, &env2);
        assert!(d2.last.unwrap().reason.contains("replayed"));
    }
}
