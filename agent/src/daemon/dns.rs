//! The embedded DNS of user networks on the agent's event loop: one [`DnsServer`] per network,
//! listening on the network's gateway address (UDP and TCP port 53, in the agent's namespace,
//! where the bridge lives), answering members from the agent's live state through a
//! [`Lookup`] and forwarding the rest to the host's resolvers. The protocol work is
//! `berth_runtime::net::dns::Responder`; this file only owns the sockets.
//!
//! Everything runs as local tasks of the current-thread runtime (the agent's `LocalSet`): a
//! datagram is handled to the end before the next one is read, sends never wait (a client that
//! does not read loses its answer, nobody else does), and at most [`MAX_TCP`] TCP connections are
//! served at once. Dropping the server stops it and closes its sockets.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use berth_runtime::net::dns::{self, Action, Lookup, Responder, TcpAction, DNS_PORT, MAX_QUERY, MAX_TCP_MESSAGE};
use berth_runtime::{Error, Result};

/// TCP connections served at once per network; more are closed at once.
pub const MAX_TCP: usize = 16;
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long a resolver has to answer over TCP.
const TCP_UPSTREAM: Duration = Duration::from_secs(3);

/// One network's responder, running until dropped.
pub struct DnsServer {
    network: String,
    addr: SocketAddr,
    responder: Rc<RefCell<Responder>>,
    /// Its UDP and TCP loops and TCP connections (and, while it waits for the sockets of a
    /// stopped responder on its address, that wait).
    tasks: Tasks,
}

type Tasks = Rc<RefCell<Vec<JoinHandle<()>>>>;

impl DnsServer {
    pub fn network(&self) -> &str {
        &self.network
    }

    /// Where it listens (the gateway address, port 53).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The protocol state: per-container `--dns` resolvers, new upstreams, counters.
    pub fn responder(&self) -> Rc<RefCell<Responder>> {
        self.responder.clone()
    }

    /// Aborts its tasks. An aborted task is dropped, with its sockets, only when the event loop
    /// next turns; each handle returned ends then.
    fn abort(&self) -> Vec<JoinHandle<()>> {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        for t in &tasks {
            t.abort();
        }
        tasks
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The host's resolvers for the responder to forward to: `/etc/resolv.conf` of the agent's
/// namespace, loopback ones included (the responder lives here, where they answer).
pub fn host_upstreams() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    dns::upstreams_from_resolv_conf(&text, true)
}

/// Starts the responder of `network` on `gateway` port 53, forwarding to `upstreams` (none: every
/// name that is not a member gets SERVFAIL, as for an `--internal` network). Must be called
/// inside the agent's `LocalSet`. Binding happens here, so a port already taken is an error now
/// (`network NAME: dns on GATEWAY:53: ...`), not later.
pub fn serve(network: &str, gateway: IpAddr, upstreams: Vec<SocketAddr>, lookup: Rc<dyn Lookup>) -> Result<DnsServer> {
    serve_on(network, SocketAddr::new(gateway, DNS_PORT), upstreams, lookup)
}

/// [`serve`] on any address and port (tests use an unprivileged port).
pub fn serve_on(network: &str, addr: SocketAddr, upstreams: Vec<SocketAddr>, lookup: Rc<dyn Lookup>) -> Result<DnsServer> {
    serve_after(network, addr, upstreams, lookup, Vec::new())
}

/// [`serve_on`], listening once the tasks `before` have ended (those of a responder just stopped
/// on the same address, still holding its port): then a bind that fails is a warning, not an
/// error.
fn serve_after(
    network: &str,
    addr: SocketAddr,
    upstreams: Vec<SocketAddr>,
    lookup: Rc<dyn Lookup>,
    before: Vec<JoinHandle<()>>,
) -> Result<DnsServer> {
    let what = |e: std::io::Error| Error::io(format!("network {network}: dns on {addr}"), e);
    let listen =
        if before.is_empty() { bind_listen(addr).map(|(udp, tcp)| Listen::Bound(udp, tcp)).map_err(what)? } else { Listen::After(before) };
    // Forwarding sockets on ephemeral ports of any address: the kernel picks the source address
    // that reaches each resolver (a loopback one included). IPv6 only if a resolver needs it.
    let up4 = bind_udp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).map_err(what)?;
    let mut upstreams = upstreams;
    let up6 = if upstreams.iter().any(SocketAddr::is_ipv6) {
        match bind_udp(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)) {
            Ok(s) => Some(s),
            Err(e) => {
                crate::warn!("network {network}: dns: no IPv6 socket ({e}): IPv6 resolvers left out");
                upstreams.retain(SocketAddr::is_ipv4);
                None
            }
        }
    } else {
        None
    };
    let server = DnsServer {
        network: network.to_string(),
        addr,
        responder: Rc::new(RefCell::new(Responder::new(network, upstreams))),
        tasks: Tasks::default(),
    };
    let task = crate::daemon::spawn(serve_task(
        server.network.clone(),
        addr,
        listen,
        (up4, up6),
        server.responder.clone(),
        lookup,
        server.tasks.clone(),
    ));
    server.tasks.borrow_mut().push(task);
    crate::debug!("network {network}: dns on {addr}");
    Ok(server)
}

