//! The credentials backend interface.

use std::fmt;
use std::path::PathBuf;

use pop3_proto::sasl::ScramKeys;
use pop3_proto::server::AuthRequest;

/// A user whose credentials were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The login name (also the maildrop's `%u`).
    pub name: String,
    /// The home directory (the maildrop's `%h`), if the backend knows one.
    pub home: Option<PathBuf>,
}

impl UserInfo {
    /// A user with a name only.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), home: None }
    }
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user or wrong credentials (`-ERR [AUTH]`, after the failure delay).
    Rejected,
    /// The backend could not answer (`-ERR [SYS/TEMP]`); the reason is logged, never sent.
    Temporary(String),
}

/// Which credential-dependent methods a backend can serve, so that the server offers only
/// those (CAPA, the APOP greeting timestamp, the SASL list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    /// APOP: needs the plaintext (or a plaintext-equivalent) secret.
    pub apop: bool,
    /// SASL CRAM-MD5: needs the plaintext (or a plaintext-equivalent) secret.
    pub cram_md5: bool,
    /// SASL SCRAM-SHA-256: needs SCRAM keys or the plaintext.
    pub scram_sha256: bool,
}

/// A users backend. Methods may block (file reads, slow password hashes): the server calls
/// them on tokio's blocking pool.
///
/// The user name has already been checked with [`valid_username`](crate::valid_username).
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// What this backend can verify beyond plaintext passwords.
    fn offers(&self) -> Offers;

    /// Verifies a login. For [`AuthRequest::Verified`] (SCRAM has already proved the
    /// identity) only looks the user up. Authorization identities other than the user itself
    /// are refused by the server before this is called.
    fn authenticate(&self, request: &AuthRequest) -> Result<UserInfo, AuthError>;

    /// SCRAM-SHA-256 keys for `username`, or `None` for an unknown user or one whose scheme
    /// cannot give them.
    fn scram_keys(&self, username: &str) -> Option<ScramKeys>;
}
