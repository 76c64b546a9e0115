//! A cluster as docs/scaling.md describes it, on loopback: one PostgreSQL, two pop3d nodes on
//! it (each with `proxy_from` and an LMTP listener), and the real HAProxy in front balancing
//! POP3 over both, round robin, with `send-proxy-v2` and health checks every 200 ms. Mail comes
//! in by LMTP through either node (Postfix into one of them); curl, mpop, fetchmail and the `pop3`
//! retriever fetch it through HAProxy. The test shows that the nodes see the clients'
//! addresses (in their logs and for the per-address limit), that `kill -9` of the node holding
//! a session after DELE loses and duplicates nothing, that the client's next attempt through
//! HAProxy is served by the other node, and that the dead node's maildrop lock dies with it.
//!
//! Clients bind 127.0.0.2, 127.0.0.3 or 127.0.0.4 where the test needs to tell them apart from
//! HAProxy, whose own address towards the nodes is 127.0.0.1.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fetchmail::Fetchmail;
use common::haproxy::{curl, text, Frontend, Haproxy};
use common::lmtp::{stuffed, Lmtp};
use common::{lf, output_ok, peer, root, Daemon, Session, Store};
use pop3_testkit::peer::free_port;
use pop3_testkit::postfix::Postfix;
use pop3_testkit::transmitted;

/// A stored message: its UIDL and its bytes.
type Message = (String, Vec<u8>);

/// Each node's settings on top of the default ones: HAProxy on 127.0.0.1 sends PROXY headers,
/// at most two connections per client address (a health check and a client from 127.0.0.1
/// fit; a fifth connection from one address over two nodes does not), LMTP on a random port.
fn node_config(config: &str) -> String {
    let trusted = r#"proxy_from = ["127.0.0.1/32"]"#;
    let edited = config
        .replace("proxy_from = []", trusted)
        .replace("max_connections_per_ip = 100", "max_connections_per_ip = 2");
    assert!(edited.contains(trusted) && edited.contains("max_connections_per_ip = 2"));
    edited + "\n[lmtp]\nlisten = [\"127.0.0.1:0\"]\n"
}

/// The address a node's LMTP listener announced.
fn lmtp_address(node: &Daemon) -> String {
    let announced = node.announced("pop3d: LMTP on ").expect("pop3d announces its LMTP listener");
    announced.split(", ").next().unwrap().to_owned()
}

/// `user`'s messages in the database, in delivery order.
fn mailbox(url: &str, user: &str) -> Vec<Message> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .query(
            "SELECT m.uidl, string_agg(c.bytes, ''::bytea ORDER BY c.seq) FROM mailboxes b \
             JOIN messages m ON m.mailbox_id = b.id \
             JOIN message_chunks c ON c.mailbox_id = m.mailbox_id AND c.message_id = m.id \
             WHERE b.user_name = $1 GROUP BY m.id, m.uidl ORDER BY m.id",
            &[&user],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The maildrop locks held in the database: pop3d's session-level advisory locks.
struct Locks(postgres::Client);

impl Locks {
    fn held(&mut self) -> i64 {
        self.0
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .unwrap()
            .get(0)
    }

    /// Waits (at most 5 s) until no maildrop is locked; returns how long that took. A client
    /// that hangs up right after sending QUIT does not wait for the node to let go.
    fn wait_none(&mut self) -> Duration {
        let start = Instant::now();
        while self.held() > 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "a maildrop lock stays held");
            std::thread::sleep(Duration::from_millis(1));
        }
        start.elapsed()
    }
}

/// A TCP connection from `source` (a loopback address) to 127.0.0.1:`port`.
fn connect_from(source: &str, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
            let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
            let stream = stream.into_std()?;
            stream.set_nonblocking(false)?;
            Ok::<_, std::io::Error>(stream)
        })
        .unwrap()
}

