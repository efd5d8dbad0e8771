//! Checks across the whole project: what one service names must exist, `depends_on` has no
//! cycle, no two services publish one host port; and the start order.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Error, MountKind, Project, Result};

pub fn check(p: &Project) -> Result<()> {
    let mark = |s: &str| p.marks.get(s).copied().unwrap_or_default();
    for (name, s) in &p.services {
        if s.image.as_deref().unwrap_or("").is_empty() {
            return Err(Error::at(mark(name), format!("service {name:?} has no image (berth does not build images)")));
        }
        for (dep, d) in &s.depends_on {
            if d.required && !p.services.contains_key(dep) {
                return Err(Error::at(d.mark, format!("service {name:?} depends on undefined service {dep:?}")));
            }
        }
        if let Some(mode) = &s.network_mode {
            if !s.networks.is_empty() {
                return Err(Error::at(mark(name), format!("service {name:?} declares mutually exclusive `network_mode` and `networks`")));
            }
            if let Some(other) = mode.strip_prefix("service:") {
                if !p.services.contains_key(other) {
                    return Err(Error::at(mark(name), format!("service {name:?} uses the network of undefined service {other:?}")));
                }
            }
        }
        for n in s.networks.keys() {
            if !p.networks.contains_key(n) {
                return Err(Error::at(mark(name), format!("service {name:?} refers to undefined network {n:?}")));
            }
        }
        for m in &s.volumes {
            if let (MountKind::Volume, Some(v)) = (m.kind, &m.source) {
                if !p.volumes.contains_key(v) {
                    return Err(Error::at(m.mark, format!("service {name:?} refers to undefined volume {v:?}")));
                }
            }
        }
        if let (Some(a), Some(b)) = (s.mem_limit, s.limits.memory) {
            if a != b {
                return Err(Error::at(mark(name), format!("service {name:?}: mem_limit and deploy.resources.limits.memory differ")));
            }
        }
        if let (Some(a), Some(b)) = (s.cpus, s.limits.cpus) {
            if a != b {
                return Err(Error::at(mark(name), format!("service {name:?}: cpus and deploy.resources.limits.cpus differ")));
            }
        }
        if let (Some(a), Some(b)) = (s.pids_limit, s.limits.pids) {
            if a != b {
                return Err(Error::at(mark(name), format!("service {name:?}: pids_limit and deploy.resources.limits.pids differ")));
            }
        }
    }
    if let Some(cycle) = find_cycle(p) {
        let first = cycle.first().cloned().unwrap_or_default();
        return Err(Error::at(mark(&first), format!("dependency cycle: {}", cycle.join(" -> "))));
    }
    check_ports(p)
}

/// A `depends_on` cycle as `[a, b, a]`, if there is one.
pub fn find_cycle(p: &Project) -> Option<Vec<String>> {
    // 0 = not seen, 1 = on the current path, 2 = done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    for start in p.services.keys() {
        if state.get(start.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        // Iterative DFS keeping the path, so a long chain cannot overflow the stack.
        let mut path: Vec<&str> = vec![start];
        let mut iters: Vec<std::vec::IntoIter<&str>> = vec![deps(p, start)];
        state.insert(start, 1);
        while let Some(it) = iters.last_mut() {
            match it.next() {
                Some(d) => match state.get(d).copied().unwrap_or(0) {
                    0 => {
                        state.insert(d, 1);
                        path.push(d);
                        iters.push(deps(p, d));
                    }
                    1 => {
                        let from = path.iter().position(|x| *x == d).unwrap_or(0);
                        let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                        cycle.push(d.to_string());
                        return Some(cycle);
                    }
                    _ => {}
                },
                None => {
                    iters.pop();
                    if let Some(done) = path.pop() {
                        state.insert(done, 2);
                    }
                }
            }
        }
    }
    None
}

fn deps<'a>(p: &'a Project, name: &str) -> std::vec::IntoIter<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    if let Some(s) = p.services.get(name) {
        v.extend(s.depends_on.keys().map(String::as_str).filter(|d| p.services.contains_key(*d)));
        // `network_mode: service:x` needs x running first, as Compose orders it.
        if let Some(other) = s.network_mode.as_deref().and_then(|m| m.strip_prefix("service:")) {
            if let Some((k, _)) = p.services.get_key_value(other) {
                v.push(k.as_str());
            }
        }
    }
    v.into_iter()
}

/// Services in start order: every service after those it depends on; among services that are
/// ready at the same time, by name (stable across runs). Assumes no cycle (see [`check`]).
pub fn start_order(p: &Project) -> Vec<String> {
    start_levels(p).into_iter().flatten().collect()
}

/// Services by dependency level: those that depend on nothing first, then those whose
/// dependencies are all in earlier levels, and so on; by name within a level. Services of one
/// level may start, or stop, at the same time. Assumes no cycle (see [`check`]).
pub fn start_levels(p: &Project) -> Vec<Vec<String>> {
    let mut pending: BTreeMap<&str, BTreeSet<&str>> = p.services.keys().map(|n| (n.as_str(), deps(p, n).collect())).collect();
    let mut out = Vec::new();
    loop {
        let ready: Vec<&str> = pending.iter().filter(|(_, d)| d.is_empty()).map(|(n, _)| *n).collect();
        if ready.is_empty() {
            break;
        }
        for n in &ready {
            pending.remove(n);
            for d in pending.values_mut() {
                d.remove(n);
            }
        }
        out.push(ready.into_iter().map(str::to_string).collect());
    }
    // Anything left is on a cycle; keep it rather than lose it.
    if !pending.is_empty() {
        out.push(pending.keys().map(|s| s.to_string()).collect());
    }
    out
}

