//! The Maildir sink: group commit into `new/`.
//!
//! Each message is written to an unnamed file in `tmp/` (`O_TMPFILE`; where the file system,
//! the kernel or `/proc` lacks what that needs, to `tmp/NAME`) and kept open. A sealed batch
//! is committed by a thread of its own while the next one is staged: its files are made
//! durable together (one `syncfs`, or an `fdatasync` of each from many threads at once, see
//! `durable.rs`), each is named in `new/` (linking the unnamed file, or moving `tmp/NAME` with
//! `renameat2(RENAME_NOREPLACE)`; never replacing a file), and `new/` is fsynced once. A file
//! therefore appears in `new/` only after its data is on disk, so a name found there is a
//! complete message. Per-message fsync, one after the other, is what costs most.
//!
//! Names follow the Maildir convention Dovecot, Postfix and courier use:
//! `SECONDS.UNIQUE.HOST,S=<stored size>,W=<RFC 1939 size>`. `UNIQUE` is the message's key if
//! it has one (idempotent delivery), else `M<microseconds>P<pid>Q<counter>`. `HOST` is the
//! host name with `/` written `\057` and `:` `\072` (the Maildir specification; Dovecot and
//! courier read and write it so), and `,` written `\054` so that it cannot fake a `,S=` or
//! `,W=` field; a `.` stays (readers split the name at the first two dots only).
//!
//! In wire form ([`MaildirSink::set_wire_form`], what the server's deliveries use) a message
//! is stored with CRLF line ends and a complete last line (see [`crate::wire`]), so `S` and
//! `W` are equal, and the name gets a third field, `,D=<count>[-<offset>...]`: where the
//! lines that begin with `.` start (at most [`DotLines::MAX_IN_NAME`]; a message with more
//! gets no `,D=` field and is served like any other). Other Maildir readers ignore a field
//! they do not know (Dovecot reads only `,S=` and `,W=`, mutt none).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::durable::make_durable;
use super::{BatchLimits, Begun, Incoming, MessageId, Modes, Settled, Sink};
use crate::util::{failpoint, maildir_hostname};
use crate::wire::{DotLines, WireWriter};
use crate::{Error, Result, SizeCounter};

/// The longest name given to a message in `new/` with its `,D=` field: well below the
/// 255-octet limit of a file name, leaving room for the `:2,FLAGS` a mail reader adds.
const MAX_NAME_WITH_DOTS: usize = 200;

/// Called in the commit thread once a batch is durable and named (see
/// [`MaildirSink::after_commit`]).
type AfterCommit = Box<dyn Fn(Range<MessageId>) -> std::io::Result<()> + Send + Sync>;

/// A Maildir's `tmp/` and `new/`, held open: each message's file is created, moved and
/// removed by a name relative to them. Shared with the thread that commits a sealed batch.
struct Dirs {
    root: PathBuf,
    tmp: OwnedFd,
    new: OwnedFd,
    /// Messages are written to unnamed files (`O_TMPFILE` in `tmp/`).
    unnamed: bool,
    /// The mode message files are created with.
    file_mode: Mode,
    after_commit: Option<AfterCommit>,
}

impl std::fmt::Debug for Dirs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dirs")
            .field("root", &self.root)
            .field("unnamed", &self.unnamed)
            .field("after_commit", &self.after_commit.is_some())
            .finish_non_exhaustive()
    }
}

/// A message written and kept open, waiting for its batch.
#[derive(Debug)]
struct Staged {
    /// Its name in `tmp/` (named files only).
    tmp_name: String,
    /// Its name in `new/`.
    name: String,
    file: File,
}

/// The message being written.
#[derive(Debug)]
struct Current {
    file: File,
    /// `SECONDS.UNIQUE.HOST`: the name in `tmp/`, and in `new/` before its size fields.
    base: String,
    /// The key, for the present set.
    key: Option<String>,
    size: SizeCounter,
    /// Converts into wire form, when the sink stores it.
    wire: Option<WireWriter>,
}

/// A sealed batch being committed.
#[derive(Debug)]
enum InFlight {
    /// By a thread of its own.
    Thread(JoinHandle<Result<Vec<String>>>, Range<MessageId>),
    /// Already, by the caller (no thread could be started, or nothing else was in flight).
    Done(Result<Vec<String>>, Range<MessageId>),
}

