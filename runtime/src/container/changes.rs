//! What a container changed in its root file system, for `diff` and `commit`.
//!
//! With overlayfs the changes are the upper directory: a 0/0 character device is a deletion (a
//! whiteout), a directory with `trusted.overlay.opaque=y` replaced the one below it. With the copy
//! fallback the container's tree is compared with the image's merged view.
//!
//! The list follows Docker's rules (moby `archive/changes.go`): an entry that exists below is a
//! change (`C`), one that does not is an addition (`A`), a whiteout a deletion (`D`); a directory
//! below whose mode, owner and time are unchanged is not listed for itself, but the parent of
//! every addition or deletion is. Order is a depth-first walk, names sorted bytewise.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::fsutil::cstring;

/// The image's visible entries by relative path (see `image::export::merged`).
pub type Lower = BTreeMap<Vec<u8>, (PathBuf, Metadata)>;

/// Mount points berth makes in every container's root (Docker keeps them in its hidden init
/// layer): never the user's change, never committed.
const MOUNT_POINTS: &[&[u8]] = &[b"proc", b"sys", b"dev", b"etc/hosts", b"etc/hostname", b"etc/resolv.conf"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Modified,
    Added,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    /// Relative to the root, no leading `/`.
    pub path: Vec<u8>,
}

impl Change {
    /// `docker diff`'s line: `C /etc`.
    pub fn line(&self) -> String {
        let k = match self.kind {
            Kind::Modified => 'C',
            Kind::Added => 'A',
            Kind::Deleted => 'D',
        };
        format!("{k} /{}", String::from_utf8_lossy(&self.path))
    }
}

/// One entry of the new layer.
#[derive(Debug)]
pub enum Entry {
    /// A file-system object to archive as it is.
    Object { src: PathBuf, meta: Metadata },
    /// A directory that hides everything below it (archived with a `.wh..wh..opq` marker).
    Opaque { src: PathBuf, meta: Metadata },
    /// A deletion (archived as `.wh.NAME`); `mtime` of the whiteout itself when there is one.
    Whiteout { mtime: i64 },
}

/// The container's changes: what `diff` lists and what `commit` archives.
#[derive(Debug, Default)]
pub struct Changes {
    pub list: Vec<Change>,
    /// In walk order, parents first.
    pub entries: Vec<(Vec<u8>, Entry)>,
}

/// Depth-first order with sorted names: `a`, `a/b`, `a.txt` (not `a.txt` before `a/b`).
pub fn walk_order(a: &[u8], b: &[u8]) -> Ordering {
    a.split(|c| *c == b'/').cmp(b.split(|c| *c == b'/'))
}

fn is_mount_point(rel: &[u8]) -> bool {
    MOUNT_POINTS.iter().any(|m| rel == *m || rel.starts_with(m) && rel.get(m.len()) == Some(&b'/'))
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

fn parent(rel: &[u8]) -> &[u8] {
    rel.iter().rposition(|b| *b == b'/').map_or(&[][..], |i| &rel[..i])
}

/// Sorted names in `dir`.
fn names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut v: Vec<_> =
        fs::read_dir(dir).ctx_path("read", dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>().ctx_path("read", dir)?;
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(v)
}

/// Every entry under `root` in depth-first sorted order (Go's `filepath.Walk`).
fn dfs(root: &Path) -> Result<Vec<(Vec<u8>, PathBuf, Metadata)>> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    for n in names(root)?.into_iter().rev() {
        stack.push((n.as_bytes().to_vec(), root.join(&n)));
    }
    while let Some((rel, p)) = stack.pop() {
        let m = fs::symlink_metadata(&p).ctx_path("stat", &p)?;
        if m.is_dir() {
            for n in names(&p)?.into_iter().rev() {
                stack.push((join(&rel, n.as_bytes()), p.join(&n)));
            }
        }
        out.push((rel, p, m));
    }
    Ok(out)
}

pub fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

pub fn is_opaque(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    let Ok(c) = cstring(p) else { return false };
    // SAFETY: `c` is NUL-terminated and `buf` is writable for its full length.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n == 1 && buf[0] == b'y'
}

