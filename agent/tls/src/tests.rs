//! The P-256 glue checked against ring's own P-256 (still linked in test builds) as the reference;
//! the ring-backed keys checked the same way.

use ring::agreement;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::SignatureScheme;

use super::*;

fn key(pem: &[u8]) -> Arc<dyn SigningKey> {
    let der = PrivateKeyDer::from_pem_slice(pem).unwrap();
    provider().key_provider.load_private_key(der).unwrap()
}

fn sign(key: &Arc<dyn SigningKey>, scheme: SignatureScheme, message: &[u8]) -> Vec<u8> {
    let signer = key.choose_scheme(&[scheme]).unwrap();
    assert_eq!(signer.scheme(), scheme);
    signer.sign(message).unwrap()
}

/// The uncompressed point in a SubjectPublicKeyInfo (the BIT STRING's last bytes).
fn spki_point(key: &Arc<dyn SigningKey>, len: usize) -> Vec<u8> {
    let spki = key.public_key().unwrap();
    let bytes = spki.as_ref();
    bytes[bytes.len() - len..].to_vec()
}

#[test]
fn p256_key_exchange_agrees_with_ring_both_ways() {
    for _ in 0..8 {
        let rng = SystemRandom::new();
        let theirs = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let their_pub = theirs.compute_public_key().unwrap();
        let ours = nistp256::SECP256R1.start().unwrap();
        assert_eq!(ours.group(), rustls::NamedGroup::secp256r1);
        assert_eq!(ours.pub_key().len(), 65);
        assert_eq!(ours.pub_key()[0], 4);
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ours.pub_key().to_vec());
        let expected = agreement::agree_ephemeral(theirs, &peer, |s| s.to_vec()).unwrap();
        let got = ours.complete(their_pub.as_ref()).unwrap();
        assert_eq!(got.secret_bytes(), &expected[..]);
    }
}

#[test]
fn p256_key_exchange_refuses_bad_peer_shares() {
    let rng = SystemRandom::new();
    let theirs = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
    let good = theirs.compute_public_key().unwrap().as_ref().to_vec();
    // compressed form (x only), off the curve, the wrong length, empty
    let mut compressed = vec![2 + (good[64] & 1)];
    compressed.extend_from_slice(&good[1..33]);
    let mut off_curve = good.clone();
    off_curve[64] ^= 1;
    for bad in [compressed, off_curve, good[..64].to_vec(), vec![]] {
        let ours = nistp256::SECP256R1.start().unwrap();
        assert!(ours.complete(&bad).is_err(), "accepted {bad:02x?}");
    }
}

fn check_verify(
    ours: &dyn rustls::pki_types::SignatureVerificationAlgorithm,
    other: &dyn rustls::pki_types::SignatureVerificationAlgorithm,
    public: &[u8],
    message: &[u8],
    sig: &[u8],
) {
    assert!(ours.verify_signature(public, message, sig).is_ok(), "{ours:?}");
    assert!(ours.verify_signature(public, b"another message", sig).is_err());
    let mut bad = sig.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(ours.verify_signature(public, message, &bad).is_err());
    assert!(ours.verify_signature(&public[..64], message, sig).is_err());
    // the same signature under the other hash does not verify
    assert!(other.verify_signature(public, message, sig).is_err());
}

#[test]
fn p256_verify_accepts_ring_signatures_and_refuses_bad_ones() {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let message = b"berth update manifest";
    let sig = pair.sign(&rng, message).unwrap();
    check_verify(nistp256::ECDSA_P256_SHA256, nistp256::ECDSA_P256_SHA384, pair.public_key().as_ref(), message, sig.as_ref());
}

#[test]
fn p256_sha384_verify_agrees_with_ring() {
    // ring cannot sign P-256 with SHA-384, only verify: the signature is made with the p256
    // crate's prehash signer and must pass ring's check before ours is asked.
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use sha2::Digest;
    let der = PrivateKeyDer::from_pem_slice(include_bytes!("../testdata/p256.pk8.pem")).unwrap();
    let PrivateKeyDer::Pkcs8(pkcs8) = der else { panic!("not PKCS#8") };
    let key = <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(pkcs8.secret_pkcs8_der()).unwrap();
    let public = key.verifying_key().to_encoded_point(false);
    let message = b"berth update manifest";
    let sig: p256::ecdsa::DerSignature = key.sign_prehash(&sha2::Sha384::digest(message)).unwrap();
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA384_ASN1, public.as_bytes()).verify(message, sig.as_bytes()).unwrap();
    check_verify(nistp256::ECDSA_P256_SHA384, nistp256::ECDSA_P256_SHA256, public.as_bytes(), message, sig.as_bytes());
}

