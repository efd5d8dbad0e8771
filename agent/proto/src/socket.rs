//! The CLI ↔ agent protocol on the local socket: frames of a u32 length and a postcard body.
//! A foreground `run` passes its stdin/stdout/stderr descriptors with SCM_RIGHTS, so the
//! container writes straight to the user's terminal or pipe, with no copy through the agent.

use std::io;

use serde::{Deserialize, Serialize};

use crate::error::Kind;

/// Frames are small; the cap keeps a confused peer from making the agent allocate much.
pub const MAX_FRAME: usize = 1 << 20;

/// `berth run`/`create` options as given, parsed only as far as the CLI can check them; the
/// agent resolves them against the image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    pub image: String,
    pub cmd: Vec<String>,
    pub name: Option<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub volumes: Vec<String>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub net: Option<String>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<u64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=`: `unconfined`, or the profile's text (read where the words are
    /// parsed, as Docker's CLI reads the file), checked.
    pub seccomp: Option<String>,
    /// `--userns`: `host`, `auto` or `auto:size=N` (checked); None takes the agent's default.
    #[serde(default)]
    pub userns: Option<String>,
    pub ulimits: Vec<String>,
    pub labels: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    pub auto_remove: bool,
    pub init: bool,
    pub privileged: bool,
    pub interactive: bool,
    pub tty: bool,
    pub log_driver: Option<String>,
    pub log_opts: Vec<String>,
    pub restart: Option<String>,
    pub health_cmd: Option<String>,
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub health_retries: Option<u32>,
    pub health_start_period: Option<String>,
    pub no_healthcheck: bool,
    /// `--device` values as given (resolved by the agent, which sees the host's devices).
    pub devices: Vec<String>,
    pub device_cgroup_rules: Vec<String>,
    /// `--mount` values as given (checked by the CLI, resolved by the agent).
    pub mounts: Vec<String>,
    /// `-p` as given (checked by the CLI), `-P`, and the per-network and DNS options.
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub ip: Option<String>,
    pub mac_address: Option<String>,
    pub network_aliases: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub add_hosts: Vec<String>,
    pub links: Vec<String>,
    /// `--sysctl NAME=VALUE` as given (checked by the agent: namespaced ones only).
    pub sysctls: Vec<String>,
    /// `--storage-opt size=SIZE` as given (a project quota on the writable layer).
    #[serde(default)]
    pub storage_opt: Vec<String>,
}

/// `berth network ...` commands that change something (done by the agent, in its namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NetworkRequest {
    Create {
        name: String,
        driver: Option<String>,
        subnet: Option<String>,
        gateway: Option<String>,
        ip_range: Option<String>,
        internal: bool,
        labels: Vec<String>,
        options: Vec<String>,
    },
    Remove {
        name: String,
        force: bool,
    },
    Connect {
        network: String,
        container: String,
        aliases: Vec<String>,
        ip: Option<String>,
    },
    Disconnect {
        network: String,
        container: String,
        force: bool,
    },
    Prune,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Ping,
    Create(Box<RunOptions>),
    /// With `attach`, three descriptors (stdin, stdout, stderr) travel with the frame. With
    /// `wait`, the answer is `Exited` once the container has run (registered before it starts,
    /// so even a container that exits at once, or is removed by --rm, is not missed).
    Start {
        id: String,
        attach: bool,
        wait: bool,
    },
    Wait {
        id: String,
    },
    Stop {
        id: String,
        timeout: Option<u32>,
    },
    Kill {
        id: String,
        signal: i32,
    },
    Remove {
        id: String,
        force: bool,
        volumes: bool,
    },
    Restart {
        id: String,
        timeout: Option<u32>,
    },
    /// With `attach`, three descriptors travel with the frame and the answer is `Exited`.
    Exec(Box<ExecOptions>),
    Rename {
        id: String,
        name: String,
    },
    /// `pause` (`true`) or `unpause` (`false`): freezes or thaws every process of the container.
    Pause {
        id: String,
        frozen: bool,
    },
    /// `docker update`: new limits (unset fields stay) and restart policy.
    Update {
        id: String,
        resources: berth_runtime::cgroup::Resources,
        restart: Option<String>,
    },
    /// Streams `Event`s (those since `since`, unix seconds, first) until `until` or disconnect.
    Events {
        since: Option<i64>,
        until: Option<i64>,
    },
    /// The update journal and device state (`berth deployment status`), as JSON `Text`.
    Deployment,
    /// Back to the previous committed version of a deployed container; answers with the
    /// outcome as JSON `Text` once done.
    Rollback {
        name: String,
    },
    /// `network create/rm/connect/disconnect/prune`; answered with `Text` (an id, names) or
    /// `Done`.
    Network(NetworkRequest),
}

/// Something that happened to a container, as `docker events` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub secs: i64,
    pub action: String,
    pub id: String,
    pub name: String,
    pub image: String,
    pub attributes: Vec<(String, String)>,
    /// What the event is about: `container` or `network`.
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecOptions {
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub attach: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Pong {
        pid: u32,
    },
    Created {
        id: String,
        warnings: Vec<String>,
    },
    Done,
    Exited {
        code: i32,
    },
    /// The CLI ends with `error::exit_code(kind)`.
    Error {
        kind: Kind,
        msg: String,
    },
    Event(Box<Event>),
    Text(String),
}

pub fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    let body = postcard::to_allocvec(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Pops one whole frame off the front of `buf`, if there is one.
pub fn take_frame(buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is too large")));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let body = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Ok(Some(body))
}

pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> io::Result<T> {
    postcard::from_bytes(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("malformed message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let req = Request::Start { id: "abc".into(), attach: true, wait: true };
        let mut v = encode(&req).unwrap();
        let body = take_frame(&mut v).unwrap().unwrap();
        assert_eq!(decode::<Request>(&body).unwrap(), req);
        assert!(v.is_empty());
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        assert!(take_frame(&mut huge).is_err());
    }
}
