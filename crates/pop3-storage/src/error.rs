//! Typed errors, classified the way RFC 2449/3206 response codes need them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What a POP3 server should tell the client about an [`Error`].
///
/// The mapping to RFC 2449 / RFC 3206 response codes is one to one:
/// `InUse` → `-ERR [IN-USE]`, `Temporary` → `-ERR [SYS/TEMP]`, `Permanent` → `-ERR [SYS/PERM]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The maildrop is locked by another session (this process or another one).
    InUse,
    /// A failure that may go away by itself (I/O error, full disk, message removed
    /// under us): the client may try again later.
    Temporary,
    /// A failure that needs an administrator (permissions, corrupt mailbox, bad user name).
    Permanent,
}

/// Everything that can go wrong in this crate.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another session holds the maildrop's lock.
    InUse {
        /// The maildrop (Maildir directory or mbox file).
        path: PathBuf,
        /// The process id recorded by the holder, when it left one.
        holder: Option<u32>,
    },
    /// The user name cannot name a maildrop (empty, `.`/`..`, contains `/` or NUL).
    InvalidUser(String),
    /// A message key given to a delivery sink cannot be part of a file name (empty, or with
    /// `/`, `:`, `,`, `.`, `\\`, whitespace or control characters).
    InvalidKey(String),
    /// The index is not a message of this snapshot.
    NoSuchMessage(usize),
    /// The message was in the snapshot but has since been removed by another program.
    MessageGone {
        /// Index in the snapshot.
        index: usize,
        /// Its UIDL.
        uidl: String,
    },
    /// The maildrop was already committed; a committed maildrop serves nothing more.
    Committed,
    /// On-disk data this crate refuses to interpret or change (e.g. an mbox that does not
    /// begin with a `From ` line, or one changed behind our lock).
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A database statement or connection failed (the PostgreSQL backend).
    Database {
        /// What we were doing ("open maildrop", "commit", ...).
        op: &'static str,
        /// True if retrying later may succeed (the server is down or the connection was
        /// lost); false for what needs an administrator (a refused login, a missing table).
        temporary: bool,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An I/O error, with what we were doing and on which path.
    Io {
        /// What we were doing ("open", "rename", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// How a server should report this error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InUse { .. } => ErrorKind::InUse,
            Error::MessageGone { .. } => ErrorKind::Temporary,
            Error::InvalidUser(_)
            | Error::InvalidKey(_)
            | Error::NoSuchMessage(_)
            | Error::Committed
            | Error::Corrupt { .. } => ErrorKind::Permanent,
            Error::Database { temporary: true, .. } => ErrorKind::Temporary,
            Error::Database { temporary: false, .. } => ErrorKind::Permanent,
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied
                | io::ErrorKind::ReadOnlyFilesystem
                | io::ErrorKind::NotADirectory
                | io::ErrorKind::IsADirectory
                | io::ErrorKind::InvalidData
                | io::ErrorKind::InvalidFilename => ErrorKind::Permanent,
                _ => ErrorKind::Temporary,
            },
        }
    }

    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io { op, path: path.as_ref().to_path_buf(), source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InUse { path, holder } => {
                write!(f, "maildrop {} is in use", path.display())?;
                if let Some(pid) = holder {
                    write!(f, " by process {pid}")?;
                }
                Ok(())
            }
            Error::InvalidUser(user) => write!(f, "invalid user name {user:?}"),
            Error::InvalidKey(key) => write!(f, "invalid message key {key:?}"),
            Error::NoSuchMessage(index) => write!(f, "no message with index {index}"),
            Error::MessageGone { index, uidl } => {
                write!(f, "message {index} (UIDL {uidl}) was removed by another program")
            }
            Error::Committed => f.write_str("maildrop already committed"),
            Error::Corrupt { path, reason } => {
                write!(f, "refusing {}: {reason}", path.display())
            }
            Error::Database { op, source, .. } => write!(f, "{op}: {source}"),
            Error::Io { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Database { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// Shorthand: attach an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_response_codes() {
        let in_use = Error::InUse { path: "/x".into(), holder: Some(7) };
        assert_eq!(in_use.kind(), ErrorKind::InUse);
        assert!(in_use.to_string().contains("process 7"));
        let denied = Error::io("open", "/x", io::ErrorKind::PermissionDenied.into());
        assert_eq!(denied.kind(), ErrorKind::Permanent);
        let full = Error::io("write", "/x", io::Error::from_raw_os_error(28)); // ENOSPC
        assert_eq!(full.kind(), ErrorKind::Temporary);
        let gone = Error::MessageGone { index: 1, uidl: "u".into() };
        assert_eq!(gone.kind(), ErrorKind::Temporary);
        assert_eq!(Error::Committed.kind(), ErrorKind::Permanent);
    }
}
