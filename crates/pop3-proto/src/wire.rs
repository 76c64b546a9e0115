//! Small helpers for writing wire bytes, shared by the encoders.

use bytes::BytesMut;

pub(crate) const CRLF: &[u8] = b"\r\n";

/// Appends the decimal digits of `n` without going through `core::fmt` (encoding a 1,000-line
/// LIST response is on the server's hot path).
pub(crate) fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
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
        }
    }
}
