//! Why a command line was rejected.

use core::fmt;

/// A command line that does not follow the grammar. The server answers `-ERR` with this text and
/// the session goes on (RFC 1939 §3 asks for `-ERR` on unknown or malformed commands).
///
/// The same type is returned by [`Command::encode`](crate::Command::encode) when a value cannot
/// be sent as a valid command line (for example a user name containing CRLF, which would inject
/// a second command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommandError {
    /// The line is empty.
    Empty,
    /// The keyword is well-formed but names no command we know.
    UnknownCommand,
    /// The keyword contains octets no keyword has (8-bit, punctuation, control characters).
    InvalidKeyword,
    /// NUL, CR or LF inside the line, or a control character in an argument.
    InvalidByte,
    /// A required argument is missing (`TOP 1`, `RETR`).
    MissingArgument,
    /// More arguments than the command takes (`RETR 1 2`, `NOOP x`), or a doubled space.
    TooManyArguments,
    /// Not a decimal number: a sign (`-1`, `+1`), letters or trailing noise (`1a`).
    InvalidNumber,
    /// Message number 0 (RFC 1939 §5: message numbers start at 1).
    ZeroMessageNumber,
    /// A number larger than 4294967295.
    NumberOverflow,
    /// An argument that is not valid UTF-8 (RFC 6856).
    InvalidUtf8,
    /// A malformed argument: bad base64, APOP digest, SASL mechanism name or language tag.
    InvalidArgument,
}

impl CommandError {
    /// A short human-readable reason, suitable for an `-ERR` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty command line",
            Self::UnknownCommand => "unknown command",
            Self::InvalidKeyword => "invalid command keyword",
            Self::InvalidByte => "invalid octet in command line",
            Self::MissingArgument => "missing argument",
            Self::TooManyArguments => "too many arguments",
            Self::InvalidNumber => "invalid number",
            Self::ZeroMessageNumber => "message numbers start at 1",
            Self::NumberOverflow => "number too large",
            Self::InvalidUtf8 => "argument is not valid UTF-8",
            Self::InvalidArgument => "invalid argument",
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CommandError {}
