//! Answering [`Event::RetrieveBody`](super::Event::RetrieveBody): the embedder feeds the
//! stored message through these methods, and `body.rs` frames it; or, for a message it
//! holds in wire form, writes the body itself between the status line and the terminator
//! (`body_direct_*`).

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
    /// Refused while the body is sent directly.
    pub fn body_data(&mut self, chunk: &[u8]) -> Result<BodyFlow, WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        let body = t.body.as_mut().filter(|b| !b.is_direct()).ok_or(WrongState)?;
        Ok(body.feed(chunk, &mut self.output))
    }

    /// The message has been fed whole (or TOP is done): ends the reply with its terminator and
    /// goes on with the next pipelined command. Refused while the body is sent directly
    /// (that ends with [`body_direct_end`](Self::body_direct_end)).
    pub fn body_end(&mut self) -> Result<(), WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        if t.body.as_ref().is_some_and(|b| b.is_direct()) {
            return Err(WrongState);
        }
        let body = t.body.take().ok_or(WrongState)?;
        body.finish(&mut self.output);
        self.process();
        Ok(())
    }

    /// True if the body asked for may be sent directly
    /// ([`body_direct_begin`](Self::body_direct_begin)): a RETR (not a TOP, whose cut only
    /// the session makes) of which nothing has been sent yet.
    pub fn body_can_be_direct(&self) -> bool {
        match &self.state {
            State::Transaction(t) => t.body.as_ref().is_some_and(|b| b.can_go_direct()),
            _ => false,
        }
    }

    /// Answers a RETR whose message the embedder holds in wire form by sending the body
    /// itself, not through the session (for example with `sendfile` from the file). Writes
    /// the `+OK` line into the output and returns the octet count it announced.
    ///
    /// The embedder then sends, in this order: all the output (the status line, after any
    /// earlier replies), then the body exactly as RFC 1939 §3 has it on the wire: that many
    /// octets of the message, every line ending in CRLF, the last one complete, and one more
    /// `.` in front of each line that begins with `.` ("byte-stuffing"; the stuffing dots
    /// are not counted, §11); then calls [`body_direct_end`](Self::body_direct_end) for the
    /// terminator. The session sees none of these octets: it cannot check them, and takes
    /// no other body call meanwhile ([`body_data`](Self::body_data) and
    /// [`body_end`](Self::body_end) are refused, [`wants_body_data`](Self::wants_body_data)
    /// is false). If the body cannot be sent whole, report
    /// [`body_error`](Self::body_error): after the status line the reply cannot be completed
    /// honestly, so the session closes without UPDATE.
    pub fn body_direct_begin(&mut self) -> Result<u64, WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        let body = t.body.as_mut().filter(|b| b.can_go_direct()).ok_or(WrongState)?;
        Ok(body.begin_direct(&mut self.output))
    }

    /// The embedder has sent the whole stuffed body after the status line of
    /// [`body_direct_begin`](Self::body_direct_begin): writes the terminator (`.CRLF`) and
    /// goes on with the next pipelined command.
    pub fn body_direct_end(&mut self) -> Result<(), WrongState> {
        let State::Transaction(t) = &mut self.state else { return Err(WrongState) };
        if !t.body.as_ref().is_some_and(|b| b.is_direct()) {
            return Err(WrongState);
        }
        let body = t.body.take().ok_or(WrongState)?;
        body.finish_direct(&mut self.output);
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
