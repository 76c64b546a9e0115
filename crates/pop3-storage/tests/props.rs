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
