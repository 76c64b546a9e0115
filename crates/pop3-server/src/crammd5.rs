//! Dovecot's `{CRAM-MD5}` scheme: the two MD5 chaining states of HMAC-MD5 keyed with the
//! password, after the inner (`key ⊕ ipad`) and outer (`key ⊕ opad`) blocks, stored as 64
//! hex digits (outer state first, each state as four little-endian 32-bit words). From them
//! HMAC-MD5 of any challenge can be finished without the password, which is what CRAM-MD5
//! (RFC 2195) needs; a password can be checked by recomputing them.
//!
//! The `md-5` crate does not expose its chaining state, so the MD5 compression function
//! (RFC 1321 §3.4) is here; a test checks it against `md-5`.

/// MD5 initial chaining state (RFC 1321 §3.3).
const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

const SHIFTS: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

/// `K[i] = floor(|sin(i + 1)| · 2^32)` (RFC 1321 §3.4).
fn k(i: usize) -> u32 {
    ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32
}

fn compress(state: &mut [u32; 4], block: &[u8]) {
    debug_assert_eq!(block.len(), 64);
    let mut m = [0u32; 16];
    for (word, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let sum = f.wrapping_add(a).wrapping_add(k(i)).wrapping_add(m[g]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(sum.rotate_left(SHIFTS[(i / 16) * 4 + i % 4]));
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

/// Finishes an MD5 computation that has already processed `prefix_blocks` 64-byte blocks
/// into `state`, over `data`.
fn finish(mut state: [u32; 4], prefix_blocks: u64, data: &[u8]) -> [u8; 16] {
    let mut chunks = data.chunks_exact(64);
    for block in &mut chunks {
        compress(&mut state, block);
    }
    let rest = chunks.remainder();
    let bits = (prefix_blocks * 64 + data.len() as u64).wrapping_mul(8);
    let mut tail = Vec::with_capacity(128);
    tail.extend_from_slice(rest);
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&bits.to_le_bytes());
    for block in tail.chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut out = [0u8; 16];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// The stored form: outer state, then inner state.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CramContext {
    outer: [u32; 4],
    inner: [u32; 4],
}

impl CramContext {
    /// The context for `password` (keys longer than 64 bytes are hashed first, RFC 2104).
    pub(crate) fn from_password(password: &[u8]) -> Self {
        let hashed;
        let key = if password.len() > 64 {
            hashed = finish(IV, 0, password);
            &hashed[..]
        } else {
            password
        };
        let state = |pad: u8| {
            let mut block = [pad; 64];
            for (b, k) in block.iter_mut().zip(key) {
                *b ^= k;
            }
            let mut state = IV;
            compress(&mut state, &block);
            state
        };
        Self { outer: state(0x5c), inner: state(0x36) }
    }

    /// Parses Dovecot's 64 hex digits.
    pub(crate) fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut words = [0u32; 8];
        for (i, word) in words.iter_mut().enumerate() {
            let mut bytes = [0u8; 4];
            for (j, byte) in bytes.iter_mut().enumerate() {
                let at = (i * 4 + j) * 2;
                *byte = u8::from_str_radix(&hex[at..at + 2], 16).ok()?;
            }
            *word = u32::from_le_bytes(bytes);
        }
        Some(Self {
            outer: [words[0], words[1], words[2], words[3]],
            inner: [words[4], words[5], words[6], words[7]],
        })
    }

    /// HMAC-MD5 of `message`, lower-case hex, as CRAM-MD5 clients send it.
    pub(crate) fn hmac_hex(&self, message: &[u8]) -> String {
        let inner = finish(self.inner, 1, message);
        pop3_proto::hex(&finish(self.outer, 1, &inner))
    }

    /// Constant-time equality.
    pub(crate) fn matches(&self, other: &Self) -> bool {
        let bytes = |c: &Self| -> Vec<u8> {
            c.outer.iter().chain(&c.inner).flat_map(|w| w.to_le_bytes()).collect()
        };
        pop3_proto::sasl::constant_time_eq(&bytes(self), &bytes(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        let hex = |d: [u8; 16]| pop3_proto::hex(&d);
        assert_eq!(hex(finish(IV, 0, b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(finish(IV, 0, b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        let long =
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890";
        assert_eq!(hex(finish(IV, 0, long)), "57edf4a22be3c955ac49da2e2107b67a");
    }

    #[test]
    fn dovecot_cram_md5_vector() {
        // `doveadm pw -s CRAM-MD5 -p secret` (Dovecot 2.3).
        let stored = "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56";
        let parsed = CramContext::parse(stored).unwrap();
        assert!(parsed.matches(&CramContext::from_password(b"secret")));
        assert!(!parsed.matches(&CramContext::from_password(b"Secret")));
        // RFC 2195's example challenge; the digest is HMAC-MD5("secret", challenge).
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(parsed.hmac_hex(challenge), "733ba87e64ed7e441f062c4ac6db0103");
        assert_eq!(
            parsed.hmac_hex(challenge),
            pop3_proto::sasl::cram_md5_digest(b"secret", challenge)
        );
        let long_key = [7u8; 100];
        assert_eq!(
            CramContext::from_password(&long_key).hmac_hex(b"x"),
            pop3_proto::sasl::cram_md5_digest(&long_key, b"x")
        );
    }
}
