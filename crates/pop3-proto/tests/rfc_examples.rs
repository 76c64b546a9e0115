//! Known-answer tests: the example sessions of RFC 1939 §10, RFC 2449, RFC 2595 and RFC 5034,
//! in both directions. Each client line is decoded and compared with the expected command, and
//! the command is encoded and compared with the RFC's bytes; each server response likewise.

#![forbid(unsafe_code)]

use std::borrow::Cow;

use bytes::BytesMut;
use pop3_proto::{
    Capability, Command, CommandDecoder, DotStuffer, DotUnstuffer, Expect, Expire, MsgNum,
    RespCode, Response, ResponseDecoder, SaslResponse, ScanListing, Secret, StatusLine,
};

fn msg(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap()
}

/// The client sends `wire`, which is `command`.
fn client(wire: &str, command: Command<'_>) {
    let mut decoder = CommandDecoder::default();
    let d = decoder.decode(wire.as_bytes());
    assert_eq!(d.consumed, wire.len(), "{wire:?}");
    assert_eq!(d.outcome, Ok(Some(command.clone())), "{wire:?}");
    let mut out = BytesMut::new();
    command.encode(&mut out).unwrap();
    assert_eq!(&out[..], wire.as_bytes());
}

/// The server sends `wire`, which is `response` when the client expects `expect`.
fn server(wire: &str, expect: Expect, response: Response<'_>) {
    let mut decoder = ResponseDecoder::default();
    let d = decoder.decode(wire.as_bytes(), expect);
    assert_eq!(d.consumed, wire.len(), "{wire:?}");
    assert_eq!(d.outcome, Ok(Some(response.clone())), "{wire:?}");
    let mut out = BytesMut::new();
    response.encode(&mut out);
    assert_eq!(std::str::from_utf8(&out).unwrap(), wire);
}

fn ok(text: &str) -> Response<'_> {
    Response::Status(StatusLine::ok(text))
}

fn err(text: &str) -> Response<'_> {
    Response::Status(StatusLine::err(text))
}

/// RFC 1939 §10, the whole example session; message bodies are dot-stuffed and unstuffed.
#[test]
fn rfc1939_section_10_example_session() {
    let greeting = "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n";
    server(greeting, Expect::Status, ok("POP3 server ready <1896.697170952@dbc.mtview.ca.us>"));
    let Response::Status(g) = ResponseDecoder::default()
        .decode(greeting.as_bytes(), Expect::Status)
        .outcome
        .unwrap()
        .unwrap()
    else {
        panic!("greeting is a status line")
    };
    assert_eq!(g.apop_timestamp(), Some("<1896.697170952@dbc.mtview.ca.us>"));

    client(
        "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
        Command::Apop {
            name: "mrose".into(),
            digest: Secret::new("c4c9334bac560ecc979e58001b3e22fb".into()),
        },
    );
    server(
        "+OK mrose's maildrop has 2 messages (320 octets)\r\n",
        Expect::Status,
        ok("mrose's maildrop has 2 messages (320 octets)"),
    );
    client("STAT\r\n", Command::Stat);
    server("+OK 2 320\r\n", Expect::Status, ok("2 320"));
    assert_eq!(StatusLine::ok("2 320").stat(), Some((2, 320)));
    client("LIST\r\n", Command::List(None));
    server(
        "+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n",
        Expect::List,
        Response::ScanList(
            StatusLine::ok("2 messages (320 octets)"),
            vec![ScanListing { msg: msg(1), size: 120 }, ScanListing { msg: msg(2), size: 200 }],
        ),
    );
    for (n, size) in [(1, 120), (2, 200)] {
        client(&format!("RETR {n}\r\n"), Command::Retr(msg(n)));
        server(&format!("+OK {size} octets\r\n"), Expect::Status, ok(&format!("{size} octets")));
        let body = "Subject: x\r\n\r\n.dot-led line\r\n";
        let mut wire = BytesMut::new();
        let mut stuffer = DotStuffer::new();
        stuffer.stuff(body.as_bytes(), &mut wire);
        stuffer.finish(&mut wire);
        assert_eq!(&wire[..], b"Subject: x\r\n\r\n..dot-led line\r\n.\r\n");
        let mut payload = BytesMut::new();
        let u = DotUnstuffer::new().unstuff(&wire, &mut payload);
        assert!(u.done);
        assert_eq!(&payload[..], body.as_bytes());
        client(&format!("DELE {n}\r\n"), Command::Dele(msg(n)));
        server(
            &format!("+OK message {n} deleted\r\n"),
            Expect::Status,
            ok(&format!("message {n} deleted")),
        );
    }
    client("QUIT\r\n", Command::Quit);
    server(
        "+OK dewey POP3 server signing off (maildrop empty)\r\n",
        Expect::Status,
        ok("dewey POP3 server signing off (maildrop empty)"),
    );
}

