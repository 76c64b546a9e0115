//! A users file in Dovecot's passwd-file format:
//! `user:{SCHEME}hash:uid:gid:gecos:home:shell:extra`.
//!
//! Fields after the password are optional; `home` is the maildrop template's `%h`. Empty lines
//! and lines starting with `#` are ignored.
//!
//! | scheme | verifies passwords | APOP, CRAM-MD5 | SCRAM-SHA-256 |
//! |---|---|---|---|
//! | `PLAIN` (`CLEAR`, `CLEARTEXT`) | yes | yes | yes (keys derived per login) |
//! | `SHA256-CRYPT`, `SHA512-CRYPT` (`$5$`, `$6$`) | yes | no | no |
//! | `BLF-CRYPT` (`$2a$`, `$2b$`, `$2y$`) | yes | no | no |
//! | `ARGON2I`, `ARGON2ID` (`$argon2i$`, `$argon2id$`) | yes | no | no |
//! | `SCRAM-SHA-256` (`iter,salt,StoredKey,ServerKey`) | yes | no | yes |
//! | `CRAM-MD5` (HMAC-MD5 context) | yes | CRAM-MD5 only | no |
//! | `MD5-CRYPT` (`$1$`), `PBKDF2`, `SCRAM-SHA-1` | yes | no | no |
//! | `SHA`, `SHA256`, `SHA512`, `PLAIN-MD5`, `LDAP-MD5` (and `.b64`/`.hex`) | yes | no | no |
//! | `SSHA`, `SSHA256`, `SSHA512`, `SMD5` (and `.b64`/`.hex`) | yes | no | no |
//!
//! A hash without `{SCHEME}` is recognised by its `$id$` prefix (Dovecot's `CRYPT`). Other
//! schemes (`DES-CRYPT`, `OTP`, ...) are reported as warnings and their users cannot log in.
//! A login with a weak scheme (see [`Scheme::is_weak`]) logs a warning once per user.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use argon2::password_hash::PasswordHash;
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pop3_proto::sasl::{apop_digest, constant_time_eq, cram_md5_digest, ScramKeys};
use pop3_proto::server::AuthRequest;
use sha2::{Digest, Sha256};

use crate::crammd5::CramContext;
use crate::{valid_username, AuthError, Authenticator, UserInfo};

mod digest;
mod generate;
mod md5crypt;
mod pbkdf2;
mod scheme;

pub use generate::{hash_password, hash_password_as, GENERATED_SCHEMES};
use scheme::Decoded;
pub use scheme::Scheme;

/// PBKDF2 iterations for SCRAM keys derived from `PLAIN` passwords (RFC 7677 §4 minimum).
const SCRAM_ITERATIONS: u32 = 4096;

/// A stored password. `Debug` never shows it.
#[derive(Clone)]
struct Password {
    scheme: Scheme,
    value: String,
    scram: Option<ScramKeys>,
    cram: Option<CramContext>,
    decoded: Option<Decoded>,
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password({}, <redacted>)", self.scheme.name())
    }
}

impl Password {
    fn parse(field: &str) -> Result<Self, String> {
        let (scheme, encoding, value) =
            match field.strip_prefix('{').and_then(|r| r.split_once('}')) {
                Some((name, value)) => {
                    let (scheme, encoding) = match name.to_ascii_uppercase().as_str() {
                        "CRYPT" => Scheme::from_crypt(value).map(|s| (s, None)),
                        _ => Scheme::with_encoding(name),
                    }
                    .ok_or_else(|| format!("unsupported password scheme {{{name}}}"))?;
                    (scheme, encoding, value)
                }
                None => (
                    Scheme::from_crypt(field)
                        .ok_or("password without a {SCHEME} prefix or $id$ hash")?,
                    None,
                    field,
                ),
            };
        let decoded = Decoded::parse(scheme, encoding, value)?;
        let scram = match scheme {
            Scheme::ScramSha256 => Some(parse_scram(value).ok_or("malformed SCRAM-SHA-256 value")?),
            _ => None,
        };
        let cram = match scheme {
            Scheme::CramMd5 => Some(CramContext::parse(value).ok_or("malformed CRAM-MD5 value")?),
            _ => None,
        };
        Ok(Self { scheme, value: value.to_owned(), scram, cram, decoded })
    }

