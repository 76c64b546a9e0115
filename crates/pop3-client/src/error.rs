//! Typed errors, carrying the server's RFC 2449 / RFC 3206 response codes.

use std::fmt;
use std::io;

use pop3_proto::client::{AuthError, ClientError, ProtocolError};
use pop3_proto::{RespCode, StatusLine};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the server's `-ERR` said, classified by its response code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No response code.
    None,
    /// `[IN-USE]`: the maildrop is locked by another session (RFC 2449 §8.1.1).
    InUse,
    /// `[LOGIN-DELAY]`: logged in too recently (RFC 2449 §8.1.2).
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary failure on the server (RFC 3206 §4).
    SysTemp,
    /// `[SYS/PERM]`: a permanent failure on the server (RFC 3206 §4).
    SysPerm,
    /// `[AUTH]`: wrong credentials (RFC 3206 §5).
    Auth,
    /// Any other code, verbatim.
    Other(String),
}

impl ErrorCode {
    fn from_status(status: &StatusLine<'_>) -> Self {
        match &status.code {
            None => Self::None,
            Some(RespCode::InUse) => Self::InUse,
            Some(RespCode::LoginDelay) => Self::LoginDelay,
            Some(RespCode::SysTemp) => Self::SysTemp,
            Some(RespCode::SysPerm) => Self::SysPerm,
            Some(RespCode::Auth) => Self::Auth,
            Some(other) => Self::Other(other.as_str().to_owned()),
        }
    }
}

/// Everything that can go wrong on a POP3 connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading from or writing to the connection failed, or connecting did.
    Io(io::Error),
    /// No progress within the configured timeout while waiting for `what`.
    Timeout {
        /// What the client was waiting for.
        what: &'static str,
    },
    /// The TLS configuration could not be built (unreadable CA file, bad server name, ...).
    TlsConfig(String),
    /// The TLS handshake failed (certificate not trusted, pin mismatch, ...).
    Tls(io::Error),
    /// TLS via STLS was required and the server does not offer it. Nothing was sent in clear
    /// beyond `CAPA` and `STLS`.
    StlsUnavailable,
    /// The server answered `-ERR`.
    Server {
        /// The command that failed (`"PASS"`, `"RETR"`, ...).
        command: &'static str,
        /// Its response code.
        code: ErrorCode,
        /// The server's text.
        text: String,
    },
    /// The SASL exchange failed on the client's side (the server did not prove its identity,
    /// or sent a challenge the mechanism rejected).
    AuthFailed(AuthError),
    /// None of the mechanisms this login may use is offered by the server.
    NoMechanism(String),
    /// The server broke the protocol; the connection is closed.
    Protocol(ProtocolError),
    /// The command could not be sent (an argument with a line break, ...).
    Command(ClientError),
    /// The connection is closed.
    Closed,
}

impl Error {
    pub(crate) fn server(command: &'static str, status: &StatusLine<'_>) -> Self {
        Self::Server {
            command,
            code: ErrorCode::from_status(status),
            text: status.text.clone().into_owned(),
        }
    }

    /// The response code of a `-ERR`, if this is one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when retrying later may succeed: timeouts, I/O errors, a dropped connection,
    /// `[IN-USE]`, `[LOGIN-DELAY]`, `[SYS/TEMP]`.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Io(_) | Self::Timeout { .. } | Self::Closed => true,
            Self::Server { code, .. } => {
                matches!(code, ErrorCode::InUse | ErrorCode::LoginDelay | ErrorCode::SysTemp)
            }
            Self::Protocol(ProtocolError::UnexpectedEof) => true,
            _ => false,
        }
    }

    /// True when the TLS handshake failed because the server's certificate was not issued by
    /// a trusted CA (and is not itself trusted or pinned): what trusting its CA, or pinning
    /// it, would fix.
    pub fn is_unknown_issuer(&self) -> bool {
        let Self::Tls(e) = self else { return false };
        matches!(
            e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        )
    }

    /// True for a login refused because of the credentials (`[AUTH]`, or `-ERR` to a login
    /// command without a code) or a failed SASL exchange.
    pub fn is_auth(&self) -> bool {
        match self {
            Self::AuthFailed(_) => true,
            Self::Server { code: ErrorCode::Auth, .. } => true,
            Self::Server { command, code: ErrorCode::None, .. } => {
                matches!(*command, "PASS" | "USER" | "APOP" | "AUTH")
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "connection error: {e}"),
            Self::Timeout { what } => write!(f, "timed out waiting for {what}"),
            Self::TlsConfig(e) => write!(f, "TLS configuration: {e}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::StlsUnavailable => {
                f.write_str("the server does not offer STLS and TLS is required")
            }
            Self::Server { command, code, text } => {
                write!(f, "{command} failed: -ERR ")?;
                match code {
                    ErrorCode::None => {}
                    ErrorCode::InUse => f.write_str("[IN-USE] ")?,
                    ErrorCode::LoginDelay => f.write_str("[LOGIN-DELAY] ")?,
                    ErrorCode::SysTemp => f.write_str("[SYS/TEMP] ")?,
                    ErrorCode::SysPerm => f.write_str("[SYS/PERM] ")?,
                    ErrorCode::Auth => f.write_str("[AUTH] ")?,
                    ErrorCode::Other(code) => write!(f, "[{code}] ")?,
                }
                f.write_str(text)
            }
            Self::AuthFailed(e) => write!(f, "login failed: {e}"),
            Self::NoMechanism(what) => write!(f, "no usable login mechanism: {what}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Command(e) => write!(f, "{e}"),
            Self::Closed => f.write_str("the connection is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) | Self::Tls(e) => Some(e),
            Self::AuthFailed(e) => Some(e),
            Self::Protocol(e) => Some(e),
            Self::Command(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Closed => Self::Closed,
            e => Self::Command(e),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            Error::Timeout { .. } => io::Error::new(io::ErrorKind::TimedOut, e),
            e => io::Error::other(e),
        }
    }
}
