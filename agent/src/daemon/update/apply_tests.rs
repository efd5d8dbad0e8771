//! `apply::drive` against fakes of the journal's owner and the containers (`host.rs`): each
//! journaled step, a crash at every point (before any operation, between two, before and after
//! each journal write), the resume that follows, rollback and commit. No root, no kernel: the
//! real steps of a deploy are checked end to end as root in tests/tests/updates.rs and faults.rs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use berth_proto::socket::RunOptions;
use berth_proto::wire::{Kind, Outcome};
use berth_runtime::container::record::Status;
use berth_runtime::{Error, Result};

use super::apply::{drive, rollback_active};
use super::host::{Containers, Ledger, Seen};
use super::journal::{self, Active, Journal, Step};

const RUNNING: Status = Status::Running { pid: 10, monitor: 11, monitor_start: 1, started: 1 };

fn exited(code: i32) -> Status {
    Status::Exited { code, started: 1, finished: 2, oom_killed: false, error: String::new() }
}

/// A scratch root, removed when dropped.
struct Root(PathBuf);

impl Root {
    fn new(tag: &str) -> Root {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("berth-apply-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Root(p)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone)]
struct Ctr {
    name: String,
    image: String,
    seen: Seen,
    health: Option<(String, String)>,
}

/// The containers and images of a fake agent, and the crash switch: after `crash_after`
/// operations (container changes and journal writes) every further one fails and changes nothing,
/// as if the agent had been killed there.
#[derive(Debug, Default)]
struct World {
    ctrs: BTreeMap<String, Ctr>,
    images: BTreeMap<String, String>,
    /// Images whose containers exit at once with code 1.
    exits: Vec<String>,
    /// Images whose containers cannot be created.
    uncreatable: Vec<String>,
    /// Images whose containers report unhealthy.
    unhealthy: Vec<String>,
    /// Images whose containers have a health check that passes.
    healthy: Vec<String>,
    /// Container operations in order (`create NAME`, `start NAME`, `stop NAME`, `remove NAME`).
    log: Vec<String>,
    /// `load` fails for these (exit 1).
    unloadable: Vec<String>,
    /// A pull that takes this long, writing `512 1024` as the `berth pull` child's progress.
    slow_pull: Option<Duration>,
    next_id: u32,
    networks: std::collections::BTreeSet<String>,
    volumes: std::collections::BTreeSet<String>,
    ops: usize,
    crash_after: Option<usize>,
    crashed: bool,
}

impl World {
    fn tick(&mut self) -> Result<()> {
        if self.crashed {
            return Err(Error::invalid("crashed"));
        }
        if self.crash_after == Some(self.ops) {
            self.crashed = true;
            return Err(Error::invalid("crashed"));
        }
        self.ops += 1;
        Ok(())
    }

    fn named(&self, name: &str) -> Vec<(&String, &Ctr)> {
        self.ctrs.iter().filter(|(_, c)| c.name == name).collect()
    }
}

#[derive(Clone)]
struct Fake(Rc<RefCell<World>>);

impl Containers for Fake {
    fn find(&self, key: &str) -> Result<String> {
        let w = self.0.borrow();
        if w.ctrs.contains_key(key) {
            return Ok(key.to_string());
        }
        w.named(key).first().map(|(id, _)| id.to_string()).ok_or_else(|| Error::no_such_container(key))
    }
    fn seen(&self, id: &str) -> Option<Seen> {
        self.0.borrow().ctrs.get(id).map(|c| c.seen.clone())
    }
    fn health(&self, id: &str) -> Option<(String, String)> {
        self.0.borrow().ctrs.get(id).and_then(|c| c.health.clone())
    }
    fn image_id(&self, name: &str) -> Result<String> {
        self.0.borrow().images.get(name).cloned().ok_or_else(|| Error::not_found(format!("No such image: {name}")))
    }
    fn set_restart(&self, id: &str, policy: &str) -> Result<()> {
        let mut w = self.0.borrow_mut();
        w.tick()?;
        let c = w.ctrs.get_mut(id).ok_or_else(|| Error::not_found(id))?;
        c.seen.restart = policy.to_string();
        Ok(())
    }
    fn rename(&self, id: &str, name: &str) -> Result<()> {
        let mut w = self.0.borrow_mut();
        w.tick()?;
        if w.ctrs.iter().any(|(i, c)| c.name == name && i != id) {
            return Err(Error::conflict(format!("the name {name} is in use")));
        }
        let c = w.ctrs.get_mut(id).ok_or_else(|| Error::not_found(id))?;
        c.name = name.to_string();
        c.seen.name = name.to_string();
        Ok(())
    }
    fn remove(&self, id: &str) -> Result<()> {
        let mut w = self.0.borrow_mut();
        w.tick()?;
        match w.ctrs.get(id) {
            Some(c) if c.seen.is_running() => Err(Error::conflict(format!("{id} is running"))),
            Some(c) => {
                let entry = format!("remove {}", c.name);
                w.log.push(entry);
                w.ctrs.remove(id);
                Ok(())
            }
            None => Err(Error::not_found(id)),
        }
    }
    fn create(&self, o: &RunOptions) -> Result<String> {
        let mut w = self.0.borrow_mut();
        w.tick()?;
        let name = o.name.clone().unwrap_or_default();
        if !w.named(&name).is_empty() {
            return Err(Error::conflict(format!("the name {name} is in use")));
        }
        if w.uncreatable.contains(&o.image) {
            return Err(Error::invalid(format!("cannot create from {}", o.image)));
        }
        let image_id = w.images.get(&o.image).cloned().ok_or_else(|| Error::not_found(format!("No such image: {}", o.image)))?;
        w.next_id += 1;
        let id = format!("c{}", w.next_id);
        let seen = Seen {
            name: name.clone(),
            image_id,
            restart: o.restart.clone().unwrap_or_else(|| "no".into()),
            status: Status::Created,
            restart_count: 0,
            last_exit: None,
        };
        w.log.push(format!("create {name}"));
        w.ctrs.insert(id.clone(), Ctr { name, image: o.image.clone(), seen, health: None });
        Ok(id)
    }
    fn start(&self, id: &str) -> std::result::Result<(), String> {
        let mut w = self.0.borrow_mut();
        w.tick().map_err(|e| e.to_string())?;
        let (exits, unhealthy) = {
            let c = w.ctrs.get(id).ok_or("no such container")?;
            (w.exits.contains(&c.image), w.unhealthy.contains(&c.image))
        };
        let healthy = w.ctrs.get(id).is_some_and(|c| w.healthy.contains(&c.image));
        let c = w.ctrs.get_mut(id).ok_or("no such container")?;
        c.seen.status = if exits { exited(1) } else { RUNNING };
        c.health = if unhealthy {
            Some(("unhealthy".to_string(), "probe failed".to_string()))
        } else {
            healthy.then(|| ("healthy".to_string(), String::new()))
        };
        let entry = format!("start {}", c.name);
        w.log.push(entry);
        Ok(())
    }
    fn emit(&self, _id: &str, _action: &str) {}
    fn connect(&self, id: &str, a: &berth_proto::wire::AppAttach) -> Result<()> {
        let mut w = self.0.borrow_mut();
        w.tick()?;
        let name = w.ctrs.get(id).map(|c| c.name.clone()).ok_or_else(|| Error::not_found(id))?;
        w.log.push(format!("connect {name} {}", a.network));
        Ok(())
    }
    fn ensure_network(&self, n: &berth_proto::wire::AppNetwork) -> Result<()> {
        let mut w = self.0.borrow_mut();
        if !w.networks.contains(&n.name) {
            w.tick()?;
            w.networks.insert(n.name.clone());
        }
        Ok(())
    }
    fn has_network(&self, name: &str) -> bool {
        self.0.borrow().networks.contains(name)
    }
    fn remove_network(&self, name: &str) -> Result<()> {
        let mut w = self.0.borrow_mut();
        w.tick()?;
        w.networks.remove(name);
        w.log.push(format!("network rm {name}"));
        Ok(())
    }
    fn ensure_volume(&self, v: &berth_proto::wire::AppVolume) -> Result<()> {
        self.0.borrow_mut().volumes.insert(v.name.clone());
        Ok(())
    }
    fn remove_unused_images(&self, ids: &[String]) {
        let mut w = self.0.borrow_mut();
        if w.tick().is_err() {
            return;
        }
        let used: Vec<String> = w.ctrs.values().map(|c| c.seen.image_id.clone()).collect();
        w.images.retain(|_, id| !ids.contains(id) || used.contains(id));
    }
    async fn stop(&self, id: &str) {
        let mut w = self.0.borrow_mut();
        if w.tick().is_err() {
            return;
        }
        if let Some(c) = w.ctrs.get_mut(id) {
            if c.seen.is_running() {
                c.seen.status = exited(137);
                let entry = format!("stop {}", c.name);
                w.log.push(entry);
            }
        }
    }
    async fn load(&self, _root: &Path, data: &Path, errlog: &Path) -> Result<i32> {
        let mut w = self.0.borrow_mut();
        w.tick()?;
        let image = std::fs::read_to_string(data).map_err(|e| Error::io("read data", e))?;
        if w.unloadable.contains(&image) {
            std::fs::write(errlog, "Error: not an image archive\n").map_err(|e| Error::io("write errlog", e))?;
            return Ok(1);
        }
        let id = format!("sha256:{image}");
        w.images.insert(image, id);
        Ok(0)
    }
    async fn pull(&self, root: &Path, reference: &str, _config: Option<&Path>, errlog: &Path) -> Result<i32> {
        let slow = self.0.borrow().slow_pull;
        if let Some(d) = slow {
            let f = berth_runtime::paths::pull_progress_file(root);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, "512 1024\n").unwrap();
            tokio::time::sleep(d).await;
            std::fs::remove_dir_all(f.parent().unwrap()).unwrap();
        }
        let mut w = self.0.borrow_mut();
        w.tick()?;
        if w.unloadable.contains(&reference.to_string()) {
            std::fs::write(errlog, "Error: manifest unknown\n").map_err(|e| Error::io("write errlog", e))?;
            return Ok(1);
        }
        let id = format!("sha256:{}", reference.rsplit_once(':').map_or("", |(_, h)| h));
        w.images.insert(reference.to_string(), id);
        Ok(0)
    }
}

/// The journal's owner: writes go to `root` unless the world has crashed.
struct FakeLedger {
    root: PathBuf,
    journal: Journal,
    world: Rc<RefCell<World>>,
    outcomes: Vec<Outcome>,
    /// What `pull_progress` reported: (id, have, total).
    pulled: RefCell<Vec<(String, u64, u64)>>,
}

impl Ledger for FakeLedger {
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
        self.world.borrow_mut().tick()?;
        self.journal.save(&self.root)
    }
    fn finish(&mut self, o: Outcome) {
        // In memory the update is over either way (so `drive` returns); a crashed agent writes
        // nothing and reports nothing.
        self.journal.active = None;
        if self.world.borrow_mut().tick().is_err() {
            return;
        }
        self.journal.seq = self.journal.seq.max(o.seq);
        self.journal.last = Some(o.clone());
        self.journal.save(&self.root).unwrap();
        self.outcomes.push(o);
    }
    fn state_changed(&mut self) {}
    fn pull_progress(&self, id: &str, have: u64, total: u64) {
        self.pulled.borrow_mut().push((id.to_string(), have, total));
    }
}

fn run_drive(ledger: &Rc<RefCell<FakeLedger>>, world: &Rc<RefCell<World>>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(drive(ledger.clone(), Fake(world.clone())));
}

/// A board running `web` from app:1 with `--restart always`, and app:2 arriving: the journal at
/// `Verified` with the tarball in place.
fn deploy_world(root: &Path, new_image: &str) -> Rc<RefCell<World>> {
    let mut w = World::default();
    w.images.insert("app:1".into(), "sha256:app:1".into());
    let seen = Seen {
        name: "web".into(),
        image_id: "sha256:app:1".into(),
        restart: "always".into(),
        status: RUNNING,
        restart_count: 0,
        last_exit: None,
    };
    w.ctrs.insert("old".into(), Ctr { name: "web".into(), image: "app:1".into(), seen, health: None });
    w.next_id = 100;
    let a = Active {
        id: "u1".into(),
        seq: 1,
        kind: Kind::Deploy,
        name: "web".into(),
        run: ["--name", "web", "--restart", "always", new_image].iter().map(|s| s.to_string()).collect(),
        window: 0,
        keep: 2,
        step: Step::Verified,
        image_id: None,
        old: None,
        new: None,
        reason: String::new(),
        app: None,
    };
    let dir = journal::dir(root).join("u1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(super::transfer::data_path(&dir), new_image).unwrap();
    Journal { active: Some(a), ..Journal::default() }.save(root).unwrap();
    Rc::new(RefCell::new(w))
}

/// An agent (re)starting on `root`: the journal as the disk has it.
fn ledger(root: &Path, world: &Rc<RefCell<World>>) -> Rc<RefCell<FakeLedger>> {
    let journal = Journal::load(root).unwrap();
    Rc::new(RefCell::new(FakeLedger {
        root: root.to_path_buf(),
        journal,
        world: world.clone(),
        outcomes: Vec::new(),
        pulled: RefCell::new(Vec::new()),
    }))
}

/// After an update ended: exactly one running `web`, from `image`, with its policy back, the
/// journal idle and agreeing with the containers.
fn assert_settled(root: &Path, w: &World, image: &str, o: &Outcome) {
    let web = w.named("web");
    assert_eq!(web.len(), 1, "one container named web: {:?}", w.ctrs);
    let (id, c) = web[0];
    assert_eq!(c.image, image, "web runs {image}: {:?}", w.ctrs);
    assert!(c.seen.is_running(), "web runs: {:?}", c.seen);
    assert_eq!(c.seen.restart, "always", "web has its restart policy");
    let j = Journal::load(root).unwrap();
    assert!(j.active.is_none(), "the journal is idle: {:?}", j.active);
    assert_eq!(j.last.as_ref(), Some(o), "the journal's last result is the outcome reported");
    if o.result == "committed" {
        let d = &j.deployments["web"];
        assert_eq!(&d.container, id);
        assert_eq!(d.previous.len(), 1, "the old container is the rollback target: {d:?}");
        let old = &w.ctrs[&d.previous[0].container];
        assert_eq!((old.name.as_str(), old.seen.is_running(), old.seen.restart.as_str()), ("web.prev-0", false, "no"));
        assert_eq!(d.previous[0].restart, "always", "the retired policy is kept for a rollback");
        assert_eq!(w.ctrs.len(), 2, "nothing else is left: {:?}", w.ctrs);
    } else {
        assert_eq!(id, "old", "the old container is back");
        assert_eq!(w.ctrs.len(), 1, "the new container is gone: {:?}", w.ctrs);
        assert!(!j.deployments.contains_key("web"), "a first deploy rolled back leaves no deployment");
    }
}

#[test]
fn a_deploy_commits_and_keeps_the_old_container_as_rollback_target() {
    let root = Root::new("commit");
    let w = deploy_world(&root.0, "app:2");
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!(o.len(), 1);
    assert_eq!((o[0].result.as_str(), o[0].image.as_str()), ("committed", "sha256:app:2"));
    assert_settled(&root.0, &w.borrow(), "app:2", &o[0]);
    assert!(!super::transfer::data_path(&journal::dir(&root.0).join("u1")).exists(), "the tarball goes once loaded");
}

#[test]
fn a_new_container_that_exits_is_rolled_back() {
    let root = Root::new("exits");
    let w = deploy_world(&root.0, "app:2");
    w.borrow_mut().exits.push("app:2".into());
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].result, "rolled_back");
    assert!(o[0].reason.contains("exited with code 1"), "{}", o[0].reason);
    assert_settled(&root.0, &w.borrow(), "app:1", &o[0]);
    assert!(!w.borrow().images.contains_key("app:2"), "the new image goes with the rollback");
}

