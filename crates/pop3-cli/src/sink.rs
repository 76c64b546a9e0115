//! The boundary between fetching and delivering: what the retrieval needs of wherever mail
//! goes. Stage a message, seal a batch, learn which messages are settled, in order. Group
//! commit lives behind it: a sink may make a sealed batch durable in the background while
//! the next one downloads, so the retrieval never asks "is this message durable?" but is told,
//! by name, which ones became so ([`Settled`], recorded in the ledger by the sink through
//! its [`Recorder`](crate::ledger::Recorder) before it is handed out).
//!
//! [`Deliverer`](crate::deliver::Deliverer) is today's sink (Maildir, mbox, MDA); another
//! sink replaces it by implementing this trait, without touching the retrieval.

use std::io;

use crate::ledger::Settled;

/// One message being written to a sink.
pub trait Message {
    /// True when the sink holds the message already (an earlier run stored it and died
    /// before recording it): its data need not be written.
    fn is_present(&self) -> bool;
    /// Writes the next chunk of the message as received (dot-unstuffed, CRLF line ends).
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
}

/// Wherever mail goes.
pub trait Sink {
    /// A message being written.
    type Message: Message;

    /// Starts the message `uid`, first seen on the server at `seen` (unix seconds).
    fn start(&mut self, uid: &str, seen: u64) -> io::Result<Self::Message>;
    /// Stages a fully written message of `octets` received octets: it settles now (an MDA
    /// that exited 0, a message present already) or with its batch. An error means this
    /// message was not stored; the retrieval goes on with the next.
    fn stage(&mut self, message: Self::Message, octets: u64) -> io::Result<()>;
    /// Abandons a message whose download failed.
    fn abort(&mut self, message: Self::Message);
    /// True when the staged batch should be sealed now (big or old enough, or nothing else
    /// being made durable). Called once per message: must stay cheap.
    fn should_seal(&self) -> bool;
    /// Seals the staged batch: from now on it is made durable as a whole. A sink may wait
    /// here for an earlier batch (bounding what is in flight).
    fn seal(&mut self);
    /// Seals the staged batch and waits until every staged message is settled.
    fn seal_and_wait(&mut self);
    /// The oldest batch settled and not yet handed out, if any: never blocks.
    fn settled(&mut self) -> Option<Settled>;
}
