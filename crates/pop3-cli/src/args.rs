//! The command line: commands, options and exit codes, as clap parses them. What an option
//! means for an account (merged with its config entry) is decided in `settings.rs`; here
//! only its spelling and help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The exit codes, as `--help` prints them (and `docs/client.md` lists them).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  new mail was fetched (check: there is new mail; list, rebuild-state: done)
  1  nothing new (messages skipped by --max-size or the filter do not count as new)
  2  usage error: bad arguments, an unknown account, a bad URL or --to, a bad value in the
     config file, or a config file that cannot be read (no server was contacted)
  3  some accounts or messages failed, the others succeeded
  4  every account failed (connection, TLS, login, server or local error; an OAuth account
     whose refresh token was refused, or that has none, says to run `pop3 auth ACCOUNT`);
     auth: the authorization failed
  130, 143  fetch stopped by SIGINT or SIGTERM: the messages already asked for were stored
     and recorded, deletions committed, the rest left on the server for the next run (a
     second signal exits at once, also with this code)";

#[derive(Debug, Parser)]
#[command(name = "pop3", version, about = "Fetch mail over POP3, crash-safe.")]
#[command(after_help = EXIT_CODES)]
#[command(long_about = "Fetch mail over POP3, crash-safe.\n\n\
    Accounts come from the config file or are given as URLs. Every option of an account \
    (--to, --keep/--delete/--keep-days as `policy`, --max-size, --timeout, --batch, --auth, \
    --use-umask, --tls-ca, --tls-fingerprint, --no-tls, --insecure, --password-command, \
    --filter, --recipient, --proxy) can \
    also be set in its config entry; the command line overrides the config file.")]
