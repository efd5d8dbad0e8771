//! Assertions shared by the test files: what berth lists and inspects for loaded images, what its
//! saved archives hold, and whether skopeo and podman accept them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::fixtures::{read_archive, tar_entries, Image, Podman, TarEntry};
use crate::{hex_of, is_hex64, run, s, sha256_digest, tool, Root, Stdin};

/// The reference to use for an image on the command line: its first tag, else its full ID.
pub fn reference(img: &Image) -> String {
    img.tags.first().cloned().unwrap_or_else(|| img.id.clone())
}

/// Checks `berth load` output: `Loaded image: NAME:TAG` for every tag, `Loaded image ID: sha256:..`
/// for an untagged image.
pub fn assert_load_output(stdout: &str, images: &[Image]) {
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    for img in images {
        if img.tags.is_empty() {
            let want = format!("Loaded image ID: {}", img.id);
            assert!(lines.contains(&want.as_str()), "load output lacks {want:?}:\n{stdout}");
        }
        for t in &img.tags {
            let want = format!("Loaded image: {t}");
            assert!(lines.contains(&want.as_str()), "load output lacks {want:?}:\n{stdout}");
        }
    }
}

/// Rows of `berth images --format json [--no-trunc] [extra...]`, one JSON object per line.
pub fn images_json(root: &Root, no_trunc: bool, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["images", "--format", "json"];
    if no_trunc {
        args.push("--no-trunc");
    }
    args.extend_from_slice(extra);
    let out = root.ok(&args);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("images --format json line is not JSON ({e}): {l}")))
        .collect()
}

/// `berth image inspect REFS...` parsed (a JSON array).
pub fn inspect(root: &Root, refs: &[&str]) -> Vec<Value> {
    let mut args = vec!["image", "inspect"];
    args.extend_from_slice(refs);
    let out = root.ok(&args);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("image inspect output is not JSON ({e}):\n{out}"));
    let arr = v.as_array().unwrap_or_else(|| panic!("image inspect output is not an array:\n{out}")).clone();
    assert_eq!(arr.len(), refs.len(), "one inspect object per reference");
    arr
}

/// The fields of an OCI image config's `config` object, which `inspect` must pass through.
pub const OCI_CONFIG_FIELDS: &[&str] =
    &["User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal"];

/// null, "", [] and {} all mean "not set".
fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn str_set(v: &Value) -> BTreeSet<String> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap_or_else(|| panic!("expected strings in {v}")).to_string()).collect(),
        Value::Null => BTreeSet::new(),
        other => panic!("expected an array, got {other}"),
    }
}

/// Checks that the root holds exactly these images as the tools recorded them: `images`
/// rows, `image inspect` (Id, RepoTags, RootFS, Config, Architecture, Os), the config blob under
/// `blobs/sha256/` and one `layers/` entry per distinct diff_id (nothing more).
pub fn assert_store_holds(root: &Root, images: &[Image]) {
    let rows = images_json(root, true, &[]);
    for row in &rows {
        for key in ["Repository", "Tag", "ID", "CreatedAt", "CreatedSince", "Size", "Digest"] {
            assert!(row.get(key).is_some(), "images json row lacks {key}: {row}");
        }
        let id = row["ID"].as_str().unwrap_or("");
        assert!(id.strip_prefix("sha256:").is_some_and(is_hex64), "--no-trunc ID must be sha256:<64 hex>: {row}");
    }
    let ids: BTreeSet<&str> = rows.iter().filter_map(|r| r["ID"].as_str()).collect();
    let want_ids: BTreeSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, want_ids, "image IDs listed by berth images vs the tools' config digests");
    for img in images {
        for t in &img.tags {
            let (repo, tag) = t.rsplit_once(':').expect("tag has a colon");
            assert!(
                rows.iter().any(|r| r["Repository"] == repo && r["Tag"] == tag && r["ID"] == img.id.as_str()),
                "berth images lacks {repo} {tag} {}: {rows:?}",
                img.id
            );
        }
    }

    let refs: Vec<String> = images.iter().map(reference).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let objs = inspect(root, &refs);
    for (img, obj) in images.iter().zip(&objs) {
        assert_eq!(obj["Id"], img.id.as_str(), "inspect Id of {}", reference(img));
        let tags: BTreeSet<String> = img.tags.iter().cloned().collect();
        assert_eq!(str_set(&obj["RepoTags"]), tags, "inspect RepoTags");
        assert_eq!(obj["RootFS"]["Type"], "layers", "inspect RootFS.Type");
        let layers: Vec<&str> = obj["RootFS"]["Layers"]
            .as_array()
            .unwrap_or_else(|| panic!("inspect RootFS.Layers missing: {obj}"))
            .iter()
            .map(|v| v.as_str().unwrap_or(""))
            .collect();
        assert_eq!(layers, img.diff_ids, "inspect RootFS.Layers vs the config's diff_ids");
        assert_eq!(obj["Architecture"], img.config["architecture"], "Architecture");
        assert_eq!(obj["Os"], img.config["os"], "Os");
        for k in OCI_CONFIG_FIELDS {
            let (want, got) = (&img.config["config"][k], &obj["Config"][k]);
            if !(is_empty_json(want) && is_empty_json(got)) {
                assert_eq!(got, want, "inspect Config.{k} vs the image config");
            }
        }
        assert!(obj["Size"].as_u64().is_some_and(|n| n > 0), "inspect Size must be a positive number: {}", obj["Size"]);
        if let Some(created) = img.config["created"].as_str() {
            let got = obj["Created"].as_str().unwrap_or("");
            assert_eq!(got.get(..19), created.get(..19), "inspect Created vs config created");
        }
        let blob = root.path().join("blobs/sha256").join(hex_of(&img.id));
        let data = fs::read(&blob).unwrap_or_else(|e| panic!("config blob {}: {e}", blob.display()));
        assert_eq!(sha256_digest(&data), img.id, "blob content matches its name");
    }

    let want_layers: BTreeSet<String> = images.iter().flat_map(|i| i.diff_ids.iter().map(|d| hex_of(d).to_string())).collect();
    let got: BTreeSet<String> = root.layer_dirs().into_iter().collect();
    assert_eq!(got, want_layers, "<root>/layers/ entries vs the images' diff_ids");
}

