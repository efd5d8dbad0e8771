//! Container logs: size-capped ring files, never unbounded (Docker's json-file default fills SD
//! cards). `container.log` is the newest, `container.log.1` ... `.N-1` older ones. Each line is
//! `<RFC 3339 time> <stdout|stderr> <F|P> <text>` (the CRI format: `P` marks a piece of a line
//! longer than the cap, continued by the next entry), so `logs -t`, `--since` and `--tail` need no
//! side index. The newest file is grown ahead of its data in zeroed steps and lines are written
//! in place (see `PREPARED`): its data ends at a NUL where a line would start.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
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

/// How far ahead of the written data the newest file is made ready. An append that grows a file
/// changes its size, a metadata write journaled at every ext4 commit (5 s); a line written in
/// place, in blocks that are already there, is only a data page written back (about every 30 s).
/// So the file is grown in steps of this much (never past `max-size`), and the lines are written
/// at the end of the data; readers stop at a NUL where a line would start. A step is small enough
/// that a container that logs little does not pay for a whole `max-size` at its start.
///
/// A step is zeros written once (blocks allocated and initialised, so later lines change no
/// metadata), not fallocate (unwritten extents: the first write of each block converts its
/// extent, a metadata change). Measured on the emulated board with `scripts/power-cut --wear`,
/// 10 containers logging a line a second: zeros 12.2 MiB/h, fallocate 28.8 MiB/h
/// (docs/storage.md, "Flash wear").
const PREPARED: u64 = 64 * 1024;

/// The writer, run by the container's monitor process.
pub struct Ring {
    dir: PathBuf,
    cfg: LogConfig,
    file: Option<File>,
    /// End of the written data in `file` (whole lines).
    size: u64,
    /// Length of `file`: from `size` to here it holds zeros.
    len: u64,
    /// An unfinished line per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    /// Lines lost to a full disk since the last one written: counted and reported once, when
    /// writing works again or the container ends, instead of failing the application.
    dropped: u64,
}

impl Ring {
    pub fn new(dir: &Path, cfg: LogConfig) -> Ring {
        Ring { dir: dir.to_path_buf(), cfg, file: None, size: 0, len: 0, partial: [Vec::new(), Vec::new()], dropped: 0 }
    }

    /// Closes the newest file, cut to its data (the older files keep no zero tail), and shifts
    /// the ring.
    fn rotate(&mut self) {
        if let Some(f) = self.file.take() {
            if self.len > self.size {
                let _ = f.set_len(self.size);
            }
        }
        for n in (1..self.cfg.max_files).rev() {
            let _ = fs::rename(path(&self.dir, n - 1), path(&self.dir, n));
        }
        if self.cfg.max_files <= 1 {
            let _ = fs::remove_file(path(&self.dir, 0));
        }
    }

