//! The embedded DNS responder (`berth_runtime::net::dns`) on real sockets, asked by busybox
//! `nslookup`: two network namespaces made by the test and joined by a veth pair, the responder on
//! the "gateway" side (as the agent runs it on a network's gateway address), the client on the
//! other, and a stand-in upstream resolver beside the responder. Nothing is bound in the
//! machine's own namespace, no packet leaves the test's namespaces, and both are deleted (with the
//! veth pair) even when a check fails. Needs root and busybox.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use berth_runtime::net::dns::{serve_blocking, Lookup, Responder};
use berth_tests::{require_root, run, tool, Stdin};

const GATEWAY: &str = "10.213.0.1";
const CLIENT: &str = "10.213.0.2";
const FLOODER: &str = "10.213.0.3";
const UPSTREAM_PORT: u16 = 5300;

/// A namespace made for this test; dropping it deletes it and the veth end inside it.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("berth-dns-{}-{tag}", std::process::id());
        let _ = run(Command::new("ip").args(["netns", "del", &name]), Stdin::Null);
        tool("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", &self.0];
        a.extend_from_slice(args);
        tool("ip", &a);
    }

    /// Moves the calling thread into this namespace: sockets it makes afterwards live here.
    fn enter(&self) {
        let path = format!("/run/netns/{}", self.0);
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a namespace descriptor we hold open; it moves only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!("setns {path}: {}", std::io::Error::last_os_error());
        }
    }

    /// `busybox nslookup ARGS` inside this namespace: (exit status, stdout + stderr).
    fn nslookup(&self, args: &[&str]) -> (bool, String) {
        let out = run(Command::new("ip").args(["netns", "exec", &self.0, "busybox", "nslookup"]).args(args), Stdin::Null);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.0]), Stdin::Null);
    }
}

/// The agent's container table, changed while the responder runs: per container its names (the
/// first is its container name) and its address.
struct Live(Mutex<Vec<(Vec<String>, IpAddr)>>);

impl Live {
    /// Adds a container, or gives the one named `names[0]` a new address (a restart).
    fn set(&self, names: &[&str], ip: &str) {
        let ip: IpAddr = ip.parse().expect("test address");
        let mut t = self.0.lock().expect("table lock");
        match t.iter_mut().find(|(n, _)| n[0] == names[0]) {
            Some(entry) => entry.1 = ip,
            None => t.push((names.iter().map(|n| n.to_string()).collect(), ip)),
        }
    }
}

impl Lookup for Live {
    fn lookup(&self, _network: &str, name: &str) -> Vec<IpAddr> {
        let t = self.0.lock().expect("table lock");
        t.iter().filter(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name))).map(|(_, ip)| *ip).collect()
    }
    fn reverse(&self, network: &str, addr: IpAddr) -> Vec<String> {
        let t = self.0.lock().expect("table lock");
        t.iter().filter(|(_, ip)| *ip == addr).map(|(n, _)| format!("{}.{network}", n[0])).collect()
    }
}

/// A stand-in for the host's resolver, written without the responder's code: `outside.example`
/// has an A record, every other name is NXDOMAIN, other types of it have no records.
fn upstream_answer(q: &[u8]) -> Option<Vec<u8>> {
    berth_tests::netns::stub_answer(q, "outside.example", [198, 51, 100, 7])
}

/// The gateway's namespace and the client's, joined by a veth pair: GATEWAY on one side,
/// CLIENT and FLOODER on the other.
fn two_namespaces(tag: &str) -> (Netns, Netns) {
    require_root();
    tool("busybox", &["--list"]);
    let server_ns = Netns::new(&format!("{tag}gw"));
    let client_ns = Netns::new(&format!("{tag}ct"));
    let (veth_gw, veth_ct) = (format!("bd{tag}g{}", std::process::id()), format!("bd{tag}c{}", std::process::id()));
    server_ns.ip(&["link", "add", &veth_gw, "type", "veth", "peer", "name", &veth_ct, "netns", &client_ns.0]);
    server_ns.ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", &veth_gw]);
    server_ns.ip(&["link", "set", &veth_gw, "up"]);
    client_ns.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", &veth_ct]);
    client_ns.ip(&["addr", "add", &format!("{FLOODER}/24"), "dev", &veth_ct]);
    client_ns.ip(&["link", "set", &veth_ct, "up"]);
    (server_ns, client_ns)
}

