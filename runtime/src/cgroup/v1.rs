//! cgroup v1: one directory per hierarchy; co-mounted controllers (`cpu,cpuacct`) share one.

use std::path::{Path, PathBuf};

use super::{keyed_file, read, read_limit, read_opt, read_procs, v2, wait_until, write, write_error, write_raw, Resources, Stats};
use super::{FREEZE_TIMEOUT, NO_SWAP_WARNING};
use crate::error::{Error, Kind, Result};

const MEMSW: &str = "memory.memsw.limit_in_bytes";
const MEMORY: &str = "memory.limit_in_bytes";

/// The container's directory in each mounted hierarchy; `None` for a controller the host lacks.
#[derive(Debug, Clone)]
pub(super) struct V1 {
    pub(super) cpuset: Option<PathBuf>,
    pub(super) memory: Option<PathBuf>,
    pub(super) pids: Option<PathBuf>,
    pub(super) cpu: Option<PathBuf>,
    pub(super) cpuacct: Option<PathBuf>,
    pub(super) freezer: Option<PathBuf>,
    pub(super) devices: Option<PathBuf>,
    /// The directory in the cgroup2 tree of a hybrid host: no controllers, but `cgroup.kill`.
    pub(super) unified: Option<PathBuf>,
}

/// A cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems` (unless the parent has
/// `cgroup.clone_children`), and a task cannot join it then (ENOSPC): copy the parent's.
pub(super) fn init_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else { return Ok(()) };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read(&dir.join(file))?.trim().is_empty() {
            let v = read(&parent.join(file))?;
            write(&dir.join(file), v.trim())?;
        }
    }
    Ok(())
}

pub(super) fn missing(ctrl: &str, what: &str) -> Error {
    Error::new(Kind::Io, format!("cannot {what}: the {ctrl} cgroup controller is not mounted on this host"))
}

