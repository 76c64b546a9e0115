//! Where users' maildrops are. The user-name rule and the location template are
//! `pop3-storage`'s ([`pop3_storage::valid_user_name`], [`pop3_storage::Template`]); this module
//! keeps the server's names for them.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use pop3_storage::sink::{deliver_one, Incoming, Sink};
use pop3_storage::{
    Backend, DovecotUidlFormat, Envelope, Error, Location, MaildirOptions, Maildrop, Template, User,
};

use crate::UserInfo;

/// True if `name` may be used as a login name and inside a maildrop path (see
/// [`pop3_storage::valid_user_name`]: 1 to 64 bytes, no `/`, `\`, `:`, `%`, whitespace or
/// control characters, not starting with `.`). Anything else is a failed login, decided
/// before a path is built.
pub fn valid_username(name: &str) -> bool {
    pop3_storage::valid_user_name(name)
}

/// The storage layer's view of a user.
fn storage_user(user: &UserInfo) -> User {
    User { name: user.name.clone(), home: user.home.clone() }
}

/// Verified users' maildrops: what the POP3 sessions open and the deliverers (`pop3d
/// deliver`, LMTP) store into. Called on blocking threads (tokio's blocking pool).
pub trait Mailboxes: Send + Sync + fmt::Debug {
    /// Opens and locks `user`'s maildrop.
    fn open(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Maildrop>>;

    /// A durable delivery sink into `user`'s maildrop (see [`pop3_storage::sink`]).
    fn sink(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Sink>>;

    /// Delivers one message durably, a batch of one through [`Mailboxes::sink`].
    fn deliver(
        &self,
        user: &UserInfo,
        message: &mut dyn Read,
        envelope: &Envelope,
    ) -> pop3_storage::Result<()> {
        let incoming = Incoming { envelope: envelope.clone(), ..Incoming::default() };
        deliver_one(&mut *self.sink(user)?, &incoming, message).map(drop)
    }
}

/// Any `pop3-storage` [`Backend`]: the PostgreSQL store, or `MemoryStore` in tests.
#[derive(Debug, Clone)]
pub struct StoreMailboxes(pub Arc<dyn Backend>);

impl Mailboxes for StoreMailboxes {
    fn open(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Maildrop>> {
        self.0.open(&storage_user(user))
    }

    fn sink(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Sink>> {
        self.0.sink(&storage_user(user))
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

/// Maildrops found from a template in Dovecot's syntax (see [`pop3_storage::Template`]): `%u`
/// is the user name, `%n` and `%d` its parts before and after `@`, `%h` the home directory
/// from the users file, `%%` a percent sign; e.g. `/var/mail/%u` or `%h/Maildir`.
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

    /// The storage backend this location describes: what the server opens maildrops with
    /// and `pop3d deliver` delivers through.
    pub fn backend(&self) -> Result<Location, pop3_storage::TemplateError> {
        let template = Template::parse(&*self.template)?;
        Ok(match self.format {
            MailFormat::Maildir => {
                let options = MaildirOptions {
                    create: self.create,
                    dovecot_uidl_format: self.dovecot_uidl_format.clone(),
                    ..MaildirOptions::default()
                };
                Location::maildir(template, options)
            }
            MailFormat::Mbox => Location::mbox(template),
        })
    }

    /// [`Self::backend`]; a template with an unknown escape names no maildrop:
    /// [`Error::InvalidUser`] for `user`, as for a name that cannot have one.
    fn location(&self, user: &UserInfo) -> pop3_storage::Result<Location> {
        self.backend().map_err(|_| Error::InvalidUser(user.name.clone()))
    }

    /// The maildrop path for `user`. Fails with [`Error::InvalidUser`] for a name that
    /// [`valid_username`] refuses, an escape that expands to nothing (`%h` without a home
    /// directory or with a relative one, `%d` of a name without `@`), an unknown `%` escape,
    /// or a result with `..` components.
    pub fn path_for(&self, user: &UserInfo) -> pop3_storage::Result<PathBuf> {
        self.location(user)?.path_for(&storage_user(user))
    }

    /// Delivers one message to `user`'s maildrop through the backend's durable sink, a batch
    /// of one (Maildir: `tmp/` → sync → `new/`, creating a missing Maildir; mbox: a locked,
    /// journalled append).
    pub fn deliver(
        &self,
        user: &UserInfo,
        message: &mut dyn Read,
        envelope: &Envelope,
    ) -> pop3_storage::Result<()> {
        self.location(user)?.deliver(&storage_user(user), message, envelope)
    }
}

impl Mailboxes for MailLocation {
    fn open(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Maildrop>> {
        self.location(user)?.open(&storage_user(user))
    }

    fn sink(&self, user: &UserInfo) -> pop3_storage::Result<Box<dyn Sink>> {
        self.location(user)?.sink(&storage_user(user))
    }

    fn deliver(
        &self,
        user: &UserInfo,
        message: &mut dyn Read,
        envelope: &Envelope,
    ) -> pop3_storage::Result<()> {
        MailLocation::deliver(self, user, message, envelope)
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
        let long = "a".repeat(pop3_storage::MAX_USER_NAME_LEN + 1);
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
        // Dovecot's %n and %d.
        let carol = UserInfo::new("carol@example.org");
        let loc = MailLocation::maildir("/srv/%d/%n");
        assert_eq!(loc.path_for(&carol).unwrap(), PathBuf::from("/srv/example.org/carol"));
    }
}
