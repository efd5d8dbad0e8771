//! Pull and push against a real registry on loopback (Debian's docker-registry, filled with
//! skopeo from the fixture archives): plain HTTP, TLS with a CA made here, htpasswd and bearer
//! token auth, multi-platform indexes, resume after cuts, and every bad registry of issue 19
//! (through `Front`, a relay in the test that answers, cuts or floods for the registry).
//! The registry client and the store are driven as libraries here; `berth pull`/`push` wrap them.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_registry::auth::{AuthFile, Creds};
use berth_registry::pull::{self, Event, LayerState};
use berth_registry::push::{self, BlobState, PushEvent};
use berth_registry::Options;
use berth_runtime::error::Kind;
use berth_runtime::image::platform::Platform;
use berth_runtime::image::reference::Reference;
use berth_runtime::image::store::Store;
use berth_tests::registry::{http_response, Action, Auth, Front, Registry, TokenServer, TOKEN_PASSWORD, TOKEN_USER};
use berth_tests::{fixtures, hex_of, require_root, run, sha256_digest, Image, Root, Stdin};

fn opts() -> Options {
    Options { attempts: 3, max_backoff: Duration::from_millis(300), io_timeout: Duration::from_secs(20), ..Options::default() }
}

fn quiet(_: &Event) {}

fn pull_ref(root: &Root, o: &Options, name: &str, platform: Option<&str>) -> berth_runtime::Result<pull::Pulled> {
    let store = Store::open(root.path()).expect("open store");
    let r = Reference::parse(name)?;
    let p = platform.map(|p| Platform::parse(p).expect("platform"));
    let res = pull::pull(&store, o, &r, p.as_ref(), &quiet);
    root.assert_tmp_clean(&format!("pull {name}"));
    res
}

/// The store holds `img` under `name` with the fixture's layers, and checks out whole.
fn assert_pulled(root: &Root, img: &Image, name: &str) {
    let store = Store::open(root.path()).expect("open store");
    let db = store.db().expect("read images.db");
    let rec = db
        .images
        .iter()
        .find(|i| i.id.to_string() == img.id)
        .unwrap_or_else(|| panic!("store lacks image {} after pulling {name}", img.id));
    let diff: Vec<String> = rec.layers.iter().map(|d| d.to_string()).collect();
    assert_eq!(diff, img.diff_ids, "layers of {name}");
    assert!(
        rec.tags.iter().any(|t| t == name) || rec.digests.iter().any(|d| d == name),
        "{name} not among {:?} {:?}",
        rec.tags,
        rec.digests
    );
    assert_eq!(store.verify().expect("verify"), Vec::<String>::new(), "store verify after pulling {name}");
}

fn images_db(root: &Root) -> Option<Vec<u8>> {
    fs::read(root.path().join("images.db")).ok()
}

fn downloads(root: &Root) -> Vec<String> {
    fs::read_dir(root.path().join("downloads"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Expects a pull error with every word; the store unchanged (same images.db) and no scratch.
fn assert_pull_fails(root: &Root, o: &Options, name: &str, platform: Option<&str>, words: &[&str]) -> String {
    let before = images_db(root);
    let e = match pull_ref(root, o, name, platform) {
        Ok(p) => panic!("pull {name} succeeded ({}), expected an error with {words:?}", p.id),
        Err(e) => e.to_string(),
    };
    assert!(!e.contains('\n'), "one-line error: {e:?}");
    for w in words {
        assert!(e.contains(w), "pull {name}: error {e:?} lacks {w:?}");
    }
    assert_eq!(images_db(root), before, "images.db changed by a failed pull of {name}");
    e
}

fn put_archive(reg: &Registry, archive: &Path, dest: &str) {
    reg.put(&format!("docker-archive:{}", archive.display()), dest);
}

fn blob_path(path: &str) -> Option<&str> {
    path.split("/blobs/").nth(1).filter(|d| d.starts_with("sha256:"))
}

// ---------------------------------------------------------------------------------------------
// Pulls that work

#[test]
fn pull_plain_http_from_loopback_and_layers_are_not_fetched_twice() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.busybox.path, "library/busybox:1");
    put_archive(&reg, &f.layered.path, "team/layered:v2");
    let root = Root::new();
    let o = opts();
    let name = format!("{}/team/layered:v2", reg.host);
    let p = pull_ref(&root, &o, &name, None).expect("pull layered");
    assert!(p.changed);
    assert_eq!(p.id.to_string(), f.layered.image().id);
    assert_pulled(&root, f.layered.image(), &name);
    let (_, digest) = reg.raw_manifest("team/layered:v2");
    assert_eq!(p.digest.to_string(), digest, "manifest digest reported");
    assert!(downloads(&root).is_empty(), "downloads left after a pull: {:?}", downloads(&root));

    // Again: nothing changes, no layer is fetched.
    let p = pull_ref(&root, &o, &name, None).expect("pull layered again");
    assert!(!p.changed, "second pull must say up to date");
    assert_eq!(p.fetched, 0);

    // busybox shares layered's bottom layer: that one is not fetched again.
    let states = Mutex::new(Vec::new());
    let store = Store::open(root.path()).expect("open store");
    let r = Reference::parse(&format!("{}/library/busybox:1", reg.host)).expect("ref");
    let record = |e: &Event| {
        if let Event::Layer { state, .. } = e {
            states.lock().expect("states").push(state.clone());
        }
    };
    let p = pull::pull(&store, &o, &r, None, &record).expect("pull busybox");
    assert_eq!(p.fetched, 0, "busybox's one layer is layered's first");
    assert_eq!(states.into_inner().expect("states"), vec![LayerState::Exists]);
    assert_pulled(&root, f.busybox.image(), &format!("{}/library/busybox:1", reg.host));

    // By digest: recorded as repo@digest, no tag.
    let root2 = Root::new();
    let by_digest = format!("{}/team/layered@{digest}", reg.host);
    let p = pull_ref(&root2, &o, &by_digest, None).expect("pull by digest");
    assert_eq!(p.name, by_digest);
    assert_pulled(&root2, f.layered.image(), &by_digest);
}

#[test]
fn pull_oci_zstd_and_uncompressed_layers() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    reg.put(&format!("oci-archive:{}", f.layered_oci_zstd.path.display()), "oci/zstd:1");
    reg.put(&format!("oci-archive:{}", f.layered_oci_plain.path.display()), "oci/plain:1");
    let (m, _) = reg.raw_manifest("oci/zstd:1");
    assert!(String::from_utf8_lossy(&m).contains("zstd"), "registry holds zstd layers: {}", String::from_utf8_lossy(&m));
    let root = Root::new();
    for (name, img) in [("oci/zstd:1", f.layered_oci_zstd.image()), ("oci/plain:1", f.layered_oci_plain.image())] {
        let full = format!("{}/{name}", reg.host);
        pull_ref(&root, &opts(), &full, None).unwrap_or_else(|e| panic!("pull {full}: {e}"));
        assert_pulled(&root, img, &full);
    }
}

