//! Maildir maildrops (the INBOX of a Maildir or Maildir++ directory) and Maildir delivery.
//!
//! * Messages are the regular files in `new/` and `cur/` whose names do not begin with `.`;
//!   `tmp/`, dotfiles and Maildir++ subfolders (`.Folder/`) are ignored.
//! * A file name is `BASE` or `BASE:2,FLAGS`. `BASE` never changes while the message exists
//!   (moving from `new/` to `cur/` and changing flags only change the part after `:`), so it
//!   is the UIDL: verbatim when it is 1–70 characters in 0x21–0x7E and does not begin with
//!   `~`, otherwise `~` followed by 32 hex digits of its FNV-1a-128 hash.
//!   When the Maildir has a Dovecot `dovecot-uidlist`, the messages it lists are served the
//!   UIDLs Dovecot served (its `P` extension, else [`MaildirOptions::dovecot_uidl_format`]).
//! * Size: a `,W=<n>` field of `BASE` (the CRLF size Dovecot and our delivery write), else the
//!   cache `.pop3-storage.sizes`, else the message is read once and the cache updated.
//! * The cache also holds the last snapshot and the stamps (device, inode, mtime, ctime) of
//!   `new/` and `cur/`: while they are unchanged (and were settled), an open serves that
//!   snapshot without listing the directories.
//! * Order: by the delivery time in `BASE` (leading seconds, then the microseconds of an
//!   `M<usec>` field), then by `BASE`.
//! * Locking: an exclusive `flock` on the Maildir directory itself (see `lock.rs`): no file is
//!   created, so a full disk does not keep users from logging in to delete mail.
//! * Symbolic links in `new/` and `cur/` are not messages: they are not listed, and message
//!   files are opened with `O_NOFOLLOW`, so a link planted in a Maildir cannot make the
//!   server read a file outside it.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::dovecot::UIDLIST_FILE;
use crate::dovecot::{DovecotUidlFormat, DovecotUidlist};
use crate::error::IoContext;
use crate::lock::DirLock;
use crate::util::{checksum64, failpoint, fnv64, maildir_hostname, Fnv128};
use crate::{
    Envelope, Error, Maildrop, MessageInfo, MessageReader, PathTemplate, Result, SizeCounter,
    Store, CHUNK,
};

/// The size (and last snapshot) cache inside the Maildir.
pub const CACHE_FILE: &str = ".pop3-storage.sizes";
const CACHE_TMP: &str = ".pop3-storage.sizes.tmp";
const CACHE_VERSION: u8 = 3;
const CACHE_MAGIC: &[u8] = b"pop3-storage-sizes 3\n";
/// Format 1 (sizes by BASE, FNV-1a-64 checksum, no listing) is read for its sizes and
/// rewritten in the current format.
const CACHE_MAGIC_V1: &[u8] = b"pop3-storage-sizes 1\n";

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirOptions {
    /// What commit does with deleted messages.
    pub delete: DeleteMode,
    /// Create `new/`, `cur/` and `tmp/` (mode 0700) on open or delivery if missing.
    pub create: bool,
    /// The `pop3_uidl_format` Dovecot served this Maildir with, for the messages of its
    /// `dovecot-uidlist` (default Dovecot's default, `%08Xu%08Xv`).
    pub dovecot_uidl_format: DovecotUidlFormat,
}

impl Default for MaildirOptions {
    fn default() -> Self {
        Self {
            delete: DeleteMode::Unlink,
            create: true,
            dovecot_uidl_format: DovecotUidlFormat::default(),
        }
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

/// One message of a listing. Its file name lives in the listing's shared name buffer (one
/// allocation for all names instead of one per message).
#[derive(Debug, Clone, Copy)]
struct Entry {
    sub: Sub,
    /// `names[start..start + len]` is the file name; its first `base_len` bytes are BASE.
    start: usize,
    len: u32,
    base_len: u32,
    /// Delivery-order key ([`order_key`] of BASE).
    secs: u64,
    usec: u64,
    /// Stored length, when known (from `,S=` or the cache or reading); checked on read.
    raw_len: Option<u64>,
}

impl Entry {
    fn name<'a>(&self, names: &'a [u8]) -> &'a [u8] {
        &names[self.start..self.start + self.len as usize]
    }

    fn base<'a>(&self, names: &'a [u8]) -> &'a [u8] {
        &names[self.start..self.start + self.base_len as usize]
    }

    fn path(&self, root: &Path, names: &[u8]) -> PathBuf {
        root.join(self.sub.dir()).join(OsStr::from_bytes(self.name(names)))
    }
}

/// The messages found in `new/` and `cur/`, before sorting.
#[derive(Debug, Default)]
struct Listing {
    names: Vec<u8>,
    entries: Vec<Entry>,
}

impl Listing {
    /// Adds the regular file `name` of `sub` (not a dotfile), unless it is trashed.
    fn push(&mut self, sub: Sub, name: &[u8]) {
        let base = base_of(name);
        if sub == Sub::Cur && trashed_info(&name[base.len()..]) {
            return;
        }
        let (Ok(len), Ok(base_len)) = (name.len().try_into(), base.len().try_into()) else {
            return; // a name of 4 GiB cannot exist
        };
        let (secs, usec) = order_key(base);
        let start = self.names.len();
        self.names.extend_from_slice(name);
        self.entries.push(Entry { sub, start, len, base_len, secs, usec, raw_len: None });
    }
}

