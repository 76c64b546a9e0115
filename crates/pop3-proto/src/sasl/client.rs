//! The client side of every mechanism.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::digest::{constant_time_eq, cram_md5_digest, hmac_sha256, sha256};
use super::oauth::{oauthbearer_message, xoauth2_message};
use super::scram::{
    base64, client_signature, escape_saslname, parse_server_final, parse_server_first,
    salted_password, sanitize_nonce, server_signature, xor, ServerFinal,
};
use super::{Mechanism, SaslError};
use crate::Secret;

/// The client side of a SASL exchange: decoded challenges in, raw responses out.
///
/// Base64 on the wire, `AUTH`, `*` and the `+ ` prefix are the session's job; this type only
/// knows the mechanisms. Call [`initial_response`](Self::initial_response) once, right after
/// creating it, to get what goes on the `AUTH` line (RFC 5034 §4, `=` for an empty one), then
/// [`step`](Self::step) for every `+ ` challenge. If the session sends no initial response
/// for a mechanism that has one, the first `step` (on the server's empty challenge) returns
/// it instead (RFC 4422 §3.3).
///
/// When `step` fails, the session should cancel the exchange with `*` (RFC 5034 §4).
///
/// SCRAM's `step` on the server-first message runs PBKDF2 with the server's iteration count,
/// which is CPU work proportional to that count; it is bounded by
/// [`with_max_scram_iterations`](Self::with_max_scram_iterations).
#[derive(Debug)]
pub struct SaslClient {
    mechanism: Mechanism,
    state: State,
    /// Whether `initial_response` or `step` has been called.
    started: bool,
    verified: bool,
    error_details: Option<String>,
    max_iterations: u32,
}

#[derive(Debug)]
enum State {
    /// A client-first mechanism whose message has not been sent yet (PLAIN, OAUTHBEARER,
    /// XOAUTH2); `initial` says whether it may go in the initial response.
    Message {
        message: Secret<Vec<u8>>,
        initial: bool,
    },
    /// OAUTHBEARER / XOAUTH2 after the token was sent: a challenge now is an error report.
    BearerSent,
    Login {
        username: String,
        password: Secret<String>,
        username_sent: bool,
    },
    CramMd5 {
        username: String,
        password: Secret<String>,
    },
    ScramStart {
        username: String,
        password: Secret<String>,
        nonce: String,
    },
    ScramFirstSent {
        password: Secret<String>,
        nonce: String,
        first_bare: String,
    },
    ScramFinalSent {
        server_signature: Secret<[u8; 32]>,
    },
    Done,
}

/// The single byte that answers an OAUTHBEARER error challenge (RFC 7628 §3.2.3).
const KVSEP: u8 = 0x01;

impl SaslClient {
    /// The default bound on the SCRAM iteration count a server may ask for (PBKDF2 work the
    /// client does in [`step`](Self::step)); ten times OWASP's 2023 recommendation.
    pub const DEFAULT_MAX_SCRAM_ITERATIONS: u32 = 6_000_000;

    fn with_state(mechanism: Mechanism, state: State) -> Self {
        Self {
            mechanism,
            state,
            started: false,
            verified: false,
            error_details: None,
            max_iterations: Self::DEFAULT_MAX_SCRAM_ITERATIONS,
        }
    }

    /// `PLAIN` (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`. Sends the password; use
    /// only over TLS.
    pub fn plain(authzid: Option<&str>, username: &str, password: &str) -> Self {
        let mut message = Vec::with_capacity(username.len() + password.len() + 2);
        message.extend_from_slice(authzid.unwrap_or_default().as_bytes());
        message.push(0);
        message.extend_from_slice(username.as_bytes());
        message.push(0);
        message.extend_from_slice(password.as_bytes());
        Self::with_state(
            Mechanism::Plain,
            State::Message { message: Secret::new(message), initial: true },
        )
    }

    /// `LOGIN`: the user name and the password in answer to the server's `Username:` and
    /// `Password:` prompts. Sends the password; use only over TLS.
    pub fn login(username: &str, password: &str) -> Self {
        Self::with_state(
            Mechanism::Login,
            State::Login {
                username: username.into(),
                password: Secret::new(password.into()),
                username_sent: false,
            },
        )
    }

