//! The resource limits of a container, checked with Docker's rules and messages: users compare
//! berth with `docker run`, so the same flags fail the same way and with the same words.

use crate::error::{Error, Result};

/// Docker's `linuxMinMemory`.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// The CFS period berth always uses, as Docker does for `--cpus`.
pub(crate) const CPU_PERIOD: u64 = 100_000;
/// Docker's `linuxMinCPUShares` / `linuxMaxCPUShares`; the kernel clamps to the same range.
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// Bytes (`-m`); 0 means unset, as in Docker.
    pub memory: Option<i64>,
    /// Bytes of memory plus swap (`--memory-swap`); -1 = unlimited; 0 means unset.
    pub memory_swap: Option<i64>,
    /// Bytes (soft limit: v1 `memory.soft_limit_in_bytes`, v2 `memory.low`); 0 means unset.
    pub memory_reservation: Option<i64>,
    /// `<= 0` = unlimited (Docker: -1).
    pub pids_limit: Option<i64>,
    /// `--cpus`: quota = cpus × 100000 per 100000 µs period.
    pub cpus: Option<f64>,
    /// v1 `cpu.shares`; v2 `cpu.weight` = 1 + ((shares - 2) × 9999) / 262142. 0 means unset (Docker's
    /// default); other values are clamped to 2..=262144 as Docker and the kernel do.
    pub cpu_shares: Option<u64>,
    /// v1 device rules such as "c 1:3 rwm" or "a *:* rwm", applied as `devices.deny a` then each
    /// `devices.allow`. Empty = the devices controller is left alone.
    pub devices: crate::shared::SharedList,
}

impl Resources {
    /// Docker's checks and messages (daemon `verifyPlatformContainerResources`).
    pub fn validate(&self) -> Result<()> {
        self.check(online_cpus(), false)
    }

    /// `update` takes `--memory-swap` alone (the container already has a memory limit), so the
    /// "always set the memory limit" rule is left to the code that knows the current limit.
    pub(crate) fn check(&self, ncpu: usize, update: bool) -> Result<()> {
        let mem = self.mem();
        if let Some(m) = mem {
            if m < MIN_MEMORY {
                return Err(Error::invalid("Minimum memory limit allowed is 6MB"));
            }
        }
        if let Some(s) = self.swap() {
            if s < -1 {
                return Err(Error::invalid(format!("invalid memory swap limit {s}: use -1 for unlimited")));
            }
            match mem {
                Some(m) if s > 0 && s < m => {
                    return Err(Error::invalid("Minimum memoryswap limit should be larger than memory limit, see usage"));
                }
                None if s > 0 && !update => {
                    return Err(Error::invalid("You should always set the Memory limit when using Memoryswap limit, see usage"));
                }
                _ => {}
            }
        }
        if let Some(r) = self.reservation() {
            if matches!(mem, Some(m) if m < r) {
                return Err(Error::invalid("Minimum memory limit can not be less than memory reservation limit, see usage"));
            }
            if r < MIN_MEMORY {
                return Err(Error::invalid("Minimum memory reservation allowed is 6MB"));
            }
        }
        if let Some(c) = self.cpus {
            // Below 0.01 the quota would be under the kernel's 1 ms minimum.
            if c.is_nan() || c < 0.01 || c > ncpu as f64 {
                return Err(Error::invalid(format!("Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")));
            }
        }
        for rule in &self.devices {
            check_device_rule(rule)?;
        }
        Ok(())
    }

    pub(crate) fn mem(&self) -> Option<i64> {
        self.memory.filter(|&m| m != 0)
    }
    pub(crate) fn swap(&self) -> Option<i64> {
        self.memory_swap.filter(|&s| s != 0)
    }
    pub(crate) fn reservation(&self) -> Option<i64> {
        self.memory_reservation.filter(|&r| r != 0)
    }
    /// Shares after Docker's clamping; `None` when unset.
    pub(crate) fn shares(&self) -> Option<u64> {
        self.cpu_shares.filter(|&s| s != 0).map(|s| s.clamp(MIN_SHARES, MAX_SHARES))
    }
    /// `cpu.weight` for the shares, by the formula runc, crun and the kernel documentation use.
    pub(crate) fn cpu_weight(&self) -> Option<u64> {
        self.shares().map(|s| 1 + ((s - 2) * 9999) / 262_142)
    }
    /// CFS quota in µs for `--cpus`, per `CPU_PERIOD`.
    pub(crate) fn cpu_quota(&self) -> Option<u64> {
        self.cpus.map(|c| (c * CPU_PERIOD as f64).round() as u64)
    }
}

/// `<a|b|c> <major|*>:<minor|*> <r?w?m?>`, or a bare "a" (everything), the forms the v1 devices
/// controller accepts; checked here so a typo is reported as bad input, not as a kernel EINVAL.
fn check_device_rule(rule: &str) -> Result<()> {
    let bad = || Error::invalid(format!("invalid device rule {rule:?}: expected \"<a|b|c> <major|*>:<minor|*> <rwm>\""));
    let fields: Vec<&str> = rule.split(' ').collect();
    match fields.as_slice() {
        ["a"] => Ok(()),
        [kind, numbers, access] => {
            if !matches!(*kind, "a" | "b" | "c") {
                return Err(bad());
            }
            let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
            let number = |n: &str| n == "*" || (!n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()));
            if !number(major) || !number(minor) {
                return Err(bad());
            }
            let mut seen = [false; 3];
            for c in access.chars() {
                let i = "rwm".find(c).ok_or_else(bad)?;
                if std::mem::replace(&mut seen[i], true) {
                    return Err(bad());
                }
            }
            if access.is_empty() {
                return Err(bad());
            }
            Ok(())
        }
        _ => Err(bad()),
    }
}

