//! Per-account UIDL state: which messages were seen (and when) and which are stored locally.
//!
//! The file is an append-only journal, compacted at the start of every run:
//!
//! ```text
//! pop3-state 1
//! S <unix seconds first seen> <uidl>     seen on the server
//! F <uidl>                               delivered locally and synced
//! X <uidl>                               gone from the server: forget it
//! M <offset> <len> <sha256> <uidl>...    an mbox append about to be made (see below)
//! R                                      every M before this one is resolved
//! ```
//!
//! `M` is synced before a batch is appended to an mbox. If the run dies before the batch's
//! `F` records, the next run looks in the mbox at that offset: the same octets there mean the
//! append took place (the uidls get their `F`), anything else that it did not (they are
//! fetched again). Then it writes `R`.
//!
//! Each record is appended and `fdatasync`ed before the next step (for `F`: before the
//! message may be deleted on the server). A torn last line (no newline) is ignored. The file is
//! locked (`flock`) for the whole run, so two fetches of one account cannot interleave.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// What is known of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When it was first seen on the server (unix seconds).
    pub seen: u64,
    /// Stored locally.
    pub fetched: bool,
}

/// An mbox append recorded before it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAppend {
    /// Where it starts in the mbox.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// SHA-256 of its octets, hex.
    pub digest: String,
    /// The messages it holds.
    pub uids: Vec<String>,
}

/// Appends `F` records to a state's journal (opened for appending, so records written
/// through it and through the [`State`] never overlap).
#[derive(Debug)]
pub struct Journal {
    /// None for a read-only state (`--dry-run`).
    file: Option<File>,
}

impl Journal {
    /// Records that every one of `uids` is stored locally, durably, in one write.
    pub fn fetched<'a>(&self, uids: impl Iterator<Item = &'a str>) -> io::Result<()> {
        append_synced(self.file.as_ref(), &fetched_records(uids))
    }
}

/// The `F` records of `uids`.
fn fetched_records<'a>(uids: impl Iterator<Item = &'a str>) -> String {
    uids.map(|uid| format!("F {uid}\n")).collect()
}

/// Appends `records` to the state file and syncs it (nothing to do without a file, for a
/// read-only state, or without records).
fn append_synced(file: Option<&File>, records: &str) -> io::Result<()> {
    let Some(mut file) = file.filter(|_| !records.is_empty()) else { return Ok(()) };
    file.write_all(records.as_bytes())?;
    file.sync_data()
}

/// The state of one account, locked.
#[derive(Debug)]
pub struct State {
    file: File,
    _lock: File,
    /// uidl -> entry.
    pub entries: HashMap<String, Entry>,
    /// mbox appends whose messages are not all recorded as fetched.
    pub pending: Vec<PendingAppend>,
    /// Whether appends are synced (off for --dry-run, which writes nothing).
    read_only: bool,
}

const MAGIC: &str = "pop3-state 1";

