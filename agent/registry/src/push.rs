//! `push`: every layer and the config as blobs (skipped when the registry has them, mounted from
//! another repository of the same registry when the store knows one that holds them), then an OCI
//! manifest by tag. The store keeps layers unpacked and rebuilds each tar byte for byte
//! (`layer::write_tar`, checked against its diff_id), so layers go up uncompressed: their blob
//! digest is their diff_id, known before the first byte is sent, and nothing is staged on flash.

use berth_runtime::digest::Digest;
use berth_runtime::image::layer;
use berth_runtime::image::reference::Reference;
use berth_runtime::image::store::Store;
use berth_runtime::lock::StoreLock;
use berth_runtime::{Error, Result};
use serde_json::json;

use crate::client::{status_error, Options, Registry};
use crate::http::{Body, Url};
use crate::manifest::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use crate::pull::split_repo;

#[derive(Debug, Clone, PartialEq)]
pub enum BlobState {
    Exists,
    Mounted(String),
    Pushing,
    Pushed,
}

#[derive(Debug, Clone)]
pub enum PushEvent {
    /// `The push refers to repository [docker.io/library/busybox]`.
    Repository(String),
    Blob {
        digest: Digest,
        state: BlobState,
    },
}

#[derive(Debug, Clone)]
pub struct Pushed {
    pub tag: String,
    pub digest: Digest,
    pub size: usize,
}

enum Content<'a> {
    Bytes(&'a [u8]),
    Layer(&'a std::path::Path),
}

struct Target<'a> {
    reg: &'a Registry,
    path: &'a str,
    scopes: Vec<String>,
}

impl Target<'_> {
    fn has(&self, d: &Digest) -> Result<bool> {
        let url = self.reg.url(&format!("/v2/{}/blobs/{d}", self.path));
        let mut r = self.reg.request("HEAD", url, &[], Body::Empty, &self.scopes, &format!("check blob {d}"))?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(status_error(&format!("registry {}: check blob {d}", self.reg.domain), s, &r.body(1 << 16).unwrap_or_default())),
        }
    }

    /// Starts an upload, or mounts `d` from `from`: Ok(None) when mounted.
    fn start(&self, d: &Digest, from: Option<&str>) -> Result<Option<Url>> {
        let mut path = format!("/v2/{}/blobs/uploads/", self.path);
        let mut scopes = self.scopes.clone();
        if let Some(f) = from {
            path.push_str(&format!("?mount={d}&from={f}"));
            scopes.push(format!("repository:{f}:pull"));
        }
        let what = format!("start upload of {d}");
        let mut r = self.reg.request("POST", self.reg.url(&path), &[], Body::Empty, &scopes, &what)?;
        let body = r.body(1 << 16).unwrap_or_default();
        match r.status {
            201 if from.is_some() => Ok(None),
            202 => {
                let loc =
                    r.header("location").ok_or_else(|| Error::invalid(format!("registry {}: {what}: no Location", self.reg.domain)))?;
                Ok(Some(self.reg.url("/").join(loc)?))
            }
            s => Err(status_error(&format!("registry {}: {what}", self.reg.domain), s, &body)),
        }
    }

    fn upload(&self, d: &Digest, size: u64, content: Content<'_>, from: Option<&str>) -> Result<BlobState> {
        if self.has(d)? {
            return Ok(BlobState::Exists);
        }
        let Some(mut url) = self.start(d, from)? else { return Ok(BlobState::Mounted(from.unwrap_or("").to_string())) };
        url.path.push(if url.path.contains('?') { '&' } else { '?' });
        url.path.push_str(&format!("digest={}", crate::client::encode(&d.to_string())));
        let what = format!("upload blob {d}");
        let headers = [("Content-Type", "application/octet-stream".to_string())];
        let mut r = match content {
            Content::Bytes(b) => self.reg.request("PUT", url, &headers, Body::Bytes(b), &self.scopes, &what)?,
            Content::Layer(dir) => {
                let mut write = |w: &mut dyn std::io::Write| layer::write_tar(dir, d, w).map(|_| ());
                self.reg.request("PUT", url, &headers, Body::Stream(size, &mut write), &self.scopes, &what)?
            }
        };
        let body = r.body(1 << 16).unwrap_or_default();
        match r.status {
            201 | 204 => Ok(BlobState::Pushed),
            s => Err(status_error(&format!("registry {}: {what}", self.reg.domain), s, &body)),
        }
    }
}

