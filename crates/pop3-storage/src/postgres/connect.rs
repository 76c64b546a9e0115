//! Reaching the database: the URL, the connection, and what went wrong.

use std::fmt;

use postgres::{Client, Config, NoTls};

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
            PgError::Query(e) | PgError::Rejected(e) => match e.as_db_error() {
                None => true, // the connection broke mid-way
                Some(db) => temporary_sqlstate(db.code().code()),
            },
            PgError::Url(_) | PgError::NewerSchema { .. } => false,
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

/// SQLSTATEs that pass by themselves (PostgreSQL's appendix A): connection exceptions
/// (class 08), transaction rollbacks such as deadlocks and serialization failures (40),
/// insufficient resources such as too many connections or a full disk (53), operator
/// intervention such as a shutdown or a server still starting (57), system errors (58), and a
/// write sent to a server that became a read-only standby during a failover (25006).
fn temporary_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58")) || code == "25006"
}

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

/// How long the kernel waits on an idle connection before probing it (unless the URL says,
/// `keepalives_idle`): a database host that vanished without closing its connections is
/// noticed in about a minute rather than after the system default of two hours.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// [`parse_url`] with this crate's defaults for what the URL leaves out: a 10-second connect
/// timeout and TCP keepalives after 30 idle seconds.
pub(crate) fn config(url: &str) -> Result<Config, PgError> {
    let mut config = parse_url(url)?;
    if config.get_connect_timeout().is_none() {
        // A silently dropped SYN must not hang `pop3d db migrate` or a login for minutes.
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if !url.contains("keepalives_idle") {
        config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
    }
    Ok(config)
}

/// Connects without TLS (the users query of pop3-server connects through it too).
pub fn connect(url: &str) -> Result<Client, PgError> {
    connect_with(&config(url)?)
}

/// Connects with a prepared [`config`], classifying the failure.
pub(crate) fn connect_with(config: &Config) -> Result<Client, PgError> {
    config.connect(NoTls).map_err(|e| {
        if e.as_db_error().is_some() {
            PgError::Rejected(e)
        } else {
            PgError::Unreachable(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why() {
        assert!(parse_url("postgresql://pop3@127.0.0.1:5432/mail").is_ok());
        assert!(parse_url("postgresql://pop3@%2Frun%2Fpostgresql/mail").is_ok());
        assert!(parse_url("host=/run/postgresql user=pop3 dbname=mail").is_ok());
        let e = parse_url("postgresql://pop3@127.0.0.1:notaport/mail").unwrap_err();
        assert!(e.to_string().starts_with("invalid PostgreSQL URL"), "{e}");
        assert!(!e.is_temporary());
    }

    #[test]
    fn failover_and_overload_states_are_temporary() {
        for code in ["08006", "40001", "40P01", "53100", "53300", "57P01", "57P03", "25006"] {
            assert!(temporary_sqlstate(code), "{code}");
        }
        for code in ["42P01", "23505", "28P01", "3D000", "25001"] {
            assert!(!temporary_sqlstate(code), "{code}");
        }
    }
}
