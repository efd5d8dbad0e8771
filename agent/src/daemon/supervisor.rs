//! The agent's containers: records in memory and on disk, starting, exits, removal. All of it
//! runs on the agent's one thread; `spawn::start` forks from here, which is safe because nothing
//! else runs.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use berth_runtime::cgroup::Cgroups;
use berth_runtime::container::record::{self, Record, Restart, Status};
use berth_runtime::container::rootfs::Layout;
use berth_runtime::container::spawn::{self, Launch, Output, StartError};
use berth_runtime::fsutil::{atomic_write, remove_all};
use berth_runtime::image::store::Store;
use berth_runtime::shared::SharedList;
use berth_runtime::{timefmt, Error, IoContext, Result};

use crate::daemon::create;
use berth_proto::socket::RunOptions;

mod event_log;
pub mod hotplug;
pub mod networks;

pub struct Supervisor {
    pub root: PathBuf,
    store: Store,
    cgroups: Cgroups,
    /// Cgroup parent, named from the root so agents on different roots never collide.
    parent: String,
    /// No overlayfs (or asked not to use it): containers get a merged copy of their image.
    pub copy: bool,
    /// Boxed: a record is about 800 bytes, and a map holding them inline keeps that much per slot
    /// of its table (a quarter to half of them empty), and keeps the table when they are removed.
    /// Every other map and list here names a container by the records map's own key (an `Id`
    /// is a shared pointer to it), not by a copy of its 64-byte id each.
    records: HashMap<Id, Box<Record>>,
    /// Monitors that are our children, by pid.
    by_pid: HashMap<i32, Id>,
    /// Monitors of an earlier agent (not our children): watched until they are gone.
    adopted: HashMap<Id, (i32, u64)>,
    /// Restarts due (restart policies), and each container's current back-off.
    restarts: Vec<(Instant, Id)>,
    backoff: HashMap<Id, Duration>,
    /// Each container's last exit (code, OOM-killed), kept across a policy restart: an update
    /// watching it with a 200 ms poll may only see the restart, and must still say why.
    last_exit: HashMap<Id, (i32, bool)>,
    /// `exec` waiters (our children) and who wants their exit code.
    execs: HashMap<i32, Option<oneshot::Sender<i32>>>,
    /// Recent events and their live subscribers.
    pub events: event_log::EventLog,
    health: HashMap<Id, crate::daemon::health::State>,
    waiters: HashMap<Id, Vec<oneshot::Sender<i32>>>,
    /// Nodes hotplug made in running containers (forgotten when they exit).
    hotplugged: HashMap<Id, Vec<hotplug::Added>>,
    /// Bridge networks: records, settings, and the embedded DNS of user networks.
    pub(crate) nets: networks::Nets,
    /// `--userns=auto` and the agent's `userns-remap`.
    pub userns: crate::daemon::userns::Settings,
}

use berth_runtime::paths::cgroup_parent;

/// A container's id as the supervisor's maps hold it.
type Id = std::rc::Rc<str>;

