//! Users from an LDAP directory (OpenLDAP, 389 DS, Active Directory...).
//!
//! A password is checked by binding as the user (RFC 4513 §5.1.3): the directory, not this
//! server, compares it with its stored hash. The user's DN comes from a template
//! (`uid=%u,ou=people,dc=example,dc=org`) or from a search (search-then-bind: a service
//! account, or an anonymous bind, finds the one entry matching a filter). The name is escaped
//! before it goes into a DN (RFC 4514) or a filter (RFC 4515). Lookups without a password
//! (local delivery, OAuth logins) read the entry, and an optional attribute gives the home
//! directory (the mail location's `%h`).
//!
//! What can go wrong and what the client sees:
//! - wrong password or unknown user: `-ERR [AUTH]`, the same for both (an unknown DN and a
//!   wrong password both answer invalidCredentials, RFC 4511 §4.2.2; search-then-bind finding
//!   no entry is answered the same way);
//! - an empty password: refused before any bind, since an empty password makes a simple bind
//!   an *unauthenticated* bind that succeeds without checking anything (RFC 4513 §5.1.2);
//! - a directory that is down, slow, busy, or answers garbage: `-ERR [SYS/TEMP]` within the
//!   timeout (connect and every operation are bounded), never a hang and never a login;
//! - several entries matching the filter: refused and logged (the filter is too wide).
//!
//! LDAP gives no plaintext or SCRAM keys, so APOP, CRAM-MD5 and SCRAM-SHA-256 cannot be
//! served: those mechanisms fail (logged once), and SCRAM gets stable decoy keys so that the
//! exchange fails at the proof like a wrong password.

mod escape;
mod pool;
mod settings;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapResult, Scope, SearchEntry};
use pop3_proto::sasl::ScramKeys;
use pop3_proto::server::AuthRequest;

pub use escape::{dn_value, filter_value};
pub use settings::{Find, LdapSettings};

use crate::{AuthError, Authenticator, UserInfo};
use pool::{Bound, Conn, Executor, Lease, Pool};

/// invalidCredentials (RFC 4511 Appendix A.1).
const INVALID_CREDENTIALS: u32 = 49;
/// noSuchObject (RFC 4511 Appendix A.1).
const NO_SUCH_OBJECT: u32 = 32;
/// PBKDF2 iterations of the SCRAM decoys (those of the users file's, RFC 7677 §4).
const SCRAM_ITERATIONS: u32 = 4096;
/// The name `probe` looks for: no directory has it.
const NOBODY: &str = "pop3d-check-config-no-such-user";

/// The users of an LDAP directory. Cheap to share; checks run on the backend's own runtime,
/// at most `pool_size` at a time, each on its own connection.
#[derive(Debug)]
pub struct LdapUsers {
    inner: Arc<Inner>,
    secret: [u8; 32],
    warned_apop: AtomicBool,
    warned_cram: AtomicBool,
    // Last: stopped after the connections were given up.
    executor: Executor,
}

#[derive(Debug)]
struct Inner {
    settings: LdapSettings,
    pool: Pool,
}

