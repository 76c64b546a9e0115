//! Streaming RETR and TOP bodies: the embedder feeds the stored message in chunks under
//! back-pressure; the session filters (TOP), dot-stuffs and frames it. No whole message is ever
//! held. Or, for a RETR of a message stored in wire form, the embedder writes the stuffed body
//! itself between the status line and the terminator the session frames it with ("direct").
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
    /// The embedder writes the body itself; nothing of it passes through the session.
    direct: bool,
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
        Self { msg, size, started: false, stuffer: DotStuffer::new(), top, direct: false }
    }

    /// The message being sent.
    pub(super) fn msg(&self) -> MsgNum {
        self.msg
    }

    /// True once the `+OK` line has been written.
    pub(super) fn started(&self) -> bool {
        self.started
    }

    /// False once TOP has all the lines it needs, and while the embedder sends the body
    /// directly.
    pub(super) fn wants_more(&self) -> bool {
        !self.direct && !self.top.as_ref().is_some_and(TopFilter::is_done)
    }

    /// Whether the body may still be sent directly: a RETR (TOP cuts the message, which
    /// only the session's filter does) of which nothing has been sent.
    pub(super) fn can_go_direct(&self) -> bool {
        self.top.is_none() && !self.started
    }

    /// True once the embedder sends the body directly.
    pub(super) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Writes the `+OK` line and hands the body to the embedder; returns the octet count the
    /// line announced.
    pub(super) fn begin_direct(&mut self, output: &mut BytesMut) -> u64 {
        self.start(output);
        self.direct = true;
        self.size
    }

    /// Ends a direct body: the embedder sent every line, complete and stuffed, so only the
    /// terminator is left.
    pub(super) fn finish_direct(self, output: &mut BytesMut) {
        output.extend_from_slice(b".\r\n");
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