#[test]
fn responder_answers_nslookup_across_namespaces() {
    let (server_ns, client_ns) = two_namespaces("b");
    let live = Live(Mutex::new(Vec::new()));
    live.set(&["peer", "pal", "f3424439bf09"], "10.213.5.2");
    let stop = AtomicBool::new(false);
    let flooding = AtomicBool::new(true);
    let gateway: Ipv4Addr = GATEWAY.parse().expect("gateway");

    std::thread::scope(|s| {
        // Stop the servers however the checks end, so the scope can join them.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _guard = StopOnDrop(&stop);

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let upstream_ready = ready_tx.clone();
        let (server_ns, stop, live) = (&server_ns, &stop, &live);
        s.spawn(move || {
            server_ns.enter();
            let sock = UdpSocket::bind((gateway, UPSTREAM_PORT)).expect("bind the stand-in upstream");
            sock.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            upstream_ready.send(()).expect("ready");
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    if let Some(r) = upstream_answer(&buf[..n]) {
                        let _ = sock.send_to(&r, from);
                    }
                }
            }
        });
        let responder = s.spawn(move || {
            server_ns.enter();
            let listen = UdpSocket::bind((gateway, 53)).expect("bind the responder on the gateway address");
            let upstream = UdpSocket::bind((gateway, 0)).expect("bind the forwarding socket");
            ready_tx.send(()).expect("ready");
            let mut r = Responder::new("testnet", vec![SocketAddr::new(IpAddr::V4(gateway), UPSTREAM_PORT)]);
            serve_blocking(&listen, &upstream, &mut r, live, &|| stop.load(Ordering::SeqCst)).expect("serve");
            r.stats()
        });
        for _ in 0..2 {
            ready_rx.recv_timeout(Duration::from_secs(10)).expect("servers up");
        }

        // Members by name, alias, short ID, any case, with the network as domain; authoritative.
        for name in ["peer", "pal", "f3424439bf09", "PEER", "Peer.TestNet"] {
            let (ok, out) = client_ns.nslookup(&[name, GATEWAY]);
            assert!(ok, "nslookup {name}: {out}");
            assert!(out.contains("Address: 10.213.5.2"), "nslookup {name}: {out}");
            assert!(!out.contains("Non-authoritative"), "nslookup {name}: {out}");
        }
        // PTR of a member.
        let (ok, out) = client_ns.nslookup(&["10.213.5.2", GATEWAY]);
        assert!(ok && out.contains("name = peer.testnet"), "reverse: {out}");

        // Other names go to the upstream: an answer, and an NXDOMAIN passed through.
        let (ok, out) = client_ns.nslookup(&["outside.example", GATEWAY]);
        assert!(ok && out.contains("Address: 198.51.100.7") && out.contains("Non-authoritative"), "forwarded: {out}");
        let (ok, out) = client_ns.nslookup(&["nosuch.example", GATEWAY]);
        assert!(!ok && out.contains("NXDOMAIN"), "nosuch: {out}");

        // A restart with a new address: the very next question sees it.
        live.set(&["peer"], "10.213.5.9");
        let (ok, out) = client_ns.nslookup(&["peer", GATEWAY]);
        assert!(ok && out.contains("Address: 10.213.5.9") && !out.contains("10.213.5.2"), "after restart: {out}");

        // A flood of malformed and valid questions from another address: the responder keeps
        // answering the client while it lasts and after.
        let flooder = {
            let (client_ns, flooding) = (&client_ns, &flooding);
            s.spawn(move || {
                client_ns.enter();
                let sock = UdpSocket::bind((FLOODER.parse::<Ipv4Addr>().expect("flooder"), 0)).expect("bind flooder");
                let to = SocketAddr::new(IpAddr::V4(gateway), 53);
                let mut x: u32 = 0x1234_5678;
                let mut sent = 0u64;
                let loop_ptr = [0u8, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1];
                let valid = [0u8, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, b'p', b'e', b'e', b'r', 0, 0, 1, 0, 1];
                while flooding.load(Ordering::SeqCst) && sent < 200_000 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let garbage: Vec<u8> = (0..(x % 64) as usize).map(|i| (x >> (i % 24)) as u8).collect();
                    let pkt: &[u8] = match sent % 4 {
                        0 => &loop_ptr,
                        1 => &valid,
                        2 => &valid[..15],
                        _ => &garbage,
                    };
                    let _ = sock.send_to(pkt, to);
                    sent += 1;
                }
                sent
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let (ok, out) = client_ns.nslookup(&["pal", GATEWAY]);
        assert!(ok && out.contains("Address: 10.213.5.9"), "during the flood: {out}");
        flooding.store(false, Ordering::SeqCst);
        let sent = flooder.join().expect("flooder");
        let (ok, out) = client_ns.nslookup(&["pal", GATEWAY]);
        assert!(ok && out.contains("Address: 10.213.5.9"), "after the flood of {sent}: {out}");

        stop.store(true, Ordering::SeqCst);
        let stats = responder.join().expect("responder thread");
        eprintln!("responder: {stats:?}");
        assert!(stats.malformed > 0, "the malformed packets reached it: {stats:?}");
        assert!(stats.rate_limited > 0, "the flooding address was limited: {stats:?}");
        assert!(stats.forwarded >= 2 && stats.upstream_answers >= 2, "{stats:?}");
    });
}

