//! A service as a container: the `berth run` words (Docker's flag names, parsed by the same code
//! as the command line) and the `com.docker.compose.*` labels by which `up`, `ps` and `down`
//! find the project's containers again and `up` sees what changed.

use crate::config::config_hash;
use crate::model::{Error, MountKind, Project, Result, Service, Ulimit};
use crate::units::format_duration;

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_WORKDIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_DEPENDS: &str = "com.docker.compose.depends_on";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";

/// What the engine this runs on can do; a service needing more is an error naming its line
/// ("not supported yet") instead of a container that silently lacks it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Support {
    /// Bridge networks: `networks:`, `--network NAME`, aliases, addresses, and the implicit
    /// default network. Without it a service must use `network_mode` (or gets the host's).
    pub networks: bool,
    /// `-p`/`ports:`.
    pub publish: bool,
    /// `--dns`, `--add-host`.
    pub dns: bool,
    /// `--sysctl`.
    pub sysctls: bool,
}

/// Where the project came from, for the labels.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub working_dir: String,
    pub config_files: Vec<String>,
}

/// `PROJECT-SERVICE-N`, or `container_name`.
pub fn container_name(project: &str, service: &str, s: &Service, number: u32) -> String {
    match &s.container_name {
        Some(n) => n.clone(),
        None => format!("{project}-{service}-{number}"),
    }
}

/// The labels a service's container carries (its own labels first, Compose's after).
pub fn labels(p: &Project, service: &str, number: u32, origin: &Origin) -> Result<Vec<(String, String)>> {
    let project = p.name.as_deref().unwrap_or_default();
    let s = p.services.get(service).ok_or_else(|| Error::plain(format!("no such service: {service}")))?;
    let mut out: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let depends: Vec<String> = s.depends_on.iter().map(|(k, d)| format!("{k}:{}:{}", d.condition.as_str(), d.restart)).collect();
    out.extend([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_SERVICE.to_string(), service.to_string()),
        (LABEL_NUMBER.to_string(), number.to_string()),
        (LABEL_HASH.to_string(), config_hash(s)),
        (LABEL_ONEOFF.to_string(), "False".to_string()),
        (LABEL_WORKDIR.to_string(), origin.working_dir.clone()),
        (LABEL_FILES.to_string(), origin.config_files.join(",")),
        (LABEL_DEPENDS.to_string(), depends.join(",")),
    ]);
    Ok(out)
}

fn add(w: &mut Vec<String>, flag: &str, v: &str) {
    w.push(format!("--{flag}"));
    w.push(v.to_string());
}

fn secs_ceil(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// Quotes a word for `sh -c` (a `CMD` health test becomes a shell line: `--health-cmd` is one).
fn sh_quote(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// A service's place on one network: the network's engine name, its aliases (the service name
/// first, as Compose makes every container reachable by it), and a fixed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub network: String,
    pub aliases: Vec<String>,
    pub ip: Option<String>,
}

/// The networks a service joins, in Compose's order (by key), none for a `network_mode`.
pub fn attachments(p: &Project, service: &str) -> Result<Vec<Attachment>> {
    let project = p.name.as_deref().unwrap_or_default();
    let s = p.services.get(service).ok_or_else(|| Error::plain(format!("no such service: {service}")))?;
    let mark = p.marks.get(service).copied().unwrap_or_default();
    if s.network_mode.is_some() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (key, sn) in &s.networks {
        let net = p.networks.get(key).ok_or_else(|| Error::at(mark, format!("undefined network {key:?}")))?;
        let mut aliases = vec![service.to_string()];
        let mut ip = None;
        if let Some(sn) = sn {
            aliases.extend(sn.aliases.iter().filter(|a| *a != service).cloned());
            ip = sn.ipv4_address.clone();
        }
        out.push(Attachment { network: net.name.clone().unwrap_or_else(|| format!("{project}_{key}")), aliases, ip });
    }
    Ok(out)
}

/// What `up` asks the engine for to make a project's network (`berth network create`'s fields),
/// with Compose's labels and a hash of the declaration, so that `up` after an edit re-creates
/// the network that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    pub name: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: Vec<(String, String)>,
    pub options: Vec<(String, String)>,
    pub hash: String,
}