/// Online CPUs from `/sys/devices/system/cpu/online` ("0-3,6"), which is what the CFS quota is
/// shared among, and what `info`'s NCPU and `stats`' CPU % count; std's `available_parallelism`
/// would also count a cgroup quota and an affinity mask (and costs 2 KB of firmware for that).
pub fn online_cpus() -> usize {
    let n = std::fs::read_to_string("/sys/devices/system/cpu/online").ok().and_then(|s| count_cpu_list(s.trim()));
    // SAFETY: sysconf takes a plain integer.
    n.unwrap_or_else(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1).max(1))
}

fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse::<usize>().ok()?)? + 1,
            None => part.parse::<usize>().map(|_| 1).ok()?,
        };
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 1024 * 1024;

    fn msg(r: &Resources, ncpu: usize) -> String {
        r.check(ncpu, false).unwrap_err().message().to_string()
    }

    #[test]
    fn validate_messages() {
        let r = Resources { memory: Some(5 * M), ..Default::default() };
        assert_eq!(msg(&r, 2), "Minimum memory limit allowed is 6MB");
        let r = Resources { memory: Some(-5), ..Default::default() };
        assert_eq!(msg(&r, 2), "Minimum memory limit allowed is 6MB");
        let r = Resources { memory: Some(32 * M), memory_swap: Some(16 * M), ..Default::default() };
        assert_eq!(msg(&r, 2), "Minimum memoryswap limit should be larger than memory limit, see usage");
        let r = Resources { memory_swap: Some(64 * M), ..Default::default() };
        assert_eq!(msg(&r, 2), "You should always set the Memory limit when using Memoryswap limit, see usage");
        // `update` may change the swap limit alone.
        assert!(r.check(2, true).is_ok());
        let r = Resources { memory: Some(32 * M), memory_reservation: Some(64 * M), ..Default::default() };
        assert_eq!(msg(&r, 2), "Minimum memory limit can not be less than memory reservation limit, see usage");
        let r = Resources { memory_reservation: Some(M), ..Default::default() };
        assert_eq!(msg(&r, 2), "Minimum memory reservation allowed is 6MB");
        for c in [0.0, -1.0, 0.001, 2.5, f64::NAN, f64::INFINITY] {
            let r = Resources { cpus: Some(c), ..Default::default() };
            assert_eq!(msg(&r, 2), "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available", "{c}");
        }
        let r = Resources { memory_swap: Some(-2), memory: Some(32 * M), ..Default::default() };
        assert_eq!(msg(&r, 2), "invalid memory swap limit -2: use -1 for unlimited");
    }

    #[test]
    fn validate_accepts() {
        let ok = [
            Resources::default(),
            Resources { memory: Some(6 * M), ..Default::default() },
            Resources { memory: Some(32 * M), memory_swap: Some(32 * M), ..Default::default() },
            Resources { memory: Some(32 * M), memory_swap: Some(-1), ..Default::default() },
            // Swap -1 or 0 without memory is harmless (nothing to limit), as in Docker.
            Resources { memory_swap: Some(-1), ..Default::default() },
            Resources { memory: Some(0), memory_swap: Some(0), ..Default::default() },
            Resources { memory: Some(32 * M), memory_reservation: Some(32 * M), ..Default::default() },
            Resources { pids_limit: Some(-1), cpus: Some(0.01), cpu_shares: Some(0), ..Default::default() },
            Resources { cpus: Some(2.0), cpu_shares: Some(1), ..Default::default() },
            Resources {
                devices: vec!["c 1:3 rwm".into(), "a *:* rwm".into(), "b 8:* r".into(), "a".into(), "c 189:1 mw".into()].into(),
                ..Default::default()
            },
        ];
        for r in ok {
            assert!(r.check(2, false).is_ok(), "{r:?}");
        }
    }

    #[test]
    fn device_rules_rejected() {
        for rule in
            ["", "c", "x 1:3 rwm", "c 1:3", "c 1-3 rwm", "c 1:3 rwx", "c 1:3 rr", "c 1:3 ", "c  1:3 rwm", "c a:3 r", "c 1:3 rwm extra"]
        {
            let r = Resources { devices: vec![rule.into()].into(), ..Default::default() };
            let m = msg(&r, 2);
            assert!(m.starts_with(&format!("invalid device rule {rule:?}")), "{rule:?}: {m}");
        }
    }

    #[test]
    fn shares_weight_quota() {
        let r = |s| Resources { cpu_shares: Some(s), ..Default::default() };
        assert_eq!(r(0).shares(), None);
        assert_eq!(r(1).shares(), Some(2));
        assert_eq!(r(512).shares(), Some(512));
        assert_eq!(r(1_000_000).shares(), Some(262_144));
        assert_eq!(r(2).cpu_weight(), Some(1));
        assert_eq!(r(1024).cpu_weight(), Some(39));
        assert_eq!(r(512).cpu_weight(), Some(20));
        assert_eq!(r(262_144).cpu_weight(), Some(10_000));
        let c = |c| Resources { cpus: Some(c), ..Default::default() }.cpu_quota();
        assert_eq!(c(0.5), Some(50_000));
        assert_eq!(c(1.5), Some(150_000));
        assert_eq!(c(0.01), Some(1_000));
    }

    #[test]
    fn cpu_list() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("x"), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert!(online_cpus() >= 1);
    }
}
