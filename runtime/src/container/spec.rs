//! What a container is allowed to be: every `run` option resolved against the image config into
//! one validated value that the process setup only executes (Northstar's "manifest as the single
//! source of truth"). Stored in the container's state record.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::Resources;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Net {
    /// The host's network stack (the default on boards whose kernel has no bridge support, when
    /// the agent is configured so).
    Host,
    /// A new network namespace with only loopback.
    None,
    /// Another container's network namespace.
    Container(String),
    /// A bridge network by name (`bridge`, the default one, or a user-defined network): a new
    /// network namespace with a veth pair into the network's bridge.
    Bridge(String),
}

impl Net {
    pub fn parse(s: &str) -> Result<Net> {
        match s {
            "host" => Ok(Net::Host),
            "none" => Ok(Net::None),
            "default" => Ok(Net::Bridge("bridge".into())),
            _ => match s.strip_prefix("container:") {
                Some(n) if !n.is_empty() => Ok(Net::Container(n.to_string())),
                Some(_) => Err(Error::invalid(format!("invalid network mode {s:?}: container:NAME needs a name"))),
                None => {
                    crate::net::network::validate_name(s)?;
                    Ok(Net::Bridge(s.to_string()))
                }
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// A host path or a volume's data directory (a file, directory, socket or device node).
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        options: String,
    },
    /// A bind mount with a propagation mode other than Docker's default `rprivate` (a variant of
    /// its own so that records written before it still decode).
    BindWith {
        source: PathBuf,
        target: String,
        readonly: bool,
        propagation: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub resource: i32,
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// How the container's stdio is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stdio {
    /// File descriptors handed over by the client (foreground `run`).
    Passed,
    /// stdout/stderr appended to the container's log file, stdin from /dev/null.
    Log,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub args: crate::shared::SharedList,
    pub env: Box<[String]>,
    pub cwd: String,
    /// `uid[:gid]` or `name[:group]`, resolved inside the container's /etc/passwd.
    pub user: String,
    pub hostname: String,
    pub mounts: Box<[Mount]>,
    pub read_only: bool,
    pub net: Net,
    /// The capability set, resolved (`CAP_*` names).
    pub caps: crate::shared::SharedList,
    pub privileged: bool,
    pub no_new_privs: bool,
    pub ulimits: Box<[Ulimit]>,
    pub init: bool,
    pub tty: bool,
    pub resources: Resources,
    /// Nodes made in the container's /dev (`--device`), with their cgroup rules in `resources`.
    pub devices: Box<[berth_device::node::Node]>,
    /// What hotplug adds to the running container later (`--device` directories and USB ids,
    /// `--device-cgroup-rule`).
    pub device_watch: Box<[berth_device::hotplug::Watch]>,
    /// `--device` and `--device-cgroup-rule` as given: devices are looked up again at every start.
    pub device_args: Box<[String]>,
    pub device_cgroup_rules: Box<[String]>,
    /// The system call filter, compiled at every start (and for every `exec`) for the
    /// container's capabilities; `--privileged` runs unconfined whatever this says.
    pub seccomp: Seccomp,
    /// `--userns=auto`: the host IDs the container's root and users are (the range is taken for
    /// as long as this record exists); None runs in the host's user namespace.
    #[serde(default)]
    pub userns: Option<crate::userns::IdMap>,
    /// `--sysctl`: namespaced kernel settings written in the container's namespaces before
    /// its root is built (checked at create: see [`check_sysctl`]).
    #[serde(default)]
    pub sysctls: Box<[(String, String)]>,
}

/// Docker's rule for `--sysctl`: only settings that live in the container's own namespaces
/// (IPC: `kernel.msg*`, `kernel.sem`, `kernel.shm*`, `fs.mqueue.*`; network: `net.*`, and not
/// when the container shares another network namespace). Returns (name, value).
pub fn check_sysctl(kv: &str, own_net: bool) -> std::result::Result<(String, String), String> {
    let (k, v) = kv.split_once('=').ok_or_else(|| format!("sysctl {kv:?}: not NAME=VALUE"))?;
    let k = k.trim().to_string();
    if k.is_empty() || k.contains("..") || k.contains('/') {
        return Err(format!("sysctl {kv:?}: bad name"));
    }
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&k.as_str()) || k.starts_with("fs.mqueue.") {
        return Ok((k, v.to_string()));
    }
    if k.starts_with("net.") {
        if !own_net {
            return Err(format!("sysctl {k:?} not allowed in host network namespace"));
        }
        return Ok((k, v.to_string()));
    }
    Err(format!("sysctl {k:?} is not whitelisted"))
}

/// `--security-opt seccomp=...`: the record keeps the profile's text (small), not the filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Seccomp {
    /// Docker's default profile.
    #[default]
    Default,
    Unconfined,
    /// A profile in Docker's JSON format, as read from the user's file.
    Profile(String),
}

impl Seccomp {
    /// The profile to compile, if any.
    pub fn source(&self) -> Option<&str> {
        match self {
            Seccomp::Default => Some(crate::seccomp::default_profile()),
            Seccomp::Unconfined => None,
            Seccomp::Profile(json) => Some(json),
        }
    }

    /// How `inspect` shows it in `HostConfig.SecurityOpt`, as Docker (the profile's text).
    pub fn security_opt(&self) -> Option<String> {
        match self {
            Seccomp::Default => None,
            Seccomp::Unconfined => Some("seccomp=unconfined".into()),
            Seccomp::Profile(json) => Some(format!("seccomp={json}")),
        }
    }