/// A Maildir delivery sink: group commit, `O_TMPFILE`, `syncfs` or parallel `fdatasync`,
/// `renameat2(RENAME_NOREPLACE)` (see [`crate::sink`] and `docs/storage.md`).
#[derive(Debug)]
pub struct MaildirSink {
    dirs: Arc<Dirs>,
    limits: BatchLimits,
    /// The most files a batch may hold open: a quarter of the open-file limit, less a reserve
    /// (the sealed batch in flight holds as many again).
    max_held: usize,
    /// Keys of the messages in `new/` and `cur/`, read at the first keyed message and
    /// extended by each settled batch.
    present: Option<HashSet<String>>,
    current: Option<Current>,
    staged: Vec<Staged>,
    /// Keys of the staged messages and of the batch in flight, added to `present` once settled.
    staged_keys: Vec<String>,
    in_flight_keys: Vec<String>,
    staged_bytes: u64,
    staged_since: Option<Instant>,
    next_id: MessageId,
    in_flight: Option<InFlight>,
    settled: Vec<Settled>,
    /// Store messages in wire form (see the module docs).
    wire_form: bool,
    /// The wire form of the chunk being written.
    wire_buf: Vec<u8>,
}

/// The key a Maildir name carries: its second dot-separated field.
fn key_of(name: &str) -> Option<&str> {
    let base = name.split(':').next()?;
    let mut fields = base.splitn(3, '.');
    fields.next()?;
    let unique = fields.next()?;
    fields.next()?;
    Some(unique.split(',').next().unwrap_or(unique))
}

fn check_key(key: &str) -> Result<()> {
    let ok = (1..=64).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidKey(key.to_owned()))
    }
}

