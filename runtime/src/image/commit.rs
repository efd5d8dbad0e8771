//! `commit` (and each step of `build`): a container's changes become one layer tarball on top of
//! its image, with a new config and a history entry.
//!
//! The tarball is written as Docker's overlay2 driver writes it: deletions as `.wh.NAME` files,
//! replaced directories followed by a `.wh..wh..opq` marker, hard links as tar links, extended
//! attributes (file capabilities) as PAX `SCHILY.xattr.` records. It is then unpacked through the
//! layer store like any pulled layer, so its tar-split is kept and `save` rebuilds the identical
//! bytes (the same diff_id) later.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::container::changes::{Changes, Entry};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::cstring;
use crate::image::db::ImageRecord;
use crate::image::import::apply_change;
use crate::image::layer;
use crate::image::platform::Platform;
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::image::tarwrite::TarOut;
use crate::lock::StoreLock;
use crate::timefmt;

/// Extended attributes never carried into a layer: overlayfs' own bookkeeping (an image must not
/// forge whiteouts or redirects) and SELinux labels of this host.
fn keep_xattr(name: &[u8]) -> bool {
    !name.starts_with(b"trusted.overlay.") && name != b"security.selinux"
}

/// The extended attributes of `p` (not following a symlink), sorted by name.
pub fn read_xattrs(p: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cstring(p)?;
    let mut names = vec![0u8; 1024];
    let n = loop {
        // SAFETY: `c` is NUL-terminated and `names` is writable for its full length.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if names.len() < 1 << 20 => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(Error::io_at("list xattrs of", p, e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        if !keep_xattr(name) {
            continue;
        }
        let cn = std::ffi::CString::new(name).map_err(|_| Error::invalid("xattr name holds a NUL byte"))?;
        let mut val = vec![0u8; 256];
        loop {
            // SAFETY: both strings are NUL-terminated and `val` is writable for its full length.
            let got = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
            if got >= 0 {
                val.truncate(got as usize);
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if val.len() < 1 << 20 => val.resize(val.len() * 4, 0),
                // Removed between the list and the read.
                Some(libc::ENODATA) => {
                    val.clear();
                    break;
                }
                _ => return Err(Error::io(format!("read xattr {} of {}", String::from_utf8_lossy(name), p.display()), e)),
            }
        }
        out.push((name.to_vec(), val));
    }
    out.sort();
    Ok(out)
}

fn name_of(rel: &[u8], prefix: &[u8]) -> Vec<u8> {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => [&rel[..=i], prefix, &rel[i + 1..]].concat(),
        None => [prefix, rel].concat(),
    }
}

pub fn marker(mode: u32, uid: u64, gid: u64, mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(0);
    h.set_mtime(mtime.max(0) as u64);
    h
}

/// Writes the layer tarball of `changes` to `w`.
pub fn write_layer(changes: &Changes, w: impl Write) -> Result<()> {
    let mut t = TarOut::new(w);
    for (rel, e) in &changes.entries {
        match e {
            Entry::Whiteout { mtime } => t.raw_entry(marker(0o600, 0, 0, *mtime), &name_of(rel, b".wh."), &[])?,
            Entry::Object { src, meta } | Entry::Opaque { src, meta } => {
                t.xattrs(rel, &read_xattrs(src)?)?;
                t.path(rel, src, meta)?;
                if let Entry::Opaque { .. } = e {
                    let m = marker(meta.mode() & 0o7777, meta.uid().into(), meta.gid().into(), meta.mtime());
                    t.raw_entry(m, &[rel, &b"/.wh..wh..opq"[..]].concat(), &[])?;
                }
            }
        }
    }
    t.finish()?.flush().map_err(|e| Error::io("write layer", e))
}

/// What `commit` records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub reference: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    /// `-c` instructions, applied to the config after the container's own.
    pub changes: Vec<String>,
    /// The history's `created_by`: the container's command for `commit`, the step for `build`.
    pub created_by: String,
}