#[test]
fn p256_client_keys_pkcs8_and_sec1_sign_what_ring_verifies() {
    let pkcs8 = key(include_bytes!("../testdata/p256.pk8.pem"));
    let sec1 = key(include_bytes!("../testdata/p256.sec1.pem"));
    assert_eq!(pkcs8.public_key().unwrap().as_ref(), sec1.public_key().unwrap().as_ref());
    for k in [pkcs8, sec1] {
        assert_eq!(k.algorithm(), rustls::SignatureAlgorithm::ECDSA);
        assert!(k.choose_scheme(&[SignatureScheme::ECDSA_NISTP384_SHA384, SignatureScheme::ED25519]).is_none());
        let message = b"client certificate verify";
        let sig = sign(&k, SignatureScheme::ECDSA_NISTP256_SHA256, message);
        let public = spki_point(&k, 65);
        let ring_key = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &public);
        ring_key.verify(message, &sig).unwrap();
        assert!(ring_key.verify(b"tampered", &sig).is_err());
    }
}

#[test]
fn p384_client_keys_pkcs8_and_sec1_sign_what_ring_verifies() {
    let pkcs8 = key(include_bytes!("../testdata/p384.pk8.pem"));
    let sec1 = key(include_bytes!("../testdata/p384.sec1.pem"));
    assert_eq!(pkcs8.public_key().unwrap().as_ref(), sec1.public_key().unwrap().as_ref());
    for k in [pkcs8, sec1] {
        let message = b"client certificate verify";
        let sig = sign(&k, SignatureScheme::ECDSA_NISTP384_SHA384, message);
        let public = spki_point(&k, 97);
        UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_ASN1, &public).verify(message, &sig).unwrap();
        assert!(k.choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256]).is_none());
    }
}

#[test]
fn rsa_and_ed25519_client_keys_sign_what_ring_verifies() {
    let rsa = key(include_bytes!("../testdata/rsa.pem"));
    assert_eq!(rsa.algorithm(), rustls::SignatureAlgorithm::RSA);
    let message = b"client certificate verify";
    let pss = sign(&rsa, SignatureScheme::RSA_PSS_SHA256, message);
    let spki = rsa.public_key().unwrap();
    // the RSAPublicKey inside the SubjectPublicKeyInfo: after the 24-byte header of a 2048-bit key
    let public = &spki.as_ref()[24..];
    UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, public).verify(message, &pss).unwrap();
    let pkcs1 = sign(&rsa, SignatureScheme::RSA_PKCS1_SHA256, message);
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public).verify(message, &pkcs1).unwrap();

    let ed = key(include_bytes!("../testdata/ed.pem"));
    let sig = sign(&ed, SignatureScheme::ED25519, message);
    UnparsedPublicKey::new(&signature::ED25519, spki_point(&ed, 32)).verify(message, &sig).unwrap();
}

#[test]
fn other_keys_are_refused_in_one_line() {
    let der = PrivateKeyDer::try_from(vec![0x30, 0x03, 0x02, 0x01, 0x00]).unwrap();
    let err = provider().key_provider.load_private_key(der).unwrap_err().to_string();
    assert!(err.contains("not an RSA, ECDSA P-256/P-384 or Ed25519 key"), "{err}");
}

#[test]
fn provider_offers_p256_first_from_p256_and_no_x25519() {
    let p = provider();
    let names: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
    assert_eq!(names, [rustls::NamedGroup::secp256r1, rustls::NamedGroup::secp384r1]);
    assert!(p.signature_verification_algorithms.supported_schemes().contains(&SignatureScheme::ECDSA_NISTP256_SHA256));
}

#[test]
fn provider_offers_aes_gcm_suites_only() {
    use rustls::CipherSuite as C;
    let suites: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
    let mut want = vec![C::TLS13_AES_256_GCM_SHA384, C::TLS13_AES_128_GCM_SHA256];
    if cfg!(feature = "tls12") {
        want.extend([
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ]);
    }
    assert_eq!(suites, want);
}
