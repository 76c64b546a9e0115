//! The PROXY protocol, versions 1 and 2 (HAProxy's `proxy-protocol.txt`): the header a load
//! balancer such as HAProxy puts before the client's bytes, so that the server behind it learns
//! the client's address instead of the balancer's.
//!
//! The header is read before anything else on the connection, even before a TLS handshake, and
//! only from peers the operator trusts (§5 of the specification: a server that accepted it from
//! anyone would let any client claim any address). What to trust is the embedder's decision;
//! this module only turns bytes into a [`ProxyHeader`] and back.
//!
//! # Reading a header
//!
//! [`ProxyDecoder`] takes the bytes as they arrive. [`ProxyDecoder::needed`] says how many
//! bytes the header needs *at least*: a reader that asks the socket for at most that many never
//! takes a byte of what follows the header (the POP3 stream, or a TLS `ClientHello`), so
//! nothing has to be handed back. Bytes fed beyond the header are not consumed either:
//! [`Decode::Done`] says how many of the last input were the header's.
//!
//! ```
//! use pop3_proto::proxy::{Decode, ProxyDecoder};
//!
//! let mut decoder = ProxyDecoder::new();
//! let input = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 110\r\nCAPA\r\n";
//! let Ok(Decode::Done { header, consumed }) = decoder.feed(input) else { panic!() };
//! assert_eq!(header.source().unwrap().to_string(), "192.0.2.7:56324");
//! assert_eq!(&input[consumed..], b"CAPA\r\n");
//! ```
//!
//! Anything that does not start like a header is refused at its first byte (§2.1: "abort the
//! connection as soon as possible"); a version 1 line is at most 107 bytes, a version 2 header
//! at most 16 + 65535.

mod crc32c;
mod tlv;
mod v1;
mod v2;

use alloc::vec::Vec;
use core::fmt;
use core::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

pub use tlv::{Ssl, SslTlv, Tlv, PP2_CLIENT_CERT_CONN, PP2_CLIENT_CERT_SESS, PP2_CLIENT_SSL};

/// The 12 bytes every version 2 header starts with (§2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 line, CRLF included (§2.1: `PROXY UNKNOWN` with two IPv6 addresses).
pub const V1_MAX_LEN: usize = 107;

/// The longest version 2 header: 16 fixed bytes and a 16-bit length (§2.2).
pub const V2_MAX_LEN: usize = 16 + 65535;

/// True if `first` (the first bytes a client sent) starts like a PROXY header of either
/// version: what a balancer sends when it believes this server expects one. A server that
/// does not trust the sender closes such a connection rather than read the header as POP3.
/// A v2 signature counts from its fifth byte (the NUL): two empty lines alone are not one.
pub fn looks_like_header(first: &[u8]) -> bool {
    let v2 = first.len() >= 5 && V2_SIGNATURE.starts_with(&first[..first.len().min(12)]);
    first.starts_with(b"PROXY ") || v2
}

/// The shortest header of either version (`PROXY UNKNOWN\r\n`).
const MIN_LEN: usize = 15;

/// Which version of the protocol a header was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The human-readable line (§2.1).
    V1,
    /// The binary header (§2.2).
    V2,
}

/// What the connection is (§2.2, the low nibble of the 13th byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyCommand {
    /// Opened by the proxy itself, typically a health check: the connection's own endpoints
    /// are the ones to use.
    Local,
    /// Relayed for a client whose addresses the header carries.
    Proxy,
}

/// The transport of the relayed connection (§2.2, the low nibble of the 14th byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Unknown or unspecified (version 1's `UNKNOWN`, version 2's `LOCAL`).
    Unspecified,
    /// `SOCK_STREAM`: TCP or a Unix stream socket.
    Stream,
    /// `SOCK_DGRAM`: UDP or a Unix datagram socket.
    Datagram,
}

/// The addresses a header carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// None: `LOCAL`, version 1's `UNKNOWN`, or the `AF_UNSPEC` family. The receiver uses the
    /// connection's own endpoints (§2.1, §2.2).
    Unspecified,
    /// IPv4 source and destination.
    Ipv4 {
        /// The client.
        source: SocketAddrV4,
        /// The address the client connected to (the proxy's).
        destination: SocketAddrV4,
    },
    /// IPv6 source and destination.
    Ipv6 {
        /// The client.
        source: SocketAddrV6,
        /// The address the client connected to (the proxy's).
        destination: SocketAddrV6,
    },
    /// Unix socket paths (version 2 only).
    Unix {
        /// The client's socket path.
        source: UnixAddr,
        /// The socket path the client connected to.
        destination: UnixAddr,
    },
}