#[test]
fn pull_over_tls_needs_the_ca_from_certs_d() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(true, Auth::None);
    put_archive(&reg, &f.tiny.path, "tiny:1");
    let root = Root::new();
    let name = format!("{}/tiny:1", reg.host);
    let mut o = opts();
    o.cert_dirs = vec![];
    assert_pull_fails(&root, &o, &name, None, &["TLS", "127.0.0.1", "certificate"]);
    o.cert_dirs = vec![reg.certs_d.clone()];
    pull_ref(&root, &o, &name, None).expect("pull over TLS with the CA in certs.d");
    assert_pulled(&root, f.tiny.image(), &name);
    // A board whose clock says 1970 still pulls: dates are checked against the floor.
    let root2 = Root::new();
    let o = Options { floor: now_secs(), ..o };
    pull_ref(&root2, &o, &name, None).expect("pull with a clock floor");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[test]
fn pull_with_basic_auth_and_login_file() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(true, Auth::Htpasswd { user: "alice".into(), password: "s3cret".into() });
    put_archive(&reg, &f.tiny.path, "private/tiny:1");
    let root = Root::new();
    let name = format!("{}/private/tiny:1", reg.host);
    let mut o = opts();
    o.cert_dirs = vec![reg.certs_d.clone()];
    assert_pull_fails(&root, &o, &name, None, &["unauthorized", "berth login"]);

    let auth = root.scratch().join("config.json");
    o.auth_file = Some(auth.clone());
    // Wrong credentials: login refuses them; a pull with them fails.
    let mut r = berth_registry::Registry::new(&reg.host, &o).expect("registry");
    r.set_creds(Some(Creds { user: "alice".into(), password: "wrong".into() }));
    let e = r.check_login().expect_err("wrong password must fail").to_string();
    assert!(e.contains("401"), "{e}");
    AuthFile::new(&auth).set(&reg.host, &Creds { user: "alice".into(), password: "wrong".into() }).expect("store creds");
    assert_pull_fails(&root, &o, &name, None, &["pull access denied", "401"]);

    r.set_creds(Some(Creds { user: "alice".into(), password: "s3cret".into() }));
    r.check_login().expect("right password");
    AuthFile::new(&auth).set(&reg.host, &Creds { user: "alice".into(), password: "s3cret".into() }).expect("store creds");
    let meta = fs::metadata(&auth).expect("stat config.json");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600, "credentials file mode");
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&auth).expect("read config.json")).expect("config.json is JSON");
    assert!(v["auths"][&reg.host]["auth"].is_string(), "Docker's shape: {v}");
    pull_ref(&root, &o, &name, None).expect("pull with basic auth");
    assert_pulled(&root, f.tiny.image(), &name);
    assert!(AuthFile::new(&auth).remove(&reg.host).expect("logout"));
    assert_eq!(AuthFile::new(&auth).get(&reg.host).expect("read"), None);
}

#[test]
fn pull_and_push_with_bearer_tokens() {
    require_root();
    let f = fixtures();
    let tokens = TokenServer::start();
    let reg = Registry::start(false, Auth::Token { realm: tokens.realm(), cert: tokens.cert.clone() });
    put_archive(&reg, &f.tiny.path, "tok/tiny:1");
    let root = Root::new();
    let name = format!("{}/tok/tiny:1", reg.host);
    pull_ref(&root, &opts(), &name, None).expect("anonymous pull with a bearer token");
    assert_pulled(&root, f.tiny.image(), &name);
    let reqs = tokens.requests.lock().expect("token log").clone();
    assert!(
        reqs.iter().any(|(q, creds)| q.contains("scope=repository%3Atok%2Ftiny%3Apull") && q.contains("service=berth-test") && !creds),
        "token requested for the pull scope, without credentials: {reqs:?}"
    );

    // Push needs credentials; with them the token carries push.
    let mut o = opts();
    let store = Store::open(root.path()).expect("store");
    let target = format!("{}/tok/pushed:1", reg.host);
    store.tag(&name, &target).expect("tag");
    let e = push::push(&store, &o, &target, &|_| {}).expect_err("anonymous push must fail").to_string();
    assert!(e.contains("401") || e.contains("403") || e.contains("denied") || e.contains("unauthorized"), "{e}");
    let auth = root.scratch().join("config.json");
    AuthFile::new(&auth).set(&reg.host, &Creds { user: TOKEN_USER.into(), password: "wrong".into() }).expect("creds");
    o.auth_file = Some(auth.clone());
    let e = push::push(&store, &o, &target, &|_| {}).expect_err("wrong credentials").to_string();
    assert!(e.contains("wrong credentials") && e.contains("401"), "{e}");
    AuthFile::new(&auth).set(&reg.host, &Creds { user: TOKEN_USER.into(), password: TOKEN_PASSWORD.into() }).expect("creds");
    let pushed = push::push(&store, &o, &target, &|_| {}).expect("push with a token");
    let (_, digest) = reg.raw_manifest("tok/pushed:1");
    assert_eq!(pushed.digest.to_string(), digest);
}

