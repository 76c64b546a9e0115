//! Accounts: a URL on the command line or a name from `$XDG_CONFIG_HOME/pop3/config.toml`.
//!
//! ```toml
//! [accounts.work]
//! url = "pop3s://alice@pop.example.org"
//! password_command = "pass show mail/work"   # or token_command for OAUTHBEARER/XOAUTH2
//! auth = "auto"                              # scram-sha-256, plain, user, apop, xoauth2...
//! to = "maildir:~/Mail/work"               # or mbox:FILE, mda:CMD, lmtp:HOST:PORT,
//!                                            # lmtp:/SOCKET, smtp:HOST[:PORT]
//! recipient = "alice"                        # lmtp/smtp: RCPT TO (default: $USER)
//! policy = "keep"                            # keep | delete | keep-days:N
//! tls_ca = "/etc/ssl/my-ca.pem"
//! tls_fingerprint = "AB:CD:..."
//! max_size = 10000000                        # octets; larger messages are skipped
//! filter = "grep -qi '^Subject:.*spam' && exit 1 || exit 0"  # header on stdin (filter.rs)
//! proxy = "socks5h://127.0.0.1:9050"         # SOCKS5, the proxy resolving names (Tor)
//! timeout = 60                               # seconds without progress
//! batch = 1024                               # Maildir: messages per durable batch
//! use_umask = false                          # true: files 0666, dirs 0777 less the umask
//! interval = 300                             # fetch --daemon: seconds between polls
//!
//! [accounts.work.oauth]                      # OAuth 2.0 built in (instead of token_command):
//! provider = "microsoft"                     # google | microsoft | oidc (oauth::OAuthConfig)
//! client_id = "..."
//! ```
//!
//! The command line overrides the config file, option by option.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use pop3_client::TlsMode;
use serde::Deserialize;

use crate::oauth::OAuthConfig;

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Accounts by name.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountConfig>,
}

/// One account as written in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub url: String,
    pub password_command: Option<String>,
    pub token_command: Option<String>,
    pub auth: Option<String>,
    pub to: Option<String>,
    pub policy: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_fingerprint: Option<String>,
    #[serde(default)]
    pub no_tls: bool,
    #[serde(default)]
    pub insecure: bool,
    /// `--max-size`: octets.
    pub max_size: Option<u64>,
    /// `--filter`: a command judging each message by its header (see `filter.rs`).
    pub filter: Option<String>,
    /// `--recipient`: who an LMTP or SMTP target delivers to.
    pub recipient: Option<String>,
    /// `--proxy`: a SOCKS5 proxy (`socks5h://HOST:PORT`, see `socks.rs`).
    pub proxy: Option<String>,
    /// `--timeout`: seconds.
    pub timeout: Option<u64>,
    /// `--batch`: messages.
    pub batch: Option<u32>,
    /// `--use-umask`.
    #[serde(default)]
    pub use_umask: bool,
    /// `--interval` (with `--daemon`): seconds.
    pub interval: Option<u64>,
    /// OAuth 2.0: where its tokens come from (`pop3 auth`).
    pub oauth: Option<OAuthConfig>,
}

/// A resolved account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Name shown and used for the state file.
    pub name: String,
    pub user: String,
    pub host: String,
    pub port: Option<u16>,
    pub tls: TlsMode,
    pub config: AccountConfig,
}

/// Where the config file is.
pub fn config_path() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("pop3").join("config.toml")
}

/// Where state files go.
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("pop3")
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(fallback),
    }
}

/// Loads the config file. A missing file is an empty config when it is the default one
/// (accounts can be given as URLs), and an error when it was named (`--config FILE`): a
/// misspelt name must not pass for a file without accounts.
pub fn load(path: &Path, named: bool) -> Result<ConfigFile, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !named => Ok(ConfigFile::default()),
        Err(e) => Err(format!("{}: {}", path.display(), describe(&e))),
    }
}

/// An I/O error in the C library's words ("No such file or directory"), without the
/// " (os error 2)" that Rust appends.
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

