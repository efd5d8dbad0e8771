//! Unpacking a layer tar into `layers/<diff-id>/root` (OCI whiteouts turned into overlayfs ones) and
//! rebuilding the identical tar from it for `save`.
//!
//! Beside `root/` lives `tar-split`: every header, padding and trailer byte of the original stream
//! plus, for each regular file, a reference to where its content now lies. Rebuilding streams both
//! and checks the result against the diff_id, so a layer costs its unpacked size on flash, not twice
//! that. Rare tars that overwrite their own entries keep the replaced ones in `side/` (listed in
//! `moves`) so they too rebuild exactly.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashReader, HashWriter};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::cstring;
use crate::tarstream::{Entry, Kind, TarReader};

pub const ROOT: &str = "root";
const SPLIT: &str = "tar-split";
const MOVES: &str = "moves";
const SIDE: &str = "side";
const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const BUF: usize = 128 * 1024;

/// What unpacking a layer found.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub diff_id: Digest,
    /// Length of the uncompressed tar stream.
    pub size: u64,
    pub entries: u64,
    /// Device nodes in the layer, not created: images are untrusted (their headers are kept, so
    /// `save` still writes them).
    pub skipped_devices: u64,
}

/// An entry that replaced something an earlier entry of the same layer had written.
#[derive(Serialize, Deserialize)]
struct Move {
    seq: u32,
    path: Vec<u8>,
    side: u32,
}

