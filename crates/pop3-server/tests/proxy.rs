//! The PROXY protocol behind a trusted proxy: the server on 127.0.0.1 trusts 127.0.0.1 only;
//! test clients speak for the "proxy" from 127.0.0.1 and for an untrusted host from 127.0.0.2
//! (Linux routes all of 127.0.0.0/8 to the loopback interface).

#![forbid(unsafe_code)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_proto::proxy::{ProxyHeader, Ssl, SslTlv, Tlv, Version, V2_SIGNATURE};
use pop3_server::{
    Config, ConnectionLimits, MailLocation, PasswdFile, PenaltyLimits, Server, UserInfo,
};
use pop3_storage::Envelope;
use pop3_testkit::transmitted;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

const STEP: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_millis(400);
const PENALTY: Duration = Duration::from_millis(800);
const MESSAGE: &[u8] = b"Subject: behind a proxy\n\nbody line\n.dot line\n";

struct Fixture {
    plain: SocketAddr,
    tls: SocketAddr,
    cert_der: Vec<u8>,
    _server: Server,
    _dir: tempfile::TempDir,
}

/// One connection per client address before login, so that which address a connection is
/// counted against shows; a failed login makes its network's next attempt wait [`PENALTY`].
async fn fixture() -> Fixture {
    let config = Config {
        proxy_from: vec!["127.0.0.1/32".parse().unwrap()],
        proxy_header_timeout: HEADER_TIMEOUT,
        limits: ConnectionLimits { per_ip: 1, ..ConnectionLimits::default() },
        auth_failure_delay: Duration::from_millis(10),
        penalties: PenaltyLimits { initial: PENALTY, max: PENALTY, ..PenaltyLimits::default() },
        ..Config::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let location = MailLocation::maildir(format!("{}/mail/%u", dir.path().display()));
    location.deliver(&UserInfo::new("alice"), &mut &MESSAGE[..], &Envelope::default()).unwrap();
    let users = PasswdFile::parse(
        "alice:{PLAIN}secret\nbob:{PLAIN}builder\ncarol:{PLAIN}x\ndave:{PLAIN}y\n",
    )
    .unwrap();
    let server = Server::new(config, Arc::new(location), Arc::new(users));
    let common::Listening { plain, tls, cert_der } = common::listen(&server).await;
    Fixture { plain, tls, cert_der, _server: server, _dir: dir }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Client {
    io: BufReader<Box<dyn Io>>,
}

/// A TCP connection to `to` from the loopback address `from`.
async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// The bytes of a header for a TCP client at `client`.
fn header(version: Version, client: &str, server: SocketAddr) -> Vec<u8> {
    let mut out = Vec::new();
    ProxyHeader::tcp(version, client.parse().unwrap(), server).encode(&mut out).unwrap();
    out
}

impl Client {
    /// From the trusted proxy (127.0.0.1), starting with `first` (a header, or not).
    async fn proxied(to: SocketAddr, first: &[u8]) -> Self {
        let mut tcp = tcp_from("127.0.0.1", to).await;
        tcp.write_all(first).await.unwrap();
        Self { io: BufReader::new(Box::new(tcp)) }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(STEP, self.io.read_line(&mut line))
            .await
            .expect("reply in time")
            .unwrap();
        assert!(n > 0, "connection closed while waiting for a line");
        line.trim_end().to_owned()
    }

    async fn cmd(&mut self, command: &str) -> String {
        let io = self.io.get_mut();
        io.write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
        self.line().await
    }

    /// The lines of a multi-line reply after its status line, undotted, as raw CRLF bytes.
    async fn body(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            tokio::time::timeout(STEP, self.io.read_until(b'\n', &mut line))
                .await
                .unwrap()
                .unwrap();
            assert!(!line.is_empty(), "connection closed inside a multi-line reply");
            if line == b".\r\n" {
                return out;
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
        }
    }

    async fn capa(&mut self) -> String {
        assert!(self.cmd("CAPA").await.starts_with("+OK"));
        String::from_utf8(self.body().await).unwrap()
    }

    /// How long until the server closed the connection without sending anything; panics if it
    /// sends a byte or keeps it open for the step time.
    async fn closed_silently(&mut self) -> Duration {
        let start = Instant::now();
        let mut rest = Vec::new();
        match tokio::time::timeout(STEP, self.io.read_to_end(&mut rest)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                assert!(rest.is_empty(), "sent {:?}", String::from_utf8_lossy(&rest));
                start.elapsed()
            }
            Err(_) => panic!("connection still open after {STEP:?}"),
        }
    }

    async fn tls(self, cert_der: &[u8]) -> Self {
        assert!(self.io.buffer().is_empty());
        let inner = self.io.into_inner();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der.to_vec().into()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, inner).await.unwrap();
        Self { io: BufReader::new(Box::new(tls)) }
    }
}

