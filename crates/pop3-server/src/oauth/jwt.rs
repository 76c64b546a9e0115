//! A bearer token checked locally, as a signed JWT (RFC 7519; access tokens as RFC 9068
//! describes them): signature by one of the issuer's keys, `iss`, `aud`, `exp` and `nbf`
//! (with the allowed clock skew), then the user claim and the required scopes.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};
use serde_json::{Map, Value};

use super::jwks::KeyStore;
use super::{claims, Failure, OAuthSettings};

/// Tokens longer than this are refused unread (a JWT is a few hundred octets to a few KiB).
const MAX_TOKEN: usize = 16 * 1024;

/// The user `token` names, if it is a good JWT for this server.
pub(super) fn validate(
    token: &str,
    keys: &KeyStore,
    settings: &OAuthSettings,
) -> Result<String, Failure> {
    if token.len() > MAX_TOKEN {
        return Err(Failure::Invalid(format!("token longer than {MAX_TOKEN} octets")));
    }
    let header = decode_header(token).map_err(|e| Failure::Invalid(format!("not a JWT: {e}")))?;
    let candidates = keys.candidates(header.kid.as_deref(), header.alg)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[settings.issuer.as_str()]);
    if settings.audience.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&settings.audience);
    }
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = settings.clock_skew.as_secs();
    validation.validate_nbf = true;
    let mut last = None;
    for key in candidates {
        match decode::<Map<String, Value>>(token, &key.decoding, &validation) {
            Ok(data) => return claims::user(&data.claims, settings),
            // Another key of the same kind may have signed it (a token without a key id).
            Err(e) if *e.kind() == ErrorKind::InvalidSignature => last = Some(e),
            Err(e) => return Err(Failure::Invalid(reason(e.kind()))),
        }
    }
    Err(Failure::Invalid(last.map_or_else(|| "no key".into(), |e| reason(e.kind()))))
}

/// What was wrong, for the log (never the token itself).
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidIssuer => "token from another issuer".into(),
        ErrorKind::InvalidAudience => "token for another audience".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token without {claim:?}"),
        other => format!("invalid token: {other:?}"),
    }
}
