//! The response values.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::ResponseError;
use crate::command::owned_str;
use crate::{MsgNum, Secret};

/// `+OK` or `-ERR` (RFC 1939 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Status {
    /// `+OK`: the command succeeded.
    Ok,
    /// `-ERR`: the command failed.
    Err,
}

/// An RFC 2449 §8 response code: the bracketed word after the status indicator that lets a
/// client tell "wrong password" from "mailbox locked" from "try again later".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RespCode<'a> {
    /// `[IN-USE]`: the maildrop is locked by another session (RFC 2449 §8.1.1).
    InUse,
    /// `[LOGIN-DELAY]`: logging in again so soon is not allowed (RFC 2449 §8.1.2).
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary system problem; try again later (RFC 3206 §4).
    SysTemp,
    /// `[SYS/PERM]`: a permanent system problem (RFC 3206 §4).
    SysPerm,
    /// `[AUTH]`: the credentials were wrong (RFC 3206 §5).
    Auth,
    /// `[UTF8]`: the command needs UTF-8 mode (RFC 6856 §2).
    Utf8,
    /// Any other hierarchical code, kept verbatim (e.g. `EXT/FOO`).
    Other(Cow<'a, str>),
}

/// A status line: `+OK` or `-ERR`, an optional response code, and human-readable text.
///
/// RFC 1939 §3: "Responses in the POP3 consist of a status indicator and a keyword possibly
/// followed by additional information." The text is kept as UTF-8; invalid octets from old
/// servers are replaced (U+FFFD) rather than failing the whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StatusLine<'a> {
    /// `+OK` or `-ERR`.
    pub status: Status,
    /// The RFC 2449 response code, if any.
    pub code: Option<RespCode<'a>>,
    /// The text after the code; may be empty.
    pub text: Cow<'a, str>,
}

/// One line of a `LIST` response (RFC 1939 §5, "scan listing").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ScanListing {
    /// The message number.
    pub msg: MsgNum,
    /// The exact size in octets, as the message would be sent (CRLF line ends, before
    /// dot-stuffing).
    pub size: u64,
}

/// One line of a `UIDL` response (RFC 1939 §7, "unique-id listing").
///
/// The unique id is checked on construction: 1 to 70 octets in 0x21..=0x7E. That makes it safe
/// to put on the wire as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UidListing<'a> {
    msg: MsgNum,
    uid: Cow<'a, str>,
}

/// One line of a `LANG` listing (RFC 6856 §3): a language tag and its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LangListing<'a> {
    /// The language tag (RFC 5646).
    pub tag: Cow<'a, str>,
    /// A description, in that language; may be empty.
    pub description: Cow<'a, str>,
}

/// The `EXPIRE` capability's policy (RFC 2449 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Expire {
    /// `NEVER`: the server never deletes messages on its own.
    Never,
    /// Messages may be deleted this many days after they were first retrieved.
    Days(u32),
}

/// One capability from a `CAPA` response (RFC 2449 §5 and §6; RFC 2595, 5034, 6856).
///
/// Names are case-insensitive on the wire. A known capability whose parameters do not parse is
/// kept as [`Capability::Other`], so a quirky server never makes the whole listing fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability<'a> {
    /// `TOP` (RFC 2449 §6.1).
    Top,
    /// `USER` (RFC 2449 §6.2).
    User,
    /// `SASL mechanisms...` (RFC 2449 §6.3, RFC 5034 §3).
    Sasl(Vec<Cow<'a, str>>),
    /// `RESP-CODES` (RFC 2449 §6.4).
    RespCodes,
    /// `LOGIN-DELAY seconds [USER]` (RFC 2449 §6.5).
    LoginDelay {
        /// Minimum seconds between logins.
        seconds: u32,
        /// `USER`: the value varies per user (only sent after login).
        per_user: bool,
    },
    /// `PIPELINING` (RFC 2449 §6.6).
    Pipelining,
    /// `EXPIRE policy [USER]` (RFC 2449 §6.7).
    Expire {
        /// The retention policy.
        policy: Expire,
        /// `USER`: the value varies per user.
        per_user: bool,
    },
    /// `UIDL` (RFC 2449 §6.8).
    Uidl,
    /// `IMPLEMENTATION text` (RFC 2449 §6.9).
    Implementation(Cow<'a, str>),
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `AUTH-RESP-CODE` (RFC 3206 §6).
    AuthRespCode,
    /// `UTF8 [USER]` (RFC 6856 §2); `USER`: the USER command accepts UTF-8 names.
    Utf8 {
        /// The `USER` parameter was present.
        user: bool,
    },
    /// `LANG` (RFC 6856 §3).
    Lang,
    /// Anything else, name and parameters verbatim.
    Other {
        /// The capability name.
        name: Cow<'a, str>,
        /// The space-separated parameters.
        params: Vec<Cow<'a, str>>,
    },
}

/// What a client expects in answer to the command it sent; see the [module docs](super).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// A single status line: most commands, the greeting, and the first line of RETR and TOP.
    Status,
    /// A SASL challenge (`+ base64`) or the final status line (RFC 5034 §4).
    Sasl,
    /// `CAPA`: a status line, then capabilities.
    Capa,
    /// `LIST` without argument: a status line, then scan listings.
    List,
    /// `UIDL` without argument: a status line, then unique-id listings.
    Uidl,
    /// `LANG` without argument: a status line, then language listings.
    Lang,
}

