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
        assert_eq!(info.size, transmitted(&bytes).len() as u64, "size of {}", info.uidl);
        assert!(out.insert(info.uidl.clone(), bytes).is_none(), "duplicate UIDL");
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
    let child_pid = child.id();
    assert!(matches!(err, pop3_storage::Error::InUse { holder: Some(p), .. } if p == child_pid));
    child.kill();
    // The dead holder's lock is still there (a symlink whose target names a dead pid): the
    // next open breaks it.
    let lock = dir.path().join(pop3_storage::maildir::LOCK_FILE);
    let stamp = std::fs::read_link(&lock).unwrap().to_string_lossy().into_owned();
    assert_eq!(stamp.lines().next(), Some(child_pid.to_string().as_str()), "{stamp}");
    assert_eq!(contents(&Maildir::new(dir.path())), msgs, "killed session deleted nothing");
    assert!(std::fs::symlink_metadata(&lock).is_err(), "released after the open that broke it");
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
        assert!(child.wait_for(&format!("FAILPOINT {step}")), "{step} not reached");
        child.kill();
        let md = Maildir::new(dir.path());
        let after = contents(&md);
        for (uidl, m) in &before {
            assert_eq!(after.get(uidl), Some(m), "{step}: old message lost or changed");
        }
        let added: Vec<_> = after.keys().filter(|u| !before.contains_key(*u)).collect();
        if visible {
            assert_eq!(added.len(), 1, "{step}: exactly one copy");
            assert_eq!(after[added[0]], new_msg, "{step}: complete");
        } else {
            assert!(added.is_empty(), "{step}: nothing half-delivered is visible");
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
        let order: Vec<String> =
            md.open().unwrap().messages().iter().map(|m| m.uidl.clone()).collect();
        let fp = step.strip_prefix("FAILPOINT ");
        let child = ChildProc::spawn(NAME, role, dir.path().to_str().unwrap(), fp);
        assert!(child.wait_for(step), "{step} not reached");
        // Mail arriving while the session is open is untouched by its commit.
        let arrived = md.deliver(&mut &b"arrived during the session\n"[..]).unwrap();
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

fn mbox_contents(mbox: &pop3_storage::Mbox) -> Vec<(String, Vec<u8>)> {
    let d = mbox.open().unwrap();
    (0..d.messages().len())
        .map(|i| {
            let bytes = read_all(&d, i);
            assert_eq!(d.messages()[i].size, transmitted(&bytes).len() as u64);
            (d.messages()[i].uidl.clone(), bytes)
        })
        .collect()
}

fn mbox_with(n: usize) -> (tempfile::TempDir, pop3_storage::Mbox, Vec<(String, Vec<u8>)>) {
    let dir = tempfile::tempdir().unwrap();
    let mbox = pop3_storage::Mbox::new(dir.path().join("user"));
    for i in 0..n {
        let m = message(i, 10 + i, false, true);
        mbox.deliver(&mut &m[..], &Default::default()).unwrap();
    }
    let before = mbox_contents(&mbox);
    assert_eq!(before.len(), n);
    (dir, mbox, before)
}

#[test]
fn mbox_locks_across_processes_fcntl_alone_is_respected() {
    const NAME: &str = "mbox_locks_across_processes_fcntl_alone_is_respected";
    if let Some((role, target)) = common::child_role() {
        if role == "fcntl" {
            // Like an MDA that uses fcntl only: no dotlock.
            let f = std::fs::OpenOptions::new().read(true).write(true).open(&target).unwrap();
            rustix::fs::fcntl_lock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
            common::announce_and_wait("LOCKED");
        }
        let d = pop3_storage::Mbox::new(&target).open().unwrap();
        common::announce_and_wait(&format!("LOCKED {}", d.messages().len()));
    }
    let _g = serial();
    let (dir, mbox, before) = mbox_with(2);
    let target = mbox.path().to_str().unwrap().to_owned();
    for role in ["session", "fcntl"] {
        let child = ChildProc::spawn(NAME, role, &target, None);
        assert!(child.wait_for("LOCKED"), "{role}: child never locked");
        let err = mbox.open().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InUse, "{role}: {err}");
        if role == "fcntl" {
            assert!(!dir.path().join("user.lock").exists(), "our dotlock released");
        }
        child.kill();
        // Killed session: its dotlock names a dead pid and is recovered; fcntl died with it.
        assert_eq!(mbox_contents(&mbox), before, "{role}");
    }
}

#[test]
fn mbox_commit_killed_at_each_step() {
    const NAME: &str = "mbox_commit_killed_at_each_step";
    if let Some((_, target)) = common::child_role() {
        common::install_failpoint_hook();
        let mut d = pop3_storage::Mbox::new(&target).open().unwrap();
        d.commit(&[0, 2]).unwrap();
        common::announce_and_wait("COMMITTED");
    }
    let _g = serial();
    for (step, done) in [
        ("mbox.commit.written", false),
        ("mbox.commit.synced", false),
        ("mbox.commit.renamed", true),
        ("mbox.commit.done", true),
    ] {
        let (_dir, mbox, before) = mbox_with(4);
        let child = ChildProc::spawn(NAME, "quit", mbox.path().to_str().unwrap(), Some(step));
        assert!(child.wait_for(&format!("FAILPOINT {step}")), "{step} not reached");
        child.kill();
        let after = mbox_contents(&mbox);
        let want: Vec<_> =
            if done { vec![before[1].clone(), before[3].clone()] } else { before.clone() };
        assert_eq!(after, want, "{step}: old or new content, nothing else");
        // The next session commits normally.
        let mut d = mbox.open().unwrap();
        d.commit(&[0]).unwrap();
        drop(d);
        assert_eq!(mbox_contents(&mbox), want[1..], "{step}");
    }
}

#[test]
fn mbox_delivery_killed_at_each_step() {
    const NAME: &str = "mbox_delivery_killed_at_each_step";
    if let Some((_, target)) = common::child_role() {
        common::install_failpoint_hook();
        // Larger than one 64 KiB chunk, so the append is interrupted half-way.
        let m = message(77, 3000, false, true);
        pop3_storage::Mbox::new(&target).deliver(&mut &m[..], &Default::default()).unwrap();
        common::announce_and_wait("DELIVERED");
    }
    let _g = serial();
    // Read back as delivered: mboxrd quoting is undone when reading.
    let new_msg = message(77, 3000, false, true);
    for (step, kept) in [
        ("mbox.deliver.journaled", false),
        ("mbox.deliver.partial", false),
        ("mbox.deliver.appended", false),
        ("mbox.deliver.synced", false),
        ("mbox.deliver.done", true),
    ] {
        let (_dir, mbox, before) = mbox_with(3);
        let child = ChildProc::spawn(NAME, "deliver", mbox.path().to_str().unwrap(), Some(step));
        assert!(child.wait_for(&format!("FAILPOINT {step}")), "{step} not reached");
        child.kill();
        let after = mbox_contents(&mbox);
        assert_eq!(after[..3], before[..], "{step}: old messages intact");
        if kept {
            assert_eq!(after.len(), 4, "{step}");
            assert_eq!(after[3].1, new_msg, "{step}: complete");
        } else {
            assert_eq!(after.len(), 3, "{step}: unacknowledged append rolled back");
        }
        mbox.deliver(&mut &b"next\n"[..], &Default::default()).unwrap();
        assert_eq!(mbox_contents(&mbox).len(), after.len() + 1);
    }
}
