//! What a uevent means for a running container: which of its watches (a `--device` directory, a
//! USB id, a `--device-cgroup-rule`) covers the node, where the node goes in the container, and
//! whether the container's cgroup needs a rule for it. Pure decisions; the agent carries them out.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::rule::{Access, Rule};
use crate::uevent::Uevent;
use crate::usb;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Watch {
    /// Nodes appearing under a host directory given with `--device DIR[:CONTAINER_DIR]`.
    Dir { host: String, container: String, access: Access },
    /// Nodes of a USB device given with `--device usb:VID:PID[:SERIAL]` (re-plugged, or its tty
    /// appearing once the driver binds).
    Usb { vendor: u16, product: u16, serial: Option<String>, access: Access },
    /// `--device-cgroup-rule`: the container may already open such devices; the node is made at
    /// its host path so that it can.
    Rule(Rule),
}

/// A node to make in a container, and the cgroup rule to add with it (none when a
/// `--device-cgroup-rule` already allows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub node: Node,
    pub rule: Option<Rule>,
}

/// Where `devname` falls under `dir`, as a path relative to it.
fn under<'a>(devname: &'a str, dir: &str) -> Option<&'a str> {
    let rest = devname.strip_prefix(dir.trim_end_matches('/'))?;
    rest.strip_prefix('/').filter(|r| !r.is_empty())
}

/// For an `add` (or `change`: a loop device being attached) event: the node to make, if any watch
/// covers it. `sysfs` is normally `/sys`.
pub fn on_add(watches: &[Watch], ev: &Uevent, sysfs: &Path) -> Option<Plan> {
    let (Some(devname), Some(major), Some(minor)) = (ev.devname.as_deref(), ev.major, ev.minor) else { return None };
    let kind = ev.kind();
    let node = |path: String, access: Access| {
        // The kernel made the host node (devtmpfs) before it sent the event; udev may change its
        // mode and owner later, which a container does not follow.
        let (mode, uid, gid) = std::fs::metadata(devname).map(|m| (m.mode() & 0o7777, m.uid(), m.gid())).unwrap_or((0o600, 0, 0));
        Node { path, host: devname.to_string(), kind, major, minor, mode, uid, gid, access, bind: false }
    };
    let mut owner: Option<Option<(u16, u16, Option<String>)>> = None;
    for w in watches {
        match w {
            Watch::Dir { host, container, access } => {
                if let Some(rel) = under(devname, host) {
                    let n = node(format!("{}/{rel}", container.trim_end_matches('/')), *access);
                    let rule = n.rule();
                    return Some(Plan { node: n, rule: Some(rule) });
                }
            }
            Watch::Usb { vendor, product, serial, access } => {
                let o = owner.get_or_insert_with(|| usb::owner_of(sysfs, &ev.devpath));
                if let Some((v, p, s)) = o {
                    if v == vendor && p == product && (serial.is_none() || serial == s) {
                        let n = node(devname.to_string(), *access);
                        let rule = n.rule();
                        return Some(Plan { node: n, rule: Some(rule) });
                    }
                }
            }
            Watch::Rule(r) => {
                if r.opens(kind, major, minor) {
                    return Some(Plan { node: node(devname.to_string(), r.access), rule: None });
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, devname: &str, subsystem: &str, major: u32, minor: u32) -> Uevent {
        let msg = format!(
            "{action}@/devices/x\0ACTION={action}\0DEVPATH=/devices/x\0SUBSYSTEM={subsystem}\0MAJOR={major}\0MINOR={minor}\0DEVNAME={devname}\0"
        );
        Uevent::parse(msg.as_bytes()).unwrap()
    }

    #[test]
    fn watches_decide() {
        let sys = Path::new("/nonexistent-sysfs");
        let w = vec![
            Watch::Dir { host: "/dev/bus/usb".into(), container: "/dev/bus/usb".into(), access: Access::ALL },
            Watch::Rule(Rule::parse("b 7:* rw").unwrap()),
        ];
        let p = on_add(&w, &ev("add", "bus/usb/001/009", "usb", 189, 8), sys).unwrap();
        assert_eq!(p.node.path, "/dev/bus/usb/001/009");
        assert_eq!(p.rule.unwrap().to_string(), "c 189:8 rwm");
        let p = on_add(&w, &ev("add", "loop42", "block", 7, 42), sys).unwrap();
        assert_eq!((p.node.path.as_str(), p.node.kind, p.rule), ("/dev/loop42", crate::rule::Type::Block, None));
        assert_eq!(p.node.access.to_string(), "rw");
        assert!(on_add(&w, &ev("add", "ttyS4", "tty", 4, 68), sys).is_none());
        // Not the directory itself, nor a sibling with the same prefix.
        assert!(on_add(&w, &ev("add", "bus/usbmon", "usb", 189, 1), sys).is_none());
        let moved = vec![Watch::Dir { host: "/dev/bus/usb".into(), container: "/usb".into(), access: Access(Access::READ) }];
        assert_eq!(on_add(&moved, &ev("add", "bus/usb/002/003", "usb", 189, 130), sys).unwrap().node.path, "/usb/002/003");
    }
}
