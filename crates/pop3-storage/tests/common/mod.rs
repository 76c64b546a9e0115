//! Shared test helpers: realistic fixtures generated at test time, the reference for the
//! transmitted form of a message (from pop3-testkit), and child processes that hold locks or stop at failpoints.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pop3_storage::Maildrop;
pub use pop3_testkit::transmitted;

/// A message as an MTA would deliver it, with the awkward parts tests need: lines starting
/// with "From " and ".", a ">From " line, LF endings (or CRLF), optionally no final newline.
pub fn message(n: usize, body_lines: usize, crlf: bool, final_newline: bool) -> Vec<u8> {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut s = String::new();
    let headers = [
        format!("Return-Path: <sender{n}@example.org>"),
        format!(
            "Received: from mx.example.org (mx.example.org [192.0.2.{}])\n\tby mail.example.com (Postfix) with ESMTP id 4F{n:05X}",
            n % 250
        ),
        format!("Message-ID: <{n}.{}@example.org>", n * 7919),
        format!("Date: Tue, 14 Nov 2023 22:{:02}:20 +0000", n % 60),
        format!("From: Sender {n} <sender{n}@example.org>"),
        "To: alice@example.com".to_owned(),
        format!("Subject: test message {n}"),
    ];
    for h in headers {
        s.push_str(&h.replace('\n', eol));
        s.push_str(eol);
    }
    s.push_str(eol);
    for i in 0..body_lines {
        let line = match i % 9 {
            0 => "From here on, the body starts.".to_owned(),
            1 => ".".to_owned(),
            2 => ".leading dot line".to_owned(),
            3 => ">From the quoted past".to_owned(),
            4 => String::new(),
            5 => "a line with a bare\rCR inside".to_owned(),
            _ => format!("line {i} of message {n}: the quick brown fox jumps over the lazy dog"),
        };
        s.push_str(&line);
        s.push_str(eol);
    }
    s.push_str("-- \nlast line");
    if final_newline {
        s.push_str(eol);
    }
    s.into_bytes()
}

/// Reads message `i` of a maildrop whole (tests only; the crate never does this).
pub fn read_all(drop: &dyn Maildrop, i: usize) -> Vec<u8> {
    let mut v = Vec::new();
    drop.read_message(i).expect("read_message").read_to_end(&mut v).expect("read");
    v
}

/// Environment variable naming the role of a re-invoked test binary.
pub const ROLE: &str = "POP3_STORAGE_TEST_ROLE";
/// Environment variable with the directory/file the child works on.
pub const TARGET: &str = "POP3_STORAGE_TEST_TARGET";
/// Environment variable with the failpoint at which the child stops.
pub const FAILPOINT: &str = "POP3_STORAGE_TEST_FAILPOINT";

/// The role this process was started in, if it is a child.
pub fn child_role() -> Option<(String, String)> {
    let role = std::env::var(ROLE).ok()?;
    let target = std::env::var(TARGET).unwrap_or_default();
    Some((role, target))
}

/// In a child: stops at the failpoint named by the environment, announcing it on stdout and
/// waiting to be killed.
pub fn install_failpoint_hook() {
    fn hook(name: &str) {
        if std::env::var(FAILPOINT).as_deref() == Ok(name) {
            println!("FAILPOINT {name}");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    pop3_storage::testing::set_failpoint_hook(hook);
}

/// Child side: announce a marker and wait to be killed.
pub fn announce_and_wait(marker: &str) -> ! {
    println!("{marker}");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A running child test process.
pub struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildProc {
    /// Re-runs this test binary's test `test_name` as a child with the given role.
    pub fn spawn(test_name: &str, role: &str, target: &str, failpoint: Option<&str>) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(TARGET, target)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(fp) = failpoint {
            cmd.env(FAILPOINT, fp);
        }
        let mut child = cmd.spawn().expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines: rx }
    }

    /// Waits (up to 60 s) for a line containing `marker`; false if the child ended first.
    pub fn wait_for(&self, marker: &str) -> bool {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(marker) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// SIGKILL and reap.
    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the child to exit by itself; returns whether it succeeded.
    pub fn wait_success(mut self) -> bool {
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}