fn same_dir_meta(a: &Metadata, b: &Metadata) -> bool {
    a.mode() == b.mode() && a.uid() == b.uid() && a.gid() == b.gid()
}

fn same_time(a: &Metadata, b: &Metadata) -> bool {
    a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec()
}

/// Whether an object of the container equals the image's (copy driver: no copy-up tells us).
fn same_object(new: &Metadata, newp: &Path, old: &Metadata, oldp: &Path) -> bool {
    if new.file_type() != old.file_type() || !same_dir_meta(new, old) || !same_time(new, old) {
        return false;
    }
    if new.is_dir() {
        return true;
    }
    if new.file_type().is_symlink() {
        return fs::read_link(newp).ok() == fs::read_link(oldp).ok();
    }
    new.size() == old.size()
}

struct Collector {
    out: Changes,
    /// Directories already listed (as a change of their own or as a parent).
    listed: HashSet<Vec<u8>>,
}

impl Collector {
    fn push(&mut self, kind: Kind, rel: Vec<u8>) {
        if matches!(kind, Kind::Added | Kind::Deleted) {
            let p = parent(&rel);
            if !p.is_empty() && self.listed.insert(p.to_vec()) {
                self.out.list.push(Change { kind: Kind::Modified, path: p.to_vec() });
            }
        }
        self.listed.insert(rel.clone());
        self.out.list.push(Change { kind, path: rel });
    }

    fn finish(mut self) -> Changes {
        // Parents added late (copy driver deletions) go back to their place in the walk.
        self.out.list.sort_by(|a, b| walk_order(&a.path, &b.path));
        self.out.list.dedup_by(|a, b| a.path == b.path);
        self.out.entries.sort_by(|a, b| walk_order(&a.0, &b.0));
        self.out
    }
}

/// The changes an overlayfs container made: its `upper` directory against the image below.
pub fn overlay(upper: &Path, lower: &Lower) -> Result<Changes> {
    let mut c = Collector { out: Changes::default(), listed: HashSet::new() };
    for (rel, src, m) in dfs(upper)? {
        if is_mount_point(&rel) {
            continue;
        }
        let below = lower.get(&rel);
        if is_whiteout(&m) {
            // A whiteout of something that was never below (created and deleted again) hides nothing.
            if below.is_some() {
                c.out.entries.push((rel.clone(), Entry::Whiteout { mtime: m.mtime() }));
                c.push(Kind::Deleted, rel);
            }
            continue;
        }
        if m.is_dir() && is_opaque(&src) {
            c.out.entries.push((rel.clone(), Entry::Opaque { src, meta: m }));
            // Docker reports a replaced directory as deleted, its new content as added.
            c.push(if below.is_some() { Kind::Deleted } else { Kind::Added }, rel);
            continue;
        }
        match below {
            None => c.push(Kind::Added, rel.clone()),
            Some((_, old)) if m.is_dir() && old.is_dir() => {
                // A directory is copied up whenever something below it changes; it is a change of
                // its own only if its metadata differs. Its time alone changes when berth creates
                // a mount point in it, which is not the user's.
                let real_child = names(&src)?.iter().any(|n| !is_mount_point(&join(&rel, n.as_bytes())));
                if !same_dir_meta(&m, old) || (!same_time(&m, old) && real_child) {
                    c.push(Kind::Modified, rel.clone());
                }
            }
            Some(_) => c.push(Kind::Modified, rel.clone()),
        }
        c.out.entries.push((rel, Entry::Object { src, meta: m }));
    }
    Ok(c.finish())
}

