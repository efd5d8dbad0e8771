//! Container commands: run, create, start, stop, kill, rm, ps, wait, and inspect (containers and
//! images). Lifecycle changes go through the agent; ps and inspect read the records on disk, so
//! they work even when the agent is down.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};

use serde_json::{json, Value};

use berth_runtime::cgroup::parse_size;
use berth_runtime::container::record::{self, Record, Status};
use berth_runtime::container::spec::{Mount, Net};
use berth_runtime::image::store::Store;
use berth_runtime::{timefmt, Error};

use super::args::{cmd, opt, Cmd, Matches, Opt};
use super::client::{check, Client};
use super::format::{render, Format};
use super::output::{docker_time, human_ago, table};
use super::{op_err, CliError, Ctx};
use crate::proto::{Request, Response, RunOptions};
use crate::signal;

// The resource flags `run` and `update` share.
const MEMORY: Opt = opt("memory", Some('m'), Some("bytes"), "Memory limit");
const MEMORY_SWAP: Opt = opt("memory-swap", None, Some("bytes"), "Swap limit equal to memory plus swap: '-1' to enable unlimited swap");
const MEMORY_RESERVATION: Opt = opt("memory-reservation", None, Some("bytes"), "Memory soft limit");
const PIDS_LIMIT: Opt = opt("pids-limit", None, Some("int"), "Tune container pids limit (set -1 for unlimited)");
const CPUS: Opt = opt("cpus", None, Some("decimal"), "Number of CPUs");
const CPU_SHARES: Opt = opt("cpu-shares", Some('c'), Some("int"), "CPU shares (relative weight)");

const RUN_OPTS: &[Opt] = &[
    opt("detach", Some('d'), None, "Run container in background and print container ID"),
    opt("interactive", Some('i'), None, "Keep STDIN open even if not attached"),
    opt("tty", Some('t'), None, "Allocate a pseudo-TTY"),
    opt("name", None, Some("string"), "Assign a name to the container"),
    opt("rm", None, None, "Automatically remove the container when it exits"),
    opt("env", Some('e'), Some("list"), "Set environment variables"),
    opt("env-file", None, Some("list"), "Read in a file of environment variables"),
    opt("workdir", Some('w'), Some("string"), "Working directory inside the container"),
    opt("user", Some('u'), Some("string"), "Username or UID (format: <name|uid>[:<group|gid>])"),
    opt("hostname", Some('h'), Some("string"), "Container host name"),
    opt("entrypoint", None, Some("string"), "Overwrite the default ENTRYPOINT of the image"),
    opt("volume", Some('v'), Some("list"), "Bind mount a volume (HOST:CONTAINER[:ro], NAME:CONTAINER or CONTAINER)"),
    opt("tmpfs", None, Some("list"), "Mount a tmpfs directory (PATH[:size=..,mode=..])"),
    opt("read-only", None, None, "Mount the container's root filesystem as read only"),
    opt("net", None, Some("string"), "Connect a container to a network: host (default), none, container:NAME"),
    opt("network", None, Some("string"), "Same as --net"),
    MEMORY,
    MEMORY_SWAP,
    MEMORY_RESERVATION,
    PIDS_LIMIT,
    CPUS,
    CPU_SHARES,
    opt("cap-add", None, Some("list"), "Add Linux capabilities"),
    opt("cap-drop", None, Some("list"), "Drop Linux capabilities"),
    opt("security-opt", None, Some("list"), "Security options (no-new-privileges)"),
    opt("ulimit", None, Some("ulimit"), "Ulimit options (name=soft[:hard])"),
    opt("label", Some('l'), Some("list"), "Set meta data on a container"),
    opt("stop-signal", None, Some("string"), "Signal to stop the container"),
    opt("stop-timeout", None, Some("int"), "Timeout (in seconds) to stop a container"),
    opt("init", None, None, "Run an init inside the container that forwards signals and reaps processes"),
    opt("privileged", None, None, "Give extended privileges to this container"),
    opt(
        "device",
        None,
        Some("list"),
        "Add a host device to the container (HOST[:CONTAINER][:PERMS], a board device NAME, or usb:VID:PID[:SERIAL])",
    ),
    opt("device-cgroup-rule", None, Some("list"), "Add a rule to the cgroup allowed devices list ('c 89:* rwm')"),
    opt("userns", None, Some("string"), "User namespace to use: host (the only mode so far)"),
    opt("restart", None, Some("string"), "Restart policy: no, on-failure[:max-retries], always, unless-stopped"),
    opt("health-cmd", None, Some("string"), "Command to run to check health"),
    opt("health-interval", None, Some("duration"), "Time between running the check (ms|s|m|h) (default 30s)"),
    opt("health-timeout", None, Some("duration"), "Maximum time to allow one check to run (ms|s|m|h) (default 30s)"),
    opt("health-retries", None, Some("int"), "Consecutive failures needed to report unhealthy"),
    opt(
        "health-start-period",
        None,
        Some("duration"),
        "Start period for the container to initialize before failures count (ms|s|m|h) (default 0s)",
    ),
    opt("no-healthcheck", None, None, "Disable any container-specified HEALTHCHECK"),
    opt("log-driver", None, Some("string"), "Logging driver: local (size-capped ring files, the default), json-file (same), none"),
    opt("log-opt", None, Some("list"), "Log driver options: max-size=10m, max-file=3 (the defaults)"),
];
pub const RUN: Cmd = Cmd {
    stop_at_positional: true,
    ..cmd("berth run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image", RUN_OPTS, 1, None)
};
pub const CREATE: Cmd = Cmd { path: "berth create", about: "Create a new container", ..RUN };

