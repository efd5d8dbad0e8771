//! A full disk never stops the agent: the reserve for its own records (`berth_runtime::reserve`,
//! drawn on by every crash-safe write and regrown here once space is back), and the image GC
//! that removes unused images, oldest first, while free space is below the configured threshold.
//! Images of containers and of the update manager's deployments and rollback targets stay.

use std::collections::BTreeSet;
use std::path::Path;

use berth_runtime::digest::Digest;
use berth_runtime::image::db::ImageRecord;
use berth_runtime::image::store::Store;
use berth_runtime::{fsutil, reserve, Error, Result};

use super::config;
use super::update::targets::Targets;

/// The reserve when berth.toml names none: a few journal and record writes' worth many times
/// over, and little on a board's flash.
pub const DEFAULT_RESERVE: u64 = 16 << 20;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Bytes held back (0: none).
    pub reserve: u64,
    /// Free space, in percent of the disk, below which the image GC runs (None: never).
    pub gc_below: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { reserve: DEFAULT_RESERVE, gc_below: None }
    }
}

impl Settings {
    /// berth.toml's `[storage]`, sizes in percent resolved against the disk holding `root`.
    pub fn from_config(c: &config::Storage, root: &Path) -> Result<Settings> {
        let mut s = Settings::default();
        if let Some(r) = &c.reserve {
            s.reserve = reserve::parse_size(r, root).map_err(|e| e.context("[storage] reserve"))?;
        }
        if let Some(t) = &c.gc_threshold {
            let bad = || Error::invalid(format!("[storage] gc_threshold {t:?}: a percentage of the disk (10%), or 0% for off"));
            let pct: f64 = t
                .strip_suffix('%')
                .and_then(|p| berth_runtime::decimal::parse_f64(p.trim()))
                .filter(|p| (0.0..100.0).contains(p))
                .ok_or_else(bad)?;
            s.gc_below = (pct > 0.0).then_some(pct);
        }
        Ok(s)
    }
}

/// Free space of the disk holding `root`, in percent.
pub fn free_percent(root: &Path) -> f64 {
    let total = reserve::total_bytes(root).unwrap_or(0);
    let free = fsutil::free_bytes(root).unwrap_or(0);
    if total == 0 {
        return 100.0;
    }
    free as f64 * 100.0 / total as f64
}

/// The periodic work: regrow the reserve, and run the GC when space is low.
pub fn tick(root: &Path, s: &Settings, in_use: &[Digest]) {
    if s.reserve > 0 {
        reserve::refill(root);
    }
    if let Some(below) = s.gc_below {
        if free_percent(root) < below {
            match gc(root, in_use, &|| free_percent(root) >= below) {
                Ok(gone) if !gone.is_empty() => {
                    crate::info!("image gc: free space below {}%: removed {}", berth_runtime::decimal::display(below), gone.join(", "))
                }
                Ok(_) => {}
                Err(e) => crate::warn!("image gc: {e}"),
            }
        }
    }
}

/// Images the GC may remove, oldest first: none a container uses, none the update manager keeps.
pub fn candidates(images: &[ImageRecord], keep: &BTreeSet<String>) -> Vec<Digest> {
    let mut v: Vec<&ImageRecord> = images.iter().filter(|i| !keep.contains(&i.id.to_string())).collect();
    // RFC 3339 times in UTC sort as strings; an image without a time counts as the oldest.
    v.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.to_string().cmp(&b.id.to_string())));
    v.into_iter().map(|i| i.id.clone()).collect()
}

