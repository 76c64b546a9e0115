//! Password scheme names (Dovecot's, `doveadm pw -l`), their `.b64`/`.hex` encoding suffixes,
//! which of them are weak, and the decoded form of the digest schemes.

use super::digest::{Algorithm, Encoding, StoredDigest};
use super::pbkdf2::{Pbkdf2, ScramSha1};

/// A password scheme (Dovecot's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `PLAIN`: the password itself.
    Plain,
    /// `SHA256-CRYPT` (`$5$`).
    Sha256Crypt,
    /// `SHA512-CRYPT` (`$6$`).
    Sha512Crypt,
    /// `BLF-CRYPT` (bcrypt, `$2y$`).
    BlfCrypt,
    /// `ARGON2I`.
    Argon2i,
    /// `ARGON2ID` (what `pop3d user add` writes).
    Argon2id,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `CRAM-MD5`: Dovecot's HMAC-MD5 context.
    CramMd5,
    /// `MD5-CRYPT` (`$1$`; Dovecot's `MD5` too).
    Md5Crypt,
    /// `PBKDF2`: Dovecot's `$1$salt$rounds$hex`, PBKDF2-HMAC-SHA1.
    Pbkdf2,
    /// `SCRAM-SHA-1`: checked against a password only.
    ScramSha1,
    /// `SHA` (`SHA1`): SHA-1 of the password, base64.
    Sha1,
    /// `SHA256`: SHA-256 of the password, base64.
    Sha256,
    /// `SHA512`: SHA-512 of the password, base64.
    Sha512,
    /// `SSHA`: salted SHA-1, base64.
    Ssha,
    /// `SSHA256`: salted SHA-256, base64.
    Ssha256,
    /// `SSHA512`: salted SHA-512, base64.
    Ssha512,
    /// `SMD5`: salted MD5, base64.
    Smd5,
    /// `PLAIN-MD5`: MD5 of the password, hex.
    PlainMd5,
    /// `LDAP-MD5`: MD5 of the password, base64.
    LdapMd5,
}

