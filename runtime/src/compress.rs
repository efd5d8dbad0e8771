//! Compression detected from the first bytes of a stream, never from names or media types, which
//! lie in real files. Decoders are pure Rust and streaming: memory stays bounded.

use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// Wraps `r` in the decoder its first bytes call for.
pub fn decoder<'a, R: BufRead + 'a>(r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    decoder_of(Box::new(r))
}

/// The decoders for one source type only: a copy of each decoder per caller's reader type cost the
/// firmware about 20 KB.
fn decoder_of<'a>(mut r: Box<dyn BufRead + 'a>) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let head = r.fill_buf()?;
    let c = Compression::detect(head);
    let d: Box<dyn Read + 'a> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(crate::gzip::GzDecoder::new(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Compression::Xz => Box::new(BufReader::new(lzma_rust2::XzReader::new(r, true))),
        Compression::Zstd => Box::new(ZstdReader { src: r, dec: ruzstd::decoding::FrameDecoder::new(), in_frame: false }),
    };
    Ok((c, d))
}

/// A zstd stream of one or more frames (pzstd and `zstd -T` write several); ruzstd's own
/// streaming decoder stops after the first.
struct ZstdReader<R> {
    src: R,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.dec.reset(&mut self.src) {
                    Ok(()) => self.in_frame = true,
                    // Skippable frames carry metadata only; the decoder consumed them already.
                    Err(ruzstd::decoding::errors::FrameDecoderError::ReadFrameHeaderError(
                        ruzstd::decoding::errors::ReadFrameHeaderError::SkipFrame { .. },
                    )) => continue,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))),
                }
            }
            if self.dec.can_collect() == 0 && !self.dec.is_finished() {
                self.dec
                    .decode_blocks(&mut self.src, ruzstd::decoding::BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
                continue;
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() && self.dec.can_collect() == 0 {
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_from_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn gzip_members_concatenated() {
        let mut all = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = crate::gzip::GzEncoder::new(Vec::new(), 1);
            e.write_all(part).unwrap();
            all.extend(e.finish().unwrap());
        }
        let (c, mut d) = decoder(&all[..]).unwrap();
        assert_eq!(c, Compression::Gzip);
        let mut out = String::new();
        d.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
    }
}
