//! What travels over the broker for updates, and its checks. Everything here decodes untrusted
//! bytes (the broker, and whoever can publish to it), so every decoder bounds what it accepts
//! and fails with a message naming the field; `fuzz/` drives these functions directly.
//!
//! The protocol is described for operators in docs/update-protocol.md; keep the two in step.

use serde::{Deserialize, Serialize};

use berth_runtime::{Error, Result};

/// Version of the manifest format this agent understands.
pub const VERSION: u32 = 1;
/// Chunks default to 96 KiB so that brokers with 128 KB message limits (cloud IoT brokers)
/// carry them with the header and topic included.
pub const DEFAULT_CHUNK: u32 = 96 * 1024;
/// Largest chunk accepted: bounds the agent's receive buffer whatever the manifest says.
pub const MAX_CHUNK: u32 = 1024 * 1024;
/// Largest signed envelope (manifest plus signature) accepted, before it is even parsed.
pub const MAX_ENVELOPE: usize = 64 * 1024;
/// Largest number of chunks in one update (at 96 KiB: 384 GiB, far beyond any board).
pub const MAX_CHUNKS: u32 = 1 << 22;
/// Bytes before a chunk's data: magic, update id, index, count, sha256 of the data.
pub const CHUNK_HEADER: usize = 4 + 16 + 4 + 4 + 32;
const CHUNK_MAGIC: &[u8; 4] = b"BCK1";

/// What an update asks the device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Receive an image, run a new container from it, watch it, commit or roll back.
    Deploy,
    /// Go back to the previous committed version of the named container.
    Rollback,
    /// Restart the named container.
    Restart,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Rollback => "rollback",
            Kind::Restart => "restart",
        }
    }
}

/// The image an update carries: a `docker save` tarball sent in chunks on `topic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    pub size: u64,
    /// Hex sha256 of the whole tarball.
    pub sha256: String,
    pub chunk_size: u32,
    /// Where the chunks are published (one topic per update, shared by all its targets).
    pub topic: String,
}

/// The signed part of an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    /// 32 hex digits, chosen by the sender, unique per update.
    pub id: String,
    /// Must be above the device's current sequence number: an old update replayed is refused.
    pub seq: u64,
    pub kind: Kind,
    /// Unix seconds at signing (informative: boards without a clock cannot check it).
    #[serde(default)]
    pub created: i64,
    /// Device ids this update is for; a device not named (and in none of `groups`) refuses it.
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The container the update is about (`--name` of `run`).
    pub name: String,
    #[serde(default)]
    pub image: Option<ImageRef>,
    /// Instead of `image`: a digest-pinned reference (`REG/REPO@sha256:HEX`) the device pulls
    /// from its registry or mirror and checks against that digest (`fleet push --pull`). Agents
    /// older than this field refuse such a manifest (unknown field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<String>,
    /// `berth run` arguments (after `run`): the new container.
    #[serde(default)]
    pub run: Vec<String>,
    /// Seconds the new container must stay up (and healthy, if it has a health check).
    #[serde(default = "default_window")]
    pub health_window: u32,
    /// Previous versions kept as rollback targets.
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// A whole application (`fleet push --app`): its services replace the old revision's as one
    /// update; `name` is the application's, `run` is empty. Agents older than this field refuse
    /// such a manifest ("unknown field `app`") without touching anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
}

/// Largest number of services in one application.
pub const MAX_SERVICES: usize = 32;

/// An application as the device applies it: the compose file normalised by the operator (the
/// device reads no YAML), services in start (`depends_on`) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub services: Vec<AppService>,
    #[serde(default)]
    pub networks: Vec<AppNetwork>,
    #[serde(default)]
    pub volumes: Vec<AppVolume>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppService {
    /// The compose service's name (reported when it fails).
    pub service: String,
    /// `berth run` words (with `--name`, the container name as compose names it).
    pub run: Vec<String>,
    /// What a later service waits for before it starts: `started`, `healthy` or `completed`
    /// (compose's `service_started`, `service_healthy`, `service_completed_successfully`).
    #[serde(default)]
    pub ready: String,
    /// The service's other networks (the first is in `run`), joined after the container is
    /// created and before it starts, as `berth compose up` does. Left out when empty, so that
    /// an application on one network per service parses on agents older than the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect: Vec<AppAttach>,
}

