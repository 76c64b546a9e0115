//! RETR of messages stored in wire form, sent with `sendfile`: byte for byte what the
//! streaming path sends for the same message stored with LF line ends, over plain TCP and
//! TLS, alone and pipelined; and a file changed behind the snapshot never yields a wrong
//! octet count or a hang.

#![forbid(unsafe_code)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pop3_server::{Config, MailLocation, PasswdFile, Server, UserInfo};
use pop3_storage::Envelope;
use pop3_testkit::transmitted;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const STEP: Duration = Duration::from_secs(20);

/// The messages: dot lines anywhere, lines of only ".", no final line end, bare CR, empty,
/// more dot lines than a name records, 1 and 5 MiB, and a dot line right after the header.
fn messages() -> Vec<Vec<u8>> {
    let mib = |n: usize| -> Vec<u8> {
        let line = b"a line of a large message, with some words in it, 64 octets....\n";
        let mut m = b"Subject: large\n\n".to_vec();
        while m.len() < n << 20 {
            m.extend_from_slice(line);
        }
        m.extend_from_slice(b".\n..\n.end with a dot line\n");
        m
    };
    vec![
        b"Subject: plain\n\nno dot line here\n".to_vec(),
        b"Subject: dots\n\n.leading\n..two\n.\nmiddle.dot\n. \nlast\n".to_vec(),
        b".starts with a dot\n".to_vec(),
        b".".to_vec(),
        b"Subject: no final line end\n\nlast line".to_vec(),
        b"Subject: cr\r\n\r\nbare\rcr\r\n.\r".to_vec(),
        Vec::new(),
        b"\n".to_vec(),
        b".\n".repeat(20),
        b"Subject: x\r\n\r\n.\r\n.\r\n".to_vec(),
        mib(1),
        mib(5),
        // A dot line right after the header, then a long stretch (as the load test's).
        [b"Subject: early dot\n\n.early\n".as_slice(), &b"0123456789abcdef\n".repeat(1024)]
            .concat(),
    ]
}

struct Fixture {
    server: Server,
    plain: SocketAddr,
    tls: SocketAddr,
    root: PathBuf,
    location: MailLocation,
    cert_der: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// `wire`'s and `tls`'s Maildirs get the messages through the server's delivery (wire
/// form); `lf`'s the same messages written as they are, as another program would (the
/// streaming path).
async fn fixture() -> Fixture {
    fixture_with(Config::default()).await
}

async fn fixture_with(config: Config) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail");
    let location = MailLocation::maildir(format!("{}/%u", root.display()));
    for user in ["wire", "tls"] {
        for m in messages() {
            location.deliver(&UserInfo::new(user), &mut &m[..], &Envelope::default()).unwrap();
        }
    }
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join("lf").join(sub)).unwrap();
    }
    for (i, m) in messages().iter().enumerate() {
        let name = format!("{}.M{i}P1.otherhost", 1_700_000_000 + i);
        std::fs::write(root.join("lf/new").join(name), m).unwrap();
    }
    let users =
        PasswdFile::parse("wire:{PLAIN}secret\ntls:{PLAIN}secret\nlf:{PLAIN}secret\n").unwrap();
    let server = Server::new(config, Arc::new(location.clone()), Arc::new(users));
    let common::Listening { plain, tls, cert_der } = common::listen(&server).await;
    Fixture { server, plain, tls, root, location, cert_der, _dir: dir }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Client {
    io: BufReader<Box<dyn Io>>,
}

impl Client {
    async fn connect(addr: SocketAddr, user: &str) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self::login(Box::new(tcp), user).await
    }

    async fn connect_tls(addr: SocketAddr, cert_der: &[u8], user: &str) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
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
        Self::login(Box::new(connector.connect(name, tcp).await.unwrap()), user).await
    }

    async fn login(io: Box<dyn Io>, user: &str) -> Self {
        let mut c = Self { io: BufReader::new(io) };
        assert!(c.raw_line().await.starts_with(b"+OK"));
        c.send(&format!("USER {user}\r\nPASS secret")).await;
        assert!(c.raw_line().await.starts_with(b"+OK"));
        assert!(c.raw_line().await.starts_with(b"+OK"), "logged in");
        c
    }

    async fn send(&mut self, commands: &str) {
        let io = self.io.get_mut();
        io.write_all(format!("{commands}\r\n").as_bytes()).await.unwrap();
        io.flush().await.unwrap();
    }

    /// One line as sent, CRLF included; empty at the end of the connection.
    async fn raw_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        tokio::time::timeout(STEP, self.io.read_until(b'\n', &mut line))
            .await
            .expect("a line in time")
            .unwrap();
        line
    }

    /// A whole multi-line reply exactly as sent: status line, stuffed body, terminator.
    async fn raw_reply(&mut self) -> Vec<u8> {
        let mut out = self.raw_line().await;
        assert!(out.starts_with(b"+OK"), "{:?}", String::from_utf8_lossy(&out));
        loop {
            let line = self.raw_line().await;
            assert!(!line.is_empty(), "connection closed inside a multi-line reply");
            out.extend_from_slice(&line);
            if line == b".\r\n" {
                return out;
            }
        }
    }

    /// True if the server closes the connection within the step time.
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(tokio::time::timeout(STEP, self.io.read_to_end(&mut rest)).await, Ok(Ok(_)))
    }
}

