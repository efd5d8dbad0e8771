//! Seccomp: system call filters in Docker's profile format, compiled to classic BPF by berth
//! itself (no libseccomp in the static build) and installed in the container's process just
//! before exec.
//!
//! The default profile (`default.json`) is Docker's (moby `profiles/seccomp/default.json`, as
//! vendored by moby at b985e23, 2026-08), trimmed by `scripts/gen-seccomp-tables` to the entries
//! that can apply on x86_64, aarch64 and 32-bit ARM. The system call numbers (`tables.rs`) come
//! from the kernel's numbering (see that script). As runc does, calls newer than any the profile
//! names get ENOSYS instead of the default action, so a libc falls back to an older call (clone3
//! → clone) instead of failing with EPERM.

pub mod bpf;
#[cfg(test)]
mod interp;
mod profile;
mod tables;
#[cfg(test)]
mod tests;

pub use profile::{kernel_version, Profile};

use crate::error::{Error, Result};

/// Docker's default profile (`default.json`, 7.9 KB minified), built in gzipped (2.2 KB): the
/// firmware is 5.8 KB smaller, and a process unpacks it once ([`default_profile`]).
const DEFAULT_GZ: &[u8] = include_bytes!("default.json.gz");

/// Docker's default profile, as text.
pub fn default_profile() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // Cannot fail (a unit test unpacks it); if it did, the empty text would fail to parse at the
    // container's start, which then fails with that error.
    TEXT.get_or_init(|| inflate_builtin(DEFAULT_GZ).unwrap_or_default())
}

/// The text of a gzip member built into berth: the deflate body between the fixed 10-byte
/// header (no optional fields: the generator writes none) and the 8-byte trailer, inflated in one
/// call. Not through [`crate::gzip::GzDecoder`]: its streaming state (43 KB) is built on the
/// stack before it is boxed, which grew the agent's resident stack by 48 kB at its first
/// container start, for good; and its CRC tables would stay on the heap (8 KB). The bytes are
/// compiled in, so the CRC is left unchecked; a unit test checks the whole text instead.
fn inflate_builtin(gz: &[u8]) -> Option<String> {
    let body = gz.strip_prefix(&[0x1f, 0x8b, 8, 0])?.get(6..gz.len().checked_sub(12)?)?;
    String::from_utf8(miniz_oxide::inflate::decompress_to_vec(body).ok()?).ok()
}

/// An architecture berth builds filters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    /// 32-bit ARM, EABI; also an aarch64 kernel's compat mode.
    Arm,
}

impl Arch {
    /// The arch berth was built for (the kernel it runs on is the same, or aarch64 for armhf).
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else if cfg!(target_arch = "arm") {
            Arch::Arm
        } else {
            Arch::X86_64
        }
    }

    /// `AUDIT_ARCH_*`, as seccomp_data.arch holds it.
    pub fn audit(self) -> u32 {
        const LE: u32 = 0x4000_0000;
        const BITS64: u32 = 0x8000_0000;
        match self {
            Arch::X86_64 => 62 | BITS64 | LE,
            Arch::Aarch64 => 183 | BITS64 | LE,
            Arch::Arm => 40 | LE,
        }
    }

    pub fn scmp_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
            Arch::Arm => "SCMP_ARCH_ARM",
        }
    }

    /// Go's name, which Docker's `includes.arches` use.
    pub fn go_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
            Arch::Arm => "arm",
        }
    }

    /// What a kernel of this arch may run, hence what a filter must cover: an aarch64 kernel
    /// also runs 32-bit ARM binaries (with ARM's numbers). berth has no i386 or x32 table: those
    /// ABIs are refused on x86_64.
    pub fn runnable(self) -> &'static [Arch] {
        match self {
            Arch::X86_64 => &[Arch::X86_64],
            Arch::Aarch64 => &[Arch::Aarch64, Arch::Arm],
            Arch::Arm => &[Arch::Arm],
        }
    }

    /// The 32-bit ABIs pass 32-bit arguments: only the low word is compared.
    pub fn is_32bit(self) -> bool {
        self == Arch::Arm
    }

    fn table(self) -> &'static [u16] {
        match self {
            Arch::X86_64 => &tables::X86_64,
            Arch::Aarch64 => &tables::AARCH64,
            Arch::Arm => &tables::ARM,
        }
    }

    /// The number of system call `name` on this arch.
    pub fn number(self, name: &str) -> Option<u32> {
        static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
        let names = NAMES.get_or_init(|| tables::NAMES.lines().collect());
        self.number_at(names.binary_search(&name).ok()?)
    }

    fn number_at(self, idx: usize) -> Option<u32> {
        match self.table()[idx] {
            tables::NONE => None,
            v if v >= 0xff00 => Some(0x0f_0000 | u32::from(v & 0xff)),
            v => Some(u32::from(v)),
        }
    }
}

