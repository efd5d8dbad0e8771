//! A real registry for the pull/push tests: Debian's `docker-registry` (the CNCF distribution
//! registry 2.8) on a free loopback port with a config written here: plain HTTP, TLS from a CA
//! the test makes (`openssl`), htpasswd auth (`htpasswd -B`), or token auth against
//! [`TokenServer`], a small bearer-token server in the test that signs JWTs with `openssl`.
//! [`Front`] is an HTTP relay in front of it that can answer for it, cut its answers short, or
//! send endless ones: the bad registries of the issue without mocking the good one.
//! Everything stays on 127.0.0.0/8; every process and directory is removed on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::mqtt::{find_tool, free_port};
use crate::{make_temp_dir, run, s, sha256_digest, tool, Stdin};

pub const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn require_registry_tools() {
    find_tool("docker-registry", "docker-registry");
    find_tool("skopeo", "skopeo");
    find_tool("htpasswd", "apache2-utils");
    find_tool("openssl", "openssl");
    find_tool("curl", "curl");
}

#[derive(Clone)]
pub enum Auth {
    None,
    Htpasswd { user: String, password: String },
    Token { realm: String, cert: PathBuf },
}

pub struct Registry {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    /// `127.0.0.1:PORT`
    pub host: String,
    pub tls: bool,
    /// A `certs.d` directory holding `127.0.0.1:PORT/ca.crt` when TLS is on.
    pub certs_d: PathBuf,
    pub auth: Auth,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = run(Command::new("openssl").current_dir(dir).args(args), Stdin::Null);
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`: ca.crt, server.crt/key.
pub fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ],
    );
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("write ext.cnf");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

impl Registry {
    pub fn start(tls: bool, auth: Auth) -> Registry {
        require_registry_tools();
        let dir = make_temp_dir("berth-registry");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let certs_d = dir.join("certs.d");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.join("data").display()
        );
        if tls {
            make_ca(&dir);
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            ));
            fs::create_dir_all(certs_d.join(&host)).expect("mkdir certs.d");
            fs::copy(dir.join("ca.crt"), certs_d.join(&host).join("ca.crt")).expect("copy ca.crt");
        }
        match &auth {
            Auth::None => {}
            Auth::Htpasswd { user, password } => {
                let file = dir.join("htpasswd");
                tool("htpasswd", &["-Bbc", s(&file), user, password]);
                cfg.push_str(&format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", file.display()));
            }
            Auth::Token { realm, cert } => {
                cfg.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: berth-test\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
                    cert.display()
                ));
            }
        }
        let cfg_path = dir.join("config.yml");
        fs::write(&cfg_path, cfg).expect("write registry config");
        let log = fs::File::create(dir.join("registry.log")).expect("create registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let r = Registry { child, dir, port, host, tls, certs_d, auth };
        let deadline = Instant::now() + REGISTRY_START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {} within {REGISTRY_START_TIMEOUT:?}: {}",
                r.host,
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    fn skopeo_auth(&self) -> Vec<String> {
        match &self.auth {
            Auth::Htpasswd { user, password } => vec![format!("--dest-creds={user}:{password}")],
            Auth::Token { .. } => vec![format!("--dest-creds={TOKEN_USER}:{TOKEN_PASSWORD}")],
            Auth::None => vec![],
        }
    }

    /// `skopeo copy SRC docker://127.0.0.1:PORT/DEST` (SRC in skopeo's transport syntax).
    pub fn put(&self, src: &str, dest: &str) {
        let mut args = vec!["copy".to_string(), "--quiet".into(), "--dest-tls-verify=false".into()];
        args.extend(self.skopeo_auth());
        args.push(src.into());
        args.push(format!("docker://{}/{dest}", self.host));
        tool("skopeo", &args);
    }

    /// The raw manifest and its digest, as the registry serves them (`skopeo inspect --raw`).
    pub fn raw_manifest(&self, name: &str) -> (Vec<u8>, String) {
        let mut args = vec!["inspect".to_string(), "--raw".into(), "--tls-verify=false".into()];
        match &self.auth {
            Auth::Htpasswd { user, password } => args.push(format!("--creds={user}:{password}")),
            Auth::Token { .. } => args.push(format!("--creds={TOKEN_USER}:{TOKEN_PASSWORD}")),
            Auth::None => {}
        }
        args.push(format!("docker://{}/{name}", self.host));
        let out = run(Command::new("skopeo").args(&args), Stdin::Null);
        assert!(out.status.success(), "skopeo {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        let d = sha256_digest(&out.stdout);
        (out.stdout, d)
    }

    /// PUTs a manifest or index by hand (plain registry only).
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        let file = self.dir.join("put-manifest.json");
        fs::write(&file, body).expect("write manifest");
        let scheme = if self.tls { "https" } else { "http" };
        let out = tool(
            "curl",
            &[
                "-sS",
                "-k",
                "-f",
                "-X",
                "PUT",
                "-H",
                &format!("Content-Type: {media_type}"),
                "--data-binary",
                &format!("@{}", file.display()),
                &format!("{scheme}://{}/v2/{repo}/manifests/{reference}", self.host),
            ],
        );
        let _ = out;
    }
}

