//! A container's record on disk, `<root>/containers/<id>/state`: postcard, replaced atomically,
//! written only when the container changes state (never periodically: flash wears). One file per
//! container, so a damaged record is reported and skipped without losing the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::container::spec::Spec;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{atomic_write, replace};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Status {
    Created,
    /// `pid` is the container's pid 1; `monitor` its monitor process, identified across pid reuse
    /// by its start time in clock ticks.
    Running {
        pid: i32,
        monitor: i32,
        monitor_start: u64,
        started: i64,
    },
    Exited {
        code: i32,
        started: i64,
        finished: i64,
        oom_killed: bool,
        error: String,
    },
}

/// `--restart` as Docker takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Restart {
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times (0: no limit).
    OnFailure(u32),
    Always,
    UnlessStopped,
}

impl Restart {
    pub fn parse(s: &str) -> Result<Restart> {
        match s.split_once(':') {
            None if s == "no" => Ok(Restart::No),
            None if s == "always" => Ok(Restart::Always),
            None if s == "unless-stopped" => Ok(Restart::UnlessStopped),
            None if s == "on-failure" => Ok(Restart::OnFailure(0)),
            Some(("on-failure", n)) => n
                .parse()
                .map(Restart::OnFailure)
                .map_err(|_| Error::invalid(format!("invalid restart policy: maximum retry count must be a number: {s}"))),
            Some((_, _)) => {
                Err(Error::invalid(format!("invalid restart policy: maximum retry count can only be used with 'on-failure': {s}")))
            }
            None => Err(Error::invalid(format!("invalid restart policy {s:?}: no, on-failure[:N], always or unless-stopped"))),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Restart::No => "no".into(),
            Restart::OnFailure(0) => "on-failure".into(),
            Restart::OnFailure(n) => format!("on-failure:{n}"),
            Restart::Always => "always".into(),
            Restart::UnlessStopped => "unless-stopped".into(),
        }
    }
}

/// A health check as Docker's HEALTHCHECK: `test` is `["CMD", args...]` or `["CMD-SHELL", cmd]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

impl Health {
    /// The command it runs inside the container.
    pub fn command(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1..].join(" ")],
            Some("CMD") => self.test[1..].to_vec(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// The image as the user named it, and what it resolved to.
    pub image: String,
    pub image_id: Digest,
    /// The image's layers, lowest first.
    pub layers: Vec<Digest>,
    pub created: i64,
    pub spec: Spec,
    pub status: Status,
    pub auto_remove: bool,
    pub stop_signal: i32,
    pub stop_timeout: u32,
    pub labels: BTreeMap<String, String>,
    pub attach_stdin: bool,
    pub log: crate::container::logs::LogConfig,
    pub restart: Restart,
    pub restart_count: u32,
    /// Stopped by a user (`stop`, `kill`): `unless-stopped` and `always` leave it stopped until
    /// it is started again (`always` comes back when the agent restarts, as Docker's does).
    pub user_stopped: bool,
    pub health: Option<Health>,
    /// Anonymous volumes (`-v /path`): removed with the container by `rm -v` and `--rm`.
    pub anonymous_volumes: Vec<std::path::PathBuf>,
    /// The `run` options as given (for inspect's HostConfig).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub binds: Vec<String>,
    pub tmpfs: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

const MAGIC: &[u8; 8] = b"BERTHCT1";

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join("containers").join(id)
}

impl Record {
    fn encode(&self) -> Result<Vec<u8>> {
        let body = postcard::to_allocvec(self).map_err(|e| Error::invalid(format!("encode container {}: {e}", self.id)))?;
        Ok(crate::digest::seal(MAGIC, &body))
    }

    /// Durably (fsync): for a new container's configuration.
    pub fn save(&self, root: &Path) -> Result<()> {
        atomic_write(&dir(root, &self.id).join("state"), &self.encode()?)
    }

    /// Atomically but without waiting for the disk: for status changes (started, exited), which
    /// a power cut makes moot and which would otherwise cost two fsyncs per start and per exit.
    pub fn save_status(&self, root: &Path) -> Result<()> {
        replace(&dir(root, &self.id).join("state"), &self.encode()?)
    }

    pub fn load(path: &Path) -> Result<Record> {
        let data = std::fs::read(path).ctx(|| format!("read {}", path.display()))?;
        let damaged = || Error::invalid(format!("container record {} is damaged", path.display()));
        let body = crate::digest::unseal(MAGIC, &data).ok_or_else(damaged)?;
        postcard::from_bytes(body).map_err(|_| damaged())
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running { .. })
    }
}

/// Every readable record, and one message per record that could not be read.
pub fn list(root: &Path) -> (Vec<Record>, Vec<String>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    let Ok(rd) = std::fs::read_dir(root.join("containers")) else { return (ok, bad) };
    for e in rd.flatten() {
        let state = e.path().join("state");
        if !state.exists() {
            continue;
        }
        match Record::load(&state) {
            Ok(r) => ok.push(r),
            Err(err) => bad.push(err.to_string()),
        }
    }
    ok.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    (ok, bad)
}

/// Finds a container by full or unique-prefix id, or by name (Docker's order: id, then name).
pub fn find<'a, I>(records: I, key: &str) -> Result<&'a Record>
where
    I: IntoIterator<Item = &'a Record>,
{
    find_in(&mut records.into_iter(), key)
}

// One copy of the search, whatever the caller holds its records in.
fn find_in<'a>(records: &mut dyn Iterator<Item = &'a Record>, key: &str) -> Result<&'a Record> {
    let key = key.strip_prefix('/').unwrap_or(key);
    // An exact id or name wins over id prefixes, wherever it comes.
    let (mut prefixed, mut hits) = (None, 0);
    for r in records {
        if r.id == key || r.name == key {
            return Ok(r);
        }
        if !key.is_empty() && r.id.starts_with(key) {
            prefixed = Some(r);
            hits += 1;
        }
    }
    match (prefixed, hits) {
        (Some(r), 1) => Ok(r),
        (None, _) => Err(Error::not_found(format!("No such container: {key}"))),
        _ => Err(Error::invalid(format!("multiple IDs found with provided prefix: {key}"))),
    }
}
