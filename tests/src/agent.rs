//! A real `berth agent` on a temporary root, for the container tests.
//!
//! - [`Agent`]: starts `berth --root R -H unix://S agent` (socket `S` beside the root, in its
//!   scratch dir), waits until the socket accepts, runs CLI commands against it, and on drop sends
//!   SIGTERM, waits up to 15 s, then SIGKILL. After the agent is gone, the drop also kills whatever
//!   is left in the root's cgroups and detaches mounts under the scratch dir, so a failed test
//!   leaves nothing running on the host (the tests assert cleanliness themselves, before the drop).
//! - [`Snapshot`]: what a container may leave behind (`<root>/containers` and `<root>/volumes`
//!   entries, cgroup dirs under the root's `berth-<hash>` parent in every hierarchy, mounts under
//!   the agent's own directories), for leak checks: only what berth made counts.
//! - [`host_shared`] / [`host_exclusive`]: tests that compare host-wide state (the mount table)
//!   take the exclusive guard; every other test of the same binary takes the shared one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{berth_bin, fixtures, require_root, run, s, sha256_hex, Root, Stdin};

/// How long the agent gets to exit after SIGTERM before it is killed.
pub const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the agent gets to start serving.
pub const AGENT_START_TIMEOUT: Duration = Duration::from_secs(20);

static HOST: RwLock<()> = RwLock::new(());

/// Shared use of the host: taken by every test that does not compare host-wide state.
pub fn host_shared() -> RwLockReadGuard<'static, ()> {
    HOST.read().unwrap_or_else(|e| e.into_inner())
}

/// Exclusive use of the host (within this test binary): for tests that compare the mount table
/// before and after.
pub fn host_exclusive() -> RwLockWriteGuard<'static, ()> {
    HOST.write().unwrap_or_else(|e| e.into_inner())
}

/// A running `berth agent` on its own temporary root.
pub struct Agent {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    /// Global options put before `agent` (e.g. `--log-level debug`), from the next start on.
    global_args: Vec<String>,
    /// Options put after `agent` (e.g. `--live-restore`), from the next start on.
    agent_args: Vec<String>,
    /// Extra environment of the agent process (e.g. `NOTIFY_SOCKET`), from the next start on.
    env: Vec<(String, String)>,
    /// A network namespace (`/run/netns/NAME`) the agent runs in (entered with `nsenter --net`
    /// only: the agent keeps the host's mount namespace), for the networking tests.
    netns: Option<String>,
    // Dropped last (fields drop in declaration order, after `Drop::drop`): the directory goes only
    // once the agent and its containers are gone.
    root: Root,
}

impl Agent {
    /// A new root holding the busybox fixture image (`busybox:latest`), with an agent serving it.
    pub fn with_busybox() -> Agent {
        require_root();
        let root = Root::new();
        root.ok(&["load", "-q", "-i", s(&fixtures().busybox.path)]);
        Agent::start(root)
    }

    /// Starts an agent on an existing root; its socket is `<scratch>/berth.sock`.
    pub fn start(root: Root) -> Agent {
        require_root();
        let socket = root.scratch().join("berth.sock");
        let log = root.scratch().join("agent.log");
        let mut a = Agent { child: None, socket, log, global_args: Vec::new(), agent_args: Vec::new(), env: Vec::new(), netns: None, root };
        a.spawn();
        a
    }

    /// Like [`Agent::start_with`], with the agent inside network namespace `netns` (a path such
    /// as `/run/netns/NAME`): its bridges, rules and containers' networks live there.
    pub fn start_in_netns(root: Root, netns: &str, agent_opts: &[&str]) -> Agent {
        require_root();
        let socket = root.scratch().join("berth.sock");
        let log = root.scratch().join("agent.log");
        let mut a = Agent {
            child: None,
            socket,
            log,
            global_args: Vec::new(),
            agent_args: agent_opts.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            netns: Some(netns.to_string()),
            root,
        };
        a.spawn();
        a
    }

