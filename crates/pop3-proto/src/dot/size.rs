//! The RFC 1939 size of a stored message.

/// The RFC 1939 size of `message` as stored: the octets `RETR` sends for it before the
/// terminator, without the stuffing dots (RFC 1939 §11). See the [module docs](super) for the
/// line-ending rule; this is what `STAT` and `LIST` must announce.
///
/// ```
/// // "a\n" is sent as "a\r\n"; "b" gets a CRLF added.
/// assert_eq!(pop3_proto::dot::wire_size(b"a\nb"), 6);
/// ```
pub fn wire_size(message: &[u8]) -> u64 {
    let bare_lf =
        memchr::memchr_iter(b'\n', message).filter(|&i| i == 0 || message[i - 1] != b'\r').count();
    let completion = match message.last() {
        None | Some(b'\n') => 0,
        Some(b'\r') => 1,
        Some(_) => 2,
    };
    message.len() as u64 + bare_lf as u64 + completion
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::wire_size;
    use crate::{DotStuffer, DotUnstuffer};

    proptest! {
        /// The size equals what is actually sent: stuff, then unstuff, and count.
        #[test]
        fn wire_size_is_what_retr_sends(message in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'.'), any::<u8>()], 0..200)
        ) {
            let mut wire = BytesMut::new();
            let mut stuffer = DotStuffer::new();
            stuffer.stuff(&message, &mut wire);
            stuffer.finish(&mut wire);
            let mut payload = BytesMut::new();
            let unstuffed = DotUnstuffer::new().unstuff(&wire, &mut payload);
            prop_assert!(unstuffed.done);
            prop_assert_eq!(wire_size(&message), payload.len() as u64);
        }
    }
}
