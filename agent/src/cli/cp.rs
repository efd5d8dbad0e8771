//! `berth cp CONTAINER:SRC DEST` and `berth cp SRC CONTAINER:DEST`, as Docker's. Container
//! paths resolve inside the container's root whatever its symlinks say (absolute links would
//! otherwise lead to the host's files); writes replace an existing symlink instead of following
//! it. A running container is reached through /proc/<pid>/root (volumes and tmpfs included); a
//! stopped one has its overlay mounted in a private mount namespace of this process.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_runtime::container::record::{self, Record, Status};
use berth_runtime::container::rootfs::{mount, scoped_join};
use berth_runtime::{Error, IoContext};

use super::{op_err, CliError, Ctx};
use berth_proto::args::{opt, Cmd, Matches, Opt};

const CP_OPTS: &[Opt] = &[
    opt("archive", Some('a'), None, "Archive mode (copy all uid/gid information)"),
    opt("follow-link", Some('L'), None, "Always follow symbol link in SRC_PATH"),
];
pub const CP: Cmd = Cmd {
    path: "berth cp",
    usage: "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH\n        berth cp [OPTIONS] SRC_PATH CONTAINER:DEST_PATH",
    about: "Copy files/folders between a container and the local filesystem",
    opts: CP_OPTS,
    min_args: 2,
    max_args: Some(2),
    stop_at_positional: false,
    subcommands: &[],
};

/// `name:path` names a container path when `name` is a container (a local path with a colon in
/// it stays a local path).
fn split<'a>(arg: &'a str, recs: &'a [Record]) -> Option<(&'a Record, &'a str)> {
    let (name, path) = arg.split_once(':')?;
    if name.contains('/') {
        return None;
    }
    record::find(recs, name).ok().map(|r| (r, path))
}

/// `path` inside `root`: every directory on the way resolved inside the container, the last
/// component itself not followed (a symlink there is copied, or replaced, as a link), unless
/// `follow`.
fn container_path(root: &Path, path: &str, follow: bool) -> Result<PathBuf, CliError> {
    // `dir/` and `dir/.` name the directory itself: a link there is followed (inside the root).
    let follow = follow || path.ends_with('/') || path.ends_with("/.");
    let p = Path::new(path);
    match (follow, p.parent(), p.file_name()) {
        (false, Some(parent), Some(name)) => Ok(scoped_join(root, &parent.to_string_lossy())?.join(name)),
        _ => Ok(scoped_join(root, path)?),
    }
}

/// The container's root as this process can reach it.
fn container_root(ctx: &Ctx, r: &Record) -> Result<PathBuf, CliError> {
    if let Status::Running { pid, .. } = r.status {
        return Ok(PathBuf::from(format!("/proc/{pid}/root")));
    }
    let dir = record::dir(&ctx.root, &r.id);
    let rootfs = dir.join("rootfs");
    let copy = fs::read_to_string(ctx.root.join("storage-driver")).is_ok_and(|s| s.trim() == "copy");
    if !copy {
        // SAFETY: unshare only changes this (single-threaded) process's mount namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(Error::io("private mount namespace", io::Error::last_os_error()).into());
        }
        mount("none", Path::new("/"), "", libc::MS_REC | libc::MS_PRIVATE, "")?;
        // Relative lower dirs keep the option short; the user's relative paths need our own cwd back.
        let cwd = std::env::current_dir().ctx(|| "current directory".into())?;
        std::env::set_current_dir(ctx.root.join("layers")).ctx(|| "chdir layers".into())?;
        let lower: Vec<String> = r.layers.iter().rev().map(|d| format!("{}/root", d.hex())).collect();
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), dir.join("upper").display(), dir.join("work").display());
        let res = mount("overlay", &rootfs, "overlay", 0, &opts);
        std::env::set_current_dir(&cwd).ctx_path("chdir", &cwd)?;
        res?;
    }
    Ok(rootfs)
}

struct Copier {
    /// Owner of new files (into a container without -a: root).
    owner: Option<(u32, u32)>,
}

