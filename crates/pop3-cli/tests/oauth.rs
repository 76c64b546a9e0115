//! OAuth 2.0 built into `pop3`, end to end: `pop3 auth` against a real authorization server
//! (Authlib, `pop3-testkit/peers/oauth_server.py`; skipped loudly without python3-authlib and
//! python3-flask, failed under CI=true) in a browser (authorization code with PKCE and a
//! loopback redirect, the test playing the browser) or with a device code, then `pop3 fetch`
//! from a real pop3d that checks the tokens (JWTs against the server's keys, or introspection).
//! Expiry, refresh with rotation, a token the server refuses, a revoked refresh token, and
//! SIGKILL during a refresh. An account's token requests through its SOCKS5 proxy (a real
//! danted, `common::dante`).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::dante::{self, Dante};
use common::{pop3, pop3d_binary, run, write_config, Output};
use pop3_testkit::oauth::{AuthServer, CLIENT_ID, CLIENT_SECRET};

/// A pop3d with user alice (three messages), bearer mechanisms offered and `[oauth]` checking
/// tokens of `idp`.
struct Pop3d {
    child: Child,
    dir: tempfile::TempDir,
    port: String,
    /// The introspection client's secret file, kept while the daemon runs.
    _secret: Option<tempfile::TempDir>,
}

impl Pop3d {
    /// Tokens checked as JWTs against the server's keys (discovery).
    fn jwt(idp: &AuthServer) -> Self {
        Self::start(&format!(
            "issuer = \"{}\"\naudience = [\"pop3\"]\nuser_claim = \"preferred_username\"\n\
             scope = [\"pop3\"]\n",
            idp.issuer
        ))
    }

    /// Tokens checked by introspection, answers cached for a second (a revoked token is
    /// refused soon after).
    fn introspecting(idp: &AuthServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
        let mut daemon = Self::start(&format!(
            "issuer = \"{issuer}\"\nintrospection_url = \"{issuer}/introspect\"\n\
             client_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{secret}\"\n\
             user_claim = \"username\"\ncache_seconds = 1\n",
            issuer = idp.issuer,
            secret = secret.display()
        ));
        daemon._secret = Some(dir);
        daemon
    }

    fn start(oauth: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = Self::run_in(&data, &["user", "add", "alice", "--password-stdin"], b"secret\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let path = data.join("pop3d.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        let mut edited = config
            .replace(
                r#"mechanisms = ["PLAIN", "LOGIN"]"#,
                r#"mechanisms = ["PLAIN", "OAUTHBEARER", "XOAUTH2"]"#,
            )
            .replace("auth_failure_delay_ms = 2000", "auth_failure_delay_ms = 50")
            .replace("auth_penalty_initial_ms = 2000", "auth_penalty_initial_ms = 10")
            .replace("auth_penalty_max_ms = 15000", "auth_penalty_max_ms = 20");
        assert!(edited.contains("OAUTHBEARER"), "the default config lists the mechanisms");
        edited.push_str("\n[oauth]\n");
        edited.push_str(oauth);
        std::fs::write(&path, edited).unwrap();
        let daemon = Self::serve(dir);
        for n in 1..=3 {
            daemon.deliver(n);
        }
        daemon
    }

    fn serve(dir: tempfile::TempDir) -> Self {
        let log = std::fs::File::create(dir.path().join("pop3d.log")).unwrap();
        let mut child = Command::new(pop3d_binary())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(wait).expect("pop3d announces its listeners");
            if let Some(addr) = line.strip_prefix("pop3d: POP3 (with STLS) on ") {
                break addr.rsplit_once(':').unwrap().1.to_owned();
            }
        };
        Self { child, dir, port, _secret: None }
    }

    fn run_in(data: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(pop3d_binary())
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Delivers message `n` to alice.
    fn deliver(&self, n: u32) {
        let message = format!(
            "From: sender@example.org\r\nTo: alice@localhost\r\nSubject: message {n}\r\n\
             Message-ID: <{n}.oauth@example.org>\r\n\r\nbody {n}\r\n"
        );
        let out =
            Self::run_in(&self.dir.path().join("data"), &["deliver", "alice"], message.as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("data/tls/cert.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pop3d.log")).unwrap_or_default()
    }
}

impl Drop for Pop3d {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- pop3d log ---\n{}--- end of pop3d log ---", self.log());
        }
    }
}