impl Supervisor {
    pub fn new(root: &Path, copy: bool, net: networks::NetSettings) -> Result<Supervisor> {
        let store = Store::open(root)?;
        fs::create_dir_all(root.join("containers")).ctx_path("create", &root.join("containers"))?;
        let cgroups = Cgroups::detect()?;
        let mut s = Supervisor {
            root: root.to_path_buf(),
            store,
            cgroups,
            parent: cgroup_parent(root),
            copy,
            records: HashMap::new(),
            by_pid: HashMap::new(),
            adopted: HashMap::new(),
            restarts: Vec::new(),
            backoff: HashMap::new(),
            last_exit: HashMap::new(),
            execs: HashMap::new(),
            events: event_log::EventLog::default(),
            health: HashMap::new(),
            waiters: HashMap::new(),
            hotplugged: HashMap::new(),
            nets: networks::Nets::open(root, net)?,
            userns: Default::default(),
        };
        let (recs, bad) = record::list(root);
        for b in bad {
            crate::warn!("skipping {b}");
        }
        // What an agent killed mid-way left: a container directory without a record (an
        // interrupted rm or create) is removed.
        if let Ok(rd) = fs::read_dir(root.join("containers")) {
            for e in rd.flatten() {
                if !e.path().join("state").exists() {
                    let _ = remove_all(&e.path());
                }
            }
        }
        for r in recs {
            let id = Id::from(r.id.as_str());
            // Processes in the cgroup of a container that is not recorded as running were started
            // by an agent killed before it could record them: stop them, so that nothing runs
            // twice when the policy starts the container again.
            if !r.is_running() {
                let cg = s.cgroups.open(&s.parent, &r.id);
                if cg.pids().is_ok_and(|p| !p.is_empty()) {
                    crate::warn!("container {}: stopping processes left by an interrupted start", r.name);
                    let _ = cg.kill_all();
                }
                let _ = cg.destroy();
            }
            // A container started by an earlier agent keeps running under its monitor: adopt it
            // (never start it twice), or record how it ended while nobody watched.
            if let Status::Running { monitor, monitor_start, .. } = r.status {
                if spawn::start_ticks(monitor) == Some(monitor_start) {
                    s.adopted.insert(id.clone(), (monitor, monitor_start));
                    if let Some(h) = &r.health {
                        // Checks go on where they were: the last status stays until the next check.
                        let mut st = crate::daemon::health::State::new(Duration::from_millis(h.interval_ms));
                        if let Some(v) = crate::daemon::health::read(root, &r.id) {
                            st.status = match v["Status"].as_str() {
                                Some("healthy") => "healthy",
                                Some("unhealthy") => "unhealthy",
                                _ => "starting",
                            };
                            st.streak = v["FailingStreak"].as_u64().unwrap_or(0) as u32;
                        }
                        s.health.insert(id.clone(), st);
                    }
                    s.records.insert(id, Box::new(r));
                    continue;
                }
                s.records.insert(id.clone(), Box::new(r));
                s.exited(&id, None);
                continue;
            }
            let boot = matches!(r.restart, Restart::Always) || (r.restart == Restart::UnlessStopped && !r.user_stopped);
            if boot {
                // Back at agent start (a reboot, say): policy containers run again, network or not.
                s.restarts.push((Instant::now(), id.clone()));
            }
            s.records.insert(id, Box::new(r));
        }
        s.net_init();
        Ok(s)
    }