const START_OPTS: &[Opt] = &[
    opt("attach", Some('a'), None, "Attach STDOUT/STDERR and forward signals"),
    opt("interactive", Some('i'), None, "Attach container's STDIN"),
];
pub const START: Cmd =
    cmd("berth start", "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers", START_OPTS, 1, None);

const STOP_OPTS: &[Opt] = &[
    opt("time", Some('t'), Some("int"), "Seconds to wait before killing the container"),
    opt("timeout", None, Some("int"), "Same as --time"),
];
pub const STOP: Cmd = cmd("berth stop", "[OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers", STOP_OPTS, 1, None);

const KILL_OPTS: &[Opt] = &[opt("signal", Some('s'), Some("string"), "Signal to send to the container (default \"KILL\")")];
const EXEC_OPTS: &[Opt] = &[
    opt("detach", Some('d'), None, "Detached mode: run command in the background"),
    opt("interactive", Some('i'), None, "Keep STDIN open even if not attached"),
    opt("tty", Some('t'), None, "Allocate a pseudo-TTY"),
    opt("env", Some('e'), Some("list"), "Set environment variables"),
    opt("user", Some('u'), Some("string"), "Username or UID (format: <name|uid>[:<group|gid>])"),
    opt("workdir", Some('w'), Some("string"), "Working directory inside the container"),
];
pub const EXEC: Cmd = Cmd {
    stop_at_positional: true,
    ..cmd("berth exec", "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container", EXEC_OPTS, 2, None)
};

const UPDATE_OPTS: &[Opt] = &[
    MEMORY,
    MEMORY_SWAP,
    MEMORY_RESERVATION,
    PIDS_LIMIT,
    CPUS,
    CPU_SHARES,
    opt("restart", None, Some("string"), "Restart policy to apply when a container exits"),
];
pub const UPDATE: Cmd =
    cmd("berth update", "[OPTIONS] CONTAINER [CONTAINER...]", "Update configuration of one or more containers", UPDATE_OPTS, 1, None);
pub const RENAME: Cmd = cmd("berth rename", "CONTAINER NEW_NAME", "Rename a container", &[], 2, Some(2));
const PRUNE_OPTS: &[Opt] = &[opt("force", Some('f'), None, "Do not prompt for confirmation")];
pub const PRUNE: Cmd = cmd("berth container prune", "[OPTIONS]", "Remove all stopped containers", PRUNE_OPTS, 0, Some(0));
pub const LS: Cmd = Cmd { path: "berth container ls", ..PS };

pub const RESTART: Cmd = Cmd { path: "berth restart", about: "Restart one or more containers", ..STOP };

pub const KILL: Cmd = cmd("berth kill", "[OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers", KILL_OPTS, 1, None);

const RM_OPTS: &[Opt] = &[
    opt("force", Some('f'), None, "Force the removal of a running container (uses SIGKILL)"),
    opt("volumes", Some('v'), None, "Remove anonymous volumes associated with the container"),
];
pub const RM: Cmd = cmd("berth rm", "[OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers", RM_OPTS, 1, None);

const PS_OPTS: &[Opt] = &[
    opt("all", Some('a'), None, "Show all containers (default shows just running)"),
    opt("filter", Some('f'), Some("filter"), "Filter output based on conditions provided (id, name, status, label)"),
    opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line"),
    opt("no-trunc", None, None, "Don't truncate output"),
    opt("quiet", Some('q'), None, "Only display container IDs"),
];
pub const PS: Cmd = cmd("berth ps", "[OPTIONS]", "List containers", PS_OPTS, 0, Some(0));

pub const WAIT: Cmd =
    cmd("berth wait", "CONTAINER [CONTAINER...]", "Block until one or more containers stop, then print their exit codes", &[], 1, None);

const INSPECT_OPTS: &[Opt] = &[
    opt("format", Some('f'), Some("string"), "Format output: \"json\" for one JSON object per line, or a {{.Field}} template"),
    opt("type", None, Some("string"), "Return JSON for specified type (container or image)"),
];
pub const INSPECT: Cmd =
    cmd("berth inspect", "[OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information on containers and images", INSPECT_OPTS, 1, None);

