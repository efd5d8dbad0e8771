//! Receiving an update's tarball: chunks go straight to their place in `<dir>/data` (memory stays
//! bounded whatever the image's size), with each chunk's digest remembered in `<dir>/have`. That
//! checkpoint is written every few megabytes, after the data it describes is on the disk, so after
//! a power cut or `kill -9` the agent re-checks what it has and asks only for what it lacks.
//!
//! One hash pass: the whole tarball's sha256 is computed as the chunks arrive (in order; one that
//! comes early is read back when the gap before it is filled), and the chunks' own digests are
//! checked only on resume and when the whole digest does not match (to find the bad ones). The
//! disk writes behind the receiver (writeback is started every megabyte), so a checkpoint's
//! fsync finds little left to do.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use berth_runtime::digest::{to_hex as hex, Hasher};
use berth_runtime::fsutil::{atomic_write, replace_synced, start_writeback};
use berth_runtime::{Error, IoContext, Result};

use berth_proto::wire::{self, Chunk, Envelope, Manifest, Progress};

/// Checkpoint after this many new chunks or this long, whichever comes first.
const CHECKPOINT_CHUNKS: u32 = 64;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
const NO_DIGEST: [u8; 32] = [0; 32];
/// Written bytes after which the disk is asked to start writing them.
const WRITEBACK_BYTES: usize = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    id: String,
    /// Per chunk: its sha256, or zeros when not (durably) received.
    digests: Vec<[u8; 32]>,
}

pub struct Transfer {
    pub manifest: Manifest,
    pub envelope: Envelope,
    pub dir: PathBuf,
    file: File,
    digests: Vec<[u8; 32]>,
    have: u32,
    /// Highest index seen + 1: gaps below it are reported as missing.
    seen: u32,
    unsaved: u32,
    saved_at: Instant,
    /// Chunks dropped as malformed or not matching, since the start (for the log).
    pub rejected: u32,
    pub duplicates: u32,
    /// `have` when progress was last published from the receive path.
    pub reported: u32,
    /// The sha256 of chunks `0..hashed`, in order.
    hasher: Hasher,
    hashed: u32,
    /// Bytes written since writeback was last started.
    unflushed: usize,
    /// One chunk, to read back a chunk that arrived before the ones below it were hashed.
    buf: Vec<u8>,
}

pub fn data_path(dir: &Path) -> PathBuf {
    dir.join("data")
}

