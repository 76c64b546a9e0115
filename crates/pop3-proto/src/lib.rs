//! A sans-IO implementation of the POP3 protocol (RFC 1939) and its extensions
//! (RFC 2449 CAPA and response codes, RFC 2595 STLS, RFC 5034 SASL, RFC 6856 UTF8 and LANG).
//!
//! This crate performs no I/O, reads no clock and draws no random numbers. It turns bytes into
//! typed values and typed values into bytes; the embedder owns the sockets, the files and time.
//! That is what lets the same code serve a tokio server, a blocking client, a fuzzer and a test
//! harness with a virtual clock.
//!
//! # What is here
//!
//! - [`command`]: [`Command`] values, decoded by the server ([`CommandDecoder`]) and encoded by
//!   the client ([`Command::encode`]).
//! - [`response`]: status lines with RFC 2449 response codes, SASL challenges and the
//!   multi-line CAPA, LIST and UIDL listings, decoded by the client ([`ResponseDecoder`]) and
//!   encoded by the server.
//! - [`dot`]: streaming dot-stuffing ([`DotStuffer`]) and unstuffing ([`DotUnstuffer`]) of
//!   message bodies, and the [`TopFilter`] that implements `TOP n lines`.
//! - [`proxy`]: the PROXY protocol header (versions 1 and 2) a load balancer such as HAProxy
//!   sends before the client's bytes, carrying the client's address.
//! - [`lmtp`]: a sans-IO LMTP server session (RFC 2033), for delivery from an MTA.
//! - [`Secret`]: a wrapper that keeps passwords and SASL data out of `Debug` output.
//!
//! # Decoding a command
//!
//! ```
//! use pop3_proto::{Command, CommandDecoder, Decoded, MsgNum};
//!
//! let mut decoder = CommandDecoder::default();
//! let input = b"RETR 1\r\nQUIT\r\n";
//! let Decoded { consumed, outcome } = decoder.decode(input);
//! assert_eq!(outcome.unwrap(), Some(Command::Retr(MsgNum::new(1).unwrap())));
//! assert_eq!(&input[consumed..], b"QUIT\r\n");
//! ```
//!
//! # Encoding a command and a response
//!
//! ```
//! use bytes::BytesMut;
//! use pop3_proto::{Command, RespCode, StatusLine};
//!
//! let mut out = BytesMut::new();
//! Command::Stat.encode(&mut out);
//! StatusLine::err("mailbox locked").with_code(RespCode::InUse).encode(&mut out);
//! assert_eq!(&out[..], b"STAT\r\n-ERR [IN-USE] mailbox locked\r\n");
//! ```
//!
//! # Line endings
//!
//! The wire format ends every line with CRLF, and this crate always writes CRLF. When reading,
//! a bare LF is accepted as a line end (a CR before it is stripped): clients typed at a terminal
//! and some old servers send bare LF, and accepting it loses nothing because LF cannot appear
//! inside a POP3 command or status line. A CR that is not followed by LF is a protocol error in
//! a command or status line. Message bodies are different: see [`dot`].
//!
//! # Features
//!
//! - `std` (default): `std::error::Error` impls. Without it the crate is `no_std` + `alloc`.
//! - `arbitrary`: `arbitrary::Arbitrary` impls for fuzzing.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
pub mod command;
pub mod dot;
mod hex;
mod limits;
mod line;
pub mod lmtp;
mod msgnum;
pub mod proxy;
pub mod response;
pub mod sasl;
mod secret;
pub mod server;
mod wire;

pub use command::{Command, CommandDecoder, CommandError, LangArg, SaslResponse};
pub use dot::{DotStuffer, DotUnstuffer, TopFilter, Unstuffed};
pub use hex::hex;
pub use limits::Limits;
pub use line::{DecodeError, Decoded};
pub use msgnum::MsgNum;
pub use response::{
    Capability, Expect, Expire, LangListing, ListItem, RespCode, Response, ResponseDecoder,
    ResponseError, ScanListing, Status, StatusLine, UidListing,
};
pub use secret::Secret;
