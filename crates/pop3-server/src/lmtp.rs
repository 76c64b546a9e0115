//! An LMTP delivery listener (RFC 2033): the MTA (Postfix's `lmtp` transport, Exim's
//! `lmtp` transport...) hands mail to the server over TCP or a Unix socket instead of
//! running `pop3d deliver` once per message.
//!
//! One task per connection drives `pop3-proto`'s [`LmtpSession`]; every storage call runs on
//! tokio's blocking pool. A recipient is looked up at `RCPT` (the users backend, as `pop3d
//! deliver` does) and its delivery sink opened there, so an unknown user gets `550 5.1.1`
//! before any data is sent. The message is written to every recipient's sink chunk by chunk
//! as it arrives (never held whole), each copy headed by `Return-Path` and `Delivered-To` as
//! Dovecot's LMTP server writes them; after the final dot every sink is sealed and waited
//! for, and only a recipient whose copy is durable is answered `250 2.0.0`. Any storage
//! failure is `451 4.3.0` for that recipient alone: the MTA tries it again later.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use pop3_proto::lmtp::LmtpConfig;
use pop3_proto::lmtp::{Delivery, LmtpEvent, LmtpSession, RecipientError};
use pop3_storage::sink::{Begun, Incoming, Sink};
use pop3_storage::{Backend, Envelope, User};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{AuthError, Authenticator, UserInfo};

/// Bytes read from the client at a time: the most message data held per connection.
const READ_CHUNK: usize = 16 * 1024;

/// Settings of the LMTP listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpSettings {
    /// The session's limits (message size, recipients, line length, idle time, errors).
    pub session: LmtpConfig,
    /// Simultaneous LMTP connections (default 100); beyond that a connection gets `421
    /// 4.3.2` and is closed, and the MTA tries again.
    pub max_connections: usize,
}

impl Default for LmtpSettings {
    fn default() -> Self {
        Self { session: LmtpConfig::default(), max_connections: 100 }
    }
}

/// An LMTP server: its listeners share the users backend, the store and the limits. Cheap
/// to clone.
#[derive(Clone)]
pub struct LmtpServer {
    shared: Arc<Shared>,
}

struct Shared {
    settings: LmtpSettings,
    backend: Arc<dyn Backend>,
    auth: RwLock<Arc<dyn Authenticator>>,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for LmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmtpServer")
            .field("settings", &self.shared.settings)
            .field("backend", &self.shared.backend)
            .finish_non_exhaustive()
    }
}

