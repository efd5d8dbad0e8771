//! What a Docker user hits in the first hour (issue 17), end to end with a real agent: single-file
//! bind mounts and `--mount`, Go templates in `--format`, a closed stdout, `export CONTAINER`,
//! image `VOLUME`s as anonymous volumes, `HOME`, image patterns, `info`'s driver name, and the
//! volume commands (issue 16, item 2).
//!
//! Where Docker's output is the reference, the expected values are what dockerd 20.10.24
//! (Debian's docker.io, on a private root as bench/ runs it) printed for the same image and
//! commands; each such literal says so.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use serde_json::Value;

use berth_tests::agent::{host_exclusive, host_shared, Agent};
use berth_tests::fixtures::{fixtures, tar_entries};
use berth_tests::{is_hex64, require_root, run, s, tool, Stdin};

fn agent() -> Agent {
    require_root();
    Agent::with_busybox()
}

/// `berth run --rm FLAGS... IMAGE sh -c SCRIPT`: (exit code, stdout, stderr).
fn sh_in(a: &Agent, image: &str, flags: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[image, "sh", "-c", script]);
    a.code(&args)
}

fn sh_ok(a: &Agent, flags: &[&str], script: &str) -> String {
    let (code, out, err) = sh_in(a, "busybox", flags, script);
    assert_eq!(code, 0, "run {flags:?} sh -c {script:?}: exit {code}\nstdout: {out}\nstderr: {err}");
    out
}

/// An image made from the busybox rootfs with a user `app` (1000:1000, home /home/app), a
/// `/data` directory holding `hello` (owned by 1000:1000, mode 0750), and `VOLUME /data`.
fn volume_image(a: &Agent) {
    let dir = a.root().scratch().join("volimg");
    tool("cp", &["-a", &format!("{}/.", s(&fixtures().rootfs)), s(&dir)]);
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n").expect("passwd");
    fs::create_dir_all(dir.join("data/sub")).expect("mkdir data");
    fs::write(dir.join("data/hello"), "from the image\n").expect("write hello");
    fs::write(dir.join("data/sub/deep"), "deep\n").expect("write deep");
    for p in ["data", "data/hello", "data/sub", "data/sub/deep"] {
        std::os::unix::fs::chown(dir.join(p), Some(1000), Some(1000)).expect("chown");
    }
    fs::set_permissions(dir.join("data"), fs::Permissions::from_mode(0o750)).expect("chmod data");
    a.ok(&["import", "-c", "VOLUME /data", s(&dir), "volimg:1"]);
    fs::remove_dir_all(&dir).expect("remove image dir");
}

// ---- 1. single-file bind mounts, --mount ----------------------------------------------------

#[test]
fn a_single_file_socket_and_device_bind_mount() {
    let _g = host_shared();
    let a = agent();
    // The issue's command, as is.
    let (code, out, err) = a.code(&["run", "--rm", "-v", "/etc/os-release:/os-release:ro", "busybox", "head", "-1", "/os-release"]);
    assert_eq!(code, 0, "single-file -v: {err}");
    let host_first = fs::read_to_string("/etc/os-release").expect("read /etc/os-release").lines().next().unwrap_or("").to_string();
    assert_eq!(out.trim_end(), host_first);
    // Read-only: writing to it fails inside; the host file is untouched.
    let cfg = a.root().scratch().join("app.conf");
    fs::write(&cfg, "listener 1883\n").expect("write conf");
    let (code, _, _) = sh_in(&a, "busybox", &["-v", &format!("{}:/etc/app.conf:ro", s(&cfg))], "echo x >> /etc/app.conf");
    assert_ne!(code, 0, "a :ro file bind must not be writable");
    // Writable: the change is on the host.
    sh_ok(&a, &["-v", &format!("{}:/etc/app.conf", s(&cfg))], "echo 'allow_anonymous true' >> /etc/app.conf");
    assert_eq!(fs::read_to_string(&cfg).expect("read conf"), "listener 1883\nallow_anonymous true\n");
    // A unix socket and a device node as sources.
    let sock = a.root().scratch().join("app.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind socket");
    let out = sh_ok(
        &a,
        &["-v", &format!("{}:/run/app.sock", s(&sock)), "-v", "/dev/null:/mnt/null"],
        "test -S /run/app.sock && test -c /mnt/null && echo ok",
    );
    assert_eq!(out.trim(), "ok");
    // --mount with a file, read-only.
    let out = sh_ok(
        &a,
        &["--mount", &format!("type=bind,source={},target=/conf,readonly", s(&cfg))],
        "cat /conf; touch /conf 2>/dev/null || echo ro",
    );
    assert_eq!(out, "listener 1883\nallow_anonymous true\nro\n");
}

