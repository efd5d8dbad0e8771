//! Everything the agent decodes from the broker, on arbitrary bytes: `Envelope::decode` (and the
//! manifest inside it, and its signature against a fixed key), `Manifest::parse`, `Chunk::decode`
//! with `verify` against a fixed manifest, `Command::decode`, and `Config::parse` (berth.toml).
//! Errors are fine; panics are not, and what parses keeps its invariants:
//! - a parsed manifest prints back to JSON that parses to the same manifest, and its chunks
//!   cover exactly `image.size` bytes;
//! - a decoded chunk has `index < count` and the rest of the payload as its data; one that
//!   verifies against the fixed manifest encodes back to the same bytes;
//! - a decoded command prints back to JSON that decodes to the same command.
#![no_main]

use std::sync::OnceLock;

use berth::daemon::config::Config;
use berth_proto::sign::{self, PublicKey, SecretKey};
use berth_proto::wire::{Chunk, Command, Envelope, ImageRef, Kind, Manifest, CHUNK_HEADER};
use libfuzzer_sys::fuzz_target;

/// A small deploy: 3 chunks of 16 bytes and a last one of 5, so that inputs reach `verify`'s
/// length and digest checks.
fn fixed() -> &'static (Manifest, Vec<PublicKey>) {
    static FIXED: OnceLock<(Manifest, Vec<PublicKey>)> = OnceLock::new();
    FIXED.get_or_init(|| {
        let m = Manifest {
            version: 1,
            id: "00112233445566778899aabbccddeeff".into(),
            seq: 1,
            kind: Kind::Deploy,
            created: 0,
            targets: vec!["dev1".into()],
            groups: vec![],
            name: "app".into(),
            image: Some(ImageRef { size: 53, sha256: "0".repeat(64), chunk_size: 16, topic: "berth/v1/updates/x".into() }),
            pull: None,
            run: vec!["--name".into(), "app".into(), "app:1".into()],
            health_window: 2,
            keep: 1,
            app: None,
        };
        let (key, _) = SecretKey::generate().expect("generate a key");
        (m, vec![key.public()])
    })
}

fn check_manifest(m: &Manifest, from: &str) {
    let text = serde_json::to_string(m).expect("a manifest serialises");
    let again = Manifest::parse(&text).unwrap_or_else(|e| panic!("{from:?} parsed, but its printed form {text:?} does not: {e}"));
    assert_eq!(&again, m, "manifest {from:?} does not round-trip");
    if let Some(img) = &m.image {
        let n = m.chunks();
        assert!(n >= 1, "an image of {} bytes has no chunks", img.size);
        let last = m.chunk_len(n - 1) as u64;
        assert!(last >= 1 && last <= u64::from(img.chunk_size), "last chunk of {last} bytes");
        assert_eq!(u64::from(n - 1) * u64::from(img.chunk_size) + last, img.size, "chunks do not cover the image");
        assert_eq!(m.chunk_len(n), 0, "a chunk past the end has bytes");
    } else {
        assert_eq!(m.chunks(), 0);
    }
}

fuzz_target!(|data: &[u8]| {
    let (fixed, keys) = fixed();

    if let Ok(env) = Envelope::decode(data) {
        // The agent checks the signature first; a fuzzer never forges one, but the base64 and
        // length checks run on whatever it wrote.
        assert!(sign::verify(keys, env.manifest.as_bytes(), &env.sig).is_err(), "a fuzzed signature verified");
        if let Ok(m) = Manifest::parse(&env.manifest) {
            check_manifest(&m, &env.manifest);
        }
    }

    if let Ok(c) = Chunk::decode(data) {
        assert!(c.index < c.count, "chunk index {} not below count {}", c.index, c.count);
        assert_eq!(c.data.len(), data.len() - CHUNK_HEADER);
        if c.verify(fixed).is_ok() {
            assert_eq!(Chunk::encode(&fixed.id, c.index, c.count, c.data), data, "a verified chunk does not encode back");
        }
    }

    if let Ok(cmd) = Command::decode(data) {
        let text = serde_json::to_vec(&cmd).expect("a command serialises");
        assert_eq!(Command::decode(&text).expect("a command's printed form decodes"), cmd);
    }

    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Manifest::parse(text) {
        check_manifest(&m, text);
    }
    let _ = PublicKey::parse(text, "fuzz");
    let _ = Config::parse(text, "fuzz.toml");
});