    fn verify(&self, password: &[u8]) -> bool {
        let text = std::str::from_utf8(password);
        match self.scheme {
            Scheme::Plain => constant_time_eq(self.value.as_bytes(), password),
            Scheme::Sha256Crypt => {
                text.is_ok_and(|p| sha_crypt::sha256_check(p, &self.value).is_ok())
            }
            Scheme::Sha512Crypt => {
                text.is_ok_and(|p| sha_crypt::sha512_check(p, &self.value).is_ok())
            }
            Scheme::BlfCrypt => bcrypt::verify(password, &self.value).unwrap_or(false),
            Scheme::Argon2i | Scheme::Argon2id => argon2_verify(&self.value, password),
            Scheme::ScramSha256 => self.scram.as_ref().is_some_and(|keys| {
                let derived = ScramKeys::from_password(password, &keys.salt, keys.iterations);
                constant_time_eq(&derived.stored_key, &keys.stored_key)
            }),
            Scheme::CramMd5 => self
                .cram
                .as_ref()
                .is_some_and(|stored| stored.matches(&CramContext::from_password(password))),
            Scheme::Md5Crypt => md5crypt::verify(&self.value, password),
            Scheme::Pbkdf2
            | Scheme::ScramSha1
            | Scheme::Sha1
            | Scheme::Sha256
            | Scheme::Sha512
            | Scheme::Ssha
            | Scheme::Ssha256
            | Scheme::Ssha512
            | Scheme::Smd5
            | Scheme::PlainMd5
            | Scheme::LdapMd5 => {
                self.decoded.as_ref().is_some_and(|decoded| decoded.verify(password))
            }
        }
    }

    /// The CRAM-MD5 digest of `challenge`, if this password can give it.
    fn cram_md5(&self, challenge: &[u8]) -> Option<String> {
        match (&self.cram, self.plaintext()) {
            (Some(context), _) => Some(context.hmac_hex(challenge)),
            (None, Some(plain)) => Some(cram_md5_digest(plain, challenge)),
            (None, None) => None,
        }
    }

    fn plaintext(&self) -> Option<&[u8]> {
        (self.scheme == Scheme::Plain).then_some(self.value.as_bytes())
    }
}

thread_local! {
    /// This thread's Argon2 memory, kept between checks: a check allocates nothing once the
    /// largest `m` in the users file has been seen, and the memory in use is bounded by the
    /// number of threads that check passwords (the server's bounded pool), not by the number
    /// of logins in flight. Without it each check allocates (19 MiB by default) and the
    /// allocator keeps what was freed in per-thread arenas.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Verifies `password` against an Argon2 PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`)
/// in this thread's reused memory, comparing in constant time.
fn argon2_verify(phc: &str, password: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else { return false };
    let version = match hash.version.map(argon2::Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    ARGON2_MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
            .is_ok()
            && constant_time_eq(&out, expected.as_bytes())
    })
}

/// Dovecot's SCRAM-SHA-256 value: `iterations,base64(salt),base64(StoredKey),base64(ServerKey)`.
fn parse_scram(value: &str) -> Option<ScramKeys> {
    let mut parts = value.split(',');
    let iterations = parts.next()?.parse().ok().filter(|&i| i > 0)?;
    let salt = BASE64.decode(parts.next()?).ok()?;
    let stored_key = BASE64.decode(parts.next()?).ok()?.try_into().ok()?;
    let server_key = BASE64.decode(parts.next()?).ok()?.try_into().ok()?;
    parts.next().is_none().then_some(ScramKeys { salt, iterations, stored_key, server_key })
}

#[derive(Debug, Clone)]
struct Entry {
    password: Password,
    home: Option<PathBuf>,
}

/// A users file loaded in memory. Reload it by loading again (`pop3d` does on SIGHUP).
#[derive(Debug, Clone)]
pub struct PasswdFile {
    path: Option<PathBuf>,
    users: HashMap<String, Entry>,
    order: Vec<String>,
    warnings: Vec<String>,
    /// Keys the SCRAM salts of `PLAIN` users and the decoys of unknown ones: random per
    /// load unless set with [`with_secret`](Self::with_secret), which makes both the same
    /// across reloads and restarts.
    secret: [u8; 32],
    /// Whether some user has a `PLAIN` password (their SCRAM keys cost a PBKDF2 derivation per
    /// login, so an unknown user's decoy costs one too).
    any_plain: bool,
    /// Whether the file lists users and every one has a fast scheme ([`Scheme::is_fast`]):
    /// then every check costs a few microseconds, an unknown user's decoy (a listed user's
    /// password) too, and logins are checked without a hop to a thread.
    all_fast: bool,
}

/// A users file that cannot be used.
#[derive(Debug)]
pub enum PasswdError {
    /// The file could not be read.
    Io(PathBuf, std::io::Error),
    /// A line is malformed.
    Syntax {
        /// The file, if loaded from one.
        path: Option<PathBuf>,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            PasswdError::Syntax { path, line, reason } => {
                let name =
                    path.as_deref().map_or_else(|| "users".into(), |p| p.display().to_string());
                write!(f, "{name}:{line}: {reason}")
            }
        }
    }
}

impl std::error::Error for PasswdError {}

