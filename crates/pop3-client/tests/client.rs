//! pop3-client against the in-process test server (pop3-proto's ServerSession over tokio):
//! every method, the TLS modes with a test CA, pinning, pipelining on and off, every login
//! mechanism, typed errors and timeouts.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use pop3_client::{
    fingerprint_sha256, AuthMethod, Capability, Client, ConnectOptions, Error, ErrorCode, MsgNum,
    Retrieved, TlsMode, TlsOptions,
};
use pop3_proto::server::LoginError;
use pop3_testkit::server::{SelfSigned, TestCa, TestServer, TestServerConfig, Validity};
use tokio::io::AsyncReadExt;

fn msg(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap()
}

fn mail() -> Vec<Vec<u8>> {
    vec![
        b"Subject: one\r\nFrom: a@example.org\r\n\r\nfirst body\r\n".to_vec(),
        b"Subject: two\r\n\r\n.starts with a dot\r\n..two dots\r\nline 3\r\n".to_vec(),
        b"Subject: three\r\n\r\nlast\r\n".to_vec(),
    ]
}

fn plain_options(server: &TestServer) -> ConnectOptions {
    let mut options = ConnectOptions::new("127.0.0.1");
    options.port = Some(server.addr().port());
    options.tls = TlsMode::None;
    options.timeout = Duration::from_secs(10);
    options.connect_timeout = Duration::from_secs(10);
    options
}

fn tls_options(server: &TestServer, ca: &TestCa, mode: TlsMode) -> ConnectOptions {
    let mut options = plain_options(server);
    options.tls = mode;
    options.tls_options = TlsOptions {
        system_roots: false,
        extra_ca_der: vec![ca.ca_der.clone()],
        ..TlsOptions::default()
    };
    options
}

async fn body_of(client: &mut Client, n: u32) -> Vec<u8> {
    let mut body = client.retr(msg(n)).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = body.chunk().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    out
}

#[tokio::test]
async fn every_command() {
    // LAST (RFC 1460) is off by default in the server session; an old server that answers it.
    let mut config = TestServerConfig::default();
    config.session.last_command = true;
    let server = TestServer::start(config, mail()).await.unwrap();
    let mut client = Client::connect(&plain_options(&server)).await.unwrap();
    assert!(!client.is_tls());
    assert!(client.greeting_line().unwrap().is_ok());
    let caps = client.capa().await.unwrap();
    assert!(caps.contains(&Capability::Uidl) && caps.contains(&Capability::Top));
    client.utf8().await.unwrap();
    assert_eq!(
        client.login("alice", "secret", AuthMethod::UserPass).await.unwrap(),
        AuthMethod::UserPass
    );

    let sizes: Vec<u64> = mail().iter().map(|m| m.len() as u64).collect();
    let stat = client.stat().await.unwrap();
    assert_eq!((stat.count, stat.size), (3, sizes.iter().sum()));
    let list = client.list().await.unwrap();
    assert_eq!(list.iter().map(|l| l.size).collect::<Vec<_>>(), sizes);
    assert_eq!(client.list_one(msg(2)).await.unwrap(), sizes[1]);
    let uids = client.uidl().await.unwrap();
    assert_eq!(uids.iter().map(|u| u.1.as_str()).collect::<Vec<_>>(), ["uid-1", "uid-2", "uid-3"]);
    assert_eq!(client.uidl_one(msg(3)).await.unwrap(), "uid-3");
    let both = client.list_uidl().await.unwrap();
    assert_eq!(both[1], (msg(2), sizes[1], "uid-2".to_owned()));

    for n in 1..=3 {
        assert_eq!(body_of(&mut client, n).await, mail()[n as usize - 1], "message {n}");
    }
    // TOP 0: the header and the blank line.
    let mut top = client.top(msg(1), 0).await.unwrap();
    let mut header = Vec::new();
    top.read_to_end(&mut header).await.unwrap();
    assert_eq!(header, b"Subject: one\r\nFrom: a@example.org\r\n\r\n");

    // A body dropped half-way is skipped by the next command.
    let mut body = client.retr(msg(2)).await.unwrap();
    let mut first = [0u8; 4];
    body.read_exact(&mut first).await.unwrap();
    drop(body);
    client.noop().await.unwrap();

    // -ERR carries its text; the connection goes on.
    let err = client.retr(msg(9)).await.unwrap_err();
    assert!(matches!(err, Error::Server { command: "RETR", code: ErrorCode::None, .. }), "{err}");
    assert_eq!(client.last().await.unwrap(), 3);
    client.dele(msg(1)).await.unwrap();
    assert!(client.dele(msg(1)).await.is_err(), "already deleted");
    client.rset().await.unwrap();
    client.dele(msg(2)).await.unwrap();
    client.quit().await.unwrap();
    let left: Vec<String> = server.messages().into_iter().map(|m| m.0).collect();
    assert_eq!(left, ["uid-1", "uid-3"]);
}

