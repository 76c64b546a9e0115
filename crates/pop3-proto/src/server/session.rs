//! The session value: buffers, state, timers, and the loop that executes commands in order.

use alloc::collections::VecDeque;
use alloc::string::String;
use core::fmt;
use core::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::body::BodyStream;
use super::config::{Greeting, ServerConfig};
use super::event::{CloseReason, Event};
use super::snapshot::Snapshot;
use crate::sasl::SaslServer;
use crate::{CommandDecoder, RespCode, StatusLine};

/// One client connection's POP3 server state; see the [module docs](super).
#[derive(Debug)]
pub struct ServerSession {
    pub(super) config: ServerConfig,
    pub(super) greeting: Greeting,
    pub(super) decoder: CommandDecoder,
    pub(super) input: BytesMut,
    pub(super) output: BytesMut,
    pub(super) events: VecDeque<Event>,
    pub(super) state: State,
    pub(super) tls_active: bool,
    pub(super) utf8: bool,
    pub(super) language: usize,
    pub(super) failed_logins: u32,
    pub(super) bad_commands: u32,
    /// Command lines executed or rejected so far, for the embedder's session log.
    pub(super) commands: u64,
    /// Command and SASL lines read before login, against
    /// [`ServerConfig::max_commands_before_login`].
    pub(super) lines_before_login: u32,
    /// When the session started (the greeting), for [`ServerConfig::login_deadline`].
    pub(super) started: Duration,
    pub(super) last_activity: Duration,
    pub(super) close_reason: Option<CloseReason>,
}

/// The session's state, with what each state needs to hold.
#[derive(Debug)]
pub(super) enum State {
    /// AUTHORIZATION (RFC 1939 §4), with the name of a pending USER.
    Authorization { user: Option<String> },
    /// Waiting for the embedder to answer [`Event::Authenticate`],
    /// [`Event::ScramKeysNeeded`] or [`Event::SaslFailed`]; a SASL exchange that may go on is
    /// kept. `failed`: the session has already judged the credentials wrong, so only a
    /// rejection is a valid answer; `cancelled`: the client cancelled the exchange.
    AuthPending { sasl: Option<SaslServer>, failed: bool, cancelled: bool },
    /// A SASL exchange (RFC 5034 §4), waiting for the client's next line.
    Sasl { server: SaslServer },
    /// STLS accepted, waiting for the embedder's TLS handshake (RFC 2595 §4).
    StlsPending,
    /// TRANSACTION (RFC 1939 §5).
    Transaction(Transaction),
    /// UPDATE (RFC 1939 §6), waiting for the embedder's commit.
    Update { remaining: u32 },
    /// The session is over.
    Closed,
}

/// TRANSACTION state's data.
#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) snapshot: Snapshot,
    /// The highest message number accessed, for LAST (RFC 1460).
    pub(super) last_accessed: u32,
    /// A RETR or TOP body being streamed.
    pub(super) body: Option<BodyStream>,
}

/// The state's name, for logs and for embedders that need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// AUTHORIZATION: before login.
    Authorization,
    /// Waiting for an answer to [`Event::Authenticate`], [`Event::ScramKeysNeeded`] or
    /// [`Event::SaslFailed`].
    AuthPending,
    /// A SASL exchange is in progress.
    Sasl,
    /// Waiting for the TLS handshake after STLS.
    StlsPending,
    /// TRANSACTION: logged in.
    Transaction,
    /// UPDATE: committing deletions after QUIT.
    Update,
    /// Closed.
    Closed,
}

/// An answer method was called in a state that did not ask for it (an embedder bug); nothing
/// was changed.
///
/// With `std`, it converts into an [`std::io::Error`] (kind `Other`), so that a driver over
/// `std::io` or tokio answers with `?` and ends the connection in the one place that handles
/// its I/O errors, instead of converting at every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongState;

impl fmt::Display for WrongState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the session did not ask for this answer")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WrongState {}

#[cfg(feature = "std")]
impl From<WrongState> for std::io::Error {
    fn from(error: WrongState) -> Self {
        std::io::Error::other(error)
    }
}

/// The commit did not remove every message it was asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitError;

