//! The command grammar, one function per rule, over one already-framed line (no line end).
//!
//! Framing happens first (see `line.rs`), so these are `nom` *complete* parsers: a missing
//! argument is an error, never "incomplete". Each rule fails with the precise [`CommandError`].

use alloc::borrow::Cow;
use core::str;

use nom::bytes::complete::take_while1;
use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Parser};

use super::{Command, CommandError, LangArg, SaslResponse};
use crate::{MsgNum, Secret};

/// A nom error that carries the exact [`CommandError`] to report.
#[derive(Debug, PartialEq)]
struct Reject(CommandError);

impl<I> ParseError<I> for Reject {
    fn from_error_kind(_: I, _: ErrorKind) -> Self {
        Self(CommandError::InvalidArgument)
    }

    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type PResult<'a, T> = IResult<&'a [u8], T, Reject>;

fn reject<T>(e: CommandError) -> Result<T, nom::Err<Reject>> {
    Err(nom::Err::Failure(Reject(e)))
}

fn finish<T>(r: PResult<'_, T>) -> Result<T, CommandError> {
    match r {
        Ok(([], value)) => Ok(value),
        Ok(_) => Err(CommandError::TooManyArguments),
        Err(nom::Err::Error(Reject(e)) | nom::Err::Failure(Reject(e))) => Err(e),
        Err(nom::Err::Incomplete(_)) => Err(CommandError::MissingArgument),
    }
}

/// `command = keyword [SP arguments]` (RFC 1939 §3).
#[inline]
pub(crate) fn command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    if line.is_empty() {
        return Err(CommandError::Empty);
    }
    // RFC 1939 §3: keywords and arguments are printable; NUL, and CR inside a line, are never
    // part of a valid command. Every rule below rejects them by its own character class, except
    // PASS, which checks for them itself; so the check costs nothing on the success path and
    // only picks the error to report when a line fails.
    dispatch(line).map_err(|e| if has_nul_or_cr(line) { CommandError::InvalidByte } else { e })
}

fn dispatch(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let (kw, args) = split_keyword(line)?;
    let no_args = |command: Command<'static>| match args {
        None => Ok(command),
        Some(_) => Err(CommandError::TooManyArguments),
    };
    match keyword_code(kw) {
        USER => user(required(args)?),
        PASS => pass(required(args)?),
        APOP => apop(required(args)?),
        QUIT => no_args(Command::Quit),
        STAT => no_args(Command::Stat),
        LIST => Ok(Command::List(optional_msg(args)?)),
        RETR => Ok(Command::Retr(finish(msg_num(required(args)?))?)),
        DELE => Ok(Command::Dele(finish(msg_num(required(args)?))?)),
        NOOP => no_args(Command::Noop),
        RSET => no_args(Command::Rset),
        TOP => finish(top(required(args)?)),
        UIDL => Ok(Command::Uidl(optional_msg(args)?)),
        CAPA => no_args(Command::Capa),
        STLS => no_args(Command::Stls),
        AUTH => finish(auth(required(args)?)),
        UTF8 => no_args(Command::Utf8),
        LANG => lang(args),
        LAST => no_args(Command::Last),
        _ => Err(CommandError::UnknownCommand),
    }
}

/// A keyword of up to four alphanumeric octets packed into an integer with bit 5 cleared, so
/// that finding the command is one integer `match` rather than a chain of slice comparisons.
/// Clearing bit 5 upper-cases letters (RFC 1939 §3: keywords are case-insensitive) and maps
/// digits to 0x10-0x19, which no letter reaches, so distinct keywords keep distinct codes.
const fn keyword_code(kw: &[u8]) -> u32 {
    let mut padded = [0u8; 4];
    let mut i = 0;
    while i < kw.len() && i < 4 {
        padded[i] = kw[i];
        i += 1;
    }
    u32::from_be_bytes(padded) & 0xDFDF_DFDF
}

const USER: u32 = keyword_code(b"USER");
const PASS: u32 = keyword_code(b"PASS");
const APOP: u32 = keyword_code(b"APOP");
const QUIT: u32 = keyword_code(b"QUIT");
const STAT: u32 = keyword_code(b"STAT");
const LIST: u32 = keyword_code(b"LIST");
const RETR: u32 = keyword_code(b"RETR");
const DELE: u32 = keyword_code(b"DELE");
const NOOP: u32 = keyword_code(b"NOOP");
const RSET: u32 = keyword_code(b"RSET");
const TOP: u32 = keyword_code(b"TOP");
const UIDL: u32 = keyword_code(b"UIDL");
const CAPA: u32 = keyword_code(b"CAPA");
const STLS: u32 = keyword_code(b"STLS");
const AUTH: u32 = keyword_code(b"AUTH");
const UTF8: u32 = keyword_code(b"UTF8");
const LANG: u32 = keyword_code(b"LANG");
const LAST: u32 = keyword_code(b"LAST");

