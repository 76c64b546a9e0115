//! Version 1: one line of US-ASCII (§2.1).
//!
//! ```text
//! "PROXY" SP ( "TCP4" | "TCP6" ) SP src-addr SP dst-addr SP src-port SP dst-port CRLF
//! "PROXY" SP "UNKNOWN" [ SP *anything-but-CRLF ] CRLF
//! ```
//!
//! At most 107 bytes with the CRLF; exactly one space between fields; IPv4 addresses as four
//! decimals and ports as a decimal, none with leading zeros (octal confusion).

use alloc::format;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::{
    Addresses, Decode, EncodeError, ProxyCommand, ProxyError, ProxyHeader, Transport, Version,
    MIN_LEN, V1_MAX_LEN,
};

const PREFIX: &[u8] = b"PROXY ";
/// The protocol words, as far as they can be checked before the line is complete.
const PROTOCOLS: [&[u8]; 3] = [b"TCP4 ", b"TCP6 ", b"UNKNOWN"];

/// True if `input` and `expected` agree on their common length.
fn agrees(input: &[u8], expected: &[u8]) -> bool {
    let n = input.len().min(expected.len());
    input[..n] == expected[..n]
}

/// Decodes a line that starts with `P`.
pub(super) fn decode(input: &[u8]) -> Result<Decode, ProxyError> {
    if !agrees(input, PREFIX) {
        return Err(ProxyError::NotProxy);
    }
    if let Some(rest) = input.get(PREFIX.len()..) {
        if !PROTOCOLS.iter().any(|p| agrees(rest, p)) {
            return Err(ProxyError::Syntax);
        }
    }
    // Byte by byte, so that the first fault of the input is the one reported, however it
    // was split when it arrived.
    let mut needed = MIN_LEN;
    for (i, &b) in input.iter().enumerate() {
        if i > 0 && input[i - 1] == b'\r' {
            if b != b'\n' {
                return Err(ProxyError::BadLineEnd);
            }
            let header = parse_line(&input[PREFIX.len()..i - 1])?;
            return Ok(Decode::Done { header, consumed: i + 1 });
        }
        match b {
            b'\n' => return Err(ProxyError::BadLineEnd),
            b'\r' | 0x20..=0x7e => {}
            _ => return Err(ProxyError::InvalidByte),
        }
        // At least the CRLF (or its LF) is missing, and the rest of the shortest line.
        let crlf = if b == b'\r' { 1 } else { 2 };
        needed = crlf.max(MIN_LEN.saturating_sub(i + 1));
        if i + 1 + needed > V1_MAX_LEN {
            return Err(ProxyError::LineTooLong);
        }
    }
    Ok(Decode::Incomplete { needed })
}

/// The line after `PROXY `, without its CRLF.
fn parse_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    // Checked by `decode`: printable ASCII.
    let line = core::str::from_utf8(line).map_err(|_| ProxyError::InvalidByte)?;
    let unknown = ProxyHeader {
        version: super::Version::V1,
        command: ProxyCommand::Proxy,
        transport: Transport::Unspecified,
        addresses: Addresses::Unspecified,
        tlvs: Vec::new(),
    };
    // §2.1: after UNKNOWN, "the receiver must ignore anything presented before the CRLF".
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(unknown);
    }
    let mut fields = line.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ProxyError::Syntax);
    };
    let (sport, dport) = (port(sport)?, port(dport)?);
    let addresses = match proto {
        "TCP4" => Addresses::Ipv4 {
            source: SocketAddrV4::new(ipv4(src)?, sport),
            destination: SocketAddrV4::new(ipv4(dst)?, dport),
        },
        "TCP6" => Addresses::Ipv6 {
            source: SocketAddrV6::new(ipv6(src)?, sport, 0, 0),
            destination: SocketAddrV6::new(ipv6(dst)?, dport, 0, 0),
        },
        _ => return Err(ProxyError::Syntax),
    };
    Ok(ProxyHeader { transport: Transport::Stream, addresses, ..unknown })
}

/// Four decimals in 0..=255 without leading zeros (core's parser is that strict).
fn ipv4(text: &str) -> Result<Ipv4Addr, ProxyError> {
    text.parse().map_err(|_| ProxyError::InvalidAddress)
}

fn ipv6(text: &str) -> Result<Ipv6Addr, ProxyError> {
    text.parse().map_err(|_| ProxyError::InvalidAddress)
}

/// A decimal in 0..=65535 without leading zeros or sign.
fn port(text: &str) -> Result<u16, ProxyError> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyError::InvalidPort);
    }
    text.parse().map_err(|_| ProxyError::InvalidPort)
}

