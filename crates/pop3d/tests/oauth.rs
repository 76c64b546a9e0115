//! OAuth 2.0 bearer tokens (OAUTHBEARER, XOAUTH2) against a real authorization server built on
//! Authlib (`pop3-testkit/peers/oauth_server.py`, skipped loudly without python3-authlib and
//! python3-flask, failed under CI=true): JWTs checked against its JWKS (every signature
//! algorithm, key rotation, expiry, audience, issuer, scope), introspection with revocation
//! and caching, an authorization server that is slow, down or answers garbage, check-config,
//! and real clients (curl, mpop, `pop3`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{output_ok, peer, run, Daemon};
use pop3_testkit::oauth::{AuthServer, CLIENT_ID, CLIENT_SECRET};

/// The server's configuration with bearer mechanisms offered, `oauth` as its `[oauth]`
/// section, and failed logins answered quickly (the penalties are tested elsewhere).
fn configured(config: &str, oauth: &str) -> String {
    let all = r#"mechanisms = ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN", "APOP"]"#;
    let with_bearer = r#"mechanisms = ["PLAIN", "OAUTHBEARER", "XOAUTH2"]"#;
    assert!(config.contains(all));
    let mut config = config
        .replace(all, with_bearer)
        .replace("auth_failure_delay_ms = 2000", "auth_failure_delay_ms = 50")
        .replace("auth_penalty_initial_ms = 2000", "auth_penalty_initial_ms = 10")
        .replace("auth_penalty_max_ms = 15000", "auth_penalty_max_ms = 20");
    config.push_str("\n[oauth]\n");
    config.push_str(oauth);
    config
}

/// `[oauth]` for local JWT checks against `server`'s keys (found by discovery).
fn jwt_section(server: &AuthServer) -> String {
    format!(
        "issuer = \"{}\"\naudience = [\"pop3\"]\nuser_claim = \"preferred_username\"\n\
         scope = [\"pop3\"]\n",
        server.issuer
    )
}

/// What a bearer login ended with: the final status line, and the JSON error report the
/// server sent first, if any.
#[derive(Debug)]
struct Outcome {
    status: String,
    report: Option<String>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status.starts_with("+OK")
    }
}

/// One AUTH OAUTHBEARER (`xoauth2`: AUTH XOAUTH2) on a new connection to `addr`, presenting
/// `token` for `user` (OAUTHBEARER may leave the user out: empty), then STAT and QUIT when it
/// succeeds.
fn bearer_login(addr: &str, xoauth2: bool, user: &str, token: &str) -> Outcome {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = || {
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        l.trim_end().to_owned()
    };
    assert!(line().starts_with("+OK"));
    let (name, message) = if xoauth2 {
        ("XOAUTH2", format!("user={user}\x01auth=Bearer {token}\x01\x01"))
    } else {
        let authzid = if user.is_empty() { String::new() } else { format!("a={user}") };
        ("OAUTHBEARER", format!("n,{authzid},\x01host=127.0.0.1\x01auth=Bearer {token}\x01\x01"))
    };
    writer.write_all(format!("AUTH {name} {}\r\n", B64.encode(message)).as_bytes()).unwrap();
    let mut status = line();
    let mut report = None;
    if let Some(challenge) = status.strip_prefix("+ ") {
        report = Some(String::from_utf8(B64.decode(challenge).unwrap()).unwrap());
        // RFC 7628 §3.2.3: the client answers the report with 0x01 (XOAUTH2: an empty line).
        let answer = if xoauth2 { String::new() } else { B64.encode(b"\x01") };
        writer.write_all(format!("{answer}\r\n").as_bytes()).unwrap();
        status = line();
    }
    if status.starts_with("+OK") {
        writer.write_all(b"STAT\r\n").unwrap();
        assert!(line().starts_with("+OK 3 "), "alice's three messages");
        writer.write_all(b"QUIT\r\n").unwrap();
        assert!(line().starts_with("+OK"));
    }
    Outcome { status, report }
}

