//! sha256 digests: the only kind berth stores or accepts, always checked against content.
//!
//! The hashing is ring's: the firmware links ring for TLS anyway, and its SHA-256 is assembly
//! that uses the CPU's SHA instructions where they exist (ARMv8 SHA2, x86 SHA-NI) and NEON on
//! armv7. sha2 built at the firmware's opt-level "z" left its SHA-NI intrinsics as calls: 4.3
//! times the CPU time for `load` of the bench's 208 MB image on x86_64.

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, Read, Write};

use crate::error::{Error, Result};

/// The sha256 of `data`, as its 32 bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = Hasher::new();
    h.update(data);
    h.finish_bytes()
}

/// `bytes` as lower-case hex, two characters each.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// A sha256 digest, kept as 64 lower-case hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 hex>`.
    pub fn parse(s: &str) -> Result<Digest> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Self::from_hex(hex),
            None => Err(Error::invalid(format!("unsupported digest {s:?}: only sha256 is supported"))),
        }
    }
    pub fn from_hex(hex: &str) -> Result<Digest> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest(hex.to_string()))
        } else {
            Err(Error::invalid(format!("invalid sha256 digest {hex:?}")))
        }
    }
    pub fn of(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finish()
    }
    pub fn hex(&self) -> &str {
        &self.0
    }
    /// The 12-character form Docker shows.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

#[derive(Clone)]
pub struct Hasher {
    h: Context,
    count: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Hasher { h: Context::new(&SHA256), count: 0 }
    }
    pub fn update(&mut self, b: &[u8]) {
        self.h.update(b);
        self.count += b.len() as u64;
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn finish(self) -> Digest {
        Digest(to_hex(&self.finish_bytes()))
    }
    /// The digest's 32 bytes.
    pub fn finish_bytes(self) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(self.h.finish().as_ref());
        out
    }
}

/// Hashes everything read through it.
pub struct HashReader<R> {
    pub inner: R,
    pub hasher: Hasher,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader { inner, hasher: Hasher::new() }
    }
    /// Reads (and hashes) whatever is left, so the digest covers the whole stream.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes everything written through it.
pub struct HashWriter<W> {
    pub inner: W,
    pub hasher: Hasher,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter { inner, hasher: Hasher::new() }
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `magic`, the body's sha256 (64 hex digits), the body: a small record whose torn or damaged
/// copy is recognised when read (container records, the update journal).
pub fn seal(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut data = magic.to_vec();
    data.extend_from_slice(Digest::of(body).hex().as_bytes());
    data.extend_from_slice(body);
    data
}

/// The body of a record made by `seal`, if `data` is whole and undamaged.
pub fn unseal<'a>(magic: &[u8; 8], data: &'a [u8]) -> Option<&'a [u8]> {
    if data.len() < 72 || &data[..8] != magic {
        return None;
    }
    let (sum, body) = data[8..].split_at(64);
    (Digest::of(body).hex().as_bytes() == sum).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_parsing() {
        let d = Digest::of(b"");
        assert_eq!(d.hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse("sha256:ABCD").is_err());
        assert!(Digest::from_hex(&"g".repeat(64)).is_err());
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn hex_of_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(to_hex(&all), want);
        assert_eq!(to_hex(&[]), "");
    }
}
