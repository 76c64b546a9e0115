//! Local delivery: Maildir (idempotent, named after the account and UIDL), mbox (through
//! pop3-storage) or an MDA command.
//!
//! Messages are stored with LF line ends, the Unix convention for Maildir, mbox and MDAs (as
//! mpop, fetchmail and getmail store them): every CRLF the server sent becomes LF; a CR that is
//! not followed by LF is kept.
//!
//! The [`Deliverer`] is a [`Sink`]: messages are staged, batches sealed, and each message is
//! reported settled, by name, once it is durable and its ledger record written. Three words,
//! three steps: a batch is *sealed* (closed to new messages), *persisted* (made durable and
//! named), and its messages *recorded* in the ledger.
//!
//! Durability: an MDA delivery is settled when it is staged (the MDA exited 0). Maildir and
//! mbox deliveries use group commit: staging keeps the message, and [`Sink::seal`] makes a
//! whole batch durable. Maildir: each message is written
//! to an unnamed file in `tmp/` (`O_TMPFILE`; where that is missing, to `tmp/NAME`) and kept
//! open; the sealed batch is persisted by a thread of its own while the next one downloads:
//! its files are made durable together (one `syncfs`, or an `fdatasync` of each from many
//! threads at once), named in `new/`, and `new/` is fsynced once. A file therefore
//! appears in `new/` only after its data is on disk, which is what lets a later run trust a
//! name it finds there (see `docs/client.md`). mbox: each message is spooled; a sealed batch
//! is persisted as one locked, journalled, synced append, announced beforehand (offset,
//! length, SHA-256 of the bytes) so that after a crash [`mbox_append_present`] can tell
//! whether it happened. Per-message fsync, one after the other, is what costs a retriever most.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::ledger::{Parcel, Recorder, Settled};
use crate::sink::{Message, Sink};
use crate::syncer::make_durable;

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Maildir (created if missing).
    Maildir(PathBuf),
    /// An mbox file (created if missing).
    Mbox(PathBuf),
    /// A command run with `sh -c`, the message on its standard input; exit status 0 means
    /// delivered.
    Mda(String),
}

impl Target {
    /// Parses `maildir:DIR`, `mbox:FILE` or `mda:COMMAND` (`~/` expanded).
    pub fn parse(text: &str) -> Result<Self, String> {
        let expand = |p: &str| -> PathBuf {
            match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => Path::new(&home).join(rest),
                _ => PathBuf::from(p),
            }
        };
        let expected = || format!("{text:?}: expected maildir:DIR, mbox:FILE or mda:COMMAND");
        let (kind, rest) = text.split_once(':').ok_or_else(expected)?;
        if rest.is_empty() {
            return Err(expected());
        }
        match kind {
            "maildir" => Ok(Self::Maildir(expand(rest))),
            "mbox" => Ok(Self::Mbox(expand(rest))),
            "mda" => Ok(Self::Mda(rest.to_owned())),
            _ => Err(expected()),
        }
    }
}

/// The permissions of what a delivery creates: directories (a Maildir's, an mbox's parent)
/// and Maildir message files. The umask applies on top, as always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    dir: u32,
    file: u32,
}

impl Modes {
    /// Mail is private: directories 0700, files 0600, as the server side stores it.
    pub const PRIVATE: Self = Self { dir: 0o700, file: 0o600 };
    /// As the umask allows (0777 and 0666 less the umask), as most MDAs create files: for
    /// a user who shares mail through group permissions on purpose.
    pub const UMASK: Self = Self { dir: 0o777, file: 0o666 };

    /// Creates `dir` and any missing parent with the directory mode; existing ones keep
    /// theirs.
    fn create_dir_all(self, dir: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(self.dir).create(dir)
    }
}

/// Limits on a batch of staged messages, whichever comes first (with the message count from
/// `--batch`; a Maildir batch is also sealed as soon as the one before it is persisted): a
/// bigger batch means fewer flushes, a smaller one less to download again after a crash.
const BATCH_BYTES: u64 = 64 << 20;
const BATCH_AGE: Duration = Duration::from_secs(1);

