//! Image fixtures built once per test process with real tools (no network), and a reader that
//! takes the expected image IDs and diff_ids from the JSON those tools wrote.
//!
//! Images (all made here, so their IDs change from build to build; never hard-code them):
//! - `busybox:latest`: 1 layer, `umoci repack` of a rootfs holding Debian's `/bin/busybox`.
//! - `layered:latest`: busybox layer + a `umoci repack` layer adding files + a top layer (GNU tar,
//!   added with `umoci raw add-layer`) with a whiteout `data/.wh.remove-me.txt` and an opaque
//!   marker `opt/app/.wh..wh..opq`, as in the shared corpus's layered image.
//! - `tiny:latest`: 1 small layer (a text file); `big:latest`: tiny + an 8 MiB random file.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::{hex_of, is_hex64, make_temp_dir, run, s, sha256_digest, sha256_hex, tool, Stdin};

/// Applets linked to `/bin/busybox` in the fixture rootfs (as in the shared corpus).
pub const APPLETS: &[&str] = &[
    "sh", "ash", "sleep", "echo", "cat", "true", "false", "ls", "env", "id", "mount", "ps", "mkdir", "rm", "touch", "head", "wc", "uname",
    "hostname", "grep", "sed", "test", "printf", "dd", "stat", "df", "free", "kill", "date", "readlink", "sync",
];

/// One image as recorded from an archive: what berth must report for it.
#[derive(Clone, Debug)]
pub struct Image {
    /// `sha256:<hex>` of the config blob (the image ID).
    pub id: String,
    /// `sha256:<hex>` of each uncompressed layer, bottom first.
    pub diff_ids: Vec<String>,
    /// Familiar `name:tag` references (`busybox:latest`, not `docker.io/library/busybox:latest`).
    pub tags: Vec<String>,
    /// The whole image config, as the tool wrote it.
    pub config: Value,
}

/// An archive file and the images it holds.
#[derive(Clone, Debug)]
pub struct Archive {
    pub path: PathBuf,
    pub images: Vec<Image>,
}

impl Archive {
    /// The single image of a one-image archive.
    pub fn image(&self) -> &Image {
        assert_eq!(self.images.len(), 1, "{} holds one image", self.path.display());
        &self.images[0]
    }
}

/// Everything [`fixtures()`] builds. Paths live in one temp dir removed when the process exits.
pub struct Fixtures {
    pub dir: PathBuf,
    /// The busybox rootfs directory (import source); `rootfs_files` lists it (relative paths).
    pub rootfs: PathBuf,
    pub rootfs_files: Vec<String>,
    /// `tar -C rootfs -cf rootfs.tar .` and its gzip / xz compressions.
    pub rootfs_tar: PathBuf,
    pub rootfs_tar_gz: PathBuf,
    pub rootfs_tar_xz: PathBuf,
    /// skopeo docker-archive (docker-save format), `busybox:latest`.
    pub busybox: Archive,
    /// skopeo docker-archive, `layered:latest` (3 layers, whiteout + opaque dir).
    pub layered: Archive,
    /// skopeo oci-archive, gzip layers.
    pub busybox_oci: Archive,
    pub layered_oci: Archive,
    /// skopeo oci-archive with `--dest-compress-format zstd` (zstd layers), `layered:zstd`.
    pub layered_oci_zstd: Archive,
    /// skopeo oci-archive with uncompressed layers (`--dest-oci-accept-uncompressed-layers`).
    pub layered_oci_plain: Archive,
    /// `podman save` (docker-archive) of layered.
    pub layered_podman: Archive,
    /// `podman save -m busybox layered`: two images sharing the busybox layer.
    pub multi_podman: Archive,
    /// busybox with three tags (`skopeo --additional-tag`).
    pub tags: Archive,
    /// tiny with no tag at all (`RepoTags: []`).
    pub untagged: Archive,
    /// layered.tar compressed as a whole: gzip, bzip2, xz, zstd.
    pub layered_gz: Archive,
    pub layered_bz2: Archive,
    pub layered_xz: Archive,
    pub layered_zst: Archive,
    /// Small and big (8 MiB random file) docker-archives for the disk-full test.
    pub tiny: Archive,
    pub big: Archive,
}

