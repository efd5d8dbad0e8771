//! The cgroup v2 device filter: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from the allow
//! rules (a few instructions per rule, as runc and crun do, no BPF library), loaded with bpf(2) and
//! attached to the container's cgroup directory.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, with
//! the device type in the low 16 bits of `access_type` and the access in the high 16, and returns
//! 1 to allow, 0 to deny. Every rule is an allow rule (Docker's model: deny all, then allow), so the
//! program is one block per rule that jumps to the next block on any mismatch and returns 1 at its
//! end, followed by `return 0`.
//!
//! An attached program stays attached after the loader closes its descriptor: the cgroup holds it
//! and it goes with the cgroup, so nothing is pinned. Updates (hotplug, `update`) attach the new
//! program next to the old one with `BPF_F_ALLOW_MULTI` and then detach the old one: while both are
//! attached an access needs both to allow it, so the container never has more than either program
//! grants.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::rule::{Rule, Type};

/// One eBPF instruction, in the kernel's layout (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one (little-endian bitfield order).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes: class | op | source (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// `BPF_DEVCG_DEV_*`: the device type as the program sees it.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    let regs = if cfg!(target_endian = "little") { dst | (src << 4) } else { (dst << 4) | src };
    Insn { code, regs, off, imm }
}

/// The program for `rules` (allow rules; anything no rule allows is denied).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    // r2 = type, r3 = access, r4 = major, r5 = minor; r1 (the context) is scratch afterwards.
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut block: Vec<Insn> = Vec::new();
        // Each check is "jump to the next block if this does not hold"; offsets are filled in once
        // the block's length is known.
        match r.kind {
            Type::All => {}
            Type::Char => block.push(insn(JNE_K, 2, 0, 0, DEV_CHAR)),
            Type::Block => block.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK)),
        }
        if r.access.0 != 7 {
            // The access asked for must be a subset of the rule's: (r3 & allowed) == r3.
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, i32::from(r.access.0)));
            block.push(insn(JNE_X, 1, 3, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        if len == 2 {
            // No condition: everything is allowed, and the verifier refuses the unreachable
            // instructions any later block would be.
            p.extend(block);
            return p;
        }
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JNE_X {
                // Relative to the next instruction: land just past this block's exit.
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Runs `prog` as the kernel would for one access, for tests and for `explain`-style checks
/// without loading anything: only the instructions [`program`] emits are understood.
pub fn simulate(prog: &[Insn], kind: Type, major: u32, minor: u32, access: u8) -> Option<u64> {
    let dev = match kind {
        Type::Block => DEV_BLOCK as u64,
        Type::Char => DEV_CHAR as u64,
        Type::All => return None,
    };
    let ctx = [(u64::from(access) << 16) | dev, u64::from(major), u64::from(minor)];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    let le = cfg!(target_endian = "little");
    for _ in 0..10_000 {
        let i = prog.get(pc)?;
        let (dst, src) =
            if le { ((i.regs & 0xf) as usize, (i.regs >> 4) as usize) } else { ((i.regs >> 4) as usize, (i.regs & 0xf) as usize) };
        pc += 1;
        match i.code {
            LDX_MEM_W => r[dst] = ctx[(i.off / 4) as usize] & 0xffff_ffff,
            ALU32_AND_K => r[dst] = (r[dst] & i.imm as u32 as u64) & 0xffff_ffff,
            ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
            ALU32_MOV_X => r[dst] = r[src] & 0xffff_ffff,
            ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
            JNE_K if r[dst] != i.imm as i64 as u64 => pc = (pc as i64 + i64::from(i.off)) as usize,
            JNE_X if r[dst] != r[src] => pc = (pc as i64 + i64::from(i.off)) as usize,
            JNE_K | JNE_X => {}
            EXIT => return Some(r[0]),
            _ => return None,
        }
    }
    None
}

// bpf(2) commands, program and attach types (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, as a zeroed block big enough for every command used here; each command reads
/// its own leading fields.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32_at(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64_at(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes([self.0[off], self.0[off + 1], self.0[off + 2], self.0[off + 3]])
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, zero-padded bpf_attr of the size passed; every pointer stored in it
    // (instructions, license, log, id array) points to a buffer that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len() as libc::c_uint) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Loads the program; the descriptor keeps it alive until it is attached.
pub fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let license = c"MIT";
    let load = |log: &mut Vec<u8>| {
        let mut a = Attr::new();
        a.u32_at(0, BPF_PROG_TYPE_CGROUP_DEVICE)
            .u32_at(4, prog.len() as u32)
            .u64_at(8, prog.as_ptr() as u64)
            .u64_at(16, license.as_ptr() as u64);
        if !log.is_empty() {
            a.u32_at(24, 1).u32_at(28, log.len() as u32).u64_at(32, log.as_mut_ptr() as u64);
        }
        bpf(BPF_PROG_LOAD, &mut a)
    };
    match load(&mut Vec::new()) {
        // SAFETY: a new descriptor the kernel just gave us.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            // Again with the verifier's log, which says what it disliked.
            let mut log = vec![0u8; 16 * 1024];
            let _ = load(&mut log);
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]);
            // The last lines are statistics ("processed N insns"); the complaint comes before.
            let last = text.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with("processed ")).unwrap_or("");
            let hint = match e.raw_os_error() {
                Some(libc::ENOSYS) => " (kernel without CONFIG_BPF_SYSCALL)",
                Some(libc::EINVAL) if text.is_empty() => " (kernel without CONFIG_CGROUP_BPF?)",
                Some(libc::EPERM) => " (needs CAP_SYS_ADMIN or CAP_BPF)",
                _ => "",
            };
            let verifier = if last.is_empty() { String::new() } else { format!("; verifier: {last}") };
            Err(Error::io(format!("load the eBPF device filter{hint}{verifier}"), e))
        }
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| Error::io(format!("open cgroup {}", dir.display()), e))?;
    Ok(OwnedFd::from(f))
}