pub(super) fn encode(header: &ProxyHeader, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    debug_assert_eq!(header.version, Version::V1);
    if header.command != ProxyCommand::Proxy {
        return Err(EncodeError("PROXY v1 has no LOCAL command"));
    }
    if !header.tlvs.is_empty() {
        return Err(EncodeError("PROXY v1 carries no TLVs"));
    }
    let line = match (&header.addresses, header.transport) {
        (Addresses::Unspecified, Transport::Unspecified) => "PROXY UNKNOWN\r\n".into(),
        (Addresses::Ipv4 { source: s, destination: d }, Transport::Stream) => {
            format!("PROXY TCP4 {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port())
        }
        (Addresses::Ipv6 { source: s, destination: d }, Transport::Stream) => {
            if s.flowinfo() != 0 || s.scope_id() != 0 || d.flowinfo() != 0 || d.scope_id() != 0 {
                return Err(EncodeError("PROXY headers carry no IPv6 flow or scope"));
            }
            format!("PROXY TCP6 {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port())
        }
        _ => return Err(EncodeError("PROXY v1 carries only TCP over IPv4 or IPv6, or UNKNOWN")),
    };
    out.extend_from_slice(line.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;

    fn done(input: &[u8]) -> (ProxyHeader, usize) {
        match decode(input) {
            Ok(Decode::Done { header, consumed }) => (header, consumed),
            other => panic!("{:?}: {other:?}", alloc::string::String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn the_specification_examples() {
        let (h, n) = done(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n");
        assert_eq!(n, 47);
        assert_eq!(h.source(), Some("192.168.0.1:56324".parse().unwrap()));
        assert_eq!(
            h.addresses,
            Addresses::Ipv4 {
                source: "192.168.0.1:56324".parse().unwrap(),
                destination: "192.168.0.11:443".parse().unwrap()
            }
        );
        let (h, n) = done(b"PROXY UNKNOWN\r\n");
        assert_eq!(
            (h.addresses, h.transport, n),
            (Addresses::Unspecified, Transport::Unspecified, 15)
        );
        // The worst case of §2.1: 107 bytes, whatever follows UNKNOWN ignored.
        let worst = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert_eq!(done(worst).1, V1_MAX_LEN);
        let (h, _) = done(b"PROXY TCP6 ::1 2001:db8::1 0 65535\r\n");
        assert_eq!(h.source(), Some("[::1]:0".parse().unwrap()));
    }

    #[test]
    fn malformed_lines_are_refused() {
        for (line, error) in [
            (&b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n"[..], ProxyError::BadLineEnd),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx", ProxyError::BadLineEnd),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", ProxyError::Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ProxyError::Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", ProxyError::Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", ProxyError::Syntax),
            (b"PROXY TCP5 ", ProxyError::Syntax),
            (b"PROXY tcp4 ", ProxyError::Syntax),
            (b"PROXY  TCP4", ProxyError::Syntax),
            (b"PROXY UNKNOWNX\r\n", ProxyError::Syntax),
            (b"PROXYTCP4", ProxyError::NotProxy),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", ProxyError::InvalidAddress),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ProxyError::InvalidAddress),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ProxyError::InvalidAddress),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ProxyError::InvalidPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", ProxyError::InvalidPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", ProxyError::InvalidPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", ProxyError::InvalidPort),
            (b"PROXY TCP4 1.2.3.4\x00", ProxyError::InvalidByte),
            (b"PROXY UNKNOWN \xc3\xa9\r\n", ProxyError::InvalidByte),
        ] {
            assert_eq!(
                decode(line),
                Err(error),
                "{:?}",
                alloc::string::String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_line_without_crlf_in_107_bytes_is_too_long() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LEN - 2, b'x');
        assert_eq!(decode(&line), Ok(Decode::Incomplete { needed: 2 }));
        line.push(b'x');
        assert_eq!(decode(&line), Err(ProxyError::LineTooLong));
        line.truncate(V1_MAX_LEN - 2);
        line.push(b'\r');
        assert_eq!(decode(&line), Ok(Decode::Incomplete { needed: 1 }));
        line.push(b'x');
        assert_eq!(decode(&line), Err(ProxyError::BadLineEnd));
    }

    #[test]
    fn needed_never_reaches_past_the_shortest_line() {
        assert_eq!(decode(b"P"), Ok(Decode::Incomplete { needed: 14 }));
        assert_eq!(decode(b"PROXY UNKNOWN"), Ok(Decode::Incomplete { needed: 2 }));
        assert_eq!(decode(b"PROXY UNKNOWN\r"), Ok(Decode::Incomplete { needed: 1 }));
    }

    #[test]
    fn encode_writes_the_canonical_line() {
        let h = ProxyHeader::tcp(
            Version::V1,
            "[2001:db8::7]:40000".parse().unwrap(),
            "[2001:db8::1]:110".parse().unwrap(),
        );
        let mut out = Vec::new();
        h.encode(&mut out).unwrap();
        assert_eq!(out, b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 110\r\n");
        assert_eq!(done(&out).0, h);
        assert!(ProxyHeader { version: Version::V1, ..ProxyHeader::local() }
            .encode(&mut out)
            .is_err());
    }
}
