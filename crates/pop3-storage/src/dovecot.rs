//! Reading Dovecot's `dovecot-uidlist`, to serve the POP3 UIDLs Dovecot served.
//!
//! Dovecot's Maildir keeps IMAP UIDs in `dovecot-uidlist` (format in Dovecot's
//! `maildir-uidlist.c` and its admin manual):
//!
//! ```text
//! 3 V1700000000 N4 G3085f01b7f11094c501100008c4a11c1     header: version 3, then <key><value>
//! 1 :1700000001.M200000P4242.imap,S=1355,W=1394:2,S     <uid> [<key><value> ...] :<file name>
//! 2 W2481 :1700000002.M300000P99.desk:2,RS
//! 3 P0a1b2c3d :1700000003.M1P7.desk                      P = the message's POP3 UIDL
//! ```
//!
//! or, in the version 1 format of Dovecot 1.0 (the same as Courier's `courierimapuiddb`):
//! `1 <uidvalidity> <nextuid>`, then `<uid> <file name>`.
//!
//! Dovecot's POP3 server answers UIDL with `pop3_uidl_format`, by default `%08Xu%08Xv`: the
//! UID and the UIDVALIDITY as 8 upper-case hex digits each; a `P` extension (a UIDL kept from
//! an earlier server on migration) overrides it. Those two are what we serve. Other formats
//! (`%v.%u`, `%m`, `%g`, `%f`, ...) cannot be recognised from the files and are not
//! supported; nor is the version 2 format, which only development versions wrote.
//!
//! The file name after the `:` may be older than the file on disk (Dovecot does not rewrite
//! the list when flags change), so entries are matched by BASE, the part before `:2,`.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use crate::error::IoContext;
use crate::{is_valid_uidl, Result};

/// The file's name in the Maildir.
pub const UIDLIST_FILE: &str = "dovecot-uidlist";

/// The UIDLs Dovecot served, by BASE.
#[derive(Debug, Default)]
pub(crate) struct DovecotUidlist {
    uidls: HashMap<Vec<u8>, String>,
}

impl DovecotUidlist {
    /// Reads `root/dovecot-uidlist`. `None` when there is none, or when it is in a format
    /// we do not recognise (then our own UIDLs are served). An I/O error other than "not
    /// found" fails: serving our own UIDLs because of a transient error would make clients
    /// that leave mail on the server download everything again.
    pub(crate) fn load(root: &Path) -> Result<Option<Self>> {
        let path = root.join(UIDLIST_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Self::parse(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("read", &path),
        }
    }

    /// Parses a uidlist. Lines that do not parse are skipped (their messages get our own
    /// UIDLs); the first entry for a BASE wins.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let mut lines = bytes.split(|&b| b == b'\n');
        let header = lines.next()?;
        let mut fields = header.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let version = fields.next()?;
        let uidvalidity = match version {
            b"3" => fields.find_map(|f| f.strip_prefix(b"V")).and_then(number),
            b"1" => fields.next().and_then(number),
            _ => return None,
        };
        let mut uidls = HashMap::new();
        for line in lines {
            let Some((uid, pop3_uidl, name)) = (match version {
                b"3" => entry_v3(line),
                _ => entry_v1(line),
            }) else {
                continue;
            };
            let uidl = match (pop3_uidl, uidvalidity) {
                (Some(p), _) => match std::str::from_utf8(p) {
                    Ok(p) if is_valid_uidl(p) => p.to_owned(),
                    _ => continue,
                },
                (None, Some(v)) => format!("{uid:08X}{v:08X}"),
                (None, None) => continue,
            };
            let base = match memchr::memchr(b':', name) {
                Some(i) => &name[..i],
                None => name,
            };
            if !base.is_empty() {
                uidls.entry(base.to_vec()).or_insert(uidl);
            }
        }
        Some(Self { uidls })
    }

    /// The UIDL Dovecot served for the message with this BASE.
    pub(crate) fn get(&self, base: &[u8]) -> Option<&str> {
        self.uidls.get(base).map(String::as_str)
    }

    /// How many messages the list names.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.uidls.len()
    }
}

/// One entry: (UID, the `P` extension's value, file name).
type Record<'a> = (u32, Option<&'a [u8]>, &'a [u8]);

/// A 32-bit decimal number (UIDs and UIDVALIDITY are 32-bit in IMAP).
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    u32::try_from(n).ok()
}

