//! `push`: every layer and the config as blobs (skipped when the registry has them, mounted from
//! another repository of the same registry when the store knows one that holds them), then an OCI
//! manifest by tag.
//!
//! Layers go up gzip-compressed, as docker and podman push them: the store rebuilds each tar byte
//! for byte (`layer::write_tar`, checked against its diff_id) and it is compressed as it is sent,
//! in `PATCH` chunks with `Content-Range` (POST, PATCH..., PUT `?digest=`), so nothing is staged
//! on flash and memory holds one chunk. The compressed digest is known only at the end; the store
//! remembers it per diff_id (`<root>/blobsums`) so the next push asks the registry for it first.
//! A chunk the connection cut is resumed from what the registry says it holds (`GET` of the upload:
//! its `Range`). The config keeps the diff_ids (the uncompressed digests), as Docker's.

use std::collections::BTreeMap;
use std::io::Write;

use berth_runtime::digest::{Digest, Hasher};
use berth_runtime::image::layer;
use berth_runtime::image::reference::Reference;
use berth_runtime::image::store::Store;
use berth_runtime::lock::StoreLock;
use berth_runtime::{Error, Result};
use serde_json::{json, Value};

use crate::client::{retryable_error, status_error, Options, Registry};
use crate::http::{Body, Url};
use crate::manifest::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use crate::pull::split_repo;

/// Bytes per `PATCH`: the memory a push holds for a layer.
pub const CHUNK: usize = 4 << 20;

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
    fn start(&self, d: Option<&Digest>, from: Option<&str>) -> Result<Option<Url>> {
        let mut path = format!("/v2/{}/blobs/uploads/", self.path);
        let mut scopes = self.scopes.clone();
        if let (Some(f), Some(d)) = (from, d) {
            path.push_str(&format!("?mount={d}&from={f}"));
            scopes.push(format!("repository:{f}:pull"));
        }
        let what = match d {
            Some(d) => format!("start upload of {d}"),
            None => "start upload".to_string(),
        };
        let mut r = self.reg.request("POST", self.reg.url(&path), &[], Body::Empty, &scopes, &what)?;
        let body = r.body(1 << 16).unwrap_or_default();
        match r.status {
            201 if from.is_some() => Ok(None),
            202 => Ok(Some(self.location(&r, &what)?)),
            s => Err(status_error(&format!("registry {}: {what}", self.reg.domain), s, &body)),
        }
    }

    fn location(&self, r: &crate::http::Response, what: &str) -> Result<Url> {
        let loc = r.header("location").ok_or_else(|| Error::invalid(format!("registry {}: {what}: no Location", self.reg.domain)))?;
        self.reg.url("/").join(loc)
    }

    /// Ends an upload: `PUT ?digest=` with the rest of the bytes (or none).
    fn finish(&self, mut url: Url, d: &Digest, rest: &[u8]) -> Result<()> {
        url.path.push(if url.path.contains('?') { '&' } else { '?' });
        url.path.push_str(&format!("digest={}", crate::client::encode(&d.to_string())));
        let what = format!("upload blob {d}");
        let headers = [("Content-Type", "application/octet-stream".to_string())];
        let mut r = self.reg.request("PUT", url, &headers, Body::Bytes(rest), &self.scopes, &what)?;
        let body = r.body(1 << 16).unwrap_or_default();
        match r.status {
            201 | 204 => Ok(()),
            s => Err(status_error(&format!("registry {}: {what}", self.reg.domain), s, &body)),
        }
    }

    /// A small blob (the config) in one `PUT`.
    fn upload_bytes(&self, d: &Digest, b: &[u8]) -> Result<BlobState> {
        if self.has(d)? {
            return Ok(BlobState::Exists);
        }
        let Some(url) = self.start(Some(d), None)? else { return Ok(BlobState::Pushed) };
        self.finish(url, d, b)?;
        Ok(BlobState::Pushed)
    }

    /// How many bytes of the upload at `url` the registry holds (`Range: 0-N`), and where it
    /// continues.
    fn upload_status(&self, url: &Url) -> Result<(u64, Url)> {
        let what = "ask how much of the upload arrived";
        let mut r = self.reg.request("GET", url.clone(), &[], Body::Empty, &self.scopes, what)?;
        let body = r.body(1 << 16).unwrap_or_default();
        if r.status != 204 && r.status != 200 {
            return Err(status_error(&format!("registry {}: {what}", self.reg.domain), r.status, &body));
        }
        let have = match r.header("range").and_then(|v| v.rsplit_once('-')).map(|(_, end)| end.trim().parse::<u64>()) {
            Some(Ok(end)) => end + 1,
            Some(Err(_)) => return Err(Error::invalid(format!("registry {}: {what}: bad Range", self.reg.domain))),
            None => 0,
        };
        let next = self.location(&r, what).unwrap_or_else(|_| url.clone());
        Ok((have, next))
    }
}

