//! The CLI ↔ agent protocol on the local socket: frames of a u32 length and a postcard body.
//! A foreground `run` passes its stdin/stdout/stderr descriptors with SCM_RIGHTS, so the
//! container writes straight to the user's terminal or pipe, with no copy through the agent.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

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
    /// `code` is the exit code the CLI should end with (125, 126, 127, or 1).
    Error {
        code: i32,
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

const MAX_FDS: usize = 4;

/// sendmsg of `data` with `fds` attached.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is a plain C struct; every pointer in it refers to `iov`/`cbuf`, which live
    // across the sendmsg call, and the control message is laid out with the CMSG_* macros.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
        }
        let n = libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// recvmsg into `buf`; descriptors that came with the bytes are returned owned (close-on-exec).
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: pure size computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut fds = Vec::new();
    // SAFETY: as in send_with_fds; the kernel writes at most `space` bytes of control data, and
    // each received descriptor is taken into an OwnedFd exactly once.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, fds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn frames_and_fds_round_trip() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let req = Request::Start { id: "abc".into(), attach: true, wait: true };
        let devnull = std::fs::File::open("/dev/null").unwrap();
        send_with_fds(a.as_raw_fd(), &encode(&req).unwrap(), &[devnull.as_raw_fd()]).unwrap();
        let mut buf = vec![0u8; 256];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        let mut v = buf[..n].to_vec();
        let body = take_frame(&mut v).unwrap().unwrap();
        assert_eq!(decode::<Request>(&body).unwrap(), req);
        assert_eq!(fds.len(), 1);
        assert!(v.is_empty());
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        assert!(take_frame(&mut huge).is_err());
    }
}
