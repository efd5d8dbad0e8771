//! A profile compiled to a classic BPF program for `SECCOMP_MODE_FILTER`.
//!
//! Layout: the arch check (an ABI the filter does not cover is killed: x32 and i386 on x86_64
//! too), then per arch a binary search over ranges of system call numbers (calls that share an
//! unconditional action share one range, so the search stays a few levels deep), then one block
//! per call with argument rules, tried in the profile's order. 64-bit arguments are compared in
//! two halves; 32-bit ABIs only by the low word. Conditional jumps reach at most 255
//! instructions ahead: a farther target goes through an unconditional `ja` right after the jump.

use super::{Action, Arch, Cmp, CmpOp, Profile, Rule};
use crate::error::{Error, Result};

// Classic BPF opcodes (linux/bpf_common.h).
pub const LD_W_ABS: u16 = 0x20;
pub const ALU_AND_K: u16 = 0x54;
pub const JA: u16 = 0x05;
pub const JEQ_K: u16 = 0x15;
pub const JGT_K: u16 = 0x25;
pub const JGE_K: u16 = 0x35;
pub const RET_K: u16 = 0x06;

/// The kernel's limit (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// seccomp_data: nr at 0, arch at 4, instruction pointer at 8, args at 16 + 8 * i (native
/// endianness: little on every arch berth builds for, so the low word comes first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn arg_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}
fn arg_hi(i: u8) -> u32 {
    arg_lo(i) + 4
}

const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tgt {
    Next,
    L(usize),
}

#[derive(Clone, Copy)]
enum Sym {
    Stmt(u16, u32),
    Jmp(u16, u32, Tgt, Tgt),
    Ja(usize),
    Label(usize),
}

#[derive(Default)]
struct Asm {
    code: Vec<Sym>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn put(&mut self, s: Sym) {
        self.code.push(s);
    }
    fn ld(&mut self, off: u32) {
        self.put(Sym::Stmt(LD_W_ABS, off));
    }
    fn ret(&mut self, a: Action) {
        self.put(Sym::Stmt(RET_K, a.ret()));
    }
    fn jmp(&mut self, op: u16, k: u32, t: Tgt, f: Tgt) {
        self.put(Sym::Jmp(op, k, t, f));
    }
    fn at(&mut self, l: usize) {
        self.put(Sym::Label(l));
    }

    /// Resolves labels: a conditional jump too far for its 8-bit offset becomes the jump onto
    /// one or two `ja` right after it. Repeats until no jump grows (growing only lengthens).
    fn assemble(self) -> Result<Vec<libc::sock_filter>> {
        let mut long = vec![false; self.code.len()];
        let size = |s: &Sym, long: bool| match s {
            Sym::Label(_) => 0,
            Sym::Jmp(_, _, t, f) if long => 1 + usize::from(*t != Tgt::Next) + usize::from(*f != Tgt::Next),
            _ => 1,
        };
        let (mut pos, mut at) = (vec![0usize; self.code.len()], vec![0usize; self.labels]);
        loop {
            let mut p = 0;
            for (i, s) in self.code.iter().enumerate() {
                pos[i] = p;
                if let Sym::Label(l) = s {
                    at[*l] = p;
                }
                p += size(s, long[i]);
            }
            let mut grew = false;
            for (i, s) in self.code.iter().enumerate() {
                if let (Sym::Jmp(_, _, t, f), false) = (s, long[i]) {
                    let far = |x: &Tgt| matches!(x, Tgt::L(l) if at[*l] > pos[i] + 1 + 255);
                    if far(t) || far(f) {
                        long[i] = true;
                        grew = true;
                    }
                }
            }
            if !grew {
                break;
            }
        }
        let mut out = Vec::new();
        let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        let fwd = |from: usize, to: usize| -> Result<usize> {
            to.checked_sub(from + 1).ok_or_else(|| Error::invalid("seccomp filter: backward jump (internal error)"))
        };
        for (i, s) in self.code.iter().enumerate() {
            let here = out.len();
            match *s {
                Sym::Label(_) => {}
                Sym::Stmt(c, k) => out.push(ins(c, 0, 0, k)),
                Sym::Ja(l) => out.push(ins(JA, 0, 0, fwd(here, at[l])? as u32)),
                Sym::Jmp(c, k, t, f) if !long[i] => {
                    let off = |x: Tgt| -> Result<u8> {
                        match x {
                            Tgt::Next => Ok(0),
                            Tgt::L(l) => Ok(fwd(here, at[l])? as u8),
                        }
                    };
                    out.push(ins(c, off(t)?, off(f)?, k));
                }
                Sym::Jmp(c, k, t, f) => {
                    // Each far target gets a `ja`; the jump lands on it or skips it.
                    let targets: Vec<usize> = [t, f].iter().filter_map(|x| if let Tgt::L(l) = x { Some(*l) } else { None }).collect();
                    let n = targets.len() as u8;
                    let (jt, jf) = match (t, f) {
                        (Tgt::L(_), Tgt::L(_)) => (0, 1),
                        (Tgt::L(_), Tgt::Next) => (0, n),
                        (Tgt::Next, _) => (n, 0),
                    };
                    out.push(ins(c, jt, jf, k));
                    for l in targets {
                        let p = out.len();
                        out.push(ins(JA, 0, 0, fwd(p, at[l])? as u32));
                    }
                }
            }
        }
        if out.len() > MAX_INSNS {
            return Err(Error::invalid(format!("seccomp filter: {} instructions, more than the kernel's {MAX_INSNS}", out.len())));
        }
        Ok(out)
    }
}

