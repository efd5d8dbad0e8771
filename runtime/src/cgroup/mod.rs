//! Cgroups for containers on v1, v2 and hybrid hosts.
//!
//! The hierarchies are found in `/proc/self/mountinfo`, never by guessing paths: v1 controllers may
//! be mounted one per directory or co-mounted (`cpu,cpuacct`), and boards mount them in odd places.
//! A host with v1 controllers and a cgroup2 mount too (systemd's "hybrid" layout, or an empty
//! `/sys/fs/cgroup/unified` as on the development machine) is driven through v1, because a
//! controller bound to v1 cannot be enabled in the cgroup2 tree. berth still creates the container's
//! directory in that cgroup2 tree, as runc does: it costs one mkdir and gives `cgroup.kill`, which
//! kills every task without the freeze-and-signal dance v1 needs.
//!
//! Every container gets `<mount>/<parent>/<id>` in each hierarchy (`parent` is "berth" or similar).
//! Limits are written in an order the kernel accepts, and each failed write names its file and value.

mod resources;
mod size;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Kind, Result};

pub use resources::{online_cpus, Resources};
pub use size::parse_size;

/// The v1 controllers berth uses, in the order their directories are created.
const V1_CONTROLLERS: [&str; 7] = ["cpuset", "memory", "pids", "cpu", "cpuacct", "freezer", "devices"];

/// How long `freeze` waits for the kernel to report the new state, and `destroy` retries EBUSY.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
const DESTROY_TIMEOUT: Duration = Duration::from_secs(2);

/// Docker's warning when a swap limit was asked for and the kernel has no swap accounting.
const NO_SWAP_WARNING: &str =
    "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    V1,
    V2,
    /// v1 controllers plus a cgroup2 mount; the controllers are used through v1.
    Hybrid,
}

/// The cgroup mounts of this host.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// Mount point of each v1 controller berth uses that is mounted; co-mounted controllers share
    /// one path. In `V1_CONTROLLERS` order.
    v1: Vec<(&'static str, PathBuf)>,
    /// The cgroup2 mount, if any.
    v2: Option<PathBuf>,
}

impl Cgroups {
    pub fn detect() -> Result<Cgroups> {
        let text = fs::read_to_string("/proc/self/mountinfo").ctx(|| "read /proc/self/mountinfo".to_string())?;
        Self::from_mountinfo(&text)
    }

