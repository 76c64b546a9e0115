//! The mbox scanner, sans I/O: octets in (in chunks of any size), message boundaries, RFC 1939
//! sizes and UIDLs out. It reads no file and keeps no message: [`Mbox::open`](super::Mbox::open)
//! feeds it the file, the fuzz target `mbox_scan` feeds it anything, and the result does not
//! depend on how the octets were split (a property test checks it).
//!
//! The rules (see the [module docs](super)): a message starts at a line beginning with
//! `From ` that is the first line of the input or follows an empty line; that line is not part
//! of the message, nor is the empty line before the next `From ` line. Sizes count what is
//! served: every line with CRLF, one `>` less on each `>+From ` line (mboxrd, RFC 4155
//! appendix A). The UIDL hashes the `From ` line, the header section and the size as stored.

use std::collections::HashMap;

use super::LineStart;
use crate::util::Fnv128;

/// Where one message is in the scanned octets, and what it is served as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedMessage {
    /// Offset of its `From ` line.
    pub from_start: u64,
    /// Offset of its first octet (after the `From ` line).
    pub body_start: u64,
    /// Offset just past its last octet (before the separating empty line, if any).
    pub body_end: u64,
    /// Its RFC 1939 size: what is served, CRLF line ends, mboxrd quoting undone.
    pub size: u64,
    /// Its UIDL: 32 hex digits, then `-2`, `-3`... for repeats of an identical message.
    pub uidl: String,
}

/// Why octets are not an mbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// Something other than empty lines comes before the first `From ` line.
    NoFromLine,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::NoFromLine => f.write_str("mbox does not begin with a \"From \" line"),
        }
    }
}

impl std::error::Error for ScanError {}

/// The scanner's view of the current message.
#[derive(Debug)]
struct Current {
    from_start: u64,
    body_start: u64,
    hash: Fnv128,
    in_headers: bool,
    /// Sum of the RFC 1939 sizes of its complete lines.
    acc: u64,
    /// (start, contribution, empty) of its last complete line.
    last_line: Option<(u64, u64, bool)>,
    /// What a last line without LF adds when served (CRLF, or LF after a CR).
    completion: u64,
    /// Its `>+From ` lines, each served with one `>` less.
    unquoted: u64,
}

/// A message whose end was found: where it is, its size, and its UIDL hash before the
/// repeat suffix.
#[derive(Debug)]
struct Done {
    from_start: u64,
    body_start: u64,
    body_end: u64,
    size: u64,
    hash: Fnv128,
}

/// The mbox line scanner. [`feed`](Self::feed) it the octets in order, in any chunks, then
/// [`finish`](Self::finish) it.
#[derive(Debug)]
pub struct Scanner {
    /// Octets fed so far.
    offset: u64,
    done: Vec<Done>,
    cur: Option<Current>,
    /// The line being read: where it starts, its length so far, its first five octets, its
    /// last octet so far, and whether it is `>+From `.
    line_start: u64,
    line_len: u64,
    prefix: [u8; 5],
    prefix_len: usize,
    line_last: Option<u8>,
    /// The octet before the line's last one so far (a CR before the LF).
    before_last: Option<u8>,
    line_kind: LineStart,
    /// The line is the first of the input or follows an empty line: a `From ` line there
    /// starts a message.
    candidate: bool,
    /// The hash of the candidate line, in case it is a `From ` line.
    cand_hash: Fnv128,
    failed: Option<ScanError>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner at the start of an mbox.
    pub fn new() -> Self {
        Self {
            offset: 0,
            done: Vec::new(),
            cur: None,
            line_start: 0,
            line_len: 0,
            prefix: [0; 5],
            prefix_len: 0,
            line_last: None,
            before_last: None,
            line_kind: LineStart::default(),
            candidate: true,
            cand_hash: Fnv128::new(),
            failed: None,
        }
    }

