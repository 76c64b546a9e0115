//! Reaching the database: the URL, the connection, and what went wrong.

use std::fmt;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why the schema could not be read or migrated.
#[derive(Debug)]
pub enum PgError {
    /// The URL does not parse as a libpq-style connection string.
    Url(postgres::Error),
    /// The URL asks for TLS and its settings cannot be used (e.g. an unreadable
    /// `sslrootcert`).
    Tls(String),
    /// The server could not be reached (refused, timed out, no such socket): temporary.
    Unreachable(postgres::Error),
    /// The server answered but refused the connection (authentication, unknown database).
    Rejected(postgres::Error),
    /// A statement failed.
    Query(postgres::Error),
    /// The database's schema is newer than this build knows: never downgrade it.
    NewerSchema {
        /// The version in the database.
        found: i32,
        /// [`LATEST_VERSION`](super::LATEST_VERSION) of this build.
        known: i32,
    },
}

impl PgError {
    /// True if retrying later may succeed: the server is down or unreachable, or the
    /// connection was lost mid-way (a statement the server itself refused is not temporary).
    pub fn is_temporary(&self) -> bool {
        match self {
            PgError::Unreachable(_) => true,
            PgError::Query(e) | PgError::Rejected(e) => match e.as_db_error() {
                None => true, // the connection broke mid-way
                Some(db) => temporary_sqlstate(db.code().code()),
            },
            PgError::Url(_) | PgError::Tls(_) | PgError::NewerSchema { .. } => false,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Url(e) => write!(f, "invalid PostgreSQL URL: {e}"),
            PgError::Tls(e) => write!(f, "PostgreSQL TLS settings: {e}"),
            PgError::Unreachable(e) => {
                write!(f, "cannot reach the PostgreSQL server: {}", chain(e))
            }
            PgError::Rejected(e) => {
                write!(f, "the PostgreSQL server refused the connection: {}", chain(e))
            }
            PgError::Query(e) => write!(f, "PostgreSQL statement failed: {}", chain(e)),
            PgError::NewerSchema { found, known } => write!(
                f,
                "the database schema is version {found}, newer than this build's {known}: \
                 upgrade pop3d"
            ),
        }
    }
}

impl std::error::Error for PgError {}

/// SQLSTATEs that pass by themselves (PostgreSQL's appendix A): connection exceptions
/// (class 08), transaction rollbacks such as deadlocks and serialization failures (40),
/// insufficient resources such as too many connections or a full disk (53), operator
/// intervention such as a shutdown or a server still starting (57), system errors (58), and a
/// write sent to a server that became a read-only standby during a failover (25006).
fn temporary_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58")) || code == "25006"
}

/// The error and its causes, ": "-separated (rust-postgres's Display alone says only
/// "error connecting to server", not why).
fn chain(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    if let Some(db) = e.as_db_error() {
        return format!("{text}: {} ({})", db.message(), db.code().code());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parses a libpq-style URL (`postgresql://user@host:port/db?param=value`, or key=value
/// pairs; a host starting with `/`, e.g. `postgresql://user@%2Frun%2Fpostgresql/db`, is a Unix
/// socket directory). Only the syntax is checked: nothing is contacted.
pub fn parse_url(url: &str) -> Result<Config, PgError> {
    Ok(Connector::new(url)?.config)
}

/// How long a connection attempt may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the kernel waits on an idle connection before probing it (unless the URL says,
/// `keepalives_idle`): a database host that vanished without closing its connections is
/// noticed in about a minute rather than after the system default of two hours.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// A database's connection settings and TLS, ready to connect again and again.
///
/// TLS follows libpq's URL parameters: `sslmode=require`, `verify-ca` or `verify-full` is
/// TLS with the server's certificate always verified, chain and host name (rustls knows no
/// unverified TLS, so `require` and `verify-ca` are as strict as `verify-full`), against the
/// PEM file of `sslrootcert` or else the system's trusted roots; `sslmode=prefer` is that
/// TLS when the server offers it and plain otherwise; no `sslmode` (or `disable`) is plain.
/// Unlike libpq, a URL without `sslmode` never tries TLS: a Unix socket or loopback needs
/// none, and TLS that may silently not happen is not asked for by accident.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl Connector {
    /// Parses `url`, with this crate's defaults for what it leaves out: a 10-second connect
    /// timeout and TCP keepalives after 30 idle seconds.
    pub(crate) fn new(url: &str) -> Result<Self, PgError> {
        let (rust_url, tls) = split_libpq_tls(url);
        let mut config = rust_url.parse::<Config>().map_err(PgError::Url)?;
        if config.get_connect_timeout().is_none() {
            // A silently dropped SYN must not hang `pop3d db migrate` or a login for minutes.
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if !url.contains("keepalives_idle") {
            config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
        }
        if !tls.mode_given {
            config.ssl_mode(SslMode::Disable);
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_tls(tls.root_cert.as_deref())?)),
        };
        Ok(Self { config, tls })
    }

    /// Connects, classifying the failure.
    pub(crate) fn connect(&self) -> Result<Client, PgError> {
        let connected = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        connected.map_err(|e| {
            if e.as_db_error().is_some() {
                PgError::Rejected(e)
            } else if is_tls_failure(&e) {
                // A certificate that does not verify needs the operator, not a retry.
                PgError::Tls(chain(&e))
            } else {
                PgError::Unreachable(e)
            }
        })
    }
}

/// True if rustls refused the handshake (somewhere in the error's causes).
fn is_tls_failure(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let io_inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if s.is::<rustls::Error>() || io_inner.is_some_and(|inner| inner.is::<rustls::Error>()) {
            return true;
        }
        source = s.source();
    }
    false
}