/// A prepared target for one run.
#[derive(Debug)]
pub struct Deliverer {
    target: Target,
    /// Base names of our messages already in the Maildir: in `new/`, or in `cur/` (moved
    /// there by a mail reader), read once at the start and extended by each persisted
    /// batch, so that no message costs a lookup of its name.
    present: HashSet<String>,
    host: String,
    account: String,
    /// Maildir messages written and not yet sealed into a batch.
    staged: Vec<Staged>,
    /// mbox messages spooled and not yet appended.
    mbox_staged: Vec<(File, Parcel)>,
    staged_bytes: u64,
    staged_since: Option<Instant>,
    batch_messages: usize,
    /// The open Maildir (for a Maildir target).
    maildir: Option<OpenMaildir>,
    /// Where a durable batch records its messages as settled.
    recorder: Arc<Recorder>,
    /// Batches settled and not yet handed out by [`Sink::settled`], oldest first.
    settled: VecDeque<Settled>,
}

/// A Maildir's `tmp/` and `new/`, held open: each message's file is created, moved and
/// removed by a name relative to them (no walk of the whole path per call). Shared with the
/// thread that persists a sealed batch.
#[derive(Debug)]
struct Dirs {
    tmp: OwnedFd,
    new: OwnedFd,
    /// Messages are written to unnamed files (`O_TMPFILE` in `tmp/`), named only when their
    /// batch is published. Where the file system or kernel lacks `O_TMPFILE`, or `/proc` is
    /// missing (needed to link one without privileges), they are written to `tmp/NAME`.
    unnamed: bool,
    /// The mode message files are created with.
    file_mode: Mode,
}

/// An open Maildir: its directories, and the sealed batch being made durable in the
/// background.
#[derive(Debug)]
struct OpenMaildir {
    dirs: Arc<Dirs>,
    /// The most files a batch may hold open: a quarter of the open-file limit, less a
    /// reserve (the sealed batch in flight holds as many again).
    max_held: usize,
    in_flight: Option<InFlight>,
    /// Where a persisted batch records its messages.
    recorder: Arc<Recorder>,
}

/// A sealed batch being persisted.
#[derive(Debug)]
enum InFlight {
    /// By a thread of its own, for this many messages.
    Thread(JoinHandle<Sealed>, usize),
    /// Already, by the caller (no thread could be started).
    Done(Sealed),
}

impl InFlight {
    /// True when waiting for the batch would not block.
    fn is_finished(&self) -> bool {
        match self {
            Self::Thread(handle, _) => handle.is_finished(),
            Self::Done(_) => true,
        }
    }
}

/// A persisted batch: its names, and its messages as settled (durable and recorded, or not).
type Sealed = (Vec<String>, Settled);

impl OpenMaildir {
    fn open(dir: &Path, modes: Modes, recorder: Arc<Recorder>) -> io::Result<Self> {
        let open = |sub: &str| -> io::Result<OwnedFd> {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            Ok(rustix::fs::open(dir.join(sub), flags, Mode::empty())?)
        };
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let limit = limit.current.unwrap_or(u64::MAX).min(1 << 20) as usize;
        let max_held = (limit.saturating_sub(128) / 4).max(8);
        let file_mode = Mode::from(modes.file);
        let mut dirs = Dirs { tmp: open("tmp")?, new: open("new")?, unnamed: false, file_mode };
        dirs.unnamed = dirs.open_unnamed().is_ok() && Path::new("/proc/self/fd").is_dir();
        Ok(Self { dirs: Arc::new(dirs), max_held, in_flight: None, recorder })
    }

    /// Waits for the sealed batch in flight, if any: its names and its messages, settled.
    fn settle(&mut self) -> Option<Sealed> {
        Some(match self.in_flight.take()? {
            InFlight::Thread(handle, messages) => handle.join().unwrap_or_else(|_| {
                let panicked = format!("the thread persisting {messages} messages panicked");
                (Vec::new(), self.recorder.settle(Vec::new(), Err(io::Error::other(panicked))))
            }),
            InFlight::Done(sealed) => sealed,
        })
    }
}

impl Drop for OpenMaildir {
    /// A batch still in flight is finished (published or its files removed), not abandoned
    /// half-way when the process exits.
    fn drop(&mut self) {
        let _ = self.settle();
    }
}

