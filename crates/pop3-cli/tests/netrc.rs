//! `~/.netrc` (or `$NETRC`) as a password source, end to end against the in-process test
//! server: used when there is no POP3_PASSWORD and no password_command (which comes first),
//! and refused when others may read it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::run;
use pop3_testkit::server::{TestServer, TestServerConfig};

/// `pop3 fetch` of the test server's account, with no password from the environment.
fn fetch(server: &TestServer, home: &Path, extra: &[&str]) -> Command {
    let url = format!("pop3://alice@127.0.0.1:{}", server.addr().port());
    let to = format!("maildir:{}", home.join("Mail").display());
    let mut cmd = common::pop3(home, &["fetch", "--json", "--no-tls", "--auth", "plain"]);
    cmd.args(["--to", &to]).args(extra).arg(url).env_remove("POP3_PASSWORD").env_remove("NETRC");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_netrc_password_logs_in_after_password_command_and_a_readable_one_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let mail = vec![b"Subject: one\r\n\r\nbody\r\n".to_vec()];
    let server = TestServer::start(TestServerConfig::default(), mail).await.unwrap();
    let netrc = home.path().join(".netrc");
    let set_mode = |mode| std::fs::set_permissions(&netrc, PermissionsExt::from_mode(mode));
    std::fs::write(
        &netrc,
        "machine 127.0.0.1\n  login bob password nope\nmachine 127.0.0.1 login alice password secret\n",
    )
    .unwrap();
    set_mode(0o600).unwrap();

    let out = run(&mut fetch(&server, home.path(), &[]));
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("\"fetched\":1"), "{}", out.stdout);

    // password_command comes first: a wrong one is not rescued by the netrc.
    server.mailbox.lock().unwrap().add(b"Subject: two\r\n\r\nbody\r\n".to_vec());
    let out = run(&mut fetch(&server, home.path(), &["--password-command", "echo wrong"]));
    assert_eq!(out.code, 4, "{} {}", out.stdout, out.stderr);

    // Readable by others: refused, with what to do.
    set_mode(0o644).unwrap();
    let out = run(&mut fetch(&server, home.path(), &[]));
    assert_eq!(out.code, 4, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("chmod 600"), "{}", out.stdout);

    // $NETRC names another file; its default entry serves any host.
    let other = home.path().join("other-netrc");
    std::fs::write(&other, "default login alice password secret\n").unwrap();
    std::fs::set_permissions(&other, PermissionsExt::from_mode(0o600)).unwrap();
    let out = run(fetch(&server, home.path(), &[]).env("NETRC", &other));
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("\"fetched\":1"), "{}", out.stdout);
}
