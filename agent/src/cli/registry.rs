//! Registry commands: pull, push, login, logout. They run in the CLI process
//! (never in the agent: the pull's worker threads must not live in a process that forks), on the
//! store under its lock, with `berth-registry` doing the talking.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_registry::auth::{normalize_server, AuthFile, Creds};
use berth_registry::pull::{self, Event, LayerState};
use berth_registry::push::{self, BlobState, PushEvent};
use berth_registry::{Options, Registry};
use berth_runtime::digest::Digest;
use berth_runtime::image::platform::Platform;
use berth_runtime::image::reference::{familiar, Reference};
use berth_runtime::Error;

use super::{op_err, CliError, Ctx};
use crate::daemon::config::{self, Config};
use crate::term::output::{human_size, is_tty};

const PULL_OPTS: &[Opt] = &[
    opt("platform", None, Some("string"), "Set platform if server is multi-platform capable (os/arch[/variant])"),
    opt("quiet", Some('q'), None, "Suppress verbose output"),
];
pub const PULL: Cmd = cmd("berth pull", "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", PULL_OPTS, 1, Some(1));
pub const IMAGE_PULL: Cmd = Cmd { path: "berth image pull", ..PULL };

const PUSH_OPTS: &[Opt] = &[opt("quiet", Some('q'), None, "Suppress verbose output")];
pub const PUSH: Cmd = cmd("berth push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry", PUSH_OPTS, 1, Some(1));
pub const IMAGE_PUSH: Cmd = Cmd { path: "berth image push", ..PUSH };

const LOGIN_OPTS: &[Opt] = &[
    opt("password", Some('p'), Some("string"), "Password"),
    opt("password-stdin", None, None, "Take the password from stdin"),
    opt("username", Some('u'), Some("string"), "Username"),
];
pub const LOGIN: Cmd = cmd(
    "berth login",
    "[OPTIONS] [SERVER]",
    "Log in to a registry (credentials kept in <root>/config.json, mode 0600)",
    LOGIN_OPTS,
    0,
    Some(1),
);
pub const LOGOUT: Cmd = cmd("berth logout", "[SERVER]", "Log out from a registry", &[], 0, Some(1));

fn out_err(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    CliError::Op(Error::io("write output", e))
}

