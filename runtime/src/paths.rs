//! Paths and names every part of berth agrees on: the default root and socket, the per-root
//! cgroup parent, and where a container's health status lives while the agent runs.

use std::fs;
use std::path::{Path, PathBuf};

/// The store, records and state when `--root`/`BERTH_ROOT` is not given.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// The agent's socket when `-H`/`BERTH_HOST` is not given.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
/// Runtime state that must not survive a reboot (tmpfs).
pub const RUN_DIR: &str = "/run/berth";

/// `berth` for the default root, `berth-<hash of the root>` for any other, so agents on two roots
/// never share a cgroup (or a run directory).
pub fn cgroup_parent(root: &Path) -> String {
    let canon = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if canon == Path::new(DEFAULT_ROOT) {
        "berth".to_string()
    } else {
        format!("berth-{}", &crate::digest::Digest::of(canon.as_os_str().as_encoded_bytes()).hex()[..12])
    }
}

/// A running container's health status (Docker's inspect shape), rewritten after each check.
pub fn health_file(root: &Path, id: &str) -> PathBuf {
    Path::new(RUN_DIR).join(cgroup_parent(root)).join(format!("{id}.health"))
}

/// A fleet update's pull progress (`HAVE TOTAL` bytes), written by the `berth pull` child and read
/// by the agent to report it: on tmpfs, since it changes every half second (flash wear).
pub fn pull_progress_file(root: &Path) -> PathBuf {
    Path::new(RUN_DIR).join(cgroup_parent(root)).join("pull.progress")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_root_has_the_plain_parent() {
        assert_eq!(cgroup_parent(Path::new(DEFAULT_ROOT)), "berth");
        let other = cgroup_parent(Path::new("/nonexistent/berth-root"));
        assert!(other.starts_with("berth-") && other.len() == "berth-".len() + 12, "{other}");
        assert!(health_file(Path::new("/nonexistent/berth-root"), "abc").ends_with(format!("{other}/abc.health")));
    }
}
