//! The schema's versioned migrations, embedded in the binary.

use postgres::Client;

use super::connect::{connect, PgError};

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
}
