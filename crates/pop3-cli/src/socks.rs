//! Connecting through a SOCKS5 proxy (RFC 1928), per account: `proxy =
//! "socks5h://HOST:PORT"` hands the server's name to the proxy to resolve (remote DNS, as Tor
//! needs: no lookup leaks from this machine), `socks5://` resolves it here and hands over the
//! address. A user name and password in the URL (`socks5h://user:pass@host:port`) log in to
//! the proxy (RFC 1929); otherwise no authentication is offered.
//!
//! An OAuth 2.0 account's HTTP requests go through the same proxy (ureq's SOCKS client, given
//! this [`Proxy`] by `oauth/http.rs`).
//!
//! The messages are built and read by small functions ([`greeting`], [`connect_request`],
//! [`reply_length`], [`reply_error`]) apart from the I/O in [`connect`].

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A SOCKS5 proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `socks5h://`: the proxy resolves the server's name.
    pub remote_dns: bool,
    /// RFC 1929 user name and password.
    pub login: Option<(String, String)>,
}

impl Proxy {
    /// Parses `socks5h://[USER:PASS@]HOST:PORT` or `socks5://...` (port 1080 by default).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (remote_dns, rest) = if let Some(rest) = url.strip_prefix("socks5h://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("socks5://") {
            (false, rest)
        } else {
            return Err(format!("proxy {url:?}: expected socks5h://HOST:PORT or socks5://..."));
        };
        let rest = rest.trim_end_matches('/');
        let (login, hostport) = match rest.rsplit_once('@') {
            Some((login, hostport)) => {
                let (user, pass) = login.split_once(':').unwrap_or((login, ""));
                (Some((user.to_owned(), pass.to_owned())), hostport)
            }
            None => (None, rest),
        };
        if login.as_ref().is_some_and(|(u, p)| u.is_empty() || u.len() > 255 || p.len() > 255) {
            return Err(format!(
                "proxy {url:?}: a user name of 1-255 octets, a password up to 255"
            ));
        }
        let (host, port) =
            crate::config::split_host_port(hostport).map_err(|e| format!("proxy {url:?}: {e}"))?;
        if host.is_empty() {
            return Err(format!("proxy {url:?}: no host"));
        }
        Ok(Self { host, port: port.unwrap_or(1080), remote_dns, login })
    }
}

/// The method selection message (RFC 1928 section 3): no authentication, and user name and
/// password (RFC 1929) when there are credentials.
pub fn greeting(login: bool) -> Vec<u8> {
    if login {
        vec![5, 2, 0x00, 0x02]
    } else {
        vec![5, 1, 0x00]
    }
}

/// Where the CONNECT request leads: a name for the proxy to resolve, or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination<'a> {
    Name(&'a str),
    Address(IpAddr),
}

