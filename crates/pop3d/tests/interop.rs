//! Interop with real, independent POP3 clients against the `pop3d` binary: curl, Python's
//! poplib, fetchmail, mpop and getmail6. Each test checks that the bytes that arrive are the
//! stored messages and that deletions happen exactly when asked.
//!
//! Each test runs twice, as `NAME::maildir` on the default Maildir store and as
//! `NAME::postgresql` with `[mail] format = "postgresql"` on a throwaway PostgreSQL cluster.
//! A missing client, or a missing PostgreSQL, is a loud SKIPPED line locally and a failure
//! when `CI=true`; `.ci/run` installs the Debian packages.

mod common;

use std::path::Path;
use std::process::Command;

use common::fetchmail::Fetchmail;
use common::{lf, messages, on_both_stores, output_ok, passwd_ids, peer, Daemon, Store};
use pop3_testkit::transmitted;

fn curl(args: &[&str]) -> Vec<u8> {
    let out =
        Command::new("curl").args(["-s", "-S", "--max-time", "60"]).args(args).output().unwrap();
    output_ok(&out, &format!("curl {args:?}"));
    out.stdout
}

on_both_stores!(curl_list_retrieve_delete_plain_stls_and_pop3s);
fn curl_list_retrieve_delete_plain_stls_and_pop3s(store: Store) {
    if !peer("curl", "curl") {
        return;
    }
    let daemon = Daemon::start_on(store);
    let stored = messages();
    let (plain, tls) = (&daemon.plain, &daemon.tls);
    let cacert = daemon.cert();
    let cacert = cacert.to_str().unwrap();

    let listing = String::from_utf8(curl(&[&format!("pop3://alice:secret@{plain}/")])).unwrap();
    let expected: String = stored
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}\r\n", i + 1, transmitted(m).len()))
        .collect();
    assert_eq!(listing, expected);
    for (i, m) in stored.iter().enumerate() {
        let n = i + 1;
        assert_eq!(
            curl(&[&format!("pop3://alice:secret@{plain}/{n}")]),
            transmitted(m),
            "plain RETR {n}"
        );
        // POP3S, with the certificate verified against the data dir's self-signed one.
        let url = format!("pop3s://alice:secret@localhost:{}/{n}", Daemon::port(tls));
        let resolve = format!("localhost:{}:127.0.0.1", Daemon::port(tls));
        assert_eq!(
            curl(&["--cacert", cacert, "--resolve", &resolve, &url]),
            transmitted(m),
            "pop3s RETR {n}"
        );
        // STLS required.
        let url = format!("pop3://alice:secret@localhost:{}/{n}", Daemon::port(plain));
        let resolve = format!("localhost:{}:127.0.0.1", Daemon::port(plain));
        assert_eq!(
            curl(&["--ssl-reqd", "--cacert", cacert, "--resolve", &resolve, &url]),
            transmitted(m),
            "STLS RETR {n}"
        );
    }
    assert_eq!(daemon.stored("alice").len(), 3, "retrieving deletes nothing");
    curl(&["-X", "DELE", "-I", &format!("pop3://alice:secret@{plain}/2")]);
    // curl may exit before the server's answer to its QUIT: the commit can still be running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while daemon.stored("alice").len() == 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let left = daemon.stored("alice");
    let kept = vec![daemon.as_stored(&stored[0]), daemon.as_stored(&stored[2])];
    assert_eq!(left, kept, "exactly message 2 deleted");
    let listing =
        String::from_utf8(curl(&[&format!("pop3s://alice:secret@{tls}/"), "-k"])).unwrap();
    assert_eq!(listing.lines().count(), 2);
}

const POPLIB_SCRIPT: &str = r#"
import poplib, ssl, sys
plain_host, plain_port, tls_port, cafile, expected_dir = sys.argv[1:6]
expected = [open(f"{expected_dir}/{n}", "rb").read() for n in (1, 2, 3)]
ctx = ssl.create_default_context(cafile=cafile)

def lines(m):
    return m.split(b"\r\n")[:-1]