impl PasswdFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PasswdError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| PasswdError::Io(path.to_owned(), e))?;
        let mut file = Self::parse(&text).map_err(|e| match e {
            PasswdError::Syntax { line, reason, .. } => {
                PasswdError::Syntax { path: Some(path.to_owned()), line, reason }
            }
            other => other,
        })?;
        file.path = Some(path.to_owned());
        Ok(file)
    }

    /// Parses a users file's text. Malformed lines (no `:`, an invalid user name, a duplicate)
    /// are errors; an unsupported scheme is a warning (see [`warnings`](Self::warnings)) and
    /// that user cannot log in.
    pub fn parse(text: &str) -> Result<Self, PasswdError> {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .expect("the system random number generator works");
        Self::parse_with_secret(text, secret)
    }

    /// [`parse`](Self::parse) with the server secret given (see
    /// [`with_secret`](Self::with_secret)), drawing no random secret first: for a backend
    /// that builds a one-line file per lookup (`SqlUsers`).
    pub fn parse_with_secret(text: &str, secret: [u8; 32]) -> Result<Self, PasswdError> {
        let mut file = Self {
            path: None,
            users: HashMap::new(),
            order: Vec::new(),
            warnings: Vec::new(),
            secret,
            any_plain: false,
            all_fast: false,
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: String| PasswdError::Syntax { path: None, line: n + 1, reason };
            let mut fields = line.split(':');
            let name = fields.next().unwrap_or_default();
            if !valid_username(name) {
                return Err(syntax(format!("invalid user name {name:?}")));
            }
            let Some(pass) = fields.next() else {
                return Err(syntax(format!("user {name}: no password field")));
            };
            let home = fields.nth(3).filter(|h| !h.is_empty()).map(PathBuf::from);
            if file.users.contains_key(name) {
                return Err(syntax(format!("user {name} is listed twice")));
            }
            let password = match Password::parse(pass) {
                Ok(p) => p,
                Err(reason) => {
                    file.warnings.push(format!("line {}: user {name}: {reason}", n + 1));
                    continue;
                }
            };
            file.order.push(name.to_owned());
            file.users.insert(name.to_owned(), Entry { password, home });
        }
        file.any_plain = file.users.values().any(|e| e.password.scheme == Scheme::Plain);
        file.all_fast =
            !file.users.is_empty() && file.users.values().all(|e| e.password.scheme.is_fast());
        Ok(file)
    }

    /// Sets the server secret that keys SCRAM salts (of `PLAIN` users) and the decoy salts of
    /// unknown users, so that both stay the same across reloads and restarts: with a random
    /// secret, an unknown user's salt would change at a restart while a known one's would not.
    #[must_use]
    pub fn with_secret(mut self, secret: [u8; 32]) -> Self {
        self.secret = secret;
        self
    }

    /// The file this was loaded from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Users, in file order, with their password scheme.
    pub fn users(&self) -> impl Iterator<Item = (&str, Scheme)> + '_ {
        self.order.iter().map(|n| (n.as_str(), self.users[n].password.scheme))
    }

    /// Problems that did not stop loading (users who cannot log in).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The user called `name`, if listed (with a usable or unusable password).
    pub fn user(&self, name: &str) -> Option<UserInfo> {
        self.user_info(name)
    }

    fn user_info(&self, name: &str) -> Option<UserInfo> {
        self.users.get(name).map(|e| UserInfo { name: name.to_owned(), home: e.home.clone() })
    }

    /// The password an unknown user's attempt is checked against, so that it costs what a
    /// known user's does (no timing difference to enumerate names by): a listed user's,
    /// picked by a keyed hash of the name (the same scheme mix as real logins), or a fixed
    /// `{ARGON2ID}` hash with the default parameters in an empty file.
    fn decoy(&self, name: &str) -> &Password {
        if self.order.is_empty() {
            static DECOY: std::sync::OnceLock<Password> = std::sync::OnceLock::new();
            return DECOY.get_or_init(|| {
                Password::parse(&hash_password(b"decoy")).expect("a valid ARGON2ID hash")
            });
        }
        let pick = Sha256::new()
            .chain_update(self.secret)
            .chain_update(b"decoy user\0")
            .chain_update(name.as_bytes())
            .finalize();
        let pick = u64::from_le_bytes(pick[..8].try_into().expect("8 bytes"));
        let index = (pick % self.order.len() as u64) as usize;
        &self.users[&self.order[index]].password
    }

    /// A user's password if the user is listed; otherwise the decoy is checked (and the
    /// result thrown away) so that both cost the same.
    fn verify_password(&self, name: &str, password: &[u8]) -> bool {
        match self.users.get(name) {
            Some(entry) => entry.password.verify(password),
            None => {
                let _ = std::hint::black_box(self.decoy(name).verify(password));
                false
            }
        }
    }

    /// SCRAM keys that cannot be told from a real user's: a salt and keys derived from the
    /// secret and the name (the same on every connection and, with
    /// [`with_secret`](Self::with_secret), across restarts), with the iteration count real
    /// users have, and a PBKDF2 derivation when real users cost one.
    fn decoy_scram_keys(&self, name: &str) -> ScramKeys {
        let keys = ScramKeys::decoy(&self.secret, name, SCRAM_ITERATIONS);
        if !self.any_plain {
            return keys;
        }
        let derived = ScramKeys::from_password(&keys.stored_key, &keys.salt, SCRAM_ITERATIONS);
        ScramKeys { stored_key: derived.stored_key, server_key: derived.server_key, ..keys }
    }

    /// After a successful login with a password of a weak scheme (see [`Scheme::is_weak`]):
    /// logs once per user and process that it should be rehashed (the user name and scheme,
    /// never the password or hash). The hash is not rewritten at login. Returns whether it
    /// logged.
    fn warn_if_weak(&self, name: &str) -> bool {
        let Some(scheme) = self.users.get(name).map(|e| e.password.scheme) else { return false };
        if !scheme.is_weak() || !scheme::first_weak_login(name) {
            return false;
        }
        tracing::warn!(
            user = name,
            scheme = scheme.name(),
            "login with a weak password scheme: set a new password (`pop3d user passwd`, \
             ARGON2ID) to rehash it"
        );
        true
    }

    /// Logs why a listed user cannot use `mechanism` (the client is told only that the login
    /// failed, as for a wrong password).
    fn cannot_serve(&self, name: &str, mechanism: &str) {
        if let Some(entry) = self.users.get(name) {
            tracing::warn!(
                user = name,
                scheme = entry.password.scheme.name(),
                mechanism,
                "login refused: the stored password's scheme cannot serve this mechanism"
            );
        }
    }
}

