//! LMTP commands (RFC 2033 §4, on RFC 5321's grammar) and their parser: one function per
//! grammar rule, over one already-framed line (no line end), as the POP3 command parser.

use core::fmt;
use core::str;

use bytes::{BufMut, BytesMut};
use nom::bytes::complete::{tag_no_case, take_while1};
use nom::{IResult, Parser};

/// RFC 5321 §4.5.3.1.3: a reverse-path or forward-path is at most 256 octets, brackets
/// included.
pub const MAX_PATH: usize = 256;

/// The `BODY=` parameter of `MAIL` (RFC 6152 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// One LMTP command line, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpCommand<'a> {
    /// `LHLO domain` (RFC 2033 §4.1).
    Lhlo {
        /// The client's name for itself, as sent (not checked further).
        domain: &'a str,
    },
    /// `HELO` or `EHLO`: SMTP greetings, which an LMTP server must refuse (RFC 2033 §4.1).
    SmtpGreeting,
    /// `MAIL FROM:<reverse-path> [SIZE=n] [BODY=7BIT|8BITMIME]` (RFC 5321 §4.1.1.2, RFC
    /// 1870, RFC 6152).
    Mail {
        /// The sender, without brackets or source route; empty for the null sender `<>`.
        from: &'a str,
        /// The `SIZE=` the client declared.
        size: Option<u64>,
        /// The `BODY=` the client declared.
        body: Option<Body>,
    },
    /// `RCPT TO:<forward-path>` (RFC 5321 §4.1.1.3).
    Rcpt {
        /// The recipient, without brackets or source route.
        to: &'a str,
    },
    /// `DATA` (RFC 5321 §4.1.1.4; RFC 2033 §4.2 for the replies).
    Data,
    /// `RSET` (RFC 5321 §4.1.1.5).
    Rset,
    /// `NOOP [string]` (RFC 5321 §4.1.1.9).
    Noop,
    /// `QUIT` (RFC 5321 §4.1.1.10).
    Quit,
    /// `VRFY string` (RFC 5321 §4.1.1.6).
    Vrfy,
    /// `HELP [string]` (RFC 5321 §4.1.1.8).
    Help,
}

impl LmtpCommand<'_> {
    /// Writes the command line, CRLF included: the inverse of [`parse_command`] for every
    /// command it returns (`parse_command(encode(c)) == c`; `SmtpGreeting` is written as
    /// `EHLO`, and the ignored arguments of `NOOP`, `VRFY` and `HELP` as a fixed word).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Lhlo { domain } => {
                out.put_slice(b"LHLO ");
                out.put_slice(domain.as_bytes());
            }
            Self::SmtpGreeting => out.put_slice(b"EHLO client"),
            Self::Mail { from, size, body } => {
                out.put_slice(b"MAIL FROM:<");
                out.put_slice(from.as_bytes());
                out.put_u8(b'>');
                if let Some(size) = size {
                    out.put_slice(alloc::format!(" SIZE={size}").as_bytes());
                }
                match body {
                    Some(Body::SevenBit) => out.put_slice(b" BODY=7BIT"),
                    Some(Body::EightBitMime) => out.put_slice(b" BODY=8BITMIME"),
                    None => {}
                }
            }
            Self::Rcpt { to } => {
                out.put_slice(b"RCPT TO:<");
                out.put_slice(to.as_bytes());
                out.put_u8(b'>');
            }
            Self::Data => out.put_slice(b"DATA"),
            Self::Rset => out.put_slice(b"RSET"),
            Self::Noop => out.put_slice(b"NOOP"),
            Self::Quit => out.put_slice(b"QUIT"),
            Self::Vrfy => out.put_slice(b"VRFY postmaster"),
            Self::Help => out.put_slice(b"HELP"),
        }
        out.put_slice(b"\r\n");
    }
}