# Plain, then STLS, then every method.
p = poplib.POP3(plain_host, int(plain_port), timeout=30)
assert p.getwelcome().startswith(b"+OK"), p.getwelcome()
caps = p.capa()
assert "STLS" in caps and "UIDL" in caps and "TOP" in caps, caps
p.stls(context=ctx)
caps = p.capa()
assert "STLS" not in caps, caps
p.user("alice")
p.pass_("secret")
count, size = p.stat()
assert count == 3 and size == sum(len(m) for m in expected), (count, size)
resp, listing, _ = p.list()
assert listing == [f"{i+1} {len(m)}".encode() for i, m in enumerate(expected)], listing
assert p.list(2).split()[1:] == [b"2", str(len(expected[1])).encode()]
resp, uids, _ = p.uidl()
assert len(uids) == 3
assert p.uidl(1).split()[1] == b"1"
for i, m in enumerate(expected):
    resp, got, octets = p.retr(i + 1)
    assert got == lines(m), (i, got[:5], lines(m)[:5])
    assert octets >= len(m), (octets, len(m))
resp, top, _ = p.top(1, 1)
body_start = lines(expected[0]).index(b"")
assert top == lines(expected[0])[:body_start + 2], top
p.noop()
p.dele(1)
try:
    p.retr(1)
    raise SystemExit("RETR of a deleted message succeeded")
except poplib.error_proto:
    pass
p.rset()
p.retr(1)
p.dele(2)
p.quit()

# APOP on a fresh connection (offered in the test config; alice's password is PLAIN).
p = poplib.POP3(plain_host, int(plain_port), timeout=30)
p.set_debuglevel(0)
try:
    p.rpop("alice")
    raise SystemExit("RPOP accepted")
except poplib.error_proto:
    pass
p.apop("alice", "secret")
assert p.stat()[0] == 2, p.stat()
p.quit()

# POP3S, UTF8, and a session that is dropped without QUIT.
p = poplib.POP3_SSL("localhost", int(tls_port), context=ctx, timeout=30)
if "UTF8" in p.capa():
    p.utf8()
p.user("alice")
p.pass_("secret")
assert p.stat()[0] == 2
p.dele(1)
p.close()
print("poplib: all good")
"#;