/// The per-address limit (one here) counts the address the header carries, in either version:
/// three connections from the same proxy address, two clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carried_address_is_the_client_for_connection_limits() {
    let fx = fixture().await;
    let mut one =
        Client::proxied(fx.plain, &header(Version::V1, "192.0.2.1:40001", fx.plain)).await;
    assert!(one.line().await.starts_with("+OK"));
    let mut two =
        Client::proxied(fx.plain, &header(Version::V2, "192.0.2.2:40002", fx.plain)).await;
    assert!(two.line().await.starts_with("+OK"), "another client behind the same proxy");
    let mut three =
        Client::proxied(fx.plain, &header(Version::V2, "192.0.2.1:40003", fx.plain)).await;
    let refused = three.line().await;
    assert!(refused.starts_with("-ERR [SYS/TEMP] too many connections"), "{refused}");
    // The first client leaves: its address has room again.
    assert!(one.cmd("QUIT").await.starts_with("+OK"));
    one.closed_silently().await;
    // (The session task releases its place just after closing the socket.)
    let deadline = Instant::now() + STEP;
    loop {
        let mut again =
            Client::proxied(fx.plain, &header(Version::V1, "192.0.2.1:40004", fx.plain)).await;
        let greeting = again.line().await;
        if greeting.starts_with("+OK") {
            break;
        }
        assert!(Instant::now() < deadline, "{greeting}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(two.cmd("QUIT").await.starts_with("+OK"));
}

/// Failed-login penalties are kept per carried address: a guesser behind the proxy slows
/// down its own later attempts, not those of the other clients of the same proxy. (Loopback
/// client addresses, so that USER/PASS is allowed without TLS.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalties_follow_the_carried_address() {
    let fx = fixture().await;
    let login = |client: &'static str, user: &'static str, password: &'static str| {
        let plain = fx.plain;
        async move {
            let mut c = Client::proxied(plain, &header(Version::V1, client, plain)).await;
            assert!(c.line().await.starts_with("+OK"));
            assert!(c.cmd(&format!("USER {user}")).await.starts_with("+OK"));
            let start = Instant::now();
            let reply = c.cmd(&format!("PASS {password}")).await;
            (reply, start.elapsed())
        }
    };
    // A failure makes its network's attempts queue one pace apart, the first of them one
    // pace after the failure.
    let (reply, _) = login("127.0.0.5:40000", "alice", "wrong").await;
    assert!(reply.starts_with("-ERR"), "{reply}");
    let (reply, took) = login("127.0.0.5:40001", "carol", "x").await;
    assert!(reply.starts_with("+OK") && took >= PENALTY / 2, "{reply} after {took:?}");
    // Another client of the same proxy: its own network, no wait.
    let (reply, took) = login("127.0.0.6:40000", "bob", "builder").await;
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(took < PENALTY / 2, "another client waited {took:?}");
    // The guesser's network waits its pace, whatever the user.
    let (reply, took) = login("127.0.0.5:40002", "dave", "y").await;
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(took >= PENALTY / 2, "the guesser waited only {took:?}");
}

