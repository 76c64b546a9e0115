//! Delivery to a mail server (`--to lmtp:...`, `smtp:...`) into a real `pop3d serve` with its
//! LMTP listener (`[lmtp]`, over TCP and a Unix socket), from the in-process POP3 test
//! server, and over SMTP into a private Postfix relaying to it: each message recorded as fetched only after the 250, a refused recipient (550)
//! leaving mail on the POP3 server, SIGKILL at random points of a delivery, and a 40 MiB
//! message streamed byte for byte in bounded memory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pop3d_binary;
use pop3_testkit::server::{TestServer, TestServerConfig};

/// A pop3d with users alice and bob and an LMTP listener on a loopback port and a socket.
struct Lmtpd {
    child: Child,
    dir: tempfile::TempDir,
    data: PathBuf,
    /// `HOST:PORT` of the LMTP listener.
    addr: String,
}

impl Lmtpd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut add = Command::new(pop3d_binary())
            .arg("--data-dir")
            .arg(&data)
            .args(["user", "add", "alice", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(add.stdin.as_mut().unwrap(), b"secret\n").unwrap();
        let out = add.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(data.join("users"), "alice:{PLAIN}secret\nbob:{PLAIN}builder\n").unwrap();
        let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
        let lmtp = "[lmtp]\nlisten = [\"127.0.0.1:0\"]\nsocket = \"lmtp.sock\"\n";
        std::fs::write(data.join("pop3d.toml"), format!("{config}\n{lmtp}")).unwrap();
        let log = std::fs::File::create(dir.path().join("pop3d.log")).unwrap();
        let mut child = Command::new(pop3d_binary())
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(wait).expect("pop3d announces its LMTP listener");
            if let Some(addrs) = line.strip_prefix("pop3d: LMTP on ") {
                break addrs.split(", ").next().unwrap().to_owned();
            }
        };
        Self { child, dir, data, addr }
    }

    fn socket(&self) -> PathBuf {
        self.data.join("lmtp.sock")
    }

    /// `user`'s messages as stored by pop3d, sorted.
    fn stored(&self, user: &str) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.data.join("mail").join(user).join(sub)) else {
                continue;
            };
            for e in entries {
                out.push(String::from_utf8(std::fs::read(e.unwrap().path()).unwrap()).unwrap());
            }
        }
        out.sort();
        out
    }
}