/// The token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let last = bytes.len() - 5;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// The token with its header's key id replaced (its signature no longer matters: the key id
/// is looked up first).
fn with_kid(token: &str, kid: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    let (header, rest) = token.split_once('.').unwrap();
    let mut header: serde_json::Value =
        serde_json::from_slice(&B64URL.decode(header).unwrap()).unwrap();
    header["kid"] = kid.into();
    format!("{}.{rest}", B64URL.encode(header.to_string()))
}

#[test]
fn jwts_of_every_algorithm_log_in_and_bad_ones_are_refused_with_the_error_report() {
    let test = "jwts_of_every_algorithm_log_in_and_bad_ones_are_refused";
    let Some(idp) = AuthServer::start(test) else { return };
    let Some(other) = AuthServer::start(test) else { return };
    // Logged at trace level: not even there may a token appear.
    let daemon = Daemon::start_configured(|c| {
        let traced = c.replace("level = \"info\"", "level = \"trace\"");
        assert_ne!(traced, c, "the default configuration sets the log level");
        configured(&traced, &jwt_section(&idp))
    });
    let addr = daemon.plain.as_str();
    let mut tokens = Vec::new();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let token = idp.token("alice", "openid pop3", &[("alg", alg)]);
        // OAUTHBEARER without the user (the token names it), with it, and XOAUTH2.
        for (xoauth2, user) in [(false, ""), (false, "alice"), (true, "alice")] {
            let outcome = bearer_login(addr, xoauth2, user, &token);
            assert!(outcome.ok(), "{alg} xoauth2={xoauth2} user={user:?}: {outcome:?}");
        }
        tokens.push(token);
    }
    let good = tokens[0].clone();
    let refused = |outcome: Outcome, what: &str| {
        assert!(outcome.status.starts_with("-ERR [AUTH]"), "{what}: {outcome:?}");
        outcome.report.unwrap_or_else(|| panic!("{what}: no error report"))
    };
    // RFC 7628 §3.2.2: status, scope and where to find the authorization server.
    let expired = idp.token("alice", "pop3", &[("expires_in", "-600")]);
    let report = refused(bearer_login(addr, false, "alice", &expired), "expired");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["status"], "invalid_token");
    assert_eq!(report["scope"], "pop3");
    assert_eq!(
        report["openid-configuration"],
        format!("{}/.well-known/openid-configuration", idp.issuer).as_str()
    );
    // XOAUTH2 gets Google's form of the report.
    let report = refused(bearer_login(addr, true, "alice", &expired), "expired, XOAUTH2");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&report).unwrap()["status"], "401");
    let cases = [
        ("another user's token", bearer_login(addr, false, "bob", &good)),
        (
            "another audience",
            bearer_login(addr, false, "", &idp.token("alice", "pop3", &[("aud", "webmail")])),
        ),
        ("without the scope", bearer_login(addr, false, "", &idp.token("alice", "openid", &[]))),
        ("a bad signature", bearer_login(addr, false, "", &tampered(&good))),
        ("another issuer", bearer_login(addr, false, "", &other.token("alice", "pop3", &[]))),
        (
            "a user pop3d does not know",
            bearer_login(addr, false, "", &idp.token("carol", "pop3", &[])),
        ),
        ("not a JWT", bearer_login(addr, false, "alice", "not-a-token")),
    ];
    for (what, outcome) in cases {
        refused(outcome, what);
    }
    // The log says why, and never shows a token.
    let log = daemon.log();
    for reason in [
        "token expired",
        "token for another audience",
        "scope \"pop3\" not granted",
        "bad signature",
        "names no known user",
        "bearer token is for another user",
    ] {
        assert!(log.contains(reason), "the log says {reason:?}:\n{log}");
    }
    assert!(log.contains("DEBUG"), "the log is at debug level or finer");
    for token in tokens.iter().chain([&expired]) {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token's signature is in the log");
        // Nor the SASL message that carried it (as `bearer_login` sends it without a user).
        let sent = B64.encode(format!("n,,\x01host=127.0.0.1\x01auth=Bearer {token}\x01\x01"));
        assert!(!log.contains(&sent), "a SASL message with a token is in the log");
    }
    // The keys were fetched once for all of this (the other issuer's key id is not its own).
    assert!(idp.requests().0 <= 2, "JWKS fetched {} times", idp.requests().0);
}