impl Fixtures {
    /// Every archive with a short name, for tests that loop over all kinds.
    pub fn all(&self) -> Vec<(&'static str, &Archive)> {
        vec![
            ("busybox docker-archive", &self.busybox),
            ("layered docker-archive", &self.layered),
            ("busybox oci-archive gzip", &self.busybox_oci),
            ("layered oci-archive gzip", &self.layered_oci),
            ("layered oci-archive zstd", &self.layered_oci_zstd),
            ("layered oci-archive plain", &self.layered_oci_plain),
            ("layered podman save", &self.layered_podman),
            ("two images podman save -m", &self.multi_podman),
            ("busybox three tags", &self.tags),
            ("untagged", &self.untagged),
            ("layered.tar.gz", &self.layered_gz),
            ("layered.tar.bz2", &self.layered_bz2),
            ("layered.tar.xz", &self.layered_xz),
            ("layered.tar.zst", &self.layered_zst),
            ("tiny", &self.tiny),
            ("big", &self.big),
        ]
    }
}

static FIXTURES: OnceLock<Result<Fixtures, String>> = OnceLock::new();
static FIXTURE_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_fixture_dir() {
    if let Some(dir) = FIXTURE_DIR.get() {
        let _ = fs::remove_dir_all(dir);
    }
}

/// The fixtures, built on first use (once per test process, whichever thread gets there first).
/// A failed build is reported by every test that asks, without building again.
pub fn fixtures() -> &'static Fixtures {
    let res = FIXTURES.get_or_init(|| {
        std::panic::catch_unwind(build).map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string())
        })
    });
    match res {
        Ok(f) => f,
        Err(e) => panic!("building the image fixtures failed: {e}"),
    }
}

