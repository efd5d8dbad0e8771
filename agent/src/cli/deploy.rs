//! `berth deployment status` and `berth rollback`: the update side of a device from its own
//! console (UART or SSH), through the agent's socket, with no broker involved.

use std::io::Write;

use serde_json::Value;

use super::client::{check, Client};
use super::{op_err, CliError, Ctx};
use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_proto::socket::{Request, Response};

pub const GROUP: Cmd = super::group("berth deployment", "Show what updates deployed on this device");

const STATUS_OPTS: &[Opt] = &[opt("format", Some('f'), Some("string"), "Format the output: json")];
pub const STATUS: Cmd =
    cmd("berth deployment status", "[OPTIONS]", "Show deployments, the update in progress and the last result", STATUS_OPTS, 0, Some(0));
pub const ROLLBACK: Cmd =
    cmd("berth rollback", "NAME", "Go back to the previous deployed version of a container or application", &[], 1, Some(1));

pub const SUBCOMMANDS: &[super::Command] = &[super::command("status", &STATUS, status)];

fn text(r: Response) -> Result<String, CliError> {
    match check(r)? {
        Response::Text(t) => Ok(t),
        other => Err(op_err(format!("unexpected answer from the agent: {other:?}"))),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => crate::term::format::json_line(other),
    }
}

fn short(id: &str) -> String {
    id.strip_prefix("sha256:").unwrap_or(id).chars().take(12).collect()
}

pub fn status(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let mut c = Client::connect(ctx)?;
    let t = text(c.call(&Request::Deployment)?)?;
    let out_err = |e: std::io::Error| CliError::Op(berth_runtime::Error::io("write output", e));
    let mut out = std::io::stdout().lock();
    match m.value("format") {
        Some("json") => return writeln!(out, "{t}").map(|_| 0).map_err(out_err),
        Some(f) => return Err(op_err(format!("unknown format {f:?} (json)"))),
        None => {}
    }
    let v: Value = serde_json::from_slice(t.as_bytes()).map_err(|e| op_err(format!("bad state from the agent: {e}")))?;
    writeln!(out, "Device: {}   seq: {}", s(&v["device"]), s(&v["seq"])).map_err(out_err)?;
    let rows: Vec<Vec<String>> = v["deployments"]
        .as_array()
        .map(|a| {
            a.iter()
                .flat_map(|d| {
                    let prev: Vec<String> = d["previous"].as_array().map(|p| p.iter().map(|x| short(&s(x))).collect()).unwrap_or_default();
                    let prev = if prev.is_empty() { "-".into() } else { prev.join(",") };
                    if d["app"] != true {
                        return vec![vec![s(&d["name"]), s(&d["seq"]), short(&s(&d["image_id"])), prev, "-".into()]];
                    }
                    // An application: its line (rollback targets are revisions, by seq), then
                    // one line per service in start order.
                    let mut rows = vec![vec![format!("{} (app)", s(&d["name"])), s(&d["seq"]), "-".into(), prev, "-".into()]];
                    for svc in d["services"].as_array().into_iter().flatten() {
                        let state = match svc["health"].as_str() {
                            Some(h) => format!("{} ({h})", s(&svc["status"])),
                            None => s(&svc["status"]),
                        };
                        rows.push(vec![format!("  {}", s(&svc["name"])), String::new(), short(&s(&svc["image_id"])), String::new(), state]);
                    }
                    rows
                })
                .collect()
        })
        .unwrap_or_default();
    crate::term::output::table(&mut out, &["NAME", "SEQ", "IMAGE ID", "ROLLBACK TO", "STATE"], &rows).map_err(out_err)?;
    if !v["update"].is_null() {
        let u = &v["update"];
        writeln!(out, "Update in progress: {} ({}) {}", s(&u["id"]), s(&u["name"]), s(&u["phase"])).map_err(out_err)?;
    }
    if !v["last_result"].is_null() {
        let l = &v["last_result"];
        let reason = s(&l["reason"]);
        let reason = if reason.is_empty() { String::new() } else { format!(": {reason}") };
        writeln!(out, "Last update: {} {} {}{reason}", s(&l["id"]), s(&l["name"]), s(&l["result"])).map_err(out_err)?;
    }
    Ok(0)
}

pub fn rollback(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let mut c = Client::connect(ctx)?;
    let t = text(c.call(&Request::Rollback { name: m.args()[0].clone() })?)?;
    let o: berth_proto::wire::Outcome =
        serde_json::from_slice(t.as_bytes()).map_err(|e| op_err(format!("bad answer from the agent: {e}")))?;
    if o.result == "committed" {
        println!("{}: {}", o.name, o.reason);
        Ok(0)
    } else {
        eprintln!("Error: {}: {} {}", o.name, o.result, o.reason);
        Ok(1)
    }
}
