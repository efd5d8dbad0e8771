//! `berth agent`: the launcher. Reads the flags and berth.toml into the daemon's options, then
//! runs the daemon in this process.

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_runtime::Error;

use super::{op_err, CliError, Ctx};

const AGENT_OPTS: &[Opt] = &[
    opt("group", Some('G'), Some("string"), "Group that may use the agent's socket (mode 0660)"),
    opt(
        "storage-driver",
        Some('s'),
        Some("string"),
        "Container root file systems: overlay, or copy where the kernel has no overlayfs (default: overlay if available)",
    ),
    opt("live-restore", None, None, "Leave containers running when the agent stops; the next agent adopts them"),
    opt(
        "board",
        None,
        Some("string"),
        "Board profile naming devices for --device NAME: a file, or NAME for /etc/berth/boards/NAME.toml (env BERTH_BOARD) (default /etc/berth/board.toml if present)",
    ),
    opt(
        "preload-run",
        None,
        Some("file"),
        "Containers to create and start if missing, one line of run arguments each (default /etc/berth/preload-run.conf)",
    ),
    opt("default-network", None, Some("string"), "Network of containers run without --net: bridge (default) or host (boards without bridge support)"),
    opt("bridge-subnet", None, Some("string"), "Subnet of the default bridge network berth0 (default 172.17.0.0/16)"),
    opt(
        "userns-remap",
        None,
        Some("string"),
        "Run containers in user namespaces by default: default (user berth's /etc/subuid ranges, else berth's own) or a user name",
    ),
    opt("config", None, Some("file"), "Agent configuration: MQTT and updates (default /etc/berth/berth.toml, if present)"),
    opt("mqtt", None, Some("url"), "Broker to take updates from (mqtt://HOST[:PORT] or mqtts://...; repeat for failover)"),
    opt("device-id", None, Some("string"), "Device id on the broker (default: /etc/machine-id)"),
    opt("fleet-group", None, Some("string"), "Fleet group this device belongs to, for `fleet push --group` (repeatable)"),
    opt("trust", None, Some("file"), "Public key (PEM) whose signed updates are accepted (repeatable)"),
    opt("mqtt-ca", None, Some("file"), "CA certificate(s) to check the broker against (default: the system's)"),
    opt("mqtt-cert", None, Some("file"), "Client certificate for mutual TLS"),
    opt("mqtt-key", None, Some("file"), "Private key of the client certificate"),
];

pub const AGENT: Cmd =
    cmd("berth agent", "[OPTIONS]", "Run the berth agent (the daemon that runs and supervises containers)", AGENT_OPTS, 0, Some(0));

/// The agent's update settings and MQTT link: berth.toml, then flags over it.
fn update_settings(
    ctx: &Ctx,
    m: &Matches,
) -> Result<(crate::daemon::update::manager::Settings, Option<crate::daemon::update::session::Link>), CliError> {
    use crate::daemon::config::{self, Config};
    use crate::mqtt;
    let cfg = match m.value("config") {
        Some(p) => Config::load(std::path::Path::new(p), true)?,
        None => Config::load(std::path::Path::new(config::DEFAULT_PATH), false)?,
    };
    let mut c = cfg.mqtt;
    let urls: Vec<String> =
        if m.values("mqtt").is_empty() { c.brokers.clone() } else { m.values("mqtt").into_iter().map(str::to_string).collect() };
    let mut brokers = urls.iter().map(|u| mqtt::Broker::parse(u)).collect::<berth_runtime::Result<Vec<_>>>()?;
    if let Some(pf) = &c.password_file {
        let p = std::fs::read_to_string(pf).map_err(|e| Error::io_at("read", pf, e))?;
        c.password = Some(p.trim_end_matches('\n').to_string());
    }
    for b in &mut brokers {
        if b.username.is_none() {
            b.username = c.username.clone();
            b.password = c.password.clone();
        }
    }
    let device = match m.value("device-id").map(str::to_string).or(c.device_id.clone()) {
        Some(d) => d,
        None if brokers.is_empty() => "local".to_string(),
        None => config::machine_id()?,
    };
    if !berth_proto::names::valid_device_id(&device) {
        return Err(op_err(format!("invalid device id {device:?}: letters, digits, '-', '_' and '.' only, at most 64")));
    }
    let mut key_files = cfg.update.trusted_keys.clone();
    key_files.extend(m.values("trust").into_iter().map(std::path::PathBuf::from));
    let keys = key_files.iter().map(|k| berth_proto::sign::PublicKey::load(k)).collect::<berth_runtime::Result<Vec<_>>>()?;
    let mut groups = c.groups.clone();
    groups.extend(m.values("fleet-group").into_iter().map(str::to_string));
    let topic = c.topic_root.clone().unwrap_or_else(|| "berth/v1/{device}/".into()).replace("{device}", &device);
    let topic = if topic.ends_with('/') { topic } else { format!("{topic}/") };
    if !berth_proto::wire::valid_topic(&topic) {
        return Err(op_err(format!("invalid topic root {topic:?}")));
    }
    let max_size = cfg.update.max_size.as_deref().map(berth_runtime::cgroup::parse_size).transpose()?.map(|s| s as u64);
    let settings = crate::daemon::update::manager::Settings {
        device,
        groups,
        keys,
        topic,
        max_size,
        config: m.value("config").map(std::path::PathBuf::from),
    };
    if brokers.is_empty() {
        return Ok((settings, None));
    }
    if settings.keys.is_empty() {
        return Err(op_err("an agent on a broker needs trusted update keys: --trust FILE or [update] trusted_keys in berth.toml"));
    }
    let files = mqtt::TlsFiles {
        ca: m.value("mqtt-ca").map(std::path::PathBuf::from).or(c.ca.clone()),
        cert: m.value("mqtt-cert").map(std::path::PathBuf::from).or(c.cert.clone()),
        key: m.value("mqtt-key").map(std::path::PathBuf::from).or(c.key.clone()),
    };
    let tls = if brokers.iter().any(|b| b.tls) {
        Some(std::sync::Arc::new(mqtt::tls_config(&files, crate::daemon::update::clock::floor(&ctx.root))?))
    } else {
        None
    };
    let keep_alive = std::time::Duration::from_secs(c.keep_alive.unwrap_or(30));
    Ok((settings, Some(crate::daemon::update::session::Link { brokers, tls, keep_alive })))
}

