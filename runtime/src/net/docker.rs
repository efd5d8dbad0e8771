//! Networks as Docker shows them: `network inspect` and `network ls` objects, a container's
//! `NetworkSettings`, `HostConfig.PortBindings`, the `ps` PORTS column and `docker port` lines.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::net::config::ContainerNet;
use crate::net::ipam::format_mac;
use crate::net::network::Network;
use crate::net::ports::{PortRequest, Published};

/// `docker network inspect`'s object for one network.
pub fn network_inspect(n: &Network) -> Value {
    let mut ipam = Map::new();
    ipam.insert("Subnet".into(), json!(n.pool.subnet.to_string()));
    if let Some(r) = n.pool.range {
        ipam.insert("IPRange".into(), json!(r.to_string()));
    }
    ipam.insert("Gateway".into(), json!(n.pool.gateway.to_string()));
    let containers: Map<String, Value> = n
        .endpoints
        .iter()
        .map(|(id, e)| {
            (
                id.clone(),
                json!({
                    "Name": e.name,
                    "EndpointID": endpoint_id(&n.id, id),
                    "MacAddress": format_mac(&e.mac),
                    "IPv4Address": format!("{}/{}", e.ip, n.pool.subnet.prefix),
                    "IPv6Address": "",
                }),
            )
        })
        .collect();
    let mut options: BTreeMap<String, String> = n.options.clone();
    options.entry(crate::net::network::OPT_BRIDGE_NAME.into()).or_insert_with(|| n.bridge.clone());
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [Value::Object(ipam)]},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    })
}

/// `docker network ls --format json`'s object for one network.
pub fn network_ls(n: &Network) -> Value {
    json!({
        "ID": n.short_id(),
        "Name": n.name,
        "Driver": n.driver,
        "Scope": "local",
        "IPv6": "false",
        "Internal": n.internal.to_string(),
        "CreatedAt": n.created,
        "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
    })
}

/// A stable endpoint id: the network's and container's ids hashed (Docker makes a random one;
/// berth keeps none on disk, so it derives one).
fn endpoint_id(net: &str, container: &str) -> String {
    crate::digest::to_hex(&crate::digest::sha256(format!("{net}/{container}").as_bytes()))
}

/// The published ports of a running container on its networks, in order.
pub fn published(nets: &[Network], container: &str) -> Vec<Published> {
    let mut out: Vec<Published> = nets.iter().filter_map(|n| n.endpoints.get(container)).flat_map(|e| e.ports.iter().copied()).collect();
    out.sort();
    out.dedup();
    out
}

/// `HostConfig.PortBindings`: what was asked, by container port.
pub fn port_bindings(reqs: &[PortRequest]) -> Value {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in reqs {
        let hp = match r.host_ports {
            (0, 0) => String::new(),
            (a, b) if a == b => a.to_string(),
            (a, b) => format!("{a}-{b}"),
        };
        m.entry(format!("{}/{}", r.container_port, r.proto))
            .or_default()
            .push(json!({"HostIp": r.host_ip.map(|i| i.to_string()).unwrap_or_default(), "HostPort": hp}));
    }
    json!(m)
}

