//! The server side of RFC 1939 §3 byte-stuffing.

use bytes::{BufMut, BytesMut};

/// Turns a message, in chunks of any split, into the body of a multi-line response.
///
/// RFC 1939 §3: a multi-line response ends with a line holding a single `.`, so every line of
/// the message that begins with `.` is sent with one more `.` in front, and all lines end with
/// CRLF. The stuffer does both (bare LF becomes CRLF, see [the module docs](super) for the
/// line-ending rule) and [`finish`](Self::finish) writes the terminator. It keeps two bits of
/// state between chunks instead of buffering lines, so a message of any size streams through.
///
/// # Example
///
/// ```
/// use bytes::BytesMut;
/// use pop3_proto::DotStuffer;
///
/// let mut stuffer = DotStuffer::new();
/// let mut out = BytesMut::new();
/// stuffer.stuff(b"Subject: hi\n\n.hidden\r", &mut out);
/// stuffer.stuff(b"\nlast line", &mut out);
/// stuffer.finish(&mut out);
/// assert_eq!(&out[..], b"Subject: hi\r\n\r\n..hidden\r\nlast line\r\n.\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotStuffer {
    /// The next octet begins a line (true at the start of the message and after every LF).
    at_line_start: bool,
    /// The last octet written was a CR (already written): an LF at the start of the next chunk
    /// completes a CRLF and must not get a CR of its own.
    after_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of a message.
    #[must_use]
    pub const fn new() -> Self {
        Self { at_line_start: true, after_cr: false }
    }

    /// Writes the next chunk of the message, CRLF-normalised and dot-stuffed, into `out`.
    ///
    /// Octets are copied in runs between the places where something must be inserted (a `.`
    /// before a line that begins with `.`, a CR before a bare LF), so ordinary CRLF text is
    /// copied with one `extend_from_slice` per chunk.
    pub fn stuff(&mut self, input: &[u8], out: &mut BytesMut) {
        let Some(&last) = input.last() else {
            return;
        };
        // Room for a CR or a dot every 32 octets, so LF-only text with lines of typical length
        // fits without a reallocation; `extend_from_slice` grows `out` further if needed.
        out.reserve(input.len() + input.len() / 32 + 2);
        let mut copied = 0; // input[..copied] has been written to out
        let mut pos = 0; // input[..pos] has been examined
        while pos < input.len() {
            if self.at_line_start {
                self.at_line_start = false;
                if input[pos] == b'.' {
                    out.extend_from_slice(&input[copied..pos]);
                    out.put_u8(b'.');
                    copied = pos;
                }
            }
            let Some(offset) = memchr::memchr(b'\n', &input[pos..]) else {
                break;
            };
            let lf = pos + offset;
            if !self.cr_before(input, lf) {
                // A bare LF: write it as CRLF (measurably faster than inserting the CR alone
                // and copying the LF with the next run).
                out.extend_from_slice(&input[copied..lf]);
                out.extend_from_slice(b"\r\n");
                copied = lf + 1;
            }
            pos = lf + 1;
            self.at_line_start = true;
        }
        out.extend_from_slice(&input[copied..]);
        self.after_cr = last == b'\r';
    }

    /// Whether the LF at `input[lf]` is preceded by a CR, which may be the last octet of the
    /// previous chunk.
    fn cr_before(&self, input: &[u8], lf: usize) -> bool {
        match lf.checked_sub(1) {
            Some(i) => input[i] == b'\r',
            None => self.after_cr,
        }
    }

    /// Ends the message: completes an unterminated last line with CRLF (a CR at the very end
    /// becomes that CRLF), then writes the terminator `.\r\n`.
    ///
    /// An empty message gives just `.\r\n`. Afterwards the stuffer is ready for the next
    /// message.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if !self.at_line_start {
            let line_end: &[u8] = if self.after_cr { b"\n" } else { b"\r\n" };
            out.extend_from_slice(line_end);
        }
        out.extend_from_slice(b".\r\n");
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Stuffs `chunks` one after the other and finishes.
    fn stuff_chunks(chunks: &[&[u8]]) -> Vec<u8> {
        let mut stuffer = DotStuffer::new();
        let mut out = BytesMut::new();
        for chunk in chunks {
            stuffer.stuff(chunk, &mut out);
        }
        stuffer.finish(&mut out);
        out.to_vec()
    }

    /// Stuffs `input` split at every position (two chunks) and checks each gives `expected`.
    fn assert_every_split(input: &[u8], expected: &[u8]) {
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(stuff_chunks(&[a, b]), expected, "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(stuff_chunks(&bytes), expected, "one octet per chunk");
    }

    #[test]
    fn empty_message_is_just_the_terminator() {
        assert_eq!(stuff_chunks(&[]), b".\r\n");
        assert_eq!(stuff_chunks(&[b"", b""]), b".\r\n");
    }

    #[test]
    fn leading_dot_at_byte_zero_is_stuffed() {
        assert_every_split(b".abc\r\n", b"..abc\r\n.\r\n");
        assert_every_split(b".", b"..\r\n.\r\n");
    }

    #[test]
    fn dot_after_each_line_end_is_stuffed() {
        assert_every_split(b"a\r\n.\r\n..b\n.", b"a\r\n..\r\n...b\r\n..\r\n.\r\n");
    }

    #[test]
    fn dot_inside_a_line_is_not_stuffed() {
        assert_every_split(b"a.b\r\n x.\r\n", b"a.b\r\n x.\r\n.\r\n");
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        assert_every_split(b"a\nb\n\n", b"a\r\nb\r\n\r\n.\r\n");
    }

    #[test]
    fn crlf_split_between_chunks_stays_one_crlf() {
        assert_eq!(stuff_chunks(&[b"a\r", b"\nb\r\n"]), b"a\r\nb\r\n.\r\n");
        assert_eq!(stuff_chunks(&[b"a\r", b"\n", b".b"]), b"a\r\n..b\r\n.\r\n");
    }

    #[test]
    fn chunk_ending_after_lf_puts_next_chunk_at_line_start() {
        assert_eq!(stuff_chunks(&[b"a\n", b".b\n"]), b"a\r\n..b\r\n.\r\n");
    }

    #[test]
    fn bare_cr_is_data() {
        assert_every_split(b"a\rb\r\r\n\r.x\n", b"a\rb\r\r\n\r.x\r\n.\r\n");
    }

    #[test]
    fn missing_final_line_end_is_added() {
        assert_every_split(b"abc", b"abc\r\n.\r\n");
    }

    #[test]
    fn final_bare_cr_becomes_crlf() {
        assert_every_split(b"abc\r", b"abc\r\n.\r\n");
        assert_every_split(b"\r", b"\r\n.\r\n");
    }

    #[test]
    fn finish_resets_for_the_next_message() {
        let mut stuffer = DotStuffer::new();
        let mut out = BytesMut::new();
        stuffer.stuff(b"a\r", &mut out);
        stuffer.finish(&mut out);
        stuffer.stuff(b"\n.", &mut out);
        stuffer.finish(&mut out);
        assert_eq!(&out[..], b"a\r\n.\r\n\r\n..\r\n.\r\n");
        assert_eq!(stuffer, DotStuffer::default());
    }
}