const AGENT_OPTS: &[Opt] = &[
    opt("group", Some('G'), Some("string"), "Group that may use the agent's socket (mode 0660)"),
    opt(
        "storage-driver",
        Some('s'),
        Some("string"),
        "Container root file systems: overlay, or copy where the kernel has no overlayfs (default: overlay if available)",
    ),
    opt("live-restore", None, None, "Leave containers running when the agent stops; the next agent adopts them"),
    opt(
        "board",
        None,
        Some("string"),
        "Board profile naming devices for --device NAME: a file, or NAME for /etc/berth/boards/NAME.toml (env BERTH_BOARD) (default /etc/berth/board.toml if present)",
    ),
    opt(
        "preload-run",
        None,
        Some("file"),
        "Containers to create and start if missing, one line of run arguments each (default /etc/berth/preload-run.conf)",
    ),
    opt("config", None, Some("file"), "Agent configuration: MQTT and updates (default /etc/berth/berth.toml, if present)"),
    opt("mqtt", None, Some("url"), "Broker to take updates from (mqtt://HOST[:PORT] or mqtts://...; repeat for failover)"),
    opt("device-id", None, Some("string"), "Device id on the broker (default: /etc/machine-id)"),
    opt("fleet-group", None, Some("string"), "Fleet group this device belongs to, for `fleet push --group` (repeatable)"),
    opt("trust", None, Some("file"), "Public key (PEM) whose signed updates are accepted (repeatable)"),
    opt("mqtt-ca", None, Some("file"), "CA certificate(s) to check the broker against (default: the system's)"),
    opt("mqtt-cert", None, Some("file"), "Client certificate for mutual TLS"),
    opt("mqtt-key", None, Some("file"), "Private key of the client certificate"),
];
pub const AGENT: Cmd =
    cmd("berth agent", "[OPTIONS]", "Run the berth agent (the daemon that runs and supervises containers)", AGENT_OPTS, 0, Some(0));

fn parse_num<T: std::str::FromStr>(m: &Matches, name: &str) -> Result<Option<T>, CliError> {
    m.value(name).map(|v| v.parse::<T>().map_err(|_| op_err(format!("invalid argument {v:?} for \"--{name}\" flag")))).transpose()
}

fn size(m: &Matches, name: &str) -> Result<Option<i64>, CliError> {
    match m.value(name) {
        Some("-1") => Ok(Some(-1)),
        Some(v) => Ok(Some(parse_size(v).map_err(|e| op_err(format!("invalid argument {v:?} for \"--{name}\" flag: {e}")))?)),
        None => Ok(None),
    }
}

/// `-e KEY` takes KEY from the CLI's own environment (dropped if unset), as Docker does.
fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// `run` arguments (after `run`) as options, for the preload file and updates: the same parser
/// and checks as the command line.
pub fn parse_run_words(words: &[String]) -> std::result::Result<RunOptions, String> {
    let m = match super::args::parse(&RUN, words).map_err(|e| e.msg)? {
        super::args::Parsed::Matches(m) => m,
        super::args::Parsed::Help(_) => return Err("--help is not a container".into()),
    };
    run_options(&m).map(|(o, _)| o).map_err(|e| match e {
        CliError::Op(e) => e.to_string(),
        CliError::Usage(u) => u.msg,
        CliError::Exit(c) => format!("exit {c}"),
    })
}

pub fn run_options(m: &Matches) -> Result<(RunOptions, bool), CliError> {
    let args = m.args();
    let mut env = Vec::new();
    for f in m.values("env-file") {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(format!("open env file {f}"), e))?;
        env.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(env_entry));
    }
    env.extend(m.values("env").into_iter().filter_map(env_entry));
    let mut no_new_privileges = false;
    for s in m.values("security-opt") {
        match s {
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => no_new_privileges = true,
            "no-new-privileges=false" | "no-new-privileges:false" => no_new_privileges = false,
            other => return Err(op_err(format!("unsupported security option {other:?} (supported: no-new-privileges)"))),
        }
    }
    if let Some(u) = m.value("userns") {
        if u != "host" {
            // Remapping needs idmapped mounts of the shared layers (the layer store is owned by
            // host root); until then say so instead of running with a weaker isolation.
            return Err(op_err(format!("--userns={u} is not supported: only --userns=host")));
        }
    }
    let strs = |n: &str| m.values(n).into_iter().map(str::to_string).collect::<Vec<_>>();
    let o = RunOptions {
        image: args[0].clone(),
        cmd: args[1..].to_vec(),
        name: m.value("name").map(str::to_string),
        entrypoint: m.value("entrypoint").map(str::to_string),
        env,
        workdir: m.value("workdir").map(str::to_string),
        user: m.value("user").map(str::to_string),
        hostname: m.value("hostname").map(str::to_string),
        volumes: strs("volume"),
        tmpfs: strs("tmpfs"),
        read_only: m.flag("read-only"),
        net: m.value("network").or(m.value("net")).map(str::to_string),
        memory: size(m, "memory")?,
        memory_swap: size(m, "memory-swap")?,
        memory_reservation: size(m, "memory-reservation")?,
        pids_limit: parse_num(m, "pids-limit")?,
        cpus: parse_num(m, "cpus")?,
        cpu_shares: parse_num(m, "cpu-shares")?,
        cap_add: strs("cap-add"),
        cap_drop: strs("cap-drop"),
        no_new_privileges,
        ulimits: strs("ulimit"),
        labels: strs("label"),
        stop_signal: m.value("stop-signal").map(str::to_string),
        stop_timeout: parse_num(m, "stop-timeout")?,
        auto_remove: m.flag("rm"),
        init: m.flag("init"),
        privileged: m.flag("privileged"),
        interactive: m.flag("interactive"),
        tty: m.flag("tty"),
        log_driver: m.value("log-driver").map(str::to_string),
        log_opts: strs("log-opt"),
        restart: m.value("restart").map(str::to_string),
        health_cmd: m.value("health-cmd").map(str::to_string),
        health_interval: m.value("health-interval").map(str::to_string),
        health_timeout: m.value("health-timeout").map(str::to_string),
        health_retries: parse_num(m, "health-retries")?,
        health_start_period: m.value("health-start-period").map(str::to_string),
        no_healthcheck: m.flag("no-healthcheck"),
        devices: strs("device"),
        device_cgroup_rules: strs("device-cgroup-rule"),
    };
    check_devices(&o)?;
    Ok((o, m.flag("detach")))
}

