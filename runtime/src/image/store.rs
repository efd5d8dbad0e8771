//! The store on disk (root `/var/lib/berth` by default):
//! `blobs/sha256/<hex>` image configs; `layers/<diff-id>/` unpacked layers shared by every image
//! that uses them; `images.db` the records; `tmp/` scratch, emptied whenever a writer starts.
//!
//! Commit order makes every crash safe: layers are unpacked in `tmp/`, made durable with one
//! syncfs, renamed into `layers/`, then `images.db` is replaced atomically. Until that last step
//! nothing is visible; anything a crash leaves behind is unreferenced and removed by `recover`.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{atomic_write, fsync_dir, remove_all, syncfs};
use crate::image::archive::{self, Found};
use crate::image::db::{Db, ImageRecord, LayerRecord};
use crate::image::platform::Platform;
use crate::image::reference::{familiar, Reference};
use crate::lock::StoreLock;

pub struct Store {
    root: PathBuf,
}

/// What one image in a loaded archive became.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    pub tags: Vec<String>,
}

/// How a user's name for an image matched.
#[derive(Debug, Clone, PartialEq)]
pub enum Matched {
    Tag(String),
    Digest(String),
    Id,
}

/// One line of `rmi`/`prune` output, as Docker prints them.
#[derive(Debug, Clone, PartialEq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