/// RFC 1939 §5-§7: the example exchanges of each command.
#[test]
fn rfc1939_command_examples() {
    client("USER frated\r\n", Command::User("frated".into()));
    server(
        "-ERR sorry, no mailbox for frated here\r\n",
        Expect::Status,
        err("sorry, no mailbox for frated here"),
    );
    client("PASS secret\r\n", Command::Pass(Secret::new(Cow::Borrowed(&b"secret"[..]))));
    server("-ERR maildrop already locked\r\n", Expect::Status, err("maildrop already locked"));
    client("LIST 2\r\n", Command::List(Some(msg(2))));
    server("+OK 2 200\r\n", Expect::Status, ok("2 200"));
    assert_eq!(
        StatusLine::ok("2 200").scan_listing(),
        Some(ScanListing { msg: msg(2), size: 200 })
    );
    client("LIST 3\r\n", Command::List(Some(msg(3))));
    server(
        "-ERR no such message, only 2 messages in maildrop\r\n",
        Expect::Status,
        err("no such message, only 2 messages in maildrop"),
    );
    client("TOP 1 10\r\n", Command::Top { msg: msg(1), lines: 10 });
    client("UIDL\r\n", Command::Uidl(None));
    server(
        "+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n",
        Expect::Uidl,
        Response::UidList(
            StatusLine::ok(""),
            vec![
                pop3_proto::UidListing::new(msg(1), "whqtswO00WBw418f9t5JxYwZ").unwrap(),
                pop3_proto::UidListing::new(msg(2), "QhdPYR:00WBw1Ph7x7").unwrap(),
            ],
        ),
    );
    client("UIDL 2\r\n", Command::Uidl(Some(msg(2))));
    server("+OK 2 QhdPYR:00WBw1Ph7x7\r\n", Expect::Status, ok("2 QhdPYR:00WBw1Ph7x7"));
    assert_eq!(
        StatusLine::ok("2 QhdPYR:00WBw1Ph7x7").uid_listing().map(|u| u.uid().to_owned()),
        Some("QhdPYR:00WBw1Ph7x7".to_owned())
    );
    client("NOOP\r\n", Command::Noop);
    client("RSET\r\n", Command::Rset);
    server(
        "+OK maildrop has 2 messages (320 octets)\r\n",
        Expect::Status,
        ok("maildrop has 2 messages (320 octets)"),
    );
}

/// RFC 2449 §5 (CAPA example) and §8 (response codes).
#[test]
fn rfc2449_capa_and_response_codes() {
    client("CAPA\r\n", Command::Capa);
    server(
        "+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL CRAM-MD5 KERBEROS_V4\r\nRESP-CODES\r\n\
         LOGIN-DELAY 900\r\nPIPELINING\r\nEXPIRE 60\r\nUIDL\r\nIMPLEMENTATION Shlemazle-Plotz-v302\r\n.\r\n",
        Expect::Capa,
        Response::Capabilities(
            StatusLine::ok("Capability list follows"),
            vec![
                Capability::Top,
                Capability::User,
                Capability::Sasl(vec!["CRAM-MD5".into(), "KERBEROS_V4".into()]),
                Capability::RespCodes,
                Capability::LoginDelay { seconds: 900, per_user: false },
                Capability::Pipelining,
                Capability::Expire { policy: Expire::Days(60), per_user: false },
                Capability::Uidl,
                Capability::Implementation("Shlemazle-Plotz-v302".into()),
            ],
        ),
    );
    server(
        "-ERR [IN-USE] Do you have another POP session running?\r\n",
        Expect::Status,
        Response::Status(
            StatusLine::err("Do you have another POP session running?").with_code(RespCode::InUse),
        ),
    );
    server(
        "-ERR [LOGIN-DELAY] wait longer\r\n",
        Expect::Status,
        Response::Status(StatusLine::err("wait longer").with_code(RespCode::LoginDelay)),
    );
    // RFC 3206 codes and an unknown hierarchical one, kept verbatim.
    server(
        "-ERR [SYS/TEMP] try later\r\n",
        Expect::Status,
        Response::Status(StatusLine::err("try later").with_code(RespCode::SysTemp)),
    );
    server(
        "-ERR [AUTH] bad password\r\n",
        Expect::Status,
        Response::Status(StatusLine::err("bad password").with_code(RespCode::Auth)),
    );
    server(
        "-ERR [EXT/VENDOR/X-1] odd\r\n",
        Expect::Status,
        Response::Status(
            StatusLine::err("odd").with_code(RespCode::Other("EXT/VENDOR/X-1".into())),
        ),
    );
}

