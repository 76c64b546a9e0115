//! The async client.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use pop3_proto::client::{ClientConfig, ClientEvent, ClientSession, Reply, RequestId};
use pop3_proto::sasl::{Mechanism, SaslClient};
use pop3_proto::{Capability, MsgNum, ScanListing, StatusLine};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::conn::{Conn, Stream};
use crate::tls::{client_config, server_name, TlsMode, TlsOptions};
use crate::{Error, Result};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Host name or IP address; an IPv6 address with or without the brackets a URL puts
    /// around it (`[::1]` or `::1`, RFC 3986 section 3.2.2).
    pub host: String,
    /// TCP port; `None` for the mode's default (110 or 995).
    pub port: Option<u16>,
    /// Plain, STLS (required) or implicit TLS.
    pub tls: TlsMode,
    /// Certificate verification.
    pub tls_options: TlsOptions,
    /// Longest wait for the TCP connection and the TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait without any progress (no byte read or written) for a reply.
    pub timeout: Duration,
    /// Commands in flight at once when the server advertises PIPELINING (1 turns pipelining
    /// off). Clamped to pop3-proto's maximum.
    pub pipeline_window: usize,
}

impl ConnectOptions {
    /// Defaults for `host`: STLS required, system roots, 30 s timeouts, window 16.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: None,
            tls: TlsMode::Stls,
            tls_options: TlsOptions::new(),
            connect_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            pipeline_window: ClientConfig::DEFAULT_PIPELINE_WINDOW,
        }
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// The best the server offers: SCRAM-SHA-256, then PLAIN, then USER/PASS.
    #[default]
    Auto,
    /// `AUTH SCRAM-SHA-256` (RFC 7677); the server must prove it knows the password too.
    ScramSha256,
    /// `AUTH PLAIN` (RFC 4616).
    Plain,
    /// `AUTH LOGIN`.
    Login,
    /// `AUTH CRAM-MD5` (RFC 2195).
    CramMd5,
    /// `USER` and `PASS` (RFC 1939 §7).
    UserPass,
    /// `APOP` (RFC 1939 §7), if the greeting carries a timestamp.
    Apop,
    /// `AUTH OAUTHBEARER` (RFC 7628); the secret is an OAuth 2.0 access token.
    OAuthBearer,
    /// `AUTH XOAUTH2`; the secret is an OAuth 2.0 access token.
    XOAuth2,
}

impl AuthMethod {
    /// Parses a method name as written in configuration (`auto`, `scram-sha-256`, `plain`,
    /// `login`, `cram-md5`, `user`, `apop`, `oauthbearer`, `xoauth2`), case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "scram-sha-256" | "scram" => Self::ScramSha256,
            "plain" => Self::Plain,
            "login" => Self::Login,
            "cram-md5" => Self::CramMd5,
            "user" | "userpass" | "user/pass" => Self::UserPass,
            "apop" => Self::Apop,
            "oauthbearer" => Self::OAuthBearer,
            "xoauth2" => Self::XOAuth2,
            _ => return None,
        })
    }

    /// The SASL mechanism, for the `AUTH` methods.
    pub fn mechanism(self) -> Option<Mechanism> {
        Some(match self {
            Self::ScramSha256 => Mechanism::ScramSha256,
            Self::Plain => Mechanism::Plain,
            Self::Login => Mechanism::Login,
            Self::CramMd5 => Mechanism::CramMd5,
            Self::OAuthBearer => Mechanism::OAuthBearer,
            Self::XOAuth2 => Mechanism::XOAuth2,
            _ => return None,
        })
    }
}

/// The `+OK` to `STAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Messages in the maildrop.
    pub count: u32,
    /// Their total size in octets.
    pub size: u64,
}

/// An async POP3 client connection: [`connect`](Client::connect), [`login`](Client::login),
/// then any command.
///
/// Every wait is bounded by [`ConnectOptions::timeout`] of no progress. Commands that fail with
/// `-ERR` return [`Error::Server`] and the connection stays usable; other errors leave it
/// closed.
#[derive(Debug)]
pub struct Client {
    conn: Conn,
    host: String,
    port: u16,
    window: usize,
}

