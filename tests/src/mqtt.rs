//! A real mosquitto for the update tests, the operator's `berth fleet`, agents connected to the
//! broker, and hand-made update messages for what `berth fleet` never sends.
//!
//! - [`Broker`]: Debian's `/usr/sbin/mosquitto` on a free loopback port with a config written here
//!   (plain, or mutual TLS with a CA, server and client certificates made by the `openssl` CLI in
//!   the broker's temp dir); stopped, restarted on the same port, or killed on drop.
//! - [`Subscriber`]: a `mosquitto_sub` collecting every message on some topics (binary chunk
//!   topics filtered out) from the moment [`Broker::subscribe`] returns, for bounded waits.
//! - [`Fleet`]: a signing key made by `berth fleet keygen` and `berth fleet ...` commands.
//! - [`device`]: `berth agent --mqtt ... --device-id ... --trust ...` on its own root ([`Agent`]).
//! - [`Crafted`]: a signed (or wrongly signed) update built with `berth_proto::{wire,sign}` and
//!   published piece by piece with `mosquitto_pub`, for bad-input tests.
//! - [`app_image`]: `docker save`-format tarballs `app:<tag>`, the layered fixture plus one layer.
//!
//! Everything fails loudly when mosquitto, its clients or openssl are missing (scripts/test
//! installs `mosquitto mosquitto-clients openssl`).

use std::collections::BTreeMap;
use std::fs;
use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use berth_proto::sign::SecretKey;
use berth_proto::wire::{Chunk, ImageRef, Kind, Manifest, DEFAULT_CHUNK};

use crate::agent::{code_of, Agent};
use crate::fixtures::pseudo_random;
use crate::{berth_bin, fixtures, make_temp_dir, require_root, run, s, sha256_hex, tool, Root, Stdin};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// How long the broker gets to accept connections after it is started.
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds `name` on PATH (or the usual sbin directories); panics naming the package otherwise.
pub fn find_tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"]);
    for d in dirs.filter(|d| !d.is_empty()) {
        let p = Path::new(d).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found: install Debian's {package} package (scripts/test does)")
}

/// Panics unless mosquitto, mosquitto_pub, mosquitto_sub and openssl are installed.
pub fn require_mqtt_tools() {
    assert!(Path::new(MOSQUITTO).is_file(), "{MOSQUITTO} not found: install Debian's mosquitto package (scripts/test does)");
    find_tool("mosquitto_pub", "mosquitto-clients");
    find_tool("mosquitto_sub", "mosquitto-clients");
    find_tool("openssl", "openssl");
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
    l.local_addr().expect("local address of the probe listener").port()
}

/// 32 random lowercase hex digits (an update id).
pub fn random_hex32() -> String {
    let mut b = [0u8; 16];
    let mut f = fs::File::open("/dev/urandom").expect("open /dev/urandom");
    std::io::Read::read_exact(&mut f, &mut b).expect("read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A client certificate and its key (PEM files).
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA with a server certificate for `127.0.0.1`/`localhost` and client certificates on
/// demand (CN = the name asked for), all EC P-256, made with the `openssl` CLI.
pub struct Pki {
    dir: PathBuf,
    pub ca: PathBuf,
    ca_key: PathBuf,
    pub server: ClientCert,
    serial: AtomicU32,
    clients: Mutex<BTreeMap<String, ClientCert>>,
}

fn openssl(args: &[&str]) {
    let bin = find_tool("openssl", "openssl");
    tool(s(&bin), args);
}

impl Pki {
    /// Makes the CA and the server certificate in `dir` (created).
    pub fn new(dir: &Path) -> Pki {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let ca_key = dir.join("ca.key");
        let ca = dir.join("ca.crt");
        let cnf = dir.join("ca.cnf");
        fs::write(
            &cnf,
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = berth-test-ca\n\
             [v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n",
        )
        .expect("write ca.cnf");
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", s(&ca_key)]);
        openssl(&["req", "-new", "-x509", "-config", s(&cnf), "-extensions", "v3", "-key", s(&ca_key), "-days", "30", "-out", s(&ca)]);
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
            server: ClientCert { cert: PathBuf::new(), key: PathBuf::new() },
            serial: AtomicU32::new(1),
            clients: Mutex::new(BTreeMap::new()),
        };
        let server = pki.leaf("server", "server", "serverAuth", Some("IP:127.0.0.1,DNS:localhost"));
        Pki { server, ..pki }
    }

    fn leaf(&self, file: &str, cn: &str, usage: &str, san: Option<&str>) -> ClientCert {
        let key = self.dir.join(format!("{file}.key"));
        let csr = self.dir.join(format!("{file}.csr"));
        let cert = self.dir.join(format!("{file}.crt"));
        let cnf = self.dir.join(format!("{file}.cnf"));
        let mut ext = format!(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n\
             [ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = {usage}\n\
             authorityKeyIdentifier = keyid\n"
        );
        if let Some(san) = san {
            ext.push_str(&format!("subjectAltName = {san}\n"));
        }
        fs::write(&cnf, ext).unwrap_or_else(|e| panic!("write {}: {e}", cnf.display()));
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", s(&key)]);
        openssl(&["req", "-new", "-config", s(&cnf), "-key", s(&key), "-out", s(&csr)]);
        let serial = self.serial.fetch_add(1, Ordering::SeqCst).to_string();
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.ca),
            "-CAkey",
            s(&self.ca_key),
            "-set_serial",
            &serial,
            "-days",
            "30",
            "-extfile",
            s(&cnf),
            "-extensions",
            "ext",
            "-out",
            s(&cert),
        ]);
        ClientCert { cert, key }
    }

    /// A client certificate with CN `name` (made on first use; the broker takes the CN as the
    /// user name).
    pub fn client(&self, name: &str) -> ClientCert {
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(name) {
            return c.clone();
        }
        let c = self.leaf(&format!("client-{name}"), name, "clientAuth", None);
        m.insert(name.to_string(), c.clone());
        c
    }
}

