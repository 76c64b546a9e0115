//! Password schemes against Dovecot's own `doveadm pw` (Debian's dovecot-core), run at test
//! time: each hash it prints verifies through the users-file parser with the right password
//! and not with a wrong one, and each hash pop3d makes is verified by `doveadm pw -t`.
//! Skips loudly without `doveadm`, and fails then under `CI=true`.

use std::path::PathBuf;
use std::process::Command;

use pop3_proto::server::AuthRequest;
use pop3_proto::Secret;
use pop3_server::{Authenticator, PasswdFile, Scheme};

/// Non-ASCII and spaces (not a colon: a `{PLAIN}` password could not hold the separator).
const PASSWORD: &str = "pä ss wörd 1";

fn doveadm() -> Option<PathBuf> {
    let found = pop3_testkit::peer::find("doveadm");
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "doveadm (Debian package dovecot-core) is missing and CI=true"
        );
        eprintln!("SKIPPED: doveadm not found (Debian package dovecot-core); NOT RUN");
    }
    found
}

/// `doveadm pw ARGS` with no configuration (`-c /dev/null`: the system's is not needed and
/// may not be readable), its standard output trimmed, or its error.
fn run(doveadm: &PathBuf, args: &[&str]) -> Result<String, String> {
    let out = Command::new(doveadm).args(["-c", "/dev/null", "pw"]).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    } else {
        Err(format!("doveadm pw {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn login(file: &PasswdFile, user: &str, password: &str) -> bool {
    file.authenticate(&AuthRequest::Password {
        username: user.into(),
        authzid: None,
        password: Secret::new(password.as_bytes().to_vec()),
        mechanism: None,
    })
    .is_ok()
}

#[test]
fn every_doveadm_scheme_and_encoding_verifies() {
    let Some(doveadm) = doveadm() else { return };
    let schemes = [
        "PLAIN",
        "CLEAR",
        "MD5-CRYPT",
        "MD5",
        "SHA256-CRYPT",
        "SHA512-CRYPT",
        "BLF-CRYPT",
        "PBKDF2",
        "SSHA",
        "SSHA256",
        "SSHA512",
        "SHA",
        "SHA1",
        "SHA256",
        "SHA512",
        "SMD5",
        "PLAIN-MD5",
        "LDAP-MD5",
        "CRAM-MD5",
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "ARGON2I",
        "ARGON2ID",
        // Encodings: the other one than the scheme's default, and the long spelling.
        "SHA.hex",
        "SHA256.hex",
        "SHA512.hex",
        "SHA512.b64",
        "PLAIN-MD5.b64",
        "LDAP-MD5.hex",
        "SSHA.hex",
        "SSHA256.hex",
        "SSHA512.hex",
        "SMD5.hex",
        "SHA.base64",
        "PLAIN-MD5.base64",
    ];
    let mut text = String::new();
    let mut users = Vec::new();
    for (n, scheme) in schemes.iter().enumerate() {
        let hash = run(&doveadm, &["-s", scheme, "-p", PASSWORD]).unwrap();
        assert!(hash.starts_with('{'), "{scheme}: {hash}");
        text.push_str(&format!("u{n}:{hash}::::::\n"));
        users.push((format!("u{n}"), scheme.to_string(), hash));
    }
    // MD5-crypt as Dovecot's CRYPT and as a bare `$1$` hash.
    let md5 = run(&doveadm, &["-s", "MD5-CRYPT", "-p", PASSWORD]).unwrap();
    let bare = md5.strip_prefix("{MD5-CRYPT}").unwrap();
    text.push_str(&format!("crypt:{{CRYPT}}{bare}\nbare:{bare}\n"));
    users.push(("crypt".into(), "CRYPT".into(), bare.into()));
    users.push(("bare".into(), "$1$".into(), bare.into()));

    let file = PasswdFile::parse(&text).unwrap();
    assert!(file.warnings().is_empty(), "{:?}", file.warnings());
    for (user, scheme, hash) in &users {
        assert!(login(&file, user, PASSWORD), "{scheme} {hash}: the right password");
        assert!(!login(&file, user, "pä ss wörd 2"), "{scheme} {hash}: a wrong password");
        assert!(!login(&file, user, ""), "{scheme}: an empty password");
    }
    let names: Vec<Scheme> = file.users().map(|(_, scheme)| scheme).collect();
    assert!(names.contains(&Scheme::Md5Crypt) && names.contains(&Scheme::ScramSha1));
}

#[test]
fn hashes_pop3d_makes_verify_with_doveadm() {
    let Some(doveadm) = doveadm() else { return };
    for &scheme in pop3_server::GENERATED_SCHEMES {
        let hash = pop3_server::hash_password_as(scheme, PASSWORD.as_bytes()).unwrap();
        assert!(hash.starts_with(&format!("{{{}}}", scheme.name())), "{hash}");
        run(&doveadm, &["-t", &hash, "-p", PASSWORD]).unwrap();
        assert!(run(&doveadm, &["-t", &hash, "-p", "wrong"]).is_err(), "{hash}");
        let file = PasswdFile::parse(&format!("a:{hash}\n")).unwrap();
        assert!(login(&file, "a", PASSWORD) && !login(&file, "a", "wrong"), "{hash}");
    }
}
