//! What the LDAP backend is told: the directory's URL and TLS, how a user's entry is found,
//! the pool and the timeout; checked before anything is contacted.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::escape;

/// How a user name becomes the DN the password is checked against (by a bind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Find {
    /// A DN template: `%u` replaced by the name, escaped for a DN (RFC 4514), e.g.
    /// `uid=%u,ou=people,dc=example,dc=org`. One bind per login.
    Template(String),
    /// Search-then-bind: one subtree search under `base` with `filter` (`%u` replaced by the
    /// name, escaped for a filter, RFC 4515), then a bind as the entry found. Exactly one entry
    /// must match.
    Search {
        /// The search base, e.g. `ou=people,dc=example,dc=org`.
        base: String,
        /// The filter, e.g. `(&(objectClass=inetOrgPerson)(uid=%u))`.
        filter: String,
    },
}

/// The LDAP users backend's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct LdapSettings {
    /// `ldaps://host[:port]` or `ldap://host[:port]`.
    pub url: String,
    /// StartTLS (RFC 4511 §4.14) on an `ldap://` URL before anything else is sent.
    pub starttls: bool,
    /// A PEM file of the CAs to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Allows `ldap://` without StartTLS to a host that is not loopback: passwords then cross
    /// the network in clear.
    pub allow_plaintext: bool,
    /// How a user's entry is found.
    pub find: Find,
    /// The service account that searches (search-then-bind and lookups); `None`: anonymous.
    pub search_dn: Option<String>,
    /// The service account's password (read from a file by the caller, never configured
    /// inline). Not shown by `Debug`.
    pub search_password: Option<String>,
    /// The attribute holding the user's home directory (the mail location's `%h`), e.g.
    /// `homeDirectory`.
    pub home_attribute: Option<String>,
    /// At most this many connections to the directory, each used by one check at a time.
    pub pool_size: usize,
    /// The bound on connecting and on every operation.
    pub timeout: Duration,
}

impl fmt::Debug for LdapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapSettings")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("find", &self.find)
            .field("search_dn", &self.search_dn)
            .field("search_password", &self.search_password.as_ref().map(|_| "****"))
            .field("home_attribute", &self.home_attribute)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl LdapSettings {
    /// Settings with the defaults: a pool of 8, a timeout of 5 s, no service account, no home
    /// attribute, the system's roots.
    pub fn new(url: impl Into<String>, find: Find) -> Self {
        Self {
            url: url.into(),
            starttls: false,
            ca_file: None,
            allow_plaintext: false,
            find,
            search_dn: None,
            search_password: None,
            home_attribute: None,
            pool_size: 8,
            timeout: Duration::from_secs(5),
        }
    }

    /// Checks the settings without contacting the directory; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let (tls, host) = parse_url(&self.url)?;
        if tls && self.starttls {
            return Err("starttls is for ldap:// URLs; ldaps:// is TLS from the start".into());
        }
        if !tls && !self.starttls && !self.allow_plaintext && !is_loopback(&host) {
            return Err(format!(
                "url {}: passwords would cross the network in clear; use ldaps://, or \
                 starttls = true, or allow_plaintext = true",
                self.url
            ));
        }
        match &self.find {
            Find::Template(template) => {
                if !template.contains("%u") {
                    return Err("bind_dn must contain %u (the user name)".into());
                }
            }
            Find::Search { base: _, filter } => {
                if !filter.contains("%u") {
                    return Err("filter must contain %u (the user name)".into());
                }
                let sample = escape::substitute(filter, &escape::filter_value("name"));
                ldap3::parse_filter(&sample).map_err(|_| {
                    format!("filter {filter:?} is not a valid LDAP filter (RFC 4515)")
                })?;
            }
        }
        if self.search_dn.is_some() != self.search_password.is_some() {
            return Err("search_dn and search_password_file go together".into());
        }
        if self.search_password.as_deref() == Some("") {
            // RFC 4513 §5.1.2: with no password the service bind would be unauthenticated.
            return Err("search_password_file is empty".into());
        }
        if self.pool_size == 0 {
            return Err("pool_size must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be at least 1 second".into());
        }
        if let Some(home) = &self.home_attribute {
            if home.is_empty() || !home.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("home_attribute {home:?} is not an attribute name"));
            }
        }
        Ok(())
    }

    /// The rustls client settings: ring, TLS 1.2 and 1.3, the CAs of `ca_file` or else the
    /// system's roots (as the PostgreSQL connections do).
    pub(super) fn client_tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("ca_file {shown}: {e}"))?;
                if certs.is_empty() {
                    return Err(format!("ca_file {shown}: no certificate in it"));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| format!("ca_file {shown}: {e}"))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() && self.uses_tls() {
                    return Err("no trusted roots on this system: set ca_file".into());
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// True if the connection is TLS (LDAPS or StartTLS).
    pub fn uses_tls(&self) -> bool {
        self.starttls || self.url.to_ascii_lowercase().starts_with("ldaps://")
    }
}