/// trust_loopback (on by default) looks at the client, not at the proxy on loopback: a remote
/// client is not offered plaintext passwords; a LOCAL header (a health check) keeps the
/// proxy's own address, loopback, which is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_policy_follows_the_client_and_local_keeps_the_proxy() {
    let fx = fixture().await;
    let mut remote =
        Client::proxied(fx.plain, &header(Version::V2, "192.0.2.7:40000", fx.plain)).await;
    assert!(remote.line().await.starts_with("+OK"));
    let capa = remote.capa().await;
    assert!(!capa.lines().any(|l| l == "USER"), "no plaintext for a remote client: {capa}");
    let mut local_bytes = Vec::new();
    ProxyHeader::local().encode(&mut local_bytes).unwrap();
    let mut check = Client::proxied(fx.plain, &local_bytes).await;
    assert!(check.line().await.starts_with("+OK"));
    let capa = check.capa().await;
    assert!(capa.lines().any(|l| l == "USER"), "LOCAL: the proxy's loopback address: {capa}");
    // STLS behind the proxy: then the remote client may log in with USER/PASS.
    assert!(remote.cmd("STLS").await.starts_with("+OK"));
    let mut remote = remote.tls(&fx.cert_der).await;
    assert!(remote.cmd("USER alice").await.starts_with("+OK"));
    assert!(remote.cmd("PASS secret").await.starts_with("+OK"));
    assert!(remote.cmd("QUIT").await.starts_with("+OK"));
}

/// A host outside proxy_from is never read for a header: its PROXY line is an unknown POP3
/// command, the session goes on, and the address it claims counts for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_gets_plain_pop3_and_a_proxy_header_from_it_closes_the_connection() {
    let fx = fixture().await;
    let tcp = tcp_from("127.0.0.2", fx.plain).await;
    let mut c = Client { io: BufReader::new(Box::new(tcp)) };
    assert!(c.line().await.starts_with("+OK"), "greeted at once, no header awaited");
    assert!(c.capa().await.contains("STLS"), "plain POP3");
    drop(c);
    // A header of either version from it (a balancer missing from proxy_from, or a client
    // claiming another address): closed at once, never read as commands.
    // (127.0.0.2 has one place: the previous connection's is given back as its task ends,
    // moments after its socket closed.)
    for spoof in [&b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 110\r\n"[..], &V2_SIGNATURE[..]] {
        let deadline = Instant::now() + STEP;
        let mut c = loop {
            let tcp = tcp_from("127.0.0.2", fx.plain).await;
            let mut c = Client { io: BufReader::new(Box::new(tcp)) };
            if c.line().await.starts_with("+OK") {
                break c;
            }
            assert!(Instant::now() < deadline, "the closed connection kept its place");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        c.io.get_mut().write_all(spoof).await.unwrap();
        let took = c.closed_silently().await;
        assert!(took < STEP, "closed at once");
    }
    // Its claim took no place from 192.0.2.1.
    let mut real =
        Client::proxied(fx.plain, &header(Version::V2, "192.0.2.1:40001", fx.plain)).await;
    assert!(real.line().await.starts_with("+OK"));
    // And 127.0.0.2 itself is the address counted: a second connection from it is refused.
    // (The closed connections' places are given back as their tasks end: moments later.)
    let deadline = Instant::now() + STEP;
    let _first = loop {
        let tcp = tcp_from("127.0.0.2", fx.plain).await;
        let mut first = Client { io: BufReader::new(Box::new(tcp)) };
        if first.line().await.starts_with("+OK") {
            break first;
        }
        assert!(Instant::now() < deadline, "the closed connections kept their places");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let tcp = tcp_from("127.0.0.2", fx.plain).await;
    let mut second = Client { io: BufReader::new(Box::new(tcp)) };
    assert!(second.line().await.starts_with("-ERR [SYS/TEMP] too many connections"));
}

/// From a trusted peer, anything but a whole, valid header in time closes the connection
/// before the greeting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_missing_or_slow_header_closes_the_connection() {
    let fx = fixture().await;
    for bad in [
        &b"PROXY TCP4 999.0.2.1 127.0.0.1 40000 110\r\n"[..],
        b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 110\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
        b"USER alice\r\n",
    ] {
        let mut c = Client::proxied(fx.plain, bad).await;
        let took = c.closed_silently().await;
        assert!(took < HEADER_TIMEOUT, "{:?} refused at once, not at the deadline", bad);
    }
    // Part of a header, then nothing; and nothing at all (a client that waits for a greeting
    // from a server that waits for a header).
    for slow in [&b"PROXY TCP4 192.0.2.1 "[..], b""] {
        let mut c = Client::proxied(fx.plain, slow).await;
        let took = c.closed_silently().await;
        assert!(took >= HEADER_TIMEOUT - Duration::from_millis(50), "closed after {took:?}");
    }
    // The connections above held no place: a good header is still served.
    let mut c = Client::proxied(fx.plain, &header(Version::V1, "192.0.2.1:1", fx.plain)).await;
    assert!(c.line().await.starts_with("+OK"));
}

