//! `berth logs`: reads the container's log ring from disk (no agent needed), stdout lines to
//! stdout and stderr lines to stderr, as Docker does; `-f` follows across rotation.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use berth_runtime::container::logs::{self, Entry};
use berth_runtime::container::record::{self, Record};
use berth_runtime::{timefmt, Error};

use super::{op_err, CliError, Ctx};
use berth_proto::args::{opt, Cmd, Matches, Opt};

const LOGS_OPTS: &[Opt] = &[
    opt("follow", Some('f'), None, "Follow log output"),
    opt("timestamps", Some('t'), None, "Show timestamps"),
    opt("tail", Some('n'), Some("string"), "Number of lines to show from the end of the logs (default \"all\")"),
    opt("since", None, Some("string"), "Show logs since timestamp (2013-01-02T13:23:37Z) or relative (42m, 2h, 10s)"),
];
pub const LOGS: Cmd = Cmd {
    path: "berth logs",
    usage: "[OPTIONS] CONTAINER",
    about: "Fetch the logs of a container",
    opts: LOGS_OPTS,
    min_args: 1,
    max_args: Some(1),
    stop_at_positional: false,
    subcommands: &[],
};

struct Printer {
    timestamps: bool,
    since: Option<i64>,
}

impl Printer {
    fn print(&self, e: &Entry) -> io::Result<()> {
        if let Some(s) = self.since {
            if timefmt::parse_rfc3339(e.time).is_some_and(|t| t < s) {
                return Ok(());
            }
        }
        let mut line = Vec::with_capacity(e.text.len() + 40);
        if self.timestamps {
            line.extend_from_slice(e.time.as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(e.text);
        if e.full {
            line.push(b'\n');
        }
        if e.stderr {
            io::stderr().lock().write_all(&line)
        } else {
            let mut o = io::stdout().lock();
            o.write_all(&line)?;
            o.flush()
        }
    }
}

fn out_err(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    CliError::Op(Error::io("write output", e))
}

/// Whether the container still runs: its record says so and its monitor is alive (with no agent
/// running, the record is not updated when the container ends; the monitor's end tells).
fn running(root: &Path, id: &str) -> bool {
    match Record::load(&record::dir(root, id).join("state")).map(|r| r.status) {
        Ok(berth_runtime::container::record::Status::Running { monitor, monitor_start, .. }) => {
            berth_runtime::container::spawn::start_ticks(monitor) == Some(monitor_start)
        }
        _ => false,
    }
}

const ATTACH_OPTS: &[Opt] = &[
    opt("no-stdin", None, None, "Do not attach STDIN (the only mode: a detached container's stdin is /dev/null)"),
    opt("sig-proxy", None, Some("bool"), "Proxy all received signals to the process (default true)"),
];
pub const ATTACH: Cmd = Cmd {
    path: "berth attach",
    usage: "[OPTIONS] CONTAINER",
    about: "Attach to a running container's output (and forward signals to it)",
    opts: ATTACH_OPTS,
    min_args: 1,
    max_args: Some(1),
    stop_at_positional: false,
    subcommands: &[],
};

/// `attach`: the container's output from now on, until it exits; ^C and friends reach it. A
/// detached container's output goes through its monitor into the log ring, so attaching is
/// following that ring from its end.
pub fn attach(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (recs, _) = record::list(&ctx.root);
    let r = record::find(&recs, &m.args()[0])?;
    if !r.is_running() {
        return Err(op_err("You cannot attach to a stopped container, start it first"));
    }
    if m.value("sig-proxy") != Some("false") {
        super::relay::proxy_signals(ctx, &r.id);
    }
    follow(ctx, r, Some(0), &Printer { timestamps: false, since: None }, true)?;
    Ok(exit_code(ctx, &r.id))
}

/// The exit code of a container whose monitor has just ended. The agent records it when it reaps
/// the monitor, which may be a moment later; the monitor's own `exit` file has it already.
fn exit_code(ctx: &Ctx, id: &str) -> i32 {
    let dir = record::dir(&ctx.root, id);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (recs, _) = record::list(&ctx.root);
        match record::find(&recs, id).map(|r| r.status.clone()) {
            Ok(berth_runtime::container::record::Status::Exited { code, .. }) => return code,
            // Removed already (`--rm`): the exit file went with it, if it is not still there.
            Err(_) => return berth_runtime::container::spawn::recorded_exit(&dir).unwrap_or(0),
            Ok(_) => {}
        }
        if let Some(code) = berth_runtime::container::spawn::recorded_exit(&dir) {
            return code;
        }
        if std::time::Instant::now() >= deadline {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn logs(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (recs, _) = record::list(&ctx.root);
    let r = record::find(&recs, &m.args()[0])?;
    let tail: Option<usize> = match m.value("tail") {
        None | Some("all") => None,
        Some(n) => Some(n.parse().map_err(|_| op_err(format!("invalid value for \"tail\": {n:?}")))?),
    };
    let p = Printer { timestamps: m.flag("timestamps"), since: m.value("since").map(crate::term::output::time_arg).transpose()? };
    follow(ctx, r, tail, &p, m.flag("follow"))?;
    Ok(0)
}

/// Prints the last `tail` lines (all with None), then with `follow` what comes until the
/// container stops.
fn follow(ctx: &Ctx, r: &Record, tail: Option<usize>, p: &Printer, follow: bool) -> Result<(), CliError> {
    let dir = record::dir(&ctx.root, &r.id);
    if !r.log.enabled {
        return Err(op_err(format!("container {} was started with --log-driver none: it keeps no logs", r.name)));
    }
    // Everything there is (oldest file first); with --tail only the last lines stay in memory.
    let mut last: VecDeque<Vec<u8>> = VecDeque::new();
    let print = |line: &[u8]| match logs::parse(line) {
        Some(e) => p.print(&e),
        None => Ok(()),
    };
    let mut ring = logs::Follower::open(&dir, r.log.max_files, &mut |line| match tail {
        Some(0) => Ok(()),
        Some(n) => {
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(line.to_vec());
            Ok(())
        }
        None => print(line),
    })
    .map_err(log_err)?;
    for l in &last {
        print(l).map_err(out_err)?;
    }
    if !follow {
        return Ok(());
    }
    // Follow: the lines written after the last one read, across rotations. Stop once the
    // container has stopped and nothing more comes.
    loop {
        let alive = running(&ctx.root, &r.id);
        let progressed = ring.step(&mut |line| print(line)).map_err(log_err)?;
        if !alive && !progressed {
            return Ok(());
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A failed read of the log ring, or a failed print (a closed pipe ends quietly).
fn log_err(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    CliError::Op(Error::io("logs", e))
}