/// Connects to `url` (the users query of pop3-server connects through it too).
pub fn connect(url: &str) -> Result<Client, PgError> {
    Connector::new(url)?.connect()
}

/// What the URL says of TLS beyond what rust-postgres parses.
#[derive(Debug, Default, PartialEq, Eq)]
struct LibpqTls {
    /// `sslmode` was given.
    mode_given: bool,
    /// `sslrootcert`: the PEM file of the certificate authorities to trust.
    root_cert: Option<String>,
}

/// `url` rewritten for rust-postgres's parser, which knows `sslmode` only as disable, prefer
/// and require and no `sslrootcert`: `verify-ca` and `verify-full` become `require` (which
/// verifies as much here) and `sslrootcert` is taken out, in both the URL and the key=value
/// forms.
fn split_libpq_tls(url: &str) -> (String, LibpqTls) {
    let mut tls = LibpqTls::default();
    let mut keep = |key: &str, value: &str| -> Option<String> {
        match key {
            "sslrootcert" => {
                tls.root_cert = Some(percent_decode(value));
                None
            }
            "sslmode" => {
                tls.mode_given = true;
                let value =
                    if matches!(value, "verify-ca" | "verify-full") { "require" } else { value };
                Some(format!("{key}={value}"))
            }
            _ => Some(format!("{key}={value}")),
        }
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((head, query)) = url.split_once('?') else { return (url.to_owned(), tls) };
        let params: Vec<String> = query
            .split('&')
            .filter_map(|pair| match pair.split_once('=') {
                Some((k, v)) => keep(k, v),
                None => Some(pair.to_owned()),
            })
            .collect();
        let rewritten = if params.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", params.join("&"))
        };
        (rewritten, tls)
    } else {
        let pairs: Vec<String> = url
            .split_whitespace()
            .filter_map(|pair| match pair.split_once('=') {
                Some((k, v)) => keep(k.trim(), v.trim_matches('\'')),
                None => Some(pair.to_owned()),
            })
            .collect();
        (pairs.join(" "), tls)
    }
}

/// `%XX` escapes decoded (a URL's `sslrootcert=%2Fetc%2Fca.pem`).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls client settings: ring, TLS 1.2 and 1.3, the roots of `root_cert` (a PEM file)
/// or else the system's.
fn client_tls(root_cert: Option<&str>) -> Result<rustls::ClientConfig, PgError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| PgError::Tls(format!("sslrootcert {path}: {e}")))?;
            if certs.is_empty() {
                return Err(PgError::Tls(format!("sslrootcert {path}: no certificate in it")));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| PgError::Tls(format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(PgError::Tls(
                    "no trusted roots on this system: set sslrootcert in the URL".into(),
                ));
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why() {
        assert!(parse_url("postgresql://pop3@127.0.0.1:5432/mail").is_ok());
        assert!(parse_url("postgresql://pop3@%2Frun%2Fpostgresql/mail").is_ok());
        assert!(parse_url("host=/run/postgresql user=pop3 dbname=mail").is_ok());
        let e = parse_url("postgresql://pop3@127.0.0.1:notaport/mail").unwrap_err();
        assert!(e.to_string().starts_with("invalid PostgreSQL URL"), "{e}");
        assert!(!e.is_temporary());
    }

    #[test]
    fn libpq_tls_parameters_are_understood_in_both_forms() {
        let (url, tls) = split_libpq_tls(
            "postgresql://u@db:5432/mail?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(url, "postgresql://u@db:5432/mail?sslmode=require&application_name=x");
        assert_eq!(tls, LibpqTls { mode_given: true, root_cert: Some("/etc/ca.pem".into()) });
        let (url, tls) = split_libpq_tls("host=db sslmode=verify-ca sslrootcert=/ca.pem user=u");
        assert_eq!(url, "host=db sslmode=require user=u");
        assert_eq!(tls.root_cert.as_deref(), Some("/ca.pem"));
        let (url, tls) = split_libpq_tls("postgresql://u@%2Frun%2Fpostgresql/mail");
        assert_eq!(
            (url.as_str(), tls),
            ("postgresql://u@%2Frun%2Fpostgresql/mail", LibpqTls::default())
        );
        // No sslmode: plain, never an unasked-for attempt at TLS.
        let plain = Connector::new("postgresql://u@db/mail").unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.config.get_ssl_mode(), SslMode::Disable);
        let e = Connector::new("postgresql://u@db/mail?sslmode=require&sslrootcert=/nonexistent")
            .unwrap_err();
        assert!(matches!(e, PgError::Tls(_)) && e.to_string().contains("/nonexistent"), "{e}");
    }

    #[test]
    fn failover_and_overload_states_are_temporary() {
        for code in ["08006", "40001", "40P01", "53100", "53300", "57P01", "57P03", "25006"] {
            assert!(temporary_sqlstate(code), "{code}");
        }
        for code in ["42P01", "23505", "28P01", "3D000", "25001"] {
            assert!(!temporary_sqlstate(code), "{code}");
        }
    }
}
