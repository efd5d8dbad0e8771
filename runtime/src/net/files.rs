//! What a container on a network finds in `/etc/hosts` and `/etc/resolv.conf`, and the
//! environment `--link` gives it, byte for byte as Docker writes them (the tests hold dockerd
//! 20.10's output, captured on this machine, as their expected values).
//!
//! - `/etc/hosts`: the loopback and IPv6 lines, then `--add-host` entries in the order given,
//!   then one line per `--link`, then the container's own address(es) with its host name.
//! - `/etc/resolv.conf` on a network without the embedded DNS (the default bridge): the host's
//!   file with loopback resolvers (and IPv6 ones, without IPv6) taken out, Google's resolvers
//!   appended when none is left; `--dns`, `--dns-search`, `--dns-option` replace the host's
//!   nameservers, search list and options. On a user network the only nameserver is the network's
//!   responder, the search list and options are kept, and `ndots:0` is added unless one is set.
//! - `--link NAME:ALIAS`: `ALIAS_PORT`, `ALIAS_PORT_<port>_<PROTO>*`, `ALIAS_NAME`,
//!   `ALIAS_ENV_*`.

use std::net::IpAddr;

use crate::error::{Error, Result};

/// Docker's fixed head of `/etc/hosts`.
pub const HOSTS_HEAD: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// What Docker falls back to when the host has no usable resolver.
pub const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];
/// The IPv6 pair Docker adds to the fallback when the container has IPv6.
pub const FALLBACK_NAMESERVERS_V6: [&str; 2] = ["2001:4860:4860::8888", "2001:4860:4860::8844"];

/// The address of an `--add-host NAME:ADDR` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddHostAddr {
    Ip(IpAddr),
    /// `host-gateway`: the host's address as containers see it (the default bridge's gateway).
    HostGateway,
}

/// One `--add-host NAME:ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddHost {
    pub name: String,
    pub addr: AddHostAddr,
}

impl AddHost {
    /// `NAME:ADDR` as Docker reads it: split at the first `:` (so `h:::1` is IPv6 `::1`), the
    /// address an IP or `host-gateway`. Errors as Docker's.
    pub fn parse(s: &str) -> Result<AddHost> {
        let Some((name, addr)) = s.split_once(':').filter(|(n, _)| !n.is_empty()) else {
            return Err(Error::invalid(format!("bad format for add-host: {s:?}")));
        };
        let addr = if addr == "host-gateway" {
            AddHostAddr::HostGateway
        } else {
            // Docker accepts `[::1]` too.
            let bare = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
            match bare.parse::<IpAddr>() {
                Ok(ip) => AddHostAddr::Ip(ip),
                Err(_) => return Err(Error::invalid(format!("invalid IP address in add-host: {addr:?}"))),
            }
        };
        Ok(AddHost { name: name.to_string(), addr })
    }
}

/// A container linked with `--link NAME[:ALIAS]`, as its hosts entry and environment need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The linked container's name, without Docker's leading `/`.
    pub name: String,
    /// The alias (the name itself without `:ALIAS`).
    pub alias: String,
    /// The linked container's host name (its short ID unless `--hostname`).
    pub hostname: String,
    /// Its addresses on the default bridge.
    pub ips: Vec<IpAddr>,
    /// Its exposed ports (`EXPOSE`, `--expose`, `-p`): number and `tcp`/`udp`/`sctp`.
    pub ports: Vec<(u16, String)>,
    /// Its environment, `KEY=value` (the image's and its own).
    pub env: Vec<String>,
}

/// Everything `/etc/hosts` holds for one container.
#[derive(Debug, Clone, Default)]
pub struct Hosts<'a> {
    /// `--hostname` (default: the short ID), possibly with dots.
    pub hostname: &'a str,
    /// `--domainname`.
    pub domainname: &'a str,
    /// The container's own addresses, one line each (none on `--network none`).
    pub ips: &'a [IpAddr],
    pub add_hosts: &'a [AddHost],
    /// What `host-gateway` stands for.
    pub host_gateway: Option<IpAddr>,
    /// Links (only on the default bridge, as Docker).
    pub links: &'a [Link],
}

