//! A small HTTP/1.1 client: one request per connection (`Connection: close`), TLS by rustls,
//! `Content-Length`, chunked and read-to-close bodies, timeouts on every read and write, and
//! `HTTPS_PROXY`/`NO_PROXY` through `CONNECT`. Redirects and authentication are the caller's
//! (`client.rs`): they depend on registry rules, not on HTTP.
//!
//! Our own rather than ureq or hyper: registries need a handful of requests, and this is a few
//! hundred lines on top of the rustls the agent already links.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{Error, Result};
use rustls::pki_types::ServerName;

use crate::auth::base64;

/// Response heads above this are refused (a registry's are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url> {
        let bad = |why: &str| Error::invalid(format!("URL {s:?}: {why}"));
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("not http:// or https://"));
        };
        let (auth, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let path = if path.starts_with('?') { format!("/{path}") } else { path };
        let (host, port) = split_host_port(auth).ok_or_else(|| bad("bad host or port"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        Ok(Url { https, host, port, path })
    }

    /// `host:port` (IPv6 in brackets), as in `Host:` and `CONNECT`.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{host}:{}", self.port)
    }

    /// A `Location` header taken relative to this URL.
    pub fn join(&self, location: &str) -> Result<Url> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Url::parse(location)
        } else if let Some(rest) = location.strip_prefix("//") {
            Url::parse(&format!("{}://{rest}", if self.https { "https" } else { "http" }))
        } else if location.starts_with('/') {
            Ok(Url { path: location.to_string(), ..self.clone() })
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            Ok(Url { path: format!("{dir}{location}"), ..self.clone() })
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let default = if self.https { 443 } else { 80 };
        let scheme = if self.https { "https" } else { "http" };
        if self.port == default {
            let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
            write!(f, "{scheme}://{host}{}", self.path)
        } else {
            write!(f, "{scheme}://{}{}", self.authority(), self.path)
        }
    }
}

