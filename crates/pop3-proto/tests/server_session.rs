//! The server session driven by scripted client bytes, with a virtual clock.

#![forbid(unsafe_code)]

use std::time::Duration;

use pop3_proto::server::{
    AuthRequest, BodyError, BodyFlow, CloseReason, CommitError, Event, Greeting, LoginError,
    MessageInfo, Phase, ServerConfig, ServerSession, Snapshot,
};
use pop3_proto::{Expire, MsgNum};

const TIMESTAMP: &str = "<1896.697170952@dbc.mtview.ca.us>";

struct Harness {
    session: ServerSession,
    now: Duration,
}

impl Harness {
    fn new(config: ServerConfig) -> (Self, String) {
        let greeting = Greeting {
            apop_timestamp: TIMESTAMP.to_owned(),
            sasl_nonce: "3rfcNHYJY1ZVvWVs7j".to_owned(),
            hostname: "pop.example.org".to_owned(),
            tls_active: false,
        };
        let mut h = Self {
            session: ServerSession::new(config, greeting, Duration::ZERO),
            now: Duration::ZERO,
        };
        let greeting = h.output();
        (h, greeting)
    }

    fn plain() -> Self {
        let config = ServerConfig { plaintext_without_tls: true, ..ServerConfig::default() };
        Self::new(config).0
    }

    fn output(&mut self) -> String {
        let mut all = Vec::new();
        loop {
            let out = self.session.take_output();
            if out.is_empty() {
                break;
            }
            all.extend_from_slice(&out);
        }
        String::from_utf8(all).unwrap()
    }

    fn send(&mut self, input: &str) -> String {
        self.session.handle_input(input.as_bytes(), self.now);
        self.output()
    }

    fn event(&mut self) -> Option<Event> {
        self.session.poll_event()
    }

    /// Logs in with USER/PASS and the given maildrop.
    fn login(&mut self, messages: &[(u64, &str)]) -> String {
        self.send("USER alice\r\nPASS secret\r\n");
        match self.event() {
            Some(Event::Authenticate(AuthRequest::Password {
                username,
                password,
                mechanism: None,
                ..
            })) => {
                assert_eq!(username, "alice");
                assert_eq!(password.expose(), b"secret");
            }
            other => panic!("expected a password check, got {other:?}"),
        }
        self.session.login_accepted(snapshot(messages)).unwrap();
        self.output()
    }
}

fn snapshot(messages: &[(u64, &str)]) -> Snapshot {
    Snapshot::new(
        messages.iter().map(|(size, uid)| MessageInfo::new(*size, *uid).unwrap()).collect(),
    )
}

fn msg(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap()
}

const TWO: &[(u64, &str)] = &[(120, "whqtswO00WBw418f9t5JxYwZ"), (200, "QhdPYR:00WBw1Ph7x7")];

#[test]
fn greeting_carries_the_apop_timestamp_only_when_apop_is_on() {
    let (_, plain) = Harness::new(ServerConfig::default());
    assert_eq!(plain, "+OK POP3 server ready\r\n");
    let (_, apop) = Harness::new(ServerConfig { apop: true, ..ServerConfig::default() });
    assert_eq!(apop, format!("+OK POP3 server ready {TIMESTAMP}\r\n"));
}

#[test]
fn transaction_commands_answer_from_the_snapshot_and_hide_deleted_messages() {
    let mut h = Harness::plain();
    assert_eq!(h.login(TWO), "+OK maildrop has 2 messages (320 octets)\r\n");
    assert_eq!(h.send("STAT\r\n"), "+OK 2 320\r\n");
    assert_eq!(
        h.send("LIST\r\n"),
        "+OK maildrop has 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"
    );
    assert_eq!(h.send("LIST 2\r\n"), "+OK 2 200\r\n");
    assert_eq!(h.send("LIST 3\r\n"), "-ERR no such message, only 2 messages in maildrop\r\n");
    assert_eq!(h.send("UIDL 1\r\n"), "+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n");
    assert_eq!(h.send("DELE 1\r\n"), "+OK message 1 deleted\r\n");
    assert_eq!(h.send("DELE 1\r\n"), "-ERR message 1 already deleted\r\n");
    assert_eq!(h.send("STAT\r\n"), "+OK 1 200\r\n");
    assert_eq!(h.send("LIST\r\n"), "+OK maildrop has 1 messages (200 octets)\r\n2 200\r\n.\r\n");
    assert_eq!(h.send("UIDL\r\n"), "+OK\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n");
    assert_eq!(h.send("LIST 1\r\n"), "-ERR message 1 already deleted\r\n");
    assert_eq!(h.send("RETR 1\r\n"), "-ERR message 1 already deleted\r\n");
    assert_eq!(h.send("TOP 1 0\r\n"), "-ERR message 1 already deleted\r\n");
    assert!(h.event().is_none(), "no body is asked for a deleted message");
    assert_eq!(h.send("NOOP\r\n"), "+OK\r\n");
    assert_eq!(h.send("RSET\r\n"), "+OK maildrop has 2 messages (320 octets)\r\n");
    assert_eq!(h.send("STAT\r\n"), "+OK 2 320\r\n");
    assert_eq!(
        h.session.commands(),
        2 + 16,
        "USER, PASS and every command above, rejected ones too"
    );
}