fn build() -> Fixtures {
    crate::require_root();
    let dir = make_temp_dir("berth-fixtures");
    if FIXTURE_DIR.set(dir.clone()).is_ok() {
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe { libc::atexit(remove_fixture_dir) };
    }
    let p = |name: &str| dir.join(name);

    // The busybox rootfs.
    let busybox_bin = Path::new("/bin/busybox");
    assert!(busybox_bin.is_file(), "/bin/busybox missing: install busybox-static (scripts/test does)");
    let rootfs = p("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "root", "var", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs dir");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod rootfs/tmp");
    fs::copy(busybox_bin, rootfs.join("bin/busybox")).expect("copy /bin/busybox");
    fs::set_permissions(rootfs.join("bin/busybox"), fs::Permissions::from_mode(0o755)).expect("chmod busybox");
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).expect("applet symlink");
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
    let rootfs_files = list_tree(&rootfs);

    // OCI layout with umoci.
    let layout = p("oci");
    let img = |name: &str| format!("{}:{name}", s(&layout));
    tool("umoci", &["init", "--layout", s(&layout)]);
    let env_path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    // busybox:latest
    tool("umoci", &["new", "--image", &img("busybox")]);
    let b1 = p("bundle-busybox");
    tool("umoci", &["unpack", "--image", &img("busybox"), s(&b1)]);
    tool("cp", &["-a", &format!("{}/.", s(&rootfs)), s(&b1.join("rootfs"))]);
    tool("umoci", &["repack", "--image", &img("busybox"), s(&b1)]);
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &img("busybox"),
            "--config.cmd",
            "sh",
            "--config.workingdir",
            "/",
            "--config.env",
            env_path,
            "--architecture",
            "amd64",
            "--os",
            "linux",
        ],
    );

    // layered:latest = busybox + files + (whiteout, opaque dir, changed file)
    let b2 = p("bundle-layered");
    tool("umoci", &["unpack", "--image", &img("busybox"), s(&b2)]);
    let r2 = b2.join("rootfs");
    for d in ["data", "opt/app/sub", "etc/app"] {
        fs::create_dir_all(r2.join(d)).expect("mkdir layered dir");
    }
    for (f, c) in [
        ("data/keep.txt", "keep\n"),
        ("data/remove-me.txt", "this file is removed\n"),
        ("opt/app/old1.txt", "old1\n"),
        ("opt/app/old2.txt", "old2\n"),
        ("opt/app/sub/old3.txt", "old3\n"),
        ("etc/app/app.conf", "version=1\n"),
    ] {
        fs::write(r2.join(f), c).expect("write layered file");
    }
    tool("umoci", &["repack", "--image", &img("layered"), s(&b2)]);
    let l3 = p("layer3");
    for d in ["data", "opt/app", "etc/app"] {
        fs::create_dir_all(l3.join(d)).expect("mkdir layer3 dir");
    }
    fs::write(l3.join("data/.wh.remove-me.txt"), "").expect("whiteout");
    fs::set_permissions(l3.join("data/.wh.remove-me.txt"), fs::Permissions::from_mode(0o000)).expect("chmod whiteout");
    fs::write(l3.join("opt/app/.wh..wh..opq"), "").expect("opaque marker");
    fs::write(l3.join("opt/app/new.txt"), "new\n").expect("new.txt");
    fs::write(l3.join("etc/app/app.conf"), "version=2\n").expect("app.conf");
    let l3_tar = p("layer3.tar");
    tool(
        "tar",
        &["--numeric-owner", "--owner=0", "--group=0", "--sort=name", "--mtime=@0", "-C", s(&l3), "-cf", s(&l3_tar), "data", "etc", "opt"],
    );
    tool("umoci", &["raw", "add-layer", "--image", &img("layered"), s(&l3_tar)]);
    tool("umoci", &["config", "--image", &img("layered"), "--config.label", "org.example.fixture=layered"]);

    // tiny:latest and big:latest (for the disk-full test)
    tool("umoci", &["new", "--image", &img("tiny")]);
    let bt = p("bundle-tiny");
    tool("umoci", &["unpack", "--image", &img("tiny"), s(&bt)]);
    fs::write(bt.join("rootfs/hello.txt"), "hello from tiny\n").expect("hello.txt");
    tool("umoci", &["repack", "--image", &img("tiny"), s(&bt)]);
    tool("umoci", &["config", "--image", &img("tiny"), "--config.cmd", "/hello.txt", "--architecture", "amd64", "--os", "linux"]);
    let bb = p("bundle-big");
    tool("umoci", &["unpack", "--image", &img("tiny"), s(&bb)]);
    fs::write(bb.join("rootfs/big.bin"), pseudo_random(8 << 20, 0x5eed)).expect("big.bin");
    tool("umoci", &["repack", "--image", &img("big"), s(&bb)]);
    for b in [&b1, &b2, &bt, &bb, &l3] {
        fs::remove_dir_all(b).expect("remove bundle");
    }

    // Archives with skopeo.
    let oci = |name: &str| format!("oci:{}", img(name));
    let skopeo = |args: &[&str]| {
        let mut a = vec!["copy", "-q"];
        a.extend_from_slice(args);
        tool("skopeo", &a);
    };
    let busybox_tar = p("busybox.tar");
    skopeo(&[&oci("busybox"), &format!("docker-archive:{}:busybox:latest", s(&busybox_tar))]);
    let layered_tar = p("layered.tar");
    skopeo(&[&oci("layered"), &format!("docker-archive:{}:layered:latest", s(&layered_tar))]);
    let tiny_tar = p("tiny.tar");
    skopeo(&[&oci("tiny"), &format!("docker-archive:{}:tiny:latest", s(&tiny_tar))]);
    let big_tar = p("big.tar");
    skopeo(&[&oci("big"), &format!("docker-archive:{}:big:latest", s(&big_tar))]);
    let tags_tar = p("tags.tar");
    skopeo(&[
        "--additional-tag",
        "busybox:v1",
        "--additional-tag",
        "example.com/team/bb:2",
        &oci("busybox"),
        &format!("docker-archive:{}:busybox:latest", s(&tags_tar)),
    ]);
    let untagged_tar = p("untagged.tar");
    skopeo(&[&oci("tiny"), &format!("docker-archive:{}", s(&untagged_tar))]);
    let busybox_oci = p("busybox-oci.tar");
    skopeo(&[&oci("busybox"), &format!("oci-archive:{}:busybox:latest", s(&busybox_oci))]);
    let layered_oci = p("layered-oci.tar");
    skopeo(&[&oci("layered"), &format!("oci-archive:{}:layered:latest", s(&layered_oci))]);
    let layered_zstd = p("layered-oci-zstd.tar");
    skopeo(&["--dest-compress-format", "zstd", &oci("layered"), &format!("oci-archive:{}:layered:zstd", s(&layered_zstd))]);
    let plain_dir = p("layered-dir");
    skopeo(&["--dest-decompress", &oci("layered"), &format!("dir:{}", s(&plain_dir))]);
    let layered_plain = p("layered-oci-plain.tar");
    skopeo(&[
        "--dest-oci-accept-uncompressed-layers",
        &format!("dir:{}", s(&plain_dir)),
        &format!("oci-archive:{}:layered:plain", s(&layered_plain)),
    ]);

    // podman save: single image, and two images sharing a layer in one archive.
    let pm = Podman::new(&dir.join("podman"));
    pm.ok(&["load", "-i", s(&busybox_tar)]);
    pm.ok(&["load", "-i", s(&layered_tar)]);
    let layered_podman = p("layered-podman.tar");
    pm.ok(&["save", "--format", "docker-archive", "-o", s(&layered_podman), "layered:latest"]);
    let multi = p("multi-podman.tar");
    pm.ok(&["save", "--format", "docker-archive", "-m", "-o", s(&multi), "busybox:latest", "layered:latest"]);

    // Whole-archive compression, and the import tarballs.
    let compressed = |prog: &str, args: &[&str], src: &Path, ext: &str| -> PathBuf {
        let mut a: Vec<&str> = args.to_vec();
        a.push(s(src));
        tool(prog, &a);
        let out = PathBuf::from(format!("{}.{ext}", s(src)));
        assert!(out.is_file(), "{prog} did not write {}", out.display());
        out
    };
    let layered_gz = compressed("gzip", &["-k", "-f", "-n"], &layered_tar, "gz");
    let layered_bz2 = compressed("bzip2", &["-k", "-f"], &layered_tar, "bz2");
    let layered_xz = compressed("xz", &["-k", "-f"], &layered_tar, "xz");
    let layered_zst = compressed("zstd", &["-q", "-k", "-f"], &layered_tar, "zst");
    let rootfs_tar = p("rootfs.tar");
    tool("tar", &["--numeric-owner", "-C", s(&rootfs), "-cf", s(&rootfs_tar), "."]);
    let rootfs_tar_gz = compressed("gzip", &["-k", "-f", "-n"], &rootfs_tar, "gz");
    let rootfs_tar_xz = compressed("xz", &["-k", "-f"], &rootfs_tar, "xz");

    let a = |path: PathBuf| Archive { images: read_archive(&path), path };
    let f = Fixtures {
        rootfs,
        rootfs_files,
        rootfs_tar,
        rootfs_tar_gz,
        rootfs_tar_xz,
        busybox: a(busybox_tar),
        layered: a(layered_tar),
        busybox_oci: a(busybox_oci),
        layered_oci: a(layered_oci),
        layered_oci_zstd: a(layered_zstd),
        layered_oci_plain: a(layered_plain),
        layered_podman: a(layered_podman),
        multi_podman: a(multi),
        tags: a(tags_tar),
        untagged: a(untagged_tar),
        layered_gz: a(layered_gz),
        layered_bz2: a(layered_bz2),
        layered_xz: a(layered_xz),
        layered_zst: a(layered_zst),
        tiny: a(tiny_tar),
        big: a(big_tar),
        dir,
    };
    sanity_check(&f);
    f
}