/// A Unix socket address as version 2 carries it: 108 bytes, the path NUL-padded (boxed: the
/// IP addresses are the common case and should not pay for its size).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UnixAddr(pub alloc::boxed::Box<[u8; 108]>);

impl UnixAddr {
    /// The path: the bytes before the first NUL.
    pub fn path(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        &self.0[..end]
    }
}

impl fmt::Debug for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixAddr({:?})", alloc::string::String::from_utf8_lossy(self.path()))
    }
}

/// A decoded PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// The version it was written in.
    pub version: Version,
    /// `LOCAL` or `PROXY` (version 1 only has `PROXY`).
    pub command: ProxyCommand,
    /// The relayed connection's transport.
    pub transport: Transport,
    /// The relayed connection's endpoints.
    pub addresses: Addresses,
    /// Version 2's type-length-value extensions, in order (only read after a known address
    /// block: for `LOCAL` and `AF_UNSPEC` the whole block is skipped, as §2.2 says).
    pub tlvs: Vec<Tlv>,
}

impl ProxyHeader {
    /// A version 2 `LOCAL` header, as a balancer sends for its health checks.
    pub fn local() -> Self {
        Self {
            version: Version::V2,
            command: ProxyCommand::Local,
            transport: Transport::Unspecified,
            addresses: Addresses::Unspecified,
            tlvs: Vec::new(),
        }
    }

    /// A TCP connection relayed from `source` to `destination` (which must be of the same
    /// family, or the header carries no address).
    pub fn tcp(version: Version, source: SocketAddr, destination: SocketAddr) -> Self {
        let addresses = match (source, destination) {
            (SocketAddr::V4(source), SocketAddr::V4(destination)) => {
                Addresses::Ipv4 { source, destination }
            }
            (SocketAddr::V6(source), SocketAddr::V6(destination)) => {
                Addresses::Ipv6 { source, destination }
            }
            _ => Addresses::Unspecified,
        };
        let transport = match addresses {
            Addresses::Unspecified => Transport::Unspecified,
            _ => Transport::Stream,
        };
        Self { version, command: ProxyCommand::Proxy, transport, addresses, tlvs: Vec::new() }
    }

    /// The client's address, when the header carries one: a `PROXY` command with IPv4 or IPv6
    /// addresses. `None` means: keep the connection's own peer address.
    pub fn source(&self) -> Option<SocketAddr> {
        if self.command != ProxyCommand::Proxy {
            return None;
        }
        match &self.addresses {
            Addresses::Ipv4 { source, .. } => Some(SocketAddr::V4(*source)),
            Addresses::Ipv6 { source, .. } => Some(SocketAddr::V6(*source)),
            Addresses::Unspecified | Addresses::Unix { .. } => None,
        }
    }

    /// The TLS facts of the client connection, when the proxy sent them (`PP2_TYPE_SSL`).
    pub fn ssl(&self) -> Option<&Ssl> {
        self.tlvs.iter().find_map(|t| match t {
            Tlv::Ssl(ssl) => Some(ssl),
            _ => None,
        })
    }

