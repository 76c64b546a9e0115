//! The LMTP server session: command sequencing, per-recipient replies, the DATA stream.

use alloc::borrow::Cow;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::command::{parse_command, LmtpCommand, LmtpCommandError};
use super::reply::Reply;
use crate::dot::DotUnstuffer;
use crate::line::{Frame, LineFramer};
use crate::server::WrongState;

/// Input waiting behind a busy session (a recipient lookup, a delivery) beyond which
/// [`LmtpSession::wants_input`] says stop reading: room for a full pipelined transaction
/// of 100 recipients with long addresses.
const INPUT_SOFT_LIMIT: usize = 64 * 1024;
/// Input beyond which the session ends ([`LmtpCloseReason::InputFlood`]): only an embedder
/// that ignores [`LmtpSession::wants_input`] gets there.
const INPUT_HARD_LIMIT: usize = 4 * INPUT_SOFT_LIMIT;
/// Output not yet taken beyond which commands wait (a client that sends and never reads).
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// An LMTP session's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpConfig {
    /// The name in the greeting and the LHLO reply.
    pub hostname: String,
    /// The largest message accepted, in octets after dot-unstuffing; announced as `SIZE`
    /// (RFC 1870). Default 50 MiB.
    pub max_message_size: u64,
    /// Recipients in one transaction (default 100, RFC 5321 §4.5.3.1.8's minimum); more get
    /// `452 4.5.3`.
    pub max_recipients: usize,
    /// Rejected command lines before the session is closed with `421 4.7.0` (default 20).
    pub max_bad_commands: u32,
    /// Idle time allowed (default 5 minutes, RFC 5321 §4.5.3.2.7's server timeout).
    pub idle_timeout: Duration,
    /// The longest command line, CRLF included (default 512, RFC 5321 §4.5.3.1.4).
    pub command_line: usize,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            max_message_size: 50 << 20,
            max_recipients: 100,
            max_bad_commands: 20,
            idle_timeout: Duration::from_secs(300),
            command_line: 512,
        }
    }
}

/// Something only the embedder can do or needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpEvent {
    /// `MAIL FROM` was accepted: a new transaction starts, and the recipients accepted in an
    /// earlier one (ended by `RSET`, `LHLO` or its `DATA`) are no longer part of it. Nothing
    /// to answer.
    MailFrom {
        /// The reverse-path; empty for the null sender.
        sender: String,
    },
    /// `RCPT TO`: is this a local mailbox? Answer with
    /// [`recipient_accepted`](LmtpSession::recipient_accepted) or
    /// [`recipient_rejected`](LmtpSession::recipient_rejected); until then no further
    /// command is executed (pipelined ones wait, in order).
    Recipient {
        /// The address, without brackets.
        address: String,
    },
    /// `DATA` was accepted (`354` sent): a message for these recipients follows as
    /// [`MessageData`](Self::MessageData) chunks, then [`MessageEnd`](Self::MessageEnd) or
    /// [`MessageAborted`](Self::MessageAborted). Nothing to answer.
    MessageStart {
        /// The reverse-path; empty for the null sender.
        sender: String,
        /// The accepted recipients, in `RCPT` order.
        recipients: Vec<String>,
    },
    /// The next octets of the message, unstuffed, line ends as received. Nothing to answer.
    MessageData(Bytes),
    /// The message will not be delivered (it grew past the size limit, or the session
    /// closed before its end): discard what was staged. The session answers the client.
    MessageAborted,
    /// The message is complete: make it durable for every recipient, then answer with
    /// [`delivered`](LmtpSession::delivered), one result per recipient of
    /// [`MessageStart`](Self::MessageStart).
    MessageEnd,
}

/// Why a recipient is refused at `RCPT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientError {
    /// No such mailbox here: `550 5.1.1`, the MTA bounces.
    UnknownUser,
    /// The recipient cannot be checked or its maildrop opened now (users database down,
    /// maildrop unusable): `451 4.3.0`, the MTA retries.
    Temporary,
}

/// The outcome of a delivery to one recipient, after `DATA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Durable in the recipient's maildrop: `250 2.0.0`.
    Stored,
    /// Not stored (full disk, a locked mbox, a backend error): `451 4.3.0`, the MTA retries.
    TemporaryFailure,
}

/// Why the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmtpCloseReason {
    /// The client sent `QUIT`.
    Quit,
    /// Idle past [`LmtpConfig::idle_timeout`].
    IdleTimeout,
    /// More than [`LmtpConfig::max_bad_commands`] rejected lines.
    TooManyErrors,
    /// Input piled up beyond every bound.
    InputFlood,
}

