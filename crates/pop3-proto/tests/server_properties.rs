//! Properties of the server session over random command sequences, checked against a model:
//! - a deleted message never appears in any listing, nor can it be retrieved;
//! - STAT equals the count and sum of sizes of the messages not deleted;
//! - the commit list equals the messages deleted since the last RSET;
//! - responses come in command order, even when everything is pipelined and bodies stream.

#![forbid(unsafe_code)]

use std::time::Duration;

use bytes::BytesMut;
use pop3_proto::server::{Event, Greeting, MessageInfo, ServerConfig, ServerSession, Snapshot};
use pop3_proto::{
    Command, DotUnstuffer, Expect, MsgNum, Response, ResponseDecoder, ScanListing, StatusLine,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Dele(u32),
    Rset,
    Noop,
    Retr(u32),
    Top(u32, u32),
}

fn ops(max_msg: u32) -> impl Strategy<Value = Vec<Op>> {
    let n = 1..=max_msg + 2;
    let op = prop_oneof![
        1 => Just(Op::Stat),
        1 => proptest::option::of(n.clone()).prop_map(Op::List),
        1 => proptest::option::of(n.clone()).prop_map(Op::Uidl),
        3 => n.clone().prop_map(Op::Dele),
        1 => Just(Op::Rset),
        1 => Just(Op::Noop),
        2 => n.clone().prop_map(Op::Retr),
        1 => (n, 0u32..4).prop_map(|(m, l)| Op::Top(m, l)),
    ];
    proptest::collection::vec(op, 0..40)
}

/// Message `i`'s stored text: CRLF lines, a dotted line, so stuffing is exercised.
fn message(i: usize) -> Vec<u8> {
    format!("Subject: {i}\r\n\r\n.line one\r\n{}\r\n", "x".repeat(i * 7)).into_bytes()
}

fn command(op: &Op) -> Command<'static> {
    let m = |n: u32| MsgNum::new(n).unwrap();
    match *op {
        Op::Stat => Command::Stat,
        Op::List(n) => Command::List(n.map(m)),
        Op::Uidl(n) => Command::Uidl(n.map(m)),
        Op::Dele(n) => Command::Dele(m(n)),
        Op::Rset => Command::Rset,
        Op::Noop => Command::Noop,
        Op::Retr(n) => Command::Retr(m(n)),
        Op::Top(n, l) => Command::Top { msg: m(n), lines: l },
    }
}