impl Authenticator for PasswdFile {
    fn user(&self, name: &str) -> Result<Option<UserInfo>, AuthError> {
        Ok(self.user_info(name))
    }

    fn authenticate(&self, request: &AuthRequest) -> Result<UserInfo, AuthError> {
        let (name, ok) = match request {
            AuthRequest::Password { username, password, .. } => {
                (username, self.verify_password(username, password.expose()))
            }
            AuthRequest::Apop { username, timestamp, digest } => {
                let plain = self.users.get(username).and_then(|e| e.password.plaintext());
                if plain.is_none() {
                    self.cannot_serve(username, "APOP");
                }
                let ok = plain.is_some_and(|pw| {
                    constant_time_eq(
                        apop_digest(timestamp, pw).as_bytes(),
                        digest.expose().to_ascii_lowercase().as_bytes(),
                    )
                });
                (username, ok)
            }
            AuthRequest::CramMd5 { username, challenge, digest } => {
                let expected = self
                    .users
                    .get(username)
                    .and_then(|e| e.password.cram_md5(challenge.as_bytes()));
                if expected.is_none() {
                    self.cannot_serve(username, "CRAM-MD5");
                }
                let ok = expected.is_some_and(|expected| {
                    constant_time_eq(
                        expected.as_bytes(),
                        digest.expose().to_ascii_lowercase().as_bytes(),
                    )
                });
                (username, ok)
            }
            AuthRequest::Verified { username, .. } => (username, self.users.contains_key(username)),
            AuthRequest::Bearer { username, .. } => (username, false),
        };
        if ok {
            if !matches!(request, AuthRequest::Verified { .. }) {
                self.warn_if_weak(name);
            }
            self.user_info(name).ok_or(AuthError::Rejected)
        } else {
            Err(AuthError::Rejected)
        }
    }

    /// The user's keys; decoy keys (see `PasswdFile::decoy_scram_keys`) for an
    /// unknown user, and for a listed user whose scheme cannot give keys (logged), so that
    /// the exchange looks the same until its final failure.
    /// Every user's scheme is fast (and so is the decoy, a listed user's password): checked
    /// at once, whichever user is named, so known and unknown users still cost the same.
    fn authenticate_quick(&self, request: &AuthRequest) -> Option<Result<UserInfo, AuthError>> {
        self.all_fast.then(|| self.authenticate(request))
    }

