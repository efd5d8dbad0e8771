//! `berth events`: container events from the agent, as Docker prints them.

use std::io::{self, Write};

use serde_json::json;

use berth_runtime::Error;

use super::client::Client;
use super::{op_err, CliError, Ctx};
use crate::term::format::{render, Format};
use berth_proto::args::{opt, Cmd, Matches, Opt};
use berth_proto::socket::{Event, Request, Response};

const EVENTS_OPTS: &[Opt] = &[
    opt(
        "filter",
        Some('f'),
        Some("filter"),
        "Filter output based on conditions provided (container=NAME|ID, event=ACTION, type=container|network, network=NAME|ID)",
    ),
    opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line"),
    opt("since", None, Some("string"), "Show all events created since timestamp (RFC 3339 or unix seconds, or a duration like 10m)"),
    opt("until", None, Some("string"), "Stream events until this timestamp"),
];
pub const EVENTS: Cmd = Cmd {
    path: "berth events",
    usage: "[OPTIONS]",
    about: "Get real time events from the agent",
    opts: EVENTS_OPTS,
    min_args: 0,
    max_args: Some(0),
    stop_at_positional: false,
    subcommands: &[],
};

fn keep(e: &Event, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "container" => e.name == *v || e.id.starts_with(v.as_str()),
        "event" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
        "type" => e.kind == *v,
        "network" => e.kind == "network" && (e.name == *v || e.id.starts_with(v.as_str())),
        _ => true,
    })
}

pub fn events(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let mut filters = Vec::new();
    for f in m.values("filter") {
        let (k, v) = f.split_once('=').ok_or_else(|| op_err(format!("bad format of filter (expected name=value): {f}")))?;
        if !matches!(k, "container" | "event" | "type" | "network") {
            return Err(op_err(format!("invalid filter '{k}' (container, event, type, network)")));
        }
        filters.push((k.to_string(), v.to_string()));
    }
    let since = m.value("since").map(crate::term::output::time_arg).transpose()?;
    let until = m.value("until").map(crate::term::output::time_arg).transpose()?;
    let mut c = Client::connect(ctx)?;
    c.send(&Request::Events { since, until }, &[])?;
    let w = |e: io::Error| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        CliError::Op(Error::io("write output", e))
    };
    loop {
        let r = match c.recv() {
            Ok(r) => r,
            // The agent closes the stream at `until`.
            Err(_) => return Ok(0),
        };
        let Response::Event(e) = r else { continue };
        if !keep(&e, &filters) {
            continue;
        }
        let attrs: Vec<String> = e.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let v = json!({
            "status": e.action, "id": e.id, "from": e.image, "Type": e.kind, "Action": e.action,
            "Actor": {"ID": e.id, "Attributes": e.attributes.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()},
            "time": e.secs, "timeNano": time_nano(e.secs, &e.time),
        });
        let line = match &fmt {
            Format::Table => format!("{} {} {} {} ({})", e.time, e.kind, e.action, e.id, attrs.join(", ")),
            Format::Json => crate::term::format::json_line(&v),
            Format::Template(t) => render(t, &v)?,
        };
        let mut out = io::stdout().lock();
        writeln!(out, "{line}").map_err(w)?;
        out.flush().map_err(w)?;
    }
}

/// Docker's `timeNano`: nanoseconds since the epoch, as a number (the event carries its seconds
/// and its RFC 3339 time, whose fraction gives the rest).
fn time_nano(secs: i64, rfc3339: &str) -> i64 {
    let frac = rfc3339.split_once('.').map_or("", |(_, f)| f.trim_end_matches('Z'));
    let digits: String = frac.chars().take_while(char::is_ascii_digit).take(9).collect();
    let nanos = format!("{digits:0<9}").parse::<i64>().unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_nano_is_a_number_of_nanoseconds() {
        assert_eq!(super::time_nano(1_796_616_638, "2026-12-07T04:10:38.073202176Z"), 1_796_616_638_073_202_176);
        assert_eq!(super::time_nano(5, "1970-01-01T00:00:05.5Z"), 5_500_000_000);
        assert_eq!(super::time_nano(5, "1970-01-01T00:00:05Z"), 5_000_000_000);
    }
}
