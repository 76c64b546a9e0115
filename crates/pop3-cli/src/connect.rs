//! Reaching the server: connection options from the account's settings, the secret (from
//! the environment, a command, `~/.netrc`, a prompt, or the OAuth 2.0 token store), login, and an error
//! that says how to trust a certificate nobody vouches for.

use std::io::IsTerminal;

use pop3_client::{AuthMethod, Client, ConnectOptions, TlsMode};

use crate::oauth::{self, OAuth};
use crate::settings::Settings;
use crate::socks;

/// The password (or token) for the account.
fn secret(settings: &Settings, bearer: bool) -> Result<String, String> {
    let account = &settings.account;
    let command = if bearer {
        account.config.token_command.clone()
    } else {
        settings.password_command.clone()
    };
    if !bearer {
        if let Ok(p) = std::env::var("POP3_PASSWORD") {
            return Ok(p);
        }
    }
    if let Some(command) = command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("{command}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{command}: {}", out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if bearer {
        return Err("OAuth2 needs token_command in the config".into());
    }
    // After password_command, before the prompt: the netrc's entry for the host and user.
    if let Some(path) = crate::netrc::path() {
        if let Some(password) = crate::netrc::password(&path, &account.host, &account.user)? {
            return Ok(password);
        }
    }
    prompt(&format!("Password for {}: ", account.name))
}

/// Reads a password from the terminal without echo.
fn prompt(text: &str) -> Result<String, String> {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err("no password: set POP3_PASSWORD, password_command, a ~/.netrc entry or run on a terminal".into());
    }
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let fd = rustix::stdio::stdin();
    let saved = rustix::termios::tcgetattr(fd).map_err(|e| e.to_string())?;
    let mut silent = saved.clone();
    silent.local_modes.remove(rustix::termios::LocalModes::ECHO);
    let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &silent);
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &saved);
    eprintln!();
    read.map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Commands kept in flight when the server pipelines (the library's default is 16). Each
/// message costs the retriever local work (a file created and written) while the server has
/// only to send it; a deeper queue lets the server keep sending while the retriever is busy,
/// instead of idling once it has answered everything asked. Fetching 5,000 messages of 20 KiB
/// from Dovecot into a Maildir on disk, eight alternating runs each: median 0.81 s with 64,
/// 0.91 s with 16. The commands are a few octets each, far below any socket buffer.
const PIPELINE_WINDOW: usize = 64;

/// Connects and logs in as the account says.
pub async fn connect(settings: &Settings) -> Result<Client, String> {
    if let Some(oauth) = &settings.oauth {
        return connect_oauth(settings, oauth).await;
    }
    let method = settings.auth;
    let bearer = matches!(method, AuthMethod::OAuthBearer | AuthMethod::XOAuth2);
    let secret = secret(settings, bearer)?;
    let mut client = open(settings).await?;
    client.login(&settings.account.user, &secret, method).await.map_err(|e| e.to_string())?;
    Ok(client)
}

/// Logs in with an access token from the store (refreshed first if it has expired). A token
/// the server refuses (RFC 7628 section 3.2.2's error, then `-ERR`) may have been revoked or
/// have lost its validity early: it is refreshed once, and the login tried again on a new
/// connection.
///
/// The token requests block this thread; the runtime has nothing else to run meanwhile (one
/// account at a time).
async fn connect_oauth(settings: &Settings, oauth: &OAuth) -> Result<Client, String> {
    let account = &settings.account;
    let token = oauth::access_token(&account.name, oauth, settings.timeout, None)
        .map_err(|e| e.to_string())?;
    let mut client = open(settings).await?;
    let refused = match client.login(&account.user, &token.secret, settings.auth).await {
        Ok(_) => return Ok(client),
        Err(e) if refused(&e) && !token.fresh => e,
        Err(e) => return Err(e.to_string()),
    };
    drop(client);
    let token = oauth::access_token(&account.name, oauth, settings.timeout, Some(&token.secret))
        .map_err(|e| format!("the server refused the access token ({refused}); {e}"))?;
    let mut client = open(settings).await?;
    client.login(&account.user, &token.secret, settings.auth).await.map_err(|e| {
        format!("{e} (with an access token just issued: check the account's user name, scopes and mechanism)")
    })?;
    Ok(client)
}

/// True for a login the server refused (rather than a connection that failed).
fn refused(e: &pop3_client::Error) -> bool {
    matches!(e, pop3_client::Error::Server { .. } | pop3_client::Error::AuthFailed(_))
}

/// Connects (TLS as the account says), without logging in.
async fn open(settings: &Settings) -> Result<Client, String> {
    let account = &settings.account;
    let mut options = ConnectOptions::new(account.host.clone());
    options.port = account.port;
    options.pipeline_window = PIPELINE_WINDOW;
    options.tls = settings.tls;
    options.timeout = settings.timeout;
    options.connect_timeout = options.timeout;
    options.tls_options.extra_ca_file = settings.tls_ca.clone();
    options.tls_options.pinned_sha256 = settings.pin.into_iter().collect();
    options.tls_options.danger_accept_invalid_certs = settings.insecure;
    let connected = match &settings.proxy {
        None => Client::connect(&options).await,
        Some(proxy) => {
            let port = options.port();
            let tcp = socks::connect(proxy, &account.host, port, settings.timeout).await?;
            Client::connect_over(&options, tcp).await
        }
    };
    connected.map_err(|e| connect_error(&e, settings))
}

/// A failed connection's error; for a certificate whose issuer is not trusted (a self-signed
/// one, often), with the ways to trust it and the command that shows its fingerprint.
fn connect_error(e: &pop3_client::Error, settings: &Settings) -> String {
    if !e.is_unknown_issuer() {
        return e.to_string();
    }
    let account = &settings.account;
    let port = account.port.unwrap_or_else(|| settings.tls.default_port());
    let host = if account.host.contains(':') {
        format!("[{}]", account.host) // an IPv6 address, as openssl wants it
    } else {
        account.host.clone()
    };
    let starttls = if settings.tls == TlsMode::Stls { " -starttls pop3" } else { "" };
    format!(
        "{e}\n  The server's certificate is not issued by a CA this system trusts. If it is the \
         server's own (a self-signed one, say), trust it with --tls-ca FILE (the certificate, or \
         the CA that issued it, in PEM), or pin it with --tls-fingerprint SHA256 (tls_ca or \
         tls_fingerprint in the config file). Its SHA-256 fingerprint, to compare with the one \
         the server's administrator gives:\n    openssl s_client -connect {host}:{port}{starttls} \
         </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    )
}
