//! Editing the users file: one line per user, other lines kept as they are; written to a
//! temporary file and renamed over the old one, so a reader sees the old or the new file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{exit, Failure};

/// A users file that cannot be read or replaced (EX_CANTCREAT).
fn io(message: String) -> Failure {
    (exit::CANTCREAT, message)
}

pub const USERS_HEADER: &str = "\
# pop3d users, in Dovecot's passwd-file format:
#   user:{SCHEME}hash:uid:gid:gecos:home:shell:extra
# Manage with `pop3d user add|passwd|del|list`; `pop3d user hash --scheme S` prints a hash.
# Schemes: ARGON2ID (new passwords), ARGON2I, BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT, PBKDF2,
# SCRAM-SHA-256, SCRAM-SHA-1, SSHA512, SSHA256, SHA512, SHA256, and weak ones kept for
# migration: MD5-CRYPT, SSHA, SMD5, SHA, PLAIN-MD5, LDAP-MD5, CRAM-MD5, PLAIN.
";

/// A random password: 16 characters from a 56-letter alphabet without look-alikes (~93 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::new();
    while out.len() < 16 {
        let mut byte = [0u8; 1];
        getrandom(&mut byte);
        // Rejection sampling keeps the choice uniform.
        if usize::from(byte[0]) < 256 - 256 % ALPHABET.len() {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    out
}

fn getrandom(buf: &mut [u8]) {
    let mut file = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut file, buf).expect("/dev/urandom");
}

fn read(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(USERS_HEADER.to_owned()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Replaces the file with `text`: a temporary file, given the old file's owner, group and
/// mode before it is renamed over it, so that a command run as root leaves the file readable
/// by the server that runs as another user. A new file is mode 0600, owned by `new_owner`
/// when given (root creating the file for the server's `run_as` user).
fn write(path: &Path, text: &str, new_owner: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let old = match std::fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let tmp = path.with_extension("pop3d-tmp");
    let ctx = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(ctx)?;
    let result = (|| {
        file.write_all(text.as_bytes()).map_err(ctx)?;
        let owner = old.as_ref().map(|m| (m.uid(), m.gid())).or(new_owner);
        let created = file.metadata().map_err(ctx)?;
        if let Some((uid, gid)) = owner.filter(|&o| o != (created.uid(), created.gid())) {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| {
                format!(
                    "{}: cannot give the new version the owner {uid}:{gid}: {e} (run as root \
                     or as the file's owner)",
                    path.display()
                )
            })?;
        }
        if let Some(old) = &old {
            let mode = std::fs::Permissions::from_mode(old.mode() & 0o7777);
            file.set_permissions(mode).map_err(ctx)?;
        }
        file.sync_all().map_err(ctx)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn is_line_of(line: &str, name: &str) -> bool {
    line.split(':').next() == Some(name) && !line.starts_with('#')
}

fn check_name(name: &str) -> Result<(), String> {
    if pop3_server::valid_username(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid user name {name:?}: 1 to 64 bytes, no '/', '\\', ':', '%', spaces or \
             control characters, not starting with '.'"
        ))
    }
}

/// Adds `name`; a users file that does not exist yet is created, owned by `new_owner` if
/// given.
pub fn add(
    path: &Path,
    name: &str,
    password: &str,
    new_owner: Option<(u32, u32)>,
) -> Result<(), Failure> {
    check_name(name).map_err(|e| (exit::DATAERR, e))?;
    let mut text = read(path).map_err(io)?;
    if text.lines().any(|l| is_line_of(l, name)) {
        return Err((exit::DATAERR, format!("user {name} already exists in {}", path.display())));
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{name}:{}::::::\n", pop3_server::hash_password(password.as_bytes())));
    write(path, &text, new_owner).map_err(io)
}

pub fn set_password(path: &Path, name: &str, password: &str) -> Result<(), Failure> {
    let text = read(path).map_err(io)?;
    let mut found = false;
    let mut out = String::new();
    for line in text.lines() {
        if is_line_of(line, name) {
            found = true;
            let mut fields: Vec<&str> = line.split(':').collect();
            let hash = pop3_server::hash_password(password.as_bytes());
            if fields.len() < 2 {
                fields.push("");
            }
            fields[1] = &hash;
            out.push_str(&fields.join(":"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        return Err((exit::NOUSER, format!("no user {name} in {}", path.display())));
    }
    write(path, &out, None).map_err(io)
}

pub fn delete(path: &Path, name: &str) -> Result<(), Failure> {
    let text = read(path).map_err(io)?;
    let before = text.lines().count();
    let out: String =
        text.lines().filter(|l| !is_line_of(l, name)).flat_map(|l| [l, "\n"]).collect();
    if out.lines().count() == before {
        return Err((exit::NOUSER, format!("no user {name} in {}", path.display())));
    }
    write(path, &out, None).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_passwd_del() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        add(&path, "alice", "one", None).unwrap();
        add(&path, "bob", "two", None).unwrap();
        assert!(add(&path, "alice", "x", None).is_err(), "duplicate");
        assert!(add(&path, "../evil", "x", None).is_err());
        let file = pop3_server::PasswdFile::load(&path).unwrap();
        assert_eq!(file.users().count(), 2);
        set_password(&path, "alice", "three").unwrap();
        assert!(set_password(&path, "carol", "x").is_err());
        delete(&path, "bob").unwrap();
        assert!(delete(&path, "bob").is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# pop3d users"), "comments kept");
        assert!(text.contains("alice:{ARGON2ID}$argon2id$") && !text.contains("bob:"));
        assert_eq!(generate_password().len(), 16);
    }

    #[test]
    fn rewrites_keep_mode_and_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        add(&path, "alice", "one", None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600, "new: private");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        set_password(&path, "alice", "two").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o640, "mode kept");
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "rewrites_keep_mode_and_owner needs root under CI=true"
            );
            eprintln!(
                "SKIPPED: the owner part of rewrites_keep_mode_and_owner needs root; NOT RUN"
            );
            return;
        }
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        add(&path, "bob", "x", None).unwrap();
        delete(&path, "bob").unwrap();
        set_password(&path, "alice", "three").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (65534, 65534, 0o640));
        let fresh = dir.path().join("fresh");
        add(&fresh, "carol", "x", Some((65534, 65534))).unwrap();
        let meta = std::fs::metadata(&fresh).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (65534, 65534, 0o600));
        assert!(!dir.path().join("users.pop3d-tmp").exists());
    }
}
