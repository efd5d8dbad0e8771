//! `diff`, `commit`, `pause` and `unpause`: a container's changed files, kept as an image, and
//! its processes frozen. `diff` and `commit` read the container's directory and the store
//! directly (as `cp` does); pausing goes through the agent, which owns the cgroups.

use std::io::{self, Write};

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_proto::socket::{Request, Response};
use berth_runtime::container::changes;
use berth_runtime::container::record::{self, Record};
use berth_runtime::image::commit::{commit_created_by, container_config, CommitOptions};
use berth_runtime::image::store::Store;
use berth_runtime::Error;
use serde_json::{Map, Value};

use super::client::{check, each, Client};
use super::{op_err, CliError, Ctx};

pub const DIFF: Cmd =
    cmd("berth diff", "CONTAINER", "Inspect changes to files or directories on a container's filesystem", &[], 1, Some(1));

const COMMIT_OPTS: &[Opt] = &[
    opt("author", Some('a'), Some("string"), "Author (e.g., \"John Hannibal Smith <hannibal@a-team.com>\")"),
    opt("change", Some('c'), Some("list"), "Apply Dockerfile instruction to the created image"),
    opt("message", Some('m'), Some("string"), "Commit message"),
    opt("pause", Some('p'), None, "Pause container during commit (default true)"),
];

pub const COMMIT: Cmd =
    cmd("berth commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", "Create a new image from a container's changes", COMMIT_OPTS, 1, Some(2));

pub const PAUSE: Cmd = cmd("berth pause", "CONTAINER [CONTAINER...]", "Pause all processes within one or more containers", &[], 1, None);

pub const UNPAUSE: Cmd =
    cmd("berth unpause", "CONTAINER [CONTAINER...]", "Unpause all processes within one or more containers", &[], 1, None);

fn find(ctx: &Ctx, key: &str) -> Result<Record, CliError> {
    let (recs, _) = record::list(&ctx.root);
    Ok(record::find(&recs, key)?.clone())
}

/// Whether the store runs on the copy driver (no overlayfs), as the agent recorded it.
fn copy_driver(ctx: &Ctx) -> bool {
    std::fs::read_to_string(ctx.root.join("storage-driver")).is_ok_and(|s| s.trim() == "copy")
}

fn changes_of(ctx: &Ctx, store: &Store, r: &Record) -> Result<changes::Changes, CliError> {
    Ok(changes::of_container(store, &record::dir(&ctx.root, &r.id), &r.layers, copy_driver(ctx))?)
}

pub fn diff(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let r = find(ctx, &m.args()[0])?;
    let store = ctx.store()?;
    let c = changes_of(ctx, &store, &r)?;
    let mut out = io::stdout().lock();
    for ch in &c.list {
        writeln!(out, "{}", ch.line()).map_err(|e| Error::io("write output", e))?;
    }
    Ok(0)
}

pub fn commit(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let r = find(ctx, &m.args()[0])?;
    let store = ctx.store()?;
    let db = store.db()?;
    let base = db
        .images
        .iter()
        .find(|i| i.id == r.image_id)
        .cloned()
        .ok_or_else(|| op_err(format!("the image of container {} ({}) is no longer in the store", r.name, r.image_id)))?;
    let raw = store.config(&base)?;
    let full: Value = serde_json::from_slice(&raw).map_err(|e| op_err(format!("image {} config: {e}", base.id)))?;
    let image_cfg: Map<String, Value> = full.get("config").and_then(Value::as_object).cloned().unwrap_or_default();
    let config = container_config(&image_cfg, &r);
    let opts = CommitOptions {
        reference: m.args().get(1).cloned(),
        author: m.value("author").map(String::from),
        message: m.value("message").map(String::from),
        changes: m.values("change").into_iter().map(String::from).collect(),
        created_by: commit_created_by(&config),
    };
    // Docker pauses a running container while it reads its files (default true).
    let pause = r.is_running() && m.value("pause") != Some("false") && !berth_runtime::cgroup::is_paused(&ctx.root, &r.id);
    let mut client = None;
    if pause {
        let mut c = Client::connect(ctx)?;
        check(c.call(&Request::Pause { id: r.id.clone(), frozen: true })?)?;
        client = Some(c);
    }
    let res = changes_of(ctx, &store, &r).and_then(|ch| Ok(store.commit_changes(&base, config, &ch, &opts)?));
    if let Some(mut c) = client {
        let thawed = c.call(&Request::Pause { id: r.id.clone(), frozen: false });
        if let Ok(Response::Error { msg, .. }) = &thawed {
            eprintln!("Error: {msg}");
        }
    }
    println!("{}", res?);
    Ok(0)
}

pub fn pause(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    each(ctx, m, |id| Request::Pause { id, frozen: true })
}

pub fn unpause(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    each(ctx, m, |id| Request::Pause { id, frozen: false })
}