#[test]
fn a_missing_bind_source_is_made_by_v_and_refused_by_mount() {
    let _g = host_shared();
    let a = agent();
    let missing = a.root().scratch().join("made-by-v");
    sh_ok(&a, &["-v", &format!("{}:/x", s(&missing))], "touch /x/f");
    assert!(missing.join("f").is_file(), "-v makes a missing source as a directory");
    let nope = a.root().scratch().join("nope");
    let (code, _, err) = sh_in(&a, "busybox", &["--mount", &format!("type=bind,source={},target=/x", s(&nope))], "true");
    // Docker: "invalid mount config for type "bind": bind source path does not exist: PATH"
    assert_eq!(code, 125, "stderr: {err}");
    assert!(err.contains(&format!("invalid mount config for type \"bind\": bind source path does not exist: {}", s(&nope))), "{err}");
    assert!(!nope.exists(), "--mount type=bind must not create its source");
    assert!(a.ps_all().is_empty(), "a refused run leaves no container");
    // The CLI refuses a malformed --mount before asking the agent, as the docker CLI does.
    let (code, _, err) = sh_in(&a, "busybox", &["--mount", "type=bind,src=/tmp,dst=/x,bogus=1"], "true");
    assert_eq!(code, 125);
    assert!(err.contains("unexpected key 'bogus' in 'bogus=1'"), "{err}");
}