#[test]
fn commands_are_legal_only_in_their_state() {
    let mut h = Harness::plain();
    assert_eq!(h.send("STAT\r\n"), "-ERR command not valid before login\r\n");
    assert_eq!(h.send("PASS x\r\n"), "-ERR USER first\r\n");
    assert_eq!(h.send("NOOP\r\n"), "-ERR command not valid before login\r\n");
    h.login(TWO);
    assert_eq!(h.send("USER bob\r\n"), "-ERR command not valid after login\r\n");
    assert_eq!(h.send("STLS\r\n"), "-ERR command not valid after login\r\n");
    assert_eq!(h.send("UTF8\r\n"), "-ERR command not valid after login\r\n");
    assert_eq!(h.send("RETR 0\r\n"), "-ERR message numbers start at 1\r\n");
    assert_eq!(h.send("FOO\r\n"), "-ERR unknown command\r\n");
    assert_eq!(h.session.phase(), Phase::Transaction);
}

#[test]
fn retr_streams_the_body_dot_stuffed_under_back_pressure_and_keeps_pipelined_order() {
    let config = ServerConfig {
        plaintext_without_tls: true,
        output_high_water: 64,
        ..ServerConfig::default()
    };
    let (mut h, _) = Harness::new(config);
    h.login(&[(30, "a"), (5, "b")]);
    // RETR, then two pipelined commands in the same read: nothing is answered until the body.
    assert_eq!(h.send("RETR 1\r\nSTAT\r\nLIST 2\r\n"), "");
    assert_eq!(h.event(), Some(Event::RetrieveBody { msg: msg(1), index: 0 }));
    let body = b".leading dot\nline two\r\n..two dots\n".repeat(4);
    let mut wire = Vec::new();
    let mut paused = 0;
    for chunk in body.chunks(7) {
        if !h.session.wants_body_data() {
            paused += 1;
            let taken = h.session.take_output();
            assert!(
                taken.len() < 64 + 2 * 7 + 16,
                "output stays near the high-water mark: {}",
                taken.len()
            );
            wire.extend_from_slice(&taken);
            assert!(h.session.wants_body_data(), "taking the output releases back-pressure");
        }
        assert_eq!(h.session.body_data(chunk), Ok(BodyFlow::More));
    }
    assert!(paused > 0, "back-pressure engaged");
    h.session.body_end().unwrap();
    wire.extend_from_slice(h.output().as_bytes());
    let stuffed = "..leading dot\r\nline two\r\n...two dots\r\n".repeat(4);
    let expected = format!("+OK 30 octets\r\n{stuffed}.\r\n+OK 2 35\r\n+OK 2 5\r\n");
    assert_eq!(String::from_utf8(wire).unwrap(), expected);
}

#[test]
fn retr_output_is_exact() {
    let mut h = Harness::plain();
    h.login(&[(30, "a")]);
    assert_eq!(h.send("RETR 1\r\nNOOP\r\n"), "");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    let mut wire = String::new();
    for chunk in [&b".x\n"[..], b"y\r", b"\n.", b"\nz"] {
        h.session.body_data(chunk).unwrap();
        wire += &h.output();
    }
    h.session.body_end().unwrap();
    wire += &h.output();
    assert_eq!(wire, "+OK 30 octets\r\n..x\r\ny\r\n..\r\nz\r\n.\r\n+OK\r\n");
}

#[test]
fn top_sends_headers_blank_line_and_n_body_lines_then_says_done() {
    let mut h = Harness::plain();
    h.login(&[(100, "a")]);
    h.send("TOP 1 1\r\n");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    assert_eq!(h.session.body_data(b"Subject: hi\n\nfirst\n"), Ok(BodyFlow::Done));
    assert!(!h.session.wants_body_data());
    h.session.body_end().unwrap();
    assert_eq!(h.output(), "+OK 100 octets\r\nSubject: hi\r\n\r\nfirst\r\n.\r\n");
}

