//! The LMTP listener (`[lmtp]`, RFC 2033) of a real `pop3d serve`: per-recipient replies,
//! 550 at RCPT, SIZE, pipelining, byte-exact storage with Return-Path and Delivered-To, 451
//! on a storage failure; Python's `smtplib.LMTP` as a client, and Postfix delivering with
//! `virtual_transport = lmtp:inet:...` from a private instance.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::lmtp::{stuffed, Lmtp};
use common::{output_ok, peer, root, run, Daemon, Session, Store};
use pop3_testkit::postfix::Postfix;

/// A data dir with users alice and bob, `[mail] format` as given and `lmtp` appended to
/// pop3d.toml; the server started. Returns it and the LMTP address.
fn start(format: &str, lmtp: &str) -> (Daemon, String) {
    start_on(format, Store::Maildir, lmtp)
}

/// [`start`] with mail in PostgreSQL (`None` after a loud SKIPPED line without it).
fn start_postgresql(test: &str) -> Option<(Daemon, String)> {
    let store = Store::postgresql(test)?;
    Some(start_on("maildir", store, "listen = [\"127.0.0.1:0\"]\n"))
}

/// [`start`] with `store` configured after `format`.
fn start_on(format: &str, store: Store, lmtp: &str) -> (Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run(&["user", "add", "alice", "--password-stdin"], &data, b"secret\n");
    output_ok(&out, "user add");
    std::fs::write(data.join("users"), "alice:{PLAIN}secret\nbob:{PLAIN}builder\n").unwrap();
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let config = config.replace("format = \"maildir\"", &format!("format = \"{format}\""));
    let config =
        if format == "mbox" { config.replace("\"mail/%u\"", "\"mail/%u.mbox\"") } else { config };
    std::fs::write(data.join("pop3d.toml"), format!("{config}\n[lmtp]\n{lmtp}\n")).unwrap();
    store.configure(&data);
    let mut daemon = Daemon::serve(dir, data);
    if let Store::Postgresql(db) = store {
        daemon.postgresql = Some(db);
    }
    let addr = daemon.announced("pop3d: LMTP on ").expect("pop3d announces its LMTP listener");
    let addr = addr.split(", ").next().unwrap().to_owned();
    (daemon, addr)
}

fn start_tcp(extra: &str) -> (Daemon, String) {
    start("maildir", &format!("listen = [\"127.0.0.1:0\"]\n{extra}"))
}

/// `user`'s Maildir messages in delivery order.
fn stored(daemon: &Daemon, user: &str) -> Vec<Vec<u8>> {
    let dir = daemon.data.join("mail").join(user);
    if daemon.postgresql.is_none() && !dir.exists() {
        return Vec::new();
    }
    daemon.stored(user)
}

const BODY: &[u8] = b"From: Sender <sender@example.org>\r\nTo: alice@example.test\r\n\
Subject: LMTP test\r\n\r\nfirst line\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n";

fn expected(sender: &str, rcpt: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n").into_bytes();
    m.extend_from_slice(body);
    m
}

#[test]
fn pipelined_transaction_with_a_reply_per_recipient_stored_byte_exact() {
    let (daemon, addr) = start_tcp("");
    pipelined_transaction(&daemon, &addr);
}

/// The same into the PostgreSQL store: nothing acknowledged before its COMMIT.
#[test]
fn pipelined_transaction_into_postgresql() {
    let Some((daemon, addr)) = start_postgresql("LMTP into PostgreSQL") else { return };
    pipelined_transaction(&daemon, &addr);
}

