//! `Reference::parse` and `Platform::parse` on arbitrary UTF-8. Errors are fine; panics are not, and
//! normalisation is idempotent: what a parsed value prints parses back to the same value.
#![no_main]

use berth_runtime::image::platform::Platform;
use berth_runtime::image::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(p) = Platform::parse(s) {
        let again = Platform::parse(&p.to_string()).unwrap_or_else(|e| panic!("{p} (from {s:?}) does not parse back: {e}"));
        assert_eq!(again, p, "platform {s:?} does not round-trip");
    }
    let Ok(r) = Reference::parse(s) else { return };
    // `tagged()` is `repo:tag` and drops any digest by design; a digest-only reference has none.
    if let Some(t) = r.tagged() {
        let again = Reference::parse(&t).unwrap_or_else(|e| panic!("{t:?} (from {s:?}) does not parse back: {e}"));
        assert_eq!(again, Reference { digest: None, ..r.clone() }, "{s:?} -> {t:?} is not idempotent");
    }
    // The full form, digest included, parses back to exactly the same value.
    let mut full = r.repo.clone();
    if let Some(t) = &r.tag {
        full = format!("{full}:{t}");
    }
    if let Some(d) = &r.digest {
        full = format!("{full}@{d}");
    }
    let again = Reference::parse(&full).unwrap_or_else(|e| panic!("{full:?} (from {s:?}) does not parse back: {e}"));
    assert_eq!(again, r, "{s:?} -> {full:?} is not idempotent");
});
