//! The client-side response decoder.

use alloc::vec::Vec;

use super::parse;
use super::types::{ListItem, Response, StatusLine};
use super::{Expect, ResponseError};
use crate::line::{Frame, LineFramer};
use crate::{DecodeError, Decoded, Limits};

/// Decodes responses from a client's input buffer.
///
/// Two ways to read a multi-line listing:
/// - [`decode`](Self::decode) with [`Expect::Capa`], [`Expect::List`], ... returns the whole
///   [`Response`] once the terminator has arrived (up to [`Limits::multiline_block`] octets);
/// - [`decode`](Self::decode) with [`Expect::Status`] for the first line, then
///   [`decode_item`](Self::decode_item) for each following line until [`ListItem::End`]: memory
///   stays bounded by one line however long the listing.
///
/// ```
/// use pop3_proto::{Expect, Response, ResponseDecoder, ScanListing, MsgNum};
///
/// let mut decoder = ResponseDecoder::default();
/// let input = b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n";
/// let d = decoder.decode(input, Expect::List);
/// assert_eq!(d.consumed, input.len());
/// let Some(Response::ScanList(status, list)) = d.outcome.unwrap() else { panic!() };
/// assert!(status.is_ok());
/// assert_eq!(list[1], ScanListing { msg: MsgNum::new(2).unwrap(), size: 200 });
/// ```
#[derive(Debug, Clone, Default)]
pub struct ResponseDecoder {
    limits: Limits,
    framer: LineFramer,
}

impl ResponseDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> Self {
        Self { limits, framer: LineFramer::default() }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes the next whole response of the kind `expect` from the front of `input`.
    ///
    /// A multi-line listing is returned only when complete; until then the outcome is
    /// `Ok(None)` and the listing stays in the buffer. A malformed line inside a listing is
    /// reported once the whole listing is there, and the whole listing is consumed.
    ///
    /// Two errors are fatal, because the decoder can no longer tell where the next response
    /// starts: a listing larger than [`Limits::multiline_block`]
    /// ([`ResponseError::BlockTooLarge`]) and an over-long line inside a listing
    /// ([`DecodeError::LineTooLong`]). Both consume nothing; close the connection, or read
    /// listings with [`decode_item`](Self::decode_item), which has neither.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        expect: Expect,
    ) -> Decoded<Response<'a>, ResponseError> {
        // Finish dropping an over-long line first, so that an incomplete listing is re-read from
        // its own first line next time, whatever the chunking.
        let skipped = self.framer.skip_rest(input);
        if self.framer.is_skipping() {
            return Decoded { consumed: skipped, outcome: Ok(None) };
        }
        let Decoded { consumed, outcome } = self.decode_response(&input[skipped..], expect);
        if consumed == 0 && outcome.is_err() && skipped > 0 {
            // A refused listing consumes nothing, not even the end of the over-long line
            // before it: the skip is undone, so "nothing consumed" marks the fatal errors
            // whatever the chunking (found by the `split_invariance` fuzz target).
            self.framer.resume_skipping();
            return Decoded { consumed: 0, outcome };
        }
        Decoded { consumed: skipped + consumed, outcome }
    }

    fn decode_response<'a>(
        &mut self,
        input: &'a [u8],
        expect: Expect,
    ) -> Decoded<Response<'a>, ResponseError> {
        let limit = self.limits.response_line;
        let (line, consumed) = match self.framer.next(input, |_| limit).into_line() {
            Ok(line) => line,
            Err(decoded) => return decoded,
        };
        let first = match expect {
            Expect::Sasl => match parse::challenge(line) {
                Ok(Some(data)) => return done(consumed, Response::Challenge(data)),
                Ok(None) => parse::status_line(line),
                Err(e) => Err(e),
            },
            _ => parse::status_line(line),
        };
        let status = match first {
            Ok(status) => status,
            Err(e) => return Decoded { consumed, outcome: Err(DecodeError::Invalid(e)) },
        };
        if !status.is_ok() || matches!(expect, Expect::Status | Expect::Sasl) {
            return done(consumed, Response::Status(status));
        }
        self.decode_block(input, consumed, status, expect)
    }

    /// The lines after a multi-line `+OK`, all present in `input` from `start` on, or nothing.
    fn decode_block<'a>(
        &mut self,
        input: &'a [u8],
        start: usize,
        status: StatusLine<'a>,
        expect: Expect,
    ) -> Decoded<Response<'a>, ResponseError> {
        let limit = self.limits.response_line;
        let mut items = Vec::new();
        let mut invalid = None;
        let mut at = start;
        // A fresh framer: a whole block is decoded in one go or not at all.
        let mut framer = LineFramer::default();
        loop {
            if at > self.limits.multiline_block {
                return Decoded {
                    consumed: 0,
                    outcome: Err(DecodeError::Invalid(ResponseError::BlockTooLarge)),
                };
            }
            let (line, used) = match framer.next(&input[at..], |_| limit) {
                Frame::Line { line, consumed } => (line, consumed),
                Frame::NeedMore { .. } => return Decoded { consumed: 0, outcome: Ok(None) },
                Frame::TooLong { limit, .. } => {
                    return Decoded {
                        consumed: 0,
                        outcome: Err(DecodeError::LineTooLong { limit }),
                    }
                }
            };
            at += used;
            match list_item(line, expect) {
                Ok(ListItem::End) => break,
                Ok(item) => items.push(item),
                // Keep reading to the terminator, so the bad listing is consumed whole.
                Err(e) => invalid = invalid.or(Some(e)),
            }
        }
        if let Some(e) = invalid {
            return Decoded { consumed: at, outcome: Err(DecodeError::Invalid(e)) };
        }
        let response = collect(status, items, expect);
        done(at, response)
    }

    /// Decodes the next line of a multi-line listing of the kind `expect` (one of
    /// [`Expect::Capa`], [`Expect::List`], [`Expect::Uidl`], [`Expect::Lang`]), after its `+OK`
    /// line was decoded with [`Expect::Status`]. A malformed line is consumed and reported; the
    /// listing goes on.
    pub fn decode_item<'a>(
        &mut self,
        input: &'a [u8],
        expect: Expect,
    ) -> Decoded<ListItem<'a>, ResponseError> {
        let limit = self.limits.response_line;
        match self.framer.next(input, |_| limit).into_line() {
            Ok((line, consumed)) => Decoded {
                consumed,
                outcome: list_item(line, expect).map(Some).map_err(DecodeError::Invalid),
            },
            Err(decoded) => decoded,
        }
    }
}

