//! Where a user's maildrop is: the one user-name rule and the one location template syntax.
//!
//! Every maildrop path is built here, from a [`User`] (name and home directory) and a
//! [`Template`] in Dovecot's `mail_location` syntax, which operators already know:
//!
//! | escape | expands to |
//! | --- | --- |
//! | `%u` | the user name, e.g. `alice@example.org` |
//! | `%n` | its user part, before the first `@` (`alice`); the whole name without `@` |
//! | `%d` | its domain part, after the first `@` (`example.org`) |
//! | `%h` | the home directory (an absolute path) |
//! | `%%` | a percent sign |
//!
//! The user name is checked first ([`valid_user_name`]): a name that could leave the
//! template's directory never reaches a path. An escape that expands to nothing (`%d` for a
//! name without `@`, `%h` for a user without a home) and a result with a `..` component are
//! refused ([`Error::InvalidUser`]), so a template cannot point at a directory shared by
//! several users.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::sink::{BatchLimits, MaildirSink, MboxSink, Modes, Sink};
use crate::{Backend, Error, Maildir, MaildirOptions, Maildrop, Mbox, Result};

/// Longest accepted user name, in octets.
pub const MAX_USER_NAME_LEN: usize = 64;

/// True if `name` may be a login name and part of a maildrop path: 1 to 64 octets, no `/`,
/// `\`, `:` (the passwd-file separator), `%` (the template escape), whitespace, NUL or other
/// control characters, and not starting with `.` (so neither `.`, `..` nor a hidden file).
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_NAME_LEN
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '\\' | ':' | '%'))
}

/// Checks `name` with [`valid_user_name`].
pub(crate) fn check_user(name: &str) -> Result<()> {
    if valid_user_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidUser(name.to_owned()))
    }
}

/// A user whose maildrop is wanted: the login name and, if the user database knows one, the
/// home directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// The login name (`%u`).
    pub name: String,
    /// The home directory (`%h`).
    pub home: Option<PathBuf>,
}

impl User {
    /// A user with a name only.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), home: None }
    }

    /// A user with a name and a home directory.
    pub fn with_home(name: impl Into<String>, home: impl Into<PathBuf>) -> Self {
        Self { name: name.into(), home: Some(home.into()) }
    }
}

/// A location template such as `/var/mail/%u`, `%h/Maildir` or `/srv/mail/%d/%n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

/// A template with an escape other than `%u %n %d %h %%`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What follows the `%` (empty at the end of the template).
    pub escape: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "location {:?}: unknown escape %{} (known: %u %n %d %h %%)",
            self.template, self.escape
        )
    }
}

impl std::error::Error for TemplateError {}

/// The escapes of a template, in order, and the literal text between them.
enum Piece<'a> {
    Text(&'a str),
    Escape(char),
}

fn pieces(template: &str) -> impl Iterator<Item = std::result::Result<Piece<'_>, String>> {
    let mut rest = template;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find('%') {
            Some(0) => {
                let mut chars = rest[1..].chars();
                let piece = match chars.next() {
                    Some(c @ ('u' | 'n' | 'd' | 'h' | '%')) => Ok(Piece::Escape(c)),
                    Some(c) => Err(c.to_string()),
                    None => Err(String::new()),
                };
                rest = chars.as_str();
                Some(piece)
            }
            Some(at) => {
                let (text, tail) = rest.split_at(at);
                rest = tail;
                Some(Ok(Piece::Text(text)))
            }
            None => Some(Ok(Piece::Text(std::mem::take(&mut rest)))),
        }
    })
}

impl Template {
    /// Checks that every `%` starts a known escape.
    pub fn parse(template: impl Into<String>) -> std::result::Result<Self, TemplateError> {
        let template = template.into();
        let unknown = pieces(&template).find_map(|p| p.err());
        if let Some(escape) = unknown {
            return Err(TemplateError { template, escape });
        }
        Ok(Self(template))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if the template uses the home directory (`%h`).
    pub fn needs_home(&self) -> bool {
        pieces(&self.0).any(|p| matches!(p, Ok(Piece::Escape('h'))))
    }

    /// True if no two users share a maildrop: the template names the whole user (`%u`, or
    /// both `%n` and `%d`) or their home (`%h`).
    pub fn is_per_user(&self) -> bool {
        let has = |c: char| pieces(&self.0).any(|p| matches!(p, Ok(Piece::Escape(e)) if e == c));
        has('u') || has('h') || (has('n') && has('d'))
    }

    /// The maildrop path of `user`. Fails with [`Error::InvalidUser`] for a name
    /// [`valid_user_name`] refuses, an escape that expands to nothing (`%h` without a home
    /// directory or with a relative one, `%n` or `%d` of a name without that part), or a
    /// result with a `..` component.
    pub fn expand(&self, user: &User) -> Result<PathBuf> {
        check_user(&user.name)?;
        let invalid = || Error::InvalidUser(user.name.clone());
        let (local, domain) = match user.name.split_once('@') {
            Some((local, domain)) => (local, domain),
            None => (user.name.as_str(), ""),
        };
        let mut out = String::with_capacity(self.0.len() + user.name.len());
        for piece in pieces(&self.0) {
            let text = match piece.map_err(|_| invalid())? {
                Piece::Text(text) => text,
                Piece::Escape('%') => "%",
                Piece::Escape('u') => &user.name,
                Piece::Escape('n') => local,
                Piece::Escape('d') => domain,
                Piece::Escape(_) => {
                    let home = user.home.as_deref().filter(|h| h.is_absolute());
                    home.and_then(Path::to_str).ok_or_else(invalid)?
                }
            };
            if text.is_empty() {
                return Err(invalid());
            }
            out.push_str(text);
        }
        let path = PathBuf::from(out);
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(invalid());
        }
        Ok(path)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Maildrop format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Maildir (`new/`, `cur/`, `tmp/`).
    Maildir,
    /// An mbox file.
    Mbox,
}

/// Users' maildrops on this host's file systems: a format and a [`Template`]. The one place
/// that maps a [`User`] to a Maildir or an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    format: Format,
    template: Template,
    maildir: MaildirOptions,
}

