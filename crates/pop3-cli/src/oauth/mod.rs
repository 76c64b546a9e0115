//! OAuth 2.0 built in: `pop3 auth ACCOUNT` obtains a refresh token ([`authorize()`]), and every
//! login of the account gets an access token from the store, refreshed when it has expired or
//! the server refused it ([`access_token`]).
//!
//! Refresh tokens may be rotated by the provider (a new one with every refresh, the old one
//! revoked at once). The rule kept here: a refresh token the provider answered with is stored
//! durably before anything else happens, before the access token is used, and a refresh runs
//! under the account's lock, so that two runs never spend one refresh token between them. What
//! no client can help: when the provider rotates and its answer is lost (the connection drops,
//! the retriever is killed), the new refresh token was never received and the old one is
//! revoked; the next run then says to run `pop3 auth` again. No mail is touched before the
//! login, so nothing is lost either way.

mod authorize;
mod http;
mod provider;
mod store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth2::basic::{BasicClient, BasicErrorResponse, BasicErrorResponseType};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet,
    RefreshToken, RequestTokenError, TokenResponse, TokenUrl,
};

pub use authorize::{authorize, Flow};
pub use http::{Http, HttpError};
pub use provider::{OAuth, OAuthConfig};
pub use store::{Store, Stored};

use provider::Endpoints;

/// An access token is refreshed this long before it expires: it must still be valid when the
/// server checks it, after the connection and TLS handshake.
const MARGIN: u64 = 60;

/// The `oauth2` client with the endpoints a provider may have.
type OClient = BasicClient<
    EndpointMaybeSet, // authorization
    EndpointMaybeSet, // device authorization
    EndpointNotSet,   // introspection
    EndpointNotSet,   // revocation
    EndpointMaybeSet, // token
>;

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Only the user can help: no tokens yet, or the refresh token was refused (revoked,
    /// expired, issued to another client). The text says to run `pop3 auth`.
    Reauthorize(String),
    /// Anything else: the provider unreachable, a bad answer, a local error.
    Failed(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reauthorize(text) | Self::Failed(text) => f.write_str(text),
        }
    }
}

/// An access token for a login.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The token.
    pub secret: String,
    /// True if it was just issued (a refusal is then not cured by refreshing again).
    pub fresh: bool,
}

/// Now, in unix seconds.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The `oauth2` client for `oauth` at `endpoints`.
fn client(oauth: &OAuth, endpoints: &Endpoints) -> Result<OClient, String> {
    let url_error = |e: oauth2::url::ParseError| e.to_string();
    let mut client = BasicClient::new(ClientId::new(oauth.client_id.clone()))
        .set_auth_uri_option(
            endpoints.authorization.clone().map(AuthUrl::new).transpose().map_err(url_error)?,
        )
        .set_device_authorization_url_option(
            endpoints
                .device
                .clone()
                .map(DeviceAuthorizationUrl::new)
                .transpose()
                .map_err(url_error)?,
        )
        .set_token_uri_option(Some(TokenUrl::new(endpoints.token.clone()).map_err(url_error)?));
    if let Some(secret) = &oauth.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.clone()));
    }
    Ok(client)
}

/// What to tell the user when only a new authorization helps.
fn reauthorize(account: &str, why: &str) -> TokenError {
    TokenError::Reauthorize(format!(
        "{why}; run `pop3 auth {account}` to authorize the account again"
    ))
}

/// A token endpoint's refusal or failure, in words.
fn token_error(e: RequestTokenError<HttpError, BasicErrorResponse>, account: &str) -> TokenError {
    match e {
        // RFC 6749 section 5.2: the refresh token is "invalid, expired, revoked, ... or was
        // issued to another client".
        RequestTokenError::ServerResponse(r)
            if *r.error() == BasicErrorResponseType::InvalidGrant =>
        {
            let why = r.error_description().map(|d| format!(": {d}")).unwrap_or_default();
            reauthorize(
                account,
                &format!("the authorization server refused the stored refresh token (invalid_grant{why}): it was revoked or has expired"),
            )
        }
        e => TokenError::Failed(describe(&e)),
    }
}

/// Any token request's error, in words.
fn describe<T: oauth2::ErrorResponse + 'static>(e: &RequestTokenError<HttpError, T>) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => format!("the authorization server refused: {r}"),
        RequestTokenError::Request(e) => format!("cannot reach the authorization server: {e}"),
        RequestTokenError::Parse(e, body) => format!(
            "the authorization server's answer is not a token response ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
        RequestTokenError::Other(e) => format!("token request: {e}"),
    }
}

/// An access token for `account`: the stored one while it is valid (for [`MARGIN`] more
/// seconds), else a new one got with the refresh token. `refused` is a token the POP3 server
/// refused: it is refreshed even if it has not expired, once.
pub fn access_token(
    account: &str,
    oauth: &OAuth,
    timeout: Duration,
    refused: Option<&str>,
) -> Result<AccessToken, TokenError> {
    let store = Store::new(account);
    let usable = |stored: &Stored| -> Option<AccessToken> {
        let secret = stored.access_token.clone()?;
        let valid = stored.expires_at.is_none_or(|at| at > now() + MARGIN);
        (valid && Some(secret.as_str()) != refused).then_some(AccessToken { secret, fresh: false })
    };
    let stored = load(&store, account, oauth)?;
    if let Some(token) = usable(&stored) {
        return Ok(token);
    }
    // Another run may be refreshing right now: wait for it, then look again.
    let lock = store.lock().map_err(TokenError::Failed)?;
    let stored = load(&store, account, oauth)?;
    if let Some(token) = usable(&stored) {
        return Ok(token);
    }
    let endpoints =
        Endpoints { authorization: None, token: stored.token_endpoint.clone(), device: None };
    let client = client(oauth, &endpoints).map_err(TokenError::Failed)?;
    let http = Http::new(timeout, oauth.proxy.as_ref()).map_err(TokenError::Failed)?;
    let answer = client
        .exchange_refresh_token(&RefreshToken::new(stored.refresh_token.clone()))
        .map_err(|e| TokenError::Failed(e.to_string()))?
        .request(&http)
        .map_err(|e| token_error(e, account))?;
    // Stored before it is used: a rotated refresh token is the only one that still works.
    let renewed = Stored {
        // RFC 6749 section 6: without a new refresh token, the old one stays valid.
        refresh_token: answer
            .refresh_token()
            .map_or(stored.refresh_token.clone(), |r| r.secret().clone()),
        access_token: Some(answer.access_token().secret().clone()),
        expires_at: answer.expires_in().map(|d| now() + d.as_secs()),
        ..stored
    };
    store.save(&lock, &renewed).map_err(|e| {
        TokenError::Failed(format!(
            "storing the refreshed tokens (the refresh token may now be lost): {e}"
        ))
    })?;
    Ok(AccessToken { secret: answer.access_token().secret().clone(), fresh: true })
}

/// The stored tokens, which must exist and come from this provider and client.
fn load(store: &Store, account: &str, oauth: &OAuth) -> Result<Stored, TokenError> {
    let stored = store.load().map_err(TokenError::Failed)?.ok_or_else(|| {
        TokenError::Reauthorize(format!(
            "no OAuth tokens stored in {}; run `pop3 auth {account}` to authorize the account",
            store.path().display()
        ))
    })?;
    if stored.provider != oauth.key() || stored.client_id != oauth.client_id {
        return Err(reauthorize(
            account,
            &format!(
                "the stored tokens were issued by {} to client {}, not by {} to {}",
                stored.provider,
                stored.client_id,
                oauth.key(),
                oauth.client_id
            ),
        ));
    }
    Ok(stored)
}
