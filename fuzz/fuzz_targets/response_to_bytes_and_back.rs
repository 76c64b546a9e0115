//! `response_to_bytes_and_back`: arbitrary `Response` values, encoded and decoded.
//!
//! A response is built from arbitrary parts (`Response`, `Capability`, `UidListing` and
//! `LangListing` have no `Arbitrary` impl): a variant is picked, multi-line variants get a
//! `+OK` status line (after `-ERR` the listing would not be sent), unique ids come from a
//! valid alphabet or arbitrary text (invalid ones are skipped by `UidListing::new`), and
//! challenges are real base64 or arbitrary text. It is encoded with `Response::encode` and
//! decoded with the matching `Expect` (`Status` or `Sasl` for a status line) and generous
//! limits. Checked:
//!
//! - encoding never panics, and a status line is never longer than 512 octets;
//! - if the value is *canonical* (what the decoder would produce from its own encoding:
//!   no control characters in texts, a status text that does not begin with `[` when there is
//!   no code, codes well-formed and not a known code spelt otherwise, a status line that needs
//!   no cutting, capability and language words that are non-empty, unspaced, and not a known
//!   capability under an `Other` name, base64 challenges): decoding consumes the whole
//!   encoding and gives back exactly the value (always the case for LIST listings);
//! - if the value is *stable* (weaker: it may be sanitised or cut, but nothing in it is
//!   re-read differently; not so for a status text that begins with `[` without a code, or an
//!   `Other` code or capability that is a known one spelt otherwise): decoding succeeds and
//!   the re-encoding equals the encoding;
//! - for any value that decodes: encode/decode/encode of the result is stable (the decoder's
//!   output is a fixed point).

#![no_main]
#![forbid(unsafe_code)]

use std::borrow::Cow;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pop3_proto::{
    Capability, Expect, Expire, LangListing, Limits, MsgNum, RespCode, Response, ResponseDecoder,
    ScanListing, Secret, Status, StatusLine, UidListing,
};

/// The capability names the decoder turns into typed variants.
const KNOWN_CAPABILITIES: [&str; 13] = [
    "TOP",
    "USER",
    "SASL",
    "RESP-CODES",
    "LOGIN-DELAY",
    "PIPELINING",
    "EXPIRE",
    "UIDL",
    "IMPLEMENTATION",
    "STLS",
    "AUTH-RESP-CODE",
    "UTF8",
    "LANG",
];

/// The response codes the decoder turns into typed variants.
const KNOWN_CODES: [&str; 6] = ["IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM", "AUTH", "UTF8"];

fn generous() -> Limits {
    Limits { response_line: 1 << 20, ..Limits::default() }
}

// ---- building arbitrary values ----

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A word: usually a plausible one (printable ASCII without spaces), sometimes any text.
fn word<'a>(u: &mut Unstructured<'a>) -> Result<Cow<'a, str>> {
    if u.ratio(1, 8)? {
        return Ok(Cow::Borrowed(<&str>::arbitrary(u)?));
    }
    let len = u.int_in_range(1..=12)?;
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        s.push(char::from(u.int_in_range(0x21..=0x7e)?));
    }
    Ok(Cow::Owned(s))
}

/// A capability name: usually a known one in some case, or a plausible other one.
fn capability_name<'a>(u: &mut Unstructured<'a>) -> Result<Cow<'a, str>> {
    if u.ratio(1, 3)? {
        let name = *u.choose(&KNOWN_CAPABILITIES)?;
        return Ok(Cow::Owned(if u.arbitrary()? {
            name.to_ascii_lowercase()
        } else {
            name.to_owned()
        }));
    }
    word(u)
}

fn words<'a>(u: &mut Unstructured<'a>) -> Result<Vec<Cow<'a, str>>> {
    let n = u.int_in_range(0..=4)?;
    (0..n).map(|_| word(u)).collect()
}

fn capability<'a>(u: &mut Unstructured<'a>) -> Result<Capability<'a>> {
    Ok(match u.int_in_range(0..=13)? {
        0 => Capability::Top,
        1 => Capability::User,
        2 => Capability::Sasl(words(u)?),
        3 => Capability::RespCodes,
        4 => Capability::LoginDelay { seconds: u.arbitrary()?, per_user: u.arbitrary()? },
        5 => Capability::Pipelining,
        6 => Capability::Expire { policy: u.arbitrary::<Expire>()?, per_user: u.arbitrary()? },
        7 => Capability::Uidl,
        8 => Capability::Implementation(Cow::Borrowed(u.arbitrary()?)),
        9 => Capability::Stls,
        10 => Capability::AuthRespCode,
        11 => Capability::Utf8 { user: u.arbitrary()? },
        12 => Capability::Lang,
        _ => Capability::Other { name: capability_name(u)?, params: words(u)? },
    })
}