pub const TOKEN_USER: &str = "tokenuser";
pub const TOKEN_PASSWORD: &str = "token-secret";

/// A bearer-token server: `GET /token?service=..&scope=..` answers a JWT (RS256, `x5c` header)
/// signed with a key whose certificate the registry trusts. Anonymous callers get `pull` only;
/// `tokenuser:token-secret` gets what it asks; other credentials get 401.
pub struct TokenServer {
    pub port: u16,
    pub dir: PathBuf,
    pub cert: PathBuf,
    /// Every request's query string and whether it carried credentials.
    pub requests: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn b64std(data: &[u8]) -> String {
    b64url(data).replace('-', "+").replace('_', "/") + &"=".repeat((3 - data.len() % 3) % 3)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads an HTTP request head (up to the blank line) from `c`.
pub fn read_request_head(c: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            // A TLS ClientHello (or any binary) to a plain HTTP server: closed, as a real one
            // answers it with 400 and closes.
            Ok(1) if head.is_empty() && !b[0].is_ascii_uppercase() => return None,
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
        if head.len() > 65536 {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    Some((text, head))
}

pub fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

impl TokenServer {
    pub fn start() -> TokenServer {
        let dir = make_temp_dir("berth-token");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
                "-days",
                "2",
                "-subj",
                "/CN=berth-test-issuer",
            ],
        );
        openssl(&dir, &["x509", "-in", "token.crt", "-outform", "DER", "-out", "token.der"]);
        let der = fs::read(dir.join("token.der")).expect("read token.der");
        let l = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = l.local_addr().expect("token server address").port();
        l.set_nonblocking(true).expect("nonblocking token listener");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (st, rq, d) = (stop.clone(), requests.clone(), dir.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let Some((head, _)) = read_request_head(&mut c) else { continue };
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let query = target.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
                let auth = header_of(&head, "authorization").map(str::to_string);
                rq.lock().expect("token log").push((query.clone(), auth.is_some()));
                let good = format!("Basic {}", b64std(format!("{TOKEN_USER}:{TOKEN_PASSWORD}").as_bytes()));
                let full = match &auth {
                    None => false,
                    Some(a) if *a == good => true,
                    Some(_) => {
                        let _ = c.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 60\r\nConnection: close\r\n\r\n{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"bad password\"}]}");
                        continue;
                    }
                };
                let mut access = Vec::new();
                for kv in query.split('&') {
                    if let Some(v) = kv.strip_prefix("scope=") {
                        let v = percent_decode(v);
                        let parts: Vec<&str> = v.splitn(3, ':').collect();
                        if parts.len() == 3 {
                            let actions: Vec<&str> = parts[2].split(',').filter(|a| full || *a == "pull").collect();
                            access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": actions}));
                        }
                    }
                }
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [b64std(&der)]});
                let claims = serde_json::json!({"iss": "berth-test-issuer", "sub": if full {TOKEN_USER} else {""}, "aud": "berth-test",
                    "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{}", rq.lock().map(|r| r.len()).unwrap_or(0)), "access": access});
                let signing = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
                let input = d.join(format!("jwt-{}", std::process::id()));
                let _ = fs::write(&input, &signing);
                let sig = Command::new("openssl").arg("dgst").arg("-sha256").arg("-sign").arg(d.join("token.key")).arg(&input).output();
                let Ok(sig) = sig else { continue };
                let token = format!("{signing}.{}", b64url(&sig.stdout));
                let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        let cert = dir.join("token.crt");
        TokenServer { port, dir, cert, requests, stop, thread: Some(thread) }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

/// What [`Front`] does with one request.
pub enum Action {
    /// Relay to the upstream port (optionally on another loopback address).
    Forward,
    /// Relay, but close the connection after this many bytes of the answer.
    Cut(u64),
    /// Answer with these bytes (a whole HTTP response) and close.
    Respond(Vec<u8>),
    /// `200 OK`, no length, zeros until the client gives up.
    Endless,
    /// Relay this many bytes of the answer, then hold the connection open without sending more
    /// (a link that stalls), until the test ends.
    Stall(u64),
}

pub struct RequestInfo {
    pub method: String,
    pub path: String,
    pub head: String,
}

pub type Rule = Arc<dyn Fn(&RequestInfo) -> Action + Send + Sync>;

/// An HTTP relay on `ADDR:PORT` in front of an upstream port; `log` keeps every request head.
pub struct Front {
    pub port: u16,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Bytes of answers relayed (all connections).
    pub relayed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Front {
    pub fn start(addr: &str, upstream: u16, rule: Rule) -> Front {
        let l = TcpListener::bind((addr, 0)).unwrap_or_else(|e| panic!("bind {addr}:0: {e}"));
        let port = l.local_addr().expect("front address").port();
        l.set_nonblocking(true).expect("nonblocking front listener");
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let relayed = Arc::new(AtomicU64::new(0));
        let (st, lg, rl) = (stop.clone(), log.clone(), relayed.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let (rule, lg, rl) = (rule.clone(), lg.clone(), rl.clone());
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                    let Some((head, raw)) = read_request_head(&mut c) else { return };
                    lg.lock().expect("front log").push(head.clone());
                    let mut words = head.split_whitespace();
                    let info = RequestInfo {
                        method: words.next().unwrap_or("").to_string(),
                        path: words.next().unwrap_or("").to_string(),
                        head: head.clone(),
                    };
                    let mut stall = false;
                    let limit = match rule(&info) {
                        Action::Respond(bytes) => {
                            let _ = c.write_all(&bytes);
                            let _ = c.shutdown(Shutdown::Both);
                            return;
                        }
                        Action::Endless => {
                            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
                            let zeros = vec![0u8; 64 * 1024];
                            let _ = c.set_write_timeout(Some(Duration::from_secs(10)));
                            let start = Instant::now();
                            while c.write_all(&zeros).is_ok() && start.elapsed() < Duration::from_secs(60) {}
                            return;
                        }
                        Action::Forward => u64::MAX,
                        Action::Cut(n) => n,
                        Action::Stall(n) => {
                            stall = true;
                            n
                        }
                    };
                    {
                        {
                            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
                            if up.write_all(&raw).is_err() {
                                return;
                            }
                            let (Ok(mut c2), Ok(mut up2)) = (c.try_clone(), up.try_clone()) else { return };
                            let t = std::thread::spawn(move || {
                                let _ = std::io::copy(&mut c2, &mut up2);
                                let _ = up2.shutdown(Shutdown::Write);
                            });
                            let mut buf = vec![0u8; 16 * 1024];
                            let mut sent = 0u64;
                            loop {
                                let n = match up.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                let n = n.min((limit - sent) as usize);
                                if c.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                                sent += n as u64;
                                rl.fetch_add(n as u64, Ordering::SeqCst);
                                if sent >= limit {
                                    break;
                                }
                            }
                            if stall {
                                let start = Instant::now();
                                let mut probe = [0u8; 1];
                                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                                // Held until the client goes away (a kill) or a minute passes.
                                while start.elapsed() < Duration::from_secs(60) {
                                    match c.read(&mut probe) {
                                        Ok(0) => break,
                                        Err(e)
                                            if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                                        _ => break,
                                    }
                                }
                            }
                            let _ = c.shutdown(Shutdown::Both);
                            let _ = up.shutdown(Shutdown::Both);
                            let _ = t.join();
                        }
                    }
                });
            }
        });
        Front { port, addr: addr.to_string(), log, relayed, stop, thread: Some(thread) }
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("front log").clone()
    }
}