    /// Like [`Agent::start`], with options before `agent` (`global`) and after it (`agent_opts`)
    /// from the first start on.
    pub fn start_with(root: Root, global: &[&str], agent_opts: &[&str]) -> Agent {
        require_root();
        let socket = root.scratch().join("berth.sock");
        let log = root.scratch().join("agent.log");
        let mut a = Agent { child: None, socket, log, global_args: Vec::new(), agent_args: Vec::new(), env: Vec::new(), netns: None, root };
        a.set_agent_args(global, agent_opts);
        a.spawn();
        a
    }

    /// Like [`Agent::start_with`], with extra environment variables of the agent process from
    /// the first start on (e.g. `BERTH_UPDATE_STEP_DELAY_MS` for the fault-injection suite).
    pub fn start_with_env(root: Root, global: &[&str], agent_opts: &[&str], env: &[(&str, &str)]) -> Agent {
        require_root();
        let socket = root.scratch().join("berth.sock");
        let log = root.scratch().join("agent.log");
        let mut a = Agent { child: None, socket, log, global_args: Vec::new(), agent_args: Vec::new(), env: Vec::new(), netns: None, root };
        a.set_agent_args(global, agent_opts);
        for (k, v) in env {
            a.set_agent_env(k, Some(v));
        }
        a.spawn();
        a
    }

    /// The root the agent serves.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`, the `-H` value.
    pub fn host(&self) -> String {
        format!("unix://{}", s(&self.socket))
    }

    /// Everything the agent wrote to stdout and stderr (over all its starts).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The agent's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A `berth agent` command for this root and socket (not started), with the options and
    /// environment set by [`Agent::set_agent_args`] and [`Agent::set_agent_env`].
    pub fn agent_command(&self) -> Command {
        let mut args: Vec<&str> = self.global_args.iter().map(String::as_str).collect();
        args.push("agent");
        // Outside a test-made network namespace the agent must not touch the machine's network:
        // containers default to the host's (no bridge, no netfilter table is made).
        if self.netns.is_none() && !self.agent_args.iter().any(|a| a.starts_with("--default-network")) {
            args.extend(["--default-network", "host"]);
        }
        args.extend(self.agent_args.iter().map(String::as_str));
        let mut c = self.command(&args);
        if let Some(ns) = &self.netns {
            let inner = c;
            c = Command::new("nsenter");
            c.arg(format!("--net={ns}")).arg("--").arg(inner.get_program()).args(inner.get_args());
            c.env_remove("BERTH_ROOT").env_remove("BERTH_HOST");
        }
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.stdin(Stdio::null());
        c
    }

    /// Command-line options of the agent from its next start on: `global` before `agent` (e.g.
    /// `--log-level debug`), `agent_opts` after it (e.g. `--live-restore`). Replaces earlier ones.
    pub fn set_agent_args(&mut self, global: &[&str], agent_opts: &[&str]) {
        self.global_args = global.iter().map(|s| s.to_string()).collect();
        self.agent_args = agent_opts.iter().map(|s| s.to_string()).collect();
    }

    /// Sets (or with `None` removes from the list) one environment variable of the agent from
    /// its next start on.
    pub fn set_agent_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let log =
            fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let log2 = log.try_clone().expect("dup agent log");
        let mut child = self
            .agent_command()
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", berth_bin().display()));
        let deadline = Instant::now() + AGENT_START_TIMEOUT;
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("berth agent exited ({st}) before serving on {}:\n{}", self.socket.display(), self.log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berth agent did not accept on {} within {AGENT_START_TIMEOUT:?}:\n{}", self.socket.display(), self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Starts the agent again after [`Agent::stop`].
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// SIGTERM, then waits up to [`AGENT_STOP_TIMEOUT`]. Panics (after SIGKILL) if it does not exit
    /// in time. Returns the exit status and how long it took.
    pub fn stop(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("agent is running");
        let t0 = Instant::now();
        match terminate(&mut child) {
            Ok(st) => (st, t0.elapsed()),
            Err(st) => panic!("berth agent did not exit within {AGENT_STOP_TIMEOUT:?} of SIGTERM (killed: {st}):\n{}", self.log()),
        }
    }

    /// SIGKILL, as a crash or the OOM killer would (containers keep running under their
    /// monitors); reaps the agent and returns its status. [`Agent::restart`] starts a new one.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent is running");
        let _ = child.kill();
        child.wait().expect("wait for the killed agent")
    }

