//! The HTTP client of the OAuth 2.0 requests: ureq (rustls with ring, the web PKI's roots),
//! with the account's timeout, no redirects followed (a token endpoint that redirects is
//! misconfigured, and following it could send the credentials elsewhere), and error statuses
//! handed to `oauth2` as answers (RFC 6749 section 5.2's errors come with 400).

use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse, SyncHttpClient};

/// Answers larger than this are refused: a token response or a discovery document is small.
const MAX_BODY: u64 = 1 << 20;

/// The client.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Http {
    /// A client that gives up after `timeout` for a whole request.
    pub fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("pop3/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Self { agent }
    }

    /// GETs `url` and parses its JSON (an OpenID Connect discovery document).
    pub fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let mut answer = self.agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
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
    type Error = ureq::Error;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, ureq::Error> {
        let answer = self.agent.run(request)?;
        let (parts, mut body) = answer.into_parts();
        let body = body.with_config().limit(MAX_BODY).read_to_vec()?;
        Ok(HttpResponse::from_parts(parts, body))
    }
}