/// A whole HTTP response with a JSON body.
pub fn http_response(status: u16, reason: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    let mut out = h.into_bytes();
    out.extend_from_slice(body);
    out
}

/// An HTTP `CONNECT` proxy on loopback that sends every tunnel to `127.0.0.1:upstream`, whatever
/// host was asked for (so a registry name that resolves nowhere stays on this machine), and keeps
/// the `CONNECT` targets it was asked for.
pub struct ConnectProxy {
    pub port: u16,
    pub targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ConnectProxy {
    pub fn start(upstream: u16) -> ConnectProxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = l.local_addr().expect("proxy address").port();
        l.set_nonblocking(true).expect("nonblocking proxy listener");
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (st, tg) = (stop.clone(), targets.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let tg = tg.clone();
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                    let Some((head, _)) = read_request_head(&mut c) else { return };
                    let mut w = head.split_whitespace();
                    if w.next() != Some("CONNECT") {
                        let _ = c.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
                        return;
                    }
                    tg.lock().expect("proxy log").push(w.next().unwrap_or("").to_string());
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
                    if c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").is_err() {
                        return;
                    }
                    let (Ok(mut c2), Ok(mut up2)) = (c.try_clone(), up.try_clone()) else { return };
                    let t = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c2, &mut up2);
                        let _ = up2.shutdown(Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut up, &mut c);
                    let _ = c.shutdown(Shutdown::Both);
                    let _ = t.join();
                });
            }
        });
        ConnectProxy { port, targets, stop, thread: Some(thread) }
    }
}