    fn scram_keys(&self, username: &str) -> Option<ScramKeys> {
        let Some(entry) = self.users.get(username) else {
            return Some(self.decoy_scram_keys(username));
        };
        if let Some(keys) = &entry.password.scram {
            return Some(keys.clone());
        }
        let Some(plain) = entry.password.plaintext() else {
            self.cannot_serve(username, "SCRAM-SHA-256");
            return Some(self.decoy_scram_keys(username));
        };
        // A stable salt per user (and per secret), unknown to clients in advance.
        let salt = Sha256::new()
            .chain_update(self.secret)
            .chain_update(b"scram salt\0")
            .chain_update(username.as_bytes())
            .finalize();
        Some(ScramKeys::from_password(plain, &salt[..16], SCRAM_ITERATIONS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pop3_proto::Secret;

    fn login(file: &PasswdFile, user: &str, pw: &str) -> bool {
        file.authenticate(&AuthRequest::Password {
            username: user.into(),
            authzid: None,
            password: Secret::new(pw.as_bytes().to_vec()),
            mechanism: None,
        })
        .is_ok()
    }

    #[test]
    fn schemes_verify() {
        let scram = ScramKeys::from_password(b"pw-scram", b"0123456789abcdef", 4096);
        let scram_line = format!(
            "scram:{{SCRAM-SHA-256}}4096,{},{},{}",
            BASE64.encode(&scram.salt),
            BASE64.encode(scram.stored_key),
            BASE64.encode(scram.server_key)
        );
        let argon = hash_password(b"pw-argon");
        let sha512 =
            sha_crypt::sha512_simple("pw-512", &sha_crypt::Sha512Params::new(5000).unwrap())
                .unwrap();
        let sha256 =
            sha_crypt::sha256_simple("pw-256", &sha_crypt::Sha256Params::new(5000).unwrap())
                .unwrap();
        let blf = bcrypt::hash("pw-blf", 4).unwrap();
        let text = format!(
            "# comment\n\nplain:{{PLAIN}}pw-plain:1000:1000::/home/plain::\n\
             argon:{argon}\nsha512:{{SHA512-CRYPT}}{sha512}\nsha256:{sha256}\n\
             blf:{{BLF-CRYPT}}{blf}\n{scram_line}\nodd:{{SSHA}}abc\n"
        );
        let file = PasswdFile::parse(&text).unwrap();
        for (user, pw) in [
            ("plain", "pw-plain"),
            ("argon", "pw-argon"),
            ("sha512", "pw-512"),
            ("sha256", "pw-256"),
            ("blf", "pw-blf"),
            ("scram", "pw-scram"),
        ] {
            assert!(login(&file, user, pw), "{user}");
            assert!(!login(&file, user, "wrong"), "{user} with a wrong password");
        }
        assert!(!login(&file, "nobody", "pw-plain"));
        assert!(!login(&file, "odd", "abc"), "unsupported scheme");
        assert_eq!(file.warnings().len(), 1);
        assert_eq!(file.user_info("plain").unwrap().home, Some(PathBuf::from("/home/plain")));
        assert_eq!(file.scram_keys("scram"), Some(scram));
        assert!(file.scram_keys("plain").is_some());
        // A scheme that cannot give SCRAM keys gets decoy keys, as an unknown user does: the
        // exchange fails at the proof.
        let decoy = file.scram_keys("argon").unwrap();
        assert_eq!(decoy.iterations, SCRAM_ITERATIONS);
        assert_ne!(decoy, ScramKeys::from_password(b"pw-argon", &decoy.salt, SCRAM_ITERATIONS));
        assert!(format!("{file:?}").contains("<redacted>"));
        assert!(!format!("{file:?}").contains("pw-plain"));
    }

    #[test]
    fn dovecot_doveadm_hashes() {
        // `doveadm pw -s SCHEME -p secret` (Dovecot 2.3), one line per scheme.
        let text = "\
cram:{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56
scram:{SCRAM-SHA-256}4096,bT1LBoQQM+I7fO/Mz5oIGA==,h7Rv3dob+BGD2ml4iMR4cohFEQ+t/p/S8SCbp74LK3A=,EQIfnW9i36Y07qAY5WiGt9UtBeAVaZ3aWZy6uzDOyLI=
sha512:{SHA512-CRYPT}$6$GK74ECkarISHQXna$dLVsMWjoRowkRyRyMRVuOvfxx4BwV.ShliImRTx2w3qLCHgtNkjYl57RBc5w1PwXGx0MAsy8FwHaD17xLb0by/
blf:{BLF-CRYPT}$2y$05$KbOxVjAIdi3PDwYrDp3YJOlMgSb0nLULxIfrucA6wqpR/kMDA9Pwe
argon2id:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$6o1SMLAignn9EYh5T7u7/w$f5coaJsDOTZtXZEJkkFxi+oev+KfiS+he/sLu2iipbU
argon2i:{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$DJAvSvIavpLUf7+9f/AlrQ$x8ARMBL0srKRHx9GaNyVgGK3dRd/Yeq9F72YFEkDMl4
";
        let file = PasswdFile::parse(text).unwrap();
        assert!(file.warnings().is_empty(), "{:?}", file.warnings());
        for (user, _) in file.users() {
            assert!(login(&file, user, "secret"), "{user}");
            assert!(!login(&file, user, "secreT"), "{user}");
        }
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        let cram = |user: &str, digest: &str| {
            file.authenticate(&AuthRequest::CramMd5 {
                username: user.into(),
                challenge: challenge.into(),
                digest: Secret::new(digest.into()),
            })
        };
        assert!(cram("cram", &cram_md5_digest(b"secret", challenge.as_bytes())).is_ok());
        assert!(cram("cram", &cram_md5_digest(b"other", challenge.as_bytes())).is_err());
        assert!(cram("sha512", &cram_md5_digest(b"secret", challenge.as_bytes())).is_err());
        let scram = file.scram_keys("scram").unwrap();
        assert_eq!(scram, ScramKeys::from_password(b"secret", &scram.salt, 4096));
    }

    /// `doveadm pw -p secret` with the digest schemes, their encodings and MD5-crypt.
    #[test]
    fn dovecot_digest_schemes_and_encodings() {
        let text = "\
md5crypt:{MD5-CRYPT}$1$CQPZV/8k$/fYv6UvV6O4lsi1I66I4U1
md5:{MD5}$1$ulwdhsmU$msm7kbkzETOao2uheRzSO/
crypt:{CRYPT}$1$CQPZV/8k$/fYv6UvV6O4lsi1I66I4U1
bare:$1$CQPZV/8k$/fYv6UvV6O4lsi1I66I4U1
pbkdf2:{PBKDF2}$1$rSfMOs8fNjahmz7Y$5000$776940501e12ea4df97c11778b8980839f03425a
scram1:{SCRAM-SHA-1}4096,6bON658lLHC0/gEIxZXHrQ==,KYxXvdSPH7dhexVAJZ+kbG33Hf0=,t81oQg3J5UOdi1nd7KGt154EaQI=
ssha:{SSHA}RkVvhnZbKHjKK03zn2BkYfLZFM9P2Q7Q
ssha256:{SSHA256}W8WaU/UGVqgUBUKVredcz7w8M8neWmkFwo4uvQ9zzMQc3O62
sha:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=
smd5:{SMD5}qpgzOQUQDbSmERnTr1o+Fnp47WI=
plainmd5:{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69
ldapmd5:{LDAP-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==
sha256hex:{SHA256.HEX}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b
plainmd5b64:{PLAIN-MD5.B64}Xr4ilOzQ4PCOq3aQ0qbuaQ==
sshahex:{SSHA.HEX}195704ba2ea94fe942179ed0e5f75d731d8484f2d638afb2
shabase64:{SHA.BASE64}5en6G6MezRroT3XKqkdPOmY/BfQ=
";
        let file = PasswdFile::parse(text).unwrap();
        assert!(file.warnings().is_empty(), "{:?}", file.warnings());
        assert_eq!(file.users().count(), 16);
        for (user, _) in file.users() {
            assert!(login(&file, user, "secret"), "{user}");
            assert!(!login(&file, user, "secreT"), "{user}");
        }
    }

    #[test]
    fn unknown_schemes_encodings_and_malformed_hashes_are_warnings_naming_the_line() {
        let text = "\
a:{DES-CRYPT}abcdefghijklm
b:{SHA256.b32}abc
c:{ARGON2ID.hex}abc
d:{MD5-CRYPT}$1$toolongsalt$/fYv6UvV6O4lsi1I66I4U1
e:{PBKDF2}$1$salt$notanumber$00
f:{SSHA}c2hvcnQ=
g:{PLAIN-MD5}5ebe2294
ok:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=
";
        let file = PasswdFile::parse(text).unwrap();
        assert_eq!(file.users().count(), 1);
        let warnings = file.warnings();
        assert_eq!(warnings.len(), 7, "{warnings:?}");
        for (n, user) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            assert!(warnings[n].starts_with(&format!("line {}: user {user}: ", n + 1)));
        }
        assert!(warnings[0].contains("unsupported password scheme {DES-CRYPT}"));
        assert!(warnings[2].contains("unsupported password scheme {ARGON2ID.hex}"));
        assert!(!warnings.iter().any(|w| w.contains("5ebe2294")), "no hash in a warning");
    }

    /// A `tracing` writer into a shared buffer.
    struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn weak_schemes_warn_once_per_user() {
        let file = PasswdFile::parse(
            "weak-once:{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69\n\
             strong-once:{SHA512-CRYPT}$6$GK74ECkarISHQXna$dLVsMWjoRowkRyRyMRVuOvfxx4BwV.ShliImRTx2w3qLCHgtNkjYl57RBc5w1PwXGx0MAsy8FwHaD17xLb0by/\n",
        )
        .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = std::sync::Arc::clone(&log);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(std::sync::Arc::clone(&writer)))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            assert!(login(&file, "weak-once", "secret"));
            assert!(login(&file, "weak-once", "secret"));
            assert!(!login(&file, "weak-once", "wrong"));
            assert!(login(&file, "strong-once", "secret"));
        });
        let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        assert_eq!(log.matches("weak password scheme").count(), 1, "once per user: {log}");
        assert!(log.contains("user=\"weak-once\"") && log.contains("PLAIN-MD5"), "{log}");
        assert!(!log.contains("strong-once"), "SHA512-CRYPT is not weak: {log}");
        assert!(!log.contains("5ebe2294") && !log.contains("secret"), "no hash, no password");
        assert!(!file.warn_if_weak("weak-once"), "not again in this process");
        assert!(Scheme::PlainMd5.is_weak() && Scheme::Plain.is_weak());
        assert!(!Scheme::Argon2id.is_weak() && !Scheme::Ssha512.is_weak());
    }

    #[test]
    fn apop_and_cram_md5_work_for_the_users_whose_scheme_can_serve_them() {
        let sha =
            sha_crypt::sha512_simple("y", &sha_crypt::Sha512Params::new(5000).unwrap()).unwrap();
        let file = PasswdFile::parse(&format!("a:{{PLAIN}}x\nb:{{SHA512-CRYPT}}{sha}\n")).unwrap();
        let apop = |user: &str, pw: &[u8]| AuthRequest::Apop {
            username: user.into(),
            timestamp: "<1@x>".into(),
            digest: Secret::new(apop_digest("<1@x>", pw)),
        };
        assert!(file.authenticate(&apop("a", b"x")).is_ok(), "a PLAIN user can use APOP");
        assert!(file.authenticate(&apop("b", b"y")).is_err(), "a hashed one cannot");
        let cram = |user: &str, pw: &[u8]| AuthRequest::CramMd5 {
            username: user.into(),
            challenge: "<1@x>".into(),
            digest: Secret::new(cram_md5_digest(pw, b"<1@x>")),
        };
        assert!(file.authenticate(&cram("a", b"x")).is_ok());
        assert!(file.authenticate(&cram("b", b"y")).is_err());
        // And the hashed user still logs in with a password.
        assert!(file.authenticate(&password("b", "y")).is_ok());
    }

    #[test]
    fn unknown_users_get_the_same_scram_salt_every_time_and_across_restarts() {
        let secret = [7u8; 32];
        let text = "a:{PLAIN}x\n";
        let first = PasswdFile::parse(text).unwrap().with_secret(secret);
        let again = PasswdFile::parse(text).unwrap().with_secret(secret);
        let nobody = first.scram_keys("nobody").unwrap();
        assert_eq!(again.scram_keys("nobody").unwrap(), nobody, "a restart: the same salt");
        assert_eq!(first.scram_keys("nobody").unwrap(), nobody, "a second connection");
        assert_eq!(nobody.iterations, first.scram_keys("a").unwrap().iterations);
        assert_eq!(nobody.salt.len(), first.scram_keys("a").unwrap().salt.len());
        assert_ne!(first.scram_keys("other").unwrap().salt, nobody.salt, "per name");
        // The known user's salt is stable across restarts too, and a new secret changes both.
        assert_eq!(first.scram_keys("a"), again.scram_keys("a"));
        let other = PasswdFile::parse(text).unwrap().with_secret([8u8; 32]);
        assert_ne!(other.scram_keys("nobody").unwrap().salt, nobody.salt);
        // Unknown users are refused with every mechanism, after a decoy check.
        assert!(first.authenticate(&password("nobody", "x")).is_err());
        assert!(PasswdFile::parse("").unwrap().authenticate(&password("nobody", "x")).is_err());
    }

    #[test]
    fn argon2_memory_is_reused_across_checks() {
        let hash = hash_password(b"pw");
        let password = Password::parse(&hash).unwrap();
        assert!(password.verify(b"pw"));
        let blocks = ARGON2_MEMORY.with_borrow(Vec::len);
        let first = ARGON2_MEMORY.with_borrow(|m| m.as_ptr());
        assert!(!password.verify(b"wrong"));
        assert_eq!(ARGON2_MEMORY.with_borrow(|m| m.as_ptr()), first, "the same memory");
        assert_eq!(blocks, 19 * 1024, "m = 19 MiB, in 1 KiB blocks");
        // Dovecot's hashes with other parameters verify in the same memory, grown once.
        let dovecot = "$argon2id$v=19$m=65536,t=3,p=1$6o1SMLAignn9EYh5T7u7/w$f5coaJsDOTZtXZEJkkFxi+oev+KfiS+he/sLu2iipbU";
        assert!(argon2_verify(dovecot, b"secret"));
        assert_eq!(ARGON2_MEMORY.with_borrow(Vec::len), 65536);
        assert!(!argon2_verify("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$bm9oYXNo", b"secret"));
    }

    #[test]
    fn reloads_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "a:{PLAIN}x\n").unwrap();
        let file = ReloadingPasswdFile::load(&path).unwrap();
        assert!(file.authenticate(&password("a", "x")).is_ok());
        assert!(file.authenticate(&password("bb", "y")).is_err());
        std::fs::write(&path, "a:{PLAIN}x\nbb:{PLAIN}y\n").unwrap();
        assert!(file.authenticate(&password("bb", "y")).is_ok(), "new user after a change");
        std::fs::write(&path, "broken line without password\n").unwrap();
        assert!(file.authenticate(&password("bb", "y")).is_ok(), "last good version kept");
    }

