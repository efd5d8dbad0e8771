//! `berth fleet`: the operator's side of updates over MQTT (docs/update-protocol.md). It talks
//! only to the broker: keygen, push (signed manifest, then the tarball in chunks to all targets
//! at once), status (the devices' retained state), rollback and logs.
//!
//! Errors are one line, `berth fleet: ...`; 125 for bad usage, 1 for a failure. Every wait on
//! the broker or a device is bounded.

#[cfg(feature = "compose")]
mod app;
mod conn;
mod push;
mod show;
mod window;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::mqtt::TlsFiles;
use crate::term::format::Format;
use crate::term::output::table;
use berth_proto::args::{self, opt, Cmd, Matches, Opt, Parsed, UsageError};
use berth_proto::error::{exit_code, op_err, CliError, Kind as Failure};
use berth_proto::names::valid_device_id;
use berth_proto::sign::{self, SecretKey};
use berth_proto::wire::{Envelope, Kind, Manifest, Outcome, VERSION};
use conn::Conn;

pub const DEFAULT_PREFIX: &str = "berth/v1/";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const FLEET_OPTS: &[Opt] = &[
    opt("mqtt", None, Some("url"), "Broker URL: mqtt://[user[:pass]@]host[:port] or mqtts://... (env BERTH_MQTT)"),
    opt("mqtt-ca", None, Some("file"), "CA certificate(s) to trust for the broker (PEM; default: the system's)"),
    opt("mqtt-cert", None, Some("file"), "Client certificate for mutual TLS (PEM)"),
    opt("mqtt-key", None, Some("file"), "Private key of the client certificate (PEM)"),
    opt("topic-prefix", None, Some("string"), "Topic prefix; a device's root is PREFIX<device-id>/ (default \"berth/v1/\")"),
];

pub const FLEET: Cmd = Cmd {
    path: "berth fleet",
    usage: "[OPTIONS] COMMAND",
    about: "Update a fleet of devices over MQTT (signed images, progress, commit or rollback)",
    opts: FLEET_OPTS,
    min_args: 0,
    max_args: None,
    stop_at_positional: true,
    subcommands: &[
        ("keygen", "Make an update signing key (KEY) and its public key (KEY.pub) for the agents' --trust"),
        ("push", "Send an image tarball to devices and run it; wait until each commits or rolls back"),
        ("status", "List devices: online, sequence, containers, last update result"),
        ("rollback", "Go back to the previous version of a deployed container"),
        ("logs", "Fetch a container's logs from a device"),
    ],
};

const fn cmd(path: &'static str, usage: &'static str, about: &'static str, opts: &'static [Opt], min: usize, max: Option<usize>) -> Cmd {
    Cmd { path, usage, about, opts, min_args: min, max_args: max, stop_at_positional: false, subcommands: &[] }
}

const KEYGEN_OPTS: &[Opt] = &[opt("out", Some('o'), Some("file"), "Where to write the private key (the public key goes to FILE.pub)")];
const KEYGEN: Cmd =
    cmd("berth fleet keygen", "--out KEY", "Make an ed25519 update signing key and its public key", KEYGEN_OPTS, 0, Some(0));

