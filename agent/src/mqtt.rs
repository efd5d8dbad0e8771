//! Connecting to the broker, for the agent and for `berth fleet`: broker URLs, TLS (rustls with
//! ring; mutual TLS is the normal case on a fleet) and the clock floor for certificate checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use berth_runtime::{Error, Result};

/// Incoming messages above this are refused by the client (a chunk is at most 1 MiB + header).
pub const MAX_PACKET: usize = (1 << 20) + 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Broker {
    /// `mqtt://[user[:pass]@]host[:port]` (also `tcp://`), `mqtts://` (also `ssl://`, `tls://`);
    /// a bare `host[:port]` is plain MQTT. Ports default to 1883 and 8883.
    pub fn parse(url: &str) -> Result<Broker> {
        let bad = |why: &str| Error::invalid(format!("broker URL {url:?}: {why}"));
        let (tls, rest) = match url.split_once("://") {
            Some(("mqtt" | "tcp", r)) => (false, r),
            Some(("mqtts" | "ssl" | "tls", r)) => (true, r),
            Some((s, _)) => return Err(bad(&format!("unknown scheme {s:?} (mqtt:// or mqtts://)"))),
            None => (false, url),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (username, password) = match auth.map(|a| a.split_once(':').map_or((a, None), |(u, p)| (u, Some(p)))) {
            Some((u, p)) => (Some(u.to_string()), p.map(str::to_string)),
            None => (None, None),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [v6]:port
            let (h, p) = h.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad(&format!("bad port {p:?}")))?,
            None if tls => 8883,
            None => 1883,
        };
        Ok(Broker { tls, host, port, username, password })
    }
}

/// TLS material: a CA to trust (else the system's roots) and optionally a client certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let what = || format!("read certificates from {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::invalid(format!("{}: {e}", what())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(format!("{}: {e}", what())))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!("{}: no certificate in it", what())));
    }
    Ok(certs)
}

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for path in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"] {
        if let Ok(list) = certs(Path::new(path)) {
            roots.add_parsable_certificates(list);
            break;
        }
    }
    roots
}

/// A rustls client configuration for `files`, checking dates against `max(now, floor)`.
pub fn tls_config(files: &TlsFiles, floor: u64) -> Result<rustls::ClientConfig> {
    let provider = berth_tls::provider();
    let roots = match &files.ca {
        Some(ca) => {
            let mut r = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                r.add(c).map_err(|e| Error::invalid(format!("CA certificate {}: {e}", ca.display())))?;
            }
            r
        }
        None => system_roots(),
    };
    let verifier =
        berth_tls::FloorVerifier::new(Arc::new(roots), &provider, floor).map_err(|e| Error::invalid(format!("TLS trust roots: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let k = PrivateKeyDer::from_pem_file(key).map_err(|e| Error::invalid(format!("read private key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs(cert)?, k)
                .map_err(|e| Error::invalid(format!("client certificate {}: {e}", cert.display())))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(Error::invalid("a client certificate needs its key, and a key its certificate")),
    }
}

/// Options for one broker. `will` is (topic, payload), retained at QoS 1.
pub fn options(
    broker: &Broker,
    client_id: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    keep_alive: Duration,
    clean_session: bool,
    will: Option<(String, Vec<u8>)>,
) -> Result<MqttOptions> {
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    o.set_keep_alive(keep_alive.max(Duration::from_secs(5)));
    o.set_clean_session(clean_session);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    // Bounds how many QoS 1 publishes (chunks, for the sender) are unacknowledged at once.
    o.set_inflight(32);
    if let (Some(u), p) = (&broker.username, &broker.password) {
        o.set_credentials(u.clone(), p.clone().unwrap_or_default());
    }
    if let Some((topic, payload)) = will {
        o.set_last_will(rumqttc::LastWill::new(topic, payload, rumqttc::QoS::AtLeastOnce, true));
    }
    if broker.tls {
        let cfg = match tls {
            Some(c) => c,
            None => Arc::new(tls_config(&TlsFiles::default(), 0)?),
        };
        o.set_transport(Transport::Tls(TlsConfiguration::Rustls(cfg)));
    }
    Ok(o)
}

/// Time the binary was built (`SOURCE_DATE_EPOCH` when the build set one): no certificate this
/// build ever meets was issued before it.
pub fn build_time() -> u64 {
    option_env!("BERTH_BUILD_TIME").and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Jittered exponential back-off: 1 s doubling to `max`, each wait between half and all of it,
/// so a fleet that lost its broker does not come back in lock-step.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempt.min(10)).min(max);
    let mut b = [0u8; 2];
    let _ = berth_runtime::random::fill(&mut b);
    let frac = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    base.mul_f64(0.5 + frac / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = Broker::parse("mqtts://u:p@broker.example:8884").unwrap();
        assert_eq!(
            (b.tls, b.host.as_str(), b.port, b.username.as_deref(), b.password.as_deref()),
            (true, "broker.example", 8884, Some("u"), Some("p"))
        );
        assert_eq!(Broker::parse("mqtt://127.0.0.1").unwrap().port, 1883);
        assert_eq!(Broker::parse("ssl://h").unwrap().port, 8883);
        assert_eq!(Broker::parse("h:1999").unwrap(), Broker { tls: false, host: "h".into(), port: 1999, username: None, password: None });
        assert_eq!(Broker::parse("mqtt://[::1]:1884").unwrap().host, "::1");
        for bad in ["http://h", "mqtt://", "mqtt://h:99999", "mqtt://h:x"] {
            assert!(Broker::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let max = Duration::from_secs(60);
        for a in 0..20 {
            let d = backoff(a, max);
            let base = Duration::from_secs(1 << a.min(10)).min(max);
            assert!(d >= base / 2 && d <= base, "attempt {a}: {d:?}");
        }
    }
}