impl V1 {
    /// Each directory once (co-mounted controllers share one), cgroup2 last.
    pub(super) fn dirs(&self) -> Vec<PathBuf> {
        let all = [&self.cpuset, &self.memory, &self.pids, &self.cpu, &self.cpuacct, &self.freezer, &self.devices, &self.unified];
        let mut out: Vec<PathBuf> = Vec::new();
        for d in all.into_iter().flatten() {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }

    /// A hierarchy to list the processes from: any v1 one holds them all.
    pub(super) fn procs_dir(&self) -> Option<&Path> {
        [&self.pids, &self.memory, &self.freezer, &self.cpu, &self.cpuacct, &self.devices, &self.cpuset]
            .into_iter()
            .flatten()
            .next()
            .map(PathBuf::as_path)
    }

    pub(super) fn apply(&self, res: &Resources, creating: bool) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let (mem, swap, reservation) = (res.mem(), res.swap(), res.reservation());
        if mem.is_some() || swap.is_some() || reservation.is_some() {
            let dir = self.memory.as_deref().ok_or_else(|| missing("memory", "set a memory limit"))?;
            // `update --memory-swap` alone needs a memory limit already in place (Docker's rule).
            if mem.is_none() && swap.is_some_and(|s| s > 0) && read_limit(&dir.join(MEMORY))? == 0 {
                return Err(Error::invalid("You should always set the Memory limit when using Memoryswap limit, see usage"));
            }
            let swap_target = if dir.join(MEMSW).exists() {
                match (mem, swap) {
                    (_, Some(s)) => Some(s),
                    // Docker's default: memory + swap = twice the memory limit.
                    (Some(m), None) if creating => Some(m.saturating_mul(2)),
                    _ => None,
                }
            } else {
                // No swap accounting (CONFIG_MEMCG_SWAP off or swapaccount=0, as on many boards).
                if swap.is_some_and(|s| s > 0) {
                    warnings.push(NO_SWAP_WARNING.to_string());
                }
                None
            };
            set_memory_and_swap(dir, mem, swap_target)?;
            if let Some(r) = reservation {
                write(&dir.join("memory.soft_limit_in_bytes"), &r.to_string())?;
            }
        }
        if let Some(p) = res.pids_limit {
            let dir = self.pids.as_deref().ok_or_else(|| missing("pids", "set a pids limit"))?;
            write(&dir.join("pids.max"), &if p <= 0 { "max".to_string() } else { p.to_string() })?;
        }
        if let Some(quota) = res.cpu_quota() {
            let dir = self.cpu.as_deref().ok_or_else(|| missing("cpu", "set a cpu quota"))?;
            // Period first: the quota is checked against it.
            write(&dir.join("cpu.cfs_period_us"), &super::resources::CPU_PERIOD.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let Some(shares) = res.shares() {
            let dir = self.cpu.as_deref().ok_or_else(|| missing("cpu", "set cpu shares"))?;
            write(&dir.join("cpu.shares"), &shares.to_string())?;
        }
        if !res.devices.is_empty() {
            let dir = self.devices.as_deref().ok_or_else(|| missing("devices", "apply device rules"))?;
            // Deny-all resets the list; the allows then open exactly the rules given. On `update`
            // this leaves a moment in which the container can open no device.
            write(&dir.join("devices.deny"), "a")?;
            // One open for every rule (a dozen for Docker's defaults): the file takes one rule
            // per write(2).
            let allow = dir.join("devices.allow");
            let mut f = std::fs::OpenOptions::new().write(true).open(&allow).map_err(|e| write_error(&allow, "", e))?;
            for rule in &res.devices {
                std::io::Write::write_all(&mut f, rule.as_bytes()).map_err(|e| write_error(&allow, rule, e))?;
            }
        }
        Ok(warnings)
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        let mut st = Stats::default();
        if let Some(dir) = &self.memory {
            st.memory_usage = read_limit(&dir.join("memory.usage_in_bytes"))?;
            st.memory_limit = read_limit(&dir.join(MEMORY))?;
            let stat = dir.join("memory.stat");
            // total_cache includes sub-cgroups; cache alone on kernels without hierarchy totals.
            st.memory_cache = match read_opt(&stat)? {
                Some(t) => super::keyed(&t, "total_cache").or_else(|| super::keyed(&t, "cache")).unwrap_or(0),
                None => 0,
            };
        }
        st.oom_kills = self.oom_kills();
        st.pids = match &self.pids {
            Some(dir) => match read_opt(&dir.join("pids.current"))? {
                Some(s) => s.trim().parse().unwrap_or(0),
                None => read_procs(dir)?.len() as u64,
            },
            None => match self.procs_dir() {
                Some(dir) => read_procs(dir)?.len() as u64,
                None => 0,
            },
        };
        if let Some(dir) = &self.pids {
            st.pids_limit = read_limit(&dir.join("pids.max"))?;
        }
        if let Some(dir) = &self.cpuacct {
            st.cpu_usage_ns = read_limit(&dir.join("cpuacct.usage"))?;
        }
        Ok(st)
    }

    /// `oom_kill N` in `memory.oom_control` (Linux >= 4.13). Older kernels give 0: `memory.failcnt`
    /// is no substitute, since it counts every time usage hit the limit, including the many times
    /// reclaim (dropping page cache) resolved it without killing anything.
    pub(super) fn oom_kills(&self) -> u64 {
        let Some(dir) = &self.memory else { return 0 };
        keyed_file(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0)
    }

    pub(super) fn freeze(&self, frozen: bool) -> Result<()> {
        let Some(dir) = &self.freezer else {
            // A hybrid host without a v1 freezer still has cgroup2's own freezer.
            return match &self.unified {
                Some(u) => v2::freeze(u, frozen),
                None => Err(missing("freezer", if frozen { "freeze" } else { "thaw" })),
            };
        };
        let path = dir.join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write(&path, want)?;
        let mut polls = 0u32;
        let done = wait_until(FREEZE_TIMEOUT, || {
            if read(&path)?.trim() == want {
                return Ok(true);
            }
            // A task forking while the cgroup freezes can leave it FREEZING; asking again moves it
            // on (runc does the same).
            polls += 1;
            if frozen && polls >= 8 {
                polls = 0;
                write(&path, want)?;
            }
            Ok(false)
        })?;
        if !done {
            if frozen {
                // Half-frozen helps no one; the error says what happened.
                let _ = write(&path, "THAWED");
            }
            return Err(Error::new(Kind::Io, format!("{}: not {want} after 5 s (a task in uninterruptible sleep?)", path.display())));
        }
        Ok(())
    }
}

/// Writes the memory and memory+swap limits so that memsw >= memory holds at every step, which the
/// kernel enforces on each write (runc's order): when the new memsw is above the current memory
/// limit (raising), memsw goes first; otherwise (lowering) memory goes first.
fn set_memory_and_swap(dir: &Path, mem: Option<i64>, memsw: Option<i64>) -> Result<()> {
    match (mem, memsw) {
        (None, None) => Ok(()),
        (Some(m), None) => set_memory(dir, m),
        (None, Some(s)) => set_memsw(dir, s),
        (Some(m), Some(s)) => {
            let current = read(&dir.join(MEMORY))?;
            let current: u64 =
                current.trim().parse().map_err(|_| Error::invalid(format!("{}/{MEMORY}: bad value {current:?}", dir.display())))?;
            if s == -1 || current < s as u64 {
                set_memsw(dir, s)?;
                set_memory(dir, m)
            } else {
                set_memory(dir, m)?;
                set_memsw(dir, s)
            }
        }
    }
}

fn set_memory(dir: &Path, bytes: i64) -> Result<()> {
    let path = dir.join(MEMORY);
    let value = bytes.to_string();
    write_raw(&path, &value).map_err(|e| match e.raw_os_error() {
        // The kernel reclaimed what it could and usage is still above the new limit.
        Some(libc::EBUSY) => {
            let usage = read_limit(&dir.join("memory.usage_in_bytes")).map(|u| u.to_string()).unwrap_or_else(|_| "unknown".into());
            Error::conflict(format!(
                "Cannot update memory limit below current usage ({}: {value} bytes requested, {usage} in use)",
                path.display()
            ))
        }
        // The only other reason for EINVAL on a valid number: above memory+swap.
        Some(libc::EINVAL) if dir.join(MEMSW).exists() => Error::invalid(format!(
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time ({}: {value})",
            path.display()
        )),
        _ => write_error(&path, &value, e),
    })
}

fn set_memsw(dir: &Path, bytes: i64) -> Result<()> {
    let path = dir.join(MEMSW);
    let value = bytes.to_string();
    write_raw(&path, &value).map_err(|e| match e.raw_os_error() {
        // Below the memory limit.
        Some(libc::EINVAL) => {
            Error::invalid(format!("Minimum memoryswap limit should be larger than memory limit, see usage ({}: {value})", path.display()))
        }
        Some(libc::EBUSY) => Error::conflict(format!(
            "Cannot update memory limit below current usage ({}: {value} bytes of memory+swap requested)",
            path.display()
        )),
        _ => write_error(&path, &value, e),
    })
}
