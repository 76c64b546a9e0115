//! SASL mechanisms (RFC 4422), client and server side, as sans-IO state machines.
//!
//! Each side turns the mechanism's raw messages into the next message: no I/O, no clock, no
//! randomness (the embedder passes nonces in). Base64, the `AUTH` command, `+ ` challenges
//! and `*` cancellation (RFC 5034 §4) belong to the POP3 sessions.
//!
//! | Mechanism | Specification | Client | Server gives the embedder |
//! |---|---|---|---|
//! | `PLAIN` | RFC 4616 | [`SaslClient::plain`] | [`AuthRequest::Password`] |
//! | `LOGIN` | draft-murchison-sasl-login | [`SaslClient::login`] | [`AuthRequest::Password`] |
//! | `CRAM-MD5` | RFC 2195 | [`SaslClient::cram_md5`] | [`AuthRequest::CramMd5`] |
//! | `SCRAM-SHA-256` | RFC 5802, RFC 7677 | [`SaslClient::scram_sha256`] | [`ServerStep::NeedScramKeys`], then [`ServerStep::Success`] |
//! | `OAUTHBEARER` | RFC 7628 | [`SaslClient::oauthbearer`] | [`AuthRequest::Bearer`] |
//! | `XOAUTH2` | Google's and Microsoft's documentation | [`SaslClient::xoauth2`] | [`AuthRequest::Bearer`] |
//!
//! Also here: [`apop_digest`] (RFC 1939 §7), [`cram_md5_digest`] and [`constant_time_eq`].
//!
//! # Client side
//!
//! ```
//! use pop3_proto::sasl::{Mechanism, SaslClient};
//!
//! let mut client = SaslClient::cram_md5("tim", "tanstaaftanstaaf");
//! assert_eq!(client.mechanism(), Mechanism::CramMd5);
//! // CRAM-MD5 starts with the server's challenge: no initial response on the AUTH line.
//! assert!(client.initial_response().is_none());
//! // RFC 2195 §2: the decoded "+ " challenge in, the raw response out.
//! let response = client.step(b"<1896.697170952@postoffice.reston.mci.net>").unwrap();
//! assert_eq!(response.expose(), b"tim b913a602c7eda7a495b4e6e7334d3890");
//! assert!(client.server_verified());
//! ```
//!
//! # Server side
//!
//! ```
//! use pop3_proto::sasl::{Mechanism, SaslServer, SaslClient, ScramKeys, ServerStep};
//!
//! // What the server stores for the user instead of the password (normally computed once,
//! // when the password is set).
//! let stored = ScramKeys::from_password(b"pencil", b"a random salt", 4096);
//!
//! let mut server = SaslServer::new(Mechanism::ScramSha256, "server-nonce-from-a-csprng", "pop.example");
//! let mut client = SaslClient::scram_sha256("user", "pencil", "client-nonce-from-a-csprng");
//!
//! let client_first = client.initial_response().unwrap();
//! let ServerStep::NeedScramKeys { username, .. } = server.start(Some(client_first.expose())) else {
//!     panic!("expected a key lookup");
//! };
//! assert_eq!(username, "user");
//! let ServerStep::Challenge(server_first) = server.provide_scram_keys(Some(stored)) else {
//!     panic!("expected server-first");
//! };
//! let client_final = client.step(&server_first).unwrap();
//! let ServerStep::Challenge(server_final) = server.step(client_final.expose()) else {
//!     panic!("expected server-final");
//! };
//! let ack = client.step(&server_final).unwrap();
//! assert!(client.server_verified());
//! assert_eq!(
//!     server.step(ack.expose()),
//!     ServerStep::Success { username: "user".into(), authzid: None },
//! );
//! ```
//!
//! # SCRAM and SASLprep
//!
//! RFC 7677 §4 (via RFC 5802 §2.2) prepares the password with SASLprep (RFC 4013) before
//! hashing. Both sides ([`SaslClient::scram_sha256`], [`ScramKeys::from_password`]) apply the
//! same complete SASLprep, with or without the `std` feature: mapping, NFKC, prohibited output,
//! the bidirectional check and unassigned code points. A password SASLprep refuses is hashed
//! unchanged (as PostgreSQL does). User names are not prepared; they are only escaped (`=2C`,
//! `=3D`, RFC 5802 §5.1) and compared as the embedder sees fit.
//!
//! Keys and passwords are wrapped in [`Secret`](crate::Secret) so they stay out of logs, but
//! they are not zeroed when dropped.

mod client;
mod digest;
mod error;
mod mechanism;
mod oauth;
mod request;
mod saslprep;
mod scram;
mod server;
mod unassigned;

pub use client::SaslClient;
pub use digest::{apop_digest, constant_time_eq, cram_md5_digest};
pub use error::SaslError;
pub use mechanism::Mechanism;
pub use request::AuthRequest;
pub use scram::ScramKeys;
pub use server::{SaslServer, ServerStep};
