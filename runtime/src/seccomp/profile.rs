//! Docker's seccomp profile format (`defaultAction`, `architectures` or `archMap`, `syscalls` with
//! `names`, `action`, `errnoRet`, `args`, `includes`/`excludes` by caps, arches and `minKernel`),
//! checked when read and resolved, for one container, into rules per architecture.

use serde::Deserialize;

use super::{Action, Arch, Cmp, CmpOp, Rule};
use crate::error::{Error, Result};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<RawArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<RawSyscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSyscall {
    /// The old single-name form.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<RawArg>>,
    #[serde(default)]
    includes: Option<RawFilter>,
    #[serde(default)]
    excludes: Option<RawFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// libseccomp's architecture names: any of them is accepted, those berth has no table for are
/// left out of the filter.
const SCMP_ARCHES: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

/// A profile read and checked: every action, operator, architecture and kernel version in it is
/// known; system call names are looked up per architecture when the filter is built.
pub struct Profile {
    default: Action,
    /// From `archMap` (keyed by the host's arch) or `architectures`; empty: the native ones.
    arch_map: Vec<(String, Vec<String>)>,
    architectures: Vec<String>,
    entries: Vec<Entry>,
}

struct Entry {
    names: Vec<String>,
    action: Action,
    args: Vec<Cmp>,
    inc_caps: Vec<String>,
    inc_arches: Vec<String>,
    min_kernel: Option<(u32, u32)>,
    exc_caps: Vec<String>,
    exc_arches: Vec<String>,
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("seccomp profile: {msg}"))
}

fn action(name: &str, errno: Option<u32>, default_errno: u32) -> Result<Action> {
    let errno = |d: u32| -> Result<u16> {
        let n = errno.unwrap_or(d);
        u16::try_from(n).ok().filter(|n| *n <= 4095).ok_or_else(|| bad(format!("errnoRet {n} out of range")))
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno(default_errno)?),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_TRACE" => Action::Trace(errno(libc::EPERM as u32)?),
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_NOTIFY" => return Err(bad("action SCMP_ACT_NOTIFY is not supported")),
        _ => return Err(bad(format!("unknown action {name:?}"))),
    })
}

fn op(name: &str) -> Result<CmpOp> {
    Ok(match name {
        "SCMP_CMP_NE" => CmpOp::Ne,
        "SCMP_CMP_LT" => CmpOp::Lt,
        "SCMP_CMP_LE" => CmpOp::Le,
        "SCMP_CMP_EQ" => CmpOp::Eq,
        "SCMP_CMP_GE" => CmpOp::Ge,
        "SCMP_CMP_GT" => CmpOp::Gt,
        "SCMP_CMP_MASKED_EQ" => CmpOp::MaskedEq,
        _ => return Err(bad(format!("unknown operator {name:?}"))),
    })
}

fn arch_name(name: &str) -> Result<String> {
    if SCMP_ARCHES.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(bad(format!("unknown architecture {name:?}")))
    }
}

/// "4.8" or "5.10.3" → (major, minor).
pub fn kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

impl Profile {
    pub fn parse(json: &str) -> Result<Profile> {
        let raw: Raw = serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let default_errno = raw.default_errno_ret.unwrap_or(libc::EPERM as u32);
        let default = action(&raw.default_action, raw.default_errno_ret, default_errno)?;
        let mut arch_map = Vec::new();
        for m in raw.arch_map.unwrap_or_default() {
            let subs = m.sub_architectures.unwrap_or_default().iter().map(|s| arch_name(s)).collect::<Result<_>>()?;
            arch_map.push((arch_name(&m.architecture)?, subs));
        }
        let architectures = raw.architectures.unwrap_or_default().iter().map(|s| arch_name(s)).collect::<Result<_>>()?;
        let mut entries = Vec::new();
        for s in raw.syscalls.unwrap_or_default() {
            let mut names = s.names.unwrap_or_default();
            names.extend(s.name.filter(|n| !n.is_empty()));
            if names.is_empty() {
                return Err(bad("a syscalls entry names no system call"));
            }
            let mut args = Vec::new();
            for a in s.args.unwrap_or_default() {
                if a.index > 5 {
                    return Err(bad(format!("argument index {} out of range (0-5)", a.index)));
                }
                args.push(Cmp { index: a.index as u8, op: op(&a.op)?, value: a.value, value_two: a.value_two });
            }
            let (inc, exc) = (s.includes.unwrap_or_default(), s.excludes.unwrap_or_default());
            let min_kernel = match &inc.min_kernel {
                Some(v) if !v.is_empty() => Some(kernel_version(v).ok_or_else(|| bad(format!("invalid minKernel {v:?}")))?),
                _ => None,
            };
            entries.push(Entry {
                names,
                action: action(&s.action, s.errno_ret, default_errno)?,
                args,
                inc_caps: inc.caps.unwrap_or_default(),
                inc_arches: inc.arches.unwrap_or_default(),
                min_kernel,
                exc_caps: exc.caps.unwrap_or_default(),
                exc_arches: exc.arches.unwrap_or_default(),
            });
        }
        Ok(Profile { default, arch_map, architectures, entries })
    }

    pub fn default_action(&self) -> Action {
        self.default
    }

    /// The architectures the filter covers on a host of `host`, out of those its kernel can run:
    /// the profile's (`archMap` entry for the host, or `architectures`) and always the host's own,
    /// as libseccomp adds the native one.
    pub fn arches(&self, host: Arch) -> Vec<Arch> {
        let named: Vec<&str> = match self.arch_map.iter().find(|(a, _)| a == host.scmp_name()) {
            Some((a, subs)) => std::iter::once(a.as_str()).chain(subs.iter().map(String::as_str)).collect(),
            None => self.architectures.iter().map(String::as_str).collect(),
        };
        host.runnable().iter().copied().filter(|a| *a == host || named.contains(&a.scmp_name())).collect()
    }

    /// The rules that apply to a container with capabilities `caps` on `host` running `kernel`,
    /// for system calls of `arch`, in the profile's order. Names `arch` does not have are left
    /// out, as Docker does.
    pub fn rules(&self, host: Arch, arch: Arch, caps: &[String], kernel: (u32, u32)) -> Vec<Rule> {
        let has = |c: &String| caps.iter().any(|h| h == c);
        let mut rules = Vec::new();
        for e in &self.entries {
            // Docker matches includes/excludes by arch against the host's (Go) arch name.
            if !e.inc_caps.iter().all(has)
                || (!e.inc_arches.is_empty() && !e.inc_arches.iter().any(|a| a == host.go_name()))
                || e.min_kernel.is_some_and(|m| kernel < m)
                || e.exc_caps.iter().any(has)
                || e.exc_arches.iter().any(|a| a == host.go_name())
            {
                continue;
            }
            for n in &e.names {
                if let Some(nr) = arch.number(n) {
                    rules.push(Rule { nr, action: e.action, args: e.args.clone() });
                }
            }
        }
        rules
    }
}
