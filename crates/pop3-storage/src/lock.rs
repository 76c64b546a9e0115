//! Locks: dotlocks (the Maildir session lock, a symbolic link, and an mbox's `NAME.lock`, a
//! file) and `fcntl` (mbox).
//!
//! The Maildir lock is a *symbolic link* whose target is the stamp (pid, host, start time):
//! created atomically by `symlink(2)` (which fails if the name exists), it holds no descriptor
//! and, its target being short, needs no data block (ext4 keeps a target under 60 bytes in the
//! inode, tmpfs one under 128 bytes in memory): it is taken on a full file system as on any
//! other, so a full disk never keeps a user from logging in to delete mail. When even the full
//! stamp does not fit (`ENOSPC` for a long host name), the target is the pid alone. A file
//! dotlock, written and then linked into place, needs a data block for its stamp.
//!
//! A dotlock is a file created with `O_CREAT|O_EXCL` that names its holder; holding it costs
//! no descriptor (the file is closed once written), which is what lets a server keep one
//! descriptor per logged-in session. What a file descriptor lock got from the kernel for free,
//! a dotlock gets from its contents and from a registry in this process:
//!
//! * **Other processes.** The file holds `PID`, the host name and the holder's start time
//!   (`/proc/PID/stat`, clock ticks since boot), one a line. It is stale when, on this host,
//!   no process has that pid, the process with that pid is a zombie, or it started at another
//!   time (the pid was reused). A file without a pid (Postfix and mutt write empty mbox
//!   dotlocks) or one from another host is stale once it is older than 500 s.
//! * **This process.** Every lock held here is in [`REGISTRY`], by path and by inode. A second
//!   session asking for a path held here is refused without touching the file; a file naming
//!   our own pid is ours only if its inode is registered, otherwise it was left by an earlier
//!   process that had our pid (a restarted container) and is stale.
//! * **Breaking** a stale lock renames it aside and removes it only if the renamed file is the
//!   one judged stale (same inode); a live lock that replaced it in between is put back.
//! * **Release** unlinks the file only if it is still ours (same inode).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use rustix::fs::{fcntl_lock, FlockOperation};

use crate::error::IoContext;
use crate::util::maildir_hostname;
use crate::{Error, Result};

/// A dotlock file without a pid, or from another host, is considered stale after this long
/// (Postfix's `stale_lock_time` default is 500 s).
const STALE_DOTLOCK: Duration = Duration::from_secs(500);

/// The dotlocks held by this process.
struct Registry {
    /// Lock paths as given to [`DotLock::acquire_file`].
    paths: BTreeSet<PathBuf>,
    /// `(device, inode)` of every lock file we created and have not released.
    files: BTreeSet<(u64, u64)>,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { paths: BTreeSet::new(), files: BTreeSet::new() });

fn registry() -> MutexGuard<'static, Registry> {
    // The registry's sets stay consistent across a panic (each update is one insert/remove).
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Our start time in clock ticks since boot (field 22 of `/proc/self/stat`), if known.
fn own_start() -> Option<u64> {
    static START: OnceLock<Option<u64>> = OnceLock::new();
    *START.get_or_init(|| proc_stat("self").and_then(|(_, start)| start))
}

/// The state letter and start time of a process, from `/proc/<pid>/stat`; `None` if there is
/// no such file.
fn proc_stat(pid: &str) -> Option<(u8, Option<u64>)> {
    let s = fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything: fields after it
    // start at the last ')'.
    let rest = &s[memchr::memrchr(b')', &s)? + 1..];
    let mut fields = rest.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // Field 3 is the state; the start time is field 22.
    let start = fields.nth(18).and_then(|f| std::str::from_utf8(f).ok()?.parse().ok());
    Some((state, start))
}

/// Whether the process `pid` that started at `start` (if recorded) still runs on this host.
fn holder_alive(pid: u32, start: Option<u64>) -> bool {
    if own_start().is_some() {
        // /proc works here: it answers for zombies and reused pids too.
        return match proc_stat(&pid.to_string()) {
            None => false,
            Some((b'Z' | b'X' | b'x', _)) => false,
            Some((_, now)) => start.is_none() || now.is_none() || start == now,
        };
    }
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(p) => !matches!(rustix::process::test_kill_process(p), Err(rustix::io::Errno::SRCH)),
        None => false,
    }
}

