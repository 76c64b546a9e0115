//! Why a SASL exchange failed.

use core::fmt;

/// Why a SASL exchange failed, on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslError {
    /// The peer's message does not follow the mechanism's grammar (or is not UTF-8 where the
    /// mechanism requires it).
    Malformed,
    /// The client cancelled the exchange (`*`, RFC 5034 §4).
    Cancelled,
    /// A step arrived when the mechanism expected none (the exchange is already over, or the
    /// call does not belong to this mechanism or this point of the exchange).
    UnexpectedStep,
    /// SCRAM client: the server's signature (`v=`) is wrong; the server does not know the
    /// password's keys, so it is not the server the client meant to talk to (RFC 5802 §5.1).
    ServerProofMismatch,
    /// SCRAM: the combined nonce does not start with the client's nonce (client side), or the
    /// client-final message does not repeat the combined nonce (server side).
    NonceMismatch,
    /// SCRAM: the iteration count is zero, not a number, or above the client's maximum.
    InvalidIterations,
    /// SCRAM: the message starts with the reserved mandatory-extension attribute `m=`, which
    /// this implementation does not understand (RFC 5802 §5.1).
    UnsupportedExtension,
    /// SCRAM: the client asked for channel binding (`p=`), which this implementation does not
    /// offer, or the client-final `c=` does not repeat the GS2 header (RFC 5802 §6).
    ChannelBinding,
    /// SCRAM client: the server ended the exchange with `e=`; the value is available from
    /// [`SaslClient::error_details`](super::SaslClient::error_details).
    ServerError,
    /// Server side: the credentials are wrong: a SCRAM proof that does not verify (also for
    /// an unknown user, indistinguishably), or a bearer token the embedder refused.
    AuthenticationFailed,
    /// The nonce given by the embedder has no usable characters (printable ASCII except `,`).
    InvalidNonce,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed SASL message",
            Self::Cancelled => "SASL exchange cancelled by the client",
            Self::UnexpectedStep => "unexpected SASL step",
            Self::ServerProofMismatch => "SCRAM server signature does not match",
            Self::NonceMismatch => "SCRAM nonce mismatch",
            Self::InvalidIterations => "invalid SCRAM iteration count",
            Self::UnsupportedExtension => "unsupported mandatory SCRAM extension",
            Self::ChannelBinding => "SCRAM channel binding not supported or mismatched",
            Self::ServerError => "the server reported a SASL error",
            Self::AuthenticationFailed => "authentication failed",
            Self::InvalidNonce => "nonce has no usable characters",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SaslError {}
