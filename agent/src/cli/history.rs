//! `image history` (and `history`): the config's history entries, newest first, with the size
//! of the layer each made, in Docker's columns.

use std::io::{self, Write};

use serde_json::json;

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_runtime::image::history::{history, HistoryRow};
use berth_runtime::image::store::Store;
use berth_runtime::timefmt;
use berth_runtime::Error;

use super::{CliError, Ctx};
use crate::term::format::{render, Format};
use crate::term::output::{docker_time, human_ago, human_size, table};

const HISTORY_OPTS: &[Opt] = &[
    opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line, or a {{.Field}} template"),
    opt("human", Some('H'), None, "Print sizes and dates in human readable format (default true)"),
    opt("no-trunc", None, None, "Don't truncate output"),
    opt("quiet", Some('q'), None, "Only show image IDs"),
];
pub const HISTORY: Cmd = cmd("berth history", "[OPTIONS] IMAGE", "Show the history of an image", HISTORY_OPTS, 1, Some(1));
pub const IMAGE_HISTORY: Cmd = Cmd { path: "berth image history", ..HISTORY };

fn out_err(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    CliError::Op(Error::io("write output", e))
}

/// Docker's `stringutils.Ellipsis`.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

pub fn image_history(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let store = ctx.store()?;
    let db = store.db()?;
    let (img, _) = Store::find(&db, &m.args()[0])?;
    let config = store.config(img)?;
    let sizes: Vec<u64> = img.layers.iter().map(|d| db.layer(d).map_or(0, |l| l.size)).collect();
    let rows = history(&img.id, &config, &sizes)?;
    let no_trunc = m.flag("no-trunc");
    let id_of = |r: &HistoryRow| match &r.id {
        Some(d) if no_trunc => d.to_string(),
        Some(d) => d.hex()[..12].to_string(),
        None => "<missing>".to_string(),
    };
    let mut out = io::stdout().lock();
    if m.flag("quiet") {
        for r in &rows {
            writeln!(out, "{}", id_of(r)).map_err(out_err)?;
        }
        return Ok(0);
    }
    let secs = |r: &HistoryRow| r.created.as_deref().and_then(timefmt::parse_rfc3339);
    let as_json = |r: &HistoryRow| {
        json!({
            "Comment": r.comment,
            "CreatedAt": secs(r).map_or_else(String::new, docker_time),
            "CreatedBy": if no_trunc { r.created_by.clone() } else { ellipsis(&r.created_by, 45) },
            "CreatedSince": secs(r).map_or_else(|| "N/A".to_string(), human_ago),
            "ID": id_of(r),
            "Size": human_size(r.size),
        })
    };
    match Format::parse(m.value("format"))? {
        Format::Table => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let v = as_json(r);
                    ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
                        .iter()
                        .map(|k| v[*k].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .collect();
            table(&mut out, &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &body).map_err(out_err)?;
        }
        Format::Json => {
            for r in &rows {
                writeln!(out, "{}", crate::term::format::json_line(&as_json(r))).map_err(out_err)?;
            }
        }
        Format::Template(t) => {
            for r in &rows {
                writeln!(out, "{}", render(&t, &as_json(r))?).map_err(out_err)?;
            }
        }
    }
    Ok(0)
}