/// A whole response, as [`ResponseDecoder::decode`](crate::ResponseDecoder::decode) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// A single status line (also any `-ERR`, whatever was expected).
    Status(StatusLine<'a>),
    /// A SASL challenge, base64 (RFC 5034 §4).
    Challenge(Secret<Cow<'a, str>>),
    /// `+OK` and a CAPA listing.
    Capabilities(StatusLine<'a>, Vec<Capability<'a>>),
    /// `+OK` and a LIST listing.
    ScanList(StatusLine<'a>, Vec<ScanListing>),
    /// `+OK` and a UIDL listing.
    UidList(StatusLine<'a>, Vec<UidListing<'a>>),
    /// `+OK` and a LANG listing.
    Languages(StatusLine<'a>, Vec<LangListing<'a>>),
}

/// One line of a multi-line listing, for decoding line by line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListItem<'a> {
    /// A CAPA line.
    Capability(Capability<'a>),
    /// A LIST line.
    Scan(ScanListing),
    /// A UIDL line.
    Uid(UidListing<'a>),
    /// A LANG line.
    Language(LangListing<'a>),
    /// The terminating `.` line.
    End,
}

impl<'a> StatusLine<'a> {
    /// `+OK text`.
    pub fn ok(text: impl Into<Cow<'a, str>>) -> Self {
        Self { status: Status::Ok, code: None, text: text.into() }
    }

    /// `-ERR text`.
    pub fn err(text: impl Into<Cow<'a, str>>) -> Self {
        Self { status: Status::Err, code: None, text: text.into() }
    }

    /// The same line with a response code.
    pub fn with_code(mut self, code: RespCode<'a>) -> Self {
        self.code = Some(code);
        self
    }

    /// True for `+OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The `STAT` answer, `count size` (RFC 1939 §5: "+OK nn mm").
    pub fn stat(&self) -> Option<(u32, u64)> {
        let mut words = self.text.split(' ');
        let count = words.next()?.parse().ok()?;
        let size = words.next()?.parse().ok()?;
        Some((count, size))
    }

    /// The APOP timestamp in a greeting (RFC 1939 §7): the first `<...>` containing `@`,
    /// brackets included, as the digest is computed over it.
    pub fn apop_timestamp(&self) -> Option<&str> {
        let start = self.text.find('<')?;
        let end = start + self.text[start..].find('>')?;
        let stamp = &self.text[start..=end];
        stamp.contains('@').then_some(stamp)
    }

    /// Copies every borrowed part.
    pub fn into_owned(self) -> StatusLine<'static> {
        StatusLine {
            status: self.status,
            code: self.code.map(RespCode::into_owned),
            text: owned_str(self.text),
        }
    }
}

impl RespCode<'_> {
    /// The code as written between the brackets.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InUse => "IN-USE",
            Self::LoginDelay => "LOGIN-DELAY",
            Self::SysTemp => "SYS/TEMP",
            Self::SysPerm => "SYS/PERM",
            Self::Auth => "AUTH",
            Self::Utf8 => "UTF8",
            Self::Other(code) => code,
        }
    }

    /// Copies the borrowed code.
    pub fn into_owned(self) -> RespCode<'static> {
        match self {
            Self::InUse => RespCode::InUse,
            Self::LoginDelay => RespCode::LoginDelay,
            Self::SysTemp => RespCode::SysTemp,
            Self::SysPerm => RespCode::SysPerm,
            Self::Auth => RespCode::Auth,
            Self::Utf8 => RespCode::Utf8,
            Self::Other(code) => RespCode::Other(owned_str(code)),
        }
    }
}

