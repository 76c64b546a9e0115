//! The server side of every mechanism.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::digest::{constant_time_eq, hmac_sha256, sha256};
use super::oauth::{is_error_ack, parse_oauthbearer, parse_xoauth2};
use super::scram::{
    base64, client_signature, parse_client_final, parse_client_first, sanitize_nonce,
    server_signature, xor, ScramKeys,
};
use super::{AuthRequest, Mechanism, SaslError};
use crate::Secret;

/// What the server side of a SASL exchange wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Send `+ ` and the base64 of this data, then feed the client's answer to
    /// [`SaslServer::step`] (RFC 5034 §4).
    Challenge(Vec<u8>),
    /// The mechanism is done; the embedder checks these credentials and accepts or rejects
    /// the login itself. For OAUTHBEARER and XOAUTH2 a refused token should go to
    /// [`SaslServer::bearer_rejected`] so that the client gets the error report.
    Verify(AuthRequest),
    /// SCRAM: look up the user's stored keys and pass them to
    /// [`SaslServer::provide_scram_keys`] (`None` for an unknown user).
    NeedScramKeys {
        /// The authentication identity (`n=`), unescaped.
        username: String,
        /// The authorization identity (`a=`), if the client asked for one.
        authzid: Option<String>,
    },
    /// SCRAM: the client's proof verified, the server-final message went out as a
    /// challenge and the client acknowledged it with an empty response (RFC 5034 §4).
    /// Whether `username` may act as `authzid` is the embedder's decision.
    Success {
        /// The authentication identity.
        username: String,
        /// The authorization identity, if any.
        authzid: Option<String>,
    },
    /// The exchange failed; answer `-ERR` (with `[AUTH]` for
    /// [`SaslError::AuthenticationFailed`]).
    Failure(SaslError),
}

/// The server side of a SASL exchange: decoded client responses in, [`ServerStep`]s out.
///
/// Create it when the client sends `AUTH mechanism [initial-response]`, call
/// [`start`](Self::start), then [`step`](Self::step) for each response line (decoded from
/// base64; `*` is the session's to handle, with [`cancel`](Self::cancel)). Answer
/// [`ServerStep::NeedScramKeys`] with [`provide_scram_keys`](Self::provide_scram_keys).
/// After [`ServerStep::Verify`], [`ServerStep::Success`] or [`ServerStep::Failure`] the
/// exchange is over (except for [`bearer_rejected`](Self::bearer_rejected)); further calls
/// return `Failure(UnexpectedStep)`.
#[derive(Debug)]
pub struct SaslServer {
    mechanism: Mechanism,
    nonce: String,
    hostname: String,
    decoy_iterations: u32,
    state: State,
}

#[derive(Debug)]
enum State {
    Initial,
    /// A client-first mechanism sent an empty challenge and waits for the client's message.
    AwaitFirst,
    LoginUsername,
    LoginPassword {
        username: String,
    },
    CramMd5 {
        challenge: String,
    },
    ScramNeedKeys(Box<ScramFirst>),
    ScramAwaitFinal(Box<ScramPending>),
    ScramAwaitAck {
        username: String,
        authzid: Option<String>,
    },
    BearerVerifying,
    BearerRejected,
    Done,
}

#[derive(Debug)]
struct ScramFirst {
    gs2_header: String,
    first_bare: String,
    client_nonce: String,
    username: String,
    authzid: Option<String>,
}

#[derive(Debug)]
struct ScramPending {
    first: ScramFirst,
    combined_nonce: String,
    /// `client-first-message-bare "," server-first-message ","`.
    auth_message_prefix: String,
    keys: ScramKeys,
    decoy: bool,
}

impl SaslServer {
    /// The iteration count of the decoy keys for unknown SCRAM users, unless set with
    /// [`with_decoy_iterations`](Self::with_decoy_iterations): RFC 7677 §4's minimum.
    pub const DEFAULT_DECOY_ITERATIONS: u32 = 4096;

    /// A server side for `mechanism`.
    ///
    /// `nonce` is drawn by the embedder from a cryptographically secure random source:
    /// printable ASCII without `,` (other characters are dropped), at least 18 characters.
    /// SCRAM appends it to the client's nonce (RFC 5802 §5.1 `r=`); CRAM-MD5 sends
    /// `<{nonce}@{hostname}>` as its challenge (RFC 2195 §2). A nonce left empty makes those
    /// two mechanisms fail with [`SaslError::InvalidNonce`].
    pub fn new(mechanism: Mechanism, nonce: &str, hostname: &str) -> Self {
        Self {
            mechanism,
            nonce: sanitize_nonce(nonce),
            hostname: hostname.into(),
            decoy_iterations: Self::DEFAULT_DECOY_ITERATIONS,
            state: State::Initial,
        }
    }