impl State {
    /// Opens and locks the state of `account` in `dir`, compacting it. Fails with
    /// `WouldBlock` if another fetch holds it.
    pub fn open(dir: &Path, account: &str, read_only: bool) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{account}.state"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{account}.lock")))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                if e == rustix::io::Errno::WOULDBLOCK {
                    io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("another pop3 fetch of {account} is running"),
                    )
                } else {
                    e.into()
                }
            },
        )?;
        let (entries, pending) = match std::fs::read(&path) {
            Ok(data) => parse(&data)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (HashMap::new(), Vec::new()),
            Err(e) => return Err(e),
        };
        let file = if read_only {
            File::open(&path).or_else(|_| File::open("/dev/null"))?
        } else {
            compact(dir, &path, &entries, &pending)?
        };
        Ok(Self { file, _lock: lock, entries, pending, read_only })
    }

    fn append(&mut self, records: &str) -> io::Result<()> {
        append_synced(Some(&self.file).filter(|_| !self.read_only), records)
    }

    /// Records every uidl not yet known as seen at `now`, durably, in one write.
    pub fn see_all<'a>(&mut self, uids: impl Iterator<Item = &'a str>, now: u64) -> io::Result<()> {
        let mut records = String::new();
        for uid in uids {
            if !self.entries.contains_key(uid) {
                self.entries.insert(uid.to_owned(), Entry { seen: now, fetched: false });
                records.push_str(&format!("S {now} {uid}\n"));
            }
        }
        self.append(&records)
    }

    /// Records that `uid` is stored locally, durably.
    pub fn fetched(&mut self, uid: &str) -> io::Result<()> {
        self.fetched_many(std::iter::once(uid))
    }

    /// Records that every one of `uids` is stored locally, durably, in one write.
    pub fn fetched_many<'a>(
        &mut self,
        uids: impl Iterator<Item = &'a str> + Clone,
    ) -> io::Result<()> {
        self.mark_fetched(uids.clone());
        self.append(&fetched_records(uids))
    }

    /// Notes in memory that every one of `uids` is stored locally: their records were
    /// appended, durably, through a [`Journal`].
    pub fn mark_fetched<'a>(&mut self, uids: impl Iterator<Item = &'a str>) {
        for uid in uids {
            if let Some(e) = self.entries.get_mut(uid) {
                e.fetched = true;
            }
        }
    }

    /// A handle that appends `F` records from another thread: a batch's commit records its
    /// messages itself, so the download never waits for the state's sync.
    pub fn journal(&self) -> io::Result<Journal> {
        Ok(Journal { file: if self.read_only { None } else { Some(self.file.try_clone()?) } })
    }

    /// Records, durably, an mbox append about to be made of the messages `uids`.
    pub fn pending_append<'a>(
        &mut self,
        offset: u64,
        len: u64,
        digest: &str,
        uids: impl Iterator<Item = &'a str>,
    ) -> io::Result<()> {
        let uids: Vec<String> = uids.map(str::to_owned).collect();
        let record = format!("M {offset} {len} {digest} {}\n", uids.join(" "));
        self.append(&record)?;
        self.pending.push(PendingAppend { offset, len, digest: digest.to_owned(), uids });
        Ok(())
    }

    /// Settles the pending mbox appends: those `took_place` confirms get `F` records for their
    /// messages; the others are dropped (their messages will be fetched again). Returns how
    /// many messages were found delivered.
    pub fn resolve_pending(
        &mut self,
        mut took_place: impl FnMut(&PendingAppend) -> io::Result<bool>,
    ) -> io::Result<usize> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let mut found = 0;
        for pending in std::mem::take(&mut self.pending) {
            if took_place(&pending)? {
                found += pending.uids.len();
                self.fetched_many(pending.uids.iter().map(String::as_str))?;
            }
        }
        self.append("R\n")?;
        Ok(found)
    }

    /// Forgets the uidls not in `present` (they are gone from the server).
    pub fn forget_missing(&mut self, present: &std::collections::HashSet<&str>) -> io::Result<()> {
        let gone: Vec<String> =
            self.entries.keys().filter(|u| !present.contains(u.as_str())).cloned().collect();
        let mut records = String::new();
        for uid in gone {
            self.entries.remove(&uid);
            records.push_str(&format!("X {uid}\n"));
        }
        self.append(&records)
    }

    /// Marks every uidl fetched (rebuild-state), in one write.
    pub fn mark_all_fetched(&mut self, uids: &[&str], now: u64) -> io::Result<()> {
        let mut records = String::new();
        for &uid in uids {
            let entry = self.entries.entry(uid.to_owned()).or_insert_with(|| {
                records.push_str(&format!("S {now} {uid}\n"));
                Entry { seen: now, fetched: false }
            });
            if !entry.fetched {
                entry.fetched = true;
                records.push_str(&format!("F {uid}\n"));
            }
        }
        self.append(&records)
    }
}

type Parsed = (HashMap<String, Entry>, Vec<PendingAppend>);

fn parse(data: &[u8]) -> io::Result<Parsed> {
    let mut entries = HashMap::new();
    let mut pending = Vec::new();
    let mut first = true;
    // Only whole lines: a record without its newline was torn by a crash.
    for line in data.split_inclusive(|b| *b == b'\n').filter(|l| l.ends_with(b"\n")) {
        let Ok(line) = std::str::from_utf8(&line[..line.len() - 1]) else { continue };
        if first {
            first = false;
            if line != MAGIC {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "not a pop3 state file"));
            }
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("S"), Some(secs), Some(uid)) => {
                if let Ok(seen) = secs.parse() {
                    entries.entry(uid.to_owned()).or_insert(Entry { seen, fetched: false });
                }
            }
            (Some("F"), Some(uid), None) => {
                entries.entry(uid.to_owned()).or_insert(Entry { seen: 0, fetched: true }).fetched =
                    true;
            }
            (Some("X"), Some(uid), None) => {
                entries.remove(uid);
            }
            (Some("M"), Some(offset), Some(rest)) => {
                let mut words = rest.split(' ');
                let (Some(len), Some(digest)) = (words.next(), words.next()) else { continue };
                if let (Ok(offset), Ok(len)) = (offset.parse(), len.parse()) {
                    let uids = words.map(str::to_owned).collect();
                    pending.push(PendingAppend { offset, len, digest: digest.to_owned(), uids });
                }
            }
            (Some("R"), None, None) => pending.clear(),
            _ => {} // torn or unknown line
        }
    }
    // An append whose messages all have their F record needs no more checking.
    pending.retain(|p: &PendingAppend| {
        p.uids.iter().any(|u| entries.get(u).is_none_or(|e: &Entry| !e.fetched))
    });
    Ok((entries, pending))
}

