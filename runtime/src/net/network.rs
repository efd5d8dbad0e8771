//! Bridge networks: the record of each network (`<root>/networks/<id>.json`), the bridge device
//! behind it, and the endpoints of the containers running on it (address, MAC, aliases,
//! published ports). An endpoint exists while its container runs, as Docker's: the container's
//! spec keeps what it asked for (`--ip`, `-p`, aliases) and every start connects it again.
//!
//! Every change is written to the record first (atomically), then made in the kernel, and the
//! netfilter table is rebuilt whole from all records (`nft`), so an agent killed between two
//! steps finds on restart what it needs to finish or undo: `adopt` re-creates missing bridges,
//! drops the endpoints of containers that no longer run and rebuilds the rules once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::net::ipam::{self, Pool, Subnet};
use crate::net::netlink::{LinkChange, Netlink};
use crate::net::nft;
use crate::net::ports::{PortRequest, Proto, Published};

/// The default network's name and interface, and Docker's default subnet.
pub const DEFAULT_NETWORK: &str = "bridge";
pub const DEFAULT_BRIDGE: &str = "berth0";
pub const DEFAULT_SUBNET: &str = "172.17.0.0/16";
/// Docker's option naming a user network's bridge device.
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// Where random host ports come from (Linux's default ephemeral range, as Docker's).
const EPHEMERAL: (u16, u16) = (32768, 60999);

/// A container on a network, while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The container's name (without Docker's leading `/`), for DNS and `inspect`.
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub aliases: Vec<String>,
    pub ports: Vec<Published>,
    /// The interface name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub driver: String,
    pub bridge: String,
    pub pool: Pool,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// RFC 3339, as `docker network inspect` shows it.
    pub created: String,
    /// Running containers by id.
    pub endpoints: BTreeMap<String, Endpoint>,
}

impl Network {
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// What `connect` asks for on one network.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    pub container: String,
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
    pub aliases: Vec<String>,
    pub ports: Vec<PortRequest>,
    pub ifname: String,
}

/// What the container's side of an endpoint needs, handed to the process setup: made in the
/// monitor between the new network namespace and the container's exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    pub bridge: String,
    pub host_if: String,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route's gateway (none for `--internal` networks or a second network).
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
}

/// The host end of a container's veth: `vb` + 10 hex digits of the container id + the index of
/// the interface inside; unique, within IFNAMSIZ, and recognisably berth's.
pub fn host_ifname(container: &str, ifname: &str) -> String {
    let idx = ifname.trim_start_matches("eth");
    format!("vb{}{}", &container[..10.min(container.len())], idx)
}

/// Docker's rule for network names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::invalid(format!("invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
    }
    Ok(())
}