fn uid_listing<'a>(u: &mut Unstructured<'a>) -> Result<Option<UidListing<'a>>> {
    let msg = MsgNum::arbitrary(u)?;
    let uid: Cow<'a, str> = if u.ratio(1, 8)? {
        Cow::Borrowed(u.arbitrary()?)
    } else {
        let len = u.int_in_range(1..=70)?;
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            s.push(char::from(u.int_in_range(0x21..=0x7e)?));
        }
        Cow::Owned(s)
    };
    Ok(UidListing::new(msg, uid).ok())
}

fn lang_listing<'a>(u: &mut Unstructured<'a>) -> Result<LangListing<'a>> {
    let tag = if u.ratio(1, 8)? {
        Cow::Borrowed(u.arbitrary()?)
    } else {
        Cow::Borrowed(*u.choose(&["en", "de", "pt-BR", "i-default", "x-klingon", ".x"])?)
    };
    Ok(LangListing { tag, description: Cow::Borrowed(u.arbitrary()?) })
}

fn status_line<'a>(u: &mut Unstructured<'a>) -> Result<StatusLine<'a>> {
    let mut line = StatusLine::arbitrary(u)?;
    // Steer some codes to the spellings that matter: known codes in another case, and
    // hierarchical ones.
    if let Some(RespCode::Other(code)) = &mut line.code {
        match u.int_in_range(0..=3)? {
            0 => *code = Cow::Owned(u.choose(&KNOWN_CODES)?.to_ascii_lowercase()),
            1 => *code = Cow::Borrowed(*u.choose(&KNOWN_CODES)?),
            2 => *code = Cow::Owned(format!("{}/{}", word(u)?, word(u)?)),
            _ => {}
        }
    }
    Ok(line)
}

/// A response and the `Expect` that decodes it.
fn response<'a>(u: &mut Unstructured<'a>) -> Result<(Response<'a>, Expect)> {
    let variant = u.int_in_range(0..=5)?;
    let mut status = status_line(u)?;
    if variant >= 2 {
        status.status = Status::Ok;
    }
    Ok(match variant {
        0 => {
            let expect = if u.arbitrary()? { Expect::Sasl } else { Expect::Status };
            (Response::Status(status), expect)
        }
        1 => {
            let data: Cow<'a, str> = if u.ratio(1, 4)? {
                Cow::Borrowed(u.arbitrary()?)
            } else {
                Cow::Owned(base64(u.arbitrary()?))
            };
            (Response::Challenge(Secret::new(data)), Expect::Sasl)
        }
        2 => {
            let items = u.arbitrary_iter()?.collect::<Result<Vec<ScanListing>>>()?;
            (Response::ScanList(status, items), Expect::List)
        }
        3 => {
            let n = u.int_in_range(0..=8)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.extend(uid_listing(u)?);
            }
            (Response::UidList(status, items), Expect::Uidl)
        }
        4 => {
            let n = u.int_in_range(0..=8)?;
            let items = (0..n).map(|_| capability(u)).collect::<Result<_>>()?;
            (Response::Capabilities(status, items), Expect::Capa)
        }
        _ => {
            let n = u.int_in_range(0..=8)?;
            let items = (0..n).map(|_| lang_listing(u)).collect::<Result<_>>()?;
            (Response::Languages(status, items), Expect::Lang)
        }
    })
}

// ---- what the decoder gives back ----

