//! The `pop3` binary and the certificates servers present: a self-signed one (`CA:TRUE`, as
//! `openssl req -x509` makes it) trusted with `--tls-ca`, and the advice given when a
//! certificate's issuer is unknown, followed to the letter.

mod common;

use common::{pop3, run};
use pop3_testkit::server::{SelfSigned, TestServer, TestServerConfig, Validity};

async fn server(cert: &SelfSigned, implicit_tls: bool) -> TestServer {
    let config =
        TestServerConfig { tls: cert.server_tls(), implicit_tls, ..TestServerConfig::default() };
    TestServer::start(config, vec![b"Subject: tls\r\n\r\nsecret\r\n".to_vec()]).await.unwrap()
}

/// `--tls-ca` with the server's own self-signed `CA:TRUE` certificate works over STLS and
/// implicit TLS; the name is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ca_accepts_the_servers_self_signed_ca_certificate() {
    let home = tempfile::tempdir().unwrap();
    let cert = SelfSigned::generate("pop.test", &["localhost", "127.0.0.1"], Validity::Now);
    let file = home.path().join("server.pem");
    std::fs::write(&file, &cert.cert_pem).unwrap();
    let file = file.to_str().unwrap();
    for (scheme, implicit) in [("pop3", false), ("pop3s", true)] {
        let trusted = server(&cert, implicit).await;
        let port = trusted.addr().port();
        for host in ["127.0.0.1", "localhost"] {
            let url = format!("{scheme}://alice@{host}:{port}");
            let out = run(&mut pop3(home.path(), &["check", "--tls-ca", file, &url]));
            assert_eq!(out.code, 0, "{url}: {out:?}");
            assert!(out.stdout.contains("1 messages, 1 new"), "{url}: {out:?}");
        }
        // Trusted, but not for this name: refused.
        let localhost_only = SelfSigned::generate("pop.test", &["localhost"], Validity::Now);
        let other = server(&localhost_only, implicit).await;
        let only = home.path().join("localhost-only.pem");
        std::fs::write(&only, &localhost_only.cert_pem).unwrap();
        let url = format!("{scheme}://alice@127.0.0.1:{}", other.addr().port());
        let out = run(pop3(home.path(), &["check", &url, "--tls-ca"]).arg(&only));
        assert_eq!(out.code, 4, "{url}: {out:?}");
        assert!(out.stderr.contains("not valid for name"), "{out:?}");
    }
}

/// Without `--tls-ca`, the error says what to do: `--tls-ca FILE` or `--tls-fingerprint`,
/// and the command that shows the fingerprint. Run as given (with the real openssl), that
/// command's fingerprint makes `--tls-fingerprint` work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_issuer_error_says_how_to_trust_the_certificate() {
    let home = tempfile::tempdir().unwrap();
    let cert = SelfSigned::generate("pop.test", &["localhost", "127.0.0.1"], Validity::Now);
    for (scheme, implicit) in [("pop3", false), ("pop3s", true)] {
        let server = server(&cert, implicit).await;
        let url = format!("{scheme}://alice@127.0.0.1:{}", server.addr().port());
        let out = run(&mut pop3(home.path(), &["check", &url]));
        assert_eq!(out.code, 4, "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        for advice in ["--tls-ca FILE", "--tls-fingerprint SHA256", "tls_ca", "tls_fingerprint"] {
            assert!(out.stderr.contains(advice), "{advice}: {}", out.stderr);
        }
        let command = out
            .stderr
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("openssl s_client"))
            .unwrap_or_else(|| panic!("no openssl command: {}", out.stderr))
            .to_owned();
        let starttls = if implicit { "" } else { " -starttls pop3" };
        let connect = format!("-connect 127.0.0.1:{}{starttls} <", server.addr().port());
        assert!(command.contains(&connect), "{command}");

        if std::process::Command::new("openssl").arg("version").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "openssl missing, and CI=true");
            eprintln!("SKIPPED: openssl not installed: the advised command is not run");
            continue;
        }
        let shown = tokio::task::block_in_place(|| {
            std::process::Command::new("sh").arg("-c").arg(&command).output().unwrap()
        });
        let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
        let fingerprint = shown
            .trim()
            .rsplit_once('=')
            .unwrap_or_else(|| panic!("{command} printed {shown:?}"))
            .1
            .to_owned();
        let out = run(&mut pop3(home.path(), &["check", "--tls-fingerprint", &fingerprint, &url]));
        assert_eq!(out.code, 0, "{out:?}");
    }
}
