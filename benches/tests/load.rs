//! `pop3-load` against the in-process `pop3-server` on 127.0.0.1 (random ports, real Maildirs
//! in a temporary directory), every mode briefly; and against a tiny lying server, to show
//! that the checks catch wrong sizes.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pop3_benches::load::{resolve, run, Mode, Options, Report, Security};
use pop3_server::{
    Config, ConnectionLimits, ListenerKind, MailLocation, PasswdFile, Server, UserInfo,
};
use pop3_storage::Envelope;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Every test's upper bound (the runs themselves take well under a second).
const BOUND: Duration = Duration::from_secs(60);
const USERS: usize = 24;

struct Fixture {
    plain: SocketAddr,
    tls: SocketAddr,
    ca: PathBuf,
    _server: Server,
    _dir: tempfile::TempDir,
}

fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\n\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("line {i:05}\n.dotted line {i}\n").as_bytes());
    }
    vec![b"Subject: one\n\n.\n..\nfirst\n".to_vec(), b"Subject: two\r\n\r\nsecond".to_vec(), big]
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let location = MailLocation::maildir(format!("{}/mail/%u", dir.path().display()));
    let mut users = String::new();
    for n in 0..USERS {
        let name = format!("user{n}");
        for m in messages() {
            location.deliver(&UserInfo::new(&name), &mut &m[..], &Envelope::default()).unwrap();
        }
        users.push_str(&format!("{name}:{{PLAIN}}secret\n"));
    }
    let config = Config {
        auth_failure_delay: Duration::from_millis(10),
        limits: ConnectionLimits { total: 1000, per_ip: 1000, per_user_ip: 1000 },
        ..Config::default()
    };
    let server =
        Server::new(config, Arc::new(location), Arc::new(PasswdFile::parse(&users).unwrap()));
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let tls = pop3_server::tls::config_from_pem(
        certified.cert.pem().as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    server.set_tls(Some(tls));
    let plain_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain, tls) = (plain_l.local_addr().unwrap(), tls_l.local_addr().unwrap());
    for (l, kind) in [(plain_l, ListenerKind::Plain), (tls_l, ListenerKind::ImplicitTls)] {
        let server = server.clone();
        tokio::spawn(async move { server.serve(l, kind).await });
    }
    Fixture { plain, tls, ca, _server: server, _dir: dir }
}

fn options(f: &Fixture, mode: Mode, security: Security) -> Options {
    let target = if security == Security::Implicit { f.tls } else { f.plain };
    let mut o = Options::new(mode, &target.to_string());
    o.tls = security;
    o.ca = Some(f.ca.clone());
    o.concurrency = 2;
    o.warmup = Duration::from_millis(50);
    o.duration = Duration::from_millis(400);
    o.timeout = Duration::from_secs(10);
    o
}

async fn go(o: &Options) -> Report {
    let report = tokio::time::timeout(BOUND, run(o)).await.expect("bounded").expect("run");
    // Both outputs render and the JSON line is one line.
    assert!(!report.table().is_empty());
    assert!(!report.json().to_string().contains('\n'));
    report
}

