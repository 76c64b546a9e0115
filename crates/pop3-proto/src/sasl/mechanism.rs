//! The mechanism names this crate implements.

use core::fmt;

/// A SASL mechanism (RFC 4422) that this crate implements on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `PLAIN` (RFC 4616): authorization identity, user name and password in one message.
    Plain,
    /// `LOGIN` (draft-murchison-sasl-login): user name and password in answer to two prompts.
    Login,
    /// `CRAM-MD5` (RFC 2195): HMAC-MD5 of a server challenge keyed with the password.
    CramMd5,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677) without channel binding.
    ScramSha256,
    /// `OAUTHBEARER` (RFC 7628): an OAuth 2.0 bearer token.
    OAuthBearer,
    /// `XOAUTH2`: Google's and Microsoft's pre-standard OAuth 2.0 bearer token mechanism.
    XOAuth2,
}

impl Mechanism {
    /// Every mechanism, in declaration order.
    pub const ALL: [Mechanism; 6] = [
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::CramMd5,
        Mechanism::ScramSha256,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
    ];

    /// The registered name, in upper case, as it appears in `AUTH` and in CAPA's `SASL` line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::CramMd5 => "CRAM-MD5",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::OAuthBearer => "OAUTHBEARER",
            Self::XOAuth2 => "XOAUTH2",
        }
    }

    /// The mechanism with this name, compared case-insensitively (RFC 4422 §3.1 names are
    /// upper case, but RFC 5034 §4 lets the client send them in any case).
    ///
    /// ```
    /// use pop3_proto::sasl::Mechanism;
    /// assert_eq!(Mechanism::from_name("scram-sha-256"), Some(Mechanism::ScramSha256));
    /// assert_eq!(Mechanism::from_name("SCRAM-SHA-256-PLUS"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Whether the mechanism reveals the password to anyone who can read the exchange
    /// (`PLAIN` and `LOGIN`), so that it should only be offered and used over TLS or loopback
    /// (RFC 4616 §6, RFC 2595 §2.1).
    pub fn sends_password(self) -> bool {
        matches!(self, Self::Plain | Self::Login)
    }

    /// Whether the mechanism sends an OAuth 2.0 bearer token (`OAUTHBEARER`, `XOAUTH2`):
    /// anyone who reads the exchange can use the token until it expires, so a server offers
    /// these, like the password mechanisms, only over TLS or where it allows plaintext
    /// passwords (RFC 7628 §5: "MUST be used with TLS").
    pub fn sends_bearer_token(self) -> bool {
        matches!(self, Self::OAuthBearer | Self::XOAuth2)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(Mechanism::from_name(&m.name().to_ascii_lowercase()), Some(m));
        }
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        assert_eq!(Mechanism::from_name(""), None);
    }

    #[test]
    fn only_plain_and_login_send_the_password() {
        let senders: alloc::vec::Vec<_> =
            Mechanism::ALL.into_iter().filter(|m| m.sends_password()).collect();
        assert_eq!(senders, [Mechanism::Plain, Mechanism::Login]);
    }
}