/// `/etc/hosts` as Docker writes it.
pub fn hosts(h: &Hosts) -> Result<String> {
    let mut out = String::from(HOSTS_HEAD);
    for a in h.add_hosts {
        let ip = match &a.addr {
            AddHostAddr::Ip(ip) => *ip,
            AddHostAddr::HostGateway => h.host_gateway.ok_or_else(|| {
                Error::invalid(format!("--add-host {}:host-gateway: no host gateway address (no default bridge network)", a.name))
            })?,
        };
        out.push_str(&format!("{ip}\t{}\n", a.name));
    }
    for l in h.links {
        // The alias, the linked container's host name, and its name when the alias differs.
        let mut names = format!("{} {}", l.alias, l.hostname);
        if l.alias != l.name {
            names.push(' ');
            names.push_str(&l.name);
        }
        for ip in &l.ips {
            out.push_str(&format!("{ip}\t{names}\n"));
        }
    }
    let names = own_names(h.hostname, h.domainname);
    for ip in h.ips {
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    Ok(out)
}

/// The names on the container's own lines: `h.dom` with `--domainname zz` gives
/// `h.dom.zz h`; a host name with no dot gives `h`.
fn own_names(hostname: &str, domainname: &str) -> String {
    let fqdn = if domainname.is_empty() { hostname.to_string() } else { format!("{hostname}.{domainname}") };
    match fqdn.split_once('.') {
        Some((short, _)) => format!("{fqdn} {short}"),
        None => fqdn.clone(),
    }
}

/// A running container's /etc/hosts after `network connect`/`disconnect`, as Docker edits it:
/// the line of the address it left (`removed`) goes, one for its new address (`added`) comes;
/// every other line (links, `--add-host`, the container's own edits) stays.
pub fn edit_hosts(text: &str, hostname: &str, removed: Option<IpAddr>, added: Option<IpAddr>) -> String {
    let names = own_names(hostname, "");
    let mut out: String = text
        .lines()
        .filter(|l| removed.is_none_or(|ip| l.split_once('\t') != Some((ip.to_string().as_str(), names.as_str()))))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(ip) = added {
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    out
}

/// `--dns`, `--dns-search`, `--dns-option` of one container (empty when not given).
#[derive(Debug, Clone, Default)]
pub struct DnsFlags<'a> {
    pub servers: &'a [String],
    pub search: &'a [String],
    pub options: &'a [String],
}

impl DnsFlags<'_> {
    fn any(&self) -> bool {
        !self.servers.is_empty() || !self.search.is_empty() || !self.options.is_empty()
    }
}

/// Which kind of network the container's resolv.conf is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// No embedded DNS (the default bridge): the host's resolvers, filtered.
    Host { ipv6: bool },
    /// A user network: the network's responder at this address answers everything.
    Embedded(IpAddr),
}

/// `/etc/resolv.conf` for a container, from the host's resolv.conf text.
pub fn resolv_conf(host: &str, flags: &DnsFlags, resolver: Resolver) -> String {
    let ipv6 = match resolver {
        Resolver::Host { ipv6 } => ipv6,
        Resolver::Embedded(_) => false,
    };
    // First what Docker writes on a network without the embedded DNS.
    let base = if flags.any() {
        // Docker 20.10 copies the host's nameservers unfiltered here (a host on
        // systemd-resolved gives the container 127.0.0.53, which answers nothing there); we
        // drop loopback ones as newer Docker does, and fall back as without flags.
        let servers: Vec<String> = if flags.servers.is_empty() {
            let mut s: Vec<String> = nameservers(host).into_iter().filter(|ip| !ip.is_loopback()).map(|ip| ip.to_string()).collect();
            if s.is_empty() {
                s = fallback(ipv6);
            }
            s
        } else {
            flags.servers.to_vec()
        };
        let search = if flags.search.is_empty() { search_domains(host) } else { flags.search.to_vec() };
        let options = if flags.options.is_empty() { options(host) } else { flags.options.to_vec() };
        build(&search, &servers, &options)
    } else {
        filter_host(host, ipv6)
    };
    let Resolver::Embedded(ns) = resolver else { return base };
    // A user network: the responder first, then the IPv6 servers of the file above (Docker keeps
    // those, the responder forwards over IPv4 only); the search list and options kept, and
    // `ndots:0` unless set, so that single names go to the responder first.
    let mut servers = vec![ns.to_string()];
    servers.extend(nameservers(&base).into_iter().filter(IpAddr::is_ipv6).map(|ip| ip.to_string()));
    let mut opts = options(&base);
    if !opts.iter().any(|o| o.contains("ndots")) {
        opts.push("ndots:0".to_string());
    }
    build(&search_domains(&base), &servers, &opts)
}

fn fallback(ipv6: bool) -> Vec<String> {
    let mut s: Vec<String> = FALLBACK_NAMESERVERS.iter().map(|s| s.to_string()).collect();
    if ipv6 {
        s.extend(FALLBACK_NAMESERVERS_V6.iter().map(|s| s.to_string()));
    }
    s
}

/// Docker's `Build`: `search`, `nameserver` lines, `options`, each only when there is something.
fn build(search: &[String], servers: &[String], options: &[String]) -> String {
    let mut out = String::new();
    let s = search.join(" ");
    if !search.is_empty() && s.trim_matches(' ') != "." {
        out.push_str(&format!("search {s}\n"));
    }
    for ns in servers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    let o = options.join(" ");
    if !o.trim_matches(' ').is_empty() {
        out.push_str(&format!("options {o}\n"));
    }
    out
}