impl Dirs {
    /// Persists a sealed batch: makes its files durable, names each `new/NAME` (linking an
    /// unnamed file, moving `tmp/NAME`; never replacing), fsyncs `new/` once, then records
    /// the batch's messages in the ledger. On error the batch's `tmp/` files are removed and
    /// nothing counts as delivered: those messages are fetched again.
    fn persist(&self, staged: Vec<Staged>, bytes: u64, recorder: &Recorder) -> Sealed {
        let files: Vec<&File> = staged.iter().map(|s| &s.file).collect();
        let result = make_durable(&files, self.tmp.as_fd(), bytes).and_then(|()| {
            for s in &staged {
                if self.unnamed {
                    self.link(&s.file, &s.base)?;
                } else {
                    self.publish(&s.base)?;
                }
            }
            Ok(rustix::fs::fsync(&self.new)?)
        });
        if result.is_err() && !self.unnamed {
            for s in &staged {
                let _ = self.remove(&s.base);
            }
        }
        let (names, parcels) = staged.into_iter().map(|s| (s.base, s.parcel)).unzip();
        (names, recorder.settle(parcels, result))
    }

    /// A new unnamed file in `tmp/` (`O_TMPFILE`): it vanishes if the run dies before
    /// [`Dirs::link`] names it, so a crash leaves nothing behind in `tmp/`.
    fn open_unnamed(&self) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        Ok(rustix::fs::openat(&self.tmp, ".", flags, self.file_mode)?.into())
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

