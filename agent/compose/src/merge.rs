//! `-f a.yaml -f b.yaml`: later files override earlier ones, merged on the YAML tree as Compose
//! merges them. Mappings merge key by key; a service's `command`, `entrypoint` and
//! `healthcheck.test` are replaced; `environment`, `labels`, `sysctls`, `extra_hosts`,
//! `depends_on` and `networks` merge as mappings whichever syntax each file used; `volumes` and
//! `devices` merge by container path; `ports`, `expose`, `dns`, `tmpfs`, `cap_add`, `cap_drop`,
//! `security_opt`, `device_cgroup_rules` and `env_file` are concatenated without duplicates.
//! Anything else: the later file's value replaces the earlier one.

use crate::yaml::{Key, Node, Value};

/// Merges `over` into `base`.
pub fn merge(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, v) in o {
                match b.iter_mut().find(|(bk, _)| bk.text == k.text) {
                    Some((_, bv)) if k.text == "services" => merge_services(bv, v),
                    Some((_, bv)) => merge(bv, v),
                    None => b.push((k, v)),
                }
            }
        }
        (_, v) => {
            base.value = v;
            base.mark = over.mark;
        }
    }
}

fn merge_services(base: &mut Node, over: Node) {
    let Value::Map(o) = over.value else {
        base.value = over.value;
        return;
    };
    let Value::Map(b) = &mut base.value else {
        base.value = Value::Map(o);
        return;
    };
    for (name, svc) in o {
        match b.iter_mut().find(|(bk, _)| bk.text == name.text) {
            Some((_, bsvc)) => merge_service(bsvc, svc),
            None => b.push((name, svc)),
        }
    }
}

const AS_MAP: &[&str] = &["environment", "labels", "sysctls", "extra_hosts", "depends_on", "networks"];
const CONCAT: &[&str] = &["ports", "expose", "dns", "tmpfs", "cap_add", "cap_drop", "security_opt", "device_cgroup_rules", "env_file"];
const BY_TARGET: &[&str] = &["volumes", "devices"];

fn merge_service(base: &mut Node, over: Node) {
    let (Value::Map(b), Value::Map(o)) = (&mut base.value, over.value.clone()) else {
        merge(base, over);
        return;
    };
    for (k, v) in o {
        let Some((_, bv)) = b.iter_mut().find(|(bk, _)| bk.text == k.text) else {
            b.push((k, v));
            continue;
        };
        let key = k.text.as_str();
        if key == "command" || key == "entrypoint" {
            *bv = v;
        } else if key == "healthcheck" {
            match (&mut bv.value, &v.value) {
                (Value::Map(hb), Value::Map(ho)) => {
                    for (hk, hv) in ho {
                        match hb.iter_mut().find(|(x, _)| x.text == hk.text) {
                            Some((_, slot)) => *slot = hv.clone(),
                            None => hb.push((hk.clone(), hv.clone())),
                        }
                    }
                }
                _ => *bv = v,
            }
        } else if AS_MAP.contains(&key) {
            let sep: &[char] = if key == "extra_hosts" { &['=', ':'] } else { &['='] };
            to_map(bv, sep);
            let mut v = v;
            to_map(&mut v, sep);
            merge(bv, v);
        } else if CONCAT.contains(&key) {
            concat(bv, v, |_| None);
        } else if BY_TARGET.contains(&key) {
            concat(bv, v, target_of);
        } else {
            merge(bv, v);
        }
    }
}

/// A list of `K=V`/`K` (or names) as the equivalent mapping; a mapping stays as it is.
fn to_map(n: &mut Node, sep: &[char]) {
    let Value::Seq(items) = &n.value else { return };
    let mut m: Vec<(Key, Node)> = Vec::new();
    for x in items {
        let Value::Scalar { text, .. } = &x.value else { return };
        let (k, v) = match text.split_once(sep) {
            Some((k, v)) => (k.to_string(), Value::Scalar { text: v.to_string(), plain: false }),
            None => (text.clone(), Value::Null),
        };
        m.retain(|(x, _)| x.text != k);
        m.push((Key { text: k, mark: x.mark }, Node::new(x.mark, v)));
    }
    n.value = Value::Map(m);
}

