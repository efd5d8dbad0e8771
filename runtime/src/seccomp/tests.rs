use super::interp::{data, run};
use super::*;

const ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
const ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
const KILL: u32 = 0x8000_0000;
/// The readable copy of the built-in default profile.
const DEFAULT: &str = include_str!("default.json");

fn default_caps() -> Vec<String> {
    crate::container::caps::DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect()
}

fn prog(json: &str, host: Arch, caps: &[String]) -> Vec<libc::sock_filter> {
    let p = Profile::parse(json).unwrap();
    bpf::generate(&p, host, &p.arches(host), caps, (6, 1)).unwrap()
}

fn call(prog: &[libc::sock_filter], arch: Arch, name: &str, args: [u64; 6]) -> u32 {
    let nr = arch.number(name).unwrap_or_else(|| panic!("{name} unknown on {arch:?}"));
    run(prog, &data(arch.audit(), nr, args)).unwrap()
}

#[test]
fn tables_hold_known_numbers() {
    assert_eq!(Arch::X86_64.number("read"), Some(0));
    assert_eq!(Arch::X86_64.number("clone3"), Some(435));
    assert_eq!(Arch::X86_64.number("mount"), Some(165));
    assert_eq!(Arch::Aarch64.number("openat"), Some(56));
    assert_eq!(Arch::Aarch64.number("open"), None);
    assert_eq!(Arch::Arm.number("clone"), Some(120));
    assert_eq!(Arch::Arm.number("socket"), Some(281));
    assert_eq!(Arch::Arm.number("clock_gettime64"), Some(403));
    assert_eq!(Arch::Arm.number("set_tls"), Some(0x0f_0005));
    assert_eq!(Arch::Arm.number("nonexistent_call"), None);
}

