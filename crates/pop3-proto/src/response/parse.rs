//! The response grammar, one function per rule, over one already-framed line (no line end).
//!
//! A client must read what real servers send, so these rules are lenient where leniency costs
//! nothing: `+ok` in lower case, text that is not UTF-8, extra words after a scan listing
//! (RFC 1939 §5 allows them), and capability parameters that do not parse.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::str;

use nom::bytes::complete::{tag_no_case, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{map_res, opt, rest};
use nom::multi::separated_list1;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};

use super::types::{Capability, Expire, LangListing, RespCode, ScanListing, Status, StatusLine};
use super::{ResponseError, UidListing};
use crate::command::parse::is_base64;
use crate::{MsgNum, Secret};

type PResult<'a, T> = IResult<&'a [u8], T>;

/// `status-line = ("+OK" / "-ERR") [SP [resp-code SP] text]` (RFC 1939 §3, RFC 2449 §8).
///
/// Control characters mean nothing in a status line: they are read as spaces, as the encoder
/// writes them, so that a line and its re-encoding decode alike.
pub(crate) fn status_line(line: &[u8]) -> Result<StatusLine<'_>, ResponseError> {
    let control = |b: &u8| *b < 0x20 || *b == 0x7f;
    if line.iter().any(control) {
        let clean: Vec<u8> = line.iter().map(|b| if control(b) { b' ' } else { *b }).collect();
        return clean_status_line(&clean).map(StatusLine::into_owned);
    }
    clean_status_line(line)
}

fn clean_status_line(line: &[u8]) -> Result<StatusLine<'_>, ResponseError> {
    let (after, status) = status_indicator(line).map_err(|_| ResponseError::InvalidStatus)?;
    let text = match after {
        [] => &[][..],
        [b' ', text @ ..] => text,
        _ => return Err(ResponseError::InvalidStatus),
    };

    let (code, text) = match resp_code(text) {
        Ok((rest, code)) => match rest {
            [] => (Some(code), rest),
            [b' ', rest @ ..] => (Some(code), rest),
            _ => (None, text),
        },
        Err(_) => (None, text),
    };
    Ok(StatusLine { status, code, text: lossy(text) })
}

/// `"+OK" / "-ERR"`, case-insensitively (some servers send `+ok`).
fn status_indicator(i: &[u8]) -> PResult<'_, Status> {
    let ok = tag_no_case(&b"+OK"[..]).map(|_| Status::Ok);
    let err = tag_no_case(&b"-ERR"[..]).map(|_| Status::Err);
    nom::branch::alt((ok, err)).parse(i)
}

/// `resp-code = "[" resp-level *("/" resp-level) "]"` (RFC 2449 §8), where
/// `resp-level = 1*rchar` and `rchar = %x21-2E / %x30-5C / %x5E-7F`.
fn resp_code(i: &[u8]) -> PResult<'_, RespCode<'_>> {
    let level = take_while1(is_rchar);
    let levels = separated_list1(char('/'), level);
    let (rest, code) =
        delimited(char('['), nom::combinator::recognize(levels), char(']')).parse(i)?;
    Ok((rest, known_code(code)))
}

/// `rchar = %x21-2E / %x30-5C / %x5E-7F` (RFC 2449 §8), less DEL (%x7F): DEL is a control
/// character, which a status line reads as a space, so a code holding it could never be read
/// back; the encoder drops such a code instead of sending it.
fn is_rchar(b: u8) -> bool {
    matches!(b, 0x21..=0x2E | 0x30..=0x5C | 0x5E..=0x7E)
}

/// True if `code` can stand between brackets (used by the encoder to drop a malformed code).
pub(crate) fn is_resp_code(code: &[u8]) -> bool {
    !code.is_empty()
        && code
            .split(|&b| b == b'/')
            .all(|level| !level.is_empty() && level.iter().all(|&b| is_rchar(b)))
}

fn known_code(code: &[u8]) -> RespCode<'_> {
    const KNOWN: [(&[u8], RespCode<'static>); 6] = [
        (b"IN-USE", RespCode::InUse),
        (b"LOGIN-DELAY", RespCode::LoginDelay),
        (b"SYS/TEMP", RespCode::SysTemp),
        (b"SYS/PERM", RespCode::SysPerm),
        (b"AUTH", RespCode::Auth),
        (b"UTF8", RespCode::Utf8),
    ];
    KNOWN
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(code))
        .map(|(_, known)| known.clone())
        .unwrap_or_else(|| RespCode::Other(ascii(code)))
}

/// `continue-req = "+" SP [base64]` (RFC 5034 §4); a bare `+` is read as an empty challenge.
pub(crate) fn challenge(line: &[u8]) -> Result<Option<Secret<Cow<'_, str>>>, ResponseError> {
    let data = match line {
        [b'+'] => &[][..],
        [b'+', b' ', data @ ..] => data,
        _ => return Ok(None),
    };
    if is_base64(data) {
        Ok(Some(Secret::new(ascii(data))))
    } else {
        Err(ResponseError::InvalidChallenge)
    }
}

/// `scan-listing = msg SP size [SP *VCHAR]` (RFC 1939 §5: "This memo makes no requirement on
/// what follows the message size").
pub(crate) fn scan_listing(i: &[u8]) -> Result<ScanListing, ResponseError> {
    let parsed =
        (msg_num, preceded(char(' '), number::<u64>), opt(preceded(char(' '), rest))).parse(i);
    match parsed {
        Ok((_, (msg, size, _))) => Ok(ScanListing { msg, size }),
        _ => Err(ResponseError::InvalidScanListing),
    }
}

