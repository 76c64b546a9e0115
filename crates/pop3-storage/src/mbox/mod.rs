//! mbox maildrops (`/var/mail/USER`) and mbox delivery.
//!
//! * **Reading.** A message starts at a line beginning with `From ` that is the first line of
//!   the file or follows an empty line; that `From ` line is not part of the message, and the
//!   empty line before the next `From ` line (the separator) is not either. Messages are
//!   read as mboxrd (RFC 4155 appendix A): every line matching `>+From ` is served with one
//!   `>` less, which gives back exactly what delivery quoted, and undoes the quoting of
//!   mboxo writers such as Postfix for `From ` lines (see `docs/storage.md` for the one
//!   line mboxo cannot give back). Sizes count what is served. A file that has anything but
//!   empty lines before its first `From ` line is refused ([`Error::Corrupt`]).
//! * **UIDL.** 32 hex digits of FNV-1a-128 over the `From ` line, the header section and the
//!   size of the message as stored (before unquoting, so UIDLs did not change when reading
//!   became mboxrd); a second identical message gets `-2`, a third `-3`, and so on.
//! * **Locking.** A `NAME.lock` dotlock, then an `fcntl` write lock on the file, as Postfix
//!   (`mailbox_delivery_lock = fcntl, dotlock`) and mutt do. Both are held until commit or drop.
//! * **Commit** writes the kept messages and anything appended since the snapshot to
//!   `.NAME.pop3-storage.tmp`, fsyncs it, renames it over the mbox and fsyncs the directory:
//!   a crash leaves either the old or the new file.
//! * **Delivery** appends `From sender date`, the message quoted as mboxrd (every line
//!   matching `>*From ` gets one more `>`, so `>From ` is stored `>>From ` and read back
//!   as it was; what mpop, mutt and getmail write), a final newline if missing, and an empty
//!   separator line. A journal `.NAME.pop3-storage.append` makes an interrupted append
//!   roll back on the next locked access.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

mod scan;

pub use scan::{scan_bytes, ScanError, ScannedMessage, Scanner};

use crate::error::IoContext;
use crate::lock::{fcntl_exclusive, DotLock};
use crate::util::{asctime_utc, failpoint};
use crate::{Envelope, Error, Maildrop, MessageInfo, MessageReader, Result, CHUNK};

/// An append [`Mbox::deliver_many`] is about to make: at `offset` (the mbox's length under
/// the lock), `len` octets, which `data` reads (the exact bytes, From lines and separators
/// included).
pub struct Append<'a> {
    /// Where the append starts.
    pub offset: u64,
    /// How many octets it writes.
    pub len: u64,
    /// The octets it writes.
    pub data: &'a mut dyn Read,
}

impl std::fmt::Debug for Append<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append").field("offset", &self.offset).field("len", &self.len).finish()
    }
}

/// An mbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbox {
    path: PathBuf,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    from_start: u64,
    body_start: u64,
    body_end: u64,
}

/// An open mbox maildrop (see [`Mbox::open`]).
#[derive(Debug)]
pub struct MboxDrop {
    path: PathBuf,
    /// The locked descriptor (`None` when the mbox does not exist: an empty maildrop).
    file: Option<File>,
    dotlock: Option<DotLock>,
    locs: Vec<Loc>,
    infos: Vec<MessageInfo>,
    snapshot_len: u64,
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.pop3-storage.{suffix}"))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync directory", dir)
}

/// The locks of an mbox: dotlock, then the fcntl lock on the file it names.
struct Locked {
    dotlock: DotLock,
    file: Option<File>,
}

