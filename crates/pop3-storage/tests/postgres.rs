//! The PostgreSQL schema's migrations against a real server (pop3-testkit's throwaway
//! cluster; skipped loudly without PostgreSQL, failed under CI=true).

use pop3_storage::postgres::{migrate, schema_version, MigrateReport, LATEST_VERSION};
use postgres::{Client, NoTls};

/// The tables of the public schema, sorted.
fn tables(url: &str) -> Vec<String> {
    let mut client = Client::connect(url, NoTls).unwrap();
    client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_fresh_database_is_migrated_to_the_latest_version_and_a_second_run_is_a_no_op() {
    let Some(cluster) = pop3_testkit::postgres::cluster("postgres migrations") else { return };
    let url = cluster.database();
    assert_eq!(schema_version(&url).unwrap(), 0);
    assert!(tables(&url).is_empty());

    let first = migrate(&url).unwrap();
    let all: Vec<i32> = (1..=LATEST_VERSION).collect();
    assert_eq!(first, MigrateReport { from: 0, to: LATEST_VERSION, applied: all });
    assert_eq!(schema_version(&url).unwrap(), LATEST_VERSION);
    assert_eq!(tables(&url), ["mailboxes", "message_chunks", "messages", "schema_version"]);

    let second = migrate(&url).unwrap();
    assert_eq!(second, MigrateReport { from: LATEST_VERSION, to: LATEST_VERSION, applied: vec![] });
    let mut client = Client::connect(&url, NoTls).unwrap();
    let rows: i64 = client.query_one("SELECT count(*) FROM schema_version", &[]).unwrap().get(0);
    assert_eq!(rows, i64::from(LATEST_VERSION), "one row per migration, never twice");
}

#[test]
fn concurrent_migrators_apply_each_migration_once() {
    let Some(cluster) = pop3_testkit::postgres::cluster("postgres concurrent migrations") else {
        return;
    };
    let url = cluster.database();
    let reports: Vec<MigrateReport> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| migrate(&url).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let applied: usize = reports.iter().map(|r| r.applied.len()).sum();
    assert_eq!(applied, LATEST_VERSION as usize);
    assert_eq!(schema_version(&url).unwrap(), LATEST_VERSION);
}

#[test]
fn the_schema_keeps_rfc_1939_invariants() {
    let Some(cluster) = pop3_testkit::postgres::cluster("postgres schema constraints") else {
        return;
    };
    let url = cluster.database();
    migrate(&url).unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    let mailbox: i64 = c
        .query_one("INSERT INTO mailboxes (user_name) VALUES ($1) RETURNING id", &[&"alice"])
        .unwrap()
        .get(0);
    let insert = "INSERT INTO messages (mailbox_id, id, uidl, size) VALUES ($1, $2, $3, $4)";
    c.execute(insert, &[&mailbox, &1i64, &"uid-1", &12i64]).unwrap();
    // RFC 1939 §7: a UIDL is unique in the maildrop, 1 to 70 characters in 0x21..0x7E.
    assert!(c.execute(insert, &[&mailbox, &2i64, &"uid-1", &1i64]).is_err(), "duplicate UIDL");
    assert!(c.execute(insert, &[&mailbox, &3i64, &"has space", &1i64]).is_err(), "space in UIDL");
    assert!(c.execute(insert, &[&mailbox, &4i64, &"x".repeat(71), &1i64]).is_err(), "71 chars");
    assert!(c.execute(insert, &[&mailbox, &5i64, &"uid-5", &-1i64]).is_err(), "negative size");
    // Chunks belong to a message; deleting the mailbox removes everything under it.
    let chunk =
        "INSERT INTO message_chunks (mailbox_id, message_id, seq, bytes) VALUES ($1, $2, $3, $4)";
    c.execute(chunk, &[&mailbox, &1i64, &0i32, &b"Subject: x\r\n".as_slice()]).unwrap();
    assert!(c.execute(chunk, &[&mailbox, &9i64, &0i32, &b"".as_slice()]).is_err(), "orphan chunk");
    c.execute("DELETE FROM mailboxes WHERE id = $1", &[&mailbox]).unwrap();
    let left: i64 = c.query_one("SELECT count(*) FROM message_chunks", &[]).unwrap().get(0);
    assert_eq!(left, 0);
}
