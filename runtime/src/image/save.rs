//! `save`: a `docker save` archive as Docker 25+ writes it (an OCI layout plus `manifest.json`),
//! which docker, podman and skopeo all load. Layers are rebuilt byte for byte from the layer store
//! and checked against their diff_ids as they are written.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::fsync_dir;
use crate::image::db::ImageRecord;
use crate::image::layer;
use crate::image::reference::{familiar, split_tag};
use crate::image::store::{Matched, Store};
use crate::image::tarwrite::TarOut;
use crate::lock::StoreLock;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

impl Store {
    /// Writes the named images to `out`.
    pub fn save(&self, names: &[String], out: &mut dyn Write) -> Result<()> {
        let _lock = StoreLock::shared(self.root())?;
        let db = self.db()?;
        let mut chosen: Vec<(ImageRecord, Vec<String>)> = Vec::new();
        for n in names {
            let (img, how) = Store::find(&db, n)?;
            let pos = match chosen.iter().position(|(i, _)| i.id == img.id) {
                Some(p) => p,
                None => {
                    chosen.push((img.clone(), Vec::new()));
                    chosen.len() - 1
                }
            };
            if let Matched::Tag(t) = how {
                if !chosen[pos].1.contains(&t) {
                    chosen[pos].1.push(t);
                }
            }
        }
        let mut w = TarOut::new(BufWriter::with_capacity(256 * 1024, out));
        w.dir("blobs/")?;
        w.dir("blobs/sha256/")?;
        let mut written = HashSet::new();
        let (mut manifests, mut index, mut repos) = (Vec::new(), Vec::new(), BTreeMap::<String, BTreeMap<String, String>>::new());
        for (img, tags) in &chosen {
            let config = self.config(img)?;
            if written.insert(img.id.clone()) {
                w.bytes(&format!("blobs/sha256/{}", img.id.hex()), &config)?;
            }
            let mut layers = Vec::new();
            for d in &img.layers {
                let rec = db
                    .layer(d)
                    .ok_or_else(|| Error::invalid(format!("image {}: layer {d} has no record: the store is damaged", img.id)))?;
                let name = format!("blobs/sha256/{}", d.hex());
                if written.insert(d.clone()) {
                    let dir = self.layer_dir(d);
                    w.stream(&name, rec.size, |w| layer::write_tar(&dir, d, w))?;
                }
                layers.push((name, d, rec.size));
            }
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": img.id.to_string(), "size": config.len()},
                "layers": layers.iter().map(|(_, d, size)| json!({"mediaType": OCI_LAYER, "digest": d.to_string(), "size": size})).collect::<Vec<_>>(),
            }))
            .map_err(|e| Error::invalid(e.to_string()))?;
            let mdigest = Digest::of(&manifest);
            if written.insert(mdigest.clone()) {
                w.bytes(&format!("blobs/sha256/{}", mdigest.hex()), &manifest)?;
            }
            let desc =
                |ann: Value| json!({"mediaType": OCI_MANIFEST, "digest": mdigest.to_string(), "size": manifest.len(), "annotations": ann});
            if tags.is_empty() {
                index.push(json!({"mediaType": OCI_MANIFEST, "digest": mdigest.to_string(), "size": manifest.len()}));
            }
            for t in tags {
                let (repo, tag) = split_tag(t);
                index.push(desc(json!({"io.containerd.image.name": t, "org.opencontainers.image.ref.name": tag})));
                if let Some((_, top, _)) = layers.last() {
                    repos.entry(familiar(repo).to_string()).or_default().insert(tag.to_string(), top.hex().to_string());
                }
            }
            let repo_tags: Value = if tags.is_empty() { Value::Null } else { json!(tags.iter().map(|t| familiar(t)).collect::<Vec<_>>()) };
            manifests.push(json!({
                "Config": format!("blobs/sha256/{}", img.id.hex()),
                "RepoTags": repo_tags,
                "Layers": layers.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>(),
            }));
        }
        let enc = |v: &Value| serde_json::to_vec(v).map_err(|e| Error::invalid(e.to_string()));
        w.bytes(
            "index.json",
            &enc(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index}))?,
        )?;
        w.bytes("manifest.json", &enc(&Value::Array(manifests))?)?;
        w.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        if !repos.is_empty() {
            w.bytes("repositories", &enc(&json!(repos))?)?;
        }
        w.finish()?.flush().ctx(|| "write archive".into())
    }

    /// `save -o FILE`: written to a temporary name and renamed, so a failed save leaves no
    /// half-written archive behind.
    pub fn save_to(&self, names: &[String], path: &Path) -> Result<()> {
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(format!(".berth-{}.tmp", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let res = (|| {
            let mut f = fs::File::create(&tmp).ctx_path("create", &tmp)?;
            self.save(names, &mut f)?;
            f.sync_all().ctx_path("fsync", &tmp)?;
            fs::rename(&tmp, path).ctx_path("rename to", path)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fsync_dir(dir)
    }
}

impl Store {
    /// The store's integrity: the records' checksum (checked on read), every image's config
    /// against its digest, every layer rebuilt from disk against its diff_id. One line per
    /// problem; empty when all is well. Takes the shared lock: loads wait, readers do not.
    pub fn verify(&self) -> Result<Vec<String>> {
        let _lock = StoreLock::shared(self.root())?;
        let db = self.db()?;
        let mut problems = Vec::new();
        for img in &db.images {
            match std::fs::read(self.blob_path(&img.id)) {
                Ok(c) if Digest::of(&c) == img.id => {}
                Ok(_) => problems.push(format!("image {}: config blob does not match its digest", img.id)),
                Err(e) => problems.push(format!("image {}: config blob: {e}", img.id)),
            }
            for d in &img.layers {
                if db.layer(d).is_none() {
                    problems.push(format!("image {}: layer {d} has no record", img.id));
                }
            }
        }
        for l in &db.layers {
            if let Err(e) = layer::write_tar(&self.layer_dir(&l.diff_id), &l.diff_id, &mut std::io::sink()) {
                problems.push(e.to_string());
            }
        }
        Ok(problems)
    }
}
