//! Making a batch of staged Maildir files durable: one `syncfs` of their file system, or an
//! `fdatasync` of each, many calls in flight at once.
//!
//! Files are kept open as they are written, and synced together when their batch commits.
//! Per-message fsync, one after the other, costs a device flush per message (what mpop
//! pays). Group commit does better two ways:
//!
//! - `syncfs(2)` writes back everything dirty on the Maildir's file system and flushes the
//!   device once: the fastest of the three ways measured (figures in docs/performance.md,
//!   "Figures behind code comments"). It is used when it costs little
//!   besides the batch itself: on Linux 5.8 or later (earlier kernels do not report write-back
//!   errors from it), and only while the system holds little other dirty data (so that a fetch
//!   never waits for somebody's unrelated large copy to reach the disk).
//! - Otherwise, or when `syncfs` fails (its error may belong to any file of the file system),
//!   each file is `fdatasync`ed, [`THREADS`] calls in flight: calls in flight together share
//!   the file system's journal commits and device flushes, and the disk's queue. Each file's
//!   own error is reported that way.
//!
//! Syncing each file as soon as it was written, while the next ones arrived, measured
//! slower on disk: the writes then wait behind the syncs (figures in docs/performance.md).

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

/// How many `fdatasync` calls are kept in flight.
const THREADS: usize = 16;

/// Dirty data beyond the batch's own that `syncfs` may write back on the batch's behalf.
const SYNCFS_SLACK: u64 = 32 << 20;

/// Makes every one of `files` durable: one file by its own `fdatasync`; more by one `syncfs`
/// of the file system `fs` (any descriptor on it, opened before the files were written, so
/// that its write-back errors are reported) when that is cheap, else by an `fdatasync` of
/// each. `bytes` is what
/// the batch wrote. The first error, if any, means the batch is not known to be durable.
pub(crate) fn make_durable(files: &[&File], fs: BorrowedFd<'_>, bytes: u64) -> io::Result<()> {
    match files {
        [] => return Ok(()),
        // A batch of one (a local delivery): its own fdatasync costs one flush, as a
        // `syncfs` would, without writing back anyone else's data.
        [file] => return file.sync_data(),
        _ => {}
    }
    if syncfs_is_cheap(bytes) && rustix::fs::syncfs(fs).is_ok() {
        return Ok(());
    }
    sync_each(files)
}

/// `fdatasync` of every file, [`THREADS`] calls at a time; the first error, if any.
fn sync_each(files: &[&File]) -> io::Result<()> {
    let threads = THREADS.min(files.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|k| {
                scope.spawn(move || {
                    files.iter().skip(k).step_by(threads).try_for_each(|f| f.sync_data())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| Err(io::Error::other("sync thread panicked")))
        })
    })
}

/// True when `syncfs` reports write-back errors (Linux 5.8 and later) and the system's dirty
/// and in-flight page cache is at most the batch's `bytes` plus [`SYNCFS_SLACK`].
fn syncfs_is_cheap(bytes: u64) -> bool {
    static REPORTS_ERRORS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let reports = *REPORTS_ERRORS.get_or_init(|| {
        kernel_at_least(&rustix::system::uname().release().to_string_lossy(), (5, 8))
    });
    reports
        && std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| unwritten_bytes(&text))
            .is_some_and(|unwritten| unwritten <= bytes.saturating_add(SYNCFS_SLACK))
}

/// Whether a kernel release such as `6.1.0-18-amd64` is at least `(major, minor)`.
fn kernel_at_least(release: &str, want: (u64, u64)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= want,
        _ => false,
    }
}

/// `Dirty` plus `Writeback` from `/proc/meminfo`, in bytes; `None` if either is missing.
fn unwritten_bytes(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?.trim();
            rest.strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some((field("Dirty")? + field("Writeback")?) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn every_file_is_made_durable_by_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let fs = File::open(dir.path()).unwrap();
        for round in 0..3 {
            let files: Vec<File> = (0..200)
                .map(|i| {
                    let path = dir.path().join(format!("{round}-{i}"));
                    std::fs::write(&path, b"x").unwrap();
                    File::open(&path).unwrap()
                })
                .collect();
            let files: Vec<&File> = files.iter().collect();
            // One round with a huge batch size (syncfs where the kernel has it), one with
            // none (syncfs only if nothing at all is dirty), one in between.
            make_durable(&files, fs.as_fd(), [u64::MAX / 2, 0, 1 << 20][round]).unwrap();
        }
        make_durable(&[], fs.as_fd(), 0).unwrap();
        let one = File::open(dir.path().join("0-0")).unwrap();
        make_durable(&[&one], fs.as_fd(), 1).unwrap();
    }

    #[test]
    fn sync_each_reports_an_error() {
        // fdatasync of a socket fails with EINVAL.
        let (socket, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let file = File::open(dir.path().join("f")).unwrap();
        let socket = File::from(std::os::fd::OwnedFd::from(socket));
        assert!(sync_each(&[&file]).is_ok());
        assert!(sync_each(&[&file, &socket]).is_err());
    }

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(kernel_at_least("6.1.0-18-amd64", (5, 8)));
        assert!(kernel_at_least("5.8.0", (5, 8)));
        assert!(kernel_at_least("5.10.209-cloud", (5, 8)));
        assert!(!kernel_at_least("5.4.0-150-generic", (5, 8)));
        assert!(!kernel_at_least("4.19.0", (5, 8)));
        assert!(!kernel_at_least("", (5, 8)));
        assert!(!kernel_at_least("six", (5, 8)));
    }

    #[test]
    fn unwritten_bytes_adds_dirty_and_writeback() {
        let meminfo = "MemTotal:       24000000 kB\nDirty:              1500 kB\n\
                       Writeback:            12 kB\nWritebackTmp:      999 kB\n";
        assert_eq!(unwritten_bytes(meminfo), Some(1512 * 1024));
        assert_eq!(unwritten_bytes("Dirty: 4 kB\n"), None);
        assert_eq!(unwritten_bytes("Dirty: x kB\nWriteback: 0 kB\n"), None);
        let live = std::fs::read_to_string("/proc/meminfo").unwrap();
        assert!(unwritten_bytes(&live).is_some(), "this system's /proc/meminfo: {live}");
    }
}
