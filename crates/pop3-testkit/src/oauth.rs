//! A real OAuth 2.0 / OpenID Connect authorization server for the tests: `peers/oauth_server.py`,
//! built on Authlib (Debian's python3-authlib and python3-flask), started on a loopback port.
//! It issues JWT access tokens signed with RS256, ES256 or EdDSA keys it publishes as a JWKS,
//! answers introspection and revocation, and lets a test rotate its keys or make its JWKS and
//! introspection endpoints stall, answer garbage or fail. For a mail client, it also has a public
//! client ([`PUBLIC_CLIENT_ID`]) with the authorization code grant (PKCE, loopback redirects),
//! the device authorization grant and rotating refresh tokens, whose users the test logs in
//! ([`AuthServer::login_as`]) or approves ([`AuthServer::approve_device`]) without a browser.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::server::TestCa;

/// The Python with Authlib: Debian's, whatever `python3` comes first on PATH.
const PYTHON: &str = "/usr/bin/python3";

/// The client the server knows (password grant, introspection, revocation).
pub const CLIENT_ID: &str = "pop3-test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "pop3-test-client-secret";

/// The public client (no secret) a mail client such as `pop3` is registered as.
pub const PUBLIC_CLIENT_ID: &str = "pop3-retriever";

/// A running authorization server, stopped when dropped.
#[derive(Debug)]
pub struct AuthServer {
    child: Child,
    /// Its issuer identifier (`http://127.0.0.1:PORT`, or `https://` with TLS).
    pub issuer: String,
    agent: ureq::Agent,
    /// The TLS files, when it serves HTTPS.
    _tls: Option<tempfile::TempDir>,
}

/// True if Debian's Python has Authlib and Flask. Otherwise: a loud SKIPPED line, or a panic
/// under CI=true (CI installs python3-authlib and python3-flask, see `.ci/run`).
pub fn available(test: &str) -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import authlib, flask"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: {PYTHON} without authlib and flask (apt-get install python3-authlib \
             python3-flask) and CI=true"
        );
        eprintln!(
            "SKIPPED: {test} needs an OAuth 2.0 server on Authlib (apt-get install \
             python3-authlib python3-flask); NOT RUN"
        );
    }
    ok
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/oauth_server.py")
}

impl AuthServer {
    /// A server on plain HTTP (loopback only), or `None` after [`available`] said why not.
    pub fn start(test: &str) -> Option<Self> {
        available(test).then(|| Self::spawn(None, "pop3"))
    }

    /// A server on HTTPS with a certificate from `ca` (for `localhost` and `127.0.0.1`).
    pub fn start_tls(test: &str, ca: &TestCa) -> Option<Self> {
        available(test).then(|| Self::spawn(Some(ca), "pop3"))
    }

