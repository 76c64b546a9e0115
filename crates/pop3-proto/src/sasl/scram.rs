//! SCRAM-SHA-256 (RFC 5802, RFC 7677): keys, message syntax and proofs shared by both sides.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::Sha256;

use super::digest::{hmac_sha256, sha256};
use super::saslprep::prepare_password;
use super::SaslError;

/// What a SCRAM-SHA-256 server stores for a user instead of the password (RFC 5802 §3):
/// enough to verify a client's proof and to prove itself to the client, but not enough to
/// log in as the user.
///
/// `Debug` shows the salt length and the iteration count, never the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// The salt, raw bytes (sent base64-encoded in `s=`).
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count (`i=`), at least 1; RFC 7677 §4 asks for at least 4096.
    pub iterations: u32,
    /// `StoredKey := H(ClientKey)`.
    pub stored_key: [u8; 32],
    /// `ServerKey := HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl ScramKeys {
    /// Derives the keys from a password (RFC 5802 §3):
    /// `SaltedPassword := Hi(Normalize(password), salt, i)`,
    /// `ClientKey := HMAC(SaltedPassword, "Client Key")`, `StoredKey := H(ClientKey)`,
    /// `ServerKey := HMAC(SaltedPassword, "Server Key")`.
    ///
    /// `Normalize` is this crate's partial SASLprep, applied when `password` is UTF-8 (a
    /// password that is not UTF-8 is used as it is); see the [`sasl`](super) module
    /// documentation. Costs `iterations` HMAC computations; an `iterations` of 0 is treated as 1.
    ///
    /// ```
    /// use pop3_proto::sasl::ScramKeys;
    /// let keys = ScramKeys::from_password(b"pencil", b"salt1234salt1234", 4096);
    /// assert_eq!(keys.iterations, 4096);
    /// ```
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, &[b"Server Key"]),
        }
    }

    /// Keys for a user that does not exist, derived from a secret only the server knows: the
    /// same user name always gets the same salt (as a real user does), and nobody without
    /// `server_secret` can tell these keys from real ones. No proof verifies against them.
    ///
    /// Pass them to [`SaslServer::provide_scram_keys`](super::SaslServer::provide_scram_keys)
    /// for an unknown user when a stable salt matters; `provide_scram_keys(None)` derives
    /// decoy keys from the session nonce instead, which needs no secret but gives a different
    /// salt on each attempt.
    pub fn decoy(server_secret: &[u8], username: &str, iterations: u32) -> Self {
        let salt =
            hmac_sha256(server_secret, &[b"pop3-proto scram decoy salt\0", username.as_bytes()]);
        Self {
            salt: salt[..16].to_vec(),
            iterations: iterations.max(1),
            stored_key: hmac_sha256(
                server_secret,
                &[b"pop3-proto scram decoy stored key\0", username.as_bytes()],
            ),
            server_key: hmac_sha256(
                server_secret,
                &[b"pop3-proto scram decoy server key\0", username.as_bytes()],
            ),
        }
    }
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramKeys")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// `Hi(Normalize(password), salt, i)`, i.e. PBKDF2-HMAC-SHA-256 with a 32-byte output.
pub(crate) fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let prepared: Cow<'_, [u8]> = match core::str::from_utf8(password) {
        Ok(text) => match prepare_password(text) {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        },
        Err(_) => Cow::Borrowed(password),
    };
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&prepared, salt, iterations, &mut out);
    out
}

/// `ClientSignature := HMAC(StoredKey, AuthMessage)`.
pub(crate) fn client_signature(stored_key: &[u8; 32], auth_message: &[u8]) -> [u8; 32] {
    hmac_sha256(stored_key, &[auth_message])
}

/// `ServerSignature := HMAC(ServerKey, AuthMessage)`.
pub(crate) fn server_signature(server_key: &[u8; 32], auth_message: &[u8]) -> [u8; 32] {
    hmac_sha256(server_key, &[auth_message])
}

