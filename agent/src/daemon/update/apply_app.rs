//! Applying an application update (`fleet push --app`): its services are one revision. The steps
//! are a deploy's (`apply.rs`), each taken for every service: all images are in the store before
//! anything stops; the old services stop and are retired (renamed `NAME.prev-SEQ`, policy off) in
//! reverse start order; the new ones start in start order, each waited for as later services need
//! it (running, healthy, or exited 0); all are watched for the health window; then the revision
//! commits, or every service goes back: new containers removed in reverse order, old ones renamed
//! back, their policies restored, started in order. Each service's old and new container is
//! written to the journal before it is touched, so a crash anywhere resumes to one revision.

use std::cell::RefCell;
use std::time::Duration;

use berth_runtime::container::record::Status;
use berth_runtime::{Error, Result};

use super::apply::{boot_id, outcome, remove, retired_name, trouble, watch_boot_path, Next};
use super::host::{Containers, Ledger};
use super::journal::{self, Active, AppDeployment, AppRun, Deployment, Member, Retired, Step, Unit};
use berth_proto::wire::{Kind, Manifest};

/// How long a service may take to become what later services wait for, beyond the window.
const READY_SLACK: Duration = Duration::from_secs(60);

fn app_of(a: &Active) -> Result<AppRun> {
    a.app.clone().ok_or_else(|| Error::invalid(format!("update {} is not an application update", a.id)))
}

/// Writes `f`'s change to the active update's application entry, then the journal.
fn journal_unit<L: Ledger>(upd: &RefCell<L>, i: usize, f: impl FnOnce(&mut Unit)) -> Result<()> {
    let mut m = upd.borrow_mut();
    if let Some(u) = m.journal_mut().active.as_mut().and_then(|a| a.app.as_mut()).and_then(|app| app.units.get_mut(i)) {
        f(u);
    }
    m.save()
}

pub(super) async fn step<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    match a.step {
        Step::Verified => load(upd, sup, a).await,
        Step::Loaded => retire(upd, sup, a).await,
        Step::OldStopped => start(upd, sup, a).await,
        Step::Started => watch(upd, sup, a).await,
        Step::Committing => commit(upd, sup, a).await,
        Step::RollingBack => roll_back(upd, sup, a).await,
    }
}

/// The tarball (if the update carried one) into the store, then every service's image found:
/// an image that is neither on the device nor in the update fails the update before anything
/// of the old revision stops.
async fn load<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let root = upd.borrow().root();
    let dir = journal::dir(&root).join(&a.id);
    let data = super::transfer::data_path(&dir);
    if data.exists() {
        let errlog = dir.join("load.err");
        let code = sup.load(&root, &data, &errlog).await?;
        if code != 0 {
            let msg = std::fs::read_to_string(&errlog).unwrap_or_default();
            let line = msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
            return Ok(Next::Fail(format!("the images do not load: {line}")));
        }
        let _ = std::fs::remove_file(&data);
    }
    let app = app_of(a)?;
    let mut ids = Vec::new();
    for u in &app.units {
        if u.run.is_empty() {
            ids.push(None);
            continue;
        }
        let o = berth_proto::run::parse_run_words(&u.run).map_err(Error::invalid)?;
        if sup.image_id(&o.image).is_err() && berth_proto::wire::valid_pull(&o.image) {
            // Pinned by digest (in the signed manifest): the device's registry or mirror has it,
            // and the store checks every blob against that digest.
            if !cfg!(feature = "registry") {
                return Ok(Next::Fail(format!(
                    "service {}: image {} is not on the device, and this firmware was built without registry support to pull it (send it in the update: berth fleet push --app FILE IMAGES.tar)",
                    u.service, o.image
                )));
            }
            // The phase shows at once, as `fleet push --pull`'s does when it begins (a small
            // image is in before its bytes are first counted).
            upd.borrow().pull_progress(&a.id, 0, 0);
            if let Err(line) = super::apply::pull_reporting(upd, sup, &a.id, &o.image, &dir).await? {
                return Ok(Next::Fail(format!("service {}: image {} does not pull: {line}", u.service, o.image)));
            }
        }
        match sup.image_id(&o.image) {
            Ok(id) => ids.push(Some(id)),
            Err(_) => {
                return Ok(Next::Fail(format!(
                    "service {}: image {} is neither on the device nor in the update (pin it by digest, NAME@sha256:..., for the device to pull it)",
                    u.service, o.image
                )))
            }
        }
    }
    Ok(Next::Step(
        Step::Loaded,
        Box::new(move |a| {
            if let Some(app) = a.app.as_mut() {
                for (u, id) in app.units.iter_mut().zip(ids) {
                    u.image_id = id;
                }
            }
        }),
    ))
}

