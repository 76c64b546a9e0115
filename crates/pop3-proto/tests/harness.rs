//! The client session against the server session, in memory, with a virtual clock: every
//! command, pipelining, every SASL mechanism, APOP, STLS, both idle timeouts, and UPDATE with
//! the commit succeeding and failing. Neither side knows the other is not a socket away.

#![forbid(unsafe_code)]

use std::time::Duration;

use pop3_proto::client::{ClientConfig, ClientEvent, ClientSession, Reply, RequestId};
use pop3_proto::sasl::{apop_digest, cram_md5_digest, Mechanism, SaslClient, ScramKeys};
use pop3_proto::server::{
    AuthRequest, BodyFlow, CommitError, Event, Greeting, LoginError, MessageInfo, ServerConfig,
    ServerSession, Snapshot,
};
use pop3_proto::{Capability, LangArg, MsgNum, RespCode};

const SECRET: &str = "tanstaaf";
const TOKEN: &str = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

/// The server's embedder and both sessions, joined by in-memory byte pipes.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    now: Duration,
    mail: Vec<Vec<u8>>,
    locked: bool,
    commit_fails: bool,
    events: Vec<ClientEvent>,
    /// Octets of each transfer from client to server, to see pipelining.
    client_writes: Vec<usize>,
    server_closed: bool,
}

fn msg(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap()
}

fn mailbox() -> Vec<Vec<u8>> {
    vec![
        b"Subject: one\r\n\r\nfirst body\r\n".to_vec(),
        b"Subject: two\n\n.starts with a dot\nline 2\nline 3\n".to_vec(),
        b"Subject: three\r\n\r\nno final newline".to_vec(),
    ]
}

impl Pair {
    fn new(config: ServerConfig, tls_active: bool) -> Self {
        let greeting = Greeting {
            apop_timestamp: "<1896.697170952@dbc.mtview.ca.us>".into(),
            sasl_nonce: "3rfcNHYJY1ZVvWVs7j".into(),
            hostname: "pop.example.org".into(),
            tls_active,
        };
        let mut pair = Self {
            client: ClientSession::new(ClientConfig::default()),
            server: ServerSession::new(config, greeting, Duration::ZERO),
            now: Duration::ZERO,
            mail: mailbox(),
            locked: false,
            commit_fails: false,
            events: Vec::new(),
            client_writes: Vec::new(),
            server_closed: false,
        };
        pair.pump();
        assert!(matches!(pair.events.first(), Some(ClientEvent::Greeting(g)) if g.is_ok()));
        pair
    }

    fn plain() -> Self {
        let config = ServerConfig {
            plaintext_without_tls: true,
            apop: true,
            sasl_mechanisms: Mechanism::ALL.to_vec(),
            tls_available: true,
            // The client's `last()` is exercised against a server that still answers LAST.
            last_command: true,
            ..ServerConfig::default()
        };
        Self::new(config, false)
    }

