//! Maildir maildrops (the INBOX of a Maildir or Maildir++ directory) and Maildir delivery.
//!
//! * Messages are the regular files in `new/` and `cur/` whose names do not begin with `.`;
//!   `tmp/`, dotfiles and Maildir++ subfolders (`.Folder/`) are ignored.
//! * A file name is `BASE` or `BASE:2,FLAGS`. `BASE` never changes while the message exists
//!   (moving from `new/` to `cur/` and changing flags only change the part after `:`), so it
//!   is the UIDL: verbatim when it is 1–70 characters in 0x21–0x7E and does not begin with
//!   `~`, otherwise `~` followed by 32 hex digits of its FNV-1a-128 hash.
//! * Size: a `,W=<n>` field of `BASE` (the CRLF size Dovecot and our delivery write), else the
//!   size cache `.pop3-storage.sizes`, else the message is read once and the cache updated.
//! * Order: by the delivery time in `BASE` (leading seconds, then the microseconds of an
//!   `M<usec>` field), then by `BASE`.
//! * Locking: an exclusive `flock` on `.pop3-storage.lock` in the Maildir.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::IoContext;
use crate::lock::FlockFile;
use crate::util::{failpoint, fnv64, maildir_hostname, Fnv128};
use crate::{
    is_valid_uidl, Envelope, Error, Maildrop, MessageInfo, MessageReader, PathTemplate, Result,
    SizeCounter, Store, CHUNK,
};

/// The lock file inside the Maildir (a dotfile, so other Maildir readers ignore it).
pub const LOCK_FILE: &str = ".pop3-storage.lock";
/// The size cache inside the Maildir.
pub const CACHE_FILE: &str = ".pop3-storage.sizes";
const CACHE_TMP: &str = ".pop3-storage.sizes.tmp";
const CACHE_MAGIC: &[u8] = b"pop3-storage-sizes 1\n";

/// What [`Maildrop::commit`] does with a deleted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteMode {
    /// Unlink the file (the default).
    #[default]
    Unlink,
    /// Keep the file but move it to `cur/` with the `T` (trashed) flag, for an IMAP server
    /// or a cleanup job to expunge. Trashed messages are not part of later POP3 snapshots.
    MarkTrashed,
}

/// Options of a [`Maildir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaildirOptions {
    /// What commit does with deleted messages.
    pub delete: DeleteMode,
    /// Create `new/`, `cur/` and `tmp/` (mode 0700) on open or delivery if missing.
    pub create: bool,
}

impl Default for MaildirOptions {
    fn default() -> Self {
        Self { delete: DeleteMode::Unlink, create: true }
    }
}

/// A Maildir directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maildir {
    root: PathBuf,
    options: MaildirOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    New,
    Cur,
}

impl Sub {
    fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    sub: Sub,
    name: OsString,
    /// `name[..base_len]` is BASE.
    base_len: usize,
    /// The `,W=` field of BASE.
    w: Option<u64>,
    /// Stored length, when known (from `,S=` or the cache or reading); checked on read.
    raw_len: Option<u64>,
}

impl Entry {
    fn base(&self) -> &[u8] {
        &self.name.as_bytes()[..self.base_len]
    }
}

/// The part of a Maildir file name before the `:2,` info.
fn base_of(name: &[u8]) -> &[u8] {
    match memchr::memchr(b':', name) {
        Some(i) => &name[..i],
        None => name,
    }
}

/// The numeric value of a `,<key>=<digits>` field of a base name.
fn field(base: &[u8], key: u8) -> Option<u64> {
    base.split(|&b| b == b',').skip(1).find_map(|f| {
        let v = f.strip_prefix(&[key, b'='][..])?;
        std::str::from_utf8(v).ok()?.parse().ok()
    })
}

/// Delivery-order key: leading seconds, then the microseconds of an `M<usec>` field.
fn order_key(base: &[u8]) -> (u64, u64) {
    let digits = |s: &[u8]| -> Option<u64> {
        let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&s[..n]).ok()?.parse().ok()
    };
    let secs = digits(base).unwrap_or(0);
    let usec = base
        .split(|&b| b == b'.')
        .nth(1)
        .and_then(|seg| {
            let m = memchr::memchr(b'M', seg)?;
            digits(&seg[m + 1..])
        })
        .unwrap_or(0);
    (secs, usec)
}

