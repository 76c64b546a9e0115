//! Maildir delivery: `tmp/` → fsync → `new/`.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{sync_dir, Maildir};
use crate::error::IoContext;
use crate::util::{failpoint, maildir_hostname};
use crate::{Error, Result, SizeCounter, CHUNK};

impl Maildir {
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
