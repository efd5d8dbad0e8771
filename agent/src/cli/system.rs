//! `berth system ...` and `berth version`.

use std::io::Write;

use serde_json::json;

use super::{command, group, CliError, Command, Ctx, VERSION};
use crate::term::format::Format;
use crate::term::output::{human_size, table};
use berth_proto::args::{opt, Cmd, Matches, Opt};

pub const VERSION_CMD: Cmd = Cmd {
    path: "berth version",
    usage: "[OPTIONS]",
    about: "Show the berth version information",
    opts: &[opt("format", Some('f'), Some("string"), "Format output using a Go template ({{.Client.Version}}) or \"json\"")],
    min_args: 0,
    max_args: Some(0),
    stop_at_positional: false,
    subcommands: &[],
};

pub fn version(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    // Docker's shape, so that `{{.Client.Version}}` and `{{.Server.Version}}` work; the agent is
    // the same binary.
    let part = json!({"Version": VERSION, "Os": std::env::consts::OS, "Arch": std::env::consts::ARCH, "Platform": {"Name": "berth"}});
    let agent = std::fs::read_to_string(ctx.root.join("agent.pid")).is_ok();
    let v = json!({"Client": part, "Server": if agent { part.clone() } else { serde_json::Value::Null }});
    let mut out = std::io::stdout().lock();
    let w = |e: std::io::Error| berth_runtime::Error::io("write output", e);
    match fmt {
        Format::Table => {
            writeln!(out, "berth version {VERSION}").map_err(w)?;
            writeln!(out, "  target:  {}-{}", std::env::consts::ARCH, std::env::consts::OS).map_err(w)?;
        }
        Format::Json => writeln!(out, "{}", crate::term::format::json_line(&v)).map_err(w)?,
        Format::Template(t) => writeln!(out, "{}", crate::term::format::render(&t, &v)?).map_err(w)?,
    }
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

const INFO_OPTS: &[Opt] = &[opt("format", Some('f'), Some("string"), "Format output: \"json\"")];
pub const INFO: Cmd = Cmd {
    path: "berth info",
    usage: "[OPTIONS]",
    about: "Display system-wide information",
    opts: INFO_OPTS,
    min_args: 0,
    max_args: Some(0),
    stop_at_positional: false,
    subcommands: &[],
};
const SYSTEM_INFO: Cmd = Cmd { path: "berth system info", ..INFO };

pub const GROUP: Cmd = group("berth system", "Manage berth");
pub const SUBCOMMANDS: &[Command] = &[
    command("df", &DF, df),
    command("info", &SYSTEM_INFO, info),
    command("prune", &super::prune::SYSTEM_PRUNE, super::prune::system_prune),
    command("verify", &VERIFY, verify),
];

const VERIFY: Cmd = Cmd {
    path: "berth system verify",
    usage: "",
    about: "Check the image store: records, every config against its digest, every layer rebuilt against its diff_id",
    opts: &[],
    min_args: 0,
    max_args: Some(0),
    stop_at_positional: false,
    subcommands: &[],
};

/// `berth system verify`: exit 0 when the store is whole, 1 with one line per problem.
pub fn verify(ctx: &Ctx, _m: &Matches) -> Result<i32, CliError> {
    let store = ctx.store()?;
    let problems = store.verify()?;
    for p in &problems {
        eprintln!("{p}");
    }
    if problems.is_empty() {
        let db = store.db()?;
        println!("store {} is intact: {} images, {} layers", ctx.root.display(), db.images.len(), db.layers.len());
        Ok(0)
    } else {
        eprintln!("Error: {} problems in the store at {}", problems.len(), ctx.root.display());
        Ok(1)
    }
}

/// `berth info`: what this berth runs on and with, readable without the agent.
pub fn info(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    use berth_runtime::container::record::{list, Status};
    let fmt = Format::parse(m.value("format"))?;
    let (recs, _) = list(&ctx.root);
    let running = recs.iter().filter(|r| matches!(r.status, Status::Running { .. })).count();
    let images = ctx.store()?.db()?.images.len();
    let storage = std::fs::read_to_string(ctx.root.join("storage-driver")).map(|s| s.trim().to_string()).unwrap_or_else(|_| {
        if berth_runtime::container::copyfs::overlay_supported() {
            "overlay".into()
        } else {
            "copy".into()
        }
    });
    // Docker names the same driver (overlayfs over extracted layers) overlay2.
    let storage = if storage == "overlay" { "overlay2".to_string() } else { storage };
    let cgroup = match berth_runtime::cgroup::Cgroups::detect().map(|c| c.mode()) {
        Ok(berth_runtime::cgroup::Mode::V1) => "1",
        Ok(berth_runtime::cgroup::Mode::V2) => "2",
        Ok(berth_runtime::cgroup::Mode::Hybrid) => "1 (hybrid: v1 controllers and a cgroup2 mount)",
        Err(_) => "none found",
    };
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    let agent = ctx.root.join("agent.pid");
    let free = berth_runtime::fsutil::free_bytes(&ctx.root).unwrap_or(0);
    let (held, reserve) = berth_runtime::reserve::status(&ctx.root).unwrap_or((0, 0));
    let reserve_line = match (held, reserve) {
        (_, 0) => format!("none (free {})", binary_size(free)),
        (h, r) if h == r => format!("{} (free {})", binary_size(r), binary_size(free)),
        // Drawn on by berth's records on a full disk, or not regrown yet (no room for it).
        (h, r) => format!("{} of {} held (free {})", binary_size(h), binary_size(r), binary_size(free)),
    };
    let v = json!({
        "Containers": recs.len(), "ContainersRunning": running, "ContainersStopped": recs.len() - running, "Images": images,
        "ServerVersion": VERSION, "Driver": storage, "DriverStatus": if storage == "copy" { "copy fallback: each container gets a full copy of its image (no overlayfs)" } else { "overlayfs over the shared layer store" },
        "CgroupDriver": "cgroupfs", "CgroupVersion": cgroup, "KernelVersion": read("/proc/sys/kernel/osrelease"),
        "Architecture": std::env::consts::ARCH, "NCPU": berth_runtime::cgroup::online_cpus(), "MemTotal": mem_kb * 1024,
        "BerthRootDir": ctx.root, "AgentRunning": std::fs::read_to_string(&agent).is_ok(), "Host": ctx.host,
        "StorageReserve": reserve_line, "StorageReserveBytes": reserve, "StorageReserveHeld": held, "StorageFree": free,
    });
    let mut out = std::io::stdout().lock();
    let w = |e: std::io::Error| berth_runtime::Error::io("write output", e);
    match fmt {
        Format::Json => writeln!(out, "{}", crate::term::format::json_line(&v)).map_err(w)?,
        Format::Template(t) => writeln!(out, "{}", crate::term::format::render(&t, &v)?).map_err(w)?,
        Format::Table => {
            for (label, key) in [
                ("Containers", "Containers"),
                (" Running", "ContainersRunning"),
                (" Stopped", "ContainersStopped"),
                ("Images", "Images"),
                ("Server Version", "ServerVersion"),
                ("Storage Driver", "Driver"),
                (" Status", "DriverStatus"),
                ("Storage Reserve", "StorageReserve"),
                ("Cgroup Driver", "CgroupDriver"),
                ("Cgroup Version", "CgroupVersion"),
                ("Kernel Version", "KernelVersion"),
                ("Architecture", "Architecture"),
                ("CPUs", "NCPU"),
                ("Total Memory", "MemTotal"),
                ("Berth Root Dir", "BerthRootDir"),
                ("Agent Socket", "Host"),
                ("Agent Running", "AgentRunning"),
            ] {
                let val = match &v[key] {
                    serde_json::Value::String(s) => s.clone(),
                    other => crate::term::format::json_line(other),
                };
                let val = if key == "MemTotal" { human_size(v[key].as_u64().unwrap_or(0)) } else { val };
                writeln!(out, "{label}: {val}").map_err(w)?;
            }
        }
    }
    Ok(0)
}

/// `16 MiB`, `1.2 GiB`: as Docker's info shows sizes (binary units).
fn binary_size(n: u64) -> String {
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < 4 {
        v /= 1024.0;
        unit += 1;
    }
    let name = ["B", "KiB", "MiB", "GiB", "TiB"][unit];
    if v.fract() == 0.0 || v >= 100.0 {
        format!("{} {name}", berth_runtime::decimal::fixed(v, 0))
    } else {
        format!("{} {name}", berth_runtime::decimal::fixed(v, 1))
    }
}

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
                writeln!(out, "{}", crate::term::format::json_line(&line)).map_err(|e| berth_runtime::Error::io("write output", e))?;
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
        Format::Template(t) => {
            let vs: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|(t, total, active, size, rec)| json!({"Type": t, "TotalCount": total.to_string(), "Active": active.to_string(), "Size": human_size(size), "Reclaimable": format!("{} ({}%)", human_size(rec), pct(rec, size))}))
                .collect();
            let titles = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
            out.write_all(crate::term::format::render_rows(&t, &titles, &vs)?.as_bytes())
                .map_err(|e| berth_runtime::Error::io("write output", e))?;
        }
    }
    Ok(0)
}