/// The UIDL for a base name (see the [module docs](self)).
pub fn uidl_for_base(base: &[u8]) -> String {
    match std::str::from_utf8(base) {
        Ok(s) if is_valid_uidl(s) && !s.starts_with('~') => s.to_owned(),
        _ => hashed_uidl(base),
    }
}

fn hashed_uidl(bytes: &[u8]) -> String {
    let mut h = Fnv128::new();
    h.update(bytes);
    format!("~{}", h.hex())
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path).and_then(|d| d.sync_all()).ctx("fsync directory", path)
}

impl Maildir {
    /// The Maildir at `root`, with default options.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_options(root, MaildirOptions::default())
    }

    /// The Maildir at `root`.
    pub fn with_options(root: impl Into<PathBuf>, options: MaildirOptions) -> Self {
        Self { root: root.into(), options }
    }

    /// The Maildir's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Creates the directory with `new/`, `cur/` and `tmp/` (mode 0700) where missing.
    pub fn create_dirs(&self) -> Result<()> {
        for sub in ["", "new", "cur", "tmp"] {
            let p = self.root.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .ctx("create directory", &p)?;
        }
        Ok(())
    }

    fn ensure_dirs(&self) -> Result<()> {
        if self.options.create && !self.root.join("cur").is_dir() {
            self.create_dirs()?;
        }
        Ok(())
    }

    /// Locks the Maildir and takes a snapshot of `new/` and `cur/`.
    pub fn open(&self) -> Result<MaildirDrop> {
        self.ensure_dirs()?;
        let lock = FlockFile::acquire(&self.root.join(LOCK_FILE), &self.root)?;
        let mut entries = Vec::new();
        for sub in [Sub::New, Sub::Cur] {
            scan(&self.root, sub, &mut entries)?;
        }
        // Keys computed once per entry, not per comparison.
        let mut keyed: Vec<(u64, u64, u32)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (secs, usec) = order_key(e.base());
                (secs, usec, i as u32)
            })
            .collect();
        keyed.sort_unstable_by(|&(sa, ua, a), &(sb, ub, b)| {
            let (a, b) = (&entries[a as usize], &entries[b as usize]);
            (sa, ua)
                .cmp(&(sb, ub))
                .then_with(|| a.base().cmp(b.base()))
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
        let mut entries: Vec<Entry> =
            keyed.iter().filter_map(|&(_, _, i)| slots[i as usize].take()).collect();

        let mut cache = SizeCache::load(&self.root);
        let mut sizes = Vec::with_capacity(entries.len());
        for e in &mut entries {
            let size = match e.w {
                Some(w) => {
                    e.raw_len = field(e.base(), b'S');
                    w
                }
                None => match cache.get(e.base()) {
                    Some((size, raw)) => {
                        e.raw_len = Some(raw);
                        size
                    }
                    None => {
                        let path = self.root.join(e.sub.dir()).join(&e.name);
                        let (size, raw) = match measure(&path) {
                            Ok(m) => m,
                            // Removed by another program since the scan: leave it out.
                            Err(Error::Io { source, .. })
                                if source.kind() == io::ErrorKind::NotFound =>
                            {
                                sizes.push(None);
                                continue;
                            }
                            Err(e) => return Err(e),
                        };
                        e.raw_len = Some(raw);
                        cache.insert(e.base(), size, raw);
                        size
                    }
                },
            };
            sizes.push(Some(size));
        }
        let (entries, sizes): (Vec<Entry>, Vec<u64>) =
            entries.into_iter().zip(sizes).filter_map(|(e, s)| Some((e, s?))).unzip();
        let cached: Vec<(&[u8], u64, u64)> = entries
            .iter()
            .zip(&sizes)
            .filter(|(e, _)| e.w.is_none())
            .filter_map(|(e, &size)| Some((e.base(), size, e.raw_len?)))
            .collect();
        // The cache is an optimisation: failing to write it (full disk, read-only Maildir)
        // must not keep the user from their mail.
        let _ = cache.save_if_dirty(&self.root, &cached);
        drop(cached);

        let mut seen = HashSet::with_capacity(entries.len());
        let infos = entries
            .iter()
            .zip(sizes)
            .map(|(e, size)| {
                let mut uidl = uidl_for_base(e.base());
                // Distinct bases give distinct UIDLs (verbatim ones are the base, hashed ones
                // start with `~`, which verbatim ones never do), so only a repeated base needs
                // a second look.
                if !seen.insert(e.base()) {
                    // The same BASE in new/ and cur/ (a crashed mover): both are served, the
                    // second under a name-derived UIDL.
                    let mut full = e.sub.dir().as_bytes().to_vec();
                    full.push(b'/');
                    full.extend_from_slice(e.name.as_bytes());
                    uidl = hashed_uidl(&full);
                }
                MessageInfo { size, uidl }
            })
            .collect();
        Ok(MaildirDrop {
            root: self.root.clone(),
            options: self.options,
            lock: Some(lock),
            entries,
            infos,
        })
    }

    /// Delivers a message: writes it to `tmp/` under a unique name, fsyncs it, links it into
    /// `new/` as `NAME,S=<stored size>,W=<RFC 1939 size>`, removes the `tmp/` name and fsyncs
    /// `new/`. Returns the file name in `new/`.
    ///
    /// Delivery does not take the maildrop lock: a Maildir needs none, and a message
    /// delivered during a POP3 session is simply not part of that session's snapshot.
    pub fn deliver(&self, message: &mut dyn Read) -> Result<String> {
        self.ensure_dirs()?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            maildir_hostname()
        );
        let tmp = self.root.join("tmp").join(&name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .ctx("create", &tmp)?;
        let result = (|| {
            let mut counter = SizeCounter::new();
            let mut buf = vec![0; CHUNK];
            loop {
                let n = match message.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read message for", &tmp, e)),
                };
                counter.update(&buf[..n]);
                file.write_all(&buf[..n]).ctx("write", &tmp)?;
            }
            failpoint("maildir.deliver.written");
            file.sync_all().ctx("fsync", &tmp)?;
            failpoint("maildir.deliver.synced");
            Ok(format!("{name},S={},W={}", counter.stored_len(), counter.finish()))
        })();
        let final_name = match result {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let dest = self.root.join("new").join(&final_name);
        // link(2) never replaces an existing file (rename would).
        if let Err(e) = fs::hard_link(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("link into new/", &dest, e));
        }
        failpoint("maildir.deliver.linked");
        let _ = fs::remove_file(&tmp);
        sync_dir(&self.root.join("new"))?;
        failpoint("maildir.deliver.done");
        Ok(final_name)
    }
}