/// The plan for network `key` (`None` for an external one, which must exist already).
pub fn network_plan(p: &Project, key: &str) -> Result<Option<NetworkPlan>> {
    let project = p.name.as_deref().unwrap_or_default();
    let n = p.networks.get(key).ok_or_else(|| Error::plain(format!("undefined network {key:?}")))?;
    if n.external {
        return Ok(None);
    }
    let not_yet = |what: &str| Error::at(n.mark, format!("networks.{key}: {what} not supported yet by berth"));
    if n.driver.as_deref().is_some_and(|d| d != "bridge") {
        return Err(not_yet("drivers other than bridge are"));
    }
    if n.subnets.len() > 1 {
        return Err(not_yet("more than one ipam subnet is"));
    }
    let (subnet, gateway) = n.subnets.first().map(|s| (s.subnet.clone(), s.gateway.clone())).unwrap_or_default();
    let hash = crate::config::network_hash(n);
    let mut labels: Vec<(String, String)> = n.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.extend([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_NETWORK.to_string(), key.to_string()),
        (LABEL_HASH.to_string(), hash.clone()),
    ]);
    Ok(Some(NetworkPlan {
        name: n.name.clone().unwrap_or_else(|| format!("{project}_{key}")),
        subnet,
        gateway,
        internal: n.internal,
        labels,
        options: n.driver_opts.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        hash,
    }))
}

