//! `berth agent`: the daemon. One tokio current-thread runtime (no worker or blocking-pool
//! threads, so forking containers from it is safe), one local socket, one lock per root.

pub mod create;
pub mod devices;
pub mod dns;
pub mod health;
pub mod notify;
pub mod supervisor;

use std::cell::RefCell;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};

use berth_runtime::fsutil::atomic_write;
use berth_runtime::{Error, Result};

use crate::proto::{self, Request, Response};
use supervisor::Supervisor;

pub type Shared = Rc<RefCell<Supervisor>>;
pub type Updates = Rc<RefCell<crate::update::manager::Manager>>;

pub struct Options {
    pub root: PathBuf,
    pub socket: PathBuf,
    /// Group that may use the socket (mode 0660).
    pub group: Option<String>,
    /// `overlay` or `copy`; by default overlay where the kernel has it.
    pub storage: Option<String>,
    /// Leave containers running when the agent stops (Docker's --live-restore); a new agent
    /// re-adopts them.
    pub live_restore: bool,
    /// `run` argument lines of containers to create and start when missing (a freshly flashed
    /// board's applications, written by meta-berth's BERTH_PRELOAD_RUN).
    pub preload_run: Option<PathBuf>,
    /// Update settings (device id, keys) and, when a broker is configured, the MQTT link.
    pub updates: crate::update::manager::Settings,
    pub link: Option<crate::update::session::Link>,
}

/// Creates and starts each preload container that does not exist yet (by its --name).
fn preload(sup: &Shared, path: &Path) {
    let Ok(text) = fs::read_to_string(path) else { return };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let res = (|| -> std::result::Result<Option<String>, String> {
            let words = crate::cli::words::shell_words(line).map_err(|e| e.to_string())?;
            let o = crate::cli::container::parse_run_words(&words)?;
            let Some(name) = o.name.clone() else {
                return Err("a preload line needs --name (so it starts once, not at every boot)".into());
            };
            if sup.borrow().find(&name).is_ok() {
                return Ok(None);
            }
            let (id, _) = sup.borrow_mut().create(&o).map_err(|e| e.to_string())?;
            sup.borrow_mut().start(&id, None).map_err(|e| e.msg)?;
            Ok(Some(name))
        })();
        match res {
            Ok(Some(name)) => crate::info!("preload: started {name}"),
            Ok(None) => {}
            Err(e) => crate::warn!("preload {}: {line:?}: {e}", path.display()),
        }
    }
}

/// Holds `<root>/agent.lock` for the agent's lifetime: a second agent on the same root is refused.
fn lock_root(root: &Path) -> Result<fs::File> {
    fs::create_dir_all(root).map_err(|e| Error::io(format!("create {}", root.display()), e))?;
    let path = root.join("agent.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a descriptor we own; released when the file is closed at exit.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = fs::read_to_string(root.join("agent.pid")).unwrap_or_default();
        return Err(Error::conflict(format!("another berth agent is already running on {} (pid {})", root.display(), pid.trim())));
    }
    Ok(f)
}

fn group_id(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let text = fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(2).and_then(|g| g.parse().ok()))
        .ok_or_else(|| Error::not_found(format!("group {name} not found")))
}

fn bind(socket: &Path, group: Option<&str>) -> Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(Error::conflict(format!("socket {} is in use by another agent", socket.display())));
        }
        let _ = fs::remove_file(socket);
    }
    let l = std::os::unix::net::UnixListener::bind(socket).map_err(|e| Error::io(format!("listen on {}", socket.display()), e))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o660)).map_err(|e| Error::io(format!("chmod {}", socket.display()), e))?;
    if let Some(g) = group {
        std::os::unix::fs::chown(socket, Some(0), Some(group_id(g)?)).map_err(|e| Error::io(format!("chown {}", socket.display()), e))?;
    }
    l.set_nonblocking(true).map_err(|e| Error::io("socket", e))?;
    Ok(l)
}