#[tokio::test]
async fn pipelined_retrieval_and_deletion() {
    let many: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(i * 37)).into_bytes())
        .collect();
    for pipelining in [true, false] {
        let config = TestServerConfig { pipelining, ..TestServerConfig::default() };
        let server = TestServer::start(config, many.clone()).await.unwrap();
        let mut client = Client::connect(&plain_options(&server)).await.unwrap();
        assert_eq!(client.is_pipelining(), pipelining);
        client.login("alice", "secret", AuthMethod::Auto).await.unwrap();
        let msgs: Vec<MsgNum> = client.uidl().await.unwrap().into_iter().map(|u| u.0).collect();
        let mut got = Vec::new();
        let mut retrieval = client.retrieve(msgs.clone());
        while let Some(item) = retrieval.next().await.unwrap() {
            let Retrieved::Message(n, mut body) = item else { panic!("refused") };
            let mut data = Vec::new();
            body.read_to_end(&mut data).await.unwrap();
            got.push((n, data));
        }
        assert_eq!(got.len(), many.len());
        for (i, (n, data)) in got.iter().enumerate() {
            assert_eq!(n.get() as usize, i + 1);
            assert_eq!(data, &many[i]);
        }
        let refused = client.dele_many(&msgs).await.unwrap();
        assert!(refused.is_empty());
        client.quit().await.unwrap();
        assert!(server.messages().is_empty());
        let per_read = server.max_commands_per_read.load(std::sync::atomic::Ordering::Relaxed);
        if pipelining {
            assert!(per_read > 1, "pipelined commands should arrive together");
        } else {
            assert_eq!(per_read, 1, "one command at a time without PIPELINING");
        }
    }
}

#[tokio::test]
async fn a_stopped_retrieval_returns_only_the_messages_in_flight() {
    let many: Vec<Vec<u8>> =
        (0..200).map(|i| format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes()).collect();
    for pipelining in [true, false] {
        let config = TestServerConfig { pipelining, ..TestServerConfig::default() };
        let server = TestServer::start(config, many.clone()).await.unwrap();
        let mut client = Client::connect(&plain_options(&server)).await.unwrap();
        client.login("alice", "secret", AuthMethod::Auto).await.unwrap();
        let msgs: Vec<MsgNum> = (1..=200).map(msg).collect();
        let mut retrieval = client.retrieve(msgs.clone());
        let mut got = Vec::new();
        let mut dropped = Vec::new();
        while let Some(item) = retrieval.next().await.unwrap() {
            let Retrieved::Message(n, mut body) = item else { panic!("refused") };
            let mut data = Vec::new();
            body.read_to_end(&mut data).await.unwrap();
            got.push((n, data));
            if got.len() == 5 {
                let in_flight = retrieval.in_flight();
                dropped = retrieval.stop();
                assert_eq!(retrieval.remaining(), in_flight);
                assert_eq!(5 + in_flight + dropped.len(), 200);
                if pipelining {
                    assert!(in_flight > 0, "some RETRs were pipelined ahead");
                } else {
                    assert_eq!(in_flight, 0, "one RETR at a time without PIPELINING");
                }
            }
        }
        // The messages sent before the stop came, in order and whole; no others.
        assert!(got.len() >= 5 && got.len() < 200, "{}", got.len());
        for (i, (n, data)) in got.iter().enumerate() {
            assert_eq!(n.get() as usize, i + 1);
            assert_eq!(data, &many[i]);
        }
        assert_eq!(dropped, msgs[got.len()..]);
        // The session is in step: what was received can be deleted, and QUIT commits it.
        let done: Vec<MsgNum> = got.iter().map(|(n, _)| *n).collect();
        assert!(client.dele_many(&done).await.unwrap().is_empty());
        assert_eq!(client.stat().await.unwrap().count as usize, 200 - got.len());
        client.quit().await.unwrap();
        assert_eq!(server.messages().len(), 200 - got.len());
    }
}

