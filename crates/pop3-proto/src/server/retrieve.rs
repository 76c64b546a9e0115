//! Answering [`Event::RetrieveBody`](super::Event::RetrieveBody): the embedder feeds the
//! stored message through these methods; `body.rs` frames it.

use alloc::format;

use super::body::BodyFlow;
use super::event::{BodyError, CloseReason};
use super::session::{ServerSession, State, WrongState};
use crate::{RespCode, StatusLine};

impl ServerSession {
    /// True while a body is being streamed and the output is below the high-water mark: feed
    /// the next chunk now. When false during a body, take the output first.
    pub fn wants_body_data(&self) -> bool {
        match &self.state {
            State::Transaction(t) => {
                t.body.as_ref().is_some_and(|b| b.wants_more())
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
        Ok(body.feed(chunk, &mut self.output))
    }

    /// The message has been fed whole (or TOP is done): ends the reply with its terminator and
    /// goes on with the next pipelined command.
    pub fn body_end(&mut self) -> Result<(), WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        let body = t.body.take().ok_or(WrongState)?;
        body.finish(&mut self.output);
        self.process();
        Ok(())
    }

    /// The message could not be read. Before any data: `-ERR` and the session goes on (a
    /// message removed by another program must not end the session). After some data: the
    /// reply cannot be completed honestly, so the connection closes without UPDATE.
    pub fn body_error(&mut self, error: BodyError) -> Result<(), WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        let body = t.body.take().ok_or(WrongState)?;
        if body.started() {
            self.close(CloseReason::BodyFailed);
            return Ok(());
        }
        let msg = body.msg();
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
