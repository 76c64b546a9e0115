//! [`PgDrop`]: an open, locked PostgreSQL maildrop, and the chunk reader of its bodies.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;

use super::db_error;
use super::locks::{lock_key_oids, lost, Held, STILL_HELD};
use super::store::Inner;
use crate::{Error, Maildrop, MessageInfo, MessageReader, Result};

/// Chunk rows fetched per round trip while a body is read: 128 KiB in flight per reader, so a
/// 50 MB RETR holds two chunks at a time, and TOP stops fetching once it has its lines.
const CHUNKS_PER_FETCH: i64 = 2;

/// An open PostgreSQL maildrop: a snapshot taken under the cluster-wide lock.
#[derive(Debug)]
pub struct PgDrop {
    inner: Arc<Inner>,
    /// `None` once committed (the lock is released then).
    held: Option<Held>,
    /// Message ids, parallel to `infos`.
    ids: Vec<i64>,
    infos: Vec<MessageInfo>,
}

impl PgDrop {
    pub(crate) fn new(inner: Arc<Inner>, held: Held) -> Self {
        Self { inner, held: Some(held), ids: Vec::new(), infos: Vec::new() }
    }

    pub(crate) fn set_snapshot(&mut self, snapshot: Vec<(i64, MessageInfo)>) {
        (self.ids, self.infos) = snapshot.into_iter().unzip();
    }

    fn held(&self) -> Result<Held> {
        self.held.ok_or(Error::Committed)
    }
}

impl Maildrop for PgDrop {
    fn messages(&self) -> &[MessageInfo] {
        &self.infos
    }

    fn read_message(&self, index: usize) -> Result<MessageReader<'_>> {
        let held = self.held()?;
        let id = *self.ids.get(index).ok_or(Error::NoSuchMessage(index))?;
        let mut reader = ChunkReader {
            inner: self.inner.clone(),
            mailbox: held.mailbox,
            message: id,
            index,
            uidl: self.infos[index].uidl.clone(),
            next_seq: 0,
            chunks: VecDeque::new(),
            pos: 0,
            done: false,
        };
        // The first fetch here, so that a message deleted behind the snapshot is a clean
        // MessageGone before anything is sent (every message has a chunk 0, maybe empty).
        reader.fetch()?;
        Ok(MessageReader::new(Box::new(reader)))
    }

    fn commit(&mut self, deleted: &[usize]) -> Result<()> {
        let held = self.held()?;
        if let Some(&bad) = deleted.iter().find(|&&i| i >= self.ids.len()) {
            return Err(Error::NoSuchMessage(bad));
        }
        if !deleted.is_empty() {
            let ids: Vec<i64> = deleted.iter().map(|&i| self.ids[i]).collect();
            let mut conn = self.inner.conn("commit")?;
            let result = (|| -> Result<bool, postgres::Error> {
                let still = conn.statement(STILL_HELD)?;
                let delete =
                    conn.statement("DELETE FROM messages WHERE mailbox_id = $1 AND id = ANY($2)")?;
                let mut tx = conn.client().transaction()?;
                let (classid, objid) = lock_key_oids(held.mailbox);
                let still_held: bool = tx.query_one(&still, &[&held.pid, &classid, &objid])?.get(0);
                if !still_held {
                    return Ok(false);
                }
                tx.execute(&delete, &[&held.mailbox, &ids])?;
                tx.commit()?;
                Ok(true)
            })();
            match result {
                Ok(true) => {}
                Ok(false) => return Err(lost("commit")),
                Err(e) => {
                    // Whether the COMMIT reached the server is unknown only if the
                    // connection broke; either way nothing is reported deleted.
                    conn.discard();
                    return Err(db_error("commit", e));
                }
            }
        }
        self.held = None;
        self.inner.locks.unlock(held);
        Ok(())
    }
}

impl Drop for PgDrop {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            // Possibly on an async runtime thread: never a query here.
            self.inner.locks.unlock_later(held);
        }
    }
}

/// A message body read a few chunk rows at a time, each round trip on a borrowed connection.
struct ChunkReader {
    inner: Arc<Inner>,
    mailbox: i64,
    message: i64,
    /// For [`Error::MessageGone`].
    index: usize,
    uidl: String,
    next_seq: i32,
    chunks: VecDeque<Vec<u8>>,
    /// Read position in the front chunk.
    pos: usize,
    /// The last chunk has been fetched.
    done: bool,
}

impl ChunkReader {
    /// Fetches the next chunks. Each fetch is one statement, so it sees all of the message's
    /// remaining chunks or, once a commit elsewhere deleted it, none: an empty fetch after
    /// the first is the end of the message only if the message is still there, otherwise a
    /// truncated body would go out as if complete.
    fn fetch(&mut self) -> Result<()> {
        let gone = || Error::MessageGone { index: self.index, uidl: self.uidl.clone() };
        let mut conn = self.inner.conn("read message")?;
        let rows = conn
            .query(
                "SELECT bytes FROM message_chunks \
                 WHERE mailbox_id = $1 AND message_id = $2 AND seq >= $3 \
                 ORDER BY seq LIMIT $4",
                &[&self.mailbox, &self.message, &self.next_seq, &CHUNKS_PER_FETCH],
            )
            .map_err(|e| db_error("read message", e))?;
        if rows.is_empty() {
            let exists = self.next_seq > 0
                && conn
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM messages WHERE mailbox_id = $1 AND id = $2)",
                        &[&self.mailbox, &self.message],
                    )
                    .map_err(|e| db_error("read message", e))?
                    .get::<_, bool>(0);
            if !exists {
                return Err(gone());
            }
        }
        self.done = (rows.len() as i64) < CHUNKS_PER_FETCH;
        self.next_seq += rows.len() as i32;
        self.chunks.extend(rows.into_iter().map(|r| r.get::<_, Vec<u8>>(0)));
        Ok(())
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(front) = self.chunks.front() {
                if self.pos < front.len() {
                    let n = buf.len().min(front.len() - self.pos);
                    buf[..n].copy_from_slice(&front[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
                self.chunks.pop_front();
                self.pos = 0;
            } else if self.done {
                return Ok(0);
            } else {
                self.fetch().map_err(io::Error::other)?;
            }
        }
    }
}