/// RFC 2595 §4: STLS.
#[test]
fn rfc2595_stls() {
    client("STLS\r\n", Command::Stls);
    server("+OK Begin TLS negotiation\r\n", Expect::Status, ok("Begin TLS negotiation"));
    server(
        "-ERR Command not permitted when TLS active\r\n",
        Expect::Status,
        err("Command not permitted when TLS active"),
    );
}

/// RFC 5034 §6: the SASL examples, including the empty challenge and the empty response.
#[test]
fn rfc5034_sasl_examples() {
    server(
        "+OK List of capabilities follows\r\nSASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS\r\nSTLS\r\n\
         IMPLEMENTATION BlurdyBlurp POP3 server\r\n.\r\n",
        Expect::Capa,
        Response::Capabilities(
            StatusLine::ok("List of capabilities follows"),
            vec![
                Capability::Sasl(vec![
                    "PLAIN".into(),
                    "DIGEST-MD5".into(),
                    "GSSAPI".into(),
                    "ANONYMOUS".into(),
                ]),
                Capability::Stls,
                Capability::Implementation("BlurdyBlurp POP3 server".into()),
            ],
        ),
    );
    client("AUTH PLAIN\r\n", Command::Auth { mechanism: "PLAIN".into(), initial_response: None });
    // The RFC prints the empty challenge as "+"; its grammar is `"+" SP [base64]`.
    server("+ \r\n", Expect::Sasl, Response::Challenge(Secret::new("".into())));
    let bare = ResponseDecoder::default().decode(b"+\r\n", Expect::Sasl);
    assert_eq!(bare.outcome, Ok(Some(Response::Challenge(Secret::new("".into())))));
    let mut decoder = CommandDecoder::default();
    let d = decoder.decode_sasl(b"dGVzdAB0ZXN0AHRlc3Q=\r\n");
    assert_eq!(d.outcome, Ok(Some(SaslResponse::Data(Secret::new("dGVzdAB0ZXN0AHRlc3Q=".into())))));
    server("+OK Maildrop locked and ready\r\n", Expect::Sasl, ok("Maildrop locked and ready"));

    client(
        "AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
        Command::Auth {
            mechanism: "PLAIN".into(),
            initial_response: Some(Secret::new("dGVzdAB0ZXN0AHRlc3Q=".into())),
        },
    );
    client(
        "AUTH EXTERNAL =\r\n",
        Command::Auth {
            mechanism: "EXTERNAL".into(),
            initial_response: Some(Secret::new("".into())),
        },
    );
    server(
        "+ cnNwYXV0aD1lYTQwZjYwMzM1YzQyN2I1NTI3Yjg0ZGJhYmNkZmZmZA==\r\n",
        Expect::Sasl,
        Response::Challenge(Secret::new(
            "cnNwYXV0aD1lYTQwZjYwMzM1YzQyN2I1NTI3Yjg0ZGJhYmNkZmZmZA==".into(),
        )),
    );
    // The client's empty response is an empty line; "*" cancels.
    let d = decoder.decode_sasl(b"\r\n*\r\n");
    assert_eq!(d.outcome, Ok(Some(SaslResponse::Data(Secret::new("".into())))));
    let d2 = decoder.decode_sasl(&b"\r\n*\r\n"[d.consumed..]);
    assert_eq!(d2.outcome, Ok(Some(SaslResponse::Cancel)));
    let mut out = BytesMut::new();
    SaslResponse::Cancel.encode(&mut out).unwrap();
    SaslResponse::Data(Secret::new("".into())).encode(&mut out).unwrap();
    assert_eq!(&out[..], b"*\r\n\r\n");
}

/// RFC 6856: UTF8 and LANG.
#[test]
fn rfc6856_utf8_and_lang() {
    client("UTF8\r\n", Command::Utf8);
    client("LANG\r\n", Command::Lang(pop3_proto::LangArg::List));
    client("LANG *\r\n", Command::Lang(pop3_proto::LangArg::Wildcard));
    client("LANG es\r\n", Command::Lang(pop3_proto::LangArg::Tag("es".into())));
    server(
        "+OK Language listing follows\r\nen English\r\nes Espa\u{f1}ol\r\n.\r\n",
        Expect::Lang,
        Response::Languages(
            StatusLine::ok("Language listing follows"),
            vec![
                pop3_proto::LangListing { tag: "en".into(), description: "English".into() },
                pop3_proto::LangListing { tag: "es".into(), description: "Espa\u{f1}ol".into() },
            ],
        ),
    );
    client("USER J\u{f6}rg\r\n", Command::User("J\u{f6}rg".into()));
}