/// What a lock file says about its holder.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stamp {
    pid: Option<u32>,
    host: Option<String>,
    start: Option<u64>,
}

impl Stamp {
    fn ours() -> String {
        let mut s = format!("{}\n{}\n", std::process::id(), maildir_hostname());
        if let Some(start) = own_start() {
            s.push_str(&format!("{start}\n"));
        }
        s
    }

    /// Line 1 the pid, line 2 the host, line 3 the start time; each may be missing (a lock
    /// file holding only a pid is from this host).
    fn parse(s: &str) -> Self {
        let mut lines = s.lines().map(str::trim);
        let pid = lines.next().and_then(|l| l.parse().ok());
        let host = lines.next().filter(|l| !l.is_empty()).map(str::to_owned);
        let start = lines.next().and_then(|l| l.parse().ok());
        Self { pid, host, start }
    }
}

/// An existing lock file: whether it is stale, who holds it, which file it is.
struct Inspected {
    stale: bool,
    holder: Option<u32>,
    id: (u64, u64),
}

/// A dotlock, held for as long as this value lives and removed on drop.
#[derive(Debug)]
pub(crate) struct DotLock {
    path: PathBuf,
    id: (u64, u64),
}

impl DotLock {
    pub(crate) fn path_for(target: &Path) -> PathBuf {
        let mut name = target.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// The mbox convention: `TARGET.lock`, mode 0644.
    pub(crate) fn acquire(target: &Path) -> Result<Self> {
        Self::acquire_file(&Self::path_for(target), target, 0o644)
    }

    /// Takes the lock file `lock_path` for `target` without waiting; [`Error::InUse`] (naming
    /// `target`) if someone holds it.
    pub(crate) fn acquire_file(lock_path: &Path, target: &Path, mode: u32) -> Result<Self> {
        Self::acquire_with(lock_path, target, |lock_path| {
            // The lock file appears with its stamp already in it: written to a private file
            // first, then linked to the lock name (atomic; fails if the name exists), as mutt
            // and liblockfile do. Created empty and then written, a holder killed in between
            // would leave an empty file, which other programs' conventions make stale only
            // after 500 s.
            let (tmp, id) = Self::stamped(lock_path, mode)?;
            let linked = fs::hard_link(&tmp, lock_path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(Some(id)),
                Err(e) => {
                    registry().files.remove(&id);
                    match e.kind() {
                        io::ErrorKind::AlreadyExists => Ok(None),
                        _ => Err(Error::io("create dotlock", lock_path, e)),
                    }
                }
            }
        })
    }

    /// Takes the lock `lock_path` for `target` as a symbolic link whose target is our stamp
    /// (see the module docs: no descriptor, no data block); [`Error::InUse`] if someone holds
    /// it.
    pub(crate) fn acquire_symlink(lock_path: &Path, target: &Path) -> Result<Self> {
        Self::acquire_with(lock_path, target, |lock_path| {
            // Under the registry lock: nobody in this process reads our pid at the lock name
            // before its inode is registered.
            let mut reg = registry();
            let full = Stamp::ours();
            let short = format!("{}\n", std::process::id());
            for stamp in [full, short] {
                match std::os::unix::fs::symlink(&stamp, lock_path) {
                    Ok(()) => {
                        let meta = fs::symlink_metadata(lock_path).ctx("stat lock", lock_path)?;
                        let id = (meta.dev(), meta.ino());
                        reg.files.insert(id);
                        return Ok(Some(id));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
                    // A target too long to live in the inode needs a block: try the pid alone.
                    Err(e) if is_no_space(&e) => continue,
                    Err(e) => return Err(Error::io("create lock", lock_path, e)),
                }
            }
            Err(Error::io("create lock", lock_path, io::Error::from_raw_os_error(28)))
        })
    }

    /// The acquire loop: `create` makes the lock (its id) or finds the name taken (`None`);
    /// a taken lock that is stale is broken and creation tried again.
    fn acquire_with(
        lock_path: &Path,
        target: &Path,
        create: impl Fn(&Path) -> Result<Option<(u64, u64)>>,
    ) -> Result<Self> {
        let in_use = |holder| Error::InUse { path: target.to_path_buf(), holder };
        if !registry().paths.insert(lock_path.to_path_buf()) {
            return Err(in_use(Some(std::process::id())));
        }
        // Until a DotLock owns the registration, failure must give the path back.
        let claim = PathClaim(lock_path);
        // A few rounds: each stale lock we remove may be re-created by a live process.
        for _ in 0..5 {
            match create(lock_path)? {
                Some(id) => {
                    std::mem::forget(claim);
                    return Ok(Self { path: lock_path.to_path_buf(), id });
                }
                None => match Self::inspect(lock_path)? {
                    None => continue, // vanished: try again
                    Some(found) if !found.stale => return Err(in_use(found.holder)),
                    Some(found) => Self::break_stale(lock_path, found.id)?,
                },
            }
        }
        Err(in_use(None))
    }

    /// A new private file next to `lock_path` holding our stamp, registered (by inode) before
    /// it can appear under the lock name: whoever reads our pid there finds the inode here.
    fn stamped(lock_path: &Path, mode: u32) -> Result<(PathBuf, (u64, u64))> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = lock_path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = lock_path.with_file_name(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .ctx("create dotlock", &tmp)?;
        let written = match f.write_all(Stamp::ours().as_bytes()) {
            // A full disk (or quota): an empty lock file needs no data block. Other programs
            // respect an empty dotlock (Postfix and mutt write them) and judge it stale only
            // after 500 s; this process knows it by its inode. Locking must not fail for want
            // of space: a user who cannot log in cannot delete mail to free some.
            Err(e) if is_no_space(&e) => f.set_len(0).and_then(|()| f.metadata()),
            other => other.and_then(|()| f.metadata()),
        };
        match written {
            Ok(meta) => {
                let id = (meta.dev(), meta.ino());
                registry().files.insert(id);
                Ok((tmp, id))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::io("write dotlock", &tmp, e))
            }
        }
    }

    /// Reads the existing lock file at `path`; `None` if it vanished.
    fn inspect(path: &Path) -> Result<Option<Inspected>> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("stat dotlock", path, e)),
        };
        let id = (meta.dev(), meta.ino());
        let mut text = String::new();
        if meta.file_type().is_symlink() {
            // A symlink lock: the stamp is its target.
            match fs::read_link(path) {
                Ok(target) => text = target.to_string_lossy().into_owned(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("read lock", path, e)),
            }
        } else {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("open dotlock", path, e)),
            };
            // A lock file is a few short lines; anything else is not a stamp.
            let _ = file.take(256).read_to_string(&mut text);
        }
        let stamp = Stamp::parse(&text);
        let here = stamp.host.as_deref().is_none_or(|h| h == maildir_hostname());
        let stale = match stamp.pid {
            Some(pid) if here && pid == std::process::id() => !registry().files.contains(&id),
            Some(pid) if here => !holder_alive(pid, stamp.start),
            _ => {
                let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(meta.mtime() as u64);
                SystemTime::now().duration_since(modified).unwrap_or_default() > STALE_DOTLOCK
            }
        };
        Ok(Some(Inspected { stale, holder: stamp.pid, id }))
    }

    /// Removes the stale lock file `id` at `path`, leaving alone a lock that replaced it.
    fn break_stale(path: &Path, id: (u64, u64)) -> Result<()> {
        static ASIDE: AtomicU64 = AtomicU64::new(0);
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(
            ".stale.{}.{}",
            std::process::id(),
            ASIDE.fetch_add(1, Ordering::Relaxed)
        ));
        let aside = PathBuf::from(aside);
        match fs::rename(path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("move stale dotlock aside", path, e)),
        }
        let moved = fs::symlink_metadata(&aside).map(|m| (m.dev(), m.ino()));
        if moved.is_ok_and(|m| m != id) {
            // A live holder replaced the stale lock between our look and the rename: put its
            // lock back (link never replaces; if someone took the path meanwhile, they hold it).
            if let Err(e) = fs::hard_link(&aside, path) {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    let _ = fs::rename(&aside, path);
                    return Ok(());
                }
            }
        }
        fs::remove_file(&aside).ctx("remove stale dotlock", &aside)
    }
}

