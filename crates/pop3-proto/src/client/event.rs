//! What the client session reports to its embedder, and why a command is refused.

use alloc::vec::Vec;
use core::fmt;

use bytes::Bytes;

use crate::sasl::SaslError;
use crate::{
    Capability, CommandError, LangListing, ResponseError, ScanListing, StatusLine, UidListing,
};

/// Identifies one queued command; its reply carries the same id.
///
/// Ids are handed out in increasing order by one session, starting at 0, and never reused.
/// Replies arrive in the order the commands were queued (RFC 1939 and RFC 2449 §6.6: the server
/// answers strictly in order), so the id is a check as much as a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The id as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Something that happened on the connection, returned by
/// [`ClientSession::poll_event`](super::ClientSession::poll_event).
///
/// Every command ends with exactly one [`Reply`](ClientEvent::Reply), or, for `RETR` and `TOP`
/// answered `+OK`, with [`BodyEnd`](ClientEvent::BodyEnd) — unless the session closes first
/// ([`Closed`](ClientEvent::Closed)): commands that have not ended by then have failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server's greeting (RFC 1939 §4). If it is `-ERR` the server refuses service and
    /// [`Closed`](ClientEvent::Closed) follows. An APOP timestamp in it is kept:
    /// [`StatusLine::apop_timestamp`].
    Greeting(StatusLine<'static>),
    /// The reply to a command.
    Reply {
        /// The command's id.
        id: RequestId,
        /// The typed reply.
        reply: Reply,
    },
    /// `+OK` to `RETR` or `TOP`: the message follows as [`BodyChunk`](ClientEvent::BodyChunk)s,
    /// then [`BodyEnd`](ClientEvent::BodyEnd). (`-ERR` comes as a [`Reply`](ClientEvent::Reply).)
    BodyStart {
        /// The command's id.
        id: RequestId,
        /// The `+OK` line (its text often holds the size: `+OK 120 octets`).
        status: StatusLine<'static>,
    },
    /// Message data, dot-unstuffed, line ends exactly as the server sent them. Chunk boundaries
    /// follow the reads and mean nothing; the chunks concatenated are the message.
    BodyChunk {
        /// The command's id.
        id: RequestId,
        /// The data; never empty.
        data: Bytes,
    },
    /// The terminating `.` line of a message: the `RETR` or `TOP` is complete.
    BodyEnd {
        /// The command's id.
        id: RequestId,
    },
    /// The server accepted `STLS` (its [`Reply`](ClientEvent::Reply) came just before). Send all
    /// pending output, run the TLS handshake on the connection, then call
    /// [`ClientSession::tls_established`](super::ClientSession::tls_established). Bytes the
    /// server sent before the handshake have been discarded (RFC 2595 §4).
    StartTls,
    /// The session is over: after the reply to `QUIT`, a `-ERR` greeting,
    /// [`handle_eof`](super::ClientSession::handle_eof), or a [`ProtocolError`]. Close the
    /// connection; no more events follow and commands are refused.
    Closed,
    /// The server sent something this client cannot make sense of. The session cannot know
    /// where the next response starts, so it closes: [`Closed`](ClientEvent::Closed) follows.
    ProtocolError(ProtocolError),
}

