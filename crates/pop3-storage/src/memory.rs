//! The in-memory maildrop, for tests and embedders.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::location::check_user;
use crate::sink::{Begun, Incoming, MessageId, Settled, Sink};
use crate::{Backend, Error, Maildrop, MessageInfo, MessageReader, Result, User};

#[derive(Debug, Default)]
struct Mailbox {
    /// (id, bytes) in delivery order; ids are never reused, so UIDLs are not either.
    messages: Vec<(u64, Arc<[u8]>)>,
    next_id: u64,
    locked: bool,
}

/// A store that keeps every user's messages in memory. Cloning shares the store.
///
/// UIDLs are `m<n>` with `n` counting deliveries per user from 1, never reused.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    users: Arc<Mutex<HashMap<String, Arc<Mutex<Mailbox>>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a mailbox half-updated (every update is a
    // single Vec operation), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn mailbox(&self, user: &str) -> Result<Arc<Mutex<Mailbox>>> {
        check_user(user)?;
        Ok(lock(&self.users).entry(user.to_owned()).or_default().clone())
    }

    /// Opens `user`'s maildrop with its concrete type.
    pub fn open_memory(&self, user: &str) -> Result<MemoryDrop> {
        let mailbox = self.mailbox(user)?;
        let mut mb = lock(&mailbox);
        if mb.locked {
            return Err(Error::InUse {
                path: PathBuf::from(format!("memory:{user}")),
                holder: Some(std::process::id()),
            });
        }
        mb.locked = true;
        let snapshot: Vec<(u64, Arc<[u8]>)> = mb.messages.clone();
        drop(mb);
        let infos = snapshot
            .iter()
            .map(|(id, bytes)| MessageInfo {
                size: crate::rfc1939_size(bytes),
                uidl: format!("m{id}"),
            })
            .collect();
        Ok(MemoryDrop { mailbox: Some(mailbox), snapshot, infos })
    }

    /// Number of messages stored for `user` (0 for an unknown user).
    pub fn len(&self, user: &str) -> usize {
        lock(&self.users).get(user).map_or(0, |m| lock(m).messages.len())
    }
}

impl Backend for MemoryStore {
    fn open(&self, user: &User) -> Result<Box<dyn Maildrop>> {
        Ok(Box::new(self.open_memory(&user.name)?))
    }

    fn sink(&self, user: &User) -> Result<Box<dyn Sink>> {
        Ok(Box::new(MemorySink {
            mailbox: self.mailbox(&user.name)?,
            current: None,
            staged: Vec::new(),
            next_id: 0,
            settled: Vec::new(),
        }))
    }
}

/// A delivery sink into an in-memory maildrop: a sealed batch is stored at once.
#[derive(Debug)]
struct MemorySink {
    mailbox: Arc<Mutex<Mailbox>>,
    current: Option<Vec<u8>>,
    staged: Vec<Vec<u8>>,
    next_id: MessageId,
    settled: Vec<Settled>,
}

impl Sink for MemorySink {
    fn begin(&mut self, _incoming: &Incoming) -> Result<Begun> {
        self.current = Some(Vec::new());
        Ok(Begun::New)
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let current = self.current.as_mut().ok_or_else(|| {
            Error::io("write", "memory", std::io::Error::other("no message begun"))
        })?;
        current.extend_from_slice(chunk);
        Ok(())
    }

    fn stage(&mut self) -> Result<MessageId> {
        let message = self.current.take().ok_or_else(|| {
            Error::io("stage", "memory", std::io::Error::other("no message begun"))
        })?;
        self.staged.push(message);
        self.next_id += 1;
        Ok(self.next_id - 1)
    }

    fn abort(&mut self) {
        self.current = None;
    }

    fn wants_seal(&self) -> bool {
        !self.staged.is_empty()
    }

    fn seal(&mut self) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let ids = self.next_id - self.staged.len() as u64..self.next_id;
        let mut mb = lock(&self.mailbox);
        for message in self.staged.drain(..) {
            mb.next_id += 1;
            let id = mb.next_id;
            mb.messages.push((id, message.into()));
        }
        let names = vec![String::new(); (ids.end - ids.start) as usize];
        self.settled.push(Settled { ids, result: Ok(names) });
        Ok(())
    }

    fn settled(&mut self, _wait: bool) -> Vec<Settled> {
        std::mem::take(&mut self.settled)
    }
}