/// Runs the session over `ops` pipelined in one read, feeding bodies as asked; returns the
/// whole output and the commit list.
fn run(count: usize, ops: &[Op], chunk: usize) -> (Vec<u8>, Option<Vec<usize>>) {
    let greeting = Greeting {
        apop_timestamp: "<1@x>".into(),
        sasl_nonce: "n".into(),
        hostname: "x".into(),
        tls_active: true,
    };
    let mut s = ServerSession::new(ServerConfig::default(), greeting, Duration::ZERO);
    let mut out = Vec::new();
    let mut input = BytesMut::new();
    Command::User("u".into()).encode(&mut input).unwrap();
    Command::Pass(pop3_proto::Secret::new(b"p"[..].into())).encode(&mut input).unwrap();
    for op in ops {
        command(op).encode(&mut input).unwrap();
    }
    Command::Quit.encode(&mut input).unwrap();
    for piece in input.chunks(chunk) {
        s.handle_input(piece, Duration::ZERO);
        loop {
            out.extend_from_slice(&s.take_output());
            let Some(event) = s.poll_event() else { break };
            match event {
                Event::Authenticate(_) => {
                    let infos = (0..count).map(|i| {
                        MessageInfo::new(pop3_proto::dot::wire_size(&message(i)), format!("u{i}"))
                            .unwrap()
                    });
                    s.login_accepted(Snapshot::new(infos.collect())).unwrap();
                }
                Event::RetrieveBody { index, .. } => {
                    for piece in message(index).chunks(5) {
                        out.extend_from_slice(&s.take_output());
                        if s.body_data(piece).unwrap() == pop3_proto::server::BodyFlow::Done {
                            break;
                        }
                    }
                    s.body_end().unwrap();
                }
                Event::Commit { deleted } => {
                    s.commit_done(Ok(())).unwrap();
                    out.extend_from_slice(&s.take_output());
                    return (out, Some(deleted));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    (out, None)
}

/// The model: sizes, and which are deleted.
struct Model {
    sizes: Vec<u64>,
    deleted: Vec<bool>,
}

impl Model {
    fn live(&self, n: u32) -> Option<u64> {
        let i = (n as usize).checked_sub(1)?;
        (i < self.sizes.len() && !self.deleted[i]).then(|| self.sizes[i])
    }

    fn listing(&self) -> Vec<ScanListing> {
        (0..self.sizes.len())
            .filter(|&i| !self.deleted[i])
            .map(|i| ScanListing { msg: MsgNum::from_index(i).unwrap(), size: self.sizes[i] })
            .collect()
    }
}

/// Decodes one status line from `wire` at `at`.
fn status(decoder: &mut ResponseDecoder, wire: &[u8], at: &mut usize) -> StatusLine<'static> {
    let d = decoder.decode(&wire[*at..], Expect::Status);
    *at += d.consumed;
    match d.outcome {
        Ok(Some(Response::Status(s))) => s.into_owned(),
        other => panic!("expected a status line at {at}: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replies_follow_the_model_in_command_order(count in 0usize..6, ops in ops(6), chunk in 1usize..64) {
        let (wire, commit) = run(count, &ops, chunk);
        let mut model = Model {
            sizes: (0..count).map(|i| pop3_proto::dot::wire_size(&message(i))).collect(),
            deleted: vec![false; count],
        };
        let mut decoder = ResponseDecoder::default();
        let mut at = 0;
        for _ in 0..3 {
            // Greeting, USER, PASS.
            prop_assert!(status(&mut decoder, &wire, &mut at).is_ok());
        }
        for op in &ops {
            match *op {
                Op::Stat => {
                    let s = status(&mut decoder, &wire, &mut at);
                    let live = model.listing();
                    prop_assert_eq!(s.stat(), Some((live.len() as u32, live.iter().map(|l| l.size).sum())));
                }
                Op::List(None) | Op::Uidl(None) => {
                    let expect = if matches!(op, Op::List(_)) { Expect::List } else { Expect::Uidl };
                    let d = decoder.decode(&wire[at..], expect);
                    at += d.consumed;
                    let numbers: Vec<u32> = match d.outcome {
                        Ok(Some(Response::ScanList(_, l))) => {
                            prop_assert_eq!(&l, &model.listing());
                            l.iter().map(|l| l.msg.get()).collect()
                        }
                        Ok(Some(Response::UidList(_, l))) => l.iter().map(|l| l.msg().get()).collect(),
                        other => panic!("{other:?}"),
                    };
                    let live: Vec<u32> = model.listing().iter().map(|l| l.msg.get()).collect();
                    prop_assert_eq!(numbers, live);
                }
                Op::List(Some(n)) | Op::Uidl(Some(n)) => {
                    let s = status(&mut decoder, &wire, &mut at);
                    prop_assert_eq!(s.is_ok(), model.live(n).is_some());
                    if let (Op::List(_), Some(size)) = (op, model.live(n)) {
                        prop_assert_eq!(s.scan_listing().map(|l| l.size), Some(size));
                    }
                }
                Op::Dele(n) => {
                    let s = status(&mut decoder, &wire, &mut at);
                    prop_assert_eq!(s.is_ok(), model.live(n).is_some());
                    if s.is_ok() {
                        model.deleted[n as usize - 1] = true;
                    }
                }
                Op::Rset => {
                    prop_assert!(status(&mut decoder, &wire, &mut at).is_ok());
                    model.deleted.iter_mut().for_each(|d| *d = false);
                }
                Op::Noop => prop_assert!(status(&mut decoder, &wire, &mut at).is_ok()),
                Op::Retr(n) | Op::Top(n, _) => {
                    let s = status(&mut decoder, &wire, &mut at);
                    prop_assert_eq!(s.is_ok(), model.live(n).is_some());
                    if s.is_ok() {
                        let mut body = BytesMut::new();
                        let u = DotUnstuffer::new().unstuff(&wire[at..], &mut body);
                        prop_assert!(u.done);
                        at += u.consumed;
                        if let Op::Retr(_) = op {
                            prop_assert_eq!(&body[..], &message(n as usize - 1)[..]);
                            prop_assert_eq!(body.len() as u64, model.live(n).unwrap());
                        }
                    }
                }
            }
        }
        // QUIT: the commit list is exactly what the model has deleted since the last RSET.
        let expected: Vec<usize> = (0..count).filter(|&i| model.deleted[i]).collect();
        prop_assert_eq!(commit, Some(expected));
        prop_assert!(status(&mut decoder, &wire, &mut at).is_ok());
        prop_assert_eq!(at, wire.len(), "nothing after the final reply");
    }
}