fn pipelined_transaction(daemon: &Daemon, addr: &str) {
    let mut c = Lmtp::connect(addr);
    c.send(b"LHLO mx.example\r\n");
    let lhlo = c.reply();
    for ext in ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250 SIZE 52428800"] {
        assert!(lhlo.iter().any(|l| l == ext), "{ext} in {lhlo:?}");
    }
    // RFC 2920: the whole envelope and DATA in one write.
    c.send(
        b"MAIL FROM:<sender@example.org> BODY=8BITMIME SIZE=200\r\n\
          RCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\n\
          RCPT TO:<bob>\r\nDATA\r\n",
    );
    assert_eq!(c.line(), "250 2.1.0 <sender@example.org> Sender OK");
    assert_eq!(c.line(), "250 2.1.5 <alice@example.test> Recipient OK");
    assert_eq!(c.line(), "550 5.1.1 <nobody@example.test> User unknown");
    assert_eq!(c.line(), "250 2.1.5 <bob> Recipient OK");
    assert_eq!(c.line(), "354 Start mail input; end with <CRLF>.<CRLF>");
    c.send(&stuffed(BODY));
    // RFC 2033 §4.2: one reply per accepted recipient, in order.
    assert_eq!(c.line(), "250 2.0.0 <alice@example.test> Saved");
    assert_eq!(c.line(), "250 2.0.0 <bob> Saved");
    assert_eq!(
        stored(daemon, "alice"),
        [expected("sender@example.org", "alice@example.test", BODY)]
    );
    assert_eq!(stored(daemon, "bob"), [expected("sender@example.org", "bob", BODY)]);
    // A second transaction on the same connection, null sender.
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<alice>\r\nDATA\r\n");
    assert_eq!(c.line(), "250 2.1.0 <> Sender OK");
    assert_eq!(c.line(), "250 2.1.5 <alice> Recipient OK");
    assert_eq!(c.line(), "354 Start mail input; end with <CRLF>.<CRLF>");
    c.send(b"Subject: bounce\r\n\r\n.\r\n");
    assert_eq!(c.line(), "250 2.0.0 <alice> Saved");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 localhost closing connection");
    let alice = stored(daemon, "alice");
    assert_eq!(alice[1], b"Return-Path: <>\r\nDelivered-To: alice\r\nSubject: bounce\r\n\r\n");
    // And POP3 serves what LMTP stored.
    let mut pop = Session::connect(&daemon.plain);
    pop.cmd("USER alice");
    assert!(pop.cmd("PASS secret").starts_with("+OK"));
    let size = alice[0].len() + alice[1].len();
    assert_eq!(pop.cmd("STAT"), format!("+OK 2 {size}"));
}

#[test]
fn errors_are_answered_and_the_session_goes_on() {
    let (daemon, addr) = start_tcp("");
    let mut c = Lmtp::connect(&addr);
    assert_eq!(c.cmd("MAIL FROM:<a@b>"), "503 5.5.1 Send LHLO first");
    assert_eq!(c.cmd("EHLO x"), "500 5.5.1 This is LMTP (RFC 2033): use LHLO");
    c.send(b"LHLO x\r\n");
    c.reply();
    assert_eq!(c.cmd("MAIL FROM:a@b"), "501 5.1.7 Invalid sender address");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Send MAIL first");
    let long = format!("NOOP {}", "x".repeat(600));
    assert_eq!(c.cmd(&long), "500 5.5.2 Line too long (over 512 octets)");
    assert_eq!(
        c.cmd("VRFY alice"),
        "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b>"), "250 2.1.0 <a@b> Sender OK");
    assert_eq!(c.cmd("RCPT TO:<nobody>"), "550 5.1.1 <nobody> User unknown");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 No valid recipients");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 localhost closing connection");
    assert!(stored(&daemon, "alice").is_empty());
}

#[test]
fn size_limit_is_announced_and_enforced_for_every_recipient() {
    let (daemon, addr) = start_tcp("max_message_size = 1000");
    let mut c = Lmtp::connect(&addr);
    c.send(b"LHLO x\r\n");
    assert!(c.reply().contains(&"250 SIZE 1000".to_owned()));
    assert_eq!(c.cmd("MAIL FROM:<a@b> SIZE=1001"), "552 5.3.4 Message size exceeds fixed limit");
    c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\n");
    for _ in 0..4 {
        assert!(c.line().starts_with(['2', '3']));
    }
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..100 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    c.send(&stuffed(&big));
    assert_eq!(c.line(), "552 5.3.4 Message size exceeds fixed limit");
    assert_eq!(c.line(), "552 5.3.4 Message size exceeds fixed limit");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
    assert!(stored(&daemon, "alice").is_empty() && stored(&daemon, "bob").is_empty());
    // Within the limit, it goes through.
    c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nDATA\r\n");
    for _ in 0..3 {
        c.line();
    }
    c.send(b"Subject: small\r\n\r\nok\r\n.\r\n");
    assert_eq!(c.line(), "250 2.0.0 <alice> Saved");
}

