//! The supervisor's part in container networks: the default network, connecting a container as
//! it starts and disconnecting it as it ends, `network` commands on running containers, and the
//! network events.

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;

use berth_runtime::container::record::{self, Record, Status};
use berth_runtime::container::spec::Net;
use berth_runtime::net::config::{ContainerNet, NetworkRef};
use berth_runtime::net::dns::Lookup;
use berth_runtime::net::files::{self, AddHost, DnsFlags, Hosts, Link, Resolver};
use berth_runtime::net::network::{self, Attach, ConnectRequest, CreateRequest, Members, Network, Store};
use berth_runtime::{kernel, timefmt, Error, IoContext, Result};

use super::Supervisor;
use crate::daemon::dns::{host_upstreams, NetworkDns};

/// Networking settings of the agent (flags and `[network]` in berth.toml).
#[derive(Debug, Clone)]
pub struct NetSettings {
    /// The network of containers run without `--net`: `bridge` (Docker's default) or `host`
    /// (for boards whose kernel has no bridge or nf_tables).
    pub default: String,
    /// The default bridge's subnet.
    pub subnet: String,
}

impl Default for NetSettings {
    fn default() -> Self {
        NetSettings { default: network::DEFAULT_NETWORK.into(), subnet: network::DEFAULT_SUBNET.into() }
    }
}

/// The names each network's DNS answers, shared with the responders.
#[derive(Clone, Default)]
pub struct LiveMembers(Rc<RefCell<Members>>);

impl Lookup for LiveMembers {
    fn lookup(&self, network: &str, name: &str) -> Vec<IpAddr> {
        self.0.borrow().addresses(network, name).into_iter().map(IpAddr::V4).collect()
    }
    fn reverse(&self, network: &str, addr: IpAddr) -> Vec<String> {
        match addr {
            IpAddr::V4(a) => self.0.borrow().names_of(network, a),
            IpAddr::V6(_) => Vec::new(),
        }
    }
}

/// The agent's network state.
pub struct Nets {
    pub store: Store,
    pub settings: NetSettings,
    /// Why bridge networks cannot be used here (the kernel lacks bridge, veth or nf_tables), found
    /// when the default bridge was made.
    pub unavailable: Option<String>,
    members: LiveMembers,
    dns: NetworkDns,
}

impl Nets {
    pub fn open(root: &Path, settings: NetSettings) -> Result<Nets> {
        Ok(Nets { store: Store::open(root)?, settings, unavailable: None, members: LiveMembers::default(), dns: NetworkDns::new() })
    }

    /// The DNS answers follow the records at once (a restarted container's new address).
    fn refresh_members(&self) {
        if let Ok(nets) = self.store.list() {
            *self.members.0.borrow_mut() = Members::from_networks(&nets);
        }
    }

    /// A responder on every user network's gateway, none on removed ones. Only from inside
    /// the agent's event loop (the responders are its tasks).
    pub fn dns_sync(&mut self) {
        let Ok(nets) = self.store.list() else { return };
        for n in nets.iter().filter(|n| !n.is_default()) {
            let upstreams = if n.internal { Vec::new() } else { host_upstreams() };
            let lookup: Rc<dyn Lookup> = Rc::new(self.members.clone());
            if let Err(e) = self.dns.start(&n.name, IpAddr::V4(n.pool.gateway), upstreams, lookup) {
                crate::warn!("{e}");
            }
        }
        self.refresh_members();
    }

    /// Bridge networks work here, or the clear reason why not (`network::unavailable`: the
    /// missing kernel options and the way out, one line; exit 125 at `run`).
    pub fn usable(&self) -> Result<()> {
        match &self.unavailable {
            Some(why) => Err(Error::invalid(why.clone())),
            None => Ok(()),
        }
    }
}

/// The bridge-networking kernel options `berth check` finds missing on this kernel (none when
/// it cannot tell: no config and nothing probed missing).
fn kernel_missing() -> Vec<String> {
    let host = kernel::Host::live();
    let cfg = host.running_config().ok().flatten();
    kernel::bridge_networking_missing(&kernel::check(cfg.as_ref().map(|(_, c)| c), Some(&host)))
}

impl Supervisor {
    /// At start, after containers were adopted: the default bridge (when it is the default),
    /// bridges of recorded networks, endpoints of containers still running, the rules once.
    pub(crate) fn net_init(&mut self) {
        let running: std::collections::HashSet<String> = self.records.values().filter(|r| r.is_running()).map(|r| r.id.clone()).collect();
        let res = (|| {
            if self.nets.settings.default == network::DEFAULT_NETWORK {
                self.nets.store.ensure_default(&self.nets.settings.subnet)?;
            }
            if self.nets.store.list()?.is_empty() {
                return Ok(());
            }
            self.nets.store.adopt(&|id| running.contains(id))
        })();
        if let Err(e) = res {
            let why = network::unavailable(&e, &kernel_missing());
            crate::warn!("networks: {why}");
            self.nets.unavailable = Some(why);
        }
        self.nets.refresh_members();
    }

