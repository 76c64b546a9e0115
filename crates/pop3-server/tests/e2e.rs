//! End to end, in process: a real TCP client against the server on 127.0.0.1 random ports,
//! with real Maildirs in a temporary directory.

#![forbid(unsafe_code)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use pop3_proto::sasl::SaslClient;
use pop3_server::{
    Config, ListenerKind, MailLocation, Offers, PasswdFile, PenaltyLimits, Server, UserInfo,
};
use pop3_storage::Envelope;
use pop3_testkit::transmitted;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const STEP: Duration = Duration::from_secs(10);

struct Fixture {
    server: Server,
    plain: SocketAddr,
    tls: SocketAddr,
    root: PathBuf,
    location: MailLocation,
    cert_der: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn messages() -> Vec<Vec<u8>> {
    vec![
        b"Subject: one\n\nfirst message\n.leading dot\n".to_vec(),
        b"Subject: two\r\n\r\nsecond\r\n".to_vec(),
        // 300 KiB, to stream through several chunks.
        {
            let mut big = b"Subject: big\n\n".to_vec();
            for i in 0..6000 {
                big.extend_from_slice(
                    format!("line {i:05} of the big message, 40 octets.\n").as_bytes(),
                );
            }
            big
        },
    ]
}

async fn fixture(config: Config) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail");
    let location = MailLocation::maildir(format!("{}/%u", root.display()));
    for m in messages() {
        location.deliver(&UserInfo::new("alice"), &mut &m[..], &Envelope::default()).unwrap();
    }
    let users = PasswdFile::parse("alice:{PLAIN}secret\nbob:{PLAIN}hunter2\n").unwrap();
    let server = Server::new(config, Arc::new(location.clone()), Arc::new(users));
    let common::Listening { plain, tls, cert_der } = common::listen(&server).await;
    Fixture { server, plain, tls, root, location, cert_der, _dir: dir }
}

/// [`quick`] with these failure delay and penalty pace (initial, capped), in milliseconds.
fn paced(failure_delay: u64, initial: u64, max: u64) -> Config {
    Config {
        auth_failure_delay: Duration::from_millis(failure_delay),
        penalties: PenaltyLimits {
            initial: Duration::from_millis(initial),
            max: Duration::from_millis(max),
            ..PenaltyLimits::default()
        },
        ..quick()
    }
}

/// Short delays and penalties (the tests' clients all come from 127.0.0.1), and every
/// mechanism offered (the users have PLAIN passwords).
fn quick() -> Config {
    Config {
        auth_failure_delay: Duration::from_millis(300),
        penalties: PenaltyLimits {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            ..PenaltyLimits::default()
        },
        offers: Offers { apop: true, cram_md5: true, scram_sha256: true, ..Offers::default() },
        ..Config::default()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Client {
    io: BufReader<Box<dyn Io>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self { io: BufReader::new(Box::new(tcp)) }
    }

    async fn connect_tls(addr: SocketAddr, cert_der: &[u8]) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self { io: BufReader::new(Box::new(tls_client(Box::new(tcp), cert_der).await)) }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(STEP, self.io.read_line(&mut line))
            .await
            .expect("reply in time")
            .unwrap();
        assert!(n > 0, "connection closed while waiting for a line");
        assert!(line.ends_with("\r\n"), "{line:?}");
        line.truncate(line.len() - 2);
        line
    }

    async fn send(&mut self, command: &str) {
        let io = self.io.get_mut();
        io.write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
        io.flush().await.unwrap();
    }

    async fn cmd(&mut self, command: &str) -> String {
        self.send(command).await;
        self.line().await
    }

    /// The lines of a multi-line reply after its status line, undotted, as raw CRLF bytes.
    async fn body(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = tokio::time::timeout(STEP, self.io.read_until(b'\n', &mut line))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed inside a multi-line reply");
            if line == b".\r\n" {
                return out;
            }
            let data = if line.starts_with(b".") { &line[1..] } else { &line[..] };
            out.extend_from_slice(data);
        }
    }

    async fn login(&mut self, user: &str, pass: &str) -> String {
        assert!(self.cmd(&format!("USER {user}")).await.starts_with("+OK"));
        self.cmd(&format!("PASS {pass}")).await
    }

    /// True if the server closes the connection (EOF) within the step time.
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(tokio::time::timeout(STEP, self.io.read_to_end(&mut rest)).await, Ok(Ok(_)))
    }

    async fn stls(self, cert_der: &[u8]) -> Self {
        assert!(self.io.buffer().is_empty());
        let inner = self.io.into_inner();
        Self { io: BufReader::new(Box::new(tls_client(inner, cert_der).await)) }
    }
}

