//! gzip (RFC 1952) over miniz_oxide's deflate: a streaming reader of one or more members (as
//! `gzip -c a b`, pigz and some registries write) and a streaming writer.
//!
//! Our own framing rather than flate2: the framing is small and fixed, and flate2 with its
//! crc32fast (a 16 KiB table plus SIMD paths) cost the aarch64 firmware about 40 KB; the deflate
//! code underneath (miniz_oxide) is the same one flate2 used, so speed and output are unchanged
//! but for the CRC, computed here eight bytes at a time from an 8 KiB table (built at run time).

use std::io::{self, BufRead, Read, Write};
use std::sync::OnceLock;

use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// CRC-32 (IEEE, reflected), the checksum of gzip's trailer.
#[derive(Clone, Copy, Default)]
pub struct Crc32(u32);

/// The eight tables of slicing-by-8, built on first use: 8 KiB of heap once per process rather
/// than 8 KiB of every firmware image (a `const` table is stored in the binary).
fn crc_tables() -> &'static [[u32; 256]; 8] {
    static TABLES: OnceLock<Box<[[u32; 256]; 8]>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = Box::new([[0u32; 256]; 8]);
        for (i, e) in t[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        for i in 0..256 {
            for s in 1..8 {
                let prev = t[s - 1][i];
                t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            }
        }
        t
    })
}

