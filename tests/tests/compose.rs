//! `berth compose` end to end: a real agent, the busybox fixture, compose files written by each
//! test; and `docker compose config` as the reference for the normalised model.
//!
//! The reference is Debian's `docker-compose` (1.29, installed by scripts/test), which prints
//! Compose v1's shape. berth prints v2's. So the comparison feeds v1's output back through
//! `berth compose config`: the same files must give the same services, networks and volumes
//! whether berth reads them directly or after v1 normalised them (interpolation, `.env`,
//! `env_file`, `-f` merging, relative paths, defaults). What differs between v1's and v2's
//! printed shape (and so is only compared through that round trip):
//! - v1 prints `version: '3.9'` and no top-level `name`; networks and volumes without their
//!   resolved `name: PROJECT_KEY`; services without the implicit `networks: {default: null}`.
//! - v1 keeps `command`/`entrypoint` strings as written; v2 splits them into lists.
//! - v1 keeps short volume and port syntax (`data:/data:rw`, `127.0.0.1:8883:8883/udp`) and
//!   long ports without `mode`/`protocol`, `published` as an integer; v2 prints long syntax,
//!   `published` as a string.
//! - v1 keeps sizes and durations as written (`64m`, `90s`); v2 prints bytes and Go durations
//!   (`"67108864"`, `1m30s`).
//! - v1 prints `extra_hosts` as `host:ip`, v2 as `host=ip`; v1's `depends_on` lacks `required`.
//! - An override file's volume for a container path the first file already mounts: v1 moves it
//!   to the front of the list, berth replaces the entry in place (the specification's merge says
//!   only that the path is the unique key). The order of mounts with distinct paths means
//!   nothing, so the compared files add a path rather than replace one, and mounts are compared
//!   sorted by path (v1 also sorts the mounts of a merged service by path).
//! - Keys v1 rejects (top-level `name`, `depends_on.*.restart`, `deploy.resources.limits.pids`)
//!   are left out of the compared files; the unit tests of berth-compose cover them.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::agent::{host_shared, Agent};
use berth_tests::netns::{link, Netns};
use berth_tests::{fixtures, make_temp_dir, require_root, s, Root};

