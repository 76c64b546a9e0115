//! Small helpers: a stable hash, UIDL validity, time formatting, host name, failpoints.

use std::sync::OnceLock;

/// FNV-1a, 128-bit. Stable across Rust versions and platforms (unlike `DefaultHasher`),
/// which matters because its output ends up in UIDLs that clients remember for years.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    pub(crate) fn new() -> Self {
        Self(Self::OFFSET)
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub(crate) fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// FNV-1a 64-bit, used as the size cache's checksum.
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The size cache's checksum (format 2): 64 bits, 8 input bytes per step, several times
/// faster than [`fnv64`]. Not cryptographic: it detects torn and hand-edited files. Each step
/// is a bijection of the state for a given word and the length is mixed in, so two inputs of
/// the same length that differ within one aligned 8-byte word always hash differently.
pub(crate) fn checksum64(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(K);
        h ^= h >> 29;
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

/// RFC 1939 §7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
pub fn is_valid_uidl(uidl: &str) -> bool {
    (1..=70).contains(&uidl.len()) && uidl.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// `asctime`-style date for an mbox `From ` line, in UTC: `Thu Jan  1 00:00:00 1970`.
pub(crate) fn asctime_utc(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

/// The host name, made safe for a Maildir file name (the spec: `/` → `\057`, `:` → `\072`;
/// like Dovecot we also escape `,` as `\054` so it cannot fake a `,S=` field).
pub(crate) fn maildir_hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let uname = rustix::system::uname();
        let raw = uname.nodename().to_string_lossy();
        let mut out = String::new();
        for c in raw.chars() {
            match c {
                '/' => out.push_str("\\057"),
                ':' => out.push_str("\\072"),
                ',' => out.push_str("\\054"),
                c if c.is_ascii_graphic() => out.push(c),
                _ => out.push('_'),
            }
        }
        if out.is_empty() {
            out.push_str("localhost");
        }
        out
    })
}

static FAILPOINT_HOOK: OnceLock<fn(&str)> = OnceLock::new();

/// Called at each step of commit and delivery that a crash could interrupt. Does nothing unless a
/// test installed a hook with [`crate::testing::set_failpoint_hook`].
pub(crate) fn failpoint(name: &str) {
    if let Some(hook) = FAILPOINT_HOOK.get() {
        hook(name);
    }
}

pub(crate) fn set_failpoint_hook(hook: fn(&str)) {
    let _ = FAILPOINT_HOOK.set(hook);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv128_known_answer() {
        // FNV-1a 128 of "" is the offset basis; of "a" from the reference implementation.
        assert_eq!(Fnv128::new().hex(), "6c62272e07bb014262b821756295c58d");
        let mut h = Fnv128::new();
        h.update(b"a");
        assert_eq!(h.hex(), "d228cb696f1a8caf78912b704e4a8964");
    }

    #[test]
    fn checksum64_detects_every_single_byte_change() {
        let base: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let sum = checksum64(&base);
        assert_eq!(sum, checksum64(&base), "deterministic");
        for at in 0..base.len() {
            for flip in [1u8, 0x80, 0xff] {
                let mut b = base.clone();
                b[at] ^= flip;
                assert_ne!(checksum64(&b), sum, "byte {at} ^ {flip:#x}");
            }
        }
        for len in 0..base.len() {
            assert_ne!(checksum64(&base[..len]), sum, "truncated to {len}");
        }
        // Pinned: caches written by one build must validate in the next.
        assert_eq!(checksum64(b""), 0xf8bb_92c9_1b3f_5cc0);
        assert_eq!(checksum64(b"pop3-storage-sizes 2\n12 10 1.a.h\n"), 0xa87c_b9e8_65d0_7829);
    }

    #[test]
    fn asctime_known_answers() {
        assert_eq!(asctime_utc(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime_utc(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(asctime_utc(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn uidl_validity() {
        assert!(is_valid_uidl("a"));
        assert!(is_valid_uidl(&"x".repeat(70)));
        assert!(!is_valid_uidl(&"x".repeat(71)));
        assert!(!is_valid_uidl(""));
        assert!(!is_valid_uidl("a b"));
        assert!(!is_valid_uidl("é"));
    }

    #[test]
    fn hostname_is_safe() {
        let h = maildir_hostname();
        assert!(!h.is_empty());
        assert!(!h.contains(['/', ':', ',']));
    }
}
