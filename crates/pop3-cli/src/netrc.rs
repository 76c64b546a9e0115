//! `~/.netrc` (or the file `$NETRC` names) as a password source, read as curl, fetchmail and
//! ftp(1) read it: whitespace-separated tokens; `machine NAME` starts an entry, `default` the
//! entry for every other machine; `login`, `password` and `account` give its fields; `macdef
//! NAME` defines an ftp macro, skipped up to the next empty line. A token may be written in
//! double quotes, with `\"`, `\\`, `\n`, `\r` and `\t` inside (as curl reads it). A `#`
//! where a token starts comments out the rest of the line (as Python's netrc module reads
//! it).
//!
//! The entry used is the first one for the account's host whose `login` is the account's
//! user (or that has no `login`), else the `default` entry on the same terms.
//!
//! A netrc holding a password that its group or others may read is refused (an error for the
//! account, as ftp(1) refuses it; curl does not check): a secret others can read is no secret.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One entry: a machine (`None` for `default`) and its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub machine: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
}

/// Splits a netrc into its tokens, skipping `macdef` bodies.
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            while chars.next_if(|c| *c != '\n').is_some() {}
            continue;
        }
        let mut token = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a quoted token lacks its closing \"".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => token.push('\n'),
                        Some('r') => token.push('\r'),
                        Some('t') => token.push('\t'),
                        Some(c) => token.push(c),
                        None => return Err("a quoted token ends with \\".into()),
                    },
                    Some(c) => token.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                token.push(c);
            }
        }
        let macdef = token == "macdef" && first != '"';
        out.push(token);
        if macdef {
            // The macro's name, then its body up to an empty line (two newlines in a row).
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            while chars.next_if(|c| !c.is_whitespace()).is_some() {}
            let mut newlines = 0;
            for c in chars.by_ref() {
                match c {
                    '\n' => {
                        newlines += 1;
                        if newlines == 2 {
                            break;
                        }
                    }
                    '\r' => {}
                    _ if newlines == 1 => newlines = 0,
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// Parses a netrc into its entries, in order.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let tokens = tokens(text)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut words = tokens.into_iter();
    while let Some(word) = words.next() {
        let mut value = |what: &str| words.next().ok_or(format!("{what} without a value"));
        match word.as_str() {
            "machine" => {
                entries.push(Entry { machine: Some(value("machine")?), ..Entry::default() })
            }
            "default" => entries.push(Entry::default()),
            "login" | "password" | "account" => {
                let value = value(&word)?;
                let Some(entry) = entries.last_mut() else {
                    return Err(format!("{word} before any machine"));
                };
                match word.as_str() {
                    "login" => entry.login = Some(value),
                    "password" => entry.password = Some(value),
                    _ => {}
                }
            }
            "macdef" => {} // its body is skipped by `tokens`
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(entries)
}

/// The password of `user` at `host` in `entries`, if any.
pub fn find<'a>(entries: &'a [Entry], host: &str, user: &str) -> Option<&'a str> {
    let fits = |e: &&Entry| e.login.as_deref().is_none_or(|l| l == user) && e.password.is_some();
    let for_host = |e: &&Entry| e.machine.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(host));
    let default = |e: &&Entry| e.machine.is_none();
    let entry = entries
        .iter()
        .filter(for_host)
        .find(fits)
        .or_else(|| entries.iter().filter(default).find(fits))?;
    entry.password.as_deref()
}

/// Where the netrc is: `$NETRC`, else `~/.netrc`.
pub fn path() -> Option<PathBuf> {
    match std::env::var_os("NETRC").filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("HOME").map(|home| Path::new(&home).join(".netrc")),
    }
}

/// The password of `user` at `host` from the netrc at `path`: `None` when there is no
/// netrc or no entry; an error for a netrc that cannot be read or parsed, or that holds
/// passwords and may be read by others.
pub fn password(path: &Path, host: &str, user: &str) -> Result<Option<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {}", path.display(), crate::config::describe(&e))),
    };
    let entries = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if entries.iter().any(|e| e.password.is_some()) {
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("{}: {}", path.display(), crate::config::describe(&e)))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} holds passwords and its group or others may read it (mode {:o}): \
                 refused; chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    Ok(find(&entries, host, user).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_defaults_macdef_and_quoting() {
        let text = "# a comment\n\
            machine pop.example.org login alice password s3cret\n\
            machine POP.example.org login bob password \"two words \\\" \\\\ \\t\"\n\
            macdef init\ncd /pub\nmachine evil login alice password no\n\n\
            machine other.example login alice account x password other\n\
            machine nologin.example password any\n\
            default login alice password fallback # the rest\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 5, "{entries:?}");
        assert_eq!(find(&entries, "pop.example.org", "alice"), Some("s3cret"));
        assert_eq!(find(&entries, "pop.example.org", "bob"), Some("two words \" \\ \t"));
        assert_eq!(find(&entries, "other.example", "alice"), Some("other"));
        assert_eq!(find(&entries, "nologin.example", "anyone"), Some("any"));
        assert_eq!(find(&entries, "unknown.example", "alice"), Some("fallback"));
        assert_eq!(find(&entries, "unknown.example", "carol"), None);
        assert_eq!(find(&entries, "evil", "alice"), Some("fallback"), "macdef body skipped");
        assert_eq!(find(&entries, "pop.example.org", "carol"), None);
    }

    #[test]
    fn layout_does_not_matter_and_errors_are_clear() {
        let entries = parse("machine h\n\tlogin u\n\n\tpassword p machine g login v").unwrap();
        assert_eq!(find(&entries, "h", "u"), Some("p"));
        assert_eq!(find(&entries, "g", "v"), None, "no password");
        assert!(parse("login u password p").unwrap_err().contains("before any machine"));
        assert!(parse("machine h password").unwrap_err().contains("without a value"));
        assert!(parse("machine h password \"open").unwrap_err().contains("closing"));
        assert!(parse("machine h port 110").unwrap_err().contains("\"port\""));
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn a_readable_netrc_with_passwords_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netrc");
        let set_mode = |mode| std::fs::set_permissions(&path, PermissionsExt::from_mode(mode));
        assert_eq!(password(&path, "h", "u"), Ok(None), "no netrc");
        std::fs::write(&path, "machine h login u password p\n").unwrap();
        set_mode(0o600).unwrap();
        assert_eq!(password(&path, "h", "u"), Ok(Some("p".into())));
        for mode in [0o640, 0o604, 0o644] {
            set_mode(mode).unwrap();
            let e = password(&path, "h", "u").unwrap_err();
            assert!(e.contains("chmod 600"), "{e}");
        }
        // Without passwords, a readable netrc is fine.
        std::fs::write(&path, "machine h login u\n").unwrap();
        assert_eq!(password(&path, "h", "u"), Ok(None));
    }
}