use std::os::unix::fs::OpenOptionsExt;

/// Ids of the device programs attached directly to the cgroup.
pub fn attached(dir: &Path) -> Result<Vec<u32>> {
    let cg = open_dir(dir)?;
    let mut ids = [0u32; 64];
    let mut a = Attr::new();
    a.u32_at(0, cg.as_raw_fd() as u32).u32_at(4, BPF_CGROUP_DEVICE).u64_at(16, ids.as_mut_ptr() as u64).u32_at(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut a).map_err(|e| Error::io(format!("query device programs of cgroup {}", dir.display()), e))?;
    let n = (a.get_u32(24) as usize).min(ids.len());
    Ok(ids[..n].to_vec())
}

/// Attaches the program for `rules` to the cgroup `dir` and detaches the ones attached before, so
/// that exactly these rules apply (see the module comment for why in that order).
pub fn apply(dir: &Path, rules: &[Rule]) -> Result<()> {
    let old = attached(dir)?;
    let prog = load(&program(rules))?;
    let cg = open_dir(dir)?;
    let mut a = Attr::new();
    a.u32_at(0, cg.as_raw_fd() as u32).u32_at(4, prog.as_raw_fd() as u32).u32_at(8, BPF_CGROUP_DEVICE).u32_at(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut a).map_err(|e| Error::io(format!("attach the eBPF device filter to cgroup {}", dir.display()), e))?;
    for id in old {
        let mut g = Attr::new();
        g.u32_at(0, id);
        let fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut g) {
            // SAFETY: a new descriptor the kernel just gave us.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
            // Gone already (the cgroup was replaced under us).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(Error::io(format!("open device program {id} of cgroup {}", dir.display()), e)),
        };
        let mut d = Attr::new();
        d.u32_at(0, cg.as_raw_fd() as u32).u32_at(4, fd.as_raw_fd() as u32).u32_at(8, BPF_CGROUP_DEVICE);
        match bpf(BPF_PROG_DETACH, &mut d) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::io(format!("detach device program {id} from cgroup {}", dir.display()), e)),
        }
    }
    Ok(())
}

/// Whether this kernel can load a cgroup device program (`berth check`): `Ok(())`, or why not.
pub fn probe() -> Result<()> {
    load(&program(&[Rule::ALLOW_ALL])).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{parse_all, DEFAULT_RULES};

    const R: u8 = 2;
    const W: u8 = 4;
    const M: u8 = 1;

    fn prog(rules: &[&str]) -> Vec<Insn> {
        program(&parse_all(&rules.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap())
    }

    #[test]
    fn default_rules_allow_only_standard_nodes() {
        let p = prog(DEFAULT_RULES);
        let run = |k, ma, mi, acc| simulate(&p, k, ma, mi, acc).unwrap();
        assert_eq!(run(Type::Char, 1, 3, R | W), 1, "null");
        assert_eq!(run(Type::Char, 136, 7, R | W), 1, "pts");
        assert_eq!(run(Type::Char, 5, 2, R), 1, "ptmx");
        assert_eq!(run(Type::Block, 7, 0, M), 1, "mknod of anything");
        assert_eq!(run(Type::Block, 7, 0, R), 0, "loop0 read");
        assert_eq!(run(Type::Char, 4, 1, R | W), 0, "tty1");
        assert_eq!(run(Type::Char, 1, 1, R), 0, "mem");
    }

    #[test]
    fn access_subsets_and_wildcards() {
        let p = prog(&["b 8:0 r", "c 89:* rw"]);
        let run = |k, ma, mi, acc| simulate(&p, k, ma, mi, acc).unwrap();
        assert_eq!(run(Type::Block, 8, 0, R), 1);
        assert_eq!(run(Type::Block, 8, 0, W), 0);
        assert_eq!(run(Type::Block, 8, 0, R | W), 0);
        assert_eq!(run(Type::Block, 8, 1, R), 0);
        assert_eq!(run(Type::Char, 89, 12, R | W), 1);
        assert_eq!(run(Type::Char, 89, 12, M), 0);
        assert_eq!(run(Type::Block, 89, 12, R), 0);
        let all = prog(&["a"]);
        assert_eq!(simulate(&all, Type::Block, 259, 3, R | W | M), Some(1));
        assert_eq!(simulate(&prog(&[]), Type::Char, 1, 3, R), Some(0));
    }

    #[test]
    fn program_shape() {
        // Prologue 6, a full rule with type, partial access, major and minor 8, epilogue 2.
        assert_eq!(prog(&["c 1:3 r"]).len(), 6 + 8 + 2);
        // An unconditional rule ends the program: nothing after it could run.
        assert_eq!(prog(&["a"]).len(), 6 + 2);
        assert_eq!(prog(&["c 1:3 r", "a", "b 8:0 r"]).len(), 6 + 8 + 2);
        let p = prog(&["c 1:3 rwm"]);
        assert_eq!(p[6], Insn { code: JNE_K, regs: 2, off: 4, imm: 2 });
        assert_eq!(p[p.len() - 1].code, EXIT);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