    fn emit_network(&mut self, action: &str, net: &Network, container: Option<&str>) {
        let mut attributes = vec![("name".to_string(), net.name.clone()), ("type".to_string(), net.driver.clone())];
        if let Some(c) = container {
            attributes.insert(0, ("container".to_string(), c.to_string()));
        }
        let e = berth_proto::socket::Event {
            time: timefmt::now_nanos(),
            secs: timefmt::now(),
            action: action.to_string(),
            id: net.id.clone(),
            name: net.name.clone(),
            image: String::new(),
            attributes,
            kind: "network".into(),
        };
        self.events.push(e);
    }

    /// A new container's networks exist and take it (`--ip` free and in the subnet), and its
    /// links name existing containers: refused before anything is made (exit 125).
    pub(crate) fn net_check(&self, cfg: &ContainerNet, recs: &[&Record]) -> Result<()> {
        self.nets.usable()?;
        self.nets.store.check_container(cfg).map_err(|e| match e.kind() {
            berth_runtime::Kind::NotFound => Error::invalid(e.message().to_string()),
            _ => e,
        })?;
        for l in &cfg.links {
            let target = l.split(':').next().unwrap_or(l);
            record::find(recs.iter().copied(), target).map_err(|_| Error::invalid(format!("could not get container for {target}")))?;
        }
        Ok(())
    }

    /// Connects a starting container to its networks and writes its /etc/hosts and
    /// /etc/resolv.conf; returns what its monitor makes, and the `--link` environment.
    pub(crate) fn net_start(&mut self, r: &Record, dir: &Path) -> Result<(Vec<Attach>, Vec<String>)> {
        if !matches!(r.spec.net, Net::Bridge(_)) {
            return Ok((Vec::new(), Vec::new()));
        }
        self.nets.usable()?;
        let cfg = ContainerNet::load(dir)?;
        let links = self.links_of(&r.name, &cfg)?;
        let attach = self.nets.store.connect_container(&r.id, &r.name, &cfg)?;
        if let Err(e) = self.write_net_etc(r, dir, &cfg, &attach, &links) {
            let _ = self.nets.store.disconnect_all(&r.id);
            return Err(e);
        }
        // Also starts a responder that is missing (one whose start failed at the network's
        // create).
        self.nets.dns_sync();
        for (n, a) in cfg.networks.iter().zip(&attach) {
            if !cfg.dns.is_empty() {
                self.nets.dns.set_client_dns(&n.name, IpAddr::V4(a.ip), &cfg.dns);
            }
            if let Ok(net) = self.nets.store.get(&n.name) {
                self.emit_network("connect", &net, Some(&r.id));
            }
        }
        let env = links.iter().flat_map(|l| files::link_env(&r.name, l)).collect();
        Ok((attach, env))
    }

