//! Local delivery: Maildir (idempotent, named after the account and UIDL), mbox or an MDA
//! command. Maildir and mbox go through `pop3-storage`'s durable delivery sinks: this module
//! knows nothing of `tmp/`, `new/`, `O_TMPFILE` or fsync, only of staging, sealing and
//! settling (see `docs/storage.md`, "Delivery sinks").
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
//! mbox deliveries use group commit. Maildir: the storage sink persists a sealed batch in a
//! thread of its own while the next one downloads, and records its messages in the ledger from
//! that thread ([`MaildirSink::after_commit`]) once they are durable and named; a Maildir
//! message is named after the account and UIDL (its key), so a later run finds it instead of
//! storing it twice (see `docs/client.md`). mbox: a sealed batch is persisted as one locked,
//! journalled, synced append, announced in the ledger beforehand (offset, length, SHA-256 of
//! the bytes) so that after a crash [`mbox_append_present`] can tell whether it happened.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use pop3_storage::sink::{BatchLimits, Begun, Incoming, MaildirSink, MboxSink, MessageId};
use pop3_storage::sink::{Settled as Stored, Sink as StorageSink};
use sha2::{Digest, Sha256};

use crate::ledger::{Parcel, Recorder, Settled};
use crate::relay::{Protocol, Relay, Session, Transfer};
use crate::sink::{Message, Sink};

pub use pop3_storage::sink::Modes;

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
    /// A mail server over LMTP or SMTP: delivered once it answered 250 (see `relay.rs`).
    Relay(Relay),
}

impl Target {
    /// Parses `maildir:DIR`, `mbox:FILE`, `mda:COMMAND` (`~/` expanded), `lmtp:HOST:PORT`,
    /// `lmtp:/PATH/TO/SOCKET` or `smtp:HOST[:PORT]` (a relay's envelope is set afterwards).
    pub fn parse(text: &str) -> Result<Self, String> {
        let expand = |p: &str| -> PathBuf {
            match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => Path::new(&home).join(rest),
                _ => PathBuf::from(p),
            }
        };
        let expected = || {
            format!(
                "{text:?}: expected maildir:DIR, mbox:FILE, mda:COMMAND, lmtp:HOST:PORT, \
                 lmtp:/PATH/TO/SOCKET or smtp:HOST[:PORT]"
            )
        };
        let (kind, rest) = text.split_once(':').ok_or_else(expected)?;
        if rest.is_empty() {
            return Err(expected());
        }
        match kind {
            "maildir" => Ok(Self::Maildir(expand(rest))),
            "mbox" => Ok(Self::Mbox(expand(rest))),
            "mda" => Ok(Self::Mda(rest.to_owned())),
            "lmtp" => Relay::parse(Protocol::Lmtp, rest)
                .map(Self::Relay)
                .map_err(|e| format!("{text:?}: {e}")),
            "smtp" => Relay::parse(Protocol::Smtp, rest)
                .map(Self::Relay)
                .map_err(|e| format!("{text:?}: {e}")),
            _ => Err(expected()),
        }
    }
}

/// The storage sink of a Maildir or mbox target.
#[derive(Debug)]
pub(crate) enum Store {
    // Boxed: the sinks hold their batch state (hundreds of bytes), the enum only a pointer.
    Maildir(Box<MaildirSink>),
    Mbox(Box<MboxSink>),
}

impl Store {
    fn sink(&mut self) -> &mut dyn StorageSink {
        match self {
            Store::Maildir(sink) => sink.as_mut(),
            Store::Mbox(sink) => sink.as_mut(),
        }
    }
}

/// The storage sink, shared by the [`Deliverer`] and the [`Delivery`] being written into it.
type SharedStore = Arc<Mutex<Store>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is one call that leaves its state whole, so a poisoned
    // lock is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A storage error as the retriever reports it.
fn io_error(e: pop3_storage::Error) -> io::Error {
    match &e {
        pop3_storage::Error::Io { source, .. } => io::Error::new(source.kind(), e.to_string()),
        _ => io::Error::other(e.to_string()),
    }
}

