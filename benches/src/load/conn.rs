//! One POP3 connection driven by `pop3-proto`'s sans-IO [`ClientSession`]: plain, STLS or
//! implicit TLS, with every reply checked.

use std::net::SocketAddr;
use std::sync::Arc;

use pop3_proto::client::{ClientConfig, ClientEvent, ClientSession, Reply, RequestId};
use pop3_proto::{MsgNum, ScanListing};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::Security;

/// Where and how to connect; shared by every worker.
#[derive(Clone)]
pub struct Target {
    /// The server's address (already checked against `--allow-remote`).
    pub addr: SocketAddr,
    /// Plain, STLS or implicit TLS.
    pub security: Security,
    /// The TLS client configuration (`None` for plain).
    pub tls: Option<TlsConnector>,
    /// The name the certificate is checked against.
    pub server_name: ServerName<'static>,
    /// The pipeline window (commands in flight once CAPA said PIPELINING).
    pub window: usize,
    /// Read buffer size per connection.
    pub read_buf: usize,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("security", &self.security)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the STLS handshake runs.
    Gone,
}

/// A connected, greeted POP3 session.
pub struct Conn {
    stream: Stream,
    session: ClientSession,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("session", &self.session).finish_non_exhaustive()
    }
}

/// A failed operation, described for the report.
pub type Error = String;

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| format!("{what}: {e}")
}

fn status_text(reply: &Reply) -> String {
    match reply {
        Reply::Err(line) => format!("-ERR {}", line.text),
        other => format!("{other:?}"),
    }
}

impl Conn {
    /// Connects, runs the TLS handshake (implicit TLS) or STLS, and reads the greeting.
    pub async fn open(target: &Target) -> Result<Self, Error> {
        let tcp = TcpStream::connect(target.addr).await.map_err(io("connect"))?;
        tcp.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
        let stream = match target.security {
            Security::Implicit => Stream::Tls(Box::new(tls_handshake(target, tcp).await?)),
            Security::Plain | Security::Stls => Stream::Plain(tcp),
        };
        let config = ClientConfig { pipeline_window: target.window, ..ClientConfig::default() };
        let mut conn =
            Self { stream, session: ClientSession::new(config), buf: vec![0; target.read_buf] };
        match conn.next_event().await? {
            ClientEvent::Greeting(line) if line.status == pop3_proto::Status::Ok => {}
            other => return Err(format!("greeting: {other:?}")),
        }
        if target.security == Security::Stls {
            conn.starttls(target).await?;
        }
        Ok(conn)
    }

    async fn starttls(&mut self, target: &Target) -> Result<(), Error> {
        let id = self.session.stls().map_err(|e| e.to_string())?;
        self.expect_ok(id).await.map_err(|e| format!("STLS: {e}"))?;
        match self.next_event().await? {
            ClientEvent::StartTls => {}
            other => return Err(format!("STLS: {other:?}")),
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err("STLS on a TLS stream".into());
        };
        self.stream = Stream::Tls(Box::new(tls_handshake(target, tcp).await?));
        let capa = self.session.tls_established().map_err(|e| e.to_string())?;
        self.expect_ok(capa).await.map_err(|e| format!("CAPA after STLS: {e}"))?;
        Ok(())
    }

