//! What one run does with one account: the command line over the account's entry in the
//! config file over the defaults. Everything is checked here, before any server is
//! contacted, so that a mistake in either is a usage error (exit 2) and not a failure found
//! half-way through a run of several accounts.

use std::path::PathBuf;
use std::time::Duration;

use pop3_client::{parse_fingerprint, AuthMethod, TlsMode};

use crate::args::{Cmd, FetchArgs};
use crate::config::Account;
use crate::deliver::{Modes, Target};
use crate::oauth::OAuth;
use crate::socks::Proxy;

/// Seconds without progress before giving up, unless set.
const DEFAULT_TIMEOUT: u64 = 60;
/// Maildir messages per durable batch, unless set.
const DEFAULT_BATCH: u32 = 1024;
/// Seconds between two polls of an account in daemon mode, unless set.
const DEFAULT_INTERVAL: u64 = 300;

/// When messages are deleted on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Never.
    Keep,
    /// Once stored locally.
    Delete,
    /// This many days after they were first seen, once stored locally.
    KeepDays(u64),
}

impl Policy {
    /// Parses `keep`, `delete` or `keep-days:N`, as the config file writes them.
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "keep" => Ok(Self::Keep),
            "delete" => Ok(Self::Delete),
            _ => text
                .strip_prefix("keep-days:")
                .and_then(|n| n.parse().ok())
                .map(Self::KeepDays)
                .ok_or_else(|| format!("policy {text:?}: expected keep, delete or keep-days:N")),
        }
    }
}

/// The settings of one account for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The account: where to connect and who logs in.
    pub account: Account,
    /// Plain, STLS or implicit TLS.
    pub tls: TlsMode,
    /// Extra trusted certificates.
    pub tls_ca: Option<PathBuf>,
    /// The only certificate accepted, by SHA-256 fingerprint.
    pub pin: Option<[u8; 32]>,
    /// No certificate verification at all.
    pub insecure: bool,
    /// The login method.
    pub auth: AuthMethod,
    /// The command printing the password.
    pub password_command: Option<String>,
    /// OAuth 2.0 built in: tokens from the store, refreshed as needed.
    pub oauth: Option<OAuth>,
    /// Longest wait without progress.
    pub timeout: Duration,
    /// A SOCKS5 proxy to connect through.
    pub proxy: Option<Proxy>,
    /// Messages larger than this (octets) are not fetched, and not counted as new.
    pub max_size: Option<u64>,
    /// What `fetch` does (`None` for the other commands).
    pub fetch: Option<Fetch>,
}

/// The settings of `fetch`.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Where mail goes.
    pub target: Target,
    /// When messages are deleted on the server.
    pub policy: Policy,
    /// Maildir messages per durable batch.
    pub batch: u32,
    /// The permissions of created Maildir files and directories.
    pub modes: Modes,
    /// Daemon mode: time between two polls.
    pub interval: Duration,
    /// The command that judges each message by its header before it is downloaded.
    pub filter: Option<String>,
}

impl Settings {
    /// The settings of `account` for `cmd`.
    pub fn new(cmd: &Cmd, account: Account) -> Result<Self, String> {
        let common = cmd.common();
        let config = &account.config;
        let tls = if common.no_tls || config.no_tls {
            if account.tls == TlsMode::Implicit {
                return Err(format!("{}: --no-tls with a pop3s:// URL", account.name));
            }
            TlsMode::None
        } else {
            account.tls
        };
        let pin = match common.tls_fingerprint.as_ref().or(config.tls_fingerprint.as_ref()) {
            Some(fp) => Some(parse_fingerprint(fp).ok_or_else(|| {
                format!("bad fingerprint {fp:?}: expected 64 hex digits (SHA-256), colons allowed")
            })?),
            None => None,
        };
        let auth = match common.auth.as_ref().or(config.auth.as_ref()) {
            Some(name) => AuthMethod::from_name(name).ok_or_else(|| {
                format!(
                    "unknown auth {name:?}: expected auto, scram-sha-256, plain, login, \
                     cram-md5, user, apop, oauthbearer or xoauth2"
                )
            })?,
            None => AuthMethod::Auto,
        };
        let proxy = common
            .proxy
            .as_ref()
            .or(config.proxy.as_ref())
            .map(|url| Proxy::parse(url))
            .transpose()?;
        // The token requests go where the POP3 connection goes: through the proxy.
        let oauth = config.oauth.as_ref().map(OAuth::new).transpose()?;
        let oauth = oauth.map(|oauth| oauth.through(proxy.clone()));
        // With OAuth the login presents a token: the mechanism is the provider's, unless
        // --auth (or auth) names the other bearer one.
        let auth = match (&oauth, auth) {
            (None, auth) => auth,
            (Some(_), AuthMethod::OAuthBearer | AuthMethod::XOAuth2) => auth,
            (Some(oauth), AuthMethod::Auto) => oauth.mechanism,
            (Some(_), _) => {
                return Err("an [oauth] account logs in with oauthbearer or xoauth2, not a password                             method (remove auth, or set oauth.mechanism)"
                    .into())
            }
        };
        if oauth.is_some() && config.token_command.is_some() {
            return Err("token_command and [oauth] both give tokens: keep one".into());
        }
        let (fetch, max_size) = match cmd {
            Cmd::Fetch(args) => (Some(Fetch::new(args, &account)?), args.max_size),
            _ => (None, None),
        };
        // `check` and `list` have no --max-size, but the account's limit says what is new.
        let max_size = max_size.or(config.max_size);
        let timeout = common.timeout.or(config.timeout).unwrap_or(DEFAULT_TIMEOUT);
        if timeout == 0 {
            return Err("timeout = 0: expected at least 1 (seconds)".into());
        }
        Ok(Self {
            tls,
            tls_ca: common.tls_ca.clone().or_else(|| config.tls_ca.clone()),
            pin,
            insecure: common.insecure || config.insecure,
            auth,
            password_command: common
                .password_command
                .clone()
                .or_else(|| config.password_command.clone()),
            oauth,
            timeout: Duration::from_secs(timeout),
            proxy,
            max_size,
            fetch,
            account,
        })
    }
}

