//! berth's netfilter rules: egress masquerade for bridge networks, published ports (DNAT, from
//! outside, from the host itself and from containers on the same bridge), isolation between
//! networks and `--internal`. All in berth's own table `ip berth`, which is rebuilt whole from
//! the recorded networks and containers in one atomic transaction (`nft -f -`): an agent killed
//! at any instant and restarted neither duplicates nor loses a rule, and a removed container's
//! rules disappear with the next rebuild. Every rule carries a comment naming its network or
//! container, for `nft list table ip berth` readers.
//!
//! The rules go through the `nft` program (nftables userland) rather than nf_tables netlink
//! messages of our own: DESIGN.md allows it, the Yocto recipe then RDEPENDS on nftables, and
//! `berth check` reports its absence. Packets never pass through the agent either way.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::net::ipam::Subnet;
use crate::net::ports::Published;

pub const TABLE: &str = "berth";

/// One bridge network as the rules see it.
#[derive(Debug, Clone)]
pub struct NetRules {
    pub name: String,
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// One container's published ports on one bridge.
#[derive(Debug, Clone)]
pub struct PortRules {
    pub container: String,
    pub ip: Ipv4Addr,
    pub ports: Vec<Published>,
}

/// The whole table, as one `nft -f` script that replaces what was there.
pub fn ruleset(nets: &[NetRules], ports: &[PortRules]) -> String {
    let mut s = String::new();
    // Declaring the table first makes the delete succeed when it does not exist yet.
    let _ = writeln!(s, "table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{");
    // DNAT for every destination address of this host (or the one asked for), before routing;
    // the output hook covers connections made by the host itself.
    s.push_str("\tchain prerouting {\n\t\ttype nat hook prerouting priority -100; policy accept;\n");
    s.push_str("\t\tfib daddr type local jump publish\n\t}\n");
    s.push_str("\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n");
    s.push_str("\t\tfib daddr type local jump publish\n\t}\n");
    s.push_str("\tchain publish {\n");
    for c in ports {
        for p in &c.ports {
            let daddr = p.host_ip.map(|a| format!("ip daddr {a} ")).unwrap_or_default();
            let _ = writeln!(
                s,
                "\t\t{daddr}{proto} dport {hp} dnat to {ip}:{cp} comment \"container {id}\"",
                proto = p.proto,
                hp = p.host_port,
                ip = c.ip,
                cp = p.container_port,
                id = c.container
            );
        }
    }
    s.push_str("\t}\n");
    s.push_str("\tchain postrouting {\n\t\ttype nat hook postrouting priority 100; policy accept;\n");
    for n in nets {
        let c = format!("comment \"network {}\"", n.name);
        // Connections from the host's loopback to a port published on 127.0.0.1 (the bridge
        // has route_localnet set): the container must answer to an address it can reach.
        let _ = writeln!(s, "\t\toifname \"{}\" ip saddr 127.0.0.0/8 masquerade {c}", n.bridge);
        // Hairpin: a container reaching a port published by a neighbour on the same bridge
        // through a host address; without this the reply would skip the DNAT's reversal.
        let _ = writeln!(s, "\t\toifname \"{}\" ip saddr {} ct status dnat masquerade {c}", n.bridge, n.subnet);
        if !n.internal {
            let _ = writeln!(s, "\t\tip saddr {} oifname != \"{}\" masquerade {c}", n.subnet, n.bridge);
        }
    }
    s.push_str("\t}\n");
    s.push_str("\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n");
    for n in nets.iter().filter(|n| n.internal) {
        let c = format!("comment \"network {} internal\"", n.name);
        let _ = writeln!(s, "\t\tiifname \"{b}\" oifname != \"{b}\" drop {c}", b = n.bridge);
        let _ = writeln!(s, "\t\toifname \"{b}\" iifname != \"{b}\" drop {c}", b = n.bridge);
    }
    // Published ports stay reachable from other networks, as from anywhere else.
    s.push_str("\t\tct status dnat accept\n");
    for n in nets {
        let others: Vec<String> = nets.iter().filter(|o| o.bridge != n.bridge).map(|o| format!("\"{}\"", o.bridge)).collect();
        if !others.is_empty() {
            let _ = writeln!(
                s,
                "\t\tiifname \"{}\" oifname {{ {} }} drop comment \"network {} isolation\"",
                n.bridge,
                others.join(", "),
                n.name
            );
        }
    }
    s.push_str("\t}\n}\n");
    s
}

/// Where `nft` is, or a clear error for boards without the nftables userland.
fn nft_program() -> Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::not_found("nft (the nftables userland) is not installed: bridge networks need it"))
}