    /// Moves `tmp/NAME` to `new/NAME`, never replacing a file there (`RENAME_NOREPLACE`;
    /// where the file system lacks it, `link` then `unlink`, the classic Maildir way). A
    /// message already in `new/` counts as moved.
    fn publish(&self, name: &str) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.tmp, name, &self.new, name, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EXIST) => {}
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                match rustix::fs::linkat(&self.tmp, name, &self.new, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.remove(name)
    }

    /// Removes `tmp/NAME` (gone already is fine).
    fn remove(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.tmp, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An mbox batch holds at most this many messages (one spool descriptor each).
const MBOX_BATCH_MESSAGES: usize = 128;

/// A Maildir message written (to an unnamed file or to `tmp/NAME`) and kept open, waiting
/// for its batch to be persisted.
#[derive(Debug)]
struct Staged {
    base: String,
    parcel: Parcel,
    file: File,
}

/// One message being delivered.
#[derive(Debug)]
pub enum Delivery {
    /// Already in the Maildir (an earlier run delivered it and died before saving state).
    Present { uid: String },
    /// Writing a Maildir message to an unnamed file or to `tmp/NAME`, to be named `NAME`.
    Maildir { file: File, base: String, uid: String, lf: ToLf, written: u64 },
    /// Spooling for mbox.
    Mbox { file: File, uid: String, lf: ToLf, written: u64 },
    /// Feeding an MDA.
    Mda { child: Child, uid: String, lf: ToLf },
}

/// Streaming CRLF to LF, over any chunking: a CR at the end of a chunk waits for the next.
#[derive(Debug, Default)]
pub struct ToLf {
    pending_cr: bool,
    out: Vec<u8>,
}

impl ToLf {
    /// Converts `data`, returning what can be written now.
    fn convert(&mut self, data: &[u8]) -> &[u8] {
        self.out.clear();
        let mut rest = data;
        if self.pending_cr {
            self.pending_cr = false;
            if rest.first() != Some(&b'\n') {
                self.out.push(b'\r');
            }
        }
        while let Some(at) = memchr::memchr(b'\r', rest) {
            self.out.extend_from_slice(&rest[..at]);
            match rest.get(at + 1) {
                Some(b'\n') => {}                // CRLF: the LF follows on its own
                Some(_) => self.out.push(b'\r'), // a lone CR stays
                None => self.pending_cr = true,  // wait for the next chunk
            }
            rest = &rest[at + 1..];
        }
        self.out.extend_from_slice(rest);
        &self.out
    }

    /// What is left at the end of the message: a final lone CR.
    fn finish(&mut self) -> &[u8] {
        self.out.clear();
        if std::mem::take(&mut self.pending_cr) {
            self.out.push(b'\r');
        }
        &self.out
    }
}

impl Deliverer {
    /// Prepares `target` for `account`, creating a missing Maildir (or an mbox's missing
    /// directory) and message files with `modes`; Maildir batches hold up to
    /// `batch_messages` messages. Settled messages are recorded through `recorder`.
    pub fn new(
        target: Target,
        account: &str,
        batch_messages: usize,
        recorder: Recorder,
        modes: Modes,
    ) -> io::Result<Self> {
        let recorder = Arc::new(recorder);
        let mut present = HashSet::new();
        let mut maildir = None;
        if let Target::Maildir(dir) = &target {
            for sub in ["tmp", "new", "cur"] {
                modes.create_dir_all(&dir.join(sub))?;
            }
            for sub in ["new", "cur"] {
                for entry in std::fs::read_dir(dir.join(sub))? {
                    let name = entry?.file_name();
                    let name = name.to_string_lossy();
                    if name.contains(".P3U") {
                        present.insert(name.split(':').next().unwrap_or_default().to_owned());
                    }
                }
            }
            maildir = Some(OpenMaildir::open(dir, modes, Arc::clone(&recorder))?);
        }
        if let Target::Mbox(path) = &target {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                modes.create_dir_all(parent)?;
            }
        }
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .replace('/', "\\057")
            .replace(':', "\\072")
            .replace('.', "_");
        Ok(Self {
            target,
            present,
            host,
            account: account.to_owned(),
            staged: Vec::new(),
            mbox_staged: Vec::new(),
            recorder,
            settled: VecDeque::new(),
            staged_bytes: 0,
            staged_since: None,
            batch_messages,
            maildir,
        })
    }

    /// The Maildir base name of a message: stable for one account and UIDL, so a message
    /// delivered before a crash is recognised instead of delivered twice.
    fn base_name(&self, uid: &str, seen: u64) -> String {
        let digest = Sha256::digest(format!("{}\0{uid}", self.account).as_bytes());
        let hash: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
        format!("{seen}.P3U{hash}.{}", if self.host.is_empty() { "localhost" } else { &self.host })
    }

    /// Appends the staged mbox batch: one
    /// [`Mbox::deliver_many`](pop3_storage::Mbox::deliver_many), announced in the ledger
    /// beforehand (offset, length and SHA-256 of the bytes, recorded under the mbox's locks
    /// before the mbox is touched), settled at once.
    fn append_mbox(&mut self, path: &Path) {
        let spools = std::mem::take(&mut self.mbox_staged);
        if spools.is_empty() {
            return;
        }
        let (mut spools, parcels): (Vec<File>, Vec<Parcel>) = spools.into_iter().unzip();
        let recorder = &self.recorder;
        let mut append = || -> io::Result<()> {
            for spool in &mut spools {
                spool.rewind()?;
            }
            let mut readers: Vec<&mut dyn std::io::Read> =
                spools.iter_mut().map(|f| f as &mut dyn std::io::Read).collect();
            let mut hook = |append: &mut pop3_storage::Append<'_>| {
                let uids = parcels.iter().map(|p| p.uid.as_str());
                let digest = sha256_hex(append.data)
                    .and_then(|d| recorder.announce(append.offset, append.len, &d, uids));
                digest.map_err(|source| pop3_storage::Error::Io {
                    op: "record the append in the state",
                    path: path.to_owned(),
                    source,
                })
            };
            pop3_storage::Mbox::new(path)
                .deliver_many(&mut readers, &pop3_storage::Envelope::default(), &mut hook)
                .map(drop)
                .map_err(|e| io::Error::other(e.to_string()))
        };
        let result = append();
        self.settled.push_back(self.recorder.settle(parcels, result));
    }

    /// Waits for the Maildir batch in flight, if any, and queues it as settled.
    fn wait_in_flight(&mut self) {
        let Some(maildir) = self.maildir.as_mut() else { return };
        let Some((names, settled)) = maildir.settle() else { return };
        if settled.is_durable() {
            self.present.extend(names);
        }
        self.settled.push_back(settled);
    }
}

impl Sink for Deliverer {
    type Message = Delivery;

