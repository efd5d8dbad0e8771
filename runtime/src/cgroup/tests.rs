//! Mountinfo parsing runs anywhere. Everything else runs on the real kernel as root, under
//! `<mount>/berth-test-<pid>/<id>` in the host's hierarchies, and a guard removes it even when an
//! assertion fails. The `/proc/<pid>/cgroup` checks assume the hierarchies are mounted at their
//! roots, as they are outside a container.

use super::*;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};

const M: i64 = 1024 * 1024;

/// This development machine: v1 controllers one per directory (cpu and cpuacct apart) and an
/// empty cgroup2 at /sys/fs/cgroup/unified.
const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// Debian 10 / Ubuntu 18.04 style pure v1: cpu and cpuacct co-mounted, no cgroup2.
const V1_COMOUNTED: &str = "\
25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
28 25 0:24 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,net_cls,net_prio
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,freezer
33 25 0:29 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,devices
34 25 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
35 25 0:31 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,blkio
";

/// Debian 12 / a Yocto board with systemd: pure v2.
const V2_PURE: &str = "\
22 1 179:2 / / rw,relatime shared:1 - ext4 /dev/mmcblk0p2 rw
24 23 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn mountinfo_hybrid_this_machine() {
    let cgs = Cgroups::from_mountinfo(HYBRID).unwrap();
    assert_eq!(cgs.mode(), Mode::Hybrid);
    assert_eq!(
        cgs.open("berth", "c1").paths(),
        [
            "/sys/fs/cgroup/cpuset/berth/c1",
            "/sys/fs/cgroup/memory/berth/c1",
            "/sys/fs/cgroup/pids/berth/c1",
            "/sys/fs/cgroup/cpu/berth/c1",
            "/sys/fs/cgroup/cpuacct/berth/c1",
            "/sys/fs/cgroup/freezer/berth/c1",
            "/sys/fs/cgroup/devices/berth/c1",
            "/sys/fs/cgroup/unified/berth/c1",
        ]
        .map(p)
    );
}

#[test]
fn mountinfo_pure_v1_comounted() {
    let cgs = Cgroups::from_mountinfo(V1_COMOUNTED).unwrap();
    assert_eq!(cgs.mode(), Mode::V1);
    let cg = cgs.open("berth", "c1");
    assert_eq!(
        cg.paths(),
        [
            "/sys/fs/cgroup/cpuset/berth/c1",
            "/sys/fs/cgroup/memory/berth/c1",
            "/sys/fs/cgroup/pids/berth/c1",
            "/sys/fs/cgroup/cpu,cpuacct/berth/c1",
            "/sys/fs/cgroup/freezer/berth/c1",
            "/sys/fs/cgroup/devices/berth/c1",
        ]
        .map(p)
    );
    let Inner::V1(v1) = &cg.inner else { panic!("v1 expected") };
    assert_eq!(v1.cpu, v1.cpuacct);
    assert_eq!(v1.unified, None);
}

#[test]
fn mountinfo_pure_v2() {
    let cgs = Cgroups::from_mountinfo(V2_PURE).unwrap();
    assert_eq!(cgs.mode(), Mode::V2);
    assert_eq!(cgs.open("berth", "c1").paths(), vec![p("/sys/fs/cgroup/berth/c1")]);
}

/// A fresh fork moves itself through `tasks` in v1 hierarchies (no global lock, no RCU wait) but
/// through `cgroup.procs` in a cgroup2 tree, which refuses thread moves across domains.
#[test]
fn a_process_joins_v1_through_tasks_and_cgroup2_through_procs() {
    let files = |text: &str| Cgroups::from_mountinfo(text).unwrap().open("berth", "c1").self_join_files();
    let hybrid = files(HYBRID);
    assert_eq!(hybrid.len(), 8);
    assert!(hybrid[..7].iter().all(|(f, v2)| f.file_name() == Some("tasks".as_ref()) && !v2), "{hybrid:?}");
    assert_eq!(hybrid[7], (p("/sys/fs/cgroup/unified/berth/c1/cgroup.procs"), true));
    assert!(files(V1_COMOUNTED).iter().all(|(f, v2)| f.file_name() == Some("tasks".as_ref()) && !v2));
    assert_eq!(files(V2_PURE), vec![(p("/sys/fs/cgroup/berth/c1/cgroup.procs"), true)]);
}