/// Compressed bytes on their way: hashed, gathered into `CHUNK`s, each sent with `PATCH`.
struct Upload<'a, 'b> {
    t: &'a Target<'b>,
    url: Url,
    buf: Vec<u8>,
    /// Bytes the registry holds.
    sent: u64,
    hash: Hasher,
    chunk: usize,
    /// Set when the registry cannot say where a cut upload stands (the CNCF registry refuses a
    /// stale upload state): the layer is sent again from the start.
    lost: &'a std::cell::Cell<bool>,
}

impl Upload<'_, '_> {
    fn send_chunk(&mut self) -> Result<()> {
        let mut off = 0usize;
        let mut tries = 0;
        while off < self.buf.len() {
            let start = self.sent;
            let end = start + (self.buf.len() - off) as u64 - 1;
            let headers = [("Content-Type", "application/octet-stream".to_string()), ("Content-Range", format!("{start}-{end}"))];
            let what = format!("upload bytes {start}-{end}");
            let res = self.t.reg.request("PATCH", self.url.clone(), &headers, Body::Bytes(&self.buf[off..]), &self.t.scopes, &what);
            match res {
                Ok(mut r) if r.status == 202 => {
                    self.url = self.t.location(&r, &what)?;
                    let _ = r.body(1 << 16);
                    self.sent = end + 1;
                    off = self.buf.len();
                }
                // 416: the range does not follow what the registry holds; 400/404: the CNCF
                // registry's answer to an upload state gone stale (a PATCH that arrived unanswered).
                Ok(r) if matches!(r.status, 400 | 404 | 416) && tries < self.t.reg.attempts() => {
                    drop(r);
                    self.resync(&mut off, &mut tries, &what)?
                }
                Err(e) if retryable_error(&e) && tries < self.t.reg.attempts() => self.resync(&mut off, &mut tries, &what)?,
                Ok(mut r) => {
                    let body = r.body(1 << 16).unwrap_or_default();
                    return Err(status_error(&format!("registry {}: {what}", self.t.reg.domain), r.status, &body));
                }
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        Ok(())
    }

    /// After a cut or a 416: continue from what the registry holds (a part of the chunk may have
    /// arrived).
    fn resync(&mut self, off: &mut usize, tries: &mut u32, what: &str) -> Result<()> {
        *tries += 1;
        let (have, url) = match self.t.upload_status(&self.url) {
            Ok(x) => x,
            Err(e) => {
                self.lost.set(true);
                return Err(e);
            }
        };
        let pending = (self.buf.len() - *off) as u64;
        if have < self.sent || have > self.sent + pending {
            return Err(Error::invalid(format!(
                "registry {}: {what}: the upload holds {have} bytes, {} were expected: not resumable",
                self.t.reg.domain, self.sent
            )));
        }
        *off += (have - self.sent) as usize;
        self.sent = have;
        self.url = url;
        Ok(())
    }
}

impl Write for Upload<'_, '_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.hash.update(b);
        self.buf.extend_from_slice(b);
        if self.buf.len() >= self.chunk {
            self.send_chunk().map_err(std::io::Error::other)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the store remembers of pushed layers: diff_id -> the compressed blob's digest and size.
fn blobsums_path(store: &Store) -> std::path::PathBuf {
    store.root().join("blobsums")
}

fn read_blobsums(store: &Store) -> BTreeMap<String, (Digest, u64)> {
    let Ok(raw) = std::fs::read(blobsums_path(store)) else { return BTreeMap::new() };
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&raw) else { return BTreeMap::new() };
    m.into_iter()
        .filter_map(|(k, v)| {
            let d = Digest::parse(v.get("digest")?.as_str()?).ok()?;
            Some((k, (d, v.get("size")?.as_u64()?)))
        })
        .collect()
}

fn remember_blobsum(store: &Store, diff_id: &Digest, blob: &Digest, size: u64) -> Result<()> {
    let mut m = read_blobsums(store);
    m.insert(diff_id.to_string(), (blob.clone(), size));
    let v: serde_json::Map<String, Value> = m.into_iter().map(|(k, (d, n))| (k, json!({"digest": d.to_string(), "size": n}))).collect();
    let raw = serde_json::to_vec(&Value::Object(v)).map_err(|e| Error::invalid(e.to_string()))?;
    berth_runtime::fsutil::atomic_write(&blobsums_path(store), &raw)
}

/// One layer, gzip-compressed as it is rebuilt and sent: its blob digest and size. An upload the
/// registry cannot resume starts again (as many times as requests are retried).
fn upload_layer(t: &Target<'_>, dir: &std::path::Path, diff_id: &Digest, chunk: usize) -> Result<(Digest, u64)> {
    let mut attempt = 1;
    loop {
        let lost = std::cell::Cell::new(false);
        match upload_layer_once(t, dir, diff_id, chunk, &lost) {
            Err(_) if lost.get() && attempt < t.reg.attempts() => attempt += 1,
            res => return res,
        }
    }
}

fn upload_layer_once(
    t: &Target<'_>,
    dir: &std::path::Path,
    diff_id: &Digest,
    chunk: usize,
    lost: &std::cell::Cell<bool>,
) -> Result<(Digest, u64)> {
    let url = t.start(None, None)?.ok_or_else(|| Error::invalid("the registry mounted a blob it was not asked to"))?;
    let up = Upload { t, url, buf: Vec::with_capacity(chunk + (64 << 10)), sent: 0, hash: Hasher::new(), chunk, lost };
    // Level 6, no name, mtime 0: the same layer compresses to the same bytes every time.
    let mut gz = berth_runtime::gzip::GzEncoder::new(up, 6);
    layer::write_tar(dir, diff_id, &mut gz)?;
    let mut up = gz.finish().map_err(|e| Error::io(format!("compress layer {diff_id}"), e))?;
    let rest = std::mem::take(&mut up.buf);
    let size = up.sent + rest.len() as u64;
    let digest = up.hash.finish();
    t.finish(up.url, &digest, &rest)?;
    Ok((digest, size))
}

/// Another repository of this registry the store knows to hold layer `d` (the registry can
/// mount the blob from there).
fn other_repo(db: &berth_runtime::image::db::Db, d: &Digest, domain: &str, path: &str) -> Option<String> {
    db.images
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
        .next()
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
    let sums = read_blobsums(store);
    for d in &img.layers {
        if db.layer(d).is_none() {
            return Err(Error::invalid(format!("image {}: layer {d} has no record: the store is damaged", img.id)));
        }
        progress(&PushEvent::Blob { digest: d.clone(), state: BlobState::Pushing });
        // Pushed (or pulled) before: the registry may hold the compressed blob, in this
        // repository or, to be mounted, in another one the store knows.
        let known = sums.get(&d.to_string()).cloned();
        let mut done = None;
        if let Some((blob, size)) = &known {
            if t.has(blob)? {
                done = Some((blob.clone(), *size, BlobState::Exists));
            } else if let Some(from) = other_repo(&db, d, domain, path) {
                if t.start(Some(blob), Some(&from))?.is_none() {
                    done = Some((blob.clone(), *size, BlobState::Mounted(from)));
                }
            }
        }
        let (blob, size, state) = match done {
            Some(x) => x,
            None => {
                let dir = store.layer_dir(d);
                let (blob, size) =
                    upload_layer(&t, &dir, d, opts.chunk_size.unwrap_or(CHUNK)).map_err(|e| e.context(format!("layer {d}")))?;
                if let Err(e) = remember_blobsum(store, d, &blob, size) {
                    // Only a cache: the next push compresses again.
                    eprintln!("warning: {e}");
                }
                (blob, size, BlobState::Pushed)
            }
        };
        progress(&PushEvent::Blob { digest: d.clone(), state });
        layers.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": blob.to_string(), "size": size}));
    }
    t.upload_bytes(&img.id, &config).map_err(|e| e.context("config"))?;
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