/// Pushes `name` (`repo[:tag]`) from `store`.
pub fn push(store: &Store, opts: &Options, name: &str, progress: &dyn Fn(&PushEvent)) -> Result<Pushed> {
    let r = Reference::parse(name)?;
    if r.digest.is_some() {
        return Err(Error::invalid(format!("cannot push a digest reference: {name}")));
    }
    let tagged = r.tagged().ok_or_else(|| Error::invalid(format!("{name}: no tag")))?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let (domain, path) = split_repo(&r.repo);
    // A consistent view of the image; layers are read under the shared lock (loads wait).
    let lock = StoreLock::shared(store.root())?;
    let db = store.db()?;
    let (img, _) = Store::find(&db, &tagged).map_err(|_| {
        Error::not_found(format!("An image does not exist locally with the tag: {}", berth_runtime::image::reference::familiar(&r.repo)))
    })?;
    let img = img.clone();
    let config = store.config(&img)?;
    progress(&PushEvent::Repository(r.repo.clone()));
    let reg = Registry::new(domain, opts)?;
    let t = Target { reg: &reg, path, scopes: vec![format!("repository:{path}:pull,push")] };
    let mut layers = Vec::new();
    for d in &img.layers {
        let rec = db.layer(d).ok_or_else(|| Error::invalid(format!("image {}: layer {d} has no record: the store is damaged", img.id)))?;
        // Another repository of this registry known to hold the layer: the registry can mount it.
        let from = db
            .images
            .iter()
            .filter(|i| i.layers.contains(d))
            .flat_map(|i| {
                i.tags
                    .iter()
                    .map(|t| berth_runtime::image::reference::split_tag(t).0.to_string())
                    .chain(i.digests.iter().filter_map(|x| x.split_once('@').map(|p| p.0.to_string())))
            })
            .filter_map(|repo| {
                let (dom, p) = split_repo(&repo);
                (dom == domain && p != path).then(|| p.to_string())
            })
            .next();
        progress(&PushEvent::Blob { digest: d.clone(), state: BlobState::Pushing });
        let dir = store.layer_dir(d);
        let state = t.upload(d, rec.size, Content::Layer(&dir), from.as_deref()).map_err(|e| e.context(format!("layer {d}")))?;
        progress(&PushEvent::Blob { digest: d.clone(), state });
        layers.push(json!({"mediaType": OCI_LAYER, "digest": d.to_string(), "size": rec.size}));
    }
    t.upload(&img.id, config.len() as u64, Content::Bytes(&config), None).map_err(|e| e.context("config"))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": img.id.to_string(), "size": config.len()},
        "layers": layers,
    }))
    .map_err(|e| Error::invalid(e.to_string()))?;
    let digest = Digest::of(&manifest);
    let url = reg.url(&format!("/v2/{path}/manifests/{tag}"));
    let what = format!("put manifest {tagged}");
    let mut resp = reg.request("PUT", url, &[("Content-Type", OCI_MANIFEST.to_string())], Body::Bytes(&manifest), &t.scopes, &what)?;
    let body = resp.body(1 << 16).unwrap_or_default();
    if resp.status != 201 && resp.status != 200 {
        return Err(status_error(&format!("registry {}: {what}", reg.domain), resp.status, &body));
    }
    drop(lock);
    store.add_digest(&img.id, &format!("{}@{digest}", r.repo))?;
    Ok(Pushed { tag, digest, size: manifest.len() })
}
