//! Interop with a real, independent server: Dovecot (Debian's `dovecot-pop3d`) as the server
//! for the `pop3` binary and for pop3-client.
//!
//! Each test starts its own Dovecot (`dovecot -F -c <tempdir>/dovecot.conf`) on free loopback
//! ports with a generated configuration: its own `base_dir`, `state_dir` and log in a temp
//! directory, STLS on one port and implicit TLS on another, with a test CA and server
//! certificate generated at run time (rcgen), a passwd-file with a SCRAM-SHA-256 hash made by
//! `doveadm pw`, and a Maildir seeded by writing files (tmp/ → new/) as an MTA would. Nothing
//! of the system's Dovecot (service, `/etc/dovecot`) is used or touched.
//!
//! Line endings: the seeded files use LF, as MTAs write them; Dovecot serves them with CRLF,
//! and `pop3` stores messages with LF again (docs/client.md). So the expected local copy is
//! the source, byte for byte (in an mbox quoted as mboxrd: `>*From ` lines get a `>`); what the
//! library hands out is the source with every LF turned into CRLF.
//!
//! Without Dovecot the tests print `SKIPPED: dovecot not installed` and pass, unless `CI=true`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pop3_client::{fingerprint_sha256, AuthMethod, Client, ConnectOptions, TlsMode, TlsOptions};
use pop3_testkit::peer::{chown_tree, dovecot_log, find, free_port, set_mode};
use pop3_testkit::server::TestCa;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret pass";

/// An isolated Dovecot, stopped on drop.
struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    plain: u16,
    tls: u16,
    ca: TestCa,
    /// Owner of the mail files (Dovecot refuses mail access as root).
    mail_owner: (u32, u32),
    delivered: std::cell::Cell<u32>,
}

