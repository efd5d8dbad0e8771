//! A streaming tar reader (ustar, GNU and PAX) that hands out every non-content byte it reads, so a
//! layer's exact byte stream can be rebuilt from its unpacked files (the tar-split idea Docker and
//! containers/storage use) instead of keeping a second copy of each layer on flash.

use std::io::{self, Read};

use crate::error::{Error, Result};

const BLOCK: usize = 512;
/// Extension records (long names, PAX) are small in real archives; the cap keeps a hostile one
/// from using unbounded memory.
const MAX_EXT: u64 = 1 << 20;
pub const PATH_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// As stored (may be absolute or hold `..`): callers normalise it.
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub struct TarReader<R> {
    inner: R,
    /// Content bytes of the current entry not yet read, and the padding after them.
    remaining: u64,
    pad: usize,
    done: bool,
    raw: Vec<u8>,
    record: bool,
    global: Pax,
}

#[derive(Default, Clone)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn truncated() -> Error {
    Error::invalid("archive is truncated")
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read archive", e)),
        }
    }
    Ok(n)
}

fn octal(field: &[u8]) -> Result<u64> {
    // GNU base-256 for values that do not fit in octal (large sizes, negative or huge ids).
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256).and_then(|v| v.checked_add(u64::from(b))).ok_or_else(|| Error::invalid("numeric field overflows"))?;
        }
        return Ok(v);
    }
    let s: Vec<u8> = field.iter().copied().skip_while(|b| *b == b' ' || *b == 0).take_while(|b| *b != b' ' && *b != 0).collect();
    if s.is_empty() {
        return Ok(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return Err(Error::invalid("malformed tar header: bad octal field"));
        }
        v = v.checked_mul(8).and_then(|v| v.checked_add(u64::from(b - b'0'))).ok_or_else(|| Error::invalid("numeric field overflows"))?;
    }
    Ok(v)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

/// True if `block` is a tar header with a valid checksum (how a layer is told from other blobs).
pub fn is_header(block: &[u8]) -> bool {
    if block.len() < BLOCK {
        return false;
    }
    let Ok(want) = octal(&block[148..156]) else { return false };
    let sum: u64 = block[..BLOCK].iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) }).sum();
    let ssum: i64 = block[..BLOCK].iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { i64::from(*b as i8) }).sum();
    want == sum || want as i64 == ssum
}

fn parse_pax(data: &[u8], into: &mut Pax) -> Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let sp = rest.iter().position(|b| *b == b' ').ok_or_else(|| Error::invalid("malformed PAX record"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::invalid("malformed PAX record length"))?;
        if len <= sp + 1 || len > rest.len() {
            return Err(Error::invalid("malformed PAX record length"));
        }
        let rec = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let eq = rec.iter().position(|b| *b == b'=').ok_or_else(|| Error::invalid("malformed PAX record"))?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        let num = || std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| Error::invalid("malformed PAX number"));
        match k {
            b"path" => into.path = Some(v.to_vec()),
            b"linkpath" => into.link = Some(v.to_vec()),
            b"size" => into.size = Some(num()?),
            b"uid" => into.uid = Some(num()?),
            b"gid" => into.gid = Some(num()?),
            b"mtime" => {
                let s = std::str::from_utf8(v).unwrap_or("0");
                let secs = s.split('.').next().unwrap_or("0");
                into.mtime = secs.parse().ok();
            }
            _ => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    into.xattrs.push((name.to_vec(), v.to_vec()));
                }
            }
        }
    }
    Ok(())
}

impl<R: Read> TarReader<R> {
    pub fn into_inner(self) -> R {
        self.inner
    }

    pub fn new(inner: R) -> Self {
        TarReader { inner, remaining: 0, pad: 0, done: false, raw: Vec::new(), record: true, global: Pax::default() }
    }

    /// A reader that keeps none of the non-content bytes (for archives that are not rebuilt).
    pub fn without_raw(inner: R) -> Self {
        TarReader { record: false, ..Self::new(inner) }
    }

