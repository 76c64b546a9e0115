//! The backend interface: what the server, `pop3d deliver` and the retriever's delivery ask of
//! a maildrop store, and what every store implements (file-system [`Location`]s of Maildirs
//! or mboxes, [`MemoryStore`], and later a database).
//!
//! It is a blocking, object-safe trait (`Arc<dyn Backend>`): the server picks the backend from
//! its configuration at run time, calls it from `tokio::task::spawn_blocking` (file I/O blocks
//! anyway, and a maildrop's open, commit and body reads are short), and this crate stays free
//! of any async runtime. A network backend implements the same trait with blocking calls of
//! its own (a synchronous database client, or its own runtime handle and `block_on`); it
//! never runs on the server's runtime threads. `docs/architecture.md` says why this shape and
//! what a PostgreSQL backend implements.
//!
//! [`Location`]: crate::Location
//! [`MemoryStore`]: crate::MemoryStore

use std::fmt;
use std::io::Read;

use crate::sink::{deliver_one, Incoming, Sink};
use crate::{Envelope, Maildrop, Result, User};

/// A store of users' maildrops.
pub trait Backend: fmt::Debug + Send + Sync {
    /// Opens `user`'s maildrop and locks it exclusively (a second opener, in this process or
    /// another, gets [`Error::InUse`](crate::Error::InUse); a backend shared by several hosts
    /// locks across them, and a lock dies with the process or host that holds it). The
    /// maildrop is a snapshot with exact sizes and UIDLs; bodies are read as streams; its
    /// [`commit`](Maildrop::commit) removes exactly the deleted messages.
    fn open(&self, user: &User) -> Result<Box<dyn Maildrop>>;

    /// A delivery sink into `user`'s maildrop (see [`Sink`]: stage, seal, learn what is
    /// settled). Mail delivered while a session holds the maildrop is outside that session's
    /// snapshot; where the format cannot take it then (an mbox is locked for the session, as
    /// for any locking MDA), the batch fails with [`Error::InUse`](crate::Error::InUse), a
    /// temporary failure the deliverer retries.
    fn sink(&self, user: &User) -> Result<Box<dyn Sink>>;

    /// Delivers one message durably: a batch of one through [`Backend::sink`]. When this
    /// returns `Ok` the message is on stable storage.
    fn deliver(&self, user: &User, message: &mut dyn Read, envelope: &Envelope) -> Result<()> {
        let mut sink = self.sink(user)?;
        let incoming = Incoming { envelope: envelope.clone(), ..Incoming::default() };
        deliver_one(&mut *sink, &incoming, message).map(drop)
    }

    /// Whether the store answers now, for a server's health check: `Err` says why not. A
    /// database answers a trivial query; files have nothing to ask (the default), their
    /// caller looks at the directories it knows.
    fn health(&self) -> Result<()> {
        Ok(())
    }
}
