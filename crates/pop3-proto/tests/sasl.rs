//! SASL mechanisms: known answers from the RFCs, both directions, and every mechanism's client
//! against its server in memory.

#![forbid(unsafe_code)]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pop3_proto::sasl::{
    apop_digest, constant_time_eq, cram_md5_digest, AuthRequest, Mechanism, SaslClient, SaslError,
    SaslServer, ScramKeys, ServerStep,
};
use pop3_proto::Secret;
use proptest::prelude::*;

// ---------------------------------------------------------------- in-memory driver

/// How an exchange ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The server side ended it (Verify, Success or Failure).
    Server(ServerStep),
    /// The client refused a challenge (it would cancel with `*`).
    Client(SaslError),
}

/// Runs `client` against `server` until one of them is done; `keys` answers SCRAM lookups.
fn drive(
    client: &mut SaslClient,
    server: &mut SaslServer,
    keys: impl Fn(&str) -> Option<ScramKeys>,
) -> Outcome {
    let initial = client.initial_response();
    let mut step = server.start(initial.as_ref().map(|r| r.expose().as_slice()));
    for _ in 0..10 {
        step = match step {
            ServerStep::Challenge(challenge) => match client.step(&challenge) {
                Ok(response) => server.step(response.expose()),
                Err(e) => return Outcome::Client(e),
            },
            ServerStep::NeedScramKeys { username, .. } => {
                server.provide_scram_keys(keys(&username))
            }
            done => return Outcome::Server(done),
        };
    }
    panic!("exchange did not end: {step:?}");
}

fn server(mechanism: Mechanism) -> SaslServer {
    SaslServer::new(mechanism, "4711.1234567890abcdef", "pop.example.org")
}

fn password_verify(
    mechanism: Mechanism,
    authzid: Option<&str>,
    username: &str,
    password: &str,
) -> Outcome {
    Outcome::Server(ServerStep::Verify(AuthRequest::Password {
        username: username.into(),
        authzid: authzid.map(String::from),
        password: Secret::new(password.into()),
        mechanism: Some(mechanism),
    }))
}

fn bearer_verify(mechanism: Mechanism, username: &str, token: &str) -> Outcome {
    Outcome::Server(ServerStep::Verify(AuthRequest::Bearer {
        mechanism,
        username: username.into(),
        token: Secret::new(token.into()),
    }))
}

fn scram_keys_for(
    user: &'static str,
    password: &'static str,
) -> impl Fn(&str) -> Option<ScramKeys> {
    let keys = ScramKeys::from_password(password.as_bytes(), b"0123456789abcdef", 4096);
    move |name| (name == user).then(|| keys.clone())
}

fn failure(e: SaslError) -> Outcome {
    Outcome::Server(ServerStep::Failure(e))
}

// ---------------------------------------------------------------- APOP, RFC 1939 §7

#[test]
fn apop_rfc1939_known_answer() {
    assert_eq!(
        apop_digest("<1896.697170952@dbc.mtview.ca.us>", b"tanstaaf"),
        "c4c9334bac560ecc979e58001b3e22fb"
    );
}

// ---------------------------------------------------------------- CRAM-MD5, RFC 2195 §2

const CRAM_CHALLENGE: &str = "<1896.697170952@postoffice.reston.mci.net>";

#[test]
fn cram_md5_rfc2195_digest() {
    assert_eq!(
        cram_md5_digest(b"tanstaaftanstaaf", CRAM_CHALLENGE.as_bytes()),
        "b913a602c7eda7a495b4e6e7334d3890"
    );
}

#[test]
fn cram_md5_rfc2195_client() {
    let mut client = SaslClient::cram_md5("tim", "tanstaaftanstaaf");
    assert!(client.initial_response().is_none());
    assert!(!client.server_verified());
    let response = client.step(CRAM_CHALLENGE.as_bytes()).unwrap();
    assert_eq!(response.expose(), b"tim b913a602c7eda7a495b4e6e7334d3890");
    assert!(client.server_verified());
    assert_eq!(client.step(b"more").err(), Some(SaslError::UnexpectedStep));
}

#[test]
fn cram_md5_rfc2195_server() {
    // RFC 2195's challenge is "<1896.697170952@postoffice.reston.mci.net>".
    let mut server =
        SaslServer::new(Mechanism::CramMd5, "1896.697170952", "postoffice.reston.mci.net");
    assert_eq!(server.start(None), ServerStep::Challenge(CRAM_CHALLENGE.as_bytes().to_vec()));
    let ServerStep::Verify(verify) = server.step(b"tim b913a602c7eda7a495b4e6e7334d3890") else {
        panic!("expected Verify");
    };
    assert_eq!(verify.username(), "tim");
    assert!(verify.cram_md5_matches(b"tanstaaftanstaaf"));
    assert!(!verify.cram_md5_matches(b"tanstaaf"));
    assert!(!verify.password_matches(b"tanstaaftanstaaf"));
}