impl Mbox {
    /// The mbox at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The mbox file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self, create: bool) -> Result<Locked> {
        let dotlock = DotLock::acquire(&self.path)?;
        for _ in 0..5 {
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .mode(0o600)
                .open(&self.path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !create => {
                    return Ok(Locked { dotlock, file: None })
                }
                Err(e) => return Err(Error::io("open", &self.path, e)),
            };
            fcntl_exclusive(&file, &self.path)?;
            // The file may have been replaced (renamed over) between our open and our lock;
            // then the lock protects nothing: start again.
            let ours = file.metadata().ctx("stat", &self.path)?;
            match fs::metadata(&self.path) {
                Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {
                    let locked = Locked { dotlock, file: Some(file) };
                    self.recover(&locked)?;
                    return Ok(locked);
                }
                _ => continue,
            }
        }
        Err(Error::InUse { path: self.path.clone(), holder: None })
    }

    /// Under the locks: removes a commit's leftover temporary file and rolls back an
    /// interrupted append.
    fn recover(&self, locked: &Locked) -> Result<()> {
        let tmp = sidecar(&self.path, "tmp");
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &tmp, e)),
        }
        let journal = sidecar(&self.path, "append");
        let text = match fs::read_to_string(&journal) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("read", &journal, e)),
        };
        let mut nums = text.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(orig)), Some(Ok(end)), Some(file)) =
            (nums.next(), nums.next(), locked.file.as_ref())
        {
            let len = file.metadata().ctx("stat", &self.path)?.len();
            // Only our own unacknowledged append is undone; if the file is shorter than before
            // it or longer than it would have made it, someone else has written: leave it.
            if len > orig && len <= end {
                file.set_len(orig).ctx("truncate", &self.path)?;
                file.sync_all().ctx("fsync", &self.path)?;
            }
        }
        // An unparsable journal was never fsynced, so its append never started.
        fs::remove_file(&journal).ctx("remove", &journal)?;
        sync_dir(&self.path)
    }

    /// Under the locks (so after rolling back an interrupted append), feeds `len` octets of
    /// the mbox from `offset` to `sink`; `false` if the file is shorter than that. A
    /// retriever uses it to check whether an [`Append`] it recorded took place.
    pub fn read_range(&self, offset: u64, len: u64, sink: &mut dyn FnMut(&[u8])) -> Result<bool> {
        let locked = self.lock(false)?;
        let Some(file) = locked.file.as_ref() else { return Ok(false) };
        if file.metadata().ctx("stat", &self.path)?.len() < offset.saturating_add(len) {
            return Ok(false);
        }
        let mut buf = vec![0; CHUNK];
        let (mut at, end) = (offset, offset + len);
        while at < end {
            let want = buf.len().min(usize::try_from(end - at).unwrap_or(usize::MAX));
            let n = file.read_at(&mut buf[..want], at).ctx("read", &self.path)?;
            if n == 0 {
                return Ok(false);
            }
            sink(&buf[..n]);
            at += n as u64;
        }
        Ok(true)
    }

    /// Locks the mbox (dotlock + fcntl) and takes a snapshot of its messages. A missing file is
    /// an empty maildrop.
    pub fn open(&self) -> Result<MboxDrop> {
        let locked = self.lock(false)?;
        let (locs, infos, snapshot_len) = match &locked.file {
            Some(f) => scan(f, &self.path)?,
            None => (Vec::new(), Vec::new(), 0),
        };
        Ok(MboxDrop {
            path: self.path.clone(),
            file: locked.file,
            dotlock: Some(locked.dotlock),
            locs,
            infos,
            snapshot_len,
        })
    }

    /// Appends a message (see the [module docs](self)); durable when this returns `Ok`.
    /// Fails with [`Error::InUse`] while a POP3 session holds the mbox, like any
    /// locking MDA (which then retries later).
    pub fn deliver(&self, message: &mut dyn Read, envelope: &Envelope) -> Result<()> {
        self.deliver_many(&mut [message], envelope, &mut |_| Ok(()))
    }

    /// Appends several messages under one lock, one journal and one fsync: all of them or,
    /// after a crash, none (the journal rolls the append back). Before anything is written to
    /// the mbox, under the locks, `before_append` is given the [`Append`] about to be made:
    /// a retriever records it durably, so that after a crash it can tell with
    /// [`Mbox::read_range`] whether the append took place (and not deliver again).
    pub fn deliver_many(
        &self,
        messages: &mut [&mut dyn Read],
        envelope: &Envelope,
        before_append: &mut dyn FnMut(&mut Append<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut each: Vec<(&mut dyn Read, &Envelope)> =
            messages.iter_mut().map(|m| (&mut **m as &mut dyn Read, envelope)).collect();
        self.deliver_each(&mut each, before_append)
    }

    /// [`Mbox::deliver_many`], each message with its own envelope (its own `From ` line).
    pub(crate) fn deliver_each(
        &self,
        messages: &mut [(&mut dyn Read, &Envelope)],
        before_append: &mut dyn FnMut(&mut Append<'_>) -> Result<()>,
    ) -> Result<()> {
        let locked = self.lock(true)?;
        let file = locked.file.as_ref().expect("created");
        let orig = file.metadata().ctx("stat", &self.path)?.len();
        // Spool first (quoting, From line, separator), so the append copies a known length.
        let spool_path = sidecar(&self.path, &format!("spool.{}", std::process::id()));
        let mut spool = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&spool_path)
            .ctx("create", &spool_path)?;
        let _ = fs::remove_file(&spool_path); // anonymous from now on
        let mut tail = [0u8; 2];
        let sep: &[u8] = match orig {
            0 => b"",
            1 => {
                file.read_exact_at(&mut tail[1..], 0).ctx("read", &self.path)?;
                if tail[1] == b'\n' {
                    b"\n"
                } else {
                    b"\n\n"
                }
            }
            _ => {
                file.read_exact_at(&mut tail, orig - 2).ctx("read", &self.path)?;
                match tail {
                    [b'\n', b'\n'] => b"",
                    [_, b'\n'] => b"\n",
                    _ => b"\n\n",
                }
            }
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let date = asctime_utc(now.as_secs());
        let mut w = io::BufWriter::with_capacity(CHUNK, &mut spool);
        w.write_all(sep).ctx("write", &spool_path)?;
        let mut buf = vec![0; CHUNK];
        let mut out = Vec::with_capacity(CHUNK + 64);
        for (message, envelope) in messages.iter_mut() {
            let sender = envelope
                .sender
                .as_deref()
                .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                .unwrap_or("MAILER-DAEMON");
            let head = format!("From {sender} {date}\n");
            w.write_all(head.as_bytes()).ctx("write", &spool_path)?;
            let mut quoter = Quoter::default();
            loop {
                let n = match message.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read message for", &self.path, e)),
                };
                out.clear();
                quoter.feed(&buf[..n], &mut out);
                w.write_all(&out).ctx("write", &spool_path)?;
            }
            out.clear();
            quoter.finish(&mut out);
            out.push(b'\n'); // separator
            w.write_all(&out).ctx("write", &spool_path)?;
        }
        w.flush().ctx("write", &spool_path)?;
        drop(w);
        let total = spool.stream_position().ctx("seek", &spool_path)?;
        spool.seek(SeekFrom::Start(0)).ctx("seek", &spool_path)?;
        before_append(&mut Append { offset: orig, len: total, data: &mut spool })?;

        let journal = sidecar(&self.path, "append");
        let mut j = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&journal)
            .ctx("create", &journal)?;
        j.write_all(format!("{orig} {}\n", orig + total).as_bytes())
            .and_then(|()| j.sync_all())
            .ctx("write", &journal)?;
        sync_dir(&self.path)?;
        failpoint("mbox.deliver.journaled");

        let appended = (|| {
            spool.seek(SeekFrom::Start(0)).ctx("seek", &spool_path)?;
            let mut at = orig;
            loop {
                let n = match spool.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read", &spool_path, e)),
                };
                file.write_all_at(&buf[..n], at).ctx("append to", &self.path)?;
                at += n as u64;
                if at > orig && at < orig + total {
                    failpoint("mbox.deliver.partial");
                }
            }
            failpoint("mbox.deliver.appended");
            file.sync_all().ctx("fsync", &self.path)
        })();
        if let Err(e) = appended {
            // Leave the mbox as it was; the journal would do it on the next access anyway.
            if file.set_len(orig).is_ok() && file.sync_all().is_ok() {
                let _ = fs::remove_file(&journal);
            }
            return Err(e);
        }
        failpoint("mbox.deliver.synced");
        fs::remove_file(&journal).ctx("remove", &journal)?;
        sync_dir(&self.path)?;
        failpoint("mbox.deliver.done");
        drop(locked);
        Ok(())
    }
}

