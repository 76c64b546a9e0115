//! `pop3 auth ACCOUNT`: the user authorizes the retriever once, and the refresh token the
//! provider issues is stored.
//!
//! Two flows: the authorization code grant with PKCE (RFC 7636, S256) and a loopback redirect
//! (RFC 8252 section 7.3: `http://127.0.0.1:PORT/` on a port chosen by the system), for a
//! machine with a browser; and the device authorization grant (RFC 8628) for one without, where
//! the user opens a URL on another device and types a code.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use oauth2::basic::BasicTokenResponse;
use oauth2::DeviceCodeErrorResponseType;
use oauth2::{
    CsrfToken, PkceCodeChallenge, RedirectUrl, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, TokenResponse,
};

use super::{client, describe, now, Http, OAuth, Store, Stored};

/// How the user authorizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// A browser on this machine, redirected back to a loopback port.
    Browser,
    /// A code typed on another device (RFC 8628).
    Device,
}

/// Runs `flow` for `account` and stores its tokens; waits at most `wait` for the user.
/// `timeout` bounds each request to the provider.
pub fn authorize(
    account: &str,
    oauth: &OAuth,
    flow: Flow,
    wait: Duration,
    timeout: Duration,
) -> Result<(), String> {
    let http = Http::new(timeout, oauth.proxy.as_ref())?;
    let endpoints = oauth.endpoints(&http)?;
    let client = client(oauth, &endpoints)?;
    let scopes = oauth.scopes.iter().map(|s| Scope::new(s.clone()));
    let answer = match flow {
        Flow::Browser => {
            if endpoints.authorization.is_none() {
                return Err("the provider has no authorization endpoint: use --device".into());
            }
            browser(account, &client, scopes, oauth.extra_authorization_params(), wait, &http)?
        }
        Flow::Device => {
            if endpoints.device.is_none() {
                return Err(
                    "the provider has no device authorization endpoint: authorize in a browser (without --device)"
                        .into(),
                );
            }
            device(account, &client, scopes, wait, &http)?
        }
    };
    let refresh_token = answer.refresh_token().ok_or(
        "the provider issued no refresh token, so every fetch would need a new authorization \
         (for a generic provider, ask for the offline_access scope)",
    )?;
    let store = Store::new(account);
    let lock = store.lock()?;
    let stored = Stored {
        provider: oauth.key(),
        client_id: oauth.client_id.clone(),
        token_endpoint: endpoints.token,
        refresh_token: refresh_token.secret().clone(),
        access_token: Some(answer.access_token().secret().clone()),
        expires_at: answer.expires_in().map(|d| now() + d.as_secs()),
    };
    store.save(&lock, &stored)?;
    eprintln!("pop3: {account}: authorized; tokens stored in {}", store.path().display());
    Ok(())
}