    pub fn from_mountinfo(text: &str) -> Result<Cgroups> {
        // (controller, mount point, mount root is "/"): a mount of the hierarchy's root is preferred
        // over a bind mount of some sub-cgroup (as a container runtime may leave behind).
        let mut v1: Vec<(&'static str, PathBuf, bool)> = Vec::new();
        let mut v2: Option<(PathBuf, bool)> = None;
        for line in text.lines() {
            // "36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw,errors=continue":
            // optional fields end at a lone "-"; a space inside a path is escaped (\040), so " - "
            // cannot occur anywhere else. The kernel writes no other shape; a line that is not
            // like this (truncated input) carries no mount we could use, so it is skipped.
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(mnt), Some(fstype)) = (left.get(3), left.get(4), right.first()) else { continue };
            let at_root = *root == "/";
            let mnt = PathBuf::from(unescape(mnt));
            match *fstype {
                "cgroup2" if v2.as_ref().is_none_or(|(_, r)| !r && at_root) => v2 = Some((mnt, at_root)),
                "cgroup" => {
                    let opts = right.get(2).copied().unwrap_or("");
                    for opt in opts.split(',') {
                        let Some(ctrl) = V1_CONTROLLERS.iter().find(|c| **c == opt) else { continue };
                        match v1.iter_mut().find(|(c, _, _)| c == ctrl) {
                            None => v1.push((ctrl, mnt.clone(), at_root)),
                            Some(e) if !e.2 && at_root => *e = (ctrl, mnt.clone(), at_root),
                            Some(_) => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if v1.is_empty() && v2.is_none() {
            return Err(Error::not_found("no cgroup file system is mounted (no cgroup or cgroup2 line in mountinfo)"));
        }
        v1.sort_by_key(|(c, _, _)| V1_CONTROLLERS.iter().position(|x| x == c));
        Ok(Cgroups { v1: v1.into_iter().map(|(c, p, _)| (c, p)).collect(), v2: v2.map(|(p, _)| p) })
    }

    pub fn mode(&self) -> Mode {
        match (self.v1.is_empty(), self.v2.is_some()) {
            (true, _) => Mode::V2,
            (false, true) => Mode::Hybrid,
            (false, false) => Mode::V1,
        }
    }

    /// Creates `<parent>/<id>` in every hierarchy berth uses, applies `res` and returns the handle
    /// with warnings for limits the kernel cannot enforce. On error nothing it created is left.
    pub fn create(&self, parent: &str, id: &str, res: &Resources) -> Result<(Cgroup, Vec<String>)> {
        check_name(parent)?;
        check_name(id)?;
        res.validate()?;
        let mut made = Made::default();
        let out = self.create_in(parent, id, res, &mut made);
        if out.is_err() {
            made.undo();
        }
        out
    }

    fn create_in(&self, parent: &str, id: &str, res: &Resources, made: &mut Made) -> Result<(Cgroup, Vec<String>)> {
        let cg = self.open(parent, id);
        let mut warnings = Vec::new();
        match &cg.inner {
            Inner::V1(c) => {
                for dir in c.dirs() {
                    let cpuset = c.cpuset.as_deref() == Some(dir.as_path());
                    made.child(&dir, |p| if cpuset { v1::init_cpuset(p) } else { Ok(()) })?;
                }
            }
            Inner::V2(c) => {
                let (root, parent_dir) = v2_root_and_parent(&c.dir)?;
                warnings.extend(v2::enable_controllers(root)?);
                made.child(&c.dir, |p| {
                    if p == parent_dir {
                        warnings.extend(v2::enable_controllers(p)?);
                    }
                    Ok(())
                })?;
            }
        }
        warnings.extend(cg.apply(res, true)?);
        Ok((cg, warnings))
    }

    /// A handle to an existing cgroup (after an agent restart); nothing is checked.
    pub fn open(&self, parent: &str, id: &str) -> Cgroup {
        let rel = Path::new(parent).join(id);
        let inner = match (self.mode(), &self.v2) {
            (Mode::V2, Some(v2)) => Inner::V2(v2::V2 { dir: v2.join(&rel) }),
            (mode, _) => {
                let dir = |ctrl: &str| self.v1.iter().find(|(c, _)| *c == ctrl).map(|(_, m)| m.join(&rel));
                Inner::V1(v1::V1 {
                    cpuset: dir("cpuset"),
                    memory: dir("memory"),
                    pids: dir("pids"),
                    cpu: dir("cpu"),
                    cpuacct: dir("cpuacct"),
                    freezer: dir("freezer"),
                    devices: dir("devices"),
                    unified: if mode == Mode::Hybrid { self.v2.as_ref().map(|m| m.join(&rel)) } else { None },
                })
            }
        };
        Cgroup { inner }
    }
}

/// Whether the container `id` of the agent on `root` is paused (its cgroup frozen). For `ps` and
/// `inspect`, which read records without the agent: the kernel is the record of this state.
pub fn is_paused(root: &Path, id: &str) -> bool {
    Cgroups::detect().is_ok_and(|c| c.open(&crate::paths::cgroup_parent(root), id).frozen().unwrap_or(false))
}

/// A container's cgroup: its directory in each hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    V1(v1::V1),
    V2(v2::V2),
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub memory_usage: u64,
    /// 0 when unlimited.
    pub memory_limit: u64,
    pub memory_cache: u64,
    pub oom_kills: u64,
    pub pids: u64,
    /// 0 when unlimited.
    pub pids_limit: u64,
    pub cpu_usage_ns: u64,
}

impl Cgroup {
    /// Moves `pid` (all its threads) into the cgroup in every hierarchy.
    pub fn join(&self, pid: u32) -> Result<()> {
        for dir in self.paths() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The files through which a single-threaded process moves itself in (writing "0" to each):
    /// `tasks` in a v1 hierarchy, `cgroup.procs` in a cgroup2 tree. Moving a whole process
    /// (`cgroup.procs`) takes the kernel's global threadgroup lock for writing, and the first such
    /// write after a quiet spell waits for an RCU grace period: 4 to 24 ms on the development
    /// machine, the largest item of a container's start. Moving the calling thread alone
    /// (`tasks`, "0") does not take it, and for a process of one thread it is the same move.
    /// cgroup2 refuses a thread move across domains, so there it stays `cgroup.procs` (and the
    /// wait with it, unless the process was born there: see `cgroup2_dir`). Each file comes with
    /// whether it is the cgroup2 group's (the one a process born there need not write).
    pub fn self_join_files(&self) -> Vec<(PathBuf, bool)> {
        match &self.inner {
            Inner::V1(c) => c
                .dirs()
                .into_iter()
                .map(|d| if Some(&d) == c.unified.as_ref() { (d.join("cgroup.procs"), true) } else { (d.join("tasks"), false) })
                .collect(),
            Inner::V2(c) => vec![(c.dir.join("cgroup.procs"), true)],
        }
    }

    /// The group's directory in a cgroup2 tree (v2, or a hybrid host's), where a child can be
    /// born directly (clone3's CLONE_INTO_CGROUP), which needs no move and so no grace period.
    pub fn cgroup2_dir(&self) -> Option<&Path> {
        match &self.inner {
            Inner::V1(c) => c.unified.as_deref(),
            Inner::V2(c) => Some(&c.dir),
        }
    }

    /// Moves the calling process, which must have one thread (a fresh fork), into the cgroup;
    /// with `born_in_cgroup2`, it already is in its cgroup2 group.
    pub fn join_self(&self, born_in_cgroup2: bool) -> Result<()> {
        for (file, v2) in self.self_join_files() {
            if !(born_in_cgroup2 && v2) {
                write(&file, "0")?;
            }
        }
        Ok(())
    }

    /// Changes the limits of a running container, as `docker update`: only the fields that are set.
    pub fn update(&self, res: &Resources) -> Result<Vec<String>> {
        res.check(resources::online_cpus(), true)?;
        self.apply(res, false)
    }

    fn apply(&self, res: &Resources, creating: bool) -> Result<Vec<String>> {
        match &self.inner {
            Inner::V1(c) => c.apply(res, creating),
            Inner::V2(c) => c.apply(res, creating),
        }
    }

    pub fn stats(&self) -> Result<Stats> {
        match &self.inner {
            Inner::V1(c) => c.stats(),
            Inner::V2(c) => c.stats(),
        }
    }

    /// OOM kills inside the cgroup so far; 0 if the kernel does not say.
    pub fn oom_kills(&self) -> u64 {
        match &self.inner {
            Inner::V1(c) => c.oom_kills(),
            Inner::V2(c) => c.oom_kills(),
        }
    }

    /// Every process in the cgroup, sorted.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let dir = match &self.inner {
            Inner::V1(c) => c.procs_dir().ok_or_else(|| Error::new(Kind::Io, "no v1 cgroup hierarchy to list processes from"))?,
            Inner::V2(c) => &c.dir,
        };
        read_procs(dir)
    }

    /// Freezes (`true`) or thaws every task, returning once the kernel reports the new state.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        match &self.inner {
            Inner::V1(c) => c.freeze(frozen),
            Inner::V2(c) => v2::freeze(&c.dir, frozen),
        }
    }

    /// Whether the cgroup is frozen (`pause`): what `ps` and `inspect` show as Paused, read from the
    /// kernel so that it stays true across an agent restart without a record of its own.
    pub fn frozen(&self) -> Result<bool> {
        match &self.inner {
            Inner::V1(c) => match (&c.freezer, &c.unified) {
                (Some(dir), _) => Ok(read(&dir.join("freezer.state"))?.trim() != "THAWED"),
                (None, Some(u)) => Ok(keyed_file(&u.join("cgroup.events"), "frozen")? == 1),
                (None, None) => Ok(false),
            },
            Inner::V2(c) => Ok(keyed_file(&c.dir.join("cgroup.events"), "frozen")? == 1),
        }
    }

    /// SIGKILLs every task: `cgroup.kill` where the kernel has it (v2, or the cgroup2 tree of a
    /// hybrid host; Linux >= 5.14), else freeze, signal each pid, thaw, so nothing forks in between.
    /// Returns once the signals are sent; the tasks die as they are scheduled.
    pub fn kill_all(&self) -> Result<()> {
        let unified = match &self.inner {
            Inner::V1(c) => c.unified.as_deref(),
            Inner::V2(c) => Some(c.dir.as_path()),
        };
        if let Some(dir) = unified {
            let kill = dir.join("cgroup.kill");
            if kill.exists() {
                return write(&kill, "1");
            }
        }
        let frozen = self.freeze(true).is_ok();
        let mut res = Ok(());
        // Unfrozen (no freezer, or a task stuck in uninterruptible sleep), a task may fork while
        // we signal; a few rounds catch the children.
        for _ in 0..if frozen { 1 } else { 10 } {
            let pids = match self.pids() {
                Ok(p) => p,
                Err(e) => {
                    res = Err(e);
                    break;
                }
            };
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                if let Err(e) = sigkill(pid) {
                    res = Err(e);
                }
            }
            if !frozen {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if frozen {
            // Killed tasks die only once thawed.
            self.freeze(false)?;
        }
        res
    }

    /// Removes every directory, sub-cgroups first; EBUSY (tasks still exiting) is retried for
    /// about 2 s. Missing directories are fine.
    pub fn destroy(&self) -> Result<()> {
        let deadline = Instant::now() + DESTROY_TIMEOUT;
        let mut res = Ok(());
        for dir in self.paths() {
            if let Err(e) = remove_cgroup_dir(&dir, deadline) {
                if res.is_ok() {
                    res = Err(e);
                }
            }
        }
        res
    }

    /// Hotplug: lets the running container use one more device (`allow`), or no longer. `all` is
    /// every rule the container has afterwards: v1 takes the one line, v2 replaces its program.
    pub fn device_rule(&self, rule: &str, allow: bool, all: &[String]) -> Result<()> {
        match &self.inner {
            Inner::V1(c) => {
                let dir = c.devices.as_deref().ok_or_else(|| v1::missing("devices", "change device rules"))?;
                write(&dir.join(if allow { "devices.allow" } else { "devices.deny" }), rule)
            }
            Inner::V2(c) => Ok(berth_device::bpf::apply(&c.dir, &berth_device::rule::parse_all(all)?)?),
        }
    }

    /// Every directory this cgroup owns.
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.inner {
            Inner::V1(c) => c.dirs(),
            Inner::V2(c) => vec![c.dir.clone()],
        }
    }
}

/// `parent` and `id` become directory names: one component, nothing that walks the tree.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::invalid(format!("invalid cgroup name {name:?}: must be a single path component")));
    }
    Ok(())
}