/// The old revision's services, last started first: each recorded, then stopped with its policy
/// off and renamed.
async fn retire<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let app = app_of(a)?;
    let seq = upd.borrow().journal().deployments.get(&a.name).map_or(0, |d| d.seq);
    for (i, u) in app.units.iter().enumerate().rev() {
        let old = match &u.old {
            Some(o) => Some(o.clone()),
            None => match sup.find(&u.name) {
                Ok(id) => {
                    let r = sup.seen(&id).ok_or_else(|| Error::no_such_container(&id))?;
                    Some(Retired { container: id, image_id: r.image_id, restart: r.restart, seq })
                }
                Err(_) => None,
            },
        };
        let Some(old) = old else { continue };
        if u.old.is_none() {
            let rec = old.clone();
            journal_unit(upd, i, move |u| u.old = Some(rec))?;
        }
        if sup.seen(&old.container).is_some() {
            sup.set_restart(&old.container, "no")?;
            sup.stop(&old.container).await;
            let want = retired_name(&u.name, old.seq);
            if sup.seen(&old.container).map(|r| r.name).as_deref() != Some(want.as_str()) {
                if let Ok(other) = sup.find(&want) {
                    if other != old.container {
                        remove(sup, &other).await;
                    }
                }
                sup.rename(&old.container, &want)?;
            }
        }
    }
    Ok(Next::Step(Step::OldStopped, Box::new(|_| {})))
}

/// Networks and volumes, then the new services in start order, each waited for as later ones
/// need it.
async fn start<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let app = app_of(a)?;
    for n in &app.networks {
        if !sup.has_network(&n.name) && !app.made.contains(&n.name) {
            // Journaled before it is made, so that a rollback after any crash removes it.
            let mut m = upd.borrow_mut();
            if let Some(run) = m.journal_mut().active.as_mut().and_then(|a| a.app.as_mut()) {
                run.made.push(n.name.clone());
            }
            m.save()?;
        }
        if let Err(e) = sup.ensure_network(n) {
            return Ok(Next::RollBack(format!("network {}: {e}", n.name)));
        }
    }
    for v in &app.volumes {
        if let Err(e) = sup.ensure_volume(v) {
            return Ok(Next::RollBack(format!("volume {}: {e}", v.name)));
        }
    }
    // Revision-bound volumes as the old revision left them (its services are stopped now).
    let (root, old_seq) = {
        let m = upd.borrow();
        (m.root(), m.journal().deployments.get(&a.name).map_or(0, |d| d.seq))
    };
    if old_seq > 0 {
        for v in app.volumes.iter().filter(|v| v.revision_bound) {
            match super::snapshot::take(&root, &v.name, old_seq) {
                Ok(Some(n)) => crate::info!(
                    "update {}: volume {} kept as seq {old_seq} left it ({} files cloned, {} copied)",
                    a.id,
                    v.name,
                    n.cloned,
                    n.copied
                ),
                Ok(None) => {}
                Err(e) => return Ok(Next::RollBack(format!("volume {}: snapshot: {e}", v.name))),
            }
        }
    }
    for (i, u) in app.units.iter().enumerate() {
        if u.run.is_empty() {
            continue;
        }
        let id = match u.new.clone().filter(|id| sup.seen(id).is_some()) {
            Some(id) => id,
            None => {
                // A container of this name that is not the old one is what an interrupted
                // create left.
                if let Ok(id) = sup.find(&u.name) {
                    if u.old.as_ref().is_none_or(|o| o.container != id) {
                        remove(sup, &id).await;
                    }
                }
                let o = berth_proto::run::parse_run_words(&u.run).map_err(Error::invalid)?;
                let id = match sup.create(&o) {
                    Ok(id) => id,
                    Err(e) => return Ok(Next::RollBack(format!("service {}: the container could not be created: {e}", u.service))),
                };
                // Its other networks before it is journaled: a crash in between leaves a
                // container of this name that the next try removes and makes again.
                for n in &u.connect {
                    if let Err(e) = sup.connect(&id, n) {
                        return Ok(Next::RollBack(format!("service {}: network {}: {e}", u.service, n.network)));
                    }
                }
                let rec = id.clone();
                journal_unit(upd, i, move |u| u.new = Some(rec))?;
                id
            }
        };
        let done = u.ready == "completed" && sup.seen(&id).is_some_and(|r| matches!(r.status, Status::Exited { code: 0, .. }));
        if !done && !sup.seen(&id).is_some_and(|r| r.is_running()) {
            if let Err(e) = sup.start(&id) {
                return Ok(Next::RollBack(format!("service {}: the container did not start: {e}", u.service)));
            }
        }
        if let Some(why) = wait_ready(sup, u, &id, a.window).await {
            return Ok(Next::RollBack(format!("service {}: {why}", u.service)));
        }
    }
    Ok(Next::Step(Step::Started, Box::new(|_| {})))
}

