//! `pull`: manifest (or index, then the platform's manifest), config, then the layers the store
//! lacks, at most three at once. Each layer is downloaded to `<root>/downloads/<hex>.part` (the
//! file's length is the progress: after a cut connection, a kill or a power cut the kept bytes are
//! hashed again and the rest asked for with `Range`), checked against its digest, then unpacked by
//! the same code as `load` (blob digest and diff_id checked again) into the store's scratch. The
//! image becomes visible in one atomic `images.db` write once every layer is in place.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use berth_runtime::digest::{Digest, Hasher};
use berth_runtime::error::Kind;
use berth_runtime::image::archive;
use berth_runtime::image::db::ImageRecord;
use berth_runtime::image::layer::Unpacked;
use berth_runtime::image::platform::Platform;
use berth_runtime::image::reference::Reference;
use berth_runtime::image::store::Store;
use berth_runtime::{Error, Result};

use crate::client::{backoff, retryable_error, status_error, Options, Registry, MANIFEST_TYPES};
use crate::http::{Body, Url};
use crate::manifest::{self, Descriptor, Parsed, MAX_MANIFEST};

/// Layers fetched at once (Docker's default too).
pub const PARALLEL: usize = 3;
/// Kept bytes are made durable this often, so a power cut loses at most this much.
const SYNC_EVERY: u64 = 8 << 20;
const BUF: usize = 128 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum LayerState {
    /// The store has it.
    Exists,
    Waiting,
    /// Bytes so far of the total; `resumed` bytes were kept from an earlier attempt.
    Downloading {
        done: u64,
        total: u64,
        resumed: u64,
    },
    Extracting,
    Complete,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// `latest: Pulling from library/busybox`.
    Resolving { reference: String, path: String },
    /// A layer, by its blob digest.
    Layer { digest: Digest, state: LayerState },
}

pub type Progress<'a> = &'a (dyn Fn(&Event) + Sync);

#[derive(Debug, Clone)]
pub struct Pulled {
    pub id: Digest,
    /// The manifest (or index) digest the reference resolved to.
    pub digest: Digest,
    /// Full name as Docker prints it last: `docker.io/library/busybox:latest` or `repo@digest`.
    pub name: String,
    /// False when the store already had the image under that name.
    pub changed: bool,
    /// Bytes downloaded (resumed bytes not counted twice).
    pub fetched: u64,
}

/// `docker.io/library/busybox` → (`docker.io`, `library/busybox`).
pub fn split_repo(repo: &str) -> (&str, &str) {
    repo.split_once('/').unwrap_or(("docker.io", repo))
}

pub fn scope_pull(path: &str) -> String {
    format!("repository:{path}:pull")
}

/// Fetches a manifest; its digest is checked against `want` (a pull by digest) and against the
/// registry's `Docker-Content-Digest`.
pub fn get_manifest(
    reg: &Registry,
    path: &str,
    reference: &str,
    want: Option<&Digest>,
    name: &str,
) -> Result<(Vec<u8>, Option<String>, Digest)> {
    let url = reg.url(&format!("/v2/{path}/manifests/{reference}"));
    let scopes = [scope_pull(path)];
    let what = format!("manifest for {name}");
    let mut r = reg.request("GET", url, &[("Accept", MANIFEST_TYPES.to_string())], Body::Empty, &scopes, &what)?;
    if r.content_length().is_some_and(|n| n > MAX_MANIFEST) {
        return Err(Error::invalid(format!("{what} is too large ({} bytes)", r.content_length().unwrap_or(0))));
    }
    let body = r.body(MAX_MANIFEST).map_err(|e| e.context(&what))?;
    match r.status {
        200 => {}
        401 | 403 => {
            return Err(status_error(
                &format!("pull access denied for {name}, repository does not exist or may require 'berth login'"),
                r.status,
                &body,
            ))
        }
        404 => return Err(status_error(&format!("manifest for {name} not found"), r.status, &body)),
        s => return Err(status_error(&format!("registry {}: {what}", reg.domain), s, &body)),
    }
    let got = Digest::of(&body);
    if let Some(w) = want {
        if &got != w {
            return Err(Error::invalid(format!("{what}: content digest {got} does not match the requested {w}")));
        }
    }
    if let Some(h) = r.header("docker-content-digest") {
        if h.starts_with("sha256:") && h != got.to_string() {
            return Err(Error::invalid(format!("{what}: content digest {got} does not match the registry's {h}")));
        }
    }
    Ok((body, r.header("content-type").map(str::to_string), got))
}

