//! Resolving `run`/`create` options against the image config into a container record, with
//! Docker's defaults and error messages. Nothing is created on disk here: every check runs
//! before anything exists, so a refused `run` leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use berth_runtime::cgroup::{Cgroups, Resources};
use berth_runtime::container::caps;
use berth_runtime::container::mounts;
use berth_runtime::container::record::{Record, Status};
use berth_runtime::container::spec::{check_sysctl, parse_ulimit, tmpfs_options, Mount, Net, Seccomp, Spec};
use berth_runtime::image::platform::Platform;
use berth_runtime::image::store::Store;
use berth_runtime::net::config::{ContainerNet, NetworkRef};
use berth_runtime::net::{ipam, network, ports};
use berth_runtime::{timefmt, Error, Result};

use berth_proto::names::valid_name;
use berth_proto::signal;
use berth_proto::socket::RunOptions;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default device rules: mknod of anything, use of the standard nodes only.
pub use berth_device::rule::DEFAULT_RULES as DEFAULT_DEVICE_RULES;

pub fn random_id() -> Result<String> {
    berth_runtime::random::hex(32).map_err(|e| Error::io("random container id", e))
}

/// Docker-style generated names (`brave_turing`), from the id so they are stable per container.
fn generated_name(id: &str, taken: &[&Record]) -> String {
    const A: &[&str] = &[
        "brave", "calm", "eager", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble", "proud", "quiet", "sharp", "tender",
        "vivid", "witty",
    ];
    const B: &[&str] = &[
        "babbage", "curie", "darwin", "euler", "fermi", "galois", "hopper", "kepler", "lovelace", "noether", "pascal", "ritchie",
        "shannon", "turing", "volta", "wiles",
    ];
    let n = u64::from_str_radix(&id[..12], 16).unwrap_or(0);
    let base = format!("{}_{}", A[(n % 16) as usize], B[((n / 16) % 16) as usize]);
    let mut name = base.clone();
    let mut i = 1;
    while taken.iter().any(|r| r.name == name) {
        i += 1;
        name = format!("{base}{i}");
    }
    name
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Go durations as Docker takes them: `30s`, `1m30s`, `500ms`, `2h`.
pub fn parse_duration(s: &str) -> Result<u64> {
    let bad = || Error::invalid(format!("invalid duration {s:?} (e.g. 30s, 1m30s, 500ms)"));
    let (mut total, mut rest) = (0f64, s);
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let num = berth_runtime::decimal::parse_f64(&rest[..n]).ok_or_else(bad)?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let ms = match &rest[..u] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(bad()),
        };
        total += num * ms;
        rest = &rest[u..];
    }
    Ok(total as u64)
}

/// The health check: the image's HEALTHCHECK with `--health-*` flags over it.
fn health(o: &RunOptions, cfg: &Value) -> Result<Option<berth_runtime::container::record::Health>> {
    // Bad values are refused even where no check will run, as Docker parses them up front.
    for v in [&o.health_interval, &o.health_timeout, &o.health_start_period].into_iter().flatten() {
        parse_duration(v)?;
    }
    if o.no_healthcheck {
        return Ok(None);
    }
    let img = cfg.get("Healthcheck");
    let ns_ms =
        |k: &str, default: u64| img.and_then(|h| h.get(k)).and_then(Value::as_u64).filter(|v| *v > 0).map_or(default, |v| v / 1_000_000);
    let test = match &o.health_cmd {
        Some(c) => vec!["CMD-SHELL".to_string(), c.clone()],
        None => strings(img.and_then(|h| h.get("Test"))),
    };
    if test.is_empty() || test[0] == "NONE" {
        return Ok(None);
    }
    if !matches!(test[0].as_str(), "CMD" | "CMD-SHELL") || test.len() < 2 {
        return Err(Error::invalid(format!("invalid health check test {test:?}")));
    }
    let dur = |v: &Option<String>, k: &str, d: u64| -> Result<u64> { v.as_deref().map_or(Ok(ns_ms(k, d)), parse_duration) };
    let h = berth_runtime::container::record::Health {
        test,
        interval_ms: dur(&o.health_interval, "Interval", 30_000)?,
        timeout_ms: dur(&o.health_timeout, "Timeout", 30_000)?,
        retries: o
            .health_retries
            .unwrap_or_else(|| img.and_then(|h| h.get("Retries")).and_then(Value::as_u64).filter(|r| *r > 0).unwrap_or(3) as u32),
        start_period_ms: dur(&o.health_start_period, "StartPeriod", 0)?,
    };
    if h.interval_ms < 1 || h.timeout_ms < 1 {
        return Err(Error::invalid("health check interval and timeout must be positive"));
    }
    Ok(Some(h))
}