    /// Records an event for `events` subscribers (kept in memory only: no flash writes).
    pub fn emit(&mut self, id: &str, action: &str, attrs: &[(&str, String)]) {
        let Some(r) = self.records.get(id) else { return };
        let mut attributes = vec![("image".to_string(), r.image.clone()), ("name".to_string(), r.name.clone())];
        attributes.extend(attrs.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let e = berth_proto::socket::Event {
            time: timefmt::now_nanos(),
            secs: timefmt::now(),
            action: action.to_string(),
            id: id.to_string(),
            name: r.name.clone(),
            image: r.image.clone(),
            attributes,
            kind: "container".into(),
        };
        self.events.push(e);
    }

    /// When the next policy restart is due.
    pub fn next_restart(&self) -> Option<Instant> {
        self.restarts.iter().map(|(t, _)| *t).min()
    }

    /// Starts the containers whose restart is due.
    pub fn restart_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.restarts).into_iter().partition(|(t, _)| *t <= now);
        self.restarts = later;
        for (_, id) in due {
            let Some(r) = self.records.get_mut(&id) else { continue };
            if r.is_running() || r.user_stopped && r.restart != Restart::Always {
                continue;
            }
            r.user_stopped = false;
            self.emit(&id, "restart", &[]);
            if let Err(e) = self.start(&id, None) {
                crate::warn!("restart {id}: {}", e.msg);
            }
        }
    }

    /// Whether a container that just exited with `code` restarts under its policy, and when.
    fn schedule_restart(&mut self, id: &str, code: i32, ran: Duration) {
        let Some(r) = self.records.get_mut(id) else { return };
        let again = match r.restart {
            Restart::No => false,
            Restart::OnFailure(max) => code != 0 && (max == 0 || r.restart_count < max),
            Restart::Always | Restart::UnlessStopped => !r.user_stopped,
        };
        if !again {
            self.backoff.remove(id);
            return;
        }
        r.restart_count += 1;
        // Docker's back-off: 100 ms, doubling to a minute; reset once a run lasted 10 s.
        let delay = match self.backoff.get(id) {
            Some(d) if ran < Duration::from_secs(10) => (*d * 2).min(Duration::from_secs(60)),
            _ => Duration::from_millis(100),
        };
        let id = self.key(id);
        self.backoff.insert(id.clone(), delay);
        self.restarts.push((Instant::now() + delay, id));
    }

    /// Marks a container as stopped on purpose (`stop`, `kill`): its policy does not bring it
    /// back until it is started again.
    pub fn user_stop(&mut self, id: &str) {
        if let Some(r) = self.records.get_mut(id) {
            r.user_stopped = true;
            let _ = r.save_status(&self.root);
        }
        self.restarts.retain(|(_, i)| &**i != id);
    }

    /// Adopted monitors that have gone since the last look: their containers have exited.
    pub fn check_adopted(&mut self) {
        let gone: Vec<Id> =
            self.adopted.iter().filter(|(_, (pid, start))| spawn::start_ticks(*pid) != Some(*start)).map(|(id, _)| id.clone()).collect();
        for id in gone {
            self.adopted.remove(&id);
            self.exited(&id, None);
        }
    }

    pub fn adopted_count(&self) -> usize {
        self.adopted.len()
    }

    /// The records map's key for `id` (a new one when it has no record).
    fn key(&self, id: &str) -> Id {
        self.records.get_key_value(id).map_or_else(|| Id::from(id), |(k, _)| k.clone())
    }

    pub fn find(&self, key: &str) -> Result<String> {
        Ok(record::find(self.records(), key)?.id.clone())
    }

    /// The last exit of `id` (code, OOM-killed) since the agent started.
    pub fn last_exit(&self, id: &str) -> Option<(i32, bool)> {
        self.last_exit.get(id).copied()
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(id).map(|r| &**r)
    }

    pub fn running(&self) -> Vec<(String, i32, i32, u32)> {
        self.records
            .values()
            .filter_map(|r| match r.status {
                Status::Running { pid, .. } => Some((r.id.clone(), pid, r.stop_signal, r.stop_timeout)),
                _ => None,
            })
            .collect()
    }

    pub fn create(&mut self, o: &RunOptions) -> Result<(String, Vec<String>)> {
        let recs: Vec<&Record> = self.records().collect();
        // Without --net, the agent's default network (the default bridge, as Docker's).
        let mut o = o.clone();
        if o.net.is_none() {
            o.net = Some(self.nets.settings.default.clone());
        }
        let mut res = create::resolve(&self.root, &self.store, &self.cgroups, &o, &recs)?;
        // Chosen against every record, and recorded with the container below, before any await.
        res.record.spec.userns =
            crate::daemon::userns::choose(&self.userns, &self.root, o.userns.as_deref(), o.privileged, self.copy, &recs)?;
        if !res.net.networks.is_empty() {
            self.net_check(&res.net, &recs)?;
        }
        let r = res.record;
        let dir = record::dir(&self.root, &r.id);
        let volumes = berth_runtime::volume::Volumes::open(&self.root);
        let mut made_volumes = Vec::new();
        let made = (|| {
            for d in ["upper", "work", "rootfs", "etc"] {
                fs::create_dir_all(dir.join(d)).ctx_path("create", &dir.join(d))?;
            }
            if let Some(size) = berth_runtime::container::quota::parse(&o.storage_opt)? {
                if self.copy {
                    return Err(Error::invalid(berth_runtime::container::quota::UNSUPPORTED));
                }
                // Work too: overlayfs copies up through it, and a rename between projects fails.
                let (upper, work) = (dir.join("upper"), dir.join("work"));
                berth_runtime::container::quota::limit(&[&upper, &work], berth_runtime::container::quota::project_id(&r.id), size)?;
                atomic_write(&dir.join("storage-opt"), o.storage_opt.join("\n").as_bytes())?;
            }
            write_etc(&dir.join("etc"), &r)?;
            if !res.net.networks.is_empty() {
                res.net.save(&dir)?;
            }
            if self.copy {
                let roots: Vec<PathBuf> = r.layers.iter().map(|d| self.store.layer_dir(d).join("root")).collect();
                berth_runtime::container::copyfs::materialize(&roots, &dir.join("rootfs"))?;
            }
            let roots: Vec<PathBuf> = r.layers.iter().map(|d| self.store.layer_dir(d).join("root")).collect();
            made_volumes = berth_runtime::container::mounts::make(&volumes, &res.mounts, &roots)?;
            // A --rm container's record dies with it: durability would buy nothing.
            if r.auto_remove {
                r.save_status(&self.root)
            } else {
                r.save(&self.root)
            }
        })();
        if let Err(e) = made {
            let _ = remove_all(&dir);
            for v in &made_volumes {
                let _ = volumes.remove(v, &[]);
            }
            return Err(e);
        }
        let id = r.id.clone();
        self.records.insert(id.as_str().into(), Box::new(r));
        self.emit(&id, "create", &[]);
        Ok((id, res.warnings))
    }

    /// Starts a created or exited container; `stdio` are the client's descriptors (foreground),
    /// otherwise output goes to the container's log file.
    pub fn start(&mut self, id: &str, stdio: Option<Vec<OwnedFd>>) -> std::result::Result<Vec<String>, StartError> {
        let r = self.get(id).cloned().ok_or_else(|| Error::no_such_container(id))?;
        if r.is_running() {
            return Ok(Vec::new());
        }
        let r = self.refresh_devices(id, r)?;
        if let Some(rec) = self.records.get_mut(id) {
            rec.user_stopped = false;
        }
        let join_net = match &r.spec.net {
            berth_runtime::container::spec::Net::Container(other) => {
                let o = record::find(self.records(), other)?;
                match o.status {
                    Status::Running { pid, .. } => Some(PathBuf::from(format!("/proc/{pid}/ns/net"))),
                    _ => return Err(Error::conflict(format!("cannot join network of a non running container: {other}")).into()),
                }
            }
            _ => None,
        };
        let dir = record::dir(&self.root, id);
        let _ = fs::remove_file(dir.join("exit"));
        // Addresses, published ports and /etc files before the cgroup: a refused port leaves
        // nothing to undo but the endpoints.
        let (attach, link_env) = self.net_start(&r, &dir)?;
        let mut r = r;
        if !link_env.is_empty() {
            let mut env = std::mem::take(&mut r.spec.env).into_vec();
            env.extend(link_env);
            r.spec.env = env.into();
        }
        let (cg, warnings) = match self.cgroups.create(&self.parent, id, &r.spec.resources) {
            Ok(x) => x,
            Err(e) => {
                self.net_stop(id);
                return Err(e.into());
            }
        };
        let output = match &stdio {
            Some(f) if f.len() == 3 => Output::Passed([f[0].as_raw_fd(), f[1].as_raw_fd(), f[2].as_raw_fd()]),
            _ => Output::Log(r.log.clone()),
        };
        let layers: Vec<String> = r.layers.iter().map(|d| format!("{}/root", d.hex())).collect();
        let layers_dir = self.root.join("layers");
        let (upper, work, rootfs, etc) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"), dir.join("etc"));
        let launch = Launch {
            spec: &r.spec,
            layout: Layout {
                layers: &layers,
                layers_dir: &layers_dir,
                upper: &upper,
                work: &work,
                rootfs: &rootfs,
                etc_dir: &etc,
                copy: self.copy,
                volatile: r.auto_remove,
            },
            cgroup: &cg,
            output,
            join_net,
            dir: &dir,
            attach: &attach,
        };
        let started = timefmt::now();
        let res = spawn::start(&launch);
        drop(stdio);
        let rec = self.records.get_mut(id).ok_or_else(|| Error::no_such_container(id))?;
        match res {
            Ok(s) => {
                rec.status =
                    Status::Running { pid: s.pid, monitor: s.monitor, monitor_start: spawn::start_ticks(s.monitor).unwrap_or(0), started };
                rec.save_status(&self.root)?;
                self.by_pid.insert(s.monitor, self.key(id));
                if let Some(h) = &r.health {
                    let st = crate::daemon::health::State::new(Duration::from_millis(h.interval_ms));
                    st.write(&self.root, id);
                    self.health.insert(self.key(id), st);
                }
                self.emit(id, "start", &[]);
                Ok(warnings)
            }
            Err(e) => {
                let _ = cg.destroy();
                self.net_stop(id);
                let rec = self.records.get_mut(id).ok_or_else(|| Error::no_such_container(id))?;
                rec.status = Status::Exited { code: e.code, started, finished: timefmt::now(), oom_killed: false, error: e.msg.clone() };
                rec.save_status(&self.root)?;
                self.finish(id, e.code);
                Err(e)
            }
        }
    }

    /// A child exited: if it was a container's monitor, the container has ended.
    pub fn reaped(&mut self, pid: i32, status: i32) {
        if let Some(tx) = self.execs.remove(&pid) {
            let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
            if let Some(tx) = tx {
                let _ = tx.send(code);
            }
            return;
        }
        let Some(id) = self.by_pid.remove(&pid) else { return };
        // The monitor exits with the container's status; if it was killed itself, the status
        // file (if it got that far) is all there is.
        let code = if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None };
        self.exited(&id, code);
    }

    /// Records the end of a running container: `code` from its monitor, else from its `exit` file.
    fn exited(&mut self, id: &str, code: Option<i32>) {
        let dir = record::dir(&self.root, id);
        let (code, error) = match code.or_else(|| spawn::recorded_exit(&dir)) {
            Some(c) => (c, String::new()),
            None => (255, "the container's monitor ended without recording an exit status".to_string()),
        };
        let cg = self.cgroups.open(&self.parent, id);
        let oom = cg.oom_kills() > 0;
        self.last_exit.insert(self.key(id), (code, oom));
        // Whatever a lost monitor left behind in the cgroup must not outlive the container.
        let _ = cg.kill_all();
        if let Err(e) = cg.destroy() {
            crate::warn!("container {id}: {e}");
        }
        let mut ran = Duration::ZERO;
        if let Some(r) = self.records.get_mut(id) {
            let started = match r.status {
                Status::Running { started, .. } => started,
                _ => 0,
            };
            ran = Duration::from_secs((timefmt::now() - started).max(0) as u64);
            r.status = Status::Exited { code, started, finished: timefmt::now(), oom_killed: oom, error };
            if let Err(e) = r.save_status(&self.root) {
                crate::warn!("{e}");
            }
        }
        if oom {
            self.emit(id, "oom", &[]);
        }
        self.net_stop(id);
        self.emit(id, "die", &[("exitCode", code.to_string())]);
        self.health.remove(id);
        self.hotplugged.remove(id);
        self.finish(id, code);
        self.schedule_restart(id, code, ran);
    }

    pub fn next_check(&self) -> Option<Instant> {
        self.health.values().filter(|h| !h.running).map(|h| h.next).min()
    }

    /// Health checks due now: (container, command, timeout); each is marked as running.
    pub fn due_checks(&mut self) -> Vec<(String, Vec<String>, Duration)> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, st) in self.health.iter_mut().filter(|(_, h)| !h.running && h.next <= now) {
            let Some(h) = self.records.get(id).and_then(|r| r.health.clone()) else { continue };
            st.running = true;
            out.push((id.to_string(), h.command(), Duration::from_millis(h.timeout_ms)));
        }
        out
    }

    /// Runs a health check command in the container with its output into `out`.
    pub fn exec_check(
        &mut self,
        id: &str,
        cmd: Vec<String>,
        out: OwnedFd,
    ) -> std::result::Result<(i32, oneshot::Receiver<i32>), StartError> {
        let r = self.records.get(id).ok_or_else(|| Error::no_such_container(id))?;
        let Status::Running { pid, .. } = r.status else {
            return Err(StartError { code: 125, msg: "container is not running".into() });
        };
        let mut spec = r.spec.clone();
        spec.args = SharedList::own(cmd);
        spec.tty = false;
        let null = fs::File::open("/dev/null").ctx(|| "open /dev/null".into())?;
        let cg = self.cgroups.open(&self.parent, id);
        let started = spawn::exec_in(&spawn::ExecLaunch {
            target: pid,
            cgroup: &cg,
            spec: &spec,
            stdio: [null.as_raw_fd(), out.as_raw_fd(), out.as_raw_fd()],
        })?;
        let (tx, rx) = oneshot::channel();
        self.execs.insert(started.monitor, Some(tx));
        Ok((started.pid, rx))
    }

    /// Records a check's result (Docker's rules) and schedules the next one.
    pub fn health_result(&mut self, id: &str, result: serde_json::Value, code: i32) {
        let Some(h) = self.records.get(id).and_then(|r| r.health.clone()) else { return };
        let Some(st) = self.health.get_mut(id) else { return };
        st.running = false;
        st.next = Instant::now() + Duration::from_millis(h.interval_ms);
        let before = (st.status, st.streak);
        if code == 0 {
            st.status = "healthy";
            st.streak = 0;
        } else if st.status != "starting" || st.started.elapsed() >= Duration::from_millis(h.start_period_ms) {
            st.streak += 1;
            if st.streak >= h.retries {
                st.status = "unhealthy";
            }
        }
        if st.log.len() >= 5 {
            st.log.pop_front();
        }
        st.log.push_back(result);
        let status = st.status;
        st.write(&self.root, id);
        if before.0 != status {
            self.emit(id, &format!("health_status: {status}"), &[]);
        }
    }

    /// The health status of a running container with a check, and its last check's output.
    pub fn health_of(&self, id: &str) -> Option<(&'static str, String)> {
        let st = self.health.get(id)?;
        let out = st.log.back().and_then(|v| v["Output"].as_str()).unwrap_or_default().to_string();
        Some((st.status, out))
    }

    /// A child process of the agent's own (not a container) whose exit code someone awaits.
    pub fn watch_child(&mut self, pid: i32) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        self.execs.insert(pid, Some(tx));
        rx
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values().map(|r| &**r)
    }

    /// The id of the image `name` refers to.
    pub fn image_id(&self, name: &str) -> Result<String> {
        let db = self.store.db()?;
        Ok(Store::find(&db, name)?.0.id.to_string())
    }

    /// Image ids and layer digests in the store (for the update state: what a delta may skip).
    pub fn store_contents(&self) -> (Vec<String>, Vec<String>) {
        let Ok(db) = self.store.db() else { return (Vec::new(), Vec::new()) };
        let images = db.images.iter().map(|i| i.id.to_string()).collect();
        let mut layers: Vec<String> = db.images.iter().flat_map(|i| i.layers.iter().map(|l| l.to_string())).collect();
        layers.sort();
        layers.dedup();
        (images, layers)
    }

    /// Removes the images among `ids` that no container uses any more (all their tags).
    pub fn remove_unused_images(&self, ids: &[String]) {
        let used: Vec<String> = self.records.values().map(|r| r.image_id.to_string()).collect();
        let names: Vec<String> = ids.iter().filter(|i| !i.is_empty() && !used.contains(i)).cloned().collect();
        if names.is_empty() {
            return;
        }
        let in_use = |d: &berth_runtime::digest::Digest| used.contains(&d.to_string());
        for n in names {
            if let Err(e) = self.store.remove(std::slice::from_ref(&n), true, &in_use) {
                crate::debug!("remove image {n}: {e}");
            }
        }
    }

    /// Wakes whoever waits for `id` and removes it if it was started with --rm.
    fn finish(&mut self, id: &str, code: i32) {
        for w in self.waiters.remove(id).unwrap_or_default() {
            let _ = w.send(code);
        }
        if self.records.get(id).is_some_and(|r| r.auto_remove) {
            if let Err(e) = self.remove_files(id, true) {
                crate::warn!("remove {id}: {e}");
            }
        }
    }

    /// The exit code now, or a receiver that gets it when the container exits.
    pub fn wait(&mut self, id: &str) -> std::result::Result<i32, oneshot::Receiver<i32>> {
        if let Some(Status::Exited { code, .. }) = self.records.get(id).map(|r| &r.status) {
            return Ok(*code);
        }
        Err(self.waiter(id))
    }

    /// A receiver for the next exit of `id`, whatever its state now.
    pub fn waiter(&mut self, id: &str) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        let id = self.key(id);
        self.waiters.entry(id).or_default().push(tx);
        rx
    }

    /// Runs a process in a running container; with `wait`, a receiver for its exit code.
    pub fn exec(
        &mut self,
        o: &berth_proto::socket::ExecOptions,
        stdio: Option<Vec<OwnedFd>>,
        wait: bool,
    ) -> std::result::Result<Option<oneshot::Receiver<i32>>, StartError> {
        let r = self.records.get(o.id.as_str()).ok_or_else(|| Error::not_found(format!("No such container: {}", o.id)))?;
        let Status::Running { pid, .. } = r.status else {
            return Err(StartError { code: 125, msg: format!("container {} is not running", r.name) });
        };
        let mut spec = r.spec.clone();
        spec.args = SharedList::own(o.args.clone());
        let mut env = spec.env.into_vec();
        for e in &o.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        spec.env = env.into();
        if let Some(u) = &o.user {
            spec.user = u.clone();
        }
        if let Some(w) = &o.workdir {
            spec.cwd = w.clone();
        }
        spec.tty = o.tty;
        let null = fs::File::open("/dev/null").ctx(|| "open /dev/null".into())?;
        let fds = match &stdio {
            Some(f) if f.len() == 3 => [f[0].as_raw_fd(), f[1].as_raw_fd(), f[2].as_raw_fd()],
            _ => [null.as_raw_fd(); 3],
        };
        let cg = self.cgroups.open(&self.parent, &o.id);
        let waiter = spawn::exec_in(&spawn::ExecLaunch { target: pid, cgroup: &cg, spec: &spec, stdio: fds })?.monitor;
        let (tx, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.execs.insert(waiter, tx);
        self.emit(&o.id, "exec_start", &[("execID", o.args.join(" "))]);
        Ok(rx)
    }

    pub fn rename(&mut self, id: &str, name: &str) -> Result<()> {
        if !berth_proto::names::valid_name(name) {
            return Err(Error::invalid(format!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
        }
        if let Some(other) = self.records.values().find(|r| r.name == name && r.id != id) {
            return Err(Error::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{}\".",
                other.id
            )));
        }
        let r = self.records.get_mut(id).ok_or_else(|| Error::no_such_container(id))?;
        let old = std::mem::replace(&mut r.name, name.to_string());
        r.save(&self.root)?;
        self.emit(id, "rename", &[("oldName", old)]);
        Ok(())
    }

    /// Docker's `update`: limits of a running container change at once; all are kept for later runs.
    pub fn update(&mut self, id: &str, res: &berth_runtime::cgroup::Resources, restart: Option<&str>) -> Result<Vec<String>> {
        let policy = restart.map(Restart::parse).transpose()?;
        let r = self.records.get(id).ok_or_else(|| Error::no_such_container(id))?;
        let mut merged = r.spec.resources.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if res.$f.is_some() { merged.$f = res.$f; } )* };
        }
        set!(memory, memory_swap, memory_reservation, pids_limit, cpus, cpu_shares);
        merged.validate()?;
        let warnings = if r.is_running() { self.cgroups.open(&self.parent, id).update(res)? } else { Vec::new() };
        let r = self.records.get_mut(id).ok_or_else(|| Error::no_such_container(id))?;
        r.spec.resources = merged;
        if let Some(p) = policy {
            if r.auto_remove && p != Restart::No {
                return Err(Error::invalid("Conflicting options: --restart and --rm"));
            }
            r.restart = p;
        }
        r.save(&self.root)?;
        Ok(warnings)
    }

    pub fn kill(&self, id: &str, sig: i32) -> Result<()> {
        match self.records.get(id).map(|r| &r.status) {
            Some(Status::Running { pid, .. }) => {
                // SAFETY: kill(2) on the container's pid 1, which is our child and not yet reaped
                // (so the pid cannot have been reused).
                if unsafe { libc::kill(*pid, sig) } != 0 {
                    return Err(Error::io(format!("signal container {id}"), std::io::Error::last_os_error()));
                }
                // A paused container gets the signal once thawed, as Docker's stop and kill do.
                let cg = self.cgroups.open(&self.parent, id);
                if cg.frozen().unwrap_or(false) {
                    cg.freeze(false)?;
                }
                Ok(())
            }
            Some(_) => Err(Error::conflict(format!("Container {} is not running", &id[..12]))),
            None => Err(Error::no_such_container(id)),
        }
    }

    /// `pause`/`unpause`: the freezer (v1) or `cgroup.freeze` (v2), answered once the kernel
    /// reports the new state.
    pub fn pause(&mut self, id: &str, frozen: bool) -> Result<()> {
        let r = self.records.get(id).ok_or_else(|| Error::no_such_container(id))?;
        let short = r.short_id().to_string();
        if !r.is_running() {
            return Err(Error::conflict(format!("Container {short} is not running")));
        }
        let cg = self.cgroups.open(&self.parent, id);
        match (frozen, cg.frozen()?) {
            (true, true) => return Err(Error::conflict(format!("Container {short} is already paused"))),
            (false, false) => return Err(Error::conflict(format!("Container {short} is not paused"))),
            _ => {}
        }
        cg.freeze(frozen)?;
        self.emit(id, if frozen { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// Removes a container's files; with `volumes`, its anonymous volumes too.
    pub fn remove_files(&mut self, id: &str, volumes: bool) -> Result<()> {
        if volumes {
            // As Docker: an anonymous volume another container still uses stays.
            let vols = berth_runtime::volume::Volumes::open(&self.root);
            for v in self.records.get(id).map(|r| r.anonymous_volumes.clone()).unwrap_or_default() {
                let Some(name) = v.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
                let used = self
                    .records
                    .values()
                    .any(|o| o.id != id && berth_runtime::container::mounts::volumes_used(&vols, &o.spec.mounts).contains(&name));
                if used {
                    continue;
                }
                match vols.get(&name) {
                    Ok(_) => vols.remove(&name, &[])?,
                    // Made before volumes had records.
                    Err(_) => remove_all(&v)?,
                }
            }
        }
        crate::daemon::health::remove(&self.root, id);
        self.net_stop(id);
        self.emit(id, "destroy", &[]);
        self.restarts.retain(|(_, i)| &**i != id);
        self.backoff.remove(id);
        self.last_exit.remove(id);
        let _ = self.cgroups.open(&self.parent, id).destroy();
        if record::dir(&self.root, id).join("storage-opt").exists() {
            berth_runtime::container::quota::clear(&record::dir(&self.root, id), berth_runtime::container::quota::project_id(id));
        }
        remove_all(&record::dir(&self.root, id))?;
        self.records.remove(id);
        Ok(())
    }
}

/// /etc/hosts, /etc/hostname and /etc/resolv.conf for the container, bind-mounted in.
fn write_etc(dir: &Path, r: &Record) -> Result<()> {
    let host_net = r.spec.net == berth_runtime::container::spec::Net::Host;
    let hosts = if host_net {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{}\n", r.spec.hostname)
    };
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for (name, content) in [("hosts", hosts), ("hostname", format!("{}\n", r.spec.hostname)), ("resolv.conf", resolv)] {
        fs::write(dir.join(name), content).ctx_path("write", &dir.join(name))?;
    }
    Ok(())
}
