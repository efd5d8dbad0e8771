//! `berth system prune` and `berth container prune`: Docker's, except that what the update
//! manager keeps for rollbacks (the `NAME.prev-N` containers, deployments and their images,
//! `daemon::update::targets`) is never removed, stopped or not.

use std::io::{self, BufRead, Write};

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_proto::socket::{NetworkRequest, Request, Response};
use berth_runtime::container::record;
use berth_runtime::image::store::Removed;
use berth_runtime::Error;

use super::client::Client;
use super::{op_err, CliError, Ctx};
use crate::daemon::update::targets::Targets;
use crate::term::output::{human_size, time_arg};

const SYSTEM_PRUNE_OPTS: &[Opt] = &[
    opt("all", Some('a'), None, "Remove all unused images not just dangling ones"),
    opt("filter", None, Some("filter"), "Provide filter values (e.g. \"until=24h\", \"label=<key>[=<value>]\")"),
    opt("force", Some('f'), None, "Do not prompt for confirmation"),
    opt("volumes", None, None, "Prune anonymous volumes"),
];
pub const SYSTEM_PRUNE: Cmd = cmd("berth system prune", "[OPTIONS]", "Remove unused data", SYSTEM_PRUNE_OPTS, 0, Some(0));

const CONTAINER_PRUNE_OPTS: &[Opt] = &[
    opt("filter", None, Some("filter"), "Provide filter values (e.g. \"until=<timestamp>\")"),
    opt("force", Some('f'), None, "Do not prompt for confirmation"),
];
pub const CONTAINER_PRUNE: Cmd =
    cmd("berth container prune", "[OPTIONS]", "Remove all stopped containers", CONTAINER_PRUNE_OPTS, 0, Some(0));

/// `--filter until=` and `label=` as Docker's prune commands take them.
#[derive(Default)]
struct Filters {
    until: Option<i64>,
    labels: Vec<(String, Option<String>)>,
}

impl Filters {
    fn parse(m: &Matches) -> Result<Filters, CliError> {
        let mut f = Filters::default();
        for v in m.values("filter") {
            match v.split_once('=') {
                Some(("until", t)) => f.until = Some(time_arg(t)?),
                Some(("label", l)) => {
                    let (k, val) = l.split_once('=').map_or((l, None), |(k, v)| (k, Some(v.to_string())));
                    f.labels.push((k.to_string(), val));
                }
                _ => return Err(op_err(format!("invalid filter {v:?}: until=<time> or label=<key>[=<value>]"))),
            }
        }
        Ok(f)
    }

    fn created_before(&self, t: i64) -> bool {
        self.until.is_none_or(|u| t < u)
    }

    fn labels_match(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k).is_some_and(|x| v.as_ref().is_none_or(|v| v == x)))
    }
}