#[tokio::test]
async fn a_large_message_streams_in_chunks() {
    let big = {
        let mut m = b"Subject: big\r\n\r\n".to_vec();
        for i in 0..100_000 {
            m.extend_from_slice(format!(".line {i} of a large message\r\n").as_bytes());
        }
        m
    };
    let server = TestServer::start(TestServerConfig::default(), vec![big.clone()]).await.unwrap();
    let mut client = Client::connect(&plain_options(&server)).await.unwrap();
    client.login("alice", "secret", AuthMethod::Auto).await.unwrap();
    let mut body = client.retr(msg(1)).await.unwrap();
    let (mut chunks, mut total, mut largest) = (0, 0, 0);
    let mut hasher = Vec::new();
    while let Some(chunk) = body.chunk().await.unwrap() {
        chunks += 1;
        total += chunk.len();
        largest = largest.max(chunk.len());
        hasher.extend_from_slice(&chunk);
    }
    assert_eq!(total, big.len());
    assert_eq!(hasher, big);
    assert!(chunks > 10 && largest <= 64 * 1024, "{chunks} chunks, largest {largest}");
}

#[tokio::test]
async fn every_mechanism_logs_in() {
    let methods = [
        AuthMethod::Auto,
        AuthMethod::ScramSha256,
        AuthMethod::Plain,
        AuthMethod::Login,
        AuthMethod::CramMd5,
        AuthMethod::UserPass,
        AuthMethod::Apop,
    ];
    let server = TestServer::start(TestServerConfig::default(), mail()).await.unwrap();
    for method in methods {
        let mut client = Client::connect(&plain_options(&server)).await.unwrap();
        let used = client.login("alice", "secret", method).await.unwrap();
        if method == AuthMethod::Auto {
            assert_eq!(used, AuthMethod::ScramSha256, "the best offered");
        }
        assert_eq!(client.stat().await.unwrap().count, 3, "{method:?}");
        client.quit().await.unwrap();
    }
    for method in [AuthMethod::OAuthBearer, AuthMethod::XOAuth2] {
        let mut client = Client::connect(&plain_options(&server)).await.unwrap();
        client.login("alice", "token-123", method).await.unwrap();
        client.quit().await.unwrap();
    }
    // Wrong password: an auth error, for each kind of mechanism.
    for method in
        [AuthMethod::ScramSha256, AuthMethod::Plain, AuthMethod::UserPass, AuthMethod::Apop]
    {
        let mut client = Client::connect(&plain_options(&server)).await.unwrap();
        let err = client.login("alice", "wrong", method).await.unwrap_err();
        assert!(err.is_auth(), "{method:?}: {err}");
    }
}

#[tokio::test]
async fn auto_falls_back_to_plain_then_user_pass() {
    use pop3_proto::sasl::Mechanism;
    let mut config = TestServerConfig::default();
    config.session.sasl_mechanisms = vec![Mechanism::Plain, Mechanism::CramMd5];
    let server = TestServer::start(config.clone(), mail()).await.unwrap();
    let mut client = Client::connect(&plain_options(&server)).await.unwrap();
    assert_eq!(client.login("alice", "secret", AuthMethod::Auto).await.unwrap(), AuthMethod::Plain);
    config.session.sasl_mechanisms = vec![];
    let server = TestServer::start(config, mail()).await.unwrap();
    let mut client = Client::connect(&plain_options(&server)).await.unwrap();
    assert_eq!(
        client.login("alice", "secret", AuthMethod::Auto).await.unwrap(),
        AuthMethod::UserPass
    );
}