/// NUL or CR inside a framed line (it holds no LF). Command lines are short, and a plain loop
/// beats a vectorised search's setup cost on a dozen octets.
fn has_nul_or_cr(line: &[u8]) -> bool {
    if line.len() > 64 {
        return memchr::memchr2(b'\0', b'\r', line).is_some();
    }
    line.iter().any(|&b| b == b'\0' || b == b'\r')
}

/// `keyword = 3*4VCHAR` (RFC 1939 §3); in practice letters and digits (`UTF8`). Returns the
/// keyword and the arguments after the single separating space, if any.
fn split_keyword(line: &[u8]) -> Result<(&[u8], Option<&[u8]>), CommandError> {
    let end = line.iter().position(|b| !b.is_ascii_alphanumeric()).unwrap_or(line.len());
    let (kw, rest) = line.split_at(end);
    let args = match rest {
        _ if kw.is_empty() => return Err(CommandError::InvalidKeyword),
        [] => None,
        [b' ', args @ ..] => Some(args),
        _ => return Err(CommandError::InvalidKeyword),
    };
    if kw.len() > 4 {
        return Err(CommandError::UnknownCommand);
    }
    Ok((kw, args))
}

/// `PASS string` (RFC 1939 §7): any octets but NUL and CR (the line holds no LF).
fn pass(arg: &[u8]) -> Result<Command<'_>, CommandError> {
    if has_nul_or_cr(arg) {
        return Err(CommandError::InvalidByte);
    }
    Ok(Command::Pass(Secret::new(Cow::Borrowed(arg))))
}

fn required(args: Option<&[u8]>) -> Result<&[u8], CommandError> {
    args.ok_or(CommandError::MissingArgument)
}

/// `msg = 1*DIGIT` with a value from 1 to 2^32 - 1; no sign, no trailing noise.
fn msg_num(i: &[u8]) -> PResult<'_, MsgNum> {
    let (i, n) = number(i)?;
    match MsgNum::new(n) {
        Some(msg) => Ok((i, msg)),
        None => reject(CommandError::ZeroMessageNumber),
    }
}

/// `number = 1*DIGIT` fitting 32 bits, ending at a space or the end of the line. The hottest
/// rule of a pipelined session (RETR, DELE, LIST, TOP), so one pass accumulates and checks.
fn number(i: &[u8]) -> PResult<'_, u32> {
    let end = i.iter().position(|b| !b.is_ascii_digit()).unwrap_or(i.len());
    let (digits, rest) = i.split_at(end);
    if digits.is_empty() || !matches!(rest, [] | [b' ', ..]) {
        return reject(CommandError::InvalidNumber);
    }
    let mut n: u32 = 0;
    for &d in digits {
        n = match n.checked_mul(10).and_then(|n| n.checked_add(u32::from(d - b'0'))) {
            Some(n) => n,
            None => return reject(CommandError::NumberOverflow),
        };
    }
    Ok((rest, n))
}

/// A single space between arguments (RFC 1939 §3: "separated by a single SPACE character").
fn space(i: &[u8]) -> PResult<'_, ()> {
    match i {
        [b' ', rest @ ..] => Ok((rest, ())),
        [] => reject(CommandError::MissingArgument),
        _ => reject(CommandError::TooManyArguments),
    }
}

/// `LIST [msg]` and `UIDL [msg]`.
fn optional_msg(args: Option<&[u8]>) -> Result<Option<MsgNum>, CommandError> {
    args.map(|a| finish(msg_num(a))).transpose()
}

/// `TOP msg n` (RFC 1939 §7); `n` may be 0.
fn top(i: &[u8]) -> PResult<'_, Command<'_>> {
    let (i, msg) = msg_num(i)?;
    let (i, ()) = space(i)?;
    let (i, lines) = number(i)?;
    Ok((i, Command::Top { msg, lines }))
}

/// `USER name`: the name is the rest of the line, UTF-8 (RFC 6856), without control characters.
fn user(arg: &[u8]) -> Result<Command<'_>, CommandError> {
    Ok(Command::User(Cow::Borrowed(text(arg)?)))
}