/// `NetworkSettings.Ports`: every exposed or requested port, with its bindings while running
/// (null when it is not published).
pub fn ports_value(cfg: &ContainerNet, exposed: &[String], published: &[Published]) -> Value {
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    for e in exposed {
        let key = if e.contains('/') { e.clone() } else { format!("{e}/tcp") };
        m.insert(key, Value::Null);
    }
    for r in &cfg.ports {
        m.insert(format!("{}/{}", r.container_port, r.proto), Value::Null);
    }
    for p in published {
        let key = format!("{}/{}", p.container_port, p.proto);
        let b =
            json!({"HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()), "HostPort": p.host_port.to_string()});
        match m.get_mut(&key) {
            Some(Value::Array(v)) => v.push(b),
            _ => {
                m.insert(key, json!([b]));
            }
        }
    }
    json!(m)
}

/// `NetworkSettings` of a container: top-level fields from its first network, `Networks` per
/// network (addresses only while it runs, as Docker's).
pub fn network_settings(cfg: &ContainerNet, nets: &[Network], id: &str, exposed: &[String], sandbox: &str) -> Value {
    let published = published(nets, id);
    let mut networks = Map::new();
    let mut top = json!({"Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""});
    for (i, r) in cfg.networks.iter().enumerate() {
        let net = nets.iter().find(|n| n.name == r.name);
        let ep = net.and_then(|n| n.endpoints.get(id));
        let (ip, prefix, gw, mac) = match (net, ep) {
            (Some(n), Some(e)) => (e.ip.to_string(), n.pool.subnet.prefix, n.pool.gateway.to_string(), format_mac(&e.mac)),
            _ => (String::new(), 0, String::new(), String::new()),
        };
        if i == 0 {
            top = json!({"Gateway": gw, "IPAddress": ip, "IPPrefixLen": prefix, "MacAddress": mac});
        }
        let mut dns_names: Vec<String> = Vec::new();
        if let Some(e) = ep {
            dns_names.push(e.name.clone());
            dns_names.extend(e.aliases.iter().cloned());
            dns_names.push(id[..12.min(id.len())].to_string());
        }
        networks.insert(
            r.name.clone(),
            json!({
                "IPAMConfig": r.ip.map(|a| json!({"IPv4Address": a.to_string()})),
                "Links": if i == 0 && !cfg.links.is_empty() { json!(cfg.links) } else { Value::Null },
                "Aliases": if r.aliases.is_empty() { Value::Null } else { json!(r.aliases) },
                "MacAddress": mac,
                "NetworkID": net.map(|n| n.id.clone()).unwrap_or_default(),
                "EndpointID": if ep.is_some() { endpoint_id(&net.map(|n| n.id.clone()).unwrap_or_default(), id) } else { String::new() },
                "Gateway": gw,
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": if dns_names.is_empty() { Value::Null } else { json!(dns_names) },
            }),
        );
    }
    json!({
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": sandbox,
        "Ports": ports_value(cfg, exposed, &published),
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Gateway": top["Gateway"],
        "IPAddress": top["IPAddress"],
        "IPPrefixLen": top["IPPrefixLen"],
        "MacAddress": top["MacAddress"],
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPv6Gateway": "",
        "EndpointID": "",
        "Networks": networks,
    })
}

/// The `ps` PORTS column: `0.0.0.0:8080->80/tcp, 53/udp`.
pub fn ps_ports(cfg: &ContainerNet, published: &[Published]) -> String {
    let mut parts: Vec<String> = published
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                p.host_port,
                p.container_port,
                p.proto
            )
        })
        .collect();
    for r in &cfg.ports {
        if !published.iter().any(|p| p.container_port == r.container_port && p.proto == r.proto) {
            parts.push(format!("{}/{}", r.container_port, r.proto));
        }
    }
    parts.dedup();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ports::{parse, Proto};

    #[test]
    fn ports_shapes() {
        let cfg =
            ContainerNet { ports: parse("8080:80").unwrap().into_iter().chain(parse("53/udp").unwrap()).collect(), ..Default::default() };
        let p = [Published { host_ip: None, host_port: 8080, container_port: 80, proto: Proto::Tcp }];
        assert_eq!(ps_ports(&cfg, &p), "0.0.0.0:8080->80/tcp, 53/udp");
        let v = ports_value(&cfg, &["443/tcp".into()], &p);
        assert_eq!(v["80/tcp"][0]["HostPort"], "8080");
        assert_eq!(v["443/tcp"], Value::Null);
        assert_eq!(v["53/udp"], Value::Null);
        let b = port_bindings(&cfg.ports);
        assert_eq!(b["80/tcp"][0]["HostPort"], "8080");
        assert_eq!(b["53/udp"][0]["HostPort"], "");
    }
}