fn clean(r: &Report) {
    assert_eq!(r.errors, 0, "first error: {:?}", r.first_error);
    assert!(r.latency_count > 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_plain_stls_and_implicit_tls() {
    let f = fixture().await;
    for security in [Security::Plain, Security::Stls, Security::Implicit] {
        let r = go(&options(&f, Mode::Login, security)).await;
        clean(&r);
        assert!(r.sessions > 0, "{security:?}: {r:?}");
        assert_eq!(r.commands, 4 * r.sessions);
        assert_eq!(r.latency_count, r.sessions);
        assert_eq!(r.json()["unit"], "logins/s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retr_checks_every_size() {
    let f = fixture().await;
    let per_session: u64 = messages()
        .iter()
        .map(|m| {
            m.len() as u64 + m.windows(2).filter(|w| w[1] == b'\n' && w[0] != b'\r').count() as u64
        })
        .sum::<u64>();
    for security in [Security::Plain, Security::Implicit] {
        let mut o = options(&f, Mode::Retr, security);
        o.pid = Some(std::process::id());
        let r = go(&o).await;
        clean(&r);
        assert!(r.messages > 0 && r.octets > 0, "{r:?}");
        assert_eq!(r.latency_count, r.messages);
        assert!(r.sessions * per_session <= r.octets + per_session * 2, "{r:?}");
        assert!(r.server_cpu_s.is_some() && r.cpu_per_unit().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_counts_batches() {
    let f = fixture().await;
    let mut o = options(&f, Mode::Pipeline, Security::Plain);
    o.batch = 8;
    o.commands = 64;
    let r = go(&o).await;
    clean(&r);
    assert_eq!(r.pipelining, Some(true));
    assert!(r.commands > 0 && r.sessions > 0, "{r:?}");
    // Whole batches of 8 only (64 is a multiple of 8).
    assert_eq!(r.commands, 8 * r.latency_count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_connections_and_samples_memory() {
    let f = fixture().await;
    for security in [Security::Plain, Security::Stls] {
        let mut o = options(&f, Mode::Idle, security);
        o.concurrency = USERS;
        o.pid = Some(std::process::id());
        let r = go(&o).await;
        clean(&r);
        let idle = r.idle.as_ref().unwrap();
        assert_eq!(idle.established, USERS as u64);
        assert_eq!(idle.answered, USERS as u64);
        assert_eq!(r.sessions, USERS as u64);
        assert!(idle.pss_before_kib.is_some() && idle.pss_held_kib.is_some());
        assert_eq!(r.json()["established"], USERS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_error() {
    let f = fixture().await;
    let mut o = options(&f, Mode::Login, Security::Plain);
    o.pass = "wrong".into();
    let r = go(&o).await;
    assert!(r.errors > 0 && r.sessions == 0);
    assert!(r.first_error.as_deref().unwrap().contains("PASS"), "{:?}", r.first_error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_limit_moves_bytes() {
    let mut o = Options::new(Mode::Tcp, "127.0.0.1:1");
    o.concurrency = 2;
    o.warmup = Duration::from_millis(50);
    o.duration = Duration::from_millis(300);
    let r = go(&o).await;
    assert_eq!(r.errors, 0);
    assert!(r.octets > 1_000_000, "{r:?}");
}

#[tokio::test]
async fn refuses_remote_targets_unless_allowed() {
    let e = resolve("192.0.2.1:110", false).await.unwrap_err();
    assert!(e.contains("--allow-remote"), "{e}");
    assert!(resolve("192.0.2.1:110", true).await.is_ok());
    assert!(resolve("127.0.0.1:110", false).await.is_ok());
    assert!(resolve("[::1]:110", false).await.is_ok());
    let mut o = Options::new(Mode::Login, "192.0.2.1:110");
    o.duration = Duration::from_millis(10);
    assert!(run(&o).await.is_err());
}

/// A server whose LIST lies about the size: 10 octets announced, 6 sent (".abc" CRLF, unstuffed).
async fn lying_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"+OK hi\r\n").await?;
                let mut line = String::new();
                while r.read_line(&mut line).await? > 0 {
                    let reply: &[u8] = match line.trim_end().to_ascii_uppercase().as_str() {
                        "LIST" => b"+OK\r\n1 10\r\n.\r\n",
                        "RETR 1" => b"+OK\r\n..abc\r\n.\r\n",
                        "QUIT" => b"+OK bye\r\n",
                        _ => b"+OK\r\n",
                    };
                    w.write_all(reply).await?;
                    line.clear();
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retr_size_mismatch_is_an_error() {
    let addr = lying_server().await;
    let mut o = Options::new(Mode::Retr, &addr.to_string());
    o.concurrency = 1;
    o.warmup = Duration::ZERO;
    o.duration = Duration::from_millis(200);
    let r = go(&o).await;
    assert!(r.errors > 0 && r.messages == 0, "{r:?}");
    let e = r.first_error.unwrap();
    assert!(e.contains("6 octets unstuffed, LIST said 10"), "{e}");
}

/// A server that answers RETR only once three are waiting (then all three, in order): a
/// client that keeps fewer than three in flight waits for ever.
async fn batching_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"+OK hi\r\n").await?;
                let mut line = String::new();
                let mut waiting = Vec::new();
                while r.read_line(&mut line).await? > 0 {
                    let command = line.trim_end().to_ascii_uppercase();
                    line.clear();
                    let reply: &[u8] = match command.as_str() {
                        "CAPA" => b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n",
                        "LIST" => b"+OK\r\n1 5\r\n2 5\r\n3 5\r\n.\r\n",
                        "QUIT" => b"+OK bye\r\n",
                        c if c.starts_with("RETR ") => {
                            waiting.push(c.to_owned());
                            if waiting.len() == 3 {
                                for _ in waiting.drain(..) {
                                    w.write_all(b"+OK 5 octets\r\n..ab\r\n.\r\n").await?;
                                }
                            }
                            continue;
                        }
                        _ => b"+OK\r\n",
                    };
                    w.write_all(reply).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retr_keeps_a_window_of_commands_in_flight() {
    let addr = batching_server().await;
    let mut o = Options::new(Mode::Retr, &addr.to_string());
    o.concurrency = 1;
    o.warmup = Duration::ZERO;
    o.duration = Duration::from_millis(300);
    o.timeout = Duration::from_millis(500);
    o.window = 3;
    let r = go(&o).await;
    clean(&r);
    assert_eq!(r.pipelining, Some(true));
    assert_eq!(r.json()["window"], 3);
    assert_eq!(r.octets, 5 * r.messages);
    assert!(r.messages >= 3, "{r:?}");
    // One at a time, the server never answers.
    o.window = 1;
    let r = go(&o).await;
    assert!(r.errors > 0 && r.messages == 0, "{r:?}");
    assert!(r.first_error.unwrap().contains("timed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retr_window_against_pop3_server() {
    let f = fixture().await;
    for security in [Security::Plain, Security::Implicit] {
        let mut o = options(&f, Mode::Retr, security);
        o.window = 4;
        let r = go(&o).await;
        clean(&r);
        assert_eq!(r.pipelining, Some(true), "{security:?}");
        assert_eq!(r.latency_count, r.messages);
        assert!(r.messages > 0 && r.octets > 0, "{r:?}");
    }
}

/// A server that says `+OK` to everything (`+OK bye` and closes on QUIT) and records each
/// connection's source address.
async fn recording_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<std::net::IpAddr>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&peers);
    tokio::spawn(async move {
        while let Ok((s, peer)) = l.accept().await {
            seen.lock().unwrap().push(peer.ip());
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"+OK hi\r\n").await?;
                let mut line = String::new();
                while r.read_line(&mut line).await? > 0 {
                    let quit = line.trim_end().eq_ignore_ascii_case("QUIT");
                    line.clear();
                    w.write_all(if quit { b"+OK bye\r\n" } else { b"+OK\r\n" }).await?;
                    if quit {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (addr, peers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_spreads_connections_over_source_addresses() {
    use std::net::IpAddr;
    let (addr, peers) = recording_server().await;
    let mut o = Options::new(Mode::Idle, &addr.to_string());
    o.concurrency = 25;
    o.per_source = 10;
    o.duration = Duration::from_millis(200);
    o.pid = Some(std::process::id());
    let r = go(&o).await;
    clean(&r);
    assert_eq!(r.idle.as_ref().unwrap().answered, 25);
    let mut peers = peers.lock().unwrap().clone();
    peers.sort();
    let count = |last: u8| peers.iter().filter(|p| **p == IpAddr::from([127, 1, 0, last])).count();
    assert_eq!((count(1), count(2), count(3), peers.len()), (10, 10, 5, 25), "{peers:?}");
    // Resident memory is sampled beside PSS.
    let idle = r.idle.as_ref().unwrap();
    assert!(idle.rss_held_kib.is_some() && idle.hwm_kib >= idle.rss_held_kib, "{idle:?}");
    assert!(r.json()["rss_kib_per_connection"].is_number());
    assert_eq!(
        pop3_benches::load::source_address(addr, 0, 0),
        None,
        "0: the system picks the source"
    );
}
