//! `[metrics]`: the counters move by exactly what clients did, `promtool check metrics`
//! accepts the exposition (skipped loudly without promtool, failed under CI=true), `/health`
//! follows the mail store, `pop3d status` reports it with its exit codes, and nothing listens
//! when the section is left out.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lmtp::Lmtp;
use common::{peer, run, Daemon, Session, Store};

/// A daemon with metrics on a fixed free port (`pop3d status` reads it from the config), no
/// failed-login delay, a short penalty, four connections per address before login, and LMTP.
fn daemon() -> (Daemon, String) {
    let port = pop3_testkit::peer::free_port();
    let addr = format!("127.0.0.1:{port}");
    let listen = format!("[metrics]\nlisten = \"{addr}\"\n");
    let daemon = Daemon::start_configured(|config| {
        let config = config
            .replace("auth_failure_delay_ms = 2000", "auth_failure_delay_ms = 0")
            .replace("auth_penalty_initial_ms = 2000", "auth_penalty_initial_ms = 50")
            .replace("max_connections_per_ip = 100", "max_connections_per_ip = 4");
        format!("{config}\n{listen}\n[lmtp]\nlisten = [\"127.0.0.1:0\"]\n")
    });
    let announced =
        daemon.announced("pop3d: metrics on ").expect("the metrics listener is announced");
    assert!(announced.starts_with(&format!("http://{addr}/metrics")), "{announced}");
    (daemon, addr)
}

/// One HTTP request; the status code and the body.
fn http(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned())
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"))
}

