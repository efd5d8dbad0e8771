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

#[cfg(test)]
mod tests {
    use super::*;

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
