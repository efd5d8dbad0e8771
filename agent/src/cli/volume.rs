//! `berth volume create|ls|inspect|rm|prune`: Docker's local volumes, kept under the root
//! (`runtime::volume`). They work on the store directly, whether or not an agent runs; which
//! containers use a volume comes from the container records.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use serde_json::{json, Value};

use berth_runtime::container::{mounts, record};
use berth_runtime::volume::{inspect_json, matches_filter, VolumeRecord, Volumes};
use berth_runtime::Error;

use super::{command, group, op_err, CliError, Command, Ctx};
use crate::term::format::Format;
use crate::term::output::human_size;
use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};

const CREATE_OPTS: &[Opt] = &[
    opt("driver", Some('d'), Some("string"), "Specify volume driver name (default \"local\")"),
    opt("label", None, Some("list"), "Set metadata for a volume"),
    opt("name", None, Some("string"), "Specify volume name"),
    opt("opt", Some('o'), Some("map"), "Set driver specific options (type, device, o)"),
];
const CREATE: Cmd = cmd("berth volume create", "[OPTIONS] [VOLUME]", "Create a volume", CREATE_OPTS, 0, Some(1));
const LS_OPTS: &[Opt] = &[
    opt("filter", Some('f'), Some("filter"), "Provide filter values (e.g. \"dangling=true\", \"label=K=V\", \"name=N\")"),
    opt("format", None, Some("string"), "Format output using a Go template, \"table\" or \"json\""),
    opt("quiet", Some('q'), None, "Only display volume names"),
];
const LS: Cmd = cmd("berth volume ls", "[OPTIONS]", "List volumes", LS_OPTS, 0, Some(0));
const INSPECT_OPTS: &[Opt] = &[opt("format", Some('f'), Some("string"), "Format output using a Go template or \"json\"")];
const INSPECT: Cmd = cmd(
    "berth volume inspect",
    "[OPTIONS] VOLUME [VOLUME...]",
    "Display detailed information on one or more volumes",
    INSPECT_OPTS,
    1,
    None,
);
const RM_OPTS: &[Opt] = &[opt("force", Some('f'), None, "Do not fail for volumes that do not exist")];
const RM: Cmd = cmd("berth volume rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", RM_OPTS, 1, None);
const PRUNE_OPTS: &[Opt] = &[
    opt("all", Some('a'), None, "Remove all unused volumes, not just anonymous ones"),
    opt("filter", None, Some("filter"), "Provide filter values (e.g. \"label=<label>\")"),
    opt("force", Some('f'), None, "Do not prompt for confirmation"),
];
const PRUNE: Cmd = cmd("berth volume prune", "[OPTIONS]", "Remove unused local volumes", PRUNE_OPTS, 0, Some(0));

pub const GROUP: Cmd = group("berth volume", "Manage volumes");
pub const SUBCOMMANDS: &[Command] = &[
    command("create", &CREATE, create),
    command("inspect", &INSPECT, inspect),
    command("ls", &LS, ls),
    command("list", &LS, ls),
    command("prune", &PRUNE, prune),
    command("rm", &RM, rm),
    command("remove", &RM, rm),
];

fn out_err(e: io::Error) -> CliError {
    CliError::Op(Error::io("write output", e))
}