async fn tls_client(
    io: Box<dyn Io>,
    cert_der: &[u8],
) -> tokio_rustls::client::TlsStream<Box<dyn Io>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der.to_vec().into()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(ServerName::try_from("localhost").unwrap(), io).await.unwrap()
}

fn maildir_count(root: &Path, user: &str) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| std::fs::read_dir(root.join(user).join(d)).map_or(0, |r| r.count()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_command_and_quit_commits() {
    let fx = fixture(quick()).await;
    let mut c = Client::connect(fx.plain).await;
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.cmd("CAPA").await.starts_with("+OK"));
    let capa = String::from_utf8(c.body().await).unwrap();
    for cap in ["STLS", "USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "SASL"]
    {
        assert!(capa.contains(cap), "{cap} in {capa}");
    }
    assert!(c.cmd("STAT").await.starts_with("-ERR"), "STAT before login");
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    let stored = messages();
    let total: usize = stored.iter().map(|m| transmitted(m).len()).sum();
    assert_eq!(c.cmd("STAT").await, format!("+OK 3 {total}"));
    assert!(c.cmd("LIST").await.starts_with("+OK"));
    let list = String::from_utf8(c.body().await).unwrap();
    for (i, m) in stored.iter().enumerate() {
        assert!(list.contains(&format!("{} {}\r\n", i + 1, transmitted(m).len())), "{list}");
    }
    assert_eq!(c.cmd("LIST 2").await, format!("+OK 2 {}", transmitted(&stored[1]).len()));
    assert!(c.cmd("UIDL").await.starts_with("+OK"));
    let uidl = String::from_utf8(c.body().await).unwrap();
    assert_eq!(uidl.lines().count(), 3);
    for (i, m) in stored.iter().enumerate() {
        assert!(c.cmd(&format!("RETR {}", i + 1)).await.starts_with("+OK"));
        assert_eq!(c.body().await, transmitted(m), "message {}", i + 1);
    }
    assert!(c.cmd("TOP 1 1").await.starts_with("+OK"));
    assert_eq!(c.body().await, b"Subject: one\r\n\r\nfirst message\r\n");
    assert!(c.cmd("TOP 3 0").await.starts_with("+OK"));
    assert_eq!(c.body().await, b"Subject: big\r\n\r\n");
    assert!(c.cmd("NOOP").await.starts_with("+OK"));
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("RETR 1").await.starts_with("-ERR"), "deleted");
    assert!(c.cmd("RSET").await.starts_with("+OK"));
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    c.body().await;
    assert!(c.cmd("DELE 2").await.starts_with("+OK"));
    assert!(c.cmd("RETR 9").await.starts_with("-ERR"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    assert!(c.closed().await);
    assert_eq!(maildir_count(&fx.root, "alice"), 2, "exactly message 2 deleted");
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    assert!(c.cmd("UIDL").await.starts_with("+OK"));
    let after = String::from_utf8(c.body().await).unwrap();
    let lines: Vec<_> = uidl.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert!(after.contains(lines[0]) && !after.contains(lines[1]) && after.contains(lines[2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_are_answered_in_order() {
    let fx = fixture(quick()).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    c.send("USER alice\r\nPASS secret\r\nSTAT\r\nRETR 2\r\nNOOP\r\nQUIT").await;
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.line().await.starts_with("+OK 3 "));
    assert!(c.line().await.starts_with("+OK"));
    assert_eq!(c.body().await, transmitted(&messages()[1]));
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_deletes_nothing_and_releases_the_lock() {
    let fx = fixture(quick()).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    let mut second = Client::connect(fx.plain).await;
    second.line().await;
    let in_use = second.login("alice", "secret").await;
    assert!(in_use.starts_with("-ERR [IN-USE]"), "{in_use}");
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("DELE 2").await.starts_with("+OK"));
    drop(c);
    let deadline = Instant::now() + STEP;
    loop {
        let mut again = Client::connect(fx.plain).await;
        again.line().await;
        let reply = again.login("alice", "secret").await;
        if reply.starts_with("+OK") {
            assert!(again.cmd("STAT").await.starts_with("+OK 3 "));
            break;
        }
        assert!(Instant::now() < deadline, "lock not released: {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(maildir_count(&fx.root, "alice"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_is_delayed_without_blocking_others() {
    let fx =
        fixture(Config { auth_failure_delay: Duration::from_millis(3000), ..Config::default() })
            .await;
    let mut bad = Client::connect(fx.plain).await;
    bad.line().await;
    bad.cmd("USER alice").await;
    let started = Instant::now();
    bad.send("PASS wrong").await;
    // Meanwhile another session logs in at once.
    let mut good = Client::connect(fx.plain).await;
    good.line().await;
    assert!(good.login("bob", "hunter2").await.starts_with("+OK"));
    assert!(started.elapsed() < Duration::from_millis(2500), "the other session waited");
    let reply = bad.line().await;
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
    // tokio timers have millisecond ticks: allow for rounding.
    assert!(started.elapsed() >= Duration::from_millis(2950), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_user_names_are_failed_logins() {
    let fx = fixture(quick()).await;
    for name in ["../alice", "..", "a/b", ".alice", "x%2e"] {
        let mut c = Client::connect(fx.plain).await;
        c.line().await;
        let user = c.cmd(&format!("USER {name}")).await;
        if user.starts_with("+OK") {
            let reply = c.cmd("PASS secret").await;
            assert!(reply.starts_with("-ERR"), "{name}: {reply}");
        }
    }
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    // AUTH PLAIN with a traversal name, base64 of "\0../alice\0secret".
    let blob = base64::engine::general_purpose::STANDARD.encode(b"\0../alice\0secret");
    assert!(c.cmd(&format!("AUTH PLAIN {blob}")).await.starts_with("-ERR"));
    let parent = fx.root.parent().unwrap();
    let names: Vec<_> =
        std::fs::read_dir(parent).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("mail")],
        "nothing created outside the mail root"
    );
    let inside: Vec<_> =
        std::fs::read_dir(&fx.root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(inside, vec![std::ffi::OsString::from("alice")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stls_then_login() {
    let fx = fixture(quick()).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    c.cmd("CAPA").await;
    assert!(String::from_utf8(c.body().await).unwrap().contains("STLS"));
    assert!(c.cmd("STLS").await.starts_with("+OK"));
    let mut c = c.stls(&fx.cert_der).await;
    c.cmd("CAPA").await;
    let capa = String::from_utf8(c.body().await).unwrap();
    assert!(!capa.contains("STLS"), "no STLS under TLS: {capa}");
    assert!(c.cmd("STLS").await.starts_with("-ERR"));
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    assert!(c.cmd("RETR 3").await.starts_with("+OK"));
    assert_eq!(c.body().await, transmitted(&messages()[2]));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_scram() {
    let fx = fixture(quick()).await;
    let mut c = Client::connect_tls(fx.tls, &fx.cert_der).await;
    assert!(c.line().await.starts_with("+OK"));
    c.cmd("CAPA").await;
    let capa = String::from_utf8(c.body().await).unwrap();
    assert!(capa.contains("SCRAM-SHA-256") && !capa.contains("STLS"), "{capa}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sasl = SaslClient::scram_sha256("alice", "secret", "clientnonce0123456789");
    let first = b64.encode(sasl.initial_response().unwrap().expose());
    let mut reply = c.cmd(&format!("AUTH SCRAM-SHA-256 {first}")).await;
    while let Some(challenge) = reply.strip_prefix("+ ") {
        let response = sasl.step(&b64.decode(challenge).unwrap()).unwrap();
        reply = c.cmd(&b64.encode(response.expose())).await;
    }
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(sasl.server_verified());
    assert!(c.cmd("STAT").await.starts_with("+OK 3 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_without_update() {
    let config = Config {
        idle_timeout_authorization: Duration::from_millis(500),
        idle_timeout_transaction: Duration::from_millis(2000),
        ..quick()
    };
    let fx = fixture(config).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    let reply = c.line().await;
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert!(c.closed().await);
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.line().await.starts_with("-ERR"), "autologout");
    assert!(c.closed().await);
    assert_eq!(maildir_count(&fx.root, "alice"), 3, "no UPDATE after a timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_lines_and_bad_commands() {
    let fx = fixture(Config { max_bad_commands: 3, ..quick() }).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    let long = "X".repeat(100_000);
    assert!(c.cmd(&format!("USER {long}")).await.starts_with("-ERR"));
    assert!(c.cmd("NOOP").await.starts_with("-ERR"), "NOOP is illegal before login");
    let reply = c.cmd("BOGUS").await;
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert!(c.closed().await, "closed after 3 bad commands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_limit() {
    let mut config = quick();
    config.limits.per_ip = 2;
    let fx = fixture(config).await;
    let mut a = Client::connect(fx.plain).await;
    assert!(a.line().await.starts_with("+OK"));
    let mut b = Client::connect(fx.plain).await;
    assert!(b.line().await.starts_with("+OK"));
    let mut c = Client::connect(fx.plain).await;
    let refused = c.line().await;
    assert!(refused.starts_with("-ERR [SYS/TEMP]"), "{refused}");
    assert!(c.closed().await);
    a.cmd("QUIT").await;
    assert!(a.closed().await);
    let deadline = Instant::now() + STEP;
    loop {
        let mut d = Client::connect(fx.plain).await;
        if d.line().await.starts_with("+OK") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_sessions_without_update() {
    let fx = fixture(quick()).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    tokio::time::timeout(STEP, fx.server.shutdown()).await.expect("shutdown finishes");
    assert_eq!(fx.server.active_sessions(), 0);
    let reply = c.line().await;
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert!(c.closed().await);
    assert_eq!(maildir_count(&fx.root, "alice"), 3);
    assert!(TcpStream::connect(fx.plain).await.is_err(), "listener closed");
    // Delivery still works on the same location (the server is only the reader).
    fx.location.deliver(&UserInfo::new("alice"), &mut &b"x\n"[..], &Envelope::default()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_passwords_need_tls_unless_trusted() {
    // As if the client were remote: loopback not trusted, plaintext not allowed.
    let fx = fixture(Config { trust_loopback: false, ..quick() }).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    c.cmd("CAPA").await;
    let capa = String::from_utf8(c.body().await).unwrap();
    assert!(capa.contains("STLS"), "{capa}");
    assert!(!capa.lines().any(|l| l == "USER"), "USER not offered without TLS: {capa}");
    let sasl = capa.lines().find(|l| l.starts_with("SASL")).unwrap_or_default();
    assert!(!sasl.contains("PLAIN") && !sasl.contains("LOGIN"), "{sasl}");
    let user = c.cmd("USER alice").await;
    if user.starts_with("+OK") {
        assert!(c.cmd("PASS secret").await.starts_with("-ERR"), "PASS refused without TLS");
    }
    let blob = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0secret");
    assert!(c.cmd(&format!("AUTH PLAIN {blob}")).await.starts_with("-ERR"));
    assert!(c.cmd("STLS").await.starts_with("+OK"));
    let mut c = c.stls(&fx.cert_der).await;
    c.cmd("CAPA").await;
    let capa = String::from_utf8(c.body().await).unwrap();
    assert!(capa.lines().any(|l| l == "USER"), "USER offered under TLS: {capa}");
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apop_cram_md5_auth_login_and_state_rules() {
    let fx = fixture(quick()).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    // APOP (every user has a PLAIN password, so it is offered).
    let mut c = Client::connect(fx.plain).await;
    let greeting = c.line().await;
    let start = greeting.find('<').expect("APOP timestamp in the greeting");
    let timestamp = &greeting[start..=greeting.rfind('>').unwrap()];
    for command in ["STAT", "LIST", "RETR 1", "DELE 1", "RSET", "UIDL", "TOP 1 0", "NOOP"] {
        assert!(c.cmd(command).await.starts_with("-ERR"), "{command} before login");
    }
    let wrong = pop3_proto::sasl::apop_digest(timestamp, b"wrong");
    assert!(c.cmd(&format!("APOP alice {wrong}")).await.starts_with("-ERR [AUTH]"));
    let digest = pop3_proto::sasl::apop_digest(timestamp, b"secret");
    assert!(c.cmd(&format!("APOP alice {digest}")).await.starts_with("+OK"));
    for command in ["USER alice", "PASS secret", "STLS", "AUTH PLAIN"] {
        assert!(c.cmd(command).await.starts_with("-ERR"), "{command} after login");
    }
    assert!(c.cmd("RETR 4").await.starts_with("-ERR"), "no such message");
    assert!(c.cmd("RETR 0").await.starts_with("-ERR"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    // CRAM-MD5.
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    let challenge = c.cmd("AUTH CRAM-MD5").await;
    let challenge = b64.decode(challenge.strip_prefix("+ ").unwrap()).unwrap();
    let digest = pop3_proto::sasl::cram_md5_digest(b"hunter2", &challenge);
    let reply = c.cmd(&b64.encode(format!("bob {digest}"))).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(c.cmd("STAT").await.starts_with("+OK 0 0"), "bob has no mail yet");
    c.cmd("QUIT").await;
    // AUTH LOGIN, and QUIT in AUTHORIZATION commits nothing.
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.cmd("AUTH LOGIN").await.starts_with("+ "));
    assert!(c.cmd(&b64.encode("alice")).await.starts_with("+ "));
    assert!(c.cmd(&b64.encode("secret")).await.starts_with("+OK"));
    assert!(c.cmd("DELE 3").await.starts_with("+OK"));
    assert!(c.cmd("DELE 3").await.starts_with("-ERR"), "already deleted");
    assert!(c.cmd("LIST 3").await.starts_with("-ERR"), "deleted messages are not listed");
    assert!(c.cmd("STAT").await.starts_with("+OK 2 "));
    drop(c);
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    assert_eq!(maildir_count(&fx.root, "alice"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbox_maildrops() {
    let dir = tempfile::tempdir().unwrap();
    let location = MailLocation::mbox(format!("{}/%u", dir.path().display()));
    let stored = messages();
    for m in &stored {
        location.deliver(&UserInfo::new("alice"), &mut &m[..], &Envelope::default()).unwrap();
    }
    let users = PasswdFile::parse("alice:{PLAIN}secret\n").unwrap();
    let server = Server::new(quick(), Arc::new(location), Arc::new(users));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener, ListenerKind::Plain).await }
    });
    let mut c = Client::connect(addr).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    for (i, m) in stored.iter().enumerate() {
        assert!(c.cmd(&format!("RETR {}", i + 1)).await.starts_with("+OK"));
        assert_eq!(c.body().await, transmitted(m));
    }
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    let mut c = Client::connect(addr).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    assert_eq!(c.body().await, transmitted(&stored[1]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_slow_reader() {
    let fx = fixture(quick()).await;
    let big =
        vec![b'x'; 100].into_iter().chain([b'\n']).cycle().take(16 << 20).collect::<Vec<u8>>();
    fx.location.deliver(&UserInfo::new("bob"), &mut &big[..], &Envelope::default()).unwrap();
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.login("bob", "hunter2").await.starts_with("+OK"));
    c.send("RETR 1").await; // and never read the 16 MiB reply
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    tokio::time::timeout(STEP, fx.server.shutdown()).await.expect("shutdown is not held up");
    assert!(started.elapsed() < STEP);
    assert_eq!(maildir_count(&fx.root, "bob"), 1);
}

/// A maildrop whose commit always fails (as when descriptors have run out), recording
/// whether commit was called and whether the maildrop was released (dropped).
#[derive(Debug)]
struct FailingCommit {
    infos: Vec<pop3_storage::MessageInfo>,
    committed: Arc<std::sync::atomic::AtomicUsize>,
    released: Arc<std::sync::atomic::AtomicUsize>,
}

impl pop3_storage::Maildrop for FailingCommit {
    fn is_local(&self) -> bool {
        true // in memory: an empty commit must need no storage call at all
    }

    fn messages(&self) -> &[pop3_storage::MessageInfo] {
        &self.infos
    }

    fn read_message(&self, _index: usize) -> pop3_storage::Result<pop3_storage::MessageReader<'_>> {
        Ok(pop3_storage::MessageReader::new(Box::new(&b"Subject: x\r\n\r\nbody\r\n"[..])))
    }

    fn commit(&mut self, _deleted: &[usize]) -> pop3_storage::Result<()> {
        self.committed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(pop3_storage::Error::Io {
            op: "open",
            path: "new".into(),
            source: std::io::Error::from_raw_os_error(24), // EMFILE
        })
    }
}

impl Drop for FailingCommit {
    fn drop(&mut self) {
        self.released.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct FailingMailboxes {
    committed: Arc<std::sync::atomic::AtomicUsize>,
    released: Arc<std::sync::atomic::AtomicUsize>,
}

impl pop3_server::Mailboxes for FailingMailboxes {
    fn open(&self, _user: &UserInfo) -> pop3_storage::Result<Box<dyn pop3_storage::Maildrop>> {
        Ok(Box::new(FailingCommit {
            infos: vec![pop3_storage::MessageInfo { size: 21, uidl: "u1".into() }],
            committed: Arc::clone(&self.committed),
            released: Arc::clone(&self.released),
        }))
    }

    /// Not delivered to in these tests: an in-memory sink.
    fn sink(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn pop3_storage::sink::Sink>> {
        use pop3_storage::Backend;
        pop3_storage::MemoryStore::new().sink(&pop3_storage::User::new(&*user.name))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_without_deletions_needs_no_storage() {
    use std::sync::atomic::Ordering::SeqCst;
    let mailboxes = Arc::new(FailingMailboxes::default());
    let users = PasswdFile::parse("alice:{PLAIN}secret\n").unwrap();
    let server = Server::new(quick(), mailboxes.clone(), Arc::new(users));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener, ListenerKind::Plain).await });

    // Nothing deleted (even after a DELE undone by RSET): +OK, no commit, maildrop released.
    let mut c = Client::connect(addr).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    c.body().await;
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("RSET").await.starts_with("+OK"));
    let quit = c.cmd("QUIT").await;
    assert!(quit.starts_with("+OK"), "{quit}");
    assert!(c.closed().await);
    assert_eq!(mailboxes.committed.load(SeqCst), 0, "no storage call for an empty commit");
    assert_eq!(mailboxes.released.load(SeqCst), 1, "the maildrop was released");

    // Something deleted: the failing commit is reported.
    let mut c = Client::connect(addr).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    let quit = c.cmd("QUIT").await;
    assert!(quit.starts_with("-ERR [SYS/TEMP]"), "{quit}");
    assert_eq!(mailboxes.committed.load(SeqCst), 1);
    server.shutdown().await;
}

/// Messages whose listed sizes need not match their contents.
#[derive(Debug)]
struct ListedDrop {
    infos: Vec<pop3_storage::MessageInfo>,
    bodies: Vec<Vec<u8>>,
}

impl pop3_storage::Maildrop for ListedDrop {
    fn is_local(&self) -> bool {
        true // in memory: exercises the server's inline read
    }

    fn messages(&self) -> &[pop3_storage::MessageInfo] {
        &self.infos
    }

    fn read_message(&self, index: usize) -> pop3_storage::Result<pop3_storage::MessageReader<'_>> {
        Ok(pop3_storage::MessageReader::new(Box::new(&self.bodies[index][..])))
    }

    fn commit(&mut self, _deleted: &[usize]) -> pop3_storage::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct ListedMailboxes(Vec<(u64, Vec<u8>)>);

impl pop3_server::Mailboxes for ListedMailboxes {
    fn open(&self, _user: &UserInfo) -> pop3_storage::Result<Box<dyn pop3_storage::Maildrop>> {
        Ok(Box::new(ListedDrop {
            infos: (0..self.0.len())
                .map(|i| pop3_storage::MessageInfo { size: self.0[i].0, uidl: format!("u{i}") })
                .collect(),
            bodies: self.0.iter().map(|(_, body)| body.clone()).collect(),
        }))
    }

    /// Not delivered to in these tests: an in-memory sink.
    fn sink(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn pop3_storage::sink::Sink>> {
        use pop3_storage::Backend;
        pop3_storage::MemoryStore::new().sink(&pop3_storage::User::new(&*user.name))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retr_whole_small_streamed_large_and_mislisted_messages() {
    let line = |i: usize| format!("line {i:05} of a message, 32 octets\r\n").into_bytes();
    let body = |lines: usize| -> Vec<u8> {
        let mut m = b"Subject: s\r\n\r\n".to_vec();
        (0..lines).for_each(|i| m.extend(line(i)));
        m
    };
    let exact = |b: Vec<u8>| (b.len() as u64, b);
    let messages = vec![
        exact(body(100)),            // small: read in one call
        exact(Vec::new()),           // empty
        exact(body(64 * 1024 / 32)), // just over 64 KiB: streamed
        (10, body(3000)),            // listed as small but longer: streamed after all
        exact(b"Subject: x\r\n\r\n.dot\r\n".to_vec()),
    ];
    let mailboxes = Arc::new(ListedMailboxes(messages.clone()));
    let users = PasswdFile::parse("alice:{PLAIN}secret\n").unwrap();
    let server = Server::new(quick(), mailboxes, Arc::new(users));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener, ListenerKind::Plain).await });
    let mut c = Client::connect(addr).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    for (i, (size, stored)) in messages.iter().enumerate() {
        let reply = c.cmd(&format!("RETR {}", i + 1)).await;
        assert_eq!(reply, format!("+OK {size} octets"));
        assert_eq!(c.body().await, *stored, "message {}", i + 1);
    }
    assert!(c.cmd("TOP 4 2").await.starts_with("+OK"));
    assert_eq!(c.body().await, [b"Subject: s\r\n\r\n".to_vec(), line(0), line(1)].concat());
    // Pipelined: the replies come in order.
    c.send("RETR 1\r\nRETR 5\r\nNOOP").await;
    assert!(c.line().await.starts_with("+OK"));
    assert_eq!(c.body().await, messages[0].1);
    assert!(c.line().await.starts_with("+OK"));
    assert_eq!(c.body().await, messages[4].1);
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalties_grow_across_connections_and_apply_before_the_check() {
    let config = paced(50, 400, 1600);
    let fx = fixture(config).await;
    // Wrong guesses, each on a new connection: after k failures, attempts from this address
    // are checked at least pace(k) apart (400, 800, 1600 ms, capped), whatever the connection.
    let mut answered = Vec::new();
    for _ in 0..5 {
        let mut c = Client::connect(fx.plain).await;
        c.line().await;
        c.cmd("USER alice").await;
        assert!(c.cmd("PASS wrong").await.starts_with("-ERR [AUTH]"));
        answered.push(Instant::now());
    }
    let gaps: Vec<Duration> = answered.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, min) in [0u64, 400, 800, 1600].into_iter().enumerate() {
        assert!(gaps[i] >= Duration::from_millis(min.saturating_sub(20)), "gap {i}: {gaps:?}");
    }
    assert!(gaps[3] < Duration::from_millis(1600 + 1500), "capped: {gaps:?}");
    // Parallel connections do not guess faster: two at once are checked a pace apart.
    let parallel = |n: u8| {
        let addr = fx.plain;
        tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.line().await;
            c.cmd(&format!("USER nobody{n}")).await;
            let reply = c.cmd("PASS wrong").await;
            (reply, Instant::now())
        })
    };
    let (a, b) = (parallel(1), parallel(2));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(a.0.starts_with("-ERR [AUTH]") && b.0.starts_with("-ERR [AUTH]"), "{a:?} {b:?}");
    let apart = if a.1 > b.1 { a.1 - b.1 } else { b.1 - a.1 };
    assert!(apart >= Duration::from_millis(1500), "checked {apart:?} apart");
    // The right password from the same address waits its turn too (before the check), then
    // logs in; as this address also failed for other users, its count stays.
    for _ in 0..2 {
        let mut c = Client::connect(fx.plain).await;
        c.line().await;
        let started = Instant::now();
        assert!(c.login("alice", "secret").await.starts_with("+OK"));
        assert!(started.elapsed() >= Duration::from_millis(1000), "{:?}", started.elapsed());
        c.cmd("QUIT").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_then_the_right_password_clears_the_count() {
    let fx = fixture(quick()).await;
    for _ in 0..2 {
        let mut c = Client::connect(fx.plain).await;
        c.line().await;
        c.cmd("USER alice").await;
        assert!(c.cmd("PASS typo").await.starts_with("-ERR [AUTH]"));
    }
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    c.cmd("QUIT").await;
    // All failures were alice's own: her success cleared the address and the user.
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    let started = Instant::now();
    assert!(c.login("alice", "secret").await.starts_with("+OK"));
    assert!(started.elapsed() < Duration::from_millis(90), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_auth_is_a_failed_login() {
    let config = Config { auth_failure_delay: Duration::from_millis(700), ..quick() };
    let fx = fixture(config).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    assert!(c.cmd("AUTH SCRAM-SHA-256").await.starts_with("+ "));
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = c.cmd(&b64.encode("n,,n=alice,r=abcdefghijklmnopqrstuvwx")).await;
    assert!(salt.starts_with("+ "), "{salt}");
    let started = Instant::now();
    let reply = c.cmd("*").await;
    assert_eq!(reply, "-ERR [AUTH] authentication cancelled");
    assert!(started.elapsed() >= Duration::from_millis(690), "{:?}", started.elapsed());
    // The third failure (two more cancels) closes the connection.
    for _ in 0..2 {
        c.cmd("AUTH PLAIN").await;
        c.cmd("*").await;
    }
    assert!(c.closed().await || c.line().await.contains("too many failed logins"));
}

/// The salt and iteration count a SCRAM exchange announces for `user`.
async fn scram_salt(addr: SocketAddr, user: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut c = Client::connect(addr).await;
    c.line().await;
    let first = b64.encode(format!("n,,n={user},r=abcdefghijklmnopqrstuvwx"));
    let reply = c.cmd(&format!("AUTH SCRAM-SHA-256 {first}")).await;
    let server_first = String::from_utf8(b64.decode(reply.strip_prefix("+ ").unwrap()).unwrap());
    let server_first = server_first.unwrap();
    c.cmd("*").await;
    // r=<nonce>,s=<salt>,i=<count>: the nonce differs per connection, the rest must not.
    server_first.split_once(",s=").unwrap().1.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_gives_unknown_users_a_stable_salt() {
    let fx = fixture(quick()).await;
    let unknown = scram_salt(fx.plain, "nosuchuser").await;
    assert_eq!(scram_salt(fx.plain, "nosuchuser").await, unknown, "same on every connection");
    let known = scram_salt(fx.plain, "alice").await;
    assert_eq!(scram_salt(fx.plain, "alice").await, known);
    assert_ne!(unknown, known);
    assert_eq!(unknown.len(), known.len(), "{unknown} vs {known}");
    assert_eq!(unknown.rsplit_once(",i=").unwrap().1, known.rsplit_once(",i=").unwrap().1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_from_one_address_are_all_greeted_by_default() {
    let fx = fixture(Config::default()).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut c = Client::connect(fx.plain).await;
        let greeting = c.line().await;
        assert!(greeting.starts_with("+OK"), "{greeting}");
        clients.push(c);
    }
    assert_eq!(fx.server.active_sessions(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mechanisms_are_offered_by_configuration_and_refused_per_user() {
    // Default: USER/PASS, PLAIN and LOGIN only, whatever the users' schemes.
    let fx = fixture(Config::default()).await;
    let mut c = Client::connect(fx.plain).await;
    assert!(!c.line().await.contains('<'), "no APOP timestamp by default");
    c.cmd("CAPA").await;
    let capa = String::from_utf8(c.body().await).unwrap();
    assert!(capa.contains("SASL PLAIN LOGIN\r\n"), "{capa}");
    // Offered, and a user whose hash cannot serve it fails that mechanism alone.
    let dir = tempfile::tempdir().unwrap();
    let location = MailLocation::maildir(format!("{}/%u", dir.path().display()));
    let hashed = pop3_server::hash_password(b"pw");
    let users = PasswdFile::parse(&format!("alice:{{PLAIN}}secret\ncarol:{hashed}\n")).unwrap();
    let server = Server::new(quick(), Arc::new(location), Arc::new(users));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener, ListenerKind::Plain).await }
    });
    let mut c = Client::connect(addr).await;
    c.line().await;
    assert!(cram_md5(&mut c, "carol", "pw").await.starts_with("-ERR [AUTH]"));
    assert!(cram_md5(&mut c, "alice", "secret").await.starts_with("+OK"));
    c.cmd("QUIT").await;
    let mut c = Client::connect(addr).await;
    c.line().await;
    assert!(c.login("carol", "pw").await.starts_with("+OK"), "carol logs in with a password");
}

/// A CRAM-MD5 login (RFC 2195); the final reply.
async fn cram_md5(c: &mut Client, user: &str, pw: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let reply = c.cmd("AUTH CRAM-MD5").await;
    let challenge = b64.decode(reply.strip_prefix("+ ").unwrap()).unwrap();
    let digest = pop3_proto::sasl::cram_md5_digest(pw.as_bytes(), &challenge);
    c.cmd(&b64.encode(format!("{user} {digest}"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_unchecked_but_not_instantly_and_closes_after_three() {
    let config = paced(300, 2000, 2000);
    let fx = fixture(config).await;
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    c.cmd("USER alice").await;
    assert!(c.cmd("PASS wrong").await.starts_with("-ERR [AUTH]"));
    // Five attempts fill this address's queue (four turns two seconds apart, the first two
    // seconds after that failure, at most eight seconds ahead; the fifth finds it full): it
    // stays full for two seconds, longer than the three refusals below take.
    let mut queued = Vec::new();
    for _ in 0..5 {
        let addr = fx.plain;
        queued.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.line().await;
            c.cmd("USER alice").await;
            c.send("PASS wrong").await;
            c
        }));
    }
    let mut queued_clients = Vec::new();
    for q in queued {
        queued_clients.push(q.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Now every attempt is refused unchecked, each after the failure delay, three per
    // connection at most.
    let mut c = Client::connect(fx.plain).await;
    c.line().await;
    for _ in 0..3 {
        c.cmd("USER alice").await;
        let started = Instant::now();
        let reply = c.cmd("PASS whatever").await;
        assert!(reply.starts_with("-ERR [SYS/TEMP]"), "{reply}");
        assert!(started.elapsed() >= Duration::from_millis(290), "{:?}", started.elapsed());
    }
    assert!(c.closed().await, "closed after three refusals");
    drop(queued_clients);
}