pub(crate) fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// `saslname` (RFC 5802 §5.1): `,` as `=2C` and `=` as `=3D`.
pub(crate) fn escape_saslname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape_saslname`]; any other `=` sequence, a bare `,`, or NUL is malformed.
pub(crate) fn unescape_saslname(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find(['=', ',', '\0']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return Err(SaslError::Malformed);
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A SCRAM nonce: printable ASCII except `,` (RFC 5802 §5.1 `printable`).
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Drops the characters a nonce may not contain.
pub(crate) fn sanitize_nonce(nonce: &str) -> String {
    nonce.chars().filter(|&c| c.is_ascii_graphic() && c != ',').collect()
}

/// Splits `attr=value` with the expected one-letter attribute name.
pub(crate) fn attribute(part: Option<&str>, name: u8) -> Result<&str, SaslError> {
    let part = part.ok_or(SaslError::Malformed)?;
    match part.as_bytes() {
        [b'm', b'=', ..] => Err(SaslError::UnsupportedExtension),
        [n, b'=', ..] if *n == name => Ok(&part[2..]),
        _ => Err(SaslError::Malformed),
    }
}

/// RFC 5802 §5.1: `m` is reserved for mandatory extensions, and "its presence in a client
/// or a server message MUST cause authentication failure when the attribute is parsed by the
/// other end", wherever it appears (other unknown attributes are ignored).
fn reject_mandatory_extension<'a>(
    mut rest: impl Iterator<Item = &'a str>,
) -> Result<(), SaslError> {
    match rest.any(|part| part.starts_with("m=")) {
        true => Err(SaslError::UnsupportedExtension),
        false => Ok(()),
    }
}

/// The parsed server-first message (RFC 5802 §7 `server-first-message`).
pub(crate) struct ServerFirst {
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

pub(crate) fn parse_server_first(msg: &str) -> Result<ServerFirst, SaslError> {
    let mut parts = msg.split(',');
    let nonce = attribute(parts.next(), b'r')?;
    let salt = attribute(parts.next(), b's')?;
    let iterations = attribute(parts.next(), b'i')?;
    // Any further attributes are extensions, which RFC 5802 §5.1 lets us ignore.
    if !is_valid_nonce(nonce) {
        return Err(SaslError::Malformed);
    }
    let salt = BASE64.decode(salt).map_err(|_| SaslError::Malformed)?;
    let iterations = parse_iterations(iterations)?;
    Ok(ServerFirst { nonce: nonce.into(), salt, iterations })
}

fn parse_iterations(text: &str) -> Result<u32, SaslError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SaslError::InvalidIterations);
    }
    match text.parse::<u32>() {
        Ok(0) | Err(_) => Err(SaslError::InvalidIterations),
        Ok(n) => Ok(n),
    }
}

/// The parsed client-first message (RFC 5802 §7 `client-first-message`).
pub(crate) struct ClientFirst<'a> {
    /// `gs2-header`, kept verbatim for the `c=` check.
    pub gs2_header: &'a str,
    /// `client-first-message-bare`, kept verbatim for the AuthMessage.
    pub bare: &'a str,
    pub authzid: Option<String>,
    pub username: String,
    pub nonce: &'a str,
}

pub(crate) fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, SaslError> {
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let (flag, rest) = msg.split_once(',').ok_or(SaslError::Malformed)?;
    match flag {
        // "y": the client could bind but thinks we cannot; we cannot, so that is right.
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(SaslError::ChannelBinding),
        _ => return Err(SaslError::Malformed),
    }
    let (authzid, bare) = rest.split_once(',').ok_or(SaslError::Malformed)?;
    let gs2_header = &msg[..msg.len() - bare.len()];
    let authzid = match authzid {
        "" => None,
        a => match a.strip_prefix("a=") {
            Some(name) if !name.is_empty() => Some(unescape_saslname(name)?),
            _ => return Err(SaslError::Malformed),
        },
    };
    let mut parts = bare.split(',');
    let username = unescape_saslname(attribute(parts.next(), b'n')?)?;
    let nonce = attribute(parts.next(), b'r')?;
    if username.is_empty() || !is_valid_nonce(nonce) {
        return Err(SaslError::Malformed);
    }
    reject_mandatory_extension(parts)?;
    Ok(ClientFirst { gs2_header, bare, authzid, username, nonce })
}

/// The parsed client-final message (RFC 5802 §7 `client-final-message`).
pub(crate) struct ClientFinal<'a> {
    pub channel_binding: &'a str,
    pub nonce: &'a str,
    /// `client-final-message-without-proof`, verbatim for the AuthMessage.
    pub without_proof: &'a str,
    pub proof: Vec<u8>,
}

pub(crate) fn parse_client_final(msg: &str) -> Result<ClientFinal<'_>, SaslError> {
    let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(SaslError::Malformed)?;
    let mut parts = without_proof.split(',');
    let channel_binding = attribute(parts.next(), b'c')?;
    let nonce = attribute(parts.next(), b'r')?;
    // Further attributes are extensions; ignore them (RFC 5802 §5.1), but for `m`.
    reject_mandatory_extension(parts)?;
    let proof = BASE64.decode(proof).map_err(|_| SaslError::Malformed)?;
    Ok(ClientFinal { channel_binding, nonce, without_proof, proof })
}

/// The server-final message (RFC 5802 §7): the verifier, or the server's error.
pub(crate) enum ServerFinal<'a> {
    Verifier(Vec<u8>),
    Error(&'a str),
}

pub(crate) fn parse_server_final(msg: &str) -> Result<ServerFinal<'_>, SaslError> {
    let first = msg.split(',').next().unwrap_or_default();
    if let Some(err) = first.strip_prefix("e=") {
        return Ok(ServerFinal::Error(err));
    }
    let v = attribute(Some(first), b'v')?;
    BASE64.decode(v).map(ServerFinal::Verifier).map_err(|_| SaslError::Malformed)
}

pub(crate) fn base64(data: &[u8]) -> String {
    BASE64.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_round_trip() {
        for name in ["user", "a,b", "a=b", "=2C", ",=,=", ""] {
            assert_eq!(unescape_saslname(&escape_saslname(name)).as_deref(), Ok(name));
        }
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_saslname("a=2x"), Err(SaslError::Malformed));
        assert_eq!(unescape_saslname("a="), Err(SaslError::Malformed));
        assert_eq!(unescape_saslname("a,b"), Err(SaslError::Malformed));
    }

    #[test]
    fn server_first_rejects_bad_iterations_and_extensions() {
        let ok = parse_server_first("r=abc,s=QSXCR+Q6sek8bf92,i=4096").map(|f| f.iterations);
        assert_eq!(ok.ok(), Some(4096));
        for bad in ["i=0", "i=", "i=-1", "i=+1", "i=99999999999"] {
            let msg = alloc::format!("r=abc,s=QSXCR+Q6sek8bf92,{bad}");
            assert_eq!(parse_server_first(&msg).err(), Some(SaslError::InvalidIterations), "{bad}");
        }
        assert_eq!(
            parse_server_first("m=ext,r=abc,s=QSXCR+Q6sek8bf92,i=1").err(),
            Some(SaslError::UnsupportedExtension)
        );
        assert_eq!(parse_server_first("r=abc,s=!!!,i=1").err(), Some(SaslError::Malformed));
        assert!(parse_server_first("r=abc,s=QSXCR+Q6sek8bf92,i=1,x=ext").is_ok());
    }

    #[test]
    fn client_first_parses_the_gs2_header() {
        let cf = parse_client_first("n,a=ad=2Cmin,n=us=3Der,r=xyz").ok().unwrap();
        assert_eq!(cf.gs2_header, "n,a=ad=2Cmin,");
        assert_eq!(cf.bare, "n=us=3Der,r=xyz");
        assert_eq!(cf.authzid.as_deref(), Some("ad,min"));
        assert_eq!(cf.username, "us=er");
        assert_eq!(cf.nonce, "xyz");
        assert_eq!(
            parse_client_first("p=tls-unique,,n=u,r=x").err(),
            Some(SaslError::ChannelBinding)
        );
        assert_eq!(
            parse_client_first("n,,m=x,n=u,r=x").err(),
            Some(SaslError::UnsupportedExtension)
        );
        assert_eq!(parse_client_first("n,,n=,r=x").err(), Some(SaslError::Malformed));
        assert_eq!(parse_client_first("x,,n=u,r=x").err(), Some(SaslError::Malformed));
        assert!(parse_client_first("n,,n=u,r=a,b").is_ok(), "extensions are ignored");
        assert_eq!(
            parse_client_first("n,,n=u,r=a,m=x").err(),
            Some(SaslError::UnsupportedExtension),
            "m= is refused wherever it appears"
        );
        assert_eq!(
            parse_client_final("c=biws,r=a,m=x,p=AAAA").err(),
            Some(SaslError::UnsupportedExtension)
        );
        assert!(parse_client_final("c=biws,r=a,x=y,p=AAAA").is_ok());
    }
}
