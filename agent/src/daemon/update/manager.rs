//! The agent's side of updates: takes envelopes and chunks from the broker (or requests from the
//! local socket), keeps the journal, and publishes state, progress and results.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};

use berth_runtime::container::{logs, record};
use berth_runtime::fsutil::remove_all;
use berth_runtime::{timefmt, Error, Result};

use super::journal::{self, Active, Journal, Step};
use super::transfer::Transfer;
use crate::daemon::Shared;
use berth_proto::sign::{self, PublicKey};
use berth_proto::wire::{self, Envelope, Kind, Manifest, Outcome, Progress};

/// Chunks between progress messages from the receive path (3 MiB of 96 KiB chunks).
const PROGRESS_EVERY: u32 = 32;

/// What the agent was configured with (berth.toml and flags).
#[derive(Clone)]
pub struct Settings {
    pub device: String,
    pub groups: Vec<String>,
    pub keys: Vec<PublicKey>,
    /// Topic root, ending in `/`.
    pub topic: String,
    pub max_size: Option<u64>,
    /// The berth.toml given with `--config` (its `[registry]` serves `fleet push --pull`).
    pub config: Option<PathBuf>,
}

pub struct Manager {
    pub root: PathBuf,
    pub settings: Settings,
    pub journal: Journal,
    pub transfer: Option<Transfer>,
    sup: Shared,
    client: Option<AsyncClient>,
    /// The last refusal (kept in memory only: a flood of bad messages must not wear the flash).
    refused: Option<Outcome>,
    state_dirty: bool,
    last_state: String,
    /// Local callers (`berth rollback`) waiting for an update's outcome.
    waiters: Vec<(String, tokio::sync::oneshot::Sender<Outcome>)>,
}

/// What the caller must do after a message was handled.
pub enum Then {
    Nothing,
    /// Subscribe to a transfer's chunk topic and ask for what is missing.
    Receive(String),
    /// Run `apply::drive` (and unsubscribe from this chunk topic, if any).
    Apply(Option<String>),
    /// A transfer ended without an apply: its chunk topic is no longer wanted.
    Unsubscribe(String),
}

fn random_hex16() -> String {
    let mut b = [0u8; 16];
    let _ = berth_runtime::random::fill(&mut b);
    berth_runtime::digest::to_hex(&b)
}

impl Manager {
    pub fn open(root: &Path, settings: Settings, sup: Shared) -> Result<Manager> {
        let journal = Journal::load(root)?;
        let mut m = Manager {
            root: root.to_path_buf(),
            settings,
            journal,
            transfer: None,
            sup,
            client: None,
            refused: None,
            state_dirty: true,
            last_state: String::new(),
            waiters: Vec::new(),
        };
        m.reopen_transfer();
        Ok(m)
    }

    /// A transfer an earlier agent left: resumed if it still verifies, else removed.
    fn reopen_transfer(&mut self) {
        let dir = journal::dir(&self.root);
        let Ok(rd) = std::fs::read_dir(&dir) else { return };
        let active = self.journal.active.as_ref().map(|a| a.id.clone());
        for e in rd.flatten() {
            let p = e.path();
            if !p.is_dir() || active.as_deref() == p.file_name().and_then(|n| n.to_str()) {
                continue;
            }
            let env = std::fs::read(p.join("envelope")).ok().and_then(|b| serde_json::from_slice::<Envelope>(&b).ok());
            let ok = env.and_then(|env| self.check(&env).ok().map(|m| (m, env)));
            match ok {
                Some((m, env)) if self.transfer.is_none() && m.kind == Kind::Deploy => match Transfer::open(&p, m, env) {
                    Ok(t) => self.transfer = Some(t),
                    Err(e) => {
                        crate::warn!("{e}");
                        let _ = remove_all(&p);
                    }
                },
                _ => {
                    let _ = remove_all(&p);
                }
            }
        }
    }

    pub fn set_client(&mut self, c: Option<AsyncClient>) {
        self.client = c;
    }

    fn publish(&self, sub: &str, qos: QoS, retain: bool, payload: Vec<u8>) {
        if let Some(c) = &self.client {
            if let Err(e) = c.try_publish(format!("{}{sub}", self.settings.topic), qos, retain, payload) {
                crate::debug!("publish {sub}: {e}");
            }
        }
    }

    fn publish_json<T: serde::Serialize>(&self, sub: &str, qos: QoS, v: &T) {
        if let Ok(b) = serde_json::to_vec(v) {
            self.publish(sub, qos, false, b);
        }
    }