/// Appends the messages of `root/sub` to `out`.
fn scan(root: &Path, sub: Sub, out: &mut Vec<Entry>) -> Result<()> {
    let dir = root.join(sub.dir());
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound && sub == Sub::New => return Ok(()),
        Err(e) => return Err(Error::io("read directory", &dir, e)),
    };
    for item in rd {
        let item = item.ctx("read directory", &dir)?;
        let name = item.file_name();
        if name.as_bytes().first() == Some(&b'.') {
            continue;
        }
        let ft = item.file_type().ctx("stat", &item.path())?;
        let is_file = if ft.is_symlink() {
            fs::metadata(item.path()).is_ok_and(|m| m.is_file())
        } else {
            ft.is_file()
        };
        if !is_file {
            continue;
        }
        if sub == Sub::Cur && trashed(name.as_bytes()) {
            continue;
        }
        let base = base_of(name.as_bytes());
        out.push(Entry { sub, base_len: base.len(), w: field(base, b'W'), name, raw_len: None });
    }
    Ok(())
}

/// Whether a `cur/` name carries the `T` (trashed) flag.
fn trashed(name: &[u8]) -> bool {
    match memchr::memchr(b':', name) {
        Some(i) => name[i..].starts_with(b":2,") && name[i + 3..].contains(&b'T'),
        None => false,
    }
}

/// Reads a message once: (RFC 1939 size, stored length).
fn measure(path: &Path) -> Result<(u64, u64)> {
    let mut f = File::open(path).ctx("open", path)?;
    let mut counter = SizeCounter::new();
    let mut buf = vec![0; CHUNK];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => counter.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    Ok((counter.finish(), counter.stored_len()))
}

