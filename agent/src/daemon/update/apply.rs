//! Applying an update, one journaled step at a time: load, retire the old container, start the
//! new one, watch it for the health window, then commit or roll back. Every step is written to
//! the journal before it is taken and is safe to take twice, so `resume` after a crash at any
//! instant ends with the old or the new version running.

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use berth_runtime::container::record::{Restart, Status};
use berth_runtime::{timefmt, Error, Result};

use super::journal::{Active, Deployment, Retired, Step};
use super::manager::Manager;
use crate::daemon::Shared;
use berth_proto::wire::{Kind, Outcome};

type Upd = Rc<std::cell::RefCell<Manager>>;

/// Runs the active update of `upd`'s journal to its end and reports the outcome.
pub async fn drive(upd: Upd, sup: Shared) {
    // Fault injection (tests/tests/faults.rs): a pause between writing a step to the journal and
    // taking it, so a kill lands in a chosen step.
    let pause = std::env::var("BERTH_UPDATE_STEP_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0);
    loop {
        let Some(a) = upd.borrow().journal.active.clone() else { return };
        if let Some(ms) = pause {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let next = match step(&upd, &sup, &a).await {
            Ok(next) => next,
            Err(e) => Next::Fail(e.to_string()),
        };
        let mut m = upd.borrow_mut();
        let root = m.root.clone();
        let Some(active) = m.journal.active.as_mut() else { return };
        match next {
            Next::Step(s, patch) => {
                active.step = s;
                patch(active);
            }
            Next::RollBack(reason) => {
                crate::warn!("update {}: rolling back: {reason}", active.id);
                active.step = Step::RollingBack;
                active.reason = reason;
            }
            Next::Fail(reason) => {
                // Nothing was changed yet (load or verify failed): the old version runs on.
                crate::warn!("update {}: failed: {reason}", active.id);
                let o = outcome(active, "failed", &reason, "");
                m.finish(o);
                continue;
            }
            Next::Done(o) => {
                m.finish(o);
                continue;
            }
        }
        if let Err(e) = m.journal.save(&root) {
            // Without the journal a crash could not be resumed: stop here, loudly; the next
            // agent start retries from the last step that was written.
            crate::warn!("{e}");
            return;
        }
        m.state_changed();
    }
}

enum Next {
    Step(Step, Box<dyn FnOnce(&mut Active)>),
    RollBack(String),
    Fail(String),
    Done(Outcome),
}

fn outcome(a: &Active, result: &str, reason: &str, image: &str) -> Outcome {
    Outcome {
        id: a.id.clone(),
        seq: a.seq,
        name: a.name.clone(),
        result: result.into(),
        reason: reason.into(),
        image: image.into(),
        time: timefmt::now(),
    }
}

async fn step(upd: &Upd, sup: &Shared, a: &Active) -> Result<Next> {
    match (a.kind, a.step) {
        (Kind::Deploy, Step::Verified) => load(upd, sup, a).await,
        (Kind::Deploy, Step::Loaded) => retire_old(upd, sup, a).await,
        (Kind::Deploy, Step::OldStopped) => start_new(sup, a).await,
        (Kind::Deploy, Step::Started) => watch(sup, a).await,
        (_, Step::Committing) => commit(upd, sup, a).await,
        (_, Step::RollingBack) => roll_back(upd, sup, a).await,
        (Kind::Rollback, _) => Ok(Next::Step(Step::RollingBack, Box::new(|_| {}))),
        (Kind::Restart, _) => restart(sup, a).await,
    }
}

/// `berth load` of the tarball, in a child process: the agent's loop keeps serving (and its
/// memory stays small) while a large image unpacks.
async fn load(upd: &Upd, sup: &Shared, a: &Active) -> Result<Next> {
    let root = upd.borrow().root.clone();
    let dir = super::journal::dir(&root).join(&a.id);
    let data = super::transfer::data_path(&dir);
    let o = berth_proto::run::parse_run_words(&a.run).map_err(Error::invalid)?;
    if !data.exists() {
        // Loaded before an interruption (the tarball goes once the image is in the store).
        let id = sup.borrow().image_id(&o.image).map_err(|e| Error::invalid(format!("the update's tarball is gone and {e}")))?;
        return Ok(Next::Step(Step::Loaded, Box::new(move |a| a.image_id = Some(id))));
    }
    let errlog = dir.join("load.err");
    let err_file = std::fs::File::create(&errlog).map_err(|e| Error::io(format!("create {}", errlog.display()), e))?;
    let child = std::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(&root)
        .args(["load", "-q", "-i"])
        .arg(&data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err_file)
        .spawn()
        .map_err(|e| Error::io("start berth load", e))?;
    // Registered before the next await: the SIGCHLD reaper cannot have seen it yet.
    let rx = sup.borrow_mut().watch_child(child.id() as i32);
    drop(child);
    let code = rx.await.unwrap_or(-1);
    if code != 0 {
        let msg = std::fs::read_to_string(&errlog).unwrap_or_default();
        let line = msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
        return Ok(Next::Fail(format!("the image does not load: {line}")));
    }
    let id = sup.borrow().image_id(&o.image).map_err(|e| Error::invalid(format!("the tarball does not hold {}: {e}", o.image)))?;
    // The tarball is in the store now; its space goes back to the board.
    let _ = std::fs::remove_file(&data);
    Ok(Next::Step(Step::Loaded, Box::new(move |a| a.image_id = Some(id))))
}

fn retired_name(name: &str, seq: u64) -> String {
    format!("{name}.prev-{seq}")
}

/// Stops the container now named `a.name` (if any) with its policy off, and renames it, after
/// recording it (and its policy) in the journal.
async fn retire_old(upd: &Upd, sup: &Shared, a: &Active) -> Result<Next> {
    let old = match &a.old {
        Some(o) => Some(o.clone()),
        None => match sup.borrow().find(&a.name) {
            Ok(id) => {
                let s = sup.borrow();
                let r = s.get(&id).ok_or_else(|| Error::not_found(format!("No such container: {id}")))?;
                let seq = upd.borrow().journal.deployments.get(&a.name).map_or(0, |d| d.seq);
                Some(Retired { container: id.clone(), image_id: r.image_id.to_string(), restart: r.restart.name(), seq })
            }
            Err(_) => None,
        },
    };
    let Some(old) = old else { return Ok(Next::Step(Step::OldStopped, Box::new(|_| {}))) };
    if a.old.is_none() {
        // Journal the old container before touching it.
        let mut m = upd.borrow_mut();
        if let Some(act) = m.journal.active.as_mut() {
            act.old = Some(old.clone());
        }
        let root = m.root.clone();
        m.journal.save(&root)?;
    }
    if sup.borrow().get(&old.container).is_some() {
        sup.borrow_mut().update(&old.container, &Default::default(), Some("no"))?;
        crate::daemon::stop(sup, &old.container, None).await;
        let want = retired_name(&a.name, old.seq);
        let named = sup.borrow().get(&old.container).map(|r| r.name.clone());
        if named.as_deref() != Some(want.as_str()) {
            // A leftover of the same name (an earlier interrupted update) makes way.
            let other = sup.borrow().find(&want);
            if let Ok(other) = other {
                if other != old.container {
                    remove(sup, &other).await;
                }
            }
            sup.borrow_mut().rename(&old.container, &want)?;
        }
    }
    Ok(Next::Step(Step::OldStopped, Box::new(|_| {})))
}

/// Stops (as `berth stop` does: its stop signal, then SIGKILL after its timeout) and removes.
async fn remove(sup: &Shared, id: &str) {
    if sup.borrow().get(id).is_some_and(|r| r.is_running()) {
        crate::daemon::stop(sup, id, None).await;
    }
    if sup.borrow().get(id).is_some() {
        if let Err(e) = sup.borrow_mut().remove_files(id, true) {
            crate::warn!("remove container {id}: {e}");
        }
    }
}

async fn start_new(sup: &Shared, a: &Active) -> Result<Next> {
    // A container of this name that is not ours is what an interrupted create left.
    let existing = sup.borrow().find(&a.name);
    if let Ok(id) = existing {
        if a.old.as_ref().is_none_or(|o| o.container != id) {
            remove(sup, &id).await;
        }
    }
    let o = berth_proto::run::parse_run_words(&a.run).map_err(Error::invalid)?;
    let created = sup.borrow_mut().create(&o);
    let id = match created {
        Ok((id, _)) => id,
        Err(e) => return Ok(Next::RollBack(format!("the new container could not be created: {e}"))),
    };
    let started = sup.borrow_mut().start(&id, None);
    if let Err(e) = started {
        let id2 = id.clone();
        return Ok(Next::Step(
            Step::RollingBack,
            Box::new(move |a| {
                a.new = Some(id2);
                a.reason = format!("the new container did not start: {}", e.msg);
            }),
        ));
    }
    Ok(Next::Step(Step::Started, Box::new(move |a| a.new = Some(id))))
}

/// Why the new container is not good, if it is not.
fn trouble(sup: &Shared, id: &str, restarts: u32) -> Option<String> {
    let s = sup.borrow();
    let Some(r) = s.get(id) else { return Some("the new container disappeared".into()) };
    match &r.status {
        Status::Exited { code, oom_killed: true, .. } => return Some(format!("OOM-killed (exit code {code})")),
        Status::Exited { code, error, .. } if error.is_empty() => return Some(format!("exited with code {code}")),
        Status::Exited { code, error, .. } => return Some(format!("exited with code {code}: {error}")),
        Status::Created => return Some("the new container is not running".into()),
        Status::Running { .. } => {}
    }
    if r.restart_count > restarts {
        return Some(format!("restarted {} times", r.restart_count - restarts));
    }
    match s.health_of(id) {
        Some(("unhealthy", out)) => Some(format!("health check failed: {}", out.trim())),
        _ => None,
    }
}

async fn watch(sup: &Shared, a: &Active) -> Result<Next> {
    let Some(id) = a.new.clone() else { return Ok(Next::RollBack("no new container was recorded".into())) };
    let restarts = sup.borrow().get(&id).map_or(0, |r| r.restart_count);
    let end = tokio::time::Instant::now() + Duration::from_secs(u64::from(a.window));
    loop {
        if let Some(why) = trouble(sup, &id, restarts) {
            return Ok(Next::RollBack(why));
        }
        if tokio::time::Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health = sup.borrow().health_of(&id).map(|(s, out)| (s.to_string(), out));
    match health {
        Some((s, out)) if s != "healthy" => {
            let why = if out.trim().is_empty() { String::new() } else { format!(": {}", out.trim()) };
            Ok(Next::RollBack(format!("health check did not pass within {} s (status {s}){why}", a.window)))
        }
        _ => Ok(Next::Step(Step::Committing, Box::new(|_| {}))),
    }
}

/// The new version stays: the old container becomes the newest rollback target; targets beyond
/// `keep` are removed with their images.
async fn commit(upd: &Upd, sup: &Shared, a: &Active) -> Result<Next> {
    let Some(new) = a.new.clone() else { return Err(Error::invalid(format!("update {}: nothing to commit", a.id))) };
    let (mut previous, image_id) = {
        let m = upd.borrow();
        let prev = m.journal.deployments.get(&a.name).map(|d| d.previous.clone()).unwrap_or_default();
        (prev, a.image_id.clone().unwrap_or_default())
    };
    if let Some(old) = &a.old {
        if !previous.iter().any(|p| p.container == old.container) {
            previous.insert(0, old.clone());
        }
    }
    let dropped: Vec<Retired> = if previous.len() > a.keep as usize { previous.split_off(a.keep as usize) } else { Vec::new() };
    for d in &dropped {
        remove(sup, &d.container).await;
    }
    let gone: Vec<String> = dropped.iter().map(|d| d.image_id.clone()).collect();
    sup.borrow().remove_unused_images(&gone);
    let dep = Deployment { seq: a.seq, update: a.id.clone(), container: new, image_id: image_id.clone(), previous };
    let mut m = upd.borrow_mut();
    m.journal.deployments.insert(a.name.clone(), dep);
    let o = outcome(a, "committed", &a.reason, &image_id);
    drop(m);
    Ok(Next::Done(o))
}

/// Back to `a.old`: the new container goes, the old one gets its name and policy back and runs.
/// Also serves the `rollback` request, where `new` is the current deployment.
async fn roll_back(upd: &Upd, sup: &Shared, a: &Active) -> Result<Next> {
    if let Some(new) = &a.new {
        remove(sup, new).await;
    }
    let new_image = a.image_id.clone();
    let mut image = String::new();
    if let Some(old) = &a.old {
        if sup.borrow().get(&old.container).is_some() {
            let named = sup.borrow().get(&old.container).map(|r| r.name.clone());
            if named.as_deref() != Some(a.name.as_str()) {
                let other = sup.borrow().find(&a.name);
                if let Ok(other) = other {
                    if other != old.container {
                        remove(sup, &other).await;
                    }
                }
                sup.borrow_mut().rename(&old.container, &a.name)?;
            }
            let policy = Restart::parse(&old.restart).map(|p| p.name()).unwrap_or_else(|_| "no".into());
            sup.borrow_mut().update(&old.container, &Default::default(), Some(&policy))?;
            let running = sup.borrow().get(&old.container).is_some_and(|r| r.is_running());
            if !running {
                if let Err(e) = sup.borrow_mut().start(&old.container, None) {
                    crate::warn!("update {}: the previous container did not start again: {}", a.id, e.msg);
                }
            }
            image = old.image_id.clone();
        }
    }
    let mut m = upd.borrow_mut();
    let dep = m.journal.deployments.get(&a.name).cloned();
    match (&a.old, dep) {
        (Some(old), Some(mut d)) if a.kind == Kind::Rollback => {
            d.previous.retain(|p| p.container != old.container);
            m.journal.deployments.insert(
                a.name.clone(),
                Deployment {
                    seq: old.seq,
                    update: a.id.clone(),
                    container: old.container.clone(),
                    image_id: old.image_id.clone(),
                    previous: d.previous,
                },
            );
        }
        _ => {}
    }
    drop(m);
    if a.kind == Kind::Deploy {
        if let Some(img) = new_image.filter(|i| *i != image) {
            sup.borrow().remove_unused_images(&[img]);
        }
        Ok(Next::Done(outcome(a, "rolled_back", &a.reason, &image)))
    } else {
        Ok(Next::Done(outcome(a, "committed", &format!("rolled back to {image}"), &image)))
    }
}

async fn restart(sup: &Shared, a: &Active) -> Result<Next> {
    let id = sup.borrow().find(&a.name)?;
    crate::daemon::stop(sup, &id, None).await;
    sup.borrow_mut().emit(&id, "restart", &[]);
    let res = sup.borrow_mut().start(&id, None);
    let image = sup.borrow().get(&id).map(|r| r.image_id.to_string()).unwrap_or_default();
    Ok(Next::Done(match res {
        Ok(_) => outcome(a, "committed", "restarted", &image),
        Err(e) => outcome(a, "failed", &format!("restart failed: {}", e.msg), &image),
    }))
}

/// A `rollback` request for `name` as an update: the current deployment goes, the newest
/// rollback target comes back.
pub fn rollback_active(j: &super::journal::Journal, id: &str, seq: u64, name: &str, root: &Path) -> Result<Active> {
    let _ = root;
    let d = j.deployments.get(name).ok_or_else(|| Error::not_found(format!("no deployment of {name} to roll back")))?;
    let prev = d.previous.first().cloned().ok_or_else(|| Error::not_found(format!("{name} has no previous version to roll back to")))?;
    Ok(Active {
        id: id.into(),
        seq,
        kind: Kind::Rollback,
        name: name.into(),
        run: Vec::new(),
        window: 0,
        keep: 0,
        step: Step::RollingBack,
        image_id: Some(d.image_id.clone()),
        old: Some(prev),
        new: Some(d.container.clone()),
        reason: String::new(),
    })
}
