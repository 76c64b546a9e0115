//! The in-memory maildrop, for tests and embedders.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::location::check_user;
use crate::{Envelope, Error, Maildrop, MessageInfo, MessageReader, Result, Store};

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

impl Store for MemoryStore {
    fn open(&self, user: &str) -> Result<Box<dyn Maildrop>> {
        Ok(Box::new(self.open_memory(user)?))
    }

    fn deliver(&self, user: &str, message: &mut dyn Read, _envelope: &Envelope) -> Result<()> {
        let mailbox = self.mailbox(user)?;
        let mut bytes = Vec::new();
        message.read_to_end(&mut bytes).map_err(|e| Error::io("read message", "memory", e))?;
        let mut mb = lock(&mailbox);
        mb.next_id += 1;
        let id = mb.next_id;
        mb.messages.push((id, bytes.into()));
        Ok(())
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

    fn deliver(store: &MemoryStore, user: &str, msg: &[u8]) {
        store.deliver(user, &mut &msg[..], &Envelope::default()).unwrap();
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
        let mut d = store.open("u").unwrap();
        assert_eq!(
            d.messages().iter().map(|m| (m.size, m.uidl.as_str())).collect::<Vec<_>>(),
            vec![(5, "m1"), (5, "m2"), (7, "m3")]
        );
        assert_eq!(read_all(&*d, 1), b"two\r\n");
        assert_eq!(store.open("u").unwrap_err().kind(), crate::ErrorKind::InUse);
        // Arrives during the session: not in the snapshot, survives the commit.
        deliver(&store, "u", b"four\n");
        assert!(matches!(d.commit(&[5]), Err(Error::NoSuchMessage(5))));
        d.commit(&[0, 2, 0]).unwrap();
        assert!(matches!(d.read_message(0), Err(Error::Committed)));
        drop(d);
        let d = store.open("u").unwrap();
        let uidls: Vec<_> = d.messages().iter().map(|m| m.uidl.clone()).collect();
        assert_eq!(uidls, ["m2", "m4"]);
        assert_eq!(read_all(&*d, 1), b"four\n");
    }

    #[test]
    fn drop_releases_without_deleting() {
        let store = MemoryStore::new();
        deliver(&store, "u", b"x\n");
        let d = store.open("u").unwrap();
        drop(d);
        let d = store.open("u").unwrap();
        assert_eq!(d.messages().len(), 1);
        assert!(store.open("other").unwrap().messages().is_empty());
        assert!(matches!(store.open("a/b"), Err(Error::InvalidUser(_))));
    }
}
