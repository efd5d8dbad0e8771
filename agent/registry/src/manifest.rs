//! Manifests as registries serve them: Docker schema2 and OCI image manifests, manifest lists and
//! OCI indexes, and the choice of one platform from a list (ARM variants included: an armv7 board
//! runs v7, then v6, then v5 images; `arm64` is `arm64/v8`). Attestations, signatures and other
//! artifacts in an index (`unknown/unknown`) are never candidates.

use berth_runtime::digest::Digest;
use berth_runtime::image::platform::Platform;
use berth_runtime::{Error, Result};
use serde_json::Value;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Manifests and configs above this are refused (real ones are a few KiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Foreign layers: where the content lives instead of the registry.
    pub urls: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub desc: Descriptor,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

#[derive(Debug)]
pub enum Parsed {
    Image(Manifest),
    Index(Vec<Entry>),
}

fn descriptor(v: &Value, what: &str) -> Result<Descriptor> {
    let bad = |why: &str| Error::invalid(format!("{what}: {why}"));
    let digest = v.get("digest").and_then(Value::as_str).ok_or_else(|| bad("descriptor without digest"))?;
    let digest = Digest::parse(digest).map_err(|_| bad(&format!("unsupported digest {digest:?}")))?;
    let size = v.get("size").and_then(Value::as_u64).ok_or_else(|| bad("descriptor without size"))?;
    let media_type = v.get("mediaType").and_then(Value::as_str).unwrap_or("").to_string();
    let urls = v
        .get("urls")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Ok(Descriptor { media_type, digest, size, urls })
}

/// Parses a manifest or index; `content_type` is the response's, used when the body has no
/// `mediaType`. `what` names it in errors.
pub fn parse(body: &[u8], content_type: Option<&str>, what: &str) -> Result<Parsed> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Error::invalid(format!("{what}: malformed JSON: {e}")))?;
    let mt = v.get("mediaType").and_then(Value::as_str).or(content_type.map(|c| c.split(';').next().unwrap_or("").trim())).unwrap_or("");
    if v.get("schemaVersion").and_then(Value::as_u64) == Some(1) || mt.starts_with("application/vnd.docker.distribution.manifest.v1") {
        return Err(Error::invalid(format!("{what}: Docker schema 1 manifests are not supported (deprecated since 2019)")));
    }
    if let Some(list) = v.get("manifests").and_then(Value::as_array) {
        let mut out = Vec::new();
        for m in list {
            let desc = descriptor(m, what)?;
            let p = m.get("platform");
            let s = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str).map(str::to_string);
            out.push(Entry {
                desc,
                os: s("os").unwrap_or_else(|| "unknown".into()),
                arch: s("architecture").unwrap_or_else(|| "unknown".into()),
                variant: s("variant"),
            });
        }
        return Ok(Parsed::Index(out));
    }
    if mt == OCI_INDEX || mt == DOCKER_LIST {
        return Err(Error::invalid(format!("{what}: index without manifests")));
    }
    let config = descriptor(v.get("config").ok_or_else(|| Error::invalid(format!("{what}: no config")))?, what)?;
    let layers = v
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid(format!("{what}: no layers")))?
        .iter()
        .map(|l| descriptor(l, what))
        .collect::<Result<Vec<_>>>()?;
    // Artifacts (Helm charts, signatures, SBOMs) are manifests too; they are not images.
    let artifact = v.get("artifactType").and_then(Value::as_str);
    if let Some(t) = artifact.or((config.media_type != OCI_CONFIG && config.media_type != DOCKER_CONFIG && !config.media_type.is_empty())
        .then_some(config.media_type.as_str()))
    {
        return Err(Error::invalid(format!("{what} is an artifact of type {t}, not an image")));
    }
    Ok(Parsed::Image(Manifest { config, layers }))
}

fn variant_number(v: &str) -> Option<u32> {
    v.strip_prefix('v').and_then(|n| n.parse().ok())
}

