//! Streaming RETR and TOP bodies: the embedder feeds the stored message in chunks under
//! back-pressure; the session filters (TOP), dot-stuffs and frames it. No whole message is ever
//! held.
//!
//! This module only frames bytes; the session's answer methods that drive it are in
//! `retrieve.rs`.

use alloc::format;

use bytes::BytesMut;

use crate::{DotStuffer, MsgNum, StatusLine, TopFilter};

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

/// Whether the embedder should keep reading the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFlow {
    /// Send more (when [`ServerSession::wants_body_data`](super::ServerSession::wants_body_data)
    /// says so).
    More,
    /// TOP has all the lines it needs: stop reading and call
    /// [`ServerSession::body_end`](super::ServerSession::body_end).
    Done,
}

impl BodyStream {
    pub(super) fn new(msg: MsgNum, size: u64, top: Option<TopFilter>) -> Self {
        Self { msg, size, started: false, stuffer: DotStuffer::new(), top }
    }

    /// The message being sent.
    pub(super) fn msg(&self) -> MsgNum {
        self.msg
    }

    /// True once the `+OK` line has been written.
    pub(super) fn started(&self) -> bool {
        self.started
    }

    /// False once TOP has all the lines it needs.
    pub(super) fn wants_more(&self) -> bool {
        !self.top.as_ref().is_some_and(TopFilter::is_done)
    }

    /// Writes the `+OK` line once, before the first octet of the body.
    fn start(&mut self, output: &mut BytesMut) {
        if !self.started {
            self.started = true;
            StatusLine::ok(format!("{} octets", self.size)).encode(output);
        }
    }

    /// Frames the next chunk of the stored message into `output` (after the `+OK` line, if it
    /// is the first).
    pub(super) fn feed(&mut self, chunk: &[u8], output: &mut BytesMut) -> BodyFlow {
        self.start(output);
        let passed = match self.top.as_mut() {
            Some(top) => top.filter(chunk),
            None => chunk,
        };
        self.stuffer.stuff(passed, output);
        match self.wants_more() {
            true => BodyFlow::More,
            false => BodyFlow::Done,
        }
    }

    /// Ends the reply: the `+OK` line if nothing was fed, a missing CRLF and the terminator.
    pub(super) fn finish(mut self, output: &mut BytesMut) {
        self.start(output);
        self.stuffer.finish(output);
    }
}
