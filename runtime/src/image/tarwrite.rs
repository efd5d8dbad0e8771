//! Writing tar archives: blobs of known size (`save`) and file-system trees (`export`, `import`).

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

const ZEROS: [u8; 1024] = [0; 1024];

/// An archive being written to `w`, with hard links kept as links.
pub struct TarOut<W: Write> {
    b: tar::Builder<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
}

fn werr(e: io::Error) -> Error {
    Error::io("write archive", e)
}

impl<W: Write> TarOut<W> {
    pub fn new(w: W) -> Self {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Complete);
        TarOut { b, links: HashMap::new() }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    pub fn dir(&mut self, name: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.b.append_data(&mut h, name, io::empty()).map_err(werr)
    }

    pub fn bytes(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        self.b.append_data(&mut h, name, data).map_err(werr)
    }

    /// A regular file of `size` bytes whose content `fill` writes; it must write exactly that.
    pub fn stream(&mut self, name: &str, size: u64, fill: impl FnOnce(&mut dyn Write) -> Result<u64>) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        h.set_path(name).map_err(werr)?;
        h.set_cksum();
        let w = self.b.get_mut();
        w.write_all(h.as_bytes()).map_err(werr)?;
        let n = fill(w)?;
        if n != size {
            return Err(Error::invalid(format!("{name}: wrote {n} bytes, expected {size}")));
        }
        let pad = ((512 - size % 512) % 512) as usize;
        w.write_all(&ZEROS[..pad]).map_err(werr)
    }

    /// One file-system object at archive path `rel` (no leading `/`).
    pub fn path(&mut self, rel: &[u8], src: &Path, m: &Metadata) -> Result<()> {
        self.path_as(rel, src, m, None, None)
    }

    /// As `path`, with the owner and permission bits replaced (COPY's `--chown`, `--chmod`).
    pub fn path_as(&mut self, rel: &[u8], src: &Path, m: &Metadata, owner: Option<(u64, u64)>, mode: Option<u32>) -> Result<()> {
        let name = Path::new(std::ffi::OsStr::from_bytes(rel));
        let ft = m.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(m, tar::HeaderMode::Complete);
        if let Some((u, g)) = owner {
            h.set_uid(u);
            h.set_gid(g);
        }
        if let Some(mode) = mode.filter(|_| !ft.is_symlink()) {
            h.set_mode(mode);
        }
        let ctx = || format!("archive {}", src.display());
        if ft.is_file() && m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                let first = Path::new(std::ffi::OsStr::from_bytes(first)).to_path_buf();
                return self.b.append_link(&mut h, name, first).ctx(ctx);
            }
            self.links.insert((m.dev(), m.ino()), rel.to_vec());
        }
        if ft.is_symlink() {
            let target = fs::read_link(src).ctx(ctx)?;
            h.set_size(0);
            self.b.append_link(&mut h, name, target).ctx(ctx)
        } else if ft.is_file() {
            let f = File::open(src).ctx(ctx)?;
            self.b.append_data(&mut h, name, f).ctx(ctx)
        } else {
            h.set_size(0);
            self.b.append_data(&mut h, name, io::empty()).ctx(ctx)
        }
    }

    /// A PAX extended header (`SCHILY.xattr.NAME` records) for the entry written next: how
    /// Docker and Go's archive/tar carry file capabilities and other extended attributes.
    pub fn xattrs(&mut self, rel: &[u8], attrs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        if attrs.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        for (k, v) in attrs {
            let rest = [&b" SCHILY.xattr."[..], k, b"=", v, b"\n"].concat();
            // The record's length counts its own digits.
            let mut len = rest.len() + 1;
            while len.to_string().len() + rest.len() != len {
                len = len.to_string().len() + rest.len();
            }
            body.extend_from_slice(len.to_string().as_bytes());
            body.extend_from_slice(&rest);
        }
        let mut h = tar::Header::new_ustar();
        let base = rel.rsplit(|b| *b == b'/').next().unwrap_or(rel);
        let mut name = b"PaxHeaders.0/".to_vec();
        name.extend_from_slice(&base[..base.len().min(80)]);
        h.set_path(Path::new(std::ffi::OsStr::from_bytes(&name))).map_err(werr)?;
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        self.b.append(&h, &body[..]).map_err(werr)
    }

    /// A raw entry whose header the caller filled (whiteouts, opaque markers).
    pub fn raw_entry(&mut self, mut h: tar::Header, name: &[u8], data: &[u8]) -> Result<()> {
        let name = Path::new(std::ffi::OsStr::from_bytes(name));
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, name, data).map_err(werr)
    }

    pub fn finish(self) -> Result<W> {
        self.b.into_inner().map_err(werr)
    }
}

/// Every entry under `dir`, sorted, parents before children, as (relative path, metadata).
pub fn walk(dir: &Path) -> Result<Vec<(Vec<u8>, std::path::PathBuf, Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![(Vec::new(), dir.to_path_buf())];
    while let Some((rel, p)) = stack.pop() {
        let mut names: Vec<_> =
            fs::read_dir(&p).ctx_path("read", &p)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>().ctx_path("read", &p)?;
        names.sort();
        let mut subdirs = Vec::new();
        for n in names {
            let child = p.join(&n);
            let m = fs::symlink_metadata(&child).ctx_path("stat", &child)?;
            let r = if rel.is_empty() { n.as_bytes().to_vec() } else { [&rel[..], b"/", n.as_bytes()].concat() };
            if m.is_dir() {
                subdirs.push((r.clone(), child.clone()));
            }
            out.push((r, child, m));
        }
        stack.extend(subdirs.into_iter().rev());
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
