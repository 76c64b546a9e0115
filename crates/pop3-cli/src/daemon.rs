//! `pop3 fetch --daemon`: the accounts are polled again and again, each on its own interval,
//! until SIGTERM or SIGINT.
//!
//! - A failed poll (server down, network gone, login refused) is retried sooner than the
//!   interval, then less and less often: a jittered exponential backoff ([`backoff`]), so that
//!   many retrievers do not all come back at once when a server returns.
//! - One line on standard error per poll (a journal keeps it with its time): what was fetched
//!   and when the next poll is, or the error and when the retry is.
//! - SIGTERM or SIGINT: the poll in progress stops at a batch boundary ([`crate::stop`]): no
//!   more `RETR`s are sent, the messages already asked for are stored and recorded, what the
//!   policy says is deleted and `QUIT` commits it; the rest stays on the server for the next
//!   run. Then the daemon exits 0. A second signal exits at once: even then nothing is lost or
//!   fetched twice (the ledger is crash-safe), only the messages in flight are downloaded
//!   again next time.
//! - SIGHUP: the config file is read again; accounts keep their schedule, new ones are polled
//!   at once. A config file that does not load is reported and the old one kept.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::stop::{Stop, Stopping};

use crate::account::run_account;
use crate::args::Cli;
use crate::config;
use crate::report::{fetch_summary, Report};
use crate::settings::Settings;

/// The first retry after a failure comes after at most this long (or the interval, if
/// shorter); each further failure doubles it.
const FIRST_RETRY: Duration = Duration::from_secs(30);
/// Retries never wait longer than this (or the interval, if longer).
const LONGEST_RETRY: Duration = Duration::from_secs(900);

/// One account and its schedule.
#[derive(Debug)]
struct Polled {
    settings: Settings,
    next: Instant,
    failures: u32,
}

/// What the signals asked for.
#[derive(Debug)]
struct Signals {
    stop: Stop,
    reload: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl Signals {
    /// Catches SIGTERM, SIGINT and SIGHUP from now on.
    fn install() -> std::io::Result<Self> {
        let stop = Stop::on_signals()?;
        let mut stopping = Stopping::catch()?;
        let mut hup = signal(SignalKind::hangup())?;
        let signals =
            Self { stop, reload: Arc::new(AtomicBool::new(false)), wake: Arc::new(Notify::new()) };
        let (reload, wake) = (signals.reload.clone(), signals.wake.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopping.recv() => {}
                    _ = hup.recv() => reload.store(true, Ordering::SeqCst),
                }
                wake.notify_one();
            }
        });
        Ok(signals)
    }

    fn stopping(&self) -> bool {
        self.stop.requested()
    }
}

/// Polls `accounts` until a signal stops it; the exit code.
pub async fn run(cli: &Cli, config_path: &Path, accounts: Vec<Settings>) -> ExitCode {
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("pop3: daemon: cannot catch signals: {e}");
            return ExitCode::from(4);
        }
    };
    let now = Instant::now();
    let mut polled: Vec<Polled> =
        accounts.into_iter().map(|settings| Polled { settings, next: now, failures: 0 }).collect();
    eprintln!("pop3: daemon: polling {} account(s)", polled.len());
    while !signals.stopping() {
        if signals.reload.swap(false, Ordering::SeqCst) {
            reload(cli, config_path, &mut polled);
        }
        for account in &mut polled {
            if signals.stopping() {
                break;
            }
            if account.next <= Instant::now() {
                account.poll(cli, &signals.stop).await;
            }
        }
        let Some(next) = polled.iter().map(|a| a.next).min() else { break };
        if signals.stopping() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = signals.wake.notified() => {}
        }
    }
    eprintln!("pop3: daemon: stopped");
    ExitCode::SUCCESS
}

