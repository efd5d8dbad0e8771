//! Registry authentication: `WWW-Authenticate` challenges (Basic, Bearer with realm, service and
//! scope), and the credentials `berth login` keeps in Docker's `config.json` shape
//! (`{"auths": {"SERVER": {"auth": base64("user:password")}}}`), a root-only file written
//! atomically.

use std::path::{Path, PathBuf};

use berth_runtime::fsutil::atomic_write_mode;
use berth_runtime::{Error, Result};
use serde_json::{json, Value};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for b in s.trim_end_matches('=').bytes() {
        let v = B64.iter().position(|x| *x == b)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub user: String,
    pub password: String,
}

impl Creds {
    pub fn basic(&self) -> String {
        format!("Basic {}", base64(format!("{}:{}", self.user, self.password).as_bytes()))
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
    }
}

/// Parses `Bearer realm="https://auth",service="reg",scope="repository:a:pull"` (several
/// challenges may share one header, separated by commas).
pub fn parse_challenges(h: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = h.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b',' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'=' | b',') {
            i += 1;
        }
        let token = &h[start..i];
        if i < b.len() && b[i] == b'=' {
            // A parameter of the current challenge.
            i += 1;
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = h[i..].chars().next().unwrap_or(' ');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
                v
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                h[s..i].trim().to_string()
            };
            if let Some(c) = out.last_mut() {
                c.params.push((token.to_ascii_lowercase(), value));
            }
        } else {
            out.push(Challenge { scheme: token.to_ascii_lowercase(), params: Vec::new() });
        }
    }
    out
}

/// The key `config.json` uses for a registry: Docker Hub keeps its historical URL.
pub fn server_key(domain: &str) -> String {
    if domain == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        domain.to_string()
    }
}

/// `SERVER` as `login` takes it (`https://reg.example/`, `reg.example:5000`) → a registry domain.
pub fn normalize_server(s: &str) -> String {
    let s = s.trim_start_matches("https://").trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or("");
    match s {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        _ => s.to_ascii_lowercase(),
    }
}

/// The credentials file: `<root>/config.json`, 0600.
pub struct AuthFile {
    pub path: PathBuf,
}

impl AuthFile {
    pub fn new(path: &Path) -> AuthFile {
        AuthFile { path: path.to_path_buf() }
    }

    fn read(&self) -> Result<Value> {
        match std::fs::read(&self.path) {
            Ok(d) => serde_json::from_slice(&d).map_err(|e| Error::invalid(format!("{}: malformed JSON: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({"auths": {}})),
            Err(e) => Err(Error::io(format!("read {}", self.path.display()), e)),
        }
    }

    fn write(&self, v: &Value) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let data = serde_json::to_vec_pretty(v).map_err(|e| Error::invalid(e.to_string()))?;
        atomic_write_mode(&self.path, &data, 0o600)
    }

    /// The credentials stored for `domain`, if any.
    pub fn get(&self, domain: &str) -> Result<Option<Creds>> {
        let v = self.read()?;
        let key = server_key(domain);
        let Some(entry) = v.get("auths").and_then(|a| a.get(&key).or_else(|| a.get(domain))) else { return Ok(None) };
        let Some(auth) = entry.get("auth").and_then(Value::as_str) else { return Ok(None) };
        let bad = || Error::invalid(format!("{}: credentials for {key} are malformed", self.path.display()));
        let raw = unbase64(auth).ok_or_else(bad)?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (user, password) = raw.split_once(':').ok_or_else(bad)?;
        Ok(Some(Creds { user: user.to_string(), password: password.to_string() }))
    }

    pub fn set(&self, domain: &str, c: &Creds) -> Result<()> {
        let mut v = self.read()?;
        if !v.get("auths").is_some_and(Value::is_object) {
            v["auths"] = json!({});
        }
        v["auths"][server_key(domain)] = json!({"auth": base64(format!("{}:{}", c.user, c.password).as_bytes())});
        self.write(&v)
    }

    /// Removes `domain`'s credentials; false if there were none.
    pub fn remove(&self, domain: &str) -> Result<bool> {
        let mut v = self.read()?;
        let removed = match v.get_mut("auths").and_then(Value::as_object_mut) {
            Some(a) => a.remove(&server_key(domain)).is_some() | a.remove(domain).is_some(),
            None => false,
        };
        if removed {
            self.write(&v)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "user:pa:ss"] {
            assert_eq!(unbase64(&base64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
    }

    #[test]
    fn challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull,push"));
        let c = parse_challenges(r#"Basic realm="Registry Realm", Bearer realm="x""#);
        assert_eq!((c.len(), c[1].param("realm")), (2, Some("x")));
    }

    #[test]
    fn servers() {
        assert_eq!(normalize_server("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_server("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(server_key("docker.io"), "https://index.docker.io/v1/");
    }
}