/// Why a command line was refused; each maps to one reply (see
/// [`LmtpCommandError::reply_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum LmtpCommandError {
    /// An empty line.
    Empty,
    /// A keyword this server does not implement (`500 5.5.1`).
    UnknownCommand,
    /// Arguments that do not follow the command's grammar (`501 5.5.4`).
    Syntax,
    /// A `MAIL` reverse-path that is not a valid path (`501 5.1.7`).
    BadSender,
    /// A `RCPT` forward-path that is not a valid path (`501 5.1.3`).
    BadRecipient,
    /// A `MAIL` or `RCPT` parameter this server did not announce (`555 5.5.4`, RFC 5321
    /// §4.1.1.11).
    UnsupportedParameter,
    /// NUL, CR or another control octet inside the line (`500 5.5.2`).
    InvalidByte,
}

impl LmtpCommandError {
    /// The basic and enhanced reply codes for this error (RFC 5321 §4.2.3, RFC 3463).
    pub fn reply_code(self) -> (u16, [u16; 3]) {
        match self {
            Self::Empty | Self::UnknownCommand => (500, [5, 5, 1]),
            Self::InvalidByte => (500, [5, 5, 2]),
            Self::Syntax => (501, [5, 5, 4]),
            Self::BadSender => (501, [5, 1, 7]),
            Self::BadRecipient => (501, [5, 1, 3]),
            Self::UnsupportedParameter => (555, [5, 5, 4]),
        }
    }
}

impl fmt::Display for LmtpCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty command line",
            Self::UnknownCommand => "unknown command",
            Self::Syntax => "syntax error in arguments",
            Self::BadSender => "invalid sender address",
            Self::BadRecipient => "invalid recipient address",
            Self::UnsupportedParameter => "unsupported parameter",
            Self::InvalidByte => "invalid octet in command line",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LmtpCommandError {}

type PResult<'a, T> = IResult<&'a [u8], T, ()>;

/// `command = verb [SP arguments]` (RFC 5321 §4.1.1): a case-insensitive verb.
pub fn parse_command(line: &[u8]) -> Result<LmtpCommand<'_>, LmtpCommandError> {
    if line.is_empty() {
        return Err(LmtpCommandError::Empty);
    }
    // RFC 5321 §2.3.8 and §4.1.1: command lines are US-ASCII text; NUL, CR and other
    // controls (but HTAB, tolerated as white space by some clients) never belong in one.
    if line.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(LmtpCommandError::InvalidByte);
    }
    let end = line.iter().position(|b| !b.is_ascii_alphabetic()).unwrap_or(line.len());
    let (verb, rest) = line.split_at(end);
    let args = match rest {
        [] => None,
        [b' ', args @ ..] => Some(args),
        _ => return Err(LmtpCommandError::UnknownCommand),
    };
    let no_args = |command: LmtpCommand<'static>| match args {
        None => Ok(command),
        Some(a) if a.iter().all(|&b| b == b' ') => Ok(command),
        Some(_) => Err(LmtpCommandError::Syntax),
    };
    let upper = |v: &[u8], w: &str| v.eq_ignore_ascii_case(w.as_bytes());
    match verb {
        v if upper(v, "LHLO") => lhlo(args),
        v if upper(v, "HELO") || upper(v, "EHLO") => Ok(LmtpCommand::SmtpGreeting),
        v if upper(v, "MAIL") => mail(args.unwrap_or_default()),
        v if upper(v, "RCPT") => rcpt(args.unwrap_or_default()),
        v if upper(v, "DATA") => no_args(LmtpCommand::Data),
        v if upper(v, "RSET") => no_args(LmtpCommand::Rset),
        v if upper(v, "QUIT") => no_args(LmtpCommand::Quit),
        // RFC 5321 §4.1.1.9: NOOP's argument is ignored.
        v if upper(v, "NOOP") => Ok(LmtpCommand::Noop),
        v if upper(v, "VRFY") => match args {
            Some(a) if !a.trim_ascii().is_empty() => Ok(LmtpCommand::Vrfy),
            _ => Err(LmtpCommandError::Syntax),
        },
        v if upper(v, "HELP") => Ok(LmtpCommand::Help),
        _ => Err(LmtpCommandError::UnknownCommand),
    }
}

