//! Maildir maildrops against fixtures written the way Postfix, Dovecot and mutt write them.

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use common::{message, read_all, transmitted};
use pop3_storage::maildir::CACHE_FILE;
use pop3_storage::{
    is_valid_uidl, DeleteMode, Error, ErrorKind, Maildir, MaildirOptions, Maildrop,
};

/// Writes fixtures in a fresh Maildir and returns (file path relative to root, bytes) in
/// delivery order.
fn fixture(root: &Path) -> Vec<(String, Vec<u8>)> {
    for d in ["new", "cur", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut files = Vec::new();
    let mut put = |rel: String, bytes: Vec<u8>| {
        fs::write(root.join(&rel), &bytes).unwrap();
        files.push((rel, bytes));
    };
    // Postfix local(8): new/, LF endings.
    put("new/1700000000.V801I1a2bM100000.mx.example.com".into(), message(1, 40, false, true));
    // Dovecot LDA: ,S= and ,W= in the name, already seen by an IMAP client (cur/, flags).
    let m = message(2, 30, false, true);
    let w = transmitted(&m).len();
    put(format!("cur/1700000001.M200000P4242.imap,S={},W={w}:2,S", m.len()), m);
    // mutt moved it to cur/ and flagged it replied; CRLF line endings.
    put("cur/1700000002.M300000P99.desk:2,RS".into(), message(3, 12, true, true));
    // No trailing newline, in new/.
    put("new/1700000003.M400000P100.desk".into(), message(4, 5, false, false));
    // Same second as the previous one, smaller microseconds: sorts before it.
    put("new/1700000003.M5P100.desk".into(), message(5, 1, false, true));
    files.swap(3, 4);
    // Things that are not INBOX messages.
    fs::write(root.join("tmp/1700000009.M1P1.half-written"), b"partial").unwrap();
    fs::write(root.join("cur/.hidden"), b"dotfile").unwrap();
    fs::write(root.join(".Sent/cur/1700000005.M1P1.x:2,S"), message(9, 3, false, true)).unwrap();
    fs::write(root.join("cur/1699999999.M1P1.old:2,ST"), message(8, 3, false, true)).unwrap();
    fs::write(root.join("dovecot-uidlist"), b"3 V1 N1\n").unwrap();
    files
}

fn uidls(d: &dyn Maildrop) -> Vec<String> {
    d.messages().iter().map(|m| m.uidl.clone()).collect()
}

#[test]
fn snapshot_of_real_world_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path());
    let md = Maildir::new(dir.path());
    let d = md.open().unwrap();
    assert_eq!(d.messages().len(), files.len(), "{:?}", d.messages());
    for (i, (rel, bytes)) in files.iter().enumerate() {
        let info = &d.messages()[i];
        assert_eq!(info.size, transmitted(bytes).len() as u64, "size of {rel}");
        assert_eq!(read_all(&d, i), *bytes, "content of {rel}");
        let base = rel.split('/').nth(1).unwrap().split(':').next().unwrap();
        assert_eq!(info.uidl, base, "UIDL is the base name");
        assert!(is_valid_uidl(&info.uidl));
    }
    assert!(matches!(d.read_message(99), Err(Error::NoSuchMessage(99))));
}

#[test]
fn uidls_stable_across_moves_and_flag_changes_and_second_open_uses_cache() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path());
    let md = Maildir::new(dir.path());
    let first = md.open().unwrap();
    let (u1, s1) = (uidls(&first), first.messages().to_vec());
    drop(first);
    assert!(dir.path().join(CACHE_FILE).is_file());
    // A client reads everything: new/ → cur/ with flags, flags changed.
    for (rel, _) in &files {
        let name = rel.split('/').nth(1).unwrap();
        let base = name.split(':').next().unwrap();
        fs::rename(dir.path().join(rel), dir.path().join("cur").join(format!("{base}:2,FS")))
            .unwrap();
    }
    let second = md.open().unwrap();
    assert_eq!(uidls(&second), u1);
    assert_eq!(second.messages(), &s1[..]);
    for (i, (_, bytes)) in files.iter().enumerate() {
        assert_eq!(read_all(&second, i), *bytes);
    }
}