#[derive(Debug)]
enum State {
    /// Between commands; a transaction may be open.
    Command,
    /// Waiting for the answer to [`LmtpEvent::Recipient`].
    RcptPending {
        address: String,
    },
    /// Receiving the message after `354`.
    Data {
        unstuffer: DotUnstuffer,
        size: u64,
        too_big: bool,
    },
    /// Waiting for [`LmtpSession::delivered`].
    DeliveryPending,
    Closed,
}

/// A mail transaction: `MAIL` seen, recipients accepted so far.
#[derive(Debug)]
struct Transaction {
    sender: String,
    recipients: Vec<String>,
}

/// One LMTP connection's server state (RFC 2033), sans I/O: feed it the client's bytes,
/// send what it outputs, answer its events. See the [module docs](super).
#[derive(Debug)]
pub struct LmtpSession {
    config: LmtpConfig,
    framer: LineFramer,
    input: BytesMut,
    output: BytesMut,
    events: VecDeque<LmtpEvent>,
    state: State,
    greeted: bool,
    transaction: Option<Transaction>,
    bad_commands: u32,
    last_activity: Duration,
    close_reason: Option<LmtpCloseReason>,
}

impl LmtpSession {
    /// A new session; the `220` greeting is already in the output. `now` is the embedder's
    /// monotonic clock, in any epoch.
    pub fn new(config: LmtpConfig, now: Duration) -> Self {
        let greeting = format!("{} LMTP server ready", config.hostname);
        let mut session = Self {
            config,
            framer: LineFramer::default(),
            input: BytesMut::new(),
            output: BytesMut::with_capacity(512),
            events: VecDeque::new(),
            state: State::Command,
            greeted: false,
            transaction: None,
            bad_commands: 0,
            last_activity: now,
            close_reason: None,
        };
        session.reply(Reply::plain(220, alloc::vec![greeting.into()]));
        session
    }

    /// Feeds bytes read from the client and executes what it can, in order. Afterwards take
    /// the output and poll the events.
    pub fn handle_input(&mut self, data: &[u8], now: Duration) {
        if self.is_closed() {
            return;
        }
        // Message data is activity however long its lines; between commands only a complete
        // line is (a client trickling one endless line must not hold the connection).
        if matches!(self.state, State::Data { .. }) || data.contains(&b'\n') {
            self.last_activity = now;
        }
        self.input.extend_from_slice(data);
        self.process();
        if self.input.len() > INPUT_HARD_LIMIT {
            self.reply(Reply::new(421, [4, 7, 0], "Too much pipelined input, closing"));
            self.close(LmtpCloseReason::InputFlood);
        }
    }

    /// True while the session takes more input; when false, stop reading until events are
    /// answered and output taken. Reads should be bounded (a few KiB).
    pub fn wants_input(&self) -> bool {
        !self.is_closed() && self.input.len() < INPUT_SOFT_LIMIT
    }

    /// Takes everything to send, in order. Commands held back by unsent output may run
    /// after this, so call again until empty.
    pub fn take_output(&mut self) -> Bytes {
        let out = self.output.split().freeze();
        self.process();
        out
    }

    /// True if output is waiting.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LmtpEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, or `None` once
    /// closed.
    pub fn poll_timeout(&self) -> Option<Duration> {
        (!self.is_closed()).then(|| self.last_activity + self.config.idle_timeout)
    }

    /// Tells the session the time: past the idle deadline it answers `421 4.4.2` and closes,
    /// unless it is waiting for the embedder (then the deadline moves).
    pub fn handle_timeout(&mut self, now: Duration) {
        let Some(deadline) = self.poll_timeout() else { return };
        if now < deadline {
            return;
        }
        if matches!(self.state, State::RcptPending { .. } | State::DeliveryPending) {
            self.last_activity = now;
            return;
        }
        let text = format!("{} Idle for too long, closing connection", self.config.hostname);
        self.reply(Reply::new(421, [4, 4, 2], text));
        self.close(LmtpCloseReason::IdleTimeout);
    }

