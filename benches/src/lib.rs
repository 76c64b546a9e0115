//! Inputs and baselines shared by the benches, kept in a library so that they are tested too.
//!
//! The baselines are the practical limits for a line-based codec over the same bytes: finding
//! the line ends with `memchr` and nothing else, and finding them and copying every line into an
//! output buffer. A streaming dot-stuffer cannot beat the copy; a command parser cannot beat
//! finding the lines.

#![forbid(unsafe_code)]

use bytes::BytesMut;

/// Ordinary message text: header lines, then body lines of 60 to 78 octets, CRLF-terminated,
/// `len` octets in all (the last line may be cut short).
pub fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    out.extend_from_slice(
        b"Return-Path: <alice@example.org>\r\nFrom: Alice <alice@example.org>\r\n\
          To: Bob <bob@example.net>\r\nSubject: Quarterly figures\r\n\
          Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n",
    );
    let words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"];
    let mut i = 0usize;
    while out.len() < len {
        let mut line = Vec::with_capacity(80);
        while line.len() < 60 + i % 18 {
            line.extend_from_slice(words[i % words.len()].as_bytes());
            line.push(b' ');
            i += 1;
        }
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out.truncate(len);
    out
}

/// A worst case for dot-stuffing: `len` octets of short lines that all start with a dot.
pub fn dot_heavy(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(b".\r\n..x\r\n.a.b\r\n");
    }
    out.truncate(len);
    out
}

/// `message` as it is sent: dot-stuffed, with its terminator.
pub fn stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(message.len() + message.len() / 8 + 8);
    let mut stuffer = pop3_proto::DotStuffer::new();
    stuffer.stuff(message, &mut out);
    stuffer.finish(&mut out);
    out.to_vec()
}

/// A pipeline of `n` typical commands, as a client that pipelines a fetch would send them.
pub fn pipeline(n: usize) -> Vec<u8> {
    let typical = [
        "STAT\r\n",
        "LIST\r\n",
        "UIDL\r\n",
        "RETR 1\r\n",
        "DELE 1\r\n",
        "TOP 12 0\r\n",
        "LIST 7\r\n",
        "NOOP\r\n",
    ];
    (0..n).flat_map(|i| typical[i % typical.len()].bytes()).collect()
}

/// A UIDL listing of about `len` octets, as a server sends it.
pub fn uidl_listing(len: usize) -> Vec<u8> {
    let mut out = b"+OK unique-id listing follows\r\n".to_vec();
    let mut n = 1u32;
    while out.len() < len {
        out.extend_from_slice(
            format!("{n} 00000{n:08x}.1732269600.M{n}P4711.mail,S=52311:2,S\r\n").as_bytes(),
        );
        n += 1;
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Baseline 1: count the lines by finding every LF with memchr, touching nothing else.
pub fn memchr_lines(input: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', input).count()
}

/// Baseline 1b: find each line end with one memchr call per line, as any decoder that hands out
/// one line per call must; the practical limit for such a decoder.
pub fn memchr_each_line(input: &[u8]) -> usize {
    let (mut lines, mut at) = (0, 0);
    while let Some(i) = memchr::memchr(b'\n', &input[at..]) {
        at += i + 1;
        lines += 1;
    }
    lines
}

/// Baseline 2: find every line with memchr and copy it into `out`.
pub fn copy_lines(input: &[u8], out: &mut BytesMut) {
    let mut at = 0;
    for end in memchr::memchr_iter(b'\n', input) {
        out.extend_from_slice(&input[at..=end]);
        at = end + 1;
    }
    out.extend_from_slice(&input[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_have_the_requested_shape() {
        assert_eq!(text(1 << 20).len(), 1 << 20);
        assert_eq!(dot_heavy(1000).len(), 1000);
        assert_eq!(memchr_lines(&pipeline(16)), 16);
        assert_eq!(memchr_each_line(&pipeline(256)), 256);
        let uidl = uidl_listing(4096);
        assert!(uidl.len() >= 4096 && uidl.ends_with(b"\r\n.\r\n"));
    }

    #[test]
    fn the_copy_baseline_copies_everything() {
        let input = text(10_000);
        let mut out = BytesMut::new();
        copy_lines(&input, &mut out);
        assert_eq!(&out[..], &input[..]);
    }

    #[test]
    fn stuffing_a_dot_heavy_text_adds_a_dot_per_dotted_line() {
        let input = dot_heavy(14 * 10);
        let wire = stuffed(&input);
        assert_eq!(wire.len(), input.len() + 30 + 3);
    }
}

/// The POP3 load generator behind the `pop3-load` binary.
pub mod load;

/// `pop3-floor`: the reference server that answers RETR by `sendfile` or one `write`.
pub mod floor;