#[test]
fn rotated_keys_are_fetched_for_a_new_key_id_and_forged_key_ids_cannot_flood_the_server() {
    let test = "rotated_keys_are_fetched_for_a_new_key_id";
    let Some(idp) = AuthServer::start(test) else { return };
    let section = jwt_section(&idp) + "jwks_min_refresh = 1\n";
    let daemon = Daemon::start_configured(|c| configured(c, &section));
    let addr = daemon.plain.as_str();
    let before = idp.token("alice", "pop3", &[]);
    assert!(bearer_login(addr, false, "", &before).ok());
    assert_eq!(idp.requests().0, 1);
    // The issuer replaces its keys: a token signed by a new one makes pop3d fetch them again.
    idp.rotate(false);
    std::thread::sleep(Duration::from_millis(1100));
    let after = idp.token("alice", "pop3", &[("alg", "ES256")]);
    assert!(bearer_login(addr, false, "", &after).ok(), "a token of the rotated key");
    assert_eq!(idp.requests().0, 2);
    // The old key is gone from the set now in use.
    let outcome = bearer_login(addr, false, "", &before);
    assert!(outcome.status.starts_with("-ERR [AUTH]"), "{outcome:?}");
    // A burst of forged key ids costs at most one fetch per jwks_min_refresh.
    std::thread::sleep(Duration::from_millis(1100));
    let fetched = idp.requests().0;
    for n in 0..6 {
        let outcome = bearer_login(addr, false, "", &with_kid(&after, &format!("forged-{n}")));
        assert!(outcome.status.starts_with("-ERR [AUTH]"), "{outcome:?}");
    }
    assert!(
        idp.requests().0 <= fetched + 1,
        "forged key ids fetched the JWKS {} times",
        idp.requests().0 - fetched
    );
    assert!(
        daemon.log().contains("no ES256 signing key with key id \"forged-"),
        "{}",
        daemon.log()
    );
    // With the old keys still published beside the new ones, old tokens are good again.
    idp.rotate(true);
    std::thread::sleep(Duration::from_millis(1100));
    let newest = idp.token("alice", "pop3", &[("alg", "EdDSA")]);
    assert!(bearer_login(addr, false, "", &newest).ok());
    assert!(bearer_login(addr, false, "", &after).ok());
}

#[test]
fn introspection_checks_revocation_after_a_short_cache_and_a_failing_server_is_a_temporary_error() {
    let test = "introspection_checks_revocation";
    let Some(mut idp) = AuthServer::start(test) else { return };
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let section = format!(
        "issuer = \"{issuer}\"\nintrospection_url = \"{issuer}/introspect\"\n\
         client_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{secret}\"\n\
         user_claim = \"username\"\ncache_seconds = 2\ntimeout = 1\n",
        issuer = idp.issuer,
        secret = secret.display()
    );
    let daemon = Daemon::start_configured(|c| configured(c, &section));
    let addr = daemon.plain.clone();
    let token = idp.token("alice", "pop3", &[]);
    assert!(bearer_login(&addr, false, "", &token).ok());
    assert!(bearer_login(&addr, true, "alice", &token).ok());
    assert_eq!(idp.requests().1, 1, "the second login came from the cache");
    // Revoked: still good from the cache, refused once it has expired.
    idp.revoke(&token);
    assert!(bearer_login(&addr, false, "", &token).ok());
    std::thread::sleep(Duration::from_millis(2100));
    let outcome = bearer_login(&addr, false, "", &token);
    assert!(outcome.status.starts_with("-ERR [AUTH]"), "{outcome:?}");
    assert!(daemon.log().contains("token not active"));
    // Refusals are not cached: each one asks again.
    let asked = idp.requests().1;
    bearer_login(&addr, false, "", &token);
    assert_eq!(idp.requests().1, asked + 1);
    // Slow, garbage, failing and gone: a temporary error, never a login, never a hang.
    for mode in ["stall", "garbage", "down"] {
        idp.behave(mode);
        let fresh = idp.token("alice", "pop3", &[]);
        let started = Instant::now();
        let outcome = bearer_login(&addr, false, "", &fresh);
        assert!(outcome.status.starts_with("-ERR [SYS/TEMP]"), "{mode}: {outcome:?}");
        assert!(outcome.report.is_none(), "{mode}: no token error report for a server failure");
        assert!(started.elapsed() < Duration::from_secs(10), "{mode}: answered within the timeout");
        idp.behave("normal");
        assert!(
            bearer_login(&addr, false, "", &fresh).ok(),
            "{mode}: good again once the server is"
        );
    }
    let fresh = idp.token("alice", "pop3", &[]);
    idp.kill();
    let outcome = bearer_login(&addr, false, "", &fresh);
    assert!(outcome.status.starts_with("-ERR [SYS/TEMP]"), "server gone: {outcome:?}");
    assert!(!daemon.log().contains(fresh.as_str()), "a token is in the log");
}