/// Whether the nftables userland is present (for `berth check` and the agent's start).
pub fn available() -> bool {
    nft_program().is_ok()
}

/// Runs an `nft -f -` script as one transaction.
pub fn run(script: &str) -> Result<()> {
    let mut child = Command::new(nft_program()?)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("start nft", e))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes()).map_err(|e| Error::io("write rules to nft", e))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::io("wait for nft", e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().find(|l| l.starts_with("Error")).or_else(|| err.lines().next()).unwrap_or("");
        return Err(Error::new(
            crate::Kind::Io,
            format!("apply netfilter rules of table ip {TABLE}: {line} (kernel nf_tables, nft_nat, nft_masq, nft_fib, nft_ct?)"),
        ));
    }
    Ok(())
}

/// Replaces berth's table with the rules for `nets` and `ports`.
pub fn apply(nets: &[NetRules], ports: &[PortRules]) -> Result<()> {
    run(&ruleset(nets, ports))
}

/// Removes berth's table (the last network is gone).
pub fn remove() -> Result<()> {
    run(&format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ports::Proto;

    fn net(name: &str, bridge: &str, subnet: &str, internal: bool) -> NetRules {
        NetRules { name: name.into(), bridge: bridge.into(), subnet: Subnet::parse(subnet).unwrap(), internal }
    }

    #[test]
    fn rules_for_networks_and_ports() {
        let nets = [net("bridge", "berth0", "172.17.0.0/16", false), net("priv", "br-priv", "10.5.0.0/24", true)];
        let ports = [PortRules {
            container: "abc".into(),
            ip: "172.17.0.2".parse().unwrap(),
            ports: vec![
                Published { host_ip: None, host_port: 8080, container_port: 80, proto: Proto::Tcp },
                Published { host_ip: Some(Ipv4Addr::LOCALHOST), host_port: 5353, container_port: 53, proto: Proto::Udp },
            ],
        }];
        let s = ruleset(&nets, &ports);
        assert!(s.starts_with("table ip berth {}\ndelete table ip berth\n"), "{s}");
        assert!(s.contains("tcp dport 8080 dnat to 172.17.0.2:80 comment \"container abc\""), "{s}");
        assert!(s.contains("ip daddr 127.0.0.1 udp dport 5353 dnat to 172.17.0.2:53"), "{s}");
        assert!(s.contains("ip saddr 172.17.0.0/16 oifname != \"berth0\" masquerade"), "{s}");
        // No egress for the internal network, and it is cut off from everything else.
        assert!(!s.contains("ip saddr 10.5.0.0/24 oifname != \"br-priv\" masquerade"), "{s}");
        assert!(s.contains("iifname \"br-priv\" oifname != \"br-priv\" drop"), "{s}");
        assert!(s.contains("iifname \"berth0\" oifname { \"br-priv\" } drop"), "{s}");
        // Rebuilt from the same state, the script is the same: nothing accumulates.
        assert_eq!(s, ruleset(&nets, &ports));
        assert_eq!(s.matches('{').count(), s.matches('}').count());
    }

    #[test]
    fn a_single_network_has_no_isolation_rule() {
        let s = ruleset(&[net("bridge", "berth0", "172.17.0.0/16", false)], &[]);
        assert!(!s.contains("isolation"), "{s}");
    }
}