/// Where a new layer's tarball comes from.
pub enum Layer<'a> {
    File(&'a Path),
    /// Written by another thread as it is read: no copy of the tarball on flash.
    Stream(&'a mut (dyn Read + Send)),
}

/// One new image on top of `base` (none: `FROM scratch`).
pub struct NewImage<'a> {
    pub base: Option<&'a ImageRecord>,
    /// The image's `config` object (Env, Cmd, ...).
    pub config: Map<String, Value>,
    /// The new layer as a tarball; `None` for a step that changes only the config.
    pub layer: Option<Layer<'a>>,
    pub created_by: String,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub tag: Option<String>,
    /// Whether the step gets a history entry (`build --label` changes the config without one).
    pub history: bool,
    /// `comment` is also the image's own (`commit -m`, as Docker's), not only the history's.
    pub image_comment: bool,
}

fn commit_image<'a>(
    base: &'a ImageRecord,
    config: Map<String, Value>,
    opts: &CommitOptions,
    tag: Option<String>,
    layer: Option<Layer<'a>>,
) -> NewImage<'a> {
    NewImage {
        base: Some(base),
        config,
        layer,
        created_by: opts.created_by.clone(),
        author: opts.author.clone(),
        comment: opts.message.clone(),
        tag,
        history: true,
        image_comment: true,
    }
}

pub fn tag_of(reference: Option<&str>) -> Result<Option<String>> {
    match reference {
        Some(r) => Ok(Some(
            Reference::parse(r)?
                .tagged()
                .ok_or_else(|| Error::invalid(format!("refusing to create a tag with a digest reference: {r}")))?,
        )),
        None => Ok(None),
    }
}

impl Store {
    /// Stores a new image (and its layer, if any). The caller holds the writer lock.
    pub fn add_image(&self, lock: &StoreLock, img: NewImage<'_>) -> Result<Digest> {
        let (mut full, mut layers) = match img.base {
            Some(b) => {
                let raw = self.config(b)?;
                let v: Value = serde_json::from_slice(&raw).map_err(|e| Error::invalid(format!("image {} config: {e}", b.id)))?;
                (v, b.layers.clone())
            }
            None => {
                let p = Platform::host();
                let mut v = json!({"architecture": p.arch, "os": p.os, "rootfs": {"type": "layers", "diff_ids": []}});
                if let Some(var) = &p.variant {
                    v["variant"] = json!(var);
                }
                (v, Vec::new())
            }
        };
        let obj = full.as_object_mut().ok_or_else(|| Error::invalid("image config is not a JSON object"))?;
        let scratch = self.scratch(lock, "commit")?;
        let dir = scratch.dir.join("layer");
        let mut unpacked = Vec::new();
        let u = match img.layer {
            Some(Layer::File(tar)) => {
                let f = File::open(tar).ctx_path("open", tar)?;
                Some(layer::unpack(BufReader::with_capacity(256 * 1024, f), &dir)?)
            }
            Some(Layer::Stream(r)) => Some(layer::unpack(BufReader::with_capacity(256 * 1024, r), &dir)?),
            None => None,
        };
        if let Some(u) = u {
            layers.push(u.diff_id.clone());
            unpacked.push((u.diff_id, u.size, dir));
        }
        let created = timefmt::now_nanos();
        obj.insert("created".into(), json!(created));
        obj.insert("config".into(), Value::Object(img.config));
        obj.remove("container_config");
        obj.remove("container");
        match &img.author {
            Some(a) => obj.insert("author".into(), json!(a)),
            None => obj.remove("author"),
        };
        match img.comment.as_ref().filter(|c| img.image_comment && !c.is_empty()) {
            Some(c) => obj.insert("comment".into(), json!(c)),
            None => obj.remove("comment"),
        };
        obj.insert("rootfs".into(), json!({"type": "layers", "diff_ids": layers.iter().map(|d| d.to_string()).collect::<Vec<_>>()}));
        let mut h = Map::new();
        h.insert("created".into(), json!(created));
        if let Some(a) = &img.author {
            h.insert("author".into(), json!(a));
        }
        h.insert("created_by".into(), json!(img.created_by));
        if let Some(c) = img.comment.as_ref().filter(|c| !c.is_empty()) {
            h.insert("comment".into(), json!(c));
        }
        if unpacked.is_empty() {
            h.insert("empty_layer".into(), json!(true));
        }
        if img.history {
            let hist = obj.entry("history").or_insert_with(|| json!([]));
            hist.as_array_mut().ok_or_else(|| Error::invalid("image history is not a list"))?.push(Value::Object(h));
        }
        let raw = serde_json::to_vec(&full).map_err(|e| Error::invalid(format!("encode image config: {e}")))?;
        let id = Digest::of(&raw);
        let s = |k: &str| full.get(k).and_then(Value::as_str).map(String::from);
        let db = self.db()?;
        let mut size: u64 = unpacked.iter().map(|(_, n, _)| *n).sum();
        // The new layer may already be in the store (the same changes committed twice): counted once.
        size +=
            layers.iter().filter(|d| !unpacked.iter().any(|(u, _, _)| u == *d)).filter_map(|d| db.layer(d)).map(|l| l.size).sum::<u64>();
        let rec = ImageRecord {
            id: id.clone(),
            tags: Vec::new(),
            digests: Vec::new(),
            layers,
            os: s("os").unwrap_or_else(|| "linux".into()),
            arch: s("architecture").unwrap_or_default(),
            variant: s("variant"),
            created: Some(created),
            size,
        };
        self.commit(lock, rec, &raw, &unpacked, img.tag.as_deref())?;
        Ok(id)
    }

