//! Decimal text to `f64` and back, without core's float parsing and formatting.
//!
//! Text to `f64`: the same value and the same accepted syntax as `str::parse::<f64>`
//! (correctly rounded, ties to even; `inf`, `infinity` and `nan` in any case, with a sign), in
//! a fraction of its code: core's parser carries a 10 KB table of powers of five (its fast
//! Eisel-Lemire path) that the firmware does not need for the few numbers it reads (`--cpus`,
//! sizes, durations, percentages, template literals): 13,056 bytes less on aarch64. Numbers that fit the exact fast path (up
//! to 15 digits and a power of ten up to 22) take it; the others are divided out exactly with a
//! small big-integer long division.

use std::cmp::Ordering;

/// `s` as an `f64`, or `None` where `s.parse::<f64>()` is an error.
pub fn parse_f64(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let (neg, b) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let v = match special(b) {
        Some(v) => v,
        None => number(b)?,
    };
    Some(if neg { -v } else { v })
}

fn special(b: &[u8]) -> Option<f64> {
    let lower = |w: &[u8]| b.eq_ignore_ascii_case(w);
    if lower(b"inf") || lower(b"infinity") {
        Some(f64::INFINITY)
    } else if lower(b"nan") {
        Some(f64::NAN)
    } else {
        None
    }
}

/// Significant digits kept; further non-zero digits only make the value a little larger than
/// the kept ones say (the `sticky` flag), which is all the rounding needs to know (an f64 and
/// the midpoint between two have at most 767 significant digits).
const MAX_DIGITS: usize = 800;

fn number(b: &[u8]) -> Option<f64> {
    let mut digits: Vec<u8> = Vec::new();
    let mut exp: i64 = 0; // value = digits * 10^exp
    let mut sticky = false;
    let mut seen = false;
    let mut i = 0;
    let mut point = false;
    while i < b.len() {
        match b[i] {
            c @ b'0'..=b'9' => {
                seen = true;
                if digits.is_empty() && c == b'0' {
                    // a leading zero: nothing to keep
                } else if digits.len() < MAX_DIGITS {
                    digits.push(c - b'0');
                } else {
                    sticky |= c != b'0';
                    exp += 1;
                }
                if point {
                    exp -= 1;
                }
            }
            b'.' if !point => point = true,
            _ => break,
        }
        i += 1;
    }
    if !seen {
        return None;
    }
    if i < b.len() {
        if b[i] | 0x20 != b'e' {
            return None;
        }
        i += 1;
        let eneg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        if i == b.len() {
            return None;
        }
        let mut e: i64 = 0;
        for &c in &b[i..] {
            if !c.is_ascii_digit() {
                return None;
            }
            e = (e * 10 + i64::from(c - b'0')).min(1 << 40);
        }
        exp += if eneg { -e } else { e };
    }
    while digits.last() == Some(&0) {
        digits.pop();
        exp += 1;
    }
    if digits.is_empty() {
        return Some(0.0);
    }
    let n = digits.len() as i64;
    if n + exp > 310 {
        return Some(f64::INFINITY);
    }
    if n + exp < -330 {
        return Some(0.0);
    }
    // Exact fast path: both the digits and the power of ten are exact f64s, and one rounding
    // of their product or quotient is the correctly rounded result.
    if n <= 15 && !sticky && (-22..=22).contains(&exp) {
        let m = digits.iter().fold(0u64, |a, &d| a * 10 + u64::from(d)) as f64;
        let p = (0..exp.unsigned_abs()).fold(1.0f64, |p, _| p * 10.0);
        return Some(if exp < 0 { m / p } else { m * p });
    }
    Some(slow(&digits, exp, sticky))
}

