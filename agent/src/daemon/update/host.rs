//! What applying an update (`apply.rs`) needs from the rest of the agent, as two traits: the
//! journal's owner (`Manager`) and the containers (the supervisor). The agent passes the real
//! ones; `apply`'s unit tests pass fakes, so every journaled step, crash point, resume, rollback
//! and commit is tested without root.

use std::path::{Path, PathBuf};

use berth_proto::socket::RunOptions;
use berth_proto::wire::{AppAttach, AppNetwork, AppVolume, Outcome, Progress};
use berth_runtime::container::record::Status;
use berth_runtime::{Error, Result};

use super::journal::Journal;
use super::manager::Manager;
use crate::daemon::Shared;

/// The owner of the update journal.
pub trait Ledger {
    fn root(&self) -> PathBuf;
    fn journal(&self) -> &Journal;
    fn journal_mut(&mut self) -> &mut Journal;
    /// Writes the journal (crash-safe) before the step it names is taken.
    fn save(&self) -> Result<()>;
    /// The update ended with `o`: journal, result, state.
    fn finish(&mut self, o: Outcome);
    fn state_changed(&mut self);
    /// The berth.toml the agent was started with (`--config`): its `[registry]` is the pull's.
    fn config_path(&self) -> Option<PathBuf> {
        None
    }
    /// A fleet pull has `have` of `total` bytes (reported as the MQTT transfer's progress is).
    fn pull_progress(&self, id: &str, have: u64, total: u64) {
        let _ = (id, have, total);
    }
}

/// What an update needs to know about one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub name: String,
    pub image_id: String,
    /// Its restart policy, as `--restart` takes it.
    pub restart: String,
    pub status: Status,
    pub restart_count: u32,
    /// Its last exit (code, OOM-killed), also when a restart policy has started it again.
    pub last_exit: Option<(i32, bool)>,
}

impl Seen {
    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running { .. })
    }
}

/// The containers an update replaces, watches and restores.
#[allow(async_fn_in_trait)] // used with concrete types only, on one thread
pub trait Containers {
    /// The id of the container named (or with the id) `key`.
    fn find(&self, key: &str) -> Result<String>;
    fn seen(&self, id: &str) -> Option<Seen>;
    /// The health status (`healthy`, `unhealthy`, `starting`) and the last check's output.
    fn health(&self, id: &str) -> Option<(String, String)>;
    /// The id of the image `name` refers to.
    fn image_id(&self, name: &str) -> Result<String>;
    fn set_restart(&self, id: &str, policy: &str) -> Result<()>;
    fn rename(&self, id: &str, name: &str) -> Result<()>;
    /// Removes a stopped container and its files.
    fn remove(&self, id: &str) -> Result<()>;
    fn create(&self, o: &RunOptions) -> Result<String>;
    /// Starts a container; the error is the runtime's message.
    fn start(&self, id: &str) -> std::result::Result<(), String>;
    fn emit(&self, id: &str, action: &str);
    /// Joins a created container to one more network (`network connect`).
    fn connect(&self, id: &str, a: &AppAttach) -> Result<()>;
    /// An application's network: made unless one of that name exists.
    fn ensure_network(&self, n: &AppNetwork) -> Result<()>;
    fn has_network(&self, name: &str) -> bool;
    /// `network rm` (refused while a running container uses it).
    fn remove_network(&self, name: &str) -> Result<()>;
    /// An application's named volume: made unless it exists.
    fn ensure_volume(&self, v: &AppVolume) -> Result<()>;
    fn remove_unused_images(&self, ids: &[String]);
    /// Docker's stop: its stop signal, then SIGKILL after its timeout; policy restarts off.
    async fn stop(&self, id: &str);
    /// `berth load -q -i data` into `root`'s store, stderr into `errlog`; its exit code.
    async fn load(&self, root: &Path, data: &Path, errlog: &Path) -> Result<i32>;
    /// `berth pull -q reference` into `root`'s store (the registry settings of `config`),
    /// stderr into `errlog`; its exit code.
    async fn pull(&self, root: &Path, reference: &str, config: Option<&Path>, errlog: &Path) -> Result<i32>;
}

impl Ledger for Manager {
    fn root(&self) -> PathBuf {
        self.root.clone()
    }
    fn journal(&self) -> &Journal {
        &self.journal
    }
    fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }
    fn save(&self) -> Result<()> {
        self.journal.save(&self.root)
    }
    fn finish(&mut self, o: Outcome) {
        Manager::finish(self, o);
    }
    fn pull_progress(&self, id: &str, have: u64, total: u64) {
        // KiB, so an image of up to 4 TiB fits the wire format's u32 counts.
        let kib = |b: u64| u32::try_from(b.div_ceil(1024)).unwrap_or(u32::MAX);
        let p = Progress { id: id.to_string(), have: kib(have), total: kib(total), next: 0, missing: Vec::new(), phase: "pulling".into() };
        self.publish_progress(&p, false);
    }
    fn state_changed(&mut self) {
        Manager::state_changed(self);
    }
    fn config_path(&self) -> Option<PathBuf> {
        self.settings.config.clone()
    }
}

