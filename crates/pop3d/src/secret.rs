//! The server secret: 32 random bytes in a file, created on first start.
//!
//! It keys the SCRAM salts of users with `{PLAIN}` passwords and the decoy salts of unknown
//! users. Kept in a file, both stay the same across restarts: with a secret drawn at each
//! start, an unknown name's salt would change at a restart while a real user's would not,
//! which tells a prober who exists.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::rand::SecureRandom;

/// Reads the secret at `path`, or creates it (mode 0600) if there is none. A file that is
/// not 32 bytes long is an error, not replaced: replacing it would change every salt.
pub fn load_or_create(path: &Path) -> Result<[u8; 32], String> {
    let shown = path.display();
    match std::fs::File::open(path) {
        Ok(file) => {
            let mut bytes = Vec::with_capacity(33);
            file.take(33).read_to_end(&mut bytes).map_err(|e| format!("{shown}: {e}"))?;
            bytes.try_into().map_err(|b: Vec<u8>| {
                format!("{shown}: {} bytes, expected 32 (delete it to make a new one)", b.len())
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut secret)
                .map_err(|_| "the system random number generator failed".to_owned())?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{shown}: {e}"))?;
            file.write_all(&secret)
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("{shown}: {e}"))?;
            Ok(secret)
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let first = load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), first);
        assert_ne!(first, [0u8; 32]);
        std::fs::write(&path, b"short").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(err.contains("5 bytes"), "{err}");
    }
}