impl Drop for Lmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pop3(server: &TestServer, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pop3"));
    cmd.args(args)
        .arg(format!("pop3://alice@127.0.0.1:{}", server.addr().port()))
        .args(["--no-tls", "--auth", "plain"])
        .env("POP3_PASSWORD", "secret")
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> (i32, serde_json::Value, String) {
    let out = tokio::task::block_in_place(|| cmd.output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn message(i: usize) -> Vec<u8> {
    format!("Subject: message {i}\r\nFrom: <s{i}@example.org>\r\n\r\nbody {i}\r\n.dot line\r\n")
        .into_bytes()
}

/// What pop3d stores for `message(i)` delivered from `sender` to `rcpt`.
fn delivered(i: usize, sender: &str, rcpt: &str) -> String {
    let body = String::from_utf8(message(i)).unwrap();
    format!("Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n{body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_over_tcp_and_a_unix_socket_then_a_refused_recipient_stays_on_the_server() {
    let lmtpd = Lmtpd::start();
    let home = tempfile::tempdir().unwrap();
    let mut mail: Vec<Vec<u8>> = (0..3).map(message).collect();
    mail.push(b"Return-Path: <bounce@lists.example>\r\nSubject: list\r\n\r\nhi\r\n".to_vec());
    let server = TestServer::start(TestServerConfig::default(), mail).await.unwrap();
    let sender = "alice@[127.0.0.1]".to_owned();

    // TCP, --delete: all four delivered to bob, then deleted on the POP3 server.
    let to = format!("lmtp:{}", lmtpd.addr);
    let args = ["fetch", "--json", "--delete", "--to", &to, "--recipient", "bob"];
    let (code, report, stderr) = run(&mut pop3(&server, home.path(), &args));
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!((&report["fetched"], &report["deleted"]), (&4.into(), &4.into()), "{report}");
    assert!(server.messages().is_empty());
    let mut expected: Vec<String> = (0..3).map(|i| delivered(i, &sender, "bob")).collect();
    // The message's Return-Path is its envelope sender (pop3d adds one of its own on top).
    expected.push(
        "Return-Path: <bounce@lists.example>\r\nDelivered-To: bob\r\n\
         Return-Path: <bounce@lists.example>\r\nSubject: list\r\n\r\nhi\r\n"
            .into(),
    );
    expected.sort();
    assert_eq!(lmtpd.stored("bob"), expected);

    // The Unix socket, recipient from the config file.
    server.mailbox.lock().unwrap().add(message(10));
    let config = format!(
        "[accounts.a]\nurl = \"pop3://alice@127.0.0.1:{}\"\nno_tls = true\nauth = \"plain\"\n\
         to = \"lmtp:{}\"\nrecipient = \"alice\"\npolicy = \"delete\"\n",
        server.addr().port(),
        lmtpd.socket().display()
    );
    std::fs::create_dir_all(home.path().join("config/pop3")).unwrap();
    std::fs::write(home.path().join("config/pop3/config.toml"), config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pop3"));
    cmd.args(["fetch", "a", "--json"])
        .env("POP3_PASSWORD", "secret")
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("XDG_CONFIG_HOME", home.path().join("config"));
    let (code, report, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(lmtpd.stored("alice"), [delivered(10, &sender, "alice")]);
    assert!(server.messages().is_empty());

    // An unknown recipient: 550 at RCPT, permanent; the messages stay on the POP3 server
    // and are not recorded, so a run with the right recipient delivers them.
    server.mailbox.lock().unwrap().add(message(11));
    server.mailbox.lock().unwrap().add(message(12));
    let args = ["fetch", "--json", "--delete", "--to", &to, "--recipient", "nobody"];
    let (code, report, stderr) = run(&mut pop3(&server, home.path(), &args));
    assert_eq!(code, 4, "{report} {stderr}");
    assert_eq!((&report["fetched"], &report["deleted"]), (&0.into(), &0.into()), "{report}");
    let errors = report["errors"].to_string();
    assert!(errors.contains("refused RCPT TO permanently (550"), "{errors}");
    assert_eq!(server.messages().len(), 2);
    let args = ["fetch", "--json", "--delete", "--to", &to, "--recipient", "bob"];
    let (code, report, _) = run(&mut pop3(&server, home.path(), &args));
    assert_eq!((code, &report["fetched"]), (0, &2.into()), "{report}");
    assert!(server.messages().is_empty());
    assert_eq!(lmtpd.stored("bob").len(), 6);

    // No server listening: the run fails before anything is recorded or deleted.
    server.mailbox.lock().unwrap().add(message(13));
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let to = format!("lmtp:{gone}");
    let args = ["fetch", "--json", "--delete", "--to", &to, "--recipient", "bob"];
    let (code, report, _) = run(&mut pop3(&server, home.path(), &args));
    assert_eq!(code, 4, "{report}");
    assert!(report["error"].to_string().contains("mail server"), "{report}");
    assert_eq!(server.messages().len(), 1);
}

/// SIGKILL at random points of a 300-message delivery over LMTP with --delete, again and
/// again until a run completes: every message reaches the mailbox, none is lost. A message
/// is recorded right after the server's 250; a kill after the final "." of DATA and before
/// that record (the server commits and answers meanwhile) delivers that one message again on
/// the next run. Neither LMTP nor SMTP can close this window (the retriever cannot ask the
/// server whether it kept a message), so the bound is: at most one duplicate per kill, only
/// of the message in flight (docs/client.md, "Delivery to LMTP and SMTP").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_lmtp_delivery_loses_nothing() {
    let lmtpd = Lmtpd::start();
    let home = tempfile::tempdir().unwrap();
    let total = 300;
    let server = TestServer::start(TestServerConfig::default(), (0..total).map(message).collect())
        .await
        .unwrap();
    let to = format!("lmtp:{}", lmtpd.addr);
    let args = ["fetch", "-q", "--delete", "--to", &to, "--recipient", "bob"];
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
            | 1;
    eprintln!("crash test seed {seed}");
    let started = Instant::now();
    let mut kills = 0;
    for _ in 0..100 {
        if server.messages().is_empty() {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(5_000 + seed % 60_000);
        let mut child = pop3(&server, home.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + delay;
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() >= deadline {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(started.elapsed() < Duration::from_secs(240), "crash test too slow");
    }
    let (code, report, stderr) = run(&mut pop3(&server, home.path(), &args));
    assert!(code == 0 || code == 1, "{code} {report} {stderr}");
    assert!(server.messages().is_empty());
    let stored = lmtpd.stored("bob");
    let mut counts = std::collections::BTreeMap::new();
    for m in &stored {
        let subject = m.lines().find(|l| l.starts_with("Subject:")).unwrap().to_owned();
        *counts.entry(subject).or_insert(0) += 1;
    }
    eprintln!(
        "crash test: {kills} kills, {} stored, {} s",
        stored.len(),
        started.elapsed().as_secs_f32()
    );
    assert_eq!(counts.len(), total, "nothing lost");
    let duplicates = stored.len() - total;
    assert!(duplicates <= kills, "at most one duplicate per kill: {duplicates} for {kills} kills");
}

/// `--to smtp:` into a real Postfix (a private instance from Debian's `postfix`), which
/// relays to pop3d's LMTP listener: the message arrives with its envelope, and is recorded
/// and deleted on the POP3 server once Postfix queued it (250). Without Postfix: SKIPPED,
/// unless CI=true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_into_a_real_postfix() {
    if !Path::new("/usr/sbin/postfix").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "postfix not installed (apt-get install postfix), and CI=true"
        );
        eprintln!("SKIPPED: postfix not installed (apt-get install postfix)");
        return;
    }
    let lmtpd = Lmtpd::start();
    let postfix = tokio::task::block_in_place(|| {
        pop3_testkit::postfix::Postfix::start(
            &lmtpd.dir.path().join("postfix"),
            &format!("lmtp:inet:{}", lmtpd.addr),
        )
    });
    let home = tempfile::tempdir().unwrap();
    let mut mail = vec![message(1)];
    mail.push(b"Return-Path: <list@lists.example>\r\nSubject: two\r\n\r\n.x\r\n".to_vec());
    let server = TestServer::start(TestServerConfig::default(), mail).await.unwrap();
    let to = format!("smtp:{}", postfix.smtpd);
    let args = ["fetch", "--json", "--delete", "--to", &to, "--recipient", "bob@example.test"];
    let (code, report, stderr) = run(&mut pop3(&server, home.path(), &args));
    assert_eq!(code, 0, "{report} {stderr}\n{}", postfix.log());
    assert_eq!((&report["fetched"], &report["deleted"]), (&2.into(), &2.into()), "{report}");
    assert!(server.messages().is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    while lmtpd.stored("bob").len() < 2 {
        assert!(Instant::now() < deadline, "not relayed within 30 s\n{}", postfix.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = lmtpd.stored("bob");
    assert_eq!(stored.len(), 2);
    let two = stored.iter().find(|m| m.contains("Subject: two")).unwrap();
    assert!(two.starts_with("Return-Path: <list@lists.example>\r\n"), "{two}");
    assert!(two.ends_with("\r\n\r\n.x\r\n"), "dot-stuffed and unstuffed: {two}");
    let one = stored.iter().find(|m| m.contains("Subject: message 1")).unwrap();
    assert!(one.starts_with("Return-Path: <alice@[127.0.0.1]>\r\n"), "{one}");
    assert!(one.contains("body 1\r\n.dot line\r\n"), "{one}");
}

/// The peak resident memory (VmHWM, KiB) of `child` until it exits, and its exit code: read
/// from /proc every few milliseconds (the high-water mark only grows, so the last reading is
/// the peak but for the last moments).
fn peak_memory(child: &mut Child) -> (u64, i32) {
    let status = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = 0;
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            return (peak, code.code().unwrap_or(-1));
        }
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        let hwm = text.lines().find_map(|l| l.strip_prefix("VmHWM:"));
        let kib = hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        peak = peak.max(kib.unwrap_or(0));
        assert!(Instant::now() < deadline, "pop3 did not finish");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A message larger than any buffer (40 MiB, with dot lines, CRLF line ends and a
/// Return-Path) goes to pop3d's LMTP listener byte for byte, streamed: the retriever's
/// memory stays far below the message's size (it used to hold the message, and its stuffed
/// copy, whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_is_streamed_to_lmtp_byte_for_byte() {
    let lmtpd = Lmtpd::start();
    let home = tempfile::tempdir().unwrap();
    let mut big = b"Return-Path: <big@lists.example>\r\nSubject: big\r\n\r\n".to_vec();
    let mut line = 0u64;
    while big.len() < 40 << 20 {
        line += 1;
        let text = match line % 5 {
            0 => format!(".{line} a line that starts with a dot\r\n"),
            1 => "..\r\n".to_owned(),
            _ => format!("{line:>10} {}\r\n", "x".repeat((line % 97) as usize)),
        };
        big.extend_from_slice(text.as_bytes());
    }
    let size = big.len();
    let server = TestServer::start(TestServerConfig::default(), vec![big.clone()]).await.unwrap();
    let to = format!("lmtp:{}", lmtpd.addr);
    let args = ["fetch", "--json", "--delete", "--to", &to, "--recipient", "bob"];
    let mut child = pop3(&server, home.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (peak_kib, code) = tokio::task::block_in_place(|| peak_memory(&mut child));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code, 0, "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"fetched\":1"), "{stdout}");
    assert!(server.messages().is_empty(), "recorded, then deleted");
    let stored = lmtpd.stored("bob");
    let expected =
        [&b"Return-Path: <big@lists.example>\r\nDelivered-To: bob\r\n"[..], &big[..]].concat();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].as_bytes() == expected, "stored {} octets of {size}", stored[0].len());
    eprintln!("relayed {size} octets with a peak of {peak_kib} KiB resident");
    assert!(peak_kib > 0, "the peak was read");
    assert!(
        peak_kib * 1024 < size as u64 / 2,
        "{peak_kib} KiB resident for a message of {size} octets: not streamed"
    );
}
