//! The client session against scripted server bytes.

#![forbid(unsafe_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::BytesMut;
use proptest::prelude::*;

use pop3_proto::client::{
    AuthError, ClientConfig, ClientError, ClientEvent, ClientSession, ProtocolError, Reply,
    RequestId,
};
use pop3_proto::sasl::{Mechanism, SaslClient, SaslError, SaslServer, ScramKeys, ServerStep};
use pop3_proto::{
    Capability, CommandError, LangArg, Limits, MsgNum, RespCode, ResponseError, ScanListing,
    Status, StatusLine, UidListing,
};

const GREETING: &[u8] = b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n";

fn msg(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap()
}

fn events(client: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

fn output(client: &mut ClientSession) -> String {
    String::from_utf8(client.take_output().to_vec()).unwrap()
}

/// A session that has read the greeting (and nothing else).
fn greeted() -> ClientSession {
    let mut client = ClientSession::new(ClientConfig::default());
    client.handle_input(GREETING);
    assert!(matches!(events(&mut client)[..], [ClientEvent::Greeting(_)]));
    client
}

/// A session whose server advertised PIPELINING.
fn pipelining(window: usize) -> ClientSession {
    let mut client =
        ClientSession::new(ClientConfig { pipeline_window: window, ..ClientConfig::default() });
    client.handle_input(GREETING);
    let capa = client.capa().unwrap();
    assert_eq!(output(&mut client), "CAPA\r\n");
    client.handle_input(b"+OK\r\nUSER\r\nPIPELINING\r\nUIDL\r\n.\r\n");
    let ev = events(&mut client);
    assert!(
        matches!(&ev[..], [ClientEvent::Greeting(_), ClientEvent::Reply { id, reply: Reply::Capabilities(caps) }]
            if *id == capa && caps.contains(&Capability::Pipelining)),
        "{ev:?}"
    );
    assert!(client.is_pipelining());
    client
}

fn reply(id: RequestId, reply: Reply) -> ClientEvent {
    ClientEvent::Reply { id, reply }
}

fn ok(text: &str) -> Reply {
    Reply::Ok(StatusLine::ok(text.to_owned()))
}

/// Sends one command on a fresh greeted session, checks its wire form, feeds `response` and
/// returns the events.
fn round_trip(
    queue: impl FnOnce(&mut ClientSession) -> Result<RequestId, ClientError>,
    wire: &str,
    response: &[u8],
) -> (RequestId, Vec<ClientEvent>) {
    let mut client = greeted();
    let id = queue(&mut client).unwrap();
    assert_eq!(output(&mut client), wire);
    client.handle_input(response);
    assert_eq!(client.in_flight(), 0);
    (id, events(&mut client))
}

// ---------------------------------------------------------------------------------------------
// Greeting

#[test]
fn the_greeting_is_reported_and_keeps_the_apop_timestamp() {
    let mut client = ClientSession::new(ClientConfig::default());
    client.handle_input(&GREETING[..10]);
    assert_eq!(client.poll_event(), None);
    assert_eq!(client.buffered_input(), 10);
    client.handle_input(&GREETING[10..]);
    let Some(ClientEvent::Greeting(greeting)) = client.poll_event() else { panic!() };
    assert!(greeting.is_ok());
    assert_eq!(greeting.apop_timestamp(), Some("<1896.697170952@dbc.mtview.ca.us>"));
    assert_eq!(client.greeting(), Some(&greeting));
    assert_eq!(client.buffered_input(), 0);
}

#[test]
fn commands_queued_before_the_greeting_wait_for_it() {
    let mut client = ClientSession::new(ClientConfig::default());
    let user = client.user("mrose").unwrap();
    assert!(!client.has_output());
    assert_eq!(client.queued(), 1);
    client.handle_input(GREETING);
    assert_eq!(output(&mut client), "USER mrose\r\n");
    client.handle_input(b"+OK\r\n");
    assert_eq!(events(&mut client)[1], reply(user, ok("")));
}

#[test]
fn an_err_greeting_closes_the_session() {
    let mut client = ClientSession::new(ClientConfig::default());
    client.user("mrose").unwrap();
    client.handle_input(b"-ERR [SYS/TEMP] too many connections\r\n+OK ignored\r\n");
    let ev = events(&mut client);
    let [ClientEvent::Greeting(greeting), ClientEvent::Closed] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!(greeting.status, Status::Err);
    assert_eq!(greeting.code, Some(RespCode::SysTemp));
    assert!(client.is_closed());
    assert!(!client.has_output(), "the queued USER is never sent");
    assert_eq!(client.stat(), Err(ClientError::Closed));
}

// ---------------------------------------------------------------------------------------------
// Every command and its typed reply

#[test]
fn stat_reply_is_typed() {
    let (id, ev) = round_trip(|c| c.stat(), "STAT\r\n", b"+OK 2 320\r\n");
    assert_eq!(ev, [reply(id, Reply::Stat { count: 2, size: 320 })]);
}

#[test]
fn list_with_and_without_argument() {
    let (id, ev) = round_trip(|c| c.list(Some(msg(2))), "LIST 2\r\n", b"+OK 2 200\r\n");
    assert_eq!(ev, [reply(id, Reply::Scan(ScanListing { msg: msg(2), size: 200 }))]);

    let (id, ev) = round_trip(
        |c| c.list(None),
        "LIST\r\n",
        b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n",
    );
    assert_eq!(
        ev,
        [reply(
            id,
            Reply::ScanList(vec![
                ScanListing { msg: msg(1), size: 120 },
                ScanListing { msg: msg(2), size: 200 },
            ])
        )]
    );
}

#[test]
fn uidl_with_and_without_argument() {
    let (id, ev) =
        round_trip(|c| c.uidl(Some(msg(2))), "UIDL 2\r\n", b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n");
    assert_eq!(ev, [reply(id, Reply::Uid(UidListing::new(msg(2), "QhdPYR:00WBw1Ph7x7").unwrap()))]);

    let (id, ev) = round_trip(
        |c| c.uidl(None),
        "UIDL\r\n",
        b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n",
    );
    assert_eq!(
        ev,
        [reply(
            id,
            Reply::UidList(vec![
                UidListing::new(msg(1), "whqtswO00WBw418f9t5JxYwZ").unwrap(),
                UidListing::new(msg(2), "QhdPYR:00WBw1Ph7x7").unwrap(),
            ])
        )]
    );
}

#[test]
fn capa_is_typed_and_remembered() {
    let mut client = greeted();
    assert_eq!(client.capabilities(), None);
    let id = client.capa().unwrap();
    assert_eq!(output(&mut client), "CAPA\r\n");
    client.handle_input(
        b"+OK Capability list follows\r\nTOP\r\nSASL PLAIN SCRAM-SHA-256\r\nSTLS\r\nIMPLEMENTATION Shlemazle 1.0\r\n.\r\n",
    );
    let expected = vec![
        Capability::Top,
        Capability::Sasl(vec!["PLAIN".into(), "SCRAM-SHA-256".into()]),
        Capability::Stls,
        Capability::Implementation("Shlemazle 1.0".into()),
    ];
    assert_eq!(events(&mut client), [reply(id, Reply::Capabilities(expected.clone()))]);
    assert_eq!(client.capabilities(), Some(&expected[..]));
    assert!(!client.is_pipelining());

    // A -ERR to a later CAPA forgets them.
    let id = client.capa().unwrap();
    client.handle_input(b"-ERR no\r\n");
    assert_eq!(events(&mut client), [reply(id, Reply::Err(StatusLine::err("no")))]);
    assert_eq!(client.capabilities(), None);
}

#[test]
fn lang_list_tag_and_wildcard() {
    let (id, ev) = round_trip(
        |c| c.lang(LangArg::List),
        "LANG\r\n",
        b"+OK Language listing follows:\r\nen English\r\nes Espanol\r\n.\r\n",
    );
    let [ClientEvent::Reply { id: got, reply: Reply::Languages(langs) }] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(*got, id);
    assert_eq!(
        langs.iter().map(|l| (&*l.tag, &*l.description)).collect::<Vec<_>>(),
        [("en", "English"), ("es", "Espanol")]
    );

    let (id, ev) = round_trip(
        |c| c.lang(LangArg::Tag("es".into())),
        "LANG es\r\n",
        b"+OK es Idioma cambiado\r\n",
    );
    assert_eq!(ev, [reply(id, ok("es Idioma cambiado"))]);
    let (id, ev) = round_trip(|c| c.lang(LangArg::Wildcard), "LANG *\r\n", b"+OK en\r\n");
    assert_eq!(ev, [reply(id, ok("en"))]);
}

#[test]
fn last_reply_is_typed() {
    let (id, ev) = round_trip(|c| c.last(), "LAST\r\n", b"+OK 3\r\n");
    assert_eq!(ev, [reply(id, Reply::Last(3))]);
}

#[test]
fn plain_commands_are_encoded_and_answered_ok() {
    type Queue = fn(&mut ClientSession) -> Result<RequestId, ClientError>;
    let cases: [(Queue, &str); 7] = [
        (|c| c.user("mrose"), "USER mrose\r\n"),
        (|c| c.pass("tan staaf"), "PASS tan staaf\r\n"),
        (|c| c.dele(msg(1)), "DELE 1\r\n"),
        (|c| c.rset(), "RSET\r\n"),
        (|c| c.noop(), "NOOP\r\n"),
        (|c| c.utf8(), "UTF8\r\n"),
        (|c| c.stls(), "STLS\r\n"),
    ];
    for (queue, wire) in cases {
        // STLS is answered with -ERR here: its +OK path has its own test.
        let (id, ev) = round_trip(queue, wire, b"-ERR not now\r\n");
        assert_eq!(ev, [reply(id, Reply::Err(StatusLine::err("not now")))], "{wire}");
        if wire != "STLS\r\n" {
            let (id, ev) = round_trip(queue, wire, b"+OK done\r\n");
            assert_eq!(ev, [reply(id, ok("done"))], "{wire}");
        }
    }
}

#[test]
fn retr_and_top_stream_the_body() {
    let mut client = greeted();
    let retr = client.retr(msg(1)).unwrap();
    assert_eq!(output(&mut client), "RETR 1\r\n");
    client.handle_input(b"+OK 120 octets\r\nSubject: x\r\n\r\n..dotted\r\n.\r\n");
    let ev = events(&mut client);
    assert_eq!(ev[0], ClientEvent::BodyStart { id: retr, status: StatusLine::ok("120 octets") });
    assert_eq!(body_of(&ev, retr), b"Subject: x\r\n\r\n.dotted\r\n");
    assert_eq!(ev.last(), Some(&ClientEvent::BodyEnd { id: retr }));

    let top = client.top(msg(1), 0).unwrap();
    assert_eq!(output(&mut client), "TOP 1 0\r\n");
    client.handle_input(b"-ERR [SYS/PERM] no such message\r\n");
    assert_eq!(
        events(&mut client),
        [reply(top, Reply::Err(StatusLine::err("no such message").with_code(RespCode::SysPerm)))]
    );
}

/// The concatenated BodyChunks of `id`.
fn body_of(events: &[ClientEvent], id: RequestId) -> Vec<u8> {
    let mut body = Vec::new();
    for e in events {
        if let ClientEvent::BodyChunk { id: got, data } = e {
            assert!(!data.is_empty(), "no empty chunks");
            if *got == id {
                body.extend_from_slice(data);
            }
        }
    }
    body
}

#[test]
fn err_replies_keep_every_response_code() {
    let codes: [(&str, RespCode<'static>); 7] = [
        ("IN-USE", RespCode::InUse),
        ("LOGIN-DELAY", RespCode::LoginDelay),
        ("SYS/TEMP", RespCode::SysTemp),
        ("SYS/PERM", RespCode::SysPerm),
        ("AUTH", RespCode::Auth),
        ("UTF8", RespCode::Utf8),
        ("X-VENDOR/THING", RespCode::Other("X-VENDOR/THING".into())),
    ];
    for (wire, code) in codes {
        let response = format!("-ERR [{wire}] no luck\r\n");
        let (id, ev) = round_trip(|c| c.pass("secret"), "PASS secret\r\n", response.as_bytes());
        let expected = StatusLine::err("no luck").with_code(code.clone());
        assert_eq!(ev, [reply(id, Reply::Err(expected.clone()))]);
        let [ClientEvent::Reply { reply, .. }] = &ev[..] else { panic!() };
        assert!(!reply.is_ok());
        assert_eq!(reply.err().and_then(|s| s.code.clone()), Some(code));
    }
}

#[test]
fn invalid_commands_are_refused_without_queuing() {
    let mut client = greeted();
    let bad = CommandError::InvalidByte;
    assert_eq!(client.user("mrose\r\nDELE 1"), Err(ClientError::InvalidCommand(bad)));
    assert_eq!(client.pass("x\r\nDELE 1"), Err(ClientError::InvalidCommand(bad)));
    assert_eq!(client.user(""), Err(ClientError::InvalidCommand(CommandError::MissingArgument)));
    assert_eq!(
        client.lang(LangArg::Tag("not a tag".into())),
        Err(ClientError::InvalidCommand(CommandError::InvalidArgument))
    );
    assert_eq!(client.queued() + client.in_flight(), 0);
    assert!(!client.has_output());
    // Ids are not burnt by refused commands.
    assert_eq!(client.noop().unwrap().get(), 0);
}

#[test]
fn quit_closes_and_nothing_can_follow_it() {
    let mut client = greeted();
    let noop = client.noop().unwrap();
    let quit = client.quit().unwrap();
    assert_eq!(client.noop(), Err(ClientError::Closed));
    assert_eq!(output(&mut client), "NOOP\r\n");
    client.handle_input(b"+OK\r\n");
    assert_eq!(output(&mut client), "QUIT\r\n");
    client.handle_input(b"-ERR [SYS/TEMP] some deleted messages not removed\r\n+OK junk\r\n");
    let ev = events(&mut client);
    assert_eq!(
        ev,
        [
            reply(noop, ok("")),
            reply(
                quit,
                Reply::Err(
                    StatusLine::err("some deleted messages not removed")
                        .with_code(RespCode::SysTemp)
                )
            ),
            ClientEvent::Closed,
        ]
    );
    assert!(client.is_closed());
}

// ---------------------------------------------------------------------------------------------
// Pipelining

#[test]
fn without_pipelining_commands_go_one_at_a_time() {
    let mut client = greeted();
    let stat = client.stat().unwrap();
    let list = client.list(Some(msg(1))).unwrap();
    let dele = client.dele(msg(1)).unwrap();
    assert_eq!(output(&mut client), "STAT\r\n");
    assert_eq!((client.in_flight(), client.queued()), (1, 2));

    client.handle_input(b"+OK 1 5\r\n");
    assert_eq!(output(&mut client), "LIST 1\r\n");
    client.handle_input(b"+OK 1 5\r\n");
    assert_eq!(output(&mut client), "DELE 1\r\n");
    client.handle_input(b"+OK deleted\r\n");
    assert!(!client.has_output());

    let ids: Vec<_> = events(&mut client)
        .into_iter()
        .map(|e| match e {
            ClientEvent::Reply { id, .. } => id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [stat, list, dele]);

    // A message being received still occupies the only slot.
    let mut client = greeted();
    client.retr(msg(1)).unwrap();
    client.noop().unwrap();
    client.auth(SaslClient::login("a", "b")).unwrap();
    assert_eq!(output(&mut client), "RETR 1\r\n");
    client.handle_input(b"+OK\r\nbody\r\n");
    assert!(!client.has_output(), "NOOP waits for the end of the body");
    client.handle_input(b".\r\n");
    assert_eq!(output(&mut client), "NOOP\r\n");
    client.handle_input(b"+OK\r\n");
    assert_eq!(output(&mut client), "AUTH LOGIN\r\n");
}

#[test]
fn with_pipelining_several_commands_go_in_one_output() {
    let mut client = pipelining(3);
    let ids: Vec<_> = (1..=5).map(|n| client.dele(msg(n)).unwrap()).collect();
    assert_eq!(output(&mut client), "DELE 1\r\nDELE 2\r\nDELE 3\r\n");
    assert_eq!((client.in_flight(), client.queued()), (3, 2));

    // Two replies in one read free two slots.
    client.handle_input(b"+OK 1\r\n+OK 2\r\n");
    assert_eq!(output(&mut client), "DELE 4\r\nDELE 5\r\n");
    client.handle_input(b"+OK 3\r\n+OK 4\r\n-ERR [SYS/PERM] 5\r\n");
    let ev = events(&mut client);
    let got: Vec<_> = ev
        .iter()
        .map(|e| match e {
            ClientEvent::Reply { id, reply } => (*id, reply.is_ok()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [(ids[0], true), (ids[1], true), (ids[2], true), (ids[3], true), (ids[4], false)]
    );
}

#[test]
fn the_default_window_is_sixteen_and_bounded() {
    let mut client = pipelining(ClientConfig::DEFAULT_PIPELINE_WINDOW);
    for n in 1..=40 {
        client.dele(msg(n)).unwrap();
    }
    assert_eq!(output(&mut client).matches("\r\n").count(), 16);
    assert_eq!(client.in_flight(), 16);

    let mut huge = pipelining(usize::MAX);
    for n in 1..=1000 {
        huge.noop().unwrap();
        let _ = n;
    }
    assert_eq!(huge.in_flight(), ClientConfig::MAX_PIPELINE_WINDOW);
}

#[test]
fn pipelining_never_goes_past_stls_auth_or_quit() {
    let mut client = pipelining(16);
    client.noop().unwrap();
    let stls = client.stls().unwrap();
    client.noop().unwrap();
    // STLS waits for the NOOP, and nothing goes after it.
    assert_eq!(output(&mut client), "NOOP\r\n");
    client.handle_input(b"+OK\r\n");
    assert_eq!(output(&mut client), "STLS\r\n");
    client.handle_input(b"-ERR [SYS/TEMP] TLS unavailable\r\n");
    let ev = events(&mut client);
    assert!(matches!(&ev[1], ClientEvent::Reply { id, reply: Reply::Err(_) } if *id == stls));
    assert_eq!(output(&mut client), "NOOP\r\n");
    client.handle_input(b"+OK\r\n");

    client.noop().unwrap();
    client.auth(SaslClient::plain(None, "tim", "tanstaaf")).unwrap();
    client.noop().unwrap();
    assert_eq!(output(&mut client), "NOOP\r\n");
    client.handle_input(b"+OK\r\n");
    assert_eq!(output(&mut client), "AUTH PLAIN AHRpbQB0YW5zdGFhZg==\r\n");
    client.handle_input(b"+OK welcome\r\n");
    assert_eq!(output(&mut client), "NOOP\r\n");
    client.handle_input(b"+OK\r\n");

    // QUIT may follow pipelined commands (it is the last one anyway).
    client.dele(msg(1)).unwrap();
    client.quit().unwrap();
    assert_eq!(output(&mut client), "DELE 1\r\nQUIT\r\n");
}

// ---------------------------------------------------------------------------------------------
// Bodies in arbitrary splits

/// A pipelined exchange: RETR (stuffed body), a bare-LF TOP, then STAT, answered in one read.
const PIPELINED_SERVER: &[u8] = b"+OK message follows\r\n\
Subject: dots\r\n\
\r\n\
..leading dot\r\n\
..\r\n\
...two dots\r\n\
last line\r\n\
.\r\n\
+OK top follows\r\n\
header: y\n\
\n\
.\n\
+OK 2 320\r\n";

fn pipelined_client() -> (ClientSession, [RequestId; 3]) {
    let mut client = pipelining(16);
    let ids =
        [client.retr(msg(1)).unwrap(), client.top(msg(2), 0).unwrap(), client.stat().unwrap()];
    assert_eq!(output(&mut client), "RETR 1\r\nTOP 2 0\r\nSTAT\r\n");
    (client, ids)
}

fn feed_in_chunks(client: &mut ClientSession, input: &[u8], cuts: &[usize]) -> Vec<ClientEvent> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    let mut all = Vec::new();
    for cut in cuts.into_iter().chain([input.len()]) {
        client.handle_input(&input[start..cut]);
        assert!(client.buffered_input() <= client.config().limits.response_line);
        all.extend(events(client));
        start = cut;
    }
    normalise(all)
}

/// Merges adjacent body chunks: their boundaries follow the reads and carry no meaning.
fn normalise(events: Vec<ClientEvent>) -> Vec<ClientEvent> {
    let mut out: Vec<ClientEvent> = Vec::new();
    for e in events {
        if let (
            Some(ClientEvent::BodyChunk { id: last, data: prev }),
            ClientEvent::BodyChunk { id, data },
        ) = (out.last_mut(), &e)
        {
            if last == id {
                let mut joined = BytesMut::from(&prev[..]);
                joined.extend_from_slice(data);
                *prev = joined.freeze();
                continue;
            }
        }
        out.push(e);
    }
    out
}

fn chunk(id: RequestId, data: &'static [u8]) -> ClientEvent {
    ClientEvent::BodyChunk { id, data: bytes::Bytes::from_static(data) }
}

fn expected_pipelined([retr, top, stat]: [RequestId; 3]) -> Vec<ClientEvent> {
    vec![
        ClientEvent::BodyStart { id: retr, status: StatusLine::ok("message follows") },
        chunk(retr, b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two dots\r\nlast line\r\n"),
        ClientEvent::BodyEnd { id: retr },
        ClientEvent::BodyStart { id: top, status: StatusLine::ok("top follows") },
        chunk(top, b"header: y\n\n"),
        ClientEvent::BodyEnd { id: top },
        reply(stat, Reply::Stat { count: 2, size: 320 }),
    ]
}

#[test]
fn a_pipelined_body_is_unstuffed_at_every_split_and_the_next_reply_decoded() {
    let (_, ids) = pipelined_client();
    let expected = expected_pipelined(ids);
    // One read.
    let (mut client, _) = pipelined_client();
    assert_eq!(feed_in_chunks(&mut client, PIPELINED_SERVER, &[]), expected);
    assert_eq!(client.in_flight(), 0);
    // Every two-piece split.
    for cut in 0..=PIPELINED_SERVER.len() {
        let (mut client, _) = pipelined_client();
        assert_eq!(
            feed_in_chunks(&mut client, PIPELINED_SERVER, &[cut]),
            expected,
            "split at {cut}"
        );
    }
    // One octet at a time.
    let (mut client, _) = pipelined_client();
    let cuts: Vec<usize> = (1..PIPELINED_SERVER.len()).collect();
    assert_eq!(feed_in_chunks(&mut client, PIPELINED_SERVER, &cuts), expected);
}

// ---------------------------------------------------------------------------------------------
// STLS

#[test]
fn stls_discards_buffered_bytes_and_reissues_capa_after_the_handshake() {
    let mut client = pipelining(16);
    let stls = client.stls().unwrap();
    let stat = client.stat().unwrap();
    assert_eq!(output(&mut client), "STLS\r\n");
    // An attacker appends a forged reply to the plaintext +OK (the STARTTLS injection).
    client.handle_input(b"+OK begin TLS\r\n+OK 99 99\r\n");
    assert_eq!(events(&mut client), [reply(stls, ok("begin TLS")), ClientEvent::StartTls]);
    // More plaintext before the handshake is ignored too.
    client.handle_input(b"+OK 98 98\r\n");
    assert_eq!(client.poll_event(), None);
    assert!(!client.has_output(), "nothing is sent before TLS");
    // Old capabilities are dropped: no pipelining until the new CAPA.
    assert!(!client.is_pipelining());

    let capa = client.tls_established().unwrap();
    assert!(client.is_tls());
    assert_eq!(client.capabilities(), None);
    assert_eq!(output(&mut client), "CAPA\r\n", "CAPA first, and alone");
    client.handle_input(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n");
    assert_eq!(output(&mut client), "STAT\r\n");
    client.handle_input(b"+OK 1 10\r\n");
    assert_eq!(
        events(&mut client),
        [
            reply(
                capa,
                Reply::Capabilities(vec![Capability::User, Capability::Sasl(vec!["PLAIN".into()])])
            ),
            reply(stat, Reply::Stat { count: 1, size: 10 }),
        ]
    );
    assert!(!client.is_pipelining());
    assert_eq!(client.stls(), Err(ClientError::TlsActive));
    assert_eq!(client.tls_established(), Err(ClientError::NotStartingTls));
}

#[test]
fn stls_plus_ok_split_across_reads_still_discards_what_follows() {
    let mut client = greeted();
    client.stls().unwrap();
    client.take_output();
    client.handle_input(b"+O");
    client.handle_input(b"K\r\n-ERR forged");
    assert_eq!(events(&mut client).last(), Some(&ClientEvent::StartTls));
    client.tls_established().unwrap();
    assert_eq!(client.buffered_input(), 0);
    // The forged partial line is gone: the CAPA reply parses cleanly.
    client.handle_input(b"+OK\r\nTOP\r\n.\r\n");
    let ev = events(&mut client);
    assert!(
        matches!(&ev[..], [ClientEvent::Reply { reply: Reply::Capabilities(c), .. }] if c == &[Capability::Top]),
        "{ev:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// APOP

#[test]
fn apop_digest_is_the_rfc_1939_known_answer() {
    let mut client = greeted();
    let id = client.apop("mrose", "tanstaaf").unwrap();
    assert_eq!(output(&mut client), "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    client.handle_input(b"+OK maildrop has 1 message (369 octets)\r\n");
    assert_eq!(events(&mut client), [reply(id, ok("maildrop has 1 message (369 octets)"))]);
}

#[test]
fn apop_needs_a_timestamp() {
    let mut client = ClientSession::new(ClientConfig::default());
    assert_eq!(client.apop("mrose", "tanstaaf"), Err(ClientError::NoApopTimestamp));
    client.handle_input(b"+OK no timestamp here\r\n");
    assert_eq!(client.apop("mrose", "tanstaaf"), Err(ClientError::NoApopTimestamp));
    assert!(!client.has_output());
}

// ---------------------------------------------------------------------------------------------
// SASL

/// `+ base64(data)\r\n`.
fn challenge(data: &[u8]) -> Vec<u8> {
    format!("+ {}\r\n", STANDARD.encode(data)).into_bytes()
}

fn decode_line(line: &str) -> Vec<u8> {
    STANDARD.decode(line.trim_end()).unwrap()
}

#[test]
fn auth_plain_sends_the_initial_response() {
    let mut client = greeted();
    let id = client.auth(SaslClient::plain(Some("admin"), "tim", "tanstaaf")).unwrap();
    let line = output(&mut client);
    let ir = line.strip_prefix("AUTH PLAIN ").unwrap();
    assert_eq!(decode_line(ir), b"admin\0tim\0tanstaaf");
    client.handle_input(b"+OK maildrop locked and ready\r\n");
    assert_eq!(events(&mut client), [reply(id, ok("maildrop locked and ready"))]);
}

#[test]
fn auth_answers_challenges_on_their_own_lines() {
    // LOGIN: two prompts, two answers.
    let mut client = greeted();
    let id = client.auth(SaslClient::login("tim", "tanstaaf")).unwrap();
    assert_eq!(output(&mut client), "AUTH LOGIN\r\n");
    client.handle_input(&challenge(b"Username:"));
    assert_eq!(decode_line(&output(&mut client)), b"tim");
    client.handle_input(&challenge(b"Password:"));
    assert_eq!(decode_line(&output(&mut client)), b"tanstaaf");
    client.handle_input(b"+OK\r\n");
    assert_eq!(events(&mut client), [reply(id, ok(""))]);

    // CRAM-MD5, RFC 2195 §2's known answer.
    let mut client = greeted();
    let id = client.auth(SaslClient::cram_md5("tim", "tanstaaftanstaaf")).unwrap();
    assert_eq!(output(&mut client), "AUTH CRAM-MD5\r\n");
    client.handle_input(b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n");
    assert_eq!(output(&mut client), "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n");
    client.handle_input(b"-ERR [AUTH] bad digest\r\n");
    assert_eq!(
        events(&mut client),
        [reply(id, Reply::Err(StatusLine::err("bad digest").with_code(RespCode::Auth)))]
    );
}

#[test]
fn auth_plain_without_initial_response_answers_the_empty_challenge() {
    let mut client = ClientSession::new(ClientConfig {
        sasl_initial_response: false,
        ..ClientConfig::default()
    });
    client.handle_input(GREETING);
    let id = client.auth(SaslClient::plain(None, "tim", "tanstaaf")).unwrap();
    assert_eq!(output(&mut client), "AUTH PLAIN\r\n");
    client.handle_input(b"+ \r\n");
    assert_eq!(decode_line(&output(&mut client)), b"\0tim\0tanstaaf");
    client.handle_input(b"-ERR [IN-USE] maildrop locked\r\n");
    let ev = events(&mut client);
    assert_eq!(
        ev[1..],
        [reply(id, Reply::Err(StatusLine::err("maildrop locked").with_code(RespCode::InUse)))]
    );
}

#[test]
fn auth_xoauth2_two_step_form() {
    // The two-step XOAUTH2 form: AUTH without initial response, an empty "+ " challenge,
    // then the token on its own line; the final -ERR keeps its code.
    let mut client = greeted();
    let id = client.auth(SaslClient::xoauth2("tim@example.com", "tok", false)).unwrap();
    assert_eq!(output(&mut client), "AUTH XOAUTH2\r\n");
    client.handle_input(b"+ \r\n");
    assert_eq!(
        decode_line(&output(&mut client)),
        b"user=tim@example.com\x01auth=Bearer tok\x01\x01"
    );
    client.handle_input(b"-ERR [SYS/TEMP] try later\r\n");
    assert_eq!(
        events(&mut client),
        [reply(id, Reply::Err(StatusLine::err("try later").with_code(RespCode::SysTemp)))]
    );
}

#[test]
fn auth_oauthbearer_error_challenge_is_acknowledged_with_0x01() {
    // RFC 7628 §3.2.3: the JSON error challenge is answered with a single 0x01, then -ERR.
    let mut client = greeted();
    let id = client.auth(SaslClient::oauthbearer("", "tok", None, None)).unwrap();
    let line = output(&mut client);
    assert!(line.starts_with("AUTH OAUTHBEARER "), "{line}");
    client.handle_input(&challenge(br#"{"status":"invalid_token"}"#));
    assert_eq!(decode_line(&output(&mut client)), b"\x01");
    client.handle_input(b"-ERR [AUTH] invalid token\r\n");
    assert_eq!(
        events(&mut client),
        [reply(id, Reply::Err(StatusLine::err("invalid token").with_code(RespCode::Auth)))]
    );
}

#[test]
fn auth_step_failure_cancels_with_a_star_and_reports_the_error() {
    let mut client = greeted();
    let id =
        client.auth(SaslClient::scram_sha256("user", "pencil", "rOprNGfwEbeRWgbNEkqO")).unwrap();
    client.take_output();
    // A server-first whose nonce does not extend ours.
    client.handle_input(&challenge(b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
    assert_eq!(output(&mut client), "*\r\n");
    client.handle_input(b"-ERR [AUTH] cancelled\r\n");
    assert_eq!(
        events(&mut client),
        [reply(
            id,
            Reply::AuthFailed {
                status: StatusLine::err("cancelled").with_code(RespCode::Auth),
                error: AuthError::Mechanism(SaslError::NonceMismatch),
            }
        )]
    );
}

#[test]
fn scram_against_a_real_server_side_succeeds_and_ok_without_proof_fails() {
    let stored = ScramKeys::from_password(b"pencil", b"salt of the earth", 4096);
    let mut server =
        SaslServer::new(Mechanism::ScramSha256, "server-nonce-0123456789", "pop.example");
    let mut client = greeted();
    let id =
        client.auth(SaslClient::scram_sha256("user", "pencil", "client-nonce-0123456789")).unwrap();
    let line = output(&mut client);
    let client_first = decode_line(line.strip_prefix("AUTH SCRAM-SHA-256 ").unwrap());
    let ServerStep::NeedScramKeys { .. } = server.start(Some(&client_first)) else { panic!() };
    let ServerStep::Challenge(server_first) = server.provide_scram_keys(Some(stored)) else {
        panic!()
    };
    client.handle_input(&challenge(&server_first));
    let client_final = decode_line(&output(&mut client));
    let ServerStep::Challenge(server_final) = server.step(&client_final) else { panic!() };
    client.handle_input(&challenge(&server_final));
    let ack = output(&mut client);
    assert_eq!(ack, "\r\n", "the empty response to server-final");
    assert!(matches!(server.step(&[]), ServerStep::Success { .. }));
    client.handle_input(b"+OK welcome\r\n");
    assert_eq!(events(&mut client), [reply(id, ok("welcome"))]);

    // A server that says +OK right after client-first has proved nothing.
    let mut client = greeted();
    let id =
        client.auth(SaslClient::scram_sha256("user", "pencil", "client-nonce-0123456789")).unwrap();
    client.take_output();
    client.handle_input(b"+OK come in\r\n");
    assert_eq!(
        events(&mut client),
        [reply(
            id,
            Reply::AuthFailed {
                status: StatusLine::ok("come in"),
                error: AuthError::ServerNotVerified,
            }
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// Garbage from the server

/// Queues commands with `setup` on a greeted session, feeds `input`, and returns the protocol
/// error it must cause, with the request id it names (if any) as a number.
fn garbage_case(setup: impl FnOnce(&mut ClientSession), input: &[u8]) -> ProtocolError {
    let mut client = greeted();
    setup(&mut client);
    client.take_output();
    client.handle_input(input);
    let ev = events(&mut client);
    let [.., ClientEvent::ProtocolError(error), ClientEvent::Closed] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert!(client.is_closed());
    assert!(!client.has_output());
    assert_eq!(client.noop(), Err(ClientError::Closed));
    // Input after the error is ignored.
    client.handle_input(b"+OK\r\n");
    assert_eq!(client.poll_event(), None);
    error.clone()
}

fn noop(client: &mut ClientSession) {
    client.noop().unwrap();
}

#[test]
fn garbage_from_the_server_is_a_typed_protocol_error() {
    let ProtocolError::Malformed { request: Some(id), error: ResponseError::InvalidStatus } =
        garbage_case(noop, b"HTTP/1.1 400 Bad Request\r\n")
    else {
        panic!()
    };
    assert_eq!(id.get(), 0, "names the NOOP");

    let ProtocolError::MissingValues { request } = garbage_case(
        |c| {
            c.noop().unwrap();
            c.stat().unwrap();
        },
        b"+OK\r\n+OK lots\r\n",
    ) else {
        panic!()
    };
    assert_eq!(request.get(), 1, "names the STAT");

    for (setup, input) in [
        (
            (|c: &mut ClientSession| {
                c.list(Some(msg(1))).unwrap();
            }) as fn(&mut ClientSession),
            &b"+OK one\r\n"[..],
        ),
        (
            |c| {
                c.uidl(Some(msg(1))).unwrap();
            },
            b"+OK 1\r\n",
        ),
        (
            |c| {
                c.last().unwrap();
            },
            b"+OK -1\r\n",
        ),
    ] {
        assert!(matches!(garbage_case(setup, input), ProtocolError::MissingValues { .. }));
    }

    assert!(matches!(
        garbage_case(
            |c| {
                c.uidl(None).unwrap();
            },
            b"+OK\r\n1 has spaces in it\r\n.\r\n"
        ),
        ProtocolError::Malformed { error: ResponseError::InvalidUidListing, .. }
    ));
    assert!(matches!(
        garbage_case(
            |c| {
                c.list(None).unwrap();
            },
            b"+OK\r\n0 12\r\n.\r\n"
        ),
        ProtocolError::Malformed { error: ResponseError::InvalidScanListing, .. }
    ));
    assert!(matches!(
        garbage_case(
            |c| {
                c.auth(SaslClient::login("a", "b")).unwrap();
            },
            b"+ !!notbase64!!\r\n"
        ),
        ProtocolError::Malformed { error: ResponseError::InvalidChallenge, .. }
    ));
    // A challenge where none may come.
    assert!(matches!(
        garbage_case(noop, b"+ AAAA\r\n"),
        ProtocolError::Malformed { error: ResponseError::InvalidStatus, .. }
    ));
    assert!(matches!(
        garbage_case(|_| {}, b"-ERR idle timeout\r\n"),
        ProtocolError::Unsolicited(status) if status.text == "idle timeout"
    ));
    let long = vec![b'A'; Limits::default().response_line + 10];
    assert_eq!(
        garbage_case(noop, &long),
        ProtocolError::LineTooLong { limit: Limits::default().response_line }
    );
}

#[test]
fn a_bad_greeting_is_a_protocol_error() {
    let mut client = ClientSession::new(ClientConfig::default());
    client.handle_input(b"\x00\xff\r\n");
    assert_eq!(
        events(&mut client),
        [
            ClientEvent::ProtocolError(ProtocolError::Malformed {
                request: None,
                error: ResponseError::InvalidStatus
            }),
            ClientEvent::Closed
        ]
    );
}

#[test]
fn an_over_long_line_split_over_reads_is_never_buffered_whole() {
    let mut client = greeted();
    client.noop().unwrap();
    let limit = client.config().limits.response_line;
    let chunk = vec![b'x'; 1000];
    let mut reads = 0;
    while !client.is_closed() {
        client.handle_input(&chunk);
        assert!(client.buffered_input() <= limit);
        reads += 1;
        assert!(reads <= limit / 1000 + 2, "the limit must trip");
    }
    assert!(matches!(
        events(&mut client)[..],
        [ClientEvent::ProtocolError(ProtocolError::LineTooLong { .. }), ClientEvent::Closed]
    ));
}

#[test]
fn a_listing_larger_than_the_block_limit_is_refused() {
    let mut client = ClientSession::new(ClientConfig {
        limits: Limits { multiline_block: 64, ..Limits::default() },
        ..ClientConfig::default()
    });
    client.handle_input(GREETING);
    let list = client.list(None).unwrap();
    client.handle_input(b"+OK\r\n");
    for n in 1..=20 {
        client.handle_input(format!("{n} 1000\r\n").as_bytes());
    }
    let ev = events(&mut client);
    assert_eq!(
        &ev[1..],
        [
            ClientEvent::ProtocolError(ProtocolError::ListingTooLarge { request: list, limit: 64 }),
            ClientEvent::Closed
        ]
    );
}

#[test]
fn eof_idle_closes_quietly_and_eof_mid_body_is_an_error() {
    let mut client = greeted();
    client.handle_eof();
    assert_eq!(events(&mut client), [ClientEvent::Closed]);
    client.handle_eof();
    assert_eq!(client.poll_event(), None);

    let eof_error = [ClientEvent::ProtocolError(ProtocolError::UnexpectedEof), ClientEvent::Closed];
    // Before the greeting.
    let mut client = ClientSession::new(ClientConfig::default());
    client.handle_eof();
    assert_eq!(events(&mut client), eof_error);
    // With a command unanswered.
    let mut client = greeted();
    client.noop().unwrap();
    client.handle_eof();
    assert_eq!(events(&mut client), eof_error);
    // In the middle of a line.
    let mut client = greeted();
    client.handle_input(b"+OK");
    client.handle_eof();
    assert_eq!(events(&mut client), eof_error);

    let mut client = greeted();
    let id = client.retr(msg(1)).unwrap();
    client.handle_input(b"+OK\r\npartial");
    client.handle_eof();
    let ev = events(&mut client);
    assert_eq!(
        &ev[ev.len() - 3..],
        [
            ClientEvent::BodyChunk { id, data: bytes::Bytes::from_static(b"partial") },
            ClientEvent::ProtocolError(ProtocolError::UnexpectedEof),
            ClientEvent::Closed
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A whole scripted session: greeting, CAPA with PIPELINING, then pipelined UIDL, LIST, RETR,
/// RETR (-ERR), TOP, DELE and QUIT.
const SERVER_TRANSCRIPT: &[u8] = b"+OK ready <1.2@host>\r\n\
+OK\r\nPIPELINING\r\nUIDL\r\nTOP\r\n.\r\n\
+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n\
+OK\r\n1 10\r\n2 20\r\n.\r\n\
+OK\r\nFrom: a\r\n\r\n..x\r\n.\r\n\
-ERR [SYS/PERM] gone\r\n\
+OK\r\nFrom: b\r\n\r\n.\r\n\
+OK deleted\r\n\
+OK bye\r\n";

/// Queues the transcript's commands up front (they go out one at a time until the CAPA reply
/// opens the window), then feeds the transcript cut at `cuts`.
fn run_transcript(cuts: &[usize]) -> Vec<ClientEvent> {
    let mut client = ClientSession::new(ClientConfig::default());
    client.capa().unwrap();
    client.uidl(None).unwrap();
    client.list(None).unwrap();
    client.retr(msg(1)).unwrap();
    client.retr(msg(2)).unwrap();
    client.top(msg(3), 0).unwrap();
    client.dele(msg(1)).unwrap();
    client.quit().unwrap();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (SERVER_TRANSCRIPT.len() + 1)).collect();
    cuts.sort_unstable();
    let mut all = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([SERVER_TRANSCRIPT.len()]) {
        client.handle_input(&SERVER_TRANSCRIPT[start..cut]);
        all.extend(events(&mut client));
        client.take_output();
        assert!(client.buffered_input() <= client.config().limits.response_line);
        start = cut;
    }
    normalise(all)
}

#[test]
fn the_transcript_in_one_piece() {
    let ev = run_transcript(&[]);
    // Ids in queueing order: CAPA 0, UIDL 1, LIST 2, RETR 3, RETR 4, TOP 5, DELE 6, QUIT 7.
    let summary: Vec<String> = ev
        .iter()
        .map(|e| match e {
            ClientEvent::Greeting(_) => "greeting".into(),
            ClientEvent::Reply { id, reply } => format!(
                "{} {}",
                id.get(),
                match reply {
                    Reply::Capabilities(c) => format!("capa {}", c.len()),
                    Reply::UidList(v) => format!("uidl {}", v.len()),
                    Reply::ScanList(v) => format!("list {}", v.len()),
                    Reply::Err(s) => format!("err {:?}", s.code),
                    Reply::Ok(s) => format!("ok {}", s.text),
                    other => format!("{other:?}"),
                }
            ),
            ClientEvent::BodyStart { id, .. } => format!("{} start", id.get()),
            ClientEvent::BodyChunk { id, data } => {
                format!("{} {:?}", id.get(), String::from_utf8_lossy(data))
            }
            ClientEvent::BodyEnd { id } => format!("{} end", id.get()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "greeting",
            "0 capa 3",
            "1 uidl 2",
            "2 list 2",
            "3 start",
            "3 \"From: a\\r\\n\\r\\n.x\\r\\n\"",
            "3 end",
            "4 err Some(SysPerm)",
            "5 start",
            "5 \"From: b\\r\\n\\r\\n\"",
            "5 end",
            "6 ok deleted",
            "7 ok bye",
            "Closed",
        ]
    );
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(cuts in proptest::collection::vec(0usize..10_000, 0..40)) {
        // The command queueing happens once PIPELINING is known, which in a chunked run may
        // be after more of the transcript has arrived: replies are decoded by the FIFO either
        // way, so the events are identical.
        prop_assert_eq!(run_transcript(&cuts), run_transcript(&[]));
    }

    #[test]
    fn random_server_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(0usize..2000, 0..20),
        pipelined in any::<bool>(),
    ) {
        let mut client = if pipelined { pipelining(4) } else { greeted() };
        client.stat().unwrap();
        client.retr(msg(1)).unwrap();
        client.capa().unwrap();
        client.auth(SaslClient::login("a", "b")).unwrap();
        client.uidl(None).unwrap();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut start = 0;
        let mut all = Vec::new();
        for cut in cuts.into_iter().chain([data.len()]) {
            client.handle_input(&data[start..cut]);
            prop_assert!(client.buffered_input() <= client.config().limits.response_line);
            all.extend(events(&mut client));
            let _ = client.take_output();
            start = cut;
        }
        client.handle_eof();
        all.extend(events(&mut client));
        // However the bytes went, the session ends closed, exactly once, and Closed is last.
        prop_assert_eq!(all.last(), Some(&ClientEvent::Closed));
        prop_assert_eq!(all.iter().filter(|e| **e == ClientEvent::Closed).count(), 1);
    }
}
