//! The HTTP client of the OAuth 2.0 requests: ureq (rustls with ring, the web PKI's roots),
//! with the account's timeout, no redirects followed (a token endpoint that redirects is
//! misconfigured, and following it could send the credentials elsewhere), and error statuses
//! handed to `oauth2` as answers (RFC 6749 section 5.2's errors come with 400).
//!
//! An account with a SOCKS5 proxy sends every request through it (discovery, the device and
//! token requests of `pop3 auth`, refreshes), as its POP3 connection: with `socks5h://` the
//! proxy resolves the authorization server's name, so nothing about the account leaves this
//! machine except through the proxy (Tor). Without one, ureq's default applies (the
//! `ALL_PROXY`, `HTTPS_PROXY` and `HTTP_PROXY` variables).

use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse, SyncHttpClient};
use ureq::{Proxy as UreqProxy, ProxyProtocol};

use crate::socks::Proxy;

/// Answers larger than this are refused: a token response or a discovery document is small.
const MAX_BODY: u64 = 1 << 20;

/// The client.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
    /// The proxy, as the error messages name it (`SOCKS5 proxy HOST:PORT`).
    through: Option<String>,
}

impl Http {
    /// A client that gives up after `timeout` for a whole request, and connects through
    /// `proxy` if there is one.
    pub fn new(timeout: Duration, proxy: Option<&Proxy>) -> Result<Self, String> {
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("pop3/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = proxy {
            config = config.proxy(Some(ureq_proxy(proxy)?));
        }
        let through = proxy.map(|p| format!("SOCKS5 proxy {}", host_port(p)));
        Ok(Self { agent: config.build().new_agent(), through })
    }

    /// `error` with the proxy it went through, if any.
    fn error(&self, error: ureq::Error) -> HttpError {
        HttpError { error, through: self.through.clone() }
    }

    /// GETs `url` and parses its JSON (an OpenID Connect discovery document).
    pub fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let call = self.agent.get(url).call();
        let mut answer = call.map_err(|e| format!("{url}: {}", self.error(e)))?;
        let status = answer.status();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }
}

impl SyncHttpClient for Http {
    type Error = HttpError;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let answer = self.agent.run(request).map_err(|e| self.error(e))?;
        let (parts, mut body) = answer.into_parts();
        let body = body.with_config().limit(MAX_BODY).read_to_vec().map_err(|e| self.error(e))?;
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// A request that failed, and the proxy it went through: a connection the proxy refused or
/// could not make is told apart from an authorization server that is down.
#[derive(Debug)]
pub struct HttpError {
    error: ureq::Error,
    through: Option<String>,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.through {
            Some(proxy) => write!(f, "{} (through the {proxy})", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// `HOST:PORT` of `proxy`, an IPv6 address in brackets.
fn host_port(proxy: &Proxy) -> String {
    if proxy.host.contains(':') {
        format!("[{}]:{}", proxy.host, proxy.port)
    } else {
        format!("{}:{}", proxy.host, proxy.port)
    }
}

/// `proxy` for ureq: `socks5h` hands it the names to resolve, `socks5` resolves them here (as
/// the POP3 connection does, `socks.rs`), with its RFC 1929 login if any.
fn ureq_proxy(proxy: &Proxy) -> Result<UreqProxy, String> {
    let protocol = if proxy.remote_dns { ProxyProtocol::Socks5h } else { ProxyProtocol::Socks5 };
    let host =
        if proxy.host.contains(':') { format!("[{}]", proxy.host) } else { proxy.host.clone() };
    let mut builder = UreqProxy::builder(protocol).host(&host).port(proxy.port);
    if let Some((user, password)) = &proxy.login {
        builder = builder.username(user).password(password);
    }
    builder.build().map_err(|e| format!("SOCKS5 proxy {}: {e}", host_port(proxy)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accounts_proxy_is_given_to_ureq_as_configured() {
        for (url, protocol, resolves_here) in [
            ("socks5h://127.0.0.1:9050", ProxyProtocol::Socks5h, false),
            ("socks5://user:p%40ss:w@proxy.example:1080", ProxyProtocol::Socks5, true),
            ("socks5h://[::1]:1081", ProxyProtocol::Socks5h, false),
        ] {
            let proxy = Proxy::parse(url).unwrap();
            let converted = ureq_proxy(&proxy).unwrap();
            assert_eq!(converted.protocol(), protocol, "{url}");
            assert_eq!(converted.resolve_target(), resolves_here, "{url}");
            assert_eq!(converted.port(), proxy.port, "{url}");
            assert_eq!(
                converted.username(),
                proxy.login.as_ref().map(|(u, _)| u.as_str()),
                "{url}"
            );
            assert_eq!(
                converted.password(),
                proxy.login.as_ref().map(|(_, p)| p.as_str()),
                "{url}"
            );
        }
    }
}
