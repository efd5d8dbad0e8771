//! `run`, `create`, `start` and `exec`: what they ask the agent, and how the CLI stays attached.
//! The flag grammar of `run`/`create` is `berth_proto::run`.

use std::os::fd::AsRawFd;

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_proto::error::{exit_code, Kind};
use berth_proto::run::{env_entry, run_options};
use berth_proto::socket::{Request, Response, RunOptions};
use berth_runtime::Error;

use super::client::{check, each, Client};
use super::relay::{attach_and_wait, relay_tty};
use super::{op_err, CliError, Ctx};

pub use berth_proto::run::{CREATE, RUN};

const START_OPTS: &[Opt] = &[
    opt("attach", Some('a'), None, "Attach STDOUT/STDERR and forward signals"),
    opt("interactive", Some('i'), None, "Attach container's STDIN"),
];

pub const START: Cmd =
    cmd("berth start", "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers", START_OPTS, 1, None);

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

fn create_on(client: &mut Client, o: RunOptions) -> Result<String, CliError> {
    match client.call(&Request::Create(Box::new(o)))? {
        // Docker: run/create itself failing is 125, whatever the reason.
        Response::Error { msg, .. } => {
            eprintln!("Error: {msg}");
            Err(CliError::Exit(exit_code(Kind::Usage)))
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
            CliError::Exit(exit_code(Kind::Usage))
        }
        other => other,
    }
}

pub fn run(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (o, detach) = run_options(m).map_err(run_err)?;
    let (interactive, auto_remove, tty) = (o.interactive, o.auto_remove, o.tty);
    let mut c = Client::connect(ctx).map_err(run_err)?;
    let id = create_on(&mut c, o).map_err(run_err)?;
    if detach {
        match c.call(&Request::Start { id: id.clone(), attach: false, wait: false }).map_err(run_err)? {
            Response::Error { kind, msg } => {
                eprintln!("Error: {msg}");
                // A container that could not start leaves nothing behind.
                let _ = c.call(&Request::Remove { id, force: true, volumes: true });
                return Err(CliError::Exit(exit_code(kind)));
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

pub fn start(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    if m.flag("attach") {
        let [name] = m.args() else { return Err(op_err("you cannot start and attach multiple containers at once")) };
        let mut c = Client::connect(ctx)?;
        return attach_and_wait(ctx, &mut c, name, m.flag("interactive"), false);
    }
    each(ctx, m, |id| Request::Start { id, attach: false, wait: false })
}

pub fn exec(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (detach, stdin, tty) = (m.flag("detach"), m.flag("interactive"), m.flag("tty"));
    let o = berth_proto::socket::ExecOptions {
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
