//! `berth agent`: the daemon. One tokio current-thread runtime (no worker or blocking-pool
//! threads, so forking containers from it is safe), one local socket, one lock per root.

pub mod config;
pub mod create;
pub mod devices;
pub mod disk;
pub mod dns;
mod events;
pub mod fdpass;
mod handlers;
pub mod health;
mod networks;
pub mod notify;
mod server;
mod signals;
mod socket;
pub mod supervisor;
pub mod update;
pub mod userns;

use std::cell::RefCell;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use berth_runtime::fsutil::atomic_write;
use berth_runtime::{Error, Result};

pub(crate) use handlers::stop;
use supervisor::Supervisor;

pub type Shared = Rc<RefCell<Supervisor>>;
pub type Updates = Rc<RefCell<crate::daemon::update::manager::Manager>>;

/// Spawns a task on the agent's thread. Every task is boxed to the one future type first, so
/// tokio's task code (poll, shutdown, join, the task cell's drop) exists once in the binary rather
/// than once for each kind of task; a task costs one more small allocation.
pub fn spawn(task: impl std::future::Future<Output = ()> + 'static) -> tokio::task::JoinHandle<()> {
    let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = Box::pin(task);
    tokio::task::spawn_local(task)
}

pub struct Options {
    pub root: PathBuf,
    pub socket: PathBuf,
    /// Group that may use the socket (mode 0660).
    pub group: Option<String>,
    /// `overlay2` (or `overlay`) or `copy`; by default overlay where the kernel has it.
    pub storage: Option<String>,
    /// Leave containers running when the agent stops (Docker's --live-restore); a new agent
    /// re-adopts them.
    pub live_restore: bool,
    /// `run` argument lines of containers to create and start when missing (a freshly flashed
    /// board's applications, written by meta-berth's BERTH_PRELOAD_RUN).
    pub preload_run: Option<PathBuf>,
    /// Update settings (device id, keys) and, when a broker is configured, the MQTT link.
    pub updates: crate::daemon::update::manager::Settings,
    pub link: Option<crate::daemon::update::session::Link>,
    /// The default network and the default bridge's subnet.
    pub net: supervisor::networks::NetSettings,
    /// `userns-remap` and the subordinate-ID files.
    pub userns: userns::Settings,
    /// The reserve for berth's own records and the image GC threshold.
    pub disk: disk::Settings,
}

/// Creates and starts each preload container that does not exist yet (by its --name).
fn preload(sup: &Shared, path: &Path) {
    let Ok(text) = fs::read_to_string(path) else { return };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let res = (|| -> std::result::Result<Option<String>, String> {
            let words = berth_proto::words::shell_words(line).map_err(|e| e.to_string())?;
            let o = berth_proto::run::parse_run_words(&words)?;
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
    fs::create_dir_all(root).map_err(|e| Error::io_at("create", root, e))?;
    let path = root.join("agent.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io_at("open", &path, e))?;
    // SAFETY: flock on a descriptor we own; released when the file is closed at exit.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = fs::read_to_string(root.join("agent.pid")).unwrap_or_default();
        return Err(Error::conflict(format!("another berth agent is already running on {} (pid {})", root.display(), pid.trim())));
    }
    Ok(f)
}

pub fn run(o: &Options) -> Result<()> {
    if let Err(e) = berth_runtime::selfexe::reexec_read_only(&o.root) {
        crate::info!("warning: {e}: a container could overwrite berth's binary through /proc/<pid>/exe (CVE-2019-5736)");
    }
    let _lock = lock_root(&o.root)?;
    // Before anything else is written: from here on, a write of ours that finds the disk full
    // draws on the reserve.
    berth_runtime::reserve::install(&o.root, o.disk.reserve)?;
    // Containers are grandchildren (forked by an intermediate that exits): as subreaper the agent
    // becomes their parent and can reap them.
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::io("become child subreaper", io::Error::last_os_error()));
    }
    let copy = match o.storage.as_deref() {
        None => !berth_runtime::container::copyfs::overlay_supported(),
        Some("overlay" | "overlay2") if berth_runtime::container::copyfs::overlay_supported() => false,
        Some(d @ ("overlay" | "overlay2")) => return Err(Error::invalid(format!("--storage-driver {d}: this kernel has no overlayfs"))),
        Some("copy") => true,
        Some(other) => return Err(Error::invalid(format!("unknown storage driver {other:?} (overlay2, overlay or copy)"))),
    };
    // The choice is recorded for `berth info`, which runs without talking to the agent.
    atomic_write(&o.root.join("storage-driver"), if copy { &b"copy\n"[..] } else { &b"overlay\n"[..] })?;
    let sup = Rc::new(RefCell::new(Supervisor::new(&o.root, copy, o.net.clone())?));
    sup.borrow_mut().userns = o.userns.clone();
    atomic_write(&o.root.join("agent.pid"), format!("{}\n", std::process::id()).as_bytes())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // The agent waits on a few dozen descriptors: 64 events per poll, not tokio's 1,024 (12 KB
        // of an agent heap of about 90 KB); more are taken on the next turn of the loop.
        .max_io_events_per_tick(64)
        // rumqttc looks the broker's name up on tokio's blocking pool (getaddrinfo): let that thread
        // end soon after, not 10 s later, so that the agent is single-threaded again when it forks.
        .thread_keep_alive(std::time::Duration::from_millis(100))
        .build()
        .map_err(|e| Error::io("start runtime", e))?;
    let local = tokio::task::LocalSet::new();
    if let Some(p) = &o.preload_run {
        let _guard = rt.enter();
        preload(&sup, p);
    }
    let res = local.block_on(&rt, server::serve(o, sup.clone()));
    let _ = fs::remove_file(&o.socket);
    let _ = fs::remove_file(o.root.join("agent.pid"));
    res
}
