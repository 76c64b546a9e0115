//! Properties of streaming dot-stuffing and the TOP filter: round trips, the wire invariants
//! of RFC 1939 §3, and split invariance (any chunking of the input gives the same result).

#![forbid(unsafe_code)]

use bytes::BytesMut;
use pop3_proto::{DotStuffer, DotUnstuffer, TopFilter, Unstuffed};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Pieces that make up generated messages: mostly the octets and sequences that dot-stuffing
/// cares about, so that dots at line start, split CRLFs and bare CRs are frequent.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(b".".to_vec()),
        4 => Just(b"\r".to_vec()),
        4 => Just(b"\n".to_vec()),
        3 => Just(b"\r\n".to_vec()),
        2 => Just(b".\r\n".to_vec()),
        1 => Just(b"\r\n.\r\n".to_vec()),
        4 => "[a-zA-Z: ]{1,6}".prop_map(String::into_bytes),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ]
}

/// A message of interesting octets.
fn message() -> impl Strategy<Value = Vec<u8>> {
    vec(piece(), 0..40).prop_map(|pieces| pieces.concat())
}

/// A message with split points for chunking it.
fn chunked_message() -> impl Strategy<Value = (Vec<u8>, Vec<Index>)> {
    (message(), vec(any::<Index>(), 0..8))
}

/// Cuts `data` at the given split points (in any order, duplicates allowed, so empty chunks
/// occur too).
fn chunks<'a>(data: &'a [u8], splits: &[Index]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        parts.push(&data[start..cut]);
        start = cut;
    }
    parts.push(&data[start..]);
    parts
}

/// Stuffs `parts` one after the other and finishes.
fn stuff(parts: &[&[u8]]) -> Vec<u8> {
    let mut stuffer = DotStuffer::new();
    let mut out = BytesMut::new();
    for part in parts {
        stuffer.stuff(part, &mut out);
    }
    stuffer.finish(&mut out);
    out.to_vec()
}

/// Unstuffs `parts` in order. Returns the payload and the total consumed, and checks the
/// per-call contract: all of a chunk is consumed unless done, nothing after done.
fn unstuff(parts: &[&[u8]]) -> (Vec<u8>, Unstuffed) {
    let mut unstuffer = DotUnstuffer::new();
    let mut out = BytesMut::new();
    let mut total = Unstuffed { consumed: 0, done: false };
    for part in parts {
        let was_done = unstuffer.is_done();
        let step = unstuffer.unstuff(part, &mut out);
        assert_eq!(step.done, unstuffer.is_done());
        if was_done {
            assert_eq!(step.consumed, 0, "consumed after done");
        } else if !step.done {
            assert_eq!(step.consumed, part.len(), "not done but left input");
        }
        total.consumed += step.consumed;
        total.done = step.done;
    }
    (out.to_vec(), total)
}

/// Filters `parts` through a `TOP n` filter. Returns what passed and whether it is done.
fn top(n: u32, parts: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut filter = TopFilter::new(n);
    let mut out = Vec::new();
    for part in parts {
        let was_done = filter.is_done();
        let passed = filter.filter(part);
        assert!(part.starts_with(passed));
        assert!(!was_done || passed.is_empty(), "passed octets after done");
        out.extend_from_slice(passed);
    }
    (out, filter.is_done())
}

