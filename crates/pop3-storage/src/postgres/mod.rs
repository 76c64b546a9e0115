//! Maildrops in PostgreSQL (feature `postgresql`): any number of nodes serve the same
//! mailboxes from one database.
//!
//! - [`schema`](migrate): created and upgraded by the versioned migrations this crate
//!   carries; [`migrate`] applies, in order, every migration newer than the database's
//!   `schema_version`, each in a transaction of its own under a transaction-scoped advisory
//!   lock, so that two nodes migrating at once apply each migration exactly once.
//! - [`PgStore`]: a [`Backend`](crate::Backend). Messages are stored with their exact RFC
//!   1939 size and a stable UIDL, bodies in 64 KiB chunks read a few at a time; the maildrop
//!   lock is a session-level advisory lock held on one lock connection per node (see
//!   [`PgStore`] for why), so it holds across nodes and dies with the node; DELE is one
//!   transaction at commit; delivery is a transaction per sealed batch.
//!
//! The client is rust-postgres's blocking `postgres` crate (its calls run on the caller's
//! thread, like the file backends' I/O), with TLS by rustls when the URL asks for it
//! (`sslmode=verify-full&sslrootcert=/etc/pop3d/db-ca.pem`; see [`parse_url`]).

mod conn;
mod connect;
mod locks;
mod maildrop;
mod pool;
mod schema;
mod sink;
mod store;

pub use connect::{connect, parse_url, PgError};
pub use postgres::Client;
pub use schema::{migrate, schema_version, MigrateReport, LATEST_VERSION};
pub use store::{PgOptions, PgStore};

/// Runs `work` (closing database connections) on a thread of its own and waits for it. A
/// blocking `postgres::Client` talks to its server, and closes its connection when dropped,
/// by running a small runtime of its own, which panics on a thread that is already driving an
/// async runtime; and a store, a sink or a pool may well be dropped on such a thread (a server
/// shutting down, an LMTP session that ended mid-transaction).
pub(crate) fn off_runtime(work: impl FnOnce() + Send + 'static) {
    // Without a thread to be had, the work is dropped undone with the failed spawn: the
    // connections then end when the process does (the server ends them on its side).
    let _ = std::thread::Builder::new().name("pop3-pg-close".into()).spawn(work).map(|t| t.join());
}

/// A database error as this crate's [`Error`](crate::Error): temporary when the server is
/// unreachable or the connection was lost, permanent when the server refused the statement.
pub(crate) fn db_error(op: &'static str, e: impl Into<PgError>) -> crate::Error {
    let e = e.into();
    crate::Error::Database { op, temporary: e.is_temporary(), source: Box::new(e) }
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::Query(e)
    }
}
