//! Logging in: USER/PASS, APOP and SASL (RFC 1939 §7, RFC 5034), the embedder's answers, and
//! the other answers that move the session between states (TLS, commit).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Buf;

use super::capa::offered_mechanisms;
use super::config::BearerErrorReport;
use super::event::{CloseReason, Event, LoginError};
use super::session::{CommitError, ServerSession, State, Transaction, WrongState};
use super::snapshot::Snapshot;
use crate::sasl::{AuthRequest, Mechanism, SaslError, SaslServer, ScramKeys, ServerStep};
use crate::{RespCode, SaslResponse, Secret, StatusLine};

/// The JSON error report for a refused token: RFC 7628 §3.2.2's for OAUTHBEARER
/// (`invalid_token`, with the scope and discovery URL when configured), and for XOAUTH2 the
/// form Google's servers send (`"status":"401"`, the schemes and the scope).
fn bearer_error(mechanism: Mechanism, report: &BearerErrorReport) -> String {
    let mut json = String::from("{");
    let mut field = |name: &str, value: &str| {
        if json.len() > 1 {
            json.push(',');
        }
        json_string(&mut json, name);
        json.push(':');
        json_string(&mut json, value);
    };
    if mechanism == Mechanism::XOAuth2 {
        field("status", "401");
        field("schemes", "bearer");
        if let Some(scope) = &report.scope {
            field("scope", scope);
        }
    } else {
        field("status", "invalid_token");
        if let Some(scope) = &report.scope {
            field("scope", scope);
        }
        if let Some(url) = &report.openid_configuration {
            field("openid-configuration", url);
        }
    }
    json.push('}');
    json
}

