//! POP3 maildrops: Maildir, mbox and in-memory.
//!
//! A [`Backend`] maps a [`User`] to a maildrop: [`Location`] (Maildirs or mboxes found through
//! a Dovecot-style [`Template`]) and [`MemoryStore`] implement it. [`Backend::open`] locks the
//! user's maildrop exclusively (a second opener, in this process or another, gets
//! [`Error::InUse`]) and returns a [`Maildrop`]: a snapshot of the messages in delivery order,
//! each with its exact RFC 1939 size ([`size`]) and a stable UIDL. Message bodies are read as
//! streams ([`MessageReader`]), never whole. Deletions are the caller's marks until
//! [`Maildrop::commit`], which removes exactly the given messages, crash-safely; dropping a
//! maildrop without committing deletes nothing. The lock is released on commit, on drop and
//! on process death. Delivery goes through a durable [`sink`]: stage messages, seal a batch,
//! learn which messages are settled; [`Backend::deliver`] is a batch of one.
//!
//! This crate does no dot-stuffing and frames no reply: it hands out stored bytes and the sizes
//! the protocol layer's CRLF normalisation will produce, and, for the messages the server's
//! deliveries store in [wire form](wire) (CRLF already), an open file and where the lines that
//! begin with `.` start ([`Maildrop::wire_message`]). Blocking file I/O is used throughout;
//! an async server should call it from a blocking-capable thread.
//!
//! ```
//! use pop3_storage::{Backend, Envelope, MemoryStore, User};
//! use std::io::Read;
//!
//! let store = MemoryStore::new();
//! let alice = User::new("alice");
//! store.deliver(&alice, &mut &b"Subject: hi\n\nhello\n"[..], &Envelope::default())?;
//! let mut drop = store.open(&alice)?;
//! assert_eq!(drop.messages()[0].size, 22); // 19 stored octets + 3 LFs sent as CRLF
//! let mut body = Vec::new();
//! drop.read_message(0)?.read_to_end(&mut body)?;
//! drop.commit(&[0])?;
//! assert!(store.open(&alice)?.messages().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/storage.md` in the repository for the UIDL schemes, the size cache format, the
//! locking protocol and the crash-safety argument.

#![forbid(unsafe_code)]

mod backend;
mod dovecot;
mod error;
mod location;
mod lock;
pub mod maildir;
pub mod mbox;
mod memory;
#[cfg(feature = "postgresql")]
pub mod postgres;
pub mod sink;
pub mod size;
mod util;
pub mod wire;

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};

pub use backend::Backend;
pub use dovecot::{DovecotUidlFormat, UidlFormatError, DEFAULT_UIDL_FORMAT};
pub use error::{Error, ErrorKind, Result};
pub use location::{
    valid_user_name, Format, Location, Template, TemplateError, User, MAX_USER_NAME_LEN,
};
pub use maildir::{DeleteMode, Maildir, MaildirDrop, MaildirOptions};
pub use mbox::{Append, Mbox, MboxDrop};
pub use memory::{MemoryDrop, MemoryStore};
pub use size::{rfc1939_size, SizeCounter};
pub use util::is_valid_uidl;

/// One message of a maildrop snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Exact RFC 1939 size in octets (see [`size`]).
    pub size: u64,
    /// Unique id: 1 to 70 characters in 0x21–0x7E, stable across sessions.
    pub uidl: String,
}

/// An open, exclusively locked maildrop: a snapshot taken at open time.
///
/// Messages are addressed by their 0-based index in [`messages`](Self::messages) (POP3 message
/// number minus one). Messages delivered after the snapshot was taken are not part of it and
/// are never touched by [`commit`](Self::commit).
pub trait Maildrop: fmt::Debug + Send {
    /// The snapshot, in delivery order.
    fn messages(&self) -> &[MessageInfo];

    /// A stream of the stored bytes of message `index` (line endings as stored; the protocol
    /// layer normalises them). The reader uses a bounded buffer, never the whole message.
    ///
    /// A message removed by another program since the snapshot gives
    /// [`Error::MessageGone`]; the maildrop stays usable.
    fn read_message(&self, index: usize) -> Result<MessageReader<'_>>;

    /// Message `index` as an open file in [wire form](wire), if it is stored so and the
    /// store knows where its dot lines are; `Ok(None)` otherwise (the default), and the
    /// caller reads it with [`read_message`](Self::read_message). A server sends such a
    /// file as it is (`sendfile`), adding only the stuffing dots and the terminator.
    ///
    /// Nothing is read and the file is not `stat`ed: [`WireMessage::len`] comes from what
    /// was recorded at delivery. A file that changed since (which Maildir forbids) shows
    /// as a short read; the sender must then not complete the reply (see
    /// [`WireMessage`]). A message removed since the snapshot gives
    /// [`Error::MessageGone`].
    fn wire_message(&self, index: usize) -> Result<Option<WireMessage>> {
        let _ = index;
        Ok(None)
    }

    /// True if this maildrop's work is local: files on this host or memory, so that reading
    /// a small message costs about what a page-cache read does and dropping it (releasing
    /// its lock) is a file operation at most. A server may then do both on an async runtime
    /// thread rather than hop to a blocking pool. False (the default) for anything that can
    /// wait on a network or a remote lock, such as the PostgreSQL backend, and for any
    /// maildrop an embedder writes without saying otherwise; release one of those with
    /// `commit(&[])` on a blocking thread when the release must be finished before going on.
    fn is_local(&self) -> bool {
        false
    }

    /// Removes exactly the messages at `deleted` (indices into the snapshot; duplicates are
    /// ignored) and releases the lock. An index out of range fails before anything is removed.
    /// Afterwards the maildrop serves nothing more ([`Error::Committed`]).
    fn commit(&mut self, deleted: &[usize]) -> Result<()>;
}

