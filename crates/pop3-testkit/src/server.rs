//! An in-process POP3 server for tests: pop3-proto's `ServerSession` over tokio, with an
//! in-memory maildrop, optional TLS (STLS and implicit), and switches for the cases the client
//! must handle.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pop3_proto::sasl::{Mechanism, ScramKeys};
use pop3_proto::server::{
    AuthRequest, BodyFlow, Event, Greeting, LoginError, MessageInfo, ServerConfig, ServerSession,
    Snapshot,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// What the test server does.
#[derive(Debug, Clone)]
pub struct TestServerConfig {
    /// The one user.
    pub user: String,
    /// Its password (also the APOP and CRAM-MD5 secret).
    pub password: String,
    /// The bearer token accepted for OAUTHBEARER and XOAUTH2.
    pub token: String,
    /// The session configuration (mechanisms, APOP, ...). `tls_available` is set from `tls`.
    pub session: ServerConfig,
    /// Certificate chain and PKCS#8 key (DER): STLS is offered, or with `implicit_tls` every
    /// connection starts with TLS.
    pub tls: Option<(Vec<Vec<u8>>, Vec<u8>)>,
    /// TLS from the first byte.
    pub implicit_tls: bool,
    /// Advertise PIPELINING (when false the line is cut out of CAPA replies).
    pub pipelining: bool,
    /// Answer every login with this error instead.
    pub login_error: Option<LoginError>,
}

impl Default for TestServerConfig {
    fn default() -> Self {
        Self {
            user: "alice".into(),
            password: "secret".into(),
            token: "token-123".into(),
            session: ServerConfig {
                plaintext_without_tls: true,
                apop: true,
                sasl_mechanisms: Mechanism::ALL.to_vec(),
                ..ServerConfig::default()
            },
            tls: None,
            implicit_tls: false,
            pipelining: true,
            login_error: None,
        }
    }
}

/// The server's state, shared with the test.
#[derive(Debug, Default)]
pub struct Mailbox {
    /// Messages and their UIDLs, in order.
    pub messages: Vec<(String, Vec<u8>)>,
    /// A session holds the lock.
    pub locked: bool,
    next_uid: u64,
}

impl Mailbox {
    /// Appends a message with a fresh UIDL.
    pub fn add(&mut self, message: Vec<u8>) -> String {
        self.next_uid += 1;
        let uid = format!("uid-{}", self.next_uid);
        self.messages.push((uid.clone(), message));
        uid
    }
}

/// A running test server; stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    /// The maildrop.
    pub mailbox: Arc<Mutex<Mailbox>>,
    /// Most commands the server has received in one read (to see pipelining).
    pub max_commands_per_read: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts on 127.0.0.1 with a free port, holding `messages`.
    pub async fn start(config: TestServerConfig, messages: Vec<Vec<u8>>) -> io::Result<Self> {
        Self::start_on("127.0.0.1:0", config, messages).await
    }

    /// Starts on `addr` (`"[::1]:0"`: the IPv6 loopback, a free port), holding `messages`.
    pub async fn start_on(
        addr: &str,
        config: TestServerConfig,
        messages: Vec<Vec<u8>>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut mailbox = Mailbox::default();
        for m in messages {
            mailbox.add(m);
        }
        let mailbox = Arc::new(Mutex::new(mailbox));
        let max_commands_per_read = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let acceptor = match &config.tls {
            Some((chain, key)) => {
                let chain = chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
                let key = PrivateKeyDer::try_from(key.clone()).map_err(io::Error::other)?;
                let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(io::Error::other)?;
                Some(TlsAcceptor::from(Arc::new(tls)))
            }
            None => None,
        };
        let shared = Shared {
            config: Arc::new(config),
            mailbox: mailbox.clone(),
            max_commands_per_read: max_commands_per_read.clone(),
            acceptor,
        };
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = shared.serve(socket).await;
                });
            }
        });
        Ok(Self { addr, mailbox, max_commands_per_read, connections, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The messages now in the maildrop.
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.mailbox.lock().unwrap().messages.clone()
    }
}

#[derive(Clone)]
struct Shared {
    config: Arc<TestServerConfig>,
    mailbox: Arc<Mutex<Mailbox>>,
    max_commands_per_read: Arc<AtomicUsize>,
    acceptor: Option<TlsAcceptor>,
}

