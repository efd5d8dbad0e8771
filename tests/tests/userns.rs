//! User namespaces end to end (`--userns=auto`, the agent's `userns-remap`): the container's root
//! is a host ID of a range of its own, image layers are seen through id-mapped mounts, volumes,
//! binds, tmpfs and devices work, confinement still holds, and the allocation follows the
//! container records across `rm` and an agent killed with SIGKILL.
//!
//! Every test needs root and its own agent; all take [`host_shared`].

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use berth_tests::agent::{host_shared, status_field, Agent};
use berth_tests::{require_root, s, Root};

fn agent() -> Agent {
    require_root();
    Agent::with_busybox()
}

/// An agent whose ranges come from subordinate-ID files of user `berthtest` holding two
/// 65536-ID ranges, with `userns-remap` on (every container gets `auto`).
fn remap_agent() -> (Agent, PathBuf, PathBuf) {
    require_root();
    let root = Root::new();
    root.ok(&["load", "-q", "-i", s(&berth_tests::fixtures().busybox.path)]);
    let dir = root.scratch().to_path_buf();
    let (subuid, subgid) = (dir.join("subuid"), dir.join("subgid"));
    let ranges = "someoneelse:100000:65536\nberthtest:300000:131072\n";
    fs::write(&subuid, ranges).expect("write subuid");
    fs::write(&subgid, ranges).expect("write subgid");
    let cfg = dir.join("berth.toml");
    let text = format!("[security]\nuserns_remap = \"berthtest\"\nsubuid_file = \"{}\"\nsubgid_file = \"{}\"\n", s(&subuid), s(&subgid));
    fs::write(&cfg, text).expect("write berth.toml");
    (Agent::start_with(root, &[], &["--config", s(&cfg)]), subuid, subgid)
}

/// (host uid, host gid) base of a running container, from its pid 1's status.
fn host_ids(a: &Agent, name: &str) -> (u32, u32) {
    let st = fs::read_to_string(format!("/proc/{}/status", a.pid_of(name))).expect("read status");
    let first = |f: &str| -> u32 {
        let v = status_field(&st, f).unwrap_or_else(|| panic!("no {f} in status"));
        v.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("{f}: {v}"))
    };
    (first("Uid"), first("Gid"))
}

/// `uid_map` of a running container as (inside, outside, count).
fn uid_map(a: &Agent, name: &str) -> (u64, u64, u64) {
    let out = a.ok(&["exec", name, "cat", "/proc/self/uid_map"]);
    let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().expect("uid_map number")).collect();
    assert_eq!(v.len(), 3, "one line in uid_map: {out:?}");
    (v[0], v[1], v[2])
}

#[test]
fn auto_maps_root_to_a_range_of_its_own_with_the_image_seen_through_idmapped_layers() {
    let _h = host_shared();
    let a = agent();
    for n in ["one", "two"] {
        a.ok(&["run", "-d", "--name", n, "--userns", "auto", "busybox", "sh", "-c", "echo hi > /written; mkdir -p /var/made; sleep 300"]);
    }
    let (i1, o1, c1) = uid_map(&a, "one");
    let (i2, o2, c2) = uid_map(&a, "two");
    assert_eq!((i1, c1, i2, c2), (0, 65536, 0, 65536));
    assert!(o1 > 0 && o2 > 0, "root mapped to host root: {o1} {o2}");
    assert!(o1 + c1 <= o2 || o2 + c2 <= o1, "ranges overlap: {o1}+{c1} and {o2}+{c2}");
    // On the host the container's processes are the mapped user.
    assert_eq!(host_ids(&a, "one"), (o1 as u32, o1 as u32));
    assert_eq!(host_ids(&a, "two"), (o2 as u32, o2 as u32));
    assert_eq!(a.inspect("one")["HostConfig"]["UsernsMode"], "auto");
    // Inside: root, and the image's root-owned files are root's (the layers are id-mapped),
    // writable by it; what it wrote is its range's in the upper layer on the host.
    let inside =
        a.ok(&["exec", "one", "sh", "-c", "id -u; stat -c %u:%g / /bin/busybox /etc/passwd /written; touch /etc/passwd && echo edited"]);
    assert_eq!(inside.lines().collect::<Vec<_>>(), ["0", "0:0", "0:0", "0:0", "0:0", "edited"], "{inside}");
    let id = a.inspect_f("one", "{{.Id}}");
    let upper = a.container_dir(id.trim()).join("upper");
    for f in ["written", "var/made", "etc/passwd"] {
        let m = fs::symlink_metadata(upper.join(f)).unwrap_or_else(|e| panic!("{f} in the upper layer: {e}"));
        assert_eq!((m.uid(), m.gid()), (o1 as u32, o1 as u32), "owner of {f} on the host");
    }
    // The shared layer on the host is untouched: still host root's.
    let layers = a.root().path().join("layers");
    let any_layer = fs::read_dir(&layers).expect("layers").flatten().next().expect("a layer").path();
    assert_eq!(fs::metadata(any_layer.join("root/bin")).expect("layer bin").uid(), 0);
    a.ok(&["rm", "-f", "one", "two"]);
}