/// The cgroup2 mount and `<mount>/<parent>` of a container directory `<mount>/<parent>/<id>`.
fn v2_root_and_parent(dir: &Path) -> Result<(&Path, &Path)> {
    let parent = dir.parent();
    match (parent, parent.and_then(Path::parent)) {
        (Some(p), Some(r)) => Ok((r, p)),
        _ => Err(Error::invalid(format!("cgroup directory {} has no parent", dir.display()))),
    }
}

/// The directories `create` made, so that a failure removes exactly those.
#[derive(Default)]
struct Made {
    dirs: Vec<PathBuf>,
}

impl Made {
    /// Makes `dir` (which must not exist) and its parent if missing, running `init` on each
    /// directory made, parent first.
    fn child(&mut self, dir: &Path, mut init: impl FnMut(&Path) -> Result<()>) -> Result<()> {
        let parent = dir.parent().ok_or_else(|| Error::invalid(format!("cgroup directory {} has no parent", dir.display())))?;
        // The shared parent may be removed between our steps by whoever removes an empty
        // parent (a sibling's failed `create` that made it, an administrator, the tests): the
        // mkdir of the child then fails with ENOENT, or the parent's init with ENOENT/ENODEV.
        // Start again; a failure that persists is reported on the last attempt.
        const ATTEMPTS: u32 = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let made_parent = match fs::create_dir(parent) {
                Ok(()) => true,
                // Made by someone else, maybe without the init (an older run killed midway).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(Error::io_at("create cgroup", parent, e)),
            };
            if made_parent {
                self.dirs.push(parent.to_path_buf());
            }
            if let Err(e) = init(parent) {
                if attempt < ATTEMPTS {
                    continue;
                }
                return Err(e);
            }
            match fs::create_dir(dir) {
                Ok(()) => {
                    self.dirs.push(dir.to_path_buf());
                    return init(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < ATTEMPTS => continue,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::conflict(format!("cgroup {} already exists", dir.display())));
                }
                Err(e) => return Err(Error::io_at("create cgroup", dir, e)),
            }
        }
    }

    /// Removes what was made, newest first. The parent may hold a sibling's cgroup by now; that
    /// rmdir then fails with EBUSY and the parent stays, as it should.
    fn undo(self) {
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Mount points in mountinfo escape space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes one value to a cgroup file. The file is never created: a missing file means a missing
/// controller, reported as such by the callers.
fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write;
    // One write(2): cgroup files parse each write on its own.
    fs::OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

fn write(path: &Path, value: &str) -> Result<()> {
    write_raw(path, value).map_err(|e| write_error(path, value, e))
}

fn write_error(path: &Path, value: &str, e: io::Error) -> Error {
    Error::io(format!("write {value:?} to {}", path.display()), e)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).ctx_path("read", path)
}