    /// The bytes read since the last call that were not file content: headers, extension records,
    /// padding, the end-of-archive blocks. Concatenated with the contents in order, they are the
    /// archive byte for byte.
    pub fn take_raw(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.raw)
    }

    fn read_block(&mut self, buf: &mut [u8; BLOCK]) -> Result<usize> {
        let n = read_full(&mut self.inner, buf)?;
        if self.record {
            self.raw.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }

    fn read_ext(&mut self, size: u64) -> Result<Vec<u8>> {
        if size > MAX_EXT {
            return Err(Error::invalid(format!("tar extension record of {size} bytes is too large")));
        }
        let padded = (size as usize).div_ceil(BLOCK) * BLOCK;
        let mut data = vec![0u8; padded];
        if read_full(&mut self.inner, &mut data)? != padded {
            return Err(truncated());
        }
        if self.record {
            self.raw.extend_from_slice(&data);
        }
        data.truncate(size as usize);
        Ok(data)
    }

    /// Skips what is left of the current entry's content.
    pub fn skip_content(&mut self) -> Result<()> {
        let n = io::copy(&mut self.by_ref().take(u64::MAX), &mut io::sink()).map_err(|e| Error::io("read archive", e))?;
        let _ = n;
        if self.remaining != 0 {
            return Err(truncated());
        }
        Ok(())
    }

    /// Reads the next header. The previous entry's content must have been read or skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        if self.remaining > 0 {
            self.skip_content()?;
        }
        if self.pad > 0 {
            let mut p = [0u8; BLOCK];
            let want = self.pad;
            if read_full(&mut self.inner, &mut p[..want])? != want {
                return Err(truncated());
            }
            if self.record {
                self.raw.extend_from_slice(&p[..want]);
            }
            self.pad = 0;
        }
        let mut local = Pax::default();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let mut h = [0u8; BLOCK];
            let n = self.read_block(&mut h)?;
            if n == 0 {
                // No end-of-archive blocks at all: accepted, as GNU tar and Docker do.
                self.done = true;
                return Ok(None);
            }
            if n != BLOCK {
                return Err(truncated());
            }
            if h.iter().all(|b| *b == 0) {
                // End of archive; everything after it belongs to the stream but not to any entry.
                self.done = true;
                if self.record {
                    let mut tail = Vec::new();
                    self.inner.read_to_end(&mut tail).map_err(|e| Error::io("read archive", e))?;
                    self.raw.extend_from_slice(&tail);
                } else {
                    io::copy(&mut self.inner, &mut io::sink()).map_err(|e| Error::io("read archive", e))?;
                }
                return Ok(None);
            }
            if !is_header(&h) {
                return Err(Error::invalid("malformed tar header (bad checksum): not a tar archive, or corrupt"));
            }
            let typ = h[156];
            let size = octal(&h[124..136])?;
            match typ {
                b'L' => {
                    let d = self.read_ext(size)?;
                    long_name = Some(cstr(&d).to_vec());
                    continue;
                }
                b'K' => {
                    let d = self.read_ext(size)?;
                    long_link = Some(cstr(&d).to_vec());
                    continue;
                }
                b'x' | b'X' => {
                    let d = self.read_ext(size)?;
                    parse_pax(&d, &mut local)?;
                    continue;
                }
                b'g' => {
                    let d = self.read_ext(size)?;
                    let mut g = std::mem::take(&mut self.global);
                    parse_pax(&d, &mut g)?;
                    self.global = g;
                    continue;
                }
                b'S' => return Err(Error::invalid("GNU sparse files in layers are not supported")),
                _ => {}
            }
            let ustar = &h[257..262] == b"ustar";
            let mut path = match long_name.take().or_else(|| local.path.take()).or_else(|| self.global.path.clone()) {
                Some(p) => p,
                None => {
                    let name = cstr(&h[0..100]);
                    let prefix = if ustar && h[262] == 0 { cstr(&h[345..500]) } else { &[][..] };
                    if prefix.is_empty() {
                        name.to_vec()
                    } else {
                        [prefix, b"/", name].concat()
                    }
                }
            };
            let link = long_link
                .take()
                .or_else(|| local.link.take())
                .or_else(|| self.global.link.clone())
                .unwrap_or_else(|| cstr(&h[157..257]).to_vec());
            if path.len() > PATH_MAX || link.len() > PATH_MAX {
                return Err(Error::invalid(format!(
                    "tar entry name of {} bytes is longer than PATH_MAX ({PATH_MAX})",
                    path.len().max(link.len())
                )));
            }
            let size = local.size.or(self.global.size).unwrap_or(size);
            let kind = match typ {
                b'0' | 0 | b'7' => {
                    if path.last() == Some(&b'/') {
                        Kind::Dir
                    } else {
                        Kind::File
                    }
                }
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::Char,
                b'4' => Kind::Block,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                other => {
                    return Err(Error::invalid(format!(
                        "unsupported tar entry type {:?} for {}",
                        other as char,
                        String::from_utf8_lossy(&path)
                    )))
                }
            };
            while path.len() > 1 && path.last() == Some(&b'/') {
                path.pop();
            }
            // Only regular files carry content; anything else with a size is skipped as data.
            self.remaining = size;
            self.pad = ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize;
            let mut xattrs = self.global.xattrs.clone();
            xattrs.extend(local.xattrs);
            return Ok(Some(Entry {
                kind,
                path,
                link,
                size: if kind == Kind::File { size } else { 0 },
                mode: (octal(&h[100..108])? & 0o7777) as u32,
                uid: local.uid.or(self.global.uid).map_or_else(|| octal(&h[108..116]), Ok)?,
                gid: local.gid.or(self.global.gid).map_or_else(|| octal(&h[116..124]), Ok)?,
                mtime: match local.mtime.or(self.global.mtime) {
                    Some(m) => m,
                    None => octal(&h[136..148])? as i64,
                },
                dev_major: octal(&h[329..337]).unwrap_or(0) as u32,
                dev_minor: octal(&h[337..345]).unwrap_or(0) as u32,
                xattrs,
            }));
        }
    }
}