#[test]
fn unhealthy_or_uncreatable_new_containers_are_rolled_back() {
    for (tag, why) in [("unhealthy", "health check failed"), ("uncreatable", "could not be created")] {
        let root = Root::new(tag);
        let w = deploy_world(&root.0, "app:2");
        match tag {
            "unhealthy" => w.borrow_mut().unhealthy.push("app:2".into()),
            _ => w.borrow_mut().uncreatable.push("app:2".into()),
        }
        let l = ledger(&root.0, &w);
        run_drive(&l, &w);
        let o = l.borrow().outcomes.clone();
        assert_eq!((o.len(), o[0].result.as_str()), (1, "rolled_back"), "{tag}: {o:?}");
        assert!(o[0].reason.contains(why), "{tag}: {}", o[0].reason);
        assert_settled(&root.0, &w.borrow(), "app:1", &o[0]);
    }
}

#[test]
fn an_image_that_does_not_load_fails_and_changes_nothing() {
    let root = Root::new("noload");
    let w = deploy_world(&root.0, "app:2");
    w.borrow_mut().unloadable.push("app:2".into());
    let before = w.borrow().ctrs.clone();
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!((o.len(), o[0].result.as_str()), (1, "failed"));
    assert!(o[0].reason.contains("not an image archive"), "{}", o[0].reason);
    assert_eq!(format!("{:?}", w.borrow().ctrs), format!("{before:?}"), "the old container was not touched");
}