/// Releases the maildrop lock when the connection ends, however it ends.
struct LockGuard(Arc<Mutex<Mailbox>>, bool);

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.1 {
            self.0.lock().unwrap().locked = false;
        }
    }
}

static CONNECTION: AtomicU64 = AtomicU64::new(0);

impl Shared {
    async fn serve(self, socket: TcpStream) -> io::Result<()> {
        let _ = socket.set_nodelay(true);
        let start = Instant::now();
        let n = CONNECTION.fetch_add(1, Ordering::Relaxed);
        let implicit = self.config.implicit_tls && self.acceptor.is_some();
        let greeting = Greeting {
            apop_timestamp: format!("<{n}.{}@test.example>", std::process::id()),
            sasl_nonce: format!("nonce{n}x{}", std::process::id()),
            hostname: "test.example".into(),
            tls_active: implicit,
        };
        let mut config = self.config.session.clone();
        config.tls_available = self.acceptor.is_some();
        let mut session = ServerSession::new(config, greeting, start.elapsed());
        let mut stream = if implicit {
            let tls = self.acceptor.as_ref().expect("checked").accept(socket).await?;
            ServerStream::Tls(Box::new(tls))
        } else {
            ServerStream::Plain(socket)
        };
        // Index-aligned copy of the messages this session's snapshot holds.
        let mut snapshot: Vec<(String, Vec<u8>)> = Vec::new();
        let mut lock = LockGuard(self.mailbox.clone(), false);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            self.write_out(&mut session, &mut stream).await?;
            while let Some(event) = session.poll_event() {
                match event {
                    Event::StartTls => {
                        self.write_out(&mut session, &mut stream).await?;
                        let Some(acceptor) = &self.acceptor else { return Ok(()) };
                        let ServerStream::Plain(plain) =
                            std::mem::replace(&mut stream, ServerStream::Upgrading)
                        else {
                            return Ok(());
                        };
                        stream = ServerStream::Tls(Box::new(acceptor.accept(plain).await?));
                        session.tls_established()?;
                    }
                    Event::RetrieveBody { index, .. } => {
                        let body = snapshot[index].1.clone();
                        for piece in body.chunks(8192) {
                            while !session.wants_body_data() {
                                self.write_out(&mut session, &mut stream).await?;
                            }
                            if session.body_data(piece)? == BodyFlow::Done {
                                break;
                            }
                        }
                        session.body_end()?;
                    }
                    other => self.answer(&mut session, other, &mut snapshot, &mut lock),
                }
                self.write_out(&mut session, &mut stream).await?;
            }
            if session.is_closed() {
                self.write_out(&mut session, &mut stream).await?;
                let _ = stream.shutdown().await;
                return Ok(());
            }
            let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(()),
                Ok(Ok(n)) => n,
            };
            let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
            self.max_commands_per_read.fetch_max(lines, Ordering::Relaxed);
            session.handle_input(&buf[..n], start.elapsed());
        }
    }

    async fn write_out(
        &self,
        session: &mut ServerSession,
        stream: &mut ServerStream,
    ) -> io::Result<()> {
        loop {
            let out = session.take_output();
            if out.is_empty() {
                return stream.flush().await;
            }
            if self.config.pipelining {
                stream.write_all(&out).await?;
            } else {
                let text = out.to_vec();
                let cut = b"\r\nPIPELINING\r\n";
                match text.windows(cut.len()).position(|w| w == cut) {
                    Some(at) => {
                        stream.write_all(&text[..at + 2]).await?;
                        stream.write_all(&text[at + cut.len()..]).await?;
                    }
                    None => stream.write_all(&text).await?,
                }
            }
        }
    }

    fn answer(
        &self,
        session: &mut ServerSession,
        event: Event,
        snapshot: &mut Vec<(String, Vec<u8>)>,
        lock: &mut LockGuard,
    ) {
        let config = &self.config;
        match event {
            Event::Authenticate(request) => {
                let secret = config.password.as_bytes();
                let ok = request.username() == config.user
                    && match &request {
                        AuthRequest::Bearer { token, .. } => *token.expose() == config.token,
                        AuthRequest::Verified { .. } => true,
                        _ => {
                            request.password_matches(secret)
                                || request.apop_matches(secret)
                                || request.cram_md5_matches(secret)
                        }
                    };
                let mut mailbox = self.mailbox.lock().unwrap();
                let result = if let Some(error) = config.login_error {
                    Err(error)
                } else if !ok {
                    Err(LoginError::BadCredentials)
                } else if mailbox.locked {
                    Err(LoginError::InUse)
                } else {
                    mailbox.locked = true;
                    lock.1 = true;
                    *snapshot = mailbox.messages.clone();
                    Ok(())
                };
                drop(mailbox);
                match result {
                    Ok(()) => {
                        let infos = snapshot
                            .iter()
                            .map(|(uid, m)| {
                                MessageInfo::new(pop3_proto::dot::wire_size(m), uid.clone())
                                    .expect("valid uid")
                            })
                            .collect();
                        let _ = session.login_accepted(Snapshot::new(infos));
                    }
                    Err(e) => {
                        let _ = session.login_rejected(e);
                    }
                }
            }
            Event::SaslFailed { .. } => {
                let _ = session.login_rejected(LoginError::BadCredentials);
            }
            Event::ScramKeysNeeded { username } => {
                let keys = (username == config.user)
                    .then(|| ScramKeys::from_password(config.password.as_bytes(), b"salt", 4096));
                let _ = session.scram_keys(keys);
            }
            Event::Commit { deleted } => {
                let mut mailbox = self.mailbox.lock().unwrap();
                let gone: Vec<&str> = deleted.iter().map(|&i| snapshot[i].0.as_str()).collect();
                mailbox.messages.retain(|(uid, _)| !gone.contains(&uid.as_str()));
                mailbox.locked = false;
                lock.1 = false;
                drop(mailbox);
                let _ = session.commit_done(Ok(()));
            }
            Event::StartTls | Event::RetrieveBody { .. } => {}
        }
    }
}

