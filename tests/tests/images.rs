//! End-to-end image tests: the real `berth` binary against archives made by real tools.
//! Every test needs root (`require_root`) and builds its own temporary root.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use berth_tests::check::{assert_layered_export, assert_load_output, assert_store_holds, images_json, inspect, reference, round_trip};
use berth_tests::fixtures::{read_archive, tar_entries, Image};
use berth_tests::{assert_one_error, berth_bin, fixtures, hex_of, is_hex64, require_root, run, s, Root, Stdin};

// ---------------------------------------------------------------------------------------------
// CLI conventions

#[test]
fn version_help_and_usage_errors() {
    let bin = berth_bin();
    let out = run(Command::new(&bin).arg("--version"), Stdin::Null);
    assert!(out.status.success(), "berth --version exits 0");
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("berth version 0.1.0"), "--version output: {v:?}");

    let commands: &[&[&str]] = &[
        &["load"],
        &["images"],
        &["image", "inspect"],
        &["inspect"],
        &["save"],
        &["tag"],
        &["rmi"],
        &["image", "prune"],
        &["system", "df"],
        &["import"],
        &["export"],
    ];
    for c in commands {
        let out = run(Command::new(&bin).args(*c).arg("--help"), Stdin::Null);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Usage:"),
            "berth {} --help: exit {:?}, stdout {stdout:?}, stderr {:?}",
            c.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    require_root();
    let root = Root::new();
    for (args, help) in [
        (&["load", "--no-such-flag"][..], "berth load --help"),
        (&["tag", "only-one-arg"][..], "berth tag --help"),
        (&["export"][..], "berth export --help"),
        (&["save", "-o"][..], "berth save --help"),
    ] {
        let (code, stderr) = root.fail(args);
        assert_eq!(code, 125, "usage error exit code for berth {}: {stderr}", args.join(" "));
        assert!(stderr.contains(&format!("See '{help}'.")), "usage error for berth {} lacks \"See '{help}'.\": {stderr}", args.join(" "));
    }
}

#[test]
fn berth_root_env_selects_the_store() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-i", s(&f.tiny.path)]);
    let out = run(Command::new(berth_bin()).args(["images", "-q", "--no-trunc"]).env("BERTH_ROOT", root.path()), Stdin::Null);
    assert!(out.status.success(), "berth images with BERTH_ROOT");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(ids, [f.tiny.image().id.clone()], "BERTH_ROOT store lists tiny");
}

// ---------------------------------------------------------------------------------------------
// Round trips: load -> images/inspect -> save -> skopeo, podman -> load again

