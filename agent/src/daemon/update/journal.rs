//! `<root>/updates/journal`: what was deployed and what an update in progress has done so far.
//! Written (temp, fsync, rename, fsync dir) before each step is taken, so an agent that restarts
//! after a power cut or `kill -9` knows exactly where to pick up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use berth_runtime::fsutil::atomic_write;
use berth_runtime::{Error, IoContext, Result};

use berth_proto::wire::{Kind, Outcome};

const MAGIC: &[u8; 8] = b"BERTHUJ1";

/// A container kept stopped as a rollback target, with the restart policy it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub container: String,
    pub image_id: String,
    pub restart: String,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub seq: u64,
    pub update: String,
    pub container: String,
    pub image_id: String,
    /// Newest first; at most `keep` of them.
    pub previous: Vec<Retired>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// The tarball matched its signed digest (deploy), or the request was accepted.
    Verified,
    /// The image is in the store.
    Loaded,
    /// The old container (if any) is stopped, renamed and its policy off.
    OldStopped,
    /// The new container was started: it is being watched.
    Started,
    RollingBack,
    Committing,
}

impl Step {
    /// As the state and `deployment status` show it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Verified => "loading",
            Step::Loaded => "stopping-old",
            Step::OldStopped => "starting-new",
            Step::Started => "watching",
            Step::RollingBack => "rolling-back",
            Step::Committing => "committing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub id: String,
    pub seq: u64,
    pub kind: Kind,
    pub name: String,
    pub run: Vec<String>,
    pub window: u32,
    pub keep: u32,
    pub step: Step,
    /// The image loaded for a deploy.
    pub image_id: Option<String>,
    /// What was running before: restored on rollback.
    pub old: Option<Retired>,
    /// The container created by this update (removed on rollback).
    pub new: Option<String>,
    /// Why a rollback is happening.
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Highest sequence number accepted: anything at or below it is a replay.
    pub seq: u64,
    pub deployments: BTreeMap<String, Deployment>,
    pub last: Option<Outcome>,
    pub active: Option<Active>,
}

pub fn dir(root: &Path) -> PathBuf {
    root.join("updates")
}

/// `<update dir>/pull`: the digest-pinned reference a `fleet push --pull` deploy fetches (kept
/// beside the journal, whose format stays as it is, until the image is in the store).
pub fn pull_path(update_dir: &Path) -> PathBuf {
    update_dir.join("pull")
}

impl Journal {
    pub fn path(root: &Path) -> PathBuf {
        dir(root).join("journal")
    }

    /// The journal, or an empty one on a fresh root. A damaged journal is an error: guessing
    /// could replay an old update or forget a rollback target.
    pub fn load(root: &Path) -> Result<Journal> {
        let path = Journal::path(root);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Journal::default()),
            Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
        };
        let damaged = || Error::invalid(format!("update journal {} is damaged", path.display()));
        let body = berth_runtime::digest::unseal(MAGIC, &data).ok_or_else(damaged)?;
        postcard::from_bytes(body).map_err(|_| damaged())
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let body = postcard::to_allocvec(self).map_err(|e| Error::invalid(format!("encode update journal: {e}")))?;
        let data = berth_runtime::digest::seal(MAGIC, &body);
        std::fs::create_dir_all(dir(root)).ctx(|| format!("create {}", dir(root).display()))?;
        atomic_write(&Journal::path(root), &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let root = std::env::temp_dir().join(format!("berth-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(Journal::load(&root).unwrap(), Journal::default());
        let mut j = Journal { seq: 4, ..Default::default() };
        j.deployments.insert(
            "app".into(),
            Deployment { seq: 4, update: "u".into(), container: "c".into(), image_id: "sha256:x".into(), previous: vec![] },
        );
        j.save(&root).unwrap();
        assert_eq!(Journal::load(&root).unwrap(), j);
        let p = Journal::path(&root);
        let mut d = std::fs::read(&p).unwrap();
        let n = d.len() - 1;
        d[n] ^= 1;
        std::fs::write(&p, d).unwrap();
        assert!(Journal::load(&root).unwrap_err().to_string().contains("damaged"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