/// `fleet push --pull`: the update dir holds the reference instead of a tarball.
fn pull_world(root: &Path, reference: &str) -> Rc<RefCell<World>> {
    let w = deploy_world(root, reference);
    let dir = journal::dir(root).join("u1");
    std::fs::remove_file(super::transfer::data_path(&dir)).unwrap();
    std::fs::write(journal::pull_path(&dir), reference).unwrap();
    w
}

#[test]
fn a_deploy_by_pull_commits_and_a_failed_pull_changes_nothing() {
    let reference = format!("reg.lan/app@sha256:{}", "d".repeat(64));
    let root = Root::new("pull");
    let w = pull_world(&root.0, &reference);
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!((o.len(), o[0].result.as_str()), (1, "committed"), "{o:?}");
    assert_eq!(o[0].image, format!("sha256:{}", "d".repeat(64)));
    assert_settled(&root.0, &w.borrow(), &reference, &o[0]);
    assert!(!journal::pull_path(&journal::dir(&root.0).join("u1")).exists(), "the update dir goes");
    assert!(l.borrow().pulled.borrow().is_empty(), "a pull that wrote no progress reports none");

    // A pull that runs for a while is reported every second, from the child's progress file.
    let root = Root::new("slowpull");
    let w = pull_world(&root.0, &reference);
    w.borrow_mut().slow_pull = Some(Duration::from_millis(2300));
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    assert_eq!(l.borrow().outcomes[0].result, "committed");
    let p = l.borrow().pulled.borrow().clone();
    assert!(p.len() >= 2 && p.iter().all(|e| *e == ("u1".to_string(), 512, 1024)), "{p:?}");

    let root = Root::new("nopull");
    let w = pull_world(&root.0, &reference);
    w.borrow_mut().unloadable.push(reference.clone());
    let before = w.borrow().ctrs.clone();
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!((o.len(), o[0].result.as_str()), (1, "failed"));
    assert!(o[0].reason.contains("does not pull: Error: manifest unknown"), "{}", o[0].reason);
    assert_eq!(format!("{:?}", w.borrow().ctrs), format!("{before:?}"), "the old container was not touched");
}

