//! Dovecot's `pop3_uidl_format`: the template Dovecot expands into each message's UIDL.
//!
//! The syntax is that of Dovecot's `var_expand()` (`src/lib/var-expand.c`), restricted to
//! what a POP3 UIDL template uses:
//!
//! ```text
//! %[0][width][modifiers]variable     %% is a literal %
//! variable  = u | v | f | g | {uid} | {uidvalidity} | {filename} | {guid}
//! modifiers = X (decimal to lower-case hex) | L (lower case) | U (upper case), applied in order
//! width     = with a leading 0: pad with zeros on the left to that many characters;
//!             without: cut to that many characters
//! ```
//!
//! `u` is the IMAP UID and `v` the UIDVALIDITY (both decimal before `X`), `f` the file name's
//! BASE (up to the first `:`), `g` the message's GUID (the uidlist's `G` extension, else BASE,
//! as Dovecot's Maildir does). So Dovecot's default `%08Xu%08Xv` gives
//! `000000016b168fa8`: `X` prints lower-case hex (`%llx`), which is what Dovecot serves.
//!
//! Refused with a [`UidlFormatError`], so that a typo cannot silently change every UIDL:
//! `%m` (an MD5 of the header, which would mean reading every message), the other
//! modifiers, offsets (`%1.3u`, `%-2u`), unknown variables, and a template that names none of
//! `u`, `f` and `g` (every message would get the same UIDL).

use std::fmt;
use std::str::FromStr;

/// Dovecot's default `pop3_uidl_format` (Dovecot 1.1 to 2.3): UID and UIDVALIDITY as 8 hex
/// digits each.
pub const DEFAULT_UIDL_FORMAT: &str = "%08Xu%08Xv";

/// A parsed `pop3_uidl_format`. `Default` is [`DEFAULT_UIDL_FORMAT`]; parse others with
/// [`str::parse`].
///
/// The syntax is Dovecot's `var_expand()`, restricted to what a UIDL template uses:
/// `%[0][width][modifiers]variable` and `%%`. Variables: `u` (IMAP UID), `v` (UIDVALIDITY),
/// `f` (the file name up to its first `:`), `g` (the `G` extension of the uidlist, else the
/// same as `f`), or their long forms `%{uid}`, `%{uidvalidity}`, `%{filename}`, `%{guid}`.
/// Modifiers, applied in the order written: `X` (a decimal number in lower-case hex, as
/// Dovecot prints it), `L` and `U` (case). A width with a leading `0` pads with zeros, one
/// without cuts. `%m` (an MD5 of the header), other modifiers, offsets, and templates naming
/// none of `u`, `f` and `g` are refused.
///
/// ```
/// use pop3_storage::DovecotUidlFormat;
///
/// let format: DovecotUidlFormat = "%v.%u".parse()?;
/// assert_eq!(format.to_string(), "%v.%u");
/// assert!("%m".parse::<DovecotUidlFormat>().is_err());
/// # Ok::<(), pop3_storage::UidlFormatError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotUidlFormat {
    text: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Var(Expansion),
}

/// One `%` escape.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expansion {
    var: Var,
    modifiers: Vec<Modifier>,
    width: usize,
    zero_pad: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Uid,
    UidValidity,
    FileName,
    Guid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    Hex,
    Lower,
    Upper,
}

/// What a message's UIDL is made of.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub uid: u32,
    /// `None` when the uidlist's header has none.
    pub uidvalidity: Option<u32>,
    /// The file name up to the first `:`.
    pub base: &'a [u8],
    /// The `G` extension.
    pub guid: Option<&'a [u8]>,
}

/// Why a `pop3_uidl_format` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlFormatError {
    format: String,
    reason: String,
}

impl fmt::Display for UidlFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pop3_uidl_format {:?}: {}", self.format, self.reason)
    }
}

impl std::error::Error for UidlFormatError {}

impl Default for DovecotUidlFormat {
    fn default() -> Self {
        DEFAULT_UIDL_FORMAT.parse().expect("the default format parses")
    }
}

impl fmt::Display for DovecotUidlFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for DovecotUidlFormat {
    type Err = UidlFormatError;