/// A Docker manifest list over three images, plus an attestation entry as buildx adds one.
fn multi_platform(reg: &Registry) -> (String, [&'static Image; 3]) {
    let f = fixtures();
    put_archive(reg, &f.busybox.path, "multi/app:v7");
    put_archive(reg, &f.tiny.path, "multi/app:v6");
    put_archive(reg, &f.layered.path, "multi/app:arm64");
    let entry = |tag: &str, plat: serde_json::Value| {
        let (m, d) = reg.raw_manifest(&format!("multi/app:{tag}"));
        serde_json::json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": d, "size": m.len(), "platform": plat})
    };
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            entry("arm64", serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"})),
            entry("v7", serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v7"})),
            entry("v6", serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"})),
            entry("v6", serde_json::json!({"os": "unknown", "architecture": "unknown"})),
        ]
    });
    let body = serde_json::to_vec(&list).expect("encode list");
    reg.put_manifest("multi/app", "1", "application/vnd.docker.distribution.manifest.list.v2+json", &body);
    (sha256_digest(&body), [f.busybox.image(), f.tiny.image(), f.layered.image()])
}

#[test]
fn pull_picks_the_platform_from_a_manifest_list() {
    require_root();
    let reg = Registry::start(false, Auth::None);
    let (list_digest, [v7, v6, arm64]) = multi_platform(&reg);
    let name = format!("{}/multi/app:1", reg.host);
    for (plat, img) in [("linux/arm/v7", v7), ("linux/arm/v6", v6), ("linux/arm64", arm64), ("linux/arm64/v8", arm64), ("linux/arm", v7)] {
        let root = Root::new();
        let p = pull_ref(&root, &opts(), &name, Some(plat)).unwrap_or_else(|e| panic!("pull --platform {plat}: {e}"));
        assert_eq!(p.id.to_string(), img.id, "--platform {plat}");
        assert_eq!(p.digest.to_string(), list_digest, "the list's digest is the pulled digest");
        assert_pulled(&root, img, &name);
    }
    let root = Root::new();
    let e = assert_pull_fails(
        &root,
        &opts(),
        &name,
        Some("linux/riscv64"),
        &["no matching manifest for linux/riscv64", "linux/arm/v7", "linux/arm/v6", "linux/arm64/v8"],
    );
    assert!(!e.contains("unknown"), "attestation entries are not offered as platforms: {e}");
    // An armv5 board cannot run v6/v7 images.
    assert_pull_fails(&root, &opts(), &name, Some("linux/arm/v5"), &["no matching manifest"]);
}

// ---------------------------------------------------------------------------------------------
// Resume

#[test]
fn pull_resumes_after_connections_cut_at_random_points() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.big.path, "big:1");
    let seed = AtomicU64::new(0x9e37_79b9_7f4a_7c15 ^ now_secs());
    let cuts = Arc::new(AtomicUsize::new(0));
    let c2 = cuts.clone();
    let front = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| {
            if r.method == "GET" && blob_path(&r.path).is_some() {
                // xorshift: cut between 64 KiB and 2 MiB into each answer.
                let mut x = seed.load(Ordering::SeqCst);
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                seed.store(x, Ordering::SeqCst);
                c2.fetch_add(1, Ordering::SeqCst);
                Action::Cut(64 * 1024 + x % (2 << 20))
            } else {
                Action::Forward
            }
        }),
    );
    let root = Root::new();
    let name = format!("{}/big:1", front.host());
    let p = pull_ref(&root, &opts(), &name, None).expect("pull through a cutting relay");
    assert!(cuts.load(Ordering::SeqCst) > 3, "the relay cut the layers several times");
    assert_pulled(&root, f.big.image(), &name);
    // Nothing fetched twice: each retry asked only for what was missing.
    let (m, _) = reg.raw_manifest("big:1");
    let v: serde_json::Value = serde_json::from_slice(&m).expect("manifest");
    let total: u64 = v["layers"].as_array().expect("layers").iter().map(|l| l["size"].as_u64().expect("size")).sum();
    assert_eq!(p.fetched, total, "bytes fetched vs the layers' sizes");
}

#[test]
fn pull_resumes_from_a_kept_partial_blob_and_rechecks_it() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.big.path, "big:1");
    let (m, _) = reg.raw_manifest("big:1");
    let v: serde_json::Value = serde_json::from_slice(&m).expect("manifest");
    let layers = v["layers"].as_array().expect("layers").clone();
    let (big_digest, big_size) = layers
        .iter()
        .map(|l| (l["digest"].as_str().expect("digest").to_string(), l["size"].as_u64().expect("size")))
        .max_by_key(|l| l.1)
        .expect("a layer");
    let blob =
        run(std::process::Command::new("curl").args(["-sSf", &format!("http://{}/v2/big/blobs/{big_digest}", reg.host)]), Stdin::Null)
            .stdout;
    assert_eq!(blob.len() as u64, big_size);
    let total: u64 = layers.iter().map(|l| l["size"].as_u64().expect("size")).sum();
    let name = format!("{}/big:1", reg.host);

    // As a kill -9 or a power cut leaves it: the first half kept.
    let root = Root::new();
    fs::create_dir_all(root.path().join("downloads")).expect("mkdir downloads");
    let half = blob.len() / 2;
    fs::write(root.path().join("downloads").join(format!("{}.part", hex_of(&big_digest))), &blob[..half]).expect("write part");
    let p = pull_ref(&root, &opts(), &name, None).expect("pull resuming a kept half");
    assert_eq!(p.fetched, total - half as u64, "only the missing half is fetched");
    assert_pulled(&root, f.big.image(), &name);
    assert!(downloads(&root).is_empty(), "{:?}", downloads(&root));

    // A kept part that is damaged (a torn write at a power cut): the whole blob fails its digest,
    // and the layer is fetched once more from the start in the same pull.
    let root = Root::new();
    fs::create_dir_all(root.path().join("downloads")).expect("mkdir downloads");
    let mut bad = blob[..half].to_vec();
    bad[half / 2] ^= 0xff;
    let part = root.path().join("downloads").join(format!("{}.part", hex_of(&big_digest)));
    fs::write(&part, &bad).expect("write part");
    let p = pull_ref(&root, &opts(), &name, None).expect("pull over a damaged part");
    assert_eq!(p.fetched, total - half as u64 + big_size, "the rest, then the damaged layer whole");
    assert_pulled(&root, f.big.image(), &name);
    assert!(downloads(&root).is_empty(), "{:?}", downloads(&root));
}