    pub fn publish_progress(&self, p: &Progress, urgent: bool) {
        self.publish_json("progress", if urgent { QoS::AtLeastOnce } else { QoS::AtMostOnce }, p);
    }

    fn refuse(&mut self, m: Option<&Manifest>, reason: String) -> Then {
        crate::warn!("update refused: {reason}");
        let o = Outcome::refused(m, reason, timefmt::now());
        self.publish_json("result", QoS::AtLeastOnce, &o);
        self.refused = Some(o);
        self.state_dirty = true;
        Then::Nothing
    }

    /// Signature, format and addressing: what makes an envelope acceptable at all.
    fn check(&self, env: &Envelope) -> Result<Manifest> {
        sign::verify(&self.settings.keys, env.manifest.as_bytes(), &env.sig)?;
        let m = Manifest::parse(&env.manifest)?;
        if !m.targets_device(&self.settings.device, &self.settings.groups) {
            return Err(Error::invalid(format!("update {} is not for device {}", m.id, self.settings.device)));
        }
        if m.seq <= self.journal.seq {
            return Err(Error::invalid(format!("replayed update: seq {} is not above the current {}", m.seq, self.journal.seq)));
        }
        Ok(m)
    }

    /// An envelope from `.../update` or `.../cmd`.
    pub fn on_envelope(&mut self, payload: &[u8]) -> Then {
        let env = match Envelope::decode(payload) {
            Ok(e) => e,
            Err(e) => return self.refuse(None, e.to_string()),
        };
        // The same update again (a sender resuming, or the broker redelivering) is not a
        // replay: ask for what is missing, or repeat how it ended.
        if let Some(t) = &self.transfer {
            if t.envelope == env {
                return Then::Receive(t.manifest.image.as_ref().map(|i| i.topic.clone()).unwrap_or_default());
            }
        }
        if let Ok(m) = Manifest::parse(&env.manifest) {
            if self.journal.active.as_ref().is_some_and(|a| a.id == m.id) {
                return Then::Nothing;
            }
            if let Some(last) = self.journal.last.as_ref().filter(|l| l.id == m.id) {
                self.publish_json("result", QoS::AtLeastOnce, last);
                return Then::Nothing;
            }
        }
        let m = match self.check(&env) {
            Ok(m) => m,
            Err(e) => {
                let parsed = Manifest::parse(&env.manifest).ok();
                return self.refuse(parsed.as_ref(), e.to_string());
            }
        };
        if let Some(a) = &self.journal.active {
            return self.refuse(Some(&m), format!("busy: applying update {} to {}", a.id, a.name));
        }
        if m.kind == Kind::Deploy {
            // A name is one kind of deployment for good: an update of the other kind would
            // overwrite its journal entry and orphan its containers and rollback targets.
            match self.journal.deployments.get(&m.name).map(|d| d.app.is_some()) {
                Some(false) if m.app.is_some() => {
                    return self.refuse(Some(&m), format!("{} is a single container's deployment, not an application", m.name));
                }
                Some(true) if m.app.is_none() => {
                    return self.refuse(
                        Some(&m),
                        format!("{} is an application (update it with --app), not a single container's deployment", m.name),
                    );
                }
                _ => {}
            }
        }
        match m.kind {
            Kind::Deploy if m.app.is_some() => self.begin_app(m, env),
            Kind::Deploy if m.pull.is_some() => self.begin_pull(m),
            Kind::Deploy => self.begin_transfer(m, env),
            Kind::Rollback => match super::apply::rollback_active(&self.journal, &m.id, m.seq, &m.name, &self.root) {
                Ok(a) => self.begin(a),
                Err(e) => self.refuse(Some(&m), e.to_string()),
            },
            Kind::Restart => {
                if self.sup.borrow().find(&m.name).is_err() {
                    return self.refuse(Some(&m), format!("No such container: {}", m.name));
                }
                let a = Active {
                    id: m.id.clone(),
                    seq: m.seq,
                    kind: Kind::Restart,
                    name: m.name.clone(),
                    run: Vec::new(),
                    window: 0,
                    keep: 0,
                    step: Step::Verified,
                    image_id: None,
                    old: None,
                    new: None,
                    reason: String::new(),
                    app: None,
                };
                self.begin(a)
            }
        }
    }