    fn start(&mut self, uid: &str, seen: u64) -> io::Result<Delivery> {
        match &self.target {
            Target::Maildir(_) => {
                let maildir = self.maildir.as_ref().ok_or_else(|| io::Error::other("closed"))?;
                let base = self.base_name(uid, seen);
                let uid = uid.to_owned();
                if self.present.contains(&base) {
                    // A run killed between linking into new/ and unlinking tmp/ left its tmp
                    // file behind; the message is delivered, so the leftover goes.
                    maildir.dirs.remove(&base)?;
                    return Ok(Delivery::Present { uid });
                }
                let file = if maildir.dirs.unnamed {
                    maildir.dirs.open_unnamed()?
                } else {
                    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
                    let mode = maildir.dirs.file_mode;
                    rustix::fs::openat(&maildir.dirs.tmp, &base, flags, mode)?.into()
                };
                Ok(Delivery::Maildir { file, base, uid, lf: ToLf::default(), written: 0 })
            }
            Target::Mbox(path) => {
                let dir =
                    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let (file, uid) = (tempfile_in(dir)?, uid.to_owned());
                Ok(Delivery::Mbox { file, uid, lf: ToLf::default(), written: 0 })
            }
            Target::Mda(command) => {
                let child = Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()?;
                Ok(Delivery::Mda { child, uid: uid.to_owned(), lf: ToLf::default() })
            }
        }
    }

    /// An mbox or Maildir message waits for its batch; an MDA one (the MDA exited 0) and one
    /// present already are settled (recorded) now.
    fn stage(&mut self, mut delivery: Delivery, octets: u64) -> io::Result<()> {
        delivery.flush_line_end()?;
        let settled = match delivery {
            Delivery::Present { uid } => Parcel { uid, octets },
            Delivery::Maildir { file, base, uid, written, .. } => {
                self.staged_bytes += written;
                self.staged.push(Staged { base, parcel: Parcel { uid, octets }, file });
                self.staged_since.get_or_insert_with(Instant::now);
                return Ok(());
            }
            Delivery::Mbox { file, uid, written, .. } => {
                self.staged_bytes += written;
                self.mbox_staged.push((file, Parcel { uid, octets }));
                self.staged_since.get_or_insert_with(Instant::now);
                return Ok(());
            }
            Delivery::Mda { mut child, uid, .. } => {
                drop(child.stdin.take());
                let status = child.wait()?;
                if !status.success() {
                    return Err(io::Error::other(format!("the MDA failed: {status}")));
                }
                Parcel { uid, octets }
            }
        };
        self.settled.push_back(self.recorder.settle(vec![settled], Ok(())));
        Ok(())
    }

    /// Its Maildir file is removed, its MDA killed.
    fn abort(&mut self, delivery: Delivery) {
        match (delivery, &self.maildir) {
            (Delivery::Maildir { base, .. }, Some(maildir)) if !maildir.dirs.unnamed => {
                let _ = maildir.dirs.remove(&base);
            }
            (Delivery::Mda { mut child, .. }, _) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            _ => {}
        }
    }

    /// The staged batch is big or old enough, or (Maildir) nothing is being persisted, so
    /// that a batch is always under way while mail arrives and each batch holds what arrived
    /// during the one before (group commit).
    fn should_seal(&self) -> bool {
        self.staged.len() >= self.batch_messages
            || self.maildir.as_ref().is_some_and(|m| {
                self.staged.len() >= m.max_held
                    || (!self.staged.is_empty()
                        && m.in_flight.as_ref().is_none_or(InFlight::is_finished))
            })
            || self.mbox_staged.len() >= self.batch_messages.min(MBOX_BATCH_MESSAGES)
            || self.staged_bytes >= BATCH_BYTES
            || self.staged_since.is_some_and(|t| t.elapsed() >= BATCH_AGE)
    }