/// The per-Maildir size cache (format in `docs/storage.md`):
///
/// ```text
/// pop3-storage-sizes 1
/// <rfc1939 size> <stored length> <BASE>
/// ...
/// checksum <16 hex digits: FNV-1a-64 of every byte above this line>
/// ```
#[derive(Debug, Default)]
struct SizeCache {
    /// The cache file as read.
    bytes: Vec<u8>,
    /// (start, end of BASE in `bytes`, size, stored length), in file order.
    lines: Vec<(usize, usize, u64, u64)>,
    /// Next line to try: the cache is written in snapshot order, so a warm open matches it
    /// line by line without hashing.
    cursor: usize,
    /// Built on the first out-of-order lookup.
    index: Option<HashMap<Vec<u8>, usize>>,
    /// Entries computed by this open.
    added: HashMap<Vec<u8>, (u64, u64)>,
    used: usize,
    dirty: bool,
}

impl SizeCache {
    fn load(root: &Path) -> Self {
        let mut cache = Self::default();
        match fs::read(root.join(CACHE_FILE)) {
            Ok(bytes) => match Self::parse(&bytes) {
                Some(lines) => {
                    cache.lines = lines;
                    cache.bytes = bytes;
                }
                None => cache.dirty = true, // corrupt: rebuild
            },
            Err(_) => cache.dirty = true,
        }
        cache
    }

