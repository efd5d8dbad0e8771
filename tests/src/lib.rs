//! Harness for berth's end-to-end tests.
//!
//! The tests run the real `berth` binary (`BERTH_BIN`, else `<workspace>/target/debug/berth`)
//! against throw-away roots, and compare what it does with what real tools (umoci, skopeo,
//! podman, GNU tar, gzip/bzip2/xz/zstd) produce or accept. Nothing here mocks berth or the kernel.
//!
//! - [`Root`]: a temporary `--root` plus a scratch directory beside it, and helpers to run berth.
//! - [`fixtures()`]: image archives built once per test process with real tools ([`fixtures`]).
//! - [`craft`]: hand-made archives for bad-input tests, valid except for the thing under test.
//! - [`check`]: assertions shared by the test files (listing, inspect, save, skopeo, podman).
//! - [`mqtt`]: a real mosquitto (plain or mutual TLS), `berth fleet`, agents on the broker and
//!   hand-made update messages, for the update tests.

pub mod agent;
pub mod check;
pub mod container;
pub mod craft;
pub mod fixtures;
pub mod mqtt;
pub mod netns;
pub mod registry;
pub mod supervise;

pub use fixtures::{fixtures, Archive, Fixtures, Image};

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// No single command of the suite should take longer than this; a hung berth fails the test.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Where temporary roots, scratch dirs and fixtures go (disk-backed, not a small tmpfs).
pub const TEMP_BASE: &str = "/var/tmp";

/// Calls `f` every 50 ms until it returns `Some`, for up to `timeout`; `Err` naming `what`
/// otherwise. The one wait-until helper of the suites (no test asserts on how long it took).
pub fn try_poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: still not the case after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`try_poll`] that panics naming `what` when time runs out.
pub fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    try_poll(what, timeout, f).unwrap_or_else(|e| panic!("{e}"))
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ crate has a parent directory").to_path_buf()
}

/// The berth binary under test: `BERTH_BIN`, else `<workspace>/target/debug/berth`.
pub fn berth_bin() -> PathBuf {
    let path = match std::env::var_os("BERTH_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/debug/berth"),
    };
    if !path.is_file() {
        panic!(
            "berth binary not found at {}: build with cargo build --workspace --bins first \
             (or set BERTH_BIN; scripts/test does both)",
            path.display()
        );
    }
    path
}

/// Panics unless running as uid 0: these tests must fail loudly, never pass silently, without root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        panic!("this test needs root (euid 0, got {uid}): run the suite as root, e.g. scripts/test");
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    let sum = Sha256::digest(data);
    sum.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for exactly 64 lower-case hex digits.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hex part of `sha256:<hex>` (panics with context on anything else).
pub fn hex_of(digest: &str) -> &str {
    match digest.strip_prefix("sha256:") {
        Some(h) if is_hex64(h) => h,
        _ => panic!("not a sha256 digest: {digest:?}"),
    }
}

/// A path as `&str` (all paths of the suite are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {path:?}"))
}

/// Creates a fresh directory `/var/tmp/<prefix>-XXXXXX` (mode 0700) and returns its path.
pub fn make_temp_dir(prefix: &str) -> PathBuf {
    let template = CString::new(format!("{TEMP_BASE}/{prefix}-XXXXXX")).expect("temp dir prefix has no NUL");
    let mut buf = template.into_bytes_with_nul();
    // SAFETY: buf is a writable NUL-terminated template ending in XXXXXX, as mkdtemp requires.
    let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast::<libc::c_char>()) };
    if p.is_null() {
        panic!("mkdtemp {TEMP_BASE}/{prefix}-XXXXXX: {}", std::io::Error::last_os_error());
    }
    buf.pop();
    PathBuf::from(OsString::from_vec(buf))
}

