//! Where users' maildrops are, and the user-name check that guards every path.

use std::fmt;
use std::io::Read;
use std::path::{Component, PathBuf};
use std::sync::Arc;

use pop3_storage::{
    DovecotUidlFormat, Envelope, Error, Maildir, MaildirOptions, Maildrop, Mbox, Store,
};

use crate::UserInfo;

/// Longest accepted user name, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;

/// True if `name` may be used as a login name and inside a maildrop path: 1 to 64 bytes, no
/// `/`, `\`, `:` (the passwd-file separator), `%`, whitespace, NUL or other control
/// characters, and not starting with `.` (so neither `.`, `..` nor a hidden file). Anything
/// else is a failed login, decided before a path is built.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USERNAME_LEN
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '\\' | ':' | '%'))
}

/// Opens a verified user's maildrop. Called on tokio's blocking pool.
pub trait Mailboxes: Send + Sync + fmt::Debug {
    /// Opens and locks `user`'s maildrop.
    fn open(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Maildrop>>;
}

/// Any `pop3-storage` [`Store`] (e.g. `MemoryStore` in tests), keyed by user name.
#[derive(Debug, Clone)]
pub struct StoreMailboxes(pub Arc<dyn Store>);

impl Mailboxes for StoreMailboxes {
    fn open(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Maildrop>> {
        self.0.open(&user.name)
    }
}

/// Maildrop format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFormat {
    /// A Maildir (`new/`, `cur/`, `tmp/`).
    Maildir,
    /// An mbox file.
    Mbox,
}

/// Maildrops found from a template: `%u` is the user name, `%h` the home directory from the
/// users file, `%%` a percent sign; e.g. `/var/mail/%u` or `%h/Maildir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailLocation {
    /// The format.
    pub format: MailFormat,
    /// The template.
    pub template: String,
    /// Create a missing Maildir (`new/`, `cur/`, `tmp/`) on first use (default true).
    pub create: bool,
    /// For Maildirs that Dovecot served: its `pop3_uidl_format`, so that the messages of
    /// its `dovecot-uidlist` keep the UIDLs it served (default Dovecot's, `%08Xu%08Xv`).
    pub dovecot_uidl_format: DovecotUidlFormat,
}

impl MailLocation {
    /// Maildirs at `template`, created on first use.
    pub fn maildir(template: impl Into<String>) -> Self {
        Self {
            format: MailFormat::Maildir,
            template: template.into(),
            create: true,
            dovecot_uidl_format: DovecotUidlFormat::default(),
        }
    }

    /// mbox files at `template`.
    pub fn mbox(template: impl Into<String>) -> Self {
        Self {
            format: MailFormat::Mbox,
            template: template.into(),
            create: true,
            dovecot_uidl_format: DovecotUidlFormat::default(),
        }
    }

    /// The maildrop path for `user`. Fails with [`Error::InvalidUser`] for a name that
    /// [`valid_username`] refuses, a `%h` without a home directory (or a relative one), an
    /// unknown `%` escape, or a result with `..` components.
    pub fn path_for(&self, user: &UserInfo) -> pop3_storage::Result<PathBuf> {
        let invalid = || Error::InvalidUser(user.name.clone());
        if !valid_username(&user.name) {
            return Err(invalid());
        }
        let mut out = String::with_capacity(self.template.len() + user.name.len());
        let mut chars = self.template.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('u') => out.push_str(&user.name),
                Some('h') => {
                    let home =
                        user.home.as_ref().filter(|h| h.is_absolute()).ok_or_else(invalid)?;
                    out.push_str(home.to_str().ok_or_else(invalid)?);
                }
                Some('%') => out.push('%'),
                _ => return Err(invalid()),
            }
        }
        let path = PathBuf::from(out);
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(invalid());
        }
        Ok(path)
    }

    /// Delivers one message to `user`'s maildrop (Maildir: tmp → fsync → new; mbox: locked
    /// append), creating a missing Maildir when [`create`](Self::create) is set.
    pub fn deliver(
        &self,
        user: &UserInfo,
        message: &mut dyn Read,
        envelope: &Envelope,
    ) -> pop3_storage::Result<()> {
        let path = self.path_for(user)?;
        match self.format {
            MailFormat::Maildir => {
                let maildir = Maildir::new(path);
                if self.create && !maildir.path().join("cur").is_dir() {
                    maildir.create_dirs()?;
                }
                maildir.deliver(message).map(drop)
            }
            MailFormat::Mbox => Mbox::new(path).deliver(message, envelope),
        }
    }
}

impl Mailboxes for MailLocation {
    fn open(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Maildrop>> {
        let path = self.path_for(user)?;
        match self.format {
            MailFormat::Maildir => {
                let options = MaildirOptions {
                    dovecot_uidl_format: self.dovecot_uidl_format.clone(),
                    ..MaildirOptions::default()
                };
                let maildir = Maildir::with_options(path, options);
                if self.create && !maildir.path().join("cur").is_dir() {
                    maildir.create_dirs()?;
                }
                Ok(Box::new(maildir.open()?))
            }
            MailFormat::Mbox => Ok(Box::new(Mbox::new(path).open()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for good in ["alice", "bob.smith", "a@example.org", "x+y_z-1", "élodie"] {
            assert!(valid_username(good), "{good:?}");
        }
        let long = "a".repeat(MAX_USERNAME_LEN + 1);
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "a\0b", "a\nb", "a b", ".hidden", "a:b", "%u",
            &long,
        ] {
            assert!(!valid_username(bad), "{bad:?}");
        }
    }

    #[test]
    fn templates() {
        let alice = UserInfo { name: "alice".into(), home: Some("/home/alice".into()) };
        let loc = MailLocation::maildir("/var/mail/%u");
        assert_eq!(loc.path_for(&alice).unwrap(), PathBuf::from("/var/mail/alice"));
        let loc = MailLocation::maildir("%h/Maildir");
        assert_eq!(loc.path_for(&alice).unwrap(), PathBuf::from("/home/alice/Maildir"));
        assert!(loc.path_for(&UserInfo::new("alice")).is_err(), "%h without a home");
        let rel = UserInfo { name: "bob".into(), home: Some("home/bob".into()) };
        assert!(loc.path_for(&rel).is_err(), "relative home");
        assert!(MailLocation::maildir("/m/%x").path_for(&alice).is_err());
        assert!(MailLocation::maildir("/m/%u").path_for(&UserInfo::new("../x")).is_err());
        let dotdot = UserInfo { name: "bob".into(), home: Some("/home/../etc".into()) };
        assert!(loc.path_for(&dotdot).is_err());
    }
}