const PUSH_OPTS: &[Opt] = &[
    opt("key", Some('k'), Some("file"), "Signing key (from 'berth fleet keygen')"),
    opt("to", None, Some("id"), "Target device (repeatable)"),
    opt("group", Some('g'), Some("name"), "Target every device whose state lists this group"),
    opt(
        "run",
        None,
        Some("string"),
        "What 'berth run' takes after 'run', as one string; needs --name (e.g. '--name app --restart always app:2')",
    ),
    opt(
        "app",
        None,
        Some("file"),
        "Instead of --run: a compose file whose services are updated as one application (FILE.tar...: the images the devices lack)",
    ),
    opt("health-window", None, Some("seconds"), "How long the new container must stay up (and healthy) before it commits (default 30)"),
    opt("keep", None, Some("int"), "Previous versions kept on the device as rollback targets (default 1)"),
    opt("chunk-size", None, Some("bytes"), "Chunk size (default 98304: fits brokers with 128 KB message limits)"),
    opt("timeout", None, Some("seconds"), "Give up on a device that says nothing for this long (default 600)"),
    opt(
        "delta",
        None,
        None,
        "Leave out the layers the targets already hold (from their state); a device that lacks one gets the whole tarball",
    ),
    opt("canary", None, Some("int"), "Update this many devices first; stop, updating no other, if any of them does not commit"),
    opt("max-parallel", None, Some("int"), "At most this many devices receive at once (the targets go in batches)"),
    opt(
        "pull",
        None,
        Some("ref"),
        "Instead of a tarball: the devices pull NAME@sha256:DIGEST from their registry or mirror and check that digest",
    ),
];
const PUSH: Cmd = cmd(
    "berth fleet push",
    "--key KEY (--to ID... | --group G) [OPTIONS] (FILE.tar | --pull NAME@sha256:DIGEST) --run 'RUN ARGS' | --app compose.yaml [FILE.tar...]",
    "Send a 'docker save' tarball to devices, or have them pull an image by digest, and run it; exit 0 when every target committed",
    PUSH_OPTS,
    0,
    None,
);

const STATUS_OPTS: &[Opt] = &[
    opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line"),
    opt("wait", None, Some("seconds"), "How long to collect the devices' retained messages (default 1.5)"),
];
const STATUS: Cmd =
    cmd("berth fleet status", "[OPTIONS] [DEVICE...]", "List devices from their retained status and state", STATUS_OPTS, 0, None);

const ROLLBACK_OPTS: &[Opt] = &[
    opt("key", Some('k'), Some("file"), "Signing key (from 'berth fleet keygen')"),
    opt("to", None, Some("id"), "Target device (repeatable)"),
    opt("name", None, Some("string"), "Container to roll back (default: the device's only deployment)"),
    opt("timeout", None, Some("seconds"), "Give up on a device that says nothing for this long (default 120)"),
];
const ROLLBACK: Cmd = cmd(
    "berth fleet rollback",
    "--key KEY --to ID [--to ID...] [--name NAME]",
    "Go back to the previous committed version of a container on each device",
    ROLLBACK_OPTS,
    0,
    Some(0),
);

const RESTART_OPTS: &[Opt] = &[
    opt("key", Some('k'), Some("file"), "Signing key (from 'berth fleet keygen')"),
    opt("to", None, Some("id"), "Target device (repeatable)"),
    opt("name", None, Some("string"), "Container to restart (default: the device's only deployment)"),
    opt("timeout", None, Some("seconds"), "Give up on a device that says nothing for this long (default 120)"),
];
const RESTART: Cmd = cmd(
    "berth fleet restart",
    "--key KEY --to ID [--to ID...] [--name NAME]",
    "Restart a container on each device (a signed request)",
    RESTART_OPTS,
    0,
    Some(0),
);

const LOGS_OPTS: &[Opt] = &[opt("tail", Some('n'), Some("int"), "Number of lines from the end (default 100)")];
const LOGS: Cmd = cmd("berth fleet logs", "[OPTIONS] DEVICE CONTAINER", "Fetch the logs of a container on a device", LOGS_OPTS, 2, Some(2));

/// What the subcommands share: the broker and the topic prefix.
pub struct Opts {
    pub url: String,
    pub tls: TlsFiles,
    pub prefix: String,
}

impl Opts {
    pub fn root(&self, device: &str) -> String {
        format!("{}{device}/", self.prefix)
    }

    async fn connect(&self) -> Result<Conn, CliError> {
        Conn::open(&self.url, &self.tls, CONNECT_TIMEOUT).await.map_err(fail)
    }
}

pub fn fail(msg: impl Into<String>) -> CliError {
    op_err(msg)
}

fn usage(path: &'static str, msg: impl Into<String>) -> CliError {
    CliError::Usage(UsageError { msg: msg.into(), cmd: path })
}

type Sub = fn(&Opts, &Matches) -> Result<i32, CliError>;

