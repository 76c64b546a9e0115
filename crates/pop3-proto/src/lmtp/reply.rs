//! LMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 2034, RFC 3463).

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt::Write as _;

use bytes::{BufMut, BytesMut};

/// An enhanced status code `class.subject.detail` (RFC 3463 §2), e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub [u16; 3]);

/// One reply: a three-digit code, an enhanced status code, and one or more lines of text.
///
/// RFC 2034 §3: with ENHANCEDSTATUSCODES every reply but the greeting and the answer to the
/// greeting command carries an enhanced code, in front of the text of each of its lines.
/// RFC 3463 gives codes to the classes 2, 4 and 5 only, so a 354 has none either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The basic reply code (RFC 5321 §4.2.2).
    pub code: u16,
    /// The enhanced status code, if any.
    pub enhanced: Option<Enhanced>,
    /// The text lines; at least one (an empty text is sent as an empty line).
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply with an enhanced code.
    pub fn new(code: u16, enhanced: [u16; 3], text: impl Into<Cow<'static, str>>) -> Self {
        Self { code, enhanced: Some(Enhanced(enhanced)), lines: alloc::vec![text.into()] }
    }

    /// A reply without an enhanced code (the greeting, LHLO's answer, 354).
    pub fn plain(code: u16, lines: Vec<Cow<'static, str>>) -> Self {
        Self { code, enhanced: None, lines }
    }

    /// Whether the reply says success (2yz) or an intermediate step (3yz).
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Writes the reply: `code-text` for every line but the last, `code text` for the last
    /// (RFC 5321 §4.2.1). CR and LF inside a line are sent as spaces: a reply line can never
    /// be split by text taken from a client (an address, a domain).
    pub fn encode(&self, out: &mut BytesMut) {
        let last = self.lines.len().saturating_sub(1);
        let empty = [Cow::Borrowed("")];
        let lines: &[Cow<'static, str>] = if self.lines.is_empty() { &empty } else { &self.lines };
        for (n, line) in lines.iter().enumerate() {
            let sep = if n == last { ' ' } else { '-' };
            let mut head = alloc::string::String::with_capacity(16);
            let _ = write!(head, "{:03}{sep}", self.code % 1000);
            if let Some(Enhanced([c, s, d])) = self.enhanced {
                let _ = write!(head, "{c}.{s}.{d} ");
            }
            out.put_slice(head.as_bytes());
            for &b in line.as_bytes() {
                out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
            }
            out.put_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn wire(reply: &Reply) -> alloc::string::String {
        let mut out = BytesMut::new();
        reply.encode(&mut out);
        alloc::string::String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn single_and_multi_line() {
        assert_eq!(wire(&Reply::new(250, [2, 1, 0], "OK")), "250 2.1.0 OK\r\n");
        let lhlo = Reply::plain(250, vec!["mx".into(), "PIPELINING".into(), "SIZE 10".into()]);
        assert_eq!(wire(&lhlo), "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
        let multi = Reply {
            code: 214,
            enhanced: Some(Enhanced([2, 0, 0])),
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(wire(&multi), "214-2.0.0 a\r\n214 2.0.0 b\r\n");
    }

    #[test]
    fn line_breaks_in_text_cannot_split_a_reply() {
        let evil = Reply::new(550, [5, 1, 1], "<a\r\n250 b> unknown");
        assert_eq!(wire(&evil), "550 5.1.1 <a  250 b> unknown\r\n");
    }
}