/// A small blob (config) in memory, checked against its descriptor.
pub fn get_small_blob(reg: &Registry, path: &str, d: &Descriptor, what: &str) -> Result<Vec<u8>> {
    if d.size > MAX_MANIFEST {
        return Err(Error::invalid(format!("{what} {} is too large ({} bytes)", d.digest, d.size)));
    }
    let url = reg.url(&format!("/v2/{path}/blobs/{}", d.digest));
    let mut r = reg.request("GET", url, &[], Body::Empty, &[scope_pull(path)], what)?;
    let body = r.body(d.size).map_err(|e| e.context(format!("{what} {}: longer than the {} bytes the manifest says", d.digest, d.size)))?;
    if r.status != 200 {
        return Err(status_error(&format!("{what} {}", d.digest), r.status, &body));
    }
    let got = Digest::of(&body);
    if got != d.digest {
        return Err(Error::invalid(format!("{what} {}: content digest is {got}", d.digest)));
    }
    Ok(body)
}

/// Where a pull resolved to: the image manifest, its digest and the top-level digest.
struct Resolved {
    manifest: manifest::Manifest,
    top: Digest,
}

fn resolve(reg: &Registry, r: &Reference, path: &str, platform: Option<&Platform>, name: &str) -> Result<Resolved> {
    let reference = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    };
    let (body, ct, top) = get_manifest(reg, path, &reference, r.digest.as_ref(), name)?;
    let what = format!("manifest for {name}");
    match manifest::parse(&body, ct.as_deref(), &what)? {
        Parsed::Image(m) => {
            if let Some(p) = platform {
                let cfg = get_small_blob(reg, path, &m.config, "config")?;
                let info = manifest::config_info(&cfg, "config")?;
                if !p.matches(&info.os, &info.arch, info.variant.as_deref()) {
                    return Err(Error::not_found(format!(
                        "image with reference {name} was found but does not match the specified platform: wanted {p}, actual: {}/{}{}",
                        info.os,
                        info.arch,
                        info.variant.map(|v| format!("/{v}")).unwrap_or_default()
                    )));
                }
            }
            Ok(Resolved { manifest: m, top })
        }
        Parsed::Index(entries) => {
            let host = Platform::host();
            let want = platform.unwrap_or(&host);
            let e = manifest::pick(&entries, want, name)?;
            let (body, ct, _) = get_manifest(reg, path, &e.desc.digest.to_string(), Some(&e.desc.digest), name)?;
            match manifest::parse(&body, ct.as_deref(), &format!("manifest {}", e.desc.digest))? {
                Parsed::Image(m) => Ok(Resolved { manifest: m, top }),
                Parsed::Index(_) => Err(Error::invalid(format!("{what}: an index inside an index is not supported"))),
            }
        }
    }
}

/// Pulls `r` into `store`. Nothing becomes visible until every layer is checked and in place.
pub fn pull(store: &Store, opts: &Options, r: &Reference, platform: Option<&Platform>, progress: Progress<'_>) -> Result<Pulled> {
    let (domain, path) = split_repo(&r.repo);
    let name = match (&r.digest, &r.tag) {
        (Some(d), _) => format!("{}@{d}", r.repo),
        (None, Some(t)) => format!("{}:{t}", r.repo),
        (None, None) => r.repo.clone(),
    };
    progress(&Event::Resolving {
        reference: r.digest.as_ref().map(|d| d.to_string()).or(r.tag.clone()).unwrap_or_default(),
        path: path.to_string(),
    });
    // Docker Hub mirrors first, then the registry itself.
    let mut endpoints: Vec<Option<&str>> = Vec::new();
    if domain == "docker.io" {
        endpoints.extend(opts.mirrors.iter().map(|m| Some(m.as_str())));
    }
    endpoints.push(None);
    let mut last = None;
    for (i, ep) in endpoints.iter().enumerate() {
        let attempt = (|| {
            let reg = match ep {
                Some(m) => Registry::at(domain, m, opts)?,
                None => Registry::new(domain, opts)?,
            };
            let res = resolve(&reg, r, path, platform, &name)?;
            Ok::<_, Error>((reg, res))
        })();
        match attempt {
            Ok((reg, res)) => return fetch_image(store, &reg, r, path, &name, res, progress),
            Err(e) if i + 1 < endpoints.len() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::invalid("no registry endpoint")))
}