// ---------------------------------------------------------------------------------------------
// Bad registries: a clear one-line error, the store unchanged

#[test]
fn pull_from_a_registry_that_is_down() {
    require_root();
    let root = Root::new();
    let port = berth_tests::mqtt::free_port();
    assert_pull_fails(&root, &opts(), &format!("127.0.0.1:{port}/app:1"), None, &[&format!("127.0.0.1:{port}"), "connect"]);
}

#[test]
fn pull_refuses_plain_http_to_a_non_loopback_registry_and_bad_names() {
    let root = Root::new();
    let e = match Reference::parse("Bad/Name:x") {
        Err(e) => e.to_string(),
        Ok(r) => panic!("parsed {r:?}"),
    };
    assert!(e.contains("invalid reference format"), "{e}");
    let o = Options { insecure: vec![], ..opts() };
    let e = berth_registry::Registry::at("192.0.2.1:5000", "http://192.0.2.1:5000", &o).err().expect("plain HTTP refused").to_string();
    assert!(e.contains("plain HTTP refused"), "{e}");
    drop(root);
}

fn status_front(
    reg: &Registry,
    status: u16,
    reason: &'static str,
    extra: &'static [(&'static str, &'static str)],
    only_blobs: bool,
) -> Front {
    let body = format!(r#"{{"errors":[{{"code":"TEST","message":"answered {status} by the test"}}]}}"#).into_bytes();
    Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| {
            if r.path == "/v2/" || (only_blobs && blob_path(&r.path).is_none()) {
                Action::Forward
            } else {
                Action::Respond(http_response(status, reason, extra, &body))
            }
        }),
    )
}

#[test]
fn pull_reports_401_403_404_500_and_persistent_429() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.tiny.path, "tiny:1");
    let root = Root::new();
    let o = opts();
    assert_pull_fails(&root, &o, &format!("{}/nothere:1", reg.host), None, &["manifest for", "nothere:1", "not found", "404"]);
    for (status, reason, words) in [
        (401u16, "Unauthorized", &["401", "pull access denied"][..]),
        (403, "Forbidden", &["403", "pull access denied"][..]),
        (500, "Internal Server Error", &["500", "answered 500 by the test"][..]),
        (429, "Too Many Requests", &["429", "too many requests"][..]),
    ] {
        let front = status_front(&reg, status, reason, &[("Retry-After", "0")], false);
        assert_pull_fails(&root, &o, &format!("{}/tiny:1", front.host()), None, words);
        if status == 429 {
            let n = front.requests().iter().filter(|r| r.contains("/manifests/")).count();
            assert_eq!(n, o.attempts as usize, "429 retried up to the attempts");
        }
    }
    // A blob that answers 500: the image does not appear either.
    let front = status_front(&reg, 500, "Internal Server Error", &[], true);
    assert_pull_fails(&root, &o, &format!("{}/tiny:1", front.host()), None, &["500", "config"]);
}

#[test]
fn pull_waits_as_retry_after_says_then_succeeds() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.tiny.path, "tiny:1");
    let refused = Arc::new(AtomicUsize::new(0));
    let r2 = refused.clone();
    let front = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| {
            if blob_path(&r.path).is_some() && r2.fetch_add(1, Ordering::SeqCst) < 2 {
                let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
                Action::Respond(http_response(429, "Too Many Requests", &[("Retry-After", "1")], body))
            } else {
                Action::Forward
            }
        }),
    );
    let root = Root::new();
    let name = format!("{}/tiny:1", front.host());
    pull_ref(&root, &opts(), &name, None).expect("pull after two 429s");
    assert_pulled(&root, f.tiny.image(), &name);
    assert_eq!(refused.load(Ordering::SeqCst), 2 + 2, "two refused, then config and layer served");
}

#[test]
fn pull_refuses_blobs_and_manifests_whose_digest_does_not_match() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.tiny.path, "tiny:1");
    let (m, digest) = reg.raw_manifest("tiny:1");
    let v: serde_json::Value = serde_json::from_slice(&m).expect("manifest");
    let layer = v["layers"][0]["digest"].as_str().expect("layer digest").to_string();
    let size = v["layers"][0]["size"].as_u64().expect("size") as usize;
    // The layer's bytes with one flipped.
    let flipped = {
        let l = layer.clone();
        let mut blob =
            run(std::process::Command::new("curl").args(["-sSf", &format!("http://{}/v2/tiny/blobs/{l}", reg.host)]), Stdin::Null).stdout;
        assert_eq!(blob.len(), size);
        blob[size / 2] ^= 1;
        blob
    };
    let l2 = layer.clone();
    let front = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| if r.path.ends_with(&l2) { Action::Respond(http_response(200, "OK", &[], &flipped)) } else { Action::Forward }),
    );
    let root = Root::new();
    assert_pull_fails(&root, &opts(), &format!("{}/tiny:1", front.host()), None, &[&layer, "content digest"]);
    assert!(downloads(&root).is_empty(), "a blob that failed its digest is not kept: {:?}", downloads(&root));

    // A manifest served for a digest it does not have.
    let mut tampered = m.clone();
    tampered.extend_from_slice(b" ");
    let front = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| {
            if r.path.contains("/manifests/") {
                Action::Respond(http_response(
                    200,
                    "OK",
                    &[("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")],
                    &tampered,
                ))
            } else {
                Action::Forward
            }
        }),
    );
    assert_pull_fails(&root, &opts(), &format!("{}/tiny@{digest}", front.host()), None, &["does not match the requested", &digest]);
}

