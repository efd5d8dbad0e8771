//! Docker's seccomp profile format (`defaultAction`, `architectures` or `archMap`, `syscalls` with
//! `names`, `action`, `errnoRet`, `args`, `includes`/`excludes` by caps, arches and `minKernel`),
//! checked when read and resolved, for one container, into rules per architecture.

use serde_json::Value;

use super::{Action, Arch, Cmp, CmpOp, Rule};
use crate::error::{Error, Result};

// Read through serde_json::Value rather than derived structs: the agent has Value's code
// already, and derived visitors for this format cost about twice the code (measured).
type Obj = serde_json::Map<String, Value>;

fn field<'a>(o: &'a Obj, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

fn string<'a>(o: &'a Obj, key: &str) -> Result<Option<&'a str>> {
    match field(o, key) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| bad(format!("{key} must be a string"))),
    }
}

fn strings(o: &Obj, key: &str) -> Result<Vec<String>> {
    match field(o, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => {
            a.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(format!("{key} must hold strings")))).collect()
        }
        Some(_) => Err(bad(format!("{key} must be a list of strings"))),
    }
}

fn number(o: &Obj, key: &str) -> Result<Option<u64>> {
    match field(o, key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(format!("{key} must be a number"))),
    }
}

fn objects<'a>(o: &'a Obj, key: &str) -> Result<Vec<&'a Obj>> {
    match field(o, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(|v| v.as_object().ok_or_else(|| bad(format!("{key} must hold objects")))).collect(),
        Some(_) => Err(bad(format!("{key} must be a list"))),
    }
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
        let v: Value = serde_json::from_slice(json.as_bytes()).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let o = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let errno32 = |n: Option<u64>| n.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let default_errno_ret = errno32(number(o, "defaultErrnoRet")?);
        let default_errno = default_errno_ret.unwrap_or(libc::EPERM as u32);
        let Some(default_action) = string(o, "defaultAction")? else { return Err(bad("missing field `defaultAction`")) };
        let default = action(default_action, default_errno_ret, default_errno)?;
        let mut arch_map = Vec::new();
        for m in objects(o, "archMap")? {
            let subs = strings(m, "subArchitectures")?.iter().map(|s| arch_name(s)).collect::<Result<_>>()?;
            arch_map.push((arch_name(string(m, "architecture")?.unwrap_or_default())?, subs));
        }
        let architectures = strings(o, "architectures")?.iter().map(|s| arch_name(s)).collect::<Result<_>>()?;
        let mut entries = Vec::new();
        for s in objects(o, "syscalls")? {
            let mut names = strings(s, "names")?;
            names.extend(string(s, "name")?.filter(|n| !n.is_empty()).map(str::to_string));
            if names.is_empty() {
                return Err(bad("a syscalls entry names no system call"));
            }
            let mut args = Vec::new();
            for a in objects(s, "args")? {
                let index = number(a, "index")?.unwrap_or(0);
                if index > 5 {
                    return Err(bad(format!("argument index {index} out of range (0-5)")));
                }
                let value = number(a, "value")?.unwrap_or(0);
                let value_two = number(a, "valueTwo")?.unwrap_or(0);
                args.push(Cmp { index: index as u8, op: op(string(a, "op")?.unwrap_or_default())?, value, value_two });
            }
            let empty = Obj::new();
            let inc = field(s, "includes").and_then(Value::as_object).unwrap_or(&empty);
            let exc = field(s, "excludes").and_then(Value::as_object).unwrap_or(&empty);
            let min_kernel = match string(inc, "minKernel")? {
                Some(v) if !v.is_empty() => Some(kernel_version(v).ok_or_else(|| bad(format!("invalid minKernel {v:?}")))?),
                _ => None,
            };
            let Some(act) = string(s, "action")? else { return Err(bad("a syscalls entry has no action")) };
            entries.push(Entry {
                names,
                action: action(act, errno32(number(s, "errnoRet")?), default_errno)?,
                args,
                inc_caps: strings(inc, "caps")?,
                inc_arches: strings(inc, "arches")?,
                min_kernel,
                exc_caps: strings(exc, "caps")?,
                exc_arches: strings(exc, "arches")?,
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