/// Standard output or error, line by line, as they come.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // Nobody listens any more: keep the pipe drained.
                continue;
            }
        }
    });
    rx
}

/// The retriever's home: config, state and Maildir.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Account `work`: alice at `port` (STLS, trusting pop3d's certificate), tokens from
    /// `idp` as the public client, presented with `mechanism`.
    fn configure(&self, idp: &AuthServer, port: &str, cert: &Path, mechanism: &str) {
        self.configure_with(idp, port, cert, mechanism, "");
    }

    /// [`configure`](Self::configure), with `extra` settings of the account.
    fn configure_with(
        &self,
        idp: &AuthServer,
        port: &str,
        cert: &Path,
        mechanism: &str,
        extra: &str,
    ) {
        write_config(
            self.path(),
            &format!(
                "[accounts.work]\nurl = \"pop3://alice@localhost:{port}\"\ntls_ca = \"{cert}\"\n\
                 to = \"maildir:{maildir}\"\ntimeout = 10\n{extra}\n\
                 [accounts.work.oauth]\nprovider = \"oidc\"\nissuer = \"{issuer}\"\n\
                 client_id = \"pop3-retriever\"\nscopes = [\"pop3\", \"offline_access\"]\n\
                 mechanism = \"{mechanism}\"\n",
                cert = cert.display(),
                maildir = self.maildir().display(),
                issuer = idp.issuer,
            ),
        );
    }

    fn maildir(&self) -> PathBuf {
        self.path().join("Maildir")
    }

    /// Messages in the Maildir.
    fn fetched(&self) -> usize {
        std::fs::read_dir(self.maildir().join("new")).map_or(0, |d| d.count())
    }

    fn token_dir(&self) -> PathBuf {
        self.path().join("state/pop3/tokens")
    }

    fn token_file(&self) -> PathBuf {
        self.token_dir().join("work.json")
    }

    /// The stored tokens.
    fn stored(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.token_file()).unwrap()).unwrap()
    }

    fn refresh_token(&self) -> String {
        self.stored()["refresh_token"].as_str().unwrap().to_owned()
    }

    fn access_token(&self) -> String {
        self.stored()["access_token"].as_str().unwrap().to_owned()
    }

    fn fetch(&self) -> Output {
        run(&mut pop3(self.path(), &["fetch", "work"]))
    }

    /// `pop3 fetch work`, running.
    fn spawn_fetch(&self) -> Child {
        pop3(self.path(), &["fetch", "work"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// `pop3 auth ARGS work`, running, with its standard error line by line.
    fn spawn_auth(&self, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
        let mut all = vec!["auth"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--wait", "60", "work"]);
        let mut child = pop3(self.path(), &all)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stderr.take().unwrap());
        (child, lines)
    }

    /// `pop3 auth work` with the test as the browser, logged in as alice: exit 0.
    fn authorize_in_browser(&self, idp: &AuthServer) {
        idp.login_as(Some("alice"));
        let (child, lines) = self.spawn_auth(&[]);
        let url = printed_after(&lines, "open this URL in a browser");
        assert!(url.contains("code_challenge_method=S256"), "PKCE with S256: {url}");
        assert!(
            url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
            "a loopback redirect: {url}"
        );
        let (location, status, page) = idp.browse(&url);
        assert!(location.starts_with("http://127.0.0.1:"), "{location}");
        assert_eq!((status, page.contains("pop3 is authorized")), (200, true), "{page}");
        let (code, said) = finish(child, lines);
        assert_eq!(code, 0, "{said}");
        assert!(said.contains("authorized; tokens stored in"), "{said}");
    }
}

/// Waits (at most 30 s) for a line containing `marker`, then returns the next non-empty
/// line, trimmed (the URL or the code `pop3 auth` prints on a line of its own).
fn printed_after(lines: &mpsc::Receiver<String>, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = || {
        let wait = deadline.saturating_duration_since(Instant::now());
        lines.recv_timeout(wait).unwrap_or_else(|e| panic!("waiting for {marker:?}: {e}"))
    };
    while !next().contains(marker) {}
    loop {
        let line = next();
        if !line.trim().is_empty() {
            return line.trim().to_owned();
        }
    }
}

/// Waits (at most 60 s) for `pop3 auth` to end: its exit code and the rest of what it said.
fn finish(mut child: Child, lines: mpsc::Receiver<String>) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pop3 auth did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    let said: Vec<String> = lines.try_iter().collect();
    (status.code().unwrap_or(-1), said.join("\n"))
}

/// Waits (at most 10 s) until the authorization server has had `count` refresh requests.
fn await_refreshes(idp: &AuthServer, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while idp.token_requests().1 < count {
        assert!(Instant::now() < deadline, "no refresh request came");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn browser_flow_with_pkce_then_fetch_and_the_token_file_is_private() {
    let Some(idp) = AuthServer::start("browser_flow_with_pkce_then_fetch") else { return };
    let daemon = Pop3d::jwt(&idp);
    let home = Home::new();
    home.configure(&idp, &daemon.port, &daemon.cert(), "oauthbearer");
    // Before `pop3 auth`: a fetch says what to do.
    let out = home.fetch();
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("run `pop3 auth work`"), "{}", out.stderr);
    home.authorize_in_browser(&idp);
    assert_eq!(mode(&home.token_file()), 0o600);
    assert_eq!(mode(&home.token_dir()), 0o700);
    assert!(!home.refresh_token().is_empty());
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 3), "{}", out.stderr);
    let log = daemon.log();
    let ok = |l: &str| l.contains("mechanism=\"OAUTHBEARER\"") && l.contains("result=\"ok\"");
    assert!(log.lines().any(ok), "{log}");
    // The access token is still valid: used again, nothing asked of the authorization server.
    let asked = idp.token_requests();
    daemon.deliver(4);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 4), "{}", out.stderr);
    assert_eq!(idp.token_requests(), asked, "no token request for a valid access token");
    assert_eq!(mode(&home.token_file()), 0o600);
}