/// One more network for a service: `network connect --alias ... --ip ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppAttach {
    pub network: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppNetwork {
    pub name: String,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub internal: bool,
    /// `KEY=VALUE`.
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppVolume {
    pub name: String,
    #[serde(default)]
    pub labels: Vec<String>,
    /// `x-berth: {revision_bound: true}`: snapshotted when a revision starts, restored on
    /// rollback.
    #[serde(default)]
    pub revision_bound: bool,
}

impl AppService {
    /// The container name (`--name` of its run words).
    pub fn name(&self) -> Option<String> {
        crate::run::parse_run_words(&self.run).ok().and_then(|o| o.name)
    }
}

impl App {
    fn check(&self) -> std::result::Result<(), String> {
        if self.services.is_empty() || self.services.len() > MAX_SERVICES {
            return Err(format!("an application has 1 to {MAX_SERVICES} services, not {}", self.services.len()));
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.services {
            let o = crate::run::parse_run_words(&s.run).map_err(|e| format!("service {}: run arguments: {e}", s.service))?;
            let Some(name) = o.name.filter(|n| crate::names::valid_name(n)) else {
                return Err(format!("service {}: run arguments need a valid --name", s.service));
            };
            if o.auto_remove || o.interactive || o.tty {
                return Err(format!("service {}: run arguments must not use --rm, -i or -t for an update", s.service));
            }
            if !names.insert(name.clone()) {
                return Err(format!("two services are named {name}"));
            }
            if !["", "started", "healthy", "completed"].contains(&s.ready.as_str()) {
                return Err(format!("service {}: ready {:?} is not started, healthy or completed", s.service, s.ready));
            }
            if s.run.len() > 256 || s.run.iter().any(|a| a.len() > 4096) || s.service.len() > 128 {
                return Err(format!("service {}: run arguments are too long", s.service));
            }
        }
        for n in &self.networks {
            if !crate::names::valid_name(&n.name) {
                return Err(format!("invalid network name {:?}", n.name));
            }
        }
        for v in &self.volumes {
            if !crate::names::valid_name(&v.name) {
                return Err(format!("invalid volume name {:?}", v.name));
            }
        }
        Ok(())
    }
}

fn default_window() -> u32 {
    30
}

fn default_keep() -> u32 {
    1
}

/// A manifest with its signature: the manifest travels as the exact string that was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub manifest: String,
    /// base64 of the 64-byte ed25519 signature over `manifest`'s bytes.
    pub sig: String,
}

/// A reference pinned by digest, as `fleet push --pull` sends it: a name, `@sha256:`, 64 lowercase
/// hex digits; bounded, printable, no spaces (the name itself is parsed by the device's pull).
pub fn valid_pull(r: &str) -> bool {
    let Some((name, digest)) = r.rsplit_once('@') else { return false };
    !name.is_empty()
        && r.len() <= 512
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'@')
        && digest.strip_prefix("sha256:").is_some_and(|h| is_hex(h, 64))
}

pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A topic we publish to or subscribe on: no wildcards, no empty levels at the ends, bounded.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty() && t.len() <= 256 && !t.contains(['+', '#', '\0']) && !t.starts_with('$')
}

impl Envelope {
    pub fn decode(payload: &[u8]) -> Result<Envelope> {
        if payload.len() > MAX_ENVELOPE {
            return Err(Error::invalid(format!("update message of {} bytes is over the {MAX_ENVELOPE}-byte limit", payload.len())));
        }
        serde_json::from_slice(payload).map_err(|e| Error::invalid(format!("malformed update message: {e}")))
    }
}

