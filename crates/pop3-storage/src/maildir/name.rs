//! Maildir file names: `BASE` and `:2,FLAGS`, the fields of `BASE`, delivery order, UIDLs,
//! and the listing that holds the names of a snapshot.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Sub;
use crate::util::Fnv128;

/// One message of a listing. Its file name lives in the listing's shared name buffer (one
/// allocation for all names instead of one per message).
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) sub: Sub,
    /// `names[start..start + len]` is the file name; its first `base_len` bytes are BASE.
    pub(super) start: usize,
    pub(super) len: u32,
    pub(super) base_len: u32,
    /// Delivery-order key ([`order_key`] of BASE).
    pub(super) secs: u64,
    pub(super) usec: u64,
    /// Stored length, when known (from `,S=` or the cache or reading); checked on read.
    pub(super) raw_len: Option<u64>,
}

impl Entry {
    pub(super) fn name<'a>(&self, names: &'a [u8]) -> &'a [u8] {
        &names[self.start..self.start + self.len as usize]
    }

    pub(super) fn base<'a>(&self, names: &'a [u8]) -> &'a [u8] {
        &names[self.start..self.start + self.base_len as usize]
    }

    pub(super) fn path(&self, root: &Path, names: &[u8]) -> PathBuf {
        root.join(self.sub.dir()).join(OsStr::from_bytes(self.name(names)))
    }
}

/// The messages found in `new/` and `cur/`, before sorting.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub(super) names: Vec<u8>,
    pub(super) entries: Vec<Entry>,
}

impl Listing {
    /// Adds the regular file `name` of `sub` (not a dotfile), unless it is trashed.
    pub(super) fn push(&mut self, sub: Sub, name: &[u8]) {
        let base = base_of(name);
        if sub == Sub::Cur && trashed_info(&name[base.len()..]) {
            return;
        }
        let (Ok(len), Ok(base_len)) = (name.len().try_into(), base.len().try_into()) else {
            return; // a name of 4 GiB cannot exist
        };
        let (secs, usec) = order_key(base);
        let start = self.names.len();
        self.names.extend_from_slice(name);
        self.entries.push(Entry { sub, start, len, base_len, secs, usec, raw_len: None });
    }
}

/// The part of a Maildir file name before the `:2,` info.
pub(super) fn base_of(name: &[u8]) -> &[u8] {
    // Names are short: a plain loop beats memchr's setup here.
    match name.iter().position(|&b| b == b':') {
        Some(i) => &name[..i],
        None => name,
    }
}

/// The leading decimal digits of `s` as a number: `None` if there are none or they overflow.
pub(super) fn leading_number(s: &[u8]) -> Option<u64> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    s[..n].iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The numeric value of the first well-formed `,<key>=<digits>` field of a base name.
pub(super) fn field(base: &[u8], key: u8) -> Option<u64> {
    let mut rest = base;
    while let Some(comma) = rest.iter().position(|&b| b == b',') {
        rest = &rest[comma + 1..];
        let seg = &rest[..rest.iter().position(|&b| b == b',').unwrap_or(rest.len())];
        if let Some(v) = seg.strip_prefix(&[key, b'='][..]) {
            if let Some(n) = leading_number(v).filter(|_| v.iter().all(u8::is_ascii_digit)) {
                return Some(n);
            }
        }
    }
    None
}

/// The value of the first `,<key>=` field of a base name, up to the next `,` (maybe empty).
pub(super) fn field_value(base: &[u8], key: u8) -> Option<&[u8]> {
    let mut rest = base;
    while let Some(comma) = rest.iter().position(|&b| b == b',') {
        rest = &rest[comma + 1..];
        let seg = &rest[..rest.iter().position(|&b| b == b',').unwrap_or(rest.len())];
        if let Some(v) = seg.strip_prefix(&[key, b'='][..]) {
            return Some(v);
        }
    }
    None
}

/// Delivery-order key: leading seconds, then the microseconds of an `M<usec>` field in the
/// second dot-separated part.
pub(super) fn order_key(base: &[u8]) -> (u64, u64) {
    let secs = leading_number(base).unwrap_or(0);
    let usec = base
        .split(|&b| b == b'.')
        .nth(1)
        .and_then(|seg| {
            let m = seg.iter().position(|&b| b == b'M')?;
            leading_number(&seg[m + 1..])
        })
        .unwrap_or(0);
    (secs, usec)
}

