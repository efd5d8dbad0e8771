//! `inspect`: containers (from their records, close to Docker's document) and images.

use serde_json::{json, Value};

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_proto::signal;
use berth_runtime::container::record::{self, Record, Status};
use berth_runtime::container::spec::{Mount, Net};
use berth_runtime::image::store::Store;
use berth_runtime::timefmt;

use super::ps::state_name;
use super::{op_err, CliError, Ctx};
use crate::term::format::Format;

const INSPECT_OPTS: &[Opt] = &[
    opt("format", Some('f'), Some("string"), "Format output: \"json\" for one JSON object per line, or a {{.Field}} template"),
    opt("type", None, Some("string"), "Return JSON for specified type (container or image)"),
];

pub const INSPECT: Cmd =
    cmd("berth inspect", "[OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information on containers and images", INSPECT_OPTS, 1, None);

/// The inspect document of a container, close to Docker's.
pub fn container_json(ctx: &Ctx, r: &Record) -> Value {
    let (running, pid, code, started, finished, oom, error) = match &r.status {
        Status::Created => (false, 0, 0, 0, 0, false, String::new()),
        Status::Running { pid, started, .. } => (true, *pid, 0, *started, 0, false, String::new()),
        Status::Exited { code, started, finished, oom_killed, error } => (false, 0, *code, *started, *finished, *oom_killed, error.clone()),
    };
    let t = |s: i64| if s == 0 { "0001-01-01T00:00:00Z".to_string() } else { timefmt::rfc3339(s) };
    let s = &r.spec;
    let net = match &s.net {
        Net::Host => "host".to_string(),
        Net::None => "none".to_string(),
        Net::Container(c) => format!("container:{c}"),
        Net::Bridge(n) => n.clone(),
    };
    let mounts: Vec<Value> = s
        .mounts
        .iter()
        .map(|m| match m {
            Mount::Tmpfs { target, options } => json!({"Type": "tmpfs", "Destination": target, "Options": options}),
            bind => berth_runtime::container::mounts::inspect_entry(&berth_runtime::volume::Volumes::open(&ctx.root), bind)
                .unwrap_or(Value::Null),
        })
        .collect();
    let mut v = json!({
        "Id": r.id,
        "Created": t(r.created),
        "Path": s.args.first().cloned().unwrap_or_default(),
        "Args": s.args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": state_name(&ctx.root, r), "Running": running, "Paused": running && berth_runtime::cgroup::is_paused(&ctx.root, &r.id), "Restarting": false, "OOMKilled": oom, "Dead": false,
            "Pid": pid, "ExitCode": code, "Error": error, "StartedAt": t(started), "FinishedAt": t(finished),
            "Health": if r.health.is_some() { crate::daemon::health::read(&ctx.root, &r.id).unwrap_or(Value::Null) } else { Value::Null },
        },
        "Image": r.image_id.to_string(),
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "LogPath": record::dir(&ctx.root, &r.id).join("container.log"),
        "HostConfig": {
            "Binds": r.binds, "NetworkMode": net, "AutoRemove": r.auto_remove, "Privileged": s.privileged, "ReadonlyRootfs": s.read_only,
            "CapAdd": r.cap_add, "CapDrop": r.cap_drop, "Init": s.init,
            "Devices": s.devices.iter().map(|n| json!({"PathOnHost": n.host, "PathInContainer": n.path, "CgroupPermissions": n.access.to_string()})).collect::<Vec<_>>(),
            "DeviceCgroupRules": s.device_watch.iter().filter_map(|w| match w { berth_device::hotplug::Watch::Rule(r) => Some(r.to_string()), _ => None }).collect::<Vec<_>>(),
            "RestartPolicy": {"Name": r.restart.name().split(':').next().unwrap_or("no"), "MaximumRetryCount": match r.restart { berth_runtime::container::record::Restart::OnFailure(n) => n, _ => 0 }},
            "Tmpfs": r.tmpfs.iter().map(|t| { let (p, o) = t.split_once(':').unwrap_or((t, "")); (p.to_string(), json!(o)) }).collect::<serde_json::Map<_, _>>(),
            "Memory": s.resources.memory.unwrap_or(0), "MemorySwap": s.resources.memory_swap.unwrap_or(0),
            "MemoryReservation": s.resources.memory_reservation.unwrap_or(0), "PidsLimit": s.resources.pids_limit,
            "NanoCpus": s.resources.cpus.map_or(0, |c| (c * 1e9) as i64), "CpuShares": s.resources.cpu_shares.unwrap_or(0),
            "SecurityOpt": s.no_new_privs.then(|| "no-new-privileges".to_string()).into_iter().chain(s.seccomp.security_opt()).collect::<Vec<_>>(),
            "UsernsMode": crate::daemon::userns::mode(s.userns.as_ref()),
            "Ulimits": s.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
            "Sysctls": (if s.sysctls.is_empty() { Value::Null } else { json!(s.sysctls.iter().cloned().collect::<std::collections::BTreeMap<String, String>>()) }),
            "StorageOpt": storage_opt(ctx, r),
            "LogConfig": {"Type": if r.log.enabled { "local" } else { "none" }, "Config": {"max-size": r.log.max_size.to_string(), "max-file": r.log.max_files.to_string()}},
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": s.hostname, "User": s.user, "Env": s.env, "Cmd": r.cmd, "Entrypoint": r.entrypoint, "Image": r.image,
            "WorkingDir": s.cwd, "Labels": r.labels, "Tty": s.tty, "OpenStdin": r.attach_stdin,
            "StopSignal": signal::name(r.stop_signal), "StopTimeout": r.stop_timeout,
            "Healthcheck": r.health.as_ref().map(|h| json!({"Test": h.test, "Interval": h.interval_ms * 1_000_000, "Timeout": h.timeout_ms * 1_000_000, "Retries": h.retries, "StartPeriod": h.start_period_ms * 1_000_000})),
        },
    });
    network_fields(ctx, r, pid, &mut v);
    v
}

