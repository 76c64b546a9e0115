//! The client side of RFC 1939 §3 byte-stuffing.

use bytes::{BufMut, BytesMut};

/// What one call of [`DotUnstuffer::unstuff`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the consumed octets must be dropped from the input buffer"]
pub struct Unstuffed {
    /// Octets of the input consumed: all of it, unless the terminator was found, in which case
    /// everything up to and including the terminator line. The rest belongs to the next
    /// response.
    pub consumed: usize,
    /// The terminator line has been consumed: the multi-line response is complete.
    pub done: bool,
}

/// Where the unstuffer is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The next octet begins a line.
    LineStart,
    /// Inside a line that began with something other than `.`, or after its stuffing `.`.
    InLine,
    /// A line began with `.`, which has been consumed and not written: it is either the
    /// terminator or a stuffing dot, depending on what follows.
    Dot,
    /// A line began with `.\r`; only the CR has not been written yet.
    DotCr,
    /// The terminator line has been consumed.
    Done,
}

/// Turns the body of a multi-line response, in chunks of any split, back into the payload.
///
/// RFC 1939 §3: a line holding just `.` ends the response, and a line that begins with `.`
/// followed by anything else has had a `.` put in front by the server, which the client
/// removes. The unstuffer does exactly that and nothing more: line ends are passed as received.
/// It stops right after the terminator and reports how much it consumed, because with
/// pipelining (RFC 2449) the next response may already be in the same buffer. The terminator
/// line is `.` followed by CRLF, or by a bare LF for lenient reading (see [the module
/// docs](super)).
///
/// # Example
///
/// ```
/// use bytes::BytesMut;
/// use pop3_proto::{DotUnstuffer, Unstuffed};
///
/// let mut unstuffer = DotUnstuffer::new();
/// let mut payload = BytesMut::new();
/// let first = unstuffer.unstuff(b"Subject: hi\r\n\r\n..hidden\r\n.", &mut payload);
/// assert_eq!(first, Unstuffed { consumed: 26, done: false });
/// let input = b"\r\n+OK next response\r\n";
/// let second = unstuffer.unstuff(input, &mut payload);
/// assert_eq!(second, Unstuffed { consumed: 2, done: true });
/// assert_eq!(&payload[..], b"Subject: hi\r\n\r\n.hidden\r\n");
/// assert_eq!(&input[second.consumed..], b"+OK next response\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotUnstuffer {
    state: State,
}

impl Default for DotUnstuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotUnstuffer {
    /// An unstuffer at the start of a response body.
    #[must_use]
    pub const fn new() -> Self {
        Self { state: State::LineStart }
    }