/// The host's file without loopback `nameserver` lines (and the blank lines after them, as
/// Docker's pattern eats them), without IPv6 ones unless `ipv6`; the fallback resolvers appended
/// when no nameserver is left. Comments and other lines stay.
fn filter_host(host: &str, ipv6: bool) -> String {
    let mut out = String::with_capacity(host.len() + 40);
    let mut eat_blank = false;
    for line in host.split_inclusive('\n') {
        if eat_blank && line.trim().is_empty() {
            continue;
        }
        eat_blank = false;
        let mut w = line.split_whitespace();
        let drop = line.starts_with("nameserver")
            && w.next() == Some("nameserver")
            && w.next().and_then(|a| a.parse::<IpAddr>().ok()).is_some_and(|ip| ip.is_loopback() || (ip.is_ipv6() && !ipv6));
        if drop {
            eat_blank = true;
            continue;
        }
        out.push_str(line);
    }
    if nameservers(&out).is_empty() {
        out.push('\n');
        for ns in fallback(ipv6) {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}

/// Lines without comments (`#` to the end of the line; Docker does not treat `;` as one).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(|l| l.split('#').next().unwrap_or("").trim())
}

/// The `nameserver` addresses of a resolv.conf (a `%zone` suffix ignored), in order.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    lines(text)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then_some(())?;
            let ip = w.next()?;
            w.next().is_none().then_some(())?;
            ip.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The domains of the last `search` line.
pub fn search_domains(text: &str) -> Vec<String> {
    last_list(text, "search")
}

/// The options of the last `options` line.
pub fn options(text: &str) -> Vec<String> {
    last_list(text, "options")
}

fn last_list(text: &str, key: &str) -> Vec<String> {
    let mut found = Vec::new();
    for l in lines(text) {
        let mut w = l.split_whitespace();
        if w.next() == Some(key) {
            found = w.map(str::to_string).collect();
        }
    }
    found
}

/// The environment a `--link` gives the container `parent`, in Docker's order: the default port
/// (the lowest, TCP first), `_START`/`_END` for runs of three or more consecutive ports, every
/// port's four variables, the name, then the linked container's environment (without HOME and
/// PATH).
pub fn link_env(parent: &str, link: &Link) -> Vec<String> {
    // Docker's ChildIP: the linked container's IPv4 address on the default bridge.
    let ip = link.ips.iter().find(|ip| ip.is_ipv4()).or(link.ips.first()).map(|ip| ip.to_string()).unwrap_or_default();
    let alias = link.alias.to_uppercase().replace('-', "_");
    let mut ports: Vec<(u16, &str)> = link.ports.iter().map(|(n, p)| (*n, p.as_str())).collect();
    // Docker's order: by number, TCP before other protocols on the same number.
    ports.sort_by_key(|(n, p)| (*n, !p.eq_ignore_ascii_case("tcp"), p.to_ascii_lowercase()));
    ports.dedup();
    let mut env = Vec::new();
    if let Some((n, proto)) = ports.first() {
        env.push(format!("{alias}_PORT={proto}://{ip}:{n}"));
    }
    let mut i = 0;
    while i < ports.len() {
        let j = next_contiguous(&ports, i);
        // Docker's condition: a run needs at least three ports (j > i + 1).
        if j > i + 1 {
            let (p, proto) = ports[i];
            let (q, qproto) = ports[j];
            let up = proto.to_uppercase();
            env.push(format!("{alias}_PORT_{p}_{up}_START={proto}://{ip}:{p}"));
            env.push(format!("{alias}_PORT_{p}_{up}_ADDR={ip}"));
            env.push(format!("{alias}_PORT_{p}_{up}_PROTO={proto}"));
            env.push(format!("{alias}_PORT_{p}_{up}_PORT_START={p}"));
            env.push(format!("{alias}_PORT_{p}_{}_END={qproto}://{ip}:{q}", qproto.to_uppercase()));
            env.push(format!("{alias}_PORT_{p}_{}_PORT_END={q}", qproto.to_uppercase()));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    for (p, proto) in &ports {
        let up = proto.to_uppercase();
        env.push(format!("{alias}_PORT_{p}_{up}={proto}://{ip}:{p}"));
        env.push(format!("{alias}_PORT_{p}_{up}_ADDR={ip}"));
        env.push(format!("{alias}_PORT_{p}_{up}_PORT={p}"));
        env.push(format!("{alias}_PORT_{p}_{up}_PROTO={proto}"));
    }
    env.push(format!("{alias}_NAME=/{parent}/{}", link.alias));
    for kv in &link.env {
        let Some((k, v)) = kv.split_once('=') else { continue };
        if k == "HOME" || k == "PATH" {
            continue;
        }
        env.push(format!("{alias}_ENV_{k}={v}"));
    }
    env
}

/// The last index of the run of consecutive port numbers starting at `i` (Docker's
/// `nextContiguous`, equal numbers of two protocols counting as consecutive).
fn next_contiguous(ports: &[(u16, &str)], i: usize) -> usize {
    // The k-th port after the first continues the run if it is at most first + k.
    let first = u32::from(ports[i].0);
    for (k, (n, _)) in ports.iter().enumerate().skip(i + 1) {
        if u32::from(*n) > first + (k - i) as u32 {
            return k - 1;
        }
    }
    ports.len() - 1
}

#[cfg(test)]
mod tests;