    fn from_str(text: &str) -> Result<Self, UidlFormatError> {
        let fail = |reason: String| UidlFormatError { format: text.to_owned(), reason };
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text.as_bytes();
        while let Some((&c, after)) = rest.split_first() {
            rest = after;
            if c != b'%' {
                literal.push(c);
                continue;
            }
            if let Some(after) = rest.strip_prefix(b"%") {
                rest = after;
                literal.push(b'%');
                continue;
            }
            let expansion = escape(&mut rest).map_err(fail)?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Var(expansion));
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        let per_message = pieces.iter().any(
            |p| matches!(p, Piece::Var(e) if matches!(e.var, Var::Uid | Var::FileName | Var::Guid)),
        );
        if !per_message {
            return Err(fail(
                "names none of %u, %f and %g, so every message would get the same UIDL".into(),
            ));
        }
        Ok(Self { text: text.to_owned(), pieces })
    }
}

/// Parses one escape after its `%`: `[0][width][modifiers]variable`.
fn escape(rest: &mut &[u8]) -> Result<Expansion, String> {
    let mut take = || -> Option<u8> {
        let (&c, after) = rest.split_first()?;
        *rest = after;
        Some(c)
    };
    let mut c = take();
    let zero_pad = c == Some(b'0');
    if zero_pad {
        c = take();
    }
    let mut width = 0usize;
    while let Some(d @ b'0'..=b'9') = c {
        width = width.saturating_mul(10).saturating_add(usize::from(d - b'0'));
        c = take();
    }
    let mut modifiers = Vec::new();
    loop {
        match c {
            Some(b'X') => modifiers.push(Modifier::Hex),
            Some(b'L') => modifiers.push(Modifier::Lower),
            Some(b'U') => modifiers.push(Modifier::Upper),
            Some(m @ (b'E' | b'R' | b'H' | b'N' | b'M' | b'D' | b'T')) => {
                return Err(format!("the modifier {} is not supported", char::from(m)));
            }
            _ => break,
        }
        c = take();
    }
    let var = match c {
        Some(b'u') => Var::Uid,
        Some(b'v') => Var::UidValidity,
        Some(b'f') => Var::FileName,
        Some(b'g') => Var::Guid,
        Some(b'm') => return Err(md5_unsupported()),
        Some(b'{') => {
            let end = rest.iter().position(|&b| b == b'}').ok_or("a %{ without its }")?;
            let name = &rest[..end];
            *rest = &rest[end + 1..];
            match name {
                b"uid" => Var::Uid,
                b"uidvalidity" => Var::UidValidity,
                b"filename" => Var::FileName,
                b"guid" => Var::Guid,
                b"md5" => return Err(md5_unsupported()),
                _ => {
                    return Err(format!("unknown variable %{{{}}}", String::from_utf8_lossy(name)))
                }
            }
        }
        Some(b'.' | b'-') => {
            return Err("offsets (%N.M, %-N) are not supported".into());
        }
        Some(other) => {
            return Err(format!(
                "unknown variable %{} (use %u, %v, %f or %g)",
                char::from(other).escape_default()
            ))
        }
        None => return Err("ends inside a % escape (write %% for a percent sign)".into()),
    };
    Ok(Expansion { var, modifiers, width, zero_pad })
}

fn md5_unsupported() -> String {
    "%m (an MD5 of each message's header) is not supported".into()
}

impl DovecotUidlFormat {
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The UIDL Dovecot makes of `fields`, as bytes; `None` when the template needs the
    /// UIDVALIDITY and there is none.
    pub(crate) fn expand(&self, fields: &Fields<'_>) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text),
                Piece::Var(e) => e.expand(fields, &mut out)?,
            }
        }
        Some(out)
    }
}

impl Expansion {
    fn expand(&self, fields: &Fields<'_>, out: &mut Vec<u8>) -> Option<()> {
        let mut value = match self.var {
            Var::Uid => fields.uid.to_string().into_bytes(),
            Var::UidValidity => fields.uidvalidity?.to_string().into_bytes(),
            Var::FileName => fields.base.to_vec(),
            Var::Guid => fields.guid.unwrap_or(fields.base).to_vec(),
        };
        for m in &self.modifiers {
            match m {
                // Dovecot: str_to_ullong(), 0 when the value is not a decimal number.
                Modifier::Hex => value = format!("{:x}", decimal(&value).unwrap_or(0)).into_bytes(),
                Modifier::Lower => value.make_ascii_lowercase(),
                Modifier::Upper => value.make_ascii_uppercase(),
            }
        }
        if self.zero_pad {
            out.resize(out.len() + self.width.saturating_sub(value.len()), b'0');
            out.extend_from_slice(&value);
        } else if self.width > 0 {
            out.extend_from_slice(&value[..value.len().min(self.width)]);
        } else {
            out.extend_from_slice(&value);
        }
        Some(())
    }
}