impl Crc32 {
    pub fn update(&mut self, data: &[u8]) {
        let crc = crc_tables();
        let mut c = !self.0;
        let mut chunks = data.chunks_exact(8);
        for b in &mut chunks {
            let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            c = crc[7][(lo & 0xff) as usize]
                ^ crc[6][((lo >> 8) & 0xff) as usize]
                ^ crc[5][((lo >> 16) & 0xff) as usize]
                ^ crc[4][(lo >> 24) as usize]
                ^ crc[3][b[4] as usize]
                ^ crc[2][b[5] as usize]
                ^ crc[1][b[6] as usize]
                ^ crc[0][b[7] as usize];
        }
        for &b in chunks.remainder() {
            c = crc[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = !c;
    }

    pub fn sum(&self) -> u32 {
        self.0
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {msg}"))
}

const MAGIC: [u8; 2] = [0x1f, 0x8b];
const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

enum State {
    /// Before a member's header; `first` for the stream's first member (which must be there).
    Header {
        first: bool,
    },
    Body,
    Done,
}

/// Reads the data of every gzip member of `src`, checking each member's CRC and length.
pub struct GzDecoder<R> {
    src: R,
    inflate: Box<InflateState>,
    state: State,
    crc: Crc32,
    len: u32,
}

impl<R: BufRead> GzDecoder<R> {
    pub fn new(src: R) -> GzDecoder<R> {
        GzDecoder {
            src,
            inflate: InflateState::new_boxed(DataFormat::Raw),
            state: State::Header { first: true },
            crc: Crc32::default(),
            len: 0,
        }
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.src.read_exact(&mut b).map_err(|_| bad("truncated header"))?;
        Ok(b[0])
    }

    fn skip_zero_terminated(&mut self) -> io::Result<()> {
        while self.byte()? != 0 {}
        Ok(())
    }

    /// A member's header; false at the end of the stream (after at least one member).
    fn header(&mut self, first: bool) -> io::Result<bool> {
        if !first && self.src.fill_buf()?.is_empty() {
            return Ok(false);
        }
        let mut h = [0u8; 10];
        self.src.read_exact(&mut h).map_err(|_| bad(if first { "truncated header" } else { "data after the last member" }))?;
        if h[..2] != MAGIC {
            return Err(bad(if first { "not gzip data" } else { "data after the last member is not gzip" }));
        }
        if h[2] != 8 {
            return Err(bad("compression method is not deflate"));
        }
        let flags = h[3];
        if flags & 0xe0 != 0 {
            return Err(bad("reserved header flags set"));
        }
        if flags & FEXTRA != 0 {
            let n = u16::from_le_bytes([self.byte()?, self.byte()?]);
            for _ in 0..n {
                self.byte()?;
            }
        }
        if flags & FNAME != 0 {
            self.skip_zero_terminated()?;
        }
        if flags & FCOMMENT != 0 {
            self.skip_zero_terminated()?;
        }
        if flags & FHCRC != 0 {
            self.byte()?;
            self.byte()?;
        }
        self.inflate.reset(DataFormat::Raw);
        self.crc = Crc32::default();
        self.len = 0;
        Ok(true)
    }

    fn trailer(&mut self) -> io::Result<()> {
        let mut t = [0u8; 8];
        self.src.read_exact(&mut t).map_err(|_| bad("truncated member (no trailer)"))?;
        if u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != self.crc.sum() {
            return Err(bad("CRC mismatch (corrupt data)"));
        }
        if u32::from_le_bytes([t[4], t[5], t[6], t[7]]) != self.len {
            return Err(bad("length mismatch (corrupt data)"));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for GzDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Header { first } => {
                    self.state = if self.header(first)? { State::Body } else { State::Done };
                }
                State::Body => {
                    let input = self.src.fill_buf()?;
                    let eof = input.is_empty();
                    let flush = if eof { MZFlush::Finish } else { MZFlush::None };
                    let r = miniz_oxide::inflate::stream::inflate(&mut self.inflate, input, buf, flush);
                    self.src.consume(r.bytes_consumed);
                    let out = &buf[..r.bytes_written];
                    self.crc.update(out);
                    self.len = self.len.wrapping_add(r.bytes_written as u32);
                    match r.status {
                        Ok(MZStatus::StreamEnd) => {
                            self.trailer()?;
                            self.state = State::Header { first: false };
                        }
                        Ok(_) | Err(MZError::Buf) if r.bytes_written == 0 && eof => return Err(bad("truncated member")),
                        Ok(_) | Err(MZError::Buf) => {}
                        Err(_) => return Err(bad("corrupt deflate data")),
                    }
                    if r.bytes_written > 0 {
                        return Ok(r.bytes_written);
                    }
                }
            }
        }
    }
}

/// Writes `w` as one gzip member: compressed as data arrives, the trailer by [`GzEncoder::finish`].
pub struct GzEncoder<W: Write> {
    w: W,
    deflate: Box<CompressorOxide>,
    out: Vec<u8>,
    header_written: bool,
    crc: Crc32,
    len: u32,
}

impl<W: Write> GzEncoder<W> {
    /// `level` 1 (fast) to 9 (best), as gzip's.
    pub fn new(w: W, level: u8) -> GzEncoder<W> {
        // Negative window bits: raw deflate (the gzip framing is ours).
        let flags = create_comp_flags_from_zip_params(i32::from(level.clamp(1, 9)), -15, 0);
        GzEncoder {
            w,
            deflate: Box::new(CompressorOxide::new(flags)),
            out: vec![0; 64 * 1024],
            header_written: false,
            crc: Crc32::default(),
            len: 0,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // No name, no time (reproducible output), "unknown" OS, as `gzip -n` writes.
            self.w.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
            self.header_written = true;
        }
        Ok(())
    }

    fn pump(&mut self, mut input: &[u8], flush: MZFlush) -> io::Result<()> {
        loop {
            let r = miniz_oxide::deflate::stream::deflate(&mut self.deflate, input, &mut self.out, flush);
            self.w.write_all(&self.out[..r.bytes_written])?;
            input = &input[r.bytes_consumed..];
            match r.status {
                Ok(MZStatus::StreamEnd) => return Ok(()),
                Ok(_) | Err(MZError::Buf) => {
                    let progressed = r.bytes_written > 0 || r.bytes_consumed > 0;
                    // All input taken and the output not filled: nothing is waiting to come out.
                    let drained = input.is_empty() && r.bytes_written < self.out.len();
                    if flush != MZFlush::Finish && drained {
                        return Ok(());
                    }
                    if !progressed {
                        return Err(io::Error::other("gzip: the compressor stopped making progress"));
                    }
                }
                Err(e) => return Err(io::Error::other(format!("gzip: compressor error {e:?}"))),
            }
        }
    }

    /// Ends the member (rest of the deflate stream and the trailer) and gives the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.header()?;
        self.pump(&[], MZFlush::Finish)?;
        let mut t = [0u8; 8];
        t[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        t[4..].copy_from_slice(&self.len.to_le_bytes());
        self.w.write_all(&t)?;
        self.w.flush()?;
        Ok(self.w)
    }
}

impl<W: Write> Write for GzEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.header()?;
        self.pump(data, MZFlush::None)?;
        self.crc.update(data);
        self.len = self.len.wrapping_add(data.len() as u32);
        Ok(data.len())
    }