/// digits * 10^exp (+ a little if `sticky`), rounded to the nearest f64 (ties to even).
fn slow(digits: &[u8], exp: i64, sticky: bool) -> f64 {
    let mut num = Big::default();
    for &d in digits {
        num.mul_add(10, u32::from(d));
    }
    let mut den = Big::from(1);
    for _ in 0..exp.unsigned_abs() {
        if exp < 0 { &mut den } else { &mut num }.mul_add(10, 0);
    }
    // q = floor(num * 2^s / den) with 55 or 56 bits; value = (q + rest) * 2^-s.
    let s = 55 - (num.bits() as i64 - den.bits() as i64);
    if s > 0 {
        num.shl(s as usize);
    } else {
        den.shl((-s) as usize);
    }
    let mut q: u64 = 0;
    let mut d = den.clone();
    d.shl(57);
    for _ in 0..=57 {
        q <<= 1;
        if num.ge(&d) {
            num.sub(&d);
            q |= 1;
        }
        d.shr1();
    }
    let rest = sticky || !num.is_zero();
    // The last place kept: 53 bits below the leading one, never finer than 2^-1074.
    let qbits = 64 - i64::from(q.leading_zeros());
    let unit = (qbits - s - 53).max(-1074);
    let t = unit + s; // q's bits below 2^t are rounded off
    let (mut m, half, below) = if t >= 64 {
        (0, false, q != 0 || rest)
    } else {
        let t = t as u32;
        let m = q >> t;
        let half = (q >> (t - 1)) & 1 == 1;
        let below = q & ((1u64 << (t - 1)) - 1) != 0 || rest;
        (m, half, below)
    };
    if half && (below || m & 1 == 1) {
        m += 1;
    }
    // m < 2^53 (2^53 after a carry is the next binade's 2^52 with the exponent field's +1)
    let bits = (((unit + 1074) as u64) << 52) + m;
    if bits >= 0x7ff0_0000_0000_0000 {
        f64::INFINITY
    } else {
        f64::from_bits(bits)
    }
}

/// An unsigned big integer, 32-bit limbs, least significant first.
#[derive(Clone, Default)]
struct Big(Vec<u32>);

impl From<u32> for Big {
    fn from(v: u32) -> Big {
        Big(vec![v])
    }
}

