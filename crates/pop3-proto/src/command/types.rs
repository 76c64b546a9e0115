//! The command values.

use alloc::borrow::Cow;

use crate::{MsgNum, Secret};

/// One POP3 command, borrowing its arguments from the input line where it can.
///
/// Variants are named after their keyword. Everything a user types as a credential is wrapped in
/// [`Secret`] so that logging a command never logs a password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Command<'a> {
    /// `USER name` (RFC 1939 §7). The name is the rest of the line.
    User(Cow<'a, str>),
    /// `PASS string` (RFC 1939 §7). The argument is the rest of the line, spaces included, as
    /// raw octets: passwords of pre-UTF-8 clients are passed to the verifier untouched.
    Pass(Secret<Cow<'a, [u8]>>),
    /// `APOP name digest` (RFC 1939 §7): the digest is 32 hexadecimal digits.
    Apop {
        /// The mailbox name.
        name: Cow<'a, str>,
        /// MD5 of the greeting's timestamp and the shared secret, in hexadecimal.
        digest: Secret<Cow<'a, str>>,
    },
    /// `QUIT` (RFC 1939 §5 and §6).
    Quit,
    /// `STAT` (RFC 1939 §5).
    Stat,
    /// `LIST [msg]` (RFC 1939 §5).
    List(Option<MsgNum>),
    /// `RETR msg` (RFC 1939 §5).
    Retr(MsgNum),
    /// `DELE msg` (RFC 1939 §5).
    Dele(MsgNum),
    /// `NOOP` (RFC 1939 §5).
    Noop,
    /// `RSET` (RFC 1939 §5).
    Rset,
    /// `TOP msg n` (RFC 1939 §7): headers and the first `lines` lines of the body.
    Top {
        /// The message.
        msg: MsgNum,
        /// How many body lines to send (0 is allowed: headers only).
        lines: u32,
    },
    /// `UIDL [msg]` (RFC 1939 §7).
    Uidl(Option<MsgNum>),
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `AUTH mechanism [initial-response]` (RFC 5034 §4).
    Auth {
        /// The SASL mechanism name as sent (compare case-insensitively).
        mechanism: Cow<'a, str>,
        /// The initial response in base64. `Some("")` is the empty response, sent as `=`.
        initial_response: Option<Secret<Cow<'a, str>>>,
    },
    /// `UTF8` (RFC 6856 §2).
    Utf8,
    /// `LANG [lang-or-wild]` (RFC 6856 §3).
    Lang(LangArg<'a>),
    /// `LAST` (RFC 1460, removed by RFC 1725): the highest message number accessed. Parsed so
    /// that a client can send it to an old server; a server session answers it only when
    /// [`ServerConfig::last_command`](crate::server::ServerConfig::last_command) is on.
    Last,
}

/// The argument of `LANG` (RFC 6856 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum LangArg<'a> {
    /// No argument: list the languages the server supports.
    List,
    /// `*`: let the server choose from the client's preference ("wildcard").
    Wildcard,
    /// A language tag (RFC 5646), such as `en` or `pt-BR`.
    Tag(Cow<'a, str>),
}

/// A client's line during a SASL exchange (RFC 5034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum SaslResponse<'a> {
    /// A response in base64 (an empty line is the empty response).
    Data(Secret<Cow<'a, str>>),
    /// `*`: the client cancels the exchange; the server answers `-ERR`.
    Cancel,
}

impl Command<'_> {
    /// The command's keyword, in upper case.
    pub const fn keyword(&self) -> &'static str {
        match self {
            Self::User(_) => "USER",
            Self::Pass(_) => "PASS",
            Self::Apop { .. } => "APOP",
            Self::Quit => "QUIT",
            Self::Stat => "STAT",
            Self::List(_) => "LIST",
            Self::Retr(_) => "RETR",
            Self::Dele(_) => "DELE",
            Self::Noop => "NOOP",
            Self::Rset => "RSET",
            Self::Top { .. } => "TOP",
            Self::Uidl(_) => "UIDL",
            Self::Capa => "CAPA",
            Self::Stls => "STLS",
            Self::Auth { .. } => "AUTH",
            Self::Utf8 => "UTF8",
            Self::Lang(_) => "LANG",
            Self::Last => "LAST",
        }
    }

    /// True for commands whose response is multi-line when it is `+OK`.
    ///
    /// RFC 1939: RETR, TOP, and LIST/UIDL without an argument; RFC 2449: CAPA; RFC 6856: LANG
    /// without an argument.
    pub const fn has_multiline_response(&self) -> bool {
        matches!(
            self,
            Self::Retr(_)
                | Self::Top { .. }
                | Self::List(None)
                | Self::Uidl(None)
                | Self::Capa
                | Self::Lang(LangArg::List)
        )
    }

    /// Copies every borrowed argument, so the command outlives the input buffer.
    pub fn into_owned(self) -> Command<'static> {
        match self {
            Self::User(name) => Command::User(owned_str(name)),
            Self::Pass(pass) => Command::Pass(pass.map(|p| Cow::Owned(p.into_owned()))),
            Self::Apop { name, digest } => {
                Command::Apop { name: owned_str(name), digest: digest.map(owned_str) }
            }
            Self::Quit => Command::Quit,
            Self::Stat => Command::Stat,
            Self::List(n) => Command::List(n),
            Self::Retr(n) => Command::Retr(n),
            Self::Dele(n) => Command::Dele(n),
            Self::Noop => Command::Noop,
            Self::Rset => Command::Rset,
            Self::Top { msg, lines } => Command::Top { msg, lines },
            Self::Uidl(n) => Command::Uidl(n),
            Self::Capa => Command::Capa,
            Self::Stls => Command::Stls,
            Self::Auth { mechanism, initial_response } => Command::Auth {
                mechanism: owned_str(mechanism),
                initial_response: initial_response.map(|r| r.map(owned_str)),
            },
            Self::Utf8 => Command::Utf8,
            Self::Lang(arg) => Command::Lang(arg.into_owned()),
            Self::Last => Command::Last,
        }
    }
}

impl LangArg<'_> {
    /// Copies the borrowed tag.
    pub fn into_owned(self) -> LangArg<'static> {
        match self {
            Self::List => LangArg::List,
            Self::Wildcard => LangArg::Wildcard,
            Self::Tag(tag) => LangArg::Tag(owned_str(tag)),
        }
    }
}

impl SaslResponse<'_> {
    /// Copies the borrowed data.
    pub fn into_owned(self) -> SaslResponse<'static> {
        match self {
            Self::Data(data) => SaslResponse::Data(data.map(owned_str)),
            Self::Cancel => SaslResponse::Cancel,
        }
    }
}

pub(crate) fn owned_str(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}
