//! `--proxy` / `proxy =` (SOCKS5, RFC 1928) through a real Dante (`danted` from Debian's
//! `dante-server`), started privately with its own config on a loopback port: a fetch through
//! it with the proxy resolving the name (`socks5h://`), the name handed to the proxy and not
//! looked up here, and a failure through the proxy reported as such. Without danted:
//! SKIPPED, unless CI=true.

mod common;

use common::dante::{self, Dante};
use common::run;
use pop3_testkit::server::{TestServer, TestServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_through_a_socks5_proxy_that_resolves_the_name() {
    if !dante::available("fetch_through_a_socks5_proxy_that_resolves_the_name") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let dante = tokio::task::block_in_place(|| Dante::start(home.path()));
    let server =
        TestServer::start(TestServerConfig::default(), vec![b"Subject: s\r\n\r\nb\r\n".to_vec()])
            .await
            .unwrap();
    let port = server.addr().port();
    let maildir = home.path().join("Mail");
    let fetch = |url: String, proxy: &str| {
        let to = format!("maildir:{}", maildir.display());
        let mut cmd =
            common::pop3(home.path(), &["fetch", "--json", "--no-tls", "--auth", "plain"]);
        cmd.args(["--to", &to, "--proxy", proxy, &url]);
        run(&mut cmd)
    };
    let proxy = format!("socks5h://127.0.0.1:{}", dante.port);

    // The server by a name the proxy resolves; the connection passes through danted.
    let connections = server.connections.load(std::sync::atomic::Ordering::SeqCst);
    let out = fetch(format!("pop3://alice@localhost:{port}"), &proxy);
    assert_eq!(out.code, 0, "{} {}\n{}", out.stdout, out.stderr, dante.log());
    assert!(out.stdout.contains("\"fetched\":1"), "{}", out.stdout);
    assert_eq!(server.connections.load(std::sync::atomic::Ordering::SeqCst), connections + 1);
    let log = dante.log();
    assert!(log.contains(&format!("127.0.0.1.{port}")), "danted passed it on:\n{log}");

    // A name nobody can resolve: with socks5h it goes to the proxy, which reports the failure;
    // with socks5 the lookup fails here, before the proxy is asked.
    let bad = format!("pop3://alice@pop3-test.invalid:{port}");
    let out = fetch(bad.clone(), &proxy);
    assert_eq!(out.code, 4, "{}", out.stdout);
    assert!(
        out.stdout.contains("SOCKS5 proxy")
            && out.stdout.contains("connecting to pop3-test.invalid"),
        "{}",
        out.stdout
    );
    let out = fetch(bad, &format!("socks5://127.0.0.1:{}", dante.port));
    assert_eq!(out.code, 4, "{}", out.stdout);
    assert!(out.stdout.contains("resolving pop3-test.invalid"), "{}", out.stdout);
}