#[test]
fn confinement_holds_under_auto() {
    let _h = host_shared();
    let a = agent();
    let script = "grep -E '^(Seccomp|CapEff|CapInh|CapAmb|NoNewPrivs):' /proc/self/status; \
                  echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo sys-writable; \
                  echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable; \
                  head -c1 /proc/kcore 2>/dev/null | wc -c; \
                  unshare -U true 2>/dev/null && echo unshare-ok; \
                  umount /proc/kcore 2>/dev/null && echo umount-ok; echo end";
    let host = a.ok(&["run", "--rm", "busybox", "sh", "-c", script]);
    let mapped = a.ok(&["run", "--rm", "--userns", "auto", "busybox", "sh", "-c", script]);
    // The same filter, capabilities and refusals as in the host's user namespace.
    assert_eq!(mapped, host, "under --userns=auto vs without");
    assert!(mapped.contains("Seccomp:\t2") && mapped.contains("CapInh:\t0000000000000000"), "{mapped}");
    for bad in ["sys-writable", "sysrq-writable", "unshare-ok", "umount-ok"] {
        assert!(!mapped.contains(bad), "{bad}:\n{mapped}");
    }
    // exec joins the user namespace too, under the same filter.
    a.ok(&["run", "-d", "--name", "cc", "--userns", "auto", "busybox", "sleep", "300"]);
    let e = a.ok(&["exec", "cc", "sh", "-c", "grep -E '^(Seccomp|Uid):' /proc/self/status"]);
    assert!(e.contains("Seccomp:\t2") && e.contains("Uid:\t0\t0\t0\t0"), "{e}");
    a.ok(&["rm", "-f", "cc"]);
}

#[test]
fn volumes_binds_tmpfs_and_devices_work_under_auto() {
    let _h = host_shared();
    let a = agent();
    let bind = a.root().scratch().join("bind");
    fs::create_dir_all(&bind).expect("mkdir bind");
    fs::write(bind.join("f"), "host\n").expect("write bind file");
    let script = "echo v > /data/v && cat /data/v; echo c >> /b/f && cat /b/f; stat -c %u:%g /b/f /data; \
                  touch /t/x && stat -c %u /t/x; head -c 2 /dev/myzero | od -An -tx1 | tr -d ' '; touch /srv/a/b/new && echo made";
    let bind_arg = format!("{}:/b", s(&bind));
    let out = a.ok(&[
        "run",
        "--rm",
        "--userns",
        "auto",
        "-v",
        "uvol:/data",
        "-v",
        &bind_arg,
        "--tmpfs",
        "/t",
        "--device",
        "/dev/zero:/dev/myzero",
        "-v",
        "sub:/srv/a/b/c",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["v", "host", "c", "0:0", "0:0", "0", "0000", "made"], "{out}");
    // Host-side ownership is as without a user namespace (id-mapped binds): host root's.
    let m = fs::metadata(bind.join("f")).expect("bind file");
    assert_eq!((m.uid(), fs::read_to_string(bind.join("f")).expect("read")), (0, "host\nc\n".into()));
    let vol = a.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "uvol"]);
    assert_eq!(fs::metadata(PathBuf::from(vol.trim()).join("v")).expect("volume file").uid(), 0);
    // No other device: the namespace's root cannot make nodes (and the device cgroup stands).
    let (code, _, _) = a.code(&["run", "--rm", "--userns", "auto", "busybox", "sh", "-c", "mknod /tmp/m b 8 0 && head -c1 /tmp/m"]);
    assert_ne!(code, 0, "mknod of an unlisted device worked under --userns=auto");
}

