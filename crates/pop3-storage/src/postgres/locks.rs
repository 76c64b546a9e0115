//! The cluster-wide maildrop lock: a session-level advisory lock on the mailbox id, held on
//! one lock connection per node, plus this node's own table of held mailboxes.
//!
//! Why advisory locks on a connection rather than leases with an expiry: PostgreSQL releases
//! a session's advisory locks the moment its connection ends, so a node that crashes (even
//! `kill -9`: the kernel closes its sockets) frees its mailboxes at once, with no clock, no
//! renewal traffic and no guess at a lease length; a node host that vanishes without closing
//! its sockets is noticed by TCP keepalives (this crate asks for them after 30 idle seconds;
//! the server side is `tcp_keepalives_idle`). Why one connection per node rather than one
//! per session: a POP3 session lasts as long as its client wants, and a connection per
//! session would cap a node at the database's `max_connections`.
//!
//! Advisory locks are re-entrant within a database session, so two sessions of one node
//! would both get the same lock from the shared connection: the node's own table of held
//! mailbox ids answers `IN-USE` for those. If the lock connection breaks, every lock it held
//! is gone; it is remade for the next open, and the sessions that held the old locks find out
//! at commit, which checks in its own transaction that this node's lock connection (by
//! backend pid) still holds the mailbox's lock, and deletes nothing otherwise.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use super::conn::Conn;

use super::connect::Connector;
use super::db_error;
use crate::{Error, Result};

/// A held lock: which lock connection (by backend pid) holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) mailbox: i64,
    pub(crate) pid: i32,
}

#[derive(Default)]
struct State {
    conn: Option<(Conn, i32)>,
    /// Mailbox ids held by this node's sessions, with the pid of the connection that took
    /// each lock (an old pid after a reconnect: the lock is gone, the session not yet).
    held: HashMap<i64, i32>,
}

/// This node's lock connection and held mailboxes.
pub(crate) struct Locks {
    connector: Connector,
    state: Arc<Mutex<State>>,
    /// Unlocks for [`Locks::unlock_later`], done by a thread of their own.
    later: Mutex<Option<mpsc::Sender<Held>>>,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Locks").field("held", &state.held.len()).finish()
    }
}

impl Locks {
    pub(crate) fn new(connector: Connector) -> Self {
        Self { connector, state: Arc::new(Mutex::new(State::default())), later: Mutex::new(None) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// Takes mailbox `id`'s lock for a session of this node: `Ok(None)` if another session,
    /// here or on any node, holds it.
    pub(crate) fn try_lock(&self, id: i64) -> Result<Option<Held>> {
        let mut state = self.state();
        if state.held.contains_key(&id) {
            return Ok(None);
        }
        // One retry on a fresh connection: the old one may have died since its last use
        // (a database restart), which also means every lock it held is gone.
        for attempt in 0..2 {
            let (client, pid) = match &mut state.conn {
                Some((client, pid)) if !client.is_closed() => (client, *pid),
                _ => {
                    let mut client = self
                        .connector
                        .connect()
                        .map_err(|e| db_error("connect the lock connection", e))?;
                    let pid: i32 = client
                        .query_one("SELECT pg_backend_pid()", &[])
                        .map_err(|e| db_error("connect the lock connection", e))?
                        .get(0);
                    let (client, pid) = state.conn.insert((Conn::new(client), pid));
                    (client, *pid)
                }
            };
            match client.query_one("SELECT pg_try_advisory_lock($1)", &[&id]) {
                Ok(row) => {
                    if !row.get::<_, bool>(0) {
                        return Ok(None);
                    }
                    state.held.insert(id, pid);
                    return Ok(Some(Held { mailbox: id, pid }));
                }
                // The lock connection died, and its locks with it: remake it.
                Err(_) if attempt == 0 && client.is_closed() => state.conn = None,
                Err(e) => return Err(db_error("lock the maildrop", e)),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Releases a session's lock now (after a commit, on the caller's blocking thread).
    pub(crate) fn unlock(&self, held: Held) {
        unlock(&mut self.state(), held);
    }

    /// Releases a session's lock without waiting for the database: a maildrop dropped
    /// without a commit may be dropped on an async runtime thread (a session that ended),
    /// which must not block on a query. A thread of this node's does the unlock moments
    /// later. Until then the database still has the lock, so no other node can take the
    /// mailbox early; a session of this node that locks it again meanwhile just raises the
    /// connection's count of the re-entrant lock, which this unlock then lowers.
    pub(crate) fn unlock_later(&self, held: Held) {
        let mut later = self.later.lock().unwrap_or_else(|e| e.into_inner());
        let sent = match &*later {
            Some(tx) => tx.send(held).map_err(|e| e.0),
            None => Err(held),
        };
        let Err(held) = sent else { return };
        let (tx, rx) = mpsc::channel::<Held>();
        let state = Arc::downgrade(&self.state);
        let spawned = std::thread::Builder::new().name("pop3-pg-unlock".into()).spawn(move || {
            // Ends when the store is dropped (the sender with it).
            for held in rx {
                let Some(state) = state.upgrade() else { return };
                unlock(&mut lock_state(&state), held);
            }
        });
        match spawned {
            Ok(_) => {
                let _ = tx.send(held);
                *later = Some(tx);
            }
            // No thread to be had: unlock here rather than keep the mailbox locked.
            Err(_) => unlock(&mut self.state(), held),
        }
    }
}

impl Drop for Locks {
    fn drop(&mut self) {
        // Dropping the lock connection releases every lock it holds.
        if let Some(conn) = self.state().conn.take() {
            super::off_runtime(move || drop(conn));
        }
    }
}

fn lock_state(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Updates are single map operations or a whole connection swap.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn unlock(state: &mut State, held: Held) {
    if state.held.get(&held.mailbox) != Some(&held.pid) {
        return;
    }
    state.held.remove(&held.mailbox);
    if let Some((client, pid)) = &mut state.conn {
        // Only the connection that took the lock holds it; after a reconnect it is gone
        // already. A failed unlock leaves the lock to the connection's end, so drop that.
        if *pid == held.pid
            && client.query_one("SELECT pg_advisory_unlock($1)", &[&held.mailbox]).is_err()
        {
            state.conn = None;
        }
    }
}

/// The statement that checks, inside a commit's transaction, that the lock is still held.
pub(crate) const STILL_HELD: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks \
     WHERE locktype = 'advisory' AND granted AND pid = $1 \
     AND classid = $2 AND objid = $3 AND objsubid = 1)";

/// The `(classid, objid)` under which `pg_locks` shows a bigint advisory key: its high and
/// low 32 bits.
pub(crate) fn lock_key_oids(key: i64) -> (u32, u32) {
    let key = key as u64;
    ((key >> 32) as u32, key as u32)
}

/// The error for a session whose lock was lost with its lock connection.
pub(crate) fn lost(op: &'static str) -> Error {
    Error::Database {
        op,
        temporary: true,
        source: "the maildrop lock was lost with this node's lock connection to PostgreSQL".into(),
    }
}
