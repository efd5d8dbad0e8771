//! berth's netfilter rules: egress masquerade for bridge networks, published ports (DNAT, from
//! outside, from the host itself and from containers on the same bridge), isolation between
//! networks and `--internal`. All in berth's own table `ip berth`, which is rebuilt whole from
//! the recorded networks and containers in one nf_tables transaction: an agent killed at any
//! instant and restarted neither duplicates nor loses a rule, and a removed container's rules
//! disappear with the next rebuild. Every rule carries a comment naming its network or
//! container (`nft list table ip berth` shows them).
//!
//! The rules are nf_tables netlink messages of our own (no `nft` userland on the board): a
//! handful of expressions (meta, payload, bitwise, cmp, fib, ct, immediate, nat, masq) cover
//! every rule berth makes. `render` prints a rule in nft's syntax, for tests and messages.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::net::ipam::Subnet;
use crate::net::netlink::{Msg, Netlink};
use crate::net::ports::{Proto, Published};

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

/// What a rule matches on (all must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Iif(String, bool),
    Oif(String, bool),
    Saddr(Subnet),
    Daddr(Ipv4Addr),
    Dport(Proto, u16),
    /// The destination is an address of this host.
    DaddrLocal,
    /// The connection was DNATed (a published port).
    CtDnat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    Jump(&'static str),
    Masquerade,
    Dnat(Ipv4Addr, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: &'static str,
    pub matches: Vec<Match>,
    pub action: Action,
    pub comment: String,
}

/// A chain of the table: base chains with their hook, type and priority.
struct Chain {
    name: &'static str,
    hook: Option<(u32, &'static str, i32)>,
}

const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;

const CHAINS: &[Chain] = &[
    Chain { name: "prerouting", hook: Some((NF_INET_PRE_ROUTING, "nat", -100)) },
    Chain { name: "output", hook: Some((NF_INET_LOCAL_OUT, "nat", -100)) },
    Chain { name: "publish", hook: None },
    Chain { name: "postrouting", hook: Some((NF_INET_POST_ROUTING, "nat", 100)) },
    Chain { name: "forward", hook: Some((NF_INET_FORWARD, "filter", 0)) },
];

fn rule(chain: &'static str, matches: Vec<Match>, action: Action, comment: String) -> Rule {
    Rule { chain, matches, action, comment }
}

/// Every rule of the table, in order, for these networks and published ports.
pub fn rules(nets: &[NetRules], ports: &[PortRules]) -> Vec<Rule> {
    use Match::*;
    let mut r = Vec::new();
    // DNAT for every destination address of this host (or the one asked for), before routing;
    // the output hook covers connections made by the host itself.
    r.push(rule("prerouting", vec![DaddrLocal], Action::Jump("publish"), "published ports".into()));
    r.push(rule("output", vec![DaddrLocal], Action::Jump("publish"), "published ports".into()));
    for c in ports {
        for p in &c.ports {
            let mut m: Vec<Match> = p.host_ip.map(Daddr).into_iter().collect();
            m.push(Dport(p.proto, p.host_port));
            r.push(rule("publish", m, Action::Dnat(c.ip, p.container_port), format!("container {}", c.container)));
        }
    }
    let loopback = Subnet { addr: Ipv4Addr::new(127, 0, 0, 0), prefix: 8 };
    for n in nets {
        let c = format!("network {}", n.name);
        // Connections from the host's loopback to a port published on 127.0.0.1 (the bridge has
        // route_localnet set): the container must answer to an address it can reach.
        r.push(rule("postrouting", vec![Oif(n.bridge.clone(), true), Saddr(loopback)], Action::Masquerade, c.clone()));
        // Hairpin: a container reaching a port published by a neighbour on the same bridge
        // through a host address; without this the reply would skip the DNAT's reversal.
        r.push(rule("postrouting", vec![Oif(n.bridge.clone(), true), Saddr(n.subnet), CtDnat], Action::Masquerade, c.clone()));
        if !n.internal {
            r.push(rule("postrouting", vec![Saddr(n.subnet), Oif(n.bridge.clone(), false)], Action::Masquerade, c));
        }
    }
    for n in nets.iter().filter(|n| n.internal) {
        let c = format!("network {} internal", n.name);
        r.push(rule("forward", vec![Iif(n.bridge.clone(), true), Oif(n.bridge.clone(), false)], Action::Drop, c.clone()));
        r.push(rule("forward", vec![Oif(n.bridge.clone(), true), Iif(n.bridge.clone(), false)], Action::Drop, c));
    }
    // Published ports stay reachable from other networks, as from anywhere else.
    r.push(rule("forward", vec![CtDnat], Action::Accept, "published ports".into()));
    for n in nets {
        for o in nets.iter().filter(|o| o.bridge != n.bridge) {
            r.push(rule(
                "forward",
                vec![Iif(n.bridge.clone(), true), Oif(o.bridge.clone(), true)],
                Action::Drop,
                format!("network {} isolation", n.name),
            ));
        }
    }
    r
}

/// A rule in nft's syntax (as `nft list` would show it).
pub fn render(r: &Rule) -> String {
    let mut s = String::new();
    let eq = |e: bool| if e { "" } else { "!= " };
    for m in &r.matches {
        let _ = match m {
            Match::Iif(n, e) => write!(s, "iifname {}\"{n}\" ", eq(*e)),
            Match::Oif(n, e) => write!(s, "oifname {}\"{n}\" ", eq(*e)),
            Match::Saddr(n) => write!(s, "ip saddr {n} "),
            Match::Daddr(a) => write!(s, "ip daddr {a} "),
            Match::Dport(p, port) => write!(s, "{p} dport {port} "),
            Match::DaddrLocal => write!(s, "fib daddr type local "),
            Match::CtDnat => write!(s, "ct status dnat "),
        };
    }
    let _ = match &r.action {
        Action::Accept => write!(s, "accept"),
        Action::Drop => write!(s, "drop"),
        Action::Jump(c) => write!(s, "jump {c}"),
        Action::Masquerade => write!(s, "masquerade"),
        Action::Dnat(a, p) => write!(s, "dnat to {a}:{p}"),
    };
    let _ = write!(s, " comment \"{}\"", r.comment);
    s
}

// nf_tables netlink (linux/netfilter/nf_tables.h, nfnetlink.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NFPROTO_IPV4: u8 = 2;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 2;
const RTN_LOCAL: u32 = 2;
const NFT_CT_STATUS: u32 = 2;
const IPS_DST_NAT: u32 = 1 << 5;
const NFT_NAT_DNAT: u32 = 1;
/// NFTNL_UDATA_RULE_COMMENT: how nft stores a rule's comment in its user data.
const UDATA_RULE_COMMENT: u8 = 0;

fn nfgen(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

fn msg(kind: u16, flags: u16) -> Msg {
    Msg::exact((NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST | flags, &nfgen(NFPROTO_IPV4, 0))
}

/// Attribute helpers for nf_tables, whose integers are big-endian.
trait NftAttrs {
    fn be32(&mut self, kind: u16, v: u32);
    fn nested(&mut self, kind: u16) -> usize;
}

impl NftAttrs for Msg {
    fn be32(&mut self, kind: u16, v: u32) {
        self.attr(kind, &v.to_be_bytes());
    }
    fn nested(&mut self, kind: u16) -> usize {
        self.nest(kind | NLA_F_NESTED)
    }
}

/// Builds the expressions of one rule.
struct Exprs<'a> {
    m: &'a mut Msg,
}

impl Exprs<'_> {
    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Msg)) {
        let el = self.m.nested(NFTA_LIST_ELEM);
        self.m.str(NFTA_EXPR_NAME, name);
        let data = self.m.nested(NFTA_EXPR_DATA);
        body(self.m);
        self.m.end(data);
        self.m.end(el);
    }

    fn data(m: &mut Msg, attr: u16, value: &[u8]) {
        let d = m.nested(attr);
        m.attr(NFTA_DATA_VALUE, value);
        m.end(d);
    }

    fn meta(&mut self, key: u32) {
        self.expr("meta", |m| {
            m.be32(2, key); // NFTA_META_KEY
            m.be32(1, NFT_REG_1); // NFTA_META_DREG
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32) {
        self.expr("payload", |m| {
            m.be32(1, NFT_REG_1); // NFTA_PAYLOAD_DREG
            m.be32(2, base);
            m.be32(3, offset);
            m.be32(4, len);
        });
    }

    fn cmp(&mut self, op: u32, value: &[u8]) {
        self.expr("cmp", |m| {
            m.be32(1, NFT_REG_1); // NFTA_CMP_SREG
            m.be32(2, op);
            Exprs::data(m, 3, value); // NFTA_CMP_DATA
        });
    }

    fn bitwise(&mut self, mask: &[u8]) {
        let xor = vec![0u8; mask.len()];
        self.expr("bitwise", |m| {
            m.be32(1, NFT_REG_1); // SREG
            m.be32(2, NFT_REG_1); // DREG
            m.be32(3, mask.len() as u32);
            Exprs::data(m, 4, mask);
            Exprs::data(m, 5, &xor);
        });
    }

    fn immediate_value(&mut self, reg: u32, value: &[u8]) {
        self.expr("immediate", |m| {
            m.be32(1, reg); // NFTA_IMMEDIATE_DREG
            Exprs::data(m, 2, value); // NFTA_IMMEDIATE_DATA
        });
    }

    fn verdict(&mut self, code: u32, chain: Option<&str>) {
        self.expr("immediate", |m| {
            m.be32(1, NFT_REG_VERDICT);
            let d = m.nested(2);
            let v = m.nested(NFTA_DATA_VERDICT);
            m.be32(NFTA_VERDICT_CODE, code);
            if let Some(c) = chain {
                m.str(NFTA_VERDICT_CHAIN, c);
            }
            m.end(v);
            m.end(d);
        });
    }

    fn ifname(&mut self, key: u32, name: &str, eq: bool) {
        self.meta(key);
        // The register holds the name padded with zeros to IFNAMSIZ.
        let mut v = [0u8; 16];
        let n = name.as_bytes();
        v[..n.len().min(15)].copy_from_slice(&n[..n.len().min(15)]);
        self.cmp(if eq { NFT_CMP_EQ } else { NFT_CMP_NEQ }, &v);
    }

    fn add(&mut self, mt: &Match) {
        match mt {
            Match::Iif(n, eq) => self.ifname(NFT_META_IIFNAME, n, *eq),
            Match::Oif(n, eq) => self.ifname(NFT_META_OIFNAME, n, *eq),
            Match::Saddr(s) => {
                self.payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4);
                if s.prefix < 32 {
                    let mask = u32::MAX.checked_shl(32 - u32::from(s.prefix)).unwrap_or(0);
                    self.bitwise(&mask.to_be_bytes());
                }
                self.cmp(NFT_CMP_EQ, &s.addr.octets());
            }
            Match::Daddr(a) => {
                self.payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
                self.cmp(NFT_CMP_EQ, &a.octets());
            }
            Match::Dport(proto, port) => {
                self.meta(NFT_META_L4PROTO);
                self.cmp(NFT_CMP_EQ, &[if *proto == Proto::Tcp { 6 } else { 17 }]);
                self.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
                self.cmp(NFT_CMP_EQ, &port.to_be_bytes());
            }
            Match::DaddrLocal => {
                self.expr("fib", |m| {
                    m.be32(1, NFT_REG_1); // NFTA_FIB_DREG
                    m.be32(2, NFT_FIB_RESULT_ADDRTYPE);
                    m.be32(3, NFTA_FIB_F_DADDR);
                });
                self.cmp(NFT_CMP_EQ, &RTN_LOCAL.to_ne_bytes());
            }
            Match::CtDnat => {
                self.expr("ct", |m| {
                    m.be32(1, NFT_REG_1); // NFTA_CT_DREG
                    m.be32(2, NFT_CT_STATUS);
                });
                self.bitwise(&IPS_DST_NAT.to_ne_bytes());
                self.cmp(NFT_CMP_NEQ, &0u32.to_ne_bytes());
            }
        }
    }

    fn action(&mut self, a: &Action) {
        match a {
            Action::Accept => self.verdict(NF_ACCEPT, None),
            Action::Drop => self.verdict(NF_DROP, None),
            Action::Jump(c) => self.verdict(NFT_JUMP as u32, Some(c)),
            Action::Masquerade => self.expr("masq", |_| {}),
            Action::Dnat(addr, port) => {
                self.immediate_value(NFT_REG_1, &addr.octets());
                self.immediate_value(NFT_REG_2, &port.to_be_bytes());
                self.expr("nat", |m| {
                    m.be32(1, NFT_NAT_DNAT); // NFTA_NAT_TYPE
                    m.be32(2, u32::from(NFPROTO_IPV4)); // NFTA_NAT_FAMILY
                    m.be32(3, NFT_REG_1); // NFTA_NAT_REG_ADDR_MIN
                    m.be32(5, NFT_REG_2); // NFTA_NAT_REG_PROTO_MIN
                });
            }
        }
    }
}

fn table_msg(kind: u16, flags: u16) -> Msg {
    let mut m = msg(kind, flags);
    m.str(NFTA_TABLE_NAME, TABLE);
    m
}

/// The batch that replaces berth's table with `rules` (or, with `None`, only removes it).
fn batch(rules: Option<&[Rule]>) -> Vec<Msg> {
    let mut out = vec![Msg::exact(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, &nfgen(0, NFNL_SUBSYS_NFTABLES))];
    // Declaring the table first makes the delete succeed when it does not exist yet.
    out.push(table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE));
    out.push(table_msg(NFT_MSG_DELTABLE, 0));
    if let Some(rules) = rules {
        out.push(table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE));
        for c in CHAINS {
            let mut m = msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
            m.str(NFTA_CHAIN_TABLE, TABLE);
            m.str(NFTA_CHAIN_NAME, c.name);
            if let Some((hook, kind, prio)) = c.hook {
                let h = m.nested(NFTA_CHAIN_HOOK);
                m.be32(NFTA_HOOK_HOOKNUM, hook);
                m.be32(NFTA_HOOK_PRIORITY, prio as u32);
                m.end(h);
                m.be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
                m.str(NFTA_CHAIN_TYPE, kind);
            }
            out.push(m);
        }
        for r in rules {
            let mut m = msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
            m.str(NFTA_RULE_TABLE, TABLE);
            m.str(NFTA_RULE_CHAIN, r.chain);
            let list = m.nested(NFTA_RULE_EXPRESSIONS);
            let mut e = Exprs { m: &mut m };
            for mt in &r.matches {
                e.add(mt);
            }
            e.action(&r.action);
            m.end(list);
            let c = r.comment.as_bytes();
            let c = &c[..c.len().min(120)];
            let mut ud = vec![UDATA_RULE_COMMENT, (c.len() + 1) as u8];
            ud.extend_from_slice(c);
            ud.push(0);
            m.attr(NFTA_RULE_USERDATA, &ud);
            out.push(m);
        }
    }
    out.push(Msg::exact(NFNL_MSG_BATCH_END, NLM_F_REQUEST, &nfgen(0, NFNL_SUBSYS_NFTABLES)));
    out
}

