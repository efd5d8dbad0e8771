//! `berth system ...` and `berth version`.

use std::io::Write;

use serde_json::json;

use super::args::{opt, Cmd, Matches, Opt};
use super::format::Format;
use super::output::{human_size, table};
use super::{group, CliError, Command, Ctx, VERSION};

pub const VERSION_CMD: Cmd = Cmd {
    path: "berth version",
    usage: "",
    about: "Show the berth version information",
    opts: &[],
    min_args: 0,
    max_args: Some(0),
    stop_at_positional: false,
    subcommands: &[],
};

pub fn version(_: &Ctx, _: &Matches) -> Result<i32, CliError> {
    println!("berth version {VERSION}");
    println!("  target:  {}-{}", std::env::consts::ARCH, std::env::consts::OS);
    Ok(0)
}

const DF_OPTS: &[Opt] = &[opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line")];
pub const DF: Cmd = Cmd {
    path: "berth system df",
    usage: "[OPTIONS]",
    about: "Show berth disk usage",
    opts: DF_OPTS,
    min_args: 0,
    max_args: Some(0),
    stop_at_positional: false,
    subcommands: &[],
};

pub const GROUP: Cmd = group("berth system", "Manage berth", &[("df", "Show berth disk usage")]);
pub const SUBCOMMANDS: &[Command] = &[Command { name: "df", cmd: &DF, run: df }];

pub fn df(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let db = ctx.store()?.db()?;
    // Shared layers count once, as on disk. No image is in use until containers exist.
    let size: u64 = db.layers.iter().map(|l| l.size).sum();
    let rows = vec![("Images", db.images.len(), 0usize, size, size), ("Containers", 0, 0, 0, 0), ("Local Volumes", 0, 0, 0, 0)];
    let mut out = std::io::stdout().lock();
    let pct = |r: u64, s: u64| (r * 100).checked_div(s).unwrap_or(0);
    match fmt {
        Format::Json => {
            for (t, total, active, size, rec) in rows {
                let line = json!({"Type": t, "TotalCount": total.to_string(), "Active": active.to_string(), "Size": human_size(size), "Reclaimable": format!("{} ({}%)", human_size(rec), pct(rec, size))});
                writeln!(out, "{line}").map_err(|e| berth_runtime::Error::io("write output", e))?;
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|(t, total, active, size, rec)| {
                    vec![
                        t.into(),
                        total.to_string(),
                        active.to_string(),
                        human_size(size),
                        format!("{} ({}%)", human_size(rec), pct(rec, size)),
                    ]
                })
                .collect();
            table(&mut out, &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
                .map_err(|e| berth_runtime::Error::io("write output", e))?;
        }
        Format::Template(_) => return Err(super::op_err("system df takes --format json or table")),
    }
    Ok(0)
}
