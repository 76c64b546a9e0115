//! New password hashes for the users file, in the `{SCHEME}hash` form `doveadm pw` prints.

use std::num::NonZeroU32;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pop3_proto::sasl::ScramKeys;

use super::digest::{hash_salted, Algorithm, Encoding};
use super::pbkdf2::{Pbkdf2, DEFAULT_ROUNDS};
use super::{Scheme, SCRAM_ITERATIONS};

/// A new password hash for the users file: `{ARGON2ID}` with the `argon2` crate's default
/// parameters (RFC 9106's second recommended option: m=19 MiB, t=2, p=1) and a random salt.
pub fn hash_password(password: &[u8]) -> String {
    let mut salt = [0u8; 16];
    random(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    let hash = Argon2::default()
        .hash_password(password, &salt)
        .expect("default Argon2 parameters and a valid salt");
    format!("{{ARGON2ID}}{hash}")
}

/// The schemes [`hash_password_as`] makes hashes in.
pub const GENERATED_SCHEMES: &[Scheme] = &[
    Scheme::Argon2id,
    Scheme::Sha512Crypt,
    Scheme::Sha256Crypt,
    Scheme::BlfCrypt,
    Scheme::Pbkdf2,
    Scheme::ScramSha256,
    Scheme::Ssha512,
    Scheme::Ssha256,
];

/// A new hash of `password` in `scheme`, as `{SCHEME}hash`, with a random salt and the
/// usual costs (SHA-crypt 5000 rounds, bcrypt cost 12, Dovecot's 5000 PBKDF2 rounds, 4096
/// SCRAM iterations). Weak schemes (see [`Scheme::is_weak`]) and those not in
/// [`GENERATED_SCHEMES`] are refused with the reason.
pub fn hash_password_as(scheme: Scheme, password: &[u8]) -> Result<String, String> {
    let name = scheme.name();
    let text = || std::str::from_utf8(password).map_err(|_| format!("{name} needs UTF-8"));
    let body = match scheme {
        Scheme::Argon2id => return Ok(hash_password(password)),
        Scheme::Sha512Crypt => {
            let params = sha_crypt::Sha512Params::new(5000).expect("5000 rounds are valid");
            sha_crypt::sha512_simple(text()?, &params).map_err(|e| format!("{name}: {e:?}"))?
        }
        Scheme::Sha256Crypt => {
            let params = sha_crypt::Sha256Params::new(5000).expect("5000 rounds are valid");
            sha_crypt::sha256_simple(text()?, &params).map_err(|e| format!("{name}: {e:?}"))?
        }
        Scheme::BlfCrypt => {
            bcrypt::hash(password, bcrypt::DEFAULT_COST).map_err(|e| format!("{name}: {e}"))?
        }
        Scheme::Pbkdf2 => {
            Pbkdf2::hash(password, NonZeroU32::new(DEFAULT_ROUNDS).expect("not zero"))
        }
        Scheme::ScramSha256 => {
            let mut salt = [0u8; 16];
            random(&mut salt);
            let keys = ScramKeys::from_password(password, &salt, SCRAM_ITERATIONS);
            format!(
                "{SCRAM_ITERATIONS},{},{},{}",
                BASE64.encode(&keys.salt),
                BASE64.encode(keys.stored_key),
                BASE64.encode(keys.server_key)
            )
        }
        Scheme::Ssha512 => hash_salted(Algorithm::Sha512, Encoding::Base64, password),
        Scheme::Ssha256 => hash_salted(Algorithm::Sha256, Encoding::Base64, password),
        _ if scheme.is_weak() => {
            return Err(format!("{name} is a weak scheme: new hashes are not made in it"))
        }
        _ => return Err(format!("new hashes are not made in {name}")),
    };
    Ok(format!("{{{name}}}{body}"))
}

fn random(buf: &mut [u8]) {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
        .expect("the system random number generator works");
}