impl Transfer {
    /// Starts receiving `m` into `dir` (created), or resumes what an earlier agent left there:
    /// every chunk the checkpoint lists is read back and re-hashed, and a damaged one is dropped.
    pub fn open(dir: &Path, m: Manifest, envelope: Envelope) -> Result<Transfer> {
        fs::create_dir_all(dir).ctx_path("create", dir)?;
        let env_path = dir.join("envelope");
        if !env_path.exists() {
            let text = serde_json::to_vec(&envelope).map_err(|e| Error::invalid(format!("encode envelope: {e}")))?;
            atomic_write(&env_path, &text)?;
        }
        let path = data_path(dir);
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).ctx_path("open", &path)?;
        let size = m.image.as_ref().map_or(0, |i| i.size);
        file.set_len(size).ctx_path("size", &path)?;
        let count = m.chunks() as usize;
        let mut t = Transfer {
            manifest: m,
            envelope,
            dir: dir.to_path_buf(),
            file,
            digests: vec![NO_DIGEST; count],
            have: 0,
            seen: 0,
            unsaved: 0,
            saved_at: Instant::now(),
            rejected: 0,
            duplicates: 0,
            reported: 0,
            hasher: Hasher::new(),
            hashed: 0,
            unflushed: 0,
            buf: Vec::new(),
        };
        t.resume()?;
        Ok(t)
    }

    fn resume(&mut self) -> Result<()> {
        let Ok(bytes) = fs::read(self.dir.join("have")) else { return Ok(()) };
        let Ok(cp) = postcard::from_bytes::<Checkpoint>(&bytes) else {
            crate::warn!("update {}: damaged checkpoint, receiving again from the start", self.manifest.id);
            return Ok(());
        };
        if cp.id != self.manifest.id || cp.digests.len() != self.digests.len() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut damaged = 0;
        for (i, d) in cp.digests.iter().enumerate() {
            if *d == NO_DIGEST {
                continue;
            }
            buf.resize(self.manifest.chunk_len(i as u32), 0);
            let ok = self.read_chunk(i as u32, &mut buf).is_ok() && wire::sha256(&buf) == *d;
            if ok {
                self.digests[i] = *d;
                self.have += 1;
                self.seen = self.seen.max(i as u32 + 1);
            } else {
                damaged += 1;
            }
        }
        if damaged > 0 {
            crate::warn!("update {}: {damaged} chunks on disk are damaged and will be fetched again", self.manifest.id);
        }
        crate::info!("update {}: resuming with {} of {} chunks", self.manifest.id, self.have, self.digests.len());
        self.hash_ahead()
    }

    /// Feeds the whole-tarball hash with every chunk held in order after those already hashed,
    /// reading them back from the file (the page cache, usually).
    fn hash_ahead(&mut self) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut res = Ok(());
        while self.hashed < self.total() && self.digests[self.hashed as usize] != NO_DIGEST {
            buf.resize(self.manifest.chunk_len(self.hashed), 0);
            if let Err(e) = self.read_chunk(self.hashed, &mut buf) {
                res = Err(Error::io(format!("read chunk {} of {}", self.hashed, data_path(&self.dir).display()), e));
                break;
            }
            self.hasher.update(&buf);
            self.hashed += 1;
        }
        self.buf = buf;
        res
    }

    /// Starts the whole-tarball hash again (chunks were dropped).
    fn rehash(&mut self) {
        self.hasher = Hasher::new();
        self.hashed = 0;
    }

    fn read_chunk(&self, index: u32, buf: &mut [u8]) -> std::io::Result<()> {
        let off = u64::from(index) * u64::from(self.chunk_size());
        self.file.read_exact_at(buf, off)
    }

    fn chunk_size(&self) -> u32 {
        self.manifest.image.as_ref().map_or(1, |i| i.chunk_size)
    }

    pub fn total(&self) -> u32 {
        self.digests.len() as u32
    }

    pub fn have(&self) -> u32 {
        self.have
    }

    pub fn complete(&self) -> bool {
        self.have == self.total()
    }

    /// Takes one chunk message. Returns whether it was new; a bad chunk is an error (dropped).
    pub fn accept(&mut self, payload: &[u8]) -> Result<bool> {
        let c = Chunk::decode(payload).and_then(|c| c.fits(&self.manifest).map(|_| c));
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                self.rejected += 1;
                return Err(e);
            }
        };
        let i = c.index as usize;
        if self.digests[i] != NO_DIGEST {
            self.duplicates += 1;
            return Ok(false);
        }
        let off = u64::from(c.index) * u64::from(self.chunk_size());
        self.file.write_all_at(c.data, off).ctx(|| format!("write chunk {} to {}", c.index, data_path(&self.dir).display()))?;
        self.digests[i] = c.sha256;
        self.have += 1;
        self.seen = self.seen.max(c.index + 1);
        self.unsaved += 1;
        if c.index == self.hashed {
            self.hasher.update(c.data);
            self.hashed += 1;
            self.hash_ahead()?;
        }
        self.unflushed += c.data.len();
        if self.unflushed >= WRITEBACK_BYTES {
            start_writeback(&self.file);
            self.unflushed = 0;
        }
        if self.unsaved >= CHECKPOINT_CHUNKS || self.saved_at.elapsed() >= CHECKPOINT_EVERY || self.complete() {
            self.checkpoint()?;
        }
        Ok(true)
    }

    /// Makes what was received durable: the data first, then the list that vouches for it.
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.unsaved == 0 {
            return Ok(());
        }
        self.file.sync_data().ctx_path("sync", &data_path(&self.dir))?;
        let cp = Checkpoint { id: self.manifest.id.clone(), digests: self.digests.clone() };
        let bytes = postcard::to_allocvec(&cp).map_err(|e| Error::invalid(format!("encode checkpoint: {e}")))?;
        // No directory fsync: a checkpoint lost in a power cut leaves the one before, which
        // vouches for less but is still true (chunks are written once, where they belong).
        replace_synced(&self.dir.join("have"), &bytes)?;
        self.unsaved = 0;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// Ranges missing below the highest chunk seen (or all of them, before any arrived, when
    /// `all` is set: a resumed transfer asks for everything it lacks).
    pub fn progress(&self, phase: &str, all: bool) -> Progress {
        let limit = if all { self.total() } else { self.seen };
        let mut missing = Vec::new();
        let mut i = 0;
        while i < limit && missing.len() < wire::MAX_RANGES {
            if self.digests[i as usize] == NO_DIGEST {
                let start = i;
                while i < limit && self.digests[i as usize] == NO_DIGEST {
                    i += 1;
                }
                missing.push((start, i - 1));
            }
            i += 1;
        }
        let next = self.digests.iter().position(|d| *d == NO_DIGEST).map_or(self.total(), |p| p as u32);
        Progress { id: self.manifest.id.clone(), have: self.have, total: self.total(), next, missing, phase: phase.to_string() }
    }

    /// Checks the whole tarball against the signed digest. On a mismatch, chunks whose bytes no
    /// longer match their own digest are dropped (fetched again); if none is, the sender sent a
    /// different file than it signed and the update fails.
    pub fn verify(&mut self) -> Result<bool> {
        self.checkpoint()?;
        let want = self.manifest.image.as_ref().map(|i| i.sha256.clone()).unwrap_or_default();
        self.hash_ahead()?;
        let got: [u8; 32] =
            if self.hashed == self.total() { self.hasher.clone().finish_bytes() } else { whole_sha256(&data_path(&self.dir))? };
        if hex(&got) == want {
            return Ok(true);
        }
        self.rehash();
        let mut buf = std::mem::take(&mut self.buf);
        let mut dropped = 0;
        for i in 0..self.total() {
            buf.resize(self.manifest.chunk_len(i), 0);
            let ok = self.read_chunk(i, &mut buf).is_ok() && wire::sha256(&buf) == self.digests[i as usize];
            if !ok {
                self.digests[i as usize] = NO_DIGEST;
                self.have -= 1;
                dropped += 1;
            }
        }
        self.buf = buf;
        if dropped == 0 {
            return Err(Error::invalid(format!("digest mismatch: the tarball's sha256 is {}, the manifest says {want}", hex(&got))));
        }
        crate::warn!("update {}: {dropped} chunks were damaged on disk; fetching them again", self.manifest.id);
        self.unsaved = 1;
        self.checkpoint()?;
        Ok(false)
    }
}

