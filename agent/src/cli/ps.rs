//! `ps`: the container records on disk, so it works even when the agent is down.

use std::io::{self, Write};

use serde_json::json;

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_runtime::container::record::{self, Record, Status};
use berth_runtime::{timefmt, Error};

use super::{op_err, CliError, Ctx};
use crate::term::format::{render_rows, Format};
use crate::term::output::{docker_time, human_ago, table};

pub const LS: Cmd = Cmd { path: "berth container ls", ..PS };

const PS_OPTS: &[Opt] = &[
    opt("all", Some('a'), None, "Show all containers (default shows just running)"),
    opt("filter", Some('f'), Some("filter"), "Filter output based on conditions provided (id, name, status, label)"),
    opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line"),
    opt("no-trunc", None, None, "Don't truncate output"),
    opt("quiet", Some('q'), None, "Only display container IDs"),
];

pub const PS: Cmd = cmd("berth ps", "[OPTIONS]", "List containers", PS_OPTS, 0, Some(0));

fn status_text(root: &std::path::Path, r: &Record) -> String {
    let now = timefmt::now();
    match &r.status {
        Status::Created => "Created".into(),
        Status::Running { started, .. } => {
            let up = format!("Up {}", human_ago(*started).trim_end_matches(" ago"));
            if berth_runtime::cgroup::is_paused(root, &r.id) {
                return format!("{up} (Paused)");
            }
            match crate::daemon::health::read(root, &r.id).as_ref().and_then(|h| h["Status"].as_str().map(str::to_string)) {
                Some(s) if s == "starting" => format!("{up} (health: starting)"),
                Some(s) => format!("{up} ({s})"),
                None => up,
            }
        }
        Status::Exited { code, finished, .. } => format!("Exited ({code}) {}", human_ago((*finished).min(now))),
    }
}

pub(super) fn state_name(root: &std::path::Path, r: &Record) -> &'static str {
    match r.status {
        Status::Created => "created",
        Status::Running { .. } if berth_runtime::cgroup::is_paused(root, &r.id) => "paused",
        Status::Running { .. } => "running",
        Status::Exited { .. } => "exited",
    }
}

fn matches_filter(root: &std::path::Path, r: &Record, f: &str) -> Result<bool, CliError> {
    let (k, v) = f.split_once('=').ok_or_else(|| op_err(format!("bad format of filter (expected name=value): {f}")))?;
    Ok(match k {
        "id" => r.id.starts_with(v),
        "name" => r.name.contains(v),
        "status" => state_name(root, r) == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => r.labels.get(lk).is_some_and(|x| x == lv),
            None => r.labels.contains_key(v),
        },
        other => return Err(op_err(format!("invalid filter '{other}' (supported: id, name, status, label)"))),
    })
}

fn command_text(r: &Record, trunc: bool) -> String {
    let c = r.spec.args.join(" ");
    let c = if trunc && c.chars().count() > 20 { format!("{}…", c.chars().take(19).collect::<String>()) } else { c };
    format!("\"{c}\"")
}

pub fn ps(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let (recs, bad) = record::list(&ctx.root);
    for b in bad {
        eprintln!("WARNING: {b}");
    }
    let filters = m.values("filter");
    let mut shown = Vec::new();
    for r in &recs {
        if !m.flag("all") && !r.is_running() && filters.iter().all(|f| !f.starts_with("status=")) {
            continue;
        }
        let mut ok = true;
        for f in &filters {
            ok &= matches_filter(&ctx.root, r, f)?;
        }
        if ok {
            shown.push(r);
        }
    }
    let no_trunc = m.flag("no-trunc");
    let id = |r: &Record| if no_trunc { r.id.clone() } else { r.short_id().to_string() };
    let mut out = io::stdout().lock();
    let w = |e: io::Error| CliError::Op(Error::io("write output", e));
    if m.flag("quiet") {
        for r in shown {
            writeln!(out, "{}", id(r)).map_err(w)?;
        }
        return Ok(0);
    }
    let nets = berth_runtime::net::network::Store::open(&ctx.root).and_then(|s| s.list()).unwrap_or_default();
    match fmt {
        Format::Table => {
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|r| {
                    vec![
                        id(r),
                        r.image.clone(),
                        command_text(r, !no_trunc),
                        human_ago(r.created),
                        status_text(&ctx.root, r),
                        super::network::ps_ports(&ctx.root, &nets, &r.id),
                        r.name.clone(),
                    ]
                })
                .collect();
            table(&mut out, &["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &rows).map_err(w)?;
        }
        Format::Json | Format::Template(_) => {
            let vols = berth_runtime::volume::Volumes::open(&ctx.root);
            let vs: Vec<serde_json::Value> = shown
                .iter()
                .map(|r| {
                    let used = berth_runtime::container::mounts::volumes_used(&vols, &r.spec.mounts);
                    json!({
                        "ID": id(r), "Image": r.image, "Command": command_text(r, !no_trunc), "CreatedAt": docker_time(r.created),
                        "RunningFor": human_ago(r.created), "Status": status_text(&ctx.root, r), "State": state_name(&ctx.root, r), "Names": r.name, "Ports": super::network::ps_ports(&ctx.root, &nets, &r.id),
                        "Labels": r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                        "Mounts": used.join(","), "LocalVolumes": used.len().to_string(), "Size": "N/A",
                    })
                })
                .collect();
            match &fmt {
                Format::Template(t) => {
                    // Docker's column titles for `table` formats.
                    let titles = json!({
                        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT", "RunningFor": "CREATED",
                        "Status": "STATUS", "State": "STATE", "Names": "NAMES", "Ports": "PORTS", "Labels": "LABELS", "Mounts": "MOUNTS",
                        "Size": "SIZE", "LocalVolumes": "LOCAL VOLUMES",
                    });
                    out.write_all(render_rows(t, &titles, &vs)?.as_bytes()).map_err(w)?;
                }
                _ => {
                    for v in &vs {
                        writeln!(out, "{}", crate::term::format::json_line(v)).map_err(w)?;
                    }
                }
            }
        }
    }
    Ok(0)
}