/// Runs `berth compose ARGS` in `dir`; (exit code, stdout, stderr).
fn compose(a: &Agent, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["compose"];
    full.extend_from_slice(args);
    let mut c = a.command(&full);
    c.current_dir(dir).env_remove("COMPOSE_PROJECT_NAME").env_remove("COMPOSE_FILE");
    let out = c.output().unwrap_or_else(|e| panic!("run berth compose {args:?}: {e}"));
    let code = out.status.code().unwrap_or_else(|| panic!("berth compose {args:?} killed: {}", out.status));
    (code, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn compose_ok(a: &Agent, dir: &Path, args: &[&str]) -> (String, String) {
    let (code, out, err) = compose(a, dir, args);
    assert_eq!(code, 0, "berth compose {args:?}: exit {code}\nstdout: {out}\nstderr: {err}");
    (out, err)
}

fn project_dir(name: &str) -> std::path::PathBuf {
    let d = make_temp_dir("berth-compose").join(name);
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    d
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

/// The id of the project's container of `service` (running or not), from `compose ps -a`.
fn id_of(a: &Agent, dir: &Path, service: &str) -> String {
    let (out, _) = compose_ok(a, dir, &["ps", "-a", "--format", "json"]);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("ps json {line:?}: {e}"));
        if v["Service"] == service {
            return v["ID"].as_str().unwrap_or_default().to_string();
        }
    }
    panic!("no container for service {service} in:\n{out}");
}

const APP: &str = r#"
services:
  db:
    image: busybox
    # Ready only after a while: `web` must wait for the health check, not just the start.
    command: ["sh", "-c", "sleep 2; touch /shared/ready; echo db up; exec sleep 1000"]
    volumes:
      - ./shared:/shared
      - data:/data
    healthcheck:
      test: ["CMD", "test", "-f", "/shared/ready"]
      interval: 300ms
      retries: 100
    network_mode: host
    stop_grace_period: 1s
  web:
    image: busybox
    command: sh -c 'if test -f /shared/ready; then echo saw-ready > /shared/web; fi; echo web $$GREETING; exec sleep 1000'
    environment:
      GREETING: ${GREETING:-hello}
    volumes: ["./shared:/shared"]
    depends_on:
      db:
        condition: service_healthy
    network_mode: host
    stop_grace_period: 1s
volumes:
  data:
"#;

#[test]
fn up_waits_for_health_recreates_what_changed_and_down_removes_volumes() {
    let _g = host_shared();
    require_root();
    let a = Agent::with_busybox();
    let dir = project_dir("shop");
    fs::create_dir_all(dir.join("shared")).expect("mkdir shared");
    write(&dir, "compose.yaml", APP);

    let (_, err) = compose_ok(&a, &dir, &["up", "-d"]);
    assert!(err.contains("Container shop-db-1  Healthy"), "{err}");
    // web started only once db was healthy, so it saw the file db made before its check passed.
    assert_eq!(fs::read_to_string(dir.join("shared/web")).unwrap_or_default().trim(), "saw-ready", "stderr: {err}");
    let db = id_of(&a, &dir, "db");
    let web = id_of(&a, &dir, "web");
    let labels = a.inspect(&web)["Config"]["Labels"].clone();
    assert_eq!(labels["com.docker.compose.project"], "shop");
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    let (hashes, _) = compose_ok(&a, &dir, &["config", "--hash", "web"]);
    assert_eq!(Some(hashes.trim()), Some(format!("web {}", labels["com.docker.compose.config-hash"].as_str().unwrap_or("")).as_str()));
    assert_eq!(a.inspect_f("shop-web-1", "{{.State.Status}}"), "running");

    // The data volume is the project's named volume.
    a.ok(&["exec", "shop-db-1", "sh", "-c", "echo kept > /data/f"]);
    assert!(a.root().path().join("volumes/shop_data").exists());

    // ps and logs name the project's containers.
    let (ps, _) = compose_ok(&a, &dir, &["ps"]);
    assert!(ps.starts_with("NAME"), "{ps}");
    assert!(ps.contains("shop-db-1") && ps.contains("shop-web-1") && ps.contains("(healthy)"), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (logs, _) = compose_ok(&a, &dir, &["logs", "web"]);
        if logs.contains("shop-web-1  | web hello") {
            break;
        }
        assert!(Instant::now() < deadline, "web's log never showed its greeting: {logs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out, _) = compose_ok(&a, &dir, &["exec", "-T", "web", "cat", "/shared/web"]);
    assert_eq!(out.trim(), "saw-ready");

    // Same file: nothing is re-created.
    let (_, err) = compose_ok(&a, &dir, &["up", "-d"]);
    assert!(err.contains("Container shop-web-1  Running") && !err.contains("Recreate"), "{err}");
    assert_eq!((id_of(&a, &dir, "db"), id_of(&a, &dir, "web")), (db.clone(), web.clone()));

    // An edit of web (its environment) re-creates web only.
    let err = {
        let out = a.command(&["compose", "up", "-d"]).current_dir(&dir).env("GREETING", "changed").output().expect("run compose up");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(err.contains("Container shop-web-1  Recreate") && err.contains("Container shop-db-1  Running"), "{err}");
    assert_eq!(id_of(&a, &dir, "db"), db);
    assert_ne!(id_of(&a, &dir, "web"), web);

    // stop / start.
    compose_ok(&a, &dir, &["stop"]);
    assert_eq!(a.inspect_f("shop-db-1", "{{.State.Status}}"), "exited");
    compose_ok(&a, &dir, &["start", "db"]);
    assert_eq!(a.inspect_f("shop-db-1", "{{.State.Status}}"), "running");

    // down keeps named volumes; down -v removes them.
    compose_ok(&a, &dir, &["down"]);
    let (ps, _) = compose_ok(&a, &dir, &["ps", "-a", "-q"]);
    assert_eq!(ps.trim(), "", "containers left after down");
    assert_eq!(fs::read_to_string(a.root().path().join("volumes/shop_data/_data/f")).unwrap_or_default().trim(), "kept");
    compose_ok(&a, &dir, &["up", "-d", "db"]);
    let (out, _) = compose_ok(&a, &dir, &["exec", "-T", "db", "cat", "/data/f"]);
    assert_eq!(out.trim(), "kept");
    let (_, err) = compose_ok(&a, &dir, &["down", "-v"]);
    assert!(err.contains("Volume shop_data  Removed"), "{err}");
    assert!(!a.root().path().join("volumes/shop_data").exists());
    assert_eq!(a.ok(&["ps", "-a", "-q"]).trim(), "");
    fs::remove_dir_all(dir.parent().unwrap_or(&dir)).ok();
}

#[test]
fn bad_files_are_refused_before_anything_runs() {
    let _g = host_shared();
    require_root();
    let a = Agent::with_busybox();
    let dir = project_dir("bad");
    let bomb = {
        let mut y = String::from("x-a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = "a".to_string();
        for n in ["b", "c", "d", "e", "f", "g", "h"] {
            y.push_str(&format!(
                "x-{n}: &{n} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = n.to_string();
        }
        y + "services:\n  a: {image: busybox}\n"
    };
    let big = format!("services:\n  a:\n    image: busybox\n    command: [\"{}\"]\n", "x".repeat(1 << 20));
    let cases: Vec<(&str, String, &str)> = vec![
        ("yaml", "services:\n  a:\n    image: [busybox\n".into(), "compose.yaml line 4 column 1: "),
        ("unknown key", "services:\n  a:\n    image: busybox\n    build: .\n".into(), "line 4 column 5: services.a: unknown key \"build\""),
        (
            "cycle",
            "services:\n  a: {image: busybox, depends_on: [b]}\n  b: {image: busybox, depends_on: [a]}\n".into(),
            "dependency cycle: a -> b -> a",
        ),
        ("network", "services:\n  a:\n    image: busybox\n    networks: [front]\n".into(), "undefined network \"front\""),
        (
            "volume",
            "services:\n  a:\n    image: busybox\n    volumes: ['data:/d']\n".into(),
            "line 4 column 15: service \"a\" refers to undefined volume \"data\"",
        ),
        (
            "required",
            "services:\n  a:\n    image: busybox\n    command: echo ${NEEDED:?set NEEDED}\n".into(),
            "line 4 column 14: required variable NEEDED is missing a value: set NEEDED",
        ),
        (
            "ports",
            "services:\n  a: {image: busybox, ports: ['8080:80']}\n  b: {image: busybox, ports: ['8080:81']}\n".into(),
            "both publish host port 8080/tcp",
        ),
        ("bomb", bomb, "alias bomb"),
        ("size", big, "over the 1048576 byte limit"),
        ("image", "services:\n  a: {image: 'nosuchimage:1'}\n".into(), "image nosuchimage:1 is not on this device"),
        (
            "sysctl",
            "services:\n  a:\n    image: busybox\n    network_mode: host\n    sysctls: {net.core.somaxconn: '1024'}\n".into(),
            "sysctl \"net.core.somaxconn\" not allowed in host network namespace",
        ),
        (
            "external",
            "services:\n  a: {image: busybox, networks: [x]}\nnetworks:\n  x: {external: true, name: nosuchnet}\n".into(),
            "network nosuchnet declared as external, but could not be found",
        ),
        (
            "driver",
            "services:\n  a: {image: busybox}\nnetworks:\n  default: {driver: macvlan}\n".into(),
            "line 4 column 3: networks.default: drivers other than bridge are not supported yet",
        ),
    ];
    for (what, text, want) in cases {
        write(&dir, "compose.yaml", &text);
        let (code, out, err) = compose(&a, &dir, &["up", "-d"]);
        assert_eq!(code, 1, "{what}: exit {code}\nstdout: {out}\nstderr: {err}");
        let err_lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("WARN")).collect();
        assert_eq!(err_lines.len(), 1, "{what}: one error line expected:\n{err}");
        assert!(err_lines[0].starts_with("Error: ") && err_lines[0].contains(want), "{what}: {:?} lacks {want:?}", err_lines[0]);
        assert_eq!(a.ok(&["ps", "-a", "-q"]).trim(), "", "{what}: a container was made");
    }
    fs::remove_dir_all(dir.parent().unwrap_or(&dir)).ok();
}

/// `docker-compose config` (Compose v1, Debian's package) and `berth compose config` agree on
/// what the same files mean (see the comment at the top of this file for the shape differences).
#[test]
fn config_matches_docker_compose() {
    let reference = Command::new("docker-compose").arg("version").output();
    assert!(
        reference.as_ref().is_ok_and(|o| o.status.success()),
        "docker-compose is not installed (scripts/test installs Debian's docker-compose package): {reference:?}"
    );
    // No agent: `config` only reads files.
    let root = berth_tests::Root::new();
    let dir = project_dir("ref");
    write(
        &dir,
        "compose.yaml",
        r#"
services:
  broker:
    image: "busybox:${TAG:-latest}"
    command: ["httpd", "-f", "-p", "1883"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 90s
      timeout: 2s
      retries: 3
      start_period: 1s
    volumes:
      - data:/data
      - ./conf:/conf:ro
      - type: tmpfs
        target: /run
    environment:
      LEVEL: debug
      COST: "$$5"
    ports: ["1883:1883", "127.0.0.1:8883:8883/udp"]
    cap_add: [NET_BIND_SERVICE]
    mem_limit: 64m
    pids_limit: 100
    cpus: 0.5
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    stop_grace_period: 1m30s
    user: "1000:1000"
    labels: [com.example.role=broker]
    restart: unless-stopped
    logging: {driver: local, options: {max-size: 1m}}
    env_file: [app.env]
  app:
    image: busybox
    entrypoint: /bin/sh
    command: -c 'echo start; sleep 1000'
    depends_on:
      broker:
        condition: service_healthy
    environment:
      - BROKER=broker:${BROKER_PORT}
      - FROM_SHELL
    networks:
      back:
        aliases: [application]
    dns: [10.0.0.1]
    extra_hosts: ["router:10.0.0.2"]
    sysctls: {net.core.somaxconn: "1024"}
    tmpfs: [/tmp]
    read_only: true
    privileged: true
    security_opt: [no-new-privileges:true]
    working_dir: /srv
    hostname: app
    stop_signal: SIGINT
    init: true
networks:
  back:
    ipam:
      config:
        - subnet: 172.28.0.0/16
volumes:
  data:
"#,
    );
    write(
        &dir,
        "override.yaml",
        "services:\n  app:\n    command: [\"-c\", \"echo override\"]\n    environment: {EXTRA: '1'}\n    cap_drop: [ALL]\n  broker:\n    volumes: ['./other:/other']\n",
    );
    write(&dir, "app.env", "FROM_FILE=yes\nLEVEL=file\n");
    write(&dir, ".env", "TAG=1.36\nBROKER_PORT=1883\n");
    let files = ["-f", "compose.yaml", "-f", "override.yaml", "-p", "ref"];
    let v1 = Command::new("docker-compose")
        .args(files)
        .arg("config")
        .current_dir(&dir)
        .env("FROM_SHELL", "shell")
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .output()
        .expect("run docker-compose config");
    assert!(v1.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&v1.stderr));
    write(&dir, "v1.yaml", &String::from_utf8_lossy(&v1.stdout));
    let berth = |args: &[&str], format: &str| {
        let mut full = vec!["compose"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["config", "--format", format]);
        let out = root
            .command(&full)
            .current_dir(&dir)
            .env("FROM_SHELL", "shell")
            .env_remove("COMPOSE_PROJECT_NAME")
            .output()
            .expect("run berth");
        assert!(out.status.success(), "berth {full:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Mount order means nothing (v1 sorts merged mounts by path): compare with each service's
    // volumes sorted by target.
    let canonical = |json: String| {
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("config --format json: {e}\n{json}"));
        if let Some(services) = v["services"].as_object_mut() {
            for svc in services.values_mut() {
                if let Some(vols) = svc["volumes"].as_array_mut() {
                    vols.sort_by_key(|m| m["target"].as_str().unwrap_or_default().to_string());
                }
            }
        }
        v
    };
    let direct = canonical(berth(&files, "json"));
    let through_v1 = canonical(berth(&["-f", "v1.yaml", "-p", "ref"], "json"));
    assert_eq!(direct, through_v1, "berth's model differs from docker-compose's for the same files");
    let direct = berth(&files, "yaml");
    // And the round trip did carry what matters (a sample of it).
    for want in [
        "image: busybox:1.36",
        "BROKER: broker:1883",
        "FROM_SHELL: shell",
        "EXTRA: \"1\"",
        "name: ref_back",
        "interval: 1m30s",
        "mem_limit: \"67108864\"",
        "COST: $$5",
    ] {
        assert!(direct.contains(want), "berth compose config lacks {want:?}:\n{direct}");
    }
    assert!(direct.contains(&format!("source: {}", s(&dir.join("other")))), "{direct}");
    fs::remove_dir_all(dir.parent().unwrap_or(&dir)).ok();
}

/// `--wait`, `restart`, `images`, `top`, `rm -s -f`, and `up` in the foreground: the services'
/// output with their names, and ^C stopping them.
#[test]
fn wait_restart_images_top_rm_and_foreground_up() {
    let _g = host_shared();
    require_root();
    let a = Agent::with_busybox();
    let dir = project_dir("fg");
    write(
        &dir,
        "compose.yaml",
        "services:
  one:
    image: busybox
    command: sh -c 'echo one says hi; exec sleep 1000'
    network_mode: none
    healthcheck: {test: 'true', interval: 200ms}
    stop_grace_period: 1s
  two:
    image: busybox
    command: sh -c 'echo two says hi; exec sleep 1000'
    network_mode: none
    stop_grace_period: 1s
",
    );
    let (_, err) = compose_ok(&a, &dir, &["up", "--wait"]);
    assert!(err.contains("Container fg-one-1  Healthy"), "{err}");
    let json = a.inspect("fg-one-1");
    assert_eq!(json["State"]["Health"]["Status"], "healthy");

    let started = a.inspect_f("fg-two-1", "{{.State.StartedAt}}");
    std::thread::sleep(Duration::from_millis(1100));
    compose_ok(&a, &dir, &["restart", "two"]);
    assert_ne!(a.inspect_f("fg-two-1", "{{.State.StartedAt}}"), started);

    let (images, _) = compose_ok(&a, &dir, &["images"]);
    assert!(images.starts_with("CONTAINER") && images.contains("fg-one-1") && images.contains("busybox"), "{images}");
    let (top, _) = compose_ok(&a, &dir, &["top", "one"]);
    assert!(top.starts_with("fg-one-1\n") && top.contains("sleep 1000"), "{top}");

    let (_, err) = compose_ok(&a, &dir, &["rm", "-s", "-f", "two"]);
    assert!(err.contains("Container fg-two-1  Removed"), "{err}");
    let (ps, _) = compose_ok(&a, &dir, &["ps", "-a", "--services"]);
    assert_eq!(ps.trim(), "one");
    compose_ok(&a, &dir, &["down"]);

    // Foreground: output prefixed by container name; SIGINT stops the services.
    let mut child = a
        .command(&["compose", "up"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn compose up");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push(line);
            if seen.iter().any(|l| l.contains("one says hi")) && seen.iter().any(|l| l.contains("two says hi")) {
                break;
            }
        }
        seen
    });
    let seen = reader.join().expect("reader");
    assert!(seen.iter().any(|l| l.starts_with("fg-one-1  | one says hi")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("fg-two-1  | two says hi")), "{seen:?}");
    // What a ^C at the terminal sends.
    berth_tests::tool("kill", &["-INT", &child.id().to_string()]);
    let status = child.wait().expect("wait compose up");
    assert_eq!(status.code(), Some(130), "compose up after ^C");
    assert_eq!(a.inspect_f("fg-one-1", "{{.State.Status}}"), "exited");
    assert_eq!(a.inspect_f("fg-two-1", "{{.State.Status}}"), "exited");
    compose_ok(&a, &dir, &["down"]);
    fs::remove_dir_all(dir.parent().unwrap_or(&dir)).ok();
}

/// The board's address on the link to the outside namespace, and the outside's.
const BOARD: &str = "10.232.0.1";
const OUTSIDE: &str = "10.232.0.2";

const NET_APP: &str = r#"
services:
  web:
    image: busybox
    command: ["busybox", "nc", "-ll", "-p", "80", "-e", "echo", "web"]
    networks:
      default:
      back:
        aliases: [www]
        ipv4_address: 10.96.0.10
    ports: ["8080:80"]
    expose: ["80"]
    stop_grace_period: 1s
  client:
    image: busybox
    command: ["sleep", "1000"]
    networks: [back, lan]
    extra_hosts: ["router:10.232.0.2"]
    sysctls: {net.core.somaxconn: "1024"}
    stop_grace_period: 1s
  alone:
    image: busybox
    command: ["sleep", "1000"]
    network_mode: none
    stop_grace_period: 1s
networks:
  back:
    ipam:
      config: [{subnet: 10.96.0.0/24}]
  lan:
    external: true
    name: shared-lan
"#;

/// Compose networks end to end, with the agent in a network namespace the test made (its
/// bridges and rules live and die there): the project's default network and a declared one,
/// service names and aliases through berth's DNS, a fixed address, a published port reached from
/// an outside namespace, `extra_hosts`, `sysctls`, an external network joined and left alone by `down`,
/// and `up` after an edit of a network re-creating it with the containers on it.
#[test]
fn networks_names_aliases_ports_and_down() {
    let _g = host_shared();
    require_root();
    let board = Netns::new("cboard");
    let outside = Netns::new("cout");
    link(&board, &format!("{BOARD}/24"), &outside, &format!("{OUTSIDE}/24"));
    let root = Root::new();
    root.ok(&["load", "-q", "-i", s(&fixtures().busybox.path)]);
    let a = Agent::start_in_netns(root, &board.path(), &[]);
    a.ok(&["network", "create", "--subnet", "10.97.0.0/24", "shared-lan"]);
    let dir = project_dir("netapp");
    write(&dir, "compose.yaml", NET_APP);

    let (_, err) = compose_ok(&a, &dir, &["up", "-d"]);
    for want in ["Network netapp_back  Created", "Network netapp_default  Created", "Container netapp-client-1  Started"] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    assert!(!err.contains("shared-lan  Created"), "{err}");
    let labels = a.ok(&["network", "inspect", "-f", "{{json .Labels}}", "netapp_back"]);
    assert!(
        labels.contains("\"com.docker.compose.project\":\"netapp\"") && labels.contains("\"com.docker.compose.network\":\"back\""),
        "{labels}"
    );

    // By service name, by alias, by container name; the fixed address.
    let nc = |target: &str| compose(&a, &dir, &["exec", "-T", "client", "busybox", "nc", "-w", "3", target, "80"]);
    for name in ["web", "www", "netapp-web-1", "10.96.0.10"] {
        let (code, out, err) = nc(name);
        assert_eq!((code, out.as_str()), (0, "web\n"), "client -> {name}: {err}");
    }
    let web = a.inspect("netapp-web-1");
    assert_eq!(web["NetworkSettings"]["Networks"]["netapp_back"]["IPAddress"], "10.96.0.10", "{web}");
    assert!(web["NetworkSettings"]["Networks"]["netapp_default"]["IPAddress"].as_str().is_some_and(|ip| !ip.is_empty()), "{web}");
    let client = a.inspect("netapp-client-1");
    assert!(
        client["NetworkSettings"]["Networks"]["shared-lan"]["IPAddress"].as_str().is_some_and(|ip| ip.starts_with("10.97.0.")),
        "{client}"
    );
    // A service on no shared network does not see the others.
    let (code, _, _) = compose(&a, &dir, &["exec", "-T", "alone", "busybox", "nc", "-w", "2", "10.96.0.10", "80"]);
    assert_ne!(code, 0, "network_mode: none reached web");
    // extra_hosts.
    let (hosts, _) = compose_ok(&a, &dir, &["exec", "-T", "client", "cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["10.232.0.2", "router"]), "{hosts}");
    // sysctls, in the container's network namespace only.
    let (somaxconn, _) = compose_ok(&a, &dir, &["exec", "-T", "client", "cat", "/proc/sys/net/core/somaxconn"]);
    assert_eq!(somaxconn.trim(), "1024");
    let (web_somaxconn, _) = compose_ok(&a, &dir, &["exec", "-T", "web", "cat", "/proc/sys/net/core/somaxconn"]);
    assert_ne!(web_somaxconn.trim(), "1024");
    // ps shows the published port, as Compose.
    let (ps, _) = compose_ok(&a, &dir, &["ps"]);
    assert!(ps.lines().any(|l| l.starts_with("netapp-web-1 ") && l.ends_with("0.0.0.0:8080->80/tcp")), "{ps}");
    let (ps, _) = compose_ok(&a, &dir, &["ps", "--format", "json", "web"]);
    let v: serde_json::Value = serde_json::from_str(ps.trim()).unwrap_or_else(|e| panic!("ps json: {e}\n{ps}"));
    assert_eq!(v["Publishers"], serde_json::json!([{"URL": "0.0.0.0", "TargetPort": 80, "PublishedPort": 8080, "Protocol": "tcp"}]));
    // The published port, from the outside namespace.
    assert_eq!(outside.tcp_get(&format!("{BOARD}:8080")).unwrap(), "web\n");

    // Nothing changed: nothing re-created.
    let client_id = id_of(&a, &dir, "client");
    let (_, err) = compose_ok(&a, &dir, &["up", "-d"]);
    assert!(!err.contains("Network netapp_back"), "{err}");
    assert_eq!(id_of(&a, &dir, "client"), client_id);

    // An edit of the network: it is re-created, with the containers on it.
    write(&dir, "compose.yaml", &NET_APP.replace("  back:\n    ipam:", "  back:\n    labels: {tier: back}\n    ipam:"));
    let (_, err) = compose_ok(&a, &dir, &["up", "-d"]);
    assert!(err.contains("Network netapp_back  Recreate"), "{err}");
    assert_ne!(id_of(&a, &dir, "client"), client_id);
    let (code, out, err) = nc("www");
    assert_eq!((code, out.as_str()), (0, "web\n"), "after the re-creation: {err}");
    let labels = a.ok(&["network", "inspect", "-f", "{{json .Labels}}", "netapp_back"]);
    assert!(labels.contains("\"tier\":\"back\""), "{labels}");

    // down: the project's networks go, the external one stays.
    let (_, err) = compose_ok(&a, &dir, &["down"]);
    assert!(err.contains("Network netapp_back  Removed") && err.contains("Network netapp_default  Removed"), "{err}");
    let ls = a.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.contains("netapp_"), "{ls}");
    assert!(ls.lines().any(|l| l == "shared-lan"), "{ls}");
    assert!(outside.tcp_get(&format!("{BOARD}:8080")).is_err());
    a.ok(&["network", "rm", "shared-lan"]);
    fs::remove_dir_all(dir.parent().unwrap_or(&dir)).ok();
}

/// `docker-compose config` and `berth compose config` agree on networks: top-level `name`,
/// `external`, ipam, `internal`, `driver_opts`, labels; a service's networks as a list and as a
/// map with `aliases` and `ipv4_address`; `network_mode`.
#[test]
fn config_networks_match_docker_compose() {
    let root = Root::new();
    let dir = project_dir("netref");
    write(
        &dir,
        "compose.yaml",
        r#"
services:
  web:
    image: busybox
    networks:
      front:
        aliases: [www, site]
        ipv4_address: 10.5.0.9
      back:
  db:
    image: busybox
    networks: [back, lan]
    ports: ["5432:5432"]
  side:
    image: busybox
    network_mode: "service:web"
  hostly:
    image: busybox
    network_mode: host
networks:
  front:
    driver: bridge
    driver_opts: {com.docker.network.bridge.name: brfront}
    labels: {tier: front}
    ipam:
      config: [{subnet: 10.5.0.0/24, gateway: 10.5.0.1}]
  back:
    internal: true
  lan:
    external: true
    name: shared-lan
"#,
    );
    let files = ["-f", "compose.yaml", "-p", "netref"];
    let v1 = Command::new("docker-compose")
        .args(files)
        .arg("config")
        .current_dir(&dir)
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .output()
        .expect("run docker-compose config (scripts/test installs Debian's docker-compose)");
    assert!(v1.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&v1.stderr));
    write(&dir, "v1.yaml", &String::from_utf8_lossy(&v1.stdout));
    let berth = |args: &[&str]| {
        let mut full = vec!["compose"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["config", "--format", "json"]);
        let out = root.command(&full).current_dir(&dir).env_remove("COMPOSE_PROJECT_NAME").output().expect("run berth");
        assert!(out.status.success(), "berth {full:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("config json: {e}\n{text}"))
    };
    let direct = berth(&files);
    assert_eq!(direct, berth(&["-f", "v1.yaml", "-p", "netref"]), "berth's model differs from docker-compose's for the same file");
    let n = &direct["networks"];
    assert_eq!(n["front"]["name"], "netref_front");
    assert_eq!(n["front"]["ipam"]["config"][0]["subnet"], "10.5.0.0/24");
    assert_eq!(n["back"]["internal"], true);
    assert_eq!(n["lan"]["name"], "shared-lan");
    assert_eq!(n["lan"]["external"], true);
    let web = &direct["services"]["web"]["networks"];
    assert_eq!(web["front"]["aliases"], serde_json::json!(["www", "site"]));
    assert_eq!(web["front"]["ipv4_address"], "10.5.0.9");
    assert_eq!(direct["services"]["side"]["network_mode"], "service:web");
    assert_eq!(direct["services"]["db"]["networks"], serde_json::json!({"back": null, "lan": null}));
    fs::remove_dir_all(dir.parent().unwrap_or(&dir)).ok();
}

/// `stop` and `down` as Docker Compose v2 has them: dependents first, and every container of one
/// dependency level at once. Each service ignores SIGTERM (`sleep` as PID 1), so a stop waits out
/// its 2 s grace period: stopped one after another, a second container's stop would only begin
/// after the first one died. Checked on the order of the agent's events, not on times.
#[test]
fn stop_and_down_stop_each_dependency_level_at_once() {
    let _g = host_shared();
    require_root();
    let a = Agent::with_busybox();
    let dir = project_dir("lv");
    write(
        &dir,
        "compose.yaml",
        "services:
  a:
    image: busybox
    command: [sleep, '1000']
    network_mode: none
    stop_grace_period: 2s
  b:
    image: busybox
    command: [sleep, '1000']
    network_mode: none
    stop_grace_period: 2s
  c:
    image: busybox
    command: [sleep, '1000']
    network_mode: none
    stop_grace_period: 2s
    depends_on: [a, b]
",
    );
    // (action, container name) of every stop and die from `since` on, in the agent's order.
    let stops_and_dies = |since: &str| -> Vec<(String, String)> {
        let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
        std::thread::sleep(Duration::from_millis(1100));
        let out = a.ok(&["events", "--since", since, "--until", &until, "--format", "json"]);
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["Action"] == "stop" || e["Action"] == "die")
            .map(|e| (e["Action"].as_str().unwrap_or("").to_string(), e["Actor"]["Attributes"]["name"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    let pos = |ev: &[(String, String)], action: &str, name: &str| {
        ev.iter().position(|(x, n)| x == action && n == name).unwrap_or_else(|| panic!("no {action} of {name} in {ev:?}"))
    };
    for cmd in ["stop", "down"] {
        compose_ok(&a, &dir, &["up", "-d"]);
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
        compose_ok(&a, &dir, &[cmd]);
        let ev = stops_and_dies(&since);
        // c depends on a and b: it is gone before either is asked to stop.
        for x in ["lv-a-1", "lv-b-1"] {
            assert!(pos(&ev, "die", "lv-c-1") < pos(&ev, "stop", x), "{cmd}: {ev:?}");
        }
        // a and b are one level: both are asked to stop before either dies.
        let last_stop = pos(&ev, "stop", "lv-a-1").max(pos(&ev, "stop", "lv-b-1"));
        let first_die = pos(&ev, "die", "lv-a-1").min(pos(&ev, "die", "lv-b-1"));
        assert!(last_stop < first_die, "{cmd}: {ev:?}");
    }
    let (ps, _) = compose_ok(&a, &dir, &["ps", "-a", "-q"]);
    assert!(ps.trim().is_empty(), "{ps}");
    fs::remove_dir_all(dir.parent().unwrap_or(&dir)).ok();
}