#[test]
fn keys_over_https_from_a_private_ca_and_check_config_says_what_is_wrong() {
    let test = "keys_over_https_from_a_private_ca";
    let ca = pop3_testkit::server::TestCa::generate();
    let Some(mut idp) = AuthServer::start_tls(test, &ca) else { return };
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("idp-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let ca_line = format!("ca_file = \"{}\"\n", ca_file.display());
    let section = jwt_section(&idp) + &ca_line;
    let daemon = Daemon::start_configured(|c| configured(c, &section));
    let token = idp.token("alice", "pop3", &[("alg", "ES256")]);
    assert!(bearer_login(&daemon.plain, false, "", &token).ok());
    // check-config fetches the keys and says from where.
    let out = run(&["check-config"], &daemon.data, b"");
    output_ok(&out, "check-config");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("oauth = 3 signing keys from {}/jwks", idp.issuer)),
        "{printed}"
    );
    // Without the CA the certificate is not trusted; with the server gone it cannot connect.
    let config = std::fs::read_to_string(daemon.data.join("pop3d.toml")).unwrap();
    std::fs::write(daemon.data.join("pop3d.toml"), config.replace(&ca_line, "")).unwrap();
    let out = run(&["check-config"], &daemon.data, b"");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(said.contains("[oauth]") && said.contains("UnknownIssuer"), "{said}");
    std::fs::write(daemon.data.join("pop3d.toml"), &config).unwrap();
    idp.kill();
    let out = run(&["check-config"], &daemon.data, b"");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(said.contains("openid-configuration") && said.contains("onnect"), "{said}");
}

