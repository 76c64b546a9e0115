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
//! Dovecot's POP3 server answers UIDL with (Dovecot's `pop3_get_uid()` and
//! `maildir_mail_get_special()`):
//!
//! * the `P` extension, a UIDL kept from an earlier server or saved by `pop3_save_uidl`;
//!   a bare `P` means the BASE (Dovecot's shorthand when the saved UIDL is the file name);
//! * else its `pop3_uidl_format` expanded ([`DovecotUidlFormat`]), by default `%08Xu%08Xv`:
//!   the UID and the UIDVALIDITY as 8 lower-case hex digits each.
//!
//! The format is not in the files, so the operator names it (pop3d's
//! `[mail] dovecot_uidl_format`). The version 2 format, which only development versions
//! wrote, is not read.
//!
//! The file name after the `:` may be older than the file on disk (Dovecot does not rewrite
//! the list when flags change), so entries are matched by BASE, the part before the first `:`.

mod format;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use self::format::Fields;
pub use self::format::{DovecotUidlFormat, UidlFormatError, DEFAULT_UIDL_FORMAT};
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
    /// Reads `root/dovecot-uidlist`, computing UIDLs with `format`. `None` when there is
    /// none, or when it is in a format we do not recognise (then our own UIDLs are served).
    /// An I/O error other than "not found" fails: serving our own UIDLs because of a
    /// transient error would make clients that leave mail on the server download everything
    /// again.
    pub(crate) fn load(root: &Path, format: &DovecotUidlFormat) -> Result<Option<Self>> {
        let path = root.join(UIDLIST_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Self::parse(&bytes, format)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("read", &path),
        }
    }

    /// Parses a uidlist. Lines that do not parse, and entries whose UIDL would not be a valid
    /// RFC 1939 one (1-70 characters in 0x21-0x7E), are skipped: their messages get our own
    /// UIDLs. The first entry for a BASE wins.
    pub(crate) fn parse(bytes: &[u8], format: &DovecotUidlFormat) -> Option<Self> {
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
            let Some(entry) = (match version {
                b"3" => entry_v3(line),
                _ => entry_v1(line),
            }) else {
                continue;
            };
            let base = match memchr::memchr(b':', entry.name) {
                Some(i) => &entry.name[..i],
                None => entry.name,
            };
            if base.is_empty() {
                continue;
            }
            let uidl = match entry.pop3_uidl {
                Some(b"") => Some(base.to_vec()),
                Some(saved) => Some(saved.to_vec()),
                None => {
                    format.expand(&Fields { uid: entry.uid, uidvalidity, base, guid: entry.guid })
                }
            };
            let Some(uidl) = uidl.and_then(|u| String::from_utf8(u).ok()) else { continue };
            if is_valid_uidl(&uidl) {
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

/// One entry of the list.
struct Entry<'a> {
    uid: u32,
    /// The `P` extension: the POP3 UIDL (empty: the BASE).
    pop3_uidl: Option<&'a [u8]>,
    /// The `G` extension: the message's GUID.
    guid: Option<&'a [u8]>,
    /// The file name, possibly with older flags.
    name: &'a [u8],
}

/// A 32-bit decimal number (UIDs and UIDVALIDITY are 32-bit in IMAP).
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    u32::try_from(n).ok()
}

/// `<uid> [<key><value> ...] :<file name>`.
fn entry_v3(line: &[u8]) -> Option<Entry<'_>> {
    let sp = memchr::memchr(b' ', line)?;
    let uid = number(&line[..sp]).filter(|&u| u != 0)?;
    let mut rest = &line[sp + 1..];
    let (mut pop3_uidl, mut guid) = (None, None);
    loop {
        if let Some(name) = rest.strip_prefix(b":") {
            return Some(Entry { uid, pop3_uidl, guid, name });
        }
        let end = memchr::memchr(b' ', rest)?;
        let ext = &rest[..end];
        if let Some(p) = ext.strip_prefix(b"P") {
            pop3_uidl.get_or_insert(p);
        } else if let Some(g) = ext.strip_prefix(b"G").filter(|g| !g.is_empty()) {
            guid.get_or_insert(g);
        }
        rest = &rest[end + 1..];
    }
}