#[test]
fn a_rollback_request_brings_the_previous_version_back() {
    let root = Root::new("rollback");
    let w = deploy_world(&root.0, "app:2");
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    assert_eq!(l.borrow().outcomes[0].result, "committed");
    let a = rollback_active(&l.borrow().journal, "u2", 2, "web", &root.0).unwrap();
    assert_eq!(a.step, Step::RollingBack);
    l.borrow_mut().journal.active = Some(a);
    l.borrow().save().unwrap();
    run_drive(&l, &w);
    let o = l.borrow().outcomes[1].clone();
    assert_eq!(o.result, "committed", "{o:?}");
    assert_eq!(o.image, "sha256:app:1");
    let w = w.borrow();
    let web = w.named("web");
    assert_eq!((web.len(), web[0].0.as_str(), web[0].1.seen.is_running()), (1, "old", true), "{:?}", w.ctrs);
    assert_eq!(web[0].1.seen.restart, "always");
    let j = Journal::load(&root.0).unwrap();
    assert_eq!(j.deployments["web"].container, "old");
    assert!(j.deployments["web"].previous.is_empty(), "the restored version is no rollback target of itself");
    assert!(rollback_active(&j, "u3", 3, "web", &root.0).is_err(), "nothing older to roll back to");
}

#[test]
fn a_restart_request_restarts_the_container() {
    let root = Root::new("restart");
    let w = deploy_world(&root.0, "app:2");
    let mut a = Journal::load(&root.0).unwrap().active.unwrap();
    a.kind = Kind::Restart;
    Journal { active: Some(a), ..Journal::default() }.save(&root.0).unwrap();
    w.borrow_mut().ctrs.get_mut("old").unwrap().seen.status = exited(0);
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!((o.len(), o[0].result.as_str(), o[0].reason.as_str()), (1, "committed", "restarted"));
    assert!(w.borrow().ctrs["old"].seen.is_running());
}

