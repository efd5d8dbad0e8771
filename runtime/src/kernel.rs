//! What berth needs from the kernel: the one list of kernel options ([`REQUIREMENTS`]), reading a
//! kernel config, and probing the running kernel. `berth check` prints the result; the Yocto
//! fragment `yocto-layer/recipes-kernel/linux/files/berth.cfg` enables exactly these options (a
//! test compares the two in both directions, so change them together).
//!
//! The running kernel is judged from its config (`/proc/config.gz`, else
//! `/boot/config-$(uname -r)`) and from what it shows of itself (`/proc/self/ns`, `/proc/filesystems`,
//! `/proc/cgroups`, the mounted cgroup hierarchy, `/proc/self/status`): where the live system answers,
//! it wins over the config file, which may be stale or absent. All of it is read through [`Host`],
//! whose root can be a test directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::compress;
use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
}

/// How the running kernel can show that an option is there, besides its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nothing to look at: the config decides.
    Config,
    /// Any namespace file in `/proc/self/ns`.
    Namespaces,
    /// `/proc/self/ns/<name>` exists (it is compiled in only with the namespace).
    Ns(&'static str),
    /// User namespaces: `/proc/self/ns/user`, and `/proc/sys/user/max_user_namespaces` above 0.
    UserNs,
    /// The kernel knows cgroups at all (`/proc/cgroups`, or `cgroup`/`cgroup2` file systems).
    Cgroups,
    /// A cgroup controller: enabled in `/proc/cgroups`, mounted on v1, or listed by cgroup v2.
    Controller(&'static str),
    /// cgroup v1 `cpu.cfs_quota_us` (CPU quota); nothing to look at on v2.
    CfsQuota,
    /// A file system in `/proc/filesystems`, or its module (`Some`) installed.
    Fs(&'static str, Option<&'static str>),
    /// A module loaded or built in (`/sys/module/<name>`) or installed (`modules.dep`).
    Module(&'static str),
    /// A path under the host root that exists only with the option.
    Path(&'static str),
    /// Loading a `BPF_PROG_TYPE_CGROUP_DEVICE` program (the v2 device filter) works; only on the
    /// live host, where it is the one answer that counts (the config may say yes and a lockdown no).
    BpfDevice,
}

/// One kernel option berth uses.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// The Kconfig symbol without `CONFIG_`.
    pub name: &'static str,
    pub need: Need,
    /// What the option gives berth.
    pub reason: &'static str,
    /// The berth feature that goes missing without it.
    pub feature: &'static str,
    pub probe: Probe,
}

const fn req(name: &'static str, need: Need, reason: &'static str, feature: &'static str, probe: Probe) -> Requirement {
    Requirement { name, need, reason, feature, probe }
}

use Need::{Optional, Required};

/// Every kernel option berth checks for, required ones first within each group. The Yocto kernel
/// fragment must list exactly these (`berth check --list`).
pub const REQUIREMENTS: &[Requirement] = &[
    // Namespaces
    req("NAMESPACES", Required, "namespace support", "containers", Probe::Namespaces),
    req("UTS_NS", Required, "own host name per container", "containers (--hostname)", Probe::Ns("uts")),
    req("IPC_NS", Required, "own System V IPC and POSIX message queues", "containers (--ipc)", Probe::Ns("ipc")),
    req("PID_NS", Required, "own process tree with the app as PID 1", "containers (--pid)", Probe::Ns("pid")),
    req("NET_NS", Required, "own network stack (--network none or bridge)", "network isolation", Probe::Ns("net")),
    req("USER_NS", Optional, "container root mapped to an unprivileged host user", "--userns", Probe::UserNs),
    // Control groups
    req("CGROUPS", Required, "resource control of containers", "containers", Probe::Cgroups),
    req("MEMCG", Required, "memory controller: limits and OOM reporting", "--memory, --memory-swap", Probe::Controller("memory")),
    req("CGROUP_PIDS", Required, "pids controller: process count limit", "--pids-limit", Probe::Controller("pids")),
    req("CGROUP_SCHED", Required, "cpu controller", "--cpu-shares, --cpus", Probe::Controller("cpu")),
    req("FAIR_GROUP_SCHED", Required, "CPU weights of groups", "--cpu-shares", Probe::Config),
    req("CFS_BANDWIDTH", Optional, "CPU quota of groups", "--cpus", Probe::CfsQuota),
    req("CGROUP_DEVICE", Required, "device access rules on cgroup v1", "--device on cgroup v1", Probe::Controller("devices")),
    req("CGROUP_BPF", Required, "device access rules as eBPF programs on cgroup v2", "--device on cgroup v2", Probe::BpfDevice),
    req(
        "BPF_SYSCALL",
        Required,
        "loading the eBPF device filter",
        "--device on cgroup v2",
        Probe::Path("proc/sys/kernel/unprivileged_bpf_disabled"),
    ),
    req(
        "CGROUP_FREEZER",
        Optional,
        "freezer controller (cgroup v1; v2 has it built in)",
        "pause on cgroup v1",
        Probe::Controller("freezer"),
    ),
    req("CPUSETS", Optional, "cpuset controller", "--cpuset-cpus", Probe::Controller("cpuset")),
    // File systems
    req(
        "OVERLAY_FS",
        Required,
        "container root file systems over the shared image layers",
        "shared layers (the copy fallback stores a full copy of the image per container)",
        Probe::Fs("overlay", Some("overlay")),
    ),
    req("TMPFS", Required, "/dev, /run and scratch space in containers", "containers (--tmpfs, --read-only)", Probe::Fs("tmpfs", None)),
    req("PROC_FS", Required, "/proc in containers", "containers", Probe::Path("proc/self")),
    req("SYSFS", Required, "/sys in containers, cgroup mounts", "containers", Probe::Fs("sysfs", None)),
    req("POSIX_MQUEUE", Optional, "/dev/mqueue in containers", "POSIX message queues in containers", Probe::Fs("mqueue", None)),
    req("UNIX98_PTYS", Optional, "pseudo-terminals (devpts)", "-t", Probe::Fs("devpts", None)),
    // Security
    req("SECCOMP", Required, "system call filtering", "seccomp profiles", Probe::Path("proc/self/status:Seccomp:")),
    req(
        "SECCOMP_FILTER",
        Required,
        "BPF system call filters (Docker's default profile)",
        "seccomp profiles",
        Probe::Path("proc/sys/kernel/seccomp/actions_avail"),
    ),
    req("KEYS", Optional, "a session keyring per container", "keyrings in containers", Probe::Path("proc/keys")),
    // Networking: bridge networks need all of these; `--network host` and `none` need none.
    req("VETH", Optional, "virtual ethernet pairs", "bridge networking", Probe::Module("veth")),
    req("BRIDGE", Optional, "the bridge containers attach to", "bridge networking", Probe::Module("bridge")),
    req(
        "NETFILTER",
        Optional,
        "packet filtering and NAT hooks",
        "bridge networking (NAT, -p, isolation)",
        Probe::Path("proc/sys/net/netfilter"),
    ),
    req(
        "NF_TABLES",
        Optional,
        "nftables: berth's own netfilter table",
        "bridge networking (NAT, -p, isolation)",
        Probe::Module("nf_tables"),
    ),
    req("NF_TABLES_IPV4", Optional, "nftables rules for IPv4 (table ip berth)", "bridge networking (NAT, -p, isolation)", Probe::Config),
    req("NF_CONNTRACK", Optional, "connection tracking, which NAT rests on", "bridge networking (NAT, -p)", Probe::Module("nf_conntrack")),
    req("NF_NAT", Optional, "network address translation", "egress NAT and -p/-P", Probe::Module("nf_nat")),
    req("NFT_NAT", Optional, "nftables nat chains and dnat", "-p/-P published ports", Probe::Module("nft_nat")),
    req("NFT_MASQ", Optional, "nftables masquerade", "egress from bridge networks", Probe::Module("nft_masq")),
    req(
        "NFT_CT",
        Optional,
        "nftables conntrack match (ct status dnat)",
        "published ports from the same or another network",
        Probe::Module("nft_ct"),
    ),
    req(
        "NFT_FIB_IPV4",
        Optional,
        "nftables fib match (fib daddr type local)",
        "-p/-P on every host address",
        Probe::Module("nft_fib_ipv4"),
    ),
    // Disk quotas: `--storage-opt size=` is a project quota on the container's writable layer.
    req("QUOTA", Optional, "disk quotas", "--storage-opt size=", Probe::Path("proc/sys/fs/quota")),
    req(
        "QFMT_V2",
        Optional,
        "ext4's quota file format (project quotas, prjquota)",
        "--storage-opt size= on ext4",
        Probe::Module("quota_v2"),
    ),
    // Devices
    req("USB_SERIAL", Optional, "USB serial adapters", "--device for USB serial adapters", Probe::Module("usbserial")),
    req("USB_ACM", Optional, "USB CDC-ACM modems and serial gadgets", "--device for CDC-ACM devices", Probe::Module("cdc_acm")),
];

/// The options bridge networks need (veth pairs, the bridge, NAT and published ports in
/// nftables). Without any of them only `--network host`, `none` and `container:` work.
pub const BRIDGE_NETWORKING: &[&str] = &[
    "VETH",
    "BRIDGE",
    "NETFILTER",
    "NF_TABLES",
    "NF_TABLES_IPV4",
    "NF_CONNTRACK",
    "NF_NAT",
    "NFT_NAT",
    "NFT_MASQ",
    "NFT_CT",
    "NFT_FIB_IPV4",
];

/// The bridge-networking options a check found missing (`CONFIG_` names), for `berth check`'s
/// summary and for refusing `run --network bridge` with the names. Unknown ones are not listed.
pub fn bridge_networking_missing(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| BRIDGE_NETWORKING.contains(&f.req.name) && f.status == Status::Missing)
        .map(|f| format!("CONFIG_{}", f.req.name))
        .collect()
}

/// A Kconfig symbol's value in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tristate {
    Yes,
    Module,
    No,
}

