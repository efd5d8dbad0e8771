//! The normalised model in the shape `docker compose config` (Compose v2) prints: long syntax for
//! volumes and ports, lists for commands, maps for environment and labels, durations as Go
//! prints them, sizes in bytes, resource names resolved; keys in Compose's (alphabetical) order.

use crate::model::{Condition, MountKind, Network, Project, Service, Ulimit, Volume};
use crate::units::format_duration;
use crate::value::V;

fn map(entries: Vec<(&str, V)>) -> V {
    V::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn str_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> V {
    V::Map(m.into_iter().map(|(k, v)| (k.clone(), V::s(v))).collect())
}

fn dur(ns: u64) -> V {
    V::s(format_duration(ns))
}

/// One service, as `config` prints it (this is also what the config hash covers).
pub fn service_value(s: &Service) -> V {
    let mut out: Vec<(&str, V)> = Vec::new();
    let mut push = |k: &'static str, v: V| out.push((k, v));
    if !s.cap_add.is_empty() {
        push("cap_add", V::strs(&s.cap_add));
    }
    if !s.cap_drop.is_empty() {
        push("cap_drop", V::strs(&s.cap_drop));
    }
    if let Some(c) = &s.command {
        push("command", V::strs(c));
    }
    if let Some(c) = &s.container_name {
        push("container_name", V::s(c));
    }
    if let Some(c) = s.cpus {
        push("cpus", V::Float(c));
    }
    if !s.depends_on.is_empty() {
        push(
            "depends_on",
            V::Map(
                s.depends_on
                    .iter()
                    .map(|(k, d)| {
                        let mut m = vec![("condition", V::s(d.condition.as_str()))];
                        if d.restart {
                            m.push(("restart", V::Bool(true)));
                        }
                        m.push(("required", V::Bool(d.required)));
                        (k.clone(), map(m))
                    })
                    .collect(),
            ),
        );
    }
    let res = |r: &crate::model::Resources| {
        let mut m = Vec::new();
        if let Some(c) = r.cpus {
            m.push(("cpus", V::Float(c)));
        }
        if let Some(b) = r.memory {
            m.push(("memory", V::s(b.to_string())));
        }
        if let Some(p) = r.pids {
            m.push(("pids", V::Int(p)));
        }
        m
    };
    let (limits, reservations) = (res(&s.limits), res(&s.reservations));
    if !limits.is_empty() || !reservations.is_empty() {
        let mut r = Vec::new();
        if !limits.is_empty() {
            r.push(("limits", map(limits)));
        }
        if !reservations.is_empty() {
            r.push(("reservations", map(reservations)));
        }
        push("deploy", map(vec![("resources", map(r))]));
    }
    if !s.device_cgroup_rules.is_empty() {
        push("device_cgroup_rules", V::strs(&s.device_cgroup_rules));
    }
    if !s.devices.is_empty() {
        push(
            "devices",
            V::Seq(
                s.devices
                    .iter()
                    .map(|d| {
                        let parts: Vec<&str> = d.split(':').collect();
                        let src = parts.first().copied().unwrap_or_default();
                        let dst = parts.get(1).copied().filter(|x| !x.is_empty()).unwrap_or(src);
                        let perms = parts.get(2).copied().unwrap_or("rwm");
                        map(vec![("source", V::s(src)), ("target", V::s(dst)), ("permissions", V::s(perms))])
                    })
                    .collect(),
            ),
        );
    }
    if !s.dns.is_empty() {
        push("dns", V::strs(&s.dns));
    }
    if let Some(e) = &s.entrypoint {
        push("entrypoint", V::strs(e));
    }
    if !s.environment.is_empty() {
        push("environment", V::Map(s.environment.iter().map(|(k, v)| (k.clone(), v.as_ref().map_or(V::Null, V::s))).collect()));
    }
    if !s.expose.is_empty() {
        push("expose", V::strs(&s.expose));
    }
    if !s.extra_hosts.is_empty() {
        push("extra_hosts", V::strs(&s.extra_hosts));
    }
    if let Some(h) = &s.healthcheck {
        let mut m = Vec::new();
        if !h.test.is_empty() {
            m.push(("test", V::strs(&h.test)));
        }
        if let Some(d) = h.timeout {
            m.push(("timeout", dur(d)));
        }
        if let Some(d) = h.interval {
            m.push(("interval", dur(d)));
        }
        if let Some(r) = h.retries {
            m.push(("retries", V::Int(r as i64)));
        }
        if let Some(d) = h.start_period {
            m.push(("start_period", dur(d)));
        }
        if let Some(d) = h.start_interval {
            m.push(("start_interval", dur(d)));
        }
        if h.disable {
            m.push(("disable", V::Bool(true)));
        }
        push("healthcheck", map(m));
    }
    if let Some(h) = &s.hostname {
        push("hostname", V::s(h));
    }
    if let Some(i) = &s.image {
        push("image", V::s(i));
    }
    if let Some(i) = s.init {
        push("init", V::Bool(i));
    }
    if !s.labels.is_empty() {
        push("labels", str_map(&s.labels));
    }
    if let Some(l) = &s.logging {
        let mut m = Vec::new();
        if let Some(d) = &l.driver {
            m.push(("driver", V::s(d)));
        }
        if !l.options.is_empty() {
            m.push(("options", str_map(&l.options)));
        }
        push("logging", map(m));
    }
    if let Some(b) = s.mem_limit {
        push("mem_limit", V::s(b.to_string()));
    }
    if let Some(b) = s.mem_reservation {
        push("mem_reservation", V::s(b.to_string()));
    }
    if let Some(b) = s.memswap_limit {
        push("memswap_limit", V::s(b.to_string()));
    }
    if let Some(n) = &s.network_mode {
        push("network_mode", V::s(n));
    }
    if !s.networks.is_empty() {
        push(
            "networks",
            V::Map(
                s.networks
                    .iter()
                    .map(|(k, n)| {
                        let v = match n {
                            None => V::Null,
                            Some(n) => {
                                let mut m = Vec::new();
                                if !n.aliases.is_empty() {
                                    m.push(("aliases", V::strs(&n.aliases)));
                                }
                                if let Some(ip) = &n.ipv4_address {
                                    m.push(("ipv4_address", V::s(ip)));
                                }
                                if m.is_empty() {
                                    V::Null
                                } else {
                                    map(m)
                                }
                            }
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
        );
    }
    if let Some(p) = s.pids_limit {
        push("pids_limit", V::Int(p));
    }
    if !s.ports.is_empty() {
        push(
            "ports",
            V::Seq(
                s.ports
                    .iter()
                    .map(|p| {
                        let mut m = vec![("mode", V::s(&p.mode))];
                        if let Some(ip) = &p.host_ip {
                            m.push(("host_ip", V::s(ip)));
                        }
                        m.push(("target", V::Int(i64::from(p.target))));
                        if let Some(pb) = &p.published {
                            m.push(("published", V::s(pb)));
                        }
                        m.push(("protocol", V::s(&p.protocol)));
                        map(m)
                    })
                    .collect(),
            ),
        );
    }
    if s.privileged {
        push("privileged", V::Bool(true));
    }
    if s.read_only {
        push("read_only", V::Bool(true));
    }
    if let Some(r) = &s.restart {
        push("restart", V::s(r));
    }
    if !s.security_opt.is_empty() {
        push("security_opt", V::strs(&s.security_opt));
    }
    if let Some(d) = s.stop_grace_period {
        push("stop_grace_period", dur(d));
    }
    if let Some(sig) = &s.stop_signal {
        push("stop_signal", V::s(sig));
    }
    if !s.sysctls.is_empty() {
        push("sysctls", str_map(&s.sysctls));
    }
    if !s.tmpfs.is_empty() {
        push("tmpfs", V::strs(&s.tmpfs));
    }
    if !s.ulimits.is_empty() {
        push(
            "ulimits",
            V::Map(
                s.ulimits
                    .iter()
                    .map(|(k, u)| {
                        let v = match u {
                            Ulimit::Single(n) => V::Int(*n),
                            Ulimit::Pair { soft, hard } => map(vec![("soft", V::Int(*soft)), ("hard", V::Int(*hard))]),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
        );
    }
    if let Some(u) = &s.user {
        push("user", V::s(u));
    }
    if !s.volumes.is_empty() {
        push(
            "volumes",
            V::Seq(
                s.volumes
                    .iter()
                    .map(|m| {
                        let kind = match m.kind {
                            MountKind::Volume => "volume",
                            MountKind::Bind => "bind",
                            MountKind::Tmpfs => "tmpfs",
                        };
                        let mut e = vec![("type", V::s(kind))];
                        if let Some(src) = &m.source {
                            e.push(("source", V::s(src)));
                        }
                        e.push(("target", V::s(&m.target)));
                        if m.read_only {
                            e.push(("read_only", V::Bool(true)));
                        }
                        match m.kind {
                            MountKind::Bind => {
                                let mut b = Vec::new();
                                if let Some(p) = &m.propagation {
                                    b.push(("propagation", V::s(p)));
                                }
                                if m.create_host_path {
                                    b.push(("create_host_path", V::Bool(true)));
                                }
                                if !b.is_empty() {
                                    e.push(("bind", map(b)));
                                }
                            }
                            MountKind::Volume => {
                                e.push(("volume", map(if m.nocopy { vec![("nocopy", V::Bool(true))] } else { vec![] })));
                            }
                            MountKind::Tmpfs => {
                                let mut t = Vec::new();
                                if let Some(sz) = m.tmpfs_size {
                                    t.push(("size", V::Int(sz)));
                                }
                                if let Some(mode) = m.tmpfs_mode {
                                    t.push(("mode", V::Int(i64::from(mode))));
                                }
                                if !t.is_empty() {
                                    e.push(("tmpfs", map(t)));
                                }
                            }
                        }
                        map(e)
                    })
                    .collect(),
            ),
        );
    }
    if let Some(w) = &s.working_dir {
        push("working_dir", V::s(w));
    }
    map(out)
}

fn network_value(n: &Network) -> V {
    let mut m = Vec::new();
    if let Some(name) = &n.name {
        m.push(("name", V::s(name)));
    }
    if let Some(d) = &n.driver {
        m.push(("driver", V::s(d)));
    }
    if !n.driver_opts.is_empty() {
        m.push(("driver_opts", str_map(&n.driver_opts)));
    }
    if !n.subnets.is_empty() {
        let cfg = n
            .subnets
            .iter()
            .map(|s| {
                let mut c = Vec::new();
                if let Some(x) = &s.subnet {
                    c.push(("subnet", V::s(x)));
                }
                if let Some(x) = &s.gateway {
                    c.push(("gateway", V::s(x)));
                }
                map(c)
            })
            .collect();
        m.push(("ipam", map(vec![("config", V::Seq(cfg))])));
    }
    if n.external {
        m.push(("external", V::Bool(true)));
    }
    if n.internal {
        m.push(("internal", V::Bool(true)));
    }
    if !n.labels.is_empty() {
        m.push(("labels", str_map(&n.labels)));
    }
    map(m)
}

fn volume_value(v: &Volume) -> V {
    let mut m = Vec::new();
    if let Some(name) = &v.name {
        m.push(("name", V::s(name)));
    }
    if let Some(d) = &v.driver {
        m.push(("driver", V::s(d)));
    }
    if !v.driver_opts.is_empty() {
        m.push(("driver_opts", str_map(&v.driver_opts)));
    }
    if v.external {
        m.push(("external", V::Bool(true)));
    }
    if !v.labels.is_empty() {
        m.push(("labels", str_map(&v.labels)));
    }
    if v.revision_bound {
        m.push(("x-berth", map(vec![("revision-bound", V::Bool(true))])));
    }
    map(m)
}

/// `$` doubled in every string value, so the printed model reads back to itself (the values
/// are already interpolated; a `$` left in one is literal).
fn escape_dollars(v: V) -> V {
    match v {
        V::Str(s) if s.contains('$') => V::Str(s.replace('$', "$$")),
        V::Seq(items) => V::Seq(items.into_iter().map(escape_dollars).collect()),
        V::Map(m) => V::Map(m.into_iter().map(|(k, v)| (k, escape_dollars(v))).collect()),
        other => other,
    }
}

/// The whole project, as `docker compose config` prints it.
pub fn project_value(p: &Project) -> V {
    escape_dollars(project_value_raw(p))
}

fn project_value_raw(p: &Project) -> V {
    let mut m = Vec::new();
    if let Some(n) = &p.name {
        m.push(("name", V::s(n)));
    }
    m.push(("services", V::Map(p.services.iter().map(|(k, s)| (k.clone(), service_value(s))).collect())));
    if !p.networks.is_empty() {
        m.push(("networks", V::Map(p.networks.iter().map(|(k, n)| (k.clone(), network_value(n))).collect())));
    }
    if !p.volumes.is_empty() {
        m.push(("volumes", V::Map(p.volumes.iter().map(|(k, v)| (k.clone(), volume_value(v))).collect())));
    }
    map(m)
}

pub fn to_yaml(p: &Project) -> String {
    project_value(p).to_yaml()
}

/// `com.docker.compose.config-hash`: sha256 of the service's normalised JSON, as Compose
/// computes it over its own model. Anything that changes the container changes the hash.
pub fn config_hash(s: &Service) -> String {
    sha256_hex(&service_value(s).to_json().to_string())
}

fn sha256_hex(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash `up` labels a project's network with: sha256 of its normalised JSON.
pub fn network_hash(n: &Network) -> String {
    sha256_hex(&network_value(n).to_json().to_string())
}

/// The service's `depends_on` with a condition, for the `up` logic.
pub fn waits_for(s: &Service) -> Vec<(String, Condition)> {
    s.depends_on.iter().map(|(k, d)| (k.clone(), d.condition)).collect()
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

    #[test]
    fn config_shape() {
        let p = load(
            "services:
  web:
    image: busybox
    command: httpd -f -p 80
    environment: [A=1]
    ports: ['127.0.0.1:8080:80', '9000-9001:90-91/udp']
    volumes: ['./html:/www:ro', 'data:/data', {type: tmpfs, target: /run, tmpfs: {size: 1m}}]
    depends_on:
      db: {condition: service_healthy}
    healthcheck: {test: wget -q localhost, interval: 90s, retries: 3}
    mem_limit: 64m
    stop_grace_period: 1m30s
  db:
    image: busybox
    network_mode: host
volumes:
  data:
",
        );
        let want = r#"name: demo
services:
  db:
    image: busybox
    network_mode: host
  web:
    command:
      - httpd
      - -f
      - -p
      - "80"
    depends_on:
      db:
        condition: service_healthy
        required: true
    environment:
      A: "1"
    healthcheck:
      test:
        - CMD-SHELL
        - wget -q localhost
      interval: 1m30s
      retries: 3
    image: busybox
    mem_limit: "67108864"
    networks:
      default: null
    ports:
      - mode: ingress
        host_ip: 127.0.0.1
        target: 80
        published: "8080"
        protocol: tcp
      - mode: ingress
        target: 90
        published: "9000"
        protocol: udp
      - mode: ingress
        target: 91
        published: "9001"
        protocol: udp
    stop_grace_period: 1m30s
    volumes:
      - type: bind
        source: /srv/demo/html
        target: /www
        read_only: true
        bind:
          create_host_path: true
      - type: volume
        source: data
        target: /data
        volume: {}
      - type: tmpfs
        target: /run
        tmpfs:
          size: 1048576
networks:
  default:
    name: demo_default
volumes:
  data:
    name: demo_data
"#;
        assert_eq!(to_yaml(&p), want);
        // What `config` prints loads back to the same model.
        let again = load(&to_yaml(&p));
        assert_eq!(to_yaml(&again), want);
    }

    #[test]
    fn literal_dollars_stay_literal() {
        let p = load("services:\n  a: {image: busybox, command: echo $$HOME '$$5'}\n");
        assert_eq!(p.services["a"].command.as_deref(), Some(&["echo".to_string(), "$HOME".to_string(), "$5".to_string()][..]));
        let printed = to_yaml(&p);
        assert!(printed.contains("- $$HOME"), "{printed}");
        assert_eq!(to_yaml(&load(&printed)), printed);
    }

    #[test]
    fn hash_follows_the_configuration() {
        let a = load("services:\n  web: {image: busybox, environment: [A=1]}\n  db: {image: busybox}\n");
        let b = load("services:\n  web: {image: busybox, environment: {A: '1'}}\n  db: {image: busybox, command: [sleep, '1']}\n");
        assert_eq!(config_hash(&a.services["web"]), config_hash(&b.services["web"]));
        assert_ne!(config_hash(&a.services["db"]), config_hash(&b.services["db"]));
        assert_eq!(config_hash(&a.services["web"]).len(), 64);
    }
}

#[cfg(test)]
mod samples {
    use crate::project::{load_texts, Options};
    use std::path::Path;

    /// The sample files load, and their `config` is a fixed point.
    #[test]
    fn samples_load_and_print() {
        let o = Options {
            workdir: "/srv/app".into(),
            environ: [("HOME".to_string(), "/root".to_string())].into_iter().collect(),
            ..Default::default()
        };
        for (name, text) in [("full.yaml", include_str!("../testdata/full.yaml")), ("small.yaml", include_str!("../testdata/small.yaml"))] {
            let (p, _) = load_texts(&[(name.into(), text.into())], Path::new("/srv/app"), &o, &[]).unwrap_or_else(|e| panic!("{e}"));
            let printed = super::to_yaml(&p);
            let (again, _) =
                load_texts(&[(name.into(), printed.clone())], Path::new("/srv/app"), &o, &[]).unwrap_or_else(|e| panic!("{e}\n{printed}"));
            assert_eq!(super::to_yaml(&again), printed);
            if std::env::var_os("PRINT").is_some() {
                println!("{printed}");
            }
        }
    }
}