/// Staged messages by sink id, until their batch is settled. Shared with the thread that
/// persists a Maildir batch, which records them.
type Parcels = Arc<Mutex<BTreeMap<MessageId, Parcel>>>;

/// Maildir batches recorded by the persisting thread, by their first id, until the storage
/// sink reports them settled.
type Recorded = Arc<Mutex<BTreeMap<MessageId, Settled>>>;

/// A prepared target for one run.
#[derive(Debug)]
pub struct Deliverer {
    target: Target,
    account: String,
    /// The storage sink (Maildir and mbox targets).
    store: Option<SharedStore>,
    /// Where settled messages are recorded.
    recorder: Arc<Recorder>,
    parcels: Parcels,
    recorded: Recorded,
    /// Settled batches not yet handed out by [`Sink::settled`], oldest first.
    settled: VecDeque<Settled>,
    /// The connection to a relay target's mail server, once made.
    session: Option<Session>,
}

/// One message being delivered.
#[derive(Debug)]
pub enum Delivery {
    /// Already in the Maildir (an earlier run delivered it and died before saving state).
    Present { uid: String },
    /// Being written into the storage sink.
    Stored { store: SharedStore, uid: String, lf: ToLf },
    /// Feeding an MDA.
    Mda { child: Child, uid: String, lf: ToLf },
    /// Streamed to a mail server (its envelope sender comes from its header).
    Relayed { uid: String, transfer: Transfer },
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

/// The parcels of `ids`, taken out of `parcels` (those already taken are skipped).
fn take_parcels(parcels: &Parcels, ids: std::ops::Range<MessageId>) -> Vec<Parcel> {
    let mut parcels = lock(parcels);
    ids.filter_map(|id| parcels.remove(&id)).collect()
}

impl Deliverer {
    /// Prepares `target` for `account`, creating a missing Maildir (or an mbox's missing
    /// directory) and message files with `modes`; batches hold up to `batch_messages`
    /// messages. Settled messages are recorded through `recorder`.
    pub fn new(
        target: Target,
        account: &str,
        batch_messages: usize,
        recorder: Recorder,
        modes: Modes,
    ) -> io::Result<Self> {
        let recorder = Arc::new(recorder);
        let parcels = Parcels::default();
        let recorded = Recorded::default();
        let limits = BatchLimits { messages: batch_messages, ..BatchLimits::default() };
        let store = match &target {
            Target::Maildir(dir) => {
                let mut sink = MaildirSink::open(dir, modes, limits).map_err(io_error)?;
                // Records each persisted batch in the ledger from the persisting thread.
                let (recorder, parcels, done) =
                    (Arc::clone(&recorder), Arc::clone(&parcels), Arc::clone(&recorded));
                sink.after_commit(move |ids| {
                    let first = ids.start;
                    let settled = recorder.settle(take_parcels(&parcels, ids), Ok(()));
                    let durable = settled.is_durable();
                    lock(&done).insert(first, settled);
                    if durable {
                        Ok(())
                    } else {
                        Err(io::Error::other("the ledger could not record the batch"))
                    }
                });
                Some(Store::Maildir(Box::new(sink)))
            }
            Target::Mbox(path) => {
                Some(Store::Mbox(Box::new(MboxSink::open(path, modes, limits).map_err(io_error)?)))
            }
            Target::Mda(_) | Target::Relay(_) => None,
        };
        Ok(Self {
            target,
            account: account.to_owned(),
            store: store.map(|s| Arc::new(Mutex::new(s))),
            recorder,
            parcels,
            recorded,
            settled: VecDeque::new(),
            session: None,
        })
    }

    /// The key of a message in the Maildir: stable for one account and UIDL, so a message
    /// delivered before a crash is recognised instead of delivered twice.
    fn key(&self, uid: &str) -> String {
        let digest = Sha256::digest(format!("{}\0{uid}", self.account).as_bytes());
        let hash = pop3_client::hex(&digest[..10]);
        format!("P3U{hash}")
    }

