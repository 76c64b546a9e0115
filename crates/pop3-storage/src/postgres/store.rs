//! [`PgStore`]: the PostgreSQL [`Backend`].

use std::sync::Arc;
use std::time::Duration;

use super::conn::Conn;
use super::connect::{Connector, PgError};
use super::db_error;
use super::locks::Locks;
use super::maildrop::PgDrop;
use super::pool::{Pool, Pooled};
use super::sink::PgSink;
use crate::location::check_user;
use crate::sink::Sink;
use crate::{Backend, Maildrop, MessageInfo, Result, User};

/// Tuning of a [`PgStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections this node keeps to the database for sessions and deliveries, besides the
    /// one lock connection (default 16). Each is borrowed for one short step at a time.
    pub pool_size: usize,
    /// How long a step waits for a free connection before failing temporarily (default 10 s).
    pub pool_wait: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self { pool_size: 16, pool_wait: Duration::from_secs(10) }
    }
}

/// Maildrops in PostgreSQL: every node with the same URL serves the same mailboxes.
///
/// Cloning shares the pool and the lock connection. Nothing is contacted until the first
/// open or delivery; [`schema_version`](super::schema_version) checks the database first.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pool: Arc<Pool>,
    pub(crate) locks: Locks,
}

impl PgStore {
    /// A store for the database at `url` (libpq-style; see [`parse_url`](super::parse_url)).
    pub fn new(url: &str, options: PgOptions) -> Result<Self, PgError> {
        let connector = Connector::new(url)?;
        let locks = Locks::new(connector.clone());
        let pool = Pool::new(connector, options.pool_size, options.pool_wait);
        Ok(Self { inner: Arc::new(Inner { pool, locks }) })
    }

    /// Opens `user`'s maildrop with its concrete type (see [`Backend::open`]).
    pub fn open_pg(&self, user: &User) -> Result<PgDrop> {
        check_user(&user.name)?;
        let mut conn = self.inner.conn("open maildrop")?;
        let mailbox = mailbox_id(&mut conn, &user.name)?;
        drop(conn);
        let Some(held) = self.inner.locks.try_lock(mailbox)? else {
            return Err(crate::Error::InUse {
                path: format!("postgresql:{}", user.name).into(),
                holder: None,
            });
        };
        // The lock is held: from here on, PgDrop's Drop releases it whatever happens.
        let mut drop = PgDrop::new(self.inner.clone(), held);
        let mut conn = self.inner.conn("open maildrop")?;
        let rows = conn
            .query(
                "SELECT id, size, uidl FROM messages WHERE mailbox_id = $1 ORDER BY id",
                &[&mailbox],
            )
            .map_err(|e| db_error("read the maildrop", e))?;
        let snapshot = rows
            .iter()
            .map(|r| {
                let size: i64 = r.get(1);
                (r.get(0), MessageInfo { size: size as u64, uidl: r.get(2) })
            })
            .collect();
        drop.set_snapshot(snapshot);
        Ok(drop)
    }
}

impl Inner {
    /// Borrows a pooled connection for `op`.
    pub(crate) fn conn(&self, op: &'static str) -> Result<Pooled> {
        self.pool.get().map_err(|e| e.into_storage(op))
    }
}

/// The id of `user`'s mailbox, created on first use (as a Maildir is).
pub(crate) fn mailbox_id(conn: &mut Conn, user: &str) -> Result<i64> {
    let find = "SELECT id FROM mailboxes WHERE user_name = $1";
    if let Some(row) = conn.query_opt(find, &[&user]).map_err(|e| db_error("find mailbox", e))? {
        return Ok(row.get(0));
    }
    // Two nodes may create it at once: the loser's insert does nothing, and both then read
    // the winner's row.
    conn.execute(
        "INSERT INTO mailboxes (user_name) VALUES ($1) ON CONFLICT (user_name) DO NOTHING",
        &[&user],
    )
    .map_err(|e| db_error("create mailbox", e))?;
    Ok(conn.query_one(find, &[&user]).map_err(|e| db_error("find mailbox", e))?.get(0))
}

impl Backend for PgStore {
    /// `SELECT 1` on a pooled connection. One that the server closed meanwhile (a restart, a
    /// failover) is discarded and the query tried once more on a new one, so that a database
    /// that is back reads as healthy at once.
    fn health(&self) -> Result<()> {
        let mut attempts = 0;
        loop {
            let mut conn = self.inner.conn("health check")?;
            match conn.batch_execute("SELECT 1") {
                Ok(()) => return Ok(()),
                Err(e) => {
                    conn.discard();
                    attempts += 1;
                    if attempts == 2 {
                        return Err(db_error("health check", e));
                    }
                }
            }
        }
    }

    fn open(&self, user: &User) -> Result<Box<dyn Maildrop>> {
        Ok(Box::new(self.open_pg(user)?))
    }

    fn sink(&self, user: &User) -> Result<Box<dyn Sink>> {
        check_user(&user.name)?;
        Ok(Box::new(PgSink::new(self.inner.clone(), user.name.clone())))
    }
}