#[test]
fn mountinfo_v2_with_named_v1_is_v2() {
    // A leftover `name=systemd` v1 hierarchy (for old containers) carries no controllers.
    let text = format!("{V2_PURE}40 30 0:37 / /run/systemd/cgroup rw,relatime - cgroup cgroup rw,xattr,name=systemd\n");
    let cgs = Cgroups::from_mountinfo(&text).unwrap();
    assert_eq!(cgs.mode(), Mode::V2);
}

#[test]
fn mountinfo_escapes_bind_mounts_and_junk() {
    let text = "\
garbage line without a separator
50 1 0:40 /docker/abc /somewhere/memory rw - cgroup cgroup rw,memory
51 1 0:40 / /mnt/my\\040cgroups/memory rw shared:3 - cgroup cgroup rw,memory
52 1 0:41 / /mnt/back\\134slash rw - cgroup cgroup rw,pids
";
    let cgs = Cgroups::from_mountinfo(text).unwrap();
    assert_eq!(cgs.mode(), Mode::V1);
    // The mount of the hierarchy's root wins over a bind mount of a sub-cgroup.
    assert_eq!(cgs.open("b", "c").paths(), vec![p("/mnt/my cgroups/memory/b/c"), p("/mnt/back\\slash/b/c")]);
    assert_eq!(unescape(r"a\040b\011c\012d\134e\999"), "a b\tc\nd\\e\\999");
}

#[test]
fn mountinfo_without_cgroups() {
    let e = Cgroups::from_mountinfo("22 27 0:21 / /proc rw,relatime - proc proc rw\n").unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.message().contains("no cgroup"), "{e}");
}

#[test]
fn names_must_be_one_component() {
    let cgs = Cgroups::from_mountinfo(V2_PURE).unwrap();
    for (parent, id) in [("a/b", "c"), ("berth", ".."), ("", "c"), ("berth", "x/../../etc"), (".", "c")] {
        let e = cgs.create(parent, id, &Resources::default()).unwrap_err();
        assert_eq!(e.kind(), Kind::Invalid, "{parent}/{id}");
        assert!(e.message().starts_with("invalid cgroup name"), "{e}");
    }
}

#[test]
fn flat_keyed_values() {
    let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
    assert_eq!(keyed(t, "oom_kill"), Some(3));
    assert_eq!(keyed(t, "under_oom"), Some(0));
    assert_eq!(keyed(t, "oom"), None);
    assert_eq!(keyed("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n", "oom_kill"), Some(1));
}

// ---- the real kernel, as root ------------------------------------------------------------

fn require_root() {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("?");
    assert!(euid == "0", "needs root: this test creates cgroups on the real kernel (euid is {euid})");
}

fn parent() -> String {
    format!("berth-test-{}", std::process::id())
}

/// Thaws, kills and removes the test's cgroup and its processes whatever happens in the test.
struct Guard {
    cg: Cgroup,
    children: Vec<Child>,
}

