//! The two PBKDF2-HMAC-SHA1 (RFC 8018 §5.2) schemes of Dovecot, on `ring`:
//! - `PBKDF2` (`src/auth/password-scheme-pbkdf2.c`): `$1$salt$rounds$hex(key)`, the salt used
//!   as its ASCII text, a 20-byte key;
//! - `SCRAM-SHA-1` (`src/auth/password-scheme-scram.c`): `iterations,base64(salt),
//!   base64(StoredKey),base64(ServerKey)`, the keys of RFC 5802 §3. Only a password is checked
//!   against it (the SASL mechanism offered is SCRAM-SHA-256).

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pop3_proto::sasl::constant_time_eq;
use ring::{digest, hmac, pbkdf2};

use super::digest::Encoding;

/// SHA-1's output length: PBKDF2's key and SCRAM-SHA-1's keys.
const SHA1_LEN: usize = 20;

/// Rounds of a new `PBKDF2` hash: Dovecot's default (`PBKDF2_ROUNDS_DEFAULT`).
pub(crate) const DEFAULT_ROUNDS: u32 = 5000;

/// A Dovecot `PBKDF2` hash.
#[derive(Clone)]
pub(crate) struct Pbkdf2 {
    salt: String,
    rounds: NonZeroU32,
    key: [u8; SHA1_LEN],
}

impl Pbkdf2 {
    /// Parses `$1$salt$rounds$hexkey`.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        let malformed = || "malformed PBKDF2 value (not $1$salt$rounds$hexkey)".to_owned();
        let fields: Vec<&str> = value.split('$').collect();
        let ["", "1", salt, rounds, key] = fields[..] else { return Err(malformed()) };
        let rounds = rounds.parse().map_err(|_| malformed())?;
        let key = super::digest::decode_hex(key).and_then(|k| k.try_into().ok());
        let key = key.ok_or_else(malformed)?;
        Ok(Self { salt: salt.to_owned(), rounds, key })
    }

    /// Whether `password` derives the stored key (`ring` compares in constant time).
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        let algorithm = pbkdf2::PBKDF2_HMAC_SHA1;
        pbkdf2::verify(algorithm, self.rounds, self.salt.as_bytes(), password, &self.key).is_ok()
    }

    /// A new hash with a 16-character random salt, as `doveadm pw -s PBKDF2` makes.
    pub(crate) fn hash(password: &[u8], rounds: NonZeroU32) -> String {
        const ALPHABET: &[u8; 64] =
            b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .expect("the system random number generator works");
        let salt: String =
            bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 0x3f)])).collect();
        let mut key = [0u8; SHA1_LEN];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA1, rounds, salt.as_bytes(), password, &mut key);
        format!("$1${salt}${rounds}${}", Encoding::Hex.encode(&key))
    }
}

/// A Dovecot `SCRAM-SHA-1` secret.
#[derive(Clone)]
pub(crate) struct ScramSha1 {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    stored_key: [u8; SHA1_LEN],
}

impl ScramSha1 {
    /// Parses `iterations,base64(salt),base64(StoredKey),base64(ServerKey)`.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        let malformed = || "malformed SCRAM-SHA-1 value".to_owned();
        let fields: Vec<&str> = value.split(',').collect();
        let [iterations, salt, stored_key, server_key] = fields[..] else {
            return Err(malformed());
        };
        let iterations = iterations.parse().map_err(|_| malformed())?;
        let salt = BASE64.decode(salt).map_err(|_| malformed())?;
        let stored_key = BASE64.decode(stored_key).ok().and_then(|k| k.try_into().ok());
        let server_key = BASE64.decode(server_key).ok().filter(|k| k.len() == SHA1_LEN);
        match (stored_key, server_key) {
            (Some(stored_key), Some(_)) => Ok(Self { iterations, salt, stored_key }),
            _ => Err(malformed()),
        }
    }

    /// Whether `password` gives the stored StoredKey: RFC 5802 §3, `SaltedPassword :=
    /// Hi(password, salt, i)`, `ClientKey := HMAC(SaltedPassword, "Client Key")`,
    /// `StoredKey := H(ClientKey)`, compared in constant time.
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        let mut salted = [0u8; SHA1_LEN];
        let algorithm = pbkdf2::PBKDF2_HMAC_SHA1;
        pbkdf2::derive(algorithm, self.iterations, &self.salt, password, &mut salted);
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, client_key.as_ref());
        constant_time_eq(stored_key.as_ref(), &self.stored_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `doveadm pw -s PBKDF2 -p secret` and `-s SCRAM-SHA-1` (Dovecot 2.3.19).
    #[test]
    fn doveadm_known_answers() {
        let pbkdf2 = "$1$rSfMOs8fNjahmz7Y$5000$776940501e12ea4df97c11778b8980839f03425a";
        let pbkdf2 = Pbkdf2::parse(pbkdf2).unwrap();
        assert!(pbkdf2.verify(b"secret") && !pbkdf2.verify(b"secreT"));
        let fast = "$1$/JSUVwHJKvStxkR5$1000$a4302eeb91ec0a9dd4dfa7c7c13d2721fdf6ff9a";
        assert!(Pbkdf2::parse(fast).unwrap().verify(b"secret"), "-r 1000");
        let scram = "4096,6bON658lLHC0/gEIxZXHrQ==,KYxXvdSPH7dhexVAJZ+kbG33Hf0=,t81oQg3J5UOdi1nd7KGt154EaQI=";
        let scram = ScramSha1::parse(scram).unwrap();
        assert!(scram.verify(b"secret") && !scram.verify(b"secreT"));
    }

    #[test]
    fn new_hashes_verify_and_malformed_ones_are_errors() {
        let hash = Pbkdf2::hash(b"pw", NonZeroU32::new(10).unwrap());
        assert!(Pbkdf2::parse(&hash).unwrap().verify(b"pw"));
        for bad in ["", "$1$salt$0$00", "$2$s$10$00", "$1$s$10$abc", "$1$s$x$", "$1$s$10$zz"] {
            assert!(Pbkdf2::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "0,AA==,AA==,AA==", "4096,AA==,AA==", "4096,!,AA==,AA=="] {
            assert!(ScramSha1::parse(bad).is_err(), "{bad:?}");
        }
    }
}
