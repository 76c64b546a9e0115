//! `fetch`, one way through: list → plan → retrieve → sink → ledger → `DELE`.
//!
//! The listing is recorded in the ledger first (first-seen times name Maildir files, so a
//! message stored before a crash is recognised), the plan picks what to download, the
//! [`Retriever`] streams it into the sink and notes in the ledger what the sink settled, and
//! only messages the ledger knows as stored are deleted. Nothing here knows how a sink makes
//! mail durable.

use std::collections::HashSet;

use pop3_client::{Client, MsgNum};

use crate::args::FetchArgs;
use crate::deliver::{mbox_append_present, Deliverer, Target};
use crate::filter::{judge, About, Verdict};
use crate::ledger::{now, Ledger};
use crate::listing::{Listed, Listing};
use crate::report::{progress, Report};
use crate::retrieve::Retriever;
use crate::settings::{Policy, Settings};
use crate::stop::Stop;

/// Fetches the account's new mail (all of it with `--all`) and deletes what the policy says.
pub async fn fetch(
    args: &FetchArgs,
    settings: &Settings,
    client: &mut Client,
    ledger: &mut Ledger,
    listing: &Listing,
    stop: &Stop,
    report: &mut Report,
) -> Result<(), String> {
    let fetch = settings.fetch.as_ref().ok_or("no fetch settings")?;
    let now = now();
    if !args.dry_run {
        prepare(ledger, listing, &fetch.target, now)?;
    }
    let mut todo = plan(args, settings, ledger, listing, report);
    let mut condemned = Vec::new();
    if let Some(command) = &fetch.filter {
        let screened = screen(command, settings, client, ledger, todo, stop, report).await?;
        (todo, condemned) = screened;
    }
    if args.dry_run {
        report.would_fetch = todo.iter().map(|l| l.uid.clone()).collect();
    } else if !todo.is_empty() {
        let recorder = ledger.recorder().map_err(|e| e.to_string())?;
        let (target, batch) = (fetch.target.clone(), fetch.batch as usize);
        let name = &settings.account.name;
        let sink = Deliverer::new(target, name, batch, recorder, fetch.modes)
            .map_err(|e| e.to_string())?;
        let total: u64 = todo.iter().map(|l| l.size).sum();
        let bar = progress(args, todo.len() as u64, total);
        let mut retriever = Retriever { ledger, sink, report, bar, now, stop };
        let retrieved = retriever.retrieve(client, &todo).await;
        // Whatever ended the retrieval, what was downloaded is kept.
        let finished = retriever.finish();
        retrieved?;
        finished?;
    }
    let mut doomed = deletions(fetch.policy, ledger, listing, now);
    for listed in &condemned {
        if !doomed.iter().any(|d| d.msg == listed.msg) {
            doomed.push(listed);
        }
    }
    if args.dry_run {
        report.would_delete = doomed.iter().map(|l| l.uid.clone()).collect();
        return Ok(());
    }
    let msgs: Vec<MsgNum> = doomed.iter().map(|l| l.msg).collect();
    let refused = client.dele_many(&msgs).await.map_err(|e| e.to_string())?;
    for (msg, e) in &refused {
        report.errors.push(format!("deleting message {msg}: {e}"));
    }
    report.deleted = msgs.len() - refused.len();
    report.deleted_by_filter =
        condemned.iter().filter(|l| !refused.iter().any(|(msg, _)| *msg == l.msg)).count();
    Ok(())
}

/// Brings the ledger up to date with the listing before anything is downloaded.
fn prepare(
    ledger: &mut Ledger,
    listing: &Listing,
    target: &Target,
    now: u64,
) -> Result<(), String> {
    // Seen times first, in one durable write: they name the Maildir files, so a message
    // delivered before a crash gets the same name when fetched again.
    let listed = listing.messages.iter().map(|l| l.uid.as_str());
    ledger.see_all(listed, now).map_err(|e| e.to_string())?;
    // A shared UIDL is still on the server: what the ledger knows of it is kept.
    let present: HashSet<&str> = listing.uids().collect();
    ledger.forget_missing(&present).map_err(|e| e.to_string())?;
    // An mbox batch announced but not confirmed (the last run died while appending it) is
    // looked for in the mbox: found, its messages count as fetched; else they are fetched
    // again.
    if let Target::Mbox(path) = target {
        ledger
            .resolve_pending(|p| mbox_append_present(path, p.offset, p.len, &p.digest))
            .map_err(|e| format!("checking {}: {e}", path.display()))?;
    }
    Ok(())
}