#[test]
fn mount_tmpfs_and_propagation() {
    let _g = host_shared();
    let a = agent();
    let out = sh_ok(
        &a,
        &["--mount", "type=tmpfs,destination=/scratch,tmpfs-size=1m,tmpfs-mode=1770"],
        "stat -c %a /scratch; grep ' /scratch ' /proc/mounts",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1770"));
    let m = lines.next().unwrap_or_default();
    assert!(m.starts_with("tmpfs /scratch tmpfs ") && m.contains("size=1024k"), "{out}");
    let dir = a.root().scratch().join("prop");
    fs::create_dir_all(&dir).expect("mkdir");
    // A shared bind is in a peer group of its own (mountinfo's optional field); the default
    // (rprivate) is in none.
    let out =
        sh_ok(&a, &["--mount", &format!("type=bind,src={},dst=/p,bind-propagation=rshared", s(&dir))], "grep ' /p ' /proc/self/mountinfo");
    assert!(out.contains(" shared:"), "an rshared bind is shared in mountinfo: {out}");
    let out = sh_ok(&a, &["--mount", &format!("type=bind,src={},dst=/p", s(&dir))], "grep ' /p ' /proc/self/mountinfo");
    assert!(!out.contains(" shared:") && !out.contains(" master:"), "the default bind is private: {out}");
}

// ---- 2. Go templates -------------------------------------------------------------------------

#[test]
fn go_templates_on_inspect_ps_images_version_info() {
    let _g = host_shared();
    let a = agent();
    let id = a.run_detached(&["--name", "tpl", "-e", "A=1", "-l", "b=2", "-l", "a=1", "busybox", "sleep", "1000"]);
    // The issue's template: it printed <no value> and exited 0.
    assert_eq!(a.inspect_f("tpl", r#"{{.Id | printf "%.12s"}}"#), id[..12]);
    assert_eq!(a.inspect_f("tpl", r#"{{printf "%.12s" .Id}}"#), id[..12]);
    assert_eq!(a.inspect_f("tpl", "{{range .Config.Env}}{{if eq . \"A=1\"}}[{{.}}]{{end}}{{end}}"), "[A=1]");
    assert_eq!(a.inspect_f("tpl", "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}"), "a=1;b=2;");
    assert_eq!(a.inspect_f("tpl", "{{len .Config.Cmd}} {{index .Config.Cmd 0}} {{join .Config.Cmd \",\"}}"), "2 sleep sleep,1000");
    assert_eq!(a.inspect_f("tpl", "{{if .State.Running}}up{{else}}down{{end}} {{.State.Status | upper}}"), "up RUNNING");
    assert_eq!(a.inspect_f("tpl", "{{- with .State -}} {{.Status}} {{- end}}"), "running");
    assert_eq!(
        a.inspect_f("tpl", "{{json .Config.Cmd}} {{lower \"ABC\"}} {{title \"x y\"}} {{truncate .Name 3}} [{{pad \"a\" 1 1}}]"),
        "[\"sleep\",\"1000\"] abc X Y /tp [ a ]"
    );
    assert_eq!(a.inspect_f("tpl", "{{split \"a:b\" \":\"}} {{.Config.Labels}}"), "[a b] map[a:1 b:2]");
    // dockerd 20.10.24 printed the same for these on the same container.
    assert_eq!(a.inspect_f("tpl", "{{.State.Health}} {{index .Config.Labels \"zz\"}}|"), "<nil> |");
    // Refused, never a guess (Docker: "map has no entry for key" for inspect).
    let (code, _, err) = a.code(&["inspect", "-f", "{{.Nope}}", "tpl"]);
    assert_eq!(code, 1);
    assert!(err.contains("map has no entry for key \"Nope\""), "{err}");
    for bad in ["{{template \"x\"}}", "{{nosuch .Id}}", "{{.Id", "{{if .Id}}x", "{{.Id 1}}"] {
        let (code, out, err) = a.code(&["inspect", "-f", bad, "tpl"]);
        assert_ne!(code, 0, "{bad}: {out}");
        assert!(err.contains("template"), "{bad}: {err}");
    }
    // ps: a typed context refuses unknown fields; `table` prints Docker's headers, aligned by
    // Docker's tabwriter (min width 10, padding 3): dockerd 20.10.24 printed these two tables.
    let (code, _, err) = a.code(&["ps", "--format", "{{.Nope}}"]);
    assert_ne!(code, 0, "ps --format {{{{.Nope}}}} must fail: {err}");
    let out = a.ok(&["ps", "--format", "table {{.Names}}\\t{{.Image}}\\t{{.State}}"]);
    assert_eq!(out, "NAMES     IMAGE     STATE\ntpl       busybox   running\n");
    let out = a.ok(&["ps", "--format", "{{.ID}}\\t{{.Names}}"]);
    assert_eq!(out, format!("{}\ttpl\n", &id[..12]));
    let out = a.ok(&["images", "--format", "table {{.Repository}}\\t{{.Tag}}"]);
    assert_eq!(out, "REPOSITORY   TAG\nbusybox      latest\n");
    let out = a.ok(&["version", "--format", "{{.Client.Version}}"]);
    assert_eq!(out.trim(), env!("CARGO_PKG_VERSION"));
    // 9. Docker's name for the overlay driver.
    assert_eq!(a.ok(&["info", "--format", "{{.Driver}}"]).trim(), "overlay2");
    a.ok(&["rm", "-f", "tpl"]);
}

// ---- 3. a closed stdout ----------------------------------------------------------------------

/// Runs berth with stdout a pipe whose reader is already gone (`berth X | true` where `true`
/// exited first): it must end quietly, by SIGPIPE or with 0, never with a panic.
fn closed_stdout(a: &Agent, args: &[&str]) {
    let mut fds = [0; 2];
    // SAFETY: pipe() fills two descriptors that we own from here on.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(r);
    let out = a.command(args).stdin(Stdio::null()).stdout(Stdio::from(w)).stderr(Stdio::piped()).output().expect("run berth");
    let err = String::from_utf8_lossy(&out.stderr);
    let quiet = out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(0);
    assert!(quiet, "berth {args:?} into a closed pipe: {} (stderr: {err})", out.status);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("backtrace"), "berth {args:?}: {err}");
}

#[test]
fn a_closed_pipe_ends_listings_quietly() {
    let _g = host_shared();
    let a = agent();
    a.run_detached(&["--name", "piped", "busybox", "sh", "-c", "seq 1 2000; sleep 1000"]);
    a.ok(&["volume", "create", "pv"]);
    for args in [
        &["version"][..],
        &["--help"],
        &["ps", "-a"],
        &["ps", "-a", "--format", "json"],
        &["images"],
        &["images", "--format", "{{.ID}}"],
        &["info"],
        &["inspect", "piped"],
        &["logs", "piped"],
        &["volume", "ls"],
        &["system", "df"],
        &["top", "piped"],
        &["export", "piped"],
        &["save", "busybox"],
    ] {
        closed_stdout(&a, args);
    }
    // And as the issue wrote it: a real `head -c 1` reading one byte.
    for cmd in ["version", "ps -a", "images", "logs piped", "volume ls"] {
        let line = format!(
            "{} --root {} -H {} {cmd} | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}",
            s(&berth_tests::berth_bin()),
            s(a.root().path()),
            a.host()
        );
        let out = run(std::process::Command::new("bash").args(["-c", &line]), Stdin::Null);
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(code == "0" || code == "141", "berth {cmd} | head -c 1: exit {code}, stderr {err}");
        assert!(!err.contains("panicked"), "berth {cmd} | head -c 1: {err}");
    }
    a.ok(&["rm", "-f", "piped"]);
    a.ok(&["volume", "rm", "pv"]);
}

// ---- 4. export CONTAINER ---------------------------------------------------------------------

#[test]
fn export_of_a_container_holds_its_changes() {
    let _g = host_shared();
    let a = agent();
    a.ok(&[
        "run",
        "--name",
        "ex",
        "busybox",
        "sh",
        "-c",
        "echo changed > /etc/motd; mkdir -p /srv/app; echo v1 > /srv/app/ver; rm /etc/group",
    ]);
    let tar = a.root().scratch().join("ex.tar");
    a.ok(&["export", "-o", s(&tar), "ex"]);
    let entries = tar_entries(&fs::read(&tar).expect("read export"));
    let by_name: BTreeMap<String, _> = entries.iter().map(|e| (e.path.clone(), e)).collect();
    assert_eq!(by_name.get("etc/motd").map(|e| e.data.as_slice()), Some(&b"changed\n"[..]), "the container's new file");
    assert_eq!(by_name.get("srv/app/ver").map(|e| e.data.as_slice()), Some(&b"v1\n"[..]));
    assert!(!by_name.contains_key("etc/group"), "a file the container removed is not exported");
    assert!(by_name.contains_key("bin/busybox") && by_name.contains_key("etc/passwd"), "the image's files are");
    assert!(!by_name.keys().any(|k| k.contains(".wh.")), "no whiteout reaches the archive");
    // To stdout too, and an unknown name is Docker's error.
    let out = a.cmd(&["export", "ex"]);
    assert!(out.status.success() && out.stdout.len() == fs::metadata(&tar).expect("stat").len() as usize);
    let (code, _, err) = a.code(&["export", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container: nosuch"), "{err}");
    a.ok(&["rm", "ex"]);
}

// ---- 5. image VOLUMEs, volume commands -------------------------------------------------------

#[test]
fn an_image_volume_becomes_an_anonymous_volume_with_the_image_content() {
    let _g = host_shared();
    let a = agent();
    volume_image(&a);
    let out = a.ok(&[
        "run",
        "--name",
        "vol",
        "volimg:1",
        "sh",
        "-c",
        "cat /data/hello /data/sub/deep; stat -c '%u:%g %a' /data /data/hello; echo mine > /data/new",
    ]);
    assert_eq!(out, "from the image\ndeep\n1000:1000 750\n1000:1000 644\n");
    let mounts = a.inspect("vol")["Mounts"].clone();
    let m = mounts.as_array().filter(|m| m.len() == 1).unwrap_or_else(|| panic!("one mount: {mounts}"))[0].clone();
    let name = m["Name"].as_str().unwrap_or_default().to_string();
    assert!(is_hex64(&name), "{m}");
    // Docker's shape of a volume mount in inspect (dockerd 20.10.24, same image: Type, Name,
    // Source, Destination, Driver local, Mode "", RW true, Propagation "").
    assert_eq!(m["Type"], "volume");
    assert_eq!(m["Destination"], "/data");
    assert_eq!(m["Driver"], "local");
    assert_eq!(m["RW"], true);
    assert_eq!(m["Mode"], "");
    let data = a.root().path().join("volumes").join(&name).join("_data");
    assert_eq!(m["Source"].as_str(), Some(s(&data)));
    assert_eq!(fs::read_to_string(data.join("new")).expect("the container's write is in the volume"), "mine\n");
    assert_eq!(fs::metadata(&data).expect("stat").uid(), 1000, "the volume takes the image directory's owner");
    assert_eq!(a.ok(&["volume", "ls", "-q"]).trim(), name);
    // In use: refused.
    let (code, _, err) = a.code(&["volume", "rm", &name]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("remove {name}: volume is in use")), "{err}");
    // A -v NAME:/data of an existing volume keeps its content (no copy-up over data).
    a.ok(&["run", "--rm", "-v", "keep:/data", "volimg:1", "sh", "-c", "echo kept > /data/hello"]);
    assert_eq!(a.ok(&["run", "--rm", "-v", "keep:/data", "volimg:1", "cat", "/data/hello"]), "kept\n");
    // nocopy: an empty volume.
    assert_eq!(a.ok(&["run", "--rm", "--mount", "source=empty,target=/data,volume-nocopy", "volimg:1", "ls", "-A", "/data"]), "");
    // rm -v removes the anonymous volume, not the named ones.
    a.ok(&["rm", "-v", "vol"]);
    assert!(!a.root().path().join("volumes").join(&name).exists(), "rm -v removes the anonymous volume");
    let left = a.ok(&["volume", "ls", "-q"]);
    assert_eq!(left, "empty\nkeep\n");
    // --rm removes anonymous volumes too (Docker: `run --rm` is `rm -v` at exit).
    a.ok(&["run", "--rm", "volimg:1", "true"]);
    assert_eq!(a.ok(&["volume", "ls", "-q"]), "empty\nkeep\n");
    a.ok(&["volume", "rm", "empty", "keep"]);
}

#[test]
fn volume_commands() {
    let _g = host_exclusive();
    let a = agent();
    // The root's cgroup parent is made by the first container; it stays with the agent.
    a.ok(&["run", "--rm", "busybox", "true"]);
    let before = a.snapshot();
    assert_eq!(a.ok(&["volume", "create", "--label", "app=db", "data"]).trim(), "data");
    let named = a.ok(&["volume", "create"]).trim().to_string();
    assert!(is_hex64(&named), "a generated name: {named}");
    // An anonymous volume: a container's, left behind by `rm` without -v.
    a.ok(&["run", "--name", "anon", "-v", "/x", "busybox", "true"]);
    a.ok(&["rm", "anon"]);
    let all = a.ok(&["volume", "ls", "-q"]);
    let anon = all.lines().find(|n| *n != named && is_hex64(n)).unwrap_or_else(|| panic!("no anonymous volume in {all}")).to_string();
    assert_eq!(a.ok(&["volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "fast"]).trim(), "fast");
    // Docker's default listing (dockerd 20.10.24: "DRIVER    VOLUME NAME", tabwriter-aligned).
    let out = a.ok(&["volume", "ls"]);
    let mut want: Vec<&str> = vec![&anon, &named, "data", "fast"];
    want.sort();
    assert_eq!(out, format!("DRIVER    VOLUME NAME\n{}", want.iter().map(|n| format!("local     {n}\n")).collect::<String>()));
    assert_eq!(a.ok(&["volume", "ls", "-q", "--filter", "label=app=db"]), "data\n");
    assert_eq!(a.ok(&["volume", "ls", "-q", "--filter", "name=fast"]), "fast\n");
    let j: Value = serde_json::from_str(a.ok(&["volume", "ls", "--format", "json", "--filter", "name=data"]).trim()).expect("json line");
    assert_eq!(
        (j["Name"].as_str(), j["Driver"].as_str(), j["Labels"].as_str(), j["Scope"].as_str()),
        (Some("data"), Some("local"), Some("app=db"), Some("local"))
    );
    let i: Value = serde_json::from_str(&a.ok(&["volume", "inspect", "data"])).expect("inspect json");
    assert_eq!(i[0]["Name"], "data");
    assert_eq!(i[0]["Labels"]["app"], "db");
    assert_eq!(i[0]["Mountpoint"].as_str(), Some(s(&a.root().path().join("volumes/data/_data"))));
    assert_eq!(a.ok(&["volume", "inspect", "-f", "{{.Driver}} {{.Scope}}", "data"]), "local local\n");
    // The tmpfs volume is a tmpfs inside the container, shared by its users.
    let out = a.ok(&["run", "--rm", "-v", "fast:/f", "busybox", "sh", "-c", "echo hi > /f/x; grep ' /f ' /proc/mounts"]);
    assert!(out.starts_with("tmpfs /f tmpfs") && out.contains("size=1024k"), "{out}");
    assert_eq!(a.ok(&["run", "--rm", "-v", "fast:/f", "busybox", "cat", "/f/x"]), "hi\n");
    // In use: rm refused; prune leaves it.
    a.run_detached(&["--name", "user", "-v", "data:/d", "busybox", "sleep", "1000"]);
    let (code, _, err) = a.code(&["volume", "rm", "data"]);
    assert_eq!(code, 1);
    assert!(err.contains("volume is in use"), "{err}");
    let (code, _, err) = a.code(&["volume", "rm", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such volume"), "{err}");
    assert_eq!(a.code(&["volume", "rm", "-f", "nosuch"]).0, 0);
    // prune: anonymous unused volumes only; -a: every unused one.
    let out = a.ok(&["volume", "prune", "-f"]);
    assert_eq!(out, format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n"));
    let out = a.ok(&["volume", "prune", "-f", "-a"]);
    let mut gone: Vec<&str> = vec![&named, "fast"];
    gone.sort();
    assert!(out.starts_with(&format!("Deleted Volumes:\n{}\n", gone.join("\n"))), "{out}");
    assert_eq!(a.ok(&["volume", "ls", "-q"]), "data\n");
    a.ok(&["rm", "-f", "user"]);
    a.ok(&["volume", "rm", "data"]);
    let after = a.snapshot();
    assert_eq!(after.diff(&before), "", "volume commands left something behind");
}

// ---- 6. HOME ---------------------------------------------------------------------------------

#[test]
fn home_is_set_as_docker_sets_it() {
    let _g = host_shared();
    let a = agent();
    volume_image(&a);
    // dockerd 20.10.24 on the same images printed: /root, /home/app, / and /x.
    assert_eq!(sh_ok(&a, &[], "echo $HOME"), "/root\n");
    let (code, out, err) = sh_in(&a, "volimg:1", &["-u", "app"], "echo $HOME");
    assert_eq!((code, out.as_str()), (0, "/home/app\n"), "{err}");
    let (_, out, _) = sh_in(&a, "volimg:1", &["-u", "1000"], "echo $HOME");
    assert_eq!(out, "/home/app\n");
    assert_eq!(sh_ok(&a, &["-u", "4321"], "echo $HOME"), "/\n");
    assert_eq!(sh_ok(&a, &["-e", "HOME=/x"], "echo $HOME"), "/x\n");
    // Not in the container's configured environment (Docker's inspect has no HOME either).
    let id = a.run_detached(&["busybox", "sleep", "1000"]);
    assert!(!a.inspect_f(&id, "{{json .Config.Env}}").contains("HOME="));
    assert_eq!(a.ok(&["exec", &id, "sh", "-c", "echo $HOME"]), "/root\n");
    a.ok(&["rm", "-f", &id]);
}

// ---- 7. image patterns -----------------------------------------------------------------------

#[test]
fn images_match_patterns_as_docker() {
    let _g = host_shared();
    let a = agent();
    for t in ["librarytest/app:v1", "librarytest/db:v2", "other/app:v1", "localhost:5000/librarytest/x:1"] {
        a.ok(&["tag", "busybox", t]);
    }
    let list = |args: &[&str]| {
        let mut v = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        v.extend_from_slice(args);
        let mut l: Vec<String> = a.ok(&v).lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(list(&["librarytest/*"]), ["librarytest/app:v1", "librarytest/db:v2"]);
    assert_eq!(list(&["--filter", "reference=*/app"]), ["librarytest/app:v1", "other/app:v1"]);
    assert_eq!(list(&["--filter", "reference=*/app:v*"]), ["librarytest/app:v1", "other/app:v1"]);
    assert_eq!(list(&["busybox"]), ["busybox:latest"]);
    assert_eq!(list(&["bus*"]), ["busybox:latest"]);
    assert_eq!(list(&["localhost:5000/*/*"]), ["localhost:5000/librarytest/x:1"]);
    assert!(list(&["nomatch/*"]).is_empty());
    let (code, _, err) = a.code(&["images", "["]);
    assert_ne!(code, 0, "a malformed pattern is an error: {err}");
}

#[test]
fn the_copy_up_keeps_modes_for_anonymous_v_volumes() {
    let _g = host_shared();
    let a = agent();
    volume_image(&a);
    // -v /data (no source) is the same anonymous volume as the image's VOLUME.
    let out = a.ok(&["run", "--rm", "-v", "/data", "volimg:1", "stat", "-c", "%u %a", "/data/sub"]);
    assert_eq!(out, "1000 755\n");
    assert!(a.ok(&["volume", "ls", "-q"]).is_empty(), "--rm removed the anonymous volume");
}