/// Removes candidates one at a time until `enough` says so; returns their ids. A journal that
/// cannot be read stops it: the GC never guesses which images are rollback targets.
pub fn gc(root: &Path, in_use: &[Digest], enough: &dyn Fn() -> bool) -> Result<Vec<String>> {
    let targets = Targets::load(root)?;
    let mut keep = targets.images;
    keep.extend(in_use.iter().map(Digest::to_string));
    let store = Store::open(root)?;
    let mut gone = Vec::new();
    for id in candidates(&store.db()?.images, &keep) {
        if enough() {
            break;
        }
        let name = id.to_string();
        store.remove(std::slice::from_ref(&name), true, &|d| keep.contains(&d.to_string()))?;
        gone.push(name);
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::update::journal::{Active, AppDeployment, Deployment, Journal, Member, Retired, Step};

    fn image(name: &str, created: Option<&str>) -> ImageRecord {
        ImageRecord {
            id: Digest::of(name.as_bytes()),
            tags: vec![format!("{name}:latest")],
            digests: vec![],
            layers: vec![],
            os: "linux".into(),
            arch: "arm64".into(),
            variant: None,
            created: created.map(str::to_string),
            size: 0,
        }
    }

    #[test]
    fn gc_keeps_deployments_rollback_targets_and_the_active_update_and_goes_oldest_first() {
        let root = std::env::temp_dir().join(format!("berth-gc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (cur, prev, loading, old) = (image("cur", None), image("prev", None), image("loading", None), image("old", None));
        let (svc, svc_prev) = (image("svc", None), image("svcprev", None));
        let retired = |i: &ImageRecord, c: &str| Retired { container: c.into(), image_id: i.id.to_string(), restart: "no".into(), seq: 1 };
        let mut j = Journal { seq: 3, ..Default::default() };
        j.deployments.insert(
            "app".into(),
            Deployment {
                seq: 2,
                update: "u2".into(),
                container: "c2".into(),
                image_id: cur.id.to_string(),
                previous: vec![retired(&prev, "c1")],
                app: None,
            },
        );
        // An application: its running service and the one of the revision kept for a rollback.
        let member = |c: Retired| Member { service: "s".into(), name: "shop-s-1".into(), ready: "started".into(), container: c };
        j.deployments.insert(
            "shop".into(),
            Deployment {
                seq: 1,
                update: "u1".into(),
                container: String::new(),
                image_id: String::new(),
                previous: vec![],
                app: Some(AppDeployment {
                    services: vec![member(retired(&svc, "s2"))],
                    previous: vec![vec![member(retired(&svc_prev, "s1"))]],
                    volumes: vec![],
                }),
            },
        );
        j.active = Some(Active {
            id: "u3".into(),
            seq: 3,
            kind: berth_proto::wire::Kind::Deploy,
            name: "other".into(),
            run: vec![],
            window: 2,
            keep: 1,
            step: Step::Started,
            image_id: Some(loading.id.to_string()),
            old: Some(retired(&old, "c0")),
            new: None,
            reason: String::new(),
            app: None,
        });
        j.save(&root).unwrap();
        let t = Targets::load(&root).unwrap();
        assert_eq!(t.containers, ["c0", "c1", "c2", "s1", "s2"].iter().map(|s| s.to_string()).collect());
        let a = image("a", Some("2024-01-02T00:00:00Z"));
        let b = image("b", Some("2023-05-01T00:00:00Z"));
        let all = [cur, a.clone(), prev, b.clone(), loading, old, svc, svc_prev];
        assert_eq!(candidates(&all, &t.images), vec![b.id, a.id], "only unkept images, oldest first");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn settings_from_berth_toml() {
        let root = std::env::temp_dir();
        let s = Settings::from_config(&config::Storage::default(), &root).unwrap();
        assert_eq!((s.reserve, s.gc_below), (DEFAULT_RESERVE, None));
        let c = config::Storage { reserve: Some("0".into()), gc_threshold: Some("10%".into()) };
        let s = Settings::from_config(&c, &root).unwrap();
        assert_eq!((s.reserve, s.gc_below), (0, Some(10.0)));
        let bad = config::Storage { reserve: None, gc_threshold: Some("10".into()) };
        assert!(Settings::from_config(&bad, &root).unwrap_err().to_string().contains("gc_threshold"));
    }
}