/// An mbox locked by a POP3 session cannot take the message now: 451 for that recipient
/// alone; the MTA's retry after the session ends is stored.
#[test]
fn a_locked_mbox_is_a_temporary_failure_for_its_recipient_only() {
    let (daemon, addr) = start("mbox", "listen = [\"127.0.0.1:0\"]");
    let mut c = Lmtp::connect(&addr);
    c.send(b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<alice>\r\nDATA\r\n");
    c.reply();
    for _ in 0..3 {
        c.line();
    }
    c.send(b"Subject: one\r\n\r\nfirst\r\n.\r\n");
    assert_eq!(c.line(), "250 2.0.0 <alice> Saved");
    // A POP3 session holds alice's mbox.
    let mut pop = Session::connect(&daemon.plain);
    pop.cmd("USER alice");
    assert!(pop.cmd("PASS secret").starts_with("+OK"));
    c.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\n");
    for _ in 0..4 {
        c.line();
    }
    c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\n");
    let alice = c.line();
    assert!(alice.starts_with("451 4.3.0 <alice> "), "{alice}");
    assert_eq!(c.line(), "250 2.0.0 <bob> Saved");
    assert!(pop.cmd("QUIT").starts_with("+OK"));
    // The retry.
    c.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice>\r\nDATA\r\n");
    for _ in 0..3 {
        c.line();
    }
    c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\n");
    assert_eq!(c.line(), "250 2.0.0 <alice> Saved");
    let mbox = std::fs::read(daemon.data.join("mail/alice.mbox")).unwrap();
    let mbox = String::from_utf8_lossy(&mbox);
    assert_eq!(mbox.matches("Subject: two").count(), 1, "{mbox}");
    assert_eq!(mbox.matches("Return-Path: <s@x>").count(), 2, "{mbox}");
}

/// A Maildir that cannot be used (its `tmp/` is a file): its recipient gets 451 4.3.0 at
/// RCPT (the sink is opened there), nothing is stored for it, the others are delivered.
#[test]
fn an_unusable_maildir_is_a_temporary_failure_at_rcpt() {
    let (daemon, addr) = start_tcp("");
    let maildir = daemon.data.join("mail/alice");
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    std::fs::create_dir_all(maildir.join("cur")).unwrap();
    let _ = std::fs::remove_dir_all(maildir.join("tmp"));
    std::fs::write(maildir.join("tmp"), "not a directory").unwrap();
    let mut c = Lmtp::connect(&addr);
    c.send(b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\n");
    c.reply();
    assert_eq!(c.line(), "250 2.1.0 <s@x> Sender OK");
    assert_eq!(c.line(), "451 4.3.0 <alice> Temporary failure, try again later");
    assert_eq!(c.line(), "250 2.1.5 <bob> Recipient OK");
    assert_eq!(c.line(), "354 Start mail input; end with <CRLF>.<CRLF>");
    c.send(b"Subject: x\r\n\r\n.\r\n");
    assert_eq!(c.line(), "250 2.0.0 <bob> Saved");
    assert!(std::fs::read_dir(maildir.join("new")).unwrap().next().is_none());
    assert_eq!(stored(&daemon, "bob").len(), 1);
}

/// 100 recipients (RFC 5321 §4.5.3.1.8's minimum) in one pipelined transaction, the 101st
/// deferred with 452 4.5.3; after DATA, 100 replies, each copy durable.
#[test]
fn a_hundred_recipients_get_a_hundred_replies() {
    let (daemon, addr) = start_tcp("");
    let mut c = Lmtp::connect(&addr);
    let mut envelope = b"LHLO x\r\nMAIL FROM:<list@x>\r\n".to_vec();
    for i in 0..101 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        envelope.extend_from_slice(format!("RCPT TO:<{user}@example.test>\r\n").as_bytes());
    }
    envelope.extend_from_slice(b"DATA\r\n");
    c.send(&envelope);
    c.reply();
    assert_eq!(c.line(), "250 2.1.0 <list@x> Sender OK");
    for i in 0..100 {
        assert!(c.line().starts_with("250 2.1.5 <"), "recipient {i}");
    }
    assert_eq!(c.line(), "452 4.5.3 Too many recipients");
    assert_eq!(c.line(), "354 Start mail input; end with <CRLF>.<CRLF>");
    c.send(b"Subject: to many\r\n\r\nhello\r\n.\r\n");
    for i in 0..100 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        assert_eq!(c.line(), format!("250 2.0.0 <{user}@example.test> Saved"));
    }
    assert_eq!(stored(&daemon, "alice").len(), 50);
    assert_eq!(stored(&daemon, "bob").len(), 50);
}

