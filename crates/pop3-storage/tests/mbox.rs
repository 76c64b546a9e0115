//! mbox maildrops against files written the way Postfix's local(8) and mutt write them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{message, read_all, transmitted};
use pop3_storage::{is_valid_uidl, Envelope, Error, ErrorKind, Maildrop, Mbox};

/// Postfix-style mbox: `From ` lines with two spaces, `>From ` quoting, blank separators.
/// Returns the mbox bytes and the messages as a POP3 client must receive them: unquoted as
/// mboxrd reads them, one `>` less on each `>+From ` line.
fn fixture() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut file = Vec::new();
    let mut expected = Vec::new();
    let bodies: Vec<Vec<u8>> = vec![
        b"Subject: one\n\nHello\n>From a quoted line\n>>From one quoted twice\nFrom inside\n.\n"
            .to_vec(),
        b"Subject: two\n\nBody with a blank line\n\nand a second paragraph\n".to_vec(),
        b"Subject: crlf\r\n\r\nWindows\r\nline ends\r\n".to_vec(),
        b"Subject: empty body\n\n".to_vec(),
        b"Subject: dup\n\nsame\n".to_vec(),
        b"Subject: dup\n\nsame\n".to_vec(),
    ];
    for (i, b) in bodies.iter().enumerate() {
        file.extend_from_slice(
            format!("From sender{i}@example.org  Tue Nov 14 22:13:2{i} 2023\n").as_bytes(),
        );
        file.extend_from_slice(b);
        file.push(b'\n');
        expected.push(unquoted(b));
    }
    // Last message without a trailing newline or separator (a sloppy writer).
    file.extend_from_slice(
        b"From last@example.org Tue Nov 14 22:14:00 2023\nSubject: last\n\nno newline",
    );
    expected.push(b"Subject: last\n\nno newline".to_vec());
    (file, expected)
}

/// One `>` less on each line matching `>+From ` (mboxrd).
fn unquoted(stored: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(stored.to_vec()).unwrap();
    let lines = text.split_inclusive('\n');
    let unquote =
        |l: &str| match l.trim_start_matches('>').starts_with("From ") && l.starts_with('>') {
            true => l[1..].to_owned(),
            false => l.to_owned(),
        };
    lines.map(unquote).collect::<String>().into_bytes()
}

fn write_fixture(path: &Path) -> Vec<Vec<u8>> {
    let (bytes, expected) = fixture();
    fs::write(path, bytes).unwrap();
    expected
}

fn uidls(d: &dyn Maildrop) -> Vec<String> {
    d.messages().iter().map(|m| m.uidl.clone()).collect()
}

#[test]
fn reads_messages_sizes_and_uidls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice");
    let expected = write_fixture(&path);
    let d = Mbox::new(&path).open().unwrap();
    assert_eq!(d.messages().len(), expected.len());
    for (i, m) in expected.iter().enumerate() {
        assert_eq!(read_all(&d, i), *m, "message {i}");
        assert_eq!(d.messages()[i].size, transmitted(m).len() as u64, "size {i}");
    }
    let u = uidls(&d);
    assert!(u.iter().all(|x| is_valid_uidl(x)));
    let mut sorted = u.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), u.len(), "UIDLs unique");
    drop(d);
    assert_eq!(uidls(&Mbox::new(&path).open().unwrap()), u, "stable across sessions");
}

#[test]
fn identical_messages_get_distinct_uidls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    let one = "From a@b Tue Nov 14 22:13:20 2023\nSubject: x\n\nsame\n\n";
    fs::write(&path, one.repeat(3)).unwrap();
    let u = uidls(&Mbox::new(&path).open().unwrap());
    assert_eq!(u[1], format!("{}-2", u[0]));
    assert_eq!(u[2], format!("{}-3", u[0]));
}

#[test]
fn commit_deletes_exactly_keeps_mode_and_later_arrivals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice");
    let expected = write_fixture(&path);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let mbox = Mbox::new(&path);
    let mut d = mbox.open().unwrap();
    let u = uidls(&d);
    // An MTA that ignores our locks appends during the session.
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(
        b"\n\nFrom late@example.org Tue Nov 14 23:00:00 2023\nSubject: late\n\nlate body\n\n",
    );
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(d.commit(&[9]), Err(Error::NoSuchMessage(9))));
    d.commit(&[0, 3, 5]).unwrap();
    drop(d);
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    let d = mbox.open().unwrap();
    let after = uidls(&d);
    // The last message got its line end from the late MTA: same size, same UIDL.
    assert_eq!(&after[..4], &[u[1].clone(), u[2].clone(), u[4].clone(), u[6].clone()]);
    assert_eq!(d.messages().len(), 5);
    assert_eq!(read_all(&d, 0), expected[1]);
    assert_eq!(read_all(&d, 3), b"Subject: last\n\nno newline\n");
    assert_eq!(read_all(&d, 4), b"Subject: late\n\nlate body\n");
    assert!(!dir.path().join(".alice.pop3-storage.tmp").exists());
}

