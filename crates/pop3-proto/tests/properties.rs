//! Properties of the command and response codecs:
//! - `decode(encode(x)) == x` for every command and response type;
//! - split invariance: the same input in any chunking decodes to the same sequence, including
//!   malformed and over-long lines.

#![forbid(unsafe_code)]

use std::borrow::Cow;

use bytes::BytesMut;
use pop3_proto::{
    Capability, Command, CommandDecoder, CommandError, DecodeError, Decoded, Expect, Expire,
    LangArg, LangListing, Limits, ListItem, MsgNum, RespCode, Response, ResponseDecoder,
    ResponseError, SaslResponse, ScanListing, Secret, StatusLine, UidListing,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn msg_num() -> impl Strategy<Value = MsgNum> {
    prop_oneof![1u32..=20, 1u32..=u32::MAX].prop_map(|n| MsgNum::new(n).unwrap())
}

fn owned(s: String) -> Cow<'static, str> {
    Cow::Owned(s)
}

fn base64() -> impl Strategy<Value = String> {
    "([A-Za-z0-9+/]{4}){0,12}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
}

/// Text without control characters; `[^\pC]` also keeps it valid UTF-8 of any script.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~\u{e0}-\u{ff}\u{4e00}-\u{4e10}]{{1,{max}}}"))
        .unwrap()
}

fn command() -> impl Strategy<Value = Command<'static>> {
    prop_oneof![
        text(40).prop_map(|u| Command::User(owned(u))),
        vec(any::<u8>().prop_filter("no NUL, CR, LF", |b| !matches!(b, 0 | b'\r' | b'\n')), 0..40)
            .prop_map(|p| Command::Pass(Secret::new(Cow::Owned(p)))),
        (text(30), "[0-9a-fA-F]{32}").prop_map(|(name, digest)| Command::Apop {
            name: owned(name),
            digest: Secret::new(owned(digest)),
        }),
        Just(Command::Quit),
        Just(Command::Stat),
        proptest::option::of(msg_num()).prop_map(Command::List),
        msg_num().prop_map(Command::Retr),
        msg_num().prop_map(Command::Dele),
        Just(Command::Noop),
        Just(Command::Rset),
        (msg_num(), any::<u32>()).prop_map(|(msg, lines)| Command::Top { msg, lines }),
        proptest::option::of(msg_num()).prop_map(Command::Uidl),
        Just(Command::Capa),
        Just(Command::Stls),
        ("[A-Za-z0-9_-]{1,20}", proptest::option::of(base64())).prop_map(|(m, r)| {
            Command::Auth {
                mechanism: owned(m),
                initial_response: r.map(|r| Secret::new(owned(r))),
            }
        }),
        Just(Command::Utf8),
        prop_oneof![
            Just(LangArg::List),
            Just(LangArg::Wildcard),
            "[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8}){0,2}".prop_map(|t| LangArg::Tag(owned(t))),
        ]
        .prop_map(Command::Lang),
        Just(Command::Last),
    ]
}

fn resp_code() -> impl Strategy<Value = RespCode<'static>> {
    prop_oneof![
        Just(RespCode::InUse),
        Just(RespCode::LoginDelay),
        Just(RespCode::SysTemp),
        Just(RespCode::SysPerm),
        Just(RespCode::Auth),
        Just(RespCode::Utf8),
        "X-[A-Z0-9-]{1,10}(/[A-Za-z0-9.-]{1,10}){0,2}".prop_map(|c| RespCode::Other(owned(c))),
    ]
}

fn status_line() -> impl Strategy<Value = StatusLine<'static>> {
    // Without a code, the text must not start with '[' (RFC 2449 §8 reserves that for codes).
    let text =
        prop_oneof![Just(String::new()), text(120).prop_filter("no '['", |t| !t.starts_with('['))];
    (any::<bool>(), proptest::option::of(resp_code()), text).prop_map(|(ok, code, text)| {
        let line = if ok { StatusLine::ok(text) } else { StatusLine::err(text) };
        match code {
            Some(code) => line.with_code(code),
            None => line,
        }
    })
}

fn ok_line() -> impl Strategy<Value = StatusLine<'static>> {
    status_line().prop_map(|mut s| {
        s.status = pop3_proto::Status::Ok;
        s
    })
}

fn word() -> impl Strategy<Value = Cow<'static, str>> {
    "[!-~]{1,12}".prop_map(owned)
}