/// `APOP name digest` (RFC 1939 §7): the digest is the last word, 32 hexadecimal digits.
fn apop(arg: &[u8]) -> Result<Command<'_>, CommandError> {
    let split = memchr::memrchr(b' ', arg).ok_or(CommandError::MissingArgument)?;
    let (name, digest) = (&arg[..split], &arg[split + 1..]);
    if !is_apop_digest(digest) {
        return Err(CommandError::InvalidArgument);
    }
    Ok(Command::Apop {
        name: Cow::Borrowed(text(name)?),
        digest: Secret::new(Cow::Borrowed(ascii(digest))),
    })
}

/// `AUTH mechanism [SP initial-response]` (RFC 5034 §4); `=` is the empty initial response.
fn auth(i: &[u8]) -> PResult<'_, Command<'_>> {
    let (i, mechanism) = match take_while1::<_, _, Reject>(is_mechanism_char).parse(i) {
        Ok((rest, m)) if m.len() <= 20 && matches!(rest, [] | [b' ', ..]) => (rest, m),
        _ => return reject(CommandError::InvalidArgument),
    };
    let mechanism = Cow::Borrowed(ascii(mechanism));
    if i.is_empty() {
        return Ok((i, Command::Auth { mechanism, initial_response: None }));
    }
    let (i, ()) = space(i)?;
    let (i, initial) = match take_while1::<_, _, Reject>(|b: u8| b != b' ').parse(i) {
        Ok((rest, b"=")) => (rest, ""),
        Ok((rest, data)) if is_base64(data) => (rest, ascii(data)),
        _ => return reject(CommandError::InvalidArgument),
    };
    let initial_response = Some(Secret::new(Cow::Borrowed(initial)));
    Ok((i, Command::Auth { mechanism, initial_response }))
}

/// `LANG [lang-or-wild]` (RFC 6856 §3).
fn lang(args: Option<&[u8]>) -> Result<Command<'_>, CommandError> {
    let arg = match args {
        None => return Ok(Command::Lang(LangArg::List)),
        Some(b"*") => return Ok(Command::Lang(LangArg::Wildcard)),
        Some(arg) => arg,
    };
    if memchr::memchr(b' ', arg).is_some() {
        return Err(CommandError::TooManyArguments);
    }
    if !is_language_tag(arg) {
        return Err(CommandError::InvalidArgument);
    }
    Ok(Command::Lang(LangArg::Tag(Cow::Borrowed(ascii(arg)))))
}

/// A client line during a SASL exchange (RFC 5034 §4): base64, empty, or `*` to cancel.
pub(crate) fn sasl_response(line: &[u8]) -> Result<SaslResponse<'_>, CommandError> {
    match line {
        b"*" => Ok(SaslResponse::Cancel),
        data if is_base64(data) => Ok(SaslResponse::Data(Secret::new(Cow::Borrowed(ascii(data))))),
        data if memchr::memchr3(b'\0', b'\r', b'\n', data).is_some() => {
            Err(CommandError::InvalidByte)
        }
        _ => Err(CommandError::InvalidArgument),
    }
}

/// A text argument: UTF-8 without control characters.
pub(crate) fn text(arg: &[u8]) -> Result<&str, CommandError> {
    if arg.is_empty() {
        return Err(CommandError::MissingArgument);
    }
    if arg.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(CommandError::InvalidByte);
    }
    str::from_utf8(arg).map_err(|_| CommandError::InvalidUtf8)
}

/// RFC 4422 §3.1: mechanism names are upper-case letters, digits, `-` and `_`; we accept lower
/// case too, since keywords are case-insensitive on the wire.
fn is_mechanism_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

pub(crate) fn is_mechanism(s: &[u8]) -> bool {
    (1..=20).contains(&s.len()) && s.iter().all(|&b| is_mechanism_char(b))
}

pub(crate) fn is_apop_digest(s: &[u8]) -> bool {
    s.len() == 32 && s.iter().all(u8::is_ascii_hexdigit)
}

/// RFC 5646 in outline: alphanumeric subtags of 1 to 8 octets joined by `-`.
pub(crate) fn is_language_tag(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split(|&b| b == b'-')
            .all(|sub| (1..=8).contains(&sub.len()) && sub.iter().all(u8::is_ascii_alphanumeric))
}

/// RFC 4648 §4 base64 with padding: groups of four from the alphabet, `=` only at the end.
/// The empty string is valid (the empty SASL response).
pub(crate) fn is_base64(s: &[u8]) -> bool {
    if s.len() % 4 != 0 {
        return false;
    }
    let padding = s.iter().rev().take_while(|&&b| b == b'=').count();
    padding <= 2
        && s[..s.len() - padding]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Bytes already checked to be ASCII, as `&str`.
fn ascii(s: &[u8]) -> &str {
    // Every caller has checked the octets against an ASCII-only rule.
    str::from_utf8(s).unwrap_or_default()
}