/// A responder's port: bound, or to be bound once these tasks have ended.
enum Listen {
    Bound(UdpSocket, TcpListener),
    After(Vec<JoinHandle<()>>),
}

/// A responder: its TCP loop as a task of its own, its UDP loop here.
async fn serve_task(
    network: String,
    addr: SocketAddr,
    listen: Listen,
    (up4, up6): (UdpSocket, Option<UdpSocket>),
    responder: Rc<RefCell<Responder>>,
    lookup: Rc<dyn Lookup>,
    tasks: Tasks,
) {
    let (udp, tcp) = match listen {
        Listen::Bound(udp, tcp) => (udp, tcp),
        Listen::After(before) => {
            for t in before {
                let _ = t.await;
            }
            match bind_listen(addr) {
                Ok(l) => l,
                Err(e) => return crate::warn!("network {network}: dns on {addr}: {e}"),
            }
        }
    };
    let tcp_task = crate::daemon::spawn(tcp_loop(tcp, responder.clone(), lookup.clone(), tasks.clone()));
    tasks.borrow_mut().push(tcp_task);
    udp_loop(network, udp, up4, up6, responder, lookup).await
}

fn bind_listen(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    Ok((bind_udp(addr)?, bind_tcp(addr)?))
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = std::net::TcpListener::bind(addr)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s)
}

/// Receives from `sock`, or waits forever when there is no socket.
async fn recv(sock: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn udp_loop(
    network: String,
    listen: UdpSocket,
    up4: UdpSocket,
    up6: Option<UdpSocket>,
    responder: Rc<RefCell<Responder>>,
    lookup: Rc<dyn Lookup>,
) {
    // A question is at most MAX_QUERY bytes (longer ones are dropped); answers from resolvers
    // can be up to 64 KiB.
    let mut qbuf = vec![0u8; MAX_QUERY + 1];
    let mut abuf = vec![0u8; 65536];
    let mut abuf6 = if up6.is_some() { vec![0u8; 65536] } else { Vec::new() };
    let mut errors = 0u32;
    loop {
        let deadline = responder.borrow().next_deadline();
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let actions: Vec<Action> = tokio::select! {
            r = listen.recv_from(&mut qbuf) => match r {
                Ok((n, from)) => vec![responder.borrow_mut().handle_query(&qbuf[..n], from, Instant::now(), &*lookup)],
                Err(e) => { errors = pause_on_error(&network, "read a question", e, errors).await; continue }
            },
            r = up4.recv_from(&mut abuf) => match r {
                Ok((n, from)) => vec![responder.borrow_mut().handle_upstream(&abuf[..n], from, Instant::now())],
                Err(e) => { errors = pause_on_error(&network, "read a resolver's answer", e, errors).await; continue }
            },
            r = recv(up6.as_ref(), &mut abuf6) => match r {
                Ok((n, from)) => vec![responder.borrow_mut().handle_upstream(&abuf6[..n], from, Instant::now())],
                Err(e) => { errors = pause_on_error(&network, "read a resolver's answer", e, errors).await; continue }
            },
            _ = timer => responder.borrow_mut().expire(Instant::now()),
        };
        errors = 0;
        for a in actions {
            // Never wait on a send: a full buffer loses this one datagram (the client retries).
            let _ = match a {
                Action::Drop => continue,
                Action::Reply { to, packet } => listen.try_send_to(&packet, to),
                Action::Forward { to, packet } => match (&up6, to.is_ipv6()) {
                    (Some(s), true) => s.try_send_to(&packet, to),
                    _ => up4.try_send_to(&packet, to),
                },
            };
        }
    }
}

/// A failed receive (ICMP errors surface as ECONNREFUSED on some kernels): logged once, then a
/// short pause so that a persistent error cannot spin the loop.
async fn pause_on_error(network: &str, what: &str, e: std::io::Error, errors: u32) -> u32 {
    if errors == 0 {
        crate::debug!("network {network}: dns: {what}: {e}");
    }
    if errors > 8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    errors.saturating_add(1)
}

async fn tcp_loop(listener: TcpListener, responder: Rc<RefCell<Responder>>, lookup: Rc<dyn Lookup>, tasks: Tasks) {
    let active = Rc::new(Cell::new(0usize));
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        tasks.borrow_mut().retain(|t| !t.is_finished());
        if active.get() >= MAX_TCP {
            drop(stream);
            continue;
        }
        active.set(active.get() + 1);
        let (responder, lookup, active) = (responder.clone(), lookup.clone(), active.clone());
        let t = crate::daemon::spawn(async move {
            let _ = tcp_connection(stream, from, &responder, &*lookup).await;
            active.set(active.get() - 1);
        });
        tasks.borrow_mut().push(t);
    }
}

