//! `[metrics]`: Prometheus metrics and a health check on a listener of their own (off unless
//! `listen` is set), and `pop3d status`, which asks a running server through it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pop3_server::metrics::http::HealthCheck;
use serde::{Deserialize, Serialize};

use crate::config::{Format, Loaded};
use crate::{exit, Failure};

/// The `[metrics]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `GET /metrics` and `GET /health` are served; none: no listener at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// `[metrics] listen`, if metrics are on.
pub fn address(loaded: &Loaded) -> Option<SocketAddr> {
    loaded.file.metrics.as_ref().and_then(|m| m.listen)
}

/// Binds the metrics listener (before privileges are dropped, like the others).
pub fn bind(loaded: &Loaded) -> Result<Option<std::net::TcpListener>, Failure> {
    let Some(addr) = address(loaded) else { return Ok(None) };
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| (exit::OSERR, format!("[metrics] cannot listen on {addr}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| (exit::OSERR, e.to_string()))?;
    Ok(Some(listener))
}

/// The directory every maildrop of `template` lies under: the part before the first `%`, up
/// to its last `/` (`/var/mail/%u` → `/var/mail`); `None` when the template starts with a
/// variable (`%h/Maildir`: no single base to look at).
fn mail_base(template: &str) -> Option<PathBuf> {
    let fixed = template.split('%').next().unwrap_or_default();
    let dir = &fixed[..fixed.rfind('/')?];
    Some(PathBuf::from(if dir.is_empty() { "/" } else { dir }))
}

/// What `/health` checks besides "serving": the mail store (`store`) answers (PostgreSQL:
/// `SELECT 1` on its pool), the mail location's base directory exists (Maildir, mbox), and a
/// `[users] sql` database next to files answers `SELECT 1` too.
pub fn health_check(loaded: &Loaded, store: Arc<dyn pop3_storage::Backend>) -> HealthCheck {
    let shown = loaded.file.postgresql.as_ref().map(|pg| crate::config::redact_password(&pg.url));
    let (base, users_db) = match loaded.file.mail.format {
        Format::Postgresql => (None, None),
        Format::Maildir | Format::Mbox => (
            mail_base(&loaded.mail_location().template),
            loaded
                .file
                .users
                .sql
                .as_ref()
                .and(loaded.file.postgresql.as_ref())
                .map(|pg| pg.url.clone()),
        ),
    };
    let shown = shown.unwrap_or_default();
    Arc::new(move || {
        store.health().map_err(|e| format!("mail store: {e}"))?;
        if let Some(base) = &base {
            check_dir(base)?;
        }
        if let Some(url) = &users_db {
            let mut client = pop3_storage::postgres::connect(url)
                .map_err(|e| format!("users database {shown}: {e}"))?;
            client.simple_query("SELECT 1").map_err(|e| format!("users database {shown}: {e}"))?;
        }
        Ok(())
    })
}

fn check_dir(base: &Path) -> Result<(), String> {
    match std::fs::metadata(base) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(base)
            .map(drop)
            .map_err(|e| format!("mail base {}: {e}", base.display())),
        Ok(_) => Err(format!("mail base {} is not a directory", base.display())),
        Err(e) => Err(format!("mail base {}: {e}", base.display())),
    }
}

/// Time `pop3d status` gives the server to answer each request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// One `GET` on the metrics listener: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(STATUS_TIMEOUT))?;
    stream.set_write_timeout(Some(STATUS_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let bad = || std::io::Error::other(format!("not an HTTP answer from {addr}"));
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// The sum of the samples of `name` whose labels contain `filter` (all of them for "").
fn total(metrics: &str, name: &str, filter: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(key, _)| {
            let family = key.split('{').next().unwrap_or_default();
            family == name && key.contains(filter)
        })
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Where to ask a listener bound to `addr`: on loopback when it listens on every address
/// (`0.0.0.0:9110`, `[::]:9110`).
fn askable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// `pop3d status`: 0 healthy, 1 unhealthy, 69 (EX_UNAVAILABLE) when the server cannot be
/// asked (metrics off, or nothing answering).
pub fn status(loaded: &Loaded) -> Result<u8, Failure> {
    let Some(addr) = address(loaded).map(askable) else {
        return Err((
            exit::UNAVAILABLE,
            format!(
                "metrics are off in {} ([metrics] listen is not set): status asks the running \
                 server through that listener",
                loaded.path.display()
            ),
        ));
    };
    let unreachable = |e: std::io::Error| {
        (exit::UNAVAILABLE, format!("cannot ask pop3d on {addr} ([metrics] listen): {e}"))
    };
    let (health, reason) = get(addr, "/health").map_err(unreachable)?;
    let (code, metrics) = get(addr, "/metrics").map_err(unreachable)?;
    let healthy = health == 200;
    println!("pop3d on {addr}: {}", if healthy { "healthy" } else { "UNHEALTHY" });
    if !healthy {
        println!("  {}", reason.trim());
    }
    if code == 200 {
        println!(
            "  connections: {} open, {} accepted, {} refused by limits",
            total(&metrics, "pop3_connections_open", ""),
            total(&metrics, "pop3_connections_total", ""),
            total(&metrics, "pop3_connections_refused_total", ""),
        );
        let all = total(&metrics, "pop3_logins_total", "");
        let ok = total(&metrics, "pop3_logins_total", "result=\"ok\"");
        println!("  logins: {ok} succeeded, {} failed or refused", all - ok);
    }
    Ok(if healthy { exit::OK } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mail_base_is_the_directory_before_the_first_variable() {
        assert_eq!(mail_base("/var/mail/%u"), Some("/var/mail".into()));
        assert_eq!(mail_base("/var/mail/%d/%n"), Some("/var/mail".into()));
        assert_eq!(mail_base("/srv/mail/u-%u/Maildir"), Some("/srv/mail".into()));
        assert_eq!(mail_base("/%u"), Some("/".into()));
        assert_eq!(mail_base("%h/Maildir"), None);
    }

    #[test]
    fn a_listener_on_every_address_is_asked_on_loopback() {
        let ask = |a: &str| askable(a.parse().unwrap()).to_string();
        assert_eq!(ask("0.0.0.0:9110"), "127.0.0.1:9110");
        assert_eq!(ask("[::]:9110"), "[::1]:9110");
        assert_eq!(ask("192.0.2.1:9110"), "192.0.2.1:9110");
    }

    #[test]
    fn samples_are_summed_by_family_and_label() {
        let text = "# TYPE pop3_logins_total counter\n\
                    pop3_logins_total{mechanism=\"USER\",result=\"ok\"} 3\n\
                    pop3_logins_total{mechanism=\"PLAIN\",result=\"ok\"} 2\n\
                    pop3_logins_total{mechanism=\"USER\",result=\"bad_credentials\"} 4\n\
                    pop3_connections_open 1\n";
        assert_eq!(total(text, "pop3_logins_total", ""), 9);
        assert_eq!(total(text, "pop3_logins_total", "result=\"ok\""), 5);
        assert_eq!(total(text, "pop3_connections_open", ""), 1);
        assert_eq!(total(text, "pop3_connections", ""), 0);
    }
}