    /// `commit`: `changes` of a container made from `base` become a new image. `config` is the
    /// container's config (the image's merged with its run options), to which `opts.changes` apply.
    pub fn commit_changes(
        &self,
        base: &ImageRecord,
        mut config: Map<String, Value>,
        changes: &Changes,
        opts: &CommitOptions,
    ) -> Result<Digest> {
        let tag = tag_of(opts.reference.as_deref())?;
        for c in &opts.changes {
            apply_change(&mut config, c)?;
        }
        let lock = self.lock()?;
        if changes.entries.is_empty() {
            return self.add_image(&lock, commit_image(base, config, opts, tag, None));
        }
        // The tarball is written by a thread and unpacked as it comes: the changes are read
        // once and written once.
        let (mut r, w) = UnixStream::pair().map_err(|e| Error::io("socket pair for the layer", e))?;
        std::thread::scope(|s| {
            let writer = s.spawn(move || write_layer(changes, BufWriter::with_capacity(256 * 1024, w)));
            let res = self.add_image(&lock, commit_image(base, config, opts, tag, Some(Layer::Stream(&mut r))));
            // A failed unpack stops the writer (its next write fails) before it is joined.
            drop(r);
            let wrote = writer.join().unwrap_or_else(|_| Err(Error::invalid("the layer writer panicked")));
            match (res, wrote) {
                (Ok(id), Ok(())) => Ok(id),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            }
        })
    }
}

/// The config `commit` records: the image's, with what the container was run with (Docker
/// commits the container's own config: its environment, command, working directory, user and
/// labels).
pub fn container_config(image: &Map<String, Value>, rec: &crate::container::record::Record) -> Map<String, Value> {
    let mut c = image.clone();
    // The agent adds HOSTNAME when the container starts; Docker's config never holds it.
    let env: Vec<&String> = rec.spec.env.iter().filter(|e| !e.starts_with("HOSTNAME=")).collect();
    c.insert("Env".into(), json!(env));
    if !rec.entrypoint.is_empty() {
        c.insert("Entrypoint".into(), json!(rec.entrypoint));
        if rec.cmd.is_empty() {
            c.insert("Cmd".into(), Value::Null);
        }
    }
    if !rec.cmd.is_empty() {
        c.insert("Cmd".into(), json!(rec.cmd));
    }
    if !rec.spec.cwd.is_empty() && (rec.spec.cwd != "/" || c.contains_key("WorkingDir")) {
        c.insert("WorkingDir".into(), json!(rec.spec.cwd));
    }
    if !rec.spec.user.is_empty() {
        c.insert("User".into(), json!(rec.spec.user));
    }
    if !rec.labels.is_empty() {
        let l = c.entry("Labels").or_insert_with(|| json!({}));
        if !l.is_object() {
            *l = json!({});
        }
        if let Some(m) = l.as_object_mut() {
            for (k, v) in &rec.labels {
                m.insert(k.clone(), json!(v));
            }
        }
    }
    if let Some(h) = &rec.health {
        let ns = |ms: u64| json!(ms * 1_000_000);
        c.insert(
            "Healthcheck".into(),
            json!({"Test": h.test, "Interval": ns(h.interval_ms), "Timeout": ns(h.timeout_ms), "StartPeriod": ns(h.start_period_ms), "Retries": h.retries}),
        );
    }
    c
}

