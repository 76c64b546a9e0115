//! An async POP3 client on tokio, driving pop3-proto's sans-IO
//! [`ClientSession`](pop3_proto::client::ClientSession).
//!
//! - [`Client::connect`]: plain, STLS (required means required) or implicit TLS, with the
//!   system's roots, an extra CA file, SHA-256 certificate pinning, or (for tests) no
//!   verification: [`TlsOptions`].
//! - [`Client::login`]: the best mechanism the server offers (SCRAM-SHA-256, then PLAIN, then
//!   USER/PASS), or APOP, CRAM-MD5, LOGIN, OAUTHBEARER, XOAUTH2 on request.
//! - Every command as a typed async method; [`Client::retr`] and [`Client::top`] return the
//!   message as a [`Body`]: a stream of chunks and an [`AsyncRead`](tokio::io::AsyncRead),
//!   never buffered whole. [`Client::retrieve`] pipelines many `RETR`s within a bounded window
//!   when the server advertises PIPELINING.
//! - Every wait is bounded by a timeout; errors are typed ([`Error`]) and `-ERR` replies carry
//!   their response code ([`ErrorCode`]: `InUse`, `Auth`, `SysTemp`, `LoginDelay`, ...).
//!
//! ```no_run
//! # async fn demo() -> pop3_client::Result<()> {
//! use pop3_client::{AuthMethod, Client, ConnectOptions, Retrieved, TlsMode};
//!
//! let mut options = ConnectOptions::new("pop.example.org");
//! options.tls = TlsMode::Implicit;
//! let mut client = Client::connect(&options).await?;
//! client.login("alice", "secret", AuthMethod::Auto).await?;
//! let messages: Vec<_> = client.uidl().await?.into_iter().map(|(msg, _)| msg).collect();
//! let mut retrieval = client.retrieve(messages);
//! while let Some(item) = retrieval.next().await? {
//!     if let Retrieved::Message(msg, mut body) = item {
//!         let mut size = 0;
//!         while let Some(chunk) = body.chunk().await? {
//!             size += chunk.len();
//!         }
//!         println!("message {msg}: {size} octets");
//!     }
//! }
//! client.quit().await
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod conn;
mod error;
mod tls;
mod x509;

pub use client::{AuthMethod, Body, Client, ConnectOptions, Retrieval, Retrieved, Stat};
pub use error::{Error, ErrorCode, Result};
pub use pop3_proto::{hex, Capability, MsgNum};
pub use tls::{fingerprint_sha256, parse_fingerprint, TlsMode, TlsOptions};