/// USER/PASS as alice from `source` through HAProxy on `port`: the session, its local
/// address and the reply to PASS (or the greeting, or nothing, when there was no `+OK`).
fn login_from(source: &str, port: u16) -> (Session, SocketAddr, String) {
    let stream = connect_from(source, port);
    let local = stream.local_addr().unwrap();
    let (mut s, greeting) = Session::greeted(stream);
    if !greeting.starts_with("+OK") {
        return (s, local, greeting);
    }
    s.cmd("USER alice");
    let reply = s.cmd("PASS secret");
    (s, local, reply)
}

/// The lines of a node's log that say a session from `client` logged in.
fn logins<'a>(log: &'a str, client: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("result=\"ok\"") && l.contains(&format!("peer={client}")))
        .collect()
}

/// Which of `nodes` logged in the session from `client` (waiting at most 5 s for its log).
fn serving_node(nodes: &[&Daemon], client: SocketAddr) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let serving: Vec<usize> = (0..nodes.len())
            .filter(|&i| !logins(&nodes[i].log(), &format!("{client} ")).is_empty())
            .collect();
        if let [node] = serving[..] {
            return node;
        }
        assert!(serving.is_empty(), "two nodes logged in one connection");
        assert!(Instant::now() < deadline, "no node logged the login from {client}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Delivers `body` to alice through the LMTP listener at `addr`.
fn deliver_lmtp(addr: &str, body: &[u8]) {
    let mut c = Lmtp::connect(addr);
    c.send(b"LHLO mx.example\r\nMAIL FROM:<sender@example.org>\r\nRCPT TO:<alice>\r\nDATA\r\n");
    c.reply();
    assert_eq!(c.line(), "250 2.1.0 <sender@example.org> Sender OK");
    assert_eq!(c.line(), "250 2.1.5 <alice> Recipient OK");
    assert_eq!(c.line(), "354 Start mail input; end with <CRLF>.<CRLF>");
    c.send(&stuffed(body));
    assert_eq!(c.line(), "250 2.0.0 <alice> Saved");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 localhost closing connection");
}

/// Submits a message for alice@example.test to Postfix's smtpd and waits (at most 30 s) until
/// Postfix has delivered it over LMTP, so that alice has `expect` messages.
fn deliver_postfix(postfix: &Postfix, url: &str, expect: usize) {
    let mut smtp = Lmtp::connect(&postfix.smtpd);
    smtp.send(b"EHLO client.test\r\n");
    smtp.reply();
    for (line, code) in [
        ("MAIL FROM:<sender@example.org>", "250"),
        ("RCPT TO:<alice@example.test>", "250"),
        ("DATA", "354"),
    ] {
        let reply = smtp.cmd(line);
        assert!(reply.starts_with(code), "{line}: {reply}\n{}", postfix.log());
    }
    smtp.send(&stuffed(b"Subject: via Postfix\r\n\r\nHello through the cluster.\r\n"));
    let queued = smtp.line();
    assert!(queued.starts_with("250"), "{queued}\n{}", postfix.log());
    smtp.cmd("QUIT");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(postfix.log().contains("status=sent") && mailbox(url, "alice").len() == expect) {
        assert!(Instant::now() < deadline, "Postfix did not deliver:\n{}", postfix.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `pop3 ARGS` with its state and configuration under `home` and alice's password.
fn pop3(home: &Path, args: &[&str]) -> Output {
    Command::new(common::pop3_binary())
        .args(args)
        .env("POP3_PASSWORD", "secret")
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The messages in a Maildir.
fn maildir_messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        out.extend(entries.map(|e| std::fs::read(e.unwrap().path()).unwrap()));
    }
    out
}

/// `message` without the `Received:` header fetchmail writes (it puts it after a leading
/// `Return-Path` and `Delivered-To`, not in front of everything).
fn without_fetchmail_received(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let mut out = String::new();
    let mut skipping = false;
    let mut in_header = true;
    for line in text.split_inclusive('\n') {
        if in_header && line.trim_end().is_empty() {
            in_header = false;
        }
        if in_header && line.starts_with("Received: from 127.0.0.1 ") {
            skipping = true;
            continue;
        }
        if skipping && (line.starts_with('\t') || line.starts_with(' ')) {
            continue;
        }
        skipping = false;
        out.push_str(line);
    }
    out.into_bytes()
}

/// Each stored message was fetched once, maybe after whole header lines the client adds in
/// front, and nothing else was.
fn assert_fetched(fetched: &[Vec<u8>], stored: &[Message], what: &str) {
    assert_eq!(fetched.len(), stored.len(), "{what}: message count");
    let mut left: Vec<Vec<u8>> = fetched.iter().map(|m| lf(m)).collect();
    for (uidl, body) in stored {
        let body = lf(body);
        let found = left.iter().position(|got| {
            got.ends_with(&body) && {
                let added = &got[..got.len() - body.len()];
                added.is_empty() || added.ends_with(b"\n")
            }
        });
        let found = found.unwrap_or_else(|| panic!("{what}: message {uidl} not fetched as stored"));
        left.remove(found);
    }
}

#[test]
fn two_nodes_behind_haproxy_see_client_addresses_and_survive_a_killed_node() {
    let started = Instant::now();
    let Some(haproxy_binary) = common::haproxy::binary() else { return };
    if !peer("curl", "curl") {
        return;
    }
    let Some(store) = Store::postgresql("pop3d cluster behind HAProxy") else { return };
    let Store::Postgresql(db) = &store else { unreachable!() };
    let url = db.url.clone();
    let mut locks = Locks(postgres::Client::connect(&url, postgres::NoTls).unwrap());

    // Two nodes on one database; alice starts with the three messages `pop3d deliver` put in.
    let node_a = Daemon::start_with(store, node_config);
    let node_b = node_a.another_node();
    let mut nodes = [node_a, node_b];
    let port = free_port();
    let servers = [nodes[0].plain.as_str(), nodes[1].plain.as_str()];
    let haproxy = Haproxy::start(
        &haproxy_binary,
        &[Frontend { name: "pop3", port, servers: &servers }],
        "send-proxy-v2 check inter 200ms fall 1 rise 1",
    );

    // Mail in by LMTP through either node: the MTA may use any of them.
    deliver_lmtp(&lmtp_address(&nodes[0]), b"Subject: LMTP via node 1\r\n\r\none\r\n");
    deliver_lmtp(&lmtp_address(&nodes[1]), b"Subject: LMTP via node 2\r\n\r\n.two\r\n");
    let mut expect = 5;
    if peer("postfix", "postfix") && root("the Postfix delivery into the cluster") {
        let transport = format!("lmtp:inet:{}", lmtp_address(&nodes[1]));
        let postfix = Postfix::start(&nodes[1].dir.path().join("postfix"), &transport);
        expect += 1;
        deliver_postfix(&postfix, &url, expect);
    }
    let stored = mailbox(&url, "alice");
    assert_eq!(stored.len(), expect, "every delivery is stored once");

    // Clients through HAProxy. curl from 127.0.0.2 and 127.0.0.3 (RETR 1 and LIST).
    let url_plain = format!("pop3://alice:secret@127.0.0.1:{port}");
    let out = curl(&["--interface", "127.0.0.2", &format!("{url_plain}/1")]);
    assert!(out.status.success(), "curl RETR: {}\n{}", text(&out), haproxy.log());
    assert_eq!(out.stdout, transmitted(&stored[0].1), "RETR 1 through HAProxy");
    locks.wait_none();
    let out = curl(&["--interface", "127.0.0.3", &format!("{url_plain}/")]);
    assert!(out.status.success(), "curl LIST: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), expect, "LIST");
    locks.wait_none();

    // mpop with STLS, keeping the mail.
    let cert = nodes[0].cert();
    if peer("mpop", "mpop") {
        let home = nodes[0].dir.path().join("mpop");
        let maildir = home.join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let conf = home.join("mpoprc");
        std::fs::write(
            &conf,
            format!(
                "defaults\nuidls_file {home}/uidls\naccount default\nhost 127.0.0.1\n\
                 port {port}\nuser alice\npassword secret\nauth user\ntls on\ntls_starttls on\n\
                 tls_trust_file {cert}\npipelining on\nreceived_header off\n\
                 delivery maildir {maildir}\nkeep on\nonly_new off\n",
                home = home.display(),
                cert = cert.display(),
                maildir = maildir.display(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = Command::new("mpop").arg("-C").arg(&conf).arg("-q").env("HOME", &home).output();
        output_ok(&out.unwrap(), "mpop through HAProxy");
        assert_fetched(&maildir_messages(&maildir), &stored, "mpop");
        locks.wait_none();
    }

    // fetchmail with STLS (certificate checked), keeping the mail.
    if peer("fetchmail", "fetchmail") {
        let fetchmail = Fetchmail::new(&nodes[0].dir.path().join("fetchmail"));
        let out = fetchmail.poll(&port.to_string(), &cert, "keep fetchall no rewrite");
        output_ok(&out, "fetchmail through HAProxy");
        let fetched: Vec<Vec<u8>> =
            fetchmail.take().iter().map(|m| without_fetchmail_received(m)).collect();
        assert_fetched(&fetched, &stored, "fetchmail");
        locks.wait_none();
    }

    // The project's own retriever, with STLS, keeping the mail.
    let home = nodes[0].dir.path().join("pop3-keep");
    let maildir = home.join("Mail");
    let to = format!("maildir:{}", maildir.display());
    let account = format!("pop3://alice@127.0.0.1:{port}");
    let cert_arg = cert.display().to_string();
    let keep = ["fetch", "-q", "--keep", "--tls-ca", &cert_arg, "--to", &to, &account];
    output_ok(&pop3(&home, &keep), "pop3 fetch --keep through HAProxy");
    assert_fetched(&maildir_messages(&maildir), &stored, "pop3 fetch --keep");
    locks.wait_none();
    assert_eq!(mailbox(&url, "alice"), stored, "keeping deletes nothing");

    // Round robin: both nodes served logins, and logged the clients' addresses, with
    // HAProxy's as the proxy.
    let logs = [nodes[0].log(), nodes[1].log()];
    for (i, log) in logs.iter().enumerate() {
        assert!(log.contains("result=\"ok\""), "node {} served nobody:\n{log}", i + 1);
    }
    for client in ["127.0.0.2:", "127.0.0.3:"] {
        let seen: Vec<&str> = logs.iter().flat_map(|log| logins(log, client)).collect();
        assert_eq!(seen.len(), 1, "one login from {client}: {logs:?}");
        assert!(seen[0].contains("proxy=127.0.0.1:"), "{}", seen[0]);
    }

    // The per-address limit counts the client's address: two connections per node from
    // 127.0.0.2 (round robin spreads them), then one more from there is refused, while one
    // from 127.0.0.3 is served. Counted by HAProxy's address, that one would be refused too.
    let mut held = Vec::new();
    let refused = loop {
        let (s, greeting) = Session::greeted(connect_from("127.0.0.2", port));
        if !greeting.starts_with("+OK") {
            break greeting;
        }
        held.push(s);
        assert!(held.len() <= 4, "more than two connections per node from 127.0.0.2");
    };
    assert_eq!(refused, "-ERR [SYS/TEMP] too many connections, try again later");
    assert_eq!(held.len(), 4, "two per node from one address, then a refusal");
    let (other, greeting) = Session::greeted(connect_from("127.0.0.3", port));
    assert!(greeting.starts_with("+OK"), "another client address is served: {greeting}");
    let logs = [nodes[0].log(), nodes[1].log()];
    let refused = |client: &str| {
        let refusal = |l: &&str| l.contains("connection limit") && l.contains(client);
        logs.iter().flat_map(|log| log.lines().filter(refusal)).count()
    };
    assert_eq!(refused("peer=127.0.0.2:"), 1, "{logs:?}");
    assert_eq!(refused("peer=127.0.0.3:"), 0, "{logs:?}");
    drop((held, other));

    // A session from 127.0.0.4 marks two messages deleted; its node dies with SIGKILL before
    // QUIT.
    let (mut session, client, reply) = login_from("127.0.0.4", port);
    assert!(reply.starts_with(&format!("+OK maildrop has {expect} ")), "{reply}");
    assert!(session.cmd("UIDL").starts_with("+OK"));
    let listing = String::from_utf8(session.body()).unwrap();
    let uidls: Vec<&str> = listing.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    let stored_uidls: Vec<&str> = stored.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(uidls, stored_uidls, "UIDL through HAProxy is the database's");
    assert!(session.cmd("DELE 1").starts_with("+OK"));
    assert!(session.cmd("DELE 2").starts_with("+OK"));
    assert_eq!(locks.held(), 1, "the session holds alice's maildrop lock");
    let dead = serving_node(&[&nodes[0], &nodes[1]], client);
    let alive = 1 - dead;
    nodes[dead].child.kill().unwrap(); // SIGKILL
    nodes[dead].child.wait().unwrap();
    let killed = Instant::now();
    let released = locks.wait_none();
    eprintln!("node {} killed: its maildrop lock was released {released:?} later", dead + 1);
    assert_eq!(mailbox(&url, "alice"), stored, "no QUIT, nothing deleted");
    drop(session);

    // The client's next attempt goes through HAProxy to the other node, which logs alice in
    // (no `[IN-USE]`) with every message.
    let deadline = killed + Duration::from_secs(10);
    let (mut session, client) = loop {
        let (session, client, reply) = login_from("127.0.0.4", port);
        if reply.starts_with("+OK") {
            assert!(reply.starts_with(&format!("+OK maildrop has {expect} ")), "{reply}");
            break (session, client);
        }
        // Only while HAProxy has no server to give: never `-ERR [IN-USE]`, the dead node's
        // lock is gone (above).
        assert!(reply.is_empty(), "{reply}");
        assert!(Instant::now() < deadline, "no node served alice: {reply}\n{}", haproxy.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("the client was served again {:?} after the kill", killed.elapsed());
    assert_eq!(serving_node(&[&nodes[0], &nodes[1]], client), alive);
    assert!(session.cmd("UIDL").starts_with("+OK"));
    assert_eq!(String::from_utf8(session.body()).unwrap(), listing, "the same UIDLs");
    assert!(session.cmd("QUIT").starts_with("+OK"));
    locks.wait_none();
    assert_eq!(mailbox(&url, "alice"), stored, "nothing lost, nothing duplicated");

    // The cluster goes on with one node: delivery through it, then a fetch that deletes.
    deliver_lmtp(&lmtp_address(&nodes[alive]), b"Subject: after the kill\r\n\r\nthree\r\n");
    let stored = mailbox(&url, "alice");
    assert_eq!(stored.len(), expect + 1);
    let home = nodes[alive].dir.path().join("pop3-delete");
    let maildir = home.join("Mail");
    let to = format!("maildir:{}", maildir.display());
    let delete = ["fetch", "-q", "--delete", "--tls-ca", &cert_arg, "--to", &to, &account];
    output_ok(&pop3(&home, &delete), "pop3 fetch --delete through HAProxy");
    assert_fetched(&maildir_messages(&maildir), &stored, "pop3 fetch --delete");
    assert!(mailbox(&url, "alice").is_empty(), "fetched with --delete: deleted after QUIT");
    eprintln!("cluster test: {:?}", started.elapsed());
}