    /// `--security-opt seccomp=VALUE`: `unconfined`, or a profile's text (the client reads the
    /// file, as Docker's CLI does), checked now so that a bad one starts nothing.
    pub fn parse(value: &str) -> Result<Seccomp> {
        match value {
            "unconfined" => Ok(Seccomp::Unconfined),
            "builtin" | "default" => Ok(Seccomp::Default),
            json => {
                crate::seccomp::check(json)?;
                Ok(Seccomp::Profile(json.to_string()))
            }
        }
    }
}

/// Docker's `--tmpfs` options: mount flags and tmpfs data, validated before anything is created.
pub fn tmpfs_options(opts: &str) -> Result<(libc::c_ulong, String)> {
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let mut data = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => flags &= !libc::MS_RDONLY,
            "exec" => flags &= !libc::MS_NOEXEC,
            "noexec" => flags |= libc::MS_NOEXEC,
            "suid" => flags &= !libc::MS_NOSUID,
            "nosuid" => flags |= libc::MS_NOSUID,
            "dev" => flags &= !libc::MS_NODEV,
            "nodev" => flags |= libc::MS_NODEV,
            "sync" => flags |= libc::MS_SYNCHRONOUS,
            "async" => flags &= !libc::MS_SYNCHRONOUS,
            "atime" | "relatime" | "noatime" | "strictatime" | "nodiratime" | "diratime" => {}
            _ => {
                let (k, v) = o.split_once('=').ok_or_else(|| Error::invalid(format!("invalid tmpfs option {o:?}")))?;
                match k {
                    "size" => {
                        let v = if v.ends_with('%') { v.to_string() } else { crate::cgroup::parse_size(v)?.to_string() };
                        data.push(format!("size={v}"));
                    }
                    "mode" if u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777) => data.push(format!("mode={v}")),
                    "uid" | "gid" | "nr_inodes" | "nr_blocks" if v.parse::<u64>().is_ok() => data.push(format!("{k}={v}")),
                    "tmpcopyup" | "notmpcopyup" => {}
                    _ => return Err(Error::invalid(format!("invalid tmpfs option {o:?}"))),
                }
            }
        }
    }
    Ok((flags, data.join(",")))
}

const ULIMITS: &[(&str, i32)] = &[
    ("core", libc::RLIMIT_CORE as i32),
    ("cpu", libc::RLIMIT_CPU as i32),
    ("data", libc::RLIMIT_DATA as i32),
    ("fsize", libc::RLIMIT_FSIZE as i32),
    ("locks", libc::RLIMIT_LOCKS as i32),
    ("memlock", libc::RLIMIT_MEMLOCK as i32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as i32),
    ("nice", libc::RLIMIT_NICE as i32),
    ("nofile", libc::RLIMIT_NOFILE as i32),
    ("nproc", libc::RLIMIT_NPROC as i32),
    ("rss", libc::RLIMIT_RSS as i32),
    ("rtprio", libc::RLIMIT_RTPRIO as i32),
    ("rttime", libc::RLIMIT_RTTIME as i32),
    ("sigpending", libc::RLIMIT_SIGPENDING as i32),
    ("stack", libc::RLIMIT_STACK as i32),
    ("as", libc::RLIMIT_AS as i32),
];

/// `--ulimit name=soft[:hard]` as Docker parses it (-1 is unlimited).
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let bad = || Error::invalid(format!("invalid ulimit argument: {s}"));
    let (name, vals) = s.split_once('=').ok_or_else(bad)?;
    let resource =
        ULIMITS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r).ok_or_else(|| Error::invalid(format!("invalid ulimit type: {name}")))?;
    let num = |v: &str| -> Result<u64> {
        if v == "-1" {
            Ok(libc::RLIM_INFINITY)
        } else {
            v.parse::<u64>().map_err(|_| bad())
        }
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        return Err(Error::invalid(format!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")));
    }
    Ok(Ulimit { resource, name: name.to_string(), soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_and_ulimit_parsing() {
        let (f, d) = tmpfs_options("size=1m,mode=1777,exec").unwrap();
        assert_eq!(d, "size=1048576,mode=1777");
        assert_eq!(f & libc::MS_NOEXEC, 0);
        assert!(tmpfs_options("bogus").is_err());
        assert!(tmpfs_options("size=12x").is_err());
        assert!(tmpfs_options("mode=999").is_err());
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert_eq!(Net::parse("container:db").unwrap(), Net::Container("db".into()));
        assert_eq!(Net::parse("bridge").unwrap(), Net::Bridge("bridge".into()));
        assert_eq!(Net::parse("apps").unwrap(), Net::Bridge("apps".into()));
        assert!(Net::parse("container:").is_err());
        assert!(Net::parse("a b").is_err());
    }

    #[test]
    fn sysctls_only_namespaced_ones() {
        assert_eq!(check_sysctl("net.core.somaxconn=1024", true), Ok(("net.core.somaxconn".into(), "1024".into())));
        assert_eq!(check_sysctl("kernel.shmmax=65536", false), Ok(("kernel.shmmax".into(), "65536".into())));
        assert_eq!(check_sysctl("fs.mqueue.msg_max=20", false), Ok(("fs.mqueue.msg_max".into(), "20".into())));
        assert!(check_sysctl("net.core.somaxconn=1024", false).unwrap_err().contains("not allowed in host network namespace"));
        assert!(check_sysctl("kernel.panic=1", true).unwrap_err().contains("not whitelisted"));
        assert!(check_sysctl("net.core.somaxconn", true).unwrap_err().contains("not NAME=VALUE"));
        assert!(check_sysctl("net/../../x=1", true).unwrap_err().contains("bad name"));
    }
}
