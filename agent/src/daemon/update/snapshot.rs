//! Revision-bound volumes (`x-berth: {revision-bound: true}` on a compose volume): before the
//! services of a new revision start, the volume's data is copied to `<volume>/snap-SEQ` (SEQ: the
//! revision that last wrote it); a rollback to that revision puts the copy back, so a database the
//! new version migrated is the old one again. Snapshots of revisions no longer kept (`--keep`) go
//! at commit.
//!
//! The copy clones each file (`FICLONE`: shared extents, no data copied, on btrfs, XFS with
//! reflink, bcachefs) and falls back to copying the bytes where the file system cannot (ext4,
//! f2fs, tmpfs). Directories, modes, owners and symlinks are kept; other special files (FIFOs,
//! sockets) are left out. Every step is safe to take again after a crash: a snapshot is complete
//! once renamed from `snap-SEQ.tmp`; a restore swaps whole directories by rename.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use berth_runtime::fsutil::remove_all;
use berth_runtime::{IoContext, Result};

/// How many files a copy cloned and copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub cloned: u64,
    pub copied: u64,
}

fn volume_dir(root: &Path, name: &str) -> PathBuf {
    berth_runtime::volume::Volumes::open(root).path(name)
}

pub fn snapshot_dir(root: &Path, name: &str, seq: u64) -> PathBuf {
    volume_dir(root, name).join(format!("snap-{seq}"))
}

/// One file: cloned if the file system shares extents, else copied.
fn copy_file(src: &Path, dst: &Path, n: &mut Copied) -> Result<()> {
    let mut from = fs::File::open(src).ctx_path("open", src)?;
    let mut to = fs::OpenOptions::new().write(true).create_new(true).open(dst).ctx_path("create", dst)?;
    // SAFETY: both descriptors are open for as long as the call; FICLONE reads only them.
    if unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) } == 0 {
        n.cloned += 1;
        return Ok(());
    }
    // File to File, as `berth cp` copies: one io::copy in the firmware rather than two
    io::copy(&mut from, &mut to).ctx_paths("copy", src, dst)?;
    n.copied += 1;
    Ok(())
}

/// Copies the tree `src` into the new directory `dst`.
pub fn copy_tree(src: &Path, dst: &Path, n: &mut Copied) -> Result<()> {
    let m = fs::symlink_metadata(src).ctx_path("stat", src)?;
    fs::create_dir(dst).ctx_path("create", dst)?;
    for e in fs::read_dir(src).ctx_path("read", src)? {
        let e = e.ctx_path("read", src)?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let em = fs::symlink_metadata(&from).ctx_path("stat", &from)?;
        let ft = em.file_type();
        if ft.is_dir() {
            copy_tree(&from, &to, n)?;
            continue;
        }
        if ft.is_symlink() {
            symlink(fs::read_link(&from).ctx_path("read link", &from)?, &to).ctx_path("symlink", &to)?;
        } else if ft.is_file() {
            copy_file(&from, &to, n)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(em.mode() & 0o7777)).ctx_path("chmod", &to)?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(em.uid()), Some(em.gid())).ctx_path("chown", &to)?;
    }
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid())).ctx_path("chown", dst)?;
    fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777)).ctx_path("chmod", dst)?;
    Ok(())
}

/// The data of volume `name` as revision `seq` left it, kept unless already taken.
pub fn take(root: &Path, name: &str, seq: u64) -> Result<Option<Copied>> {
    let dir = snapshot_dir(root, name, seq);
    if dir.exists() {
        return Ok(None);
    }
    let data = berth_runtime::volume::Volumes::open(root).data_dir(name);
    let tmp = dir.with_extension("tmp");
    let _ = remove_all(&tmp);
    let mut n = Copied::default();
    copy_tree(&data, &tmp, &mut n)?;
    fs::rename(&tmp, &dir).ctx_paths("rename", &tmp, &dir)?;
    Ok(Some(n))
}

/// Volume `name`'s data back to snapshot `seq` (which then goes: the data is that revision's
/// again). Nothing to do without the snapshot (a restore already done, or none taken).
pub fn restore(root: &Path, name: &str, seq: u64) -> Result<bool> {
    let data = berth_runtime::volume::Volumes::open(root).data_dir(name);
    let incoming = data.with_extension("restore");
    let outgoing = data.with_extension("replaced");
    // A restore cut between its two renames: finish it.
    if !data.exists() && incoming.exists() {
        fs::rename(&incoming, &data).ctx_paths("rename", &incoming, &data)?;
    }
    let snap = snapshot_dir(root, name, seq);
    if !snap.exists() {
        let _ = remove_all(&outgoing);
        return Ok(false);
    }
    let _ = remove_all(&incoming);
    copy_tree(&snap, &incoming, &mut Copied::default())?;
    let _ = remove_all(&outgoing);
    fs::rename(&data, &outgoing).ctx_paths("rename", &data, &outgoing)?;
    fs::rename(&incoming, &data).ctx_paths("rename", &incoming, &data)?;
    remove_all(&snap)?;
    let _ = remove_all(&outgoing);
    Ok(true)
}

/// Snapshots of volume `name` other than those of `keep` (revisions still kept) go.
pub fn prune(root: &Path, name: &str, keep: &[u64]) {
    let Ok(rd) = fs::read_dir(volume_dir(root, name)) else { return };
    for e in rd.flatten() {
        let file = e.file_name();
        let Some(seq) = file.to_str().and_then(|f| f.strip_prefix("snap-")).and_then(|s| s.trim_end_matches(".tmp").parse::<u64>().ok())
        else {
            continue;
        };
        if !keep.contains(&seq) || file.to_str().is_some_and(|f| f.ends_with(".tmp")) {
            let _ = remove_all(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_restored_and_pruned() {
        let root = std::env::temp_dir().join(format!("berth-snap-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let vols = berth_runtime::volume::Volumes::open(&root);
        vols.create(Some("db"), Default::default(), Default::default(), false).unwrap();
        let data = vols.data_dir("db");
        fs::create_dir(data.join("sub")).unwrap();
        fs::write(data.join("sub/rows"), "v1 rows").unwrap();
        symlink("sub/rows", data.join("link")).unwrap();
        let n = take(&root, "db", 4).unwrap().unwrap();
        assert_eq!(n.cloned + n.copied, 1);
        assert!(take(&root, "db", 4).unwrap().is_none(), "taken once");
        fs::write(data.join("sub/rows"), "migrated").unwrap();
        fs::write(data.join("new"), "x").unwrap();
        assert!(restore(&root, "db", 4).unwrap());
        assert_eq!(fs::read_to_string(data.join("sub/rows")).unwrap(), "v1 rows");
        assert_eq!(fs::read_to_string(data.join("link")).unwrap(), "v1 rows");
        assert!(!data.join("new").exists());
        assert!(!restore(&root, "db", 4).unwrap(), "done once");
        take(&root, "db", 5).unwrap();
        take(&root, "db", 6).unwrap();
        prune(&root, "db", &[6]);
        assert!(!snapshot_dir(&root, "db", 5).exists() && snapshot_dir(&root, "db", 6).exists());
        fs::remove_dir_all(&root).unwrap();
    }
}