    /// Sets the iteration count announced for unknown SCRAM users; make it the one real users
    /// have, or the count gives unknown users away.
    #[must_use]
    pub fn with_decoy_iterations(mut self, iterations: u32) -> Self {
        self.decoy_iterations = iterations.max(1);
        self
    }

    /// The mechanism this server side runs.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Starts the exchange after `AUTH`. `initial_response` is `None` when the client sent
    /// none and `Some(b"")` for `=` (RFC 5034 §4).
    ///
    /// For the client-first mechanisms (PLAIN, SCRAM-SHA-256, OAUTHBEARER, XOAUTH2) `None`
    /// asks the client for its message with an empty challenge (RFC 4616 §2 for PLAIN; the
    /// two-step XOAUTH2 form), while an empty initial response (`=`) *is* the client's
    /// message, an empty one (RFC 5034 §4), which those mechanisms then refuse as malformed.
    /// LOGIN takes a non-empty initial response as the user name; CRAM-MD5 takes none.
    pub fn start(&mut self, initial_response: Option<&[u8]>) -> ServerStep {
        if !matches!(self.state, State::Initial) {
            return self.fail(SaslError::UnexpectedStep);
        }
        let initial = initial_response.filter(|r| !r.is_empty());
        match self.mechanism {
            Mechanism::Plain
            | Mechanism::ScramSha256
            | Mechanism::OAuthBearer
            | Mechanism::XOAuth2 => match initial_response {
                Some(message) => self.client_first(message),
                None => {
                    self.state = State::AwaitFirst;
                    ServerStep::Challenge(Vec::new())
                }
            },
            Mechanism::Login => match initial {
                Some(username) => self.login_username(username),
                None => {
                    self.state = State::LoginUsername;
                    ServerStep::Challenge(b"Username:".to_vec())
                }
            },
            Mechanism::CramMd5 => {
                if initial.is_some() {
                    return self.fail(SaslError::Malformed);
                }
                if self.nonce.is_empty() {
                    return self.fail(SaslError::InvalidNonce);
                }
                // RFC 2195 §2: a msg-id, "<" unique "@" hostname ">".
                let challenge = format!("<{}@{}>", self.nonce, self.hostname);
                let bytes = challenge.as_bytes().to_vec();
                self.state = State::CramMd5 { challenge };
                ServerStep::Challenge(bytes)
            }
        }
    }

    /// Feeds one client response (decoded from base64; an empty line is `b""`).
    pub fn step(&mut self, response: &[u8]) -> ServerStep {
        match core::mem::replace(&mut self.state, State::Done) {
            State::AwaitFirst => self.client_first(response),
            State::LoginUsername => self.login_username(response),
            State::LoginPassword { username } => {
                let Ok(password) = core::str::from_utf8(response) else {
                    return self.fail(SaslError::Malformed);
                };
                ServerStep::Verify(AuthRequest::Password {
                    username,
                    authzid: None,
                    password: Secret::new(password.as_bytes().to_vec()),
                    mechanism: Some(Mechanism::Login),
                })
            }
            State::CramMd5 { challenge } => self.cram_md5_response(challenge, response),
            State::ScramAwaitFinal(pending) => self.scram_client_final(*pending, response),
            State::ScramAwaitAck { username, authzid } => {
                // RFC 5034 §4: the client answers the server-final challenge with an empty line.
                if response.is_empty() {
                    ServerStep::Success { username, authzid }
                } else {
                    self.fail(SaslError::Malformed)
                }
            }
            State::BearerRejected => {
                // RFC 7628 §3.2.3: after the error challenge the client sends the dummy
                // response, and the server fails the exchange.
                if is_error_ack(self.mechanism, response) {
                    self.fail(SaslError::AuthenticationFailed)
                } else {
                    self.fail(SaslError::Malformed)
                }
            }
            State::Initial | State::ScramNeedKeys(_) | State::BearerVerifying | State::Done => {
                self.fail(SaslError::UnexpectedStep)
            }
        }
    }

