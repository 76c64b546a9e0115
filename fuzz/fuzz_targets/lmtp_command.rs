//! `lmtp_command`: one raw line from an LMTP client, parsed as the server does.
//!
//! Checked: no panic, whatever the bytes; a parsed `MAIL` or `RCPT` address is printable
//! US-ASCII within RFC 5321's 256-octet path limit (it goes into logs and into the
//! `Return-Path`/`Delivered-To` headers of stored mail); an error maps to a 5xx reply; and
//! a parsed command encodes to a line that parses back to the same command; and a reply
//! carrying the line's text encodes as exactly one CRLF-ended line.

#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pop3_proto::lmtp::{parse_command, LmtpCommand, Reply, MAX_PATH};

fn check_address(address: &str) {
    assert!(address.len() <= MAX_PATH, "{address:?}");
    assert!(address.bytes().all(|b| (0x20..0x7f).contains(&b)), "{address:?}");
}

fn check_round_trip(command: &LmtpCommand<'_>) {
    let mut wire = BytesMut::new();
    command.encode(&mut wire);
    let line = wire.strip_suffix(b"\r\n").expect("CRLF-ended");
    assert_eq!(parse_command(line).as_ref(), Ok(command), "{wire:?}");
}

fuzz_target!(|line: &[u8]| {
    if let Ok(command) = parse_command(line) {
        check_round_trip(&command);
    }
    match parse_command(line) {
        Ok(LmtpCommand::Mail { from, .. }) => check_address(from),
        Ok(LmtpCommand::Rcpt { to }) => {
            assert!(!to.is_empty());
            check_address(to);
        }
        Ok(_) => {}
        Err(error) => {
            let (code, enhanced) = error.reply_code();
            assert!((500..600).contains(&code) && enhanced[0] == 5, "{error:?}");
        }
    }
    let mut out = BytesMut::new();
    Reply::new(550, [5, 1, 1], String::from_utf8_lossy(line).into_owned()).encode(&mut out);
    assert!(out.ends_with(b"\r\n"));
    assert_eq!(memchr_count(&out, b'\n'), 1, "{out:?}");
    assert_eq!(memchr_count(&out, b'\r'), 1, "{out:?}");
});

fn memchr_count(haystack: &[u8], needle: u8) -> usize {
    haystack.iter().filter(|&&b| b == needle).count()
}
