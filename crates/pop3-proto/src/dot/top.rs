//! The message cut of `TOP msg n` (RFC 1939 §7).

/// Where the filter is in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the headers, at the start of a line: an LF or CRLF here is the blank line.
    LineStart,
    /// In the headers, after a CR at the start of a line: an LF here ends the blank line.
    LineStartCr,
    /// In the headers, inside a line that is not blank.
    InLine,
    /// In the body; this many more lines pass (never zero).
    Body(u32),
    /// Nothing more passes.
    Done,
}

/// Cuts a message, in chunks of any split, down to what `TOP msg n` sends.
///
/// RFC 1939 §7: the server sends "the headers of the message, the blank line separating the
/// headers from the body, and then the number of lines of the indicated message's body", so
/// `TOP msg 0` is the headers plus the blank line, and a message without a blank line is all
/// headers and passes whole. The filter returns the passing prefix of each chunk (to be fed to
/// a [`DotStuffer`](crate::DotStuffer)) and says when nothing more can pass, so the server can
/// stop reading the file instead of reading to its end.
///
/// Lines follow the rule in [the module docs](super): a line ends at LF, and the blank line is
/// an LF or CRLF at the start of a line (or of the message), even when its CR and LF arrive in
/// different chunks. A body line counts when its LF passes; a last line without LF passes as
/// far as it goes. If the message has fewer body lines than asked for, the filter never
/// reports done and the server stops at the end of the file.
///
/// # Example
///
/// ```
/// use pop3_proto::TopFilter;
///
/// let mut top = TopFilter::new(1);
/// assert_eq!(top.filter(b"Subject: hi\r\n\r"), b"Subject: hi\r\n\r");
/// assert!(!top.is_done());
/// assert_eq!(top.filter(b"\nline 1\nline 2\n"), b"\nline 1\n");
/// assert!(top.is_done());
/// assert_eq!(top.filter(b"line 3\n"), b"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopFilter {
    /// The `n` of `TOP msg n`: body lines to pass after the blank line.
    body_lines: u32,
    state: State,
}

impl TopFilter {
    /// A filter at the start of a message that passes `body_lines` lines of its body.
    #[must_use]
    pub const fn new(body_lines: u32) -> Self {
        Self { body_lines, state: State::LineStart }
    }

    /// Whether nothing more of the message can pass.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Returns the prefix of `input`, the next chunk of the message, that `TOP` sends.
    #[must_use = "only the returned prefix may be sent"]
    pub fn filter<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        let mut pos = 0;
        while pos < input.len() {
            pos = match self.state {
                State::LineStart | State::LineStartCr => self.line_start(input[pos], pos),
                State::InLine => self.skip_header_line(input, pos),
                State::Body(left) => self.pass_body_lines(input, pos, left),
                State::Done => break,
            };
        }
        &input[..pos]
    }

    /// Handles `octet` (at `pos`) at the start of a header line, where a blank line may begin.
    /// Returns the position of the next octet to look at: `pos` itself when the octet is
    /// ordinary header content.
    fn line_start(&mut self, octet: u8, pos: usize) -> usize {
        match (self.state, octet) {
            (State::LineStart, b'\r') => {
                self.state = State::LineStartCr;
                pos + 1
            }
            (_, b'\n') => {
                self.state = self.after_blank_line();
                pos + 1
            }
            _ => {
                // Not blank; a CR already passed at line start was ordinary header content.
                self.state = State::InLine;
                pos
            }
        }
    }

    /// The state after the blank line that ends the headers.
    fn after_blank_line(&self) -> State {
        match self.body_lines {
            0 => State::Done,
            n => State::Body(n),
        }
    }

    /// Passes the rest of a header line that is not blank. Returns the position after its LF,
    /// or the end of the input.
    fn skip_header_line(&mut self, input: &[u8], pos: usize) -> usize {
        match memchr::memchr(b'\n', &input[pos..]) {
            Some(offset) => {
                self.state = State::LineStart;
                pos + offset + 1
            }
            None => input.len(),
        }
    }

    /// Passes up to `left` body lines from `input[pos..]`. Returns the position after the last
    /// LF that passed, or the end of the input if fewer than `left` lines end in it.
    fn pass_body_lines(&mut self, input: &[u8], pos: usize, mut left: u32) -> usize {
        for offset in memchr::memchr_iter(b'\n', &input[pos..]) {
            left -= 1;
            if left == 0 {
                self.state = State::Done;
                return pos + offset + 1;
            }
        }
        self.state = State::Body(left);
        input.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Filters `chunks` in order and returns what passed and whether the filter is done.
    fn filter_chunks(body_lines: u32, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut top = TopFilter::new(body_lines);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend_from_slice(top.filter(chunk));
        }
        (out, top.is_done())
    }

    /// Filters `input` split at every position and one octet at a time; each must pass
    /// `expected` and end with `done`.
    fn assert_every_split(body_lines: u32, input: &[u8], expected: &[u8], done: bool) {
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let got = filter_chunks(body_lines, &[a, b]);
            assert_eq!(got, (expected.to_vec(), done), "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let got = filter_chunks(body_lines, &bytes);
        assert_eq!(got, (expected.to_vec(), done), "one octet per chunk");
    }

    const MESSAGE: &[u8] = b"From: a\r\nSubject: b\r\n\r\none\r\ntwo\r\nthree";

    #[test]
    fn top_zero_is_headers_and_blank_line() {
        assert_every_split(0, MESSAGE, b"From: a\r\nSubject: b\r\n\r\n", true);
    }

    #[test]
    fn top_counts_body_lines_only() {
        assert_every_split(2, MESSAGE, b"From: a\r\nSubject: b\r\n\r\none\r\ntwo\r\n", true);
    }

    #[test]
    fn top_past_the_end_passes_whole_message() {
        assert_every_split(3, MESSAGE, MESSAGE, false);
        assert_every_split(u32::MAX, MESSAGE, MESSAGE, false);
    }

    #[test]
    fn no_blank_line_passes_whole_message() {
        assert_every_split(0, b"From: a\r\nSubject: b\r\n", b"From: a\r\nSubject: b\r\n", false);
    }

    #[test]
    fn headers_with_lf_only() {
        assert_every_split(
            1,
            b"From: a\nSubject: b\n\nbody\nmore\n",
            b"From: a\nSubject: b\n\nbody\n",
            true,
        );
    }

    #[test]
    fn blank_line_at_start_of_message() {
        assert_every_split(0, b"\r\nbody\r\n", b"\r\n", true);
        assert_every_split(1, b"\nbody\nmore", b"\nbody\n", true);
    }

    #[test]
    fn bare_cr_line_is_not_blank() {
        let input = b"A: b\r\n\r \r\n\r\r\n\nbody\n";
        assert_every_split(0, input, b"A: b\r\n\r \r\n\r\r\n\n", true);
    }

    #[test]
    fn empty_message_passes_nothing() {
        assert_every_split(0, b"", b"", false);
    }

    #[test]
    fn after_done_nothing_passes() {
        let mut top = TopFilter::new(0);
        assert_eq!(top.filter(b"\n\nx"), b"\n");
        assert!(top.is_done());
        assert_eq!(top.filter(b"\n"), b"");
    }
}