/// Parses `pop3://user@host[:port]` (STLS) or `pop3s://user@host[:port]` (implicit TLS).
/// An IPv6 address is written in brackets (`pop3://alice@[::1]:1110`, RFC 3986 section
/// 3.2.2) and returned without them.
pub fn parse_url(url: &str) -> Result<(String, String, Option<u16>, TlsMode), String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("pop3s://") {
        (TlsMode::Implicit, rest)
    } else if let Some(rest) = url.strip_prefix("pop3://") {
        (TlsMode::Stls, rest)
    } else {
        return Err(format!("{url}: expected pop3://user@host[:port] or pop3s://..."));
    };
    let rest = rest.trim_end_matches('/');
    let (user, hostport) =
        rest.rsplit_once('@').ok_or_else(|| format!("{url}: no user name (user@host)"))?;
    let user = percent_decode(user);
    let (host, port) = split_host_port(hostport).map_err(|e| format!("{url}: {e}"))?;
    if user.is_empty() || host.is_empty() {
        return Err(format!("{url}: expected user@host"));
    }
    Ok((user, host, port, tls))
}

/// Splits RFC 3986's `host [ ":" port ]`, where `host` is a name, an IPv4 address or an
/// IP-literal: an IPv6 address in brackets (section 3.2.2), returned without them. An empty
/// port is the scheme's default (section 3.2.3).
pub(crate) fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = match hostport.strip_prefix('[') {
        Some(literal) => {
            let (address, rest) =
                literal.split_once(']').ok_or("an IPv6 address lacks its closing \"]\"")?;
            address
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("bad IPv6 address {address:?}"))?;
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or(format!("unexpected {rest:?}"))?),
            };
            (address, port)
        }
        None => match hostport.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("an IPv6 address must be in brackets: [ADDRESS]:PORT".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        },
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => Some(p.parse().map_err(|_| format!("bad port {p:?}"))?),
        None => None,
    };
    Ok((host.to_owned(), port))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Resolves a command-line account: a URL, or a name from the config.
/// `path` is where `config` was read from, named in errors.
pub fn resolve(arg: &str, config: &ConfigFile, path: &Path) -> Result<Account, String> {
    let (name, account) = if arg.contains("://") {
        (None, AccountConfig { url: arg.to_owned(), ..AccountConfig::default() })
    } else {
        let account = config
            .accounts
            .get(arg)
            .ok_or_else(|| format!("no account {arg:?} in {}", path.display()))?;
        (Some(arg.to_owned()), account.clone())
    };
    let (user, host, port, tls) = parse_url(&account.url).map_err(|e| match &name {
        Some(name) => format!("{name}: url = {e}"),
        None => e,
    })?;
    let name = name.unwrap_or_else(|| {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        if host.contains(':') {
            format!("{user}@[{host}]{port}")
        } else {
            format!("{user}@{host}{port}")
        }
    });
    Ok(Account { name, user, host, port, tls, config: account })
}

/// The account name as a file name.
pub fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "@.-_".contains(c) { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("pop3://alice@pop.example.org").unwrap(),
            ("alice".into(), "pop.example.org".into(), None, TlsMode::Stls)
        );
        assert_eq!(
            parse_url("pop3s://a%40b@127.0.0.1:1995/").unwrap(),
            ("a@b".into(), "127.0.0.1".into(), Some(1995), TlsMode::Implicit)
        );
        assert!(parse_url("imap://a@b").is_err());
        assert!(parse_url("pop3://host").is_err());
        assert!(parse_url("pop3://a@host:").unwrap().2.is_none(), "empty port: the default");
    }

    #[test]
    fn ipv6_literals_in_brackets() {
        let parsed = |url: &str| parse_url(url).map(|(u, h, p, _)| (u, h, p));
        assert_eq!(
            parsed("pop3://alice@[::1]:27110"),
            Ok(("alice".into(), "::1".into(), Some(27110)))
        );
        assert_eq!(parsed("pop3s://alice@[::1]"), Ok(("alice".into(), "::1".into(), None)));
        assert_eq!(
            parsed("pop3://a@[2001:db8::5]:110/"),
            Ok(("a".into(), "2001:db8::5".into(), Some(110)))
        );
        assert_eq!(parsed("pop3://a@[fe80::1]:"), Ok(("a".into(), "fe80::1".into(), None)));
        for bad in [
            "pop3://a@[::1",
            "pop3://a@[::1]x",
            "pop3://a@[::1]:port",
            "pop3://a@[nothost]:110",
            "pop3://a@::1",
            "pop3://a@::1:110",
            "pop3://a@[]:110",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let config = ConfigFile::default();
        let account = resolve("pop3://alice@[::1]:27110", &config, Path::new("c")).unwrap();
        assert_eq!((account.name.as_str(), account.host.as_str()), ("alice@[::1]:27110", "::1"));
    }
}