#[test]
fn pull_bounds_truncated_and_endless_blobs_by_the_manifest() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.big.path, "big:1");
    let name = |front: &Front| format!("{}/big:1", front.host());
    // Endless: cut off at the declared size and refused.
    let endless = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(|r| if blob_path(&r.path).is_some() && r.path.contains("sha256") { Action::Endless } else { Action::Forward }),
    );
    let root = Root::new();
    assert_pull_fails(&root, &opts(), &name(&endless), None, &["longer than"]);
    assert!(
        downloads(&root)
            .iter()
            .all(|d| !d.ends_with(".part") || fs::metadata(root.path().join("downloads").join(d)).map(|m| m.len()).unwrap_or(0) == 0),
        "no endless part kept"
    );
    // Truncated: every answer stops after 100 KiB and no more bytes come; the pull gives up
    // after its attempts with what it has kept, and resumes from there against a good registry.
    let cut_once = Arc::new(AtomicBool::new(false));
    let c2 = cut_once.clone();
    let truncating = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| {
            if blob_path(&r.path).is_some() && r.head.contains("Range:") {
                Action::Cut(0)
            } else if blob_path(&r.path).is_some() {
                c2.store(true, Ordering::SeqCst);
                Action::Cut(100 * 1024)
            } else {
                Action::Forward
            }
        }),
    );
    let e = assert_pull_fails(&root, &opts(), &name(&truncating), None, &["kept for the next pull"]);
    assert!(cut_once.load(Ordering::SeqCst), "{e}");
    assert!(downloads(&root).iter().any(|d| d.ends_with(".part")), "the kept bytes stay: {:?}", downloads(&root));
    let p = pull_ref(&root, &opts(), &format!("{}/big:1", reg.host), None).expect("resume against the registry itself");
    assert_pulled(&root, f.big.image(), &format!("{}/big:1", reg.host));
    let (m, _) = reg.raw_manifest("big:1");
    let v: serde_json::Value = serde_json::from_slice(&m).expect("manifest");
    let total: u64 = v["layers"].as_array().expect("layers").iter().map(|l| l["size"].as_u64().expect("size")).sum();
    assert!(p.fetched < total, "resumed: fetched {} of {total}", p.fetched);
}

#[test]
fn pull_follows_a_redirect_to_another_host_without_the_credentials() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.tiny.path, "tiny:1");
    // The "CDN": another loopback address, relaying to the registry and logging what it got.
    let cdn = Front::start("127.0.0.2", reg.port, Arc::new(|_| Action::Forward));
    let cdn_host = cdn.host();
    let auth_header = format!("Basic {}", berth_registry::auth::base64(b"bob:pw"));
    let a2 = auth_header.clone();
    // The registry's face: basic auth, and blobs redirected to the CDN.
    let front = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| {
            let authed = berth_tests::registry::header_of(&r.head, "authorization") == Some(a2.as_str());
            if !authed {
                return Action::Respond(http_response(401, "Unauthorized", &[("WWW-Authenticate", "Basic realm=\"test\"")], b"{}"));
            }
            if blob_path(&r.path).is_some() {
                let loc = format!("http://{cdn_host}{}", r.path);
                return Action::Respond(http_response(307, "Temporary Redirect", &[("Location", &loc)], b""));
            }
            Action::Forward
        }),
    );
    let root = Root::new();
    let auth = root.scratch().join("config.json");
    AuthFile::new(&auth).set(&front.host(), &Creds { user: "bob".into(), password: "pw".into() }).expect("creds");
    let o = Options { auth_file: Some(auth), ..opts() };
    let name = format!("{}/tiny:1", front.host());
    pull_ref(&root, &o, &name, None).expect("pull with blobs redirected");
    assert_pulled(&root, f.tiny.image(), &name);
    let cdn_reqs = cdn.requests();
    assert_eq!(cdn_reqs.len(), 2, "config and layer fetched from the CDN: {cdn_reqs:?}");
    for r in &cdn_reqs {
        assert!(berth_tests::registry::header_of(r, "authorization").is_none(), "credentials forwarded to another host: {r}");
    }
}

#[test]
fn pull_of_a_foreign_layer_that_cannot_be_fetched() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.tiny.path, "tiny:1");
    let (m, _) = reg.raw_manifest("tiny:1");
    let mut v: serde_json::Value = serde_json::from_slice(&m).expect("manifest");
    let dead = berth_tests::mqtt::free_port();
    let missing = sha256_digest(b"not in the registry");
    v["layers"][0] = serde_json::json!({
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": missing, "size": 1234, "urls": [format!("http://127.0.0.1:{dead}/layer.tar.gz")]
    });
    let body = serde_json::to_vec(&v).expect("encode");
    let front = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| {
            if r.path.contains("/manifests/") {
                Action::Respond(http_response(
                    200,
                    "OK",
                    &[("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")],
                    &body,
                ))
            } else {
                Action::Forward
            }
        }),
    );
    let root = Root::new();
    // The config's diff_id is the real layer's, so the store does not hold it: a fetch is needed.
    assert_pull_fails(&root, &opts(), &format!("{}/tiny:1", front.host()), None, &["foreign", &missing, &format!("127.0.0.1:{dead}")]);
}

