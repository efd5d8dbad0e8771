//! Docker's `-p`/`--publish` grammar: `[IP:][HOST:]CONTAINER[/tcp|udp]`, with ranges on either
//! side (`8000-8002:80-82`, `8000-8010:80` takes the first free host port of the range), and
//! `-p CONTAINER` (a random host port). Parsing only: which host port a request gets is decided
//! by the network state (see `network::publish`).

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
    pub fn parse(s: &str) -> Result<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(Error::invalid(format!("invalid proto: {s}"))),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One requested binding: a container port and where on the host it should appear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRequest {
    /// `None`: every address of the host (Docker's 0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    /// The host ports acceptable for this binding: `(0, 0)` any free one, `(p, p)` exactly `p`,
    /// `(lo, hi)` the first free one of the range.
    pub host_ports: (u16, u16),
    pub container_port: u16,
    pub proto: Proto,
}

/// A binding as it is made: the host port chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Published {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl Published {
    /// As `docker port` prints it: `80/tcp -> 0.0.0.0:8080`.
    pub fn describe(&self) -> String {
        format!("{}/{} -> {}:{}", self.container_port, self.proto, self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), self.host_port)
    }
}

fn port(s: &str, what: &str) -> Result<u16> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::invalid(format!("invalid {what}: {s}"))),
    }
}

fn range(s: &str, what: &str) -> Result<(u16, u16)> {
    match s.split_once('-') {
        None => port(s, what).map(|p| (p, p)),
        Some((a, b)) => {
            let (lo, hi) = (port(a, what)?, port(b, what)?);
            if hi < lo {
                return Err(Error::invalid(format!("invalid range specified for {what}: {s}")));
            }
            Ok((lo, hi))
        }
    }
}

/// Parses one `-p` value into its bindings (a range gives one per port).
pub fn parse(spec: &str) -> Result<Vec<PortRequest>> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, Proto::parse(p)?),
        None => (spec, Proto::Tcp),
    };
    if rest.starts_with('[') {
        return Err(Error::invalid(format!("invalid port specification: {spec:?}: IPv6 host addresses are not supported yet")));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, cont) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => return Err(Error::invalid(format!("invalid port specification: {spec:?}"))),
    };
    let host_ip = match ip {
        None | Some("") | Some("0.0.0.0") => None,
        Some(a) => Some(a.parse::<Ipv4Addr>().map_err(|_| Error::invalid(format!("invalid IP address: {a}")))?),
    };
    let cont = range(cont, "containerPort")?;
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(range(h, "hostPort")?),
    };
    let count = cont.1 - cont.0;
    let mut out = Vec::new();
    for i in 0..=count {
        let host_ports = match host {
            None => (0, 0),
            Some((lo, hi)) if hi - lo == count => (lo + i, lo + i),
            Some((lo, hi)) if count == 0 => (lo, hi),
            Some(_) => return Err(Error::invalid(format!("invalid ranges specified for container and host Ports: {spec:?}"))),
        };
        out.push(PortRequest { host_ip, host_ports, container_port: cont.0 + i, proto });
    }
    Ok(out)
}

/// An image's `EXPOSE` key (`80/tcp`, `53/udp`, `8000-8002/tcp`) as `-P` publishes it: every
/// port on a random host port.
pub fn exposed(key: &str) -> Result<Vec<PortRequest>> {
    let (p, proto) = match key.split_once('/') {
        Some((p, proto)) => (p, Proto::parse(proto)?),
        None => (key, Proto::Tcp),
    };
    let (lo, hi) = range(p, "containerPort")?;
    Ok((lo..=hi).map(|c| PortRequest { host_ip: None, host_ports: (0, 0), container_port: c, proto }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortRequest {
        let mut v = parse(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v.remove(0)
    }

    #[test]
    fn the_forms_docker_takes() {
        assert_eq!(one("80"), PortRequest { host_ip: None, host_ports: (0, 0), container_port: 80, proto: Proto::Tcp });
        assert_eq!(one("8080:80").host_ports, (8080, 8080));
        assert_eq!(one("8080:80/udp").proto, Proto::Udp);
        assert_eq!(one("127.0.0.1:8080:80").host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(one("0.0.0.0:8080:80").host_ip, None);
        assert_eq!(one("127.0.0.1::80").host_ports, (0, 0));
        assert_eq!(one("8000-8010:80").host_ports, (8000, 8010));
        let r = parse("8000-8002:90-92/udp").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[2].host_ports, r[2].container_port, r[2].proto), ((8002, 8002), 92, Proto::Udp));
        assert_eq!(parse("90-92").unwrap().len(), 3);
    }

    #[test]
    fn bad_specs_are_refused_with_docker_words() {
        for (spec, want) in [
            ("abc", "invalid containerPort: abc"),
            ("70000:80", "invalid hostPort: 70000"),
            ("80/sctp", "invalid proto: sctp"),
            ("8000-8001:80-82", "invalid ranges"),
            ("90-80", "invalid range"),
            ("1.2.3:80:80", "invalid IP address"),
            ("a:b:c:d", "invalid port specification"),
            ("0", "invalid containerPort: 0"),
        ] {
            let e = parse(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn expose_keys() {
        assert_eq!(exposed("53/udp").unwrap()[0].proto, Proto::Udp);
        assert_eq!(exposed("8000-8002/tcp").unwrap().len(), 3);
        assert!(exposed("x/tcp").is_err());
    }

    #[test]
    fn describe_as_docker_port() {
        let p = Published { host_ip: None, host_port: 8080, container_port: 80, proto: Proto::Tcp };
        assert_eq!(p.describe(), "80/tcp -> 0.0.0.0:8080");
    }
}