fn scrape(addr: &str) -> String {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name` (labels included, as rendered).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Asserts that each sample moved by exactly its amount from `before` to `after`.
fn assert_moved(before: &str, after: &str, expected: &[(&str, f64)]) {
    for (name, amount) in expected {
        let moved = sample(after, name) - sample(before, name);
        assert_eq!(moved, *amount, "{name} moved by {moved}, expected {amount}\n{after}");
    }
}

/// Waits until the server has released every session's slot.
fn wait_idle(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(addr);
        if sample(&text, "pop3_connections_open") == 0.0 {
            return text;
        }
        assert!(Instant::now() < deadline, "sessions still open:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(daemon: &Daemon) -> (i32, String) {
    let out = run(&["status"], &daemon.data, b"");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[test]
fn counters_move_by_what_clients_did_and_health_and_status_follow_the_mail_store() {
    let (mut daemon, addr) = daemon();
    let before = wait_idle(&addr);

    // A login, a RETR (its response bytes counted by the client), QUIT without deletion.
    let (mut s, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(s.cmd("STAT").starts_with("+OK"));
    let status_line = s.cmd("RETR 1");
    assert!(status_line.starts_with("+OK"), "{status_line}");
    let retr_bytes = status_line.len() + 2 + s.body().len() + 3;
    assert!(s.cmd("QUIT").starts_with("+OK"));
    // A wrong password: the next attempt from this network waits (a penalty).
    let (mut s, reply) = Session::logged_in(&daemon.plain, "alice", "wrong-password");
    assert!(reply.starts_with("-ERR"), "{reply}");
    s.cmd("QUIT");
    // DELE in one session while a second one finds the maildrop locked.
    let (mut a, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(a.cmd("DELE 1").starts_with("+OK"));
    let (mut b, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
    b.cmd("QUIT");
    assert!(a.cmd("QUIT").starts_with("+OK"));
    let after = wait_idle(&addr);
    let logins =
        |result: &str| format!("pop3_logins_total{{mechanism=\"USER\",result=\"{result}\"}}");
    let command = |name: &str| format!("pop3_commands_total{{command=\"{name}\"}}");
    assert_moved(
        &before,
        &after,
        &[
            ("pop3_connections_total", 4.0),
            (&logins("ok"), 2.0),
            (&logins("bad_credentials"), 1.0),
            (&logins("in_use"), 1.0),
            (&logins("temporary"), 0.0),
            ("pop3_auth_duration_seconds_count", 4.0),
            ("pop3_auth_penalties_total", 1.0),
            (&command("USER"), 4.0),
            (&command("PASS"), 4.0),
            (&command("STAT"), 1.0),
            (&command("RETR"), 1.0),
            (&command("DELE"), 1.0),
            (&command("QUIT"), 4.0),
            (&command("other"), 0.0),
            ("pop3_message_bytes_sent_total", retr_bytes as f64),
            ("pop3_commits_total{result=\"ok\"}", 2.0),
            ("pop3_commits_total{result=\"failed\"}", 0.0),
            ("pop3_deleted_messages_total", 1.0),
            ("pop3_lock_conflicts_total", 1.0),
            ("pop3_backend_errors_total{backend=\"mail\"}", 0.0),
            ("pop3_connections_refused_total{limit=\"total\"}", 0.0),
        ],
    );

    // A fifth connection from this address before login is refused.
    let held: Vec<Session> = (0..4).map(|_| Session::connect(&daemon.plain)).collect();
    let (_, refused) = Session::greeted(TcpStream::connect(&daemon.plain).unwrap());
    assert!(refused.starts_with("-ERR [SYS/TEMP]"), "{refused}");
    drop(held);
    let limited = wait_idle(&addr);
    assert_moved(
        &after,
        &limited,
        &[
            ("pop3_connections_total", 5.0),
            ("pop3_connections_refused_total{limit=\"per_ip\"}", 1.0),
            ("pop3_connections_refused_total{limit=\"total\"}", 0.0),
        ],
    );
    let after = limited;

    // LMTP: one recipient stored, one unknown.
    let lmtp = daemon.announced("pop3d: LMTP on ").expect("the LMTP listener is announced");
    let mut c = Lmtp::connect(&lmtp);
    c.send(b"LHLO mx.example\r\n");
    c.reply();
    assert!(c.cmd("MAIL FROM:<sender@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<nobody>").starts_with("550"));
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: counted\r\n\r\nHello.\r\n.").starts_with("250"));
    c.cmd("QUIT");
    let delivered = scrape(&addr);
    let lmtp = |result: &str| format!("pop3_lmtp_deliveries_total{{result=\"{result}\"}}");
    assert_moved(
        &after,
        &delivered,
        &[(&lmtp("accepted"), 1.0), (&lmtp("permanent"), 1.0), (&lmtp("temporary"), 0.0)],
    );
    let after = delivered;

    // TLS: a handshake that works on each listener (openssl s_client, implicit and after
    // STLS), and one that cannot (plain text on the POP3S port).
    if peer("openssl", "openssl") {
        let mut client = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &daemon.tls])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        client.stdin.take().unwrap().write_all(b"QUIT\r\n").unwrap();
        let out = client.wait_with_output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("+OK"), "{out:?}");
        let mut client = Command::new("openssl")
            .args(["s_client", "-quiet", "-starttls", "pop3", "-connect", &daemon.plain])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        client.stdin.take().unwrap().write_all(b"QUIT\r\n").unwrap();
        let out = client.wait_with_output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("+OK"), "{out:?}");
        let mut raw = TcpStream::connect(&daemon.tls).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        raw.write_all(b"USER alice\r\n\r\n").unwrap();
        let _ = raw.read_to_end(&mut Vec::new());
        let tls = wait_idle(&addr);
        let handshakes = |kind: &str, result: &str| {
            format!("pop3_tls_handshakes_total{{kind=\"{kind}\",result=\"{result}\"}}")
        };
        assert_moved(
            &after,
            &tls,
            &[
                ("pop3_connections_total", 3.0),
                (&handshakes("implicit", "ok"), 1.0),
                (&handshakes("implicit", "failed"), 1.0),
                (&handshakes("stls", "ok"), 1.0),
                (&handshakes("stls", "failed"), 0.0),
                ("pop3_commands_total{command=\"STLS\"}", 1.0),
            ],
        );
    }

    // The exposition is what Prometheus reads.
    let text = scrape(&addr);
    assert!(text.contains("# TYPE pop3_auth_duration_seconds histogram"), "{text}");
    if peer("promtool", "prometheus") {
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");
    }

    // Health follows the mail store; status reports it.
    assert_eq!(get(&addr, "/health"), (200, "ok\n".to_owned()));
    let (code, said) = status(&daemon);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("healthy") && said.contains("logins: 2 succeeded"), "{said}");
    let mail = daemon.data.join("mail");
    let moved = daemon.data.join("mail.away");
    std::fs::rename(&mail, &moved).unwrap();
    let (code, body) = get(&addr, "/health");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("unhealthy: mail base ") && body.contains("/mail"), "{body}");
    let (code, said) = status(&daemon);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("UNHEALTHY") && said.contains("mail base"), "{said}");
    std::fs::rename(&moved, &mail).unwrap();
    assert_eq!(get(&addr, "/health").0, 200);

    // Only the two paths, only GET and HEAD.
    assert_eq!(get(&addr, "/").0, 404);
    assert_eq!(http(&addr, "DELETE /metrics HTTP/1.1\r\n\r\n").0, 405);

    assert!(daemon.stop().success());
    let (code, said) = status(&daemon);
    assert_eq!(code, 69, "{said}");
    assert!(said.contains(&format!("cannot ask pop3d on {addr}")), "{said}");
}

#[test]
fn health_follows_the_postgresql_store() {
    let test = "health_follows_the_postgresql_store";
    let Some(cluster) = pop3_testkit::postgres::Cluster::private(test) else { return };
    let cluster = std::sync::Arc::new(cluster);
    let addr = format!("127.0.0.1:{}", pop3_testkit::peer::free_port());
    let store = Store::on_cluster(std::sync::Arc::clone(&cluster));
    let mut daemon =
        Daemon::start_with(store, |config| format!("{config}\n[metrics]\nlisten = \"{addr}\"\n"));
    assert_eq!(get(&addr, "/health"), (200, "ok\n".to_owned()));
    // A session leaves a connection in the pool, which the stop breaks.
    assert!(Session::login(&daemon.plain, "alice", "secret").starts_with("+OK"));
    cluster.stop();
    let (code, body) = get(&addr, "/health");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("unhealthy: mail store: "), "{body}");
    let (code, said) = status(&daemon);
    assert_eq!(code, 1, "{said}");
    cluster.start_again();
    assert_eq!(get(&addr, "/health"), (200, "ok\n".to_owned()));
    assert!(daemon.stop().success());
}

/// Socket inodes the process `pid` listens on (TCP, IPv4 and IPv6).
fn listening_sockets(pid: u32) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(entry.unwrap().path()).unwrap_or_default();
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            inodes.insert(inode.to_owned());
        }
    }
    let mut listening = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; the inode is the tenth field.
            if fields.get(3) == Some(&"0A") && fields.get(9).is_some_and(|i| inodes.contains(*i)) {
                listening += 1;
            }
        }
    }
    listening
}

#[test]
fn metrics_are_off_by_default_and_status_says_so() {
    let mut daemon = Daemon::start();
    assert!(daemon.announced("pop3d: metrics").is_none());
    assert_eq!(listening_sockets(daemon.child.id()), 2, "only the POP3 and POP3S listeners");
    let (code, said) = status(&daemon);
    assert_eq!(code, 69, "{said}");
    assert!(said.contains("metrics are off"), "{said}");
    assert!(daemon.stop().success());
}
