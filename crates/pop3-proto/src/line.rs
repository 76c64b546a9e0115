//! Line framing shared by the command and response decoders.
//!
//! POP3 is line-based (RFC 1939 §3): every command and every response line ends with CRLF. The
//! decoders first frame one line (bounded by a limit), then parse it whole with `nom`'s
//! `complete` parsers. Framing first keeps `Incomplete` out of the grammar functions and makes
//! the length limit exact: no parser ever sees, and no buffer ever holds, more than one line.

use core::fmt;

/// What one call of a decoder did: how many octets of the input it consumed, and its outcome.
///
/// The caller must drop `consumed` octets from the front of its buffer after using `outcome`
/// (which may borrow from the input), whatever the outcome: the decoder discards over-long and
/// malformed lines itself and counts them here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the consumed octets must be dropped from the input buffer"]
pub struct Decoded<T, E> {
    /// Octets of the input that this call consumed.
    pub consumed: usize,
    /// `Ok(Some(value))`: a value was decoded. `Ok(None)`: more input is needed (after dropping
    /// `consumed` octets). `Err(e)`: a line was rejected and skipped; decoding can go on.
    pub outcome: Result<Option<T>, DecodeError<E>>,
}

/// Why a line was rejected. The line is consumed either way, so the session can answer
/// `-ERR` and carry on with the next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError<E> {
    /// The line is longer than the limit (in octets, line end included). The decoder has dropped
    /// what it has seen of the line and drops the rest of it as it arrives, without buffering.
    LineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The line is complete but does not follow the grammar.
    Invalid(E),
}

impl<E: fmt::Display> fmt::Display for DecodeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => write!(f, "line longer than {limit} octets"),
            Self::Invalid(e) => e.fmt(f),
        }
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Debug + fmt::Display> std::error::Error for DecodeError<E> {}

/// One framing step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A whole line, without its line end (CRLF or bare LF). `consumed` counts everything this
    /// step consumed, including octets of an earlier over-long line that it skipped.
    Line { line: &'a [u8], consumed: usize },
    /// No whole line yet; `consumed` octets (of a line being skipped) can be dropped.
    NeedMore { consumed: usize },
    /// A line exceeded the limit; `consumed` octets of it have been dropped. If its line end was
    /// not in the input, the framer keeps skipping on the following calls.
    TooLong { consumed: usize, limit: usize },
}

impl<'a> Frame<'a> {
    /// The line and the octets consumed, or the [`Decoded`] to hand back when there is no line.
    #[inline]
    pub(crate) fn into_line<T, E>(self) -> Result<(&'a [u8], usize), Decoded<T, E>> {
        match self {
            Frame::Line { line, consumed } => Ok((line, consumed)),
            Frame::NeedMore { consumed } => Err(Decoded { consumed, outcome: Ok(None) }),
            Frame::TooLong { consumed, limit } => {
                Err(Decoded { consumed, outcome: Err(DecodeError::LineTooLong { limit }) })
            }
        }
    }
}

/// Finds line boundaries, enforcing a length limit without buffering an over-long line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LineFramer {
    /// Inside an over-long line that has been reported: drop octets up to and including LF.
    skipping: bool,
}

impl LineFramer {
    /// Frames the next line of `input`. `limit` is computed from the line's first octets, so
    /// different commands can have different limits (RFC 5034 §4 lifts the limit for AUTH).
    #[inline]
    pub(crate) fn next<'a>(
        &mut self,
        input: &'a [u8],
        limit: impl Fn(&[u8]) -> usize,
    ) -> Frame<'a> {
        let mut consumed = 0;
        if self.skipping {
            match memchr::memchr(b'\n', input) {
                Some(i) => {
                    self.skipping = false;
                    consumed = i + 1;
                }
                None => return Frame::NeedMore { consumed: input.len() },
            }
        }
        let rest = &input[consumed..];
        let limit = limit(rest).max(1);
        let window = &rest[..rest.len().min(limit)];
        if let Some(i) = memchr::memchr(b'\n', window) {
            let mut line = &rest[..i];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            return Frame::Line { line, consumed: consumed + i + 1 };
        }
        if rest.len() < limit {
            return Frame::NeedMore { consumed };
        }
        // Over the limit. Drop through the line end if it is already here, else drop all and
        // keep skipping: memory stays bounded however long the line is.
        match memchr::memchr(b'\n', &rest[limit..]) {
            Some(j) => Frame::TooLong { consumed: consumed + limit + j + 1, limit },
            None => {
                self.skipping = true;
                Frame::TooLong { consumed: input.len(), limit }
            }
        }
    }

    /// Goes back to dropping the rest of an over-long line, for a caller that gives back
    /// the octets [`skip_rest`](Self::skip_rest) dropped.
    pub(crate) fn resume_skipping(&mut self) {
        self.skipping = true;
    }

    /// True while the framer is dropping the rest of an over-long line.
    pub(crate) fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// Drops what is left of an over-long line: octets through its LF, or all of `input` if the
    /// LF has not arrived. Returns how many octets that is (0 when not skipping).
    pub(crate) fn skip_rest(&mut self, input: &[u8]) -> usize {
        if !self.skipping {
            return 0;
        }
        match memchr::memchr(b'\n', input) {
            Some(i) => {
                self.skipping = false;
                i + 1
            }
            None => input.len(),
        }
    }
}

/// ASCII case-insensitive prefix test, for keywords (RFC 1939 §3: keywords are case-insensitive).
pub(crate) fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(n: usize) -> impl Fn(&[u8]) -> usize {
        move |_| n
    }

    #[test]
    fn frames_crlf_and_bare_lf() {
        let mut f = LineFramer::default();
        assert_eq!(f.next(b"NOOP\r\nX", fixed(10)), Frame::Line { line: b"NOOP", consumed: 6 });
        assert_eq!(f.next(b"NOOP\nX", fixed(10)), Frame::Line { line: b"NOOP", consumed: 5 });
        assert_eq!(f.next(b"NOO", fixed(10)), Frame::NeedMore { consumed: 0 });
    }

    #[test]
    fn the_limit_counts_the_line_end() {
        let mut f = LineFramer::default();
        // 8 octets + CRLF = 10: exactly at the limit.
        assert_eq!(
            f.next(b"12345678\r\n", fixed(10)),
            Frame::Line { line: b"12345678", consumed: 10 }
        );
        // 9 octets + CRLF = 11: over.
        assert_eq!(
            f.next(b"123456789\r\nNOOP\r\n", fixed(10)),
            Frame::TooLong { consumed: 11, limit: 10 }
        );
        assert!(!f.is_skipping());
    }

    #[test]
    fn an_over_long_line_is_skipped_across_calls_without_buffering() {
        let mut f = LineFramer::default();
        assert_eq!(f.next(&[b'a'; 64], fixed(10)), Frame::TooLong { consumed: 64, limit: 10 });
        assert!(f.is_skipping());
        assert_eq!(f.next(&[b'a'; 4096], fixed(10)), Frame::NeedMore { consumed: 4096 });
        assert_eq!(
            f.next(b"aaa\r\nQUIT\r\n", fixed(10)),
            Frame::Line { line: b"QUIT", consumed: 11 }
        );
    }
}