/// `host[:port]` or `[v6][:port]`.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(h) = s.strip_prefix('[') {
        let (h, p) = h.split_once(']')?;
        (h, p.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Whether `host` is on the loopback network (127.0.0.0/8, ::1, `localhost`).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The TLS client configuration for a URL's host (`tls.rs`, cached by the caller).
pub type TlsFor = Box<dyn Fn(&Url) -> Result<Arc<rustls::ClientConfig>> + Send + Sync>;

/// How connections are made: TLS configurations per host (from `tls.rs`), the proxy, timeouts.
pub struct Transport {
    pub tls: TlsFor,
    pub proxy: Option<Proxy>,
    pub connect_timeout: Duration,
    /// Longest wait for any one read or write: a registry that stalls is an error, not a hang.
    pub io_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Proxy {
    pub https: Option<Url>,
    pub http: Option<Url>,
    /// `NO_PROXY` entries: `*`, host names (suffix match), IP addresses.
    pub no_proxy: Vec<String>,
    /// `user:pass` from the proxy URL.
    pub auth: Option<String>,
}

impl Proxy {
    /// From `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (either case), as Docker reads them.
    pub fn from_env() -> Result<Option<Proxy>> {
        let var = |n: &str| std::env::var(n).or_else(|_| std::env::var(n.to_ascii_lowercase())).ok().filter(|v| !v.is_empty());
        let mut auth = None;
        let mut parse = |v: Option<String>| -> Result<Option<Url>> {
            let Some(v) = v else { return Ok(None) };
            let v = if v.contains("://") { v } else { format!("http://{v}") };
            let (scheme, rest) = v.split_once("://").unwrap_or(("http", &v));
            let rest = match rest.split_once('@') {
                Some((a, r)) => {
                    auth = Some(a.to_string());
                    r
                }
                None => rest,
            };
            let u = Url::parse(&format!("{scheme}://{rest}")).map_err(|e| e.context("proxy"))?;
            if u.https {
                return Err(Error::invalid(format!("proxy {u}: only http:// proxies are supported")));
            }
            Ok(Some(u))
        };
        let https = parse(var("HTTPS_PROXY"))?;
        let http = parse(var("HTTP_PROXY"))?;
        if https.is_none() && http.is_none() {
            return Ok(None);
        }
        let no_proxy = var("NO_PROXY").map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect());
        Ok(Some(Proxy { https, http, no_proxy: no_proxy.unwrap_or_default(), auth }))
    }

    /// The proxy for `url`, if any: never for loopback (as Go's net/http), nor a `NO_PROXY` match.
    fn for_url(&self, url: &Url) -> Option<&Url> {
        if is_loopback(&url.host) {
            return None;
        }
        let host = url.host.as_str();
        for n in &self.no_proxy {
            if n == "*" {
                return None;
            }
            let Some((n, port)) = split_host_port(n.trim_start_matches("*.").trim_start_matches('.')) else { continue };
            if port.is_some_and(|p| p != url.port) {
                continue;
            }
            if host == n || host.ends_with(&format!(".{n}")) {
                return None;
            }
        }
        if url.https {
            self.https.as_ref()
        } else {
            self.http.as_ref()
        }
    }
}

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Why a TLS connection failed: the peer speaks plain HTTP (a fallback is possible for loopback
/// and insecure registries), or anything else.
#[derive(Debug)]
pub enum ConnectError {
    NotTls(Error),
    Other(Error),
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Error {
        match e {
            ConnectError::NotTls(e) | ConnectError::Other(e) => e,
        }
    }
}

impl Transport {
    fn tcp(&self, host: &str, port: u16) -> Result<TcpStream> {
        let what = || format!("connect to {host}:{port}");
        let addrs = (host, port).to_socket_addrs().map_err(|e| Error::io(what(), e))?;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.connect_timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s.set_read_timeout(Some(self.io_timeout)).map_err(|e| Error::io(what(), e))?;
                    s.set_write_timeout(Some(self.io_timeout)).map_err(|e| Error::io(what(), e))?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => Error::io(what(), e),
            None => Error::not_found(format!("{}: no address", what())),
        })
    }

    /// A connection to `url`'s host, through the proxy if one applies, TLS if `url` is https.
    pub fn connect(&self, url: &Url) -> std::result::Result<Stream, ConnectError> {
        let other = ConnectError::Other;
        let tcp = match self.proxy.as_ref().and_then(|p| p.for_url(url).map(|u| (p, u))) {
            Some((p, proxy)) => {
                let mut s = self.tcp(&proxy.host, proxy.port).map_err(other)?;
                let mut head = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", url.authority());
                if let Some(a) = &p.auth {
                    head.push_str(&format!("Proxy-Authorization: Basic {}\r\n", base64(a.as_bytes())));
                }
                head.push_str("\r\n");
                s.write_all(head.as_bytes()).map_err(|e| other(Error::io(format!("proxy {}", proxy.authority()), e)))?;
                let mut r = BufReader::new(s);
                let (status, _) = read_head(&mut r).map_err(|e| other(e.context(format!("proxy {}", proxy.authority()))))?;
                if status != 200 {
                    return Err(other(Error::invalid(format!(
                        "proxy {} refused CONNECT to {}: HTTP {status}",
                        proxy.authority(),
                        url.authority()
                    ))));
                }
                // A proxy sends nothing after its answer to CONNECT until the tunnel is used.
                r.into_inner()
            }
            None => self.tcp(&url.host, url.port).map_err(other)?,
        };
        if !url.https {
            return Ok(Stream::Plain(tcp));
        }
        let config = (self.tls)(url).map_err(other)?;
        let name =
            ServerName::try_from(url.host.clone()).map_err(|_| other(Error::invalid(format!("bad TLS server name {:?}", url.host))))?;
        let conn =
            rustls::ClientConnection::new(config, name).map_err(|e| other(Error::invalid(format!("TLS to {}: {e}", url.authority()))))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        // Handshake now, so a server that speaks plain HTTP is told apart from a bad certificate.
        while s.conn.is_handshaking() {
            if let Err(e) = s.conn.complete_io(&mut s.sock) {
                let tls = e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>());
                let msg = Error::new(berth_runtime::error::Kind::Invalid, format!("TLS handshake with {}: {e}", url.authority()));
                let not_tls = matches!(tls, Some(rustls::Error::InvalidMessage(_)))
                    || matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
                    // A plain HTTP server waiting for the rest of a "request" that never comes
                    // (only asked of hosts that may speak plain HTTP: loopback, insecure).
                    || matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut);
                return Err(if not_tls { ConnectError::NotTls(msg) } else { ConnectError::Other(msg) });
            }
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    /// Sends one request and reads the response head; the body is read from the response.
    pub fn send(&self, req: &mut Request<'_>) -> Result<Response> {
        let mut s = self.connect(&req.url)?;
        let what = || format!("{} {}", req.method, req.url);
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", req.method, req.url.path, host_header(&req.url));
        head.push_str("User-Agent: berth/0.1\r\nConnection: close\r\n");
        for (k, v) in &req.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match &req.body {
            Body::Empty if matches!(req.method, "POST" | "PUT" | "PATCH") => head.push_str("Content-Length: 0\r\n"),
            Body::Empty => {}
            Body::Bytes(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::Stream(n, _) => head.push_str(&format!("Content-Length: {n}\r\n")),
        }
        head.push_str("\r\n");
        let mut w = io::BufWriter::with_capacity(64 * 1024, &mut s);
        w.write_all(head.as_bytes()).map_err(|e| Error::io(what(), e))?;
        match &mut req.body {
            Body::Empty => {}
            Body::Bytes(b) => w.write_all(b).map_err(|e| Error::io(what(), e))?,
            Body::Stream(n, f) => {
                let mut c = Counting { inner: &mut w, n: 0 };
                f(&mut c).map_err(|e| e.context(what()))?;
                if c.n != *n {
                    return Err(Error::invalid(format!("{}: body was {} bytes, not the {n} announced", what(), c.n)));
                }
            }
        }
        w.flush().map_err(|e| Error::io(what(), e))?;
        drop(w);
        let mut r = BufReader::with_capacity(64 * 1024, s);
        let (status, headers) = read_head(&mut r).map_err(|e| e.context(what()))?;
        let header = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str());
        let framing = if req.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            Framing::Chunked { left: 0, done: false }
        } else if let Some(v) = header("content-length") {
            Framing::Length(v.trim().parse().map_err(|_| Error::invalid(format!("{}: bad Content-Length {v:?}", what())))?)
        } else {
            Framing::Eof
        };
        Ok(Response { status, headers, r, framing })
    }
}