/// What RETR must send for `message`, built independently of the server: the status line,
/// the CRLF form with a `.` before each line that begins with one, the terminator.
fn expected_retr(message: &[u8]) -> Vec<u8> {
    let wire = transmitted(message);
    let mut out = format!("+OK {} octets\r\n", wire.len()).into_bytes();
    let mut line_start = true;
    for &b in &wire {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn sendfile_count() -> u64 {
    let text = pop3_server::metrics::render();
    text.lines()
        .find_map(|l| l.strip_prefix("pop3_retr_sendfile_total "))
        .expect("the counter is exported")
        .parse()
        .unwrap()
}

/// The message files of `user`, in delivery order (names start with increasing seconds
/// or were delivered in order within one).
fn files(root: &Path, user: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(user).join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let secs: u64 = name.split('.').next().unwrap().parse().unwrap();
        let usec: u64 = name
            .split('.')
            .nth(1)
            .and_then(|u| u.strip_prefix('M'))
            .and_then(|u| u.split('P').next())
            .and_then(|u| u.parse().ok())
            .unwrap_or(0);
        (secs, usec, name)
    });
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_form_retr_is_byte_identical_to_the_streaming_path() {
    let fx = fixture().await;
    let messages = messages();
    // Delivery stored them in wire form, the dot lines in the name (bar the one with more
    // than a name records).
    let stored = files(&fx.root, "wire");
    assert_eq!(stored.len(), messages.len());
    for (path, m) in stored.iter().zip(&messages) {
        assert_eq!(std::fs::read(path).unwrap(), transmitted(m), "{}", path.display());
    }
    let named = stored.iter().filter(|p| p.to_str().unwrap().contains(",D=")).count();
    assert_eq!(named, messages.len() - 1);

    let mut wire = Client::connect(fx.plain, "wire").await;
    let mut lf = Client::connect(fx.plain, "lf").await;
    let mut tls = Client::connect_tls(fx.tls, &fx.cert_der, "tls").await;
    for (i, m) in messages.iter().enumerate() {
        let command = format!("RETR {}", i + 1);
        let before = sendfile_count();
        wire.send(&command).await;
        let direct = wire.raw_reply().await;
        let after = sendfile_count();
        lf.send(&command).await;
        let streamed = lf.raw_reply().await;
        tls.send(&command).await;
        let over_tls = tls.raw_reply().await;
        assert_eq!(direct, expected_retr(m), "message {}", i + 1);
        assert_eq!(direct, streamed, "message {}", i + 1);
        assert_eq!(direct, over_tls, "message {}", i + 1);
        if i != 8 {
            // Other tests of this process may send too; at least this one went by sendfile.
            assert!(after > before, "message {} was sent with sendfile", i + 1);
        }
    }
    // Pipelined, RETRs and TOPs mixed (TOP takes the streaming path): in order and exact.
    let batch = "RETR 2\r\nTOP 2 1\r\nRETR 7\r\nNOOP\r\nRETR 3\r\nTOP 5 0";
    wire.send(batch).await;
    lf.send(batch).await;
    let mut replies = Vec::new();
    for c in [&mut wire, &mut lf] {
        let mut got = c.raw_reply().await;
        got.extend(c.raw_reply().await);
        got.extend(c.raw_reply().await);
        got.extend(c.raw_line().await);
        got.extend(c.raw_reply().await);
        got.extend(c.raw_reply().await);
        replies.push(got);
    }
    assert_eq!(replies[0], replies[1]);
    assert!(replies[0].starts_with(&expected_retr(&messages[1])));
    for c in [&mut wire, &mut lf, &mut tls] {
        c.send("QUIT").await;
        assert!(c.raw_line().await.starts_with(b"+OK"));
    }
    fx.server.shutdown().await;
}

/// A file cut short after login: the status line went out, the body cannot be completed, so
/// the connection closes without a terminator (never a wrong count, never a hang) and
/// nothing is deleted. A file grown after login: exactly the recorded octets are sent. On
/// the streaming path a small message changed after login is an -ERR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_login_never_gives_a_wrong_count_or_a_hang() {
    let fx = fixture().await;
    let messages = messages();
    let stored = files(&fx.root, "wire");
    let mut c = Client::connect(fx.plain, "wire").await;
    // Grown: the first message gets more octets (and a line that begins with a dot).
    let grown = &stored[0];
    let mut longer = std::fs::read(grown).unwrap();
    longer.extend_from_slice(b".appended\r\n");
    std::fs::write(grown, &longer).unwrap();
    c.send("RETR 1").await;
    assert_eq!(c.raw_reply().await, expected_retr(&messages[0]));
    // Cut short: the 5 MiB message loses its second half.
    let cut = &stored[11];
    let len = std::fs::metadata(cut).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(cut).unwrap().set_len(len / 2).unwrap();
    c.send("DELE 2\r\nRETR 12").await;
    assert!(c.raw_line().await.starts_with(b"+OK"), "DELE");
    let status = c.raw_line().await;
    assert_eq!(status, format!("+OK {len} octets\r\n").into_bytes());
    let mut rest = Vec::new();
    let read = tokio::time::timeout(STEP, c.io.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(_))), "the connection closes: no hang");
    assert!((rest.len() as u64) < len, "the body is cut short, {} octets", rest.len());
    assert!(!rest.ends_with(b"\r\n.\r\n"), "never terminated as if complete");
    assert!(c.closed().await);
    assert_eq!(files(&fx.root, "wire").len(), messages.len(), "no UPDATE: nothing deleted");
    // The same for a small message, whose stretches are read rather than sent by sendfile.
    let mut c = Client::connect(fx.plain, "wire").await;
    let small = &stored[4];
    let len = std::fs::metadata(small).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(small).unwrap().set_len(len - 3).unwrap();
    c.send("NOOP\r\nRETR 5").await;
    assert_eq!(c.raw_line().await, b"+OK\r\n", "the replies before it went out");
    assert_eq!(c.raw_line().await, format!("+OK {len} octets\r\n").into_bytes());
    let mut rest = Vec::new();
    let read = tokio::time::timeout(STEP, c.io.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(_))), "the connection closes: no hang");
    assert!(!rest.ends_with(b"\r\n.\r\n"), "never terminated as if complete");
    assert_eq!(files(&fx.root, "wire").len(), messages.len(), "nothing deleted");

    // The streaming path checks the length as it reads (no stat): a small message changed
    // after login is read whole before the answer, so the client gets -ERR and goes on.
    let mut c = Client::connect(fx.plain, "lf").await;
    let lf = files(&fx.root, "lf");
    std::fs::write(&lf[1], b"Subject: dots\n\nshorter now\n").unwrap();
    c.send("RETR 2\r\nNOOP").await;
    let status = String::from_utf8(c.raw_line().await).unwrap();
    assert!(status.starts_with("-ERR [SYS/TEMP]"), "{status}");
    assert_eq!(c.raw_line().await, b"+OK\r\n");
    c.send("RETR 1").await;
    assert_eq!(c.raw_reply().await, expected_retr(&messages[0]));
    fx.server.shutdown().await;
}

