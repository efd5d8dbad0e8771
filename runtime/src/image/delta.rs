//! Delta tarballs for updates: a `docker save` archive without the layers a device already
//! holds. Everything else (manifest, configs, the other layers) is copied byte for byte, so the
//! device still checks every image against its config's `diff_ids`: the layers left out are the
//! ones its store has under exactly those digests (`archive::Scan::images` takes them from there).
//! Also what such an archive lists ([`listed_images`]), for `fleet push` to check its `--run`
//! image before sending.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use serde_json::Value;

use crate::compress;
use crate::digest::{Digest, HashReader, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::tarstream::{Kind, TarReader};

/// JSON files above this are not manifests or configs.
const MAX_JSON: u64 = 4 << 20;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Layers left out, and their bytes in the original archive.
    pub skipped_layers: usize,
    pub skipped_bytes: u64,
    pub size: u64,
}

fn reader(path: &Path) -> Result<TarReader<Box<dyn Read>>> {
    let f = File::open(path).ctx_path("open", path)?;
    let (_, dec) = compress::decoder(BufReader::with_capacity(128 * 1024, f)).ctx_path("read", path)?;
    Ok(TarReader::new(dec))
}

/// A docker-save archive's small JSON files (manifest.json, the configs) by archive path.
fn json_files(src: &Path) -> Result<HashMap<String, Vec<u8>>> {
    let mut tar = reader(src)?;
    let mut json: HashMap<String, Vec<u8>> = HashMap::new();
    while let Some(e) = tar.next_entry()? {
        let p = super::archive::norm(&e.path);
        if e.kind == Kind::File && e.size <= MAX_JSON && (p == "manifest.json" || p.ends_with(".json") || p.starts_with("blobs/")) {
            let mut d = Vec::with_capacity(e.size as usize);
            tar.by_ref().take(e.size).read_to_end(&mut d).ctx(|| format!("read {} in {}", p, src.display()))?;
            json.insert(p, d);
        }
        tar.take_raw();
    }
    Ok(json)
}

/// manifest.json's entries, each with its config's bytes.
fn manifest_entries<'a>(src: &Path, json: &'a HashMap<String, Vec<u8>>, why: &str) -> Result<Vec<(Value, &'a [u8])>> {
    let bad = |what: String| Error::invalid(format!("{}: {what}", src.display()));
    let manifest: Value = json
        .get("manifest.json")
        .ok_or_else(|| bad(format!("no manifest.json ({why})")))
        .and_then(|d| serde_json::from_slice(d).map_err(|e| bad(format!("manifest.json: {e}"))))?;
    let Value::Array(entries) = manifest else { return Err(bad("manifest.json is not a list".into())) };
    entries
        .into_iter()
        .map(|m| {
            let cfg_path = m["Config"].as_str().ok_or_else(|| bad("manifest.json entry without Config".into()))?;
            let cfg = json.get(&super::archive::norm(cfg_path.as_bytes())).ok_or_else(|| bad(format!("config {cfg_path} is missing")))?;
            Ok((m, cfg.as_slice()))
        })
        .collect()
}

/// One image of a docker-save archive, as `berth load` would name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The sha256 of its config.
    pub id: Digest,
    /// Its `RepoTags`, normalised (`busybox` is `docker.io/library/busybox:latest`).
    pub tags: Vec<String>,
}

impl Listed {
    /// Whether `name` (a `--run` image: NAME[:TAG] or an ID or ID prefix) names this image, as the
    /// store's lookup would once it is loaded. `None` when that cannot be told from the archive
    /// (a name pinned by digest: manifest.json carries no manifest digests).
    pub fn named(&self, name: &str) -> Option<bool> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) && self.id.hex().starts_with(hex) {
            return Some(true);
        }
        match super::reference::Reference::parse(name) {
            Ok(r) if r.digest.is_some() => None,
            Ok(r) => Some(r.tagged().is_some_and(|t| self.tags.contains(&t))),
            Err(_) => Some(false),
        }
    }
}

