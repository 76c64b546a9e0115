//! The ledger: per account, which messages were seen on the server (and when) and which are
//! settled, that is stored locally and durable. Only a settled message may be deleted on the
//! server, so the ledger is the one place that says so: a sink reports what it made durable
//! through the ledger's [`Recorder`], which writes the records and hands back a [`Settled`]
//! naming the messages; [`Ledger::note`] is the only way the run learns of them.
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

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix seconds: the ledger's clock (first-seen times, `--keep-days`).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

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

/// A message handed to a sink, as the ledger will know it once it is settled: its UIDL, and
/// the octets received for it (for the run's report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parcel {
    /// The server's UIDL.
    pub uid: String,
    /// Octets received from the server.
    pub octets: u64,
}

/// Messages a sink tried to make durable, in the order it settled them, and whether it did
/// (if not, none of them counts as stored). Made only by [`Recorder::settle`], which has
/// recorded them when they are durable, and consumed by [`Ledger::note`]: a message cannot be
/// reported stored without its record, nor recorded without being reported.
#[derive(Debug)]
#[must_use = "settled messages count as stored only once the ledger notes them"]
pub struct Settled {
    parcels: Vec<Parcel>,
    result: io::Result<()>,
}

impl Settled {
    /// True when the messages are durable and recorded.
    pub fn is_durable(&self) -> bool {
        self.result.is_ok()
    }

    /// How many messages.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.parcels.len()
    }
}

/// The ledger's write end for sinks, usable from any thread: it announces mbox appends and
/// records settled messages, each in one synced write of its own descriptor (opened for
/// appending, so records written through it and through the [`Ledger`] never overlap). The
/// thread that persists a Maildir batch records it itself, so the download never waits for
/// the ledger's sync.
#[derive(Debug)]
pub struct Recorder {
    /// None for a read-only ledger (`--dry-run`).
    file: Option<File>,
}

impl Recorder {
    /// Settles `parcels`: when `durable` is Ok, records every one of them as stored, in one
    /// synced write (the result is an error if that write fails); otherwise records nothing.
    pub fn settle(&self, parcels: Vec<Parcel>, durable: io::Result<()>) -> Settled {
        let result = durable.and_then(|()| {
            append_synced(self.file.as_ref(), &fetched_records(parcels.iter().map(|p| &*p.uid)))
        });
        Settled { parcels, result }
    }

    /// Records, durably, an mbox append about to be made of the messages `uids` (`M`), so
    /// that the next run can tell whether it took place.
    pub fn announce<'a>(
        &self,
        offset: u64,
        len: u64,
        digest: &str,
        uids: impl Iterator<Item = &'a str>,
    ) -> io::Result<()> {
        let uids: Vec<&str> = uids.collect();
        let record = format!("M {offset} {len} {digest} {}\n", uids.join(" "));
        append_synced(self.file.as_ref(), &record)
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

/// What [`Ledger::note`] learnt from a [`Settled`]: how many messages are now known stored,
/// and the octets received for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Noted {
    /// Messages.
    pub messages: usize,
    /// Octets received.
    pub octets: u64,
}

/// The ledger of one account, locked.
#[derive(Debug)]
pub struct Ledger {
    file: File,
    lock: File,
    /// uidl -> entry.
    pub entries: HashMap<String, Entry>,
    /// mbox appends found in the file when it was opened whose messages are not all
    /// recorded as fetched (see [`Ledger::resolve_pending`]).
    pub pending: Vec<PendingAppend>,
    /// Whether appends are synced (off for --dry-run, which writes nothing).
    read_only: bool,
}

const MAGIC: &str = "pop3-state 1";

/// Unlocks explicitly rather than by closing: a child being spawned on another thread (an MDA)
/// holds a copy of every descriptor until its `exec`, and a lock released only by closing
/// would stay held by that copy. `LOCK_UN` acts on the open file itself, copies included.
impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.lock, rustix::fs::FlockOperation::Unlock);
    }
}