#[test]
fn round_trip_busybox_docker_archive() {
    let a = &fixtures().busybox;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_layered_docker_archive() {
    let a = &fixtures().layered;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_busybox_oci_archive_gzip_layers() {
    let a = &fixtures().busybox_oci;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_layered_oci_archive_gzip_layers() {
    let a = &fixtures().layered_oci;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_layered_oci_archive_zstd_layers() {
    let a = &fixtures().layered_oci_zstd;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_layered_oci_archive_plain_layers() {
    let a = &fixtures().layered_oci_plain;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_podman_save() {
    let a = &fixtures().layered_podman;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_two_images_sharing_a_layer() {
    let a = &fixtures().multi_podman;
    assert_eq!(a.images.len(), 2);
    // assert_store_holds checks that the shared layer is stored once (3 layers/ entries).
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_gzip_compressed_archive() {
    let a = &fixtures().layered_gz;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_bzip2_compressed_archive() {
    let a = &fixtures().layered_bz2;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_xz_compressed_archive() {
    let a = &fixtures().layered_xz;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_zstd_compressed_archive() {
    let a = &fixtures().layered_zst;
    round_trip(&a.path, &a.images);
}

#[test]
fn round_trip_several_tags() {
    let f = fixtures();
    let a = &f.tags;
    round_trip(&a.path, &a.images);

    let root = Root::new();
    root.ok(&["load", "-i", s(&a.path)]);
    let id = &a.image().id;
    let q = root.ok(&["images", "-q"]);
    let q: Vec<&str> = q.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(q, [&hex_of(id)[..12]], "images -q: one de-duplicated 12-hex ID");
    let q = root.ok(&["images", "-q", "--no-trunc"]);
    let q: Vec<&str> = q.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(q, [id.as_str()], "images -q --no-trunc: full ID once");
}

#[test]
fn round_trip_untagged_image() {
    let a = &fixtures().untagged;
    assert!(a.image().tags.is_empty());
    round_trip(&a.path, &a.images);
}

// ---------------------------------------------------------------------------------------------
// Loading details

#[test]
fn load_from_stdin_plain_and_compressed() {
    require_root();
    let f = fixtures();
    for a in [&f.busybox, &f.layered_xz] {
        let root = Root::new();
        let out = root.ok_in(&["load"], Stdin::File(a.path.clone()));
        assert_load_output(&out, &a.images);
        assert_store_holds(&root, &a.images);
    }
}

#[test]
fn load_twice_is_idempotent() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-i", s(&f.layered.path)]);
    let before = root.listing();
    let out = root.ok(&["load", "-i", s(&f.layered.path)]);
    assert_load_output(&out, &f.layered.images);
    assert_store_holds(&root, &f.layered.images);
    let after = root.listing();
    let a: BTreeSet<&String> = before.keys().collect();
    let b: BTreeSet<&String> = after.keys().collect();
    assert_eq!(a, b, "a second load of the same archive adds or removes no files");
    // Also idempotent across formats: the OCI archive of the same image adds nothing new.
    root.ok(&["load", "-i", s(&f.layered_oci.path)]);
    assert_store_holds(&root, &f.layered.images);
}

#[test]
fn load_quiet_and_platform() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-q", "-i", s(&f.busybox.path)]);
    root.ok(&["load", "--platform", "linux/amd64", "-i", s(&f.layered.path)]);
    let mut all: Vec<Image> = f.busybox.images.clone();
    all.extend(f.layered.images.iter().cloned());
    assert_store_holds(&root, &all);
}

// ---------------------------------------------------------------------------------------------
// images, inspect

#[test]
fn images_table_quiet_json_and_filter() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-i", s(&f.multi_podman.path)]);
    let bb = f.busybox.image();
    let lay = f.layered.image();

    let table = root.ok(&["images"]);
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"], "{table}");
    assert_eq!(table.lines().count(), 3, "header + two images:\n{table}");
    for img in [bb, lay] {
        assert!(table.contains(&hex_of(&img.id)[..12]), "table lacks the 12-hex ID of {}:\n{table}", img.id);
    }

    let rows = images_json(&root, false, &[]);
    assert_eq!(rows.len(), 2, "two json rows: {rows:?}");
    for r in &rows {
        let id = r["ID"].as_str().unwrap_or("");
        assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()), "ID without --no-trunc is 12 hex: {r}");
    }

    let q = root.ok(&["images", "-q"]);
    let q: BTreeSet<&str> = q.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let want: BTreeSet<&str> = [&hex_of(&bb.id)[..12], &hex_of(&lay.id)[..12]].into();
    assert_eq!(q, want, "images -q");

    let only = images_json(&root, true, &["busybox"]);
    assert_eq!(only.len(), 1, "images busybox: one row: {only:?}");
    assert_eq!(only[0]["ID"], bb.id.as_str());
    let only = images_json(&root, true, &["layered:latest"]);
    assert_eq!(only.len(), 1, "images layered:latest: one row: {only:?}");
    assert_eq!(only[0]["ID"], lay.id.as_str());
    assert!(images_json(&root, true, &["busybox:nosuchtag"]).is_empty());
    assert!(images_json(&root, true, &["nosuchrepo"]).is_empty());

    let digests = root.ok(&["images", "--digests"]);
    assert!(digests.lines().next().unwrap_or("").contains("DIGEST"), "images --digests has a DIGEST column:\n{digests}");
}

#[test]
fn inspect_forms_and_unknown_image() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-i", s(&f.layered.path)]);
    let lay = f.layered.image();

    // By tag, by full ID, by short ID, and the `berth inspect` alias: all the same object.
    let by_tag = inspect(&root, &["layered:latest"]);
    let by_id = inspect(&root, &[&lay.id]);
    let short = &hex_of(&lay.id)[..12];
    let by_short = inspect(&root, &[short]);
    assert_eq!(by_tag, by_id);
    assert_eq!(by_tag, by_short);
    let alias: Value = serde_json::from_str(&root.ok(&["inspect", "layered:latest"])).expect("inspect JSON");
    assert_eq!(alias.as_array().map(|a| a.len()), Some(1));
    assert_eq!(alias[0]["Id"], lay.id.as_str());
    assert_eq!(by_tag[0]["Config"]["Labels"]["org.example.fixture"], "layered");
    assert!(by_tag[0].get("RepoDigests").is_some(), "inspect has RepoDigests");

    let compact = root.ok(&["image", "inspect", "--format", "json", "layered:latest"]);
    let lines: Vec<&str> = compact.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "--format json: one line per image:\n{compact}");
    let obj: Value = serde_json::from_str(lines[0]).expect("compact JSON object");
    assert_eq!(obj["Id"], lay.id.as_str());

    let before = root.listing();
    let out = root.cmd(&["image", "inspect", "nosuch:latest"]);
    assert_eq!(out.status.code(), Some(1), "inspect of an unknown image exits 1");
    let line = assert_one_error(&String::from_utf8_lossy(&out.stderr), &["No such image"]);
    assert!(line.contains("nosuch"), "error names the image: {line}");
    assert_eq!(root.listing(), before);
}

// ---------------------------------------------------------------------------------------------
// rmi, tag, prune, system df

#[test]
fn rmi_frees_only_unshared_layers() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-i", s(&f.busybox.path)]);
    root.ok(&["load", "-i", s(&f.layered.path)]);
    let bb = f.busybox.image();
    let lay = f.layered.image();
    assert_eq!(root.layer_dirs().len(), 3);

    let out = root.ok(&["rmi", "layered:latest"]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(lines.contains(&"Untagged: layered:latest"), "rmi output:\n{out}");
    assert!(lines.contains(&format!("Deleted: {}", lay.id).as_str()), "rmi output:\n{out}");
    assert_store_holds(&root, &f.busybox.images);
    assert!(!root.path().join("blobs/sha256").join(hex_of(&lay.id)).exists(), "layered's config blob removed");
    let saved = root.scratch().join("bb.tar");
    root.ok(&["save", "-o", s(&saved), "busybox:latest"]);
    assert_eq!(read_archive(&saved)[0].id, bb.id, "busybox still saves after rmi layered");

    let out = root.ok(&["rmi", &bb.id]);
    assert!(out.contains("Untagged: busybox:latest"), "rmi by ID untags:\n{out}");
    assert!(out.contains(&format!("Deleted: {}", bb.id)), "rmi output:\n{out}");
    assert!(root.layer_dirs().is_empty(), "all layers freed: {:?}", root.layer_dirs());
    assert!(root.ok(&["images", "-q"]).trim().is_empty(), "no images left");
    let (code, err) = root.fail(&["rmi", "busybox:latest"]);
    assert_eq!(code, 1);
    assert_one_error(&err, &["No such image"]);
}

#[test]
fn tag_and_untag() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-i", s(&f.busybox.path)]);
    let bb = f.busybox.image();
    root.ok(&["tag", "busybox:latest", "mybox:v2"]);
    root.ok(&["tag", &bb.id, "registry.example:5000/team/box"]);
    let mut img = bb.clone();
    img.tags = vec!["busybox:latest".into(), "mybox:v2".into(), "registry.example:5000/team/box:latest".into()];
    assert_store_holds(&root, std::slice::from_ref(&img));

    let out = root.ok(&["rmi", "mybox:v2"]);
    assert!(out.contains("Untagged: mybox:v2"), "rmi of one tag untags:\n{out}");
    assert!(!out.contains("Deleted:"), "rmi of one of several tags deletes nothing:\n{out}");
    img.tags.retain(|t| t != "mybox:v2");
    assert_store_holds(&root, std::slice::from_ref(&img));

    let (code, err) = root.fail(&["tag", "nosuch:latest", "other:1"]);
    assert_eq!(code, 1);
    assert_one_error(&err, &["No such image"]);
}

#[test]
fn rmi_by_id_with_several_tags_needs_force() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-i", s(&f.tags.path)]);
    let id = &f.tags.image().id;
    let before = root.listing();
    let (code, err) = root.fail(&["rmi", id]);
    assert_eq!(code, 1, "rmi by ID of an image with several tags needs -f: {err}");
    assert_one_error(&err, &["force", "-f", "multiple", "referenced"]);
    assert_eq!(root.listing(), before, "a refused rmi changes nothing");
    let out = root.ok(&["rmi", "-f", id]);
    for t in &f.tags.image().tags {
        assert!(out.contains(&format!("Untagged: {t}")), "rmi -f output:\n{out}");
    }
    assert!(out.contains(&format!("Deleted: {id}")), "rmi -f output:\n{out}");
    assert!(root.layer_dirs().is_empty());
}

#[test]
fn image_prune_and_system_df() {
    require_root();
    let f = fixtures();
    let root = Root::new();
    root.ok(&["load", "-i", s(&f.untagged.path)]);
    root.ok(&["load", "-i", s(&f.busybox.path)]);

    let df = root.ok(&["system", "df", "--format", "json"]);
    let rows: Vec<Value> = df
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("system df line ({e}): {l}")))
        .collect();
    let images = rows.iter().find(|r| r["Type"] == "Images").unwrap_or_else(|| panic!("system df has no Images row:\n{df}"));
    let total = match &images["TotalCount"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    assert_eq!(total, "2", "system df Images TotalCount: {images}");

    // Without -a only dangling (untagged) images go.
    root.ok(&["image", "prune", "-f"]);
    assert_store_holds(&root, &f.busybox.images);
    // With -a every image without a container goes.
    root.ok(&["image", "prune", "-a", "-f"]);
    assert!(root.ok(&["images", "-q"]).trim().is_empty(), "prune -a removed all");
    assert!(root.layer_dirs().is_empty(), "prune -a freed all layers");
}

// ---------------------------------------------------------------------------------------------
// import, export

fn export_names(root: &Root, reference: &str) -> BTreeSet<String> {
    let out = root.scratch().join("exported.tar");
    root.ok(&["export", "-o", s(&out), reference]);
    let entries = tar_entries(&fs::read(&out).expect("read export"));
    fs::remove_file(&out).expect("remove export");
    entries.into_iter().map(|e| e.path).filter(|p| !p.is_empty()).collect()
}

fn check_import(source: &str, stdin: Stdin) {
    require_root();
    let f = fixtures();
    let root = Root::new();
    let out = root.ok_in(&["import", source, "imported:v1", "-c", r#"CMD ["/bin/sh"]"#, "-m", "from the test"], stdin);
    let id = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("import prints sha256:<id>:\n{out}"))
        .to_string();
    assert!(is_hex64(hex_of(&id)), "import ID: {id}");
    let obj = &inspect(&root, &["imported:v1"])[0];
    assert_eq!(obj["Id"], id.as_str());
    assert_eq!(obj["RepoTags"], serde_json::json!(["imported:v1"]));
    assert_eq!(obj["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    let layers = obj["RootFS"]["Layers"].as_array().expect("RootFS.Layers");
    assert_eq!(layers.len(), 1, "import makes a 1-layer image");
    let diff = layers[0].as_str().expect("diff_id");
    assert_eq!(root.layer_dirs(), [hex_of(diff).to_string()]);
    let blob = fs::read(root.path().join("blobs/sha256").join(hex_of(&id))).expect("config blob");
    assert_eq!(berth_tests::sha256_digest(&blob), id, "config blob named by its digest");

    let want: BTreeSet<String> = f.rootfs_files.iter().cloned().collect();
    assert_eq!(export_names(&root, "imported:v1"), want, "export of the import = the rootfs");
}

#[test]
fn import_directory() {
    check_import(s(&fixtures().rootfs), Stdin::Null);
}

#[test]
fn import_plain_tarball() {
    check_import(s(&fixtures().rootfs_tar), Stdin::Null);
}

#[test]
fn import_gzip_tarball() {
    check_import(s(&fixtures().rootfs_tar_gz), Stdin::Null);
}

#[test]
fn import_xz_tarball_from_stdin() {
    check_import("-", Stdin::File(fixtures().rootfs_tar_xz.clone()));
}

#[test]
fn export_layered_applies_whiteouts() {
    require_root();
    let f = fixtures();
    for a in [&f.layered, &f.layered_oci_zstd] {
        let root = Root::new();
        root.ok(&["load", "-i", s(&a.path)]);
        let entries = assert_layered_export(&root, &reference(a.image()));
        let names: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        for p in &f.rootfs_files {
            assert!(names.contains(p.as_str()), "export lacks busybox file {p}");
        }
        let sh = entries.iter().find(|e| e.path == "bin/sh").expect("bin/sh");
        assert_eq!(sh.kind, tar::EntryType::Symlink, "bin/sh is a symlink");
        assert_eq!(sh.link.as_deref(), Some("busybox"));
        let bb = entries.iter().find(|e| e.path == "bin/busybox").expect("bin/busybox");
        assert_eq!(bb.data, fs::read("/bin/busybox").expect("read /bin/busybox"));
    }
}

// ---------------------------------------------------------------------------------------------
// The shared corpus (../shared/fixtures): real archives made by docker, podman, skopeo, buildah

fn corpus_dir() -> Option<PathBuf> {
    match std::env::var("BERTH_SHARED_FIXTURES") {
        Err(_) => panic!(
            "BERTH_SHARED_FIXTURES is unset: run the suite with scripts/test (it sets it to the \
             corpus path, or to 'absent' when ../shared/fixtures does not exist)"
        ),
        Ok(v) if v == "absent" => None,
        Ok(v) => Some(PathBuf::from(v)),
    }
}

/// The image IDs the corpus README lists, in order: busybox, then layered.
fn readme_ids(dir: &Path) -> Vec<String> {
    let readme = fs::read_to_string(dir.join("README.md")).expect("corpus README.md");
    readme
        .lines()
        .filter(|l| l.contains("image id"))
        .filter_map(|l| {
            let i = l.find("sha256:")?;
            let d = l.get(i..i + 71)?;
            is_hex64(&d[7..]).then(|| d.to_string())
        })
        .collect()
}

#[test]
fn shared_corpus() {
    let Some(dir) = corpus_dir() else {
        println!("shared corpus not present; not run");
        return;
    };
    require_root();
    let ids = readme_ids(&dir);
    assert_eq!(ids.len(), 2, "README lists the busybox and layered image ids: {ids:?}");
    let (busybox_id, layered_id) = (&ids[0], &ids[1]);

    let mut files: Vec<PathBuf> = Vec::new();
    for d in [dir.clone(), dir.join("third-party")] {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let p = e.expect("corpus entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tar") || name.ends_with(".tar.gz") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 12, "corpus files found: {files:?}");

    let mut checked_busybox = 0;
    let mut checked_layered = 0;
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("bad-") {
            let root = Root::new();
            root.ok(&["load", "-i", s(&fixtures().tiny.path)]);
            let before = root.listing();
            let out = root.cmd(&["load", "-i", s(path)]);
            assert_eq!(out.status.code(), Some(1), "{name} must be refused with exit 1");
            assert_one_error(&String::from_utf8_lossy(&out.stderr), &["manifest", "archive", "invalid", "malformed"]);
            assert_eq!(root.listing(), before, "{name}: store unchanged after a refused load");
            continue;
        }
        let images = read_archive(path);
        for img in &images {
            if name.contains("busybox") {
                assert_eq!(&img.id, busybox_id, "{name}: README id vs the archive's config");
                checked_busybox += 1;
            } else if name.contains("layered") {
                assert_eq!(&img.id, layered_id, "{name}: README id vs the archive's config");
                checked_layered += 1;
            }
        }
        let root = Root::new();
        let out = root.cmd(&["load", "-i", s(path)]);
        assert!(out.status.success(), "berth load -i {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        // Tags as berth should name them: compare IDs and layers, and tags where the archive has
        // Docker-style names (localhost/... stays as it is).
        assert_store_holds(&root, &images);
        if name.contains("layered") {
            assert_layered_export(&root, &images[0].id);
        }
        let saved = root.scratch().join("saved.tar");
        let refs: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
        let mut args = vec!["save", "-o", s(&saved)];
        args.extend(refs.iter().map(String::as_str));
        root.ok(&args);
        let again = Root::new();
        again.ok(&["load", "-i", s(&saved)]);
        let got: BTreeSet<String> = images_json(&again, true, &[]).iter().filter_map(|r| r["ID"].as_str().map(str::to_string)).collect();
        let want: BTreeSet<String> = images.iter().map(|i| i.id.clone()).collect();
        assert_eq!(got, want, "{name}: IDs after save and reload");
    }
    assert!(checked_busybox >= 3, "busybox corpus archives checked: {checked_busybox}");
    assert!(checked_layered >= 5, "layered corpus archives checked: {checked_layered}");
}

#[test]
fn concurrent_loads_into_one_root() {
    // Two berth processes load images sharing a layer into the same root at once; the store's
    // lock must keep it consistent. Repeated a few times to give a race a chance to show.
    require_root();
    let f = fixtures();
    let mut all: Vec<Image> = f.busybox.images.clone();
    all.extend(f.layered.images.iter().cloned());
    for _ in 0..3 {
        let root = Root::new();
        let spawn = |a: &berth_tests::Archive| {
            root.command(&["load", "-i", s(&a.path)])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start berth load")
        };
        let c1 = spawn(&f.busybox);
        let c2 = spawn(&f.layered_oci);
        for c in [c1, c2] {
            let out = c.wait_with_output().expect("wait for berth load");
            assert!(out.status.success(), "concurrent load failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        root.assert_tmp_clean("concurrent loads");
        assert_store_holds(&root, &all);
    }
}
