//! Version 2's type-length-value extensions (§2.2.1 to §2.2.8): one type byte, a 16-bit
//! big-endian length, the value.

use alloc::string::String;
use alloc::vec::Vec;

use super::{EncodeError, ProxyError};

const ALPN: u8 = 0x01;
const AUTHORITY: u8 = 0x02;
const CRC32C: u8 = 0x03;
const NOOP: u8 = 0x04;
const UNIQUE_ID: u8 = 0x05;
const SSL: u8 = 0x20;
const SSL_VERSION: u8 = 0x21;
const SSL_CN: u8 = 0x22;
const SSL_CIPHER: u8 = 0x23;
const SSL_SIG_ALG: u8 = 0x24;
const SSL_KEY_ALG: u8 = 0x25;
const NETNS: u8 = 0x30;

/// §2.2.5: a unique ID is at most 128 bytes.
const UNIQUE_ID_MAX: usize = 128;

/// `client` bit: the client connected over TLS (§2.2.6).
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// `client` bit: the client presented a certificate on this connection.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// `client` bit: the client presented a certificate at least once in this TLS session.
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// One TLV of a version 2 header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tlv {
    /// `PP2_TYPE_ALPN`: the application protocol the client negotiated (RFC 7301).
    Alpn(Vec<u8>),
    /// `PP2_TYPE_AUTHORITY`: the host name the client asked for (the TLS SNI), UTF-8.
    Authority(String),
    /// `PP2_TYPE_CRC32C`: the header's checksum, which matched (a header whose checksum does
    /// not match is refused). The encoder computes it.
    Crc32c,
    /// `PP2_TYPE_NOOP`: padding of this many bytes, ignored.
    Noop(u16),
    /// `PP2_TYPE_UNIQUE_ID`: the proxy's identifier of the connection, at most 128 bytes.
    UniqueId(Vec<u8>),
    /// `PP2_TYPE_SSL`: how the client reached the proxy over TLS.
    Ssl(Ssl),
    /// `PP2_TYPE_NETNS`: the network namespace's name, US-ASCII.
    Netns(String),
    /// Any other type (custom ones in 0xE0..=0xEF, say), kept as it came.
    Other {
        /// The type byte (never one of the types above).
        kind: u8,
        /// The value.
        value: Vec<u8>,
    },
}

/// The value of `PP2_TYPE_SSL` (§2.2.6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ssl {
    /// [`PP2_CLIENT_SSL`], [`PP2_CLIENT_CERT_CONN`] and [`PP2_CLIENT_CERT_SESS`] bits.
    pub client: u8,
    /// Zero if the client's certificate was verified, non-zero otherwise.
    pub verify: u32,
    /// The sub-TLVs, in order.
    pub tlvs: Vec<SslTlv>,
}

impl Ssl {
    /// The client connected to the proxy over TLS (`PP2_CLIENT_SSL`).
    pub fn client_tls(&self) -> bool {
        self.client & PP2_CLIENT_SSL != 0
    }