    #[test]
    fn checks_are_quick_only_when_every_users_scheme_is_fast() {
        let quick = |file: &PasswdFile, user: &str, pw: &str| {
            file.authenticate_quick(&password(user, pw)).map(|r| r.is_ok())
        };
        let fast =
            PasswdFile::parse("plain:{PLAIN}x\nmd5:{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69\n")
                .unwrap();
        assert_eq!(quick(&fast, "plain", "x"), Some(true));
        assert_eq!(quick(&fast, "md5", "secret"), Some(true));
        assert_eq!(quick(&fast, "plain", "wrong"), Some(false));
        // Unknown users are answered as quickly: the decoy is a listed (fast) user's.
        assert_eq!(quick(&fast, "nobody", "x"), Some(false));
        // One slow scheme makes every check go to a thread, known user or not.
        let mixed = PasswdFile::parse(
            "plain:{PLAIN}x\nslow:{SHA512-CRYPT}$6$GK74ECkarISHQXna$dLVsMWjoRowkRyRyMRVuOvfxx4BwV.ShliImRTx2w3qLCHgtNkjYl57RBc5w1PwXGx0MAsy8FwHaD17xLb0by/\n",
        )
        .unwrap();
        assert_eq!(quick(&mixed, "plain", "x"), None);
        assert_eq!(quick(&mixed, "nobody", "x"), None);
        // An empty file's decoy is an ARGON2ID hash.
        assert_eq!(quick(&PasswdFile::parse("").unwrap(), "nobody", "x"), None);
    }