    /// `CRAM-MD5` (RFC 2195).
    pub fn cram_md5(username: &str, password: &str) -> Self {
        Self::with_state(
            Mechanism::CramMd5,
            State::CramMd5 { username: username.into(), password: Secret::new(password.into()) },
        )
    }

    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677) without channel binding (GS2 header `n,,`).
    ///
    /// `client_nonce` must come from a cryptographically secure random source in the embedder
    /// (at least 18 characters, printable ASCII except `,`; other characters are dropped).
    /// The password goes through this crate's partial SASLprep (see the
    /// [module documentation](super#scram-and-saslprep)).
    pub fn scram_sha256(username: &str, password: &str, client_nonce: &str) -> Self {
        Self::with_state(
            Mechanism::ScramSha256,
            State::ScramStart {
                username: username.into(),
                password: Secret::new(password.into()),
                nonce: sanitize_nonce(client_nonce),
            },
        )
    }

    /// `OAUTHBEARER` (RFC 7628 §3.1), with the optional `host` and `port` key-value pairs.
    /// `username` goes into the GS2 header's authzid (`a=`); an empty one is left out.
    pub fn oauthbearer(username: &str, token: &str, host: Option<&str>, port: Option<u16>) -> Self {
        Self::with_state(
            Mechanism::OAuthBearer,
            State::Message {
                message: Secret::new(oauthbearer_message(username, token, host, port)),
                initial: true,
            },
        )
    }

    /// `XOAUTH2`: `user=USER ^A auth=Bearer TOKEN ^A ^A`.
    ///
    /// `initial_response = true` sends it on the `AUTH` line (Google); `false` waits for the
    /// server's empty challenge first, the two-step form Microsoft's servers require.
    pub fn xoauth2(username: &str, token: &str, initial_response: bool) -> Self {
        Self::with_state(
            Mechanism::XOAuth2,
            State::Message {
                message: Secret::new(xoauth2_message(username, token)),
                initial: initial_response,
            },
        )
    }

    /// Sets the largest SCRAM iteration count the client accepts from a server (default
    /// [`DEFAULT_MAX_SCRAM_ITERATIONS`](Self::DEFAULT_MAX_SCRAM_ITERATIONS)); a larger one
    /// fails with [`SaslError::InvalidIterations`] before any work is done.
    #[must_use]
    pub fn with_max_scram_iterations(mut self, max: u32) -> Self {
        self.max_iterations = max;
        self
    }

    /// The mechanism this client runs.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The initial response for the `AUTH` line (RFC 5034 §4, RFC 4422 §3.3), or `None` when
    /// the mechanism starts with a server challenge (LOGIN, CRAM-MD5, two-step XOAUTH2).
    ///
    /// Call it once, before any [`step`](Self::step); later calls return `None`. An empty
    /// response is sent as `=`.
    pub fn initial_response(&mut self) -> Option<Secret<Vec<u8>>> {
        if self.started {
            return None;
        }
        self.started = true;
        match &self.state {
            State::Message { initial: true, .. } => self.send_message(),
            State::ScramStart { .. } => Some(self.scram_client_first()),
            _ => None,
        }
    }

    /// Answers one server challenge (already base64-decoded) with a raw response.
    ///
    /// A failure ends the exchange (every later call fails with
    /// [`SaslError::UnexpectedStep`]); the session then cancels with `*`.
    pub fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        let first = !self.started;
        self.started = true;
        let result = self.step_inner(challenge, first);
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    fn step_inner(&mut self, challenge: &[u8], first: bool) -> Result<Secret<Vec<u8>>, SaslError> {
        match &mut self.state {
            // RFC 4422 §3.3: without an initial response, the server starts with an empty
            // challenge and the client answers with what would have been the initial response.
            // The two-step XOAUTH2 form always gets here; its challenge is `+ ` (empty).
            State::Message { .. } => self.send_message().ok_or(SaslError::UnexpectedStep),
            State::ScramStart { .. } if first => Ok(self.scram_client_first()),
            State::BearerSent => {
                // RFC 7628 §3.2.2: an error challenge is a JSON object; record it for the
                // caller and answer with the dummy response (§3.2.3: a single kvsep; XOAUTH2
                // answers with an empty line).
                self.error_details = Some(String::from_utf8_lossy(challenge).into_owned());
                let ack = match self.mechanism {
                    Mechanism::OAuthBearer => alloc::vec![KVSEP],
                    _ => Vec::new(),
                };
                self.state = State::Done;
                Ok(Secret::new(ack))
            }
            State::Login { username, password, username_sent } => {
                // The prompts are not standardised; servers send "Username:" / "Password:"
                // or "User Name" and the like. Match loosely and fall back to their order.
                let prompt = String::from_utf8_lossy(challenge).to_ascii_lowercase();
                let wants_password = if prompt.contains("pass") {
                    true
                } else if prompt.contains("user") {
                    false
                } else {
                    *username_sent
                };
                if wants_password {
                    let response = Secret::new(password.expose().as_bytes().to_vec());
                    self.state = State::Done;
                    self.verified = true;
                    Ok(response)
                } else {
                    *username_sent = true;
                    Ok(Secret::new(username.as_bytes().to_vec()))
                }
            }
            State::CramMd5 { username, password } => {
                // RFC 2195 §2: the challenge is a msg-id such as "<1896.697170952@host>";
                // an empty one would make the response replayable.
                if challenge.is_empty() {
                    return Err(SaslError::Malformed);
                }
                let digest = cram_md5_digest(password.expose().as_bytes(), challenge);
                let response = format!("{username} {digest}").into_bytes();
                self.state = State::Done;
                self.verified = true;
                Ok(Secret::new(response))
            }
            State::ScramFirstSent { password, nonce, first_bare } => {
                let server_first =
                    core::str::from_utf8(challenge).map_err(|_| SaslError::Malformed)?;
                if nonce.is_empty() {
                    return Err(SaslError::InvalidNonce);
                }
                let parsed = parse_server_first(server_first)?;
                // RFC 5802 §5.1 r=: the server's nonce starts with ours.
                if !parsed.nonce.starts_with(nonce.as_str()) {
                    return Err(SaslError::NonceMismatch);
                }
                if parsed.iterations > self.max_iterations {
                    return Err(SaslError::InvalidIterations);
                }
                // RFC 5802 §3: SaltedPassword, ClientKey, StoredKey, AuthMessage.
                let salted = Secret::new(salted_password(
                    password.expose().as_bytes(),
                    &parsed.salt,
                    parsed.iterations,
                ));
                let client_key = Secret::new(hmac_sha256(salted.expose(), &[b"Client Key"]));
                let stored_key = sha256(client_key.expose());
                let server_key = hmac_sha256(salted.expose(), &[b"Server Key"]);
                // c=biws is base64("n,,"), the GS2 header of client-first (RFC 5802 §5.1 c=).
                let without_proof = format!("c=biws,r={}", parsed.nonce);
                let auth_message = format!("{first_bare},{server_first},{without_proof}");
                let signature = client_signature(&stored_key, auth_message.as_bytes());
                let proof = xor(client_key.expose(), &signature);
                let server_signature = server_signature(&server_key, auth_message.as_bytes());
                let client_final = format!("{without_proof},p={}", base64(&proof));
                self.state =
                    State::ScramFinalSent { server_signature: Secret::new(server_signature) };
                Ok(Secret::new(client_final.into_bytes()))
            }
            State::ScramFinalSent { server_signature } => {
                let server_final =
                    core::str::from_utf8(challenge).map_err(|_| SaslError::Malformed)?;
                match parse_server_final(server_final)? {
                    ServerFinal::Error(e) => {
                        self.error_details = Some(e.to_string());
                        Err(SaslError::ServerError)
                    }
                    ServerFinal::Verifier(v) => {
                        if !constant_time_eq(&v, server_signature.expose()) {
                            return Err(SaslError::ServerProofMismatch);
                        }
                        self.verified = true;
                        self.state = State::Done;
                        // RFC 5034 §4: the client answers the final challenge with an empty line.
                        Ok(Secret::new(Vec::new()))
                    }
                }
            }
            State::ScramStart { .. } | State::Done => Err(SaslError::UnexpectedStep),
        }
    }

    /// Takes the client-first message of PLAIN, OAUTHBEARER or XOAUTH2.
    fn send_message(&mut self) -> Option<Secret<Vec<u8>>> {
        let State::Message { message, .. } = core::mem::replace(&mut self.state, State::Done)
        else {
            return None;
        };
        if matches!(self.mechanism, Mechanism::OAuthBearer | Mechanism::XOAuth2) {
            self.state = State::BearerSent;
        }
        self.verified = true;
        Some(message)
    }

    /// RFC 5802 §5.1/§7: `client-first-message = gs2-header client-first-message-bare`.
    fn scram_client_first(&mut self) -> Secret<Vec<u8>> {
        let State::ScramStart { username, password, nonce } =
            core::mem::replace(&mut self.state, State::Done)
        else {
            return Secret::new(Vec::new());
        };
        let first_bare = format!("n={},r={nonce}", escape_saslname(&username));
        let message = format!("n,,{first_bare}").into_bytes();
        self.state = State::ScramFirstSent { password, nonce, first_bare };
        Secret::new(message)
    }

    /// Whether the exchange is complete from the client's side.
    ///
    /// For SCRAM-SHA-256, true only once the server's signature (`v=` in server-final,
    /// RFC 5802 §5.1) has been checked: the server has proved it knows the user's keys. A
    /// server that answers `+OK` while this is still false has not proved that, and a careful
    /// client treats the login as failed. Other mechanisms do not authenticate the server;
    /// for them it is true once the client has sent its last message (for OAUTHBEARER and
    /// XOAUTH2: the token).
    pub fn server_verified(&self) -> bool {
        self.verified
    }

    /// The server's error report: the JSON of an OAUTHBEARER / XOAUTH2 error challenge
    /// (RFC 7628 §3.2.2), or the value of a SCRAM `e=` (RFC 5802 §7 `server-error`).
    pub fn error_details(&self) -> Option<&str> {
        self.error_details.as_deref()
    }
}