impl Scheme {
    /// Dovecot's name for the scheme.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Plain => "PLAIN",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Argon2i => "ARGON2I",
            Scheme::Argon2id => "ARGON2ID",
            Scheme::ScramSha256 => "SCRAM-SHA-256",
            Scheme::CramMd5 => "CRAM-MD5",
            Scheme::Md5Crypt => "MD5-CRYPT",
            Scheme::Pbkdf2 => "PBKDF2",
            Scheme::ScramSha1 => "SCRAM-SHA-1",
            Scheme::Sha1 => "SHA",
            Scheme::Sha256 => "SHA256",
            Scheme::Sha512 => "SHA512",
            Scheme::Ssha => "SSHA",
            Scheme::Ssha256 => "SSHA256",
            Scheme::Ssha512 => "SSHA512",
            Scheme::Smd5 => "SMD5",
            Scheme::PlainMd5 => "PLAIN-MD5",
            Scheme::LdapMd5 => "LDAP-MD5",
        }
    }

    /// The scheme called `name` (any case), with Dovecot's aliases.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "PLAIN" | "CLEAR" | "CLEARTEXT" => Scheme::Plain,
            "SHA256-CRYPT" => Scheme::Sha256Crypt,
            "SHA512-CRYPT" => Scheme::Sha512Crypt,
            "BLF-CRYPT" => Scheme::BlfCrypt,
            "ARGON2I" => Scheme::Argon2i,
            "ARGON2ID" => Scheme::Argon2id,
            "SCRAM-SHA-256" => Scheme::ScramSha256,
            "CRAM-MD5" | "HMAC-MD5" => Scheme::CramMd5,
            // Dovecot's `MD5` is MD5-crypt, not a plain digest (that is PLAIN-MD5).
            "MD5-CRYPT" | "MD5" => Scheme::Md5Crypt,
            "PBKDF2" => Scheme::Pbkdf2,
            "SCRAM-SHA-1" => Scheme::ScramSha1,
            "SHA" | "SHA1" => Scheme::Sha1,
            "SHA256" => Scheme::Sha256,
            "SHA512" => Scheme::Sha512,
            "SSHA" => Scheme::Ssha,
            "SSHA256" => Scheme::Ssha256,
            "SSHA512" => Scheme::Ssha512,
            "SMD5" => Scheme::Smd5,
            "PLAIN-MD5" => Scheme::PlainMd5,
            "LDAP-MD5" => Scheme::LdapMd5,
            _ => return None,
        })
    }

    /// The scheme of a crypt(3)-style hash, from its `$id$` prefix.
    pub(crate) fn from_crypt(hash: &str) -> Option<Self> {
        Some(match hash {
            h if h.starts_with("$1$") => Scheme::Md5Crypt,
            h if h.starts_with("$5$") => Scheme::Sha256Crypt,
            h if h.starts_with("$6$") => Scheme::Sha512Crypt,
            h if h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$") => {
                Scheme::BlfCrypt
            }
            h if h.starts_with("$argon2id$") => Scheme::Argon2id,
            h if h.starts_with("$argon2i$") => Scheme::Argon2i,
            _ => return None,
        })
    }

    /// A scheme name with an optional encoding suffix (`SHA256.hex`, `PLAIN-MD5.b64`): the
    /// scheme and the encoding the suffix names. A suffix is allowed on the digest schemes
    /// only (Dovecot's `password_scheme_lookup()`; on other schemes it has no use).
    pub(crate) fn with_encoding(name: &str) -> Option<(Self, Option<Encoding>)> {
        let (base, suffix) = match name.split_once('.') {
            Some((base, suffix)) => (base, Some(suffix)),
            None => (name, None),
        };
        let scheme = Self::from_name(base)?;
        match suffix {
            None => Some((scheme, None)),
            Some(suffix) => {
                let encoding = Encoding::from_suffix(suffix)?;
                scheme.digest().is_some().then_some((scheme, Some(encoding)))
            }
        }
    }

    /// For a digest scheme: its hash, whether it is salted and its default encoding
    /// (Dovecot's `password-scheme.c` scheme table).
    pub(crate) fn digest(self) -> Option<(Algorithm, bool, Encoding)> {
        use Encoding::{Base64, Hex};
        Some(match self {
            Scheme::Sha1 => (Algorithm::Sha1, false, Base64),
            Scheme::Sha256 => (Algorithm::Sha256, false, Base64),
            Scheme::Sha512 => (Algorithm::Sha512, false, Base64),
            Scheme::Ssha => (Algorithm::Sha1, true, Base64),
            Scheme::Ssha256 => (Algorithm::Sha256, true, Base64),
            Scheme::Ssha512 => (Algorithm::Sha512, true, Base64),
            Scheme::Smd5 => (Algorithm::Md5, true, Base64),
            Scheme::PlainMd5 => (Algorithm::Md5, false, Hex),
            Scheme::LdapMd5 => (Algorithm::Md5, false, Base64),
            _ => return None,
        })
    }

    /// Whether checking a password against this scheme costs at most one pass of a fast
    /// digest (a few microseconds): the password itself, `CRAM-MD5`'s context and the plain
    /// or salted MD5/SHA digests. Such a check costs less than handing it to a
    /// password-check thread and waking the connection when it is done, so the server runs
    /// it where the login is ([`Authenticator::authenticate_quick`]). The crypt schemes,
    /// PBKDF2, bcrypt and Argon2 are slow by design and never qualify.
    ///
    /// [`Authenticator::authenticate_quick`]: crate::Authenticator::authenticate_quick
    pub fn is_fast(self) -> bool {
        matches!(self, Scheme::Plain | Scheme::CramMd5) || self.digest().is_some()
    }

    /// Whether a hash in this scheme is weak enough that its users should be moved to a
    /// slow scheme: the password in clear (`PLAIN`, and `CRAM-MD5`'s context, which is as
    /// good as the password for CRAM-MD5 and costs one MD5 per guess), MD5 or SHA-1 digests,
    /// salted or not, MD5-crypt (1000 MD5 rounds), and the unsalted SHA-2 digests (one
    /// precomputed table serves every user). The salted SHA-2 digests (`SSHA256`,
    /// `SSHA512`) are fast but not warned about: they are common in LDAP directories and
    /// still need a per-user brute force; the documentation recommends `ARGON2ID`.
    pub fn is_weak(self) -> bool {
        matches!(
            self,
            Scheme::Plain
                | Scheme::CramMd5
                | Scheme::Md5Crypt
                | Scheme::Sha1
                | Scheme::Sha256
                | Scheme::Sha512
                | Scheme::Ssha
                | Scheme::Smd5
                | Scheme::PlainMd5
                | Scheme::LdapMd5
        )
    }
}

/// True the first time in this process that `user` logs in with a weak scheme: the warning
/// is logged once per user, not at every login (the set grows with the users warned about).
pub(crate) fn first_weak_login(user: &str) -> bool {
    static WARNED: std::sync::Mutex<Option<std::collections::HashSet<String>>> =
        std::sync::Mutex::new(None);
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    warned.get_or_insert_with(Default::default).insert(user.to_owned())
}

/// The parsed form of a scheme that needs one before checking a password.
#[derive(Clone)]
pub(crate) enum Decoded {
    Digest(StoredDigest),
    Pbkdf2(Pbkdf2),
    ScramSha1(ScramSha1),
}

impl Decoded {
    /// Parses `value` for `scheme` (`None` for the schemes checked on their text as stored).
    pub(crate) fn parse(
        scheme: Scheme,
        encoding: Option<Encoding>,
        value: &str,
    ) -> Result<Option<Self>, String> {
        let name = scheme.name();
        if let Some((algorithm, salted, default)) = scheme.digest() {
            let digest = StoredDigest::parse(algorithm, salted, default, encoding, value);
            return digest.map(|d| Some(Decoded::Digest(d))).map_err(|e| format!("{name}: {e}"));
        }
        Ok(match scheme {
            Scheme::Pbkdf2 => Some(Decoded::Pbkdf2(Pbkdf2::parse(value)?)),
            Scheme::ScramSha1 => Some(Decoded::ScramSha1(ScramSha1::parse(value)?)),
            Scheme::Md5Crypt if !super::md5crypt::is_valid(value) => {
                return Err("malformed MD5-CRYPT value (not $1$salt$hash)".into())
            }
            _ => None,
        })
    }

    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        match self {
            Decoded::Digest(digest) => digest.verify(password),
            Decoded::Pbkdf2(pbkdf2) => pbkdf2.verify(password),
            Decoded::ScramSha1(scram) => scram.verify(password),
        }
    }
}
