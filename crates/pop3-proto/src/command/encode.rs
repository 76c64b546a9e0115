//! Command encoding (the client side). Every value is checked first: an encoder that wrote a
//! user name containing CRLF would let that name inject a second command.

use bytes::BytesMut;

use super::parse::{is_apop_digest, is_base64, is_language_tag, is_mechanism, text};
use super::{Command, CommandError, LangArg, SaslResponse};
use crate::wire::{put_u64, CRLF};
use crate::MsgNum;

impl Command<'_> {
    /// Appends this command and its CRLF to `out`.
    ///
    /// Fails, writing nothing, when an argument cannot be sent as a valid command line: the
    /// same arguments the decoder would reject (control characters, CR or LF anywhere, an empty
    /// user name, a digest that is not 32 hex digits, base64 that is not base64, ...).
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), CommandError> {
        self.validate()?;
        out.extend_from_slice(self.keyword().as_bytes());
        match self {
            Self::User(name) => put_arg(out, name.as_bytes()),
            Self::Pass(pass) => put_arg(out, pass.expose()),
            Self::Apop { name, digest } => {
                put_arg(out, name.as_bytes());
                put_arg(out, digest.expose().as_bytes());
            }
            Self::List(msg) | Self::Uidl(msg) => {
                if let Some(msg) = msg {
                    put_msg(out, *msg);
                }
            }
            Self::Retr(msg) | Self::Dele(msg) => put_msg(out, *msg),
            Self::Top { msg, lines } => {
                put_msg(out, *msg);
                out.extend_from_slice(b" ");
                put_u64(out, u64::from(*lines));
            }
            Self::Auth { mechanism, initial_response } => {
                put_arg(out, mechanism.as_bytes());
                match initial_response.as_ref().map(|r| r.expose().as_bytes()) {
                    Some(b"") => put_arg(out, b"="),
                    Some(data) => put_arg(out, data),
                    None => {}
                }
            }
            Self::Lang(LangArg::List) => {}
            Self::Lang(LangArg::Wildcard) => put_arg(out, b"*"),
            Self::Lang(LangArg::Tag(tag)) => put_arg(out, tag.as_bytes()),
            Self::Quit
            | Self::Stat
            | Self::Noop
            | Self::Rset
            | Self::Capa
            | Self::Stls
            | Self::Utf8
            | Self::Last => {}
        }
        out.extend_from_slice(CRLF);
        Ok(())
    }

    fn validate(&self) -> Result<(), CommandError> {
        let check = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(CommandError::InvalidArgument)
            }
        };
        match self {
            Self::User(name) => text(name.as_bytes()).map(drop),
            Self::Pass(pass) => match memchr::memchr3(b'\0', b'\r', b'\n', pass.expose()) {
                Some(_) => Err(CommandError::InvalidByte),
                None => Ok(()),
            },
            Self::Apop { name, digest } => {
                text(name.as_bytes())?;
                check(is_apop_digest(digest.expose().as_bytes()))
            }
            Self::Auth { mechanism, initial_response } => {
                check(is_mechanism(mechanism.as_bytes()))?;
                initial_response
                    .as_ref()
                    .map_or(Ok(()), |r| check(is_base64(r.expose().as_bytes())))
            }
            Self::Lang(LangArg::Tag(tag)) => check(is_language_tag(tag.as_bytes())),
            _ => Ok(()),
        }
    }
}

impl SaslResponse<'_> {
    /// Appends this SASL response line and its CRLF to `out` (RFC 5034 §4).
    ///
    /// Fails, writing nothing, when the data is not base64.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), CommandError> {
        match self {
            Self::Cancel => out.extend_from_slice(b"*"),
            Self::Data(data) if is_base64(data.expose().as_bytes()) => {
                out.extend_from_slice(data.expose().as_bytes());
            }
            Self::Data(_) => return Err(CommandError::InvalidArgument),
        }
        out.extend_from_slice(CRLF);
        Ok(())
    }
}

fn put_arg(out: &mut BytesMut, arg: &[u8]) {
    out.extend_from_slice(b" ");
    out.extend_from_slice(arg);
}

fn put_msg(out: &mut BytesMut, msg: MsgNum) {
    out.extend_from_slice(b" ");
    put_u64(out, u64::from(msg.get()));
}