    /// A `berth --root R -H unix://S ARGS...` command (BERTH_ROOT and BERTH_HOST removed).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root").arg(self.root.path()).arg("-H").arg(self.host()).args(args);
        c.env_remove("BERTH_ROOT").env_remove("BERTH_HOST");
        c
    }

    /// Runs berth with these arguments (stdin /dev/null), whatever the exit status.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_in(args, Stdin::Null)
    }

    /// Like [`Agent::cmd`] with something on standard input.
    pub fn cmd_in(&self, args: &[&str], stdin: Stdin) -> Output {
        run(&mut self.command(args), stdin)
    }

    /// Runs berth, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        if !out.status.success() {
            panic!(
                "berth {} failed ({}), expected success:\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs berth, returns (exit code, stdout, stderr); panics if it was killed by a signal.
    pub fn code(&self, args: &[&str]) -> (i32, String, String) {
        code_of(&self.cmd(args), args)
    }

    /// `berth run -d ARGS...`: asserts success and a 64-hex ID on stdout; returns the ID.
    pub fn run_detached(&self, args: &[&str]) -> String {
        let mut a = vec!["run", "-d"];
        a.extend_from_slice(args);
        let id = self.ok(&a).trim().to_string();
        assert!(crate::is_hex64(&id), "berth {} printed {id:?}, expected a 64-hex container ID", a.join(" "));
        id
    }

    /// `berth inspect -f TEMPLATE NAME`, trimmed.
    pub fn inspect_f(&self, name: &str, template: &str) -> String {
        self.ok(&["inspect", "-f", template, name]).trim().to_string()
    }

    /// `berth inspect NAME` (a JSON array of one), its only object.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["inspect", "--type", "container", name]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect {name} is not JSON ({e}):\n{out}"));
        let arr = v.as_array().unwrap_or_else(|| panic!("inspect {name} is not an array:\n{out}"));
        assert_eq!(arr.len(), 1, "inspect {name}: one object");
        arr[0].clone()
    }

    /// The pid of a running container's first process (`.State.Pid`); panics unless positive.
    pub fn pid_of(&self, name: &str) -> u32 {
        let p = self.inspect_f(name, "{{.State.Pid}}");
        match p.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => panic!("inspect {name}: .State.Pid is {p:?}, expected a positive pid"),
        }
    }

    /// Waits (up to `timeout`) until `inspect -f {{.State.Status}}` says `status`.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.inspect_f(name, "{{.State.Status}}");
            if got == status {
                return;
            }
            if Instant::now() > deadline {
                panic!("container {name}: status {got:?}, still not {status:?} after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `<root>/containers/<id>`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.path().join("containers").join(id)
    }

    /// The name of this root's cgroup parent: `berth-<first 12 hex of sha256(canonical root)>`.
    pub fn cgroup_parent(&self) -> String {
        let canon = fs::canonicalize(self.root.path()).unwrap_or_else(|e| panic!("canonicalize {}: {e}", self.root.path().display()));
        format!("berth-{}", &sha256_hex(canon.as_os_str().as_encoded_bytes())[..12])
    }

    /// Entries of `<root>/containers` (empty if the directory does not exist).
    pub fn container_entries(&self) -> BTreeSet<String> {
        self.entries("containers")
    }

    /// Entries of `<root>/volumes` (named and anonymous volumes; empty if absent).
    pub fn volume_entries(&self) -> BTreeSet<String> {
        self.entries("volumes")
    }

    fn entries(&self, dir: &str) -> BTreeSet<String> {
        match fs::read_dir(self.root.path().join(dir)) {
            Ok(rd) => rd.map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => panic!("read {}/{dir}: {e}", self.root.path().display()),
        }
    }

    /// Every cgroup directory at or below `<hierarchy>/<cgroup_parent>` in every mounted hierarchy.
    pub fn cgroup_dirs(&self) -> BTreeSet<String> {
        let parent = self.cgroup_parent();
        let mut out = BTreeSet::new();
        for h in cgroup_mounts() {
            let top = h.join(&parent);
            if top.is_dir() {
                walk_dirs(&top, &mut out);
            }
        }
        out
    }

    /// What this agent's containers may leave behind, right now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            containers: self.container_entries(),
            volumes: self.volume_entries(),
            cgroups: self.cgroup_dirs(),
            mounts: self.own_mounts(),
        }
    }

    /// The mounts berth may make for this agent: under its root's scratch directory (the root is
    /// inside it) and its run directory. Another program mounting elsewhere changes nothing here.
    pub fn own_mounts(&self) -> BTreeMap<String, usize> {
        let run_dir = Path::new("/run/berth").join(self.cgroup_parent());
        mounts_under(&[self.root.scratch(), &run_dir])
    }

    /// Names of containers `ps -a` lists (`--format {{.Names}}`-like, from the JSON form).
    pub fn ps_all(&self) -> Vec<Value> {
        let out = self.ok(&["ps", "-a", "--no-trunc", "--format", "json"]);
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("ps --format json line is not JSON ({e}): {l}")))
            .collect()
    }

    /// Kills what is left in this root's cgroups, removes them, and detaches mounts under the
    /// scratch dir. Only for after the agent has exited.
    fn scrub(&self) {
        let parent = self.cgroup_parent();
        for h in cgroup_mounts() {
            let top = h.join(&parent);
            if !top.is_dir() {
                continue;
            }
            let mut dirs = BTreeSet::new();
            walk_dirs(&top, &mut dirs);
            let mut dirs: Vec<String> = dirs.into_iter().collect();
            dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
            for d in &dirs {
                for _ in 0..50 {
                    let procs = fs::read_to_string(Path::new(d).join("cgroup.procs")).unwrap_or_default();
                    let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
                    if pids.is_empty() {
                        break;
                    }
                    for p in pids {
                        // SAFETY: kill(2) with a pid read from cgroup.procs of a cgroup this test made.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = fs::remove_dir(d);
            }
        }
        let scratch = s(self.root.scratch()).to_string();
        let mut points: Vec<String> = mount_points().into_iter().filter(|m| m.starts_with(&format!("{scratch}/"))).collect();
        points.reverse();
        for m in points {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2 on a NUL-terminated path, lazily (MNT_DETACH).
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(st) = terminate(&mut child) {
                eprintln!("berth agent on {} ignored SIGTERM for {AGENT_STOP_TIMEOUT:?}; killed ({st})", self.root.path().display());
            }
        }
        self.scrub();
    }
}

/// SIGTERM, wait up to [`AGENT_STOP_TIMEOUT`]; Ok(status) if it exited, Err(status) if it had to
/// be killed.
fn terminate(child: &mut Child) -> Result<ExitStatus, ExitStatus> {
    // SAFETY: signals our own child, which has not been reaped yet (we hold its Child).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + AGENT_STOP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                return Err(child.wait().expect("wait for killed agent"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for the berth agent: {e}"),
        }
    }
}

