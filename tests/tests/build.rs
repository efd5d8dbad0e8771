//! Images made on the board: `diff`, `commit`, `pause`/`unpause` and `build`, end to end with a
//! real agent, the busybox fixture, and the real peers: `buildah bud` builds the same Dockerfiles
//! (trees and configs compared), `skopeo` and `podman` read what `commit` and `save` wrote.
//!
//! Deliberate differences from buildah, not compared: history texts (berth writes BuildKit's,
//! `RUN /bin/sh -c ... # buildkit`; buildah the classic builder's `/bin/sh -c #(nop) ...`),
//! times, buildah's `io.buildah.version` label, a shell-form CMD after SHELL (Docker runs it
//! with the SHELL, buildah with `/bin/sh -c`), and the mount points buildah's RUN containers
//! leave in the image (empty `/etc/hosts`, `/etc/hostname`, `/run`), which BuildKit does not.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use berth_tests::agent::{host_exclusive, host_shared, Agent};
use berth_tests::{fixtures, make_temp_dir, run, s, sha256_hex, Stdin};

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.is_empty()).collect()
}

/// An external tool's output; panics with its stderr on failure.
fn tool(program: &str, args: &[&str]) -> String {
    let out = run(Command::new(program).args(args), Stdin::Null);
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary directory removed when dropped (also when the test fails).
struct Tmp(PathBuf);

impl Tmp {
    fn new(prefix: &str) -> Tmp {
        Tmp(make_temp_dir(prefix))
    }
}

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes what a test put into podman's (the host's) image storage, whatever happens.
struct PodmanImages(Vec<String>);

impl Drop for PodmanImages {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("podman").args(["image", "unmount", "--force", i]).output();
            let _ = Command::new("podman").args(["rmi", "--force", i]).output();
        }
    }
}

/// A file tree as the comparison sees it: path → (type, mode, uid, gid, content or link).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let what = if m.is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else {
                format!("file {}", sha256_hex(&fs::read(&p).unwrap()))
            };
            out.insert(rel, format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()));
        }
    }
    out
}

/// The config fields the issue names, from a raw image config.
fn fields(cfg: &Value) -> Value {
    let c = &cfg["config"];
    let mut labels = c["Labels"].clone();
    if let Some(m) = labels.as_object_mut() {
        m.remove("io.buildah.version");
    }
    json!({
        "Env": c["Env"], "Cmd": c["Cmd"], "Entrypoint": c["Entrypoint"], "WorkingDir": c["WorkingDir"], "User": c["User"],
        "Labels": labels, "ExposedPorts": c["ExposedPorts"], "Volumes": c["Volumes"], "Healthcheck": c["Healthcheck"],
        "StopSignal": c["StopSignal"], "OnBuild": c["OnBuild"],
    })
}