/// What to feed a command on standard input.
pub enum Stdin {
    Null,
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// Runs a command to completion with a timeout, capturing stdout and stderr. Never panics on a
/// non-zero exit; panics (with the command line) if it cannot start or runs past the timeout.
pub fn run(cmd: &mut Command, stdin: Stdin) -> Output {
    let desc = format!("{cmd:?}");
    let mut bytes = None;
    match stdin {
        Stdin::Null => {
            cmd.stdin(Stdio::null());
        }
        Stdin::Bytes(b) => {
            cmd.stdin(Stdio::piped());
            bytes = Some(b);
        }
        Stdin::File(p) => {
            let f = fs::File::open(&p).unwrap_or_else(|e| panic!("open {} for stdin of {desc}: {e}", p.display()));
            cmd.stdin(Stdio::from(f));
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let writer = bytes.map(|data| {
        let mut w = child.stdin.take().expect("stdin is piped");
        std::thread::spawn(move || {
            // The child may legitimately stop reading early (e.g. on bad input): ignore EPIPE.
            let _ = w.write_all(&data);
        })
    });
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{desc} did not finish within {COMMAND_TIMEOUT:?}; killed");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Output { status, stdout: t_out.join().expect("stdout reader thread"), stderr: t_err.join().expect("stderr reader thread") }
}

/// Runs an external tool that must succeed; returns its stdout. Panics with stderr otherwise.
pub fn tool<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let out = run(Command::new(program).args(args), Stdin::Null);
    if !out.status.success() {
        let line: Vec<String> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
        panic!(
            "{program} {} failed ({}):\nstdout: {}\nstderr: {}",
            line.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary berth root: `<case>/root`, with `<case>` as scratch space beside it for archives,
/// podman storage and the like. Everything is removed on drop (a tmpfs root is unmounted first).
pub struct Root {
    case: PathBuf,
    root: PathBuf,
    mounted: bool,
}

impl Default for Root {
    fn default() -> Self {
        Self::new()
    }
}

impl Root {
    /// A new, empty root directory on disk.
    pub fn new() -> Root {
        let case = make_temp_dir("berth-test");
        let root = case.join("root");
        fs::create_dir(&root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
        Root { case, root, mounted: false }
    }

    /// A new root on its own tmpfs of the given size (`mount -t tmpfs -o size=SIZE`). Needs root.
    pub fn on_tmpfs(size: &str) -> Root {
        let mut r = Root::new();
        tool("mount", &["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs", s(&r.root)]);
        r.mounted = true;
        r
    }

    /// A new root on its own ext4 file system of `size_mib` MiB: an image file in the scratch
    /// directory, made with `mkfs.ext4 <mkfs_args>` and mounted with `mount -o loop,<options>`
    /// (the loop device is freed by the unmount on drop). Needs root, e2fsprogs and a loop device.
    pub fn on_ext4(size_mib: u64, mkfs_args: &[&str], options: &str) -> Root {
        let mut r = Root::new();
        let img = r.case.join("disk.img");
        let f = fs::File::create(&img).unwrap_or_else(|e| panic!("create {}: {e}", img.display()));
        f.set_len(size_mib << 20).unwrap_or_else(|e| panic!("size {}: {e}", img.display()));
        let mut args = vec!["-q", "-F"];
        args.extend_from_slice(mkfs_args);
        args.push(s(&img));
        tool("mkfs.ext4", &args);
        let opts = if options.is_empty() { "loop".to_string() } else { format!("loop,{options}") };
        let out = run(Command::new("mount").args(["-t", "ext4", "-o", &opts, s(&img), s(&r.root)]), Stdin::Null);
        assert!(
            out.status.success(),
            "mount -o {opts} of an ext4 image made with mkfs.ext4 {mkfs_args:?} failed (does this kernel support it?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        r.mounted = true;
        r
    }

    /// The `--root` directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Scratch directory beside the root (not inside it).
    pub fn scratch(&self) -> &Path {
        &self.case
    }

    /// A `berth --root <dir> ARGS...` command, with `BERTH_ROOT` removed from the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root").arg(&self.root).args(args);
        c.env_remove("BERTH_ROOT");
        c
    }

    /// Runs berth with these arguments; checks afterwards that `<root>/tmp` is empty or absent.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_in(args, Stdin::Null)
    }

    /// Like [`Root::cmd`] with something on standard input.
    pub fn cmd_in(&self, args: &[&str], stdin: Stdin) -> Output {
        let out = run(&mut self.command(args), stdin);
        self.assert_tmp_clean(&format!("berth {}", args.join(" ")));
        out
    }

    /// Runs berth, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, Stdin::Null)
    }

    /// Like [`Root::ok`] with something on standard input.
    pub fn ok_in(&self, args: &[&str], stdin: Stdin) -> String {
        let out = self.cmd_in(args, stdin);
        if !out.status.success() {
            panic!(
                "berth {} failed ({}), expected success:\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs berth, asserts a non-zero exit, returns (exit code, stderr).
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        self.fail_in(args, Stdin::Null)
    }

    /// Like [`Root::fail`] with something on standard input.
    pub fn fail_in(&self, args: &[&str], stdin: Stdin) -> (i32, String) {
        let out = self.cmd_in(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => panic!(
                "berth {} succeeded, expected failure:\nstdout: {}\nstderr: {stderr}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            ),
            Some(code) => (code, stderr),
            None => panic!("berth {} was killed by a signal ({}):\nstderr: {stderr}", args.join(" "), out.status),
        }
    }

    /// Panics if `<root>/tmp` exists and is not empty.
    pub fn assert_tmp_clean(&self, after: &str) {
        let tmp = self.root.join("tmp");
        if let Ok(rd) = fs::read_dir(&tmp) {
            let left: Vec<String> = rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            assert!(left.is_empty(), "{after} left scratch files in {}: {left:?}", tmp.display());
        }
    }

    /// Recursive listing of the root (path -> kind and size or link target), without the top-level
    /// `lock` and `tmp` (checked separately): two equal listings mean an unchanged store.
    pub fn listing(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        list_into(&self.root, &self.root, &mut out);
        out.remove("lock");
        out.retain(|k, _| k != "tmp" && !k.starts_with("tmp/"));
        out
    }

    /// Names of the entries of `<root>/layers/` (diff_id hex), sorted.
    pub fn layer_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = match fs::read_dir(self.root.join("layers")) {
            Ok(rd) => rd.map(|e| e.expect("read layers/ entry").file_name().to_string_lossy().into_owned()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {}/layers: {e}", self.root.display()),
        };
        v.sort();
        v
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if self.mounted {
            // An agent's scrub may have detached it already: then umount has nothing to say.
            let st = Command::new("umount").arg(&self.root).stderr(Stdio::null()).status();
            if !matches!(st, Ok(s) if s.success()) {
                let _ = Command::new("umount").arg("-l").arg(&self.root).stderr(Stdio::null()).status();
            }
        }
        let _ = fs::remove_dir_all(&self.case);
    }
}

fn list_into(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => panic!("list {}: {e}", dir.display()),
    };
    for entry in rd {
        let entry = entry.unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        let path = entry.path();
        let rel = path.strip_prefix(base).expect("entry under base").to_string_lossy().into_owned();
        let md = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {rel}: {e}"));
        let ft = md.file_type();
        let desc = if ft.is_dir() {
            list_into(base, &path, out);
            "dir".to_string()
        } else if ft.is_symlink() {
            let t = fs::read_link(&path).unwrap_or_else(|e| panic!("readlink {rel}: {e}"));
            format!("link -> {}", t.display())
        } else if ft.is_file() {
            format!("file {}", md.len())
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {:x}", md.rdev())
        } else {
            "other".to_string()
        };
        out.insert(rel, desc);
    }
}

/// Asserts that stderr is exactly one line, starting with `Error: `, and that it contains at least
/// one of `words` (case-insensitive). Returns that line.
pub fn assert_one_error(stderr: &str, words: &[&str]) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("Error: "),
        "expected exactly one line starting with 'Error: ' on stderr, got:\n{stderr}"
    );
    let lower = lines[0].to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(&w.to_lowercase())),
        "error line does not name the problem (expected one of {words:?}): {}",
        lines[0]
    );
    lines[0].to_string()
}

/// Bytes free to an unprivileged writer on the file system of `p`.
pub fn free_bytes(p: &Path) -> u64 {
    let c = std::ffi::CString::new(s(p)).expect("path without NUL");
    // SAFETY: statvfs is a plain C struct: all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into `st`, which we own; the path is a valid C string.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs {}", p.display());
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Fills the filesystem of `dir` with `<dir>/filler` until `leave` bytes are free.
pub fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).expect("create the filler");
    let block = vec![0x5au8; 256 * 1024];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = ((free - leave) as usize).min(block.len());
        if f.write_all(&block[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}
