//! `mbox_scan`: the sans-IO mbox scanner of `pop3-storage` over arbitrary octets, fed whole and
//! in arbitrary chunks.
//!
//! Checked:
//!
//! - the outcome (messages, or the error) is the same for every chunking, and a failed
//!   scanner stays failed;
//! - messages are in order and do not overlap: `from_start < body_start <= body_end`, each
//!   message's `from_start` at or after the previous `body_end`, everything within the input;
//! - each message's region starts with `From ` and its `From ` line ends at `body_start`;
//! - a size is at least the stored length less one octet per line (a `>` unquoted) and at
//!   most twice it plus two (every LF served as CRLF, a missing last line end added);
//! - UIDLs are valid (1 to 70 octets in 0x21–0x7E) and distinct.

#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pop3_storage::mbox::{scan_bytes, Scanner};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Cut points (taken modulo the input length).
    cuts: Vec<u16>,
    data: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let data = input.data;
    let whole = scan_bytes(data);

    let mut cuts: Vec<usize> =
        input.cuts.iter().map(|&c| usize::from(c) % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut scanner = Scanner::new();
    let mut at = 0;
    let mut failed = None;
    for cut in cuts.into_iter().chain([data.len()]) {
        if let Err(e) = scanner.feed(&data[at..cut]) {
            failed.get_or_insert(e);
        } else {
            assert!(failed.is_none(), "a failed scanner accepted more input");
        }
        at = cut;
    }
    let split = scanner.finish();
    assert_eq!(whole, split, "the chunking changed the outcome");

    let Ok(messages) = whole else { return };
    let len = data.len() as u64;
    let mut previous_end = 0;
    let mut uidls = HashSet::new();
    for m in &messages {
        assert!(m.from_start >= previous_end && m.from_start < m.body_start, "{m:?}");
        assert!(m.body_start <= m.body_end && m.body_end <= len, "{m:?}");
        let from = &data[m.from_start as usize..m.body_start as usize];
        assert!(from.starts_with(b"From ") && from.ends_with(b"\n"), "{m:?}");
        assert_eq!(from.iter().filter(|&&b| b == b'\n').count(), 1, "{m:?}");
        let body = &data[m.body_start as usize..m.body_end as usize];
        let lines = body.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let stored = body.len() as u64;
        assert!(m.size + lines >= stored && m.size <= 2 * stored + 2, "{m:?}");
        assert!(
            (1..=70).contains(&m.uidl.len()) && m.uidl.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{m:?}"
        );
        assert!(uidls.insert(m.uidl.clone()), "repeated UIDL {m:?}");
        previous_end = m.body_end;
    }
});