/// The default network and bridge subnet: berth.toml's `[network]`, then flags over it.
fn net_settings(m: &Matches) -> Result<crate::daemon::supervisor::networks::NetSettings, CliError> {
    use crate::daemon::config::{self, Config};
    let cfg = match m.value("config") {
        Some(p) => Config::load(std::path::Path::new(p), true)?,
        None => Config::load(std::path::Path::new(config::DEFAULT_PATH), false)?,
    };
    let mut s = crate::daemon::supervisor::networks::NetSettings::default();
    if let Some(d) = m.value("default-network").map(str::to_string).or(cfg.network.default) {
        if !matches!(d.as_str(), "bridge" | "host" | "none") {
            return Err(op_err(format!("invalid default network {d:?}: bridge, host or none")));
        }
        s.default = d;
    }
    if let Some(sub) = m.value("bridge-subnet").map(str::to_string).or(cfg.network.subnet) {
        berth_runtime::net::ipam::Subnet::parse(&sub)?;
        s.subnet = sub;
    }
    Ok(s)
}

/// `userns-remap` and the subordinate-ID files: berth.toml's `[security]`, then the flag.
fn userns_settings(m: &Matches) -> Result<crate::daemon::userns::Settings, CliError> {
    use crate::daemon::config::{self, Config};
    let cfg = match m.value("config") {
        Some(p) => Config::load(std::path::Path::new(p), true)?,
        None => Config::load(std::path::Path::new(config::DEFAULT_PATH), false)?,
    };
    let mut s = crate::daemon::userns::Settings::default();
    if let Some(p) = cfg.security.subuid_file {
        s.subuid = p;
    }
    if let Some(p) = cfg.security.subgid_file {
        s.subgid = p;
    }
    if let Some(v) = m.value("userns-remap").map(str::to_string).or(cfg.security.userns_remap) {
        s.remap(&v)?;
        if s.required {
            // An operator's user without ranges is found now, not at the first container.
            berth_runtime::userns::Pool::load(&s.user, &s.subuid, &s.subgid, true)?;
        }
    }
    Ok(s)
}

pub fn agent(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    super::pipe::ignore();
    let socket = std::path::PathBuf::from(ctx.host.strip_prefix("unix://").unwrap_or(&ctx.host));
    let (updates, link) = update_settings(ctx, m)?;
    let board_arg = m.value("board").map(str::to_string).or_else(|| std::env::var("BERTH_BOARD").ok());
    let board = crate::daemon::devices::find_board(board_arg.as_deref())?;
    if let Some(name) = crate::daemon::devices::set_board(board.as_deref())? {
        crate::info!("board profile {name} ({})", board.as_deref().map(|p| p.display().to_string()).unwrap_or_default());
    }
    let net = net_settings(m)?;
    let userns = userns_settings(m)?;
    let disk = {
        use crate::daemon::config::{self, Config};
        let cfg = match m.value("config") {
            Some(p) => Config::load(std::path::Path::new(p), true)?,
            None => Config::load(std::path::Path::new(config::DEFAULT_PATH), false)?,
        };
        std::fs::create_dir_all(&ctx.root).map_err(|e| Error::io_at("create", &ctx.root, e))?;
        crate::daemon::disk::Settings::from_config(&cfg.storage, &ctx.root)?
    };
    crate::daemon::run(&crate::daemon::Options {
        disk,
        net,
        userns,
        updates,
        link,
        root: ctx.root.clone(),
        socket,
        group: m.value("group").map(str::to_string),
        storage: m.value("storage-driver").map(str::to_string),
        live_restore: m.flag("live-restore"),
        preload_run: m.value("preload-run").map(std::path::PathBuf::from).or_else(|| {
            let p = std::path::Path::new("/etc/berth/preload-run.conf");
            p.exists().then(|| p.to_path_buf())
        }),
    })?;
    Ok(0)
}