#[test]
fn warm_open_reads_no_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("new")).unwrap();
    let rel = "new/1700000000.M1P1.h";
    fs::write(root.join(rel), b"a\nb\nc\n").unwrap(); // 6 stored, size 9
    let md = Maildir::new(root);
    assert_eq!(md.open().unwrap().messages()[0].size, 9);
    // Same length, different line endings: a re-read would give 8. The cached 9 proves the
    // warm open did not read the body.
    fs::write(root.join(rel), b"a\r\nb\nc").unwrap();
    assert_eq!(md.open().unwrap().messages()[0].size, 9);
    // A changed length is caught when the message is read (without a stat), and the cache
    // is dropped.
    fs::write(root.join(rel), b"ab\n").unwrap();
    let d = md.open().unwrap();
    let mut body = Vec::new();
    let err = d.read_message(0).unwrap().read_to_end(&mut body).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    drop(d);
    assert!(!root.join(CACHE_FILE).exists());
    assert_eq!(md.open().unwrap().messages()[0].size, 4);
}

/// A file that changes after it was opened for reading (cut short, or grown) fails the read
/// rather than giving other octets than its size counted; one that is right reads whole.
#[test]
fn a_message_changed_while_open_fails_its_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("new")).unwrap();
    let big = b"a line of forty octets, to fill a file.\n".repeat(5000);
    for (name, m) in [("1.M1P1.h,S=200000,W=205000", &big), ("2.M1P1.h", &big), ("3.M1P1.h", &big)]
    {
        fs::write(root.join("new").join(name), m).unwrap();
    }
    let d = Maildir::new(root).open().unwrap();
    let mut body = Vec::new();
    d.read_message(0).unwrap().read_to_end(&mut body).unwrap();
    assert_eq!(body, big);
    // Cut short after the open of the reader.
    let reader = d.read_message(0).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(root.join("new/1.M1P1.h,S=200000,W=205000"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let err = { reader }.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    // Grown after the open of the reader.
    let reader = d.read_message(1).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(root.join("new/2.M1P1.h"))
        .unwrap()
        .write_all(b"appended\n")
        .unwrap();
    let err = { reader }.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    let mut body = Vec::new();
    d.read_message(2).unwrap().read_to_end(&mut body).unwrap();
    assert_eq!(body, big);
}

#[test]
fn stale_and_corrupt_cache_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path());
    let md = Maildir::new(dir.path());
    let expected: Vec<u64> = files.iter().map(|(_, b)| transmitted(b).len() as u64).collect();
    drop(md.open().unwrap());
    let cache = dir.path().join(CACHE_FILE);
    let before = fs::read_to_string(&cache).unwrap();
    assert!(before.contains("1700000000.V801I1a2bM100000.mx.example.com"));
    // The cache lists every message in snapshot order; names with `,W=` too (their size
    // comes from the name, the line is there so an unchanged Maildir needs no listing).
    let listed: Vec<&str> =
        before.lines().skip(2).filter(|l| !l.starts_with("checksum ")).collect();
    assert_eq!(listed.len(), files.len());
    for (line, (rel, bytes)) in listed.iter().zip(&files) {
        let (sub, name) = rel.split_once('/').unwrap();
        let tail = format!(" {} {name}", &sub[..1]);
        assert!(line.starts_with(&format!("{} ", transmitted(bytes).len())), "{line}");
        assert!(line.ends_with(&tail), "{line} vs {tail}");
    }
    // Stale: a message deleted by another program disappears from the cache.
    fs::remove_file(dir.path().join(&files[0].0)).unwrap();
    let d = md.open().unwrap();
    assert_eq!(d.messages().len(), files.len() - 1);
    drop(d);
    let after = fs::read_to_string(&cache).unwrap();
    assert!(!after.contains("1700000000.V801I1a2bM100000"));
    // Corrupt: garbage is detected and the sizes are recomputed.
    fs::write(&cache, b"pop3-storage-sizes 1\n1 1 1700000002.M300000P99.desk\n").unwrap();
    let d = md.open().unwrap();
    let sizes: Vec<u64> = d.messages().iter().map(|m| m.size).collect();
    assert_eq!(sizes, expected[1..]);
    drop(d);
    assert!(fs::read_to_string(&cache).unwrap().contains("checksum "));
}

#[test]
fn exclusive_in_process_released_on_drop_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let md = Maildir::new(dir.path());
    let mut a = md.open().unwrap();
    let err = md.open().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse);
    assert!(matches!(err, Error::InUse { holder: Some(pid), .. } if pid == std::process::id()));
    drop(md.open().err());
    a.commit(&[]).unwrap();
    assert!(matches!(a.read_message(0), Err(Error::Committed)));
    let b = md.open().unwrap();
    drop(b);
    drop(md.open().unwrap());
}