#[tokio::test]
async fn response_codes_are_typed() {
    for (error, code) in [
        (LoginError::InUse, ErrorCode::InUse),
        (LoginError::TempFailure, ErrorCode::SysTemp),
        (LoginError::PermFailure, ErrorCode::SysPerm),
        (LoginError::LoginDelay, ErrorCode::LoginDelay),
    ] {
        let config = TestServerConfig { login_error: Some(error), ..TestServerConfig::default() };
        let server = TestServer::start(config, mail()).await.unwrap();
        let mut client = Client::connect(&plain_options(&server)).await.unwrap();
        let err = client.login("alice", "secret", AuthMethod::Plain).await.unwrap_err();
        assert_eq!(err.code(), Some(&code), "{err}");
        assert_eq!(err.is_temporary(), code != ErrorCode::SysPerm);
    }
    // A second session while the first holds the maildrop: [IN-USE].
    let server = TestServer::start(TestServerConfig::default(), mail()).await.unwrap();
    let mut first = Client::connect(&plain_options(&server)).await.unwrap();
    first.login("alice", "secret", AuthMethod::Auto).await.unwrap();
    let mut second = Client::connect(&plain_options(&server)).await.unwrap();
    let err = second.login("alice", "secret", AuthMethod::Auto).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InUse));
}

