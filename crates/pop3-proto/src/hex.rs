//! Lower-case hexadecimal, the form of APOP and CRAM-MD5 digests (RFC 1939 §7, RFC 2195 §2),
//! of certificate fingerprints and of the random tokens the server and client draw.

use alloc::string::String;

/// `bytes` as lower-case hexadecimal, two digits per byte.
///
/// ```
/// assert_eq!(pop3_proto::hex(&[0x00, 0x0f, 0xab]), "000fab");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn every_byte_is_two_lower_case_digits() {
        let all: alloc::vec::Vec<u8> = (0..=255).collect();
        let text = hex(&all);
        assert_eq!(text.len(), 512);
        assert!(text.starts_with("000102") && text.ends_with("fdfeff"));
        assert_eq!(hex(&[]), "");
    }
}
