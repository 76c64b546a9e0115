//! A tokio POP3 server built on `pop3-proto`'s sans-IO [`ServerSession`](pop3_proto::server::ServerSession).
//!
//! One task per connection drives a session: it reads bounded chunks while the session wants
//! input, writes what the session produces, answers its events (credentials, maildrop, message
//! bodies, STLS, commit) and keeps its idle deadline with `tokio::time`. Password hashing and all
//! storage work run on tokio's blocking pool; a message body is read in 16 KiB chunks and fed to
//! the session only while it wants more, so a slow reader never makes the server hold a whole
//! message.
//!
//! Behind a load balancer, [`Config::proxy_from`] names the balancers: their connections start
//! with a PROXY protocol header (v1 or v2, read before TLS), and the client address it carries
//! is the session's for limits, penalties, the plaintext-password rule and logs.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use pop3_server::{Config, ListenerKind, MailLocation, PasswdFile, Server};
//!
//! let users = PasswdFile::load("/etc/pop3d/users").expect("users file");
//! let mail = MailLocation::maildir("/var/mail/%u");
//! let server = Server::new(Config::default(), Arc::new(mail), Arc::new(users));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1110").await?;
//! let serving = tokio::spawn({
//!     let server = server.clone();
//!     async move { server.serve(listener, ListenerKind::Plain).await }
//! });
//! // ... later, on SIGTERM:
//! server.shutdown().await;
//! # let _ = serving; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod auth;
mod conn;
mod crammd5;
#[cfg(feature = "ldap")]
pub mod ldap;
mod limits;
pub mod lmtp;
mod mailbox;
pub mod metrics;
#[cfg(feature = "oauth")]
pub mod oauth;
mod passwd;
mod penalty;
mod proxy;
#[cfg(feature = "postgresql")]
mod sql_users;
pub mod tls;
mod workers;
mod zero_copy;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{AuthError, Authenticator, Offers, UserInfo};
#[cfg(feature = "ldap")]
pub use ldap::{LdapSettings, LdapUsers};
pub use limits::ConnectionLimits;
pub use lmtp::{LmtpServer, LmtpSettings};
pub use mailbox::{valid_username, MailFormat, MailLocation, Mailboxes, StoreMailboxes};
pub use passwd::{
    hash_password, hash_password_as, PasswdError, PasswdFile, ReloadingPasswdFile, Scheme,
    GENERATED_SCHEMES,
};
pub use penalty::PenaltyLimits;
pub use pop3_proto::server::BearerErrorReport;
pub use proxy::Cidr;
#[cfg(feature = "postgresql")]
pub use sql_users::SqlUsers;

/// Server-wide settings. `Default` gives the documented, RFC-backed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Host name used in the APOP timestamp and the CRAM-MD5 challenge.
    pub hostname: String,
    /// Accept plaintext passwords (USER/PASS, AUTH PLAIN/LOGIN) on connections that are
    /// neither TLS nor loopback. Off by default (RFC 2595 §2.1; RFC 8314 prefers TLS).
    pub allow_plaintext_without_tls: bool,
    /// Treat loopback connections like TLS ones for plaintext passwords (default true: nothing
    /// crosses a network). Turn off when a proxy on the same host forwards remote clients
    /// without the PROXY protocol (with it, see `proxy_from`, the client's own address counts).
    pub trust_loopback: bool,
    /// Idle time allowed before login (default 60 s); only complete lines are activity.
    pub idle_timeout_authorization: Duration,
    /// Time allowed from connect to a successful login, however busy the client (default
    /// 180 s); `None` for no limit.
    pub login_deadline: Option<Duration>,
    /// Command lines allowed before login (default 30).
    pub max_commands_before_login: u32,
    /// Idle time allowed after login (default 10 min, the RFC 1939 §3 minimum).
    pub idle_timeout_transaction: Duration,
    /// Pause before answering a failed login (default 2 s); only that session waits.
    pub auth_failure_delay: Duration,
    /// Failed-login penalties shared by all connections: the wait before an attempt is
    /// checked grows with the failures of its network and of its user.
    pub penalties: PenaltyLimits,
    /// Threads that check passwords and derive SCRAM keys (default 0: one per core).
    pub auth_workers: usize,
    /// Checks waiting for one of those threads at most (default 1024: a burst of clients
    /// reconnecting at once must not be refused; an entry is a few hundred bytes, and the
    /// memory of the checks themselves is bounded by the threads); a login beyond that is
    /// answered `-ERR [SYS/TEMP]` at once (and logged).
    pub auth_queue: usize,
    /// Methods offered besides USER/PASS and SASL PLAIN/LOGIN (default: none).
    pub offers: Offers,
    /// The scope and discovery URL a refused bearer token's error report names (RFC 7628
    /// §3.2.2; default: neither).
    pub bearer_error: BearerErrorReport,
    /// Bad commands before the connection is closed (default 20).
    pub max_bad_commands: u32,
    /// Failed logins per connection before it is closed (default 3).
    pub max_failed_logins: u32,
    /// Connections in total and per client address.
    pub limits: ConnectionLimits,
    /// Time allowed for a TLS handshake (default 30 s).
    pub tls_handshake_timeout: Duration,
    /// The `IMPLEMENTATION` capability; `None` leaves it out (default: none, it helps attackers
    /// more than clients).
    pub implementation: Option<String>,
    /// Peers that put a PROXY protocol header (v1 or v2, e.g. HAProxy's `send-proxy-v2`)
    /// before everything else, TLS included, and must: the client address it carries is the
    /// session's for limits, penalties, plaintext-password policy and logs. Default: none, and
    /// no header is ever read (a peer outside these networks cannot claim an address).
    pub proxy_from: Vec<Cidr>,
    /// Time a peer in `proxy_from` has to send its whole header (default 5 s).
    pub proxy_header_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            hostname: "localhost".to_owned(),
            allow_plaintext_without_tls: false,
            trust_loopback: true,
            idle_timeout_authorization: Duration::from_secs(60),
            login_deadline: Some(Duration::from_secs(180)),
            max_commands_before_login: 30,
            idle_timeout_transaction: Duration::from_secs(600),
            auth_failure_delay: Duration::from_secs(2),
            penalties: PenaltyLimits::default(),
            auth_workers: 0,
            auth_queue: 1024,
            offers: Offers::default(),
            bearer_error: BearerErrorReport::default(),
            max_bad_commands: 20,
            max_failed_logins: 3,
            limits: ConnectionLimits::default(),
            tls_handshake_timeout: Duration::from_secs(30),
            implementation: None,
            proxy_from: Vec::new(),
            proxy_header_timeout: Duration::from_secs(5),
        }
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain POP3 (port 110), offering STLS when a TLS configuration is set.
    Plain,
    /// POP3S (port 995): TLS from the first byte (RFC 8314).
    ImplicitTls,
}