impl Manifest {
    /// Parses and checks the fields on their own (signature, sequence and targets are checked
    /// by the caller, which knows the keys and the device).
    pub fn parse(text: &str) -> Result<Manifest> {
        // from_slice, as everywhere in the firmware: serde_json's parser instantiated for one
        // reader (SliceRead) rather than two (StrRead too) is 7.5 KB less on aarch64.
        let m: Manifest = serde_json::from_slice(text.as_bytes()).map_err(|e| Error::invalid(format!("malformed update manifest: {e}")))?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::invalid(format!("update manifest: {what}")));
        if self.version != VERSION {
            return bad(format!("version {} is not supported (this agent reads version {VERSION})", self.version));
        }
        if !is_hex(&self.id, 32) {
            return bad(format!("id {:?} is not 32 lowercase hex digits", self.id));
        }
        if self.seq == 0 {
            return bad("seq must be at least 1".into());
        }
        if !crate::names::valid_name(&self.name) {
            return bad(format!("invalid container name {:?}", self.name));
        }
        if let Some(app) = &self.app {
            if self.kind != Kind::Deploy || self.pull.is_some() || !self.run.is_empty() {
                return bad("an application is a deploy without --pull and without run arguments of its own".into());
            }
            app.check().map_err(|e| Error::invalid(format!("update manifest: application {}: {e}", self.name)))?;
        }
        if let Some(p) = &self.pull {
            if self.kind != Kind::Deploy || self.image.is_some() {
                return bad("only a deploy without an image names one to pull".into());
            }
            if !valid_pull(p) {
                return bad(format!("pull reference {p:?} is not NAME@sha256:DIGEST"));
            }
            if self.run.is_empty() {
                return bad("a deploy names the container to run (run arguments)".into());
            }
        }
        match (self.kind, &self.image) {
            (Kind::Deploy, None) if self.pull.is_some() || self.app.is_some() => {}
            (Kind::Deploy, None) => return bad("a deploy carries an image".into()),
            (Kind::Deploy, Some(i)) => {
                if !is_hex(&i.sha256, 64) {
                    return bad(format!("image sha256 {:?} is not 64 lowercase hex digits", i.sha256));
                }
                if i.size == 0 {
                    return bad("image size is 0".into());
                }
                if i.chunk_size == 0 || i.chunk_size > MAX_CHUNK {
                    return bad(format!("chunk size {} is outside 1..={MAX_CHUNK}", i.chunk_size));
                }
                if i.size.div_ceil(u64::from(i.chunk_size)) > u64::from(MAX_CHUNKS) {
                    return bad(format!("{} chunks are more than {MAX_CHUNKS}", i.size.div_ceil(u64::from(i.chunk_size))));
                }
                if !valid_topic(&i.topic) {
                    return bad(format!("chunk topic {:?} is not a plain topic", i.topic));
                }
                if self.run.is_empty() && self.app.is_none() {
                    return bad("a deploy names the container to run (run arguments)".into());
                }
            }
            (_, Some(_)) => return bad(format!("a {} carries no image", self.kind.name())),
            (_, None) => {}
        }
        if self.run.len() > 256 || self.run.iter().any(|a| a.len() > 4096) {
            return bad("run arguments are too long".into());
        }
        if self.health_window > 24 * 3600 {
            return bad(format!("health window of {} s is over a day", self.health_window));
        }
        if self.keep > 16 {
            return bad(format!("keep {} is over 16", self.keep));
        }
        Ok(())
    }

    /// Number of chunks of the image (0 when there is none).
    pub fn chunks(&self) -> u32 {
        self.image.as_ref().map_or(0, |i| i.size.div_ceil(u64::from(i.chunk_size)) as u32)
    }

    /// Length of chunk `index`: all are `chunk_size` but the last.
    pub fn chunk_len(&self, index: u32) -> usize {
        let Some(i) = &self.image else { return 0 };
        let start = u64::from(index) * u64::from(i.chunk_size);
        (i.size.saturating_sub(start)).min(u64::from(i.chunk_size)) as usize
    }

    pub fn id_bytes(&self) -> [u8; 16] {
        id_bytes(&self.id)
    }

    /// Whether this device (its id and groups) is among the targets.
    pub fn targets_device(&self, device: &str, groups: &[String]) -> bool {
        self.targets.iter().any(|t| t == device) || self.groups.iter().any(|g| groups.contains(g))
    }
}