on_both_stores!(python_poplib_every_method);
fn python_poplib_every_method(store: Store) {
    if !peer("python3", "python3") {
        return;
    }
    let daemon = Daemon::start_on(store);
    let expected = daemon.dir.path().join("expected");
    std::fs::create_dir(&expected).unwrap();
    for (i, m) in messages().iter().enumerate() {
        std::fs::write(expected.join((i + 1).to_string()), transmitted(m)).unwrap();
    }
    let script = daemon.dir.path().join("poplib_test.py");
    std::fs::write(&script, POPLIB_SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", Daemon::port(&daemon.plain), Daemon::port(&daemon.tls)])
        .arg(daemon.cert())
        .arg(&expected)
        .output()
        .unwrap();
    output_ok(&out, "python3 poplib script");
    let stored = messages();
    let kept = vec![daemon.as_stored(&stored[0]), daemon.as_stored(&stored[2])];
    assert_eq!(daemon.stored("alice"), kept);
}

fn private_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Files of a Maildir's new/ and cur/, in name order.
fn maildir_messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            files.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Each fetched message is the stored one, maybe after headers the client adds in front.
fn assert_fetched(fetched: &[Vec<u8>], stored: &[Vec<u8>], what: &str) {
    assert_eq!(fetched.len(), stored.len(), "{what}: message count");
    let mut fetched: Vec<_> = fetched.iter().map(|m| lf(m)).collect();
    fetched.sort_by_key(|m| m.len());
    let mut stored: Vec<_> = stored.iter().map(|m| lf(m)).collect();
    stored.sort_by_key(|m| m.len());
    for (got, want) in fetched.iter().zip(&stored) {
        assert!(got.ends_with(want), "{what}: a fetched message differs from the stored one");
        let added = &got[..got.len() - want.len()];
        assert!(
            added.is_empty() || added.ends_with(b"\n"),
            "{what}: only whole header lines added"
        );
    }
}

on_both_stores!(fetchmail_keep_nokeep_and_stls);
fn fetchmail_keep_nokeep_and_stls(store: Store) {
    if !peer("fetchmail", "fetchmail") {
        return;
    }
    let daemon = Daemon::start_on(store);
    let fetchmail = Fetchmail::new(&daemon.dir.path().join("fetchmail"));
    let stored = messages();
    let fetch = |options: &str| {
        let out = fetchmail.poll(Daemon::port(&daemon.plain), &daemon.cert(), options);
        output_ok(&out, "fetchmail");
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(log.contains("STLS"), "fetchmail used STLS:\n{log}");
        fetchmail.take()
    };
    assert_fetched(&fetch("keep fetchall"), &stored, "fetchmail keep");
    assert_eq!(daemon.stored("alice").len(), 3, "keep deletes nothing");
    assert_fetched(&fetch("nokeep fetchall"), &stored, "fetchmail nokeep");
    assert!(daemon.stored("alice").is_empty(), "nokeep deletes what was fetched");
}

on_both_stores!(fetchmail_keep_mode_delivers_each_message_once);
/// fetchmail's default keep mode (no `uidl`, no `fetchall`) asks `LAST` first and, if the
/// server answers it, fetches every message above that number. pop3d refuses `LAST` (as
/// Dovecot does), so fetchmail falls back to UIDL and its id file: every message is delivered
/// exactly once over several runs, and a message that arrives in between is the only new one.
fn fetchmail_keep_mode_delivers_each_message_once(store: Store) {
    if !peer("fetchmail", "fetchmail") {
        return;
    }
    let daemon = Daemon::start_on(store);
    let extra: Vec<Vec<u8>> = (4..=5)
        .map(|n| format!("Subject: extra {n}\nMessage-ID: <{n}.extra@example.org>\n\nbody {n}\n"))
        .map(String::into_bytes)
        .collect();
    for m in &extra {
        let out = common::run(&["deliver", "alice"], &daemon.data, m);
        output_ok(&out, "pop3d deliver");
    }
    let home = daemon.dir.path().join("fetchmail-keep");
    std::fs::create_dir_all(&home).unwrap();
    // The MDA appends each message to one file, after a separator line that counts it.
    let delivered = home.join("delivered");
    let mda = home.join("mda.sh");
    std::fs::write(
        &mda,
        format!("#!/bin/sh\n{{ echo '=== delivery'; cat; }} >> '{}'\n", delivered.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&mda, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rc = home.join("fetchmailrc");
    private_file(
        &rc,
        &format!(
            "set no bouncemail\n\
             poll localhost via 127.0.0.1 protocol pop3 service {port}\n\
               user \"alice\" there with password \"secret\" is \"alice\" here\n\
               sslproto 'TLS1.2+' sslcertck sslcertfile \"{cert}\" sslcommonname localhost\n\
               mda \"{mda}\" keep\n",
            port = Daemon::port(&daemon.plain),
            cert = daemon.cert().display(),
            mda = mda.display(),
        ),
    );
    let deliveries = || {
        let text = std::fs::read_to_string(&delivered).unwrap_or_default();
        text.lines().filter(|l| *l == "=== delivery").count()
    };
    let fetch = |what: &str| -> usize {
        let before = deliveries();
        let out = Command::new("fetchmail")
            .args(["--nodetach", "--nosyslog", "-v", "-f"])
            .arg(&rc)
            .arg("--pidfile")
            .arg(home.join("pid"))
            .arg("--idfile")
            .arg(home.join("ids"))
            .env("HOME", &home)
            .env("FETCHMAILHOME", &home)
            .output()
            .unwrap();
        // fetchmail exits 1 when there was no new mail.
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "fetchmail ({what}) failed: {}\n{log}",
            out.status
        );
        deliveries() - before
    };
    assert_eq!(fetch("first run"), 5, "the first run delivers every message");
    assert_eq!(fetch("second run"), 0, "the second run delivers nothing again");
    let newer = b"Subject: newer\nMessage-ID: <6.extra@example.org>\n\nbody 6\n";
    output_ok(&common::run(&["deliver", "alice"], &daemon.data, newer), "pop3d deliver");
    assert_eq!(fetch("third run"), 1, "the third run delivers only the new message");
    assert_eq!(daemon.stored("alice").len(), 6, "keep deletes nothing");
}

on_both_stores!(mpop_to_maildir_pipelining_keep_on_and_off);
fn mpop_to_maildir_pipelining_keep_on_and_off(store: Store) {
    if !peer("mpop", "mpop") {
        return;
    }
    let daemon = Daemon::start_on(store);
    let home = daemon.dir.path().join("mpop");
    let maildir = home.join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let stored = messages();
    let fetch = |keep: &str, tls: &str| {
        let conf = home.join("mpoprc");
        private_file(
            &conf,
            &format!(
                "defaults\nuidls_file {home}/uidls\n\
                 account default\nhost localhost\nport {port}\nuser alice\npassword secret\n\
                 auth user\n{tls}\ntls_trust_file {cert}\n\
                 pipelining on\nreceived_header off\ndelivery maildir {maildir}\nkeep {keep}\n\
                 only_new off\n",
                home = home.display(),
                port = if tls.contains("starttls off") {
                    Daemon::port(&daemon.tls)
                } else {
                    Daemon::port(&daemon.plain)
                },
                cert = daemon.cert().display(),
                maildir = maildir.display(),
            ),
        );
        let out = Command::new("mpop")
            .arg("-C")
            .arg(&conf)
            .arg("-q")
            .env("HOME", &home)
            .output()
            .unwrap();
        output_ok(&out, "mpop");
    };
    fetch("on", "tls on\ntls_starttls on");
    assert_fetched(&maildir_messages(&maildir), &stored, "mpop keep on (STLS)");
    assert_eq!(daemon.stored("alice").len(), 3, "keep on deletes nothing");
    std::fs::remove_dir_all(&maildir).unwrap();
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    fetch("off", "tls on\ntls_starttls off");
    assert_fetched(&maildir_messages(&maildir), &stored, "mpop keep off (POP3S)");
    assert!(daemon.stored("alice").is_empty(), "keep off deletes what was fetched");
}

on_both_stores!(getmail6_ssl_retriever_to_maildir);
fn getmail6_ssl_retriever_to_maildir(store: Store) {
    if !peer("getmail", "getmail6") {
        return;
    }
    let daemon = Daemon::start_on(store);
    let home = daemon.dir.path().join("getmail");
    let maildir = home.join("Maildir");
    // getmail refuses to deliver to a Maildir as root: as root (CI), it delivers as `nobody`
    // into a Maildir that nobody owns.
    let as_root = rustix::process::geteuid().is_root();
    let make_maildir = || {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        if as_root {
            use std::os::unix::fs::PermissionsExt;
            for dir in [daemon.dir.path(), &home] {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let nobody = passwd_ids("nobody");
            for dir in
                [maildir.clone(), maildir.join("new"), maildir.join("cur"), maildir.join("tmp")]
            {
                std::os::unix::fs::chown(&dir, Some(nobody.0), Some(nobody.1)).unwrap();
            }
        }
    };
    make_maildir();
    let user_line = if as_root { "user = nobody\n" } else { "" };
    let stored = messages();
    // getmail6 (6.18, Debian) forks a child per delivered message and installs its SIGCHLD
    // handler only after fork(): a child that exits first goes unnoticed, and getmail gives up
    // after its `timeout` with "waiting child pid N timed out" (upstream getmail6 issue #226),
    // the message delivered but not deleted. That failure, and only that one, is run again
    // once, loudly; the message then arrives twice, so such a run is checked on distinct
    // messages. `fetch` returns whether it ran getmail again.
    let fetch = |delete: bool| -> bool {
        let rc = home.join("getmailrc");
        private_file(
            &rc,
            &format!(
                "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = localhost\nport = {port}\n\
                 username = alice\npassword = secret\nca_certs = {cert}\ntimeout = 30\n\n\
                 [destination]\ntype = Maildir\npath = {maildir}/\n{user_line}\n\
                 [options]\nread_all = true\ndelete = {delete}\ndelivered_to = false\n\
                 received = false\nverbose = 0\n",
                port = Daemon::port(&daemon.tls),
                cert = daemon.cert().display(),
                maildir = maildir.display(),
            ),
        );
        let getmail = || {
            Command::new("getmail")
                .arg("--rcfile")
                .arg(&rc)
                .arg("--getmaildir")
                .arg(&home)
                .env("HOME", &home)
                .output()
                .unwrap()
        };
        let mut out = getmail();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let lost_child =
            !out.status.success() && err.contains("waiting child pid") && err.contains("timed out");
        if lost_child {
            eprintln!("NOTE: getmail lost its delivery child (its SIGCHLD race); again: {err}");
            out = getmail();
        }
        output_ok(&out, "getmail");
        lost_child
    };
    let fetched = |again: bool| {
        let mut messages = maildir_messages(&maildir);
        if again {
            messages.sort();
            messages.dedup();
        }
        messages
    };
    let again = fetch(false);
    assert_fetched(&fetched(again), &stored, "getmail keep");
    assert_eq!(daemon.stored("alice").len(), 3, "delete = false deletes nothing");
    std::fs::remove_dir_all(&maildir).unwrap();
    make_maildir();
    let again = fetch(true);
    assert_fetched(&fetched(again), &stored, "getmail delete");
    assert!(daemon.stored("alice").is_empty(), "delete = true deletes what was fetched");
}
