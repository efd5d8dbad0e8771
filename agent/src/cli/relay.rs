//! Staying attached to a container: its stdio passed to the agent, or a pty relayed to this
//! terminal, and signals forwarded while the CLI waits.

use std::os::fd::{AsRawFd, RawFd};

use berth_proto::socket::{Request, Response};
use berth_runtime::Error;

use super::client::{check, Client};
use super::{op_err, CliError, Ctx};

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

pub fn attach_and_wait(ctx: &Ctx, client: &mut Client, id: &str, stdin: bool, tty: bool) -> Result<i32, CliError> {
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
pub fn relay_tty(mut c: Client, req: &Request, stdin: bool) -> Result<Response, CliError> {
    let pty = super::tty::open()?;
    super::tty::copy_size(&pty.master);
    let s = pty.slave.as_raw_fd();
    c.send(req, &[s, s, s])?;
    // The descriptor in flight keeps the slave open for the agent; ours must close so that the
    // master reads end when the process does.
    drop(pty.slave);
    let answer = std::thread::spawn(move || c.recv());
    let raw = if crate::term::output::is_tty(0) { Some(super::tty::Raw::enter()) } else { None };
    super::tty::pump(&pty.master, stdin);
    drop(raw);
    answer.join().map_err(|_| op_err("lost the agent's answer"))?
}

/// `-t`: the container's stdio is a pty the CLI relays.
pub fn attach_tty(ctx: &Ctx, id: &str, stdin: bool) -> Result<i32, CliError> {
    let r = relay_tty(Client::connect(ctx)?, &Request::Start { id: id.to_string(), attach: true, wait: true }, stdin)?;
    match check(r)? {
        Response::Exited { code } => Ok(code),
        other => Err(op_err(format!("unexpected answer from the agent: {other:?}"))),
    }
}