/// How well an entry fits `want` (lower is better), or None.
fn rank(want: &Platform, e: &Entry) -> Option<u32> {
    if e.os != want.os || e.arch != want.arch {
        return None;
    }
    let default = match want.arch.as_str() {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    };
    let w = want.variant.as_deref().or(default);
    let have = e.variant.as_deref().or(if e.arch == "arm64" { Some("v8") } else { None });
    match (w, have) {
        (_, None) => Some(50),
        (None, Some(_)) => Some(10),
        (Some(w), Some(h)) if w == h => Some(0),
        // An ARMv7 CPU runs v6 and v5 code: the nearest older variant wins.
        (Some(w), Some(h)) if want.arch == "arm" => match (variant_number(w), variant_number(h)) {
            (Some(a), Some(b)) if b < a => Some(a - b),
            _ => None,
        },
        _ => None,
    }
}

fn show(e: &Entry) -> String {
    match &e.variant {
        Some(v) => format!("{}/{}/{v}", e.os, e.arch),
        None => format!("{}/{}", e.os, e.arch),
    }
}

/// The index entry for `want`; the error names the platforms the index has. Entries for
/// `unknown/unknown` (build attestations) are skipped.
pub fn pick<'a>(entries: &'a [Entry], want: &Platform, what: &str) -> Result<&'a Entry> {
    let images: Vec<&Entry> = entries.iter().filter(|e| e.os != "unknown" && e.arch != "unknown").collect();
    let best = images.iter().filter_map(|e| rank(want, e).map(|r| (r, *e))).min_by_key(|(r, _)| *r);
    match best {
        Some((_, e)) => Ok(e),
        None => {
            let mut have: Vec<String> = images.iter().map(|e| show(e)).collect();
            have.dedup();
            Err(Error::not_found(format!(
                "{what}: no matching manifest for {want} in the manifest list entries (it has: {})",
                if have.is_empty() { "no images".to_string() } else { have.join(", ") }
            )))
        }
    }
}

/// What berth needs from an image config.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    pub diff_ids: Vec<Digest>,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    pub created: Option<String>,
}

pub fn config_info(config: &[u8], what: &str) -> Result<ConfigInfo> {
    let v: Value = serde_json::from_slice(config).map_err(|e| Error::invalid(format!("{what}: malformed JSON: {e}")))?;
    let diff_ids = v
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid(format!("{what} has no rootfs.diff_ids")))?
        .iter()
        .map(|d| d.as_str().and_then(|s| Digest::parse(s).ok()).ok_or_else(|| Error::invalid(format!("{what}: bad diff_id {d}"))))
        .collect::<Result<Vec<_>>>()?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(ConfigInfo {
        diff_ids,
        os: s("os").unwrap_or_else(|| "linux".into()),
        arch: s("architecture").unwrap_or_default(),
        variant: s("variant"),
        created: s("created"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(os: &str, arch: &str, v: Option<&str>) -> Entry {
        let desc = Descriptor { media_type: OCI_MANIFEST.into(), digest: Digest::of(arch.as_bytes()), size: 1, urls: vec![] };
        Entry { desc, os: os.into(), arch: arch.into(), variant: v.map(Into::into) }
    }

    #[test]
    fn arm_variants() {
        let list = vec![
            e("linux", "amd64", None),
            e("linux", "arm", Some("v6")),
            e("linux", "arm", Some("v7")),
            e("linux", "arm64", Some("v8")),
            e("unknown", "unknown", None),
        ];
        let p = |s: &str| Platform::parse(s).unwrap();
        assert_eq!(pick(&list, &p("linux/arm/v7"), "x").unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(pick(&list, &p("linux/arm/v6"), "x").unwrap().variant.as_deref(), Some("v6"));
        assert_eq!(pick(&list, &p("linux/arm"), "x").unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(pick(&list, &p("linux/arm64"), "x").unwrap().arch, "arm64");
        assert_eq!(pick(&list[..2], &p("linux/arm/v7"), "x").unwrap().variant.as_deref(), Some("v6"), "v7 runs v6");
        let err = pick(&list[2..], &p("linux/arm/v6"), "x").unwrap_err().to_string();
        assert!(err.contains("linux/arm/v6") && err.contains("it has: linux/arm/v7, linux/arm64/v8") && !err.contains("unknown"), "{err}");
    }
}