/// `services` (names) with everything they need, transitively, in start order.
pub fn with_dependencies(p: &Project, services: &[String]) -> Vec<String> {
    let mut want: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = services.to_vec();
    while let Some(s) = todo.pop() {
        if want.insert(s.clone()) {
            todo.extend(deps(p, &s).map(str::to_string));
        }
    }
    start_order(p).into_iter().filter(|s| want.contains(s)).collect()
}

fn check_ports(p: &Project) -> Result<()> {
    // (host ip, protocol, port) -> (service, target)
    let mut taken: BTreeMap<(String, String, u16), (&str, u16)> = BTreeMap::new();
    for (name, s) in &p.services {
        for port in &s.ports {
            let Some(published) = &port.published else { continue };
            let (a, b) = match published.split_once('-') {
                Some((a, b)) => (a.parse::<u16>().unwrap_or(0), b.parse::<u16>().unwrap_or(0)),
                None => {
                    let n = published.parse::<u16>().unwrap_or(0);
                    (n, n)
                }
            };
            if a != b {
                // A range is "any free port of it": only a full overlap is a sure conflict.
                continue;
            }
            let ip = port.host_ip.clone().unwrap_or_default();
            for (other_ip, proto, n) in [(ip.clone(), port.protocol.clone(), a)] {
                // 0.0.0.0 (all addresses) clashes with any address on the same port.
                let clash = taken.iter().find(|((i, pr, pn), _)| {
                    *pr == proto
                        && *pn == n
                        && (i == &other_ip || i.is_empty() || other_ip.is_empty() || i == "0.0.0.0" || other_ip == "0.0.0.0")
                });
                if let Some((_, (svc, target))) = clash {
                    if *svc != name.as_str() || *target != port.target {
                        return Err(Error::at(port.mark, format!("services {svc:?} and {name:?} both publish host port {n}/{proto}")));
                    }
                    continue;
                }
                taken.insert((other_ip, proto, n), (name, port.target));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(t: &str) -> Result<Project> {
        let p = crate::model::parse_project(&crate::yaml::parse(t).unwrap())?;
        check(&p).map(|_| p)
    }

    #[test]
    fn order_is_topological_and_stable() {
        let p = project(
            "services:
  web: {image: x, depends_on: [api, cache]}
  api: {image: x, depends_on: {db: {condition: service_healthy}}}
  db: {image: x}
  cache: {image: x}
  zed: {image: x}
  side: {image: x, network_mode: 'service:web'}
",
        )
        .unwrap();
        assert_eq!(start_order(&p), ["cache", "db", "zed", "api", "web", "side"]);
        assert_eq!(with_dependencies(&p, &["api".into()]), ["db", "api"]);
    }

    #[test]
    fn cycles_are_named() {
        let e =
            project("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n  c: {image: x, depends_on: [a]}\n")
                .unwrap_err();
        assert_eq!(e.msg, "dependency cycle: a -> b -> c -> a");
        assert_eq!(e.mark.unwrap().line, 2);
        let e = project("services:\n  a: {image: x, depends_on: [a]}\n").unwrap_err();
        assert_eq!(e.msg, "dependency cycle: a -> a");
    }

    #[test]
    fn undeclared_things() {
        let e = project("services:\n  a: {image: x, depends_on: [nope]}\n").unwrap_err();
        assert!(e.msg.contains("undefined service \"nope\""), "{e}");
        assert!(project("services:\n  a: {image: x, depends_on: {nope: {required: false}}}\n").is_ok());
        let e = project("services:\n  a:\n    image: x\n    networks: [front]\n").unwrap_err();
        assert!(e.msg.contains("undefined network \"front\""), "{e}");
        let e = project("services:\n  a:\n    image: x\n    volumes: ['data:/d']\n").unwrap_err();
        assert_eq!(e.mark.unwrap().line, 4);
        assert!(e.msg.contains("undefined volume \"data\""), "{e}");
        assert!(project("services:\n  a:\n    image: x\n    volumes: ['./data:/d', '/abs:/e']\n").is_ok());
        assert!(project("services:\n  a: {command: x}\n").unwrap_err().msg.contains("no image"));
    }

    #[test]
    fn one_host_port_twice() {
        let e =
            project("services:\n  a: {image: x, ports: ['8080:80']}\n  b:\n    image: x\n    ports: ['127.0.0.1:8080:81']\n").unwrap_err();
        assert_eq!(e.msg, "services \"a\" and \"b\" both publish host port 8080/tcp");
        assert_eq!(e.mark.unwrap().line, 5);
        assert!(project("services:\n  a: {image: x, ports: ['8080:80']}\n  b: {image: x, ports: ['8080:80/udp', '8081:80']}\n").is_ok());
        assert!(
            project("services:\n  a: {image: x, ports: ['127.0.0.1:8080:80']}\n  b: {image: x, ports: ['127.0.0.2:8080:80']}\n").is_ok()
        );
        assert!(project("services:\n  a: {image: x, ports: ['8080:80', '8080:80']}\n").is_ok());
    }
}
