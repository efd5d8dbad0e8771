//! COPY and ADD written straight into a layer tarball (no container): Docker's placement rules
//! (a directory's contents go into the destination; a file goes to `dest/NAME` when the
//! destination is a directory), missing parent directories made `0755 root`, owners `0:0` from the
//! context (kept from a stage or image, or an extracted archive) unless `--chown`, and `--chmod`.
//! ADD extracts local tar archives in any compression.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::build::context::{self, Source};
use crate::build::eval::Copy;
use crate::compress;
use crate::error::{Error, IoContext, Result};
use crate::image::commit::marker;
use crate::image::tarwrite::TarOut;

/// `--chown=user[:group]` against the image's /etc/passwd and /etc/group. A user alone (or a
/// uid) gives the same number as group, as Docker does.
pub fn chown_ids(spec: &str, image: &Source) -> Result<(u64, u64)> {
    let read = |f: &str| image.tree.get(f).and_then(|(p, _)| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let find = |text: &str, name: &str, idx: usize| -> Option<u64> {
        text.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.first() == Some(&name)).and_then(|f| f.get(idx)?.parse().ok())
    };
    let (u, g) = spec.split_once(':').map_or((spec, None), |(a, b)| (a, Some(b)));
    let uid = match u.parse::<u64>() {
        Ok(n) => n,
        Err(_) => find(&read("etc/passwd"), u, 2).ok_or_else(|| {
            Error::invalid(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}"))
        })?,
    };
    let gid = match g {
        None => uid,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => find(&read("etc/group"), g, 2).ok_or_else(|| {
                Error::invalid(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}"))
            })?,
        },
    };
    Ok((uid, gid))
}

