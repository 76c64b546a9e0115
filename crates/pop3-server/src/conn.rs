//! One connection: a task driving a `ServerSession`.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pop3_proto::sasl::Mechanism;
use pop3_proto::server::{
    AuthRequest, BodyError, BodyFlow, CommitError, Event, Greeting, LoginError, MessageInfo, Phase,
    ServerConfig, ServerSession, Snapshot,
};
use pop3_storage::{ErrorKind, Maildrop, WireMessage};
use ring::rand::SecureRandom;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, field, info, warn, Instrument, Span};

use crate::limits::Slot;
use crate::metrics::{self, Backend, Command, Limit, LoginResult, Method, TlsKind};
use crate::penalty::QueueFull;
use crate::proxy;
use crate::workers::Busy;
use crate::zero_copy::{FileShort, SendError, Sender};
use crate::{valid_username, AuthError, Config, ListenerKind, Shared};

/// Bytes read from the socket at once; the session bounds what it buffers beyond this.
const READ_CHUNK: usize = 4096;
/// Bytes of a stored message read at once on the blocking pool.
const BODY_CHUNK: usize = 16 * 1024;
/// Messages up to this size (their snapshot size) are read whole on the runtime thread and fed
/// to the session at once: no chunk channel, no hop to the blocking pool per `RETR`.
const SMALL_MESSAGE: u64 = 64 * 1024;

/// The socket, before or after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Only while a handshake owns the socket.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection handed to TLS")
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// The session settings of every connection, from the server's (built once, in
/// `Server::new`).
pub(crate) fn session_config(config: &Config) -> ServerConfig {
    let mut mechanisms = Vec::new();
    if config.offers.scram_sha256 {
        mechanisms.push(Mechanism::ScramSha256);
    }
    if config.offers.cram_md5 {
        mechanisms.push(Mechanism::CramMd5);
    }
    mechanisms.extend([Mechanism::Plain, Mechanism::Login]);
    if config.offers.oauthbearer {
        mechanisms.push(Mechanism::OAuthBearer);
    }
    if config.offers.xoauth2 {
        mechanisms.push(Mechanism::XOAuth2);
    }
    ServerConfig {
        bearer_error: config.bearer_error.clone(),
        implementation: config.implementation.clone(),
        apop: config.offers.apop,
        sasl_mechanisms: mechanisms,
        max_failed_logins: config.max_failed_logins,
        max_bad_commands: config.max_bad_commands,
        idle_timeout_authorization: config.idle_timeout_authorization,
        idle_timeout_transaction: config.idle_timeout_transaction,
        login_deadline: config.login_deadline,
        max_commands_before_login: config.max_commands_before_login,
        ..ServerConfig::default()
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("system random number generator");
    pop3_proto::hex(&bytes)
}

/// Runs one connection to its end; never panics on I/O errors.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    kind: ListenerKind,
) {
    // A trusted proxy's header comes first: before the slot (counted against the client's
    // address) and before TLS.
    let Some((peer, via)) = proxy::accept(&shared, &mut stream, peer, local).await else {
        return;
    };
    metrics::connection_accepted();
    let span = tracing::info_span!(
        "session",
        %peer,
        %local,
        proxy = field::Empty,
        tls = field::Empty,
        user = field::Empty,
    );
    async move {
        if let Some((proxy, header)) = &via {
            Span::current().record("proxy", field::display(proxy));
            proxy::log_header(header);
        }
        let Some(slot) = shared.limits.acquire(peer.ip()) else {
            warn!("connection limit reached, refusing");
            if kind == ListenerKind::Plain {
                let mut stream = stream;
                let line = b"-ERR [SYS/TEMP] too many connections, try again later\r\n";
                let _ = timeout(Duration::from_secs(5), stream.write_all(line)).await;
            }
            return;
        };
        match Driver::start(Arc::clone(&shared), stream, peer, kind, slot).await {
            Ok(Some(mut driver)) => {
                let result = driver.drive().await;
                let _ = timeout(Duration::from_secs(5), driver.conn.shutdown()).await;
                let reason = driver.session.close_reason();
                match result {
                    Ok(()) => info!(
                        ?reason,
                        commands = driver.session.commands(),
                        bytes_in = driver.bytes_in,
                        bytes_out = driver.bytes_out,
                        deleted = driver.deleted,
                        duration_ms = driver.start.elapsed().as_millis() as u64,
                        "session closed"
                    ),
                    Err(error) => info!(%error, ?reason, commands = driver.session.commands(),
                        bytes_in = driver.bytes_in, bytes_out = driver.bytes_out,
                        deleted = driver.deleted,
                        duration_ms = driver.start.elapsed().as_millis() as u64, "session ended"),
                }
            }
            Ok(None) => {}
            Err(error) => info!(%error, "connection failed before the greeting"),
        }
    }
    .instrument(span)
    .await;
}

