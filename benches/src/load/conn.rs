//! One POP3 connection driven by `pop3-proto`'s sans-IO [`ClientSession`]: plain, STLS or
//! implicit TLS, with every reply checked.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use pop3_proto::client::{ClientConfig, ClientEvent, ClientSession, Reply, RequestId};
use pop3_proto::sasl::SaslClient;
use pop3_proto::{MsgNum, ScanListing};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{Auth, Security};

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
        Self::open_from(target, None).await
    }

    /// [`Conn::open`] from the local address `local` if given (bound before connecting:
    /// each source address has its own ephemeral ports, and a server sees it as the peer).
    pub async fn open_from(target: &Target, local: Option<SocketAddr>) -> Result<Self, Error> {
        let tcp = match local {
            None => TcpStream::connect(target.addr).await.map_err(io("connect"))?,
            Some(local) => {
                let socket = if local.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(io("socket"))?;
                socket.bind(local).map_err(|e| format!("bind {local}: {e}"))?;
                socket
                    .connect(target.addr)
                    .await
                    .map_err(|e| format!("connect from {local}: {e}"))?
            }
        };
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
        self.write_raw(&out).await
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
            let n = self.read_some().await?;
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

    /// Logs in as `auth` says: USER/PASS, or SASL with `secret` as the bearer token.
    pub async fn login_with(&mut self, auth: Auth, user: &str, secret: &str) -> Result<(), Error> {
        let sasl = match auth {
            Auth::User => return self.login(user, secret).await,
            Auth::Oauthbearer => SaslClient::oauthbearer(user, secret, None, None),
            Auth::Xoauth2 => SaslClient::xoauth2(user, secret, true),
        };
        let id = self.session.auth(sasl).map_err(|e| e.to_string())?;
        self.expect_ok(id).await.map_err(|e| format!("AUTH ({user}): {e}"))?;
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

    /// Writes bytes to the server: the session's output, or pre-encoded commands that bypass
    /// it (then the session must have nothing pending, and only the other `*_raw` methods
    /// may follow).
    async fn write_raw(&mut self, out: &[u8]) -> Result<(), Error> {
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(out).await.map_err(io("write")),
            Stream::Tls(s) => {
                s.write_all(out).await.map_err(io("write"))?;
                s.flush().await.map_err(io("write"))
            }
            Stream::Gone => Err("write during STLS".into()),
        }
    }

    /// Reads what has arrived into the buffer (0 at end of stream).
    async fn read_some(&mut self) -> Result<usize, Error> {
        match &mut self.stream {
            Stream::Plain(s) => s.read(&mut self.buf).await,
            Stream::Tls(s) => s.read(&mut self.buf).await,
            Stream::Gone => return Err("read during STLS".into()),
        }
        .map_err(io("read"))
    }

    /// Reads what has arrived into the buffer; fails at end of stream.
    async fn read_raw(&mut self) -> Result<usize, Error> {
        let n = self.read_some().await?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        Ok(n)
    }

    /// Sends `batch` (`replies` pre-encoded single-line commands) and checks that exactly
    /// `replies` `+OK` lines come back.
    pub async fn pipelined_raw(&mut self, batch: &[u8], replies: usize) -> Result<(), Error> {
        self.write_raw(batch).await?;
        let mut lines = StatusLines::default();
        while lines.lines < replies {
            let n = self.read_raw().await?;
            lines.feed(&self.buf[..n])?;
        }
        if lines.lines > replies || !lines.carry.is_empty() {
            return Err(format!("more than {replies} replies to {replies} commands"));
        }
        Ok(())
    }

    /// `RETR` of each of `msgs` in turn with up to `window` commands in flight (RFC 2449
    /// section 6.6, PIPELINING: the caller has seen it in `CAPA` if `window` > 1), the
    /// replies read without the session: each status line must be `+OK`, each body is
    /// counted unstuffed. `more()` is asked before each command is sent (false: send no more
    /// and read what is in flight); `done(i, octets, sent)` gets each reply in order, with
    /// the time its command was sent.
    pub async fn retr_window(
        &mut self,
        msgs: &[MsgNum],
        window: usize,
        mut more: impl FnMut() -> bool,
        mut done: impl FnMut(usize, u64, Instant) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let window = window.max(1);
        let mut sent: VecDeque<Instant> = VecDeque::with_capacity(window);
        let (mut next, mut finished) = (0, 0);
        let mut out = Vec::with_capacity(window * 16);
        let mut status = Vec::new();
        let mut body: Option<BodyCount> = None;
        loop {
            out.clear();
            while next < msgs.len() && next - finished < window && more() {
                std::io::Write::write_fmt(&mut out, format_args!("RETR {}\r\n", msgs[next]))
                    .map_err(|e| e.to_string())?;
                sent.push_back(Instant::now());
                next += 1;
            }
            if !out.is_empty() {
                self.write_raw(&out).await?;
            }
            if finished == next {
                return Ok(());
            }
            let n = self.read_raw().await?;
            let mut data = &self.buf[..n];
            while !data.is_empty() {
                let msg = msgs.get(finished).filter(|_| finished < next);
                let Some(msg) = msg else {
                    return Err("data after the last RETR reply".into());
                };
                match &mut body {
                    None => {
                        let Some(i) = memchr::memchr(b'\n', data) else {
                            status.extend_from_slice(data);
                            if status.len() > 1024 {
                                return Err(format!("RETR {msg}: status line too long"));
                            }
                            break;
                        };
                        status.extend_from_slice(&data[..=i]);
                        StatusLines::check(&status).map_err(|e| format!("RETR {msg}: {e}"))?;
                        status.clear();
                        body = Some(BodyCount::default());
                        data = &data[i + 1..];
                    }
                    Some(b) => {
                        let Some(used) = b.feed(data) else { break };
                        let octets = b.octets;
                        body = None;
                        data = &data[used..];
                        let t = sent.pop_front().unwrap_or_else(Instant::now);
                        done(finished, octets, t)?;
                        finished += 1;
                    }
                }
            }
        }
    }

    /// QUIT and its `+OK`, after `*_raw` commands.
    pub async fn quit_raw(mut self) -> Result<(), Error> {
        self.pipelined_raw(b"QUIT\r\n", 1).await.map_err(|e| format!("QUIT: {e}"))?;
        if let Stream::Tls(s) = &mut self.stream {
            let _ = s.shutdown().await;
        }
        Ok(())
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

/// Checks the status lines of pipelined replies as they arrive, in any split: each must be
/// `+OK`, alone or followed by a space, and end with CRLF.
#[derive(Debug, Default)]
pub struct StatusLines {
    /// The start of a line whose end has not arrived yet.
    carry: Vec<u8>,
    /// Complete lines seen.
    pub lines: usize,
}

impl StatusLines {
    fn check(line: &[u8]) -> Result<(), Error> {
        let ok = line.starts_with(b"+OK")
            && line.ends_with(b"\r\n")
            && (line.len() == 5 || line[3] == b' ');
        if ok {
            Ok(())
        } else {
            Err(format!("not +OK: {:?}", String::from_utf8_lossy(line)))
        }
    }

    /// Feeds received bytes; fails on the first line that is not `+OK`.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Error> {
        if !self.carry.is_empty() {
            let Some(i) = memchr::memchr(b'\n', data) else {
                self.carry.extend_from_slice(data);
                return Ok(());
            };
            self.carry.extend_from_slice(&data[..=i]);
            Self::check(&self.carry)?;
            self.carry.clear();
            self.lines += 1;
            data = &data[i + 1..];
        }
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', data) {
            Self::check(&data[start..=i])?;
            self.lines += 1;
            start = i + 1;
        }
        self.carry.extend_from_slice(&data[start..]);
        Ok(())
    }
}

