//! Byte sizes, Go durations and shell words as Compose reads and prints them.

/// `512m`, `1g`, `1.5GiB`, `1024`: binary multiples, as go-units' RAMInBytes (Compose's reader).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let num_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let unit = unit.trim_start().to_ascii_lowercase();
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
    };
    let v = n * mult;
    if !v.is_finite() || v >= i64::MAX as f64 {
        return Err(format!("invalid size {s:?}: too large"));
    }
    Ok(v as i64)
}

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;

/// Go's time.ParseDuration, without a sign: `1h30m`, `1.5s`, `300ms`, `0`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        let (num, after) = rest.split_at(n);
        let u = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(u);
        let mult = match unit {
            "ns" => NS,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => SEC,
            "m" => MIN,
            "h" => HOUR,
            _ => return Err(bad()),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let whole: u64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
        let mut part = whole.checked_mul(mult).ok_or_else(bad)?;
        let mut scale = mult;
        for d in frac.bytes() {
            scale /= 10;
            part = part.checked_add(u64::from(d - b'0') * scale).ok_or_else(bad)?;
        }
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = next;
    }
    Ok(total)
}

/// Go's Duration.String(): `1m30s`, `1h0m0s`, `1.5s`, `300ms`, `0s`.
pub fn format_duration(ns: u64) -> String {
    fn frac(v: u64, unit: u64) -> String {
        let whole = v / unit;
        let rem = v % unit;
        if rem == 0 {
            return whole.to_string();
        }
        let width = unit.ilog10() as usize;
        let digits = format!("{rem:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
    if ns == 0 {
        return "0s".into();
    }
    if ns < US {
        return format!("{ns}ns");
    }
    if ns < MS {
        return format!("{}µs", frac(ns, US));
    }
    if ns < SEC {
        return format!("{}ms", frac(ns, MS));
    }
    let h = ns / HOUR;
    let m = (ns % HOUR) / MIN;
    let s = frac(ns % MIN, SEC);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Splits a command string as a POSIX shell would (quotes and backslashes, no expansion), as
/// Compose does for `command: "sh -c 'x y'"`.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c)
                            }
                            None => return Err(format!("unterminated quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => cur.push(c),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c)
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        for (s, n) in
            [("512m", 512 << 20), ("1g", 1 << 30), ("1GB", 1 << 30), ("100", 100), ("1.5k", 1536), ("64 MiB", 64 << 20), ("10b", 10)]
        {
            assert_eq!(parse_bytes(s), Ok(n), "{s}");
        }
        for s in ["", "m", "1x", "-1m", "1e9"] {
            assert!(parse_bytes(s).is_err(), "{s}");
        }
    }

    #[test]
    fn durations() {
        for (s, n) in [
            ("1s", SEC),
            ("1m30s", 90 * SEC),
            ("1.5s", 1500 * MS),
            ("300ms", 300 * MS),
            ("0", 0),
            ("2h", 2 * HOUR),
            ("10us", 10 * US),
            (".5s", 500 * MS),
        ] {
            assert_eq!(parse_duration(s), Ok(n), "{s}");
        }
        for s in ["", "1", "s", "1x", "-1s", "1.s.s", "."] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        for (n, s) in [
            (0, "0s"),
            (90 * SEC, "1m30s"),
            (HOUR, "1h0m0s"),
            (1500 * MS, "1.5s"),
            (300 * MS, "300ms"),
            (5 * US, "5µs"),
            (7, "7ns"),
            (10 * SEC, "10s"),
        ] {
            assert_eq!(format_duration(n), s);
        }
    }

    #[test]
    fn shell_words() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(shell_split("sh -c 'echo a  b' \"x \\\"y\\\"\" c\\ d").unwrap(), v(&["sh", "-c", "echo a  b", "x \"y\"", "c d"]));
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shell_split("a '' b").unwrap(), v(&["a", "", "b"]));
        assert!(shell_split("a 'b").is_err());
    }
}