/// `<uid> [<key><value> ...] :<file name>` → (uid, `P` value, file name).
fn entry_v3(line: &[u8]) -> Option<Record<'_>> {
    let sp = memchr::memchr(b' ', line)?;
    let uid = number(&line[..sp]).filter(|&u| u != 0)?;
    let mut rest = &line[sp + 1..];
    let mut pop3_uidl = None;
    loop {
        if let Some(name) = rest.strip_prefix(b":") {
            return Some((uid, pop3_uidl, name));
        }
        let end = memchr::memchr(b' ', rest)?;
        let ext = &rest[..end];
        if let Some(p) = ext.strip_prefix(b"P") {
            pop3_uidl.get_or_insert(p);
        }
        rest = &rest[end + 1..];
    }
}

/// `<uid> <file name>` → (uid, no `P` value, file name).
fn entry_v1(line: &[u8]) -> Option<Record<'_>> {
    let sp = memchr::memchr(b' ', line)?;
    let uid = number(&line[..sp]).filter(|&u| u != 0)?;
    let name = &line[sp + 1..];
    (!name.is_empty()).then_some((uid, None, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_3_default_format_and_p_override() {
        let list = DovecotUidlist::parse(
            b"3 V1700000000 N5 G3085f01b7f11094c501100008c4a11c1\n\
              1 :1700000001.M200000P4242.imap,S=1355,W=1394:2,S\n\
              2 W2481 :1700000002.M300000P99.desk:2,RS\n\
              4 G0123 P0a1b2c3d4e5f W10 :1700000004.M1P7.desk\n\
              65535 :1700000005.M1P7.desk\n",
        )
        .unwrap();
        // 1700000000 = 0x6553F100.
        assert_eq!(
            list.get(b"1700000001.M200000P4242.imap,S=1355,W=1394"),
            Some("000000016553F100")
        );
        assert_eq!(list.get(b"1700000002.M300000P99.desk"), Some("000000026553F100"));
        assert_eq!(list.get(b"1700000004.M1P7.desk"), Some("0a1b2c3d4e5f"));
        assert_eq!(list.get(b"1700000005.M1P7.desk"), Some("0000FFFF6553F100"));
        assert_eq!(list.get(b"1700000001.M200000P4242.imap"), None, "BASE must match whole");
        assert_eq!(list.len(), 4);
    }

    #[test]
    fn version_1_format() {
        let list = DovecotUidlist::parse(b"1 1234567890 3\n1 1234.5678.host:2,S\n2 1235.1.host\n")
            .unwrap();
        assert_eq!(list.get(b"1234.5678.host"), Some("00000001499602D2"));
        assert_eq!(list.get(b"1235.1.host"), Some("00000002499602D2"));
    }

    #[test]
    fn malformed_lines_are_skipped_and_unknown_versions_ignored() {
        let list = DovecotUidlist::parse(
            b"3 N9 V7\n\
              x :bad.uid\n\
              0 :zero.uid\n\
              4294967296 :too.big\n\
              3 W1 no-colon\n\
              5 P :empty.p.falls.back\n\
              6 P\xff :invalid.p\n\
              7 :first\n\
              8 :first\n\
              \n\
              9 :trailing.without.newline",
        )
        .unwrap();
        assert_eq!(list.get(b"first"), Some("0000000700000007"));
        assert_eq!(list.get(b"trailing.without.newline"), Some("0000000900000007"));
        for skipped in [&b"bad.uid"[..], b"zero.uid", b"too.big", b"no-colon", b"invalid.p"] {
            assert_eq!(list.get(skipped), None);
        }
        // An empty P value is not a UIDL: skipped rather than guessed.
        assert_eq!(list.get(b"empty.p.falls.back"), None);
        assert_eq!(list.len(), 2);
        // No UIDVALIDITY: only P values can be served.
        let list = DovecotUidlist::parse(b"3 N3\n1 :a\n2 Pkept :b\n").unwrap();
        assert_eq!((list.get(b"a"), list.get(b"b")), (None, Some("kept")));
        assert!(DovecotUidlist::parse(b"2 1 2\n1 0 a\n").is_none());
        assert!(DovecotUidlist::parse(b"").is_none());
        assert!(DovecotUidlist::parse(b"garbage\n").is_none());
    }
}
