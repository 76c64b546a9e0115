//! The HTTP client for the authorization server: HTTPS with rustls (the public roots, or a
//! private CA), a timeout on every request, and answers read with a size limit.

use std::path::Path;
use std::time::Duration;

use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use super::Failure;

/// The largest answer read (a JWKS of many keys is a few KiB; an introspection answer less).
const MAX_ANSWER: u64 = 1024 * 1024;

/// A client whose requests each end within `timeout`, trusting `ca_file`'s certificates if
/// given, else the public (Mozilla) roots.
pub(super) fn agent(ca_file: Option<&Path>, timeout: Duration) -> Result<Agent, String> {
    let roots = match ca_file {
        None => RootCerts::WebPki,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certs: Vec<_> = parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(cert)) => Some(Ok(cert)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no PEM certificate", path.display()));
            }
            RootCerts::from(certs)
        }
    };
    Ok(Agent::config_builder()
        .timeout_global(Some(timeout))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .user_agent(concat!("pop3d/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent())
}

/// GETs `url` and parses the answer as JSON.
pub(super) fn get_json(agent: &Agent, url: &str) -> Result<serde_json::Value, Failure> {
    let answer = agent.get(url).header("Accept", "application/json").call();
    read_json(url, answer)
}

/// POSTs `form` to `url` with HTTP Basic client authentication and parses the answer as JSON.
pub(super) fn post_form(
    agent: &Agent,
    url: &str,
    (client_id, client_secret): (&str, &str),
    form: &[(&str, &str)],
) -> Result<serde_json::Value, Failure> {
    use base64::Engine as _;
    // RFC 6749 §2.3.1: the id and secret are form-urlencoded before they are joined.
    let credentials = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
    let answer = agent
        .post(url)
        .header("Accept", "application/json")
        .header("Authorization", &format!("Basic {basic}"))
        .send_form(form.iter().copied());
    read_json(url, answer)
}

fn read_json(
    url: &str,
    answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<serde_json::Value, Failure> {
    let unavailable = |what: String| Failure::Unavailable(format!("{url}: {what}"));
    let mut answer = answer.map_err(|e| unavailable(e.to_string()))?;
    let body = answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| unavailable(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| unavailable(format!("not JSON: {e}")))
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B).
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_form_encoded() {
        assert_eq!(form_encode("pop3-client_1.x*"), "pop3-client_1.x*");
        assert_eq!(form_encode("a b:c/ä"), "a+b%3Ac%2F%C3%A4");
    }
}

/// An authorization server URL pop3d may use: HTTPS, or plain HTTP to a loopback host (a
/// token or client secret must not cross a network in clear).
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback =
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if loopback => Ok(()),
        Some("http") => Err(format!("{url:?}: plain http only to a loopback host; use https")),
        _ => Err(format!("{url:?}: not an https URL")),
    }
}

#[cfg(test)]
mod url_tests {
    use super::check_url;

    #[test]
    fn https_anywhere_http_on_loopback_only() {
        assert!(check_url("https://login.example.org/keys").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://[::1]:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://idp.example.org/jwks").is_err());
        assert!(check_url("ftp://idp.example.org/jwks").is_err());
        assert!(check_url("not a url").is_err());
    }
}
