//! What the agent does for each request on its socket: one function per request, and the one
//! place where a daemon error becomes the kind of failure the CLI exits with.

use std::os::fd::OwnedFd;
use std::time::Duration;

use berth_proto::error::Kind;
use berth_proto::socket::{ExecOptions, Request, Response, RunOptions};
use berth_runtime::container::spawn::StartError;
use berth_runtime::Error;

use super::{Shared, Updates};

/// A lookup or create error: a missing container is a failed operation (1), anything else means
/// berth could not act (125), as Docker's daemon errors.
fn err(e: &Error) -> Response {
    let kind = match e.kind() {
        berth_runtime::Kind::NotFound => Kind::Failed,
        _ => Kind::Usage,
    };
    Response::Error { kind, msg: e.to_string() }
}

/// An operation on an existing container that failed (1).
fn failed(e: &Error) -> Response {
    Response::Error { kind: Kind::Failed, msg: e.to_string() }
}

/// A container or exec that could not start: the runtime's 126/127 for the command, else 125.
fn not_started(e: StartError) -> Response {
    let kind = match e.code {
        126 => Kind::CannotInvoke,
        127 => Kind::CommandNotFound,
        _ => Kind::Usage,
    };
    Response::Error { kind, msg: e.msg }
}

/// The container's id; the supervisor's borrow ends here, before the caller borrows it again.
fn find(sup: &Shared, key: &str) -> berth_runtime::Result<String> {
    sup.borrow().find(key)
}

pub(crate) async fn wait_exit(sup: &Shared, id: &str) -> i32 {
    let w = sup.borrow_mut().wait(id);
    match w {
        Ok(code) => code,
        Err(rx) => rx.await.unwrap_or(-1),
    }
}

/// Docker's stop: the stop signal, then SIGKILL after the timeout; the policy leaves it stopped.
pub(crate) async fn stop(sup: &Shared, id: &str, timeout: Option<u32>) {
    sup.borrow_mut().user_stop(id);
    let (sig, t) = match sup.borrow().get(id) {
        Some(r) if r.is_running() => (r.stop_signal, timeout.unwrap_or(r.stop_timeout)),
        _ => return,
    };
    sup.borrow_mut().emit(id, "stop", &[]);
    let _ = sup.borrow().kill(id, sig);
    let w = sup.borrow_mut().wait(id);
    if let Err(rx) = w {
        if tokio::time::timeout(Duration::from_secs(u64::from(t)), rx).await.is_err() {
            let _ = sup.borrow().kill(id, libc::SIGKILL);
            wait_exit(sup, id).await;
        }
    }
}

pub(super) async fn handle(req: Request, sup: &Shared, upd: &Updates, fds: &mut Vec<OwnedFd>) -> Response {
    match req {
        Request::Deployment => Response::Text(upd.borrow().state_text()),
        Request::Rollback { name } => rollback(sup, upd, &name).await,
        Request::Ping => Response::Pong { pid: std::process::id() },
        // Streams are served by `socket::connection` itself.
        Request::Events { .. } => Response::Error { kind: Kind::Failed, msg: "events are streamed on their own connection".into() },
        Request::Create(o) => create(sup, &o),
        Request::Start { id, attach, wait } => start(sup, &id, attach, wait, fds).await,
        Request::Wait { id } => match find(sup, &id) {
            Ok(id) => Response::Exited { code: wait_exit(sup, &id).await },
            Err(e) => err(&e),
        },
        Request::Kill { id, signal } => kill(sup, &id, signal),
        Request::Exec(o) => exec(sup, *o, fds).await,
        Request::Pause { id, frozen } => match find(sup, &id).and_then(|id| sup.borrow_mut().pause(&id, frozen)) {
            Ok(()) => Response::Done,
            Err(e) => failed(&e),
        },
        Request::Rename { id, name } => match find(sup, &id).and_then(|id| sup.borrow_mut().rename(&id, &name)) {
            Ok(()) => Response::Done,
            Err(e) => failed(&e),
        },
        Request::Update { id, resources, restart } => {
            match find(sup, &id).and_then(|id| sup.borrow_mut().update(&id, &resources, restart.as_deref())) {
                Ok(warnings) => Response::Created { id: String::new(), warnings },
                Err(e) => failed(&e),
            }
        }
        Request::Restart { id, timeout } => restart(sup, &id, timeout).await,
        Request::Stop { id, timeout } => {
            let id = match find(sup, &id) {
                Ok(i) => i,
                Err(e) => return err(&e),
            };
            stop(sup, &id, timeout).await;
            Response::Done
        }
        Request::Remove { id, force, volumes } => remove(sup, &id, force, volumes).await,
        Request::Network(r) => super::networks::handle(sup, r),
    }
}

