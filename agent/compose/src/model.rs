//! The Compose model berth supports, read from the YAML tree. Every key is either read or an
//! error naming it and its line: nothing a user wrote is silently dropped. `x-` keys are
//! extensions and are ignored, except `x-berth` on a volume (see docs/compose.md).

use std::collections::BTreeMap;
use std::fmt;

use crate::units::{parse_bytes, parse_duration, shell_split};
use crate::yaml::{Key, Mark, Node, Value};

/// A problem in a compose file: where and what. `file` is filled in by the loader.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub file: String,
    pub mark: Option<Mark>,
    pub msg: String,
}

impl Error {
    pub fn at(mark: Mark, msg: impl Into<String>) -> Error {
        Error { file: String::new(), mark: Some(mark), msg: msg.into() }
    }

    pub fn plain(msg: impl Into<String>) -> Error {
        Error { file: String::new(), mark: None, msg: msg.into() }
    }

    pub fn in_file(mut self, file: &str) -> Error {
        if self.file.is_empty() {
            self.file = file.to_string();
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file.is_empty(), &self.mark) {
            (false, Some(m)) => write!(f, "{} {m}: {}", self.file, self.msg),
            (false, None) => write!(f, "{}: {}", self.file, self.msg),
            (true, Some(m)) => write!(f, "{m}: {}", self.msg),
            (true, None) => write!(f, "{}", self.msg),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Project {
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    /// Where each service was declared, for errors found after merging (cycles, ports).
    pub marks: BTreeMap<String, Mark>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Service {
    pub image: Option<String>,
    pub container_name: Option<String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `None` value: named without a value (taken from the shell when the project loads).
    pub environment: BTreeMap<String, Option<String>>,
    pub env_file: Vec<EnvFile>,
    pub volumes: Vec<Mount>,
    pub tmpfs: Vec<String>,
    pub devices: Vec<String>,
    pub device_cgroup_rules: Vec<String>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub ports: Vec<Port>,
    pub expose: Vec<String>,
    /// `None`: listed without settings.
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    pub network_mode: Option<String>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<String>,
    pub mem_limit: Option<i64>,
    pub memswap_limit: Option<i64>,
    pub mem_reservation: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub limits: Resources,
    pub reservations: Resources,
    pub read_only: bool,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// Nanoseconds.
    pub stop_grace_period: Option<u64>,
    pub init: Option<bool>,
    pub ulimits: BTreeMap<String, Ulimit>,
    pub logging: Option<Logging>,
    pub security_opt: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnvFile {
    pub path: String,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    pub cpus: Option<f64>,
    pub memory: Option<i64>,
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Volume,
    Bind,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub kind: MountKind,
    /// Volume name (None: anonymous) or host path (made absolute by the loader).
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// Bind: create the host directory when missing (Compose's default for the short syntax).
    pub create_host_path: bool,
    pub propagation: Option<String>,
    pub nocopy: bool,
    pub tmpfs_size: Option<i64>,
    pub tmpfs_mode: Option<u32>,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub target: u16,
    /// A port or a range, as Compose keeps it (a string).
    pub published: Option<String>,
    pub host_ip: Option<String>,
    pub protocol: String,
    pub mode: String,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub condition: Condition,
    pub restart: bool,
    pub required: bool,
    pub mark: Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`; empty: inherit the image's test.
    pub test: Vec<String>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub retries: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub disable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ulimit {
    Single(i64),
    Pair { soft: i64, hard: i64 },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Logging {
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Network {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub external: bool,
    pub internal: bool,
    pub subnets: Vec<Subnet>,
    pub labels: BTreeMap<String, String>,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subnet {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Volume {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    /// `x-berth: {revision-bound: true}`: snapshotted per application revision (fleet updates).
    pub revision_bound: bool,
    pub mark: Mark,
}

// ---- readers of typed values -------------------------------------------------------------

fn unknown(k: &Key, path: &str) -> Error {
    Error::at(k.mark, format!("{path}: unknown key {:?} (not supported by berth)", k.text))
}

fn entries<'a>(n: &'a Node, path: &str) -> Result<&'a [(Key, Node)]> {
    match &n.value {
        Value::Map(m) => Ok(m),
        _ => Err(Error::at(n.mark, format!("{path} must be a mapping, not {}", n.kind()))),
    }
}

/// Mapping entries with `x-` extension keys left out.
fn fields<'a>(n: &'a Node, path: &str) -> Result<impl Iterator<Item = &'a (Key, Node)>> {
    Ok(entries(n, path)?.iter().filter(|(k, _)| !k.text.starts_with("x-")))
}

pub fn string(n: &Node, path: &str) -> Result<String> {
    match &n.value {
        Value::Scalar { text, .. } => Ok(text.clone()),
        _ => Err(Error::at(n.mark, format!("{path} must be a string, not {}", n.kind()))),
    }
}

fn opt_string(n: &Node, path: &str) -> Result<Option<String>> {
    match n.value {
        Value::Null => Ok(None),
        _ => string(n, path).map(Some),
    }
}

fn boolean(n: &Node, path: &str) -> Result<bool> {
    if let Value::Scalar { text, .. } = &n.value {
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => return Ok(true),
            "false" | "no" | "n" | "off" => return Ok(false),
            _ => {}
        }
    }
    Err(Error::at(n.mark, format!("{path} must be a boolean (true or false)")))
}

fn int(n: &Node, path: &str) -> Result<i64> {
    if let Value::Scalar { text, .. } = &n.value {
        if let Ok(i) = text.parse() {
            return Ok(i);
        }
    }
    Err(Error::at(n.mark, format!("{path} must be an integer")))
}

fn float(n: &Node, path: &str) -> Result<f64> {
    if let Value::Scalar { text, .. } = &n.value {
        if let Ok(f) = text.parse::<f64>() {
            if f.is_finite() && f >= 0.0 {
                return Ok(f);
            }
        }
    }
    Err(Error::at(n.mark, format!("{path} must be a non-negative number")))
}

fn bytes(n: &Node, path: &str) -> Result<i64> {
    let s = string(n, path)?;
    if s == "-1" {
        return Ok(-1);
    }
    parse_bytes(&s).map_err(|e| Error::at(n.mark, format!("{path}: {e}")))
}

fn duration(n: &Node, path: &str) -> Result<u64> {
    let s = string(n, path)?;
    parse_duration(&s).map_err(|e| Error::at(n.mark, format!("{path}: {e}")))
}

/// A string or a list of strings (`dns: 1.1.1.1` or `dns: [..]`).
fn strings(n: &Node, path: &str) -> Result<Vec<String>> {
    match &n.value {
        Value::Null => Ok(Vec::new()),
        Value::Scalar { text, .. } => Ok(vec![text.clone()]),
        Value::Seq(items) => items.iter().enumerate().map(|(i, x)| string(x, &format!("{path}[{i}]"))).collect(),
        Value::Map(_) => Err(Error::at(n.mark, format!("{path} must be a string or a list of strings"))),
    }
}

fn list(n: &Node, path: &str) -> Result<Vec<String>> {
    match &n.value {
        Value::Seq(_) | Value::Null => strings(n, path),
        _ => Err(Error::at(n.mark, format!("{path} must be a list, not {}", n.kind()))),
    }
}

/// `environment`/`labels`/`sysctls`: a list of `K=V` (or `K`) or a mapping.
pub fn list_or_dict(n: &Node, path: &str, sep: &[char]) -> Result<Vec<(String, Option<String>, Mark)>> {
    match &n.value {
        Value::Null => Ok(Vec::new()),
        Value::Seq(items) => {
            let mut out = Vec::new();
            for (i, x) in items.iter().enumerate() {
                let s = string(x, &format!("{path}[{i}]"))?;
                match s.split_once(sep) {
                    Some((k, v)) => out.push((k.to_string(), Some(v.to_string()), x.mark)),
                    None => out.push((s, None, x.mark)),
                }
            }
            Ok(out)
        }
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| match &v.value {
                Value::Null => Ok((k.text.clone(), None, k.mark)),
                Value::Scalar { text, .. } => Ok((k.text.clone(), Some(text.clone()), k.mark)),
                _ => Err(Error::at(v.mark, format!("{path}.{} must be a string, number or boolean", k.text))),
            })
            .collect(),
        Value::Scalar { .. } => Err(Error::at(n.mark, format!("{path} must be a list or a mapping"))),
    }
}

fn string_map(n: &Node, path: &str) -> Result<BTreeMap<String, String>> {
    Ok(list_or_dict(n, path, &['='])?.into_iter().map(|(k, v, _)| (k, v.unwrap_or_default())).collect())
}

fn command(n: &Node, path: &str) -> Result<Option<Vec<String>>> {
    match &n.value {
        Value::Null => Ok(None),
        Value::Scalar { text, .. } => shell_split(text).map(Some).map_err(|e| Error::at(n.mark, format!("{path}: {e}"))),
        Value::Seq(_) => list(n, path).map(Some),
        Value::Map(_) => Err(Error::at(n.mark, format!("{path} must be a string or a list"))),
    }
}

// ---- the file ----------------------------------------------------------------------------

/// Reads a whole (interpolated, merged) compose tree.
pub fn parse_project(root: &Node) -> Result<Project> {
    let mut p = Project::default();
    if root.value == Value::Null {
        return Ok(p);
    }
    for (k, v) in fields(root, "the file")? {
        match k.text.as_str() {
            // Obsolete in Compose v2, which warns and ignores it.
            "version" => {}
            "name" => p.name = opt_string(v, "name")?,
            "services" => {
                if v.value == Value::Null {
                    continue;
                }
                for (name, s) in fields(v, "services")? {
                    p.marks.insert(name.text.clone(), name.mark);
                    p.services.insert(name.text.clone(), parse_service(s, &format!("services.{}", name.text))?);
                }
            }
            "networks" => {
                if v.value == Value::Null {
                    continue;
                }
                for (name, n) in fields(v, "networks")? {
                    p.networks.insert(name.text.clone(), parse_network(n, &format!("networks.{}", name.text), name.mark)?);
                }
            }
            "volumes" => {
                if v.value == Value::Null {
                    continue;
                }
                for (name, n) in fields(v, "volumes")? {
                    p.volumes.insert(name.text.clone(), parse_volume(n, &format!("volumes.{}", name.text), name.mark)?);
                }
            }
            _ => return Err(unknown(k, "top level")),
        }
    }
    Ok(p)
}

fn parse_service(n: &Node, path: &str) -> Result<Service> {
    let mut s = Service::default();
    if n.value == Value::Null {
        return Ok(s);
    }
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        let at = at.as_str();
        match k.text.as_str() {
            "image" => s.image = opt_string(v, at)?,
            "container_name" => s.container_name = opt_string(v, at)?,
            "command" => s.command = command(v, at)?,
            "entrypoint" => s.entrypoint = command(v, at)?,
            "environment" => s.environment = list_or_dict(v, at, &['='])?.into_iter().map(|(k, v, _)| (k, v)).collect(),
            "env_file" => s.env_file = env_files(v, at)?,
            "volumes" => match &v.value {
                Value::Null => {}
                Value::Seq(items) => {
                    for (i, x) in items.iter().enumerate() {
                        s.volumes.push(mount(x, &format!("{at}[{i}]"))?);
                    }
                }
                _ => return Err(Error::at(v.mark, format!("{at} must be a list"))),
            },
            "tmpfs" => s.tmpfs = strings(v, at)?,
            "devices" => s.devices = devices(v, at)?,
            "device_cgroup_rules" => s.device_cgroup_rules = list(v, at)?,
            "privileged" => s.privileged = boolean(v, at)?,
            "cap_add" => s.cap_add = list(v, at)?,
            "cap_drop" => s.cap_drop = list(v, at)?,
            "ports" => match &v.value {
                Value::Null => {}
                Value::Seq(items) => {
                    for (i, x) in items.iter().enumerate() {
                        s.ports.extend(ports(x, &format!("{at}[{i}]"))?);
                    }
                }
                _ => return Err(Error::at(v.mark, format!("{at} must be a list"))),
            },
            "expose" => s.expose = list(v, at)?,
            "networks" => s.networks = service_networks(v, at)?,
            "network_mode" => s.network_mode = opt_string(v, at)?,
            "depends_on" => s.depends_on = depends_on(v, at)?,
            "healthcheck" => s.healthcheck = Some(healthcheck(v, at)?),
            "restart" => s.restart = opt_string(v, at)?,
            "mem_limit" => s.mem_limit = Some(bytes(v, at)?),
            "memswap_limit" => s.memswap_limit = Some(bytes(v, at)?),
            "mem_reservation" => s.mem_reservation = Some(bytes(v, at)?),
            "pids_limit" => s.pids_limit = Some(int(v, at)?),
            "cpus" => s.cpus = Some(float(v, at)?),
            "deploy" => deploy(v, at, &mut s)?,
            "read_only" => s.read_only = boolean(v, at)?,
            "user" => s.user = opt_string(v, at)?,
            "working_dir" => s.working_dir = opt_string(v, at)?,
            "hostname" => s.hostname = opt_string(v, at)?,
            "labels" => s.labels = string_map(v, at)?,
            "stop_signal" => s.stop_signal = opt_string(v, at)?,
            "stop_grace_period" => s.stop_grace_period = Some(duration(v, at)?),
            "init" => s.init = Some(boolean(v, at)?),
            "ulimits" => s.ulimits = ulimits(v, at)?,
            "logging" => s.logging = Some(logging(v, at)?),
            "security_opt" => s.security_opt = list(v, at)?,
            "sysctls" => s.sysctls = string_map(v, at)?,
            "extra_hosts" => {
                s.extra_hosts = list_or_dict(v, at, &['=', ':'])?
                    .into_iter()
                    .map(|(h, ip, mark)| match ip {
                        Some(ip) if !ip.is_empty() => Ok(format!("{h}={ip}")),
                        _ => Err(Error::at(mark, format!("{at}: {h:?} has no address (HOST=IP)"))),
                    })
                    .collect::<Result<_>>()?
            }
            "dns" => s.dns = strings(v, at)?,
            _ => return Err(unknown(k, path)),
        }
    }
    Ok(s)
}

fn env_files(n: &Node, path: &str) -> Result<Vec<EnvFile>> {
    let items: Vec<&Node> = match &n.value {
        Value::Null => vec![],
        Value::Scalar { .. } => vec![n],
        Value::Seq(v) => v.iter().collect(),
        Value::Map(_) => return Err(Error::at(n.mark, format!("{path} must be a string or a list"))),
    };
    let mut out = Vec::new();
    for (i, x) in items.into_iter().enumerate() {
        let at = format!("{path}[{i}]");
        match &x.value {
            Value::Map(_) => {
                let mut f = EnvFile { path: String::new(), required: true };
                for (k, v) in fields(x, &at)? {
                    match k.text.as_str() {
                        "path" => f.path = string(v, &at)?,
                        "required" => f.required = boolean(v, &at)?,
                        _ => return Err(unknown(k, &at)),
                    }
                }
                if f.path.is_empty() {
                    return Err(Error::at(x.mark, format!("{at}: path is missing")));
                }
                out.push(f);
            }
            _ => out.push(EnvFile { path: string(x, &at)?, required: true }),
        }
    }
    Ok(out)
}

fn is_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('.') || s.starts_with('~')
}

fn octal(n: &Node, path: &str) -> Result<u32> {
    let s = string(n, path)?;
    // Compose takes the mode as a number: 1777 written in YAML is read as octal digits.
    u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| Error::at(n.mark, format!("{path} must be an octal mode")))
}

fn mount(n: &Node, path: &str) -> Result<Mount> {
    let mut m = Mount {
        kind: MountKind::Volume,
        source: None,
        target: String::new(),
        read_only: false,
        create_host_path: false,
        propagation: None,
        nocopy: false,
        tmpfs_size: None,
        tmpfs_mode: None,
        mark: n.mark,
    };
    if let Value::Scalar { text, .. } = &n.value {
        // [SOURCE:]TARGET[:MODE[,MODE]]
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [t] => (None, *t, None),
            [s, t] => (Some(*s), *t, None),
            [s, t, mode] => (Some(*s), *t, Some(*mode)),
            _ => return Err(Error::at(n.mark, format!("{path}: invalid volume {text:?} (SOURCE:TARGET[:MODE])"))),
        };
        if target.is_empty() || !target.starts_with('/') {
            return Err(Error::at(n.mark, format!("{path}: the target of {text:?} must be an absolute path")));
        }
        m.target = target.to_string();
        if let Some(s) = source {
            if s.is_empty() {
                return Err(Error::at(n.mark, format!("{path}: empty source in {text:?}")));
            }
            m.kind = if is_path(s) { MountKind::Bind } else { MountKind::Volume };
            m.create_host_path = m.kind == MountKind::Bind;
            m.source = Some(s.to_string());
        }
        for opt in mode.into_iter().flat_map(|x| x.split(',')) {
            match opt {
                "ro" => m.read_only = true,
                "rw" => m.read_only = false,
                "nocopy" if m.kind == MountKind::Volume => m.nocopy = true,
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" if m.kind == MountKind::Bind => {
                    m.propagation = Some(opt.to_string())
                }
                "z" | "Z" => return Err(Error::at(n.mark, format!("{path}: SELinux relabelling ({opt}) is not supported by berth"))),
                _ => return Err(Error::at(n.mark, format!("{path}: unknown volume option {opt:?}"))),
            }
        }
        return Ok(m);
    }
    let mut kind: Option<String> = None;
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "type" => kind = Some(string(v, &at)?),
            "source" => m.source = opt_string(v, &at)?,
            "target" => m.target = string(v, &at)?,
            "read_only" => m.read_only = boolean(v, &at)?,
            "bind" => {
                for (bk, bv) in fields(v, &at)? {
                    let bat = format!("{at}.{}", bk.text);
                    match bk.text.as_str() {
                        "propagation" => m.propagation = opt_string(bv, &bat)?,
                        "create_host_path" => m.create_host_path = boolean(bv, &bat)?,
                        _ => return Err(unknown(bk, &at)),
                    }
                }
            }
            "volume" => {
                if v.value != Value::Null {
                    for (vk, vv) in fields(v, &at)? {
                        match vk.text.as_str() {
                            "nocopy" => m.nocopy = boolean(vv, &format!("{at}.nocopy"))?,
                            _ => return Err(unknown(vk, &at)),
                        }
                    }
                }
            }
            "tmpfs" => {
                for (tk, tv) in fields(v, &at)? {
                    let tat = format!("{at}.{}", tk.text);
                    match tk.text.as_str() {
                        "size" => m.tmpfs_size = Some(bytes(tv, &tat)?),
                        "mode" => m.tmpfs_mode = Some(octal(tv, &tat)?),
                        _ => return Err(unknown(tk, &at)),
                    }
                }
            }
            _ => return Err(unknown(k, path)),
        }
    }
    m.kind = match kind.as_deref() {
        Some("volume") => MountKind::Volume,
        Some("bind") => MountKind::Bind,
        Some("tmpfs") => MountKind::Tmpfs,
        Some(other) => {
            return Err(Error::at(n.mark, format!("{path}: volume type {other:?} is not supported by berth (volume, bind, tmpfs)")))
        }
        None => return Err(Error::at(n.mark, format!("{path}: type is missing (volume, bind or tmpfs)"))),
    };
    if !m.target.starts_with('/') {
        return Err(Error::at(n.mark, format!("{path}: target must be an absolute path")));
    }
    if m.kind == MountKind::Bind && m.source.is_none() {
        return Err(Error::at(n.mark, format!("{path}: a bind mount needs a source")));
    }
    if m.kind == MountKind::Tmpfs && m.source.is_some() {
        return Err(Error::at(n.mark, format!("{path}: a tmpfs mount takes no source")));
    }
    Ok(m)
}

fn devices(n: &Node, path: &str) -> Result<Vec<String>> {
    match &n.value {
        Value::Null => Ok(vec![]),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let at = format!("{path}[{i}]");
                match &x.value {
                    Value::Map(_) => {
                        let (mut src, mut dst, mut perms) = (None, None, None);
                        for (k, v) in fields(x, &at)? {
                            match k.text.as_str() {
                                "source" => src = Some(string(v, &at)?),
                                "target" => dst = Some(string(v, &at)?),
                                "permissions" => perms = Some(string(v, &at)?),
                                _ => return Err(unknown(k, &at)),
                            }
                        }
                        let src = src.ok_or_else(|| Error::at(x.mark, format!("{at}: source is missing")))?;
                        let mut s = src.clone();
                        s.push(':');
                        s.push_str(dst.as_deref().unwrap_or(&src));
                        if let Some(p) = perms {
                            s.push(':');
                            s.push_str(&p);
                        }
                        Ok(s)
                    }
                    _ => string(x, &at),
                }
            })
            .collect(),
        _ => Err(Error::at(n.mark, format!("{path} must be a list"))),
    }
}

fn port_number(s: &str, whole: &str, mark: Mark, path: &str) -> Result<u16> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::at(mark, format!("{path}: invalid port {s:?} in {whole:?}"))),
    }
}

/// `a-b` or `a` as an inclusive range.
fn port_range(s: &str, whole: &str, mark: Mark, path: &str) -> Result<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port_number(a, whole, mark, path)?, port_number(b, whole, mark, path)?);
            if a > b {
                return Err(Error::at(mark, format!("{path}: invalid port range {s:?} in {whole:?}")));
            }
            Ok((a, b))
        }
        None => {
            let p = port_number(s, whole, mark, path)?;
            Ok((p, p))
        }
    }
}

fn ports(n: &Node, path: &str) -> Result<Vec<Port>> {
    let mark = n.mark;
    if let Value::Scalar { text, .. } = &n.value {
        // [[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTO]
        let (spec, proto) = match text.rsplit_once('/') {
            Some((s, p)) => (s, p.to_string()),
            None => (text.as_str(), "tcp".to_string()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(Error::at(mark, format!("{path}: invalid protocol {proto:?} in {text:?}")));
        }
        let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
            let (ip, after) = r.split_once("]:").ok_or_else(|| Error::at(mark, format!("{path}: invalid port {text:?}")))?;
            (Some(ip.to_string()), after)
        } else {
            match spec.matches(':').count() {
                0 | 1 => (None, spec),
                2 => {
                    let (ip, r) = spec.split_once(':').unwrap_or(("", spec));
                    (Some(ip.to_string()).filter(|s| !s.is_empty()), r)
                }
                _ => return Err(Error::at(mark, format!("{path}: invalid port {text:?} (an IPv6 address goes in brackets)"))),
            }
        };
        let (published, target) = match rest.split_once(':') {
            Some((p, t)) => (Some(p).filter(|p| !p.is_empty()), t),
            None => (None, rest),
        };
        let (t0, t1) = port_range(target, text, mark, path)?;
        let published = published.map(|p| port_range(p, text, mark, path)).transpose()?;
        let count = t1 - t0;
        if let Some((p0, p1)) = published {
            if count > 0 && p1 - p0 != count {
                return Err(Error::at(mark, format!("{path}: the published and target ranges of {text:?} differ in size")));
            }
        }
        // One target with a published range: any free port of the range (Compose keeps "a-b").
        let published_of = |i: u16| {
            published.map(|(p0, p1)| match (count, p0 == p1) {
                (0, true) => p0.to_string(),
                (0, false) => format!("{p0}-{p1}"),
                _ => (p0 + i).to_string(),
            })
        };
        return Ok((0..=count)
            .map(|i| Port {
                target: t0 + i,
                published: published_of(i),
                host_ip: host_ip.clone(),
                protocol: proto.clone(),
                mode: "ingress".into(),
                mark,
            })
            .collect());
    }
    let mut p = Port { target: 0, published: None, host_ip: None, protocol: "tcp".into(), mode: "ingress".into(), mark };
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "target" => p.target = port_number(&string(v, &at)?, "target", v.mark, &at)?,
            "published" => {
                let s = string(v, &at)?;
                port_range(&s, &s, v.mark, &at)?;
                p.published = Some(s);
            }
            "host_ip" => p.host_ip = opt_string(v, &at)?,
            "protocol" => p.protocol = string(v, &at)?,
            "mode" => p.mode = string(v, &at)?,
            _ => return Err(unknown(k, path)),
        }
    }
    if p.target == 0 {
        return Err(Error::at(mark, format!("{path}: target is missing")));
    }
    Ok(vec![p])
}

fn service_networks(n: &Node, path: &str) -> Result<BTreeMap<String, Option<ServiceNetwork>>> {
    let mut out = BTreeMap::new();
    match &n.value {
        Value::Null => {}
        Value::Seq(_) => {
            for name in list(n, path)? {
                out.insert(name, None);
            }
        }
        Value::Map(m) => {
            for (k, v) in m {
                let at = format!("{path}.{}", k.text);
                if v.value == Value::Null {
                    out.insert(k.text.clone(), None);
                    continue;
                }
                let mut sn = ServiceNetwork::default();
                for (nk, nv) in fields(v, &at)? {
                    match nk.text.as_str() {
                        "aliases" => sn.aliases = list(nv, &format!("{at}.aliases"))?,
                        "ipv4_address" => sn.ipv4_address = opt_string(nv, &format!("{at}.ipv4_address"))?,
                        _ => return Err(unknown(nk, &at)),
                    }
                }
                out.insert(k.text.clone(), Some(sn));
            }
        }
        Value::Scalar { .. } => return Err(Error::at(n.mark, format!("{path} must be a list or a mapping"))),
    }
    Ok(out)
}

fn depends_on(n: &Node, path: &str) -> Result<BTreeMap<String, Dependency>> {
    let mut out = BTreeMap::new();
    match &n.value {
        Value::Null => {}
        Value::Seq(items) => {
            for (i, x) in items.iter().enumerate() {
                let name = string(x, &format!("{path}[{i}]"))?;
                out.insert(name, Dependency { condition: Condition::Started, restart: false, required: true, mark: x.mark });
            }
        }
        Value::Map(m) => {
            for (k, v) in m {
                let at = format!("{path}.{}", k.text);
                let mut d = Dependency { condition: Condition::Started, restart: false, required: true, mark: k.mark };
                if v.value != Value::Null {
                    for (dk, dv) in fields(v, &at)? {
                        let dat = format!("{at}.{}", dk.text);
                        match dk.text.as_str() {
                            "condition" => {
                                d.condition = match string(dv, &dat)?.as_str() {
                                    "service_started" => Condition::Started,
                                    "service_healthy" => Condition::Healthy,
                                    "service_completed_successfully" => Condition::CompletedSuccessfully,
                                    other => {
                                        return Err(Error::at(
                                            dv.mark,
                                            format!("{dat}: unknown condition {other:?} (service_started, service_healthy, service_completed_successfully)"),
                                        ))
                                    }
                                }
                            }
                            "restart" => d.restart = boolean(dv, &dat)?,
                            "required" => d.required = boolean(dv, &dat)?,
                            _ => return Err(unknown(dk, &at)),
                        }
                    }
                }
                out.insert(k.text.clone(), d);
            }
        }
        Value::Scalar { .. } => return Err(Error::at(n.mark, format!("{path} must be a list or a mapping"))),
    }
    Ok(out)
}

fn healthcheck(n: &Node, path: &str) -> Result<Healthcheck> {
    let mut h = Healthcheck::default();
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        let at = at.as_str();
        match k.text.as_str() {
            "test" => {
                h.test = match &v.value {
                    Value::Scalar { text, .. } => vec!["CMD-SHELL".to_string(), text.clone()],
                    _ => list(v, at)?,
                };
                if let Some(first) = h.test.first() {
                    if !matches!(first.as_str(), "NONE" | "CMD" | "CMD-SHELL") {
                        return Err(Error::at(v.mark, format!("{at}: a list must start with CMD, CMD-SHELL or NONE")));
                    }
                }
            }
            "interval" => h.interval = Some(duration(v, at)?),
            "timeout" => h.timeout = Some(duration(v, at)?),
            "start_period" => h.start_period = Some(duration(v, at)?),
            "start_interval" => h.start_interval = Some(duration(v, at)?),
            "retries" => {
                let r = int(v, at)?;
                h.retries = Some(u64::try_from(r).map_err(|_| Error::at(v.mark, format!("{at} must not be negative")))?);
            }
            "disable" => h.disable = boolean(v, at)?,
            _ => return Err(unknown(k, path)),
        }
    }
    Ok(h)
}

fn resources(n: &Node, path: &str, pids_ok: bool) -> Result<Resources> {
    let mut r = Resources::default();
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "cpus" => r.cpus = Some(float(v, &at)?),
            "memory" => r.memory = Some(bytes(v, &at)?),
            "pids" if pids_ok => r.pids = Some(int(v, &at)?),
            _ => return Err(unknown(k, path)),
        }
    }
    Ok(r)
}

fn deploy(n: &Node, path: &str, s: &mut Service) -> Result<()> {
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "resources" => {
                for (rk, rv) in fields(v, &at)? {
                    let rat = format!("{at}.{}", rk.text);
                    match rk.text.as_str() {
                        "limits" => s.limits = resources(rv, &rat, true)?,
                        "reservations" => s.reservations = resources(rv, &rat, false)?,
                        _ => return Err(unknown(rk, &at)),
                    }
                }
            }
            _ => return Err(unknown(k, path)),
        }
    }
    Ok(())
}

fn ulimits(n: &Node, path: &str) -> Result<BTreeMap<String, Ulimit>> {
    let mut out = BTreeMap::new();
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        let u = match &v.value {
            Value::Map(_) => {
                let (mut soft, mut hard) = (None, None);
                for (uk, uv) in fields(v, &at)? {
                    match uk.text.as_str() {
                        "soft" => soft = Some(int(uv, &at)?),
                        "hard" => hard = Some(int(uv, &at)?),
                        _ => return Err(unknown(uk, &at)),
                    }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) => Ulimit::Pair { soft, hard },
                    _ => return Err(Error::at(v.mark, format!("{at} needs both soft and hard"))),
                }
            }
            _ => Ulimit::Single(int(v, &at)?),
        };
        out.insert(k.text.clone(), u);
    }
    Ok(out)
}

fn logging(n: &Node, path: &str) -> Result<Logging> {
    let mut l = Logging::default();
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "driver" => l.driver = opt_string(v, &at)?,
            "options" => l.options = string_map(v, &at)?,
            _ => return Err(unknown(k, path)),
        }
    }
    Ok(l)
}

fn parse_network(n: &Node, path: &str, mark: Mark) -> Result<Network> {
    let mut net = Network { mark, ..Default::default() };
    if n.value == Value::Null {
        return Ok(net);
    }
    for (k, v) in fields(n, path)? {
        let at = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "name" => net.name = opt_string(v, &at)?,
            "driver" => net.driver = opt_string(v, &at)?,
            "driver_opts" => net.driver_opts = string_map(v, &at)?,
            "external" => net.external = boolean(v, &at)?,
            "internal" => net.internal = boolean(v, &at)?,
            "labels" => net.labels = string_map(v, &at)?,
            "ipam" => {
                for (ik, iv) in fields(v, &at)? {
                    let iat = format!("{at}.{}", ik.text);
                    match ik.text.as_str() {
                        "driver" if string(iv, &iat)? == "default" => {}
                        "config" => {
                            let Value::Seq(items) = &iv.value else {
                                return Err(Error::at(iv.mark, format!("{iat} must be a list")));
                            };
                            for (i, c) in items.iter().enumerate() {
                                let cat = format!("{iat}[{i}]");
                                let mut sn = Subnet::default();
                                for (ck, cv) in fields(c, &cat)? {
                                    match ck.text.as_str() {
                                        "subnet" => sn.subnet = opt_string(cv, &cat)?,
                                        "gateway" => sn.gateway = opt_string(cv, &cat)?,
                                        _ => return Err(unknown(ck, &cat)),
                                    }
                                }
                                net.subnets.push(sn);
                            }
                        }
                        _ => return Err(unknown(ik, &at)),
                    }
                }
            }
            _ => return Err(unknown(k, path)),
        }
    }
    Ok(net)
}

fn parse_volume(n: &Node, path: &str, mark: Mark) -> Result<Volume> {
    let mut vol = Volume { mark, ..Default::default() };
    if n.value == Value::Null {
        return Ok(vol);
    }
    for (k, v) in entries(n, path)? {
        let at = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "name" => vol.name = opt_string(v, &at)?,
            "driver" => vol.driver = opt_string(v, &at)?,
            "driver_opts" => vol.driver_opts = string_map(v, &at)?,
            "external" => vol.external = boolean(v, &at)?,
            "labels" => vol.labels = string_map(v, &at)?,
            "x-berth" => {
                for (bk, bv) in fields(v, &at)? {
                    match bk.text.as_str() {
                        "revision-bound" => vol.revision_bound = boolean(bv, &format!("{at}.revision-bound"))?,
                        _ => return Err(unknown(bk, &at)),
                    }
                }
            }
            x if x.starts_with("x-") => {}
            _ => return Err(unknown(k, path)),
        }
    }
    Ok(vol)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(body: &str) -> Result<Service> {
        let text = format!("services:\n  s:\n{}", body.lines().map(|l| format!("    {l}\n")).collect::<String>());
        let tree = crate::yaml::parse(&text).map_err(|e| Error::at(e.mark, e.msg))?;
        parse_project(&tree).map(|mut p| p.services.remove("s").unwrap_or_default())
    }

    fn port(p: &Port) -> (Option<&str>, Option<&str>, u16, &str) {
        (p.host_ip.as_deref(), p.published.as_deref(), p.target, p.protocol.as_str())
    }

    #[test]
    fn ports_short_and_long() {
        let s = service("ports: ['80', '8080:80', '127.0.0.1:8081:81/udp', '127.0.0.1::82', '[::1]:8083:83', '9000-9001:90-91', '7000-7010:70', {target: 60, published: '6060', host_ip: 0.0.0.0, protocol: tcp, mode: host}]").unwrap();
        let got: Vec<_> = s.ports.iter().map(port).collect();
        assert_eq!(
            got,
            [
                (None, None, 80, "tcp"),
                (None, Some("8080"), 80, "tcp"),
                (Some("127.0.0.1"), Some("8081"), 81, "udp"),
                (Some("127.0.0.1"), None, 82, "tcp"),
                (Some("::1"), Some("8083"), 83, "tcp"),
                (None, Some("9000"), 90, "tcp"),
                (None, Some("9001"), 91, "tcp"),
                (None, Some("7000-7010"), 70, "tcp"),
                (Some("0.0.0.0"), Some("6060"), 60, "tcp"),
            ]
        );
        assert_eq!(s.ports[8].mode, "host");
        for bad in ["'0'", "'70000'", "'80/icmp'", "'9000-9002:90-91'", "'a:b:c:d'", "{published: 80}", "{target: 80, nope: 1}"] {
            assert!(service(&format!("ports: [{bad}]")).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_short_and_long() {
        let s = service("volumes:\n  - /anon\n  - data:/data:ro,nocopy\n  - ./rel:/rel\n  - /abs:/abs:rw,rshared\n  - {type: tmpfs, target: /t, tmpfs: {size: 1m, mode: 1777}}\n  - {type: bind, source: /h, target: /c, read_only: true, bind: {create_host_path: false}}").unwrap();
        let v = &s.volumes;
        assert_eq!((v[0].kind, v[0].source.as_deref(), v[0].target.as_str()), (MountKind::Volume, None, "/anon"));
        assert_eq!((v[1].kind, v[1].read_only, v[1].nocopy), (MountKind::Volume, true, true));
        assert_eq!((v[2].kind, v[2].create_host_path), (MountKind::Bind, true));
        assert_eq!(v[3].propagation.as_deref(), Some("rshared"));
        assert_eq!((v[4].kind, v[4].tmpfs_size, v[4].tmpfs_mode), (MountKind::Tmpfs, Some(1 << 20), Some(0o1777)));
        assert_eq!((v[5].kind, v[5].read_only, v[5].create_host_path), (MountKind::Bind, true, false));
        for bad in [
            "'rel'",
            "'a:b'",
            "'a:/b:zz'",
            "'a:/b:Z'",
            "{type: npipe, source: a, target: /b}",
            "{target: /b}",
            "{type: bind, target: /b}",
            "{type: tmpfs, source: x, target: /b}",
        ] {
            assert!(service(&format!("volumes: [{bad}]")).is_err(), "{bad}");
        }
    }

    #[test]
    fn forms_of_the_same_thing() {
        let a = service(
            "environment: [A=1, B]\nlabels: [x=y]\ndepends_on: [d]\nnetworks: [n]\nhealthcheck: {test: echo hi}\nulimits: {nofile: 10}",
        )
        .unwrap();
        let b = service("environment: {A: 1, B: null}\nlabels: {x: y}\ndepends_on: {d: {condition: service_started}}\nnetworks: {n: null}\nhealthcheck: {test: [CMD-SHELL, echo hi]}\nulimits: {nofile: 10}").unwrap();
        assert_eq!(a.environment, b.environment);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.depends_on.keys().collect::<Vec<_>>(), b.depends_on.keys().collect::<Vec<_>>());
        assert_eq!(a.networks, b.networks);
        assert_eq!(a.healthcheck, b.healthcheck);
        assert_eq!(a.ulimits, b.ulimits);
        let c = service("command: sh -c 'a b'\nentrypoint: [x]\ndns: 1.1.1.1\ntmpfs: /run\nextra_hosts: {h: 1.2.3.4}\nmem_limit: 1g\nstop_grace_period: 90s").unwrap();
        assert_eq!(c.command.unwrap(), ["sh", "-c", "a b"]);
        assert_eq!(c.dns, ["1.1.1.1"]);
        assert_eq!(c.tmpfs, ["/run"]);
        assert_eq!(c.extra_hosts, ["h=1.2.3.4"]);
        assert_eq!(c.mem_limit, Some(1 << 30));
        assert_eq!(c.stop_grace_period, Some(90_000_000_000));
    }

    #[test]
    fn every_level_rejects_unknown_keys_with_their_line() {
        for (body, line) in [
            ("image: x\nbuild: .", 4),
            ("healthcheck: {test: x, intervall: 1s}", 3),
            ("deploy: {replicas: 2}", 3),
            ("deploy:\n  resources:\n    limits: {gpus: 1}", 5),
            ("depends_on: {d: {conditon: service_started}}", 3),
            ("networks: {n: {priority: 1}}", 3),
            ("logging: {drver: local}", 3),
            ("ulimits: {nofile: {soft: 1, hard: 2, x: 3}}", 3),
        ] {
            let e = service(body).unwrap_err();
            assert!(e.msg.contains("unknown key"), "{body}: {e}");
            assert_eq!(e.mark.map(|m| m.line), Some(line), "{body}: {e}");
        }
        let e = parse_project(&crate::yaml::parse("volumes:\n  v: {drivr: local}\n").unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "line 2 column 7: volumes.v: unknown key \"drivr\" (not supported by berth)");
        // Extensions are fine anywhere a mapping of the model is.
        assert!(service("image: x\nx-note: anything\nhealthcheck: {test: x, x-why: y}").is_ok());
    }

    #[test]
    fn typed_values() {
        assert!(service("privileged: maybe").unwrap_err().msg.contains("boolean"));
        assert!(service("pids_limit: lots").unwrap_err().msg.contains("integer"));
        assert!(service("cpus: -1").unwrap_err().msg.contains("non-negative"));
        assert!(service("mem_limit: 1x").unwrap_err().msg.contains("invalid size"));
        assert!(service("stop_grace_period: 10").unwrap_err().msg.contains("invalid duration"));
        assert!(service("depends_on: {d: {condition: service_ready}}").unwrap_err().msg.contains("unknown condition"));
        assert!(service("healthcheck: {test: [RUN, x]}").unwrap_err().msg.contains("CMD"));
        assert!(service("extra_hosts: [nohost]").unwrap_err().msg.contains("no address"));
        assert!(service("environment: {A: [1]}").is_err());
        let s = service("privileged: yes\nread_only: 'false'\nmemswap_limit: -1\nx-berth: ignored").unwrap();
        assert!(s.privileged && !s.read_only);
        assert_eq!(s.memswap_limit, Some(-1));
    }
}
