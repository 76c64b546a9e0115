//! Property tests: for any messages, the sizes a store reports equal the length of what the
//! protocol layer transmits, and UIDLs are valid and unique.

mod common;

use std::collections::HashSet;
use std::fs;

use common::{read_all, transmitted};
use pop3_storage::{is_valid_uidl, Maildir, Maildrop, Mbox};
use proptest::prelude::*;

fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let octet = prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'F'), any::<u8>(),];
    let msg = prop_oneof![
        proptest::collection::vec(octet, 0..200),
        // Lines that look like mbox separators.
        proptest::collection::vec(
            prop_oneof![
                Just(&b"From x\n"[..]),
                Just(&b"\n"[..]),
                Just(&b">From y\r\n"[..]),
                Just(&b"z"[..])
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat()),
    ];
    proptest::collection::vec(msg, 1..8)
}

fn check(d: &dyn Maildrop, originals: Option<&[Vec<u8>]>) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    for (i, info) in d.messages().iter().enumerate() {
        let bytes = read_all(d, i);
        if let Some(orig) = originals {
            prop_assert_eq!(&bytes, &orig[i]);
        }
        prop_assert_eq!(info.size, transmitted(&bytes).len() as u64);
        prop_assert!(is_valid_uidl(&info.uidl), "{:?}", info.uidl);
        prop_assert!(seen.insert(info.uidl.clone()), "duplicate {}", info.uidl);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn maildir_sizes_and_uidls(msgs in messages()) {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path());
        md.create_dirs().unwrap();
        for (i, m) in msgs.iter().enumerate() {
            if i % 2 == 0 {
                md.deliver(&mut &m[..]).unwrap(); // sized by ,W=
            } else {
                // Written by another MDA without ,W=: sized by reading, then from the cache.
                fs::write(dir.path().join(format!("new/{}.M{i}P1.other", 1_600_000_000 + i)), m).unwrap();
            }
        }
        let d = md.open().unwrap();
        prop_assert_eq!(d.messages().len(), msgs.len());
        check(&d, None)?;
        let cold: Vec<_> = d.messages().to_vec();
        drop(d);
        let d = md.open().unwrap();
        prop_assert_eq!(d.messages(), &cold[..], "warm open agrees with cold");
    }

    #[test]
    fn mbox_sizes_and_uidls(msgs in messages()) {
        let dir = tempfile::tempdir().unwrap();
        let mbox = Mbox::new(dir.path().join("u"));
        for m in &msgs {
            mbox.deliver(&mut &m[..], &Default::default()).unwrap();
        }
        let d = mbox.open().unwrap();
        prop_assert_eq!(d.messages().len(), msgs.len(), "one message per delivery");
        check(&d, None)?;
    }
}

/// mbox-like octets: `From ` lines, quoted ones, empty lines, CRs, and anything.
fn mbox_octets() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(&b"From a@b Tue Nov 14 22:13:20 2023\n"[..]),
            Just(&b"From x\r\n"[..]),
            Just(&b"\n"[..]),
            Just(&b"\r\n"[..]),
            Just(&b">From q\n"[..]),
            Just(&b">>From "[..]),
            Just(&b"Subject: s\n"[..]),
            Just(&b"body"[..]),
            Just(&b"\r"[..]),
            Just(&b"F"[..]),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The mbox scanner gives the same messages (or the same error) however its input is
    /// cut, and an mbox file opened from the same octets serves exactly those messages.
    #[test]
    fn mbox_scanner_split_invariance(
        data in mbox_octets(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = pop3_storage::mbox::scan_bytes(&data);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut scanner = pop3_storage::mbox::Scanner::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([data.len()]) {
            let _ = scanner.feed(&data[at..cut]);
            at = cut;
        }
        prop_assert_eq!(&scanner.finish(), &whole);

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("m"), &data).unwrap();
        let opened = Mbox::new(dir.path().join("m")).open();
        match (&whole, opened) {
            (Ok(scanned), Ok(d)) => {
                prop_assert_eq!(d.messages().len(), scanned.len());
                for (i, m) in scanned.iter().enumerate() {
                    prop_assert_eq!(d.messages()[i].size, m.size);
                    prop_assert_eq!(&d.messages()[i].uidl, &m.uidl);
                    prop_assert_eq!(transmitted(&read_all(&d, i)).len() as u64, m.size);
                }
                check(&d, None)?;
            }
            (Err(_), Err(e)) => prop_assert_eq!(e.kind(), pop3_storage::ErrorKind::Permanent),
            (w, o) => prop_assert!(false, "scanner {:?}, open {:?}", w, o.map(|d| d.messages().to_vec())),
        }
    }
}
