//! Container networks with real packets: bridges, veth pairs, NAT, published ports, isolation and
//! `--internal`. Every test makes its own network namespaces (a "board" namespace where berth's
//! bridges and rules live, an "outside" one joined to it by a veth pair, and one per container),
//! so the machine's own network and firewall are never touched and nothing leaves the machine.

use std::fs;
use std::os::fd::AsRawFd;

use berth_runtime::net::netlink::Netlink;
use berth_runtime::net::network::{self, ConnectRequest, CreateRequest, Store};
use berth_runtime::net::ports;
use berth_tests::agent::Agent;
use berth_tests::netns::{link, Netns};
use berth_tests::{fixtures, make_temp_dir, poll, require_root, s, Root};

/// The board's address on the outside link, and the outside's.
const BOARD: &str = "10.231.0.1";
const OUTSIDE: &str = "10.231.0.2";

struct Board {
    ns: Netns,
    outside: Netns,
    root: std::path::PathBuf,
}

impl Board {
    fn new() -> Board {
        require_root();
        let ns = Netns::new("board");
        let outside = Netns::new("out");
        link(&ns, &format!("{BOARD}/24"), &outside, &format!("{OUTSIDE}/24"));
        Board { ns, outside, root: make_temp_dir("berth-net") }
    }

    fn store(&self) -> Store {
        Store::open(&self.root).expect("open network store")
    }

    /// A "container": its own namespace connected to network `net` by berth's code.
    fn container(&self, net: &str, id: &str, ports: &[&str]) -> (Netns, std::net::Ipv4Addr) {
        let c = Netns::new(id);
        let mut reqs = Vec::new();
        for p in ports {
            reqs.extend(ports::parse(p).expect("port spec"));
        }
        let req =
            ConnectRequest { container: format!("{id:0<64}"), name: id.into(), ports: reqs, ifname: "eth0".into(), ..Default::default() };
        let path = c.path();
        let ip = self.ns.run(|| {
            let store = self.store();
            let (_, attach) = store.connect(net, &req).expect("connect");
            let ns = fs::File::open(&path).expect("open container netns");
            let mut host = Netlink::open().expect("netlink");
            let mut inner = Netlink::open_in(ns.as_raw_fd()).expect("netlink in container");
            network::plumb(&mut host, &mut inner, ns.as_raw_fd(), &attach).expect("plumb");
            attach.ip
        });
        (c, ip)
    }

