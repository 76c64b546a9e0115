//! pop3d with `[mail] format = "postgresql"` against a real PostgreSQL (pop3-testkit's
//! throwaway clusters; skipped loudly without PostgreSQL, failed under CI=true): the whole
//! path end to end, two nodes on one database, a node killed with SIGKILL, and the database
//! stopped and started again under a running server.

mod common;

use std::time::{Duration, Instant};

use common::{messages, output_ok, run, Daemon, Session, Store};
use pop3_testkit::transmitted;

/// RFC 1939 §3 byte-stuffing of a transmitted message, as it appears on the wire.
fn stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out
}

#[test]
fn mail_in_postgresql_is_delivered_served_byte_exact_and_deleted_only_after_quit() {
    let Some(store) = Store::postgresql("pop3d postgresql end to end") else { return };
    let daemon = Daemon::start_on(store);
    let stored = messages();
    assert_eq!(daemon.stored("alice"), stored, "pop3d deliver stored the bytes as given");

    let (mut c, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("+OK maildrop has 3 "), "{reply}\n{}", daemon.log());
    assert!(c.cmd("LIST").starts_with("+OK"));
    let listing = String::from_utf8(c.body()).unwrap();
    let expected: String = stored
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}\r\n", i + 1, transmitted(m).len()))
        .collect();
    assert_eq!(listing, expected, "exact RFC 1939 sizes");
    assert!(c.cmd("UIDL").starts_with("+OK"));
    let uidls = String::from_utf8(c.body()).unwrap();
    for (i, m) in stored.iter().enumerate() {
        let reply = c.cmd(&format!("RETR {}", i + 1));
        assert!(reply.starts_with("+OK"), "{reply}\n{}", daemon.log());
        assert_eq!(c.body(), stuffed(&transmitted(m)), "RETR {}", i + 1);
    }
    // TOP: the headers, the blank line and two body lines.
    assert!(c.cmd("TOP 3 2").starts_with("+OK"));
    let top = c.body();
    let text = String::from_utf8(top).unwrap();
    assert!(text.ends_with("\r\n\r\nline 00000: the quick brown fox jumps over it\r\nline 00001: the quick brown fox jumps over it\r\n"), "{text}");
    assert!(c.cmd("DELE 2").starts_with("+OK"));
    // Another session meanwhile: the maildrop is locked.
    let (_other, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
    assert_eq!(daemon.stored("alice").len(), 3, "nothing deleted before QUIT");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert_eq!(daemon.stored("alice"), vec![stored[0].clone(), stored[2].clone()]);

    // QUIT without deletions releases the lock before its +OK: logging in again at once works
    // (a mail client polling, a load generator looping).
    for _ in 0..20 {
        let (mut c, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
        assert!(reply.starts_with("+OK maildrop has 2 "), "{reply}");
        assert!(c.cmd("QUIT").starts_with("+OK"));
    }

    // The UIDLs are stable across sessions.
    let (mut c, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("+OK maildrop has 2 "), "{reply}");
    assert!(c.cmd("UIDL").starts_with("+OK"));
    let again = String::from_utf8(c.body()).unwrap();
    let uidl_of = |listing: &str, n: usize| {
        listing.lines().nth(n).unwrap().split_once(' ').unwrap().1.to_owned()
    };
    assert_eq!(uidl_of(&again, 0), uidl_of(&uidls, 0));
    assert_eq!(uidl_of(&again, 1), uidl_of(&uidls, 2));
    c.cmd("QUIT");
}

#[test]
fn two_nodes_share_mailboxes_lock_across_nodes_and_a_killed_node_frees_its_locks() {
    let Some(store) = Store::postgresql("pop3d postgresql two nodes") else { return };
    let mut node_a = Daemon::start_on(store);
    let node_b = node_a.another_node();
    let stored = messages();

    let (mut held, reply) = Session::logged_in(&node_a.plain, "alice", "secret");
    assert!(reply.starts_with("+OK maildrop has 3 "), "{reply}");
    let (_, reply) = Session::logged_in(&node_b.plain, "alice", "secret");
    assert!(reply.starts_with("-ERR [IN-USE]"), "the other node: {reply}");
    // Marked for deletion on node A, which then dies without QUIT.
    assert!(held.cmd("DELE 1").starts_with("+OK"));
    node_a.child.kill().unwrap(); // SIGKILL
    node_a.child.wait().unwrap();
    let killed = Instant::now();

    // The lock dies with node A's connections: node B serves the maildrop within seconds.
    let deadline = killed + Duration::from_secs(10);
    let mut c = loop {
        let (c, reply) = Session::logged_in(&node_b.plain, "alice", "secret");
        if reply.starts_with("+OK") {
            assert!(reply.starts_with("+OK maildrop has 3 "), "nothing lost: {reply}");
            break c;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
        assert!(Instant::now() < deadline, "the killed node's lock was not released");
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("lock released {:?} after SIGKILL", killed.elapsed());
    for (i, m) in stored.iter().enumerate() {
        assert!(c.cmd(&format!("RETR {}", i + 1)).starts_with("+OK"));
        assert_eq!(c.body(), stuffed(&transmitted(m)), "RETR {} on node B", i + 1);
    }
    assert!(c.cmd("DELE 3").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let left = node_b.stored("alice");
    assert_eq!(left, vec![stored[0].clone(), stored[1].clone()], "exactly node B's deletion");
    // Delivery works through either node's configuration.
    output_ok(&run(&["deliver", "alice"], &node_b.data, b"Subject: b\n\nvia b\n"), "deliver");
    assert_eq!(node_b.stored("alice").len(), 3);
}

#[test]
fn a_database_lost_mid_session_ends_it_with_sys_temp_deletes_nothing_and_the_server_recovers() {
    let Some(cluster) = pop3_testkit::postgres::Cluster::private("pop3d postgresql restart") else {
        return;
    };
    let url = cluster.database();
    // Store::Postgresql wants the shared cluster; this test owns its own, so it configures
    // the data dir by hand.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    output_ok(&run(&["user", "add", "alice", "--password-stdin"], &data, b"secret\n"), "user");
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let config = config.replace("format = \"maildir\"", "format = \"postgresql\"")
        + &format!("\n[postgresql]\nurl = \"{url}\"\n");
    std::fs::write(data.join("pop3d.toml"), config).unwrap();
    // No `db migrate`: serve migrates a schema that is behind (here: none) and says so.
    let daemon = Daemon::serve(dir, data.clone());
    assert!(daemon.log().contains("migrating"), "{}", daemon.log());
    for m in messages() {
        output_ok(&run(&["deliver", "alice"], &data, &m), "deliver");
    }

    let (mut c, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("+OK maildrop has 3 "), "{reply}");
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("DELE 2").starts_with("+OK"));
    cluster.stop();
    let quit = c.cmd("QUIT");
    assert!(quit.starts_with("-ERR [SYS/TEMP]"), "{quit}");
    let (_, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "database down: {reply}");
    let down = run(&["deliver", "alice"], &data, b"Subject: x\n\nx\n");
    assert_eq!(down.status.code(), Some(75), "deliver retries later: {down:?}");

    cluster.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        let (c, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
        if reply.starts_with("+OK") {
            assert!(reply.starts_with("+OK maildrop has 3 "), "nothing deleted: {reply}");
            break c;
        }
        assert!(Instant::now() < deadline, "no recovery: {reply}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(c.cmd("RETR 1").starts_with("+OK"));
    assert_eq!(c.body(), stuffed(&transmitted(&messages()[0])));
    c.cmd("QUIT");
}

#[test]
fn serve_with_the_database_down_exits_75_and_says_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    output_ok(&run(&["init"], &data, b""), "init");
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let config = config.replace("format = \"maildir\"", "format = \"postgresql\"")
        + &format!("\n[postgresql]\nurl = \"postgresql://pop3d:pw@127.0.0.1:{port}/mail\"\n");
    std::fs::write(data.join("pop3d.toml"), config).unwrap();
    let out = run(&["serve", "--listen", "127.0.0.1:0"], &data, b"");
    assert_eq!(out.status.code(), Some(75), "EX_TEMPFAIL: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the PostgreSQL server") && !err.contains(":pw@"), "{err}");
    // A format that needs the database, without one: a configuration error.
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let without = &config[..config.find("\n[postgresql]").unwrap()];
    std::fs::write(data.join("pop3d.toml"), without).unwrap();
    let out = run(&["check-config"], &data, b"");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a [postgresql] url"));
}

/// A process's resident memory in KiB: `VmRSS` (now) or `VmHWM` (its peak) from /proc.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_50_mb_message_is_streamed_from_the_database_with_bounded_server_memory() {
    let Some(store) = Store::postgresql("pop3d postgresql 50 MB RETR") else { return };
    let daemon = Daemon::start_on(store);
    let line = b"0123456789 the quick brown fox jumps over the lazy dog 0123456789 abcdefghij\n";
    let mut big = b"Subject: big\n\n".to_vec();
    while big.len() < 50 << 20 {
        big.extend_from_slice(line);
    }
    output_ok(&run(&["deliver", "alice"], &daemon.data, &big), "deliver 50 MB");

    let (mut c, reply) = Session::logged_in(&daemon.plain, "alice", "secret");
    assert!(reply.starts_with("+OK maildrop has 4 "), "{reply}");
    let pid = daemon.child.id();
    let before = memory_kib(pid, "VmRSS:");
    assert!(c.cmd("RETR 4").starts_with("+OK"));
    let body = c.body();
    let peak = memory_kib(pid, "VmHWM:");
    assert_eq!(body.len() as u64, transmitted(&big).len() as u64, "the whole message arrived");
    assert!(body == transmitted(&big), "byte-exact");
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!("pop3d: RSS {before} KiB before RETR, peak {peak} KiB");
    assert!(grown_mib < 16, "a 50 MB RETR grew pop3d by {grown_mib} MiB: not streamed");
    c.cmd("QUIT");
}