impl Big {
    fn mul_add(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for l in &mut self.0 {
            let v = u64::from(*l) * u64::from(mul) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }
    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
    fn bits(&self) -> usize {
        self.0.last().map_or(0, |l| 32 * self.0.len() - l.leading_zeros() as usize)
    }
    fn is_zero(&self) -> bool {
        self.0.iter().all(|&l| l == 0)
    }
    fn shl(&mut self, n: usize) {
        let (limbs, bits) = (n / 32, n % 32);
        if bits != 0 {
            let mut carry = 0;
            for l in &mut self.0 {
                let v = (*l << bits) | carry;
                carry = *l >> (32 - bits);
                *l = v;
            }
            if carry != 0 {
                self.0.push(carry);
            }
        }
        self.0.splice(0..0, std::iter::repeat_n(0, limbs));
    }
    fn shr1(&mut self) {
        let mut carry = 0;
        for l in self.0.iter_mut().rev() {
            let v = (*l >> 1) | carry;
            carry = *l << 31;
            *l = v;
        }
        self.trim();
    }
    fn ge(&self, o: &Big) -> bool {
        let top = |b: &Big| b.0.iter().rposition(|&l| l != 0).map_or(0, |i| i + 1);
        let (a, b) = (&self.0[..top(self)], &o.0[..top(o)]);
        a.len().cmp(&b.len()).then_with(|| a.iter().rev().cmp(b.iter().rev())) != Ordering::Less
    }
    fn sub(&mut self, o: &Big) {
        let mut borrow = 0i64;
        for (i, l) in self.0.iter_mut().enumerate() {
            let v = i64::from(*l) - i64::from(o.0.get(i).copied().unwrap_or(0)) - borrow;
            *l = v as u32;
            borrow = i64::from(v < 0);
        }
        self.trim();
    }
}

// f64 to text, as `format!` writes it ("{}", "{:.N}", "{:e}", "{:.Ne}"), for the few numbers
// the firmware prints (sizes, percentages, durations, template output) without core's float
// formatting (Grisu with a Dragon fallback, 7.5 KB; this code costs 2.8 KB of it back, 4,736 bytes
// less on aarch64): every f64 is a finite binary fraction, so a
// finite decimal one; we write that out exactly with the big integers above and cut it, half
// to even, or find the shortest digits that read back as the same f64, as Dragon4 does.

/// `format!("{f}")`: the shortest digits that read back as `f`, never an exponent.
pub fn display(f: f64) -> String {
    formatted(
        f,
        |digits, exp, out| {
            let exp = exp as i64;
            if exp < 0 {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
                out.push_str(digits);
            } else if (digits.len() as i64) <= exp + 1 {
                out.push_str(digits);
                out.extend(std::iter::repeat_n('0', (exp + 1) as usize - digits.len()));
            } else {
                let (int, frac) = digits.split_at(exp as usize + 1);
                out.push_str(int);
                out.push('.');
                out.push_str(frac);
            }
        },
        None,
    )
}

/// `format!("{f:.prec$}")`: `prec` digits after the point, rounded half to even.
pub fn fixed(f: f64, prec: usize) -> String {
    if !f.is_finite() {
        return nonfinite(f);
    }
    let (mut digits, point) = exact(f.abs()); // value = digits / 10^point
                                              // keep digits down to 10^-prec
    let keep = digits.len() as i64 - point as i64 + prec as i64;
    let mut int: Vec<u8> = if keep <= 0 {
        let up = keep == 0 && round_up(&digits, 0);
        vec![u8::from(up)]
    } else if keep as usize >= digits.len() {
        digits.resize(keep as usize, 0);
        digits
    } else {
        let up = round_up(&digits, keep as usize);
        digits.truncate(keep as usize);
        if up && increment(&mut digits) {
            digits.insert(0, 1);
        }
        digits
    };
    if int.len() <= prec {
        let pad = prec + 1 - int.len();
        int.splice(0..0, std::iter::repeat_n(0, pad));
    }
    let mut out = String::with_capacity(int.len() + 2);
    if f.is_sign_negative() {
        out.push('-');
    }
    let dot = int.len() - prec;
    for (i, d) in int.iter().enumerate() {
        if i == dot {
            out.push('.');
        }
        out.push(char::from(b'0' + d));
    }
    out
}

/// `format!("{f:e}")` (`prec` None: the shortest digits) or `format!("{f:.prec$e}")`.
pub fn sci(f: f64, prec: Option<usize>) -> String {
    formatted(
        f,
        |digits, exp, out| {
            let (first, rest) = digits.split_at(1);
            out.push_str(first);
            if !rest.is_empty() {
                out.push('.');
                out.push_str(rest);
            }
            out.push('e');
            out.push_str(&exp.to_string());
        },
        prec,
    )
}

fn nonfinite(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// Sign and special values around `layout(digits, exponent of the first digit, out)`; the
/// digits are the shortest ones (`prec` None) or `prec + 1` significant ones.
fn formatted(f: f64, layout: impl Fn(&str, i32, &mut String), prec: Option<usize>) -> String {
    if !f.is_finite() {
        return nonfinite(f);
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    let (digits, exp) = if f == 0.0 {
        (vec![0; prec.map_or(1, |p| p + 1)], 0)
    } else {
        match prec {
            None => shortest(f.abs()),
            Some(p) => significant(f.abs(), p + 1),
        }
    };
    let digits: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    layout(&digits, exp, &mut out);
    out
}

/// `n` significant digits of `f` (> 0), rounded half to even, and the exponent of the first.
fn significant(f: f64, n: usize) -> (Vec<u8>, i32) {
    let (mut digits, point) = exact(f);
    let mut exp = digits.len() as i32 - 1 - point as i32;
    if digits.len() <= n {
        digits.resize(n, 0);
    } else {
        let up = round_up(&digits, n);
        digits.truncate(n);
        if up && increment(&mut digits) {
            digits[0] = 1;
            exp += 1;
        }
    }
    (digits, exp)
}

/// The shortest digits that lie strictly between the midpoints to the neighbouring f64s (or on
/// them when `f`'s mantissa is even: reading rounds those ties to even), the nearest to `f` of
/// those, a tie going up; and the exponent of the first digit.
fn shortest(f: f64) -> (Vec<u8>, i32) {
    let (m, e) = mant_exp(f);
    // f and the midpoints below and above it, in units of 2^(e-2): whole numbers
    let v = Big::from_u64(m << 2);
    let half_up = Big::from(2);
    // below a power of two the gap to the previous f64 is half as wide
    let half_down = Big::from(if m == 1 << 52 && e > -1074 { 1 } else { 2 });
    let mut low = v.clone();
    low.sub(&half_down);
    let mut high = v.clone();
    high.add(&half_up);
    // as decimal digits, the last `places` of them after the point
    let places = (2 - e).max(0) as usize;
    let [v, low, high] = [v, low, high].map(|mut x| {
        if e > 2 {
            x.shl((e - 2) as usize);
            x.decimal()
        } else {
            x.times_pow5(places).decimal()
        }
    });
    let len = high.len();
    let pad = |d: Vec<u8>| [vec![0; len - d.len()], d].concat();
    let (v, low) = (pad(v), pad(low));
    let inclusive = m & 1 == 0;
    let zero = |d: &[u8]| d.iter().all(|&x| x == 0);
    for n in 1..=len {
        // t: v cut to n digits (at 10^(len-n) units); t1: one unit more
        let t = &v[..n];
        let down = match t.cmp(&low[..n]) {
            Ordering::Greater => true,
            Ordering::Equal => inclusive && zero(&low[n..]),
            Ordering::Less => false,
        };
        let mut t1 = t.to_vec();
        let up = !increment(&mut t1)
            && match t1.as_slice().cmp(&high[..n]) {
                Ordering::Less => true,
                Ordering::Equal => inclusive || !zero(&high[n..]),
                Ordering::Greater => false,
            };
        if down || up {
            let digits = if up && (!down || v.get(n).is_some_and(|&d| d >= 5)) { t1 } else { t.to_vec() };
            let lead = digits.iter().take_while(|&&d| d == 0).count();
            return (digits[lead..].to_vec(), len as i32 - 1 - places as i32 - lead as i32);
        }
    }
    (v, len as i32 - 1 - places as i32)
}

/// `f` (finite, > 0) as mantissa * 2^exponent.
fn mant_exp(f: f64) -> (u64, i32) {
    let bits = f.to_bits();
    let (exp, frac) = ((bits >> 52) as i32, bits & ((1 << 52) - 1));
    if exp == 0 {
        (frac, -1074)
    } else {
        (frac | 1 << 52, exp - 1075)
    }
}

/// The exact decimal digits of `f` (finite, >= 0) and how many of them follow the point.
fn exact(f: f64) -> (Vec<u8>, usize) {
    if f == 0.0 {
        return (vec![0], 0);
    }
    let (m, e) = mant_exp(f);
    let mut b = Big::from_u64(m);
    if e >= 0 {
        b.shl(e as usize);
        (b.decimal(), 0)
    } else {
        (b.times_pow5(-e as usize).decimal(), -e as usize)
    }
}

/// Whether cutting `digits` to `keep` rounds up: half to even on the exact value.
fn round_up(digits: &[u8], keep: usize) -> bool {
    match digits.get(keep) {
        Some(&d) if d > 5 => true,
        Some(5) => digits[keep + 1..].iter().any(|&d| d != 0) || keep > 0 && digits[keep - 1] & 1 == 1,
        _ => false,
    }
}

/// Adds one to a decimal number in place; true when it carried out of the top digit (the
/// digits are then all zero: the caller's number became 10^len).
fn increment(digits: &mut [u8]) -> bool {
    for d in digits.iter_mut().rev() {
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            return false;
        }
    }
    true
}

impl Big {
    fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v as u32, (v >> 32) as u32]);
        b.trim();
        b
    }
    fn add(&mut self, o: &Big) {
        if self.0.len() < o.0.len() {
            self.0.resize(o.0.len(), 0);
        }
        let mut carry = 0u64;
        for (i, l) in self.0.iter_mut().enumerate() {
            let v = u64::from(*l) + u64::from(o.0.get(i).copied().unwrap_or(0)) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }
    fn times_pow5(mut self, n: usize) -> Big {
        for _ in 0..n / 13 {
            self.mul_add(1_220_703_125, 0); // 5^13, the largest power of five in a u32
        }
        for _ in 0..n % 13 {
            self.mul_add(5, 0);
        }
        self
    }
    /// The decimal digits, most significant first (one 0 for zero).
    fn decimal(mut self) -> Vec<u8> {
        let mut chunks = Vec::new(); // base 10^9, least significant first
        while !self.is_zero() {
            let mut rem = 0u64;
            for l in self.0.iter_mut().rev() {
                let v = (rem << 32) | u64::from(*l);
                *l = (v / 1_000_000_000) as u32;
                rem = v % 1_000_000_000;
            }
            self.trim();
            chunks.push(rem as u32);
        }
        let mut out = Vec::with_capacity(chunks.len() * 9);
        for (i, &c) in chunks.iter().rev().enumerate() {
            let s = [c / 100_000_000, c / 10_000_000, c / 1_000_000, c / 100_000, c / 10_000, c / 1000, c / 100, c / 10, c]
                .map(|x| (x % 10) as u8);
            out.extend_from_slice(if i == 0 { &s[s.iter().take_while(|&&d| d == 0).count().min(8)..] } else { &s });
        }
        if out.is_empty() {
            out.push(0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{display, fixed, parse_f64, sci};

    fn same(s: &str) {
        let (ours, core) = (parse_f64(s), s.parse::<f64>().ok());
        let equal = match (ours, core) {
            (Some(a), Some(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan() && a.is_sign_negative() == b.is_sign_negative()),
            (None, None) => true,
            _ => false,
        };
        assert!(equal, "{s:?}: ours {ours:?}, core's {core:?}");
    }

    #[test]
    fn agrees_with_core_on_syntax_and_edges() {
        for s in [
            "",
            "+",
            "-",
            ".",
            "1",
            "1.",
            ".5",
            "+.5",
            "-.5",
            "1e5",
            "1E+5",
            "1e-5",
            "1e",
            "1e+",
            "e5",
            "1.2.3",
            "1_0",
            " 1",
            "1 ",
            "0x10",
            "inf",
            "-inf",
            "+Infinity",
            "INF",
            "nan",
            "-NaN",
            "infin",
            "0",
            "-0",
            "0.0",
            "00.00e10",
            "0e999999",
            "1e308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "1e309",
            "4.9e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "1e-330",
            "2.2250738585072011e-308",
            "2.2250738585072014e-308",
            "9007199254740993",
            "9007199254740992.5",
            "0.1",
            "0.3",
            "2.5",
            "1e22",
            "1e23",
            "123456789012345678901234567890",
            "1e999999999999999999999",
            "1e-99999999999999999999",
            "3.14159265358979323846264338327950288419716939937510582097494459",
            "1.00000000000000011102230246251565404236316680908203125",
            "1.00000000000000011102230246251565404236316680908203124",
        ] {
            same(s);
        }
        // a tie with 1,000 zeros after it, then with a 1 after them (beyond the digits kept)
        let mut long = String::from("1.00000000000000011102230246251565404236316680908203125");
        long.push_str(&"0".repeat(1000));
        same(&long);
        long.push('1');
        same(&long);
    }

    #[test]
    fn agrees_with_core_on_random_numbers_and_exact_ties() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..60_000u64 {
            let r = rnd();
            let s = match i % 4 {
                0 => format!("{}", f64::from_bits(r)),
                1 => format!("{:e}", f64::from_bits(r)),
                2 => {
                    let n = (rnd() % 25 + 1) as usize;
                    let mut s: String = (0..n).map(|_| char::from(b'0' + (rnd() % 10) as u8)).collect();
                    s.insert((rnd() % (n as u64 + 1)) as usize, '.');
                    format!("{s}e{}", (rnd() % 700) as i64 - 350)
                }
                _ => (0..(rnd() % 12 + 1)).map(|_| char::from(b"0123456789.eE+-"[(rnd() % 15) as usize])).collect(),
            };
            same(&s);
        }
        // exact midpoints between neighbouring f64s (ties to even), and just above and below them
        for _ in 0..1_500 {
            let bits = rnd() & 0x7fef_ffff_ffff_ffff;
            let (exp, frac) = ((bits >> 52) as i64, bits & ((1 << 52) - 1));
            let (m, e) = if exp == 0 { (frac, -1074) } else { (frac | 1 << 52, exp - 1075) };
            // (2m + 1) * 2^(e - 1), written out exactly: times 5^k over 10^k when the power is negative
            let mut limbs = vec![(2 * m + 1) as u32, ((2 * m + 1) >> 32) as u32];
            let mul = |l: &mut Vec<u32>, by: u64| {
                let mut c = 0;
                for x in l.iter_mut() {
                    let v = u64::from(*x) * by + c;
                    *x = v as u32;
                    c = v >> 32;
                }
                if c != 0 {
                    l.push(c as u32);
                }
            };
            for _ in 0..(e - 1).unsigned_abs() {
                mul(&mut limbs, if e - 1 < 0 { 5 } else { 2 });
            }
            let mut digits = Vec::new();
            while limbs.iter().any(|&l| l != 0) {
                let mut rem = 0u64;
                for l in limbs.iter_mut().rev() {
                    let v = (rem << 32) | u64::from(*l);
                    *l = (v / 10) as u32;
                    rem = v % 10;
                }
                digits.push(char::from(b'0' + rem as u8));
            }
            let digits: String = digits.iter().rev().collect();
            let scale = if e - 1 < 0 { format!("e{}", e - 1) } else { String::new() };
            same(&format!("{digits}{scale}"));
            same(&format!("{digits}0000000001{}", if e - 1 < 0 { format!("e{}", e - 11) } else { "e-10".into() }));
            let below = format!("{}{}", &digits[..digits.len() - 1], "4999999999");
            same(&format!("{below}{}", if e - 1 < 0 { format!("e{}", e - 10) } else { "e-9".into() }));
        }
    }

    #[test]
    fn formats_as_core_does() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let edges = [
            0.0,
            -0.0,
            1.0,
            0.5,
            1.5,
            2.5,
            0.25,
            0.125,
            0.375,
            9.5,
            99.5,
            0.05,
            0.005,
            1e21,
            1e-7,
            1e16,
            1e300,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::from_bits(0x000f_ffff_ffff_ffff), // the largest subnormal
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
            123_456.789,
            f64::from_bits(1e23f64.to_bits() - 1),
            0.3,
            1_152_921_504_606_846_976.0,
            999.9999,
            9.995,
            0.999_999_9,
            -12.5,
        ];
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = match edges.get(i as usize) {
                Some(&f) => f,
                None => match i % 3 {
                    0 => f64::from_bits(x),
                    1 => (x >> 11) as f64 / (1u64 << (x % 64)) as f64,
                    _ => (x % 100_000) as f64 / 100.0,
                },
            };
            let p = (x % 20) as usize;
            assert_eq!(display(f), format!("{f}"), "{{}} of {:#x}", f.to_bits());
            assert_eq!(sci(f, None), format!("{f:e}"), "{{:e}} of {:#x}", f.to_bits());
            assert_eq!(fixed(f, p), format!("{f:.p$}"), "{{:.{p}}} of {:#x}", f.to_bits());
            assert_eq!(sci(f, Some(p)), format!("{f:.p$e}"), "{{:.{p}e}} of {:#x}", f.to_bits());
        }
    }
}
