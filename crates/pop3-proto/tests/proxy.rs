//! PROXY protocol headers: round trips through the encoder, any split of the input, any prefix,
//! and arbitrary bytes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use pop3_proto::proxy::{
    decode, Addresses, Decode, ProxyCommand, ProxyDecoder, ProxyHeader, Ssl, SslTlv, Tlv,
    Transport, UnixAddr, Version, V1_MAX_LEN, V2_MAX_LEN,
};
use proptest::prelude::*;

fn v4() -> impl Strategy<Value = SocketAddrV4> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn v6() -> impl Strategy<Value = SocketAddrV6> {
    (any::<u128>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
}

fn unix() -> impl Strategy<Value = UnixAddr> {
    proptest::collection::vec(1u8..=255, 0..108).prop_map(|path| {
        let mut raw = [0u8; 108];
        raw[..path.len()].copy_from_slice(&path);
        UnixAddr(raw.into())
    })
}

fn ip_addresses() -> impl Strategy<Value = Addresses> {
    prop_oneof![
        (v4(), v4()).prop_map(|(source, destination)| Addresses::Ipv4 { source, destination }),
        (v6(), v6()).prop_map(|(source, destination)| Addresses::Ipv6 { source, destination }),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn ssl() -> impl Strategy<Value = Ssl> {
    let sub = prop_oneof![
        "TLSv1\\.[0-3]".prop_map(SslTlv::Version),
        "\\PC{0,20}".prop_map(SslTlv::CommonName),
        "[A-Z0-9-]{1,30}".prop_map(SslTlv::Cipher),
        "[A-Z0-9-]{1,10}".prop_map(SslTlv::SignatureAlgorithm),
        "[A-Z0-9]{1,10}".prop_map(SslTlv::KeyAlgorithm),
        (0x26u8..=0xff, bytes(8)).prop_map(|(kind, value)| SslTlv::Other { kind, value }),
    ];
    (0u8..8, any::<u32>(), proptest::collection::vec(sub, 0..4))
        .prop_map(|(client, verify, tlvs)| Ssl { client, verify, tlvs })
}

fn tlvs() -> impl Strategy<Value = Vec<Tlv>> {
    let tlv = prop_oneof![
        bytes(10).prop_map(Tlv::Alpn),
        "\\PC{0,30}".prop_map(Tlv::Authority),
        (0u16..40).prop_map(Tlv::Noop),
        bytes(129).prop_map(Tlv::UniqueId),
        ssl().prop_map(Tlv::Ssl),
        "[a-z]{0,10}".prop_map(Tlv::Netns),
        (0xe0u8..=0xff, bytes(10)).prop_map(|(kind, value)| Tlv::Other { kind, value }),
    ];
    (proptest::collection::vec(tlv, 0..5), any::<bool>(), any::<prop::sample::Index>()).prop_map(
        |(mut tlvs, crc, at)| {
            if crc {
                let at = at.index(tlvs.len() + 1);
                tlvs.insert(at, Tlv::Crc32c);
            }
            tlvs
        },
    )
}

/// Headers the encoder accepts: everything each version can carry.
fn header() -> impl Strategy<Value = ProxyHeader> {
    let proxied = |version, transport, addresses, tlvs| ProxyHeader {
        version,
        command: ProxyCommand::Proxy,
        transport,
        addresses,
        tlvs,
    };
    prop_oneof![
        // Version 1: TCP4, TCP6, UNKNOWN.
        ip_addresses().prop_map(move |a| proxied(Version::V1, Transport::Stream, a, vec![])),
        Just(proxied(Version::V1, Transport::Unspecified, Addresses::Unspecified, vec![])),
        // Version 2.
        Just(ProxyHeader::local()),
        prop_oneof![
            Just(Transport::Unspecified),
            Just(Transport::Stream),
            Just(Transport::Datagram)
        ]
        .prop_map(move |t| proxied(Version::V2, t, Addresses::Unspecified, vec![])),
        (
            prop_oneof![Just(Transport::Stream), Just(Transport::Datagram)],
            prop_oneof![
                ip_addresses(),
                (unix(), unix())
                    .prop_map(|(source, destination)| Addresses::Unix { source, destination }),
            ],
            tlvs(),
        )
            .prop_map(move |(t, a, tlvs)| proxied(Version::V2, t, a, tlvs)),
    ]
}

fn encoded(header: &ProxyHeader) -> Vec<u8> {
    let mut out = Vec::new();
    header.encode(&mut out).expect("the strategy makes encodable headers");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// decode(encode(h)) == h, and the bytes after the header are left alone.
    #[test]
    fn round_trip(header in header(), tail in bytes(20)) {
        let mut input = encoded(&header);
        let len = input.len();
        let max = if header.version == Version::V1 { V1_MAX_LEN } else { V2_MAX_LEN };
        prop_assert!(len <= max);
        input.extend_from_slice(&tail);
        prop_assert_eq!(decode(&input), Ok(Decode::Done { header, consumed: len }));
    }

    /// Every strict prefix of a header is incomplete, and what it says is still needed never
    /// reaches past the header.
    #[test]
    fn prefixes_are_incomplete_and_needed_is_a_lower_bound(header in header()) {
        let input = encoded(&header);
        for cut in 0..input.len() {
            match decode(&input[..cut]) {
                Ok(Decode::Incomplete { needed }) => {
                    prop_assert!(needed >= 1 && cut + needed <= input.len(), "{cut} + {needed}")
                }
                other => prop_assert!(false, "prefix of {cut}: {other:?}"),
            }
        }
    }

    /// Any split of the input into pieces gives what the whole gives, and the pieces consume
    /// exactly the header.
    #[test]
    fn split_invariance(header in header(), tail in bytes(20), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let mut input = encoded(&header);
        let len = input.len();
        input.extend_from_slice(&tail);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        cuts.push(0);
        cuts.push(input.len());
        cuts.sort_unstable();
        let mut decoder = ProxyDecoder::new();
        let mut total = 0;
        let mut got = None;
        for piece in cuts.windows(2).map(|w| &input[w[0]..w[1]]) {
            match decoder.feed(piece).unwrap() {
                Decode::Incomplete { .. } => total += piece.len(),
                Decode::Done { header, consumed } => {
                    total += consumed;
                    got = Some(header);
                    break;
                }
            }
        }
        prop_assert_eq!(total, len);
        prop_assert_eq!(got, Some(header));
    }

    /// Arbitrary bytes: no panic, and the same answer whole and byte by byte.
    #[test]
    fn arbitrary_input(mut input in bytes(300), v2 in any::<bool>(), v1 in any::<bool>()) {
        if v2 {
            input.splice(0..0, *b"\r\n\r\n\0\r\nQUIT\n\x21");
        } else if v1 {
            input.splice(0..0, *b"PROXY ");
        }
        let whole = decode(&input);
        if let Ok(Decode::Done { consumed, .. }) = &whole {
            prop_assert!(*consumed <= input.len());
        }
        let mut decoder = ProxyDecoder::new();
        let mut fed = decoder.feed(&[]);
        for (i, b) in input.iter().enumerate() {
            fed = decoder.feed(std::slice::from_ref(b));
            match &fed {
                Ok(Decode::Incomplete { .. }) => {}
                Ok(Decode::Done { consumed, header }) => {
                    prop_assert_eq!(*consumed, 1);
                    prop_assert_eq!(&whole, &Ok(Decode::Done { header: header.clone(), consumed: i + 1 }));
                    break;
                }
                Err(e) => {
                    prop_assert_eq!(&whole, &Err(*e));
                    break;
                }
            }
        }
        if let Ok(Decode::Incomplete { needed }) = fed {
            prop_assert_eq!(whole, Ok(Decode::Incomplete { needed }));
        }
    }
}
