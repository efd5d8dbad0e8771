//! Applying an update, one journaled step at a time: load, retire the old container, start the
//! new one, watch it for the health window, then commit or roll back. Every step is written to
//! the journal before it is taken and is safe to take twice, so `resume` after a crash at any
//! instant ends with the old or the new version running.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use berth_runtime::container::record::{Restart, Status};
use berth_runtime::{timefmt, Error, Result};

use super::host::{Containers, Ledger};
use super::journal::{Active, Deployment, Retired, Step};
use berth_proto::wire::{Kind, Outcome};

/// Runs the active update of `upd`'s journal to its end and reports the outcome. The agent passes
/// its `Manager` and supervisor; the unit tests fakes (`host.rs`).
pub async fn drive<L: Ledger, C: Containers>(upd: Rc<RefCell<L>>, sup: C) {
    // Fault injection (tests/tests/faults.rs): a pause between writing a step to the journal and
    // taking it, so a kill lands in a chosen step.
    let pause = std::env::var("BERTH_UPDATE_STEP_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0);
    loop {
        let Some(a) = upd.borrow().journal().active.clone() else { return };
        if let Some(ms) = pause {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let next = match step(&upd, &sup, &a).await {
            Ok(next) => next,
            // An application's old services may be stopped by now: back to them all.
            Err(e) if a.app.is_some() && matches!(a.step, Step::Loaded | Step::OldStopped | Step::Started) => Next::RollBack(e.to_string()),
            Err(e) => Next::Fail(e.to_string()),
        };
        let mut m = upd.borrow_mut();
        let Some(active) = m.journal_mut().active.as_mut() else { return };
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
        if let Err(e) = m.save() {
            // Without the journal a crash could not be resumed: stop here, loudly; the next
            // agent start retries from the last step that was written.
            crate::warn!("{e}");
            return;
        }
        m.state_changed();
    }
}

pub(super) enum Next {
    Step(Step, Box<dyn FnOnce(&mut Active)>),
    RollBack(String),
    Fail(String),
    Done(Outcome),
}

pub(super) fn outcome(a: &Active, result: &str, reason: &str, image: &str) -> Outcome {
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

async fn step<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    if a.app.is_some() && a.kind != Kind::Restart {
        return super::apply_app::step(upd, sup, a).await;
    }
    match (a.kind, a.step) {
        (Kind::Deploy, Step::Verified) => load(upd, sup, a).await,
        (Kind::Deploy, Step::Loaded) => retire_old(upd, sup, a).await,
        (Kind::Deploy, Step::OldStopped) => start_new(sup, a).await,
        (Kind::Deploy, Step::Started) => watch(upd, sup, a).await,
        (_, Step::Committing) => commit(upd, sup, a).await,
        (_, Step::RollingBack) => roll_back(upd, sup, a).await,
        (Kind::Rollback, _) => Ok(Next::Step(Step::RollingBack, Box::new(|_| {}))),
        (Kind::Restart, _) => restart(sup, a).await,
    }
}

/// `berth load` of the tarball (`Containers::load`); the tarball goes once the image is in.
async fn load<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let root = upd.borrow().root();
    let dir = super::journal::dir(&root).join(&a.id);
    let data = super::transfer::data_path(&dir);
    let o = berth_proto::run::parse_run_words(&a.run).map_err(Error::invalid)?;
    let pull = super::journal::pull_path(&dir);
    if let Ok(reference) = std::fs::read_to_string(&pull) {
        // `fleet push --pull`: the store checks every blob against the signed digest, and a
        // pull interrupted by a crash resumes where its bytes stopped.
        if let Err(line) = pull_reporting(upd, sup, &a.id, reference.trim(), &dir).await? {
            return Ok(Next::Fail(format!("the image does not pull: {line}")));
        }
        let id = sup.image_id(&o.image).map_err(|e| Error::invalid(format!("pulled {}, but {e}", reference.trim())))?;
        let _ = std::fs::remove_file(&pull);
        return Ok(Next::Step(Step::Loaded, Box::new(move |a| a.image_id = Some(id))));
    }
    if !data.exists() {
        // Loaded before an interruption (the tarball goes once the image is in the store).
        let id = sup.image_id(&o.image).map_err(|e| Error::invalid(format!("the update's tarball is gone and {e}")))?;
        return Ok(Next::Step(Step::Loaded, Box::new(move |a| a.image_id = Some(id))));
    }
    let errlog = dir.join("load.err");
    let code = sup.load(&root, &data, &errlog).await?;
    if code != 0 {
        let msg = std::fs::read_to_string(&errlog).unwrap_or_default();
        let line = msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
        return Ok(Next::Fail(format!("the image does not load: {line}")));
    }
    let id = sup.image_id(&o.image).map_err(|e| Error::invalid(format!("the tarball does not hold {}: {e}", o.image)))?;
    // The tarball is in the store now; its space goes back to the board.
    let _ = std::fs::remove_file(&data);
    Ok(Next::Step(Step::Loaded, Box::new(move |a| a.image_id = Some(id))))
}

/// `berth pull REFERENCE` in a child (`Containers::pull`), its bytes reported every second while
/// it runs, as a transfer's chunks are. `Err` is the last line of its error output.
pub(super) async fn pull_reporting<L: Ledger, C: Containers>(
    upd: &RefCell<L>,
    sup: &C,
    id: &str,
    reference: &str,
    dir: &Path,
) -> Result<std::result::Result<(), String>> {
    let root = upd.borrow().root();
    std::fs::create_dir_all(dir).map_err(|e| Error::io_at("create", dir, e))?;
    let errlog = dir.join("pull.err");
    let config = upd.borrow().config_path();
    let code = {
        let pulling = sup.pull(&root, reference, config.as_deref(), &errlog);
        tokio::pin!(pulling);
        let progress = berth_runtime::paths::pull_progress_file(&root);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                code = &mut pulling => break code?,
                _ = tick.tick() => {
                    let text = std::fs::read_to_string(&progress).unwrap_or_default();
                    let mut n = text.split_whitespace().map(|w| w.parse::<u64>().ok());
                    if let (Some(Some(have)), Some(Some(total))) = (n.next(), n.next()) {
                        if let Ok(u) = upd.try_borrow() {
                            u.pull_progress(id, have, total);
                        }
                    }
                }
            }
        }
    };
    if code == 0 {
        return Ok(Ok(()));
    }
    let msg = std::fs::read_to_string(&errlog).unwrap_or_default();
    Ok(Err(msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string()))
}