impl Settings {
    /// True for a message too large to be fetched.
    pub fn too_large(&self, size: u64) -> bool {
        self.max_size.is_some_and(|max| size > max)
    }
}

impl Fetch {
    fn new(args: &FetchArgs, account: &Account) -> Result<Self, String> {
        let config = &account.config;
        let policy = if args.delete {
            Policy::Delete
        } else if let Some(days) = args.keep_days {
            Policy::KeepDays(days)
        } else if args.keep {
            Policy::Keep
        } else {
            config.policy.as_deref().map_or(Ok(Policy::Keep), Policy::parse)?
        };
        let mut target = match (&args.to, &config.to) {
            (Some(to), _) => Target::parse(to).map_err(|e| format!("--to {e}"))?,
            (None, Some(to)) => Target::parse(to).map_err(|e| format!("to = {e}"))?,
            (None, None) => Target::parse("maildir:~/Maildir")?,
        };
        if let Target::Relay(relay) = &mut target {
            relay.recipient = match args.recipient.as_ref().or(config.recipient.as_ref()) {
                Some(recipient) => recipient.clone(),
                None => ["USER", "LOGNAME"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
                    .unwrap_or_else(|| account.user.clone()),
            };
            if relay.recipient.contains(['<', '>', ' ', '\r', '\n']) {
                return Err(format!("recipient {:?}: expected a mail address", relay.recipient));
            }
            relay.sender = envelope_sender(&account.user, &account.host);
            let timeout = args.common.timeout.or(config.timeout).unwrap_or(DEFAULT_TIMEOUT);
            relay.timeout = Duration::from_secs(timeout.max(1));
        }
        let batch = args.batch.or(config.batch).unwrap_or(DEFAULT_BATCH);
        if batch == 0 {
            return Err("batch = 0: expected at least 1 (messages)".into());
        }
        let modes = if args.use_umask || config.use_umask { Modes::UMASK } else { Modes::PRIVATE };
        let interval = args.interval.or(config.interval).unwrap_or(DEFAULT_INTERVAL);
        if interval == 0 {
            return Err("interval = 0: expected at least 1 (seconds)".into());
        }
        let interval = Duration::from_secs(interval);
        let filter = args.filter.clone().or_else(|| config.filter.clone());
        if filter.as_deref().is_some_and(|f| f.trim().is_empty()) {
            return Err("filter = \"\": expected a command".into());
        }
        Ok(Self { target, policy, batch, modes, interval, filter })
    }
}

/// The account's address, the envelope sender of a message without a Return-Path: its
/// login name if that is an address, else LOGIN@HOST, an IP address written as an address
/// literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`, RFC 5321 section 4.1.3).
fn envelope_sender(user: &str, host: &str) -> String {
    if user.contains('@') {
        return user.to_owned();
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => format!("{user}@[{ip}]"),
        Ok(std::net::IpAddr::V6(ip)) => format!("{user}@[IPv6:{ip}]"),
        Err(_) => format!("{user}@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{envelope_sender, Policy};

    #[test]
    fn envelope_senders() {
        assert_eq!(envelope_sender("a@b.org", "pop.example"), "a@b.org");
        assert_eq!(envelope_sender("alice", "pop.example"), "alice@pop.example");
        assert_eq!(envelope_sender("alice", "127.0.0.1"), "alice@[127.0.0.1]");
        assert_eq!(envelope_sender("alice", "::1"), "alice@[IPv6:::1]");
    }

    #[test]
    fn every_account_of_the_shipped_example_config_is_valid() {
        use clap::Parser as _;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../dist/pop3/config.example.toml");
        let config = crate::config::load(&path, true).unwrap();
        let cli = crate::args::Cli::parse_from(["pop3", "fetch"]);
        let names: Vec<String> = config.accounts.keys().cloned().collect();
        assert_eq!(names, ["gmail", "isp", "onion", "work"]);
        for name in names {
            let account = crate::config::resolve(&name, &config, &path).unwrap();
            if let Some(oauth) = &account.config.oauth {
                crate::oauth::OAuth::new(oauth).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            super::Settings::new(&cli.command, account).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn policies() {
        assert_eq!(Policy::parse("keep"), Ok(Policy::Keep));
        assert_eq!(Policy::parse("delete"), Ok(Policy::Delete));
        assert_eq!(Policy::parse("keep-days:7"), Ok(Policy::KeepDays(7)));
        assert!(Policy::parse("keep-days:x").is_err());
        assert!(Policy::parse("purge").is_err());
    }
}
