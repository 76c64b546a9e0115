//! Small helpers for the tests that start real peers (Dovecot, as a server for the retriever
//! and as the server pop3d migrates from) or need something of the machine (IPv6 loopback).

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The program `name` in the usual system directories or on `PATH`.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Dovecot's log in `dir` and its standard error (startup failures), for failure messages.
pub fn dovecot_log(dir: &Path) -> String {
    let mut text = std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default();
    text += &std::fs::read_to_string(dir.join("dovecot.stderr")).unwrap_or_default();
    text
}

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768-60999 by default),
/// which `bind(0)` and outgoing connections draw from.
const PEER_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A loopback port free at the time of the call, for a peer (Dovecot, HAProxy, Postfix, slapd,
/// danted...) that binds it itself a moment later.
///
/// A port from `bind(0)`, released at once, could be handed out again by the next `bind(0)` of
/// another test thread before the peer took it: the two tests then talked to each other's
/// servers. Ports here come from a range `bind(0)` never uses, each at most once per test
/// process (a counter walks the range from an offset of the process id, so that test binaries
/// run one after another do not start on the same port), and only if free right now.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = PEER_PORTS.end - PEER_PORTS.start;
    let offset = std::process::id().wrapping_mul(409) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (PEER_PORTS.start + (offset + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PEER_PORTS:?}");
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Gives `path` and everything below it to `uid:gid`.
pub fn chown_tree(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), (uid, gid));
        }
    }
}

/// True if this machine has an IPv6 loopback; otherwise says loudly that the test is
/// skipped (and fails under CI=true, where it must run).
pub fn have_ipv6_loopback() -> bool {
    match TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no IPv6 loopback ([::1]: {e}), and CI=true"
            );
            eprintln!("SKIPPED: no IPv6 loopback on this machine ([::1]: {e})");
            false
        }
    }
}

/// The binary `bin` of workspace package `package`, next to `beside` (another binary of the
/// test run, e.g. `env!("CARGO_BIN_EXE_pop3d")`), built once per test process with the same
/// profile: `cargo test -p X` builds only X's binaries, and a stale sibling must not be used.
pub fn sibling_binary(beside: &str, package: &str, bin: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    let path = Path::new(beside).with_file_name(bin);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-p", package, "--bin", bin]);
    if path.parent().is_some_and(|dir| dir.ends_with("release")) {
        build.arg("--release");
    }
    // From the workspace root, where a relative CARGO_TARGET_DIR is meant.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap();
    eprintln!("building {bin}: cargo build -p {package} --bin {bin}");
    let out = build.current_dir(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(path.exists(), "cargo built {bin} elsewhere than {}", path.display());
    built.insert(bin.to_owned(), path.clone());
    path
}
