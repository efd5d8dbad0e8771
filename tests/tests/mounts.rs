//! What a container sees mounted: `--tmpfs`, `--read-only`, volumes (bind, named, anonymous), Docker's masked and read-only paths.
//!
//! A real `berth agent` on a throw-away root, the busybox fixture image, and the CLI with Docker's
//! flags. What runs inside is checked from inside (`/proc/self/*`, files, exit codes) and from the
//! host (cgroup files, `/proc/<pid>`, the root's directories). Every test needs root and its own
//! agent; tests that compare mounts take `host_exclusive`, all others `host_shared`. Helpers:
//! `berth_tests::container`.

use berth_tests::agent::host_shared;
use berth_tests::container::*;
use berth_tests::s;
use std::fs;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// File systems: tmpfs, read-only root, volumes

#[test]
fn tmpfs_size_and_mode() {
    let _h = host_shared();
    let a = agent();
    let (code, out, err) = sh(
        &a,
        &["--tmpfs", "/scratch:size=1m,mode=1777"],
        "dd if=/dev/zero of=/scratch/small bs=1k count=512 2>/dev/null; echo small=$?; rm /scratch/small; \
         dd if=/dev/zero of=/scratch/big bs=1k count=2048; echo big=$?; echo mode=$(stat -c %a /scratch); \
         echo MOUNTINFO; cat /proc/self/mountinfo",
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(kv(&out, "small"), "0", "a 512 KB write fits in size=1m");
    assert_eq!(kv(&out, "big"), "1", "a 2 MB write must fail in size=1m");
    assert!(err.contains("No space left on device"), "dd error: {err}");
    assert_eq!(kv(&out, "mode"), "1777");
    let mi = container_mountinfo(&out);
    let m = mount_at(&mi, "/scratch").unwrap_or_else(|| panic!("no /scratch mount inside:\n{out}"));
    assert_eq!(m.fstype, "tmpfs");
    assert!(m.super_opts.contains("size=1024k"), "/scratch options: {}", m.super_opts);
}

#[test]
fn read_only_root_allows_only_tmpfs_and_volumes() {
    let _h = host_shared();
    let a = agent();
    let rw = a.root().scratch().join("rw");
    let ro = a.root().scratch().join("ro");
    fs::create_dir_all(&rw).expect("mkdir rw");
    fs::create_dir_all(&ro).expect("mkdir ro");
    fs::write(ro.join("hello"), "read me\n").expect("write ro/hello");
    let rw_spec = format!("{}:/rw", s(&rw));
    let ro_spec = format!("{}:/ro:ro", s(&ro));
    let out = a.ok(&[
        "run",
        "--name",
        "rofs",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "-v",
        &rw_spec,
        "-v",
        &ro_spec,
        "busybox",
        "sh",
        "-c",
        "touch /x; echo root=$?; touch /tmp/x; echo tmp=$?; touch /scratch/x; echo tmpfs=$?; touch /rw/x; echo rw=$?; \
         touch /ro/x; echo ro=$?; cat /ro/hello",
    ]);
    assert_eq!(kv(&out, "root"), "1", "--read-only: / is not writable:\n{out}");
    assert_eq!(kv(&out, "tmp"), "1", "--read-only: /tmp is not writable (no implicit tmpfs):\n{out}");
    assert_eq!(kv(&out, "tmpfs"), "0", "--tmpfs /scratch is writable:\n{out}");
    assert_eq!(kv(&out, "rw"), "0", "a -v volume is writable:\n{out}");
    assert_eq!(kv(&out, "ro"), "1", "a :ro volume is not writable:\n{out}");
    assert!(out.contains("read me\n"), "the :ro volume is readable:\n{out}");
    assert!(rw.join("x").is_file(), "the write to /rw reached the host");
    assert!(!ro.join("x").exists(), "the :ro volume was written on the host");
    let v = a.inspect("rofs");
    assert_eq!(v["HostConfig"]["ReadonlyRootfs"], true);
    let mounts = v["Mounts"].as_array().expect("Mounts");
    assert!(
        mounts.iter().any(|m| m["Destination"] == "/ro" && m["RW"] == false && m["Source"] == s(&ro)),
        "inspect Mounts shows the :ro bind: {mounts:?}"
    );
    a.ok(&["rm", "rofs"]);

    // Without --read-only a container writes its own upper layer; the next one does not see it.
    sh_ok(&a, &[], "touch /x");
    assert_eq!(sh(&a, &[], "test -e /x").0, 1, "a file written by one container appears in another");
}

#[test]
fn volumes_bind_named_and_anonymous() {
    let _h = host_shared();
    let a = agent();
    let host = a.root().scratch().join("hostdir");
    fs::create_dir_all(&host).expect("mkdir hostdir");
    fs::write(host.join("in"), "from-host\n").expect("write hostdir/in");
    let spec = format!("{}:/data", s(&host));
    assert_eq!(sh_ok(&a, &["-v", &spec], "cat /data/in; echo from-ctr > /data/out"), "from-host\n");
    assert_eq!(fs::read_to_string(host.join("out")).expect("read hostdir/out"), "from-ctr\n");

    // A missing host directory is created, as Docker does.
    let missing = a.root().scratch().join("not/yet/there");
    let spec = format!("{}:/x", s(&missing));
    sh_ok(&a, &["-v", &spec], "touch /x/f");
    assert!(missing.join("f").is_file(), "-v with a missing host dir: {} not created", missing.display());

    // A named volume outlives its containers.
    sh_ok(&a, &["-v", "myvol:/data"], "echo persisted > /data/f");
    assert_eq!(sh_ok(&a, &["-v", "myvol:/data"], "cat /data/f"), "persisted\n", "named volume content in a second container");
    assert!(a.root().path().join("volumes").is_dir(), "named volumes live under <root>/volumes");

    // An anonymous volume is a writable directory.
    assert_eq!(sh_ok(&a, &["-v", "/anon"], "touch /anon/x && echo ok"), "ok\n");
}

#[test]
fn anonymous_volumes_go_with_their_container() {
    let _h = host_shared();
    let a = agent();
    sh_ok(&a, &["-v", "keep:/keep"], "true");
    let before = a.volume_entries();
    assert!(before.contains("keep"), "named volume under <root>/volumes: {before:?}");
    // Docker: --rm removes the container's anonymous volumes; named ones stay.
    sh_ok(&a, &["-v", "/anon", "-v", "keep:/keep"], "touch /anon/x");
    assert_eq!(a.volume_entries(), before, "run --rm -v /anon left its anonymous volume behind");
    // Docker: rm -v removes anonymous volumes too.
    a.run_detached(&["--name", "av", "-v", "/anon2", "-v", "keep:/keep", "busybox", "true"]);
    a.ok(&["wait", "av"]);
    a.ok(&["rm", "-v", "av"]);
    assert_eq!(a.volume_entries(), before, "rm -v left the container's anonymous volume behind");
}

#[test]
fn masked_and_read_only_paths() {
    let _h = host_shared();
    let a = agent();
    let mut script = String::new();
    for p in MASKED {
        script.push_str(&format!(
            "if [ -d {p} ]; then echo \"M {p} dir $(ls -A {p} | wc -l)\"; elif [ -e {p} ]; then echo \"M {p} file $(cat {p} | wc -c)\"; \
             else echo \"M {p} absent\"; fi; "
        ));
    }
    script.push_str(
        "v=$(cat /proc/sys/kernel/printk_ratelimit); echo $v > /proc/sys/kernel/printk_ratelimit; echo procsys=$?; \
         touch /sys/berth-test; echo sys=$?; touch /sys/firmware/x; echo fw=$?; echo MOUNTINFO; cat /proc/self/mountinfo",
    );
    let (code, out, err) = sh(&a, &[], &script);
    assert_eq!(code, 0, "stderr: {err}");
    let mi = container_mountinfo(&out);
    let mut checked = 0;
    for p in MASKED {
        let line = out.lines().find(|l| l.starts_with(&format!("M {p} "))).unwrap_or_else(|| panic!("no line for {p}:\n{out}"));
        let on_host = Path::new(p).exists();
        if !on_host {
            println!("{p}: not on this host's kernel, not checked");
            continue;
        }
        checked += 1;
        assert!(line.ends_with(" 0"), "{p} is not masked (exists on the host; inside: {line:?})");
        let m = mount_at(&mi, p).unwrap_or_else(|| panic!("{p} exists on the host but no mount masks it inside"));
        if Path::new(p).is_dir() {
            assert!(m.fstype == "tmpfs" && m.opts.split(',').any(|o| o == "ro"), "{p} masked by {} ({})", m.fstype, m.opts);
        } else {
            assert!(m.root.ends_with("/null"), "{p} is masked by {}:{}, not /dev/null", m.fstype, m.root);
        }
    }
    assert!(checked >= 2, "too few masked paths exist on this host to check anything");
    if Path::new("/proc/kcore").exists() {
        let m = mount_at(&mi, "/proc/kcore").expect("/proc/kcore masked by a mount");
        assert_eq!(m.root, "/null", "/proc/kcore is bound to /dev/null");
    }
    let fw = mount_at(&mi, "/sys/firmware").expect("/sys/firmware masked by a mount");
    assert_eq!(fw.fstype, "tmpfs");
    assert!(fw.opts.split(',').any(|o| o == "ro"), "/sys/firmware read-only: {}", fw.opts);
    for p in READONLY {
        if Path::new(p).exists() {
            let m = mount_at(&mi, p).unwrap_or_else(|| panic!("{p} has no read-only mount inside"));
            assert!(m.opts.split(',').any(|o| o == "ro"), "{p} mounted {}", m.opts);
        }
    }
    let sys = mount_at(&mi, "/sys").expect("/sys mounted");
    assert!(sys.opts.split(',').any(|o| o == "ro"), "/sys mounted {}", sys.opts);
    assert_eq!(kv(&out, "procsys"), "1", "/proc/sys must not be writable");
    assert_eq!(kv(&out, "sys"), "1");
    assert_eq!(kv(&out, "fw"), "1");
    assert!(err.contains("Read-only file system"), "writes fail with EROFS: {err}");
}