#[test]
fn pull_onto_a_full_disk_leaves_the_store_as_it_was() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.tiny.path, "tiny:1");
    put_archive(&reg, &f.big.path, "big:1");
    let root = Root::on_tmpfs("6m");
    pull_ref(&root, &opts(), &format!("{}/tiny:1", reg.host), None).expect("tiny fits");
    let e = assert_pull_fails(&root, &opts(), &format!("{}/big:1", reg.host), None, &["no space left on device"]);
    let store = Store::open(root.path()).expect("store");
    let err_kind = pull::pull(&store, &opts(), &Reference::parse(&format!("{}/big:1", reg.host)).expect("ref"), None, &quiet)
        .expect_err("still full")
        .kind();
    assert_eq!(err_kind, Kind::NoSpace, "{e}");
    assert!(downloads(&root).is_empty(), "a full disk gives its partial download back: {:?}", downloads(&root));
    assert_pulled(&root, f.tiny.image(), &format!("{}/tiny:1", reg.host));
}

// ---------------------------------------------------------------------------------------------
// Push

#[test]
fn push_then_skopeo_inspect_and_podman_pull() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    let root = Root::new();
    let store = Store::open(root.path()).expect("store");
    store.load(fs::File::open(&f.layered.path).expect("open layered"), None).expect("load layered");
    let target = format!("{}/pushed/layered:1", reg.host);
    store.tag("layered:latest", &target).expect("tag");
    let events = Mutex::new(Vec::new());
    let record = |e: &PushEvent| events.lock().expect("events").push(e.clone());
    let pushed = push::push(&store, &opts(), &target, &record).expect("push");
    let states: Vec<BlobState> = events
        .into_inner()
        .expect("events")
        .into_iter()
        .filter_map(|e| match e {
            PushEvent::Blob { state, .. } if state != BlobState::Pushing => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(states, vec![BlobState::Pushed; 3]);
    let (raw, digest) = reg.raw_manifest("pushed/layered:1");
    assert_eq!(pushed.digest.to_string(), digest);
    assert_eq!(pushed.size, raw.len());
    let out = run(std::process::Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{target}")]), Stdin::Null);
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo inspect JSON");
    let m: serde_json::Value = serde_json::from_slice(&raw).expect("manifest JSON");
    let types: Vec<&str> = m["layers"].as_array().expect("layers").iter().filter_map(|l| l["mediaType"].as_str()).collect();
    assert_eq!(types, vec!["application/vnd.oci.image.layer.v1.tar+gzip"; 3], "layers go up gzip-compressed");
    let layers: Vec<&str> = v["Layers"].as_array().expect("Layers").iter().filter_map(|l| l.as_str()).collect();
    for (blob, diff) in layers.iter().zip(&f.layered.image().diff_ids) {
        assert_ne!(blob, diff, "a compressed blob's digest is not its diff_id");
    }
    // The config keeps the diff_ids: skopeo's view of it is the image's own.
    let out = run(
        std::process::Command::new("skopeo").args(["inspect", "--config", "--raw", "--tls-verify=false", &format!("docker://{target}")]),
        Stdin::Null,
    );
    assert_eq!(sha256_digest(&out.stdout), f.layered.image().id, "the pushed config is the image's");
    // The pushed digest is recorded, as docker push does.
    let db = store.db().expect("db");
    assert!(db.images.iter().any(|i| i.digests.contains(&format!("{}/pushed/layered@{digest}", reg.host))));

    // Podman pulls what berth pushed and sees the same image.
    let podman = berth_tests::fixtures::Podman::new(&root.scratch().join("podman"));
    podman.ok(&["pull", "--quiet", "--tls-verify=false", &target]);
    let id = podman.ok(&["image", "inspect", "--format", "{{.Id}}", &target]);
    assert_eq!(format!("sha256:{}", id.trim()), f.layered.image().id, "podman's image ID of the pushed image");

    // Again: every blob exists. To another repository: mounted from the first.
    let again = Mutex::new(Vec::new());
    push::push(&store, &opts(), &target, &|e| again.lock().expect("again").push(e.clone())).expect("push again");
    assert!(again.into_inner().expect("again").iter().all(|e| !matches!(e, PushEvent::Blob { state: BlobState::Pushed, .. })));
    let other = format!("{}/other/layered:1", reg.host);
    store.tag("layered:latest", &other).expect("tag other");
    let mounted = Mutex::new(Vec::new());
    push::push(&store, &opts(), &other, &|e| mounted.lock().expect("m").push(e.clone())).expect("push other");
    let m = mounted.into_inner().expect("m");
    assert!(
        m.iter().filter(|e| matches!(e, PushEvent::Blob { state: BlobState::Mounted(from), .. } if from == "pushed/layered")).count() == 3,
        "layers mounted from pushed/layered: {m:?}"
    );
}

#[test]
fn push_in_chunks_resumes_cut_uploads_and_pulls_back_the_same_image() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    let patches = Arc::new(AtomicUsize::new(0));
    let p2 = patches.clone();
    // The answers to the 2nd and 5th PATCH are cut: the registry took the bytes, berth does not
    // know it, asks where the upload stands and goes on.
    let front = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| {
            if r.method == "PATCH" {
                let n = p2.fetch_add(1, Ordering::SeqCst) + 1;
                if n == 2 || n == 5 {
                    return Action::Cut(0);
                }
            }
            Action::Forward
        }),
    );
    let root = Root::new();
    let store = Store::open(root.path()).expect("store");
    store.load(fs::File::open(&f.big.path).expect("open big"), None).expect("load big");
    let target = format!("{}/chunked/big:1", front.host());
    store.tag(&f.big.image().tags[0], &target).expect("tag");
    let o = Options { chunk_size: Some(256 * 1024), ..opts() };
    let pushed = push::push(&store, &o, &target, &|_| {}).expect("push in chunks through a cutting relay");
    assert!(patches.load(Ordering::SeqCst) > 5, "the layers went up in several PATCHes");
    let log = front.requests();
    assert!(
        log.iter().any(|h| h.starts_with("GET ") && h.contains("/blobs/uploads/")),
        "a cut upload was resumed from the registry's Range: {log:?}"
    );
    let (_, digest) = reg.raw_manifest("chunked/big:1");
    assert_eq!(pushed.digest.to_string(), digest);

    // skopeo copies it out and checks every blob against the manifest.
    let dir = root.scratch().join("copied");
    let out = run(
        std::process::Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}/chunked/big:1", reg.host),
            &format!("oci:{}:big", dir.display()),
        ]),
        Stdin::Null,
    );
    assert!(out.status.success(), "skopeo copy of the pushed image: {}", String::from_utf8_lossy(&out.stderr));
    // berth pulls it back into an empty store: the same image ID, every layer checked.
    let back = Root::new();
    let name = format!("{}/chunked/big:1", reg.host);
    pull_ref(&back, &opts(), &name, None).expect("pull back");
    assert_pulled(&back, f.big.image(), &name);
    // A second push finds every blob there (the compressed digests were remembered).
    let again = Mutex::new(Vec::new());
    push::push(&store, &o, &target, &|e| again.lock().expect("again").push(e.clone())).expect("push again");
    let again = again.into_inner().expect("again");
    assert!(!again.iter().any(|e| matches!(e, PushEvent::Blob { state: BlobState::Pushed, .. })), "{again:?}");
}

