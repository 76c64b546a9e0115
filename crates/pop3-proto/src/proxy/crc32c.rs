//! CRC-32C (Castagnoli, RFC 4960 Appendix B), the checksum of `PP2_TYPE_CRC32C` (§2.2.3).

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// One entry per byte value, computed at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The CRC-32C of `parts`, concatenated.
pub(super) fn checksum(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::checksum;

    /// The check value of the CRC catalogue, and RFC 3720 §B.4's 32 zero bytes.
    #[test]
    fn known_answers() {
        assert_eq!(checksum(&[b"123456789"]), 0xE306_9283);
        assert_eq!(checksum(&[b"1234", b"56789"]), 0xE306_9283);
        assert_eq!(checksum(&[&[0u8; 32]]), 0x8A91_36AA);
        assert_eq!(checksum(&[&[0xffu8; 32]]), 0x62A8_AB43);
    }
}
