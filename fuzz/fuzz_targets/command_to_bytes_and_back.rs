//! `command_to_bytes_and_back`: arbitrary `Command` and `SaslResponse` values, encoded and
//! decoded.
//!
//! Checked:
//!
//! - `Command::encode` either fails and writes nothing, or writes one line that
//!   `CommandDecoder::decode` (with generous limits) turns back into exactly the same command,
//!   consuming exactly the encoding;
//! - the same for `SaslResponse::encode` and `CommandDecoder::decode_sasl`;
//! - an encoding contains exactly one LF, at its end, after a CR (no value can inject a
//!   second command line).

#![no_main]
#![forbid(unsafe_code)]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pop3_proto::{Command, CommandDecoder, Limits, SaslResponse};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    command: Command<'a>,
    sasl: SaslResponse<'a>,
}

fn generous() -> Limits {
    Limits { command_line: 64 * 1024, sasl_line: 64 * 1024, ..Limits::default() }
}

/// A prefix written before each encoding, to check that a failing encoder writes nothing.
const PREFIX: &[u8] = b"prefix";

/// Encodes with `encode` after [`PREFIX`]; returns the encoding alone, or `None` if it failed.
fn encode_after_prefix<E: std::fmt::Debug>(
    encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Option<Vec<u8>> {
    let mut out = BytesMut::from(PREFIX);
    match encode(&mut out) {
        Ok(()) => {
            let wire = out[PREFIX.len()..].to_vec();
            assert!(wire.ends_with(b"\r\n"), "no CRLF at the end: {wire:?}");
            let lfs = wire.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(lfs, 1, "more than one line: {wire:?}");
            Some(wire)
        }
        Err(_) => {
            assert_eq!(&out[..], PREFIX, "a failed encode wrote something");
            None
        }
    }
}

fuzz_target!(|input: Input<'_>| {
    if let Some(wire) = encode_after_prefix(|out| input.command.encode(out)) {
        let d = CommandDecoder::new(generous()).decode(&wire);
        assert_eq!(d.consumed, wire.len(), "{:?} -> {wire:?}", input.command);
        assert_eq!(d.outcome, Ok(Some(input.command.clone())), "{:?} -> {wire:?}", input.command);
    }
    if let Some(wire) = encode_after_prefix(|out| input.sasl.encode(out)) {
        let d = CommandDecoder::new(generous()).decode_sasl(&wire);
        assert_eq!(d.consumed, wire.len(), "{:?} -> {wire:?}", input.sasl);
        assert_eq!(d.outcome, Ok(Some(input.sasl.clone())), "{:?} -> {wire:?}", input.sasl);
    }
});