/// Questions on one TCP connection (RFC 7766: several may follow each other), each answered
/// before the next is read.
async fn tcp_connection(
    mut stream: TcpStream,
    from: SocketAddr,
    responder: &RefCell<Responder>,
    lookup: &dyn Lookup,
) -> std::io::Result<()> {
    let mut msg = Vec::new();
    loop {
        let Ok(len) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else { return Ok(()) };
        let len = len? as usize;
        if len == 0 {
            return Ok(());
        }
        msg.resize(len, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg)).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
        let action = responder.borrow_mut().handle_tcp_query(&msg, from, Instant::now(), lookup);
        let answer = match action {
            TcpAction::Drop => return Ok(()),
            TcpAction::Reply(r) => r,
            TcpAction::Forward(upstreams) => {
                let mut got = None;
                for u in upstreams {
                    if let Ok(Ok(r)) = tokio::time::timeout(TCP_UPSTREAM, ask_over_tcp(u, &msg)).await {
                        got = Some(r);
                        break;
                    }
                }
                match got {
                    Some(r) => r,
                    None => match responder.borrow_mut().tcp_servfail(&msg) {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                }
            }
        };
        if answer.len() > MAX_TCP_MESSAGE {
            return Ok(());
        }
        let mut out = Vec::with_capacity(answer.len() + 2);
        out.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        out.extend_from_slice(&answer);
        stream.write_all(&out).await?;
    }
}

/// One question to a resolver over TCP; its answer, whose id and question must be the
/// question's.
async fn ask_over_tcp(upstream: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(upstream).await?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out).await?;
    let len = s.read_u16().await? as usize;
    let mut answer = vec![0u8; len];
    s.read_exact(&mut answer).await?;
    let same = answer.len() >= 12
        && answer[..2] == msg[..2]
        && dns::parse_query(msg)
            .ok()
            .map(|q| q.question.end)
            .is_some_and(|end| answer.get(12..end).is_some_and(|a| a.eq_ignore_ascii_case(&msg[12..end])));
    if !same {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "answer does not match the question"));
    }
    Ok(answer)
}

/// The responders of every user network, for the daemon's network handlers: started when a
/// network is created (or adopted at agent start), stopped when it is removed. The default bridge
/// has none (Docker's has none either: names there come from `--link` entries in /etc/hosts).
/// Names come from the daemon's own live table through [`Lookup`] (e.g. an
/// `Rc<RefCell<dns::Members>>` per network, updated as containers connect, restart and leave).
#[derive(Default)]
pub struct NetworkDns {
    servers: std::collections::BTreeMap<String, DnsServer>,
    /// Tasks of stopped responders until they have let go of their sockets: a network removed
    /// and made again at once (`compose up` after an edit of it) listens after them.
    stopping: Vec<JoinHandle<()>>,
}

impl NetworkDns {
    pub fn new() -> NetworkDns {
        NetworkDns::default()
    }

    /// Serves `network` on `gateway`, forwarding to `upstreams` ([`host_upstreams`]; none for an
    /// `--internal` network, which answers its members and forwards nothing). Starting one that
    /// already runs changes nothing.
    pub fn start(&mut self, network: &str, gateway: IpAddr, upstreams: Vec<SocketAddr>, lookup: Rc<dyn Lookup>) -> Result<()> {
        if self.servers.contains_key(network) {
            return Ok(());
        }
        self.stopping.retain(|t| !t.is_finished());
        let before = std::mem::take(&mut self.stopping);
        let server = serve_after(network, SocketAddr::new(gateway, DNS_PORT), upstreams, lookup, before)?;
        self.servers.insert(network.to_string(), server);
        Ok(())
    }

    /// The network was removed: its responder stops and its port is free again.
    pub fn stop(&mut self, network: &str) {
        if let Some(server) = self.servers.remove(network) {
            self.stopping.extend(server.abort());
        }
    }

    pub fn is_serving(&self, network: &str) -> bool {
        self.servers.contains_key(network)
    }

    /// The container at `client` on `network` was started with `--dns`: its forwarded questions
    /// go there (addresses that do not parse, and loopback ones, are left out).
    pub fn set_client_dns(&self, network: &str, client: IpAddr, dns_servers: &[String]) {
        let Some(server) = self.servers.get(network) else { return };
        let upstreams: Vec<SocketAddr> =
            dns_servers.iter().filter_map(|s| s.parse::<IpAddr>().ok()).map(|ip| SocketAddr::new(ip, DNS_PORT)).collect();
        server.responder.borrow_mut().set_client_upstreams(client, &upstreams);
    }

    /// The container at `client` left `network`.
    pub fn forget_client(&self, network: &str, client: IpAddr) {
        if let Some(server) = self.servers.get(network) {
            server.responder.borrow_mut().forget_client(client);
        }
    }

    /// A network's responder, for its address and counters.
    pub fn server(&self, network: &str) -> Option<&DnsServer> {
        self.servers.get(network)
    }
}
