//! Line-length limits for decoding.

/// How long a line the decoders accept, in octets including the line end.
///
/// Every limit bounds memory: an over-limit line is reported as
/// [`DecodeError::LineTooLong`](crate::DecodeError::LineTooLong) and skipped to its end
/// without being buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest command line (default 255). RFC 2449 §4: "command lines ... may be up to 255
    /// octets, including the terminating CRLF"; a server must accept at least that.
    pub command_line: usize,
    /// The longest `AUTH` command line or SASL continuation line (default 16 KiB). RFC 5034 §4
    /// lifts the 255-octet limit for these; OAuth bearer tokens run to several KiB.
    pub sasl_line: usize,
    /// The longest response line (default 8 KiB). RFC 2449 §4 caps a response's first line at
    /// 512 octets; servers in the wild exceed it on CAPA IMPLEMENTATION lines and SASL
    /// challenges, so the client is lenient up to this bound.
    pub response_line: usize,
    /// The largest multi-line CAPA, LIST or UIDL block decoded whole (default 64 MiB). The
    /// line-at-a-time decoders are not subject to it.
    pub multiline_block: usize,
}

impl Limits {
    /// RFC 2449's command-line minimum.
    pub const RFC_COMMAND_LINE: usize = 255;
    /// RFC 2449's response first-line maximum.
    pub const RFC_RESPONSE_LINE: usize = 512;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            command_line: Self::RFC_COMMAND_LINE,
            sasl_line: 16 * 1024,
            response_line: 8 * 1024,
            multiline_block: 64 * 1024 * 1024,
        }
    }
}
