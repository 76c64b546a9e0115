//! POP3 commands: the types, their grammar, their encoding, and the server-side decoder.
//!
//! RFC 1939 §3: "Commands in the POP3 consist of a case-insensitive keyword, possibly followed
//! by one or more arguments. All commands are terminated by a CRLF pair. Keywords and arguments
//! consist of printable ASCII characters. Keywords and arguments are each separated by a single
//! SPACE character." RFC 6856 widens arguments to UTF-8; so do we.

mod decoder;
mod encode;
mod error;
pub(crate) mod parse;
mod types;

pub use decoder::CommandDecoder;
pub use error::CommandError;
pub(crate) use types::owned_str;
pub use types::{Command, LangArg, SaslResponse};