pub(super) fn retired_name(name: &str, seq: u64) -> String {
    format!("{name}.prev-{seq}")
}

/// Stops the container now named `a.name` (if any) with its policy off, and renames it, after
/// recording it (and its policy) in the journal.
async fn retire_old<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let old = match &a.old {
        Some(o) => Some(o.clone()),
        None => match sup.find(&a.name) {
            Ok(id) => {
                let r = sup.seen(&id).ok_or_else(|| Error::no_such_container(&id))?;
                let seq = upd.borrow().journal().deployments.get(&a.name).map_or(0, |d| d.seq);
                Some(Retired { container: id.clone(), image_id: r.image_id, restart: r.restart, seq })
            }
            Err(_) => None,
        },
    };
    let Some(old) = old else { return Ok(Next::Step(Step::OldStopped, Box::new(|_| {}))) };
    if a.old.is_none() {
        // Journal the old container before touching it.
        let mut m = upd.borrow_mut();
        if let Some(act) = m.journal_mut().active.as_mut() {
            act.old = Some(old.clone());
        }
        m.save()?;
    }
    if sup.seen(&old.container).is_some() {
        sup.set_restart(&old.container, "no")?;
        sup.stop(&old.container).await;
        let want = retired_name(&a.name, old.seq);
        let named = sup.seen(&old.container).map(|r| r.name);
        if named.as_deref() != Some(want.as_str()) {
            // A leftover of the same name (an earlier interrupted update) makes way.
            if let Ok(other) = sup.find(&want) {
                if other != old.container {
                    remove(sup, &other).await;
                }
            }
            sup.rename(&old.container, &want)?;
        }
    }
    Ok(Next::Step(Step::OldStopped, Box::new(|_| {})))
}

/// Stops (as `berth stop` does: its stop signal, then SIGKILL after its timeout) and removes.
pub(super) async fn remove<C: Containers>(sup: &C, id: &str) {
    if sup.seen(id).is_some_and(|r| r.is_running()) {
        sup.stop(id).await;
    }
    if sup.seen(id).is_some() {
        if let Err(e) = sup.remove(id) {
            crate::warn!("remove container {id}: {e}");
        }
    }
}