#[test]
fn cram_md5_client_against_server() {
    let mut client = SaslClient::cram_md5("tim", "secret");
    let mut srv = server(Mechanism::CramMd5);
    let Outcome::Server(ServerStep::Verify(verify)) = drive(&mut client, &mut srv, |_| None) else {
        panic!("expected Verify");
    };
    assert!(verify.cram_md5_matches(b"secret"));

    let mut client = SaslClient::cram_md5("tim", "wrong");
    let mut srv = server(Mechanism::CramMd5);
    let Outcome::Server(ServerStep::Verify(verify)) = drive(&mut client, &mut srv, |_| None) else {
        panic!("expected Verify");
    };
    assert!(!verify.cram_md5_matches(b"secret"));
}

#[test]
fn cram_md5_server_rejects_malformed_responses() {
    for bad in [
        &b""[..],
        b"tim",
        b" b913a602c7eda7a495b4e6e7334d3890",
        b"tim b913a602c7eda7a495b4e6e7334d389",
        b"tim b913a602c7eda7a495b4e6e7334d3890z",
        b"tim zz13a602c7eda7a495b4e6e7334d3890",
        b"\xfftim b913a602c7eda7a495b4e6e7334d3890",
    ] {
        let mut srv = server(Mechanism::CramMd5);
        assert!(matches!(srv.start(None), ServerStep::Challenge(_)));
        assert_eq!(srv.step(bad), ServerStep::Failure(SaslError::Malformed), "{bad:?}");
    }
    // CRAM-MD5 has no initial response.
    assert_eq!(
        server(Mechanism::CramMd5).start(Some(b"tim")),
        ServerStep::Failure(SaslError::Malformed)
    );
    // An upper-case digest is accepted and normalised.
    let mut srv =
        SaslServer::new(Mechanism::CramMd5, "1896.697170952", "postoffice.reston.mci.net");
    srv.start(None);
    let ServerStep::Verify(verify) = srv.step(b"tim B913A602C7EDA7A495B4E6E7334D3890") else {
        panic!("expected Verify");
    };
    assert!(verify.cram_md5_matches(b"tanstaaftanstaaf"));
}

// ---------------------------------------------------------------- SCRAM-SHA-256, RFC 7677 §3

const SCRAM_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SCRAM_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SCRAM_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SCRAM_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const SCRAM_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SCRAM_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc7677_keys() -> ScramKeys {
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    ScramKeys::from_password(b"pencil", &salt, 4096)
}

fn rfc7677_client() -> SaslClient {
    SaslClient::scram_sha256("user", "pencil", SCRAM_CLIENT_NONCE)
}

