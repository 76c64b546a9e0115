//! Per-account settings in the config file, and the command line over them.

mod common;

use std::time::{Duration, Instant};

use common::{pop3, run, write_config};
use pop3_testkit::server::{TestServer, TestServerConfig};

fn json(out: &common::Output) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// `max_size` in the config skips large messages in `fetch` (and `check` does not count them
/// as new); `--max-size` on the command line overrides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_from_the_config_and_the_command_line_over_it() {
    let home = tempfile::tempdir().unwrap();
    let mail = vec![
        b"Subject: small\r\n\r\nsmall\r\n".to_vec(),
        format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(5000)).into_bytes(),
    ];
    let server = TestServer::start(TestServerConfig::default(), mail).await.unwrap();
    let maildir = home.path().join("Mail");
    write_config(
        home.path(),
        &format!(
            "[accounts.work]\nurl = \"pop3://alice@127.0.0.1:{}\"\nno_tls = true\n\
             to = \"maildir:{}\"\nmax_size = 1000\nbatch = 2\n",
            server.addr().port(),
            maildir.display()
        ),
    );
    let out = run(&mut pop3(home.path(), &["check", "--json", "work"]));
    assert_eq!((out.code, json(&out)["new"].as_u64()), (0, Some(1)), "{out:?}");
    let out = run(&mut pop3(home.path(), &["fetch", "--json", "work"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(json(&out)["fetched"], 1, "{out:?}");
    assert_eq!(json(&out)["skipped_too_large"], 1, "{out:?}");
    let out = run(&mut pop3(home.path(), &["fetch", "--json", "work"]));
    assert_eq!(out.code, 1, "only the large one is left: {out:?}");
    let out = run(&mut pop3(home.path(), &["fetch", "--json", "--max-size", "100000", "work"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(json(&out)["fetched"], 1, "{out:?}");
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 2);
}

/// `timeout` in the config bounds the wait for a silent server; `--timeout` overrides it.
#[test]
fn timeout_from_the_config_and_the_command_line_over_it() {
    let home = tempfile::tempdir().unwrap();
    // Accepts connections (the kernel does) and never says anything.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("pop3://alice@127.0.0.1:{}", silent.local_addr().unwrap().port());
    for (config_timeout, args) in [(1, &[][..]), (600, &["--timeout", "1"][..])] {
        write_config(
            home.path(),
            &format!(
                "[accounts.slow]\nurl = \"{url}\"\nno_tls = true\ntimeout = {config_timeout}\n"
            ),
        );
        let started = Instant::now();
        let out = run(pop3(home.path(), &["check", "slow"]).args(args));
        let took = started.elapsed();
        assert_eq!(out.code, 4, "{out:?}");
        assert!(out.stderr.contains("timed out"), "{out:?}");
        assert!(took < Duration::from_secs(20), "took {took:?} with {args:?}");
        assert!(took >= Duration::from_millis(900), "took {took:?} with {args:?}");
    }
}

/// Values that cannot work are usage errors, like their command-line spellings.
#[test]
fn bad_values_in_the_config_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    for (line, message) in [
        ("timeout = 0", "timeout = 0"),
        ("batch = 0", "batch = 0"),
        ("max_size = -1", "max_size"),
        ("timeout = \"soon\"", "timeout"),
    ] {
        write_config(
            home.path(),
            &format!("[accounts.a]\nurl = \"pop3://a@127.0.0.1:1\"\n{line}\n"),
        );
        let out = run(&mut pop3(home.path(), &["fetch", "a"]));
        assert_eq!(out.code, 2, "{line}: {out:?}");
        assert!(out.stderr.contains(message), "{line}: {out:?}");
    }
}
