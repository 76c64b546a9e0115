//! What an embedder configures about a server session.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use crate::sasl::Mechanism;
use crate::{Expire, Limits};

/// Server session settings. `Default` gives RFC-backed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Line-length limits for the command decoder.
    pub limits: Limits,
    /// The `IMPLEMENTATION` capability (RFC 2449 §6.9); `None` leaves it out.
    pub implementation: Option<String>,
    /// The embedder can run a TLS handshake, so `STLS` is offered before TLS (RFC 2595).
    pub tls_available: bool,
    /// Plaintext passwords (USER/PASS, AUTH PLAIN and LOGIN) and bearer tokens (OAUTHBEARER,
    /// XOAUTH2) may be sent on this connection before TLS. The embedder decides (loopback, or
    /// an operator's explicit choice); after TLS they are always allowed.
    pub plaintext_without_tls: bool,
    /// APOP is offered: the greeting carries a timestamp and `APOP` is accepted. It needs the
    /// users' plaintext-equivalent secrets on the server.
    pub apop: bool,
    /// SASL mechanisms the credential backend can serve, in order of preference.
    pub sasl_mechanisms: Vec<Mechanism>,
    /// `EXPIRE` (RFC 2449 §6.7), if the operator deletes mail on a schedule.
    pub expire: Option<Expire>,
    /// `LOGIN-DELAY` seconds (RFC 2449 §6.5), if enforced.
    pub login_delay: Option<u32>,
    /// Failed logins on one connection before it is closed (default 3).
    pub max_failed_logins: u32,
    /// Bad commands (syntax errors, unknown commands, commands illegal in the state) before
    /// the connection is closed (default 20).
    pub max_bad_commands: u32,
    /// Idle time allowed before login (default 60 s). Only complete lines count as activity:
    /// a client that trickles a byte at a time without ending a line is idle.
    pub idle_timeout_authorization: Duration,
    /// Time allowed from the greeting to a successful login, however active the client is
    /// (default 180 s, Dovecot's login timeout). `None`: no such limit. A connection that
    /// never logs in holds a slot only this long.
    pub login_deadline: Option<Duration>,
    /// Command lines (SASL responses included) accepted before login (default 30: a client
    /// needs about six, a few more with failed attempts). The next one closes the connection.
    pub max_commands_before_login: u32,
    /// Idle time allowed after login (default 10 min, RFC 1939 §3's minimum).
    pub idle_timeout_transaction: Duration,
    /// Output octets above which the session stops producing (back-pressure): no new command
    /// is executed and [`wants_body_data`](super::ServerSession::wants_body_data) turns false
    /// until the embedder has taken the output (default 64 KiB).
    pub output_high_water: usize,
    /// Languages for `LANG` (RFC 6856 §3): tag and description; the first is the default.
    pub languages: Vec<(String, String)>,
    /// Accept the obsolete `LAST` command (RFC 1460, removed by RFC 1725) (default false:
    /// answered `-ERR`, as Dovecot does). The answer counts only this session's retrievals,
    /// so it is 0 at every login: a client that trusts it, such as fetchmail in its default
    /// keep mode, takes every message for new and downloads it again. Refused, such clients
    /// fall back to UIDL.
    pub last_command: bool,
    /// What the error report for a refused OAUTHBEARER or XOAUTH2 token tells the client
    /// besides its status (RFC 7628 §3.2.2).
    pub bearer_error: BearerErrorReport,
}

/// The optional fields of a refused bearer token's error report (RFC 7628 §3.2.2): where the
/// client finds out how to get a better token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerErrorReport {
    /// The scope a token needs (`scope`), space-separated.
    pub scope: Option<String>,
    /// The authorization server's OpenID Connect discovery URL (`openid-configuration`).
    pub openid_configuration: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            implementation: None,
            tls_available: false,
            plaintext_without_tls: false,
            apop: false,
            sasl_mechanisms: vec![Mechanism::ScramSha256, Mechanism::Plain, Mechanism::Login],
            expire: None,
            login_delay: None,
            max_failed_logins: 3,
            max_bad_commands: 20,
            idle_timeout_authorization: Duration::from_secs(60),
            login_deadline: Some(Duration::from_secs(180)),
            max_commands_before_login: 30,
            idle_timeout_transaction: Duration::from_secs(600),
            output_high_water: 64 * 1024,
            languages: vec![(String::from("en"), String::from("English"))],
            last_command: false,
            bearer_error: BearerErrorReport::default(),
        }
    }
}

/// What the embedder draws for each connection: the session itself has no randomness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The APOP timestamp (RFC 1939 §7), e.g. `<4711.1732269600@mail.example.org>`; unique per
    /// connection. Sent in the greeting only when [`ServerConfig::apop`] is on.
    pub apop_timestamp: String,
    /// A fresh random nonce (printable ASCII without `,`) for SCRAM and CRAM-MD5.
    pub sasl_nonce: String,
    /// The server's host name, for the CRAM-MD5 challenge.
    pub hostname: String,
    /// The connection is already under TLS (POP3S, port 995).
    pub tls_active: bool,
}