    /// Answers [`ServerStep::NeedScramKeys`] with the user's stored keys.
    ///
    /// `None` means the user does not exist: the exchange goes on with decoy keys derived
    /// from the session nonce and fails at the proof with the same
    /// [`SaslError::AuthenticationFailed`] as a wrong password, so that the exchange does not
    /// reveal which users exist. (The decoy salt differs on each attempt while a real
    /// user's is stable; a server that cares passes [`ScramKeys::decoy`] instead of `None`.)
    pub fn provide_scram_keys(&mut self, keys: Option<ScramKeys>) -> ServerStep {
        let State::ScramNeedKeys(first) = core::mem::replace(&mut self.state, State::Done) else {
            return self.fail(SaslError::UnexpectedStep);
        };
        let (keys, decoy) = match keys {
            Some(keys) => (keys, false),
            None => (self.nonce_decoy(&first.username), true),
        };
        if keys.iterations == 0 {
            return self.fail(SaslError::InvalidIterations);
        }
        // RFC 5802 §5.1: r= is the client's nonce followed by ours; s= the salt; i= the count.
        let combined_nonce = format!("{}{}", first.client_nonce, self.nonce);
        let server_first =
            format!("r={combined_nonce},s={},i={}", base64(&keys.salt), keys.iterations);
        let auth_message_prefix = format!("{},{server_first},", first.first_bare);
        self.state = State::ScramAwaitFinal(Box::new(ScramPending {
            first: *first,
            combined_nonce,
            auth_message_prefix,
            keys,
            decoy,
        }));
        ServerStep::Challenge(server_first.into_bytes())
    }

    /// OAUTHBEARER / XOAUTH2: the embedder refused the token of [`AuthRequest::Bearer`]. Returns
    /// the error challenge (RFC 7628 §3.2.2, e.g.
    /// `{"status":"invalid_token","schemes":"bearer","scope":"mail"}`); the client's next
    /// response (0x01 for OAUTHBEARER, empty for XOAUTH2) gives
    /// `Failure(AuthenticationFailed)`.
    pub fn bearer_rejected(&mut self, error_json: &str) -> ServerStep {
        if !matches!(self.state, State::BearerVerifying) {
            return self.fail(SaslError::UnexpectedStep);
        }
        self.state = State::BearerRejected;
        ServerStep::Challenge(error_json.as_bytes().to_vec())
    }

    /// The client cancelled with `*` (RFC 5034 §4): ends the exchange with
    /// `Failure(Cancelled)`.
    pub fn cancel(&mut self) -> ServerStep {
        self.fail(SaslError::Cancelled)
    }

    fn fail(&mut self, error: SaslError) -> ServerStep {
        self.state = State::Done;
        ServerStep::Failure(error)
    }

    /// The client's first message of PLAIN, SCRAM-SHA-256, OAUTHBEARER or XOAUTH2.
    fn client_first(&mut self, message: &[u8]) -> ServerStep {
        match self.mechanism {
            Mechanism::Plain => match parse_plain(message) {
                Ok(verify) => self.finish(ServerStep::Verify(verify)),
                Err(e) => self.fail(e),
            },
            Mechanism::ScramSha256 => self.scram_client_first(message),
            Mechanism::OAuthBearer | Mechanism::XOAuth2 => {
                let parsed = if self.mechanism == Mechanism::OAuthBearer {
                    parse_oauthbearer(message)
                } else {
                    parse_xoauth2(message)
                };
                match parsed {
                    Ok(m) => {
                        self.state = State::BearerVerifying;
                        ServerStep::Verify(AuthRequest::Bearer {
                            mechanism: self.mechanism,
                            username: m.username,
                            token: Secret::new(m.token),
                        })
                    }
                    Err(e) => self.fail(e),
                }
            }
            Mechanism::Login | Mechanism::CramMd5 => self.fail(SaslError::UnexpectedStep),
        }
    }

    fn finish(&mut self, step: ServerStep) -> ServerStep {
        self.state = State::Done;
        step
    }

    fn login_username(&mut self, response: &[u8]) -> ServerStep {
        match core::str::from_utf8(response) {
            Ok(username) if !username.is_empty() && !username.contains('\0') => {
                self.state = State::LoginPassword { username: username.into() };
                ServerStep::Challenge(b"Password:".to_vec())
            }
            _ => self.fail(SaslError::Malformed),
        }
    }