#[test]
fn ranges_come_from_subuid_are_freed_on_rm_and_survive_an_agent_killed_with_sigkill() {
    let _h = host_shared();
    let (mut a, subuid, _) = remap_agent();
    // userns-remap: auto without asking, from berthtest's 131072 IDs.
    a.ok(&["run", "-d", "--name", "ca", "busybox", "sleep", "300"]);
    a.ok(&["create", "--name", "cb", "busybox", "sleep", "300"]);
    a.ok(&["start", "cb"]);
    assert_eq!(uid_map(&a, "ca"), (0, 300000, 65536));
    assert_eq!(uid_map(&a, "cb"), (0, 365536, 65536));
    assert_eq!(a.inspect("cb")["HostConfig"]["UsernsMode"], "auto");
    // Full: a clear error, nothing created; --userns=host still runs.
    let (code, _, err) = a.code(&["run", "--name", "cc", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("no free range") && err.contains("berthtest"), "{err}");
    assert_eq!(
        a.ok(&["run", "--rm", "--userns", "host", "busybox", "cat", "/proc/self/uid_map"]).split_whitespace().nth(2),
        Some("4294967295")
    );
    // rm frees a's range; the next container gets it.
    a.ok(&["rm", "-f", "ca"]);
    a.ok(&["run", "-d", "--name", "cc", "busybox", "sleep", "300"]);
    assert_eq!(uid_map(&a, "cc"), (0, 300000, 65536));
    // A crash keeps the table as the records are: both ranges stay taken, the containers keep
    // running in them, and a smaller request still finds no room.
    a.kill9();
    a.restart();
    assert_eq!(uid_map(&a, "cb"), (0, 365536, 65536));
    assert_eq!(uid_map(&a, "cc"), (0, 300000, 65536));
    let (code, _, err) = a.code(&["create", "--name", "cd", "--userns", "auto:size=1024", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    a.ok(&["rm", "-f", "cb"]);
    a.ok(&["create", "--name", "cd", "--userns", "auto:size=1024", "busybox", "true"]);
    assert_eq!(a.inspect("cd")["HostConfig"]["UsernsMode"], "auto:size=1024");
    a.ok(&["start", "-a", "cd"]);
    // The subuid file losing berthtest's range: a clear error at create, nothing made.
    fs::write(&subuid, "someoneelse:100000:65536\n").expect("rewrite subuid");
    let (code, _, err) = a.code(&["run", "--name", "ce", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("no range for user \"berthtest\"") && err.contains(s(&subuid)), "{err}");
    let mut names: Vec<String> = a.ok(&["ps", "-a", "--format", "{{.Names}}"]).lines().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["cc", "cd"], "a refused container was created");
    a.ok(&["rm", "-f", "cc", "cd"]);
}

#[test]
fn bad_userns_input_starts_nothing() {
    let _h = host_shared();
    let a = agent();
    for (args, want) in [
        (&["--userns", "private"][..], "--userns"),
        (&["--userns", "auto:size=0"][..], "--userns"),
        (&["--userns", "auto", "--privileged"][..], "privileged mode is incompatible with user namespaces"),
    ] {
        for verb in ["run", "create"] {
            let mut v = vec![verb, "--name", "bad"];
            v.extend_from_slice(args);
            v.extend(["busybox", "true"]);
            let (code, _, err) = a.code(&v);
            assert_eq!(code, 125, "{v:?}: {err}");
            assert!(err.contains(want) && err.lines().count() <= 2, "{v:?}: {err}");
        }
    }
    assert!(a.ok(&["ps", "-aq"]).trim().is_empty(), "a bad option created a container");
    // An operator's remap user without ranges: the agent refuses to start, saying why.
    let root = Root::new();
    let none = root.scratch().join("subuid");
    fs::write(&none, "someoneelse:100000:65536\n").expect("write subuid");
    let cfg = root.scratch().join("berth.toml");
    fs::write(&cfg, format!("[security]\nsubuid_file = \"{0}\"\nsubgid_file = \"{0}\"\n", s(&none))).expect("write berth.toml");
    let sock = format!("unix://{}", s(&root.scratch().join("s.sock")));
    let out = root.cmd(&["-H", &sock, "agent", "--config", s(&cfg), "--userns-remap", "nosuchuser"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "agent started without ranges for its remap user");
    assert!(err.contains("no range for user \"nosuchuser\""), "{err}");
}

#[test]
fn check_reports_user_namespaces() {
    let _h = host_shared();
    require_root();
    let root = Root::new();
    let out = root.ok(&["check"]);
    let line = out.lines().find(|l| l.starts_with("User namespaces")).unwrap_or_else(|| panic!("no user namespace line:\n{out}"));
    // This machine's 6.18 kernel has both.
    assert_eq!(line, "User namespaces (--userns=auto): available, with id-mapped overlay layers.");
}
