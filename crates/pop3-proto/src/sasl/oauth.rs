//! Message syntax of OAUTHBEARER (RFC 7628) and XOAUTH2.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::scram::{escape_saslname, unescape_saslname};
use super::SaslError;

/// The kvsep of both mechanisms (RFC 7628 §3.1).
const KVSEP: u8 = 0x01;

/// RFC 7628 §3.1 client response:
/// `gs2-header kvsep *kvpair auth kvsep` with `gs2-header = "n," ["a=" saslname] ","`.
pub(crate) fn oauthbearer_message(
    username: &str,
    token: &str,
    host: Option<&str>,
    port: Option<u16>,
) -> Vec<u8> {
    let mut msg = String::from("n,");
    if !username.is_empty() {
        msg.push_str("a=");
        msg.push_str(&escape_saslname(username));
    }
    msg.push(',');
    msg.push('\u{1}');
    if let Some(host) = host {
        msg.push_str(&format!("host={host}\u{1}"));
    }
    if let Some(port) = port {
        msg.push_str(&format!("port={port}\u{1}"));
    }
    msg.push_str(&format!("auth=Bearer {token}\u{1}\u{1}"));
    msg.into_bytes()
}

/// The XOAUTH2 client response: `user=USER ^A auth=Bearer TOKEN ^A ^A`.
pub(crate) fn xoauth2_message(username: &str, token: &str) -> Vec<u8> {
    format!("user={username}\u{1}auth=Bearer {token}\u{1}\u{1}").into_bytes()
}

/// What the server takes from either mechanism's client response.
pub(crate) struct BearerMessage {
    pub username: String,
    pub token: String,
}

/// Parses an RFC 7628 §3.1 client response.
pub(crate) fn parse_oauthbearer(msg: &[u8]) -> Result<BearerMessage, SaslError> {
    let msg = core::str::from_utf8(msg).map_err(|_| SaslError::Malformed)?;
    let (flag, rest) = msg.split_once(',').ok_or(SaslError::Malformed)?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(SaslError::ChannelBinding),
        _ => return Err(SaslError::Malformed),
    }
    let (authzid, kvpairs) = rest.split_once(',').ok_or(SaslError::Malformed)?;
    let username = match authzid {
        "" => String::new(),
        a => match a.strip_prefix("a=") {
            Some(name) => unescape_saslname(name)?,
            None => return Err(SaslError::Malformed),
        },
    };
    let kvpairs = kvpairs.strip_prefix('\u{1}').ok_or(SaslError::Malformed)?;
    let token = bearer_token(kvpairs, |key| {
        // RFC 7628 §3.1: key = 1*(ALPHA)
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic())
    })?;
    Ok(BearerMessage { username, token })
}

/// Parses an XOAUTH2 client response: `user=` and `auth=`, in any order.
pub(crate) fn parse_xoauth2(msg: &[u8]) -> Result<BearerMessage, SaslError> {
    let msg = core::str::from_utf8(msg).map_err(|_| SaslError::Malformed)?;
    let mut username = None;
    for pair in kv_pairs(msg)? {
        if let Some(user) = pair.strip_prefix("user=") {
            if username.replace(user).is_some() {
                return Err(SaslError::Malformed);
            }
        }
    }
    let token = bearer_token(msg, |key| !key.is_empty())?;
    match username {
        Some(user) if !user.is_empty() => Ok(BearerMessage { username: user.into(), token }),
        _ => Err(SaslError::Malformed),
    }
}

/// The `key=value` pairs of `*(kvpair kvsep) kvsep` (the string must end in two kvseps).
fn kv_pairs(pairs: &str) -> Result<impl Iterator<Item = &str>, SaslError> {
    let body = pairs.strip_suffix("\u{1}\u{1}").ok_or(SaslError::Malformed)?;
    Ok(body.split('\u{1}').filter(|p| !p.is_empty()))
}