struct Job {
    index: usize,
    desc: Descriptor,
    diff_id: Digest,
}

fn fetch_image(
    store: &Store,
    reg: &Registry,
    r: &Reference,
    path: &str,
    name: &str,
    res: Resolved,
    progress: Progress<'_>,
) -> Result<Pulled> {
    let m = &res.manifest;
    let config = get_small_blob(reg, path, &m.config, "config")?;
    let info = manifest::config_info(&config, &format!("config {}", m.config.digest))?;
    if info.diff_ids.len() != m.layers.len() {
        return Err(Error::invalid(format!(
            "image {}: manifest lists {} layers but the config has {} diff_ids",
            m.config.digest,
            m.layers.len(),
            info.diff_ids.len()
        )));
    }
    let id = m.config.digest.clone();
    let digest_name = format!("{}@{}", r.repo, res.top);
    let tag = if r.digest.is_none() { r.tagged() } else { None };
    let lock = store.lock()?;
    let db = store.db()?;
    let had = db
        .images
        .iter()
        .find(|i| i.id == id)
        .is_some_and(|i| tag.as_ref().is_none_or(|t| i.tags.contains(t)) && i.digests.contains(&digest_name));
    let mut jobs = VecDeque::new();
    let mut seen = HashSet::new();
    for (i, (d, diff)) in m.layers.iter().zip(&info.diff_ids).enumerate() {
        if db.layer(diff).is_some() || !seen.insert(diff.clone()) {
            progress(&Event::Layer { digest: d.digest.clone(), state: LayerState::Exists });
        } else {
            progress(&Event::Layer { digest: d.digest.clone(), state: LayerState::Waiting });
            jobs.push_back(Job { index: i, desc: d.clone(), diff_id: diff.clone() });
        }
    }
    let downloads = store.root().join("downloads");
    fs::create_dir_all(&downloads).map_err(|e| Error::io(format!("create {}", downloads.display()), e))?;
    let scratch = store.scratch(&lock, "pull")?;
    let blobs: Vec<Digest> = jobs.iter().map(|j| j.desc.digest.clone()).collect();
    let queue = Mutex::new(jobs);
    let done: Mutex<Vec<(Digest, u64, PathBuf)>> = Mutex::new(Vec::new());
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let fetched = Mutex::new(0u64);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let job = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => return,
                };
                let Some(job) = job else { return };
                let dir = scratch.dir.join(format!("layer-{}", job.index));
                match fetch_layer(reg, path, &job, &downloads, &dir, progress, &stop) {
                    Ok((u, n)) => {
                        if let Ok(mut d) = done.lock() {
                            d.push((job.diff_id.clone(), u.size, dir));
                        }
                        if let Ok(mut f) = fetched.lock() {
                            *f += n;
                        }
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut f) = first_err.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().ok().flatten() {
        return Err(e);
    }
    let unpacked = done.into_inner().map_err(|_| Error::invalid("pull worker panicked"))?;
    let size: u64 = info
        .diff_ids
        .iter()
        .map(|d| db.layer(d).map(|l| l.size).or_else(|| unpacked.iter().find(|u| &u.0 == d).map(|u| u.1)).unwrap_or(0))
        .sum();
    let rec = ImageRecord {
        id: id.clone(),
        tags: Vec::new(),
        digests: vec![digest_name],
        layers: info.diff_ids.clone(),
        os: info.os,
        arch: info.arch,
        variant: info.variant,
        created: info.created,
        size,
    };
    store.commit(&lock, rec, &config, &unpacked, tag.as_deref())?;
    drop(scratch);
    for b in &blobs {
        let _ = fs::remove_file(downloads.join(b.hex()));
    }
    Ok(Pulled { id, digest: res.top, name: tag.unwrap_or(name.to_string()), changed: !had, fetched: fetched.into_inner().unwrap_or(0) })
}

