//! Digests shared by APOP, CRAM-MD5 and SCRAM, and constant-time comparison.

use alloc::string::String;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::hex;

/// The APOP digest (RFC 1939 §7): lowercase hex of `MD5(timestamp + secret)`, where
/// `timestamp` is the greeting's `<...>` including the angle brackets.
///
/// ```
/// use pop3_proto::sasl::apop_digest;
/// // RFC 1939 §7
/// assert_eq!(
///     apop_digest("<1896.697170952@dbc.mtview.ca.us>", b"tanstaaf"),
///     "c4c9334bac560ecc979e58001b3e22fb",
/// );
/// ```
pub fn apop_digest(timestamp: &str, secret: &[u8]) -> String {
    let mut md5 = Md5::new();
    md5.update(timestamp.as_bytes());
    md5.update(secret);
    hex(&md5.finalize())
}

/// The CRAM-MD5 digest (RFC 2195 §2): lowercase hex of `HMAC-MD5(key = secret, challenge)`.
///
/// ```
/// use pop3_proto::sasl::cram_md5_digest;
/// // RFC 2195 §2
/// assert_eq!(
///     cram_md5_digest(b"tanstaaftanstaaf", b"<1896.697170952@postoffice.reston.mci.net>"),
///     "b913a602c7eda7a495b4e6e7334d3890",
/// );
/// ```
pub fn cram_md5_digest(secret: &[u8], challenge: &[u8]) -> String {
    let mut mac =
        <Hmac<Md5> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(challenge);
    hex(&mac.finalize().into_bytes())
}

/// Whether `a` and `b` are equal, in time that depends on their lengths but not on their
/// contents (so comparing a digest or a proof leaks nothing about where it differs).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `HMAC-SHA-256(key, parts...)`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `SHA-256(data)`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apop_rfc1939() {
        assert_eq!(
            apop_digest("<1896.697170952@dbc.mtview.ca.us>", b"tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn constant_time_eq_compares_length_and_content() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
