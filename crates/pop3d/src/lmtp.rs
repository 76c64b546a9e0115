//! `[lmtp]` in `pop3d serve`: the LMTP delivery listeners, bound with the POP3 ones (while
//! still privileged) and served on the same runtime.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pop3_server::{Authenticator, LmtpServer, LmtpSettings};

use crate::config::Loaded;
use crate::{exit, Failure};

/// The bound LMTP listeners, not yet served.
pub struct Bound {
    settings: LmtpSettings,
    tcp: Vec<std::net::TcpListener>,
    /// Unix-domain listeners, with the socket file pop3d made (and removes at shutdown);
    /// `None` for one systemd passed.
    unix: Vec<(std::os::unix::net::UnixListener, Option<PathBuf>)>,
}

/// Binds what `[lmtp]` asks for; `None` when it asks for nothing (the default).
pub fn bind(loaded: &Loaded) -> Result<Option<Bound>, Failure> {
    let Some((settings, socket)) = loaded.lmtp() else { return Ok(None) };
    let mut tcp = Vec::new();
    for addr in loaded.file.lmtp.iter().flat_map(|l| &l.listen) {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| (exit::OSERR, format!("cannot listen for LMTP on {addr}: {e}")))?;
        listener.set_nonblocking(true).map_err(|e| (exit::OSERR, e.to_string()))?;
        tcp.push(listener);
    }
    let mode = loaded.file.lmtp.as_ref().map_or(0o660, |l| l.socket_mode);
    let unix = match socket {
        Some(path) => vec![(bind_unix(&path, mode)?, Some(path))],
        None => Vec::new(),
    };
    Ok(Some(Bound { settings, tcp, unix }))
}

/// The LMTP listeners systemd passed (socket activation), with `[lmtp]`'s settings (or the
/// defaults); `None` when none was passed. The socket files belong to systemd: never removed.
pub fn adopt(
    loaded: &Loaded,
    tcp: Vec<std::net::TcpListener>,
    unix: Vec<std::os::unix::net::UnixListener>,
) -> Option<Bound> {
    if tcp.is_empty() && unix.is_empty() {
        return None;
    }
    let settings = loaded.lmtp_settings();
    Some(Bound { settings, tcp, unix: unix.into_iter().map(|l| (l, None)).collect() })
}

/// Binds a Unix-domain socket at `path` with `mode`. A socket file left by an earlier run
/// is replaced; any other file there is an error (never removed).
fn bind_unix(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener, Failure> {
    let fail = |what: &str, e: std::io::Error| {
        (exit::OSERR, format!("LMTP socket {}: {what}: {e}", path.display()))
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| fail("cannot remove the old socket", e))?;
        }
        Ok(_) => {
            return Err((
                exit::CONFIG,
                format!(
                    "LMTP socket {}: a file that is not a socket is in the way",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("cannot inspect", e)),
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|e| fail("cannot bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail("cannot set its mode", e))?;
    listener.set_nonblocking(true).map_err(|e| fail("nonblocking", e))?;
    Ok(listener)
}

/// The LMTP server as it runs.
pub struct Running {
    /// For reloads and shutdown.
    pub server: LmtpServer,
    /// The listeners, as announced: addresses and `unix:PATH`.
    pub announced: Vec<String>,
    socket: Option<PathBuf>,
}

impl Running {
    /// Stops the listeners, waits for the sessions, and removes the socket file.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        if let Some(path) = self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Serves the bound listeners on the current runtime.
pub fn start(
    bound: Bound,
    users: Arc<dyn Authenticator>,
    backend: Arc<dyn pop3_storage::Backend>,
) -> Result<Running, Failure> {
    let server = LmtpServer::new(bound.settings, backend, users);
    let mut announced = Vec::new();
    for listener in bound.tcp {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| (exit::OSERR, format!("LMTP listener: {e}")))?;
        if let Ok(addr) = listener.local_addr() {
            announced.push(addr.to_string());
        }
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(error) = server.serve_tcp(listener).await {
                tracing::error!(%error, "LMTP listener failed");
            }
        });
    }
    let mut socket = None;
    for (listener, path) in bound.unix {
        let shown = match &path {
            Some(path) => path.display().to_string(),
            None => listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "(passed by systemd)".into()),
        };
        let listener = tokio::net::UnixListener::from_std(listener)
            .map_err(|e| (exit::OSERR, format!("LMTP socket: {e}")))?;
        announced.push(format!("unix:{shown}"));
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(error) = server.serve_unix(listener).await {
                tracing::error!(%error, "LMTP socket listener failed");
            }
        });
        socket = socket.or(path);
    }
    Ok(Running { server, announced, socket })
}