/// Reads a multi-line reply's body as it arrives, in any split: counts the unstuffed octets
/// (a line's leading `.` removed) and finds the `.` CRLF terminator.
#[derive(Debug, Default)]
pub struct BodyCount {
    /// Unstuffed octets so far.
    pub octets: u64,
    /// Bytes of the current line seen so far (0: at a line start).
    line: u64,
    /// The current line began with `.`.
    dot: bool,
    /// The current line is, so far, a prefix of `.` CRLF.
    term: bool,
}

impl BodyCount {
    /// Feeds received bytes; returns how many of them belong to the body (terminator
    /// included) once the terminator has been seen, `None` while it has not.
    pub fn feed(&mut self, data: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < data.len() {
            if self.line == 0 {
                self.dot = data[at] == b'.';
                self.term = self.dot;
            }
            match memchr::memchr(b'\n', &data[at..]) {
                None => {
                    let part = &data[at..];
                    self.term = self.term && self.line + part.len() as u64 <= 2 && {
                        let seen = self.line as usize;
                        part.iter().enumerate().all(|(k, &b)| b == b".\r"[seen + k])
                    };
                    self.line += part.len() as u64;
                    return None;
                }
                Some(i) => {
                    let part = &data[at..=at + i];
                    let seen = self.line as usize;
                    let len = self.line + part.len() as u64;
                    let whole_term = self.term
                        && len == 3
                        && part.iter().enumerate().all(|(k, &b)| b == b".\r\n"[seen + k]);
                    at += i + 1;
                    self.line = 0;
                    if whole_term {
                        return Some(at);
                    }
                    self.octets += len - u64::from(self.dot);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting `data` in up to three pieces.
    fn splits(data: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut out = vec![vec![data]];
        for i in 0..=data.len() {
            for j in i..=data.len() {
                out.push(vec![&data[..i], &data[i..j], &data[j..]]);
            }
        }
        out
    }

    #[test]
    fn status_lines_in_any_split() {
        let good = b"+OK 1 20480\r\n+OK\r\n+OK 2 7\r\n";
        for pieces in splits(good) {
            let mut s = StatusLines::default();
            for p in pieces {
                s.feed(p).unwrap();
            }
            assert_eq!(s.lines, 3);
            assert!(s.carry.is_empty());
        }
        for bad in [&b"+OK 1 2\r\n-ERR no\r\n"[..], b"+OKAY\r\n", b"+OK 1\n", b"OK\r\n"] {
            for pieces in splits(bad) {
                let mut s = StatusLines::default();
                let failed = pieces.iter().any(|p| s.feed(p).is_err());
                assert!(failed, "{:?} accepted", String::from_utf8_lossy(bad));
            }
        }
    }

    #[test]
    fn body_count_unstuffs_and_finds_the_end_in_any_split() {
        // Unstuffed: "a\r\n.b\r\n\r\n.\r\nend\r\n" (17 octets); then the terminator, then
        // one byte that is not part of the body.
        let wire = b"a\r\n..b\r\n\r\n..\r\nend\r\n.\r\nX";
        for pieces in splits(wire) {
            let mut b = BodyCount::default();
            let mut consumed = 0;
            let mut done = None;
            for p in pieces {
                if done.is_some() {
                    break;
                }
                done = b.feed(p).map(|used| consumed + used);
                consumed += p.len();
            }
            assert_eq!(done, Some(wire.len() - 1));
            assert_eq!(b.octets, 17);
        }
        // Lines that only look like the terminator are body.
        let mut b = BodyCount::default();
        assert_eq!(b.feed(b"..\r\n.x\r\n. \r\n"), None);
        assert_eq!(b.octets, 3 + 3 + 3);
        assert_eq!(b.feed(b".\r\n"), Some(3));
        let mut empty = BodyCount::default();
        assert_eq!(empty.feed(b".\r\n"), Some(3));
        assert_eq!(empty.octets, 0);
    }
}
