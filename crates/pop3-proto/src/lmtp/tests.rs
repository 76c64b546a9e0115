//! Session tests: every rule with a scripted embedder, and split invariance of the message
//! stream under any chunking.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::DotStuffer;

/// A scripted embedder: recipients named `unknown*` are refused, `temp*` fail the lookup;
/// deliveries to `full*` fail temporarily.
struct Harness {
    s: LmtpSession,
    out: Vec<u8>,
    /// Finished messages: sender, recipients, octets.
    stored: Vec<(String, Vec<String>, Vec<u8>)>,
    current: Option<(String, Vec<String>, Vec<u8>)>,
    aborted: usize,
}

impl Harness {
    fn new(config: LmtpConfig) -> Self {
        let mut h = Self {
            s: LmtpSession::new(config, Duration::ZERO),
            out: Vec::new(),
            stored: Vec::new(),
            current: None,
            aborted: 0,
        };
        h.pump();
        h
    }

    fn default() -> Self {
        Self::new(LmtpConfig { hostname: "mx.test".into(), ..LmtpConfig::default() })
    }

    fn feed(&mut self, input: &[u8]) {
        self.s.handle_input(input, Duration::ZERO);
        self.pump();
    }

    fn pump(&mut self) {
        loop {
            let out = self.s.take_output();
            self.out.extend_from_slice(&out);
            let Some(event) = self.s.poll_event() else {
                if self.s.has_output() {
                    continue;
                }
                break;
            };
            match event {
                LmtpEvent::Recipient { address } => {
                    if address.starts_with("unknown") {
                        self.s.recipient_rejected(RecipientError::UnknownUser).unwrap();
                    } else if address.starts_with("temp") {
                        self.s.recipient_rejected(RecipientError::Temporary).unwrap();
                    } else {
                        self.s.recipient_accepted().unwrap();
                    }
                }
                LmtpEvent::MailFrom { .. } => assert!(self.current.is_none()),
                LmtpEvent::MessageStart { sender, recipients } => {
                    assert!(self.current.is_none());
                    self.current = Some((sender, recipients, Vec::new()));
                }
                LmtpEvent::MessageData(chunk) => {
                    self.current.as_mut().expect("data after start").2.extend_from_slice(&chunk);
                }
                LmtpEvent::MessageAborted => {
                    self.current = None;
                    self.aborted += 1;
                }
                LmtpEvent::MessageEnd => {
                    let message = self.current.take().expect("end after start");
                    let results: Vec<Delivery> = message
                        .1
                        .iter()
                        .map(|r| {
                            if r.starts_with("full") {
                                Delivery::TemporaryFailure
                            } else {
                                Delivery::Stored
                            }
                        })
                        .collect();
                    self.s.delivered(&results).unwrap();
                    self.stored.push(message);
                }
            }
        }
    }

    /// The reply lines since the last call (greeting included on the first).
    fn lines(&mut self) -> Vec<String> {
        let text = String::from_utf8(core::mem::take(&mut self.out)).unwrap();
        assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
        text.split_terminator("\r\n").map(ToString::to_string).collect()
    }
}

fn greeted() -> Harness {
    let mut h = Harness::default();
    h.feed(b"LHLO client.test\r\n");
    h.lines();
    h
}

#[test]
fn greeting_and_lhlo_announce_the_extensions() {
    let mut h = Harness::default();
    assert_eq!(h.lines(), ["220 mx.test LMTP server ready"]);
    h.feed(b"LHLO client.test\r\n");
    assert_eq!(
        h.lines(),
        [
            "250-mx.test",
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            "250-8BITMIME",
            "250 SIZE 52428800"
        ]
    );
}

#[test]
fn a_pipelined_transaction_gets_one_reply_per_recipient_after_data() {
    let mut h = greeted();
    // RFC 2920: MAIL, every RCPT and DATA in one write; then the message.
    h.feed(
        b"MAIL FROM:<s@example.org> BODY=8BITMIME\r\nRCPT TO:<a@x>\r\nRCPT TO:<unknown@x>\r\n\
          RCPT TO:<full@x>\r\nRCPT TO:<temp@x>\r\nDATA\r\n",
    );
    assert_eq!(
        h.lines(),
        [
            "250 2.1.0 <s@example.org> Sender OK",
            "250 2.1.5 <a@x> Recipient OK",
            "550 5.1.1 <unknown@x> User unknown",
            "250 2.1.5 <full@x> Recipient OK",
            "451 4.3.0 <temp@x> Temporary failure, try again later",
            "354 Start mail input; end with <CRLF>.<CRLF>",
        ]
    );
    h.feed(b"Subject: t\r\n\r\n..one\r\n.\r\nQUIT\r\n");
    assert_eq!(
        h.lines(),
        [
            "250 2.0.0 <a@x> Saved",
            "451 4.3.0 <full@x> Temporary failure in storing the message, try again later",
            "221 2.0.0 mx.test closing connection",
        ]
    );
    assert_eq!(h.stored.len(), 1);
    let (sender, rcpts, body) = &h.stored[0];
    assert_eq!(sender, "s@example.org");
    assert_eq!(rcpts, &["a@x", "full@x"]);
    assert_eq!(body, b"Subject: t\r\n\r\n.one\r\n");
    assert!(h.s.is_closed());
    assert_eq!(h.s.close_reason(), Some(LmtpCloseReason::Quit));
}