/// Docker checks `--device` and `--device-cgroup-rule` syntax in the client: a bad value is a usage
/// error (exit 125) before the agent is asked anything.
fn check_devices(o: &RunOptions) -> Result<(), CliError> {
    let usage = |flag: &str, v: &str, e: berth_device::Error| {
        CliError::Usage(super::args::UsageError { msg: format!("invalid argument {v:?} for \"--{flag}\" flag: {e}"), cmd: "berth run" })
    };
    for d in &o.devices {
        berth_device::spec::parse(d).map_err(|e| usage("device", d, e))?;
    }
    for r in &o.device_cgroup_rules {
        berth_device::rule::Rule::parse(r).map_err(|e| usage("device-cgroup-rule", r, e))?;
    }
    Ok(())
}

fn create_on(client: &mut Client, o: RunOptions) -> Result<String, CliError> {
    match client.call(&Request::Create(Box::new(o)))? {
        // Docker: run/create itself failing is 125, whatever the reason.
        Response::Error { msg, .. } => {
            eprintln!("Error: {msg}");
            Err(CliError::Exit(125))
        }
        Response::Created { id, warnings } => {
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            Ok(id)
        }
        other => Err(op_err(format!("unexpected answer from the agent: {other:?}"))),
    }
}

pub fn create(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (o, _) = run_options(m).map_err(run_err)?;
    let mut c = Client::connect(ctx).map_err(run_err)?;
    let id = create_on(&mut c, o).map_err(run_err)?;
    println!("{id}");
    Ok(0)
}

/// Docker exits 125 when `run`/`create` itself fails.
fn run_err(e: CliError) -> CliError {
    match e {
        CliError::Op(e) => {
            eprintln!("Error: {e}");
            CliError::Exit(125)
        }
        other => other,
    }
}

/// Forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the container while the CLI waits (Docker's
/// --sig-proxy), from a thread that owns the blocked signals.
pub fn proxy_signals(ctx: &Ctx, id: &str) {
    let (root, host, id) = (ctx.root.clone(), ctx.host.clone(), id.to_string());
    // SAFETY: builds a signal set and blocks it in this thread; threads spawned after this
    // inherit the mask, so only the sigwait below receives these signals.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || loop {
        let mut sig = 0;
        // SAFETY: waits on the set built above; `sig` is a plain int.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        let ctx = Ctx { root: root.clone(), host: host.clone() };
        if let Ok(mut c) = Client::connect(&ctx) {
            let _ = c.call(&Request::Kill { id: id.clone(), signal: sig });
        }
    });
}

fn attach_and_wait(ctx: &Ctx, client: &mut Client, id: &str, stdin: bool, tty: bool) -> Result<i32, CliError> {
    if tty {
        return attach_tty(ctx, id, stdin);
    }
    let null = std::fs::File::open("/dev/null").map_err(|e| Error::io("open /dev/null", e))?;
    let fds: [RawFd; 3] = [if stdin { 0 } else { null.as_raw_fd() }, 1, 2];
    proxy_signals(ctx, id);
    match check(client.call_with_fds(&Request::Start { id: id.to_string(), attach: true, wait: true }, &fds)?)? {
        Response::Exited { code } => Ok(code),
        other => Err(op_err(format!("unexpected answer from the agent: {other:?}"))),
    }
}

/// Sends `req` with a new pty as the process's stdio and relays it to this terminal until the
/// process ends; returns the agent's answer. ^C reaches the process through the terminal.
fn relay_tty(mut c: Client, req: &Request, stdin: bool) -> Result<Response, CliError> {
    let pty = super::tty::open()?;
    super::tty::copy_size(&pty.master);
    let s = pty.slave.as_raw_fd();
    c.send(req, &[s, s, s])?;
    // The descriptor in flight keeps the slave open for the agent; ours must close so that the
    // master reads end when the process does.
    drop(pty.slave);
    let answer = std::thread::spawn(move || c.recv());
    let raw = if super::output::is_tty(0) { Some(super::tty::Raw::enter()) } else { None };
    super::tty::pump(&pty.master, stdin);
    drop(raw);
    answer.join().map_err(|_| op_err("lost the agent's answer"))?
}

