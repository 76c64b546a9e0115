//! `pop3`: fetch mail over POP3 into a Maildir, an mbox or an MDA, keeping or deleting it on
//! the server, with per-account UIDL state so that a message is never lost and never
//! delivered twice. See `docs/client.md`.
//!
//! The modules, in the order a run goes through them: [`args`] (the command line),
//! [`config`] and [`settings`] (what each account is to do), [`account`] (one session per
//! account: [`connect`], [`listing`], `QUIT`), [`fetch`] (list → plan → retrieve → sink →
//! ledger → `DELE`) with [`retrieve`] (the download), [`sink`] (the interface to where mail
//! goes) and [`deliver`] (today's sink, over pop3-storage's), [`ledger`] (what is stored, durably),
//! and [`report`] (what the user is told). [`oauth`] gets and refreshes OAuth 2.0 tokens
//! (`pop3 auth`, and logins of accounts with an `[oauth]` section); [`daemon`] polls the
//! accounts again and again (`fetch --daemon`); [`stop`] ends a fetch at a batch boundary on
//! SIGTERM or SIGINT. Exit codes: see [`args::EXIT_CODES`].

#![forbid(unsafe_code)]

mod account;
mod args;
mod config;
mod connect;
mod daemon;
mod deliver;
mod fetch;
mod filter;
mod ledger;
mod listing;
mod netrc;
mod oauth;
mod relay;
mod report;
mod retrieve;
mod settings;
mod sink;
mod socks;
mod stop;

use std::process::ExitCode;

use clap::Parser;

use crate::account::run_account;
use crate::args::{AuthArgs, Cli, Cmd};
use crate::report::{print_report, Position, Report};
use crate::settings::Settings;

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

/// Runs the command on every account named (or configured), one after the other, and turns
/// how they went into the exit code.
async fn run(cli: Cli) -> ExitCode {
    let config_path = cli.config.clone().unwrap_or_else(config::config_path);
    let config = match config::load(&config_path, cli.config.is_some()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pop3: {e}");
            return ExitCode::from(2);
        }
    };
    if let Cmd::Auth(args) = &cli.command {
        return auth(args, &config, &config_path);
    }
    let common = cli.command.common();
    let accounts = match accounts(&cli, &config, &config_path) {
        Ok(accounts) => accounts,
        Err(e) => {
            eprintln!("pop3: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(&cli.command, Cmd::Fetch(f) if f.daemon) {
        return daemon::run(&cli, &config_path, accounts).await;
    }
    // A fetch stops at a batch boundary on SIGTERM or SIGINT (see `stop.rs`); the other
    // commands download nothing and are simply ended by them.
    let stop = match &cli.command {
        Cmd::Fetch(_) => match stop::catch() {
            Ok(stop) => stop,
            Err(e) => {
                eprintln!("pop3: cannot catch signals: {e}");
                return ExitCode::from(4);
            }
        },
        _ => stop::Stop::never(),
    };
    let (mut any_new, mut failures) = (false, 0);
    for (index, settings) in accounts.iter().enumerate() {
        if let Some(code) = stop.exit_code() {
            // The accounts not begun are left for the next run.
            return ExitCode::from(code);
        }
        let mut report = Report { account: settings.account.name.clone(), ..Report::default() };
        if let Err(e) = run_account(&cli.command, settings, &stop, &mut report).await {
            report.error = Some(e);
        }
        if report.error.is_some() || !report.errors.is_empty() {
            failures += 1;
        }
        any_new |= report.fetched > 0 || report.new > 0;
        let position = Position { index, of: accounts.len() };
        print_report(&cli.command, common, &report, position);
    }
    if let Some(code) = stop.exit_code() {
        return ExitCode::from(code);
    }
    match (failures, any_new) {
        (0, true) => ExitCode::SUCCESS,
        (0, false) if matches!(cli.command, Cmd::Fetch(_) | Cmd::Check(_)) => ExitCode::from(1),
        (0, false) => ExitCode::SUCCESS,
        (n, _) if n == accounts.len() => ExitCode::from(4),
        _ => ExitCode::from(3),
    }
}

/// The settings of every account named on the command line (or configured). Every account
/// and its settings are checked before any server is contacted: a mistake on the command line
/// or in the config file is a usage error, not a failed account.
fn accounts(
    cli: &Cli,
    config: &config::ConfigFile,
    config_path: &std::path::Path,
) -> Result<Vec<Settings>, String> {
    let common = cli.command.common();
    let names: Vec<String> = if common.accounts.is_empty() {
        config.accounts.keys().cloned().collect()
    } else {
        common.accounts.clone()
    };
    if names.is_empty() {
        return Err(format!("no account given and none in {}", config_path.display()));
    }
    names
        .iter()
        .map(|name| {
            config::resolve(name, config, config_path).and_then(|account| {
                let name = account.name.clone();
                Settings::new(&cli.command, account).map_err(|e| format!("{name}: {e}"))
            })
        })
        .collect()
}

/// `pop3 auth ACCOUNT`: exit 0 once the tokens are stored, 2 for an account without
/// `[accounts.NAME.oauth]` (or another mistake in the config), 4 if the authorization failed.
fn auth(args: &AuthArgs, config: &config::ConfigFile, config_path: &std::path::Path) -> ExitCode {
    let resolved = config::resolve(&args.account, config, config_path).and_then(|account| {
        let section = account.config.oauth.as_ref().ok_or_else(|| {
            format!(
                "{}: no [accounts.{}.oauth] section in {} (see docs/client.md, OAuth 2.0)",
                account.name,
                account.name,
                config_path.display()
            )
        })?;
        let oauth = oauth::OAuth::new(section).map_err(|e| format!("{}: {e}", account.name))?;
        // Through the account's proxy, as its fetches are.
        let proxy = account.config.proxy.as_deref().map(socks::Proxy::parse).transpose();
        let proxy = proxy.map_err(|e| format!("{}: {e}", account.name))?;
        Ok((account.name, oauth.through(proxy)))
    });
    let (name, oauth) = match resolved {
        Ok(resolved) => resolved,
        Err(e) => {
            eprintln!("pop3: {e}");
            return ExitCode::from(2);
        }
    };
    let flow = if args.device { oauth::Flow::Device } else { oauth::Flow::Browser };
    let wait = std::time::Duration::from_secs(args.wait.unwrap_or(300));
    let timeout = std::time::Duration::from_secs(args.timeout.unwrap_or(60));
    match oauth::authorize(&name, &oauth, flow, wait, timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pop3: {name}: {e}");
            ExitCode::from(4)
        }
    }
}