// ---------------------------------------------------------------------------------------------
// The CLI: berth pull / push / login / logout / image history

fn berth_with_config(root: &Root, config: &Path, args: &[&str], stdin: Stdin) -> std::process::Output {
    let mut c = root.command(args);
    c.env("BERTH_CONFIG", config);
    let out = run(&mut c, stdin);
    root.assert_tmp_clean(&format!("berth {}", args.join(" ")));
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_pull_prints_as_docker_and_history_lists_the_config() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.layered.path, "team/layered:v2");
    put_archive(&reg, &f.busybox.path, "library/busybox:1");
    let root = Root::new();
    let name = format!("{}/team/layered:v2", reg.host);
    let out = root.ok(&["pull", &name]);
    let (_, digest) = reg.raw_manifest("team/layered:v2");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("v2: Pulling from team/layered"), "{out}");
    assert_eq!(lines.iter().filter(|l| l.ends_with(": Pull complete")).count(), 3, "{out}");
    assert!(lines.contains(&format!("Digest: {digest}").as_str()), "{out}");
    assert!(lines.contains(&format!("Status: Downloaded newer image for {name}").as_str()), "{out}");
    assert_eq!(lines.last().copied(), Some(name.as_str()), "{out}");
    let out = root.ok(&["pull", &name]);
    assert!(out.contains(&format!("Status: Image is up to date for {name}")), "{out}");
    let busy = format!("{}/library/busybox:1", reg.host);
    let out = root.ok(&["image", "pull", "-q", &busy]);
    assert_eq!(out, format!("{busy}\n"), "-q prints the name only");
    let ids = root.ok(&["images", "-q", "--no-trunc"]);
    assert!(ids.contains(&f.layered.image().id) && ids.contains(&f.busybox.image().id), "{ids}");

    // history: one row per config history entry, newest first, IDs as Docker shows them.
    let hist = f.layered.image().config["history"].as_array().map(|a| a.len()).unwrap_or(0);
    let q = root.ok(&["history", "-q", &name]);
    let qlines: Vec<&str> = q.lines().collect();
    assert_eq!(qlines.len(), hist.max(3), "{q}");
    assert_eq!(qlines[0], &hex_of(&f.layered.image().id)[..12]);
    assert!(qlines[1..].iter().all(|l| *l == "<missing>"), "{q}");
    let table = root.ok(&["image", "history", &name]);
    let header = table.lines().next().unwrap_or("");
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(header.contains(col), "{header}");
    }
    let json = root.ok(&["history", "--no-trunc", "--format", "json", &name]);
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).expect("history JSON line")).collect();
    assert_eq!(rows[0]["ID"], f.layered.image().id.as_str());
    let template = root.ok(&["history", "--format", "{{.ID}} {{.Size}}", &name]);
    assert!(template.lines().next().unwrap_or("").starts_with(&hex_of(&f.layered.image().id)[..12]), "{template}");

    // Bad names and unknown images: Docker's words, exit 1.
    let (code, err) = root.fail(&["pull", "Bad Name"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error: invalid reference format"), "{err}");
    let (code, err) = root.fail(&["pull", &format!("{}/team/nothere:1", reg.host)]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, _) = root.fail(&["pull"]);
    assert_eq!(code, 125, "missing argument is a usage error");
}

#[test]
fn cli_pull_no_matching_platform_names_the_ones_there() {
    require_root();
    let reg = Registry::start(false, Auth::None);
    multi_platform(&reg);
    let root = Root::new();
    let name = format!("{}/multi/app:1", reg.host);
    let before = images_db(&root);
    let (code, err) = root.fail(&["pull", "--platform", "linux/s390x", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("no matching manifest for linux/s390x") && err.contains("linux/arm/v7, linux/arm/v6"), "{err}");
    assert_eq!(images_db(&root), before);
    let out = root.ok(&["pull", "--platform", "linux/arm/v6", "-q", &name]);
    assert_eq!(out.trim(), name);
    assert_eq!(root.ok(&["images", "-q", "--no-trunc"]).trim(), fixtures().tiny.image().id);
}

#[test]
fn cli_login_logout_and_push_over_tls() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(true, Auth::Htpasswd { user: "alice".into(), password: "s3cret".into() });
    let root = Root::new();
    let config = root.scratch().join("berth.toml");
    fs::write(&config, format!("[registry]\ncerts_dir = \"{}\"\n", reg.certs_d.display())).expect("write berth.toml");
    let out =
        berth_with_config(&root, &config, &["login", "-u", "alice", "--password-stdin", &reg.host], Stdin::Bytes(b"wrong\n".to_vec()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    assert!(!root.path().join("config.json").exists(), "failed login stores nothing");
    let out =
        berth_with_config(&root, &config, &["login", "-u", "alice", "--password-stdin", &reg.host], Stdin::Bytes(b"s3cret\n".to_vec()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Login Succeeded\n");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(root.path().join("config.json")).expect("config.json").permissions());
    assert_eq!(mode & 0o777, 0o600);

    root.ok(&["load", "-i", berth_tests::s(&f.layered.path)]);
    let target = format!("{}/app/layered:1", reg.host);
    root.ok(&["tag", "layered:latest", &target]);
    let out = berth_with_config(&root, &config, &["push", &target], Stdin::Null);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("The push refers to repository [{}/app/layered]\n", reg.host)), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.ends_with(": Pushed")).count(), 3, "{stdout}");
    let (_, digest) = reg.raw_manifest("app/layered:1");
    assert!(stdout.ends_with(&format!("1: digest: {digest} size: {}\n", reg.raw_manifest("app/layered:1").0.len())), "{stdout}");
    let out = berth_with_config(&root, &config, &["push", &target], Stdin::Null);
    assert_eq!(text(&out.stdout).lines().filter(|l| l.ends_with(": Layer already exists")).count(), 3, "{}", text(&out.stdout));

    let out = berth_with_config(&root, &config, &["logout", &reg.host], Stdin::Null);
    assert_eq!(text(&out.stdout), format!("Removing login credentials for {}\n", reg.host));
    let out = berth_with_config(&root, &config, &["push", &target], Stdin::Null);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unauthorized: authentication required"), "{}", text(&out.stderr));
    let out = berth_with_config(&root, &config, &["logout", &reg.host], Stdin::Null);
    assert_eq!(text(&out.stdout), format!("Not logged in to {}\n", reg.host));
}

#[test]
fn cli_pull_killed_mid_layer_resumes_where_it_stopped() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.big.path, "big:1");
    let (m, _) = reg.raw_manifest("big:1");
    let v: serde_json::Value = serde_json::from_slice(&m).expect("manifest");
    let (big_digest, big_size) = v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| (l["digest"].as_str().expect("digest").to_string(), l["size"].as_u64().expect("size")))
        .max_by_key(|l| l.1)
        .expect("a layer");
    let stall_at = big_size / 2;
    let stalling = Front::start(
        "127.0.0.1",
        reg.port,
        Arc::new(move |r| if blob_path(&r.path).is_some() { Action::Stall(stall_at) } else { Action::Forward }),
    );
    let root = Root::new();
    let mut child = root
        .command(&["pull", &format!("{}/big:1", stalling.host())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start berth pull");
    let part = root.path().join("downloads").join(format!("{}.part", hex_of(&big_digest)));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fs::metadata(&part).map(|m| m.len()).unwrap_or(0) + 4096 < stall_at {
        assert!(std::time::Instant::now() < deadline, "the pull never wrote {stall_at} bytes of {}", part.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9 berth pull");
    child.wait().expect("reap berth pull");
    assert!(images_db(&root).is_none(), "nothing visible after the kill");
    // Resume through a counting relay: only the missing half of the big layer comes again.
    let counting = Front::start("127.0.0.1", reg.port, Arc::new(|_| Action::Forward));
    let name = format!("{}/big:1", counting.host());
    root.ok(&["pull", &name]);
    let total: u64 = v["layers"].as_array().expect("layers").iter().map(|l| l["size"].as_u64().expect("size")).sum();
    let relayed = counting.relayed.load(Ordering::SeqCst);
    assert!(relayed < total - stall_at + 72 * 1024, "relayed {relayed} bytes; the layers are {total}, {stall_at} were kept");
    assert_pulled(&root, f.big.image(), &name);
    let verify = root.ok(&["system", "verify"]);
    assert!(verify.contains("is intact: 1 images, 2 layers"), "system verify after the resumed pull: {verify}");
}

#[test]
fn pull_through_an_https_proxy_with_connect() {
    require_root();
    let f = fixtures();
    let reg = Registry::start(false, Auth::None);
    put_archive(&reg, &f.tiny.path, "tiny:1");
    let proxy = berth_tests::registry::ConnectProxy::start(reg.port);
    let purl = berth_registry::http::Url::parse(&format!("http://127.0.0.1:{}", proxy.port)).expect("proxy URL");
    // A registry name that resolves nowhere: only the proxy knows where it is. Plain HTTP to it
    // is allowed because it is listed as insecure.
    let o = Options {
        insecure: vec!["registry.test:5000".into()],
        proxy: Some(berth_registry::http::Proxy {
            https: Some(purl.clone()),
            http: Some(purl),
            no_proxy: vec!["other.test".into()],
            auth: None,
        }),
        ..opts()
    };
    let root = Root::new();
    let name = "registry.test:5000/tiny:1";
    pull_ref(&root, &o, name, None).expect("pull through the proxy");
    assert_pulled(&root, f.tiny.image(), name);
    let targets = proxy.targets.lock().expect("targets").clone();
    assert!(!targets.is_empty() && targets.iter().all(|t| t == "registry.test:5000"), "CONNECT targets: {targets:?}");
    // Not insecure: plain HTTP is refused even through the proxy.
    let o = Options { insecure: vec![], ..o };
    assert_pull_fails(&root, &o, "registry.test:5000/tiny:2", None, &["registry.test:5000", "TLS"]);
}
