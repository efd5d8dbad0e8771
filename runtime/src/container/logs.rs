//! Container logs: size-capped ring files, never unbounded (Docker's json-file default fills SD
//! cards). `container.log` is the newest, `container.log.1` ... `.N-1` older ones. Each line is
//! `<RFC 3339 time> <stdout|stderr> <F|P> <text>` (the CRI format: `P` marks a piece of a line
//! longer than the cap, continued by the next entry), so `logs -t`, `--since` and `--tail` need no
//! side index.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::timefmt;

/// Longest line piece written as one entry.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// `none` discards output; `local` (alias `json-file`) writes the ring files.
    pub enabled: bool,
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { enabled: true, max_size: 10 * 1024 * 1024, max_files: 3 }
    }
}

impl LogConfig {
    /// `--log-driver` and `--log-opt` as Docker spells them.
    pub fn parse(driver: Option<&str>, opts: &[String]) -> Result<LogConfig> {
        let mut c = LogConfig::default();
        match driver {
            None | Some("local") | Some("json-file") => {}
            Some("none") => c.enabled = false,
            Some(d) => return Err(Error::invalid(format!("logging driver {d:?} is not supported (local, json-file, none)"))),
        }
        for o in opts {
            let (k, v) = o.split_once('=').ok_or_else(|| Error::invalid(format!("invalid log opt {o:?}: expected key=value")))?;
            match k {
                "max-size" => {
                    let n = crate::cgroup::parse_size(v)?;
                    if n < 4096 {
                        return Err(Error::invalid(format!("max-size {v} is too small (at least 4k)")));
                    }
                    c.max_size = n as u64;
                }
                "max-file" => {
                    c.max_files = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| Error::invalid(format!("invalid max-file {v:?}: a number >= 1")))?;
                }
                "compress" | "mode" | "max-buffer-size" => {}
                _ => return Err(Error::invalid(format!("unknown log opt {k:?} (max-size, max-file)"))),
            }
        }
        Ok(c)
    }
}

pub fn path(dir: &Path, n: u32) -> PathBuf {
    if n == 0 {
        dir.join("container.log")
    } else {
        dir.join(format!("container.log.{n}"))
    }
}

/// The ring's files, oldest first.
pub fn files(dir: &Path, max_files: u32) -> Vec<PathBuf> {
    (0..max_files.max(1)).rev().map(|n| path(dir, n)).filter(|p| p.exists()).collect()
}

/// The writer, run by the container's monitor process.
pub struct Ring {
    dir: PathBuf,
    cfg: LogConfig,
    file: Option<File>,
    size: u64,
    /// An unfinished line per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    /// Lines lost to a full disk since the last one written: counted and reported once, when
    /// writing works again or the container ends, instead of failing the application.
    dropped: u64,
}

impl Ring {
    pub fn new(dir: &Path, cfg: LogConfig) -> Ring {
        Ring { dir: dir.to_path_buf(), cfg, file: None, size: 0, partial: [Vec::new(), Vec::new()], dropped: 0 }
    }

    fn rotate(&mut self) {
        self.file = None;
        for n in (1..self.cfg.max_files).rev() {
            let _ = fs::rename(path(&self.dir, n - 1), path(&self.dir, n));
        }
        if self.cfg.max_files <= 1 {
            let _ = fs::remove_file(path(&self.dir, 0));
        }
    }