/// One line of a listing: the terminator, or a dot-unstuffed item (RFC 1939 §3).
fn list_item(line: &[u8], expect: Expect) -> Result<ListItem<'_>, ResponseError> {
    let line = match line {
        b"." => return Ok(ListItem::End),
        [b'.', rest @ ..] => rest,
        line => line,
    };
    match expect {
        Expect::Capa => parse::capability(line).map(ListItem::Capability),
        Expect::List => parse::scan_listing(line).map(ListItem::Scan),
        Expect::Uidl => parse::uid_listing(line).map(ListItem::Uid),
        Expect::Lang => parse::lang_listing(line).map(ListItem::Language),
        Expect::Status | Expect::Sasl => Err(ResponseError::InvalidListLine),
    }
}

fn collect<'a>(status: StatusLine<'a>, items: Vec<ListItem<'a>>, expect: Expect) -> Response<'a> {
    macro_rules! pick {
        ($variant:ident, $item:ident) => {
            Response::$variant(
                status,
                items
                    .into_iter()
                    .filter_map(|i| match i {
                        ListItem::$item(x) => Some(x),
                        _ => None,
                    })
                    .collect(),
            )
        };
    }
    match expect {
        Expect::Capa => pick!(Capabilities, Capability),
        Expect::List => pick!(ScanList, Scan),
        Expect::Uidl => pick!(UidList, Uid),
        Expect::Lang => pick!(Languages, Language),
        Expect::Status | Expect::Sasl => Response::Status(status),
    }
}

fn done<T, E>(consumed: usize, value: T) -> Decoded<T, E> {
    Decoded { consumed, outcome: Ok(Some(value)) }
}
