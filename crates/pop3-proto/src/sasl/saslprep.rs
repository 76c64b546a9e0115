//! SASLprep (RFC 4013) for SCRAM passwords.
//!
//! RFC 7677 §4 (by way of RFC 5802 §2.2) runs the password through SASLprep as a "query"
//! string before hashing.
//!
//! With the `std` feature (the default), preparation is complete: the `stringprep` crate does
//! the mapping, NFKC normalisation, prohibited-output and bidirectional checks of RFC 4013 §2.
//!
//! Without `std`, the crate carries no Unicode tables, and does what needs none:
//!
//! 1. **Mapping** (RFC 4013 §2.1), complete: the non-ASCII spaces of RFC 3454 table C.1.2
//!    become U+0020, and the "commonly mapped to nothing" characters of table B.1 are removed.
//! 2. **Normalisation** (RFC 4013 §2.2): *not done*. For ASCII this is exact (NFKC leaves ASCII
//!    unchanged). A non-ASCII password that is not already in NFKC (say, decomposed accents,
//!    full-width letters, ligatures such as U+FB01) is hashed as typed, so a peer that does
//!    full SASLprep derives different keys from it.
//! 3. **Prohibited output** (RFC 4013 §2.3): every table of the profile is checked (C.1.2,
//!    C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9).
//! 4. **Bidirectional check** (RFC 4013 §2.4, RFC 3454 §6): *not done* (needs the RandALCat
//!    table); it can only reject strings, never change them.
//!
//! Either way, when preparation fails (a prohibited character, a bidi violation, or nothing
//! left), the original password is used unchanged, as PostgreSQL's SCRAM does: a password that
//! SASLprep cannot prepare is still the user's password. Both sides use this same function
//! ([`super::SaslClient::scram_sha256`], [`super::ScramKeys::from_password`]), so a client and
//! a server built with the same features always agree.

use alloc::borrow::Cow;
#[cfg(not(feature = "std"))]
use alloc::string::String;

/// The password as SCRAM hashes it: see the [module documentation](self).
#[cfg(feature = "std")]
pub(crate) fn prepare_password(password: &str) -> Cow<'_, str> {
    match stringprep::saslprep(password) {
        Ok(prepared) if !prepared.is_empty() => prepared,
        _ => Cow::Borrowed(password),
    }
}

/// The password as SCRAM hashes it: see the [module documentation](self).
#[cfg(not(feature = "std"))]
pub(crate) fn prepare_password(password: &str) -> Cow<'_, str> {
    if password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        // Printable ASCII: no mapping applies, NFKC is the identity, nothing is prohibited.
        return Cow::Borrowed(password);
    }
    let mapped: String = password
        .chars()
        .map(|c| if non_ascii_space(c) { ' ' } else { c })
        .filter(|&c| !mapped_to_nothing(c))
        .collect();
    if mapped.is_empty() || mapped.chars().any(prohibited) {
        return Cow::Borrowed(password);
    }
    Cow::Owned(mapped)
}

/// RFC 3454 table C.1.2.
#[cfg_attr(feature = "std", allow(dead_code))]
fn non_ascii_space(c: char) -> bool {
    matches!(
        c,
        '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200b}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// RFC 3454 table B.1.
#[cfg_attr(feature = "std", allow(dead_code))]
fn mapped_to_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{1806}'
            | '\u{180b}'..='\u{180d}'
            | '\u{200b}'..='\u{200d}'
            | '\u{2060}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
    )
}

/// RFC 4013 §2.3: tables C.1.2, C.2.1, C.2.2, C.3, C.4, C.5 (surrogates cannot occur in a
/// `str`), C.6, C.7, C.8 and C.9.
#[cfg_attr(feature = "std", allow(dead_code))]
fn prohibited(c: char) -> bool {
    let cp = u32::from(c);
    non_ascii_space(c)
        // C.2.1 and the C1 controls of C.2.2
        || c.is_control()
        // rest of C.2.2
        || matches!(
            cp,
            0x06dd | 0x070f | 0x180e | 0x200c | 0x200d | 0x2028 | 0x2029
                | 0x2060..=0x2063 | 0x206a..=0x206f | 0xfeff | 0xfff9..=0xfffc
                | 0x1d173..=0x1d17a
        )
        // C.3 private use
        || matches!(cp, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd)
        // C.4 non-characters
        || matches!(cp, 0xfdd0..=0xfdef)
        || cp & 0xfffe == 0xfffe
        // C.6 inappropriate for plain text, C.7 for canonical representation
        || matches!(cp, 0xfff9..=0xfffd | 0x2ff0..=0x2ffb)
        // C.8 change display properties or deprecated
        || matches!(cp, 0x0340 | 0x0341 | 0x200e | 0x200f | 0x202a..=0x202e | 0x206a..=0x206f)
        // C.9 tagging characters
        || matches!(cp, 0xe0001 | 0xe0020..=0xe007f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4013_examples_that_need_no_tables() {
        // RFC 4013 §3, examples 1, 2, 3 and 5.
        assert_eq!(prepare_password("I\u{ad}X"), "IX");
        assert_eq!(prepare_password("user"), "user");
        assert_eq!(prepare_password("USER"), "USER");
        // Example 5: U+0007 is prohibited; this crate then falls back to the original.
        assert_eq!(prepare_password("\u{7}"), "\u{7}");
    }

    #[test]
    fn non_ascii_spaces_become_spaces() {
        assert_eq!(prepare_password("a\u{a0}b\u{3000}c"), "a b c");
    }

    #[test]
    fn ascii_is_unchanged_and_borrowed() {
        assert!(matches!(prepare_password("pencil"), Cow::Borrowed("pencil")));
    }

    #[test]
    fn prohibited_output_falls_back_to_the_original() {
        assert_eq!(prepare_password("pass\u{e000}"), "pass\u{e000}");
        assert_eq!(prepare_password("\u{ad}"), "\u{ad}");
        assert_eq!(prepare_password("tab\there"), "tab\there");
    }

    #[test]
    #[cfg(feature = "std")]
    fn rfc4013_examples_that_need_the_unicode_tables() {
        // RFC 4013 §3: NFKC, and a bidirectional violation that falls back to the original.
        assert_eq!(prepare_password("\u{aa}"), "a");
        assert_eq!(prepare_password("\u{2168}"), "IX");
        assert_eq!(prepare_password("\u{627}\u{31}"), "\u{627}\u{31}");
    }

    #[test]
    fn ordinary_non_ascii_passes_through() {
        assert_eq!(prepare_password("pässwörd"), "pässwörd");
    }
}
