//! Reading an image archive in one streaming pass: `docker save` (legacy and Docker 25+),
//! `oci-archive`, and the same compressed as a whole. Anything that looks like a layer (a tar, or a
//! compressed stream) is unpacked as it streams by, hashed on the way in (blob digest) and after
//! decompression (diff_id); small files (manifests, configs) are kept in memory. The manifest,
//! which `docker save` writes last, then says which of them make up which image.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::compress::{self, Compression};
use crate::digest::{Digest, HashReader};
use crate::error::{Error, IoContext, Kind, Result};
use crate::fsutil::remove_all;
use crate::image::layer::{self, Unpacked};
use crate::image::platform::Platform;
use crate::image::reference::Reference;
use crate::tarstream::{self, TarReader};

/// A JSON file or other non-layer entry is kept in memory up to this size.
const MAX_SMALL: u64 = 16 << 20;
/// All such entries together: bounds memory against an archive of a million tiny files.
const MAX_SMALL_TOTAL: usize = 64 << 20;
const BUF: usize = 256 * 1024;

pub struct Candidate {
    pub dir: PathBuf,
    pub blob: Digest,
    pub compression: Compression,
    pub unpacked: Unpacked,
}

#[derive(Default)]
pub struct Scan {
    files: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
    layers: HashMap<String, std::result::Result<Candidate, String>>,
    big: HashSet<String>,
    /// What `images` left out, one line each: artifacts, attestations, signatures, referrers.
    skipped: std::cell::RefCell<Vec<String>>,
}

/// One image the archive holds, checked and ready to commit.
pub struct Found {
    pub id: Digest,
    pub config: Vec<u8>,
    pub tags: Vec<String>,
    pub digests: Vec<String>,
    /// diff_id and the entry path of the unpacked candidate holding it.
    pub layers: Vec<(Digest, String)>,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    pub created: Option<String>,
}

/// Archive-relative path with `.`/`..`/leading `/` folded away.
pub(crate) fn norm(p: &[u8]) -> String {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in p.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    String::from_utf8_lossy(&out.join(&b'/')).into_owned()
}