fn host_header(u: &Url) -> String {
    if u.port == if u.https { 443 } else { 80 } {
        if u.host.contains(':') {
            format!("[{}]", u.host)
        } else {
            u.host.clone()
        }
    } else {
        u.authority()
    }
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub type BodyWriter<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<()>;

pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A body of known length written by the closure (a layer rebuilt from the store).
    Stream(u64, BodyWriter<'a>),
}

pub struct Request<'a> {
    pub method: &'static str,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Body<'a>,
}

fn read_line(r: &mut impl BufRead, limit: &mut usize) -> Result<String> {
    let mut line = Vec::new();
    let n = r.by_ref().take(*limit as u64 + 1).read_until(b'\n', &mut line).map_err(|e| Error::io("read response", e))?;
    if n == 0 {
        return Err(Error::invalid("connection closed before the response"));
    }
    if n > *limit {
        return Err(Error::invalid("response head is too large"));
    }
    *limit -= n;
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_head(r: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>)> {
    let mut limit = MAX_HEAD;
    let line = read_line(r, &mut limit)?;
    let mut parts = line.splitn(3, ' ');
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| Error::invalid(format!("not an HTTP response: {:?}", line.chars().take(40).collect::<String>())))?;
    let mut headers = Vec::new();
    loop {
        let l = read_line(r, &mut limit)?;
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if (100..200).contains(&status) && status != 101 {
        // `100 Continue` and friends: the real answer follows.
        return read_head(r);
    }
    Ok((status, headers))
}

enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Eof,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    r: BufReader<Stream>,
    framing: Framing,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// All headers of that name (`WWW-Authenticate` may come more than once).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The declared body length, when the server gave one.
    pub fn content_length(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    /// The whole body, refused past `limit` bytes.
    pub fn body(&mut self, limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.take(limit + 1).read_to_end(&mut out).map_err(|e| Error::io("read response body", e))?;
        if out.len() as u64 > limit {
            return Err(Error::invalid(format!("response body is larger than {limit} bytes")));
        }
        Ok(out)
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.framing {
            Framing::Length(left) => {
                if *left == 0 || buf.is_empty() {
                    return Ok(0);
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-body"));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Eof => match self.r.read(buf) {
                // A TLS peer that closes without close_notify: the body ends there (digests guard
                // everything that matters).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
            Framing::Chunked { left, done } => {
                if *done || buf.is_empty() {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut limit = 4096;
                    let line = read_line(&mut self.r, &mut limit).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16)
                        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {size:?}")))?;
                    if size == 0 {
                        *done = true;
                        // Trailers, up to the empty line.
                        loop {
                            let l = read_line(&mut self.r, &mut limit)
                                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                            if l.is_empty() {
                                return Ok(0);
                            }
                        }
                    }
                    *left = size;
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-chunk"));
                }
                *left -= n as u64;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    self.r.read_exact(&mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://registry-1.docker.io/v2/").unwrap();
        assert_eq!((u.https, u.host.as_str(), u.port, u.path.as_str()), (true, "registry-1.docker.io", 443, "/v2/"));
        let u = Url::parse("http://127.0.0.1:5000?x=1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (5000, "/?x=1"));
        assert_eq!(Url::parse("http://[::1]:80/a").unwrap().host, "::1");
        assert_eq!(u.join("/v2/x").unwrap().to_string(), "http://127.0.0.1:5000/v2/x");
        assert_eq!(u.join("https://cdn.example/b?sig=1").unwrap().authority(), "cdn.example:443");
        assert_eq!(Url::parse("https://h/v2/a/b").unwrap().join("c").unwrap().path, "/v2/a/c");
        for bad in ["ftp://h", "http://", "http://h:x/", "http://h:99999/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_proxy_rules() {
        let p = Proxy {
            https: Some(Url::parse("http://proxy:3128").unwrap()),
            http: None,
            no_proxy: vec!["example.com".into(), ".corp".into(), "10.0.0.1".into()],
            auth: None,
        };
        let via = |u: &str| p.for_url(&Url::parse(u).unwrap()).is_some();
        assert!(via("https://registry-1.docker.io/v2/"));
        assert!(!via("https://example.com/"));
        assert!(!via("https://a.example.com/"));
        assert!(!via("https://reg.corp/"));
        assert!(!via("https://10.0.0.1/"));
        assert!(!via("https://127.0.0.1:5000/"));
        assert!(!via("http://registry.example/"), "no HTTP_PROXY set");
    }

    /// A one-shot server on loopback answering `answer` to whatever it is sent.
    fn serve(answer: &'static [u8]) -> Url {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap() == 1 {
                head.push(b[0]);
            }
            c.write_all(answer).unwrap();
        });
        Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap()
    }

    fn transport() -> Transport {
        Transport {
            tls: Box::new(|_| Err(Error::invalid("no TLS here"))),
            proxy: None,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
        }
    }

    fn get(url: Url) -> Result<Response> {
        transport().send(&mut Request { method: "GET", url, headers: vec![], body: Body::Empty })
    }

    #[test]
    fn bodies_chunked_length_and_eof() {
        let mut r =
            get(serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"))
                .unwrap();
        assert_eq!(r.body(100).unwrap(), b"hello world");
        let mut r = get(serve(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef")).unwrap();
        assert_eq!(r.body(100).unwrap(), b"abc");
        let mut r = get(serve(b"HTTP/1.0 404 Not Found\r\n\r\nto the end")).unwrap();
        assert_eq!((r.status, r.body(100).unwrap()), (404, b"to the end".to_vec()));
        // Cut short: an error, never a short body taken as whole.
        let mut r = get(serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")).unwrap();
        assert!(r.body(100).is_err());
        let mut r = get(serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")).unwrap();
        assert!(r.body(100).is_err());
        // Larger than the caller's limit: refused.
        let mut r = get(serve(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef")).unwrap();
        assert!(r.body(5).is_err());
        assert!(get(serve(b"SSH-2.0-OpenSSH\r\n\r\n")).is_err(), "not HTTP");
    }

    #[test]
    fn heads_and_chunks() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n";
        let (status, h) = read_head(&mut &raw[..]).unwrap();
        assert_eq!((status, h[1].1.as_str()), (200, "b"));
    }
}
