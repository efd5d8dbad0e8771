//! ed25519 keys and signatures for updates, through `ring` (already linked for TLS, so a second
//! curve implementation would only add size). Keys are stored as OpenSSL writes them: the
//! private key as PKCS#8 PEM ("PRIVATE KEY"), the public key as SPKI PEM ("PUBLIC KEY"), so
//! `openssl genpkey -algorithm ed25519` keys work too.

use std::path::Path;

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use berth_runtime::fsutil::atomic_write;
use berth_runtime::{Error, IoContext, Result};

/// DER prefix of an ed25519 SubjectPublicKeyInfo; the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() { B64[(n >> shift) as usize & 63] as char } else { '=' });
        }
    }
    out
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for b in s.bytes() {
        let v = B64.iter().position(|&c| c == b)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = b64_encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn unpem(label: &str, text: &str, what: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(b, _)| b.split_whitespace().collect::<String>())
        .ok_or_else(|| Error::invalid(format!("{what}: no {label} PEM block")))?;
    b64_decode(&body).ok_or_else(|| Error::invalid(format!("{what}: bad base64 in the {label} block")))
}

/// A trusted public key, with where it came from for messages.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub bytes: [u8; 32],
    pub origin: String,
}

impl PublicKey {
    pub fn parse(text: &str, origin: &str) -> Result<PublicKey> {
        let der = unpem("PUBLIC KEY", text, origin)?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(k) if k.len() == 32 => {
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(k);
                Ok(PublicKey { bytes, origin: origin.to_string() })
            }
            _ => Err(Error::invalid(format!("{origin}: not an ed25519 public key"))),
        }
    }

    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = std::fs::read_to_string(path).ctx_path("read public key", path)?;
        PublicKey::parse(&text, &path.display().to_string())
    }

    pub fn pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.bytes);
        pem("PUBLIC KEY", &der)
    }
}

/// Checks `sig` (base64) over `msg` against any of `keys`; names the key that matched.
pub fn verify<'a>(keys: &'a [PublicKey], msg: &[u8], sig: &str) -> Result<&'a PublicKey> {
    if keys.is_empty() {
        return Err(Error::invalid("no trusted update keys are configured ([update] trusted_keys or --trust)"));
    }
    let sig = b64_decode(sig).filter(|s| s.len() == 64).ok_or_else(|| Error::invalid("signature is not 64 bytes of base64"))?;
    keys.iter()
        .find(|k| UnparsedPublicKey::new(&ED25519, &k.bytes).verify(msg, &sig).is_ok())
        .ok_or_else(|| Error::invalid("bad signature: no trusted key signed this update"))
}

pub struct SecretKey(Ed25519KeyPair);

impl SecretKey {
    pub fn generate() -> Result<(SecretKey, String)> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| Error::invalid("cannot generate an ed25519 key"))?;
        let pem = pem("PRIVATE KEY", doc.as_ref());
        Ok((SecretKey::parse(&pem, "new key")?, pem))
    }

    pub fn parse(text: &str, origin: &str) -> Result<SecretKey> {
        let der = unpem("PRIVATE KEY", text, origin)?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map(SecretKey)
            .map_err(|e| Error::invalid(format!("{origin}: not an ed25519 private key ({e})")))
    }

    pub fn load(path: &Path) -> Result<SecretKey> {
        let text = std::fs::read_to_string(path).ctx_path("read private key", path)?;
        SecretKey::parse(&text, &path.display().to_string())
    }

    pub fn public(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.0.public_key().as_ref());
        PublicKey { bytes, origin: "own key".into() }
    }

    pub fn sign(&self, msg: &[u8]) -> String {
        b64_encode(self.0.sign(msg).as_ref())
    }
}

/// `berth fleet keygen --out KEY`: KEY (mode 0600) and KEY.pub, written atomically; an
/// existing KEY is never overwritten (it may sign a whole fleet's updates).
pub fn keygen(out: &Path) -> Result<PublicKey> {
    if out.exists() {
        return Err(Error::conflict(format!("{} exists: not overwriting a key", out.display())));
    }
    let (key, pem) = SecretKey::generate()?;
    let public = key.public();
    let mut pubpath = out.as_os_str().to_owned();
    pubpath.push(".pub");
    atomic_write(Path::new(&pubpath), public.pem().as_bytes())?;
    atomic_write(out, pem.as_bytes())?;
    std::fs::set_permissions(out, std::os::unix::fs::PermissionsExt::from_mode(0o600)).ctx_path("chmod", out)?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for n in 0..70 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(b64_decode(&b64_encode(&data)).unwrap(), data);
        }
        assert_eq!(b64_encode(b"foob"), "Zm9vYg==");
        assert!(b64_decode("Zm9v!").is_none());
    }

    #[test]
    fn sign_and_verify() {
        let (key, pem) = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&pem, "t").unwrap();
        assert_eq!(again.public().bytes, key.public().bytes);
        let public = PublicKey::parse(&key.public().pem(), "t").unwrap();
        let sig = key.sign(b"manifest");
        assert!(verify(std::slice::from_ref(&public), b"manifest", &sig).is_ok());
        assert!(verify(std::slice::from_ref(&public), b"manifesT", &sig).is_err());
        assert!(verify(&[], b"manifest", &sig).is_err());
        assert!(verify(std::slice::from_ref(&public), b"manifest", "AAAA").is_err());
        let (other, _) = SecretKey::generate().unwrap();
        assert!(verify(&[other.public()], b"manifest", &sig).is_err());
        assert!(PublicKey::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "t").is_err());
        assert!(SecretKey::parse("junk", "t").is_err());
    }

    /// Keys made by OpenSSL (PKCS#8 v1, no public key inside) are read too.
    #[test]
    fn openssl_keys() {
        let dir = std::env::temp_dir().join(format!("berth-sign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = dir.join("k.pem");
        let ok = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&k)
            .status()
            .expect("openssl must be installed (scripts/test installs it)");
        assert!(ok.success());
        let p = dir.join("k.pub");
        assert!(std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&k)
            .arg("-out")
            .arg(&p)
            .status()
            .unwrap()
            .success());
        let key = SecretKey::load(&k).unwrap();
        let public = PublicKey::load(&p).unwrap();
        assert_eq!(key.public().bytes, public.bytes);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
