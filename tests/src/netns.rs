//! Network namespaces made by a test (`ip netns add berth-t-<pid>-<n>-<name>`), and threads that
//! run inside them: the networking tests put everything they make (bridges, veths, netfilter
//! rules, servers, the agent) inside such namespaces, so the machine's own network and firewall
//! are never touched and no packet leaves the machine. Dropping a `Netns` deletes it, which takes
//! its interfaces and rules with it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How long a client waits for a connection or an answer that should come.
pub const WAIT: Duration = Duration::from_secs(3);

pub struct Netns {
    pub name: String,
    /// A namespace this test made (deleted on drop), or another process's (`of_pid`).
    path: Option<String>,
}

impl Netns {
    /// A new namespace with `lo` up.
    pub fn new(tag: &str) -> Netns {
        let name = format!("berth-t-{}-{}-{tag}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        ip(&["netns", "add", &name]);
        let ns = Netns { name, path: None };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The network namespace of process `pid` (a running container's), not deleted on drop.
    pub fn of_pid(pid: u32) -> Netns {
        Netns { name: format!("pid-{pid}"), path: Some(format!("/proc/{pid}/ns/net")) }
    }

    pub fn path(&self) -> String {
        self.path.clone().unwrap_or_else(|| format!("/run/netns/{}", self.name))
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        ip(&a);
    }

    /// A command run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` in a thread inside this namespace (sockets it makes stay in it; children it
    /// spawns start in it).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns on a namespace descriptor we hold; only this thread moves.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    panic!("setns {path}: {}", std::io::Error::last_os_error());
                }
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Starts a TCP server in the namespace on `addr` that answers every connection with
    /// `reply` followed by the client's address as it saw it; the thread lives until the test
    /// process ends (the namespace's deletion closes nothing in it, but nothing reaches it then).
    pub fn tcp_server(&self, addr: &str, reply: &str) {
        let (path, addr, reply) = (self.path(), addr.to_string(), reply.to_string());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            // SAFETY: as in `run`.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns {path}");
            let l = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            tx.send(()).expect("server ready");
            for c in l.incoming().flatten() {
                let mut c = c;
                let peer = c.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
                let _ = c.write_all(format!("{reply} {peer}").as_bytes());
            }
        });
        rx.recv().expect("tcp server started");
    }

    /// Starts a UDP server that answers each datagram with `reply` and the sender's address.
    pub fn udp_server(&self, addr: &str, reply: &str) {
        let (path, addr, reply) = (self.path(), addr.to_string(), reply.to_string());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            // SAFETY: as in `run`.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns {path}");
            let s = UdpSocket::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            tx.send(()).expect("server ready");
            let mut buf = [0u8; 512];
            while let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(format!("{reply} {}", from.ip()).as_bytes(), from);
            }
        });
        rx.recv().expect("udp server started");
    }

    /// Starts a stand-in DNS resolver on UDP `addr` (written without berth's code): `name` has
    /// the A record `answer`, every other name is NXDOMAIN, other types of `name` have no
    /// records. Returns the count of questions it received, shared with its thread.
    pub fn dns_server(&self, addr: &str, name: &str, answer: [u8; 4]) -> std::sync::Arc<AtomicUsize> {
        let (path, addr, name) = (self.path(), addr.to_string(), name.to_ascii_lowercase());
        let asked = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            // SAFETY: as in `run`.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns {path}");
            let s = UdpSocket::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            tx.send(()).expect("server ready");
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(r) = stub_answer(&buf[..n], &name, answer) {
                    let _ = s.send_to(&r, from);
                }
            }
        });
        rx.recv().expect("dns server started");
        asked
    }

    /// Connects from this namespace to `addr` over TCP and returns what the server says, or
    /// the error.
    pub fn tcp_get(&self, addr: &str) -> Result<String, String> {
        let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        self.run(move || {
            let mut c = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| format!("connect {addr}: {e}"))?;
            c.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
            let mut s = String::new();
            c.read_to_string(&mut s).map_err(|e| format!("read from {addr}: {e}"))?;
            Ok(s)
        })
    }

    /// Sends one datagram from this namespace to `addr` and returns the answer, or the error.
    pub fn udp_get(&self, addr: &str) -> Result<String, String> {
        let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        self.run(move || {
            let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
            // A few tries: the first datagram may be lost while ARP resolves.
            for _ in 0..3 {
                s.send_to(b"ping", addr).map_err(|e| format!("send to {addr}: {e}"))?;
                let mut buf = [0u8; 512];
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            Err(format!("no answer from {addr}"))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.path.is_some() {
            return;
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Two namespaces joined by a veth pair, `a_addr` (CIDR) on `a`'s end, `b_addr` on `b`'s.
pub fn link(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) {
    let (ea, eb) = (format!("vt{}a", NEXT.fetch_add(1, Ordering::SeqCst)), format!("vt{}b", NEXT.fetch_add(1, Ordering::SeqCst)));
    a.ip(&["link", "add", &ea, "type", "veth", "peer", "name", &eb, "netns", &b.name]);
    a.ip(&["addr", "add", a_addr, "dev", &ea]);
    b.ip(&["addr", "add", b_addr, "dev", &eb]);
    a.ip(&["link", "set", &ea, "up"]);
    b.ip(&["link", "set", &eb, "up"]);
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("run ip (iproute2 installed?): {e}"));
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The stand-in resolver's answer to query `q` (questions are not compressed): `name` has the A
/// record `answer`, every other name is NXDOMAIN, other types of `name` have no records.
pub fn stub_answer(q: &[u8], name: &str, answer: [u8; 4]) -> Option<Vec<u8>> {
    if q.len() < 17 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    while *q.get(pos)? != 0 {
        let l = q[pos] as usize;
        labels.push(String::from_utf8_lossy(q.get(pos + 1..pos + 1 + l)?).to_ascii_lowercase());
        pos += 1 + l;
    }
    let end = pos + 5;
    let qtype = u16::from_be_bytes([*q.get(pos + 1)?, *q.get(pos + 2)?]);
    let mut r = q.get(..end)?.to_vec();
    r[2] = 0x81; // QR, RD
    r[3] = 0x80; // RA, NOERROR
    r[6..12].fill(0);
    if labels.join(".") != name {
        r[3] |= 3; // NXDOMAIN
    } else if qtype == 1 {
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        r.extend_from_slice(&answer);
    }
    Some(r)
}
