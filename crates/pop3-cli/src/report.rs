//! What a run tells its user: one report per account, as a summary line, a listing or JSON
//! (`--json`), and a progress bar while a fetch downloads. Reports are filled in as the
//! account is worked on and printed once it is done, so that a failed account prints its
//! error instead of counts of nothing.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::args::{Cmd, CommonArgs, FetchArgs};

/// What happened to one account, printed as JSON with --json.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub account: String,
    pub messages: usize,
    pub new: usize,
    pub fetched: usize,
    pub bytes: u64,
    pub skipped_too_large: usize,
    /// Left on the server by the filter (exit 1, or exit 2 under a policy that keeps mail).
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_by_filter: usize,
    /// Deleted without being downloaded, as the filter asked (exit 2); also in `deleted`.
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted_by_filter: usize,
    pub deleted: usize,
    /// Not downloaded because a stop was asked for (SIGTERM, SIGINT): left on the server for
    /// the next run.
    #[serde(skip_serializing_if = "is_zero")]
    pub left_by_stop: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_fetch: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_delete: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<ListEntry>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub msg: u32,
    pub size: u64,
    pub uidl: String,
    pub fetched: bool,
    pub from: String,
    pub subject: String,
    pub date: String,
}

/// Where an account's report comes in the run: its index among `of` accounts.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    pub index: usize,
    pub of: usize,
}

pub fn print_report(cmd: &Cmd, common: &CommonArgs, report: &Report, position: Position) {
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
        Cmd::Auth(_) => {}
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
        Cmd::Fetch(_) => println!("{}: {}", report.account, fetch_summary(report)),
    }
}

/// What a fetch did, in one line (without the account's name).
pub fn fetch_summary(report: &Report) -> String {
    format!(
        "{} new of {} messages, fetched {} ({} octets), deleted {}{}{}{}",
        report.new,
        report.messages,
        report.fetched,
        report.bytes,
        report.deleted,
        if report.skipped_too_large > 0 {
            format!(", skipped {} too large", report.skipped_too_large)
        } else {
            String::new()
        },
        if report.skipped_by_filter + report.deleted_by_filter > 0 {
            format!(
                ", filter skipped {} and deleted {}",
                report.skipped_by_filter, report.deleted_by_filter
            )
        } else {
            String::new()
        },
        if report.left_by_stop > 0 {
            format!(", stopped with {} left for the next run", report.left_by_stop)
        } else {
            String::new()
        }
    )
}

/// A progress bar (octets, rate, ETA) on a terminal, unless --json or -q.
pub fn progress(args: &FetchArgs, messages: u64, bytes: u64) -> Option<ProgressBar> {
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