#[tokio::test]
async fn stls_and_implicit_tls_with_a_test_ca() {
    let ca = TestCa::generate();
    let config = TestServerConfig { tls: ca.server_tls(), ..TestServerConfig::default() };
    let server = TestServer::start(config, mail()).await.unwrap();
    let mut client = Client::connect(&tls_options(&server, &ca, TlsMode::Stls)).await.unwrap();
    assert!(client.is_tls());
    // The capabilities are the ones announced under TLS: no STLS any more.
    assert!(!client.capabilities().contains(&Capability::Stls));
    assert!(client.capabilities().contains(&Capability::Pipelining));
    client.login("alice", "secret", AuthMethod::Auto).await.unwrap();
    assert_eq!(body_of(&mut client, 2).await, mail()[1]);
    client.quit().await.unwrap();

    let config = TestServerConfig {
        tls: ca.server_tls(),
        implicit_tls: true,
        ..TestServerConfig::default()
    };
    let server = TestServer::start(config, mail()).await.unwrap();
    let mut client = Client::connect(&tls_options(&server, &ca, TlsMode::Implicit)).await.unwrap();
    assert!(client.is_tls());
    client.login("alice", "secret", AuthMethod::Plain).await.unwrap();
    assert_eq!(body_of(&mut client, 1).await, mail()[0]);
    client.quit().await.unwrap();

    // By host name too, and with the CA from a PEM file.
    let dir = std::env::temp_dir().join(format!("pop3-client-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let mut options = tls_options(&server, &ca, TlsMode::Implicit);
    options.host = "localhost".into();
    options.tls_options.extra_ca_der.clear();
    options.tls_options.extra_ca_file = Some(ca_file);
    Client::connect(&options).await.unwrap().quit().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn stls_required_is_required() {
    // No TLS on the server: STLS is not offered, and the client refuses to go on.
    let server = TestServer::start(TestServerConfig::default(), mail()).await.unwrap();
    let ca = TestCa::generate();
    let err = Client::connect(&tls_options(&server, &ca, TlsMode::Stls)).await.unwrap_err();
    assert!(matches!(err, Error::StlsUnavailable), "{err}");
}

#[tokio::test]
async fn untrusted_certificates_fail_unless_pinned_or_allowed() {
    let ca = TestCa::generate();
    let other = TestCa::generate();
    let config = TestServerConfig {
        tls: ca.server_tls(),
        implicit_tls: true,
        ..TestServerConfig::default()
    };
    let server = TestServer::start(config, mail()).await.unwrap();
    // Trusting another CA: the handshake fails.
    let err = Client::connect(&tls_options(&server, &other, TlsMode::Implicit)).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
    // The right pin: accepted without any CA.
    let mut options = tls_options(&server, &other, TlsMode::Implicit);
    options.tls_options.pinned_sha256 = vec![fingerprint_sha256(&ca.cert_der)];
    let mut client = Client::connect(&options).await.unwrap();
    client.login("alice", "secret", AuthMethod::Auto).await.unwrap();
    // A wrong pin: refused even though the CA is trusted.
    let mut options = tls_options(&server, &ca, TlsMode::Implicit);
    options.tls_options.pinned_sha256 = vec![fingerprint_sha256(&other.cert_der)];
    let err = Client::connect(&options).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
    // A wrong host name: refused.
    let mut options = tls_options(&server, &ca, TlsMode::Implicit);
    options.tls_options.server_name = Some("pop.example.org".into());
    assert!(matches!(Client::connect(&options).await.unwrap_err(), Error::Tls(_)));
    // The explicit opt-out accepts anything.
    let mut options = tls_options(&server, &other, TlsMode::Implicit);
    options.tls_options.danger_accept_invalid_certs = true;
    Client::connect(&options).await.unwrap();
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(socket);
    });
    let mut options = ConnectOptions::new("127.0.0.1");
    options.port = Some(port);
    options.tls = TlsMode::None;
    options.timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let err = Client::connect(&options).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { what: "the greeting" }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();
}

/// An IPv6 address as host, with the brackets a URL gives it or without: plain, and with TLS
/// verified against the certificate's IP address `::1`.
#[tokio::test]
async fn ipv6_literals_with_or_without_brackets() {
    if !pop3_testkit::peer::have_ipv6_loopback() {
        return;
    }
    let server =
        TestServer::start_on("[::1]:0", TestServerConfig::default(), mail()).await.unwrap();
    for host in ["[::1]", "::1"] {
        let mut options = plain_options(&server);
        options.host = host.into();
        let mut client = Client::connect(&options).await.unwrap();
        assert_eq!(client.host(), "::1");
        client.login("alice", "secret", AuthMethod::UserPass).await.unwrap();
        assert_eq!(body_of(&mut client, 3).await, mail()[2]);
        client.quit().await.unwrap();
    }
    let ca = TestCa::generate();
    let config = TestServerConfig { tls: ca.server_tls(), ..TestServerConfig::default() };
    let server = TestServer::start_on("[::1]:0", config, mail()).await.unwrap();
    let mut options = tls_options(&server, &ca, TlsMode::Stls);
    options.host = "[::1]".into();
    let mut client = Client::connect(&options).await.unwrap();
    assert!(client.is_tls());
    client.login("alice", "secret", AuthMethod::Auto).await.unwrap();
    client.quit().await.unwrap();
}

/// A server presenting a self-signed certificate as `openssl req -x509` makes it (`CA:TRUE`,
/// which webpki alone refuses as the server's own, `CaUsedAsEndEntity`).
async fn self_signed_server(cert: &SelfSigned, mode: TlsMode) -> TestServer {
    let config = TestServerConfig {
        tls: cert.server_tls(),
        implicit_tls: mode == TlsMode::Implicit,
        ..TestServerConfig::default()
    };
    TestServer::start(config, mail()).await.unwrap()
}

/// Options trusting exactly `cert` (from a PEM file, as `--tls-ca` gives it).
fn trusting(server: &TestServer, cert: &SelfSigned, mode: TlsMode, dir: &Path) -> ConnectOptions {
    let file = dir.join("trusted.pem");
    std::fs::write(&file, &cert.cert_pem).unwrap();
    let mut options = plain_options(server);
    options.tls = mode;
    options.tls_options =
        TlsOptions { system_roots: false, extra_ca_file: Some(file), ..TlsOptions::default() };
    options
}

/// The handshake error's certificate problem.
fn certificate_error(err: &Error) -> Option<rustls::CertificateError> {
    let Error::Tls(e) = err else { return None };
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(c) => Some(c.clone()),
        _ => None,
    }
}