impl Polled {
    /// One fetch of the account, its log line, and its next poll.
    async fn poll(&mut self, cli: &Cli, stop: &Stop) {
        let name = self.settings.account.name.clone();
        let mut report = Report { account: name.clone(), ..Report::default() };
        if let Err(e) = run_account(&cli.command, &self.settings, stop, &mut report).await {
            report.error = Some(e);
        }
        let interval =
            self.settings.fetch.as_ref().map_or(Duration::from_secs(300), |f| f.interval);
        let line = match &report.error {
            None => {
                self.failures = 0;
                self.next = Instant::now() + interval;
                let mut line =
                    format!("{}; next poll in {} s", fetch_summary(&report), interval.as_secs());
                if let Some(first) = report.errors.first() {
                    line.push_str(&format!(
                        "; {} error(s), the first: {first}",
                        report.errors.len()
                    ));
                }
                line
            }
            Some(e) => {
                self.failures += 1;
                let wait = backoff(self.failures, interval, random());
                self.next = Instant::now() + wait;
                format!(
                    "poll failed: {e}; retry in {:.1} s (failure {})",
                    wait.as_secs_f64(),
                    self.failures
                )
            }
        };
        // One line, whatever the error's text holds.
        eprintln!("pop3: {name}: {}", line.replace('\n', " "));
        if cli.command.common().json {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        }
    }
}

/// Reads the config file again (SIGHUP). Accounts still there keep their schedule with their
/// new settings; new ones are polled at once; a config file that does not load changes
/// nothing.
fn reload(cli: &Cli, config_path: &Path, polled: &mut Vec<Polled>) {
    let loaded = config::load(config_path, cli.config.is_some())
        .and_then(|config| crate::accounts(cli, &config, config_path));
    let accounts = match loaded {
        Ok(accounts) => accounts,
        Err(e) => {
            eprintln!("pop3: daemon: reloading failed, the configuration is unchanged: {e}");
            return;
        }
    };
    let now = Instant::now();
    let mut old = std::mem::take(polled);
    for settings in accounts {
        let name = &settings.account.name;
        let (next, failures) = match old.iter().position(|p| &p.settings.account.name == name) {
            Some(at) => {
                let kept = old.swap_remove(at);
                (kept.next, kept.failures)
            }
            None => (now, 0),
        };
        polled.push(Polled { settings, next, failures });
    }
    eprintln!("pop3: daemon: configuration reloaded, polling {} account(s)", polled.len());
}

/// The wait after `failures` consecutive failures (at least 1): `min(interval, 30 s)` doubled
/// for each failure after the first, at most `max(interval, 15 min)`; half of it fixed and
/// the other half random ("equal jitter"), from `random`.
fn backoff(failures: u32, interval: Duration, random: u64) -> Duration {
    let first = interval.min(FIRST_RETRY);
    let longest = interval.max(LONGEST_RETRY);
    let doubled = first.saturating_mul(1 << failures.saturating_sub(1).min(20));
    let full = doubled.min(longest);
    let half = full / 2;
    let spread = u64::try_from(full.as_nanos() - half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(random % spread.saturating_add(1))
}

/// A random number for the jitter (std's hasher keys are random per process and per call).
fn random() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_within_bounds() {
        let secs = Duration::from_secs;
        let interval = secs(300);
        // Failure n waits between half and all of 30 s × 2^(n-1), at most 15 min.
        for (failures, full) in [(1, 30), (2, 60), (3, 120), (5, 480), (6, 900), (40, 900)] {
            let low = backoff(failures, interval, 0);
            let spread = u64::try_from((secs(full) / 2).as_nanos()).unwrap();
            assert_eq!(low, secs(full) / 2, "failure {failures}");
            assert_eq!(backoff(failures, interval, spread), secs(full), "failure {failures}");
            let any = backoff(failures, interval, random());
            assert!(any >= low && any <= secs(full));
        }
        // A short interval starts there; a long one is the ceiling.
        assert_eq!(backoff(1, secs(10), 0), secs(5));
        assert_eq!(backoff(30, secs(7200), 0), secs(3600));
        // Different draws differ (the jitter is random).
        let draws: std::collections::HashSet<_> =
            (0..16).map(|_| backoff(3, interval, random())).collect();
        assert!(draws.len() > 1);
    }
}