/// `ENOSPC` or `EDQUOT`.
fn is_no_space(e: &io::Error) -> bool {
    let raw = e.raw_os_error();
    raw == Some(rustix::io::Errno::NOSPC.raw_os_error())
        || raw == Some(rustix::io::Errno::DQUOT.raw_os_error())
}

/// A path entered in the registry by an acquire still in progress.
struct PathClaim<'a>(&'a Path);

impl Drop for PathClaim<'_> {
    fn drop(&mut self) {
        registry().paths.remove(self.0);
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        // Under the registry lock, so that no acquire in this process sees our pid in a file
        // whose inode is no longer registered (it would break a lock we still hold).
        let mut reg = registry();
        if fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = fs::remove_file(&self.path);
        }
        reg.files.remove(&self.id);
        reg.paths.remove(&self.path);
    }
}

/// Takes an exclusive `fcntl` (POSIX record) lock on the whole of `file` without waiting.
///
/// POSIX locks belong to the process and are dropped when *any* descriptor of the file is
/// closed by it; callers take the dotlock first, which keeps other openers in this process
/// from ever opening the file while we hold it.
pub(crate) fn fcntl_exclusive(file: &File, path: &Path) -> Result<()> {
    match fcntl_lock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::ACCESS) => {
            Err(Error::InUse { path: path.to_path_buf(), holder: None })
        }
        Err(e) => Err(Error::io("fcntl lock", path, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_use(r: Result<DotLock>) -> Option<u32> {
        match r {
            Err(Error::InUse { holder, .. }) => holder,
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    fn age(path: &Path, secs: u64) {
        let old = SystemTime::now() - Duration::from_secs(secs);
        File::options().write(true).open(path).unwrap().set_modified(old).unwrap();
    }

    #[test]
    fn excludes_in_process_holds_no_descriptor_and_releases_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().join("l");
        let a = DotLock::acquire_file(&lp, dir.path(), 0o600).unwrap();
        // Holding locks costs no descriptors: 200 held locks, far fewer than 200 more open
        // descriptors (other tests in this process open files meanwhile, briefly).
        let fds = || fs::read_dir("/proc/self/fd").map(|d| d.count()).ok();
        let before = fds();
        let many: Vec<DotLock> = (0..200)
            .map(|i| DotLock::acquire_file(&dir.path().join(format!("m{i}")), dir.path(), 0o600))
            .collect::<Result<_>>()
            .unwrap();
        if let (Some(b), Some(after)) = (before, fds()) {
            assert!(after < b + 100, "{b} descriptors before 200 locks, {after} while held");
        }
        drop(many);
        let text = fs::read_to_string(&lp).unwrap();
        let stamp = Stamp::parse(&text);
        assert_eq!(stamp.pid, Some(std::process::id()));
        assert_eq!(stamp.host.as_deref(), Some(maildir_hostname()));
        assert_eq!(stamp.start, own_start());
        assert_eq!(in_use(DotLock::acquire_file(&lp, dir.path(), 0o600)), Some(std::process::id()));
        // The same file under another name (a symlinked directory): the inode registry
        // recognises our own live lock.
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(dir.path(), &alias).unwrap();
        assert!(in_use(DotLock::acquire_file(&alias.join("l"), dir.path(), 0o600)).is_some());
        assert!(lp.exists(), "the refused acquire left the lock in place");
        drop(a);
        assert!(!lp.exists());
        let b = DotLock::acquire_file(&alias.join("l"), dir.path(), 0o600).unwrap();
        assert!(DotLock::acquire_file(&lp, dir.path(), 0o600).is_err());
        drop(b);
        DotLock::acquire_file(&lp, dir.path(), 0o600).unwrap();
    }

    #[test]
    fn our_pid_without_registration_is_a_previous_process_and_stale() {
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().join("l");
        fs::write(&lp, Stamp::ours()).unwrap();
        let a = DotLock::acquire_file(&lp, dir.path(), 0o600).unwrap();
        drop(a);
        assert!(!lp.exists());
    }

    #[test]
    fn release_leaves_a_lock_that_replaced_ours() {
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().join("l");
        let a = DotLock::acquire_file(&lp, dir.path(), 0o600).unwrap();
        // Another file renamed over ours (a new inode while ours still exists).
        fs::write(dir.path().join("other"), "1\n").unwrap();
        fs::rename(dir.path().join("other"), &lp).unwrap();
        drop(a);
        assert_eq!(fs::read_to_string(&lp).unwrap(), "1\n");
    }

    #[test]
    fn stale_when_dead_reused_old_or_foreign_and_old() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mbox");
        let lp = DotLock::path_for(&target);
        let a = DotLock::acquire(&target).unwrap();
        assert!(matches!(DotLock::acquire(&target), Err(Error::InUse { .. })));
        drop(a);
        assert!(!lp.exists());
        // A dead pid: a child that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(&lp, format!("{dead}\n")).unwrap();
        drop(DotLock::acquire(&target).unwrap());
        // A live process: held; the same pid with another start time: reused, stale.
        let mut live = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = live.id();
        let start = proc_stat(&pid.to_string()).and_then(|(_, s)| s);
        fs::write(&lp, format!("{pid}\n{}\n{}\n", maildir_hostname(), start.unwrap_or(0))).unwrap();
        let held = DotLock::acquire(&target);
        if let Some(start) = start {
            fs::write(&lp, format!("{pid}\n{}\n{}\n", maildir_hostname(), start + 1)).unwrap();
            let reused = DotLock::acquire(&target);
            drop(reused.expect("a reused pid is stale"));
        }
        let _ = live.kill();
        let _ = live.wait();
        assert_eq!(in_use(held), Some(pid));
        // No pid and fresh: respected (Postfix and mutt write empty dotlocks); old: stale.
        fs::write(&lp, "").unwrap();
        assert_eq!(in_use(DotLock::acquire(&target)), None);
        age(&lp, 1000);
        drop(DotLock::acquire(&target).unwrap());
        // Another host: its pid means nothing here; respected while fresh, stale when old.
        fs::write(&lp, format!("{dead}\nelsewhere.example\n")).unwrap();
        assert_eq!(in_use(DotLock::acquire(&target)), Some(dead));
        age(&lp, 1000);
        drop(DotLock::acquire(&target).unwrap());
        // Nothing left behind by breaking: no aside files.
        let left: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_symlink_lock_holds_its_stamp_in_its_target_and_is_broken_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().join("l");
        let a = DotLock::acquire_symlink(&lp, dir.path()).unwrap();
        let meta = fs::symlink_metadata(&lp).unwrap();
        assert!(meta.file_type().is_symlink());
        assert_eq!(meta.len() as usize, Stamp::ours().len(), "the stamp is the target");
        assert_eq!(
            Stamp::parse(&fs::read_link(&lp).unwrap().to_string_lossy()).pid,
            Some(std::process::id())
        );
        // Held: refused in this process (registry) and as seen from the file (inode).
        assert_eq!(in_use(DotLock::acquire_symlink(&lp, dir.path())), Some(std::process::id()));
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(dir.path(), &alias).unwrap();
        assert!(in_use(DotLock::acquire_symlink(&alias.join("l"), dir.path())).is_some());
        drop(a);
        assert!(fs::symlink_metadata(&lp).is_err(), "released");
        // A symlink naming a dead process is stale and broken; a live one is respected.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::os::unix::fs::symlink(format!("{dead}\n"), &lp).unwrap();
        drop(DotLock::acquire_symlink(&lp, dir.path()).unwrap());
        let mut live = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        std::os::unix::fs::symlink(format!("{}\n", live.id()), &lp).unwrap();
        let held = DotLock::acquire_symlink(&lp, dir.path());
        let _ = live.kill();
        let _ = live.wait();
        assert_eq!(in_use(held), Some(live.id()));
        // No descriptor is held and no file is opened for it.
        assert!(fs::read_dir(dir.path()).unwrap().count() <= 2, "only the lock and the alias");
    }

    #[test]
    fn breaking_puts_back_a_lock_that_replaced_the_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().join("l");
        fs::write(&lp, "").unwrap();
        let stale = fs::metadata(&lp).map(|m| (m.dev(), m.ino())).unwrap();
        // Between the look and the break, a live holder replaced the file.
        fs::write(dir.path().join("new"), "live\n").unwrap();
        fs::rename(dir.path().join("new"), &lp).unwrap();
        let live = fs::metadata(&lp).map(|m| (m.dev(), m.ino())).unwrap();
        assert_ne!(stale, live);
        DotLock::break_stale(&lp, stale).unwrap();
        assert_eq!(fs::read_to_string(&lp).unwrap(), "live\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no aside file left");
        DotLock::break_stale(&lp, live).unwrap();
        assert!(!lp.exists());
    }
}