/// A typed reply to one command.
///
/// `-ERR` to any command is [`Reply::Err`], with its RFC 2449 response code (`[IN-USE]`,
/// `[AUTH]`, `[SYS/TEMP]`, ...) in [`StatusLine::code`]. `+OK` is typed by the command:
///
/// | command                       | reply                          |
/// |-------------------------------|--------------------------------|
/// | `STAT`                        | [`Stat`](Reply::Stat)          |
/// | `LIST msg`                    | [`Scan`](Reply::Scan)          |
/// | `LIST`                        | [`ScanList`](Reply::ScanList)  |
/// | `UIDL msg`                    | [`Uid`](Reply::Uid)            |
/// | `UIDL`                        | [`UidList`](Reply::UidList)    |
/// | `CAPA`                        | [`Capabilities`](Reply::Capabilities) |
/// | `LANG` (no argument)          | [`Languages`](Reply::Languages) |
/// | `LAST`                        | [`Last`](Reply::Last)          |
/// | `AUTH` that failed on our side| [`AuthFailed`](Reply::AuthFailed) |
/// | anything else                 | [`Ok`](Reply::Ok)              |
///
/// `RETR` and `TOP` answered `+OK` produce body events instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `+OK` to a command without a typed answer (USER, PASS, APOP, AUTH, DELE, RSET, NOOP,
    /// QUIT, STLS, UTF8, `LANG tag`, `LANG *`).
    Ok(StatusLine<'static>),
    /// `-ERR`, to any command.
    Err(StatusLine<'static>),
    /// `+OK nn mm` to `STAT` (RFC 1939 §5).
    Stat {
        /// Number of messages.
        count: u32,
        /// Their total size in octets.
        size: u64,
    },
    /// `+OK msg size` to `LIST msg`.
    Scan(ScanListing),
    /// The listing of `LIST`.
    ScanList(Vec<ScanListing>),
    /// `+OK msg uid` to `UIDL msg`.
    Uid(UidListing<'static>),
    /// The listing of `UIDL`.
    UidList(Vec<UidListing<'static>>),
    /// The listing of `CAPA` (RFC 2449 §5); also kept by the session
    /// ([`ClientSession::capabilities`](super::ClientSession::capabilities)).
    Capabilities(Vec<Capability<'static>>),
    /// The listing of `LANG` without argument (RFC 6856 §3).
    Languages(Vec<LangListing<'static>>),
    /// `+OK nn` to `LAST` (RFC 1460): the highest message number accessed.
    Last(u32),
    /// `AUTH` failed on the client's side: the mechanism rejected a challenge (the client then
    /// cancelled with `*`), or the server said `+OK` without proving its identity (SCRAM).
    ///
    /// If `status` is `+OK` the server considers the session logged in although the client
    /// does not trust it: send nothing but `QUIT`, or drop the connection.
    AuthFailed {
        /// The server's final status line.
        status: StatusLine<'static>,
        /// What went wrong on the client's side.
        error: AuthError,
    },
}

impl Reply {
    /// True for a successful reply (anything but [`Err`](Reply::Err) and
    /// [`AuthFailed`](Reply::AuthFailed)).
    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Err(_) | Self::AuthFailed { .. })
    }

    /// The `-ERR` line, if this is [`Err`](Reply::Err).
    pub fn err(&self) -> Option<&StatusLine<'static>> {
        match self {
            Self::Err(status) => Some(status),
            _ => None,
        }
    }
}

/// Why an `AUTH` exchange failed on the client's side (see [`Reply::AuthFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthError {
    /// The mechanism rejected a challenge; the client cancelled the exchange with `*`.
    Mechanism(SaslError),
    /// A challenge was not decodable base64; the client cancelled the exchange with `*`.
    InvalidChallenge,
    /// The server ended the exchange with `+OK` but never proved it knows the credentials
    /// (SCRAM's server signature, RFC 5802 §5): mutual authentication failed.
    ServerNotVerified,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mechanism(e) => write!(f, "SASL mechanism failed: {e}"),
            Self::InvalidChallenge => f.write_str("SASL challenge is not valid base64"),
            Self::ServerNotVerified => {
                f.write_str("the server accepted the login without proving its identity")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AuthError {}

/// What the server sent that the client could not accept. Every protocol error closes the
/// session: the client can no longer tell where one response ends and the next begins.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A line longer than [`Limits::response_line`](crate::Limits::response_line).
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// A line that does not follow the grammar: the greeting (`request` is `None`) or part of
    /// the reply to `request`.
    Malformed {
        /// The command being answered, if any.
        request: Option<RequestId>,
        /// What is wrong with the line.
        error: ResponseError,
    },
    /// A `+OK` line without the values its command's reply must carry (`STAT`: `nn mm`,
    /// `LIST msg`: a scan listing, `UIDL msg`: a unique-id listing, `LAST`: a number).
    MissingValues {
        /// The command being answered.
        request: RequestId,
    },
    /// A CAPA, LIST, UIDL or LANG listing larger than
    /// [`Limits::multiline_block`](crate::Limits::multiline_block).
    ListingTooLarge {
        /// The command being answered.
        request: RequestId,
        /// The limit.
        limit: usize,
    },
    /// A line arrived when no command was waiting for a reply (servers sometimes send
    /// `-ERR` before dropping an idle connection).
    Unsolicited(StatusLine<'static>),
    /// The connection ended in the middle of a response, or with commands unanswered.
    UnexpectedEof,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => write!(f, "server line longer than {limit} octets"),
            Self::Malformed { request: Some(id), error } => {
                write!(f, "malformed reply to {id}: {error}")
            }
            Self::Malformed { request: None, error } => write!(f, "malformed greeting: {error}"),
            Self::MissingValues { request } => {
                write!(f, "reply to {request} lacks the values it must carry")
            }
            Self::ListingTooLarge { request, limit } => {
                write!(f, "listing in reply to {request} exceeds {limit} octets")
            }
            Self::Unsolicited(status) => {
                write!(f, "unsolicited response from the server: {}", status.text)
            }
            Self::UnexpectedEof => f.write_str("connection closed in the middle of a response"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ProtocolError {}

/// Why a command was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientError {
    /// The command cannot be sent as a valid line (an argument with CR, LF or other control
    /// characters, an empty user name, an invalid language tag, ...).
    InvalidCommand(CommandError),
    /// The session is closed, or `QUIT` has been queued.
    Closed,
    /// `APOP` needs the timestamp from the server's greeting, and the greeting (not yet
    /// received, or received) has none: the server does not offer APOP.
    NoApopTimestamp,
    /// `STLS` on a connection already protected by TLS established through this session.
    TlsActive,
    /// [`tls_established`](super::ClientSession::tls_established) without a
    /// [`StartTls`](ClientEvent::StartTls) event.
    NotStartingTls,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCommand(e) => write!(f, "invalid command: {e}"),
            Self::Closed => f.write_str("the session is closed or closing"),
            Self::NoApopTimestamp => f.write_str("the greeting has no APOP timestamp"),
            Self::TlsActive => f.write_str("TLS is already active"),
            Self::NotStartingTls => f.write_str("no TLS handshake was requested"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ClientError {}

impl From<CommandError> for ClientError {
    fn from(e: CommandError) -> Self {
        Self::InvalidCommand(e)
    }
}