/// Why `check-config`'s probe failed: `temporary` when the directory could not be reached
/// (try later), else the settings are wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    /// What is wrong, in words.
    pub message: String,
    /// True when the directory could not be reached or did not answer.
    pub temporary: bool,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl LdapUsers {
    /// The users of the directory `settings` name. Checks the settings and reads the CA file;
    /// nothing is contacted before the first login.
    pub fn new(settings: LdapSettings) -> Result<Self, String> {
        settings.validate()?;
        let tls = settings.client_tls()?;
        let pool = Pool::new(
            settings.url.clone(),
            settings.starttls,
            tls,
            settings.timeout,
            settings.pool_size,
        );
        let executor = Executor::start().map_err(|e| format!("starting the LDAP runtime: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner { settings, pool }),
            secret: [0; 32],
            warned_apop: AtomicBool::new(false),
            warned_cram: AtomicBool::new(false),
            executor,
        })
    }

    /// The server secret for the SCRAM decoys (see [`crate::PasswdFile::with_secret`]).
    #[must_use]
    pub fn with_secret(mut self, secret: [u8; 32]) -> Self {
        self.secret = secret;
        self
    }

    /// The longest a check may take: every step (a free connection, connecting, the service
    /// bind, the search, the user's bind, reading the entry) has the timeout, plus a margin.
    fn bound(&self) -> Duration {
        self.inner.settings.timeout * 6 + Duration::from_secs(1)
    }

    fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, AuthError>> + Send + 'static,
    ) -> Result<T, AuthError> {
        self.executor.run(self.bound(), work)
    }

    /// Checks `name`'s password by a bind.
    pub fn check_password(&self, name: &str, password: &str) -> Result<UserInfo, AuthError> {
        if password.is_empty() {
            // RFC 4513 §5.1.2: a simple bind with a DN and no password is an unauthenticated
            // bind, which many directories answer with success.
            tracing::debug!(user = name, "LDAP: empty password refused before any bind");
            return Err(AuthError::Rejected);
        }
        let inner = Arc::clone(&self.inner);
        let (name, password) = (name.to_owned(), password.to_owned());
        self.run(async move { inner.check(&name, &password).await.map_err(AuthError::from) })
    }

    /// `check-config`: connects on a connection of its own, binds as the service account if
    /// there is one, and looks up a name no one has. The error says which step failed.
    pub fn probe(&self) -> Result<(), ProbeError> {
        let inner = Arc::clone(&self.inner);
        let answer = self.run(async move { Ok(inner.probe().await) });
        match answer {
            Ok(result) => result,
            Err(e) => Err(ProbeError { message: format!("{e:?}"), temporary: true }),
        }
    }

    /// Logs once that `mechanism` cannot be served by LDAP.
    fn cannot_serve(&self, warned: &AtomicBool, user: &str, mechanism: &str) {
        if !warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                user,
                "LDAP users cannot log in with {mechanism}: the directory checks passwords by \
                 bind and gives no stored secret (use USER/PASS, PLAIN or LOGIN over TLS)"
            );
        }
    }
}

impl Authenticator for LdapUsers {
    fn authenticate(&self, request: &AuthRequest) -> Result<UserInfo, AuthError> {
        match request {
            AuthRequest::Password { username, password, .. } => {
                let Ok(password) = std::str::from_utf8(password.expose()) else {
                    // An LDAP password is an octet string, but the client library sends text.
                    tracing::debug!(user = %username, "LDAP: a password that is not UTF-8");
                    return Err(AuthError::Rejected);
                };
                self.check_password(username, password)
            }
            AuthRequest::Apop { username, .. } => {
                self.cannot_serve(&self.warned_apop, username, "APOP");
                Err(AuthError::Rejected)
            }
            AuthRequest::CramMd5 { username, .. } => {
                self.cannot_serve(&self.warned_cram, username, "CRAM-MD5");
                Err(AuthError::Rejected)
            }
            // Tokens are checked by the OAuth layer in front of the users backend.
            AuthRequest::Bearer { .. } => Err(AuthError::Rejected),
            AuthRequest::Verified { username, .. } => {
                self.user(username)?.ok_or(AuthError::Rejected)
            }
        }
    }

    fn user(&self, name: &str) -> Result<Option<UserInfo>, AuthError> {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        self.run(async move { inner.lookup(&name).await.map_err(AuthError::from) })
    }

    /// Decoys, the same for a name on every connection: LDAP holds no SCRAM keys, so the
    /// exchange fails at the proof like a wrong password.
    fn scram_keys(&self, username: &str) -> Option<ScramKeys> {
        Some(ScramKeys::decoy(&self.secret, username, SCRAM_ITERATIONS))
    }

    /// Every check binds to or searches the directory.
    fn is_remote(&self, _request: &AuthRequest) -> bool {
        true
    }
}

/// Why a step gave no user. Every kind but `Rejected` is `-ERR [SYS/TEMP]` for the client;
/// `check-config` tells the other two apart (try later, or fix the settings).
#[derive(Debug)]
enum Failure {
    /// Wrong credentials, an unknown user, several entries for one name.
    Rejected,
    /// Not reached, no answer in time, a broken connection.
    Unreachable(String),
    /// The directory answered with an error: a refused service bind, a missing base, busy.
    Refused(String),
}

