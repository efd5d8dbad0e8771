//! One registry: where it is (Docker Hub's API host, HTTPS or, for loopback and insecure
//! registries, plain HTTP), the challenge-response authentication with tokens cached per scope,
//! redirects (the `Authorization` header never goes to another host) and retries with back-off
//! that honour `Retry-After`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime::error::Kind;
use berth_runtime::{Error, Result};
use serde_json::Value;

use crate::auth::{parse_challenges, AuthFile, Challenge, Creds};
use crate::http::{is_loopback, split_host_port, Body, ConnectError, Proxy, Request, Response, Transport, Url};
use crate::tls;

/// How berth reaches registries (berth.toml's `[registry]` and the environment).
#[derive(Debug, Clone)]
pub struct Options {
    /// Registries (`host[:port]`) that may speak plain HTTP or show any certificate.
    pub insecure: Vec<String>,
    /// Mirrors of Docker Hub, tried in order before it (`https://mirror.example`).
    pub mirrors: Vec<String>,
    /// `certs.d` directories (Docker's layout: `DIR/HOST[:PORT]/ca.crt`).
    pub cert_dirs: Vec<PathBuf>,
    /// Certificates are checked against `max(now, floor)` (no-RTC boards).
    pub floor: u64,
    /// Attempts per request on a network error, 429, 502, 503 or 504.
    pub attempts: u32,
    /// Longest wait between attempts (`Retry-After` is capped here too).
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    /// The credentials file (`<root>/config.json`).
    pub auth_file: Option<PathBuf>,
    pub proxy: Option<Proxy>,
    /// Bytes per `PATCH` of a pushed layer (default `push::CHUNK`).
    pub chunk_size: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            cert_dirs: tls::CERT_DIRS.iter().map(PathBuf::from).collect(),
            floor: 0,
            attempts: 5,
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
            io_timeout: Duration::from_secs(60),
            auth_file: None,
            proxy: None,
            chunk_size: None,
        }
    }
}

impl Options {
    pub fn is_insecure(&self, host: &str, port: u16) -> bool {
        let hp = format!("{host}:{port}");
        self.insecure.iter().any(|i| i == &hp || i == host || cidr_contains(i, host))
    }
}

/// `10.0.0.0/8` style entries of `insecure-registries`.
fn cidr_contains(cidr: &str, host: &str) -> bool {
    let (Some((net, bits)), Ok(ip)) = (cidr.split_once('/'), host.parse::<std::net::Ipv4Addr>()) else { return false };
    let (Ok(net), Ok(bits)) = (net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>()) else { return false };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// `Accept` for manifests: every kind berth reads.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct Registry {
    /// The name in references: `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Where its API lives (`https://registry-1.docker.io`), path `/`.
    pub base: Url,
    creds: Option<Creds>,
    opts: Options,
    transport: Transport,
    /// The registry's challenge, once seen: later requests authenticate up front.
    challenge: Mutex<Option<Challenge>>,
    /// `Authorization` values per scope set.
    tokens: Mutex<HashMap<String, String>>,
}

/// A registry answer that is not a success, with the registry's own error text.
pub fn status_error(what: &str, status: u16, body: &[u8]) -> Error {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.as_array()?.first()?.clone();
            let code = e.get("code").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase().replace('_', " ");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("").to_string();
            Some(if code.is_empty() || code == msg { msg } else { format!("{code}: {msg}") })
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().replace('\n', " "));
    let kind = match status {
        404 => Kind::NotFound,
        _ => Kind::Invalid,
    };
    let text = match status {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found",
        429 => "too many requests",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "error",
    };
    let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
    Error::new(kind, format!("{what}: HTTP {status} {text}{detail}"))
}

fn retryable_status(s: u16) -> bool {
    matches!(s, 429 | 502 | 503 | 504)
}

/// A network error worth another attempt (not a refused certificate or a bad answer).
pub fn retryable_error(e: &Error) -> bool {
    e.kind() == Kind::Io || e.message().contains("unexpected end of data") || e.message().contains("connection closed")
}

