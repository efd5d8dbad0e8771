//! Address management of one network: its subnet, gateway and optional `--ip-range`, and which
//! address each container holds. The allocations live in the network's record (written
//! atomically by `network`), so an agent restart finds them and never hands an address out twice.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An IPv4 prefix, `172.17.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet> {
        if s.contains(':') {
            return Err(Error::invalid(format!("IPv6 networks are not supported yet (subnet {s})")));
        }
        let bad = || Error::invalid(format!("invalid subnet {s:?}: want an IPv4 CIDR such as 172.20.0.0/16"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Subnet { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix })
    }

    pub fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    pub fn last(&self) -> u32 {
        self.first() | !mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.first()
    }

    pub fn overlaps(&self, o: &Subnet) -> bool {
        self.first() <= o.last() && o.first() <= self.last()
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// A network's address pool and its allocations (address → holder, a container id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// `--ip-range`: where dynamic addresses come from (a static `--ip` may be anywhere in the
    /// subnet, as Docker allows).
    pub range: Option<Subnet>,
    pub allocs: BTreeMap<Ipv4Addr, String>,
}

impl Pool {
    /// A pool for `subnet`; the gateway defaults to its first host address, as Docker's.
    pub fn new(subnet: Subnet, gateway: Option<Ipv4Addr>, range: Option<Subnet>) -> Result<Pool> {
        if subnet.prefix > 30 {
            return Err(Error::invalid(format!("subnet {subnet} is too small: at most /30")));
        }
        let gateway = gateway.unwrap_or(Ipv4Addr::from(subnet.first() + 1));
        if !subnet.contains(gateway) || !usable(&subnet, gateway) {
            return Err(Error::invalid(format!("gateway {gateway} is not a host address of subnet {subnet}")));
        }
        if let Some(r) = range {
            if !(subnet.contains(r.addr) && subnet.contains(Ipv4Addr::from(r.last()))) {
                return Err(Error::invalid(format!("ip-range {r} is not inside subnet {subnet}")));
            }
        }
        Ok(Pool { subnet, gateway, range, allocs: BTreeMap::new() })
    }

    /// The address `holder` has, if any.
    pub fn held_by(&self, holder: &str) -> Option<Ipv4Addr> {
        self.allocs.iter().find(|(_, h)| h.as_str() == holder).map(|(a, _)| *a)
    }

    /// Gives `holder` an address: `want` (`--ip`) or the first free one of the range. A holder
    /// that already has one keeps it (a restart, or a retry after a crash).
    pub fn allocate(&mut self, holder: &str, want: Option<Ipv4Addr>, network: &str) -> Result<Ipv4Addr> {
        if let Some(have) = self.held_by(holder) {
            if want.is_none() || want == Some(have) {
                return Ok(have);
            }
            self.release(holder);
        }
        if let Some(ip) = want {
            if !self.subnet.contains(ip) || !usable(&self.subnet, ip) {
                return Err(Error::invalid(format!(
                    "invalid address {ip}: it does not belong to subnet {} of network {network}",
                    self.subnet
                )));
            }
            if ip == self.gateway || self.allocs.contains_key(&ip) {
                return Err(Error::conflict(format!("address {ip} is already in use on network {network}")));
            }
            self.allocs.insert(ip, holder.to_string());
            return Ok(ip);
        }
        let r = self.range.unwrap_or(self.subnet);
        for n in r.first()..=r.last() {
            let ip = Ipv4Addr::from(n);
            if usable(&self.subnet, ip) && ip != self.gateway && !self.allocs.contains_key(&ip) {
                self.allocs.insert(ip, holder.to_string());
                return Ok(ip);
            }
        }
        Err(Error::conflict(format!("no available IPv4 addresses on network {network}'s address pool {r}")))
    }

    pub fn release(&mut self, holder: &str) -> bool {
        let before = self.allocs.len();
        self.allocs.retain(|_, h| h != holder);
        self.allocs.len() != before
    }
}

/// Not the subnet's own address nor its broadcast address.
fn usable(subnet: &Subnet, ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    n != subnet.first() && n != subnet.last()
}

/// Docker's MAC for an address: 02:42 followed by the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bad = || Error::invalid(format!("invalid MAC address: {s}"));
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if m[0] & 1 == 1 {
        return Err(Error::invalid(format!("invalid MAC address: {s}: a multicast address")));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse("172.17.3.4/16").unwrap();
        assert_eq!(s.to_string(), "172.17.0.0/16");
        assert!(s.contains(ip("172.17.255.1")) && !s.contains(ip("172.18.0.1")));
        assert!(s.overlaps(&Subnet::parse("172.17.5.0/24").unwrap()));
        assert!(Subnet::parse("172.0.0.0/8").unwrap().overlaps(&s));
        assert!(!s.overlaps(&Subnet::parse("172.18.0.0/16").unwrap()));
        assert!(Subnet::parse("0.0.0.0/0").unwrap().overlaps(&s));
        for bad in ["172.17.0.0", "172.17.0.0/33", "x/16", "::1/64"] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allocation_skips_gateway_and_never_reuses() {
        let mut p = Pool::new(Subnet::parse("10.9.0.0/29").unwrap(), None, None).unwrap();
        assert_eq!(p.gateway, ip("10.9.0.1"));
        let a = p.allocate("a", None, "n").unwrap();
        let b = p.allocate("b", None, "n").unwrap();
        assert_eq!((a, b), (ip("10.9.0.2"), ip("10.9.0.3")));
        // Same holder again: same address.
        assert_eq!(p.allocate("a", None, "n").unwrap(), a);
        for h in ["c", "d", "e"] {
            p.allocate(h, None, "n").unwrap();
        }
        // .7 is the broadcast address: the pool is full.
        let e = p.allocate("f", None, "n").unwrap_err();
        assert!(e.to_string().contains("no available IPv4 addresses"), "{e}");
        assert!(p.release("b"));
        assert_eq!(p.allocate("f", None, "n").unwrap(), b);
        // Survives a round trip through its record.
        let back: Pool = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn static_addresses_are_checked() {
        let mut p = Pool::new(Subnet::parse("10.9.0.0/24").unwrap(), None, Some(Subnet::parse("10.9.0.128/25").unwrap())).unwrap();
        assert_eq!(p.allocate("a", None, "n").unwrap(), ip("10.9.0.128"));
        assert_eq!(p.allocate("b", Some(ip("10.9.0.5")), "n").unwrap(), ip("10.9.0.5"));
        let e = p.allocate("c", Some(ip("10.9.0.5")), "n").unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        let e = p.allocate("c", Some(ip("10.8.0.5")), "n").unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        assert!(p.allocate("c", Some(ip("10.9.0.1")), "n").is_err());
        assert!(p.allocate("c", Some(ip("10.9.0.255")), "n").is_err());
    }

    #[test]
    fn bad_pools() {
        let s = Subnet::parse("10.9.0.0/24").unwrap();
        assert!(Pool::new(s, Some(ip("10.8.0.1")), None).is_err());
        assert!(Pool::new(s, None, Some(Subnet::parse("10.0.0.0/8").unwrap())).is_err());
        assert!(Pool::new(Subnet::parse("10.9.0.0/31").unwrap(), None, None).is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(format_mac(&mac_for(ip("172.17.0.2"))), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00:02").unwrap(), mac_for(ip("172.17.0.2")));
        assert!(parse_mac("01:00:00:00:00:00").is_err());
        assert!(parse_mac("02:42:ac:11:00").is_err());
    }
}
