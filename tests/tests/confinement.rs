//! Confinement end to end: the seccomp filter every container gets (Docker's default profile,
//! custom profiles, `--privileged` unconfined, `exec` under the container's filter), a probe of
//! system calls compared with what Docker's default profile decides, and regression tests for the
//! runtime escapes of recent years, each reproducing the attack's technique against berth.
//!
//! Every test needs root and its own agent; all take [`host_shared`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::agent::{host_shared, status_field, Agent};
use berth_tests::{require_root, s};

fn agent() -> Agent {
    require_root();
    Agent::with_busybox()
}

/// `berth run --rm FLAGS... busybox sh -c SCRIPT`: (exit code, stdout, stderr).
fn sh(a: &Agent, flags: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    a.code(&args)
}

fn sh_ok(a: &Agent, flags: &[&str], script: &str) -> String {
    let (code, out, err) = sh(a, flags, script);
    assert_eq!(code, 0, "run {flags:?} sh -c {script:?}: exit {code}\nstdout: {out}\nstderr: {err}");
    out
}

fn kv<'a>(out: &'a str, key: &str) -> &'a str {
    let p = format!("{key}=");
    out.lines().find_map(|l| l.strip_prefix(p.as_str())).unwrap_or_else(|| panic!("no {key}= in:\n{out}"))
}

