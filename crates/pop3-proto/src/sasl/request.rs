//! The credentials a login ends with, for the embedder to check.

use alloc::string::String;
use alloc::vec::Vec;

use super::digest::{apop_digest, constant_time_eq, cram_md5_digest};
use super::Mechanism;
use crate::Secret;

/// Credentials for the embedder to check: what the server session raises in
/// [`Event::Authenticate`](crate::server::Event::Authenticate) (USER/PASS, APOP and every SASL
/// mechanism) and what a [`SaslServer`](super::SaslServer) ends with
/// ([`ServerStep::Verify`](super::ServerStep::Verify): PLAIN, LOGIN, CRAM-MD5, OAUTHBEARER
/// and XOAUTH2). One type, so a password check is written once for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    /// A plaintext password: USER/PASS (`mechanism` is `None`), AUTH PLAIN or AUTH LOGIN.
    Password {
        /// The authentication identity.
        username: String,
        /// PLAIN's authorization identity, if the client asked to act as another user.
        authzid: Option<String>,
        /// The password, as sent: octets, since RFC 1939's PASS does not say they are UTF-8
        /// (PLAIN and LOGIN passwords are checked to be UTF-8, RFC 4616 §2).
        password: Secret<Vec<u8>>,
        /// The SASL mechanism, or `None` for USER/PASS.
        mechanism: Option<Mechanism>,
    },
    /// APOP (RFC 1939 §7): check `digest == MD5(timestamp + secret)` (see
    /// [`apop_digest`](crate::sasl::apop_digest)).
    Apop {
        /// The mailbox name.
        username: String,
        /// The greeting's timestamp, brackets included.
        timestamp: String,
        /// The client's digest, lower-case hexadecimal.
        digest: Secret<String>,
    },
    /// CRAM-MD5 (RFC 2195): check `digest == HMAC-MD5(secret, challenge)`, e.g. with
    /// [`cram_md5_matches`](Self::cram_md5_matches).
    CramMd5 {
        /// The user name.
        username: String,
        /// The challenge the server sent, `<nonce@hostname>`.
        challenge: String,
        /// The client's digest, lower-case hexadecimal.
        digest: Secret<String>,
    },
    /// OAUTHBEARER (RFC 7628) or XOAUTH2: validate the bearer token for this user. A refused
    /// token should go to [`SaslServer::bearer_rejected`](super::SaslServer::bearer_rejected)
    /// so that the client gets the error report (the server session does this itself).
    Bearer {
        /// Which of the two mechanisms.
        mechanism: Mechanism,
        /// The user the token is presented for: OAUTHBEARER's authzid (`a=`, empty when absent:
        /// the token names the user) or XOAUTH2's `user=`.
        username: String,
        /// The token.
        token: Secret<String>,
    },
    /// The session has already proved the user's identity (SCRAM-SHA-256): only open the
    /// maildrop.
    Verified {
        /// The authentication identity.
        username: String,
        /// The authorization identity, if the client asked for one.
        authzid: Option<String>,
    },
}

impl AuthRequest {
    /// The user name the client claims.
    pub fn username(&self) -> &str {
        match self {
            Self::Password { username, .. }
            | Self::Apop { username, .. }
            | Self::CramMd5 { username, .. }
            | Self::Bearer { username, .. }
            | Self::Verified { username, .. } => username,
        }
    }

    /// APOP: whether the client's digest is `MD5(timestamp + secret)` (RFC 1939 §7), compared
    /// in constant time. False for the other variants.
    pub fn apop_matches(&self, secret: &[u8]) -> bool {
        match self {
            Self::Apop { timestamp, digest, .. } => {
                let expected = apop_digest(timestamp, secret);
                constant_time_eq(expected.as_bytes(), digest.expose().as_bytes())
            }
            _ => false,
        }
    }

    /// CRAM-MD5: whether the client's digest is `HMAC-MD5(secret, challenge)` (RFC 2195 §2),
    /// compared in constant time. False for the other variants.
    pub fn cram_md5_matches(&self, secret: &[u8]) -> bool {
        match self {
            Self::CramMd5 { challenge, digest, .. } => {
                let expected = cram_md5_digest(secret, challenge.as_bytes());
                constant_time_eq(expected.as_bytes(), digest.expose().as_bytes())
            }
            _ => false,
        }
    }

    /// USER/PASS, PLAIN, LOGIN: whether the password equals `expected`, compared in constant
    /// time. False for the other variants. (Real servers compare against a hash instead.)
    pub fn password_matches(&self, expected: &[u8]) -> bool {
        match self {
            Self::Password { password, .. } => constant_time_eq(password.expose(), expected),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apop_matches_rfc1939_and_nothing_else() {
        let apop = AuthRequest::Apop {
            username: "mrose".into(),
            timestamp: "<1896.697170952@dbc.mtview.ca.us>".into(),
            digest: Secret::new("c4c9334bac560ecc979e58001b3e22fb".into()),
        };
        assert!(apop.apop_matches(b"tanstaaf"));
        assert!(!apop.apop_matches(b"tanstaa"));
        assert!(!apop.password_matches(b"tanstaaf"));
        assert!(!apop.cram_md5_matches(b"tanstaaf"));
        assert_eq!(apop.username(), "mrose");
    }
}