/// A whole string of decimal digits that fits 64 bits.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(format: &str, fields: &Fields<'_>) -> String {
        let format: DovecotUidlFormat = format.parse().unwrap();
        String::from_utf8(format.expand(fields).unwrap()).unwrap()
    }

    const FIELDS: Fields<'static> = Fields {
        uid: 1,
        uidvalidity: Some(1_796_647_927),
        base: b"1700000004.M400P42.host,S=20,W=21",
        guid: None,
    };

    #[test]
    fn the_usual_formats() {
        // 1796647927 = 0x6b16abf7; Dovecot prints hex in lower case.
        assert_eq!(expand("%08Xu%08Xv", &FIELDS), "000000016b16abf7");
        assert_eq!(DovecotUidlFormat::default().expand(&FIELDS).unwrap(), b"000000016b16abf7");
        assert_eq!(expand("%u%v", &FIELDS), "11796647927");
        assert_eq!(expand("%v.%u", &FIELDS), "1796647927.1");
        assert_eq!(expand("%v-%u", &FIELDS), "1796647927-1");
        assert_eq!(expand("%u", &FIELDS), "1");
        assert_eq!(expand("%f", &FIELDS), "1700000004.M400P42.host,S=20,W=21");
        assert_eq!(expand("%g", &FIELDS), "1700000004.M400P42.host,S=20,W=21");
        let with_guid = Fields { guid: Some(b"0a1b2c"), ..FIELDS };
        assert_eq!(expand("%g", &with_guid), "0a1b2c");
        assert_eq!(expand("%{uidvalidity}.%{uid}", &FIELDS), "1796647927.1");
        assert_eq!(
            expand("%{filename}/%{guid}", &with_guid),
            format!("{}/0a1b2c", "1700000004.M400P42.host,S=20,W=21")
        );
    }

    #[test]
    fn widths_modifiers_and_literals_as_var_expand_does() {
        // A zero-padded width pads and never cuts; a plain width cuts and never pads.
        assert_eq!(expand("%04u", &FIELDS), "0001");
        assert_eq!(expand("%02v-%u", &FIELDS), "1796647927-1");
        assert_eq!(expand("%4u", &FIELDS), "1");
        assert_eq!(expand("%Xv-%4u", &FIELDS), "6b16abf7-1");
        assert_eq!(expand("%4f", &FIELDS), "1700");
        // Modifiers apply in the order written.
        assert_eq!(expand("%XUv.%u", &FIELDS), "6B16ABF7.1");
        assert_eq!(expand("%UXv.%u", &FIELDS), "6b16abf7.1");
        assert_eq!(expand("%Uf", &FIELDS), "1700000004.M400P42.HOST,S=20,W=21");
        // X of something that is not a decimal number is 0, as str_to_ullong() fails.
        assert_eq!(expand("%Xf", &FIELDS), "0");
        assert_eq!(expand("uid%%%u", &FIELDS), "uid%1");
        // No UIDVALIDITY: nothing for a template that needs one.
        let none = Fields { uidvalidity: None, ..FIELDS };
        assert_eq!("%v.%u".parse::<DovecotUidlFormat>().unwrap().expand(&none), None);
        assert_eq!(expand("%f", &none), "1700000004.M400P42.host,S=20,W=21");
    }

    #[test]
    fn unsupported_templates_are_refused_with_the_reason() {
        for (format, reason) in [
            ("", "names none of"),
            ("%v", "names none of"),
            ("static", "names none of"),
            ("%m", "%m (an MD5"),
            ("%{md5}", "%m (an MD5"),
            ("%Mf", "modifier M"),
            ("%1.3u", "offsets"),
            ("%-2u", "offsets"),
            ("%q", "unknown variable %q"),
            ("%{nope}", "unknown variable %{nope}"),
            ("%{uid", "without its }"),
            ("%u%", "ends inside"),
            ("%08X", "ends inside"),
        ] {
            let err = format.parse::<DovecotUidlFormat>().unwrap_err().to_string();
            assert!(err.contains(reason), "{format:?}: {err}");
            assert!(err.starts_with(&format!("pop3_uidl_format {format:?}")), "{err}");
        }
    }
}
