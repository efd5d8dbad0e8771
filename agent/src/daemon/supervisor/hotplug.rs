//! Hotplug: kernel uevents for device nodes, carried out for each running container whose watches
//! cover the node (`--device` directories and USB ids, `--device-cgroup-rule`): the cgroup rule
//! first, then the node in the container's /dev (made from a forked helper in its mount namespace);
//! on removal the node, then the rule. Each step is an event for `berth events`.

use std::os::fd::AsRawFd;

use tokio::io::unix::AsyncFd;

use berth_device::hotplug;
use berth_device::node::{self, Node};
use berth_device::rule::Rule;
use berth_device::uevent::{Monitor, Uevent};
use berth_runtime::container::record::{Record, Status};

use super::Supervisor;

/// A node hotplug made in a container, and the rule it added for it, so removal undoes exactly that.
#[derive(Debug, Clone)]
pub struct Added {
    pub node: Node,
    pub rule: Option<Rule>,
}

/// The uevent socket as a source for the agent's loop; `None` (with a warning) where the kernel
/// refuses it, e.g. in a network namespace other than the host's, which gets no uevents.
pub fn monitor() -> Option<AsyncFd<Monitor>> {
    let registered = Monitor::open().and_then(|m| {
        // SAFETY: the monitor owns its descriptor for its whole life and always returns that one
        // from as_raw_fd, so the registration never outlives or mistakes the descriptor.
        unsafe { AsyncFd::register_with_interest(m, tokio::io::Interest::READABLE) }
            .map_err(|e| berth_device::Error::io("register uevent socket", e.into_parts().1))
    });
    match registered {
        Ok(m) => Some(m),
        Err(e) => {
            crate::warn!("device hotplug disabled: {e}");
            None
        }
    }
}