#[test]
fn scram_rfc7677_client() {
    let mut client = rfc7677_client();
    assert_eq!(client.mechanism(), Mechanism::ScramSha256);
    let first = client.initial_response().unwrap();
    assert_eq!(first.expose(), SCRAM_CLIENT_FIRST.as_bytes());
    let last = client.step(SCRAM_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(std::str::from_utf8(last.expose()).unwrap(), SCRAM_CLIENT_FINAL);
    assert!(!client.server_verified());
    let ack = client.step(SCRAM_SERVER_FINAL.as_bytes()).unwrap();
    assert!(ack.expose().is_empty());
    assert!(client.server_verified());
    assert_eq!(client.step(b"").err(), Some(SaslError::UnexpectedStep));
}

#[test]
fn scram_rfc7677_server() {
    let mut srv = SaslServer::new(Mechanism::ScramSha256, SCRAM_SERVER_NONCE, "pop.example.org");
    assert_eq!(
        srv.start(Some(SCRAM_CLIENT_FIRST.as_bytes())),
        ServerStep::NeedScramKeys { username: "user".into(), authzid: None }
    );
    assert_eq!(
        srv.provide_scram_keys(Some(rfc7677_keys())),
        ServerStep::Challenge(SCRAM_SERVER_FIRST.as_bytes().to_vec())
    );
    assert_eq!(
        srv.step(SCRAM_CLIENT_FINAL.as_bytes()),
        ServerStep::Challenge(SCRAM_SERVER_FINAL.as_bytes().to_vec())
    );
    assert_eq!(srv.step(b""), ServerStep::Success { username: "user".into(), authzid: None });
    assert_eq!(srv.step(b""), ServerStep::Failure(SaslError::UnexpectedStep));
}

#[test]
fn scram_rfc7677_client_against_server() {
    let mut client = rfc7677_client();
    let mut srv = SaslServer::new(Mechanism::ScramSha256, SCRAM_SERVER_NONCE, "pop.example.org");
    assert_eq!(
        drive(&mut client, &mut srv, |_| Some(rfc7677_keys())),
        Outcome::Server(ServerStep::Success { username: "user".into(), authzid: None })
    );
    assert!(client.server_verified());
}

#[test]
fn scram_server_without_initial_response_sends_an_empty_challenge() {
    let mut srv = SaslServer::new(Mechanism::ScramSha256, SCRAM_SERVER_NONCE, "h");
    assert_eq!(srv.start(None), ServerStep::Challenge(Vec::new()));
    assert!(matches!(srv.step(SCRAM_CLIENT_FIRST.as_bytes()), ServerStep::NeedScramKeys { .. }));
    // An empty initial response ("=") is an empty client-first message (RFC 5034 §4).
    let mut srv = SaslServer::new(Mechanism::ScramSha256, SCRAM_SERVER_NONCE, "h");
    assert_eq!(srv.start(Some(b"")), ServerStep::Failure(SaslError::Malformed));
    // And the client, not having sent an initial response, answers that empty challenge.
    let mut client = rfc7677_client();
    assert_eq!(client.step(b"").unwrap().expose(), SCRAM_CLIENT_FIRST.as_bytes());
}

#[test]
fn scram_wrong_password_fails_at_the_proof() {
    let mut client = SaslClient::scram_sha256("user", "pencil!", "clientnonce0123456789");
    let mut srv = server(Mechanism::ScramSha256);
    assert_eq!(
        drive(&mut client, &mut srv, scram_keys_for("user", "pencil")),
        failure(SaslError::AuthenticationFailed)
    );
    assert!(!client.server_verified());
}

#[test]
fn scram_unknown_user_fails_like_a_wrong_password() {
    // The server-first for an unknown user has the same shape as for a real one.
    let mut real = server(Mechanism::ScramSha256);
    real.start(Some(b"n,,n=user,r=clientnonce"));
    let ServerStep::Challenge(real_first) =
        real.provide_scram_keys(scram_keys_for("user", "pencil")("user"))
    else {
        panic!("expected server-first");
    };
    let mut fake = server(Mechanism::ScramSha256);
    fake.start(Some(b"n,,n=nobody,r=clientnonce"));
    let ServerStep::Challenge(fake_first) = fake.provide_scram_keys(None) else {
        panic!("expected server-first for an unknown user too");
    };
    let shape = |m: &[u8]| {
        let text = std::str::from_utf8(m).unwrap().to_owned();
        let parts: Vec<String> = text.split(',').map(|p| p[..2].to_owned()).collect();
        let salt = BASE64.decode(&text.split(',').nth(1).unwrap()[2..]).unwrap();
        (parts, salt.len(), text.rsplit(',').next().unwrap().to_owned())
    };
    assert_eq!(shape(&real_first), shape(&fake_first));

    // Both fail with the same error, at the same step.
    let mut client = SaslClient::scram_sha256("nobody", "pencil", "clientnonce0123456789");
    let mut srv = server(Mechanism::ScramSha256);
    assert_eq!(
        drive(&mut client, &mut srv, scram_keys_for("user", "pencil")),
        failure(SaslError::AuthenticationFailed)
    );
    assert!(!client.server_verified());
}

#[test]
fn scram_decoy_keys_are_stable_per_user_and_never_verify() {
    let a = ScramKeys::decoy(b"server secret", "nobody", 4096);
    assert_eq!(a, ScramKeys::decoy(b"server secret", "nobody", 4096));
    assert_ne!(a.salt, ScramKeys::decoy(b"server secret", "other", 4096).salt);
    assert_ne!(a.salt, ScramKeys::decoy(b"other secret", "nobody", 4096).salt);
    let mut client = SaslClient::scram_sha256("nobody", "", "clientnonce0123456789");
    let mut srv = server(Mechanism::ScramSha256);
    assert_eq!(
        drive(&mut client, &mut srv, |_| Some(a.clone())),
        failure(SaslError::AuthenticationFailed)
    );
}

#[test]
fn scram_authzid_and_escaped_names_reach_the_server() {
    let mut srv = server(Mechanism::ScramSha256);
    assert_eq!(
        srv.start(Some(b"n,a=ad=2Cmin,n=us=3Der,r=clientnonce")),
        ServerStep::NeedScramKeys { username: "us=er".into(), authzid: Some("ad,min".into()) }
    );
    let mut client = SaslClient::scram_sha256("a,b=c", "pw", "clientnonce0123456789");
    let mut srv = server(Mechanism::ScramSha256);
    assert_eq!(
        drive(&mut client, &mut srv, scram_keys_for("a,b=c", "pw")),
        Outcome::Server(ServerStep::Success { username: "a,b=c".into(), authzid: None })
    );
}

#[test]
fn scram_client_rejects_a_forged_server_signature() {
    let mut client = rfc7677_client();
    client.initial_response();
    client.step(SCRAM_SERVER_FIRST.as_bytes()).unwrap();
    let forged = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    assert_eq!(client.step(forged.as_bytes()).err(), Some(SaslError::ServerProofMismatch));
    assert!(!client.server_verified());
    // The exchange is over after a failure.
    assert_eq!(client.step(SCRAM_SERVER_FINAL.as_bytes()).err(), Some(SaslError::UnexpectedStep));
}

#[test]
fn scram_client_reports_a_server_error() {
    let mut client = rfc7677_client();
    client.initial_response();
    client.step(SCRAM_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(client.step(b"e=invalid-proof").err(), Some(SaslError::ServerError));
    assert_eq!(client.error_details(), Some("invalid-proof"));
    assert!(!client.server_verified());
}

#[test]
fn scram_client_rejects_bad_server_first_messages() {
    let cases: &[(&str, SaslError)] = &[
        // r= must start with the client's nonce (RFC 5802 §5.1).
        ("r=XOprNGfwEbeRWgbNEkqO%hv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", SaslError::NonceMismatch),
        ("r=rOprNGfwEbeRWgbNEkqO%hv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", SaslError::InvalidIterations),
        ("r=rOprNGfwEbeRWgbNEkqO%hv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x", SaslError::InvalidIterations),
        (
            "m=ext,r=rOprNGfwEbeRWgbNEkqO%hv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
            SaslError::UnsupportedExtension,
        ),
        ("r=rOprNGfwEbeRWgbNEkqO%hv,s=not base64,i=4096", SaslError::Malformed),
        ("r=rOprNGfwEbeRWgbNEkqO%hv,i=4096", SaslError::Malformed),
        ("", SaslError::Malformed),
        ("\u{ff}", SaslError::Malformed),
    ];
    for (message, expected) in cases {
        let mut client = rfc7677_client();
        client.initial_response();
        assert_eq!(client.step(message.as_bytes()).err(), Some(*expected), "{message}");
    }
    let mut client = rfc7677_client();
    client.initial_response();
    assert_eq!(client.step(b"\xff").err(), Some(SaslError::Malformed));
}

#[test]
fn scram_client_bounds_the_iteration_count() {
    let mut client = rfc7677_client().with_max_scram_iterations(4095);
    client.initial_response();
    assert_eq!(
        client.step(SCRAM_SERVER_FIRST.as_bytes()).err(),
        Some(SaslError::InvalidIterations)
    );
}

#[test]
fn scram_server_rejects_bad_client_messages() {
    let first_cases: &[(&[u8], SaslError)] = &[
        (b"p=tls-server-end-point,,n=user,r=abc", SaslError::ChannelBinding),
        (b"n,,m=x,n=user,r=abc", SaslError::UnsupportedExtension),
        (b"n,,n=user", SaslError::Malformed),
        (b"n,,n=,r=abc", SaslError::Malformed),
        (b"n,,n=us=er,r=abc", SaslError::Malformed),
        (b"n,,n=user,r=", SaslError::Malformed),
        (b"n,x=y,n=user,r=abc", SaslError::Malformed),
        (b"n,,n=user,r=abc\x01", SaslError::Malformed),
        (b"\xff", SaslError::Malformed),
    ];
    for (message, expected) in first_cases {
        let mut srv = server(Mechanism::ScramSha256);
        assert_eq!(srv.start(Some(message)), ServerStep::Failure(*expected), "{message:?}");
    }

    // Client-final problems, against the RFC 7677 exchange.
    let final_cases: &[(&str, SaslError)] = &[
        // c= must be base64("n,,").
        ("c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SaslError::ChannelBinding),
        ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SaslError::NonceMismatch),
        ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SaslError::AuthenticationFailed),
        ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzb", SaslError::Malformed),
        ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", SaslError::Malformed),
        ("", SaslError::Malformed),
    ];
    for (message, expected) in final_cases {
        let mut srv = SaslServer::new(Mechanism::ScramSha256, SCRAM_SERVER_NONCE, "h");
        srv.start(Some(SCRAM_CLIENT_FIRST.as_bytes()));
        srv.provide_scram_keys(Some(rfc7677_keys()));
        assert_eq!(srv.step(message.as_bytes()), ServerStep::Failure(*expected), "{message}");
    }

    // The acknowledgement of server-final must be empty.
    let mut srv = SaslServer::new(Mechanism::ScramSha256, SCRAM_SERVER_NONCE, "h");
    srv.start(Some(SCRAM_CLIENT_FIRST.as_bytes()));
    srv.provide_scram_keys(Some(rfc7677_keys()));
    srv.step(SCRAM_CLIENT_FINAL.as_bytes());
    assert_eq!(srv.step(b"x"), ServerStep::Failure(SaslError::Malformed));
}

#[test]
fn scram_server_needs_a_usable_nonce() {
    let mut srv = SaslServer::new(Mechanism::ScramSha256, ",,, \u{e9}", "h");
    assert_eq!(
        srv.start(Some(SCRAM_CLIENT_FIRST.as_bytes())),
        ServerStep::Failure(SaslError::InvalidNonce)
    );
}

#[test]
fn scram_calls_out_of_order_fail() {
    let mut srv = server(Mechanism::ScramSha256);
    assert_eq!(srv.provide_scram_keys(None), ServerStep::Failure(SaslError::UnexpectedStep));
    let mut srv = server(Mechanism::ScramSha256);
    srv.start(Some(SCRAM_CLIENT_FIRST.as_bytes()));
    // A response while the server waits for the keys.
    assert_eq!(srv.step(b"x"), ServerStep::Failure(SaslError::UnexpectedStep));
}

// ---------------------------------------------------------------- OAUTHBEARER, RFC 7628 §4

const OAUTH_TOKEN: &str = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";
const OAUTH_INITIAL: &[u8] = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
/// RFC 7628 §4.3's error challenge, base64 as on the wire.
const OAUTH_ERROR_B64: &str = "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=";

fn rfc7628_client() -> SaslClient {
    SaslClient::oauthbearer("user@example.com", OAUTH_TOKEN, Some("server.example.com"), Some(143))
}

#[test]
fn oauthbearer_rfc7628_client() {
    let mut client = rfc7628_client();
    assert_eq!(client.initial_response().unwrap().expose(), OAUTH_INITIAL);
    assert!(client.server_verified());
    assert_eq!(client.error_details(), None);
}

#[test]
fn oauthbearer_rfc7628_server() {
    let mut srv = server(Mechanism::OAuthBearer);
    assert_eq!(
        srv.start(Some(OAUTH_INITIAL)),
        bearer_verify(Mechanism::OAuthBearer, "user@example.com", OAUTH_TOKEN).into_step()
    );
}

#[test]
fn oauthbearer_rfc7628_error_flow() {
    let error_json = String::from_utf8(BASE64.decode(OAUTH_ERROR_B64).unwrap()).unwrap();
    assert!(error_json.starts_with(r#"{"status":"invalid_token""#));

    // Client against the RFC's bytes: the error is recorded, the answer is 0x01 (§3.2.3).
    let mut client = rfc7628_client();
    client.initial_response();
    let ack = client.step(error_json.as_bytes()).unwrap();
    assert_eq!(ack.expose(), b"\x01");
    assert_eq!(client.error_details(), Some(error_json.as_str()));
    assert_eq!(client.step(b"").err(), Some(SaslError::UnexpectedStep));

    // Server: a refused token gives the error challenge, then Failure on 0x01.
    let mut srv = server(Mechanism::OAuthBearer);
    assert!(matches!(srv.start(Some(OAUTH_INITIAL)), ServerStep::Verify(_)));
    assert_eq!(
        srv.bearer_rejected(&error_json),
        ServerStep::Challenge(error_json.as_bytes().to_vec())
    );
    assert_eq!(srv.step(b"\x01"), ServerStep::Failure(SaslError::AuthenticationFailed));

    // And one against the other.
    let mut client = rfc7628_client();
    let mut srv = server(Mechanism::OAuthBearer);
    assert!(matches!(
        drive(&mut client, &mut srv, |_| None),
        Outcome::Server(ServerStep::Verify(_))
    ));
    let ServerStep::Challenge(challenge) = srv.bearer_rejected(&error_json) else {
        panic!("expected the error challenge");
    };
    let ack = client.step(&challenge).unwrap();
    assert_eq!(srv.step(ack.expose()), ServerStep::Failure(SaslError::AuthenticationFailed));
    assert_eq!(client.error_details(), Some(error_json.as_str()));
}

#[test]
fn oauthbearer_client_against_server() {
    let mut client = SaslClient::oauthbearer("", "tok", None, None);
    let mut srv = server(Mechanism::OAuthBearer);
    assert_eq!(
        drive(&mut client, &mut srv, |_| None),
        bearer_verify(Mechanism::OAuthBearer, "", "tok")
    );
    // Without an initial response: empty challenge, then the message.
    let mut client = rfc7628_client();
    let mut srv = server(Mechanism::OAuthBearer);
    assert_eq!(srv.start(None), ServerStep::Challenge(Vec::new()));
    let message = client.step(b"").unwrap();
    assert_eq!(message.expose(), OAUTH_INITIAL);
    assert!(matches!(srv.step(message.expose()), ServerStep::Verify(_)));
}

#[test]
fn oauthbearer_server_rejects_malformed_input_and_wrong_acks() {
    let mut srv = server(Mechanism::OAuthBearer);
    assert_eq!(
        srv.start(Some(b"n,a=user,auth=Bearer tok\x01\x01")),
        ServerStep::Failure(SaslError::Malformed)
    );
    let mut srv = server(Mechanism::OAuthBearer);
    srv.start(Some(OAUTH_INITIAL));
    srv.bearer_rejected("{}");
    assert_eq!(srv.step(b"x"), ServerStep::Failure(SaslError::Malformed));
    // bearer_rejected only after a Verify::Bearer.
    let mut srv = server(Mechanism::Plain);
    assert_eq!(srv.bearer_rejected("{}"), ServerStep::Failure(SaslError::UnexpectedStep));
}

// ---------------------------------------------------------------- XOAUTH2

const XOAUTH2_INITIAL: &[u8] = b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01";

#[test]
fn xoauth2_initial_response_form() {
    let token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
    let mut client = SaslClient::xoauth2("someuser@example.com", token, true);
    assert_eq!(client.mechanism(), Mechanism::XOAuth2);
    assert_eq!(client.initial_response().unwrap().expose(), XOAUTH2_INITIAL);
    let mut srv = server(Mechanism::XOAuth2);
    assert_eq!(
        srv.start(Some(XOAUTH2_INITIAL)),
        bearer_verify(Mechanism::XOAuth2, "someuser@example.com", token).into_step()
    );
}

#[test]
fn xoauth2_two_step_form() {
    let mut client = SaslClient::xoauth2("someuser@example.com", "tok", false);
    assert!(client.initial_response().is_none());
    let mut srv = server(Mechanism::XOAuth2);
    assert_eq!(srv.start(None), ServerStep::Challenge(Vec::new()));
    let message = client.step(b"").unwrap();
    assert_eq!(message.expose(), b"user=someuser@example.com\x01auth=Bearer tok\x01\x01");
    assert_eq!(
        srv.step(message.expose()),
        bearer_verify(Mechanism::XOAuth2, "someuser@example.com", "tok").into_step()
    );
}

#[test]
fn xoauth2_error_flow() {
    let error_json = r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#;
    for initial in [true, false] {
        let mut client = SaslClient::xoauth2("u@example.com", "expired", initial);
        let mut srv = server(Mechanism::XOAuth2);
        assert!(matches!(
            drive(&mut client, &mut srv, |_| None),
            Outcome::Server(ServerStep::Verify(_))
        ));
        let ServerStep::Challenge(challenge) = srv.bearer_rejected(error_json) else {
            panic!("expected the error challenge");
        };
        let ack = client.step(&challenge).unwrap();
        assert!(ack.expose().is_empty(), "XOAUTH2 answers an error with an empty response");
        assert_eq!(client.error_details(), Some(error_json));
        assert_eq!(srv.step(ack.expose()), ServerStep::Failure(SaslError::AuthenticationFailed));
    }
}

#[test]
fn xoauth2_server_rejects_malformed_input() {
    for bad in [&b"user=u\x01auth=Bearer t\x01"[..], b"auth=Bearer t\x01\x01", b"\xff", b"x"] {
        let mut srv = server(Mechanism::XOAuth2);
        assert_eq!(srv.start(Some(bad)), ServerStep::Failure(SaslError::Malformed), "{bad:?}");
    }
}

// ---------------------------------------------------------------- PLAIN, RFC 4616

#[test]
fn plain_client_against_server() {
    let mut client = SaslClient::plain(Some("admin"), "tim", "tanstaaf");
    assert_eq!(client.mechanism(), Mechanism::Plain);
    let mut srv = server(Mechanism::Plain);
    assert_eq!(
        drive(&mut client, &mut srv, |_| None),
        password_verify(Mechanism::Plain, Some("admin"), "tim", "tanstaaf")
    );
    assert!(client.server_verified());

    let mut client = SaslClient::plain(None, "tim", "wrong");
    let mut srv = server(Mechanism::Plain);
    let Outcome::Server(ServerStep::Verify(verify)) = drive(&mut client, &mut srv, |_| None) else {
        panic!("expected Verify");
    };
    assert_eq!(verify, password_verify(Mechanism::Plain, None, "tim", "wrong").into_verify());
    assert!(!verify.password_matches(b"tanstaaf"));
    assert!(verify.password_matches(b"wrong"));
}

#[test]
fn plain_rfc4616_message_layout() {
    let mut client = SaslClient::plain(None, "tim", "tanstaaf");
    assert_eq!(client.initial_response().unwrap().expose(), b"\0tim\0tanstaaf");
    let mut client = SaslClient::plain(Some("Ursel"), "Kurt", "xipj3plmq");
    assert_eq!(client.initial_response().unwrap().expose(), b"Ursel\0Kurt\0xipj3plmq");
    // Later calls give nothing more.
    assert!(client.initial_response().is_none());
    assert_eq!(client.step(b"").err(), Some(SaslError::UnexpectedStep));
}

#[test]
fn plain_without_initial_response_asks_for_the_message() {
    let mut srv = server(Mechanism::Plain);
    assert_eq!(srv.start(None), ServerStep::Challenge(Vec::new()));
    assert_eq!(
        srv.step(b"\0tim\0tanstaaf"),
        password_verify(Mechanism::Plain, None, "tim", "tanstaaf").into_step()
    );
    // RFC 5034 §4: "=" is an empty initial response, i.e. an empty PLAIN message: malformed.
    let mut srv = server(Mechanism::Plain);
    assert_eq!(srv.start(Some(b"")), ServerStep::Failure(SaslError::Malformed));
    // The client answers the empty challenge with its message when it sent no initial response.
    let mut client = SaslClient::plain(None, "tim", "tanstaaf");
    assert_eq!(client.step(b"").unwrap().expose(), b"\0tim\0tanstaaf");
}

#[test]
fn plain_server_rejects_malformed_messages() {
    for bad in [
        &b"tim\0tanstaaf"[..],
        b"\0tim\0tan\0staaf",
        b"\0\0tanstaaf",
        b"\0tim\0",
        b"\0t\xffim\0tanstaaf",
        b"x",
    ] {
        let mut srv = server(Mechanism::Plain);
        assert_eq!(srv.start(Some(bad)), ServerStep::Failure(SaslError::Malformed), "{bad:?}");
        assert_eq!(srv.step(b"\0tim\0tanstaaf"), ServerStep::Failure(SaslError::UnexpectedStep));
    }
    // A second empty message after the empty challenge is malformed, not another challenge.
    let mut srv = server(Mechanism::Plain);
    srv.start(None);
    assert_eq!(srv.step(b""), ServerStep::Failure(SaslError::Malformed));
}

// ---------------------------------------------------------------- LOGIN

#[test]
fn login_client_against_server() {
    let mut client = SaslClient::login("tim", "tanstaaf");
    assert!(client.initial_response().is_none());
    let mut srv = server(Mechanism::Login);
    assert_eq!(
        drive(&mut client, &mut srv, |_| None),
        password_verify(Mechanism::Login, None, "tim", "tanstaaf")
    );
    assert!(client.server_verified());

    let mut client = SaslClient::login("tim", "wrong");
    let mut srv = server(Mechanism::Login);
    assert_eq!(
        drive(&mut client, &mut srv, |_| None),
        password_verify(Mechanism::Login, None, "tim", "wrong")
    );
}

#[test]
fn login_server_prompts_and_initial_username() {
    let mut srv = server(Mechanism::Login);
    assert_eq!(srv.start(None), ServerStep::Challenge(b"Username:".to_vec()));
    assert_eq!(srv.step(b"tim"), ServerStep::Challenge(b"Password:".to_vec()));
    assert_eq!(
        srv.step(b"tanstaaf"),
        password_verify(Mechanism::Login, None, "tim", "tanstaaf").into_step()
    );

    let mut srv = server(Mechanism::Login);
    assert_eq!(srv.start(Some(b"tim")), ServerStep::Challenge(b"Password:".to_vec()));
    assert_eq!(
        srv.step(b"tanstaaf"),
        password_verify(Mechanism::Login, None, "tim", "tanstaaf").into_step()
    );
}

#[test]
fn login_client_follows_the_prompts() {
    // Case-insensitive prompt matching, in whatever order.
    let mut client = SaslClient::login("tim", "tanstaaf");
    assert_eq!(client.step(b"USER NAME").unwrap().expose(), b"tim");
    assert_eq!(client.step(b"password").unwrap().expose(), b"tanstaaf");
    assert_eq!(client.step(b"Password:").err(), Some(SaslError::UnexpectedStep));
    // Unrecognised prompts: username first, then password.
    let mut client = SaslClient::login("tim", "tanstaaf");
    assert_eq!(client.step(b"?").unwrap().expose(), b"tim");
    assert_eq!(client.step(b"?").unwrap().expose(), b"tanstaaf");
}

#[test]
fn login_server_rejects_malformed_input() {
    let mut srv = server(Mechanism::Login);
    srv.start(None);
    assert_eq!(srv.step(b""), ServerStep::Failure(SaslError::Malformed));
    let mut srv = server(Mechanism::Login);
    srv.start(None);
    srv.step(b"tim");
    assert_eq!(srv.step(b"\xff"), ServerStep::Failure(SaslError::Malformed));
}

// ---------------------------------------------------------------- common behaviour

#[test]
fn cancel_ends_any_exchange() {
    for mechanism in Mechanism::ALL {
        let mut srv = server(mechanism);
        srv.start(None);
        assert_eq!(srv.cancel(), ServerStep::Failure(SaslError::Cancelled), "{mechanism}");
        assert_eq!(srv.step(b""), ServerStep::Failure(SaslError::UnexpectedStep), "{mechanism}");
    }
}

#[test]
fn start_twice_fails() {
    let mut srv = server(Mechanism::Login);
    srv.start(None);
    assert_eq!(srv.start(None), ServerStep::Failure(SaslError::UnexpectedStep));
}

#[test]
fn debug_output_never_shows_credentials() {
    let mut client = SaslClient::scram_sha256("user", "pencil-secret", "clientnonce0123456789");
    let clients = [
        SaslClient::plain(None, "user", "pencil-secret"),
        SaslClient::login("user", "pencil-secret"),
        SaslClient::cram_md5("user", "pencil-secret"),
        SaslClient::oauthbearer("user", "pencil-secret", None, None),
        SaslClient::xoauth2("user", "pencil-secret", true),
    ];
    for c in &clients {
        assert!(!format!("{c:?}").contains("pencil-secret"), "{c:?}");
    }
    client.initial_response();
    assert!(!format!("{client:?}").contains("pencil-secret"));
    let mut srv = server(Mechanism::Plain);
    let step = srv.start(Some(b"\0user\0pencil-secret"));
    assert!(!format!("{step:?}").contains("pencil-secret"), "{step:?}");
    let keys = ScramKeys::from_password(b"pencil-secret", b"salt", 1);
    let printed = format!("{keys:?}");
    assert!(!printed.contains(&format!("{:?}", keys.stored_key)), "{printed}");
}

#[test]
fn constant_time_eq_is_equality() {
    assert!(constant_time_eq(
        b"c4c9334bac560ecc979e58001b3e22fb",
        b"c4c9334bac560ecc979e58001b3e22fb"
    ));
    assert!(!constant_time_eq(
        b"c4c9334bac560ecc979e58001b3e22fb",
        b"c4c9334bac560ecc979e58001b3e22fc"
    ));
    assert!(!constant_time_eq(b"abc", b"abcd"));
}

#[test]
fn error_messages_are_displayable() {
    assert_eq!(SaslError::AuthenticationFailed.to_string(), "authentication failed");
    let e: &dyn std::error::Error = &SaslError::Malformed;
    assert!(!e.to_string().is_empty());
}

trait IntoStep {
    fn into_step(self) -> ServerStep;
    fn into_verify(self) -> AuthRequest;
}

impl IntoStep for Outcome {
    fn into_step(self) -> ServerStep {
        match self {
            Outcome::Server(step) => step,
            Outcome::Client(e) => panic!("client error {e:?}"),
        }
    }
    fn into_verify(self) -> AuthRequest {
        match self.into_step() {
            ServerStep::Verify(v) => v,
            other => panic!("expected Verify, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- properties

fn printable() -> impl Strategy<Value = String> {
    // Printable ASCII, including ',', '=', ' ' and the other characters SCRAM escapes or splits on.
    "[ -~]{1,24}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plain_succeeds_for_any_printable_credentials(
        authzid in proptest::option::of(printable()),
        user in printable(),
        pass in printable(),
    ) {
        let mut client = SaslClient::plain(authzid.as_deref(), &user, &pass);
        let mut srv = server(Mechanism::Plain);
        prop_assert_eq!(
            drive(&mut client, &mut srv, |_| None),
            password_verify(Mechanism::Plain, authzid.as_deref(), &user, &pass)
        );
    }

    #[test]
    fn login_succeeds_for_any_printable_credentials(user in printable(), pass in printable()) {
        let mut client = SaslClient::login(&user, &pass);
        let mut srv = server(Mechanism::Login);
        prop_assert_eq!(
            drive(&mut client, &mut srv, |_| None),
            password_verify(Mechanism::Login, None, &user, &pass)
        );
    }

    #[test]
    fn scram_succeeds_for_any_printable_credentials(
        user in printable(),
        pass in printable(),
        client_nonce in "[!-+--~]{8,24}",
        iterations in 1u32..8,
    ) {
        let keys = ScramKeys::from_password(pass.as_bytes(), b"salt", iterations);
        let mut client = SaslClient::scram_sha256(&user, &pass, &client_nonce);
        let mut srv = server(Mechanism::ScramSha256);
        prop_assert_eq!(
            drive(&mut client, &mut srv, |name| (name == user).then(|| keys.clone())),
            Outcome::Server(ServerStep::Success { username: user.clone(), authzid: None })
        );
        prop_assert!(client.server_verified());
    }

    #[test]
    fn scram_succeeds_for_any_unicode_password(
        user in "\\PC{1,12}",
        pass in "\\PC{1,12}",
    ) {
        let keys = ScramKeys::from_password(pass.as_bytes(), b"salt", 2);
        let mut client = SaslClient::scram_sha256(&user, &pass, "clientnonce0123456789");
        let mut srv = server(Mechanism::ScramSha256);
        prop_assert_eq!(
            drive(&mut client, &mut srv, |name| (name == user).then(|| keys.clone())),
            Outcome::Server(ServerStep::Success { username: user.clone(), authzid: None })
        );
    }

    #[test]
    fn scram_fails_for_any_other_password(pass in printable(), other in printable()) {
        prop_assume!(pass != other);
        let keys = ScramKeys::from_password(pass.as_bytes(), b"salt", 1);
        let mut client = SaslClient::scram_sha256("user", &other, "clientnonce0123456789");
        let mut srv = server(Mechanism::ScramSha256);
        prop_assert_eq!(
            drive(&mut client, &mut srv, |_| Some(keys.clone())),
            failure(SaslError::AuthenticationFailed)
        );
    }

    #[test]
    fn servers_never_panic_on_arbitrary_input(
        mechanism in proptest::sample::select(Mechanism::ALL.to_vec()),
        initial in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        responses in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
    ) {
        let mut srv = server(mechanism);
        let mut step = srv.start(initial.as_deref());
        for response in &responses {
            step = match step {
                ServerStep::NeedScramKeys { .. } => srv.provide_scram_keys(None),
                _ => srv.step(response),
            };
        }
        let succeeded = matches!(step, ServerStep::Success { .. });
        prop_assert!(!succeeded, "{:?}", step);
    }

    #[test]
    fn clients_never_panic_on_arbitrary_challenges(
        challenges in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
    ) {
        let mut clients = [
            SaslClient::plain(None, "u", "p"),
            SaslClient::login("u", "p"),
            SaslClient::cram_md5("u", "p"),
            SaslClient::scram_sha256("u", "p", "nonce").with_max_scram_iterations(16),
            SaslClient::oauthbearer("u", "t", None, None),
            SaslClient::xoauth2("u", "t", false),
        ];
        for client in &mut clients {
            client.initial_response();
            for challenge in &challenges {
                let _ = client.step(challenge);
            }
        }
    }
}