    /// True once the session is over: send the remaining output, then close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<LmtpCloseReason> {
        self.close_reason
    }

    /// Answers [`LmtpEvent::Recipient`]: the recipient is local (`250 2.1.5`).
    pub fn recipient_accepted(&mut self) -> Result<(), WrongState> {
        let State::RcptPending { address } = &mut self.state else { return Err(WrongState) };
        let address = core::mem::take(address);
        self.reply(Reply::new(250, [2, 1, 5], format!("<{address}> Recipient OK")));
        if let Some(tx) = &mut self.transaction {
            tx.recipients.push(address);
        }
        self.resume();
        Ok(())
    }

    /// Answers [`LmtpEvent::Recipient`]: the recipient is refused.
    pub fn recipient_rejected(&mut self, error: RecipientError) -> Result<(), WrongState> {
        let State::RcptPending { address } = &self.state else { return Err(WrongState) };
        let reply = match error {
            RecipientError::UnknownUser => {
                Reply::new(550, [5, 1, 1], format!("<{address}> User unknown"))
            }
            RecipientError::Temporary => Reply::new(
                451,
                [4, 3, 0],
                format!("<{address}> Temporary failure, try again later"),
            ),
        };
        self.reply(reply);
        self.resume();
        Ok(())
    }

    /// Answers [`LmtpEvent::MessageEnd`] with one result per recipient, in order: one reply
    /// each (RFC 2033 §4.2). A wrong number of results is refused and changes nothing.
    pub fn delivered(&mut self, results: &[Delivery]) -> Result<(), WrongState> {
        if !matches!(self.state, State::DeliveryPending) {
            return Err(WrongState);
        }
        let tx = self.transaction.take().ok_or(WrongState)?;
        if tx.recipients.len() != results.len() {
            self.transaction = Some(tx);
            return Err(WrongState);
        }
        for (rcpt, result) in tx.recipients.iter().zip(results) {
            self.reply(match result {
                Delivery::Stored => Reply::new(250, [2, 0, 0], format!("<{rcpt}> Saved")),
                Delivery::TemporaryFailure => Reply::new(
                    451,
                    [4, 3, 0],
                    format!("<{rcpt}> Temporary failure in storing the message, try again later"),
                ),
            });
        }
        self.resume();
        Ok(())
    }

    fn resume(&mut self) {
        self.state = State::Command;
        self.process();
    }

    fn reply(&mut self, reply: Reply) {
        reply.encode(&mut self.output);
    }

    fn close(&mut self, reason: LmtpCloseReason) {
        if matches!(self.state, State::Data { too_big: false, .. }) {
            self.events.push_back(LmtpEvent::MessageAborted);
        }
        self.state = State::Closed;
        self.close_reason = Some(reason);
        self.transaction = None;
        self.input.clear();
    }

    /// Runs commands and message data in order while nothing holds the session back.
    fn process(&mut self) {
        while self.output.len() < OUTPUT_HIGH_WATER {
            let progressed = match self.state {
                State::Command => self.next_command(),
                State::Data { .. } => self.next_data(),
                State::RcptPending { .. } | State::DeliveryPending | State::Closed => false,
            };
            if !progressed {
                break;
            }
        }
    }

    /// Frames and executes one command line; false when no whole line is buffered.
    fn next_command(&mut self) -> bool {
        let limit = self.config.command_line;
        let line = match self.framer.next(&self.input, |_| limit) {
            Frame::NeedMore { consumed } => {
                self.input.advance(consumed);
                return false;
            }
            Frame::TooLong { consumed, limit } => {
                self.input.advance(consumed);
                self.bad(Reply::new(
                    500,
                    [5, 5, 2],
                    format!("Line too long (over {limit} octets)"),
                ));
                return true;
            }
            Frame::Line { line, consumed } => {
                // At most `command_line` octets: copied so that the command can borrow it
                // while the session changes.
                let line = line.to_vec();
                self.input.advance(consumed);
                line
            }
        };
        match parse_command(&line) {
            Ok(command) => self.execute(command),
            Err(error) => self.rejected(error),
        }
        true
    }

    fn rejected(&mut self, error: LmtpCommandError) {
        let (code, enhanced) = error.reply_code();
        let mut text = error.to_string();
        if let Some(first) = text.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        self.bad(Reply::new(code, enhanced, text));
    }

    /// Answers a rejected line and counts it; past the limit the session ends.
    fn bad(&mut self, reply: Reply) {
        self.reply(reply);
        self.bad_commands += 1;
        if self.bad_commands > self.config.max_bad_commands {
            self.reply(Reply::new(421, [4, 7, 0], "Too many errors, closing connection"));
            self.close(LmtpCloseReason::TooManyErrors);
        }
    }

    fn execute(&mut self, command: LmtpCommand<'_>) {
        let sequence = |text: &'static str| Reply::new(503, [5, 5, 1], text);
        match command {
            LmtpCommand::Lhlo { .. } => {
                // RFC 5321 §4.1.4: a greeting resets the transaction.
                self.greeted = true;
                self.transaction = None;
                let lines: Vec<Cow<'static, str>> = alloc::vec![
                    self.config.hostname.clone().into(),
                    "PIPELINING".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "8BITMIME".into(),
                    format!("SIZE {}", self.config.max_message_size).into(),
                ];
                self.reply(Reply::plain(250, lines));
            }
            // RFC 2033 §4.1: HELO and EHLO are not LMTP commands.
            LmtpCommand::SmtpGreeting => {
                self.bad(Reply::new(500, [5, 5, 1], "This is LMTP (RFC 2033): use LHLO"));
            }
            LmtpCommand::Mail { .. } if !self.greeted => self.bad(sequence("Send LHLO first")),
            LmtpCommand::Mail { .. } if self.transaction.is_some() => {
                self.bad(sequence("Nested MAIL command"));
            }
            LmtpCommand::Mail { size: Some(size), .. } if size > self.config.max_message_size => {
                // RFC 1870 §6.1: a declared size over the fixed limit.
                self.reply(Reply::new(552, [5, 3, 4], "Message size exceeds fixed limit"));
            }
            LmtpCommand::Mail { from, .. } => {
                let text = format!("<{from}> Sender OK");
                self.transaction =
                    Some(Transaction { sender: from.into(), recipients: Vec::new() });
                self.events.push_back(LmtpEvent::MailFrom { sender: from.into() });
                self.reply(Reply::new(250, [2, 1, 0], text));
            }
            LmtpCommand::Rcpt { to } => match &self.transaction {
                None => self.bad(sequence("Send MAIL first")),
                Some(tx) if tx.recipients.len() >= self.config.max_recipients => {
                    // RFC 5321 §4.5.3.1.10: 452 for too many recipients, the client sends
                    // the rest in a later transaction.
                    self.reply(Reply::new(452, [4, 5, 3], "Too many recipients"));
                }
                Some(_) => {
                    self.state = State::RcptPending { address: to.into() };
                    self.events.push_back(LmtpEvent::Recipient { address: to.into() });
                }
            },
            LmtpCommand::Data => match &self.transaction {
                None => self.bad(sequence("Send MAIL first")),
                // RFC 2033 §4.2: DATA without a successful RCPT fails with 503.
                Some(tx) if tx.recipients.is_empty() => self.bad(sequence("No valid recipients")),
                Some(tx) => {
                    self.events.push_back(LmtpEvent::MessageStart {
                        sender: tx.sender.clone(),
                        recipients: tx.recipients.clone(),
                    });
                    self.state =
                        State::Data { unstuffer: DotUnstuffer::new(), size: 0, too_big: false };
                    let text = "Start mail input; end with <CRLF>.<CRLF>";
                    self.reply(Reply::plain(354, alloc::vec![text.into()]));
                }
            },
            LmtpCommand::Rset => {
                self.transaction = None;
                self.reply(Reply::new(250, [2, 0, 0], "OK"));
            }
            LmtpCommand::Noop => self.reply(Reply::new(250, [2, 0, 0], "OK")),
            LmtpCommand::Quit => {
                let text = format!("{} closing connection", self.config.hostname);
                self.reply(Reply::new(221, [2, 0, 0], text));
                self.close(LmtpCloseReason::Quit);
            }
            // RFC 5321 §3.5.3: 252 when the server will not verify but accepts the message.
            LmtpCommand::Vrfy => self.reply(Reply::new(
                252,
                [2, 5, 0],
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            LmtpCommand::Help => self.reply(Reply::new(
                214,
                [2, 0, 0],
                "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            )),
        }
    }

    /// Unstuffs buffered message data; false when all of it was used and the message goes
    /// on. The payload goes out as events, never collected: memory stays bounded by the
    /// embedder's reads.
    fn next_data(&mut self) -> bool {
        let State::Data { unstuffer, size, too_big } = &mut self.state else { return false };
        if self.input.is_empty() {
            return false;
        }
        let mut payload = BytesMut::new();
        let step = unstuffer.unstuff(&self.input, &mut payload);
        self.input.advance(step.consumed);
        if !*too_big {
            *size = size.saturating_add(payload.len() as u64);
            if *size > self.config.max_message_size {
                *too_big = true;
                self.events.push_back(LmtpEvent::MessageAborted);
            } else if !payload.is_empty() {
                self.events.push_back(LmtpEvent::MessageData(payload.freeze()));
            }
        }
        if !step.done {
            return false;
        }
        if *too_big {
            // RFC 1870 §6.3 and RFC 2033 §4.2: one 552 per recipient.
            let count = self.transaction.take().map_or(0, |tx| tx.recipients.len());
            for _ in 0..count {
                self.reply(Reply::new(552, [5, 3, 4], "Message size exceeds fixed limit"));
            }
            self.state = State::Command;
        } else {
            self.events.push_back(LmtpEvent::MessageEnd);
            self.state = State::DeliveryPending;
        }
        true
    }
}