/// The agent killed after `k` operations, for every `k` until a run goes through: the next agent
/// resumes from the journal on disk and ends with exactly one `web`, as a commit or a rollback
/// would leave it.
fn crash_everywhere(tag: &str, setup: impl Fn(&mut World), want: &str, image: &str, steps: &[Step]) {
    let mut crashed_somewhere = 0;
    let mut resumed_at: Vec<Step> = Vec::new();
    for k in 0.. {
        let root = Root::new(tag);
        let w = deploy_world(&root.0, "app:2");
        setup(&mut w.borrow_mut());
        w.borrow_mut().crash_after = Some(k);
        let l = ledger(&root.0, &w);
        run_drive(&l, &w);
        if !w.borrow().crashed {
            assert!(k > 3, "{tag}: a deploy takes more than {k} operations");
            break;
        }
        crashed_somewhere += 1;
        assert!(l.borrow().outcomes.is_empty(), "{tag}, crash after {k}: a crashed agent reported {:?}", l.borrow().outcomes);
        // The next agent: same containers, the journal from disk.
        {
            let mut w = w.borrow_mut();
            w.crashed = false;
            w.crash_after = None;
        }
        let l = ledger(&root.0, &w);
        let resumed = l.borrow().journal.active.clone();
        if let Some(a) = &resumed {
            if !resumed_at.contains(&a.step) {
                resumed_at.push(a.step);
            }
        }
        run_drive(&l, &w);
        let o = l.borrow().outcomes.clone();
        match &resumed {
            Some(_) => {
                assert_eq!(o.len(), 1, "{tag}, crash after {k}: one outcome after the resume: {o:?}");
                assert_eq!(o[0].result, want, "{tag}, crash after {k}: {o:?}");
                assert_settled(&root.0, &w.borrow(), image, &o[0]);
            }
            // Crashed after the outcome was written: nothing left to do.
            None => {
                assert!(o.is_empty(), "{tag}, crash after {k}: no second outcome");
                let j = Journal::load(&root.0).unwrap();
                let last = j.last.clone().expect("the outcome was journaled");
                assert_eq!(last.result, want);
                assert_settled(&root.0, &w.borrow(), image, &last);
            }
        }
    }
    println!("{tag}: {crashed_somewhere} crash points, resumed at {resumed_at:?}");
    assert!(crashed_somewhere > 3, "{tag}: crashes were injected ({crashed_somewhere})");
    for s in steps {
        assert!(resumed_at.contains(s), "{tag}: no crash left the journal at {s:?} (resumed at {resumed_at:?})");
    }
}

#[test]
fn a_crash_at_any_point_of_a_deploy_resumes_to_a_commit() {
    let steps = [Step::Verified, Step::Loaded, Step::OldStopped, Step::Started, Step::Committing];
    crash_everywhere("crash-commit", |_| {}, "committed", "app:2", &steps);
}

#[test]
fn a_crash_at_any_point_of_a_failing_deploy_resumes_to_a_rollback() {
    let steps = [Step::Verified, Step::Loaded, Step::OldStopped, Step::RollingBack];
    crash_everywhere("crash-rollback", |w| w.exits.push("app:2".into()), "rolled_back", "app:1", &steps);
}