/// `berth fleet ...`: errors are reported here, as `berth fleet: ...`.
pub fn main(args: &[String]) -> Result<i32, CliError> {
    match run(args) {
        Ok(code) => Ok(code),
        Err(CliError::Usage(e)) => {
            eprintln!("berth fleet: {} (see '{} --help')", e.msg, e.cmd);
            Err(CliError::Exit(exit_code(Failure::Usage)))
        }
        Err(CliError::Op(e)) => {
            eprintln!("berth fleet: {e}");
            Err(CliError::Exit(exit_code(Failure::Failed)))
        }
        Err(e) => Err(e),
    }
}

fn run(args: &[String]) -> Result<i32, CliError> {
    let m = match args::parse(&FLEET, args)? {
        Parsed::Help(h) => {
            print!("{h}");
            return Ok(0);
        }
        Parsed::Matches(m) => m,
    };
    let Some(name) = m.args().first() else {
        print!("{}", args::help(&FLEET));
        return Ok(0);
    };
    let (spec, sub): (&Cmd, Sub) = match name.as_str() {
        "keygen" => (&KEYGEN, keygen),
        "push" => (&PUSH, push::push),
        "status" | "ls" => (&STATUS, status),
        "rollback" => (&ROLLBACK, rollback),
        "restart" => (&RESTART, restart),
        "logs" => (&LOGS, logs),
        other => return Err(usage(FLEET.path, format!("unknown command: {other:?}"))),
    };
    let sm = match args::parse(spec, &m.args()[1..])? {
        Parsed::Help(h) => {
            print!("{h}");
            return Ok(0);
        }
        Parsed::Matches(sm) => sm,
    };
    let url = m.value("mqtt").map(str::to_string).or_else(|| std::env::var("BERTH_MQTT").ok().filter(|v| !v.is_empty()));
    // keygen needs no broker; the fleet script passes --mqtt to it all the same.
    let url = match (url, name.as_str()) {
        (Some(u), _) => u,
        (None, "keygen") => String::new(),
        (None, _) => return Err(usage(FLEET.path, "--mqtt URL is required (or set BERTH_MQTT)")),
    };
    if !url.is_empty() {
        crate::mqtt::Broker::parse(&url).map_err(|e| usage(FLEET.path, e.to_string()))?;
    }
    let mut prefix = m.value("topic-prefix").unwrap_or(DEFAULT_PREFIX).to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    if prefix.contains(['+', '#']) {
        return Err(usage(FLEET.path, format!("--topic-prefix {prefix:?} must not contain wildcards")));
    }
    let tls = TlsFiles {
        ca: m.value("mqtt-ca").map(PathBuf::from),
        cert: m.value("mqtt-cert").map(PathBuf::from),
        key: m.value("mqtt-key").map(PathBuf::from),
    };
    sub(&Opts { url, tls, prefix }, &sm)
}

/// Runs `f` on a current-thread runtime (the agent's kind: one thread, nothing in the background).
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(format!("tokio runtime: {e}")))?;
    rt.block_on(f)
}

pub fn secs(m: &Matches, name: &str, path: &'static str, default: f64) -> Result<Duration, CliError> {
    match m.value(name) {
        None => Ok(Duration::from_secs_f64(default)),
        Some(v) => match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 && s <= 1e7 => Ok(Duration::from_secs_f64(s)),
            _ => Err(usage(path, format!("invalid --{name} {v:?}: a positive number of seconds"))),
        },
    }
}

pub fn number<T: std::str::FromStr>(m: &Matches, name: &str, path: &'static str) -> Result<Option<T>, CliError> {
    m.value(name).map(|v| v.parse::<T>().map_err(|_| usage(path, format!("invalid --{name} {v:?}")))).transpose()
}

pub fn load_key(m: &Matches, path: &'static str) -> Result<SecretKey, CliError> {
    let key = m.value("key").ok_or_else(|| usage(path, "--key KEY is required (make one with 'berth fleet keygen --out KEY')"))?;
    SecretKey::load(Path::new(key)).map_err(|e| fail(e.to_string()))
}