/// A message of several MiB, many of its lines dot-led, crosses every read boundary: stored
/// byte-exact.
#[test]
fn a_large_message_is_streamed_and_stored_byte_exact() {
    let (daemon, addr) = start_tcp("");
    let mut body = b"Subject: large\r\n\r\n".to_vec();
    let mut n = 0u64;
    while body.len() < 6 << 20 {
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let dots = ".".repeat((n >> 60) as usize % 3);
        let len = (n >> 32) as usize % 300;
        body.extend_from_slice(format!("{dots}{}\r\n", "x".repeat(len)).as_bytes());
    }
    let mut c = Lmtp::connect(&addr);
    c.send(b"LHLO x\r\nMAIL FROM:<big@x>\r\nRCPT TO:<alice>\r\nDATA\r\n");
    c.reply();
    for _ in 0..3 {
        c.line();
    }
    let wire = stuffed(&body);
    let writer = {
        let mut stream = c.writer.try_clone().unwrap();
        std::thread::spawn(move || stream.write_all(&wire).unwrap())
    };
    assert_eq!(c.line(), "250 2.0.0 <alice> Saved");
    writer.join().unwrap();
    assert_eq!(stored(&daemon, "alice"), [expected("big@x", "alice", &body)]);
}

#[test]
fn an_idle_client_is_disconnected() {
    let (_daemon, addr) = start_tcp("idle_timeout = 1");
    let mut c = Lmtp::connect(&addr);
    let started = Instant::now();
    assert_eq!(c.line(), "421 4.4.2 localhost Idle for too long, closing connection");
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut rest = String::new();
    assert_eq!(c.reader.read_line(&mut rest).unwrap(), 0, "closed after the 421");
}

/// SIGTERM: an idle LMTP session is told `421 4.3.2`, pop3d exits cleanly and removes its
/// socket.
#[test]
fn shutdown_tells_idle_sessions_and_removes_the_socket() {
    let (mut daemon, addr) =
        start("maildir", "listen = [\"127.0.0.1:0\"]\nsocket = \"lmtp.sock\"\n");
    let socket = daemon.data.join("lmtp.sock");
    assert!(socket.exists());
    let mut c = Lmtp::connect(&addr);
    c.send(b"LHLO x\r\n");
    c.reply();
    assert!(daemon.stop().success());
    assert_eq!(c.line(), "421 4.3.2 Server shutting down, try again later");
    assert!(!socket.exists(), "the socket file is removed");
}

/// A file that is not a socket where the socket goes is never removed: pop3d refuses to
/// start.
#[test]
fn a_file_in_the_way_of_the_socket_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    output_ok(&run(&["init"], &data, b""), "init");
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    std::fs::write(data.join("pop3d.toml"), format!("{config}\n[lmtp]\nsocket = \"lmtp.sock\"\n"))
        .unwrap();
    std::fs::write(data.join("lmtp.sock"), "precious").unwrap();
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"], &data, b"");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read(data.join("lmtp.sock")).unwrap(), b"precious");
}

#[test]
fn connections_beyond_the_limit_are_told_to_come_back() {
    let (_daemon, addr) = start_tcp("max_connections = 1");
    let mut first = Lmtp::connect(&addr);
    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    assert_eq!(line, "421 4.3.2 Too many connections, try again later\r\n");
    assert_eq!(first.cmd("NOOP"), "250 2.0.0 OK");
}

#[test]
fn no_lmtp_listener_by_default() {
    let mut daemon = Daemon::start();
    daemon.stop();
    let printed = daemon.printed();
    assert!(!printed.iter().any(|l| l.contains("LMTP")), "{printed:?}");
}

/// Python's `smtplib.LMTP`, over the Unix socket (mode 0660) and over TCP.
#[test]
fn python_smtplib_lmtp_delivers() {
    if !peer("python3", "python3") {
        return;
    }
    let (daemon, addr) = start("maildir", "listen = [\"127.0.0.1:0\"]\nsocket = \"lmtp.sock\"\n");
    let socket = daemon.data.join("lmtp.sock");
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
socket, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
msg = b"Subject: from smtplib\r\n\r\n.dot line\r\nbody\r\n"
with smtplib.LMTP(socket) as s:
    code, _ = s.ehlo("py.test")  # LMTP.ehlo sends LHLO
    assert code == 250, code
    assert s.has_extn("pipelining") and s.has_extn("size") and s.has_extn("enhancedstatuscodes")
    assert s.sendmail("py@example.org", ["alice@example.test"], msg) == {}
    try:
        s.sendmail("py@example.org", ["ghost@example.test"], msg)
        sys.exit("unknown recipient accepted")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["ghost@example.test"]
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)
with smtplib.LMTP(host, port) as s:
    s.ehlo("py.test")
    assert s.sendmail("", ["bob"], msg) == {}
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&socket)
        .args([host, port])
        .output()
        .unwrap();
    output_ok(&out, "python3 smtplib.LMTP");
    let msg = b"Subject: from smtplib\r\n\r\n.dot line\r\nbody\r\n";
    assert_eq!(stored(&daemon, "alice"), [expected("py@example.org", "alice@example.test", msg)]);
    assert_eq!(stored(&daemon, "bob"), [expected("", "bob", msg)]);
}