impl Tristate {
    pub fn as_str(self) -> &'static str {
        match self {
            Tristate::Yes => "y",
            Tristate::Module => "m",
            Tristate::No => "n",
        }
    }
}

/// A parsed kernel `.config`: symbol (without `CONFIG_`) → value as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    values: BTreeMap<String, String>,
}

impl KernelConfig {
    /// Parses `CONFIG_X=value` and `# CONFIG_X is not set` lines; everything else is ignored.
    pub fn parse(text: &str) -> KernelConfig {
        let mut values = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("# CONFIG_") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    values.insert(name.trim().to_string(), "n".to_string());
                }
            } else if let Some((name, value)) = line.strip_prefix("CONFIG_").and_then(|l| l.split_once('=')) {
                values.insert(name.trim().to_string(), value.trim().to_string());
            }
        }
        KernelConfig { values }
    }

    /// Reads a config file, plain or compressed (`/proc/config.gz`), at most 16 MiB of text.
    pub fn read(path: &Path) -> Result<KernelConfig> {
        let what = || format!("read kernel config {}", path.display());
        let f = File::open(path).ctx(what)?;
        let (_, r) = compress::decoder(BufReader::new(f)).ctx(what)?;
        let mut bytes = Vec::new();
        r.take(16 << 20).read_to_end(&mut bytes).ctx(what)?;
        let text = String::from_utf8_lossy(&bytes);
        let cfg = KernelConfig::parse(&text);
        if cfg.values.is_empty() {
            return Err(Error::invalid(format!("{}: no CONFIG_ lines: not a kernel config", path.display())));
        }
        Ok(cfg)
    }

    /// The symbol's state; one a full `.config` does not mention is off (its dependencies are).
    pub fn get(&self, name: &str) -> Tristate {
        match self.values.get(name).map(String::as_str) {
            None | Some("n") => Tristate::No,
            Some("m") => Tristate::Module,
            Some(_) => Tristate::Yes,
        }
    }
}

