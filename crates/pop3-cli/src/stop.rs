//! Stopping a fetch at a batch boundary: SIGTERM or SIGINT asks the retriever to send no
//! more `RETR`s; the messages already asked for (at most the pipelining window) are stored
//! and recorded, what the policy says is deleted, and `QUIT` commits the deletions. Nothing
//! is lost or fetched twice: the rest is still on the server, unrecorded, for the next run.
//! A second signal exits at once, which is also safe (the ledger is crash-safe): only the
//! messages in flight are downloaded again next time.
//!
//! `pop3 fetch` and `pop3 fetch --daemon` both behave so; the daemon catches SIGHUP as well
//! (`daemon.rs`).
//!
//! The flags are set by the signal handler itself (signal-hook), not by a task reading
//! tokio's signal streams: such a task runs only when the single-threaded runtime turns to
//! its other tasks, which a download that always finds data waiting delays by seconds. The
//! retriever looks at the flag between messages, so it stops within one message of the
//! signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Whether a stop was asked for, and by which signal; cheap to clone and to look at between
/// messages.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Set by either signal; it also arms the second signal's exit.
    any: Arc<AtomicBool>,
    /// Set by SIGTERM (else SIGINT asked), for the exit code.
    term: Arc<AtomicBool>,
}

impl Stop {
    /// A stop nothing asks for (commands that download nothing).
    pub fn never() -> Self {
        Self::default()
    }

    /// A stop that SIGTERM and SIGINT ask for, from now on; a second one of them makes the
    /// process exit at once, with the code [`exit_code`](Self::exit_code) gives.
    pub fn on_signals() -> std::io::Result<Self> {
        let stop = Self::default();
        for (number, code) in [(SIGTERM, 143), (SIGINT, 130)] {
            // The exit first: it looks at the flag before this signal sets it (signal-hook
            // runs the actions in the order registered).
            signal_hook::flag::register_conditional_shutdown(number, code, stop.any.clone())?;
            signal_hook::flag::register(number, stop.any.clone())?;
        }
        signal_hook::flag::register(SIGTERM, stop.term.clone())?;
        Ok(stop)
    }

    /// True once a stop was asked for.
    pub fn requested(&self) -> bool {
        self.any.load(Ordering::SeqCst)
    }

    /// The exit code of a run a signal stopped: 128 + the signal's number, as a shell
    /// reports a process a signal killed (143 for SIGTERM, 130 for SIGINT).
    pub fn exit_code(&self) -> Option<u8> {
        match (self.requested(), self.term.load(Ordering::SeqCst)) {
            (false, _) => None,
            (true, true) => Some(143),
            (true, false) => Some(130),
        }
    }
}

/// SIGTERM and SIGINT as a tokio stream, to wake a task that sleeps (the daemon between
/// polls) and to say that the stop was heard; the [`Stop`] flags are set already.
#[derive(Debug)]
pub struct Stopping {
    term: Signal,
    int: Signal,
}

impl Stopping {
    /// Catches SIGTERM and SIGINT from now on.
    pub fn catch() -> std::io::Result<Self> {
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Waits for the next SIGTERM or SIGINT and says on standard error what it does.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        eprintln!(
            "pop3: stopping once the messages already asked for are stored \
             (a second signal exits at once)"
        );
    }
}

/// For a one-shot `pop3 fetch`: a [`Stop`] the signals ask for, and their message.
pub fn catch() -> std::io::Result<Stop> {
    let stop = Stop::on_signals()?;
    let mut stopping = Stopping::catch()?;
    tokio::spawn(async move {
        loop {
            stopping.recv().await;
        }
    });
    Ok(stop)
}
