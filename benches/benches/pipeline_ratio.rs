//! The pipeline-parsing target as one robust number: decoding a 256-command pipeline against
//! the per-line memchr baseline over the same bytes, timed alternately (A B A B, 200 rounds of
//! 200 runs each), keeping each side's fastest round. On a shared machine other processes only
//! ever add time, so the minimum is the figure least disturbed by them, and alternating exposes
//! both sides to the same conditions. Target: at most 4x. Run with
//! `cargo bench -p pop3-benches --bench pipeline_ratio`.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

use pop3_benches::{memchr_each_line, pipeline};
use pop3_proto::CommandDecoder;

/// Decodes every command of `input` as a server's read loop does; returns how many.
fn decode_all(input: &[u8]) -> usize {
    let mut decoder = CommandDecoder::default();
    let (mut rest, mut commands) = (input, 0);
    loop {
        let d = decoder.decode(rest);
        match d.outcome {
            Ok(Some(command)) => {
                black_box(&command);
                commands += 1;
            }
            Ok(None) => return commands,
            Err(e) => {
                black_box(e);
            }
        }
        rest = &rest[d.consumed..];
    }
}

/// The fastest of `rounds` rounds of `runs` calls of `f`, in seconds per call.
fn fastest(f: &dyn Fn() -> usize, best: &mut f64, runs: u32) {
    let start = Instant::now();
    for _ in 0..runs {
        black_box(f());
    }
    *best = best.min(start.elapsed().as_secs_f64() / f64::from(runs));
}

fn main() {
    let input = pipeline(256);
    assert_eq!(decode_all(&input), 256);
    assert_eq!(memchr_each_line(&input), 256);
    let (mut parse, mut baseline) = (f64::MAX, f64::MAX);
    for _ in 0..200 {
        fastest(&|| decode_all(black_box(&input)), &mut parse, 200);
        fastest(&|| memchr_each_line(black_box(&input)), &mut baseline, 200);
    }
    println!(
        "pipeline_ratio: parse_pipeline/256 {:.2} us, baseline_memchr_line/pipeline_256 {:.2} us, \
         ratio {:.2}x (target <= 4x)",
        parse * 1e6,
        baseline * 1e6,
        parse / baseline
    );
}
