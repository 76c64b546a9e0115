//! `dot_roundtrip`: streaming dot-stuffing, unstuffing and the TOP filter, in arbitrary
//! chunks.
//!
//! A message (arbitrary octets) is cut into arbitrary chunks and fed to `DotStuffer::stuff`,
//! then `finish`; arbitrary octets (the next pipelined response) are appended, and the result
//! is cut differently and fed to `DotUnstuffer::unstuff`. Checked:
//!
//! - the stuffed octets are the same for every chunking;
//! - the payload equals the message with its line ends normalised as the module docs say:
//!   a bare LF becomes CRLF, and a message that is not empty and does not end with LF gets a
//!   line end (a final bare CR becomes CRLF, anything else gets CRLF appended);
//! - the unstuffer is done and consumed exactly the stuffed octets (nothing of what follows
//!   the terminator), and consumed whole chunks before it was done;
//! - the unstuffer over the raw message octets (no stuffing) gives the same payload,
//!   consumption and `done` for every chunking;
//! - `TopFilter` over chunks passes the same octets, and ends in the same `is_done`, as over
//!   the whole message, and both agree with a line-by-line model of RFC 1939 §7.

#![no_main]
#![forbid(unsafe_code)]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pop3_proto::{DotStuffer, DotUnstuffer, TopFilter};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Cut points for the stuffer (taken modulo the message length).
    stuff_cuts: Vec<u16>,
    /// Cut points for the unstuffer.
    unstuff_cuts: Vec<u16>,
    /// Cut points for the TOP filter.
    top_cuts: Vec<u16>,
    /// The `n` of `TOP msg n`; small values matter most.
    top_lines: u8,
    top_lines_high: bool,
    /// What follows the terminator on the wire.
    trailing: &'a [u8],
    message: &'a [u8],
}

/// `input` cut at `cuts` (modulo its length, sorted, repeats give empty chunks).
fn chunks<'a>(input: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        out.push(&input[at..cut]);
        at = cut;
    }
    out
}

fn stuff(pieces: &[&[u8]]) -> Vec<u8> {
    let mut stuffer = DotStuffer::new();
    let mut out = BytesMut::new();
    for piece in pieces {
        stuffer.stuff(piece, &mut out);
    }
    stuffer.finish(&mut out);
    out.to_vec()
}

/// Payload, total consumed, done.
fn unstuff(pieces: &[&[u8]]) -> (Vec<u8>, usize, bool) {
    let mut unstuffer = DotUnstuffer::new();
    let mut out = BytesMut::new();
    let mut consumed = 0;
    for piece in pieces {
        let step = unstuffer.unstuff(piece, &mut out);
        assert!(step.consumed <= piece.len());
        assert_eq!(step.done, unstuffer.is_done());
        if !step.done {
            assert_eq!(step.consumed, piece.len(), "not done, so all consumed");
        }
        consumed += step.consumed;
    }
    (out.to_vec(), consumed, unstuffer.is_done())
}

/// The line-end rule of the module docs, applied to a whole message.
fn normalised(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 2);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    match message.last() {
        None | Some(b'\n') => {}
        Some(b'\r') => out.push(b'\n'),
        Some(_) => out.extend_from_slice(b"\r\n"),
    }
    out
}

fn top(pieces: &[&[u8]], lines: u32) -> (Vec<u8>, bool) {
    let mut filter = TopFilter::new(lines);
    let mut out = Vec::new();
    for piece in pieces {
        let passed = filter.filter(piece);
        assert!(piece.starts_with(passed));
        out.extend_from_slice(passed);
    }
    (out, filter.is_done())
}

/// RFC 1939 §7 line by line: the headers up to and including the first blank line (LF or
/// CRLF alone), then `lines` body lines (a line counts when its LF is there).
fn top_model(message: &[u8], lines: u32) -> (Vec<u8>, bool) {
    let mut at = 0;
    // Headers.
    loop {
        if at == message.len() {
            return (message.to_vec(), false);
        }
        let end = match message[at..].iter().position(|&b| b == b'\n') {
            Some(i) => at + i + 1,
            None => return (message.to_vec(), false),
        };
        let line = &message[at..end];
        at = end;
        if line == b"\n" || line == b"\r\n" {
            break;
        }
    }
    // Body.
    let mut left = lines;
    while left > 0 {
        match message[at..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                at += i + 1;
                left -= 1;
            }
            None => return (message.to_vec(), false),
        }
    }
    (message[..at].to_vec(), true)
}

fuzz_target!(|input: Input<'_>| {
    let message = input.message;

    // Stuffing, in any chunking.
    let stuffed = stuff(&chunks(message, &input.stuff_cuts));
    assert_eq!(stuffed, stuff(&[message]), "stuffing depends on the chunking");
    assert!(stuffed.ends_with(b".\r\n"));

    // Unstuffing what was stuffed, followed by the next response.
    let mut wire = stuffed.clone();
    wire.extend_from_slice(input.trailing);
    let (payload, consumed, done) = unstuff(&chunks(&wire, &input.unstuff_cuts));
    assert!(done, "terminator not found");
    assert_eq!(consumed, stuffed.len(), "consumed past the terminator");
    assert_eq!(payload, normalised(message));

    // Unstuffing raw octets: the same in any chunking.
    let whole = unstuff(&[message]);
    assert_eq!(unstuff(&chunks(message, &input.unstuff_cuts)), whole);

    // TOP.
    let lines = if input.top_lines_high {
        u32::MAX - u32::from(input.top_lines)
    } else {
        u32::from(input.top_lines % 16)
    };
    let whole = top(&[message], lines);
    assert_eq!(top(&chunks(message, &input.top_cuts), lines), whole);
    assert_eq!(whole, top_model(message, lines));
});