    /// The run arguments of a deploy, as the agent will take them.
    fn deploy_run(m: &Manifest) -> std::result::Result<berth_proto::socket::RunOptions, String> {
        let o = berth_proto::run::parse_run_words(&m.run).map_err(|e| format!("run arguments: {e}"))?;
        if o.name.as_deref() != Some(m.name.as_str()) {
            return Err(format!("run arguments must name the container --name {}", m.name));
        }
        if o.auto_remove || o.interactive || o.tty {
            return Err("run arguments must not use --rm, -i or -t for an update".into());
        }
        Ok(o)
    }

    /// `fleet push --pull`: no chunks; the image comes from the device's registry (or mirror),
    /// checked against the signed digest, then the update goes on as a loaded one.
    fn begin_pull(&mut self, m: Manifest) -> Then {
        let Some(reference) = m.pull.clone() else { return Then::Nothing };
        if !cfg!(feature = "registry") {
            return self.refuse(
                Some(&m),
                format!("this firmware was built without registry support: it cannot pull {reference} (send the image as a tarball: berth fleet push FILE.tar)"),
            );
        }
        let o = match Self::deploy_run(&m) {
            Ok(o) => o,
            Err(e) => return self.refuse(Some(&m), e),
        };
        if o.image != reference {
            return self.refuse(Some(&m), format!("run arguments must run the pulled image {reference} (they name {})", o.image));
        }
        let dir = journal::dir(&self.root).join(&m.id);
        let written = std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io_at("create", &dir, e))
            .and_then(|_| berth_runtime::fsutil::atomic_write(&journal::pull_path(&dir), reference.as_bytes()));
        if let Err(e) = written {
            let _ = remove_all(&dir);
            return self.refuse(Some(&m), format!("cannot store the update: {e}"));
        }
        if let Some(t) = self.transfer.take() {
            crate::info!("update {} replaces the unfinished {}", m.id, t.manifest.id);
            let _ = remove_all(&t.dir);
        }
        crate::info!("update {}: pulling {reference}", m.id);
        self.publish_progress(&Progress { id: m.id.clone(), phase: "pulling".into(), ..Default::default() }, true);
        let a = deploy_active(&m);
        self.begin(a)
    }

    /// `fleet push --app`: an application's services as one update. Without a tarball every
    /// image must be on the device already or pinned by digest (pulled from the device's
    /// registry when the update is applied): another is refused here, nothing changed.
    fn begin_app(&mut self, m: Manifest, env: Envelope) -> Then {
        if m.image.is_some() {
            return self.begin_transfer(m, env);
        }
        for s in m.app.iter().flat_map(|a| &a.services) {
            let image = berth_proto::run::parse_run_words(&s.run).map(|o| o.image).unwrap_or_default();
            if self.sup.borrow().image_id(&image).is_err() && !berth_proto::wire::valid_pull(&image) {
                return self.refuse(
                    Some(&m),
                    format!(
                        "service {}: image {image} is neither on the device nor in the update (pin it by digest, NAME@sha256:..., for the device to pull it)",
                        s.service
                    ),
                );
            }
        }
        match super::apply_app::deploy_active(&m, &self.journal) {
            Some(a) => self.begin(a),
            None => Then::Nothing,
        }
    }

    fn begin_transfer(&mut self, m: Manifest, env: Envelope) -> Then {
        if m.app.is_none() {
            if let Err(e) = Self::deploy_run(&m) {
                return self.refuse(Some(&m), e);
            }
        }
        let size = m.image.as_ref().map_or(0, |i| i.size);
        if let Some(max) = self.settings.max_size {
            if size > max {
                return self.refuse(Some(&m), format!("update of {size} bytes is over the {max}-byte limit ([update] max_size)"));
            }
        }
        // The tarball, and its layers unpacked beside it, before the tarball is deleted.
        let need = size.saturating_mul(2).saturating_add(16 << 20);
        let dir = journal::dir(&self.root);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return self.refuse(Some(&m), format!("create {}: {e}", dir.display()));
        }
        let old = self.transfer.take();
        let held = old.as_ref().map_or(0, |t| t.manifest.image.as_ref().map_or(0, |i| i.size));
        let free = berth_runtime::fsutil::free_bytes(&dir).unwrap_or(0).saturating_add(held);
        if free < need {
            if let Some(t) = old {
                self.transfer = Some(t);
            }
            return self.refuse(Some(&m), format!("not enough disk: the update needs {need} bytes, {free} are free"));
        }
        if let Some(t) = old {
            crate::info!("update {} replaces the unfinished {}", m.id, t.manifest.id);
            let _ = remove_all(&t.dir);
        }
        let topic = m.image.as_ref().map(|i| i.topic.clone()).unwrap_or_default();
        match Transfer::open(&dir.join(&m.id), m, env) {
            Ok(t) => {
                crate::info!("update {}: receiving {} chunks", t.manifest.id, t.total());
                self.transfer = Some(t);
                self.state_dirty = true;
                Then::Receive(topic)
            }
            Err(e) => self.refuse(None, format!("cannot store the update: {e}")),
        }
    }

    /// Starts applying `a` (journaled first).
    fn begin(&mut self, a: Active) -> Then {
        self.journal.seq = self.journal.seq.max(a.seq);
        self.journal.active = Some(a);
        if let Err(e) = self.journal.save(&self.root) {
            self.journal.active = None;
            return self.refuse(None, e.to_string());
        }
        self.state_dirty = true;
        Then::Apply(None)
    }

    pub fn on_chunk(&mut self, payload: &[u8]) -> Then {
        let Some(t) = self.transfer.as_mut() else { return Then::Nothing };
        match t.accept(payload) {
            Ok(_) => {}
            Err(e) if e.kind() == berth_runtime::Kind::Invalid => {
                crate::debug!("update {}: chunk dropped: {e}", t.manifest.id);
                return Then::Nothing;
            }
            Err(e) => {
                // The disk is full or failing: give the space back, the old version runs on.
                let m = t.manifest.clone();
                let _ = remove_all(&t.dir);
                self.transfer = None;
                self.finish(Outcome {
                    id: m.id,
                    seq: m.seq,
                    name: m.name,
                    result: "failed".into(),
                    reason: format!("cannot store the update: {e}"),
                    image: String::new(),
                    time: timefmt::now(),
                });
                return Then::Unsubscribe(m.image.map(|i| i.topic).unwrap_or_default());
            }
        }
        if !t.complete() {
            // Besides the 250 ms ticker: a fast link must not wait for it, or the sender's window
            // (16 MiB) caps the rate at 64 MB/s.
            if t.have() >= t.reported + PROGRESS_EVERY {
                t.reported = t.have();
                let p = t.progress("receiving", false);
                self.publish_progress(&p, false);
            }
            return Then::Nothing;
        }
        crate::info!(
            "update {}: all {} chunks received ({} duplicates, {} dropped as malformed)",
            t.manifest.id,
            t.total(),
            t.duplicates,
            t.rejected
        );
        let p = t.progress("verifying", false);
        self.publish_progress(&p, true);
        let Some(t) = self.transfer.as_mut() else { return Then::Nothing };
        let verified = t.verify();
        let p = t.progress("receiving", true);
        match verified {
            Ok(true) => {}
            Ok(false) => {
                self.publish_progress(&p, true);
                return Then::Nothing;
            }
            Err(e) => {
                let t = self.transfer.take();
                if let Some(t) = &t {
                    let _ = remove_all(&t.dir);
                }
                let m = t.map(|t| t.manifest);
                self.journal.seq = self.journal.seq.max(m.as_ref().map_or(0, |m| m.seq));
                let o = Outcome {
                    id: m.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
                    seq: m.as_ref().map_or(0, |m| m.seq),
                    name: m.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                    result: "failed".into(),
                    reason: e.to_string(),
                    image: String::new(),
                    time: timefmt::now(),
                };
                self.finish(o);
                return Then::Nothing;
            }
        }
        let Some(t) = self.transfer.take() else { return Then::Nothing };
        let topic = t.manifest.image.as_ref().map(|i| i.topic.clone());
        self.publish_progress(&t.progress("applying", false), true);
        let m = t.manifest;
        let a = super::apply_app::deploy_active(&m, &self.journal).unwrap_or_else(|| deploy_active(&m));
        match self.begin(a) {
            Then::Apply(_) => Then::Apply(topic),
            other => other,
        }
    }

    /// An update ended: journal, result, state, and its files go.
    pub fn finish(&mut self, o: Outcome) {
        self.journal.seq = self.journal.seq.max(o.seq);
        self.journal.active = None;
        self.journal.last = Some(o.clone());
        if let Err(e) = self.journal.save(&self.root) {
            crate::warn!("{e}");
        }
        let dir = journal::dir(&self.root).join(&o.id);
        if !o.id.is_empty() && dir.exists() {
            let _ = remove_all(&dir);
        }
        crate::info!("update {}: {} {}", o.id, o.result, o.reason);
        self.publish_json("result", QoS::AtLeastOnce, &o);
        self.publish_progress(&Progress { id: o.id.clone(), phase: "done".into(), ..Default::default() }, true);
        for (id, tx) in std::mem::take(&mut self.waiters) {
            if id == o.id {
                let _ = tx.send(o.clone());
            } else {
                self.waiters.push((id, tx));
            }
        }
        self.state_dirty = true;
    }

    pub fn state_changed(&mut self) {
        self.state_dirty = true;
    }

    /// A local `berth rollback NAME` (no signature: whoever reaches the socket is root).
    pub fn local_rollback(&mut self, name: &str) -> Result<(Then, tokio::sync::oneshot::Receiver<Outcome>)> {
        if let Some(a) = &self.journal.active {
            return Err(Error::conflict(format!("busy: applying update {} to {}", a.id, a.name)));
        }
        let id = random_hex16();
        let a = super::apply::rollback_active(&self.journal, &id, self.journal.seq + 1, name, &self.root)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiters.push((id, tx));
        Ok((self.begin(a), rx))
    }

    /// [`Manager::state`] as JSON text.
    pub fn state_text(&self) -> String {
        serde_json::to_string(&self.state()).unwrap_or_default()
    }

    /// The device's state, as published retained on `.../state` and shown by `deployment status`.
    pub fn state(&self) -> Value {
        let sup = self.sup.borrow();
        let mut containers: Vec<Value> = sup
            .records()
            .map(|r| {
                let status = match &r.status {
                    record::Status::Created => "created".to_string(),
                    record::Status::Running { .. } => "running".to_string(),
                    record::Status::Exited { code, .. } => format!("exited ({code})"),
                };
                json!({"name": r.name, "id": r.id, "image": r.image, "image_id": r.image_id.to_string(), "status": status})
            })
            .collect();
        containers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let (images, layers) = sup.store_contents();
        let deployments: Vec<Value> = self
            .journal
            .deployments
            .iter()
            .map(|(name, d)| match &d.app {
                Some(app) => {
                    let services: Vec<Value> = app
                        .services
                        .iter()
                        .map(|m| {
                            let status = sup.get(&m.container.container).map_or("gone".to_string(), |r| match &r.status {
                                record::Status::Created => "created".to_string(),
                                record::Status::Running { .. } => "running".to_string(),
                                record::Status::Exited { code, .. } => format!("exited ({code})"),
                            });
                            let health = sup.health_of(&m.container.container).map(|(h, _)| h.to_string());
                            json!({"service": m.service, "name": m.name, "container": m.container.container,
                                   "image_id": m.container.image_id, "status": status, "health": health})
                        })
                        .collect();
                    json!({"name": name, "app": true, "seq": d.seq, "update": d.update, "services": services,
                           "previous": app.previous.iter().map(|r| r.first().map_or(0, |m| m.container.seq)).collect::<Vec<_>>()})
                }
                None => json!({"name": name, "seq": d.seq, "update": d.update, "container": d.container, "image_id": d.image_id,
                       "previous": d.previous.iter().map(|p| p.image_id.clone()).collect::<Vec<_>>()}),
            })
            .collect();
        let update = match (&self.transfer, &self.journal.active) {
            (_, Some(a)) => json!({"id": a.id, "name": a.name, "phase": a.step.name()}),
            (Some(t), None) => {
                let p = t.progress("receiving", false);
                json!({"id": p.id, "name": t.manifest.name, "phase": "receiving", "have": p.have, "total": p.total})
            }
            (None, None) => Value::Null,
        };
        let last = match (&self.refused, &self.journal.last) {
            (Some(r), Some(l)) if r.time >= l.time => Some(r),
            (Some(r), None) => Some(r),
            (_, l) => l.as_ref(),
        };
        json!({
            "device": self.settings.device,
            "agent": env!("CARGO_PKG_VERSION"),
            "groups": self.settings.groups,
            "seq": self.journal.seq,
            "containers": containers,
            "images": images,
            "layers": layers,
            "deployments": deployments,
            "update": update,
            "last_result": last,
            "disk_free": berth_runtime::fsutil::free_bytes(&self.root).unwrap_or(0) >> 20 << 20,
            "mem_available": mem_available() >> 20 << 20,
        })
    }

    /// Publishes the state if something changed since the last time (`force`: always).
    pub fn publish_state(&mut self, force: bool) {
        if !self.state_dirty && !force {
            return;
        }
        self.state_dirty = false;
        let s = self.state_text();
        if s != self.last_state || force {
            self.publish("state", QoS::AtLeastOnce, true, s.clone().into_bytes());
            self.last_state = s;
        }
    }

    /// `.../cmd`: read-only commands are answered on `.../resp`; envelopes go the update way.
    pub fn on_command(&mut self, payload: &[u8]) -> Then {
        if payload.first() == Some(&b'{') && serde_json::from_slice::<Value>(payload).is_ok_and(|v| v.get("manifest").is_some()) {
            return self.on_envelope(payload);
        }
        let c = match wire::Command::decode(payload) {
            Ok(c) => c,
            Err(e) => {
                self.publish_json("resp", QoS::AtLeastOnce, &json!({"token": "", "ok": false, "body": e.to_string()}));
                return Then::Nothing;
            }
        };
        let (ok, body) = match c.cmd.as_str() {
            "status" => (true, self.state_text()),
            "logs" => match self.tail_logs(&c.name, c.tail.unwrap_or(100) as usize) {
                Ok(b) => (true, b),
                Err(e) => (false, e.to_string()),
            },
            other => (false, format!("unknown command {other:?} (status, logs; rollback and restart come signed)")),
        };
        self.publish("resp", QoS::AtLeastOnce, false, answer(&c.token, ok, &body));
        Then::Nothing
    }

    fn tail_logs(&self, name: &str, n: usize) -> Result<String> {
        let sup = self.sup.borrow();
        let id = sup.find(name)?;
        let r = sup.get(&id).ok_or_else(|| Error::no_such_container(name))?;
        if !r.log.enabled {
            return Err(Error::invalid(format!("container {name} keeps no logs (--log-driver none)")));
        }
        let dir = record::dir(&self.root, &id);
        let mut last: VecDeque<String> = VecDeque::new();
        for f in logs::files(&dir, r.log.max_files) {
            let Ok(mut file) = std::fs::File::open(&f) else { continue };
            let _ = logs::read_from(&mut file, 0, |line| {
                if let Some(e) = logs::parse(line) {
                    if last.len() == n {
                        last.pop_front();
                    }
                    last.push_back(String::from_utf8_lossy(e.text).into_owned());
                }
            });
        }
        Ok(last.into_iter().map(|l| l + "\n").collect())
    }
}