    #[test]
    fn a_changed_users_file_is_never_checked_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "a:{PLAIN}x\n").unwrap();
        let file = ReloadingPasswdFile::load(&path).unwrap();
        assert!(file.authenticate_quick(&password("a", "x")).is_some_and(|r| r.is_ok()));
        std::fs::write(&path, "a:{PLAIN}x\nbb:{PLAIN}y\n").unwrap();
        // Reloading (parsing) is left to a check thread...
        assert!(file.authenticate_quick(&password("bb", "y")).is_none());
        assert!(file.authenticate(&password("bb", "y")).is_ok());
        // ...after which the new version is quick again.
        assert!(file.authenticate_quick(&password("bb", "y")).is_some_and(|r| r.is_ok()));
    }

    fn password(user: &str, pw: &str) -> AuthRequest {
        AuthRequest::Password {
            username: user.into(),
            authzid: None,
            password: Secret::new(pw.as_bytes().to_vec()),
            mechanism: None,
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = PasswdFile::parse("ok:{PLAIN}x\n../evil:{PLAIN}x\n").unwrap_err();
        assert!(err.to_string().contains(":2:"), "{err}");
        assert!(PasswdFile::parse("a:{PLAIN}x\na:{PLAIN}y\n").is_err(), "duplicate");
        assert!(PasswdFile::parse("nopassword\n").is_err());
    }
}