    fn entry(&mut self, stream: usize, text: &[u8], full: bool) {
        if !self.cfg.enabled {
            return;
        }
        let mut line =
            format!("{} {} {} ", timefmt::now_nanos(), if stream == 0 { "stdout" } else { "stderr" }, if full { 'F' } else { 'P' })
                .into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        // Once lines are being lost, wait for real room: the slices the agent's reserve gives
        // back for its own records are not for the logs.
        if self.dropped > 0 && crate::fsutil::free_bytes(&self.dir).unwrap_or(0) < 2 * crate::reserve::SLICE {
            return self.drop_line();
        }
        if self.file.is_some() && self.size + line.len() as u64 > self.cfg.max_size {
            self.rotate();
        }
        if self.file.is_none() {
            let p = path(&self.dir, 0);
            match OpenOptions::new().create(true).append(true).open(&p) {
                Ok(f) => {
                    self.size = f.metadata().map_or(0, |m| m.len());
                    self.file = Some(f);
                }
                // Logging must never stop the application: a full disk loses lines, not the app.
                Err(_) => return self.drop_line(),
            }
        }
        let Some(f) = &mut self.file else { return };
        if f.write_all(&line).is_ok() {
            self.size += line.len() as u64;
            self.report_dropped();
        } else {
            // A torn entry would break the next one's parsing: cut the file back to whole lines.
            let _ = f.set_len(self.size);
            self.drop_line();
        }
    }

    fn drop_line(&mut self) {
        if self.dropped == 0 {
            eprintln!("berth: {}: disk full: dropping log lines until there is space again", self.dir.display());
        }
        self.dropped += 1;
    }

    /// The one report of lines lost to a full disk (on the monitor's stderr: the agent's log).
    pub fn report_dropped(&mut self) {
        if self.dropped > 0 {
            eprintln!("berth: {}: {} log lines dropped (disk full)", self.dir.display(), self.dropped);
            self.dropped = 0;
        }
    }

    /// Output read from a stream (0 stdout, 1 stderr), split into lines.
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
            self.entry(stream, &buf[start..start + i], true);
            start += i + 1;
        }
        let mut rest = buf[start..].to_vec();
        while rest.len() > MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            self.entry(stream, &rest, false);
            rest = tail;
        }
        self.partial[stream] = rest;
    }

    /// End of a stream: what is left is a last line without a newline.
    pub fn flush(&mut self, stream: usize) {
        let rest = std::mem::take(&mut self.partial[stream]);
        if !rest.is_empty() {
            self.entry(stream, &rest, false);
        }
    }
}

/// One parsed log entry.
pub struct Entry<'a> {
    pub time: &'a str,
    pub stderr: bool,
    pub full: bool,
    pub text: &'a [u8],
}

pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut it = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(it.next()?).ok()?;
    let stream = it.next()?;
    let tag = it.next()?;
    Some(Entry { time, stderr: stream == b"stderr", full: tag == b"F", text: it.next().unwrap_or(b"") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_rotates_and_keeps_lines_whole() {
        let dir = std::env::temp_dir().join(format!("berth-logs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cfg = LogConfig { enabled: true, max_size: 4096, max_files: 3 };
        let mut r = Ring::new(&dir, cfg.clone());
        for i in 0..500 {
            r.write(i % 2, format!("line {i}\n").as_bytes());
        }
        r.write(0, b"no newline");
        r.flush(0);
        let fs_ = files(&dir, 3);
        assert_eq!(fs_.len(), 3, "three files in the ring");
        for f in &fs_ {
            assert!(fs::metadata(f).unwrap().len() <= 4096);
        }
        let all: Vec<u8> = fs_.iter().flat_map(|f| fs::read(f).unwrap()).collect();
        let lines: Vec<&[u8]> = all.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        // The ring keeps the newest lines, in order, ending with the unfinished one.
        let e = parse(lines[lines.len() - 1]).unwrap();
        assert_eq!((e.text, e.full, e.stderr), (&b"no newline"[..], false, false));
        let e = parse(lines[lines.len() - 2]).unwrap();
        assert_eq!((e.text, e.full, e.stderr), (&b"line 499"[..], true, true));
        assert!(LogConfig::parse(Some("syslog"), &[]).is_err());
        assert!(LogConfig::parse(None, &["max-size=1".into()]).is_err());
        assert_eq!(LogConfig::parse(None, &["max-size=1m".into(), "max-file=2".into()]).unwrap().max_files, 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