/// Finds exactly one `auth=Bearer <token>` among the pairs (the scheme name is
/// case-insensitive, RFC 6750 §2.1 / RFC 7235 §2.1) and checks every key with `valid_key`.
fn bearer_token(pairs: &str, valid_key: impl Fn(&str) -> bool) -> Result<String, SaslError> {
    let mut token = None;
    for pair in kv_pairs(pairs)? {
        let (key, value) = pair.split_once('=').ok_or(SaslError::Malformed)?;
        if !valid_key(key) {
            return Err(SaslError::Malformed);
        }
        if key == "auth" {
            let (scheme, credentials) = value.split_once(' ').ok_or(SaslError::Malformed)?;
            let credentials = credentials.trim_start_matches(' ');
            if !scheme.eq_ignore_ascii_case("Bearer") || credentials.is_empty() {
                return Err(SaslError::Malformed);
            }
            if token.replace(credentials).is_some() {
                return Err(SaslError::Malformed);
            }
        }
    }
    token.map(String::from).ok_or(SaslError::Malformed)
}

/// Whether a message is the OAUTHBEARER / XOAUTH2 "dummy" client response that answers an
/// error challenge (RFC 7628 §3.2.3: a single kvsep; XOAUTH2: empty).
pub(crate) fn is_error_ack(mechanism: super::Mechanism, msg: &[u8]) -> bool {
    match mechanism {
        super::Mechanism::OAuthBearer => msg == [KVSEP],
        _ => msg.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauthbearer_round_trip() {
        let msg = oauthbearer_message("us,er", "tok", Some("h"), Some(110));
        assert_eq!(&msg[..], b"n,a=us=2Cer,\x01host=h\x01port=110\x01auth=Bearer tok\x01\x01");
        let parsed = parse_oauthbearer(&msg).ok().unwrap();
        assert_eq!(parsed.username, "us,er");
        assert_eq!(parsed.token, "tok");
    }

    #[test]
    fn oauthbearer_without_authzid() {
        let msg = oauthbearer_message("", "tok", None, None);
        assert_eq!(&msg[..], b"n,,\x01auth=Bearer tok\x01\x01");
        assert_eq!(parse_oauthbearer(&msg).ok().unwrap().username, "");
    }

    #[test]
    fn oauthbearer_rejects_malformed() {
        for bad in [
            &b"n,,\x01auth=Bearer tok\x01"[..],
            b"n,,auth=Bearer tok\x01\x01",
            b"n,,\x01auth=Basic tok\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01host=a\x01\x01",
            b"n,,\x01auth=Bearer a\x01auth=Bearer b\x01\x01",
            b"n,,\x01a-b=c\x01auth=Bearer a\x01\x01",
            b"x,,\x01auth=Bearer tok\x01\x01",
            b"n,b=x,\x01auth=Bearer tok\x01\x01",
            b"\xff",
            b"",
        ] {
            assert!(parse_oauthbearer(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_oauthbearer(b"p=tls-unique,,\x01auth=Bearer t\x01\x01").err(),
            Some(SaslError::ChannelBinding)
        );
    }

    #[test]
    fn xoauth2_round_trip_and_order() {
        let msg = xoauth2_message(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        );
        let parsed = parse_xoauth2(&msg).ok().unwrap();
        assert_eq!(parsed.username, "someuser@example.com");
        assert_eq!(parsed.token, "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
        let swapped = parse_xoauth2(b"auth=bearer t\x01user=u\x01\x01").ok().unwrap();
        assert_eq!((swapped.username.as_str(), swapped.token.as_str()), ("u", "t"));
        for bad in [
            &b"user=u\x01auth=Bearer t\x01"[..],
            b"auth=Bearer t\x01\x01",
            b"user=\x01auth=Bearer t\x01\x01",
            b"user=u\x01user=v\x01auth=Bearer t\x01\x01",
            b"",
        ] {
            assert!(parse_xoauth2(bad).is_err(), "{bad:?}");
        }
    }
}