#[test]
fn a_vanished_message_is_an_error_and_the_session_goes_on() {
    let mut h = Harness::plain();
    h.login(TWO);
    h.send("RETR 2\r\nSTAT\r\n");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    h.session.body_error(BodyError::Gone).unwrap();
    assert_eq!(h.output(), "-ERR message 2 is no longer in the maildrop\r\n+OK 2 320\r\n");
    h.send("RETR 1\r\n");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    h.session.body_data(b"partial").unwrap();
    h.session.body_error(BodyError::Io).unwrap();
    assert!(h.session.is_closed());
    assert_eq!(h.session.close_reason(), Some(CloseReason::BodyFailed));
    assert!(h.event().is_none(), "no commit: a broken reply never leads to UPDATE");
}

#[test]
fn quit_before_login_closes_without_update() {
    let mut h = Harness::plain();
    assert_eq!(h.send("QUIT\r\n"), "+OK POP3 server signing off\r\n");
    assert!(h.session.is_closed());
    assert!(h.event().is_none());
}

#[test]
fn quit_after_login_commits_exactly_the_deleted_messages() {
    let mut h = Harness::plain();
    h.login(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
    h.send("DELE 2\r\nDELE 4\r\nRSET\r\nDELE 1\r\nDELE 3\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(h.session.phase(), Phase::Update);
    assert_eq!(h.event(), Some(Event::Commit { deleted: vec![0, 2] }));
    h.session.commit_done(Ok(())).unwrap();
    assert!(h.output().ends_with("+OK POP3 server signing off (2 messages left)\r\n"));
    assert_eq!(h.session.close_reason(), Some(CloseReason::Quit));

    let mut h = Harness::plain();
    h.login(&[(1, "a")]);
    h.send("DELE 1\r\nQUIT\r\n");
    assert_eq!(h.event(), Some(Event::Commit { deleted: vec![0] }));
    h.session.commit_done(Err(CommitError)).unwrap();
    assert!(h.output().ends_with("-ERR [SYS/TEMP] some deleted messages were not removed\r\n"));
    assert_eq!(h.session.close_reason(), Some(CloseReason::CommitFailed));
}

#[test]
fn capa_depends_on_state_tls_and_configuration() {
    let config = ServerConfig {
        tls_available: true,
        implementation: Some("pop3d".into()),
        expire: Some(Expire::Never),
        login_delay: Some(0),
        ..ServerConfig::default()
    };
    let (mut h, _) = Harness::new(config.clone());
    let capa = h.send("CAPA\r\n");
    assert!(capa.contains("\r\nSTLS\r\n"), "{capa}");
    assert!(!capa.contains("\r\nUSER\r\n"), "no USER without TLS: {capa}");
    assert!(capa.contains("\r\nSASL SCRAM-SHA-256\r\n"), "no PLAIN or LOGIN without TLS: {capa}");
    for cap in [
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE NEVER",
        "LOGIN-DELAY 0",
        "IMPLEMENTATION pop3d",
        "UTF8 USER",
        "LANG",
    ] {
        assert!(capa.contains(&format!("\r\n{cap}\r\n")), "{cap} missing: {capa}");
    }
    assert!(capa.ends_with("\r\n.\r\n"));
    assert!(h
        .send("USER alice\r\n")
        .starts_with("-ERR [AUTH] Plaintext authentication disallowed"));
    assert!(h.send("AUTH PLAIN\r\n").starts_with("-ERR unsupported"));

    // Under TLS: USER and PLAIN/LOGIN, no STLS.
    h.send("STLS\r\n");
    assert_eq!(h.event(), Some(Event::StartTls));
    h.session.tls_established().unwrap();
    let capa = h.send("CAPA\r\n");
    assert!(!capa.contains("STLS"), "{capa}");
    assert!(
        capa.contains("\r\nUSER\r\n") && capa.contains("SASL SCRAM-SHA-256 PLAIN LOGIN"),
        "{capa}"
    );

    // After login: no USER, SASL, STLS or UTF8.
    h.login(TWO);
    let capa = h.send("CAPA\r\n");
    assert!(!capa.contains("USER") && !capa.contains("SASL") && !capa.contains("STLS"), "{capa}");
}

#[test]
fn bytes_pipelined_after_stls_are_never_executed() {
    let config = ServerConfig {
        tls_available: true,
        plaintext_without_tls: true,
        ..ServerConfig::default()
    };
    let (mut h, _) = Harness::new(config);
    let reply = h.send("STLS\r\nUSER mallory\r\nPASS injected\r\n");
    assert_eq!(reply, "+OK Begin TLS negotiation\r\n");
    assert_eq!(h.event(), Some(Event::StartTls));
    assert!(!h.session.wants_input());
    assert_eq!(h.send("PASS more\r\n"), "", "plaintext during the handshake is dropped");
    h.session.tls_established().unwrap();
    assert!(h.event().is_none());
    assert_eq!(h.send("PASS x\r\n"), "-ERR USER first\r\n", "no USER survived the upgrade");
    assert_eq!(h.send("STLS\r\n"), "-ERR Command not permitted when TLS active\r\n");
}

#[test]
fn failed_logins_are_counted_then_the_connection_closes() {
    let mut h = Harness::plain();
    for attempt in 1..=3 {
        h.send("USER alice\r\nPASS wrong\r\n");
        assert!(matches!(h.event(), Some(Event::Authenticate(_))));
        h.session.login_rejected(LoginError::BadCredentials).unwrap();
        let out = h.output();
        assert!(out.starts_with("-ERR [AUTH] authentication failed\r\n"), "{out}");
        assert_eq!(h.session.is_closed(), attempt == 3, "attempt {attempt}");
    }
    assert_eq!(h.session.close_reason(), Some(CloseReason::TooManyFailedLogins));
}

#[test]
fn login_rejections_carry_their_response_codes() {
    for (error, code) in [
        (LoginError::InUse, "[IN-USE]"),
        (LoginError::TempFailure, "[SYS/TEMP]"),
        (LoginError::PermFailure, "[SYS/PERM]"),
        (LoginError::LoginDelay, "[LOGIN-DELAY]"),
    ] {
        let mut h = Harness::plain();
        h.send("USER alice\r\nPASS secret\r\n");
        h.session.login_rejected(error).unwrap();
        let out = h.output();
        assert!(out.contains(&format!("-ERR {code} ")), "{out}");
        assert_eq!(h.session.phase(), Phase::Authorization);
    }
}

#[test]
fn bad_commands_are_counted_then_the_connection_closes() {
    let mut h = Harness::plain();
    for _ in 0..19 {
        assert!(h.send("BOGUS\r\n").starts_with("-ERR"));
    }
    assert!(!h.session.is_closed());
    assert!(h.send("BOGUS\r\n").contains("too many bad commands"));
    assert_eq!(h.session.close_reason(), Some(CloseReason::TooManyBadCommands));
}

#[test]
fn an_over_long_line_gets_an_error_and_the_session_goes_on() {
    let mut h = Harness::plain();
    let long = format!("USER {}\r\nCAPA\r\n", "x".repeat(1000));
    let out = h.send(&long);
    assert!(
        out.starts_with("-ERR line longer than 255 octets\r\n+OK Capability list follows"),
        "{out}"
    );
}

#[test]
fn idle_timeouts_close_without_update_and_busy_sessions_are_not_timed_out() {
    let mut h = Harness::plain();
    assert_eq!(h.session.poll_timeout(), Some(Duration::from_secs(60)));
    h.now = Duration::from_secs(30);
    h.send("CAPA\r\n");
    assert_eq!(h.session.poll_timeout(), Some(Duration::from_secs(90)));
    h.login(TWO);
    assert_eq!(h.session.poll_timeout(), Some(Duration::from_secs(630)), "10 minutes after login");
    h.send("DELE 1\r\nRETR 2\r\n");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    // Busy streaming: the deadline passes but the session is not closed.
    h.session.handle_timeout(Duration::from_secs(700));
    assert!(!h.session.is_closed());
    h.session.body_end().unwrap();
    h.output();
    h.session.handle_timeout(Duration::from_secs(1299));
    assert!(!h.session.is_closed());
    h.session.handle_timeout(Duration::from_secs(1300));
    assert!(h.session.is_closed());
    assert_eq!(h.session.close_reason(), Some(CloseReason::IdleTimeout));
    assert!(h.output().starts_with("-ERR autologout"));
    assert!(h.event().is_none(), "no UPDATE on timeout: DELE 1 is forgotten");
}

#[test]
fn apop_is_checked_by_the_embedder_against_the_greeting_timestamp() {
    let (mut h, _) = Harness::new(ServerConfig { apop: true, ..ServerConfig::default() });
    h.send("APOP mrose C4C9334BAC560ECC979E58001B3E22FB\r\n");
    match h.event() {
        Some(Event::Authenticate(AuthRequest::Apop { username, timestamp, digest })) => {
            assert_eq!(username, "mrose");
            assert_eq!(timestamp, TIMESTAMP);
            assert_eq!(digest.expose(), "c4c9334bac560ecc979e58001b3e22fb");
            assert_eq!(pop3_proto::sasl::apop_digest(&timestamp, b"tanstaaf"), *digest.expose());
        }
        other => panic!("{other:?}"),
    }
    let mut h = Harness::plain();
    assert_eq!(
        h.send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
        "-ERR APOP not supported\r\n"
    );
}

/// USER/PASS, AUTH PLAIN through the session and PLAIN through a bare `SaslServer` all end
/// with the same credentials type, so one password check serves every way in.
#[test]
fn every_password_login_gives_the_same_credentials_type() {
    use pop3_proto::sasl::{Mechanism, SaslServer, ServerStep};
    let mut h = Harness::plain();
    h.send("USER alice\r\nPASS secret\r\n");
    let Some(Event::Authenticate(user_pass)) = h.event() else { panic!("no USER/PASS event") };
    let mut h = Harness::plain();
    h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    let Some(Event::Authenticate(plain)) = h.event() else { panic!("no AUTH PLAIN event") };
    let mut sasl = SaslServer::new(Mechanism::Plain, "3rfcNHYJY1ZVvWVs7j", "pop.example.org");
    let ServerStep::Verify(bare) = sasl.start(Some(b"\0alice\0secret")) else {
        panic!("PLAIN did not end with credentials")
    };
    assert_eq!(plain, bare, "the session passes the mechanism's credentials on unchanged");
    for request in [&user_pass, &plain] {
        assert_eq!(request.username(), "alice");
        assert!(request.password_matches(b"secret"));
        assert!(!request.password_matches(b"Secret"));
    }
}

#[test]
fn auth_plain_with_initial_response_and_with_a_challenge() {
    let mut h = Harness::plain();
    // "\0alice\0secret"
    h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    match h.event() {
        Some(Event::Authenticate(AuthRequest::Password {
            username, password, mechanism, ..
        })) => {
            assert_eq!(
                (username.as_str(), password.expose().as_slice()),
                ("alice", &b"secret"[..])
            );
            assert_eq!(mechanism, Some(pop3_proto::sasl::Mechanism::Plain));
        }
        other => panic!("{other:?}"),
    }
    h.session.login_accepted(snapshot(TWO)).unwrap();
    assert!(h.output().starts_with("+OK maildrop has 2"));

    let mut h = Harness::plain();
    assert_eq!(h.send("AUTH PLAIN\r\n"), "+ \r\n");
    assert_eq!(h.session.phase(), Phase::Sasl);
    h.send("AGFsaWNlAHNlY3JldA==\r\n");
    assert!(matches!(h.event(), Some(Event::Authenticate(AuthRequest::Password { .. }))));

    // A cancel is a failed login: the embedder delays it like a wrong password.
    let mut h = Harness::plain();
    h.send("AUTH PLAIN\r\n");
    assert_eq!(h.send("*\r\n"), "");
    assert_eq!(
        h.event(),
        Some(Event::SaslFailed { mechanism: pop3_proto::sasl::Mechanism::Plain, cancelled: true })
    );
    h.session.login_rejected(LoginError::BadCredentials).unwrap();
    assert_eq!(h.output(), "-ERR [AUTH] authentication cancelled\r\n");
    assert_eq!(h.session.phase(), Phase::Authorization);
    assert_eq!(h.send("AUTH PLAIN not!base64\r\n"), "-ERR invalid argument\r\n");
}

#[test]
fn utf8_and_lang() {
    let mut h = Harness::plain();
    assert_eq!(h.send("UTF8\r\n"), "+OK UTF8 enabled\r\n");
    assert_eq!(h.send("LANG\r\n"), "+OK Language listing follows\r\nen English\r\n.\r\n");
    assert_eq!(h.send("LANG EN\r\n"), "+OK en English\r\n");
    assert_eq!(h.send("LANG *\r\n"), "+OK en English\r\n");
    assert_eq!(h.send("LANG de\r\n"), "-ERR invalid language\r\n");
}

#[test]
fn last_is_refused_by_default() {
    // RFC 1725 removed LAST; a session-local answer (0 at every login) makes fetchmail in
    // keep mode fetch everything again, so by default it is an unknown command, as in Dovecot.
    let mut h = Harness::plain();
    assert_eq!(h.send("LAST\r\n"), "-ERR unknown command\r\n");
    h.login(TWO);
    assert_eq!(h.send("LAST\r\n"), "-ERR unknown command\r\n");
    h.send("RETR 2\r\n");
    h.session.body_end().unwrap();
    h.output();
    assert_eq!(h.send("LAST\r\n"), "-ERR unknown command\r\n");
    assert_eq!(h.send("NOOP\r\n"), "+OK\r\n", "the session goes on");
}

#[test]
fn last_when_enabled_reports_the_highest_message_retrieved() {
    let config =
        ServerConfig { plaintext_without_tls: true, last_command: true, ..ServerConfig::default() };
    let mut h = Harness::new(config).0;
    h.login(TWO);
    assert_eq!(h.send("LAST\r\n"), "+OK 0\r\n");
    h.send("RETR 2\r\n");
    h.session.body_end().unwrap();
    h.output();
    assert_eq!(h.send("LAST\r\n"), "+OK 2\r\n");
    h.send("RSET\r\n");
    assert_eq!(h.send("LAST\r\n"), "+OK 0\r\n");
}

#[test]
fn a_flood_of_pipelined_input_behind_a_busy_session_is_bounded() {
    let mut h = Harness::plain();
    h.login(TWO);
    h.send("RETR 1\r\n");
    let mut closed = false;
    for _ in 0..1000 {
        h.session.handle_input(&b"NOOP\r\n".repeat(100), h.now);
        if h.session.is_closed() {
            closed = true;
            break;
        }
    }
    assert!(closed);
    assert_eq!(h.session.close_reason(), Some(CloseReason::InputFlood));
}

#[test]
fn answers_to_questions_not_asked_are_refused() {
    let mut h = Harness::plain();
    assert!(h.session.login_accepted(Snapshot::default()).is_err());
    assert!(h.session.body_data(b"x").is_err());
    assert!(h.session.commit_done(Ok(())).is_err());
    assert!(h.session.tls_established().is_err());
    assert!(h.session.login_rejected(LoginError::BadCredentials).is_err());
    assert_eq!(h.session.phase(), Phase::Authorization);
    h.login(TWO);
    assert!(h.session.login_rejected(LoginError::InUse).is_err());
    assert!(h.session.scram_keys(None).is_err());
    assert_eq!(h.session.phase(), Phase::Transaction, "a stray answer changes nothing");
    // A driver over std::io ends the connection with `?`: the refusal is an I/O error.
    let mut answer = || -> std::io::Result<()> { Ok(h.session.tls_established()?) };
    let error = answer().unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::Other);
    assert_eq!(error.to_string(), "the session did not ask for this answer");
}

#[test]
fn a_sasl_failure_inside_the_session_waits_for_the_embedders_rejection() {
    let mut h = Harness::plain();
    // PLAIN with a message that has no NUL separators: the mechanism itself rejects it.
    assert_eq!(h.send("AUTH PLAIN bm90LXBsYWlu\r\n"), "");
    assert_eq!(
        h.event(),
        Some(Event::SaslFailed { mechanism: pop3_proto::sasl::Mechanism::Plain, cancelled: false })
    );
    assert_eq!(h.session.phase(), Phase::AuthPending);
    assert!(h.session.login_accepted(snapshot(TWO)).is_err(), "a failed exchange cannot log in");
    h.session.login_rejected(LoginError::BadCredentials).unwrap();
    assert_eq!(h.output(), "-ERR [AUTH] authentication failed\r\n");
    assert_eq!(h.session.phase(), Phase::Authorization);
}

#[test]
fn partial_lines_do_not_reset_the_idle_timer() {
    let mut h = Harness::plain();
    // One byte every 30 s, never a whole line: still idle 60 s after the greeting.
    h.now = Duration::from_secs(30);
    h.send("C");
    assert_eq!(h.session.poll_timeout(), Some(Duration::from_secs(60)));
    h.now = Duration::from_secs(59);
    h.send("A");
    h.session.handle_timeout(Duration::from_secs(60));
    assert!(h.session.is_closed());
    assert_eq!(h.session.close_reason(), Some(CloseReason::IdleTimeout));
    // A completed line is activity.
    let mut h = Harness::plain();
    h.now = Duration::from_secs(30);
    h.send("CA");
    h.send("PA\r\n");
    assert_eq!(h.session.poll_timeout(), Some(Duration::from_secs(90)));
}

#[test]
fn a_login_deadline_bounds_an_active_client_that_never_logs_in() {
    let mut h = Harness::plain();
    // Active all along (a NOOP-like CAPA every 50 s), but no login within 180 s.
    for t in [50u64, 100, 150] {
        h.now = Duration::from_secs(t);
        assert!(h.send("CAPA\r\n").starts_with("+OK"));
    }
    assert_eq!(h.session.poll_timeout(), Some(Duration::from_secs(180)), "the deadline, not 210");
    h.session.handle_timeout(Duration::from_secs(179));
    assert!(!h.session.is_closed());
    h.session.handle_timeout(Duration::from_secs(180));
    assert!(h.session.is_closed());
    assert_eq!(h.session.close_reason(), Some(CloseReason::LoginDeadline));
    assert_eq!(h.output(), "-ERR [SYS/TEMP] login took too long, closing\r\n");

    // While the embedder checks a login the deadline waits for its answer; after a
    // successful login it no longer applies.
    let mut h = Harness::plain();
    h.now = Duration::from_secs(170);
    h.send("USER alice\r\nPASS secret\r\n");
    assert!(matches!(h.event(), Some(Event::Authenticate(_))));
    assert_eq!(h.session.poll_timeout(), Some(Duration::from_secs(230)), "idle only");
    h.session.handle_timeout(Duration::from_secs(200));
    assert!(!h.session.is_closed(), "busy: the answer comes first");
    h.session.login_accepted(snapshot(TWO)).unwrap();
    h.output();
    h.session.handle_timeout(Duration::from_secs(300));
    assert!(!h.session.is_closed(), "logged in: only the 10-minute idle timeout is left");

    // Off when the embedder says so.
    let config = ServerConfig {
        plaintext_without_tls: true,
        login_deadline: None,
        ..ServerConfig::default()
    };
    let (h, _) = Harness::new(config);
    assert_eq!(h.session.poll_timeout(), Some(Duration::from_secs(60)));
}

#[test]
fn commands_before_login_have_a_budget() {
    let mut h = Harness::plain();
    for _ in 0..30 {
        assert!(h.send("CAPA\r\n").starts_with("+OK"));
    }
    assert_eq!(h.send("CAPA\r\n"), "-ERR too many commands before login, closing\r\n");
    assert_eq!(h.session.close_reason(), Some(CloseReason::TooManyCommandsBeforeLogin));
    // SASL lines count too, and the budget ends at login.
    let mut h = Harness::plain();
    for _ in 0..14 {
        assert_eq!(h.send("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
        assert_eq!(h.send("*\r\n"), "");
        assert!(matches!(h.event(), Some(Event::SaslFailed { cancelled: true, .. })));
        h.session.login_rejected(LoginError::TempFailure).unwrap();
        h.output();
    }
    h.login(TWO);
    for _ in 0..40 {
        assert!(h.send("NOOP\r\n").starts_with("+OK"));
    }
}

#[test]
fn an_empty_initial_response_is_the_clients_message() {
    // RFC 5034 §4: "=" is an empty initial response, not a request for a challenge.
    let mut h = Harness::plain();
    assert_eq!(h.send("AUTH PLAIN =\r\n"), "");
    assert!(matches!(h.event(), Some(Event::SaslFailed { cancelled: false, .. })));
    h.session.login_rejected(LoginError::BadCredentials).unwrap();
    assert_eq!(h.output(), "-ERR [AUTH] authentication failed\r\n");
    // Without one, PLAIN asks for the message.
    assert_eq!(h.send("AUTH PLAIN\r\n"), "+ \r\n");
}

#[test]
fn a_refused_bearer_token_gets_the_configured_error_report_then_auth_failure() {
    use base64::Engine as _;
    use pop3_proto::sasl::Mechanism;
    use pop3_proto::server::BearerErrorReport;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let report = |challenge: &str| {
        let line = challenge.strip_prefix("+ ").unwrap().trim_end();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(line).unwrap()).unwrap()
    };
    let config = ServerConfig {
        plaintext_without_tls: true,
        sasl_mechanisms: vec![Mechanism::OAuthBearer, Mechanism::XOAuth2],
        bearer_error: BearerErrorReport {
            scope: Some("pop3 \"mail\"".into()),
            openid_configuration: Some("https://idp/.well-known/openid-configuration".into()),
        },
        ..ServerConfig::default()
    };
    // OAUTHBEARER: RFC 7628 §3.2.2's report, strings escaped as JSON.
    let mut h = Harness::new(config.clone()).0;
    let initial = b"n,a=alice,\x01auth=Bearer tok\x01\x01";
    h.send(&format!("AUTH OAUTHBEARER {}\r\n", b64(initial)));
    assert!(matches!(h.event(), Some(Event::Authenticate(AuthRequest::Bearer { .. }))));
    h.session.login_rejected(LoginError::BadCredentials).unwrap();
    assert_eq!(
        report(&h.output()),
        r#"{"status":"invalid_token","scope":"pop3 \"mail\"","openid-configuration":"https://idp/.well-known/openid-configuration"}"#
    );
    // The client acknowledges with 0x01 (§3.2.3); the embedder answers the failure.
    assert_eq!(h.send(&format!("{}\r\n", b64(b"\x01"))), "");
    assert!(matches!(
        h.event(),
        Some(Event::SaslFailed { mechanism: Mechanism::OAuthBearer, cancelled: false })
    ));
    h.session.login_rejected(LoginError::BadCredentials).unwrap();
    assert!(h.output().starts_with("-ERR [AUTH]"));

    // XOAUTH2: the form Google's servers send.
    let mut h = Harness::new(config).0;
    h.send(&format!("AUTH XOAUTH2 {}\r\n", b64(b"user=alice\x01auth=Bearer tok\x01\x01")));
    assert!(matches!(h.event(), Some(Event::Authenticate(AuthRequest::Bearer { .. }))));
    h.session.login_rejected(LoginError::BadCredentials).unwrap();
    assert_eq!(
        report(&h.output()),
        r#"{"status":"401","schemes":"bearer","scope":"pop3 \"mail\""}"#
    );
    assert_eq!(h.send("\r\n"), "");
    assert!(matches!(h.event(), Some(Event::SaslFailed { mechanism: Mechanism::XOAuth2, .. })));
    h.session.login_rejected(LoginError::BadCredentials).unwrap();
    assert!(h.output().starts_with("-ERR [AUTH]"));
}

#[test]
fn bearer_mechanisms_are_offered_only_where_plaintext_passwords_are() {
    use pop3_proto::sasl::Mechanism;
    let mechanisms = vec![Mechanism::ScramSha256, Mechanism::OAuthBearer, Mechanism::XOAuth2];
    let config = ServerConfig { sasl_mechanisms: mechanisms.clone(), ..ServerConfig::default() };
    let (mut h, _) = Harness::new(config);
    let capa = h.send("CAPA\r\n");
    assert!(capa.contains("SASL SCRAM-SHA-256\r\n"), "{capa}");
    // Not offered, so not accepted either.
    assert!(h.send("AUTH XOAUTH2 dXNlcj1hAWF1dGg9QmVhcmVyIHQBAQ==\r\n").starts_with("-ERR"));
    assert!(h.event().is_none());
    let config = ServerConfig {
        sasl_mechanisms: mechanisms,
        plaintext_without_tls: true,
        ..ServerConfig::default()
    };
    let (mut h, _) = Harness::new(config);
    assert!(h.send("CAPA\r\n").contains("SASL SCRAM-SHA-256 OAUTHBEARER XOAUTH2\r\n"));
}

/// A RETR answered directly: the session writes the status line and, once told, the
/// terminator; the embedder's body never passes through it, pipelined commands wait for the
/// end, and every streaming call is refused meanwhile.
#[test]
fn retr_sent_directly_is_framed_by_the_session_and_holds_pipelined_commands() {
    let mut h = Harness::plain();
    h.login(&[(30, "a"), (5, "b")]);
    assert!(!h.session.body_can_be_direct(), "no body asked for");
    assert_eq!(h.session.body_direct_begin(), Err(pop3_proto::server::WrongState));
    assert_eq!(h.send("RETR 1\r\nSTAT\r\n"), "");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    assert!(h.session.body_can_be_direct());
    assert_eq!(h.session.body_direct_end(), Err(pop3_proto::server::WrongState), "not begun");
    assert_eq!(h.session.body_direct_begin(), Ok(30));
    assert_eq!(h.output(), "+OK 30 octets\r\n");
    assert!(!h.session.body_can_be_direct());
    assert_eq!(h.session.body_direct_begin(), Err(pop3_proto::server::WrongState), "once");
    assert!(!h.session.wants_body_data());
    assert_eq!(h.session.body_data(b"x"), Err(pop3_proto::server::WrongState));
    assert_eq!(h.session.body_end(), Err(pop3_proto::server::WrongState));
    // Input meanwhile waits; so does the idle deadline.
    assert_eq!(h.send("NOOP\r\n"), "");
    h.session.body_direct_end().unwrap();
    assert_eq!(h.output(), ".\r\n+OK 2 35\r\n+OK\r\n");
    assert_eq!(h.session.body_direct_end(), Err(pop3_proto::server::WrongState));
}

/// TOP cuts the message, which only the session's filter does: never direct. A body that
/// fails once sent directly closes the session without UPDATE.
#[test]
fn top_is_never_direct_and_a_failed_direct_body_closes_the_session() {
    let mut h = Harness::plain();
    h.login(&[(30, "a")]);
    h.send("TOP 1 0\r\n");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    assert!(!h.session.body_can_be_direct());
    assert_eq!(h.session.body_direct_begin(), Err(pop3_proto::server::WrongState));
    h.session.body_data(b"A: b\n\nbody\n").unwrap();
    h.session.body_end().unwrap();
    assert_eq!(h.output(), "+OK 30 octets\r\nA: b\r\n\r\n.\r\n");
    // A RETR that has started streaming cannot switch.
    h.send("RETR 1\r\n");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    h.session.body_data(b"x").unwrap();
    assert!(!h.session.body_can_be_direct());
    h.session.body_end().unwrap();
    h.output();
    h.send("RETR 1\r\nDELE 1\r\nQUIT\r\n");
    assert!(matches!(h.event(), Some(Event::RetrieveBody { .. })));
    h.session.body_direct_begin().unwrap();
    h.session.body_error(BodyError::Io).unwrap();
    assert!(h.session.is_closed());
    assert_eq!(h.session.close_reason(), Some(CloseReason::BodyFailed));
    assert!(h.event().is_none(), "no commit: a broken reply never leads to UPDATE");
}