/// The sha256 of a whole file, read in 256 KiB pieces.
fn whole_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut h = Hasher::new();
    let mut f = File::open(path).ctx_path("open", path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).ctx_path("read", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::wire::{ImageRef, Kind};

    fn setup(data: &[u8], chunk: u32) -> (PathBuf, Manifest, Envelope) {
        let dir = std::env::temp_dir().join(format!("berth-transfer-{}-{}", std::process::id(), data.len()));
        let _ = fs::remove_dir_all(&dir);
        let m = Manifest {
            version: 1,
            id: "00112233445566778899aabbccddeeff".into(),
            seq: 1,
            kind: Kind::Deploy,
            created: 0,
            targets: vec![],
            groups: vec![],
            name: "app".into(),
            image: Some(ImageRef { size: data.len() as u64, sha256: hex(&wire::sha256(data)), chunk_size: chunk, topic: "t".into() }),
            pull: None,
            run: vec!["x".into()],
            health_window: 1,
            keep: 1,
            app: None,
        };
        (dir, m, Envelope { manifest: String::new(), sig: String::new() })
    }

    fn chunk(m: &Manifest, data: &[u8], i: u32) -> Vec<u8> {
        let cs = m.image.as_ref().unwrap().chunk_size as usize;
        let s = i as usize * cs;
        Chunk::encode(&m.id, i, m.chunks(), &data[s..(s + cs).min(data.len())])
    }

    #[test]
    fn out_of_order_duplicates_resume_and_damage() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let (dir, m, env) = setup(&data, 64);
        let mut t = Transfer::open(&dir, m.clone(), env.clone()).unwrap();
        assert_eq!(t.total(), 16);
        for i in [5, 3, 3, 0] {
            t.accept(&chunk(&m, &data, i)).unwrap();
        }
        assert_eq!(t.duplicates, 1);
        let p = t.progress("receiving", false);
        assert_eq!((p.have, p.next, p.missing.clone()), (3, 1, vec![(1, 2), (4, 4)]));
        assert_eq!(t.progress("receiving", true).missing, vec![(1, 2), (4, 4), (6, 15)]);
        // a chunk of the wrong size is refused and not counted
        let mut bad = chunk(&m, &data, 7);
        bad.pop();
        assert!(t.accept(&bad).is_err());
        assert_eq!(t.rejected, 1);
        t.checkpoint().unwrap();
        drop(t);
        // resumed: the same chunks, and a damaged one on disk is dropped
        let f = OpenOptions::new().write(true).open(data_path(&dir)).unwrap();
        f.write_all_at(b"X", 3 * 64).unwrap();
        let mut t = Transfer::open(&dir, m.clone(), env).unwrap();
        assert_eq!(t.progress("receiving", true).missing, vec![(1, 4), (6, 15)]);
        for i in 0..16 {
            let _ = t.accept(&chunk(&m, &data, i));
        }
        assert!(t.complete());
        assert!(t.verify().unwrap());
        assert_eq!(fs::read(data_path(&dir)).unwrap(), data);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_chunk_that_does_not_match_its_own_digest_is_found_by_the_whole_digest_and_fetched_again() {
        let data: Vec<u8> = (0..500u32).map(|i| (i * 13) as u8).collect();
        let (dir, m, env) = setup(&data, 100);
        let mut t = Transfer::open(&dir, m.clone(), env).unwrap();
        // chunk 2's bytes damaged on the way, its digest (the sender's) intact
        for i in [1, 0, 3, 4] {
            t.accept(&chunk(&m, &data, i)).unwrap();
        }
        let mut bad = chunk(&m, &data, 2);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(t.accept(&bad).unwrap());
        assert!(t.complete());
        assert!(!t.verify().unwrap(), "a damaged chunk passed the whole digest");
        assert_eq!(t.progress("receiving", true).missing, vec![(2, 2)]);
        t.accept(&chunk(&m, &data, 2)).unwrap();
        assert!(t.verify().unwrap());
        assert_eq!(fs::read(data_path(&dir)).unwrap(), data);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tarball_other_than_the_signed_one_fails() {
        let data = vec![1u8; 300];
        let (dir, mut m, env) = setup(&data, 100);
        m.image.as_mut().unwrap().sha256 = "0".repeat(64);
        let mut t = Transfer::open(&dir, m.clone(), env).unwrap();
        for i in 0..3 {
            t.accept(&chunk(&m, &data, i)).unwrap();
        }
        let e = t.verify().unwrap_err().to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
