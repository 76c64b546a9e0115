//! Checks that wait on another server run on threads of their own: a stalled authorization
//! server (or directory, or database) holds up the logins that need it, never the password
//! logins checked here.

#![cfg(feature = "oauth")]
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use pop3_server::oauth::{BearerAuth, OAuthSettings, TokenCheck, TokenValidator};
use pop3_server::{Config, MailLocation, Offers, PasswdFile, Server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

mod common;

/// How long the token check waits for the stalled authorization server.
const OAUTH_TIMEOUT: Duration = Duration::from_secs(4);

async fn command(io: &mut BufReader<TcpStream>, line: &str) -> String {
    io.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    let mut reply = String::new();
    io.read_line(&mut reply).await.unwrap();
    reply
}

async fn connect(addr: std::net::SocketAddr) -> BufReader<TcpStream> {
    let mut io = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let mut greeting = String::new();
    io.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("+OK"), "{greeting}");
    io
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_authorization_server_does_not_hold_up_password_logins() {
    // The authorization server accepts connections and never answers.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/introspect", stalled.local_addr().unwrap());
    let check = TokenCheck::Introspection {
        url,
        client_id: "pop3d".into(),
        client_secret: "secret".into(),
        cache: Duration::ZERO,
    };
    let mut settings = OAuthSettings::new("http://127.0.0.1/", vec!["pop3".into()], check);
    settings.timeout = OAUTH_TIMEOUT;
    let tokens = Arc::new(TokenValidator::new(settings).unwrap());
    let users = Arc::new(PasswdFile::parse("alice:{PLAIN}secret\nbob:{PLAIN}hunter2\n").unwrap());
    let auth = Arc::new(BearerAuth::new(users, tokens));
    // One password-check thread: before remote checks had threads of their own, one stalled
    // token check took it.
    let config = Config {
        auth_workers: 1,
        offers: Offers { oauthbearer: true, ..Offers::default() },
        auth_failure_delay: Duration::from_millis(10),
        ..Config::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let location = MailLocation::maildir(format!("{}/%u", dir.path().display()));
    let server = Server::new(config, Arc::new(location), auth);
    let listening = common::listen(&server).await;

    // Two token logins, from two connections, wait on the stalled server.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let plain = listening.plain;
        let response = b64.encode("n,a=alice,\x01auth=Bearer some-token\x01\x01");
        waiting.push(tokio::spawn(async move {
            let mut io = connect(plain).await;
            let started = Instant::now();
            let reply = command(&mut io, &format!("AUTH OAUTHBEARER {response}")).await;
            (reply, started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile a password login is checked at once.
    let mut io = connect(listening.plain).await;
    assert!(command(&mut io, "USER bob").await.starts_with("+OK"));
    let started = Instant::now();
    let reply = command(&mut io, "PASS hunter2").await;
    let took = started.elapsed();
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(took < OAUTH_TIMEOUT / 2, "the password login waited {took:?} behind token checks");
    // The token logins end when their check gives up: a temporary failure, not a login.
    for w in waiting {
        let (reply, took) = w.await.unwrap();
        assert!(!reply.starts_with("+OK"), "{reply}");
        assert!(took >= OAUTH_TIMEOUT / 2, "the stalled check answered after {took:?}: {reply}");
    }
    drop(stalled);
}