/// Downloads one layer (resuming what an earlier attempt kept) and unpacks it into `dir`.
fn fetch_layer(
    reg: &Registry,
    path: &str,
    job: &Job,
    downloads: &Path,
    dir: &Path,
    progress: Progress<'_>,
    stop: &AtomicBool,
) -> Result<(Unpacked, u64)> {
    let (file, fetched) = download(reg, path, &job.desc, downloads, progress, stop)?;
    progress(&Event::Layer { digest: job.desc.digest.clone(), state: LayerState::Extracting });
    let f = File::open(&file).map_err(|e| Error::io(format!("open {}", file.display()), e))?;
    let u = archive::unpack_blob(BufReader::with_capacity(BUF, f), &job.desc.digest, &job.diff_id, dir)?;
    progress(&Event::Layer { digest: job.desc.digest.clone(), state: LayerState::Complete });
    Ok((u, fetched))
}

/// The URLs to try for a blob: a foreign layer's own `urls` first, then the registry.
fn sources(reg: &Registry, path: &str, d: &Descriptor) -> Vec<Url> {
    let mut out: Vec<Url> = d.urls.iter().filter_map(|u| Url::parse(u).ok()).collect();
    out.push(reg.url(&format!("/v2/{path}/blobs/{}", d.digest)));
    out
}

/// Downloads blob `d` to `downloads/<hex>`, checked; returns its path and the bytes fetched now.
pub fn download(
    reg: &Registry,
    path: &str,
    d: &Descriptor,
    downloads: &Path,
    progress: Progress<'_>,
    stop: &AtomicBool,
) -> Result<(PathBuf, u64)> {
    let done_path = downloads.join(d.digest.hex());
    let part = downloads.join(format!("{}.part", d.digest.hex()));
    let what = format!("layer {}", d.digest);
    // A finished download from an interrupted pull: checked again before use.
    if done_path.exists() {
        let mut h = Hasher::new();
        let mut f = File::open(&done_path).map_err(|e| Error::io(format!("open {}", done_path.display()), e))?;
        hash_into(&mut f, &mut h, &done_path)?;
        if h.count() == d.size && h.finish() == d.digest {
            return Ok((done_path, 0));
        }
        let _ = fs::remove_file(&done_path);
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&part)
        .map_err(|e| Error::io(format!("open {}", part.display()), e))?;
    let kept = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut fetched = 0u64;
    let mut res = download_into(reg, path, d, &mut f, &part, &what, progress, stop, &mut fetched);
    if kept > 0 && res.as_ref().is_err_and(|e| e.message().contains("content digest")) {
        // The kept bytes were damaged (a torn write at a power cut): once more from the start.
        f.set_len(0).map_err(|e| Error::io(format!("truncate {}", part.display()), e))?;
        res = download_into(reg, path, d, &mut f, &part, &what, progress, stop, &mut fetched);
    }
    match res {
        Ok(()) => {
            let n = fetched;
            f.sync_all().map_err(|e| Error::io(format!("fsync {}", part.display()), e))?;
            fs::rename(&part, &done_path).map_err(|e| Error::io(format!("rename {}", part.display()), e))?;
            Ok((done_path, n))
        }
        Err(e) => {
            // What was kept stays for the next attempt, unless it is wrong or the disk is full
            // (the space goes back; the next pull starts this layer over).
            if e.kind() == Kind::NoSpace || e.message().contains("content digest") || e.message().contains("longer than") {
                let _ = fs::remove_file(&part);
            }
            Err(e)
        }
    }
}

fn hash_into(r: &mut impl Read, h: &mut Hasher, p: &Path) -> Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