fn capability() -> impl Strategy<Value = Capability<'static>> {
    prop_oneof![
        Just(Capability::Top),
        Just(Capability::User),
        vec("[A-Z0-9_-]{1,20}".prop_map(owned), 0..5).prop_map(Capability::Sasl),
        Just(Capability::RespCodes),
        (any::<u32>(), any::<bool>())
            .prop_map(|(seconds, per_user)| Capability::LoginDelay { seconds, per_user }),
        Just(Capability::Pipelining),
        (prop_oneof![Just(Expire::Never), any::<u32>().prop_map(Expire::Days)], any::<bool>())
            .prop_map(|(policy, per_user)| Capability::Expire { policy, per_user }),
        Just(Capability::Uidl),
        prop_oneof![Just(String::new()), text(60)]
            .prop_map(|t| Capability::Implementation(owned(t))),
        Just(Capability::Stls),
        Just(Capability::AuthRespCode),
        any::<bool>().prop_map(|user| Capability::Utf8 { user }),
        Just(Capability::Lang),
        ("X-[A-Z0-9.-]{1,10}|\\.[A-Z]{1,5}", vec(word(), 0..4))
            .prop_map(|(name, params)| { Capability::Other { name: owned(name), params } }),
    ]
}

fn response() -> impl Strategy<Value = (Response<'static>, Expect)> {
    prop_oneof![
        status_line().prop_map(|s| (Response::Status(s), Expect::Status)),
        base64().prop_map(|b| (Response::Challenge(Secret::new(owned(b))), Expect::Sasl)),
        (ok_line(), vec(capability(), 0..12))
            .prop_map(|(s, c)| (Response::Capabilities(s, c), Expect::Capa)),
        (ok_line(), vec((msg_num(), any::<u64>()), 0..30)).prop_map(|(s, l)| {
            let l = l.into_iter().map(|(msg, size)| ScanListing { msg, size }).collect();
            (Response::ScanList(s, l), Expect::List)
        }),
        (ok_line(), vec((msg_num(), "[!-~]{1,70}"), 0..30)).prop_map(|(s, l)| {
            let l = l.into_iter().map(|(m, u)| UidListing::new(m, u).unwrap()).collect();
            (Response::UidList(s, l), Expect::Uidl)
        }),
        (
            ok_line(),
            vec(("[a-z]{2}(-[A-Z]{2})?", prop_oneof![Just(String::new()), text(30)]), 0..5)
        )
            .prop_map(|(s, l)| {
                let l = l
                    .into_iter()
                    .map(|(t, d)| LangListing { tag: owned(t), description: owned(d) })
                    .collect();
                (Response::Languages(s, l), Expect::Lang)
            }),
    ]
}

/// A sequence of lines a client might send, some valid, some malformed, some over-long.
fn command_stream() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => command().prop_map(|c| {
            let mut out = BytesMut::new();
            c.encode(&mut out).unwrap();
            out.to_vec()
        }),
        1 => vec(any::<u8>(), 0..40).prop_map(|mut l| {
            l.push(b'\n');
            l
        }),
        1 => (200usize..2000).prop_map(|n| {
            let mut l = vec![b'X'; n];
            l.extend_from_slice(b"\r\n");
            l
        }),
    ];
    vec(line, 0..12).prop_map(|lines| lines.concat())
}

/// Splits `input` at `cuts` (sorted positions), as reads from a socket would.
fn chunks<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        out.push(&input[at..cut]);
        at = cut;
    }
    out
}

type Outcome<T, E> = Result<T, DecodeError<E>>;