/// `-t`: the container's stdio is a pty the CLI relays.
fn attach_tty(ctx: &Ctx, id: &str, stdin: bool) -> Result<i32, CliError> {
    let r = relay_tty(Client::connect(ctx)?, &Request::Start { id: id.to_string(), attach: true, wait: true }, stdin)?;
    match check(r)? {
        Response::Exited { code } => Ok(code),
        other => Err(op_err(format!("unexpected answer from the agent: {other:?}"))),
    }
}

pub fn run(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (o, detach) = run_options(m).map_err(run_err)?;
    let (interactive, auto_remove, tty) = (o.interactive, o.auto_remove, o.tty);
    let mut c = Client::connect(ctx).map_err(run_err)?;
    let id = create_on(&mut c, o).map_err(run_err)?;
    if detach {
        match c.call(&Request::Start { id: id.clone(), attach: false, wait: false }).map_err(run_err)? {
            Response::Error { code, msg } => {
                eprintln!("Error: {msg}");
                // A container that could not start leaves nothing behind.
                let _ = c.call(&Request::Remove { id, force: true, volumes: true });
                return Err(CliError::Exit(code));
            }
            _ => println!("{id}"),
        }
        return Ok(0);
    }
    match attach_and_wait(ctx, &mut c, &id, interactive, tty) {
        Err(CliError::Exit(code)) => {
            if !auto_remove {
                let _ = c.call(&Request::Remove { id, force: true, volumes: true });
            }
            Err(CliError::Exit(code))
        }
        other => other,
    }
}

fn each(ctx: &Ctx, m: &Matches, req: impl Fn(String) -> Request) -> Result<i32, CliError> {
    let mut c = Client::connect(ctx)?;
    let mut code = 0;
    for name in m.args() {
        match c.call(&req(name.clone()))? {
            Response::Error { msg, .. } => {
                eprintln!("Error: {msg}");
                code = 1;
            }
            Response::Exited { code } => println!("{code}"),
            _ => println!("{name}"),
        }
    }
    Ok(code)
}

pub fn start(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    if m.flag("attach") {
        let [name] = m.args() else { return Err(op_err("you cannot start and attach multiple containers at once")) };
        let mut c = Client::connect(ctx)?;
        return attach_and_wait(ctx, &mut c, name, m.flag("interactive"), false);
    }
    each(ctx, m, |id| Request::Start { id, attach: false, wait: false })
}

/// `-t/--time` (or Docker 24's `--timeout`).
fn stop_timeout(m: &Matches) -> Result<Option<u32>, CliError> {
    match parse_num(m, "time")? {
        Some(t) => Ok(Some(t)),
        None => parse_num(m, "timeout"),
    }
}

pub fn stop(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let t = stop_timeout(m)?;
    each(ctx, m, |id| Request::Stop { id, timeout: t })
}

pub fn exec(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (detach, stdin, tty) = (m.flag("detach"), m.flag("interactive"), m.flag("tty"));
    let o = crate::proto::ExecOptions {
        id: m.args()[0].clone(),
        args: m.args()[1..].to_vec(),
        env: m.values("env").into_iter().filter_map(env_entry).collect(),
        user: m.value("user").map(str::to_string),
        workdir: m.value("workdir").map(str::to_string),
        tty: tty && !detach,
        attach: !detach,
    };
    let mut c = Client::connect(ctx).map_err(run_err)?;
    if detach {
        check(c.call(&Request::Exec(Box::new(o))).map_err(run_err)?)?;
        return Ok(0);
    }
    let null = std::fs::File::open("/dev/null").map_err(|e| Error::io("open /dev/null", e))?;
    let answer = if tty {
        relay_tty(c, &Request::Exec(Box::new(o)), stdin)?
    } else {
        c.call_with_fds(&Request::Exec(Box::new(o)), &[if stdin { 0 } else { null.as_raw_fd() }, 1, 2])?
    };
    match check(answer)? {
        Response::Exited { code } => Ok(code),
        other => Err(op_err(format!("unexpected answer from the agent: {other:?}"))),
    }
}

pub fn update(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let resources = berth_runtime::cgroup::Resources {
        memory: size(m, "memory")?,
        memory_swap: size(m, "memory-swap")?,
        memory_reservation: size(m, "memory-reservation")?,
        pids_limit: parse_num(m, "pids-limit")?,
        cpus: parse_num(m, "cpus")?,
        cpu_shares: parse_num(m, "cpu-shares")?,
        devices: Vec::new(),
    };
    let restart = m.value("restart").map(str::to_string);
    let mut c = Client::connect(ctx)?;
    let mut code = 0;
    for name in m.args() {
        match c.call(&Request::Update { id: name.clone(), resources: resources.clone(), restart: restart.clone() })? {
            Response::Error { msg, .. } => {
                eprintln!("Error: {msg}");
                code = 1;
            }
            Response::Created { warnings, .. } => {
                for w in warnings {
                    eprintln!("WARNING: {w}");
                }
                println!("{name}");
            }
            _ => println!("{name}"),
        }
    }
    Ok(code)
}

