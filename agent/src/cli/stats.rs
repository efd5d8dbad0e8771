//! `stats` and `top`: read straight from the containers' cgroups and /proc (no agent needed).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use berth_runtime::cgroup::Cgroups;
use berth_runtime::container::record::{self, Record, Status};
use berth_runtime::decimal::fixed;
use berth_runtime::Error;

use super::{op_err, CliError, Ctx};
use crate::term::format::{render, Format};
use crate::term::output::{human_size, is_tty, table};
use berth_proto::args::{opt, Cmd, Matches, Opt};
use berth_runtime::paths::cgroup_parent;

const STATS_OPTS: &[Opt] = &[
    opt("all", Some('a'), None, "Show all containers (default shows just running)"),
    opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line"),
    opt("no-stream", None, None, "Disable streaming stats and only pull the first result"),
    opt("no-trunc", None, None, "Do not truncate output"),
];
pub const STATS: Cmd = Cmd {
    path: "berth stats",
    usage: "[OPTIONS] [CONTAINER...]",
    about: "Display a live stream of container(s) resource usage statistics",
    opts: STATS_OPTS,
    min_args: 0,
    max_args: None,
    stop_at_positional: false,
    subcommands: &[],
};
pub const TOP: Cmd = Cmd {
    path: "berth top",
    usage: "CONTAINER",
    about: "Display the running processes of a container",
    opts: &[],
    min_args: 1,
    max_args: Some(1),
    stop_at_positional: false,
    subcommands: &[],
};

fn chosen(ctx: &Ctx, names: &[String], all: bool) -> Result<Vec<Record>, CliError> {
    let (recs, _) = record::list(&ctx.root);
    if names.is_empty() {
        return Ok(recs.into_iter().filter(|r| all || r.is_running()).collect());
    }
    names.iter().map(|n| record::find(&recs, n).cloned().map_err(CliError::from)).collect()
}

struct Sample {
    cpu_ns: u64,
    at: Instant,
}

pub fn stats(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let cgroups = Cgroups::detect()?;
    let parent = cgroup_parent(&ctx.root);
    let stream = !m.flag("no-stream");
    let ncpu = berth_runtime::cgroup::online_cpus() as f64;
    let mut prev: std::collections::HashMap<String, Sample> = std::collections::HashMap::new();
    let w = |e: io::Error| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        CliError::Op(Error::io("write output", e))
    };
    loop {
        let recs = chosen(ctx, m.args(), m.flag("all"))?;
        // CPU % needs two samples: the first pass takes one and waits, as Docker's does.
        if prev.is_empty() {
            for r in &recs {
                if let Ok(s) = cgroups.open(&parent, &r.id).stats() {
                    prev.insert(r.id.clone(), Sample { cpu_ns: s.cpu_usage_ns, at: Instant::now() });
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for r in &recs {
            let id = if m.flag("no-trunc") { r.id.clone() } else { r.short_id().to_string() };
            let st = if r.is_running() { cgroups.open(&parent, &r.id).stats().unwrap_or_default() } else { Default::default() };
            let cpu = match prev.get(&r.id) {
                Some(p) if r.is_running() => {
                    let dt = p.at.elapsed().as_nanos() as f64;
                    if dt > 0.0 {
                        (st.cpu_usage_ns.saturating_sub(p.cpu_ns)) as f64 / dt * 100.0
                    } else {
                        0.0
                    }
                }
                _ => 0.0,
            };
            prev.insert(r.id.clone(), Sample { cpu_ns: st.cpu_usage_ns, at: Instant::now() });
            // As Docker: the page cache is not the application's memory.
            let used = st.memory_usage.saturating_sub(st.memory_cache);
            let limit = if st.memory_limit == 0 { read_mem_total() } else { st.memory_limit };
            let mem_pct = if limit > 0 { used as f64 * 100.0 / limit as f64 } else { 0.0 };
            let _ = ncpu;
            let mem = format!("{} / {}", human_size(used), human_size(limit));
            lines.push(json!({"ID": id, "Name": r.name, "CPUPerc": format!("{}%", fixed(cpu, 2)), "MemUsage": mem, "MemPerc": format!("{}%", fixed(mem_pct, 2)), "PIDs": st.pids.to_string(), "MemBytes": used, "OOMKills": st.oom_kills}));
            rows.push(vec![id, r.name.clone(), format!("{}%", fixed(cpu, 2)), mem, format!("{}%", fixed(mem_pct, 2)), st.pids.to_string()]);
        }
        let mut out = io::stdout().lock();
        if stream && is_tty(1) {
            write!(out, "\x1b[2J\x1b[H").map_err(w)?;
        }
        match &fmt {
            Format::Table => table(&mut out, &["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"], &rows).map_err(w)?,
            Format::Json => {
                for l in &lines {
                    writeln!(out, "{}", crate::term::format::json_line(l)).map_err(w)?;
                }
            }
            Format::Template(t) => {
                for l in &lines {
                    writeln!(out, "{}", render(t, l)?).map_err(w)?;
                }
            }
        }
        out.flush().map_err(w)?;
        if !stream {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn read_mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn top(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (recs, _) = record::list(&ctx.root);
    let r = record::find(&recs, &m.args()[0])?;
    if !matches!(r.status, Status::Running { .. }) {
        return Err(op_err(format!("container {} is not running", r.name)));
    }
    let cg = Cgroups::detect()?.open(&cgroup_parent(&ctx.root), &r.id);
    let mut rows = Vec::new();
    let tick = 100u64; // USER_HZ on Linux
    for pid in cg.pids()? {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ppid = f.get(1).copied().unwrap_or("?").to_string();
        let cpu: u64 =
            f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let secs = cpu / tick;
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next().map(str::to_string)))
            .unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim().to_string())
            .unwrap_or_default();
        let cmd = if cmd.is_empty() { format!("[{}]", &stat[stat.find('(').map_or(0, |i| i + 1)..close]) } else { cmd };
        rows.push(vec![uid, pid.to_string(), ppid, format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60), cmd]);
    }
    table(&mut io::stdout().lock(), &["UID", "PID", "PPID", "TIME", "CMD"], &rows).map_err(|e| Error::io("write output", e))?;
    Ok(0)
}