/// A running mosquitto on `127.0.0.1:<port>`, with its own temp dir (config, log, certificates).
pub struct Broker {
    dir: PathBuf,
    port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pki: Option<Pki>,
    probes: AtomicU32,
    /// An OpenSSL config for mosquitto (`OPENSSL_CONF`): [`Broker::start_tls_with_groups`].
    openssl_conf: Option<PathBuf>,
}

impl Broker {
    /// A plain (no TLS) broker, anonymous clients allowed.
    pub fn start() -> Broker {
        Broker::new(false)
    }

    /// A mutual-TLS broker: clients must present a certificate signed by [`Broker::pki`]'s CA
    /// (`require_certificate true`), and its CN is their user name (`use_identity_as_username`).
    pub fn start_tls() -> Broker {
        Broker::new(true)
    }

    /// A plain broker that refuses messages over `max_packet` bytes (`max_packet_size`), as
    /// cloud IoT brokers do (e.g. 128 KB).
    pub fn start_limited(max_packet: usize) -> Broker {
        Broker::new_with(false, max_packet)
    }

    fn new(tls: bool) -> Broker {
        Broker::new_with(tls, 4 << 20)
    }

    fn new_with(tls: bool, max_packet: usize) -> Broker {
        require_root();
        require_mqtt_tools();
        let dir = make_temp_dir("berth-mqtt");
        let pki = tls.then(|| Pki::new(&dir.join("pki")));
        let port = free_port();
        let mut conf = format!(
            "per_listener_settings false\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence false\n\
             max_packet_size {max_packet}\n\
             max_queued_messages 1000\n\
             user root\n\
             log_dest stderr\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             connection_messages true\n"
        );
        if let Some(p) = &pki {
            conf.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
                s(&p.ca),
                s(&p.server.cert),
                s(&p.server.key)
            ));
        }
        let conf_path = dir.join("mosquitto.conf");
        fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let mut b = Broker {
            log: dir.join("mosquitto.log"),
            dir,
            port,
            conf: conf_path,
            child: None,
            pki,
            probes: AtomicU32::new(0),
            openssl_conf: None,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "mosquitto already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open mosquitto.log");
        let mut cmd = Command::new(MOSQUITTO);
        if let Some(c) = &self.openssl_conf {
            cmd.env("OPENSSL_CONF", c);
        }
        let mut child = cmd
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup mosquitto.log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {MOSQUITTO}: {e}"));
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("mosquitto exited ({st}) before accepting on port {}:\n{}", self.port, self.log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mosquitto did not accept on port {} within {BROKER_START_TIMEOUT:?}:\n{}", self.port, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 10 s); [`Broker::restart`] starts it again
    /// on the same port with the same config (retained messages and sessions are gone:
    /// `persistence false`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signals our own child, not yet reaped (we hold its Child).
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => panic!("waiting for mosquitto: {e}"),
                }
            }
        }
    }

    /// A mutual-TLS broker ([`Broker::start_tls`]) that enforces `acl` (mosquitto `acl_file`
    /// syntax; user names are the certificates' CNs).
    /// A plain broker with a small per-client queue (`max_queued_messages`, `max_inflight_messages`):
    /// what a QoS 1 subscriber is sent beyond them at once is dropped, as on a busy production broker.
    pub fn start_with_small_queues(queued: u32, inflight: u32) -> Broker {
        let mut b = Broker::start();
        let mut conf = fs::read_to_string(&b.conf).expect("read mosquitto.conf");
        conf = conf.replace("max_queued_messages 1000\n", "");
        conf.push_str(&format!("max_queued_messages {queued}\nmax_inflight_messages {inflight}\n"));
        fs::write(&b.conf, conf).expect("write mosquitto.conf");
        b.restart();
        b
    }

    pub fn start_tls_with_acl(acl: &str) -> Broker {
        let mut b = Broker::start_tls();
        let acl_path = b.dir.join("acl");
        fs::write(&acl_path, acl).expect("write the acl file");
        let mut conf = fs::read_to_string(&b.conf).expect("read mosquitto.conf");
        conf.push_str(&format!("acl_file {}\n", s(&acl_path)));
        fs::write(&b.conf, conf).expect("write mosquitto.conf");
        b.restart();
        b
    }

    /// A mutual-TLS broker ([`Broker::start_tls`]) whose OpenSSL takes only the key-exchange
    /// `groups` (OpenSSL's `Groups` list, e.g. "P-256"): mosquitto has no option of its own for
    /// it, so its OpenSSL reads them from an `OPENSSL_CONF` written here.
    pub fn start_tls_with_groups(groups: &str) -> Broker {
        let mut b = Broker::start_tls();
        let conf = b.dir.join("openssl.cnf");
        fs::write(
            &conf,
            format!(
                "openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n[ssl_sect]\n\
                 system_default = system_default_sect\n[system_default_sect]\nGroups = {groups}\n"
            ),
        )
        .expect("write openssl.cnf");
        b.openssl_conf = Some(conf);
        b.restart();
        b
    }

    /// Whether `openssl s_client`, as client `cn`, completes a TLS handshake with the broker
    /// offering only the key-exchange group `group` (checks what a broker accepts).
    pub fn tls_handshake_with_group(&self, cn: &str, group: &str) -> bool {
        let p = self.pki.as_ref().expect("a TLS broker");
        let c = p.client(cn);
        let out = run(
            Command::new(find_tool("openssl", "openssl")).args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", self.port),
                "-groups",
                group,
                "-CAfile",
                s(&p.ca),
                "-cert",
                s(&c.cert),
                "-key",
                s(&c.key),
                "-brief",
                "-verify_return_error",
            ]),
            Stdin::Null,
        );
        out.status.success() && [&out.stdout, &out.stderr].iter().any(|o| String::from_utf8_lossy(o).contains("CONNECTION ESTABLISHED"))
    }

    /// Kills the broker with SIGKILL (a crash: nothing flushed, in-flight messages lost) and
    /// starts it again on the same port.
    pub fn kill_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// Starts the broker again after [`Broker::stop`], on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mosquitto process id, while it runs (for memory measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_tls(&self) -> bool {
        self.pki.is_some()
    }

    /// `mqtt://127.0.0.1:PORT`, or `mqtts://127.0.0.1:PORT` for the TLS broker.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.is_tls() { "mqtts" } else { "mqtt" }, self.port)
    }

    /// The certificates of a TLS broker (panics for a plain one).
    pub fn pki(&self) -> &Pki {
        self.pki.as_ref().expect("this broker has no TLS")
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Scratch space in the broker's temp dir (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Connection options for `mosquitto_pub`/`mosquitto_sub` as client `cn` (its certificate
    /// on a TLS broker).
    pub fn client_args(&self, cn: &str) -> Vec<String> {
        let mut a = vec!["-h".to_string(), "127.0.0.1".to_string(), "-p".to_string(), self.port.to_string()];
        if let Some(p) = &self.pki {
            let c = p.client(cn);
            a.extend(["--cafile".into(), s(&p.ca).into(), "--cert".into(), s(&c.cert).into(), "--key".into(), s(&c.key).into()]);
        }
        a
    }

    /// `--mqtt-ca F --mqtt-cert F --mqtt-key F` for a berth client `cn` (empty on a plain broker).
    pub fn berth_tls_args(&self, cn: &str) -> Vec<String> {
        match &self.pki {
            Some(p) => {
                let c = p.client(cn);
                vec!["--mqtt-ca".into(), s(&p.ca).into(), "--mqtt-cert".into(), s(&c.cert).into(), "--mqtt-key".into(), s(&c.key).into()]
            }
            None => Vec::new(),
        }
    }

    /// Publishes one message at QoS 1 with `mosquitto_pub -f` (binary-safe); panics on failure.
    pub fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        let n = self.probes.fetch_add(1, Ordering::SeqCst);
        let file = self.dir.join(format!("pub-{n}.bin"));
        fs::write(&file, payload).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        let mut args = self.client_args("tester");
        args.extend(["-q".into(), "1".into(), "-t".into(), topic.into(), "-f".into(), s(&file).into()]);
        if retain {
            args.push("-r".into());
        }
        let bin = find_tool("mosquitto_pub", "mosquitto-clients");
        tool(s(&bin), &args);
        let _ = fs::remove_file(&file);
    }

    /// Starts collecting every message on `filters` (but not on `excludes`), retained ones
    /// included; returns once the subscription is in place (a probe message went through).
    pub fn subscribe(&self, filters: &[&str], excludes: &[&str]) -> Subscriber {
        let n = self.probes.fetch_add(1, Ordering::SeqCst);
        let probe = format!("berth-test/probe/{}/{n}", std::process::id());
        let mut args = self.client_args("tester");
        args.extend(["-q".into(), "1".into(), "-F".into(), "%t\t%r\t%p".into(), "-t".into(), probe.clone()]);
        for f in filters {
            args.extend(["-t".into(), f.to_string()]);
        }
        for x in excludes {
            args.extend(["-T".into(), x.to_string()]);
        }
        let bin = find_tool("mosquitto_sub", "mosquitto-clients");
        let mut child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        let msgs: Arc<Mutex<Vec<Msg>>> = Arc::default();
        let probe_seen = Arc::new(Mutex::new(false));
        let reader = {
            let msgs = msgs.clone();
            let probe_seen = probe_seen.clone();
            let probe = probe.clone();
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(out);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    let text = String::from_utf8_lossy(&line).into_owned();
                    let mut f = text.splitn(3, '\t');
                    let (topic, retained, payload) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
                    if topic == probe {
                        *probe_seen.lock().unwrap_or_else(|e| e.into_inner()) = true;
                        continue;
                    }
                    msgs.lock().unwrap_or_else(|e| e.into_inner()).push(Msg {
                        topic: topic.to_string(),
                        retained: retained == "1",
                        payload: payload.to_string(),
                        at: Instant::now(),
                    });
                }
            })
        };
        let errs = std::thread::spawn(move || {
            let mut v = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(err), &mut v);
            v
        });
        let sub =
            Subscriber { child: Some(child), msgs, reader: Some(reader), errs: Some(errs), desc: format!("mosquitto_sub {filters:?}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut next_probe = Instant::now();
        loop {
            if *probe_seen.lock().unwrap_or_else(|e| e.into_inner()) {
                break;
            }
            assert!(Instant::now() < deadline, "mosquitto_sub on {filters:?} never saw its probe message:\nbroker log:\n{}", self.log());
            if Instant::now() >= next_probe {
                self.publish(&probe, b"probe", false);
                next_probe = Instant::now() + Duration::from_millis(500);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sub
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One message as `mosquitto_sub` printed it (payloads are text: binary topics are excluded).
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub retained: bool,
    pub payload: String,
    pub at: Instant,
}

impl Msg {
    /// The payload as JSON (panics with the message otherwise).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or_else(|e| panic!("message on {} is not JSON ({e}): {}", self.topic, self.payload))
    }

    /// The payload as JSON, or `Null`.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or(Value::Null)
    }
}

/// A running `mosquitto_sub`; every message it printed, in order.
pub struct Subscriber {
    child: Option<Child>,
    msgs: Arc<Mutex<Vec<Msg>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    errs: Option<std::thread::JoinHandle<String>>,
    desc: String,
}

impl Subscriber {
    /// Every message so far.
    pub fn messages(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The messages from index `mark` on (cheaper than [`Subscriber::messages`] for a reader that
    /// keeps its own cursor).
    pub fn since(&self, mark: usize) -> Vec<Msg> {
        let m = self.msgs.lock().unwrap_or_else(|e| e.into_inner());
        m.get(mark..).map(<[Msg]>::to_vec).unwrap_or_default()
    }

    /// How many messages so far (a mark for [`Subscriber::wait_from`]).
    pub fn mark(&self) -> usize {
        self.msgs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Messages on exactly `topic` since `mark`.
    pub fn on(&self, topic: &str, mark: usize) -> Vec<Msg> {
        self.messages().into_iter().skip(mark).filter(|m| m.topic == topic).collect()
    }

    /// The last message on exactly `topic`, if any.
    pub fn latest(&self, topic: &str) -> Option<Msg> {
        self.messages().into_iter().rev().find(|m| m.topic == topic)
    }

    /// Waits (up to `timeout`) for a message at or after `mark` that `pred` accepts; panics
    /// naming `what`, with the messages seen, otherwise.
    pub fn wait_from(&self, mark: usize, what: &str, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.messages().into_iter().skip(mark).find(|m| pred(m)) {
                return m;
            }
            if Instant::now() > deadline {
                panic!("{what}: not seen within {timeout:?}; {} saw since the mark:\n{}", self.desc, self.dump(mark));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The messages since `mark`, one per line, payloads cut at 600 bytes.
    pub fn dump(&self, mark: usize) -> String {
        self.messages()
            .into_iter()
            .skip(mark)
            .map(|m| {
                let p: String = m.payload.chars().take(600).collect();
                format!("  {}{} {p}\n", m.topic, if m.retained { " (retained)" } else { "" })
            })
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if let Some(e) = self.errs.take() {
            let _ = e.join();
        }
    }
}

/// The topic root of a device: `berth/v1/<id>/`.
pub fn root_of(device: &str) -> String {
    format!("berth/v1/{device}/")
}

/// The operator: a signing key (`berth fleet keygen`) and `berth fleet` commands for a broker.
pub struct Fleet {
    url: String,
    tls: Vec<String>,
    pub key: PathBuf,
    pub public: PathBuf,
    dir: PathBuf,
}

impl Fleet {
    /// `berth fleet --mqtt URL keygen --out <dir>/fleet.key` (and checks both files).
    pub fn new(broker: &Broker, dir: &Path) -> Fleet {
        Fleet::with_key_name(broker, dir, "fleet.key")
    }

    /// Like [`Fleet::new`] with another key file name (a second, untrusted key).
    pub fn with_key_name(broker: &Broker, dir: &Path, name: &str) -> Fleet {
        let key = dir.join(name);
        let public = dir.join(format!("{name}.pub"));
        let f = Fleet { url: broker.url(), tls: broker.berth_tls_args("fleet"), key: key.clone(), public: public.clone(), dir: dir.into() };
        let (code, out, err) = f.run(&["keygen", "--out", s(&key)]);
        assert_eq!(code, 0, "berth fleet keygen --out {} failed:\nstdout: {out}\nstderr: {err}", key.display());
        let text = fs::read_to_string(&key).unwrap_or_else(|e| panic!("fleet keygen wrote no {}: {e}", key.display()));
        assert!(text.contains("PRIVATE KEY"), "{} is not a PEM private key:\n{text}", key.display());
        let pubtext = fs::read_to_string(&public).unwrap_or_else(|e| panic!("fleet keygen wrote no {}: {e}", public.display()));
        assert!(pubtext.contains("PUBLIC KEY"), "{} is not a PEM public key:\n{pubtext}", public.display());
        f
    }

    /// `berth fleet --mqtt URL [TLS] ARGS...` (not started).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("fleet").arg("--mqtt").arg(&self.url).args(&self.tls).args(args);
        c.env_remove("BERTH_ROOT").env_remove("BERTH_HOST");
        c
    }

    /// Runs `berth fleet ... ARGS` to the end: (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        code_of(&run(&mut self.command(args), Stdin::Null), args)
    }

    /// The arguments of a push: `push --key KEY --to D... --health-window W TAR --run RUN`.
    pub fn push_args(&self, targets: &[&str], tar: &Path, window: u32, run_args: &str) -> Vec<String> {
        let mut a = vec!["push".to_string(), "--key".into(), s(&self.key).into()];
        for t in targets {
            a.extend(["--to".to_string(), t.to_string()]);
        }
        a.extend(["--health-window".into(), window.to_string(), s(tar).into(), "--run".into(), run_args.into()]);
        a
    }

    /// Runs a push to the end: (exit code, stdout, stderr).
    pub fn push(&self, targets: &[&str], tar: &Path, window: u32, run_args: &str) -> (i32, String, String) {
        let a = self.push_args(targets, tar, window, run_args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.run(&a)
    }

    /// A push that must end with exit 0 (every target committed); returns its stdout.
    pub fn push_ok(&self, targets: &[&str], tar: &Path, window: u32, run_args: &str) -> String {
        let (code, out, err) = self.push(targets, tar, window, run_args);
        assert_eq!(
            code,
            0,
            "berth fleet push to {targets:?} of {} (--run {run_args:?}): exit {code}\nstdout: {out}\nstderr: {err}",
            tar.display()
        );
        out
    }

    /// Starts a push in the background (stdout and stderr to files in the fleet's dir).
    pub fn spawn_push(&self, targets: &[&str], tar: &Path, window: u32, run_args: &str) -> Background {
        let a = self.push_args(targets, tar, window, run_args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Background::spawn(self.command(&a), &self.dir, "push")
    }
}

/// A command running in the background with its output in files; killed on drop.
pub struct Background {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    desc: String,
}

static BACKGROUND: AtomicU32 = AtomicU32::new(0);

impl Background {
    pub fn spawn(mut cmd: Command, dir: &Path, what: &str) -> Background {
        let n = BACKGROUND.fetch_add(1, Ordering::SeqCst);
        let out = dir.join(format!("{what}-{n}.out"));
        let err = dir.join(format!("{what}-{n}.err"));
        let desc = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(fs::File::create(&out).expect("create background stdout")))
            .stderr(Stdio::from(fs::File::create(&err).expect("create background stderr")))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        Background { child: Some(child), out, err, desc }
    }

    /// Output so far: (stdout, stderr).
    pub fn output(&self) -> (String, String) {
        (fs::read_to_string(&self.out).unwrap_or_default(), fs::read_to_string(&self.err).unwrap_or_default())
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits up to `timeout` for the end: (exit code, stdout, stderr). Panics if it is still
    /// running then (and kills it) or was killed by a signal.
    pub fn wait(&mut self, timeout: Duration) -> (i32, String, String) {
        let mut c = self.child.take().expect("background command not yet waited for");
        let deadline = Instant::now() + timeout;
        let st = loop {
            match c.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() > deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    let (o, e) = self.output();
                    panic!("{} still running after {timeout:?}; killed\nstdout: {o}\nstderr: {e}", self.desc);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("waiting for {}: {e}", self.desc),
            }
        };
        let (o, e) = self.output();
        match st.code() {
            Some(code) => (code, o, e),
            None => panic!("{} was killed by a signal ({st})\nstdout: {o}\nstderr: {e}", self.desc),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `berth --root R -H unix://S agent --mqtt URL --device-id ID --trust KEY.pub [TLS] [extra]` on a
/// new root, as device `id` (its TLS client certificate has CN `id`). Returns once the socket
/// accepts (not once it is online: see [`wait_online`]).
pub fn device(broker: &Broker, id: &str, trust: &Path, extra: &[&str]) -> Agent {
    let url = broker.url();
    let tls = broker.berth_tls_args(id);
    let mut opts = vec!["--mqtt", &url, "--device-id", id, "--trust", s(trust)];
    opts.extend(tls.iter().map(String::as_str));
    opts.extend_from_slice(extra);
    Agent::start_with(Root::new(), &[], &opts)
}

/// Like [`device`] on a given root (e.g. a small tmpfs, [`Root::on_tmpfs`]) and with extra
/// environment variables for the agent process.
pub fn device_on(root: Root, broker_url: &str, id: &str, trust: &Path, extra: &[&str], env: &[(&str, &str)]) -> Agent {
    let mut opts = vec!["--mqtt", broker_url, "--device-id", id, "--trust", s(trust)];
    opts.extend_from_slice(extra);
    Agent::start_with_env(root, &[], &opts, env)
}

/// Waits for a retained-or-live `online` on `berth/v1/<id>/status`.
pub fn wait_online(sub: &Subscriber, id: &str, timeout: Duration) {
    let topic = format!("{}status", root_of(id));
    sub.wait_from(0, &format!("{id} online"), timeout, |m| m.topic == topic && m.payload == "online");
}

/// The last `state` of a device seen by `sub`, as JSON (`Null` if none yet).
pub fn state_of(sub: &Subscriber, id: &str) -> Value {
    sub.latest(&format!("{}state", root_of(id))).map(|m| m.json()).unwrap_or(Value::Null)
}

/// Waits for a result of device `id` at or after `mark` (and for update `update`, if given).
pub fn wait_result(sub: &Subscriber, mark: usize, id: &str, update: Option<&str>, timeout: Duration) -> Value {
    let topic = format!("{}result", root_of(id));
    let m = sub.wait_from(mark, &format!("a result from {id} (update {update:?})"), timeout, |m| {
        m.topic == topic && update.is_none_or(|u| m.json_or_null()["id"] == u)
    });
    m.json()
}

/// An update built by hand: the manifest as signed, the envelope, and the chunks of its tarball.
pub struct Crafted {
    pub manifest: Manifest,
    pub text: String,
    pub envelope: Vec<u8>,
    pub tar: Vec<u8>,
}

impl Crafted {
    /// A deploy of `tar` to `targets` as container `name`, seq `seq`, signed by `key`.
    pub fn deploy(key: &SecretKey, seq: u64, targets: &[&str], tar: &[u8], chunk_size: u32, run_args: &[&str], window: u32) -> Crafted {
        let id = random_hex32();
        let name = run_args.iter().position(|a| *a == "--name").and_then(|i| run_args.get(i + 1)).expect("run args name the container");
        let manifest = Manifest {
            version: 1,
            id: id.clone(),
            seq,
            kind: Kind::Deploy,
            created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            groups: vec![],
            name: name.to_string(),
            image: Some(ImageRef {
                size: tar.len() as u64,
                sha256: sha256_hex(tar),
                chunk_size: if chunk_size == 0 { DEFAULT_CHUNK } else { chunk_size },
                topic: format!("berth/v1/updates/{id}"),
            }),
            pull: None,
            run: run_args.iter().map(|a| a.to_string()).collect(),
            health_window: window,
            keep: 1,
            app: None,
        };
        Crafted::signed(key, manifest, tar.to_vec())
    }

    /// Signs `manifest` as it is (for manifests changed after [`Crafted::deploy`]).
    pub fn signed(key: &SecretKey, manifest: Manifest, tar: Vec<u8>) -> Crafted {
        let text = serde_json::to_string(&manifest).expect("serialise a manifest");
        let sig = key.sign(text.as_bytes());
        let envelope = serde_json::to_vec(&serde_json::json!({"manifest": text, "sig": sig})).expect("serialise an envelope");
        Crafted { manifest, text, envelope, tar }
    }

    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    pub fn topic(&self) -> String {
        self.manifest.image.as_ref().map(|i| i.topic.clone()).expect("a deploy has a chunk topic")
    }

    /// Chunk `index`, well-formed.
    pub fn chunk(&self, index: u32) -> Vec<u8> {
        let cs = self.manifest.image.as_ref().expect("a deploy").chunk_size as usize;
        let start = index as usize * cs;
        let end = (start + cs).min(self.tar.len());
        Chunk::encode(&self.manifest.id, index, self.manifest.chunks(), &self.tar[start..end])
    }

    pub fn count(&self) -> u32 {
        self.manifest.chunks()
    }

    /// Publishes the envelope on `berth/v1/<device>/update`.
    pub fn send_envelope(&self, broker: &Broker, device: &str) {
        broker.publish(&format!("{}update", root_of(device)), &self.envelope, false);
    }

    /// Publishes chunk payloads on the chunk topic, in the order given.
    pub fn send_raw(&self, broker: &Broker, payloads: &[Vec<u8>]) {
        let topic = self.topic();
        for p in payloads {
            broker.publish(&topic, p, false);
        }
    }

    /// Publishes the chunks with these indices, in this order.
    pub fn send(&self, broker: &Broker, indices: &[u32]) {
        let payloads: Vec<Vec<u8>> = indices.iter().map(|i| self.chunk(*i)).collect();
        self.send_raw(broker, &payloads);
    }

    /// Waits for the device's first progress for this update (the device subscribed to the
    /// chunk topic before it sent it).
    pub fn wait_receiving(&self, sub: &Subscriber, mark: usize, device: &str, timeout: Duration) -> Value {
        let topic = format!("{}progress", root_of(device));
        let id = self.manifest.id.clone();
        sub.wait_from(mark, &format!("progress of update {id} from {device}"), timeout, |m| {
            m.topic == topic && m.json_or_null()["id"] == id.as_str()
        })
        .json()
    }

    /// The whole exchange for one device: envelope, wait for progress, every chunk in order, then
    /// resends of whatever the device reports missing, until it reports a result; returns it.
    pub fn deliver(&self, broker: &Broker, sub: &Subscriber, device: &str, timeout: Duration) -> Value {
        let mark = sub.mark();
        self.send_envelope(broker, device);
        self.wait_receiving(sub, mark, device, timeout);
        let all: Vec<u32> = (0..self.count()).collect();
        self.send(broker, &all);
        self.finish(broker, sub, mark, device, timeout)
    }

    /// Waits for this update's result from `device`, resending chunks the device's progress says
    /// it lacks (at most every 2 s).
    pub fn finish(&self, broker: &Broker, sub: &Subscriber, mark: usize, device: &str, timeout: Duration) -> Value {
        let result_topic = format!("{}result", root_of(device));
        let progress_topic = format!("{}progress", root_of(device));
        let deadline = Instant::now() + timeout;
        let mut last_resend = Instant::now();
        loop {
            let msgs = sub.messages();
            let mine = |m: &&Msg| m.json_or_null()["id"] == self.manifest.id.as_str();
            if let Some(r) = msgs.iter().skip(mark).filter(|m| m.topic == result_topic).find(mine) {
                return r.json();
            }
            assert!(Instant::now() < deadline, "no result for update {} from {device} within {timeout:?}:\n{}", self.id(), sub.dump(mark));
            if last_resend.elapsed() > Duration::from_secs(2) {
                if let Some(p) = msgs.iter().skip(mark).filter(|m| m.topic == progress_topic).rfind(mine) {
                    let p = p.json();
                    let mut want: Vec<u32> = Vec::new();
                    if let Some(ranges) = p["missing"].as_array() {
                        for r in ranges {
                            let (a, b) = (r[0].as_u64().unwrap_or(0) as u32, r[1].as_u64().unwrap_or(0) as u32);
                            want.extend(a..=b.min(self.count().saturating_sub(1)));
                        }
                    }
                    let next = p["next"].as_u64().unwrap_or(0) as u32;
                    if p["phase"] == "receiving" && want.is_empty() && next < self.count() {
                        want.extend(next..self.count());
                    }
                    if !want.is_empty() {
                        self.send(broker, &want);
                    }
                }
                last_resend = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Files under `<root>/updates` (relative path -> size), recursively; empty if it is absent.
pub fn update_files(root: &Path) -> BTreeMap<String, u64> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, u64>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else { continue };
            if md.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).expect("under base").to_string_lossy().into_owned(), md.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    let base = root.join("updates");
    walk(&base, &base, &mut out);
    out
}

struct Images {
    layout: PathBuf,
    made: BTreeMap<(String, usize), PathBuf>,
}

static IMAGES: OnceLock<Mutex<Images>> = OnceLock::new();

/// A `docker save`-format tarball (skopeo docker-archive) of `app:<tag>`: the 3-layer `layered`
/// fixture plus a fourth layer holding `/app/version` (= `tag`) and, when `pad` > 0, `/app/pad`
/// of `pad` incompressible bytes. Built once per (tag, pad) per test process with umoci and
/// skopeo, in a copy of the fixtures' OCI layout. Every tag gives a different image ID.
pub fn app_image(tag: &str, pad: usize) -> PathBuf {
    let f = fixtures();
    let lock = IMAGES.get_or_init(|| {
        // Inside the fixtures' dir, which is removed when the test process exits.
        let dir = f.dir.join("app-images");
        fs::create_dir_all(&dir).expect("mkdir app-images");
        let layout = dir.join("oci");
        tool("cp", &["-a", s(&f.dir.join("oci")), s(&layout)]);
        Mutex::new(Images { layout, made: BTreeMap::new() })
    });
    let mut images = lock.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = images.made.get(&(tag.to_string(), pad)) {
        return p.clone();
    }
    let layout = images.layout.clone();
    let dir = layout.parent().expect("layout has a parent").to_path_buf();
    let oci_tag = format!("app-{tag}-{pad}");
    let bundle = dir.join(format!("bundle-{oci_tag}"));
    tool("umoci", &["unpack", "--image", &format!("{}:layered", s(&layout)), s(&bundle)]);
    let app = bundle.join("rootfs/app");
    fs::create_dir_all(&app).expect("mkdir rootfs/app");
    fs::write(app.join("version"), format!("{tag}\n")).expect("write /app/version");
    if pad > 0 {
        let seed = tag.bytes().fold(0x9e37_79b9_u64, |h, b| h.rotate_left(5) ^ u64::from(b)) ^ pad as u64;
        fs::write(app.join("pad"), pseudo_random(pad, seed)).expect("write /app/pad");
    }
    tool("umoci", &["repack", "--image", &format!("{}:{oci_tag}", s(&layout)), s(&bundle)]);
    tool("umoci", &["config", "--image", &format!("{}:{oci_tag}", s(&layout)), "--config.label", &format!("org.example.version={tag}")]);
    fs::remove_dir_all(&bundle).expect("remove bundle");
    let out = dir.join(format!("{oci_tag}.tar"));
    tool("skopeo", &["copy", "-q", &format!("oci:{}:{oci_tag}", s(&layout)), &format!("docker-archive:{}:app:{tag}", s(&out))]);
    images.made.insert((tag.to_string(), pad), out.clone());
    out
}
