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

/// Which credential-dependent methods the server offers besides USER/PASS and SASL PLAIN and
/// LOGIN: the operator's choice. A user whose stored secret cannot serve an offered method
/// (APOP and CRAM-MD5 need the plaintext, SCRAM-SHA-256 the plaintext or SCRAM keys) fails
/// that method alone, as with a wrong password, and the backend logs why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    /// APOP.
    pub apop: bool,
    /// SASL CRAM-MD5.
    pub cram_md5: bool,
    /// SASL SCRAM-SHA-256.
    pub scram_sha256: bool,
    /// SASL OAUTHBEARER (RFC 7628): needs a users backend that checks bearer tokens
    /// (`oauth::BearerAuth`); others refuse every token.
    pub oauthbearer: bool,
    /// SASL XOAUTH2 (Google's and Microsoft's), likewise.
    pub xoauth2: bool,
}

/// A users backend. Methods may block (file reads, slow password hashes): the server calls
/// them on threads of its own, except [`authenticate_quick`](Self::authenticate_quick).
///
/// The user name has already been checked with [`valid_username`](crate::valid_username).
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// Verifies a login. For [`AuthRequest::Verified`] (SCRAM has already proved the
    /// identity) only looks the user up. Authorization identities other than the user itself
    /// are refused by the server before this is called.
    fn authenticate(&self, request: &AuthRequest) -> Result<UserInfo, AuthError>;

    /// Looks `name` up without credentials (local delivery): `Ok(None)` for an unknown user,
    /// [`AuthError::Temporary`] when the backend cannot answer.
    fn user(&self, name: &str) -> Result<Option<UserInfo>, AuthError>;

    /// SCRAM-SHA-256 keys for `username`. For an unknown user (or one whose scheme cannot
    /// give keys) a backend should return decoy keys that are the same on every connection
    /// (see [`ScramKeys::decoy`]); `None` makes the session draw decoys per connection, which
    /// tells a prober that the user is unknown.
    fn scram_keys(&self, username: &str) -> Option<ScramKeys>;

    /// Whether checking `request` waits on another server (a directory, a database, an
    /// authorization server) rather than on this machine's CPU. The server runs such checks
    /// on threads of their own, so that a slow or stalled remote service (each call bounded by
    /// its backend's timeout) cannot hold the threads that check password hashes here, nor
    /// the reverse. Default: a local check.
    fn is_remote(&self, _request: &AuthRequest) -> bool {
        false
    }

    /// Checks `request` at once when that costs less than handing it to a check thread and
    /// being woken with the result (two thread wake-ups, a large part of a fast login's
    /// CPU): a few microseconds of CPU, nothing that waits on I/O. `None`: the check is not
    /// quick (a slow hash, a remote service, a file to reload), and the server runs
    /// [`authenticate`](Self::authenticate) on its check threads. A backend must answer
    /// quickly for every user or for none, so that a quick answer tells nothing about
    /// whether the user exists. Default: never quick.
    fn authenticate_quick(&self, _request: &AuthRequest) -> Option<Result<UserInfo, AuthError>> {
        None
    }
}