#[test]
fn default_profile_on_every_arch() {
    let caps = default_caps();
    for host in [Arch::X86_64, Arch::Aarch64, Arch::Arm] {
        let p = prog(DEFAULT, host, &caps);
        assert!(p.len() < 4096, "{host:?}: {} instructions", p.len());
        for &arch in host.runnable() {
            let open = if arch == Arch::Aarch64 { "openat" } else { "open" };
            assert_eq!(call(&p, arch, open, [0; 6]), ALLOW, "{host:?}/{arch:?} open");
            assert_eq!(call(&p, arch, "read", [0; 6]), ALLOW);
            assert_eq!(call(&p, arch, "execve", [0; 6]), ALLOW);
            // Without CAP_SYS_ADMIN: no mount, no unshare, no namespaces through clone.
            assert_eq!(call(&p, arch, "mount", [0; 6]), EPERM, "{host:?}/{arch:?} mount");
            assert_eq!(call(&p, arch, "unshare", [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]), EPERM);
            assert_eq!(call(&p, arch, "kexec_load", [0; 6]), EPERM);
            assert_eq!(call(&p, arch, "clone3", [0; 6]), ENOSYS);
            assert_eq!(call(&p, arch, "clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), ALLOW);
            assert_eq!(call(&p, arch, "clone", [(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0]), EPERM);
            // socket: every family but AF_ALG (38) and AF_VSOCK (40).
            assert_eq!(call(&p, arch, "socket", [2, 1, 0, 0, 0, 0]), ALLOW);
            assert_eq!(call(&p, arch, "socket", [38, 5, 0, 0, 0, 0]), EPERM);
            assert_eq!(call(&p, arch, "socket", [39, 5, 0, 0, 0, 0]), ALLOW);
            assert_eq!(call(&p, arch, "socket", [40, 1, 0, 0, 0, 0]), EPERM);
            assert_eq!(call(&p, arch, "socket", [44, 3, 0, 0, 0, 0]), ALLOW);
            // personality: only the listed values.
            assert_eq!(call(&p, arch, "personality", [0; 6]), ALLOW);
            assert_eq!(call(&p, arch, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
            assert_eq!(call(&p, arch, "personality", [0x0040_0000, 0, 0, 0, 0, 0]), EPERM);
            // ptrace is allowed on kernels from 4.8 on (seccomp is checked after the tracer).
            assert_eq!(call(&p, arch, "ptrace", [0; 6]), ALLOW);
            // Newer than the profile: ENOSYS, so a libc falls back.
            assert_eq!(run(&p, &data(arch.audit(), 1000, [0; 6])).unwrap(), ENOSYS);
        }
        // An ABI the filter does not cover is killed.
        assert_eq!(run(&p, &data(0x4000_0003, 0, [0; 6])).unwrap(), KILL);
    }
    let p = prog(DEFAULT, Arch::X86_64, &caps);
    assert_eq!(call(&p, Arch::X86_64, "arch_prctl", [0; 6]), ALLOW);
    // x32 numbers on AUDIT_ARCH_X86_64.
    assert_eq!(run(&p, &data(Arch::X86_64.audit(), 0x4000_0000, [0; 6])).unwrap(), KILL);
    let p = prog(DEFAULT, Arch::Aarch64, &caps);
    assert_eq!(call(&p, Arch::Arm, "set_tls", [0; 6]), ALLOW);
    assert_eq!(call(&p, Arch::Arm, "arm_fadvise64_64", [0; 6]), ALLOW);
    assert_eq!(call(&p, Arch::Arm, "clock_gettime64", [0; 6]), ALLOW);
    // On the 32-bit ABI only the low word counts.
    assert_eq!(call(&p, Arch::Arm, "personality", [0x1_0000_0000, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, Arch::Aarch64, "personality", [0x1_0000_0000, 0, 0, 0, 0, 0]), EPERM);
}

#[test]
fn capabilities_add_their_calls() {
    let mut caps = default_caps();
    for c in ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_SYS_MODULE", "CAP_SYS_BOOT", "CAP_SYSLOG", "CAP_SYS_NICE"] {
        caps.push(c.into());
    }
    for host in [Arch::X86_64, Arch::Aarch64] {
        let p = prog(DEFAULT, host, &caps);
        for &arch in host.runnable() {
            for name in ["mount", "unshare", "setns", "clone3", "kcmp", "clock_settime", "init_module", "reboot", "syslog", "mbind"] {
                assert_eq!(call(&p, arch, name, [0; 6]), ALLOW, "{host:?}/{arch:?} {name}");
            }
            assert_eq!(call(&p, arch, "clone", [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]), ALLOW);
            // CAP_SYS_RAWIO, CAP_SYS_PACCT were not added.
            assert_eq!(call(&p, arch, "acct", [0; 6]), EPERM);
        }
    }
    let p = prog(DEFAULT, Arch::X86_64, &default_caps());
    assert_eq!(call(&p, Arch::X86_64, "chroot", [0; 6]), ALLOW, "CAP_SYS_CHROOT is a default capability");
    assert_eq!(call(&p, Arch::X86_64, "iopl", [0; 6]), EPERM);
    assert_eq!(call(&p, Arch::X86_64, "kcmp", [0; 6]), EPERM);
}

#[test]
fn min_kernel_and_arch_includes() {
    let p = Profile::parse(DEFAULT).unwrap();
    let old = bpf::generate(&p, Arch::X86_64, &[Arch::X86_64], &default_caps(), (4, 4)).unwrap();
    assert_eq!(call(&old, Arch::X86_64, "ptrace", [0; 6]), EPERM);
    // arch_prctl is for amd64 hosts only; modify_ldt too.
    let arm = prog(DEFAULT, Arch::Arm, &default_caps());
    assert_eq!(call(&arm, Arch::Arm, "breakpoint", [0; 6]), ALLOW);
}

#[test]
fn argument_operators_on_64_bit_values() {
    let big = 0x1_0000_0005u64;
    for (op, val, two, yes, no) in [
        ("SCMP_CMP_EQ", 0u64, 0u64, vec![0u64], vec![1u64]),
        ("SCMP_CMP_EQ", big, 0, vec![big], vec![5, big + 1, 0x2_0000_0005]),
        ("SCMP_CMP_NE", big, 0, vec![5, big + 1, 0], vec![big]),
        ("SCMP_CMP_GT", big, 0, vec![big + 1, 0x2_0000_0000], vec![big, 5, 0xffff_ffff, 0x1_0000_0000]),
        ("SCMP_CMP_GE", big, 0, vec![big, big + 1, 0x2_0000_0000], vec![big - 1, 0xffff_ffff]),
        ("SCMP_CMP_LT", big, 0, vec![big - 1, 0xffff_ffff, 0], vec![big, big + 1, 0x2_0000_0000]),
        ("SCMP_CMP_LE", big, 0, vec![big, 7, 0x1_0000_0000], vec![big + 1, 0x2_0000_0000]),
        (
            "SCMP_CMP_MASKED_EQ",
            0xff00_0000_00ffu64,
            0x1200_0000_0034u64,
            vec![0x1234_0000_5634, 0x1200_ffff_0034],
            vec![0x1300_0000_0034, 0x1200_0000_0035],
        ),
    ] {
        let json = format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":99,
               "args":[{{"index":2,"value":{val},"valueTwo":{two},"op":"{op}"}}]}}]}}"#
        );
        let p = prog(&json, Arch::X86_64, &[]);
        for v in yes {
            assert_eq!(call(&p, Arch::X86_64, "write", [0, 0, v, 0, 0, 0]), 0x0005_0063, "{op} {v:#x}");
        }
        for v in no {
            assert_eq!(call(&p, Arch::X86_64, "write", [0, 0, v, 0, 0, 0]), ALLOW, "{op} {v:#x}");
        }
    }
}

