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
            let pct: f64 = t.strip_suffix('%').and_then(|p| p.trim().parse().ok()).filter(|p| (0.0..100.0).contains(p)).ok_or_else(bad)?;
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
                Ok(gone) if !gone.is_empty() => crate::info!("image gc: free space below {below}%: removed {}", gone.join(", ")),
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