/// A message stored in [wire form](wire), open for sending (see
/// [`Maildrop::wire_message`]).
///
/// Its first [`len`](Self::len) octets are exactly the octets RFC 1939 counts in the
/// message's size (CRLF line ends, last line complete); a `.` goes before each of them at
/// [`dot_lines`](Self::dot_lines) (RFC 1939 §3 byte-stuffing), and the terminator after.
/// The file may have changed behind the snapshot: a sender reads or sends exactly `len`
/// octets from offset 0 and treats an early end of file as a failed read, never as the end
/// of the message.
#[derive(Debug)]
pub struct WireMessage {
    /// The message file, read from offset 0.
    pub file: File,
    /// Its length in wire form: the snapshot's size of the message.
    pub len: u64,
    /// Offsets of the lines that begin with `.`, increasing, each below `len`.
    pub dot_lines: Vec<u64>,
}

/// Envelope data for delivery. Maildir ignores it; mbox writes the sender and time into the
/// `From ` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Envelope sender (`MAIL FROM`); `None` or empty gives `MAILER-DAEMON`.
    pub sender: Option<String>,
}

/// A stream of one message's stored bytes. Implements [`Read`].
pub struct MessageReader<'a> {
    inner: ReaderInner<'a>,
}

enum ReaderInner<'a> {
    Slice(&'a [u8]),
    File(BufReader<File>),
    /// A file whose length is known: reading checks it, at the end of the file or past it.
    Checked(Box<CheckedFile>),
    Region {
        file: &'a File,
        pos: u64,
        end: u64,
    },
    Custom(Box<dyn Read + Send + 'a>),
}

/// A message file read with its length checked as it is read (see
/// [`MessageReader::checked`]).
struct CheckedFile {
    file: BufReader<File>,
    read: u64,
    expected: u64,
    path: std::path::PathBuf,
    /// Removed when the length is wrong (the size cache it came from).
    stale: Option<std::path::PathBuf>,
}

impl CheckedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if self.read > self.expected || (n == 0 && !buf.is_empty() && self.read < self.expected) {
            if let Some(stale) = self.stale.take() {
                let _ = std::fs::remove_file(stale);
            }
            let more = if n == 0 { "only" } else { "more than" };
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: message file has {more} {} octets, {} when its size was computed \
                     (size cache invalidated)",
                    self.path.display(),
                    self.read,
                    self.expected
                ),
            ));
        }
        Ok(n)
    }
}

/// Buffer size for reading message files: large enough for few syscalls, small enough
/// that many concurrent sessions stay cheap.
pub(crate) const CHUNK: usize = 64 * 1024;

impl<'a> MessageReader<'a> {
    /// Wraps any reader, for embedders implementing [`Maildrop`] themselves.
    pub fn new(reader: Box<dyn Read + Send + 'a>) -> Self {
        Self { inner: ReaderInner::Custom(reader) }
    }

    pub(crate) fn slice(bytes: &'a [u8]) -> Self {
        Self { inner: ReaderInner::Slice(bytes) }
    }

    pub(crate) fn file(file: File) -> Self {
        Self { inner: ReaderInner::File(BufReader::with_capacity(CHUNK, file)) }
    }

    /// A file that must hold exactly `expected` octets: a read that ends before them, or
    /// goes past them, fails with [`io::ErrorKind::InvalidData`] (and removes `stale`, the
    /// cache the length came from). Checking as it reads costs no `stat`, and also sees a
    /// file that changes after it was opened.
    pub(crate) fn checked(
        file: File,
        expected: u64,
        path: std::path::PathBuf,
        stale: Option<std::path::PathBuf>,
    ) -> Self {
        let file = BufReader::with_capacity(CHUNK, file);
        let checked = CheckedFile { file, read: 0, expected, path, stale };
        Self { inner: ReaderInner::Checked(Box::new(checked)) }
    }

    pub(crate) fn region(file: &'a File, start: u64, end: u64) -> Self {
        Self { inner: ReaderInner::Region { file, pos: start, end } }
    }
}

impl Read for MessageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            ReaderInner::Slice(s) => s.read(buf),
            ReaderInner::File(f) => f.read(buf),
            ReaderInner::Checked(f) => f.read(buf),
            ReaderInner::Region { file, pos, end } => {
                use std::os::unix::fs::FileExt;
                let want = buf.len().min(usize::try_from(*end - *pos).unwrap_or(usize::MAX));
                if want == 0 {
                    return Ok(0);
                }
                let n = file.read_at(&mut buf[..want], *pos)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "mbox shrank while a message was being read",
                    ));
                }
                *pos += n as u64;
                Ok(n)
            }
            ReaderInner::Custom(r) => r.read(buf),
        }
    }
}

impl fmt::Debug for MessageReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            ReaderInner::Slice(s) => format!("Slice({} bytes left)", s.len()),
            ReaderInner::File(_) => "File".to_owned(),
            ReaderInner::Checked(f) => format!("Checked({} of {})", f.read, f.expected),
            ReaderInner::Region { pos, end, .. } => format!("Region({pos}..{end})"),
            ReaderInner::Custom(_) => "Custom".to_owned(),
        };
        f.debug_struct("MessageReader").field("inner", &kind).finish()
    }
}

/// Hooks for crash-safety tests. Not part of the stable API.
#[doc(hidden)]
pub mod testing {
    /// Installs a function called with the name of each crash-relevant step of commit and
    /// delivery (e.g. `"maildir.deliver.linked"`). A test's child process uses it to stop at a
    /// step so the parent can kill it there. Can be set once per process.
    pub fn set_failpoint_hook(hook: fn(&str)) {
        crate::util::set_failpoint_hook(hook);
    }
}