/// The changes of a container on the copy driver: its full tree `rootfs` against the image.
pub fn copied(rootfs: &Path, lower: &Lower) -> Result<Changes> {
    let mut c = Collector { out: Changes::default(), listed: HashSet::new() };
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for (rel, src, m) in dfs(rootfs)? {
        if is_mount_point(&rel) {
            continue;
        }
        seen.insert(rel.clone());
        match lower.get(&rel) {
            None => c.push(Kind::Added, rel.clone()),
            Some((oldp, old)) => {
                if same_object(&m, &src, old, oldp) {
                    continue;
                }
                if m.is_dir() && old.is_dir() && same_dir_meta(&m, old) {
                    let real_child = names(&src)?.iter().any(|n| !is_mount_point(&join(&rel, n.as_bytes())));
                    if !real_child {
                        continue;
                    }
                }
                c.push(Kind::Modified, rel.clone());
            }
        }
        c.out.entries.push((rel, Entry::Object { src, meta: m }));
    }
    // Deleted: in the image, not in the container, and the topmost such path only.
    for rel in lower.keys() {
        if seen.contains(rel) || is_mount_point(rel) {
            continue;
        }
        let p = parent(rel);
        if !p.is_empty() && !seen.contains(p) {
            continue;
        }
        c.out.entries.push((rel.clone(), Entry::Whiteout { mtime: 0 }));
        c.push(Kind::Deleted, rel.clone());
    }
    Ok(c.finish())
}