/// `{"token","ok","body"}` of at most `MAX_RESPONSE` bytes *encoded* (escapes grow a body up to
/// six times): the body keeps its end (the newest log lines) and loses its start.
fn answer(token: &str, ok: bool, body: &str) -> Vec<u8> {
    let enc = |from: usize| serde_json::to_vec(&json!({"token": token, "ok": ok, "body": &body[from..]})).unwrap_or_default();
    let boundary = |mut i: usize| {
        while i < body.len() && !body.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    // The raw suffix is never larger than its encoding: start from the last MAX_RESPONSE bytes,
    // then find the longest suffix whose encoding fits.
    let (mut lo, mut hi) = (boundary(body.len().saturating_sub(wire::MAX_RESPONSE)), body.len());
    if enc(lo).len() <= wire::MAX_RESPONSE {
        return enc(lo);
    }
    while lo < hi {
        let mid = boundary(lo + (hi - lo) / 2);
        if mid >= hi {
            break;
        }
        if enc(mid).len() <= wire::MAX_RESPONSE {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    enc(boundary(hi))
}

fn mem_available() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

/// The journal entry of a deploy whose image is verified (received or to be pulled).
fn deploy_active(m: &Manifest) -> Active {
    Active {
        id: m.id.clone(),
        seq: m.seq,
        kind: Kind::Deploy,
        name: m.name.clone(),
        run: m.run.clone(),
        window: m.health_window,
        keep: m.keep,
        step: Step::Verified,
        image_id: None,
        old: None,
        new: None,
        reason: String::new(),
        app: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_fit_their_cap_once_encoded() {
        for body in ["plain line\n".repeat(20_000), "\u{1b}[31mred\u{1b}[0m\n".repeat(30_000), "é\"\\".repeat(40_000), "short".into()] {
            let a = answer("t1", true, &body);
            assert!(a.len() <= wire::MAX_RESPONSE, "{} bytes", a.len());
            let v: Value = serde_json::from_slice(&a).unwrap();
            let got = v["body"].as_str().unwrap();
            assert!(body.ends_with(got), "the newest part is kept");
            assert!(got.len() * 7 >= wire::MAX_RESPONSE.min(body.len()) || got == body, "not cut too much: {}", got.len());
        }
    }
}