/// A private Postfix instance (its own configuration and queue directories, smtpd on a free
/// loopback port) relays a message for alice, bob and an unknown user of `example.test` to
/// pop3d with `virtual_transport = lmtp:inet:...`: alice and bob get it (one LMTP
/// transaction, a reply each), the unknown recipient bounces on the LMTP 550.
#[test]
fn postfix_delivers_through_lmtp() {
    if !peer("postfix", "postfix") || !root("the Postfix LMTP test") {
        return;
    }
    let (daemon, addr) = start_tcp("");
    postfix_delivery(&daemon, &format!("lmtp:inet:{addr}"));
}

/// Postfix into the PostgreSQL store, as a cluster's MTA delivers.
#[test]
fn postfix_delivers_through_lmtp_into_postgresql() {
    if !peer("postfix", "postfix") || !root("the Postfix LMTP test into PostgreSQL") {
        return;
    }
    let Some((daemon, addr)) = start_postgresql("Postfix LMTP into PostgreSQL") else { return };
    postfix_delivery(&daemon, &format!("lmtp:inet:{addr}"));
}

/// The same over the Unix socket (`lmtp:unix:...`), which Postfix's `lmtp` client (running
/// as `postfix`) reaches with `socket_mode = 0o666`.
#[test]
fn postfix_delivers_through_lmtp_over_a_unix_socket() {
    if !peer("postfix", "postfix") || !root("the Postfix LMTP socket test") {
        return;
    }
    let (daemon, _) = start(
        "maildir",
        "listen = [\"127.0.0.1:0\"]\nsocket = \"lmtp.sock\"\nsocket_mode = 0o666\n",
    );
    use std::os::unix::fs::PermissionsExt;
    // The postfix user must reach the socket's directory.
    for dir in [daemon.dir.path(), &daemon.data] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = daemon.data.join("lmtp.sock");
    postfix_delivery(&daemon, &format!("lmtp:unix:{}", socket.display()));
}

fn postfix_delivery(daemon: &Daemon, transport: &str) {
    let postfix = Postfix::start(&daemon.dir.path().join("postfix"), transport);
    let mut smtp = Lmtp::connect(&postfix.smtpd);
    smtp.send(b"EHLO client.test\r\n");
    smtp.reply();
    for (line, code) in [
        ("MAIL FROM:<sender@example.org>", "250"),
        ("RCPT TO:<alice@example.test>", "250"),
        ("RCPT TO:<ghost@example.test>", "250"),
        ("RCPT TO:<bob@example.test>", "250"),
        ("DATA", "354"),
    ] {
        let reply = smtp.cmd(line);
        assert!(reply.starts_with(code), "{line}: {reply}\n{}", postfix.log());
    }
    let body = b"From: sender@example.org\r\nTo: alice@example.test\r\nSubject: via Postfix\r\n\
                 Message-ID: <postfix-lmtp@example.org>\r\n\r\nHello through LMTP.\r\n.dotted\r\n";
    smtp.send(&stuffed(body));
    let queued = smtp.line();
    assert!(queued.starts_with("250"), "{queued}\n{}", postfix.log());
    smtp.cmd("QUIT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = postfix.log();
        let done = log.matches("status=sent").count() == 2 && log.contains("status=bounced");
        if done && stored(daemon, "alice").len() == 1 && stored(daemon, "bob").len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery within 30 s\npostfix log:\n{log}\npop3d log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for user in ["alice", "bob"] {
        let message = stored(daemon, user).pop().unwrap();
        let text = String::from_utf8_lossy(&message).into_owned();
        let top =
            format!("Return-Path: <sender@example.org>\r\nDelivered-To: {user}@example.test\r\n");
        assert!(text.starts_with(&top), "{text}");
        assert!(text.contains("Subject: via Postfix\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nHello through LMTP.\r\n.dotted\r\n"), "{text}");
    }
    let log = postfix.log();
    let bounced = log.lines().find(|l| l.contains("status=bounced")).unwrap();
    assert!(bounced.contains("<ghost@example.test>") && bounced.contains("550 5.1.1"), "{log}");
}