impl ServerSession {
    /// A new session; the greeting is already in the output. `now` is the embedder's
    /// monotonic clock, in any epoch, used for every later time argument.
    pub fn new(config: ServerConfig, greeting: Greeting, now: Duration) -> Self {
        let mut session = Self {
            decoder: CommandDecoder::new(config.limits),
            config,
            tls_active: greeting.tls_active,
            greeting,
            input: BytesMut::new(),
            output: BytesMut::with_capacity(512),
            events: VecDeque::new(),
            state: State::Authorization { user: None },
            utf8: false,
            language: 0,
            failed_logins: 0,
            bad_commands: 0,
            commands: 0,
            lines_before_login: 0,
            started: now,
            last_activity: now,
            close_reason: None,
        };
        let text = if session.config.apop {
            alloc::format!("POP3 server ready {}", session.greeting.apop_timestamp)
        } else {
            String::from("POP3 server ready")
        };
        session.reply(StatusLine::ok(text));
        session
    }

    /// Feeds bytes read from the client and executes every complete command it can, in order.
    ///
    /// Afterwards, poll [`take_output`](Self::take_output) and [`poll_event`](Self::poll_event):
    /// this call may have produced replies and events. Bytes fed while STLS is pending are
    /// discarded: plaintext sent after STLS must never be executed after the upgrade.
    pub fn handle_input(&mut self, data: &[u8], now: Duration) {
        match self.state {
            State::Closed | State::StlsPending => return,
            _ => {}
        }
        // Only a completed line is activity (RFC 1939 §3 speaks of commands): a client that
        // trickles bytes without ever ending a line must not hold its connection forever.
        if data.contains(&b'\n') {
            self.last_activity = now;
        }
        self.input.extend_from_slice(data);
        self.process();
        // What is left is waiting behind a busy session. A client that keeps sending while its
        // replies pile up unread is flooding; the buffer stays bounded.
        if self.input.len() > self.input_hard_limit() {
            self.reply(StatusLine::err("too much pipelined input"));
            self.close(CloseReason::InputFlood);
        }
    }

    /// True while the session can take more input. When false, stop reading from the client
    /// until the session has caught up (after [`take_output`](Self::take_output) or an answer
    /// to an event). Reads should be bounded (a few KiB): input left waiting beyond four times
    /// the longest line limit ends the session with [`CloseReason::InputFlood`].
    pub fn wants_input(&self) -> bool {
        !matches!(self.state, State::Closed | State::StlsPending)
            && self.input.len() < self.input_soft_limit()
    }

    /// Takes everything the session wants sent, in order. Call after every other call.
    ///
    /// Taking the output releases back-pressure: the session then executes commands that were
    /// waiting, so more output may be ready right after; call again until it is empty.
    pub fn take_output(&mut self) -> Bytes {
        let out = self.output.split().freeze();
        self.process();
        out
    }