impl From<Failure> for AuthError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Rejected => AuthError::Rejected,
            Failure::Unreachable(why) | Failure::Refused(why) => AuthError::Temporary(why),
        }
    }
}

/// The directory answered `step` with an error.
fn refused(step: &str, why: impl std::fmt::Display) -> Failure {
    Failure::Refused(format!("LDAP {step}: {why}"))
}

/// `step` on `dn` answered with an error `result`: busy, unavailable and time limits pass, the
/// others are the settings' or the directory's.
fn answered(step: &str, dn: &str, result: &LdapResult) -> Failure {
    let why = format!("LDAP {step}: {dn:?}: {}", text(result));
    match result.rc {
        // timeLimitExceeded, busy, unavailable (RFC 4511 Appendix A.1).
        3 | 51 | 52 => Failure::Unreachable(why),
        _ => Failure::Refused(why),
    }
}

/// `step` got no answer.
fn unreachable(step: &str, why: impl std::fmt::Display) -> Failure {
    Failure::Unreachable(format!("LDAP {step}: {why}"))
}

impl Inner {
    /// Runs one operation with the timeout; an I/O error or a timeout is temporary.
    async fn op<T>(
        &self,
        step: &str,
        operation: impl std::future::Future<Output = ldap3::result::Result<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.settings.timeout, operation).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(unreachable(step, pool::describe(&e))),
            Err(_) => Err(unreachable(
                step,
                format_args!("no answer within {} s", self.settings.timeout.as_secs()),
            )),
        }
    }

    /// Binds as the service account (or anonymously) unless already bound so: the identity
    /// searches run as.
    async fn bind_searcher(&self, conn: &mut Conn) -> Result<(), Failure> {
        let (dn, password, bound) = match (&self.settings.search_dn, &self.settings.search_password)
        {
            (Some(dn), Some(password)) => (dn.as_str(), password.as_str(), Bound::Service),
            _ => ("", "", Bound::Anonymous),
        };
        if conn.bound == bound {
            return Ok(());
        }
        let result = self.op("service bind", conn.ldap.simple_bind(dn, password)).await?;
        match result.rc {
            0 => {
                conn.bound = bound;
                Ok(())
            }
            INVALID_CREDENTIALS => Err(refused(
                "service bind",
                format_args!(
                    "{dn:?} refused: invalid credentials (search_dn, search_password_file)"
                ),
            )),
            _ => Err(answered("service bind", dn, &result)),
        }
    }

    /// Searches for `name`'s entry: `(dn, home)`, or `None` when no entry matches.
    async fn find(
        &self,
        conn: &mut Conn,
        name: &str,
    ) -> Result<Option<(String, Option<PathBuf>)>, Failure> {
        self.bind_searcher(conn).await?;
        let (scope, base, filter) = match &self.settings.find {
            Find::Search { base, filter } => (
                Scope::Subtree,
                base.clone(),
                escape::substitute(filter, &escape::filter_value(name)),
            ),
            Find::Template(template) => (
                Scope::Base,
                escape::substitute(template, &escape::dn_value(name)),
                "(objectClass=*)".to_owned(),
            ),
        };
        let attributes = match &self.settings.home_attribute {
            Some(home) => vec![home.as_str()],
            // RFC 4511 §4.5.1.8: "1.1" asks for no attributes.
            None => vec!["1.1"],
        };
        let search = conn.ldap.search(&base, scope, &filter, attributes);
        let ldap3::SearchResult(entries, result) = self.op("search", search).await?;
        match (result.rc, &self.settings.find) {
            (0, _) => {}
            // The templated DN does not exist: an unknown user.
            (NO_SUCH_OBJECT, Find::Template(_)) => return Ok(None),
            (NO_SUCH_OBJECT, Find::Search { .. }) => {
                return Err(refused("search", format_args!("base {base:?} does not exist")))
            }
            _ => return Err(answered("search", &base, &result)),
        }
        let mut entries: Vec<SearchEntry> =
            entries.into_iter().filter(|e| !e.is_ref()).map(SearchEntry::construct).collect();
        if entries.len() > 1 {
            let dns: Vec<&str> = entries.iter().map(|e| e.dn.as_str()).collect();
            tracing::warn!(
                user = name,
                ?dns,
                "LDAP: several entries match the filter; login refused (make the filter unique)"
            );
            return Err(Failure::Rejected);
        }
        let Some(entry) = entries.pop() else { return Ok(None) };
        let home = self.settings.home_attribute.as_ref().and_then(|wanted| {
            entry
                .attrs
                .iter()
                .find(|(attr, _)| attr.eq_ignore_ascii_case(wanted))
                .and_then(|(_, values)| values.first())
                .map(PathBuf::from)
        });
        Ok(Some((entry.dn, home)))
    }

    /// The password check: find the DN, bind as it, read the home if it is wanted.
    async fn check(&self, name: &str, password: &str) -> Result<UserInfo, Failure> {
        let mut lease = self.pool.lease().await.map_err(Failure::Unreachable)?;
        let (dn, mut home) = match &self.settings.find {
            Find::Template(template) => {
                (escape::substitute(template, &escape::dn_value(name)), None)
            }
            Find::Search { .. } => match self.find(lease.conn(), name).await? {
                Some(found) => found,
                None => {
                    tracing::debug!(user = name, "LDAP: no entry matches");
                    lease.keep();
                    return Err(Failure::Rejected);
                }
            },
        };
        let conn = lease.conn();
        // From here on the connection speaks as the user (or as nobody, if the bind failed).
        conn.bound = Bound::User;
        let result = self.op("bind", conn.ldap.simple_bind(&dn, password)).await?;
        match result.rc {
            0 => {}
            INVALID_CREDENTIALS => {
                tracing::debug!(user = name, "LDAP: invalid credentials");
                lease.keep();
                return Err(Failure::Rejected);
            }
            _ => return Err(answered("bind", &dn, &result)),
        }
        if matches!(self.settings.find, Find::Template(_)) && self.settings.home_attribute.is_some()
        {
            // The user reads their own entry, which directories usually allow (`by self read`).
            home = self.read_home(&mut lease, &dn).await?;
        }
        lease.keep();
        Ok(UserInfo { name: name.to_owned(), home })
    }

    /// The home attribute of the entry `dn`, read as whoever the connection is bound as.
    async fn read_home(&self, lease: &mut Lease<'_>, dn: &str) -> Result<Option<PathBuf>, Failure> {
        let Some(wanted) = &self.settings.home_attribute else { return Ok(None) };
        let conn = lease.conn();
        let search = conn.ldap.search(dn, Scope::Base, "(objectClass=*)", vec![wanted.as_str()]);
        let ldap3::SearchResult(entries, result) = self.op("reading the home", search).await?;
        if result.rc != 0 {
            return Err(answered("reading the home", dn, &result));
        }
        Ok(entries.into_iter().filter(|e| !e.is_ref()).map(SearchEntry::construct).find_map(
            |entry| {
                entry
                    .attrs
                    .into_iter()
                    .find(|(attr, _)| attr.eq_ignore_ascii_case(wanted))
                    .and_then(|(_, values)| values.into_iter().next())
                    .map(PathBuf::from)
            },
        ))
    }

    /// A lookup without a password (local delivery, token logins).
    async fn lookup(&self, name: &str) -> Result<Option<UserInfo>, Failure> {
        let mut lease = self.pool.lease().await.map_err(Failure::Unreachable)?;
        let found = self.find(lease.conn(), name).await?;
        lease.keep();
        Ok(found.map(|(_, home)| UserInfo { name: name.to_owned(), home }))
    }

    /// `check-config`'s steps on a connection of its own.
    async fn probe(&self) -> Result<(), ProbeError> {
        let mut conn = self.pool.connect().await.map_err(|message| {
            // A certificate the settings do not trust is not a passing outage.
            let temporary = !message.contains("certificate");
            ProbeError { message, temporary }
        })?;
        let failed = |failure: Failure| match failure {
            Failure::Unreachable(message) => ProbeError { message, temporary: true },
            Failure::Refused(message) => ProbeError { message, temporary: false },
            Failure::Rejected => ProbeError {
                message: format!(
                    "LDAP search: several entries match the filter for {NOBODY:?}: the filter is \
                     too wide"
                ),
                temporary: false,
            },
        };
        self.find(&mut conn, NOBODY).await.map_err(failed)?;
        Ok(())
    }
}