/// One condition: falls through when it holds, jumps to `fail` when not.
fn cond(a: &mut Asm, c: &Cmp, bits32: bool, fail: usize) {
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    let pass = a.label();
    let (f, p) = (Tgt::L(fail), Tgt::L(pass));
    if c.op == CmpOp::MaskedEq {
        let (vhi, vlo) = ((c.value_two >> 32) as u32, c.value_two as u32);
        if !bits32 {
            a.ld(arg_hi(c.index));
            a.put(Sym::Stmt(ALU_AND_K, hi));
            a.jmp(JEQ_K, vhi, Tgt::Next, f);
        }
        a.ld(arg_lo(c.index));
        a.put(Sym::Stmt(ALU_AND_K, lo));
        a.jmp(JEQ_K, vlo, Tgt::Next, f);
        a.at(pass);
        return;
    }
    // The high words decide unless equal; then the low words, unsigned.
    if !bits32 {
        a.ld(arg_hi(c.index));
        match c.op {
            CmpOp::Eq => a.jmp(JEQ_K, hi, Tgt::Next, f),
            CmpOp::Ne => a.jmp(JEQ_K, hi, Tgt::Next, p),
            CmpOp::Gt | CmpOp::Ge => {
                a.jmp(JGT_K, hi, p, Tgt::Next);
                a.jmp(JEQ_K, hi, Tgt::Next, f);
            }
            CmpOp::Lt | CmpOp::Le => {
                a.jmp(JGT_K, hi, f, Tgt::Next);
                a.jmp(JEQ_K, hi, Tgt::Next, p);
            }
            CmpOp::MaskedEq => unreachable!("handled above"),
        }
    }
    a.ld(arg_lo(c.index));
    match c.op {
        CmpOp::Eq => a.jmp(JEQ_K, lo, Tgt::Next, f),
        CmpOp::Ne => a.jmp(JEQ_K, lo, f, Tgt::Next),
        CmpOp::Gt => a.jmp(JGT_K, lo, Tgt::Next, f),
        CmpOp::Ge => a.jmp(JGE_K, lo, Tgt::Next, f),
        CmpOp::Lt => a.jmp(JGE_K, lo, f, Tgt::Next),
        CmpOp::Le => a.jmp(JGT_K, lo, f, Tgt::Next),
        CmpOp::MaskedEq => unreachable!("handled above"),
    }
    a.at(pass);
}

/// Binary search over sorted, contiguous ranges `(first number, target)` covering 0..=u32::MAX.
fn search(a: &mut Asm, ranges: &[(u32, usize)]) {
    if let [(_, t)] = ranges {
        a.put(Sym::Ja(*t));
        return;
    }
    let mid = ranges.len() / 2;
    let right = a.label();
    a.jmp(JGE_K, ranges[mid].0, Tgt::L(right), Tgt::Next);
    search(a, &ranges[..mid]);
    a.at(right);
    search(a, &ranges[mid..]);
}

