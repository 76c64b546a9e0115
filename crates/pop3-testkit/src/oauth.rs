//! A real OAuth 2.0 / OpenID Connect authorization server for the tests: `peers/oauth_server.py`,
//! built on Authlib (Debian's python3-authlib and python3-flask), started on a loopback port.
//! It issues JWT access tokens signed with RS256, ES256 or EdDSA keys it publishes as a JWKS,
//! answers introspection and revocation, and lets a test rotate its keys or make its JWKS and
//! introspection endpoints stall, answer garbage or fail.

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
        let mut answer = self.agent.get(&format!("{}/admin/stats", self.issuer)).call().unwrap();
        let stats: serde_json::Value =
            serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
        (stats["jwks_fetches"].as_u64().unwrap(), stats["introspections"].as_u64().unwrap())
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
