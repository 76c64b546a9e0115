//! The PostgreSQL backend against a real server (pop3-testkit's throwaway cluster; skipped
//! loudly without PostgreSQL, failed under CI=true): snapshots, exact sizes, chunked bodies,
//! the cluster-wide lock, commit, delivery, and a database that goes away mid-session.

use std::io::Read;

use pop3_storage::postgres::{migrate, PgOptions, PgStore};
use pop3_storage::sink::{deliver_one, Begun, Incoming};
use pop3_storage::{rfc1939_size, Backend, Envelope, Error, ErrorKind, Maildrop, User};
use postgres::{Client, NoTls};

fn store(url: &str) -> PgStore {
    PgStore::new(url, PgOptions::default()).unwrap()
}

fn deliver(store: &PgStore, user: &str, message: &[u8]) {
    store.deliver(&User::new(user), &mut &message[..], &Envelope::default()).unwrap();
}

fn read_all(drop: &dyn Maildrop, index: usize) -> Vec<u8> {
    let mut body = Vec::new();
    drop.read_message(index).unwrap().read_to_end(&mut body).unwrap();
    body
}

fn uidls(drop: &dyn Maildrop) -> Vec<String> {
    drop.messages().iter().map(|m| m.uidl.clone()).collect()
}

/// A fresh migrated database of the shared test cluster.
fn database(test: &str) -> Option<(std::sync::Arc<pop3_testkit::postgres::Cluster>, String)> {
    let cluster = pop3_testkit::postgres::cluster(test)?;
    let url = cluster.database();
    migrate(&url).unwrap();
    Some((cluster, url))
}

/// A body of `len` octets with bare-LF lines, spanning several 64 KiB chunks when long.
fn big_body(len: usize) -> Vec<u8> {
    let mut body = b"Subject: big\n\n".to_vec();
    let mut i = 0u64;
    while body.len() < len {
        body.extend_from_slice(format!("line {i} of a long message\n").as_bytes());
        i += 1;
    }
    body.truncate(len);
    body
}

#[test]
fn delivered_messages_are_served_byte_exact_with_rfc_1939_sizes_and_commit_removes_exactly_the_deleted(
) {
    let Some((_cluster, url)) = database("postgres backend round trip") else { return };
    let pg = store(&url);
    let messages: Vec<Vec<u8>> = vec![
        b"Subject: one\n\nbare LFs\n".to_vec(),
        Vec::new(),
        b"Subject: three\r\n\r\nCRLF, no final line end".to_vec(),
        big_body(300_000),
        big_body(2 * 64 * 1024), // exactly two chunks: the reader's last fetch is empty
    ];
    for m in &messages {
        deliver(&pg, "alice", m);
    }
    let mut drop = pg.open(&User::new("alice")).unwrap();
    assert_eq!(drop.messages().len(), messages.len());
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(drop.messages()[i].size, rfc1939_size(m), "size of message {i}");
        assert_eq!(read_all(&*drop, i), *m, "body of message {i}");
    }
    let before = uidls(&*drop);
    let mut unique = before.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), before.len(), "UIDLs are unique: {before:?}");
    assert!(before.iter().all(|u| pop3_storage::is_valid_uidl(u)), "{before:?}");

    // Delivered during the session: outside the snapshot, untouched by the commit.
    deliver(&pg, "alice", b"Subject: late\n\n");
    assert!(matches!(drop.commit(&[9]), Err(Error::NoSuchMessage(9))));
    drop.commit(&[0, 3, 0]).unwrap();
    assert!(matches!(drop.read_message(1), Err(Error::Committed)));
    std::mem::drop(drop);

    let drop = open_eventually(&pg, &User::new("alice"));
    let after = uidls(&*drop);
    assert_eq!(after[..3], [before[1].clone(), before[2].clone(), before[4].clone()]);
    assert_eq!(after.len(), 4, "the late message is there: {after:?}");
    assert_eq!(read_all(&*drop, 3), b"Subject: late\n\n");
    // Another user's maildrop is empty and separate.
    assert!(pg.open(&User::new("bob")).unwrap().messages().is_empty());
    assert!(matches!(pg.open(&User::new("a/b")), Err(Error::InvalidUser(_))));
}

