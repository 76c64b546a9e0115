//! Wire form: a message stored exactly as the octets RFC 1939 counts in its size, so that a
//! server can send the file as it is, adding only the stuffing dots and the terminator.
//!
//! A message is in wire form when every line ends with CRLF and the last line is complete:
//! the stored bytes are what the size rule of [`crate::size`] transmits (bare LF written as
//! CRLF; a bare CR elsewhere stays data; an unterminated last line completed with CRLF, or
//! with LF after a final CR), so its stored length equals its RFC 1939 size. This is what
//! Dovecot calls `mail_save_crlf = yes`. [`WireWriter`] turns a message, in chunks of any
//! split, into that form and notes where the lines that begin with `.` start: the places
//! where RFC 1939 §3 byte-stuffing puts a `.` in front of a line. [`DotLines`] is that
//! record, kept with the message (in a Maildir, the `,D=` field of the file name).
//!
//! This crate still does no dot-stuffing; it only says where a stuffing dot goes.

use std::fmt::Write as _;

use crate::SizeCounter;

/// Streaming conversion of a message into wire form (see the [module docs](self)).
///
/// ```
/// use pop3_storage::wire::WireWriter;
/// let mut w = WireWriter::new();
/// let mut out = Vec::new();
/// w.write(b"a\n.b\r", &mut out);
/// w.write(b"\nlast", &mut out);
/// w.finish(&mut out);
/// assert_eq!(out, b"a\r\n.b\r\nlast\r\n");
/// assert_eq!(w.dot_lines(), &[3]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct WireWriter {
    /// Octets written so far (the wire form's length).
    len: u64,
    /// The next octet begins a line.
    at_line_start: bool,
    /// The last octet written was a CR.
    after_cr: bool,
    /// Offsets (in the wire form) of the lines that begin with `.`.
    dots: Vec<u64>,
    /// The RFC 1939 size of the input, which the output's length must equal.
    size: SizeCounter,
}

impl WireWriter {
    /// A writer at the start of a message.
    pub fn new() -> Self {
        Self { at_line_start: true, ..Self::default() }
    }

    /// Appends the next chunk of the message, in wire form, to `out`.
    pub fn write(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = chunk.last() else { return };
        self.size.update(chunk);
        let start = out.len();
        out.reserve(chunk.len() + chunk.len() / 32 + 2);
        let mut copied = 0;
        let mut pos = 0;
        while pos < chunk.len() {
            if self.at_line_start {
                self.at_line_start = false;
                if chunk[pos] == b'.' {
                    let at = self.len + (out.len() - start + (pos - copied)) as u64;
                    self.dots.push(at);
                }
            }
            let Some(offset) = memchr::memchr(b'\n', &chunk[pos..]) else { break };
            let lf = pos + offset;
            let cr_before = if lf == 0 { self.after_cr } else { chunk[lf - 1] == b'\r' };
            if !cr_before {
                out.extend_from_slice(&chunk[copied..lf]);
                out.extend_from_slice(b"\r\n");
                copied = lf + 1;
            }
            pos = lf + 1;
            self.at_line_start = true;
        }
        out.extend_from_slice(&chunk[copied..]);
        self.after_cr = last == b'\r';
        self.len += (out.len() - start) as u64;
    }

    /// Completes an unterminated last line (CRLF, or LF after a final CR) into `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            let end: &[u8] = if self.after_cr { b"\n" } else { b"\r\n" };
            out.extend_from_slice(end);
            self.len += end.len() as u64;
            self.at_line_start = true;
        }
        debug_assert_eq!(self.len, self.size.finish(), "wire form length is the RFC 1939 size");
    }

    /// The length of the wire form written so far (after [`finish`](Self::finish): the
    /// message's RFC 1939 size).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The RFC 1939 size of the message fed so far (its stored length once finished).
    pub fn size(&self) -> u64 {
        self.size.finish()
    }

    /// Offsets, in the wire form, of the lines that begin with `.`, in order.
    pub fn dot_lines(&self) -> &[u64] {
        &self.dots
    }
}

/// Where the lines that begin with `.` start in a message stored in wire form: the Maildir
/// file name field `,D=<count>[-<offset>...]` (`,D=0`: no such line; `,D=2-0-120`: two, at
/// offsets 0 and 120). Offsets are strictly increasing, each below the message's length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DotLines(pub Vec<u64>);

impl DotLines {
    /// Most offsets a Maildir name carries; a message with more dot lines gets no `,D=`
    /// field and is sent by the streaming path (a name stays far below the 255-octet limit
    /// of file names, with room for the flags a mail reader adds).
    pub const MAX_IN_NAME: usize = 8;