#[test]
fn commit_unlinks_exactly_and_spares_new_arrivals() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path());
    let md = Maildir::new(dir.path());
    let mut d = md.open().unwrap();
    let u = uidls(&d);
    let arrived = md.deliver(&mut &message(50, 3, false, true)[..]).unwrap();
    assert!(matches!(d.commit(&[0, 42]), Err(Error::NoSuchMessage(42))));
    assert!(dir.path().join(&files[0].0).exists(), "failed commit deleted nothing");
    d.commit(&[0, 2, 2]).unwrap();
    drop(d);
    let d = md.open().unwrap();
    let mut expected = vec![u[1].clone(), u[3].clone(), u[4].clone()];
    expected.push(arrived.split(':').next().unwrap().to_owned());
    assert_eq!(uidls(&d), expected);
    assert!(dir.path().join("tmp/1700000009.M1P1.half-written").exists());
    assert!(dir.path().join(".Sent/cur/1700000005.M1P1.x:2,S").exists());
}

#[test]
fn commit_can_mark_trashed_instead() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path());
    let md = Maildir::with_options(
        dir.path(),
        MaildirOptions { delete: DeleteMode::MarkTrashed, ..MaildirOptions::default() },
    );
    let mut d = md.open().unwrap();
    let u = uidls(&d);
    d.commit(&[0, 1]).unwrap();
    drop(d);
    let base0 = files[0].0.split('/').nth(1).unwrap();
    assert!(dir.path().join(format!("cur/{base0}:2,T")).exists());
    let base1 = files[1].0.split('/').nth(1).unwrap().split(':').next().unwrap();
    assert!(dir.path().join(format!("cur/{base1}:2,ST")).exists());
    assert_eq!(uidls(&md.open().unwrap()), u[2..]);
}

#[test]
fn message_removed_or_moved_by_another_program_mid_session() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path());
    let md = Maildir::new(dir.path());
    let mut d = md.open().unwrap();
    fs::remove_file(dir.path().join(&files[1].0)).unwrap();
    let name0 = files[0].0.split('/').nth(1).unwrap();
    fs::rename(dir.path().join(&files[0].0), dir.path().join(format!("cur/{name0}:2,S"))).unwrap();
    let err = d.read_message(1).unwrap_err();
    assert!(matches!(err, Error::MessageGone { index: 1, .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Temporary);
    assert_eq!(read_all(&d, 0), files[0].1, "moved message still readable");
    assert_eq!(read_all(&d, 2), files[2].1, "the session goes on");
    d.commit(&[0, 1]).unwrap();
    drop(d);
    let d = md.open().unwrap();
    assert_eq!(d.messages().len(), files.len() - 2);
    assert!(fs::read_dir(dir.path().join("cur")).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(name0)));
}

#[test]
fn delivery_names_sizes_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::new(dir.path().join("fresh"));
    let msgs: Vec<Vec<u8>> = (0..4).map(|i| message(i, i * 3, i == 2, i != 3)).collect();
    let mut names = Vec::new();
    for m in &msgs {
        names.push(md.deliver(&mut &m[..]).unwrap());
    }
    for (name, m) in names.iter().zip(&msgs) {
        assert!(name.ends_with(&format!(",S={},W={}", m.len(), transmitted(m).len())));
        assert_eq!(fs::read(md.path().join("new").join(name)).unwrap(), *m);
    }
    assert_eq!(fs::read_dir(md.path().join("tmp")).unwrap().count(), 0);
    let d = md.open().unwrap();
    assert_eq!(uidls(&d), names, "delivery order, UIDL = name");
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(d.messages()[i].size, transmitted(m).len() as u64);
        assert_eq!(read_all(&d, i), *m);
    }
}

#[test]
fn long_or_odd_base_names_get_hashed_uidls() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("cur")).unwrap();
    fs::create_dir_all(dir.path().join("new")).unwrap();
    let long = format!("1700000000.M1P1.{}", "h".repeat(80));
    fs::write(dir.path().join("new").join(&long), b"x\n").unwrap();
    fs::write(dir.path().join("new/1700000001.M1P1.with space"), b"y\n").unwrap();
    // The same base in new/ and cur/ (a crashed mover): both served, distinct UIDLs.
    fs::write(dir.path().join("new/1700000002.M1P1.dup"), b"z\n").unwrap();
    fs::write(dir.path().join("cur/1700000002.M1P1.dup:2,S"), b"z\n").unwrap();
    let d = Maildir::new(dir.path()).open().unwrap();
    let u = uidls(&d);
    assert_eq!(u.len(), 4);
    assert!(u.iter().all(|x| is_valid_uidl(x)));
    assert!(u[0].starts_with('~') && u[1].starts_with('~'));
    assert_eq!(u.iter().collect::<HashSet<_>>().len(), 4);
}

