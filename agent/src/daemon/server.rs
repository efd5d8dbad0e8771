//! The agent's event loop: connections, reaping children, restart and health timers, hotplug,
//! the watchdog, and the clean shutdown on SIGTERM/SIGINT.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::UnixListener;

use berth_runtime::{Error, Result};

use super::signals::{self, Signals};
use super::{health, notify, socket, supervisor, Options, Shared, Updates};

pub(super) async fn serve(o: &Options, sup: Shared) -> Result<()> {
    // Signal handlers first, then the socket: whoever can connect can also stop us cleanly.
    let signals = Signals::install()?;
    let listener = UnixListener::from_std(socket::bind(&o.socket, o.group.as_deref())?).map_err(|e| Error::io("socket", e))?;
    // The user networks' DNS responders are tasks of this loop.
    sup.borrow_mut().nets.dns_sync();
    let upd: Updates = Rc::new(RefCell::new(crate::daemon::update::manager::Manager::open(&o.root, o.updates.clone(), sup.clone())?));
    if upd.borrow().journal.active.is_some() {
        // An update was interrupted (power cut, kill -9): finish what it was doing.
        crate::info!("resuming the interrupted update");
        crate::daemon::spawn(crate::daemon::update::apply::drive(upd.clone(), sup.clone()));
    }
    if let Some(link) = o.link.clone() {
        crate::daemon::spawn(crate::daemon::update::session::run(link, upd.clone(), sup.clone()));
    }
    // Monitors adopted from an earlier agent are not our children: look at them once a second.
    let mut adopted = tokio::time::interval(Duration::from_secs(1));
    let wd_every = notify::watchdog_interval();
    let mut watchdog = tokio::time::interval(wd_every.unwrap_or(Duration::from_secs(3600)));
    // The disk reserve regrown and the image GC: cheap (a statvfs) when there is nothing to do.
    let mut disk = tokio::time::interval(Duration::from_secs(5));
    let uevents = supervisor::hotplug::monitor();
    notify::ready();
    crate::info!("serving on {} for {}", o.socket.display(), sup.borrow().root.display());
    // A child that ended before the handler was there (a preloaded container's monitor) sent its
    // SIGCHLD to no one.
    reap(&sup);
    loop {
        tokio::select! {
            c = listener.accept() => match c {
                Ok((stream, _)) => { crate::daemon::spawn(socket::connection(stream, sup.clone(), upd.clone())); }
                Err(e) => crate::warn!("accept: {e}"),
            },
            got = signals.next() => {
                if got & signals::CHILD != 0 {
                    reap(&sup);
                }
                if got & (signals::TERMINATE | signals::INTERRUPT) != 0 {
                    break;
                }
            }
            _ = adopted.tick(), if sup.borrow().adopted_count() > 0 => sup.borrow_mut().check_adopted(),
            _ = restart_timer(&sup) => sup.borrow_mut().restart_due(),
            _ = health_timer(&sup) => {
                let due = sup.borrow_mut().due_checks();
                for (id, cmd, timeout) in due {
                    crate::daemon::spawn(health::run(sup.clone(), id, cmd, timeout));
                }
            }
            evs = supervisor::hotplug::next(uevents.as_ref()) => for ev in &evs { sup.borrow_mut().hotplug(ev) },
            _ = watchdog.tick(), if wd_every.is_some() => notify::watchdog(),
            _ = disk.tick() => {
                let in_use: Vec<_> = sup.borrow().records().map(|r| r.image_id.clone()).collect();
                super::disk::tick(&o.root, &o.disk, &in_use);
            }
        }
    }
    notify::stopping();
    if !o.live_restore {
        shutdown(&sup, &signals).await;
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
async fn shutdown(sup: &Shared, signals: &Signals) {
    let running = sup.borrow().running();
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
        // A child's exit, or 100 ms for the stop timeouts.
        let _ = tokio::time::timeout(Duration::from_millis(100), signals.next()).await;
    }
}