/// What to download: messages not stored before (every one with `--all`), except those
/// `--max-size` skips (counted in the report).
fn plan<'a>(
    args: &FetchArgs,
    settings: &Settings,
    ledger: &Ledger,
    listing: &'a Listing,
    report: &mut Report,
) -> Vec<&'a Listed> {
    let mut todo = Vec::new();
    for listed in &listing.messages {
        if ledger.is_fetched(&listed.uid) && !args.all {
            continue;
        }
        if settings.too_large(listed.size) {
            report.skipped_too_large += 1;
            continue;
        }
        todo.push(listed);
    }
    todo
}

/// Runs the filter on each planned message's header (`TOP n 0`), size limit first (the
/// plan has left out messages over `max_size`): returns the messages to download and those
/// to delete without downloading (exit 2, only when the policy deletes mail;
/// under `keep` an exit 1 leaves the message like exit 2). A message the filter fails on
/// stays on the server and is reported. Messages left or deleted do not count as new. Once a
/// stop is asked for, the messages not screened yet are left for the next run.
async fn screen<'a>(
    command: &str,
    settings: &Settings,
    client: &mut Client,
    ledger: &Ledger,
    planned: Vec<&'a Listed>,
    stop: &Stop,
    report: &mut Report,
) -> Result<(Vec<&'a Listed>, Vec<&'a Listed>), String> {
    let account = &settings.account;
    let deletes = settings.fetch.as_ref().is_some_and(|f| f.policy != Policy::Keep);
    let (mut todo, mut condemned) = (Vec::new(), Vec::new());
    for (screened, listed) in planned.iter().copied().enumerate() {
        if stop.requested() {
            report.left_by_stop += planned.len() - screened;
            break;
        }
        let header = header(client, listed.msg).await?;
        let about = About {
            account: &account.name,
            host: &account.host,
            user: &account.user,
            msg: listed.msg.get(),
            size: listed.size,
            uidl: &listed.uid,
        };
        let verdict = judge(command, &header, about, settings.timeout).await;
        let verdict = match verdict {
            Ok(Verdict::Fetch) => {
                todo.push(listed);
                continue;
            }
            Ok(Verdict::Delete) if deletes => {
                condemned.push(listed);
                Verdict::Delete
            }
            Ok(_) => {
                report.skipped_by_filter += 1;
                Verdict::Skip
            }
            Err(e) => {
                report.errors.push(format!("message {} ({}): {e}", listed.msg, listed.uid));
                Verdict::Skip
            }
        };
        if !ledger.is_fetched(&listed.uid) && verdict != Verdict::Fetch {
            report.new = report.new.saturating_sub(1);
        }
    }
    Ok((todo, condemned))
}

/// The header of message `msg` (`TOP msg 0`), at most 256 KiB of it.
async fn header(client: &mut Client, msg: MsgNum) -> Result<Vec<u8>, String> {
    let mut header = Vec::new();
    let mut body = client.top(msg, 0).await.map_err(|e| e.to_string())?;
    while let Some(chunk) = body.chunk().await.map_err(|e| e.to_string())? {
        let room = (256 * 1024usize).saturating_sub(header.len());
        header.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(header)
}

/// What to delete: only messages the ledger knows as stored (recorded, synced), as the
/// policy says.
fn deletions<'a>(
    policy: Policy,
    ledger: &Ledger,
    listing: &'a Listing,
    now: u64,
) -> Vec<&'a Listed> {
    let delete = |listed: &&Listed| {
        let Some(entry) = ledger.entries.get(&listed.uid) else { return false };
        match policy {
            Policy::Keep => false,
            Policy::Delete => entry.fetched,
            Policy::KeepDays(days) => {
                entry.fetched && now.saturating_sub(entry.seen) >= days * 86_400
            }
        }
    };
    listing.messages.iter().filter(delete).collect()
}
