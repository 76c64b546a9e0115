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
//! * Locking: `.pop3-storage.lock`, a symbolic link whose target is the holder's stamp (see
//!   `lock.rs`): no descriptor is held for the session, and no data block is needed, so a
//!   full disk does not keep users from logging in to delete mail.
//! * Symbolic links in `new/` and `cur/` are not messages: they are not listed, and message
//!   files are opened with `O_NOFOLLOW`, so a link planted in a Maildir cannot make the
//!   server read a file outside it.
//!
//! The parts: `name` (file names, order, UIDLs), `scan` (listing the directories),
//! `cache` (the size and snapshot cache), `drop` (an open maildrop: read, commit) and
//! `deliver` (delivery).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

mod cache;
mod deliver;
mod drop;
mod name;
mod scan;

pub use crate::dovecot::UIDLIST_FILE;
pub use cache::CACHE_FILE;

/// The lock inside the Maildir (a dotfile, so other Maildir readers ignore it): a symbolic
/// link whose target names the holder.
pub const LOCK_FILE: &str = ".pop3-storage.lock";
pub use drop::MaildirDrop;
pub use name::uidl_for_base;

use cache::{DirStamps, SizeCache};
use name::{field, name_uidl, Entry, Listing};
use scan::{measure, scan};

use crate::dovecot::{DovecotUidlFormat, DovecotUidlist};
use crate::error::IoContext;
use crate::lock::DotLock;
use crate::{Error, MessageInfo, Result};

/// What [`Maildrop::commit`](crate::Maildrop::commit) does with a deleted message.
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
        let lock = DotLock::acquire_symlink(&self.root.join(LOCK_FILE), &self.root)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Maildrop;
    use std::io::Read;
    use std::time::SystemTime;

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
}