struct Driver {
    shared: Arc<Shared>,
    session: ServerSession,
    conn: Conn,
    peer: SocketAddr,
    /// This connection's place in the connection limits.
    slot: Slot,
    /// The user of the SCRAM exchange in progress, for the penalty of its failure.
    sasl_user: Option<String>,
    /// A refused bearer token's error report went out (counted and delayed then): the
    /// client's acknowledgement that ends the exchange (RFC 7628 §3.2.3) is not a second
    /// failure.
    bearer_refused: bool,
    /// The start of a command line not yet complete, for the debug log.
    log_buf: Vec<u8>,
    /// Logins refused unchecked on this connection (see `refuse_unchecked`).
    refused: u32,
    start: Instant,
    maildrop: Option<Box<dyn Maildrop>>,
    bytes_in: u64,
    bytes_out: u64,
    /// Messages removed by this session's UPDATE, for the summary at close.
    deleted: usize,
    /// The first bytes of the command line being received, for the command counts.
    line_head: LineHead,
    /// When the login attempt in progress began (its audit line's duration).
    attempt_start: Option<Instant>,
}

impl Driver {
    async fn start(
        shared: Arc<Shared>,
        stream: TcpStream,
        peer: SocketAddr,
        kind: ListenerKind,
        slot: Slot,
    ) -> io::Result<Option<Self>> {
        let _ = stream.set_nodelay(true);
        let tls = shared.tls();
        let conn = match kind {
            ListenerKind::Plain => Conn::Plain(stream),
            ListenerKind::ImplicitTls => {
                let Some(acceptor) = tls.clone() else {
                    warn!("implicit TLS connection but no TLS configuration");
                    return Ok(None);
                };
                let tls = timeout(shared.config.tls_handshake_timeout, acceptor.accept(stream))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
                    .and_then(|accepted| accepted);
                metrics::tls_handshake(TlsKind::Implicit, tls.is_ok());
                let tls = tls?;
                Span::current().record("tls", true);
                Conn::Tls(Box::new(tls))
            }
        };
        let config = &shared.config;
        let session_config = ServerConfig {
            tls_available: kind == ListenerKind::Plain && tls.is_some(),
            plaintext_without_tls: config.allow_plaintext_without_tls
                || (config.trust_loopback && peer.ip().is_loopback()),
            ..shared.session_config.clone()
        };
        let nonce = random_token();
        let greeting = Greeting {
            apop_timestamp: format!("<{}.{nonce}@{}>", std::process::id(), config.hostname),
            sasl_nonce: nonce,
            hostname: config.hostname.clone(),
            tls_active: kind == ListenerKind::ImplicitTls,
        };
        let start = Instant::now();
        let session = ServerSession::new(session_config, greeting, Duration::ZERO);
        // At info level a session writes two lines, as Dovecot does: the login (the audit
        // event) and the summary when it closes.
        debug!(tls = kind == ListenerKind::ImplicitTls, "session started");
        Ok(Some(Self {
            shared,
            session,
            conn,
            peer,
            slot,
            sasl_user: None,
            bearer_refused: false,
            log_buf: Vec::new(),
            refused: 0,
            start,
            maildrop: None,
            bytes_in: 0,
            bytes_out: 0,
            deleted: 0,
            line_head: LineHead::default(),
            attempt_start: None,
        }))
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Longest time a write may stall: a client that stops reading is idle too.
    fn write_timeout(&self) -> Duration {
        self.shared
            .config
            .idle_timeout_transaction
            .max(self.shared.config.idle_timeout_authorization)
    }

    async fn flush(&mut self) -> io::Result<()> {
        let limit = self.write_timeout();
        let shutdown = self.shared.shutdown.clone();
        // A shutdown interrupts a stalled write (a slow reader of a long RETR), except once
        // the session has reached UPDATE: its final reply is sent in full.
        let interruptible = !matches!(self.session.phase(), Phase::Update | Phase::Closed);
        let stalled = || io::Error::new(io::ErrorKind::TimedOut, "client stopped reading");
        let stopping = || io::Error::other("server shutting down while the client was reading");
        let mut wrote = false;
        while self.session.has_output() {
            let out = self.session.take_output();
            // Biased: a write that is ready completes before a shutdown is looked at, so a
            // reply already on its way is not cut off by a shutdown that arrives meanwhile.
            tokio::select! {
                biased;
                written = timeout(limit, self.conn.write_all(&out)) => written.map_err(|_| stalled())??,
                () = shutdown.cancelled(), if interruptible => return Err(stopping()),
            }
            self.bytes_out += out.len() as u64;
            wrote = true;
        }
        if wrote {
            tokio::select! {
                biased;
                flushed = timeout(limit, self.conn.flush()) => flushed.map_err(|_| stalled())??,
                () = shutdown.cancelled(), if interruptible => return Err(stopping()),
            }
        }
        Ok(())
    }

    async fn drive(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; READ_CHUNK];
        let shutdown = self.shared.shutdown.clone();
        loop {
            // Every event the input raised is answered before anything is sent, so that the
            // replies to pipelined commands leave together: a pipelined login's four replies
            // in one send, a RETR's terminator with the next RETR's status line. An answer
            // that waits on the client or on a timer sends what came before it first
            // (penalty and failed-login delays, STLS, a streamed body), as does a full output
            // (the session stops executing commands past its high-water mark).
            while let Some(event) = self.session.poll_event() {
                let retrieving = matches!(event, Event::RetrieveBody { .. });
                let before = self.bytes_out + self.session.pending_output() as u64;
                self.answer(event).await?;
                if retrieving {
                    let after = self.bytes_out + self.session.pending_output() as u64;
                    metrics::message_bytes(after - before);
                }
            }
            if self.session.has_output() {
                // Taking the output lets the session run commands that waited behind it,
                // which may raise events: back to the top.
                self.flush().await?;
                continue;
            }
            if self.session.is_closed() {
                return Ok(());
            }
            let wants_input = self.session.wants_input();
            let deadline = self
                .session
                .poll_timeout()
                .map_or_else(|| Instant::now() + Duration::from_secs(3600), |d| self.start + d);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    info!("server shutting down: closing without UPDATE");
                    let line = b"-ERR [SYS/TEMP] server shutting down\r\n";
                    let _ = timeout(Duration::from_secs(2), self.conn.write_all(line)).await;
                    return Ok(());
                }
                read = self.conn.read(&mut buf), if wants_input => {
                    let n = read?;
                    if n == 0 {
                        info!("client closed the connection");
                        return Ok(());
                    }
                    // A PROXY header where none is trusted (the peer is not in proxy_from):
                    // a misconfigured balancer, or a client claiming another address. Either
                    // way not POP3: closed and logged, never read as commands.
                    if self.bytes_in == 0 && pop3_proto::proxy::looks_like_header(&buf[..n]) {
                        warn!(
                            "PROXY header from an address not in [server] proxy_from: \
                             connection closed"
                        );
                        return Ok(());
                    }
                    self.bytes_in += n as u64;
                    // SASL responses are not commands.
                    self.line_head.feed(&buf[..n], self.session.phase() != Phase::Sasl);
                    let now = self.now();
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        log_lines(&mut self.log_buf, &buf[..n], self.session.phase());
                    }
                    self.session.handle_input(&buf[..n], now);
                }
                () = sleep_until(deadline) => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        }
    }

    async fn answer(&mut self, event: Event) -> io::Result<()> {
        let started = Instant::now();
        let phase = self.session.phase();
        let name = event_name(&event);
        let answered = self.answer_inner(event).await;
        debug!(
            event = name,
            ?phase,
            now = ?self.session.phase(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "event answered"
        );
        answered
    }

    async fn answer_inner(&mut self, event: Event) -> io::Result<()> {
        match event {
            Event::Authenticate(request) => self.authenticate(request).await,
            // A wrong SCRAM proof, a malformed SASL response or a cancelled exchange: counted
            // and delayed as a bad password.
            Event::SaslFailed { mechanism, cancelled } => {
                if std::mem::take(&mut self.bearer_refused) {
                    return Ok(self.session.login_rejected(LoginError::BadCredentials)?);
                }
                let user = self.sasl_user.take();
                match cancelled {
                    true => {
                        info!(%mechanism, user = user.as_deref(), "SASL authentication cancelled")
                    }
                    false => {
                        info!(%mechanism, user = user.as_deref(), "SASL authentication failed")
                    }
                }
                let reason = if cancelled { "exchange cancelled" } else { "SASL exchange failed" };
                let method = Method::from_name(mechanism.name());
                self.audit(method, user.as_deref(), LoginResult::BadCredentials, reason);
                self.failed(user.as_deref()).await
            }
            Event::ScramKeysNeeded { username } => {
                // The penalty comes before the salt: a guesser waits before each proof.
                self.attempt_start = Some(Instant::now());
                if !self.penalty_wait(Some(&username)).await? {
                    let (scram, queue) = (Method::ScramSha256, "too many failed logins queued");
                    self.audit(scram, Some(&username), LoginResult::Refused, queue);
                    return self.refuse_unchecked(true).await;
                }
                self.sasl_user = Some(username.clone());
                let keys = if valid_username(&username) {
                    let auth = self.shared.authenticator();
                    self.shared.workers.run(move || auth.scram_keys(&username)).await
                } else {
                    Ok(None)
                };
                match keys {
                    Ok(keys) => Ok(self.session.scram_keys(keys)?),
                    Err(Busy) => {
                        warn!(method = "SCRAM-SHA-256", "password checks are all busy, refusing");
                        metrics::refused(Limit::AuthQueue);
                        let user = self.sasl_user.clone();
                        let (scram, busy) = (Method::ScramSha256, "password checks all busy");
                        self.audit(scram, user.as_deref(), LoginResult::Refused, busy);
                        self.refuse_unchecked(false).await
                    }
                }
            }
            Event::RetrieveBody { index, .. } => self.retrieve(index).await,
            Event::StartTls => self.start_tls().await,
            Event::Commit { deleted } if deleted.is_empty() => {
                // Nothing to remove: release the maildrop (closing its lock) and answer +OK,
                // with no storage call that could fail (e.g. out of descriptors). A remote
                // maildrop (a database) is released on the blocking pool, and before the +OK:
                // a client that logs in again right after QUIT must find it unlocked.
                match self.maildrop.take() {
                    Some(mut maildrop) if !maildrop.is_local() => {
                        let released =
                            tokio::task::spawn_blocking(move || maildrop.commit(&[])).await;
                        if let Ok(Err(error)) = released {
                            // Nothing was to be removed: the lock goes with its connection.
                            warn!(%error, "releasing the maildrop failed");
                        }
                    }
                    maildrop => drop(maildrop),
                }
                metrics::commit(true, 0);
                // Nothing was committed: the "session closed" line says deleted=0.
                debug!(deleted = 0, "committed");
                Ok(self.session.commit_done(Ok(()))?)
            }
            Event::Commit { deleted } => {
                let maildrop = self.maildrop.take();
                let count = deleted.len();
                let result = tokio::task::spawn_blocking(move || match maildrop {
                    Some(mut drop) => drop.commit(&deleted).map_err(|e| e.to_string()),
                    None => Ok(()),
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                metrics::commit(result.is_ok(), count);
                match &result {
                    Ok(()) => {
                        self.deleted = count;
                        info!(deleted = count, "committed");
                    }
                    Err(error) => {
                        metrics::backend_error(Backend::Mail);
                        warn!(%error, "commit failed");
                    }
                }
                Ok(self.session.commit_done(result.map_err(|_| CommitError))?)
            }
        }
    }

    async fn reject(&mut self, error: LoginError) -> io::Result<()> {
        if error == LoginError::BadCredentials {
            // Only this session waits; the answer (and anything pipelined) comes after.
            self.flush().await?;
            self.pause(self.shared.config.auth_failure_delay).await?;
        }
        Ok(self.session.login_rejected(error)?)
    }

    /// Refuses an attempt without checking it: `-ERR [SYS/TEMP]`, and after
    /// `max_failed_logins` refusals on this connection it is closed. `delayed`: when the
    /// attempt's network has too many queued (a guesser's), the answer comes after the
    /// failed-login delay, so that a refusal costs as much time as a wrong guess (answered at
    /// once, refusals would be asked for as fast as they are answered: a million in 45 s in
    /// the attack suite); when the password-check pool is full, at once (the client did
    /// nothing wrong, and attempts reach the pool only past their network's queue).
    async fn refuse_unchecked(&mut self, delayed: bool) -> io::Result<()> {
        if delayed {
            self.flush().await?;
            self.pause(self.shared.config.auth_failure_delay).await?;
        }
        self.session.login_rejected(LoginError::TempFailure)?;
        self.refused += 1;
        if self.refused >= self.shared.config.max_failed_logins {
            self.flush().await?;
            return Err(io::Error::other("too many logins refused unchecked, closing"));
        }
        Ok(())
    }

    /// Counts a failed login for this client's network (and `user`), then rejects it.
    async fn failed(&mut self, user: Option<&str>) -> io::Result<()> {
        self.shared.penalties.failed(self.peer.ip(), user, std::time::Instant::now());
        self.reject(LoginError::BadCredentials).await
    }

    /// Waits, before credentials are checked, for this attempt's turn after earlier failures
    /// from this client's network or for `user` (see `penalty.rs`); false when the network's
    /// queue is full and the attempt is refused unchecked.
    async fn penalty_wait(&mut self, user: Option<&str>) -> io::Result<bool> {
        let now = std::time::Instant::now();
        match self.shared.penalties.admit(self.peer.ip(), user, now) {
            Ok(delay) if delay.is_zero() => Ok(true),
            Ok(delay) => {
                metrics::penalty_applied();
                info!(user, delay_ms = delay.as_millis() as u64, "earlier failed logins: waiting");
                self.flush().await?;
                self.pause(delay).await?;
                Ok(true)
            }
            Err(QueueFull) => {
                metrics::refused(Limit::PenaltyQueue);
                warn!(user, "too many failed logins from this network: refused unchecked");
                Ok(false)
            }
        }
    }

    /// Sleeps, unless the server shuts down meanwhile.
    async fn pause(&mut self, delay: Duration) -> io::Result<()> {
        let shutdown = self.shared.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = shutdown.cancelled() => {
                Err(io::Error::other("server shutting down during a login"))
            }
        }
    }

    async fn authenticate(&mut self, request: AuthRequest) -> io::Result<()> {
        let (username, authzid, method) = match &request {
            AuthRequest::Password { username, authzid, mechanism, .. } => {
                (username.clone(), authzid.clone(), mechanism.map_or("USER/PASS", Mechanism::name))
            }
            AuthRequest::Apop { username, .. } => (username.clone(), None, "APOP"),
            AuthRequest::CramMd5 { username, .. } => (username.clone(), None, "CRAM-MD5"),
            AuthRequest::Bearer { username, mechanism, .. } => {
                (username.clone(), None, mechanism.name())
            }
            AuthRequest::Verified { username, authzid } => {
                (username.clone(), authzid.clone(), "SCRAM-SHA-256")
            }
        };
        let verified = matches!(request, AuthRequest::Verified { .. });
        let bearer = matches!(request, AuthRequest::Bearer { .. });
        let kind = Method::from_name(method);
        // OAUTHBEARER may leave the user out: the token names it.
        let claimed = Some(username.as_str()).filter(|u| !u.is_empty() || !bearer);
        // (SCRAM waited before its salt was sent, and started its attempt then.)
        if !verified {
            self.attempt_start = Some(Instant::now());
            if !self.penalty_wait(claimed).await? {
                let queued = "too many failed logins queued";
                self.audit(kind, claimed, LoginResult::Refused, queued);
                return self.refuse_unchecked(true).await;
            }
        }
        self.sasl_user = None;
        if claimed.is_some_and(|u| !valid_username(u)) {
            warn!(method, "login with an invalid user name refused");
            self.audit(kind, None, LoginResult::BadCredentials, "invalid user name");
            self.bearer_refused = bearer;
            return self.failed(None).await;
        }
        if authzid.as_deref().is_some_and(|a| !a.is_empty() && a != username) {
            warn!(method, user = %username, "login as another user (authzid) refused");
            let other = "authorization identity differs";
            self.audit(kind, Some(&username), LoginResult::BadCredentials, other);
            return self.failed(Some(&username)).await;
        }
        // The check runs on the bounded pool: its memory and CPU do not grow with the number
        // of clients trying.
        let auth = self.shared.authenticator();
        let check_start = Instant::now();
        let pool = match auth.is_remote(&request) {
            true => &self.shared.remote_workers,
            false => &self.shared.workers,
        };
        // A check cheaper than the hop (a fast scheme for every user) is made right here.
        let checked = match auth.authenticate_quick(&request) {
            Some(result) => Ok(result),
            None => pool.run(move || auth.authenticate(&request)).await,
        };
        if checked.is_ok() {
            metrics::auth_duration(check_start.elapsed());
        }
        let user = match checked {
            Ok(Ok(user)) => user,
            Ok(Err(AuthError::Rejected)) => {
                warn!(method, user = %username, "login failed");
                let rejected = "credentials rejected";
                self.audit(kind, claimed, LoginResult::BadCredentials, rejected);
                // The error report goes out now; the exchange ends with the client's answer.
                self.bearer_refused = bearer;
                return self.failed(claimed).await;
            }
            Ok(Err(AuthError::Temporary(error))) => {
                warn!(method, user = %username, %error, "users backend failed");
                metrics::backend_error(Backend::Users);
                self.audit(kind, claimed, LoginResult::Temporary, "users backend failed");
                return self.reject(LoginError::TempFailure).await;
            }
            Err(Busy) => {
                warn!(method, user = %username, "password checks are all busy, refusing");
                metrics::refused(Limit::AuthQueue);
                self.audit(kind, claimed, LoginResult::Refused, "password checks all busy");
                return self.refuse_unchecked(false).await;
            }
        };
        self.shared.penalties.succeeded(self.peer.ip(), &user.name);
        Span::current().record("user", user.name.as_str());
        if !self.shared.limits.logged_in(&mut self.slot, &user.name) {
            warn!(
                limit = self.shared.config.limits.per_user_ip,
                "too many sessions for this user from this address"
            );
            let many = "too many sessions for this user from this address";
            self.audit(kind, Some(&user.name), LoginResult::InUse, many);
            return self.reject(LoginError::InUse).await;
        }
        let name = user.name.clone();
        let mailboxes = Arc::clone(&self.shared.mailboxes);
        let opened = tokio::task::spawn_blocking(move || mailboxes.open(&user))
            .await
            .unwrap_or_else(|e| Err(task_failed("open maildrop", e)));
        let maildrop = match opened {
            Ok(maildrop) => maildrop,
            Err(error) => {
                warn!(%error, "cannot open the maildrop");
                let (login, result, reason) = match error.kind() {
                    ErrorKind::InUse => {
                        metrics::lock_conflict();
                        (
                            LoginError::InUse,
                            LoginResult::InUse,
                            "maildrop locked by another session",
                        )
                    }
                    ErrorKind::Temporary => {
                        metrics::backend_error(Backend::Mail);
                        (LoginError::TempFailure, LoginResult::Temporary, "maildrop unavailable")
                    }
                    ErrorKind::Permanent => {
                        metrics::backend_error(Backend::Mail);
                        (LoginError::PermFailure, LoginResult::Permanent, "maildrop unusable")
                    }
                };
                self.audit(kind, Some(&name), result, reason);
                return self.reject(login).await;
            }
        };
        let infos: Result<Vec<_>, _> =
            maildrop.messages().iter().map(|m| MessageInfo::new(m.size, m.uidl.as_str())).collect();
        let Ok(infos) = infos else {
            warn!("maildrop has an invalid UIDL");
            metrics::backend_error(Backend::Mail);
            self.audit(kind, Some(&name), LoginResult::Permanent, "invalid UIDL in maildrop");
            return self.reject(LoginError::PermFailure).await;
        };
        self.audit(kind, Some(&name), LoginResult::Ok, "");
        // The audit event above is the login's record at info level.
        debug!(method, messages = infos.len(), "logged in");
        self.maildrop = Some(maildrop);
        Ok(self.session.login_accepted(Snapshot::new(infos))?)
    }

    /// Sends one message. A small one (snapshot size up to [`SMALL_MESSAGE`]) from a maildrop
    /// whose small reads are cheap (files, memory; never a database) is read whole, right
    /// here on the runtime thread: a Maildir message being read is almost always in
    /// the page cache (it was listed and sized at login), so the read costs less than a hop
    /// to the blocking pool and back, whose wake-ups and task switches were a large part of
    /// pop3d's time in a RETR-bound load (figures: `docs/performance.md`, "Figures behind code
    /// comments"). A larger one, or one whose file turns out longer than its size, is
    /// streamed by [`stream`](Self::stream) from the blocking pool.
    ///
    /// First of all, a RETR of a message stored in wire form on a plain connection is sent
    /// with `sendfile` ([`send_direct`](Self::send_direct)).
    async fn retrieve(&mut self, index: usize) -> io::Result<()> {
        let Some(maildrop) = self.maildrop.take() else {
            return Ok(self.session.body_error(BodyError::Io)?);
        };
        match self.wire_form(maildrop.as_ref(), index) {
            Ok(Some(wire)) => {
                self.maildrop = Some(maildrop);
                return self.send_direct(index, wire).await;
            }
            Ok(None) => {}
            Err(error) => {
                self.maildrop = Some(maildrop);
                return Ok(self.session.body_error(body_error(&error, index))?);
            }
        }
        let size = maildrop.messages().get(index).map_or(u64::MAX, |m| m.size);
        if size > SMALL_MESSAGE || !maildrop.is_local() {
            return self.stream(maildrop, index).await;
        }
        let read = read_small(maildrop.as_ref(), index, size);
        match read {
            Ok(Some(body)) => {
                self.maildrop = Some(maildrop);
                if !body.is_empty() {
                    if !self.session.wants_body_data() {
                        self.flush().await?;
                    }
                    self.session.body_data(&body)?;
                }
                Ok(self.session.body_end()?)
            }
            // Longer than its listed size: stream it, as any large message.
            Ok(None) => self.stream(maildrop, index).await,
            Err(error) => {
                self.maildrop = Some(maildrop);
                Ok(self.session.body_error(body_error(&error, index))?)
            }
        }
    }

    /// Message `index`, open for [`send_direct`](Self::send_direct), if it qualifies (see
    /// `zero_copy.rs`): a RETR (not TOP) on a plain TCP connection, of a message of a local
    /// maildrop stored in wire form with the size the session announces. `None`: the
    /// streaming path.
    fn wire_form(
        &self,
        maildrop: &dyn Maildrop,
        index: usize,
    ) -> Result<Option<WireMessage>, pop3_storage::Error> {
        if !maildrop.is_local()
            || !matches!(self.conn, Conn::Plain(_))
            || !self.session.body_can_be_direct()
        {
            return Ok(None);
        }
        let wire = maildrop.wire_message(index)?;
        let size = maildrop.messages().get(index).map(|m| m.size);
        Ok(wire.filter(|w| size == Some(w.len)))
    }

    /// Sends message `index`, stored in wire form, with `sendfile` (see `zero_copy.rs`).
    async fn send_direct(&mut self, index: usize, wire: WireMessage) -> io::Result<()> {
        let limit = self.write_timeout();
        let shutdown = self.shared.shutdown.clone();
        // `wire_form` lets only plain connections through.
        let Conn::Plain(tcp) = &self.conn else {
            return Ok(self.session.body_error(BodyError::Io)?);
        };
        let announced = self.session.body_direct_begin()?;
        let head = self.session.take_output();
        let mut sender = Sender { tcp, limit, shutdown: &shutdown, sent: 0 };
        // The session's snapshot was built from `maildrop.messages()`, whose size
        // `wire_form` compared: equal, or the reply is not completed.
        let sent = match announced == wire.len {
            true => sender.send_body(&head, &wire).await,
            false => Err(SendError::File(FileShort { at: 0 })),
        };
        self.bytes_out += sender.sent;
        metrics::direct_body();
        match sent {
            Ok(()) => self.session.body_direct_end()?,
            Err(SendError::File(short)) => {
                // The file changed behind the snapshot (Maildir forbids it): the reply
                // cannot be completed, the connection closes without UPDATE.
                let size = wire.len;
                warn!(index, at = short.at, size, "message file not of the length its name says");
                metrics::backend_error(Backend::Mail);
                self.session.body_error(BodyError::Io)?;
            }
            Err(SendError::Conn(error)) => return Err(error),
        }
        Ok(())
    }

    /// Streams one message: a blocking task reads it in chunks into a channel of two, the
    /// session gets a chunk only when it wants one, so at most a few chunks are in memory.
    /// Chunks come back through a second channel to be read into again (no new, zeroed buffer
    /// per chunk).
    async fn stream(&mut self, maildrop: Box<dyn Maildrop>, index: usize) -> io::Result<()> {
        let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, BodyError>>(2);
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = tokio::task::spawn_blocking(move || {
            let outcome = match maildrop.read_message(index) {
                Err(error) => Err(error),
                Ok(mut reader) => loop {
                    let mut chunk = free_rx.try_recv().unwrap_or_default();
                    chunk.resize(BODY_CHUNK, 0);
                    match reader.read(&mut chunk) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            chunk.truncate(n);
                            if tx.blocking_send(Ok(chunk)).is_err() {
                                break Ok(()); // the session stopped (TOP done, or gone)
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(read_error(e)),
                    }
                },
            };
            if let Err(error) = outcome {
                let _ = tx.blocking_send(Err(body_error(&error, index)));
            }
            maildrop
        });
        let mut failure = None;
        while let Some(item) = rx.recv().await {
            match item {
                Ok(chunk) => {
                    if !self.session.wants_body_data() {
                        self.flush().await?;
                        if !self.session.wants_body_data() {
                            break; // TOP has its lines
                        }
                    }
                    let flow = self.session.body_data(&chunk)?;
                    let _ = free_tx.send(chunk);
                    if flow == BodyFlow::Done {
                        break;
                    }
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        drop(rx);
        let maildrop = reader.await.map_err(|e| io::Error::other(format!("reader task: {e}")))?;
        self.maildrop = Some(maildrop);
        match failure {
            None => Ok(self.session.body_end()?),
            Some(error) => Ok(self.session.body_error(error)?),
        }
    }

    async fn start_tls(&mut self) -> io::Result<()> {
        self.flush().await?;
        let Some(acceptor) = self.shared.tls() else {
            return Err(io::Error::other("STLS without a TLS configuration"));
        };
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            return Err(io::Error::other("STLS on a TLS connection"));
        };
        let tls = timeout(self.shared.config.tls_handshake_timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
            .and_then(|accepted| accepted);
        metrics::tls_handshake(TlsKind::Stls, tls.is_ok());
        self.conn = Conn::Tls(Box::new(tls?));
        Span::current().record("tls", true);
        info!("STLS: TLS established");
        Ok(self.session.tls_established()?)
    }
}

impl Driver {
    /// The negotiated TLS version, or "none".
    fn tls_version(&self) -> &'static str {
        let Conn::Tls(tls) = &self.conn else { return "none" };
        match tls.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(_) => "other",
            None => "none",
        }
    }

    /// Ends a login attempt: counts it in the metrics and writes its audit line (target
    /// `pop3d::audit`): who, from where (the client behind a PROXY header), how, over which
    /// TLS, with what result and why, and how long the attempt took (before any
    /// failed-login delay). Never a password or token: only these fields are logged.
    fn audit(&mut self, method: Method, user: Option<&str>, result: LoginResult, reason: &str) {
        metrics::login(method, result);
        let duration_ms = self.attempt_start.take().map_or(0, |t| t.elapsed().as_millis() as u64);
        info!(
            target: "pop3d::audit",
            user = user.unwrap_or(""),
            client = %self.peer,
            mechanism = method.label(),
            tls = self.tls_version(),
            result = result.label(),
            reason,
            duration_ms,
            "login"
        );
    }
}

/// The first bytes of the command line being received: enough to name its command at its
/// end, without keeping the line.
#[derive(Debug, Default)]
struct LineHead {
    bytes: [u8; 5],
    len: usize,
}

impl LineHead {
    /// Counts each command line `input` completes (when `commands`: SASL responses are not).
    fn feed(&mut self, input: &[u8], commands: bool) {
        for &b in input {
            if b == b'\n' {
                if commands {
                    metrics::command(Command::of_line(&self.bytes[..self.len]));
                }
                self.len = 0;
            } else if self.len < self.bytes.len() {
                self.bytes[self.len] = b;
                self.len += 1;
            }
        }
    }
}

/// An event's name for the debug log (never its credentials).
fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Authenticate(_) => "authenticate",
        Event::SaslFailed { .. } => "sasl-failed",
        Event::ScramKeysNeeded { .. } => "scram-keys",
        Event::RetrieveBody { .. } => "retrieve",
        Event::StartTls => "starttls",
        Event::Commit { .. } => "commit",
    }
}

