//! OAuth 2.0 bearer tokens for SASL OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's and
//! Microsoft's older mechanism): a token is checked either locally, as a signed JWT against
//! the authorization server's published keys (RFC 7517 JWKS, RFC 7519, RFC 9068), or by
//! asking the server (token introspection, RFC 7662). Either way the result is the user the
//! token names (a configured claim, e.g. `email`), which must then be known to the users
//! backend unless the operator allows any user.
//!
//! The checks block (HTTP to the authorization server, signature checks), so they run on the
//! server's bounded threads for checks that wait on another server
//! ([`Authenticator::is_remote`]), apart from the password-hash threads. A token is a
//! credential and never reaches a log: failures are logged by what was wrong with it.
//!
//! Failure modes: a token that is malformed, expired, for another audience or issuer, signed
//! by an unknown key or lacking the required scope is refused (`-ERR [AUTH]` after the
//! RFC 7628 §3.2.2 error report); an authorization server that cannot be reached, is slow
//! (every request has a timeout) or answers garbage is a temporary failure
//! (`-ERR [SYS/TEMP]`): never a successful login.

mod claims;
mod http;
mod introspect;
mod jwks;
mod jwt;
mod settings;

use std::sync::Arc;

use pop3_proto::sasl::ScramKeys;
use pop3_proto::server::AuthRequest;

pub use http::check_url;
pub use settings::{KeySource, OAuthSettings, TokenCheck};

use crate::{valid_username, AuthError, Authenticator, UserInfo};

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The token is not good (logged with this reason): `-ERR [AUTH]`.
    Invalid(String),
    /// The authorization server could not answer: `-ERR [SYS/TEMP]`.
    Unavailable(String),
}

/// Checks bearer tokens as configured: the validator half of [`BearerAuth`], kept across
/// reloads of the users backend so that its key and token caches survive them.
#[derive(Debug)]
pub struct TokenValidator {
    settings: OAuthSettings,
    check: Check,
}

#[derive(Debug)]
enum Check {
    Jwt(jwks::KeyStore),
    Introspection(introspect::Introspector),
}

impl TokenValidator {
    /// A validator for `settings`. Fails only on local problems (an unreadable CA file);
    /// nothing is fetched before the first token arrives.
    pub fn new(settings: OAuthSettings) -> Result<Self, String> {
        let agent = http::agent(settings.ca_file.as_deref(), settings.timeout)?;
        let check = match &settings.check {
            TokenCheck::Jwt { keys } => Check::Jwt(jwks::KeyStore::new(
                keys.clone(),
                settings.issuer.clone(),
                agent,
                settings.jwks_min_refresh,
                settings.jwks_max_age,
            )),
            TokenCheck::Introspection { url, client_id, client_secret, cache } => {
                Check::Introspection(introspect::Introspector::new(
                    url.clone(),
                    client_id.clone(),
                    client_secret.clone(),
                    agent,
                    *cache,
                ))
            }
        };
        Ok(Self { settings, check })
    }

    /// The settings this validator was made with.
    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// The user `token` names, if it is good.
    pub(crate) fn user(&self, token: &str) -> Result<String, Failure> {
        match &self.check {
            Check::Jwt(keys) => jwt::validate(token, keys, &self.settings),
            Check::Introspection(server) => server.validate(token, &self.settings),
        }
    }

    /// What `check-config` reports: the keys are fetched (or the file read), or the
    /// introspection endpoint is asked about a token that does not exist, with the client's
    /// credentials. `Ok` says what was found.
    pub fn probe(&self) -> Result<String, String> {
        match &self.check {
            Check::Jwt(keys) => keys.probe(),
            Check::Introspection(server) => server.probe(),
        }
    }
}

/// A users backend that also accepts bearer tokens: OAUTHBEARER and XOAUTH2 logins are
/// checked by the [`TokenValidator`], then the user the token names is looked up in `users`;
/// every other login goes to `users` unchanged.
#[derive(Debug, Clone)]
pub struct BearerAuth {
    users: Arc<dyn Authenticator>,
    tokens: Arc<TokenValidator>,
}

impl BearerAuth {
    /// `users` with bearer tokens checked by `tokens`.
    pub fn new(users: Arc<dyn Authenticator>, tokens: Arc<TokenValidator>) -> Self {
        Self { users, tokens }
    }

    fn bearer(&self, claimed: &str, token: &str) -> Result<UserInfo, AuthError> {
        let user = match self.tokens.user(token) {
            Ok(user) => user,
            Err(Failure::Invalid(why)) => {
                tracing::warn!(user = claimed, reason = %why, "bearer token refused");
                return Err(AuthError::Rejected);
            }
            Err(Failure::Unavailable(why)) => {
                return Err(AuthError::Temporary(format!("OAuth 2.0 server: {why}")));
            }
        };
        // OAUTHBEARER's authzid may be left out (the token names the user); XOAUTH2's user=
        // is always there. Mail addresses differ in case between clients and directories.
        if !claimed.is_empty() && !claimed.eq_ignore_ascii_case(&user) {
            tracing::warn!(user = claimed, token_user = %user, "bearer token is for another user");
            return Err(AuthError::Rejected);
        }
        if !valid_username(&user) {
            tracing::warn!(token_user = %user, "bearer token names an invalid user name");
            return Err(AuthError::Rejected);
        }
        match self.users.user(&user)? {
            Some(info) => Ok(info),
            None if self.tokens.settings.allow_unknown_users => Ok(UserInfo::new(user)),
            None => {
                tracing::warn!(token_user = %user, "bearer token is good but names no known user");
                Err(AuthError::Rejected)
            }
        }
    }
}

impl Authenticator for BearerAuth {
    fn authenticate(&self, request: &AuthRequest) -> Result<UserInfo, AuthError> {
        match request {
            AuthRequest::Bearer { username, token, .. } => self.bearer(username, token.expose()),
            other => self.users.authenticate(other),
        }
    }

    fn user(&self, name: &str) -> Result<Option<UserInfo>, AuthError> {
        self.users.user(name)
    }

    fn scram_keys(&self, username: &str) -> Option<ScramKeys> {
        self.users.scram_keys(username)
    }

    /// A token is checked by asking the authorization server (introspection) or against keys
    /// fetched from it (a JWKS URL, refetched for an unknown key id); other requests go to the
    /// users backend behind.
    fn is_remote(&self, request: &AuthRequest) -> bool {
        matches!(request, AuthRequest::Bearer { .. }) || self.users.is_remote(request)
    }

    /// A token is never quick; other requests are as quick as the users backend behind.
    fn authenticate_quick(&self, request: &AuthRequest) -> Option<Result<UserInfo, AuthError>> {
        match request {
            AuthRequest::Bearer { .. } => None,
            other => self.users.authenticate_quick(other),
        }
    }
}