    /// The host name the client asked for (`PP2_TYPE_AUTHORITY`, the TLS SNI).
    pub fn authority(&self) -> Option<&str> {
        self.tlvs.iter().find_map(|t| match t {
            Tlv::Authority(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The proxy's identifier of the connection (`PP2_TYPE_UNIQUE_ID`).
    pub fn unique_id(&self) -> Option<&[u8]> {
        self.tlvs.iter().find_map(|t| match t {
            Tlv::UniqueId(id) => Some(id.as_slice()),
            _ => None,
        })
    }

    /// Appends the header in its [`version`](Self::version) to `out`. A value the format
    /// cannot carry is refused, not approximated: version 1 has no `LOCAL`, no TLVs and no
    /// Unix or datagram addresses; version 2 drops the address block of `LOCAL` and
    /// `AF_UNSPEC`, so such a header may not have addresses or TLVs; and the whole of a
    /// version 2 header must fit its 16-bit length. So whatever encodes decodes to the same
    /// value.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self.version {
            Version::V1 => v1::encode(self, out),
            Version::V2 => v2::encode(self, out),
        }
    }
}

/// What [`ProxyDecoder::feed`] and [`decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decode {
    /// The header is not complete; it needs at least `needed` more bytes.
    Incomplete {
        /// Bytes still missing at least (at least 1): reading no more than this never reads
        /// past the header.
        needed: usize,
    },
    /// A whole header.
    Done {
        /// The header.
        header: ProxyHeader,
        /// How many bytes of the input were the header's; the rest belongs to the stream.
        consumed: usize,
    },
}

/// A header that is not valid. The connection must be closed (§2.1: "Any sequence which does
/// not exactly match the protocol must be discarded and cause the receiver to abort the
/// connection").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyError {
    /// The first bytes match neither version's signature: no PROXY header at all.
    NotProxy,
    /// A version 1 line without its CRLF in the first 107 bytes.
    LineTooLong,
    /// A CR or LF alone where a version 1 line must end with CRLF.
    BadLineEnd,
    /// A control or 8-bit byte in a version 1 line.
    InvalidByte,
    /// A version 1 line that does not follow the grammar: protocol name, spacing, field
    /// count.
    Syntax,
    /// An address that is not in canonical form or not of the announced family.
    InvalidAddress,
    /// A port that is not a decimal in 0..=65535 without leading zeros.
    InvalidPort,
    /// A version 2 header of another version than 2.
    UnsupportedVersion,
    /// A version 2 command other than `LOCAL` and `PROXY`.
    UnknownCommand,
    /// A version 2 address family or transport that the specification does not define.
    UnknownFamily,
    /// A version 2 length too short for the address block of its family.
    ShortAddressBlock,
    /// A TLV that runs past the header, or whose value does not fit its type.
    InvalidTlv,
    /// A `PP2_TYPE_CRC32C` that does not match the header.
    ChecksumMismatch,
}

