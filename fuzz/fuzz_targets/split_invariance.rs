//! `split_invariance`: the decoders give the same results however the input is split.
//!
//! The input is fed whole, and then in arbitrary pieces, into a buffer that is decoded as a
//! server (or client) loop would: append the piece, decode until `Ok(None)`, dropping
//! `consumed` after each call. The sequence of outcomes (values made owned with
//! `into_owned`, and errors) must be the same both ways:
//!
//! - `CommandDecoder::decode`, and `CommandDecoder::decode_sasl`, with limits chosen from the
//!   data (small ones too, so over-long lines and the skipping state are reached);
//! - `ResponseDecoder::decode` with a fixed sequence of `Expect`s chosen from the data (the
//!   next one is used after each response or error), also with limits chosen from the data.
//!   A refused multi-line block (an error with nothing consumed) ends the run, as a client
//!   would close the connection there.
//!
//! Also checked on the way: `consumed` never exceeds the buffer, and a value or an error
//! (other than a refused block) always consumes something, so the loops end.

#![no_main]
#![forbid(unsafe_code)]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pop3_proto::{
    Command, CommandDecoder, CommandError, DecodeError, Decoded, Expect, Limits, Response,
    ResponseDecoder, ResponseError, SaslResponse,
};

const EXPECTS: [Expect; 6] =
    [Expect::Status, Expect::Sasl, Expect::Capa, Expect::List, Expect::Uidl, Expect::Lang];

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Cut points (taken modulo the input length).
    cuts: Vec<u16>,
    /// The `Expect` of each response in turn (each octet modulo 6).
    expects: Vec<u8>,
    /// 0: default limits; otherwise small limits derived from it.
    limit: u8,
    data: &'a [u8],
}

fn chunks<'a>(input: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        out.push(&input[at..cut]);
        at = cut;
    }
    out
}

type Outcome<T, E> = Result<T, DecodeError<E>>;

/// What a decoding step tells the loop.
enum Step<T, E> {
    /// More input is needed.
    NeedMore,
    /// A value or an error, to record.
    Seen(Outcome<T, E>),
    /// An error after which the peer would be dropped: record it and stop.
    Fatal(Outcome<T, E>),
}

/// Feeds `pieces` through a buffer, decoding as a server or client loop would; returns every
/// outcome.
fn feed<T, E>(
    pieces: &[&[u8]],
    mut decode: impl FnMut(&[u8]) -> (usize, Step<T, E>),
) -> Vec<Outcome<T, E>> {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut buffer = Vec::with_capacity(total);
    let mut seen = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        // Every call but the last consumes something.
        let max_calls = buffer.len() + 1;
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls <= max_calls, "the decoding loop does not end");
            let (consumed, step) = decode(&buffer);
            assert!(consumed <= buffer.len(), "consumed {consumed} of {}", buffer.len());
            buffer.drain(..consumed);
            match step {
                Step::NeedMore => break,
                Step::Seen(outcome) => {
                    assert!(consumed > 0, "an outcome without consuming input");
                    seen.push(outcome);
                }
                Step::Fatal(outcome) => {
                    seen.push(outcome);
                    return seen;
                }
            }
        }
    }
    seen
}

fn command_limits(limit: u8) -> Limits {
    match limit {
        0 => Limits::default(),
        // At least 8: below 5 octets a partial "AUTH " cannot be told from another command,
        // so the AUTH limit could not apply the same way to every split.
        n => Limits {
            command_line: 8 + usize::from(n % 64),
            sasl_line: 8 + usize::from(n / 4),
            ..Limits::default()
        },
    }
}

fn response_limits(limit: u8) -> Limits {
    match limit {
        0 => Limits::default(),
        n => Limits {
            response_line: 4 + usize::from(n % 64),
            multiline_block: 8 + usize::from(n),
            ..Limits::default()
        },
    }
}

type Commands = Vec<Outcome<Command<'static>, CommandError>>;
type SaslLines = Vec<Outcome<SaslResponse<'static>, CommandError>>;
type Responses = Vec<Outcome<Response<'static>, ResponseError>>;

/// The step for an outcome; with `refused`, an error ends the run.
fn step<T, E>(outcome: Outcome<Option<T>, E>, refused: bool) -> Step<T, E> {
    match outcome {
        Ok(None) => Step::NeedMore,
        Ok(Some(v)) => Step::Seen(Ok(v)),
        Err(e) if refused => Step::Fatal(Err(e)),
        Err(e) => Step::Seen(Err(e)),
    }
}

fn commands(pieces: &[&[u8]], limits: Limits) -> Commands {
    let mut decoder = CommandDecoder::new(limits);
    feed(pieces, |b| {
        let Decoded { consumed, outcome } = decoder.decode(b);
        let outcome = outcome.map(|o| o.map(Command::into_owned));
        (consumed, step(outcome, false))
    })
}

fn sasl_lines(pieces: &[&[u8]], limits: Limits) -> SaslLines {
    let mut decoder = CommandDecoder::new(limits);
    feed(pieces, |b| {
        let Decoded { consumed, outcome } = decoder.decode_sasl(b);
        let outcome = outcome.map(|o| o.map(SaslResponse::into_owned));
        (consumed, step(outcome, false))
    })
}

fn responses(pieces: &[&[u8]], limits: Limits, expects: &[Expect]) -> Responses {
    let mut decoder = ResponseDecoder::new(limits);
    let mut next = 0;
    feed(pieces, |b| {
        let Some(&expect) = expects.get(next) else {
            return (0, Step::NeedMore);
        };
        let Decoded { consumed, outcome } = decoder.decode(b, expect);
        let refused = consumed == 0 && outcome.is_err();
        let step = step(outcome.map(|o| o.map(Response::into_owned)), refused);
        if !matches!(step, Step::NeedMore) {
            next += 1;
        }
        (consumed, step)
    })
}

fuzz_target!(|input: Input<'_>| {
    let pieces = chunks(input.data, &input.cuts);
    let whole = [input.data];

    let limits = command_limits(input.limit);
    assert_eq!(
        commands(&pieces, limits),
        commands(&whole, limits),
        "commands in pieces {pieces:?}"
    );
    assert_eq!(
        sasl_lines(&pieces, limits),
        sasl_lines(&whole, limits),
        "SASL lines in pieces {pieces:?}"
    );

    let expects: Vec<Expect> = if input.expects.is_empty() {
        vec![Expect::Status; 64]
    } else {
        input.expects.iter().map(|&e| EXPECTS[usize::from(e) % EXPECTS.len()]).collect()
    };
    let limits = response_limits(input.limit);
    assert_eq!(
        responses(&pieces, limits, &expects),
        responses(&whole, limits, &expects),
        "responses with {expects:?} in pieces {pieces:?}"
    );
});