/// A POP3 server: shared state for every listener and session. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) mailboxes: Arc<dyn Mailboxes>,
    auth: RwLock<Arc<dyn Authenticator>>,
    tls: RwLock<Option<TlsAcceptor>>,
    pub(crate) limits: limits::Tracker,
    pub(crate) penalties: penalty::Penalties,
    pub(crate) workers: workers::AuthWorkers,
    /// The checks that wait on another server ([`Authenticator::is_remote`]): threads of
    /// their own, so that a stalled directory, database or authorization server never holds
    /// the password-hash threads above.
    pub(crate) remote_workers: workers::AuthWorkers,
    /// The session settings every connection starts from (per connection only TLS and
    /// plaintext permission differ).
    pub(crate) session_config: pop3_proto::server::ServerConfig,
    pub(crate) shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.shared.config)
            .field("mailboxes", &self.shared.mailboxes)
            .field("tls", &self.shared.tls().is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn authenticator(&self) -> Arc<dyn Authenticator> {
        Arc::clone(&self.auth.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn tls(&self) -> Option<TlsAcceptor> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Server {
    /// A server with these settings, maildrops and users, without TLS (see [`set_tls`](Self::set_tls)).
    pub fn new(
        config: Config,
        mailboxes: Arc<dyn Mailboxes>,
        authenticator: Arc<dyn Authenticator>,
    ) -> Self {
        let limits = limits::Tracker::new(config.limits);
        let penalties = penalty::Penalties::new(config.penalties);
        let workers = workers::AuthWorkers::new(config.auth_workers, config.auth_queue);
        let remote_workers =
            workers::AuthWorkers::new(workers::REMOTE_CHECK_THREADS, config.auth_queue);
        let session_config = conn::session_config(&config);
        Self {
            shared: Arc::new(Shared {
                config,
                mailboxes,
                auth: RwLock::new(authenticator),
                tls: RwLock::new(None),
                limits,
                penalties,
                workers,
                remote_workers,
                session_config,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Sets (or replaces, e.g. on SIGHUP) the TLS configuration. New connections and new STLS
    /// handshakes use it; established sessions keep theirs.
    pub fn set_tls(&self, config: Option<Arc<rustls::ServerConfig>>) {
        *self.shared.tls.write().unwrap_or_else(|e| e.into_inner()) = config.map(TlsAcceptor::from);
    }

    /// Replaces the users backend (e.g. a reloaded users file); sessions already logged in
    /// are not affected.
    pub fn set_authenticator(&self, authenticator: Arc<dyn Authenticator>) {
        *self.shared.auth.write().unwrap_or_else(|e| e.into_inner()) = authenticator;
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Accepts connections on `listener` until [`shutdown`](Self::shutdown), one task per
    /// connection. An implicit-TLS listener needs [`set_tls`](Self::set_tls) first: without a
    /// TLS configuration its connections are closed at once.
    pub async fn serve(&self, listener: TcpListener, kind: ListenerKind) -> io::Result<()> {
        let local = listener.local_addr()?;
        let auth_threads = self.shared.workers.threads();
        tracing::info!(%local, ?kind, auth_threads, "listening");
        loop {
            let accepted = tokio::select! {
                () = self.shared.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            self.spawn_connection(stream, peer, local, kind);
        }
        tracing::info!(%local, "listener closed");
        Ok(())
    }

    fn spawn_connection(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        kind: ListenerKind,
    ) {
        let shared = Arc::clone(&self.shared);
        self.shared.tasks.spawn(conn::run(shared, stream, peer, local, kind));
    }

    /// Graceful shutdown: stops accepting, lets sessions that are committing (UPDATE) or
    /// streaming a reply finish, closes the others without UPDATE (nothing is deleted that
    /// the user did not QUIT), and returns when every session task has ended.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// False once [`shutdown`](Self::shutdown) has begun: what `/health` reports (see
    /// [`metrics::http`]).
    pub fn is_serving(&self) -> bool {
        !self.shared.shutdown.is_cancelled()
    }

    /// Number of sessions currently running.
    pub fn active_sessions(&self) -> usize {
        self.shared.tasks.len()
    }
}
