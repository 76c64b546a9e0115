//! Tests with child processes: locks held across processes, release on kill, and crash safety
//! (a child is SIGKILLed at each step of commit and delivery).
//!
//! The child is this test binary re-invoked on the same test with an environment variable
//! naming its role. Tests here run one at a time: between fork and exec a child shares the
//! parent's open file descriptions, and so its flocks, which would disturb a concurrent test
//! checking that a lock was released.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::{message, read_all, transmitted, ChildProc};
use pop3_storage::{ErrorKind, Maildir, Maildrop};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Maildir with `n` delivered messages; returns their contents by UIDL.
fn maildir_with(n: usize) -> (tempfile::TempDir, HashMap<String, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::new(dir.path());
    let mut by_uidl = HashMap::new();
    for i in 0..n {
        let m = message(i, 20 + i, i % 2 == 1, true);
        let name = md.deliver(&mut &m[..]).unwrap();
        by_uidl.insert(name, m);
    }
    (dir, by_uidl)
}

/// Every message of the maildrop, by UIDL, checking sizes against contents.
fn contents(md: &Maildir) -> HashMap<String, Vec<u8>> {
    let d = md.open().unwrap();
    let mut out = HashMap::new();
    for (i, info) in d.messages().iter().enumerate() {
        let bytes = read_all(&d, i);
        assert_eq!(
            info.size,
            transmitted(&bytes).len() as u64,
            "size of {}",
            info.uidl
        );
        assert!(
            out.insert(info.uidl.clone(), bytes).is_none(),
            "duplicate UIDL"
        );
    }
    out
}

#[test]
fn maildir_lock_held_by_another_process_and_released_when_it_is_killed() {
    const NAME: &str = "maildir_lock_held_by_another_process_and_released_when_it_is_killed";
    if let Some((_, target)) = common::child_role() {
        let d = Maildir::new(&target).open().unwrap();
        common::announce_and_wait(&format!("LOCKED {}", d.messages().len()));
    }
    let _g = serial();
    let (dir, msgs) = maildir_with(3);
    let child = ChildProc::spawn(NAME, "hold", dir.path().to_str().unwrap(), None);
    assert!(child.wait_for("LOCKED 3"), "child never took the lock");
    let err = Maildir::new(dir.path()).open().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    child.kill();
    // The kernel dropped the dead holder's flock; the lock file it left is no obstacle.
    assert!(dir.path().join(pop3_storage::maildir::LOCK_FILE).exists());
    assert_eq!(
        contents(&Maildir::new(dir.path())),
        msgs,
        "killed session deleted nothing"
    );
}

#[test]
fn maildir_delivery_killed_at_each_step() {
    const NAME: &str = "maildir_delivery_killed_at_each_step";
    if let Some((_, target)) = common::child_role() {
        common::install_failpoint_hook();
        let m = message(99, 50, false, true);
        Maildir::new(&target).deliver(&mut &m[..]).unwrap();
        common::announce_and_wait("DELIVERED");
    }
    let _g = serial();
    let new_msg = message(99, 50, false, true);
    for (step, visible) in [
        ("maildir.deliver.written", false),
        ("maildir.deliver.synced", false),
        ("maildir.deliver.linked", true),
        ("maildir.deliver.done", true),
    ] {
        let (dir, before) = maildir_with(3);
        let child = ChildProc::spawn(NAME, "deliver", dir.path().to_str().unwrap(), Some(step));
        assert!(
            child.wait_for(&format!("FAILPOINT {step}")),
            "{step} not reached"
        );
        child.kill();
        let md = Maildir::new(dir.path());
        let after = contents(&md);
        for (uidl, m) in &before {
            assert_eq!(
                after.get(uidl),
                Some(m),
                "{step}: old message lost or changed"
            );
        }
        let added: Vec<_> = after.keys().filter(|u| !before.contains_key(*u)).collect();
        if visible {
            assert_eq!(added.len(), 1, "{step}: exactly one copy");
            assert_eq!(after[added[0]], new_msg, "{step}: complete");
        } else {
            assert!(
                added.is_empty(),
                "{step}: nothing half-delivered is visible"
            );
        }
        // The next open and delivery work normally.
        md.deliver(&mut &b"next\n"[..]).unwrap();
        assert_eq!(contents(&md).len(), after.len() + 1);
    }
}

#[test]
fn maildir_commit_killed_at_each_step() {
    const NAME: &str = "maildir_commit_killed_at_each_step";
    if let Some((role, target)) = common::child_role() {
        common::install_failpoint_hook();
        let mut d = Maildir::new(&target).open().unwrap();
        if role == "quit" {
            d.commit(&[0, 2]).unwrap();
            common::announce_and_wait("COMMITTED");
        }
        // "session": marks deletions but is killed before QUIT.
        common::announce_and_wait("MARKED");
    }
    let _g = serial();
    for (role, step) in [
        ("session", "MARKED"),
        ("quit", "FAILPOINT maildir.commit.removed-one"),
        ("quit", "FAILPOINT maildir.commit.synced"),
        ("quit", "COMMITTED"),
    ] {
        let (dir, before) = maildir_with(4);
        let md = Maildir::new(dir.path());
        let order: Vec<String> = md
            .open()
            .unwrap()
            .messages()
            .iter()
            .map(|m| m.uidl.clone())
            .collect();
        let fp = step.strip_prefix("FAILPOINT ");
        let child = ChildProc::spawn(NAME, role, dir.path().to_str().unwrap(), fp);
        assert!(child.wait_for(step), "{step} not reached");
        // Mail arriving while the session is open is untouched by its commit.
        let arrived = md
            .deliver(&mut &b"arrived during the session\n"[..])
            .unwrap();
        child.kill();
        let after = contents(&md);
        assert_eq!(after[&arrived], b"arrived during the session\n");
        for (i, uidl) in order.iter().enumerate() {
            let doomed = role == "quit" && (i == 0 || i == 2);
            match after.get(uidl) {
                Some(m) => assert_eq!(m, &before[uidl], "{step}: message {i} corrupted"),
                None => assert!(doomed, "{step}: message {i} lost"),
            }
        }
        if step == "MARKED" {
            assert_eq!(after.len(), 5, "a killed session deletes nothing");
        }
        if step == "FAILPOINT maildir.commit.synced" || step == "COMMITTED" {
            assert_eq!(after.len(), 3, "{step}: both deletions done");
        }
    }
}