/// The authorization code grant with PKCE and a loopback redirect.
fn browser(
    account: &str,
    client: &super::OClient,
    scopes: impl Iterator<Item = Scope>,
    extra: &[(&str, &str)],
    wait: Duration,
    http: &Http,
) -> Result<BasicTokenResponse, String> {
    // RFC 8252 section 7.3: the loopback IP literal rather than "localhost" (section 8.3), on
    // any free port.
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("127.0.0.1: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let redirect = format!("http://127.0.0.1:{port}/");
    let client = client
        .clone()
        .set_redirect_uri(RedirectUrl::new(redirect.clone()).map_err(|e| e.to_string())?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .map_err(|e| e.to_string())?
        .add_scopes(scopes)
        .set_pkce_challenge(challenge);
    for (name, value) in extra {
        request = request.add_extra_param(*name, *value);
    }
    let (url, state) = request.url();
    eprintln!("pop3: to authorize {account}, open this URL in a browser:\n\n  {url}\n");
    open_browser(url.as_str());
    eprintln!(
        "pop3: waiting up to {} s for the browser to come back to {redirect}",
        wait.as_secs()
    );
    let code = redirected(&listener, state.secret(), wait)?;
    client
        .exchange_code(oauth2::AuthorizationCode::new(code))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(verifier)
        .request(http)
        .map_err(|e| describe(&e))
}

/// Opens `url` with `xdg-open` when there is a display to show a browser on; otherwise the
/// printed URL is for the user to open.
fn open_browser(url: &str) {
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    if display {
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Waits for the browser's request to the loopback redirect URI and returns its `code`,
/// after checking that its `state` is the one sent (RFC 6749 section 10.12: a request from
/// anyone else is not accepted).
fn redirected(listener: &TcpListener, state: &str, wait: Duration) -> Result<String, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + wait;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "no answer from the browser within {} s (--wait SECONDS waits longer)",
                        wait.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(format!("loopback redirect: {e}")),
        };
        match answer(stream, state) {
            Redirect::Code(code) => return Ok(code),
            Redirect::Refused(why) => return Err(why),
            Redirect::Other => {}
        }
    }
}

/// What a request to the loopback listener was.
enum Redirect {
    /// The authorization code, with the right state.
    Code(String),
    /// The provider's refusal, or a redirect with another state.
    Refused(String),
    /// Something else (a browser asking for /favicon.ico).
    Other,
}

/// Reads one HTTP request from the browser and answers it.
fn answer(stream: TcpStream, state: &str) -> Redirect {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.by_ref().take(8192).read_line(&mut line).is_err() {
        return Redirect::Other;
    }
    // The rest of the header, unread, would make some browsers show an error.
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if !reader.by_ref().take(8192).read_line(&mut header).is_ok_and(|n| n > 2) {
            break;
        }
    }
    let target = line.split(' ').nth(1).unwrap_or_default();
    let parsed = oauth2::url::Url::parse(&format!("http://127.0.0.1{target}")).ok();
    let param = |name: &str| {
        parsed
            .as_ref()
            .and_then(|u| u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()))
    };
    let result = if !line.starts_with("GET ") || parsed.as_ref().is_none_or(|u| u.path() != "/") {
        Redirect::Other
    } else if param("state").as_deref() != Some(state) {
        Redirect::Refused(
            "the redirect's state is not the one sent (a request forged or from an older run): refused"
                .into(),
        )
    } else if let Some(error) = param("error") {
        // RFC 6749 section 4.1.2.1: access_denied when the user said no.
        let description = param("error_description").map(|d| format!(": {d}")).unwrap_or_default();
        Redirect::Refused(format!("the authorization was refused ({error}{description})"))
    } else if let Some(code) = param("code") {
        Redirect::Code(code)
    } else {
        Redirect::Refused("the redirect has neither code nor error".into())
    };
    let (status, text) = match &result {
        Redirect::Code(_) => ("200 OK", "pop3 is authorized. You may close this window."),
        Redirect::Refused(_) => ("400 Bad Request", "pop3 is not authorized; see the terminal."),
        Redirect::Other => ("404 Not Found", "Not found."),
    };
    let body = format!("<!doctype html><html><body><p>{text}</p></body></html>\n");
    let _ = write!(
        &stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    result
}

/// The device authorization grant: the user opens the verification URI elsewhere and enters
/// the code; meanwhile the token endpoint is polled every `interval` seconds (RFC 8628
/// section 3.5: `authorization_pending` goes on, `slow_down` adds 5 s, `access_denied` and
/// `expired_token` end it).
fn device(
    account: &str,
    client: &super::OClient,
    scopes: impl Iterator<Item = Scope>,
    wait: Duration,
    http: &Http,
) -> Result<BasicTokenResponse, String> {
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .map_err(|e| e.to_string())?
        .add_scopes(scopes)
        .request(http)
        .map_err(|e| describe(&e))?;
    eprintln!(
        "pop3: to authorize {account}, open {} on any device and enter the code\n\n  {}\n",
        details.verification_uri().as_str(),
        details.user_code().secret()
    );
    if let Some(complete) = details.verification_uri_complete() {
        eprintln!("pop3: or open {}", complete.secret());
    }
    let wait = wait.min(details.expires_in());
    eprintln!("pop3: waiting up to {} s for the approval", wait.as_secs());
    client
        .exchange_device_access_token(&details)
        .map_err(|e| e.to_string())?
        .request(http, std::thread::sleep, Some(wait))
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => match r.error() {
                DeviceCodeErrorResponseType::AccessDenied => {
                    "the authorization was refused (access_denied)".to_owned()
                }
                DeviceCodeErrorResponseType::ExpiredToken => format!(
                    "the code expired before it was approved (expired_token); run `pop3 auth --device {account}` again"
                ),
                _ => format!("the authorization server refused: {r}"),
            },
            e => describe(&e),
        })
}
