//! [`PgSink`]: delivery into PostgreSQL, a transaction per sealed batch.
//!
//! A batch is one transaction on a borrowed connection: each message takes the mailbox's next
//! id (which row-locks the mailbox, so concurrent deliveries to one user commit in id order
//! and a snapshot never sees a later id before an earlier one), is inserted with its UIDL,
//! its body in 64 KiB chunk rows as it arrives (never whole in memory) and then its exact
//! RFC 1939 size; a savepoint per message lets one message be abandoned without the batch.
//! Sealing commits: with PostgreSQL's default `synchronous_commit = on` the batch is on disk
//! (and on a synchronous standby, if one is configured) when COMMIT returns, so settled means
//! durable; a failed COMMIT leaves nothing of the batch.

use std::sync::Arc;
use std::time::Instant;

use super::db_error;
use super::pool::Pooled;
use super::store::{mailbox_id, Inner};
use crate::sink::{BatchLimits, Begun, Incoming, MessageId, Settled, Sink};
use crate::{is_valid_uidl, Error, Result, SizeCounter, CHUNK};

/// The open batch: its connection (inside a transaction) and what it holds.
struct Batch {
    conn: Pooled,
    mailbox: i64,
    /// UIDLs of the staged messages, in staging order.
    uidls: Vec<String>,
    bytes: u64,
    started: Instant,
    /// A statement failed outside a message's savepoint (or its rollback failed): the
    /// transaction is aborted, and a COMMIT would quietly roll it back, so the batch is
    /// reported failed instead.
    poisoned: bool,
}

/// The message being written.
struct Current {
    id: i64,
    uidl: String,
    seq: i32,
    pending: Vec<u8>,
    size: SizeCounter,
}

/// A delivery sink into one user's PostgreSQL mailbox.
pub(crate) struct PgSink {
    inner: Arc<Inner>,
    user: String,
    limits: BatchLimits,
    batch: Option<Batch>,
    current: Option<Current>,
    /// The id the next staged message gets.
    next_id: MessageId,
    settled: Vec<Settled>,
}

impl std::fmt::Debug for PgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSink").field("user", &self.user).field("next_id", &self.next_id).finish()
    }
}

impl PgSink {
    pub(crate) fn new(inner: Arc<Inner>, user: String) -> Self {
        Self {
            inner,
            user,
            limits: BatchLimits::default(),
            batch: None,
            current: None,
            next_id: 0,
            settled: Vec::new(),
        }
    }

    /// The open batch, beginning one (a transaction) if there is none.
    fn batch(&mut self) -> Result<&mut Batch> {
        if self.batch.is_none() {
            let mut conn = self.inner.conn("deliver")?;
            let mailbox = mailbox_id(&mut conn, &self.user)?;
            conn.batch_execute("BEGIN").map_err(|e| db_error("deliver", e))?;
            self.batch = Some(Batch {
                conn,
                mailbox,
                uidls: Vec::new(),
                bytes: 0,
                started: Instant::now(),
                poisoned: false,
            });
        }
        Ok(self.batch.as_mut().expect("set above"))
    }

    /// Inserts the pending octets of the current message as its next chunk row.
    fn flush_chunk(batch: &mut Batch, current: &mut Current) -> Result<()> {
        batch
            .conn
            .execute(
                "INSERT INTO message_chunks (mailbox_id, message_id, seq, bytes) \
                 VALUES ($1, $2, $3, $4)",
                &[&batch.mailbox, &current.id, &current.seq, &current.pending],
            )
            .map_err(|e| db_error("deliver", e))?;
        batch.bytes += current.pending.len() as u64;
        current.seq += 1;
        current.pending.clear();
        Ok(())
    }

    fn begin_message(&mut self, incoming: &Incoming) -> Result<Option<Current>> {
        if let Some(key) = &incoming.key {
            if !is_valid_uidl(key) {
                return Err(Error::InvalidKey(key.clone()));
            }
        }
        let batch = self.batch()?;
        Self::insert_message(batch, incoming)
    }