    fn parse(bytes: &[u8]) -> Option<Vec<(usize, usize, u64, u64)>> {
        let body = bytes.strip_prefix(CACHE_MAGIC)?;
        let trailer_at = body.len().checked_sub(26)?; // "checksum " + 16 + "\n"
        let (lines, trailer) = body.split_at(trailer_at);
        let sum = trailer.strip_prefix(b"checksum ")?.strip_suffix(b"\n")?;
        let sum = u64::from_str_radix(std::str::from_utf8(sum).ok()?, 16).ok()?;
        if sum != fnv64(&bytes[..CACHE_MAGIC.len() + trailer_at]) {
            return None;
        }
        let num = |p: &[u8]| -> Option<u64> {
            if p.is_empty() || p.len() > 19 || !p.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(p.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
        };
        let mut out = Vec::with_capacity(lines.len() / 64);
        let mut at = CACHE_MAGIC.len();
        for line in lines.split(|&b| b == b'\n') {
            let start = at;
            at += line.len() + 1;
            if line.is_empty() {
                continue;
            }
            let sp1 = memchr::memchr(b' ', line)?;
            let sp2 = sp1 + 1 + memchr::memchr(b' ', &line[sp1 + 1..])?;
            let size = num(&line[..sp1])?;
            let raw = num(&line[sp1 + 1..sp2])?;
            if sp2 + 1 == line.len() {
                return None;
            }
            out.push((start + sp2 + 1, start + line.len(), size, raw));
        }
        Some(out)
    }

    fn get(&mut self, base: &[u8]) -> Option<(u64, u64)> {
        let line = match self.lines.get(self.cursor) {
            Some(&(s, e, ..)) if &self.bytes[s..e] == base => Some(self.cursor),
            _ => {
                let index = self.index.get_or_insert_with(|| {
                    self.lines
                        .iter()
                        .enumerate()
                        .map(|(i, &(s, e, ..))| (self.bytes[s..e].to_vec(), i))
                        .collect()
                });
                index.get(base).copied()
            }
        };
        if let Some(i) = line {
            self.cursor = i + 1;
            self.used += 1;
            let (_, _, size, raw) = self.lines[i];
            return Some((size, raw));
        }
        let hit = self.added.get(base).copied();
        if hit.is_some() {
            self.used += 1;
        }
        hit
    }

    fn insert(&mut self, base: &[u8], size: u64, raw: u64) {
        if !base.contains(&b'\n') {
            self.added.insert(base.to_vec(), (size, raw));
            self.dirty = true;
        }
    }

    /// Rewrites the cache with exactly `entries` when anything changed: new entries, entries
    /// for messages that no longer exist (stale), or a corrupt or missing file. Written to a
    /// temporary file, fsynced and renamed over the old one, so a reader sees the old or the
    /// new cache, never a mix; a torn file fails its checksum and is rebuilt.
    fn save_if_dirty(&self, root: &Path, entries: &[(&[u8], u64, u64)]) -> Result<()> {
        if !self.dirty && self.used == self.lines.len() {
            return Ok(());
        }
        let mut out = Vec::with_capacity(CACHE_MAGIC.len() + entries.len() * 80 + 26);
        out.extend_from_slice(CACHE_MAGIC);
        for (base, size, raw) in entries {
            if base.contains(&b'\n') {
                continue;
            }
            out.extend_from_slice(format!("{size} {raw} ").as_bytes());
            out.extend_from_slice(base);
            out.push(b'\n');
        }
        let sum = fnv64(&out);
        out.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
        let tmp = root.join(CACHE_TMP);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .ctx("create", &tmp)?;
        f.write_all(&out).ctx("write", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
        let dest = root.join(CACHE_FILE);
        fs::rename(&tmp, &dest).ctx("rename size cache to", &dest)?;
        Ok(())
    }
}

/// An open Maildir maildrop (see [`Maildir::open`]).
#[derive(Debug)]
pub struct MaildirDrop {
    root: PathBuf,
    options: MaildirOptions,
    lock: Option<FlockFile>,
    entries: Vec<Entry>,
    infos: Vec<MessageInfo>,
}

impl MaildirDrop {
    fn live(&self) -> Result<()> {
        if self.lock.is_none() {
            return Err(Error::Committed);
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<&Entry> {
        self.live()?;
        self.entries.get(index).ok_or(Error::NoSuchMessage(index))
    }

    /// Where message `index` is now: its snapshot path, or, if another program moved it
    /// (`new/` → `cur/`, flag change), wherever a file with the same BASE is. `None` if gone.
    fn locate(&self, e: &Entry) -> Result<Option<PathBuf>> {
        let path = self.root.join(e.sub.dir()).join(&e.name);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Ok(Some(path)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("stat", &path, err)),
        }
        for sub in [Sub::New, Sub::Cur] {
            let dir = self.root.join(sub.dir());
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(Error::io("read directory", &dir, err)),
            };
            for item in rd {
                let item = item.ctx("read directory", &dir)?;
                if base_of(item.file_name().as_bytes()) == e.base() {
                    return Ok(Some(item.path()));
                }
            }
        }
        Ok(None)
    }

    fn gone(&self, index: usize) -> Error {
        Error::MessageGone { index, uidl: self.infos[index].uidl.clone() }
    }

    /// The path of the Maildir.
    pub fn path(&self) -> &Path {
        &self.root
    }
}

impl Maildrop for MaildirDrop {
    fn messages(&self) -> &[MessageInfo] {
        &self.infos
    }

    fn read_message(&self, index: usize) -> Result<MessageReader<'_>> {
        let e = self.entry(index)?;
        let Some(path) = self.locate(e)? else {
            return Err(self.gone(index));
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(self.gone(index)),
            Err(err) => return Err(Error::io("open", &path, err)),
        };
        if let Some(raw) = e.raw_len {
            let len = file.metadata().ctx("stat", &path)?.len();
            if len != raw {
                // Maildir messages are immutable; one that changed makes our size a lie.
                // Drop the cache so the next open measures again.
                let _ = fs::remove_file(self.root.join(CACHE_FILE));
                return Err(Error::Corrupt {
                    path,
                    reason: format!(
                        "message file is {len} octets, {raw} when its size was computed \
                         (size cache invalidated)"
                    ),
                });
            }
        }
        Ok(MessageReader::file(file))
    }

    fn commit(&mut self, deleted: &[usize]) -> Result<()> {
        self.live()?;
        if let Some(&bad) = deleted.iter().find(|&&i| i >= self.entries.len()) {
            return Err(Error::NoSuchMessage(bad));
        }
        let mut deleted = deleted.to_vec();
        deleted.sort_unstable();
        deleted.dedup();
        for &i in &deleted {
            let e = &self.entries[i];
            let Some(path) = self.locate(e)? else {
                continue; // already removed by someone else: nothing to do
            };
            match self.options.delete {
                DeleteMode::Unlink => match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(Error::io("unlink", &path, err)),
                },
                DeleteMode::MarkTrashed => {
                    let name = path.file_name().unwrap_or_default().as_bytes();
                    let mut flags: Vec<u8> = memchr::memmem::find(name, b":2,")
                        .map(|at| name[at + 3..].to_vec())
                        .unwrap_or_default();
                    flags.push(b'T');
                    flags.sort_unstable();
                    flags.dedup();
                    let mut new_name = e.base().to_vec();
                    new_name.extend_from_slice(b":2,");
                    new_name.extend_from_slice(&flags);
                    let dest = self.root.join("cur").join(OsString::from_vec(new_name));
                    match fs::rename(&path, &dest) {
                        Ok(()) => {}
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                        Err(err) => return Err(Error::io("rename to trashed", &path, err)),
                    }
                }
            }
            failpoint("maildir.commit.removed-one");
        }
        sync_dir(&self.root.join("new"))?;
        sync_dir(&self.root.join("cur"))?;
        failpoint("maildir.commit.synced");
        self.lock = None;
        Ok(())
    }
}

