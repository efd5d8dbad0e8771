//! The agent's side of `--userns=auto`: which containers get a user namespace (`--userns`, else
//! the agent's `userns-remap`), where their host IDs come from, and a free range for each. The
//! container records are the allocation table: a range is chosen while the supervisor holds its
//! records (one create at a time) and lives exactly as long as the record on disk, so a crash at
//! any point leaves no range taken twice and none leaked; `rm` frees it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_runtime::container::record::Record;
use berth_runtime::userns::{self, IdMap, Pool};
use berth_runtime::{Error, Result};

/// `userns-remap` and where subordinate IDs are read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Containers run without `--userns` get `auto` (Docker's daemon `userns-remap`).
    pub remap: bool,
    /// The user whose `/etc/subuid` and `/etc/subgid` ranges are handed out.
    pub user: String,
    /// The user was named by the operator: no range for it is an error rather than a fall back
    /// to berth's own range.
    pub required: bool,
    pub subuid: PathBuf,
    pub subgid: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { remap: false, user: "berth".into(), required: false, subuid: "/etc/subuid".into(), subgid: "/etc/subgid".into() }
    }
}

impl Settings {
    /// From `--userns-remap default|NAME` (or berth.toml's `[security] userns_remap`).
    pub fn remap(&mut self, v: &str) -> Result<()> {
        match v {
            "" => {}
            "default" => self.remap = true,
            name if berth_proto::names::valid_device_id(name) => {
                self.remap = true;
                self.user = name.to_string();
                self.required = true;
            }
            _ => return Err(Error::invalid(format!("invalid userns-remap {v:?}: default or a user name"))),
        }
        Ok(())
    }
}

/// The range of a new container, or None for the host's user namespace.
pub fn choose(s: &Settings, root: &Path, mode: Option<&str>, privileged: bool, copy: bool, existing: &[&Record]) -> Result<Option<IdMap>> {
    let size = match mode {
        Some(m) => userns::parse_mode(m)?,
        None if s.remap => Some(userns::DEFAULT_SIZE),
        None => None,
    };
    let Some(size) = size else { return Ok(None) };
    if privileged {
        return Err(Error::invalid(
            "privileged mode is incompatible with user namespaces. You must run the container in the host namespace when running privileged mode",
        ));
    }
    if copy {
        return Err(Error::invalid("--userns=auto needs overlayfs: this agent copies image layers (--storage-driver copy)"));
    }
    userns::kernel_support().map_err(|e| Error::invalid(format!("--userns=auto: {e}")))?;
    // Tried once per agent, on the store's file system, so that a kernel or file system without
    // id-mapped overlay layers refuses at create, before anything is made.
    static IDMAP: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    IDMAP.get_or_init(|| userns::probe_idmapped_overlay(root)).clone().map_err(|e| Error::invalid(format!("--userns=auto: {e}")))?;
    let pool = Pool::load(&s.user, &s.subuid, &s.subgid, s.required)?;
    let used: Vec<IdMap> = existing.iter().filter_map(|r| r.spec.userns).collect();
    Ok(Some(pool.allocate(size, &used)?))
}

/// `HostConfig.UsernsMode` as `inspect` shows it.
pub fn mode(m: Option<&IdMap>) -> String {
    match m {
        None => String::new(),
        Some(m) if m.size == userns::DEFAULT_SIZE => "auto".into(),
        Some(m) => format!("auto:size={}", m.size),
    }
}