impl MaildirSink {
    /// A sink into the Maildir at `root`, creating it (and any missing parent) with
    /// `modes.dir` where missing.
    pub fn open(root: impl Into<PathBuf>, modes: Modes, limits: BatchLimits) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let root = root.into();
        for sub in ["tmp", "new", "cur"] {
            let dir = root.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(modes.dir)
                .create(&dir)
                .map_err(|e| Error::io("create directory", &dir, e))?;
        }
        let open = |sub: &str| -> Result<OwnedFd> {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let dir = root.join(sub);
            rustix::fs::open(&dir, flags, Mode::empty())
                .map_err(|e| Error::io("open directory", &dir, e.into()))
        };
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let limit = limit.current.unwrap_or(u64::MAX).min(1 << 20) as usize;
        let max_held = (limit.saturating_sub(128) / 4).max(8);
        let file_mode = Mode::from(modes.file);
        let mut dirs = Dirs {
            tmp: open("tmp")?,
            new: open("new")?,
            root,
            unnamed: false,
            file_mode,
            after_commit: None,
        };
        dirs.unnamed = dirs.open_unnamed().is_ok() && Path::new("/proc/self/fd").is_dir();
        Ok(Self {
            dirs: Arc::new(dirs),
            limits,
            max_held,
            present: None,
            current: None,
            staged: Vec::new(),
            staged_keys: Vec::new(),
            in_flight_keys: Vec::new(),
            staged_bytes: 0,
            staged_since: None,
            next_id: 0,
            in_flight: None,
            settled: Vec::new(),
            wire_form: false,
            wire_buf: Vec::new(),
        })
    }

    /// Stores the messages begun from now on in wire form (CRLF line ends, complete last
    /// line, a `,D=` field naming the dot lines; see the module docs), as the server's
    /// deliveries do, so that it can send them with `sendfile`. Off by default: messages are
    /// stored as written (the retriever stores LF, the Unix convention).
    pub fn set_wire_form(&mut self, on: bool) {
        self.wire_form = on;
    }

    /// The Maildir.
    pub fn path(&self) -> &Path {
        &self.dirs.root
    }

    /// Writes messages to `tmp/NAME` rather than to unnamed files (`O_TMPFILE`), as on a
    /// system without it; for tests of that path.
    #[doc(hidden)]
    pub fn use_named_files(&mut self) {
        if let Some(dirs) = Arc::get_mut(&mut self.dirs) {
            dirs.unnamed = false;
        }
    }

    /// Calls `hook` with each batch's ids in the thread that commits it, once the batch is
    /// durable and named, before it counts as settled; an error from it settles the batch as
    /// failed (its messages stay in `new/`: a keyed message is then found there next time).
    /// A retriever records its messages as stored there, in the background like the rest of
    /// the commit. Set before the first message is staged.
    pub fn after_commit(
        &mut self,
        hook: impl Fn(Range<MessageId>) -> std::io::Result<()> + Send + Sync + 'static,
    ) {
        if let Some(dirs) = Arc::get_mut(&mut self.dirs) {
            dirs.after_commit = Some(Box::new(hook));
        }
    }

    /// Whether messages are written to unnamed files.
    pub fn writes_unnamed_files(&self) -> bool {
        self.dirs.unnamed
    }

    /// The keys of the messages in `new/` and `cur/`, read once.
    fn present(&mut self) -> Result<&mut HashSet<String>> {
        if self.present.is_none() {
            let mut keys = HashSet::new();
            for sub in ["new", "cur"] {
                let dir = self.dirs.root.join(sub);
                let rd =
                    std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))?;
                for entry in rd {
                    let name = entry.map_err(|e| Error::io("read directory", &dir, e))?.file_name();
                    if let Some(key) = key_of(&name.to_string_lossy()) {
                        keys.insert(key.to_owned());
                    }
                }
            }
            self.present = Some(keys);
        }
        Ok(self.present.as_mut().expect("just filled"))
    }

    /// Moves what the batch in flight settled to `settled`, waiting for it if `wait`.
    fn collect(&mut self, wait: bool) {
        let finished = match &self.in_flight {
            Some(InFlight::Thread(handle, _)) => wait || handle.is_finished(),
            Some(InFlight::Done(..)) => true,
            None => false,
        };
        if !finished {
            return;
        }
        let (result, ids) = match self.in_flight.take() {
            Some(InFlight::Thread(handle, ids)) => {
                let result = handle.join().unwrap_or_else(|_| {
                    Err(Error::io("commit", &self.dirs.root, io::Error::other("thread panicked")))
                });
                (result, ids)
            }
            Some(InFlight::Done(result, ids)) => (result, ids),
            None => return,
        };
        let keys = std::mem::take(&mut self.in_flight_keys);
        if result.is_ok() {
            if let Some(present) = self.present.as_mut() {
                present.extend(keys);
            }
        }
        self.settled.push(Settled { ids, result });
    }

    /// Takes the staged messages as a batch: their ids and octets.
    fn take_batch(&mut self) -> (Vec<Staged>, Range<MessageId>, u64) {
        let staged = std::mem::take(&mut self.staged);
        let start = self.next_id - staged.len() as u64;
        self.staged_since = None;
        self.in_flight_keys = std::mem::take(&mut self.staged_keys);
        (staged, start..self.next_id, std::mem::take(&mut self.staged_bytes))
    }
}