/// `From ` after any number of `>` at the start of a line: the lines mboxrd quotes.
const FROM: &[u8] = b"From ";

/// The start of one line, octet by octet, against mboxrd's pattern `>*From `.
#[derive(Debug, Default, Clone, Copy)]
struct LineStart {
    /// `>` octets at the start of the line so far.
    quotes: u64,
    /// Octets of `From ` matched after them.
    matched: usize,
    /// Whether the line matches `>*From `, once known.
    from: Option<bool>,
}

impl LineStart {
    /// Looks at the next octets of the line, while `from` is unknown. Returns how many it
    /// took: all of `data` if still undecided, up to the space of `From ` on a match, and up
    /// to (not including) the octet that rules a match out.
    fn feed(&mut self, data: &[u8]) -> usize {
        for (i, &b) in data.iter().enumerate() {
            if self.matched == 0 && b == b'>' {
                self.quotes += 1;
            } else if b == FROM[self.matched] {
                self.matched += 1;
                if self.matched == FROM.len() {
                    self.from = Some(true);
                    return i + 1;
                }
            } else {
                self.from = Some(false);
                return i;
            }
        }
        data.len()
    }

    /// True for a line that mboxrd quoting wrote: `>+From `.
    fn is_quoted_from(&self) -> bool {
        self.from == Some(true) && self.quotes > 0
    }
}

