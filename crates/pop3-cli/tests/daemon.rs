//! `pop3 fetch --daemon` against the in-process test server: polls on the interval, a jittered
//! exponential backoff while the server is down, new mail on the next poll, SIGHUP reloading
//! the config (and keeping it when the new one is broken), one log line per poll, and SIGTERM
//! letting the poll in progress finish and commit before exiting 0.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{pop3, write_config};
use pop3_testkit::server::{TestServer, TestServerConfig};
use rustix::process::{kill_process, Pid, Signal};

fn message(i: usize) -> Vec<u8> {
    format!("Subject: message {i}\r\nFrom: <s{i}@example.org>\r\n\r\nbody {i}\r\n").into_bytes()
}

fn account(name: &str, port: u16, maildir: &Path, extra: &str) -> String {
    format!(
        "[accounts.{name}]\nurl = \"pop3://alice@127.0.0.1:{port}\"\nno_tls = true\n\
         to = \"maildir:{}\"\ninterval = 1\n{extra}\n",
        maildir.display()
    )
}

/// `pop3 fetch --daemon`, with its standard error line by line.
fn daemon(home: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = pop3(home, &["fetch", "--daemon"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            assert!(!line.contains("panicked"), "{line}");
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The next line containing `needle` (at most `within`), after the lines before it.
fn expect(lines: &mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line =
            lines.recv_timeout(wait).unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn signal(child: &Child, signal: Signal) {
    kill_process(Pid::from_child(child), signal).unwrap();
}

/// Waits (at most 20 s) for the daemon to exit: its exit code.
fn exited(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("new")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_back_off_while_the_server_is_down_reload_on_sighup_and_stop_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let (mail, other_mail) = (home.path().join("Mail"), home.path().join("Other"));
    // A port where nothing listens yet.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    write_config(home.path(), &account("work", port, &mail, ""));
    let (mut child, lines) = daemon(home.path());
    expect(&lines, "daemon: polling 1 account(s)", Duration::from_secs(10));
    // Down: retried after a wait between half and all of 1 s, 2 s, 4 s (equal jitter).
    let mut waits = Vec::new();
    for failure in 1..=3 {
        let line = expect(&lines, "work: poll failed:", Duration::from_secs(15));
        assert!(line.contains(&format!("(failure {failure})")), "{line}");
        let wait: f64 =
            line.split("retry in ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        waits.push(wait);
    }
    let full = [1.0, 2.0, 4.0];
    for (wait, full) in waits.iter().zip(full) {
        assert!(*wait >= full / 2.0 - 0.05 && *wait <= full + 0.05, "{waits:?}");
    }
    // Back: the next retry fetches, and each poll after that takes what is new.
    let server = TestServer::start_on(
        &format!("127.0.0.1:{port}"),
        TestServerConfig::default(),
        (0..3).map(message).collect(),
    )
    .await
    .unwrap();
    let line = expect(&lines, "work: 3 new of 3 messages, fetched 3", Duration::from_secs(10));
    assert!(line.ends_with("next poll in 1 s"), "{line}");
    assert_eq!(files(&mail), 3);
    server.mailbox.lock().unwrap().add(message(3));
    expect(&lines, "work: 1 new of 4 messages, fetched 1", Duration::from_secs(5));
    assert_eq!(files(&mail), 4);
    // SIGHUP with a broken config file: reported, the old one kept.
    write_config(home.path(), "[accounts.work]\nurl = 1\n");
    signal(&child, Signal::HUP);
    expect(&lines, "reloading failed, the configuration is unchanged", Duration::from_secs(5));
    expect(&lines, "work: 0 new of 4 messages", Duration::from_secs(5));
    // SIGHUP with a second account: polled at once.
    let both = account("work", port, &mail, "") + &account("other", port, &other_mail, "");
    write_config(home.path(), &both);
    signal(&child, Signal::HUP);
    expect(&lines, "configuration reloaded, polling 2 account(s)", Duration::from_secs(5));
    expect(&lines, "other: 4 new of 4 messages, fetched 4", Duration::from_secs(5));
    assert_eq!(files(&other_mail), 4);
    signal(&child, Signal::TERM);
    expect(&lines, "daemon: stopped", Duration::from_secs(10));
    assert_eq!(exited(&mut child), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_poll_lets_it_finish_and_commit() {
    let home = tempfile::tempdir().unwrap();
    let mail = home.path().join("Mail");
    let count = 3000;
    let big = |i: usize| {
        let mut m = message(i);
        m.extend(std::iter::repeat_n(b'x', 2000).chain(*b"\r\n"));
        m
    };
    let server = TestServer::start(TestServerConfig::default(), (0..count).map(big).collect())
        .await
        .unwrap();
    let port = server.addr().port();
    write_config(home.path(), &account("work", port, &mail, "policy = \"delete\"\nbatch = 64"));
    let (mut child, lines) = daemon(home.path());
    // Stopped as soon as the first messages are on disk, mid-download.
    let deadline = Instant::now() + Duration::from_secs(30);
    while files(&mail) == 0 {
        assert!(Instant::now() < deadline, "nothing fetched");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, Signal::TERM);
    // The signal came during the poll (its line comes first), which then went on to its end.
    expect(&lines, "stopping after the poll in progress", Duration::from_secs(10));
    let line = expect(&lines, "work: ", Duration::from_secs(60));
    assert!(
        line.contains(&format!("fetched {count} (")) && line.contains(&format!("deleted {count}")),
        "the poll went on to its end: {line}"
    );
    expect(&lines, "daemon: stopped", Duration::from_secs(10));
    assert_eq!(exited(&mut child), 0);
    assert_eq!(files(&mail), count);
    assert!(server.messages().is_empty(), "the deletions were committed by QUIT");
}