/// Cross-checks between what the tools wrote, so a broken fixture fails here, not in berth's tests.
fn sanity_check(f: &Fixtures) {
    let bb = f.busybox.image();
    let lay = f.layered.image();
    assert_eq!(bb.diff_ids.len(), 1, "busybox has one layer");
    assert_eq!(lay.diff_ids.len(), 3, "layered has three layers");
    assert_eq!(lay.diff_ids[0], bb.diff_ids[0], "layered starts with the busybox layer");
    assert_eq!(bb.tags, ["busybox:latest"]);
    assert_eq!(lay.tags, ["layered:latest"]);
    for (name, arch) in [
        ("busybox oci", &f.busybox_oci),
        ("layered oci", &f.layered_oci),
        ("layered zstd", &f.layered_oci_zstd),
        ("layered plain", &f.layered_oci_plain),
        ("layered podman", &f.layered_podman),
        ("layered gz", &f.layered_gz),
        ("layered bz2", &f.layered_bz2),
        ("layered xz", &f.layered_xz),
        ("layered zst", &f.layered_zst),
    ] {
        let want = if name.starts_with("busybox") { bb } else { lay };
        let got = arch.image();
        assert_eq!(got.id, want.id, "{name}: same image ID as the docker-archive");
        assert_eq!(got.diff_ids, want.diff_ids, "{name}: same diff_ids");
    }
    for (arch, suffix) in [
        (&f.busybox_oci, "tar+gzip"),
        (&f.layered_oci, "tar+gzip"),
        (&f.layered_oci_zstd, "tar+zstd"),
        (&f.layered_oci_plain, "layer.v1.tar"),
    ] {
        for mt in oci_layer_media_types(&arch.path) {
            assert!(mt.ends_with(suffix), "{}: layer media type {mt}, want *{suffix}", arch.path.display());
        }
    }
    assert_eq!(f.layered_oci_zstd.image().tags, ["layered:zstd"]);
    assert_eq!(f.layered_oci_plain.image().tags, ["layered:plain"]);
    let multi: Vec<&str> = f.multi_podman.images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(multi, [bb.id.as_str(), lay.id.as_str()], "podman -m holds busybox and layered");
    assert_eq!(f.tags.image().id, bb.id);
    assert_eq!(f.tags.image().tags, ["busybox:latest", "busybox:v1", "example.com/team/bb:2"]);
    assert!(f.untagged.image().tags.is_empty(), "untagged has no tags");
    assert_eq!(f.untagged.image().id, f.tiny.image().id);
    assert_eq!(f.big.image().diff_ids.len(), 2);
    for (name, a) in f.all() {
        assert!(a.path.is_file(), "{name}: {} missing", a.path.display());
        for i in &a.images {
            assert!(is_hex64(hex_of(&i.id)), "{name}: bad id {}", i.id);
            for d in &i.diff_ids {
                assert!(is_hex64(hex_of(d)), "{name}: bad diff_id {d}");
            }
        }
    }
}

