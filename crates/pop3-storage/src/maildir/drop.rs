//! An open Maildir: reading messages and committing deletions.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::cache::CACHE_FILE;
use super::name::{base_of, field, field_value, Entry};
use super::scan::open_message;
use super::{sync_dir, DeleteMode, MaildirOptions, Sub};
use crate::error::IoContext;
use crate::lock::DotLock;
use crate::util::failpoint;
use crate::wire::DotLines;
use crate::{Error, Maildrop, MessageInfo, MessageReader, Result, WireMessage};

/// An open Maildir maildrop (see [`Maildir::open`](super::Maildir::open)).
#[derive(Debug)]
pub struct MaildirDrop {
    pub(super) root: PathBuf,
    pub(super) options: MaildirOptions,
    pub(super) lock: Option<DotLock>,
    /// The file names of all entries, back to back.
    pub(super) names: Vec<u8>,
    pub(super) entries: Vec<Entry>,
    pub(super) infos: Vec<MessageInfo>,
}

impl MaildirDrop {
    pub(super) fn live(&self) -> Result<()> {
        if self.lock.is_none() {
            return Err(Error::Committed);
        }
        Ok(())
    }

    pub(super) fn entry(&self, index: usize) -> Result<&Entry> {
        self.live()?;
        self.entries.get(index).ok_or(Error::NoSuchMessage(index))
    }

    /// Where message `index` is now: its snapshot path, or, if another program moved it
    /// (`new/` → `cur/`, flag change), wherever a file with the same BASE is. `None` if gone.
    pub(super) fn locate(&self, e: &Entry) -> Result<Option<PathBuf>> {
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

    pub(super) fn gone(&self, index: usize) -> Error {
        Error::MessageGone { index, uidl: self.infos[index].uidl.clone() }
    }

    /// The path of the Maildir.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Opens the file of message `index` (entry `e`): the snapshot's path first (no stat
    /// before the open: one lookup per read); only if it is gone is the message looked for
    /// under another name.
    fn open_entry(&self, index: usize, e: &Entry) -> Result<(PathBuf, fs::File)> {
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
        Ok((path, file))
    }

    /// The wire form a name records: `,S=` and `,W=` equal and a well-formed `,D=` field
    /// (see [`crate::wire`]): the length and the dot lines.
    fn wire_fields(base: &[u8]) -> Option<(u64, DotLines)> {
        let len = field(base, b'W')?;
        if field(base, b'S')? != len {
            return None;
        }
        Some((len, DotLines::parse(field_value(base, b'D')?, len)?))
    }
}

impl Maildrop for MaildirDrop {
    fn is_local(&self) -> bool {
        true // a local file, most likely in the page cache since the snapshot was taken
    }

    fn messages(&self) -> &[MessageInfo] {
        &self.infos
    }

    fn read_message(&self, index: usize) -> Result<MessageReader<'_>> {
        let e = self.entry(index)?;
        let (path, file) = self.open_entry(index, e)?;
        // The stored length, when known, is checked as the file is read rather than with
        // an `fstat` per read: Maildir messages are immutable, one that changed makes our
        // size a lie, and the cache is dropped so the next open measures again.
        Ok(match e.raw_len {
            Some(raw) => MessageReader::checked(file, raw, path, Some(self.root.join(CACHE_FILE))),
            None => MessageReader::file(file),
        })
    }

    /// A message our delivery stored in wire form, named so (`,S=` = `,W=`, `,D=`): opened,
    /// neither read nor `stat`ed (the name says its length).
    fn wire_message(&self, index: usize) -> Result<Option<WireMessage>> {
        let e = self.entry(index)?;
        let Some((len, dots)) = Self::wire_fields(e.base(&self.names)) else {
            return Ok(None);
        };
        if self.infos[index].size != len {
            return Ok(None); // sized otherwise (a Dovecot uidlist cannot do that, but be sure)
        }
        let (_, file) = self.open_entry(index, e)?;
        Ok(Some(WireMessage { file, len, dot_lines: dots.0 }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    fn _assert_send(d: MaildirDrop) -> Box<dyn Send> {
        Box::new(d)
    }
}
