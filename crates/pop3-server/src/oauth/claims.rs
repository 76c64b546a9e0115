//! What a good token's claims must say, whether they come from a JWT or from introspection:
//! the user (a configured claim) and the required scopes.

use serde_json::{Map, Value};

use super::{Failure, OAuthSettings};

/// The user the claims name, once the required scopes are found.
pub(super) fn user(
    claims: &Map<String, Value>,
    settings: &OAuthSettings,
) -> Result<String, Failure> {
    let granted = scopes(claims);
    if let Some(missing) = settings.required_scopes.iter().find(|s| !granted.contains(&s.as_str()))
    {
        return Err(Failure::Invalid(format!("scope {missing:?} not granted")));
    }
    match claims.get(&settings.user_claim) {
        Some(Value::String(user)) if !user.is_empty() => Ok(user.clone()),
        _ => Err(Failure::Invalid(format!("no {:?} claim naming the user", settings.user_claim))),
    }
}

/// The granted scopes: `scope` (RFC 8693 §4.2, RFC 9068 §2.2.3: space-separated) or
/// Microsoft's `scp` (space-separated, or a list).
fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(list)) => out.extend(list.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(list)) => out.extend(list.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// Whether `aud` (a string or a list, RFC 7519 §4.1.3) names one of the accepted audiences.
pub(super) fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> bool {
    match aud {
        Some(Value::String(one)) => accepted.iter().any(|a| a == one),
        Some(Value::Array(list)) => {
            list.iter().filter_map(Value::as_str).any(|one| accepted.iter().any(|a| a == one))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::{KeySource, TokenCheck};

    fn settings(claim: &str, scopes: &[&str]) -> OAuthSettings {
        let mut s = OAuthSettings::new(
            "https://idp",
            vec!["pop3".into()],
            TokenCheck::Jwt { keys: KeySource::Discovery },
        );
        s.user_claim = claim.into();
        s.required_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        s
    }

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_user_comes_from_the_configured_claim() {
        let c = claims(r#"{"email":"a@example.org","preferred_username":"a","sub":"1"}"#);
        assert_eq!(user(&c, &settings("email", &[])).unwrap(), "a@example.org");
        assert_eq!(user(&c, &settings("preferred_username", &[])).unwrap(), "a");
        assert!(matches!(user(&c, &settings("upn", &[])), Err(Failure::Invalid(_))));
        let c = claims(r#"{"email":""}"#);
        assert!(matches!(user(&c, &settings("email", &[])), Err(Failure::Invalid(_))));
        let c = claims(r#"{"email":42}"#);
        assert!(matches!(user(&c, &settings("email", &[])), Err(Failure::Invalid(_))));
    }

    #[test]
    fn every_required_scope_must_be_granted_in_scope_or_scp() {
        let s = settings("email", &["pop3", "email"]);
        let ok = claims(r#"{"email":"a","scope":"openid pop3  email"}"#);
        assert!(user(&ok, &s).is_ok());
        let ok = claims(r#"{"email":"a","scp":["pop3","email"]}"#);
        assert!(user(&ok, &s).is_ok());
        let ok = claims(r#"{"email":"a","scp":"email pop3"}"#);
        assert!(user(&ok, &s).is_ok());
        let short = claims(r#"{"email":"a","scope":"openid pop3"}"#);
        assert_eq!(user(&short, &s), Err(Failure::Invalid("scope \"email\" not granted".into())));
        let none = claims(r#"{"email":"a"}"#);
        assert!(user(&none, &s).is_err());
        // A scope is a whole word, not a prefix.
        let prefix = claims(r#"{"email":"a","scope":"pop3x email"}"#);
        assert!(user(&prefix, &s).is_err());
    }

    #[test]
    fn audiences_match_as_a_string_or_in_a_list() {
        let accepted = ["pop3".to_owned(), "api://mail".to_owned()];
        assert!(audience_matches(Some(&Value::from("pop3")), &accepted));
        assert!(audience_matches(Some(&serde_json::json!(["x", "api://mail"])), &accepted));
        assert!(!audience_matches(Some(&Value::from("pop")), &accepted));
        assert!(!audience_matches(Some(&serde_json::json!(["x"])), &accepted));
        assert!(!audience_matches(None, &accepted));
    }
}