/// The part of a Maildir file name before the `:2,` info.
fn base_of(name: &[u8]) -> &[u8] {
    // Names are short: a plain loop beats memchr's setup here.
    match name.iter().position(|&b| b == b':') {
        Some(i) => &name[..i],
        None => name,
    }
}

/// The leading decimal digits of `s` as a number: `None` if there are none or they overflow.
fn leading_number(s: &[u8]) -> Option<u64> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    s[..n].iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The numeric value of the first well-formed `,<key>=<digits>` field of a base name.
fn field(base: &[u8], key: u8) -> Option<u64> {
    let mut rest = base;
    while let Some(comma) = rest.iter().position(|&b| b == b',') {
        rest = &rest[comma + 1..];
        let seg = &rest[..rest.iter().position(|&b| b == b',').unwrap_or(rest.len())];
        if let Some(v) = seg.strip_prefix(&[key, b'='][..]) {
            if let Some(n) = leading_number(v).filter(|_| v.iter().all(u8::is_ascii_digit)) {
                return Some(n);
            }
        }
    }
    None
}

/// Delivery-order key: leading seconds, then the microseconds of an `M<usec>` field in the
/// second dot-separated part.
fn order_key(base: &[u8]) -> (u64, u64) {
    let secs = leading_number(base).unwrap_or(0);
    let usec = base
        .split(|&b| b == b'.')
        .nth(1)
        .and_then(|seg| {
            let m = seg.iter().position(|&b| b == b'M')?;
            leading_number(&seg[m + 1..])
        })
        .unwrap_or(0);
    (secs, usec)
}

/// `base` as its own UIDL, if it is one: 1–70 characters in 0x21–0x7E, not starting with `~`.
fn verbatim_uidl(base: &[u8]) -> Option<&str> {
    if base.first() == Some(&b'~') || base.is_empty() || base.len() > 70 {
        return None;
    }
    if !base.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    std::str::from_utf8(base).ok()
}

/// The UIDL for a base name (see the [module docs](self)).
pub fn uidl_for_base(base: &[u8]) -> String {
    match verbatim_uidl(base) {
        Some(s) => s.to_owned(),
        None => hashed_uidl(base),
    }
}

fn hashed_uidl(bytes: &[u8]) -> String {
    let mut h = Fnv128::new();
    h.update(bytes);
    format!("~{}", h.hex())
}

/// The UIDL of the second file with an already seen BASE (or a UIDL already served):
/// `~` + the hash of `sub/name`.
fn name_uidl(sub: Sub, name: &[u8]) -> String {
    let mut h = Fnv128::new();
    h.update(sub.dir().as_bytes());
    h.update(b"/");
    h.update(name);
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
        self.open_inner().map(|(drop, _)| drop)
    }

    /// [`Self::open`], and whether `new/` and `cur/` were listed (false: the cache's listing
    /// was current).
    fn open_inner(&self) -> Result<(MaildirDrop, bool)> {
        self.ensure_dirs()?;
        let lock = DirLock::acquire(&self.root)?;
        // Before listing: a change after this point gives the directories new stamps.
        let stamps = DirStamps::take(&self.root);
        let mut cache = SizeCache::load(&self.root);
        let current =
            stamps.filter(|&(s, _)| cache.stamps == Some(s)).and_then(|_| cache.listing());
        let listed = current.is_none();
        let (names, entries, sizes) = match current {
            Some(snapshot) => snapshot,
            None => self.list_and_size(&mut cache, stamps)?,
        };
        drop(cache);

        let uidlist = DovecotUidlist::load(&self.root, &self.options.dovecot_uidl_format)?;
        let mut infos: Vec<MessageInfo> = Vec::with_capacity(entries.len());
        for (i, (e, &size)) in entries.iter().zip(&sizes).enumerate() {
            let base = e.base(&names);
            // Equal bases sort next to each other. The same BASE in new/ and cur/ (a crashed
            // mover): both are served, the second under a name-derived UIDL.
            let uidl = if i > 0 && entries[i - 1].base(&names) == base {
                name_uidl(e.sub, e.name(&names))
            } else if let Some(uidl) = uidlist.as_ref().and_then(|u| u.get(base)) {
                uidl.to_owned()
            } else {
                uidl_for_base(base)
            };
            infos.push(MessageInfo { size, uidl });
        }
        // Our own UIDLs of distinct bases are distinct (verbatim ones are the base, hashed
        // ones start with `~`, which verbatim ones never do). Imported Dovecot UIDLs are
        // arbitrary strings, so with a uidlist every UIDL is checked and a repeated one
        // replaced by the name-derived form.
        if uidlist.is_some() {
            let mut seen = HashSet::with_capacity(infos.len());
            let repeated: Vec<usize> =
                (0..infos.len()).filter(|&i| !seen.insert(infos[i].uidl.as_str())).collect();
            drop(seen);
            for i in repeated {
                let e = &entries[i];
                infos[i].uidl = name_uidl(e.sub, e.name(&names));
            }
        }
        let drop = MaildirDrop {
            root: self.root.clone(),
            options: self.options.clone(),
            lock: Some(lock),
            names,
            entries,
            infos,
        };
        Ok((drop, listed))
    }

    /// Lists `new/` and `cur/`, sorts, and sizes every message: from its `,W=` field, else
    /// from the cache, else by reading it. Rewrites the cache if anything changed.
    fn list_and_size(
        &self,
        cache: &mut SizeCache,
        stamps: Option<(DirStamps, bool)>,
    ) -> Result<(Vec<u8>, Vec<Entry>, Vec<u64>)> {
        let mut listing = Listing::default();
        for sub in [Sub::New, Sub::Cur] {
            scan(&self.root, sub, &mut listing)?;
        }
        let Listing { names, mut entries } = listing;
        // Keys computed once per entry (in `push`), names compared only on ties.
        entries.sort_unstable_by(|a, b| {
            (a.secs, a.usec)
                .cmp(&(b.secs, b.usec))
                .then_with(|| a.base(&names).cmp(b.base(&names)))
                .then_with(|| a.name(&names).cmp(b.name(&names)))
        });
        let mut sizes = Vec::with_capacity(entries.len());
        let mut kept = 0;
        for i in 0..entries.len() {
            let mut e = entries[i];
            let (name, base) = (e.name(&names), e.base(&names));
            let cached = cache.get(e.sub, name, base);
            let size = match (field(base, b'W'), cached) {
                (Some(w), _) => {
                    e.raw_len = field(base, b'S');
                    w
                }
                (None, Some((size, Some(raw)))) => {
                    e.raw_len = Some(raw);
                    size
                }
                (None, _) => match measure(&e.path(&self.root, &names)) {
                    Ok((size, raw)) => {
                        e.raw_len = Some(raw);
                        cache.insert(base, size, raw);
                        size
                    }
                    // Removed by another program since the scan: leave it out.
                    Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                        continue
                    }
                    Err(e) => return Err(e),
                },
            };
            entries[kept] = e;
            kept += 1;
            sizes.push(size);
        }
        entries.truncate(kept);
        // The listing may be trusted next time only if the directories' modification times
        // were settled before the listing began (see `DirStamps`).
        let trusted = stamps.and_then(|(s, settled)| settled.then_some(s));
        if cache.needs_save() || cache.stamps != trusted {
            // The cache is an optimisation: failing to write it (full disk, read-only
            // Maildir) must not keep the user from their mail.
            let _ = SizeCache::save(&self.root, trusted, &names, &entries, &sizes);
        }
        Ok((names, entries, sizes))
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