#[allow(clippy::too_many_arguments)]
fn download_into(
    reg: &Registry,
    path: &str,
    d: &Descriptor,
    f: &mut File,
    part: &Path,
    what: &str,
    progress: Progress<'_>,
    stop: &AtomicBool,
    fetched: &mut u64,
) -> Result<()> {
    // Hash what earlier attempts kept (never trusted blindly: it is checked with the rest).
    let mut h = Hasher::new();
    f.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io(format!("seek {}", part.display()), e))?;
    hash_into(f, &mut h, part)?;
    let mut have = h.count();
    if have > d.size {
        f.set_len(0).map_err(|e| Error::io(format!("truncate {}", part.display()), e))?;
        h = Hasher::new();
        have = 0;
    }
    let resumed = have;
    let mut attempt = 0u32;
    let mut src = 0usize;
    let urls = sources(reg, path, d);
    let mut buf = vec![0u8; BUF];
    let mut errors: Vec<String> = Vec::new();
    let mut have_at_cut = have;
    while have < d.size {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::invalid(format!("{what}: stopped (another layer failed)")));
        }
        let url = urls[src.min(urls.len() - 1)].clone();
        let mut headers = vec![];
        if have > 0 {
            headers.push(("Range", format!("bytes={have}-")));
        }
        let resp = reg.request("GET", url.clone(), &headers, Body::Empty, &[scope_pull(path)], what);
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) if src + 1 < urls.len() => {
                errors.push(format!("{url}: {e}"));
                src += 1;
                continue;
            }
            Err(e) if have > 0 => return Err(e.context(format!("{have} of {} bytes kept for the next pull", d.size))),
            Err(e) => return Err(foreign(e, d, &errors)),
        };
        match resp.status {
            206 => {
                let range = resp.header("content-range").unwrap_or("");
                if !range.starts_with(&format!("bytes {have}-")) {
                    return Err(Error::invalid(format!("{what}: asked for bytes from {have}, got range {range:?}")));
                }
            }
            200 => {
                if have > 0 {
                    // The server ignored the range: start over.
                    f.set_len(0).map_err(|e| Error::io(format!("truncate {}", part.display()), e))?;
                    h = Hasher::new();
                    have = 0;
                }
            }
            s => {
                let body = resp.body(1 << 16).unwrap_or_default();
                let e = status_error(&format!("registry {}: {what}", reg.domain), s, &body);
                if src + 1 < urls.len() {
                    errors.push(format!("{url}: {e}"));
                    src += 1;
                    continue;
                }
                return Err(foreign(e, d, &errors));
            }
        }
        f.seek(std::io::SeekFrom::Start(have)).map_err(|e| Error::io(format!("seek {}", part.display()), e))?;
        let mut unsynced = 0u64;
        let mut last_report = 0u64;
        let cut = loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) => break Some(Error::io(format!("{what}: read from {}", url.authority()), e)),
            };
            if have + n as u64 > d.size {
                return Err(Error::invalid(format!("{what}: longer than the {} bytes the manifest says; refused", d.size)));
            }
            f.write_all(&buf[..n]).map_err(|e| Error::io(format!("write {}", part.display()), e))?;
            h.update(&buf[..n]);
            have += n as u64;
            *fetched += n as u64;
            unsynced += n as u64;
            if unsynced >= SYNC_EVERY {
                f.sync_data().map_err(|e| Error::io(format!("fsync {}", part.display()), e))?;
                unsynced = 0;
            }
            if have - last_report >= 256 * 1024 || have == d.size {
                last_report = have;
                progress(&Event::Layer { digest: d.digest.clone(), state: LayerState::Downloading { done: have, total: d.size, resumed } });
            }
            if stop.load(Ordering::Relaxed) {
                return Err(Error::invalid(format!("{what}: stopped (another layer failed)")));
            }
        };
        if have == d.size {
            break;
        }
        // Cut short: resume from here after a back-off; progress resets the count of attempts.
        let e = cut.unwrap_or_else(|| Error::invalid(format!("{what}: connection closed after {have} of {} bytes", d.size)));
        if !(retryable_error(&e) || e.message().contains("connection closed")) {
            return Err(e);
        }
        if have > have_at_cut {
            attempt = 0;
            have_at_cut = have;
        }
        attempt += 1;
        if attempt >= reg.attempts() {
            return Err(e.context(format!("after {attempt} attempts ({have} of {} bytes kept for the next pull)", d.size)));
        }
        f.sync_data().map_err(|e| Error::io(format!("fsync {}", part.display()), e))?;
        // Straight back after a cut that still moved bytes; a back-off once it stops doing so.
        if attempt > 1 {
            std::thread::sleep(backoff(attempt - 2, std::time::Duration::from_secs(8)));
        }
    }
    let got = h.finish();
    if got != d.digest {
        return Err(Error::invalid(format!("{what}: content digest is {got}; refused")));
    }
    Ok(())
}

fn foreign(e: Error, d: &Descriptor, errors: &[String]) -> Error {
    if d.urls.is_empty() {
        return e;
    }
    Error::invalid(format!(
        "layer {} is foreign (non-distributable) and could not be fetched from its URLs nor the registry: {}; {e}",
        d.digest,
        errors.join("; ")
    ))
}