    /// Queues the batches the storage sink settled: a Maildir batch as the persisting thread
    /// recorded it; one it could not persist, or an mbox batch, recorded here (as not stored
    /// if it failed).
    fn note(&mut self, batches: Vec<Stored>) {
        for batch in batches {
            if let Some(recorded) = lock(&self.recorded).remove(&batch.ids.start) {
                self.settled.push_back(recorded);
                continue;
            }
            let parcels = take_parcels(&self.parcels, batch.ids);
            let result = batch.result.map(drop).map_err(io_error);
            self.settled.push_back(self.recorder.settle(parcels, result));
        }
    }

    /// Appends the staged mbox batch, announced in the ledger beforehand (offset, length and
    /// SHA-256 of the bytes, recorded under the mbox's locks before the mbox is touched):
    /// settled at once.
    fn seal_mbox(&mut self, sink: &mut MboxSink) {
        let path = sink.path().to_owned();
        let (recorder, parcels) = (&self.recorder, &self.parcels);
        let mut announce = |append: &mut pop3_storage::Append<'_>| {
            let parcels = lock(parcels);
            let uids = parcels.values().map(|p| p.uid.as_str());
            let digest = sha256_hex(append.data)
                .and_then(|d| recorder.announce(append.offset, append.len, &d, uids));
            digest.map_err(|source| pop3_storage::Error::Io {
                op: "record the append in the state",
                path: path.clone(),
                source,
            })
        };
        if let Err(e) = sink.seal_with(&mut announce) {
            self.settled.push_back(self.recorder.settle(Vec::new(), Err(io_error(e))));
        }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.quit();
        }
    }
}

impl Sink for Deliverer {
    type Message = Delivery;

    fn start(&mut self, uid: &str, seen: u64) -> io::Result<Delivery> {
        let uid = uid.to_owned();
        match (&self.target, &self.store) {
            (Target::Mda(command), _) => {
                let child = Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()?;
                Ok(Delivery::Mda { child, uid, lf: ToLf::default() })
            }
            (Target::Relay(relay), _) => {
                // Connected before the first message: a server that cannot be reached ends
                // the run (an error) instead of failing every message in turn.
                // A connection that broke is made again for the next message.
                let session = match self.session.take() {
                    Some(session) => session,
                    None => Session::connect(&relay.endpoint, relay.protocol, relay.timeout)
                        .map_err(|e| io::Error::new(e.kind(), format!("mail server: {e}")))?,
                };
                let transfer = session.begin(&relay.sender, &relay.recipient);
                Ok(Delivery::Relayed { uid, transfer })
            }
            (_, Some(store)) => {
                let incoming = Incoming {
                    key: Some(self.key(&uid)),
                    received: Some(seen),
                    ..Incoming::default()
                };
                match lock(store).sink().begin(&incoming).map_err(io_error)? {
                    Begun::AlreadyStored => Ok(Delivery::Present { uid }),
                    Begun::New => {
                        let store = Arc::clone(store);
                        Ok(Delivery::Stored { store, uid, lf: ToLf::default() })
                    }
                }
            }
            (_, None) => Err(io::Error::other("closed")),
        }
    }