/// A file's modification time, length and inode (a rewrite renames a new file into place).
type Stamp = (std::time::SystemTime, u64, u64);

/// A [`PasswdFile`] that reloads itself when the file changes (its modification time or
/// length), checked at each login: users added with `pop3d user add` can log in at once,
/// without a restart or SIGHUP. A file that fails to parse is logged and the last good
/// version stays in use.
#[derive(Debug)]
pub struct ReloadingPasswdFile {
    path: PathBuf,
    secret: Option<[u8; 32]>,
    current: std::sync::RwLock<(Option<Stamp>, std::sync::Arc<PasswdFile>)>,
}

impl ReloadingPasswdFile {
    /// Loads `path` now (an error here is returned), then follows it.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, PasswdError> {
        let path = path.into();
        let stamp = Self::stamp(&path);
        let file = PasswdFile::load(&path)?;
        let current = std::sync::RwLock::new((stamp, std::sync::Arc::new(file)));
        Ok(Self { path, secret: None, current })
    }

    /// Sets the server secret of every version loaded (see [`PasswdFile::with_secret`]).
    #[must_use]
    pub fn with_secret(mut self, secret: [u8; 32]) -> Self {
        self.secret = Some(secret);
        let current = self.current.get_mut().unwrap_or_else(|e| e.into_inner());
        current.1 = std::sync::Arc::new((*current.1).clone().with_secret(secret));
        self
    }

    fn stamp(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())))
    }

    /// The file as last loaded.
    pub fn current(&self) -> std::sync::Arc<PasswdFile> {
        std::sync::Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()).1)
    }

    /// The file as last loaded, if the file on disk has not changed since (one `stat`).
    fn unchanged(&self) -> Option<std::sync::Arc<PasswdFile>> {
        let stamp = Self::stamp(&self.path);
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0 == stamp).then(|| std::sync::Arc::clone(&current.1))
    }

    /// Reloads if the file changed since the last load.
    pub fn refresh(&self) -> std::sync::Arc<PasswdFile> {
        if let Some(file) = self.unchanged() {
            return file;
        }
        let stamp = Self::stamp(&self.path);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        match PasswdFile::load(&self.path) {
            Ok(file) => {
                let file = match self.secret {
                    Some(secret) => file.with_secret(secret),
                    None => file,
                };
                tracing::info!(path = %self.path.display(), users = file.users.len(), "users file reloaded");
                for warning in file.warnings() {
                    tracing::warn!(path = %self.path.display(), "{warning}");
                }
                *current = (stamp, std::sync::Arc::new(file));
            }
            Err(error) => {
                tracing::error!(%error, "users file not reloaded, keeping the previous version");
                current.0 = stamp;
            }
        }
        std::sync::Arc::clone(&current.1)
    }
}

impl Authenticator for ReloadingPasswdFile {
    fn user(&self, name: &str) -> Result<Option<UserInfo>, AuthError> {
        Ok(self.refresh().user_info(name))
    }

    fn authenticate(&self, request: &AuthRequest) -> Result<UserInfo, AuthError> {
        self.refresh().authenticate(request)
    }

    /// Quick only while the file is unchanged: a changed file is reloaded on a check thread
    /// (parsing a large file is no job for the connection's thread).
    fn authenticate_quick(&self, request: &AuthRequest) -> Option<Result<UserInfo, AuthError>> {
        self.unchanged()?.authenticate_quick(request)
    }

    fn scram_keys(&self, username: &str) -> Option<ScramKeys> {
        self.refresh().scram_keys(username)
    }
}