/// `unique-id-listing = msg SP unique-id`, `unique-id = 1*70 %x21-7E` (RFC 1939 §7).
pub(crate) fn uid_listing(i: &[u8]) -> Result<UidListing<'_>, ResponseError> {
    let parsed =
        (msg_num, preceded(char(' '), take_while1(|b| (0x21..=0x7E).contains(&b)))).parse(i);
    match parsed {
        Ok(([], (msg, uid))) => UidListing::new(msg, ascii(uid)),
        _ => Err(ResponseError::InvalidUidListing),
    }
}

// The listings a status line carries are read here rather than in `types.rs`, so that the
// types do not depend on their parser.
impl StatusLine<'_> {
    /// The scan listing in a `LIST msg` answer (RFC 1939 §5).
    pub fn scan_listing(&self) -> Option<ScanListing> {
        scan_listing(self.text.as_bytes()).ok()
    }

    /// The unique-id listing in a `UIDL msg` answer (RFC 1939 §7).
    pub fn uid_listing(&self) -> Option<UidListing<'_>> {
        uid_listing(self.text.as_bytes()).ok()
    }
}

/// `lang-listing = lang-tag SP description` (RFC 6856 §3).
pub(crate) fn lang_listing(i: &[u8]) -> Result<LangListing<'_>, ResponseError> {
    if !is_printable_line(i) {
        return Err(ResponseError::InvalidListLine);
    }
    let (tag, description) = match memchr::memchr(b' ', i) {
        Some(sp) => (&i[..sp], &i[sp + 1..]),
        None => (i, &[][..]),
    };
    if tag.is_empty() {
        return Err(ResponseError::InvalidListLine);
    }
    Ok(LangListing { tag: lossy(tag), description: lossy(description) })
}

/// `capability = capa-tag *(SP param)` (RFC 2449 §5).
pub(crate) fn capability(line: &[u8]) -> Result<Capability<'_>, ResponseError> {
    if line.is_empty() || !is_printable_line(line) {
        return Err(ResponseError::InvalidListLine);
    }
    let (name, params) = match memchr::memchr(b' ', line) {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &[][..]),
    };
    if name.is_empty() {
        return Err(ResponseError::InvalidListLine);
    }
    let words: Vec<&[u8]> = params.split(|&b| b == b' ').filter(|w| !w.is_empty()).collect();
    Ok(known_capability(name, params, &words).unwrap_or_else(|| Capability::Other {
        name: lossy(name),
        params: words.iter().map(|w| lossy(w)).collect(),
    }))
}

/// The typed form of a capability we know, if its parameters are what its RFC says.
fn known_capability<'a>(
    name: &[u8],
    params: &'a [u8],
    words: &[&'a [u8]],
) -> Option<Capability<'a>> {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    let user_flag = |w: &[&[u8]]| match w {
        [] => Some(false),
        [u] if u.eq_ignore_ascii_case(b"USER") => Some(true),
        _ => None,
    };
    let bare = |cap: Capability<'a>| words.is_empty().then_some(cap);
    if is("TOP") {
        bare(Capability::Top)
    } else if is("USER") {
        bare(Capability::User)
    } else if is("SASL") {
        Some(Capability::Sasl(words.iter().map(|w| lossy(w)).collect()))
    } else if is("RESP-CODES") {
        bare(Capability::RespCodes)
    } else if is("LOGIN-DELAY") {
        let (first, more) = words.split_first()?;
        let seconds = str::from_utf8(first).ok()?.parse().ok()?;
        Some(Capability::LoginDelay { seconds, per_user: user_flag(more)? })
    } else if is("PIPELINING") {
        bare(Capability::Pipelining)
    } else if is("EXPIRE") {
        let (first, more) = words.split_first()?;
        let policy = if first.eq_ignore_ascii_case(b"NEVER") {
            Expire::Never
        } else {
            Expire::Days(str::from_utf8(first).ok()?.parse().ok()?)
        };
        Some(Capability::Expire { policy, per_user: user_flag(more)? })
    } else if is("UIDL") {
        bare(Capability::Uidl)
    } else if is("IMPLEMENTATION") {
        Some(Capability::Implementation(lossy(params)))
    } else if is("STLS") {
        bare(Capability::Stls)
    } else if is("AUTH-RESP-CODE") {
        bare(Capability::AuthRespCode)
    } else if is("UTF8") {
        Some(Capability::Utf8 { user: user_flag(words)? })
    } else if is("LANG") {
        bare(Capability::Lang)
    } else {
        None
    }
}

fn msg_num(i: &[u8]) -> PResult<'_, MsgNum> {
    map_res(number::<u32>, |n| MsgNum::new(n).ok_or(())).parse(i)
}

fn number<T: str::FromStr>(i: &[u8]) -> PResult<'_, T> {
    map_res(digit1, |d: &[u8]| ascii(d).parse::<T>()).parse(i)
}

fn is_printable_line(line: &[u8]) -> bool {
    !line.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// Octets checked to be ASCII by the caller's rule, borrowed as `&str`.
fn ascii(s: &[u8]) -> Cow<'_, str> {
    lossy(s)
}

/// UTF-8 text, borrowed when valid, with U+FFFD replacements when not.
fn lossy(s: &[u8]) -> Cow<'_, str> {
    match str::from_utf8(s) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(String::from_utf8_lossy(s).into_owned()),
    }
}