impl LmtpServer {
    /// An LMTP server delivering into `backend` for the users of `authenticator`.
    pub fn new(
        settings: LmtpSettings,
        backend: Arc<dyn Backend>,
        authenticator: Arc<dyn Authenticator>,
    ) -> Self {
        let connections = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        Self {
            shared: Arc::new(Shared {
                settings,
                backend,
                auth: RwLock::new(authenticator),
                connections,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Replaces the users backend (a reloaded users file); transactions in progress keep the
    /// recipients they have.
    pub fn set_authenticator(&self, authenticator: Arc<dyn Authenticator>) {
        *self.shared.auth.write().unwrap_or_else(|e| e.into_inner()) = authenticator;
    }

    /// Accepts LMTP connections on a TCP listener until [`shutdown`](Self::shutdown).
    pub async fn serve_tcp(&self, listener: tokio::net::TcpListener) -> io::Result<()> {
        let local = listener.local_addr()?;
        tracing::info!(%local, "LMTP listening");
        loop {
            let accepted = tokio::select! {
                () = self.shared.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Replies are small writes answering pipelined commands: without
                    // TCP_NODELAY each one after the first would wait for the client's
                    // delayed ACK (Nagle), some 40 ms a transaction.
                    let _ = stream.set_nodelay(true);
                    self.spawn(stream, peer.to_string())
                }
                Err(error) => backoff(error).await,
            }
        }
        tracing::info!(%local, "LMTP listener closed");
        Ok(())
    }

    /// Accepts LMTP connections on a Unix-domain socket until [`shutdown`](Self::shutdown).
    pub async fn serve_unix(&self, listener: tokio::net::UnixListener) -> io::Result<()> {
        let local = listener
            .local_addr()?
            .as_pathname()
            .map_or_else(|| "(unnamed)".to_owned(), |p| p.display().to_string());
        tracing::info!(%local, "LMTP listening");
        loop {
            let accepted = tokio::select! {
                () = self.shared.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => self.spawn(stream, format!("unix:{local}")),
                Err(error) => backoff(error).await,
            }
        }
        tracing::info!(%local, "LMTP listener closed");
        Ok(())
    }

    fn spawn<S>(&self, stream: S, peer: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let permit = Arc::clone(&shared.connections).try_acquire_owned();
        self.shared.tasks.spawn(async move {
            let mut stream = stream;
            let Ok(_permit) = permit else {
                tracing::warn!(%peer, "LMTP connection refused: too many connections");
                let busy = b"421 4.3.2 Too many connections, try again later\r\n";
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(busy)).await;
                return;
            };
            let mut conn = Connection::new(&shared, stream, peer);
            match conn.drive().await {
                Ok(()) => {
                    tracing::debug!(peer = %conn.peer, reason = ?conn.session.close_reason(), "LMTP session ended");
                }
                Err(error) => tracing::info!(peer = %conn.peer, %error, "LMTP connection ended"),
            }
            conn.abort_message().await;
        });
    }

    /// Stops accepting, closes idle sessions with `421`, lets a delivery in progress
    /// finish, and returns when every session has ended.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

/// EMFILE and friends: back off instead of spinning.
async fn backoff(error: io::Error) {
    tracing::warn!(%error, "LMTP accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// An accepted recipient: the name it was given, the user it is, and a sink into its
/// maildrop, `None` once a storage call for it failed.
struct Recipient {
    address: String,
    user: String,
    sink: Option<Box<dyn Sink>>,
}

struct Connection<'a, S> {
    shared: &'a Shared,
    stream: S,
    peer: String,
    session: LmtpSession,
    started: Instant,
    /// The recipients accepted in the current transaction, in `RCPT` order.
    recipients: Vec<Recipient>,
    /// The sender of the current transaction.
    sender: String,
    /// The `Return-Path`/`Delivered-To` lines are still to be written (before the first
    /// octet of the message).
    headers_pending: bool,
    /// Octets of the current message.
    size: u64,
    /// The recipients of the message being received, as the session named them.
    message_recipients: Vec<String>,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Connection<'a, S> {
    fn new(shared: &'a Shared, stream: S, peer: String) -> Self {
        let started = Instant::now();
        let session = LmtpSession::new(shared.settings.session.clone(), Duration::ZERO);
        tracing::debug!(%peer, "LMTP connection");
        Self {
            shared,
            stream,
            peer,
            session,
            started,
            recipients: Vec::new(),
            sender: String::new(),
            headers_pending: false,
            size: 0,
            message_recipients: Vec::new(),
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    async fn flush(&mut self) -> io::Result<()> {
        let limit = self.shared.settings.session.idle_timeout;
        let stalled = || io::Error::new(io::ErrorKind::TimedOut, "client stopped reading");
        let mut wrote = false;
        while self.session.has_output() {
            let out = self.session.take_output();
            tokio::time::timeout(limit, self.stream.write_all(&out))
                .await
                .map_err(|_| stalled())??;
            wrote = true;
        }
        if wrote {
            tokio::time::timeout(limit, self.stream.flush()).await.map_err(|_| stalled())??;
        }
        Ok(())
    }

    async fn drive(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; READ_CHUNK];
        let shutdown = self.shared.shutdown.clone();
        loop {
            self.flush().await?;
            if let Some(event) = self.session.poll_event() {
                self.answer(event).await?;
                continue;
            }
            if self.session.is_closed() {
                return Ok(());
            }
            if !self.session.wants_input() {
                // Every event is answered, so the session has run what it could.
                return Err(io::Error::other("LMTP session stalled"));
            }
            let deadline = self.session.poll_timeout().unwrap_or_default();
            let sleep =
                tokio::time::sleep_until(tokio::time::Instant::from_std(self.started + deadline));
            tokio::select! {
                () = shutdown.cancelled() => {
                    let bye = b"421 4.3.2 Server shutting down, try again later\r\n";
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.write_all(bye)).await;
                    return Ok(());
                }
                () = sleep => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
                read = self.stream.read(&mut buf) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(());
                    }
                    let now = self.now();
                    self.session.handle_input(&buf[..n], now);
                }
            }
        }
    }

    /// Answers one event. An error is a broken invariant between the session and this
    /// driver: the connection ends, and nothing unsettled is acknowledged.
    async fn answer(&mut self, event: LmtpEvent) -> io::Result<()> {
        match event {
            LmtpEvent::MailFrom { sender } => {
                // A new transaction: recipients of an earlier one (after RSET or LHLO) go.
                self.abort_message().await;
                self.sender = sender;
            }
            LmtpEvent::Recipient { address } => match self.open_recipient(address).await {
                Ok(recipient) => {
                    self.recipients.push(recipient);
                    self.session.recipient_accepted()?;
                }
                Err(error) => {
                    crate::metrics::lmtp_delivery(match error {
                        RecipientError::UnknownUser => crate::metrics::Delivery::Permanent,
                        RecipientError::Temporary => crate::metrics::Delivery::Temporary,
                    });
                    self.session.recipient_rejected(error)?;
                }
            },
            LmtpEvent::MessageStart { sender, recipients } => {
                let ours: Vec<&str> = self.recipients.iter().map(|r| r.address.as_str()).collect();
                if ours != recipients {
                    return Err(io::Error::other("LMTP recipients out of step with the session"));
                }
                self.sender = sender;
                self.headers_pending = true;
                self.size = 0;
                self.message_recipients = recipients;
                let incoming = Incoming {
                    envelope: Envelope {
                        sender: (!self.sender.is_empty()).then(|| self.sender.clone()),
                    },
                    ..Incoming::default()
                };
                self.each_sink(move |_, sink| match sink.begin(&incoming)? {
                    Begun::New => Ok(()),
                    // Without a key nothing is ever stored already.
                    Begun::AlreadyStored => Err(pop3_storage::Error::Io {
                        op: "begin",
                        path: std::path::PathBuf::new(),
                        source: io::Error::other("a message without a key is already stored"),
                    }),
                })
                .await;
            }
            LmtpEvent::MessageData(chunk) => self.write(chunk).await,
            LmtpEvent::MessageAborted => self.abort_message().await,
            LmtpEvent::MessageEnd => {
                if self.headers_pending {
                    // An empty message: the headers alone.
                    self.write(Bytes::new()).await;
                }
                self.seal_all().await;
                // One result per recipient of the message, whatever happened to the sinks (a
                // storage call that panicked loses them): only a sink still held after the
                // seal is a durable copy.
                let recipients = std::mem::take(&mut self.message_recipients);
                let results: Vec<Delivery> = recipients
                    .iter()
                    .enumerate()
                    .map(|(i, address)| match self.recipients.get(i) {
                        Some(r) if r.address == *address && r.sink.is_some() => Delivery::Stored,
                        _ => Delivery::TemporaryFailure,
                    })
                    .collect();
                for (address, result) in recipients.iter().zip(&results) {
                    crate::metrics::lmtp_delivery(match result {
                        Delivery::Stored => crate::metrics::Delivery::Accepted,
                        _ => crate::metrics::Delivery::Temporary,
                    });
                    tracing::info!(
                        peer = %self.peer,
                        from = %self.sender,
                        to = %address,
                        size = self.size,
                        stored = *result == Delivery::Stored,
                        "LMTP delivery"
                    );
                }
                self.recipients.clear();
                self.session.delivered(&results)?;
            }
        }
        Ok(())
    }

    /// Looks a recipient up and opens a sink into its maildrop, on the blocking pool.
    async fn open_recipient(&mut self, address: String) -> Result<Recipient, RecipientError> {
        let users = Arc::clone(&self.shared.auth.read().unwrap_or_else(|e| e.into_inner()));
        let backend = Arc::clone(&self.shared.backend);
        let peer = self.peer.clone();
        let task = tokio::task::spawn_blocking(move || {
            let user = match lookup(users.as_ref(), &address) {
                Ok(Some(user)) => user,
                Ok(None) => {
                    tracing::info!(%peer, to = %address, "LMTP: unknown recipient");
                    return Err(RecipientError::UnknownUser);
                }
                Err(reason) => {
                    tracing::warn!(%peer, to = %address, %reason, "LMTP: user lookup failed");
                    return Err(RecipientError::Temporary);
                }
            };
            let storage_user = User { name: user.name.clone(), home: user.home.clone() };
            match backend.sink(&storage_user) {
                Ok(sink) => Ok(Recipient { address, user: user.name, sink: Some(sink) }),
                // The name cannot have a maildrop (%h without a home...): as unknown.
                Err(error @ pop3_storage::Error::InvalidUser(_)) => {
                    tracing::warn!(%peer, to = %address, %error, "LMTP: recipient has no maildrop");
                    Err(RecipientError::UnknownUser)
                }
                Err(error) => {
                    tracing::warn!(%peer, to = %address, %error, "LMTP: cannot open the maildrop");
                    Err(RecipientError::Temporary)
                }
            }
        });
        task.await.unwrap_or(Err(RecipientError::Temporary))
    }

    /// Writes `chunk` to every recipient's message, after its headers if they are still
    /// to be written.
    async fn write(&mut self, chunk: Bytes) {
        self.size += chunk.len() as u64;
        let headers = std::mem::take(&mut self.headers_pending);
        let crlf = headers && uses_crlf(&chunk);
        let sender = self.sender.clone();
        self.each_sink(move |address, sink| {
            if headers {
                sink.write(&delivery_headers(&sender, address, crlf))?;
            }
            sink.write(&chunk)
        })
        .await;
    }

    /// Stages every recipient's copy, seals it and waits until it is settled: afterwards a
    /// recipient that still has its sink has its copy on stable storage. The copies are made
    /// durable side by side (a few at a time), so that a message for many recipients costs
    /// about one sync, not one per recipient.
    async fn seal_all(&mut self) {
        let mut recipients = std::mem::take(&mut self.recipients);
        let peer = self.peer.clone();
        let task = tokio::task::spawn_blocking(move || {
            for group in recipients.chunks_mut(SEALS_IN_FLIGHT) {
                std::thread::scope(|scope| {
                    for r in group.iter_mut().filter(|r| r.sink.is_some()) {
                        let peer = &peer;
                        scope.spawn(move || {
                            let Some(sink) = r.sink.as_mut() else { return };
                            if let Err(error) = seal(sink.as_mut()) {
                                tracing::warn!(%peer, to = %r.address, user = %r.user, %error, "LMTP: storing failed");
                                sink.abort();
                                r.sink = None;
                            }
                        });
                    }
                });
            }
            recipients
        });
        self.recipients = task.await.unwrap_or_default();
    }

    /// Abandons the message in progress and the transaction's recipients.
    async fn abort_message(&mut self) {
        let mut recipients = std::mem::take(&mut self.recipients);
        if recipients.iter().any(|r| r.sink.is_some()) {
            let _ = tokio::task::spawn_blocking(move || {
                for sink in recipients.iter_mut().filter_map(|r| r.sink.as_mut()) {
                    sink.abort();
                }
            })
            .await;
        }
        self.headers_pending = false;
    }

    /// Runs `op` on every recipient's sink that has not failed, on the blocking pool; a
    /// recipient whose call fails is aborted and will be answered `451 4.3.0`.
    async fn each_sink<F>(&mut self, op: F)
    where
        F: Fn(&str, &mut dyn Sink) -> pop3_storage::Result<()> + Send + 'static,
    {
        let mut recipients = std::mem::take(&mut self.recipients);
        if recipients.iter().all(|r| r.sink.is_none()) {
            self.recipients = recipients;
            return;
        }
        let peer = self.peer.clone();
        let task = tokio::task::spawn_blocking(move || {
            for r in &mut recipients {
                let Some(sink) = r.sink.as_mut() else { continue };
                if let Err(error) = op(&r.address, sink.as_mut()) {
                    tracing::warn!(%peer, to = %r.address, user = %r.user, %error, "LMTP: storing failed");
                    sink.abort();
                    r.sink = None;
                }
            }
            recipients
        });
        // A panic in a storage call: every recipient of this message fails (temporarily).
        self.recipients = task.await.unwrap_or_default();
    }
}

/// Copies of one message made durable at the same time.
const SEALS_IN_FLIGHT: usize = 16;

/// Stages the begun message and waits until its batch is settled: `Ok` means durable.
fn seal(sink: &mut dyn Sink) -> pop3_storage::Result<()> {
    sink.stage()?;
    for settled in sink.finish()? {
        settled.result?;
    }
    Ok(())
}

/// The user a recipient address names, tried in this order: the whole address, the whole
/// address in lower case, its local part, its local part in lower case (an MTA sends
/// `Alice@Example.test` for the users file's `alice`; Dovecot's LMTP lower-cases too). `Err`
/// when the users backend cannot answer now.
fn lookup(users: &dyn Authenticator, address: &str) -> Result<Option<UserInfo>, String> {
    let local = address.rsplit_once('@').map(|(local, _)| local);
    let mut tried: Vec<String> = Vec::with_capacity(4);
    for name in std::iter::once(address).chain(local) {
        for name in [name.to_owned(), name.to_lowercase()] {
            if tried.contains(&name) || !crate::valid_username(&name) {
                continue;
            }
            match users.user(&name) {
                Ok(Some(user)) => return Ok(Some(user)),
                Ok(None) | Err(AuthError::Rejected) => {}
                Err(AuthError::Temporary(reason)) => return Err(reason),
            }
            tried.push(name);
        }
    }
    Ok(None)
}

/// Whether the message's first line ends with CRLF, so that the added headers match it.
fn uses_crlf(chunk: &[u8]) -> bool {
    match memchr_lf(chunk) {
        Some(i) => i > 0 && chunk[i - 1] == b'\r',
        // No line end yet (or an empty message): LMTP's own CRLF.
        None => true,
    }
}

fn memchr_lf(chunk: &[u8]) -> Option<usize> {
    chunk.iter().position(|&b| b == b'\n')
}

/// `Return-Path: <sender>` and `Delivered-To: recipient`, as Dovecot's LMTP server (2.3
/// and later: the recipient without brackets, on every copy) puts them on top of each copy
/// (RFC 5321 §4.4: the delivering server records the reverse-path; Delivered-To, as
/// Postfix's and Dovecot's delivery agents write it, lets loops be found).
pub fn delivery_headers(sender: &str, recipient: &str, crlf: bool) -> Vec<u8> {
    let eol = if crlf { "\r\n" } else { "\n" };
    format!("Return-Path: <{sender}>{eol}Delivered-To: {recipient}{eol}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_found_by_address_then_local_part_then_lower_case() {
        let users =
            crate::PasswdFile::parse("alice:{PLAIN}x\ncarol@example.test:{PLAIN}x\nbob:{PLAIN}x\n")
                .unwrap();
        let found = |address: &str| lookup(&users, address).unwrap().map(|u| u.name);
        assert_eq!(found("alice@example.test").as_deref(), Some("alice"));
        assert_eq!(found("Alice@Example.TEST").as_deref(), Some("alice"));
        assert_eq!(found("alice").as_deref(), Some("alice"));
        assert_eq!(found("carol@example.test").as_deref(), Some("carol@example.test"));
        assert_eq!(found("CAROL@example.test").as_deref(), Some("carol@example.test"));
        assert_eq!(found("carol"), None);
        assert_eq!(found("nobody@example.test"), None);
        assert_eq!(found("../etc@example.test"), None);
    }

    #[test]
    fn headers_follow_the_line_ends_of_the_message() {
        assert_eq!(
            delivery_headers("a@x", "b@y", true),
            b"Return-Path: <a@x>\r\nDelivered-To: b@y\r\n"
        );
        assert_eq!(delivery_headers("", "b@y", false), b"Return-Path: <>\nDelivered-To: b@y\n");
        assert!(uses_crlf(b"Subject: x\r\n"));
        assert!(!uses_crlf(b"Subject: x\n"));
        assert!(!uses_crlf(b"\n"));
        assert!(uses_crlf(b"Subject: no end yet"));
    }
}