#[test]
fn actions_order_and_far_jumps() {
    // Many conditional rules on one call: the blocks run past 255 instructions, so the search
    // reaches most of them through `ja`.
    let mut rules = String::new();
    for i in 0..200 {
        rules.push_str(&format!(
            r#"{{"names":["ioctl"],"action":"SCMP_ACT_ALLOW","args":[{{"index":1,"value":{i},"op":"SCMP_CMP_EQ"}}]}},"#
        ));
    }
    let json = format!(
        r#"{{"defaultAction":"SCMP_ACT_KILL_PROCESS","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{rules}
            {{"names":["getpid"],"action":"SCMP_ACT_TRAP"}},{{"names":["gettid"],"action":"SCMP_ACT_LOG"}},
            {{"names":["getuid"],"action":"SCMP_ACT_KILL_THREAD"}},{{"names":["getgid"],"action":"SCMP_ACT_TRACE","errnoRet":7}},
            {{"names":["getppid"],"action":"SCMP_ACT_ERRNO"}},{{"names":["no_such_call"],"action":"SCMP_ACT_ALLOW"}},
            {{"names":["getpid"],"action":"SCMP_ACT_ALLOW"}}]}}"#
    );
    let p = prog(&json, Arch::X86_64, &[]);
    assert!(p.len() > 600, "{} instructions", p.len());
    for i in [0u64, 1, 100, 199] {
        assert_eq!(call(&p, Arch::X86_64, "ioctl", [0, i, 0, 0, 0, 0]), ALLOW, "ioctl {i}");
    }
    assert_eq!(call(&p, Arch::X86_64, "ioctl", [0, 200, 0, 0, 0, 0]), KILL);
    assert_eq!(call(&p, Arch::X86_64, "getpid", [0; 6]), 0x0003_0000, "the first rule wins");
    assert_eq!(call(&p, Arch::X86_64, "gettid", [0; 6]), 0x7ffc_0000);
    assert_eq!(call(&p, Arch::X86_64, "getuid", [0; 6]), 0);
    assert_eq!(call(&p, Arch::X86_64, "getgid", [0; 6]), 0x7ff0_0007);
    assert_eq!(call(&p, Arch::X86_64, "getppid", [0; 6]), EPERM);
    assert_eq!(call(&p, Arch::X86_64, "read", [0; 6]), KILL);
    // Above the highest number named: ENOSYS rather than the default.
    assert_eq!(run(&p, &data(Arch::X86_64.audit(), 500, [0; 6])).unwrap(), ENOSYS);
    // A profile that allows by default has no ENOSYS range.
    let p = prog(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#, Arch::X86_64, &[]);
    assert_eq!(run(&p, &data(Arch::X86_64.audit(), 500, [0; 6])).unwrap(), ALLOW);
    assert_eq!(call(&p, Arch::X86_64, "mkdir", [0; 6]), EPERM);
}