    /// mbox: the batch is appended now (see [`Deliverer::append_mbox`]). Maildir: the batch
    /// is persisted by a thread of its own (see [`Dirs::persist`]) while the next one
    /// downloads, after waiting for the batch sealed before it: one batch in flight at a time.
    fn seal(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        let bytes = std::mem::take(&mut self.staged_bytes);
        self.staged_since = None;
        if let Target::Mbox(path) = &self.target {
            let path = path.clone();
            return self.append_mbox(&path);
        }
        self.wait_in_flight();
        if let (Some(maildir), false) = (self.maildir.as_mut(), staged.is_empty()) {
            let messages = staged.len();
            // The batch goes to the thread once it runs: if no thread can be had, it is
            // persisted here and now instead.
            let (sender, receiver) = std::sync::mpsc::channel::<Vec<Staged>>();
            let (dirs, recorder) = (Arc::clone(&maildir.dirs), Arc::clone(&self.recorder));
            let work = move || match receiver.recv() {
                Ok(staged) => dirs.persist(staged, bytes, &recorder),
                Err(_) => {
                    let nothing = Err(io::Error::other("no batch to persist"));
                    (Vec::new(), recorder.settle(Vec::new(), nothing))
                }
            };
            let spawned = std::thread::Builder::new().name("pop3-commit".into()).spawn(work);
            maildir.in_flight = Some(match spawned {
                Ok(handle) => match sender.send(staged) {
                    Ok(()) => InFlight::Thread(handle, messages),
                    Err(returned) => {
                        InFlight::Done(maildir.dirs.persist(returned.0, bytes, &self.recorder))
                    }
                },
                Err(_) => InFlight::Done(maildir.dirs.persist(staged, bytes, &self.recorder)),
            });
        }
    }

    fn seal_and_wait(&mut self) {
        self.seal();
        self.wait_in_flight();
    }

    fn settled(&mut self) -> Option<Settled> {
        self.settled.pop_front()
    }
}

impl Message for Delivery {
    fn is_present(&self) -> bool {
        matches!(self, Self::Present { .. })
    }

    /// CRLF becomes LF.
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Present { .. } => Ok(()),
            Self::Maildir { file, lf, written, .. } | Self::Mbox { file, lf, written, .. } => {
                let out = lf.convert(data);
                *written += out.len() as u64;
                file.write_all(out)
            }
            Self::Mda { child, lf, .. } => match child.stdin.as_mut() {
                Some(stdin) => stdin.write_all(lf.convert(data)),
                None => Err(io::ErrorKind::BrokenPipe.into()),
            },
        }
    }
}