/// A Maildir as Dovecot leaves it after serving IMAP and POP3 for a while, plus what
/// happened after Dovecot was replaced. Returns the file names (relative to the root) in
/// delivery order and the UIDLs Dovecot served for them (`None`: not in the uidlist).
fn dovecot_fixture(root: &Path) -> Vec<(String, Option<String>)> {
    for d in ["new", "cur", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let dovecot_name = |secs: u64, usec: u32, pid: u32, m: &[u8]| {
        format!("{secs}.M{usec}P{pid}.imap,S={},W={}", m.len(), transmitted(m).len())
    };
    let uidvalidity = 1_700_000_000u32; // 0x6553f100; Dovecot prints lower-case hex
    let served = |uid: u32| format!("{uid:08x}{uidvalidity:08x}");
    let mut files = Vec::new();
    let mut list = format!("3 V{uidvalidity} N7 G3085f01b7f11094c501100008c4a11c1\n");
    // UID 1: read over IMAP, the uidlist still has its name from before that.
    let m = message(1, 20, false, true);
    let base = dovecot_name(1_700_000_001, 100, 4242, &m);
    fs::write(root.join(format!("cur/{base}:2,S")), &m).unwrap();
    list.push_str(&format!("1 :{base}\n"));
    files.push((format!("cur/{base}:2,S"), Some(served(1))));
    // UID 2: expunged; Dovecot updates the list lazily, so the line is still there.
    list.push_str("2 :1700000002.M200P4242.imap,S=100,W=104:2,S\n");
    // UID 3: migrated from an earlier server, whose UIDL Dovecot kept (P) and served.
    let m = message(3, 5, true, true);
    let base = dovecot_name(1_700_000_003, 300, 4243, &m);
    fs::write(root.join(format!("cur/{base}:2,RS")), &m).unwrap();
    list.push_str(&format!(
        "3 G0a1b2c3d4e5f60718293a4b5c6d7e8f9 P4F1A2B3C.qpopper W{} :{base}:2,S\n",
        transmitted(&m).len()
    ));
    files.push((format!("cur/{base}:2,RS"), Some("4F1A2B3C.qpopper".to_owned())));
    // UID 4: delivered by Dovecot's LDA, never looked at: still in new/.
    let m = message(4, 12, false, false);
    let base = dovecot_name(1_700_000_004, 400, 4244, &m);
    fs::write(root.join(format!("new/{base}")), &m).unwrap();
    list.push_str(&format!("4 :{base}\n"));
    files.push((format!("new/{base}"), Some(served(4))));
    // UID 6: a Postfix name without sizes, seen by Dovecot.
    let m = message(6, 3, false, true);
    let base = "1700000006.V801I1a2bM600000.mx.example.com".to_owned();
    fs::write(root.join(format!("new/{base}")), &m).unwrap();
    list.push_str(&format!("6 W{} :{base}\n", transmitted(&m).len()));
    files.push((format!("new/{base}"), Some(served(6))));
    // Delivered by Postfix after Dovecot was stopped: not in the uidlist.
    let base = "1700000009.V801I1a2cM900000.mx.example.com".to_owned();
    fs::write(root.join(format!("new/{base}")), message(9, 2, false, true)).unwrap();
    files.push((format!("new/{base}"), None));
    fs::write(root.join("dovecot-uidlist"), list).unwrap();
    // Dovecot's other files, which we must ignore.
    fs::write(root.join("dovecot-uidvalidity"), b"6553f100").unwrap();
    fs::write(root.join("dovecot-uidvalidity.6553f100"), b"").unwrap();
    fs::write(root.join("dovecot.index.log"), b"\x01\x02").unwrap();
    fs::write(root.join("dovecot-keywords"), b"0 $Junk\n").unwrap();
    files
}

#[test]
fn dovecot_uidlist_uidls_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let files = dovecot_fixture(root);
    let md = Maildir::new(root);
    let d = md.open().unwrap();
    let got = uidls(&d);
    assert_eq!(got.len(), files.len());
    for (uidl, (rel, dovecot)) in got.iter().zip(&files) {
        match dovecot {
            Some(served) => assert_eq!(uidl, served, "{rel}"),
            // Ours: the BASE.
            None => assert_eq!(uidl, rel.strip_prefix("new/").unwrap()),
        }
    }
    assert_eq!(got[0], "000000016553f100");
    assert_eq!(got[2], "000000046553f100");
    for (i, (rel, _)) in files.iter().enumerate() {
        let bytes = fs::read(root.join(rel)).unwrap();
        assert_eq!(d.messages()[i].size, transmitted(&bytes).len() as u64, "{rel}");
        assert_eq!(read_all(&d, i), bytes);
    }
    drop(d);
    // Stable: a second open, a MUA moving a message to cur/ with new flags.
    assert_eq!(uidls(&md.open().unwrap()), got);
    let (new_rel, _) = &files[2];
    let moved = format!("cur/{}:2,S", new_rel.strip_prefix("new/").unwrap());
    fs::rename(root.join(new_rel), root.join(&moved)).unwrap();
    let mut d = md.open().unwrap();
    assert_eq!(uidls(&d), got);
    // Deleting one keeps the others' UIDLs.
    d.commit(&[1]).unwrap();
    let d = md.open().unwrap();
    let mut expected = got.clone();
    expected.remove(1);
    assert_eq!(uidls(&d), expected);
}

