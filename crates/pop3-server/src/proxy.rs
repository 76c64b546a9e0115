//! The PROXY protocol on the server side: which peers may send a header (and then must), and
//! reading it off the socket before anything else, TLS included.
//!
//! HAProxy's specification (§5) is the policy: the header is accepted only from configured
//! sources, never guessed at. A peer outside [`Config::proxy_from`](crate::Config) is not read
//! for a header at all: its `PROXY ...` line is an unknown POP3 command like any other. A peer
//! inside it must send one, whole, within [`Config::proxy_header_timeout`](crate::Config);
//! otherwise the connection is closed and logged.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use pop3_proto::proxy::{Decode, ProxyDecoder, ProxyError, ProxyHeader};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::Shared;

/// A network in CIDR notation, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a network
/// of one (`/32`, `/128`).
///
/// Hand-written rather than a dependency: a prefix comparison is all the server needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// True if `ip` is in this network. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a
    /// dual-stack listener reports for an IPv4 client) counts as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4()
            && mask(bits(ip), self.prefix) == mask(bits(self.network), self.prefix)
    }
}

/// An address as 128 bits, an IPv4 one in the top 32, so that one mask serves both.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The first `prefix` bits of `bits`.
fn mask(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p))),
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr =
            addr.parse().map_err(|_| format!("{text:?}: not an IP address or network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        let masked = mask(bits(network), prefix);
        if masked != bits(network) {
            let net = match network {
                IpAddr::V4(_) => IpAddr::V4(((masked >> 96) as u32).into()),
                IpAddr::V6(_) => IpAddr::V6(masked.into()),
            };
            return Err(format!(
                "{text:?}: address bits set past the prefix; the network is {net}/{prefix}"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Why a trusted peer's connection was closed before its header was complete.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not a valid header.
    Invalid(ProxyError),
    /// No whole header in time.
    TimedOut(Duration),
    /// The peer closed the connection first.
    Closed,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => e.fmt(f),
            Self::TimedOut(t) => write!(f, "no whole PROXY header within {} ms", t.as_millis()),
            Self::Closed => f.write_str("connection closed before the PROXY header was complete"),
            Self::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
    }
}

/// A proxy's address and the header it sent.
pub(crate) type Via = (SocketAddr, ProxyHeader);

/// The client's address on a new connection from `peer`: `peer` itself, unless it is in
/// `proxy_from`; then the address its PROXY header carries (its own for `LOCAL` or a header
/// without an IP address), with the proxy and the header. `None`: the connection is to be
/// closed (a refused header, logged here, or a shutdown).
pub(crate) async fn accept(
    shared: &Shared,
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<(SocketAddr, Option<Via>)> {
    if !shared.config.proxy_from.iter().any(|net| net.contains(peer.ip())) {
        return Some((peer, None));
    }
    let limit = shared.config.proxy_header_timeout;
    let header = tokio::select! {
        header = read_header(stream, limit) => header,
        () = shared.shutdown.cancelled() => return None,
    };
    match header {
        Ok(header) => {
            let client = header.source().map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
            Some((client.unwrap_or(peer), Some((peer, header))))
        }
        Err(reason) => {
            warn!(proxy = %peer, %local, %reason, "PROXY header refused: connection closed");
            None
        }
    }
}

/// Reads one PROXY header off `stream`, within `limit`. Reads never ask for more than the
/// header still needs, so every byte after it (the POP3 stream, a TLS `ClientHello`) is still
/// in the socket for whoever reads next.
pub(crate) async fn read_header(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<ProxyHeader, Refused> {
    let mut decoder = ProxyDecoder::new();
    let mut buf = [0u8; 512];
    let read = async {
        loop {
            let want = decoder.needed().min(buf.len());
            let n = stream.read(&mut buf[..want]).await.map_err(Refused::Io)?;
            if n == 0 {
                return Err(Refused::Closed);
            }
            match decoder.feed(&buf[..n]).map_err(Refused::Invalid)? {
                Decode::Incomplete { .. } => {}
                Decode::Done { header, consumed } => {
                    debug_assert_eq!(consumed, n, "a read past the header");
                    return Ok(header);
                }
            }
        }
    };
    tokio::time::timeout(limit, read).await.unwrap_or(Err(Refused::TimedOut(limit)))
}

/// Logs what a PROXY header says besides the client address: its version and command, the
/// TLS facts of the client's connection to the proxy (PP2_TYPE_SSL), the name the client asked
/// for (PP2_TYPE_AUTHORITY) and the proxy's connection ID (PP2_TYPE_UNIQUE_ID, to match its
/// logs), when it sent them.
/// They are logged only: whether this connection counts as TLS is decided by this server's
/// own TLS, never by the proxy's word.
pub(crate) fn log_header(header: &ProxyHeader) {
    let ssl = header.ssl();
    info!(
        version = ?header.version,
        command = ?header.command,
        client_tls = ssl.map(|s| s.client_tls()),
        tls_version = ssl.and_then(|s| s.version()),
        tls_cipher = ssl.and_then(|s| s.cipher()),
        client_cert_cn = ssl.and_then(|s| s.common_name()),
        authority = header.authority(),
        unique_id = header.unique_id().map(String::from_utf8_lossy).as_deref(),
        "PROXY header accepted"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_match() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped, from a dual-stack listener");
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("2001:db8::1")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001:db8::1")));
        assert!("::1/128".parse::<Cidr>().unwrap().contains(ip("::1")));
    }

    #[test]
    fn cidr_errors_say_what_is_wrong() {
        for (bad, why) in [
            ("10.0.0.1/8", "the network is 10.0.0.0/8"),
            ("2001:db8::1/32", "the network is 2001:db8::/32"),
            ("10.0.0.0/33", "0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.0/+8", "0 to 32"),
            ("10.0.0.0/", "0 to 32"),
            ("localhost", "not an IP address"),
            ("10.0.0/8", "not an IP address"),
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