/// Waits for uevents and returns those that name a device node; never returns without a monitor.
pub async fn next(m: Option<&AsyncFd<Monitor>>) -> Vec<Uevent> {
    let Some(m) = m else { return std::future::pending().await };
    loop {
        let Ok(mut guard) = m.readable().await else { return std::future::pending().await };
        let mut out = Vec::new();
        loop {
            match m.get_ref().recv() {
                Ok(Some(ev)) => {
                    if ev.devname.is_some() && ev.major.is_some() && ev.minor.is_some() {
                        out.push(ev);
                    }
                }
                Ok(None) => {
                    guard.clear_ready();
                    break;
                }
                Err(e) => {
                    // ENOBUFS: events were lost in a burst; the ones still queued are read on.
                    crate::warn!("uevent socket {}: {e}", m.get_ref().as_raw_fd());
                    if e.raw_os_error() != Some(libc::ENOBUFS) {
                        guard.clear_ready();
                        break;
                    }
                }
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
}

impl Supervisor {
    /// Looks the container's devices up again before a start, as Docker does: a USB adapter
    /// plugged in again has another bus address (and maybe another ttyUSB number), and a node that
    /// has gone is an error now rather than a stale node in the container.
    pub(super) fn refresh_devices(&mut self, id: &str, mut r: Record) -> berth_runtime::Result<Record> {
        if r.spec.device_args.is_empty() && r.spec.device_cgroup_rules.is_empty() {
            return Ok(r);
        }
        let d = crate::daemon::devices::resolve(&r.spec.device_args, &r.spec.device_cgroup_rules, r.spec.privileged)?;
        r.spec.devices = d.nodes.into();
        r.spec.device_watch = d.watch.into();
        r.spec.resources.devices = d.rules.into();
        if let Some(rec) = self.records.get_mut(id) {
            rec.spec = r.spec.clone();
        }
        Ok(r)
    }

    /// Carries out one uevent for every running container it concerns.
    pub fn hotplug(&mut self, ev: &Uevent) {
        let (Some(devname), Some(major), Some(minor)) = (ev.devname.clone(), ev.major, ev.minor) else { return };
        crate::debug!("uevent {} {devname} ({major}:{minor})", ev.action);
        let running: Vec<(String, i32)> = self
            .records
            .values()
            .filter(|r| !r.spec.privileged)
            .filter_map(|r| match r.status {
                Status::Running { pid, .. } => Some((r.id.clone(), pid)),
                _ => None,
            })
            .collect();
        for (id, pid) in running {
            let res = match ev.action.as_str() {
                "add" => self.plug(&id, pid, ev),
                "remove" => self.unplug(&id, pid, ev, &devname),
                _ => Ok(None),
            };
            match res {
                Ok(Some((action, n))) => {
                    crate::info!("container {}: {action} {} ({} {}:{})", &id[..12], n.path, n.kind.letter(), n.major, n.minor);
                    let attrs = [
                        ("device", n.path.clone()),
                        ("host", devname.clone()),
                        ("type", n.kind.letter().to_string()),
                        ("major", major.to_string()),
                        ("minor", minor.to_string()),
                    ];
                    self.emit(&id, action, &attrs);
                }
                Ok(None) => {}
                Err(e) => crate::warn!("container {}: hotplug {} {devname}: {e}", &id[..12], ev.action),
            }
        }
    }

    /// Every rule the container has with hotplug's additions, less `without`.
    fn all_rules(&self, id: &str, without: Option<&Rule>) -> Vec<String> {
        let mut all = self.records.get(id).map(|r| r.spec.resources.devices.to_vec()).unwrap_or_default();
        let mut skipped = false;
        for a in self.hotplugged.get(id).into_iter().flatten() {
            if let Some(r) = &a.rule {
                if !skipped && Some(r) == without {
                    skipped = true;
                    continue;
                }
                all.push(r.to_string());
            }
        }
        all
    }

    fn plug(&mut self, id: &str, pid: i32, ev: &Uevent) -> berth_runtime::Result<Option<(&'static str, Node)>> {
        let Some(r) = self.records.get(id) else { return Ok(None) };
        let Some(plan) = hotplug::on_add(&r.spec.device_watch, ev, &crate::daemon::devices::sysfs()) else { return Ok(None) };
        if self.hotplugged.get(id).is_some_and(|v| v.iter().any(|a| a.node.path == plan.node.path)) {
            return Ok(None);
        }
        let cg = self.cgroups.open(&self.parent, id);
        if let Some(rule) = &plan.rule {
            let mut all = self.all_rules(id, None);
            all.push(rule.to_string());
            cg.device_rule(&rule.to_string(), true, &all)?;
        }
        node::in_namespace(pid, &plan.node.path, Some(&plan.node))?;
        let id = self.key(id);
        self.hotplugged.entry(id).or_default().push(Added { node: plan.node.clone(), rule: plan.rule });
        Ok(Some(("device-add", plan.node)))
    }

    fn unplug(&mut self, id: &str, pid: i32, ev: &Uevent, devname: &str) -> berth_runtime::Result<Option<(&'static str, Node)>> {
        let added = self.hotplugged.get(id).and_then(|v| v.iter().position(|a| a.node.host == devname));
        if let Some(i) = added {
            let a = self.hotplugged.get(id).map(|v| v[i].clone());
            let Some(a) = a else { return Ok(None) };
            node::in_namespace(pid, &a.node.path, None)?;
            if let Some(rule) = &a.rule {
                let all = self.all_rules(id, Some(rule));
                self.cgroups.open(&self.parent, id).device_rule(&rule.to_string(), false, &all)?;
            }
            if let Some(v) = self.hotplugged.get_mut(id) {
                v.remove(i);
            }
            return Ok(Some(("device-remove", a.node)));
        }
        // A node given at start, or one a cgroup rule covers: the node goes with the host's; the
        // rules stay, so that the device works again when it comes back.
        let Some(r) = self.records.get(id) else { return Ok(None) };
        let (Some(major), Some(minor)) = (ev.major, ev.minor) else { return Ok(None) };
        let kind = ev.kind();
        let at_start = r.spec.devices.iter().find(|n| n.host == devname && n.major == major && n.minor == minor).cloned();
        let by_rule = r.spec.device_watch.iter().any(|w| matches!(w, hotplug::Watch::Rule(rule) if rule.opens(kind, major, minor)));
        let n = match at_start {
            Some(n) => n,
            None if by_rule => Node {
                path: devname.to_string(),
                host: devname.to_string(),
                kind,
                major,
                minor,
                mode: 0,
                uid: 0,
                gid: 0,
                access: berth_device::rule::Access::ALL,
                bind: false,
            },
            None => return Ok(None),
        };
        node::in_namespace(pid, &n.path, None)?;
        Ok(Some(("device-remove", n)))
    }
}
