//! `--device`, `--device-cgroup-rule` and the board profile, resolved when a container is created:
//! host nodes are looked at here, in the agent, so that a missing or wrong device is refused before
//! anything exists. Hotplug (the uevent side) is in `supervisor/hotplug.rs`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_device::board::Board;
use berth_device::hotplug::Watch;
use berth_device::node::{self, Node};
use berth_device::rule::{Rule, DEFAULT_RULES};
use berth_device::spec::{self, Source};
use berth_runtime::{Error, Result};

/// The agent's board profile, chosen once at start (`--board`, `BERTH_BOARD`, /etc/berth/board.toml).
static BOARD: OnceLock<Option<Board>> = OnceLock::new();

/// Where `--board NAME` looks, in order, for `NAME.toml`.
pub const BOARD_DIRS: &[&str] = &["/etc/berth/boards", "/usr/share/berth/board-configs"];
/// The board profile used when none is named (the Yocto layer installs the image's board here).
pub const DEFAULT_BOARD_FILE: &str = "/etc/berth/board.toml";

/// The sysfs root for USB lookups (`BERTH_SYSFS`: a test may point it at a fabricated tree).
pub fn sysfs() -> PathBuf {
    PathBuf::from(std::env::var("BERTH_SYSFS").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/sys".into()))
}

/// Finds the profile for `--board NAME|FILE` (or the default file when `None` and it exists).
pub fn find_board(arg: Option<&str>) -> Result<Option<PathBuf>> {
    let Some(a) = arg.filter(|a| !a.is_empty()) else {
        let p = Path::new(DEFAULT_BOARD_FILE);
        return Ok(p.exists().then(|| p.to_path_buf()));
    };
    if a.contains('/') || a.ends_with(".toml") {
        return Ok(Some(PathBuf::from(a)));
    }
    if !spec::valid_name(a) {
        return Err(Error::invalid(format!("invalid board name {a:?}")));
    }
    for d in BOARD_DIRS {
        let p = Path::new(d).join(format!("{a}.toml"));
        if p.exists() {
            return Ok(Some(p));
        }
    }
    Err(Error::not_found(format!("board {a:?} not found (looked for {a}.toml in {}); pass a file path instead", BOARD_DIRS.join(", "))))
}

/// Loads and validates the agent's board profile; called once before serving.
pub fn set_board(path: Option<&Path>) -> Result<Option<String>> {
    let board = path.map(Board::load).transpose()?;
    let name = board.as_ref().map(|b| b.name.clone());
    let _ = BOARD.set(board);
    Ok(name)
}

fn board() -> Option<&'static Board> {
    BOARD.get().and_then(Option::as_ref)
}

/// What `run`/`create` get: nodes to make, the cgroup rules (v1 lines) and the hotplug watches.
pub struct Resolved {
    pub nodes: Vec<Node>,
    pub rules: Vec<String>,
    pub watch: Vec<Watch>,
}

/// Resolves `--device` and `--device-cgroup-rule` values (already syntax-checked by the CLI, but
/// checked again: the API may be used directly). A privileged container gets every device and no
/// rules; its `--device` values are still checked, as Docker does.
pub fn resolve(devices: &[String], cgroup_rules: &[String], privileged: bool) -> Result<Resolved> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut watch = Vec::new();
    for d in devices {
        let arg = spec::parse(d).map_err(|e| Error::invalid(format!("invalid argument {d:?} for \"--device\" flag: {e}")))?;
        let (host, named) = match &arg.source {
            Source::Path(p) => (p.clone(), None),
            Source::Name(n) => {
                let b = board().ok_or_else(|| {
                    Error::invalid(format!(
                        "--device {d}: {n} is not an absolute path, and no board profile is loaded to name devices (agent --board)"
                    ))
                })?;
                let target = b.device(n).ok_or_else(|| {
                    let names: Vec<&str> = b.devices.keys().map(String::as_str).collect();
                    Error::not_found(format!("--device {d}: board {} has no device named {n:?} (it names: {})", b.name, names.join(", ")))
                })?;
                (target.to_string(), Some(n.clone()))
            }
            Source::Usb { .. } => (String::new(), None),
        };
        // A board name may stand for a USB id.
        let usb = match &arg.source {
            Source::Usb { vendor, product, serial } => Some((*vendor, *product, serial.clone())),
            Source::Name(_) if host.starts_with("usb:") => match spec::parse(&host)?.source {
                Source::Usb { vendor, product, serial } => Some((vendor, product, serial)),
                _ => None,
            },
            _ => None,
        };
        if let Some((vendor, product, serial)) = usb {
            if arg.container.is_some() {
                return Err(Error::invalid(format!("--device {d}: a USB device keeps its host paths (give no container path)")));
            }
            let dev = berth_device::usb::resolve(&sysfs(), vendor, product, serial.as_deref())?;
            for n in &dev.nodes {
                // A node sysfs names may be missing from /dev (no devtmpfs, renamed by udev): the
                // error names it.
                nodes.extend(node::gather(n, None, arg.access)?);
            }
            watch.push(Watch::Usb { vendor, product, serial, access: arg.access });
            continue;
        }
        let found = node::gather(&host, arg.container.as_deref(), arg.access)?;
        if std::fs::metadata(&host).is_ok_and(|m| m.is_dir()) {
            watch.push(Watch::Dir { host: host.clone(), container: arg.container.clone().unwrap_or(host.clone()), access: arg.access });
        }
        if found.is_empty() && named.is_some() {
            return Err(Error::not_found(format!("--device {d}: {host} holds no device nodes")));
        }
        nodes.extend(found);
    }
    let mut extra = Vec::new();
    for r in cgroup_rules {
        let rule = Rule::parse(r).map_err(|e| Error::invalid(format!("invalid argument {r:?} for \"--device-cgroup-rule\" flag: {e}")))?;
        extra.push(rule);
    }
    if privileged {
        return Ok(Resolved { nodes, rules: Vec::new(), watch: Vec::new() });
    }
    // One container path, one node: the last --device wins, as with Docker's mounts.
    let mut seen = std::collections::HashSet::new();
    nodes.reverse();
    nodes.retain(|n| seen.insert(n.path.clone()));
    nodes.reverse();
    let mut rules: Vec<String> = DEFAULT_RULES.iter().map(|s| s.to_string()).collect();
    rules.extend(nodes.iter().map(|n| n.rule().to_string()));
    rules.extend(extra.iter().map(Rule::to_string));
    watch.extend(extra.into_iter().map(Watch::Rule));
    Ok(Resolved { nodes, rules, watch })
}
