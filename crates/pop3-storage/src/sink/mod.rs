//! Durable delivery sinks: one contract for every backend, from a batch of one (`pop3d
//! deliver`) to a retriever storing thousands of messages.
//!
//! 1. **Stage** messages one at a time: [`Sink::begin`], [`Sink::write`] the octets in
//!    chunks of any size, then [`Sink::stage`] (or [`Sink::abort`]). Each staged message gets
//!    the next [`MessageId`], counting from 0 in staging order. A staged message is written
//!    but not yet durable, and not yet visible to readers of the maildrop.
//! 2. **Seal** the staged messages into a batch ([`Sink::seal`]). The sink makes the batch
//!    durable and visible, all of it or, after a crash, none (Maildir: per message, each
//!    visible only once durable), in the background where it can, while the next batch is
//!    staged. [`Sink::wants_seal`] says when a batch is worth sealing (group commit: big
//!    enough, old enough, or nothing being committed right now).
//! 3. **Learn what is settled** ([`Sink::settled`]): batches in the order they were sealed,
//!    each a range of ids and whether every one of its messages is durable. Nothing else says
//!    that a message is stored: a caller that must not lose mail (a retriever deleting it from
//!    the server) acts on a message only once it is settled `Ok`. A failed batch's messages
//!    are not stored (a Maildir's staged files are removed); they can be staged again.
//!
//! [`Sink::finish`] seals what is staged and waits for everything: a delivery of one message
//! is `begin`, `write`, `stage`, `finish`.
//!
//! The sinks: [`MaildirSink`] (group commit, `O_TMPFILE`, `syncfs` or parallel `fdatasync`,
//! `renameat2(RENAME_NOREPLACE)`), [`MboxSink`] (one locked, journalled append per batch) and
//! the memory store's.

mod durable;
mod maildir;
mod mbox;

use std::io::Read;
use std::ops::Range;
use std::time::Duration;

pub use maildir::MaildirSink;
pub use mbox::MboxSink;

use crate::{Envelope, Result};

/// A staged message's number in its sink: 0, 1, 2... in staging order.
pub type MessageId = u64;

/// What the sink needs to know of a message before its octets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    /// Envelope data (mbox writes the sender into the `From ` line).
    pub envelope: Envelope,
    /// A stable key for this message, for idempotent delivery: a message stored under a key
    /// is not stored again ([`Begun::AlreadyStored`]). Maildir makes it the unique part of the
    /// file name (so it must be 1 to 64 characters of `A-Z a-z 0-9 - _ = +`); mbox and memory
    /// ignore it. `None`: a fresh unique name.
    pub key: Option<String>,
    /// When the message was received, in seconds since the epoch (Maildir: the leading
    /// number of the file name, which orders the maildrop). `None`: now.
    pub received: Option<u64>,
}

/// What [`Sink::begin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// Write the message, then stage it.
    New,
    /// A message with this key is stored already (an earlier run stored it and died before
    /// it could record so): nothing to write or stage.
    AlreadyStored,
}

/// A settled batch: its messages and whether all of them are durable.
#[derive(Debug)]
pub struct Settled {
    /// The batch's messages.
    pub ids: Range<MessageId>,
    /// `Ok` with what each message was stored as (Maildir: its file name in `new/`; empty for
    /// mbox and memory), or why none of them is.
    pub result: Result<Vec<String>>,
}

/// When a sink wants its staged messages sealed, whichever comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLimits {
    /// Messages in a batch.
    pub messages: usize,
    /// Octets in a batch.
    pub bytes: u64,
    /// Time since its first message was staged.
    pub age: Duration,
}

impl Default for BatchLimits {
    /// 1,000 messages, 64 MiB, one second: few flushes, little to store again after a crash.
    fn default() -> Self {
        Self { messages: 1000, bytes: 64 << 20, age: Duration::from_secs(1) }
    }
}

/// Permissions of what a sink creates (the umask applies on top).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    /// Directories: a Maildir and its `tmp/`, `new/`, `cur/`, an mbox's parent directories.
    pub dir: u32,
    /// Message files and mbox files.
    pub file: u32,
}

impl Modes {
    /// Mail is private: directories 0700, files 0600.
    pub const PRIVATE: Self = Self { dir: 0o700, file: 0o600 };
    /// As the umask allows (0777 and 0666 less the umask), as most MDAs create files.
    pub const UMASK: Self = Self { dir: 0o777, file: 0o666 };
}

impl Default for Modes {
    fn default() -> Self {
        Self::PRIVATE
    }
}

/// A durable delivery sink (see the [module docs](self)).
pub trait Sink: Send {
    /// Starts a message. A message begun and neither staged nor aborted is aborted.
    fn begin(&mut self, incoming: &Incoming) -> Result<Begun>;

    /// Writes the next octets of the begun message, as they are to be stored.
    fn write(&mut self, chunk: &[u8]) -> Result<()>;

    /// Ends the begun message: it is staged, to be committed with its batch.
    fn stage(&mut self) -> Result<MessageId>;

    /// Abandons the begun message, if any: nothing of it stays.
    fn abort(&mut self);

    /// True when the staged messages should be sealed now (see [`BatchLimits`]).
    fn wants_seal(&self) -> bool;

    /// Seals the staged messages (if any) into a batch and starts committing it.
    fn seal(&mut self) -> Result<()>;

    /// The batches settled since the last call, in sealing order; with `wait`, after waiting
    /// for every sealed batch.
    fn settled(&mut self, wait: bool) -> Vec<Settled>;

    /// Seals what is staged and waits for every batch: what settled since the last call.
    fn finish(&mut self) -> Result<Vec<Settled>> {
        self.seal()?;
        Ok(self.settled(true))
    }
}

/// Stores one message through `sink` as a batch of one: durable when this returns `Ok`.
/// Returns what it was stored as (see [`Settled::result`]).
pub fn deliver_one(
    sink: &mut dyn Sink,
    incoming: &Incoming,
    message: &mut dyn Read,
) -> Result<Option<String>> {
    if sink.begin(incoming)? == Begun::AlreadyStored {
        return Ok(None);
    }
    let mut buf = vec![0; crate::CHUNK];
    loop {
        let n = match message.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                sink.abort();
                return Err(crate::Error::io("read message for", "delivery", e));
            }
        };
        if let Err(e) = sink.write(&buf[..n]) {
            sink.abort();
            return Err(e);
        }
    }
    let id = sink.stage()?;
    let mut name = None;
    for settled in sink.finish()? {
        let names = settled.result?;
        if settled.ids.contains(&id) {
            name = names.into_iter().nth((id - settled.ids.start) as usize);
        }
    }
    Ok(name)
}