/// A result's code, name and diagnostic message.
fn text(result: &LdapResult) -> String {
    let mut text = format!("result code {}", result.rc);
    if let Some(name) = code_name(result.rc) {
        text.push_str(&format!(" ({name})"));
    }
    if !result.text.is_empty() {
        text.push_str(&format!(": {}", result.text));
    }
    text
}

/// The names of the result codes a directory gives when it cannot or will not answer
/// (RFC 4511 Appendix A.1).
fn code_name(rc: u32) -> Option<&'static str> {
    Some(match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pop3_proto::Secret;

    fn unreachable_users() -> LdapUsers {
        // A port nothing listens on: a connection attempt would fail (and be temporary).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let find = Find::Template("uid=%u,ou=people,dc=example,dc=org".into());
        let mut settings = LdapSettings::new(format!("ldap://127.0.0.1:{port}"), find);
        settings.timeout = Duration::from_secs(2);
        LdapUsers::new(settings).unwrap()
    }

    fn password(user: &str, password: &[u8]) -> AuthRequest {
        AuthRequest::Password {
            username: user.into(),
            authzid: None,
            password: Secret::new(password.to_vec()),
            mechanism: None,
        }
    }

    #[test]
    fn an_empty_password_is_refused_before_any_bind() {
        let users = unreachable_users();
        // Unreachable: any bind attempt would have answered Temporary, not Rejected.
        assert_eq!(users.authenticate(&password("alice", b"")), Err(AuthError::Rejected));
        assert!(matches!(
            users.authenticate(&password("alice", b"x")),
            Err(AuthError::Temporary(_))
        ));
    }

    #[test]
    fn mechanisms_that_need_a_stored_secret_fail_alone() {
        let users = unreachable_users().with_secret([7; 32]);
        let apop = AuthRequest::Apop {
            username: "alice".into(),
            timestamp: "<1@h>".into(),
            digest: Secret::new("00".into()),
        };
        assert_eq!(users.authenticate(&apop), Err(AuthError::Rejected));
        let cram = AuthRequest::CramMd5 {
            username: "alice".into(),
            challenge: "<1@h>".into(),
            digest: Secret::new("00".into()),
        };
        assert_eq!(users.authenticate(&cram), Err(AuthError::Rejected));
        let bearer = AuthRequest::Bearer {
            mechanism: pop3_proto::sasl::Mechanism::OAuthBearer,
            username: "alice".into(),
            token: Secret::new("token".into()),
        };
        assert_eq!(users.authenticate(&bearer), Err(AuthError::Rejected), "not a password");
        // Unreachable directory: a password that is not UTF-8 is refused without asking it,
        // and a SCRAM-verified user is only looked up (which fails here).
        assert_eq!(users.authenticate(&password("alice", b"\xff\xfe")), Err(AuthError::Rejected));
        let verified = AuthRequest::Verified { username: "alice".into(), authzid: None };
        assert!(matches!(users.authenticate(&verified), Err(AuthError::Temporary(_))));
        let keys = users.scram_keys("alice").unwrap();
        assert_eq!(Some(keys), users.scram_keys("alice"), "stable decoys");
        assert_ne!(users.scram_keys("alice"), users.scram_keys("bob"));
    }

    #[test]
    fn an_unreachable_directory_is_temporary_and_bounded() {
        let users = unreachable_users();
        let started = std::time::Instant::now();
        assert!(matches!(users.user("alice"), Err(AuthError::Temporary(_))));
        let e = users.probe().unwrap_err();
        assert!(e.temporary && e.message.contains("connecting to"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
