//! Bad input: every case must fail with exit 1 and exactly one `Error: ` line naming the problem,
//! leave the store as it was (recursive listing of the root, `lock` excluded, `tmp/` empty), and
//! write nothing outside the root.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_tests::craft::{long_name_layer, raw_tar, small_layer, DockerArchive, RawEntry};
use berth_tests::fixtures::read_archive;
use berth_tests::{assert_one_error, fixtures, require_root, run, s, sha256_digest, sha256_hex, Root, Stdin, TEMP_BASE};
use serde_json::json;

/// A root that already holds the tiny image, so "unchanged" is checked on a non-empty store.
fn seeded_root() -> Root {
    require_root();
    let root = Root::new();
    root.ok(&["load", "-i", s(&fixtures().tiny.path)]);
    root
}

/// Runs berth and checks the refusal: exit 1, one `Error: ` line with one of `words`, store
/// unchanged, the previously loaded image still listed. Returns the error line.
fn refused(root: &Root, args: &[&str], stdin: Stdin, words: &[&str]) -> String {
    let before = root.listing();
    let out = root.cmd_in(args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "berth {} must fail with exit 1; stdout: {} stderr: {stderr}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    let line = assert_one_error(&stderr, words);
    println!("berth {}: {line}", args.join(" "));
    assert_eq!(root.listing(), before, "berth {}: store changed", args.join(" "));
    still_holds_tiny(root);
    line
}

fn still_holds_tiny(root: &Root) {
    let ids = root.ok(&["images", "-q", "--no-trunc"]);
    assert!(ids.lines().any(|l| l.trim() == fixtures().tiny.image().id), "the image loaded before is no longer listed:\n{ids}");
}

fn write(root: &Root, name: &str, data: &[u8]) -> PathBuf {
    let p = root.scratch().join(name);
    fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

fn load_refused(root: &Root, file: &Path, words: &[&str]) -> String {
    refused(root, &["load", "-i", s(file)], Stdin::Null, words)
}

/// A name nobody else uses, for files that must not appear outside the root.
fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("berth-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Files named `name` anywhere under `dir` except under `skip`.
fn find_named(dir: &Path, name: &str, skip: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        if e.file_name().to_str() == Some(name) {
            out.push(p.clone());
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            find_named(&p, name, skip, out);
        }
    }
}

/// Asserts that no file `name` exists beside the root (in its scratch dir, any depth), nor in
/// `/`, `/tmp` or `/var/tmp`.
fn assert_not_outside(root: &Root, name: &str) {
    let mut found = Vec::new();
    find_named(root.scratch(), name, root.path(), &mut found);
    for d in ["/", "/tmp", TEMP_BASE] {
        let p = Path::new(d).join(name);
        if fs::symlink_metadata(&p).is_ok() {
            found.push(p);
        }
    }
    for p in &found {
        let _ = fs::remove_file(p);
    }
    assert!(found.is_empty(), "berth wrote outside its root: {found:?}");
}

// ---------------------------------------------------------------------------------------------
// Broken archives

#[test]
fn truncated_archive() {
    let root = seeded_root();
    let f = fixtures();
    for (name, a) in [("half.tar", &f.layered), ("half.tar.gz", &f.layered_gz)] {
        let data = fs::read(&a.path).expect("read fixture");
        let cut = write(&root, name, &data[..data.len() / 2]);
        load_refused(&root, &cut, &["truncated", "unexpected end", "unexpected eof"]);
    }
}

#[test]
fn layer_digest_mismatch() {
    let root = seeded_root();
    let mut a = DockerArchive::new("mismatch:latest", vec![small_layer()]);
    a.config["rootfs"]["diff_ids"][0] = sha256_digest(b"some other layer").into();
    let file = write(&root, "mismatch.tar", &a.to_bytes());
    load_refused(&root, &file, &["digest", "mismatch", "does not match"]);
}

#[test]
fn manifest_names_a_missing_layer() {
    let root = seeded_root();
    let mut a = DockerArchive::new("missing:latest", vec![small_layer()]);
    a.layers.clear();
    let file = write(&root, "missing.tar", &a.to_bytes());
    load_refused(&root, &file, &["missing", "not found", "no such"]);
}

#[test]
fn manifest_layer_path_outside_the_archive() {
    let root = seeded_root();
    let mut a = DockerArchive::new("outside:latest", vec![small_layer()]);
    a.manifest_layers = vec!["../../../../../../../../etc/hostname".to_string()];
    let file = write(&root, "outside.tar", &a.to_bytes());
    load_refused(&root, &file, &["missing", "not found", "no such", "escape", "outside", "invalid"]);
}

#[test]
fn malformed_manifest_json() {
    let root = seeded_root();
    let mut a = DockerArchive::new("malformed:latest", vec![small_layer()]);
    a.manifest_override = Some(br#"[{"Config": "abc.json", "Layers": ["#.to_vec());
    let file = write(&root, "malformed.tar", &a.to_bytes());
    load_refused(&root, &file, &["manifest"]);

    a.manifest_override = Some(b"null".to_vec());
    let file = write(&root, "null.tar", &a.to_bytes());
    load_refused(&root, &file, &["manifest"]);
}

#[test]
fn empty_file_and_non_archive() {
    let root = seeded_root();
    let empty = write(&root, "empty.tar", b"");
    load_refused(&root, &empty, &["empty", "archive", "eof", "truncated"]);
    refused(&root, &["load"], Stdin::Bytes(Vec::new()), &["empty", "archive", "eof", "truncated"]);
    load_refused(&root, Path::new("/etc/passwd"), &["archive", "tar", "format", "manifest", "recogni"]);
    let nofile = root.scratch().join("does-not-exist.tar");
    load_refused(&root, &nofile, &["no such file", "not found", "does-not-exist"]);
}

// ---------------------------------------------------------------------------------------------
// Layers that try to escape

#[test]
fn dotdot_entries_stay_inside() {
    let root = seeded_root();
    let name = unique("evil");
    let entries = vec![
        RawEntry::dir("etc/"),
        RawEntry::file(&format!("../{name}"), b"evil\n"),
        RawEntry::file(&format!("../../{name}"), b"evil\n"),
        RawEntry::file(&format!("../../../{name}"), b"evil\n"),
        RawEntry::file(&format!("etc/../../../../../../../../../../tmp/{name}"), b"evil\n"),
    ];
    attempt_escape(&root, "dotdot", raw_tar(&entries), &name);
}

#[test]
fn absolute_entries_stay_inside() {
    let root = seeded_root();
    let name = unique("abs");
    let entries = vec![RawEntry::file(&format!("/tmp/{name}"), b"evil\n"), RawEntry::file(&format!("{TEMP_BASE}/{name}"), b"evil\n")];
    attempt_escape(&root, "absolute", raw_tar(&entries), &name);
}

/// Either refused (exit 1, one error, store unchanged) or accepted with the entries kept inside
/// the layer; never a file `name` outside the root.
fn attempt_escape(root: &Root, what: &str, layer: Vec<u8>, name: &str) {
    let a = DockerArchive::new(&format!("{what}:latest"), vec![layer]);
    let file = write(root, &format!("{what}.tar"), &a.to_bytes());
    let before = root.listing();
    let out = root.cmd(&["load", "-i", s(&file)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("load of a {what} layer: {:?} {stderr}", out.status.code());
    assert_not_outside(root, name);
    match out.status.code() {
        Some(0) => {
            // Accepted: then the entries were kept, normalised, inside the store.
            let mut inside = Vec::new();
            find_named(root.path(), name, Path::new("/nonexistent"), &mut inside);
            assert!(!inside.is_empty(), "load of a {what} layer succeeded but {name} is nowhere inside the root");
            still_holds_tiny(root);
        }
        Some(1) => {
            assert_one_error(&stderr, &["escape", "outside", "unsafe", "..", "absolute", "invalid path"]);
            assert_eq!(root.listing(), before, "refused load changed the store");
            still_holds_tiny(root);
        }
        other => panic!("load of a {what} layer: exit {other:?}, stderr {stderr}"),
    }
}

#[test]
fn outer_archive_entries_stay_inside() {
    // The docker-archive itself (not a layer) carries `..` and absolute entries.
    let root = seeded_root();
    let name = unique("outer");
    let mut a = DockerArchive::new("outer:latest", vec![small_layer()]);
    a.extra = vec![
        RawEntry::file(&format!("../../../{name}"), b"evil\n"),
        RawEntry::file(&format!("../../../../../../../../../../tmp/{name}"), b"evil\n"),
        RawEntry::file(&format!("/tmp/{name}"), b"evil\n"),
    ];
    let file = write(&root, "outer.tar", &a.to_bytes());
    let before = root.listing();
    let out = root.cmd(&["load", "-i", s(&file)]);
    println!("outer: {:?} {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    assert_not_outside(&root, &name);
    if out.status.code() != Some(0) {
        assert_eq!(out.status.code(), Some(1));
        assert_one_error(&String::from_utf8_lossy(&out.stderr), &["escape", "outside", "unsafe", "..", "absolute", "invalid"]);
        assert_eq!(root.listing(), before);
    }
    still_holds_tiny(&root);
}

#[test]
fn symlink_then_write_through_it() {
    let root = seeded_root();
    for (i, relative) in [false, true].into_iter().enumerate() {
        let target = Path::new("/tmp").join(unique("target"));
        fs::create_dir(&target).expect("mkdir symlink target");
        let link = if relative { format!("../../../../../../../../../..{}", target.display()) } else { target.display().to_string() };
        let layer = raw_tar(&[RawEntry::symlink("lnk", &link), RawEntry::file("lnk/pwned", b"pwned\n")]);
        let a = DockerArchive::new(&format!("symlink{i}:latest"), vec![layer]);
        let file = write(&root, &format!("symlink{i}.tar"), &a.to_bytes());
        let before = root.listing();
        let out = root.cmd(&["load", "-i", s(&file)]);
        let pwned = target.join("pwned").exists();
        let _ = fs::remove_dir_all(&target);
        assert!(!pwned, "berth wrote through a symlink to {}", target.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("symlink {link}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "a write through a symlink must be refused: {stderr}");
        assert_one_error(&stderr, &["symlink", "link", "escape", "outside"]);
        assert_eq!(root.listing(), before, "store changed");
        still_holds_tiny(&root);
    }
}

#[test]
fn hardlink_out_of_the_layer() {
    let root = seeded_root();
    let passwd_links = fs::metadata("/etc/passwd").expect("stat /etc/passwd").nlink();
    for (i, target) in ["../../etc/passwd", "../../../../../../../../../../etc/passwd"].into_iter().enumerate() {
        let layer = raw_tar(&[RawEntry::hardlink("hl", target)]);
        let a = DockerArchive::new(&format!("hardlink{i}:latest"), vec![layer]);
        let file = write(&root, &format!("hardlink{i}.tar"), &a.to_bytes());
        load_refused(&root, &file, &["link", "escape", "outside"]);
        let now = fs::metadata("/etc/passwd").expect("stat /etc/passwd").nlink();
        assert_eq!(now, passwd_links, "a hard link to /etc/passwd was made");
    }
}

#[test]
fn entry_name_longer_than_path_max() {
    let root = seeded_root();
    let long = format!("{}f", format!("{}/", "d".repeat(200)).repeat(21));
    assert!(long.len() > 4096);
    for (i, pax) in [false, true].into_iter().enumerate() {
        let a = DockerArchive::new(&format!("long{i}:latest"), vec![long_name_layer(&long, pax)]);
        let file = write(&root, &format!("long{i}.tar"), &a.to_bytes());
        load_refused(&root, &file, &["long", "PATH_MAX", "4096"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Resources and unknown names

#[test]
fn disk_full() {
    require_root();
    let f = fixtures();
    let root = Root::on_tmpfs("3m");
    root.ok(&["load", "-i", s(&f.tiny.path)]);
    refused(&root, &["load", "-i", s(&f.big.path)], Stdin::Null, &["space"]);
    let saved = root.scratch().join("tiny-saved.tar");
    root.ok(&["save", "-o", s(&saved), "tiny:latest"]);
    let got = read_archive(&saved);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, f.tiny.image().id, "tiny still saves after the failed load");
    assert_eq!(got[0].diff_ids, f.tiny.image().diff_ids);
}

#[test]
fn unknown_image_to_save_rmi_and_export() {
    let root = seeded_root();
    let out = root.scratch().join("never.tar");
    let line = refused(&root, &["save", "-o", s(&out), "nosuch:latest"], Stdin::Null, &["No such image"]);
    assert!(line.contains("nosuch"), "error names the image: {line}");
    assert!(!out.exists(), "save of an unknown image must not create {}", out.display());
    // One known and one unknown image: still nothing written.
    refused(&root, &["save", "-o", s(&out), "tiny:latest", "nosuch:latest"], Stdin::Null, &["No such image"]);
    assert!(!out.exists(), "save with an unknown image must not create {}", out.display());
    refused(&root, &["rmi", "nosuch:latest"], Stdin::Null, &["No such image"]);
    // `export` takes a container (an image name is berth's extension): Docker's words for neither.
    refused(&root, &["export", "-o", s(&out), "nosuch:latest"], Stdin::Null, &["No such container"]);
    assert!(!out.exists());
}

#[test]
fn corpus_bad_archives_are_refused() {
    // Shared corpus files named bad-*: refused cleanly (also covered by images.rs shared_corpus,
    // repeated here so a bad-input run alone covers them).
    let dir = match std::env::var("BERTH_SHARED_FIXTURES") {
        Err(_) => panic!("BERTH_SHARED_FIXTURES is unset: run the suite with scripts/test"),
        Ok(v) if v == "absent" => {
            println!("shared corpus not present; not run");
            return;
        }
        Ok(v) => PathBuf::from(v),
    };
    let root = seeded_root();
    let mut n = 0;
    for d in [dir.clone(), dir.join("third-party")] {
        for e in fs::read_dir(&d).expect("read corpus dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("bad-") {
                load_refused(&root, &e.path(), &["manifest", "archive", "invalid", "malformed"]);
                n += 1;
            }
        }
    }
    assert!(n >= 1, "the corpus has bad-* archives");
}

/// An oci-archive (index.json, oci-layout, blobs/sha256/*) around one gzip layer. The blob stored
/// under the layer's manifest digest is `stored`; the manifest names `named` (both gzip streams
/// of the same tar, so the config's diff_id matches either way).
fn oci_archive(layer: &[u8], named: &[u8], stored: &[u8]) -> Vec<u8> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(layer)] },
    }))
    .expect("config JSON");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha256_digest(named),
            "size": stored.len(),
        }],
    }))
    .expect("manifest JSON");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_digest(&manifest),
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": "ocibad:latest" },
        }],
    }))
    .expect("index JSON");
    raw_tar(&[
        RawEntry::file("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#),
        RawEntry::file("index.json", &index),
        RawEntry::dir("blobs/"),
        RawEntry::dir("blobs/sha256/"),
        RawEntry::file(&format!("blobs/sha256/{}", sha256_hex(&manifest)), &manifest),
        RawEntry::file(&format!("blobs/sha256/{}", sha256_hex(&config)), &config),
        RawEntry::file(&format!("blobs/sha256/{}", sha256_hex(named)), stored),
    ])
}

fn gzip(root: &Root, data: &[u8], level: &str) -> Vec<u8> {
    let p = write(root, "gz-input", data);
    let out = run(Command::new("gzip").args(["-c", "-n", level]).arg(&p), Stdin::Null);
    assert!(out.status.success(), "gzip {level}");
    out.stdout
}

#[test]
fn oci_blob_digest_mismatch() {
    let root = seeded_root();
    // A layer big enough that gzip -1 and -9 give different bytes.
    let text: String = (0..2000).map(|i| format!("line {i} of some text\n")).collect();
    let layer = raw_tar(&[RawEntry::file("data.txt", text.as_bytes())]);
    let fast = gzip(&root, &layer, "-1");
    let best = gzip(&root, &layer, "-9");
    assert_ne!(fast, best, "two different gzip streams of the same tar");

    // Control: the honest archive loads, so the refusal below is about the digest alone.
    let good = write(&root, "oci-good.tar", &oci_archive(&layer, &best, &best));
    let check = Root::new();
    check.ok(&["load", "-i", s(&good)]);

    let bad = write(&root, "oci-bad.tar", &oci_archive(&layer, &best, &fast));
    load_refused(&root, &bad, &["digest", "mismatch", "does not match"]);
}
