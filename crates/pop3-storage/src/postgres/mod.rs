//! The PostgreSQL schema (feature `postgresql`): created and upgraded by the versioned
//! migrations this crate carries.
//!
//! [`migrate`] applies, in order, every migration newer than the database's `schema_version`;
//! each in a transaction of its own, under a transaction-scoped advisory lock so that two
//! nodes migrating at once apply each migration exactly once. A second run is a no-op.
//!
//! Serving maildrops from PostgreSQL is not there yet: this module owns the schema only.
//! The client is rust-postgres's blocking `postgres` crate, without TLS: connect over a Unix
//! socket, loopback or a trusted network.

use std::fmt;

pub use postgres::Client;
use postgres::{Config, NoTls};

/// One schema migration: its version and its SQL, embedded in the binary.
struct Migration {
    version: i32,
    sql: &'static str,
}

/// Every migration, oldest first; versions are 1, 2, 3... without gaps.
const MIGRATIONS: &[Migration] =
    &[Migration { version: 1, sql: include_str!("migrations/0001_initial.sql") }];

/// The schema version this build creates and understands.
pub const LATEST_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The key of the advisory lock that serialises migrators (any fixed bigint; "pop3schm").
const MIGRATION_LOCK: i64 = 0x706f_7033_7363_686d;

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The schema version found (0: no schema yet).
    pub from: i32,
    /// The schema version now (always [`LATEST_VERSION`]).
    pub to: i32,
    /// The versions this run applied, in order (empty: nothing to do).
    pub applied: Vec<i32>,
}

/// Why the schema could not be read or migrated.
#[derive(Debug)]
pub enum PgError {
    /// The URL does not parse as a libpq-style connection string.
    Url(postgres::Error),
    /// The server could not be reached (refused, timed out, no such socket): temporary.
    Unreachable(postgres::Error),
    /// The server answered but refused the connection (authentication, unknown database).
    Rejected(postgres::Error),
    /// A statement failed.
    Query(postgres::Error),
    /// The database's schema is newer than this build knows: never downgrade it.
    NewerSchema {
        /// The version in the database.
        found: i32,
        /// [`LATEST_VERSION`] of this build.
        known: i32,
    },
}

impl PgError {
    /// True if retrying later may succeed: the server is down or unreachable, or the
    /// connection was lost mid-way (a statement the server itself refused is not temporary).
    pub fn is_temporary(&self) -> bool {
        match self {
            PgError::Unreachable(_) => true,
            PgError::Query(e) => e.as_db_error().is_none(),
            PgError::Url(_) | PgError::Rejected(_) | PgError::NewerSchema { .. } => false,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Url(e) => write!(f, "invalid PostgreSQL URL: {e}"),
            PgError::Unreachable(e) => {
                write!(f, "cannot reach the PostgreSQL server: {}", chain(e))
            }
            PgError::Rejected(e) => {
                write!(f, "the PostgreSQL server refused the connection: {}", chain(e))
            }
            PgError::Query(e) => write!(f, "PostgreSQL statement failed: {}", chain(e)),
            PgError::NewerSchema { found, known } => write!(
                f,
                "the database schema is version {found}, newer than this build's {known}: \
                 upgrade pop3d"
            ),
        }
    }
}

impl std::error::Error for PgError {}

/// The error and its causes, ": "-separated (rust-postgres's Display alone says only
/// "error connecting to server", not why).
fn chain(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    if let Some(db) = e.as_db_error() {
        return format!("{text}: {} ({})", db.message(), db.code().code());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parses a libpq-style URL (`postgresql://user@host:port/db`, or key=value pairs; a host
/// starting with `/`, e.g. `postgresql://user@%2Frun%2Fpostgresql/db`, is a Unix socket
/// directory). Only the syntax is checked: nothing is contacted.
pub fn parse_url(url: &str) -> Result<Config, PgError> {
    url.parse::<Config>().map_err(PgError::Url)
}

/// How long a connection attempt may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects without TLS (the users query of pop3-server connects through it too).
pub fn connect(url: &str) -> Result<Client, PgError> {
    let mut config = parse_url(url)?;
    if config.get_connect_timeout().is_none() {
        // A silently dropped SYN must not hang `pop3d db migrate` for minutes.
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.connect(NoTls).map_err(|e| {
        if e.as_db_error().is_some() {
            PgError::Rejected(e)
        } else {
            PgError::Unreachable(e)
        }
    })
}

/// The schema version of the database at `url`; 0 if it has no schema yet.
pub fn schema_version(url: &str) -> Result<i32, PgError> {
    current_version(&mut connect(url)?)
}

fn current_version(client: &mut Client) -> Result<i32, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .map_err(PgError::Query)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .map_err(PgError::Query)?;
    Ok(row.get(0))
}

/// Brings the database at `url` to [`LATEST_VERSION`]: applies each missing migration in a
/// transaction of its own (all of it or none of it), records it in `schema_version`, and
/// refuses a schema newer than this build. Idempotent: a second run applies nothing.
pub fn migrate(url: &str) -> Result<MigrateReport, PgError> {
    let mut client = connect(url)?;
    let from = current_version(&mut client)?;
    if from > LATEST_VERSION {
        return Err(PgError::NewerSchema { found: from, known: LATEST_VERSION });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let mut tx = client.transaction().map_err(PgError::Query)?;
        // Concurrent migrators queue here; the one that waited then sees the version the
        // other recorded and skips it.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(PgError::Query)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(PgError::Query)?;
        let done: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM schema_version WHERE version = $1)",
                &[&migration.version],
            )
            .map_err(PgError::Query)?
            .get(0);
        if done {
            continue; // the transaction rolls back on drop: nothing was changed
        }
        tx.batch_execute(migration.sql).map_err(PgError::Query)?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&migration.version])
            .map_err(PgError::Query)?;
        tx.commit().map_err(PgError::Query)?;
        applied.push(migration.version);
    }
    Ok(MigrateReport { from, to: LATEST_VERSION, applied })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
        }
    }

    #[test]
    fn urls_parse_or_say_why() {
        assert!(parse_url("postgresql://pop3@127.0.0.1:5432/mail").is_ok());
        assert!(parse_url("postgresql://pop3@%2Frun%2Fpostgresql/mail").is_ok());
        assert!(parse_url("host=/run/postgresql user=pop3 dbname=mail").is_ok());
        let e = parse_url("postgresql://pop3@127.0.0.1:notaport/mail").unwrap_err();
        assert!(e.to_string().starts_with("invalid PostgreSQL URL"), "{e}");
    }
}