    /// Pushes out what the compressor holds (a sync flush), so the bytes so far can be read back.
    fn flush(&mut self) -> io::Result<()> {
        self.header()?;
        self.pump(&[], MZFlush::Sync)?;
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn gunzip_all(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzDecoder::new(data).read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: words with a counter.
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(format!("line {i} of the sample {}\n", i.wrapping_mul(2654435761) % 1000).as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn tool(name: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut c = Command::new(name)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} (Debian package gzip) is needed: {e}"));
        let mut stdin = c.stdin.take().unwrap();
        let data = input.to_vec();
        let t = std::thread::spawn(move || stdin.write_all(&data));
        let out = c.wait_with_output().unwrap();
        t.join().unwrap().unwrap();
        assert!(out.status.success(), "{name} {args:?} failed");
        out.stdout
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut c = Crc32::default();
        c.update(b"123456789");
        assert_eq!(c.sum(), 0xcbf4_3926);
        // Split anywhere, the same sum.
        let data = sample(10_000);
        let mut whole = Crc32::default();
        whole.update(&data);
        for cut in [0, 1, 7, 8, 9, 4095, 9999] {
            let mut parts = Crc32::default();
            parts.update(&data[..cut]);
            parts.update(&data[cut..]);
            assert_eq!(parts.sum(), whole.sum(), "cut at {cut}");
        }
    }

    #[test]
    fn reads_what_gzip_writes_and_gzip_reads_what_we_write() {
        for n in [0, 1, 100, 70_000, 1 << 20] {
            let data = sample(n);
            // gzip(1) with a name and a time in the header, and several members.
            let theirs = tool("gzip", &["-c", "-9"], &data);
            assert_eq!(gunzip_all(&theirs).unwrap(), data, "{n} bytes from gzip");
            let mut two = theirs.clone();
            two.extend_from_slice(&theirs);
            assert_eq!(gunzip_all(&two).unwrap(), [data.clone(), data.clone()].concat(), "two members");
            // Ours, written in odd-sized pieces, read back by gzip -d and by us.
            for level in [1, 6] {
                let mut e = GzEncoder::new(Vec::new(), level);
                for piece in data.chunks(3333) {
                    e.write_all(piece).unwrap();
                }
                let ours = e.finish().unwrap();
                assert_eq!(tool("gzip", &["-dc"], &ours), data, "{n} bytes at level {level}, read by gzip");
                assert_eq!(gunzip_all(&ours).unwrap(), data);
            }
        }
    }

    #[test]
    fn reads_through_a_small_buffer() {
        let data = sample(300_000);
        let gz = tool("gzip", &["-c"], &data);
        let mut d = GzDecoder::new(io::BufReader::with_capacity(7, &gz[..]));
        let mut out = Vec::new();
        let mut buf = [0u8; 13];
        loop {
            let n = d.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
    }

    #[test]
    fn refuses_corrupt_and_truncated_data() {
        let data = sample(50_000);
        let gz = tool("gzip", &["-c"], &data);
        let err = |b: &[u8]| gunzip_all(b).unwrap_err().to_string();
        assert!(err(b"not gzip at all").contains("not gzip"), "{}", err(b"not gzip at all"));
        assert!(err(&gz[..5]).contains("truncated"));
        assert!(err(&gz[..gz.len() / 2]).contains("truncated"), "{}", err(&gz[..gz.len() / 2]));
        assert!(err(&gz[..gz.len() - 3]).contains("truncated member"));
        let mut crc = gz.clone();
        let at = crc.len() - 8;
        crc[at] ^= 1;
        assert!(err(&crc).contains("CRC mismatch"));
        let mut len = gz.clone();
        let at = len.len() - 1;
        len[at] ^= 1;
        assert!(err(&len).contains("length mismatch"));
        let mut junk = gz.clone();
        junk.extend_from_slice(b"trailing junk");
        assert!(err(&junk).contains("data after the last member is not gzip"));
        let mut flipped = gz.clone();
        flipped[40] ^= 0xff;
        assert!(gunzip_all(&flipped).is_err(), "a flipped byte in the deflate data is caught");
        assert!(err(&[]).contains("truncated header"));
    }
}