/// A container's changes: its upper directory (overlayfs) or its own tree (`copy`, the copy
/// driver) against the merged layers of its image, which live in `store`.
pub fn of_container(store: &crate::image::store::Store, dir: &Path, layers: &[crate::digest::Digest], copy: bool) -> Result<Changes> {
    let roots: Vec<PathBuf> = layers.iter().map(|d| store.layer_dir(d).join(crate::image::layer::ROOT)).collect();
    let lower = crate::image::export::merged(&roots)?;
    if copy {
        copied(&dir.join("rootfs"), &lower)
    } else {
        overlay(&dir.join("upper"), &lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-changes-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn whiteout(p: &Path) {
        let c = cstring(p).unwrap();
        // SAFETY: test helper; `c` is NUL-terminated.
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0, "mknod needs root");
    }

    fn lines(c: &Changes) -> Vec<String> {
        c.list.iter().map(Change::line).collect()
    }

    /// The image: /etc/passwd, /etc/group, /usr/bin/tool, /var/lib/x/a.
    fn image(base: &Path) -> PathBuf {
        let l = base.join("lower");
        for d in ["etc", "usr/bin", "var/lib/x"] {
            fs::create_dir_all(l.join(d)).unwrap();
        }
        fs::write(l.join("etc/passwd"), "root:x:0:0\n").unwrap();
        fs::write(l.join("etc/group"), "root:x:0:\n").unwrap();
        fs::write(l.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        fs::write(l.join("var/lib/x/a"), "a").unwrap();
        l
    }

    #[test]
    fn walk_order_is_depth_first() {
        let mut v: Vec<&[u8]> = vec![b"a.txt", b"a/b", b"a", b"b", b"a/b/c"];
        v.sort_by(|a, b| walk_order(a, b));
        assert_eq!(v, vec![&b"a"[..], b"a/b", b"a/b/c", b"a.txt", b"b"]);
    }

    fn set_opaque(p: &Path) {
        let c = cstring(p).unwrap();
        // SAFETY: test helper; both strings are NUL-terminated and the value is one byte.
        let rc = unsafe { libc::lsetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, 0, "trusted xattrs need root");
    }

    /// Overlayfs copies a directory up with the lower one's mode, owner and times.
    fn copy_times(from: &Path, to: &Path) {
        let m = fs::metadata(from).unwrap();
        fs::set_permissions(to, m.permissions()).unwrap();
        let t = libc::timespec { tv_sec: m.mtime() as _, tv_nsec: m.mtime_nsec() as _ };
        let c = cstring(to).unwrap();
        // SAFETY: test helper; `c` is NUL-terminated and `times` holds two timespecs.
        assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) }, 0);
    }

    #[test]
    fn overlay_upper_as_docker_lists_it() {
        let base = tmp("ovl");
        let lower_dir = image(&base);
        let lower = crate::image::export::merged(std::slice::from_ref(&lower_dir)).unwrap();
        let u = base.join("upper");
        for d in ["etc", "usr/bin", "var/lib"] {
            fs::create_dir_all(u.join(d)).unwrap();
        }
        fs::write(u.join("etc/passwd"), "root:x:0:0\nme:x:1000:1000\n").unwrap();
        whiteout(&u.join("etc/group"));
        whiteout(&u.join("usr/bin/tool"));
        fs::create_dir(u.join("var/lib/x")).unwrap();
        set_opaque(&u.join("var/lib/x"));
        fs::write(u.join("var/lib/x/b"), "b").unwrap();
        fs::create_dir_all(u.join("srv/app")).unwrap();
        fs::write(u.join("srv/app/run"), "x").unwrap();
        symlink("run", u.join("srv/app/start")).unwrap();
        // Berth's own mount points are not changes.
        fs::create_dir(u.join("proc")).unwrap();
        fs::write(u.join("etc/hostname"), "").unwrap();
        whiteout(&u.join("gone-before-it-came"));
        for d in ["usr", "usr/bin", "var", "var/lib"] {
            copy_times(&lower_dir.join(d), &u.join(d));
        }
        let c = overlay(&u, &lower).unwrap();
        let want = [
            "C /etc",
            "D /etc/group",
            "C /etc/passwd",
            "A /srv",
            "A /srv/app",
            "A /srv/app/run",
            "A /srv/app/start",
            "C /usr/bin",
            "D /usr/bin/tool",
            "C /var/lib",
            "D /var/lib/x",
            "A /var/lib/x/b",
        ];
        assert_eq!(lines(&c), want);
        let kind = |rel: &str| {
            c.entries.iter().find(|(r, _)| r == rel.as_bytes()).map(|(_, e)| match e {
                Entry::Object { .. } => "obj",
                Entry::Opaque { .. } => "opq",
                Entry::Whiteout { .. } => "wh",
            })
        };
        assert_eq!(kind("etc/group"), Some("wh"));
        assert_eq!(kind("var/lib/x"), Some("opq"));
        assert_eq!(kind("usr"), Some("obj"));
        assert_eq!((kind("proc"), kind("etc/hostname"), kind("gone-before-it-came")), (None, None, None));
        // An unchanged directory copy alone is no change.
        let u2 = base.join("upper2");
        fs::create_dir_all(u2.join("usr")).unwrap();
        copy_times(&lower_dir.join("usr"), &u2.join("usr"));
        assert!(overlay(&u2, &lower).unwrap().list.is_empty());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn copy_driver_compares_with_the_image() {
        let base = tmp("copy");
        let lower_dir = image(&base);
        let lower = crate::image::export::merged(std::slice::from_ref(&lower_dir)).unwrap();
        let root = base.join("rootfs");
        fs::create_dir(&root).unwrap();
        crate::container::copyfs::materialize(&[lower_dir], &root).unwrap();
        fs::write(root.join("etc/passwd"), "changed, longer than before\n").unwrap();
        fs::remove_dir_all(root.join("var/lib/x")).unwrap();
        fs::create_dir(root.join("opt")).unwrap();
        fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(root.join("dev")).unwrap();
        let c = copied(&root, &lower).unwrap();
        let l = lines(&c);
        assert!(l.contains(&"C /etc/passwd".to_string()), "{l:?}");
        assert!(l.contains(&"A /opt".to_string()), "{l:?}");
        assert!(l.contains(&"C /usr/bin/tool".to_string()), "{l:?}");
        assert!(l.contains(&"C /var/lib".to_string()), "{l:?}");
        assert!(l.contains(&"D /var/lib/x".to_string()), "{l:?}");
        assert!(!l.iter().any(|x| x.contains("/var/lib/x/a") || x.contains("/dev") || x.contains("group")), "{l:?}");
        let mut sorted = l.clone();
        sorted.sort_by(|a, b| walk_order(&a.as_bytes()[2..], &b.as_bytes()[2..]));
        assert_eq!(l, sorted);
        fs::remove_dir_all(&base).unwrap();
    }
}
