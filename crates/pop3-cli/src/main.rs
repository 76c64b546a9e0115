//! `pop3`: fetch mail over POP3 into a Maildir, an mbox or an MDA, keeping or deleting it on
//! the server, with per-account UIDL state so that a message is never lost and never
//! delivered twice. See `docs/client.md`.
//!
//! Exit codes: see [`EXIT_CODES`].

#![forbid(unsafe_code)]

mod config;
mod deliver;
mod settings;
mod state;
mod syncer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pop3_client::{AuthMethod, Client, ConnectOptions, MsgNum, Retrieved, TlsMode};
use serde::Serialize;

use crate::deliver::{mbox_append_present, Deliverer, Finished, Settled, Target};
use crate::settings::{Policy, Settings};
use crate::state::State;

/// The exit codes, as `--help` prints them (and `docs/client.md` lists them).
const EXIT_CODES: &str = "\
Exit codes:
  0  new mail was fetched (check: there is new mail; list, rebuild-state: done)
  1  nothing new (messages skipped by --max-size do not count as new)
  2  usage error: bad arguments, an unknown account, a bad URL or --to, a bad value in the
     config file, or a config file that cannot be read (no server was contacted)
  3  some accounts or messages failed, the others succeeded
  4  every account failed (connection, TLS, login, server or local error)";

#[derive(Debug, Parser)]
#[command(name = "pop3", version, about = "Fetch mail over POP3, crash-safe.")]
#[command(after_help = EXIT_CODES)]
#[command(long_about = "Fetch mail over POP3, crash-safe.\n\n\
    Accounts come from the config file or are given as URLs. Every option of an account \
    (--to, --keep/--delete/--keep-days as `policy`, --max-size, --timeout, --batch, --auth, \
    --use-umask, --tls-ca, --tls-fingerprint, --no-tls, --insecure, --password-command) can \
    also be set in its config entry; the command line overrides the config file.")]
struct Cli {
    /// The config file, which must exist [default: $XDG_CONFIG_HOME/pop3/config.toml, which
    /// may be missing when accounts are given as URLs].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
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
}

#[derive(Debug, Args, Clone)]
struct CommonArgs {
    /// Account names from the config file, or URLs pop3://user@host:port (STLS; the port is optional) and
    /// pop3s://user@host:port (implicit TLS). Default: every configured account.
    accounts: Vec<String>,
    /// Connect without TLS (pop3:// URLs only). Passwords cross the network readable.
    #[arg(long)]
    no_tls: bool,
    /// Also trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Accept only the certificate with this SHA-256 fingerprint (hex, colons allowed).
    #[arg(long, value_name = "SHA256")]
    tls_fingerprint: Option<String>,
    /// Do not verify the server's certificate at all (testing only).
    #[arg(long)]
    insecure: bool,
    /// Command whose first output line is the password.
    #[arg(long, value_name = "COMMAND")]
    password_command: Option<String>,
    /// Login method: auto, scram-sha-256, plain, login, cram-md5, user, apop, oauthbearer,
    /// xoauth2.
    #[arg(long)]
    auth: Option<String>,
    /// Seconds without progress before giving up [default: 60].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Print one JSON object per account on standard output.
    #[arg(long)]
    json: bool,
    /// No progress bars and no summary.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct FetchArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Where to deliver: maildir:DIR, mbox:FILE or mda:COMMAND [default: maildir:~/Maildir].
    #[arg(long, value_name = "TARGET")]
    to: Option<String>,
    /// Leave messages on the server (the default).
    #[arg(long, conflicts_with_all = ["delete", "keep_days"])]
    keep: bool,
    /// Delete messages on the server once they are stored locally.
    #[arg(long, conflicts_with = "keep_days")]
    delete: bool,
    /// Delete messages on the server N days after they were first fetched.
    #[arg(long, value_name = "N")]
    keep_days: Option<u64>,
    /// Fetch every message, also those fetched before.
    #[arg(long)]
    all: bool,
    /// Skip messages larger than N octets: they stay on the server, and do not count as new
    /// (neither in the counts nor for the exit code).
    #[arg(long, value_name = "N")]
    max_size: Option<u64>,
    /// Show what would be done; download, store and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Maildir: make messages durable in batches of at most N (one file-system flush per
    /// batch instead of one fsync per message), committed while the download goes on; a
    /// batch is sealed when the one before it is committed, or at N messages, 64 MiB or 1 s.
    /// 1 syncs every message on its own [default: 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    batch: Option<u32>,
    /// Create Maildir directories and message files as the umask allows (0777 and 0666 less
    /// the umask) instead of private to the user (0700 and 0600, the default).
    #[arg(long)]
    use_umask: bool,
}