    /// Takes the next id and inserts the message's row (size 0 until staged) under a
    /// savepoint, undone again if anything fails after it.
    fn insert_message(batch: &mut Batch, incoming: &Incoming) -> Result<Option<Current>> {
        let mailbox = batch.mailbox;
        let failed = |e| db_error("deliver", e);
        let conn = &mut batch.conn;
        let outside_savepoint = (|| {
            if let Some(key) = &incoming.key {
                let stored =
                    "SELECT EXISTS (SELECT 1 FROM messages WHERE mailbox_id = $1 AND uidl = $2)";
                if conn.query_one(stored, &[&mailbox, key])?.get::<_, bool>(0) {
                    return Ok(false);
                }
            }
            conn.batch_execute("SAVEPOINT message")?;
            Ok(true)
        })();
        match outside_savepoint {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                batch.poisoned = true;
                return Err(failed(e));
            }
        }
        let inserted = (|| {
            let id: i64 = conn
                .query_one(
                    "UPDATE mailboxes SET next_message_id = next_message_id + 1 \
                     WHERE id = $1 RETURNING next_message_id - 1",
                    &[&mailbox],
                )?
                .get(0);
            let received = incoming.received.map(|s| s as f64);
            // A key is the UIDL (a migrated message keeps the one it was served with);
            // otherwise the mailbox and message ids, which are never reused. A migrated UIDL
            // could in principle spell the same: then a suffix makes it unique.
            let mut uidl = incoming.key.clone().unwrap_or_else(|| format!("{mailbox}.{id}"));
            for attempt in 1.. {
                let inserted = conn.execute(
                    "INSERT INTO messages (mailbox_id, id, uidl, size, delivered_at) \
                     VALUES ($1, $2, $3, 0, coalesce(to_timestamp($4), now())) \
                     ON CONFLICT (mailbox_id, uidl) DO NOTHING",
                    &[&mailbox, &id, &uidl, &received],
                )?;
                if inserted == 1 {
                    return Ok(Some((id, uidl)));
                }
                if incoming.key.is_some() {
                    return Ok(None); // stored by a concurrent delivery since the check
                }
                uidl = format!("{mailbox}.{id}.{attempt}");
            }
            unreachable!("the loop returns")
        })();
        match inserted {
            Ok(Some((id, uidl))) => Ok(Some(Current {
                id,
                uidl,
                seq: 0,
                pending: Vec::with_capacity(CHUNK),
                size: SizeCounter::new(),
            })),
            Ok(None) => match rollback_message(conn) {
                Ok(()) => Ok(None),
                Err(e) => {
                    batch.poisoned = true;
                    Err(failed(e))
                }
            },
            Err(e) => {
                if rollback_message(conn).is_err() {
                    batch.poisoned = true;
                }
                Err(failed(e))
            }
        }
    }

    fn commit_batch(&mut self) {
        let Some(mut batch) = self.batch.take() else { return };
        let count = batch.uidls.len() as u64;
        let ids = self.next_id - count..self.next_id;
        let result = if batch.poisoned {
            if batch.conn.batch_execute("ROLLBACK").is_err() {
                batch.conn.discard();
            }
            let source = "a statement of the delivery transaction failed";
            Err(Error::Database { op: "deliver", temporary: true, source: source.into() })
        } else {
            match batch.conn.batch_execute("COMMIT") {
                Ok(()) => Ok(std::mem::take(&mut batch.uidls)),
                Err(e) => {
                    batch.conn.discard();
                    Err(db_error("deliver", e))
                }
            }
        };
        self.settled.push(Settled { ids, result });
    }
}

impl Sink for PgSink {
    fn begin(&mut self, incoming: &Incoming) -> Result<Begun> {
        self.abort();
        match self.begin_message(incoming)? {
            None => Ok(Begun::AlreadyStored),
            Some(current) => {
                self.current = Some(current);
                Ok(Begun::New)
            }
        }
    }