    /// `--link NAME[:ALIAS]` targets: running containers on the default bridge.
    fn links_of(&self, name: &str, cfg: &ContainerNet) -> Result<Vec<Link>> {
        if cfg.links.is_empty() {
            return Ok(Vec::new());
        }
        let bridge = self.nets.store.get(network::DEFAULT_NETWORK)?;
        let mut out = Vec::new();
        for l in &cfg.links {
            let (target, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            let t = record::find(self.records(), target).map_err(|_| Error::invalid(format!("could not get container for {target}")))?;
            let Some(ep) = bridge.endpoints.get(&t.id) else {
                return Err(Error::invalid(format!(
                    "cannot link to {}: it is not running on the default bridge network (linked by {name})",
                    t.name
                )));
            };
            let tcfg = ContainerNet::load(&record::dir(&self.root, &t.id)).unwrap_or_default();
            out.push(Link {
                name: t.name.clone(),
                alias: alias.to_string(),
                hostname: t.spec.hostname.clone(),
                ips: vec![IpAddr::V4(ep.ip)],
                ports: tcfg.ports.iter().map(|p| (p.container_port, p.proto.as_str().to_string())).collect(),
                env: t.spec.env.to_vec(),
            });
        }
        Ok(out)
    }

    /// /etc/hosts and /etc/resolv.conf as Docker writes them for a container on a network.
    fn write_net_etc(&self, r: &Record, dir: &Path, cfg: &ContainerNet, attach: &[Attach], links: &[Link]) -> Result<()> {
        let etc = dir.join("etc");
        // A line per network, as Docker's (each endpoint adds its address).
        let ips: Vec<IpAddr> = attach.iter().map(|a| IpAddr::V4(a.ip)).collect();
        let add_hosts = cfg.add_hosts.iter().map(|h| AddHost::parse(h)).collect::<Result<Vec<_>>>()?;
        let host_gateway = self.nets.store.get(network::DEFAULT_NETWORK).ok().map(|n| IpAddr::V4(n.pool.gateway));
        let hosts =
            files::hosts(&Hosts { hostname: &r.spec.hostname, domainname: "", ips: &ips, add_hosts: &add_hosts, host_gateway, links })?;
        let resolv = self.resolv_conf_of(cfg);
        for (name, content) in [("hosts", hosts), ("resolv.conf", resolv)] {
            std::fs::write(etc.join(name), content).ctx_path("write", &etc.join(name))?;
        }
        Ok(())
    }

    /// resolv.conf for a container on `cfg`'s networks: the responder of the first user network
    /// it is on (Docker's embedded DNS, there once any user network is joined), else the host's
    /// resolvers as on the default bridge.
    fn resolv_conf_of(&self, cfg: &ContainerNet) -> String {
        let user = cfg.networks.iter().filter_map(|n| self.nets.store.get(&n.name).ok()).find(|n| !n.is_default());
        let resolver = match user {
            Some(n) => Resolver::Embedded(IpAddr::V4(n.pool.gateway)),
            None => Resolver::Host { ipv6: false },
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let flags = DnsFlags { servers: &cfg.dns, search: &cfg.dns_search, options: &cfg.dns_options };
        files::resolv_conf(&host_resolv, &flags, resolver)
    }

    /// A running container's /etc/hosts and /etc/resolv.conf after `network connect` (`added`:
    /// a line for its new address) or `disconnect` (`removed`: that address's line goes), as
    /// Docker edits them: the rest of the hosts file (links, --add-host) stays. Written in place:
    /// the files are bind-mounted into the container.
    fn edit_net_etc(&self, r: &Record, cfg: &ContainerNet, added: Option<IpAddr>, removed: Option<IpAddr>) -> Result<()> {
        let etc = record::dir(&self.root, &r.id).join("etc");
        let path = etc.join("hosts");
        let text = std::fs::read_to_string(&path).ctx_path("read", &path)?;
        let mut hosts = files::edit_hosts(&text, &r.spec.hostname, removed, added);
        if hosts.is_empty() {
            hosts.push('\n');
        }
        std::fs::write(&path, hosts).ctx_path("write", &path)?;
        let path = etc.join("resolv.conf");
        std::fs::write(&path, self.resolv_conf_of(cfg)).ctx_path("write", &path)
    }

    /// A container ended (or could not start): its endpoints go.
    pub(crate) fn net_stop(&mut self, id: &str) {
        // Only a bridge container has endpoints (`network connect` takes no other): the others
        // skip reading every network's record, at each exit and each removal.
        if self.records.get(id).is_some_and(|r| !matches!(r.spec.net, Net::Bridge(_))) {
            return;
        }
        let nets = match self.nets.store.list() {
            Ok(n) => n,
            Err(_) => return,
        };
        let on: Vec<Network> = nets.into_iter().filter(|n| n.endpoints.contains_key(id)).collect();
        if on.is_empty() {
            return;
        }
        if let Err(e) = self.nets.store.disconnect_all(id) {
            crate::warn!("container {id}: disconnect: {e}");
        }
        self.nets.refresh_members();
        for n in on {
            if let Some(ep) = n.endpoints.get(id) {
                self.nets.dns.forget_client(&n.name, IpAddr::V4(ep.ip));
            }
            self.emit_network("disconnect", &n, Some(id));
        }
    }

    pub fn network_create(&mut self, req: &CreateRequest) -> Result<String> {
        self.nets.usable()?;
        let net = self.nets.store.create(req, None)?;
        self.nets.dns_sync();
        self.emit_network("create", &net, None);
        Ok(net.id)
    }

    /// The containers whose options name network `name`.
    fn users_of(&self, name: &str) -> Vec<&Record> {
        self.records()
            .filter(|r| matches!(r.spec.net, Net::Bridge(_)))
            .filter(|r| ContainerNet::load(&record::dir(&self.root, &r.id)).is_ok_and(|c| c.network(name).is_some()))
            .collect()
    }

    pub fn network_remove(&mut self, key: &str, force: bool) -> Result<()> {
        let net = self.nets.store.get(key)?;
        if net.is_default() {
            return Err(Error::invalid(format!("{} is a pre-defined network and cannot be removed", net.name)));
        }
        let users = self.users_of(&net.name);
        if let Some(r) = users.iter().find(|r| r.is_running()) {
            return Err(Error::conflict(format!(
                "error while removing network: network {} id {} has active endpoints (container {})",
                net.name, net.id, r.name
            )));
        }
        if let (Some(r), false) = (users.first(), force) {
            return Err(Error::conflict(format!(
                "error while removing network: network {} is used by stopped container {} (remove it, or use -f)",
                net.name, r.name
            )));
        }
        let net = self.nets.store.remove(&net.id)?;
        self.nets.dns.stop(&net.name);
        self.emit_network("destroy", &net, None);
        Ok(())
    }

    pub fn network_prune(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in self.nets.store.list()? {
            if n.is_default() || !n.endpoints.is_empty() || !self.users_of(&n.name).is_empty() {
                continue;
            }
            let n = self.nets.store.remove(&n.id)?;
            self.nets.dns.stop(&n.name);
            self.emit_network("destroy", &n, None);
            out.push(n.name);
        }
        Ok(out)
    }

    pub fn network_connect(&mut self, key: &str, id: &str, req: ConnectRequest) -> Result<()> {
        self.nets.usable()?;
        let net = self.nets.store.get(key)?;
        let r = self.records.get(id).cloned().ok_or_else(|| Error::no_such_container(id))?;
        if !matches!(r.spec.net, Net::Bridge(_)) {
            return Err(Error::invalid(format!("container {} is not on a bridge network: it cannot be connected to {}", r.name, net.name)));
        }
        let dir = record::dir(&self.root, id);
        let mut cfg = ContainerNet::load(&dir)?;
        if cfg.network(&net.name).is_some() {
            return Err(Error::conflict(format!("endpoint with name {} already exists in network {}", r.name, net.name)));
        }
        if let (Some(_), true) = (req.ip, net.is_default()) {
            return Err(Error::invalid("user specified IP address is supported on user defined networks only"));
        }
        let index = cfg.networks.len();
        cfg.networks.push(NetworkRef { name: net.name.clone(), aliases: req.aliases.clone(), ip: req.ip, mac: None });
        if let Status::Running { pid, .. } = r.status {
            let creq = ConnectRequest { container: id.into(), name: r.name.clone(), ifname: format!("eth{index}"), ..req };
            let (_, attach) = self.nets.store.connect(&net.id, &creq)?;
            let made = network::plumb_running(pid, &attach)
                .and_then(|()| cfg.save(&dir))
                .and_then(|()| self.edit_net_etc(&r, &cfg, Some(IpAddr::V4(attach.ip)), None));
            if let Err(e) = made {
                let _ = self.nets.store.disconnect(&net.id, id);
                cfg.networks.pop();
                let _ = cfg.save(&dir);
                return Err(e);
            }
            if !cfg.dns.is_empty() {
                self.nets.dns.set_client_dns(&net.name, IpAddr::V4(attach.ip), &cfg.dns);
            }
            self.nets.refresh_members();
        } else if let Some(ip) = req.ip {
            // Checked now, taken at the next start.
            let mut pool = net.pool.clone();
            pool.allocate("\0check", Some(ip), &net.name)?;
        }
        cfg.save(&dir)?;
        self.emit_network("connect", &net, Some(id));
        Ok(())
    }

    pub fn network_disconnect(&mut self, key: &str, id: &str, _force: bool) -> Result<()> {
        let net = self.nets.store.get(key)?;
        let r = self.records.get(id).cloned().ok_or_else(|| Error::no_such_container(id))?;
        let dir = record::dir(&self.root, id);
        let mut cfg = ContainerNet::load(&dir)?;
        if cfg.network(&net.name).is_none() {
            return Err(Error::invalid(format!("container {} is not connected to network {}", r.name, net.name)));
        }
        cfg.networks.retain(|n| n.name != net.name);
        cfg.save(&dir)?;
        let ep = net.endpoints.get(id).cloned();
        self.nets.store.disconnect(&net.id, id)?;
        self.nets.refresh_members();
        if let Some(ep) = ep {
            self.nets.dns.forget_client(&net.name, IpAddr::V4(ep.ip));
            if r.is_running() {
                self.edit_net_etc(&r, &cfg, None, Some(IpAddr::V4(ep.ip)))?;
            }
        }
        self.emit_network("disconnect", &net, Some(id));
        Ok(())
    }
}