/// `host` without the brackets of an IPv6 literal (`[::1]` is `::1`): what name resolution
/// and certificate names take.
fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// A fresh random string for SCRAM nonces.
fn nonce() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 18];
    // SystemRandom fails only if the OS has no randomness at all; fall back to the clock.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes[..16].copy_from_slice(&t.to_le_bytes());
    }
    pop3_proto::hex(&bytes)
}

fn command_name(reply_to: &'static str) -> &'static str {
    reply_to
}

impl Client {
    /// Connects, reads the greeting, asks `CAPA`, and sets up TLS as `options.tls` says.
    pub async fn connect(options: &ConnectOptions) -> Result<Self> {
        let (host, port) = (unbracketed(&options.host), options.port());
        let tcp = tokio::time::timeout(options.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| Error::Timeout { what: "the TCP connection" })??;
        Self::connect_over(options, tcp).await
    }

    /// [`connect`](Self::connect) over `tcp`, a connection made by the caller that leads to
    /// the server (through a SOCKS proxy, say): the greeting, `CAPA` and TLS as
    /// `options.tls` says, the certificate checked against `options.host`.
    pub async fn connect_over(options: &ConnectOptions, tcp: TcpStream) -> Result<Self> {
        let port = options.port();
        let host = unbracketed(&options.host);
        let tls_config = match options.tls {
            TlsMode::None => None,
            _ => Some(client_config(&options.tls_options)?),
        };
        let _ = tcp.set_nodelay(true);
        let stream = match (&tls_config, options.tls) {
            (Some(config), TlsMode::Implicit) => {
                let name = server_name(host, &options.tls_options)?;
                let tls = tokio::time::timeout(
                    options.connect_timeout,
                    TlsConnector::from(config.clone()).connect(name, tcp),
                )
                .await
                .map_err(|_| Error::Timeout { what: "the TLS handshake" })?
                .map_err(Error::Tls)?;
                Stream::Tls(Box::new(tls))
            }
            _ => Stream::Plain(tcp),
        };
        let config =
            ClientConfig { pipeline_window: options.pipeline_window, ..Default::default() };
        let window = config.effective_window();
        let session = ClientSession::new(config);
        let mut client = Client {
            conn: Conn::new(session, stream, options.timeout),
            host: host.to_owned(),
            port,
            window,
        };
        client.greeting().await?;
        let capa = client.capa().await;
        if options.tls == TlsMode::Stls {
            let offered = matches!(&capa, Ok(caps) if caps.contains(&Capability::Stls));
            // A server without CAPA may still know STLS; one that lists capabilities without
            // it does not offer it.
            if capa.is_ok() && !offered {
                return Err(Error::StlsUnavailable);
            }
            let config = tls_config.expect("built for STLS");
            client.starttls(config, &options.tls_options, options.connect_timeout).await?;
        } else if let Err(e) = capa {
            if !matches!(e, Error::Server { .. }) {
                return Err(e);
            }
        }
        Ok(client)
    }

    async fn greeting(&mut self) -> Result<()> {
        loop {
            match self.conn.next_event("the greeting").await? {
                ClientEvent::Greeting(status) if status.is_ok() => return Ok(()),
                ClientEvent::Greeting(status) => return Err(Error::server("greeting", &status)),
                _ => {}
            }
        }
    }

    async fn starttls(
        &mut self,
        config: std::sync::Arc<rustls::ClientConfig>,
        options: &TlsOptions,
        handshake_timeout: Duration,
    ) -> Result<()> {
        let id = self.conn.session.stls()?;
        match self.reply(id, "STLS").await {
            Ok(_) => {}
            Err(Error::Server { .. }) => return Err(Error::StlsUnavailable),
            Err(e) => return Err(e),
        }
        // The StartTls event follows the reply.
        loop {
            match self.conn.next_event("STLS").await? {
                ClientEvent::StartTls => break,
                _ => continue,
            }
        }
        self.conn.flush().await?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.conn.stream, Stream::Upgrading) else {
            return Err(Error::Closed);
        };
        let name = server_name(&self.host, options)?;
        let tls =
            tokio::time::timeout(handshake_timeout, TlsConnector::from(config).connect(name, tcp))
                .await
                .map_err(|_| Error::Timeout { what: "the TLS handshake" })?
                .map_err(Error::Tls)?;
        self.conn.stream = Stream::Tls(Box::new(tls));
        let capa = self.conn.session.tls_established()?;
        match self.reply(capa, "CAPA").await {
            Ok(_) | Err(Error::Server { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits for the reply to `id`. Body events of earlier, abandoned RETR/TOP are skipped.
    async fn reply(&mut self, id: RequestId, command: &'static str) -> Result<Reply> {
        loop {
            match self.conn.next_event(command).await? {
                ClientEvent::Reply { id: i, reply } if i == id => {
                    return match reply {
                        Reply::Err(status) => Err(Error::server(command_name(command), &status)),
                        Reply::AuthFailed { error, .. } => Err(Error::AuthFailed(error)),
                        ok => Ok(ok),
                    };
                }
                ClientEvent::Closed => return Err(Error::Closed),
                _ => {}
            }
        }
    }

    /// The host connected to (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True when the connection is protected by TLS.
    pub fn is_tls(&self) -> bool {
        self.conn.stream.is_tls()
    }

    /// True when commands are pipelined (the server advertised PIPELINING and the window is
    /// more than 1).
    pub fn is_pipelining(&self) -> bool {
        self.conn.session.is_pipelining() && self.window > 1
    }

    /// The server's greeting.
    pub fn greeting_line(&self) -> Option<&StatusLine<'static>> {
        self.conn.session.greeting()
    }

    /// The capabilities from the last `CAPA` (after STLS: the ones announced under TLS).
    pub fn capabilities(&self) -> &[Capability<'static>] {
        self.conn.session.capabilities().unwrap_or(&[])
    }

    /// Octets received from the server so far.
    pub fn bytes_read(&self) -> u64 {
        self.conn.bytes_read
    }

    /// The SASL mechanisms offered in CAPA.
    pub fn sasl_mechanisms(&self) -> Vec<Mechanism> {
        self.capabilities()
            .iter()
            .filter_map(|c| match c {
                Capability::Sasl(list) => Some(list),
                _ => None,
            })
            .flatten()
            .filter_map(|name| Mechanism::from_name(name))
            .collect()
    }

    /// Logs in as `user` with `secret` (a password, or an OAuth 2.0 token for the bearer
    /// methods). Returns the method used.
    ///
    /// [`AuthMethod::Auto`] picks SCRAM-SHA-256 if offered, else PLAIN, else USER/PASS (when
    /// CAPA lists USER, or the server has no CAPA). An explicit method is tried whether or not
    /// CAPA lists it.
    pub async fn login(
        &mut self,
        user: &str,
        secret: &str,
        method: AuthMethod,
    ) -> Result<AuthMethod> {
        let method = match method {
            AuthMethod::Auto => {
                let offered = self.sasl_mechanisms();
                let caps = self.conn.session.capabilities();
                if offered.contains(&Mechanism::ScramSha256) {
                    AuthMethod::ScramSha256
                } else if offered.contains(&Mechanism::Plain) {
                    AuthMethod::Plain
                } else if caps.is_none_or(|c| c.contains(&Capability::User)) {
                    AuthMethod::UserPass
                } else {
                    return Err(Error::NoMechanism(
                        "the server offers none of SCRAM-SHA-256, PLAIN, USER".into(),
                    ));
                }
            }
            m => m,
        };
        match method {
            AuthMethod::Auto => unreachable!("resolved above"),
            AuthMethod::UserPass => {
                let u = self.conn.session.user(user)?;
                let p = self.conn.session.pass(secret)?;
                let user_reply = self.reply(u, "USER").await;
                let pass_reply = self.reply(p, "PASS").await;
                user_reply?;
                pass_reply?;
            }
            AuthMethod::Apop => {
                let id = self.conn.session.apop(user, secret).map_err(|e| match e {
                    pop3_proto::client::ClientError::NoApopTimestamp => {
                        Error::NoMechanism("the greeting has no APOP timestamp".into())
                    }
                    e => e.into(),
                })?;
                self.reply(id, "APOP").await?;
            }
            m => {
                let sasl = match m {
                    AuthMethod::ScramSha256 => SaslClient::scram_sha256(user, secret, &nonce()),
                    AuthMethod::Plain => SaslClient::plain(None, user, secret),
                    AuthMethod::Login => SaslClient::login(user, secret),
                    AuthMethod::CramMd5 => SaslClient::cram_md5(user, secret),
                    AuthMethod::OAuthBearer => {
                        SaslClient::oauthbearer(user, secret, Some(&self.host), Some(self.port))
                    }
                    _ => SaslClient::xoauth2(user, secret, true),
                };
                let id = self.conn.session.auth(sasl)?;
                self.reply(id, "AUTH").await?;
            }
        }
        Ok(method)
    }

    /// `CAPA` (RFC 2449): the capabilities, also kept for [`capabilities`](Self::capabilities).
    pub async fn capa(&mut self) -> Result<Vec<Capability<'static>>> {
        let id = self.conn.session.capa()?;
        match self.reply(id, "CAPA").await? {
            Reply::Capabilities(caps) => Ok(caps),
            _ => Err(Error::Closed),
        }
    }

    /// `STAT`.
    pub async fn stat(&mut self) -> Result<Stat> {
        let id = self.conn.session.stat()?;
        match self.reply(id, "STAT").await? {
            Reply::Stat { count, size } => Ok(Stat { count, size }),
            _ => Err(Error::Closed),
        }
    }

    /// `LIST`: every message's number and size.
    pub async fn list(&mut self) -> Result<Vec<ScanListing>> {
        let id = self.conn.session.list(None)?;
        match self.reply(id, "LIST").await? {
            Reply::ScanList(list) => Ok(list),
            _ => Err(Error::Closed),
        }
    }

    /// `LIST msg`: one message's size.
    pub async fn list_one(&mut self, msg: MsgNum) -> Result<u64> {
        let id = self.conn.session.list(Some(msg))?;
        match self.reply(id, "LIST").await? {
            Reply::Scan(scan) => Ok(scan.size),
            _ => Err(Error::Closed),
        }
    }

    /// `UIDL`: every message's number and unique id.
    pub async fn uidl(&mut self) -> Result<Vec<(MsgNum, String)>> {
        let id = self.conn.session.uidl(None)?;
        match self.reply(id, "UIDL").await? {
            Reply::UidList(list) => {
                Ok(list.iter().map(|u| (u.msg(), u.uid().to_owned())).collect())
            }
            _ => Err(Error::Closed),
        }
    }

    /// `UIDL msg`: one message's unique id.
    pub async fn uidl_one(&mut self, msg: MsgNum) -> Result<String> {
        let id = self.conn.session.uidl(Some(msg))?;
        match self.reply(id, "UIDL").await? {
            Reply::Uid(u) => Ok(u.uid().to_owned()),
            _ => Err(Error::Closed),
        }
    }

    /// `LIST` and `UIDL` in one round trip when pipelining: `(msg, size, uid)` for every
    /// message, in order. Messages missing from either listing are left out.
    pub async fn list_uidl(&mut self) -> Result<Vec<(MsgNum, u64, String)>> {
        let list = self.conn.session.list(None)?;
        let uidl = self.conn.session.uidl(None)?;
        let sizes = match self.reply(list, "LIST").await {
            Ok(Reply::ScanList(list)) => list,
            Ok(_) => return Err(Error::Closed),
            Err(e) => {
                let _ = self.reply(uidl, "UIDL").await;
                return Err(e);
            }
        };
        let Reply::UidList(uids) = self.reply(uidl, "UIDL").await? else {
            return Err(Error::Closed);
        };
        let mut out = Vec::with_capacity(uids.len());
        let mut sizes = sizes.into_iter().peekable();
        for u in uids {
            while sizes.peek().is_some_and(|s| s.msg < u.msg()) {
                sizes.next();
            }
            if let Some(s) = sizes.peek().filter(|s| s.msg == u.msg()) {
                out.push((u.msg(), s.size, u.uid().to_owned()));
            }
        }
        Ok(out)
    }

    /// `RETR msg`: the message as a stream of chunks ([`Body`]), never buffered whole.
    pub async fn retr(&mut self, msg: MsgNum) -> Result<Body<'_>> {
        let id = self.conn.session.retr(msg)?;
        self.body_start(id, "RETR").await
    }

    /// `TOP msg lines`: the header and the first `lines` lines of the body, as a [`Body`].
    pub async fn top(&mut self, msg: MsgNum, lines: u32) -> Result<Body<'_>> {
        let id = self.conn.session.top(msg, lines)?;
        self.body_start(id, "TOP").await
    }

    async fn body_start(&mut self, id: RequestId, command: &'static str) -> Result<Body<'_>> {
        loop {
            match self.conn.next_event(command).await? {
                ClientEvent::BodyStart { id: i, .. } if i == id => {
                    return Ok(Body {
                        conn: &mut self.conn,
                        id,
                        done: false,
                        pending: Bytes::new(),
                    })
                }
                ClientEvent::Reply { id: i, reply } if i == id => {
                    return Err(match reply {
                        Reply::Err(status) => Error::server(command, &status),
                        _ => Error::Closed,
                    });
                }
                ClientEvent::Closed => return Err(Error::Closed),
                _ => {}
            }
        }
    }

    /// `RETR` of every message in `msgs`, pipelined within the window: see [`Retrieval`].
    pub fn retrieve(&mut self, msgs: impl IntoIterator<Item = MsgNum>) -> Retrieval<'_> {
        Retrieval { client: self, todo: msgs.into_iter().collect(), sent: VecDeque::new() }
    }

    /// `DELE msg`.
    pub async fn dele(&mut self, msg: MsgNum) -> Result<()> {
        let id = self.conn.session.dele(msg)?;
        self.reply(id, "DELE").await.map(drop)
    }

    /// `DELE` of every message in `msgs`, pipelined within the window. Returns the messages
    /// the server refused with their errors; other errors end the batch.
    pub async fn dele_many(&mut self, msgs: &[MsgNum]) -> Result<Vec<(MsgNum, Error)>> {
        let mut refused = Vec::new();
        let mut sent: VecDeque<(RequestId, MsgNum)> = VecDeque::new();
        let mut next = msgs.iter();
        loop {
            if refill_due(sent.len(), self.window) {
                while sent.len() < self.window {
                    let Some(&msg) = next.next() else { break };
                    sent.push_back((self.conn.session.dele(msg)?, msg));
                }
            }
            let Some((id, msg)) = sent.pop_front() else { return Ok(refused) };
            match self.reply(id, "DELE").await {
                Ok(_) => {}
                Err(e @ Error::Server { .. }) => refused.push((msg, e)),
                Err(e) => return Err(e),
            }
        }
    }

    /// `RSET`.
    pub async fn rset(&mut self) -> Result<()> {
        let id = self.conn.session.rset()?;
        self.reply(id, "RSET").await.map(drop)
    }

    /// `NOOP`.
    pub async fn noop(&mut self) -> Result<()> {
        let id = self.conn.session.noop()?;
        self.reply(id, "NOOP").await.map(drop)
    }

    /// `LAST` (RFC 1460; old servers only).
    pub async fn last(&mut self) -> Result<u32> {
        let id = self.conn.session.last()?;
        match self.reply(id, "LAST").await? {
            Reply::Last(n) => Ok(n),
            _ => Err(Error::Closed),
        }
    }

    /// `UTF8` (RFC 6856).
    pub async fn utf8(&mut self) -> Result<()> {
        let id = self.conn.session.utf8()?;
        self.reply(id, "UTF8").await.map(drop)
    }

    /// `QUIT`: the server enters UPDATE and removes the messages marked deleted. `-ERR` means
    /// some of them were not removed.
    pub async fn quit(mut self) -> Result<()> {
        let id = self.conn.session.quit()?;
        self.reply(id, "QUIT").await.map(drop)
    }
}