impl Containers for Shared {
    fn find(&self, key: &str) -> Result<String> {
        self.borrow().find(key)
    }
    fn seen(&self, id: &str) -> Option<Seen> {
        let s = self.borrow();
        let r = s.get(id)?;
        Some(Seen {
            name: r.name.clone(),
            image_id: r.image_id.to_string(),
            restart: r.restart.name(),
            status: r.status.clone(),
            restart_count: r.restart_count,
            last_exit: s.last_exit(id),
        })
    }
    fn health(&self, id: &str) -> Option<(String, String)> {
        self.borrow().health_of(id).map(|(s, out)| (s.to_string(), out))
    }
    fn image_id(&self, name: &str) -> Result<String> {
        self.borrow().image_id(name)
    }
    fn set_restart(&self, id: &str, policy: &str) -> Result<()> {
        self.borrow_mut().update(id, &Default::default(), Some(policy)).map(|_| ())
    }
    fn rename(&self, id: &str, name: &str) -> Result<()> {
        self.borrow_mut().rename(id, name)
    }
    fn remove(&self, id: &str) -> Result<()> {
        self.borrow_mut().remove_files(id, true)
    }
    fn create(&self, o: &RunOptions) -> Result<String> {
        self.borrow_mut().create(o).map(|(id, _)| id)
    }
    fn start(&self, id: &str) -> std::result::Result<(), String> {
        self.borrow_mut().start(id, None).map(|_| ()).map_err(|e| e.msg)
    }
    fn emit(&self, id: &str, action: &str) {
        self.borrow_mut().emit(id, action, &[]);
    }
    fn remove_unused_images(&self, ids: &[String]) {
        self.borrow().remove_unused_images(ids);
    }
    fn connect(&self, id: &str, a: &AppAttach) -> Result<()> {
        let ip = a.ip.as_deref().map(|i| i.parse().map_err(|_| Error::invalid(format!("invalid IP address: {i}")))).transpose()?;
        let req = berth_runtime::net::network::ConnectRequest { aliases: a.aliases.clone(), ip, ..Default::default() };
        self.borrow_mut().network_connect(&a.network, id, req)
    }
    fn has_network(&self, name: &str) -> bool {
        let root = self.borrow().root.clone();
        berth_runtime::net::network::Store::open(&root).is_ok_and(|s| s.get(name).is_ok())
    }
    fn remove_network(&self, name: &str) -> Result<()> {
        self.borrow_mut().network_remove(name, false)
    }
    fn ensure_network(&self, n: &AppNetwork) -> Result<()> {
        if self.has_network(&n.name) {
            return Ok(());
        }
        let pairs = |items: &[String]| -> std::collections::BTreeMap<String, String> {
            items.iter().map(|i| i.split_once('=').unwrap_or((i.as_str(), ""))).map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let req = berth_runtime::net::network::CreateRequest {
            name: n.name.clone(),
            driver: Some("bridge".into()),
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            ip_range: None,
            internal: n.internal,
            labels: pairs(&n.labels),
            options: pairs(&n.options),
        };
        self.borrow_mut().network_create(&req).map(|_| ())
    }
    fn ensure_volume(&self, v: &AppVolume) -> Result<()> {
        let root = self.borrow().root.clone();
        let labels =
            v.labels.iter().map(|i| i.split_once('=').unwrap_or((i.as_str(), ""))).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        berth_runtime::volume::Volumes::open(&root).create(Some(&v.name), labels, Default::default(), false).map(|_| ())
    }
    async fn stop(&self, id: &str) {
        crate::daemon::stop(self, id, None).await;
    }
    /// In a child process: the agent's loop keeps serving (and its memory stays small) while a
    /// large image unpacks.
    async fn load(&self, root: &Path, data: &Path, errlog: &Path) -> Result<i32> {
        let err_file = std::fs::File::create(errlog).map_err(|e| Error::io_at("create", errlog, e))?;
        let args = ["--root".as_ref(), root.as_os_str(), "load".as_ref(), "-q".as_ref(), "-i".as_ref(), data.as_os_str()];
        let pid = berth_runtime::selfexe::spawn(&args, &[], &err_file).map_err(|e| e.context("start berth load"))?;
        // Registered before the next await: the SIGCHLD reaper cannot have seen it yet.
        let rx = self.borrow_mut().watch_child(pid);
        Ok(rx.await.unwrap_or(-1))
    }
    async fn pull(&self, root: &Path, reference: &str, config: Option<&Path>, errlog: &Path) -> Result<i32> {
        let err_file = std::fs::File::create(errlog).map_err(|e| Error::io_at("create", errlog, e))?;
        // A child process, as `load`: the pull's worker threads must not live in the agent,
        // which forks containers.
        let progress = berth_runtime::paths::pull_progress_file(root);
        if let Some(dir) = progress.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::remove_file(&progress);
        let mut env = vec![("BERTH_PULL_PROGRESS", progress.as_os_str())];
        if let Some(p) = config {
            env.push(("BERTH_CONFIG", p.as_os_str()));
        }
        let args = ["--root".as_ref(), root.as_os_str(), "pull".as_ref(), "-q".as_ref(), reference.as_ref()];
        let pid = berth_runtime::selfexe::spawn(&args, &env, &err_file).map_err(|e| e.context("start berth pull"))?;
        let rx = self.borrow_mut().watch_child(pid);
        Ok(rx.await.unwrap_or(-1))
    }
}
