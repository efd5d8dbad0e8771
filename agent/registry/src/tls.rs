//! TLS for registries: the system's roots plus Docker's `certs.d/HOST[:PORT]/*.crt` (and a client
//! certificate `*.cert` with its `*.key`), certificate dates checked against a clock floor (a board
//! without a real-time clock boots in 1970, as on the MQTT side), and no checks at all for a
//! registry the operator listed as insecure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_runtime::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Where per-registry certificates are looked for, in this order.
pub const CERT_DIRS: &[&str] = &["/etc/berth/certs.d", "/etc/docker/certs.d"];

/// An `insecure-registries` entry: any certificate is taken (the handshake still proves the
/// server holds the key it shows), as Docker does.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let what = || format!("read certificates from {}", path.display());
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::invalid(format!("{}: {e}", what())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(format!("{}: {e}", what())))?;
    if list.is_empty() {
        return Err(Error::invalid(format!("{}: no certificate in it", what())));
    }
    Ok(list)
}

/// The `certs.d` directories that exist for `host:port` (Docker names them with the port when it
/// is not 443).
fn host_dirs(dirs: &[PathBuf], host: &str, port: u16) -> Vec<PathBuf> {
    let names = if port == 443 { vec![host.to_string()] } else { vec![format!("{host}:{port}"), host.to_string()] };
    dirs.iter().flat_map(|d| names.iter().map(move |n| d.join(n))).filter(|p| p.is_dir()).collect()
}

/// A client configuration for `host:port`.
pub fn config(dirs: &[PathBuf], host: &str, port: u16, floor: u64, insecure: bool) -> Result<Arc<rustls::ClientConfig>> {
    let provider = berth_tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("TLS: {e}")))?
        .dangerous();
    let mut roots = rustls::RootCertStore::empty();
    for path in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"] {
        if let Ok(list) = certs(Path::new(path)) {
            roots.add_parsable_certificates(list);
            break;
        }
    }
    let mut client = None;
    for dir in host_dirs(dirs, host, port) {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(&dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    for c in certs(&p)? {
                        roots.add(c).map_err(|e| Error::invalid(format!("CA certificate {}: {e}", p.display())))?;
                    }
                }
                Some("cert") if client.is_none() => {
                    let key = p.with_extension("key");
                    if !key.exists() {
                        return Err(Error::invalid(format!("client certificate {} has no {}", p.display(), key.display())));
                    }
                    let k = PrivateKeyDer::from_pem_file(&key)
                        .map_err(|e| Error::invalid(format!("read private key {}: {e}", key.display())))?;
                    client = Some((certs(&p)?, k, p));
                }
                _ => {}
            }
        }
    }
    let builder = if insecure {
        builder.with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
    } else {
        let verifier = berth_tls::FloorVerifier::new(Arc::new(roots), &provider, floor)
            .map_err(|e| Error::invalid(format!("TLS trust roots for {host}: {e}")))?;
        builder.with_custom_certificate_verifier(Arc::new(verifier))
    };
    let cfg = match client {
        Some((chain, key, p)) => {
            builder.with_client_auth_cert(chain, key).map_err(|e| Error::invalid(format!("client certificate {}: {e}", p.display())))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}