impl<'a> UidListing<'a> {
    /// A listing, if `uid` is 1 to 70 octets in 0x21..=0x7E (RFC 1939 §7).
    pub fn new(msg: MsgNum, uid: impl Into<Cow<'a, str>>) -> Result<Self, ResponseError> {
        let uid = uid.into();
        if is_unique_id(uid.as_bytes()) {
            Ok(Self { msg, uid })
        } else {
            Err(ResponseError::InvalidUidListing)
        }
    }

    /// The message number.
    pub fn msg(&self) -> MsgNum {
        self.msg
    }

    /// The unique id.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Copies the borrowed id.
    pub fn into_owned(self) -> UidListing<'static> {
        UidListing { msg: self.msg, uid: owned_str(self.uid) }
    }
}

impl LangListing<'_> {
    /// Copies the borrowed parts.
    pub fn into_owned(self) -> LangListing<'static> {
        LangListing { tag: owned_str(self.tag), description: owned_str(self.description) }
    }
}

impl Capability<'_> {
    /// Copies every borrowed part.
    pub fn into_owned(self) -> Capability<'static> {
        let owned_all = |v: Vec<Cow<'_, str>>| v.into_iter().map(owned_str).collect();
        match self {
            Self::Top => Capability::Top,
            Self::User => Capability::User,
            Self::Sasl(mechs) => Capability::Sasl(owned_all(mechs)),
            Self::RespCodes => Capability::RespCodes,
            Self::LoginDelay { seconds, per_user } => Capability::LoginDelay { seconds, per_user },
            Self::Pipelining => Capability::Pipelining,
            Self::Expire { policy, per_user } => Capability::Expire { policy, per_user },
            Self::Uidl => Capability::Uidl,
            Self::Implementation(text) => Capability::Implementation(owned_str(text)),
            Self::Stls => Capability::Stls,
            Self::AuthRespCode => Capability::AuthRespCode,
            Self::Utf8 { user } => Capability::Utf8 { user },
            Self::Lang => Capability::Lang,
            Self::Other { name, params } => {
                Capability::Other { name: owned_str(name), params: owned_all(params) }
            }
        }
    }
}

impl ListItem<'_> {
    /// Copies every borrowed part.
    pub fn into_owned(self) -> ListItem<'static> {
        match self {
            Self::Capability(c) => ListItem::Capability(c.into_owned()),
            Self::Scan(s) => ListItem::Scan(s),
            Self::Uid(u) => ListItem::Uid(u.into_owned()),
            Self::Language(l) => ListItem::Language(l.into_owned()),
            Self::End => ListItem::End,
        }
    }
}

impl Response<'_> {
    /// The status line, if the response has one (every response but a SASL challenge).
    pub fn status_line(&self) -> Option<&StatusLine<'_>> {
        match self {
            Self::Status(s)
            | Self::Capabilities(s, _)
            | Self::ScanList(s, _)
            | Self::UidList(s, _)
            | Self::Languages(s, _) => Some(s),
            Self::Challenge(_) => None,
        }
    }

    /// Copies every borrowed part.
    pub fn into_owned(self) -> Response<'static> {
        match self {
            Self::Status(s) => Response::Status(s.into_owned()),
            Self::Challenge(c) => Response::Challenge(c.map(owned_str)),
            Self::Capabilities(s, v) => Response::Capabilities(
                s.into_owned(),
                v.into_iter().map(Capability::into_owned).collect(),
            ),
            Self::ScanList(s, v) => Response::ScanList(s.into_owned(), v),
            Self::UidList(s, v) => Response::UidList(
                s.into_owned(),
                v.into_iter().map(UidListing::into_owned).collect(),
            ),
            Self::Languages(s, v) => Response::Languages(
                s.into_owned(),
                v.into_iter().map(LangListing::into_owned).collect(),
            ),
        }
    }
}

/// `unique-id = 1*70 %x21-7E` (RFC 1939 §7).
pub(crate) fn is_unique_id(uid: &[u8]) -> bool {
    (1..=70).contains(&uid.len()) && uid.iter().all(|b| (0x21..=0x7E).contains(b))
}