/// `lhlo = "LHLO" SP Domain` (RFC 2033 §4.1): the domain or address literal is taken as sent.
fn lhlo(args: Option<&[u8]>) -> Result<LmtpCommand<'_>, LmtpCommandError> {
    let domain = args.map(<[u8]>::trim_ascii).unwrap_or_default();
    if domain.is_empty() || domain.contains(&b' ') || !domain.is_ascii() {
        return Err(LmtpCommandError::Syntax);
    }
    // ASCII was checked.
    let domain = str::from_utf8(domain).map_err(|_| LmtpCommandError::Syntax)?;
    Ok(LmtpCommand::Lhlo { domain })
}

/// `mail = "MAIL FROM:" Reverse-path [SP Mail-parameters]` (RFC 5321 §4.1.1.2). Spaces
/// after the colon are tolerated, as Postfix and Dovecot do (some clients send them).
fn mail(args: &[u8]) -> Result<LmtpCommand<'_>, LmtpCommandError> {
    let Ok((rest, ())) = keyword_colon(args, "FROM:") else {
        return Err(LmtpCommandError::Syntax);
    };
    let (rest, from) = path(rest, true).map_err(|_| LmtpCommandError::BadSender)?;
    let mut size = None;
    let mut body = None;
    for param in params(rest)? {
        let (key, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], Some(&param[i + 1..])),
            None => (param, None),
        };
        if key.eq_ignore_ascii_case(b"SIZE") && size.is_none() {
            size = Some(size_value(value)?);
        } else if key.eq_ignore_ascii_case(b"BODY") && body.is_none() {
            body = Some(match value {
                Some(v) if v.eq_ignore_ascii_case(b"7BIT") => Body::SevenBit,
                Some(v) if v.eq_ignore_ascii_case(b"8BITMIME") => Body::EightBitMime,
                _ => return Err(LmtpCommandError::Syntax),
            });
        } else if key.eq_ignore_ascii_case(b"SIZE") || key.eq_ignore_ascii_case(b"BODY") {
            // The same parameter twice.
            return Err(LmtpCommandError::Syntax);
        } else {
            return Err(LmtpCommandError::UnsupportedParameter);
        }
    }
    Ok(LmtpCommand::Mail { from, size, body })
}

/// `rcpt = "RCPT TO:" Forward-path [SP Rcpt-parameters]` (RFC 5321 §4.1.1.3). No RCPT
/// parameter is announced, so any is refused.
fn rcpt(args: &[u8]) -> Result<LmtpCommand<'_>, LmtpCommandError> {
    let Ok((rest, ())) = keyword_colon(args, "TO:") else {
        return Err(LmtpCommandError::Syntax);
    };
    let (rest, to) = path(rest, false).map_err(|_| LmtpCommandError::BadRecipient)?;
    if !params(rest)?.is_empty() {
        return Err(LmtpCommandError::UnsupportedParameter);
    }
    Ok(LmtpCommand::Rcpt { to })
}

/// `FROM:` or `TO:`, case-insensitive, then any spaces.
fn keyword_colon<'a>(i: &'a [u8], keyword: &'static str) -> PResult<'a, ()> {
    let (i, _) = tag_no_case(keyword.as_bytes()).parse(i)?;
    let spaces = i.iter().take_while(|&&b| b == b' ').count();
    Ok((&i[spaces..], ()))
}

/// `esmtp-param *(SP esmtp-param)` after the path: the parameters, split at spaces.
fn params(rest: &[u8]) -> Result<alloc::vec::Vec<&[u8]>, LmtpCommandError> {
    let rest = rest.trim_ascii_end();
    if rest.is_empty() {
        return Ok(alloc::vec::Vec::new());
    }
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Err(LmtpCommandError::Syntax);
    };
    let mut out = alloc::vec::Vec::new();
    for param in rest.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        // `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`.
        let Ok((_, _)) = take_while1::<_, _, ()>(|b: u8| b.is_ascii_alphanumeric()).parse(param)
        else {
            return Err(LmtpCommandError::Syntax);
        };
        out.push(param);
    }
    Ok(out)
}