/// (exit code, stdout, stderr) of a finished berth command; panics if a signal killed it.
pub fn code_of(out: &Output, args: &[&str]) -> (i32, String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(c) => (c, stdout, stderr),
        None => panic!("berth {} was killed by a signal ({}):\nstdout: {stdout}\nstderr: {stderr}", args.join(" "), out.status),
    }
}

/// What containers may leave behind on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Entries of `<root>/containers`.
    pub containers: BTreeSet<String>,
    /// Entries of `<root>/volumes`.
    pub volumes: BTreeSet<String>,
    /// Cgroup directories at or below the root's `berth-<hash>` parent, in every hierarchy.
    pub cgroups: BTreeSet<String>,
    /// The mounts under the agent's own directories (`/proc/self/mountinfo` without mount IDs, see
    /// [`Agent::own_mounts`]), as a multiset.
    pub mounts: BTreeMap<String, usize>,
}

impl Snapshot {
    /// A readable list of what differs from `before` (empty if nothing does).
    pub fn diff(&self, before: &Snapshot) -> String {
        let mut out = String::new();
        let sets = |what: &str, a: &BTreeSet<String>, b: &BTreeSet<String>, out: &mut String| {
            for x in b.difference(a) {
                out.push_str(&format!("  new {what}: {x}\n"));
            }
            for x in a.difference(b) {
                out.push_str(&format!("  gone {what}: {x}\n"));
            }
        };
        sets("<root>/containers entry", &before.containers, &self.containers, &mut out);
        sets("<root>/volumes entry", &before.volumes, &self.volumes, &mut out);
        sets("cgroup dir", &before.cgroups, &self.cgroups, &mut out);
        let keys: BTreeSet<&String> = before.mounts.keys().chain(self.mounts.keys()).collect();
        for k in keys {
            let (a, b) = (before.mounts.get(k).copied().unwrap_or(0), self.mounts.get(k).copied().unwrap_or(0));
            if a != b {
                out.push_str(&format!("  mount {k}: {a} before, {b} after\n"));
            }
        }
        out
    }

