//! Locks: `flock` on a lock file (Maildir), and dotlock + `fcntl` (mbox).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{fcntl_lock, flock, FlockOperation};

use crate::error::IoContext;
use crate::{Error, Result};

/// An exclusive `flock` on a lock file, held for as long as this value lives.
///
/// `flock` locks belong to the open file description, so a second open in the same process
/// conflicts just like one in another process; the kernel drops the lock when the holder
/// dies, so a lock file left by a dead process is not a lock at all (stale-lock recovery is
/// automatic). The file is never removed: removing it would let two openers lock two
/// different inodes.
#[derive(Debug)]
pub(crate) struct FlockFile {
    _file: File,
}

impl FlockFile {
    /// Takes the lock without waiting; [`Error::InUse`] if someone holds it.
    pub(crate) fn acquire(lock_path: &Path, maildrop: &Path) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .ctx("open lock file", lock_path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(Error::InUse {
                    path: maildrop.to_path_buf(),
                    holder: read_pid(&mut file),
                })
            }
            Err(e) => return Err(Error::io("flock", lock_path, e.into())),
        }
        // Informational only (the lock is the flock): who holds it, for error messages.
        file.set_len(0).ctx("truncate lock file", lock_path)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .ctx("write lock file", lock_path)?;
        Ok(Self { _file: file })
    }
}

fn read_pid(file: &mut impl Read) -> Option<u32> {
    let mut s = String::new();
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// A dotlock file left without a readable pid is considered stale after this long
/// (Postfix's `stale_lock_time` default is 500 s).
const STALE_DOTLOCK: Duration = Duration::from_secs(500);

/// A `NAME.lock` dotlock, removed on drop.
///
/// Created with `O_CREAT|O_EXCL`, so it excludes other openers in this process as well.
/// It holds our pid; a dotlock whose pid names a dead process on this host, or one
/// without a pid older than 500 s, is stale and removed.
#[derive(Debug)]
pub(crate) struct DotLock {
    path: PathBuf,
}

impl DotLock {
    pub(crate) fn path_for(target: &Path) -> PathBuf {
        let mut name = target.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    pub(crate) fn acquire(target: &Path) -> Result<Self> {
        let path = Self::path_for(target);
        // A few rounds: each stale lock we remove may be re-created by a live process.
        for _ in 0..5 {
            match OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path) {
                Ok(mut f) => {
                    let lock = Self { path };
                    f.write_all(format!("{}\n", std::process::id()).as_bytes())
                        .ctx("write dotlock", &lock.path)?;
                    return Ok(lock);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let (stale, holder) = Self::is_stale(&path)?;
                    if !stale {
                        return Err(Error::InUse { path: target.to_path_buf(), holder });
                    }
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io("remove stale dotlock", &path, e)),
                    }
                }
                Err(e) => return Err(Error::io("create dotlock", &path, e)),
            }
        }
        Err(Error::InUse { path: target.to_path_buf(), holder: None })
    }

    /// Whether the existing dotlock at `path` is stale, and the pid it names.
    fn is_stale(path: &Path) -> Result<(bool, Option<u32>)> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            // Vanished between our create and this open: stale in the sense "retry".
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((true, None)),
            Err(e) => return Err(Error::io("open dotlock", path, e)),
        };
        let meta = file.metadata().ctx("stat dotlock", path)?;
        match read_pid(&mut file) {
            Some(pid) if pid == std::process::id() => Ok((false, Some(pid))),
            Some(pid) => {
                let alive = match rustix::process::Pid::from_raw(pid as i32) {
                    Some(p) => !matches!(
                        rustix::process::test_kill_process(p),
                        Err(rustix::io::Errno::SRCH)
                    ),
                    None => false,
                };
                Ok((!alive, Some(pid)))
            }
            None => {
                let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(meta.mtime() as u64);
                let age = SystemTime::now().duration_since(modified).unwrap_or_default();
                Ok((age > STALE_DOTLOCK, None))
            }
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
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

    /// Tests that spawn processes run apart from tests that check lock release: between fork
    /// and exec a child briefly shares our open file descriptions, and with them our flocks.
    static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn flock_excludes_a_second_opener_in_process_and_releases_on_drop() {
        let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().join("l");
        let a = FlockFile::acquire(&lp, dir.path()).unwrap();
        match FlockFile::acquire(&lp, dir.path()) {
            Err(Error::InUse { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(a);
        FlockFile::acquire(&lp, dir.path()).unwrap();
    }

    #[test]
    fn dotlock_excludes_and_recovers_stale() {
        let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mbox");
        let a = DotLock::acquire(&target).unwrap();
        assert!(matches!(DotLock::acquire(&target), Err(Error::InUse { .. })));
        drop(a);
        assert!(!DotLock::path_for(&target).exists());
        // A dead pid: a child that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(DotLock::path_for(&target), format!("{dead}\n")).unwrap();
        let b = DotLock::acquire(&target).unwrap();
        drop(b);
        // No pid and fresh: respected (Postfix and mutt write empty dotlocks).
        fs::write(DotLock::path_for(&target), "").unwrap();
        assert!(matches!(DotLock::acquire(&target), Err(Error::InUse { .. })));
        // No pid and old: stale.
        let old = SystemTime::now() - Duration::from_secs(1000);
        File::options()
            .write(true)
            .open(DotLock::path_for(&target))
            .unwrap()
            .set_modified(old)
            .unwrap();
        DotLock::acquire(&target).unwrap();
    }
}