/// Size of the buffer `getdents64` fills: about 500 Maildir names per system call.
#[cfg(any(target_os = "linux", target_os = "android"))]
const DIR_BUF: usize = 32 * 1024;

/// Appends the messages of `root/sub` to `out`.
///
/// On Linux the directory is read with `getdents64` into one reused buffer
/// ([`rustix::fs::RawDir`]): no allocation and no `stat` per entry, the file type comes from
/// `d_type`; only symlinks and file systems that report no type are `stat`ed.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn scan(root: &Path, sub: Sub, out: &mut Listing) -> Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir};
    use rustix::io::Errno;
    use std::mem::MaybeUninit;

    let dir = root.join(sub.dir());
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(&dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if sub == Sub::New => return Ok(()),
        Err(e) => return Err(Error::io("read directory", &dir, e.into())),
    };
    let mut buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUF];
    let mut rd = RawDir::new(&fd, &mut buf);
    while let Some(item) = rd.next() {
        let item = item.map_err(|e| Error::io("read directory", &dir, e.into()))?;
        let name = item.file_name().to_bytes();
        if name.first() == Some(&b'.') {
            continue; // dotfiles, `.` and `..`
        }
        let is_file = match item.file_type() {
            FileType::RegularFile => true,
            // A file system that does not report types: lstat (a symlink is not a message).
            FileType::Unknown => {
                match rustix::fs::statat(&fd, item.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::RegularFile,
                    // Removed since the listing.
                    Err(Errno::NOENT) => false,
                    Err(e) => {
                        let path = dir.join(OsStr::from_bytes(name));
                        return Err(Error::io("stat", &path, e.into()));
                    }
                }
            }
            _ => false,
        };
        if is_file {
            out.push(sub, name);
        }
    }
    Ok(())
}

/// Appends the messages of `root/sub` to `out`, with `std::fs::read_dir` (other systems; on
/// Linux a unit test checks it agrees with the `getdents64` version).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn scan(root: &Path, sub: Sub, out: &mut Listing) -> Result<()> {
    scan_std(root, sub, out)
}

#[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
fn scan_std(root: &Path, sub: Sub, out: &mut Listing) -> Result<()> {
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
        // DirEntry::file_type does not follow symlinks: a link is not a message.
        let ft = item.file_type().ctx("stat", &item.path())?;
        if ft.is_file() {
            out.push(sub, name.as_bytes());
        }
    }
    Ok(())
}

/// Whether a `cur/` name carries the `T` (trashed) flag.
#[cfg(test)]
fn trashed(name: &[u8]) -> bool {
    trashed_info(&name[base_of(name).len()..])
}

/// Whether the info part of a name (from the `:` on, or empty) has the `T` (trashed) flag.
fn trashed_info(info: &[u8]) -> bool {
    info.strip_prefix(b":2,").is_some_and(|flags| flags.contains(&b'T'))
}