    /// Octets fed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Scans the next octets. Once it has failed, it stays failed and ignores the rest.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(), ScanError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut i = 0;
        while i < buf.len() {
            let (seg, complete) = match memchr::memchr(b'\n', &buf[i..]) {
                Some(o) => (&buf[i..i + o + 1], true),
                None => (&buf[i..], false),
            };
            self.segment(self.offset + i as u64, seg);
            i += seg.len();
            if complete {
                if let Err(e) = self.end_line() {
                    self.failed = Some(e);
                    return Err(e);
                }
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Takes a piece of the current line, found at offset `at`: all of it up to its LF, or
    /// what the chunk holds of it.
    fn segment(&mut self, at: u64, seg: &[u8]) {
        if self.line_len == 0 {
            self.line_start = at;
            self.prefix_len = 0;
            self.line_kind = LineStart::default();
            if self.candidate {
                self.cand_hash = Fnv128::new();
            }
        }
        if self.line_kind.from.is_none() {
            self.line_kind.feed(seg);
        }
        let take = (5 - self.prefix_len).min(seg.len());
        self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&seg[..take]);
        self.prefix_len += take;
        if self.candidate {
            self.cand_hash.update(seg);
        }
        if let Some(c) = self.cur.as_mut() {
            if c.in_headers {
                c.hash.update(seg);
            }
        }
        self.line_len += seg.len() as u64;
        // The octet before the last: in this segment, or the line's last so far.
        self.before_last = if seg.len() >= 2 { Some(seg[seg.len() - 2]) } else { self.line_last };
        self.line_last = seg.last().copied();
    }

    /// A complete line `[line_start, line_start + line_len)` was read.
    fn end_line(&mut self) -> Result<(), ScanError> {
        let (line_start, line_len) = (self.line_start, self.line_len);
        let content = line_len - 1;
        let cr = self.before_last == Some(b'\r') && content >= 1;
        let empty = content == 0 || (content == 1 && cr);
        if self.candidate && self.prefix[..self.prefix_len] == *b"From " {
            if let Some(c) = self.cur.take() {
                self.close(c, line_start);
            }
            self.cur = Some(Current {
                from_start: line_start,
                body_start: line_start + line_len,
                hash: self.cand_hash,
                in_headers: true,
                acc: 0,
                last_line: None,
                completion: 0,
                unquoted: 0,
            });
        } else if let Some(c) = self.cur.as_mut() {
            let contrib = line_len + u64::from(!cr);
            c.acc += contrib;
            c.unquoted += u64::from(self.line_kind.is_quoted_from());
            c.last_line = Some((line_start, contrib, empty));
            if empty {
                c.in_headers = false;
            }
        } else if !empty {
            return Err(ScanError::NoFromLine);
        }
        self.candidate = empty;
        self.line_len = 0;
        self.line_last = None;
        Ok(())
    }

    /// Ends message `cur`, whose region (separator included) ends at `region_end`.
    fn close(&mut self, cur: Current, region_end: u64) {
        let (body_end, stored) = match cur.last_line {
            Some((start, contrib, true)) => (start, cur.acc - contrib),
            _ => (region_end, cur.acc + cur.completion),
        };
        // The UIDL hashes the size of the message as stored, before unquoting, as it always
        // did: UIDLs stay those served before reading unquoted.
        let mut hash = cur.hash;
        hash.update(&stored.to_le_bytes());
        self.done.push(Done {
            from_start: cur.from_start,
            body_start: cur.body_start,
            body_end,
            size: stored - cur.unquoted,
            hash,
        });
    }

    /// Ends the input: the messages in order, each with its UIDL.
    pub fn finish(mut self) -> Result<Vec<ScannedMessage>, ScanError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.line_len > 0 {
            // A last line without LF.
            match self.cur.as_mut() {
                Some(c) => {
                    c.acc += self.line_len;
                    c.completion = if self.line_last == Some(b'\r') { 1 } else { 2 };
                    c.last_line = None;
                    c.unquoted += u64::from(self.line_kind.is_quoted_from());
                }
                None => return Err(ScanError::NoFromLine),
            }
        }
        if let Some(c) = self.cur.take() {
            self.close(c, self.offset);
        }
        let mut seen = HashMap::<String, u32>::new();
        let messages = self
            .done
            .into_iter()
            .map(|d| {
                let base = d.hash.hex();
                let count = seen.entry(base.clone()).or_insert(0);
                *count += 1;
                let uidl = if *count == 1 { base } else { format!("{base}-{count}") };
                ScannedMessage {
                    from_start: d.from_start,
                    body_start: d.body_start,
                    body_end: d.body_end,
                    size: d.size,
                    uidl,
                }
            })
            .collect();
        Ok(messages)
    }
}

/// Scans `input` in one piece.
pub fn scan_bytes(input: &[u8]) -> Result<Vec<ScannedMessage>, ScanError> {
    let mut scanner = Scanner::new();
    scanner.feed(input)?;
    scanner.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_sizes_and_repeats() {
        let mbox =
            b"\nFrom a\nS: 1\n\nbody\n\nFrom b\r\nS: 2\r\n\r\n>From q\r\n\nFrom a\nS: 1\n\nbody\n";
        let got = scan_bytes(mbox).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].from_start, got[0].body_start), (1, 8));
        assert_eq!(&mbox[got[0].body_start as usize..got[0].body_end as usize], b"S: 1\n\nbody\n");
        assert_eq!(got[0].size, 6 + 2 + 6);
        // ">From q" is served as "From q": one octet less.
        assert_eq!(got[1].size, 6 + 2 + 8);
        assert_eq!(got[2].uidl, format!("{}-2", got[0].uidl));
        assert_eq!(scan_bytes(b"x\nFrom a\n"), Err(ScanError::NoFromLine));
        assert_eq!(scan_bytes(b"\n\nx"), Err(ScanError::NoFromLine));
        assert_eq!(scan_bytes(b"").unwrap(), []);
        // A last line without LF is served with CRLF.
        assert_eq!(scan_bytes(b"From a\nx").unwrap()[0].size, 3);
    }

    #[test]
    fn a_failed_scanner_stays_failed() {
        let mut s = Scanner::new();
        assert_eq!(s.feed(b"junk\n"), Err(ScanError::NoFromLine));
        assert_eq!(s.feed(b"From a\n"), Err(ScanError::NoFromLine));
        assert_eq!(s.finish(), Err(ScanError::NoFromLine));
    }
}
