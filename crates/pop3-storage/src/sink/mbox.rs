//! The mbox sink: one locked, journalled append per batch.
//!
//! Each message is spooled to an unlinked file next to the mbox; sealing appends the whole
//! batch with [`Mbox::deliver_many`]'s machinery (dotlock and `fcntl` lock, mboxrd quoting,
//! one journal, one fsync: all or, after a crash, none), in the caller's thread, so a batch is
//! settled as soon as it is sealed. A hook ([`MboxSink::before_append`]) is given each append
//! before the mbox is touched, so that a caller can record it durably and tell after a crash
//! whether it happened ([`Mbox::read_range`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{BatchLimits, Begun, Incoming, MessageId, Modes, Settled, Sink};
use crate::{Append, Envelope, Error, Mbox, Result};

/// An mbox batch holds at most this many messages (one spool descriptor each).
const MAX_BATCH_MESSAGES: usize = 128;

/// The hook given each append before it is made.
type BeforeAppend = Box<dyn FnMut(&mut Append<'_>) -> Result<()> + Send>;

/// An mbox delivery sink: one locked, journalled append per batch (see [`crate::sink`]).
pub struct MboxSink {
    mbox: Mbox,
    /// Where spool files are made: the mbox's directory.
    dir: PathBuf,
    limits: BatchLimits,
    before_append: Option<BeforeAppend>,
    current: Option<(File, Envelope, u64)>,
    staged: Vec<(File, Envelope)>,
    staged_bytes: u64,
    staged_since: Option<Instant>,
    next_id: MessageId,
    settled: Vec<Settled>,
}

impl std::fmt::Debug for MboxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MboxSink")
            .field("mbox", &self.mbox)
            .field("staged", &self.staged.len())
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl MboxSink {
    /// A sink into the mbox at `path`, creating its missing parent directories with
    /// `modes.dir` (the mbox itself is created, mode 0600, by the first append).
    pub fn open(path: impl Into<PathBuf>, modes: Modes, limits: BatchLimits) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let path = path.into();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(modes.dir)
            .create(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        Ok(Self {
            mbox: Mbox::new(path),
            dir,
            limits,
            before_append: None,
            current: None,
            staged: Vec::new(),
            staged_bytes: 0,
            staged_since: None,
            next_id: 0,
            settled: Vec::new(),
        })
    }

    /// Calls `hook` with each append (offset, length, the exact octets) under the mbox's
    /// locks, before the mbox is touched; an error from it fails the batch, unwritten.
    pub fn before_append(
        &mut self,
        hook: impl FnMut(&mut Append<'_>) -> Result<()> + Send + 'static,
    ) {
        self.before_append = Some(Box::new(hook));
    }

    /// The mbox.
    pub fn path(&self) -> &Path {
        self.mbox.path()
    }
}

/// An unnamed temporary file in `dir` (removed when closed), readable by its owner only for
/// the moment it has a name.
fn spool_file(dir: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    for attempt in 0..100u32 {
        let name = dir.join(format!(".pop3-spool.{}.{attempt}", std::process::id()));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true).mode(0o600);
        match options.open(&name) {
            Ok(file) => {
                std::fs::remove_file(&name).map_err(|e| Error::io("remove", &name, e))?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create", &name, e)),
        }
    }
    Err(Error::io("create a spool file in", dir, io::Error::other("every name is taken")))
}

impl Sink for MboxSink {
    fn begin(&mut self, incoming: &Incoming) -> Result<Begun> {
        self.abort();
        self.current = Some((spool_file(&self.dir)?, incoming.envelope.clone(), 0));
        Ok(Begun::New)
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let Some((file, _, written)) = self.current.as_mut() else {
            return Err(Error::io("write", self.mbox.path(), io::Error::other("no message begun")));
        };
        *written += chunk.len() as u64;
        file.write_all(chunk).map_err(|e| Error::io("spool for", self.mbox.path(), e))
    }

    fn stage(&mut self) -> Result<MessageId> {
        let Some((file, envelope, written)) = self.current.take() else {
            return Err(Error::io("stage", self.mbox.path(), io::Error::other("no message begun")));
        };
        self.staged_bytes += written;
        self.staged.push((file, envelope));
        self.staged_since.get_or_insert_with(Instant::now);
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }

    fn abort(&mut self) {
        self.current = None; // an unlinked spool: closing it is all
    }

    fn wants_seal(&self) -> bool {
        self.staged.len() >= self.limits.messages.min(MAX_BATCH_MESSAGES)
            || self.staged_bytes >= self.limits.bytes
            || self.staged_since.is_some_and(|t| t.elapsed() >= self.limits.age)
    }

    /// Appends the staged messages as one batch, now: it is settled when this returns.
    fn seal(&mut self) -> Result<()> {
        let mut hook = self.before_append.take();
        let mut no_hook = |_: &mut Append<'_>| Ok(());
        let result = match &mut hook {
            Some(hook) => self.seal_with(hook),
            None => self.seal_with(&mut no_hook),
        };
        self.before_append = hook;
        result
    }

    fn settled(&mut self, _wait: bool) -> Vec<Settled> {
        std::mem::take(&mut self.settled)
    }
}

impl MboxSink {
    /// [`Sink::seal`], giving the append to `hook` (instead of the one registered with
    /// [`MboxSink::before_append`]): for a caller whose record of the append borrows its
    /// own state.
    pub fn seal_with(&mut self, hook: &mut dyn FnMut(&mut Append<'_>) -> Result<()>) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let mut staged = std::mem::take(&mut self.staged);
        let ids = self.next_id - staged.len() as u64..self.next_id;
        self.staged_bytes = 0;
        self.staged_since = None;
        let path = self.mbox.path().to_path_buf();
        let result = (|| {
            for (spool, _) in &mut staged {
                spool.rewind().map_err(|e| Error::io("rewind spool for", &path, e))?;
            }
            let mut each: Vec<(&mut dyn io::Read, &Envelope)> =
                staged.iter_mut().map(|(f, e)| (f as &mut dyn io::Read, &*e)).collect();
            self.mbox.deliver_each(&mut each, hook)
        })();
        let count = (ids.end - ids.start) as usize;
        self.settled.push(Settled { ids, result: result.map(|()| vec![String::new(); count]) });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Maildrop;
    use std::io::Read;
    use std::sync::{Arc, Mutex};

    fn stage(sink: &mut MboxSink, body: &str, sender: &str) {
        let envelope = Envelope { sender: Some(sender.into()) };
        sink.begin(&Incoming { envelope, ..Incoming::default() }).unwrap();
        sink.write(body.as_bytes()).unwrap();
        sink.stage().unwrap();
    }

    #[test]
    fn a_batch_is_one_announced_append_settled_when_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail/inbox");
        let mut sink = MboxSink::open(&path, Modes::PRIVATE, BatchLimits::default()).unwrap();
        let appends = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&appends);
        sink.before_append(move |a| {
            let mut bytes = Vec::new();
            a.data.read_to_end(&mut bytes).unwrap();
            seen.lock().unwrap().push((a.offset, a.len, bytes));
            Ok(())
        });
        stage(&mut sink, "Subject: 1\n\nFrom me\n", "a@x");
        stage(&mut sink, "Subject: 2\n\nbody", "b@x");
        assert!(!path.exists(), "staged is not stored");
        sink.seal().unwrap();
        let settled = sink.settled(false);
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].ids, 0..2);
        settled[0].result.as_ref().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("From a@x "), "{text}");
        assert!(text.contains("\n>From me\n") && text.contains("\nFrom b@x "), "{text}");
        let recorded = appends.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!((recorded[0].0, recorded[0].1), (0, text.len() as u64));
        assert_eq!(recorded[0].2, text.as_bytes());
        let left: Vec<_> =
            dir.path().join("mail").read_dir().unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no spool left: {left:?}");
        let d = Mbox::new(&path).open().unwrap();
        assert_eq!(d.messages().len(), 2);
        let mut first = Vec::new();
        d.read_message(0).unwrap().read_to_end(&mut first).unwrap();
        assert_eq!(first, b"Subject: 1\n\nFrom me\n");
    }

    #[test]
    fn a_failed_append_settles_its_batch_as_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox");
        let mut sink = MboxSink::open(&path, Modes::PRIVATE, BatchLimits::default()).unwrap();
        sink.before_append(|_| Err(Error::io("record", "/state", io::Error::other("full"))));
        stage(&mut sink, "x\n", "a@x");
        sink.seal().unwrap();
        let settled = sink.finish().unwrap();
        assert_eq!(settled.len(), 1);
        assert!(settled[0].result.is_err());
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0), 0);
    }
}