fn id_bytes(hex: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
    }
    out
}

/// One chunk as it arrives, borrowed from the message payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub update: [u8; 16],
    pub index: u32,
    pub count: u32,
    pub sha256: [u8; 32],
    pub data: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// Splits the header off; checks only its own shape (the manifest checks come after).
    pub fn decode(payload: &'a [u8]) -> Result<Chunk<'a>> {
        if payload.len() < CHUNK_HEADER || &payload[..4] != CHUNK_MAGIC {
            return Err(Error::invalid(format!("malformed chunk of {} bytes (no BCK1 header)", payload.len())));
        }
        let u32_at = |o: usize| u32::from_be_bytes([payload[o], payload[o + 1], payload[o + 2], payload[o + 3]]);
        let mut update = [0u8; 16];
        update.copy_from_slice(&payload[4..20]);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&payload[28..60]);
        let c = Chunk { update, index: u32_at(20), count: u32_at(24), sha256, data: &payload[CHUNK_HEADER..] };
        if c.index >= c.count {
            return Err(Error::invalid(format!("chunk index {} is not below its count {}", c.index, c.count)));
        }
        Ok(c)
    }

    /// Checks the chunk against the manifest it belongs to and its own digest.
    pub fn verify(&self, m: &Manifest) -> Result<()> {
        self.fits(m)?;
        if sha256(self.data) != self.sha256 {
            return Err(Error::invalid(format!("chunk {} does not match its sha256", self.index)));
        }
        Ok(())
    }

    /// Checks the chunk's update, count and length against the manifest, but not its bytes
    /// against its digest: a receiver that hashes the whole tarball as it arrives checks the
    /// chunks' own digests only when that whole digest does not match (one hash pass, not two).
    pub fn fits(&self, m: &Manifest) -> Result<()> {
        if self.update != m.id_bytes() {
            return Err(Error::invalid("chunk belongs to another update"));
        }
        if self.count != m.chunks() {
            return Err(Error::invalid(format!("chunk {} says {} chunks, the manifest {}", self.index, self.count, m.chunks())));
        }
        let want = m.chunk_len(self.index);
        if self.data.len() != want {
            return Err(Error::invalid(format!("chunk {} has {} bytes, expected {want}", self.index, self.data.len())));
        }
        Ok(())
    }

    pub fn encode(update: &str, index: u32, count: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNK_HEADER + data.len());
        out.extend_from_slice(CHUNK_MAGIC);
        out.extend_from_slice(&id_bytes(update));
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&sha256(data));
        out.extend_from_slice(data);
        out
    }
}

pub use berth_runtime::digest::sha256;

/// Device → operator: where a transfer stands. `missing` lists inclusive index ranges the
/// device lacks below the highest it has seen (at most `MAX_RANGES` of them): the sender
/// resends those and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub id: String,
    pub have: u32,
    pub total: u32,
    /// The first chunk the device lacks (`total` when it has all).
    pub next: u32,
    #[serde(default)]
    pub missing: Vec<(u32, u32)>,
    /// receiving | verifying | applying | done
    pub phase: String,
}

pub const MAX_RANGES: usize = 64;

/// Device → operator: how an update ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub id: String,
    pub seq: u64,
    pub name: String,
    /// committed | rolled_back | refused | failed
    pub result: String,
    pub reason: String,
    /// The image now running under `name` (`sha256:...`), if any.
    #[serde(default)]
    pub image: String,
    pub time: i64,
}

impl Outcome {
    /// An update refused before anything was changed (the manifest, when it could be read).
    pub fn refused(m: Option<&Manifest>, reason: String, time: i64) -> Outcome {
        Outcome {
            id: m.map(|m| m.id.clone()).unwrap_or_default(),
            seq: m.map_or(0, |m| m.seq),
            name: m.map(|m| m.name.clone()).unwrap_or_default(),
            result: "refused".into(),
            reason,
            image: String::new(),
            time,
        }
    }
}

/// Operator → device on `.../cmd`: read-only questions (changes come as signed envelopes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub cmd: String,
    /// Echoed in the answer on `.../resp` so a caller can match it.
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tail: Option<u32>,
}

