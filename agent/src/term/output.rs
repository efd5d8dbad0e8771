//! Output as Docker prints it: aligned plain tables, one JSON object per line with
//! `--format json`, sizes and ages in Docker's words. No colour or cursor movement unless the
//! stream is a terminal: it may be a UART.

use std::io::{self, Read, Write};
use std::time::Instant;

use berth_runtime::timefmt;

pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// Docker's `units.HumanSize`: decimal units, three significant digits (`4.26MB`, `426kB`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = berth_runtime::decimal::fixed(v, digits);
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

/// Docker's `units.HumanDuration` + " ago".
pub fn human_ago(then: i64) -> String {
    let s = (timefmt::now() - then).max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    let t = match () {
        _ if s < 1 => "Less than a second".to_string(),
        _ if s == 1 => "1 second".to_string(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".to_string(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".to_string(),
        _ if h < 48 => format!("{h} hours"),
        _ if d < 14 => format!("{d} days"),
        _ if d < 90 => format!("{} weeks", d / 7),
        _ if d < 730 => format!("{} months", d / 30),
        _ => format!("{} years", d / 365),
    };
    format!("{t} ago")
}

/// `2024-01-02 03:04:05 +0000 UTC`, as Docker's `CreatedAt`.
pub fn docker_time(secs: i64) -> String {
    let t = timefmt::rfc3339(secs);
    format!("{} {} +0000 UTC", &t[..10], &t[11..19])
}

/// Columns separated by at least three spaces, as Docker's tabwriter does.
pub fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < w.len() {
                s.push_str(&format!("{c:<width$}", width = w[i] + 3));
            } else {
                s.push_str(c);
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for r in rows {
        line(out, &mut r.iter().map(String::as_str))?;
    }
    Ok(())
}

/// A time as Docker's `--since`/`--until` take it: RFC 3339 (a fraction of a second allowed),
/// unix seconds (`1700000000`, `1700000000.5`), or a Go duration back from now (`10s`, `42m`,
/// `1h30m`, `1.5h`, `500ms`). Whole seconds: the agent keeps its times so.
pub fn time_arg(s: &str) -> Result<i64, berth_proto::error::CliError> {
    if let Some(t) = timefmt::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(t) = s.parse::<i64>() {
        return Ok(t);
    }
    if let Some((whole, frac)) = s.split_once('.') {
        if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(t) = whole.parse::<i64>() {
                return Ok(t);
            }
        }
    }
    match go_duration(s) {
        Some(secs) => Ok(timefmt::now() - secs.round() as i64),
        None => {
            Err(berth_proto::error::op_err(format!("invalid time {s:?} (RFC 3339, unix seconds, or a duration such as 10s, 42m, 1h30m)")))
        }
    }
}

/// Go's `time.ParseDuration`, in seconds: a sign, then numbers (a fraction allowed) each with a
/// unit of ns, us (µs), ms, s, m or h; a bare `0` is zero.
fn go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(end);
        if !num.bytes().any(|b| b.is_ascii_digit()) {
            return None;
        }
        let v = berth_runtime::decimal::parse_f64(num)?;
        let end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, next) = tail.split_at(end);
        total += v * match unit {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = next;
    }
    Some(if neg { -total } else { total })
}

/// Counts bytes read and, on a terminal, redraws one progress line at most ten times a second.
pub struct Progress<R> {
    inner: R,
    read: u64,
    total: Option<u64>,
    label: &'static str,
    last: Instant,
    show: bool,
}

impl<R: Read> Progress<R> {
    pub fn new(inner: R, total: Option<u64>, label: &'static str, show: bool) -> Self {
        Progress { inner, read: 0, total, label, last: Instant::now(), show }
    }

    fn draw(&self) {
        let line = match self.total {
            Some(t) if t > 0 => {
                let filled = ((self.read.min(t) * 30) / t) as usize;
                format!("{} [{}>{}] {}/{}", self.label, "=".repeat(filled), " ".repeat(30 - filled), human_size(self.read), human_size(t))
            }
            _ => format!("{} {}", self.label, human_size(self.read)),
        };
        eprint!("\r{line}\x1b[K");
    }

    pub fn done(&self) {
        if self.show {
            self.draw();
            eprintln!();
        }
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.show && self.last.elapsed().as_millis() >= 100 {
            self.last = Instant::now();
            self.draw();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_docker_takes_them() {
        let now = timefmt::now();
        let near = |s: &str, back: i64| {
            let t = time_arg(s).unwrap_or_else(|e| panic!("{s}: {e:?}"));
            assert!((now - back - t).abs() <= 1, "{s}: {t}, wanted about {}", now - back);
        };
        near("10s", 10);
        near("42m", 42 * 60);
        near("1h30m", 5400);
        near("1.5h", 5400);
        near("2h0m30s", 7230);
        near("500ms", 0);
        near("0", now);
        assert_eq!(time_arg("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(time_arg("1700000000.123456789").unwrap(), 1_700_000_000);
        assert_eq!(time_arg("2023-11-14T22:13:20.5Z").unwrap(), 1_700_000_000);
        // A number with a fraction and no unit is unix seconds, as Docker reads it.
        assert_eq!(time_arg("1.5").unwrap(), 1);
        for bad in ["", "h", "10x", "1..5s", "abc", "10s5", "1700000000.", "-"] {
            assert!(time_arg(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn sizes_as_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_259_900), "4.26MB");
        assert_eq!(human_size(42_599_000), "42.6MB");
        assert_eq!(human_size(425_990_000), "426MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn tables_align() {
        let mut out = Vec::new();
        table(&mut out, &["A", "BB"], &[vec!["long-value".into(), "x".into()]]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A            BB\nlong-value   x\n");
    }
}