/// A message body being received: chunks in order, unstuffed, line ends as the server sent
/// them. Also an [`AsyncRead`]. Dropping it before the end is allowed: the rest is skipped
/// by the next command.
#[derive(Debug)]
pub struct Body<'c> {
    conn: &'c mut Conn,
    id: RequestId,
    done: bool,
    pending: Bytes,
}

impl Body<'_> {
    /// The next chunk, or `None` at the end of the message.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        self.conn.arm();
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Poll version of [`chunk`](Self::chunk).
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.pending))));
        }
        loop {
            if self.done {
                return Poll::Ready(Ok(None));
            }
            match std::task::ready!(self.conn.poll_event(cx, "message data")) {
                Ok(ClientEvent::BodyChunk { id, data }) if id == self.id => {
                    return Poll::Ready(Ok(Some(data)))
                }
                Ok(ClientEvent::BodyEnd { id }) if id == self.id => self.done = true,
                Ok(ClientEvent::Closed) => return Poll::Ready(Err(Error::Closed)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// True once the whole message has been received.
    pub fn is_done(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

impl AsyncRead for Body<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            match std::task::ready!(this.poll_chunk(cx)) {
                Ok(Some(chunk)) => this.pending = chunk,
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// Whether a pipelined batch with `in_flight` commands awaiting replies should be topped up
/// to `window`: only once half of it has been answered, so that commands leave in groups (one
/// write for the client, one read for the server) instead of one write per reply, while the
/// server always has at least half a window of work queued.
fn refill_due(in_flight: usize, window: usize) -> bool {
    in_flight <= window / 2
}

/// Pipelined `RETR` of many messages ([`Client::retrieve`]): at most the window's worth of
/// commands is queued ahead; each message comes as a [`Retrieved`].
#[derive(Debug)]
pub struct Retrieval<'c> {
    client: &'c mut Client,
    todo: VecDeque<MsgNum>,
    sent: VecDeque<(RequestId, MsgNum)>,
}

/// One message of a [`Retrieval`].
#[derive(Debug)]
pub enum Retrieved<'a> {
    /// The server sent the message.
    Message(MsgNum, Body<'a>),
    /// The server refused it (`-ERR`; the message may have been deleted by another client).
    Refused(MsgNum, Error),
}

impl Retrieval<'_> {
    /// The next message, or `None` when all have been retrieved. Read the body to its end (or
    /// drop it) before asking for the next one.
    pub async fn next(&mut self) -> Result<Option<Retrieved<'_>>> {
        // Without PIPELINING one command at a time: pop3-proto would hold the others back
        // and send each after the reply before it, but they would no longer be ours to
        // [`stop`](Self::stop).
        let window = if self.client.is_pipelining() { self.client.window } else { 1 };
        if refill_due(self.sent.len(), window) {
            while self.sent.len() < window {
                let Some(msg) = self.todo.pop_front() else { break };
                self.sent.push_back((self.client.conn.session.retr(msg)?, msg));
            }
        }
        let Some((id, msg)) = self.sent.pop_front() else { return Ok(None) };
        match self.client.body_start(id, "RETR").await {
            Ok(body) => Ok(Some(Retrieved::Message(msg, body))),
            Err(e @ Error::Server { .. }) => Ok(Some(Retrieved::Refused(msg, e))),
            Err(e) => Err(e),
        }
    }

    /// Messages not yet returned.
    pub fn remaining(&self) -> usize {
        self.todo.len() + self.sent.len()
    }

    /// Stops queueing: the messages whose `RETR` is not sent yet are dropped from the
    /// retrieval (returned, in order), and [`next`](Self::next) returns only those already
    /// sent, then `None`.
    ///
    /// Why not drop those too: a pipelined `RETR` cannot be taken back (RFC 2449 section 6.6:
    /// the server answers every command it has received, in order), so its message arrives
    /// whether or not it is wanted. Reading the ones in flight to their end, rather than
    /// closing the connection, keeps the session usable: a retriever asked to stop stores
    /// what is in flight, deletes what it stored, and its `QUIT` commits those deletions.
    /// At most the pipelining window's worth of messages still arrives after this call.
    pub fn stop(&mut self) -> Vec<MsgNum> {
        std::mem::take(&mut self.todo).into()
    }

    /// Messages whose `RETR` is sent and not yet returned by [`next`](Self::next).
    pub fn in_flight(&self) -> usize {
        self.sent.len()
    }
}