/// What happened to one account, printed as JSON with --json.
#[derive(Debug, Default, Serialize)]
struct Report {
    account: String,
    messages: usize,
    new: usize,
    fetched: usize,
    bytes: u64,
    skipped_too_large: usize,
    deleted: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    would_fetch: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    would_delete: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    list: Vec<ListEntry>,
}

#[derive(Debug, Serialize)]
struct ListEntry {
    msg: u32,
    size: u64,
    uidl: String,
    fetched: bool,
    from: String,
    subject: String,
    date: String,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pop3: {e}");
            return ExitCode::from(4);
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let config_path = cli.config.clone().unwrap_or_else(config::config_path);
    let config = match config::load(&config_path, cli.config.is_some()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pop3: {e}");
            return ExitCode::from(2);
        }
    };
    let common = cli.command.common();
    let names: Vec<String> = if common.accounts.is_empty() {
        config.accounts.keys().cloned().collect()
    } else {
        common.accounts.clone()
    };
    if names.is_empty() {
        eprintln!("pop3: no account given and none in {}", config_path.display());
        return ExitCode::from(2);
    }
    // Every account and its settings are checked before any server is contacted: a mistake
    // on the command line or in the config file is a usage error, not a failed account.
    let mut accounts = Vec::with_capacity(names.len());
    for name in &names {
        let settings = config::resolve(name, &config, &config_path).and_then(|account| {
            let name = account.name.clone();
            Settings::new(&cli.command, account).map_err(|e| format!("{name}: {e}"))
        });
        match settings {
            Ok(settings) => accounts.push(settings),
            Err(e) => {
                eprintln!("pop3: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let (mut any_new, mut failures) = (false, 0);
    for (index, settings) in accounts.iter().enumerate() {
        let mut report = Report { account: settings.account.name.clone(), ..Report::default() };
        if let Err(e) = run_account(&cli.command, settings, &mut report).await {
            report.error = Some(e);
        }
        if report.error.is_some() || !report.errors.is_empty() {
            failures += 1;
        }
        any_new |= report.fetched > 0 || report.new > 0;
        let position = Position { index, of: accounts.len() };
        print_report(&cli.command, common, &report, position);
    }
    match (failures, any_new) {
        (0, true) => ExitCode::SUCCESS,
        (0, false) if matches!(cli.command, Cmd::Fetch(_) | Cmd::Check(_)) => ExitCode::from(1),
        (0, false) => ExitCode::SUCCESS,
        (n, _) if n == accounts.len() => ExitCode::from(4),
        _ => ExitCode::from(3),
    }
}

/// Where an account's report comes in the run: its index among `of` accounts.
#[derive(Debug, Clone, Copy)]
struct Position {
    index: usize,
    of: usize,
}

fn print_report(cmd: &Cmd, common: &CommonArgs, report: &Report, position: Position) {
    if common.json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    if let Some(e) = &report.error {
        eprintln!("pop3: {}: {e}", report.account);
    }
    for e in &report.errors {
        eprintln!("pop3: {}: {e}", report.account);
    }
    // A failed account has no summary: its counts would be those of nothing looked at.
    if common.quiet || report.error.is_some() {
        return;
    }
    match cmd {
        Cmd::List(_) => {
            // Several listings, one after the other: each under its account's name.
            if position.of > 1 {
                let gap = if position.index > 0 { "\n" } else { "" };
                println!("{gap}{}:", report.account);
            }
            for l in &report.list {
                println!(
                    "{:>5} {:>9} {} {}{}  {}  {}",
                    l.msg,
                    l.size,
                    l.uidl,
                    if l.fetched { "" } else { "[new] " },
                    l.from,
                    l.subject,
                    l.date
                );
            }
        }
        Cmd::Check(_) => {
            println!("{}: {} messages, {} new", report.account, report.messages, report.new)
        }
        Cmd::RebuildState(_) => {
            println!("{}: recorded {} messages as fetched", report.account, report.messages)
        }
        Cmd::Fetch(f) if f.dry_run => {
            for uid in &report.would_fetch {
                println!("would fetch {uid}");
            }
            for uid in &report.would_delete {
                println!("would delete {uid}");
            }
        }
        Cmd::Fetch(_) => println!(
            "{}: {} new of {} messages, fetched {} ({} octets), deleted {}{}",
            report.account,
            report.new,
            report.messages,
            report.fetched,
            report.bytes,
            report.deleted,
            if report.skipped_too_large > 0 {
                format!(", skipped {} too large", report.skipped_too_large)
            } else {
                String::new()
            }
        ),
    }
}

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
    prompt(&format!("Password for {}: ", account.name))
}

/// Reads a password from the terminal without echo.
fn prompt(text: &str) -> Result<String, String> {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err("no password: set POP3_PASSWORD, password_command or run on a terminal".into());
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

async fn connect(settings: &Settings) -> Result<Client, String> {
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
    let method = settings.auth;
    let bearer = matches!(method, AuthMethod::OAuthBearer | AuthMethod::XOAuth2);
    let secret = secret(settings, bearer)?;
    let mut client = Client::connect(&options).await.map_err(|e| connect_error(&e, settings))?;
    client.login(&account.user, &secret, method).await.map_err(|e| e.to_string())?;
    Ok(client)
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

async fn run_account(cmd: &Cmd, settings: &Settings, report: &mut Report) -> Result<(), String> {
    let account = &settings.account;
    let read_only =
        matches!(cmd, Cmd::List(_) | Cmd::Check(_)) || matches!(cmd, Cmd::Fetch(f) if f.dry_run);
    let state_dir = config::state_dir();
    let mut state = State::open(&state_dir, &config::file_name(&account.name), read_only)
        .map_err(|e| format!("state in {}: {e}", state_dir.display()))?;
    let mut client = connect(settings).await?;
    let listing = client.list_uidl().await.map_err(|e| e.to_string())?;
    report.messages = listing.len();
    let (listing, shared) = unambiguous(listing, report);
    // New: not fetched before, and not too large to be fetched at all (a message skipped by
    // the size limit would otherwise make every run report new mail).
    report.new = listing
        .iter()
        .filter(|(_, size, uid)| {
            !state.entries.get(uid).is_some_and(|e| e.fetched) && !settings.too_large(*size)
        })
        .count();
    match cmd {
        Cmd::Check(_) => {}
        Cmd::RebuildState(_) => {
            let uids: Vec<&str> = listing.iter().map(|(_, _, u)| u.as_str()).collect();
            state.mark_all_fetched(&uids, now()).map_err(|e| e.to_string())?;
            report.new = 0;
        }
        Cmd::List(_) => {
            for (msg, size, uid) in &listing {
                let mut header = Vec::new();
                let mut body = client.top(*msg, 0).await.map_err(|e| e.to_string())?;
                while let Some(chunk) = body.chunk().await.map_err(|e| e.to_string())? {
                    if header.len() < 64 * 1024 {
                        header.extend_from_slice(&chunk);
                    }
                }
                let get = |name: &str| header_field(&header, name);
                report.list.push(ListEntry {
                    msg: msg.get(),
                    size: *size,
                    uidl: uid.clone(),
                    fetched: state.entries.get(uid).is_some_and(|e| e.fetched),
                    from: get("From"),
                    subject: get("Subject"),
                    date: get("Date"),
                });
            }
            report.new = 0;
        }
        Cmd::Fetch(args) => {
            fetch(args, settings, &mut client, &mut state, &listing, &shared, report).await?
        }
    }
    client.quit().await.map_err(|e| e.to_string())
}

/// The unfolded value of a header field, or "".
fn header_field(header: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(header);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((field, v)) = line.split_once(':') {
            if field.eq_ignore_ascii_case(name) {
                value = Some(v.trim().to_owned());
            }
        }
    }
    value.unwrap_or_default()
}

/// The listing without messages whose UIDL the server gives to more than one message (RFC
/// 1939 section 7 forbids it): such a UIDL cannot say which of them was fetched, so none of
/// them is fetched, recorded or deleted, and each is reported as an error. Returns the rest
/// of the listing and the shared UIDLs.
fn unambiguous(
    listing: Vec<(MsgNum, u64, String)>,
    report: &mut Report,
) -> (Vec<(MsgNum, u64, String)>, HashSet<String>) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, _, uid) in &listing {
        *count.entry(uid.as_str()).or_default() += 1;
    }
    let shared: HashSet<String> =
        count.into_iter().filter(|&(_, n)| n > 1).map(|(uid, _)| uid.to_owned()).collect();
    if shared.is_empty() {
        return (listing, shared);
    }
    let listing = listing
        .into_iter()
        .filter(|(msg, _, uid)| {
            let keep = !shared.contains(uid);
            if !keep {
                report.errors.push(format!(
                    "message {msg}: the server gives its UIDL {uid:?} to another message too; \
                     skipped"
                ));
            }
            keep
        })
        .collect();
    (listing, shared)
}

async fn fetch(
    args: &FetchArgs,
    settings: &Settings,
    client: &mut Client,
    state: &mut State,
    listing: &[(MsgNum, u64, String)],
    shared: &HashSet<String>,
    report: &mut Report,
) -> Result<(), String> {
    let account = &settings.account;
    let fetch = settings.fetch.as_ref().ok_or("no fetch settings")?;
    let (policy, target) = (fetch.policy, fetch.target.clone());
    let now = now();
    // Seen times first, in one durable write: they name the Maildir files, so a message
    // delivered before a crash gets the same name when fetched again.
    if !args.dry_run {
        state
            .see_all(listing.iter().map(|(_, _, u)| u.as_str()), now)
            .map_err(|e| e.to_string())?;
        // A shared UIDL is still on the server: what the state knows of it is kept.
        let present: HashSet<&str> = listing
            .iter()
            .map(|(_, _, u)| u.as_str())
            .chain(shared.iter().map(String::as_str))
            .collect();
        state.forget_missing(&present).map_err(|e| e.to_string())?;
    }
    // An mbox batch recorded but not confirmed (the last run died during its commit) is looked
    // for in the mbox: found, its messages count as fetched; else they are fetched again.
    if let (Target::Mbox(path), false) = (&target, args.dry_run) {
        state
            .resolve_pending(|p| mbox_append_present(path, p.offset, p.len, &p.digest))
            .map_err(|e| format!("checking {}: {e}", path.display()))?;
    }
    let mut todo = Vec::new();
    for (msg, size, uid) in listing {
        let fetched = state.entries.get(uid).is_some_and(|e| e.fetched);
        if fetched && !args.all {
            continue;
        }
        if settings.too_large(*size) {
            report.skipped_too_large += 1;
            continue;
        }
        todo.push((*msg, *size, uid.clone()));
    }
    let mut fetched_now: HashSet<String> = HashSet::new();
    if args.dry_run {
        report.would_fetch = todo.iter().map(|t| t.2.clone()).collect();
    } else if !todo.is_empty() {
        let journal = state.journal().map_err(|e| e.to_string())?;
        let batch = fetch.batch as usize;
        let mut deliverer = Deliverer::new(target, &account.name, batch, journal, fetch.modes)
            .map_err(|e| e.to_string())?;
        let total: u64 = todo.iter().map(|t| t.1).sum();
        let bar = progress(args, todo.len() as u64, total);
        let mut batch = Batch::default();
        let retrieved =
            retrieve(client, &todo, now, state, &mut deliverer, &mut batch, bar.as_ref(), report)
                .await;
        // Whatever ended the retrieval, what was downloaded is kept.
        let committed = commit(state, &mut deliverer, &mut batch, report, true);
        fetched_now.extend(batch.recorded);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        retrieved?;
        committed?;
    }
    // Deletion: only messages stored locally (recorded in the state file, synced).
    let mut to_delete = Vec::new();
    for (msg, _, uid) in listing {
        let Some(entry) = state.entries.get(uid) else { continue };
        let stored = entry.fetched || fetched_now.contains(uid);
        let delete = match policy {
            Policy::Keep => false,
            Policy::Delete => stored,
            Policy::KeepDays(days) => stored && now.saturating_sub(entry.seen) >= days * 86_400,
        };
        if delete {
            to_delete.push((*msg, uid.clone()));
        }
    }
    if args.dry_run {
        report.would_delete = to_delete.into_iter().map(|d| d.1).collect();
        return Ok(());
    }
    let msgs: Vec<MsgNum> = to_delete.iter().map(|d| d.0).collect();
    let refused = client.dele_many(&msgs).await.map_err(|e| e.to_string())?;
    for (msg, e) in &refused {
        report.errors.push(format!("deleting message {msg}: {e}"));
    }
    report.deleted = msgs.len() - refused.len();
    Ok(())
}

/// Messages stored in this run: staged in the current Maildir batch, or recorded in the state.
#[derive(Debug, Default)]
struct Batch {
    /// Staged or being committed (uidl, octets), oldest first: recorded once their commit
    /// settles.
    pending: VecDeque<(String, u64)>,
    /// Recorded in the state as stored.
    recorded: Vec<String>,
}

/// Pipelined RETR of `todo` into `deliverer`. Durable deliveries are recorded at once; staged
/// Maildir ones at each batch commit. Order per message: store, make durable, record (only
/// then may it be deleted on the server).
#[allow(clippy::too_many_arguments)]
async fn retrieve(
    client: &mut Client,
    todo: &[(MsgNum, u64, String)],
    now: u64,
    state: &mut State,
    deliverer: &mut Deliverer,
    batch: &mut Batch,
    bar: Option<&ProgressBar>,
    report: &mut Report,
) -> Result<(), String> {
    let mut retrieval = client.retrieve(todo.iter().map(|t| t.0));
    let mut index = 0;
    while let Some(item) = retrieval.next().await.map_err(|e| e.to_string())? {
        let (_, _, uid) = &todo[index];
        index += 1;
        let mut body = match item {
            Retrieved::Message(_, body) => body,
            Retrieved::Refused(msg, e) => {
                report.errors.push(format!("message {msg} ({uid}): {e}"));
                continue;
            }
        };
        let seen = state.entries.get(uid).map_or(now, |e| e.seen);
        let mut delivery = deliverer.start(uid, seen).map_err(|e| e.to_string())?;
        let mut failed = None;
        let mut received = 0u64;
        loop {
            match body.chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if let Some(bar) = bar {
                        bar.inc(chunk.len() as u64);
                    }
                    if failed.is_none() && !delivery.is_present() {
                        if let Err(e) = delivery.write(&chunk) {
                            failed = Some(e.to_string());
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    deliverer.abort(delivery);
                    return Err(e.to_string());
                }
            }
        }
        if let Some(e) = failed {
            deliverer.abort(delivery);
            report.errors.push(format!("delivering {uid}: {e}"));
            continue;
        }
        match deliverer.finish(delivery) {
            Ok(Finished::Durable) => {
                state.fetched(uid).map_err(|e| format!("saving state: {e}"))?;
                batch.recorded.push(uid.clone());
                report.fetched += 1;
                report.bytes += received;
            }
            Ok(Finished::Staged) => batch.pending.push_back((uid.clone(), received)),
            Err(e) => report.errors.push(format!("delivering {uid}: {e}")),
        }
        if deliverer.should_commit() {
            commit(state, deliverer, batch, report, false)?;
        }
    }
    Ok(())
}

/// Commits the staged batch (see [`Deliverer::commit_behind`]; the commit appends the `F`
/// records) and notes the messages it settled as fetched; with `wait`, also waits for the
/// batch still in flight, so that every message is settled.
fn commit(
    state: &mut State,
    deliverer: &mut Deliverer,
    batch: &mut Batch,
    report: &mut Report,
    wait: bool,
) -> Result<(), String> {
    // An mbox batch is never in flight: the messages it appends are all the pending ones.
    let pending = &batch.pending;
    let settled = deliverer.commit_behind(&mut |offset, len, digest| {
        state.pending_append(offset, len, digest, pending.iter().map(|p| p.0.as_str()))
    });
    let first = record(state, batch, report, settled);
    let last = if wait { record(state, batch, report, deliverer.settle()) } else { Ok(()) };
    first.and(last)
}

/// Notes the oldest pending messages that `settled` covers as fetched (in memory and in the
/// report), if they are durable and recorded.
fn record(
    state: &mut State,
    batch: &mut Batch,
    report: &mut Report,
    settled: Settled,
) -> Result<(), String> {
    let count = settled.messages.min(batch.pending.len());
    let done: Vec<(String, u64)> = batch.pending.drain(..count).collect();
    settled.result.map_err(|e| format!("storing {} messages: {e}", done.len()))?;
    if done.is_empty() {
        return Ok(());
    }
    state.mark_fetched(done.iter().map(|s| s.0.as_str()));
    report.fetched += done.len();
    report.bytes += done.iter().map(|s| s.1).sum::<u64>();
    batch.recorded.extend(done.into_iter().map(|s| s.0));
    Ok(())
}

fn progress(args: &FetchArgs, messages: u64, bytes: u64) -> Option<ProgressBar> {
    if args.common.json || args.common.quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(bytes);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{messages} messages"));
    Some(bar)
}