async fn start_new<C: Containers>(sup: &C, a: &Active) -> Result<Next> {
    // A container of this name that is not ours is what an interrupted create left.
    if let Ok(id) = sup.find(&a.name) {
        if a.old.as_ref().is_none_or(|o| o.container != id) {
            remove(sup, &id).await;
        }
    }
    let o = berth_proto::run::parse_run_words(&a.run).map_err(Error::invalid)?;
    let id = match sup.create(&o) {
        Ok(id) => id,
        Err(e) => return Ok(Next::RollBack(format!("the new container could not be created: {e}"))),
    };
    if let Err(e) = sup.start(&id) {
        let id2 = id.clone();
        return Ok(Next::Step(
            Step::RollingBack,
            Box::new(move |a| {
                a.new = Some(id2);
                a.reason = format!("the new container did not start: {e}");
            }),
        ));
    }
    Ok(Next::Step(Step::Started, Box::new(move |a| a.new = Some(id))))
}

/// Why the new container is not good, if it is not.
pub(super) fn trouble<C: Containers>(sup: &C, id: &str, restarts: u32) -> Option<String> {
    let Some(r) = sup.seen(id) else { return Some("the new container disappeared".into()) };
    match &r.status {
        Status::Exited { code, oom_killed: true, .. } => return Some(format!("OOM-killed (exit code {code})")),
        Status::Exited { code, error, .. } if error.is_empty() => return Some(format!("exited with code {code}")),
        Status::Exited { code, error, .. } => return Some(format!("exited with code {code}: {error}")),
        Status::Created => return Some("the new container is not running".into()),
        Status::Running { .. } => {}
    }
    if r.restart_count > restarts {
        let n = r.restart_count - restarts;
        return Some(match r.last_exit {
            Some((code, true)) => format!("OOM-killed (exit code {code}), restarted {n} times"),
            Some((code, false)) => format!("exited with code {code}, restarted {n} times"),
            None => format!("restarted {n} times"),
        });
    }
    match sup.health(id) {
        Some((s, out)) if s == "unhealthy" => Some(format!("health check failed: {}", out.trim())),
        _ => None,
    }
}

/// The kernel's id of this boot: it changes when the board restarts.
pub(super) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `<root>/updates/<id>/watch-boot`: the boot a health window was started in. The power going
/// during the window stops the new container with everything else, which says nothing against the
/// new version: after such a reboot the container is started again and watched for a whole window
/// (found by scripts/power-cut, seed 5004: a good update rolled back as "exited with code 255").
/// An agent restarted in the same boot finds the container still running under its monitor, and
/// a container that really died stays a reason to roll back.
pub(super) fn watch_boot_path(root: &Path, id: &str) -> std::path::PathBuf {
    super::journal::dir(root).join(id).join("watch-boot")
}

async fn watch<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let Some(id) = a.new.clone() else { return Ok(Next::RollBack("no new container was recorded".into())) };
    let mark = watch_boot_path(&upd.borrow().root(), &a.id);
    let now = boot_id();
    let then = std::fs::read_to_string(&mark).ok().map(|s| s.trim().to_string());
    match (&then, &now) {
        (Some(then), Some(now)) if then != now => {
            crate::info!("update {}: the board restarted during the health window: watching the new container again", a.id);
            if !sup.seen(&id).is_some_and(|r| r.is_running()) {
                if let Err(e) = sup.start(&id) {
                    return Ok(Next::RollBack(format!("the new container did not start again after the board restarted: {e}")));
                }
            }
        }
        _ => {}
    }
    if let Some(now) = now.filter(|n| then.as_deref() != Some(n.as_str())) {
        if let Some(dir) = mark.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = berth_runtime::fsutil::atomic_write(&mark, now.as_bytes()) {
            crate::warn!("update {}: {e}", a.id);
        }
    }
    let restarts = sup.seen(&id).map_or(0, |r| r.restart_count);
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
    match sup.health(&id) {
        Some((s, out)) if s != "healthy" => {
            let why = if out.trim().is_empty() { String::new() } else { format!(": {}", out.trim()) };
            Ok(Next::RollBack(format!("health check did not pass within {} s (status {s}){why}", a.window)))
        }
        _ => Ok(Next::Step(Step::Committing, Box::new(|_| {}))),
    }
}

