//! Changing existing containers through the agent: stop, restart, kill, rm, wait, rename,
//! update (prune: `prune.rs`).

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_proto::run::{decimal, num as parse_num, size, CPUS, CPU_SHARES, MEMORY, MEMORY_RESERVATION, MEMORY_SWAP, PIDS_LIMIT};
use berth_proto::signal;
use berth_proto::socket::{Request, Response};

use super::client::{check, each, Client};
use super::{CliError, Ctx};

const STOP_OPTS: &[Opt] = &[
    opt("time", Some('t'), Some("int"), "Seconds to wait before killing the container"),
    opt("timeout", None, Some("int"), "Same as --time"),
];

pub const STOP: Cmd = cmd("berth stop", "[OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers", STOP_OPTS, 1, None);

const KILL_OPTS: &[Opt] = &[opt("signal", Some('s'), Some("string"), "Signal to send to the container (default \"KILL\")")];

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

pub const RESTART: Cmd = Cmd { path: "berth restart", about: "Restart one or more containers", ..STOP };

pub const KILL: Cmd = cmd("berth kill", "[OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers", KILL_OPTS, 1, None);

const RM_OPTS: &[Opt] = &[
    opt("force", Some('f'), None, "Force the removal of a running container (uses SIGKILL)"),
    opt("volumes", Some('v'), None, "Remove anonymous volumes associated with the container"),
];

pub const RM: Cmd = cmd("berth rm", "[OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers", RM_OPTS, 1, None);

pub const WAIT: Cmd =
    cmd("berth wait", "CONTAINER [CONTAINER...]", "Block until one or more containers stop, then print their exit codes", &[], 1, None);

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

/// Docker's `update`: a bad size or number is a flag error (125); a container that is missing or
/// refuses the change is 1.
pub fn update(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let flag = super::usage_exit;
    let resources = berth_runtime::cgroup::Resources {
        memory: size(m, "memory").map_err(flag)?,
        memory_swap: size(m, "memory-swap").map_err(flag)?,
        memory_reservation: size(m, "memory-reservation").map_err(flag)?,
        pids_limit: parse_num(m, "pids-limit").map_err(flag)?,
        cpus: decimal(m, "cpus").map_err(flag)?,
        cpu_shares: parse_num(m, "cpu-shares").map_err(flag)?,
        devices: Default::default(),
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