/// The file's content, or `None` when it does not exist (controller absent, old kernel).
fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io_at("read", path, e)),
    }
}

/// A number file such as `memory.usage_in_bytes`; "max" and the kernel's near-`i64::MAX`
/// "unlimited" values read as 0; a missing file reads as 0.
fn read_limit(path: &Path) -> Result<u64> {
    let Some(s) = read_opt(path)? else { return Ok(0) };
    let s = s.trim();
    if s == "max" {
        return Ok(0);
    }
    let v: u64 = s.parse().map_err(|_| Error::invalid(format!("{}: expected a number, got {s:?}", path.display())))?;
    Ok(if v >= UNLIMITED { 0 } else { v })
}

/// The smallest value v1 reports for "no limit": `PAGE_COUNTER_MAX` pages, which is `LONG_MAX`
/// pages on 32-bit kernels (2^31 - 1 pages of 4 KiB, about 8 TiB) and `LONG_MAX` bytes rounded down
/// to a page on 64-bit ones. No board has 8 TiB of memory, so anything from there up is "unlimited".
const UNLIMITED: u64 = 0x7fff_ffff * 4096;

/// The number after `key` in a flat-keyed file ("oom_kill 3" in `memory.events`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn keyed_file(path: &Path, key: &str) -> Result<u64> {
    Ok(read_opt(path)?.and_then(|t| keyed(&t, key)).unwrap_or(0))
}