#[test]
fn browser_flow_refused_or_forged_stores_nothing() {
    let Some(idp) = AuthServer::start("browser_flow_refused_or_forged") else { return };
    let home = Home::new();
    home.configure(&idp, "1", Path::new("/nonexistent"), "xoauth2");
    // Nobody logged in at the authorization server: it answers access_denied.
    idp.login_as(None);
    let (child, lines) = home.spawn_auth(&[]);
    let url = printed_after(&lines, "open this URL in a browser");
    let (location, status, _) = idp.browse(&url);
    assert!(location.contains("error=access_denied"), "{location}");
    assert_eq!(status, 400);
    let (code, said) = finish(child, lines);
    assert_eq!(code, 4, "{said}");
    assert!(said.contains("the authorization was refused (access_denied"), "{said}");
    // A redirect with another state (not from this authorization request) is refused.
    let (child, lines) = home.spawn_auth(&[]);
    let url = printed_after(&lines, "open this URL in a browser");
    let redirect = url.split("redirect_uri=").nth(1).unwrap().split('&').next().unwrap();
    let port = redirect.trim_start_matches("http%3A%2F%2F127.0.0.1%3A").trim_end_matches("%2F");
    let forged = format!("http://127.0.0.1:{port}/?code=stolen&state=forged");
    let (status, page) = idp.page(&forged);
    assert_eq!(status, 400, "{page}");
    let (code, said) = finish(child, lines);
    assert_eq!(code, 4, "{said}");
    assert!(said.contains("state is not the one sent"), "{said}");
    assert!(!home.token_file().exists(), "nothing stored");
    // No [oauth] section: a usage error.
    write_config(home.path(), "[accounts.plain]\nurl = \"pop3://a@localhost\"\n");
    let out = run(&mut pop3(home.path(), &["auth", "plain"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no [accounts.plain.oauth] section"), "{}", out.stderr);
}

#[test]
fn device_flow_then_fetch_and_denied_or_expired_codes_lose_nothing() {
    let Some(idp) = AuthServer::start("device_flow_then_fetch") else { return };
    let daemon = Pop3d::jwt(&idp);
    let home = Home::new();
    home.configure(&idp, &daemon.port, &daemon.cert(), "xoauth2");
    // Polled every second; the first poll is told slow_down (RFC 8628 section 3.5: 5 s more).
    idp.device_settings(1, 600, 1);
    let (child, lines) = home.spawn_auth(&["--device"]);
    let user_code = printed_after(&lines, "enter the code");
    std::thread::sleep(Duration::from_millis(1500)); // a poll or two: authorization_pending
    idp.approve_device(&user_code, "alice", true);
    let (code, said) = finish(child, lines);
    assert_eq!(code, 0, "{said}");
    let (requests, _) = idp.token_requests();
    assert!(requests >= 2, "polled before the approval: {requests} token requests");
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 3), "{}", out.stderr);
    let log = daemon.log();
    let ok = |l: &str| l.contains("mechanism=\"XOAUTH2\"") && l.contains("result=\"ok\"");
    assert!(log.lines().any(ok), "{log}");
    let stored = std::fs::read(home.token_file()).unwrap();
    // Denied, then expired: errors that say so, and the tokens stored before are kept.
    idp.device_settings(1, 600, 0);
    let (child, lines) = home.spawn_auth(&["--device"]);
    let user_code = printed_after(&lines, "enter the code");
    idp.approve_device(&user_code, "alice", false);
    let (code, said) = finish(child, lines);
    assert_eq!(code, 4, "{said}");
    assert!(said.contains("refused (access_denied)"), "{said}");
    idp.device_settings(1, 2, 0);
    let (child, lines) = home.spawn_auth(&["--device"]);
    let _ = printed_after(&lines, "enter the code");
    let (code, said) = finish(child, lines);
    assert_eq!(code, 4, "{said}");
    assert!(said.contains("expired"), "{said}");
    assert_eq!(std::fs::read(home.token_file()).unwrap(), stored, "the old tokens are kept");
    daemon.deliver(4);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 4), "{}", out.stderr);
}