/// `<uid> <file name>`.
fn entry_v1(line: &[u8]) -> Option<Entry<'_>> {
    let sp = memchr::memchr(b' ', line)?;
    let uid = number(&line[..sp]).filter(|&u| u != 0)?;
    let name = &line[sp + 1..];
    (!name.is_empty()).then_some(Entry { uid, pop3_uidl: None, guid: None, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Dovecot 2.3 served, recorded from the real server (see each file's header): for
    /// each `pop3_uidl_format`, the `dovecot-uidlist` it wrote and its UIDL answer by BASE.
    const RECORDED: [(&str, &str); 8] = [
        ("default", include_str!("../testdata/dovecot-uidl/default.txt")),
        ("hex", include_str!("../testdata/dovecot-uidl/hex-uid-uidvalidity.txt")),
        ("uid-uidvalidity", include_str!("../testdata/dovecot-uidl/uid-uidvalidity.txt")),
        ("uidvalidity.uid", include_str!("../testdata/dovecot-uidl/uidvalidity-dot-uid.txt")),
        ("filename", include_str!("../testdata/dovecot-uidl/filename.txt")),
        ("guid", include_str!("../testdata/dovecot-uidl/guid.txt")),
        ("saved filename", include_str!("../testdata/dovecot-uidl/saved-filename.txt")),
        ("saved", include_str!("../testdata/dovecot-uidl/saved-uidvalidity-dot-uid.txt")),
    ];

    /// A recording: (format, uidlist, [(UIDL, BASE)]).
    fn recording(text: &str) -> (DovecotUidlFormat, String, Vec<(String, String)>) {
        let mut format = None;
        let (mut uidlist, mut answer) = (String::new(), Vec::new());
        let mut section = "";
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(name) = line.strip_prefix("== ") {
                section = if name.starts_with("dovecot-uidlist") { "uidlist" } else { "uidl" };
            } else if section == "uidlist" {
                uidlist.push_str(line);
                uidlist.push('\n');
            } else if section == "uidl" {
                let (uidl, base) = line.split_once(' ').unwrap();
                answer.push((uidl.to_owned(), base.to_owned()));
            } else if let Some(f) = line.strip_prefix("pop3_uidl_format = ") {
                format = Some(match f {
                    "(default)" => DovecotUidlFormat::default(),
                    f => f.parse().unwrap(),
                });
            }
        }
        (format.unwrap(), uidlist, answer)
    }

    #[test]
    fn every_recorded_dovecot_answer_is_reproduced() {
        for (name, text) in RECORDED {
            let (format, uidlist, answer) = recording(text);
            assert!(!answer.is_empty(), "{name}");
            let list = DovecotUidlist::parse(uidlist.as_bytes(), &format).unwrap();
            for (uidl, base) in &answer {
                assert_eq!(list.get(base.as_bytes()), Some(uidl.as_str()), "{name}: {base}");
            }
            assert_eq!(list.len(), answer.len(), "{name}");
        }
        // Dovecot's default prints hex in lower case (its `X` is `%llx`).
        let (_, _, answer) = recording(RECORDED[0].1);
        assert!(answer
            .iter()
            .all(|(u, _)| u.len() == 16 && !u.bytes().any(|b| b.is_ascii_uppercase())));
    }

    /// A saved UIDL (`P`) is served whatever the format; a bare `P` is the BASE.
    #[test]
    fn saved_uidls_win_over_the_format() {
        for (name, text) in &RECORDED[6..] {
            let (_, uidlist, answer) = recording(text);
            let list = DovecotUidlist::parse(uidlist.as_bytes(), &"%u".parse().unwrap()).unwrap();
            for (uidl, base) in &answer {
                assert_eq!(list.get(base.as_bytes()), Some(uidl.as_str()), "{name}: {base}");
            }
        }
    }

    #[test]
    fn version_1_format() {
        let list = DovecotUidlist::parse(
            b"1 1234567890 3\n1 1234.5678.host:2,S\n2 1235.1.host\n",
            &DovecotUidlFormat::default(),
        )
        .unwrap();
        // 1234567890 = 0x499602d2.
        assert_eq!(list.get(b"1234.5678.host"), Some("00000001499602d2"));
        assert_eq!(list.get(b"1235.1.host"), Some("00000002499602d2"));
        let list =
            DovecotUidlist::parse(b"1 1234567890 3\n2 1235.1.host\n", &"%v.%u".parse().unwrap())
                .unwrap();
        assert_eq!(list.get(b"1235.1.host"), Some("1234567890.2"));
    }

    #[test]
    fn the_guid_extension_is_percent_g() {
        let list = DovecotUidlist::parse(
            b"3 V7 N3\n1 G0a1b2c W10 :1700000001.M1P2.host:2,S\n2 G :1700000002.M1P2.host\n",
            &"%g".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(list.get(b"1700000001.M1P2.host"), Some("0a1b2c"));
        // An empty G is no GUID: the BASE, as Dovecot's Maildir falls back to.
        assert_eq!(list.get(b"1700000002.M1P2.host"), Some("1700000002.M1P2.host"));
    }

    #[test]
    fn malformed_lines_are_skipped_and_unknown_versions_ignored() {
        let format = DovecotUidlFormat::default();
        let list = DovecotUidlist::parse(
            b"3 N9 V7\n\
              x :bad.uid\n\
              0 :zero.uid\n\
              4294967296 :too.big\n\
              3 W1 no-colon\n\
              5 P :empty.p.is.the.base\n\
              6 P\xff :invalid.p\n\
              7 :first\n\
              8 :first\n\
              \n\
              9 :trailing.without.newline",
            &format,
        )
        .unwrap();
        assert_eq!(list.get(b"first"), Some("0000000700000007"));
        assert_eq!(list.get(b"trailing.without.newline"), Some("0000000900000007"));
        assert_eq!(list.get(b"empty.p.is.the.base"), Some("empty.p.is.the.base"));
        for skipped in [&b"bad.uid"[..], b"zero.uid", b"too.big", b"no-colon", b"invalid.p"] {
            assert_eq!(list.get(skipped), None);
        }
        assert_eq!(list.len(), 3);
        // A UIDL that RFC 1939 does not allow (over 70 characters): our own is served.
        let long = format!("3 V7 N2\n1 :{}\n", "x".repeat(71));
        let list = DovecotUidlist::parse(long.as_bytes(), &"%f".parse().unwrap()).unwrap();
        assert_eq!(list.len(), 0);
        // No UIDVALIDITY: only templates without %v, and saved UIDLs, can be served.
        let list = DovecotUidlist::parse(b"3 N3\n1 :a\n2 Pkept :b\n", &format).unwrap();
        assert_eq!((list.get(b"a"), list.get(b"b")), (None, Some("kept")));
        let list = DovecotUidlist::parse(b"3 N3\n1 :a\n", &"%f".parse().unwrap()).unwrap();
        assert_eq!(list.get(b"a"), Some("a"));
        assert!(DovecotUidlist::parse(b"2 1 2\n1 0 a\n", &format).is_none());
        assert!(DovecotUidlist::parse(b"", &format).is_none());
        assert!(DovecotUidlist::parse(b"garbage\n", &format).is_none());
    }
}
