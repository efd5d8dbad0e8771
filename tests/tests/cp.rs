//! `cp` between the host and a container: both ways, symlinks, relative paths, never outside the container.
//!
//! A real `berth agent` on a throw-away root and the busybox fixture image; what happens is checked
//! from the host too (`/proc`, cgroup files, the root's directories), never only through berth's
//! own answers. Every test needs root and its own agent; tests that compare mounts take
//! `host_exclusive`, all others `host_shared`. Helpers: `berth_tests::supervise`. Nothing here
//! asserts how fast something is (see `tests/src/supervise.rs`).

use berth_tests::agent::{host_exclusive, host_shared};
use berth_tests::supervise::*;
use berth_tests::{run, s, Stdin};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

#[test]
fn cp_both_ways_stays_inside_the_container() {
    let _h = host_exclusive();
    let a = seeded();
    let before = a.snapshot();
    let host_passwd = fs::read("/etc/passwd").expect("read host /etc/passwd");
    cp_container(&a);
    let scratch = a.root().scratch().to_path_buf();
    let uniq = format!("berth-cp-{}", std::process::id());
    let src = scratch.join(&uniq);
    fs::write(&src, "from the host\n").expect("write cp source");

    for stopped in [false, true] {
        let tag = if stopped { "stopped" } else { "running" };
        if stopped {
            a.ok(&["stop", "-t", "0", "cpr"]);
        }
        // out, a plain file
        let out = scratch.join(format!("in-{tag}"));
        a.ok(&["cp", "cpr:/data/in", s(&out)]);
        assert_eq!(fs::read_to_string(&out).expect("read copied file"), "inner\n", "{tag}: cp out");
        // in, through /data/esc -> /etc: lands in the container's /etc, never the host's.
        let name = format!("{uniq}-{tag}");
        let src2 = scratch.join(&name);
        fs::write(&src2, format!("{tag}\n")).expect("write source");
        a.ok(&["cp", s(&src2), "cpr:/data/esc/"]);
        assert!(!Path::new("/etc").join(&name).exists(), "{tag}: cp into /data/esc/ (-> /etc) wrote the host's /etc/{name}");
        let back = scratch.join(format!("back-{tag}"));
        a.ok(&["cp", &format!("cpr:/etc/{name}"), s(&back)]);
        assert_eq!(fs::read_to_string(&back).expect("read"), format!("{tag}\n"), "{tag}: the file is in the container's /etc");
        // out, through /data/rootlink -> / : the container's /etc/passwd, not the host's.
        let pw = scratch.join(format!("pw-{tag}"));
        a.ok(&["cp", "cpr:/data/rootlink/etc/passwd", s(&pw)]);
        assert_eq!(fs::read_to_string(&pw).expect("read"), CONTAINER_PASSWD, "{tag}: cp out through an absolute symlink");
        // `..` cannot climb out of the container either.
        let dd = scratch.join(format!("dotdot-{tag}"));
        a.ok(&["cp", "cpr:/data/../../../../etc/passwd", s(&dd)]);
        assert_eq!(fs::read_to_string(&dd).expect("read"), CONTAINER_PASSWD, "{tag}: cp out through ..");
        // Onto an absolute symlink: whatever berth does with the link, the host's file is safe
        // (cp_onto_a_symlink_replaces_the_link checks what happens inside).
        a.ok(&["cp", s(&src), "cpr:/data/victim"]);
        assert_eq!(fs::read("/etc/passwd").expect("read /etc/passwd"), host_passwd, "{tag}: the host's /etc/passwd changed");
        assert!(!Path::new("/etc").join(&uniq).exists(), "{tag}: cp wrote the host's /etc");
        if !stopped {
            // Undo whatever that did inside, for the next round.
            a.ok(&[
                "exec",
                "cpr",
                "sh",
                "-c",
                "echo root:x:0:0:root:/root:/bin/sh > /etc/passwd; rm /data/victim; busybox ln -s /etc/passwd /data/victim",
            ]);
        }
    }
    // The copies into the stopped container are there when it runs again.
    a.ok(&["start", "cpr"]);
    wait_inspect(&a, "cpr", "{{.State.Status}}", "running");
    assert_eq!(a.ok(&["exec", "cpr", "cat", &format!("/etc/{uniq}-stopped")]), "stopped\n");
    rm_all_and_assert_clean(&a, &before, true);
}

