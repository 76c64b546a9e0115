//! What the operator configures about bearer tokens.

use std::path::PathBuf;
use std::time::Duration;

/// How bearer tokens are checked, and what a good one must say.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// The authorization server's issuer identifier: a JWT's `iss` must equal it, an
    /// introspection answer's `iss` too when it has one, and the JWKS is found by OpenID
    /// Connect discovery under it unless given.
    pub issuer: String,
    /// Accepted audiences: a token's `aud` must name one of them. Empty: not checked (only for
    /// introspection, where the server already knows whom the token is for).
    pub audience: Vec<String>,
    /// The claim that names the user (e.g. `email`, `preferred_username`, `upn`, `sub`).
    pub user_claim: String,
    /// Scopes a token must carry (in `scope`, or Microsoft's `scp`), all of them.
    pub required_scopes: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub clock_skew: Duration,
    /// Local JWT checks or introspection.
    pub check: TokenCheck,
    /// PEM certificates to trust for the authorization server's HTTPS, instead of the
    /// public roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// The limit on every request to the authorization server.
    pub timeout: Duration,
    /// Unknown key ids make the JWKS be fetched again, at most this often (key rotation
    /// without letting forged key ids hammer the authorization server).
    pub jwks_min_refresh: Duration,
    /// The JWKS is fetched again when it is this old.
    pub jwks_max_age: Duration,
    /// Log in users the token names even when the users backend does not know them (a mail
    /// location without `%h` serves them).
    pub allow_unknown_users: bool,
}

impl std::fmt::Debug for OAuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_claim", &self.user_claim)
            .field("required_scopes", &self.required_scopes)
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl OAuthSettings {
    /// Settings with the defaults: user claim `email`, 60 s clock skew, 5 s timeout, the JWKS
    /// refetched for an unknown key id at most every 10 s and at the latest after an hour.
    pub fn new(issuer: impl Into<String>, audience: Vec<String>, check: TokenCheck) -> Self {
        Self {
            issuer: issuer.into(),
            audience,
            user_claim: "email".into(),
            required_scopes: Vec::new(),
            clock_skew: Duration::from_secs(60),
            check,
            ca_file: None,
            timeout: Duration::from_secs(5),
            jwks_min_refresh: Duration::from_secs(10),
            jwks_max_age: Duration::from_secs(3600),
            allow_unknown_users: false,
        }
    }

    /// The OpenID Connect discovery document's URL (OpenID Connect Discovery 1.0 §4), which
    /// RFC 7628 §3.2.2's error report names as `openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'))
    }
}

/// How a token is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// As a signed JWT, against the authorization server's keys.
    Jwt {
        /// Where the keys are.
        keys: KeySource,
    },
    /// By asking the authorization server (RFC 7662), as a client with these credentials.
    Introspection {
        /// The introspection endpoint.
        url: String,
        /// The client id pop3d is registered with.
        client_id: String,
        /// Its secret (client_secret_basic, RFC 6749 §2.3.1).
        client_secret: String,
        /// How long a good answer is reused (never past the token's `exp`); zero: not cached.
        cache: Duration,
    },
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jwt { keys } => f.debug_struct("Jwt").field("keys", keys).finish(),
            // The client secret is not shown.
            Self::Introspection { url, client_id, cache, .. } => f
                .debug_struct("Introspection")
                .field("url", url)
                .field("client_id", client_id)
                .field("cache", cache)
                .finish_non_exhaustive(),
        }
    }
}

/// Where the JWT signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `jwks_uri` of the issuer's OpenID Connect discovery document.
    Discovery,
    /// A JWKS URL.
    Url(String),
    /// A JWKS file (read again when it is older than the maximum age, or on an unknown key
    /// id).
    File(PathBuf),
}