fn pairs(m: &Matches, name: &str) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for kv in m.values(name) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k.is_empty() {
            return Err(op_err(format!("invalid {name} {kv:?}: expected KEY=VALUE")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Each volume's users: the containers (ids) whose mounts use it.
fn users(ctx: &Ctx, vols: &Volumes) -> BTreeMap<String, Vec<String>> {
    let (recs, _) = record::list(&ctx.root);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &recs {
        for v in mounts::volumes_used(vols, &r.spec.mounts) {
            out.entry(v).or_default().push(r.id.clone());
        }
    }
    out
}

fn create(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    if let Some(d) = m.value("driver") {
        if d != "local" {
            return Err(op_err(format!("volume driver {d:?} is not supported: berth has the local driver only")));
        }
    }
    let name = match (m.value("name"), m.args().first()) {
        (Some(a), Some(b)) if a != b => {
            return Err(op_err("conflicting options: either specify --name or provide positional arg, not both"))
        }
        (Some(n), _) => Some(n.to_string()),
        (None, Some(n)) => Some(n.clone()),
        (None, None) => None,
    };
    let vols = Volumes::open(&ctx.root);
    let v = vols.create(name.as_deref(), pairs(m, "label")?, pairs(m, "opt")?, false)?;
    println!("{}", v.name);
    Ok(0)
}

fn ls_row(vols: &Volumes, v: &VolumeRecord) -> Value {
    json!({
        "Availability": "N/A", "Driver": v.driver, "Group": "N/A",
        "Labels": v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(","),
        "Links": "N/A", "Mountpoint": vols.data_dir(&v.name), "Name": v.name, "Scope": "local", "Size": "N/A", "Status": "N/A",
    })
}

fn ls(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let vols = Volumes::open(&ctx.root);
    let used = users(ctx, &vols);
    let filters = m.values("filter");
    let mut shown = Vec::new();
    for v in vols.list()? {
        let mut keep = true;
        for f in &filters {
            keep &= matches_filter(&v, f, used.contains_key(&v.name))?;
        }
        if keep {
            shown.push(v);
        }
    }
    let mut out = io::stdout().lock();
    if m.flag("quiet") {
        for v in &shown {
            writeln!(out, "{}", v.name).map_err(out_err)?;
        }
        return Ok(0);
    }
    let rows: Vec<Value> = shown.iter().map(|v| ls_row(&vols, v)).collect();
    let template = match &fmt {
        Format::Json => {
            for r in &rows {
                writeln!(out, "{}", crate::term::format::json_line(r)).map_err(out_err)?;
            }
            return Ok(0);
        }
        Format::Table => "table {{.Driver}}\t{{.Name}}".to_string(),
        Format::Template(t) => t.clone(),
    };
    let titles = json!({
        "Availability": "AVAILABILITY", "Driver": "DRIVER", "Group": "GROUP", "Labels": "LABELS", "Links": "LINKS",
        "Mountpoint": "MOUNTPOINT", "Name": "VOLUME NAME", "Scope": "SCOPE", "Size": "SIZE", "Status": "STATUS",
    });
    out.write_all(crate::term::format::render_rows(&template, &titles, &rows)?.as_bytes()).map_err(out_err)?;
    Ok(0)
}

fn inspect(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let vols = Volumes::open(&ctx.root);
    let mut docs = Vec::new();
    let mut code = 0;
    for name in m.args() {
        match vols.get(name) {
            Ok(v) => docs.push(inspect_json(&v, &vols.data_dir(&v.name))),
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    if !docs.is_empty() || code == 0 {
        super::image::print_docs(&fmt, docs)?;
    }
    Ok(code)
}

fn rm(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let vols = Volumes::open(&ctx.root);
    let used = users(ctx, &vols);
    let mut code = 0;
    for name in m.args() {
        let res = match vols.get(name) {
            Err(_) if m.flag("force") => continue,
            Err(e) => Err(e),
            Ok(_) => vols.remove(name, used.get(name).map(Vec::as_slice).unwrap_or(&[])),
        };
        match res {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from agent: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn prune(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let all = m.flag("all");
    if !m.flag("force") {
        let what = if all {
            "all local volumes not used by at least one container"
        } else {
            "anonymous local volumes not used by at least one container"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer).map_err(|e| Error::io("read answer", e))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Ok(0);
        }
    }
    let (removed, freed) = prune_unused(ctx, all, &m.values("filter"))?;
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Volumes:").map_err(out_err)?;
        for n in &removed {
            writeln!(out, "{n}").map_err(out_err)?;
        }
        writeln!(out).map_err(out_err)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(freed)).map_err(out_err)?;
    Ok(0)
}

/// Removes the volumes no container uses (anonymous ones only, unless `all`) that `filters`
/// select; returns their names and the bytes freed (`volume prune`, `system prune --volumes`).
pub fn prune_unused(ctx: &Ctx, all: bool, filters: &[&str]) -> Result<(Vec<String>, u64), CliError> {
    let vols = Volumes::open(&ctx.root);
    let used = users(ctx, &vols);
    let mut removed = Vec::new();
    let mut freed = 0;
    for v in vols.list()? {
        if used.contains_key(&v.name) || (!all && !v.anonymous) {
            continue;
        }
        let mut keep = false;
        for f in filters {
            keep |= !matches_filter(&v, f, false)?;
        }
        if keep {
            continue;
        }
        let size = vols.size(&v.name);
        vols.remove(&v.name, &[])?;
        freed += size;
        removed.push(v.name);
    }
    Ok((removed, freed))
}
