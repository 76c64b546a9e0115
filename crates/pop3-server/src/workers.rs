//! A bounded pool for the expensive part of a login: password hashes and SCRAM key derivation.
//!
//! A memory-hard hash (Argon2id's default takes 19 MiB) run on tokio's blocking pool, up to
//! 512 threads with nothing capping how many run at once, lets an attacker who opens
//! connections turn wrong passwords into gigabytes of RSS. Here a fixed number of threads
//! (about one per core) run the checks, each reusing its hash memory (see `passwd.rs`), and
//! a bounded queue holds the checks waiting for a thread. When the queue is full a login is
//! refused at once with `-ERR [SYS/TEMP]` rather than waiting without bound: memory is
//! `threads x hash memory`, whatever the number of attackers.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Threads for checks that wait on another server (LDAP binds, SQL queries, token
/// introspection): they mostly wait, so more of them than cores, as many as an LDAP
/// connection pool holds by default; each waits at most its backend's timeout.
pub(crate) const REMOTE_CHECK_THREADS: usize = 8;

/// The pool is full: the caller answers `-ERR [SYS/TEMP]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

/// Worker threads and their bounded queue. Dropping the pool lets the threads finish the
/// queued jobs and exit.
#[derive(Debug)]
pub(crate) struct AuthWorkers {
    queue: SyncSender<Job>,
    threads: usize,
}

impl AuthWorkers {
    /// `threads` workers (0: one per available core) taking jobs from a queue of `queue`
    /// waiting jobs.
    pub(crate) fn new(threads: usize, queue: usize) -> Self {
        let threads = match threads {
            0 => thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("pop3-auth-{n}"))
                .spawn(move || work(&rx))
                .expect("spawn a password-check thread");
        }
        Self { queue: tx, threads }
    }

    /// How many checks run at once.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job` on a worker and waits for its result; [`Busy`] at once if the queue is
    /// full (or the job panicked, which is logged by the thread).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        match self.queue.try_send(job) {
            Ok(()) => rx.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, never while running one.
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // the pool was dropped
        };
        // A panicking check must not take a worker away for good.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password check panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn runs_jobs_and_refuses_beyond_the_queue() {
        let pool = Arc::new(AuthWorkers::new(1, 2));
        assert_eq!(pool.threads(), 1);
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        // Block the only worker, fill the queue, then one more is refused at once.
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        let first = {
            let (pool, started) = (Arc::clone(&pool), Arc::clone(&started));
            tokio::spawn(async move {
                pool.run(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    blocked.recv().unwrap();
                })
                .await
            })
        };
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.run(move || i).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.run(|| 0).await, Err(Busy), "queue full: refused, not queued");
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));
        for (i, q) in queued.into_iter().enumerate() {
            assert_eq!(q.await.unwrap(), Ok(i));
        }
        // A panicking job is reported as Busy and the worker survives.
        assert_eq!(pool.run(|| panic!("boom")).await, Err::<(), _>(Busy));
        assert_eq!(pool.run(|| 1).await, Ok(1));
    }
}
