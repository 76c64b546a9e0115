//! Response encoding (the server side).
//!
//! Encoding never fails and never produces a line a client could misread: control characters
//! in text are replaced by spaces (so no text can inject a line), a malformed response code is
//! left out, and a status line is cut to RFC 2449's 512 octets.

use bytes::BytesMut;

use super::parse::is_resp_code;
use super::types::{
    Capability, Expire, LangListing, ListItem, RespCode, Response, ScanListing, Status, StatusLine,
    UidListing,
};
use crate::wire::{put_u64, CRLF};
use crate::Limits;

impl StatusLine<'_> {
    /// Appends this status line and its CRLF to `out`; at most 512 octets in all (RFC 2449 §4).
    pub fn encode(&self, out: &mut BytesMut) {
        let indicator: &[u8] = match self.status {
            Status::Ok => b"+OK",
            Status::Err => b"-ERR",
        };
        let code = self.code.as_ref().map(RespCode::as_str).filter(|c| is_resp_code(c.as_bytes()));
        // Room left for " [code]" and " text" within the limit, CRLF included.
        let mut room = Limits::RFC_RESPONSE_LINE - indicator.len() - CRLF.len();
        out.reserve(Limits::RFC_RESPONSE_LINE);
        out.extend_from_slice(indicator);
        if let Some(code) = code.filter(|c| c.len() + 3 <= room) {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_bytes());
            out.extend_from_slice(b"]");
            room -= code.len() + 3;
        }
        if !self.text.is_empty() && room > 1 {
            out.extend_from_slice(b" ");
            put_text(out, truncate(&self.text, room - 1));
        }
        out.extend_from_slice(CRLF);
    }
}

impl ScanListing {
    /// Appends `msg size` and CRLF: a LIST line, or the text of a `LIST msg` answer.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_text(out);
        out.extend_from_slice(CRLF);
    }

    fn encode_text(&self, out: &mut BytesMut) {
        put_u64(out, u64::from(self.msg.get()));
        out.extend_from_slice(b" ");
        put_u64(out, self.size);
    }
}

impl UidListing<'_> {
    /// Appends `msg uid` and CRLF: a UIDL line (the id is valid by construction).
    pub fn encode(&self, out: &mut BytesMut) {
        put_u64(out, u64::from(self.msg().get()));
        out.extend_from_slice(b" ");
        out.extend_from_slice(self.uid().as_bytes());
        out.extend_from_slice(CRLF);
    }
}

impl LangListing<'_> {
    /// Appends `tag description` and CRLF: a LANG line.
    pub fn encode(&self, out: &mut BytesMut) {
        put_stuffed(out, &self.tag);
        if !self.description.is_empty() {
            out.extend_from_slice(b" ");
            put_text(out, &self.description);
        }
        out.extend_from_slice(CRLF);
    }
}

impl Capability<'_> {
    /// Appends this capability and its CRLF: a CAPA line (RFC 2449 §5).
    pub fn encode(&self, out: &mut BytesMut) {
        let user = |out: &mut BytesMut, user: bool| {
            if user {
                out.extend_from_slice(b" USER");
            }
        };
        match self {
            Self::Top => out.extend_from_slice(b"TOP"),
            Self::User => out.extend_from_slice(b"USER"),
            Self::Sasl(mechanisms) => {
                out.extend_from_slice(b"SASL");
                put_words(out, mechanisms);
            }
            Self::RespCodes => out.extend_from_slice(b"RESP-CODES"),
            Self::LoginDelay { seconds, per_user } => {
                out.extend_from_slice(b"LOGIN-DELAY ");
                put_u64(out, u64::from(*seconds));
                user(out, *per_user);
            }
            Self::Pipelining => out.extend_from_slice(b"PIPELINING"),
            Self::Expire { policy, per_user } => {
                out.extend_from_slice(b"EXPIRE ");
                match policy {
                    Expire::Never => out.extend_from_slice(b"NEVER"),
                    Expire::Days(days) => put_u64(out, u64::from(*days)),
                }
                user(out, *per_user);
            }
            Self::Uidl => out.extend_from_slice(b"UIDL"),
            Self::Implementation(text) => {
                out.extend_from_slice(b"IMPLEMENTATION");
                if !text.is_empty() {
                    out.extend_from_slice(b" ");
                    put_text(out, text);
                }
            }
            Self::Stls => out.extend_from_slice(b"STLS"),
            Self::AuthRespCode => out.extend_from_slice(b"AUTH-RESP-CODE"),
            Self::Utf8 { user: u } => {
                out.extend_from_slice(b"UTF8");
                user(out, *u);
            }
            Self::Lang => out.extend_from_slice(b"LANG"),
            Self::Other { name, params } => {
                put_stuffed(out, name);
                put_words(out, params);
            }
        }
        out.extend_from_slice(CRLF);
    }
}

impl ListItem<'_> {
    /// Appends this line of a multi-line listing; [`ListItem::End`] is the `.` terminator.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Capability(c) => c.encode(out),
            Self::Scan(s) => s.encode(out),
            Self::Uid(u) => u.encode(out),
            Self::Language(l) => l.encode(out),
            Self::End => out.extend_from_slice(b".\r\n"),
        }
    }
}

impl Response<'_> {
    /// Appends the whole response: status line, listing lines and terminator, or a challenge.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Status(status) => status.encode(out),
            Self::Challenge(data) => {
                // RFC 5034 §4: `"+" SP [base64]`; the decoder's types guarantee base64 only
                // when decoded, so text is sanitised like any other.
                out.extend_from_slice(b"+ ");
                put_text(out, data.expose());
                out.extend_from_slice(CRLF);
            }
            Self::Capabilities(status, items) => {
                multi(out, status, items, |c, out| c.encode(out));
            }
            Self::ScanList(status, items) => multi(out, status, items, |s, out| s.encode(out)),
            Self::UidList(status, items) => multi(out, status, items, |u, out| u.encode(out)),
            Self::Languages(status, items) => multi(out, status, items, |l, out| l.encode(out)),
        }
    }
}

/// A status line, then (only after `+OK`) the lines and the terminator (RFC 1939 §3).
fn multi<T>(
    out: &mut BytesMut,
    status: &StatusLine<'_>,
    items: &[T],
    line: impl Fn(&T, &mut BytesMut),
) {
    status.encode(out);
    if status.is_ok() {
        for item in items {
            line(item, out);
        }
        ListItem::End.encode(out);
    }
}

fn put_words(out: &mut BytesMut, words: &[alloc::borrow::Cow<'_, str>]) {
    for word in words {
        out.extend_from_slice(b" ");
        put_text(out, word);
    }
}

/// The first word of a listing line: stuffed with an extra `.` if it starts with one
/// (RFC 1939 §3), so it cannot be taken for the terminator.
fn put_stuffed(out: &mut BytesMut, word: &str) {
    if word.starts_with('.') {
        out.extend_from_slice(b".");
    }
    put_text(out, word);
}

/// Text with every control character replaced by a space.
fn put_text(out: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    if bytes.iter().all(|&b| b >= 0x20 && b != 0x7f) {
        out.extend_from_slice(bytes);
    } else {
        out.extend(bytes.iter().map(|&b| if b < 0x20 || b == 0x7f { b' ' } else { b }));
    }
}

/// The longest prefix of `text` of at most `max` octets that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