pub fn run(o: &Options) -> Result<()> {
    let _lock = lock_root(&o.root)?;
    // Containers are grandchildren (forked by an intermediate that exits): as subreaper the agent
    // becomes their parent and can reap them.
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::io("become child subreaper", io::Error::last_os_error()));
    }
    let copy = match o.storage.as_deref() {
        None => !berth_runtime::container::copyfs::overlay_supported(),
        Some("overlay") if berth_runtime::container::copyfs::overlay_supported() => false,
        Some("overlay") => return Err(Error::invalid("--storage-driver overlay: this kernel has no overlayfs")),
        Some("copy") => true,
        Some(other) => return Err(Error::invalid(format!("unknown storage driver {other:?} (overlay or copy)"))),
    };
    // The choice is recorded for `berth info`, which runs without talking to the agent.
    atomic_write(&o.root.join("storage-driver"), if copy { &b"copy\n"[..] } else { &b"overlay\n"[..] })?;
    let sup = Rc::new(RefCell::new(Supervisor::new(&o.root, copy)?));
    atomic_write(&o.root.join("agent.pid"), format!("{}\n", std::process::id()).as_bytes())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::io("start runtime", e))?;
    let local = tokio::task::LocalSet::new();
    if let Some(p) = &o.preload_run {
        let _guard = rt.enter();
        preload(&sup, p);
    }
    let res = local.block_on(&rt, serve(o, sup.clone()));
    let _ = fs::remove_file(&o.socket);
    let _ = fs::remove_file(o.root.join("agent.pid"));
    res
}