/// The layer media types of every manifest in an oci-archive.
pub fn oci_layer_media_types(path: &Path) -> Vec<String> {
    let entries: BTreeMap<String, TarEntry> = tar_entries(&read_maybe_compressed(path)).into_iter().map(|e| (e.path.clone(), e)).collect();
    let json = |name: &str| -> Value {
        let e = entries.get(name).unwrap_or_else(|| panic!("{}: no {name}", path.display()));
        serde_json::from_slice(&e.data).unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()))
    };
    let mut out = Vec::new();
    for desc in json("index.json")["manifests"].as_array().expect("index manifests") {
        let digest = desc["digest"].as_str().expect("manifest digest");
        let manifest = json(&format!("blobs/sha256/{}", hex_of(digest)));
        for l in manifest["layers"].as_array().expect("manifest layers") {
            out.push(l["mediaType"].as_str().expect("mediaType").to_string());
        }
    }
    assert!(!out.is_empty(), "{}: no layers", path.display());
    out
}

/// `podman` with private storage (vfs) under a given directory: never touches the host's.
pub struct Podman {
    root: PathBuf,
    runroot: PathBuf,
}

impl Podman {
    pub fn new(dir: &Path) -> Podman {
        let root = dir.join("root");
        let runroot = dir.join("runroot");
        fs::create_dir_all(&root).expect("mkdir podman root");
        fs::create_dir_all(&runroot).expect("mkdir podman runroot");
        Podman { root, runroot }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs"])
            .args(args);
        c
    }