/// Splits an entry name into clean components. Absolute names are taken as relative to the layer
/// root (as Docker does); a `..` that climbs above it is refused.
pub fn normalize(name: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(Error::invalid(format!("tar entry {:?} escapes the layer root", String::from_utf8_lossy(name))));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

struct Skeleton<W: Write> {
    w: W,
}

impl<W: Write> Skeleton<W> {
    fn raw(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(u32::MAX as usize) {
            self.w.write_all(&[1])?;
            self.w.write_all(&(chunk.len() as u32).to_le_bytes())?;
            self.w.write_all(chunk)?;
        }
        Ok(())
    }
    fn file(&mut self, size: u64, seq: u32, path: &[u8]) -> io::Result<()> {
        self.w.write_all(&[2])?;
        self.w.write_all(&size.to_le_bytes())?;
        self.w.write_all(&seq.to_le_bytes())?;
        self.w.write_all(&(path.len() as u16).to_le_bytes())?;
        self.w.write_all(path)
    }
}

struct DirMeta {
    path: PathBuf,
    entry: Entry,
}

struct Unpacker {
    root: PathBuf,
    side: PathBuf,
    moves: Vec<Move>,
    dirs: Vec<DirMeta>,
    known_dirs: HashSet<Vec<u8>>,
    seq: u32,
    buf: Vec<u8>,
}

/// Unpacks the uncompressed layer stream `src` into the empty directory `dest`.
pub fn unpack(mut src: impl Read, dest: &Path) -> Result<Unpacked> {
    unpack_from(&mut src, dest)
}

/// The unpacker for one source type only (a copy per caller's reader type cost the firmware about
/// 7 KB each).
fn unpack_from(src: &mut dyn Read, dest: &Path) -> Result<Unpacked> {
    let root = dest.join(ROOT);
    fs::create_dir_all(&root).ctx_path("create", &root)?;
    let split_path = dest.join(SPLIT);
    let split_file = File::create(&split_path).ctx_path("create", &split_path)?;
    let mut skel = Skeleton { w: crate::gzip::GzEncoder::new(BufWriter::new(split_file), 1) };
    let mut tar = TarReader::new(BufReader::with_capacity(BUF, HashReader::new(src)));
    let mut u = Unpacker {
        root,
        side: dest.join(SIDE),
        moves: Vec::new(),
        dirs: Vec::new(),
        known_dirs: HashSet::new(),
        seq: 0,
        buf: vec![0; BUF],
    };
    let (mut entries, mut devices) = (0u64, 0u64);
    let w = |e: io::Error| Error::io_at("write", &split_path, e);
    while let Some(e) = tar.next_entry()? {
        entries += 1;
        u.seq = u.seq.checked_add(1).ok_or_else(|| Error::invalid("layer has too many entries"))?;
        skel.raw(&tar.take_raw()).map_err(w)?;
        let comps = normalize(&e.path)?;
        let rel = comps.join(&b'/');
        if e.kind == Kind::File && !is_whiteout(&comps) {
            skel.file(e.size, u.seq, &rel).map_err(w)?;
        }
        if matches!(e.kind, Kind::Char | Kind::Block) {
            devices += 1;
            continue;
        }
        u.entry(&e, &comps, &mut tar).map_err(|err| err.context(format!("layer entry {:?}", show(&e.path))))?;
    }
    skel.raw(&tar.take_raw()).map_err(w)?;
    skel.w.write_all(&[0]).map_err(w)?;
    skel.w.finish().map_err(w)?.into_inner().map_err(|e| w(e.into_error()))?.sync_all().map_err(w)?;
    u.finish()?;
    if !u.moves.is_empty() {
        let data = postcard::to_allocvec(&u.moves).map_err(|e| Error::invalid(format!("encode moves: {e}")))?;
        fs::write(dest.join(MOVES), data).ctx_path("write", &dest.join(MOVES))?;
    }
    let hr = tar.into_inner().into_inner();
    Ok(Unpacked { size: hr.hasher.count(), diff_id: hr.hasher.finish(), entries, skipped_devices: devices })
}

fn is_whiteout(comps: &[&[u8]]) -> bool {
    comps.last().is_some_and(|n| n.starts_with(WHITEOUT))
}

impl Unpacker {
    fn path(&self, comps: &[&[u8]]) -> PathBuf {
        let mut p = self.root.clone();
        for c in comps {
            p.push(std::ffi::OsStr::from_bytes(c));
        }
        p
    }

    /// Makes sure every parent of `comps` is a real directory inside the layer. Writing through a
    /// symlink is refused: in a layer it is either an escape or a tar no real tool writes.
    fn parents(&mut self, comps: &[&[u8]], create: bool) -> Result<()> {
        for i in 1..comps.len() {
            let key = comps[..i].join(&b'/');
            if self.known_dirs.contains(&key) {
                continue;
            }
            let p = self.path(&comps[..i]);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::invalid(format!("path goes through symlink {:?}, which could lead out of the layer", show(&key))))
                }
                Ok(_) => return Err(Error::invalid(format!("parent {:?} is not a directory", show(&key)))),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&p).ctx_path("create", &p)?;
                }
                Err(e) => return Err(Error::io_at("stat", &p, e)),
            }
            self.known_dirs.insert(key);
        }
        Ok(())
    }

    /// Clears `comps` for a new entry. Returns true if a directory is already there and the new
    /// entry is a directory too (they merge, as in `tar -x`). Anything else is moved to `side/`
    /// so `save` can still rebuild the earlier entry's content.
    fn clear(&mut self, comps: &[&[u8]], new_is_dir: bool) -> Result<bool> {
        let p = self.path(comps);
        let m = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io_at("stat", &p, e)),
        };
        if m.is_dir() && new_is_dir {
            return Ok(true);
        }
        if comps.is_empty() {
            return Err(Error::invalid("entry replaces the layer root"));
        }
        fs::create_dir_all(&self.side).ctx_path("create", &self.side)?;
        let n = self.moves.len() as u32;
        let to = self.side.join(n.to_string());
        fs::rename(&p, &to).ctx(|| format!("move {} aside", p.display()))?;
        let key = comps.join(&b'/');
        if m.is_dir() {
            self.known_dirs.retain(|k| !(k == &key || k.starts_with(&key) && k.get(key.len()) == Some(&b'/')));
            // Their metadata is applied last, by path: once `p` can be a symlink, that path may
            // lead out of the layer.
            self.dirs.retain(|d| !d.path.starts_with(&p));
        }
        self.moves.push(Move { seq: self.seq, path: key, side: n });
        Ok(false)
    }

    fn entry<R: Read>(&mut self, e: &Entry, comps: &[&[u8]], content: &mut R) -> Result<()> {
        if let Some((name, parent)) = comps.split_last() {
            if name.starts_with(WHITEOUT) {
                self.parents(comps, true)?;
                if *name == OPAQUE {
                    // The opaque dir itself must exist as a directory for overlayfs to honour it.
                    if parent.is_empty() {
                        return Ok(());
                    }
                    let p = self.path(parent);
                    return set_xattr(&p, b"trusted.overlay.opaque", b"y");
                }
                if name.starts_with(b".wh..wh.") {
                    return Ok(()); // aufs bookkeeping (.wh..wh.plnk and friends): meaningless here
                }
                let mut target: Vec<&[u8]> = parent.to_vec();
                target.push(&name[WHITEOUT.len()..]);
                self.clear(&target, false)?;
                return mknod(&self.path(&target), libc::S_IFCHR, 0, 0);
            }
        }
        self.parents(comps, true)?;
        let p = self.path(comps);
        let merged = self.clear(comps, e.kind == Kind::Dir)?;
        match e.kind {
            Kind::Dir => {
                if !merged {
                    fs::create_dir(&p).ctx_path("create", &p)?;
                }
                self.known_dirs.insert(comps.join(&b'/'));
                self.dirs.push(DirMeta { path: p, entry: e.clone() });
                return Ok(());
            }
            Kind::File => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&p)
                    .ctx_path("create", &p)?;
                let mut left = e.size;
                while left > 0 {
                    let want = self.buf.len().min(left as usize);
                    let n = content.read(&mut self.buf[..want]).ctx(|| "read layer".to_string())?;
                    if n == 0 {
                        return Err(Error::invalid("layer is truncated"));
                    }
                    f.write_all(&self.buf[..n]).ctx_path("write", &p)?;
                    left -= n as u64;
                }
            }
            Kind::Symlink => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&e.link), &p).ctx_path("symlink", &p)?;
            }
            Kind::HardLink => {
                let target = normalize(&e.link)
                    .map_err(|_| Error::invalid(format!("hard link target {:?} escapes the layer root", show(&e.link))))?;
                self.parents(&target, false).map_err(|err| err.context(format!("hard link target {:?}", show(&e.link))))?;
                let t = self.path(&target);
                match fs::symlink_metadata(&t) {
                    Ok(m) if !m.is_dir() => {}
                    Ok(_) => return Err(Error::invalid(format!("hard link to directory {:?}", show(&e.link)))),
                    Err(_) => return Err(Error::invalid(format!("hard link target {:?} is not in the layer", show(&e.link)))),
                }
                // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never what it points to.
                return fs::hard_link(&t, &p).ctx_path("hard link", &p);
            }
            Kind::Fifo => mknod(&p, libc::S_IFIFO, 0o600, 0)?,
            Kind::Char | Kind::Block => return Ok(()),
        }
        apply_meta(&p, e)
    }

    fn finish(&mut self) -> Result<()> {
        // Directory times last and deepest first: creating children would change them again.
        while let Some(d) = self.dirs.pop() {
            // Still the directory we made? (`clear` drops replaced ones; this is the backstop.)
            if fs::symlink_metadata(&d.path).is_ok_and(|m| m.is_dir()) {
                apply_meta(&d.path, &d.entry)?;
            }
        }
        Ok(())
    }
}

