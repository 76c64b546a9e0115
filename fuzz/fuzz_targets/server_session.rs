//! `server_session`: a hostile client against the sans-IO server session.
//!
//! The data picks the configuration, then alternates client reads of arbitrary bytes (any
//! split), clock jumps, and the embedder's answers to every event (accept or refuse logins,
//! SCRAM keys or none, message bodies or errors, commit success or failure). Checked:
//!
//! - no panic, and no answer the session asked for is refused as `WrongState`;
//! - output stays bounded: no single step produces more than the high-water mark plus one
//!   chunk's worth of stuffed body plus a listing of the (small) maildrop;
//! - once closed, the session produces nothing more and asks for nothing.

#![no_main]
#![forbid(unsafe_code)]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pop3_proto::sasl::{Mechanism, ScramKeys};
use pop3_proto::server::{
    BodyError, BodyFlow, CommitError, Event, Greeting, LoginError, MessageInfo, ServerConfig,
    ServerSession, Snapshot,
};

const HIGH_WATER: usize = 1024;
const BODY: &[u8] = b"Subject: x\n\n.dot\r\nline\nlast";

fn answer(s: &mut ServerSession, event: Event, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let ok = match event {
        Event::Authenticate(_) => {
            if bool::arbitrary(u)? {
                let n = u.int_in_range(0..=5)?;
                let infos =
                    (0..n).map(|i| MessageInfo::new(40 + i as u64, format!("u{i}")).unwrap());
                s.login_accepted(Snapshot::new(infos.collect()))
            } else {
                let reasons =
                    [LoginError::BadCredentials, LoginError::InUse, LoginError::TempFailure];
                s.login_rejected(*u.choose(&reasons)?)
            }
        }
        Event::SaslFailed { .. } => s.login_rejected(LoginError::BadCredentials),
        Event::ScramKeysNeeded { .. } => {
            let keys = bool::arbitrary(u)?.then(|| ScramKeys::from_password(b"pw", b"salt", 1));
            s.scram_keys(keys)
        }
        Event::RetrieveBody { .. } => match u.int_in_range(0..=3)? {
            0 => s.body_error(BodyError::Gone),
            1 => s.body_data(b"part").and_then(|_| s.body_error(BodyError::Io)),
            _ => {
                for piece in BODY.chunks(u.int_in_range(1..=16)?) {
                    if s.body_data(piece) == Ok(BodyFlow::Done) {
                        break;
                    }
                }
                s.body_end()
            }
        },
        Event::StartTls => s.tls_established(),
        Event::Commit { .. } => {
            s.commit_done(if bool::arbitrary(u)? { Ok(()) } else { Err(CommitError) })
        }
    };
    assert!(ok.is_ok(), "the session refused an answer it asked for");
    Ok(())
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let config = ServerConfig {
        plaintext_without_tls: bool::arbitrary(u)?,
        tls_available: bool::arbitrary(u)?,
        apop: bool::arbitrary(u)?,
        sasl_mechanisms: Mechanism::ALL.to_vec(),
        output_high_water: HIGH_WATER,
        max_bad_commands: u.int_in_range(1..=30)?,
        ..ServerConfig::default()
    };
    let greeting = Greeting {
        apop_timestamp: "<1.2@h>".into(),
        sasl_nonce: "nonce".into(),
        hostname: "h".into(),
        tls_active: bool::arbitrary(u)?,
    };
    let mut now = Duration::ZERO;
    let mut s = ServerSession::new(config, greeting, now);
    let bound = HIGH_WATER + 4096;
    while !u.is_empty() {
        match u.int_in_range(0..=9)? {
            0 => {
                now += Duration::from_secs(u.int_in_range(0..=700)?);
                s.handle_timeout(now);
            }
            _ => {
                let len = u.int_in_range(0..=64)?;
                let bytes = u.bytes(len.min(u.len()))?;
                s.handle_input(bytes, now);
            }
        }
        loop {
            let out = s.take_output();
            assert!(out.len() <= bound, "one step produced {} octets", out.len());
            let Some(event) = s.poll_event() else {
                if out.is_empty() {
                    break;
                }
                continue;
            };
            assert!(!s.is_closed(), "a closed session asked for {event:?}");
            answer(&mut s, event, u)?;
        }
        if s.is_closed() {
            assert!(s.poll_event().is_none() && s.take_output().is_empty());
            s.handle_input(b"NOOP\r\n", now);
            assert!(s.take_output().is_empty(), "a closed session answered");
            break;
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