    /// The field's value, `None` if there are too many offsets for a file name.
    pub fn to_field(&self) -> Option<String> {
        if self.0.len() > Self::MAX_IN_NAME {
            return None;
        }
        let mut value = self.0.len().to_string();
        for offset in &self.0 {
            write!(value, "-{offset}").expect("writing to a String");
        }
        Some(value)
    }

    /// Parses the value of a `,D=` field of a message of `len` octets; `None` if it is not
    /// well-formed (then the message is not treated as wire form).
    pub fn parse(value: &[u8], len: u64) -> Option<Self> {
        let mut parts = value.split(|&b| b == b'-');
        let count = number(parts.next()?)?;
        if count > Self::MAX_IN_NAME as u64 {
            return None;
        }
        let mut offsets = Vec::with_capacity(count as usize);
        for part in parts {
            let offset = number(part)?;
            if offset >= len || offsets.last().is_some_and(|&prev| offset <= prev) {
                return None;
            }
            offsets.push(offset);
        }
        (offsets.len() as u64 == count).then_some(Self(offsets))
    }
}

/// A decimal number of 1 to 19 digits, nothing else.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pop3_testkit::transmitted;
    use proptest::prelude::*;

    fn convert(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let mut w = WireWriter::new();
        let mut out = Vec::new();
        for c in chunks {
            w.write(c, &mut out);
        }
        w.finish(&mut out);
        assert_eq!(w.len(), out.len() as u64);
        (out, w.dot_lines().to_vec())
    }

    #[test]
    fn known_answers() {
        assert_eq!(convert(&[]), (vec![], vec![]));
        assert_eq!(convert(&[b"."]), (b".\r\n".to_vec(), vec![0]));
        assert_eq!(convert(&[b"a\r", b"\n.\n"]), (b"a\r\n.\r\n".to_vec(), vec![3]));
        assert_eq!(convert(&[b"a\r"]), (b"a\r\n".to_vec(), vec![]));
        assert_eq!(convert(&[b"a\rb\n", b"x.\n..\n"]), (b"a\rb\r\nx.\r\n..\r\n".to_vec(), vec![9]));
        assert_eq!(convert(&[b"\n\n"]), (b"\r\n\r\n".to_vec(), vec![]));
    }

    #[test]
    fn the_name_field() {
        assert_eq!(DotLines(vec![]).to_field().unwrap(), "0");
        assert_eq!(DotLines(vec![0, 120]).to_field().unwrap(), "2-0-120");
        assert_eq!(DotLines(vec![1; 9]).to_field(), None);
        assert_eq!(DotLines::parse(b"0", 10), Some(DotLines(vec![])));
        assert_eq!(DotLines::parse(b"2-0-120", 121), Some(DotLines(vec![0, 120])));
        for bad in [
            &b""[..],
            b"x",
            b"1",
            b"1-",
            b"2-5-5",
            b"2-6-5",
            b"1-121",
            b"0-1",
            b"9-1-2-3-4-5-6-7-8-9",
        ] {
            assert_eq!(DotLines::parse(bad, 121), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// What RETR sends for `message`: pop3-proto's streaming `DotStuffer`, the path every
    /// message not in wire form takes.
    fn stuffed_by_the_protocol_layer(message: &[u8]) -> Vec<u8> {
        let mut stuffer = pop3_proto::DotStuffer::new();
        let mut out = bytes::BytesMut::new();
        stuffer.stuff(message, &mut out);
        stuffer.finish(&mut out);
        out.to_vec()
    }

    proptest! {
        /// For any message in any chunking: the wire form is what RETR transmits before
        /// stuffing, and the wire form with a `.` inserted at each recorded offset, then the
        /// terminator, is exactly the stuffed RETR stream.
        #[test]
        fn wire_form_and_dot_lines_reproduce_the_stuffed_stream(
            message in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a'), any::<u8>()],
                0..400,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(message.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for cut in cuts {
                chunks.push(&message[at..cut]);
                at = cut;
            }
            chunks.push(&message[at..]);
            let (wire, dots) = convert(&chunks);
            prop_assert_eq!(&wire, &transmitted(&message));
            prop_assert_eq!(wire.len() as u64, crate::rfc1939_size(&message));
            let mut sent = Vec::new();
            let mut from = 0;
            for &d in &dots {
                sent.extend_from_slice(&wire[from..d as usize]);
                sent.push(b'.');
                from = d as usize;
            }
            sent.extend_from_slice(&wire[from..]);
            sent.extend_from_slice(b".\r\n");
            prop_assert_eq!(sent, stuffed_by_the_protocol_layer(&message));
            if let Some(field) = DotLines(dots.clone()).to_field() {
                prop_assert_eq!(DotLines::parse(field.as_bytes(), wire.len() as u64), Some(DotLines(dots)));
            }
        }
    }
}