pub fn rename(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let mut c = Client::connect(ctx)?;
    check(c.call(&Request::Rename { id: m.args()[0].clone(), name: m.args()[1].clone() })?)?;
    Ok(0)
}

pub fn prune(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    if !m.flag("force") {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().read_line(&mut answer).map_err(|e| Error::io("read answer", e))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
            return Ok(0);
        }
    }
    let (recs, _) = record::list(&ctx.root);
    let mut c = Client::connect(ctx)?;
    let mut out = io::stdout().lock();
    let w = |e: io::Error| CliError::Op(Error::io("write output", e));
    writeln!(out, "Deleted Containers:").map_err(w)?;
    for r in recs.iter().filter(|r| !r.is_running()) {
        if let Response::Done = c.call(&Request::Remove { id: r.id.clone(), force: false, volumes: false })? {
            writeln!(out, "{}", r.id).map_err(w)?;
        }
    }
    writeln!(out).map_err(w)?;
    Ok(0)
}

pub fn restart(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let t = stop_timeout(m)?;
    each(ctx, m, |id| Request::Restart { id, timeout: t })
}

pub fn kill(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let sig = signal::parse(m.value("signal").unwrap_or("KILL"))?;
    each(ctx, m, |id| Request::Kill { id, signal: sig })
}

pub fn rm(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (force, volumes) = (m.flag("force"), m.flag("volumes"));
    each(ctx, m, |id| Request::Remove { id, force, volumes })
}

pub fn wait(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    each(ctx, m, |id| Request::Wait { id })
}

/// The agent's update settings and MQTT link: berth.toml, then flags over it.
fn update_settings(ctx: &Ctx, m: &Matches) -> Result<(crate::update::manager::Settings, Option<crate::update::session::Link>), CliError> {
    use crate::config::{self, Config};
    use crate::mqtt;
    let cfg = match m.value("config") {
        Some(p) => Config::load(std::path::Path::new(p), true)?,
        None => Config::load(std::path::Path::new(config::DEFAULT_PATH), false)?,
    };
    let mut c = cfg.mqtt;
    let urls: Vec<String> =
        if m.values("mqtt").is_empty() { c.brokers.clone() } else { m.values("mqtt").into_iter().map(str::to_string).collect() };
    let mut brokers = urls.iter().map(|u| mqtt::Broker::parse(u)).collect::<berth_runtime::Result<Vec<_>>>()?;
    if let Some(pf) = &c.password_file {
        let p = std::fs::read_to_string(pf).map_err(|e| Error::io(format!("read {}", pf.display()), e))?;
        c.password = Some(p.trim_end_matches('\n').to_string());
    }
    for b in &mut brokers {
        if b.username.is_none() {
            b.username = c.username.clone();
            b.password = c.password.clone();
        }
    }
    let device = match m.value("device-id").map(str::to_string).or(c.device_id.clone()) {
        Some(d) => d,
        None if brokers.is_empty() => "local".to_string(),
        None => config::machine_id()?,
    };
    if !config::valid_device_id(&device) {
        return Err(op_err(format!("invalid device id {device:?}: letters, digits, '-', '_' and '.' only, at most 64")));
    }
    let mut key_files = cfg.update.trusted_keys.clone();
    key_files.extend(m.values("trust").into_iter().map(std::path::PathBuf::from));
    let keys = key_files.iter().map(|k| crate::update::sign::PublicKey::load(k)).collect::<berth_runtime::Result<Vec<_>>>()?;
    let mut groups = c.groups.clone();
    groups.extend(m.values("fleet-group").into_iter().map(str::to_string));
    let topic = c.topic_root.clone().unwrap_or_else(|| "berth/v1/{device}/".into()).replace("{device}", &device);
    let topic = if topic.ends_with('/') { topic } else { format!("{topic}/") };
    if !crate::update::wire::valid_topic(&topic) {
        return Err(op_err(format!("invalid topic root {topic:?}")));
    }
    let max_size = cfg.update.max_size.as_deref().map(berth_runtime::cgroup::parse_size).transpose()?.map(|s| s as u64);
    let settings = crate::update::manager::Settings { device, groups, keys, topic, max_size };
    if brokers.is_empty() {
        return Ok((settings, None));
    }
    if settings.keys.is_empty() {
        return Err(op_err("an agent on a broker needs trusted update keys: --trust FILE or [update] trusted_keys in berth.toml"));
    }
    let files = mqtt::TlsFiles {
        ca: m.value("mqtt-ca").map(std::path::PathBuf::from).or(c.ca.clone()),
        cert: m.value("mqtt-cert").map(std::path::PathBuf::from).or(c.cert.clone()),
        key: m.value("mqtt-key").map(std::path::PathBuf::from).or(c.key.clone()),
    };
    let tls = if brokers.iter().any(|b| b.tls) {
        Some(std::sync::Arc::new(mqtt::tls_config(&files, crate::update::clock::floor(&ctx.root))?))
    } else {
        None
    };
    let keep_alive = std::time::Duration::from_secs(c.keep_alive.unwrap_or(30));
    Ok((settings, Some(crate::update::session::Link { brokers, tls, keep_alive })))
}

