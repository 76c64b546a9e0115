//! What the session asks of its embedder, and the answers it takes.

use alloc::string::String;
use alloc::vec::Vec;

use crate::sasl::{AuthRequest, Mechanism};
use crate::MsgNum;

/// Something only the embedder can do. Each event names the method that answers it; until it is
/// answered the session executes no further command (pipelined commands wait, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Check these credentials and, if they are good, lock and open the user's maildrop.
    /// Answer with [`login_accepted`](super::ServerSession::login_accepted) or
    /// [`login_rejected`](super::ServerSession::login_rejected).
    Authenticate(AuthRequest),
    /// A SASL exchange failed inside the session: a wrong SCRAM proof, a response the
    /// mechanism could not parse, or the client cancelled with `*` (RFC 5034 §4). It counts as
    /// wrong credentials, so answer it as one: apply the failed-login delay, then call
    /// [`login_rejected`](super::ServerSession::login_rejected) (`login_accepted` is refused).
    /// Without this event, SCRAM guesses (or exchanges abandoned once the salt is known) would
    /// escape the delay that slows USER/PASS guessing.
    SaslFailed {
        /// The mechanism of the exchange.
        mechanism: Mechanism,
        /// The client cancelled the exchange with `*` rather than failing it.
        cancelled: bool,
    },
    /// SCRAM-SHA-256: look up the user's stored keys. Answer with
    /// [`scram_keys`](super::ServerSession::scram_keys) (`None` for an unknown user: the
    /// exchange goes on and fails at the proof, so user names cannot be probed).
    ScramKeysNeeded {
        /// The authentication identity.
        username: String,
    },
    /// Send the body of this message: feed it with
    /// [`body_data`](super::ServerSession::body_data), then
    /// [`body_end`](super::ServerSession::body_end), or report
    /// [`body_error`](super::ServerSession::body_error).
    RetrieveBody {
        /// The message number the client asked for.
        msg: MsgNum,
        /// Its zero-based index in the snapshot given at login.
        index: usize,
    },
    /// The client sent STLS and was told to go ahead: send all pending output, run the TLS
    /// handshake, then call [`tls_established`](super::ServerSession::tls_established) (or drop
    /// the connection if it fails).
    StartTls,
    /// UPDATE state (RFC 1939 §6): remove these messages (zero-based snapshot indices), and
    /// nothing else, then call [`commit_done`](super::ServerSession::commit_done).
    Commit {
        /// The messages marked deleted, in order; may be empty.
        deleted: Vec<usize>,
    },
}

/// Why a login was refused; each maps to an RFC 2449/3206 response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name or credentials: `-ERR [AUTH]`. Counts towards the failed-login limit.
    BadCredentials,
    /// The maildrop is locked by another session: `-ERR [IN-USE]`.
    InUse,
    /// A temporary failure (storage or backend unavailable): `-ERR [SYS/TEMP]`.
    TempFailure,
    /// A permanent failure (the account cannot be served): `-ERR [SYS/PERM]`.
    PermFailure,
    /// The user logged in too recently: `-ERR [LOGIN-DELAY]`.
    LoginDelay,
}

/// Why a message body could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The message is gone (removed by another program): `-ERR` and the session goes on.
    Gone,
    /// Reading failed: `-ERR [SYS/TEMP]` if nothing was sent yet, else the connection closes.
    Io,
}

/// Why the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// QUIT, with UPDATE completed (or no UPDATE needed).
    Quit,
    /// QUIT, but the commit failed: some deleted messages were not removed.
    CommitFailed,
    /// Idle longer than the timeout; no UPDATE (RFC 1939 §3).
    IdleTimeout,
    /// Too many failed logins.
    TooManyFailedLogins,
    /// Too many bad commands.
    TooManyBadCommands,
    /// The client sent more than the session can buffer while it was not reading replies.
    InputFlood,
    /// A message body failed after part of it was sent; the reply cannot be completed.
    BodyFailed,
    /// No successful login within [`ServerConfig::login_deadline`](super::ServerConfig::login_deadline).
    LoginDeadline,
    /// More command lines before login than
    /// [`ServerConfig::max_commands_before_login`](super::ServerConfig::max_commands_before_login).
    TooManyCommandsBeforeLogin,
}
