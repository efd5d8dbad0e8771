//! The server certificate check of the MQTT and the registry clients: rustls's own webpki checks
//! (chain to a trust anchor, server name, handshake signatures), with certificate dates checked
//! against the later of the system clock and a floor (the build's time): a board without a
//! real-time clock boots in 1970, where every certificate would look "not yet valid".
//!
//! It calls rustls's public check functions itself rather than wrapping `WebPkiServerVerifier`,
//! which also links the parsing and checking of certificate revocation lists (CRLs) that berth
//! never gives it: 7,744 bytes of the aarch64 firmware. The checks are the same ones that verifier makes
//! when it has no CRL.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name, VerifierBuilderError};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Debug)]
pub struct FloorVerifier {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
    floor: u64,
}

impl FloorVerifier {
    /// Chains to `roots`, signatures checked with `provider`'s algorithms, "now" never earlier
    /// than `floor` (seconds since the epoch). No trust anchor at all is an error, as rustls's
    /// verifier builder makes it ("no root trust anchors were provided").
    pub fn new(roots: Arc<RootCertStore>, provider: &CryptoProvider, floor: u64) -> Result<FloorVerifier, VerifierBuilderError> {
        if roots.is_empty() {
            return Err(VerifierBuilderError::NoRootAnchors);
        }
        Ok(FloorVerifier { roots, algs: provider.signature_verification_algorithms, floor })
    }
}

impl ServerCertVerifier for FloorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let now = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs().max(self.floor)));
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, self.algs.all)?;
        verify_server_name(&cert, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