    fn spawn(ca: Option<&TestCa>, audience: &str) -> Self {
        let tls = ca.map(|ca| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("cert.pem"), &ca.cert_pem).unwrap();
            std::fs::write(dir.path().join("key.pem"), &ca.key_pem).unwrap();
            dir
        });
        let mut command = Command::new(PYTHON);
        command.arg(script()).args(["--audience", audience]);
        if let Some(dir) = &tls {
            command.arg("--tls").arg(dir.path().join("cert.pem")).arg(dir.path().join("key.pem"));
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the OAuth test server starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line =
            rx.recv_timeout(Duration::from_secs(30)).expect("the OAuth test server is ready");
        let port = line.strip_prefix("READY ").expect("READY <port>");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = format!("{scheme}://127.0.0.1:{port}");
        let mut tls_config = ureq::tls::TlsConfig::builder();
        if let Some(ca) = ca {
            let roots = ureq::tls::parse_pem(ca.ca_pem.as_bytes())
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect::<Vec<_>>();
            tls_config = tls_config.root_certs(ureq::tls::RootCerts::from(roots));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .tls_config(tls_config.build())
            .build()
            .new_agent();
        Self { child, issuer, agent, _tls: tls }
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        let mut answer = self
            .agent
            .post(&format!("{}{path}", self.issuer))
            .header("Authorization", &format!("Basic {basic}"))
            .send_form(form.iter().copied())
            .unwrap();
        let body = answer.body_mut().read_to_string().unwrap();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// An access token for `user` (alice, bob or carol; each's password is `USER-secret`),
    /// with `scope`, and the extras the test server takes: `alg` (RS256, ES256, EdDSA),
    /// `expires_in` (seconds, negative for an expired token), `aud`.
    pub fn token(&self, user: &str, scope: &str, extra: &[(&str, &str)]) -> String {
        let password = format!("{user}-secret");
        let mut form = vec![
            ("grant_type", "password"),
            ("username", user),
            ("password", password.as_str()),
            ("scope", scope),
        ];
        form.extend_from_slice(extra);
        let answer = self.post("/token", &form);
        answer["access_token"].as_str().unwrap_or_else(|| panic!("no token: {answer}")).to_owned()
    }

    /// Revokes `token` (RFC 7009).
    pub fn revoke(&self, token: &str) {
        self.post("/revoke", &[("token", token)]);
    }

    /// New signing keys with new key ids; `keep_old` still publishes the old ones.
    pub fn rotate(&self, keep_old: bool) {
        self.post("/admin/rotate", &[("keep_old", if keep_old { "1" } else { "0" })]);
    }

    /// How the JWKS and introspection endpoints answer: `normal`, `stall` (30 s), `garbage`
    /// (not JSON) or `down` (503).
    pub fn behave(&self, mode: &str) {
        self.post("/admin/behaviour", &[("mode", mode)]);
    }

    /// How many times the JWKS and the introspection endpoint were asked.
    pub fn requests(&self) -> (u64, u64) {
        let stats = self.stats();
        (stats["jwks_fetches"].as_u64().unwrap(), stats["introspections"].as_u64().unwrap())
    }

    /// How many token requests came, and how many of them were refresh grants.
    pub fn token_requests(&self) -> (u64, u64) {
        let stats = self.stats();
        (stats["token_requests"].as_u64().unwrap(), stats["refresh_requests"].as_u64().unwrap())
    }

    fn stats(&self) -> serde_json::Value {
        let mut answer = self.agent.get(&format!("{}/admin/stats", self.issuer)).call().unwrap();
        serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// The user the authorization endpoint approves every request as (`None`: nobody is logged
    /// in, so requests are denied with `access_denied`).
    pub fn login_as(&self, user: Option<&str>) {
        self.post("/admin/login", &[("user", user.unwrap_or(""))]);
    }

    /// The lifetime of the access tokens issued from now on, unless a request says otherwise.
    pub fn access_lifetime(&self, seconds: i64) {
        self.post("/admin/lifetime", &[("seconds", &seconds.to_string())]);
    }

    /// `user` approves (or denies) the device authorization with `user_code`.
    pub fn approve_device(&self, user_code: &str, user: &str, approve: bool) {
        let approve = if approve { "1" } else { "0" };
        self.post(
            "/admin/device",
            &[("user_code", user_code), ("user", user), ("approve", approve)],
        );
    }

    /// Device authorizations from now on: polling interval and lifetime (seconds), and how many
    /// of the next polls are told `slow_down`.
    pub fn device_settings(&self, interval: u64, expires_in: u64, slow_down: u64) {
        let (interval, expires_in, slow_down) =
            (interval.to_string(), expires_in.to_string(), slow_down.to_string());
        self.post(
            "/admin/device",
            &[("interval", &interval), ("expires_in", &expires_in), ("slow_down", &slow_down)],
        );
    }

    /// How the token endpoint answers: `normal`, `stall` (30 s, then 503, having done nothing)
    /// or `lose` (does what is asked, then waits 30 s before answering).
    pub fn token_behave(&self, mode: &str) {
        self.post("/admin/token_behaviour", &[("mode", mode)]);
    }

    /// Revokes `token` (a refresh token) as the public client does (RFC 7009).
    pub fn revoke_as_public_client(&self, token: &str) {
        let answer = self
            .agent
            .post(&format!("{}/revoke", self.issuer))
            .send_form([("token", token), ("client_id", PUBLIC_CLIENT_ID)])
            .unwrap();
        assert_eq!(answer.status(), 200, "revocation");
    }

    /// A refresh grant with `refresh_token`, as the public client: the answer's JSON (an
    /// `error` when the token is no longer valid).
    pub fn refresh(&self, refresh_token: &str) -> serde_json::Value {
        let mut answer = self
            .agent
            .post(&format!("{}/token", self.issuer))
            .send_form([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", PUBLIC_CLIENT_ID),
            ])
            .unwrap();
        serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// What a browser does with an authorization URL: asks the authorization server, which
    /// (for the user logged in with [`login_as`](Self::login_as)) redirects, and follows the
    /// redirect. Returns where it was redirected and that page's status and text.
    pub fn browse(&self, url: &str) -> (String, u16, String) {
        let answer = self.agent.get(url).config().max_redirects(0).build().call().unwrap();
        let location = answer
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("{url}: no redirect ({})", answer.status()))
            .to_str()
            .unwrap()
            .to_owned();
        let (status, page) = self.page(&location);
        (location, status, page)
    }

    /// GETs `url` (a redirect URI, as a browser would be sent to it): its status and text.
    pub fn page(&self, url: &str) -> (u16, String) {
        let mut page = self.agent.get(url).call().unwrap();
        (page.status().as_u16(), page.body_mut().read_to_string().unwrap_or_default())
    }

    /// Stops the server (a test of an authorization server that is gone).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.kill();
    }
}