fn mknod(p: &Path, kind: libc::mode_t, mode: libc::mode_t, dev: libc::dev_t) -> Result<()> {
    let c = cstring(p)?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod reads it only during the call.
    if unsafe { libc::mknod(c.as_ptr(), kind | mode, dev) } != 0 {
        return Err(Error::io_at("mknod", p, io::Error::last_os_error()));
    }
    Ok(())
}

fn set_xattr(p: &Path, name: &[u8], value: &[u8]) -> Result<()> {
    let c = cstring(p)?;
    let n = CString::new(name).map_err(|_| Error::invalid("xattr name holds a NUL byte"))?;
    // SAFETY: both strings are NUL-terminated and `value` is valid for `value.len()` bytes.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // A file system without xattr support loses the attribute, as `tar -x` does; a full disk
        // is still an error.
        if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
            return Err(Error::io_at("set xattr on", p, e));
        }
    }
    Ok(())
}

/// Owner, mode, xattrs and mtime, in that order: chown clears set-id bits, so mode comes after it.
fn apply_meta(p: &Path, e: &Entry) -> Result<()> {
    let uid = u32::try_from(e.uid).map_err(|_| Error::invalid(format!("uid {} out of range", e.uid)))?;
    let gid = u32::try_from(e.gid).map_err(|_| Error::invalid(format!("gid {} out of range", e.gid)))?;
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).ctx_path("chown", p)?;
    if e.kind != Kind::Symlink {
        fs::set_permissions(p, fs::Permissions::from_mode(e.mode)).ctx_path("chmod", p)?;
    }
    for (k, v) in &e.xattrs {
        // overlayfs' own attributes would let an image forge whiteouts and redirects.
        if !k.starts_with(b"trusted.overlay.") {
            set_xattr(p, k, v)?;
        }
    }
    let c = cstring(p)?;
    let t = libc::timespec { tv_sec: e.mtime.max(0) as _, tv_nsec: 0 };
    let times = [t, t];
    // SAFETY: `c` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(Error::io_at("set times of", p, io::Error::last_os_error()));
    }
    Ok(())
}

