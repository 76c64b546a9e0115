//! `lmtp_session`: a hostile LMTP client against the sans-IO LMTP session.
//!
//! The data picks small limits, then alternates client reads of arbitrary bytes (any split),
//! clock jumps, and the embedder's answers to every event (recipients accepted, unknown or
//! failing; each copy stored or failed). Checked:
//!
//! - no panic, and no answer the session asked for is refused;
//! - the events follow the protocol: message data only between `MessageStart` and
//!   `MessageEnd`/`MessageAborted`; `MessageStart` names exactly the recipients accepted
//!   since the last `MailFrom`; the data of a delivered message stays within the size limit;
//! - every reply is well formed (`ddd` then space or hyphen, CRLF-ended lines), and after
//!   `MessageEnd` comes one reply per recipient (RFC 2033 §4.2);
//! - once closed, the session produces nothing more and asks for nothing.

#![no_main]
#![forbid(unsafe_code)]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pop3_proto::lmtp::{Delivery, LmtpConfig, LmtpEvent, LmtpSession, RecipientError};

/// What the embedder has seen.
#[derive(Default)]
struct Embedder {
    accepted: Vec<String>,
    message: Option<(usize, u64)>,
    /// Replies still owed for the last delivery.
    owed: usize,
}

fn check_output(out: &[u8], owed: &mut usize) {
    assert!(out.is_empty() || out.ends_with(b"\r\n"), "{out:?}");
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.len() >= 5 && line.ends_with(b"\r"), "{line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(line[3] == b' ' || line[3] == b'-', "{line:?}");
        assert!(!line[..line.len() - 1].contains(&b'\r'), "{line:?}");
        if *owed > 0 && line[3] == b' ' {
            assert!(
                line.starts_with(b"250 2.0.0 <") || line.starts_with(b"451 4.3.0 <"),
                "{line:?}"
            );
            *owed -= 1;
        }
    }
}

fn pump(
    s: &mut LmtpSession,
    e: &mut Embedder,
    max: u64,
    u: &mut Unstructured<'_>,
) -> arbitrary::Result<()> {
    loop {
        check_output(&s.take_output(), &mut e.owed);
        let Some(event) = s.poll_event() else {
            if s.has_output() {
                continue;
            }
            return Ok(());
        };
        assert!(e.owed == 0, "an event before the delivery replies: {event:?}");
        match event {
            LmtpEvent::MailFrom { .. } => {
                assert!(e.message.is_none());
                e.accepted.clear();
            }
            LmtpEvent::Recipient { address } => {
                let answer = match u.int_in_range(0..=2)? {
                    0 => {
                        e.accepted.push(address);
                        s.recipient_accepted()
                    }
                    1 => s.recipient_rejected(RecipientError::UnknownUser),
                    _ => s.recipient_rejected(RecipientError::Temporary),
                };
                answer.expect("the session asked for a recipient answer");
            }
            LmtpEvent::MessageStart { recipients, .. } => {
                assert!(e.message.is_none());
                assert_eq!(recipients, e.accepted);
                e.message = Some((recipients.len(), 0));
            }
            LmtpEvent::MessageData(chunk) => {
                let (_, size) = e.message.as_mut().expect("data inside a message");
                *size += chunk.len() as u64;
                assert!(*size <= max);
            }
            LmtpEvent::MessageAborted => {
                e.message.take().expect("abort inside a message");
            }
            LmtpEvent::MessageEnd => {
                let (count, _) = e.message.take().expect("end inside a message");
                let mut results = Vec::new();
                for _ in 0..count {
                    results.push(if bool::arbitrary(u)? {
                        Delivery::Stored
                    } else {
                        Delivery::TemporaryFailure
                    });
                }
                s.delivered(&results).expect("one result per recipient");
                e.owed = count;
                e.accepted.clear();
            }
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let config = LmtpConfig {
        max_message_size: u.int_in_range(0..=200)?,
        max_recipients: u.int_in_range(1..=4)?,
        max_bad_commands: u.int_in_range(0..=5)?,
        idle_timeout: Duration::from_secs(10),
        command_line: u.int_in_range(16..=512)?,
        ..LmtpConfig::default()
    };
    let max = config.max_message_size;
    let mut now = Duration::ZERO;
    let mut s = LmtpSession::new(config, now);
    let mut e = Embedder::default();
    pump(&mut s, &mut e, max, u)?;
    while !u.is_empty() {
        if s.is_closed() {
            s.handle_input(b"NOOP\r\n", now);
            assert!(!s.has_output() && s.poll_event().is_none());
            return Ok(());
        }
        if u.ratio(1, 16)? {
            now += Duration::from_secs(u.int_in_range(0..=20)?);
            s.handle_timeout(now);
        } else {
            let len = u.int_in_range(0..=64)?;
            let chunk = u.bytes(len)?;
            s.handle_input(chunk, now);
        }
        pump(&mut s, &mut e, max, u)?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