pub struct Scratch<'a> {
    pub dir: PathBuf,
    _lock: &'a StoreLock,
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = remove_all(&self.dir);
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for d in ["blobs/sha256", "layers", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx_path("create", &p)?;
        }
        Ok(Store { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn db(&self) -> Result<Db> {
        Db::read(&self.root.join("images.db"))
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn config(&self, img: &ImageRecord) -> Result<Vec<u8>> {
        crate::image::db::read_blob(&self.root, &img.id)
    }

    /// Takes the writer lock and clears what an interrupted writer left behind.
    pub fn lock(&self) -> Result<StoreLock> {
        let l = StoreLock::exclusive(&self.root)?;
        self.recover(&self.db()?)?;
        Ok(l)
    }

    /// A scratch directory under `tmp/`, removed when dropped. Only for holders of the lock.
    pub fn scratch<'a>(&self, lock: &'a StoreLock, name: &str) -> Result<Scratch<'a>> {
        let dir = self.root.join("tmp").join(format!("{name}-{}", std::process::id()));
        remove_all(&dir)?;
        fs::create_dir_all(&dir).ctx_path("create", &dir)?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// Removes scratch files and any layer or blob no record refers to (left by a crash between
    /// the rename of a layer and the write of the records).
    fn recover(&self, db: &Db) -> Result<()> {
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).ctx_path("read", &tmp)?.flatten() {
            remove_all(&e.path())?;
        }
        let layers: HashSet<String> = db.layers.iter().map(|l| l.diff_id.hex().to_string()).collect();
        let blobs: HashSet<String> = db.images.iter().map(|i| i.id.hex().to_string()).collect();
        for (dir, keep) in [("layers", &layers), ("blobs/sha256", &blobs)] {
            let p = self.root.join(dir);
            for e in fs::read_dir(&p).ctx_path("read", &p)?.flatten() {
                if !keep.contains(e.file_name().to_string_lossy().as_ref()) {
                    remove_all(&e.path())?;
                }
            }
        }
        Ok(())
    }

    /// Loads every image of an archive (any layout, any compression) from `src`.
    pub fn load(&self, src: impl Read, platform: Option<&Platform>) -> Result<Vec<Loaded>> {
        self.load_reporting(src, platform).map(|(l, _)| l)
    }

    /// [`Store::load`], also saying what the archive held that is not an image (artifacts,
    /// attestations, signatures, referrers), one line each: those are skipped.
    pub fn load_reporting(&self, src: impl Read, platform: Option<&Platform>) -> Result<(Vec<Loaded>, Vec<String>)> {
        let lock = self.lock()?;
        let scratch = self.scratch(&lock, "load")?;
        let scan = archive::scan(src, &scratch.dir)?;
        let mut db = self.db()?;
        let found = scan.images(platform, &|d| db.layer(d).is_some())?;
        let skipped = scan.skipped();
        // Durable first, visible second: one syncfs covers every unpacked file.
        syncfs(&scratch.dir)?;
        let mut placed = HashSet::new();
        for img in &found {
            for (diff_id, path) in &img.layers {
                if db.layer(diff_id).is_some() || !placed.insert(diff_id.clone()) {
                    continue;
                }
                let c = scan.candidate(path).ok_or_else(|| Error::invalid(format!("layer {path} vanished")))?;
                let dest = self.layer_dir(diff_id);
                remove_all(&dest)?;
                fs::rename(&c.dir, &dest).ctx(|| format!("move layer {diff_id} into place"))?;
                db.layers.push(LayerRecord { diff_id: diff_id.clone(), size: c.unpacked.size });
            }
            let blob = self.blob_path(&img.id);
            if !blob.exists() {
                atomic_write(&blob, &img.config)?;
            }
        }
        fsync_dir(&self.root.join("layers"))?;
        let out = found.iter().map(|f| self.record(&mut db, f)).collect();
        db.write(&self.root.join("images.db"))?;
        Ok((out, skipped))
    }

    fn record(&self, db: &mut Db, f: &Found) -> Loaded {
        let size = f.layers.iter().filter_map(|(d, _)| db.layer(d)).map(|l| l.size).sum();
        let rec = ImageRecord {
            id: f.id.clone(),
            tags: Vec::new(),
            digests: f.digests.clone(),
            layers: f.layers.iter().map(|(d, _)| d.clone()).collect(),
            os: f.os.clone(),
            arch: f.arch.clone(),
            variant: f.variant.clone(),
            created: f.created.clone(),
            size,
        };
        add_image(db, rec);
        for t in &f.tags {
            set_tag(db, &f.id, t);
        }
        Loaded { id: f.id.clone(), tags: f.tags.clone() }
    }

    /// Commits a new image whose layers are already unpacked in scratch dirs (import).
    pub fn commit(
        &self,
        _lock: &StoreLock,
        rec: ImageRecord,
        config: &[u8],
        unpacked: &[(Digest, u64, PathBuf)],
        tag: Option<&str>,
    ) -> Result<()> {
        let mut db = self.db()?;
        if let Some((_, _, first)) = unpacked.first() {
            syncfs(first)?;
        }
        for (diff_id, size, dir) in unpacked {
            if db.layer(diff_id).is_none() {
                fs::rename(dir, self.layer_dir(diff_id)).ctx(|| format!("move layer {diff_id} into place"))?;
                db.layers.push(LayerRecord { diff_id: diff_id.clone(), size: *size });
            }
        }
        fsync_dir(&self.root.join("layers"))?;
        atomic_write(&self.blob_path(&rec.id), config)?;
        let id = rec.id.clone();
        add_image(&mut db, rec);
        if let Some(t) = tag {
            set_tag(&mut db, &id, t);
        }
        db.write(&self.root.join("images.db"))
    }

    /// Records `repo@digest` as a name of image `id` (after a push, as Docker's RepoDigests).
    pub fn add_digest(&self, id: &Digest, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let mut db = self.db()?;
        match db.images.iter_mut().find(|i| &i.id == id) {
            Some(i) if !i.digests.iter().any(|d| d == name) => i.digests.push(name.to_string()),
            Some(_) => return Ok(()),
            None => return Err(Error::not_found(format!("No such image: {id}"))),
        }
        db.write(&self.root.join("images.db"))
    }

    /// Finds an image as Docker does: a name[:tag] or name@digest first, then a full or
    /// unique-prefix ID.
    pub fn find<'a>(db: &'a Db, name: &str) -> Result<(&'a ImageRecord, Matched)> {
        let no_such = || Error::not_found(format!("No such image: {name}"));
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !name.starts_with("sha256:") {
            if let Ok(r) = Reference::parse(name) {
                if let Some(d) = &r.digest {
                    let full = format!("{}@{d}", r.repo);
                    if let Some(i) = db.images.iter().find(|i| i.digests.contains(&full)) {
                        return Ok((i, Matched::Digest(full)));
                    }
                } else if let Some(t) = r.tagged() {
                    if let Some(i) = db.images.iter().find(|i| i.tags.contains(&t)) {
                        return Ok((i, Matched::Tag(t)));
                    }
                }
            }
        }
        if !is_hex {
            return Err(no_such());
        }
        let mut hits = db.images.iter().filter(|i| i.id.hex().starts_with(hex));
        match (hits.next(), hits.next()) {
            (Some(i), None) => Ok((i, Matched::Id)),
            (Some(_), Some(_)) => Err(Error::invalid(format!("image ID prefix {name} is ambiguous"))),
            _ => Err(no_such()),
        }
    }

    /// Gives `source`'s image the name `target` (moving it off any other image).
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let r = Reference::parse(target)?;
        let t = match (&r.digest, r.tagged()) {
            (None, Some(t)) => t,
            _ => return Err(Error::invalid(format!("refusing to create a tag with a digest reference: {target}"))),
        };
        let _lock = self.lock()?;
        let mut db = self.db()?;
        let id = Self::find(&db, source)?.0.id.clone();
        set_tag(&mut db, &id, &t);
        db.write(&self.root.join("images.db"))
    }

    /// `rmi`: untags, and deletes images left with no name, and the layers only they used.
    pub fn remove(&self, names: &[String], force: bool, in_use: &dyn Fn(&Digest) -> bool) -> Result<Vec<Removed>> {
        let _lock = self.lock()?;
        let mut db = self.db()?;
        let mut out = Vec::new();
        for name in names {
            let (img, how) = Self::find(&db, name)?;
            let id = img.id.clone();
            let tags = img.tags.clone();
            let untag: Vec<String> = match &how {
                Matched::Tag(t) => vec![t.clone()],
                Matched::Digest(_) | Matched::Id => {
                    if tags.len() > 1 && !force && how == Matched::Id {
                        return Err(Error::conflict(format!(
                            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                            id.short()
                        )));
                    }
                    tags.clone()
                }
            };
            let left = tags.len() - untag.len();
            if left == 0 && in_use(&id) && !force {
                return Err(Error::conflict(format!(
                    "conflict: unable to remove image {name}: image {} is being used by a container",
                    id.short()
                )));
            }
            let i = db.images.iter_mut().find(|i| i.id == id).ok_or_else(|| Error::not_found(format!("No such image: {name}")))?;
            i.tags.retain(|t| !untag.contains(t));
            if let Matched::Digest(d) = &how {
                i.digests.retain(|x| x != d);
                out.push(Removed::Untagged(familiar(d).to_string()));
            }
            out.extend(untag.iter().map(|t| Removed::Untagged(familiar(t).to_string())));
            if left == 0 && (!in_use(&id) || force) {
                out.extend(self.delete_image(&mut db, &id));
            }
        }
        db.write(&self.root.join("images.db"))?;
        self.recover(&db)?;
        Ok(out)
    }

    /// Drops an image record and the layers no other image uses; the files go when the records
    /// are written (`recover` after the write), so a crash never leaves a record without files.
    fn delete_image(&self, db: &mut Db, id: &Digest) -> Vec<Removed> {
        db.images.retain(|i| &i.id != id);
        let unused = db.unused_layers();
        db.layers.retain(|l| !unused.contains(&l.diff_id));
        std::iter::once(Removed::Deleted(id.clone())).chain(unused.into_iter().map(Removed::Deleted)).collect()
    }

    /// `image prune`: images with no tag (or, with `all`, every image no container uses).
    pub fn prune(&self, all: bool, in_use: &dyn Fn(&Digest) -> bool) -> Result<(Vec<Removed>, u64)> {
        let _lock = self.lock()?;
        let mut db = self.db()?;
        let before: u64 = db.layers.iter().map(|l| l.size).sum();
        let victims: Vec<ImageRecord> = db.images.iter().filter(|i| (all || i.tags.is_empty()) && !in_use(&i.id)).cloned().collect();
        let mut out = Vec::new();
        for v in victims {
            out.extend(v.tags.iter().map(|t| Removed::Untagged(familiar(t).to_string())));
            out.extend(self.delete_image(&mut db, &v.id));
        }
        db.write(&self.root.join("images.db"))?;
        self.recover(&db)?;
        let after: u64 = db.layers.iter().map(|l| l.size).sum();
        Ok((out, before - after))
    }
}

fn add_image(db: &mut Db, rec: ImageRecord) {
    match db.images.iter_mut().find(|i| i.id == rec.id) {
        Some(i) => {
            for d in rec.digests {
                if !i.digests.contains(&d) {
                    i.digests.push(d);
                }
            }
        }
        None => db.images.push(rec),
    }
}

/// Points `tag` at `id`; the image that had it keeps its other names, or becomes dangling.
fn set_tag(db: &mut Db, id: &Digest, tag: &str) {
    for i in db.images.iter_mut() {
        i.tags.retain(|t| t != tag);
    }
    if let Some(i) = db.images.iter_mut().find(|i| &i.id == id) {
        i.tags.push(tag.to_string());
    }
}