impl Copier {
    /// Makes room at `to`: a symlink (or a file where a directory goes) is removed, never followed.
    fn clear(&self, to: &Path, dir: bool) -> Result<(), CliError> {
        if let Ok(m) = fs::symlink_metadata(to) {
            if m.file_type().is_symlink() || (dir && !m.is_dir()) || (!dir && m.is_dir()) {
                berth_runtime::fsutil::remove_all(to)?;
            }
        }
        Ok(())
    }

    fn finish(&self, to: &Path, m: &fs::Metadata) -> Result<(), CliError> {
        let (uid, gid) = self.owner.unwrap_or((m.uid(), m.gid()));
        std::os::unix::fs::lchown(to, Some(uid), Some(gid)).ctx_path("chown", to)?;
        if !m.file_type().is_symlink() {
            fs::set_permissions(to, fs::Permissions::from_mode(m.mode() & 0o7777)).ctx_path("chmod", to)?;
        }
        Ok(())
    }

    fn copy(&self, from: &Path, to: &Path) -> Result<(), CliError> {
        let m = fs::symlink_metadata(from).ctx_path("stat", from)?;
        let ft = m.file_type();
        if ft.is_dir() {
            self.clear(to, true)?;
            if !to.exists() {
                fs::create_dir(to).ctx_path("create", to)?;
            }
            let mut names: Vec<_> = fs::read_dir(from).ctx_path("read", from)?.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for n in names {
                self.copy(&from.join(&n), &to.join(&n))?;
            }
        } else if ft.is_symlink() {
            self.clear(to, false)?;
            let _ = fs::remove_file(to);
            symlink(fs::read_link(from).ctx_path("read link", from)?, to).ctx_path("symlink", to)?;
        } else if ft.is_file() {
            self.clear(to, false)?;
            let mut src = fs::File::open(from).ctx_path("open", from)?;
            let mut dst = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(to)
                .ctx_path("create", to)?;
            io::copy(&mut src, &mut dst).ctx_paths("copy", from, to)?;
        } else {
            // Devices, FIFOs and sockets are not copied.
            return Ok(());
        }
        self.finish(to, &m)
    }
}

/// Docker's destination rule: into an existing directory under the source's name, else as named.
fn destination(dest: &Path, src: &Path, src_contents: bool) -> PathBuf {
    if dest.is_dir() && !src_contents {
        dest.join(src.file_name().unwrap_or_default())
    } else {
        dest.to_path_buf()
    }
}

pub fn cp(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (recs, _) = record::list(&ctx.root);
    let (a, b) = (&m.args()[0], &m.args()[1]);
    let contents = |p: &str| p.ends_with("/.");
    match (split(a, &recs), split(b, &recs)) {
        (Some(_), Some(_)) => Err(op_err("copying between containers is not supported")),
        (None, None) => Err(op_err("must specify at least one container source")),
        (Some((r, src)), None) => {
            let root = container_root(ctx, r)?;
            let from = container_path(&root, src, m.flag("follow-link"))?;
            if fs::symlink_metadata(&from).is_err() {
                return Err(op_err(format!("Could not find the file {src} in container {}", r.name)));
            }
            let to = destination(Path::new(b), &from, contents(src));
            let owner = if m.flag("archive") { None } else { Some((0, 0)) };
            Copier { owner }.copy(&from, &to)?;
            Ok(0)
        }
        (None, Some((r, dst))) => {
            let from = PathBuf::from(a);
            if fs::symlink_metadata(&from).is_err() {
                return Err(op_err(format!("could not find the file {a}")));
            }
            let root = container_root(ctx, r)?;
            let to = container_path(&root, dst, false)?;
            if !to.parent().is_some_and(Path::is_dir) {
                return Err(op_err(format!(
                    "no such directory in container {}: {}",
                    r.name,
                    Path::new(dst).parent().unwrap_or(Path::new("/")).display()
                )));
            }
            // An existing directory (not a link) receives the source under its own name.
            let to = if fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) { destination(&to, &from, contents(a)) } else { to };
            let owner = if m.flag("archive") { None } else { Some((0, 0)) };
            Copier { owner }.copy(&from, &to)?;
            Ok(0)
        }
    }
}
