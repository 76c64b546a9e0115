//! TLS configuration from PEM files (rustls with the `ring` provider).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A server's TLS settings, as [`load`] and [`load_with_sni`] make them.
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// A certificate or key that cannot be used.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// A server configuration from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
/// or SEC1), TLS 1.2 and 1.3 with rustls' safe defaults.
pub fn config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = certs_from_pem(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError(format!("key: {e}")))?;
    let config = builder()?
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

fn certs_from_pem(cert_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError("certificate: no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn builder(
) -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, TlsError>
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth())
}

fn read(p: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(p).map_err(|e| TlsError(format!("{}: {e}", p.display())))
}

/// [`config_from_pem`] on the contents of two files; errors name the file.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    config_from_pem(&read(cert)?, &read(key)?)
        .map_err(|e| TlsError(format!("{} / {}: {e}", cert.display(), key.display())))
}

/// A certificate and key served to clients that ask for one of `names` by SNI (RFC 6066 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertificate {
    /// Host names, matched without regard to case; `*.example.org` matches one label in front
    /// of `example.org`.
    pub names: Vec<String>,
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
}

/// A server configuration that picks its certificate by the client's SNI name: one of
/// `by_name` when a name matches, else the default pair (clients that send no SNI, or a name
/// nobody listed). Every file is read now, so a bad one fails the whole load (and a reload
/// keeps the previous configuration).
pub fn load_with_sni(
    cert: &Path,
    key: &Path,
    by_name: &[SniCertificate],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    if by_name.is_empty() {
        return load(cert, key);
    }
    let certified = |cert: &Path, key: &Path| -> Result<Arc<CertifiedKey>, TlsError> {
        let named = |e: TlsError| TlsError(format!("{} / {}: {e}", cert.display(), key.display()));
        let chain = certs_from_pem(&read(cert)?).map_err(named)?;
        let key = PrivateKeyDer::from_pem_slice(&read(key)?)
            .map_err(|e| named(TlsError(format!("key: {e}"))))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| named(TlsError(format!("key: {e}"))))?;
        Ok(Arc::new(CertifiedKey::new(chain, signer)))
    };
    let mut resolver = SniResolver { default: certified(cert, key)?, names: Vec::new() };
    for entry in by_name {
        let pair = certified(&entry.cert, &entry.key)?;
        for name in &entry.names {
            resolver.names.push((name.to_ascii_lowercase(), Arc::clone(&pair)));
        }
    }
    Ok(Arc::new(builder()?.with_cert_resolver(Arc::new(resolver))))
}

/// Chooses a certificate by SNI name, with a default.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    /// (lower-case name or `*.suffix`, pair), in configuration order: exact names win over
    /// wildcards, then the first listed.
    names: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(sni) = sni.map(str::to_ascii_lowercase) else {
            return Arc::clone(&self.default);
        };
        let exact = self.names.iter().find(|(name, _)| *name == sni);
        let wildcard = || {
            let (_, parent) = sni.split_once('.')?;
            self.names.iter().find(|(name, _)| name.strip_prefix("*.") == Some(parent))
        };
        exact.or_else(wildcard).map_or_else(|| Arc::clone(&self.default), |(_, k)| Arc::clone(k))
    }
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_their_pair_exact_before_wildcard_and_else_the_default() {
        let ca = pop3_testkit::server::TestCa::generate();
        let key = PrivateKeyDer::from_pem_slice(ca.key_pem.as_bytes()).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
        let pair = |n: u8| {
            Arc::new(CertifiedKey::new(vec![CertificateDer::from(vec![n])], Arc::clone(&signer)))
        };
        let resolver = SniResolver {
            default: pair(0),
            names: vec![
                ("*.example.org".into(), pair(1)),
                ("mail.example.org".into(), pair(2)),
                ("pop.test".into(), pair(3)),
            ],
        };
        let picked = |sni: Option<&str>| resolver.pick(sni).cert[0].as_ref()[0];
        assert_eq!(picked(None), 0, "no SNI: the default");
        assert_eq!(picked(Some("MAIL.example.org")), 2, "exact, any case, before the wildcard");
        assert_eq!(picked(Some("pop.example.org")), 1, "wildcard");
        assert_eq!(picked(Some("a.b.example.org")), 0, "a wildcard is one label");
        assert_eq!(picked(Some("example.org")), 0);
        assert_eq!(picked(Some("pop.test")), 3);
        assert_eq!(picked(Some("other.test")), 0, "unknown: the default");
    }
}
