//! The fixture builder itself: every archive is made and every recorded ID is a real digest.

use berth_tests::fixtures::{familiar, norm};
use berth_tests::{fixtures, hex_of, is_hex64, require_root};

#[test]
fn fixtures_build() {
    require_root();
    let f = fixtures();
    for (name, a) in f.all() {
        assert!(a.path.is_file(), "{name}: {} missing", a.path.display());
        assert!(!a.images.is_empty(), "{name}: no images recorded");
        for img in &a.images {
            assert!(is_hex64(hex_of(&img.id)), "{name}: id {}", img.id);
            assert!(!img.diff_ids.is_empty(), "{name}: no diff_ids");
            for d in &img.diff_ids {
                assert!(is_hex64(hex_of(d)), "{name}: diff_id {d}");
            }
        }
    }
    for p in [&f.rootfs_tar, &f.rootfs_tar_gz, &f.rootfs_tar_xz] {
        assert!(p.is_file(), "{} missing", p.display());
    }
    assert!(f.rootfs.join("bin/busybox").is_file());
    assert!(f.rootfs_files.iter().any(|p| p == "bin/sh"));
}

#[test]
fn helpers() {
    assert_eq!(familiar("docker.io/library/busybox:latest"), "busybox:latest");
    assert_eq!(familiar("docker.io/team/app:1"), "team/app:1");
    assert_eq!(familiar("localhost/layered:latest"), "localhost/layered:latest");
    assert_eq!(familiar("example.com/library/x:1"), "example.com/library/x:1");
    assert_eq!(norm("./a/b/"), "a/b");
    assert_eq!(norm("./"), "");
    assert_eq!(norm("/abs"), "abs");
}