#[test]
fn delivery_quotes_and_terminates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bob");
    let mbox = Mbox::new(&path);
    let msgs = [
        message(1, 20, false, true),
        message(2, 5, false, false),
        b"Subject: q\n\nFrom the start of a line\n>From already quoted\n".to_vec(),
    ];
    for m in &msgs {
        let env = Envelope { sender: Some("sender@example.org".into()) };
        mbox.deliver(&mut &m[..], &env).unwrap();
    }
    let raw = String::from_utf8(fs::read(&path).unwrap()).unwrap();
    assert!(raw.starts_with("From sender@example.org "));
    let d = mbox.open().unwrap();
    assert_eq!(d.messages().len(), 3);
    for (i, m) in msgs.iter().enumerate() {
        // mboxrd quoting undone by mboxrd reading: the message as delivered, with a final
        // newline added.
        let mut want = String::from_utf8(m.clone()).unwrap();
        if !want.ends_with('\n') {
            want.push('\n');
        }
        assert_eq!(String::from_utf8(read_all(&d, i)).unwrap(), want, "message {i}");
        assert_eq!(d.messages()[i].size, transmitted(want.as_bytes()).len() as u64);
    }
}

/// `deliver_many`: one append for several messages, announced before it is made; the
/// announced bytes are exactly what `read_range` finds afterwards, and a refusal from the hook
/// leaves the mbox untouched.
#[test]
fn delivery_of_a_batch_is_announced_and_can_be_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carol");
    let mbox = Mbox::new(&path);
    mbox.deliver(&mut &b"Subject: first\n\nbody\n"[..], &Envelope::default()).unwrap();
    let before = fs::metadata(&path).unwrap().len();
    let (a, b) = (b"Subject: a\n\nFrom here\n".to_vec(), b"Subject: b\n\nno newline".to_vec());
    let mut announced = None;
    mbox.deliver_many(&mut [&mut &a[..], &mut &b[..]], &Envelope::default(), &mut |append| {
        let mut data = Vec::new();
        std::io::Read::read_to_end(append.data, &mut data).unwrap();
        assert_eq!(data.len() as u64, append.len);
        announced = Some((append.offset, data));
        Ok(())
    })
    .unwrap();
    let (offset, data) = announced.unwrap();
    assert_eq!(offset, before, "the append starts at the old end");
    assert_eq!(fs::metadata(&path).unwrap().len(), before + data.len() as u64);
    let mut found = Vec::new();
    assert!(mbox
        .read_range(offset, data.len() as u64, &mut |c| found.extend_from_slice(c))
        .unwrap());
    assert_eq!(found, data);
    assert!(!mbox.read_range(offset, data.len() as u64 + 1, &mut |_| {}).unwrap(), "past the end");
    let d = mbox.open().unwrap();
    assert_eq!(d.messages().len(), 3);
    assert_eq!(read_all(&d, 1), b"Subject: a\n\nFrom here\n");
    assert_eq!(read_all(&d, 2), b"Subject: b\n\nno newline\n");
    drop(d);
    // A hook that fails (say, the retriever cannot record the append) stops it.
    let len = fs::metadata(&path).unwrap().len();
    let refused = mbox.deliver_many(&mut [&mut &a[..]], &Envelope::default(), &mut |_| {
        Err(Error::Io { op: "record", path: "state".into(), source: std::io::Error::other("full") })
    });
    assert!(refused.is_err());
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
}

#[test]
fn delivery_repairs_a_missing_separator() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    fs::write(&path, b"From a@b Tue Nov 14 22:13:20 2023\n\nno newline").unwrap();
    Mbox::new(&path).deliver(&mut &b"Subject: next\n\nnext\n"[..], &Envelope::default()).unwrap();
    let d = Mbox::new(&path).open().unwrap();
    assert_eq!(read_all(&d, 0), b"\nno newline\n");
    assert_eq!(d.messages()[0].size, transmitted(b"\nno newline").len() as u64);
    assert_eq!(read_all(&d, 1), b"Subject: next\n\nnext\n");
    assert!(fs::read_to_string(&path).unwrap().contains("\n\nFrom MAILER-DAEMON "));
}

#[test]
fn locking_in_process_stale_dotlock_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carol");
    let lock = dir.path().join("carol.lock");
    let mbox = Mbox::new(&path);
    // Missing mbox: an empty maildrop, still locked.
    let d = mbox.open().unwrap();
    assert!(d.messages().is_empty());
    assert!(lock.exists());
    assert_eq!(mbox.open().unwrap_err().kind(), ErrorKind::InUse);
    let err = mbox.deliver(&mut &b"x\n"[..], &Envelope::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse, "delivery waits for the session");
    drop(d);
    assert!(!lock.exists(), "released on drop");
    write_fixture(&path);
    // A dotlock left by a dead process is recovered.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    fs::write(&lock, format!("{dead}\n")).unwrap();
    assert_eq!(mbox.open().unwrap().messages().len(), 7);
}

#[test]
fn refuses_a_file_that_is_not_an_mbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    fs::write(&path, b"Subject: not an mbox\n\nbody\n").unwrap();
    let err = Mbox::new(&path).open().unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }));
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(!dir.path().join("m.lock").exists(), "lock released on failure");
    // Leading blank lines are tolerated.
    fs::write(&path, b"\n\nFrom a@b Tue Nov 14 22:13:20 2023\nbody\n").unwrap();
    let d = Mbox::new(&path).open().unwrap();
    assert_eq!(read_all(&d, 0), b"body\n");
}