/// Rewrites the journal as one record per entry (temp file, fsync, rename, fsync dir) and
/// returns it open for appending.
fn compact(
    dir: &Path,
    path: &Path,
    entries: &HashMap<String, Entry>,
    pending: &[PendingAppend],
) -> io::Result<File> {
    let tmp = path.with_extension("state.tmp");
    let mut out = io::BufWriter::new(File::create(&tmp)?);
    writeln!(out, "{MAGIC}")?;
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_by(|a, b| (a.1.seen, a.0).cmp(&(b.1.seen, b.0)));
    for (uid, e) in sorted {
        writeln!(out, "S {} {uid}", e.seen)?;
        if e.fetched {
            writeln!(out, "F {uid}")?;
        }
    }
    for p in pending {
        writeln!(out, "M {} {} {} {}", p.offset, p.len, p.digest, p.uids.join(" "))?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trip_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = State::open(dir.path(), "a", false).unwrap();
            s.see_all(["u1", "u2", "u3"].into_iter(), 100).unwrap();
            s.fetched("u1").unwrap();
            s.fetched("u2").unwrap();
            let present = ["u2", "u3"].into_iter().collect();
            s.forget_missing(&present).unwrap();
            // A second opener is refused while the first holds the lock.
            let err = State::open(dir.path(), "a", false).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        }
        // A torn last record is ignored.
        let path = dir.path().join("a.state");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"F u3").unwrap();
        let s = State::open(dir.path(), "a", false).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries["u2"], Entry { seen: 100, fetched: true });
        assert_eq!(s.entries["u3"], Entry { seen: 100, fetched: false });
    }

    #[test]
    fn records_appended_through_a_journal_from_another_thread_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = State::open(dir.path(), "a", false).unwrap();
            s.see_all(["u1", "u2", "u3"].into_iter(), 100).unwrap();
            let journal = s.journal().unwrap();
            std::thread::spawn(move || journal.fetched(["u1", "u3"].into_iter()).unwrap())
                .join()
                .unwrap();
            s.fetched("u2").unwrap();
            s.mark_fetched(["u1", "u3"].into_iter());
            assert!(s.entries.values().all(|e| e.fetched));
        }
        let s = State::open(dir.path(), "a", false).unwrap();
        assert!(["u1", "u2", "u3"].iter().all(|u| s.entries[*u].fetched), "{:?}", s.entries);
        // A read-only state's journal writes nothing.
        let r = State::open(dir.path(), "b", true).unwrap();
        r.journal().unwrap().fetched(["x"].into_iter()).unwrap();
        assert!(!dir.path().join("b.state").exists());
    }

    #[test]
    fn pending_appends_survive_until_resolved() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = State::open(dir.path(), "a", false).unwrap();
            s.see_all(["u1", "u2", "u3"].into_iter(), 100).unwrap();
            s.pending_append(0, 10, "aa", ["u1", "u2"].into_iter()).unwrap();
            s.fetched_many(["u1", "u2"].into_iter()).unwrap();
            s.pending_append(10, 5, "bb", ["u3"].into_iter()).unwrap();
        }
        // Reopened (compacted): the settled append is gone, the other is kept.
        let mut s = State::open(dir.path(), "a", false).unwrap();
        assert_eq!(s.pending.len(), 1);
        assert_eq!((s.pending[0].offset, s.pending[0].uids.clone()), (10, vec!["u3".to_owned()]));
        let found = s.resolve_pending(|p| Ok(p.digest == "bb")).unwrap();
        assert_eq!(found, 1);
        assert!(s.entries["u3"].fetched);
        drop(s);
        let s = State::open(dir.path(), "a", false).unwrap();
        assert!(s.pending.is_empty());
        assert!(s.entries["u3"].fetched);
    }
}