    /// Runs podman; panics with its stderr unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = run(&mut self.command(args), Stdin::Null);
        if !out.status.success() {
            panic!(
                "podman {} failed ({}):\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Deterministic incompressible bytes (xorshift64*), so the big layer really takes its size.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Relative paths of everything under `dir` (not `dir` itself), sorted.
pub fn list_tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = e.expect("dir entry").path();
            let rel = path.strip_prefix(base).expect("under base");
            out.push(rel.to_string_lossy().into_owned());
            let md = fs::symlink_metadata(&path).expect("lstat");
            if md.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// One entry of a tar archive, fully read.
#[derive(Clone, Debug)]
pub struct TarEntry {
    /// Normalised path: no leading `./` or `/`, no trailing `/`.
    pub path: String,
    pub kind: tar::EntryType,
    pub link: Option<String>,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// Normalises an archive path: drops leading `./` and `/`, trailing `/`; `.` becomes empty.
pub fn norm(p: &str) -> String {
    let mut p = p;
    loop {
        if let Some(r) = p.strip_prefix("./") {
            p = r;
        } else if let Some(r) = p.strip_prefix('/') {
            p = r;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// Reads every entry of a tar held in memory (long names and PAX headers resolved by `tar`).
pub fn tar_entries(bytes: &[u8]) -> Vec<TarEntry> {
    use std::io::Read;
    let mut ar = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let path = norm(&String::from_utf8_lossy(&e.path_bytes()));
        let link = e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
        let kind = e.header().entry_type();
        let mode = e.header().mode().expect("tar mode");
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read tar entry data");
        out.push(TarEntry { path, kind, link, mode, data });
    }
    out
}

/// Reads a file, decompressing it as a whole first if its magic bytes say gzip, bzip2, xz or
/// zstd (with the real tools).
pub fn read_maybe_compressed(path: &Path) -> Vec<u8> {
    let raw = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let prog = if raw.starts_with(&[0x1f, 0x8b]) {
        "gzip"
    } else if raw.starts_with(b"BZh") {
        "bzip2"
    } else if raw.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz"
    } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd"
    } else {
        return raw;
    };
    let out = run(Command::new(prog).arg("-dc").arg(path), Stdin::Null);
    assert!(out.status.success(), "{prog} -dc {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Docker's familiar form of a reference: `docker.io/library/x:t` -> `x:t`, `docker.io/a/b` ->
/// `a/b`; anything else unchanged.
pub fn familiar(name: &str) -> String {
    let n = name.strip_prefix("docker.io/").or_else(|| name.strip_prefix("index.docker.io/")).unwrap_or(name);
    match n.strip_prefix("library/") {
        Some(rest) if !rest.contains('/') => rest.to_string(),
        _ => n.to_string(),
    }
}

/// The images of an archive file (docker-archive or oci-archive, plain or compressed as a whole),
/// taken from the manifest/index/config JSON inside it. Checks that every config's sha256 matches
/// its name and that every plain layer's sha256 matches its diff_id.
pub fn read_archive(path: &Path) -> Vec<Image> {
    let bytes = read_maybe_compressed(path);
    read_archive_bytes(&bytes, &path.display().to_string())
}

/// [`read_archive`] on bytes already in memory; `what` names them in messages.
pub fn read_archive_bytes(bytes: &[u8], what: &str) -> Vec<Image> {
    let entries = tar_entries(bytes);
    let map: BTreeMap<String, TarEntry> = entries.into_iter().map(|e| (e.path.clone(), e)).collect();
    let get = |name: &str| -> Vec<u8> { resolve(&map, &norm(name), what) };
    let json = |name: &str| -> Value { serde_json::from_slice(&get(name)).unwrap_or_else(|e| panic!("{what}: {name} is not JSON: {e}")) };
    let config_of = |cfg_name: &str, digest: Option<&str>| -> (String, Value) {
        let raw = get(cfg_name);
        let id = sha256_digest(&raw);
        if let Some(d) = digest {
            assert_eq!(id, d, "{what}: config {cfg_name} digest");
        }
        let config: Value = serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{what}: config {cfg_name}: {e}"));
        (id, config)
    };
    let diff_ids_of = |config: &Value| -> Vec<String> {
        config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: config without rootfs.diff_ids"))
            .iter()
            .map(|d| d.as_str().expect("diff_id is a string").to_string())
            .collect()
    };
    let mut images = Vec::new();
    if map.contains_key("manifest.json") {
        let manifest = json("manifest.json");
        let items = manifest.as_array().unwrap_or_else(|| panic!("{what}: manifest.json is not an array"));
        for item in items {
            let cfg_name = item["Config"].as_str().expect("manifest Config");
            let (id, config) = config_of(cfg_name, None);
            // The config's name carries its digest: `<hex>.json` or `blobs/sha256/<hex>`.
            let stem = cfg_name.rsplit('/').next().unwrap_or(cfg_name);
            let stem = stem.strip_suffix(".json").unwrap_or(stem);
            assert_eq!(stem, hex_of(&id), "{what}: config name vs its sha256");
            let diff_ids = diff_ids_of(&config);
            let layers = item["Layers"].as_array().expect("manifest Layers");
            assert_eq!(layers.len(), diff_ids.len(), "{what}: layer count");
            for (l, d) in layers.iter().zip(&diff_ids) {
                let data = get(l.as_str().expect("layer name"));
                if !is_compressed(&data) {
                    assert_eq!(&sha256_digest(&data), d, "{what}: layer {l} vs diff_id");
                }
            }
            let tags = match &item["RepoTags"] {
                Value::Array(t) => t.iter().map(|t| familiar(t.as_str().expect("tag string"))).collect(),
                _ => Vec::new(),
            };
            images.push(Image { id, diff_ids, tags, config });
        }
    } else if map.contains_key("index.json") {
        let index = json("index.json");
        let descs = index["manifests"].as_array().unwrap_or_else(|| panic!("{what}: index.json without manifests"));
        for desc in descs {
            let digest = desc["digest"].as_str().expect("manifest digest");
            let manifest = json(&format!("blobs/sha256/{}", hex_of(digest)));
            let cfg_digest = manifest["config"]["digest"].as_str().expect("config digest");
            let (id, config) = config_of(&format!("blobs/sha256/{}", hex_of(cfg_digest)), Some(cfg_digest));
            let diff_ids = diff_ids_of(&config);
            let annotations = &desc["annotations"];
            let name =
                annotations["io.containerd.image.name"].as_str().or_else(|| annotations["org.opencontainers.image.ref.name"].as_str());
            let tags = match name {
                Some(n) if n.contains(':') || n.contains('/') => vec![familiar(n)],
                _ => Vec::new(),
            };
            images.push(Image { id, diff_ids, tags, config });
        }
    } else {
        panic!("{what}: neither manifest.json nor index.json: not an image archive");
    }
    images
}

fn is_compressed(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b]) || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// The data of an entry, following symlinks inside the archive (c/image's `layer.tar -> ../x.tar`).
fn resolve(map: &BTreeMap<String, TarEntry>, name: &str, what: &str) -> Vec<u8> {
    let mut name = name.to_string();
    for _ in 0..16 {
        let e = map.get(&name).unwrap_or_else(|| panic!("{what}: no entry {name:?}"));
        if e.kind != tar::EntryType::Symlink {
            return e.data.clone();
        }
        let target = e.link.clone().expect("symlink target");
        let dir = match name.rfind('/') {
            Some(i) => &name[..i],
            None => "",
        };
        let mut parts: Vec<&str> = if target.starts_with('/') { Vec::new() } else { dir.split('/').filter(|p| !p.is_empty()).collect() };
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        name = parts.join("/");
    }
    panic!("{what}: symlink loop at {name}")
}

/// sha256 hex of a file's contents.
pub fn file_sha256_hex(path: &Path) -> String {
    sha256_hex(&fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}
