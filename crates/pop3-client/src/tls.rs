//! TLS settings: trust roots, an extra CA file, SHA-256 pinning, or no verification.
//!
//! A certificate in the extra CA file (or [`TlsOptions::extra_ca_der`]) is trusted twice:
//! as a CA that issues the server's certificate, and as the server's certificate itself,
//! byte for byte. The second is what a self-signed certificate made with `openssl req -x509`
//! needs: it says `CA:TRUE`, and webpki refuses a CA certificate as the server's own
//! (`CaUsedAsEndEntity`), where OpenSSL, GnuTLS and Python accept it when it is trusted. Such
//! a certificate must still be valid now and name the server (its subjectAltNames, or
//! without any, its commonName, as RFC 6125 section 6.4.4 allows).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::{x509, Error, Result};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain text (port 110). Passwords cross the network readable.
    None,
    /// Plain text upgraded with `STLS` (RFC 2595) before login; a server that does not offer
    /// STLS is an error ([`Error::StlsUnavailable`]), never a silent downgrade.
    #[default]
    Stls,
    /// TLS from the first byte (POP3S, port 995).
    Implicit,
}

impl TlsMode {
    /// The usual port for the mode: 995 for implicit TLS, 110 otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Implicit => 995,
            _ => 110,
        }
    }
}