/// `base` as its own UIDL, if it is one: 1–70 characters in 0x21–0x7E, not starting with `~`.
pub(super) fn verbatim_uidl(base: &[u8]) -> Option<&str> {
    if base.first() == Some(&b'~') || base.is_empty() || base.len() > 70 {
        return None;
    }
    if !base.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    std::str::from_utf8(base).ok()
}

/// The UIDL for a base name (see the [module docs](crate::maildir)).
pub fn uidl_for_base(base: &[u8]) -> String {
    match verbatim_uidl(base) {
        Some(s) => s.to_owned(),
        None => hashed_uidl(base),
    }
}

pub(super) fn hashed_uidl(bytes: &[u8]) -> String {
    let mut h = Fnv128::new();
    h.update(bytes);
    format!("~{}", h.hex())
}

/// The UIDL of the second file with an already seen BASE (or a UIDL already served):
/// `~` + the hash of `sub/name`.
pub(super) fn name_uidl(sub: Sub, name: &[u8]) -> String {
    let mut h = Fnv128::new();
    h.update(sub.dir().as_bytes());
    h.update(b"/");
    h.update(name);
    format!("~{}", h.hex())
}

/// Whether a `cur/` name carries the `T` (trashed) flag.
#[cfg(test)]
pub(super) fn trashed(name: &[u8]) -> bool {
    trashed_info(&name[base_of(name).len()..])
}

/// Whether the info part of a name (from the `:` on, or empty) has the `T` (trashed) flag.
pub(super) fn trashed_info(info: &[u8]) -> bool {
    info.strip_prefix(b":2,").is_some_and(|flags| flags.contains(&b'T'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::is_valid_uidl;

    #[test]
    fn name_parsing() {
        assert_eq!(base_of(b"123.M1P2.h,S=10,W=12:2,S"), b"123.M1P2.h,S=10,W=12");
        assert_eq!(field(b"123.M1P2.h,S=10,W=12", b'W'), Some(12));
        assert_eq!(field(b"123.M1P2.h,S=10,W=12", b'S'), Some(10));
        assert_eq!(field(b"123.M1P2.h", b'W'), None);
        assert_eq!(field(b"123.M1P2.h,W=x", b'W'), None);
        assert_eq!(field_value(b"1.M1P2.h,S=3,W=3,D=1-0", b'D'), Some(&b"1-0"[..]));
        assert_eq!(field_value(b"1.M1P2.h,S=3,D=,W=3", b'D'), Some(&b""[..]));
        assert_eq!(field_value(b"1.M1P2.h,S=3,W=3", b'D'), None);
        assert_eq!(order_key(b"1700000000.M123P9.h"), (1_700_000_000, 123));
        assert_eq!(order_key(b"1700000000.V801I1234M567890.host"), (1_700_000_000, 567_890));
        assert!(trashed(b"1.x:2,ST"));
        assert!(!trashed(b"1.xT:2,S"));
    }

    #[test]
    fn uidl_scheme() {
        assert_eq!(uidl_for_base(b"1700000000.M1P2.host"), "1700000000.M1P2.host");
        let long = uidl_for_base(&[b'a'; 71]);
        assert!(long.starts_with('~') && long.len() == 33 && is_valid_uidl(&long));
        let spaced = uidl_for_base(b"a b");
        assert!(spaced.starts_with('~'));
        assert_ne!(uidl_for_base(b"~x"), "~x", "verbatim never starts with ~");
        assert_ne!(spaced, uidl_for_base(b"a c"));
    }

    #[test]
    fn numbers_in_names() {
        assert_eq!(leading_number(b"0042x"), Some(42));
        assert_eq!(leading_number(b"x42"), None);
        assert_eq!(leading_number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(leading_number(b"18446744073709551616"), None, "overflow");
        assert_eq!(field(b"1.a,W=x,W=7", b'W'), Some(7), "first well-formed field");
        assert_eq!(field(b"1.a,W=7x", b'W'), None);
        assert_eq!(field(b"1.a,W=", b'W'), None);
        assert_eq!(order_key(b"x.M5.h"), (0, 5));
        assert_eq!(order_key(b"17.P1.M9"), (17, 0), "M only counts in the second part");
    }

    #[test]
    fn os_str_names_survive() {
        let name = OsStr::from_bytes(b"1.x\xff:2,S");
        assert_eq!(base_of(name.as_bytes()), b"1.x\xff");
        assert!(uidl_for_base(base_of(name.as_bytes())).starts_with('~'));
    }
}
