//! P-256 for rustls from RustCrypto's `p256`: the secp256r1 key exchange group, ECDSA P-256
//! signature verification (SHA-256 and SHA-384), and ECDSA P-256 client keys.
//!
//! All curve and scalar arithmetic is the crate's own constant-time code (`SecretKey`,
//! `NonZeroScalar`, `SigningKey`); this module only adapts it to rustls's traits. Secrets come
//! from ring's `SystemRandom` (the kernel's getrandom), signatures are deterministic (RFC 6979).

use std::fmt;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, Signature, SigningKey as EcdsaKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::DecodePrivateKey;
use p256::{PublicKey, SecretKey};
use ring::rand::SecureRandom as _;
use rustls::crypto::{ActiveKeyExchange, GetRandomFailed, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{
    alg_id, AlgorithmIdentifier, InvalidSignature, PrivateKeyDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer,
};
use rustls::sign::{public_key_to_spki, Signer, SigningKey};
use rustls::{Error, NamedGroup, PeerMisbehaved, SignatureAlgorithm, SignatureScheme};

/// An uncompressed SEC1 point: 0x04, x, y. TLS 1.3 allows no other encoding for key shares.
const POINT_LEN: usize = 65;

/// A fresh secret scalar from the system's RNG: 32 random bytes, drawn again in the (about 2^-32)
/// case that they are zero or not below the group order.
fn random_secret() -> Result<SecretKey, GetRandomFailed> {
    let rng = ring::rand::SystemRandom::new();
    loop {
        let mut bytes = Zeroizing::new(p256::FieldBytes::default());
        rng.fill(bytes.as_mut_slice()).map_err(|_| GetRandomFailed)?;
        if let Ok(key) = SecretKey::from_bytes(&bytes) {
            return Ok(key);
        }
    }
}

/// The secp256r1 (P-256) ECDHE group.
#[derive(Debug)]
pub struct Secp256r1;

pub static SECP256R1: &dyn SupportedKxGroup = &Secp256r1;

impl SupportedKxGroup for Secp256r1 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let secret = random_secret()?;
        let point = secret.public_key().to_encoded_point(false);
        let pub_key = point.as_bytes().try_into().map_err(|_| Error::General("P-256: public key not 65 bytes".into()))?;
        Ok(Box::new(P256Exchange { secret, pub_key }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

/// One exchange in progress: our ephemeral secret and the share we sent.
struct P256Exchange {
    secret: SecretKey,
    pub_key: [u8; POINT_LEN],
}

impl ActiveKeyExchange for P256Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        // Only the uncompressed form (TLS 1.3 requires it; for 1.2 it is the one we offer);
        // `from_sec1_bytes` then checks the point is on the curve and not the identity.
        if peer_pub_key.len() != POINT_LEN || peer_pub_key[0] != 0x04 {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        let peer = PublicKey::from_sec1_bytes(peer_pub_key).map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        Ok(SharedSecret::from(&shared.raw_secret_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

/// ECDSA over P-256 with the message hashed by SHA-256 or SHA-384 (webpki's
/// ECDSA_P256_SHA256 / ECDSA_P256_SHA384): certificate and handshake signatures, DER-encoded.
pub struct EcdsaP256Verify {
    hash: Hash,
}

#[derive(Clone, Copy, Debug)]
enum Hash {
    Sha256,
    Sha384,
}

pub static ECDSA_P256_SHA256: &dyn SignatureVerificationAlgorithm = &EcdsaP256Verify { hash: Hash::Sha256 };
pub static ECDSA_P256_SHA384: &dyn SignatureVerificationAlgorithm = &EcdsaP256Verify { hash: Hash::Sha384 };

impl fmt::Debug for EcdsaP256Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ECDSA P-256 with {:?} (p256)", self.hash)
    }
}

impl SignatureVerificationAlgorithm for EcdsaP256Verify {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        let key = VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let sig = Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        // ECDSA takes the hash's leftmost 256 bits when it is longer than the curve's order
        // (SHA-384 here): `verify_prehash` does that truncation.
        // The hash is ring's (TLS already links its SHA-2; sha2's SHA-384 would be 11 KB more).
        let alg = match self.hash {
            Hash::Sha256 => &ring::digest::SHA256,
            Hash::Sha384 => &ring::digest::SHA384,
        };
        key.verify_prehash(ring::digest::digest(alg, message).as_ref(), &sig).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P256
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        match self.hash {
            Hash::Sha256 => alg_id::ECDSA_SHA256,
            Hash::Sha384 => alg_id::ECDSA_SHA384,
        }
    }
}

/// An ECDSA P-256 private key (client certificates): signs with ecdsa_secp256r1_sha256, the one
/// scheme TLS 1.3 allows for this curve.
pub struct P256SigningKey {
    key: EcdsaKey,
}

impl P256SigningKey {
    /// The key in `der` if it is a P-256 key (PKCS#8 or SEC1), else `None` (another key type).
    pub fn from_der(der: &PrivateKeyDer<'_>) -> Option<Self> {
        let secret = match der {
            PrivateKeyDer::Pkcs8(k) => SecretKey::from_pkcs8_der(k.secret_pkcs8_der()).ok()?,
            PrivateKeyDer::Sec1(k) => SecretKey::from_sec1_der(k.secret_sec1_der()).ok()?,
            _ => return None,
        };
        Some(Self { key: EcdsaKey::from(secret) })
    }
}

impl fmt::Debug for P256SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P256SigningKey")
    }
}

impl SigningKey for P256SigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SignatureScheme::ECDSA_NISTP256_SHA256).then(|| Box::new(P256Signer { key: self.key.clone() }) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(public_key_to_spki(&alg_id::ECDSA_P256, self.key.verifying_key().to_encoded_point(false)))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct P256Signer {
    key: EcdsaKey,
}

impl fmt::Debug for P256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P256Signer")
    }
}

impl Signer for P256Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        // SHA-256 of the message, nonce by RFC 6979 (no RNG to fail), DER as TLS wants.
        let sig: DerSignature = self.key.try_sign(message).map_err(|e| Error::General(format!("P-256 signature: {e}")))?;
        Ok(sig.as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}