/// Empty strings, empty lists and maps, and null are the same "unset" in both tools' configs.
fn normal(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normal(v)))
                .filter(|(_, v)| !v.is_null() && v != &json!("") && v != &json!([]) && v != &json!({}))
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn diff_after_adds_changes_and_deletes() {
    let _g = host_shared();
    let a = Agent::with_busybox();
    a.run_detached(&["--name", "d1", "busybox", "sh", "-c", "echo x > /bin/new; rm /bin/wc; mkdir -p /srv/a; echo n > /srv/a/f; sleep 60"]);
    // The three changes land before the sleep; wait until the last is there.
    let dir = a.container_dir(a.inspect_f("d1", "{{.Id}}").as_str());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !dir.join("upper/srv/a/f").exists() {
        assert!(std::time::Instant::now() < deadline, "the container's changes never appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = a.ok(&["diff", "d1"]);
    assert_eq!(lines(&out), ["C /bin", "A /bin/new", "D /bin/wc", "A /srv", "A /srv/a", "A /srv/a/f"], "{out}");
    a.ok(&["rm", "-f", "d1"]);
    let (code, _, err) = a.code(&["diff", "nope"]);
    assert_eq!((code, err.trim()), (1, "Error: No such container: nope"));
}

#[test]
fn commit_then_save_reads_in_skopeo_and_podman() {
    let _g = host_shared();
    let a = Agent::with_busybox();
    a.run_detached(&[
        "--name",
        "c1",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sh",
        "-c",
        "echo patched > /etc/fix; ln /etc/fix /etc/fix2; rm /bin/wc; sleep 60",
    ]);
    let id = a.inspect_f("c1", "{{.Id}}");
    let dir = a.container_dir(&id);
    while !dir.join("upper/bin/wc").exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let tag = format!("localhost/berth-commit-{}:v1", std::process::id());
    let img =
        a.ok(&["commit", "-a", "Field Engineer <fe@example.com>", "-m", "the fix", "-c", "ENV FIXED=yes", "-c", "EXPOSE 8080", "c1", &tag]);
    let img = img.trim().to_string();
    assert!(img.starts_with("sha256:") && img.len() == 71, "{img}");
    // The container was paused while its files were read, and runs on.
    assert_eq!(a.inspect_f("c1", "{{.State.Status}}"), "running");
    let cfg: Value = serde_json::from_str(&a.ok(&["image", "inspect", &tag])).unwrap();
    let cfg = &cfg[0];
    assert_eq!(cfg["Author"], "Field Engineer <fe@example.com>");
    assert_eq!(cfg["Comment"], "the fix");
    let env: Vec<&str> = cfg["Config"]["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"FROM_RUN=1") && env.contains(&"FIXED=yes"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("HOSTNAME=")), "{env:?}");
    assert_eq!(cfg["Config"]["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(cfg["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    // `save`, then the peers: the same ID and layer digests.
    let tmp = Tmp::new("berth-commit-save");
    let archive = tmp.join("img.tar");
    a.ok(&["save", "-o", s(&archive), &tag]);
    let ins: Value = serde_json::from_str(&tool("skopeo", &["inspect", &format!("docker-archive:{}", s(&archive))])).unwrap();
    assert_eq!(ins["Layers"].as_array().unwrap().len(), 2, "{ins}");
    let raw: Value = serde_json::from_str(&tool("skopeo", &["inspect", "--config", &format!("docker-archive:{}", s(&archive))])).unwrap();
    assert_eq!(raw["history"].as_array().unwrap().last().unwrap()["comment"], "the fix");
    let _cleanup = PodmanImages(vec![tag.clone()]);
    tool("podman", &["load", "-i", s(&archive)]);
    let pid = tool("podman", &["image", "inspect", "--format", "{{.ID}}", &tag]);
    assert_eq!(format!("sha256:{}", pid.trim()), img);
    // The layer as podman unpacked it: the change, the hard link, and the deletion.
    let mnt = PathBuf::from(tool("podman", &["image", "mount", &tag]).trim());
    assert_eq!(fs::read_to_string(mnt.join("etc/fix")).unwrap(), "patched\n");
    assert_eq!(fs::metadata(mnt.join("etc/fix")).unwrap().ino(), fs::metadata(mnt.join("etc/fix2")).unwrap().ino());
    assert!(!mnt.join("bin/wc").exists() && mnt.join("bin/sh").exists());
    a.ok(&["rm", "-f", "c1"]);

    let (code, _, err) = a.code(&["commit", "nope"]);
    assert_eq!((code, err.trim()), (1, "Error: No such container: nope"));
}

#[test]
fn pause_unpause_and_the_paused_state() {
    let _g = host_shared();
    let a = Agent::with_busybox();
    a.run_detached(&["--name", "p1", "busybox", "sleep", "60"]);
    assert_eq!(a.ok(&["pause", "p1"]).trim(), "p1");
    assert_eq!(a.inspect_f("p1", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"), "paused true true");
    let ps = a.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.trim().ends_with("(Paused)"), "{ps}");
    assert_eq!(a.ok(&["ps", "-q", "--filter", "status=paused"]).trim().len(), 12);
    // The process is frozen: the kernel says so for its cgroup.
    let pid = a.pid_of("p1");
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(!cg.is_empty());
    let (code, _, err) = a.code(&["pause", "p1"]);
    assert_eq!(code, 1);
    assert!(err.contains("is already paused"), "{err}");
    assert_eq!(a.ok(&["unpause", "p1"]).trim(), "p1");
    assert_eq!(a.inspect_f("p1", "{{.State.Status}} {{.State.Paused}}"), "running false");
    let (code, _, err) = a.code(&["unpause", "p1"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not paused"), "{err}");
    // A paused container still stops (the signal is delivered once thawed, as Docker's).
    a.ok(&["pause", "p1"]);
    a.ok(&["stop", "-t", "1", "p1"]);
    assert_eq!(a.inspect_f("p1", "{{.State.Status}}"), "exited");
    let (code, _, err) = a.code(&["pause", "p1"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not running"), "{err}");
    let events = a.ok(&["events", "--since", "0", "--until", &berth_now()]);
    assert!(events.contains(" container pause ") && events.contains(" container unpause "), "{events}");
}

/// A whole second for `events --since/--until`, after waiting for it to begin: events of the
/// moment before (the previous build's) cannot share it.
fn berth_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let next = std::time::Duration::from_secs(now.as_secs() + 1);
    std::thread::sleep(next - now);
    next.as_secs().to_string()
}

const COMPARED: &str = r#"ARG BASE
FROM $BASE AS files
ARG GREETING=hello
COPY app/ /opt/app/
RUN echo "$GREETING" > /opt/app/greeting && rm /opt/app/drop.txt

FROM $BASE
ARG GREETING=hi
ENV APP_HOME=/srv/app \
    MODE="two words"
WORKDIR $APP_HOME
COPY --from=files /opt/app/ ./
COPY --chown=12:34 --chmod=640 conf.ini /etc/app/conf.ini
COPY *.txt docs/
RUN mkdir -p data && echo "${GREETING:-none} $MODE" > data/out && chmod 600 data/out
SHELL ["/bin/sh", "-ec"]
RUN echo shell-set > /tmp/marker
USER 1000:1000
LABEL org.example.name="berth test" version=1
EXPOSE 80 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=2 CMD ["true"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat data/out"]
"#;

#[test]
fn build_matches_buildah_and_caches() {
    let _g = host_shared();
    let a = Agent::with_busybox();
    let pid = std::process::id();
    let ctx = Tmp::new("berth-build-ctx");
    write(
        &ctx,
        &[
            ("Dockerfile", COMPARED),
            ("app/run.sh", "echo run\n"),
            ("app/drop.txt", "x"),
            ("app/sub/lib.txt", "lib"),
            ("conf.ini", "[a]\nb=1\n"),
            ("a.txt", "a"),
            ("b.txt", "b"),
            ("secret.txt", "never in the image"),
            (".dockerignore", "secret.txt\n**/*.tmp\n"),
            ("app/junk.tmp", "tmp"),
        ],
    );
    symlink("run.sh", ctx.join("app/start")).unwrap();
    let base = format!("localhost/berth-build-base-{pid}:latest");
    let ours = format!("localhost/berth-build-berth-{pid}:latest");
    let theirs = format!("localhost/berth-build-buildah-{pid}:latest");
    let _cleanup = PodmanImages(vec![ours.clone(), theirs.clone(), base.clone()]);
    a.ok(&["tag", "busybox:latest", &base]);
    tool("skopeo", &["copy", &format!("docker-archive:{}", s(&fixtures().busybox.path)), &format!("containers-storage:{base}")]);
    // crun refuses this hybrid-cgroup host; runc does not.
    tool(
        "buildah",
        &[
            "--runtime",
            "runc",
            "bud",
            "--format",
            "docker",
            "--layers=false",
            "-q",
            "--build-arg",
            &format!("BASE={base}"),
            "-t",
            &theirs,
            s(&ctx),
        ],
    );
    let out = a.cmd(&["build", "--build-arg", &format!("BASE={base}"), "-t", &ours, s(&ctx)]);
    let progress = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{progress}");
    for want in ["[files 2/3] COPY app/ /opt/app/", "[stage-1 6/7] RUN mkdir -p data", "#", "DONE", "naming to"] {
        assert!(progress.contains(want), "{want:?} not in:\n{progress}");
    }
    let our_id: Value = serde_json::from_str(&a.ok(&["image", "inspect", &ours])).unwrap();
    let our_id = our_id[0]["Id"].as_str().unwrap().to_string();

    // Into podman's storage too, and both compared there.
    let tmp = Tmp::new("berth-build-save");
    a.ok(&["save", "-o", s(&tmp.join("img.tar")), &ours]);
    tool("podman", &["load", "-i", s(&tmp.join("img.tar"))]);
    // buildah's "Docker" view: the config as written (skopeo shows the OCI subset, without
    // Healthcheck and OnBuild).
    let cfg = |name: &str| -> Value {
        let v: Value = serde_json::from_str(&tool("buildah", &["inspect", "--type", "image", name])).unwrap();
        v["Docker"].clone()
    };
    let (c_ours, c_theirs) = (cfg(&ours), cfg(&theirs));
    assert_eq!(normal(fields(&c_ours)), normal(fields(&c_theirs)));
    assert_eq!(c_ours["config"]["User"], "1000:1000");
    assert_eq!(c_ours["config"]["Healthcheck"], json!({"Test": ["CMD", "true"], "Interval": 30_000_000_000u64, "Retries": 2}));
    let history: Vec<&str> = c_ours["history"].as_array().unwrap().iter().filter_map(|h| h["created_by"].as_str()).collect();
    assert!(
        history.contains(
            &"RUN |1 GREETING=hi /bin/sh -c mkdir -p data && echo \"${GREETING:-none} $MODE\" > data/out && chmod 600 data/out # buildkit"
        ),
        "{history:?}"
    );
    assert!(history.contains(&"ENV APP_HOME=/srv/app MODE=two words"), "{history:?}");
    let m_ours = PathBuf::from(tool("podman", &["image", "mount", &ours]).trim());
    let m_theirs = PathBuf::from(tool("podman", &["image", "mount", &theirs]).trim());
    let (t_ours, mut t_theirs) = (tree(&m_ours), tree(&m_theirs));
    // buildah leaves the mount points of its RUN containers behind (empty files, mode 755, and
    // an empty /run); BuildKit and berth do not.
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf", "run"] {
        let empty = t_theirs.get(f).is_some_and(|v| v.starts_with("file e3b0c442") || v.starts_with("dir "))
            && !t_theirs.keys().any(|k| k.starts_with(&format!("{f}/")));
        if empty && !t_ours.contains_key(f) {
            t_theirs.remove(f);
        }
    }
    let differ: Vec<String> = t_ours
        .keys()
        .chain(t_theirs.keys())
        .filter(|k| t_ours.get(*k) != t_theirs.get(*k))
        .map(|k| format!("{k}: berth {:?} buildah {:?}", t_ours.get(k), t_theirs.get(k)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(differ.is_empty(), "trees differ:\n{}", differ.join("\n"));
    assert!(t_ours.contains_key("srv/app/sub/lib.txt") && !t_ours.contains_key("srv/app/drop.txt"));
    assert!(!t_ours.keys().any(|k| k.contains("secret") || k.ends_with(".tmp")));
    assert_eq!(t_ours["etc/app/conf.ini"].split(' ').skip(2).collect::<Vec<_>>(), ["640", "12:34"]);

    // The second build: every step from the cache, nothing created or run, the same image.
    let since = berth_now();
    let again = a.cmd(&["build", "--build-arg", &format!("BASE={base}"), "-t", &ours, s(&ctx)]);
    let progress = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(again.status.success(), "{progress}");
    let steps = progress.lines().filter(|l| l.starts_with('#') && l.contains("] ") && !l.contains("[internal]")).count();
    assert_eq!(progress.matches(" CACHED").count(), steps, "{progress}");
    assert!(progress.contains(&format!("writing image {our_id} done")), "{progress}");
    let events = a.ok(&["events", "--since", &since, "--until", &berth_now()]);
    assert!(!events.contains(" container create "), "{events}");
    // A changed file reruns from its COPY on.
    fs::write(ctx.join("conf.ini"), "[a]\nb=2\n").unwrap();
    let third = a.cmd(&["build", "-q", "--build-arg", &format!("BASE={base}"), s(&ctx)]);
    assert!(third.status.success());
    assert_ne!(String::from_utf8_lossy(&third.stdout).trim(), our_id);
    // No build containers are left, and the cache is hidden from `images` (not from `images -a`).
    assert!(a.ps_all().is_empty());
    let listed = a.ok(&["images", "-q"]);
    let all = a.ok(&["images", "-a", "-q"]);
    assert!(lines(&all).len() > lines(&listed).len() + 3, "{listed}\n{all}");
}

#[test]
fn build_targets_stdin_and_onbuild() {
    let _g = host_shared();
    let a = Agent::with_busybox();
    let ctx = Tmp::new("berth-build-target");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox AS one\nRUN echo one > /one\nFROM one AS two\nRUN echo two > /two\nONBUILD RUN echo trig > /trig\n",
        )],
    );
    a.ok(&["build", "-q", "--target", "one", "-t", "t:one", s(&ctx)]);
    assert_eq!(a.ok(&["run", "--rm", "t:one", "sh", "-c", "cat /one; ls /two 2>&1 || true"]), "one\nls: /two: No such file or directory\n");
    let iid = ctx.join("iid");
    let printed = a.ok(&["build", "-q", "--iidfile", s(&iid), "-t", "t:two", s(&ctx)]);
    let written = std::fs::read_to_string(&iid).expect("--iidfile wrote the ID");
    assert_eq!(written, printed.trim(), "--iidfile holds the ID -q prints, without a newline");
    assert!(written.starts_with("sha256:") && written.len() == 71, "{written:?}");
    // The trigger runs in the image built FROM it, then is gone from its config.
    let out = a.cmd_in(&["build", "-q", "-t", "t:child", "-"], Stdin::Bytes(b"FROM t:two\nRUN cat /trig\n".to_vec()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(a.ok(&["run", "--rm", "t:child", "cat", "/trig"]), "trig\n");
    assert_eq!(a.ok(&["image", "inspect", "-f", "{{json .Config.OnBuild}}", "t:child"]).trim(), "null");
}

#[test]
fn build_bad_input_names_the_line_and_leaves_nothing() {
    // The leak check compares the host's mount table: no other test of this file may run.
    let _g = host_exclusive();
    let a = Agent::with_busybox();
    // The agent's cgroup parent exists once a container has run.
    a.ok(&["run", "--rm", "busybox", "true"]);
    let ctx = Tmp::new("berth-build-bad");
    write(&ctx, &[("ok.txt", "ok")]);
    let outside = Tmp::new("berth-build-outside");
    write(&outside, &[("secret", "s")]);
    symlink(outside.join("secret"), ctx.join("escape")).unwrap();
    let before = a.snapshot();
    let images = a.ok(&["images", "-q"]);
    let cases: &[(&str, &str)] = &[
        ("FROM busybox\nFOO bar\n", "Error: Dockerfile:2: unknown instruction: FOO"),
        ("FROM busybox\nCOPY missing.txt /\n", "Error: Dockerfile:2: COPY missing.txt: not found in the build context"),
        ("FROM busybox\nCOPY ../x /\n", "Error: Dockerfile:2: COPY ../x: outside the build context"),
        ("FROM busybox\nCOPY escape /\n", "Error: Dockerfile:2: COPY escape: the symlink escape points outside the build context ("),
        // Not in the store: pulled, from a registry on this machine that is not there (never a
        // name that would reach out to Docker Hub); the firmware's "No such image" is a unit test.
        (
            "FROM 127.0.0.1:9/nothere:1\n",
            "Error: Dockerfile:1: FROM 127.0.0.1:9/nothere:1: registry 127.0.0.1:9: connect to 127.0.0.1:9: Connection refused (",
        ),
        ("FROM busybox\nARG NEED\nRUN true\nCOPY ${NEED:?must be set} /\n", "Error: Dockerfile:4: NEED: must be set"),
        (
            "FROM busybox\nCOPY ok.txt /\nRUN echo first; echo last words; exit 7\n",
            "Error: Dockerfile:3: process \"/bin/sh -c echo first; echo last words; exit 7\" did not complete successfully: exit code: 7 (last output: last words)",
        ),
    ];
    for (df, want) in cases {
        fs::write(ctx.join("Dockerfile"), df).unwrap();
        let (code, _, err) = a.code(&["build", "-t", "bad:1", s(&ctx)]);
        let last = err.lines().last().unwrap_or("");
        assert_eq!(code, 1, "{df}\n{err}");
        assert!(last == *want || want.ends_with('(') && last.starts_with(want), "{df}\ngot:  {last}\nwant: {want}");
        assert!(a.cmd(&["image", "inspect", "bad:1"]).status.code() == Some(1), "{df}: bad:1 was tagged");
    }
    // The failed RUN printed its output lines in the progress.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo first; echo last words; exit 7\n").unwrap();
    let (_, _, err) = a.code(&["build", s(&ctx)]);
    assert!(err.contains(" > [2/2] RUN echo first; echo last words; exit 7:\nfirst\nlast words\n"), "{err}");
    // Nothing was left: no container, no scratch, no new image (the steps that worked are cache).
    assert_eq!(a.snapshot().diff(&before), "");
    assert!(a.ps_all().is_empty());
    assert!(!a.root().path().join("build").read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("tmp-")));
    assert_eq!(a.ok(&["images", "-q"]), images);
    let (code, _, err) = a.code(&["pause", "nope"]);
    assert_eq!((code, err.trim()), (1, "Error: No such container: nope"));
}

#[test]
fn build_on_a_full_disk_fails_cleanly() {
    let _g = host_shared();
    // A root on a 24 MiB tmpfs: the 2 MB busybox image fits, a 30 MB COPY does not.
    let root = berth_tests::Root::on_tmpfs("24m");
    root.ok(&["load", "-q", "-i", s(&fixtures().busybox.path)]);
    let a = Agent::start(root);
    let ctx = Tmp::new("berth-build-full");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo before\nCOPY big.bin /big.bin\n").unwrap();
    fs::write(ctx.join("big.bin"), vec![7u8; 30 << 20]).unwrap();
    let (code, _, err) = a.code(&["build", "-t", "full:1", s(&ctx)]);
    let last = err.lines().last().unwrap_or("");
    assert_eq!(code, 1, "{err}");
    assert!(last.starts_with("Error: Dockerfile:3: COPY") && last.to_lowercase().contains("no space left on device"), "{err}");
    assert_eq!(a.cmd(&["image", "inspect", "full:1"]).status.code(), Some(1));
    assert!(a.ps_all().is_empty());
    let build_dir = a.root().path().join("build");
    assert!(!build_dir.read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("tmp-")));
    assert!(a.root().path().join("tmp").read_dir().map_or(true, |mut d| d.next().is_none()));
    // The space is back: a small build works.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo after > /after\n").unwrap();
    a.ok(&["build", "-q", "-t", "ok:1", s(&ctx)]);
}

/// A small HTTP/1.1 server on 127.0.0.1 for `ADD URL`: `/files/NAME` from the map (changed by
/// the test), `/redirect` to `/files/hello.txt`, anything else 404. Counts the GETs served.
struct Http {
    port: u16,
    files: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>>,
    gets: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Http {
    fn start(files: &[(&str, Vec<u8>)]) -> Http {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        let files = std::sync::Arc::new(std::sync::Mutex::new(
            files.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<String, Vec<u8>>>(),
        ));
        let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (f, g) = (files.clone(), gets.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                g.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let body = path.strip_prefix("/files/").and_then(|n| f.lock().unwrap().get(n).cloned());
                let _ = match (path.as_str(), body) {
                    ("/redirect", _) => conn.write_all(b"HTTP/1.1 302 Found\r\nLocation: /files/hello.txt\r\nContent-Length: 0\r\n\r\n"),
                    (_, Some(b)) => conn
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).as_bytes())
                        .and_then(|()| conn.write_all(&b)),
                    _ => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            }
        });
        Http { port, files, gets }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

#[test]
fn build_add_url_downloads_verifies_caches_and_never_unpacks() {
    let _g = host_shared();
    let a = Agent::with_busybox();
    let ctx = Tmp::new("berth-build-url");
    write(&ctx, &[("x", "x")]);
    // A real tar archive: ADD unpacks a local one, never a download.
    let tar = Command::new("tar").args(["-cf", "-", "-C", s(&ctx), "x"]).output().expect("run tar");
    assert!(tar.status.success());
    let http = Http::start(&[("hello.txt", b"hello\n".to_vec()), ("a.tar", tar.stdout)]);
    let sum = sha256_hex(b"hello\n");
    let df = format!(
        "FROM busybox\nADD {} /dl/\nADD {} /named.txt\nADD --checksum=sha256:{sum} {} /sum.txt\nADD {} /t/\n",
        http.url("/files/hello.txt"),
        http.url("/redirect"),
        http.url("/files/hello.txt"),
        http.url("/files/a.tar"),
    );
    fs::write(ctx.join("Dockerfile"), &df).unwrap();
    let first = a.ok(&["build", "-q", "-t", "url:1", s(&ctx)]);
    assert_eq!(
        a.ok(&["run", "--rm", "url:1", "sh", "-c", "cat /dl/hello.txt /named.txt /sum.txt; stat -c %a /dl/hello.txt /named.txt; ls /t"]),
        "hello\nhello\nhello\n600\n600\na.tar\n"
    );
    // A rebuild downloads again (as Docker does) and, the bytes being the same, hits the cache.
    let gets = http.gets.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(a.ok(&["build", "-q", "-t", "url:2", s(&ctx)]), first);
    assert!(http.gets.load(std::sync::atomic::Ordering::SeqCst) > gets, "the rebuild fetched the URLs again");
    // New bytes at the URL: a new image, and --checksum now refuses it.
    http.files.lock().unwrap().insert("hello.txt".into(), b"changed\n".to_vec());
    let (code, _, err) = a.code(&["build", "-q", "-t", "url:3", s(&ctx)]);
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with(&format!(
            "Error: Dockerfile:4: ADD {}: checksum mismatch: expected sha256:{sum}, got sha256:",
            http.url("/files/hello.txt")
        )),
        "{err}"
    );
    let cases = [
        (
            format!("FROM busybox\nADD {} /x\n", http.url("/files/missing")),
            format!("Error: Dockerfile:2: ADD GET {}: HTTP 404", http.url("/files/missing")),
        ),
        (
            format!("FROM busybox\nADD {} x /d/\n", http.url("/files/hello.txt")),
            "Error: Dockerfile:2: ADD x: URL and local sources in one instruction are not supported by berth yet".to_string(),
        ),
        (
            format!("FROM busybox\nADD {} /d/\n", http.url("/")),
            format!("Error: Dockerfile:2: ADD {}: cannot determine a file name from the URL; name the destination file", http.url("/")),
        ),
    ];
    for (df, want) in cases {
        fs::write(ctx.join("Dockerfile"), &df).unwrap();
        let (code, _, err) = a.code(&["build", "-t", "url:bad", s(&ctx)]);
        assert_eq!((code, err.lines().last().unwrap_or("")), (1, want.as_str()), "{df}");
        assert_eq!(a.cmd(&["image", "inspect", "url:bad"]).status.code(), Some(1), "{df}: url:bad was tagged");
    }
}

#[test]
fn build_pulls_a_from_image_the_store_lacks() {
    use berth_tests::registry::{Auth, Registry};
    let _g = host_shared();
    let reg = Registry::start(false, Auth::None);
    let a = Agent::with_busybox();
    let remote = format!("{}/lib/bb:1", reg.host);
    a.ok(&["tag", "busybox", &remote]);
    a.ok(&["push", "-q", &remote]);
    a.ok(&["rmi", &remote]);
    let ctx = Tmp::new("berth-build-from-pull");
    write(&ctx, &[("Dockerfile", &format!("FROM {remote}\nRUN echo built > /b\n"))]);
    a.ok(&["build", "-q", "-t", "from-pull:1", s(&ctx)]);
    assert_eq!(a.ok(&["run", "--rm", "from-pull:1", "cat", "/b"]), "built\n");
    assert!(a.cmd(&["image", "inspect", &remote]).status.success(), "the FROM image was pulled into the store");
    // A registry that does not have it: the pull's error, at the FROM line, nothing tagged.
    let missing = format!("{}/lib/none:1", reg.host);
    fs::write(ctx.join("Dockerfile"), format!("FROM {missing}\nRUN true\n")).unwrap();
    let (code, _, err) = a.code(&["build", "-t", "from-pull:bad", s(&ctx)]);
    let last = err.lines().last().unwrap_or("");
    assert_eq!(code, 1, "{err}");
    assert!(last.starts_with(&format!("Error: Dockerfile:1: FROM {missing}: ")), "{err}");
    assert_eq!(a.cmd(&["image", "inspect", "from-pull:bad"]).status.code(), Some(1));
}