    /// Total number of mounts.
    pub fn mount_count(&self) -> usize {
        self.mounts.values().sum()
    }
}

/// Mount points of every cgroup (v1) and cgroup2 hierarchy, from `/proc/self/mountinfo`.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    mountinfo()
        .iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| PathBuf::from(&m.point))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The mount point of the v1 hierarchy holding `controller` (e.g. `pids`), if any.
pub fn cgroup_v1_mount(controller: &str) -> Option<PathBuf> {
    mountinfo()
        .into_iter()
        .find(|m| m.fstype == "cgroup" && m.super_opts.split(',').any(|o| o == controller))
        .map(|m| PathBuf::from(m.point))
}

/// The directory of a process's cgroup in the v1 hierarchy of `controller`, from
/// `/proc/<pid>/cgroup` (`N:controllers:/path`).
pub fn cgroup_dir_of(pid: u32, controller: &str) -> PathBuf {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    let rel = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            ctl.split(',').any(|c| c == controller).then(|| path.to_string())
        })
        .next()
        .unwrap_or_else(|| panic!("/proc/{pid}/cgroup has no {controller} line:\n{text}"));
    let mnt = cgroup_v1_mount(controller).unwrap_or_else(|| panic!("no cgroup v1 hierarchy with {controller} is mounted"));
    mnt.join(rel.trim_start_matches('/'))
}

/// The mount table entries at or below any of `dirs`, as a multiset (see [`mount_table`]).
pub fn mounts_under(dirs: &[&Path]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in mountinfo() {
        if dirs.iter().any(|d| Path::new(&m.point).starts_with(d)) {
            *out.entry(format!("{} {} {} on {} ({}; {})", m.source, m.fstype, m.root, m.point, m.opts, m.super_opts)).or_insert(0) += 1;
        }
    }
    out
}

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug)]
pub struct MountInfo {
    pub root: String,
    pub point: String,
    pub opts: String,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

/// `/proc/self/mountinfo`, parsed (octal escapes in paths decoded).
pub fn mountinfo() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    parse_mountinfo(&text)
}

/// Parses mountinfo text (as read from any `/proc/<pid>/mountinfo`).
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 6 || post.len() < 3 {
                return None;
            }
            Some(MountInfo {
                root: unescape(pre[3]),
                point: unescape(pre[4]),
                opts: pre[5].to_string(),
                fstype: post[0].to_string(),
                source: unescape(post[1]),
                super_opts: post[2].to_string(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount point of the host's mount table, in mount order.
pub fn mount_points() -> Vec<String> {
    mountinfo().into_iter().map(|m| m.point).collect()
}

/// The host's mount table as a multiset of `source fstype root point opts super-opts`.
pub fn mount_table() -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in mountinfo() {
        *out.entry(format!("{} {} {} on {} ({}; {})", m.source, m.fstype, m.root, m.point, m.opts, m.super_opts)).or_insert(0) += 1;
    }
    out
}

fn walk_dirs(dir: &Path, out: &mut BTreeSet<String>) {
    out.insert(s(dir).to_string());
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(_) => return, // removed meanwhile
    };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk_dirs(&e.path(), out);
        }
    }
}

/// A field of a `/proc/<pid>/status`-style text (`Name:\tvalue`), trimmed.
pub fn status_field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
}

/// True while `/proc/<pid>` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => {
            // state is the field after the `(comm)`.
            let state = st.rsplit_once(") ").map(|(_, r)| r.chars().next().unwrap_or('?')).unwrap_or('?');
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}