impl ProxyError {
    /// A short human-readable reason, for a log line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotProxy => "not a PROXY protocol header",
            Self::LineTooLong => "PROXY v1 line without CRLF in 107 bytes",
            Self::BadLineEnd => "PROXY v1 line not ended by CRLF",
            Self::InvalidByte => "control or 8-bit byte in a PROXY v1 line",
            Self::Syntax => "malformed PROXY v1 line",
            Self::InvalidAddress => "invalid address in PROXY header",
            Self::InvalidPort => "invalid port in PROXY header",
            Self::UnsupportedVersion => "PROXY v2 header of an unsupported version",
            Self::UnknownCommand => "PROXY v2 header with an unknown command",
            Self::UnknownFamily => "PROXY v2 header with an unknown family or transport",
            Self::ShortAddressBlock => "PROXY v2 address block shorter than its family's",
            Self::InvalidTlv => "malformed PROXY v2 TLV",
            Self::ChecksumMismatch => "PROXY v2 CRC32C does not match",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ProxyError {}

/// A [`ProxyHeader`] that its version cannot carry (see [`ProxyHeader::encode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodeError(&'static str);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Decodes a header at the start of `input`, which holds everything received so far.
/// `Done`'s `consumed` counts from the start of `input`.
pub fn decode(input: &[u8]) -> Result<Decode, ProxyError> {
    match input.first() {
        None => Ok(Decode::Incomplete { needed: MIN_LEN }),
        Some(b'P') => v1::decode(input),
        Some(b'\r') => v2::decode(input),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

/// A streaming decoder: feed it the connection's first bytes in pieces of any size.
///
/// It keeps at most one header's bytes (107 for version 1, 16 + 65535 for version 2) and never
/// consumes a byte past the header. After `Done` or an error it starts over, empty.
#[derive(Debug, Clone, Default)]
pub struct ProxyDecoder {
    buf: Vec<u8>,
}

impl ProxyDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes the header still needs at least (at least 1).
    pub fn needed(&self) -> usize {
        match decode(&self.buf) {
            Ok(Decode::Incomplete { needed }) => needed,
            // Only reached between a `feed` that returned `Done` or an error and the reset
            // that follows it; kept total all the same.
            _ => 1,
        }
    }

    /// Feeds `input`, the next bytes of the connection. `Done`'s `consumed` counts the bytes
    /// of this `input` that completed the header; the bytes after them are the stream's.
    pub fn feed(&mut self, input: &[u8]) -> Result<Decode, ProxyError> {
        let mut rest = input;
        loop {
            // Take only what the header needs at least: never a byte of what follows it.
            let needed = match decode(&self.buf) {
                Ok(Decode::Incomplete { needed }) => needed,
                Ok(Decode::Done { header, .. }) => {
                    self.buf.clear();
                    let consumed = input.len() - rest.len();
                    return Ok(Decode::Done { header, consumed });
                }
                Err(e) => {
                    self.buf.clear();
                    return Err(e);
                }
            };
            if rest.is_empty() {
                return Ok(Decode::Incomplete { needed });
            }
            let take = needed.min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_are_recognised_by_their_first_bytes() {
        assert!(super::looks_like_header(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n"));
        assert!(super::looks_like_header(&super::V2_SIGNATURE));
        assert!(super::looks_like_header(&super::V2_SIGNATURE[..6]));
        for pop3 in [&b"USER alice\r\n"[..], b"\r\n", b"\r\n\r\n", b"PROXYX", b"CAPA\r\n"] {
            assert!(!super::looks_like_header(pop3), "{pop3:?}");
        }
    }

    use super::*;
    use alloc::vec;

    #[test]
    fn garbage_is_refused_at_the_first_byte() {
        assert_eq!(decode(b"U"), Err(ProxyError::NotProxy));
        assert_eq!(decode(b"USER alice\r\n"), Err(ProxyError::NotProxy));
        assert_eq!(decode(b"\x16\x03\x01"), Err(ProxyError::NotProxy), "a TLS ClientHello");
        assert_eq!(decode(b"PA"), Err(ProxyError::NotProxy), "PASS");
        assert_eq!(decode(b"\r\n\r\nX"), Err(ProxyError::NotProxy));
        let mut d = ProxyDecoder::new();
        assert_eq!(d.feed(b"CAPA\r\n"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn feeding_byte_by_byte_never_consumes_past_the_header() {
        let mut bytes = Vec::new();
        let source = "[2001:db8::7]:40000".parse().unwrap();
        let header = ProxyHeader::tcp(Version::V2, source, "[2001:db8::1]:995".parse().unwrap());
        header.encode(&mut bytes).unwrap();
        let header_len = bytes.len();
        bytes.extend_from_slice(b"\x16\x03\x01 client hello");
        let mut d = ProxyDecoder::new();
        let mut at = 0;
        loop {
            let needed = d.needed();
            assert!(at + needed <= header_len, "needed {needed} at {at} reaches past the header");
            match d.feed(&bytes[at..at + 1]).unwrap() {
                Decode::Incomplete { .. } => at += 1,
                Decode::Done { header: got, consumed } => {
                    assert_eq!(consumed, 1);
                    assert_eq!(at + 1, header_len);
                    assert_eq!(got, header);
                    assert_eq!(got.source(), Some(source));
                    break;
                }
            }
        }
    }

    #[test]
    fn a_feed_with_stream_bytes_consumes_only_the_header() {
        let mut d = ProxyDecoder::new();
        assert_eq!(d.feed(b"PROXY TCP6 "), Ok(Decode::Incomplete { needed: 4 }));
        let rest = b"2001:db8::7 2001:db8::1 40000 110\r\nUSER alice\r\n";
        let Ok(Decode::Done { header, consumed }) = d.feed(rest) else { panic!() };
        assert_eq!(&rest[consumed..], b"USER alice\r\n");
        assert_eq!(header.version, Version::V1);
        assert_eq!(header.source(), Some("[2001:db8::7]:40000".parse().unwrap()));
        // It starts over.
        assert_eq!(d.needed(), MIN_LEN);
    }

    #[test]
    fn local_keeps_the_connection_address() {
        let mut bytes = vec![];
        ProxyHeader::local().encode(&mut bytes).unwrap();
        assert_eq!(bytes, b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00");
        let Ok(Decode::Done { header, consumed: 16 }) = decode(&bytes) else { panic!() };
        assert_eq!(header.command, ProxyCommand::Local);
        assert_eq!(header.source(), None);
    }
}
