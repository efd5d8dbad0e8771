//! Docker's `RAMInBytes` (go-units): the size syntax of `-m`, `--memory-swap`, `--memory-reservation`
//! and `--tmpfs size=`, so that command lines copied from Docker mean the same bytes here.

use crate::error::{Error, Result};

/// Parses "32m", "1g", "512k", "100" (bytes), "1.5g", "32mb", "32MiB", "1 g": a decimal number, an
/// optional space, an optional unit k/m/g/t/p (base 1024, any case) followed by an optional "b" or
/// "ib", or a bare "b". Fractions are truncated to whole bytes as Docker does (`int64(size)`).
pub fn parse_size(s: &str) -> Result<i64> {
    let bad = || Error::invalid(format!("invalid size: {s:?}"));
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    // Docker takes `\d+(\.\d+)?`: digits first, and a dot only when digits follow it.
    let valid_num = match num.split_once('.') {
        None => !num.is_empty(),
        Some((int, frac)) => {
            !int.is_empty() && !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) && int.bytes().all(|b| b.is_ascii_digit())
        }
    };
    if !valid_num {
        return Err(bad());
    }
    let suffix = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let shift = match suffix.as_str() {
        "" | "b" => 0,
        _ => {
            let mut chars = suffix.chars();
            let unit = chars.next().ok_or_else(bad)?;
            if !matches!(chars.as_str(), "" | "b" | "ib") {
                return Err(bad());
            }
            match unit {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                'p' => 50,
                _ => return Err(bad()),
            }
        }
    };
    // Whole numbers are computed exactly; only fractions go through f64, as Docker's do.
    let bytes = if num.contains('.') {
        let v = crate::decimal::parse_f64(num).ok_or_else(bad)?;
        let v = v * (1u64 << shift) as f64;
        // i64::MAX as f64 rounds up to 2^63, so refusing it and above keeps the cast in range.
        if v >= i64::MAX as f64 {
            return Err(bad());
        }
        v as i64
    } else {
        let v: i64 = num.parse().map_err(|_| bad())?;
        v.checked_mul(1i64 << shift).ok_or_else(bad)?
    };
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_table() {
        let k = 1024i64;
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("100", 100),
            ("100b", 100),
            ("100B", 100),
            ("512k", 512 * k),
            ("512K", 512 * k),
            ("512kb", 512 * k),
            ("512KiB", 512 * k),
            ("32m", 32 * k * k),
            ("32M", 32 * k * k),
            ("32mb", 32 * k * k),
            ("32MB", 32 * k * k),
            ("32MiB", 32 * k * k),
            ("32mib", 32 * k * k),
            ("1g", k * k * k),
            ("1G", k * k * k),
            ("1 g", k * k * k),
            ("1.5g", 3 * k * k * k / 2),
            ("0.5k", 512),
            ("1.0001k", 1024), // truncated like Docker's int64(size)
            ("2t", 2 * k * k * k * k),
            ("3p", 3 * k * k * k * k * k),
            ("6m", 6 * k * k),
        ];
        for (s, want) in cases {
            assert_eq!(parse_size(s).unwrap(), *want, "{s}");
        }
    }

    #[test]
    fn parse_size_errors() {
        for s in [
            "",
            "12x",
            "m",
            "-1",
            "-32m",
            "1.",
            ".5g",
            "1.2.3",
            "32mm",
            "32mbb",
            "32bi",
            "32ibb",
            "1  g",
            " 1g",
            "1g ",
            "32kib2",
            "9999999p",
            "99999999999999999999",
        ] {
            let e = parse_size(s).unwrap_err();
            assert_eq!(e.message(), format!("invalid size: {s:?}"), "{s}");
            assert_eq!(e.kind(), crate::error::Kind::Invalid);
        }
        assert_eq!(parse_size("12x").unwrap_err().message(), r#"invalid size: "12x""#);
    }
}
