//! `[log] format = "json"`: every line on standard error is a JSON object, each login attempt
//! writes an audit event with who, from where, how, over which TLS, the result, the reason and
//! the time taken, each session a summary at close, and no password or token ever appears,
//! even at debug level.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use common::{peer, Daemon, Session};
use serde_json::Value;

const PASSWORD: &str = "Quartz-Zebra-9127";
const WRONG: &str = "Wrong-Okapi-5531";
const TOKEN: &str = "tok-Sentinel-4242-bearer";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The log's lines, each parsed (a line that is not JSON fails the test).
fn events(daemon: &Daemon) -> Vec<Value> {
    daemon
        .log()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn audits(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["target"] == "pop3d::audit").collect()
}

#[test]
fn json_lines_with_an_audit_event_per_login_and_no_secret() {
    let mut daemon = Daemon::start_configured(|config| {
        config
            .replace("level = \"info\"", "level = \"debug\"")
            .replace("format = \"text\"", "format = \"json\"")
            .replace("auth_failure_delay_ms = 2000", "auth_failure_delay_ms = 0")
            .replace("auth_penalty_initial_ms = 2000", "auth_penalty_initial_ms = 10")
    });
    std::fs::write(daemon.data.join("users"), format!("alice:{{PLAIN}}{PASSWORD}\n")).unwrap();

    // USER/PASS that works, with a deletion committed.
    let (mut s, reply) = Session::logged_in(&daemon.plain, "alice", PASSWORD);
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(s.cmd("DELE 1").starts_with("+OK"));
    assert!(s.cmd("QUIT").starts_with("+OK"));
    // AUTH PLAIN with a wrong password, and a bearer token for a mechanism not offered.
    let mut s = Session::connect(&daemon.plain);
    let plain = b64(format!("\0alice\0{WRONG}").as_bytes());
    assert!(s.cmd(&format!("AUTH PLAIN {plain}")).starts_with("-ERR"));
    let bearer = b64(format!("user=alice\x01auth=Bearer {TOKEN}\x01\x01").as_bytes());
    assert!(s.cmd(&format!("AUTH XOAUTH2 {bearer}")).starts_with("-ERR"));
    s.cmd("QUIT");
    // Over implicit TLS (openssl s_client), the TLS version is in the audit event.
    let tls = peer("openssl", "openssl");
    if tls {
        let mut client = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &daemon.tls])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = client.stdin.take().unwrap();
        stdin.write_all(format!("USER alice\r\nPASS {PASSWORD}\r\nQUIT\r\n").as_bytes()).unwrap();
        drop(stdin);
        let out = String::from_utf8_lossy(&client.wait_with_output().unwrap().stdout).into_owned();
        assert!(out.matches("+OK").count() >= 3, "{out}");
    }
    assert!(daemon.stop().success());

    let log = daemon.log();
    for secret in [PASSWORD, WRONG, TOKEN, &plain, &bearer] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
    }
    let events = events(&daemon);
    assert!(events.iter().any(|e| e["level"] == "DEBUG"), "debug events are on");
    let audits = audits(&events);
    assert_eq!(audits.len(), 2 + usize::from(tls), "{audits:#?}");
    for audit in &audits {
        for field in ["user", "client", "mechanism", "tls", "result", "reason", "duration_ms"] {
            assert!(!audit[field].is_null(), "{field} missing: {audit}");
        }
        assert_eq!(audit["message"], "login");
        let client = audit["client"].as_str().unwrap();
        assert!(client.starts_with("127.0.0.1:"), "{audit}");
    }
    let ok = audits[0];
    assert_eq!(
        (&ok["user"], &ok["mechanism"], &ok["tls"], &ok["result"], &ok["reason"]),
        (&"alice".into(), &"USER".into(), &"none".into(), &"ok".into(), &"".into())
    );
    let bad = audits[1];
    assert_eq!(
        (&bad["user"], &bad["mechanism"], &bad["result"]),
        (&"alice".into(), &"PLAIN".into(), &"bad_credentials".into())
    );
    assert_eq!(bad["reason"], "credentials rejected");
    if tls {
        let over_tls = audits[2];
        assert_eq!(over_tls["result"], "ok");
        assert!(over_tls["tls"].as_str().unwrap().starts_with("TLSv1."), "{over_tls}");
    }
    // The summary of the session that deleted a message.
    let summary = events
        .iter()
        .find(|e| e["message"] == "session closed" && e["deleted"] == 1)
        .unwrap_or_else(|| panic!("no summary with deleted = 1:\n{log}"));
    for field in ["commands", "bytes_in", "bytes_out", "duration_ms"] {
        assert!(
            summary[field].as_u64().is_some_and(|n| n > 0 || field == "duration_ms"),
            "{summary}"
        );
    }
    assert_eq!(summary["commands"], 4, "USER, PASS, DELE, QUIT: {summary}");
    assert_eq!(summary["span"]["user"], "alice", "{summary}");
}

#[test]
fn text_stays_the_default_format() {
    let mut daemon = Daemon::start();
    Session::login(&daemon.plain, "alice", "secret");
    assert!(daemon.stop().success());
    let log = daemon.log();
    assert!(log.lines().all(|l| serde_json::from_str::<Value>(l).is_err()), "{log}");
    assert!(log.contains("pop3d::audit") && log.contains("result=\"ok\""), "{log}");
}