fn send(rules: Option<&[Rule]>) -> Result<()> {
    let mut nl = Netlink::open_protocol(libc::NETLINK_NETFILTER)?;
    nl.send_batch(batch(rules)).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::EPROTONOSUPPORT) => {
                " (does the kernel have CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_MASQ, CONFIG_NFT_FIB_IPV4, CONFIG_NFT_CT?)"
            }
            _ => "",
        };
        Error::new(crate::Kind::Io, format!("apply netfilter rules of table ip {TABLE}: {e}{hint}"))
    })
}

/// Replaces berth's table with the rules for `nets` and `ports`, in one transaction.
pub fn apply(nets: &[NetRules], ports: &[PortRules]) -> Result<()> {
    send(Some(&rules(nets, ports)))
}

/// Removes berth's table (the last network is gone).
pub fn remove() -> Result<()> {
    send(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, bridge: &str, subnet: &str, internal: bool) -> NetRules {
        NetRules { name: name.into(), bridge: bridge.into(), subnet: Subnet::parse(subnet).unwrap(), internal }
    }

    fn text(nets: &[NetRules], ports: &[PortRules]) -> String {
        rules(nets, ports).iter().map(|r| format!("{}: {}\n", r.chain, render(r))).collect()
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
        let s = text(&nets, &ports);
        assert!(s.contains("publish: tcp dport 8080 dnat to 172.17.0.2:80 comment \"container abc\""), "{s}");
        assert!(s.contains("publish: ip daddr 127.0.0.1 udp dport 5353 dnat to 172.17.0.2:53"), "{s}");
        assert!(s.contains("postrouting: ip saddr 172.17.0.0/16 oifname != \"berth0\" masquerade"), "{s}");
        // No egress for the internal network, and it is cut off from everything else.
        assert!(!s.contains("ip saddr 10.5.0.0/24 oifname != \"br-priv\" masquerade"), "{s}");
        assert!(s.contains("forward: iifname \"br-priv\" oifname != \"br-priv\" drop"), "{s}");
        assert!(s.contains("forward: iifname \"berth0\" oifname \"br-priv\" drop"), "{s}");
        // Rebuilt from the same state, the rules are the same: nothing accumulates.
        assert_eq!(s, text(&nets, &ports));
    }

    #[test]
    fn a_single_network_has_no_isolation_rule() {
        let s = text(&[net("bridge", "berth0", "172.17.0.0/16", false)], &[]);
        assert!(!s.contains("isolation"), "{s}");
    }

    #[test]
    fn the_batch_is_framed() {
        let b = batch(Some(&rules(&[net("bridge", "berth0", "172.17.0.0/16", false)], &[])));
        // begin, table, delete, table, 5 chains, rules, end.
        assert_eq!(b.len(), 1 + 3 + CHAINS.len() + 6 + 1);
        assert_eq!(batch(None).len(), 4);
    }
}
