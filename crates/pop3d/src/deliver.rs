//! `pop3d deliver`: local delivery for an MTA (Postfix's `pipe` transport or
//! `mailbox_command`).
//!
//! The exit status follows sysexits(3), because that is how an MTA decides between bouncing
//! and retrying: a permanent failure (no such user, an empty message, a permission or a
//! maildrop the administrator must fix) must not be retried for days, and a temporary one
//! (full disk, a lock, an I/O error) must not bounce. Postfix maps 64, 65, 67, 73 and 77 to
//! a bounce and 75 to a retry.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, Write};
use std::path::{Path, PathBuf};

use pop3_server::{AuthError, Authenticator, MailLocation, Mailboxes, UserInfo};
use pop3_storage::{Envelope, Error, ErrorKind};

use crate::exit;

/// Bytes read before deciding whether the message is empty.
const FIRST_CHUNK: usize = 64 * 1024;

/// The result of delivering to one recipient: an exit code and, for a failure, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: u8,
    pub message: Option<String>,
}

impl Outcome {
    fn ok() -> Self {
        Self { code: exit::OK, message: None }
    }

    fn failed(code: u8, message: String) -> Self {
        Self { code, message: Some(message) }
    }
}

/// The exit status for several recipients: one status covers them all, so the worst one
/// wins. A temporary failure ranks above a permanent one: the MTA then retries every
/// recipient (a duplicate at worst) rather than bouncing one whose delivery could still
/// succeed. Among permanent failures the first one is kept.
pub fn worst(outcomes: &[Outcome]) -> u8 {
    let rank = |code: u8| match code {
        exit::OK => 0,
        exit::TEMPFAIL => 2,
        _ => 1,
    };
    outcomes.iter().map(|o| o.code).fold(exit::OK, |worst, code| {
        if rank(code) > rank(worst) {
            code
        } else {
            worst
        }
    })
}

/// Delivers the message on `input` to every recipient, in order; one outcome per recipient.
///
/// A single recipient is delivered straight from `input`; several are first spooled to an
/// unlinked temporary file (mode 0600 in `$TMPDIR`) that each delivery reads from the start.
/// An empty message (0 bytes) is refused with 65 for every recipient. `location`, for
/// maildrops in files, explains a user whose maildrop path cannot be made.
pub fn deliver_all(
    mailboxes: &dyn Mailboxes,
    location: Option<&MailLocation>,
    users: &dyn Authenticator,
    recipients: &[String],
    sender: Option<String>,
    input: &mut dyn Read,
) -> Vec<Outcome> {
    let all = |outcome: Outcome| vec![outcome; recipients.len()];
    let first = match read_first_chunk(input) {
        Ok(first) => first,
        Err(e) => return all(Outcome::failed(exit::TEMPFAIL, format!("reading the message: {e}"))),
    };
    if first.is_empty() {
        return all(Outcome::failed(exit::DATAERR, "empty message (0 bytes) refused".into()));
    }
    let envelope = Envelope { sender };
    if let [name] = recipients {
        let mut message = Cursor::new(first).chain(input);
        return vec![deliver_one(mailboxes, location, users, name, &mut message, &envelope)];
    }
    let mut spool = match spool(&first, input) {
        Ok(file) => file,
        Err(e) => {
            return all(Outcome::failed(exit::TEMPFAIL, format!("spooling the message: {e}")))
        }
    };
    recipients
        .iter()
        .map(|name| match spool.rewind() {
            Ok(()) => deliver_one(mailboxes, location, users, name, &mut spool, &envelope),
            Err(e) => Outcome::failed(exit::TEMPFAIL, format!("spool: {e}")),
        })
        .collect()
}

fn read_first_chunk(input: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut first = Vec::with_capacity(FIRST_CHUNK);
    input.take(FIRST_CHUNK as u64).read_to_end(&mut first)?;
    Ok(first)
}

/// Copies the message into an unlinked temporary file, so nothing is left behind whatever
/// happens to this process.
fn spool(first: &[u8], rest: &mut dyn Read) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    let mut attempt = 0u32;
    let (path, mut file) = loop {
        let path = spool_name(&dir, attempt);
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => break (path, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    };
    std::fs::remove_file(&path)?;
    file.write_all(first)?;
    io::copy(rest, &mut file)?;
    Ok(file)
}

fn spool_name(dir: &Path, attempt: u32) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    dir.join(format!("pop3d-deliver.{}.{nanos}.{attempt}", std::process::id()))
}

