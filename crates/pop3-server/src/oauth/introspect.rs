//! A bearer token checked by asking the authorization server (OAuth 2.0 Token Introspection,
//! RFC 7662), as a registered client.
//!
//! Good answers are cached for a short while (never past the token's `exp`), keyed by the
//! token's SHA-256 so that the cache holds no token. Refusals are not cached: a token that is
//! refused costs its sender a failed login (with the penalties that follow) and the
//! authorization server one request, so a guesser cannot make pop3d ask more often than it
//! is itself answered, and a token that became good is not refused from memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use ureq::Agent;

use super::http::post_form;
use super::{claims, Failure, OAuthSettings};

/// Good answers remembered at most (beyond it, answers are not cached until entries expire).
const MAX_CACHED: usize = 10_000;

/// The introspection endpoint and the cache of good answers.
pub(super) struct Introspector {
    url: String,
    client_id: String,
    client_secret: String,
    agent: Agent,
    ttl: Duration,
    /// SHA-256 of a token -> the user it names, and until when that is believed.
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Introspector {
    pub(super) fn new(
        url: String,
        client_id: String,
        client_secret: String,
        agent: Agent,
        ttl: Duration,
    ) -> Self {
        Self { url, client_id, client_secret, agent, ttl, cache: Mutex::default() }
    }

    /// The user `token` names, if the authorization server says it is active and its answer
    /// passes the same checks as a JWT's claims.
    pub(super) fn validate(
        &self,
        token: &str,
        settings: &OAuthSettings,
    ) -> Result<String, Failure> {
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 octets");
        let now = Instant::now();
        if let Some((user, until)) = self.lock().get(&key) {
            if *until > now {
                return Ok(user.clone());
            }
        }
        let answer = self.ask(token)?;
        let (user, expires) = check(&answer, settings)?;
        if !self.ttl.is_zero() {
            let until = now + expires.map_or(self.ttl, |left| left.min(self.ttl));
            let mut cache = self.lock();
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (_, until)| *until > now);
            }
            if cache.len() < MAX_CACHED {
                cache.insert(key, (user.clone(), until));
            }
        }
        Ok(user)
    }

    /// For `check-config`: asks about a token that does not exist; a JSON answer with
    /// `active: false` shows that the endpoint answers and accepts the client's credentials.
    pub(super) fn probe(&self) -> Result<String, String> {
        let answer = self.ask("pop3d-check-config-no-such-token").map_err(|f| match f {
            Failure::Invalid(why) | Failure::Unavailable(why) => why,
        })?;
        match answer.get("active") {
            Some(Value::Bool(false)) => {
                Ok(format!("{} answers and accepts client {:?}", self.url, self.client_id))
            }
            _ => Err(format!("{}: unexpected answer for an unknown token: {answer}", self.url)),
        }
    }

    fn ask(&self, token: &str) -> Result<Value, Failure> {
        post_form(
            &self.agent,
            &self.url,
            (&self.client_id, &self.client_secret),
            &[("token", token), ("token_type_hint", "access_token")],
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (String, Instant)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The user an introspection answer names and how long the token has left, if the answer
/// says the token is active (RFC 7662 §2.2) and its `exp`, `nbf`, `iss` and `aud` (each
/// checked when present) and scopes are right.
fn check(answer: &Value, settings: &OAuthSettings) -> Result<(String, Option<Duration>), Failure> {
    let Some(fields) = answer.as_object() else {
        return Err(Failure::Unavailable("introspection answer is not an object".into()));
    };
    match fields.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(Failure::Invalid("token not active".into())),
        _ => return Err(Failure::Unavailable("introspection answer without \"active\"".into())),
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let skew = settings.clock_skew.as_secs();
    let number = |name: &str| fields.get(name).and_then(Value::as_u64);
    let left = match number("exp") {
        Some(exp) if exp.saturating_add(skew) <= now => {
            return Err(Failure::Invalid("token expired".into()));
        }
        Some(exp) => Some(Duration::from_secs(exp.saturating_sub(now))),
        None => None,
    };
    if number("nbf").is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(Failure::Invalid("token not valid yet (nbf)".into()));
    }
    if let Some(iss) = fields.get("iss") {
        if iss.as_str() != Some(settings.issuer.as_str()) {
            return Err(Failure::Invalid("token from another issuer".into()));
        }
    }
    if !settings.audience.is_empty()
        && fields.contains_key("aud")
        && !claims::audience_matches(fields.get("aud"), &settings.audience)
    {
        return Err(Failure::Invalid("token for another audience".into()));
    }
    let user = claims::user(fields, settings)?;
    Ok((user, left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::TokenCheck;

    fn settings() -> OAuthSettings {
        let mut s = OAuthSettings::new(
            "https://idp",
            vec!["pop3".into()],
            TokenCheck::Introspection {
                url: "https://idp/introspect".into(),
                client_id: "c".into(),
                client_secret: "s".into(),
                cache: Duration::from_secs(60),
            },
        );
        s.user_claim = "username".into();
        s
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn an_active_answer_names_the_user_and_the_time_left() {
        let answer = serde_json::json!({
            "active": true, "username": "alice", "iss": "https://idp", "aud": ["pop3"],
            "exp": now() + 100
        });
        let (user, left) = check(&answer, &settings()).unwrap();
        assert_eq!(user, "alice");
        assert!(
            left.unwrap() <= Duration::from_secs(100) && left.unwrap() >= Duration::from_secs(98)
        );
        // Without exp, iss or aud (each optional in RFC 7662) only the user is needed.
        let bare = serde_json::json!({"active": true, "username": "alice"});
        assert_eq!(check(&bare, &settings()).unwrap(), ("alice".into(), None));
    }

    #[test]
    fn refusals_and_garbage_are_told_apart() {
        let s = settings();
        let invalid = |v: Value| matches!(check(&v, &s), Err(Failure::Invalid(_)));
        let unavailable = |v: Value| matches!(check(&v, &s), Err(Failure::Unavailable(_)));
        assert!(invalid(serde_json::json!({"active": false})));
        assert!(invalid(serde_json::json!({"active": true, "username": "a", "exp": now() - 120})));
        assert!(invalid(serde_json::json!({"active": true, "username": "a", "nbf": now() + 120})));
        assert!(invalid(
            serde_json::json!({"active": true, "username": "a", "iss": "https://other"})
        ));
        assert!(invalid(serde_json::json!({"active": true, "username": "a", "aud": "other"})));
        assert!(invalid(serde_json::json!({"active": true})));
        // Within the clock skew an expired token still passes.
        assert!(check(
            &serde_json::json!({"active": true, "username": "a", "exp": now() - 10}),
            &s
        )
        .is_ok());
        assert!(unavailable(serde_json::json!([1, 2])));
        assert!(unavailable(serde_json::json!({"username": "a"})));
        assert!(unavailable(serde_json::json!({"active": "yes", "username": "a"})));
    }
}