/// The command `commit` writes as the history's `created_by` (Docker: the container's Cmd).
pub fn commit_created_by(config: &Map<String, Value>) -> String {
    config
        .get("Cmd")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::changes;
    use crate::tarstream::{Kind, TarReader};
    use std::fs;

    #[test]
    fn layer_has_whiteouts_opaque_links_and_capabilities() {
        let base = std::env::temp_dir().join(format!("berth-commit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let lower = base.join("lower");
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(lower.join("opt/old")).unwrap();
        fs::write(lower.join("etc/gone"), "x").unwrap();
        let up = base.join("upper");
        fs::create_dir_all(up.join("etc")).unwrap();
        fs::create_dir_all(up.join("opt")).unwrap();
        let wh = cstring(&up.join("etc/gone")).unwrap();
        // SAFETY: test; NUL-terminated path.
        assert_eq!(unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR, 0) }, 0, "mknod needs root");
        fs::create_dir(up.join("opt/old")).unwrap();
        let od = cstring(&up.join("opt/old")).unwrap();
        // SAFETY: test; NUL-terminated strings, one-byte value.
        assert_eq!(unsafe { libc::lsetxattr(od.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) }, 0);
        fs::write(up.join("opt/old/new"), "n").unwrap();
        fs::write(up.join("bin-ping"), "elf").unwrap();
        fs::hard_link(up.join("bin-ping"), up.join("bin-ping2")).unwrap();
        // cap_net_raw+ep, as `setcap` writes it (VFS_CAP_REVISION_2).
        let cap: [u8; 20] = [0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let bp = cstring(&up.join("bin-ping")).unwrap();
        // SAFETY: test; NUL-terminated strings and a 20-byte value.
        assert_eq!(unsafe { libc::lsetxattr(bp.as_ptr(), c"security.capability".as_ptr(), cap.as_ptr().cast(), cap.len(), 0) }, 0);
        let lowerv = crate::image::export::merged(&[lower]).unwrap();
        let ch = changes::overlay(&up, &lowerv).unwrap();
        let mut tar = Vec::new();
        write_layer(&ch, &mut tar).unwrap();
        let mut r = TarReader::new(&tar[..]);
        let mut seen = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            let name = String::from_utf8_lossy(&e.path).trim_end_matches('/').to_string();
            let caps = e.xattrs.iter().any(|(k, v)| k == b"security.capability" && v == &cap);
            seen.push((name, e.kind, caps));
            r.skip_content().unwrap();
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["bin-ping", "bin-ping2", "etc", "etc/.wh.gone", "opt", "opt/old", "opt/old/.wh..wh..opq", "opt/old/new"]);
        assert_eq!(seen[0].1, Kind::File);
        assert!(seen[0].2, "capability kept");
        assert_eq!(seen[1].1, Kind::HardLink);
        assert_eq!(seen[3].1, Kind::File);
        // The layer store takes it back as overlayfs whiteouts.
        let dest = base.join("unpacked");
        let u = layer::unpack(&tar[..], &dest).unwrap();
        assert!(changes::is_whiteout(&fs::symlink_metadata(dest.join("root/etc/gone")).unwrap()));
        assert!(changes::is_opaque(&dest.join("root/opt/old")));
        assert_eq!(read_xattrs(&dest.join("root/bin-ping")).unwrap(), vec![(b"security.capability".to_vec(), cap.to_vec())]);
        // And rebuilds the same bytes for `save`.
        let mut again = Vec::new();
        assert_eq!(layer::write_tar(&dest, &u.diff_id, &mut again).unwrap(), tar.len() as u64);
        assert_eq!(again, tar);
        fs::remove_dir_all(&base).unwrap();
    }
}