impl Dirs {
    /// A new unnamed file in `tmp/` (`O_TMPFILE`): it vanishes if the process dies before
    /// [`Dirs::link`] names it, so a crash leaves nothing behind in `tmp/`.
    fn open_unnamed(&self) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        Ok(rustix::fs::openat(&self.tmp, ".", flags, self.file_mode)?.into())
    }

    /// A new file `tmp/NAME`.
    fn open_named(&self, name: &str) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
        Ok(rustix::fs::openat(&self.tmp, name, flags, self.file_mode)?.into())
    }

    /// Commits a sealed batch: makes its files durable, names each in `new/` and fsyncs
    /// `new/` once. On error the batch's `tmp/` files are removed and none of its messages
    /// is stored.
    fn commit(
        &self,
        staged: Vec<Staged>,
        ids: Range<MessageId>,
        bytes: u64,
    ) -> Result<Vec<String>> {
        let files: Vec<&File> = staged.iter().map(|s| &s.file).collect();
        let result = (|| {
            make_durable(&files, self.tmp.as_fd(), bytes)
                .map_err(|e| Error::io("sync messages in", self.root.join("tmp"), e))?;
            failpoint("maildir.deliver.synced");
            for s in &staged {
                let named = if self.unnamed {
                    self.link(&s.file, &s.name)
                } else {
                    self.publish(&s.tmp_name, &s.name)
                };
                named.map_err(|e| {
                    Error::io("name in new/", self.root.join("new").join(&s.name), e)
                })?;
                failpoint("maildir.deliver.linked");
            }
            rustix::fs::fsync(&self.new)
                .map_err(|e| Error::io("fsync directory", self.root.join("new"), e.into()))?;
            failpoint("maildir.deliver.done");
            if let Some(hook) = &self.after_commit {
                hook(ids).map_err(|e| Error::io("record the batch committed in", &self.root, e))?;
            }
            Ok(())
        })();
        if !self.unnamed {
            for s in &staged {
                let _ = self.remove(&s.tmp_name);
            }
        }
        result.map(|()| staged.into_iter().map(|s| s.name).collect())
    }

    /// Names the unnamed `file` `new/NAME`, never replacing a file there (a message already
    /// there counts as named). Without the privilege `AT_EMPTY_PATH` needs, through
    /// `/proc/self/fd`, as open(2) describes for `O_TMPFILE`.
    fn link(&self, file: &File, name: &str) -> io::Result<()> {
        let linked = rustix::fs::linkat(file, "", &self.new, name, AtFlags::EMPTY_PATH);
        let linked = match linked {
            Err(Errno::NOENT | Errno::PERM | Errno::ACCESS) => {
                let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
                let (cwd, follow) = (rustix::fs::CWD, AtFlags::SYMLINK_FOLLOW);
                rustix::fs::linkat(cwd, proc.as_str(), &self.new, name, follow)
            }
            other => other,
        };
        match linked {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves `tmp/FROM` to `new/TO`, never replacing a file there (`RENAME_NOREPLACE`; where
    /// the file system lacks it, `link` then `unlink`, the classic Maildir way). A message
    /// already in `new/` counts as moved.
    fn publish(&self, from: &str, to: &str) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.tmp, from, &self.new, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EXIST) => {}
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                match rustix::fs::linkat(&self.tmp, from, &self.new, to, AtFlags::empty()) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.remove(from)
    }

    /// Removes `tmp/NAME` (gone already is fine).
    fn remove(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.tmp, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The unique part of a name without a key: the time's microseconds, the process id and a
/// counter, as Dovecot's `M<usec>P<pid>` (the counter keeps two names of one microsecond
/// apart).
fn fresh_unique(now: std::time::Duration) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "M{}P{}Q{}",
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Sink for MaildirSink {
    fn begin(&mut self, incoming: &Incoming) -> Result<Begun> {
        self.abort();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = incoming.received.unwrap_or(now.as_secs());
        let unique = match &incoming.key {
            Some(key) => {
                check_key(key)?;
                key.clone()
            }
            None => fresh_unique(now),
        };
        let base = format!("{secs}.{unique}.{}", maildir_hostname());
        if incoming.key.is_some() && self.present()?.contains(&unique) {
            // A process killed between naming into new/ and removing tmp/ left its tmp file
            // behind; the message is stored, so the leftover goes.
            let _ = self.dirs.remove(&base);
            return Ok(Begun::AlreadyStored);
        }
        let file =
            if self.dirs.unnamed { self.dirs.open_unnamed() } else { self.dirs.open_named(&base) };
        let file =
            file.map_err(|e| Error::io("create", self.dirs.root.join("tmp").join(&base), e))?;
        let wire = self.wire_form.then(WireWriter::new);
        let size = SizeCounter::new();
        self.current = Some(Current { file, base, key: incoming.key.clone(), size, wire });
        Ok(Begun::New)
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(current) = self.current.as_mut() else {
            return Err(Error::io("write", &self.dirs.root, io::Error::other("no message begun")));
        };
        let bytes = match current.wire.as_mut() {
            Some(wire) => {
                self.wire_buf.clear();
                wire.write(chunk, &mut self.wire_buf);
                &self.wire_buf[..]
            }
            None => chunk,
        };
        current.size.update(bytes);
        current
            .file
            .write_all(bytes)
            .map_err(|e| Error::io("write", self.dirs.root.join("tmp").join(&current.base), e))
    }

    fn stage(&mut self) -> Result<MessageId> {
        let Some(mut current) = self.current.take() else {
            return Err(Error::io("stage", &self.dirs.root, io::Error::other("no message begun")));
        };
        let mut dots = None;
        if let Some(wire) = current.wire.as_mut() {
            self.wire_buf.clear();
            wire.finish(&mut self.wire_buf);
            current.size.update(&self.wire_buf);
            if let Err(e) = current.file.write_all(&self.wire_buf) {
                let path = self.dirs.root.join("tmp").join(&current.base);
                self.current = Some(current);
                self.abort();
                return Err(Error::io("write", path, e));
            }
            dots = DotLines(wire.dot_lines().to_vec()).to_field();
        }
        failpoint("maildir.deliver.written");
        let stored = current.size.stored_len();
        let mut name = format!("{},S={stored},W={}", current.base, current.size.finish());
        if let Some(dots) = dots.filter(|d| name.len() + 3 + d.len() <= MAX_NAME_WITH_DOTS) {
            name = format!("{name},D={dots}");
        }
        self.staged_bytes += stored;
        self.staged.push(Staged { tmp_name: current.base, name, file: current.file });
        self.staged_keys.extend(current.key);
        self.staged_since.get_or_insert_with(Instant::now);
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }

    fn abort(&mut self) {
        if let Some(current) = self.current.take() {
            if !self.dirs.unnamed {
                let _ = self.dirs.remove(&current.base);
            }
        }
    }

    fn wants_seal(&self) -> bool {
        let n = self.staged.len();
        n >= self.limits.messages
            || n >= self.max_held
            || (n > 0
                && match &self.in_flight {
                    None | Some(InFlight::Done(..)) => true,
                    Some(InFlight::Thread(handle, _)) => handle.is_finished(),
                })
            || self.staged_bytes >= self.limits.bytes
            || self.staged_since.is_some_and(|t| t.elapsed() >= self.limits.age)
    }

    /// Waits for the batch in flight, if any, then hands the staged messages to a thread of
    /// their own (committed here and now if no thread can be had).
    fn seal(&mut self) -> Result<()> {
        self.collect(true);
        if self.staged.is_empty() {
            return Ok(());
        }
        let (staged, ids, bytes) = self.take_batch();
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<Staged>>();
        let dirs = Arc::clone(&self.dirs);
        let thread_ids = ids.clone();
        let work = move || match receiver.recv() {
            Ok(staged) => dirs.commit(staged, thread_ids, bytes),
            Err(_) => Err(Error::io("commit", &dirs.root, io::Error::other("no batch"))),
        };
        let spawned = std::thread::Builder::new().name("pop3-storage-commit".into()).spawn(work);
        self.in_flight = Some(match spawned {
            Ok(handle) => match sender.send(staged) {
                Ok(()) => InFlight::Thread(handle, ids),
                Err(returned) => {
                    InFlight::Done(self.dirs.commit(returned.0, ids.clone(), bytes), ids)
                }
            },
            Err(_) => InFlight::Done(self.dirs.commit(staged, ids.clone(), bytes), ids),
        });
        Ok(())
    }

    fn settled(&mut self, wait: bool) -> Vec<Settled> {
        self.collect(wait);
        std::mem::take(&mut self.settled)
    }

    /// With nothing in flight, the staged batch is committed by the caller's thread (a
    /// batch of one needs no thread).
    fn finish(&mut self) -> Result<Vec<Settled>> {
        self.collect(true);
        if !self.staged.is_empty() {
            let (staged, ids, bytes) = self.take_batch();
            let committed = self.dirs.commit(staged, ids.clone(), bytes);
            self.in_flight = Some(InFlight::Done(committed, ids));
        }
        Ok(self.settled(true))
    }
}

impl Drop for MaildirSink {
    /// A batch in flight is finished (named or its files removed), not abandoned half-way
    /// when the process exits; a message begun is aborted. Staged messages that were never
    /// sealed are dropped: unnamed files vanish, named ones are removed.
    fn drop(&mut self) {
        self.abort();
        self.collect(true);
        if !self.dirs.unnamed {
            for s in &self.staged {
                let _ = self.dirs.remove(&s.tmp_name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Maildir, Maildrop};

    use pop3_testkit::file_names as names;

    fn keyed(key: &str) -> Incoming {
        Incoming { key: Some(key.to_owned()), received: Some(1_700_000_000), ..Incoming::default() }
    }

    /// Writes and stages messages `uids` (each body "message UID\n", key `uUID`).
    fn stage(sink: &mut MaildirSink, uids: Range<usize>) {
        for uid in uids {
            assert_eq!(sink.begin(&keyed(&format!("u{uid}"))).unwrap(), Begun::New);
            sink.write(format!("message {uid}\n").as_bytes()).unwrap();
            sink.stage().unwrap();
        }
    }

    /// A sink into a new Maildir in a temporary directory (kept alive by the first element),
    /// writing unnamed files (`O_TMPFILE`) or, with `named`, `tmp/NAME`.
    fn sink(named: bool) -> (tempfile::TempDir, PathBuf, MaildirSink) {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("Maildir");
        let mut sink = MaildirSink::open(&md, Modes::PRIVATE, BatchLimits::default()).unwrap();
        assert!(named || sink.writes_unnamed_files(), "O_TMPFILE works in the test's tmp dir");
        if named {
            sink.use_named_files();
        }
        (dir, md, sink)
    }

    fn summary(settled: &[Settled]) -> Vec<(Range<MessageId>, bool)> {
        settled.iter().map(|s| (s.ids.clone(), s.result.is_ok())).collect()
    }

    #[test]
    fn batches_settle_in_order_by_the_next_seal_or_by_waiting() {
        for named in [false, true] {
            let (_dir, md, mut sink) = sink(named);
            stage(&mut sink, 0..3);
            sink.seal().unwrap();
            stage(&mut sink, 3..5);
            // Sealing waits for the batch in flight: the first batch settles.
            sink.seal().unwrap();
            let first = sink.settled(false);
            assert_eq!(summary(&first), [(0..3, true)], "named={named}");
            assert!(names(&md.join("new")).len() >= 3);
            assert_eq!(summary(&sink.settled(true)), [(3..5, true)]);
            assert!(sink.settled(true).is_empty(), "nothing left in flight");
            let new = names(&md.join("new"));
            assert_eq!(new.len(), 5);
            assert!(names(&md.join("tmp")).is_empty());
            let mut bodies: Vec<String> = new
                .iter()
                .map(|n| std::fs::read_to_string(md.join("new").join(n)).unwrap())
                .collect();
            bodies.sort();
            assert_eq!(bodies, (0..5).map(|u| format!("message {u}\n")).collect::<Vec<_>>());
            // Settled messages count as stored: delivering one again writes nothing, in this
            // sink and in the next one.
            assert_eq!(sink.begin(&keyed("u4")).unwrap(), Begun::AlreadyStored);
            drop(sink);
            let mut again = MaildirSink::open(&md, Modes::PRIVATE, BatchLimits::default()).unwrap();
            assert_eq!(again.begin(&keyed("u0")).unwrap(), Begun::AlreadyStored);
            assert_eq!(again.begin(&keyed("u9")).unwrap(), Begun::New);
        }
    }

    /// The names carry the sizes the server reads without opening the files, and the server
    /// serves the messages under their keyed names.
    #[test]
    fn names_carry_sizes_and_the_server_reads_them() {
        let (_dir, md, mut sink) = sink(false);
        sink.begin(&keyed("abc")).unwrap();
        sink.write(b"Subject: x\n\nbody\n").unwrap();
        sink.stage().unwrap();
        let settled = sink.finish().unwrap();
        let name = &settled[0].result.as_ref().unwrap()[0];
        let host = maildir_hostname();
        assert_eq!(name, &format!("1700000000.abc.{host},S=17,W=20"));
        let d = Maildir::new(&md).open().unwrap();
        assert_eq!(d.messages()[0].size, 20);
    }

    /// In wire form: CRLF line ends, the last line completed, `S` = `W`, and the dot lines in
    /// the `,D=` field; the maildrop hands the file out for sending, without a `stat`.
    #[test]
    fn wire_form_names_record_the_dot_lines_and_the_maildrop_hands_out_the_file() {
        use std::io::Read;
        let (_dir, md, mut sink) = sink(false);
        sink.set_wire_form(true);
        let messages: [&[u8]; 4] = [
            b"Subject: x\n\n.body\r",
            b"",
            b"plain\r\n",
            &b".\n".repeat(DotLines::MAX_IN_NAME + 1),
        ];
        for (i, m) in messages.iter().enumerate() {
            sink.begin(&keyed(&format!("w{i}"))).unwrap();
            // In two chunks, the first ending in the middle of a line end.
            let cut = m.len().min(11);
            sink.write(&m[..cut]).unwrap();
            sink.write(&m[cut..]).unwrap();
            sink.stage().unwrap();
        }
        let settled = sink.finish().unwrap();
        let names = settled[0].result.as_ref().unwrap();
        let host = maildir_hostname();
        assert_eq!(names[0], format!("1700000000.w0.{host},S=21,W=21,D=1-14"));
        assert_eq!(names[1], format!("1700000000.w1.{host},S=0,W=0,D=0"));
        assert_eq!(names[2], format!("1700000000.w2.{host},S=7,W=7,D=0"));
        assert_eq!(names[3], format!("1700000000.w3.{host},S=27,W=27"), "too many dot lines");
        let file = |n: &str| std::fs::read(md.join("new").join(n)).unwrap();
        assert_eq!(file(&names[0]), b"Subject: x\r\n\r\n.body\r\n");
        assert_eq!(file(&names[3]), b".\r\n".repeat(9));
        let d = Maildir::new(&md).open().unwrap();
        let sizes: Vec<u64> = d.messages().iter().map(|m| m.size).collect();
        assert_eq!(sizes, [21, 0, 7, 27]);
        let wire = d.wire_message(0).unwrap().unwrap();
        assert_eq!((wire.len, &wire.dot_lines[..]), (21, &[14][..]));
        let mut bytes = Vec::new();
        (&wire.file).read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, file(&names[0]));
        assert_eq!(d.wire_message(1).unwrap().unwrap().len, 0);
        assert!(d.wire_message(3).unwrap().is_none(), "no ,D= field: read it as a stream");
        std::fs::remove_file(md.join("new").join(&names[2])).unwrap();
        assert!(matches!(d.wire_message(2), Err(Error::MessageGone { index: 2, .. })));
    }

    /// Without wire form (the retriever's sink), messages are stored as written.
    #[test]
    fn without_wire_form_messages_are_stored_as_written() {
        let (_dir, md, mut sink) = sink(false);
        sink.begin(&keyed("lf")).unwrap();
        sink.write(b"a\n.b").unwrap();
        sink.stage().unwrap();
        let name = sink.finish().unwrap()[0].result.as_ref().unwrap()[0].clone();
        assert_eq!(name, format!("1700000000.lf.{},S=4,W=7", maildir_hostname()));
        assert_eq!(std::fs::read(md.join("new").join(name)).unwrap(), b"a\n.b");
        assert!(Maildir::new(&md).open().unwrap().wire_message(0).unwrap().is_none());
    }

    /// Whatever the umask, what the sink creates is its user's alone.
    #[test]
    fn maildir_directories_and_messages_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for named in [false, true] {
            let (_dir, md, mut sink) = sink(named);
            stage(&mut sink, 0..2);
            for s in sink.finish().unwrap() {
                s.result.unwrap();
            }
            for sub in ["", "tmp", "new", "cur"] {
                assert_eq!(mode(&md.join(sub)) & 0o077, 0, "{sub}/ named={named}");
            }
            for name in names(&md.join("new")) {
                assert_eq!(mode(&md.join("new").join(name)) & 0o077, 0, "named={named}");
            }
        }
    }

    #[test]
    fn a_failed_commit_settles_its_messages_as_not_stored_and_removes_them() {
        for named in [false, true] {
            let (_dir, md, mut sink) = sink(named);
            stage(&mut sink, 0..4);
            assert_eq!(names(&md.join("tmp")).len(), if named { 4 } else { 0 });
            // new/ is gone (its descriptor stays open): no file can be named into it.
            std::fs::remove_dir(md.join("new")).unwrap();
            sink.seal().unwrap();
            let failed = sink.settled(true);
            assert_eq!(summary(&failed), [(0..4, false)], "named={named}");
            assert!(names(&md.join("tmp")).is_empty(), "the batch's files are removed");
            std::fs::create_dir(md.join("new")).unwrap();
            drop(sink);
            let mut again = MaildirSink::open(&md, Modes::PRIVATE, BatchLimits::default()).unwrap();
            assert_eq!(again.begin(&keyed("u0")).unwrap(), Begun::New, "not stored");
        }
    }

    /// The hook runs once per batch, in order, after the batch's files are named; its error
    /// fails the batch.
    #[test]
    fn after_commit_sees_each_durable_batch_and_can_fail_it() {
        let (_dir, md, mut sink) = sink(false);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (log, new) = (Arc::clone(&seen), md.join("new"));
        sink.after_commit(move |ids| {
            let named = std::fs::read_dir(&new).unwrap().count();
            log.lock().unwrap().push((ids.clone(), named));
            if ids.start == 3 {
                return Err(io::Error::other("state file full"));
            }
            Ok(())
        });
        stage(&mut sink, 0..3);
        sink.seal().unwrap();
        stage(&mut sink, 3..4);
        let settled = sink.finish().unwrap();
        assert_eq!(summary(&settled), [(0..3, true), (3..4, false)]);
        assert_eq!(*seen.lock().unwrap(), [(0..3, 3), (3..4, 4)]);
    }

    #[test]
    fn dropping_the_sink_finishes_the_batch_in_flight() {
        let (_dir, md, mut sink) = sink(false);
        stage(&mut sink, 0..50);
        sink.seal().unwrap();
        drop(sink);
        assert_eq!(names(&md.join("new")).len(), 50);
        assert!(names(&md.join("tmp")).is_empty());
    }

    #[test]
    fn aborted_and_unsealed_messages_leave_nothing() {
        for named in [false, true] {
            let (_dir, md, mut sink) = sink(named);
            sink.begin(&keyed("a")).unwrap();
            sink.write(b"half").unwrap();
            sink.abort();
            stage(&mut sink, 0..2);
            drop(sink);
            assert!(names(&md.join("tmp")).is_empty(), "named={named}");
            assert!(names(&md.join("new")).is_empty(), "named={named}");
        }
    }

    #[test]
    fn keys_and_the_names_they_come_from() {
        assert_eq!(key_of("1.P3Uab.host.example,S=1,W=2:2,S"), Some("P3Uab"));
        assert_eq!(key_of("1.M2P3Q4.host"), Some("M2P3Q4"));
        assert_eq!(key_of("1.x"), None);
        for bad in ["", "a.b", "a/b", "a:b", "a,b", "a b", &"k".repeat(65)] {
            assert!(matches!(check_key(bad), Err(Error::InvalidKey(_))), "{bad:?}");
        }
        let (_dir, _md, mut sink) = sink(false);
        assert!(matches!(sink.begin(&keyed("a.b")), Err(Error::InvalidKey(_))));
    }

    /// A keyed message already in the Maildir is found by its key whatever the rest of its
    /// name: without size fields (as the retriever named messages before it used this sink,
    /// with its host name's dots written `_`), or moved to `cur/` with flags.
    #[test]
    fn keyed_messages_are_found_under_older_names_and_in_cur() {
        let (_dir, md, mut sink) = sink(true);
        std::fs::write(md.join("new/1700000000.P3Uold.mx_example_org"), b"x\n").unwrap();
        std::fs::write(md.join("cur/1700000001.P3Uread.mx,S=2,W=3:2,S"), b"y\n").unwrap();
        let leftover = md.join("tmp").join(format!("1700000000.P3Uold.{}", maildir_hostname()));
        std::fs::write(leftover, b"left").unwrap();
        assert_eq!(sink.begin(&keyed("P3Uold")).unwrap(), Begun::AlreadyStored);
        assert_eq!(sink.begin(&keyed("P3Uread")).unwrap(), Begun::AlreadyStored);
        assert!(names(&md.join("tmp")).is_empty(), "the leftover of a named write goes");
        assert_eq!(sink.begin(&keyed("P3Unew")).unwrap(), Begun::New);
    }

    #[test]
    fn wants_seal_when_nothing_is_in_flight_or_a_limit_is_reached() {
        let (_dir, _md, mut sink) = sink(false);
        assert!(!sink.wants_seal(), "nothing staged");
        stage(&mut sink, 0..1);
        assert!(sink.wants_seal(), "nothing in flight: group commit starts at once");
        sink.limits.messages = 2;
        sink.seal().unwrap();
        sink.settled(true);
        stage(&mut sink, 1..3);
        assert!(sink.wants_seal(), "the message limit");
    }
}