fn read_procs(dir: &Path) -> Result<Vec<u32>> {
    let path = dir.join("cgroup.procs");
    let text = read(&path)?;
    let mut pids = text
        .lines()
        .map(|l| l.trim().parse::<u32>().map_err(|_| Error::invalid(format!("{}: bad pid {l:?}", path.display()))))
        .collect::<Result<Vec<u32>>>()?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Polls `done` with a growing sleep until it holds or `timeout` passes; returns whether it held.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<bool> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

fn sigkill(pid: u32) -> Result<()> {
    // pid 0 or one beyond pid_t would make kill(2) signal a process group or everything we may
    // signal; cgroup.procs never lists such a pid, but a bad read must not turn into that.
    let Ok(p) = libc::pid_t::try_from(pid) else { return Ok(()) };
    if p <= 0 {
        return Ok(());
    }
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    let rc = unsafe { libc::kill(p, libc::SIGKILL) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // Already gone between listing and signalling.
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(Error::io(format!("kill pid {pid}"), e));
        }
    }
    Ok(())
}

/// Removes a cgroup directory and any sub-cgroups the container made inside it, retrying EBUSY
/// (tasks still exiting) until `deadline`.
fn remove_cgroup_dir(dir: &Path, deadline: Instant) -> Result<()> {
    let mut children_gone = false;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Busy: groups the container made inside its own (removed first, once; most have
            // none, so the directory is read only then), or processes not gone yet.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !children_gone => {
                remove_child_groups(dir, deadline)?;
                children_gone = true;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let pids = read_procs(dir).map(|p| format!("{p:?}")).unwrap_or_else(|_| "unknown".into());
                return Err(Error::new(Kind::Conflict, format!("remove cgroup {}: still busy after 2 s (pids {pids})", dir.display())));
            }
            Err(e) => return Err(Error::io_at("remove cgroup", dir, e)),
        }
    }
}

fn remove_child_groups(dir: &Path, deadline: Instant) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io_at("read cgroup", dir, e)),
    };
    for entry in entries {
        let entry = entry.ctx_path("read cgroup", dir)?;
        if entry.file_type().ctx_path("stat", &entry.path())?.is_dir() {
            remove_cgroup_dir(&entry.path(), deadline)?;
        }
    }
    Ok(())
}