/// Feeds chunks into a buffer and decodes as a server loop would, recording every outcome.
fn feed<T, E>(
    pieces: &[&[u8]],
    mut decode: impl FnMut(&[u8]) -> Decoded<T, E>,
) -> Vec<Outcome<T, E>> {
    let mut buffer = Vec::new();
    let mut seen = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            let Decoded { consumed, outcome } = decode(&buffer);
            buffer.drain(..consumed);
            match outcome {
                Ok(None) => break,
                Ok(Some(value)) => seen.push(Ok(value)),
                Err(e) => seen.push(Err(e)),
            }
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_command_round_trips(command in command()) {
        let mut out = BytesMut::new();
        command.encode(&mut out).unwrap();
        prop_assert!(out.len() >= 4);
        let d = CommandDecoder::new(Limits { command_line: 1024, ..Limits::default() }).decode(&out);
        prop_assert_eq!(d.consumed, out.len());
        prop_assert_eq!(d.outcome, Ok(Some(command)));
    }

    #[test]
    fn every_sasl_response_round_trips(data in proptest::option::of(base64())) {
        let response = match data {
            Some(d) => SaslResponse::Data(Secret::new(owned(d))),
            None => SaslResponse::Cancel,
        };
        let mut out = BytesMut::new();
        response.encode(&mut out).unwrap();
        let d = CommandDecoder::default().decode_sasl(&out);
        prop_assert_eq!(d.consumed, out.len());
        prop_assert_eq!(d.outcome, Ok(Some(response)));
    }

    #[test]
    fn every_response_round_trips((response, expect) in response()) {
        let mut out = BytesMut::new();
        response.encode(&mut out);
        let d = ResponseDecoder::default().decode(&out, expect);
        prop_assert_eq!(d.consumed, out.len());
        prop_assert_eq!(d.outcome, Ok(Some(response)));
    }

    #[test]
    fn a_status_line_is_never_longer_than_512_octets(line in status_line(), extra in text(200)) {
        let mut line = line;
        line.text = owned(format!("{}{}{}", line.text, extra, extra.repeat(3)));
        let mut out = BytesMut::new();
        line.encode(&mut out);
        prop_assert!(out.len() <= 512);
        prop_assert!(std::str::from_utf8(&out).is_ok());
    }

    #[test]
    fn listings_decode_the_same_whole_and_line_by_line((response, expect) in response()) {
        prop_assume!(!matches!(expect, Expect::Status | Expect::Sasl));
        let mut wire = BytesMut::new();
        response.encode(&mut wire);
        let mut decoder = ResponseDecoder::default();
        let first = decoder.decode(&wire, Expect::Status);
        let mut at = first.consumed;
        let mut items = Vec::new();
        loop {
            let d = decoder.decode_item(&wire[at..], expect);
            at += d.consumed;
            match d.outcome.unwrap().unwrap() {
                ListItem::End => break,
                item => items.push(item.into_owned()),
            }
        }
        prop_assert_eq!(at, wire.len());
        let mut again = BytesMut::new();
        first.outcome.unwrap().unwrap().encode(&mut again);
        for item in &items {
            item.encode(&mut again);
        }
        ListItem::End.encode(&mut again);
        prop_assert_eq!(&again[..], &wire[..]);
    }

    #[test]
    fn command_decoding_is_split_invariant(input in command_stream(), cuts in vec(any::<usize>(), 0..8)) {
        let whole: Vec<Outcome<Command<'static>, CommandError>> = {
            let mut d = CommandDecoder::default();
            feed(&[&input], |b| owned_command(d.decode(b)))
        };
        let mut d = CommandDecoder::default();
        let split = feed(&chunks(&input, &cuts), |b| owned_command(d.decode(b)));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn response_decoding_is_split_invariant(
        responses in vec(response(), 1..6),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let mut wire = BytesMut::new();
        for (r, _) in &responses {
            r.encode(&mut wire);
        }
        let expects: Vec<Expect> = responses.iter().map(|(_, e)| *e).collect();
        let run = |pieces: &[&[u8]]| {
            let mut decoder = ResponseDecoder::default();
            let mut next = expects.iter().copied();
            let mut expect = next.next();
            feed(pieces, |b| {
                let Some(e) = expect else { return Decoded { consumed: 0, outcome: Ok(None) } };
                let d = decoder.decode(b, e);
                if matches!(d.outcome, Ok(Some(_)) | Err(_)) {
                    expect = next.next();
                }
                owned_response(d)
            })
        };
        let whole = run(&[&wire]);
        prop_assert_eq!(whole.len(), responses.len());
        prop_assert_eq!(run(&chunks(&wire, &cuts)), whole);
    }
}

fn owned_command(d: Decoded<Command<'_>, CommandError>) -> Decoded<Command<'static>, CommandError> {
    Decoded { consumed: d.consumed, outcome: d.outcome.map(|c| c.map(Command::into_owned)) }
}

fn owned_response(
    d: Decoded<Response<'_>, ResponseError>,
) -> Decoded<Response<'static>, ResponseError> {
    Decoded { consumed: d.consumed, outcome: d.outcome.map(|r| r.map(Response::into_owned)) }
}