/// Writes the layer's original tar stream to `out` and checks it against `diff_id`.
pub fn write_tar(dir: &Path, diff_id: &Digest, out: &mut dyn Write) -> Result<u64> {
    let moves: Vec<Move> = match fs::read(dir.join(MOVES)) {
        Ok(d) => postcard::from_bytes(&d).map_err(|e| Error::invalid(format!("{}: {e}", dir.join(MOVES).display())))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io_at("read", &dir.join(MOVES), e)),
    };
    let split = dir.join(SPLIT);
    let f = File::open(&split).ctx_path("open", &split)?;
    // Boxed as `compress::decoder` boxes its source: one copy of the decoder in the binary.
    let src: Box<dyn io::BufRead> = Box::new(BufReader::new(f));
    let mut skel = crate::gzip::GzDecoder::new(src);
    let mut w = HashWriter::new(out);
    let mut buf = vec![0u8; BUF];
    let bad = || Error::invalid(format!("{} is corrupt", split.display()));
    loop {
        let mut tag = [0u8; 1];
        skel.read_exact(&mut tag).map_err(|_| bad())?;
        match tag[0] {
            0 => break,
            1 => {
                let mut len = [0u8; 4];
                skel.read_exact(&mut len).map_err(|_| bad())?;
                let n =
                    io::copy(&mut (&mut skel).take(u64::from(u32::from_le_bytes(len))), &mut w).ctx(|| format!("write layer {diff_id}"))?;
                if n != u64::from(u32::from_le_bytes(len)) {
                    return Err(bad());
                }
            }
            2 => {
                let mut h = [0u8; 14];
                skel.read_exact(&mut h).map_err(|_| bad())?;
                let size = u64::from_le_bytes(h[0..8].try_into().map_err(|_| bad())?);
                let seq = u32::from_le_bytes(h[8..12].try_into().map_err(|_| bad())?);
                let mut path = vec![0u8; u16::from_le_bytes([h[12], h[13]]) as usize];
                skel.read_exact(&mut path).map_err(|_| bad())?;
                let loc = locate(dir, &moves, seq, &path);
                let mut f = File::open(&loc).ctx(|| format!("layer {diff_id}: open {}", loc.display()))?;
                let mut left = size;
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    let n = f.read(&mut buf[..want]).ctx_path("read", &loc)?;
                    if n == 0 {
                        return Err(Error::invalid(format!("layer {diff_id}: {} changed on disk", loc.display())));
                    }
                    w.write_all(&buf[..n]).ctx(|| format!("write layer {diff_id}"))?;
                    left -= n as u64;
                }
            }
            _ => return Err(bad()),
        }
    }
    let n = w.hasher.count();
    let got = w.hasher.finish();
    if &got != diff_id {
        return Err(Error::invalid(format!("layer {diff_id} no longer matches its digest on disk (got {got}): the store is damaged")));
    }
    Ok(n)
}

fn locate(dir: &Path, moves: &[Move], seq: u32, path: &[u8]) -> PathBuf {
    for m in moves.iter().filter(|m| m.seq > seq) {
        if path == m.path.as_slice() {
            return dir.join(SIDE).join(m.side.to_string());
        }
        if path.starts_with(&m.path) && path.get(m.path.len()) == Some(&b'/') {
            return dir.join(SIDE).join(m.side.to_string()).join(std::ffi::OsStr::from_bytes(&path[m.path.len() + 1..]));
        }
    }
    dir.join(ROOT).join(std::ffi::OsStr::from_bytes(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn header(name: &str, typ: u8, mode: u32, uid: u32, link: &str) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
        h[108..115].copy_from_slice(format!("{uid:07o}").as_bytes());
        h[116..123].copy_from_slice(format!("{uid:07o}").as_bytes());
        h[124..135].copy_from_slice(b"00000000000");
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = typ;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    /// Seen while writing fuzz/archive_scan (its sentinel check catches it): a directory replaced by
    /// a symlink kept its metadata queued under the old path, and `finish` then chowned and
    /// chmodded whatever the symlink pointed at.
    #[test]
    fn dir_replaced_by_symlink_does_not_touch_its_target() {
        let base = std::env::temp_dir().join(format!("berth-layer-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let outside = base.join("outside");
        fs::create_dir_all(outside.join("victim")).unwrap();
        fs::set_permissions(outside.join("victim"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
        let meta = |p: &Path| fs::metadata(p).map(|m| (m.mode(), m.uid(), m.gid())).unwrap();
        let before = (meta(&outside), meta(&outside.join("victim")));
        let target = outside.to_str().unwrap();
        let mut tar = Vec::new();
        tar.extend(header("a/", b'5', 0o700, 0, ""));
        tar.extend(header("a/victim/", b'5', 0o4777, 1234, ""));
        tar.extend(header("a", b'2', 0o777, 0, target));
        tar.extend([0u8; 1024]);
        let dest = base.join("layer");
        unpack(&tar[..], &dest).unwrap();
        assert_eq!((meta(&outside), meta(&outside.join("victim"))), before);
        assert!(fs::symlink_metadata(dest.join(ROOT).join("a")).unwrap().file_type().is_symlink());
        fs::remove_dir_all(&base).unwrap();
    }
}