fn has_control(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// A word that reads back as itself in a space-separated list.
fn plain_word(s: &str) -> bool {
    !s.is_empty() && !has_control(s) && !s.contains(' ')
}

/// RFC 2449 `rchar` less DEL, which the decoder reads as a space (as the encoder does).
fn is_rchar(b: u8) -> bool {
    matches!(b, 0x21..=0x2E | 0x30..=0x5C | 0x5E..=0x7E)
}

/// RFC 2449 §8 `resp-code` syntax (what the encoder keeps).
fn well_formed_code(code: &str) -> bool {
    !code.is_empty()
        && code.split('/').all(|level| !level.is_empty() && level.bytes().all(is_rchar))
}

/// An `Other` code that the decoder reads back as a typed code.
fn other_code_is_known(code: &RespCode<'_>) -> bool {
    match code {
        RespCode::Other(c) => KNOWN_CODES.iter().any(|k| k.eq_ignore_ascii_case(c)),
        _ => false,
    }
}

/// Nothing in the status line is re-read differently (it may still be sanitised or cut).
/// Two things are: an `Other` code that is a known code spelt in another case (it comes back
/// as the typed code, written in upper case), and, without a code, a text that begins with
/// `[`: `[X] more` comes back as code `X` and text `more`, so `[X] ` loses its space.
fn status_stable(s: &StatusLine<'_>) -> bool {
    let known_respelt = s
        .code
        .as_ref()
        .is_some_and(|c| other_code_is_known(c) && !KNOWN_CODES.contains(&c.as_str()));
    let code_in_text = s.code.is_none() && s.text.starts_with('[');
    !known_respelt && !code_in_text
}

/// The status line's encoding needs no change: no cut, no sanitising, no dropped code.
fn status_canonical(s: &StatusLine<'_>) -> bool {
    let indicator = match s.status {
        Status::Ok => 3,
        Status::Err => 4,
    };
    let code_len = s.code.as_ref().map_or(0, |c| c.as_str().len() + 3);
    let text_len = if s.text.is_empty() { 0 } else { s.text.len() + 1 };
    let code_ok = match &s.code {
        None => !s.text.starts_with('['),
        Some(c) => well_formed_code(c.as_str()) && !other_code_is_known(c),
    };
    code_ok && !has_control(&s.text) && indicator + code_len + text_len + 2 <= 512
}

fn capability_stable(c: &Capability<'_>) -> bool {
    match c {
        Capability::Sasl(mechanisms) => mechanisms.iter().all(|m| plain_word(m)),
        Capability::Other { name, params } => {
            plain_word(name)
                && !KNOWN_CAPABILITIES.iter().any(|k| k.eq_ignore_ascii_case(name))
                && params.iter().all(|p| plain_word(p))
        }
        _ => true,
    }
}

fn capability_canonical(c: &Capability<'_>) -> bool {
    match c {
        Capability::Implementation(text) => !has_control(text),
        other => capability_stable(other),
    }
}

fn is_base64(s: &str) -> bool {
    let s = s.as_bytes();
    let padding = s.iter().rev().take_while(|&&b| b == b'=').count();
    s.len() % 4 == 0
        && padding <= 2
        && s[..s.len() - padding]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// `(stable, canonical)` for a whole response.
fn classify(response: &Response<'_>) -> (bool, bool) {
    match response {
        Response::Status(s) => (status_stable(s), status_canonical(s)),
        Response::Challenge(data) => {
            let ok = is_base64(data.expose());
            (ok, ok)
        }
        Response::ScanList(s, _) | Response::UidList(s, _) => {
            (status_stable(s), status_canonical(s))
        }
        Response::Capabilities(s, items) => (
            status_stable(s) && items.iter().all(capability_stable),
            status_canonical(s) && items.iter().all(capability_canonical),
        ),
        Response::Languages(s, items) => {
            let stable = items.iter().all(|l| plain_word(&l.tag));
            let canonical = stable && items.iter().all(|l| !has_control(&l.description));
            (status_stable(s) && stable, status_canonical(s) && canonical)
        }
    }
}

fn encode(response: &Response<'_>) -> BytesMut {
    let mut out = BytesMut::new();
    response.encode(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((response, expect)) = response(&mut u) else {
        return;
    };
    if let Some(status) = response.status_line() {
        let mut line = BytesMut::new();
        status.encode(&mut line);
        assert!(line.len() <= Limits::RFC_RESPONSE_LINE, "{line:?}");
    }
    let first = encode(&response);
    let (stable, canonical) = classify(&response);
    let d = ResponseDecoder::new(generous()).decode(&first, expect);
    let decoded = match d.outcome {
        Ok(Some(decoded)) => {
            assert_eq!(d.consumed, first.len(), "{expect:?} {first:?}");
            decoded
        }
        other => {
            assert!(
                !stable,
                "{response:?} encodes as {first:?}, which does not decode with {expect:?}: {other:?}"
            );
            return;
        }
    };
    let second = encode(&decoded);
    if canonical {
        assert_eq!(decoded, response, "{first:?}");
    }
    if stable {
        assert_eq!(second, first, "{response:?} then {decoded:?}");
    }
    // Listing lines are always read back exactly, whatever the status line.
    match (&response, &decoded) {
        (Response::ScanList(_, a), Response::ScanList(_, b)) => assert_eq!(a, b),
        (Response::UidList(_, a), Response::UidList(_, b)) => assert_eq!(a, b),
        (Response::ScanList(..) | Response::UidList(..), other) => {
            panic!("{response:?} came back as {other:?}")
        }
        _ => {}
    }
    // The decoder's output is a fixed point of encode/decode.
    let d = ResponseDecoder::new(generous()).decode(&second, expect);
    assert_eq!(d.consumed, second.len(), "{expect:?} {second:?}");
    let again = match d.outcome {
        Ok(Some(again)) => again,
        other => panic!("{expect:?} {second:?} does not decode: {other:?}"),
    };
    assert_eq!(encode(&again), second, "{decoded:?} then {again:?}");
});