/// The longest partial line kept for the debug log.
const LOG_LINE_MAX: usize = 1024;

/// Logs the command lines completed by `input` at debug level, secrets masked: the arguments
/// of PASS and AUTH, APOP's digest, and every line of a SASL exchange (`phase` is the
/// session's when the bytes arrived). A line split across reads is logged once complete
/// (`pending` holds its start), so a secret is never logged in pieces.
fn log_lines(pending: &mut Vec<u8>, input: &[u8], phase: Phase) {
    pending.extend_from_slice(input);
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if phase == Phase::Sasl {
            debug!(command = "<SASL response, not logged>", "client sent");
            continue;
        }
        debug!(command = %masked(line), "client sent");
    }
    if pending.len() > LOG_LINE_MAX {
        pending.clear();
    }
}

/// A command line with its secrets replaced.
fn masked(line: &str) -> String {
    let mut words = line.splitn(3, ' ');
    let verb = words.next().unwrap_or_default();
    match verb.to_ascii_uppercase().as_str() {
        "PASS" => "PASS <secret>".to_owned(),
        "AUTH" => match (words.next(), words.next()) {
            (Some(mechanism), Some(_)) => format!("AUTH {mechanism} <secret>"),
            (Some(mechanism), None) => format!("AUTH {mechanism}"),
            _ => "AUTH".to_owned(),
        },
        "APOP" => format!("APOP {} <digest>", words.next().unwrap_or_default()),
        _ => line.chars().take(80).collect(),
    }
}

