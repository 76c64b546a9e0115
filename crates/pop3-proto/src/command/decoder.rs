//! The server-side command decoder: framing with limits, then the grammar.

use super::parse;
use super::{Command, CommandError, SaslResponse};
use crate::line::{starts_with_ignore_case, Frame, LineFramer};
use crate::{DecodeError, Decoded, Limits};

/// Decodes commands from a server's input buffer, one line per call.
///
/// The decoder keeps only one bit of state: whether it is in the middle of dropping an over-long
/// line. It never copies input; a decoded [`Command`] borrows from the buffer passed in.
///
/// ```
/// use pop3_proto::{CommandDecoder, CommandError, DecodeError};
///
/// let mut decoder = CommandDecoder::default();
/// let d = decoder.decode(b"RETR 0\r\n");
/// assert_eq!(d.consumed, 8);
/// assert_eq!(d.outcome, Err(DecodeError::Invalid(CommandError::ZeroMessageNumber)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct CommandDecoder {
    limits: Limits,
    framer: LineFramer,
}

impl CommandDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> Self {
        Self { limits, framer: LineFramer::default() }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes the next command line from the front of `input`.
    ///
    /// An `AUTH` line may be up to [`Limits::sasl_line`] long (RFC 5034 §4), any other command
    /// up to [`Limits::command_line`] (RFC 2449 §4).
    #[inline]
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Decoded<Command<'a>, CommandError> {
        let limits = self.limits;
        let frame = self.framer.next(input, |line| {
            // The first-octet test keeps the case-folding compare off the common path.
            if matches!(line.first(), Some(b'A' | b'a')) && starts_with_ignore_case(line, b"AUTH ")
            {
                limits.sasl_line.max(limits.command_line)
            } else {
                limits.command_line
            }
        });
        decoded(frame, parse::command)
    }

    /// Decodes the client's next line of a SASL exchange (RFC 5034 §4): base64 data or `*`.
    /// Such lines may be up to [`Limits::sasl_line`] long.
    pub fn decode_sasl<'a>(&mut self, input: &'a [u8]) -> Decoded<SaslResponse<'a>, CommandError> {
        let limit = self.limits.sasl_line;
        let frame = self.framer.next(input, |_| limit);
        decoded(frame, parse::sasl_response)
    }
}

#[inline]
fn decoded<'a, T>(
    frame: Frame<'a>,
    parse: impl FnOnce(&'a [u8]) -> Result<T, CommandError>,
) -> Decoded<T, CommandError> {
    match frame.into_line() {
        Ok((line, consumed)) => {
            Decoded { consumed, outcome: parse(line).map(Some).map_err(DecodeError::Invalid) }
        }
        Err(decoded) => decoded,
    }
}