fn section(a: &mut Asm, p: &Profile, host: Arch, arch: Arch, caps: &[String], kernel: (u32, u32), kill: usize) {
    let default = p.default_action();
    let rules: Vec<Rule> = p.rules(host, arch, caps, kernel);
    a.ld(OFF_NR);
    if arch == Arch::X86_64 {
        // x32 shares AUDIT_ARCH_X86_64; its numbers carry this bit. Not covered: refused.
        a.jmp(JGE_K, X32_SYSCALL_BIT, Tgt::L(kill), Tgt::Next);
    }
    // Per call: its rules in the profile's order; an unconditional one ends the list.
    let mut calls: Vec<(u32, Vec<&Rule>)> = Vec::new();
    for r in &rules {
        match calls.iter_mut().find(|(nr, _)| *nr == r.nr) {
            Some((_, v)) => v.push(r),
            None => calls.push((r.nr, vec![r])),
        }
    }
    calls.sort_by_key(|(nr, _)| *nr);
    // One shared `ret` per action; a block for each call with conditions.
    let mut rets: Vec<(Action, usize)> = Vec::new();
    let mut ret_label = |a: &mut Asm, act: Action| -> usize {
        if let Some((_, l)) = rets.iter().find(|(x, _)| *x == act) {
            return *l;
        }
        let l = a.label();
        rets.push((act, l));
        l
    };
    let dflt = ret_label(a, default);
    // Numbers above every one the profile names (below ARM's private calls) are calls newer
    // than the profile: ENOSYS, as runc's stub, unless the default lets everything through.
    let beyond = if matches!(default, Action::Allow | Action::Log) { dflt } else { ret_label(a, Action::Errno(libc::ENOSYS as u16)) };
    let mut blocks = Vec::new();
    let mut targets: Vec<(u32, usize)> = Vec::new();
    for (nr, rs) in &calls {
        let t = match rs.iter().position(|r| r.args.is_empty()) {
            Some(0) => ret_label(a, rs[0].action),
            uncond => {
                let l = a.label();
                blocks.push((l, rs[..uncond.map_or(rs.len(), |u| u + 1)].to_vec()));
                l
            }
        };
        targets.push((*nr, t));
    }
    const PRIVATE: u32 = 0x0f_0000;
    let top = targets.iter().map(|(nr, _)| *nr).filter(|n| *n < PRIVATE).max();
    let gap = |n: u32| if top.is_some_and(|t| n > t) && n < PRIVATE { beyond } else { dflt };
    // The target is constant between these points: merge equal neighbours into ranges.
    let mut points: Vec<u32> = vec![0, PRIVATE];
    points.extend(top.map(|t| t + 1));
    for (nr, _) in &targets {
        points.push(*nr);
        points.extend(nr.checked_add(1));
    }
    points.sort_unstable();
    points.dedup();
    let mut ranges: Vec<(u32, usize)> = Vec::new();
    for n in points {
        let t = targets.binary_search_by_key(&n, |(nr, _)| *nr).map_or_else(|_| gap(n), |i| targets[i].1);
        if ranges.last().is_none_or(|(_, lt)| *lt != t) {
            ranges.push((n, t));
        }
    }
    search(a, &ranges);
    for (l, rs) in blocks {
        a.at(l);
        for r in rs {
            let fail = a.label();
            for c in &r.args {
                cond(a, c, arch.is_32bit(), fail);
            }
            a.ret(r.action);
            a.at(fail);
        }
        a.put(Sym::Ja(dflt));
    }
    for (act, l) in rets {
        a.at(l);
        a.ret(act);
    }
}

/// The program for `arches` (each must be one the kernel of `host` runs).
pub fn generate(p: &Profile, host: Arch, arches: &[Arch], caps: &[String], kernel: (u32, u32)) -> Result<Vec<libc::sock_filter>> {
    let mut a = Asm::default();
    let kill = a.label();
    let starts: Vec<usize> = arches.iter().map(|_| a.label()).collect();
    a.ld(OFF_ARCH);
    for (arch, l) in arches.iter().zip(&starts) {
        a.jmp(JEQ_K, arch.audit(), Tgt::L(*l), Tgt::Next);
    }
    a.put(Sym::Ja(kill));
    for (arch, l) in arches.iter().zip(&starts) {
        a.at(*l);
        section(&mut a, p, host, *arch, caps, kernel, kill);
    }
    a.at(kill);
    a.ret(Action::KillProcess);
    a.assemble()
}
