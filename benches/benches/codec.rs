//! The codec hot path: command parsing, response encoding and parsing, dot-stuffing, and the
//! memchr and copy baselines over the same bytes. `cargo xtask bench` prints the ratios.

#![forbid(unsafe_code)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pop3_benches::{
    copy_lines, dot_heavy, memchr_each_line, memchr_lines, pipeline, stuffed, text, uidl_listing,
};
use pop3_proto::{
    Capability, CommandDecoder, DotStuffer, DotUnstuffer, Expect, Expire, ListItem, MsgNum,
    Response, ResponseDecoder, ScanListing, StatusLine, UidListing,
};

/// Decodes every command in `input`, as a server's read loop does.
fn decode_all(decoder: &mut CommandDecoder, mut input: &[u8]) -> usize {
    let mut n = 0;
    loop {
        let d = decoder.decode(input);
        match d.outcome {
            Ok(Some(c)) => {
                black_box(&c);
                n += 1;
            }
            Ok(None) => return n,
            Err(e) => {
                black_box(e);
            }
        }
        input = &input[d.consumed..];
    }
}

fn parse_command(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_command");
    let lines: [(&str, &[u8]); 5] = [
        ("noop", b"NOOP\r\n"),
        ("user", b"USER alice@example.org\r\n"),
        ("retr", b"RETR 1234\r\n"),
        ("top", b"TOP 1234 10\r\n"),
        (
            "auth_plain",
            b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=\r\n",
        ),
    ];
    for (name, line) in lines {
        let mut decoder = CommandDecoder::default();
        g.bench_function(name, |b| b.iter(|| black_box(decoder.decode(black_box(line)).consumed)));
    }
    g.finish();
}

fn parse_pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_pipeline");
    for n in [16usize, 256] {
        let input = pipeline(n);
        g.throughput(Throughput::Bytes(input.len() as u64));
        let mut decoder = CommandDecoder::default();
        g.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| assert_eq!(decode_all(&mut decoder, black_box(input)), n))
        });
    }
    g.finish();
}

fn encode_response(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_response");
    let mut out = BytesMut::with_capacity(64 * 1024);
    let ok = StatusLine::ok("2 messages (320 octets)");
    g.bench_function("ok", |b| {
        b.iter(|| {
            out.clear();
            black_box(&ok).encode(&mut out);
        })
    });
    let msg = |n: usize| MsgNum::from_index(n).unwrap();
    let list = Response::ScanList(
        StatusLine::ok("1000 messages"),
        (0..1000).map(|n| ScanListing { msg: msg(n), size: 1000 + n as u64 * 37 }).collect(),
    );
    let uidl = Response::UidList(
        StatusLine::ok(""),
        (0..1000)
            .map(|n| UidListing::new(msg(n), format!("{n:08x}.1732269600.M{n}P4711")).unwrap())
            .collect(),
    );
    let capa = Response::Capabilities(
        StatusLine::ok("Capability list follows"),
        vec![
            Capability::Top,
            Capability::User,
            Capability::Sasl(vec!["SCRAM-SHA-256".into(), "PLAIN".into(), "LOGIN".into()]),
            Capability::RespCodes,
            Capability::AuthRespCode,
            Capability::Pipelining,
            Capability::Uidl,
            Capability::Expire { policy: Expire::Never, per_user: false },
            Capability::LoginDelay { seconds: 0, per_user: false },
            Capability::Utf8 { user: true },
            Capability::Implementation("pop3d".into()),
        ],
    );
    for (name, response) in [("list_1000", &list), ("uidl_1000", &uidl), ("capa", &capa)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(response).encode(&mut out);
            })
        });
    }
    g.finish();
}

fn dot_inputs() -> [(&'static str, Vec<u8>); 3] {
    [("1KiB", text(1024)), ("1MiB", text(1 << 20)), ("dot_heavy", dot_heavy(1 << 20))]
}

fn dot_stuff(c: &mut Criterion) {
    let mut g = c.benchmark_group("dot_stuff");
    for (name, input) in dot_inputs() {
        g.throughput(Throughput::Bytes(input.len() as u64));
        let mut out = BytesMut::with_capacity(input.len() * 2);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut s = DotStuffer::new();
                s.stuff(black_box(&input), &mut out);
                s.finish(&mut out);
            })
        });
    }
    g.finish();
}

fn dot_unstuff(c: &mut Criterion) {
    let mut g = c.benchmark_group("dot_unstuff");
    for (name, input) in dot_inputs() {
        let wire = stuffed(&input);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        let mut out = BytesMut::with_capacity(wire.len());
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let u = DotUnstuffer::new().unstuff(black_box(&wire), &mut out);
                assert!(u.done);
            })
        });
    }
    g.finish();
}

fn parse_response(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_response");
    let input = uidl_listing(1 << 20);
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("multiline_1MiB", |b| {
        b.iter(|| {
            let mut decoder = ResponseDecoder::default();
            let first = decoder.decode(&input, Expect::Status);
            let mut at = first.consumed;
            loop {
                let d = decoder.decode_item(&input[at..], Expect::Uidl);
                at += d.consumed;
                if let Ok(Some(ListItem::End)) = d.outcome {
                    break;
                }
            }
            assert_eq!(at, input.len());
        })
    });
    g.finish();
}

/// The practical limits over the same bytes as the benches above.
fn baselines(c: &mut Criterion) {
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, input) in dot_inputs() {
        inputs.push((format!("wire_{name}"), stuffed(&input)));
        inputs.push((format!("text_{name}"), input));
    }
    inputs.push(("pipeline_16".into(), pipeline(16)));
    inputs.push(("pipeline_256".into(), pipeline(256)));
    inputs.push(("uidl_1MiB".into(), uidl_listing(1 << 20)));
    // Same ids as the benches they bound: `text_dot_heavy` is the dot_heavy input.
    let id = |name: &str| name.replace("text_dot_heavy", "dot_heavy");

    let mut g = c.benchmark_group("baseline_memchr");
    for (name, input) in &inputs {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(id(name), |b| b.iter(|| black_box(memchr_lines(black_box(input)))));
    }
    g.finish();
    let mut g = c.benchmark_group("baseline_memchr_line");
    for (name, input) in &inputs {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(id(name), |b| b.iter(|| black_box(memchr_each_line(black_box(input)))));
    }
    g.finish();
    let mut g = c.benchmark_group("baseline_copy");
    for (name, input) in &inputs {
        g.throughput(Throughput::Bytes(input.len() as u64));
        let mut out = BytesMut::with_capacity(input.len());
        g.bench_function(id(name), |b| {
            b.iter(|| {
                out.clear();
                copy_lines(black_box(input), &mut out);
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    parse_command,
    parse_pipeline,
    encode_response,
    dot_stuff,
    dot_unstuff,
    parse_response,
    baselines
);
criterion_main!(benches);