/// A trusted self-signed `CA:TRUE` certificate is accepted as the server's own, over STLS
/// and implicit TLS, by its subjectAltNames or (without any) its commonName; its name and
/// validity are still checked; untrusted, it is an unknown issuer.
#[tokio::test]
async fn a_trusted_self_signed_ca_certificate_is_accepted_as_the_servers_own() {
    let dir = tempfile::tempdir().unwrap();
    let cert = SelfSigned::generate("pop.test", &["localhost", "127.0.0.1"], Validity::Now);
    for mode in [TlsMode::Stls, TlsMode::Implicit] {
        let server = self_signed_server(&cert, mode).await;
        let mut client =
            Client::connect(&trusting(&server, &cert, mode, dir.path())).await.unwrap();
        assert!(client.is_tls());
        client.login("alice", "secret", AuthMethod::Auto).await.unwrap();
        assert_eq!(body_of(&mut client, 1).await, mail()[0]);
        client.quit().await.unwrap();
        // By name too.
        let mut options = trusting(&server, &cert, mode, dir.path());
        options.host = "localhost".into();
        Client::connect(&options).await.unwrap();
        // A name the certificate does not give.
        options.tls_options.server_name = Some("pop.example.org".into());
        let err = Client::connect(&options).await.unwrap_err();
        assert!(wrong_name(&err), "{err}");
        // Not trusted: an unknown issuer, which the error says.
        let mut options = trusting(&server, &cert, mode, dir.path());
        options.tls_options.extra_ca_file = None;
        options.tls_options.extra_ca_der = vec![TestCa::generate().ca_der];
        let err = Client::connect(&options).await.unwrap_err();
        assert!(err.is_unknown_issuer(), "{err}");
    }

    // Expired, or not valid yet: refused although trusted.
    for (validity, want) in [
        (Validity::Expired, rustls::CertificateError::Expired),
        (Validity::NotYet, rustls::CertificateError::NotValidYet),
    ] {
        let cert = SelfSigned::generate("pop.test", &["localhost", "127.0.0.1"], validity);
        let server = self_signed_server(&cert, TlsMode::Implicit).await;
        let options = trusting(&server, &cert, TlsMode::Implicit, dir.path());
        let err = Client::connect(&options).await.unwrap_err();
        assert_eq!(certificate_error(&err), Some(want), "{validity:?}: {err}");
        assert!(!err.is_unknown_issuer());
    }

    // No subjectAltName: the commonName names the server, exactly.
    let cert = SelfSigned::generate("localhost", &[], Validity::Now);
    let server = self_signed_server(&cert, TlsMode::Implicit).await;
    let mut options = trusting(&server, &cert, TlsMode::Implicit, dir.path());
    options.host = "localhost".into();
    Client::connect(&options).await.unwrap();
    options.host = "127.0.0.1".into();
    let err = Client::connect(&options).await.unwrap_err();
    assert!(wrong_name(&err), "{err}");
}

/// True if the handshake failed because the certificate does not name the server.
fn wrong_name(err: &Error) -> bool {
    matches!(
        certificate_error(err),
        Some(
            rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// The same with a certificate made by the real `openssl req -x509` (CA:TRUE by default, no
/// subjectAltName unless asked): what curl, Python, Perl, mpop and fetchmail accept.
#[tokio::test]
async fn a_certificate_made_by_openssl_req_x509_is_accepted_when_trusted() {
    let Ok(version) = std::process::Command::new("openssl").arg("version").output() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "openssl missing, and CI=true");
        eprintln!("SKIPPED: openssl not installed (apt-get install openssl)");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .args(["-subj", "/CN=localhost", "-days", "2", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use rustls::pki_types::pem::PemObject;
    let cert_der = rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap().to_vec();
    let key_der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(&key).unwrap();
    let config = TestServerConfig {
        tls: Some((vec![cert_der], key_der.secret_pkcs8_der().to_vec())),
        ..TestServerConfig::default()
    };
    let server = TestServer::start(config, mail()).await.unwrap();
    let mut options = plain_options(&server);
    options.host = "localhost".into();
    options.tls = TlsMode::Stls;
    options.tls_options =
        TlsOptions { system_roots: false, extra_ca_file: Some(cert), ..TlsOptions::default() };
    let mut client = Client::connect(&options).await.unwrap();
    client.login("alice", "secret", AuthMethod::Auto).await.unwrap();
    assert_eq!(body_of(&mut client, 2).await, mail()[1]);
}
