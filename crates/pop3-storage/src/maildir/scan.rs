//! Listing `new/` and `cur/`, and reading a message once to size it.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::name::Listing;
use super::Sub;
use crate::error::IoContext;
use crate::{Error, Result, SizeCounter, CHUNK};

/// Size of the buffer `getdents64` fills: about 500 Maildir names per system call.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) const DIR_BUF: usize = 32 * 1024;

/// Appends the messages of `root/sub` to `out`.
///
/// On Linux the directory is read with `getdents64` into one reused buffer
/// ([`rustix::fs::RawDir`]): no allocation and no `stat` per entry, the file type comes from
/// `d_type`; only symlinks and file systems that report no type are `stat`ed.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn scan(root: &Path, sub: Sub, out: &mut Listing) -> Result<()> {
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
pub(super) fn scan(root: &Path, sub: Sub, out: &mut Listing) -> Result<()> {
    scan_std(root, sub, out)
}

#[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
pub(super) fn scan_std(root: &Path, sub: Sub, out: &mut Listing) -> Result<()> {
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

/// Opens a message file for reading, refusing a symbolic link (`ELOOP`): one put in place of
/// a listed message must not lead outside the Maildir.
pub(super) fn open_message(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Reads a message once: (RFC 1939 size, stored length).
pub(super) fn measure(path: &Path) -> Result<(u64, u64)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::Maildir;

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
}