enum Item<'a> {
    /// Made by COPY itself (a missing parent, or the destination of a directory copy).
    Dir {
        mode: u32,
        mtime: i64,
        owner: (u64, u64),
    },
    Object {
        src: &'a Path,
        meta: &'a std::fs::Metadata,
        owner: Option<(u64, u64)>,
        mode: Option<u32>,
    },
    Bytes {
        data: &'a [u8],
        mtime: i64,
        owner: (u64, u64),
        mode: u32,
    },
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Whether `p` starts like a tar archive once decompressed.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = File::open(p) else { return false };
    let Ok((_, mut r)) = compress::decoder(BufReader::new(f)) else { return false };
    let mut h = [0u8; 512];
    let mut n = 0;
    while n < 512 {
        match r.read(&mut h[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n == 512 && crate::tarstream::is_header(&h) && &h[257..262] == b"ustar"
}

pub struct Prepared {
    /// Directories holding extracted ADD archives; removed by the caller.
    pub scratch: Vec<PathBuf>,
}

/// Writes the layer of `copy` to `out`. `src` is where the sources come from, `resolved` their
/// paths there (one list per source word), `image` the stage's current file system (existing
/// directories, /etc/passwd for `--chown`), `scratch` room to extract archives.
pub fn write_layer(
    copy: &Copy,
    src: &Source,
    resolved: &[Vec<String>],
    image: &Source,
    scratch: &Path,
    now: i64,
    out: &Path,
) -> Result<()> {
    let owner = match &copy.chown {
        Some(c) => Some(chown_ids(c, image)?),
        None => None,
    };
    let keep_owner = !src.is_context;
    let dest = copy.dest.trim_matches('/').to_string();
    let count: usize = resolved.iter().map(Vec::len).sum::<usize>() + copy.heredocs.len();
    let exists_dir = image.is_dir(&dest) && (dest.is_empty() || image.tree.contains_key(&dest));
    let dest_dir = copy.dest.ends_with('/') || exists_dir;
    if count > 1 && !dest_dir {
        return Err(Error::invalid(format!(
            "When using {} with more than one source file, the destination must be a directory and end with a /",
            if copy.add { "ADD" } else { "COPY" }
        )));
    }
    let root_owner = owner.unwrap_or((0, 0));
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    // Directories COPY makes belong to the --chown owner too, as Docker's.
    let parents = |items: &mut BTreeMap<String, Item>, path: &str| {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for n in 1..comps.len() {
            let p = comps[..n].join("/");
            if !image.tree.contains_key(&p) {
                items.entry(p).or_insert(Item::Dir { mode: 0o755, mtime: now, owner: root_owner });
            }
        }
    };
    // Archives an ADD extracts, as trees of their own.
    let mut extracted: Vec<Source> = Vec::new();
    for rels in resolved {
        for rel in rels {
            if copy.add && !src.is_dir(rel) && src.tree.get(rel).is_some_and(|(p, m)| m.is_file() && is_archive(p)) {
                let (p, _) = &src.tree[rel];
                let dir = scratch.join(format!("archive-{}", extracted.len()));
                let f = File::open(p).ctx_path("open", p)?;
                let (_, dec) = compress::decoder(BufReader::new(f)).ctx_path("read", p)?;
                crate::image::layer::unpack(dec, &dir).map_err(|e| e.context(format!("ADD {rel}")))?;
                extracted.push(context::layers(&[dir.join(crate::image::layer::ROOT)], "the archive")?);
            }
        }
    }
    let mut next_archive = 0;
    for rels in resolved {
        for rel in rels {
            let is_dir = src.is_dir(rel);
            let archive = copy.add && !is_dir && src.tree.get(rel).is_some_and(|(p, m)| m.is_file() && is_archive(p));
            if is_dir || archive {
                let (tree, base, own): (&Source, &str, bool) = if archive {
                    next_archive += 1;
                    (&extracted[next_archive - 1], "", true)
                } else {
                    (src, rel.as_str(), keep_owner)
                };
                parents(&mut items, &join(&dest, "x"));
                if !dest.is_empty() && !image.tree.contains_key(&dest) {
                    let meta = tree.tree.get(base).map(|(_, m)| m);
                    let mode = copy.chmod.unwrap_or_else(|| meta.map_or(0o755, |m| m.mode() & 0o7777));
                    let o = owner.unwrap_or_else(|| match meta {
                        Some(m) if own => (m.uid().into(), m.gid().into()),
                        _ => (0, 0),
                    });
                    items.insert(dest.clone(), Item::Dir { mode, mtime: meta.map_or(now, |m| m.mtime()), owner: o });
                }
                for (k, (p, m)) in tree.under(base) {
                    if k == base {
                        continue;
                    }
                    let suffix = if base.is_empty() { k.as_str() } else { &k[base.len() + 1..] };
                    let o = owner.or(if own { None } else { Some((0, 0)) });
                    items.insert(join(&dest, suffix), Item::Object { src: p, meta: m, owner: o, mode: copy.chmod });
                }
            } else {
                let (p, m) = &src.tree[rel];
                let name = rel.rsplit('/').next().unwrap_or(rel);
                let to = if dest_dir { join(&dest, name) } else { dest.clone() };
                parents(&mut items, &to);
                let o = owner.or(if keep_owner { None } else { Some((0, 0)) });
                items.insert(to, Item::Object { src: p, meta: m, owner: o, mode: copy.chmod });
            }
        }
    }
    for (name, data) in &copy.heredocs {
        let to = if dest_dir { join(&dest, name) } else { dest.clone() };
        parents(&mut items, &to);
        items.insert(to, Item::Bytes { data: data.as_bytes(), mtime: now, owner: root_owner, mode: copy.chmod.unwrap_or(0o644) });
    }
    let f = File::create(out).ctx_path("create", out)?;
    let mut t = TarOut::new(BufWriter::with_capacity(256 * 1024, f));
    for (path, item) in &items {
        match item {
            Item::Dir { mode, mtime, owner } => {
                let mut h = marker(*mode, owner.0, owner.1, *mtime);
                h.set_entry_type(tar::EntryType::Directory);
                t.raw_entry(h, format!("{path}/").as_bytes(), &[])?;
            }
            Item::Object { src, meta, owner, mode } => t.path_as(path.as_bytes(), src, meta, *owner, *mode)?,
            Item::Bytes { data, mtime, owner, mode } => t.raw_entry(marker(*mode, owner.0, owner.1, *mtime), path.as_bytes(), data)?,
        }
    }
    t.finish()?.flush().map_err(|e| Error::io_at("write", out, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::ignore::Ignore;
    use crate::tarstream::TarReader;
    use std::fs;

    fn entries(tar: &Path) -> Vec<(String, u32, u64, u64)> {
        let data = fs::read(tar).unwrap();
        let mut r = TarReader::new(&data[..]);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            out.push((String::from_utf8_lossy(&e.path).trim_end_matches('/').to_string(), e.mode & 0o7777, e.uid, e.gid));
            r.skip_content().unwrap();
        }
        out
    }

    fn cp(dest: &str) -> Copy {
        Copy { add: false, sources: vec![], dest: dest.into(), from: None, chown: None, chmod: None, heredocs: vec![] }
    }

    #[test]
    fn placement_owners_modes_and_archives() {
        let base = std::env::temp_dir().join(format!("berth-copy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let c = base.join("ctx");
        fs::create_dir_all(c.join("dir/sub")).unwrap();
        fs::write(c.join("dir/a"), "a").unwrap();
        fs::write(c.join("dir/sub/b"), "b").unwrap();
        fs::write(c.join("f"), "f").unwrap();
        std::os::unix::fs::lchown(c.join("f"), Some(1234), Some(1234)).unwrap();
        // A tarball to ADD.
        let mut tb = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o600);
        h.set_uid(7);
        h.set_gid(8);
        tb.append_data(&mut h, "in/archive.txt", &b"hi"[..]).unwrap();
        fs::write(c.join("t.tar"), tb.into_inner().unwrap()).unwrap();
        let img = base.join("img");
        fs::create_dir_all(img.join("etc")).unwrap();
        fs::create_dir_all(img.join("usr")).unwrap();
        fs::write(img.join("etc/passwd"), "root:x:0:0::/:/bin/sh\napp:x:100:101::/:/bin/sh\n").unwrap();
        fs::write(img.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let ctx = context::context(&c, &Ignore::default(), 1 << 30).unwrap();
        let image = context::layers(std::slice::from_ref(&img), "the image").unwrap();
        let scratch = base.join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        let out = base.join("l.tar");

        // A directory's contents into a new directory, a file into an existing one.
        write_layer(&cp("/opt/app"), &ctx, &[vec!["dir".into()]], &image, &scratch, 5, &out).unwrap();
        let e = entries(&out);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["opt", "opt/app", "opt/app/a", "opt/app/sub", "opt/app/sub/b"]);
        assert!(e.iter().all(|x| (x.2, x.3) == (0, 0)));
        write_layer(&cp("/usr/"), &ctx, &[vec!["f".into()]], &image, &scratch, 5, &out).unwrap();
        assert_eq!(entries(&out), [("usr/f".into(), 0o644, 0, 0)]);
        // --chown by name, --chmod.
        let mut c2 = cp("/usr/g");
        c2.chown = Some("app:staff".into());
        c2.chmod = Some(0o700);
        write_layer(&c2, &ctx, &[vec!["f".into()]], &image, &scratch, 5, &out).unwrap();
        assert_eq!(entries(&out), [("usr/g".into(), 0o700, 100, 50)]);
        assert_eq!(chown_ids("app", &image).unwrap(), (100, 100));
        assert!(chown_ids("nobody", &image).unwrap_err().to_string().contains("can't find uid for user nobody"));
        // Two sources need a directory destination.
        let e = write_layer(&cp("/x"), &ctx, &[vec!["f".into()], vec!["dir/a".into()]], &image, &scratch, 5, &out).unwrap_err();
        assert!(e.to_string().contains("must be a directory and end with a /"), "{e}");
        // ADD extracts, keeping the archive's owners; COPY does not.
        let mut add = cp("/srv/");
        add.add = true;
        write_layer(&add, &ctx, &[vec!["t.tar".into()]], &image, &scratch, 5, &out).unwrap();
        assert_eq!(
            entries(&out),
            [("srv".into(), 0o755, 0, 0), ("srv/in".into(), 0o755, 0, 0), ("srv/in/archive.txt".into(), 0o600, 7, 8)]
        );
        write_layer(&cp("/srv/"), &ctx, &[vec!["t.tar".into()]], &image, &scratch, 5, &out).unwrap();
        assert_eq!(entries(&out)[1].0, "srv/t.tar");
        // Heredocs.
        let mut h = cp("/etc/conf");
        h.heredocs = vec![("EOF".into(), "x=1\n".into())];
        write_layer(&h, &ctx, &[], &image, &scratch, 5, &out).unwrap();
        assert_eq!(entries(&out), [("etc/conf".into(), 0o644, 0, 0)]);
        fs::remove_dir_all(&base).unwrap();
    }
}