impl Location {
    /// Maildirs at `template`.
    pub fn maildir(template: Template, options: MaildirOptions) -> Self {
        Self { format: Format::Maildir, template, maildir: options }
    }

    /// mbox files at `template`.
    pub fn mbox(template: Template) -> Self {
        Self { format: Format::Mbox, template, maildir: MaildirOptions::default() }
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The template.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The maildrop path of `user` (see [`Template::expand`]).
    pub fn path_for(&self, user: &User) -> Result<PathBuf> {
        self.template.expand(user)
    }

    /// The Maildir of `user`, with this location's options.
    pub fn maildir_for(&self, user: &User) -> Result<Maildir> {
        Ok(Maildir::with_options(self.path_for(user)?, self.maildir.clone()))
    }

    /// A delivery sink into `user`'s maildrop, creating what is missing with `modes`, with
    /// batches sealed at `limits` (see [`crate::sink`]). A Maildir stores the messages in
    /// [wire form](crate::wire), which the server sends with `sendfile`.
    pub fn sink_with(
        &self,
        user: &User,
        modes: Modes,
        limits: BatchLimits,
    ) -> Result<Box<dyn Sink>> {
        let path = self.path_for(user)?;
        Ok(match self.format {
            Format::Maildir => {
                let mut sink = MaildirSink::open(path, modes, limits)?;
                sink.set_wire_form(true);
                Box::new(sink)
            }
            Format::Mbox => Box::new(MboxSink::open(path, modes, limits)?),
        })
    }
}

impl Backend for Location {
    /// Opens and locks `user`'s maildrop; a missing Maildir is created when the options say
    /// so ([`MaildirOptions::create`]).
    fn open(&self, user: &User) -> Result<Box<dyn Maildrop>> {
        let path = self.path_for(user)?;
        match self.format {
            Format::Maildir => {
                Ok(Box::new(Maildir::with_options(path, self.maildir.clone()).open()?))
            }
            Format::Mbox => Ok(Box::new(Mbox::new(path).open()?)),
        }
    }

    /// A sink with private modes (0700, 0600) and the default batch limits. A missing
    /// Maildir is always created: delivery is how a new user's first message arrives.
    fn sink(&self, user: &User) -> Result<Box<dyn Sink>> {
        self.sink_with(user, Modes::PRIVATE, BatchLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for good in ["alice", "bob.smith", "a@example.org", "x+y_z-1", "élodie"] {
            assert!(valid_user_name(good), "{good:?}");
        }
        let long = "a".repeat(MAX_USER_NAME_LEN + 1);
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "a\0b", "a\nb", "a b", ".hidden", "a:b", "%u",
            &long,
        ] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }

    fn expand(template: &str, user: &User) -> Result<PathBuf> {
        Template::parse(template).unwrap().expand(user)
    }

    #[test]
    fn dovecot_escapes() {
        let alice = User::with_home("alice@example.org", "/home/alice");
        let path = |t: &str| expand(t, &alice).unwrap();
        assert_eq!(path("/var/mail/%u"), PathBuf::from("/var/mail/alice@example.org"));
        assert_eq!(path("/srv/%d/%n/Maildir"), PathBuf::from("/srv/example.org/alice/Maildir"));
        assert_eq!(path("%h/Maildir"), PathBuf::from("/home/alice/Maildir"));
        assert_eq!(path("/m/100%%/%n"), PathBuf::from("/m/100%/alice"));
        let bob = User::new("bob");
        assert_eq!(expand("/var/mail/%n", &bob).unwrap(), PathBuf::from("/var/mail/bob"));
    }

    #[test]
    fn what_cannot_name_a_maildrop_is_refused() {
        let invalid = |t: &str, u: &User| matches!(expand(t, u), Err(Error::InvalidUser(_)));
        assert!(invalid("%h/Maildir", &User::new("alice")), "%h without a home");
        assert!(invalid("%h/Maildir", &User::with_home("bob", "home/bob")), "relative home");
        assert!(invalid("%h/M", &User::with_home("bob", "/home/../etc")), "`..` in the home");
        assert!(invalid("/var/mail/%d", &User::new("bob")), "%d of a name without @");
        assert!(invalid("/var/mail/%n", &User::new("@example.org")), "empty user part");
        assert!(invalid("/var/mail/%d/x", &User::new("a@..")), "`..` as the domain");
        assert!(invalid("/var/mail/%u", &User::new("../x")));
        assert!(invalid("/var/mail/%u", &User::new("")));
    }

    #[test]
    fn unknown_escapes_are_refused_when_parsed() {
        for bad in ["/m/%x", "/m/%", "/m/{user}%"] {
            let e = Template::parse(bad).unwrap_err();
            assert_eq!(e.template, bad);
            assert!(e.to_string().contains("unknown escape"), "{e}");
        }
        assert!(Template::parse("/m/{user}").is_ok(), "braces are literal text");
        assert!(Template::parse("%h/Maildir").unwrap().needs_home());
        assert!(!Template::parse("/m/%%h").unwrap().needs_home());
        for (t, per_user) in [
            ("/m/%u", true),
            ("%h/M", true),
            ("/m/%d/%n", true),
            ("/m/%n", false),
            ("/m/%d", false),
            ("/m/%%u", false),
            ("/m/x", false),
        ] {
            assert_eq!(Template::parse(t).unwrap().is_per_user(), per_user, "{t}");
        }
    }
}