/// Fault injection (tests/tests/networks.rs): with `BERTH_NET_STEP_DELAY_MS` set, each step of
/// a network change that is already on disk says so on stderr (`net step: NAME`) and pauses
/// there, so a test can `kill -9` the agent inside a chosen window and check what a restart finds.
fn fault_step(name: &str) {
    let Some(ms) = std::env::var("BERTH_NET_STEP_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0) else {
        return;
    };
    eprintln!("net step: {name}");
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

fn random_id() -> Result<String> {
    crate::random::hex(32).ctx(|| "random network id".into())
}

/// The network records under `<root>/networks`.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        let dir = root.join("networks");
        fs::create_dir_all(&dir).ctx_path("create", &dir)?;
        Ok(Store { dir })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Every network, the default one first, then by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).ctx_path("read", &self.dir)? {
            let p = e.ctx_path("read", &self.dir)?.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let data = fs::read(&p).ctx_path("read", &p)?;
            let n: Network = serde_json::from_slice(&data).map_err(|e| Error::invalid(format!("network record {}: {e}", p.display())))?;
            out.push(n);
        }
        out.sort_by(|a, b| (!a.is_default(), &a.name).cmp(&(!b.is_default(), &b.name)));
        Ok(out)
    }

    /// A network by name, full id or unique id prefix, as Docker resolves them.
    pub fn get(&self, key: &str) -> Result<Network> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&Network> = all.iter().filter(|n| !key.is_empty() && n.id.starts_with(key)).collect();
        match by_prefix.as_slice() {
            [n] => Ok((*n).clone()),
            [] => Err(Error::not_found(format!("network {key} not found"))),
            _ => Err(Error::conflict(format!("network {key} is ambiguous ({} matches found)", by_prefix.len()))),
        }
    }

    pub fn save(&self, n: &Network) -> Result<()> {
        let data = serde_json::to_vec_pretty(n).map_err(|e| Error::invalid(format!("encode network {}: {e}", n.name)))?;
        fsutil::atomic_write(&self.path(&n.id), &data)
    }

    fn delete(&self, n: &Network) -> Result<()> {
        let p = self.path(&n.id);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io_at("remove", &p, e)),
            _ => fsutil::fsync_dir(&self.dir),
        }
    }

    /// Rebuilds berth's netfilter table from every record.
    pub fn sync_rules(&self) -> Result<()> {
        let nets = self.list()?;
        if nets.is_empty() {
            return nft::remove();
        }
        let rules: Vec<nft::NetRules> = nets
            .iter()
            .map(|n| nft::NetRules { name: n.name.clone(), bridge: n.bridge.clone(), subnet: n.pool.subnet, internal: n.internal })
            .collect();
        let ports: Vec<nft::PortRules> = nets
            .iter()
            .filter(|n| !n.internal)
            .flat_map(|n| n.endpoints.iter())
            .filter(|(_, e)| !e.ports.is_empty())
            .map(|(id, e)| nft::PortRules { container: id.clone(), ip: e.ip, ports: e.ports.clone() })
            .collect();
        nft::apply(&rules, &ports)
    }

    /// Creates a network: checks, record, bridge, rules. A failure after the record was written
    /// removes what was made.
    pub fn create(&self, req: &CreateRequest, bridge_name: Option<&str>) -> Result<Network> {
        validate_name(&req.name)?;
        let driver = req.driver.clone().unwrap_or_else(|| "bridge".into());
        if driver != "bridge" {
            return Err(Error::invalid(format!("network driver {driver:?} is not supported: only bridge")));
        }
        let all = self.list()?;
        if all.iter().any(|n| n.name == req.name) {
            return Err(Error::conflict(format!("network with name {} already exists", req.name)));
        }
        let bridge = bridge_name.map(str::to_string).or_else(|| req.options.get(OPT_BRIDGE_NAME).cloned()).unwrap_or_default();
        if !bridge.is_empty() {
            if bridge.len() > 15 || bridge.contains(['/', ' ']) {
                return Err(Error::invalid(format!("invalid bridge name {bridge:?}: at most 15 characters, no / or space")));
            }
            if let Some(o) = all.iter().find(|n| n.bridge == bridge) {
                return Err(Error::conflict(format!("bridge {bridge} is already used by network {}", o.name)));
            }
        }
        let host_routes = Netlink::open()?.routes()?;
        let taken: Vec<Subnet> = all.iter().map(|n| n.pool.subnet).collect();
        let subnet = match &req.subnet {
            Some(s) => {
                let s = Subnet::parse(s)?;
                check_overlap(&s, &all, &host_routes)?;
                s
            }
            None => pick_subnet(&taken, &host_routes, &req.name)?,
        };
        let gateway = match &req.gateway {
            Some(g) => Some(g.parse::<Ipv4Addr>().map_err(|_| Error::invalid(format!("invalid gateway address {g:?}")))?),
            None => None,
        };
        let range = req.ip_range.as_deref().map(Subnet::parse).transpose()?;
        let pool = Pool::new(subnet, gateway, range)?;
        let id = random_id()?;
        let bridge = if bridge.is_empty() { format!("br-{}", &id[..12]) } else { bridge };
        let options = req.options.clone();
        let net = Network {
            name: req.name.clone(),
            id,
            driver,
            bridge,
            pool,
            internal: req.internal,
            labels: req.labels.clone(),
            options,
            created: crate::timefmt::rfc3339(crate::timefmt::now()),
            endpoints: BTreeMap::new(),
        };
        self.save(&net)?;
        fault_step("create: record written");
        let made = ensure_bridge(&net).and_then(|()| {
            fault_step("create: bridge made");
            self.sync_rules()
        });
        if let Err(e) = made {
            let _ = Netlink::open().and_then(|mut nl| nl.delete_link(&net.bridge));
            let _ = self.delete(&net);
            let _ = self.sync_rules();
            return Err(e.context(format!("network {}", net.name)));
        }
        Ok(net)
    }

    /// The default `bridge` network with `subnet`, made if missing (at every agent start).
    pub fn ensure_default(&self, subnet: &str) -> Result<Network> {
        match self.get(DEFAULT_NETWORK) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == crate::Kind::NotFound => {
                let mut options = BTreeMap::new();
                options.insert(OPT_BRIDGE_NAME.to_string(), DEFAULT_BRIDGE.to_string());
                let req = CreateRequest { name: DEFAULT_NETWORK.into(), subnet: Some(subnet.into()), options, ..Default::default() };
                self.create(&req, Some(DEFAULT_BRIDGE))
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a network with no running containers: its bridge, its rules, its record.
    pub fn remove(&self, key: &str) -> Result<Network> {
        let net = self.get(key)?;
        if let Some((_, e)) = net.endpoints.iter().next() {
            return Err(Error::conflict(format!(
                "error while removing network: network {} has active endpoints (container {})",
                net.name, e.name
            )));
        }
        // The bridge before the record: an agent killed in between finds the record and makes
        // the bridge again (the network is still there), instead of leaking a bridge.
        Netlink::open()?.delete_link(&net.bridge)?;
        self.delete(&net)?;
        self.sync_rules()?;
        Ok(net)
    }

    /// Connects a container to network `key` in the records: an address, a MAC and its published
    /// ports (host ports chosen and checked free), then the rules. The container's side is made
    /// by `plumb` with the returned `Attach`.
    pub fn connect(&self, key: &str, req: &ConnectRequest) -> Result<(Network, Attach)> {
        let mut net = self.get(key)?;
        if net.endpoints.contains_key(&req.container) {
            let e = &net.endpoints[&req.container];
            return Ok((net.clone(), attach_of(&net, &req.container, e)));
        }
        let ip = net.pool.allocate(&req.container, req.ip, &net.name)?;
        let mac = req.mac.unwrap_or(ipam::mac_for(ip));
        let ports = if net.internal { Vec::new() } else { self.choose_ports(&req.ports, &req.container)? };
        let ep = Endpoint { name: req.name.clone(), ip, mac, aliases: req.aliases.clone(), ports, ifname: req.ifname.clone() };
        net.endpoints.insert(req.container.clone(), ep.clone());
        self.save(&net)?;
        fault_step("connect: endpoint written");
        if let Err(e) = self.sync_rules() {
            let _ = self.disconnect(&net.id, &req.container);
            return Err(e);
        }
        fault_step("connect: rules made");
        let a = attach_of(&net, &req.container, &ep);
        Ok((net, a))
    }

    /// Forgets a container's endpoint (its address back to the pool, its rules gone) and removes
    /// its veth if it is still there. Returns whether it was connected.
    pub fn disconnect(&self, key: &str, container: &str) -> Result<bool> {
        let mut net = self.get(key)?;
        let Some(ep) = net.endpoints.remove(container) else { return Ok(false) };
        net.pool.release(container);
        self.save(&net)?;
        Netlink::open()?.delete_link(&host_ifname(container, &ep.ifname))?;
        self.sync_rules()?;
        Ok(true)
    }

    /// Disconnects a container from every network it is on (it stopped, or is removed).
    pub fn disconnect_all(&self, container: &str) -> Result<()> {
        let mut changed = false;
        for mut net in self.list()? {
            if let Some(ep) = net.endpoints.remove(container) {
                net.pool.release(container);
                self.save(&net)?;
                fault_step("disconnect: endpoint removed");
                if let Ok(mut nl) = Netlink::open() {
                    let _ = nl.delete_link(&host_ifname(container, &ep.ifname));
                }
                changed = true;
            }
        }
        if changed {
            self.sync_rules()?;
        }
        Ok(())
    }

    /// Connects a starting container to every network of its options, in order (`eth0`, `eth1`,
    /// ...; published ports on the first). On failure, what was connected is undone.
    pub fn connect_container(&self, id: &str, name: &str, cfg: &crate::net::config::ContainerNet) -> Result<Vec<Attach>> {
        let mut out = Vec::new();
        for (i, r) in cfg.networks.iter().enumerate() {
            let req = ConnectRequest {
                container: id.to_string(),
                name: name.to_string(),
                ip: r.ip,
                mac: r.mac,
                aliases: r.aliases.clone(),
                ports: if i == 0 { cfg.ports.clone() } else { Vec::new() },
                ifname: format!("eth{i}"),
            };
            match self.connect(&r.name, &req) {
                Ok((_, a)) => out.push(a),
                Err(e) => {
                    let _ = self.disconnect_all(id);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Checks a new container's networks before anything is made: they exist, and a `--ip` is
    /// inside the subnet and free.
    pub fn check_container(&self, cfg: &crate::net::config::ContainerNet) -> Result<()> {
        for r in &cfg.networks {
            let mut n = self.get(&r.name)?;
            if let Some(ip) = r.ip {
                n.pool.allocate("\0check", Some(ip), &n.name)?;
            }
        }
        Ok(())
    }

    /// At agent start: every recorded bridge exists and is up, endpoints of containers that no
    /// longer run (`running` says which do) are dropped, and the rules are rebuilt once.
    pub fn adopt(&self, running: &dyn Fn(&str) -> bool) -> Result<()> {
        for mut net in self.list()? {
            let before = net.endpoints.len();
            net.endpoints.retain(|id, _| running(id));
            let gone: Vec<String> = net.pool.allocs.values().filter(|h| !net.endpoints.contains_key(*h)).cloned().collect();
            for h in gone {
                net.pool.release(&h);
            }
            if net.endpoints.len() != before || net.pool.allocs.len() != net.endpoints.len() {
                self.save(&net)?;
            }
            ensure_bridge(&net).map_err(|e| e.context(format!("network {}", net.name)))?;
        }
        self.sync_rules()
    }

    /// Host ports for `reqs`, none of them published by another container nor bound by a host
    /// process (tried by binding it here, in the agent's namespace).
    fn choose_ports(&self, reqs: &[PortRequest], container: &str) -> Result<Vec<Published>> {
        let mut used: BTreeSet<(Option<Ipv4Addr>, u16, Proto)> = BTreeSet::new();
        for n in self.list()? {
            for (id, e) in &n.endpoints {
                if id != container {
                    used.extend(e.ports.iter().map(|p| (p.host_ip, p.host_port, p.proto)));
                }
            }
        }
        let clash = |used: &BTreeSet<(Option<Ipv4Addr>, u16, Proto)>, ip: Option<Ipv4Addr>, port: u16, proto: Proto| {
            used.iter().any(|(uip, up, upr)| *up == port && *upr == proto && (uip.is_none() || ip.is_none() || *uip == ip))
        };
        let mut out = Vec::new();
        for r in reqs {
            let (lo, hi) = if r.host_ports == (0, 0) { EPHEMERAL } else { r.host_ports };
            let mut chosen = None;
            let mut last_err = None;
            for port in lo..=hi {
                if clash(&used, r.host_ip, port, r.proto) {
                    last_err = Some("port is already allocated".to_string());
                    continue;
                }
                match bindable(r.host_ip, port, r.proto) {
                    Ok(()) => {
                        chosen = Some(port);
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            let Some(port) = chosen else {
                let ip = r.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                let what = if lo == hi { format!("{ip}:{lo}") } else { format!("{ip}:{lo}-{hi}") };
                return Err(Error::conflict(format!("Bind for {what} failed: {}", last_err.unwrap_or_else(|| "no free port".into()))));
            };
            used.insert((r.host_ip, port, r.proto));
            out.push(Published { host_ip: r.host_ip, host_port: port, container_port: r.container_port, proto: r.proto });
        }
        Ok(out)
    }
}

/// Who answers to which name on each network, for the embedded DNS: container names, aliases
/// and short ids of the running members. Rebuilt from the records whenever an endpoint comes or
/// goes, so a restarted container's new address is answered at once.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// network name → (lower-case names, address) of each member.
    by_network: BTreeMap<String, Vec<(Vec<String>, Ipv4Addr)>>,
}

impl Members {
    pub fn from_networks(nets: &[Network]) -> Members {
        let mut by_network = BTreeMap::new();
        for n in nets {
            let members = n
                .endpoints
                .iter()
                .map(|(id, e)| {
                    let mut names = vec![e.name.to_ascii_lowercase(), id[..12.min(id.len())].to_string()];
                    names.extend(e.aliases.iter().map(|a| a.to_ascii_lowercase()));
                    (names, e.ip)
                })
                .collect();
            by_network.insert(n.name.clone(), members);
        }
        Members { by_network }
    }

    /// The addresses of `name` (lower-case) on `network`.
    pub fn addresses(&self, network: &str, name: &str) -> Vec<Ipv4Addr> {
        let name = name.to_ascii_lowercase();
        self.by_network
            .get(network)
            .map_or_else(Vec::new, |m| m.iter().filter(|(names, _)| names.contains(&name)).map(|(_, ip)| *ip).collect())
    }

    /// The names (`<container>.<network>`) of whoever holds `ip` on `network`.
    pub fn names_of(&self, network: &str, ip: Ipv4Addr) -> Vec<String> {
        self.by_network.get(network).map_or_else(Vec::new, |m| {
            m.iter().filter(|(_, a)| *a == ip).filter_map(|(names, _)| names.first()).map(|n| format!("{n}.{network}")).collect()
        })
    }
}

fn attach_of(net: &Network, container: &str, e: &Endpoint) -> Attach {
    Attach {
        bridge: net.bridge.clone(),
        host_if: host_ifname(container, &e.ifname),
        ifname: e.ifname.clone(),
        ip: e.ip,
        prefix: net.pool.subnet.prefix,
        gateway: (!net.internal && e.ifname == "eth0").then_some(net.pool.gateway),
        mac: e.mac,
    }
}

/// Whether a host process holds `port` (a bind here fails with EADDRINUSE).
fn bindable(ip: Option<Ipv4Addr>, port: u16, proto: Proto) -> std::result::Result<(), String> {
    let addr = std::net::SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    let r = match proto {
        Proto::Tcp => std::net::TcpListener::bind(addr).map(drop),
        Proto::Udp => std::net::UdpSocket::bind(addr).map(drop),
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err("address already in use".into()),
        // An address not on this host (yet) cannot be checked; the rule is still made.
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Refuses a subnet that overlaps another network's or a route of the host (other than the
/// default route and berth's own bridges).
pub fn check_overlap(s: &Subnet, nets: &[Network], routes: &[crate::net::netlink::Route]) -> Result<()> {
    if let Some(n) = nets.iter().find(|n| n.pool.subnet.overlaps(s)) {
        return Err(Error::conflict(format!("invalid pool request: subnet {s} overlaps with network {} ({})", n.name, n.pool.subnet)));
    }
    let ours: Vec<Subnet> = nets.iter().map(|n| n.pool.subnet).collect();
    for r in routes.iter().filter(|r| r.prefix > 0) {
        let rs = Subnet { addr: r.dst, prefix: r.prefix };
        if !ours.contains(&rs) && rs.overlaps(s) {
            return Err(Error::conflict(format!("invalid pool request: subnet {s} overlaps with a host route ({rs})")));
        }
    }
    Ok(())
}

/// Docker's order of automatic subnets: 172.17-31.0.0/16, then 192.168.0-240.0/20.
fn pick_subnet(taken: &[Subnet], routes: &[crate::net::netlink::Route], name: &str) -> Result<Subnet> {
    let candidates = (17..=31u8)
        .map(|b| Subnet { addr: Ipv4Addr::new(172, b, 0, 0), prefix: 16 })
        .chain((0..16u8).map(|i| Subnet { addr: Ipv4Addr::new(192, 168, i * 16, 0), prefix: 20 }));
    for c in candidates {
        let busy = taken.iter().any(|t| t.overlaps(&c))
            || routes.iter().filter(|r| r.prefix > 0).any(|r| Subnet { addr: r.dst, prefix: r.prefix }.overlaps(&c));
        if !busy {
            return Ok(c);
        }
    }
    Err(Error::conflict(format!("could not find an available, non-overlapping IPv4 address pool for network {name}")))
}

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    fs::write(path, value).ctx(|| format!("write {path}"))
}

/// The network's bridge exists with its gateway address and is up; forwarding is on.
pub fn ensure_bridge(net: &Network) -> Result<()> {
    let mut nl = Netlink::open()?;
    if nl.index(&net.bridge)?.is_none() {
        nl.create_bridge(&net.bridge).map_err(missing_bridge)?;
        nl.set_link(&net.bridge, &LinkChange { mac: Some(ipam::mac_for(net.pool.gateway)), ..Default::default() })?;
    }
    nl.add_address(&net.bridge, net.pool.gateway, net.pool.subnet.prefix)?;
    nl.set_link(&net.bridge, &LinkChange { up: Some(true), ..Default::default() })?;
    // Ports published on 127.0.0.1 are DNATed to the bridge: packets from loopback addresses
    // may then leave through it (the postrouting rule masquerades them).
    write_sysctl(&format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge), "1")?;
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
}

fn missing_bridge(e: Error) -> Error {
    if e.message().contains("not supported") {
        Error::new(e.kind(), format!("{}: the kernel lacks bridge support (CONFIG_BRIDGE)", e.message()))
    } else {
        e
    }
}

/// Why bridge networks cannot be used, in one line for `run` (exit 125) and the agent's log:
/// the kernel options `berth check` finds missing (`missing`, `CONFIG_` names) when it finds
/// some, and in every case the error met making the default bridge and the way out.
pub fn unavailable(e: &Error, missing: &[String]) -> String {
    let why = match missing {
        [] => e.message().to_string(),
        m => format!("the kernel lacks {} ({})", m.join(" "), e.message()),
    };
    format!("bridge networks are unavailable: {why}; run with --net host, or start the agent with --default-network host")
}

/// Makes the container's side of an endpoint: a veth pair whose host end joins the bridge and
/// whose other end is created directly inside the container's namespace (`netns`) as `ifname`,
/// with its MAC, address, `lo` up and the default route. `host` is a socket in the bridge's
/// namespace, `inner` one in the container's.
pub fn plumb(host: &mut Netlink, inner: &mut Netlink, netns: RawFd, a: &Attach) -> Result<()> {
    // A veth left by an earlier run of this container (its namespace not yet gone).
    host.delete_link(&a.host_if)?;
    host.create_veth(&a.host_if, &a.ifname, Some(netns)).map_err(|e| {
        if e.message().contains("not supported") {
            Error::new(e.kind(), format!("{}: the kernel lacks veth support (CONFIG_VETH)", e.message()))
        } else {
            e
        }
    })?;
    let master = host.index(&a.bridge)?.ok_or_else(|| Error::not_found(format!("bridge {} is missing", a.bridge)))?;
    host.set_link(&a.host_if, &LinkChange { master: Some(master), up: Some(true), ..Default::default() })?;
    host.set_hairpin(&a.host_if)?;
    inner.set_link("lo", &LinkChange { up: Some(true), ..Default::default() })?;
    inner.set_link(&a.ifname, &LinkChange { mac: Some(a.mac), ..Default::default() })?;
    inner.add_address(&a.ifname, a.ip, a.prefix)?;
    inner.set_link(&a.ifname, &LinkChange { up: Some(true), ..Default::default() })?;
    if let Some(gw) = a.gateway {
        inner.add_default_route(&a.ifname, gw)?;
    }
    Ok(())
}

/// `plumb` for a running container (`network connect`): its namespace from `/proc/PID/ns/net`.
pub fn plumb_running(pid: i32, a: &Attach) -> Result<()> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = fs::File::open(&path).ctx(|| format!("open {path}"))?;
    let mut host = Netlink::open()?;
    let mut inner = Netlink::open_in(ns.as_raw_fd())?;
    plumb(&mut host, &mut inner, ns.as_raw_fd(), a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::netlink::Route;

    fn net(name: &str, subnet: &str) -> Network {
        Network {
            name: name.into(),
            id: format!("{name:0<64}"),
            driver: "bridge".into(),
            bridge: format!("br-{name}"),
            pool: Pool::new(Subnet::parse(subnet).unwrap(), None, None).unwrap(),
            internal: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            created: String::new(),
            endpoints: BTreeMap::new(),
        }
    }

    #[test]
    fn overlap_with_networks_and_routes() {
        let nets = [net("a", "172.17.0.0/16")];
        let routes = [
            Route { dst: Ipv4Addr::UNSPECIFIED, prefix: 0 },
            Route { dst: "172.17.0.0".parse().unwrap(), prefix: 16 },
            Route { dst: "10.0.2.0".parse().unwrap(), prefix: 24 },
        ];
        let s = |x| Subnet::parse(x).unwrap();
        assert!(check_overlap(&s("172.17.1.0/24"), &nets, &routes).unwrap_err().to_string().contains("network a"));
        assert!(check_overlap(&s("10.0.0.0/16"), &nets, &routes).unwrap_err().to_string().contains("host route"));
        check_overlap(&s("172.18.0.0/16"), &nets, &routes).unwrap();
        let taken = [s("172.17.0.0/16"), s("172.18.0.0/16")];
        assert_eq!(pick_subnet(&taken, &routes, "x").unwrap(), s("172.19.0.0/16"));
    }

    /// The message a board without bridge support gets, from the kernel's own answer: a link of
    /// a kind no driver provides fails as `bridge` does when CONFIG_BRIDGE is off (EOPNOTSUPP).
    /// Asked in a network namespace of this thread only; nothing is made.
    #[test]
    fn a_kernel_without_the_bridge_driver_gets_a_clear_one_line_error() {
        let err = std::thread::spawn(|| {
            // SAFETY: unshare of this thread's network namespace only (a new, empty one).
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET) needs root");
            let mut nl = Netlink::open().expect("netlink");
            nl.create_link("berthnokind0", "berth-no-such-kind").expect_err("a kind without a driver")
        })
        .join()
        .expect("thread");
        let e = missing_bridge(err);
        assert!(e.message().contains("not supported by this kernel"), "{e}");
        assert!(e.message().contains("CONFIG_BRIDGE"), "{e}");
        let msg = unavailable(&e, &["CONFIG_BRIDGE".to_string(), "CONFIG_NF_TABLES".to_string()]);
        assert!(msg.starts_with("bridge networks are unavailable: the kernel lacks CONFIG_BRIDGE CONFIG_NF_TABLES ("), "{msg}");
        assert!(msg.ends_with("; run with --net host, or start the agent with --default-network host"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(unavailable(&e, &[]).contains("CONFIG_BRIDGE"), "without a kernel config the error still names the option");
    }

    #[test]
    fn names() {
        validate_name("my-net_1.x").unwrap();
        for bad in ["", "-x", "a b", "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(host_ifname("0123456789abcdef", "eth0"), "vb01234567890");
        assert!(host_ifname("0123456789abcdef", "eth12").len() <= 15);
    }
}