/// Checks an archive written by `berth save`: manifest.json plus the Docker 25 OCI layout
/// (`index.json`, `oci-layout`, `blobs/sha256/<config>`), and the same IDs, diff_ids and tags as
/// the images saved.
pub fn assert_saved_archive(path: &Path, images: &[Image]) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let entries: BTreeMap<String, TarEntry> = tar_entries(&bytes).into_iter().map(|e| (e.path.clone(), e)).collect();
    for name in ["manifest.json", "index.json", "oci-layout"] {
        assert!(entries.contains_key(name), "saved archive lacks {name}");
    }
    let got = read_archive(path);
    assert_eq!(got.len(), images.len(), "images in the saved archive");
    for want in images {
        let g = got.iter().find(|g| g.id == want.id).unwrap_or_else(|| panic!("saved archive lacks image {}", want.id));
        assert_eq!(g.diff_ids, want.diff_ids, "diff_ids in the saved archive");
        let a: BTreeSet<&String> = g.tags.iter().collect();
        let b: BTreeSet<&String> = want.tags.iter().collect();
        assert_eq!(a, b, "RepoTags in the saved archive");
        let blob = format!("blobs/sha256/{}", hex_of(&want.id));
        assert!(entries.contains_key(&blob), "saved archive lacks {blob}");
    }
}

/// skopeo reads the saved archive: `skopeo inspect` lists the diff_ids, the raw config has the
/// image ID as its sha256, `skopeo copy` to an OCI layout keeps the diff_ids and to a `dir:` keeps
/// the config digest.
pub fn assert_skopeo_accepts(path: &Path, images: &[Image], scratch: &Path) {
    for (i, img) in images.iter().enumerate() {
        let src = if images.len() == 1 { format!("docker-archive:{}", s(path)) } else { format!("docker-archive:{}:@{i}", s(path)) };
        let info: Value = serde_json::from_str(&tool("skopeo", &["inspect", &src])).expect("skopeo inspect prints JSON");
        let layers: Vec<&str> =
            info["Layers"].as_array().expect("skopeo inspect Layers").iter().map(|v| v.as_str().unwrap_or("")).collect();
        assert_eq!(layers, img.diff_ids, "skopeo inspect {src}: Layers");
        let out = run(Command::new("skopeo").args(["inspect", "--raw", "--config", &src]), Stdin::Null);
        assert!(out.status.success(), "skopeo inspect --raw --config {src}");
        assert_eq!(sha256_digest(&out.stdout), img.id, "skopeo: raw config digest of {src}");
        // To an OCI layout: skopeo re-serialises the config while converting the manifest, so
        // the digest may change; the diff_ids must not.
        let dir = scratch.join(format!("skopeo-oci-{}", hex_of(&img.id)));
        tool("skopeo", &["copy", "-q", &src, &format!("oci:{}:copied", s(&dir))]);
        let index = read_json(&dir.join("index.json"));
        let mdig = index["manifests"][0]["digest"].as_str().expect("manifest digest");
        let manifest = read_json(&dir.join("blobs/sha256").join(hex_of(mdig)));
        let cdig = manifest["config"]["digest"].as_str().expect("config digest");
        let config = read_json(&dir.join("blobs/sha256").join(hex_of(cdig)));
        assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(img.diff_ids), "skopeo copy to oci: diff_ids");
        let _ = fs::remove_dir_all(&dir);
        // To a `dir:` copy, which keeps the manifest type: the config digest stays the image ID.
        let dir = scratch.join(format!("skopeo-dir-{}", hex_of(&img.id)));
        tool("skopeo", &["copy", "-q", &src, &format!("dir:{}", s(&dir))]);
        let manifest = read_json(&dir.join("manifest.json"));
        assert_eq!(manifest["config"]["digest"], img.id.as_str(), "skopeo copy to dir: config digest");
        let _ = fs::remove_dir_all(&dir);
    }
}