/// Which way [`Quoting`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Writing: every line matching `>*From ` gets one more `>`.
    Quote,
    /// Reading: every line matching `>+From ` loses one `>`.
    Unquote,
}

/// mboxrd's quoting of message lines (RFC 4155 appendix A), streaming over any split of the
/// input. Only the start of a line is held back while it is undecided: the `From ` octets
/// matched so far, and when unquoting the line's first `>` (the `>` octets are all alike, so
/// the one dropped or added may as well be the last of them).
#[derive(Debug)]
struct Quoting {
    direction: Direction,
    /// The start of the current line, while it is being decided.
    line: Option<LineStart>,
}

impl Quoting {
    fn new(direction: Direction) -> Self {
        Self { direction, line: Some(LineStart::default()) }
    }

    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if let Some(line) = self.line.as_mut() {
                let before = line.quotes;
                let taken = line.feed(input);
                let quotes = line.quotes - before;
                // Unquoting keeps the line's first `>` back until the line is decided.
                let held = u64::from(self.direction == Direction::Unquote && before == 0);
                out.extend(std::iter::repeat_n(b'>', quotes.saturating_sub(held) as usize));
                input = &input[taken..];
                let line = *line;
                if line.from.is_some() {
                    self.decided(line, out);
                }
                continue;
            }
            match memchr::memchr(b'\n', input) {
                Some(i) => {
                    out.extend_from_slice(&input[..=i]);
                    input = &input[i + 1..];
                    self.line = Some(LineStart::default());
                }
                None => {
                    out.extend_from_slice(input);
                    input = &[];
                }
            }
        }
    }

    /// Writes what was held back of a decided line start.
    fn decided(&mut self, line: LineStart, out: &mut Vec<u8>) {
        let from = line.from == Some(true);
        match self.direction {
            Direction::Quote if from => out.push(b'>'),
            Direction::Unquote if line.quotes > 0 && !from => out.push(b'>'),
            _ => {}
        }
        out.extend_from_slice(&FROM[..line.matched]);
        self.line = None;
    }

    /// Writes what is still held back at the end of the input.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(mut line) = self.line.take() {
            line.from = Some(false);
            self.decided(line, out);
        }
    }
}

/// A message being written to an mbox: quoted, and ended with a newline if it lacks one.
#[derive(Debug)]
struct Quoter {
    quoting: Quoting,
    last: Option<u8>,
}

impl Default for Quoter {
    fn default() -> Self {
        Self { quoting: Quoting::new(Direction::Quote), last: None }
    }
}

impl Quoter {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if let Some(&b) = input.last() {
            self.last = Some(b);
        }
        self.quoting.feed(input, out);
    }

    /// Flushes and ends the message with a newline if it lacks one.
    fn finish(&mut self, out: &mut Vec<u8>) {
        self.quoting.finish(out);
        if !matches!(self.last, None | Some(b'\n')) {
            out.push(b'\n');
        }
    }
}

/// A stored message read back: unquoted.
struct Unquoter<R> {
    inner: R,
    quoting: Quoting,
    input: Vec<u8>,
    output: Vec<u8>,
    /// How much of `output` was read.
    at: usize,
    done: bool,
}

