//! The negative table: malformed input and the exact error each yields. Every rejected line is
//! consumed, so the session answers `-ERR` and goes on with the next line.

#![forbid(unsafe_code)]

use pop3_proto::{
    Command, CommandDecoder, CommandError, DecodeError, Expect, Limits, ResponseDecoder,
    ResponseError,
};

fn decode_one(input: &[u8]) -> (usize, Result<Option<Command<'_>>, DecodeError<CommandError>>) {
    let d = CommandDecoder::default().decode(input);
    (d.consumed, d.outcome)
}

#[test]
fn malformed_commands_yield_exact_errors() {
    use CommandError::*;
    let table: &[(&[u8], CommandError)] = &[
        (b"RETR 0\r\n", ZeroMessageNumber),
        (b"RETR -1\r\n", InvalidNumber),
        (b"RETR +1\r\n", InvalidNumber),
        (b"RETR 1a\r\n", InvalidNumber),
        (b"RETR 1 2\r\n", TooManyArguments),
        (b"RETR\r\n", MissingArgument),
        (b"RETR \r\n", InvalidNumber),
        (b"RETR  1\r\n", InvalidNumber),
        (b"LIST 4294967296\r\n", NumberOverflow),
        (b"LIST 99999999999999999999999\r\n", NumberOverflow),
        (b"DELE 0\r\n", ZeroMessageNumber),
        (b"TOP 1\r\n", MissingArgument),
        (b"TOP 1 -5\r\n", InvalidNumber),
        (b"TOP 1 4294967296\r\n", NumberOverflow),
        (b"TOP 1 2 3\r\n", TooManyArguments),
        (b"\r\n", Empty),
        (b"\n", Empty),
        (b"NO\0OP\r\n", InvalidByte),
        (b"USER a\0b\r\n", InvalidByte),
        (b"NOOP\rX\r\n", InvalidByte),
        (b"USER a\x01b\r\n", InvalidByte),
        (b"R\xc3\xa9TR 1\r\n", InvalidKeyword),
        (b"\xffQUIT\r\n", InvalidKeyword),
        (b" QUIT\r\n", InvalidKeyword),
        (b"NO-OP\r\n", InvalidKeyword),
        (b"FOO\r\n", UnknownCommand),
        (b"QUITX\r\n", UnknownCommand),
        (b"NOOP x\r\n", TooManyArguments),
        (b"QUIT \r\n", TooManyArguments),
        (b"USER\r\n", MissingArgument),
        (b"USER \r\n", MissingArgument),
        (b"USER \xff\xfe\r\n", InvalidUtf8),
        (b"PASS\r\n", MissingArgument),
        (b"APOP mrose\r\n", MissingArgument),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22f\r\n", InvalidArgument),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22fg\r\n", InvalidArgument),
        (b"AUTH\r\n", MissingArgument),
        (b"AUTH PL@IN\r\n", InvalidArgument),
        (b"AUTH PLAIN abc\r\n", InvalidArgument),
        (b"AUTH PLAIN AAAA BBBB\r\n", TooManyArguments),
        (b"AUTH ABCDEFGHIJKLMNOPQRSTU\r\n", InvalidArgument),
        (b"LANG en us\r\n", TooManyArguments),
        (b"LANG e_n\r\n", InvalidArgument),
        (b"UTF8 x\r\n", TooManyArguments),
    ];
    for (input, expected) in table {
        let (consumed, outcome) = decode_one(input);
        assert_eq!(
            outcome,
            Err(DecodeError::Invalid(*expected)),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            consumed,
            input.len(),
            "the whole bad line is consumed: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn a_command_of_255_octets_is_accepted_and_256_is_too_long() {
    // RFC 2449 §4: up to 255 octets including CRLF must be accepted.
    let name = "u".repeat(255 - "USER \r\n".len());
    let line = format!("USER {name}\r\n");
    assert_eq!(line.len(), 255);
    assert_eq!(decode_one(line.as_bytes()).1, Ok(Some(Command::User(name.clone().into()))));
    let line = format!("USER {name}u\r\n");
    assert_eq!(decode_one(line.as_bytes()), (256, Err(DecodeError::LineTooLong { limit: 255 })));
}

#[test]
fn a_300_octet_command_is_too_long_and_the_next_command_survives() {
    let mut input = format!("USER {}\r\n", "x".repeat(293)).into_bytes();
    assert_eq!(input.len(), 300);
    input.extend_from_slice(b"NOOP\r\n");
    let mut decoder = CommandDecoder::default();
    let d = decoder.decode(&input);
    assert_eq!(d.outcome, Err(DecodeError::LineTooLong { limit: 255 }));
    assert_eq!(d.consumed, 300);
    let d = decoder.decode(&input[300..]);
    assert_eq!(d.outcome, Ok(Some(Command::Noop)));
}

#[test]
fn a_one_mib_line_is_rejected_without_buffering_it() {
    // Fed in 4 KiB reads, as a server would; the caller's buffer never holds more than one read
    // plus less than one limit, because every call consumes what it has seen of the long line.
    let mut decoder = CommandDecoder::default();
    let mut buffer: Vec<u8> = Vec::new();
    let mut errors = Vec::new();
    let mut commands = Vec::new();
    let mut max_buffered = 0;
    let line: Vec<u8> = std::iter::repeat_n(b'A', 1 << 20).chain(*b"\r\nQUIT\r\n").collect();
    for chunk in line.chunks(4096) {
        buffer.extend_from_slice(chunk);
        max_buffered = max_buffered.max(buffer.len());
        loop {
            let d = decoder.decode(&buffer);
            let more = match d.outcome {
                Ok(Some(c)) => {
                    commands.push(c.into_owned());
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    errors.push(e);
                    true
                }
            };
            buffer.drain(..d.consumed);
            if !more {
                break;
            }
        }
    }
    assert_eq!(errors, vec![DecodeError::LineTooLong { limit: 255 }]);
    assert_eq!(commands, vec![Command::Quit]);
    assert!(max_buffered <= 4096 + 255, "buffered {max_buffered} octets");
}

#[test]
fn auth_lines_and_sasl_responses_have_their_own_larger_limit() {
    let token = "A".repeat(8 * 1024);
    let line = format!("AUTH XOAUTH2 {token}\r\n");
    let (consumed, outcome) = decode_one(line.as_bytes());
    assert_eq!(consumed, line.len());
    assert!(matches!(outcome, Ok(Some(Command::Auth { .. }))), "{outcome:?}");
    let response = format!("{token}\r\n");
    let d = CommandDecoder::default().decode_sasl(response.as_bytes());
    assert!(matches!(d.outcome, Ok(Some(_))));
    // Limits are configurable.
    let limits = Limits { sasl_line: 1024, ..Limits::default() };
    let d = CommandDecoder::new(limits).decode(line.as_bytes());
    assert_eq!(d.outcome, Err(DecodeError::LineTooLong { limit: 1024 }));
    assert_eq!(d.consumed, line.len());
    let long_user = format!("USER {}\r\n", "u".repeat(900));
    let d =
        CommandDecoder::new(Limits { command_line: 1000, ..limits }).decode(long_user.as_bytes());
    assert!(matches!(d.outcome, Ok(Some(Command::User(_)))));
}

#[test]
fn keywords_are_case_insensitive_and_bare_lf_ends_a_line() {
    for line in ["quit\r\n", "QuIt\r\n", "QUIT\n"] {
        assert_eq!(decode_one(line.as_bytes()).1, Ok(Some(Command::Quit)), "{line:?}");
    }
}

#[test]
fn pass_keeps_spaces_and_raw_octets() {
    let (_, outcome) = decode_one(b"PASS  two words \xe9\r\n");
    let Ok(Some(Command::Pass(p))) = outcome else { panic!("{outcome:?}") };
    assert_eq!(&p.expose()[..], b" two words \xe9");
}

#[test]
fn malformed_responses_yield_exact_errors() {
    let table: &[(&[u8], Expect, ResponseError)] = &[
        (b"OK fine\r\n", Expect::Status, ResponseError::InvalidStatus),
        (b"+OKAY\r\n", Expect::Status, ResponseError::InvalidStatus),
        (b"+ abc\r\n", Expect::Sasl, ResponseError::InvalidChallenge),
        (b"+OK\r\n1\r\n.\r\n", Expect::List, ResponseError::InvalidScanListing),
        (b"+OK\r\n0 10\r\n.\r\n", Expect::List, ResponseError::InvalidScanListing),
        (b"+OK\r\n1 a b\r\n.\r\n", Expect::Uidl, ResponseError::InvalidUidListing),
        (b"+OK\r\n\r\n.\r\n", Expect::Capa, ResponseError::InvalidListLine),
    ];
    for (input, expect, expected) in table {
        let d = ResponseDecoder::default().decode(input, *expect);
        assert_eq!(
            d.outcome,
            Err(DecodeError::Invalid(*expected)),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let uid = format!("+OK\r\n1 {}\r\n.\r\n", "u".repeat(71));
    let d = ResponseDecoder::default().decode(uid.as_bytes(), Expect::Uidl);
    assert_eq!(d.outcome, Err(DecodeError::Invalid(ResponseError::InvalidUidListing)));
}

#[test]
fn a_listing_larger_than_the_block_limit_is_refused_whole_but_decodes_line_by_line() {
    let limits = Limits { multiline_block: 64, ..Limits::default() };
    let mut input = b"+OK\r\n".to_vec();
    for n in 1..=20 {
        input.extend_from_slice(format!("{n} 1000\r\n").as_bytes());
    }
    input.extend_from_slice(b".\r\n");
    let mut decoder = ResponseDecoder::new(limits);
    let d = decoder.decode(&input, Expect::List);
    assert_eq!(d.outcome, Err(DecodeError::Invalid(ResponseError::BlockTooLarge)));
    assert_eq!(d.consumed, 0);
    let d = decoder.decode(&input, Expect::Status);
    let mut at = d.consumed;
    let mut count = 0;
    loop {
        let d = decoder.decode_item(&input[at..], Expect::List);
        at += d.consumed;
        match d.outcome.unwrap().unwrap() {
            pop3_proto::ListItem::End => break,
            pop3_proto::ListItem::Scan(_) => count += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((count, at), (20, input.len()));
}

#[test]
fn encoding_refuses_arguments_that_would_inject_a_line() {
    let mut out = bytes::BytesMut::new();
    let bad = [
        Command::User("alice\r\nDELE 1".into()),
        Command::User("".into()),
        Command::Pass(pop3_proto::Secret::new(b"pw\nDELE 1"[..].into())),
        Command::Auth { mechanism: "PLAIN X".into(), initial_response: None },
        Command::Lang(pop3_proto::LangArg::Tag("en\r\n".into())),
    ];
    for command in bad {
        assert!(command.encode(&mut out).is_err(), "{command:?}");
    }
    assert!(out.is_empty());
    let mut out = bytes::BytesMut::new();
    pop3_proto::StatusLine::err("user alice\r\nDELE 1").encode(&mut out);
    assert_eq!(&out[..], b"-ERR user alice  DELE 1\r\n");
}

#[test]
fn the_encoder_never_emits_a_status_line_over_512_octets() {
    let long = "\u{e9}".repeat(600);
    let mut out = bytes::BytesMut::new();
    pop3_proto::StatusLine::err(long.as_str())
        .with_code(pop3_proto::RespCode::SysTemp)
        .encode(&mut out);
    assert!(out.len() <= 512, "{}", out.len());
    assert!(out.ends_with(b"\r\n"));
    assert!(std::str::from_utf8(&out).is_ok(), "cut on a character boundary");
    let d = ResponseDecoder::default().decode(&out, Expect::Status);
    assert!(matches!(d.outcome, Ok(Some(_))));
}

/// Found by the `split_invariance` fuzz target: a listing after an over-long line must decode
/// the same whatever the chunking.
#[test]
fn a_listing_after_an_over_long_line_decodes_the_same_in_any_chunking() {
    let mut wire = vec![b'x'; 9000];
    wire.extend_from_slice(b"\r\n+OK\r\n1 2\r\n.\r\n");
    let run = |cuts: &[usize]| {
        let mut decoder = ResponseDecoder::default();
        let mut expects = [Expect::Status, Expect::List].into_iter();
        let mut expect = expects.next();
        let (mut buffer, mut seen, mut at) = (Vec::new(), Vec::new(), 0);
        for &cut in cuts.iter().chain([&wire.len()]) {
            buffer.extend_from_slice(&wire[at..cut]);
            at = cut;
            while let Some(e) = expect {
                let d = decoder.decode(&buffer, e);
                let outcome = d.outcome.map(|r| r.map(pop3_proto::Response::into_owned));
                buffer.drain(..d.consumed);
                match outcome {
                    Ok(None) => break,
                    other => {
                        seen.push(other);
                        expect = expects.next();
                    }
                }
            }
        }
        seen
    };
    let whole = run(&[]);
    assert_eq!(whole.len(), 2);
    assert_eq!(whole[0], Err(DecodeError::LineTooLong { limit: 8192 }));
    assert!(matches!(&whole[1], Ok(Some(pop3_proto::Response::ScanList(_, l))) if l.len() == 1));
    assert_eq!(run(&[8200, 9010]), whole);
    assert_eq!(run(&[100, 9003, 9005]), whole);
}

/// Found by the `response` fuzz target: control characters are read as the spaces the
/// encoder writes, so decode → encode → decode is stable.
#[test]
fn control_characters_in_a_status_line_read_as_spaces() {
    let d = ResponseDecoder::default().decode(b"+OK [A]\0\n", Expect::Status);
    let first = d.outcome.unwrap().unwrap().into_owned();
    let mut wire = bytes::BytesMut::new();
    first.encode(&mut wire);
    let again = ResponseDecoder::default().decode(&wire, Expect::Status).outcome.unwrap().unwrap();
    assert_eq!(again, first);
    assert_eq!(&wire[..], b"+OK [A]\r\n");
}

/// Found by the `split_invariance` fuzz target: a listing refused (an over-long line inside
/// it) right after the end of an over-long line that arrived in an earlier read consumes
/// nothing, as it does when everything arrives in one read; "nothing consumed" is how a
/// caller tells this fatal error from a skipped line.
#[test]
fn a_refused_listing_after_a_skipped_line_consumes_nothing_in_any_chunking() {
    let limits = pop3_proto::Limits { response_line: 4, ..pop3_proto::Limits::default() };
    let wire = b"Uvwxyz end\n+OK\nz\n(/abcdef";
    // Whole: the over-long first line, then the refused listing.
    let mut decoder = ResponseDecoder::new(limits);
    let d = decoder.decode(wire, Expect::List);
    assert_eq!((d.consumed, d.outcome), (11, Err(DecodeError::LineTooLong { limit: 4 })));
    let d = decoder.decode(&wire[11..], Expect::List);
    assert_eq!((d.consumed, d.outcome), (0, Err(DecodeError::LineTooLong { limit: 4 })));
    // Split inside the over-long line: the same outcomes, the refusal still consumes nothing.
    let mut decoder = ResponseDecoder::new(limits);
    let d = decoder.decode(&wire[..6], Expect::List);
    assert_eq!((d.consumed, d.outcome), (6, Err(DecodeError::LineTooLong { limit: 4 })));
    let d = decoder.decode(&wire[6..], Expect::List);
    assert_eq!((d.consumed, d.outcome), (0, Err(DecodeError::LineTooLong { limit: 4 })));
    // Called again, it still skips the rest of the over-long line first.
    let d = decoder.decode(&wire[6..], Expect::List);
    assert_eq!(d.consumed, 0);
}

/// Found by the `response_to_bytes_and_back` fuzz target: RFC 2449's `rchar` range ends at DEL,
/// but DEL in a status line reads as a space, so a code holding it is dropped by the encoder
/// rather than sent as `[\x7f]` (which would come back as text, not as a code).
#[test]
fn a_response_code_holding_del_is_dropped_not_sent() {
    let mut wire = bytes::BytesMut::new();
    pop3_proto::StatusLine::ok("")
        .with_code(pop3_proto::RespCode::Other("\x7f".into()))
        .encode(&mut wire);
    assert_eq!(&wire[..], b"+OK\r\n");
    let mut wire = bytes::BytesMut::new();
    pop3_proto::StatusLine::ok("hi")
        .with_code(pop3_proto::RespCode::Other("X\x7fY".into()))
        .encode(&mut wire);
    assert_eq!(&wire[..], b"+OK hi\r\n");
    let d = ResponseDecoder::default().decode(b"+OK [\x7f] hi\r\n", Expect::Status);
    let line = d.outcome.unwrap().unwrap();
    assert_eq!(line.status_line().unwrap().code, None);
}

#[test]
fn a_malformed_line_inside_a_listing_consumes_the_whole_listing() {
    let input = b"+OK\r\n1 10\r\nbogus\r\n2 20\r\n.\r\n+OK next\r\n";
    let mut decoder = ResponseDecoder::default();
    let d = decoder.decode(input, Expect::List);
    assert_eq!(d.outcome, Err(DecodeError::Invalid(ResponseError::InvalidScanListing)));
    assert_eq!(&input[d.consumed..], b"+OK next\r\n");
    // Incomplete: nothing is consumed until the terminator arrives.
    let d = decoder.decode(&input[..15], Expect::List);
    assert_eq!((d.consumed, d.outcome), (0, Ok(None)));
}