    /// An mbox or Maildir message waits for its batch; an MDA one (the MDA exited 0) and one
    /// present already are settled (recorded) now.
    fn stage(&mut self, mut delivery: Delivery, octets: u64) -> io::Result<()> {
        delivery.flush_line_end()?;
        let parcel = match delivery {
            Delivery::Present { uid } => Parcel { uid, octets },
            Delivery::Stored { store, uid, .. } => {
                let id = lock(&store).sink().stage().map_err(io_error)?;
                lock(&self.parcels).insert(id, Parcel { uid, octets });
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
            Delivery::Relayed { uid, transfer } => {
                // Ok once the server answered 250; the session is kept unless it broke.
                let (session, outcome) = transfer.finish();
                self.session = session;
                outcome.map_err(|refused| io::Error::other(refused.to_string()))?;
                Parcel { uid, octets }
            }
        };
        // Recorded (synced) at once: the window in which a crash delivers a message twice
        // is from the server's commit to this record (see docs/client.md).
        self.settled.push_back(self.recorder.settle(vec![parcel], Ok(())));
        Ok(())
    }

    /// Its Maildir file is removed, its MDA killed, its mail server connection closed before
    /// the end of the data (the server keeps nothing of it).
    fn abort(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Stored { store, .. } => lock(&store).sink().abort(),
            Delivery::Mda { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Delivery::Relayed { transfer, .. } => self.session = transfer.abandon(),
            Delivery::Present { .. } => {}
        }
    }

    /// The storage sink's group commit: the staged batch is big or old enough, or (Maildir)
    /// nothing is being persisted, so that a batch is always under way while mail arrives and
    /// each batch holds what arrived during the one before.
    fn should_seal(&self) -> bool {
        self.store.as_ref().is_some_and(|store| lock(store).sink().wants_seal())
    }

    /// mbox: the batch is appended now. Maildir: the batch is persisted by a thread of its
    /// own while the next one downloads, after waiting for the batch sealed before it: one
    /// batch in flight at a time.
    fn seal(&mut self) {
        let Some(store) = self.store.clone() else { return };
        let mut store = lock(&store);
        let (batches, failed) = match &mut *store {
            Store::Mbox(sink) => {
                self.seal_mbox(sink);
                (sink.settled(false), None)
            }
            // What settles is the batch in flight, waited for; the new one settles later.
            Store::Maildir(sink) => (sink.settled(true), sink.seal().err()),
        };
        drop(store);
        self.note(batches);
        if let Some(e) = failed {
            self.settled.push_back(self.recorder.settle(Vec::new(), Err(io_error(e))));
        }
    }

    fn seal_and_wait(&mut self) {
        self.seal();
        if let Some(store) = self.store.clone() {
            let batches = lock(&store).sink().settled(true);
            self.note(batches);
        }
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
            Self::Stored { store, lf, .. } => {
                lock(store).sink().write(lf.convert(data)).map_err(io_error)
            }
            Self::Mda { child, lf, .. } => match child.stdin.as_mut() {
                Some(stdin) => io::Write::write_all(stdin, lf.convert(data)),
                None => Err(io::ErrorKind::BrokenPipe.into()),
            },
            // As received: SMTP wants CRLF.
            Self::Relayed { transfer, .. } => transfer.write(data),
        }
    }
}

impl Delivery {
    /// Writes a CR held back at the end of the last chunk.
    fn flush_line_end(&mut self) -> io::Result<()> {
        match self {
            Self::Present { .. } | Self::Relayed { .. } => Ok(()),
            Self::Stored { store, lf, .. } => {
                lock(store).sink().write(lf.finish()).map_err(io_error)
            }
            Self::Mda { child, lf, .. } => match child.stdin.as_mut() {
                Some(stdin) => io::Write::write_all(stdin, lf.finish()),
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
    Ok(pop3_client::hex(&hasher.finalize()))
}

/// True if the mbox at `path` holds, at `offset`, the `len` octets whose SHA-256 is `digest`:
/// an announced append that took place (after a crash, an append that did not complete was
/// rolled back by the mbox's journal before this reads).
pub fn mbox_append_present(path: &Path, offset: u64, len: u64, digest: &str) -> io::Result<bool> {
    let mut hasher = Sha256::new();
    let present = pop3_storage::Mbox::new(path)
        .read_range(offset, len, &mut |chunk| hasher.update(chunk))
        .map_err(|e| io::Error::other(e.to_string()))?;
    let found = pop3_client::hex(&hasher.finalize());
    Ok(present && found == digest)
}

#[cfg(test)]
mod tests {
    use super::{Deliverer, Modes, Target, ToLf};
    use crate::ledger::Settled;
    use crate::sink::{Message, Sink};
    use std::path::{Path, PathBuf};

    use pop3_testkit::file_names as names;

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
        let deliverer = Deliverer::new(target, "acct", 1000, recorder, Modes::PRIVATE).unwrap();
        {
            let mut store = super::lock(deliverer.store.as_ref().unwrap());
            let super::Store::Maildir(sink) = &mut *store else { unreachable!("a Maildir") };
            assert!(named || sink.writes_unnamed_files(), "O_TMPFILE works in the test's tmp dir");
            if named {
                sink.use_named_files();
            }
        }
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