/// Waits until the running container `name` has made /tmp/ready.
fn wait_ready(a: &Agent, name: &str) {
    let pid = a.pid_of(name);
    let marker = format!("/proc/{pid}/root/tmp/ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(&marker).exists() {
        assert!(Instant::now() < deadline, "container {name} did not write /tmp/ready within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds a static C program from tests/probe/ into `dir` (gcc -static: the image has no libc).
fn build_c(src: &str, dir: &Path, name: &str) -> PathBuf {
    let src = berth_tests::workspace_root().join("tests/probe").join(src);
    let out = dir.join(name);
    let r = Command::new("gcc").args(["-static", "-O1", "-o", s(&out), s(&src)]).output().expect("run gcc (Debian package gcc)");
    assert!(r.status.success(), "gcc -static {}: {}", src.display(), String::from_utf8_lossy(&r.stderr));
    out
}

// ---------------------------------------------------------------------------------------------
// Seccomp

#[test]
fn default_container_is_filtered_and_cannot_make_a_user_namespace() {
    let _h = host_shared();
    let a = agent();
    let out = sh_ok(
        &a,
        &[],
        "grep -E '^Seccomp(_filters)?:' /proc/self/status; unshare -U -r true; echo unshare=$?; unshare -m true; echo unshare_m=$?",
    );
    assert!(out.contains("Seccomp:\t2"), "no filter in a default container:\n{out}");
    assert_eq!(kv(&out, "unshare"), "1", "unshare -U -r must be refused:\n{out}");
    assert_eq!(kv(&out, "unshare_m"), "1", "unshare -m must be refused:\n{out}");
}

/// What Docker's default profile (moby profiles/seccomp/default.json) decides for each call of
/// tests/probe/syscalls.c with Docker's default capabilities: `ok` reached the kernel, `EPERM`
/// refused by the filter (the probe's arguments make the kernel fail otherwise), `ENOSYS` the
/// profile's errnoRet for clone3 and the answer for calls newer than the profile.
/// Captured once with this machine's dockerd 20.10.24 (2026-12-06), with and without
/// `--cap-add SYS_ADMIN`: every line the same but three, where its older profile differs from
/// the current one berth carries: socket(AF_ALG) and socket(AF_VSOCK) and io_uring_setup were
/// still allowed, name_to_handle_at needed CAP_SYS_ADMIN.
const DOCKER_DEFAULT_CAPS: &[(&str, &str)] = &[
    ("getpid", "ok"),
    ("read", "ok"),
    ("socket_inet", "ok"),
    ("socket_alg", "EPERM"),
    ("socket_vsock", "EPERM"),
    ("personality_query", "ok"),
    ("personality_rie", "EPERM"),
    ("mount", "EPERM"),
    ("umount2", "EPERM"),
    ("unshare", "EPERM"),
    ("unshare_none", "EPERM"),
    ("setns", "EPERM"),
    ("clone_newuser", "EPERM"),
    ("clone3", "ENOSYS"),
    ("clone_plain", "ok"),
    ("bpf", "EPERM"),
    ("perf_event_open", "EPERM"),
    ("keyctl", "EPERM"),
    ("add_key", "EPERM"),
    ("userfaultfd", "EPERM"),
    ("io_uring_setup", "EPERM"),
    ("ptrace", "ok"),
    ("kcmp", "EPERM"),
    ("setdomainname", "EPERM"),
    ("chroot", "ok"),
    ("sethostname", "EPERM"),
    ("pivot_root", "EPERM"),
    ("open_by_handle_at", "EPERM"),
    ("name_to_handle_at", "ok"),
    ("fsopen", "EPERM"),
    ("acct", "EPERM"),
    ("clock_settime", "EPERM"),
    ("swapon", "EPERM"),
    ("mbind", "EPERM"),
    ("landlock", "ok"),
    ("newer_than_profile", "ENOSYS"),
];

/// With `--cap-add SYS_ADMIN` these change: the profile's CAP_SYS_ADMIN entry allows them (and
/// the clone namespace-flag rule no longer applies).
const DOCKER_SYS_ADMIN: &[(&str, &str)] = &[
    ("mount", "ok"),
    ("umount2", "ok"),
    ("unshare", "ok"),
    ("unshare_none", "ok"),
    ("setns", "ok"),
    ("clone_newuser", "ok"),
    ("clone3", "ok"),
    ("bpf", "ok"),
    ("perf_event_open", "ok"),
    ("setdomainname", "ok"),
    ("sethostname", "ok"),
    ("fsopen", "ok"),
];

fn expected(sys_admin: bool) -> Vec<(String, String)> {
    let mut want: Vec<(String, String)> = DOCKER_DEFAULT_CAPS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if cfg!(target_arch = "x86_64") {
        want.push(("iopl".into(), "EPERM".into()));
        want.push(("arch_prctl".into(), "ok".into()));
    }
    if sys_admin {
        for (k, v) in DOCKER_SYS_ADMIN {
            want.iter_mut().find(|(n, _)| n == k).expect("known probe").1 = v.to_string();
        }
    }
    want
}

fn probe(a: &Agent, flags: &[&str]) -> Vec<(String, String)> {
    let dir = a.root().scratch().join("probe");
    fs::create_dir_all(&dir).expect("mkdir probe");
    if !dir.join("syscalls").exists() {
        build_c("syscalls.c", &dir, "syscalls");
    }
    let vol = format!("{}:/probe:ro", s(&dir));
    let mut args = vec!["run", "--rm", "-v", &vol];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "/probe/syscalls"]);
    let (code, out, err) = a.code(&args);
    assert_eq!(code, 0, "probe {flags:?}: exit {code}\n{out}\n{err}");
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn diff(got: &[(String, String)], want: &[(String, String)]) -> String {
    let mut d = String::new();
    for (k, v) in want {
        match got.iter().find(|(n, _)| n == k) {
            Some((_, g)) if g == v => {}
            Some((_, g)) => d.push_str(&format!("{k}: got {g}, Docker's profile gives {v}\n")),
            None => d.push_str(&format!("{k}: not probed\n")),
        }
    }
    d
}

#[test]
fn syscall_probe_matches_dockers_default_profile() {
    let _h = host_shared();
    let a = agent();
    let got = probe(&a, &[]);
    let d = diff(&got, &expected(false));
    assert!(d.is_empty(), "default capabilities:\n{d}");
    let got = probe(&a, &["--cap-add", "SYS_ADMIN"]);
    let d = diff(&got, &expected(true));
    assert!(d.is_empty(), "--cap-add SYS_ADMIN:\n{d}");
}

#[test]
fn privileged_runs_unconfined() {
    let _h = host_shared();
    let a = agent();
    let out = sh_ok(&a, &["--privileged"], "cat /proc/self/status");
    assert_eq!(status_field(&out, "Seccomp").as_deref(), Some("0"), "--privileged must run unconfined:\n{out}");
    let got = probe(&a, &["--privileged"]);
    for k in ["keyctl", "io_uring_setup", "mount", "unshare", "pivot_root"] {
        assert_eq!(got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()), Some("ok"), "{k} under --privileged: {got:?}");
    }
}

#[test]
fn filter_is_installed_for_every_user_init_and_no_new_privs() {
    let _h = host_shared();
    let a = agent();
    // Without no_new_privs the filter goes on while still privileged (before the user switch);
    // with it, just before exec. Both must end with the filter in place.
    for flags in [
        &["--user", "1000:1000"][..],
        &["--security-opt", "no-new-privileges"],
        &["--init"],
        &["--user", "1000", "--init", "--security-opt", "no-new-privileges"],
    ] {
        let out = sh_ok(&a, flags, "cat /proc/self/status; unshare -U true; echo unshare=$?");
        assert_eq!(status_field(&out, "Seccomp").as_deref(), Some("2"), "{flags:?}:\n{out}");
        assert_eq!(kv(&out, "unshare"), "1", "{flags:?}");
    }
}

#[test]
fn exec_runs_under_the_containers_filter() {
    let _h = host_shared();
    let a = agent();
    a.ok(&["run", "-d", "--name", "ex", "busybox", "sh", "-c", "touch /tmp/ready; sleep 300"]);
    wait_ready(&a, "ex");
    let out = a.ok(&["exec", "ex", "sh", "-c", "cat /proc/self/status; unshare -U -r true; echo unshare=$?"]);
    assert_eq!(status_field(&out, "Seccomp").as_deref(), Some("2"), "exec must get the container's filter:\n{out}");
    assert_eq!(kv(&out, "unshare"), "1");
    a.ok(&["rm", "-f", "ex"]);
    a.ok(&["run", "-d", "--name", "priv", "--privileged", "busybox", "sh", "-c", "touch /tmp/ready; sleep 300"]);
    wait_ready(&a, "priv");
    let out = a.ok(&["exec", "priv", "cat", "/proc/self/status"]);
    assert_eq!(status_field(&out, "Seccomp").as_deref(), Some("0"), "exec in a --privileged container:\n{out}");
    a.ok(&["rm", "-f", "priv"]);
}

// ---------------------------------------------------------------------------------------------
// Escapes of recent years, reproduced against berth

/// The probe directory with the programs built, as a read-only volume flag value.
fn probe_volume(a: &Agent, programs: &[&str]) -> String {
    let dir = a.root().scratch().join("probe");
    fs::create_dir_all(&dir).expect("mkdir probe");
    for p in programs {
        if !dir.join(p).exists() {
            build_c(&format!("{p}.c"), &dir, p);
        }
    }
    format!("{}:/probe:ro", s(&dir))
}

/// Waits for `/tmp/<file>` in the running container `name` and returns its text.
fn wait_file(a: &Agent, name: &str, file: &str) -> String {
    let pid = a.pid_of(name);
    let p = format!("/proc/{pid}/root/tmp/{file}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(&p).exists() {
        assert!(Instant::now() < deadline, "container {name} did not write /tmp/{file} within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::read_to_string(format!("/proc/{pid}/root/tmp/attack.log")).unwrap_or_default()
}

/// CVE-2019-5736: a container makes `exec` run `#!/proc/self/exe`, so berth's own binary runs in
/// the container; an attacker there reopens `/proc/<pid>/exe` for writing to replace the host's
/// binary. Also (the same attacker) berth's helpers, before they exec, can be neither opened
/// through /proc/<pid>/exe nor ptraced from inside.
#[test]
fn exec_of_proc_self_exe_cannot_reach_berths_binary_nor_ptrace_its_helpers() {
    let _h = host_shared();
    let a = agent();
    let vol = probe_volume(&a, &["exe_attack"]);
    // The host's libraries, read-only, so that a dynamically linked berth (a debug build) can
    // really start in the container, as a static one would.
    let mut flags = vec!["run", "-d", "--name", "victim", "-v", &vol];
    for lib in ["/usr/lib:/usr/lib:ro", "/lib64:/lib64:ro", "/usr/lib:/lib:ro"] {
        if Path::new(lib.split(':').next().unwrap_or("/")).is_dir() {
            flags.extend(["-v", lib]);
        }
    }
    flags.extend([
        "busybox",
        "sh",
        "-c",
        "printf '#!/proc/self/exe\\n' > /evil; chmod +x /evil; (/probe/exe_attack > /tmp/attack.log; touch /tmp/done) & touch /tmp/ready; wait; sleep 300",
    ]);
    a.ok(&flags);
    wait_ready(&a, "victim");
    let mut ran_berth = false;
    let caught = format!("/proc/{}/root/tmp/caught", a.pid_of("victim"));
    for _ in 0..80 {
        let (_, out, err) = a.code(&["exec", "victim", "/evil"]);
        // berth's CLI, started in the container by the script's interpreter line, complains
        // about its arguments: proof that the binary ran there.
        ran_berth |= !out.is_empty() || err.contains("/evil");
        if Path::new(&caught).exists() {
            break;
        }
    }
    a.ok(&["exec", "victim", "touch", "/tmp/stop"]);
    let log = wait_file(&a, "victim", "done");
    a.ok(&["rm", "-f", "victim"]);
    let n = |k: &str| -> u32 { kv(&log, k).parse().unwrap_or_else(|_| panic!("{k} in {log}")) };
    assert!(ran_berth, "the #!/proc/self/exe script never ran berth's binary in the container:\n{log}");
    assert!(n("exe_open") > 0, "the attacker never caught berth's binary running in the container in 80 execs:\n{log}");
    assert_eq!(n("writable"), 0, "berth's binary was writable through /proc/<pid>/exe (CVE-2019-5736):\n{log}");
    assert_eq!(n("exe_ro"), n("exe_open"), "berth's binary, reached through /proc/<pid>/exe, is on a writable mount: once it stops running, a container can replace it (CVE-2019-5736):\n{log}");
    assert_eq!(n("ptraced"), 0, "a berth helper was ptraced from inside the container:\n{log}");
}

/// The descriptors a process of the container holds (`ls -l /proc/self/fd`), but ls's own.
fn open_fds(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter_map(|(left, target)| left.rsplit(' ').next().map(|fd| format!("{fd} -> {target}")))
        .filter(|e| !e.starts_with("3 -> /proc/"))
        .collect()
}

/// CVE-2024-21626: a descriptor of the host (runc leaked one on /sys/fs/cgroup) reachable as the
/// working directory `/proc/self/fd/N` put the process outside the container's root, in `run`
/// and in `exec`. Here: nothing but stdio is open in either, and no `-w /proc/self/fd/N` reaches
/// a file of the host by `..`.
#[test]
fn no_host_descriptor_or_directory_leaks_into_run_or_exec() {
    let _h = host_shared();
    let a = agent();
    let out = sh_ok(&a, &[], "ls -l /proc/self/fd/");
    let fds = open_fds(&out);
    assert!(fds.iter().all(|f| ["0 ", "1 ", "2 "].iter().any(|p| f.starts_with(p))), "run: descriptors beyond stdio: {fds:?}");
    a.ok(&["run", "-d", "--name", "cwd", "busybox", "sh", "-c", "touch /tmp/ready; sleep 300"]);
    wait_ready(&a, "cwd");
    let fds = open_fds(&a.ok(&["exec", "cwd", "ls", "-l", "/proc/self/fd/"]));
    assert!(fds.iter().all(|f| ["0 ", "1 ", "2 "].iter().any(|p| f.starts_with(p))), "exec: descriptors beyond stdio: {fds:?}");
    // A file on the host that a process outside the root would reach by climbing from its cwd.
    let canary = a.root().scratch().join("canary");
    fs::write(&canary, "HOST-CANARY\n").expect("write canary");
    let climb = format!("cat ../../../../../../../../../../..{} 2>/dev/null; pwd", s(&canary));
    for n in 3..=12 {
        let w = format!("/proc/self/fd/{n}");
        let (code, out, err) = sh(&a, &["-w", &w], &climb);
        assert!(!out.contains("HOST-CANARY"), "run -w {w} reached the host (exit {code}): {out}{err}");
        let (code, out, err) = a.code(&["exec", "-w", &w, "cwd", "sh", "-c", &climb]);
        assert!(!out.contains("HOST-CANARY"), "exec -w {w} reached the host (exit {code}): {out}{err}");
    }
    a.ok(&["rm", "-f", "cwd"]);
}

/// A directory on the host, outside every container, that the symlink tests aim at; the test
/// checks it stays empty.
fn outside_dir(a: &Agent) -> PathBuf {
    let d = a.root().scratch().join("outside");
    fs::create_dir_all(&d).expect("mkdir outside");
    d
}

fn entries(d: &Path) -> Vec<String> {
    fs::read_dir(d).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

/// CVE-2021-30465, the static case: a volume's entry is a symlink to a host directory (absolute,
/// as another container may leave it), and further mounts go through it. They must land inside
/// the container's root, and nothing may be made on the host.
#[test]
fn symlinked_mount_destination_stays_inside_the_root() {
    let _h = host_shared();
    let a = agent();
    let outside = outside_dir(&a);
    let vol = a.root().scratch().join("shared");
    fs::create_dir_all(&vol).expect("mkdir shared");
    std::os::unix::fs::symlink(&outside, vol.join("escape")).expect("symlink");
    let other = a.root().scratch().join("other");
    fs::create_dir_all(&other).expect("mkdir other");
    fs::write(other.join("file"), "from-the-other-volume\n").expect("write");
    let v1 = format!("{}:/data", s(&vol));
    let v2 = format!("{}:/data/escape/vol:ro", s(&other));
    let inside = s(&outside);
    let out = sh_ok(
        &a,
        &["-v", &v1, "--tmpfs", "/data/escape/tmp", "-v", &v2],
        &format!("cat {inside}/vol/file; grep -c ' {inside}/tmp ' /proc/self/mountinfo; grep -c ' {inside}/vol ' /proc/self/mountinfo"),
    );
    assert!(out.contains("from-the-other-volume"), "the volume must appear inside, where the link points in the container:\n{out}");
    assert_eq!(out.lines().skip(1).collect::<Vec<_>>(), ["1", "1"], "mount points inside the container:\n{out}");
    assert!(entries(&outside).is_empty(), "berth made {:?} in the host's {}", entries(&outside), outside.display());
}

/// CVE-2021-30465, the race: a running container swaps an entry of a shared volume between a
/// directory and a symlink to a host directory while other containers start with a mount
/// under that entry. Each start may fail or succeed, but nothing may be made or mounted outside.
#[test]
fn mount_destination_swapped_during_the_mount_stays_inside_the_root() {
    let _h = host_shared();
    let a = agent();
    let outside = outside_dir(&a);
    let vol = a.root().scratch().join("shared");
    fs::create_dir_all(&vol).expect("mkdir shared");
    let pv = probe_volume(&a, &["swapper"]);
    let v = format!("{}:/data", s(&vol));
    a.ok(&["run", "-d", "--name", "swapper", "-v", &v, "-v", &pv, "busybox", "/probe/swapper", "/data", s(&outside)]);
    let mut started = 0;
    for i in 0..25 {
        let target = format!("/data/x/sub{i}");
        let (code, _, _) = a.code(&["run", "--rm", "-v", &v, "--tmpfs", &target, "busybox", "true"]);
        started += u32::from(code == 0);
    }
    fs::write(vol.join("stop"), "").expect("stop the swapper");
    a.wait_status("swapper", "exited", Duration::from_secs(30));
    let logs = a.ok(&["logs", "swapper"]);
    a.code(&["rm", "-f", "swapper"]);
    assert!(logs.contains("swaps="), "the swapper did not run: {logs}");
    assert!(
        entries(&outside).is_empty(),
        "berth made {:?} in the host's {} ({started} of 25 containers started)",
        entries(&outside),
        outside.display()
    );
}

/// Docker's default set, as /proc/self/status shows it.
const DOCKER_CAPS: &str = "00000000a80425fb";
const NO_CAPS: &str = "0000000000000000";

/// CVE-2022-29162 (and CVE-2022-24769): capabilities in the inheritable or ambient sets, in `run`
/// and in `exec`, would pass to any program exec'd with file capabilities, or to a non-root
/// user. Both sets stay empty; the bounding set is Docker's.
#[test]
fn no_inheritable_or_ambient_capabilities_in_run_or_exec() {
    let _h = host_shared();
    let a = agent();
    let check = |what: &str, st: &str, eff: &str| {
        assert_eq!(status_field(st, "CapInh").as_deref(), Some(NO_CAPS), "{what}: CapInh\n{st}");
        assert_eq!(status_field(st, "CapAmb").as_deref(), Some(NO_CAPS), "{what}: CapAmb\n{st}");
        assert_eq!(status_field(st, "CapEff").as_deref(), Some(eff), "{what}: CapEff\n{st}");
        assert_eq!(status_field(st, "CapBnd").as_deref(), Some(DOCKER_CAPS), "{what}: CapBnd\n{st}");
    };
    check("run", &sh_ok(&a, &[], "cat /proc/self/status"), DOCKER_CAPS);
    check("run -u 1000", &sh_ok(&a, &["-u", "1000"], "cat /proc/self/status"), NO_CAPS);
    a.ok(&["run", "-d", "--name", "caps", "busybox", "sh", "-c", "touch /tmp/ready; sleep 300"]);
    wait_ready(&a, "caps");
    check("exec", &a.ok(&["exec", "caps", "cat", "/proc/self/status"]), DOCKER_CAPS);
    check("exec -u 1000", &a.ok(&["exec", "-u", "1000", "caps", "cat", "/proc/self/status"]), NO_CAPS);
    a.ok(&["rm", "-f", "caps"]);
}

/// The kernel's knobs and secrets behind /proc and /sys: /proc/sys and /proc/sysrq-trigger
/// refuse writes, /sys/firmware and /proc/kcore show nothing, in `run` and in `exec`.
#[test]
fn proc_sys_sysrq_firmware_and_kcore_are_out_of_reach() {
    let _h = host_shared();
    let a = agent();
    // Writing the value a knob already has changes nothing should the write get through; sysrq
    // is written nothing at all (an empty write still needs the file open for writing).
    let script = "v=$(cat /proc/sys/vm/swappiness); echo $v > /proc/sys/vm/swappiness; echo procsys=$?; \
                  (true > /proc/sysrq-trigger); echo sysrq=$?; echo firmware=$(ls -A /sys/firmware | wc -l); \
                  echo kcore=$(head -c 16 /proc/kcore | wc -c); touch /sys/kernel/x; echo sys=$?";
    a.ok(&["run", "-d", "--name", "knobs", "busybox", "sh", "-c", "touch /tmp/ready; sleep 300"]);
    wait_ready(&a, "knobs");
    for (what, out) in [("run", sh(&a, &[], script).1), ("exec", a.code(&["exec", "knobs", "sh", "-c", script]).1)] {
        assert_ne!(kv(&out, "procsys"), "0", "{what}: /proc/sys is writable:\n{out}");
        assert_ne!(kv(&out, "sysrq"), "0", "{what}: /proc/sysrq-trigger is writable:\n{out}");
        assert_eq!(kv(&out, "firmware"), "0", "{what}: /sys/firmware is readable:\n{out}");
        assert_eq!(kv(&out, "kcore"), "0", "{what}: /proc/kcore is readable:\n{out}");
        assert_ne!(kv(&out, "sys"), "0", "{what}: /sys is writable:\n{out}");
    }
    a.ok(&["rm", "-f", "knobs"]);
}

// ---------------------------------------------------------------------------------------------
// --security-opt seccomp=...

/// A profile in Docker's format that refuses `mkdir` and `mkdirat` with EACCES (13) and allows
/// everything else.
const NO_MKDIR: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_AARCH64","SCMP_ARCH_ARM"],
  "syscalls":[{"names":["mkdir","mkdirat","not_a_system_call"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#;

#[test]
fn custom_profile_and_unconfined() {
    let _h = host_shared();
    let a = agent();
    let file = a.root().scratch().join("no-mkdir.json");
    fs::write(&file, NO_MKDIR).expect("write profile");
    let opt = format!("seccomp={}", s(&file));
    let out =
        sh_ok(&a, &["--security-opt", &opt], "grep Seccomp: /proc/self/status; mkdir /x; echo mkdir=$?; unshare -U true; echo unshare=$?");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert_eq!(kv(&out, "mkdir"), "1", "the profile refuses mkdir:\n{out}");
    assert_eq!(kv(&out, "unshare"), "0", "the profile allows everything else (unshare -U needs no capability):\n{out}");
    let (_, _, err) = sh(&a, &["--security-opt", &opt], "mkdir /x");
    assert!(err.contains("Permission denied"), "errnoRet 13 is EACCES: {err}");
    // inspect shows the profile's text, as Docker; exec gets the same filter.
    a.ok(&["run", "-d", "--name", "custom", "--security-opt", &opt, "busybox", "sh", "-c", "touch /tmp/ready; sleep 300"]);
    wait_ready(&a, "custom");
    let v = a.inspect("custom");
    let so = v["HostConfig"]["SecurityOpt"].as_array().cloned().unwrap_or_default();
    assert!(
        so.iter().any(|o| o.as_str().is_some_and(|o| o.starts_with("seccomp=") && o.contains("SCMP_ACT_ERRNO"))),
        "SecurityOpt: {so:?}"
    );
    let (code, _, err) = a.code(&["exec", "custom", "mkdir", "/y"]);
    assert!(code != 0 && err.contains("Permission denied"), "exec under the container's profile: exit {code}, {err}");
    a.ok(&["rm", "-f", "custom"]);

    let out = sh_ok(&a, &["--security-opt", "seccomp=unconfined"], "grep Seccomp: /proc/self/status");
    assert!(out.contains("Seccomp:\t0"), "seccomp=unconfined:\n{out}");
    let got = probe(&a, &["--security-opt", "seccomp=unconfined"]);
    for k in ["keyctl", "io_uring_setup", "socket_alg", "personality_rie"] {
        assert_eq!(got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()), Some("ok"), "{k} unconfined: {got:?}");
    }
    a.ok(&["create", "--name", "unc", "--security-opt", "seccomp=unconfined", "busybox", "true"]);
    assert_eq!(a.inspect("unc")["HostConfig"]["SecurityOpt"], serde_json::json!(["seccomp=unconfined"]));
    a.ok(&["rm", "unc"]);
}

#[test]
fn bad_seccomp_profiles_and_userns_start_nothing() {
    let _h = host_shared();
    let a = agent();
    let dir = a.root().scratch();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        fs::write(&p, text).expect("write profile");
        format!("seccomp={}", s(&p))
    };
    let cases = [
        (write("bad.json", "{\"defaultAction\": "), "not valid JSON"),
        (write("action.json", r#"{"defaultAction":"SCMP_ACT_SOMETIMES"}"#), "unknown action"),
        (write("arch.json", r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_PDP11"]}"#), "unknown architecture"),
        (format!("seccomp={}", s(&dir.join("missing.json"))), "missing.json"),
    ];
    for (opt, want) in &cases {
        for verb in ["run", "create"] {
            let (code, out, err) = a.code(&[verb, "--name", "bad", "--security-opt", opt, "busybox", "true"]);
            assert_eq!(code, 125, "{verb} --security-opt {opt}: exit {code}\n{out}{err}");
            assert!(err.contains(want) && err.lines().count() <= 2, "{verb} --security-opt {opt}: {err}");
        }
    }
    // (--userns=auto works: tests/userns.rs; a mode that does not exist is refused.)
    let (code, _, err) = a.code(&["run", "--name", "bad", "--userns", "private", "busybox", "true"]);
    assert_eq!(code, 125, "--userns=private: {err}");
    assert!(err.contains("--userns"), "{err}");
    assert!(a.ok(&["ps", "-aq"]).trim().is_empty(), "a bad option created a container");
}