/// Waits until `id` is what later services wait for (`u.ready`); why not, if it fails.
async fn wait_ready<C: Containers>(sup: &C, u: &Unit, id: &str, window: u32) -> Option<String> {
    let end = tokio::time::Instant::now() + Duration::from_secs(u64::from(window)) + READY_SLACK;
    let restarts = sup.seen(id).map_or(0, |r| r.restart_count);
    loop {
        let Some(r) = sup.seen(id) else { return Some("the container disappeared".into()) };
        match u.ready.as_str() {
            "completed" => match r.status {
                Status::Exited { code: 0, .. } => return None,
                Status::Exited { code, .. } => return Some(format!("exited with code {code} (later services wait for it to complete)")),
                _ => {}
            },
            "healthy" => {
                if let Some(why) = trouble(sup, id, restarts) {
                    return Some(why);
                }
                match sup.health(id) {
                    None => return Some("later services wait for it to be healthy, but it has no health check".into()),
                    Some((s, _)) if s == "healthy" => return None,
                    Some(_) => {}
                }
            }
            _ => return trouble(sup, id, restarts).filter(|_| !r.is_running()),
        }
        if tokio::time::Instant::now() >= end {
            let status = sup.health(id).map(|(s, _)| s).unwrap_or_else(|| "running".into());
            return Some(format!(
                "not {} within {} s (status {status})",
                u.ready,
                (Duration::from_secs(u64::from(window)) + READY_SLACK).as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every new service for the health window: a service that dies, restarts, or turns unhealthy
/// rolls the whole revision back; one that later services waited on to complete may have ended.
async fn watch<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let app = app_of(a)?;
    let units: Vec<(&Unit, String)> = app.units.iter().filter_map(|u| u.new.clone().map(|id| (u, id))).collect();
    let done =
        |u: &Unit, id: &str| u.ready == "completed" && sup.seen(id).is_some_and(|r| matches!(r.status, Status::Exited { code: 0, .. }));
    // The board restarting during the window stops everything with it (see apply::watch).
    let mark = watch_boot_path(&upd.borrow().root(), &a.id);
    let now = boot_id();
    let then = std::fs::read_to_string(&mark).ok().map(|s| s.trim().to_string());
    if let (Some(then), Some(now)) = (&then, &now) {
        if then != now {
            crate::info!("update {}: the board restarted during the health window: watching the new services again", a.id);
            for (u, id) in &units {
                if !done(u, id) && !sup.seen(id).is_some_and(|r| r.is_running()) {
                    if let Err(e) = sup.start(id) {
                        return Ok(Next::RollBack(format!("service {}: did not start again after the board restarted: {e}", u.service)));
                    }
                }
            }
        }
    }
    if let Some(now) = now.filter(|n| then.as_deref() != Some(n.as_str())) {
        if let Some(dir) = mark.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = berth_runtime::fsutil::atomic_write(&mark, now.as_bytes()) {
            crate::warn!("update {}: {e}", a.id);
        }
    }
    let restarts: Vec<u32> = units.iter().map(|(_, id)| sup.seen(id).map_or(0, |r| r.restart_count)).collect();
    let end = tokio::time::Instant::now() + Duration::from_secs(u64::from(a.window));
    loop {
        for ((u, id), base) in units.iter().zip(&restarts) {
            if done(u, id) {
                continue;
            }
            if let Some(why) = trouble(sup, id, *base) {
                return Ok(Next::RollBack(format!("service {}: {why}", u.service)));
            }
        }
        if tokio::time::Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (u, id) in &units {
        if done(u, id) {
            continue;
        }
        if let Some((s, out)) = sup.health(id).filter(|(s, _)| s != "healthy") {
            let why = if out.trim().is_empty() { String::new() } else { format!(": {}", out.trim()) };
            return Ok(Next::RollBack(format!("service {}: health check did not pass within {} s (status {s}){why}", u.service, a.window)));
        }
    }
    Ok(Next::Step(Step::Committing, Box::new(|_| {})))
}

fn members(units: &[Unit], pick: impl Fn(&Unit) -> Option<Retired>) -> Vec<Member> {
    units
        .iter()
        .filter_map(|u| pick(u).map(|c| Member { service: u.service.clone(), name: u.name.clone(), ready: u.ready.clone(), container: c }))
        .collect()
}

/// The new revision stays: the old one becomes the newest rollback target; revisions beyond
/// `keep` go with their containers and images.
async fn commit<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let app = app_of(a)?;
    let mut previous = upd.borrow().journal().deployments.get(&a.name).and_then(|d| d.app.clone()).map(|d| d.previous).unwrap_or_default();
    let old = members(&app.units, |u| u.old.clone());
    if !old.is_empty() && !previous.contains(&old) {
        previous.insert(0, old);
    }
    let dropped = if previous.len() > a.keep as usize { previous.split_off(a.keep as usize) } else { Vec::new() };
    let bound: Vec<String> = app.volumes.iter().filter(|v| v.revision_bound).map(|v| v.name.clone()).collect();
    let kept: Vec<u64> = previous.iter().filter_map(|r| r.first().map(|m| m.container.seq)).collect();
    let root = upd.borrow().root();
    for v in &bound {
        super::snapshot::prune(&root, v, &kept);
    }
    let mut gone = Vec::new();
    for m in dropped.iter().flatten() {
        remove(sup, &m.container.container).await;
        gone.push(m.container.image_id.clone());
    }
    sup.remove_unused_images(&gone);
    let services = members(&app.units, |u| {
        let id = u.new.clone()?;
        let restart = sup.seen(&id).map(|r| r.restart).unwrap_or_else(|| "no".into());
        Some(Retired { container: id, image_id: u.image_id.clone().unwrap_or_default(), restart, seq: a.seq })
    });
    let dep = Deployment {
        seq: a.seq,
        update: a.id.clone(),
        container: String::new(),
        image_id: String::new(),
        previous: Vec::new(),
        app: Some(AppDeployment { services, previous, volumes: bound }),
    };
    upd.borrow_mut().journal_mut().deployments.insert(a.name.clone(), dep);
    Ok(Next::Done(outcome(a, "committed", &a.reason, "")))
}

/// Every service back to `old`: the new containers go (last started first), the old ones get
/// their names and policies back and start in start order. Also serves `rollback APP`, where
/// `new` are the current revision's containers.
async fn roll_back<L: Ledger, C: Containers>(upd: &RefCell<L>, sup: &C, a: &Active) -> Result<Next> {
    let app = app_of(a)?;
    for u in app.units.iter().rev() {
        if let Some(new) = &u.new {
            remove(sup, new).await;
        }
    }
    let mut trouble = Vec::new();
    // The networks the new revision made go with its containers (the old one did not use them).
    for n in app.made.iter().filter(|n| sup.has_network(n)) {
        if let Err(e) = sup.remove_network(n) {
            trouble.push(format!("network {n}: {e}"));
        }
    }
    // Revision-bound volumes back to what the old revision last saw, before it starts again.
    if let Some(seq) = app.units.iter().find_map(|u| u.old.as_ref().map(|o| o.seq)) {
        let root = upd.borrow().root();
        for v in app.volumes.iter().filter(|v| v.revision_bound) {
            match super::snapshot::restore(&root, &v.name, seq) {
                Ok(true) => crate::info!("update {}: volume {} is back as seq {seq} left it", a.id, v.name),
                Ok(false) => {}
                Err(e) => trouble.push(format!("volume {}: {e}", v.name)),
            }
        }
    }
    for u in &app.units {
        let Some(old) = &u.old else { continue };
        if sup.seen(&old.container).is_none() {
            trouble.push(format!("{}: its previous container {} is gone", u.service, old.container));
            continue;
        }
        if let Some(e) = super::apply::reinstate(sup, old, &u.name).await? {
            crate::warn!("update {}: service {}: the previous container did not start again: {e}", a.id, u.service);
            trouble.push(format!("{}: the previous container did not start again: {e}", u.service));
        }
    }
    if a.kind == Kind::Rollback {
        let back = members(&app.units, |u| u.old.clone());
        let seq = back.first().map_or(0, |m| m.container.seq);
        let mut m = upd.borrow_mut();
        if let Some(d) = m.journal().deployments.get(&a.name).cloned() {
            let d_volumes = d.app.as_ref().map(|x| x.volumes.clone()).unwrap_or_default();
            let mut prev = d.app.map(|x| x.previous).unwrap_or_default();
            prev.retain(|r| *r != back);
            let dep = Deployment {
                seq,
                update: a.id.clone(),
                container: String::new(),
                image_id: String::new(),
                previous: Vec::new(),
                app: Some(AppDeployment { services: back, previous: prev, volumes: d_volumes }),
            };
            m.journal_mut().deployments.insert(a.name.clone(), dep);
        }
        drop(m);
        let note = if trouble.is_empty() { String::new() } else { format!(" ({})", trouble.join("; ")) };
        return Ok(Next::Done(outcome(a, "committed", &format!("rolled back to seq {seq}{note}"), "")));
    }
    let olds: Vec<String> = app.units.iter().filter_map(|u| u.old.as_ref().map(|o| o.image_id.clone())).collect();
    let news: Vec<String> = app.units.iter().filter_map(|u| u.image_id.clone()).filter(|i| !olds.contains(i)).collect();
    sup.remove_unused_images(&news);
    let reason = if trouble.is_empty() { a.reason.clone() } else { format!("{} (and {})", a.reason, trouble.join("; ")) };
    Ok(Next::Done(outcome(a, "rolled_back", &reason, "")))
}

/// The journal entry of an application deploy: the manifest's services in start order, then the
/// services of the current revision that the new one no longer has (retired with it).
pub fn deploy_active(m: &Manifest, j: &journal::Journal) -> Option<Active> {
    let spec = m.app.as_ref()?;
    let mut units: Vec<Unit> = spec
        .services
        .iter()
        .map(|s| Unit {
            service: s.service.clone(),
            name: s.name().unwrap_or_default(),
            run: s.run.clone(),
            ready: s.ready.clone(),
            connect: s.connect.clone(),
            image_id: None,
            old: None,
            new: None,
        })
        .collect();
    if let Some(cur) = j.deployments.get(&m.name).and_then(|d| d.app.as_ref()) {
        for s in &cur.services {
            if !units.iter().any(|u| u.name == s.name) {
                units.push(Unit {
                    service: s.service.clone(),
                    name: s.name.clone(),
                    run: Vec::new(),
                    ready: s.ready.clone(),
                    connect: Vec::new(),
                    image_id: None,
                    old: None,
                    new: None,
                });
            }
        }
    }
    Some(Active {
        id: m.id.clone(),
        seq: m.seq,
        kind: Kind::Deploy,
        name: m.name.clone(),
        run: Vec::new(),
        window: m.health_window,
        keep: m.keep,
        step: Step::Verified,
        image_id: None,
        old: None,
        new: None,
        reason: String::new(),
        app: Some(AppRun { units, networks: spec.networks.clone(), volumes: spec.volumes.clone(), made: Vec::new() }),
    })
}

/// `rollback APP`: the current revision goes, the newest kept one comes back.
pub fn rollback_active(d: &Deployment, id: &str, seq: u64, name: &str) -> Result<Active> {
    let cur = d.app.as_ref().ok_or_else(|| Error::invalid(format!("{name} is not an application")))?;
    let prev = cur.previous.first().ok_or_else(|| Error::not_found(format!("{name} has no previous revision to roll back to")))?;
    let mut units: Vec<Unit> = prev
        .iter()
        .map(|p| Unit {
            service: p.service.clone(),
            name: p.name.clone(),
            run: Vec::new(),
            ready: p.ready.clone(),
            connect: Vec::new(),
            image_id: Some(p.container.image_id.clone()),
            old: Some(p.container.clone()),
            new: cur.services.iter().find(|c| c.name == p.name).map(|c| c.container.container.clone()),
        })
        .collect();
    for c in &cur.services {
        if !units.iter().any(|u| u.name == c.name) {
            units.push(Unit {
                service: c.service.clone(),
                name: c.name.clone(),
                run: Vec::new(),
                ready: c.ready.clone(),
                connect: Vec::new(),
                image_id: None,
                old: None,
                new: Some(c.container.container.clone()),
            });
        }
    }
    Ok(Active {
        id: id.into(),
        seq,
        kind: Kind::Rollback,
        name: name.into(),
        run: Vec::new(),
        window: 0,
        keep: 0,
        step: Step::RollingBack,
        image_id: None,
        old: None,
        new: None,
        reason: String::new(),
        app: Some(AppRun {
            units,
            networks: Vec::new(),
            made: Vec::new(),
            volumes: cur
                .volumes
                .iter()
                .map(|v| berth_proto::wire::AppVolume { name: v.clone(), labels: Vec::new(), revision_bound: true })
                .collect(),
        }),
    })
}
