//! berth's rustls `CryptoProvider`, the one the MQTT client and the registry client both use.
//!
//! It is rustls's ring provider with P-256 taken from RustCrypto's `p256` instead of ring:
//! ring's P-256 (its precomputed base-point table, 151,552 bytes, and the nistz256 assembly) was
//! the largest single piece of the aarch64 firmware. Everything else is ring, as before: the
//! AES-GCM cipher suites of TLS 1.3 (and, with feature `tls12`, of TLS 1.2), P-384 key exchange,
//! RSA, Ed25519 and ECDSA P-384 signature checks, RSA, P-384 and Ed25519 client keys.
//!
//! Left out, for the firmware's size: the ChaCha20-Poly1305 suites and the X25519 group. Every
//! TLS 1.3 server must take TLS_AES_128_GCM_SHA256 and secp256r1 (RFC 8446, 9.1), and TLS 1.2
//! servers all take AES-GCM; so a client that offers only these reaches every conforming server,
//! and a broker that prefers X25519 picks P-256 from our key share, with no extra round trip.
//!
//! This crate is its own so that `berth-registry` (which cannot depend on the agent) and the agent
//! share it; rustls's `custom-provider` feature keeps rustls from ever falling back to its built-in
//! ring provider (whose mere reference would link ring's P-256 back in).

#![forbid(unsafe_code)]

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::{Error, SignatureScheme};
use webpki::ring as ring_algs;

mod floor;
pub mod nistp256;

pub use floor::FloorVerifier;
mod ring_keys;

/// The provider: build a `ClientConfig` with `ClientConfig::builder_with_provider(provider())`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        // P-256 first: the one key share of the ClientHello (the group every TLS 1.3 server takes).
        kx_groups: vec![nistp256::SECP256R1, rustls::crypto::ring::kx_group::SECP384R1],
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &SystemRandom,
        key_provider: &Keys,
    })
}

/// ring's AES-GCM suites, in ring's provider's order (no ChaCha20-Poly1305: see the top).
static CIPHER_SUITES: &[rustls::SupportedCipherSuite] = {
    use rustls::crypto::ring::cipher_suite as cs;
    &[
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        #[cfg(feature = "tls12")]
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        #[cfg(feature = "tls12")]
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        #[cfg(feature = "tls12")]
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        #[cfg(feature = "tls12")]
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ]
};

/// Certificate and handshake signature checks: ring's, except P-256 keys.
static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        nistp256::ECDSA_P256_SHA256,
        nistp256::ECDSA_P256_SHA384,
        ring_algs::ECDSA_P384_SHA256,
        ring_algs::ECDSA_P384_SHA384,
        ring_algs::ED25519,
        ring_algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        ring_algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        ring_algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        ring_algs::RSA_PKCS1_2048_8192_SHA256,
        ring_algs::RSA_PKCS1_2048_8192_SHA384,
        ring_algs::RSA_PKCS1_2048_8192_SHA512,
        ring_algs::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
        ring_algs::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
        ring_algs::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    ],
    // For a handshake signature: which algorithms may check each scheme. In TLS 1.2 the scheme
    // does not fix the curve, hence both curves under each ECDSA scheme.
    mapping: &[
        (SignatureScheme::ECDSA_NISTP384_SHA384, &[ring_algs::ECDSA_P384_SHA384, nistp256::ECDSA_P256_SHA384]),
        (SignatureScheme::ECDSA_NISTP256_SHA256, &[nistp256::ECDSA_P256_SHA256, ring_algs::ECDSA_P384_SHA256]),
        (SignatureScheme::ED25519, &[ring_algs::ED25519]),
        (SignatureScheme::RSA_PSS_SHA512, &[ring_algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA384, &[ring_algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA256, &[ring_algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[ring_algs::RSA_PKCS1_2048_8192_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[ring_algs::RSA_PKCS1_2048_8192_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[ring_algs::RSA_PKCS1_2048_8192_SHA256]),
    ],
};

/// The kernel's random numbers, through ring.
#[derive(Debug)]
struct SystemRandom;

impl SecureRandom for SystemRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf).map_err(|_| GetRandomFailed)
    }
}

/// Client keys: RSA, ECDSA P-256 (p256), ECDSA P-384 (ring), Ed25519 (ring).
#[derive(Debug)]
struct Keys;

impl KeyProvider for Keys {
    fn load_private_key(&self, der: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, Error> {
        if let Some(k) = ring_keys::RsaKey::from_der(&der) {
            return Ok(Arc::new(k));
        }
        if let Some(k) = nistp256::P256SigningKey::from_der(&der) {
            return Ok(Arc::new(k));
        }
        if let Some(k) = ring_keys::P384Key::from_der(&der) {
            return Ok(Arc::new(k));
        }
        if let PrivateKeyDer::Pkcs8(k) = &der {
            if let Ok(k) = rustls::crypto::ring::sign::any_eddsa_type(k) {
                return Ok(k);
            }
        }
        Err(Error::General("the private key is not an RSA, ECDSA P-256/P-384 or Ed25519 key".into()))
    }
}

#[cfg(test)]
mod tests;
