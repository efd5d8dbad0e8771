//! Client keys signed by ring: RSA (PKCS#1 or PKCS#8) and ECDSA P-384 (PKCS#8 or SEC1).
//! rustls's own ring key loader tries ring's P-256 first, which would link ring's P-256 code
//! back in; these two small adapters load only what they name.

use std::fmt;
use std::sync::Arc;

use p256::elliptic_curve::zeroize::Zeroizing;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls::pki_types::{alg_id, PrivateKeyDer, SubjectPublicKeyInfoDer};
use rustls::sign::{public_key_to_spki, Signer, SigningKey};
use rustls::{Error, SignatureAlgorithm, SignatureScheme};

/// RSA schemes, strongest first: rustls takes the first the server offers.
const RSA_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

fn rsa_padding(scheme: SignatureScheme) -> Option<&'static dyn signature::RsaEncoding> {
    Some(match scheme {
        SignatureScheme::RSA_PSS_SHA512 => &signature::RSA_PSS_SHA512,
        SignatureScheme::RSA_PSS_SHA384 => &signature::RSA_PSS_SHA384,
        SignatureScheme::RSA_PSS_SHA256 => &signature::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA512 => &signature::RSA_PKCS1_SHA512,
        SignatureScheme::RSA_PKCS1_SHA384 => &signature::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PKCS1_SHA256 => &signature::RSA_PKCS1_SHA256,
        _ => return None,
    })
}

/// An RSA private key.
pub struct RsaKey(Arc<RsaKeyPair>);

impl RsaKey {
    /// The key in `der` if it is an RSA key, else `None`.
    pub fn from_der(der: &PrivateKeyDer<'_>) -> Option<Self> {
        let pair = match der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return None,
        };
        pair.ok().map(|p| Self(Arc::new(p)))
    }
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaKey")
    }
}

impl SigningKey for RsaKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = RSA_SCHEMES.iter().copied().find(|s| offered.contains(s))?;
        Some(Box::new(RsaSign { key: self.0.clone(), scheme }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(public_key_to_spki(&alg_id::RSA_ENCRYPTION, self.0.public_key()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::RSA
    }
}

struct RsaSign {
    key: Arc<RsaKeyPair>,
    scheme: SignatureScheme,
}

impl fmt::Debug for RsaSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaSign({:?})", self.scheme)
    }
}

impl Signer for RsaSign {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let padding = rsa_padding(self.scheme).ok_or_else(|| Error::General("RSA: unsupported scheme".into()))?;
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key.sign(padding, &SystemRandom::new(), message, &mut sig).map_err(|_| Error::General("RSA signature failed".into()))?;
        Ok(sig)
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// An ECDSA P-384 private key (signs with ecdsa_secp384r1_sha384).
pub struct P384Key(Arc<EcdsaKeyPair>);

/// The PKCS#8 AlgorithmIdentifier of a P-384 key: id-ecPublicKey, namedCurve secp384r1.
const P384_ALGORITHM: &[u8] = &[0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A DER tag-length-value.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// ring reads EC keys only as PKCS#8: a SEC1 `EC PRIVATE KEY` becomes the PKCS#8 that holds it
/// (version 0, the P-384 algorithm, the SEC1 structure as the private key octets).
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(P384_ALGORITHM);
    body.extend_from_slice(&der(0x04, sec1));
    der(0x30, &body)
}

impl P384Key {
    /// The key in `der` if it is a P-384 key (PKCS#8 or SEC1), else `None`.
    pub fn from_der(der: &PrivateKeyDer<'_>) -> Option<Self> {
        let alg = &signature::ECDSA_P384_SHA384_ASN1_SIGNING;
        let rng = SystemRandom::new();
        let pair = match der {
            PrivateKeyDer::Pkcs8(k) => EcdsaKeyPair::from_pkcs8(alg, k.secret_pkcs8_der(), &rng),
            PrivateKeyDer::Sec1(k) => {
                let pkcs8 = Zeroizing::new(sec1_to_pkcs8(k.secret_sec1_der()));
                EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng)
            }
            _ => return None,
        };
        pair.ok().map(|p| Self(Arc::new(p)))
    }
}

impl fmt::Debug for P384Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P384Key")
    }
}

impl SigningKey for P384Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SignatureScheme::ECDSA_NISTP384_SHA384).then(|| Box::new(P384Sign(self.0.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(public_key_to_spki(&alg_id::ECDSA_P384, self.0.public_key()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct P384Sign(Arc<EcdsaKeyPair>);

impl fmt::Debug for P384Sign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P384Sign")
    }
}

impl Signer for P384Sign {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let sig = self.0.sign(&SystemRandom::new(), message).map_err(|_| Error::General("P-384 signature failed".into()))?;
        Ok(sig.as_ref().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP384_SHA384
    }
}
