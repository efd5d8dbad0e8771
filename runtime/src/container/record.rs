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
    pub layers: crate::shared::SharedList<Digest>,
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
    pub health: Option<Box<Health>>,
    /// Anonymous volumes (`-v /path`): removed with the container by `rm -v` and `--rm`.
    pub anonymous_volumes: Box<[std::path::PathBuf]>,
    /// The `run` options as given (for inspect's HostConfig).
    pub cap_add: Box<[String]>,
    pub cap_drop: Box<[String]>,
    pub binds: Box<[String]>,
    pub tmpfs: Box<[String]>,
    pub entrypoint: crate::shared::SharedList,
    pub cmd: crate::shared::SharedList,
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
        let data = std::fs::read(path).ctx_path("read", path)?;
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
        (None, _) => Err(Error::no_such_container(key)),
        _ => Err(Error::invalid(format!("multiple IDs found with provided prefix: {key}"))),
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    /// The `state` file an agent of 2026-12-07 wrote (before the lists in a record became boxed
    /// and shared slices) for a `create` with most options: capabilities, a bind and a tmpfs, an
    /// entrypoint, a ulimit, a device and a device rule, a sysctl, a health check, environment,
    /// labels, limits, a restart policy and a stop signal.
    const GOLDEN: &str = concat!(
        "424552544843543161366136623165383037386361633238376534646663623765663663643335663665666136653063",
        "356166366636636564303263653533623765623135333262406133343938663534363463363037303338626533663038",
        "323536313561663936393335333335653664363261643433366263353339323136373736613362373706676f6c64656e",
        "0762757379626f7840303864636237623330366538333461356132646633633364613035376534323062386263313961",
        "613332346332653266633065666437323066373762616136630140623938343765323932643161303263396231393566",
        "36653638613466343763396266356263613934303830633533643737333334313166626262373138346333b8e2b7b10d",
        "03072f62696e2f7368022d63076563686f2068690341504154483d2f7573722f6c6f63616c2f7362696e3a2f7573722f",
        "6c6f63616c2f62696e3a2f7573722f7362696e3a2f7573722f62696e3a2f7362696e3a2f62696e07464f4f3d62617215",
        "484f53544e414d453d613334393866353436346336042f746d7009313030303a313030300c6133343938663534363463",
        "360300152f7661722f746d702f7265632e467557522f737263052f646174610101052f72756e320001082f7363726174",
        "63680773697a653d316d00010e0f4341505f41554449545f5752495445094341505f43484f574e104341505f4441435f",
        "4f564552524944450a4341505f464f574e45520a4341505f465345544944084341505f4b494c4c0d4341505f4e45545f",
        "41444d494e144341505f4e45545f42494e445f534552564943450b4341505f4e45545f5241570b4341505f5345544643",
        "41500a4341505f5345544749440b4341505f534554504341500a4341505f5345545549440e4341505f5359535f434852",
        "4f4f540001010e066e6f66696c6580048008000001808080400000016400000d0763202a3a2a206d0762202a3a2a206d",
        "096320313a332072776d096320313a352072776d096320313a372072776d096320313a382072776d096320313a392072",
        "776d096320353a302072776d096320353a312072776d096320353a322072776d0b63203133363a2a2072776d09632031",
        "3a332072776d0a632034323a2a2072776d010b2f6465762f6d796e756c6c092f6465762f6e756c6c010103b603000007",
        "00010201012a000701152f6465762f6e756c6c3a2f6465762f6d796e756c6c010a632034323a2a20726d77000001136e",
        "65742e697076342e69705f666f727761726401310000040a020361707006676f6c64656e047469657204746573740001",
        "808080050301030000010209434d442d5348454c4c04747275658827b0ea0103000001094e45545f41444d494e01054d",
        "4b4e4f44011e2f7661722f746d702f7265632e467557522f7372633a2f646174613a726f01102f736372617463683a73",
        "697a653d316d01072f62696e2f736802022d63076563686f206869",
    );

    #[test]
    fn a_record_an_earlier_agent_wrote_reads_back_and_writes_back_byte_for_byte() {
        let data: Vec<u8> = (0..GOLDEN.len()).step_by(2).map(|i| u8::from_str_radix(&GOLDEN[i..i + 2], 16).unwrap()).collect();
        let body = crate::digest::unseal(MAGIC, &data).unwrap();
        let r: Record = postcard::from_bytes(body).unwrap();
        assert_eq!(r.name, "golden");
        assert_eq!((&r.cap_add[..], &r.cap_drop[..]), (&["NET_ADMIN".to_string()][..], &["MKNOD".to_string()][..]));
        assert_eq!(&r.entrypoint[..], ["/bin/sh"]);
        assert_eq!(&r.cmd[..], ["-c", "echo hi"]);
        assert_eq!(&r.spec.args[..], ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(r.layers.len(), 1);
        assert_eq!((r.binds.len(), r.tmpfs.len(), r.spec.ulimits.len(), r.spec.devices.len()), (1, 1, 1, 1));
        assert_eq!(&r.spec.sysctls[..], [("net.ipv4.ip_forward".to_string(), "1".to_string())]);
        assert_eq!(r.health.as_ref().map(|h| h.interval_ms), Some(5000));
        assert_eq!(r.restart, Restart::OnFailure(3));
        assert_eq!(r.encode().unwrap(), data);
    }
}
