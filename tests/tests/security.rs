//! Capabilities (Docker's default set, `--cap-add/--cap-drop`, `--privileged`), `no-new-privileges`, ulimits, and `/dev` with the device cgroup.
//!
//! A real `berth agent` on a throw-away root, the busybox fixture image, and the CLI with Docker's
//! flags. What runs inside is checked from inside (`/proc/self/*`, files, exit codes) and from the
//! host (cgroup files, `/proc/<pid>`, the root's directories). Every test needs root and its own
//! agent; tests that compare mounts take `host_exclusive`, all others `host_shared`. Helpers:
//! `berth_tests::container`.

use berth_tests::agent::host_shared;
use berth_tests::container::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::fs;

// ---------------------------------------------------------------------------------------------
// Security defaults

#[test]
fn default_capabilities_are_dockers() {
    let _h = host_shared();
    let a = agent();
    let st = proc_status(&a, &[]);
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(&st, f), DOCKER_CAPS, "{f} of root in a default container");
    }
    assert_eq!(field(&st, "CapAmb"), NO_CAPS);
    assert_eq!(field(&st, "NoNewPrivs"), "0", "no_new_privs only when asked");
    let st = proc_status(&a, &["-u", "1000"]);
    assert_eq!(field(&st, "CapEff"), NO_CAPS, "a non-root user has no effective capabilities");
    assert_eq!(field(&st, "CapPrm"), NO_CAPS);
    assert_eq!(field(&st, "CapBnd"), DOCKER_CAPS);
    let st = proc_status(&a, &["--cap-drop", "NET_RAW"]);
    assert_eq!(field(&st, "CapEff"), "00000000a80405fb", "--cap-drop NET_RAW");
    let st = proc_status(&a, &["--cap-add", "cap_sys_admin"]);
    assert_eq!(field(&st, "CapEff"), "00000000a82425fb", "--cap-add cap_sys_admin (prefix and case as Docker accepts)");
}

#[test]
fn inheritable_capabilities_are_empty() {
    let _h = host_shared();
    let a = agent();
    // Docker (since 20.10.14 / CVE-2022-24769) leaves the inheritable set empty.
    for flags in [&[][..], &["--cap-add", "NET_ADMIN"][..], &["--privileged"][..]] {
        assert_eq!(field(&proc_status(&a, flags), "CapInh"), NO_CAPS, "CapInh with {flags:?}");
    }
}

#[test]
fn cap_drop_all_cap_add_net_raw() {
    let _h = host_shared();
    let a = agent();
    let st = proc_status(&a, &["--cap-drop", "ALL", "--cap-add", "NET_RAW"]);
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(&st, f), "0000000000002000", "{f} with --cap-drop ALL --cap-add NET_RAW");
    }
    a.ok(&["create", "--name", "cc", "--cap-drop", "ALL", "--cap-add", "NET_RAW", "busybox", "true"]);
    let v = a.inspect("cc");
    assert_eq!(v["HostConfig"]["CapAdd"], json!(["NET_RAW"]));
    assert_eq!(v["HostConfig"]["CapDrop"], json!(["ALL"]));
    a.ok(&["rm", "cc"]);
}