/// Reference line-ending normalisation: bare LF becomes CRLF, and a non-empty message that
/// does not end with LF gets a line end (a final CR becomes CRLF).
fn normalise(x: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() * 2 + 2);
    for (i, &b) in x.iter().enumerate() {
        if b == b'\n' && (i == 0 || x[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    match x.last() {
        None | Some(b'\n') => {}
        Some(b'\r') => out.push(b'\n'),
        Some(_) => out.extend_from_slice(b"\r\n"),
    }
    out
}

/// Lines of `x`, each with its LF (the last one may have none).
fn lines(x: &[u8]) -> Vec<&[u8]> {
    x.split_inclusive(|&b| b == b'\n').collect()
}

/// Reference `TOP n`: the lines up to and including the first empty one, then `n` more; and
/// whether all of those lines are there, each with its LF (so nothing more can pass).
fn top_reference(x: &[u8], n: u32) -> (Vec<u8>, bool) {
    let all = lines(x);
    let blank = all.iter().position(|l| *l == b"\n" || *l == b"\r\n");
    let keep = match blank {
        Some(i) => i + 1 + n as usize,
        None => all.len(),
    };
    let complete = blank.is_some() && keep <= all.len() && all[keep - 1].ends_with(b"\n");
    let passed = all.iter().take(keep).flat_map(|l| l.iter().copied()).collect();
    (passed, complete)
}

/// Reference unstuffing, line by line: the payload before the first terminator line (`.` then
/// CRLF or LF) with one leading `.` removed from each line, the octets up to and including the
/// terminator, and whether there was one. An unfinished last line that may still become the
/// terminator (`.` or `.\r`) is consumed but gives no payload yet.
fn unstuff_reference(wire: &[u8]) -> (Vec<u8>, Unstuffed) {
    let mut payload = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    for line in lines(wire) {
        consumed += line.len();
        if line == b".\r\n" || line == b".\n" {
            done = true;
            break;
        }
        if line != b"." && line != b".\r" {
            payload.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
    }
    (payload, Unstuffed { consumed, done })
}

/// Start positions of all occurrences of `needle` in `hay`.
fn occurrences(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn unstuffing_stuffed_chunks_gives_normalised_message((x, splits) in chunked_message()) {
        let stuffed = stuff(&chunks(&x, &splits));
        let (payload, step) = unstuff(&chunks(&stuffed, &splits));
        prop_assert_eq!(payload, normalise(&x));
        prop_assert_eq!(step, Unstuffed { consumed: stuffed.len(), done: true });
    }

    #[test]
    fn stuffed_output_has_one_terminator_and_exact_length(x in message()) {
        let stuffed = stuff(&[&x]);
        let n = stuffed.len();
        prop_assert!(stuffed.ends_with(b".\r\n"));
        if x.is_empty() {
            prop_assert_eq!(&stuffed[..], b".\r\n");
        } else {
            prop_assert!(!stuffed.starts_with(b".\r\n"));
            prop_assert_eq!(occurrences(&stuffed, b"\r\n.\r\n"), vec![n - 5]);
        }
        // Every body line that begins with '.' carries the stuffing dot.
        for line in lines(&stuffed[..n - 3]) {
            prop_assert!(!line.starts_with(b".") || line.starts_with(b".."));
        }
        let dot_lines = lines(&x).iter().filter(|l| l.starts_with(b".")).count();
        prop_assert_eq!(n, normalise(&x).len() + dot_lines + 3);
    }

    #[test]
    fn stuffing_is_split_invariant((x, splits) in chunked_message()) {
        prop_assert_eq!(stuff(&chunks(&x, &splits)), stuff(&[&x]));
    }

    #[test]
    fn unstuffing_is_split_invariant_and_leaves_what_follows(
        (x, splits) in chunked_message(),
        next in message(),
    ) {
        let stuffed = stuff(&[&x]);
        let wire = [&stuffed[..], &next[..]].concat();
        let whole = unstuff(&[&wire]);
        prop_assert_eq!(&whole.0, &normalise(&x));
        prop_assert_eq!(whole.1, Unstuffed { consumed: stuffed.len(), done: true });
        prop_assert_eq!(unstuff(&chunks(&wire, &splits)), whole);
    }

    #[test]
    fn unstuffing_any_input_matches_reference_in_any_chunking((x, splits) in chunked_message()) {
        let whole = unstuff(&[&x]);
        prop_assert_eq!(&whole, &unstuff_reference(&x));
        prop_assert_eq!(unstuff(&chunks(&x, &splits)), whole);
    }

    #[test]
    fn top_filter_matches_reference_in_any_chunking(
        (x, splits) in chunked_message(),
        n in 0u32..5,
    ) {
        let whole = top(n, &[&x]);
        prop_assert_eq!(&whole, &top_reference(&x, n));
        prop_assert_eq!(top(n, &chunks(&x, &splits)), whole);
    }
}

#[test]
fn top_output_stuffed_is_a_valid_response() {
    let message = b"Subject: x\n\n.first\nsecond\nthird\n";
    let mut filter = TopFilter::new(1);
    let (a, b) = message.split_at(14);
    let mut stuffer = DotStuffer::new();
    let mut out = BytesMut::new();
    stuffer.stuff(filter.filter(a), &mut out);
    stuffer.stuff(filter.filter(b), &mut out);
    assert!(filter.is_done());
    stuffer.finish(&mut out);
    assert_eq!(&out[..], b"Subject: x\r\n\r\n..first\r\n.\r\n");
}
