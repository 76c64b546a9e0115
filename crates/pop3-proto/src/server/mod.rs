//! The sans-IO POP3 server session (RFC 1939 §3-§6 and extensions).
//!
//! A [`ServerSession`] is one client connection's protocol state. The embedder feeds it the
//! bytes it reads, sends the bytes it produces, answers the [`Event`]s it raises (check these
//! credentials, stream this message, start TLS, commit these deletions), and tells it the time.
//! It never blocks, never reads a clock and never touches a file or a socket.
//!
//! # States
//!
//! ```text
//!  AUTHORIZATION --USER/PASS, APOP, AUTH--> (credentials pending) --accepted--> TRANSACTION
//!     |   ^  \--AUTH--> SASL exchange --+                                         |
//!     |   |                              `--> (credentials pending)               | QUIT
//!     |   `-- tls_established -- STLS pending <--STLS                             v
//!     `--QUIT--> closed (no UPDATE)                  closed <--commit_done-- UPDATE
//! ```
//!
//! [`Phase`] names these states; `legality` in `dispatch.rs` is the one place that decides
//! which command is allowed in which of them.
//!
//! # The driving loop
//!
//! ```text
//! loop {
//!     send session.take_output()                (always, after any call below)
//!     while let Some(event) = session.poll_event() { answer it (maybe later) }
//!     if session.is_closed() { close the connection; break }
//!     wait for: readable socket (if session.wants_input()),
//!               writable socket (if output pending),
//!               an answer to an event, or the deadline session.poll_timeout()
//!     then call handle_input / an answer method / handle_timeout(now)
//! }
//! ```
//!
//! See `examples/blocking_server.rs` for a complete server over `std::net` in under 150 lines.

mod auth;
mod body;
mod capa;
mod config;
mod dispatch;
mod event;
mod retrieve;
mod session;
mod snapshot;

pub use body::BodyFlow;
pub use config::{BearerErrorReport, Greeting, ServerConfig};
pub use event::{BodyError, CloseReason, Event, LoginError};
pub use session::{CommitError, Phase, ServerSession, WrongState};
pub use snapshot::{MessageInfo, Snapshot};

/// The credentials of [`Event::Authenticate`]: the same type a [`SaslServer`](crate::sasl::SaslServer)
/// ends with.
pub use crate::sasl::AuthRequest;