/// `--storage-opt` as given (`{"size": "8m"}`), null without one, as Docker shows it.
fn storage_opt(ctx: &Ctx, r: &Record) -> Value {
    let Ok(text) = std::fs::read_to_string(record::dir(&ctx.root, &r.id).join("storage-opt")) else { return Value::Null };
    Value::Object(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), json!(v))).collect())
}

/// `NetworkSettings` and the network parts of `HostConfig`, as Docker shows them.
fn network_fields(ctx: &Ctx, r: &Record, pid: i32, v: &mut Value) {
    use berth_runtime::net::{config::ContainerNet, docker, network::Store};
    let cfg = ContainerNet::load(&record::dir(&ctx.root, &r.id)).unwrap_or_default();
    let nets = Store::open(&ctx.root).and_then(|s| s.list()).unwrap_or_default();
    let sandbox = if pid > 0 { format!("/proc/{pid}/ns/net") } else { String::new() };
    v["NetworkSettings"] = docker::network_settings(&cfg, &nets, &r.id, &[], &sandbox);
    let hc = &mut v["HostConfig"];
    hc["PortBindings"] = docker::port_bindings(&cfg.ports);
    hc["PublishAllPorts"] = json!(cfg.publish_all);
    hc["Dns"] = json!(cfg.dns);
    hc["DnsSearch"] = json!(cfg.dns_search);
    hc["DnsOptions"] = json!(cfg.dns_options);
    hc["ExtraHosts"] = json!(cfg.add_hosts);
    hc["Links"] = if cfg.links.is_empty() { Value::Null } else { json!(cfg.links) };
}

pub fn inspect(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let want = m.value("type");
    if let Some(t) = want {
        if t != "container" && t != "image" {
            return Err(op_err(format!("\"{t}\" is not a valid value for --type")));
        }
    }
    let (recs, _) = record::list(&ctx.root);
    let store = ctx.store()?;
    let db = store.db()?;
    let mut docs = Vec::new();
    let mut code = 0;
    for name in m.args() {
        if want != Some("image") {
            match record::find(&recs, name) {
                Ok(r) => {
                    docs.push(container_json(ctx, r));
                    continue;
                }
                // An ambiguous id prefix is an error of its own, as Docker's, not "no such object".
                Err(e) if e.kind() != berth_runtime::Kind::NotFound => {
                    eprintln!("Error: {}", e.message());
                    code = 1;
                    continue;
                }
                Err(_) => {}
            }
        }
        let img = if want != Some("container") { Store::find(&db, name).ok() } else { None };
        match img {
            Some((i, _)) => docs.push(super::image::inspect_json(&store, i)?),
            None => {
                eprintln!("Error: No such object: {name}");
                code = 1;
            }
        }
    }
    super::image::print_docs(&fmt, docs)?;
    Ok(code)
}