/// `(is ldaps, host)` of an `ldap://` or `ldaps://` URL with a host (no `ldapi://`: the pool
/// speaks TCP only).
fn parse_url(url: &str) -> Result<(bool, String), String> {
    let lower = url.to_ascii_lowercase();
    let (tls, rest) = if let Some(rest) = lower.strip_prefix("ldaps://") {
        (true, rest)
    } else if let Some(rest) = lower.strip_prefix("ldap://") {
        (false, rest)
    } else {
        return Err(format!("url {url:?}: not ldap://host or ldaps://host"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    if host.is_empty() {
        return Err(format!("url {url:?}: no host"));
    }
    if let Some((_, port)) = authority.rsplit_once(':').filter(|_| !authority.starts_with('[')) {
        port.parse::<u16>().map_err(|_| format!("url {url:?}: bad port {port:?}"))?;
    }
    Ok((tls, host.to_owned()))
}

/// True for `localhost` and loopback addresses: traffic that never leaves the machine.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(url: &str) -> LdapSettings {
        LdapSettings::new(url, Find::Template("uid=%u,ou=people,dc=example,dc=org".into()))
    }

    #[test]
    fn passwords_do_not_cross_the_network_in_clear() {
        assert!(template("ldaps://ldap.example.org").validate().is_ok());
        assert!(template("ldap://127.0.0.1:3389").validate().is_ok());
        assert!(template("ldap://localhost").validate().is_ok());
        assert!(template("ldap://[::1]:389").validate().is_ok());
        let e = template("ldap://ldap.example.org").validate().unwrap_err();
        assert!(e.contains("in clear"), "{e}");
        let mut s = template("ldap://ldap.example.org");
        s.starttls = true;
        assert!(s.validate().is_ok());
        let mut s = template("ldap://ldap.example.org");
        s.allow_plaintext = true;
        assert!(s.validate().is_ok());
        let mut s = template("ldaps://ldap.example.org");
        s.starttls = true;
        assert!(s.validate().unwrap_err().contains("starttls"));
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(template("http://x").validate().unwrap_err().contains("not ldap://"));
        assert!(template("ldaps://").validate().unwrap_err().contains("no host"));
        assert!(template("ldaps://h:port").validate().unwrap_err().contains("bad port"));
        let s = LdapSettings::new("ldaps://h", Find::Template("uid=x,dc=org".into()));
        assert!(s.validate().unwrap_err().contains("%u"));
        let find = Find::Search { base: "dc=org".into(), filter: "(uid=%u".into() };
        let e = LdapSettings::new("ldaps://h", find).validate().unwrap_err();
        assert!(e.contains("not a valid LDAP filter"), "{e}");
        let mut s = template("ldaps://h");
        s.search_dn = Some("cn=svc".into());
        assert!(s.validate().unwrap_err().contains("search_password_file"));
        s.search_password = Some(String::new());
        assert!(s.validate().unwrap_err().contains("is empty"));
        s.search_password = Some("pw".into());
        assert!(s.validate().is_ok());
        assert!(!format!("{s:?}").contains("\"pw\""), "the password is not shown");
        s.pool_size = 0;
        assert!(s.validate().unwrap_err().contains("pool_size"));
        let mut s = template("ldaps://h");
        s.home_attribute = Some("home dir".into());
        assert!(s.validate().unwrap_err().contains("home_attribute"));
    }
}