impl Command {
    pub fn decode(payload: &[u8]) -> Result<Command> {
        if payload.len() > 4096 {
            return Err(Error::invalid(format!("command of {} bytes is over the 4096-byte limit", payload.len())));
        }
        let c: Command = serde_json::from_slice(payload).map_err(|e| Error::invalid(format!("malformed command: {e}")))?;
        if c.token.len() > 128 || c.name.len() > 128 {
            return Err(Error::invalid("command token or name is too long"));
        }
        Ok(c)
    }
}

/// Answers on `.../resp` are capped: brokers limit message sizes, and logs can be large.
pub const MAX_RESPONSE: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            version: 1,
            id: "0123456789abcdef0123456789abcdef".into(),
            seq: 3,
            kind: Kind::Deploy,
            created: 0,
            targets: vec!["dev1".into()],
            groups: vec![],
            name: "app".into(),
            image: Some(ImageRef { size: 250, sha256: "a".repeat(64), chunk_size: 100, topic: "berth/v1/updates/x".into() }),
            pull: None,
            run: vec!["--name".into(), "app".into(), "img:1".into()],
            health_window: 5,
            keep: 1,
            app: None,
        }
    }

    #[test]
    fn application_manifests_parse_and_are_checked() {
        let mut m = manifest();
        m.run.clear();
        m.app = Some(App {
            services: vec![
                AppService {
                    service: "db".into(),
                    run: vec!["--name".into(), "p-db-1".into(), "db:1".into()],
                    ready: "healthy".into(),
                    connect: vec![],
                },
                AppService {
                    service: "web".into(),
                    run: vec!["--name".into(), "p-web-1".into(), "web:1".into()],
                    ready: String::new(),
                    connect: vec![AppAttach { network: "p_back".into(), aliases: vec!["web".into()], ip: Some("10.9.0.5".into()) }],
                },
            ],
            networks: vec![AppNetwork {
                name: "p_default".into(),
                subnet: None,
                gateway: None,
                internal: false,
                labels: vec![],
                options: vec![],
            }],
            volumes: vec![],
        });
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        // A service on one network says nothing of `connect` (agents older than it parse it).
        assert_eq!(text.matches("\"connect\":").count(), 1, "{text}");
        let mut no_image = m.clone();
        no_image.image = None;
        Manifest::parse(&serde_json::to_string(&no_image).unwrap()).unwrap();
        let plain = serde_json::to_string(&manifest()).unwrap();
        assert!(!plain.contains("\"app\":"), "a single container's manifest is as before: {plain}");
        let mut bad = m.clone();
        bad.app.as_mut().unwrap().services[1].run[1] = "p-db-1".into();
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).unwrap_err().to_string().contains("two services"));
        bad = m.clone();
        bad.app.as_mut().unwrap().services[0].run = vec!["db:1".into()];
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).is_err(), "no --name");
        bad = m.clone();
        bad.app.as_mut().unwrap().services[0].ready = "soon".into();
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).is_err());
        bad = m.clone();
        bad.run = vec!["--name".into(), "x".into(), "x:1".into()];
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).is_err(), "run beside an app");
        bad = m.clone();
        bad.app.as_mut().unwrap().services.clear();
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).is_err(), "no services");
    }

    #[test]
    fn pull_manifests_carry_a_digest_pinned_reference_and_no_image() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let mut m = manifest();
        m.image = None;
        m.pull = Some(format!("reg.lan:5000/app@{digest}"));
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        assert_eq!(m.chunks(), 0);
        let plain = serde_json::to_string(&manifest()).unwrap();
        assert!(!plain.contains("pull"), "a transfer's manifest is as before: {plain}");
        for bad in ["reg/app:1", "reg/app@sha256:abc", "@sha256:x", "reg app@sha256:", "reg/app@md5:00"] {
            let mut b = m.clone();
            b.pull = Some(if bad.ends_with(':') { format!("{bad}{}", "b".repeat(64)) } else { bad.into() });
            assert!(Manifest::parse(&serde_json::to_string(&b).unwrap()).is_err(), "{bad} accepted");
        }
        let mut both = m.clone();
        both.image = manifest().image;
        assert!(Manifest::parse(&serde_json::to_string(&both).unwrap()).is_err(), "image and pull");
        let mut rb = m.clone();
        rb.kind = Kind::Rollback;
        assert!(Manifest::parse(&serde_json::to_string(&rb).unwrap()).is_err(), "rollback with a pull");
        assert!(valid_pull(&format!("busybox@{digest}")));
    }

    #[test]
    fn manifest_round_trip_and_checks() {
        let m = manifest();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        assert_eq!(m.chunks(), 3);
        assert_eq!((m.chunk_len(0), m.chunk_len(2), m.chunk_len(3)), (100, 50, 0));
        for (f, v) in [
            ("version", "2"),
            ("id", "\"xyz\""),
            ("seq", "0"),
            ("name", "\"/bad\""),
            ("health_window", "999999"),
            ("keep", "99"),
            ("unknown", "1"),
        ] {
            let mut j: serde_json::Value = serde_json::from_str(&text).unwrap();
            j[f] = serde_json::from_str(v).unwrap();
            assert!(Manifest::parse(&j.to_string()).is_err(), "{f}={v} accepted");
        }
        let mut bad = m.clone();
        bad.image.as_mut().unwrap().chunk_size = MAX_CHUNK + 1;
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).is_err());
        bad = m.clone();
        bad.image.as_mut().unwrap().topic = "berth/#".into();
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).is_err());
        bad = m.clone();
        bad.kind = Kind::Rollback;
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).is_err(), "rollback with an image");
        bad.image = None;
        bad.run.clear();
        assert!(Manifest::parse(&serde_json::to_string(&bad).unwrap()).is_ok());
        assert!(m.targets_device("dev1", &[]));
        assert!(!m.targets_device("dev2", &["g".into()]));
    }

    #[test]
    fn chunks_are_checked_against_the_manifest() {
        let m = manifest();
        let data = vec![7u8; 100];
        let enc = Chunk::encode(&m.id, 1, 3, &data);
        let c = Chunk::decode(&enc).unwrap();
        assert_eq!((c.index, c.count, c.data.len()), (1, 3, 100));
        c.verify(&m).unwrap();
        // wrong length for its index
        let short = Chunk::encode(&m.id, 1, 3, &data[..50]);
        assert!(Chunk::decode(&short).unwrap().verify(&m).is_err());
        // the last chunk is shorter
        Chunk::decode(&Chunk::encode(&m.id, 2, 3, &data[..50])).unwrap().verify(&m).unwrap();
        // index out of range, wrong count, another update, flipped data
        assert!(Chunk::decode(&Chunk::encode(&m.id, 3, 3, &data)).is_err());
        assert!(Chunk::decode(&Chunk::encode(&m.id, 1, 4, &data)).unwrap().verify(&m).is_err());
        assert!(Chunk::decode(&Chunk::encode(&"f".repeat(32), 1, 3, &data)).unwrap().verify(&m).is_err());
        let mut flipped = enc.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(Chunk::decode(&flipped).unwrap().verify(&m).is_err());
        assert!(Chunk::decode(&enc[..CHUNK_HEADER - 1]).is_err());
        assert!(Chunk::decode(b"nope").is_err());
    }

    #[test]
    fn envelopes_and_commands_are_bounded() {
        assert!(Envelope::decode(&vec![b' '; MAX_ENVELOPE + 1]).is_err());
        assert!(Envelope::decode(b"{\"manifest\":\"x\"}").is_err());
        assert!(Envelope::decode(b"{\"manifest\":\"x\",\"sig\":\"y\"}").is_ok());
        assert!(Command::decode(b"{\"cmd\":\"status\"}").is_ok());
        assert!(Command::decode(b"{\"cmd\":\"status\",\"evil\":1}").is_err());
        assert!(Command::decode(format!("{{\"cmd\":\"x\",\"token\":\"{}\"}}", "t".repeat(200)).as_bytes()).is_err());
    }
}
