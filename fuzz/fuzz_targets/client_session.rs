//! `client_session`: a hostile server against the sans-IO client session.
//!
//! The data picks commands to queue (any command, pipelined or not), then feeds arbitrary
//! server bytes in arbitrary splits, sometimes completing STLS or ending the stream. Checked:
//!
//! - no panic;
//! - memory stays bounded: the session never buffers more than one response line;
//! - every command ends at most once (one reply or body end), and nothing happens after
//!   `Closed`.

#![no_main]
#![forbid(unsafe_code)]

use std::collections::HashSet;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pop3_proto::client::{ClientConfig, ClientEvent, ClientSession};
use pop3_proto::sasl::SaslClient;
use pop3_proto::{Limits, MsgNum};

fn queue(c: &mut ClientSession, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let msg = MsgNum::arbitrary(u)?;
    let _ = match u.int_in_range(0..=13)? {
        0 => c.capa(),
        1 => c.stat(),
        2 => c.list(Option::<MsgNum>::arbitrary(u)?),
        3 => c.uidl(Option::<MsgNum>::arbitrary(u)?),
        4 => c.retr(msg),
        5 => c.top(msg, u32::arbitrary(u)?),
        6 => c.dele(msg),
        7 => c.user("alice"),
        8 => c.pass("secret"),
        9 => c.stls(),
        10 => c.auth(SaslClient::scram_sha256("alice", "pw", "clientnonce")),
        11 => c.auth(SaslClient::login("alice", "pw")),
        12 => c.apop("alice", "pw"),
        _ => c.quit(),
    };
    Ok(())
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let limits = Limits { response_line: 256, multiline_block: 4096, ..Limits::default() };
    let window = u.int_in_range(1..=8)?;
    let mut c = ClientSession::new(ClientConfig {
        limits,
        pipeline_window: window,
        ..ClientConfig::default()
    });
    let mut ended = HashSet::new();
    let mut closed = false;
    while !u.is_empty() {
        match u.int_in_range(0..=7)? {
            0 => queue(&mut c, u)?,
            1 => {
                let _ = c.tls_established();
            }
            2 if u.ratio(1, 8)? => c.handle_eof(),
            _ => {
                let len = u.int_in_range(0..=96)?;
                c.handle_input(u.bytes(len.min(u.len()))?);
            }
        }
        assert!(c.buffered_input() <= limits.response_line, "buffered {}", c.buffered_input());
        let _ = c.take_output();
        while let Some(event) = c.poll_event() {
            assert!(!closed, "event after Closed: {event:?}");
            match event {
                ClientEvent::Reply { id, .. } | ClientEvent::BodyEnd { id } => {
                    assert!(ended.insert(id), "{id} ended twice");
                }
                ClientEvent::Closed => closed = true,
                _ => {}
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
