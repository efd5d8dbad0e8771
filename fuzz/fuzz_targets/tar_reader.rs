//! `TarReader` on arbitrary bytes. Errors are fine; panics, hangs and unbounded allocation are not.
//! When the whole archive reads without error, the reader's contract must hold: the raw
//! (non-content) bytes it hands out, interleaved with every entry's content, are the input byte for
//! byte.
#![no_main]

use std::io::Read;

use berth_runtime::tarstream::TarReader;
use libfuzzer_sys::fuzz_target;

fn rebuild(data: &[u8]) -> Option<Vec<u8>> {
    let mut r = TarReader::new(data);
    let mut out = Vec::with_capacity(data.len());
    loop {
        let entry = r.next_entry().ok()?;
        out.extend(r.take_raw());
        if entry.is_none() {
            return Some(out);
        }
        // Content can claim far more than the input holds: `read_to_end` grows only with what it
        // actually reads, so this stays bounded by the input.
        r.read_to_end(&mut out).ok()?;
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(rebuilt) = rebuild(data) {
        assert!(rebuilt == data, "raw + content is not the input: rebuilt {} bytes from {}", rebuilt.len(), data.len());
    }
});