pub struct Resolved {
    pub record: Record,
    pub warnings: Vec<String>,
    /// Bind directories and volumes to make when the container is created.
    pub mounts: mounts::Plan,
    /// Its networks' options (bridge networks only).
    pub net: ContainerNet,
}

/// The network options of `run` checked against the network mode, as Docker checks them: ports
/// are published on bridge networks only (discarded with a warning on `host`, refused on `none`
/// and `container:`), `--ip` and aliases on user networks only; `-P` publishes the image's
/// `EXPOSE` ports.
fn net_options(o: &RunOptions, net: &Net, image_cfg: &Value) -> Result<(ContainerNet, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut ports = Vec::new();
    for p in &o.publish {
        ports.extend(ports::parse(p)?);
    }
    if o.publish_all {
        if let Some(exposed) = image_cfg.get("ExposedPorts").and_then(Value::as_object) {
            for k in exposed.keys() {
                for r in ports::exposed(k)? {
                    if !ports.iter().any(|p: &ports::PortRequest| p.container_port == r.container_port && p.proto == r.proto) {
                        ports.push(r);
                    }
                }
            }
        }
    }
    let ip =
        o.ip.as_deref()
            .map(|i| i.parse::<std::net::Ipv4Addr>().map_err(|_| Error::invalid(format!("invalid IPv4 address: {i}"))))
            .transpose()?;
    let mac = o.mac_address.as_deref().map(ipam::parse_mac).transpose()?;
    for h in &o.add_hosts {
        berth_runtime::net::files::AddHost::parse(h)?;
    }
    let name = match net {
        Net::Bridge(name) => name.clone(),
        Net::Host => {
            if !ports.is_empty() || o.publish_all {
                warnings.push("Published ports are discarded when using host network mode".to_string());
            }
            if ip.is_some() {
                return Err(Error::invalid("user specified IP address is supported on user defined networks only"));
            }
            return Ok((ContainerNet::default(), warnings));
        }
        Net::None | Net::Container(_) => {
            if !ports.is_empty() || o.publish_all {
                return Err(Error::invalid("conflicting options: port publishing and the container type network mode"));
            }
            if ip.is_some() || mac.is_some() {
                return Err(Error::invalid("conflicting options: mac-address/ip and the network mode"));
            }
            return Ok((ContainerNet::default(), warnings));
        }
    };
    if name == network::DEFAULT_NETWORK {
        if ip.is_some() {
            return Err(Error::invalid("user specified IP address is supported on user defined networks only"));
        }
        if !o.network_aliases.is_empty() {
            return Err(Error::invalid("network-scoped alias is supported only for containers in user defined networks"));
        }
    }
    let cfg = ContainerNet {
        networks: vec![NetworkRef { name, aliases: o.network_aliases.clone(), ip, mac }],
        ports,
        publish_all: o.publish_all,
        publish: o.publish.clone(),
        dns: o.dns.clone(),
        dns_search: o.dns_search.clone(),
        dns_options: o.dns_options.clone(),
        add_hosts: o.add_hosts.clone(),
        links: o.links.clone(),
    };
    Ok((cfg, warnings))
}