#[test]
fn privileged_gets_the_whole_bounding_set_and_host_devices() {
    let _h = host_shared();
    let a = agent();
    let mine = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let bnd = field(&mine, "CapBnd");
    let out = sh_ok(&a, &["--privileged"], "cat /proc/self/status; echo DEV; ls -A /dev; echo MOUNTINFO; cat /proc/self/mountinfo");
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(&out, f), bnd, "{f} of a --privileged container vs the agent's bounding set");
    }
    let dev: BTreeSet<&str> =
        out.split("DEV\n").nth(1).expect("DEV marker").split("MOUNTINFO\n").next().expect("dev list").lines().collect();
    let mut host_devs = Vec::new();
    for e in fs::read_dir("/dev").expect("read /dev").flatten() {
        let ft = e.file_type().expect("file type");
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() || ft.is_block_device() {
            host_devs.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    let missing: Vec<&String> = host_devs.iter().filter(|d| !dev.contains(d.as_str())).collect();
    assert!(missing.is_empty(), "--privileged: host devices missing from /dev: {missing:?}");
    let mi = container_mountinfo(&out);
    for p in ["/proc/keys", "/proc/timer_list", "/sys/firmware"] {
        assert!(mount_at(&mi, p).is_none(), "--privileged: {p} is still masked");
    }
    let sys = mount_at(&mi, "/sys").expect("/sys mounted");
    assert!(sys.opts.split(',').any(|o| o == "rw"), "--privileged: /sys is read-write as in Docker ({})", sys.opts);
    a.ok(&["create", "--name", "pv", "--privileged", "busybox", "true"]);
    assert_eq!(a.inspect_f("pv", "{{.HostConfig.Privileged}}"), "true");
    a.ok(&["rm", "pv"]);
}

#[test]
fn no_new_privileges_and_ulimits() {
    let _h = host_shared();
    let a = agent();
    let st = proc_status(&a, &["--security-opt", "no-new-privileges"]);
    assert_eq!(field(&st, "NoNewPrivs"), "1");
    let out = sh_ok(&a, &["--ulimit", "nofile=100:200"], "cat /proc/self/limits; echo soft=$(ulimit -n)");
    let line = out.lines().find(|l| l.starts_with("Max open files")).unwrap_or_else(|| panic!("no Max open files in:\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&f[3..5], ["100", "200"], "{line}");
    assert_eq!(kv(&out, "soft"), "100");
}

#[test]
fn dev_holds_the_standard_nodes_and_the_device_cgroup_denies_others() {
    let _h = host_shared();
    let a = agent();
    // The block device the host's / lives on: a container may mknod it (CAP_MKNOD) but not open it.
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata("/").expect("stat /").dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let script = format!(
        "stat -c '%n %F %t:%T' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; echo hi > /dev/null; echo null=$?; \
         echo zero=$(head -c 4 /dev/zero | wc -c); echo x > /dev/full; echo full=$?; \
         busybox mknod /tmp/disk b {maj} {min}; echo mknod=$?; head -c 1 /tmp/disk > /dev/null; echo disk=$?; \
         echo DEV; ls -A /dev; echo MOUNTINFO; cat /proc/self/mountinfo"
    );
    let (code, out, err) = sh(&a, &[], &script);
    assert_eq!(code, 0, "stderr: {err}");
    for (name, nums) in [("null", "1:3"), ("zero", "1:5"), ("full", "1:7"), ("random", "1:8"), ("urandom", "1:9"), ("tty", "5:0")] {
        let want = format!("/dev/{name} character special file {nums}");
        assert!(out.lines().any(|l| l == want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(kv(&out, "null"), "0");
    assert_eq!(kv(&out, "zero"), "4");
    assert_eq!(kv(&out, "full"), "1", "writing /dev/full fails");
    assert_eq!(kv(&out, "mknod"), "0", "mknod works with Docker's default caps");
    assert_eq!(kv(&out, "disk"), "1", "the device cgroup must deny the host's disk {maj}:{min}");
    assert!(err.contains("Operation not permitted"), "opening the host disk: {err}");
    let listed: BTreeSet<&str> = out.split("DEV\n").nth(1).expect("DEV").split("MOUNTINFO\n").next().expect("ls").lines().collect();
    let allowed: BTreeSet<&str> = [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "console", "fd", "stdin", "stdout", "stderr",
        "core",
    ]
    .into_iter()
    .collect();
    let extra: Vec<&&str> = listed.difference(&allowed).collect();
    assert!(extra.is_empty(), "unexpected entries in the container's /dev: {extra:?}");
    for need in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"] {
        assert!(listed.contains(need), "/dev/{need} missing: {listed:?}");
    }
    let mi = container_mountinfo(&out);
    for (p, fs) in [("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"), ("/dev/mqueue", "mqueue")] {
        let m = mount_at(&mi, p).unwrap_or_else(|| panic!("{p} not mounted inside"));
        assert_eq!(m.fstype, fs, "{p}");
    }
}
