//! The authorization server's signing keys (a JWK Set, RFC 7517 §5), fetched when first
//! needed, again when they are old, and again when a token names a key id not among them
//! (key rotation), but never more often than the minimum interval: forged key ids cannot make
//! pop3d hammer the authorization server. When a refresh fails, the keys fetched before stay
//! in use.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use ureq::Agent;

use super::http::{check_url, get_json};
use super::{Failure, KeySource};

/// At most this many keys are kept from one set.
const MAX_KEYS: usize = 100;

/// What kind of signature a key makes: the algorithms a token may name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    /// Only asymmetric algorithms are ever accepted: a symmetric (HS*) token would be
    /// checked with a key anyone who can read the JWKS has.
    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::{EdDSA, ES256, ES384, PS256, PS384, PS512, RS256, RS384, RS512};
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

/// One signing key.
pub(super) struct Key {
    kid: Option<String>,
    /// The key's own `alg`, if the set gives one: then only that algorithm.
    alg: Option<Algorithm>,
    family: Family,
    pub(super) decoding: DecodingKey,
}

impl Key {
    fn usable(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        kid.is_none_or(|kid| self.kid.as_deref() == Some(kid))
            && self.alg.is_none_or(|a| a == alg)
            && self.family.allows(alg)
    }
}

/// The keys, and when they were fetched.
pub(super) struct KeyStore {
    source: KeySource,
    issuer: String,
    agent: Agent,
    min_refresh: Duration,
    max_age: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("source", &self.source).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    keys: Vec<Arc<Key>>,
    /// The last successful fetch.
    fetched: Option<Instant>,
    /// The last attempt, successful or not.
    attempted: Option<Instant>,
    /// The discovered `jwks_uri`.
    jwks_url: Option<String>,
}

impl KeyStore {
    pub(super) fn new(
        source: KeySource,
        issuer: String,
        agent: Agent,
        min_refresh: Duration,
        max_age: Duration,
    ) -> Self {
        Self { source, issuer, agent, min_refresh, max_age, state: Mutex::default() }
    }