/// The CONNECT request (RFC 1928 section 4).
pub fn connect_request(to: &Destination<'_>, port: u16) -> Result<Vec<u8>, String> {
    let mut out = vec![5, 1, 0];
    match to {
        Destination::Address(IpAddr::V4(ip)) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        Destination::Address(IpAddr::V6(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Destination::Name(name) => {
            let len = u8::try_from(name.len())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("host name {name:?}: SOCKS5 takes 1-255 octets"))?;
            out.push(3);
            out.push(len);
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// From the first five octets of a reply, how many octets it has in all (section 6).
pub fn reply_length(head: &[u8; 5]) -> Result<usize, String> {
    if head[0] != 5 {
        return Err(format!("the proxy answered SOCKS version {}", head[0]));
    }
    match head[3] {
        1 => Ok(4 + 4 + 2),
        4 => Ok(4 + 16 + 2),
        3 => Ok(4 + 1 + usize::from(head[4]) + 2),
        other => Err(format!("the proxy answered address type {other}")),
    }
}

/// What a reply code means (section 6), `None` for success.
pub fn reply_error(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => return None,
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    })
}

/// A TCP connection to `host`:`port` through `proxy`, everything within `timeout`.
pub async fn connect(
    proxy: &Proxy,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let where_ = format!("SOCKS5 proxy {}:{}", proxy.host, proxy.port);
    match tokio::time::timeout(timeout, handshake(proxy, host, port)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("{where_}: {e}")),
        Err(_) => Err(format!("{where_}: no answer within {} s", timeout.as_secs())),
    }
}

async fn handshake(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, String> {
    let io = |e: std::io::Error| crate::config::describe(&e);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let to = match host.parse::<IpAddr>() {
        Ok(ip) => Destination::Address(ip),
        Err(_) if proxy.remote_dns => Destination::Name(host),
        // socks5://: resolved here.
        Err(_) => {
            let mut found = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("resolving {host}: {}", io(e)))?;
            let addr = found.next().ok_or_else(|| format!("resolving {host}: no address"))?;
            Destination::Address(addr.ip())
        }
    };
    let request = connect_request(&to, port)?;
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port)).await.map_err(io)?;
    stream.write_all(&greeting(proxy.login.is_some())).await.map_err(io)?;
    let mut chosen = [0u8; 2];
    stream.read_exact(&mut chosen).await.map_err(io)?;
    match (chosen, &proxy.login) {
        ([5, 0x00], _) => {}
        ([5, 0x02], Some((user, pass))) => {
            // RFC 1929 section 2.
            let mut login = vec![1, user.len() as u8];
            login.extend_from_slice(user.as_bytes());
            login.push(pass.len() as u8);
            login.extend_from_slice(pass.as_bytes());
            stream.write_all(&login).await.map_err(io)?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await.map_err(io)?;
            if status[1] != 0 {
                return Err("the proxy refused the user name and password".into());
            }
        }
        ([5, 0xFF], _) => return Err("the proxy accepts none of our authentication methods".into()),
        _ => return Err(format!("unexpected method selection {chosen:?}")),
    }
    stream.write_all(&request).await.map_err(io)?;
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.map_err(io)?;
    if let Some(error) = reply_error(head[1]) {
        let to = match to {
            Destination::Name(name) => name.to_owned(),
            Destination::Address(ip) => ip.to_string(),
        };
        return Err(format!("connecting to {to} port {port}: {error}"));
    }
    let mut rest = vec![0u8; reply_length(&head)? - head.len()];
    stream.read_exact(&mut rest).await.map_err(io)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = Proxy::parse("socks5h://127.0.0.1:9050").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.remote_dns, p.login),
            ("127.0.0.1", 9050, true, None)
        );
        let p = Proxy::parse("socks5://u:p@[::1]/").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.remote_dns), ("::1", 1080, false));
        assert_eq!(p.login, Some(("u".into(), "p".into())));
        for bad in ["http://h:1", "socks5h://", "socks5h://h:x", "socks5://:p@h:1"] {
            assert!(Proxy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
        let name = connect_request(&Destination::Name("pop.example"), 995).unwrap();
        assert_eq!(name, b"\x05\x01\x00\x03\x0bpop.example\x03\xe3");
        let v4 = connect_request(&Destination::Address("10.0.0.1".parse().unwrap()), 110).unwrap();
        assert_eq!(v4, [5, 1, 0, 1, 10, 0, 0, 1, 0, 110]);
        let v6 = connect_request(&Destination::Address("::1".parse().unwrap()), 1).unwrap();
        assert_eq!((v6[3], v6.len()), (4, 4 + 16 + 2));
        assert!(connect_request(&Destination::Name(&"x".repeat(256)), 1).is_err());
        assert_eq!(reply_length(&[5, 0, 0, 1, 127]), Ok(10));
        assert_eq!(reply_length(&[5, 0, 0, 3, 7]), Ok(4 + 1 + 7 + 2));
        assert!(reply_length(&[4, 0, 0, 1, 0]).is_err());
        assert!(reply_length(&[5, 0, 0, 9, 0]).is_err());
        assert_eq!(reply_error(0), None);
        assert_eq!(reply_error(4), Some("host unreachable"));
    }
}
