//! A `pop3d` process on 127.0.0.1 random ports with a fresh data dir, for the CLI and
//! interop tests.
#![allow(dead_code)]

pub mod fetchmail;
pub mod haproxy;
pub mod lmtp;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pop3d");

/// The messages every test starts with (stored bytes): a dot-led line, CRLF line ends, a
/// 200 KiB message.
pub fn messages() -> Vec<Vec<u8>> {
    let header = |n: u32| {
        format!(
            "From: Sender <sender@example.org>\nTo: alice@localhost\nSubject: message {n}\n\
             Date: Sat, 21 Nov 2026 10:00:0{n} +0000\nMessage-ID: <{n}.interop@example.org>\n\n"
        )
    };
    let mut one = header(1).into_bytes();
    one.extend_from_slice(b"first body line\n.leading dot line\n..two dots\nlast\n");
    let two = header(2).replace('\n', "\r\n") + "second body\r\nwith CRLF line ends\r\n";
    let mut three = header(3).into_bytes();
    for i in 0..5000 {
        three.extend_from_slice(
            format!("line {i:05}: the quick brown fox jumps over it\n").as_bytes(),
        );
    }
    vec![one, two.into_bytes(), three]
}

/// `stored` with LF line ends (what Maildir writers such as mpop and getmail store).
pub fn lf(stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in stored.iter().enumerate() {
        if b == b'\r' && stored.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

pub fn run(args: &[&str], data: &Path, stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pop3d runs");
    // A command may exit without reading its input (`deliver` to an unknown user answers 67
    // at once): a closed pipe is not a test failure.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    child.wait_with_output().unwrap()
}

pub struct Daemon {
    pub child: Child,
    pub plain: String,
    pub tls: String,
    pub data: PathBuf,
    pub dir: tempfile::TempDir,
    /// With `[mail] format = "postgresql"`: the database (and the cluster kept alive for it).
    pub postgresql: Option<Database>,
    stdout: Stdout,
}

/// Where a test daemon keeps mail.
#[derive(Clone)]
pub enum Store {
    /// Maildirs in the data dir (the default configuration).
    Maildir,
    /// A migrated database of the test cluster.
    Postgresql(Database),
}

/// A database of the shared test cluster.
#[derive(Clone)]
pub struct Database {
    pub url: String,
    _cluster: Arc<pop3_testkit::postgres::Cluster>,
}

impl Store {
    /// A fresh database (`None`, after a loud SKIPPED line, without PostgreSQL; a panic under
    /// CI=true).
    pub fn postgresql(test: &str) -> Option<Store> {
        let cluster = pop3_testkit::postgres::cluster(test)?;
        let url = cluster.database();
        Some(Store::Postgresql(Database { url, _cluster: cluster }))
    }

    /// A fresh database of `cluster` (e.g. a private one that the test stops and starts).
    pub fn on_cluster(cluster: Arc<pop3_testkit::postgres::Cluster>) -> Store {
        let url = cluster.database();
        Store::Postgresql(Database { url, _cluster: cluster })
    }

    /// Points the data dir's configuration at this store (nothing for Maildir).
    pub fn configure(&self, data: &Path) {
        if let Store::Postgresql(db) = self {
            let path = data.join("pop3d.toml");
            let config = std::fs::read_to_string(&path).unwrap();
            let config = config.replace("format = \"maildir\"", "format = \"postgresql\"")
                + &format!("\n[postgresql]\nurl = \"{}\"\n", db.url);
            assert!(config.contains("format = \"postgresql\""));
            std::fs::write(&path, config).unwrap();
            output_ok(&run(&["db", "migrate"], data, b""), "db migrate");
        }
    }
}

/// Two tests for each body `fn NAME(store: Store)`, in a module `NAME`: `NAME::maildir` on
/// the default Maildir store and `NAME::postgresql` on a database of the shared test cluster
/// (skipped loudly without PostgreSQL, failed under CI=true; see [`Store::postgresql`]).
/// `cargo test postgresql` runs only the database variants.
// Not every test binary that includes this module uses it.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            #[test]
            fn maildir() {
                super::$body($crate::common::Store::Maildir);
            }

            #[test]
            fn postgresql() {
                let test = concat!(stringify!($body), " on PostgreSQL");
                if let Some(store) = $crate::common::Store::postgresql(test) {
                    super::$body(store);
                }
            }
        }
    )+};
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;

/// The daemon's standard output, read by a thread.
struct Stdout {
    printed: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// A data dir with users alice (password `secret`, PLAIN so that APOP, CRAM-MD5 and
    /// SCRAM-SHA-256 work; all are offered) and bob, the [`messages`] delivered to alice,
    /// and a server on random ports.
    pub fn start() -> Self {
        Self::start_on(Store::Maildir)
    }