/// How the server's certificate is checked.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust the system's roots (rustls-native-certs). Default on via [`TlsOptions::new`].
    pub system_roots: bool,
    /// Also trust the CA certificates in this PEM file.
    pub extra_ca_file: Option<PathBuf>,
    /// Also trust these CA certificates (DER).
    pub extra_ca_der: Vec<Vec<u8>>,
    /// Accept exactly the certificates whose SHA-256 fingerprint (of the DER certificate) is
    /// listed here, whoever issued them, and no other. Replaces chain verification.
    pub pinned_sha256: Vec<[u8; 32]>,
    /// Accept any certificate. Only for testing: the connection is then open to anyone who
    /// can intercept it.
    pub danger_accept_invalid_certs: bool,
    /// The name to verify the certificate against, when it differs from the host connected to.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// System roots, full verification.
    pub fn new() -> Self {
        Self { system_roots: true, ..Self::default() }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("system_roots", &self.system_roots)
            .field("extra_ca_file", &self.extra_ca_file)
            .field("extra_ca_der", &self.extra_ca_der.len())
            .field(
                "pinned_sha256",
                &self.pinned_sha256.iter().map(|f| pop3_proto::hex(f)).collect::<Vec<_>>(),
            )
            .field("danger_accept_invalid_certs", &self.danger_accept_invalid_certs)
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// The SHA-256 fingerprint of a DER certificate, as [`TlsOptions::pinned_sha256`] wants it.
pub fn fingerprint_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Parses a SHA-256 fingerprint written as 64 hex digits, with or without `:` separators
/// (`AB:CD:...` as OpenSSL prints it), optionally prefixed with `sha256:` or `SHA256:`.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let text = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))
        .or_else(|| text.strip_prefix("sha256/"))
        .unwrap_or(text);
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls client configuration for these options.
pub(crate) fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    let config = if options.danger_accept_invalid_certs || !options.pinned_sha256.is_empty() {
        let verifier = PinVerifier {
            pins: if options.danger_accept_invalid_certs {
                None
            } else {
                Some(options.pinned_sha256.clone())
            },
            provider,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        if options.system_roots {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
        let mut extra = Vec::new();
        if let Some(path) = &options.extra_ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::TlsConfig(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::TlsConfig(format!("{}: no certificate", path.display())));
            }
            extra.extend(certs.into_iter().map(|c| (c, path.display().to_string())));
        }
        extra.extend(
            options.extra_ca_der.iter().map(|d| (CertificateDer::from(d.clone()), String::new())),
        );
        let mut trusted_leaves = Vec::new();
        for (cert, source) in extra {
            let leaf = x509::read(&cert).is_some();
            match roots.add(cert.clone()) {
                Ok(()) => {}
                // One that cannot anchor a chain (an X.509 v1 certificate, say) can still be
                // trusted as the server's own.
                Err(_) if leaf => {}
                Err(e) => {
                    let source = if source.is_empty() { source } else { format!("{source}: ") };
                    return Err(Error::TlsConfig(format!("{source}{e}")));
                }
            }
            if leaf {
                trusted_leaves.push(cert);
            }
        }
        if roots.is_empty() && trusted_leaves.is_empty() {
            return Err(Error::TlsConfig("no trusted root certificate".into()));
        }
        let verifier = TrustedVerifier {
            webpki: (!roots.is_empty())
                .then(|| {
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                })
                .transpose()
                .map_err(|e| Error::TlsConfig(e.to_string()))?,
            trusted_leaves,
            provider,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// webpki's verification against the trusted roots, and besides it, any certificate the user
/// trusts presented as it is, as the server's own (see the [module docs](self)).
#[derive(Debug)]
struct TrustedVerifier {
    /// Chains to the system's roots and the extra certificates (`None`: no roots at all).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The extra certificates, each accepted as the server's certificate.
    trusted_leaves: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl TrustedVerifier {
    /// A certificate trusted as it is: it must be valid at `now` and name `server_name`.
    fn verify_trusted_leaf(
        cert: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bad = |e: CertificateError| rustls::Error::InvalidCertificate(e);
        let fields = x509::read(cert).ok_or(bad(CertificateError::BadEncoding))?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < fields.not_before {
            return Err(bad(CertificateError::NotValidYet));
        }
        if now > fields.not_after {
            return Err(bad(CertificateError::Expired));
        }
        if fields.has_subject_alt_name {
            verify_server_name(&ParsedCertificate::try_from(cert)?, server_name)?;
        } else if !fields.common_names.iter().any(|cn| names(cn, server_name)) {
            return Err(bad(CertificateError::NotValidForNameContext {
                expected: server_name.to_owned(),
                presented: fields.common_names.iter().map(|cn| format!("CN={cn}")).collect(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }
}

/// True if the commonName `cn` names `server`: the same DNS name (ASCII case ignored; no
/// wildcards), or the same IP address.
fn names(cn: &str, server: &ServerName<'_>) -> bool {
    match server {
        ServerName::DnsName(dns) => {
            cn.trim_end_matches('.').eq_ignore_ascii_case(dns.as_ref().trim_end_matches('.'))
        }
        ServerName::IpAddress(ip) => {
            cn.parse::<std::net::IpAddr>().is_ok_and(|cn| cn == std::net::IpAddr::from(*ip))
        }
        _ => false,
    }
}

impl ServerCertVerifier for TrustedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chained = match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        };
        match chained {
            Err(_) if self.trusted_leaves.iter().any(|t| t.as_ref() == end_entity.as_ref()) => {
                Self::verify_trusted_leaf(end_entity, server_name, now)
            }
            // A self-signed certificate nobody trusts is what webpki would call an unknown
            // issuer, had it not stopped at `CA:TRUE` first (`CaUsedAsEndEntity`, one of the
            // errors rustls passes on as `Other`): say so, since trusting it is the fix.
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(_)))
                if x509::read(end_entity).is_some_and(|f| f.self_issued) =>
            {
                Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The name the certificate is checked against.
pub(crate) fn server_name(host: &str, options: &TlsOptions) -> Result<ServerName<'static>> {
    let name = options.server_name.as_deref().unwrap_or(host);
    // An IPv6 literal as a URL writes it, `[::1]`, names the address `::1`.
    let name = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    ServerName::try_from(name.to_owned())
        .map_err(|e| Error::TlsConfig(format!("invalid server name {name:?}: {e}")))
}

/// Accepts a certificate by its SHA-256 fingerprint (`pins: Some`) or anything (`None`), while
/// still checking the handshake signatures, so the peer must hold the certificate's key.
#[derive(Debug)]
struct PinVerifier {
    pins: Option<Vec<[u8; 32]>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pins {
            None => Ok(ServerCertVerified::assertion()),
            Some(pins) if pins.contains(&fingerprint_sha256(end_entity)) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_common_spellings() {
        let hex64 = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex64), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&format!("sha256:{hex64}")), Some([0xab; 32]));
        assert_eq!(parse_fingerprint("abcd"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
        assert_eq!(pop3_proto::hex(&[0xab; 32]), hex64);
    }
}
