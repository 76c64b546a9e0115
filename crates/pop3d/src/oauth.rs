//! `[oauth]`: OAuth 2.0 bearer tokens for OAUTHBEARER and XOAUTH2 logins, checked as JWTs
//! against the issuer's keys or by introspection (see `pop3_server::oauth`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pop3_server::oauth::{
    check_url, BearerAuth, KeySource, OAuthSettings, TokenCheck, TokenValidator,
};
use serde::{Deserialize, Serialize};

use crate::config::Loaded;

/// The `[oauth]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthSection {
    pub issuer: String,
    pub audience: Vec<String>,
    pub user_claim: String,
    pub scope: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    pub cache_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub timeout: u64,
    pub clock_skew: u64,
    pub jwks_min_refresh: u64,
    pub jwks_max_age: u64,
    pub allow_unknown_users: bool,
}

impl Default for OAuthSection {
    fn default() -> Self {
        let d = OAuthSettings::new("", Vec::new(), TokenCheck::Jwt { keys: KeySource::Discovery });
        Self {
            issuer: String::new(),
            audience: Vec::new(),
            user_claim: d.user_claim,
            scope: Vec::new(),
            jwks_url: None,
            jwks_file: None,
            introspection_url: None,
            client_id: None,
            client_secret_file: None,
            cache_seconds: 60,
            ca_file: None,
            timeout: d.timeout.as_secs(),
            clock_skew: d.clock_skew.as_secs(),
            jwks_min_refresh: d.jwks_min_refresh.as_secs(),
            jwks_max_age: d.jwks_max_age.as_secs(),
            allow_unknown_users: false,
        }
    }
}

impl OAuthSection {
    /// The checks that need no file or network.
    pub fn validate(&self) -> Result<(), String> {
        let err = |e: String| format!("[oauth] {e}");
        if self.issuer.is_empty() {
            return Err(err("issuer is required (the authorization server's issuer URL)".into()));
        }
        check_url(&self.issuer).map_err(|e| err(format!("issuer: {e}")))?;
        if self.user_claim.is_empty() {
            return Err(err("user_claim is empty".into()));
        }
        if self.timeout == 0 {
            return Err(err("timeout must be at least 1 second".into()));
        }
        match &self.introspection_url {
            Some(url) => {
                check_url(url).map_err(|e| err(format!("introspection_url: {e}")))?;
                if self.jwks_url.is_some() || self.jwks_file.is_some() {
                    return Err(err(
                        "introspection_url, or jwks_url / jwks_file: one way of checking tokens"
                            .into(),
                    ));
                }
                if self.client_id.is_none() || self.client_secret_file.is_none() {
                    return Err(err(
                        "introspection_url needs client_id and client_secret_file".into()
                    ));
                }
            }
            None => {
                if self.jwks_url.is_some() && self.jwks_file.is_some() {
                    return Err(err("jwks_url or jwks_file, not both".into()));
                }
                if let Some(url) = &self.jwks_url {
                    check_url(url).map_err(|e| err(format!("jwks_url: {e}")))?;
                }
                // Without an audience, a token the same issuer made for any other application
                // would open mailboxes.
                if self.audience.is_empty() {
                    return Err(err(
                        "audience is required for JWTs (the aud your tokens carry for pop3d)"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The settings, with paths resolved and the client secret read.
    fn settings(&self, loaded: &Loaded) -> Result<OAuthSettings, String> {
        let check = match &self.introspection_url {
            Some(url) => {
                let secret_path =
                    loaded.resolve(self.client_secret_file.as_ref().expect("validated"));
                let secret = std::fs::read_to_string(&secret_path).map_err(|e| {
                    format!("[oauth] client_secret_file {}: {e}", secret_path.display())
                })?;
                TokenCheck::Introspection {
                    url: url.clone(),
                    client_id: self.client_id.clone().expect("validated"),
                    client_secret: secret.trim_end_matches(['\r', '\n']).to_owned(),
                    cache: Duration::from_secs(self.cache_seconds),
                }
            }
            None => TokenCheck::Jwt {
                keys: match (&self.jwks_url, &self.jwks_file) {
                    (Some(url), _) => KeySource::Url(url.clone()),
                    (None, Some(path)) => KeySource::File(loaded.resolve(path)),
                    (None, None) => KeySource::Discovery,
                },
            },
        };
        let mut settings = OAuthSettings::new(self.issuer.clone(), self.audience.clone(), check);
        settings.user_claim = self.user_claim.clone();
        settings.required_scopes = self.scope.clone();
        settings.clock_skew = Duration::from_secs(self.clock_skew);
        settings.ca_file = self.ca_file.as_ref().map(|p| loaded.resolve(p));
        settings.timeout = Duration::from_secs(self.timeout);
        settings.jwks_min_refresh = Duration::from_secs(self.jwks_min_refresh);
        settings.jwks_max_age = Duration::from_secs(self.jwks_max_age);
        settings.allow_unknown_users = self.allow_unknown_users;
        Ok(settings)
    }

    /// What a refused token's error report names: the required scopes and the discovery URL.
    pub fn error_report(&self) -> pop3_server::BearerErrorReport {
        pop3_server::BearerErrorReport {
            scope: (!self.scope.is_empty()).then(|| self.scope.join(" ")),
            openid_configuration: Some(format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            )),
        }
    }
}

/// The token validator of `[oauth]`, if configured (made once: its key and token caches live
/// as long as the server).
pub fn validator(loaded: &Loaded) -> Result<Option<Arc<TokenValidator>>, String> {
    let Some(section) = &loaded.file.oauth else { return Ok(None) };
    let validator =
        TokenValidator::new(section.settings(loaded)?).map_err(|e| format!("[oauth] {e}"))?;
    Ok(Some(Arc::new(validator)))
}

/// `users`, with bearer tokens checked by `tokens` when `[oauth]` is configured.
pub fn with_tokens(
    users: Arc<dyn pop3_server::Authenticator>,
    tokens: Option<&Arc<TokenValidator>>,
) -> Arc<dyn pop3_server::Authenticator> {
    match tokens {
        Some(tokens) => Arc::new(BearerAuth::new(users, Arc::clone(tokens))),
        None => users,
    }
}

/// `check-config`: the `[oauth]` source answers (the keys fetched, or the introspection
/// endpoint accepting pop3d's client credentials). `Ok(None)` without `[oauth]`.
pub fn check(loaded: &Loaded) -> Result<Option<String>, String> {
    let Some(validator) = validator(loaded)? else { return Ok(None) };
    validator.probe().map(Some).map_err(|e| format!("[oauth] {e}"))
}