/// One question over TCP (two-byte length prefix), from a thread inside `ns`.
fn ask_tcp(ns: &Netns, query: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter();
            let to = SocketAddr::new(IpAddr::V4(GATEWAY.parse().expect("gateway")), 53);
            let mut c = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect over TCP");
            c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut out = (query.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(query);
            c.write_all(&out).expect("send over TCP");
            let mut len = [0u8; 2];
            c.read_exact(&mut len).expect("answer length");
            let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
            c.read_exact(&mut answer).expect("answer");
            answer
        })
        .join()
        .expect("TCP client thread")
    })
}

/// A query for `name`, type A, written out by hand.
fn query_a(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// What the test asks of the agent's side, which owns the (single-threaded) member table.
enum Change {
    Member {
        id: String,
        name: String,
        aliases: Vec<String>,
        ip: String,
    },
    Remove {
        id: String,
    },
    /// The network is removed and made again at once, as `compose up` does after an edit of it.
    Recreate,
}

fn id_of(n: u32) -> String {
    format!("{n:012x}{}", "0".repeat(52))
}

#[test]
fn agent_dns_server_on_its_event_loop() {
    use berth::daemon::dns::NetworkDns;
    use berth_runtime::net::dns::{Member, Members};

    let (server_ns, client_ns) = two_namespaces("a");
    let stop = AtomicBool::new(false);
    let gateway: Ipv4Addr = GATEWAY.parse().expect("gateway");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (change_tx, change_rx) = std::sync::mpsc::channel::<Change>();
    let (applied_tx, applied_rx) = std::sync::mpsc::channel::<()>();
    let change = |c: Change| {
        change_tx.send(c).expect("send a change");
        applied_rx.recv_timeout(Duration::from_secs(10)).expect("change applied");
    };

    std::thread::scope(|s| {
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _guard = StopOnDrop(&stop);
        let (server_ns, stop) = (&server_ns, &stop);
        // A stand-in resolver over UDP and TCP beside the responder.
        let upstream_ready = ready_tx.clone();
        s.spawn(move || {
            use std::io::{Read, Write};
            server_ns.enter();
            let udp = UdpSocket::bind((gateway, UPSTREAM_PORT)).expect("bind the stand-in upstream");
            udp.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
            let tcp = std::net::TcpListener::bind((gateway, UPSTREAM_PORT)).expect("bind the stand-in upstream (TCP)");
            tcp.set_nonblocking(true).expect("nonblocking");
            upstream_ready.send(()).expect("ready");
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    if let Some(r) = upstream_answer(&buf[..n]) {
                        let _ = udp.send_to(&r, from);
                    }
                }
                if let Ok((mut c, _)) = tcp.accept() {
                    let _ = c.set_nonblocking(false);
                    let mut len = [0u8; 2];
                    if c.read_exact(&mut len).is_ok() {
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if c.read_exact(&mut q).is_ok() {
                            if let Some(r) = upstream_answer(&q) {
                                let mut out = (r.len() as u16).to_be_bytes().to_vec();
                                out.extend_from_slice(&r);
                                let _ = c.write_all(&out);
                            }
                        }
                    }
                }
            }
        });
        // The agent's side: its current-thread runtime and LocalSet, as `berth agent` runs them,
        // and the network table the daemon's handlers feed.
        s.spawn(move || {
            server_ns.enter();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                let upstreams = vec![SocketAddr::new(IpAddr::V4(gateway), UPSTREAM_PORT)];
                let members = std::rc::Rc::new(std::cell::RefCell::new(Members::new()));
                let mut nets = NetworkDns::new();
                nets.start("testnet", IpAddr::V4(gateway), upstreams.clone(), members.clone()).expect("start the network's dns");
                nets.start("testnet", IpAddr::V4(gateway), upstreams.clone(), members.clone()).expect("a second start changes nothing");
                assert_eq!(nets.server("testnet").map(|s| s.addr()), Some(SocketAddr::new(IpAddr::V4(gateway), 53)));
                // Another network on the same address is refused, naming the network and address.
                let e = nets.start("other", IpAddr::V4(gateway), vec![], members.clone()).expect_err("port taken");
                assert!(e.to_string().starts_with("network other: dns on 10.213.0.1:53: "), "{e}");
                assert!(!nets.is_serving("other"));
                ready_tx.send(()).expect("ready");
                while !stop.load(Ordering::SeqCst) {
                    while let Ok(c) = change_rx.try_recv() {
                        match c {
                            Change::Member { id, name, aliases, ip } => {
                                members.borrow_mut().set(Member { id, name, aliases, ips: vec![ip.parse().expect("ip")] });
                            }
                            Change::Remove { id } => {
                                members.borrow_mut().remove(&id);
                            }
                            Change::Recreate => {
                                nets.stop("testnet");
                                nets.start("testnet", IpAddr::V4(gateway), upstreams.clone(), members.clone())
                                    .expect("a network made again on a stopped responder's address");
                                // Its listening begins at the loop's next turns.
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                        applied_tx.send(()).expect("applied");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        });
        for _ in 0..2 {
            ready_rx.recv_timeout(Duration::from_secs(10)).expect("servers up");
        }
        let member = |id: u32, name: &str, aliases: &[&str], ip: &str| Change::Member {
            id: id_of(id),
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ip: ip.to_string(),
        };
        change(member(1, "peer", &["pal"], "10.213.5.2"));
        for i in 1..=100u32 {
            change(member(1000 + i, &format!("m{i}"), &["many"], &format!("10.213.6.{i}")));
        }

        let (ok, out) = client_ns.nslookup(&["pal", GATEWAY]);
        assert!(ok && out.contains("Address: 10.213.5.2"), "pal: {out}");
        let (ok, out) = client_ns.nslookup(&[&id_of(1)[..12], GATEWAY]);
        assert!(ok && out.contains("Address: 10.213.5.2"), "short ID: {out}");
        let (ok, out) = client_ns.nslookup(&["10.213.5.2", GATEWAY]);
        assert!(ok && out.contains("name = peer.testnet"), "reverse: {out}");
        let (ok, out) = client_ns.nslookup(&["outside.example", GATEWAY]);
        assert!(ok && out.contains("Address: 198.51.100.7"), "forwarded: {out}");
        // A restart with a new address, then the container leaves.
        change(member(1, "peer", &["pal"], "10.213.5.9"));
        let (ok, out) = client_ns.nslookup(&["pal", GATEWAY]);
        assert!(ok && out.contains("Address: 10.213.5.9"), "after restart: {out}");
        change(Change::Remove { id: id_of(1) });
        let (ok, out) = client_ns.nslookup(&["pal", GATEWAY]);
        assert!(!ok && out.contains("NXDOMAIN"), "after it left (forwarded, unknown upstream): {out}");

        // 100 members under one alias: UDP gets what fits in 512 bytes with TC set; TCP all 64.
        let answer = ask_tcp(&client_ns, &query_a(0x4242, "many"));
        assert_eq!(&answer[..2], &[0x42, 0x42]);
        assert_eq!(answer[2] & 0x02, 0, "no TC over TCP");
        assert_eq!(u16::from_be_bytes([answer[6], answer[7]]), 64, "answers over TCP");
        let udp_answer = client_ns_udp(&client_ns, &query_a(0x4343, "many"));
        assert_ne!(udp_answer[2] & 0x02, 0, "TC over UDP");
        assert!(udp_answer.len() <= 512);
        // Forwarded over TCP to the resolver's TCP port.
        let answer = ask_tcp(&client_ns, &query_a(0x4444, "outside.example"));
        assert_eq!((&answer[..2], u16::from_be_bytes([answer[6], answer[7]])), (&[0x44u8, 0x44][..], 1), "{answer:?}");
        assert_eq!(answer[answer.len() - 4..], [198, 51, 100, 7]);

        // Removed and made again in one turn of the agent's loop: the new responder listens
        // once the old one's tasks have let go of the port (they hold it until then).
        change(Change::Recreate);
        let (ok, out) = client_ns.nslookup(&["m7", GATEWAY]);
        assert!(ok && out.contains("Address: 10.213.6.7"), "after the network was made again: {out}");
        stop.store(true, Ordering::SeqCst);
    });
}

/// One question over UDP from a thread inside `ns`.
fn client_ns_udp(ns: &Netns, query: &[u8]) -> Vec<u8> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter();
            let sock = UdpSocket::bind((CLIENT.parse::<Ipv4Addr>().expect("client"), 0)).expect("bind client");
            sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            sock.send_to(query, (GATEWAY, 53)).expect("send");
            let mut buf = [0u8; 2048];
            let (n, _) = sock.recv_from(&mut buf).expect("answer over UDP");
            buf[..n].to_vec()
        })
        .join()
        .expect("UDP client thread")
    })
}