#[test]
fn dovecot_uidlist_versions_collisions_and_unrecognised_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["new", "cur", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for name in ["new/1234567890.1.host", "new/1234567891.2.host", "cur/1234567892.3.host:2,S"] {
        fs::write(root.join(name), b"Subject: x\n\nbody\n").unwrap();
    }
    let md = Maildir::new(root);
    let own = vec!["1234567890.1.host", "1234567891.2.host", "1234567892.3.host"];
    let list = root.join("dovecot-uidlist");

    // Version 1 (Dovecot 1.0, Courier-compatible): `<uid> <file name>`.
    fs::write(&list, b"1 1234567890 4\n1 1234567890.1.host\n3 1234567892.3.host:2,\n").unwrap();
    assert_eq!(uidls(&md.open().unwrap()), ["00000001499602d2", own[1], "00000003499602d2"]);

    // A P value equal to another message's UIDL: the later message gets a `~` UIDL, so
    // all stay unique.
    fs::write(&list, b"3 V7 N9\n1 P1234567891.2.host :1234567890.1.host\n").unwrap();
    let got = uidls(&md.open().unwrap());
    assert_eq!(got[0], "1234567891.2.host");
    assert!(got[1].starts_with('~') && is_valid_uidl(&got[1]), "{}", got[1]);
    assert_eq!(got[2], own[2]);
    assert_eq!(uidls(&md.open().unwrap()), got, "stable");

    // Formats we do not recognise: our own UIDLs.
    for unknown in [&b"2 1234567890 4\n1 0 1234567890.1.host\n"[..], b"", b"garbage\n"] {
        fs::write(&list, unknown).unwrap();
        assert_eq!(uidls(&md.open().unwrap()), own, "{:?}", String::from_utf8_lossy(unknown));
    }

    // A uidlist we cannot read fails the open rather than silently changing every UIDL.
    fs::remove_file(&list).unwrap();
    fs::create_dir(&list).unwrap();
    let err = md.open().unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    fs::remove_dir(&list).unwrap();
    assert_eq!(uidls(&md.open().unwrap()), own);
}

#[test]
fn symlinks_never_lead_outside_the_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let files = fixture(&root);
    let secret = dir.path().join("secret.txt");
    fs::write(&secret, b"Subject: not yours\n\nroot's secret\n").unwrap();
    // A link planted among the messages is not listed.
    std::os::unix::fs::symlink(&secret, root.join("cur/1700000004.M1P1.evil:2,S")).unwrap();
    let drop = Maildir::new(&root).open().unwrap();
    assert_eq!(drop.messages().len(), files.len(), "the symlink is not a message");
    // A listed message replaced by a link after login: its read fails, the file is not served.
    let (first, _) = &files[0];
    fs::remove_file(root.join(first)).unwrap();
    std::os::unix::fs::symlink(&secret, root.join(first)).unwrap();
    let read = drop.read_message(0).map(|mut r| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut out).map(|_| out)
    });
    match read {
        Err(_) | Ok(Err(_)) => {}
        Ok(Ok(body)) => panic!("served through a symlink: {}", String::from_utf8_lossy(&body)),
    }
    // Other messages still read.
    assert!(!read_all(&drop, 1).is_empty());
}