/// Appends `value` as a JSON string (RFC 8259 §7).
fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl ServerSession {
    fn refuse_plaintext(&mut self) -> bool {
        if self.plaintext_allowed() {
            return false;
        }
        self.reply(
            StatusLine::err("Plaintext authentication disallowed on non-secure connections")
                .with_code(RespCode::Auth),
        );
        true
    }

    /// USER (RFC 1939 §7). The answer does not say whether the mailbox exists.
    pub(super) fn user(&mut self, name: String) {
        if self.refuse_plaintext() {
            return;
        }
        self.state = State::Authorization { user: Some(name) };
        self.reply(StatusLine::ok("send PASS"));
    }

    /// PASS (RFC 1939 §7): only right after USER.
    pub(super) fn pass(&mut self, password: Vec<u8>) {
        let State::Authorization { user } = &mut self.state else { return };
        let Some(username) = user.take() else {
            self.bad_command("USER first");
            return;
        };
        if self.refuse_plaintext() {
            return;
        }
        self.ask(
            AuthRequest::Password {
                username,
                authzid: None,
                password: Secret::new(password),
                mechanism: None,
            },
            None,
        );
    }

    /// APOP (RFC 1939 §7), when configured (the greeting then carried the timestamp).
    pub(super) fn apop(&mut self, username: String, digest: String) {
        if !self.config.apop {
            self.reply(StatusLine::err("APOP not supported"));
            return;
        }
        let timestamp = self.greeting.apop_timestamp.clone();
        let digest = Secret::new(digest.to_ascii_lowercase());
        self.ask(AuthRequest::Apop { username, timestamp, digest }, None);
    }

    /// AUTH (RFC 5034 §4): starts a SASL exchange with an offered mechanism.
    pub(super) fn auth(&mut self, name: &str, initial: Option<String>) {
        let offered = Mechanism::from_name(name).filter(|m| {
            offered_mechanisms(&self.config, self.plaintext_allowed()).any(|o| o == *m)
        });
        let Some(mechanism) = offered else {
            self.reply(StatusLine::err("unsupported authentication mechanism"));
            return;
        };
        let initial = match initial.map(|i| BASE64.decode(i)).transpose() {
            Ok(initial) => initial,
            Err(_) => {
                self.reply(StatusLine::err("invalid base64 in initial response"));
                return;
            }
        };
        let mut server =
            SaslServer::new(mechanism, &self.greeting.sasl_nonce, &self.greeting.hostname);
        let step = server.start(initial.as_deref());
        self.sasl_step(server, step);
    }

    /// Reads the client's next line of a SASL exchange; false if none is complete.
    pub(super) fn next_sasl_line(&mut self) -> bool {
        let decoded = self.decoder.decode_sasl(&self.input);
        let consumed = decoded.consumed;
        let outcome = decoded.outcome.map(|r| r.map(SaslResponse::into_owned));
        self.input.advance(consumed);
        if !matches!(self.state, State::Sasl { .. }) || matches!(outcome, Ok(None)) {
            return false;
        }
        if self.over_login_budget() {
            return true;
        }
        let State::Sasl { mut server } =
            core::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            return false;
        };
        match outcome {
            Ok(None) => {}
            // RFC 5034 §4: "*" cancels the exchange and the server answers -ERR. It is a failed
            // login all the same: a client that learnt a SCRAM salt, or probed a name, and then
            // cancelled must meet the same delay and count as one that guessed wrong.
            Ok(Some(SaslResponse::Cancel)) => self.sasl_failed(server.mechanism(), true),
            Ok(Some(SaslResponse::Data(data))) => match BASE64.decode(data.expose().as_bytes()) {
                Ok(bytes) => {
                    let step = server.step(&bytes);
                    self.sasl_step(server, step);
                }
                Err(_) => self.reply(StatusLine::err("invalid base64, authentication aborted")),
            },
            Err(e) => self.reply(StatusLine::err(format!("{e}, authentication aborted"))),
        }
        true
    }

    /// Acts on what the mechanism wants next.
    fn sasl_step(&mut self, server: SaslServer, step: ServerStep) {
        match step {
            ServerStep::Challenge(data) => {
                // RFC 5034 §4: `"+" SP [base64]`.
                self.output.extend_from_slice(b"+ ");
                self.output.extend_from_slice(BASE64.encode(data).as_bytes());
                self.output.extend_from_slice(b"\r\n");
                self.state = State::Sasl { server };
            }
            ServerStep::Verify(request) => self.ask(request, Some(server)),
            ServerStep::NeedScramKeys { username, .. } => {
                self.events.push_back(Event::ScramKeysNeeded { username });
                self.state =
                    State::AuthPending { sasl: Some(server), failed: false, cancelled: false };
            }
            ServerStep::Success { username, authzid } => {
                self.ask(AuthRequest::Verified { username, authzid }, None);
            }
            ServerStep::Failure(error) => {
                self.sasl_failed(server.mechanism(), error == SaslError::Cancelled);
            }
        }
    }

    /// The exchange failed (or was cancelled): the embedder answers with `login_rejected`
    /// after its failed-login delay.
    fn sasl_failed(&mut self, mechanism: Mechanism, cancelled: bool) {
        self.events.push_back(Event::SaslFailed { mechanism, cancelled });
        self.state = State::AuthPending { sasl: None, failed: true, cancelled };
    }

    /// Raises [`Event::Authenticate`] and waits for the answer.
    fn ask(&mut self, request: AuthRequest, sasl: Option<SaslServer>) {
        self.events.push_back(Event::Authenticate(request));
        self.state = State::AuthPending { sasl, failed: false, cancelled: false };
    }

    /// Counts a failed login, answers `-ERR [AUTH]`, and closes after too many (RFC 3206 §5).
    fn login_failed(&mut self, cancelled: bool) {
        self.failed_logins += 1;
        let text = if cancelled { "authentication cancelled" } else { "authentication failed" };
        let line = StatusLine::err(text).with_code(RespCode::Auth);
        self.reply(line);
        if self.failed_logins >= self.config.max_failed_logins {
            self.reply(StatusLine::err("too many failed logins, closing"));
            self.close(CloseReason::TooManyFailedLogins);
        } else {
            self.state = State::Authorization { user: None };
        }
    }

    /// Answers [`Event::Authenticate`]: the credentials are good and the maildrop is locked and
    /// open. Refused after [`Event::SaslFailed`]. The session enters TRANSACTION (RFC 1939 §5) with this snapshot.
    pub fn login_accepted(&mut self, snapshot: Snapshot) -> Result<(), WrongState> {
        let State::AuthPending { failed: false, .. } = self.state else { return Err(WrongState) };
        let (count, size) = snapshot.stat();
        self.state = State::Transaction(Transaction { snapshot, last_accessed: 0, body: None });
        self.reply(StatusLine::ok(format!("maildrop has {count} messages ({size} octets)")));
        self.process();
        Ok(())
    }

    /// Answers [`Event::Authenticate`] or [`Event::SaslFailed`]: the login is refused, with the
    /// reason that picks the response code. Delaying this answer after bad credentials (a few
    /// seconds) slows password guessing without blocking anyone else; that delay is the
    /// embedder's.
    pub fn login_rejected(&mut self, error: LoginError) -> Result<(), WrongState> {
        let State::AuthPending { .. } = self.state else { return Err(WrongState) };
        let State::AuthPending { sasl, cancelled, .. } =
            core::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            return Err(WrongState);
        };
        let (code, text) = match error {
            LoginError::BadCredentials => {
                // RFC 7628 §3.2.2: a refused bearer token gets a JSON error challenge first.
                if let Some(mut server) = sasl.filter(|s| {
                    matches!(s.mechanism(), Mechanism::OAuthBearer | Mechanism::XOAuth2)
                }) {
                    let report = bearer_error(server.mechanism(), &self.config.bearer_error);
                    let step = server.bearer_rejected(&report);
                    self.sasl_step(server, step);
                    return Ok(());
                }
                self.login_failed(cancelled);
                self.process();
                return Ok(());
            }
            LoginError::InUse => (RespCode::InUse, "maildrop is locked by another session"),
            LoginError::TempFailure => (RespCode::SysTemp, "temporary failure, try again later"),
            LoginError::PermFailure => (RespCode::SysPerm, "this account cannot be served"),
            LoginError::LoginDelay => (RespCode::LoginDelay, "login too soon after the last one"),
        };
        self.reply(StatusLine::err(text).with_code(code));
        self.process();
        Ok(())
    }

    /// Answers [`Event::ScramKeysNeeded`]; `None` for an unknown user.
    pub fn scram_keys(&mut self, keys: Option<ScramKeys>) -> Result<(), WrongState> {
        let State::AuthPending { sasl: Some(_), .. } = self.state else { return Err(WrongState) };
        let State::AuthPending { sasl: Some(mut server), .. } =
            core::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            return Err(WrongState);
        };
        let step = server.provide_scram_keys(keys);
        self.sasl_step(server, step);
        self.process();
        Ok(())
    }

    /// Answers [`Event::StartTls`]: the handshake succeeded. Back to AUTHORIZATION under TLS,
    /// with nothing remembered from before (RFC 2595 §4: no pending USER, no buffered input).
    pub fn tls_established(&mut self) -> Result<(), WrongState> {
        let State::StlsPending = self.state else { return Err(WrongState) };
        self.tls_active = true;
        self.input.clear();
        self.state = State::Authorization { user: None };
        Ok(())
    }

    /// Answers [`Event::Commit`]: the final reply, then the session closes (RFC 1939 §6).
    pub fn commit_done(&mut self, result: Result<(), CommitError>) -> Result<(), WrongState> {
        let State::Update { remaining } = self.state else { return Err(WrongState) };
        match result {
            Ok(()) => {
                let text = format!("POP3 server signing off ({remaining} messages left)");
                self.reply(StatusLine::ok(text));
                self.close(CloseReason::Quit);
            }
            Err(CommitError) => {
                let line = StatusLine::err("some deleted messages were not removed")
                    .with_code(RespCode::SysTemp);
                self.reply(line);
                self.close(CloseReason::CommitFailed);
            }
        }
        Ok(())
    }
}
