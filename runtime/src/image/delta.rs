//! Delta tarballs for updates: a `docker save` archive without the layers a device already
//! holds. Everything else (manifest, configs, the other layers) is copied byte for byte, so the
//! device still checks every image against its config's `diff_ids`: the layers left out are the
//! ones its store has under exactly those digests (`archive::Scan::images` takes them from there).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use serde_json::Value;

use crate::compress;
use crate::digest::Digest;
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
    let f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let (_, dec) = compress::decoder(BufReader::with_capacity(128 * 1024, f)).ctx(|| format!("read {}", path.display()))?;
    Ok(TarReader::new(dec))
}

/// Archive paths of the layers whose diff_id is in `held`, from manifest.json and the configs.
fn held_layer_paths(src: &Path, held: &HashSet<Digest>) -> Result<HashSet<String>> {
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
    let bad = |why: String| Error::invalid(format!("{}: {why}", src.display()));
    let manifest: Value = json
        .get("manifest.json")
        .ok_or_else(|| bad("no manifest.json (a delta needs a docker-save archive)".into()))
        .and_then(|d| serde_json::from_slice(d).map_err(|e| bad(format!("manifest.json: {e}"))))?;
    let mut skip = HashSet::new();
    for m in manifest.as_array().ok_or_else(|| bad("manifest.json is not a list".into()))? {
        let cfg_path = m["Config"].as_str().ok_or_else(|| bad("manifest.json entry without Config".into()))?;
        let cfg: Value = json
            .get(&super::archive::norm(cfg_path.as_bytes()))
            .ok_or_else(|| bad(format!("config {cfg_path} is missing")))
            .and_then(|d| serde_json::from_slice(d).map_err(|e| bad(format!("config {cfg_path}: {e}"))))?;
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
    // The raw bytes of an entry start with the previous entry's padding: written afresh instead.
    let mut prev_pad = 0usize;
    let mut buf = vec![0u8; 128 * 1024];
    let tmp = dst.with_extension("tmp");
    let mut w = std::io::BufWriter::new(File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?);
    let io = |e: std::io::Error| Error::io(format!("write {}", tmp.display()), e);
    while let Some(e) = tar.next_entry()? {
        let raw = tar.take_raw();
        let header = raw.get(prev_pad..).unwrap_or_default();
        prev_pad = if e.kind == Kind::File { (512 - (e.size % 512) as usize) % 512 } else { 0 };
        if e.kind == Kind::File && skip.contains(&super::archive::norm(&e.path)) {
            stats.skipped_layers += 1;
            stats.skipped_bytes += e.size;
            tar.skip_content()?;
            continue;
        }
        w.write_all(header).map_err(io)?;
        if e.kind == Kind::File {
            let mut left = e.size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = tar.read(&mut buf[..want]).ctx(|| format!("read {}", src.display()))?;
                if n == 0 {
                    return Err(Error::invalid(format!("{}: truncated", src.display())));
                }
                w.write_all(&buf[..n]).map_err(io)?;
                left -= n as u64;
            }
            w.write_all(&[0u8; 512][..prev_pad]).map_err(io)?;
        }
    }
    w.write_all(&[0u8; 1024]).map_err(io)?;
    let f = w.into_inner().map_err(|e| Error::io(format!("write {}", tmp.display()), e.into_error()))?;
    f.sync_all().ctx(|| format!("sync {}", tmp.display()))?;
    stats.size = f.metadata().ctx(|| format!("stat {}", tmp.display()))?.len();
    std::fs::rename(&tmp, dst).ctx(|| format!("rename {} to {}", tmp.display(), dst.display()))?;
    Ok(stats)
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
        let paths: Vec<String> = (0..tars.len()).map(|i| format!("l{i}/layer.tar")).collect();
        let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": paths}]).to_string();
        let mut files: Vec<(&str, &[u8])> = vec![(&cfg_name, config.as_bytes()), ("manifest.json", manifest.as_bytes())];
        for (p, t) in paths.iter().zip(&tars) {
            files.push((p, t));
        }
        tar_of(&files)
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
}