    /// The session, to queue commands.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Sends what the session has queued.
    async fn flush(&mut self) -> Result<(), Error> {
        if !self.session.has_output() {
            return Ok(());
        }
        let out = self.session.take_output();
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(&out).await.map_err(io("write")),
            Stream::Tls(s) => {
                s.write_all(&out).await.map_err(io("write"))?;
                s.flush().await.map_err(io("write"))
            }
            Stream::Gone => Err("write during STLS".into()),
        }
    }

    /// The next event: sends pending commands, reads as needed.
    pub async fn next_event(&mut self) -> Result<ClientEvent, Error> {
        loop {
            if let Some(event) = self.session.poll_event() {
                return match event {
                    ClientEvent::ProtocolError(e) => Err(format!("protocol error: {e}")),
                    ClientEvent::Closed => Err("connection closed".into()),
                    event => Ok(event),
                };
            }
            self.flush().await?;
            let n = match &mut self.stream {
                Stream::Plain(s) => s.read(&mut self.buf).await,
                Stream::Tls(s) => s.read(&mut self.buf).await,
                Stream::Gone => return Err("read during STLS".into()),
            }
            .map_err(io("read"))?;
            if n == 0 {
                self.session.handle_eof();
                if self.session.poll_event().is_none() {
                    return Err("connection closed".into());
                }
                return Err("connection closed by the server".into());
            }
            self.session.handle_input(&self.buf[..n]);
        }
    }

    /// Waits for the reply to `id` (earlier replies must have been consumed).
    pub async fn reply(&mut self, id: RequestId) -> Result<Reply, Error> {
        match self.next_event().await? {
            ClientEvent::Reply { id: got, reply } if got == id => Ok(reply),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    /// Waits for the reply to `id` and checks that it is `+OK`.
    pub async fn expect_ok(&mut self, id: RequestId) -> Result<Reply, Error> {
        let reply = self.reply(id).await?;
        if reply.is_ok() {
            Ok(reply)
        } else {
            Err(status_text(&reply))
        }
    }

    /// USER and PASS.
    pub async fn login(&mut self, user: &str, pass: &str) -> Result<(), Error> {
        let u = self.session.user(user).map_err(|e| e.to_string())?;
        let p = self.session.pass(pass).map_err(|e| e.to_string())?;
        self.expect_ok(u).await.map_err(|e| format!("USER {user}: {e}"))?;
        self.expect_ok(p).await.map_err(|e| format!("PASS ({user}): {e}"))?;
        Ok(())
    }

    /// CAPA; true if the server pipelines.
    pub async fn capa(&mut self) -> Result<bool, Error> {
        let id = self.session.capa().map_err(|e| e.to_string())?;
        self.expect_ok(id).await.map_err(|e| format!("CAPA: {e}"))?;
        Ok(self.session.is_pipelining())
    }

    /// STAT: (messages, octets).
    pub async fn stat(&mut self) -> Result<(u32, u64), Error> {
        let id = self.session.stat().map_err(|e| e.to_string())?;
        match self.expect_ok(id).await.map_err(|e| format!("STAT: {e}"))? {
            Reply::Stat { count, size } => Ok((count, size)),
            other => Err(format!("STAT: {other:?}")),
        }
    }

    /// LIST without argument.
    pub async fn list(&mut self) -> Result<Vec<ScanListing>, Error> {
        let id = self.session.list(None).map_err(|e| e.to_string())?;
        match self.expect_ok(id).await.map_err(|e| format!("LIST: {e}"))? {
            Reply::ScanList(items) => Ok(items),
            other => Err(format!("LIST: {other:?}")),
        }
    }

    /// RETR: the number of unstuffed octets received.
    pub async fn retr(&mut self, msg: MsgNum) -> Result<u64, Error> {
        let id = self.session.retr(msg).map_err(|e| e.to_string())?;
        let mut octets = 0u64;
        loop {
            match self.next_event().await? {
                ClientEvent::BodyStart { id: got, .. } if got == id => {}
                ClientEvent::BodyChunk { id: got, data } if got == id => {
                    octets += data.len() as u64;
                }
                ClientEvent::BodyEnd { id: got } if got == id => return Ok(octets),
                ClientEvent::Reply { id: got, reply } if got == id => {
                    return Err(format!("RETR {msg}: {}", status_text(&reply)))
                }
                other => return Err(format!("RETR {msg}: unexpected {other:?}")),
            }
        }
    }

    /// NOOP.
    pub async fn noop(&mut self) -> Result<(), Error> {
        let id = self.session.noop().map_err(|e| e.to_string())?;
        self.expect_ok(id).await.map_err(|e| format!("NOOP: {e}"))?;
        Ok(())
    }

    /// QUIT, and its `+OK`.
    pub async fn quit(mut self) -> Result<(), Error> {
        let id = self.session.quit().map_err(|e| e.to_string())?;
        self.expect_ok(id).await.map_err(|e| format!("QUIT: {e}"))?;
        if let Stream::Tls(s) = &mut self.stream {
            // close_notify; the server may already have closed.
            let _ = s.shutdown().await;
        }
        Ok(())
    }
}

async fn tls_handshake(target: &Target, tcp: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
    let connector = target.tls.as_ref().ok_or("TLS needs --ca")?;
    connector.connect(target.server_name.clone(), tcp).await.map_err(io("TLS handshake"))
}

/// A TLS client configuration trusting the certificates of `ca_pem` only (ring provider);
/// session resumption only if `resume` (by default every handshake is a full one).
pub fn tls_connector(ca_pem: &[u8], resume: bool) -> Result<TlsConnector, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("CA file: {e}"))?;
        roots.add(cert).map_err(|e| format!("CA file: {e}"))?;
    }
    if roots.is_empty() {
        return Err("CA file: no CERTIFICATE block".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}