/// berth.toml (`BERTH_CONFIG`, else /etc/berth/berth.toml if present): `[registry]`.
pub(crate) fn options(ctx: &Ctx) -> Result<Options, CliError> {
    let path = std::env::var("BERTH_CONFIG").ok().filter(|p| !p.is_empty()).map(PathBuf::from);
    let cfg = match &path {
        Some(p) => Config::load(p, true)?,
        None => Config::load(Path::new(config::DEFAULT_PATH), false)?,
    };
    let mut o = Options::default();
    let r = cfg.registry;
    o.insecure = r.insecure_registries;
    o.mirrors = r.mirrors;
    if let Some(d) = r.certs_dir {
        o.cert_dirs.insert(0, d);
    }
    o.floor = crate::daemon::update::clock::floor(&ctx.root);
    o.auth_file = Some(ctx.root.join("config.json"));
    o.proxy = berth_registry::http::Proxy::from_env()?;
    Ok(o)
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

/// Bytes of every layer so far, for the agent that runs this pull for a fleet update
/// (`BERTH_PULL_PROGRESS=FILE`): `HAVE TOTAL` rewritten at most twice a second.
#[derive(Default)]
struct Tally {
    layers: HashMap<Digest, (u64, u64)>,
    last: Option<Instant>,
}

impl Tally {
    fn event(&mut self, e: &Event, file: &Path) {
        let Event::Layer { digest, state } = e else { return };
        let entry = self.layers.entry(digest.clone()).or_insert((0, 0));
        match state {
            LayerState::Downloading { done, total, .. } => *entry = (*done, *total),
            LayerState::Complete | LayerState::Exists => entry.0 = entry.1,
            LayerState::Waiting | LayerState::Extracting => {}
        }
        let now = Instant::now();
        let done = matches!(state, LayerState::Complete);
        if !done && self.last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(500)) {
            return;
        }
        self.last = Some(now);
        let (have, total) = self.layers.values().fold((0, 0), |(h, t), (a, b)| (h + a, t + b));
        // Not synced: the file is on tmpfs and only feeds a progress report.
        let tmp = file.with_extension("tmp");
        if std::fs::write(&tmp, format!("{have} {total}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, file);
        }
    }
}

/// Pull progress: on a terminal one redrawn line per layer; otherwise one line per layer when
/// it is done (or was already there), as Docker prints to a pipe.
struct PullView {
    tty: bool,
    quiet: bool,
    state: Mutex<ViewState>,
}

struct ViewState {
    order: Vec<Digest>,
    lines: HashMap<Digest, String>,
    drawn: usize,
    last: Option<Instant>,
}

impl PullView {
    fn event(&self, e: &Event) {
        if self.quiet {
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        match e {
            Event::Resolving { reference, path } => {
                let tag = reference.strip_prefix("sha256:").map_or(reference.as_str(), |_| reference.as_str());
                println!("{tag}: Pulling from {path}");
            }
            Event::Layer { digest, state } => {
                let text = match state {
                    LayerState::Exists => "Already exists".to_string(),
                    LayerState::Waiting => "Waiting".to_string(),
                    LayerState::Downloading { done, total, resumed } => {
                        let bar = if *total > 0 { (done * 40 / total) as usize } else { 40 };
                        let from = if *resumed > 0 { format!(" (resumed at {})", human_size(*resumed)) } else { String::new() };
                        format!(
                            "Downloading [{}>{}] {}/{}{from}",
                            "=".repeat(bar),
                            " ".repeat(40 - bar.min(40)),
                            human_size(*done),
                            human_size(*total)
                        )
                    }
                    LayerState::Extracting => "Extracting".to_string(),
                    LayerState::Complete => "Pull complete".to_string(),
                };
                if !s.lines.contains_key(digest) {
                    s.order.push(digest.clone());
                }
                let line = format!("{}: {text}", short(digest));
                s.lines.insert(digest.clone(), line.clone());
                if !self.tty {
                    if matches!(state, LayerState::Exists | LayerState::Complete) {
                        println!("{line}");
                    }
                    return;
                }
                let redraw_now = !matches!(state, LayerState::Downloading { .. }) || s.last.is_none_or(|t| t.elapsed().as_millis() >= 100);
                if redraw_now {
                    s.last = Some(Instant::now());
                    let mut out = io::stdout().lock();
                    if s.drawn > 0 {
                        let _ = write!(out, "\x1b[{}A", s.drawn);
                    }
                    for d in &s.order {
                        let _ = writeln!(out, "\r{}\x1b[K", s.lines.get(d).map_or("", String::as_str));
                    }
                    let _ = out.flush();
                    s.drawn = s.order.len();
                }
            }
        }
    }
}

pub fn pull(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let name = &m.args()[0];
    let r = Reference::parse(name)?;
    let plat = m.value("platform").map(Platform::parse).transpose()?;
    let opts = options(ctx)?;
    let store = ctx.store()?;
    let quiet = m.flag("quiet");
    let view =
        PullView { tty: is_tty(1), quiet, state: Mutex::new(ViewState { order: Vec::new(), lines: HashMap::new(), drawn: 0, last: None }) };
    let file = std::env::var_os("BERTH_PULL_PROGRESS").map(PathBuf::from);
    let tally = Mutex::new(Tally::default());
    let p = pull::pull(&store, &opts, &r, plat.as_ref(), &|e| {
        view.event(e);
        if let Some(f) = &file {
            if let Ok(mut t) = tally.lock() {
                t.event(e, f);
            }
        }
    })?;
    let mut out = io::stdout().lock();
    if !quiet {
        writeln!(out, "Digest: {}", p.digest).map_err(out_err)?;
        let status = if p.changed { "Downloaded newer image for" } else { "Image is up to date for" };
        writeln!(out, "Status: {status} {}", familiar(&p.name)).map_err(out_err)?;
    }
    writeln!(out, "{}", p.name).map_err(out_err)?;
    Ok(0)
}

pub fn push(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let name = &m.args()[0];
    let opts = options(ctx)?;
    let store = ctx.store()?;
    let quiet = m.flag("quiet");
    let show = |e: &PushEvent| {
        if quiet {
            return;
        }
        match e {
            PushEvent::Repository(r) => println!("The push refers to repository [{r}]"),
            PushEvent::Blob { digest, state } => match state {
                BlobState::Pushing => {}
                BlobState::Exists => println!("{}: Layer already exists", short(digest)),
                BlobState::Mounted(from) => println!("{}: Mounted from {}", short(digest), familiar(from)),
                BlobState::Pushed => println!("{}: Pushed", short(digest)),
            },
        }
    };
    let p = push::push(&store, &opts, name, &show)?;
    let mut out = io::stdout().lock();
    if quiet {
        writeln!(out, "{name}").map_err(out_err)?;
    } else {
        writeln!(out, "{}: digest: {} size: {}", p.tag, p.digest, p.size).map_err(out_err)?;
    }
    Ok(0)
}

fn read_line_from(r: &mut impl BufRead) -> Result<String, CliError> {
    let mut s = String::new();
    r.read_line(&mut s).map_err(|e| Error::io("read standard input", e))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// A terminal line read with echo off (for the password prompt).
fn read_hidden() -> Result<String, CliError> {
    // SAFETY: termios is plain data; tcgetattr fills it for fd 0 or fails.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 and a valid pointer to `t`.
    let have = unsafe { libc::tcgetattr(0, &mut t) } == 0;
    if have {
        let mut quiet = t;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: fd 0 and a valid termios copied from the current one.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let line = read_line_from(&mut io::stdin().lock());
    if have {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        eprintln!();
    }
    line
}

pub fn login(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let server = normalize_server(m.args().first().map_or("docker.io", String::as_str));
    let mut user = m.value("username").map(str::to_string);
    let password = match (m.value("password"), m.flag("password-stdin")) {
        (Some(_), true) => return Err(op_err("--password and --password-stdin are mutually exclusive")),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            Some(p.to_string())
        }
        (None, true) => {
            if user.is_none() {
                return Err(op_err("Must provide --username with --password-stdin"));
            }
            let mut p = String::new();
            io::Read::read_to_string(&mut io::stdin().lock(), &mut p).map_err(|e| Error::io("read standard input", e))?;
            Some(p.trim_end_matches(['\n', '\r']).to_string())
        }
        (None, false) => None,
    };
    let password = match password {
        Some(p) => p,
        None => {
            if !is_tty(0) {
                return Err(op_err("Cannot perform an interactive login from a non TTY device"));
            }
            if user.is_none() {
                eprint!("Username: ");
                user = Some(read_line_from(&mut io::stdin().lock())?);
            }
            eprint!("Password: ");
            read_hidden()?
        }
    };
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| op_err("Username is required"))?;
    if password.is_empty() {
        return Err(op_err("Password is required"));
    }
    let mut opts = options(ctx)?;
    opts.auth_file = None;
    let mut reg = Registry::new(&server, &opts)?;
    let creds = Creds { user, password };
    reg.set_creds(Some(creds.clone()));
    reg.check_login()?;
    AuthFile::new(&ctx.root.join("config.json")).set(&server, &creds)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let server = normalize_server(m.args().first().map_or("docker.io", String::as_str));
    let shown = berth_registry::auth::server_key(&server);
    if AuthFile::new(&ctx.root.join("config.json")).remove(&server)? {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(0)
}