/// `size-value = 1*20DIGIT` (RFC 1870 §3); a value past `u64` is simply too big.
fn size_value(value: Option<&[u8]>) -> Result<u64, LmtpCommandError> {
    match value {
        Some(v) if !v.is_empty() && v.len() <= 20 && v.iter().all(u8::is_ascii_digit) => {
            Ok(v.iter().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
        }
        _ => Err(LmtpCommandError::Syntax),
    }
}

/// `Path = "<" [ A-d-l ":" ] Mailbox ">"` (RFC 5321 §4.1.2), `Reverse-path = Path / "<>"`.
/// Returns the mailbox without brackets and without the source route, which RFC 5321
/// §4.1.1.3 says to accept and ignore. The mailbox is printable US-ASCII; spaces only inside
/// a quoted local part (`"a b"@example.org`).
fn path(i: &[u8], null_ok: bool) -> PResult<'_, &str> {
    let [b'<', i @ ..] = i else { return Err(nom::Err::Error(())) };
    let mut quoted = false;
    let mut escaped = false;
    let mut end = None;
    for (n, &b) in i.iter().enumerate() {
        if !(0x20..0x7f).contains(&b) || b == b' ' && !quoted {
            return Err(nom::Err::Error(()));
        }
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => {
                end = Some(n);
                break;
            }
            _ => {}
        }
    }
    let end = end.ok_or(nom::Err::Error(()))?;
    if end + 2 > MAX_PATH {
        return Err(nom::Err::Error(()));
    }
    let (inner, rest) = (&i[..end], &i[end + 1..]);
    // `A-d-l = At-domain *( "," At-domain )`, ended by ":".
    let mailbox = match inner {
        [b'@', ..] => match inner.iter().position(|&b| b == b':') {
            Some(colon) => &inner[colon + 1..],
            None => return Err(nom::Err::Error(())),
        },
        _ => inner,
    };
    if mailbox.is_empty() && !(null_ok && inner.is_empty()) {
        return Err(nom::Err::Error(()));
    }
    // Printable ASCII was checked.
    let mailbox = str::from_utf8(mailbox).map_err(|_| nom::Err::Error(()))?;
    Ok((rest, mailbox))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> LmtpCommand<'_> {
        parse_command(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn err(line: &str) -> LmtpCommandError {
        parse_command(line.as_bytes()).expect_err(line)
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(ok("lhlo mx.example"), LmtpCommand::Lhlo { domain: "mx.example" });
        assert_eq!(ok("LHLO [127.0.0.1]"), LmtpCommand::Lhlo { domain: "[127.0.0.1]" });
        assert_eq!(ok("data"), LmtpCommand::Data);
        assert_eq!(ok("Rset"), LmtpCommand::Rset);
        assert_eq!(ok("QUIT"), LmtpCommand::Quit);
        assert_eq!(ok("NOOP anything at all"), LmtpCommand::Noop);
        assert_eq!(ok("VRFY alice"), LmtpCommand::Vrfy);
        assert_eq!(ok("HELP"), LmtpCommand::Help);
        assert_eq!(ok("EHLO x"), LmtpCommand::SmtpGreeting);
        assert_eq!(ok("HELO x"), LmtpCommand::SmtpGreeting);
    }

    #[test]
    fn mail_from_with_parameters() {
        let mail = |from, size, body| LmtpCommand::Mail { from, size, body };
        assert_eq!(ok("MAIL FROM:<a@b.example>"), mail("a@b.example", None, None));
        assert_eq!(ok("mail from:<>"), mail("", None, None));
        assert_eq!(ok("MAIL FROM: <a@b>"), mail("a@b", None, None));
        assert_eq!(
            ok("MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME"),
            mail("a@b", Some(1000), Some(Body::EightBitMime))
        );
        assert_eq!(ok("MAIL FROM:<a@b> body=7bit"), mail("a@b", None, Some(Body::SevenBit)));
        assert_eq!(
            ok("MAIL FROM:<a@b> SIZE=99999999999999999999"),
            mail("a@b", Some(u64::MAX), None)
        );
        assert_eq!(ok("MAIL FROM:<@relay.example:a@b>"), mail("a@b", None, None));
        assert_eq!(ok("MAIL FROM:<\"a b\"@c>"), mail("\"a b\"@c", None, None));
    }

    #[test]
    fn bad_mail_and_rcpt_lines() {
        assert_eq!(err("MAIL"), LmtpCommandError::Syntax);
        assert_eq!(err("MAIL TO:<a@b>"), LmtpCommandError::Syntax);
        assert_eq!(err("MAIL FROM:a@b"), LmtpCommandError::BadSender);
        assert_eq!(err("MAIL FROM:<a b@c>"), LmtpCommandError::BadSender);
        assert_eq!(err("MAIL FROM:<a@b"), LmtpCommandError::BadSender);
        assert_eq!(err("MAIL FROM:<a@b> SIZE=x"), LmtpCommandError::Syntax);
        assert_eq!(err("MAIL FROM:<a@b> SIZE=1 SIZE=2"), LmtpCommandError::Syntax);
        assert_eq!(err("MAIL FROM:<a@b> BODY=BINARYMIME"), LmtpCommandError::Syntax);
        assert_eq!(err("MAIL FROM:<a@b> SMTPUTF8"), LmtpCommandError::UnsupportedParameter);
        assert_eq!(err("MAIL FROM:<a@b>SIZE=1"), LmtpCommandError::Syntax);
        assert_eq!(err("RCPT TO:<>"), LmtpCommandError::BadRecipient);
        assert_eq!(err("RCPT TO:<a@b> NOTIFY=NEVER"), LmtpCommandError::UnsupportedParameter);
        assert_eq!(err("RCPT FROM:<a@b>"), LmtpCommandError::Syntax);
        let long = alloc::format!("RCPT TO:<{}@b>", "a".repeat(MAX_PATH));
        assert_eq!(err(&long), LmtpCommandError::BadRecipient);
    }

    #[test]
    fn rcpt_to() {
        assert_eq!(
            ok("RCPT TO:<alice@example.test>"),
            LmtpCommand::Rcpt { to: "alice@example.test" }
        );
        assert_eq!(ok("rcpt to: <Postmaster>"), LmtpCommand::Rcpt { to: "Postmaster" });
    }

    /// Every parsed command encodes to a line that parses back to it.
    #[test]
    fn encode_is_the_inverse_of_parse() {
        for line in [
            "LHLO mx.example",
            "EHLO x",
            "MAIL FROM:<>",
            "mail from: <@a,@b:x@y> size=12 body=7bit",
            "MAIL FROM:<\"a b\"@c> BODY=8BITMIME",
            "RCPT TO:<alice@example.test>",
            "DATA",
            "RSET",
            "NOOP hello",
            "QUIT",
            "VRFY bob",
            "HELP me",
        ] {
            let command = ok(line);
            let mut out = BytesMut::new();
            command.encode(&mut out);
            assert!(out.ends_with(b"\r\n"));
            assert_eq!(parse_command(&out[..out.len() - 2]), Ok(command), "{line}");
        }
    }

    #[test]
    fn other_errors() {
        assert_eq!(err(""), LmtpCommandError::Empty);
        assert_eq!(err("STARTTLS"), LmtpCommandError::UnknownCommand);
        assert_eq!(err("DATA x"), LmtpCommandError::Syntax);
        assert_eq!(err("LHLO"), LmtpCommandError::Syntax);
        assert_eq!(err("VRFY"), LmtpCommandError::Syntax);
        assert_eq!(err("NOOP\0"), LmtpCommandError::InvalidByte);
        assert_eq!(err("QU\rIT"), LmtpCommandError::InvalidByte);
        assert_eq!(err("QUIT:"), LmtpCommandError::UnknownCommand);
    }
}