#[test]
fn sequence_errors_are_503_and_the_session_goes_on() {
    let mut h = Harness::default();
    h.lines();
    h.feed(b"MAIL FROM:<a@b>\r\nEHLO x\r\nLHLO x\r\n");
    let lines = h.lines();
    assert_eq!(lines[0], "503 5.5.1 Send LHLO first");
    assert_eq!(lines[1], "500 5.5.1 This is LMTP (RFC 2033): use LHLO");
    h.feed(b"RCPT TO:<a@x>\r\nDATA\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\nDATA\r\n");
    assert_eq!(
        h.lines(),
        [
            "503 5.5.1 Send MAIL first",
            "503 5.5.1 Send MAIL first",
            "250 2.1.0 <> Sender OK",
            "503 5.5.1 Nested MAIL command",
            "503 5.5.1 No valid recipients",
        ]
    );
    h.feed(b"RSET\r\nRCPT TO:<a@x>\r\nNOOP\r\nVRFY a\r\nHELP\r\n");
    assert_eq!(
        h.lines(),
        [
            "250 2.0.0 OK",
            "503 5.5.1 Send MAIL first",
            "250 2.0.0 OK",
            "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
            "214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
        ]
    );
}

#[test]
fn syntax_errors_are_500_or_501_and_the_session_goes_on() {
    let mut h = greeted();
    h.feed(b"BOGUS\r\nMAIL FROM:a@b\r\nMAIL FROM:<a@b> SMTPUTF8\r\nRCPT TO:<>\r\nDATA now\r\n\r\n");
    assert_eq!(
        h.lines(),
        [
            "500 5.5.1 Unknown command",
            "501 5.1.7 Invalid sender address",
            "555 5.5.4 Unsupported parameter",
            "501 5.1.3 Invalid recipient address",
            "501 5.5.4 Syntax error in arguments",
            "500 5.5.1 Empty command line",
        ]
    );
    h.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:x\r\n");
    assert_eq!(h.lines(), ["250 2.1.0 <a@b> Sender OK", "501 5.1.3 Invalid recipient address"]);
}

#[test]
fn over_long_command_lines_are_500_without_being_buffered() {
    let mut h = greeted();
    let mut long = Vec::from(&b"NOOP "[..]);
    long.resize(100_000, b'x');
    for chunk in long.chunks(4096) {
        h.feed(chunk);
    }
    assert_eq!(h.lines(), ["500 5.5.2 Line too long (over 512 octets)"]);
    h.feed(b"\r\nNOOP\r\n");
    assert_eq!(h.lines(), ["250 2.0.0 OK"]);
    // 510 octets + CRLF = 512: the limit itself is fine.
    let mut exact = Vec::from(&b"NOOP "[..]);
    exact.resize(510, b'y');
    exact.extend_from_slice(b"\r\n");
    h.feed(&exact);
    assert_eq!(h.lines(), ["250 2.0.0 OK"]);
}

#[test]
fn too_many_errors_close_the_session() {
    let mut h = Harness::new(LmtpConfig { max_bad_commands: 2, ..LmtpConfig::default() });
    h.lines();
    h.feed(b"X\r\nY\r\nZ\r\nNOOP\r\n");
    let lines = h.lines();
    assert_eq!(lines.last().unwrap(), "421 4.7.0 Too many errors, closing connection");
    assert_eq!(lines.len(), 4);
    assert_eq!(h.s.close_reason(), Some(LmtpCloseReason::TooManyErrors));
}

#[test]
fn too_many_recipients_get_452() {
    let mut h = Harness::new(LmtpConfig { max_recipients: 2, ..LmtpConfig::default() });
    h.feed(b"LHLO x\r\n");
    h.lines();
    h.feed(b"MAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\n");
    assert_eq!(h.lines()[3], "452 4.5.3 Too many recipients");
}

