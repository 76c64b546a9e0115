//! `pop3d migrate` against a real PostgreSQL (pop3-testkit's throwaway cluster; skipped loudly
//! without PostgreSQL, failed under CI=true): Maildirs (with a Dovecot `dovecot-uidlist`) and
//! mboxes copied with their UIDLs, idempotent, resumable, `--all`.

mod common;

use std::io::Read;
use std::path::Path;

use common::{output_ok, run, Store};
use pop3_storage::postgres::{PgOptions, PgStore};
use pop3_storage::{Backend, Location, MaildirOptions, Template, User};

/// (UIDL, RFC 1939 size, stored bytes) of every message of `user` in `store`, in order.
fn listing(store: &dyn Backend, user: &str) -> Vec<(String, u64, Vec<u8>)> {
    let drop = store.open(&User::new(user)).unwrap();
    (0..drop.messages().len())
        .map(|i| {
            let mut body = Vec::new();
            drop.read_message(i).unwrap().read_to_end(&mut body).unwrap();
            let info = &drop.messages()[i];
            (info.uidl.clone(), info.size, body)
        })
        .collect()
}

/// A Maildir that Dovecot served: a `dovecot-uidlist` with UIDs (served as `%08Xu%08Xv`) and
/// one UIDL kept from an earlier server (`P`), plus a message Dovecot never listed.
fn dovecot_maildir(root: &Path) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let files = [
        ("cur/1700000001.M1P1.imap:2,S", &b"Subject: one\n\nfirst\n"[..]),
        ("cur/1700000002.M2P1.imap:2,S", b"Subject: two\r\n\r\nsecond\r\n"),
        ("new/1700000003.M3P1.host", b"Subject: three\n\n.dot line\n"),
    ];
    for (name, bytes) in files {
        std::fs::write(root.join(name), bytes).unwrap();
    }
    std::fs::write(
        root.join("dovecot-uidlist"),
        "3 V1700000000 N3 G3085f01b7f11094c501100008c4a11c1\n\
         1 :1700000001.M1P1.imap\n\
         2 Plegacy-uidl-0042 :1700000002.M2P1.imap\n",
    )
    .unwrap();
}

#[test]
fn maildirs_and_mboxes_are_copied_with_their_uidls_idempotently_and_resumably() {
    let Some(store) = Store::postgresql("pop3d migrate") else { return };
    let Store::Postgresql(db) = &store else { unreachable!() };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    output_ok(&run(&["user", "add", "alice", "--password-stdin"], &data, b"pw\n"), "user add");
    std::fs::write(data.join("users"), "alice:{PLAIN}a\nbob:{PLAIN}b\ncarol:{PLAIN}c\n").unwrap();
    store.configure(&data);

    let old = dir.path().join("old");
    dovecot_maildir(&old.join("alice"));
    let source = Location::maildir(
        Template::parse(format!("{}/%u", old.display())).unwrap(),
        MaildirOptions { create: false, ..MaildirOptions::default() },
    );
    let expected = listing(&source, "alice");
    assert_eq!(expected.len(), 3);
    assert_eq!(expected[0].0, "000000016553f100", "Dovecot's %08Xu%08Xv");
    assert_eq!(expected[1].0, "legacy-uidl-0042", "a UIDL Dovecot kept");

    let from = format!("maildir:{}/%u", old.display());
    let first = run(&["migrate", "alice", "--from", &from], &data, b"");
    output_ok(&first, "migrate");
    assert_eq!(String::from_utf8_lossy(&first.stdout), "alice: 3 copied, 0 already there\n");
    let pg = PgStore::new(&db.url, PgOptions::default()).unwrap();
    assert_eq!(listing(&pg, "alice"), expected, "same UIDLs, sizes and bytes");
    assert_eq!(listing(&source, "alice"), expected, "the source is unchanged");

    // Again: nothing to do. Interrupted (the last message never arrived): resumed.
    let again = run(&["migrate", "alice", "--from", &from], &data, b"");
    assert_eq!(String::from_utf8_lossy(&again.stdout), "alice: 0 copied, 3 already there\n");
    let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let last = &expected[2].0;
    assert_eq!(client.execute("DELETE FROM messages WHERE uidl = $1", &[last]).unwrap(), 1);
    let resumed = run(&["migrate", "alice", "--from", &from], &data, b"");
    assert_eq!(String::from_utf8_lossy(&resumed.stdout), "alice: 1 copied, 2 already there\n");
    assert_eq!(listing(&pg, "alice"), expected);

    // An mbox, for bob.
    let mbox = dir.path().join("bob.mbox");
    std::fs::write(
        &mbox,
        "From a@example.org Thu Jan  1 00:00:00 2026\nSubject: m1\n\n>From the start\n\n\
         From b@example.org Thu Jan  1 00:00:01 2026\nSubject: m2\n\nsecond\n",
    )
    .unwrap();
    let mbox_source = Location::mbox(Template::parse(mbox.to_str().unwrap()).unwrap());
    let expected_bob = listing(&mbox_source, "bob");
    assert_eq!(expected_bob.len(), 2);
    let out = run(&["migrate", "bob", "--from", &format!("mbox:{}", mbox.display())], &data, b"");
    output_ok(&out, "migrate mbox");
    assert_eq!(listing(&pg, "bob"), expected_bob);

    // --all: every user of the users file; carol has no maildrop.
    let all = run(&["migrate", "--all", "--from", &from], &data, b"");
    output_ok(&all, "migrate --all");
    assert_eq!(
        String::from_utf8_lossy(&all.stdout),
        "alice: 0 copied, 3 already there\nbob: no maildrop, nothing to copy\n\
         carol: no maildrop, nothing to copy\n"
    );
    let one_path = run(&["migrate", "--all", "--from", "maildir:/srv/shared"], &data, b"");
    assert_eq!(one_path.status.code(), Some(64), "--all needs a per-user path: {one_path:?}");
}

#[test]
fn migrate_wants_a_postgresql_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    output_ok(&run(&["init"], &data, b""), "init");
    let out = run(&["migrate", "alice", "--from", "maildir:/nonexistent/%u"], &data, b"");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("format = \"postgresql\""));
}
