//! `proxy_header`: PROXY protocol headers (versions 1 and 2) from arbitrary bytes.
//!
//! The data is decoded whole with `proxy::decode`, and fed in arbitrary pieces to a
//! `ProxyDecoder`. What must hold:
//!
//! - no panic; the pieces give the outcome the whole gives (the same header and the same
//!   header length, or the same error), and never consume a byte past the header;
//! - `Incomplete { needed }` is at least 1 and never reaches past the longest header of the
//!   version (107 bytes for version 1, 16 + 65535 for version 2);
//! - every decoded header encodes, and its encoding decodes to the same header.

#![no_main]
#![forbid(unsafe_code)]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pop3_proto::proxy::{decode, Decode, ProxyDecoder, V1_MAX_LEN, V2_MAX_LEN};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Cut points (taken modulo the input length).
    cuts: Vec<u16>,
    /// Prepend a version 2 signature (0), the start of a version 1 line (1), or nothing.
    start: u8,
    data: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let mut data = match input.start % 3 {
        0 => b"\r\n\r\n\0\r\nQUIT\n".to_vec(),
        1 => b"PROXY ".to_vec(),
        _ => Vec::new(),
    };
    data.extend_from_slice(input.data);
    let max = if data.first() == Some(&b'P') { V1_MAX_LEN } else { V2_MAX_LEN };

    let whole = decode(&data);
    match &whole {
        Ok(Decode::Incomplete { needed }) => {
            assert!(*needed >= 1 && data.len() + needed <= max, "{needed} at {}", data.len())
        }
        Ok(Decode::Done { header, consumed }) => {
            assert!(*consumed <= data.len() && *consumed <= max);
            let mut again = Vec::new();
            header.encode(&mut again).expect("a decoded header encodes");
            match decode(&again) {
                Ok(Decode::Done { header: back, consumed }) => {
                    assert_eq!(&back, header);
                    assert_eq!(consumed, again.len());
                }
                other => panic!("re-encoded {header:?} decodes to {other:?}"),
            }
        }
        Err(_) => {}
    }

    let mut cuts: Vec<usize> =
        input.cuts.iter().map(|&c| usize::from(c) % (data.len() + 1)).collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    let mut decoder = ProxyDecoder::new();
    let mut at = 0;
    let mut fed = decoder.feed(&[]);
    for piece in cuts.windows(2).map(|w| &data[w[0]..w[1]]) {
        fed = decoder.feed(piece);
        match &fed {
            Ok(Decode::Incomplete { .. }) => at += piece.len(),
            Ok(Decode::Done { header, consumed }) => {
                assert!(*consumed <= piece.len());
                let expected = Decode::Done { header: header.clone(), consumed: at + consumed };
                assert_eq!(whole, Ok(expected));
                return;
            }
            Err(e) => {
                assert_eq!(whole, Err(*e));
                return;
            }
        }
    }
    assert_eq!(fed, whole, "all fed, still incomplete");
});
