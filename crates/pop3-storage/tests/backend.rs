//! The backend contract, checked the same way on every backend: Maildir and mbox locations and
//! the memory store. What the server, `pop3d deliver` and a retriever rely on.

mod common;

use std::io::Read;
use std::sync::Arc;

use common::{read_all, transmitted};
use pop3_storage::sink::{Begun, Incoming};
use pop3_storage::{
    Backend, Envelope, ErrorKind, Location, MaildirOptions, MemoryStore, Template, User,
};

/// Every backend, each in its own temporary directory (kept alive by the first element).
fn backends() -> Vec<(Option<tempfile::TempDir>, &'static str, Arc<dyn Backend>)> {
    let maildir = tempfile::tempdir().unwrap();
    let template = Template::parse(format!("{}/%d/%n", maildir.path().display())).unwrap();
    let maildirs = Location::maildir(template, MaildirOptions::default());
    let mbox = tempfile::tempdir().unwrap();
    let template = Template::parse(format!("{}/%u", mbox.path().display())).unwrap();
    let mboxes = Location::mbox(template);
    vec![
        (Some(maildir), "maildir", Arc::new(maildirs)),
        (Some(mbox), "mbox", Arc::new(mboxes)),
        (None, "memory", Arc::new(MemoryStore::new())),
    ]
}

fn body(d: &dyn pop3_storage::Maildrop, i: usize) -> Vec<u8> {
    read_all(d, i)
}

#[test]
fn deliver_open_read_commit_on_every_backend() {
    for (_dir, name, backend) in backends() {
        let alice = User::new("alice@example.org");
        let messages: [&[u8]; 3] =
            [b"Subject: 1\n\nbody one\n", b"Subject: 2\r\n\r\n.dot\r\n", b"Subject: 3\n\nlast"];
        for m in messages {
            backend.deliver(&alice, &mut &m[..], &Envelope::default()).unwrap();
        }
        let mut d = backend.open(&alice).unwrap();
        assert_eq!(d.messages().len(), 3, "{name}");
        for (i, m) in messages.iter().enumerate() {
            let got = body(&*d, i);
            let want = if name == "maildir" {
                transmitted(m) // stored in wire form: CRLF, the last line completed
            } else if name == "mbox" && !m.ends_with(b"\n") {
                [*m, b"\n"].concat() // an mbox message ends with a line end
            } else {
                m.to_vec()
            };
            assert_eq!(got, want, "{name} message {i}");
            assert_eq!(d.messages()[i].size, transmitted(&got).len() as u64, "{name} size {i}");
        }
        // Exclusive: a second opener is told the maildrop is in use.
        assert_eq!(backend.open(&alice).unwrap_err().kind(), ErrorKind::InUse, "{name}");
        // Delivered during the session: not in its snapshot, kept by its commit. An mbox is
        // locked for the session, as for any locking MDA: the delivery is retried after it.
        let late =
            || backend.deliver(&alice, &mut &b"Subject: 4\n\nlate\n"[..], &Envelope::default());
        if name == "mbox" {
            assert_eq!(late().unwrap_err().kind(), ErrorKind::InUse);
        } else {
            late().unwrap();
        }
        d.commit(&[0, 2]).unwrap();
        drop(d);
        if name == "mbox" {
            late().unwrap();
        }
        let d = backend.open(&alice).unwrap();
        let left: Vec<Vec<u8>> = (0..d.messages().len()).map(|i| body(&*d, i)).collect();
        assert_eq!(left.len(), 2, "{name}");
        assert!(left[0].starts_with(b"Subject: 2") && left[1].starts_with(b"Subject: 4"), "{name}");
        // Names that could leave the location are refused before any path is built.
        let bad = User::new("../etc");
        assert!(matches!(backend.open(&bad), Err(pop3_storage::Error::InvalidUser(_))), "{name}");
    }
}

/// Stage, seal, learn what is settled: ids in staging order, batches in sealing order, every
/// settled message readable afterwards, nothing staged readable before.
#[test]
fn sinks_settle_batches_in_order_on_every_backend() {
    for (_dir, name, backend) in backends() {
        let bob = User::new("bob@example.org");
        let mut sink = backend.sink(&bob).unwrap();
        let mut ids = Vec::new();
        for i in 0..5u8 {
            let incoming =
                Incoming { received: Some(1_700_000_000 + u64::from(i)), ..Incoming::default() };
            assert_eq!(sink.begin(&incoming).unwrap(), Begun::New);
            sink.write(format!("Subject: {i}\n\n").as_bytes()).unwrap();
            sink.write(b"chunked body\n").unwrap();
            ids.push(sink.stage().unwrap());
            if i == 2 {
                // Not sealed: not stored.
                let d = backend.open(&bob).unwrap();
                assert!(d.messages().is_empty(), "{name}: staged messages are not visible");
                drop(d);
                sink.seal().unwrap();
            }
        }
        // One begun and abandoned: nothing of it stays.
        sink.begin(&Incoming::default()).unwrap();
        sink.write(b"Subject: never\n").unwrap();
        sink.abort();
        assert_eq!(ids, [0, 1, 2, 3, 4], "{name}");
        let mut settled = sink.settled(false);
        settled.extend(sink.finish().unwrap());
        let ranges: Vec<_> = settled.iter().map(|s| s.ids.clone()).collect();
        assert_eq!(ranges, [0..3, 3..5], "{name}");
        assert!(settled.iter().all(|s| s.result.is_ok()), "{name}");
        drop(sink);
        let d = backend.open(&bob).unwrap();
        assert_eq!(d.messages().len(), 5, "{name}");
        for i in 0..5 {
            let mut got = Vec::new();
            d.read_message(i).unwrap().read_to_end(&mut got).unwrap();
            let written = format!("Subject: {i}\n\nchunked body\n");
            let want = match name {
                "maildir" => transmitted(written.as_bytes()), // wire form
                _ => written.into_bytes(),
            };
            assert_eq!(got, want, "{name} {i}");
        }
    }
}
