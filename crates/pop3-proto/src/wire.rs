//! Small helpers for writing wire bytes, shared by the encoders.

use alloc::string::String;

use bytes::BytesMut;

pub(crate) const CRLF: &[u8] = b"\r\n";

/// The decimal digits of `n`, written into `buf`, without going through `core::fmt`
/// (encoding a 1,000-line LIST response, or thousands of pipelined `LIST n`, is on the
/// server's hot path).
pub(crate) fn digits(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// Appends the decimal digits of `n`.
pub(crate) fn put_u64(out: &mut BytesMut, n: u64) {
    out.extend_from_slice(digits(n, &mut [0; 20]).as_bytes());
}

/// `n rest`: the text of a `+OK` that answers `STAT`, `LIST n` or `UIDL n`.
pub(crate) fn numbered(n: u64, rest: &str) -> String {
    let mut buf = [0; 20];
    let n = digits(n, &mut buf);
    let mut text = String::with_capacity(n.len() + 1 + rest.len());
    text.push_str(n);
    text.push(' ');
    text.push_str(rest);
    text
}

/// `a b`: the text of a `+OK` that answers `STAT` or `LIST n`.
pub(crate) fn number_pair(a: u64, b: u64) -> String {
    numbered(a, digits(b, &mut [0; 20]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_decimal() {
        let mut out = BytesMut::new();
        for n in [0, 7, 10, 4_294_967_295, u64::MAX] {
            out.clear();
            put_u64(&mut out, n);
            assert_eq!(out, alloc::format!("{n}").as_bytes());
            assert_eq!(numbered(n, "x y"), alloc::format!("{n} x y"));
            assert_eq!(number_pair(n, 7), alloc::format!("{n} 7"));
        }
    }
}
