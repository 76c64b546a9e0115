//! `pop3d migrate`: copies Maildirs or mboxes into the PostgreSQL store, keeping every
//! message's UIDL, so that clients which leave mail on the server (and remember what they
//! fetched by UIDL) fetch nothing twice after the move.
//!
//! Each message is delivered with its UIDL as the sink's key, which the PostgreSQL store
//! makes the message's UIDL and refuses to store twice: a second run copies nothing, and a
//! run that was interrupted (at most one batch is lost, never half a message) resumes where
//! it stopped. The source is opened like a POP3 session opens it (locked, so no POP3 session
//! changes it meanwhile; Dovecot's `dovecot-uidlist` read with `[mail] dovecot_uidl_format`)
//! and never changed: removing it afterwards is the operator's step.

use std::fmt;

use pop3_server::{Authenticator, Mailboxes, UserInfo};
use pop3_storage::sink::{Begun, Incoming};
use pop3_storage::{Backend, ErrorKind, Location, MaildirOptions, Maildrop, Template, User};

use crate::exit;

/// Where the mail comes from: `maildir:TEMPLATE` or `mbox:TEMPLATE`, the template in the
/// syntax of `[mail] location` (`%u`, `%n`, `%d`, `%h`), or a plain path for one user.
#[derive(Debug, Clone)]
pub struct Source {
    location: Location,
    shown: String,
}

impl Source {
    pub fn parse(spec: &str, dovecot: pop3_storage::DovecotUidlFormat) -> Result<Self, String> {
        let (format, path) = spec
            .split_once(':')
            .ok_or_else(|| format!("--from {spec:?}: use maildir:PATH or mbox:PATH"))?;
        let template = Template::parse(path).map_err(|e| format!("--from {spec:?}: {e}"))?;
        let location = match format {
            "maildir" => {
                // Never create a source: a missing Maildir is a user with nothing to copy.
                let options = MaildirOptions {
                    create: false,
                    dovecot_uidl_format: dovecot,
                    ..MaildirOptions::default()
                };
                Location::maildir(template, options)
            }
            "mbox" => Location::mbox(template),
            other => {
                return Err(format!("--from {spec:?}: unknown format {other:?} (maildir or mbox)"))
            }
        };
        Ok(Self { location, shown: spec.to_owned() })
    }
}

/// What one user's migration did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub copied: usize,
    pub already: usize,
    /// The source maildrop does not exist.
    pub missing: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing {
            return f.write_str("no maildrop, nothing to copy");
        }
        write!(f, "{} copied, {} already there", self.copied, self.already)
    }
}

/// A failed migration: the exit code and why.
pub type Failure = (u8, String);

/// True if `source` names a maildrop per user (needed by `--all`).
pub fn per_user(spec: &str) -> bool {
    spec.split_once(':')
        .and_then(|(_, path)| Template::parse(path).ok())
        .is_some_and(|t| t.is_per_user())
}

/// Copies `name`'s maildrop from `source` into `target`.
pub fn migrate_user(
    source: &Source,
    target: &dyn Mailboxes,
    users: &dyn Authenticator,
    name: &str,
) -> Result<Report, Failure> {
    let user = match users.user(name) {
        Ok(Some(user)) => user,
        // Not in the users database: a plain name still names its maildrop (no %h).
        Ok(None) if pop3_server::valid_username(name) => UserInfo::new(name),
        Ok(None) => return Err((exit::NOUSER, format!("{name:?} is not a valid user name"))),
        Err(pop3_server::AuthError::Temporary(e)) => {
            return Err((exit::TEMPFAIL, format!("looking up {name}: {e}")))
        }
        Err(pop3_server::AuthError::Rejected) => {
            return Err((exit::NOUSER, format!("{name:?} is not a user")))
        }
    };
    let storage_user = User { name: user.name.clone(), home: user.home.clone() };
    let failed = |what: &str, e: pop3_storage::Error| {
        let code = match e.kind() {
            ErrorKind::Temporary | ErrorKind::InUse => exit::TEMPFAIL,
            ErrorKind::Permanent => exit::DATAERR,
        };
        (code, format!("{name}: {what}: {e}"))
    };
    let path = source.location.path_for(&storage_user).map_err(|e| failed("source", e))?;
    if !path.exists() {
        return Ok(Report { missing: true, ..Report::default() });
    }
    let maildrop = source
        .location
        .open(&storage_user)
        .map_err(|e| failed(&format!("open {} ({})", path.display(), source.shown), e))?;
    let mut sink = target.sink(&user).map_err(|e| failed("target", e))?;
    let mut report = Report::default();
    for (index, info) in maildrop.messages().iter().enumerate() {
        let incoming = Incoming { key: Some(info.uidl.clone()), ..Incoming::default() };
        if sink.begin(&incoming).map_err(|e| failed("copy", e))? == Begun::AlreadyStored {
            report.already += 1;
            continue;
        }
        copy_body(&*maildrop, index, &path, &mut *sink).map_err(|e| {
            sink.abort();
            failed(&format!("copy message {} (UIDL {})", index + 1, info.uidl), e)
        })?;
        sink.stage().map_err(|e| failed("copy", e))?;
        report.copied += 1;
        if sink.wants_seal() {
            sink.seal().map_err(|e| failed("commit", e))?;
            settle(sink.settled(false)).map_err(|e| failed("commit", e))?;
        }
    }
    settle(sink.finish().map_err(|e| failed("commit", e))?).map_err(|e| failed("commit", e))?;
    // Dropped without a commit: the source is left exactly as it was.
    drop(maildrop);
    Ok(report)
}

fn copy_body(
    maildrop: &dyn Maildrop,
    index: usize,
    path: &std::path::Path,
    sink: &mut dyn pop3_storage::sink::Sink,
) -> pop3_storage::Result<()> {
    use std::io::Read;
    let mut reader = maildrop.read_message(index)?;
    let mut buf = vec![0; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sink.write(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(pop3_storage::Error::Io {
                    op: "read",
                    path: path.to_owned(),
                    source: e,
                })
            }
        }
    }
}

/// The first failure among settled batches, if any.
fn settle(settled: Vec<pop3_storage::sink::Settled>) -> pop3_storage::Result<()> {
    settled.into_iter().try_for_each(|batch| batch.result.map(drop))
}
