//! systemd integration, without systemd being needed: readiness notification
//! (`sd_notify(3)`: `READY=1` once the listeners serve, `RELOADING=1` and `READY=1` around a
//! SIGHUP reload, `STOPPING=1` at shutdown, `WATCHDOG=1` pings when `WatchdogSec=` is set)
//! and socket activation (`sd_listen_fds(3)`: sockets passed by `pop3d.socket`, told apart by
//! their `FileDescriptorName=`: `pop3`, `pop3s`, `lmtp`).
//!
//! Outside systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS`) all of this does nothing.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use sd_notify::NotifyState;

/// The listeners systemd passed, by name.
#[derive(Debug, Default)]
pub struct Activated {
    /// `pop3`: plain POP3 with STLS.
    pub pop3: Vec<TcpListener>,
    /// `pop3s`: implicit TLS.
    pub pop3s: Vec<TcpListener>,
    /// `lmtp` on TCP.
    pub lmtp_tcp: Vec<TcpListener>,
    /// `lmtp` on a Unix-domain socket.
    pub lmtp_unix: Vec<UnixListener>,
}

/// The sockets passed by socket activation, or `None` when started without (then the
/// configured addresses are bound). They replace every configured listener.
pub fn activated() -> Result<Option<Activated>, String> {
    if std::env::var_os("LISTEN_FDS").is_none() {
        return Ok(None);
    }
    let named: Vec<(i32, String)> = sd_notify::listen_fds_with_names()
        .map_err(|e| format!("socket activation: {e}"))?
        .collect();
    if named.is_empty() {
        return Ok(None);
    }
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Activated::default();
    for (index, (_, name)) in named.iter().enumerate() {
        let what = |e: std::io::Error| format!("socket activation: socket {name:?}: {e}");
        let tcp = |fds: &mut listenfd::ListenFd| -> Result<TcpListener, String> {
            let listener = fds
                .take_tcp_listener(index)
                .map_err(what)?
                .ok_or_else(|| format!("socket activation: socket {name:?} was already taken"))?;
            listener.set_nonblocking(true).map_err(what)?;
            Ok(listener)
        };
        match name.as_str() {
            "pop3" => out.pop3.push(tcp(&mut fds)?),
            "pop3s" => out.pop3s.push(tcp(&mut fds)?),
            "lmtp" => match fds.take_unix_listener(index) {
                Ok(Some(unix)) => {
                    unix.set_nonblocking(true).map_err(what)?;
                    out.lmtp_unix.push(unix);
                }
                // Not a Unix-domain socket: a TCP one, or an error saying what it is.
                _ => out.lmtp_tcp.push(tcp(&mut fds)?),
            },
            other => {
                return Err(format!(
                    "socket activation: a socket named {other:?}; name each in pop3d.socket \
                     with FileDescriptorName=pop3, pop3s or lmtp"
                ))
            }
        }
    }
    Ok(Some(out))
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}

/// `READY=1`: every listener serves.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1`, with the time systemd needs to match it with the `READY=1` that follows.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`: shutting down (the sessions are finishing).
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The interval of `WATCHDOG=1` pings when the unit sets `WatchdogSec=`: half the timeout,
/// as sd_watchdog_enabled(3) recommends.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2).filter(|d| !d.is_zero())
}

/// One `WATCHDOG=1` ping.
pub fn watchdog_ping() {
    notify(&[NotifyState::Watchdog]);
}
