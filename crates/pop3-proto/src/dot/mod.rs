//! Streaming dot-stuffing of multi-line responses (RFC 1939 §3), and the `TOP` filter (§7).
//!
//! A multi-line response ends with a line holding a single `.`, so a body line that itself
//! begins with `.` is sent with one more `.` in front ("byte-stuffed") and the receiver removes
//! it. Message bodies can be large, so everything here is streaming: input arrives in chunks of
//! any split (a line end or the terminator may be cut anywhere, even between CR and LF), output
//! goes into a caller-owned [`BytesMut`](bytes::BytesMut), and nothing holds a whole message.
//!
//! - [`DotStuffer`] (server): message bytes in, CRLF-normalised stuffed bytes and the terminator
//!   out.
//! - [`DotUnstuffer`] (client): wire bytes in, payload out, stopping exactly after the
//!   terminator so that pipelined responses behind it stay in the caller's buffer.
//! - [`TopFilter`] (server): passes the headers, the blank line and the first `n` body lines
//!   of a message, for `TOP msg n`.
//!
//! # Line endings in message bodies
//!
//! Stored messages may use CRLF or bare LF (Maildir and mbox files written by Unix tools use LF),
//! while the wire needs CRLF. One rule decides what a line end is, here and in the storage layer
//! that computes the sizes announced by `STAT` and `LIST`:
//!
//! - only LF ends a line;
//! - a CR immediately before an LF belongs to that line end (CRLF is sent as is);
//! - a bare LF is sent as CRLF;
//! - a bare CR (not followed by LF) is ordinary data and is sent unchanged.
//!
//! Hence the RFC 1939 size of a message, the number of octets `RETR` sends before the
//! terminator, is its length, plus the number of its bare LFs, plus the completion that
//! [`DotStuffer::finish`] adds when the message does not end with LF: 2 (CRLF) after any other
//! octet, 1 (LF) after a final CR, which becomes the line end. The dot-stuffing octets are not
//! counted (RFC 1939 §11). [`wire_size`] computes it, and pop3-storage's `SizeCounter` implements the
//! same rule in a streaming pass, so `LIST` never disagrees with `RETR`.
//!
//! The client side ([`DotUnstuffer`]) changes no line ends: it hands over exactly what the
//! server sent, minus the stuffing, and accepts `.` followed by a bare LF as a terminator too,
//! for servers that send bare LF.

mod size;
mod stuffer;
mod top;
mod unstuffer;

pub use size::wire_size;
pub use stuffer::DotStuffer;
pub use top::TopFilter;
pub use unstuffer::{DotUnstuffer, Unstuffed};