/// How the cgroup file systems are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// Only the v2 unified hierarchy.
    V2,
    /// v1 controller hierarchies and a v2 mount beside them (systemd's hybrid layout).
    Hybrid,
    /// No cgroup file system mounted.
    None,
}

impl CgroupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::V1 => "v1",
            CgroupMode::V2 => "v2",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::None => "none",
        }
    }
}

/// The mounted cgroup hierarchy and the controllers the kernel has.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub mode: CgroupMode,
    /// v1 controllers and where each is mounted.
    pub v1: Vec<(String, PathBuf)>,
    /// The v2 mount point and the controllers its `cgroup.controllers` lists.
    pub v2: Option<(PathBuf, Vec<String>)>,
    /// `/proc/cgroups`: every controller compiled in and whether it is enabled; `None` if unreadable.
    pub known: Option<Vec<(String, bool)>>,
}

impl Cgroups {
    /// Whether a controller can be used: `None` when the kernel shows nothing either way.
    pub fn controller(&self, name: &str) -> Option<bool> {
        let v2 = self.v2.as_ref().is_some_and(|(_, c)| c.iter().any(|c| c == name));
        if v2 || self.v1.iter().any(|(c, _)| c == name) {
            return Some(true);
        }
        self.known.as_ref().map(|k| k.iter().any(|(c, on)| c == name && *on))
    }
}