impl Delivery {
    /// Writes a CR held back at the end of the last chunk.
    fn flush_line_end(&mut self) -> io::Result<()> {
        match self {
            Self::Present { .. } => Ok(()),
            Self::Maildir { file, lf, written, .. } | Self::Mbox { file, lf, written, .. } => {
                let out = lf.finish();
                *written += out.len() as u64;
                file.write_all(out)
            }
            Self::Mda { child, lf, .. } => match child.stdin.as_mut() {
                Some(stdin) => stdin.write_all(lf.finish()),
                None => Err(io::ErrorKind::BrokenPipe.into()),
            },
        }
    }
}
/// SHA-256 of everything `data` reads, in hex.
fn sha256_hex(data: &mut dyn std::io::Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// True if the mbox at `path` holds, at `offset`, the `len` octets whose SHA-256 is `digest`:
/// an announced append that took place (after a crash, an append that did not complete was
/// rolled back by the mbox's journal before this reads).
pub fn mbox_append_present(path: &Path, offset: u64, len: u64, digest: &str) -> io::Result<bool> {
    let mut hasher = Sha256::new();
    let present = pop3_storage::Mbox::new(path)
        .read_range(offset, len, &mut |chunk| hasher.update(chunk))
        .map_err(|e| io::Error::other(e.to_string()))?;
    let found: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(present && found == digest)
}

/// An unnamed temporary file (removed when closed), readable by its owner only for the
/// moment it has a name.
fn tempfile_in(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    for attempt in 0..100u32 {
        let name = dir.join(format!(".pop3-spool.{}.{attempt}", std::process::id()));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true).mode(0o600);
        match options.open(&name) {
            Ok(file) => {
                std::fs::remove_file(&name)?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a spool file"))
}

#[cfg(test)]
mod tests {
    use super::{Deliverer, Modes, Target, ToLf};
    use crate::ledger::Settled;
    use crate::sink::{Message, Sink};
    use std::path::{Path, PathBuf};

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Writes and stages messages `uids` (each body "message UID\r\n").
    fn stage(deliverer: &mut Deliverer, uids: std::ops::Range<usize>) {
        for uid in uids {
            let mut delivery = deliverer.start(&format!("u{uid}"), 1).unwrap();
            delivery.write(format!("message {uid}\r\n").as_bytes()).unwrap();
            deliverer.stage(delivery, 11).unwrap();
            assert!(deliverer.settled().is_none(), "staged, not settled");
        }
    }

    /// Seals the staged batch, and what settled meanwhile: (messages, durable).
    fn seal(deliverer: &mut Deliverer) -> (usize, bool) {
        deliverer.seal();
        settled(deliverer)
    }

    /// Waits for every staged message, and what settled meanwhile: (messages, durable).
    fn wait(deliverer: &mut Deliverer) -> (usize, bool) {
        deliverer.seal_and_wait();
        settled(deliverer)
    }

    /// The batches settled and not yet taken, as one: (messages, every batch durable).
    fn settled(deliverer: &mut Deliverer) -> (usize, bool) {
        let batches: Vec<Settled> = std::iter::from_fn(|| deliverer.settled()).collect();
        (batches.iter().map(Settled::len).sum(), batches.iter().all(Settled::is_durable))
    }

    /// A Maildir deliverer in a new temporary directory (kept alive by the first element),
    /// writing unnamed files (`O_TMPFILE`) or, with `named`, `tmp/NAME`; its Maildir is the
    /// second element, and its state lives next to it, under `state/`.
    fn maildir(named: bool) -> (tempfile::TempDir, PathBuf, Deliverer) {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("Maildir");
        let ledger = crate::ledger::Ledger::open(&md.with_file_name("state"), "acct", false);
        let recorder = ledger.unwrap().recorder().unwrap();
        let target = Target::Maildir(md.clone());
        let mut deliverer = Deliverer::new(target, "acct", 1000, recorder, Modes::PRIVATE).unwrap();
        let dirs = &mut deliverer.maildir.as_mut().unwrap().dirs;
        let dirs = std::sync::Arc::get_mut(dirs).unwrap();
        assert!(named || dirs.unnamed, "O_TMPFILE works in the test's temporary directory");
        dirs.unnamed = !named;
        (dir, md, deliverer)
    }

    #[test]
    fn a_maildir_batch_is_settled_by_the_next_seal_or_by_waiting() {
        for named in [false, true] {
            settled_by_the_next_seal_or_by_waiting(named);
        }
    }

    fn settled_by_the_next_seal_or_by_waiting(named: bool) {
        let (_dir, md, mut deliverer) = maildir(named);
        stage(&mut deliverer, 0..3);
        // Nothing was in flight: nothing settles; the three are sealed.
        assert_eq!(seal(&mut deliverer), (0, true));
        stage(&mut deliverer, 3..5);
        // The first batch settles (waited for); the next two are sealed.
        assert_eq!(seal(&mut deliverer), (3, true));
        assert!(names(&md.join("new")).len() >= 3);
        assert_eq!(wait(&mut deliverer), (2, true));
        assert_eq!(wait(&mut deliverer), (0, true), "nothing left in flight");
        let new = names(&md.join("new"));
        assert_eq!(new.len(), 5);
        assert!(names(&md.join("tmp")).is_empty());
        let mut bodies: Vec<String> =
            new.iter().map(|n| std::fs::read_to_string(md.join("new").join(n)).unwrap()).collect();
        bodies.sort();
        assert_eq!(bodies, (0..5).map(|u| format!("message {u}\n")).collect::<Vec<_>>());
        // Settled messages count as present: delivering one again writes nothing.
        assert!(deliverer.start("u4", 1).unwrap().is_present());
        // Each settled batch recorded its messages in the state, once each.
        assert_eq!(recorded(&md), (0..5).map(|u| format!("u{u}")).collect::<Vec<_>>());
    }

    /// Whatever the umask, a Maildir the retriever creates and the messages it writes there
    /// (unnamed files and `tmp/NAME` alike) are its user's alone.
    #[test]
    fn maildir_directories_and_messages_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for named in [false, true] {
            let (_dir, md, mut deliverer) = maildir(named);
            stage(&mut deliverer, 0..2);
            assert_eq!(wait(&mut deliverer), (2, true));
            for sub in ["", "tmp", "new", "cur"] {
                assert_eq!(mode(&md.join(sub)) & 0o077, 0, "{sub}/ named={named}");
            }
            for name in names(&md.join("new")) {
                assert_eq!(mode(&md.join("new").join(name)) & 0o077, 0, "named={named}");
            }
        }
    }

    /// The UIDLs the state next to `md` records as fetched, sorted.
    fn recorded(md: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(md.with_file_name("state").join("acct.state")).unwrap();
        let mut uids: Vec<String> =
            text.lines().filter_map(|l| l.strip_prefix("F ")).map(str::to_owned).collect();
        uids.sort();
        uids
    }

    #[test]
    fn a_failed_maildir_batch_settles_its_messages_as_not_durable_and_removes_them() {
        for named in [false, true] {
            a_failed_batch(named);
        }
    }

    fn a_failed_batch(named: bool) {
        let (_dir, md, mut deliverer) = maildir(named);
        stage(&mut deliverer, 0..4);
        assert_eq!(names(&md.join("tmp")).len(), if named { 4 } else { 0 });
        // new/ is gone (its descriptor stays open): no file can be moved into it.
        std::fs::remove_dir(md.join("new")).unwrap();
        assert_eq!(seal(&mut deliverer), (0, true));
        assert_eq!(wait(&mut deliverer), (4, false));
        assert!(names(&md.join("tmp")).is_empty(), "the batch's files are removed");
        assert!(!deliverer.start("u0", 1).unwrap().is_present(), "not delivered");
        assert!(recorded(&md).is_empty(), "nothing recorded");
    }

    /// Every kind of target reports settled messages by name, and the ledger learns exactly
    /// those: mbox batches when sealed, MDA deliveries and messages present already at once.
    #[test]
    fn settled_messages_are_reported_by_name_to_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = Target::Mbox(dir.path().join("mbox"));
        let mda = Target::Mda("cat >/dev/null".into());
        let md = Target::Maildir(dir.path().join("Maildir"));
        // The second Maildir run finds both messages present already (in new/).
        let runs = [("mbox", mbox), ("mda", mda), ("md", md.clone()), ("md", md)];
        for (run, (account, target)) in runs.into_iter().enumerate() {
            let state = dir.path().join("state");
            let name = format!("{account}{run}");
            let mut ledger = crate::ledger::Ledger::open(&state, &name, false).unwrap();
            ledger.see_all(["u0", "u1", "u2", "u3"].into_iter(), 1).unwrap();
            let recorder = ledger.recorder().unwrap();
            let mut deliverer =
                Deliverer::new(target.clone(), account, 1000, recorder, Modes::PRIVATE).unwrap();
            for uid in ["u2", "u0"] {
                let mut delivery = deliverer.start(uid, 1).unwrap();
                assert_eq!(delivery.is_present(), run == 3, "{name}");
                delivery.write(b"body\r\n").unwrap();
                deliverer.stage(delivery, 6).unwrap();
            }
            let at_once = matches!(target, Target::Mda(_)) || run == 3;
            let mut noted = 0;
            if !at_once {
                assert!(deliverer.settled().is_none(), "{name}: staged, not settled");
            }
            deliverer.seal_and_wait();
            while let Some(settled) = deliverer.settled() {
                noted += ledger.note(settled).unwrap().messages;
            }
            assert_eq!(noted, 2, "{name}");
            let fetched: Vec<bool> = (0..4).map(|u| ledger.is_fetched(&format!("u{u}"))).collect();
            assert_eq!(fetched, [true, false, true, false], "{name}");
        }
    }

    #[test]
    fn dropping_the_deliverer_finishes_the_batch_in_flight() {
        let (_dir, md, mut deliverer) = maildir(false);
        stage(&mut deliverer, 0..50);
        assert_eq!(seal(&mut deliverer), (0, true));
        drop(deliverer);
        assert_eq!(names(&md.join("new")).len(), 50);
        assert!(names(&md.join("tmp")).is_empty());
    }

    fn convert(chunks: &[&[u8]]) -> Vec<u8> {
        let mut lf = ToLf::default();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend_from_slice(lf.convert(chunk));
        }
        out.extend_from_slice(lf.finish());
        out
    }

    #[test]
    fn crlf_becomes_lf_over_any_chunking() {
        let wire = b"a\r\nb\rc\r\n\r\nlast\r";
        let want = b"a\nb\rc\n\nlast\r".to_vec();
        assert_eq!(convert(&[wire]), want);
        for cut in 0..=wire.len() {
            assert_eq!(convert(&[&wire[..cut], &wire[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(convert(&bytes), want);
        assert_eq!(convert(&[b"x\r", b"\r", b"\n"]), b"x\r\n");
    }
}
