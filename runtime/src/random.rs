//! Random bytes for ids, names, tokens and jitter, none of them a key: getrandom(2) without
//! waiting for the entropy pool (GRND_INSECURE, what /dev/urandom gives: a board early in its boot
//! may have no entropy yet), one system call where /dev/urandom takes an open, a read and a close;
//! /dev/urandom itself on kernels before 5.6.

use std::io::{self, Read};

/// Fills `buf`.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`, which we own.
        let n = unsafe { libc::syscall(libc::SYS_getrandom, rest.as_mut_ptr(), rest.len(), libc::GRND_INSECURE) };
        match usize::try_from(n) {
            Ok(n) => done += n,
            Err(_) if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            // ENOSYS, or EINVAL for a flag the kernel does not know yet.
            Err(_) => return std::fs::File::open("/dev/urandom")?.read_exact(rest),
        }
    }
    Ok(())
}

/// `n` random bytes as lower-case hex (container, network and volume ids: 32).
pub fn hex(n: usize) -> io::Result<String> {
    let mut b = vec![0u8; n];
    fill(&mut b)?;
    Ok(crate::digest::to_hex(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_of_the_length_asked_and_differ() {
        let (a, b) = (super::hex(32).unwrap(), super::hex(32).unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{a}");
        assert_ne!(a, b);
        let mut big = vec![0u8; 4096];
        super::fill(&mut big).unwrap();
        assert!(big.iter().filter(|x| **x == 0).count() < 100, "4 KiB of random bytes, mostly zero");
    }
}