    /// RFC 2195 §2: `username SP digest`, the digest 32 lowercase hex digits (the user name
    /// may itself contain spaces, so split at the last one).
    fn cram_md5_response(&mut self, challenge: String, response: &[u8]) -> ServerStep {
        let parsed = core::str::from_utf8(response).ok().and_then(|r| r.rsplit_once(' ')).filter(
            |(user, digest)| {
                !user.is_empty()
                    && digest.len() == 32
                    && digest.bytes().all(|b| b.is_ascii_hexdigit())
            },
        );
        match parsed {
            Some((username, digest)) => self.finish(ServerStep::Verify(AuthRequest::CramMd5 {
                username: username.into(),
                challenge,
                digest: Secret::new(digest.to_ascii_lowercase()),
            })),
            None => self.fail(SaslError::Malformed),
        }
    }

    fn scram_client_first(&mut self, message: &[u8]) -> ServerStep {
        if self.nonce.is_empty() {
            return self.fail(SaslError::InvalidNonce);
        }
        let Ok(text) = core::str::from_utf8(message) else {
            return self.fail(SaslError::Malformed);
        };
        match parse_client_first(text) {
            Ok(cf) => {
                let first = ScramFirst {
                    gs2_header: cf.gs2_header.into(),
                    first_bare: cf.bare.into(),
                    client_nonce: cf.nonce.into(),
                    username: cf.username.clone(),
                    authzid: cf.authzid.clone(),
                };
                self.state = State::ScramNeedKeys(Box::new(first));
                ServerStep::NeedScramKeys { username: cf.username, authzid: cf.authzid }
            }
            Err(e) => self.fail(e),
        }
    }

    /// RFC 5802 §3 and §5.1: check c=, r= and the proof, then send server-final.
    fn scram_client_final(&mut self, pending: ScramPending, response: &[u8]) -> ServerStep {
        let Ok(text) = core::str::from_utf8(response) else {
            return self.fail(SaslError::Malformed);
        };
        let cf = match parse_client_final(text) {
            Ok(cf) => cf,
            Err(e) => return self.fail(e),
        };
        // c=: base64 of the GS2 header the client sent first (no channel binding data).
        if cf.channel_binding != base64(pending.first.gs2_header.as_bytes()) {
            return self.fail(SaslError::ChannelBinding);
        }
        if cf.nonce != pending.combined_nonce {
            return self.fail(SaslError::NonceMismatch);
        }
        let Ok(proof) = <[u8; 32]>::try_from(cf.proof.as_slice()) else {
            return self.fail(SaslError::Malformed);
        };
        let auth_message = format!("{}{}", pending.auth_message_prefix, cf.without_proof);
        // ClientKey := ClientProof XOR ClientSignature; the proof holds iff H(ClientKey)
        // equals StoredKey.
        let signature = client_signature(&pending.keys.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &signature);
        let proof_ok = constant_time_eq(&sha256(&client_key), &pending.keys.stored_key);
        if !proof_ok || pending.decoy {
            return self.fail(SaslError::AuthenticationFailed);
        }
        let verifier = server_signature(&pending.keys.server_key, auth_message.as_bytes());
        // RFC 5034 §4: additional data with success goes in a final challenge.
        self.state = State::ScramAwaitAck {
            username: pending.first.username,
            authzid: pending.first.authzid,
        };
        ServerStep::Challenge(format!("v={}", base64(&verifier)).into_bytes())
    }

    /// Decoy keys for an unknown user, from the session nonce (see `provide_scram_keys`).
    fn nonce_decoy(&self, username: &str) -> ScramKeys {
        let key = hmac_sha256(self.nonce.as_bytes(), &[b"pop3-proto unknown user"]);
        ScramKeys::decoy(&key, username, self.decoy_iterations)
    }
}

/// RFC 4616 §2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`, every part UTF-8 without
/// NUL, authcid and passwd non-empty.
fn parse_plain(message: &[u8]) -> Result<AuthRequest, SaslError> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let text = |part: &[u8]| core::str::from_utf8(part).map(String::from);
    let (Ok(authzid), Ok(username), Ok(password)) = (text(authzid), text(username), text(password))
    else {
        return Err(SaslError::Malformed);
    };
    if username.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(AuthRequest::Password {
        username,
        authzid: Some(authzid).filter(|a| !a.is_empty()),
        password: Secret::new(password.into_bytes()),
        mechanism: Some(Mechanism::Plain),
    })
}
