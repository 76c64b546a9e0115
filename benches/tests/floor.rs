//! `pop3-floor` serves byte for byte what pop3d serves: the same Maildir files, prepared in
//! wire form by `pop3-floor --prepare`'s code, retrieved through the floor (both ways of
//! sending) and through the in-process `pop3-server`, must give identical `RETR` bodies
//! (RFC 1939 section 3: CRLF, dot-stuffed, `.` CRLF at the end) and `LIST` sizes.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pop3_benches::floor::{self, Maildrop, SendWith};
use pop3_server::{Config, ListenerKind, MailLocation, PasswdFile, Server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(60);

/// Mail as Maildir files hold it: LF or CRLF line ends, lines that start with a dot, a line
/// that is only a dot, a last line without a line end, a long body.
fn messages() -> Vec<Vec<u8>> {
    let mut big = b"From: a@example.org\nSubject: big\n\n".to_vec();
    for i in 0..3000 {
        big.extend_from_slice(format!("line {i:05} lorem ipsum dolor sit amet\n").as_bytes());
        if i % 40 == 0 {
            big.extend_from_slice(b".a line with a leading dot\n");
        }
    }
    vec![
        b"Subject: one\n\n.\n..\nfirst\n".to_vec(),
        b"Subject: two\r\n\r\nsecond".to_vec(),
        b"Subject: three\n\n.\r\n.x\nlast line without an end".to_vec(),
        big,
    ]
}

fn seed(maildir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for (n, m) in messages().iter().enumerate() {
        let name = maildir.join("cur").join(format!("17640000{n:02}.M{n}P1.floortest:2,"));
        std::fs::write(name, m).unwrap();
    }
}

struct Client {
    io: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let mut c = Self { io: BufReader::new(TcpStream::connect(addr).await.unwrap()) };
        assert!(c.line().await.starts_with(b"+OK"));
        for cmd in ["USER user0", "PASS secret"] {
            let reply = c.command(cmd).await;
            assert!(reply.starts_with(b"+OK"), "{cmd}: {}", String::from_utf8_lossy(&reply));
        }
        c
    }

    async fn line(&mut self) -> Vec<u8> {
        let mut l = Vec::new();
        self.io.read_until(b'\n', &mut l).await.unwrap();
        assert!(l.ends_with(b"\r\n"), "{}", String::from_utf8_lossy(&l));
        l
    }

    async fn command(&mut self, cmd: &str) -> Vec<u8> {
        self.io.get_mut().write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        self.line().await
    }

    /// The rest of a multi-line reply, its terminating `.` CRLF included.
    async fn body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let l = self.line().await;
            body.extend_from_slice(&l);
            if l == b".\r\n" {
                return body;
            }
        }
    }

    /// `LIST`'s sizes, then every message's `RETR` status line and body.
    async fn retrieve_all(mut self) -> (Vec<u64>, Vec<(Vec<u8>, Vec<u8>)>) {
        assert!(self.command("LIST").await.starts_with(b"+OK"));
        let listing = self.body().await;
        let sizes: Vec<u64> = String::from_utf8(listing)
            .unwrap()
            .lines()
            .filter(|l| *l != ".")
            .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
            .collect();
        let mut retrieved = Vec::new();
        for n in 1..=sizes.len() {
            let status = self.command(&format!("RETR {n}")).await;
            assert!(status.starts_with(b"+OK"), "{}", String::from_utf8_lossy(&status));
            retrieved.push((status, self.body().await));
        }
        assert!(self.command("QUIT").await.starts_with(b"+OK"));
        (sizes, retrieved)
    }
}

/// pop3d's server on the Maildir.
async fn pop3d(mail: &Path) -> (SocketAddr, Server) {
    let location = MailLocation::maildir(format!("{}/%u", mail.display()));
    let users = PasswdFile::parse("user0:{PLAIN}secret\n").unwrap();
    let server = Server::new(Config::default(), Arc::new(location), Arc::new(users));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(l, ListenerKind::Plain).await });
    (addr, server)
}

/// The floor on the wire-form files, on its own threads.
fn floor_server(wire: &Path, send: SendWith) -> SocketAddr {
    let maildrop = Arc::new(Maildrop::load(wire).unwrap());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || floor::serve(l, maildrop, send));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_serves_what_pop3d_serves() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail").join("user0");
        seed(&maildir);
        let wire = dir.path().join("wire");
        assert_eq!(floor::prepare(&maildir.join("cur"), &wire).unwrap(), messages().len());

        let (addr, _server) = pop3d(&dir.path().join("mail")).await;
        let (mut sizes, reference) = Client::connect(addr).await.retrieve_all().await;
        let mut bodies: Vec<Vec<u8>> = reference.into_iter().map(|(_, b)| b).collect();
        assert_eq!(bodies.len(), messages().len());
        // Independent of either server: RFC 1939's wire form of each message.
        let mut expected: Vec<Vec<u8>> = messages().iter().map(|m| floor::wire_form(m)).collect();
        for v in [&mut bodies, &mut expected] {
            v.sort();
        }
        assert_eq!(bodies, expected, "pop3d's RETR bodies are the messages' wire form");
        sizes.sort_unstable();

        for send in [SendWith::Sendfile, SendWith::Write] {
            let (mut floor_sizes, got) =
                Client::connect(floor_server(&wire, send)).await.retrieve_all().await;
            for (status, body) in &got {
                let size = floor::unstuffed_size(body).unwrap();
                assert_eq!(status, format!("+OK {size} octets\r\n").as_bytes(), "{send:?}");
            }
            let mut got: Vec<Vec<u8>> = got.into_iter().map(|(_, b)| b).collect();
            got.sort();
            assert!(got == bodies, "{send:?}: the floor's RETR bodies differ from pop3d's");
            floor_sizes.sort_unstable();
            assert_eq!(floor_sizes, sizes, "{send:?}: LIST sizes");
        }
    })
    .await
    .expect("bounded");
}