impl Guard {
    fn new(cg: &Cgroup) -> Guard {
        Guard { cg: cg.clone(), children: Vec::new() }
    }
    /// Starts `script` under `sh`, held at a `read` until `release`: it joins the cgroup first
    /// and only then allocates, as a container's init does.
    fn spawn_held(&mut self, script: &str) -> u32 {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        self.children.push(child);
        pid
    }
    fn release(&mut self, i: usize) {
        let mut stdin = self.children[i].stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("release the held shell");
    }
    fn wait(&mut self, i: usize) -> std::process::ExitStatus {
        self.children[i].wait().expect("wait")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // A v1-frozen task dies of SIGKILL only once thawed.
        let _ = self.cg.freeze(false);
        let _ = self.cg.kill_all();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.cg.destroy();
        for dir in self.cg.paths() {
            if let Some(parent) = dir.parent() {
                // Fails while another test still has a cgroup there; the last one removes it.
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

fn file(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("read {}/{name}: {e}", dir.display())).trim().to_string()
}

fn v1_dir(cgs: &Cgroups, ctrl: &str, id: &str) -> PathBuf {
    let (_, mnt) = cgs.v1.iter().find(|(c, _)| *c == ctrl).unwrap_or_else(|| panic!("{ctrl} not mounted"));
    mnt.join(parent()).join(id)
}

fn v2_dir(cgs: &Cgroups, id: &str) -> PathBuf {
    cgs.v2.as_ref().expect("cgroup2 mount").join(parent()).join(id)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let ok = wait_until(Duration::from_secs(10), || Ok(f())).unwrap();
    assert!(ok, "timed out waiting for {what}");
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn proc_state(pid: u32) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status.lines().find_map(|l| l.strip_prefix("State:")).unwrap_or("").trim().to_string()
}

/// `/proc/<pid>/cgroup` names `/<parent>/<id>` in every hierarchy the handle uses.
fn assert_member(cgs: &Cgroups, pid: u32, id: &str) {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    let want = format!("/{}/{id}", parent());
    let line_for = |ctrl: &str| {
        text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let hit = if ctrl.is_empty() { ctrls.is_empty() } else { ctrls.split(',').any(|c| c == ctrl) };
            hit.then(|| path.to_string())
        })
    };
    if cgs.mode() != Mode::V2 {
        for (ctrl, _) in &cgs.v1 {
            assert_eq!(line_for(ctrl).as_deref(), Some(want.as_str()), "{ctrl} hierarchy in:\n{text}");
        }
    }
    if cgs.v2.is_some() {
        assert_eq!(line_for("").as_deref(), Some(want.as_str()), "cgroup2 in:\n{text}");
    }
}

#[test]
fn host_create_limits_join_freeze_kill_destroy() {
    require_root();
    let cgs = Cgroups::detect().unwrap();
    let id = "life";
    let res = Resources {
        memory: Some(32 * M),
        memory_reservation: Some(16 * M),
        pids_limit: Some(50),
        cpus: Some(0.5),
        cpu_shares: Some(512),
        devices: vec!["c 1:3 rwm".into()].into(),
        ..Default::default()
    };
    let (cg, warnings) = cgs.create(&parent(), id, &res).unwrap();
    let mut g = Guard::new(&cg);
    let paths = cg.paths();
    assert!(paths.iter().all(|p| p.is_dir()), "{paths:?}");

    // Every limit, read back from the kernel.
    if cgs.mode() == Mode::V2 {
        let d = v2_dir(&cgs, id);
        assert_eq!(file(&d, "memory.max"), "33554432");
        if d.join("memory.swap.max").exists() {
            assert_eq!(file(&d, "memory.swap.max"), "33554432", "Docker's default: swap = memory");
        }
        assert_eq!(file(&d, "memory.low"), "16777216");
        assert_eq!(file(&d, "pids.max"), "50");
        assert_eq!(file(&d, "cpu.max"), "50000 100000");
        assert_eq!(file(&d, "cpu.weight"), "20");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(berth_device::bpf::attached(&d).unwrap().len(), 1, "one eBPF device program attached");
    } else {
        assert!(warnings.is_empty(), "{warnings:?}");
        let mem = v1_dir(&cgs, "memory", id);
        assert_eq!(file(&mem, "memory.limit_in_bytes"), "33554432");
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(file(&mem, "memory.memsw.limit_in_bytes"), "67108864", "Docker's default: memory+swap = 2 x memory");
        }
        assert_eq!(file(&mem, "memory.soft_limit_in_bytes"), "16777216");
        assert_eq!(file(&v1_dir(&cgs, "pids", id), "pids.max"), "50");
        let cpu = v1_dir(&cgs, "cpu", id);
        assert_eq!(file(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(file(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(file(&cpu, "cpu.shares"), "512");
        assert_eq!(file(&v1_dir(&cgs, "devices", id), "devices.list"), "c 1:3 rwm");
        // The cpuset copy: without it no task could join.
        let cpuset = v1_dir(&cgs, "cpuset", id);
        let cpuset_root = cpuset.parent().and_then(Path::parent).unwrap();
        assert_eq!(file(&cpuset, "cpuset.cpus"), file(cpuset_root, "cpuset.cpus"));
        assert!(!file(&cpuset, "cpuset.mems").is_empty());
    }

    // A process joins every hierarchy.
    let pid = g.spawn_held("exec sleep 30");
    cg.join(pid).unwrap();
    assert_member(&cgs, pid, id);
    assert_eq!(cg.pids().unwrap(), vec![pid]);
    g.release(0);
    wait_for("exec of sleep", || comm(pid) == "sleep");

    let st = cg.stats().unwrap();
    assert_eq!(st.pids, 1, "{st:?}");
    assert!(st.memory_usage > 0, "{st:?}");
    assert_eq!(st.memory_limit, 32 * M as u64, "{st:?}");
    assert_eq!(st.pids_limit, 50, "{st:?}");
    assert_eq!(st.oom_kills, 0, "{st:?}");
    assert_eq!(cg.oom_kills(), 0);

    // Freeze and thaw.
    cg.freeze(true).unwrap();
    if cgs.mode() == Mode::V2 {
        assert_eq!(keyed(&file(&v2_dir(&cgs, id), "cgroup.events"), "frozen"), Some(1));
    } else {
        assert_eq!(file(&v1_dir(&cgs, "freezer", id), "freezer.state"), "FROZEN");
        // A v1-frozen task sits in the refrigerator, uninterruptibly.
        assert!(proc_state(pid).starts_with('D'), "state {}", proc_state(pid));
    }
    cg.freeze(false).unwrap();
    if cgs.mode() == Mode::V2 {
        assert_eq!(keyed(&file(&v2_dir(&cgs, id), "cgroup.events"), "frozen"), Some(0));
    } else {
        assert_eq!(file(&v1_dir(&cgs, "freezer", id), "freezer.state"), "THAWED");
    }
    wait_for("thawed task to sleep", || proc_state(pid).starts_with('S'));

    // Kill, then remove every directory.
    cg.kill_all().unwrap();
    assert_eq!(g.wait(0).signal(), Some(libc::SIGKILL));
    wait_for("empty cgroup", || cg.pids().map(|p| p.is_empty()).unwrap_or(false));
    cg.destroy().unwrap();
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    // Destroying again is fine: missing is not an error.
    cg.destroy().unwrap();
}

#[test]
fn host_update_memory_raise_and_lower() {
    require_root();
    let cgs = Cgroups::detect().unwrap();
    let id = "update";
    let (cg, _) = cgs.create(&parent(), id, &Resources { memory: Some(64 * M), ..Default::default() }).unwrap();
    let mut g = Guard::new(&cg);
    let pid = g.spawn_held("exec sleep 30");
    cg.join(pid).unwrap();
    g.release(0);

    let v2 = cgs.mode() == Mode::V2;
    let dir = if v2 { v2_dir(&cgs, id) } else { v1_dir(&cgs, "memory", id) };
    let (mem_file, swap_file) =
        if v2 { ("memory.max", "memory.swap.max") } else { ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes") };
    let has_swap = dir.join(swap_file).exists();
    let mem = || file(&dir, mem_file).parse::<u64>().unwrap();
    let swap = || file(&dir, swap_file);
    // v2 keeps swap alone, v1 memory+swap.
    let swap_want = |total: i64, mem: i64| if v2 { (total - mem).to_string() } else { total.to_string() };

    let update = |memory, memory_swap| cg.update(&Resources { memory, memory_swap, ..Default::default() });

    // Raise memory and swap together above the current memsw (128m): v1 must write memsw first.
    let w = update(Some(192 * M), Some(384 * M)).unwrap();
    assert_eq!(mem(), 192 * M as u64);
    if has_swap {
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(swap(), swap_want(384 * M, 192 * M));
    } else {
        assert_eq!(w, vec![NO_SWAP_WARNING.to_string()]);
    }
    // Lower both, memsw below the current memory (192m): v1 must write memory first.
    update(Some(32 * M), Some(64 * M)).unwrap();
    assert_eq!(mem(), 32 * M as u64);
    if has_swap {
        assert_eq!(swap(), swap_want(64 * M, 32 * M));
    }
    // Memory alone, within the swap limit.
    update(Some(48 * M), None).unwrap();
    assert_eq!(mem(), 48 * M as u64);
    if has_swap && !v2 {
        assert_eq!(swap(), (64 * M).to_string(), "memsw untouched");
        // Above the memory+swap limit already set: Docker's refusal, nothing changed.
        let e = update(Some(96 * M), None).unwrap_err();
        assert!(e.message().starts_with("Memory limit should be smaller than already set memoryswap limit"), "{e}");
        assert!(e.message().contains("memory.limit_in_bytes"), "{e}");
        assert_eq!(mem(), 48 * M as u64);
    }
    // Unlimited swap.
    update(Some(256 * M), Some(-1)).unwrap();
    assert_eq!(mem(), 256 * M as u64);
    if has_swap {
        assert_eq!(read_limit(&dir.join(swap_file)).unwrap(), 0, "unlimited");
    }
    // Swap alone, relative to the memory limit in place.
    update(None, Some(512 * M)).unwrap();
    if has_swap {
        assert_eq!(swap(), swap_want(512 * M, 256 * M));
    }
    assert_eq!(cg.stats().unwrap().memory_limit, 256 * M as u64);
    // Docker's input checks apply to update too.
    let e = update(Some(M), None).unwrap_err();
    assert_eq!(e.message(), "Minimum memory limit allowed is 6MB");

    // Other limits.
    cg.update(&Resources { pids_limit: Some(10), cpus: Some(1.0), cpu_shares: Some(1024), ..Default::default() }).unwrap();
    if v2 {
        let d = v2_dir(&cgs, id);
        assert_eq!(file(&d, "pids.max"), "10");
        assert_eq!(file(&d, "cpu.max"), "100000 100000");
        assert_eq!(file(&d, "cpu.weight"), "39");
    } else {
        assert_eq!(file(&v1_dir(&cgs, "pids", id), "pids.max"), "10");
        assert_eq!(file(&v1_dir(&cgs, "cpu", id), "cpu.cfs_quota_us"), "100000");
        assert_eq!(file(&v1_dir(&cgs, "cpu", id), "cpu.shares"), "1024");
    }
    cg.update(&Resources { pids_limit: Some(-1), ..Default::default() }).unwrap();
    assert_eq!(cg.stats().unwrap().pids_limit, 0, "unlimited");
}

#[test]
fn host_update_below_usage_is_refused_on_v1() {
    require_root();
    let cgs = Cgroups::detect().unwrap();
    if cgs.mode() == Mode::V2 {
        eprintln!("skipped: on a v2 host the kernel OOM-kills instead of refusing (EBUSY is v1 only)");
        return;
    }
    if fs::read_to_string("/proc/swaps").unwrap_or_default().lines().count() > 1 {
        eprintln!("skipped: with swap active the kernel may swap the buffer out instead of refusing");
        return;
    }
    let id = "busy";
    let (cg, _) = cgs.create(&parent(), id, &Resources { memory: Some(64 * M), ..Default::default() }).unwrap();
    let mut g = Guard::new(&cg);
    // dd fills a 20 MiB buffer, then blocks writing it into a pipe nobody reads: 20 MiB of
    // anonymous memory that no reclaim can take back without swap.
    let pid = g.spawn_held("dd if=/dev/zero bs=20M count=1 2>/dev/null | sleep 30");
    cg.join(pid).unwrap();
    g.release(0);
    wait_for("20 MiB charged", || cg.stats().map(|s| s.memory_usage >= 20 * M as u64).unwrap_or(false));

    let e = cg.update(&Resources { memory: Some(8 * M), ..Default::default() }).unwrap_err();
    assert_eq!(e.kind(), Kind::Conflict);
    assert!(e.message().starts_with("Cannot update memory limit below current usage"), "{e}");
    assert!(e.message().contains("memory.limit_in_bytes: 8388608 bytes requested"), "{e}");
    assert_eq!(file(&v1_dir(&cgs, "memory", id), "memory.limit_in_bytes"), (64 * M).to_string());
}

#[test]
fn host_oom_kill_is_counted() {
    require_root();
    let cgs = Cgroups::detect().unwrap();
    let (cg, _) = cgs.create(&parent(), "oom", &Resources { memory: Some(16 * M), ..Default::default() }).unwrap();
    let mut g = Guard::new(&cg);
    // A 64 MiB buffer filled from /dev/zero: four times the limit (twice memory+swap).
    let pid = g.spawn_held("exec dd if=/dev/zero of=/dev/null bs=64M count=1");
    cg.join(pid).unwrap();
    g.release(0);
    assert_eq!(g.wait(0).signal(), Some(libc::SIGKILL), "the OOM killer uses SIGKILL");
    assert!(cg.oom_kills() >= 1, "oom_kills {}", cg.oom_kills());
    assert!(cg.stats().unwrap().oom_kills >= 1);
}

#[test]
fn host_failed_create_leaves_nothing() {
    require_root();
    let cgs = Cgroups::detect().unwrap();
    let id = "fail";
    // Valid for Docker's checks, refused by the kernel (above PID_MAX_LIMIT): fails after every
    // directory exists.
    let e = cgs.create(&parent(), id, &Resources { pids_limit: Some(1 << 40), ..Default::default() }).unwrap_err();
    assert!(e.message().contains("\"1099511627776\"") && e.message().contains("pids.max"), "{e}");
    let left = cgs.open(&parent(), id);
    for p in left.paths() {
        assert!(!p.exists(), "{} left behind", p.display());
    }

    // An existing cgroup is refused and left intact.
    let (cg, _) = cgs.create(&parent(), id, &Resources::default()).unwrap();
    let _g = Guard::new(&cg);
    let e = cgs.create(&parent(), id, &Resources::default()).unwrap_err();
    assert_eq!(e.kind(), Kind::Conflict, "{e}");
    assert!(e.message().contains("already exists"), "{e}");
    for p in cg.paths() {
        assert!(p.is_dir(), "{} removed by the failed create", p.display());
    }
}

/// Groups a container made inside its own (systemd in a container does) go with it, nested
/// ones first: the directory is read only once a plain rmdir finds it busy.
#[test]
fn host_destroy_removes_groups_made_inside() {
    require_root();
    let cgs = Cgroups::detect().unwrap();
    let (cg, _) = cgs.create(&parent(), "nested", &Resources::default()).unwrap();
    let _g = Guard::new(&cg);
    for p in cg.paths() {
        fs::create_dir_all(p.join("a/b")).unwrap();
        fs::create_dir(p.join("c")).unwrap();
    }
    cg.destroy().unwrap();
    for p in cg.paths() {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

/// The v1 path of `kill_all` (freeze, SIGKILL each pid, thaw), which a hybrid host skips in favour
/// of cgroup2's `cgroup.kill`: the host's hierarchies seen without their cgroup2 mount.
#[test]
fn host_v1_kill_all_freezes_and_signals() {
    require_root();
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v1_only: String = text.lines().filter(|l| !l.contains(" - cgroup2 ")).map(|l| format!("{l}\n")).collect();
    let Ok(cgs) = Cgroups::from_mountinfo(&v1_only) else {
        eprintln!("skipped: this host has no v1 controllers");
        return;
    };
    assert_eq!(cgs.mode(), Mode::V1);
    let (cg, _) = cgs.create(&parent(), "v1kill", &Resources::default()).unwrap();
    let mut g = Guard::new(&cg);
    let pid = g.spawn_held("sleep 30 & sleep 30 & wait");
    cg.join(pid).unwrap();
    g.release(0);
    wait_for("three tasks", || cg.pids().map(|p| p.len() == 3).unwrap_or(false));
    cg.kill_all().unwrap();
    assert_eq!(g.wait(0).signal(), Some(libc::SIGKILL));
    wait_for("empty cgroup", || cg.pids().map(|p| p.is_empty()).unwrap_or(false));
    assert_eq!(file(&v1_dir(&cgs, "freezer", "v1kill"), "freezer.state"), "THAWED");
    cg.destroy().unwrap();
    assert!(cg.paths().iter().all(|p| !p.exists()));
}

/// The host's cgroup2 mount seen as a pure-v2 host. On the development machine its controllers
/// are all bound to v1, so this exercises the v2 code without any controller.
fn v2_view() -> Option<Cgroups> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = text.lines().find(|l| l.contains(" - cgroup2 "))?;
    let cgs = Cgroups::from_mountinfo(line).unwrap();
    assert_eq!(cgs.mode(), Mode::V2);
    Some(cgs)
}

fn v2_controllers(cgs: &Cgroups) -> String {
    file(cgs.v2.as_ref().unwrap(), "cgroup.controllers")
}

#[test]
fn v2_create_join_freeze_kill_destroy() {
    require_root();
    let Some(cgs) = v2_view() else {
        eprintln!("skipped: no cgroup2 mount on this host");
        return;
    };
    let id = "v2life";
    let (cg, warnings) = cgs.create(&parent(), id, &Resources::default()).unwrap();
    let mut g = Guard::new(&cg);
    assert!(warnings.iter().all(|w| w.starts_with("could not enable")), "{warnings:?}");
    let dir = v2_dir(&cgs, id);
    assert_eq!(cg.paths(), vec![dir.clone()]);

    let pid = g.spawn_held("exec sleep 30");
    cg.join(pid).unwrap();
    assert_member(&cgs, pid, id);
    assert_eq!(cg.pids().unwrap(), vec![pid]);
    g.release(0);
    wait_for("exec of sleep", || comm(pid) == "sleep");
    let st = cg.stats().unwrap();
    assert_eq!(st.pids, 1, "{st:?}");
    if !v2_controllers(&cgs).contains("memory") {
        // No memory controller: nothing to report, and no error either.
        assert_eq!((st.memory_usage, st.memory_limit, st.oom_kills), (0, 0, 0), "{st:?}");
    }

    cg.freeze(true).unwrap();
    assert_eq!(keyed(&file(&dir, "cgroup.events"), "frozen"), Some(1));
    assert_eq!(file(&dir, "cgroup.freeze"), "1");
    cg.freeze(false).unwrap();
    assert_eq!(keyed(&file(&dir, "cgroup.events"), "frozen"), Some(0));

    assert!(dir.join("cgroup.kill").exists(), "Linux >= 5.14 expected");
    cg.kill_all().unwrap();
    assert_eq!(g.wait(0).signal(), Some(libc::SIGKILL));
    wait_for("empty cgroup", || cg.pids().map(|p| p.is_empty()).unwrap_or(false));
    cg.destroy().unwrap();
    assert!(!dir.exists());
}

#[test]
fn v2_limits_need_their_controllers() {
    require_root();
    let Some(cgs) = v2_view() else {
        eprintln!("skipped: no cgroup2 mount on this host");
        return;
    };
    let offered = v2_controllers(&cgs);
    let has = |c: &str| offered.split_whitespace().any(|x| x == c);
    let cases: [(&str, Resources, &str, &str); 5] = [
        ("v2mem", Resources { memory: Some(32 * M), ..Default::default() }, "memory", "memory.max"),
        ("v2low", Resources { memory_reservation: Some(16 * M), ..Default::default() }, "memory", "memory.max"),
        ("v2pids", Resources { pids_limit: Some(50), ..Default::default() }, "pids", "pids.max"),
        ("v2cpus", Resources { cpus: Some(0.5), ..Default::default() }, "cpu", "cpu.max"),
        ("v2shares", Resources { cpu_shares: Some(512), ..Default::default() }, "cpu", "cpu.weight"),
    ];
    for (id, res, ctrl, limit_file) in cases {
        match cgs.create(&parent(), id, &res) {
            Ok((cg, _)) => {
                let _g = Guard::new(&cg);
                assert!(has(ctrl), "{id}: create succeeded without the {ctrl} controller");
                assert!(v2_dir(&cgs, id).join(limit_file).exists());
            }
            Err(e) => {
                assert!(!has(ctrl), "{id}: {e}");
                let m = e.message();
                assert!(m.starts_with(&format!("cannot set {limit_file}: the {ctrl} controller is not enabled in cgroup")), "{id}: {m}");
                assert!(!v2_dir(&cgs, id).exists(), "{id}: left behind");
            }
        }
    }

    // Device rules become an eBPF program attached to the cgroup (no controller needed); changing
    // them replaces it.
    let res = Resources { devices: vec!["c 1:3 rwm".into()].into(), ..Default::default() };
    let (cg, warnings) = cgs.create(&parent(), "v2dev", &res).unwrap();
    let _g = Guard::new(&cg);
    assert!(warnings.is_empty(), "{warnings:?}");
    let dir = v2_dir(&cgs, "v2dev");
    let first = berth_device::bpf::attached(&dir).unwrap();
    assert_eq!(first.len(), 1, "one device program");
    cg.device_rule("c 1:5 rwm", true, &["c 1:3 rwm".into(), "c 1:5 rwm".into()]).unwrap();
    let second = berth_device::bpf::attached(&dir).unwrap();
    assert_eq!(second.len(), 1, "the new program replaced the old one");
    assert_ne!(first, second);
    // And an update asking for a missing controller fails the same way.
    if !has("memory") {
        let e = cg.update(&Resources { memory: Some(32 * M), ..Default::default() }).unwrap_err();
        assert!(e.message().starts_with("cannot set memory.max"), "{e}");
        assert_eq!(cg.oom_kills(), 0);
    }
}

/// `pause`/`unpause`: the state reads back as frozen and thawed, through v1's freezer on this hybrid host and through cgroup2's `cgroup.freeze`.
#[test]
fn pause_state_reads_back_on_v1_and_v2() {
    require_root();
    let mut views = vec![("host", Cgroups::detect().unwrap())];
    if let Some(v2) = v2_view() {
        views.push(("v2", v2));
    }
    for (name, cgs) in views {
        let id = format!("pause-{name}");
        let (cg, _) = cgs.create(&parent(), &id, &Resources::default()).unwrap();
        let mut g = Guard::new(&cg);
        let pid = g.spawn_held("exec sleep 30");
        cg.join(pid).unwrap();
        g.release(0);
        wait_for("exec of sleep", || comm(pid) == "sleep");
        assert!(!cg.frozen().unwrap(), "{name}: frozen before pause");
        cg.freeze(true).unwrap();
        assert!(cg.frozen().unwrap(), "{name}: not frozen after pause");
        if cgs.mode() != Mode::V2 {
            assert_eq!(file(&v1_dir(&cgs, "freezer", &id), "freezer.state"), "FROZEN");
        } else {
            assert_eq!(keyed(&file(&v2_dir(&cgs, &id), "cgroup.events"), "frozen"), Some(1));
        }
        cg.freeze(false).unwrap();
        assert!(!cg.frozen().unwrap(), "{name}: still frozen after unpause");
        cg.kill_all().unwrap();
        assert_eq!(g.wait(0).signal(), Some(libc::SIGKILL));
        wait_for("empty cgroup", || cg.pids().map(|p| p.is_empty()).unwrap_or(false));
        cg.destroy().unwrap();
    }
}