/// The new version stays: the old container becomes the newest rollback target; targets beyond
/// `keep` are removed with their images.
async fn commit<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let Some(new) = a.new.clone() else { return Err(Error::invalid(format!("update {}: nothing to commit", a.id))) };
    let (mut previous, image_id) = {
        let m = upd.borrow();
        let prev = m.journal().deployments.get(&a.name).map(|d| d.previous.clone()).unwrap_or_default();
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
    sup.remove_unused_images(&gone);
    let dep = Deployment { seq: a.seq, update: a.id.clone(), container: new, image_id: image_id.clone(), previous, app: None };
    let mut m = upd.borrow_mut();
    m.journal_mut().deployments.insert(a.name.clone(), dep);
    let o = outcome(a, "committed", &a.reason, &image_id);
    drop(m);
    Ok(Next::Done(o))
}

/// Back to `a.old`: the new container goes, the old one gets its name and policy back and runs.
/// Also serves the `rollback` request, where `new` is the current deployment.
async fn roll_back<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    if let Some(new) = &a.new {
        remove(sup, new).await;
    }
    let new_image = a.image_id.clone();
    let mut image = String::new();
    if let Some(old) = &a.old {
        if sup.seen(&old.container).is_some() {
            if let Some(e) = reinstate(sup, old, &a.name).await? {
                crate::warn!("update {}: the previous container did not start again: {e}", a.id);
            }
            image = old.image_id.clone();
        }
    }
    let mut m = upd.borrow_mut();
    let dep = m.journal().deployments.get(&a.name).cloned();
    match (&a.old, dep) {
        (Some(old), Some(mut d)) if a.kind == Kind::Rollback => {
            d.previous.retain(|p| p.container != old.container);
            m.journal_mut().deployments.insert(
                a.name.clone(),
                Deployment {
                    seq: old.seq,
                    update: a.id.clone(),
                    container: old.container.clone(),
                    image_id: old.image_id.clone(),
                    previous: d.previous,
                    app: None,
                },
            );
        }
        _ => {}
    }
    drop(m);
    if a.kind == Kind::Deploy {
        if let Some(img) = new_image.filter(|i| *i != image) {
            sup.remove_unused_images(&[img]);
        }
        Ok(Next::Done(outcome(a, "rolled_back", &a.reason, &image)))
    } else {
        Ok(Next::Done(outcome(a, "committed", &format!("rolled back to {image}"), &image)))
    }
}

/// A retired container back in service: its name (a leftover of that name makes way) and restart
/// policy back, started unless it runs. Returns the start's error, if it did not start.
pub(super) async fn reinstate<C: Containers>(sup: &C, old: &Retired, name: &str) -> Result<Option<String>> {
    if sup.seen(&old.container).map(|r| r.name).as_deref() != Some(name) {
        if let Ok(other) = sup.find(name) {
            if other != old.container {
                remove(sup, &other).await;
            }
        }
        sup.rename(&old.container, name)?;
    }
    let policy = Restart::parse(&old.restart).map(|p| p.name()).unwrap_or_else(|_| "no".into());
    sup.set_restart(&old.container, &policy)?;
    if sup.seen(&old.container).is_some_and(|r| r.is_running()) {
        return Ok(None);
    }
    Ok(sup.start(&old.container).err())
}

async fn restart<C: Containers>(sup: &C, a: &Active) -> Result<Next> {
    let id = sup.find(&a.name)?;
    sup.stop(&id).await;
    sup.emit(&id, "restart");
    let res = sup.start(&id);
    let image = sup.seen(&id).map(|r| r.image_id).unwrap_or_default();
    Ok(Next::Done(match res {
        Ok(()) => outcome(a, "committed", "restarted", &image),
        Err(e) => outcome(a, "failed", &format!("restart failed: {e}"), &image),
    }))
}

/// A `rollback` request for `name` as an update: the current deployment goes, the newest
/// rollback target comes back.
pub fn rollback_active(j: &super::journal::Journal, id: &str, seq: u64, name: &str, root: &Path) -> Result<Active> {
    let _ = root;
    let d = j.deployments.get(name).ok_or_else(|| Error::not_found(format!("no deployment of {name} to roll back")))?;
    if d.app.is_some() {
        return super::apply_app::rollback_active(d, id, seq, name);
    }
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
        app: None,
    })
}