#[test]
fn cp_onto_a_symlink_replaces_the_link() {
    let _h = host_shared();
    let a = agent();
    cp_container(&a);
    let scratch = a.root().scratch().to_path_buf();
    let src = scratch.join("src");
    fs::write(&src, "from the host\n").expect("write cp source");
    for stopped in [false, true] {
        let tag = if stopped { "stopped" } else { "running" };
        if stopped {
            a.ok(&["exec", "cpr", "sh", "-c", "rm /data/victim; busybox ln -s /etc/passwd /data/victim"]);
            a.ok(&["stop", "-t", "0", "cpr"]);
        }
        // berth's contract (README, cp.rs): a symlink at the destination is replaced, never
        // followed. (Docker's CLI instead follows it, resolved inside the container.)
        a.ok(&["cp", s(&src), "cpr:/data/victim"]);
        let pw = scratch.join(format!("pw-{tag}"));
        a.ok(&["cp", "cpr:/etc/passwd", s(&pw)]);
        let v = scratch.join(format!("victim-{tag}"));
        a.ok(&["cp", "-L", "cpr:/data/victim", s(&v)]);
        assert_eq!(
            fs::read_to_string(&pw).expect("read"),
            CONTAINER_PASSWD,
            "{tag}: cp SRC cpr:/data/victim (a link to /etc/passwd) wrote the container's /etc/passwd through the link"
        );
        assert_eq!(fs::read_to_string(&v).expect("read"), "from the host\n", "{tag}: /data/victim holds the copy");
    }
    a.ok(&["rm", "-f", "cpr"]);
}

#[test]
fn cp_with_relative_host_paths() {
    let _h = host_shared();
    let a = agent();
    cp_container(&a);
    let cwd = a.root().scratch().join("cwd");
    fs::create_dir_all(&cwd).expect("mkdir cwd");
    fs::write(cwd.join("rel-src"), "relative\n").expect("write rel-src");
    let layers_before: BTreeSet<String> = fs::read_dir(a.root().path().join("layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut wrong = Vec::new();
    for stopped in [false, true] {
        let tag = if stopped { "stopped" } else { "running" };
        if stopped {
            a.ok(&["stop", "-t", "0", "cpr"]);
        }
        // Relative host paths are relative to the working directory of `berth cp`, as Docker's.
        for args in [
            vec!["cp".to_string(), "rel-src".to_string(), format!("cpr:/data/rel-{tag}")],
            vec!["cp".to_string(), "cpr:/data/in".to_string(), format!("out-{tag}")],
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(a.command(&args).current_dir(&cwd), Stdin::Null);
            if !out.status.success() {
                wrong.push(format!(
                    "{tag}: (cd {}; berth {}) failed: {}",
                    cwd.display(),
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        match fs::read_to_string(cwd.join(format!("out-{tag}"))) {
            Ok(t) if t == "inner\n" => {}
            other => wrong.push(format!("{tag}: cp cpr:/data/in out-{tag} (relative): {}/out-{tag} is {other:?}", cwd.display())),
        }
    }
    let layers_after: BTreeSet<String> = fs::read_dir(a.root().path().join("layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let strays: Vec<&String> = layers_after.difference(&layers_before).collect();
    if !strays.is_empty() {
        wrong.push(format!("berth cp wrote into the image store: new entries in <root>/layers: {strays:?}"));
    }
    a.ok(&["start", "cpr"]);
    wait_inspect(&a, "cpr", "{{.State.Status}}", "running");
    for tag in ["running", "stopped"] {
        let (code, out, _) = a.code(&["exec", "cpr", "cat", &format!("/data/rel-{tag}")]);
        if (code, out.as_str()) != (0, "relative\n") {
            wrong.push(format!("{tag}: cp rel-src cpr:/data/rel-{tag} did not arrive (exit {code}, {out:?})"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    a.ok(&["rm", "-f", "cpr"]);
}

#[test]
fn cp_of_a_symlink_copies_the_link_unless_follow_link() {
    let _h = host_shared();
    let a = agent();
    cp_container(&a);
    let scratch = a.root().scratch().to_path_buf();
    // Docker copies a symlink source as a symlink; -L copies what it points to (in the container).
    let l = scratch.join("link");
    a.ok(&["cp", "cpr:/data/victim", s(&l)]);
    let md = fs::symlink_metadata(&l).expect("lstat copied link");
    let follow = scratch.join("followed");
    a.ok(&["cp", "-L", "cpr:/data/victim", s(&follow)]);
    assert_eq!(fs::read_to_string(&follow).expect("read"), CONTAINER_PASSWD, "cp -L follows the link inside the container");
    assert!(
        md.file_type().is_symlink() && fs::read_link(&l).expect("readlink") == Path::new("/etc/passwd"),
        "cp CONTAINER:/data/victim (a symlink to /etc/passwd) without -L: Docker copies the link itself; got a {}",
        if md.file_type().is_symlink() { "symlink to something else" } else { "regular file (the link was followed)" }
    );
    a.ok(&["rm", "-f", "cpr"]);
}