#[test]
fn check_config_refuses_bearer_mechanisms_without_oauth_and_an_introspection_client_it_cannot_use()
{
    let test = "check_config_refuses_bad_oauth_settings";
    let Some(idp) = AuthServer::start(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    output_ok(&run(&["init"], &data, b""), "init");
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let bearer =
        config.replace(r#"mechanisms = ["PLAIN", "LOGIN"]"#, r#"mechanisms = ["OAUTHBEARER"]"#);
    std::fs::write(data.join("pop3d.toml"), &bearer).unwrap();
    let out = run(&["check-config"], &data, b"");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need an [oauth] section"));
    for (section, says) in [
        (
            "issuer = \"http://idp.example.org\"\naudience = [\"pop3\"]\n",
            "plain http only to a loopback host",
        ),
        (&format!("issuer = \"{}\"\n", idp.issuer) as &str, "audience is required"),
        (
            &format!("issuer = \"{0}\"\nintrospection_url = \"{0}/introspect\"\n", idp.issuer),
            "needs client_id and client_secret_file",
        ),
    ] {
        std::fs::write(data.join("pop3d.toml"), format!("{bearer}\n[oauth]\n{section}")).unwrap();
        let out = run(&["check-config"], &data, b"");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{said}");
        assert!(said.contains(says), "{section}: {said}");
    }
    // A wrong client secret: the introspection endpoint refuses pop3d itself.
    std::fs::write(data.join("client-secret"), "wrong\n").unwrap();
    let section = format!(
        "issuer = \"{0}\"\nintrospection_url = \"{0}/introspect\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret_file = \"client-secret\"\n",
        idp.issuer
    );
    std::fs::write(data.join("pop3d.toml"), format!("{bearer}\n[oauth]\n{section}")).unwrap();
    let out = run(&["check-config"], &data, b"");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(said.contains("/introspect") && said.contains("401"), "{said}");
    std::fs::write(data.join("client-secret"), format!("{CLIENT_SECRET}\n")).unwrap();
    let out = run(&["check-config"], &data, b"");
    output_ok(&out, "check-config with the right secret");
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepts client"));
}

/// A file only its owner can read (mpop refuses a world-readable configuration).
fn private_file(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn curl_mpop_and_pop3_log_in_with_tokens_over_tls() {
    let test = "curl_mpop_and_pop3_log_in_with_tokens";
    let Some(idp) = AuthServer::start(test) else { return };
    let daemon = Daemon::start_configured(|c| configured(c, &jwt_section(&idp)));
    let token = idp.token("alice", "pop3", &[]);
    if peer("curl", "curl") {
        // curl picks OAUTHBEARER (or XOAUTH2) for --oauth2-bearer; POP3S with the test CA.
        let resolve = format!("localhost:{}:127.0.0.1", Daemon::port(&daemon.tls));
        let url = format!("pop3s://localhost:{}/", Daemon::port(&daemon.tls));
        let cert = daemon.cert();
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "60", "--user", "alice:", "--oauth2-bearer", &token])
            .arg("--cacert")
            .arg(&cert)
            .args(["--resolve", &resolve, &url])
            .output()
            .unwrap();
        output_ok(&out, "curl --oauth2-bearer");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert_eq!(listing.lines().count(), 3, "{listing}");
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "60", "--user", "alice:", "--oauth2-bearer"])
            .arg(tampered(&token))
            .arg("--cacert")
            .arg(&cert)
            .args(["--resolve", &resolve, &url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "curl with a bad token is refused");
    }
    if peer("mpop", "mpop") {
        let home = daemon.dir.path().join("mpop");
        let maildir = home.join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        // A token is longer than mpop's 500-character configuration lines.
        let token_file = home.join("token");
        std::fs::write(&token_file, &token).unwrap();
        for (auth, count) in [("oauthbearer", 3), ("xoauth2", 3)] {
            let conf = home.join("mpoprc");
            private_file(
                &conf,
                &format!(
                    "defaults\nuidls_file {home}/uidls-{auth}\n\
                     account default\nhost localhost\nport {port}\nuser alice\n\
                     passwordeval cat {token_file}\nauth {auth}\ntls on\ntls_starttls on\n\
                     tls_trust_file {cert}\nreceived_header off\ndelivery maildir {maildir}\n\
                     keep on\nonly_new off\n",
                    home = home.display(),
                    port = Daemon::port(&daemon.plain),
                    cert = daemon.cert().display(),
                    maildir = maildir.display(),
                    token_file = token_file.display(),
                ),
            );
            let out = Command::new("mpop")
                .arg("-C")
                .arg(&conf)
                .arg("-q")
                .env("HOME", &home)
                .output()
                .unwrap();
            output_ok(&out, &format!("mpop auth {auth}"));
            let fetched = std::fs::read_dir(maildir.join("new")).unwrap().count();
            assert_eq!(fetched % count, 0);
            assert!(fetched >= count, "mpop ({auth}) fetched {fetched}");
        }
    }
    // This project's retriever, with the token from token_command, over STLS.
    let home = daemon.dir.path().join("pop3");
    let token_file = home.join("token");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(&token_file, &token).unwrap();
    for auth in ["oauthbearer", "xoauth2"] {
        let maildir = home.join(format!("Maildir-{auth}"));
        let config = format!(
            "[accounts.work]\nurl = \"pop3://alice@localhost:{port}\"\n\
             token_command = \"cat {token}\"\nauth = \"{auth}\"\ntls_ca = \"{cert}\"\n\
             to = \"maildir:{maildir}\"\n",
            port = Daemon::port(&daemon.plain),
            token = token_file.display(),
            cert = daemon.cert().display(),
            maildir = maildir.display(),
        );
        private_file(&home.join("config/pop3/config.toml"), &config);
        let out = Command::new(common::pop3_binary())
            .args(["fetch", "work"])
            .env("HOME", &home)
            .env("XDG_STATE_HOME", home.join(format!("state-{auth}")))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env_remove("POP3_PASSWORD")
            .output()
            .unwrap();
        output_ok(&out, &format!("pop3 fetch with auth = {auth}"));
        let fetched = std::fs::read_dir(maildir.join("new")).unwrap().count();
        assert_eq!(fetched, 3, "pop3 ({auth}) fetched alice's three messages");
    }
    let log = daemon.log();
    let ok = |l: &str| l.contains("mechanism=\"XOAUTH2\"") && l.contains("result=\"ok\"");
    assert!(log.lines().any(ok), "{log}");
}