/// The machine being checked: `/` normally, any directory holding `proc/`, `sys/`, `boot/` and
/// `lib/modules/` in tests.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn live() -> Host {
        Host { root: PathBuf::from("/") }
    }

    pub fn at(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read(self.path(rel)).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// `uname -r`.
    pub fn release(&self) -> Option<String> {
        self.read("proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    /// The running kernel's config and where it came from, or `None` if the kernel does not
    /// expose one. A file that exists but cannot be read is an error.
    pub fn running_config(&self) -> Result<Option<(PathBuf, KernelConfig)>> {
        let mut candidates = vec![self.path("proc/config.gz")];
        if let Some(rel) = self.release() {
            candidates.push(self.path(&format!("boot/config-{rel}")));
        }
        for p in candidates {
            if p.exists() {
                return Ok(Some((p.clone(), KernelConfig::read(&p)?)));
            }
        }
        Ok(None)
    }

    /// The cgroup hierarchy as mounted now, from `/proc/self/mounts`, `/proc/cgroups` and the v2
    /// root's `cgroup.controllers`.
    pub fn cgroups(&self) -> Cgroups {
        let known: Option<Vec<(String, bool)>> = self.read("proc/cgroups").map(|t| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 4).then(|| (f[0].to_string(), f[3] == "1"))
                })
                .collect()
        });
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in self.read("proc/self/mounts").unwrap_or_default().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            let mnt = PathBuf::from(unescape_mount(f[1]));
            match f[2] {
                "cgroup2" if v2.is_none() => {
                    let rel = mnt.to_string_lossy().into_owned();
                    let ctrl = self.read(&format!("{rel}/cgroup.controllers")).unwrap_or_default();
                    v2 = Some((mnt, ctrl.split_whitespace().map(str::to_string).collect()));
                }
                "cgroup" => {
                    for opt in f[3].split(',') {
                        let is_ctrl = match &known {
                            Some(k) => k.iter().any(|(c, _)| c == opt),
                            None => !opt.contains('=') && !matches!(opt, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec"),
                        };
                        if is_ctrl && !v1.iter().any(|(c, _): &(String, PathBuf)| c == opt) {
                            v1.push((opt.to_string(), mnt.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        let mode = match (v1.is_empty(), v2.is_some()) {
            (false, true) => CgroupMode::Hybrid,
            (false, false) => CgroupMode::V1,
            (true, true) => CgroupMode::V2,
            (true, false) => CgroupMode::None,
        };
        Cgroups { mode, v1, v2, known }
    }

    /// A module loaded, built in, or installed for the running kernel. `None` when the kernel
    /// loads modules but the module list cannot be read.
    fn module(&self, name: &str) -> Option<bool> {
        let norm = |s: &str| s.replace('-', "_");
        let want = norm(name);
        if self.exists(&format!("sys/module/{want}")) {
            return Some(true);
        }
        if !self.exists("proc/modules") {
            // No module support: what is not built in cannot be loaded, but a built-in driver
            // without parameters has no /sys/module entry either, so only modules.builtin (if
            // installed) can tell; otherwise the config decides.
            let rel = self.release()?;
            let text = self.read(&format!("lib/modules/{rel}/modules.builtin"))?;
            return Some(text.lines().any(|p| {
                let file = p.rsplit('/').next().unwrap_or(p);
                file.split(".ko").next().map(norm).as_deref() == Some(want.as_str())
            }));
        }
        let rel = self.release()?;
        let mut seen_list = false;
        for list in ["modules.builtin", "modules.dep"] {
            let Some(text) = self.read(&format!("lib/modules/{rel}/{list}")) else { continue };
            seen_list = true;
            let found = text.lines().filter_map(|l| l.split(':').next()).any(|p| {
                let file = p.rsplit('/').next().unwrap_or(p);
                file.split(".ko").next().map(norm).as_deref() == Some(want.as_str())
            });
            if found {
                return Some(true);
            }
        }
        seen_list.then_some(false)
    }

    /// What the running kernel shows for one requirement: `Some(present)`, or `None` if it shows
    /// nothing either way. The second value says why, where that helps.
    pub fn probe(&self, r: &Requirement, cg: &Cgroups) -> (Option<bool>, Option<String>) {
        match r.probe {
            Probe::Config => (None, None),
            Probe::Namespaces => {
                let any = std::fs::read_dir(self.path("proc/self/ns")).map(|mut d| d.next().is_some()).ok();
                (any, None)
            }
            Probe::Ns(ns) => {
                if !self.exists("proc/self/ns") {
                    return (None, None);
                }
                (Some(self.exists(&format!("proc/self/ns/{ns}"))), None)
            }
            Probe::UserNs => {
                if !self.exists("proc/self/ns") {
                    return (None, None);
                }
                if !self.exists("proc/self/ns/user") {
                    return (Some(false), None);
                }
                match self.read("proc/sys/user/max_user_namespaces").and_then(|s| s.trim().parse::<u64>().ok()) {
                    Some(0) => (Some(false), Some("disabled: /proc/sys/user/max_user_namespaces is 0".into())),
                    _ => (Some(true), None),
                }
            }
            Probe::Cgroups => {
                let fs = self.read("proc/filesystems");
                let listed = fs.as_deref().map(|t| fs_listed(t, "cgroup") || fs_listed(t, "cgroup2"));
                (if cg.known.is_some() { Some(true) } else { listed }, None)
            }
            Probe::Controller(c) => {
                let on = cg.controller(c);
                let disabled = cg.known.as_ref().is_some_and(|k| k.iter().any(|(n, e)| n == c && !*e));
                (on, (on == Some(false) && disabled).then(|| format!("compiled in but disabled at boot (cgroup_disable={c}?)")))
            }
            Probe::CfsQuota => match cg.v1.iter().find(|(c, _)| c == "cpu") {
                Some((_, mnt)) => {
                    let rel = mnt.to_string_lossy().into_owned();
                    (Some(self.exists(&format!("{rel}/cpu.cfs_quota_us"))), None)
                }
                None => (None, None),
            },
            Probe::Fs(fs, module) => {
                let Some(list) = self.read("proc/filesystems") else { return (None, None) };
                if fs_listed(&list, fs) {
                    return (Some(true), None);
                }
                if !self.exists("proc/modules") {
                    // No module support: a file system not listed is not there.
                    return (Some(false), None);
                }
                match module.map(|m| self.module(m)) {
                    Some(Some(true)) => (Some(true), Some("module, loaded on first use".into())),
                    Some(None) => (None, None),
                    Some(Some(false)) | None => (Some(false), None),
                }
            }
            Probe::Module(m) => (self.module(m), None),
            Probe::BpfDevice => {
                if self.root != Path::new("/") {
                    return (None, None);
                }
                match berth_device::bpf::probe() {
                    Ok(()) => (Some(true), Some("a cgroup device program loaded".into())),
                    // Not allowed to try (no CAP_SYS_ADMIN/CAP_BPF): the config decides.
                    Err(e) if e.message().contains("Operation not permitted") => (None, Some(format!("cannot tell: {e}"))),
                    Err(e) => (Some(false), Some(e.to_string())),
                }
            }
            Probe::Path(spec) => match spec.split_once(':') {
                // `file:Prefix`: a line of the file starts with Prefix (the file itself always exists).
                Some((file, prefix)) => (self.read(file).map(|t| t.lines().any(|l| l.starts_with(prefix))), None),
                None => {
                    if !self.exists("proc/self") && spec.starts_with("proc/") && spec != "proc/self" {
                        return (None, None);
                    }
                    (Some(self.exists(spec)), None)
                }
            },
        }
    }
}

/// `/proc/filesystems` lists `nodev\tNAME` or `\tNAME` per line.
fn fs_listed(list: &str, fs: &str) -> bool {
    list.lines().any(|l| l.split_whitespace().last() == Some(fs))
}

/// `/proc/self/mounts` escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Enabled,
    Missing,
    /// No config and nothing on the live system says either way.
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "enabled",
            Status::Missing => "missing",
            Status::Unknown => "unknown",
        }
    }
}

/// One requirement checked.
#[derive(Debug, Clone)]
pub struct Finding {
    pub req: &'static Requirement,
    pub status: Status,
    /// The symbol's value in the config read, if one was.
    pub config: Option<Tristate>,
    /// What the live system showed, if it was probed and showed something.
    pub probe: Option<bool>,
    pub note: Option<String>,
}

/// Checks every requirement against a config and, for the running kernel, the live system. What the
/// live system shows wins; without it the config decides; without either the answer is unknown.
pub fn check(config: Option<&KernelConfig>, host: Option<&Host>) -> Vec<Finding> {
    let cg = host.map(Host::cgroups);
    REQUIREMENTS
        .iter()
        .map(|r| {
            let cfg = config.map(|c| c.get(r.name));
            let (probe, mut note) = match (host, &cg) {
                (Some(h), Some(cg)) => h.probe(r, cg),
                _ => (None, None),
            };
            let status = match (probe, cfg) {
                (Some(true), _) => Status::Enabled,
                (Some(false), _) => Status::Missing,
                (None, Some(Tristate::Yes | Tristate::Module)) => Status::Enabled,
                (None, Some(Tristate::No)) => Status::Missing,
                (None, None) => Status::Unknown,
            };
            if note.is_none() && status == Status::Enabled && cfg == Some(Tristate::Module) {
                note = Some("module".into());
            }
            Finding { req: r, status, config: cfg, probe, note }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SAMPLE: &str = "\
#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_NAMESPACES=y
CONFIG_OVERLAY_FS=m
# CONFIG_USER_NS is not set
CONFIG_DEFAULT_HOSTNAME=\"(none)\"
CONFIG_LOG_BUF_SHIFT=17
  CONFIG_TMPFS = y
not a config line
";

    #[test]
    fn parse_values() {
        let c = KernelConfig::parse(SAMPLE);
        assert_eq!(c.get("NAMESPACES"), Tristate::Yes);
        assert_eq!(c.get("OVERLAY_FS"), Tristate::Module);
        assert_eq!(c.get("USER_NS"), Tristate::No);
        assert_eq!(c.get("TMPFS"), Tristate::Yes);
        assert_eq!(c.get("DEFAULT_HOSTNAME"), Tristate::Yes, "a string value is set");
        assert_eq!(c.get("LOG_BUF_SHIFT"), Tristate::Yes);
        assert_eq!(c.get("NEVER_MENTIONED"), Tristate::No, "a symbol a full config omits is off");
        assert_eq!(KernelConfig::parse("").values.len(), 0);
    }

    #[test]
    fn requirement_names_are_unique_symbols() {
        let mut seen = std::collections::BTreeSet::new();
        for r in REQUIREMENTS {
            assert!(!r.name.starts_with("CONFIG_"), "{}: list symbols without CONFIG_", r.name);
            assert!(r.name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'), "{}", r.name);
            assert!(seen.insert(r.name), "{} listed twice", r.name);
            assert!(!r.reason.is_empty() && !r.feature.is_empty(), "{}", r.name);
        }
        for must in ["OVERLAY_FS", "CGROUP_BPF", "SECCOMP", "MEMCG", "PID_NS"] {
            assert!(REQUIREMENTS.iter().any(|r| r.name == must && r.need == Need::Required), "{must} is required");
        }
        assert!(REQUIREMENTS.iter().any(|r| r.name == "USER_NS" && r.need == Need::Optional));
        // Bridge networking is optional (a board without it runs --network host), and every
        // option it needs is checked.
        for n in BRIDGE_NETWORKING {
            assert!(REQUIREMENTS.iter().any(|r| r.name == *n && r.need == Need::Optional), "{n} is listed, optional");
        }
    }

    #[test]
    fn bridge_networking_missing_names_options() {
        let all: String = REQUIREMENTS.iter().map(|r| format!("CONFIG_{}=y\n", r.name)).collect();
        assert!(bridge_networking_missing(&check(Some(&KernelConfig::parse(&all)), None)).is_empty());
        let text = all.replace("CONFIG_NFT_MASQ=y", "# CONFIG_NFT_MASQ is not set").replace("CONFIG_VETH=y\n", "");
        let f = check(Some(&KernelConfig::parse(&text)), None);
        assert_eq!(bridge_networking_missing(&f), ["CONFIG_VETH", "CONFIG_NFT_MASQ"]);
        assert!(bridge_networking_missing(&check(None, None)).is_empty(), "unknown is not missing");
    }

    fn status_of<'a>(f: &'a [Finding], name: &str) -> &'a Finding {
        f.iter().find(|x| x.req.name == name).unwrap_or_else(|| panic!("{name} not checked"))
    }

    #[test]
    fn config_only() {
        let all: String = REQUIREMENTS.iter().map(|r| format!("CONFIG_{}=y\n", r.name)).collect();
        let f = check(Some(&KernelConfig::parse(&all)), None);
        assert!(f.iter().all(|x| x.status == Status::Enabled && x.probe.is_none()));

        let text = all.replace("CONFIG_OVERLAY_FS=y", "# CONFIG_OVERLAY_FS is not set").replace("CONFIG_VETH=y", "CONFIG_VETH=m");
        let f = check(Some(&KernelConfig::parse(&text)), None);
        assert_eq!(status_of(&f, "OVERLAY_FS").status, Status::Missing);
        assert_eq!(status_of(&f, "VETH").status, Status::Enabled);
        assert_eq!(status_of(&f, "VETH").note.as_deref(), Some("module"));

        let f = check(None, None);
        assert!(f.iter().all(|x| x.status == Status::Unknown));
    }

    struct TempRoot(PathBuf);
    impl TempRoot {
        fn new() -> TempRoot {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!("berth-kernel-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("create temp root");
            TempRoot(p)
        }
        fn file(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
    }
    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A host laid out like this development VM: hybrid cgroups, memory disabled at boot, no user
    /// namespaces allowed, no module support, no overlay.
    fn fake_host() -> TempRoot {
        let t = TempRoot::new();
        t.file("proc/sys/kernel/osrelease", "6.1.0-test\n");
        for ns in ["uts", "ipc", "pid", "net", "user", "mnt"] {
            t.file(&format!("proc/self/ns/{ns}"), "");
        }
        t.file("proc/sys/user/max_user_namespaces", "0\n");
        t.file("proc/filesystems", "nodev\tsysfs\nnodev\ttmpfs\nnodev\tcgroup\nnodev\tcgroup2\n\text4\nnodev\tmqueue\n");
        t.file(
            "proc/cgroups",
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t4\t17\t0\npids\t8\t1\t1\ndevices\t5\t1\t1\n",
        );
        t.file(
            "proc/self/mounts",
            "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
             cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n\
             cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n\
             cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n",
        );
        t.file("sys/fs/cgroup/unified/cgroup.controllers", "\n");
        t.file("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
        t.file("proc/self/status", "Name:\tberth\nSeccomp:\t0\nSeccomp_filters:\t0\n");
        t.file("proc/sys/kernel/seccomp/actions_avail", "kill_process\n");
        t
    }

    #[test]
    fn cgroup_hierarchy() {
        let t = fake_host();
        let h = Host::at(&t.0);
        let cg = h.cgroups();
        assert_eq!(cg.mode, CgroupMode::Hybrid);
        let v1: Vec<&str> = cg.v1.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(v1, ["cpu", "pids"], "name=systemd is not a controller");
        assert_eq!(cg.v2.as_ref().map(|(p, c)| (p.clone(), c.len())), Some((PathBuf::from("/sys/fs/cgroup/unified"), 0)));
        assert_eq!(cg.controller("memory"), Some(false), "disabled at boot");
        assert_eq!(cg.controller("devices"), Some(true), "compiled in and enabled, not mounted");
        assert_eq!(cg.controller("freezer"), Some(false), "not compiled in");

        t.file("proc/self/mounts", "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n");
        t.file("sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
        let cg = h.cgroups();
        assert_eq!(cg.mode, CgroupMode::V2);
        assert_eq!(cg.controller("memory"), Some(true));
        t.file("proc/self/mounts", "");
        assert_eq!(h.cgroups().mode, CgroupMode::None);
    }

    #[test]
    fn live_probes_win_over_config() {
        let t = fake_host();
        let h = Host::at(&t.0);
        // The config says everything is there; the live system disagrees for some.
        let all: String = REQUIREMENTS.iter().map(|r| format!("CONFIG_{}=y\n", r.name)).collect();
        let f = check(Some(&KernelConfig::parse(&all)), Some(&h));
        assert_eq!(status_of(&f, "MEMCG").status, Status::Missing, "cgroup_disable=memory");
        assert!(status_of(&f, "MEMCG").note.as_deref().unwrap_or("").contains("disabled at boot"));
        assert_eq!(status_of(&f, "USER_NS").status, Status::Missing, "max_user_namespaces is 0");
        assert_eq!(status_of(&f, "OVERLAY_FS").status, Status::Missing, "not listed, no module support");
        assert_eq!(status_of(&f, "CGROUP_FREEZER").status, Status::Missing);
        assert_eq!(status_of(&f, "KEYS").status, Status::Missing, "no /proc/keys");
        for on in ["UTS_NS", "PID_NS", "CGROUPS", "CGROUP_PIDS", "CGROUP_DEVICE", "CFS_BANDWIDTH", "TMPFS", "SECCOMP", "SECCOMP_FILTER"] {
            assert_eq!(status_of(&f, on).status, Status::Enabled, "{on}");
        }
        assert_eq!(status_of(&f, "CGROUP_BPF").probe, None, "no live probe: the config decides");
        // No module support and no /sys/module/veth: a built-in driver without parameters shows
        // nothing there, so the config decides (this machine's kernel has VETH=y built in).
        assert_eq!(status_of(&f, "VETH").probe, None);
        assert_eq!(status_of(&f, "VETH").status, Status::Enabled);
        t.file("lib/modules/6.1.0-test/modules.builtin", "kernel/drivers/net/veth.ko\n");
        assert_eq!(status_of(&check(None, Some(&h)), "VETH").status, Status::Enabled, "modules.builtin lists it");
        assert_eq!(status_of(&check(None, Some(&h)), "NFT_MASQ").status, Status::Missing, "modules.builtin does not");
        assert_eq!(status_of(&f, "CGROUP_BPF").status, Status::Enabled);

        // Without a config, what cannot be probed is unknown.
        let f = check(None, Some(&h));
        assert_eq!(status_of(&f, "CGROUP_BPF").status, Status::Unknown);
        assert_eq!(status_of(&f, "PID_NS").status, Status::Enabled);
    }

    #[test]
    fn modules_and_running_config() {
        let t = fake_host();
        let h = Host::at(&t.0);
        t.file("proc/modules", "");
        t.file("lib/modules/6.1.0-test/modules.dep", "kernel/fs/overlayfs/overlay.ko.xz:\nkernel/drivers/usb/class/cdc-acm.ko:\n");
        let cg = h.cgroups();
        let probe = |name: &str| h.probe(REQUIREMENTS.iter().find(|r| r.name == name).expect("listed"), &cg).0;
        assert_eq!(probe("OVERLAY_FS"), Some(true));
        assert_eq!(probe("USB_ACM"), Some(true), "cdc-acm.ko is cdc_acm");
        assert_eq!(probe("VETH"), Some(false));

        assert!(h.running_config().expect("no config is not an error").is_none());
        t.file("boot/config-6.1.0-test", "CONFIG_VETH=m\n");
        let (p, c) = h.running_config().expect("read").expect("found");
        assert!(p.ends_with("boot/config-6.1.0-test"));
        assert_eq!(c.get("VETH"), Tristate::Module);
        // /proc/config.gz comes first, and is gzip.
        let mut gz = crate::gzip::GzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut gz, b"# CONFIG_VETH is not set\n").expect("gzip");
        std::fs::write(t.0.join("proc/config.gz"), gz.finish().expect("gzip")).expect("write");
        let (p, c) = h.running_config().expect("read").expect("found");
        assert!(p.ends_with("proc/config.gz"));
        assert_eq!(c.get("VETH"), Tristate::No);

        t.file("proc/config.gz", "garbage\n");
        assert!(h.running_config().is_err(), "a config that is not one is an error");
    }
}
