//! Why a response line was rejected.

use core::fmt;

/// A response line that does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseError {
    /// The line starts with neither `+OK` nor `-ERR` (nor `+ ` where a SASL challenge may come).
    InvalidStatus,
    /// A SASL challenge whose data is not base64 (RFC 5034 §4).
    InvalidChallenge,
    /// A scan listing that is not `msg SP size` (RFC 1939 §5).
    InvalidScanListing,
    /// A unique-id listing that is not `msg SP uid`, with 1 to 70 octets from 0x21 to 0x7E
    /// (RFC 1939 §7).
    InvalidUidListing,
    /// A capability or language line that is empty or contains control characters.
    InvalidListLine,
    /// A multi-line block larger than [`Limits::multiline_block`](crate::Limits); decode it line
    /// by line with [`ResponseDecoder::decode_item`](crate::ResponseDecoder::decode_item).
    BlockTooLarge,
}

impl ResponseError {
    /// A short human-readable reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidStatus => "response does not start with +OK or -ERR",
            Self::InvalidChallenge => "SASL challenge is not base64",
            Self::InvalidScanListing => "invalid scan listing",
            Self::InvalidUidListing => "invalid unique-id listing",
            Self::InvalidListLine => "invalid line in multi-line response",
            Self::BlockTooLarge => "multi-line response too large to decode whole",
        }
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ResponseError {}