pub fn agent(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let socket = std::path::PathBuf::from(ctx.host.strip_prefix("unix://").unwrap_or(&ctx.host));
    let (updates, link) = update_settings(ctx, m)?;
    let board_arg = m.value("board").map(str::to_string).or_else(|| std::env::var("BERTH_BOARD").ok());
    let board = crate::agent::devices::find_board(board_arg.as_deref())?;
    if let Some(name) = crate::agent::devices::set_board(board.as_deref())? {
        crate::info!("board profile {name} ({})", board.as_deref().map(|p| p.display().to_string()).unwrap_or_default());
    }
    crate::agent::run(&crate::agent::Options {
        updates,
        link,
        root: ctx.root.clone(),
        socket,
        group: m.value("group").map(str::to_string),
        storage: m.value("storage-driver").map(str::to_string),
        live_restore: m.flag("live-restore"),
        preload_run: m.value("preload-run").map(std::path::PathBuf::from).or_else(|| {
            let p = std::path::Path::new("/etc/berth/preload-run.conf");
            p.exists().then(|| p.to_path_buf())
        }),
    })?;
    Ok(0)
}

fn status_text(root: &std::path::Path, r: &Record) -> String {
    let now = timefmt::now();
    match &r.status {
        Status::Created => "Created".into(),
        Status::Running { started, .. } => {
            let up = format!("Up {}", human_ago(*started).trim_end_matches(" ago"));
            match crate::agent::health::read(root, &r.id).as_ref().and_then(|h| h["Status"].as_str().map(str::to_string)) {
                Some(s) if s == "starting" => format!("{up} (health: starting)"),
                Some(s) => format!("{up} ({s})"),
                None => up,
            }
        }
        Status::Exited { code, finished, .. } => format!("Exited ({code}) {}", human_ago((*finished).min(now))),
    }
}

fn state_name(r: &Record) -> &'static str {
    match r.status {
        Status::Created => "created",
        Status::Running { .. } => "running",
        Status::Exited { .. } => "exited",
    }
}

fn matches_filter(r: &Record, f: &str) -> Result<bool, CliError> {
    let (k, v) = f.split_once('=').ok_or_else(|| op_err(format!("bad format of filter (expected name=value): {f}")))?;
    Ok(match k {
        "id" => r.id.starts_with(v),
        "name" => r.name.contains(v),
        "status" => state_name(r) == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => r.labels.get(lk).is_some_and(|x| x == lv),
            None => r.labels.contains_key(v),
        },
        other => return Err(op_err(format!("invalid filter '{other}' (supported: id, name, status, label)"))),
    })
}

fn command_text(r: &Record, trunc: bool) -> String {
    let c = r.spec.args.join(" ");
    let c = if trunc && c.chars().count() > 20 { format!("{}…", c.chars().take(19).collect::<String>()) } else { c };
    format!("\"{c}\"")
}

