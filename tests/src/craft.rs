//! Hand-made archives for the bad-input tests. Tar headers are written field by field (the name
//! goes straight into `header.as_old_mut().name`), so `..`, absolute paths and odd links reach
//! berth exactly as written; the docker-archive around a layer is otherwise valid (config with the
//! right diff_ids, named by its sha256), so the only thing wrong is the thing under test.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};
use tar::{EntryType, Header};

use crate::{sha256_digest, sha256_hex};

/// One tar entry, written without any path checking.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub link: Vec<u8>,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl RawEntry {
    pub fn file(name: &str, data: &[u8]) -> RawEntry {
        RawEntry { name: name.as_bytes().to_vec(), kind: EntryType::Regular, link: Vec::new(), mode: 0o644, data: data.to_vec() }
    }

    pub fn dir(name: &str) -> RawEntry {
        RawEntry { name: name.as_bytes().to_vec(), kind: EntryType::Directory, link: Vec::new(), mode: 0o755, data: Vec::new() }
    }

    pub fn symlink(name: &str, target: &str) -> RawEntry {
        RawEntry {
            name: name.as_bytes().to_vec(),
            kind: EntryType::Symlink,
            link: target.as_bytes().to_vec(),
            mode: 0o777,
            data: Vec::new(),
        }
    }

    pub fn hardlink(name: &str, target: &str) -> RawEntry {
        RawEntry { name: name.as_bytes().to_vec(), kind: EntryType::Link, link: target.as_bytes().to_vec(), mode: 0o644, data: Vec::new() }
    }
}

/// A tar stream of these entries (names and link names up to 100 bytes, written verbatim), with
/// the two zero blocks at the end.
pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        assert!(e.name.len() <= 100 && e.link.len() <= 100, "raw_tar: name or link over 100 bytes");
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..e.name.len()].copy_from_slice(&e.name);
            old.linkname = [0; 100];
            old.linkname[..e.link.len()].copy_from_slice(&e.link);
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&e.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// A layer with one regular file whose name is `name` (any length): a GNU `././@LongLink`
/// entry (`pax == false`) or a PAX `path` record (`pax == true`) carries the long name.
pub fn long_name_layer(name: &str, pax: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = b"long\n";
    if pax {
        b.append_pax_extensions([("path", name.as_bytes())]).expect("append pax path");
        let mut h = Header::new_ustar();
        h.set_path("placeholder").expect("short path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(EntryType::Regular);
        h.set_cksum();
        b.append(&h, &data[..]).expect("append entry");
    } else {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(EntryType::Regular);
        // For a GNU header, the tar crate writes a ././@LongLink entry for names over 100 bytes.
        b.append_data(&mut h, name, &data[..]).expect("append long-named entry");
    }
    b.into_inner().expect("finish tar")
}

/// A valid single-image docker-archive (docker-save format) around some layers, with fields a
/// test may change before writing it.
#[derive(Clone, Debug)]
pub struct DockerArchive {
    /// The image config; `rootfs.diff_ids` holds the real sha256 of each layer.
    pub config: Value,
    /// (entry name, bytes) of each layer file in the archive.
    pub layers: Vec<(String, Vec<u8>)>,
    /// Names listed in manifest.json `Layers` (the layers' entry names unless changed).
    pub manifest_layers: Vec<String>,
    pub repo_tags: Vec<String>,
    /// Replaces the generated manifest.json bytes when set.
    pub manifest_override: Option<Vec<u8>>,
    /// Extra entries appended to the archive.
    pub extra: Vec<RawEntry>,
}

impl DockerArchive {
    /// An image named `tag` made of these layer tars (bottom first).
    pub fn new(tag: &str, layers: Vec<Vec<u8>>) -> DockerArchive {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        let named: Vec<(String, Vec<u8>)> =
            layers.into_iter().enumerate().map(|(i, l)| (format!("{:02}-{}.tar", i, sha256_hex(&l)), l)).collect();
        let names = named.iter().map(|(n, _)| n.clone()).collect();
        DockerArchive {
            config: json!({
                "architecture": "amd64",
                "os": "linux",
                "created": "2024-01-01T00:00:00Z",
                "config": { "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] },
                "rootfs": { "type": "layers", "diff_ids": diff_ids },
            }),
            layers: named,
            manifest_layers: names,
            repo_tags: vec![tag.to_string()],
            manifest_override: None,
            extra: Vec::new(),
        }
    }

    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).expect("serialise config")
    }

    /// The image ID this archive would have (`sha256:` of the config bytes).
    pub fn id(&self) -> String {
        sha256_digest(&self.config_bytes())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let config = self.config_bytes();
        let config_name = format!("{}.json", sha256_hex(&config));
        let manifest = match &self.manifest_override {
            Some(m) => m.clone(),
            None => serde_json::to_vec(&json!([{
                "Config": config_name,
                "RepoTags": self.repo_tags,
                "Layers": self.manifest_layers,
            }]))
            .expect("serialise manifest"),
        };
        let mut entries = Vec::new();
        for (name, data) in &self.layers {
            entries.push(RawEntry::file(name, data));
        }
        entries.push(RawEntry::file(&config_name, &config));
        entries.push(RawEntry::file("manifest.json", &manifest));
        entries.extend(self.extra.iter().cloned());
        raw_tar(&entries)
    }

    pub fn write(&self, path: &Path) {
        fs::write(path, self.to_bytes()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// A harmless small layer: `etc/`, `etc/hello.txt`.
pub fn small_layer() -> Vec<u8> {
    raw_tar(&[RawEntry::dir("etc/"), RawEntry::file("etc/hello.txt", b"hello\n")])
}
