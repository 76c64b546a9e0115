//! The client session's configuration.

use crate::Limits;

/// How a [`ClientSession`](super::ClientSession) behaves.
///
/// ```
/// use pop3_proto::client::ClientConfig;
/// use pop3_proto::Limits;
///
/// let config = ClientConfig {
///     pipeline_window: 4,
///     ..ClientConfig::default()
/// };
/// assert_eq!(config.limits, Limits::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Line-length and block-size limits for what the server sends.
    ///
    /// [`Limits::response_line`] bounds every status line, listing line and SASL challenge (and
    /// so the session's read buffer); [`Limits::multiline_block`] bounds the total size of one
    /// CAPA, LIST, UIDL or LANG listing, which the session collects into one
    /// [`Reply`](super::Reply). Message bodies are streamed and bounded by neither.
    pub limits: Limits,
    /// How many commands may await their replies at once when the server advertised
    /// `PIPELINING` in its last CAPA response (RFC 2449 §6.6). Default 16; values are clamped
    /// to `1..=`[`ClientConfig::MAX_PIPELINE_WINDOW`]. Without `PIPELINING` the window is 1.
    pub pipeline_window: usize,
    /// Whether `AUTH` carries the mechanism's initial response on its own line (RFC 5034 §4;
    /// default `true`, one round trip less). Set it to `false` for old RFC 1734 servers that
    /// reject it: the client then waits for the server's empty challenge and answers it with
    /// what would have been the initial response (RFC 4422 §3.3).
    pub sasl_initial_response: bool,
}

impl ClientConfig {
    /// The default pipeline window.
    pub const DEFAULT_PIPELINE_WINDOW: usize = 16;
    /// The largest pipeline window: more commands in flight only fill the server's input
    /// buffer (and risk a deadlock with servers that stop reading while their output is full).
    pub const MAX_PIPELINE_WINDOW: usize = 256;

    /// The pipeline window actually used: [`pipeline_window`](Self::pipeline_window), clamped.
    pub fn effective_window(&self) -> usize {
        self.pipeline_window.clamp(1, Self::MAX_PIPELINE_WINDOW)
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            pipeline_window: Self::DEFAULT_PIPELINE_WINDOW,
            sasl_initial_response: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_clamped() {
        let window =
            |n| ClientConfig { pipeline_window: n, ..ClientConfig::default() }.effective_window();
        assert_eq!(window(0), 1);
        assert_eq!(window(16), 16);
        assert_eq!(window(usize::MAX), ClientConfig::MAX_PIPELINE_WINDOW);
    }
}