pub fn targets(m: &Matches, path: &'static str) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::new();
    for t in m.values("to") {
        if !valid_device_id(t) {
            return Err(usage(path, format!("invalid device id {t:?} (letters, digits, '-', '_', '.')")));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

fn keygen(_o: &Opts, m: &Matches) -> Result<i32, CliError> {
    let out = m.value("out").ok_or_else(|| usage(KEYGEN.path, "--out KEY is required"))?;
    // atomic_write syncs the parent directory, and a bare file name has "" as its parent.
    let path = std::path::absolute(out).map_err(|e| fail(format!("{out}: {e}")))?;
    sign::keygen(&path).map_err(|e| fail(e.to_string()))?;
    println!("wrote {out} (keep it secret) and {out}.pub (give it to the agents: --trust {out}.pub)");
    Ok(0)
}

/// What the broker's retained messages say about each device.
#[derive(Debug, Default, Clone)]
pub struct Device {
    pub online: Option<bool>,
    pub state: Option<Value>,
}

impl Device {
    pub fn seq(&self) -> u64 {
        self.state.as_ref().and_then(|s| s.get("seq")).and_then(Value::as_u64).unwrap_or(0)
    }

    pub fn ready(&self) -> bool {
        self.online == Some(true) && self.state.is_some()
    }

    /// The layer digests (diff_ids) the device's store holds.
    pub fn layers(&self) -> std::collections::HashSet<String> {
        let l = self.state.as_ref().and_then(|s| s.get("layers")).and_then(Value::as_array);
        l.map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.state.as_ref().and_then(|s| s.get("groups")).and_then(Value::as_array).is_some_and(|g| g.iter().any(|x| x == group))
    }

    /// Names of the deployed containers (the update's `name`s).
    pub fn deployments(&self) -> Vec<String> {
        let deps = self.state.as_ref().and_then(|s| s.get("deployments")).and_then(Value::as_array);
        deps.map(|d| d.iter().filter_map(|x| x.get("name").and_then(Value::as_str)).map(str::to_string).collect()).unwrap_or_default()
    }

    fn last_result(&self) -> Option<&Value> {
        self.state.as_ref().and_then(|s| s.get("last_result")).filter(|v| v.is_object())
    }

    /// The result of update `id`, if the state already records it (a result message can be
    /// missed across a reconnection; the retained state cannot).
    pub fn result_of(&self, id: &str) -> Option<Outcome> {
        self.last_result().filter(|r| r.get("id").and_then(Value::as_str) == Some(id)).and_then(|r| serde_json::from_value(r.clone()).ok())
    }
}

/// Splits `PREFIX<device>/<leaf>`; None for other topics.
pub fn split_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let (dev, leaf) = topic.strip_prefix(prefix)?.split_once('/')?;
    (valid_device_id(dev) && !leaf.contains('/')).then_some((dev, leaf))
}

/// Takes a `status` or `state` message into `devices`; returns the device it was about.
pub fn absorb(devices: &mut BTreeMap<String, Device>, prefix: &str, topic: &str, payload: &[u8]) -> Option<String> {
    let (dev, leaf) = split_topic(prefix, topic)?;
    match leaf {
        "status" => {
            let online = match payload {
                b"online" => Some(true),
                b"offline" => Some(false),
                // An empty retained message clears it (a removed device).
                _ => None,
            };
            devices.entry(dev.to_string()).or_default().online = online;
        }
        "state" => {
            let state = serde_json::from_slice::<Value>(payload).ok().filter(Value::is_object);
            devices.entry(dev.to_string()).or_default().state = state;
        }
        _ => return None,
    }
    Some(dev.to_string())
}

/// Waits until every device of `want` is online with a state, or `deadline`; Err names those
/// still missing. Other messages are handed to `other`.
pub async fn wait_ready(
    conn: &mut Conn,
    o: &Opts,
    devices: &mut BTreeMap<String, Device>,
    want: &[String],
    deadline: Instant,
) -> Result<(), CliError> {
    let missing = |devices: &BTreeMap<String, Device>| -> Vec<String> {
        want.iter().filter(|w| !devices.get(*w).is_some_and(Device::ready)).cloned().collect()
    };
    let mut told = false;
    let started = Instant::now();
    loop {
        let gone = missing(devices);
        if gone.is_empty() {
            return Ok(());
        }
        if !told && started.elapsed() >= Duration::from_secs(2) {
            told = true;
            eprintln!(
                "waiting for {} to be online (at most {} s)...",
                describe_missing(devices, &gone),
                deadline.duration_since(started).as_secs()
            );
        }
        match conn.next(deadline).await.map_err(fail)? {
            Some((topic, payload)) => {
                absorb(devices, &o.prefix, &topic, &payload);
            }
            None => return Err(fail(format!("{} did not come online in time", describe_missing(devices, &gone)))),
        }
    }
}

fn describe_missing(devices: &BTreeMap<String, Device>, gone: &[String]) -> String {
    gone.iter()
        .map(|g| {
            let why = match devices.get(g) {
                None => "never seen",
                Some(d) if d.online == Some(false) => "offline",
                Some(d) if d.online.is_none() => "no status",
                Some(_) => "no state yet",
            };
            format!("{g} ({why})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Subscribes to each target's retained status and state.
pub async fn watch(conn: &mut Conn, o: &Opts, targets: &[String]) -> Result<(), CliError> {
    for t in targets {
        conn.subscribe(&format!("{}status", o.root(t))).await.map_err(fail)?;
        conn.subscribe(&format!("{}state", o.root(t))).await.map_err(fail)?;
    }
    Ok(())
}

pub fn signed(key: &SecretKey, m: &Manifest) -> Result<Vec<u8>, CliError> {
    let text = serde_json::to_string(m).map_err(|e| fail(format!("encode manifest: {e}")))?;
    // The agent checks the same way before it signs off on anything: fail here, not there.
    Manifest::parse(&text).map_err(|e| fail(e.to_string()))?;
    let env = Envelope { sig: key.sign(text.as_bytes()), manifest: text };
    serde_json::to_vec(&env).map_err(|e| fail(format!("encode envelope: {e}")))
}

pub fn now_unix() -> i64 {
    berth_runtime::timefmt::now()
}

/// Prints the results (failures to stderr, with their reasons) and gives the exit code.
pub fn report(results: &BTreeMap<String, Outcome>, targets: &[String], missing_why: &BTreeMap<String, String>) -> i32 {
    let mut code = 0;
    for t in targets {
        match results.get(t) {
            Some(r) if r.result == "committed" => {
                let image = if r.image.is_empty() { String::new() } else { format!(" ({})", show::short_image(&r.image)) };
                println!("{t}: committed {}{image}", r.name);
            }
            Some(r) => {
                code = 1;
                let reason = if r.reason.is_empty() { "no reason given".to_string() } else { r.reason.clone() };
                eprintln!("{t}: {}: {reason}", r.result);
            }
            None => {
                code = 1;
                eprintln!("{t}: no result: {}", missing_why.get(t).map_or("gave up waiting", String::as_str));
            }
        }
    }
    code
}

fn status(o: &Opts, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    if let Format::Template(_) = fmt {
        return Err(usage(STATUS.path, "--format takes \"table\" or \"json\" here"));
    }
    let wait = secs(m, "wait", STATUS.path, 1.5)?;
    let only: Vec<&String> = m.args().iter().collect();
    let devices = block_on(async {
        let mut conn = o.connect().await?;
        conn.subscribe_retained(&format!("{}+/status", o.prefix)).await.map_err(fail)?;
        conn.subscribe_retained(&format!("{}+/state", o.prefix)).await.map_err(fail)?;
        let mut devices = BTreeMap::new();
        let deadline = Instant::now() + wait;
        while let Some((topic, payload)) = conn.next(deadline).await.map_err(fail)? {
            absorb(&mut devices, &o.prefix, &topic, &payload);
        }
        conn.close().await;
        Ok(devices)
    })?;
    let shown: Vec<(&String, &Device)> =
        devices.iter().filter(|(id, d)| (d.online.is_some() || d.state.is_some()) && (only.is_empty() || only.contains(id))).collect();
    let mut out = std::io::stdout().lock();
    let w = |e: std::io::Error| fail(format!("write: {e}"));
    match fmt {
        Format::Json => {
            for (id, d) in &shown {
                let v = json!({
                    "Device": id,
                    "Online": d.online,
                    "Seq": d.seq(),
                    "Containers": show::containers(d),
                    "LastResult": show::last_result(d, usize::MAX),
                    "State": d.state,
                });
                writeln!(out, "{v}").map_err(w)?;
            }
        }
        _ => {
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|(id, d)| {
                    let online = match d.online {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "?",
                    };
                    let seq = if d.state.is_some() { d.seq().to_string() } else { "-".into() };
                    let c = show::containers(d);
                    vec![id.to_string(), online.into(), seq, if c.is_empty() { "-".into() } else { c }, show::last_result(d, 60)]
                })
                .collect();
            table(&mut out, &["DEVICE", "ONLINE", "SEQ", "CONTAINERS", "LAST RESULT"], &rows).map_err(w)?;
        }
    }
    for id in &only {
        if !devices.contains_key(*id) {
            eprintln!("berth fleet: no status or state from {id} (never connected, or another --topic-prefix?)");
        }
    }
    Ok(0)
}

fn rollback(o: &Opts, m: &Matches) -> Result<i32, CliError> {
    request(o, m, Kind::Rollback, &ROLLBACK)
}

fn restart(o: &Opts, m: &Matches) -> Result<i32, CliError> {
    request(o, m, Kind::Restart, &RESTART)
}

/// A signed request without an image (rollback, restart) to each target, and their results.
fn request(o: &Opts, m: &Matches, kind: Kind, spec: &Cmd) -> Result<i32, CliError> {
    let key = load_key(m, spec.path)?;
    let targets = targets(m, spec.path)?;
    if targets.is_empty() {
        return Err(usage(spec.path, "--to ID is required"));
    }
    let name = m.value("name").map(str::to_string);
    if let Some(n) = &name {
        if !berth_proto::names::valid_name(n) {
            return Err(usage(spec.path, format!("invalid container name {n:?}")));
        }
    }
    let timeout = secs(m, "timeout", spec.path, 120.0)?;
    block_on(async {
        let mut conn = o.connect().await?;
        watch(&mut conn, o, &targets).await?;
        let mut devices = BTreeMap::new();
        wait_ready(&mut conn, o, &mut devices, &targets, Instant::now() + timeout).await?;
        let mut ids: BTreeMap<String, String> = BTreeMap::new();
        let mut envelopes = Vec::new();
        for t in &targets {
            let d = devices.get(t).cloned().unwrap_or_default();
            let name = match &name {
                Some(n) => n.clone(),
                None => match d.deployments().as_slice() {
                    [one] => one.clone(),
                    [] => return Err(fail(format!("{t} has no deployment: say which container with --name"))),
                    many => return Err(fail(format!("{t} has several deployments ({}): say which with --name", many.join(", ")))),
                },
            };
            let m = Manifest {
                version: VERSION,
                id: conn::random_id(),
                seq: d.seq() + 1,
                kind,
                created: now_unix(),
                targets: vec![t.clone()],
                groups: vec![],
                name,
                image: None,
                pull: None,
                run: vec![],
                health_window: 30,
                keep: 1,
                app: None,
            };
            ids.insert(t.clone(), m.id.clone());
            envelopes.push((t.clone(), signed(&key, &m)?));
        }
        for t in &targets {
            conn.subscribe(&format!("{}result", o.root(t))).await.map_err(fail)?;
        }
        for (t, env) in envelopes {
            conn.publish(&format!("{}update", o.root(&t)), env).await.map_err(fail)?;
        }
        let mut results: BTreeMap<String, Outcome> = BTreeMap::new();
        let mut heard: BTreeMap<String, Instant> = targets.iter().map(|t| (t.clone(), Instant::now())).collect();
        let mut why = BTreeMap::new();
        while results.len() < targets.len() {
            let deadline = targets
                .iter()
                .filter(|t| !results.contains_key(*t))
                .filter_map(|t| heard.get(t))
                .min()
                .copied()
                .unwrap_or_else(Instant::now)
                + timeout;
            let Some((topic, payload)) = conn.next(deadline).await.map_err(fail)? else {
                for t in targets.iter().filter(|t| !results.contains_key(*t)) {
                    why.insert(t.clone(), format!("nothing heard for {} s", timeout.as_secs()));
                }
                break;
            };
            let Some(dev) = split_topic(&o.prefix, &topic).map(|(d, _)| d.to_string()) else { continue };
            heard.insert(dev.clone(), Instant::now());
            let Some(id) = ids.get(&dev) else { continue };
            if topic.ends_with("/result") {
                if let Ok(r) = serde_json::from_slice::<Outcome>(&payload) {
                    if &r.id == id {
                        results.insert(dev, r);
                    }
                }
            } else if absorb(&mut devices, &o.prefix, &topic, &payload).is_some() {
                if let Some(r) = devices.get(&dev).and_then(|d| d.result_of(id)) {
                    results.insert(dev, r);
                }
            }
        }
        conn.close().await;
        Ok(report(&results, &targets, &why))
    })
}

fn logs(o: &Opts, m: &Matches) -> Result<i32, CliError> {
    let (device, name) = (&m.args()[0], &m.args()[1]);
    if !valid_device_id(device) {
        return Err(usage(LOGS.path, format!("invalid device id {device:?}")));
    }
    let tail: u32 = number(m, "tail", LOGS.path)?.unwrap_or(100);
    let token = conn::token();
    let cmd = json!({"cmd": "logs", "name": name, "tail": tail, "token": token}).to_string();
    let root = o.root(device);
    let (ok, body) = block_on(async {
        let mut conn = o.connect().await?;
        conn.subscribe(&format!("{root}resp")).await.map_err(fail)?;
        conn.subscribe(&format!("{root}status")).await.map_err(fail)?;
        conn.publish(&format!("{root}cmd"), cmd.into_bytes()).await.map_err(fail)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut online = None;
        loop {
            let Some((topic, payload)) = conn.next(deadline).await.map_err(fail)? else {
                let state = match online {
                    Some(true) => "it is online but did not answer",
                    Some(false) => "it is offline",
                    None => "it has never connected with this topic prefix",
                };
                return Err(fail(format!("no answer from {device} in 15 s ({state})")));
            };
            if topic.ends_with("/status") {
                online = Some(payload == b"online");
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&payload) else { continue };
            if v.get("token").and_then(Value::as_str) != Some(token.as_str()) {
                continue;
            }
            let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
            let body = match v.get("body") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            conn.close().await;
            return Ok((ok, body));
        }
    })?;
    if !ok {
        return Err(fail(format!("{device}: {}", body.trim_end())));
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(body.as_bytes());
    if !body.is_empty() && !body.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_device_views() {
        assert_eq!(split_topic("berth/v1/", "berth/v1/dev-1/state"), Some(("dev-1", "state")));
        assert_eq!(split_topic("berth/v1/", "berth/v1/dev-1/a/b"), None);
        assert_eq!(split_topic("berth/v1/", "other/dev/state"), None);
        let mut d = BTreeMap::new();
        let p = "berth/v1/";
        assert_eq!(absorb(&mut d, p, "berth/v1/a/status", b"online").as_deref(), Some("a"));
        assert!(!d["a"].ready());
        let state = br#"{"seq": 7, "groups": ["lab"], "deployments": [{"name": "app"}],
            "last_result": {"id": "u1", "seq": 7, "name": "app", "result": "committed", "reason": "", "time": 1}}"#;
        absorb(&mut d, p, "berth/v1/a/state", state);
        let a = &d["a"];
        assert!(a.ready() && a.in_group("lab") && !a.in_group("x"));
        assert_eq!((a.seq(), a.deployments()), (7, vec!["app".to_string()]));
        assert_eq!(a.result_of("u1").map(|r| r.result), Some("committed".into()));
        assert!(a.result_of("u2").is_none());
        absorb(&mut d, p, "berth/v1/a/status", b"offline");
        assert!(!d["a"].ready());
        absorb(&mut d, p, "berth/v1/a/state", b"not json");
        assert_eq!(d["a"].seq(), 0);
        assert!(absorb(&mut d, p, "berth/v1/a/progress", b"{}").is_none());
    }

    #[test]
    fn every_subcommand_has_help() {
        for c in [&FLEET, &KEYGEN, &PUSH, &STATUS, &ROLLBACK, &RESTART, &LOGS] {
            assert!(matches!(args::parse(c, &["--help".to_string()]), Ok(Parsed::Help(_))), "{}", c.path);
        }
    }
}