    fn nft_list(&self) -> String {
        let out = self.ns.command("nft").args(["list", "table", "ip", "berth"]).output().expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn create(b: &Board, name: &str, subnet: &str, internal: bool) -> network::Network {
    let req = CreateRequest { name: name.into(), subnet: Some(subnet.into()), internal, ..Default::default() };
    b.ns.run(|| b.store().create(&req, None)).expect("network create")
}

#[test]
fn bridge_nat_published_ports_and_isolation_with_real_packets() {
    let b = Board::new();
    b.ns.run(|| b.store().ensure_default(network::DEFAULT_SUBNET)).expect("default network");
    b.outside.tcp_server("0.0.0.0:9000", "outside");
    b.outside.udp_server("0.0.0.0:9001", "outside-udp");

    let (c1, ip1) = b.container("bridge", "c1", &["8080:80", "5353:53/udp", "127.0.0.1:8181:81"]);
    assert_eq!(ip1.to_string(), "172.17.0.2");
    c1.tcp_server("0.0.0.0:80", "c1");
    c1.tcp_server("0.0.0.0:81", "c1-81");
    c1.udp_server("0.0.0.0:53", "c1-udp");

    // Egress: the outside has no route to 172.17/16, so only masquerading lets the reply back.
    assert_eq!(c1.tcp_get(&format!("{OUTSIDE}:9000")).unwrap(), format!("outside {BOARD}"));
    assert_eq!(c1.udp_get(&format!("{OUTSIDE}:9001")).unwrap(), format!("outside-udp {BOARD}"));

    // Published TCP and UDP, from outside (the container sees the real client).
    assert_eq!(b.outside.tcp_get(&format!("{BOARD}:8080")).unwrap(), format!("c1 {OUTSIDE}"));
    assert!(b.outside.udp_get(&format!("{BOARD}:5353")).unwrap().starts_with("c1-udp "));
    // From the board itself, by its outside address and by loopback.
    assert!(b.ns.tcp_get(&format!("{BOARD}:8080")).unwrap().starts_with("c1 "));
    assert!(b.ns.tcp_get("127.0.0.1:8080").unwrap().starts_with("c1 "));
    assert!(b.ns.tcp_get("127.0.0.1:8181").unwrap().starts_with("c1-81 "));
    // A port published on 127.0.0.1 only is not reachable from outside.
    assert!(b.outside.tcp_get(&format!("{BOARD}:8181")).is_err());

    // A neighbour on the same bridge reaches the published port through the board's address
    // (hairpin), and the container directly.
    let (c2, _) = b.container("bridge", "c2", &[]);
    assert!(c2.tcp_get(&format!("{BOARD}:8080")).unwrap().starts_with("c1 "));
    assert_eq!(c2.tcp_get(&format!("{ip1}:80")).unwrap(), "c1 172.17.0.3");

    // A user network: egress works, the default bridge's containers are out of reach except
    // through published ports.
    create(&b, "apps", "10.77.0.0/24", false);
    let (c3, ip3) = b.container("apps", "c3", &[]);
    assert_eq!(ip3.to_string(), "10.77.0.2");
    assert!(c3.tcp_get(&format!("{OUTSIDE}:9000")).is_ok());
    let e = c3.tcp_get(&format!("{ip1}:80")).unwrap_err();
    assert!(e.contains("connect"), "{e}");
    assert!(c3.tcp_get(&format!("{BOARD}:8080")).unwrap().starts_with("c1 "));
    c3.tcp_server("0.0.0.0:80", "c3");
    assert!(c1.tcp_get(&format!("{ip3}:80")).is_err());

    // An internal network: no egress, no way in from other networks.
    create(&b, "private", "10.78.0.0/24", true);
    let (c4, ip4) = b.container("private", "c4", &[]);
    c4.tcp_server("0.0.0.0:80", "c4");
    assert!(c4.tcp_get(&format!("{OUTSIDE}:9000")).is_err());
    assert!(c1.tcp_get(&format!("{ip4}:80")).is_err());
    // The board itself still reaches it (as Docker's host does).
    assert!(b.ns.tcp_get(&format!("{ip4}:80")).unwrap().starts_with("c4 "));

    // Rebuilding the rules from the records (an agent restart) changes nothing.
    let before = b.nft_list();
    b.ns.run(|| b.store().adopt(&|_| true)).expect("adopt");
    b.ns.run(|| b.store().sync_rules()).expect("sync");
    assert_eq!(b.nft_list(), before);
    assert_eq!(before.matches("dnat to").count(), 3, "{before}");

    // c1 stops: its endpoint, address and rules go; the others stay.
    let c1_id = format!("{:0<64}", "c1");
    b.ns.run(|| b.store().adopt(&|id| id != c1_id)).expect("adopt without c1");
    let after = b.nft_list();
    assert_eq!(after.matches("dnat to").count(), 0, "{after}");
    assert!(b.outside.tcp_get(&format!("{BOARD}:8080")).is_err());
    let default = b.ns.run(|| b.store().get("bridge")).expect("get bridge");
    assert!(!default.pool.allocs.values().any(|h| *h == c1_id));

    // Removal: a network with endpoints is refused; without, bridge, rules and record go.
    let e = b.ns.run(|| b.store().remove("apps")).unwrap_err();
    assert!(e.to_string().contains("active endpoints"), "{e}");
    let c3_id = format!("{:0<64}", "c3");
    b.ns.run(|| b.store().disconnect("apps", &c3_id)).expect("disconnect");
    let apps = b.ns.run(|| b.store().remove("apps")).expect("remove apps");
    let links = String::from_utf8_lossy(&b.ns.command("ip").args(["-o", "link"]).output().expect("ip link").stdout).into_owned();
    assert!(!links.contains(&apps.bridge), "{links}");
    assert!(!links.contains("vbc300000000"), "veth of c3 left: {links}");
    assert!(!b.nft_list().contains("network apps"));
    drop((c1, c2, c3, c4));
}

#[test]
fn bad_network_requests_are_refused_and_leave_nothing() {
    let b = Board::new();
    b.ns.run(|| b.store().ensure_default(network::DEFAULT_SUBNET)).expect("default network");
    create(&b, "one", "10.80.0.0/24", false);
    let try_create = |name: &str, subnet: &str| {
        let req = CreateRequest { name: name.into(), subnet: Some(subnet.into()), ..Default::default() };
        b.ns.run(|| b.store().create(&req, None)).unwrap_err().to_string()
    };
    assert!(try_create("one", "10.81.0.0/24").contains("already exists"));
    assert!(try_create("two", "10.80.0.128/25").contains("overlaps with network one"));
    assert!(try_create("two", "172.16.0.0/12").contains("overlaps with network bridge"));
    // The board's own outside link is a host route.
    assert!(try_create("two", "10.231.0.0/16").contains("host route"));
    assert!(try_create("bad name", "10.82.0.0/24").contains("invalid network name"));
    assert_eq!(b.ns.run(|| b.store().list()).expect("list").len(), 2);

    // Addresses: outside the subnet, taken, and an exhausted pool.
    let small = CreateRequest { name: "small".into(), subnet: Some("10.83.0.0/30".into()), ..Default::default() };
    b.ns.run(|| b.store().create(&small, None)).expect("create small");
    let connect = |id: &str, ip: Option<&str>| {
        let req = ConnectRequest {
            container: id.into(),
            name: id.into(),
            ip: ip.map(|i| i.parse().expect("ip")),
            ifname: "eth0".into(),
            ..Default::default()
        };
        b.ns.run(|| b.store().connect("small", &req)).map(|(_, a)| a.ip)
    };
    assert!(connect("x1", Some("10.9.9.9")).unwrap_err().to_string().contains("does not belong"));
    assert_eq!(connect("x1", None).unwrap().to_string(), "10.83.0.2");
    assert!(connect("x2", Some("10.83.0.2")).unwrap_err().to_string().contains("already in use"));
    assert!(connect("x2", None).unwrap_err().to_string().contains("no available IPv4 addresses"));
    assert!(b.ns.run(|| b.store().connect("nope", &ConnectRequest::default())).unwrap_err().to_string().contains("not found"));

    // A published port that a host process holds, or that another container has.
    let held = std::sync::Arc::new(std::sync::Mutex::new(None));
    let h2 = held.clone();
    b.ns.run(move || *h2.lock().expect("lock") = Some(std::net::TcpListener::bind("0.0.0.0:7070").expect("bind 7070")));
    let with_port = |id: &str, p: &str| {
        let req = ConnectRequest {
            container: id.into(),
            name: id.into(),
            ports: ports::parse(p).expect("spec"),
            ifname: "eth0".into(),
            ..Default::default()
        };
        b.ns.run(|| b.store().connect("bridge", &req)).map(|_| ())
    };
    let e = with_port("p1", "7070:80").unwrap_err().to_string();
    assert!(e.contains("Bind for 0.0.0.0:7070 failed") && e.contains("in use"), "{e}");
    with_port("p1", "7071:80").expect("publish 7071");
    let e = with_port("p2", "127.0.0.1:7071:80").unwrap_err().to_string();
    assert!(e.contains("already allocated"), "{e}");
    // Nothing half-made: p1's failed attempt left no endpoint, p2 holds no address.
    let def = b.ns.run(|| b.store().get("bridge")).expect("get");
    assert_eq!(def.endpoints.keys().collect::<Vec<_>>(), vec!["p1"]);
    assert_eq!(def.pool.allocs.values().collect::<Vec<_>>(), vec!["p1"]);
    drop(held);
}

// ---- The agent in a test-made namespace: the CLI end to end ----

/// A board namespace with an outside one, the agent running in the board's, busybox loaded.
struct AgentBoard {
    ns: Netns,
    outside: Netns,
    agent: Agent,
}

impl AgentBoard {
    fn new() -> AgentBoard {
        require_root();
        let ns = Netns::new("aboard");
        let outside = Netns::new("aout");
        link(&ns, &format!("{BOARD}/24"), &outside, &format!("{OUTSIDE}/24"));
        let root = Root::new();
        root.ok(&["load", "-q", "-i", s(&fixtures().busybox.path)]);
        let agent = Agent::start_in_netns(root, &ns.path(), &[]);
        AgentBoard { ns, outside, agent }
    }

    fn nft_list(&self) -> String {
        let out = self.ns.command("nft").args(["list", "table", "ip", "berth"]).output().expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn links(&self) -> String {
        String::from_utf8_lossy(&self.ns.command("ip").args(["-o", "link"]).output().expect("ip link").stdout).into_owned()
    }

    /// A namespace handle on a running container's network (not deleted on drop).
    fn container_ns(&self, name: &str) -> Netns {
        Netns::of_pid(self.agent.pid_of(name))
    }
}

/// A server in a container: busybox nc answering every connection with `reply`.
fn nc_server(reply: &str) -> Vec<String> {
    ["busybox", "nc", "-ll", "-p", "80", "-e", "echo", reply].iter().map(|s| s.to_string()).collect()
}

#[test]
fn default_bridge_egress_and_published_tcp_and_udp() {
    let b = AgentBoard::new();
    b.outside.tcp_server("0.0.0.0:9000", "outside");
    let a = &b.agent;

    // Egress: the outside has no route back to 172.17/16; only masquerading gets the answer back.
    let out = a.ok(&["run", "--rm", "busybox", "busybox", "nc", "-w", "3", OUTSIDE, "9000"]);
    assert_eq!(out, format!("outside {BOARD}"));

    let mut args = vec!["--name", "web", "-p", "8080:80", "-p", "5353:53/udp", "busybox"];
    let srv = nc_server("web");
    args.extend(srv.iter().map(String::as_str));
    a.run_detached(&args);
    let c = b.container_ns("web");
    c.udp_server("0.0.0.0:53", "web-udp");

    // From outside, from the agent's own namespace (its address and loopback).
    assert_eq!(b.outside.tcp_get(&format!("{BOARD}:8080")).unwrap(), "web\n");
    assert_eq!(b.ns.tcp_get("127.0.0.1:8080").unwrap(), "web\n");
    assert!(b.outside.udp_get(&format!("{BOARD}:5353")).unwrap().starts_with("web-udp "));
    assert!(b.ns.udp_get(&format!("{BOARD}:5353")).unwrap().starts_with("web-udp "));
    // From another container on the bridge, through the published port and directly.
    let ip = a.inspect_f("web", "{{.NetworkSettings.IPAddress}}");
    assert_eq!(ip, "172.17.0.2");
    assert_eq!(a.ok(&["run", "--rm", "busybox", "busybox", "nc", "-w", "3", BOARD, "8080"]), "web\n");
    assert_eq!(a.ok(&["run", "--rm", "busybox", "busybox", "nc", "-w", "3", &ip, "80"]), "web\n");

    // What Docker shows: inspect, port, ps.
    let v = a.inspect("web");
    let ns = &v["NetworkSettings"];
    assert_eq!(ns["Gateway"], "172.17.0.1");
    assert_eq!(ns["MacAddress"], "02:42:ac:11:00:02");
    assert_eq!(ns["Ports"]["80/tcp"][0]["HostPort"], "8080");
    assert_eq!(ns["Ports"]["80/tcp"][0]["HostIp"], "0.0.0.0");
    assert_eq!(ns["Networks"]["bridge"]["IPAddress"], "172.17.0.2");
    assert_eq!(ns["Networks"]["bridge"]["IPPrefixLen"], 16);
    assert_eq!(v["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(v["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"], "8080");
    let port = a.ok(&["port", "web"]);
    assert!(port.lines().any(|l| l == "80/tcp -> 0.0.0.0:8080"), "{port}");
    assert!(port.lines().any(|l| l == "53/udp -> 0.0.0.0:5353"), "{port}");
    assert_eq!(a.ok(&["port", "web", "80"]).trim(), "0.0.0.0:8080");
    let ps = a.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");

    // Removal takes the rules and the veth with it.
    a.ok(&["rm", "-f", "web"]);
    assert!(!b.nft_list().contains("dnat to"), "{}", b.nft_list());
    assert!(b.outside.tcp_get(&format!("{BOARD}:8080")).is_err());
    assert!(!b.links().contains("vb"), "{}", b.links());
}

#[test]
fn user_networks_isolation_internal_and_the_network_cli() {
    let b = AgentBoard::new();
    b.outside.tcp_server("0.0.0.0:9000", "outside");
    let a = &b.agent;
    let id = a.ok(&["network", "create", "apps"]).trim().to_string();
    assert!(berth_tests::is_hex64(&id), "{id}");
    a.ok(&["network", "create", "--subnet", "10.90.0.0/24", "--internal", "--label", "k=v", "priv"]);
    let ls = a.ok(&["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID"), "{ls}");
    for n in ["bridge", "apps", "priv"] {
        assert!(ls.lines().any(|l| l.split_whitespace().nth(1) == Some(n)), "{ls}");
    }
    assert!(a.ok(&["network", "ls", "-q"]).lines().any(|l| id.starts_with(l)));
    let f = a.ok(&["network", "ls", "--filter", "name=pri", "--format", "{{.Name}}"]);
    assert_eq!(f.trim(), "priv");
    // A `table` template gets Docker's column titles, aligned as its tabwriter aligns them.
    let t = a.ok(&["network", "ls", "--filter", "name=pri", "--format", "table {{.Name}}\t{{.Internal}}"]);
    assert_eq!(t, "NAME      INTERNAL\npriv      true\n", "{t:?}");
    let insp: serde_json::Value = serde_json::from_str(&a.ok(&["network", "inspect", "apps"])).expect("inspect json");
    assert_eq!(insp[0]["Name"], "apps");
    assert_eq!(insp[0]["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16");
    assert_eq!(insp[0]["Driver"], "bridge");

    let mut args = vec!["--name", "a1", "--network", "apps", "busybox"];
    let srv = nc_server("a1");
    args.extend(srv.iter().map(String::as_str));
    a.run_detached(&args);
    let a1 = a.inspect_f("a1", "{{.NetworkSettings.Networks.apps.IPAddress}}");
    assert_eq!(a1, "172.18.0.2");
    // Same network: reachable, and egress works.
    assert_eq!(a.ok(&["run", "--rm", "--network", "apps", "busybox", "busybox", "nc", "-w", "3", &a1, "80"]), "a1\n");
    assert_eq!(
        a.ok(&["run", "--rm", "--network", "apps", "busybox", "busybox", "nc", "-w", "3", OUTSIDE, "9000"]),
        format!("outside {BOARD}")
    );
    // The default bridge cannot reach it, nor can the internal network; the internal network
    // has no egress.
    let (code, _, _) = a.code(&["run", "--rm", "busybox", "busybox", "nc", "-w", "2", &a1, "80"]);
    assert_ne!(code, 0, "bridge reached apps");
    let (code, out, _) = a.code(&["run", "--rm", "--network", "priv", "busybox", "busybox", "nc", "-w", "2", OUTSIDE, "9000"]);
    assert!(code != 0 || out.is_empty(), "internal network reached outside: {out}");

    // connect / disconnect a running container.
    a.run_detached(&["--name", "b1", "busybox", "sleep", "60"]);
    a.ok(&["network", "connect", "--alias", "bee", "apps", "b1"]);
    let v = a.inspect("b1");
    assert!(v["NetworkSettings"]["Networks"]["apps"]["IPAddress"].as_str().unwrap_or("").starts_with("172.18.0."), "{v}");
    assert_eq!(a.ok(&["exec", "b1", "busybox", "nc", "-w", "3", &a1, "80"]), "a1\n");
    let insp: serde_json::Value = serde_json::from_str(&a.ok(&["network", "inspect", "apps"])).expect("inspect json");
    assert_eq!(insp[0]["Containers"].as_object().map(|m| m.len()), Some(2));
    a.ok(&["network", "disconnect", "apps", "b1"]);
    let (code, _, _) = a.code(&["exec", "b1", "busybox", "nc", "-w", "2", &a1, "80"]);
    assert_ne!(code, 0);

    // rm of a network in use is refused; once free it goes with its bridge and rules.
    let (code, _, err) = a.code(&["network", "rm", "apps"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("active endpoints"), "{err}");
    a.ok(&["rm", "-f", "a1", "b1"]);
    a.ok(&["network", "rm", "apps", "priv"]);
    let ls = a.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls.trim(), "bridge");
    assert!(!b.links().contains("br-"), "{}", b.links());
    assert!(!b.nft_list().contains("network apps"));
    let pruned = a.ok(&["network", "prune", "-f"]);
    assert!(!pruned.contains("bridge"), "{pruned}");

    // Events of the network's life.
    let ev = a.ok(&["events", "--since", "0", "--until", &format!("{}", now_secs() + 1), "--filter", "type=network"]);
    for action in ["create", "connect", "disconnect", "destroy"] {
        assert!(ev.contains(&format!("network {action}")), "{action}: {ev}");
    }
}

#[test]
fn network_bad_input() {
    let b = AgentBoard::new();
    let a = &b.agent;
    a.ok(&["network", "create", "--subnet", "10.91.0.0/30", "small"]);
    let refused = |args: &[&str], code: i32, want: &str| {
        let (got, out, err) = a.code(args);
        assert_eq!(got, code, "berth {}: {out} {err}", args.join(" "));
        assert!(err.contains(want), "berth {}: {err}", args.join(" "));
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    };
    refused(&["network", "create", "small"], 1, "already exists");
    refused(&["network", "create", "--subnet", "10.91.0.0/16", "x"], 1, "overlaps");
    refused(&["network", "create", "--subnet", "10.231.0.0/24", "x"], 1, "host route");
    refused(&["network", "create", "--subnet", "nope", "x"], 1, "invalid subnet");
    // A network that a stopped container names is kept unless -f says otherwise.
    a.ok(&["network", "create", "--subnet", "10.92.0.0/24", "held"]);
    a.run_detached(&["--name", "h1", "--net", "held", "busybox", "true"]);
    a.wait_status("h1", "exited", std::time::Duration::from_secs(10));
    refused(&["network", "rm", "held"], 1, "used by stopped container h1");
    a.ok(&["network", "rm", "-f", "held"]);
    a.ok(&["rm", "h1"]);
    // IPv6 networks are refused as not supported yet, before anything is made.
    refused(&["network", "create", "--ipv6", "v6"], 1, "IPv6 networks are not supported yet");
    refused(&["network", "create", "--subnet", "fd00:1::/64", "v6"], 1, "IPv6 networks are not supported yet");
    assert!(!a.ok(&["network", "ls", "--format", "{{.Name}}"]).lines().any(|l| l == "v6"));
    refused(&["run", "--rm", "--net", "nosuch", "busybox", "true"], 125, "network nosuch not found");
    refused(&["run", "--rm", "-p", "x:80", "busybox", "true"], 125, "invalid hostPort");
    refused(&["run", "--rm", "-p", "80-82:90-91", "busybox", "true"], 125, "invalid ranges");
    refused(&["run", "--rm", "--net", "none", "-p", "80", "busybox", "true"], 125, "conflicting options");
    refused(&["run", "--rm", "--net", "small", "--ip", "10.9.9.9", "busybox", "true"], 125, "does not belong");
    refused(
        &["run", "--rm", "--ip", "172.17.0.9", "busybox", "true"],
        125,
        "user specified IP address is supported on user defined networks only",
    );
    // A port a host process holds, then one another container has.
    let _held = b.ns.run(|| std::net::TcpListener::bind("0.0.0.0:7070").expect("bind 7070"));
    refused(&["run", "-d", "-p", "7070:80", "busybox", "sleep", "30"], 125, "Bind for 0.0.0.0:7070 failed");
    a.run_detached(&["--name", "p1", "-p", "7071:80", "busybox", "sleep", "60"]);
    refused(&["run", "-d", "-p", "7071:80", "busybox", "sleep", "30"], 125, "port is already allocated");
    // The pool of a /30 has one address: the second container finds it exhausted, and a taken
    // --ip is refused.
    a.run_detached(&["--name", "s1", "--net", "small", "busybox", "sleep", "60"]);
    refused(&["run", "-d", "--net", "small", "busybox", "sleep", "30"], 125, "no available IPv4 addresses");
    refused(&["run", "-d", "--net", "small", "--ip", "10.91.0.2", "busybox", "sleep", "30"], 125, "already in use");
    // --net host with -p: Docker's warning, and the container runs.
    let (code, _, err) = a.code(&["run", "--rm", "--net", "host", "-p", "80", "busybox", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Published ports are discarded when using host network mode"), "{err}");
    // Nothing half-made: only p1's and s1's containers exist and hold addresses.
    let ps = a.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = ps.lines().collect();
    names.sort();
    assert_eq!(names, vec!["p1", "s1"], "{ps}");
    a.ok(&["rm", "-f", "p1", "s1"]);
    a.ok(&["network", "rm", "small"]);
}

#[test]
fn agent_kill9_and_restart_keeps_ports_and_adds_no_rules() {
    let b = AgentBoard::new();
    let mut args = vec!["--name", "web", "--restart", "always", "-p", "8080:80", "busybox"];
    let srv = nc_server("web");
    args.extend(srv.iter().map(String::as_str));
    b.agent.run_detached(&args);
    b.agent.ok(&["network", "create", "apps"]);
    let before = b.nft_list();
    assert_eq!(before.matches("dnat to").count(), 1, "{before}");
    let mut agent = b.agent;
    agent.kill9();
    agent.restart();
    let after = {
        let out = b.ns.command("nft").args(["list", "table", "ip", "berth"]).output().expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(after, before);
    assert_eq!(b.outside.tcp_get(&format!("{BOARD}:8080")).unwrap(), "web\n");
    let links = String::from_utf8_lossy(&b.ns.command("ip").args(["-o", "link"]).output().expect("ip").stdout).into_owned();
    assert_eq!(links.matches("berth0").count(), 2, "{links}"); // the bridge, and the veth's master
    agent.ok(&["rm", "-f", "web"]);
    agent.ok(&["network", "rm", "apps"]);
}

/// `nslookup NAME` from a new container with `args` (network, --dns); its output, whatever the
/// exit status (busybox nslookup exits 1 when one of its A/AAAA questions has no answer).
fn nslookup(a: &Agent, args: &[&str], name: &str) -> String {
    let mut v = vec!["run", "--rm"];
    v.extend_from_slice(args);
    v.extend(["busybox", "busybox", "nslookup", name]);
    let (_, out, err) = a.code(&v);
    format!("{out}{err}")
}

/// The address lines of an nslookup answer (after its `Name:` line; not the server's).
fn answers(out: &str) -> Vec<String> {
    out.split_once("Name:")
        .map(|(_, rest)| rest.lines().filter_map(|l| l.strip_prefix("Address:")).map(|a| a.trim().to_string()).collect())
        .unwrap_or_default()
}

/// The stand-in resolver in the outside namespace knows this name only.
const OUTSIDE_NAME: &str = "outside.example";
const OUTSIDE_NAME_ADDR: [u8; 4] = [198, 51, 100, 7];

#[test]
fn user_network_names_aliases_and_forwarding_through_the_agents_dns() {
    let b = AgentBoard::new();
    let asked = b.outside.dns_server(&format!("{OUTSIDE}:53"), OUTSIDE_NAME, OUTSIDE_NAME_ADDR);
    let a = &b.agent;
    a.ok(&["network", "create", "apps"]);
    let mut args = vec!["--name", "web", "--network", "apps", "--network-alias", "www", "busybox"];
    let srv = nc_server("web");
    args.extend(srv.iter().map(String::as_str));
    let id = a.run_detached(&args);
    let ip = a.inspect_f("web", "{{.NetworkSettings.Networks.apps.IPAddress}}");
    let gw = a.inspect_f("web", "{{.NetworkSettings.Networks.apps.Gateway}}");
    // The container's resolv.conf names the network's responder, on its gateway.
    let resolv = a.ok(&["exec", "web", "cat", "/etc/resolv.conf"]);
    assert!(resolv.lines().any(|l| l == format!("nameserver {gw}")), "{resolv}");
    // By name, by alias, by short id; an outside name goes to the container's --dns resolver
    // (the stand-in in the outside namespace), as Docker's embedded DNS forwards it.
    // No search list (`--dns-search .`): the questions are the names asked, whatever the host's
    // resolv.conf searches.
    let on = ["--network", "apps", "--dns", OUTSIDE, "--dns-search", "."];
    for name in ["web", "www", "WEB", &id[..12]] {
        let out = nslookup(a, &on, name);
        assert_eq!(answers(&out), vec![ip.clone()], "{name}: {out}");
    }
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0, "member names were forwarded");
    let out = nslookup(a, &on, OUTSIDE_NAME);
    assert_eq!(answers(&out), vec!["198.51.100.7".to_string()], "{out}");
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let out = nslookup(a, &on, "nosuch.example");
    assert!(answers(&out).is_empty(), "{out}");
    // A restart gives the container a new address only if another took its old one; its peers
    // see whatever it has at once.
    a.ok(&["stop", "-t", "1", "web"]);
    a.run_detached(&["--name", "taker", "--network", "apps", "busybox", "sleep", "60"]);
    a.ok(&["start", "web"]);
    let ip2 = a.inspect_f("web", "{{.NetworkSettings.Networks.apps.IPAddress}}");
    assert_ne!(ip2, ip);
    assert_eq!(answers(&nslookup(a, &on, "www")), vec![ip2.clone()]);
    // The name answers connections: nc resolves it through the responder too.
    assert_eq!(a.ok(&["run", "--rm", "--network", "apps", "busybox", "busybox", "nc", "-w", "3", "www", "80"]), "web\n");
    a.ok(&["rm", "-f", "web", "taker"]);
    a.ok(&["network", "rm", "apps"]);
}

#[test]
fn default_bridge_has_no_names_but_links_write_hosts_and_env() {
    let b = AgentBoard::new();
    let _asked = b.outside.dns_server(&format!("{OUTSIDE}:53"), OUTSIDE_NAME, OUTSIDE_NAME_ADDR);
    let a = &b.agent;
    let mut args = vec!["--name", "db", "--hostname", "dbhost", "-e", "SECRET=x", "busybox"];
    let srv = nc_server("db");
    args.extend(srv.iter().map(String::as_str));
    a.run_detached(&args);
    let ip = a.inspect_f("db", "{{.NetworkSettings.IPAddress}}");
    // No embedded DNS on the default bridge (as Docker's): --dns goes into resolv.conf as is,
    // and that resolver does not know the container.
    let resolv = a.ok(&["run", "--rm", "--dns", OUTSIDE, "busybox", "cat", "/etc/resolv.conf"]);
    assert!(resolv.lines().any(|l| l == format!("nameserver {OUTSIDE}")), "{resolv}");
    assert!(!resolv.contains("172.17.0.1"), "{resolv}");
    let out = nslookup(a, &["--dns", OUTSIDE, "--dns-search", "."], "db");
    assert!(answers(&out).is_empty(), "db resolved on the default bridge: {out}");
    // --link: a hosts line (alias, host name, name) and Docker's environment variables.
    let hosts = a.ok(&["run", "--rm", "--link", "db:dbalias", "busybox", "cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|l| l == format!("{ip}\tdbalias dbhost db")), "{hosts}");
    let env = a.ok(&["run", "--rm", "--name", "app", "--link", "db:dbalias", "busybox", "env"]);
    assert!(env.lines().any(|l| l == "DBALIAS_NAME=/app/dbalias"), "{env}");
    assert!(env.lines().any(|l| l == "DBALIAS_ENV_SECRET=x"), "{env}");
    // The linked name connects.
    assert_eq!(a.ok(&["run", "--rm", "--link", "db:dbalias", "busybox", "busybox", "nc", "-w", "3", "dbalias", "80"]), "db\n");
    // A link to a container that is not running is refused.
    a.run_detached(&["--name", "off", "busybox", "true"]);
    a.wait_status("off", "exited", std::time::Duration::from_secs(10));
    let (code, _, err) = a.code(&["run", "--rm", "--link", "off", "busybox", "true"]);
    assert_ne!(code, 0, "{err}");
    a.ok(&["rm", "-f", "db", "off"]);
}

/// Rules that publish a port (`dnat to`) in berth's table, in the agent's namespace.
fn dnat_rules(b: &AgentBoard) -> usize {
    b.nft_list().matches("dnat to").count()
}

#[test]
fn publish_all_port_and_rules_gone_when_the_container_stops() {
    let b = AgentBoard::new();
    let a = &b.agent;
    // An image that EXPOSEs a TCP and a UDP port.
    a.run_detached(&["--name", "base", "busybox", "sleep", "60"]);
    a.ok(&["commit", "-c", "EXPOSE 80", "-c", "EXPOSE 53/udp", "base", "exposed:1"]);
    a.ok(&["rm", "-f", "base"]);
    let mut args = vec!["--name", "pa", "-P", "exposed:1"];
    let srv = nc_server("pa");
    args.extend(srv.iter().map(String::as_str));
    a.run_detached(&args);
    b.container_ns("pa").udp_server("0.0.0.0:53", "pa-udp");
    let port = a.ok(&["port", "pa"]);
    let host_port = |spec: &str| -> u16 {
        let line = port.lines().find(|l| l.starts_with(&format!("{spec} -> 0.0.0.0:"))).unwrap_or_else(|| panic!("{spec}: {port}"));
        let p: u16 = line.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line}"));
        assert!((32768..=60999).contains(&p), "{line}: not an ephemeral port");
        p
    };
    let (tcp, udp) = (host_port("80/tcp"), host_port("53/udp"));
    assert_eq!(port.lines().count(), 2, "{port}");
    assert_eq!(a.ok(&["port", "pa", "53/udp"]).trim(), format!("0.0.0.0:{udp}"));
    assert_eq!(a.inspect_f("pa", "{{.HostConfig.PublishAllPorts}}"), "true");
    // Reached from outside, from the agent's namespace over loopback, and by the container
    // itself through its own published port (hairpin).
    assert_eq!(b.outside.tcp_get(&format!("{BOARD}:{tcp}")).unwrap(), "pa\n");
    assert!(b.outside.udp_get(&format!("{BOARD}:{udp}")).unwrap().starts_with("pa-udp "));
    assert_eq!(b.ns.tcp_get(&format!("127.0.0.1:{tcp}")).unwrap(), "pa\n");
    assert_eq!(a.ok(&["exec", "pa", "busybox", "nc", "-w", "3", BOARD, &tcp.to_string()]), "pa\n");
    assert_eq!(dnat_rules(&b), 2, "{}", b.nft_list());
    // Stopped: its rules go (counted in the agent's namespace), the port answers no more.
    a.ok(&["stop", "-t", "1", "pa"]);
    assert_eq!(dnat_rules(&b), 0, "{}", b.nft_list());
    assert!(b.outside.tcp_get(&format!("{BOARD}:{tcp}")).is_err());
    assert_eq!(a.ok(&["port", "pa"]), "");
    // Started again: published again.
    a.ok(&["start", "pa"]);
    assert_eq!(dnat_rules(&b), 2, "{}", b.nft_list());
    let port = a.ok(&["port", "pa", "80"]);
    assert_eq!(b.outside.tcp_get(&format!("{BOARD}:{}", port.trim().rsplit(':').next().unwrap_or(""))).unwrap(), "pa\n");
    a.ok(&["rm", "-f", "pa"]);
    assert_eq!(dnat_rules(&b), 0, "{}", b.nft_list());
}

#[test]
fn connect_and_disconnect_edit_hosts_and_resolv_conf() {
    let b = AgentBoard::new();
    let a = &b.agent;
    a.ok(&["network", "create", "--subnet", "10.77.0.0/24", "apps"]);
    a.run_detached(&["--name", "peer", "--network", "apps", "busybox", "sleep", "60"]);
    a.run_detached(&["--name", "c1", "--hostname", "c1host", "busybox", "sleep", "60"]);
    let bridge_ip = a.inspect_f("c1", "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    let resolv0 = a.ok(&["exec", "c1", "cat", "/etc/resolv.conf"]);
    assert!(!resolv0.contains("nameserver 10.77.0.1"), "{resolv0}");

    a.ok(&["network", "connect", "--alias", "see", "apps", "c1"]);
    let ip = a.inspect_f("c1", "{{.NetworkSettings.Networks.apps.IPAddress}}");
    assert!(ip.starts_with("10.77.0."), "{ip}");
    assert_eq!(a.inspect_f("c1", "{{.NetworkSettings.Networks.apps.Gateway}}"), "10.77.0.1");
    let hosts = a.ok(&["exec", "c1", "cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|l| l == format!("{bridge_ip}\tc1host")), "{hosts}");
    assert!(hosts.lines().any(|l| l == format!("{ip}\tc1host")), "{hosts}");
    // Now on a user network: the embedded DNS, which knows the peers on it.
    let resolv = a.ok(&["exec", "c1", "cat", "/etc/resolv.conf"]);
    assert!(resolv.lines().any(|l| l == "nameserver 10.77.0.1"), "{resolv}");
    let peer = a.inspect_f("peer", "{{.NetworkSettings.Networks.apps.IPAddress}}");
    let (_, out, err) = a.code(&["exec", "c1", "busybox", "nslookup", "peer"]);
    assert_eq!(answers(&out), vec![peer], "{out}{err}");
    let (_, out, err) = a.code(&["exec", "peer", "busybox", "nslookup", "see"]);
    assert_eq!(answers(&out), vec![ip.clone()], "{out}{err}");

    a.ok(&["network", "disconnect", "apps", "c1"]);
    let hosts = a.ok(&["exec", "c1", "cat", "/etc/hosts"]);
    assert!(!hosts.contains(&ip), "{hosts}");
    assert!(hosts.lines().any(|l| l == format!("{bridge_ip}\tc1host")), "{hosts}");
    let resolv = a.ok(&["exec", "c1", "cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, resolv0);
    assert_eq!(a.inspect_f("c1", "{{len .NetworkSettings.Networks}}"), "1");
    // Connected while stopped: the next start joins both networks, a hosts line for each.
    a.ok(&["stop", "-t", "1", "c1"]);
    a.ok(&["network", "connect", "apps", "c1"]);
    a.ok(&["start", "c1"]);
    let ip = a.inspect_f("c1", "{{.NetworkSettings.Networks.apps.IPAddress}}");
    let bridge_ip = a.inspect_f("c1", "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    let hosts = a.ok(&["exec", "c1", "cat", "/etc/hosts"]);
    for want in [&bridge_ip, &ip] {
        assert!(hosts.lines().any(|l| l == format!("{want}\tc1host")), "{want}: {hosts}");
    }
    a.ok(&["rm", "-f", "c1", "peer"]);
    a.ok(&["network", "rm", "apps"]);
}

// ---- kill -9 of the agent inside a network change ----

const STEP_ENV: &str = "BERTH_NET_STEP_DELAY_MS";

/// Runs `berth ARGS` in the background, waits until the agent says it reached `step` (written
/// to disk, paused by `BERTH_NET_STEP_DELAY_MS`), kills the agent with SIGKILL there, then
/// starts it again without the pause.
fn kill9_at(a: &mut Agent, step: &str, args: &[&str]) {
    let mark = format!("net step: {step}");
    let before = a.log().matches(&mark).count();
    let mut cli = a
        .command(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn berth");
    poll(&format!("the agent at {mark:?} (berth {})", args.join(" ")), std::time::Duration::from_secs(60), || {
        (a.log().matches(&mark).count() > before).then_some(())
    });
    a.kill9();
    let _ = cli.wait();
    a.set_agent_env(STEP_ENV, None);
    a.restart();
}

/// The agent again, with the pause at every network step from now on.
fn restart_with_pauses(a: &mut Agent) {
    a.kill9();
    a.set_agent_env(STEP_ENV, Some("3000"));
    a.restart();
}

/// Nothing of a container left on the default bridge: no endpoint or address lease in its
/// record, no published-port rule, no veth.
fn no_leftovers(b: &AgentBoard, when: &str) {
    let store = Store::open(b.agent.root().path()).expect("network store");
    let bridge = store.get("bridge").expect("the default network");
    assert!(bridge.endpoints.is_empty(), "{when}: endpoints left: {:?}", bridge.endpoints);
    assert!(bridge.pool.allocs.is_empty(), "{when}: address leases left: {:?}", bridge.pool.allocs);
    assert_eq!(dnat_rules(b), 0, "{when}: {}", b.nft_list());
    assert!(!b.links().contains(" vb"), "{when}: {}", b.links());
}

#[test]
fn agent_kill9_inside_network_create_run_p_and_rm_leaves_nothing_half_made() {
    let mut b = AgentBoard::new();
    // network create: killed after its record, or after its bridge: after the restart the
    // network is whole (listed, bridge up with its gateway, rules) and goes whole.
    for step in ["create: record written", "create: bridge made"] {
        restart_with_pauses(&mut b.agent);
        kill9_at(&mut b.agent, step, &["network", "create", "--subnet", "10.78.0.0/24", "apps"]);
        let id = b.agent.ok(&["network", "inspect", "-f", "{{.Id}}", "apps"]).trim().to_string();
        let br = format!("br-{}", &id[..12]);
        let addr =
            String::from_utf8_lossy(&b.ns.command("ip").args(["-o", "addr", "show", "dev", &br]).output().expect("ip").stdout).into_owned();
        assert!(addr.contains("10.78.0.1/24"), "{step}: {addr}");
        assert!(b.links().contains(&format!("{br}:")) && b.links().contains("UP"), "{step}: {}", b.links());
        assert!(b.nft_list().contains("network apps"), "{step}: {}", b.nft_list());
        b.agent.ok(&["run", "--rm", "--network", "apps", "busybox", "true"]);
        b.agent.ok(&["network", "rm", "apps"]);
        assert!(!b.links().contains(&br), "{step}: {}", b.links());
        assert!(!b.nft_list().contains("network apps"), "{step}: {}", b.nft_list());
    }
    // run -p: killed after the endpoint was written, or after its rules: the container never
    // ran, so its endpoint, address and rule are gone after the restart.
    let srv = nc_server("web");
    for (i, step) in ["connect: endpoint written", "connect: rules made"].iter().enumerate() {
        restart_with_pauses(&mut b.agent);
        let name = format!("cut{i}");
        let mut args = vec!["run", "-d", "--name", &name, "-p", "8080:80", "busybox"];
        args.extend(srv.iter().map(String::as_str));
        kill9_at(&mut b.agent, step, &args);
        no_leftovers(&b, &format!("kill -9 at {step}"));
        let _ = b.agent.code(&["rm", "-f", &name]);
    }
    // A re-run publishes the same port.
    let mut args = vec!["--name", "web", "-p", "8080:80", "busybox"];
    args.extend(srv.iter().map(String::as_str));
    b.agent.run_detached(&args);
    assert_eq!(b.outside.tcp_get(&format!("{BOARD}:8080")).unwrap(), "web\n");
    // A restart under pauses keeps it published (nothing doubled).
    restart_with_pauses(&mut b.agent);
    assert_eq!(dnat_rules(&b), 1, "{}", b.nft_list());
    assert_eq!(b.outside.tcp_get(&format!("{BOARD}:8080")).unwrap(), "web\n");
    // rm -f with a published port: killed after its endpoint went, before its rules did.
    kill9_at(&mut b.agent, "disconnect: endpoint removed", &["rm", "-f", "web"]);
    no_leftovers(&b, "kill -9 inside rm -f");
    assert!(b.outside.tcp_get(&format!("{BOARD}:8080")).is_err());
    let _ = b.agent.code(&["rm", "-f", "web"]);
    let mut args = vec!["--name", "web2", "-p", "8080:80", "busybox"];
    let srv2 = nc_server("web2");
    args.extend(srv2.iter().map(String::as_str));
    b.agent.run_detached(&args);
    assert_eq!(b.outside.tcp_get(&format!("{BOARD}:8080")).unwrap(), "web2\n");
    b.agent.ok(&["rm", "-f", "web2"]);
    no_leftovers(&b, "after rm -f web2");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[test]
fn build_with_network_bridge_runs_its_steps_on_the_default_bridge() {
    let b = AgentBoard::new();
    b.outside.tcp_server("0.0.0.0:9000", "outside");
    let ctx = b.agent.root().scratch().join("netctx");
    std::fs::create_dir_all(&ctx).expect("mkdir context");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nRUN busybox ip -4 -o addr show eth0 > /addr && busybox nc -w 3 {OUTSIDE} 9000 > /got\n"),
    )
    .expect("write Dockerfile");
    b.agent.ok(&["build", "-q", "--network", "bridge", "-t", "netbuild:1", s(&ctx)]);
    let addr = b.agent.ok(&["run", "--rm", "--network", "none", "netbuild:1", "cat", "/addr"]);
    assert!(addr.contains("inet 172.17."), "the RUN step had an address on the default bridge: {addr}");
    let got = b.agent.ok(&["run", "--rm", "--network", "none", "netbuild:1", "cat", "/got"]);
    assert_eq!(got.trim(), format!("outside {BOARD}"), "the RUN step reached the outside through the bridge's masquerade");
    let (code, _, err) = b.agent.code(&["build", "--network", "container:x", s(&ctx)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not supported for build"), "{err}");
}
