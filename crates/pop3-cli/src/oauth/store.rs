//! The token store: one JSON file per account, `$XDG_STATE_HOME/pop3/tokens/ACCOUNT.json`,
//! mode 0600 in a directory of mode 0700.
//!
//! A file is replaced whole: written to a temporary file in the same directory, flushed to
//! disk, renamed over the old one, and the directory flushed; a crash at any point leaves the
//! old file or the new one, never a mix or nothing. Writers (a refresh, `pop3 auth`) hold the
//! account's lock file, so that two runs refreshing at once do not both spend one refresh token.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config;

/// What is stored for an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The provider the tokens come from ([`super::OAuth::key`]).
    pub provider: String,
    /// The client they were issued to.
    pub client_id: String,
    /// Where the refresh token is exchanged (found once, by `pop3 auth`).
    pub token_endpoint: String,
    /// The refresh token.
    pub refresh_token: String,
    /// The last access token, if any.
    pub access_token: Option<String>,
    /// When it expires (unix seconds), if the provider said.
    pub expires_at: Option<u64>,
}

/// The token store of one account.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    name: String,
}

/// The account's lock, held while its tokens are refreshed or replaced; released when dropped.
#[derive(Debug)]
pub struct Locked {
    file: File,
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.file, rustix::fs::FlockOperation::Unlock);
    }
}

impl Store {
    /// The store of `account` under the state directory.
    pub fn new(account: &str) -> Self {
        Self::in_dir(config::state_dir().join("tokens"), account)
    }

    /// The store of `account` in `dir`.
    pub fn in_dir(dir: PathBuf, account: &str) -> Self {
        Self { dir, name: config::file_name(account) }
    }

    /// The token file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.name))
    }

    /// The stored tokens, `None` if there are none yet.
    pub fn load(&self) -> Result<Option<Stored>, String> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                format!("{}: {e} (run `pop3 auth` again to replace it)", path.display())
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {}", path.display(), config::describe(&e))),
        }
    }

    /// Takes the account's lock (waiting for another run that holds it).
    pub fn lock(&self) -> Result<Locked, String> {
        self.make_dir()?;
        let path = self.dir.join(format!("{}.lock", self.name));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {}", path.display(), config::describe(&e)))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Locked { file })
    }

    /// Replaces the stored tokens, durably (see the module's comment). The caller holds the
    /// lock.
    pub fn save(&self, _lock: &Locked, stored: &Stored) -> Result<(), String> {
        let path = self.path();
        let fail =
            |what: &Path, e: io::Error| format!("{}: {}", what.display(), config::describe(&e));
        let tmp = self.dir.join(format!(".{}.json.tmp", self.name));
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail(&tmp, e))?;
        // A temporary file left by an older run may have other permissions.
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| fail(&tmp, e))?;
        let json = serde_json::to_vec_pretty(stored).map_err(|e| e.to_string())?;
        file.write_all(&json).and_then(|()| file.sync_all()).map_err(|e| fail(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(|e| fail(&path, e))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| fail(&self.dir, e))
    }

    /// The directory, created 0700 (and made so if it was more open).
    fn make_dir(&self) -> Result<(), String> {
        let fail = |e: io::Error| format!("{}: {}", self.dir.display(), config::describe(&e));
        DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(fail)?;
        let mode = std::fs::metadata(&self.dir).map_err(fail)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(fail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(refresh: &str) -> Stored {
        Stored {
            provider: "google".into(),
            client_id: "id".into(),
            token_endpoint: "https://oauth2.googleapis.com/token".into(),
            refresh_token: refresh.into(),
            access_token: Some("at".into()),
            expires_at: Some(1),
        }
    }

    #[test]
    fn saved_private_and_replaced_whole() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("tokens");
        let store = Store::in_dir(dir.clone(), "work/mail");
        assert_eq!(store.load(), Ok(None));
        let lock = store.lock().unwrap();
        store.save(&lock, &stored("one")).unwrap();
        store.save(&lock, &stored("two")).unwrap();
        assert_eq!(store.load().unwrap().unwrap().refresh_token, "two");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.path()), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(store.path().file_name().unwrap(), "work_mail.json");
        // Nothing but the file and its lock is left.
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["work_mail.json", "work_mail.lock"]);
    }

    #[test]
    fn a_garbled_file_is_an_error_that_says_what_to_do() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::in_dir(home.path().to_owned(), "a");
        std::fs::write(store.path(), b"{\"refresh_to").unwrap();
        assert!(store.load().unwrap_err().contains("pop3 auth"));
    }
}