    /// [`start`](Self::start) with mail in `store`.
    pub fn start_on(store: Store) -> Self {
        Self::start_with(store, str::to_owned)
    }

    /// [`start`](Self::start) with `pop3d.toml` changed by `edit` first.
    pub fn start_configured(edit: impl FnOnce(&str) -> String) -> Self {
        Self::start_with(Store::Maildir, edit)
    }

    /// [`start`](Self::start) with mail in `store` and `pop3d.toml` changed by `edit`.
    pub fn start_with(store: Store, edit: impl FnOnce(&str) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = run(&["user", "add", "alice", "--password-stdin"], &data, b"secret\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        store.configure(&data);
        std::fs::write(data.join("users"), "alice:{PLAIN}secret\nbob:{PLAIN}builder\n").unwrap();
        // Every mechanism these PLAIN passwords can serve, so that clients try them all.
        let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
        let all = r#"mechanisms = ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN", "APOP"]"#;
        let config = config.replace(r#"mechanisms = ["PLAIN", "LOGIN"]"#, all);
        assert!(config.contains(all), "the default config lists the mechanisms");
        std::fs::write(data.join("pop3d.toml"), edit(&config)).unwrap();
        for m in messages() {
            let out = run(&["deliver", "alice"], &data, &m);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let mut daemon = Self::serve(dir, data);
        if let Store::Postgresql(db) = store {
            daemon.postgresql = Some(db);
        }
        daemon
    }

    /// Another node of the same cluster: a data dir with this one's configuration, users,
    /// server secret and certificate (so the same database), served on random ports.
    pub fn another_node(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("tls")).unwrap();
        for file in ["pop3d.toml", "users", "secret", "tls/cert.pem", "tls/key.pem"] {
            if self.data.join(file).exists() {
                std::fs::copy(self.data.join(file), data.join(file)).unwrap();
            }
        }
        let mut node = Self::serve(dir, data);
        node.postgresql = self.postgresql.clone();
        node
    }

    pub fn serve(dir: tempfile::TempDir, data: PathBuf) -> Self {
        Self::serve_with(dir, data, "info", &[])
    }

    /// [`serve`](Self::serve) with this `RUST_LOG` and more `serve` options.
    pub fn serve_with(
        dir: tempfile::TempDir,
        data: PathBuf,
        rust_log: &str,
        options: &[&str],
    ) -> Self {
        let log = std::fs::File::create(dir.path().join("pop3d.log")).unwrap();
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"])
            .args(options)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&printed);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let (mut plain, mut tls) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while plain.is_none() || tls.is_none() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(wait).expect("pop3d announces its listeners");
            if let Some(addr) = line.strip_prefix("pop3d: POP3 (with STLS) on ") {
                plain = Some(addr.to_owned());
            }
            if let Some(addr) = line.strip_prefix("pop3d: POP3S (implicit TLS) on ") {
                tls = Some(addr.to_owned());
            }
        }
        let stdout = Stdout { printed, reader: Some(reader) };
        Self {
            child,
            plain: plain.unwrap(),
            tls: tls.unwrap(),
            data,
            dir,
            postgresql: None,
            stdout,
        }
    }

    /// Everything printed on standard output; call after [`stop`](Self::stop), when the
    /// output is complete.
    pub fn printed(&mut self) -> Vec<String> {
        if let Some(reader) = self.stdout.reader.take() {
            reader.join().unwrap();
        }
        self.stdout.printed.lock().unwrap().clone()
    }

    /// What an announcement line starting with `prefix` printed so far says after it (the
    /// LMTP line comes before the POP3 ones `serve_with` waits for).
    pub fn announced(&self, prefix: &str) -> Option<String> {
        let printed = self.stdout.printed.lock().unwrap();
        printed.iter().find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
    }

    pub fn port(addr: &str) -> &str {
        addr.rsplit_once(':').unwrap().1
    }

    pub fn cert(&self) -> PathBuf {
        self.data.join("tls/cert.pem")
    }

    /// What the store keeps of a delivered `message`: a Maildir keeps it in wire form
    /// (CRLF line ends, the last line complete; `docs/storage.md`), the database as given.
    pub fn as_stored(&self, message: &[u8]) -> Vec<u8> {
        match self.postgresql {
            Some(_) => message.to_vec(),
            None => pop3_testkit::transmitted(message),
        }
    }

    /// `user`'s stored messages (file contents, or bodies in the database), in delivery
    /// order.
    pub fn stored(&self, user: &str) -> Vec<Vec<u8>> {
        if let Some(db) = &self.postgresql {
            return stored_in_database(&db.url, user);
        }
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            for entry in std::fs::read_dir(self.data.join("mail").join(user).join(sub)).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        files.sort_by_key(|p| delivery_order(p.file_name().unwrap().to_str().unwrap()));
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pop3d.log")).unwrap_or_default()
    }