/// Streams the archive, unpacking candidate layers into `tmp/layer-N`.
pub fn scan(src: impl Read, tmp: &Path) -> Result<Scan> {
    let (_, dec) = compress::decoder(BufReader::with_capacity(BUF, src)).ctx(|| "read archive".into())?;
    let mut tar = TarReader::without_raw(dec);
    let mut s = Scan::default();
    let mut small_total = 0usize;
    let mut n = 0;
    while let Some(e) = tar.next_entry()? {
        let path = norm(&e.path);
        match e.kind {
            tarstream::Kind::Symlink => {
                let target = if e.link.first() == Some(&b'/') {
                    norm(&e.link)
                } else {
                    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                    norm(format!("{parent}/{}", String::from_utf8_lossy(&e.link)).as_bytes())
                };
                s.links.insert(path, target);
            }
            tarstream::Kind::HardLink => {
                s.links.insert(path, norm(&e.link));
            }
            tarstream::Kind::File => {
                let mut head = vec![0u8; 512];
                let k = read_upto(&mut tar, &mut head)?;
                head.truncate(k);
                let is_layer = Compression::detect(&head) != Compression::None
                    || (k == 512 && (tarstream::is_header(&head) || head.iter().all(|b| *b == 0)));
                if is_layer {
                    n += 1;
                    let dir = tmp.join(format!("layer-{n}"));
                    match unpack_candidate(Cursor::new(head).chain(&mut tar), &dir) {
                        Ok(c) => {
                            s.layers.insert(path, Ok(c));
                        }
                        // A broken layer fails the load only if an image uses it; the archive
                        // itself being cut short is found by skipping the rest of the entry.
                        Err(err) if err.kind() == Kind::Invalid => {
                            remove_all(&dir)?;
                            tar.skip_content()?;
                            s.layers.insert(path, Err(err.to_string()));
                        }
                        Err(err) => return Err(err.context(format!("layer {path}"))),
                    }
                } else if e.size <= MAX_SMALL {
                    let mut data = head;
                    tar.read_to_end(&mut data).ctx(|| format!("read {path} in archive"))?;
                    small_total += data.len();
                    if small_total > MAX_SMALL_TOTAL {
                        return Err(Error::invalid("archive holds too much metadata (over 64 MiB of non-layer files)"));
                    }
                    s.files.insert(path, data);
                } else {
                    tar.skip_content()?;
                    s.big.insert(path);
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

fn read_upto(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = r.read(&mut buf[n..]).ctx(|| "read archive".into())?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn unpack_candidate(r: impl Read, dir: &Path) -> Result<Candidate> {
    let mut br = BufReader::with_capacity(BUF, r);
    let compression = Compression::detect(br.fill_buf().ctx(|| "read layer".into())?);
    if compression == Compression::None {
        // Uncompressed: the blob is the tar itself, so its digest is the diff_id; hash once.
        let unpacked = layer::unpack(&mut br, dir)?;
        return Ok(Candidate { dir: dir.to_path_buf(), blob: unpacked.diff_id.clone(), compression, unpacked });
    }
    let mut hr = HashReader::new(br);
    let unpacked = {
        let (_, dec) = compress::decoder(BufReader::with_capacity(BUF, &mut hr)).ctx(|| "read layer".into())?;
        layer::unpack(dec, dir)?
    };
    hr.drain().ctx(|| "read layer".into())?;
    Ok(Candidate { dir: dir.to_path_buf(), blob: hr.hasher.finish(), compression, unpacked })
}

/// A layer blob from elsewhere (a registry) unpacked into `dir` by the same path `load` takes:
/// the compression found from its first bytes, the blob hashed on the way in and the tar after
/// decompression. Both digests must be the ones the manifest and the config promise; on a mismatch
/// `dir` is removed and nothing else was touched.
pub fn unpack_blob(r: impl Read, blob: &Digest, diff_id: &Digest, dir: &Path) -> Result<Unpacked> {
    let res = unpack_candidate(r, dir).and_then(|c| {
        if &c.blob != blob {
            Err(Error::invalid(format!("layer {blob}: content digest is {}", c.blob)))
        } else if &c.unpacked.diff_id != diff_id {
            Err(Error::invalid(format!("layer {blob}: uncompressed digest is {}, the config says {diff_id}", c.unpacked.diff_id)))
        } else {
            Ok(c.unpacked)
        }
    });
    if res.is_err() {
        remove_all(dir)?;
    }
    res
}

/// Case-insensitive key lookup: real `manifest.json` files spell keys in more than one case.
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key).and_then(Value::as_str)
}

/// `blobs/sha256/<hex>` → the digest the path promises.
fn blob_path_digest(p: &str) -> Option<Digest> {
    let hex = p.strip_prefix("blobs/sha256/")?;
    Digest::from_hex(hex).ok()
}

impl Scan {
    fn resolve(&self, p: &str) -> String {
        let mut p = norm(p.as_bytes());
        for _ in 0..32 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }

    fn json(&self, what: &str, p: &str) -> Result<(Vec<u8>, Value)> {
        let r = self.resolve(p);
        let data = match self.files.get(&r) {
            Some(d) => d,
            None if self.big.contains(&r) => return Err(Error::invalid(format!("{what} {p} is too large"))),
            None => return Err(Error::invalid(format!("{what} {p} is missing from the archive"))),
        };
        let stem = r.rsplit('/').next().unwrap_or("").trim_end_matches(".json");
        if let (true, Ok(want)) = (r.starts_with("blobs/sha256/") || r.ends_with(".json"), Digest::from_hex(stem)) {
            let got = Digest::of(data);
            if got != want {
                return Err(Error::invalid(format!("{what} {p}: content digest {got} does not match its name")));
            }
        }
        let v = serde_json::from_slice(data).map_err(|e| Error::invalid(format!("{what} {p}: malformed JSON: {e}")))?;
        Ok((data.clone(), v))
    }

    /// Whether the archive has anything at `p` (a layer, or a file that should have been one).
    fn present(&self, p: &str) -> bool {
        let r = self.resolve(p);
        self.layers.contains_key(&r) || self.files.contains_key(&r) || self.big.contains(&r)
    }

    fn layer(&self, p: &str) -> Result<(&Candidate, String)> {
        let r = self.resolve(p);
        match self.layers.get(&r) {
            Some(Ok(c)) => {
                if let Some(want) = blob_path_digest(&r) {
                    if c.blob != want {
                        return Err(Error::invalid(format!("layer {p}: content digest {} does not match its name", c.blob)));
                    }
                }
                Ok((c, r))
            }
            Some(Err(e)) => Err(Error::invalid(format!("layer {p}: {e}"))),
            None if self.files.contains_key(&r) || self.big.contains(&r) => Err(Error::invalid(format!("layer {p} is not a tar archive"))),
            None => Err(Error::invalid(format!("manifest names layer {p}, which is missing from the archive"))),
        }
    }

    /// The directory holding an unpacked candidate, by the entry path `Found.layers` names.
    pub fn candidate(&self, path: &str) -> Option<&Candidate> {
        self.layers.get(path).and_then(|r| r.as_ref().ok())
    }

    /// Every image the archive describes, checked: config digests, layer digests, diff_ids.
    /// A layer missing from the archive is fine when `held` says the store already has that
    /// diff_id (a delta tarball: the sender left out what the device holds); its path is "".
    pub fn images(&self, want: Option<&Platform>, held: &dyn Fn(&Digest) -> bool) -> Result<Vec<Found>> {
        let manifest = match self.files.get("manifest.json") {
            Some(d) => match serde_json::from_slice::<Value>(d) {
                Ok(Value::Array(a)) if !a.is_empty() => Ok(a),
                Ok(_) => Err(Error::invalid("manifest.json lists no images")),
                Err(e) => Err(Error::invalid(format!("manifest.json: malformed JSON: {e}"))),
            },
            None => Err(Error::invalid("not an image archive: no manifest.json or index.json")),
        };
        let found = match (manifest, self.files.contains_key("index.json")) {
            (Ok(entries), _) => entries.iter().map(|m| self.docker_image(m, held)).collect::<Result<Vec<_>>>()?,
            // Docker 25+ and OCI archives: index.json is the source when manifest.json is unusable.
            (Err(_), true) => self.oci_images(want, held)?,
            (Err(e), false) => return Err(e),
        };
        let found: Vec<Found> = match want {
            Some(p) => found.into_iter().filter(|f| p.matches(&f.os, &f.arch, f.variant.as_deref())).collect(),
            None => found,
        };
        if found.is_empty() {
            let skipped = self.skipped();
            let also = if skipped.is_empty() { String::new() } else { format!(" (skipped: {})", skipped.join(", ")) };
            return Err(Error::invalid(match want {
                Some(p) => format!("archive holds no image for platform {p}{also}"),
                None => format!("archive holds no image{also}"),
            }));
        }
        Ok(found)
    }

    fn docker_image(&self, m: &Value, held: &dyn Fn(&Digest) -> bool) -> Result<Found> {
        let config = get_str(m, "Config").ok_or_else(|| Error::invalid("manifest.json: entry without Config"))?;
        let mut tags = Vec::new();
        match get(m, "RepoTags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for t in a {
                    let t = t.as_str().ok_or_else(|| Error::invalid("manifest.json: RepoTags holds a non-string"))?;
                    let r = Reference::parse(t)?;
                    tags.extend(r.tagged());
                }
            }
            Some(_) => return Err(Error::invalid("manifest.json: RepoTags is not a list")),
        }
        let layers: Vec<&str> = match get(m, "Layers") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|l| l.as_str().ok_or_else(|| Error::invalid("manifest.json: Layers holds a non-string")))
                .collect::<Result<_>>()?,
            _ => return Err(Error::invalid("manifest.json: entry without Layers")),
        };
        self.image(config, None, &layers, tags, Vec::new(), held)
    }

    fn oci_images(&self, want: Option<&Platform>, held: &dyn Fn(&Digest) -> bool) -> Result<Vec<Found>> {
        let (_, index) = self.json("index", "index.json")?;
        let mut out = Vec::new();
        let list = match get(&index, "manifests") {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(Error::invalid("index.json lists no manifests")),
        };
        for desc in &list {
            if let Some(why) = not_an_image(desc) {
                self.skip(get_str(desc, "digest").unwrap_or("?"), &why);
                continue;
            }
            let names = desc_names(desc);
            let mut desc = desc.clone();
            // Follow nested indexes (multi-platform) down to one manifest for the platform.
            for _ in 0..4 {
                if !is_index(&desc) {
                    break;
                }
                let d = get_str(&desc, "digest").ok_or_else(|| Error::invalid("index entry without digest"))?;
                let (_, nested) = self.json("index", &blob_path(d)?)?;
                let entries = get(&nested, "manifests").and_then(Value::as_array).cloned().unwrap_or_default();
                desc = pick_platform(&entries, want)?;
            }
            let d = get_str(&desc, "digest").ok_or_else(|| Error::invalid("index entry without digest"))?;
            let (_, manifest) = self.json("manifest", &blob_path(d)?)?;
            if let Some(why) = artifact_manifest(&manifest) {
                self.skip(d, &why);
                continue;
            }
            let config = get(&manifest, "config")
                .and_then(|c| get_str(c, "digest"))
                .ok_or_else(|| Error::invalid(format!("manifest {d} has no config")))?;
            let layer_paths: Vec<String> = get(&manifest, "layers")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::invalid(format!("manifest {d} has no layers")))?
                .iter()
                .map(|l| {
                    get_str(l, "digest").ok_or_else(|| Error::invalid(format!("manifest {d}: layer without digest"))).and_then(blob_path)
                })
                .collect::<Result<_>>()?;
            let refs: Vec<&str> = layer_paths.iter().map(String::as_str).collect();
            let digests = names.iter().filter_map(|n| n.split_once(':').map(|(repo, _)| format!("{repo}@{d}"))).collect();
            out.push(self.image(&blob_path(config)?, Some(d), &refs, names, digests, held)?);
        }
        Ok(out)
    }

    fn skip(&self, digest: &str, why: &str) {
        self.skipped.borrow_mut().push(format!("{why} {digest}"));
    }

    /// What the last `images` call skipped (artifacts, attestations, signatures, referrers).
    pub fn skipped(&self) -> Vec<String> {
        self.skipped.borrow().clone()
    }

    fn image(
        &self,
        config_path: &str,
        manifest: Option<&str>,
        layer_paths: &[&str],
        tags: Vec<String>,
        digests: Vec<String>,
        held: &dyn Fn(&Digest) -> bool,
    ) -> Result<Found> {
        let (config, cv) = self.json("config", config_path)?;
        let id = Digest::of(&config);
        let ctx = |e: Error| match manifest {
            Some(m) => e.context(format!("image {m}")),
            None => e,
        };
        let diff_ids: Vec<Digest> = get(&cv, "rootfs")
            .and_then(|r| get(r, "diff_ids"))
            .and_then(Value::as_array)
            .ok_or_else(|| Error::invalid(format!("config {config_path} has no rootfs.diff_ids")))?
            .iter()
            .map(|d| d.as_str().map_or_else(|| Err(Error::invalid("diff_id is not a string")), Digest::parse))
            .collect::<Result<_>>()
            .map_err(ctx)?;
        if diff_ids.len() != layer_paths.len() {
            return Err(Error::invalid(format!(
                "image {id}: manifest lists {} layers but the config has {} diff_ids",
                layer_paths.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (p, want) in layer_paths.iter().zip(&diff_ids) {
            if !self.present(p) && held(want) {
                layers.push((want.clone(), String::new()));
                continue;
            }
            let (c, resolved) = self.layer(p)?;
            if &c.unpacked.diff_id != want {
                return Err(Error::invalid(format!(
                    "layer {p}: content digest {} does not match the config's diff_id {want}",
                    c.unpacked.diff_id
                )));
            }
            layers.push((want.clone(), resolved));
        }
        let s = |k: &str| get_str(&cv, k).map(str::to_string);
        Ok(Found {
            id,
            tags,
            digests,
            layers,
            os: s("os").unwrap_or_else(|| "linux".into()),
            arch: s("architecture").unwrap_or_default(),
            variant: s("variant"),
            created: s("created"),
            config,
        })
    }
}

fn blob_path(d: &str) -> Result<String> {
    Ok(format!("blobs/sha256/{}", Digest::parse(d)?.hex()))
}

const IMAGE_CONFIGS: &[&str] = &["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

/// Why an index entry is not an image, judged from the entry alone: an attestation (`buildx`
/// adds one per platform, as `unknown/unknown` with a `vnd.docker.reference.type` annotation) or
/// an entry that declares an `artifactType`.
fn not_an_image(desc: &Value) -> Option<String> {
    let ann = get(desc, "annotations");
    if let Some(t) = ann.and_then(|a| get_str(a, "vnd.docker.reference.type")) {
        return Some(format!("{t} (for {})", ann.and_then(|a| get_str(a, "vnd.docker.reference.digest")).unwrap_or("?")));
    }
    if let Some(t) = get_str(desc, "artifactType") {
        return Some(format!("artifact of type {t}"));
    }
    let p = get(desc, "platform");
    if p.and_then(|p| get_str(p, "os")) == Some("unknown") && p.and_then(|p| get_str(p, "architecture")) == Some("unknown") {
        return Some("unknown/unknown entry (attestation)".to_string());
    }
    None
}

/// Why a manifest is not an image's: an `artifactType`, a config that is not an image config
/// (`application/vnd.oci.empty.v1+json`, cosign signatures, SBOMs, Helm charts), a referrer.
fn artifact_manifest(m: &Value) -> Option<String> {
    if let Some(t) = get_str(m, "artifactType") {
        return Some(format!("artifact of type {t}"));
    }
    let ct = get(m, "config").and_then(|c| get_str(c, "mediaType"));
    match ct {
        Some(t) if !IMAGE_CONFIGS.contains(&t) => Some(format!("artifact with config type {t}")),
        _ if get(m, "subject").is_some() && get(m, "layers").and_then(Value::as_array).is_some_and(|l| l.is_empty()) => {
            Some("referrer".to_string())
        }
        _ => {
            // cosign signatures and the like: an image config, but no layer is a tar.
            let layers = get(m, "layers").and_then(Value::as_array)?;
            let types: Vec<&str> = layers.iter().filter_map(|l| get_str(l, "mediaType")).collect();
            let tar = |t: &&str| t.contains("tar") || t.contains("rootfs");
            (!types.is_empty() && types.len() == layers.len() && !types.iter().any(tar))
                .then(|| format!("artifact with layers of type {}", types[0]))
        }
    }
}

fn is_index(desc: &Value) -> bool {
    get_str(desc, "mediaType").is_some_and(|m| m.contains("image.index") || m.contains("manifest.list"))
}

/// Tags an index entry carries: containerd's full name, else an OCI ref.name that is a full
/// reference (a bare tag such as `latest` names no repository).
fn desc_names(desc: &Value) -> Vec<String> {
    let ann = get(desc, "annotations");
    let name = ann
        .and_then(|a| get_str(a, "io.containerd.image.name"))
        .or_else(|| ann.and_then(|a| get_str(a, "org.opencontainers.image.ref.name")).filter(|n| n.contains(':') || n.contains('/')));
    name.and_then(|n| Reference::parse(n).ok()).and_then(|r| r.tagged()).into_iter().collect()
}

fn pick_platform(entries: &[Value], want: Option<&Platform>) -> Result<Value> {
    let host = Platform::host();
    let want = want.unwrap_or(&host);
    let plat = |e: &Value| {
        let p = get(e, "platform")?;
        Some((get_str(p, "os")?.to_string(), get_str(p, "architecture")?.to_string(), get_str(p, "variant").map(str::to_string)))
    };
    let mut seen = Vec::new();
    for e in entries {
        if not_an_image(e).is_some() {
            continue;
        }
        if let Some((os, arch, variant)) = plat(e) {
            if want.matches(&os, &arch, variant.as_deref()) {
                return Ok(e.clone());
            }
            seen.push(format!("{os}/{arch}{}", variant.map(|v| format!("/{v}")).unwrap_or_default()));
        }
    }
    Err(Error::invalid(format!("archive has no image for platform {want} (it has: {})", seen.join(", "))))
}