#[test]
fn size_is_enforced_at_mail_and_at_the_end_of_data() {
    let mut h = Harness::new(LmtpConfig { max_message_size: 10, ..LmtpConfig::default() });
    h.feed(b"LHLO x\r\n");
    assert!(h.lines().contains(&"250 SIZE 10".to_string()));
    h.feed(b"MAIL FROM:<> SIZE=11\r\n");
    assert_eq!(h.lines(), ["552 5.3.4 Message size exceeds fixed limit"]);
    h.feed(b"MAIL FROM:<> SIZE=10\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
    assert_eq!(h.lines().len(), 4);
    h.feed(b"0123456789\r\n");
    h.feed(b"more\r\n.\r\nNOOP\r\n");
    assert_eq!(
        h.lines(),
        [
            "552 5.3.4 Message size exceeds fixed limit",
            "552 5.3.4 Message size exceeds fixed limit",
            "250 2.0.0 OK",
        ]
    );
    assert_eq!(h.aborted, 1);
    assert!(h.stored.is_empty());
    // The transaction is over: a new one can start.
    h.feed(b"MAIL FROM:<>\r\n");
    assert_eq!(h.lines(), ["250 2.1.0 <> Sender OK"]);
}

#[test]
fn idle_timeout_closes_but_not_while_the_embedder_works() {
    let config = LmtpConfig { idle_timeout: Duration::from_secs(10), ..LmtpConfig::default() };
    let mut s = LmtpSession::new(config, Duration::ZERO);
    s.handle_input(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@x>\r\n", Duration::from_secs(1));
    assert_eq!(s.poll_timeout(), Some(Duration::from_secs(11)));
    // Waiting for the recipient lookup: the deadline moves.
    s.handle_timeout(Duration::from_secs(11));
    assert!(!s.is_closed());
    s.recipient_accepted().unwrap();
    s.handle_input(b"DATA\r\npartial line without end", Duration::from_secs(12));
    assert!(matches!(s.poll_event(), Some(LmtpEvent::MailFrom { .. })));
    assert!(matches!(s.poll_event(), Some(LmtpEvent::Recipient { .. })));
    assert!(matches!(s.poll_event(), Some(LmtpEvent::MessageStart { .. })));
    assert!(matches!(s.poll_event(), Some(LmtpEvent::MessageData(_))));
    s.handle_timeout(Duration::from_secs(30));
    assert!(s.is_closed());
    assert_eq!(s.close_reason(), Some(LmtpCloseReason::IdleTimeout));
    // The message in progress is dropped.
    assert_eq!(s.poll_event(), Some(LmtpEvent::MessageAborted));
    assert!(s
        .take_output()
        .ends_with(b"421 4.4.2 localhost Idle for too long, closing connection\r\n"));
}

#[test]
fn answers_out_of_turn_are_refused() {
    let mut s = LmtpSession::new(LmtpConfig::default(), Duration::ZERO);
    assert!(s.recipient_accepted().is_err());
    assert!(s.delivered(&[]).is_err());
    s.handle_input(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@x>\r\n", Duration::ZERO);
    s.recipient_accepted().unwrap();
    s.handle_input(b"DATA\r\nx\r\n.\r\n", Duration::ZERO);
    // Two results for one recipient: refused, nothing changes.
    assert!(s.delivered(&[Delivery::Stored, Delivery::Stored]).is_err());
    s.delivered(&[Delivery::Stored]).unwrap();
}

#[test]
fn input_stops_being_wanted_behind_a_pending_lookup() {
    let mut s = LmtpSession::new(LmtpConfig::default(), Duration::ZERO);
    s.handle_input(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@x>\r\n", Duration::ZERO);
    let filler = alloc::vec![b'N'; 70_000];
    s.handle_input(&filler, Duration::ZERO);
    assert!(!s.wants_input());
    assert!(!s.is_closed());
}

/// Runs a whole transaction for `message`, dot-stuffed, split into chunks at `cuts`.
fn deliver_split(message: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut stuffed = BytesMut::new();
    let mut stuffer = DotStuffer::new();
    stuffer.stuff(message, &mut stuffed);
    stuffer.finish(&mut stuffed);
    let mut wire = b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n".to_vec();
    wire.extend_from_slice(&stuffed);
    wire.extend_from_slice(b"QUIT\r\n");
    let mut h = Harness::default();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts.into_iter().chain([wire.len()]) {
        h.feed(&wire[start..cut.max(start)]);
        start = cut.max(start);
    }
    assert!(h.s.is_closed(), "{:?}", h.lines());
    assert_eq!(h.stored.len(), 1);
    h.stored.pop().unwrap().2
}

proptest! {
    /// Dot-stuffing by the client and unstuffing by the session give back the message,
    /// whatever the chunking of the stream.
    #[test]
    fn dot_stuffing_round_trips_at_any_split(
        lines in proptest::collection::vec("[.a-z ]{0,6}", 0..12),
        cuts in proptest::collection::vec(0usize..10_000, 0..8),
    ) {
        let mut message = Vec::new();
        for line in &lines {
            message.extend_from_slice(line.as_bytes());
            message.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(deliver_split(&message, &cuts), message);
    }

    /// No input makes the session panic, and it always stays within its bounds.
    #[test]
    fn arbitrary_input_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut h = Harness::default();
        for chunk in &chunks {
            h.feed(chunk);
        }
        prop_assert!(h.s.is_closed() || h.s.wants_input() || !h.s.has_output());
    }
}