/// The images `src`'s manifest.json lists (a docker-save archive, plain or compressed); `None`
/// for an archive without manifest.json (an OCI archive, named by its index).
pub fn listed_images(src: &Path) -> Result<Option<Vec<Listed>>> {
    let json = json_files(src)?;
    if !json.contains_key("manifest.json") {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (m, cfg) in manifest_entries(src, &json, "not a docker-save archive")? {
        let mut tags = Vec::new();
        for t in m["RepoTags"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            tags.extend(super::reference::Reference::parse(t).ok().and_then(|r| r.tagged()));
        }
        out.push(Listed { id: Digest::of(cfg), tags });
    }
    Ok(Some(out))
}

/// Archive paths of the layers whose diff_id is in `held`, from manifest.json and the configs.
fn held_layer_paths(src: &Path, held: &HashSet<Digest>) -> Result<HashSet<String>> {
    let json = json_files(src)?;
    let bad = |why: String| Error::invalid(format!("{}: {why}", src.display()));
    let mut skip = HashSet::new();
    for (m, cfg) in manifest_entries(src, &json, "a delta needs a docker-save archive")? {
        let cfg_path = m["Config"].as_str().unwrap_or_default();
        let cfg: Value = serde_json::from_slice(cfg).map_err(|e| bad(format!("config {cfg_path}: {e}")))?;
        let diff_ids = cfg["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
        let layers = m["Layers"].as_array().cloned().unwrap_or_default();
        if diff_ids.len() != layers.len() {
            return Err(bad(format!("config {cfg_path} has {} diff_ids for {} layers", diff_ids.len(), layers.len())));
        }
        for (l, d) in layers.iter().zip(&diff_ids) {
            if let (Some(l), Some(Ok(d))) = (l.as_str(), d.as_str().map(Digest::parse)) {
                if held.contains(&d) {
                    skip.insert(super::archive::norm(l.as_bytes()));
                }
            }
        }
    }
    Ok(skip)
}

/// Writes `src` to `dst` (uncompressed) without the layers in `held`.
pub fn strip(src: &Path, dst: &Path, held: &HashSet<Digest>) -> Result<Stats> {
    let skip = held_layer_paths(src, held)?;
    let mut tar = reader(src)?;
    let mut stats = Stats::default();
    let mut out = Out::create(dst)?;
    let mut prev_pad = 0usize;
    while let Some(e) = tar.next_entry()? {
        let raw = tar.take_raw();
        let header = raw.get(prev_pad..).unwrap_or_default();
        prev_pad = padding(&e);
        if e.kind == Kind::File && skip.contains(&super::archive::norm(&e.path)) {
            stats.skipped_layers += 1;
            stats.skipped_bytes += e.size;
            tar.skip_content()?;
            continue;
        }
        out.copy(header, &e, &mut tar, src)?;
    }
    stats.size = out.finish()?;
    Ok(stats)
}

/// Several `docker save` archives as one (`fleet push --app` with one tarball per image): every
/// entry once (their paths are content-addressed, so the same path is the same bytes), and one
/// manifest.json listing the images of all of them. The OCI index and the legacy `repositories`
/// file are left out: berth, Docker and podman load such an archive from manifest.json.
pub fn merge(srcs: &[&Path], dst: &Path) -> Result<u64> {
    let mut out = Out::create(dst)?;
    let mut seen: HashMap<String, Digest> = HashMap::new();
    let mut images: Vec<Value> = Vec::new();
    for src in srcs {
        let mut tar = reader(src)?;
        let mut prev_pad = 0usize;
        let mut has_manifest = false;
        while let Some(e) = tar.next_entry().map_err(|e| Error::invalid(format!("{}: {e}", src.display())))? {
            let raw = tar.take_raw();
            let header = raw.get(prev_pad..).unwrap_or_default();
            prev_pad = padding(&e);
            let p = super::archive::norm(&e.path);
            if e.kind == Kind::File && p == "manifest.json" {
                has_manifest = true;
                let mut d = Vec::new();
                tar.by_ref().take(e.size.min(MAX_JSON)).read_to_end(&mut d).ctx(|| format!("read manifest.json in {}", src.display()))?;
                tar.skip_content()?;
                let m: Value = serde_json::from_slice(&d).map_err(|e| Error::invalid(format!("{}: manifest.json: {e}", src.display())))?;
                let list = m.as_array().ok_or_else(|| Error::invalid(format!("{}: manifest.json is not a list", src.display())))?;
                images.extend(list.iter().cloned());
                continue;
            }
            if matches!(p.as_str(), "index.json" | "oci-layout" | "repositories") {
                tar.skip_content()?;
                continue;
            }
            if let Some(first) = seen.get(&p) {
                // Written already: the same bytes, or the archives cannot be merged.
                let mut r = HashReader::new(tar.by_ref().take(e.size));
                r.drain().ctx(|| format!("read {p} in {}", src.display()))?;
                if e.kind == Kind::File && r.hasher.finish() != *first {
                    return Err(Error::invalid(format!(
                        "{}: {p} differs from the file of that name in an archive before it: cannot merge them",
                        src.display()
                    )));
                }
                tar.skip_content()?;
                continue;
            }
            let d = out.copy(header, &e, &mut tar, src)?;
            seen.insert(p, d);
        }
        if !has_manifest {
            return Err(Error::invalid(format!("{}: no manifest.json (images are merged from docker-save archives)", src.display())));
        }
    }
    let manifest = serde_json::to_vec(&images).map_err(|e| Error::invalid(format!("encode manifest.json: {e}")))?;
    out.file("manifest.json", &manifest)?;
    out.finish()
}

/// The zeros after an entry's content, up to the next 512-byte block.
fn padding(e: &crate::tarstream::Entry) -> usize {
    if e.kind == Kind::File {
        (512 - (e.size % 512) as usize) % 512
    } else {
        0
    }
}

/// An uncompressed tar being written to a temporary name, renamed into place when finished.
struct Out {
    w: std::io::BufWriter<File>,
    tmp: std::path::PathBuf,
    dst: std::path::PathBuf,
    buf: Vec<u8>,
}

impl Out {
    fn create(dst: &Path) -> Result<Out> {
        let tmp = dst.with_extension("tmp");
        let f = File::create(&tmp).ctx_path("create", &tmp)?;
        Ok(Out { w: std::io::BufWriter::new(f), tmp, dst: dst.to_path_buf(), buf: vec![0u8; 128 * 1024] })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io_at("write", &self.tmp, e)
    }

    /// One entry: its header as read (the raw bytes of an entry start with the previous entry's
    /// padding, which the caller has cut off), its content, its padding written afresh.
    /// Returns the content's sha256.
    fn copy<R: Read>(&mut self, header: &[u8], e: &crate::tarstream::Entry, tar: &mut TarReader<R>, src: &Path) -> Result<Digest> {
        self.w.write_all(header).map_err(|e| self.io(e))?;
        let mut h = Hasher::new();
        if e.kind != Kind::File {
            return Ok(h.finish());
        }
        let mut left = e.size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = tar.read(&mut self.buf[..want]).ctx_path("read", src)?;
            if n == 0 {
                return Err(Error::invalid(format!("{}: truncated", src.display())));
            }
            h.update(&self.buf[..n]);
            let res = self.w.write_all(&self.buf[..n]);
            res.map_err(|e| self.io(e))?;
            left -= n as u64;
        }
        self.w.write_all(&[0u8; 512][..padding(e)]).map_err(|e| self.io(e))?;
        Ok(h.finish())
    }

    /// A regular file made here (mode 0644).
    fn file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path(name).map_err(|e| self.io(e))?;
        h.set_cksum();
        self.w.write_all(h.as_bytes()).map_err(|e| self.io(e))?;
        self.w.write_all(data).map_err(|e| self.io(e))?;
        let pad = (512 - data.len() % 512) % 512;
        self.w.write_all(&[0u8; 512][..pad]).map_err(|e| self.io(e))
    }

    /// The end-of-archive blocks, fsync, rename; the archive's size.
    fn finish(mut self) -> Result<u64> {
        self.w.write_all(&[0u8; 1024]).map_err(|e| self.io(e))?;
        let f = self.w.into_inner().map_err(|e| Error::io(format!("write {}", self.tmp.display()), e.into_error()))?;
        f.sync_all().ctx_path("sync", &self.tmp)?;
        let size = f.metadata().ctx_path("stat", &self.tmp)?.len();
        std::fs::rename(&self.tmp, &self.dst).ctx_paths("rename", &self.tmp, &self.dst)?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::Store;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A legacy docker-save archive of one image with the given layers (each one file).
    fn archive(layers: &[&[u8]], tag: &str) -> Vec<u8> {
        let tars: Vec<Vec<u8>> = layers.iter().enumerate().map(|(i, d)| tar_of(&[(&format!("f{i}"), d)])).collect();
        let diff_ids: Vec<String> = tars.iter().map(|t| Digest::of(t).to_string()).collect();
        let config = serde_json::json!({"architecture": crate::image::platform::Platform::host().arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}})
        .to_string();
        let cfg_name = format!("{}.json", Digest::of(config.as_bytes()).hex());
        // Content-addressed, as docker-save's layer paths are.
        let paths: Vec<String> = tars.iter().map(|t| format!("{}/layer.tar", Digest::of(t).hex())).collect();
        let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": paths}]).to_string();
        let mut files: Vec<(&str, &[u8])> = vec![(&cfg_name, config.as_bytes()), ("manifest.json", manifest.as_bytes())];
        for (p, t) in paths.iter().zip(&tars) {
            files.push((p, t));
        }
        tar_of(&files)
    }

    #[test]
    fn listed_images_name_them_as_the_store_will() {
        let dir = std::env::temp_dir().join(format!("berth-listed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("a.tar");
        std::fs::write(&src, archive(&[b"one"], "busybox")).unwrap();
        let listed = listed_images(&src).unwrap().unwrap();
        assert_eq!(listed.len(), 1);
        let i = &listed[0];
        assert_eq!(i.tags, ["docker.io/library/busybox:latest"]);
        for (name, want) in [
            ("busybox", Some(true)),
            ("busybox:latest", Some(true)),
            ("docker.io/library/busybox", Some(true)),
            ("busybox:1", Some(false)),
            ("other", Some(false)),
            (&i.id.hex()[..12], Some(true)),
            (&i.id.to_string(), Some(true)),
            ("0000", Some(i.id.hex().starts_with("0000"))),
            ("Bad Name", Some(false)),
        ] {
            assert_eq!(i.named(name), want, "{name}");
        }
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(i.named(&pinned), None, "manifest digests are not in manifest.json");

        // No manifest.json: not known here; a broken one is an error naming the file.
        std::fs::write(&src, tar_of(&[("index.json", b"{}")])).unwrap();
        assert_eq!(listed_images(&src).unwrap(), None);
        std::fs::write(&src, tar_of(&[("manifest.json", b"[{")])).unwrap();
        let e = listed_images(&src).unwrap_err().to_string();
        assert!(e.contains("a.tar") && e.contains("manifest.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn delta_loads_against_the_layers_held() {
        let dir = std::env::temp_dir().join(format!("berth-delta-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = vec![b'a'; 300_000];
        let v1 = archive(&[&base, b"one"], "app:1");
        let v2 = archive(&[&base, b"two"], "app:2");
        let (p1, p2, pd) = (dir.join("v1.tar"), dir.join("v2.tar"), dir.join("v2-delta.tar"));
        std::fs::write(&p1, &v1).unwrap();
        std::fs::write(&p2, &v2).unwrap();
        let store = Store::open(&dir.join("dev")).unwrap();
        store.load(File::open(&p1).unwrap(), None).unwrap();
        let db = store.db().unwrap();
        let held: HashSet<Digest> = db.layers.iter().map(|l| l.diff_id.clone()).collect();
        let st = strip(&p2, &pd, &held).unwrap();
        assert_eq!(st.skipped_layers, 1, "the shared base layer is left out");
        assert!(st.size < v2.len() as u64 - 290_000, "{} vs {}", st.size, v2.len());
        let loaded = store.load(File::open(&pd).unwrap(), None).unwrap();
        assert_eq!(loaded[0].tags, vec!["docker.io/library/app:2".to_string()]);
        assert_eq!(store.verify().unwrap(), Vec::<String>::new());
        // A byte changed inside a layer's file is found by `verify`.
        let db = store.db().unwrap();
        let f = store.layer_dir(&db.layers[0].diff_id).join("root/f0");
        let mut data = std::fs::read(&f).unwrap();
        data[10] ^= 1;
        std::fs::write(&f, data).unwrap();
        assert_eq!(store.verify().unwrap().len(), 1);
        // A store without the base layer refuses the delta, naming what is missing.
        let other = Store::open(&dir.join("other")).unwrap();
        let e = other.load(File::open(&pd).unwrap(), None).unwrap_err().to_string();
        assert!(e.contains("missing from the archive"), "{e}");
        // Nothing held: the archive is copied whole and still loads anywhere.
        let full = dir.join("full.tar");
        assert_eq!(strip(&p2, &full, &HashSet::new()).unwrap().skipped_layers, 0);
        other.load(File::open(&full).unwrap(), None).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn merged_archives_load_every_image_once() {
        let dir = std::env::temp_dir().join(format!("berth-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = vec![b'a'; 100_000];
        let (p1, p2, pm) = (dir.join("db.tar"), dir.join("web.tar"), dir.join("both.tar"));
        std::fs::write(&p1, archive(&[&base, b"db"], "db:1")).unwrap();
        std::fs::write(&p2, archive(&[&base, b"web"], "web:1")).unwrap();
        let size = merge(&[&p1, &p2], &pm).unwrap();
        assert_eq!(size, std::fs::metadata(&pm).unwrap().len());
        let store = Store::open(&dir.join("dev")).unwrap();
        let mut tags: Vec<String> = store.load(File::open(&pm).unwrap(), None).unwrap().into_iter().flat_map(|l| l.tags).collect();
        tags.sort();
        assert_eq!(tags, ["docker.io/library/db:1", "docker.io/library/web:1"]);
        assert_eq!(store.db().unwrap().layers.len(), 3, "the shared base layer once");
        assert_eq!(store.verify().unwrap(), Vec::<String>::new());
        // The shared layer's path is written once.
        let mut r = reader(&pm).unwrap();
        let mut paths = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            paths.push(super::super::archive::norm(&e.path));
            r.skip_content().unwrap();
        }
        let shared = format!("{}/layer.tar", Digest::of(&tar_of(&[("f0", &base)])).hex());
        assert_eq!(paths.iter().filter(|p| **p == shared).count(), 1, "{paths:?}");
        // One path with two contents cannot be merged.
        let clash = dir.join("clash.tar");
        std::fs::write(&clash, tar_of(&[(&shared, b"other"), ("manifest.json", b"[]")])).unwrap();
        let e = merge(&[&p1, &clash], &dir.join("x.tar")).unwrap_err().to_string();
        assert!(e.contains("clash.tar") && e.contains("differ"), "{e}");
        // Not a docker-save archive: named.
        let bad = dir.join("bad.tar");
        std::fs::write(&bad, tar_of(&[("x", b"y")])).unwrap();
        let e = merge(&[&p1, &bad], &dir.join("x.tar")).unwrap_err().to_string();
        assert!(e.contains("bad.tar") && e.contains("no manifest.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