impl<R: Read> Unquoter<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            quoting: Quoting::new(Direction::Unquote),
            input: vec![0; CHUNK],
            output: Vec::with_capacity(CHUNK + FROM.len() + 1),
            at: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for Unquoter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.output.len() && !self.done {
            self.output.clear();
            self.at = 0;
            let n = match self.inner.read(&mut self.input) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.quoting.finish(&mut self.output);
                self.done = true;
            } else {
                self.quoting.feed(&self.input[..n], &mut self.output);
            }
        }
        let n = buf.len().min(self.output.len() - self.at);
        buf[..n].copy_from_slice(&self.output[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads the whole mbox through the [`Scanner`]: message locations, sizes and UIDLs, and the
/// length scanned.
fn scan(file: &File, path: &Path) -> Result<(Vec<Loc>, Vec<MessageInfo>, u64)> {
    let corrupt = |e: ScanError| Error::Corrupt { path: path.to_path_buf(), reason: e.to_string() };
    let mut reader = BufReader::with_capacity(CHUNK, file);
    (&*file).seek(SeekFrom::Start(0)).ctx("seek", path)?;
    let mut scanner = Scanner::new();
    loop {
        let buf = reader.fill_buf().ctx("read", path)?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        scanner.feed(buf).map_err(corrupt)?;
        reader.consume(n);
    }
    let len = scanner.offset();
    let scanned = scanner.finish().map_err(corrupt)?;
    let mut locs = Vec::with_capacity(scanned.len());
    let mut infos = Vec::with_capacity(scanned.len());
    for m in scanned {
        locs.push(Loc { from_start: m.from_start, body_start: m.body_start, body_end: m.body_end });
        infos.push(MessageInfo { size: m.size, uidl: m.uidl });
    }
    Ok((locs, infos, len))
}

impl MboxDrop {
    fn live(&self) -> Result<()> {
        if self.dotlock.is_none() {
            return Err(Error::Committed);
        }
        Ok(())
    }

    /// The mbox file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn release(&mut self) {
        // Close the descriptor (dropping the fcntl lock) before removing the dotlock.
        self.file = None;
        self.dotlock = None;
    }

    fn rewrite(&self, file: &File, deleted: &[bool]) -> Result<()> {
        let meta = file.metadata().ctx("stat", &self.path)?;
        let len = meta.len();
        let changed = |reason: &str| Error::Corrupt {
            path: self.path.clone(),
            reason: format!("{reason} while locked; nothing deleted"),
        };
        if len < self.snapshot_len {
            return Err(changed("mbox shrank"));
        }
        for loc in &self.locs {
            let mut head = [0u8; 5];
            file.read_exact_at(&mut head, loc.from_start).ctx("read", &self.path)?;
            if &head != b"From " {
                return Err(changed("mbox was modified"));
            }
        }
        let tmp = sidecar(&self.path, "tmp");
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .ctx("create", &tmp)?;
        let result = (|| {
            let mut copy = |from: u64, to: u64| -> Result<()> {
                let mut src = file;
                src.seek(SeekFrom::Start(from)).ctx("seek", &self.path)?;
                let n = io::copy(&mut src.take(to - from), &mut out).ctx("copy to", &tmp)?;
                if n != to - from {
                    return Err(changed("mbox shrank"));
                }
                Ok(())
            };
            let first = self.locs.first().map_or(self.snapshot_len, |l| l.from_start);
            copy(0, first)?;
            for (i, loc) in self.locs.iter().enumerate() {
                let region_end = self.locs.get(i + 1).map_or(self.snapshot_len, |l| l.from_start);
                if !deleted[i] {
                    copy(loc.from_start, region_end)?;
                }
            }
            copy(self.snapshot_len, len)?;
            failpoint("mbox.commit.written");
            out.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
                .ctx("chmod", &tmp)?;
            let ours = out.metadata().ctx("stat", &tmp)?;
            if (ours.uid(), ours.gid()) != (meta.uid(), meta.gid()) {
                rustix::fs::fchown(
                    &out,
                    Some(rustix::fs::Uid::from_raw(meta.uid())),
                    Some(rustix::fs::Gid::from_raw(meta.gid())),
                )
                .map_err(|e| Error::io("chown", &tmp, e.into()))?;
            }
            out.sync_all().ctx("fsync", &tmp)?;
            failpoint("mbox.commit.synced");
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &self.path).ctx("rename over", &self.path)?;
        failpoint("mbox.commit.renamed");
        sync_dir(&self.path)?;
        failpoint("mbox.commit.done");
        Ok(())
    }
}

impl Maildrop for MboxDrop {
    fn is_local(&self) -> bool {
        true // a local file, most likely in the page cache since the snapshot was taken
    }

    fn messages(&self) -> &[MessageInfo] {
        &self.infos
    }

    fn read_message(&self, index: usize) -> Result<MessageReader<'_>> {
        self.live()?;
        let loc = self.locs.get(index).ok_or(Error::NoSuchMessage(index))?;
        let file = self.file.as_ref().ok_or(Error::NoSuchMessage(index))?;
        let stored = MessageReader::region(file, loc.body_start, loc.body_end);
        Ok(MessageReader::new(Box::new(Unquoter::new(stored))))
    }

    fn commit(&mut self, deleted: &[usize]) -> Result<()> {
        self.live()?;
        if let Some(&bad) = deleted.iter().find(|&&i| i >= self.locs.len()) {
            return Err(Error::NoSuchMessage(bad));
        }
        if let (false, Some(file)) = (deleted.is_empty(), self.file.as_ref()) {
            let mut marks = vec![false; self.locs.len()];
            for &i in deleted {
                marks[i] = true;
            }
            self.rewrite(file, &marks)?;
        }
        self.release();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Fnv128;

    fn quote(chunks: &[&[u8]]) -> Vec<u8> {
        let mut q = Quoter::default();
        let mut out = Vec::new();
        for c in chunks {
            q.feed(c, &mut out);
        }
        q.finish(&mut out);
        out
    }

    /// Unquotes what `inner` reads.
    fn unquote(inner: impl Read) -> Vec<u8> {
        let mut out = Vec::new();
        Unquoter::new(inner).read_to_end(&mut out).unwrap();
        out
    }

    const PLAIN: &[u8] =
        b"From x\nFrom\n>From y\n>>From z\n>\n>>\n>Fro\nFro\nab From c\n>>>From \nFrom ";
    const QUOTED: &[u8] =
        b">From x\nFrom\n>>From y\n>>>From z\n>\n>>\n>Fro\nFro\nab From c\n>>>>From \n>From \n";

    #[test]
    fn mboxrd_quoting_over_any_split() {
        for i in 0..=PLAIN.len() {
            let (a, b) = PLAIN.split_at(i);
            assert_eq!(quote(&[a, b]), QUOTED, "split at {i}");
        }
        let octets: Vec<&[u8]> = PLAIN.chunks(1).collect();
        assert_eq!(quote(&octets), QUOTED);
        assert_eq!(quote(&[b"x"]), b"x\n");
        assert_eq!(quote(&[]), b"");
    }

    #[test]
    fn mboxrd_unquoting_over_any_split_gives_the_message_back() {
        let want = [PLAIN, b"\n"].concat();
        for i in 0..=QUOTED.len() {
            let (a, b) = QUOTED.split_at(i);
            assert_eq!(unquote(a.chain(b)), want, "split at {i}");
        }
        assert_eq!(unquote(OneAtATime(QUOTED)), want);
        // A quoted line cut short at the end stays as it is; so does a bare `From ` line.
        assert_eq!(unquote(&b"a\n>Fr"[..]), b"a\n>Fr");
        assert_eq!(unquote(&b">\nFrom x\n>"[..]), b">\nFrom x\n>");
    }

    /// Reads one octet per call.
    struct OneAtATime<'a>(&'a [u8]);

    impl Read for OneAtATime<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// What is delivered is read back as it was: `>From ` and `>>From ` lines included,
    /// with sizes that count what is served.
    #[test]
    fn delivered_messages_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = Mbox::new(dir.path().join("m"));
        let messages: [&[u8]; 4] = [
            b"Subject: a\n\nFrom the start\n>From quoted\n>>From twice\n",
            b"Subject: b\r\n\r\n>From crlf\r\nFrom x\r\n",
            b"Subject: c\n\n>From no newline",
            b">From header-like first line\n\nbody\n",
        ];
        for m in messages {
            mbox.deliver(&mut &m[..], &Envelope::default()).unwrap();
        }
        let d = mbox.open().unwrap();
        assert_eq!(d.messages().len(), messages.len());
        for (i, m) in messages.iter().enumerate() {
            let mut got = Vec::new();
            d.read_message(i).unwrap().read_to_end(&mut got).unwrap();
            let mut want = m.to_vec();
            if !want.ends_with(b"\n") {
                want.push(b'\n');
            }
            assert_eq!(got, want, "message {i}");
            let crlf = String::from_utf8(want).unwrap().replace("\r\n", "\n").replace('\n', "\r\n");
            assert_eq!(d.messages()[i].size, crlf.len() as u64, "size {i}");
        }
    }

    /// Reading unquoted changes the size a quoted message is served with, not its UIDL: that
    /// still hashes the size of the message as stored, as before mboxrd reading.
    #[test]
    fn uidls_hash_the_size_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let from_line = "From a@b Tue Nov 14 22:13:20 2023\n";
        fs::write(&path, format!("{from_line}Subject: q\n\n>From quoted\n")).unwrap();
        let d = Mbox::new(&path).open().unwrap();
        // Served: "Subject: q", "", "From quoted", each with CRLF.
        assert_eq!(d.messages()[0].size, 12 + 2 + 13);
        let mut hash = Fnv128::new();
        hash.update(format!("{from_line}Subject: q\n\n").as_bytes());
        hash.update(&(12u64 + 2 + 14).to_le_bytes());
        assert_eq!(d.messages()[0].uidl, hash.hex());
    }
}