#[test]
fn expired_access_tokens_are_refreshed_and_a_rotated_refresh_token_is_stored_before_use() {
    let Some(idp) = AuthServer::start("expired_access_tokens_are_refreshed") else { return };
    let daemon = Pop3d::jwt(&idp);
    let home = Home::new();
    // Access tokens of 2 s: expired (within the retriever's margin) at every run.
    idp.access_lifetime(2);
    // First towards a port where nothing listens: the refresh happens, the login cannot.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    home.configure(&idp, &closed_port, &daemon.cert(), "oauthbearer");
    home.authorize_in_browser(&idp);
    let first = home.refresh_token();
    let out = home.fetch();
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(idp.token_requests().1, 1, "refreshed before connecting");
    let second = home.refresh_token();
    assert_ne!(second, first, "the server rotated the refresh token, and it is stored");
    assert_eq!(idp.refresh(&first)["error"], "invalid_grant", "the old one is revoked");
    // Now the real server: refreshed again (rotated again), and the mail fetched.
    home.configure(&idp, &daemon.port, &daemon.cert(), "oauthbearer");
    let asked = idp.token_requests().1; // the test's own refresh with the old token counts
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 3), "{}", out.stderr);
    assert_eq!(idp.token_requests().1, asked + 1);
    assert_ne!(home.refresh_token(), second);
    assert_eq!(mode(&home.token_file()), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(home.token_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_token_the_server_refuses_is_refreshed_once_and_the_login_tried_again() {
    let Some(idp) = AuthServer::start("a_token_the_server_refuses_is_refreshed") else { return };
    let daemon = Pop3d::introspecting(&idp);
    let home = Home::new();
    home.configure(&idp, &daemon.port, &daemon.cert(), "xoauth2");
    home.authorize_in_browser(&idp);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 3), "{}", out.stderr);
    assert_eq!(idp.token_requests().1, 0, "the access token from `pop3 auth` was used");
    // Revoked at the authorization server, though not expired: pop3d refuses it (once its
    // cached answer is gone), and the retriever refreshes and logs in with the new one.
    let revoked = home.access_token();
    idp.revoke(&revoked);
    std::thread::sleep(Duration::from_millis(1100));
    daemon.deliver(4);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 4), "{}", out.stderr);
    assert_eq!(idp.token_requests().1, 1, "one refresh");
    assert_ne!(home.access_token(), revoked);
    assert_eq!(daemon.log().matches("token not active").count(), 1, "{}", daemon.log());
}