/// The container path of a volume or device entry (short or long syntax).
fn target_of(n: &Node) -> Option<String> {
    match &n.value {
        Value::Scalar { text, .. } => {
            let parts: Vec<&str> = text.split(':').collect();
            match parts.as_slice() {
                [t] => Some(t.to_string()),
                [_, t, ..] => Some(t.to_string()),
                _ => None,
            }
        }
        Value::Map(_) => match n.get("target").map(|t| &t.value) {
            Some(Value::Scalar { text, .. }) => Some(text.clone()),
            _ => n.get("source").and_then(|s| match &s.value {
                Value::Scalar { text, .. } => Some(text.clone()),
                _ => None,
            }),
        },
        _ => None,
    }
}

/// Appends `over`'s items to `base`'s: an item equal to one already there is skipped; with a
/// `key`, an item whose key matches one already there replaces it.
fn concat(base: &mut Node, over: Node, key: impl Fn(&Node) -> Option<String>) {
    let as_list = |n: Node| match n.value {
        Value::Seq(v) => v,
        Value::Null => Vec::new(),
        other => vec![Node::new(n.mark, other)],
    };
    let mark = base.mark;
    let mut items = as_list(std::mem::replace(base, Node::new(mark, Value::Null)));
    for x in as_list(over) {
        let k = key(&x);
        if let Some(slot) = items.iter_mut().find(|y| k.is_some() && key(y) == k) {
            *slot = x;
        } else if !items.iter().any(|y| y.value == x.value) {
            items.push(x);
        }
    }
    *base = Node::new(mark, Value::Seq(items));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_project;

    fn merged(a: &str, b: &str) -> crate::model::Project {
        let mut base = crate::yaml::parse(a).unwrap();
        merge(&mut base, crate::yaml::parse(b).unwrap());
        parse_project(&base).unwrap()
    }

    #[test]
    fn override_file() {
        let p = merged(
            "services:
  web:
    image: app:1
    command: [serve, --port, '80']
    environment: [A=1, B=2]
    ports: ['8080:80']
    volumes: ['./data:/data', 'logs:/logs']
    depends_on: [db]
    cap_add: [NET_ADMIN]
    healthcheck: {test: [CMD, a], interval: 5s}
  db:
    image: db:1
",
            "services:
  web:
    image: app:2
    command: serve
    environment: {B: three, C: '4'}
    ports: ['8080:80', '9090:90']
    volumes: [{type: bind, source: /srv, target: /data}]
    depends_on: {cache: {condition: service_healthy}}
    cap_add: [NET_ADMIN, SYS_TIME]
    healthcheck: {test: [CMD, b]}
  cache:
    image: cache:1
",
        );
        let web = &p.services["web"];
        assert_eq!(web.image.as_deref(), Some("app:2"));
        assert_eq!(web.command.as_deref(), Some(&["serve".to_string()][..]));
        let env: Vec<(&str, Option<&str>)> = web.environment.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        assert_eq!(env, [("A", Some("1")), ("B", Some("three")), ("C", Some("4"))]);
        assert_eq!(web.ports.iter().map(|p| p.target).collect::<Vec<_>>(), [80, 90]);
        assert_eq!(web.volumes.len(), 2);
        assert_eq!(web.volumes[0].source.as_deref(), Some("/srv"));
        assert_eq!(web.volumes[1].target, "/logs");
        assert_eq!(web.depends_on.keys().collect::<Vec<_>>(), ["cache", "db"]);
        assert_eq!(web.cap_add, ["NET_ADMIN", "SYS_TIME"]);
        let h = web.healthcheck.as_ref().unwrap();
        assert_eq!(h.test, ["CMD", "b"]);
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(p.services.keys().collect::<Vec<_>>(), ["cache", "db", "web"]);
    }

    #[test]
    fn top_level_maps_merge() {
        let p = merged("name: a\nvolumes: {v1: {}}\nnetworks: {n1: {}}\n", "name: b\nvolumes: {v2: {}}\n");
        assert_eq!(p.name.as_deref(), Some("b"));
        assert_eq!(p.volumes.keys().collect::<Vec<_>>(), ["v1", "v2"]);
        assert_eq!(p.networks.len(), 1);
    }
}
