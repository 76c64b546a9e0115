//! What the `pop3` binary prints, account by account, against the in-process test server.

mod common;

use common::{pop3, run};
use pop3_testkit::server::{TestServer, TestServerConfig};

fn url(server: &TestServer) -> String {
    format!("pop3://alice@127.0.0.1:{}", server.addr().port())
}

async fn server(subjects: &[&str]) -> TestServer {
    let mail = subjects
        .iter()
        .map(|s| format!("From: <a@example.org>\r\nSubject: {s}\r\n\r\nbody\r\n").into_bytes())
        .collect();
    TestServer::start(TestServerConfig::default(), mail).await.unwrap()
}

/// A `check` that fails (refused connection, refused login) prints its error and no
/// "0 messages, 0 new" summary; the account that worked still gets its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_prints_no_summary() {
    let home = tempfile::tempdir().unwrap();
    let server = server(&["one"]).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("pop3://alice@127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let out = run(&mut pop3(home.path(), &["check", "--no-tls", &closed]));
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stdout.is_empty(), "no summary: {out:?}");
    assert!(out.stderr.contains("connection"), "{out:?}");

    let out =
        run(pop3(home.path(), &["check", "--no-tls", &url(&server)]).env("POP3_PASSWORD", "x"));
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stdout.is_empty(), "no summary: {out:?}");

    let out = run(&mut pop3(home.path(), &["check", "--no-tls", &closed, &url(&server)]));
    assert_eq!(out.code, 3, "{out:?}");
    let name = url(&server).replace("pop3://", "");
    assert_eq!(out.stdout, format!("{name}: 1 messages, 1 new\n"), "{out:?}");
}

/// `list` of several accounts puts each listing under a heading naming its account (one
/// account: the listing alone, as before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_of_several_accounts_has_a_heading_per_account() {
    let home = tempfile::tempdir().unwrap();
    let (first, second) = (server(&["first one", "first two"]).await, server(&["second"]).await);
    let (url1, url2) = (url(&first), url(&second));
    common::write_config(
        home.path(),
        &format!(
            "[accounts.work]\nurl = \"{url1}\"\nno_tls = true\n\
             [accounts.home]\nurl = \"{url2}\"\nno_tls = true\n"
        ),
    );
    let out = run(&mut pop3(home.path(), &["list", "work", "home"]));
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert_eq!(lines[0], "work:");
    assert!(lines[1].contains("first one") && lines[2].contains("first two"), "{}", out.stdout);
    assert_eq!(lines[3], "");
    assert_eq!(lines[4], "home:");
    assert!(lines[5].contains("second"), "{}", out.stdout);

    let out = run(&mut pop3(home.path(), &["list", "home"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "no heading for one account: {}", out.stdout);
    assert!(out.stdout.contains("[new] <a@example.org>  second"), "{}", out.stdout);
}

/// An IPv6 address in brackets (RFC 3986) in a URL given on the command line and in the
/// config file: plain, and over STLS verified against the certificate's address `::1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_literals_in_urls() {
    if !pop3_testkit::peer::have_ipv6_loopback() {
        return;
    }
    use pop3_testkit::server::TestCa;
    let home = tempfile::tempdir().unwrap();
    let mail = vec![b"Subject: v6\r\n\r\nover IPv6\r\n".to_vec()];
    let plain =
        TestServer::start_on("[::1]:0", TestServerConfig::default(), mail.clone()).await.unwrap();
    let url = format!("pop3://alice@[::1]:{}", plain.addr().port());
    let out = run(&mut pop3(home.path(), &["check", "--no-tls", &url]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, format!("alice@[::1]:{}: 1 messages, 1 new\n", plain.addr().port()));

    let ca = TestCa::generate();
    let ca_file = home.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let config = TestServerConfig { tls: ca.server_tls(), ..TestServerConfig::default() };
    let tls = TestServer::start_on("[::1]:0", config, mail).await.unwrap();
    let maildir = home.path().join("Mail");
    common::write_config(
        home.path(),
        &format!(
            "[accounts.v6]\nurl = \"pop3://alice@[::1]:{}\"\ntls_ca = \"{}\"\nto = \"maildir:{}\"\n",
            tls.addr().port(),
            ca_file.display(),
            maildir.display()
        ),
    );
    let out = run(&mut pop3(home.path(), &["fetch", "v6"]));
    assert_eq!(out.code, 0, "{out:?}");
    let new: Vec<_> = std::fs::read_dir(maildir.join("new")).unwrap().collect();
    assert_eq!(new.len(), 1);
}