async fn rollback(sup: &Shared, upd: &Updates, name: &str) -> Response {
    let started = upd.borrow_mut().local_rollback(name);
    match started {
        Ok((_, rx)) => {
            crate::daemon::spawn(super::update::apply::drive(upd.clone(), sup.clone()));
            match rx.await {
                Ok(o) => Response::Text(serde_json::to_string(&o).unwrap_or_default()),
                Err(_) => Response::Error { kind: Kind::Failed, msg: "the rollback was interrupted".into() },
            }
        }
        Err(e) => err(&e),
    }
}

fn create(sup: &Shared, o: &RunOptions) -> Response {
    match sup.borrow_mut().create(o) {
        Ok((id, warnings)) => Response::Created { id, warnings },
        Err(e) => err(&e),
    }
}

async fn start(sup: &Shared, id: &str, attach: bool, wait: bool, fds: &mut Vec<OwnedFd>) -> Response {
    let id = match find(sup, id) {
        Ok(i) => i,
        Err(e) => return err(&e),
    };
    let stdio = if attach { Some(std::mem::take(fds)) } else { None };
    let waiter = if wait { Some(sup.borrow_mut().waiter(&id)) } else { None };
    let res = sup.borrow_mut().start(&id, stdio);
    match (res, waiter) {
        (Err(e), _) => not_started(e),
        (Ok(_), None) => Response::Done,
        (Ok(_), Some(rx)) => Response::Exited { code: rx.await.unwrap_or(-1) },
    }
}

fn kill(sup: &Shared, id: &str, signal: i32) -> Response {
    let res = find(sup, id).and_then(|id| {
        sup.borrow().kill(&id, signal)?;
        sup.borrow_mut().user_stop(&id);
        sup.borrow_mut().emit(&id, "kill", &[("signal", signal.to_string())]);
        Ok(())
    });
    match res {
        Ok(()) => Response::Done,
        Err(e) => failed(&e),
    }
}

async fn exec(sup: &Shared, mut o: ExecOptions, fds: &mut Vec<OwnedFd>) -> Response {
    o.id = match find(sup, &o.id) {
        Ok(i) => i,
        Err(e) => return err(&e),
    };
    let stdio = if o.attach { Some(std::mem::take(fds)) } else { None };
    let res = sup.borrow_mut().exec(&o, stdio, o.attach);
    match res {
        Err(e) => not_started(e),
        Ok(None) => Response::Done,
        Ok(Some(rx)) => Response::Exited { code: rx.await.unwrap_or(-1) },
    }
}

async fn restart(sup: &Shared, id: &str, timeout: Option<u32>) -> Response {
    let id = match find(sup, id) {
        Ok(i) => i,
        Err(e) => return err(&e),
    };
    stop(sup, &id, timeout).await;
    sup.borrow_mut().emit(&id, "restart", &[]);
    let res = sup.borrow_mut().start(&id, None);
    match res {
        Ok(_) => Response::Done,
        Err(e) => not_started(e),
    }
}

async fn remove(sup: &Shared, id: &str, force: bool, volumes: bool) -> Response {
    let id = match find(sup, id) {
        Ok(i) => i,
        Err(e) => return err(&e),
    };
    let running = sup.borrow().get(&id).is_some_and(|r| r.is_running());
    if running {
        if !force {
            return Response::Error {
                kind: Kind::Failed,
                msg: format!("You cannot remove a running container {id}. Stop the container before attempting removal or force remove"),
            };
        }
        let _ = sup.borrow().kill(&id, libc::SIGKILL);
        wait_exit(sup, &id).await;
    }
    // --rm may already have removed it when it exited.
    if sup.borrow().get(&id).is_none() {
        return Response::Done;
    }
    let res = sup.borrow_mut().remove_files(&id, volumes);
    match res {
        Ok(()) => Response::Done,
        Err(e) => failed(&e),
    }
}
