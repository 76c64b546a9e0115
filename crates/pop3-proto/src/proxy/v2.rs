//! Version 2: the binary header (§2.2).
//!
//! ```text
//! struct proxy_hdr_v2 {
//!     uint8_t sig[12];  /* 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A */
//!     uint8_t ver_cmd;  /* version (high nibble, 2) and command (LOCAL 0, PROXY 1) */
//!     uint8_t fam;      /* family (UNSPEC 0, INET 1, INET6 2, UNIX 3) and transport
//!                          (UNSPEC 0, STREAM 1, DGRAM 2) */
//!     uint16_t len;     /* bytes that follow: addresses, then TLVs */
//! };
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::{
    crc32c, tlv, Addresses, Decode, EncodeError, ProxyCommand, ProxyError, ProxyHeader, Transport,
    UnixAddr, Version, V2_SIGNATURE,
};

const FIXED: usize = 16;
const LOCAL: u8 = 0x0;
const PROXY: u8 = 0x1;
const AF_UNSPEC: u8 = 0x0;
const AF_INET: u8 = 0x1;
const AF_INET6: u8 = 0x2;
const AF_UNIX: u8 = 0x3;

/// Decodes a header that starts with CR.
pub(super) fn decode(input: &[u8]) -> Result<Decode, ProxyError> {
    let sig = input.len().min(V2_SIGNATURE.len());
    if input[..sig] != V2_SIGNATURE[..sig] {
        return Err(ProxyError::NotProxy);
    }
    // Check each fixed byte as soon as it is there, so that a bad header is refused early.
    if let Some(&ver_cmd) = input.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(ProxyError::UnsupportedVersion);
        }
        if ver_cmd & 0xf > PROXY {
            return Err(ProxyError::UnknownCommand);
        }
    }
    if let Some(&fam) = input.get(13) {
        // LOCAL ignores the family (§2.2); PROXY must name a defined one.
        if input[12] & 0xf == PROXY && (fam >> 4 > AF_UNIX || fam & 0xf > 2) {
            return Err(ProxyError::UnknownFamily);
        }
    }
    let Some(&[hi, lo]) = input.get(14..FIXED) else {
        return Ok(Decode::Incomplete { needed: FIXED - input.len() });
    };
    let total = FIXED + usize::from(u16::from_be_bytes([hi, lo]));
    if input.len() < total {
        return Ok(Decode::Incomplete { needed: total - input.len() });
    }
    let header = parse(&input[..total])?;
    Ok(Decode::Done { header, consumed: total })
}

/// A whole header.
fn parse(header: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let (command, fam, block) = (header[12] & 0xf, header[13], &header[FIXED..]);
    let unspecified = ProxyHeader {
        version: Version::V2,
        command: ProxyCommand::Local,
        transport: Transport::Unspecified,
        addresses: Addresses::Unspecified,
        tlvs: Vec::new(),
    };
    // §2.2: LOCAL "must ... discard the protocol block including the family".
    if command == LOCAL {
        return Ok(unspecified);
    }
    let transport = match fam & 0xf {
        0 => Transport::Unspecified,
        1 => Transport::Stream,
        _ => Transport::Datagram,
    };
    let proxied = ProxyHeader { command: ProxyCommand::Proxy, transport, ..unspecified };
    // An unspecified family or transport: "the receiver should ignore address information",
    // and with it the rest of the block.
    let family = fam >> 4;
    if family == AF_UNSPEC || transport == Transport::Unspecified {
        return Ok(proxied);
    }
    let size = match family {
        AF_INET => 12,
        AF_INET6 => 36,
        _ => 216,
    };
    let Some((addresses, rest)) = block.split_at_checked(size) else {
        return Err(ProxyError::ShortAddressBlock);
    };
    let port = |at: usize| u16::from_be_bytes(take(addresses, at));
    let addresses = match family {
        AF_INET => Addresses::Ipv4 {
            source: SocketAddrV4::new(Ipv4Addr::from(take::<4>(addresses, 0)), port(8)),
            destination: SocketAddrV4::new(Ipv4Addr::from(take::<4>(addresses, 4)), port(10)),
        },
        AF_INET6 => Addresses::Ipv6 {
            source: SocketAddrV6::new(Ipv6Addr::from(take::<16>(addresses, 0)), port(32), 0, 0),
            destination: SocketAddrV6::new(
                Ipv6Addr::from(take::<16>(addresses, 16)),
                port(34),
                0,
                0,
            ),
        },
        _ => Addresses::Unix {
            source: UnixAddr(Box::new(take(addresses, 0))),
            destination: UnixAddr(Box::new(take(addresses, 108))),
        },
    };
    let (tlvs, crc_at) = tlv::decode(rest)?;
    if let Some(at) = crc_at {
        // §2.2.3: the checksum of the whole header with the checksum field zeroed.
        let at = FIXED + size + at;
        let sent = u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        if crc32c::checksum(&[&header[..at], &[0; 4], &header[at + 4..]]) != sent {
            return Err(ProxyError::ChecksumMismatch);
        }
    }
    Ok(ProxyHeader { addresses, tlvs, ..proxied })
}