    /// Whether the terminator has been consumed.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Prepares for the body of the next multi-line response.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Writes the payload in `input` into `out`, without stuffing dots and without the
    /// terminator line. Once done, consumes nothing until [`reset`](Self::reset).
    pub fn unstuff(&mut self, input: &[u8], out: &mut BytesMut) -> Unstuffed {
        out.reserve(input.len());
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            pos = match self.state {
                State::InLine => self.copy_lines(input, pos, out),
                State::LineStart | State::Dot | State::DotCr => {
                    self.line_start(input[pos], out, pos)
                }
                State::Done => pos,
            };
        }
        Unstuffed { consumed: pos, done: self.is_done() }
    }

    /// Handles `octet` (at `input[pos]`) at the start of a line, where a `.` may begin the
    /// terminator or be a stuffing dot. Returns the position of the next octet to look at,
    /// which is `pos` itself when the octet is ordinary line content.
    fn line_start(&mut self, octet: u8, out: &mut BytesMut, pos: usize) -> usize {
        let (next, consumed) = match (self.state, octet) {
            (State::LineStart, b'.') => (State::Dot, true),
            (State::Dot, b'\r') => (State::DotCr, true),
            (State::Dot | State::DotCr, b'\n') => (State::Done, true),
            (State::DotCr, _) => {
                // ".\r" then not LF: the dot was stuffing, the CR is data.
                out.put_u8(b'\r');
                (State::InLine, false)
            }
            _ => (State::InLine, false),
        };
        self.state = next;
        pos + usize::from(consumed)
    }

    /// Copies line content from `input[start..]` up to the next line that begins with `.` (or
    /// the end of the input), so ordinary text goes out in one `extend_from_slice`. Returns the
    /// position after the copied octets.
    fn copy_lines(&mut self, input: &[u8], start: usize, out: &mut BytesMut) -> usize {
        let mut scan = start;
        while let Some(offset) = memchr::memchr(b'\n', &input[scan..]) {
            let next = scan + offset + 1;
            if input.get(next).is_none_or(|&octet| octet == b'.') {
                out.extend_from_slice(&input[start..next]);
                self.state = State::LineStart;
                return next;
            }
            scan = next;
        }
        out.extend_from_slice(&input[start..]);
        input.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Unstuffs `chunks` in order, returning the payload, the total consumed and `done`.
    fn unstuff_chunks(chunks: &[&[u8]]) -> (Vec<u8>, usize, bool) {
        let mut unstuffer = DotUnstuffer::new();
        let mut out = BytesMut::new();
        let mut consumed = 0;
        for chunk in chunks {
            let step = unstuffer.unstuff(chunk, &mut out);
            assert_eq!(step.done, unstuffer.is_done());
            if !step.done {
                assert_eq!(step.consumed, chunk.len(), "not done, so all consumed");
            }
            consumed += step.consumed;
        }
        (out.to_vec(), consumed, unstuffer.is_done())
    }

    /// Unstuffs `input` split at every position; each must give `payload`, consume
    /// `consumed` octets and report `done`.
    fn assert_every_split(input: &[u8], payload: &[u8], consumed: usize, done: bool) {
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let got = unstuff_chunks(&[a, b]);
            assert_eq!(got, (payload.to_vec(), consumed, done), "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let got = unstuff_chunks(&bytes);
        assert_eq!(got, (payload.to_vec(), consumed, done), "one octet per chunk");
    }

    #[test]
    fn empty_payload() {
        assert_every_split(b".\r\n", b"", 3, true);
    }

    #[test]
    fn terminator_split_at_every_position_leaves_the_rest() {
        let input = b"a\r\n.\r\n+OK\r\n";
        assert_every_split(input, b"a\r\n", 6, true);
    }

    #[test]
    fn stuffing_dot_is_removed() {
        assert_every_split(b"..\r\n...x\r\n.y\n.\r\n", b".\r\n..x\r\ny\n", 16, true);
    }

    #[test]
    fn dot_at_byte_zero_is_stuffing() {
        assert_every_split(b"..a\r\n.\r\n", b".a\r\n", 8, true);
    }

    #[test]
    fn bare_lf_terminator_is_accepted() {
        assert_every_split(b"a\n.\nrest", b"a\n", 4, true);
    }

    #[test]
    fn dot_cr_without_lf_is_not_a_terminator() {
        assert_every_split(b".\rx\r\n.\r\r\n.\r\n", b"\rx\r\n\r\r\n", 12, true);
    }

    #[test]
    fn bare_cr_and_line_ends_pass_unchanged() {
        assert_every_split(b"a\rb\r\n\nc\n.\r\n", b"a\rb\r\n\nc\n", 11, true);
    }

    #[test]
    fn unterminated_input_is_not_done() {
        assert_every_split(b"a\r\n.", b"a\r\n", 4, false);
        assert_every_split(b"a\r\n.\r", b"a\r\n", 5, false);
    }

    #[test]
    fn after_done_nothing_is_consumed_until_reset() {
        let mut unstuffer = DotUnstuffer::new();
        let mut out = BytesMut::new();
        let step = unstuffer.unstuff(b".\r\n", &mut out);
        assert_eq!(step, Unstuffed { consumed: 3, done: true });
        let step = unstuffer.unstuff(b"more\r\n.\r\n", &mut out);
        assert_eq!(step, Unstuffed { consumed: 0, done: true });
        assert_eq!(unstuffer.unstuff(b"", &mut out).consumed, 0);
        assert!(out.is_empty());

        unstuffer.reset();
        assert!(!unstuffer.is_done());
        let step = unstuffer.unstuff(b"more\r\n.\r\n", &mut out);
        assert_eq!(step, Unstuffed { consumed: 9, done: true });
        assert_eq!(&out[..], b"more\r\n");
    }
}