    /// The keys that may have signed a token with this key id (every key of the algorithm's
    /// kind when the token names none) and algorithm. Fetches the set when it is missing, old,
    /// or lacks the key id (at most once per minimum interval). One fetch at a time: checks
    /// arriving meanwhile wait for it (each fetch is bounded by the timeout).
    pub(super) fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<Key>>, Failure> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let matching = |keys: &[Arc<Key>]| -> Vec<Arc<Key>> {
            keys.iter().filter(|k| k.usable(kid, alg)).cloned().collect()
        };
        let mut found = matching(&state.keys);
        let stale = state.fetched.is_none_or(|t| now.duration_since(t) >= self.max_age);
        let may_fetch = state.attempted.is_none_or(|t| now.duration_since(t) >= self.min_refresh);
        if (stale || found.is_empty()) && may_fetch {
            state.attempted = Some(now);
            match self.fetch(&mut state.jwks_url) {
                Ok(keys) => {
                    if found.is_empty() && state.fetched.is_some() {
                        tracing::info!(
                            keys = keys.len(),
                            "signing keys fetched again for a new key id"
                        );
                    }
                    state.keys = keys;
                    state.fetched = Some(now);
                    found = matching(&state.keys);
                }
                Err(Failure::Unavailable(why)) | Err(Failure::Invalid(why))
                    if state.fetched.is_some() =>
                {
                    tracing::warn!(error = %why, "signing keys not refreshed; using those fetched before");
                }
                Err(failure) => return Err(failure),
            }
        } else if state.fetched.is_none() {
            return Err(Failure::Unavailable(format!(
                "no signing keys yet (the last attempt failed under {} s ago)",
                self.min_refresh.as_secs()
            )));
        }
        if found.is_empty() {
            return Err(Failure::Invalid(match kid {
                Some(kid) => format!("no {alg:?} signing key with key id {kid:?}"),
                None => format!("no {alg:?} signing key"),
            }));
        }
        Ok(found)
    }

    /// For `check-config`: fetches the keys now and says how many there are and from where.
    pub(super) fn probe(&self) -> Result<String, String> {
        let mut jwks_url = None;
        let keys = self.fetch(&mut jwks_url).map_err(|f| match f {
            Failure::Invalid(why) | Failure::Unavailable(why) => why,
        })?;
        let from = match &self.source {
            KeySource::File(path) => path.display().to_string(),
            KeySource::Url(url) => url.clone(),
            KeySource::Discovery => jwks_url.unwrap_or_default(),
        };
        let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        Ok(format!("{} signing keys from {from} (key ids {})", keys.len(), kids.join(", ")))
    }

    fn fetch(&self, jwks_url: &mut Option<String>) -> Result<Vec<Arc<Key>>, Failure> {
        let set = match &self.source {
            KeySource::File(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| Failure::Unavailable(format!("{}: {e}", path.display())))?;
                serde_json::from_slice(&text).map_err(|e| {
                    Failure::Unavailable(format!("{}: not JSON: {e}", path.display()))
                })?
            }
            KeySource::Url(url) => get_json(&self.agent, url)?,
            KeySource::Discovery => {
                let url = match jwks_url {
                    Some(url) => url.clone(),
                    None => {
                        let url = self.discover()?;
                        *jwks_url = Some(url.clone());
                        url
                    }
                };
                get_json(&self.agent, &url)?
            }
        };
        parse_set(&set)
    }

    /// The `jwks_uri` of the issuer's discovery document, whose `issuer` must be ours
    /// (OpenID Connect Discovery 1.0 §4.3).
    fn discover(&self) -> Result<String, Failure> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let document = get_json(&self.agent, &url)?;
        if document.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(Failure::Unavailable(format!(
                "{url}: its issuer is {}, not {}",
                document.get("issuer").unwrap_or(&Value::Null),
                self.issuer
            )));
        }
        let jwks = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::Unavailable(format!("{url}: no jwks_uri")))?;
        check_url(jwks).map_err(|e| Failure::Unavailable(format!("{url}: jwks_uri: {e}")))?;
        Ok(jwks.to_owned())
    }
}

/// The signing keys of a JWK Set. Keys this server cannot use (symmetric, encryption keys,
/// other curves, malformed ones) are left out, not errors: a set may hold keys for others.
fn parse_set(set: &Value) -> Result<Vec<Arc<Key>>, Failure> {
    let Some(list) = set.get("keys").and_then(Value::as_array) else {
        return Err(Failure::Unavailable("the JWKS has no \"keys\" list".into()));
    };
    let keys: Vec<Arc<Key>> =
        list.iter().filter_map(signing_key).take(MAX_KEYS).map(Arc::new).collect();
    if keys.is_empty() {
        return Err(Failure::Unavailable("the JWKS has no usable signing key".into()));
    }
    Ok(keys)
}

fn signing_key(value: &Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Family::P256,
            EllipticCurve::P384 => Family::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => Family::Ed25519,
            _ => return None,
        },
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(named) => Some(named.to_string().parse::<Algorithm>().ok()?),
    };
    if alg.is_some_and(|a| !family.allows(a)) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key { kid: jwk.common.key_id.clone(), alg, family, decoding })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_signing_keys_are_kept() {
        let set = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "wrong-alg", "alg": "RS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "XYZ", "kid": "unknown-type"},
            "not a key"
        ]});
        let keys = parse_set(&set).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("ed")]);
        assert!(keys[0].usable(Some("ed"), Algorithm::EdDSA));
        assert!(keys[0].usable(None, Algorithm::EdDSA));
        assert!(!keys[0].usable(Some("other"), Algorithm::EdDSA));
        assert!(!keys[0].usable(Some("ed"), Algorithm::HS256));
        assert!(!keys[0].usable(Some("ed"), Algorithm::RS256));
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        for set in [
            serde_json::json!({}),
            serde_json::json!({"keys": "x"}),
            serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        ] {
            assert!(matches!(parse_set(&set), Err(Failure::Unavailable(_))), "{set}");
        }
    }
}
