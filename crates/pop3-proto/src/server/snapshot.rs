//! The maildrop as the session sees it after login: numbers, sizes, unique ids, deleted marks.

use alloc::string::String;
use alloc::vec::Vec;

use crate::response::ResponseError;
use crate::{MsgNum, ScanListing, UidListing};

/// One message of a maildrop snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    size: u64,
    uid: String,
}

impl MessageInfo {
    /// A message of `size` octets (RFC 1939 size: CRLF line ends, before dot-stuffing) and
    /// unique id `uid` (1 to 70 octets in 0x21..=0x7E, RFC 1939 §7).
    pub fn new(size: u64, uid: impl Into<String>) -> Result<Self, ResponseError> {
        let uid = uid.into();
        if !crate::response::is_unique_id(uid.as_bytes()) {
            return Err(ResponseError::InvalidUidListing);
        }
        Ok(Self { size, uid })
    }

    /// The RFC 1939 size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The unique id.
    pub fn uid(&self) -> &str {
        &self.uid
    }
}

/// The messages of a locked maildrop, numbered from 1 in the order given, with deleted marks.
///
/// RFC 1939 §5: deleted messages keep their numbers but vanish from STAT, LIST, UIDL, RETR and
/// TOP; RSET clears every mark. The totals are kept up to date so STAT is O(1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
    live_count: u32,
    live_size: u64,
}

impl Snapshot {
    /// A snapshot of `messages`, none deleted. At most `u32::MAX` messages are numbered.
    pub fn new(mut messages: Vec<MessageInfo>) -> Self {
        messages.truncate(u32::MAX as usize);
        let live_count = messages.len() as u32;
        let live_size = messages.iter().map(|m| m.size).sum();
        let deleted = alloc::vec![false; messages.len()];
        Self { messages, deleted, live_count, live_size }
    }

    /// (count, total size) of the messages not marked deleted: the STAT answer.
    pub fn stat(&self) -> (u32, u64) {
        (self.live_count, self.live_size)
    }

    /// Every message number, deleted or not.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True if the maildrop holds no message at all.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The message `msg`, unless it does not exist or is marked deleted.
    pub fn get(&self, msg: MsgNum) -> Option<&MessageInfo> {
        let i = msg.index();
        (i < self.messages.len() && !self.deleted[i]).then(|| &self.messages[i])
    }

    /// True if `msg` exists and is marked deleted.
    pub fn is_deleted(&self, msg: MsgNum) -> bool {
        self.deleted.get(msg.index()).copied().unwrap_or(false)
    }

    /// Marks `msg` deleted; false if it does not exist or already is.
    pub fn delete(&mut self, msg: MsgNum) -> bool {
        let Some(m) = self.get(msg) else { return false };
        let size = m.size;
        self.deleted[msg.index()] = true;
        self.live_count -= 1;
        self.live_size -= size;
        true
    }

    /// Clears every deleted mark (RSET).
    pub fn undelete_all(&mut self) {
        self.deleted.iter_mut().for_each(|d| *d = false);
        self.live_count = self.messages.len() as u32;
        self.live_size = self.messages.iter().map(|m| m.size).sum();
    }

    /// The scan listing of every message not deleted (LIST).
    pub fn scan_listings(&self) -> impl Iterator<Item = ScanListing> + '_ {
        self.live().map(|(msg, m)| ScanListing { msg, size: m.size })
    }

    /// The unique-id listing of every message not deleted (UIDL).
    pub fn uid_listings(&self) -> impl Iterator<Item = UidListing<'_>> + '_ {
        self.live().filter_map(|(msg, m)| UidListing::new(msg, m.uid.as_str()).ok())
    }

    /// The zero-based indices of the messages marked deleted, in order: what UPDATE removes.
    pub fn deleted_indices(&self) -> Vec<usize> {
        self.deleted.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i).collect()
    }

    fn live(&self) -> impl Iterator<Item = (MsgNum, &MessageInfo)> + '_ {
        self.messages
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|(_, (_, deleted))| !**deleted)
            .filter_map(|(i, (m, _))| Some((MsgNum::from_index(i)?, m)))
    }
}
