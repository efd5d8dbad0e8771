//! `archive::scan` (streaming unpack of every candidate layer to disk) then `.images(None)` on
//! arbitrary bytes. Errors are fine; panics are not, and nothing may be written outside the scan's
//! temporary directory: a sentinel directory beside it is checked after every input.
#![no_main]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;

use berth_runtime::image::archive;
use libfuzzer_sys::fuzz_target;

struct Dirs {
    /// Parent of both: nothing but `work` and `sentinel` may ever appear in it.
    base: PathBuf,
    work: PathBuf,
    sentinel: PathBuf,
    canary: PathBuf,
    /// (mode, uid, gid) of base, sentinel and canary, and the canary's mtime, as first made.
    meta: Vec<(u32, u32, u32)>,
    canary_mtime: (i64, i64),
}

const CANARY: &[u8] = b"berth fuzz canary\n";

fn stat(p: &PathBuf) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.mode(), m.uid(), m.gid())
}

fn dirs() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let tmp = std::env::temp_dir();
        // libFuzzer leaves by exit(): clear what runs that are gone left behind.
        for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("berth-fuzz-archive-"));
            if pid.is_some_and(|p| !std::path::Path::new("/proc").join(p).exists()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let base = tmp.join(format!("berth-fuzz-archive-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let work = base.join("work");
        let sentinel = base.join("sentinel");
        fs::create_dir_all(&sentinel).expect("create sentinel dir");
        let canary = sentinel.join("canary");
        fs::write(&canary, CANARY).expect("write canary");
        fs::set_permissions(&canary, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&sentinel, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        let meta = [&base, &sentinel, &canary].iter().map(|p| stat(p)).collect();
        let m = fs::metadata(&canary).unwrap();
        Dirs { base, work, sentinel, canary, meta, canary_mtime: (m.mtime(), m.mtime_nsec()) }
    })
}

/// Nothing outside `work` changed: no new file beside it or in the sentinel dir, and the sentinel
/// dir and canary keep their mode and owner (the canary also its content and mtime).
fn check_untouched(d: &Dirs) {
    let mut names: Vec<_> = fs::read_dir(&d.base).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert!(names.iter().all(|n| n == "work" || n == "sentinel"), "files appeared outside the scan dir: {names:?}");
    let inside: Vec<_> = fs::read_dir(&d.sentinel).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(inside.len() == 1 && inside[0] == "canary", "files appeared in the sentinel dir: {inside:?}");
    for (p, want) in [&d.base, &d.sentinel, &d.canary].into_iter().zip(&d.meta) {
        assert_eq!(&stat(p), want, "mode or owner of {} changed", p.display());
    }
    let m = fs::metadata(&d.canary).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), d.canary_mtime, "canary mtime changed");
    assert_eq!(fs::read(&d.canary).unwrap(), CANARY, "canary content changed");
}

fuzz_target!(|data: &[u8]| {
    let d = dirs();
    match fs::remove_dir_all(&d.work) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("clean {}: {e}", d.work.display()),
    }
    fs::create_dir(&d.work).expect("create work dir");
    if let Ok(scan) = archive::scan(data, &d.work) {
        let _ = scan.images(None, &|_| false);
    }
    check_untouched(d);
});