/// An open in-memory maildrop (see [`MemoryStore`]).
#[derive(Debug)]
pub struct MemoryDrop {
    mailbox: Option<Arc<Mutex<Mailbox>>>,
    snapshot: Vec<(u64, Arc<[u8]>)>,
    infos: Vec<MessageInfo>,
}

impl Maildrop for MemoryDrop {
    fn is_local(&self) -> bool {
        true // in memory
    }

    fn messages(&self) -> &[MessageInfo] {
        &self.infos
    }

    fn read_message(&self, index: usize) -> Result<MessageReader<'_>> {
        if self.mailbox.is_none() {
            return Err(Error::Committed);
        }
        let (_, bytes) = self.snapshot.get(index).ok_or(Error::NoSuchMessage(index))?;
        Ok(MessageReader::slice(bytes))
    }

    fn commit(&mut self, deleted: &[usize]) -> Result<()> {
        let Some(mailbox) = &self.mailbox else {
            return Err(Error::Committed);
        };
        if let Some(&bad) = deleted.iter().find(|&&i| i >= self.snapshot.len()) {
            return Err(Error::NoSuchMessage(bad));
        }
        let ids: Vec<u64> = deleted.iter().map(|&i| self.snapshot[i].0).collect();
        {
            let mut mb = lock(mailbox);
            mb.messages.retain(|(id, _)| !ids.contains(id));
            mb.locked = false;
        }
        self.mailbox = None;
        Ok(())
    }
}

impl Drop for MemoryDrop {
    fn drop(&mut self) {
        if let Some(mailbox) = self.mailbox.take() {
            lock(&mailbox).locked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;
    use std::io::Read;

    fn deliver(store: &MemoryStore, user: &str, msg: &[u8]) {
        store.deliver(&User::new(user), &mut &msg[..], &Envelope::default()).unwrap();
    }

    fn read_all(drop: &dyn Maildrop, i: usize) -> Vec<u8> {
        let mut v = Vec::new();
        drop.read_message(i).unwrap().read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn snapshot_lock_commit() {
        let store = MemoryStore::new();
        deliver(&store, "u", b"one\n");
        deliver(&store, "u", b"two\r\n");
        deliver(&store, "u", b"three");
        let mut d = store.open(&User::new("u")).unwrap();
        assert_eq!(
            d.messages().iter().map(|m| (m.size, m.uidl.as_str())).collect::<Vec<_>>(),
            vec![(5, "m1"), (5, "m2"), (7, "m3")]
        );
        assert_eq!(read_all(&*d, 1), b"two\r\n");
        assert_eq!(store.open(&User::new("u")).unwrap_err().kind(), crate::ErrorKind::InUse);
        // Arrives during the session: not in the snapshot, survives the commit.
        deliver(&store, "u", b"four\n");
        assert!(matches!(d.commit(&[5]), Err(Error::NoSuchMessage(5))));
        d.commit(&[0, 2, 0]).unwrap();
        assert!(matches!(d.read_message(0), Err(Error::Committed)));
        drop(d);
        let d = store.open(&User::new("u")).unwrap();
        let uidls: Vec<_> = d.messages().iter().map(|m| m.uidl.clone()).collect();
        assert_eq!(uidls, ["m2", "m4"]);
        assert_eq!(read_all(&*d, 1), b"four\n");
    }

    #[test]
    fn drop_releases_without_deleting() {
        let store = MemoryStore::new();
        deliver(&store, "u", b"x\n");
        let d = store.open(&User::new("u")).unwrap();
        drop(d);
        let d = store.open(&User::new("u")).unwrap();
        assert_eq!(d.messages().len(), 1);
        assert!(store.open(&User::new("other")).unwrap().messages().is_empty());
        assert!(matches!(store.open(&User::new("a/b")), Err(Error::InvalidUser(_))));
    }
}
