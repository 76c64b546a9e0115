//! MD5-crypt (`$1$salt$hash`), Poul-Henning Kamp's FreeBSD `crypt(3)` algorithm, as Dovecot's
//! `MD5-CRYPT` (`src/auth/password-scheme-md5crypt.c`) and glibc implement it.
//!
//! No maintained RustCrypto crate implements it (`sha-crypt` covers only `$5$`/`$6$`), so the
//! published algorithm is here, on the `md-5` crate, checked against `doveadm pw` and glibc
//! known answers.

use md5::{Digest as _, Md5};
use pop3_proto::sasl::constant_time_eq;

const MAGIC: &str = "$1$";

/// The crypt(3) alphabet ("./0-9A-Za-z") for the 6-bit groups of the result.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether `hash` looks like an MD5-crypt hash (`$1$`, a salt, `$`, 22 characters).
pub(crate) fn is_valid(hash: &str) -> bool {
    hash.strip_prefix(MAGIC).and_then(|rest| rest.rsplit_once('$')).is_some_and(|(salt, out)| {
        salt.len() <= 8
            && !salt.contains('$')
            && out.len() == 22
            && out.bytes().all(|b| ITOA64.contains(&b))
    })
}

/// `crypt(password, "$1$salt")`: the salt is what follows `$1$`, up to 8 characters or a `$`.
pub(crate) fn crypt(password: &[u8], salt: &str) -> String {
    let salt = salt.strip_prefix(MAGIC).unwrap_or(salt);
    let salt = salt.split('$').next().unwrap_or_default();
    let salt = &salt.as_bytes()[..salt.len().min(8)];

    let alternate = Md5::new().chain_update(password).chain_update(salt).chain_update(password);
    let alternate = alternate.finalize();
    let mut context = Md5::new().chain_update(password).chain_update(MAGIC).chain_update(salt);
    for chunk in password.chunks(16) {
        context.update(&alternate[..chunk.len()]);
    }
    // One byte per bit of the length: a NUL for a 1 bit, the password's first byte for a 0.
    let mut bits = password.len();
    while bits > 0 {
        context.update(if bits & 1 == 1 { &[0u8][..] } else { &password[..1] });
        bits >>= 1;
    }
    let mut result = context.finalize();
    // 1000 rounds, "to slow down a brute-force attack".
    for round in 0..1000 {
        let mut context = Md5::new();
        if round % 2 == 1 {
            context.update(password);
        } else {
            context.update(result);
        }
        if round % 3 != 0 {
            context.update(salt);
        }
        if round % 7 != 0 {
            context.update(password);
        }
        if round % 2 == 1 {
            context.update(result);
        } else {
            context.update(password);
        }
        result = context.finalize();
    }

    let mut out = String::with_capacity(34);
    out.push_str(MAGIC);
    // Valid hashes have at most 8 bytes of salt, so this cut never splits a character;
    // were it to, the character would be replaced rather than panic.
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut push = |value: u32, chars: usize| {
        let mut value = value;
        for _ in 0..chars {
            out.push(char::from(ITOA64[(value & 0x3f) as usize]));
            value >>= 6;
        }
    };
    let r = |i: usize| u32::from(result[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push(r(a) << 16 | r(b) << 8 | r(c), 4);
    }
    push(r(11), 2);
    out
}

/// Whether `password` gives `hash` (compared in constant time).
pub(crate) fn verify(hash: &str, password: &[u8]) -> bool {
    let salt = hash.strip_prefix(MAGIC).and_then(|rest| rest.split_once('$'));
    let Some((salt, _)) = salt else { return false };
    // A salt longer than 8 would be cut: the result could never match the stored text.
    salt.len() <= 8 && constant_time_eq(crypt(password, salt).as_bytes(), hash.as_bytes())
}

/// A new MD5-crypt hash with an 8-character random salt (for tests: new hashes are not
/// made in this weak scheme).
#[cfg(test)]
fn hash(password: &[u8]) -> String {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random number generator works");
    let salt: String = bytes.iter().map(|b| char::from(ITOA64[usize::from(b & 0x3f)])).collect();
    crypt(password, &salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // `doveadm pw -s MD5-CRYPT -p secret` (Dovecot 2.3.19).
        assert!(verify("$1$CQPZV/8k$/fYv6UvV6O4lsi1I66I4U1", b"secret"));
        assert!(verify("$1$ulwdhsmU$msm7kbkzETOao2uheRzSO/", b"secret"));
        assert!(!verify("$1$CQPZV/8k$/fYv6UvV6O4lsi1I66I4U1", b"secreT"));
        // glibc's `crypt("password", "$1$saltstring")` (and `openssl passwd -1`): the salt is
        // cut at 8 characters.
        assert_eq!(crypt(b"password", "$1$saltstring"), "$1$saltstri$qQY4WxjABChYG1ccLpfkz/");
        // An empty password (no length bits to mix; `openssl passwd -1 -salt salt ''`) and a
        // long one (several 16-byte chunks).
        assert_eq!(crypt(b"", "$1$salt"), "$1$salt$UsdFqFVB.FsuinRDK5eE..");
        let long = hash(&[b'x'; 100]);
        assert!(verify(&long, &[b'x'; 100]) && !verify(&long, &[b'x'; 99]));
        assert!(is_valid(&long) && is_valid("$1$CQPZV/8k$/fYv6UvV6O4lsi1I66I4U1"));
        assert!(!is_valid("$1$CQPZV/8k$short") && !is_valid("$5$abc$def"));
        assert!(!verify("$1$nodollar", b"secret"));
    }
}
