//! A small, bounded pool of blocking connections.
//!
//! Sessions borrow a connection for one short step (a snapshot, a few chunks of a body, a
//! commit, a delivery batch) and give it back, so a node serves thousands of POP3 sessions
//! with a handful of database connections. The pool is a stack of idle clients under a
//! mutex, a count of clients out, and a condition variable to wait on when all are out, up to
//! a timeout. Deliberately this small: the pool crates for the blocking client start
//! background threads for reaping and minimum-idle upkeep that a POP3 node does not need,
//! and checking health costs nothing here because rust-postgres reports a connection that
//! broke (`Client::is_closed`); a broken or mid-transaction client is never given back.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::conn::Conn;

use super::connect::{Connector, PgError};

/// The pool's shared state.
#[derive(Debug)]
pub(crate) struct Pool {
    connector: Connector,
    max: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Conn>,
    /// Clients borrowed or being connected.
    out: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("idle", &self.idle.len()).field("out", &self.out).finish()
    }
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum CheckoutError {
    /// Every connection stayed busy for the whole wait.
    Exhausted { max: usize, wait: Duration },
    /// A new connection failed.
    Connect(PgError),
}

impl std::fmt::Display for CheckoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckoutError::Exhausted { max, wait } => write!(
                f,
                "all {max} PostgreSQL connections stayed busy for {} s ([postgresql] pool_size)",
                wait.as_secs()
            ),
            CheckoutError::Connect(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CheckoutError {}

impl CheckoutError {
    /// Both pass by themselves.
    pub(crate) fn into_storage(self, op: &'static str) -> crate::Error {
        let temporary = match &self {
            CheckoutError::Exhausted { .. } => true,
            CheckoutError::Connect(e) => e.is_temporary(),
        };
        crate::Error::Database { op, temporary, source: Box::new(self) }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update is a push, a pop or a counter step: a panic cannot leave it half-done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// A pool of at most `max` connections (at least one); a borrower waits at most `wait`.
    pub(crate) fn new(connector: Connector, max: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            connector,
            max: max.max(1),
            wait,
            state: Mutex::new(State { idle: Vec::new(), out: 0 }),
            freed: Condvar::new(),
        })
    }

    /// Borrows a connection: an idle one that is still open, else a new one while fewer than
    /// `max` exist, else the first one given back within the wait.
    pub(crate) fn get(self: &Arc<Self>) -> Result<Pooled, CheckoutError> {
        let deadline = Instant::now() + self.wait;
        let mut state = lock(&self.state);
        loop {
            while let Some(client) = state.idle.pop() {
                if !client.is_closed() {
                    state.out += 1;
                    return Ok(Pooled { client: Some(client), pool: self.clone() });
                }
            }
            if state.out < self.max {
                state.out += 1;
                drop(state);
                // Connect outside the lock: a slow server must not stall the other borrowers.
                return match self.connector.connect() {
                    Ok(client) => {
                        Ok(Pooled { client: Some(Conn::new(client)), pool: self.clone() })
                    }
                    Err(e) => {
                        self.release(None);
                        Err(CheckoutError::Connect(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CheckoutError::Exhausted { max: self.max, wait: self.wait });
            }
            state =
                self.freed.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn release(&self, client: Option<Conn>) {
        let mut state = lock(&self.state);
        state.out -= 1;
        if let Some(client) = client {
            state.idle.push(client);
        }
        drop(state);
        self.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut lock(&self.state).idle);
        if !idle.is_empty() {
            super::off_runtime(move || drop(idle));
        }
    }
}

/// A borrowed connection, given back on drop unless it broke or was [`discard`]ed.
///
/// [`discard`]: Pooled::discard
pub(crate) struct Pooled {
    client: Option<Conn>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled").finish_non_exhaustive()
    }
}

impl Pooled {
    /// Closes this connection instead of giving it back (its session state is unknown, e.g.
    /// a transaction whose end failed).
    pub(crate) fn discard(mut self) {
        self.client = None; // Drop releases the slot without a client
    }
}

impl Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.client.as_ref().expect("a pooled client is present until drop")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.client.as_mut().expect("a pooled client is present until drop")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let client = self.client.take().filter(|c| !c.is_closed());
        self.pool.release(client);
    }
}
