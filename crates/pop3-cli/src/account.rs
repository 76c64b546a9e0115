//! One account, one session: open its ledger, connect, take the listing, do what the
//! command asks (`check`, `list`, `rebuild-state`, or `fetch`, see `fetch.rs`) and `QUIT`.
//! Only a `QUIT` that succeeds lets the server remove what was deleted (RFC 1939 section 6).

use pop3_client::Client;

use crate::args::Cmd;
use crate::config;
use crate::connect::connect;
use crate::fetch::fetch;
use crate::ledger::{now, Ledger};
use crate::listing::Listing;
use crate::report::{ListEntry, Report};
use crate::settings::Settings;
use crate::stop::Stop;

/// Works on one account as `cmd` asks, filling in `report`.
///
/// A fetch looks at `stop` between messages: once it is asked for, the download stops at a
/// batch boundary and the session ends as usual (deletions, `QUIT`).
pub async fn run_account(
    cmd: &Cmd,
    settings: &Settings,
    stop: &Stop,
    report: &mut Report,
) -> Result<(), String> {
    let account = &settings.account;
    let state_dir = config::state_dir();
    let mut ledger =
        Ledger::open(&state_dir, &config::file_name(&account.name), cmd.is_read_only())
            .map_err(|e| format!("state in {}: {e}", state_dir.display()))?;
    let mut client = connect(settings).await?;
    let listed = client.list_uidl().await.map_err(|e| e.to_string())?;
    report.messages = listed.len();
    let listing = Listing::new(listed, &mut report.errors);
    // New: not fetched before, and not too large to be fetched at all (a message skipped by
    // the size limit would otherwise make every run report new mail).
    report.new = listing
        .messages
        .iter()
        .filter(|l| !ledger.is_fetched(&l.uid) && !settings.too_large(l.size))
        .count();
    match cmd {
        Cmd::Check(_) | Cmd::Auth(_) => {}
        Cmd::RebuildState(_) => {
            let uids: Vec<&str> = listing.messages.iter().map(|l| l.uid.as_str()).collect();
            ledger.mark_all_fetched(&uids, now()).map_err(|e| e.to_string())?;
            report.new = 0;
        }
        Cmd::List(_) => {
            list(&mut client, &ledger, &listing, report).await?;
            report.new = 0;
        }
        Cmd::Fetch(args) => {
            fetch(args, settings, &mut client, &mut ledger, &listing, stop, report).await?
        }
    }
    client.quit().await.map_err(|e| e.to_string())
}

/// `list`: each message with From, Subject and Date from its header (`TOP n 0`).
async fn list(
    client: &mut Client,
    ledger: &Ledger,
    listing: &Listing,
    report: &mut Report,
) -> Result<(), String> {
    for listed in &listing.messages {
        let mut header = Vec::new();
        let mut body = client.top(listed.msg, 0).await.map_err(|e| e.to_string())?;
        while let Some(chunk) = body.chunk().await.map_err(|e| e.to_string())? {
            if header.len() < 64 * 1024 {
                header.extend_from_slice(&chunk);
            }
        }
        let get = |name: &str| header_field(&header, name);
        report.list.push(ListEntry {
            msg: listed.msg.get(),
            size: listed.size,
            uidl: listed.uid.clone(),
            fetched: ledger.is_fetched(&listed.uid),
            from: get("From"),
            subject: get("Subject"),
            date: get("Date"),
        });
    }
    Ok(())
}

/// The unfolded value of a header field, or "".
pub(crate) fn header_field(header: &[u8], name: &str) -> String {
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