#[test]
fn tokens_name_users_the_ldap_directory_knows() {
    use pop3_testkit::slapd::{LdapUser, Slapd, PEOPLE};
    let test = "tokens_name_users_the_ldap_directory_knows";
    let Some(idp) = AuthServer::start(test) else { return };
    let alice = LdapUser { name: "alice", password: "ldap-pw", home: "/nonexistent", mail: "a" };
    let Some(slapd) = Slapd::start(test, &[alice]) else { return };
    let ldap = format!(
        "\n[ldap]\nurl = \"{}\"\nstarttls = true\nca_file = \"{}\"\nbind_dn = \"uid=%u,{PEOPLE}\"\n",
        slapd.ldap_url,
        slapd.ca_file.display()
    );
    // Delivered to alice through the directory's lookup, then logged in by token or password.
    let daemon = Daemon::start_configured(|c| configured(c, &jwt_section(&idp)) + &ldap);
    let addr = daemon.plain.as_str();
    assert!(bearer_login(addr, false, "", &idp.token("alice", "pop3", &[])).ok());
    let outcome = bearer_login(addr, true, "carol", &idp.token("carol", "pop3", &[]));
    assert!(
        outcome.status.starts_with("-ERR [AUTH]"),
        "carol is not in the directory: {outcome:?}"
    );
    assert!(common::Session::login(addr, "alice", "ldap-pw").starts_with("+OK"));
    assert!(daemon.log().contains("names no known user token_user=carol"));
}

#[test]
fn keys_from_a_jwks_file() {
    let test = "keys_from_a_jwks_file";
    let Some(idp) = AuthServer::start(test) else { return };
    let files = tempfile::tempdir().unwrap();
    let jwks = files.path().join("jwks.json");
    if !peer("curl", "curl") {
        return;
    }
    let out =
        Command::new("curl").args(["-s", "-S", &format!("{}/jwks", idp.issuer)]).output().unwrap();
    output_ok(&out, "curl fetches the JWKS");
    std::fs::write(&jwks, &out.stdout).unwrap();
    let section = format!(
        "issuer = \"{}\"\naudience = [\"pop3\"]\nuser_claim = \"preferred_username\"\n\
         jwks_file = \"{}\"\n",
        idp.issuer,
        jwks.display()
    );
    let daemon = Daemon::start_configured(|c| configured(c, &section));
    let fetched = idp.requests().0;
    assert!(bearer_login(
        &daemon.plain,
        false,
        "",
        &idp.token("alice", "pop3", &[("alg", "EdDSA")])
    )
    .ok());
    assert_eq!(idp.requests().0, fetched, "the keys came from the file, not the issuer");
    let out = run(&["check-config"], &daemon.data, b"");
    output_ok(&out, "check-config");
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(&format!("3 signing keys from {}", jwks.display())));
}