/// Reads the current entry's content; returns 0 at its end.
impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive is truncated"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], typ: u8, size: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = typ;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn archive(parts: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, typ, data) in parts {
            out.extend_from_slice(&header(name, *typ, data.len() as u64));
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn raw_plus_content_is_the_archive() {
        let long = vec![b'x'; 300];
        let mut pax = format!("{} path={}\n", 6 + 300 + 5 + 3, String::from_utf8_lossy(&long)).into_bytes();
        // Record length counts itself: fix it up until it is consistent.
        let len = pax.len();
        pax = format!("{len} path={}\n", String::from_utf8_lossy(&long)).into_bytes();
        assert_eq!(pax.len(), len);
        let a = archive(&[(b"dir/", b'5', b""), (b"pax", b'x', &pax), (b"short", b'0', b"hello"), (b"f", b'0', b"abc")]);
        let mut r = TarReader::new(&a[..]);
        let mut rebuilt = Vec::new();
        let mut names = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            rebuilt.extend(r.take_raw());
            let mut c = Vec::new();
            r.read_to_end(&mut c).unwrap();
            rebuilt.extend(c);
            names.push((e.kind, e.path));
        }
        rebuilt.extend(r.take_raw());
        assert_eq!(rebuilt, a);
        assert_eq!(names[0], (Kind::Dir, b"dir".to_vec()));
        assert_eq!(names[1], (Kind::File, long));
        assert_eq!(names[2], (Kind::File, b"f".to_vec()));
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let a = archive(&[(b"f", b'0', &[7u8; 2000])]);
        let mut r = TarReader::new(&a[..1000]);
        r.next_entry().unwrap();
        assert!(r.skip_content().is_err());
        let mut r = TarReader::new(&b"{\"not\": \"a tar\"}"[..]);
        assert!(r.next_entry().is_err());
        let mut bad = header(b"f", b'0', 0);
        bad[0] = b'g';
        assert!(TarReader::new(&bad[..]).next_entry().is_err());
    }

    #[test]
    fn base256_and_octal() {
        assert_eq!(octal(b"0000644\0").unwrap(), 0o644);
        assert_eq!(octal(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap(), 65536);
        assert!(octal(b"12z").is_err());
    }

    #[test]
    fn long_names_refused_past_path_max() {
        let long = vec![b'a'; PATH_MAX + 10];
        let a = archive(&[(b"././@LongLink", b'L', &long), (b"x", b'0', b"")]);
        let err = TarReader::new(&a[..]).next_entry().unwrap_err();
        assert!(err.to_string().contains("PATH_MAX"), "{err}");
    }
}
