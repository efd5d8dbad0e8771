//! Health checks as Docker runs them: every interval the test runs inside the container (as
//! `exec` does); exit 0 is healthy; `retries` failures in a row (not counting the start period)
//! make it unhealthy. State lives in memory and, for `ps`/`inspect` (which run without the
//! agent), in `/run/berth/<cgroup parent>/<id>.health` (Docker's inspect shape), rewritten after
//! every check: on tmpfs, so checks never wear the flash. Where /run is not writable it falls back
//! to the container's directory.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt;

use berth_runtime::timefmt;

use super::Shared;

pub const OUTPUT_CAP: usize = 4096;

pub struct State {
    pub status: &'static str,
    pub streak: u32,
    pub log: VecDeque<serde_json::Value>,
    pub next: Instant,
    pub started: Instant,
    pub running: bool,
}

impl State {
    pub fn new(interval: Duration) -> State {
        State {
            status: "starting",
            streak: 0,
            log: VecDeque::new(),
            next: Instant::now() + interval,
            started: Instant::now(),
            running: false,
        }
    }

    pub fn write(&self, root: &Path, id: &str) {
        let doc = serde_json::to_vec(&json!({"Status": self.status, "FailingStreak": self.streak, "Log": self.log})).unwrap_or_default();
        let run = berth_runtime::paths::health_file(root, id);
        let ok = run.parent().is_some_and(|d| std::fs::create_dir_all(d).is_ok()) && berth_runtime::fsutil::replace(&run, &doc).is_ok();
        if !ok {
            let _ = berth_runtime::fsutil::replace(&berth_runtime::container::record::dir(root, id).join("health"), &doc);
        }
    }
}

/// Forgets a removed container's health file.
pub fn remove(root: &Path, id: &str) {
    let _ = std::fs::remove_file(berth_runtime::paths::health_file(root, id));
}

/// The health shown for a container.
pub fn read(root: &Path, id: &str) -> Option<serde_json::Value> {
    let data = std::fs::read(berth_runtime::paths::health_file(root, id))
        .or_else(|_| std::fs::read(berth_runtime::container::record::dir(root, id).join("health")))
        .ok()?;
    serde_json::from_slice(&data).ok()
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors that we take ownership of.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs one check of `id` and records its result.
pub async fn run(sup: Shared, id: String, cmd: Vec<String>, timeout: Duration) {
    let start = timefmt::now_nanos();
    let (code, output) = match pipe() {
        Err(e) => (-1, format!("health check: pipe: {e}")),
        Ok((rd, wr)) => {
            // The write end must be blocking for the process that writes to it.
            // SAFETY: fcntl on a descriptor we own.
            unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETFL, 0) };
            let started = sup.borrow_mut().exec_check(&id, cmd, wr);
            match started {
                Err(e) => (-1, e.msg),
                Ok((pid, rx)) => {
                    let work = async {
                        let mut out = Vec::new();
                        if let Ok(r) = tokio::net::unix::pipe::Receiver::from_owned_fd(rd) {
                            let mut buf = [0u8; 1024];
                            let mut r = r;
                            while let Ok(n) = r.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                                if out.len() < OUTPUT_CAP {
                                    out.extend_from_slice(&buf[..n.min(OUTPUT_CAP - out.len())]);
                                }
                            }
                        }
                        (rx.await.unwrap_or(-1), String::from_utf8_lossy(&out).into_owned())
                    };
                    match tokio::time::timeout(timeout, work).await {
                        Ok(r) => r,
                        Err(_) => {
                            // SAFETY: kill(2) of the check process, which the check's waiter
                            // has not reaped yet (it waits for exactly this process).
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                            (-1, format!("Health check exceeded timeout ({}s)", berth_runtime::decimal::display(timeout.as_secs_f64())))
                        }
                    }
                }
            }
        }
    };
    let end = timefmt::now_nanos();
    sup.borrow_mut().health_result(&id, json!({"Start": start, "End": end, "ExitCode": code, "Output": output}), code);
}
