//! `<root>/updates/journal`: what was deployed and what an update in progress has done so far.
//! Written (temp, fsync, rename, fsync dir) before each step is taken, so an agent that restarts
//! after a power cut or `kill -9` knows exactly where to pick up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use berth_runtime::fsutil::atomic_write;
use berth_runtime::{Error, IoContext, Result};

use berth_proto::wire::{Kind, Outcome};

/// Version 2 added applications (`Active::app`, `Deployment::app`); a version 1 journal (written
/// by an agent before it) is read and converted, and saved as version 2 on the next step.
const MAGIC: &[u8; 8] = b"BERTHUJ2";
const MAGIC_V1: &[u8; 8] = b"BERTHUJ1";

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
    /// An application's revision (`container` and `image_id` are empty then).
    pub app: Option<AppDeployment>,
}

/// One service's container in an application revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub service: String,
    /// The container name the service runs under (its retired container is renamed).
    pub name: String,
    /// What later services wait for (`started`, `healthy`, `completed`).
    pub ready: String,
    pub container: Retired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDeployment {
    /// In start order.
    pub services: Vec<Member>,
    /// Earlier revisions kept as rollback targets, newest first, at most `keep`.
    pub previous: Vec<Vec<Member>>,
    /// Its revision-bound volumes (snapshots `snap-SEQ` kept for the revisions in `previous`).
    pub volumes: Vec<String>,
}

/// One service of an application update: what it replaces and what replaced it, each written
/// here before it is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub service: String,
    pub name: String,
    /// Empty for a service of the old revision that the new one no longer has (retired only).
    pub run: Vec<String>,
    pub ready: String,
    /// Networks joined between create and start (the manifest's `connect`).
    pub connect: Vec<berth_proto::wire::AppAttach>,
    pub image_id: Option<String>,
    pub old: Option<Retired>,
    pub new: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRun {
    /// In start order.
    pub units: Vec<Unit>,
    pub networks: Vec<berth_proto::wire::AppNetwork>,
    pub volumes: Vec<berth_proto::wire::AppVolume>,
    /// The networks this update made (journaled before each is made): a rollback removes them.
    pub made: Vec<String>,
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
    /// An application update: its services (then `run`, `old` and `new` stay empty).
    pub app: Option<AppRun>,
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
            Err(e) => return Err(e).ctx_path("read", &path),
        };
        let damaged = || Error::invalid(format!("update journal {} is damaged", path.display()));
        if let Some(body) = berth_runtime::digest::unseal(MAGIC_V1, &data) {
            let old: v1::Journal = postcard::from_bytes(body).map_err(|_| damaged())?;
            return Ok(old.into());
        }
        let body = berth_runtime::digest::unseal(MAGIC, &data).ok_or_else(damaged)?;
        postcard::from_bytes(body).map_err(|_| damaged())
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let body = postcard::to_allocvec(self).map_err(|e| Error::invalid(format!("encode update journal: {e}")))?;
        let data = berth_runtime::digest::seal(MAGIC, &body);
        std::fs::create_dir_all(dir(root)).ctx_path("create", &dir(root))?;
        atomic_write(&Journal::path(root), &data)
    }
}

/// The journal as agents before applications wrote it (`BERTHUJ1`): postcard has no field
/// names, so its layout is kept here to be read and converted.
mod v1 {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Deployment {
        pub seq: u64,
        pub update: String,
        pub container: String,
        pub image_id: String,
        pub previous: Vec<Retired>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Active {
        pub id: String,
        pub seq: u64,
        pub kind: Kind,
        pub name: String,
        pub run: Vec<String>,
        pub window: u32,
        pub keep: u32,
        pub step: Step,
        pub image_id: Option<String>,
        pub old: Option<Retired>,
        pub new: Option<String>,
        pub reason: String,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Journal {
        pub seq: u64,
        pub deployments: BTreeMap<String, Deployment>,
        pub last: Option<Outcome>,
        pub active: Option<Active>,
    }

    impl From<Journal> for super::Journal {
        fn from(j: Journal) -> super::Journal {
            super::Journal {
                seq: j.seq,
                deployments: j
                    .deployments
                    .into_iter()
                    .map(|(k, d)| {
                        let d = super::Deployment {
                            seq: d.seq,
                            update: d.update,
                            container: d.container,
                            image_id: d.image_id,
                            previous: d.previous,
                            app: None,
                        };
                        (k, d)
                    })
                    .collect(),
                last: j.last,
                active: j.active.map(|a| super::Active {
                    id: a.id,
                    seq: a.seq,
                    kind: a.kind,
                    name: a.name,
                    run: a.run,
                    window: a.window,
                    keep: a.keep,
                    step: a.step,
                    image_id: a.image_id,
                    old: a.old,
                    new: a.new,
                    reason: a.reason,
                    app: None,
                }),
            }
        }
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
            Deployment { seq: 4, update: "u".into(), container: "c".into(), image_id: "sha256:x".into(), previous: vec![], app: None },
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

#[cfg(test)]
mod v1_tests {
    use super::*;

    /// An agent before applications left a journal mid-update: the new one reads it, goes on
    /// from the same step, and writes version 2.
    #[test]
    fn a_version_1_journal_is_read_and_converted() {
        let root = std::env::temp_dir().join(format!("berth-journal-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let retired = Retired { container: "old1".into(), image_id: "sha256:o".into(), restart: "always".into(), seq: 2 };
        let mut deployments = BTreeMap::new();
        deployments.insert(
            "app".to_string(),
            v1::Deployment { seq: 2, update: "u2".into(), container: "old1".into(), image_id: "sha256:o".into(), previous: vec![] },
        );
        let old = v1::Journal {
            seq: 3,
            deployments,
            last: None,
            active: Some(v1::Active {
                id: "u3".into(),
                seq: 3,
                kind: Kind::Deploy,
                name: "app".into(),
                run: vec!["--name".into(), "app".into(), "app:3".into()],
                window: 5,
                keep: 1,
                step: Step::OldStopped,
                image_id: Some("sha256:n".into()),
                old: Some(retired.clone()),
                new: None,
                reason: String::new(),
            }),
        };
        let body = postcard::to_allocvec(&old).unwrap();
        std::fs::create_dir_all(dir(&root)).unwrap();
        std::fs::write(Journal::path(&root), berth_runtime::digest::seal(MAGIC_V1, &body)).unwrap();
        let j = Journal::load(&root).unwrap();
        assert_eq!(j.seq, 3);
        let d = &j.deployments["app"];
        assert_eq!((d.container.as_str(), d.app.is_none()), ("old1", true));
        let a = j.active.clone().unwrap();
        assert_eq!((a.step, a.old, a.app, a.image_id.as_deref()), (Step::OldStopped, Some(retired), None, Some("sha256:n")));
        j.save(&root).unwrap();
        assert!(std::fs::read(Journal::path(&root)).unwrap().starts_with(MAGIC), "saved as version 2");
        assert_eq!(Journal::load(&root).unwrap(), j);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