    /// The TLS version (`PP2_SUBTYPE_SSL_VERSION`), e.g. `TLSv1.3`.
    pub fn version(&self) -> Option<&str> {
        self.tlvs.iter().find_map(|t| match t {
            SslTlv::Version(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The cipher (`PP2_SUBTYPE_SSL_CIPHER`).
    pub fn cipher(&self) -> Option<&str> {
        self.tlvs.iter().find_map(|t| match t {
            SslTlv::Cipher(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The Common Name of the client certificate (`PP2_SUBTYPE_SSL_CN`).
    pub fn common_name(&self) -> Option<&str> {
        self.tlvs.iter().find_map(|t| match t {
            SslTlv::CommonName(v) => Some(v.as_str()),
            _ => None,
        })
    }
}

/// A sub-TLV of `PP2_TYPE_SSL`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SslTlv {
    /// `PP2_SUBTYPE_SSL_VERSION`: the TLS version, e.g. `TLSv1.3`.
    Version(String),
    /// `PP2_SUBTYPE_SSL_CN`: the Common Name of the client certificate.
    CommonName(String),
    /// `PP2_SUBTYPE_SSL_CIPHER`: the cipher, e.g. `ECDHE-RSA-AES128-GCM-SHA256`.
    Cipher(String),
    /// `PP2_SUBTYPE_SSL_SIG_ALG`: the signature algorithm of the proxy's certificate.
    SignatureAlgorithm(String),
    /// `PP2_SUBTYPE_SSL_KEY_ALG`: the key algorithm of the proxy's certificate.
    KeyAlgorithm(String),
    /// Any other sub-type, kept as it came.
    Other {
        /// The type byte (never one of the types above).
        kind: u8,
        /// The value.
        value: Vec<u8>,
    },
}

/// Splits `block` into raw `(type, value, offset of the value in block)` triples.
fn raw(block: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8], usize), ProxyError>> + '_ {
    let mut at = 0;
    core::iter::from_fn(move || {
        if at == block.len() {
            return None;
        }
        let Some(&[kind, hi, lo]) = block.get(at..at + 3) else {
            at = block.len();
            return Some(Err(ProxyError::InvalidTlv));
        };
        let start = at + 3;
        let end = start + usize::from(u16::from_be_bytes([hi, lo]));
        let Some(value) = block.get(start..end) else {
            at = block.len();
            return Some(Err(ProxyError::InvalidTlv));
        };
        at = end;
        Some(Ok((kind, value, start)))
    })
}

fn text(value: &[u8]) -> Result<String, ProxyError> {
    core::str::from_utf8(value).map(String::from).map_err(|_| ProxyError::InvalidTlv)
}

/// The TLVs of `block` (what follows the addresses), and where the value of a
/// `PP2_TYPE_CRC32C` is in it, for the caller to check.
pub(super) fn decode(block: &[u8]) -> Result<(Vec<Tlv>, Option<usize>), ProxyError> {
    let mut tlvs = Vec::new();
    let mut crc_at = None;
    for item in raw(block) {
        let (kind, value, offset) = item?;
        tlvs.push(match kind {
            ALPN => Tlv::Alpn(value.to_vec()),
            AUTHORITY => Tlv::Authority(text(value)?),
            CRC32C if value.len() == 4 && crc_at.is_none() => {
                crc_at = Some(offset);
                Tlv::Crc32c
            }
            CRC32C => return Err(ProxyError::InvalidTlv),
            // The length fits: it came from a 16-bit field.
            NOOP => Tlv::Noop(value.len() as u16),
            UNIQUE_ID if value.len() <= UNIQUE_ID_MAX => Tlv::UniqueId(value.to_vec()),
            UNIQUE_ID => return Err(ProxyError::InvalidTlv),
            SSL => Tlv::Ssl(ssl(value)?),
            NETNS => Tlv::Netns(text(value)?),
            kind => Tlv::Other { kind, value: value.to_vec() },
        });
    }
    Ok((tlvs, crc_at))
}

/// `struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; }`
fn ssl(value: &[u8]) -> Result<Ssl, ProxyError> {
    let Some((&[client, v0, v1, v2, v3], sub)) = value.split_first_chunk::<5>() else {
        return Err(ProxyError::InvalidTlv);
    };
    let mut tlvs = Vec::new();
    for item in raw(sub) {
        let (kind, value, _) = item?;
        tlvs.push(match kind {
            SSL_VERSION => SslTlv::Version(text(value)?),
            SSL_CN => SslTlv::CommonName(text(value)?),
            SSL_CIPHER => SslTlv::Cipher(text(value)?),
            SSL_SIG_ALG => SslTlv::SignatureAlgorithm(text(value)?),
            SSL_KEY_ALG => SslTlv::KeyAlgorithm(text(value)?),
            kind => SslTlv::Other { kind, value: value.to_vec() },
        });
    }
    Ok(Ssl { client, verify: u32::from_be_bytes([v0, v1, v2, v3]), tlvs })
}

fn put(out: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError("TLV value over 65535 bytes"))?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Appends `tlvs` to `out`; returns where the value of the `Crc32c` TLV is (zeros for now).
pub(super) fn encode(tlvs: &[Tlv], out: &mut Vec<u8>) -> Result<Option<usize>, EncodeError> {
    let mut crc_at = None;
    for tlv in tlvs {
        match tlv {
            Tlv::Alpn(v) => put(out, ALPN, v)?,
            Tlv::Authority(v) => put(out, AUTHORITY, v.as_bytes())?,
            Tlv::Crc32c if crc_at.is_some() => return Err(EncodeError("two CRC32C TLVs")),
            Tlv::Crc32c => {
                put(out, CRC32C, &[0; 4])?;
                crc_at = Some(out.len() - 4);
            }
            Tlv::Noop(n) => put(out, NOOP, &alloc::vec![0; usize::from(*n)])?,
            Tlv::UniqueId(v) if v.len() > UNIQUE_ID_MAX => {
                return Err(EncodeError("unique ID over 128 bytes"))
            }
            Tlv::UniqueId(v) => put(out, UNIQUE_ID, v)?,
            Tlv::Ssl(ssl) => {
                let mut value = alloc::vec![ssl.client];
                value.extend_from_slice(&ssl.verify.to_be_bytes());
                for sub in &ssl.tlvs {
                    match sub {
                        SslTlv::Version(v) => put(&mut value, SSL_VERSION, v.as_bytes())?,
                        SslTlv::CommonName(v) => put(&mut value, SSL_CN, v.as_bytes())?,
                        SslTlv::Cipher(v) => put(&mut value, SSL_CIPHER, v.as_bytes())?,
                        SslTlv::SignatureAlgorithm(v) => {
                            put(&mut value, SSL_SIG_ALG, v.as_bytes())?
                        }
                        SslTlv::KeyAlgorithm(v) => put(&mut value, SSL_KEY_ALG, v.as_bytes())?,
                        SslTlv::Other { kind: SSL_VERSION..=SSL_KEY_ALG, .. } => {
                            return Err(EncodeError("an SSL sub-TLV of a known type as Other"))
                        }
                        SslTlv::Other { kind, value: v } => put(&mut value, *kind, v)?,
                    }
                }
                put(out, SSL, &value)?;
            }
            Tlv::Netns(v) => put(out, NETNS, v.as_bytes())?,
            Tlv::Other { kind: ALPN..=UNIQUE_ID | SSL | NETNS, .. } => {
                return Err(EncodeError("a TLV of a known type as Other"))
            }
            Tlv::Other { kind, value } => put(out, *kind, value)?,
        }
    }
    Ok(crc_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_and_its_sub_tlvs() {
        let value = b"\x01\x00\x00\x00\x00\x21\x00\x07TLSv1.3\x22\x00\x0bexample.com\x2f\x00\x01x";
        let mut block = alloc::vec![SSL, 0, value.len() as u8];
        block.extend_from_slice(value);
        let (tlvs, crc) = decode(&block).unwrap();
        assert_eq!(crc, None);
        let Tlv::Ssl(ssl) = &tlvs[0] else { panic!("{tlvs:?}") };
        assert!(ssl.client_tls());
        assert_eq!(ssl.verify, 0);
        assert_eq!(ssl.version(), Some("TLSv1.3"));
        assert_eq!(ssl.common_name(), Some("example.com"));
        assert_eq!(ssl.cipher(), None);
        assert_eq!(ssl.tlvs[2], SslTlv::Other { kind: 0x2f, value: b"x".to_vec() });
        let mut again = Vec::new();
        encode(&tlvs, &mut again).unwrap();
        assert_eq!(again, block);
    }

    #[test]
    fn malformed_tlvs_are_refused() {
        for block in [
            &b"\x02\x00"[..],                            // cut in its length
            b"\x02\x00\x05abc",                          // value runs past the block
            b"\x02\x00\x02\xc3\x28",                     // authority not UTF-8
            b"\x03\x00\x02ab",                           // CRC32C not 4 bytes
            b"\x03\x00\x04abcd\x03\x00\x04abcd",         // two CRC32C
            b"\x20\x00\x04\x01\x00\x00\x00",             // SSL shorter than client + verify
            b"\x20\x00\x07\x01\x00\x00\x00\x00\x21\x00", // SSL sub-TLV cut
        ] {
            assert_eq!(decode(block), Err(ProxyError::InvalidTlv), "{block:?}");
        }
        let mut long_id = alloc::vec![UNIQUE_ID, 0, 129];
        long_id.extend_from_slice(&[b'x'; 129]);
        assert_eq!(decode(&long_id), Err(ProxyError::InvalidTlv));
    }

    #[test]
    fn unknown_and_padding_tlvs_are_kept() {
        let (tlvs, _) = decode(b"\x04\x00\x03\xff\xff\xff\xea\x00\x02id\x05\x00\x00").unwrap();
        assert_eq!(
            tlvs,
            [
                Tlv::Noop(3),
                Tlv::Other { kind: 0xea, value: b"id".to_vec() },
                Tlv::UniqueId(Vec::new())
            ]
        );
    }
}