/// A client that stops reading a body sent with `sendfile` is dropped after the write timeout
/// (the longer of the idle timeouts), as on the streaming path: the server does not wait on a
/// full socket forever, and nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let config = Config {
        idle_timeout_authorization: Duration::from_millis(500),
        idle_timeout_transaction: Duration::from_millis(1500),
        ..Config::default()
    };
    let fx = fixture_with(config).await;
    // Larger than what loopback socket buffers hold, so that the send must wait.
    let line = b"a line of a very large message, 48 octets long.\n";
    let big: Vec<u8> = line.iter().copied().cycle().take(64 << 20).collect();
    fx.location.deliver(&UserInfo::new("lf"), &mut &big[..], &Envelope::default()).unwrap();
    let mut c = Client::connect(fx.plain, "lf").await;
    let before = sendfile_count();
    c.send(&format!("DELE 1\r\nRETR {}", messages().len() + 1)).await;
    assert!(c.raw_line().await.starts_with(b"+OK"), "DELE");
    assert_eq!(
        c.raw_line().await,
        format!("+OK {} octets\r\n", transmitted(&big).len()).into_bytes()
    );
    // Read nothing more for longer than the write timeout.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert!(sendfile_count() > before, "sent with sendfile");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(STEP, c.io.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(_))), "the server closed the connection");
    assert!(rest.len() < big.len(), "cut off, {} octets", rest.len());
    assert!(!rest.ends_with(b"\r\n.\r\n"));
    assert_eq!(files(&fx.root, "lf").len(), messages().len() + 1, "no UPDATE: nothing deleted");
    fx.server.shutdown().await;
}