    /// True if output is waiting to be taken.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// How many octets of output are waiting to be taken (for an embedder that counts what
    /// an answer produced without sending it yet).
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// The next event for the embedder to answer. Poll after every call that feeds the session.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called (same clock as the
    /// `now` arguments), or `None` once closed. Poll after every call: activity moves it.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let idle = match self.state {
            State::Closed => return None,
            State::Transaction(_) | State::Update { .. } => self.config.idle_timeout_transaction,
            _ => self.config.idle_timeout_authorization,
        };
        let idle = self.last_activity + idle;
        Some(self.login_deadline().map_or(idle, |deadline| deadline.min(idle)))
    }

    /// The absolute time by which the client must have logged in; `None` once it has, while
    /// the session waits for the embedder (a login being checked, a TLS handshake: its answer
    /// comes first, then the deadline applies again), or without a
    /// [`ServerConfig::login_deadline`].
    fn login_deadline(&self) -> Option<Duration> {
        match self.state {
            State::Authorization { .. } | State::Sasl { .. } => {
                self.config.login_deadline.map(|d| self.started + d)
            }
            _ => None,
        }
    }

    /// Tells the session the time. Past the idle deadline it closes without UPDATE (RFC 1939
    /// §3: nothing is deleted); while it is busy (waiting for the embedder or streaming a body)
    /// the deadline moves instead, since the client is not the one keeping it waiting.
    pub fn handle_timeout(&mut self, now: Duration) {
        let Some(deadline) = self.poll_timeout() else { return };
        if now < deadline {
            return;
        }
        if self.is_busy() {
            self.last_activity = now;
            return;
        }
        if self.login_deadline().is_some_and(|d| now >= d) {
            self.reply(
                StatusLine::err("login took too long, closing").with_code(RespCode::SysTemp),
            );
            self.close(CloseReason::LoginDeadline);
            return;
        }
        self.reply(StatusLine::err("autologout: idle for too long"));
        self.close(CloseReason::IdleTimeout);
    }

    /// True once the session is over: send the remaining output, then close the connection.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// The current state.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Authorization { .. } => Phase::Authorization,
            State::AuthPending { .. } => Phase::AuthPending,
            State::Sasl { .. } => Phase::Sasl,
            State::StlsPending => Phase::StlsPending,
            State::Transaction(_) => Phase::Transaction,
            State::Update { .. } => Phase::Update,
            State::Closed => Phase::Closed,
        }
    }

    /// How many command lines the session has executed or rejected so far (SASL continuation
    /// lines are not counted): for the embedder's session log.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// True once TLS is active (implicit, or after STLS).
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// Executes complete commands, in order, while nothing holds the session back: an
    /// unanswered event, a body being streamed, or output above the high-water mark.
    pub(super) fn process(&mut self) {
        while !self.is_busy() && self.output.len() < self.config.output_high_water {
            let executed = match self.state {
                State::Sasl { .. } => self.next_sasl_line(),
                State::Authorization { .. } | State::Transaction(_) => self.next_command(),
                _ => false,
            };
            if !executed {
                break;
            }
        }
    }

    /// Decodes and executes one command; false if no complete line is buffered.
    fn next_command(&mut self) -> bool {
        let decoded = self.decoder.decode(&self.input);
        let consumed = decoded.consumed;
        let outcome = decoded.outcome.map(|c| c.map(crate::Command::into_owned));
        self.input.advance(consumed);
        match outcome {
            Ok(None) => false,
            _ if self.over_login_budget() => true,
            Ok(Some(command)) => {
                self.commands += 1;
                self.execute(command);
                true
            }
            Err(e) => {
                self.commands += 1;
                self.bad_command(&alloc::format!("{e}"));
                true
            }
        }
    }

    /// Counts a line read before login; past the budget, answers and closes (true). CAPA and
    /// the like are cheap one by one, but a client that never logs in has no use for more.
    pub(super) fn over_login_budget(&mut self) -> bool {
        if !matches!(self.state, State::Authorization { .. } | State::Sasl { .. }) {
            return false;
        }
        self.lines_before_login = self.lines_before_login.saturating_add(1);
        if self.lines_before_login <= self.config.max_commands_before_login {
            return false;
        }
        self.reply(StatusLine::err("too many commands before login, closing"));
        self.close(CloseReason::TooManyCommandsBeforeLogin);
        true
    }

    /// True while the session waits for something other than the client.
    pub(super) fn is_busy(&self) -> bool {
        match &self.state {
            State::AuthPending { .. }
            | State::StlsPending
            | State::Update { .. }
            | State::Closed => true,
            State::Transaction(t) => t.body.is_some(),
            State::Authorization { .. } | State::Sasl { .. } => false,
        }
    }

    pub(super) fn reply(&mut self, line: StatusLine<'_>) {
        line.encode(&mut self.output);
    }

    pub(super) fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.close_reason = Some(reason);
        self.input.clear();
    }

    /// Counts a bad command and answers it; closes after too many (a client that keeps sending
    /// garbage is not a POP3 client).
    pub(super) fn bad_command(&mut self, reason: &str) {
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            self.reply(StatusLine::err(alloc::format!("{reason}; too many bad commands, closing")));
            self.close(CloseReason::TooManyBadCommands);
        } else {
            self.reply(StatusLine::err(reason));
        }
    }

    /// Plaintext passwords are allowed under TLS, or where the embedder allows them.
    pub(super) fn plaintext_allowed(&self) -> bool {
        self.tls_active || self.config.plaintext_without_tls
    }

    fn input_soft_limit(&self) -> usize {
        let limits = &self.config.limits;
        limits.sasl_line.max(limits.command_line).max(4096)
    }

    fn input_hard_limit(&self) -> usize {
        4 * self.input_soft_limit()
    }
}