pub fn ps(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let (recs, bad) = record::list(&ctx.root);
    for b in bad {
        eprintln!("WARNING: {b}");
    }
    let filters = m.values("filter");
    let mut shown = Vec::new();
    for r in &recs {
        if !m.flag("all") && !r.is_running() && filters.iter().all(|f| !f.starts_with("status=")) {
            continue;
        }
        let mut ok = true;
        for f in &filters {
            ok &= matches_filter(r, f)?;
        }
        if ok {
            shown.push(r);
        }
    }
    let no_trunc = m.flag("no-trunc");
    let id = |r: &Record| if no_trunc { r.id.clone() } else { r.short_id().to_string() };
    let mut out = io::stdout().lock();
    let w = |e: io::Error| CliError::Op(Error::io("write output", e));
    if m.flag("quiet") {
        for r in shown {
            writeln!(out, "{}", id(r)).map_err(w)?;
        }
        return Ok(0);
    }
    match fmt {
        Format::Table => {
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|r| {
                    vec![
                        id(r),
                        r.image.clone(),
                        command_text(r, !no_trunc),
                        human_ago(r.created),
                        status_text(&ctx.root, r),
                        String::new(),
                        r.name.clone(),
                    ]
                })
                .collect();
            table(&mut out, &["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &rows).map_err(w)?;
        }
        Format::Json | Format::Template(_) => {
            for r in shown {
                let v = json!({
                    "ID": id(r), "Image": r.image, "Command": command_text(r, !no_trunc), "CreatedAt": docker_time(r.created),
                    "RunningFor": human_ago(r.created), "Status": status_text(&ctx.root, r), "State": state_name(r), "Names": r.name, "Ports": "",
                    "Labels": r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                });
                let line = match &fmt {
                    Format::Template(t) => render(t, &v)?,
                    _ => v.to_string(),
                };
                writeln!(out, "{line}").map_err(w)?;
            }
        }
    }
    Ok(0)
}

/// The inspect document of a container, close to Docker's.
pub fn container_json(ctx: &Ctx, r: &Record) -> Value {
    let (running, pid, code, started, finished, oom, error) = match &r.status {
        Status::Created => (false, 0, 0, 0, 0, false, String::new()),
        Status::Running { pid, started, .. } => (true, *pid, 0, *started, 0, false, String::new()),
        Status::Exited { code, started, finished, oom_killed, error } => (false, 0, *code, *started, *finished, *oom_killed, error.clone()),
    };
    let t = |s: i64| if s == 0 { "0001-01-01T00:00:00Z".to_string() } else { timefmt::rfc3339(s) };
    let s = &r.spec;
    let net = match &s.net {
        Net::Host => "host".to_string(),
        Net::None => "none".to_string(),
        Net::Container(c) => format!("container:{c}"),
        Net::Bridge(n) => n.clone(),
    };
    let mounts: Vec<Value> = s
        .mounts
        .iter()
        .map(|m| match m {
            Mount::Bind { source, target, readonly } => json!({"Type": "bind", "Source": source, "Destination": target, "RW": !readonly}),
            Mount::Tmpfs { target, options } => json!({"Type": "tmpfs", "Destination": target, "Options": options}),
        })
        .collect();
    json!({
        "Id": r.id,
        "Created": t(r.created),
        "Path": s.args.first().cloned().unwrap_or_default(),
        "Args": s.args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": state_name(r), "Running": running, "Paused": false, "Restarting": false, "OOMKilled": oom, "Dead": false,
            "Pid": pid, "ExitCode": code, "Error": error, "StartedAt": t(started), "FinishedAt": t(finished),
            "Health": if r.health.is_some() { crate::agent::health::read(&ctx.root, &r.id).unwrap_or(Value::Null) } else { Value::Null },
        },
        "Image": r.image_id.to_string(),
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "LogPath": record::dir(&ctx.root, &r.id).join("container.log"),
        "HostConfig": {
            "Binds": r.binds, "NetworkMode": net, "AutoRemove": r.auto_remove, "Privileged": s.privileged, "ReadonlyRootfs": s.read_only,
            "CapAdd": r.cap_add, "CapDrop": r.cap_drop, "Init": s.init,
            "Devices": s.devices.iter().map(|n| json!({"PathOnHost": n.host, "PathInContainer": n.path, "CgroupPermissions": n.access.to_string()})).collect::<Vec<_>>(),
            "DeviceCgroupRules": s.device_watch.iter().filter_map(|w| match w { berth_device::hotplug::Watch::Rule(r) => Some(r.to_string()), _ => None }).collect::<Vec<_>>(),
            "RestartPolicy": {"Name": r.restart.name().split(':').next().unwrap_or("no"), "MaximumRetryCount": match r.restart { berth_runtime::container::record::Restart::OnFailure(n) => n, _ => 0 }},
            "Tmpfs": r.tmpfs.iter().map(|t| { let (p, o) = t.split_once(':').unwrap_or((t, "")); (p.to_string(), json!(o)) }).collect::<serde_json::Map<_, _>>(),
            "Memory": s.resources.memory.unwrap_or(0), "MemorySwap": s.resources.memory_swap.unwrap_or(0),
            "MemoryReservation": s.resources.memory_reservation.unwrap_or(0), "PidsLimit": s.resources.pids_limit,
            "NanoCpus": s.resources.cpus.map_or(0, |c| (c * 1e9) as i64), "CpuShares": s.resources.cpu_shares.unwrap_or(0),
            "SecurityOpt": if s.no_new_privs { vec!["no-new-privileges"] } else { vec![] },
            "Ulimits": s.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
            "LogConfig": {"Type": if r.log.enabled { "local" } else { "none" }, "Config": {"max-size": r.log.max_size.to_string(), "max-file": r.log.max_files.to_string()}},
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": s.hostname, "User": s.user, "Env": s.env, "Cmd": r.cmd, "Entrypoint": r.entrypoint, "Image": r.image,
            "WorkingDir": s.cwd, "Labels": r.labels, "Tty": s.tty, "OpenStdin": r.attach_stdin,
            "StopSignal": signal::name(r.stop_signal), "StopTimeout": r.stop_timeout,
            "Healthcheck": r.health.as_ref().map(|h| json!({"Test": h.test, "Interval": h.interval_ms * 1_000_000, "Timeout": h.timeout_ms * 1_000_000, "Retries": h.retries, "StartPeriod": h.start_period_ms * 1_000_000})),
        },
    })
}

pub fn inspect(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let want = m.value("type");
    if let Some(t) = want {
        if t != "container" && t != "image" {
            return Err(op_err(format!("\"{t}\" is not a valid value for --type")));
        }
    }
    let (recs, _) = record::list(&ctx.root);
    let store = ctx.store()?;
    let db = store.db()?;
    let mut docs = Vec::new();
    let mut code = 0;
    for name in m.args() {
        let c = if want != Some("image") { record::find(&recs, name).ok() } else { None };
        if let Some(r) = c {
            docs.push(container_json(ctx, r));
            continue;
        }
        let img = if want != Some("container") { Store::find(&db, name).ok() } else { None };
        match img {
            Some((i, _)) => docs.push(super::image::inspect_json(&store, i)?),
            None => {
                eprintln!("Error: No such object: {name}");
                code = 1;
            }
        }
    }
    super::image::print_docs(&fmt, docs)?;
    Ok(code)
}
