//! POP3 responses: status lines with RFC 2449 response codes, SASL challenges, and the
//! multi-line CAPA, LIST, UIDL and LANG listings.
//!
//! A response cannot be decoded without knowing the command it answers (RFC 1939 §3: whether
//! `+OK` starts a multi-line block depends on the command), so the decoder takes an [`Expect`].
//! Message bodies (RETR, TOP) are decoded as a status line and then streamed through
//! [`DotUnstuffer`](crate::DotUnstuffer).

mod decoder;
mod encode;
mod error;
mod parse;
mod types;

pub use decoder::ResponseDecoder;
pub use error::ResponseError;
pub(crate) use types::is_unique_id;
pub use types::{
    Capability, Expect, Expire, LangListing, ListItem, RespCode, Response, ScanListing, Status,
    StatusLine, UidListing,
};