/// What the filter does with a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u16),
    KillProcess,
    KillThread,
    Trap,
    Trace(u16),
    Log,
}

impl Action {
    /// The `SECCOMP_RET_*` value.
    pub fn ret(self) -> u32 {
        match self {
            Action::Allow => 0x7fff_0000,
            Action::Errno(e) => 0x0005_0000 | u32::from(e),
            Action::KillProcess => 0x8000_0000,
            Action::KillThread => 0,
            Action::Trap => 0x0003_0000,
            Action::Trace(d) => 0x7ff0_0000 | u32::from(d),
            Action::Log => 0x7ffc_0000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & value) == value_two`
    MaskedEq,
}

/// A condition on one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmp {
    pub index: u8,
    pub op: CmpOp,
    pub value: u64,
    pub value_two: u64,
}

/// One system call's rule: `action` when every condition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub nr: u32,
    pub action: Action,
    pub args: Vec<Cmp>,
}

/// Whether a profile parses and holds only what berth can enforce: for `--security-opt`, before
/// anything is created.
pub fn check(json: &str) -> Result<()> {
    let p = Profile::parse(json)?;
    for arch in p.arches(Arch::host()) {
        bpf::generate(&p, Arch::host(), &[arch], &[], (99, 0))?;
    }
    Ok(())
}

/// The running kernel's version, (0, 0) when unknown (every `minKernel` entry is then left out).
pub fn running_kernel() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().and_then(|s| kernel_version(s.trim())).unwrap_or((0, 0))
}

/// The filter for a container with capabilities `caps` on this host.
pub fn compile(json: &str, caps: &[String]) -> Result<Vec<libc::sock_filter>> {
    // The agent compiles the default profile for the same capabilities at nearly every start
    // and exec (0.18 ms each on x86_64, more on a board): those filters are kept, a few of them.
    static DEFAULTS: std::sync::Mutex<Vec<(Vec<String>, Vec<libc::sock_filter>)>> = std::sync::Mutex::new(Vec::new());
    let default = std::ptr::eq(json, default_profile());
    if default {
        if let Some((_, f)) = DEFAULTS.lock().ok().as_ref().and_then(|d| d.iter().find(|(c, _)| c == caps)) {
            return Ok(f.clone());
        }
    }
    let p = Profile::parse(json)?;
    let host = Arch::host_kernel();
    let filter = bpf::generate(&p, host, &p.arches(host), caps, running_kernel())?;
    if let (true, Ok(mut d)) = (default, DEFAULTS.lock()) {
        if d.len() == 4 {
            d.remove(0);
        }
        d.push((caps.to_vec(), filter.clone()));
    }
    Ok(filter)
}

impl Arch {
    /// The kernel's arch: an armhf berth may run on an aarch64 kernel (then the filter must
    /// check for both, as the process may exec 64-bit binaries too).
    pub fn host_kernel() -> Arch {
        let host = Arch::host();
        if host == Arch::Arm {
            // SAFETY: uname fills the struct we pass.
            let mut u: libc::utsname = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::uname(&mut u) } == 0 {
                let m: Vec<u8> = u.machine.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
                if m == b"aarch64" || m == b"arm64" {
                    return Arch::Aarch64;
                }
            }
        }
        host
    }
}

/// Installs `prog` on the calling thread (and what it execs). Needs no_new_privs or
/// CAP_SYS_ADMIN.
pub fn install(prog: &[libc::sock_filter]) -> Result<()> {
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: PR_SET_SECCOMP reads the sock_fprog and the instructions it points to, which live
    // until the call returns (the kernel copies them).
    let r = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const libc::sock_fprog) };
    if r != 0 {
        return Err(Error::io("install the seccomp filter", std::io::Error::last_os_error()));
    }
    Ok(())
}