/// Jittered exponential back-off: 1 s doubling to `max`, each wait between half and all of it.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempt.min(10)).min(max);
    let mut b = [0u8; 2];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    let frac = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    base.mul_f64(0.5 + frac / 2.0)
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries; it gets the back-off).
fn retry_after(r: &Response) -> Option<Duration> {
    r.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

impl Registry {
    /// Connects to the registry of reference domain `domain`: decides HTTPS or HTTP (plain HTTP
    /// only on loopback or for an insecure registry, and only when it does not speak TLS).
    pub fn new(domain: &str, opts: &Options) -> Result<Registry> {
        let api = if domain == "docker.io" { "registry-1.docker.io" } else { domain };
        Self::at(domain, &format!("https://{api}"), opts)
    }

    /// A registry at an explicit endpoint (a mirror).
    pub fn at(domain: &str, endpoint: &str, opts: &Options) -> Result<Registry> {
        let endpoint = if endpoint.contains("://") { endpoint.to_string() } else { format!("https://{endpoint}") };
        let mut base = Url::parse(&endpoint)?;
        base.path = "/".into();
        let creds = match &opts.auth_file {
            Some(p) => AuthFile::new(p).get(domain)?,
            None => None,
        };
        let o = opts.clone();
        let cache: Mutex<HashMap<String, Arc<rustls::ClientConfig>>> = Mutex::new(HashMap::new());
        let tls_for = move |u: &Url| -> Result<Arc<rustls::ClientConfig>> {
            let key = u.authority();
            let mut c = cache.lock().map_err(|_| Error::invalid("TLS cache poisoned"))?;
            if let Some(cfg) = c.get(&key) {
                return Ok(cfg.clone());
            }
            let cfg = tls::config(&o.cert_dirs, &u.host, u.port, o.floor, o.is_insecure(&u.host, u.port))?;
            c.insert(key, cfg.clone());
            Ok(cfg)
        };
        let transport = Transport {
            tls: Box::new(tls_for),
            proxy: opts.proxy.clone(),
            connect_timeout: opts.connect_timeout,
            io_timeout: opts.io_timeout,
        };
        let mut r = Registry {
            domain: domain.to_string(),
            base,
            creds,
            opts: opts.clone(),
            transport,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        };
        r.pick_scheme()?;
        Ok(r)
    }

    pub fn set_creds(&mut self, c: Option<Creds>) {
        self.creds = c;
        if let Ok(mut t) = self.tokens.lock() {
            t.clear();
        }
    }

    /// May plain HTTP be used with this host?
    fn plain_ok(&self, u: &Url) -> bool {
        is_loopback(&u.host) || self.opts.is_insecure(&u.host, u.port)
    }

    /// HTTPS unless the registry is one that may speak plain HTTP and does.
    fn pick_scheme(&mut self) -> Result<()> {
        if !self.base.https {
            if !self.plain_ok(&self.base) {
                return Err(Error::invalid(format!(
                    "registry {} is not on loopback nor in insecure-registries: plain HTTP refused",
                    self.base.authority()
                )));
            }
            return Ok(());
        }
        if !self.plain_ok(&self.base) {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.transport.connect(&self.base) {
                Ok(_) => return Ok(()),
                Err(ConnectError::NotTls(_)) => {
                    self.base.https = false;
                    if self.base.port == 443 {
                        self.base.port = 80;
                    }
                    return Ok(());
                }
                Err(ConnectError::Other(e)) if retryable_error(&e) && attempt + 1 < self.opts.attempts => {
                    std::thread::sleep(backoff(attempt, self.opts.max_backoff));
                    attempt += 1;
                }
                Err(ConnectError::Other(e)) => return Err(e.context(format!("registry {}", self.domain))),
            }
        }
    }

    pub fn attempts(&self) -> u32 {
        self.opts.attempts.max(1)
    }

    pub fn url(&self, path: &str) -> Url {
        Url { path: path.to_string(), ..self.base.clone() }
    }

    fn cached_auth(&self, scopes: &[String]) -> Option<String> {
        let ch = self.challenge.lock().ok()?.clone()?;
        if ch.scheme == "basic" {
            return self.creds.as_ref().map(Creds::basic);
        }
        self.tokens.lock().ok()?.get(&scopes.join(" ")).cloned()
    }

    /// Answers a challenge: Basic with the stored credentials, or a token for `scopes` from the
    /// realm the registry named.
    fn authenticate(&self, www: &[String], scopes: &[String]) -> Result<String> {
        let challenges: Vec<Challenge> = www.iter().flat_map(|h| parse_challenges(h)).collect();
        let ch = challenges
            .iter()
            .find(|c| c.scheme == "bearer")
            .or_else(|| challenges.iter().find(|c| c.scheme == "basic"))
            .cloned()
            .ok_or_else(|| Error::invalid(format!("registry {}: unauthorized, with no challenge berth can answer", self.domain)))?;
        if let Ok(mut c) = self.challenge.lock() {
            *c = Some(ch.clone());
        }
        if ch.scheme == "basic" {
            return match &self.creds {
                Some(c) => Ok(c.basic()),
                None => Err(Error::invalid(format!(
                    "registry {}: unauthorized: authentication required (berth login {})",
                    self.domain, self.domain
                ))),
            };
        }
        let realm = ch.param("realm").ok_or_else(|| Error::invalid(format!("registry {}: bearer challenge without realm", self.domain)))?;
        let mut url = Url::parse(realm).map_err(|e| e.context(format!("registry {}: token realm", self.domain)))?;
        if !url.https && !self.plain_ok(&url) {
            return Err(Error::invalid(format!(
                "registry {}: token realm {realm} is plain HTTP to a host that is not loopback nor insecure",
                self.domain
            )));
        }
        let mut q: Vec<String> = Vec::new();
        if let Some(s) = ch.param("service") {
            q.push(format!("service={}", encode(s)));
        }
        let mut all: Vec<String> = scopes.to_vec();
        if let Some(s) = ch.param("scope") {
            for s in s.split(' ') {
                if !all.iter().any(|x| x == s) {
                    all.push(s.to_string());
                }
            }
        }
        for s in &all {
            q.push(format!("scope={}", encode(s)));
        }
        if !q.is_empty() {
            url.path.push(if url.path.contains('?') { '&' } else { '?' });
            url.path.push_str(&q.join("&"));
        }
        let mut headers = Vec::new();
        if let Some(c) = &self.creds {
            headers.push(("Authorization".to_string(), c.basic()));
        }
        let what = format!("token from {}", url.authority());
        let mut resp = self.send_retrying(&mut Request { method: "GET", url, headers, body: Body::Empty }, &what)?;
        let body = resp.body(1 << 20)?;
        if resp.status == 401 || resp.status == 403 {
            return Err(status_error(&format!("registry {}: login", self.domain), resp.status, &body).context(if self.creds.is_some() {
                "wrong credentials"
            } else {
                "authentication required"
            }));
        }
        if resp.status != 200 {
            return Err(status_error(&what, resp.status, &body));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| Error::invalid(format!("{what}: malformed JSON: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::invalid(format!("{what}: answer holds no token")))?;
        let h = format!("Bearer {token}");
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(scopes.join(" "), h.clone());
        }
        Ok(h)
    }

    /// One exchange, retried on network errors and on 429/502/503/504 (waiting as long as
    /// `Retry-After` asks, up to the back-off cap). Redirects are not followed here.
    fn send_retrying(&self, req: &mut Request<'_>, what: &str) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let last = attempt + 1 >= self.opts.attempts;
            match self.transport.send(req) {
                Ok(r) if retryable_status(r.status) && !last => {
                    let wait =
                        retry_after(&r).map(|d| d.min(self.opts.max_backoff)).unwrap_or_else(|| backoff(attempt, self.opts.max_backoff));
                    drop(r);
                    std::thread::sleep(wait);
                }
                Ok(r) => return Ok(r),
                Err(e) if retryable_error(&e) && !last => std::thread::sleep(backoff(attempt, self.opts.max_backoff)),
                Err(e) => return Err(e.context(format!("registry {}: {what}", self.domain))),
            }
            attempt += 1;
        }
    }

    /// A request to the registry with authentication (`scopes`: `repository:NAME:pull` ...),
    /// following redirects. `Authorization` goes only to the registry's own host.
    pub fn request(
        &self,
        method: &'static str,
        url: Url,
        headers: &[(&str, String)],
        body: Body<'_>,
        scopes: &[String],
        what: &str,
    ) -> Result<Response> {
        let mut body = body;
        let mut url = url;
        let mut auth = self.cached_auth(scopes);
        let mut answered = false;
        let mut method = method;
        for _ in 0..10 {
            let same_host = url.authority() == self.base.authority();
            if !url.https && !self.plain_ok(&url) {
                return Err(Error::invalid(format!("{what}: redirected to plain HTTP {url}, refused")));
            }
            let mut h: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            if let (true, Some(a)) = (same_host, &auth) {
                h.push(("Authorization".into(), a.clone()));
            }
            let mut req = Request { method, url: url.clone(), headers: h, body };
            let resp = self.send_retrying(&mut req, what)?;
            body = req.body;
            match resp.status {
                401 if same_host && !answered && resp.header("www-authenticate").is_some() => {
                    let www: Vec<String> = resp.headers_named("www-authenticate").map(str::to_string).collect();
                    drop(resp);
                    auth = Some(self.authenticate(&www, scopes)?);
                    answered = true;
                }
                301 | 302 | 303 | 307 | 308 => {
                    let loc = resp.header("location").ok_or_else(|| Error::invalid(format!("{what}: redirect without Location")))?;
                    url = url.join(loc)?;
                    if resp.status == 303 || (matches!(resp.status, 301 | 302) && method != "GET" && method != "HEAD") {
                        method = "GET";
                        body = Body::Empty;
                    }
                }
                _ => return Ok(resp),
            }
        }
        Err(Error::invalid(format!("registry {}: {what}: too many redirects", self.domain)))
    }

    /// `GET /v2/`: whether the credentials are good (`login`).
    pub fn check_login(&self) -> Result<()> {
        let mut r = self.request("GET", self.url("/v2/"), &[], Body::Empty, &[], "log in")?;
        let body = r.body(1 << 16)?;
        match r.status {
            200 => Ok(()),
            401 | 403 => Err(status_error(&format!("login to {}", self.domain), r.status, &body)),
            s => Err(status_error(&format!("registry {}", self.domain), s, &body)),
        }
    }
}

/// Percent-encoding for query values.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `host[:port]` of a reference domain, for the checks above.
pub fn domain_host(domain: &str) -> Option<(String, Option<u16>)> {
    split_host_port(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_entries() {
        let o = Options { insecure: vec!["reg.lan:5000".into(), "10.0.0.0/8".into()], ..Options::default() };
        assert!(o.is_insecure("reg.lan", 5000));
        assert!(!o.is_insecure("reg.lan", 443));
        assert!(o.is_insecure("10.1.2.3", 443));
        assert!(!o.is_insecure("11.1.2.3", 443));
    }

    #[test]
    fn registry_errors_read_well() {
        let e = status_error("manifest x", 404, br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#);
        assert_eq!(e.to_string(), "manifest x: HTTP 404 not found: manifest unknown");
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}
