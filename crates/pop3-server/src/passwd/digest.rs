//! Dovecot's plain and salted digest schemes: `SHA`, `SHA256`, `SHA512`, `PLAIN-MD5`,
//! `LDAP-MD5` (a digest of the password) and `SSHA`, `SSHA256`, `SSHA512`, `SMD5` (a digest of
//! the password followed by a salt, stored as `digest || salt`), in base64 or hex.
//!
//! Dovecot's rules (`src/auth/password-scheme.c`, `password_decode()`, and the "Password
//! Schemes" page of its documentation):
//! - a `.b64`/`.base64` or `.hex` suffix on the scheme name (`{SHA256.hex}`) fixes the
//!   encoding;
//! - without one, a fixed-length digest is hex when the text is exactly twice the digest
//!   length and base64 otherwise; a salted one is base64;
//! - a salted value must be longer than its digest (`ssha_verify()`: "SSHA password is too
//!   short").

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use pop3_proto::sasl::constant_time_eq;
use ring::digest;

/// Base64 as Dovecot decodes it: padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The text encoding of a stored digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// RFC 4648 §4 base64.
    Base64,
    /// Lower- or upper-case hexadecimal.
    Hex,
}

impl Encoding {
    /// The encoding a scheme-name suffix names (`b64`, `base64`, `hex`; any case).
    pub(crate) fn from_suffix(suffix: &str) -> Option<Self> {
        match suffix.to_ascii_lowercase().as_str() {
            "b64" | "base64" => Some(Encoding::Base64),
            "hex" => Some(Encoding::Hex),
            _ => None,
        }
    }

    /// Encodes `raw` in this encoding (hex in lower case, as `doveadm pw` prints it).
    pub(crate) fn encode(self, raw: &[u8]) -> String {
        match self {
            Encoding::Base64 => BASE64.encode(raw),
            Encoding::Hex => raw.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Base64 => BASE64.decode(text).ok(),
            Encoding::Hex => decode_hex(text),
        }
    }
}

/// Hexadecimal text (either case) as bytes.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

/// The hash function of a digest scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// MD5 (RFC 1321).
    Md5,
    /// SHA-1 (FIPS 180-4).
    Sha1,
    /// SHA-256 (FIPS 180-4).
    Sha256,
    /// SHA-512 (FIPS 180-4).
    Sha512,
}

impl Algorithm {
    /// The digest length in bytes.
    fn len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// `H(password || salt)`.
    fn hash(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        let ring_digest = |algorithm: &'static digest::Algorithm| {
            let mut context = digest::Context::new(algorithm);
            context.update(password);
            context.update(salt);
            context.finish().as_ref().to_vec()
        };
        match self {
            Algorithm::Md5 => {
                Md5::new().chain_update(password).chain_update(salt).finalize().to_vec()
            }
            Algorithm::Sha1 => ring_digest(&digest::SHA1_FOR_LEGACY_USE_ONLY),
            Algorithm::Sha256 => ring_digest(&digest::SHA256),
            Algorithm::Sha512 => ring_digest(&digest::SHA512),
        }
    }
}

/// A decoded digest: `H(password)`, or `H(password || salt) || salt` when salted.
#[derive(Clone)]
pub(crate) struct StoredDigest {
    algorithm: Algorithm,
    salted: bool,
    raw: Vec<u8>,
}

impl StoredDigest {
    /// Decodes `text` with the scheme's default encoding (`default`) or the one its name's
    /// suffix gives (`explicit`), following Dovecot's `password_decode()`.
    pub(crate) fn parse(
        algorithm: Algorithm,
        salted: bool,
        default: Encoding,
        explicit: Option<Encoding>,
        text: &str,
    ) -> Result<Self, String> {
        let encoding = match explicit {
            Some(encoding) => encoding,
            None if salted => default,
            // Unsalted, no suffix: hex exactly when the length says so.
            None if text.len() == algorithm.len() * 2 => Encoding::Hex,
            None => Encoding::Base64,
        };
        let raw = encoding
            .decode(text.trim())
            .ok_or_else(|| format!("the hash is not valid {encoding:?}"))?;
        let fits = if salted { raw.len() > algorithm.len() } else { raw.len() == algorithm.len() };
        if !fits {
            return Err(format!(
                "the hash is {} bytes long, not {}{} ({algorithm:?})",
                raw.len(),
                if salted { "more than " } else { "" },
                algorithm.len()
            ));
        }
        Ok(Self { algorithm, salted, raw })
    }