/// `N` bytes of `block` from `at`; the caller has checked that the block is long enough.
fn take<const N: usize>(block: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&block[at..at + N]);
    out
}

pub(super) fn encode(header: &ProxyHeader, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    debug_assert_eq!(header.version, Version::V2);
    let start = out.len();
    out.extend_from_slice(&V2_SIGNATURE);
    let transport = match header.transport {
        Transport::Unspecified => 0,
        Transport::Stream => 1,
        Transport::Datagram => 2,
    };
    let unspecified = header.addresses == Addresses::Unspecified;
    match header.command {
        ProxyCommand::Local if unspecified && header.tlvs.is_empty() && transport == 0 => {
            out.extend_from_slice(&[0x20 | LOCAL, 0, 0, 0]);
            return Ok(());
        }
        ProxyCommand::Local => {
            return Err(EncodeError("LOCAL discards addresses, transport and TLVs"));
        }
        ProxyCommand::Proxy if unspecified && !header.tlvs.is_empty() => {
            return Err(EncodeError("an unspecified address block discards TLVs"));
        }
        ProxyCommand::Proxy if !unspecified && transport == 0 => {
            return Err(EncodeError("an unspecified transport discards the addresses"));
        }
        ProxyCommand::Proxy => {}
    }
    let family = match &header.addresses {
        Addresses::Unspecified => AF_UNSPEC,
        Addresses::Ipv4 { .. } => AF_INET,
        Addresses::Ipv6 { .. } => AF_INET6,
        Addresses::Unix { .. } => AF_UNIX,
    };
    out.extend_from_slice(&[0x20 | PROXY, family << 4 | transport, 0, 0]);
    match &header.addresses {
        Addresses::Unspecified => {}
        Addresses::Ipv4 { source, destination } => {
            out.extend_from_slice(&source.ip().octets());
            out.extend_from_slice(&destination.ip().octets());
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
        }
        Addresses::Ipv6 { source: s, destination: d } => {
            if s.flowinfo() != 0 || s.scope_id() != 0 || d.flowinfo() != 0 || d.scope_id() != 0 {
                return Err(EncodeError("PROXY headers carry no IPv6 flow or scope"));
            }
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        Addresses::Unix { source, destination } => {
            out.extend_from_slice(&source.0[..]);
            out.extend_from_slice(&destination.0[..]);
        }
    }
    let crc_at = tlv::encode(&header.tlvs, out)?;
    let Ok(len) = u16::try_from(out.len() - start - FIXED) else {
        out.truncate(start);
        return Err(EncodeError("PROXY v2 header over 16 + 65535 bytes"));
    };
    out[start + 14..start + FIXED].copy_from_slice(&len.to_be_bytes());
    if let Some(at) = crc_at {
        let crc = crc32c::checksum(&[&out[start..]]);
        out[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{decode as decode_any, Tlv};
    use super::*;
    use alloc::vec;

    fn done(input: &[u8]) -> ProxyHeader {
        match decode_any(input) {
            Ok(Decode::Done { header, consumed }) if consumed == input.len() => header,
            other => panic!("{input:02x?}: {other:?}"),
        }
    }

    /// What HAProxy sends with `send-proxy-v2` (the specification's README example).
    #[test]
    fn a_tcp4_header_as_haproxy_sends_it() {
        let bytes =
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xac\x13\x00\x01\xac\x13\x00\x03\xa6\x52\x00\x50";
        let h = done(bytes);
        assert_eq!(h.command, ProxyCommand::Proxy);
        assert_eq!(h.transport, Transport::Stream);
        assert_eq!(h.source(), Some("172.19.0.1:42578".parse().unwrap()));
        let mut out = Vec::new();
        h.encode(&mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn fixed_fields_are_checked_as_they_arrive() {
        let sig = V2_SIGNATURE;
        let with = |rest: &[u8]| [&sig[..], rest].concat();
        assert_eq!(decode_any(&with(b"\x11")), Err(ProxyError::UnsupportedVersion));
        assert_eq!(decode_any(&with(b"\x22")), Err(ProxyError::UnknownCommand));
        assert_eq!(decode_any(&with(b"\x21\x41")), Err(ProxyError::UnknownFamily));
        assert_eq!(decode_any(&with(b"\x21\x13")), Err(ProxyError::UnknownFamily));
        // LOCAL ignores the family byte, and skips whatever block it announces.
        let local = with(b"\x20\xff\x00\x03abc");
        assert_eq!(done(&local), ProxyHeader::local());
        assert_eq!(decode_any(&with(b"\x21\x11\x00")), Ok(Decode::Incomplete { needed: 1 }));
        assert_eq!(decode_any(&with(b"\x21\x11\x00\x0c")), Ok(Decode::Incomplete { needed: 12 }));
        assert_eq!(decode_any(&with(b"\x21\x11\x00\x04abcd")), Err(ProxyError::ShortAddressBlock));
        assert_eq!(
            decode_any(&with(b"\x21\x21\x00\x0cabcdabcdabcd")),
            Err(ProxyError::ShortAddressBlock)
        );
    }

    #[test]
    fn unspecified_family_or_transport_keeps_the_connection_address() {
        let sig = V2_SIGNATURE;
        for fam in [0x00u8, 0x01, 0x10, 0x20] {
            let bytes = [&sig[..], &[0x21, fam, 0, 2], b"xy"].concat();
            let h = done(&bytes);
            assert_eq!(
                (h.command, h.addresses.clone(), h.source()),
                (ProxyCommand::Proxy, Addresses::Unspecified, None)
            );
        }
    }

    #[test]
    fn crc32c_is_checked_and_written() {
        let mut h = ProxyHeader::tcp(
            Version::V2,
            "[2001:db8::7]:40000".parse().unwrap(),
            "[2001:db8::1]:995".parse().unwrap(),
        );
        h.tlvs = vec![Tlv::Authority("pop.example.org".into()), Tlv::Crc32c];
        let mut bytes = Vec::new();
        h.encode(&mut bytes).unwrap();
        assert_eq!(done(&bytes), h);
        // Any changed byte outside the checksum (here the port) is caught.
        let mut bad = bytes.clone();
        bad[16 + 32] ^= 1;
        assert_eq!(decode_any(&bad), Err(ProxyError::ChecksumMismatch));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode_any(&bad), Err(ProxyError::ChecksumMismatch));
    }

    #[test]
    fn unix_addresses_and_datagrams() {
        let mut source = [0u8; 108];
        source[..9].copy_from_slice(b"/run/sock");
        let h = ProxyHeader {
            version: Version::V2,
            command: ProxyCommand::Proxy,
            transport: Transport::Datagram,
            addresses: Addresses::Unix {
                source: UnixAddr(source.into()),
                destination: UnixAddr([0; 108].into()),
            },
            tlvs: vec![Tlv::Netns("blue".into())],
        };
        let mut bytes = Vec::new();
        h.encode(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 16 + 216 + 7);
        let got = done(&bytes);
        assert_eq!(got, h);
        let Addresses::Unix { source, .. } = &got.addresses else { panic!() };
        assert_eq!(source.path(), b"/run/sock");
        assert_eq!(got.source(), None, "not an IP client address");
    }

    #[test]
    fn too_long_to_encode() {
        let mut h = ProxyHeader::tcp(
            Version::V2,
            "1.2.3.4:1".parse().unwrap(),
            "5.6.7.8:2".parse().unwrap(),
        );
        h.tlvs = vec![Tlv::Noop(65535)];
        let mut out = b"kept".to_vec();
        assert!(h.encode(&mut out).is_err());
        assert_eq!(out, b"kept");
        h.tlvs = vec![Tlv::Noop(65535 - 12 - 3)];
        h.encode(&mut out).unwrap();
        assert_eq!(out.len(), 4 + 16 + 65535);
        assert_eq!(done(&out[4..]), h);
    }
}
