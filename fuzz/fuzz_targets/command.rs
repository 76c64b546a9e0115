//! `command`: raw bytes from a client, decoded as a server would.
//!
//! The input is fed to [`CommandDecoder::decode`] in a loop (drop `consumed`, stop on
//! `Ok(None)`), once with the default limits and once with small limits taken from the first
//! octet (so over-long lines and the skipping state are reached with short inputs), and the
//! same bytes are fed to [`CommandDecoder::decode_sasl`] the same way. Checked:
//!
//! - no panic, whatever the bytes;
//! - `consumed` never exceeds the input left;
//! - every call that yields a value or an error consumes something (else a server loop would
//!   spin), so the loop ends after at most one call per input octet plus one;
//! - every decoded command encodes (what the decoder accepts, the encoder accepts), and its
//!   encoding decodes again, with generous limits, to an equal command consuming the whole
//!   encoding; the same for SASL lines.

#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pop3_proto::{Command, CommandDecoder, CommandError, Decoded, Limits, SaslResponse};

/// Limits under which any re-encoded command fits.
fn generous() -> Limits {
    Limits { command_line: 64 * 1024, ..Limits::default() }
}

fn check_command(command: &Command<'_>) {
    let mut wire = BytesMut::new();
    if let Err(e) = command.encode(&mut wire) {
        panic!("decoded command {command:?} does not encode: {e:?}");
    }
    let again = CommandDecoder::new(generous()).decode(&wire);
    assert_eq!(again.consumed, wire.len(), "re-decode of {wire:?}");
    assert_eq!(again.outcome.as_ref(), Ok(&Some(command.clone())), "{wire:?}");
}

fn check_sasl(response: &SaslResponse<'_>) {
    let mut wire = BytesMut::new();
    if let Err(e) = response.encode(&mut wire) {
        panic!("decoded SASL line {response:?} does not encode: {e:?}");
    }
    let again = CommandDecoder::new(generous()).decode_sasl(&wire);
    assert_eq!(again.consumed, wire.len(), "re-decode of {wire:?}");
    assert_eq!(again.outcome.as_ref(), Ok(&Some(response.clone())), "{wire:?}");
}

/// The server loop: decode, check, drop `consumed`, until the decoder needs more input.
fn server_loop<'d, T>(
    data: &'d [u8],
    mut decode: impl FnMut(&'d [u8]) -> Decoded<T, CommandError>,
    check: impl Fn(&T),
) {
    let mut rest = data;
    let mut calls = 0usize;
    loop {
        calls += 1;
        assert!(calls <= data.len() + 1, "decoder loop does not terminate");
        let d = decode(rest);
        assert!(d.consumed <= rest.len(), "consumed {} of {}", d.consumed, rest.len());
        match &d.outcome {
            Ok(None) => break,
            Ok(Some(value)) => {
                assert!(d.consumed > 0, "a value without consuming input");
                check(value);
            }
            Err(_) => assert!(d.consumed > 0, "an error without consuming input"),
        }
        rest = &rest[d.consumed..];
    }
}

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        command_line: 8 + usize::from(data.first().copied().unwrap_or(0) % 64),
        sasl_line: 8 + usize::from(data.first().copied().unwrap_or(0) / 4),
        ..Limits::default()
    };
    for limits in [Limits::default(), small] {
        let mut decoder = CommandDecoder::new(limits);
        server_loop(data, |b| decoder.decode(b), check_command);
        let mut decoder = CommandDecoder::new(limits);
        server_loop(data, |b| decoder.decode_sasl(b), check_sasl);
    }
});