    /// Whether `password` hashes to the stored digest (compared in constant time).
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        let (digest, salt) = self.raw.split_at(self.algorithm.len());
        let salt = if self.salted { salt } else { &[][..] };
        constant_time_eq(&self.algorithm.hash(password, salt), digest)
    }
}

/// A new salted digest of `password` in the stored form (`H(password || salt) || salt`,
/// encoded), with an 8-byte random salt (`doveadm pw` uses shorter ones; Dovecot verifies
/// any length).
pub(crate) fn hash_salted(algorithm: Algorithm, encoding: Encoding, password: &[u8]) -> String {
    let mut salt = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .expect("the system random number generator works");
    let mut raw = algorithm.hash(password, &salt);
    raw.extend_from_slice(&salt);
    encoding.encode(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(algorithm: Algorithm, salted: bool, default: Encoding, text: &str) -> bool {
        let stored = StoredDigest::parse(algorithm, salted, default, None, text).unwrap();
        assert!(!stored.verify(b"secreT"), "{text}: a wrong password");
        stored.verify(b"secret")
    }

    /// `doveadm pw -s SCHEME -p secret` (Dovecot 2.3.19).
    #[test]
    fn doveadm_known_answers() {
        use Algorithm::*;
        use Encoding::*;
        assert!(check(Sha1, false, Base64, "5en6G6MezRroT3XKqkdPOmY/BfQ="));
        assert!(check(Sha256, false, Base64, "K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols="));
        assert!(check(
            Sha512,
            false,
            Base64,
            "vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg=="
        ));
        assert!(check(Md5, false, Hex, "5ebe2294ecd0e0f08eab7690d2a6ee69"), "PLAIN-MD5");
        assert!(check(Md5, false, Base64, "Xr4ilOzQ4PCOq3aQ0qbuaQ=="), "LDAP-MD5");
        assert!(check(Sha1, true, Base64, "RkVvhnZbKHjKK03zn2BkYfLZFM9P2Q7Q"), "SSHA");
        assert!(check(Sha256, true, Base64, "W8WaU/UGVqgUBUKVredcz7w8M8neWmkFwo4uvQ9zzMQc3O62"));
        assert!(check(
            Sha512,
            true,
            Base64,
            "QFz/YIbjS40/bGJtH6sTVxGtMPk6ggMb9i0e0o6kni2q88tOgtmowUhh9ICd3ytNE+fG5Ar0NTHg396B37gPYiQtGII="
        ));
        assert!(check(Md5, true, Base64, "qpgzOQUQDbSmERnTr1o+Fnp47WI="), "SMD5");
        // `{SSHA.HEX}` and `{SHA256.HEX}`.
        let ssha_hex = "195704ba2ea94fe942179ed0e5f75d731d8484f2d638afb2";
        let stored = StoredDigest::parse(Sha1, true, Base64, Some(Hex), ssha_hex).unwrap();
        assert!(stored.verify(b"secret"));
        let sha256_hex = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
        assert!(check(Sha256, false, Base64, sha256_hex), "hex guessed from the length");
    }

    #[test]
    fn malformed_values_are_errors() {
        use Algorithm::*;
        use Encoding::*;
        assert!(StoredDigest::parse(Sha1, false, Base64, None, "not base64!").is_err());
        assert!(StoredDigest::parse(Sha1, false, Base64, None, "c2hvcnQ=").is_err(), "short");
        // A salted value no longer than its digest has no salt.
        assert!(
            StoredDigest::parse(Sha1, true, Base64, None, "5en6G6MezRroT3XKqkdPOmY/BfQ=").is_err()
        );
        assert!(StoredDigest::parse(Md5, false, Hex, Some(Hex), "5ebe2294ecd0e0f08eab7690d2a6ee6")
            .is_err());
        assert!(StoredDigest::parse(Md5, false, Hex, Some(Hex), "zz").is_err());
        assert_eq!(Encoding::from_suffix("B64"), Some(Base64));
        assert_eq!(Encoding::from_suffix("base64"), Some(Base64));
        assert_eq!(Encoding::from_suffix("HEX"), Some(Hex));
        assert_eq!(Encoding::from_suffix("b32"), None);
    }

    #[test]
    fn new_salted_hashes_verify() {
        for encoding in [Encoding::Base64, Encoding::Hex] {
            let text = hash_salted(Algorithm::Sha512, encoding, b"pw");
            let stored = StoredDigest::parse(
                Algorithm::Sha512,
                true,
                Encoding::Base64,
                Some(encoding),
                &text,
            )
            .unwrap();
            assert!(stored.verify(b"pw") && !stored.verify(b"pW"));
        }
    }
}
