//! The RFC 1939 size of a message, computed from its stored bytes in one streaming pass.
//!
//! RFC 1939 §5 (LIST): the size is the number of octets the server sends for the message,
//! after line endings are normalised to CRLF and before dot-stuffing (stuffing dots are not
//! counted). The protocol layer (`pop3-proto`'s `DotStuffer`) sends a stored message thus:
//!
//! * only LF ends a line; a CR immediately before that LF belongs to the line end (CRLF, 2 octets);
//! * a bare LF is sent as CRLF, so it counts as 2 octets;
//! * a bare CR anywhere else is ordinary data (1 octet);
//! * a last line without a line end is completed: `CRLF` is added (+2), except that a CR at the
//!   very end of the message becomes that CRLF (+1, only the LF is added);
//! * an empty message is sent as nothing (size 0).
//!
//! So `size = stored length + bare LFs + completion`, which [`SizeCounter`] computes without
//! holding more than one byte of state between chunks.

/// Streaming computation of the RFC 1939 size (see the [module docs](self)).
///
/// ```
/// use pop3_storage::SizeCounter;
/// let mut c = SizeCounter::new();
/// c.update(b"a\r");
/// c.update(b"\nb\n");
/// c.update(b"no end");
/// // "a\r\n" (3) + "b\r\n" (3) + "no end\r\n" (8)
/// assert_eq!(c.finish(), 14);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeCounter {
    len: u64,
    bare_lf: u64,
    last: Option<u8>,
}

impl SizeCounter {
    /// A counter at the start of a message.
    pub const fn new() -> Self {
        Self { len: 0, bare_lf: 0, last: None }
    }

    /// Feeds the next chunk of stored bytes.
    pub fn update(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else {
            return;
        };
        for lf in memchr::memchr_iter(b'\n', chunk) {
            let before = if lf == 0 { self.last } else { Some(chunk[lf - 1]) };
            if before != Some(b'\r') {
                self.bare_lf += 1;
            }
        }
        self.len += chunk.len() as u64;
        self.last = Some(last);
    }

    /// Stored bytes seen so far.
    pub fn stored_len(&self) -> u64 {
        self.len
    }

    /// The RFC 1939 size of everything fed so far, as a complete message.
    pub fn finish(&self) -> u64 {
        let completion = match self.last {
            None | Some(b'\n') => 0,
            Some(b'\r') => 1,
            Some(_) => 2,
        };
        self.len + self.bare_lf + completion
    }
}

/// The RFC 1939 size of a whole stored message (see the [module docs](self)).
pub fn rfc1939_size(message: &[u8]) -> u64 {
    let mut c = SizeCounter::new();
    c.update(message);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    use pop3_testkit::transmitted;

    #[test]
    fn known_answers() {
        assert_eq!(rfc1939_size(b""), 0);
        assert_eq!(rfc1939_size(b"a\r\n"), 3);
        assert_eq!(rfc1939_size(b"a\n"), 3);
        assert_eq!(rfc1939_size(b"a"), 3);
        assert_eq!(rfc1939_size(b"a\r"), 3);
        assert_eq!(rfc1939_size(b"\r\r\n"), 3);
        assert_eq!(rfc1939_size(b"a\rb\n"), 5);
        assert_eq!(rfc1939_size(b"\n\n"), 4);
        assert_eq!(rfc1939_size(b".\n"), 3, "stuffing dots are not counted");
    }

    proptest::proptest! {
        #[test]
        fn size_equals_transmitted_length_for_any_chunking(
            message in proptest::collection::vec(
                proptest::prop_oneof![
                    Just(b'\r'), Just(b'\n'), Just(b'.'), proptest::num::u8::ANY
                ],
                0..300,
            ),
            cuts in proptest::collection::vec(0usize..300, 0..6),
        ) {
            use proptest::prelude::*;
            let expected = transmitted(&message).len() as u64;
            prop_assert_eq!(rfc1939_size(&message), expected);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(message.len())).collect();
            cuts.sort_unstable();
            let mut c = SizeCounter::new();
            let mut at = 0;
            for cut in cuts {
                c.update(&message[at..cut]);
                at = cut;
            }
            c.update(&message[at..]);
            prop_assert_eq!(c.finish(), expected);
            prop_assert_eq!(c.stored_len(), message.len() as u64);
        }
    }
    use proptest::strategy::Just;
}