#[test]
fn bad_profiles_are_one_line_errors() {
    for (json, want) in [
        ("{not json", "not valid JSON"),
        (r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#, "unknown action \"SCMP_ACT_BOGUS\""),
        (r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_VAX"]}"#, "unknown architecture \"SCMP_ARCH_VAX\""),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_ABOUT"}]}]}"#,
            "unknown operator",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
            "index 6",
        ),
        (r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, "not supported"),
        (r#"{"syscalls":[]}"#, "defaultAction"),
    ] {
        let e = check(json).unwrap_err().to_string();
        assert!(e.starts_with("seccomp profile: ") && e.contains(want) && !e.contains('\n'), "{e}");
    }
    // Names unknown here are ignored, as Docker does.
    check(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","not_a_call"],"action":"SCMP_ACT_ALLOW"}]}"#).unwrap();
    check(DEFAULT).unwrap();
}

#[test]
fn arch_map_picks_the_hosts_entry() {
    let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]},
        {"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]}],"syscalls":[]}"#;
    let p = Profile::parse(json).unwrap();
    assert_eq!(p.arches(Arch::Aarch64), vec![Arch::Aarch64, Arch::Arm]);
    assert_eq!(p.arches(Arch::X86_64), vec![Arch::X86_64]);
    let p = Profile::parse(r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_AARCH64"]}"#).unwrap();
    assert_eq!(p.arches(Arch::Aarch64), vec![Arch::Aarch64]);
    // Without a word on arches, only the native one (libseccomp adds it): 32-bit binaries on an
    // aarch64 kernel are then killed, as with Docker.
    let p = Profile::parse(r#"{"defaultAction":"SCMP_ACT_ERRNO"}"#).unwrap();
    assert_eq!(p.arches(Arch::Aarch64), vec![Arch::Aarch64]);
}

/// The built-in (gzipped) default profile is `default.json`, byte for byte: the generator
/// writes both.
#[test]
fn the_built_in_default_profile_is_default_json() {
    assert_eq!(default_profile(), DEFAULT);
}

/// The built-in reader takes only the plain member the generator writes.
#[test]
fn built_in_text_needs_a_plain_gzip_member() {
    let gz = super::DEFAULT_GZ;
    assert_eq!(super::inflate_builtin(gz).as_deref(), Some(DEFAULT));
    assert_eq!(super::inflate_builtin(&gz[..20]), None, "truncated");
    assert_eq!(super::inflate_builtin(&[]), None);
    let mut named = gz.to_vec();
    named[3] = 8; // FNAME: a header field the reader does not skip
    assert_eq!(super::inflate_builtin(&named), None);
}

/// Filters of the default profile are kept per set of capabilities, and a kept one is the one
/// compiling gives.
#[test]
fn compiled_default_filters_are_kept_per_capabilities() {
    let insns = |f: &[libc::sock_filter]| f.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect::<Vec<_>>();
    let fresh = |caps: &[String]| {
        let p = Profile::parse(DEFAULT).unwrap();
        let host = Arch::host_kernel();
        insns(&bpf::generate(&p, host, &p.arches(host), caps, running_kernel()).unwrap())
    };
    let caps = default_caps();
    let admin: Vec<String> = caps.iter().cloned().chain(["CAP_SYS_ADMIN".to_string()]).collect();
    assert_ne!(fresh(&caps), fresh(&admin), "CAP_SYS_ADMIN allows more calls");
    for c in [&caps, &caps, &admin, &caps, &admin] {
        assert_eq!(insns(&compile(default_profile(), c).unwrap()), fresh(c), "{c:?}");
    }
}

/// The real kernel accepts the default filter and enforces it (in a forked child).
#[test]
fn kernel_enforces_the_default_profile() {
    let prog = compile(DEFAULT, &default_caps()).unwrap();
    // SAFETY: the child only makes raw system calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            let code = if install(&prog).is_err() {
                10
            } else if libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) != -1 || *libc::__errno_location() != libc::EPERM {
                11
            } else if libc::syscall(libc::SYS_clone3, 0, 0) != -1 || *libc::__errno_location() != libc::ENOSYS {
                12
            } else if libc::syscall(libc::SYS_getpid) <= 0 {
                13
            } else {
                0
            };
            libc::_exit(code);
        }
    }
    let mut st = 0;
    // SAFETY: waits for our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "child status {st:#x}");
}
