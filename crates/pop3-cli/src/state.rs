//! Per-account UIDL state: which messages were seen (and when) and which are stored locally.
//!
//! The file is an append-only journal, compacted at the start of every run:
//!
//! ```text
//! pop3-state 1
//! S <unix seconds first seen> <uidl>     seen on the server
//! F <uidl>                               delivered locally and synced
//! X <uidl>                               gone from the server: forget it
//! ```
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

/// The state of one account, locked.
#[derive(Debug)]
pub struct State {
    file: File,
    _lock: File,
    /// uidl -> entry.
    pub entries: HashMap<String, Entry>,
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
        let entries = match std::fs::read(&path) {
            Ok(data) => parse(&data)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
        };
        let file = if read_only {
            File::open(&path).or_else(|_| File::open("/dev/null"))?
        } else {
            compact(dir, &path, &entries)?
        };
        Ok(Self { file, _lock: lock, entries, read_only })
    }

    fn append(&mut self, records: &str) -> io::Result<()> {
        if self.read_only || records.is_empty() {
            return Ok(());
        }
        self.file.write_all(records.as_bytes())?;
        self.file.sync_data()
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
        if let Some(e) = self.entries.get_mut(uid) {
            e.fetched = true;
        }
        self.append(&format!("F {uid}\n"))
    }

    /// Records that every one of `uids` is stored locally, durably, in one write.
    pub fn fetched_many<'a>(&mut self, uids: impl Iterator<Item = &'a str>) -> io::Result<()> {
        let mut records = String::new();
        for uid in uids {
            if let Some(e) = self.entries.get_mut(uid) {
                e.fetched = true;
            }
            records.push_str(&format!("F {uid}\n"));
        }
        self.append(&records)
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

fn parse(data: &[u8]) -> io::Result<HashMap<String, Entry>> {
    let mut entries = HashMap::new();
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
            _ => {} // torn or unknown line
        }
    }
    Ok(entries)
}

/// Rewrites the journal as one record per entry (temp file, fsync, rename, fsync dir) and
/// returns it open for appending.
fn compact(dir: &Path, path: &Path, entries: &HashMap<String, Entry>) -> io::Result<File> {
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
}