pub fn resolve(root: &Path, store: &Store, cgroups: &Cgroups, o: &RunOptions, existing: &[&Record]) -> Result<Resolved> {
    let id = random_id()?;
    let name = match &o.name {
        Some(n) => {
            if !valid_name(n) {
                return Err(Error::invalid(format!("Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
            }
            if let Some(r) = existing.iter().find(|r| &r.name == n) {
                return Err(Error::conflict(format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    r.id
                )));
            }
            n.clone()
        }
        None => generated_name(&id, existing),
    };
    let db = store.db()?;
    let (img, _) = Store::find(&db, &o.image).map_err(|_| Error::not_found(format!("Unable to find image '{}' locally", o.image)))?;
    let host = Platform::host();
    if !host.matches(&img.os, &img.arch, img.variant.as_deref()) {
        let v = img.variant.as_ref().map(|v| format!("/{v}")).unwrap_or_default();
        return Err(Error::invalid(format!(
            "image {} is for platform {}/{}{v}, which this machine ({host}) cannot run",
            o.image, img.os, img.arch
        )));
    }
    let config: Value = serde_json::from_slice(&store.config(img)?).map_err(|e| Error::invalid(format!("config of {}: {e}", img.id)))?;
    let cfg = config.get("config").cloned().unwrap_or(Value::Null);
    let entrypoint = match &o.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => strings(cfg.get("Entrypoint")),
    };
    // Docker: an explicit --entrypoint drops the image's CMD.
    let cmd = if !o.cmd.is_empty() {
        o.cmd.clone()
    } else if o.entrypoint.is_some() {
        Vec::new()
    } else {
        strings(cfg.get("Cmd"))
    };
    let args: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    if args.is_empty() {
        return Err(Error::invalid("No command specified"));
    }
    let net = Net::parse(o.net.as_deref().unwrap_or("host"))?;
    let (net_cfg, warnings) = net_options(o, &net, &cfg)?;
    if let Net::Container(other) = &net {
        berth_runtime::container::record::find(existing.iter().copied(), other)?;
    }
    let hostname = match (&o.hostname, &net) {
        (Some(h), _) => h.clone(),
        (None, Net::Host) => {
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| id[..12].to_string())
        }
        (None, _) => id[..12].to_string(),
    };
    let mut env: Vec<String> = strings(cfg.get("Env"));
    let mut set_env = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    for e in &o.env {
        if e.is_empty() || e.starts_with('=') {
            return Err(Error::invalid(format!("invalid environment variable: {e}")));
        }
        set_env(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if let Some(w) = &o.workdir {
        if !w.starts_with('/') {
            return Err(Error::invalid(format!("the working directory '{w}' is invalid, it needs to be an absolute path")));
        }
    }
    // -v and --mount, then an anonymous volume for each of the image's VOLUMEs left uncovered.
    let volumes = berth_runtime::volume::Volumes::open(root);
    let mut reqs = o.volumes.iter().map(|v| mounts::parse_volume(v)).collect::<Result<Vec<_>>>()?;
    for m in &o.mounts {
        reqs.push(mounts::parse_mount(m)?);
    }
    let image_vols: Vec<String> = cfg.get("Volumes").and_then(Value::as_object).map(|v| v.keys().cloned().collect()).unwrap_or_default();
    let tmpfs_targets: Vec<String> = o.tmpfs.iter().map(|t| t.split(':').next().unwrap_or("").to_string()).collect();
    mounts::image_volumes(&mut reqs, &image_vols, &tmpfs_targets);
    let plan = mounts::plan(&volumes, &reqs)?;
    let anonymous: Vec<PathBuf> = plan.anonymous().iter().map(|n| volumes.path(n)).collect();
    let mut mounts = plan.mounts.clone();
    for t in &o.tmpfs {
        let (target, opts) = t.split_once(':').unwrap_or((t, ""));
        if !target.starts_with('/') {
            return Err(Error::invalid(format!("invalid tmpfs mount: {t}: the target must be an absolute path")));
        }
        tmpfs_options(opts).map_err(|e| e.context(format!("--tmpfs {t}")))?;
        mounts.push(Mount::Tmpfs { target: target.to_string(), options: opts.to_string() });
    }
    let mut no_new_privs = false;
    if o.no_new_privileges {
        no_new_privs = true;
    }
    let log = berth_runtime::container::logs::LogConfig::parse(o.log_driver.as_deref(), &o.log_opts)?;
    let restart = match &o.restart {
        Some(r) => berth_runtime::container::record::Restart::parse(r)?,
        None => berth_runtime::container::record::Restart::No,
    };
    if o.auto_remove && restart != berth_runtime::container::record::Restart::No {
        return Err(Error::invalid("Conflicting options: --restart and --rm"));
    }
    let ulimits = o.ulimits.iter().map(|u| parse_ulimit(u)).collect::<Result<Vec<_>>>()?;
    let mut labels = BTreeMap::new();
    if let Some(l) = cfg.get("Labels").and_then(Value::as_object) {
        for (k, v) in l {
            labels.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    for l in &o.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let dev = crate::daemon::devices::resolve(&o.devices, &o.device_cgroup_rules, o.privileged)?;
    let resources = Resources {
        memory: o.memory,
        memory_swap: o.memory_swap,
        memory_reservation: o.memory_reservation,
        pids_limit: o.pids_limit,
        cpus: o.cpus,
        cpu_shares: o.cpu_shares,
        devices: dev.rules.into(),
    };
    resources.validate()?;
    let stop_signal = match o.stop_signal.as_deref().or_else(|| cfg.get("StopSignal").and_then(Value::as_str)) {
        Some(s) => signal::parse(s)?,
        None => libc::SIGTERM,
    };
    let own_net = matches!(net, Net::Bridge(_) | Net::None);
    let sysctls = o.sysctls.iter().map(|kv| check_sysctl(kv, own_net).map_err(Error::invalid)).collect::<Result<Vec<_>>>()?;
    let spec = Spec {
        args: args.into(),
        env: env.into(),
        cwd: o.workdir.clone().or_else(|| cfg.get("WorkingDir").and_then(Value::as_str).map(str::to_string)).unwrap_or_default(),
        user: o.user.clone().or_else(|| cfg.get("User").and_then(Value::as_str).map(str::to_string)).unwrap_or_default(),
        hostname,
        mounts: mounts.into(),
        read_only: o.read_only,
        net,
        caps: caps::resolve(&o.cap_add, &o.cap_drop, o.privileged)?.into(),
        privileged: o.privileged,
        no_new_privs,
        ulimits: ulimits.into(),
        init: o.init,
        tty: o.tty,
        resources,
        devices: dev.nodes.into(),
        device_watch: dev.watch.into(),
        device_args: o.devices.as_slice().into(),
        device_cgroup_rules: o.device_cgroup_rules.as_slice().into(),
        seccomp: match o.seccomp.as_deref() {
            None => Seccomp::Default,
            Some("unconfined") => Seccomp::Unconfined,
            Some(json) => Seccomp::parse(json)?,
        },
        userns: None,
        sysctls: sysctls.into(),
    };
    let _ = cgroups;
    let record = Record {
        id,
        name,
        image: o.image.clone(),
        image_id: img.id.clone(),
        layers: img.layers.clone().into(),
        created: timefmt::now(),
        spec,
        status: Status::Created,
        auto_remove: o.auto_remove,
        stop_signal,
        stop_timeout: o.stop_timeout.unwrap_or(10),
        labels,
        attach_stdin: o.interactive,
        log,
        restart,
        anonymous_volumes: anonymous.into(),
        restart_count: 0,
        user_stopped: false,
        health: health(o, &cfg)?.map(Box::new),
        cap_add: o.cap_add.as_slice().into(),
        cap_drop: o.cap_drop.as_slice().into(),
        binds: o.volumes.as_slice().into(),
        tmpfs: o.tmpfs.as_slice().into(),
        entrypoint: entrypoint.into(),
        cmd: cmd.into(),
    };
    Ok(Resolved { record, warnings, mounts: plan, net: net_cfg })
}