#[test]
fn the_maildrop_lock_holds_across_nodes_and_is_released_on_commit_and_on_drop() {
    let Some((_cluster, url)) = database("postgres backend lock") else { return };
    let (node_a, node_b) = (store(&url), store(&url));
    deliver(&node_a, "carol", b"Subject: x\n\n");
    let alice = User::new("carol");
    let held = node_a.open(&alice).unwrap();
    assert_eq!(node_b.open(&alice).unwrap_err().kind(), ErrorKind::InUse, "other node");
    assert_eq!(node_a.open(&alice).unwrap_err().kind(), ErrorKind::InUse, "same node");
    assert!(node_b.open(&User::new("dave")).is_ok(), "other users are not locked");
    // Dropped (maybe on an async runtime thread): unlocked moments later, by a thread.
    std::mem::drop(held);
    let mut held = open_eventually(&node_b, &alice);
    assert_eq!(node_a.open(&alice).unwrap_err().kind(), ErrorKind::InUse);
    held.commit(&[]).unwrap();
    let held = node_a.open(&alice).unwrap(); // a commit unlocks at once
    assert_eq!(held.messages().len(), 1, "nothing deleted without marks");
}

/// Opens `user`'s maildrop, retrying while it is in use (for at most 5 s).
fn open_eventually(store: &PgStore, user: &User) -> Box<dyn Maildrop> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match store.open(user) {
            Err(e) if e.kind() == ErrorKind::InUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            opened => return opened.unwrap(),
        }
    }
}

