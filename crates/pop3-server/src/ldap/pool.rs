//! The connections to the directory, and the small runtime they run on.
//!
//! `ldap3` is asynchronous; the server asks for password checks on plain threads (the bounded
//! password-check pool, `pop3d deliver`), not inside a runtime. So the backend owns one
//! current-thread tokio runtime on a thread of its own: a check is spawned there and the
//! calling thread waits for its answer, never longer than a bound, whatever the directory does.
//!
//! A bind changes the identity of the connection it is sent on (RFC 4511 §4.2), so a
//! connection is leased to one check at a time and the pool remembers who it is bound as.
//! At most `pool_size` connections exist; a check that finds none free waits up to the timeout.
//! A connection that failed in any way (I/O, timeout, an unexpected result) is dropped, not
//! returned, and a new one is made when needed.

use std::future::Future;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use tokio::sync::{oneshot, Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;

use crate::AuthError;

/// A current-thread runtime on a thread of its own, stopped when dropped.
pub(super) struct Executor {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Executor {
    pub(super) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new().name("ldap".into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Runs `work` on the runtime and waits for it, from any thread (in a runtime or not),
    /// at most `bound`: past it the work is cancelled and the answer is temporary.
    pub(super) fn run<T: Send + 'static>(
        &self,
        bound: Duration,
        work: impl Future<Output = Result<T, AuthError>> + Send + 'static,
    ) -> Result<T, AuthError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let task = self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        match rx.recv_timeout(bound) {
            Ok(answer) => answer,
            Err(_) => {
                task.abort();
                Err(AuthError::Temporary(format!(
                    "LDAP: no answer within {} s",
                    bound.as_secs_f32()
                )))
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// Who a connection is bound as: a bind changes it, so the next check knows whether it must
/// bind again before searching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    /// Nothing bound yet, or an anonymous bind.
    Anonymous,
    /// The service account (`search_dn`).
    Service,
    /// A user whose password was checked.
    User,
}

/// One connection and the task that drives it; dropping it closes the socket.
pub(super) struct Conn {
    pub(super) ldap: Ldap,
    pub(super) bound: Bound,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// At most `size` connections to `url`, made on demand.
pub(super) struct Pool {
    url: String,
    starttls: bool,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("url", &self.url).finish_non_exhaustive()
    }
}

/// A connection leased to one check. Dropped, it is closed; [`Lease::keep`] gives it back.
pub(super) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    pub(super) fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a lease holds its connection until kept")
    }

    /// Returns the connection to the pool: the check ended with an answer from the directory.
    pub(super) fn keep(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
    }
}

impl Pool {
    pub(super) fn new(
        url: String,
        starttls: bool,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
        size: usize,
    ) -> Self {
        Self {
            url,
            starttls,
            tls,
            timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size),
        }
    }

    /// A connection of the pool, or a new one; waits at most the timeout for a free one. The
    /// error says why none could be had (every one busy, or the directory not reached).
    pub(super) async fn lease(&self) -> Result<Lease<'_>, String> {
        let permit = tokio::time::timeout(self.timeout, self.permits.acquire())
            .await
            .map_err(|_| {
                format!(
                    "LDAP: every pooled connection stayed busy for {} s",
                    self.timeout.as_secs()
                )
            })?
            .expect("the pool's semaphore is never closed");
        let reused = loop {
            let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match conn {
                // The directory closed it while it was idle (restart, idle timeout).
                Some(mut conn) => {
                    if !conn.ldap.is_closed() {
                        break Some(conn);
                    }
                }
                None => break None,
            }
        };
        let conn = match reused {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        Ok(Lease { pool: self, conn: Some(conn), _permit: permit })
    }

    /// A new connection: TCP, then StartTLS or the LDAPS handshake, within the timeout. The
    /// error says which step failed.
    pub(super) async fn connect(&self) -> Result<Conn, String> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls)
            .set_config(Arc::clone(&self.tls));
        let connecting = LdapConnAsync::with_settings(settings, &self.url);
        let (conn, ldap) = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(format!("connecting to {}: {}", self.url, describe(&e))),
            Err(_) => {
                return Err(format!(
                    "connecting to {}: no answer within {} s",
                    self.url,
                    self.timeout.as_secs()
                ))
            }
        };
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(Conn { ldap, bound: Bound::Anonymous, driver })
    }
}

/// An `ldap3` error in words, its causes included (a certificate error is a cause of an I/O
/// error).
pub(super) fn describe(error: &ldap3::LdapError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
