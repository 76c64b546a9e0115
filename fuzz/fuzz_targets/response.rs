//! `response`: raw bytes from a server, decoded as a client would.
//!
//! The first octet picks the `Expect` (what the client asked for) and small limits; the rest
//! is the server's output. It is fed to `ResponseDecoder::decode` in a loop (drop `consumed`,
//! stop on `Ok(None)`), with the default limits and with the small ones, and to
//! `ResponseDecoder::decode_item` the same way. Checked:
//!
//! - no panic, whatever the bytes;
//! - `consumed` never exceeds the input left, and the loop ends;
//! - encode/decode/encode is stable: every decoded response (or listing line) is encoded with
//!   `Response::encode` (`ListItem::encode`), decoded again with the same `Expect` (and
//!   generous limits: re-encoding may lengthen a line, e.g. LF -> CRLF or U+FFFD for a bad
//!   octet), consuming the whole encoding, and encodes to the same octets. Values need not be
//!   equal: the encoder replaces control characters and cuts status lines at 512 octets;
//! - a status line never encodes to more than 512 octets (RFC 2449 §4).
//!
//! A multi-line block whose lines do not all parse, or that is too large, is refused with
//! nothing consumed (the client is expected to switch to `decode_item` or close); the loop
//! stops there.

#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pop3_proto::{Expect, Limits, ListItem, Response, ResponseDecoder};

const EXPECTS: [Expect; 6] =
    [Expect::Status, Expect::Sasl, Expect::Capa, Expect::List, Expect::Uidl, Expect::Lang];

fn generous() -> Limits {
    Limits { response_line: 1 << 20, ..Limits::default() }
}

fn encode(response: &Response<'_>) -> BytesMut {
    let mut out = BytesMut::new();
    response.encode(&mut out);
    out
}

fn check_response(response: &Response<'_>, expect: Expect) {
    let first = encode(response);
    if let Some(status) = response.status_line() {
        let mut line = BytesMut::new();
        status.encode(&mut line);
        assert!(line.len() <= Limits::RFC_RESPONSE_LINE, "{line:?}");
    }
    let d = ResponseDecoder::new(generous()).decode(&first, expect);
    assert_eq!(d.consumed, first.len(), "{expect:?} {first:?} -> {d:?}");
    let again = match d.outcome {
        Ok(Some(again)) => again,
        other => panic!("{expect:?} {first:?} does not decode: {other:?}"),
    };
    let second = encode(&again);
    assert_eq!(first, second, "{expect:?}: {response:?} then {again:?}");
}

fn check_item(item: &ListItem<'_>, expect: Expect) {
    let mut first = BytesMut::new();
    item.encode(&mut first);
    let d = ResponseDecoder::new(generous()).decode_item(&first, expect);
    assert_eq!(d.consumed, first.len(), "{expect:?} {first:?} -> {d:?}");
    let again = match d.outcome {
        Ok(Some(again)) => again,
        other => panic!("{expect:?} {first:?} does not decode: {other:?}"),
    };
    let mut second = BytesMut::new();
    again.encode(&mut second);
    assert_eq!(first, second, "{expect:?}: {item:?} then {again:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, wire)) = data.split_first() else {
        return;
    };
    let expect = EXPECTS[usize::from(selector) % EXPECTS.len()];
    let small = Limits {
        response_line: 4 + usize::from(selector / 2),
        multiline_block: 16 + 4 * usize::from(selector),
        ..Limits::default()
    };
    for limits in [Limits::default(), small] {
        let mut decoder = ResponseDecoder::new(limits);
        let mut rest = wire;
        for _ in 0..=wire.len() {
            let d = decoder.decode(rest, expect);
            assert!(d.consumed <= rest.len(), "{} of {}", d.consumed, rest.len());
            match &d.outcome {
                Ok(None) => break,
                Ok(Some(response)) => {
                    assert!(d.consumed > 0, "a response without consuming input");
                    check_response(response, expect);
                }
                // A refused block: nothing consumed, by design.
                Err(_) if d.consumed == 0 => break,
                Err(_) => {}
            }
            rest = &rest[d.consumed..];
        }

        let mut decoder = ResponseDecoder::new(limits);
        let mut rest = wire;
        let mut ended = false;
        for _ in 0..=wire.len() {
            let d = decoder.decode_item(rest, expect);
            assert!(d.consumed <= rest.len(), "{} of {}", d.consumed, rest.len());
            match &d.outcome {
                Ok(None) => {
                    ended = true;
                    break;
                }
                Ok(Some(item)) => {
                    assert!(d.consumed > 0, "an item without consuming input");
                    check_item(item, expect);
                }
                Err(_) => assert!(d.consumed > 0, "an error without consuming input"),
            }
            rest = &rest[d.consumed..];
        }
        assert!(ended, "decode_item loop does not terminate");
    }
});