/// A board whose power went while app:2 was being watched: the journal at `Started`, the new
/// container as the next boot finds it (exited 255, its monitor gone), the old one retired, and
/// the health window's boot recorded as `boot`.
fn cut_while_watching(root: &Path, boot: &str) -> Rc<RefCell<World>> {
    let mut w = World::default();
    w.images.insert("app:1".into(), "sha256:app:1".into());
    w.images.insert("app:2".into(), "sha256:app:2".into());
    let seen = |name: &str, image: &str, restart: &str, status: Status| Seen {
        name: name.into(),
        image_id: format!("sha256:{image}"),
        restart: restart.into(),
        status,
        restart_count: 0,
        last_exit: None,
    };
    let died = Status::Exited {
        code: 255,
        started: 1,
        finished: 2,
        oom_killed: false,
        error: "the container's monitor ended without recording an exit status".into(),
    };
    let old = seen("web.prev-0", "app:1", "no", exited(137));
    w.ctrs.insert("old".into(), Ctr { name: "web.prev-0".into(), image: "app:1".into(), seen: old, health: None });
    let new = seen("web", "app:2", "always", died);
    w.ctrs.insert("c101".into(), Ctr { name: "web".into(), image: "app:2".into(), seen: new, health: None });
    w.next_id = 101;
    let a = Active {
        id: "u1".into(),
        seq: 1,
        kind: Kind::Deploy,
        name: "web".into(),
        run: ["--name", "web", "--restart", "always", "app:2"].iter().map(|s| s.to_string()).collect(),
        window: 0,
        keep: 2,
        step: Step::Started,
        image_id: Some("sha256:app:2".into()),
        old: Some(journal::Retired { container: "old".into(), image_id: "sha256:app:1".into(), restart: "always".into(), seq: 0 }),
        new: Some("c101".into()),
        reason: String::new(),
        app: None,
    };
    let dir = journal::dir(root).join("u1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("watch-boot"), boot).unwrap();
    Journal { active: Some(a), ..Journal::default() }.save(root).unwrap();
    Rc::new(RefCell::new(w))
}

fn this_boot() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("read /proc/sys/kernel/random/boot_id").trim().to_string()
}

#[test]
fn a_power_cut_during_the_health_window_watches_the_new_version_again() {
    // scripts/power-cut seed 5004: the new version was rolled back for the power cut itself.
    let root = Root::new("cut-watch");
    let w = cut_while_watching(&root.0, "an-earlier-boot");
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!(o.len(), 1, "one outcome: {o:?}");
    assert_eq!(o[0].result, "committed", "{o:?}");
    assert_settled(&root.0, &w.borrow(), "app:2", &o[0]);
}

#[test]
fn a_new_version_that_died_in_this_boot_is_still_rolled_back() {
    let root = Root::new("died-watch");
    let w = cut_while_watching(&root.0, &this_boot());
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!(o.len(), 1, "one outcome: {o:?}");
    assert_eq!(o[0].result, "rolled_back", "{o:?}");
    assert!(o[0].reason.contains("exited with code 255"), "{o:?}");
    assert_settled(&root.0, &w.borrow(), "app:1", &o[0]);
}

// ---------------------------------------------------------------------------------------------
// Applications: several services as one revision.

const APP_SERVICES: [(&str, &str, &str); 2] = [("db", "p-db-1", "healthy"), ("web", "p-web-1", "")];