/// The backend pids holding advisory locks.
fn lock_holders(url: &str) -> Vec<i32> {
    let mut c = Client::connect(url, NoTls).unwrap();
    c.query("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_lost_lock_connection_frees_the_maildrop_and_its_old_session_deletes_nothing() {
    let Some((_cluster, url)) = database("postgres backend lost lock") else { return };
    let (node_a, node_b) = (store(&url), store(&url));
    deliver(&node_a, "erin", b"Subject: keep me\n\n");
    let erin = User::new("erin");
    let mut old = node_a.open(&erin).unwrap();
    let holders = lock_holders(&url);
    assert_eq!(holders.len(), 1);
    // The node's lock connection dies (as when the node dies): the lock goes with it.
    let mut admin = Client::connect(&url, NoTls).unwrap();
    admin.execute("SELECT pg_terminate_backend($1)", &[&holders[0]]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let new = loop {
        match node_b.open(&erin) {
            Ok(d) => break d,
            Err(e) if e.kind() == ErrorKind::InUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("the lock was not released: {e}"),
        }
    };
    // The old session still reads (its snapshot), but its commit must not delete anything.
    assert_eq!(read_all(&*old, 0), b"Subject: keep me\n\n");
    let e = old.commit(&[0]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    assert_eq!(new.messages().len(), 1);
    std::mem::drop((old, new));
    assert_eq!(open_eventually(&node_a, &erin).messages().len(), 1, "node A locks again");
}

#[test]
fn a_message_deleted_behind_the_snapshot_is_gone_not_truncated() {
    let Some((_cluster, url)) = database("postgres backend message gone") else { return };
    let pg = store(&url);
    deliver(&pg, "frank", &big_body(200_000));
    deliver(&pg, "frank", b"Subject: two\n\n");
    let drop = pg.open(&User::new("frank")).unwrap();
    let mut reader = drop.read_message(0).unwrap();
    let mut first = vec![0; 1000];
    reader.read_exact(&mut first).unwrap();
    let mut admin = Client::connect(&url, NoTls).unwrap();
    admin.execute("DELETE FROM messages", &[]).unwrap();
    let mut rest = Vec::new();
    assert!(reader.read_to_end(&mut rest).is_err(), "a vanished body must not end cleanly");
    let e = drop.read_message(1).unwrap_err();
    assert!(matches!(e, Error::MessageGone { index: 1, .. }), "{e}");
}

#[test]
fn the_sink_stores_batches_atomically_keys_are_uidls_and_a_key_is_stored_once() {
    let Some((_cluster, url)) = database("postgres backend sink") else { return };
    let pg = store(&url);
    let grace = User::new("grace");
    let mut sink = pg.sink(&grace).unwrap();
    let keyed = |key: &str| Incoming { key: Some(key.into()), ..Incoming::default() };
    for (key, body) in [("uid-a", &b"A\n"[..]), ("uid-b", b"B\n")] {
        assert_eq!(sink.begin(&keyed(key)).unwrap(), Begun::New);
        sink.write(body).unwrap();
        sink.stage().unwrap();
    }
    // Abandoned halfway: nothing of it stays, and the batch goes on.
    assert_eq!(sink.begin(&keyed("uid-c")).unwrap(), Begun::New);
    sink.write(b"half").unwrap();
    sink.abort();
    // Not visible before the seal.
    assert!(pg.open(&grace).unwrap().messages().is_empty());
    let settled = sink.finish().unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].ids, 0..2);
    assert_eq!(settled[0].result.as_ref().unwrap(), &["uid-a", "uid-b"]);
    // A key already stored is not stored again (an interrupted migration resumed).
    assert_eq!(sink.begin(&keyed("uid-a")).unwrap(), Begun::AlreadyStored);
    assert!(matches!(sink.begin(&keyed("has space")), Err(Error::InvalidKey(_))));
    let stored = deliver_one(&mut *sink, &keyed("uid-d"), &mut &b"D\n"[..]).unwrap();
    assert_eq!(stored.as_deref(), Some("uid-d"));
    std::mem::drop(sink);
    let drop = open_eventually(&pg, &grace);
    assert_eq!(uidls(&*drop), ["uid-a", "uid-b", "uid-d"]);
    assert_eq!(read_all(&*drop, 2), b"D\n");
}

#[test]
fn a_sink_dropped_before_its_seal_stores_nothing() {
    let Some((_cluster, url)) = database("postgres backend unsealed") else { return };
    let pg = store(&url);
    let heidi = User::new("heidi");
    let mut sink = pg.sink(&heidi).unwrap();
    sink.begin(&Incoming::default()).unwrap();
    sink.write(b"Subject: never\n\n").unwrap();
    sink.stage().unwrap();
    std::mem::drop(sink);
    assert!(pg.open(&heidi).unwrap().messages().is_empty());
    deliver(&pg, "heidi", b"Subject: later\n\n");
    assert_eq!(open_eventually(&pg, &heidi).messages().len(), 1, "the pool is still usable");
}

#[test]
fn a_database_lost_mid_session_fails_temporarily_deletes_nothing_and_is_used_again_when_back() {
    let Some(cluster) = pop3_testkit::postgres::Cluster::private("postgres backend restart") else {
        return;
    };
    let url = cluster.database();
    migrate(&url).unwrap();
    let pg = store(&url);
    deliver(&pg, "ivan", b"Subject: one\n\n");
    deliver(&pg, "ivan", b"Subject: two\n\n");
    let ivan = User::new("ivan");
    let mut session = pg.open(&ivan).unwrap();
    cluster.stop();
    let e = session.read_message(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    let e = session.commit(&[0, 1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    let e = pg.open(&User::new("judy")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    let e = pg.deliver(&ivan, &mut &b"x\n"[..], &Envelope::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    std::mem::drop(session);

    cluster.start_again();
    let drop = open_eventually(&pg, &ivan);
    assert_eq!(drop.messages().len(), 2, "nothing was deleted");
    assert_eq!(read_all(&*drop, 1), b"Subject: two\n\n");
}

#[test]
fn tls_to_the_database_is_verified_and_used_when_the_url_asks_for_it() {
    let Some((cluster, ca)) = pop3_testkit::postgres::Cluster::private_tls("postgres TLS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let plain = cluster.database();
    migrate(&plain).unwrap();
    let tls = format!("{plain}?sslmode=verify-full&sslrootcert={}", ca_file.display());
    let uses_tls = |url: &str| -> bool {
        let mut client = pop3_storage::postgres::connect(url).unwrap();
        client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .unwrap()
            .get(0)
    };
    assert!(uses_tls(&tls), "sslmode=verify-full");
    assert!(!uses_tls(&plain), "no sslmode: plain, never TLS unasked");
    // The store over TLS: delivery and a session.
    let pg = store(&tls);
    deliver(&pg, "kim", b"Subject: over TLS\n\n");
    assert_eq!(read_all(&*pg.open(&User::new("kim")).unwrap(), 0), b"Subject: over TLS\n\n");

    // A server certificate from another CA is refused, as a configuration error.
    let other = pop3_testkit::server::TestCa::generate();
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, &other.ca_pem).unwrap();
    let wrong = format!("{plain}?sslmode=require&sslrootcert={}", other_file.display());
    let Err(e) = pop3_storage::postgres::connect(&wrong) else { panic!("an unknown CA") };
    assert!(!e.is_temporary(), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
}
