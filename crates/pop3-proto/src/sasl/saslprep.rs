//! SASLprep (RFC 4013) for SCRAM passwords.
//!
//! RFC 7677 §4 (by way of RFC 5802 §2.2) runs the password through SASLprep before hashing.
//! Preparation is complete and the same with and without the `std` feature, so a feature never
//! changes the keys SCRAM derives from a password:
//!
//! 1. **Mapping** (RFC 4013 §2.1): the non-ASCII spaces of RFC 3454 table C.1.2 become U+0020,
//!    and the "commonly mapped to nothing" characters of table B.1 are removed.
//! 2. **Normalisation** (RFC 4013 §2.2): NFKC, by the `unicode-normalization` crate (`no_std`).
//! 3. **Prohibited output** (RFC 4013 §2.3): tables C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6,
//!    C.7, C.8 and C.9.
//! 4. **Bidirectional check** (RFC 4013 §2.4, RFC 3454 §6), with the `unicode-bidi` crate's
//!    character classes (`no_std`).
//! 5. **Unassigned code points** (RFC 3454 §7, table A.1, in [`super::unassigned`]): refused,
//!    as the `stringprep` crate and PostgreSQL do, so that keys stored by earlier versions of
//!    this crate (which used `stringprep`) and by those peers stay valid.
//!
//! When preparation fails (a prohibited or unassigned character, a bidi violation, or nothing
//! left), the original password is used unchanged, as PostgreSQL's SCRAM does: a password that
//! SASLprep cannot prepare is still the user's password. Both sides use this same function
//! ([`super::SaslClient::scram_sha256`], [`super::ScramKeys::from_password`]).

use alloc::borrow::Cow;
use alloc::string::String;

use unicode_bidi::{bidi_class, BidiClass};
use unicode_normalization::UnicodeNormalization;

use super::unassigned::unassigned_in_unicode_3_2;

/// The password as SCRAM hashes it: see the [module documentation](self).
pub(crate) fn prepare_password(password: &str) -> Cow<'_, str> {
    if password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        // Printable ASCII: no mapping applies, NFKC is the identity, nothing is prohibited.
        return Cow::Borrowed(password);
    }
    let prepared: String = password
        .chars()
        .map(|c| if non_ascii_space(c) { ' ' } else { c })
        .filter(|&c| !mapped_to_nothing(c))
        .nfkc()
        .collect();
    let refused = prepared.is_empty()
        || prepared.chars().any(|c| prohibited(c) || unassigned_in_unicode_3_2(c))
        || bidi_violation(&prepared);
    match refused {
        true => Cow::Borrowed(password),
        false => Cow::Owned(prepared),
    }
}

/// RFC 3454 §6, rules 2 and 3 (rule 1 is table C.8, checked as prohibited output): a string
/// with a right-to-left character has no left-to-right one, and starts and ends with a
/// right-to-left character.
fn bidi_violation(s: &str) -> bool {
    let rtl = |c: char| matches!(bidi_class(c), BidiClass::R | BidiClass::AL);
    if !s.chars().any(rtl) {
        return false;
    }
    s.chars().any(|c| bidi_class(c) == BidiClass::L)
        || !s.chars().next().is_some_and(rtl)
        || !s.chars().next_back().is_some_and(rtl)
}

/// RFC 3454 table C.1.2.
fn non_ascii_space(c: char) -> bool {
    matches!(
        c,
        '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200b}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// RFC 3454 table B.1.
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
    fn rfc4013_examples_that_need_the_unicode_tables() {
        // RFC 4013 §3: NFKC, and a bidirectional violation that falls back to the original.
        assert_eq!(prepare_password("\u{aa}"), "a");
        assert_eq!(prepare_password("\u{2168}"), "IX");
        assert_eq!(prepare_password("\u{627}\u{31}"), "\u{627}\u{31}");
    }

    /// SCRAM keys of non-ASCII passwords, computed independently (Python's `stringprep`,
    /// `unicodedata` NFKC, `hashlib.pbkdf2_hmac`). This test runs with and without the `std`
    /// feature (`cargo test -p pop3-proto --no-default-features --lib`): the feature must not
    /// change a key.
    #[test]
    fn scram_keys_of_non_ascii_passwords_are_known_answers() {
        #[rustfmt::skip]
        let cases = [
            // Mapped to nothing (RFC 4013 §3 example 1), and NFKC (example 4): both "IX".
            ("I\u{ad}X", "IX",
             "2a192425d3791bd8284b01da4cd44db35361037cc7f56fa69eed564c5319d418",
             "433450df6760c42a470146f75c159370411e69053402ac33da42ac66006a97c4"),
            ("\u{2168}", "IX",
             "2a192425d3791bd8284b01da4cd44db35361037cc7f56fa69eed564c5319d418",
             "433450df6760c42a470146f75c159370411e69053402ac33da42ac66006a97c4"),
            // A compatibility ligature, decomposed accents, full-width letters: NFKC.
            ("\u{fb01}nance", "finance",
             "6cc2b9092c501584fa153ad0ca1c6a234d70f48e6b6d601cfaaf267e9464f2a0",
             "87859bdd7269f99104f1ecb76a4138695baaf8277aa1fe4de20b33a7afe35781"),
            ("e\u{301}t\u{e9}", "\u{e9}t\u{e9}",
             "ea575c65b49bb69b0117c7191b19c9adbae2d002ef396ca73462aa88db766cba",
             "7ca4e6dcd98cda7464124a06f72e39956e35921a6d2f92d2bacb165067673546"),
            ("\u{ff50}\u{ff41}\u{ff53}\u{ff53}", "pass",
             "b5a12d816059c47d4fbc00ca5034a6dd83683f801c85c8a5c73ef6f60d6d3027",
             "765dbb2020d10932150c996c491747245c303eea5576c05faa7068a75632ec7b"),
            // A non-ASCII space.
            ("pa\u{a0}ss", "pa ss",
             "b27a99d1ab2e215e4ad84c58a27e5f1678b39324508e30b9fb7fdaed5723412c",
             "560a9efed23d10e33ac93ace8e7cbaa30e48afa73f734a6e15e38d1c80acbda5"),
            // Refused, so hashed as typed: a bidi violation (example 6), and a code point
            // unassigned in Unicode 3.2 (the ligature beside it stays).
            ("\u{627}1", "\u{627}1",
             "14fba46ebf9fae7f821e4dffbd562dbc336e1a0487ebdaac4e2fcc55b766ec07",
             "247d302067985aa60bf2420242b753a08b494c4af66d619a0176acdc14b1b208"),
            ("\u{1f600}\u{fb01}", "\u{1f600}\u{fb01}",
             "3af6178197b743add805d8f7e6e32ea2c5f4414fa74688b24879bfd78ede8e9e",
             "22f979522309913d982429d55cf536628b1cf20ee231b312bc0880af2529f69f"),
        ];
        for (password, prepared, stored_key, server_key) in cases {
            assert_eq!(prepare_password(password), prepared, "{password:?}");
            let keys = crate::sasl::ScramKeys::from_password(
                password.as_bytes(),
                b"kat-salt-1234567",
                4096,
            );
            assert_eq!(crate::hex(&keys.stored_key), stored_key, "{password:?}");
            assert_eq!(crate::hex(&keys.server_key), server_key, "{password:?}");
        }
    }

    #[test]
    fn ordinary_non_ascii_passes_through() {
        assert_eq!(prepare_password("pässwörd"), "pässwörd");
    }
}