/// A board running application `p` (db:1 healthy, then web:1, both `--restart always`) at seq 1,
/// and revision 2 arriving at `Verified`: db:2 in the tarball, web:`web_tag` on the board.
fn app_world(root: &Path, web_tag: &str) -> Rc<RefCell<World>> {
    use super::journal::{AppDeployment, Deployment, Member, Retired};
    let mut w = World::default();
    let mut services = Vec::new();
    for (i, (svc, name, ready)) in APP_SERVICES.iter().enumerate() {
        let image = format!("{svc}:1");
        w.images.insert(image.clone(), format!("sha256:{image}"));
        w.healthy.push(format!("{svc}:1"));
        w.healthy.push(format!("{svc}:2"));
        let seen = Seen {
            name: name.to_string(),
            image_id: format!("sha256:{image}"),
            restart: "always".into(),
            status: RUNNING,
            restart_count: 0,
            last_exit: None,
        };
        let id = format!("old{i}");
        w.ctrs.insert(
            id.clone(),
            Ctr { name: name.to_string(), image: image.clone(), seen, health: Some(("healthy".into(), String::new())) },
        );
        services.push(Member {
            service: svc.to_string(),
            name: name.to_string(),
            ready: ready.to_string(),
            container: Retired { container: id, image_id: format!("sha256:{image}"), restart: "always".into(), seq: 1 },
        });
    }
    w.images.insert(format!("web:{web_tag}"), format!("sha256:web:{web_tag}"));
    w.next_id = 100;
    let mut j = Journal { seq: 1, ..Journal::default() };
    j.deployments.insert(
        "p".into(),
        Deployment {
            seq: 1,
            update: "u0".into(),
            container: String::new(),
            image_id: String::new(),
            previous: vec![],
            app: Some(AppDeployment { services, previous: vec![], volumes: vec![] }),
        },
    );
    let spec = berth_proto::wire::App {
        services: APP_SERVICES
            .iter()
            .map(|(svc, name, ready)| {
                let tag = if *svc == "web" { web_tag } else { "2" };
                berth_proto::wire::AppService {
                    service: svc.to_string(),
                    run: ["--name", name, "--restart", "always", &format!("{svc}:{tag}")].iter().map(|s| s.to_string()).collect(),
                    ready: ready.to_string(),
                    // web is on a second network, joined between create and start.
                    connect: if *svc == "web" {
                        vec![berth_proto::wire::AppAttach { network: "p_back".into(), aliases: vec!["web".into()], ip: None }]
                    } else {
                        vec![]
                    },
                }
            })
            .collect(),
        networks: vec![berth_proto::wire::AppNetwork {
            name: "p_default".into(),
            subnet: None,
            gateway: None,
            internal: false,
            labels: vec![],
            options: vec![],
        }],
        volumes: vec![],
    };
    let m = berth_proto::wire::Manifest {
        version: 1,
        id: "u1".into(),
        seq: 2,
        kind: Kind::Deploy,
        created: 0,
        targets: vec![],
        groups: vec![],
        name: "p".into(),
        image: None,
        pull: None,
        run: vec![],
        health_window: 0,
        keep: 1,
        app: Some(spec),
    };
    j.active = super::apply_app::deploy_active(&m, &j);
    let dir = journal::dir(root).join("u1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(super::transfer::data_path(&dir), "db:2").unwrap();
    j.save(root).unwrap();
    Rc::new(RefCell::new(w))
}

/// After an application update ended: each service runs once under its name, all from revision
/// `rev`, with its policy; the journal idle and agreeing.
fn assert_app_settled(root: &Path, w: &World, rev: &str, o: &Outcome) {
    for (svc, name, _) in APP_SERVICES {
        let c = w.named(name);
        assert_eq!(c.len(), 1, "one container named {name}: {:?}", w.ctrs);
        let c = c[0].1;
        assert!(c.image.starts_with(&format!("{svc}:")), "{name} runs {}", c.image);
        let want_old = rev == "1";
        assert_eq!(c.image.ends_with(":1"), want_old, "{name} runs {} (revision {rev} wanted): {:?}", c.image, w.ctrs);
        assert!(c.seen.is_running(), "{name} runs: {:?}", c.seen);
        assert_eq!(c.seen.restart, "always", "{name} has its restart policy");
    }
    let j = Journal::load(root).unwrap();
    assert!(j.active.is_none(), "the journal is idle: {:?}", j.active);
    assert_eq!(j.last.as_ref(), Some(o));
    // p_default is new with revision 2: it stays with it, or goes with its rollback.
    assert_eq!(w.networks.contains("p_default"), o.result == "committed", "{o:?}: {:?}", w.networks);
    let d = j.deployments["p"].app.clone().unwrap();
    if o.result == "committed" {
        assert_eq!(d.services.len(), 2);
        assert_eq!(d.previous.len(), 1, "the old revision is the rollback target: {d:?}");
        for m in &d.previous[0] {
            let old = &w.ctrs[&m.container.container];
            assert_eq!((old.name.clone(), old.seen.is_running(), old.seen.restart.as_str()), (format!("{}.prev-1", m.name), false, "no"));
        }
        assert_eq!(w.ctrs.len(), 4, "nothing else is left: {:?}", w.ctrs);
    } else {
        assert_eq!(d.services.iter().map(|m| m.container.container.as_str()).collect::<Vec<_>>(), ["old0", "old1"]);
        assert_eq!(w.ctrs.len(), 2, "the new containers are gone: {:?}", w.ctrs);
    }
}

#[test]
fn an_application_stops_in_reverse_order_starts_in_order_and_commits() {
    let root = Root::new("app-commit");
    let w = app_world(&root.0, "2");
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!((o.len(), o[0].result.as_str(), o[0].name.as_str()), (1, "committed", "p"), "{o:?}");
    assert_app_settled(&root.0, &w.borrow(), "2", &o[0]);
    let log = w.borrow().log.clone();
    assert_eq!(
        log,
        ["stop p-web-1", "stop p-db-1", "create p-db-1", "start p-db-1", "create p-web-1", "connect p-web-1 p_back", "start p-web-1"],
        "the old revision stops last-started first, the new starts in depends_on order, joining its other networks before it starts"
    );
    assert!(w.borrow().networks.contains("p_default"), "the application's network is made");
}

#[test]
fn one_failing_service_rolls_the_whole_application_back() {
    let root = Root::new("app-fail");
    let w = app_world(&root.0, "bad");
    w.borrow_mut().exits.push("web:bad".into());
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!((o.len(), o[0].result.as_str()), (1, "rolled_back"), "{o:?}");
    assert!(o[0].reason.contains("service web") && o[0].reason.contains("exited with code 1"), "{}", o[0].reason);
    assert_app_settled(&root.0, &w.borrow(), "1", &o[0]);
    let log = w.borrow().log.clone();
    let tail: Vec<&str> = log.iter().skip(7).map(String::as_str).collect();
    assert_eq!(
        tail,
        ["remove p-web-1", "stop p-db-1", "remove p-db-1", "network rm p_default", "start p-db-1", "start p-web-1"],
        "new ones go last-started first, then the network the new revision made: {log:?}"
    );
    assert!(!w.borrow().networks.contains("p_default"), "the network the failed revision made is gone");
    let w = w.borrow();
    assert!(!w.images.contains_key("db:2") && !w.images.contains_key("web:bad"), "the new images go: {:?}", w.images);
}

#[test]
fn a_service_that_never_gets_healthy_is_waited_for_then_rolls_back() {
    let root = Root::new("app-nohealth");
    let w = app_world(&root.0, "2");
    w.borrow_mut().unhealthy.push("db:2".into());
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!(o[0].result, "rolled_back", "{o:?}");
    assert!(o[0].reason.starts_with("service db: health check failed"), "{}", o[0].reason);
    assert!(!w.borrow().log.iter().any(|l| l == "create p-web-1"), "web waits for db to be healthy: {:?}", w.borrow().log);
    assert_app_settled(&root.0, &w.borrow(), "1", &o[0]);
}

#[test]
fn an_image_neither_on_the_board_nor_in_the_update_changes_nothing() {
    let root = Root::new("app-noimage");
    let w = app_world(&root.0, "2");
    w.borrow_mut().images.remove("web:2");
    let before = format!("{:?}", w.borrow().ctrs);
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    let o = l.borrow().outcomes.clone();
    assert_eq!(o[0].result, "failed", "{o:?}");
    assert!(o[0].reason.contains("service web: image web:2 is neither on the device nor in the update"), "{}", o[0].reason);
    assert_eq!(format!("{:?}", w.borrow().ctrs), before);
}

#[test]
fn a_rollback_request_brings_the_whole_previous_revision_back() {
    let root = Root::new("app-rollback");
    let w = app_world(&root.0, "2");
    let l = ledger(&root.0, &w);
    run_drive(&l, &w);
    assert_eq!(l.borrow().outcomes[0].result, "committed");
    let a = rollback_active(&l.borrow().journal, "u2", 3, "p", &root.0).unwrap();
    l.borrow_mut().journal.active = Some(a);
    run_drive(&l, &w);
    let o = l.borrow().outcomes[1].clone();
    assert_eq!(o.result, "committed", "{o:?}");
    assert!(o.reason.contains("rolled back to seq 1"), "{}", o.reason);
    let w = w.borrow();
    for (i, (_, name, _)) in APP_SERVICES.iter().enumerate() {
        let c = w.named(name);
        assert_eq!((c.len(), c[0].0.clone(), c[0].1.seen.is_running()), (1, format!("old{i}"), true), "{:?}", w.ctrs);
        assert_eq!(c[0].1.seen.restart, "always");
    }
    assert_eq!(w.ctrs.len(), 2, "{:?}", w.ctrs);
    let j = Journal::load(&root.0).unwrap();
    assert!(j.deployments["p"].app.as_ref().unwrap().previous.is_empty());
}

/// The agent killed after `k` operations of an application update, for every `k`: the next
/// agent ends with the whole old revision or the whole new one.
fn app_crash_everywhere(tag: &str, web_tag: &str, setup: impl Fn(&mut World), want: &str) {
    let mut crashes = 0;
    for k in 0.. {
        let root = Root::new(tag);
        let w = app_world(&root.0, web_tag);
        setup(&mut w.borrow_mut());
        w.borrow_mut().crash_after = Some(k);
        let l = ledger(&root.0, &w);
        run_drive(&l, &w);
        if !w.borrow().crashed {
            assert!(k > 8, "{tag}: an application update takes more than {k} operations");
            break;
        }
        crashes += 1;
        {
            let mut w = w.borrow_mut();
            w.crashed = false;
            w.crash_after = None;
        }
        let l = ledger(&root.0, &w);
        let resumed = l.borrow().journal.active.is_some();
        run_drive(&l, &w);
        let o = match (resumed, l.borrow().outcomes.first()) {
            (true, Some(o)) => o.clone(),
            (true, None) => panic!("{tag}, crash after {k}: no outcome after the resume"),
            (false, _) => Journal::load(&root.0).unwrap().last.expect("the outcome was journaled"),
        };
        assert_eq!(o.result, want, "{tag}, crash after {k}: {o:?}");
        assert_app_settled(&root.0, &w.borrow(), if want == "committed" { "2" } else { "1" }, &o);
    }
    assert!(crashes > 8, "{tag}: crashed at {crashes} points only");
}

#[test]
fn a_crash_at_any_point_of_an_application_update_resumes_to_one_revision() {
    app_crash_everywhere("app-crash-ok", "2", |_| {}, "committed");
    app_crash_everywhere("app-crash-bad", "bad", |w| w.exits.push("web:bad".into()), "rolled_back");
}