impl Dovecot {
    /// Starts Dovecot, or returns `None` (after a loud SKIPPED line) when it is not installed
    /// and this is not CI.
    fn start() -> Option<Self> {
        let Some(dovecot) = find("dovecot") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "dovecot not installed (apt-get install dovecot-pop3d), and CI=true"
            );
            eprintln!("SKIPPED: dovecot not installed (apt-get install dovecot-pop3d)");
            return None;
        };
        let doveadm = find("doveadm").expect("dovecot is installed but doveadm is not");
        let dir = tempfile::tempdir().unwrap();
        let d = &dir.path().to_path_buf();
        // Dovecot's unprivileged processes must reach the mail and the users file.
        set_mode(d, 0o755);
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let ca = TestCa::generate();
        std::fs::write(d.join("ca.pem"), &ca.ca_pem).unwrap();
        std::fs::write(d.join("cert.pem"), &ca.cert_pem).unwrap();
        std::fs::write(d.join("key.pem"), &ca.key_pem).unwrap();
        set_mode(&d.join("key.pem"), 0o600);

        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let root = uid == 0;
        let mail_owner = if root { (65534, 65534) } else { (uid, gid) };
        let maildir = d.join("home").join(USER).join("Maildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        chown_tree(&d.join("home"), mail_owner);

        let mut last_error = String::new();
        for attempt in 0..3 {
            let (plain, tls) = (free_port(), free_port());
            let config = config(d, plain, tls, mail_owner, root);
            let conf_path = d.join("dovecot.conf");
            std::fs::write(&conf_path, config).unwrap();
            if attempt == 0 {
                let out = Command::new(&doveadm)
                    .arg("-c")
                    .arg(&conf_path)
                    .args(["pw", "-s", "SCRAM-SHA-256", "-p", PASSWORD])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "doveadm pw: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let hash = String::from_utf8(out.stdout).unwrap();
                assert!(hash.starts_with("{SCRAM-SHA-256}"), "{hash}");
                std::fs::write(d.join("users"), format!("{USER}:{}\n", hash.trim())).unwrap();
                set_mode(&d.join("users"), 0o644);
            }
            let stderr = std::fs::File::create(d.join("dovecot.stderr")).unwrap();
            let mut child = Command::new(&dovecot)
                .arg("-F")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn dovecot");
            match wait_listening(&mut child, [plain, tls]) {
                Ok(()) => {
                    return Some(Self {
                        child,
                        dir,
                        plain,
                        tls,
                        ca,
                        mail_owner,
                        delivered: 0.into(),
                    })
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!("{e}\n{}", dovecot_log(d));
                    if !last_error.contains("in use") {
                        break;
                    }
                }
            }
        }
        panic!("dovecot did not start: {last_error}");
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ca_file(&self) -> PathBuf {
        self.path().join("ca.pem")
    }

    /// The user's Maildir as Dovecot sees it.
    fn maildir(&self) -> PathBuf {
        self.path().join("home").join(USER).join("Maildir")
    }

    /// Delivers messages into the server's Maildir (tmp/, then rename into new/).
    fn deliver(&self, messages: &[Vec<u8>]) {
        let md = self.maildir();
        for m in messages {
            let n = self.delivered.get() + 1;
            self.delivered.set(n);
            let name = format!("{}.M{}P{}.interop", 1_700_000_000 + n, n, std::process::id());
            let tmp = md.join("tmp").join(&name);
            std::fs::write(&tmp, m).unwrap();
            std::os::unix::fs::chown(&tmp, Some(self.mail_owner.0), Some(self.mail_owner.1))
                .unwrap();
            std::fs::rename(&tmp, md.join("new").join(&name)).unwrap();
        }
    }

    /// Message files in the server's Maildir (new/ and cur/).
    fn on_disk(&self) -> usize {
        ["new", "cur"]
            .iter()
            .map(|s| std::fs::read_dir(self.maildir().join(s)).unwrap().count())
            .sum()
    }

    fn log(&self) -> String {
        dovecot_log(self.path())
    }

    /// Waits (bounded) until Dovecot's log holds `needle` `count` times.
    fn wait_log(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(Instant::now() < deadline, "{needle:?} x{count} not in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn options(&self, tls: TlsMode) -> ConnectOptions {
        let mut o = ConnectOptions::new("127.0.0.1");
        o.port = Some(if tls == TlsMode::Implicit { self.tls } else { self.plain });
        o.tls = tls;
        o.tls_options = TlsOptions { system_roots: false, ..TlsOptions::new() };
        o.tls_options.extra_ca_der.push(self.ca.ca_der.clone());
        o.timeout = Duration::from_secs(20);
        o.connect_timeout = Duration::from_secs(10);
        o
    }

    /// STAT in a fresh session (STLS, verified), USER/PASS.
    fn stat_count(&self) -> u32 {
        let options = self.options(TlsMode::Stls);
        block_on(async move {
            let mut c = Client::connect(&options).await.unwrap();
            c.login(USER, PASSWORD, AuthMethod::UserPass).await.unwrap();
            let n = c.stat().await.unwrap().count;
            c.quit().await.unwrap();
            n
        })
    }

    /// A `pop3` command for this server: `url` is `pop3` (STLS) or `pop3s`, the state and config
    /// live under `home`.
    fn pop3(&self, scheme: &str, home: &Path, args: &[&str]) -> Command {
        let port = if scheme == "pop3s" { self.tls } else { self.plain };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pop3"));
        cmd.args(args)
            .arg(format!("{scheme}://{USER}@127.0.0.1:{port}"))
            .args(["--timeout", "20"])
            .env("POP3_PASSWORD", PASSWORD)
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("HOME", home)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM: the master stops its children; SIGKILL if it takes too long.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(d: &Path, plain: u16, tls: u16, (uid, gid): (u32, u32), root: bool) -> String {
    let d = d.display();
    // As root, Dovecot's defaults (users dovecot and dovenull, chroots) apply; as another user
    // every process runs as that user, without chroots.
    let unprivileged = if root {
        String::new()
    } else {
        let id = |flag: &str| {
            let out = Command::new("id").arg(flag).output().expect("id");
            String::from_utf8(out.stdout).expect("id").trim().to_owned()
        };
        let (user, group) = (id("-un"), id("-gn"));
        format!(
            "default_internal_user = {user}\ndefault_internal_group = {group}\n\
             default_login_user = {user}\nservice anvil {{\n  chroot =\n}}\n"
        )
    };
    let login_chroot = if root { "" } else { "  chroot =\n" };
    format!(
        r#"# Generated by pop3-cli's Dovecot interop tests.
instance_name = pop3-interop-{plain}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login scram-sha-256
# No 2 s pause after each of the tests' wrong passwords.
auth_failure_delay = 0
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
first_valid_uid = 1
first_valid_gid = 1
{unprivileged}passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service pop3-login {{
{login_chroot}  inet_listener pop3 {{
    port = {plain}
  }}
  inet_listener pop3s {{
    port = {tls}
    ssl = yes
  }}
}}
"#
    )
}

/// Waits (bounded) until `child` accepts connections on `ports`.
fn wait_listening(child: &mut Child, ports: [u16; 2]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    for port in ports {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("dovecot exited: {status}"));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("dovecot not listening on {port} after 15 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Runs `cmd`: (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Source messages as an MTA writes them (LF), with dot lines, `From ` and `>From ` lines and
/// one large message (several socket reads).
fn messages(first: usize, n: usize) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|i| {
            let mut m = format!(
                "From: Sender {i} <s{i}@example.org>\nTo: {USER}@example.org\nSubject: message {i}\n\
                 Message-ID: <{i}@interop.example>\n\nbody of {i}\n.\n..two dots\n.leading dot\n\
                 From here on, a From_ line.\n>From a quoted one.\n"
            );
            if i % 3 == 1 {
                for line in 0..4000 {
                    m += &format!("{line:05} {}\n", "abcdefghijklmnopqrstuvwxyz0123456789-".repeat(2));
                }
            }
            m += "last line\n";
            m.into_bytes()
        })
        .collect()
}

/// What Dovecot serves for `source`: every LF as CRLF.
fn crlf(source: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(source.len() + source.len() / 20);
    for &b in source {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// What a server sends for `source` (the library hands out exactly this).
fn wire(source: &[Vec<u8>]) -> Vec<Vec<u8>> {
    sorted(source.iter().map(|m| crlf(m)).collect())
}

/// What `pop3` stores for `source`: its bytes exactly (the wire's CRLF back to LF).
fn stored(source: &[Vec<u8>]) -> Vec<Vec<u8>> {
    sorted(source.to_vec())
}

fn read_dir_files(dirs: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries {
            out.push(std::fs::read(e.unwrap().path()).unwrap());
        }
    }
    sorted(out)
}

fn local_maildir(dir: &Path) -> Vec<Vec<u8>> {
    read_dir_files(&[dir.join("new"), dir.join("cur")])
}

/// `pop3 fetch` to a Maildir over STLS (verified against the test CA): --keep, nothing new,
/// only the new message after a delivery, then --delete empties the server.
#[test]
fn fetch_maildir_keep_new_mail_then_delete() {
    let Some(dovecot) = Dovecot::start() else { return };
    let first = messages(0, 4);
    dovecot.deliver(&first);
    let home = tempfile::tempdir().unwrap();
    let local = home.path().join("Mail");
    let to = format!("maildir:{}", local.display());
    let ca = dovecot.ca_file();
    let ca = ca.to_str().unwrap();
    let fetch = |extra: &[&str]| {
        let mut args = vec!["fetch", "--json", "--tls-ca", ca, "--to", &to];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&mut dovecot.pop3("pop3", home.path(), &args));
        (code, json(&out), err)
    };

    let (code, report, err) = fetch(&["--keep"]);
    assert_eq!(code, 0, "{report} {err}");
    assert_eq!((report["messages"].as_u64(), report["fetched"].as_u64()), (Some(4), Some(4)));
    assert_eq!(report["deleted"], 0);
    assert_eq!(local_maildir(&local), stored(&first), "the source bytes");
    assert_eq!(dovecot.on_disk(), 4, "kept");
    assert_eq!(dovecot.stat_count(), 4, "kept");

    let (code, report, err) = fetch(&["--keep"]);
    assert_eq!(code, 1, "nothing new: {report} {err}");
    assert_eq!(report["fetched"], 0);
    assert_eq!(local_maildir(&local).len(), 4);

    let late = messages(10, 1);
    dovecot.deliver(&late);
    // check and list (TOP n 0) see it as the one new message.
    let common = ["--json", "--tls-ca", ca];
    let (code, out, err) =
        run(&mut dovecot.pop3("pop3", home.path(), &[&["check"][..], &common].concat()));
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!((json(&out)["messages"].as_u64(), json(&out)["new"].as_u64()), (Some(5), Some(1)));
    let (code, out, err) =
        run(&mut dovecot.pop3("pop3", home.path(), &[&["list"][..], &common].concat()));
    assert_eq!(code, 0, "{out} {err}");
    let list = json(&out)["list"].as_array().unwrap().clone();
    assert_eq!(list.len(), 5, "{out}");
    let new: Vec<_> = list.iter().filter(|e| e["fetched"] == false).collect();
    assert_eq!(new.len(), 1, "{out}");
    assert_eq!(new[0]["subject"], "message 10");
    assert_eq!(new[0]["from"], "Sender 10 <s10@example.org>");
    assert_eq!(new[0]["size"].as_u64(), Some(crlf(&late[0]).len() as u64));
    let (code, report, err) = fetch(&["--keep"]);
    assert_eq!(code, 0, "{report} {err}");
    assert_eq!((report["messages"].as_u64(), report["fetched"].as_u64()), (Some(5), Some(1)));
    let all: Vec<Vec<u8>> = first.iter().chain(&late).cloned().collect();
    assert_eq!(local_maildir(&local), stored(&all), "only the new one was added");

    let (code, report, err) = fetch(&["--delete"]);
    assert_eq!(code, 1, "nothing new, but all deleted: {report} {err}");
    assert_eq!((report["fetched"].as_u64(), report["deleted"].as_u64()), (Some(0), Some(5)));
    assert_eq!(dovecot.on_disk(), 0, "Dovecot's Maildir is empty");
    assert_eq!(dovecot.stat_count(), 0, "a fresh session sees no messages");
    assert_eq!(local_maildir(&local), stored(&all), "the local copies stay");
    assert_eq!(std::fs::read_dir(local.join("tmp")).unwrap().count(), 0);
}

/// Splits an mbox written by `pop3` into its messages (From_ line and separator removed).
fn mbox_messages(mbox: &[u8]) -> Vec<Vec<u8>> {
    assert!(mbox.starts_with(b"From MAILER-DAEMON "), "{}", String::from_utf8_lossy(mbox));
    let mut out = Vec::new();
    let mut rest = mbox;
    while !rest.is_empty() {
        let body_start = rest.iter().position(|&b| b == b'\n').unwrap() + 1;
        let end = rest[body_start..]
            .windows(6)
            .position(|w| w == b"\nFrom ")
            .map_or(rest.len(), |p| body_start + p + 1);
        let record = &rest[body_start..end];
        let record = record.strip_suffix(b"\n").expect("separator line");
        out.push(record.to_vec());
        rest = &rest[end..];
    }
    sorted(out)
}

/// mboxrd quoting: one more `>` on every line matching `>*From `.
fn mboxrd(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).unwrap();
    let quote = |l: &str| match l.trim_start_matches('>').starts_with("From ") {
        true => format!(">{l}"),
        false => l.to_owned(),
    };
    text.split_inclusive('\n').map(quote).collect::<String>().into_bytes()
}

/// `pop3 fetch` over implicit TLS (verified) into an mbox and into an MDA command.
#[test]
fn fetch_mbox_and_mda_over_implicit_tls() {
    let Some(dovecot) = Dovecot::start() else { return };
    let source = messages(0, 3);
    dovecot.deliver(&source);
    let ca = dovecot.ca_file();
    let ca = ca.to_str().unwrap();

    let home = tempfile::tempdir().unwrap();
    let mbox = home.path().join("mail/inbox.mbox");
    let to = format!("mbox:{}", mbox.display());
    let (code, out, err) = run(&mut dovecot.pop3(
        "pop3s",
        home.path(),
        &["fetch", "--json", "--tls-ca", ca, "--to", &to],
    ));
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(json(&out)["fetched"], 3);
    let got = mbox_messages(&std::fs::read(&mbox).unwrap());
    let want = sorted(source.iter().map(|m| mboxrd(m)).collect());
    assert_eq!(got, want, "mbox: the source bytes, CRLF, quoted as mboxrd");

    // A separate state: everything is new again for the MDA.
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("mda");
    std::fs::create_dir_all(&out_dir).unwrap();
    let to = format!("mda:cat > \"$(mktemp -p '{}' msg.XXXXXX)\"", out_dir.display());
    let (code, out, err) = run(&mut dovecot.pop3(
        "pop3s",
        home.path(),
        &["fetch", "--json", "--tls-ca", ca, "--to", &to],
    ));
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(json(&out)["fetched"], 3);
    assert_eq!(read_dir_files(&[out_dir]), stored(&source), "MDA: the source bytes");
    assert_eq!(dovecot.stat_count(), 3, "kept by default");
}

/// `--keep-days N` keeps a message until N days after it was first seen (the state file's
/// `S` record, back-dated here), then deletes it.
#[test]
fn keep_days() {
    let Some(dovecot) = Dovecot::start() else { return };
    dovecot.deliver(&messages(0, 2));
    let home = tempfile::tempdir().unwrap();
    let to = format!("maildir:{}", home.path().join("Mail").display());
    let ca = dovecot.ca_file();
    let ca = ca.to_str().unwrap();
    let args = ["fetch", "--json", "--keep-days", "30", "--tls-ca", ca, "--to", &to];

    let (code, out, err) = run(&mut dovecot.pop3("pop3", home.path(), &args));
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(
        (json(&out)["fetched"].as_u64(), json(&out)["deleted"].as_u64()),
        (Some(2), Some(0))
    );
    let (code, out, _) = run(&mut dovecot.pop3("pop3", home.path(), &args));
    assert_eq!(code, 1);
    assert_eq!(json(&out)["deleted"], 0);
    assert_eq!(dovecot.on_disk(), 2, "younger than 30 days: kept");

    // First seen 31 days ago.
    let state_dir = home.path().join("state/pop3");
    let state = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "state"))
        .expect("a state file");
    let text = std::fs::read_to_string(&state).unwrap();
    let past = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 31 * 86_400;
    let mut backdated = 0;
    let text: String = text
        .lines()
        .map(|l| match l.split_once(' ') {
            Some(("S", rest)) => {
                backdated += 1;
                let uid = rest.split_once(' ').unwrap().1;
                format!("S {past} {uid}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert_eq!(backdated, 2, "{text}");
    std::fs::write(&state, text).unwrap();
    let (code, out, err) = run(&mut dovecot.pop3("pop3", home.path(), &args));
    assert_eq!(code, 1, "nothing new: {out} {err}");
    assert_eq!(
        (json(&out)["fetched"].as_u64(), json(&out)["deleted"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(dovecot.on_disk(), 0, "older than 30 days: deleted");
    assert_eq!(dovecot.stat_count(), 0);
}

/// Certificate checks are on: no trusted CA fails, a wrong pin fails, both before any login
/// or download; the right pin works.
#[test]
fn tls_verification_and_pinning() {
    let Some(dovecot) = Dovecot::start() else { return };
    dovecot.deliver(&messages(0, 2));
    let home = tempfile::tempdir().unwrap();
    let local = home.path().join("Mail");
    let to = format!("maildir:{}", local.display());
    let wrong: String = fingerprint_sha256(&dovecot.ca.ca_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let right: String = fingerprint_sha256(&dovecot.ca.cert_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");

    for scheme in ["pop3", "pop3s"] {
        // Not trusted: the test CA is not among the system's roots.
        let (code, out, err) =
            run(&mut dovecot.pop3(scheme, home.path(), &["fetch", "--json", "--to", &to]));
        assert_eq!(code, 4, "{scheme}: {out} {err}");
        assert!(
            json(&out)["error"].as_str().unwrap().to_lowercase().contains("certificate"),
            "{out}"
        );
        // A wrong pin (the CA's fingerprint, not the server certificate's).
        let (code, out, err) = run(&mut dovecot.pop3(
            scheme,
            home.path(),
            &["fetch", "--json", "--tls-fingerprint", &wrong, "--to", &to],
        ));
        assert_eq!(code, 4, "{scheme}: {out} {err}");
        assert_eq!(json(&out)["fetched"], 0);
    }
    assert!(local_maildir(&local).is_empty(), "nothing fetched");
    assert!(!dovecot.log().contains("Login: user=<"), "no login happened:\n{}", dovecot.log());
    assert_eq!(dovecot.on_disk(), 2);

    let (code, out, err) = run(&mut dovecot.pop3(
        "pop3s",
        home.path(),
        &["fetch", "--json", "--tls-fingerprint", &right, "--to", &to],
    ));
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(json(&out)["fetched"], 2);
    assert_eq!(local_maildir(&local), stored(&messages(0, 2)));
}

/// pop3-client's API: Auto picks SCRAM-SHA-256 (as Dovecot's log confirms), and SCRAM-SHA-256,
/// PLAIN, LOGIN and USER/PASS each log in over STLS and implicit TLS; a wrong password is an
/// authentication error; messages read through the library equal the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mechanisms_and_retrieval() {
    let Some(dovecot) = tokio::task::block_in_place(Dovecot::start) else { return };
    let source = messages(0, 3);
    dovecot.deliver(&source);

    let mut c = Client::connect(&dovecot.options(TlsMode::Stls)).await.unwrap();
    assert!(c.is_tls());
    assert_eq!(c.login(USER, PASSWORD, AuthMethod::Auto).await.unwrap(), AuthMethod::ScramSha256);
    assert!(c.is_pipelining(), "Dovecot announces PIPELINING");
    let listing = c.list_uidl().await.unwrap();
    assert_eq!(listing.len(), 3);
    let mut got = Vec::new();
    for (msg, size, uid) in &listing {
        assert_eq!(uid.len(), 16, "pop3_uidl_format = %08Xu%08Xv: {uid}");
        let mut body = c.retr(*msg).await.unwrap();
        let mut data = Vec::new();
        while let Some(chunk) = body.chunk().await.unwrap() {
            data.extend_from_slice(&chunk);
        }
        assert_eq!(data.len() as u64, *size, "LIST size is the CRLF size");
        got.push(data);
    }
    assert_eq!(sorted(got), wire(&source));
    c.quit().await.unwrap();
    tokio::task::block_in_place(|| dovecot.wait_log("method=SCRAM-SHA-256", 1));

    let mut logins = 1;
    for tls in [TlsMode::Stls, TlsMode::Implicit] {
        for method in
            [AuthMethod::ScramSha256, AuthMethod::Plain, AuthMethod::Login, AuthMethod::UserPass]
        {
            let mut c = Client::connect(&dovecot.options(tls)).await.unwrap();
            assert!(c.is_tls());
            assert_eq!(c.login(USER, PASSWORD, method).await.unwrap(), method, "{tls:?}");
            assert_eq!(c.stat().await.unwrap().count, 3, "{tls:?} {method:?}");
            c.quit().await.unwrap();
            logins += 1;
        }
    }
    // Last, as Dovecot slows down logins from an address after a failure (auth penalty).
    let mut c = Client::connect(&dovecot.options(TlsMode::Stls)).await.unwrap();
    let e = c.login(USER, "wrong", AuthMethod::Auto).await.unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    drop(c);
    tokio::task::block_in_place(|| dovecot.wait_log("auth failed, 1 attempts", 1));
    let log = tokio::task::block_in_place(|| dovecot.wait_log("Login: user=<alice>", logins));
    let logins_with = |method: &str| {
        log.lines().filter(|l| l.contains("Login: user=<alice>") && l.contains(method)).count()
    };
    assert_eq!(log.matches("Login: user=<alice>").count(), logins, "{log}");
    assert_eq!(logins_with("method=SCRAM-SHA-256,"), 3, "{log}");
    assert_eq!(logins_with("method=LOGIN,"), 2, "{log}");
    // Dovecot logs USER/PASS as PLAIN.
    assert_eq!(logins_with("method=PLAIN,"), 4, "{log}");
    assert_eq!(log.matches("auth failed").count(), 1, "{log}");
}

/// Messages as they come from the wild: 8-bit bytes, CRLF already in the file, no final
/// newline, a header only; and `--max-size` leaves a large one on the server.
#[test]
fn odd_messages_and_max_size() {
    let Some(dovecot) = Dovecot::start() else { return };
    let odd: Vec<Vec<u8>> = vec![
        b"Subject: 8bit\n\nGr\xc3\xbc\xc3\x9fe \xff\xfe raw bytes\n".to_vec(),
        b"Subject: crlf on disk\r\n\r\nalready CRLF\r\n.\r\n".to_vec(),
        b"Subject: no final newline\n\nlast line".to_vec(),
        b"Subject: header only\n".to_vec(),
    ];
    dovecot.deliver(&odd);
    let big = messages(1, 1);
    assert!(big[0].len() > 100_000);
    dovecot.deliver(&big);
    let home = tempfile::tempdir().unwrap();
    let local = home.path().join("Mail");
    let to = format!("maildir:{}", local.display());
    let ca = dovecot.ca_file();
    let args = ["fetch", "--json", "--max-size", "100000", "--tls-ca", ca.to_str().unwrap()];
    let (code, out, err) =
        run(&mut dovecot.pop3("pop3", home.path(), &[&args[..], &["--to", &to]].concat()));
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(
        (json(&out)["fetched"].as_u64(), json(&out)["skipped_too_large"].as_u64()),
        (Some(4), Some(1))
    );
    // Dovecot ends the last line for the terminator; CRLF on disk comes back as LF.
    let want = sorted(vec![
        odd[0].clone(),
        b"Subject: crlf on disk\n\nalready CRLF\n.\n".to_vec(),
        b"Subject: no final newline\n\nlast line\n".to_vec(),
        odd[3].clone(),
    ]);
    assert_eq!(local_maildir(&local), want);
    assert_eq!(dovecot.stat_count(), 5);
}
