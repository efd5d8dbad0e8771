//! `images.db`: every image and layer record in one small postcard file, replaced atomically and
//! checked by a trailing sha256, so a torn or damaged file is detected instead of misread.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::{sha256, Digest};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::atomic_write;

const MAGIC: &[u8; 8] = b"BERTHDB1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config's digest: Docker's image ID.
    pub id: Digest,
    /// Full `repo:tag` names.
    pub tags: Vec<String>,
    /// Full `repo@sha256:...` names (the manifest digest when the archive had one).
    pub digests: Vec<String>,
    pub layers: Vec<Digest>,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    /// The config's `created`, as written there (RFC 3339).
    pub created: Option<String>,
    /// Sum of the layers' uncompressed sizes.
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Db {
    pub images: Vec<ImageRecord>,
    pub layers: Vec<LayerRecord>,
}

impl Db {
    pub fn read(path: &Path) -> Result<Db> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Db::default()),
            Err(e) => return Err(Error::io_at("read", path, e)),
        };
        let damaged = || Error::invalid(format!("{} is damaged (checksum mismatch or truncated)", path.display()));
        if data.len() < MAGIC.len() + 32 || &data[..8] != MAGIC {
            return Err(damaged());
        }
        let (body, sum) = data[8..].split_at(data.len() - 8 - 32);
        if sha256(body) != sum {
            return Err(damaged());
        }
        postcard::from_bytes(body).map_err(|_| damaged())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let body = postcard::to_allocvec(self).map_err(|e| Error::invalid(format!("encode image records: {e}")))?;
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&body);
        out.extend_from_slice(&sha256(&body));
        atomic_write(path, &out).map_err(|e| e.context("save image records"))
    }

    pub fn layer(&self, diff_id: &Digest) -> Option<&LayerRecord> {
        self.layers.iter().find(|l| &l.diff_id == diff_id)
    }

    /// Layers no image refers to any more.
    pub fn unused_layers(&self) -> Vec<Digest> {
        self.layers.iter().filter(|l| !self.images.iter().any(|i| i.layers.contains(&l.diff_id))).map(|l| l.diff_id.clone()).collect()
    }
}

/// Reads a stored blob and checks it still matches its name.
pub fn read_blob(root: &Path, d: &Digest) -> Result<Vec<u8>> {
    let p = root.join("blobs/sha256").join(d.hex());
    let data = std::fs::read(&p).ctx(|| format!("read blob {d}"))?;
    if &Digest::of(&data) != d {
        return Err(Error::invalid(format!("blob {d} is damaged: content does not match its digest")));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detected() {
        let dir = std::env::temp_dir().join(format!("berth-db-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("images.db");
        let d = Digest::of(b"x");
        let db = Db { images: vec![], layers: vec![LayerRecord { diff_id: d.clone(), size: 5 }] };
        db.write(&p).unwrap();
        assert_eq!(Db::read(&p).unwrap().layers[0].diff_id, d);
        let mut raw = std::fs::read(&p).unwrap();
        let n = raw.len();
        raw[n / 2] ^= 1;
        std::fs::write(&p, &raw).unwrap();
        assert!(Db::read(&p).unwrap_err().to_string().contains("damaged"));
        std::fs::write(&p, &raw[..n - 3]).unwrap();
        assert!(Db::read(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