    /// Moves bytes and answers events until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            let out = self.client.take_output();
            if !out.is_empty() && !self.server_closed {
                self.client_writes.push(out.len());
                self.server.handle_input(&out, self.now);
                moved = true;
            }
            while let Some(event) = self.server.poll_event() {
                self.answer(event);
                moved = true;
            }
            loop {
                let out = self.server.take_output();
                if out.is_empty() {
                    break;
                }
                self.client.handle_input(&out);
                moved = true;
            }
            if self.server.is_closed() && !self.server_closed {
                self.server_closed = true;
                self.client.handle_eof();
                moved = true;
            }
            while let Some(event) = self.client.poll_event() {
                if event == ClientEvent::StartTls {
                    self.client.tls_established().unwrap();
                }
                self.events.push(event);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// The server's embedder: user alice with secret SECRET, bearer token TOKEN.
    fn answer(&mut self, event: Event) {
        match event {
            Event::Authenticate(request) => {
                let ok = match request {
                    AuthRequest::Password { username, password, .. } => {
                        username == "alice" && password.expose() == SECRET.as_bytes()
                    }
                    AuthRequest::Apop { username, timestamp, digest } => {
                        username == "alice"
                            && apop_digest(&timestamp, SECRET.as_bytes()) == *digest.expose()
                    }
                    AuthRequest::CramMd5 { username, challenge, digest } => {
                        username == "alice"
                            && cram_md5_digest(SECRET.as_bytes(), challenge.as_bytes())
                                == *digest.expose()
                    }
                    AuthRequest::Bearer { username, token, .. } => {
                        username == "alice" && token.expose() == TOKEN
                    }
                    AuthRequest::Verified { username, .. } => username == "alice",
                };
                if !ok {
                    self.server.login_rejected(LoginError::BadCredentials).unwrap();
                } else if self.locked {
                    self.server.login_rejected(LoginError::InUse).unwrap();
                } else {
                    self.locked = true;
                    let infos = self.mail.iter().enumerate().map(|(i, m)| {
                        MessageInfo::new(pop3_proto::dot::wire_size(m), format!("uid-{i}")).unwrap()
                    });
                    self.server.login_accepted(Snapshot::new(infos.collect())).unwrap();
                }
            }
            Event::SaslFailed { .. } => {
                self.server.login_rejected(LoginError::BadCredentials).unwrap()
            }
            Event::ScramKeysNeeded { username } => {
                let keys = (username == "alice")
                    .then(|| ScramKeys::from_password(SECRET.as_bytes(), b"salt", 4096));
                self.server.scram_keys(keys).unwrap();
            }
            Event::RetrieveBody { index, .. } => {
                let body = self.mail[index].clone();
                for piece in body.chunks(3) {
                    if self.server.body_data(piece).unwrap() == BodyFlow::Done {
                        break;
                    }
                }
                self.server.body_end().unwrap();
            }
            Event::StartTls => self.server.tls_established().unwrap(),
            Event::Commit { deleted } => {
                if self.commit_fails {
                    self.server.commit_done(Err(CommitError)).unwrap();
                } else {
                    for &i in deleted.iter().rev() {
                        self.mail.remove(i);
                    }
                    self.server.commit_done(Ok(())).unwrap();
                }
            }
        }
    }

    /// Runs until quiet and returns the reply to `id`.
    fn reply(&mut self, id: RequestId) -> Reply {
        self.pump();
        self.events
            .iter()
            .find_map(|e| match e {
                ClientEvent::Reply { id: i, reply } if *i == id => Some(reply.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no reply to {id}: {:?}", self.events))
    }

    /// Runs until quiet and returns the body of `id`, or None if it was refused.
    fn body(&mut self, id: RequestId) -> Option<Vec<u8>> {
        self.pump();
        let mut body = Vec::new();
        let mut ended = false;
        for e in &self.events {
            match e {
                ClientEvent::BodyChunk { id: i, data } if *i == id => body.extend_from_slice(data),
                ClientEvent::BodyEnd { id: i } if *i == id => ended = true,
                ClientEvent::Reply { id: i, reply } if *i == id => panic!("refused: {reply:?}"),
                _ => {}
            }
        }
        ended.then_some(body)
    }

    fn login(&mut self) {
        let user = self.client.user("alice").unwrap();
        let pass = self.client.pass(SECRET).unwrap();
        assert!(self.reply(user).is_ok());
        assert!(self.reply(pass).is_ok(), "{:?}", self.reply(pass));
    }

    fn auth(&mut self, sasl: SaslClient) -> Reply {
        let id = self.client.auth(sasl).unwrap();
        self.reply(id)
    }
}

#[test]
fn every_command_against_the_server() {
    let mut p = Pair::plain();
    let capa = p.client.capa().unwrap();
    let Reply::Capabilities(caps) = p.reply(capa) else { panic!() };
    assert!(caps.contains(&Capability::Pipelining) && caps.contains(&Capability::Stls));
    let utf8 = p.client.utf8().unwrap();
    assert!(p.reply(utf8).is_ok());
    p.login();
    let stat = p.client.stat().unwrap();
    let sizes: Vec<u64> = mailbox().iter().map(|m| pop3_proto::dot::wire_size(m)).collect();
    assert_eq!(p.reply(stat), Reply::Stat { count: 3, size: sizes.iter().sum() });
    let list = p.client.list(None).unwrap();
    let Reply::ScanList(listing) = p.reply(list) else { panic!() };
    assert_eq!(listing.iter().map(|l| l.size).collect::<Vec<_>>(), sizes);
    let list2 = p.client.list(Some(msg(2))).unwrap();
    assert!(matches!(p.reply(list2), Reply::Scan(s) if s.size == sizes[1]));
    let uidl = p.client.uidl(None).unwrap();
    let Reply::UidList(uids) = p.reply(uidl) else { panic!() };
    assert_eq!(uids.iter().map(|u| u.uid()).collect::<Vec<_>>(), ["uid-0", "uid-1", "uid-2"]);
    let uidl3 = p.client.uidl(Some(msg(3))).unwrap();
    assert!(matches!(p.reply(uidl3), Reply::Uid(u) if u.uid() == "uid-2"));
    // Bodies come back exactly as the server sent them: CRLF line ends, unstuffed, and the
    // received length equals the announced size.
    for (n, size) in (1..=3).zip(&sizes) {
        let retr = p.client.retr(msg(n)).unwrap();
        let body = p.body(retr).unwrap();
        assert_eq!(body.len() as u64, *size, "message {n}");
    }
    let retr2 = p.client.retr(msg(2)).unwrap();
    assert_eq!(
        p.body(retr2).unwrap(),
        b"Subject: two\r\n\r\n.starts with a dot\r\nline 2\r\nline 3\r\n"
    );
    let top = p.client.top(msg(2), 1).unwrap();
    assert_eq!(p.body(top).unwrap(), b"Subject: two\r\n\r\n.starts with a dot\r\n");
    let last = p.client.last().unwrap();
    assert_eq!(p.reply(last), Reply::Last(3));
    let dele = p.client.dele(msg(1)).unwrap();
    assert!(p.reply(dele).is_ok());
    let dele_again = p.client.dele(msg(1)).unwrap();
    assert!(p.reply(dele_again).err().is_some());
    let rset = p.client.rset().unwrap();
    assert!(p.reply(rset).is_ok());
    let noop = p.client.noop().unwrap();
    assert!(p.reply(noop).is_ok());
    let lang = p.client.lang(LangArg::List).unwrap();
    assert!(matches!(p.reply(lang), Reply::Languages(l) if l[0].tag == "en"));
    let dele3 = p.client.dele(msg(3)).unwrap();
    assert!(p.reply(dele3).is_ok());
    let quit = p.client.quit().unwrap();
    assert!(p.reply(quit).is_ok());
    assert!(p.events.contains(&ClientEvent::Closed));
    assert_eq!(p.mail.len(), 2, "UPDATE removed exactly message 3");
    assert!(p.mail[1].starts_with(b"Subject: two"));
}

#[test]
fn pipelining_sends_commands_together_and_replies_arrive_in_order() {
    let mut p = Pair::plain();
    let capa = p.client.capa().unwrap();
    p.reply(capa);
    assert!(p.client.is_pipelining());
    p.login();
    p.client_writes.clear();
    let ids: Vec<RequestId> = (1..=3)
        .flat_map(|n| [p.client.list(Some(msg(n))).unwrap(), p.client.retr(msg(n)).unwrap()])
        .collect();
    p.pump();
    assert_eq!(
        p.client_writes.len(),
        1,
        "all six commands went out in one write: {:?}",
        p.client_writes
    );
    let order: Vec<RequestId> = p
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Reply { id, .. } | ClientEvent::BodyEnd { id } if ids.contains(id) => {
                Some(*id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(order, ids);
}

#[test]
fn without_pipelining_commands_go_one_at_a_time() {
    let mut p = Pair::plain();
    p.login();
    assert!(!p.client.is_pipelining(), "no CAPA yet: the client must not pipeline");
    p.client_writes.clear();
    let ids: Vec<RequestId> = (1..=3).map(|n| p.client.list(Some(msg(n))).unwrap()).collect();
    p.pump();
    assert_eq!(p.client_writes.len(), 3, "{:?}", p.client_writes);
    for id in ids {
        assert!(p.reply(id).is_ok());
    }
}

#[test]
fn every_sasl_mechanism_logs_in_and_a_wrong_secret_fails_with_auth() {
    let good: [fn(&str) -> SaslClient; 7] = [
        |s| SaslClient::plain(None, "alice", s),
        |s| SaslClient::login("alice", s),
        |s| SaslClient::cram_md5("alice", s),
        |s| SaslClient::scram_sha256("alice", s, "rOprNGfwEbeRWgbNEkqO"),
        |t| SaslClient::oauthbearer("alice", t, Some("pop.example.org"), Some(995)),
        |t| SaslClient::xoauth2("alice", t, true),
        |t| SaslClient::xoauth2("alice", t, false),
    ];
    for (i, make) in good.iter().enumerate() {
        let bearer = i >= 4;
        let right = if bearer { TOKEN } else { SECRET };
        let mut p = Pair::plain();
        let reply = p.auth(make(right));
        assert!(reply.is_ok(), "mechanism #{i}: {reply:?}");
        let stat = p.client.stat().unwrap();
        assert!(matches!(p.reply(stat), Reply::Stat { count: 3, .. }), "mechanism #{i}");

        let mut p = Pair::plain();
        let reply = p.auth(make("wrong"));
        let code = match &reply {
            Reply::Err(status) => status.code.clone(),
            Reply::AuthFailed { status, .. } => status.code.clone(),
            other => panic!("mechanism #{i} accepted a wrong secret: {other:?}"),
        };
        assert_eq!(code, Some(RespCode::Auth), "mechanism #{i}: {reply:?}");
    }
}

#[test]
fn apop_logs_in_and_a_second_session_is_told_in_use() {
    let mut p = Pair::plain();
    let apop = p.client.apop("alice", SECRET).unwrap();
    assert!(p.reply(apop).is_ok());
    // Same embedder, maildrop still locked: a second login gets [IN-USE].
    let mut q = Pair::plain();
    q.locked = true;
    let apop = q.client.apop("alice", SECRET).unwrap();
    assert_eq!(q.reply(apop).err().and_then(|s| s.code.clone()), Some(RespCode::InUse));
}

#[test]
fn stls_upgrades_then_capabilities_are_asked_again() {
    let config = ServerConfig { tls_available: true, ..ServerConfig::default() };
    let mut p = Pair::new(config, false);
    let capa = p.client.capa().unwrap();
    let Reply::Capabilities(before) = p.reply(capa) else { panic!() };
    assert!(!before.contains(&Capability::User), "no USER before TLS");
    let stls = p.client.stls().unwrap();
    assert!(p.reply(stls).is_ok());
    assert!(p.events.contains(&ClientEvent::StartTls));
    assert!(p.client.is_tls() && p.server.is_tls());
    let after = p.client.capabilities().unwrap().to_vec();
    assert!(after.contains(&Capability::User) && !after.contains(&Capability::Stls), "{after:?}");
    p.login();
}

#[test]
fn idle_timeouts_close_before_and_after_login_without_update() {
    let mut p = Pair::plain();
    p.now = Duration::from_secs(59);
    p.server.handle_timeout(p.now);
    assert!(!p.server.is_closed());
    p.now = Duration::from_secs(60);
    p.server.handle_timeout(p.now);
    p.pump();
    assert!(p.server.is_closed() && p.events.contains(&ClientEvent::Closed));

    let mut p = Pair::plain();
    p.login();
    let dele = p.client.dele(msg(1)).unwrap();
    assert!(p.reply(dele).is_ok());
    p.now = Duration::from_secs(599);
    p.server.handle_timeout(p.now);
    assert!(!p.server.is_closed(), "10 minutes after login");
    p.now = Duration::from_secs(600);
    p.server.handle_timeout(p.now);
    p.pump();
    assert!(p.events.contains(&ClientEvent::Closed));
    assert_eq!(p.mail.len(), 3, "nothing deleted without QUIT");
}

#[test]
fn a_failed_commit_is_reported_with_sys_temp() {
    let mut p = Pair::plain();
    p.commit_fails = true;
    p.login();
    let dele = p.client.dele(msg(2)).unwrap();
    p.reply(dele);
    let quit = p.client.quit().unwrap();
    let reply = p.reply(quit);
    assert_eq!(reply.err().and_then(|s| s.code.clone()), Some(RespCode::SysTemp), "{reply:?}");
}
