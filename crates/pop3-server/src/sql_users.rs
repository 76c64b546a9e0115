//! Users from PostgreSQL: a password query like Dovecot's `password_query`, e.g.
//! `SELECT password FROM mailbox WHERE username = $1 AND active` (PostfixAdmin's schema).
//!
//! The user name is always the bound parameter `$1`, never put into the SQL text, so no name
//! can change the query. The first column is the password in Dovecot's format
//! (`{SCHEME}hash`, as a users file has it); a column named `home`, if the query returns one,
//! is the user's home (the mail location's `%h`). No row: an unknown user. A query that fails
//! or a database that cannot be reached is [`AuthError::Temporary`]: `-ERR [SYS/TEMP]`, never a
//! successful login.
//!
//! A row is checked exactly as the users file's line would be (the same schemes, decoys and
//! SCRAM keys: it is parsed as a one-line users file, with the server secret), and an unknown
//! user costs a decoy check. The queries block, so they run on the server's threads for checks
//! that wait on another server ([`Authenticator::is_remote`]); one connection is kept and made
//! again when it breaks.

use std::sync::Mutex;

use pop3_proto::sasl::ScramKeys;
use pop3_proto::server::AuthRequest;
use pop3_storage::postgres::{connect, Client, PgError};

use crate::{AuthError, Authenticator, PasswdFile, UserInfo};

/// The users of a password query against PostgreSQL.
pub struct SqlUsers {
    url: String,
    query: String,
    secret: [u8; 32],
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for SqlUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: not shown.
        f.debug_struct("SqlUsers").field("query", &self.query).finish_non_exhaustive()
    }
}

impl SqlUsers {
    /// Users found by `query` (with `$1` the user name) in the database at `url`. Nothing is
    /// contacted before the first lookup.
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> Self {
        Self { url: url.into(), query: query.into(), secret: [0; 32], client: Mutex::new(None) }
    }

    /// The server secret for SCRAM salts and decoys (see [`PasswdFile::with_secret`]).
    #[must_use]
    pub fn with_secret(mut self, secret: [u8; 32]) -> Self {
        self.secret = secret;
        self
    }

    /// Runs the query for `name` (a name `valid_username` accepted): the user as a one-line
    /// users file, or `None` for no row.
    pub fn lookup(&self, name: &str) -> Result<Option<PasswdFile>, AuthError> {
        let temporary = |what: &str, e: &dyn std::fmt::Display| {
            AuthError::Temporary(format!("users query: {what}: {e}"))
        };
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.url).map_err(|e| temporary("connecting", &e))?);
        }
        let client = guard.as_mut().expect("connected above");
        let rows = match client.query(self.query.as_str(), &[&name]) {
            Ok(rows) => rows,
            Err(e) => {
                // A broken connection is made again at the next lookup.
                *guard = None;
                // The server's own message says what is wrong with the query.
                let why = e.as_db_error().map_or_else(
                    || e.to_string(),
                    |db| format!("{} ({})", db.message(), db.code().code()),
                );
                return Err(temporary("running", &why));
            }
        };
        drop(guard);
        let Some(row) = rows.first() else { return Ok(None) };
        let password: String = row.try_get(0).map_err(|e| temporary("password column", &e))?;
        let home: Option<String> = match row.columns().iter().position(|c| c.name() == "home") {
            Some(i) => row.try_get(i).map_err(|e| temporary("home column", &e))?,
            None => None,
        };
        let home = home.unwrap_or_default();
        if password.contains([':', '\n']) || home.contains([':', '\n']) {
            return Err(AuthError::Temporary(format!(
                "users query: the row of {name:?} holds ':' or a line break"
            )));
        }
        let line = format!("{name}:{password}::::{home}\n");
        let file =
            PasswdFile::parse_with_secret(&line, self.secret).map_err(|e| temporary("row", &e))?;
        for warning in file.warnings() {
            tracing::warn!(user = name, "users query: {warning}");
        }
        Ok(Some(file))
    }

    /// Runs the query once on a connection of its own, for a name no user has (`check-config`):
    /// what PostgreSQL says about it, classified as the schema check's errors are (a refused
    /// query is not temporary; a server that cannot be reached is).
    pub fn probe(&self) -> Result<(), PgError> {
        let mut client = connect(&self.url)?;
        client.query(self.query.as_str(), &[&""]).map(drop).map_err(PgError::Query)
    }

    /// An empty users file with the secret: unknown users' decoy checks and SCRAM keys.
    fn nobody(&self) -> PasswdFile {
        PasswdFile::parse_with_secret("", self.secret).expect("an empty users file parses")
    }
}

impl Authenticator for SqlUsers {
    fn authenticate(&self, request: &AuthRequest) -> Result<UserInfo, AuthError> {
        match self.lookup(request.username())? {
            Some(file) => file.authenticate(request),
            None => self.nobody().authenticate(request),
        }
    }

    fn user(&self, name: &str) -> Result<Option<UserInfo>, AuthError> {
        Ok(self.lookup(name)?.and_then(|file| file.user(name)))
    }

    /// The user's keys, or decoys (stable for a name) when the user is unknown or the database
    /// cannot answer: the exchange then fails at the proof, like a wrong password.
    fn scram_keys(&self, username: &str) -> Option<ScramKeys> {
        match self.lookup(username) {
            Ok(Some(file)) => file.scram_keys(username),
            Ok(None) => self.nobody().scram_keys(username),
            Err(error) => {
                tracing::warn!(user = username, ?error, "users backend failed");
                self.nobody().scram_keys(username)
            }
        }
    }

    /// Every check runs the password query on the database.
    fn is_remote(&self, _request: &AuthRequest) -> bool {
        true
    }
}