async fn serve(o: &Options, sup: Shared) -> Result<()> {
    // Signal handlers first, then the socket: whoever can connect can also stop us cleanly.
    let mut chld = signal(SignalKind::child()).map_err(|e| Error::io("SIGCHLD handler", e))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::io("SIGTERM handler", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::io("SIGINT handler", e))?;
    let listener = UnixListener::from_std(bind(&o.socket, o.group.as_deref())?).map_err(|e| Error::io("socket", e))?;
    let upd: Updates = Rc::new(RefCell::new(crate::update::manager::Manager::open(&o.root, o.updates.clone(), sup.clone())?));
    if upd.borrow().journal.active.is_some() {
        // An update was interrupted (power cut, kill -9): finish what it was doing.
        crate::info!("resuming the interrupted update");
        tokio::task::spawn_local(crate::update::apply::drive(upd.clone(), sup.clone()));
    }
    if let Some(link) = o.link.clone() {
        tokio::task::spawn_local(crate::update::session::run(link, upd.clone(), sup.clone()));
    }
    // Monitors adopted from an earlier agent are not our children: look at them once a second.
    let mut adopted = tokio::time::interval(Duration::from_secs(1));
    let wd_every = notify::watchdog_interval();
    let mut watchdog = tokio::time::interval(wd_every.unwrap_or(Duration::from_secs(3600)));
    let uevents = supervisor::hotplug::monitor();
    notify::ready();
    crate::info!("serving on {} for {}", o.socket.display(), sup.borrow().root.display());
    loop {
        tokio::select! {
            c = listener.accept() => match c {
                Ok((stream, _)) => { tokio::task::spawn_local(connection(stream, sup.clone(), upd.clone())); }
                Err(e) => crate::warn!("accept: {e}"),
            },
            _ = chld.recv() => reap(&sup),
            _ = adopted.tick(), if sup.borrow().adopted_count() > 0 => sup.borrow_mut().check_adopted(),
            _ = restart_timer(&sup) => sup.borrow_mut().restart_due(),
            _ = health_timer(&sup) => {
                let due = sup.borrow_mut().due_checks();
                for (id, cmd, timeout) in due {
                    tokio::task::spawn_local(health::run(sup.clone(), id, cmd, timeout));
                }
            }
            evs = supervisor::hotplug::next(uevents.as_ref()) => for ev in &evs { sup.borrow_mut().hotplug(ev) },
            _ = watchdog.tick(), if wd_every.is_some() => notify::watchdog(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify::stopping();
    if !o.live_restore {
        shutdown(&sup).await;
    }
    Ok(())
}

/// Sleeps until the next policy restart is due (forever if none).
async fn restart_timer(sup: &Shared) {
    let next = sup.borrow().next_restart();
    sleep_until_or_recheck(next).await;
}

/// Sleeps until `t`, but never more than 250 ms: work scheduled by a connection task (a new
/// container's first health check) is then picked up without a wake-up channel per timer.
async fn sleep_until_or_recheck(t: Option<std::time::Instant>) {
    let cap = tokio::time::Instant::now() + Duration::from_millis(250);
    let at = t.map_or(cap, |t| tokio::time::Instant::from_std(t).min(cap));
    tokio::time::sleep_until(at).await;
}

/// Sleeps until the next health check is due (forever if none).
async fn health_timer(sup: &Shared) {
    let next = sup.borrow().next_check();
    sleep_until_or_recheck(next).await;
}

fn reap(sup: &Shared) {
    loop {
        let mut status = 0;
        // SAFETY: non-blocking wait for any child; `status` is a plain int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
        sup.borrow_mut().reaped(pid, status);
    }
}

/// Stops every running container as `stop` would: its stop signal, then SIGKILL once its own
/// stop timeout has passed.
async fn shutdown(sup: &Shared) {
    let running = sup.borrow().running();
    let mut chld = signal(SignalKind::child()).ok();
    let now = tokio::time::Instant::now();
    let mut deadlines: Vec<(String, tokio::time::Instant)> = Vec::new();
    for (id, _, sig, timeout) in &running {
        let _ = sup.borrow().kill(id, *sig);
        deadlines.push((id.clone(), now + Duration::from_secs(u64::from(*timeout))));
    }
    loop {
        reap(sup);
        sup.borrow_mut().check_adopted();
        let still: Vec<String> = sup.borrow().running().into_iter().map(|r| r.0).collect();
        if still.is_empty() {
            break;
        }
        let t = tokio::time::Instant::now();
        for (id, d) in &deadlines {
            if *d <= t && still.contains(id) {
                let _ = sup.borrow().kill(id, libc::SIGKILL);
            }
        }
        match &mut chld {
            Some(c) => {
                let _ = tokio::time::timeout(Duration::from_millis(100), c.recv()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn err(e: &Error) -> Response {
    let code = match e.kind() {
        berth_runtime::Kind::NotFound => 1,
        _ => 125,
    };
    Response::Error { code, msg: e.to_string() }
}

async fn connection(stream: UnixStream, sup: Shared, upd: Updates) {
    let mut buf = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut stream = stream;
    loop {
        let frame = match proto::take_frame(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                let raw = stream.as_raw_fd();
                let got = stream.async_io(Interest::READABLE, || proto::recv_with_fds(raw, &mut chunk)).await;
                match got {
                    Ok((0, _)) | Err(_) => return,
                    Ok((n, f)) => {
                        buf.extend_from_slice(&chunk[..n]);
                        fds.extend(f);
                        continue;
                    }
                }
            }
            Err(_) => return,
        };
        let resp = match proto::decode::<Request>(&frame) {
            Ok(Request::Events { since, until }) => {
                stream_events(&mut stream, &sup, since, until).await;
                return;
            }
            Ok(req) => {
                crate::debug!("request {req:?}");
                handle(req, &sup, &upd, &mut fds).await
            }
            Err(e) => Response::Error { code: 125, msg: e.to_string() },
        };
        let Ok(out) = proto::encode(&resp) else { return };
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// `events`: the recent ones asked for, then live ones, until `until` or the client leaves.
async fn stream_events(stream: &mut UnixStream, sup: &Shared, since: Option<i64>, until: Option<i64>) {
    let mut rx = sup.borrow().event_tx.subscribe();
    let past = since.map(|s| sup.borrow().events_since(s)).unwrap_or_default();
    let send = |e: proto::Event| proto::encode(&Response::Event(Box::new(e)));
    for e in past {
        if until.is_some_and(|u| e.secs > u) {
            return;
        }
        let Ok(out) = send(e) else { return };
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
    if until.is_some_and(|u| u <= berth_runtime::timefmt::now()) {
        return;
    }
    let deadline = until.map(|u| tokio::time::Instant::now() + Duration::from_secs((u - berth_runtime::timefmt::now()).max(0) as u64));
    loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            }
        };
        match next.await {
            Some(Ok(e)) => {
                let Ok(out) = send(e) else { return };
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            _ => return,
        }
    }
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

async fn handle(req: Request, sup: &Shared, upd: &Updates, fds: &mut Vec<OwnedFd>) -> Response {
    let find = |key: &str| sup.borrow().find(key);
    match req {
        Request::Deployment => Response::Text(upd.borrow().state().to_string()),
        Request::Rollback { name } => {
            let started = upd.borrow_mut().local_rollback(&name);
            match started {
                Ok((_, rx)) => {
                    tokio::task::spawn_local(crate::update::apply::drive(upd.clone(), sup.clone()));
                    match rx.await {
                        Ok(o) => Response::Text(serde_json::to_string(&o).unwrap_or_default()),
                        Err(_) => Response::Error { code: 1, msg: "the rollback was interrupted".into() },
                    }
                }
                Err(e) => err(&e),
            }
        }
        Request::Ping => Response::Pong { pid: std::process::id() },
        // Streams are served by `connection` itself.
        Request::Events { .. } => Response::Error { code: 1, msg: "events are streamed on their own connection".into() },
        Request::Create(o) => match sup.borrow_mut().create(&o) {
            Ok((id, warnings)) => Response::Created { id, warnings },
            Err(e) => err(&e),
        },
        Request::Start { id, attach, wait } => {
            let id = match find(&id) {
                Ok(i) => i,
                Err(e) => return err(&e),
            };
            let stdio = if attach { Some(std::mem::take(fds)) } else { None };
            let waiter = if wait { Some(sup.borrow_mut().waiter(&id)) } else { None };
            let res = sup.borrow_mut().start(&id, stdio);
            match (res, waiter) {
                (Err(e), _) => Response::Error { code: e.code, msg: e.msg },
                (Ok(_), None) => Response::Done,
                (Ok(_), Some(rx)) => Response::Exited { code: rx.await.unwrap_or(-1) },
            }
        }
        Request::Wait { id } => match find(&id) {
            Ok(id) => Response::Exited { code: wait_exit(sup, &id).await },
            Err(e) => err(&e),
        },
        Request::Kill { id, signal } => match find(&id).and_then(|id| {
            sup.borrow().kill(&id, signal)?;
            sup.borrow_mut().user_stop(&id);
            sup.borrow_mut().emit(&id, "kill", &[("signal", signal.to_string())]);
            Ok(())
        }) {
            Ok(()) => Response::Done,
            Err(e) => Response::Error { code: 1, msg: e.to_string() },
        },
        Request::Exec(mut o) => {
            o.id = match find(&o.id) {
                Ok(i) => i,
                Err(e) => return err(&e),
            };
            let stdio = if o.attach { Some(std::mem::take(fds)) } else { None };
            let res = sup.borrow_mut().exec(&o, stdio, o.attach);
            match res {
                Err(e) => Response::Error { code: e.code, msg: e.msg },
                Ok(None) => Response::Done,
                Ok(Some(rx)) => Response::Exited { code: rx.await.unwrap_or(-1) },
            }
        }
        Request::Rename { id, name } => match find(&id).and_then(|id| sup.borrow_mut().rename(&id, &name)) {
            Ok(()) => Response::Done,
            Err(e) => Response::Error { code: 1, msg: e.to_string() },
        },
        Request::Update { id, resources, restart } => {
            match find(&id).and_then(|id| sup.borrow_mut().update(&id, &resources, restart.as_deref())) {
                Ok(warnings) => Response::Created { id: String::new(), warnings },
                Err(e) => Response::Error { code: 1, msg: e.to_string() },
            }
        }
        Request::Restart { id, timeout } => {
            let id = match find(&id) {
                Ok(i) => i,
                Err(e) => return err(&e),
            };
            stop(sup, &id, timeout).await;
            sup.borrow_mut().emit(&id, "restart", &[]);
            let res = sup.borrow_mut().start(&id, None);
            match res {
                Ok(_) => Response::Done,
                Err(e) => Response::Error { code: e.code, msg: e.msg },
            }
        }
        Request::Stop { id, timeout } => {
            let id = match find(&id) {
                Ok(i) => i,
                Err(e) => return err(&e),
            };
            stop(sup, &id, timeout).await;
            Response::Done
        }
        Request::Remove { id, force, volumes } => {
            let id = match find(&id) {
                Ok(i) => i,
                Err(e) => return err(&e),
            };
            let running = sup.borrow().get(&id).is_some_and(|r| r.is_running());
            if running {
                if !force {
                    return Response::Error {
                        code: 1,
                        msg: format!(
                            "You cannot remove a running container {id}. Stop the container before attempting removal or force remove"
                        ),
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
                Err(e) => Response::Error { code: 1, msg: e.to_string() },
            }
        }
    }
}
