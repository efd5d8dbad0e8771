//! The merged view of an image's layers (what overlayfs would show) and `export` of it as one
//! flat tar. Whiteouts (0:0 character devices) hide lower entries; opaque directories hide
//! everything below them in lower layers.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use crate::error::Result;
use crate::image::layer::ROOT;
use crate::image::store::Store;
use crate::image::tarwrite::{walk, TarOut};
use crate::lock::StoreLock;

fn prefixes(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.iter().enumerate().filter(|(_, b)| **b == b'/').map(move |(i, _)| &rel[..i])
}

fn opaque(p: &std::path::Path) -> bool {
    let mut buf = [0u8; 4];
    let Ok(c) = crate::fsutil::cstring(p) else { return false };
    // SAFETY: `c` is NUL-terminated and `buf` is writable for its full length.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n == 1 && buf[0] == b'y'
}

/// Entries visible through `layer_roots` (bottom first), by path.
pub fn merged(layer_roots: &[PathBuf]) -> Result<BTreeMap<Vec<u8>, (PathBuf, std::fs::Metadata)>> {
    let mut visible: BTreeMap<Vec<u8>, (PathBuf, std::fs::Metadata)> = BTreeMap::new();
    let mut hidden: HashSet<Vec<u8>> = HashSet::new();
    let mut opaque_dirs: HashSet<Vec<u8>> = HashSet::new();
    for root in layer_roots.iter().rev() {
        let (mut new_hidden, mut new_opaque) = (Vec::new(), Vec::new());
        // A sorted walk visits parents first, so a skipped directory's children are skipped by
        // the same prefix checks.
        let mut blocked: Vec<Vec<u8>> = Vec::new();
        for (rel, src, m) in walk(root)? {
            let under = |set: &HashSet<Vec<u8>>| prefixes(&rel).any(|p| set.contains(p));
            if hidden.contains(&rel)
                || under(&hidden)
                || under(&opaque_dirs)
                || blocked.iter().any(|b| rel.starts_with(b) && rel.get(b.len()) == Some(&b'/'))
            {
                continue;
            }
            if m.file_type().is_char_device() && m.rdev() == 0 {
                new_hidden.push(rel);
                continue;
            }
            match visible.get(&rel) {
                Some((_, upper)) => {
                    if !(upper.is_dir() && m.is_dir()) {
                        blocked.push(rel);
                    }
                }
                None => {
                    if m.is_dir() && opaque(&src) {
                        new_opaque.push(rel.clone());
                    }
                    visible.insert(rel, (src, m));
                }
            }
        }
        hidden.extend(new_hidden);
        opaque_dirs.extend(new_opaque);
    }
    Ok(visible)
}

fn write_merged(roots: &[PathBuf], out: &mut dyn Write) -> Result<()> {
    let mut w = TarOut::new(std::io::BufWriter::new(out));
    for (rel, (src, m)) in merged(roots)? {
        w.path(&rel, &src, &m)?;
    }
    w.finish()?.flush().map_err(|e| crate::Error::io("write archive", e))
}

impl Store {
    /// Writes the image's flattened file system as a tar.
    pub fn export_image(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        let _lock = StoreLock::shared(self.root())?;
        let db = self.db()?;
        let (img, _) = Store::find(&db, name)?;
        let roots: Vec<PathBuf> = img.layers.iter().map(|d| self.layer_dir(d).join(ROOT)).collect();
        write_merged(&roots, out)
    }

    /// `docker export CONTAINER`: the container's file system as it sees it (its image's layers
    /// with its own changes on top, whiteouts applied) as one tar. `container_dir` holds the
    /// overlay upper dir, or, with the copy driver, the full `rootfs` copy. Volumes and other
    /// mounts are not part of it, as in Docker.
    pub fn export_container(
        &self,
        layers: &[crate::digest::Digest],
        container_dir: &std::path::Path,
        copy: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let _lock = StoreLock::shared(self.root())?;
        let roots: Vec<PathBuf> = if copy {
            vec![container_dir.join("rootfs")]
        } else {
            layers.iter().map(|d| self.layer_dir(d).join(ROOT)).chain(std::iter::once(container_dir.join("upper"))).collect()
        };
        write_merged(&roots, out)
    }
}
