//! cgroup v2: one directory; controllers are enabled from the root down through
//! `cgroup.subtree_control`, and a limit file exists only when its controller is enabled.

use std::path::{Path, PathBuf};

use super::{keyed_file, read, read_limit, read_opt, read_procs, wait_until, write, Resources, Stats};
use super::{FREEZE_TIMEOUT, NO_SWAP_WARNING};
use crate::error::{Error, Kind, Result};

/// The controllers berth enables for its cgroups when the host offers them.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

#[derive(Debug, Clone)]
pub(super) struct V2 {
    pub(super) dir: PathBuf,
}

/// Enables berth's controllers for the children of `dir` where `dir` offers them. A controller
/// that cannot be enabled (e.g. `cpu` with realtime tasks outside the root on RT_GROUP_SCHED
/// kernels) gives a warning; a limit that needs it then fails with its own error.
pub(super) fn enable_controllers(dir: &Path) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let avail = read(&dir.join("cgroup.controllers"))?;
    let subtree = dir.join("cgroup.subtree_control");
    let enabled = read(&subtree)?;
    for c in CONTROLLERS {
        let has = |list: &str| list.split_whitespace().any(|x| x == c);
        if has(&avail) && !has(&enabled) {
            if let Err(e) = write(&subtree, &format!("+{c}")) {
                // A directory removed under us is an error (the caller retries), not a warning.
                if !dir.exists() {
                    return Err(e);
                }
                warnings.push(format!("could not enable the {c} cgroup controller: {e}"));
            }
        }
    }
    Ok(warnings)
}

impl V2 {
    /// The path of a controller's file, or an error naming the missing controller: writing to
    /// a file that does not exist would otherwise look like success to no one and fail obscurely.
    fn need(&self, file: &str) -> Result<PathBuf> {
        let path = self.dir.join(file);
        if path.exists() {
            return Ok(path);
        }
        let ctrl = file.split('.').next().unwrap_or(file);
        let offered = read_opt(&self.dir.join("cgroup.controllers")).ok().flatten().unwrap_or_default();
        let offered = if offered.trim().is_empty() { "none".to_string() } else { offered.trim().to_string() };
        Err(Error::new(
            Kind::Io,
            format!(
                "cannot set {file}: the {ctrl} controller is not enabled in cgroup {} (controllers available: {offered})",
                self.dir.display()
            ),
        ))
    }

    pub(super) fn apply(&self, res: &Resources, creating: bool) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let (mem, swap, reservation) = (res.mem(), res.swap(), res.reservation());
        if mem.is_some() || swap.is_some() || reservation.is_some() {
            let max = self.need("memory.max")?;
            if let Some(m) = mem {
                write(&max, &m.to_string())?;
            }
            // memory.swap.max is swap alone; Docker's --memory-swap is memory + swap.
            let swap_max = match (swap, mem) {
                (Some(-1), _) => Some("max".to_string()),
                (Some(s), Some(m)) => Some((s - m).to_string()),
                (Some(s), None) => {
                    // `update --memory-swap` alone: relative to the limit already set.
                    let current = read_limit(&max)?;
                    if current == 0 {
                        return Err(Error::invalid("You should always set the Memory limit when using Memoryswap limit, see usage"));
                    }
                    let current = i64::try_from(current).unwrap_or(i64::MAX);
                    if s < current {
                        return Err(Error::invalid("Minimum memoryswap limit should be larger than memory limit, see usage"));
                    }
                    Some((s - current).to_string())
                }
                // Docker's default: memory + swap = twice the memory limit.
                (None, Some(m)) if creating => Some(m.to_string()),
                (None, _) => None,
            };
            if let Some(v) = swap_max {
                let path = self.dir.join("memory.swap.max");
                if path.exists() {
                    write(&path, &v)?;
                } else if swap.is_some_and(|s| s > 0) {
                    // No swap accounting (CONFIG_MEMCG_SWAP off or swapaccount=0).
                    warnings.push(NO_SWAP_WARNING.to_string());
                }
            }
            if let Some(r) = reservation {
                write(&self.need("memory.low")?, &r.to_string())?;
            }
        }
        if let Some(p) = res.pids_limit {
            write(&self.need("pids.max")?, &if p <= 0 { "max".to_string() } else { p.to_string() })?;
        }
        if let Some(quota) = res.cpu_quota() {
            write(&self.need("cpu.max")?, &format!("{quota} {}", super::resources::CPU_PERIOD))?;
        }
        if let Some(weight) = res.cpu_weight() {
            write(&self.need("cpu.weight")?, &weight.to_string())?;
        }
        if !res.devices.is_empty() {
            let rules = berth_device::rule::parse_all(&res.devices)?;
            berth_device::bpf::apply(&self.dir, &rules)?;
        }
        Ok(warnings)
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        let d = &self.dir;
        let pids = match read_opt(&d.join("pids.current"))? {
            Some(s) => s.trim().parse().unwrap_or(0),
            // No pids controller: count the members.
            None => read_procs(d)?.len() as u64,
        };
        Ok(Stats {
            memory_usage: read_limit(&d.join("memory.current"))?,
            memory_limit: read_limit(&d.join("memory.max"))?,
            memory_cache: keyed_file(&d.join("memory.stat"), "file")?,
            oom_kills: self.oom_kills(),
            pids,
            pids_limit: read_limit(&d.join("pids.max"))?,
            // cpu.stat is a core file: present without the cpu controller.
            cpu_usage_ns: keyed_file(&d.join("cpu.stat"), "usage_usec")?.saturating_mul(1000),
        })
    }

    /// `oom_kill N` in `memory.events`.
    pub(super) fn oom_kills(&self) -> u64 {
        keyed_file(&self.dir.join("memory.events"), "oom_kill").unwrap_or(0)
    }
}

/// Writes `cgroup.freeze` and waits until `cgroup.events` reports `frozen` in the new state.
pub(super) fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    let path = dir.join("cgroup.freeze");
    if !path.exists() {
        return Err(Error::new(Kind::Io, format!("cannot freeze {}: no cgroup.freeze (Linux 5.2 or later needed)", dir.display())));
    }
    write(&path, if frozen { "1" } else { "0" })?;
    let events = dir.join("cgroup.events");
    let want = u64::from(frozen);
    if !wait_until(FREEZE_TIMEOUT, || Ok(keyed_file(&events, "frozen")? == want))? {
        if frozen {
            // Half-frozen helps no one; the error says what happened.
            let _ = write(&path, "0");
        }
        return Err(Error::new(Kind::Io, format!("{}: frozen is not {want} after 5 s", events.display())));
    }
    Ok(())
}