    fn write(&mut self, mut chunk: &[u8]) -> Result<()> {
        let (Some(batch), Some(current)) = (self.batch.as_mut(), self.current.as_mut()) else {
            return Err(Error::io(
                "write",
                "postgresql",
                std::io::Error::other("no message begun"),
            ));
        };
        current.size.update(chunk);
        while !chunk.is_empty() {
            let take = chunk.len().min(CHUNK - current.pending.len());
            current.pending.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if current.pending.len() == CHUNK {
                Self::flush_chunk(batch, current)?;
            }
        }
        Ok(())
    }

    fn stage(&mut self) -> Result<MessageId> {
        let (Some(batch), Some(current)) = (self.batch.as_mut(), self.current.as_mut()) else {
            return Err(Error::io(
                "stage",
                "postgresql",
                std::io::Error::other("no message begun"),
            ));
        };
        // On failure the message stays current, for `abort` (or the next `begin`) to undo.
        // Every message has a chunk 0, empty for an empty message: readers rely on it.
        if !current.pending.is_empty() || current.seq == 0 {
            Self::flush_chunk(batch, current)?;
        }
        let size = current.size.finish() as i64;
        batch
            .conn
            .execute(
                "UPDATE messages SET size = $3 WHERE mailbox_id = $1 AND id = $2",
                &[&batch.mailbox, &current.id, &size],
            )
            .map_err(|e| db_error("deliver", e))?;
        batch
            .conn
            .batch_execute("RELEASE SAVEPOINT message")
            .map_err(|e| db_error("deliver", e))?;
        let current = self.current.take().expect("checked above");
        batch.uidls.push(current.uidl);
        self.next_id += 1;
        Ok(self.next_id - 1)
    }

    fn abort(&mut self) {
        if self.current.take().is_none() {
            return;
        }
        if let Some(batch) = self.batch.as_mut() {
            if rollback_message(&mut batch.conn).is_err() {
                // The connection is gone or the transaction unusable: the batch is lost, and
                // says so when it is sealed.
                let batch = self.batch.take().expect("checked above");
                let count = batch.uidls.len() as u64;
                batch.conn.discard();
                let source = "the delivery transaction failed while a message was abandoned";
                self.settled.push(Settled {
                    ids: self.next_id - count..self.next_id,
                    result: Err(Error::Database {
                        op: "deliver",
                        temporary: true,
                        source: source.into(),
                    }),
                });
            }
        }
    }

    fn wants_seal(&self) -> bool {
        self.batch.as_ref().is_some_and(|b| {
            !b.uidls.is_empty()
                && (b.uidls.len() >= self.limits.messages
                    || b.bytes >= self.limits.bytes
                    || b.started.elapsed() >= self.limits.age)
        })
    }

    fn seal(&mut self) -> Result<()> {
        self.abort();
        match &self.batch {
            Some(b) if !b.uidls.is_empty() => self.commit_batch(),
            // Nothing staged: end the transaction (e.g. after AlreadyStored) and give the
            // connection back.
            Some(_) => {
                if let Some(mut batch) = self.batch.take() {
                    if batch.conn.batch_execute("ROLLBACK").is_err() {
                        batch.conn.discard();
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    fn settled(&mut self, _wait: bool) -> Vec<Settled> {
        std::mem::take(&mut self.settled)
    }
}

impl Drop for PgSink {
    fn drop(&mut self) {
        // Staged but unsealed messages are abandoned, and the connection must not go back to
        // the pool inside a transaction. Off the caller's thread, which may be an async
        // runtime's (an LMTP session that ended mid-transaction).
        if let Some(mut batch) = self.batch.take() {
            super::off_runtime(move || {
                if batch.conn.batch_execute("ROLLBACK").is_err() {
                    batch.conn.discard();
                }
            });
        }
    }
}

/// Undoes the current message: back to its savepoint (which also works in a transaction that
/// a failed statement aborted), and the savepoint released.
fn rollback_message(conn: &mut super::conn::Conn) -> Result<(), postgres::Error> {
    conn.batch_execute("ROLLBACK TO SAVEPOINT message; RELEASE SAVEPOINT message")
}