fn confirm(what: &[&str]) -> Result<bool, CliError> {
    eprintln!("WARNING! This will remove:");
    for w in what {
        eprintln!("  - {w}");
    }
    eprint!("\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer).map_err(|e| Error::io("read answer", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

fn targets(ctx: &Ctx) -> Result<Targets, CliError> {
    Targets::load(&ctx.root).map_err(|e| op_err(format!("{e}: prune would not know the update manager's rollback targets")))
}

/// Removes the stopped containers `f` selects, except rollback targets; their ids and sizes.
fn prune_containers(ctx: &Ctx, f: &Filters, keep: &Targets) -> Result<(Vec<String>, u64), CliError> {
    let (recs, _) = record::list(&ctx.root);
    let mut c = Client::connect(ctx)?;
    let (mut gone, mut freed) = (Vec::new(), 0);
    for r in recs.iter().filter(|r| !r.is_running() && !keep.containers.contains(&r.id)) {
        if !f.created_before(r.created) || !f.labels_match(&r.labels) {
            continue;
        }
        let size = berth_runtime::fsutil::tree_size(&record::dir(&ctx.root, &r.id).join("upper"));
        if let Response::Done = c.call(&Request::Remove { id: r.id.clone(), force: false, volumes: false })? {
            gone.push(r.id.clone());
            freed += size;
        }
    }
    Ok((gone, freed))
}

fn out_err(e: io::Error) -> CliError {
    CliError::Op(Error::io("write output", e))
}

fn section(out: &mut impl Write, title: &str, lines: &[String]) -> Result<(), CliError> {
    if !lines.is_empty() {
        writeln!(out, "{title}").map_err(out_err)?;
        for l in lines {
            writeln!(out, "{l}").map_err(out_err)?;
        }
        writeln!(out).map_err(out_err)?;
    }
    Ok(())
}

pub fn container_prune(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let f = Filters::parse(m)?;
    if !m.flag("force") && !confirm(&["all stopped containers"])? {
        return Ok(0);
    }
    let (gone, freed) = prune_containers(ctx, &f, &targets(ctx)?)?;
    let mut out = io::stdout().lock();
    section(&mut out, "Deleted Containers:", &gone)?;
    writeln!(out, "Total reclaimed space: {}", human_size(freed)).map_err(out_err)?;
    Ok(0)
}

pub fn system_prune(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let f = Filters::parse(m)?;
    let (all, volumes) = (m.flag("all"), m.flag("volumes"));
    if !m.flag("force") {
        let mut what = vec!["all stopped containers", "all networks not used by at least one container"];
        if volumes {
            what.push("all anonymous volumes not used by at least one container");
        }
        what.push(if all { "all images without at least one container associated to them" } else { "all dangling images" });
        what.push("unused build cache");
        if !confirm(&what)? {
            return Ok(0);
        }
    }
    let keep = targets(ctx)?;
    let (containers, mut freed) = prune_containers(ctx, &f, &keep)?;
    let mut out = io::stdout().lock();
    section(&mut out, "Deleted Containers:", &containers)?;
    let mut c = Client::connect(ctx)?;
    if let Response::Text(names) = super::client::check(c.call(&Request::Network(NetworkRequest::Prune))?)? {
        let names: Vec<String> = names.lines().map(str::to_string).collect();
        section(&mut out, "Deleted Networks:", &names)?;
    }
    if volumes {
        let labels: Vec<String> = m.values("filter").into_iter().filter(|v| v.starts_with("label")).map(str::to_string).collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let (vols, bytes) = super::volume::prune_unused(ctx, false, &labels)?;
        freed += bytes;
        section(&mut out, "Deleted Volumes:", &vols)?;
    }
    // Images: none a container uses (the pruned ones are gone now), none the update manager keeps,
    // none newer than `until` or without the labels asked for.
    let store = ctx.store()?;
    let db = store.db()?;
    let mut keep_images: std::collections::BTreeSet<String> = keep.images.clone();
    keep_images.extend(record::list(&ctx.root).0.into_iter().map(|r| r.image_id.to_string()));
    for i in &db.images {
        let created = i.created.as_deref().and_then(berth_runtime::timefmt::parse_rfc3339).unwrap_or(0);
        if !f.created_before(created) || (!f.labels.is_empty() && !f.labels_match(&image_labels(&store, i))) {
            keep_images.insert(i.id.to_string());
        }
    }
    let (removed, bytes) = store.prune(all, &|d| keep_images.contains(&d.to_string()))?;
    freed += bytes;
    let lines: Vec<String> = removed
        .iter()
        .map(|r| match r {
            Removed::Untagged(t) => format!("untagged: {t}"),
            Removed::Deleted(d) => format!("deleted: {d}"),
        })
        .collect();
    section(&mut out, "Deleted Images:", &lines)?;
    writeln!(out, "Total reclaimed space: {}", human_size(freed)).map_err(out_err)?;
    Ok(0)
}

/// An image's `Config.Labels`.
fn image_labels(
    store: &berth_runtime::image::store::Store,
    i: &berth_runtime::image::db::ImageRecord,
) -> std::collections::BTreeMap<String, String> {
    let cfg: serde_json::Value = store.config(i).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    cfg.get("config")
        .and_then(|c| c.get("Labels"))
        .and_then(|l| l.as_object())
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}
