//! Image references normalised as Docker does: `busybox` is `docker.io/library/busybox:latest`,
//! and shown back in the familiar short form.

use crate::digest::Digest;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Full repository, e.g. `docker.io/library/busybox`.
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ joined by one of `.`, `_`, `__`, or runs of `-`.
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'a'..=b'z' | b'0'..=b'9' => i += 1,
            b'.' => {
                if !b[i + 1].is_ascii_alphanumeric() {
                    return false;
                }
                i += 1;
            }
            b'_' => {
                let n = if b.get(i + 1) == Some(&b'_') { 2 } else { 1 };
                if !b[i + n].is_ascii_alphanumeric() {
                    return false;
                }
                i += n;
            }
            b'-' => {
                while b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !c.starts_with('-') && !c.ends_with('-')
        });
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parses `[domain/]path[:tag][@sha256:hex]`; a bare name gets the `latest` tag.
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |why: &str| Error::invalid(format!("invalid reference format {s:?}: {why}"));
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|_| bad("bad digest"))?)),
            None => (s, None),
        };
        let (name, tag) = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
            _ => (name, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad("bad tag"));
            }
        }
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((d, rest)) if d.contains('.') || d.contains(':') || d == "localhost" => (d.to_string(), rest.to_string()),
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if !valid_domain(&domain) {
            return Err(bad("bad registry host"));
        }
        let domain = if domain == "index.docker.io" { "docker.io".to_string() } else { domain };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(bad("bad repository name"));
        }
        let path = if domain == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { repo: format!("{domain}/{path}"), tag, digest })
    }

    /// `repo:tag` in full form, if the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.repo))
    }
}

/// `docker.io/library/busybox:latest` → `busybox:latest`, as Docker prints names.
pub fn familiar(full: &str) -> &str {
    full.strip_prefix("docker.io/library/").or_else(|| full.strip_prefix("docker.io/")).unwrap_or(full)
}

/// Splits a full `repo:tag` into its two halves.
pub fn split_tag(full: &str) -> (&str, &str) {
    match full.rfind(':') {
        Some(i) if !full[i..].contains('/') => (&full[..i], &full[i + 1..]),
        _ => (full, ""),
    }
}

/// Go's path.Match: `*` is any run of characters but `/`, `?` one such character, `[...]` a class
/// (ranges, `^` negation), `\\` escapes. A malformed pattern is an error (Go's ErrBadPattern).
pub fn path_match(pattern: &str, name: &str) -> Result<bool> {
    let bad = || Error::invalid(format!("invalid reference pattern {pattern:?}: syntax error in pattern"));
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the whole pattern first, as Go reports a bad pattern even when an early part fails.
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(bad());
                }
                i += 2;
            }
            '[' => i = class_end(&p, i).ok_or_else(bad)?,
            _ => i += 1,
        }
    }
    Ok(match_from(&p, 0, &n, 0))
}

/// One character of a class (Go's getEsc): `-` and `]` are not allowed unescaped, and the class
/// must go on after it. Returns the character and the index after it.
fn class_char(p: &[char], mut i: usize) -> Option<(char, usize)> {
    let mut c = *p.get(i)?;
    if c == '-' || c == ']' {
        return None;
    }
    if c == '\\' {
        i += 1;
        c = *p.get(i)?;
    }
    i += 1;
    p.get(i)?;
    Some((c, i))
}

/// Walks the class that starts at `p[start] == '['`: (the index after it, whether `c` is in
/// it), or None when it is malformed.
fn class(p: &[char], start: usize, c: char) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut ranges = 0;
    loop {
        if p.get(i) == Some(&']') && ranges > 0 {
            return Some((i + 1, hit != negate));
        }
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
        ranges += 1;
    }
}

fn class_end(p: &[char], i: usize) -> Option<usize> {
    class(p, i, '\0').map(|(end, _)| end)
}

fn match_from(p: &[char], pi: usize, n: &[char], ni: usize) -> bool {
    if pi == p.len() {
        return ni == n.len();
    }
    match p[pi] {
        '*' => {
            // Any run of non-separators, then the rest.
            let mut k = ni;
            loop {
                if match_from(p, pi + 1, n, k) {
                    return true;
                }
                if k == n.len() || n[k] == '/' {
                    return false;
                }
                k += 1;
            }
        }
        '?' => ni < n.len() && n[ni] != '/' && match_from(p, pi + 1, n, ni + 1),
        '[' => {
            let Some(end) = class_end(p, pi) else { return false };
            ni < n.len() && n[ni] != '/' && class(p, pi, n[ni]).is_some_and(|(_, hit)| hit) && match_from(p, end, n, ni + 1)
        }
        '\\' => pi + 1 < p.len() && ni < n.len() && n[ni] == p[pi + 1] && match_from(p, pi + 2, n, ni + 1),
        c => ni < n.len() && n[ni] == c && match_from(p, pi + 1, n, ni + 1),
    }
}

/// Whether an image name (full `repo:tag`) matches a `docker images PATTERN` / `--filter
/// reference=PATTERN`, as Docker's FamiliarMatch does: the familiar `name:tag`, then the familiar
/// name alone.
pub fn reference_matches(pattern: &str, full: &str) -> Result<bool> {
    let fam = familiar(full);
    if path_match(pattern, fam)? {
        return Ok(true);
    }
    let (name, _) = split_tag(fam);
    path_match(pattern, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_as_go_path_match() {
        let m = |p: &str, n: &str| path_match(p, n).unwrap();
        assert!(m("librarytest/*", "librarytest/app"));
        assert!(!m("librarytest/*", "librarytest/a/b"));
        assert!(!m("*", "me/app"));
        assert!(m("*/*", "me/app"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("\\*", "*"));
        assert!(m("busybox", "busybox"));
        assert!(path_match("[", "a").is_err());
        assert!(path_match("a\\", "a").is_err());
        assert!(path_match("[]a]", "a").is_err());
        assert!(reference_matches("librarytest/*", "docker.io/librarytest/app:v1").unwrap());
        assert!(reference_matches("busybox", "docker.io/library/busybox:latest").unwrap());
        assert!(reference_matches("busybox:lat*", "docker.io/library/busybox:latest").unwrap());
        assert!(!reference_matches("busybox:1*", "docker.io/library/busybox:latest").unwrap());
        assert!(reference_matches("*:v1", "docker.io/me/app:v1").is_ok_and(|m| !m));
        assert!(reference_matches("localhost:5000/*", "localhost:5000/app:v1").unwrap());
    }

    #[test]
    fn normalises_like_docker() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.tagged().unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(Reference::parse("me/app:2").unwrap().tagged().unwrap(), "docker.io/me/app:2");
        assert_eq!(Reference::parse("localhost:5000/app").unwrap().tagged().unwrap(), "localhost:5000/app:latest");
        assert_eq!(Reference::parse("ghcr.io/o/a:v1.2").unwrap().tagged().unwrap(), "ghcr.io/o/a:v1.2");
        assert_eq!(Reference::parse("index.docker.io/library/busybox:1").unwrap().tagged().unwrap(), "docker.io/library/busybox:1");
        assert_eq!(familiar("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(familiar("docker.io/me/app:2"), "me/app:2");
        assert_eq!(split_tag("localhost:5000/app:v1"), ("localhost:5000/app", "v1"));
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(Reference::parse(&d).unwrap().tag, None);
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["Busybox", "bad name", "a:", ":tag", "a//b", "-a", "a:b:c/d", "a@sha256:zz", ""] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