#[test]
fn a_revoked_refresh_token_says_to_run_pop3_auth_and_loses_nothing() {
    let Some(idp) = AuthServer::start("a_revoked_refresh_token") else { return };
    let daemon = Pop3d::jwt(&idp);
    let home = Home::new();
    home.configure(&idp, &daemon.port, &daemon.cert(), "oauthbearer");
    idp.access_lifetime(2);
    home.authorize_in_browser(&idp);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 3), "{}", out.stderr);
    // The user revokes the retriever's access at the provider.
    idp.revoke_as_public_client(&home.refresh_token());
    let stored = std::fs::read(home.token_file()).unwrap();
    let logins = daemon.log().matches("pop3d::audit: login").count();
    daemon.deliver(4);
    let out = home.fetch();
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("invalid_grant"), "{}", out.stderr);
    assert!(out.stderr.contains("revoked or has expired"), "{}", out.stderr);
    assert!(
        out.stderr.contains("run `pop3 auth work` to authorize the account again"),
        "{}",
        out.stderr
    );
    assert_eq!(home.fetched(), 3, "nothing fetched");
    assert_eq!(
        daemon.log().matches("pop3d::audit: login").count(),
        logins,
        "no login tried (no audit line)"
    );
    assert_eq!(std::fs::read(home.token_file()).unwrap(), stored, "the token file is kept");
    // Authorized again: the new message comes.
    home.authorize_in_browser(&idp);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 4), "{}", out.stderr);
}

#[test]
fn sigkill_during_a_refresh_loses_nothing() {
    let Some(idp) = AuthServer::start("sigkill_during_a_refresh") else { return };
    let daemon = Pop3d::jwt(&idp);
    let home = Home::new();
    home.configure(&idp, &daemon.port, &daemon.cert(), "oauthbearer");
    idp.access_lifetime(2);
    home.authorize_in_browser(&idp);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 3), "{}", out.stderr);
    // Killed while the refresh request is unanswered, and the server never acts on it: the
    // stored refresh token still works, and the next run fetches.
    let stored = std::fs::read(home.token_file()).unwrap();
    idp.token_behave("stall");
    let asked = idp.token_requests().1;
    let mut fetch = home.spawn_fetch();
    await_refreshes(&idp, asked + 1);
    fetch.kill().unwrap();
    fetch.wait().unwrap();
    assert_eq!(std::fs::read(home.token_file()).unwrap(), stored, "the token file is intact");
    idp.token_behave("normal");
    daemon.deliver(4);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 4), "{}", out.stderr);
    // Killed after the server rotated the refresh token but before its answer came: the new
    // refresh token never arrived and the old one is revoked. The file is intact, and the next
    // run says to authorize again; no mail is lost or fetched twice.
    let stored = std::fs::read(home.token_file()).unwrap();
    idp.token_behave("lose");
    let asked = idp.token_requests().1;
    let mut fetch = home.spawn_fetch();
    await_refreshes(&idp, asked + 1);
    std::thread::sleep(Duration::from_millis(500)); // the server rotates, then stalls
    fetch.kill().unwrap();
    fetch.wait().unwrap();
    assert_eq!(std::fs::read(home.token_file()).unwrap(), stored, "the token file is intact");
    idp.token_behave("normal");
    daemon.deliver(5);
    let out = home.fetch();
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("run `pop3 auth work`"), "{}", out.stderr);
    assert_eq!(home.fetched(), 4);
    home.authorize_in_browser(&idp);
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 5), "{}", out.stderr);
    assert_eq!(mode(&home.token_file()), 0o600);
}