fn deliver_one(
    mailboxes: &dyn Mailboxes,
    location: Option<&MailLocation>,
    users: &dyn Authenticator,
    name: &str,
    message: &mut dyn Read,
    envelope: &Envelope,
) -> Outcome {
    let found = if pop3_server::valid_username(name) { users.user(name) } else { Ok(None) };
    let user = match found {
        Ok(Some(user)) => user,
        Ok(None) => return Outcome::failed(exit::NOUSER, format!("unknown user {name:?}")),
        // The users database cannot answer: the MTA tries again later.
        Err(AuthError::Temporary(e)) => {
            return Outcome::failed(exit::TEMPFAIL, format!("looking up {name}: {e}"))
        }
        Err(AuthError::Rejected) => {
            return Outcome::failed(exit::NOUSER, format!("unknown user {name:?}"))
        }
    };
    if let Some(location) = location {
        if let Err(e) = location.path_for(&user) {
            return Outcome::failed(exit::NOUSER, no_maildrop(location, &user, &e));
        }
    }
    tracing::debug!(user = name, "delivering");
    match mailboxes.deliver(&user, message, envelope) {
        Ok(()) => Outcome::ok(),
        Err(e) => Outcome::failed(classify(&e), format!("delivery to {name} failed: {e}")),
    }
}

/// Why `user` has no maildrop path (the template cannot be filled in for them).
fn no_maildrop(location: &MailLocation, user: &UserInfo, error: &Error) -> String {
    let has_home = user.home.as_ref().is_some_and(|h| h.is_absolute());
    if location.template.contains("%h") && !has_home {
        format!(
            "user {:?} has no home directory (an absolute path in the users file's home field), \
             which location = {:?} needs",
            user.name, location.template
        )
    } else {
        format!("user {:?} has no maildrop: {error}", user.name)
    }
}

/// The sysexits(3) code for a failed delivery: permission problems are 77 (EX_NOPERM), a
/// maildrop that cannot be used as it is (not a directory, a corrupt mbox) 73
/// (EX_CANTCREAT), a name that cannot have a maildrop 67 (EX_NOUSER); everything that may
/// pass by itself (full disk, I/O error, a lock held) is 75 (EX_TEMPFAIL).
pub fn classify(error: &Error) -> u8 {
    match (error.kind(), error) {
        (ErrorKind::Permanent, Error::InvalidUser(_)) => exit::NOUSER,
        (ErrorKind::Permanent, Error::Io { source, .. })
            if matches!(
                source.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            exit::NOPERM
        }
        (ErrorKind::Permanent, _) => exit::CANTCREAT,
        (ErrorKind::Temporary | ErrorKind::InUse, _) => exit::TEMPFAIL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: io::ErrorKind) -> Error {
        Error::Io { op: "create", path: "/x".into(), source: io::Error::from(kind) }
    }

    #[test]
    fn permanent_and_temporary_failures() {
        assert_eq!(classify(&io(io::ErrorKind::PermissionDenied)), exit::NOPERM);
        assert_eq!(classify(&io(io::ErrorKind::ReadOnlyFilesystem)), exit::NOPERM);
        assert_eq!(classify(&io(io::ErrorKind::NotADirectory)), exit::CANTCREAT);
        assert_eq!(classify(&io(io::ErrorKind::StorageFull)), exit::TEMPFAIL);
        assert_eq!(classify(&io(io::ErrorKind::Other)), exit::TEMPFAIL);
        assert_eq!(classify(&Error::InvalidUser("x".into())), exit::NOUSER);
        assert_eq!(classify(&Error::InUse { path: "/x".into(), holder: None }), exit::TEMPFAIL);
        let corrupt = Error::Corrupt { path: "/x".into(), reason: "no From line".into() };
        assert_eq!(classify(&corrupt), exit::CANTCREAT);
    }

    #[test]
    fn the_worst_outcome_wins_and_a_retry_beats_a_bounce() {
        let ok = Outcome::ok();
        let nouser = Outcome::failed(exit::NOUSER, String::new());
        let temp = Outcome::failed(exit::TEMPFAIL, String::new());
        let perm = Outcome::failed(exit::NOPERM, String::new());
        assert_eq!(worst(&[ok.clone(), ok.clone()]), exit::OK);
        assert_eq!(worst(&[ok.clone(), nouser.clone()]), exit::NOUSER);
        assert_eq!(worst(&[nouser.clone(), perm.clone()]), exit::NOUSER);
        assert_eq!(worst(&[temp.clone(), nouser.clone(), ok]), exit::TEMPFAIL);
        assert_eq!(worst(&[perm, temp]), exit::TEMPFAIL);
    }
}