/// Opens a message file for reading, refusing a symbolic link (`ELOOP`): one put in place of
/// a listed message must not lead outside the Maildir.
fn open_message(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Reads a message once: (RFC 1939 size, stored length).
fn measure(path: &Path) -> Result<(u64, u64)> {
    let mut f = open_message(path).ctx("open", path)?;
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

/// Directory modification times are trusted only once they are this old (seconds): a change
/// within the same timestamp tick as the recorded one could otherwise keep the same mtime.
/// Two seconds covers every file system's granularity (FAT's is 2 s, ext3's 1 s).
const SETTLE_SECS: i64 = 2;

/// What identifies the state of `new/` and `cur/`: device, inode, mtime and ctime (s, ns) of
/// each. Creating, removing or renaming a file in a directory updates its mtime and ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirStamps([i64; 12]);

impl DirStamps {
    /// The stamps now, and whether they are settled (both mtimes at least [`SETTLE_SECS`]
    /// in the past). `None` if a directory cannot be `stat`ed (e.g. no `new/`).
    fn take(root: &Path) -> Option<(Self, bool)> {
        use std::os::unix::fs::MetadataExt;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let now = i64::try_from(now).ok()?;
        let mut v = [0i64; 12];
        let mut settled = true;
        for (i, sub) in [Sub::New, Sub::Cur].into_iter().enumerate() {
            let m = fs::metadata(root.join(sub.dir())).ok()?;
            v[i * 6..i * 6 + 6].copy_from_slice(&[
                m.dev() as i64,
                m.ino() as i64,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ]);
            // A modification time in the future (clock stepped back) is not settled either.
            settled &= now - m.mtime() >= SETTLE_SECS;
        }
        Some((Self(v), settled))
    }
}

/// One line of the cache: `<size> <stored length or -> <n|c> <NAME>` (format 3) or
/// `<size> <stored length> <BASE>` (format 1: no directory, `name` is BASE).
#[derive(Debug, Clone, Copy)]
struct CacheLine<'a> {
    size: u64,
    raw: Option<u64>,
    sub: Option<Sub>,
    name: &'a [u8],
}

/// (line number, start, end) of a line in the cache file.
type IndexedLine = (usize, usize, usize);

/// The per-Maildir cache (format in `docs/storage.md`): the snapshot of the last open that
/// listed the directories (names in order, sizes, stored lengths) and the directories'
/// [`DirStamps`] when they were settled.
///
/// ```text
/// pop3-storage-sizes 3
/// dirs <12 numbers: DirStamps> | dirs -
/// <rfc1939 size> <stored length or -> <n|c> <NAME>
/// ...
/// checksum <16 hex digits: checksum64 of every byte above this line>
/// ```
#[derive(Debug, Default)]
struct SizeCache {
    /// The cache file as read.
    bytes: Vec<u8>,
    version: u8,
    /// The directories' stamps when the listing was written, if they were settled.
    stamps: Option<DirStamps>,
    /// Where the entry lines are in `bytes` (after the header, before the checksum).
    body_start: usize,
    body_end: usize,
    /// The next line to try (its offset in `bytes` and its number): the cache is written in
    /// snapshot order, so a listing matches it line by line, parsing each line once as it
    /// is reached, without hashing.
    pos: usize,
    line_no: usize,
    /// Number of entry lines in the file.
    lines: usize,
    /// Which lines this open used; a line never used describes a message that is gone.
    used: Vec<bool>,
    used_count: usize,
    /// BASE → line; built on the first out-of-order lookup.
    index: Option<HashMap<Vec<u8>, IndexedLine>>,
    /// Entries computed by this open.
    added: HashMap<Vec<u8>, (u64, u64)>,
    /// The file must be rewritten: missing, corrupt, an old format, new or changed entries.
    dirty: bool,
}

impl SizeCache {
    fn load(root: &Path) -> Self {
        let mut cache = Self::default();
        match fs::read(root.join(CACHE_FILE)) {
            Ok(bytes) => match Self::validate(&bytes) {
                Some((body, version, stamps)) => {
                    cache.lines = memchr::memchr_iter(b'\n', &bytes[body.clone()]).count();
                    cache.used = vec![false; cache.lines];
                    (cache.pos, cache.body_start, cache.body_end) =
                        (body.start, body.start, body.end);
                    (cache.version, cache.stamps) = (version, stamps);
                    cache.bytes = bytes;
                    // A format 1 cache is used for sizes, and rewritten in the current format.
                    cache.dirty = version != CACHE_VERSION;
                }
                None => cache.dirty = true, // corrupt: rebuild
            },
            Err(_) => cache.dirty = true,
        }
        cache
    }

    /// Checks the magic line, the `dirs` line and the checksum: the range of the entry lines,
    /// the format version and the stamps. The entry lines are parsed as they are used.
    #[allow(clippy::type_complexity)]
    fn validate(bytes: &[u8]) -> Option<(std::ops::Range<usize>, u8, Option<DirStamps>)> {
        let (version, rest) = if let Some(rest) = bytes.strip_prefix(CACHE_MAGIC) {
            (CACHE_VERSION, rest)
        } else {
            (1, bytes.strip_prefix(CACHE_MAGIC_V1)?)
        };
        let trailer_at = bytes.len().checked_sub(26)?; // "checksum " + 16 + "\n"
        let trailer = &bytes[trailer_at..];
        let sum = trailer.strip_prefix(b"checksum ")?.strip_suffix(b"\n")?;
        let sum = u64::from_str_radix(std::str::from_utf8(sum).ok()?, 16).ok()?;
        let covered = &bytes[..trailer_at];
        let expected = if version == 1 { fnv64(covered) } else { checksum64(covered) };
        if sum != expected || covered.last() != Some(&b'\n') {
            return None;
        }
        let mut body_start = bytes.len() - rest.len();
        let mut stamps = None;
        if version == CACHE_VERSION {
            let end = memchr::memchr(b'\n', rest)?;
            let fields = rest[..end].strip_prefix(b"dirs ")?;
            if fields != b"-" {
                let mut v = [0i64; 12];
                let mut it = fields.split(|&b| b == b' ');
                for slot in &mut v {
                    *slot = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
                }
                if it.next().is_some() {
                    return None;
                }
                stamps = Some(DirStamps(v));
            }
            body_start += end + 1;
        }
        (body_start <= trailer_at).then_some((body_start..trailer_at, version, stamps))
    }

    /// Parses one entry line (without its newline).
    fn parse_line(version: u8, line: &[u8]) -> Option<CacheLine<'_>> {
        let num = |p: &[u8]| -> Option<u64> {
            if p.is_empty() || p.len() > 19 || !p.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(p.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
        };
        let field = |rest: &[u8]| -> Option<(usize, usize)> {
            let sp = rest.iter().position(|&b| b == b' ')?;
            Some((sp, sp + 1))
        };
        let (end, next) = field(line)?;
        let size = num(&line[..end])?;
        let mut rest = &line[next..];
        let (end, next) = field(rest)?;
        let raw = match &rest[..end] {
            b"-" if version != 1 => None,
            r => Some(num(r)?),
        };
        rest = &rest[next..];
        let sub = if version == 1 {
            None
        } else {
            let (sub, name) = match rest {
                [b'n', b' ', name @ ..] => (Sub::New, name),
                [b'c', b' ', name @ ..] => (Sub::Cur, name),
                _ => return None,
            };
            rest = name;
            Some(sub)
        };
        if rest.is_empty() {
            return None;
        }
        Some(CacheLine { size, raw, sub, name: rest })
    }

    fn mark_used(&mut self, line_no: usize) {
        if let Some(u) = self.used.get_mut(line_no) {
            if !*u {
                *u = true;
                self.used_count += 1;
            }
        }
    }

    /// The cached size and stored length of the message with this BASE, if any. A line for
    /// the same BASE under another name (flags changed, moved to `cur/`) still gives the
    /// size; the cache is then rewritten so its listing is current.
    fn get(&mut self, sub: Sub, name: &[u8], base: &[u8]) -> Option<(u64, Option<u64>)> {
        // The usual case first: the same name (one comparison), else the same BASE.
        let matches = |l: &CacheLine<'_>| match l.sub {
            Some(_) => l.name == name || base_of(l.name) == base,
            None => l.name == base,
        };
        let mut found = None;
        if self.pos < self.body_end {
            let rest = &self.bytes[self.pos..self.body_end];
            let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            match Self::parse_line(self.version, &rest[..len]) {
                Some(l) if matches(&l) => found = Some((self.line_no, l)),
                Some(_) => {}              // out of order: the index below
                None => self.dirty = true, // malformed despite the checksum: never used
            }
            if found.is_some() || self.dirty {
                self.pos += len + 1;
                self.line_no += 1;
            }
        }
        if found.is_none() {
            let (bytes, version) = (&self.bytes, self.version);
            let (start, end) = (self.body_start, self.body_end);
            let index = self.index.get_or_insert_with(|| {
                let (mut map, mut at) = (HashMap::new(), start);
                for (line_no, nl) in memchr::memchr_iter(b'\n', &bytes[start..end]).enumerate() {
                    let nl = start + nl;
                    if let Some(l) = Self::parse_line(version, &bytes[at..nl]) {
                        let key = if l.sub.is_some() { base_of(l.name) } else { l.name };
                        map.entry(key.to_vec()).or_insert((line_no, at, nl));
                    }
                    at = nl + 1;
                }
                map
            });
            if let Some(&(line_no, at, nl)) = index.get(base) {
                // Resume line-by-line matching after it (a message inserted or removed in
                // the middle costs one lookup, not one per following message).
                (self.pos, self.line_no) = (nl + 1, line_no + 1);
                found = Self::parse_line(version, &bytes[at..nl]).map(|l| (line_no, l));
            }
        }
        if let Some((line_no, l)) = found {
            if l.sub != Some(sub) || l.name != name {
                self.dirty = true;
            }
            let hit = (l.size, l.raw);
            self.mark_used(line_no);
            return Some(hit);
        }
        self.dirty = true; // a message the cache does not list
        self.added.get(base).map(|&(size, raw)| (size, Some(raw)))
    }

    fn insert(&mut self, base: &[u8], size: u64, raw: u64) {
        self.added.insert(base.to_vec(), (size, raw));
        self.dirty = true;
    }

    /// Whether the cache must be rewritten: new or changed entries, entries for messages
    /// that no longer exist (stale), or a corrupt, missing or format 1 file.
    fn needs_save(&self) -> bool {
        self.dirty || self.used_count != self.lines
    }

    /// The cached snapshot (names, entries in order, sizes), used as is when the directories'
    /// stamps are those recorded. `None` if any line does not parse.
    fn listing(&self) -> Option<(Vec<u8>, Vec<Entry>, Vec<u64>)> {
        if self.version != CACHE_VERSION {
            return None;
        }
        let body = &self.bytes[self.body_start..self.body_end];
        let mut names = Vec::with_capacity(body.len());
        let mut entries = Vec::with_capacity(self.lines);
        let mut sizes = Vec::with_capacity(self.lines);
        let mut at = 0;
        for nl in memchr::memchr_iter(b'\n', body) {
            let l = Self::parse_line(self.version, &body[at..nl])?;
            at = nl + 1;
            let (Ok(len), Ok(base_len)) =
                (l.name.len().try_into(), base_of(l.name).len().try_into())
            else {
                return None;
            };
            let start = names.len();
            names.extend_from_slice(l.name);
            let (sub, raw_len) = (l.sub?, l.raw);
            entries.push(Entry { sub, start, len, base_len, secs: 0, usec: 0, raw_len });
            sizes.push(l.size);
        }
        Some((names, entries, sizes))
    }

    /// Writes the cache: `stamps` (if the directories were settled) and the snapshot. A name
    /// containing a newline cannot be written: its message is left out and the listing is
    /// then not trusted (`dirs -`). Written to a temporary file, fsynced and renamed over
    /// the old one, so a reader sees the old or the new cache, never a mix; a torn file
    /// fails its checksum and is rebuilt.
    fn save(
        root: &Path,
        mut stamps: Option<DirStamps>,
        names: &[u8],
        entries: &[Entry],
        sizes: &[u64],
    ) -> Result<()> {
        let mut lines = Vec::with_capacity(entries.len() * 64);
        for (e, size) in entries.iter().zip(sizes) {
            let name = e.name(names);
            if name.contains(&b'\n') {
                stamps = None;
                continue;
            }
            let sub = match e.sub {
                Sub::New => 'n',
                Sub::Cur => 'c',
            };
            match e.raw_len {
                Some(raw) => write!(lines, "{size} {raw} {sub} "),
                None => write!(lines, "{size} - {sub} "),
            }
            .expect("writing to a Vec");
            lines.extend_from_slice(name);
            lines.push(b'\n');
        }
        let mut out = Vec::with_capacity(lines.len() + 300);
        out.extend_from_slice(CACHE_MAGIC);
        out.extend_from_slice(b"dirs");
        match stamps {
            Some(DirStamps(v)) => v.iter().for_each(|n| {
                write!(out, " {n}").expect("writing to a Vec");
            }),
            None => out.extend_from_slice(b" -"),
        }
        out.push(b'\n');
        out.extend_from_slice(&lines);
        drop(lines);
        let sum = checksum64(&out);
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
    lock: Option<DirLock>,
    /// The file names of all entries, back to back.
    names: Vec<u8>,
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
        let path = e.path(&self.root, &self.names);
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
                if base_of(item.file_name().as_bytes()) == e.base(&self.names) {
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
        // The snapshot's path first (no stat before the open: one lookup per read); only if
        // it is gone is the message looked for under another name.
        let path = e.path(&self.root, &self.names);
        let (path, file) = match open_message(&path) {
            Ok(f) => (path, f),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let Some(path) = self.locate(e)? else {
                    return Err(self.gone(index));
                };
                match open_message(&path) {
                    Ok(f) => (path, f),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        return Err(self.gone(index))
                    }
                    Err(err) => return Err(Error::io("open", &path, err)),
                }
            }
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
                    let mut new_name = e.base(&self.names).to_vec();
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
        Ok(Maildir::with_options(self.template.path_for(user)?, self.options.clone()))
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
    use crate::is_valid_uidl;
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

    /// A snapshot as `list_and_size` leaves it: names, entries, sizes.
    fn snapshot(items: &[(Sub, &str, u64, Option<u64>)]) -> (Vec<u8>, Vec<Entry>, Vec<u64>) {
        let mut l = Listing::default();
        for &(sub, name, _, raw) in items {
            l.push(sub, name.as_bytes());
            l.entries.last_mut().unwrap().raw_len = raw;
        }
        (l.names, l.entries, items.iter().map(|i| i.2).collect())
    }

    fn cache_file(dir: &Path) -> PathBuf {
        dir.join(CACHE_FILE)
    }

    #[test]
    fn cache_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (names, entries, sizes) = snapshot(&[
            (Sub::New, "1.a.h", 12, Some(10)),
            (Sub::Cur, "2.b h:2,S", 3, Some(2)),
            (Sub::Cur, "3.c,S=5,W=6:2,", 6, Some(5)),
            (Sub::New, "4.d,W=9", 9, None),
        ]);
        let stamps = DirStamps([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -12]);
        SizeCache::save(dir.path(), Some(stamps), &names, &entries, &sizes).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert!(!loaded.dirty);
        assert_eq!(loaded.stamps, Some(stamps));
        let (n2, e2, s2) = loaded.listing().unwrap();
        assert_eq!(n2, names);
        assert_eq!(s2, sizes);
        let summary = |n: &[u8], e: &[Entry]| -> Vec<(Sub, Vec<u8>, Option<u64>)> {
            e.iter().map(|e| (e.sub, e.name(n).to_vec(), e.raw_len)).collect()
        };
        assert_eq!(summary(&n2, &e2), summary(&names, &entries));
        // Line by line, in order.
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::Cur, b"2.b h:2,S", b"2.b h"), Some((3, Some(2))));
        assert_eq!(loaded.get(Sub::Cur, b"3.c,S=5,W=6:2,", b"3.c,S=5,W=6"), Some((6, Some(5))));
        assert_eq!(loaded.get(Sub::New, b"4.d,W=9", b"4.d,W=9"), Some((9, None)));
        assert!(!loaded.needs_save());
        assert_eq!(loaded.get(Sub::New, b"5.e", b"5.e"), None);
        assert!(loaded.needs_save(), "a message the cache does not list");
        // Out of file order (messages added before others): found through the index.
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.get(Sub::Cur, b"2.b h:2,S", b"2.b h"), Some((3, Some(2))));
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::Cur, b"3.c,S=5,W=6:2,", b"3.c,S=5,W=6"), Some((6, Some(5))));
        assert_eq!(loaded.get(Sub::New, b"4.d,W=9", b"4.d,W=9"), Some((9, None)));
        assert_eq!(loaded.used_count, 4);
        assert!(!loaded.needs_save());
        // A line no message used is stale; the same line found twice counts once.
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.used_count, 1);
        assert!(loaded.needs_save());
        // Moved to cur/ with flags: same size, but the listing must be rewritten.
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.get(Sub::Cur, b"1.a.h:2,S", b"1.a.h"), Some((12, Some(10))));
        assert!(loaded.dirty);
        // Flip one digit: the checksum catches it and the cache is rebuilt.
        let p = cache_file(dir.path());
        let good = fs::read(&p).unwrap();
        let mut bytes = good.clone();
        let at = bytes.len() - 40;
        bytes[at] ^= 1;
        fs::write(&p, &bytes).unwrap();
        let loaded = SizeCache::load(dir.path());
        assert!(loaded.dirty && loaded.lines == 0 && loaded.stamps.is_none());
        fs::write(&p, &good[..good.len() - 5]).unwrap();
        assert!(SizeCache::load(dir.path()).dirty);
        // Malformed lines with a valid checksum (a bug, or an edit that fixed the sum):
        // never used, the lines around them still are, no listing is served from the file,
        // and it is rewritten.
        let mut odd = CACHE_MAGIC.to_vec();
        odd.extend_from_slice(b"dirs -\n12 10 n 1.a.h\n12 x n 1.b.h\n12 10 q 1.c.h\n3 2 c 2.b h\n");
        let sum = checksum64(&odd);
        odd.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
        fs::write(&p, &odd).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert!(loaded.listing().is_none());
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::New, b"1.b.h", b"1.b.h"), None);
        assert_eq!(loaded.get(Sub::New, b"1.c.h", b"1.c.h"), None);
        assert_eq!(loaded.get(Sub::Cur, b"2.b h", b"2.b h"), Some((3, Some(2))));
        assert!(loaded.needs_save());
        // A bad `dirs` line is a corrupt file.
        for dirs in [&b"dirs 1 2 3\n"[..], b"dirs x\n", b"dirz -\n", b""] {
            let mut bad = CACHE_MAGIC.to_vec();
            bad.extend_from_slice(dirs);
            bad.extend_from_slice(b"12 10 n 1.a.h\n");
            let sum = checksum64(&bad);
            bad.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
            fs::write(&p, &bad).unwrap();
            assert!(SizeCache::load(dir.path()).dirty, "{:?}", String::from_utf8_lossy(dirs));
        }
    }

    #[test]
    fn names_with_newlines_are_left_out_and_the_listing_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let (names, entries, sizes) =
            snapshot(&[(Sub::New, "1.a", 1, Some(1)), (Sub::New, "2.b\nc", 2, Some(2))]);
        let stamps = DirStamps([1; 12]);
        SizeCache::save(dir.path(), Some(stamps), &names, &entries, &sizes).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.stamps, None);
        assert_eq!(loaded.lines, 1);
        assert_eq!(loaded.get(Sub::New, b"1.a", b"1.a"), Some((1, Some(1))));
    }

    #[test]
    fn format_1_cache_sizes_are_used_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut v1 = b"pop3-storage-sizes 1\n12 10 1.a.h\n3 2 2.b h\n".to_vec();
        let sum = fnv64(&v1);
        v1.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
        fs::write(cache_file(dir.path()), &v1).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert!(loaded.listing().is_none() && loaded.stamps.is_none());
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::Cur, b"2.b h:2,S", b"2.b h"), Some((3, Some(2))));
        assert!(loaded.needs_save(), "format 1 is rewritten in the current format");
        // A format 1 magic with a current checksum is corrupt.
        let (names, entries, sizes) = snapshot(&[(Sub::New, "1.a.h", 12, Some(10))]);
        SizeCache::save(dir.path(), None, &names, &entries, &sizes).unwrap();
        let mut mixed = fs::read(cache_file(dir.path())).unwrap();
        mixed[..CACHE_MAGIC_V1.len()].copy_from_slice(CACHE_MAGIC_V1);
        fs::write(cache_file(dir.path()), &mixed).unwrap();
        assert_eq!(SizeCache::load(dir.path()).lines, 0);
    }

    /// Sets the modification time of `new/` and `cur/` to a minute ago (their ctime becomes
    /// now), as if the Maildir had not changed for a while.
    fn settle(root: &Path) {
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        for sub in ["new", "cur"] {
            File::open(root.join(sub)).unwrap().set_modified(past).unwrap();
        }
    }

    fn messages(d: &MaildirDrop) -> Vec<(u64, String)> {
        d.messages().iter().map(|m| (m.size, m.uidl.clone())).collect()
    }

    #[test]
    fn unchanged_directories_are_not_listed_again_and_every_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let md = Maildir::new(root);
        md.create_dirs().unwrap();
        fs::write(root.join("new/1700000000.M1P1.mx"), b"a\nb\n").unwrap();
        fs::write(root.join("cur/1700000001.M1P1.mx:2,S"), b"c\r\n").unwrap();
        md.deliver(&mut &b"delivered\n"[..]).unwrap();
        settle(root);
        let (d, listed) = md.open_inner().unwrap();
        assert!(listed, "no cache yet");
        let first = messages(&d);
        assert_eq!(first.len(), 3);
        drop(d);
        let (d, listed) = md.open_inner().unwrap();
        assert!(!listed, "settled and unchanged: the cached listing is served");
        assert_eq!(messages(&d), first);
        let mut body = Vec::new();
        d.read_message(0).unwrap().read_to_end(&mut body).unwrap();
        assert_eq!(body, b"a\nb\n");
        drop(d);

        // A delivery: new/ changes, the next open lists and sees it. Its directory is not
        // settled yet, so the open after that lists again.
        md.deliver(&mut &b"second\n"[..]).unwrap();
        let (d, listed) = md.open_inner().unwrap();
        assert!(listed);
        assert_eq!(d.messages().len(), 4);
        drop(d);
        assert!(md.open_inner().unwrap().1, "changed less than 2 s ago: listed again");
        settle(root);
        assert!(md.open_inner().unwrap().1, "stamps differ from the recorded ones");
        let (d, listed) = md.open_inner().unwrap();
        assert!(!listed);
        let four = messages(&d);
        drop(d);

        // A MUA marks a message read (new/ → cur/ with flags): seen, same UIDL and size.
        fs::rename(root.join("new/1700000000.M1P1.mx"), root.join("cur/1700000000.M1P1.mx:2,S"))
            .unwrap();
        let (d, listed) = md.open_inner().unwrap();
        assert!(listed);
        assert_eq!(messages(&d), four);
        let mut body = Vec::new();
        d.read_message(0).unwrap().read_to_end(&mut body).unwrap();
        assert_eq!(body, b"a\nb\n");
        drop(d);

        // Another program removes a message: gone from the next snapshot.
        settle(root);
        assert!(md.open_inner().unwrap().1);
        assert!(!md.open_inner().unwrap().1);
        fs::remove_file(root.join("cur/1700000001.M1P1.mx:2,S")).unwrap();
        let (d, listed) = md.open_inner().unwrap();
        assert!(listed);
        assert_eq!(d.messages().len(), 3);
        drop(d);

        // A change within the same timestamp tick as the recorded mtime (simulated by putting
        // the mtime back): the ctime still differs, so it is seen.
        settle(root);
        assert!(md.open_inner().unwrap().1);
        assert!(!md.open_inner().unwrap().1);
        let recorded = fs::metadata(root.join("cur")).unwrap().modified().unwrap();
        fs::write(root.join("cur/1700000005.M1P1.mx:2,"), b"sneaky\n").unwrap();
        File::open(root.join("cur")).unwrap().set_modified(recorded).unwrap();
        let (d, listed) = md.open_inner().unwrap();
        assert!(listed);
        assert_eq!(d.messages().len(), 4);
        drop(d);

        // A commit deletes: the next open lists.
        settle(root);
        assert!(md.open_inner().unwrap().1);
        let (mut d, listed) = md.open_inner().unwrap();
        assert!(!listed);
        d.commit(&[0]).unwrap();
        let (d, listed) = md.open_inner().unwrap();
        assert!(listed);
        assert_eq!(d.messages().len(), 3);
    }

    #[test]
    fn numbers_in_names() {
        assert_eq!(leading_number(b"0042x"), Some(42));
        assert_eq!(leading_number(b"x42"), None);
        assert_eq!(leading_number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(leading_number(b"18446744073709551616"), None, "overflow");
        assert_eq!(field(b"1.a,W=x,W=7", b'W'), Some(7), "first well-formed field");
        assert_eq!(field(b"1.a,W=7x", b'W'), None);
        assert_eq!(field(b"1.a,W=", b'W'), None);
        assert_eq!(order_key(b"x.M5.h"), (0, 5));
        assert_eq!(order_key(b"17.P1.M9"), (17, 0), "M only counts in the second part");
    }

    /// The `getdents64` listing and the portable `read_dir` one agree, on every kind of entry.
    #[test]
    fn both_directory_readers_agree() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path());
        md.create_dirs().unwrap();
        let cur = dir.path().join("cur");
        for i in 0..2000 {
            fs::write(cur.join(format!("{i}.M{i}P1.host:2,S")), b"x").unwrap();
        }
        fs::write(cur.join("1.trashed:2,ST"), b"x").unwrap();
        fs::write(cur.join(".dotfile"), b"x").unwrap();
        fs::create_dir(cur.join("subdir")).unwrap();
        std::os::unix::fs::symlink("1.M1P1.host:2,S", cur.join("2.link")).unwrap();
        std::os::unix::fs::symlink("missing", cur.join("3.dangling")).unwrap();
        std::os::unix::fs::symlink("subdir", cur.join("4.dirlink")).unwrap();
        let list = |f: fn(&Path, Sub, &mut Listing) -> Result<()>| {
            let mut l = Listing::default();
            f(dir.path(), Sub::Cur, &mut l).unwrap();
            f(dir.path(), Sub::New, &mut l).unwrap();
            let mut names: Vec<Vec<u8>> =
                l.entries.iter().map(|e| e.name(&l.names).to_vec()).collect();
            names.sort();
            names
        };
        let fast = list(scan);
        assert_eq!(fast, list(scan_std));
        assert_eq!(fast.len(), 2000);
        assert!(!fast.contains(&b"2.link".to_vec()), "a symlink is not a message");
        fs::remove_dir(dir.path().join("new")).unwrap();
        assert_eq!(list(scan), fast, "a missing new/ is empty");
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