#[test]
fn oauth_settings_are_checked_before_any_server_is_contacted() {
    let home = Home::new();
    let account = "[accounts.work]\nurl = \"pop3://alice@localhost:1\"\n";
    for (oauth, said) in [
        ("provider = \"yahoo\"\nclient_id = \"x\"", "expected google, microsoft or oidc"),
        ("provider = \"oidc\"\nclient_id = \"x\"", "needs oauth.issuer"),
        ("provider = \"oidc\"\nclient_id = \"x\"\nissuer = \"http://id.example\"", "https"),
        (
            "provider = \"google\"\nclient_id = \"x\"\nmechanism = \"plain\"",
            "xoauth2 or oauthbearer",
        ),
        ("provider = \"google\"\nclient_id = \"x\"\ncolour = \"red\"", "unknown field"),
    ] {
        write_config(home.path(), &format!("{account}[accounts.work.oauth]\n{oauth}\n"));
        for command in [&["fetch", "work"][..], &["auth", "work"]] {
            let out = run(&mut pop3(home.path(), command));
            assert_eq!(out.code, 2, "{command:?} {oauth}: {}", out.stderr);
            assert!(out.stderr.contains(said), "{command:?} {oauth}: {}", out.stderr);
        }
    }
    // A password method with [oauth]: a usage error.
    write_config(
        home.path(),
        &format!("{account}auth = \"plain\"\n[accounts.work.oauth]\nprovider = \"google\"\nclient_id = \"x\"\n"),
    );
    let out = run(&mut pop3(home.path(), &["fetch", "work"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("oauthbearer or xoauth2"), "{}", out.stderr);
}

#[test]
fn token_requests_go_through_the_accounts_socks_proxy() {
    let test = "token_requests_go_through_the_accounts_socks_proxy";
    if !dante::available(test) {
        return;
    }
    let Some(idp) = AuthServer::start(test) else { return };
    let idp_port: u16 = idp.issuer.rsplit(':').next().unwrap().parse().unwrap();
    let daemon = Pop3d::jwt(&idp);
    let pop3d_port: u16 = daemon.port.parse().unwrap();
    let home = Home::new();
    let (passing_dir, blocking_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let passing = Dante::start(passing_dir.path());
    // One that passes everything but connections to the authorization server.
    let blocking = Dante::with_rules(
        blocking_dir.path(),
        &format!(
            "socks block {{\n    from: 0.0.0.0/0 to: 127.0.0.1/32 port = {idp_port}\n    \
             log: connect error\n}}\n"
        ),
    );
    let through = |dante: &Dante| format!("proxy = \"socks5h://127.0.0.1:{}\"", dante.port);
    home.configure_with(&idp, &daemon.port, &daemon.cert(), "oauthbearer", &through(&passing));
    // Access tokens of 2 s: every fetch refreshes first.
    idp.access_lifetime(2);

    // `pop3 auth`: discovery and the code exchange go through the proxy.
    home.authorize_in_browser(&idp);
    let authorizing = passing.connections_to(idp_port);
    assert!(authorizing >= 2, "discovery and token request via danted:\n{}", passing.log());
    // A fetch: the refresh and the POP3 login go through it too.
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 3), "{}\n{}", out.stderr, passing.log());
    assert_eq!(idp.token_requests().1, 1, "refreshed");
    assert!(passing.connections_to(idp_port) > authorizing, "{}", passing.log());
    assert!(passing.connections_to(pop3d_port) >= 1, "{}", passing.log());

    // Through a proxy that refuses the authorization server: the refresh fails at the proxy,
    // and says so; nothing reaches the authorization server, nothing is fetched or changed.
    home.configure_with(&idp, &daemon.port, &daemon.cert(), "oauthbearer", &through(&blocking));
    daemon.deliver(4);
    let stored = std::fs::read(home.token_file()).unwrap();
    let asked = idp.token_requests();
    let out = home.fetch();
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach the authorization server")
            && out
                .stderr
                .contains(&format!("through the SOCKS5 proxy 127.0.0.1:{}", blocking.port)),
        "{}",
        out.stderr
    );
    eprintln!("refused at the proxy: {}", out.stderr.trim());
    assert_eq!(blocking.connections_to(idp_port), 1, "{}", blocking.log());
    assert_eq!(idp.token_requests(), asked, "nothing reached the authorization server");
    assert_eq!(home.fetched(), 3);
    assert_eq!(std::fs::read(home.token_file()).unwrap(), stored, "the token file is kept");
    // `pop3 auth` through it fails at discovery, with the proxy named.
    let out = run(&mut pop3(home.path(), &["auth", "--device", "--wait", "5", "work"]));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("through the SOCKS5 proxy"), "{}", out.stderr);
    assert_eq!(std::fs::read(home.token_file()).unwrap(), stored, "the token file is kept");

    // Back through the passing proxy: the message waiting comes.
    home.configure_with(&idp, &daemon.port, &daemon.cert(), "oauthbearer", &through(&passing));
    let out = home.fetch();
    assert_eq!((out.code, home.fetched()), (0, 4), "{}", out.stderr);
}