fn read_json(path: &Path) -> Value {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&data).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// podman (private vfs storage) loads the saved archive and lists every image with its ID and tags.
pub fn assert_podman_accepts(path: &Path, images: &[Image], scratch: &Path) {
    let pm = Podman::new(&scratch.join("podman"));
    pm.ok(&["load", "-i", s(path)]);
    let out = pm.ok(&["images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    for img in images {
        let hex = hex_of(&img.id);
        let rows: Vec<&str> = out.lines().filter(|l| l.contains(hex)).collect();
        assert!(!rows.is_empty(), "podman images lacks {}:\n{out}", img.id);
        for t in &img.tags {
            assert!(
                rows.iter().any(|r| {
                    let name = r.split(' ').next().unwrap_or("");
                    crate::fixtures::familiar(name) == *t || name == format!("localhost/{t}")
                }),
                "podman images lacks tag {t} for {}:\n{out}",
                img.id
            );
        }
    }
}

/// The full round trip for one archive: load into a fresh root, check the store, save, check the
/// saved archive with skopeo and podman, load it into another fresh root and check again.
pub fn round_trip(path: &Path, images: &[Image]) {
    crate::require_root();
    let root = Root::new();
    let out = root.ok(&["load", "-i", s(path)]);
    assert_load_output(&out, images);
    assert_store_holds(&root, images);

    let saved = root.scratch().join("saved.tar");
    let mut args = vec!["save".to_string(), "-o".to_string(), s(&saved).to_string()];
    // Every tag is named (Docker saves only the tags it is given), an untagged image by its ID.
    for img in images {
        if img.tags.is_empty() {
            args.push(img.id.clone());
        }
        args.extend(img.tags.iter().cloned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    root.ok(&args);
    assert_saved_archive(&saved, images);
    assert_skopeo_accepts(&saved, images, root.scratch());
    assert_podman_accepts(&saved, images, root.scratch());

    let again = Root::new();
    let out = again.ok(&["load", "-i", s(&saved)]);
    assert_load_output(&out, images);
    assert_store_holds(&again, images);
}

/// Exports `reference` and checks the layered image's merged view: whiteouts applied
/// (`/data` = keep.txt only, `/opt/app` = new.txt only, app.conf says version=2, no `.wh.` names).
pub fn assert_layered_export(root: &Root, reference: &str) -> Vec<TarEntry> {
    let out = root.scratch().join("export.tar");
    root.ok(&["export", "-o", s(&out), reference]);
    let entries = tar_entries(&fs::read(&out).expect("read export"));
    let _ = fs::remove_file(&out);
    assert_layered_view(&entries);
    entries
}

/// The layered image's merged view, checked on the entries of a flattened rootfs tar.
pub fn assert_layered_view(entries: &[TarEntry]) {
    let names: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let wh: Vec<&&str> = names.iter().filter(|n| n.contains(".wh.")).collect();
    assert!(wh.is_empty(), "export still holds whiteout entries: {wh:?}");
    let children = |dir: &str| -> BTreeSet<String> {
        let pre = format!("{dir}/");
        names
            .iter()
            .filter_map(|n| n.strip_prefix(&pre))
            .filter(|rest| !rest.is_empty())
            .map(|rest| rest.split('/').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(children("data"), BTreeSet::from(["keep.txt".to_string()]), "/data");
    assert_eq!(children("opt/app"), BTreeSet::from(["new.txt".to_string()]), "/opt/app");
    let conf = entries.iter().find(|e| e.path == "etc/app/app.conf").expect("export has etc/app/app.conf");
    assert_eq!(conf.data, b"version=2\n", "app.conf content");
    assert!(names.contains("bin/busybox"), "export has bin/busybox");
}