/// The server's socket, plain or TLS.
enum ServerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Upgrading,
}

impl ServerStream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
            Self::Upgrading => Ok(0),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(buf).await,
            Self::Tls(s) => s.write_all(buf).await,
            Self::Upgrading => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::Tls(s) => s.flush().await,
            Self::Upgrading => Ok(()),
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
            Self::Upgrading => Ok(()),
        }
    }
}

/// A test certificate authority and a server certificate it issued for `localhost`,
/// `127.0.0.1` and `::1`, generated at run time (nothing secret is ever committed).
#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server certificate, DER.
    pub cert_der: Vec<u8>,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// The server key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The server key, PEM.
    pub key_pem: String,
}

impl TestCa {
    /// Generates a CA and a server certificate.
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "pop3 test CA");
        let ca_key = KeyPair::generate().expect("key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
        let key = KeyPair::generate().expect("key");
        let names = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).to_vec();
        let params = CertificateParams::new(names).expect("params");
        let cert = params.signed_by(&key, &ca).expect("certificate");
        Self {
            ca_der: ca.der().to_vec(),
            ca_pem: ca.pem(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The chain and key as [`TestServerConfig::tls`] wants them.
    pub fn server_tls(&self) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
        Some((vec![self.cert_der.clone()], self.key_der.clone()))
    }
}

/// When a [`SelfSigned`] certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 1975 to 4096 (rcgen's default).
    Now,
    /// During 2000 only.
    Expired,
    /// From 2090 on.
    NotYet,
}

/// A self-signed certificate made the way `openssl req -x509` makes one: its own issuer, and
/// `CA:TRUE`; generated at run time.
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl SelfSigned {
    /// A certificate for `common_name` and `subject_alt_names` (none: the common name alone,
    /// as `openssl req -x509 -subj /CN=NAME` without `-addext subjectAltName=...` makes it).
    pub fn generate(common_name: &str, subject_alt_names: &[&str], validity: Validity) -> Self {
        use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, IsCa, KeyPair};
        let names: Vec<String> = subject_alt_names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        match validity {
            Validity::Now => {}
            Validity::Expired => {
                params.not_before = date_time_ymd(2000, 1, 1);
                params.not_after = date_time_ymd(2001, 1, 1);
            }
            Validity::NotYet => params.not_before = date_time_ymd(2090, 1, 1),
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("certificate");
        Self { cert_der: cert.der().to_vec(), cert_pem: cert.pem(), key_der: key.serialize_der() }
    }

    /// The certificate and key as [`TestServerConfig::tls`] wants them.
    pub fn server_tls(&self) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
        Some((vec![self.cert_der.clone()], self.key_der.clone()))
    }
}