pub struct Cli {
    /// The config file, which must exist [default: $XDG_CONFIG_HOME/pop3/config.toml, which
    /// may be missing when accounts are given as URLs].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Download new mail (by default only messages not fetched before).
    #[command(after_help = EXIT_CODES)]
    Fetch(FetchArgs),
    /// List the messages on the server: number, size, UIDL, From, Subject, Date.
    #[command(after_help = EXIT_CODES)]
    List(CommonArgs),
    /// Count the messages and the new ones, without downloading.
    #[command(after_help = EXIT_CODES)]
    Check(CommonArgs),
    /// Record everything on the server as already fetched, without downloading it.
    #[command(after_help = EXIT_CODES)]
    RebuildState(CommonArgs),
    /// Authorize an account with OAuth 2.0 (its [accounts.NAME.oauth] section) and store its
    /// refresh token: in a browser (authorization code with PKCE, redirected to a loopback
    /// port), or with --device on any other device (a code to enter).
    #[command(after_help = EXIT_CODES)]
    Auth(AuthArgs),
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The account's name in the config file.
    pub account: String,
    /// Use the device authorization grant (RFC 8628): print a URL and a code to enter on any
    /// device, for a machine without a browser.
    #[arg(long)]
    pub device: bool,
    /// Seconds to wait for the user to authorize [default: 300].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub wait: Option<u64>,
    /// Seconds without an answer from the authorization server before giving up [default: 60].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Account names from the config file, or URLs pop3://user@host:port (STLS; the port is optional) and
    /// pop3s://user@host:port (implicit TLS). Default: every configured account.
    pub accounts: Vec<String>,
    /// Connect without TLS (pop3:// URLs only). Passwords cross the network readable.
    #[arg(long)]
    pub no_tls: bool,
    /// Also trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Accept only the certificate with this SHA-256 fingerprint (hex, colons allowed).
    #[arg(long, value_name = "SHA256")]
    pub tls_fingerprint: Option<String>,
    /// Do not verify the server's certificate at all (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// Command whose first output line is the password.
    #[arg(long, value_name = "COMMAND")]
    pub password_command: Option<String>,
    /// Login method: auto, scram-sha-256, plain, login, cram-md5, user, apop, oauthbearer,
    /// xoauth2.
    #[arg(long)]
    pub auth: Option<String>,
    /// Seconds without progress before giving up [default: 60].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Connect through a SOCKS5 proxy: socks5h://HOST:PORT (the proxy resolves the server's
    /// name: nothing is looked up here, as Tor wants) or socks5://HOST:PORT (resolved here);
    /// socks5h://USER:PASS@HOST:PORT logs in to the proxy.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Print one JSON object per account on standard output.
    #[arg(long)]
    pub json: bool,
    /// No progress bars and no summary.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where to deliver: maildir:DIR, mbox:FILE, mda:COMMAND, lmtp:HOST:PORT,
    /// lmtp:/PATH/TO/SOCKET or smtp:HOST:PORT (port 25 if left out) [default:
    /// maildir:~/Maildir]. A message sent
    /// over LMTP or SMTP counts as fetched once the server answered 250; a 4xx or 5xx answer
    /// leaves it on the POP3 server, reported.
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,
    /// lmtp: and smtp: targets: the one recipient (RCPT TO) [default: $USER]. The envelope
    /// sender is the message's Return-Path, else the account's address.
    #[arg(long, value_name = "ADDRESS")]
    pub recipient: Option<String>,
    /// Leave messages on the server (the default).
    #[arg(long, conflicts_with_all = ["delete", "keep_days"])]
    pub keep: bool,
    /// Delete messages on the server once they are stored locally.
    #[arg(long, conflicts_with = "keep_days")]
    pub delete: bool,
    /// Delete messages on the server N days after they were first fetched.
    #[arg(long, value_name = "N")]
    pub keep_days: Option<u64>,
    /// Fetch every message, also those fetched before.
    #[arg(long)]
    pub all: bool,
    /// Skip messages larger than N octets: they stay on the server, and do not count as new
    /// (neither in the counts nor for the exit code).
    #[arg(long, value_name = "N")]
    pub max_size: Option<u64>,
    /// Run COMMAND (sh -c) for each message to fetch, its header (TOP n 0) on standard input
    /// and POP3_FILTER_SIZE, POP3_FILTER_UIDL, POP3_FILTER_MSG, POP3_FILTER_ACCOUNT,
    /// POP3_FILTER_HOST, POP3_FILTER_USER in its environment; its exit status decides: 0 fetch,
    /// 1 delete without downloading (with --delete or --keep-days; otherwise skip), 2 skip
    /// (left on the server), as mpop's filter, anything else (or no exit within --timeout: killed) is an
    /// error for that message, which stays on the server. Messages over --max-size are skipped
    /// before any filter runs.
    #[arg(long, value_name = "COMMAND")]
    pub filter: Option<String>,
    /// Show what would be done; download, store and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Maildir: make messages durable in batches of at most N (one file-system flush per
    /// batch instead of one fsync per message), committed while the download goes on; a
    /// batch is sealed when the one before it is committed, or at N messages, 64 MiB or 1 s.
    /// 1 syncs every message on its own [default: 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Option<u32>,
    /// Create Maildir directories and message files as the umask allows (0777 and 0666 less
    /// the umask) instead of private to the user (0700 and 0600, the default).
    #[arg(long)]
    pub use_umask: bool,
    /// Keep running: poll each account every --interval seconds, a failed one again sooner
    /// (jittered exponential backoff); one line on standard error per poll. SIGTERM or SIGINT:
    /// the poll in progress stops at a batch boundary (the messages in flight stored, the
    /// deletions committed), then pop3 exits 0 (a second one exits at once); SIGHUP reloads
    /// the config file.
    #[arg(long, conflicts_with = "dry_run")]
    pub daemon: bool,
    /// With --daemon: seconds between two polls of an account [default: 300, or the account's
    /// `interval`].
    #[arg(long, value_name = "SECONDS", requires = "daemon", value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: Option<u64>,
}

/// `auth` works on the config file alone, without the options of a POP3 connection.
static NO_OPTIONS: CommonArgs = CommonArgs {
    accounts: Vec::new(),
    no_tls: false,
    tls_ca: None,
    tls_fingerprint: None,
    insecure: false,
    password_command: None,
    auth: None,
    timeout: None,
    proxy: None,
    json: false,
    quiet: false,
};

impl Cmd {
    /// The options every command has (none for `auth`).
    pub fn common(&self) -> &CommonArgs {
        match self {
            Cmd::Fetch(f) => &f.common,
            Cmd::List(c) | Cmd::Check(c) | Cmd::RebuildState(c) => c,
            Cmd::Auth(_) => &NO_OPTIONS,
        }
    }

    /// True for the commands that change nothing, on the server or locally: the ledger is
    /// opened read-only for them.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Cmd::List(_) | Cmd::Check(_) | Cmd::Auth(_))
            || matches!(self, Cmd::Fetch(f) if f.dry_run)
    }
}