/// A store of Maildirs, one per user, found through a [`PathTemplate`].
#[derive(Debug, Clone)]
pub struct MaildirStore {
    template: PathTemplate,
    options: MaildirOptions,
}

impl MaildirStore {
    /// Users' Maildirs at `template` (e.g. `/home/{user}/Maildir`).
    pub fn new(template: PathTemplate, options: MaildirOptions) -> Self {
        Self { template, options }
    }

    /// The Maildir of `user`.
    pub fn maildir(&self, user: &str) -> Result<Maildir> {
        Ok(Maildir::with_options(self.template.path_for(user)?, self.options))
    }
}

impl Store for MaildirStore {
    fn open(&self, user: &str) -> Result<Box<dyn Maildrop>> {
        Ok(Box::new(self.maildir(user)?.open()?))
    }

    fn deliver(&self, user: &str, message: &mut dyn Read, _envelope: &Envelope) -> Result<()> {
        self.maildir(user)?.deliver(message).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn name_parsing() {
        assert_eq!(base_of(b"123.M1P2.h,S=10,W=12:2,S"), b"123.M1P2.h,S=10,W=12");
        assert_eq!(field(b"123.M1P2.h,S=10,W=12", b'W'), Some(12));
        assert_eq!(field(b"123.M1P2.h,S=10,W=12", b'S'), Some(10));
        assert_eq!(field(b"123.M1P2.h", b'W'), None);
        assert_eq!(field(b"123.M1P2.h,W=x", b'W'), None);
        assert_eq!(order_key(b"1700000000.M123P9.h"), (1_700_000_000, 123));
        assert_eq!(order_key(b"1700000000.V801I1234M567890.host"), (1_700_000_000, 567_890));
        assert!(trashed(b"1.x:2,ST"));
        assert!(!trashed(b"1.xT:2,S"));
    }

    #[test]
    fn uidl_scheme() {
        assert_eq!(uidl_for_base(b"1700000000.M1P2.host"), "1700000000.M1P2.host");
        let long = uidl_for_base(&[b'a'; 71]);
        assert!(long.starts_with('~') && long.len() == 33 && is_valid_uidl(&long));
        let spaced = uidl_for_base(b"a b");
        assert!(spaced.starts_with('~'));
        assert_ne!(uidl_for_base(b"~x"), "~x", "verbatim never starts with ~");
        assert_ne!(spaced, uidl_for_base(b"a c"));
    }

    #[test]
    fn cache_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SizeCache { dirty: true, ..SizeCache::default() };
        let entries: Vec<(&[u8], u64, u64)> = vec![(b"1.a.h", 12, 10), (b"2.b h", 3, 2)];
        cache.save_if_dirty(dir.path(), &entries).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert!(!loaded.dirty);
        assert_eq!(loaded.get(b"1.a.h"), Some((12, 10)));
        assert_eq!(loaded.get(b"2.b h"), Some((3, 2)));
        assert_eq!(loaded.get(b"3.c"), None);
        // Out of file order (messages moved or added): found through the index.
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.get(b"2.b h"), Some((3, 2)));
        assert_eq!(loaded.get(b"1.a.h"), Some((12, 10)));
        assert_eq!(loaded.used, 2);
        // Flip one digit: the checksum catches it and the cache is rebuilt.
        let p = dir.path().join(CACHE_FILE);
        let mut bytes = fs::read(&p).unwrap();
        let at = CACHE_MAGIC.len();
        bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
        fs::write(&p, &bytes).unwrap();
        let loaded = SizeCache::load(dir.path());
        assert!(loaded.dirty && loaded.lines.is_empty());
        fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        assert!(SizeCache::load(dir.path()).dirty);
    }

    #[allow(dead_code)]
    fn _assert_send(d: MaildirDrop) -> Box<dyn Send> {
        Box::new(d)
    }

    #[test]
    fn os_str_names_survive() {
        let name = OsStr::from_bytes(b"1.x\xff:2,S");
        assert_eq!(base_of(name.as_bytes()), b"1.x\xff");
        assert!(uidl_for_base(base_of(name.as_bytes())).starts_with('~'));
    }
}
