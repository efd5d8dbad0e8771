//! A classic BPF interpreter for the instructions the generator emits, so tests can run a filter
//! on made-up `seccomp_data` for any architecture without installing it.

use super::bpf::{ALU_AND_K, JA, JEQ_K, JGE_K, JGT_K, LD_W_ABS, RET_K};

/// seccomp_data as the kernel lays it out (little endian).
pub fn data(arch: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

/// Runs `prog` on `data`; the returned value, or a description of what went wrong.
pub fn run(prog: &[libc::sock_filter], data: &[u8; 64]) -> Result<u32, String> {
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = prog.get(pc).ok_or_else(|| format!("ran off the end at {pc}"))?;
        pc += 1;
        let cond = |taken: bool| if taken { i.jt as usize } else { i.jf as usize };
        match i.code {
            LD_W_ABS => {
                let o = i.k as usize;
                let b = data.get(o..o + 4).ok_or_else(|| format!("load out of range at {}", pc - 1))?;
                acc = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            ALU_AND_K => acc &= i.k,
            JA => pc += i.k as usize,
            JEQ_K => pc += cond(acc == i.k),
            JGT_K => pc += cond(acc > i.k),
            JGE_K => pc += cond(acc >= i.k),
            RET_K => return Ok(i.k),
            c => return Err(format!("unknown opcode {c:#x} at {}", pc - 1)),
        }
    }
}