/// A blocking task that panicked or was cancelled, as a storage error.
fn task_failed(op: &'static str, error: tokio::task::JoinError) -> pop3_storage::Error {
    pop3_storage::Error::Io { op, path: Default::default(), source: io::Error::other(error) }
}

fn read_error(source: io::Error) -> pop3_storage::Error {
    pop3_storage::Error::Io { op: "read message", path: Default::default(), source }
}

/// Logs why message `index` cannot be read and says what the client is told.
fn body_error(error: &pop3_storage::Error, index: usize) -> BodyError {
    warn!(%error, index, "cannot read message");
    metrics::backend_error(Backend::Mail);
    match error {
        pop3_storage::Error::MessageGone { .. } => BodyError::Gone,
        _ => BodyError::Io,
    }
}

/// Reads message `index`, whose snapshot size is `size` (at most [`SMALL_MESSAGE`]), whole:
/// `None` if the stored bytes turn out longer than `size` (the caller streams it instead).
/// The stored form is never longer than the wire size (which counts CRLF line ends).
fn read_small(
    maildrop: &dyn Maildrop,
    index: usize,
    size: u64,
) -> Result<Option<Vec<u8>>, pop3_storage::Error> {
    let mut reader = maildrop.read_message(index)?;
    // One byte more than expected, to see the end of the file without a second read.
    let mut body = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX - 1) + 1];
    let mut filled = 0;
    while filled < body.len() {
        match reader.read(&mut body[filled..]) {
            Ok(0) => {
                body.truncate(filled);
                return Ok(Some(body));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod count_tests {
    use super::LineHead;

    /// The value of one `pop3_commands_total` sample.
    fn count(command: &str) -> u64 {
        let text = crate::metrics::render();
        let name = format!("pop3_commands_total{{command=\"{command}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(name.as_str())).unwrap().parse().unwrap()
    }

    #[test]
    fn commands_are_counted_once_complete_even_when_split_across_reads() {
        let (retr, quit, noop) = (count("RETR"), count("NOOP"), count("QUIT"));
        let mut head = LineHead::default();
        for chunk in [&b"RE"[..], b"TR 1\r\nNO", b"OP\r\nQU", b"IT"] {
            head.feed(chunk, true);
        }
        assert_eq!((count("RETR") - retr, count("NOOP") - noop, count("QUIT") - quit), (1, 1, 0));
        head.feed(b"\r\n", true);
        assert_eq!(count("QUIT") - quit, 1, "counted at its line end");
        // SASL responses are not commands, even one that looks like one.
        head.feed(b"NOOP\r\n", false);
        assert_eq!(count("NOOP") - noop, 1);
    }
}

#[cfg(test)]
mod log_tests {
    use super::masked;

    #[test]
    fn secrets_are_masked_in_the_command_log() {
        assert_eq!(masked("PASS hunter2"), "PASS <secret>");
        assert_eq!(masked("pass hunter2"), "PASS <secret>");
        assert_eq!(masked("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), "AUTH PLAIN <secret>");
        assert_eq!(masked("AUTH SCRAM-SHA-256"), "AUTH SCRAM-SHA-256");
        assert_eq!(masked("APOP alice c4c9334bac560ecc979e58001b3e22fb"), "APOP alice <digest>");
        assert_eq!(masked("USER alice"), "USER alice");
        assert_eq!(masked("RETR 1"), "RETR 1");
    }
}
