//! A sans-IO LMTP server (RFC 2033): the protocol an MTA such as Postfix uses to hand mail
//! to the store that holds the mailboxes.
//!
//! LMTP is SMTP (RFC 5321) with `LHLO` for `EHLO` and one difference that matters: after
//! `DATA` the server answers once per accepted recipient (RFC 2033 §4.2), so one recipient
//! whose mailbox is full does not make the MTA deliver the message again to the others.
//!
//! - [`parse_command`] decodes one command line into an [`LmtpCommand`].
//! - [`Reply`] encodes replies, with enhanced status codes (RFC 2034, RFC 3463).
//! - [`LmtpSession`] is one connection: it sequences `LHLO`, `MAIL`, `RCPT`, `DATA`,
//!   `RSET`, `NOOP`, `QUIT`, `VRFY` and `HELP`, accepts pipelined commands (RFC 2920),
//!   unstuffs the message ([`DotUnstuffer`](crate::DotUnstuffer)) and hands it to the
//!   embedder in chunks as it arrives, and enforces the limits: 512-octet command lines,
//!   recipients per transaction, the message size it announces with `SIZE` (RFC 1870),
//!   rejected lines, idle time. It asks the embedder two things only: whether a recipient
//!   is local ([`LmtpEvent::Recipient`]), and to store a finished message for each
//!   recipient ([`LmtpEvent::MessageEnd`]); nothing is answered `250` before the embedder
//!   says it is stored.
//!
//! Lines of the message are not limited in length (RFC 5321 §4.5.3.1.6 bounds what a client
//! may send, and §4.5.3.1 asks servers to impose no limits where they can): the session
//! never holds a line, so a long one costs nothing.
//!
//! ```
//! use core::time::Duration;
//! use pop3_proto::lmtp::{Delivery, LmtpConfig, LmtpEvent, LmtpSession};
//!
//! let mut s = LmtpSession::new(LmtpConfig::default(), Duration::ZERO);
//! s.handle_input(b"LHLO mx\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n", Duration::ZERO);
//! assert_eq!(s.poll_event(), Some(LmtpEvent::MailFrom { sender: "a@example.org".into() }));
//! assert_eq!(s.poll_event(), Some(LmtpEvent::Recipient { address: "b@example.test".into() }));
//! s.recipient_accepted().unwrap();
//! s.handle_input(b"DATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\n", Duration::ZERO);
//! assert!(matches!(s.poll_event(), Some(LmtpEvent::MessageStart { .. })));
//! assert_eq!(s.poll_event(), Some(LmtpEvent::MessageData("Subject: hi\r\n\r\n.dot\r\n".into())));
//! assert_eq!(s.poll_event(), Some(LmtpEvent::MessageEnd));
//! s.delivered(&[Delivery::Stored]).unwrap();
//! let out = s.take_output();
//! assert!(out.ends_with(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n250 2.0.0 <b@example.test> Saved\r\n"));
//! ```

mod command;
mod reply;
mod session;
#[cfg(test)]
mod tests;

pub use command::{parse_command, Body, LmtpCommand, LmtpCommandError, MAX_PATH};
pub use reply::{Enhanced, Reply};
pub use session::{Delivery, LmtpCloseReason, LmtpConfig, LmtpEvent, LmtpSession, RecipientError};