    /// SIGTERM, then wait (at most 10 s) for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "pop3d did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server saw (the data dir is deleted with `dir`).
        if std::thread::panicking() {
            eprintln!("--- pop3d log ---\n{}--- end of pop3d log ---", self.log());
        }
    }
}

/// `user`'s messages in the database at `url`, in delivery order: each one's chunks joined.
pub fn stored_in_database(url: &str, user: &str) -> Vec<Vec<u8>> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .query(
            "SELECT string_agg(c.bytes, ''::bytea ORDER BY c.seq) FROM mailboxes b \
             JOIN messages m ON m.mailbox_id = b.id \
             JOIN message_chunks c ON c.mailbox_id = m.mailbox_id AND c.message_id = m.id \
             WHERE b.user_name = $1 GROUP BY m.id ORDER BY m.id",
            &[&user],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The order of a Maildir name `SECS.M<usec>P<pid>Q<n>.HOST` as `pop3d deliver` writes it:
/// seconds, then microseconds, as numbers (as strings, `M98765` would sort after `M123456`).
pub fn delivery_order(name: &str) -> (u64, u64, String) {
    let mut parts = name.splitn(3, '.');
    let secs = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let usec = parts
        .next()
        .and_then(|p| p.strip_prefix('M'))
        .and_then(|p| p.split('P').next())
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    (secs, usec, name.to_owned())
}

/// True if `program` is installed. Otherwise: a loud SKIPPED line, or a panic under CI=true
/// (CI installs every peer, see `.ci/run`).
pub fn peer(program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "interop peer `{program}` (Debian package {package}) is missing and CI=true"
        );
        eprintln!("SKIPPED: interop test needs `{program}` (apt-get install {package}); NOT RUN");
    }
    found
}

/// True if the test runs as root. Otherwise: a loud SKIPPED line, or a panic under CI=true
/// (CI runs as root).
pub fn root(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{test} needs root and CI=true");
        eprintln!("SKIPPED: {test} needs root; NOT RUN");
    }
    root
}

/// The uid and gid of `user` in /etc/passwd.
pub fn passwd_ids(user: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|l| l.split(':').next() == Some(user)).unwrap();
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

pub fn output_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plain POP3 connection, one command line and one status line at a time.
pub struct Session {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Session {
    /// Connects to `addr` and reads the greeting, which must be `+OK`.
    pub fn connect(addr: &str) -> Self {
        let (s, greeting) = Self::greeted(std::net::TcpStream::connect(addr).unwrap());
        assert!(greeting.starts_with("+OK"), "{greeting}");
        s
    }

    /// A session on a connected `stream` and the first line the server sent (empty if it
    /// closed the connection at once, as a proxy does when no server takes it).
    pub fn greeted(stream: std::net::TcpStream) -> (Self, String) {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut s = Self { reader: BufReader::new(stream), writer };
        let mut greeting = String::new();
        // A reset connection reads as no greeting at all.
        let _ = s.reader.read_line(&mut greeting);
        (s, greeting.trim_end().to_owned())
    }

    /// The lines of a multi-line answer up to its terminator, as sent (CRLF, dot-stuffed).
    pub fn body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).unwrap();
            assert!(!line.is_empty(), "connection closed inside a multi-line answer");
            if line == b".\r\n" {
                return body;
            }
            body.extend_from_slice(&line);
        }
    }

    /// The next line, without its line end.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    /// Sends `command` and returns the status line that answers it.
    pub fn cmd(&mut self, command: &str) -> String {
        self.writer.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        self.line()
    }

    /// USER/PASS on a new connection, left open: the session and the reply to PASS.
    pub fn logged_in(addr: &str, user: &str, password: &str) -> (Self, String) {
        let mut s = Self::connect(addr);
        s.cmd(&format!("USER {user}"));
        let reply = s.cmd(&format!("PASS {password}"));
        (s, reply)
    }

    /// One USER/PASS login on a new connection, then QUIT: the reply to PASS.
    pub fn login(addr: &str, user: &str, password: &str) -> String {
        let (mut s, reply) = Self::logged_in(addr, user, password);
        s.cmd("QUIT");
        reply
    }
}

/// The `pop3` retriever (crates/pop3-cli) next to this pop3d binary, built once per test run.
// Not every test binary that includes this module uses it.
#[allow(dead_code)]
pub fn pop3_binary() -> PathBuf {
    pop3_testkit::peer::sibling_binary(BIN, "pop3-cli", "pop3")
}