    /// Opens the newest file and finds the end of its data again (after a monitor restart, an
    /// agent crash or a power cut): a torn last line is zeroed, the next line starts there.
    fn open(&mut self) -> std::io::Result<()> {
        let f = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path(&self.dir, 0))?;
        let len = f.metadata()?.len();
        let (end, dirty) = data_end(&f, len)?;
        if dirty > end {
            f.write_all_at(&vec![0; (dirty - end) as usize], end)?;
        }
        (self.size, self.len, self.file) = (end, len, Some(f));
        Ok(())
    }

    /// Makes the file ready up to `need` bytes (and a step beyond, within `max-size`).
    fn prepare(&mut self, need: u64) -> std::io::Result<()> {
        let Some(f) = &self.file else { return Ok(()) };
        if need <= self.len {
            return Ok(());
        }
        let to = need.div_ceil(PREPARED).saturating_mul(PREPARED).min(self.cfg.max_size).max(need);
        match f.write_all_at(&vec![0; (to - self.len) as usize], self.len) {
            Ok(()) => {
                self.len = to;
                Ok(())
            }
            Err(e) => {
                // Give back what part of the step was made: a full disk keeps its last bytes.
                let _ = f.set_len(self.len);
                Err(e)
            }
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
        // Logging must never stop the application: a full disk loses lines, not the app.
        if self.file.is_none() && self.open().is_err() {
            self.file = None;
            return self.drop_line();
        }
        if self.prepare(self.size + line.len() as u64).is_err() {
            return self.drop_line();
        }
        let Some(f) = &self.file else { return };
        if f.write_all_at(&line, self.size).is_ok() {
            self.size += line.len() as u64;
            self.report_dropped();
        } else {
            // A torn entry would break the next one's parsing: zero it back to whole lines.
            let _ = f.write_all_at(&vec![0; line.len()], self.size);
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

/// Where the data of a log file ends, and where its non-zero bytes end (past the first when the
/// last line is torn: a power cut kept its start, not its newline). Read backwards from the end:
/// only the zero tail and the last line are read.
fn data_end(f: &File, len: u64) -> std::io::Result<(u64, u64)> {
    const STEP: u64 = 16 * 1024;
    let mut buf = vec![0u8; STEP as usize];
    let mut dirty = None;
    let mut to = len;
    while to > 0 {
        let from = to.saturating_sub(STEP);
        let chunk = &mut buf[..(to - from) as usize];
        f.read_exact_at(chunk, from)?;
        for i in (0..chunk.len()).rev() {
            let at = from + i as u64;
            match (dirty, chunk[i]) {
                (None, 0) => {}
                (None, b'\n') => return Ok((at + 1, at + 1)),
                (None, _) => dirty = Some(at + 1),
                (Some(d), b'\n') => return Ok((at + 1, d)),
                (Some(_), _) => {}
            }
        }
        to = from;
    }
    Ok((0, dirty.unwrap_or(0)))
}

/// The whole lines of a log file, from a given offset, without their newline. The data ends at
/// a NUL where a line would start (the zeros the writer made ready) or at a line without its
/// newline (being written, or torn by a power cut); `pos` is then where the next line will be.
struct Lines<R> {
    rd: std::io::BufReader<R>,
    pos: u64,
}

impl<R: std::io::Read> Lines<R> {
    /// `r` must be at offset `pos` of the file.
    pub fn new(r: R, pos: u64) -> Lines<R> {
        Lines { rd: std::io::BufReader::with_capacity(64 * 1024, r), pos }
    }

    /// The next whole line into `line` (cleared first); false at the end of the data.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<bool> {
        use std::io::BufRead;
        line.clear();
        match self.rd.fill_buf()?.first().copied() {
            None => return Ok(false),
            Some(0) if !self.skip_gap()? => return Ok(false),
            Some(_) => {}
        }
        let n = self.rd.read_until(b'\n', line)?;
        if line.last() != Some(&b'\n') {
            line.clear();
            return Ok(false);
        }
        line.pop();
        self.pos += n as u64;
        Ok(true)
    }

    /// At zeros where a line would start: the end of the data, unless lines follow them. They do
    /// when a power cut kept a later page of the file and lost an earlier one: then the gap is
    /// skipped, with what follows it up to the first newline (the rest of a line the gap cut;
    /// a line that began exactly at the gap's end is lost with it), and the next line is read.
    /// At the end of the file nothing is skipped: `pos` stays where the next line will be written.
    fn skip_gap(&mut self) -> std::io::Result<bool> {
        use std::io::BufRead;
        let mut zeros = 0u64;
        loop {
            let buf = self.rd.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            match buf.iter().position(|b| *b != 0) {
                Some(i) => {
                    self.rd.consume(i);
                    zeros += i as u64;
                    break;
                }
                None => {
                    let n = buf.len();
                    self.rd.consume(n);
                    zeros += n as u64;
                }
            }
        }
        let mut cut = Vec::new();
        let n = self.rd.read_until(b'\n', &mut cut)?;
        if cut.last() != Some(&b'\n') {
            return Ok(false);
        }
        self.pos += zeros + n as u64;
        Ok(self.rd.fill_buf()?.first().is_some_and(|b| *b != 0) || self.skip_gap()?)
    }

    /// The offset after the last whole line read.
    pub fn pos(&self) -> u64 {
        self.pos
    }
}

/// A log file's whole lines from `pos` on, and the offset after the last one.
pub fn read_from(file: &mut File, pos: u64, mut each: impl FnMut(&[u8])) -> std::io::Result<u64> {
    read_each(file, pos, &mut |l| {
        each(l);
        Ok(())
    })
}

/// As [`read_from`], stopping at the first error `each` returns.
fn read_each(file: &mut File, pos: u64, each: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(pos))?;
    let mut lines = Lines::new(&mut *file, pos);
    let mut line = Vec::new();
    while lines.next_line(&mut line)? {
        each(&line)?;
    }
    Ok(lines.pos())
}

/// A reader that keeps up with a container's log ring, for `logs -f` and `compose logs -f`:
/// every line there is first (oldest file first), then the lines written after, across a
/// rotation (the old file's last lines, then the new file's).
pub struct Follower {
    newest: PathBuf,
    /// The newest file as last read: its inode (a rotation puts another at the path) and the
    /// offset after its last whole line.
    current: Option<(File, u64, u64)>,
}

impl Follower {
    /// Gives every whole line of the ring in `dir` to `each`, oldest first; the follower then
    /// stands after the newest file's last line. Errors name the file read.
    pub fn open(dir: &Path, max_files: u32, each: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<Follower> {
        use std::os::unix::fs::MetadataExt;
        let newest = path(dir, 0);
        let mut current = None;
        for f in files(dir, max_files) {
            let Ok(mut file) = File::open(&f) else { continue };
            let ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
            let end = read_each(&mut file, 0, each).map_err(|e| in_file(&f, e))?;
            if f == newest {
                current = Some((file, ino, end));
            }
        }
        Ok(Follower { newest, current })
    }

    /// Gives `each` the lines written since the last call; true when any came or the ring
    /// rotated (then call again at once).
    pub fn step(&mut self, each: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let mut progressed = false;
        if let Some((f, _, pos)) = &mut self.current {
            let from = *pos;
            *pos = read_each(f, from, each).map_err(|e| in_file(&self.newest, e))?;
            progressed = *pos != from;
        }
        let now = fs::metadata(&self.newest).map(|m| m.ino()).ok();
        if now.is_some() && now != self.current.as_ref().map(|c| c.1) {
            if let Ok(f) = File::open(&self.newest) {
                // The old file's last lines, written before it was rotated.
                if let Some((old, _, pos)) = &mut self.current {
                    read_each(old, *pos, each).map_err(|e| in_file(&self.newest, e))?;
                }
                self.current = Some((f, now.unwrap_or(0), 0));
                return Ok(true);
            }
        }
        Ok(progressed)
    }
}

/// An error with the file's name (its kind kept), but for a closed pipe, which passes as it is.
fn in_file(f: &Path, e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return e;
    }
    std::io::Error::new(e.kind(), format!("read {}: {e}", f.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-logs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn readers_skip_a_gap_that_a_power_cut_left_before_later_lines() {
        let dir = temp_dir("gap");
        let p = dir.join("container.log");
        let mut data = b"1 stdout F one\n".to_vec();
        data.extend(std::iter::repeat_n(0u8, 4096));
        data.extend_from_slice(b"of a line the gap cut\n2 stdout F two\n");
        let end = data.len() as u64;
        data.extend(std::iter::repeat_n(0u8, 8192));
        fs::write(&p, &data).unwrap();
        let mut got = Vec::new();
        let pos = read_from(&mut File::open(&p).unwrap(), 0, |l| got.push(String::from_utf8_lossy(l).into_owned())).unwrap();
        assert_eq!(got, ["1 stdout F one", "2 stdout F two"]);
        assert_eq!(pos, end, "a follower waits where the next line will be written");
        // A follower at the end of the data sees nothing until a line is written there.
        let mut more = Vec::new();
        assert_eq!(read_from(&mut File::open(&p).unwrap(), pos, |l| more.push(l.to_vec())).unwrap(), end);
        assert!(more.is_empty());
        // Zeros then a line still being written (no newline): nothing skipped yet.
        let mut torn = b"1 stdout F one\n".to_vec();
        torn.extend(std::iter::repeat_n(0u8, 100));
        torn.extend_from_slice(b"2 stdout F partial");
        fs::write(&p, &torn).unwrap();
        let mut seen = Vec::new();
        assert_eq!(read_from(&mut File::open(&p).unwrap(), 0, |l| seen.push(l.to_vec())).unwrap(), 15);
        assert_eq!(seen.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Every whole line of the ring's files, oldest first, as readers see them.
    fn read_all(dir: &Path, max_files: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for f in files(dir, max_files) {
            read_from(&mut File::open(&f).unwrap(), 0, |l| out.push(l.to_vec())).unwrap();
        }
        out
    }

    fn texts(lines: &[Vec<u8>]) -> Vec<String> {
        lines.iter().map(|l| String::from_utf8_lossy(parse(l).unwrap().text).into_owned()).collect()
    }

    #[test]
    fn a_follower_sees_every_line_once_across_rotations() {
        let dir = temp_dir("follow-rotations");
        let mut r = Ring::new(&dir, LogConfig { enabled: true, max_size: 4096, max_files: 3 });
        let mut seen: Vec<String> = Vec::new();
        let mut take = |l: &[u8]| {
            seen.push(String::from_utf8_lossy(parse(l).unwrap().text).into_owned());
            Ok(())
        };
        for i in 0..10 {
            r.write(0, format!("line {i}\n").as_bytes());
        }
        let mut f = Follower::open(&dir, 3, &mut take).unwrap();
        // 4096-byte files of about 40-byte lines: each batch of 60 rotates at least once, and
        // the follower steps after each batch, as `logs -f` polls.
        for batch in 0..5 {
            for i in 0..60 {
                r.write(0, format!("line {}\n", 10 + batch * 60 + i).as_bytes());
            }
            while f.step(&mut take).unwrap() {}
        }
        let want: Vec<String> = (0..310).map(|i| format!("line {i}")).collect();
        assert_eq!(seen, want);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ring_rotates_and_keeps_lines_whole() {
        let dir = temp_dir("rotate");
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
        // The rotated files hold whole lines and no zero tail.
        for f in &fs_[..2] {
            let b = fs::read(f).unwrap();
            assert_eq!(b.last(), Some(&b'\n'), "{} ends with a whole line", f.display());
            assert!(!b.contains(&0), "{} has no zeros", f.display());
        }
        let lines = read_all(&dir, 3);
        // The ring keeps the newest lines, in order, ending with the unfinished one.
        let e = parse(&lines[lines.len() - 1]).unwrap();
        assert_eq!((e.text, e.full, e.stderr), (&b"no newline"[..], false, false));
        let e = parse(&lines[lines.len() - 2]).unwrap();
        assert_eq!((e.text, e.full, e.stderr), (&b"line 499"[..], true, true));
        let t = texts(&lines[..lines.len() - 1]);
        let first: usize = t[0].strip_prefix("line ").unwrap().parse().unwrap();
        assert_eq!(t, (first..500).map(|i| format!("line {i}")).collect::<Vec<_>>(), "a contiguous run of whole lines");
        assert!(LogConfig::parse(Some("syslog"), &[]).is_err());
        assert!(LogConfig::parse(None, &["max-size=1".into()]).is_err());
        assert_eq!(LogConfig::parse(None, &["max-size=1m".into(), "max-file=2".into()]).unwrap().max_files, 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_is_made_ready_ahead_and_readers_see_only_the_lines() {
        let dir = temp_dir("ahead");
        let mut r = Ring::new(&dir, LogConfig { enabled: true, max_size: 1024 * 1024, max_files: 2 });
        for i in 0..10 {
            r.write(0, format!("line {i}\n").as_bytes());
        }
        let len = fs::metadata(path(&dir, 0)).unwrap().len();
        assert_eq!(len, PREPARED, "the file is grown a step at a time, not by each line");
        let lines = read_all(&dir, 2);
        assert_eq!(texts(&lines), (0..10).map(|i| format!("line {i}")).collect::<Vec<_>>());
        // Lines are written in place: the length does not change while the step lasts.
        r.write(1, b"one more\n");
        assert_eq!(fs::metadata(path(&dir, 0)).unwrap().len(), len);
        // A step never goes past max-size.
        let mut small = Ring::new(&dir.join("s"), LogConfig { enabled: true, max_size: 5000, max_files: 1 });
        fs::create_dir_all(dir.join("s")).unwrap();
        small.write(0, b"x\n");
        assert_eq!(fs::metadata(path(&dir.join("s"), 0)).unwrap().len(), 5000);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reopened_ring_continues_after_the_last_line() {
        let dir = temp_dir("reopen");
        let cfg = LogConfig { enabled: true, max_size: 1024 * 1024, max_files: 2 };
        let mut r = Ring::new(&dir, cfg.clone());
        r.write(0, b"first\nsecond\n");
        drop(r);
        // A monitor restarted (or the board powered back on) writes after the last line.
        let mut r = Ring::new(&dir, cfg.clone());
        r.write(1, b"third\n");
        drop(r);
        assert_eq!(texts(&read_all(&dir, 2)), ["first", "second", "third"]);
        // A file written by plain appends (older berth) is continued as it is.
        let old = temp_dir("reopen-old");
        fs::write(path(&old, 0), b"2026-01-01T00:00:00.000000000Z stdout F old\n").unwrap();
        let mut r = Ring::new(&old, cfg);
        r.write(0, b"new\n");
        assert_eq!(texts(&read_all(&old, 2)), ["old", "new"]);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&old).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let dir = temp_dir("torn");
        let cfg = LogConfig { enabled: true, max_size: 1024 * 1024, max_files: 2 };
        let mut r = Ring::new(&dir, cfg.clone());
        r.write(0, b"whole\n");
        drop(r);
        // A power cut kept the start of a line, not its end: readers stop before it...
        let p = path(&dir, 0);
        let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let (end, _) = data_end(&f, f.metadata().unwrap().len()).unwrap();
        f.write_all_at(b"2026-01-01T00:00:00.000000000Z stdout F a longer line that was cu", end).unwrap();
        assert_eq!(texts(&read_all(&dir, 2)), ["whole"]);
        // ...and the writer zeroes it and writes the next line in its place, even a shorter one.
        let mut r = Ring::new(&dir, cfg);
        r.write(0, b"next\n");
        assert_eq!(texts(&read_all(&dir, 2)), ["whole", "next"]);
        let b = fs::read(&p).unwrap();
        assert!(b[b.iter().rposition(|c| *c == b'\n').unwrap() + 1..].iter().all(|c| *c == 0), "nothing of the torn line is left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_follower_reads_from_where_it_stopped() {
        let dir = temp_dir("follow");
        let mut r = Ring::new(&dir, LogConfig { enabled: true, max_size: 1024 * 1024, max_files: 2 });
        r.write(0, b"a\nb\n");
        let mut f = File::open(path(&dir, 0)).unwrap();
        let mut got = Vec::new();
        let pos = read_from(&mut f, 0, |l| got.push(l.to_vec())).unwrap();
        r.write(0, b"c\n");
        let pos2 = read_from(&mut f, pos, |l| got.push(l.to_vec())).unwrap();
        assert_eq!(texts(&got), ["a", "b", "c"]);
        assert_eq!(read_from(&mut f, pos2, |_| panic!("no new line")).unwrap(), pos2);
        // A line with a NUL inside (binary output) is still a line.
        r.write(0, b"bin\0ary\n");
        let mut n = 0;
        read_from(&mut f, pos2, |l| {
            n += 1;
            assert_eq!(parse(l).unwrap().text, b"bin\0ary");
        })
        .unwrap();
        assert_eq!(n, 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