/// POP3S behind PROXY v2: the header comes before the TLS handshake, and the client's first
/// command may arrive in the same segment as the header on a plain port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_pipelined_bytes_behind_the_header() {
    let fx = fixture().await;
    let plain = header(Version::V2, "[2001:db8::7]:40000", "[2001:db8::1]:995".parse().unwrap());
    // With the TLS facts HAProxy sends when it terminated TLS itself: read and logged only.
    let mut with_tlvs = ProxyHeader::tcp(
        Version::V2,
        "[2001:db8::8]:40000".parse().unwrap(),
        "[2001:db8::1]:995".parse().unwrap(),
    );
    with_tlvs.tlvs = vec![
        Tlv::Ssl(Ssl { client: 1, verify: 0, tlvs: vec![SslTlv::Version("TLSv1.3".into())] }),
        Tlv::Crc32c,
    ];
    let mut with_tlvs_bytes = Vec::new();
    with_tlvs.encode(&mut with_tlvs_bytes).unwrap();
    for header in [plain, with_tlvs_bytes] {
        let c = Client::proxied(fx.tls, &header).await;
        let mut c = c.tls(&fx.cert_der).await;
        assert!(c.line().await.starts_with("+OK"));
        assert!(c.cmd("USER alice").await.starts_with("+OK"));
        assert!(c.cmd("PASS secret").await.starts_with("+OK"));
        assert!(c.cmd("RETR 1").await.starts_with("+OK"));
        assert_eq!(c.body().await, transmitted(MESSAGE));
        assert!(c.cmd("QUIT").await.starts_with("+OK"));
    }
    let mut bytes = header(Version::V1, "192.0.2.9:40000", fx.plain);
    bytes.extend_from_slice(b"CAPA\r\n");
    let mut c = Client::proxied(fx.plain, &bytes).await;
    assert!(c.line().await.starts_with("+OK"), "greeting");
    assert!(c.line().await.starts_with("+OK"), "CAPA sent with the header is answered");
    assert!(String::from_utf8(c.body().await).unwrap().contains("STLS"));
    // Behind the header the socket carries POP3 alone: a message stored in wire form goes
    // out with sendfile, stuffed right.
    let sendfile_count = || -> u64 {
        let text = pop3_server::metrics::render();
        let line = text.lines().find_map(|l| l.strip_prefix("pop3_retr_sendfile_total "));
        line.expect("the counter is exported").parse().unwrap()
    };
    // (From a loopback client, so that USER/PASS are allowed without TLS.)
    let mut c = Client::proxied(fx.plain, &header(Version::V2, "127.0.0.9:40000", fx.plain)).await;
    assert!(c.line().await.starts_with("+OK"), "greeting");
    assert!(c.cmd("USER alice").await.starts_with("+OK"));
    assert!(c.cmd("PASS secret").await.starts_with("+OK"));
    let before = sendfile_count();
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    assert_eq!(c.body().await, transmitted(MESSAGE));
    assert!(sendfile_count() > before);
}