/// The words after `berth run` (without `-d`) that create the service's container number
/// `number`: options, the image, then the command.
pub fn run_words(p: &Project, service: &str, number: u32, origin: &Origin, support: Support) -> Result<Vec<String>> {
    let project = p.name.as_deref().unwrap_or_default();
    let s = p.services.get(service).ok_or_else(|| Error::plain(format!("no such service: {service}")))?;
    let mark = p.marks.get(service).copied().unwrap_or_default();
    let not_yet = |what: &str| Error::at(mark, format!("services.{service}: {what} not supported yet by berth"));
    let mut w: Vec<String> = Vec::new();
    add(&mut w, "name", &container_name(project, service, s, number));
    for (k, v) in labels(p, service, number, origin)? {
        add(&mut w, "label", &format!("{k}={v}"));
    }
    for (k, v) in &s.environment {
        // Named but unset anywhere: left out, as `docker run -e NAME` does.
        if let Some(v) = v {
            add(&mut w, "env", &format!("{k}={v}"));
        }
    }
    if let Some(x) = &s.working_dir {
        add(&mut w, "workdir", x);
    }
    if let Some(x) = &s.user {
        add(&mut w, "user", x);
    }
    if let Some(x) = &s.hostname {
        add(&mut w, "hostname", x);
    }
    for m in &s.volumes {
        match m.kind {
            MountKind::Bind | MountKind::Volume => {
                if m.propagation.is_some() {
                    return Err(Error::at(m.mark, format!("services.{service}.volumes: bind propagation is not supported yet by berth")));
                }
                let source = match (m.kind, &m.source) {
                    (MountKind::Volume, Some(v)) => {
                        let vol = p.volumes.get(v).ok_or_else(|| Error::at(m.mark, format!("undefined volume {v:?}")))?;
                        if vol.driver.as_deref().is_some_and(|d| d != "local") || !vol.driver_opts.is_empty() {
                            return Err(Error::at(
                                vol.mark,
                                format!("volumes.{v}: volume drivers and driver_opts are not supported yet by berth"),
                            ));
                        }
                        Some(vol.name.clone().unwrap_or_else(|| format!("{project}_{v}")))
                    }
                    (_, src) => src.clone(),
                };
                let mut spec = match source {
                    Some(src) => format!("{src}:{}", m.target),
                    None => m.target.clone(),
                };
                if m.read_only {
                    spec.push_str(":ro");
                }
                add(&mut w, "volume", &spec);
            }
            MountKind::Tmpfs => {
                let mut opts = Vec::new();
                if let Some(sz) = m.tmpfs_size {
                    opts.push(format!("size={sz}"));
                }
                if let Some(mode) = m.tmpfs_mode {
                    opts.push(format!("mode={mode:o}"));
                }
                let spec = if opts.is_empty() { m.target.clone() } else { format!("{}:{}", m.target, opts.join(",")) };
                add(&mut w, "tmpfs", &spec);
            }
        }
    }
    for t in &s.tmpfs {
        add(&mut w, "tmpfs", t);
    }
    if s.read_only {
        w.push("--read-only".into());
    }
    // Network: an explicit mode, else bridge networks (when the engine has them).
    match s.network_mode.as_deref() {
        Some(m) if m.starts_with("service:") => {
            let other = &m["service:".len()..];
            let os = p.services.get(other).ok_or_else(|| Error::at(mark, format!("undefined service {other:?}")))?;
            add(&mut w, "network", &format!("container:{}", container_name(project, other, os, 1)));
        }
        Some(m) => add(&mut w, "network", m),
        None if support.networks => {
            // The first network at create; `up` connects the others before the start.
            if let Some(a) = attachments(p, service)?.into_iter().next() {
                add(&mut w, "network", &a.network);
                for alias in &a.aliases {
                    add(&mut w, "network-alias", alias);
                }
                if let Some(ip) = &a.ip {
                    add(&mut w, "ip", ip);
                }
            }
        }
        None => {
            // No bridge networks yet: only the implicit default network, which berth runs
            // as its own default (the host's network), is accepted.
            if s.networks.keys().any(|k| k != "default") || s.networks.values().any(Option::is_some) {
                return Err(not_yet("networks are"));
            }
        }
    }
    for port in &s.ports {
        if !support.publish {
            return Err(Error::at(
                port.mark,
                format!("services.{service}.ports: publishing ports is not supported yet by berth (use network_mode: host)"),
            ));
        }
        let mut spec = String::new();
        if let Some(ip) = &port.host_ip {
            if ip.contains(':') {
                spec.push_str(&format!("[{ip}]:"));
            } else {
                spec.push_str(&format!("{ip}:"));
            }
        }
        match &port.published {
            Some(pb) => spec.push_str(&format!("{pb}:")),
            None if port.host_ip.is_some() => spec.push(':'),
            None => {}
        }
        spec.push_str(&format!("{}/{}", port.target, port.protocol));
        add(&mut w, "publish", &spec);
    }
    if !s.dns.is_empty() || !s.extra_hosts.is_empty() {
        if !support.dns {
            return Err(not_yet("dns and extra_hosts are"));
        }
        for d in &s.dns {
            add(&mut w, "dns", d);
        }
        for h in &s.extra_hosts {
            add(&mut w, "add-host", &h.replacen('=', ":", 1));
        }
    }
    if !s.sysctls.is_empty() {
        if !support.sysctls {
            return Err(not_yet("sysctls are"));
        }
        for (k, v) in &s.sysctls {
            add(&mut w, "sysctl", &format!("{k}={v}"));
        }
    }
    let memory = s.mem_limit.or(s.limits.memory);
    if let Some(m) = memory {
        add(&mut w, "memory", &m.to_string());
    }
    if let Some(m) = s.memswap_limit {
        add(&mut w, "memory-swap", &m.to_string());
    }
    if let Some(m) = s.mem_reservation.or(s.reservations.memory) {
        add(&mut w, "memory-reservation", &m.to_string());
    }
    if let Some(n) = s.pids_limit.or(s.limits.pids) {
        add(&mut w, "pids-limit", &n.to_string());
    }
    if let Some(c) = s.cpus.or(s.limits.cpus) {
        add(&mut w, "cpus", &c.to_string());
    }
    for c in &s.cap_add {
        add(&mut w, "cap-add", c);
    }
    for c in &s.cap_drop {
        add(&mut w, "cap-drop", c);
    }
    for o in &s.security_opt {
        add(&mut w, "security-opt", o);
    }
    for (name, u) in &s.ulimits {
        let v = match u {
            Ulimit::Single(n) => format!("{name}={n}"),
            Ulimit::Pair { soft, hard } => format!("{name}={soft}:{hard}"),
        };
        add(&mut w, "ulimit", &v);
    }
    if let Some(sig) = &s.stop_signal {
        add(&mut w, "stop-signal", sig);
    }
    if let Some(g) = s.stop_grace_period {
        add(&mut w, "stop-timeout", &secs_ceil(g).to_string());
    }
    if s.init == Some(true) {
        w.push("--init".into());
    }
    if s.privileged {
        w.push("--privileged".into());
    }
    for d in &s.devices {
        add(&mut w, "device", d);
    }
    for r in &s.device_cgroup_rules {
        add(&mut w, "device-cgroup-rule", r);
    }
    if let Some(r) = &s.restart {
        add(&mut w, "restart", r);
    }
    if let Some(l) = &s.logging {
        if let Some(d) = &l.driver {
            add(&mut w, "log-driver", d);
        }
        for (k, v) in &l.options {
            add(&mut w, "log-opt", &format!("{k}={v}"));
        }
    }
    if let Some(h) = &s.healthcheck {
        match h.test.first().map(String::as_str) {
            _ if h.disable => w.push("--no-healthcheck".into()),
            Some("NONE") => w.push("--no-healthcheck".into()),
            Some("CMD-SHELL") => add(&mut w, "health-cmd", &h.test[1..].join(" ")),
            Some("CMD") => add(&mut w, "health-cmd", &h.test[1..].iter().map(|x| sh_quote(x)).collect::<Vec<_>>().join(" ")),
            _ => {}
        }
        if !h.disable {
            if let Some(d) = h.interval {
                add(&mut w, "health-interval", &format_duration(d));
            }
            if let Some(d) = h.timeout {
                add(&mut w, "health-timeout", &format_duration(d));
            }
            if let Some(r) = h.retries {
                add(&mut w, "health-retries", &r.to_string());
            }
            if let Some(d) = h.start_period {
                add(&mut w, "health-start-period", &format_duration(d));
            }
        }
    }
    let entry_rest: &[String] = match &s.entrypoint {
        Some(e) if e.is_empty() => {
            add(&mut w, "entrypoint", "");
            &[]
        }
        Some(e) => {
            add(&mut w, "entrypoint", &e[0]);
            &e[1..]
        }
        None => &[],
    };
    let image = s.image.clone().ok_or_else(|| Error::at(mark, format!("service {service:?} has no image")))?;
    w.push(image);
    // `--entrypoint` takes one word; the rest of the list goes before the command (the process
    // sees entrypoint + command either way).
    w.extend(entry_rest.iter().cloned());
    if let Some(c) = &s.command {
        w.extend(c.iter().cloned());
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{load_texts, Options};
    use std::path::Path;

    fn load(t: &str) -> Project {
        let o = Options { workdir: "/srv/demo".into(), ..Default::default() };
        load_texts(&[("compose.yaml".into(), t.into())], Path::new("/srv/demo"), &o, &[]).unwrap().0
    }

    fn origin() -> Origin {
        Origin { working_dir: "/srv/demo".into(), config_files: vec!["/srv/demo/compose.yaml".into()] }
    }

    #[test]
    fn words() {
        let p = load(
            "services:
  web:
    image: busybox
    entrypoint: [sh, -c]
    command: ['echo hi; sleep 1']
    environment: {B: '2', A: '1', UNSET: null}
    volumes: ['./html:/www:ro', 'data:/data', {type: tmpfs, target: /run, tmpfs: {size: 1k, mode: 1777}}]
    network_mode: host
    mem_limit: 64m
    cpus: 0.5
    ulimits: {nofile: {soft: 10, hard: 20}}
    stop_grace_period: 1500ms
    healthcheck: {test: [CMD, wget, -q, 'http://x/a b'], interval: 5s, retries: 2}
    restart: unless-stopped
    init: true
volumes:
  data:
",
        );
        let w = run_words(&p, "web", 1, &origin(), Support::default()).unwrap();
        let text = w.join(" ");
        assert!(
            text.starts_with("--name demo-web-1 --label com.docker.compose.project=demo --label com.docker.compose.service=web"),
            "{text}"
        );
        assert!(text.contains("--label com.docker.compose.container-number=1 "), "{text}");
        let after_labels = text.split(" --env ").skip(1).collect::<Vec<_>>().join(" --env ");
        assert_eq!(
            format!("--env {after_labels}"),
            "--env A=1 --env B=2 --volume /srv/demo/html:/www:ro --volume demo_data:/data --tmpfs /run:size=1024,mode=1777 \
             --network host --memory 67108864 --cpus 0.5 --ulimit nofile=10:20 --stop-timeout 2 --init --restart unless-stopped \
             --health-cmd wget -q 'http://x/a b' --health-interval 5s --health-retries 2 --entrypoint sh busybox -c echo hi; sleep 1"
        );
        let hash = config_hash(&p.services["web"]);
        assert!(w.contains(&format!("com.docker.compose.config-hash={hash}")));
        assert!(w.contains(&"com.docker.compose.project.config_files=/srv/demo/compose.yaml".to_string()));
    }

    #[test]
    fn not_supported_yet_names_the_line() {
        let p = load("services:\n  web:\n    image: busybox\n    ports: ['8080:80']\n");
        let e = run_words(&p, "web", 1, &origin(), Support::default()).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 4);
        assert!(e.msg.contains("not supported yet"), "{e}");
        let w = run_words(&p, "web", 1, &origin(), Support { networks: true, publish: true, ..Default::default() }).unwrap();
        assert!(w.join(" ").contains("--network demo_default --network-alias web --publish 8080:80/tcp busybox"), "{w:?}");
        let p = load("services:\n  web:\n    image: busybox\n    networks: [front]\nnetworks:\n  front:\n");
        let e = run_words(&p, "web", 1, &origin(), Support::default()).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 2);
        assert!(e.msg.contains("networks are not supported yet"), "{e}");
        // The implicit default network is berth's own default until bridges exist.
        let p = load("services:\n  web: {image: busybox}\n  side: {image: busybox, network_mode: 'service:web'}\n");
        assert!(run_words(&p, "web", 1, &origin(), Support::default()).is_ok());
        let w = run_words(&p, "side", 1, &origin(), Support::default()).unwrap();
        assert!(w.join(" ").contains("--network container:demo-web-1"));
    }

    #[test]
    fn networks_aliases_and_plans() {
        let p = load(
            "services:
  web:
    image: busybox
    networks:
      front: {aliases: [www], ipv4_address: 10.5.0.9}
      back:
  db: {image: busybox, networks: [back]}
networks:
  front:
    ipam: {config: [{subnet: 10.5.0.0/24, gateway: 10.5.0.1}]}
    internal: true
  back: {}
  outer: {external: true, name: lan}
",
        );
        let net = |n: &str, aliases: &[&str], ip: Option<&str>| Attachment {
            network: n.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ip: ip.map(str::to_string),
        };
        assert_eq!(
            attachments(&p, "web").unwrap(),
            vec![net("demo_back", &["web"], None), net("demo_front", &["web", "www"], Some("10.5.0.9"))]
        );
        let all = Support { networks: true, publish: true, dns: true, sysctls: false };
        let w = run_words(&p, "web", 1, &origin(), all).unwrap().join(" ");
        assert!(w.ends_with("--network demo_back --network-alias web busybox"), "{w}");
        let front = network_plan(&p, "front").unwrap().unwrap();
        assert_eq!(
            (front.name.as_str(), front.subnet.as_deref(), front.gateway.as_deref(), front.internal),
            ("demo_front", Some("10.5.0.0/24"), Some("10.5.0.1"), true)
        );
        assert!(front.labels.contains(&(LABEL_PROJECT.into(), "demo".into())));
        assert!(front.labels.contains(&(LABEL_NETWORK.into(), "front".into())));
        assert!(front.labels.contains(&(LABEL_HASH.into(), front.hash.clone())));
        assert_ne!(front.hash, network_plan(&p, "back").unwrap().unwrap().hash);
        assert_eq!(network_plan(&p, "outer").unwrap(), None);
        let p = load("services:\n  web: {image: busybox}\nnetworks:\n  default: {driver: overlay}\n");
        let e = network_plan(&p, "default").unwrap_err();
        assert!(e.msg.contains("drivers other than bridge are not supported yet"), "{e}");
        assert_eq!(e.mark.unwrap().line, 4);
    }
}