impl Ledger {
    /// Opens and locks the ledger of `account` in `dir`, compacting it. Fails with
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
        Ok(Self { file, lock, entries, pending, read_only })
    }

    fn append(&mut self, records: &str) -> io::Result<()> {
        append_synced(Some(&self.file).filter(|_| !self.read_only), records)
    }

    /// True if `uid` is recorded as stored.
    pub fn is_fetched(&self, uid: &str) -> bool {
        self.entries.get(uid).is_some_and(|e| e.fetched)
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

    /// Records that every one of `uids` is stored locally, durably, in one write.
    fn fetched_many<'a>(&mut self, uids: impl Iterator<Item = &'a str> + Clone) -> io::Result<()> {
        self.mark_fetched(uids.clone());
        self.append(&fetched_records(uids))
    }

    /// Notes in memory that every one of `uids` is stored locally.
    fn mark_fetched<'a>(&mut self, uids: impl Iterator<Item = &'a str>) {
        for uid in uids {
            if let Some(e) = self.entries.get_mut(uid) {
                e.fetched = true;
            }
        }
    }

    /// Learns of messages a sink settled: durable ones are from now on known as stored (their
    /// records were written by [`Recorder::settle`]). For messages that are not durable, the
    /// error, naming how many they are; none of them counts as stored.
    pub fn note(&mut self, settled: Settled) -> Result<Noted, String> {
        let Settled { parcels, result } = settled;
        result.map_err(|e| format!("storing {} messages: {e}", parcels.len()))?;
        self.mark_fetched(parcels.iter().map(|p| p.uid.as_str()));
        let octets = parcels.iter().map(|p| p.octets).sum();
        Ok(Noted { messages: parcels.len(), octets })
    }

    /// The write end for sinks (see [`Recorder`]).
    pub fn recorder(&self) -> io::Result<Recorder> {
        Ok(Recorder { file: if self.read_only { None } else { Some(self.file.try_clone()?) } })
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
    pub fn forget_missing(&mut self, present: &HashSet<&str>) -> io::Result<()> {
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

    fn parcels(uids: &[&str]) -> Vec<Parcel> {
        uids.iter().map(|u| Parcel { uid: (*u).to_owned(), octets: 10 }).collect()
    }

    /// Records `uids` as stored, through a recorder, and notes them.
    fn store(ledger: &mut Ledger, uids: &[&str]) {
        let settled = ledger.recorder().unwrap().settle(parcels(uids), Ok(()));
        ledger.note(settled).unwrap();
    }

    #[test]
    fn journal_round_trip_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Ledger::open(dir.path(), "a", false).unwrap();
            s.see_all(["u1", "u2", "u3"].into_iter(), 100).unwrap();
            store(&mut s, &["u1"]);
            store(&mut s, &["u2"]);
            let present = ["u2", "u3"].into_iter().collect();
            s.forget_missing(&present).unwrap();
            // A second opener is refused while the first holds the lock.
            let err = Ledger::open(dir.path(), "a", false).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        }
        // A torn last record is ignored.
        let path = dir.path().join("a.state");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"F u3").unwrap();
        let s = Ledger::open(dir.path(), "a", false).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries["u2"], Entry { seen: 100, fetched: true });
        assert_eq!(s.entries["u3"], Entry { seen: 100, fetched: false });
    }

    #[test]
    fn messages_settled_on_another_thread_are_recorded_and_noted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Ledger::open(dir.path(), "a", false).unwrap();
            s.see_all(["u1", "u2", "u3"].into_iter(), 100).unwrap();
            let recorder = s.recorder().unwrap();
            let settled =
                std::thread::spawn(move || recorder.settle(parcels(&["u1", "u3"]), Ok(())))
                    .join()
                    .unwrap();
            // Written, not yet known to the run until noted.
            assert!(!s.is_fetched("u1"));
            assert_eq!(s.note(settled).unwrap(), Noted { messages: 2, octets: 20 });
            assert!(s.is_fetched("u1") && s.is_fetched("u3") && !s.is_fetched("u2"));
            store(&mut s, &["u2"]);
        }
        let s = Ledger::open(dir.path(), "a", false).unwrap();
        assert!(["u1", "u2", "u3"].iter().all(|u| s.entries[*u].fetched), "{:?}", s.entries);
        // A read-only ledger's recorder writes nothing.
        let r = Ledger::open(dir.path(), "b", true).unwrap();
        assert!(r.recorder().unwrap().settle(parcels(&["x"]), Ok(())).is_durable());
        assert!(!dir.path().join("b.state").exists());
    }

    #[test]
    fn messages_that_are_not_durable_are_neither_recorded_nor_noted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Ledger::open(dir.path(), "a", false).unwrap();
            s.see_all(["u1", "u2"].into_iter(), 100).unwrap();
            let failed =
                s.recorder().unwrap().settle(parcels(&["u1", "u2"]), Err(io::Error::other("disk")));
            let error = s.note(failed).unwrap_err();
            assert_eq!(error, "storing 2 messages: disk");
            assert!(!s.is_fetched("u1") && !s.is_fetched("u2"));
        }
        let s = Ledger::open(dir.path(), "a", false).unwrap();
        assert!(s.entries.values().all(|e| !e.fetched), "{:?}", s.entries);
    }

    #[test]
    fn pending_appends_survive_until_resolved() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Ledger::open(dir.path(), "a", false).unwrap();
            s.see_all(["u1", "u2", "u3"].into_iter(), 100).unwrap();
            let recorder = s.recorder().unwrap();
            recorder.announce(0, 10, "aa", ["u1", "u2"].into_iter()).unwrap();
            store(&mut s, &["u1", "u2"]);
            recorder.announce(10, 5, "bb", ["u3"].into_iter()).unwrap();
        }
        // Reopened (compacted): the settled append is gone, the other is kept.
        let mut s = Ledger::open(dir.path(), "a", false).unwrap();
        assert_eq!(s.pending.len(), 1);
        assert_eq!((s.pending[0].offset, s.pending[0].uids.clone()), (10, vec!["u3".to_owned()]));
        let found = s.resolve_pending(|p| Ok(p.digest == "bb")).unwrap();
        assert_eq!(found, 1);
        assert!(s.entries["u3"].fetched);
        drop(s);
        let s = Ledger::open(dir.path(), "a", false).unwrap();
        assert!(s.pending.is_empty());
        assert!(s.entries["u3"].fetched);
    }
}
