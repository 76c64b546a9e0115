//! Streaming RETR and TOP bodies: the embedder feeds the stored message in chunks under
//! back-pressure; the session filters (TOP), dot-stuffs and frames it. No whole message is ever
//! held.

use alloc::format;

use bytes::BytesMut;

use super::event::{BodyError, CloseReason};
use super::session::{ServerSession, State, WrongState};
use crate::{DotStuffer, MsgNum, RespCode, StatusLine, TopFilter};

/// A body being sent.
#[derive(Debug)]
pub(super) struct BodyStream {
    msg: MsgNum,
    size: u64,
    /// The `+OK` line has been written: from here on, a failure cannot become an `-ERR`.
    started: bool,
    stuffer: DotStuffer,
    top: Option<TopFilter>,
}

impl BodyStream {
    pub(super) fn new(msg: MsgNum, size: u64, top: Option<TopFilter>) -> Self {
        Self { msg, size, started: false, stuffer: DotStuffer::new(), top }
    }
}

/// Whether the embedder should keep reading the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFlow {
    /// Send more (when [`ServerSession::wants_body_data`] says so).
    More,
    /// TOP has all the lines it needs: stop reading and call [`ServerSession::body_end`].
    Done,
}

impl BodyStream {
    /// Writes the `+OK` line once, before the first octet of the body.
    fn start(&mut self, output: &mut BytesMut) {
        if !self.started {
            self.started = true;
            StatusLine::ok(format!("{} octets", self.size)).encode(output);
        }
    }
}

impl ServerSession {
    /// True while a body is being streamed and the output is below the high-water mark: feed
    /// the next chunk now. When false during a body, take the output first.
    pub fn wants_body_data(&self) -> bool {
        match &self.state {
            State::Transaction(t) => {
                t.body.as_ref().is_some_and(|b| !b.top.as_ref().is_some_and(TopFilter::is_done))
                    && self.output.len() < self.config.output_high_water
            }
            _ => false,
        }
    }

    /// The next chunk of the stored message asked for by [`Event::RetrieveBody`](super::Event),
    /// in any size. The first call (or [`body_end`](Self::body_end)) sends the `+OK` line.
    pub fn body_data(&mut self, chunk: &[u8]) -> Result<BodyFlow, WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        let body = t.body.as_mut().ok_or(WrongState)?;
        body.start(&mut self.output);
        let passed = match body.top.as_mut() {
            Some(top) => top.filter(chunk),
            None => chunk,
        };
        body.stuffer.stuff(passed, &mut self.output);
        Ok(match &body.top {
            Some(top) if top.is_done() => BodyFlow::Done,
            _ => BodyFlow::More,
        })
    }

    /// The message has been fed whole (or TOP is done): ends the reply with its terminator and
    /// goes on with the next pipelined command.
    pub fn body_end(&mut self) -> Result<(), WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        let mut body = t.body.take().ok_or(WrongState)?;
        body.start(&mut self.output);
        body.stuffer.finish(&mut self.output);
        self.process();
        Ok(())
    }

    /// The message could not be read. Before any data: `-ERR` and the session goes on (a
    /// message removed by another program must not end the session). After some data: the
    /// reply cannot be completed honestly, so the connection closes without UPDATE.
    pub fn body_error(&mut self, error: BodyError) -> Result<(), WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        let body = t.body.take().ok_or(WrongState)?;
        if body.started {
            self.close(CloseReason::BodyFailed);
            return Ok(());
        }
        let msg = body.msg;
        let line = match error {
            BodyError::Gone => {
                StatusLine::err(format!("message {msg} is no longer in the maildrop"))
            }
            BodyError::Io => {
                StatusLine::err(format!("cannot read message {msg}")).with_code(RespCode::SysTemp)
            }
        };
        self.reply(line);
        self.process();
        Ok(())
    }
}
