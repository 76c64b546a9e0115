//! `pop3d` behind the real HAProxy (Debian's `haproxy`) with `send-proxy-v2`: the client
//! address HAProxy carries is the one pop3d logs, and mail comes through unchanged on the
//! plain port, with STLS and on the POP3S port. The client (curl) binds 127.0.0.2 or
//! 127.0.0.3, so that the address pop3d should see differs from HAProxy's own, 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::haproxy::{curl, text, Frontend, Haproxy};
use common::{messages, peer, Daemon};
use pop3_testkit::peer::free_port;
use pop3_testkit::transmitted;

/// True when HAProxy and curl are here (else a loud skip, or a failure under CI=true).
fn peers() -> Option<std::path::PathBuf> {
    let haproxy = common::haproxy::binary()?;
    peer("curl", "curl").then_some(haproxy)
}

#[test]
fn pop3d_behind_haproxy_sees_the_client_address() {
    let Some(binary) = peers() else { return };
    let mut daemon = Daemon::start_configured(|config| {
        let trusted = config.replace("proxy_from = []", r#"proxy_from = ["127.0.0.1/32"]"#);
        assert_ne!(trusted, config, "the default config has proxy_from");
        trusted
    });
    let (plain, tls) = (free_port(), free_port());
    // PROXY v2 headers that carry a CRC32C and a unique ID (pop3d checks the first and logs
    // the second), and health checks every 100 ms (v2 LOCAL headers).
    let haproxy = Haproxy::start(
        &binary,
        &[
            Frontend { name: "pop3", port: plain, servers: &[&daemon.plain] },
            Frontend { name: "pop3s", port: tls, servers: &[&daemon.tls] },
        ],
        "send-proxy-v2 proxy-v2-options crc32c,unique-id check inter 100ms",
    );
    let cacert = daemon.cert().display().to_string();
    let first = transmitted(&messages()[0]);

    // Plain POP3, from 127.0.0.2: pop3d counts it as loopback (trust_loopback), so
    // USER/PASS is allowed, as it would be for a direct local client.
    let out =
        curl(&["--interface", "127.0.0.2", &format!("pop3://alice:secret@127.0.0.1:{plain}/1")]);
    assert!(
        out.status.success(),
        "plain via haproxy: {}\n{}\n{}",
        text(&out),
        haproxy.log(),
        daemon.log()
    );
    assert_eq!(out.stdout, first, "RETR 1 through haproxy");

    // STLS, from 127.0.0.3, and POP3S (TLS through HAProxy's TCP relay, after the header).
    let resolve = format!("localhost:{plain}:127.0.0.1");
    let url = format!("pop3://alice:secret@localhost:{plain}/1");
    let out = curl(&[
        "--interface",
        "127.0.0.3",
        "--ssl-reqd",
        "--cacert",
        &cacert,
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(out.status.success(), "STLS via haproxy: {}\n{}", text(&out), daemon.log());
    assert_eq!(out.stdout, first);
    let resolve = format!("localhost:{tls}:127.0.0.1");
    let url = format!("pop3s://alice:secret@localhost:{tls}/1");
    let out = curl(&["--interface", "127.0.0.2", "--cacert", &cacert, "--resolve", &resolve, &url]);
    assert!(out.status.success(), "POP3S via haproxy: {}\n{}", text(&out), daemon.log());
    assert_eq!(out.stdout, first);

    // HAProxy's health checks (`check`) send a v2 LOCAL header: the proxy's own address.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("command=Local") {
        assert!(Instant::now() < deadline, "no health check seen: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.stop();
    let log = daemon.log();
    let logins: Vec<&str> = log.lines().filter(|l| l.contains("result=\"ok\"")).collect();
    assert_eq!(logins.len(), 3, "{log}");
    for (login, client) in logins.iter().zip(["127.0.0.2", "127.0.0.3", "127.0.0.2"]) {
        assert!(
            login.contains(&format!("peer={client}:")) && login.contains("proxy=127.0.0.1:"),
            "the client's address, and HAProxy's as the proxy: {login}"
        );
    }
    let accepted = |command: &str| {
        log.lines()
            .filter(|l| l.contains("PROXY header accepted") && l.contains(command))
            .collect::<Vec<_>>()
    };
    let relayed = accepted("command=Proxy");
    assert!(relayed.len() >= 3, "{log}");
    for line in relayed {
        // HAProxy's unique-id, from its PP2_TYPE_UNIQUE_ID TLV (a UUID here).
        assert!(line.contains("version=V2") && line.contains("unique_id=\""), "{line}");
    }
    for line in accepted("command=Local") {
        let proxy = line.split("proxy=").nth(1).and_then(|p| p.split(['}', ' ']).next());
        let proxy = proxy.expect("a proxy field");
        assert!(
            line.contains(&format!("peer={proxy} ")),
            "LOCAL keeps the proxy's address: {line}"
        );
    }
    // A connection with no header at all from HAProxy would be refused for that reason; only
    // the readiness probe, hung up at once, may have been.
    for refused in log.lines().filter(|l| l.contains("PROXY header refused")) {
        assert!(refused.contains("closed before"), "{refused}");
    }
    let printed = daemon.printed();
    assert!(
        printed.iter().any(|l| l.contains("PROXY protocol header is required from 127.0.0.1/32")),
        "{printed:?}"
    );
}
