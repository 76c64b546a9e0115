//! Turns criterion's `estimates.json` files into the table of `docs/performance.md`, with each
//! codec bench set against its practical limit: a baseline over the same bytes that only finds
//! line ends with memchr, or finds them and copies the bytes.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::Value;

/// `(bench, baseline, what the ratio means)`: every bench that has a target against a baseline.
const PAIRS: &[(&str, &str, &str)] = &[
    ("dot_stuff/1KiB", "baseline_copy/text_1KiB", "throughput vs copy"),
    ("dot_stuff/1MiB", "baseline_copy/text_1MiB", "throughput vs copy (target >= 50%)"),
    ("dot_stuff/dot_heavy", "baseline_copy/dot_heavy", "throughput vs copy"),
    ("dot_unstuff/1KiB", "baseline_copy/wire_1KiB", "throughput vs copy"),
    ("dot_unstuff/1MiB", "baseline_copy/wire_1MiB", "throughput vs copy (target >= 50%)"),
    ("dot_unstuff/dot_heavy", "baseline_copy/wire_dot_heavy", "throughput vs copy"),
    (
        "parse_pipeline/16",
        "baseline_memchr_line/pipeline_16",
        "time vs memchr per line (target <= 4x)",
    ),
    (
        "parse_pipeline/256",
        "baseline_memchr_line/pipeline_256",
        "time vs memchr per line (target <= 4x)",
    ),
    ("parse_pipeline/16", "baseline_memchr/pipeline_16", "time vs memchr_iter"),
    ("parse_pipeline/256", "baseline_memchr/pipeline_256", "time vs memchr_iter"),
    ("parse_response/multiline_1MiB", "baseline_memchr_line/uidl_1MiB", "time vs memchr per line"),
];

struct Estimate {
    /// Mean time per iteration, nanoseconds.
    mean_ns: f64,
    /// Bytes per iteration, if the bench declared a throughput.
    bytes: Option<f64>,
}

fn read(dir: &Path, id: &str) -> Option<Estimate> {
    let bench = dir.join(id);
    let estimates: Value =
        serde_json::from_str(&fs::read_to_string(bench.join("new/estimates.json")).ok()?).ok()?;
    let meta: Value =
        serde_json::from_str(&fs::read_to_string(bench.join("new/benchmark.json")).ok()?).ok()?;
    Some(Estimate {
        mean_ns: estimates["mean"]["point_estimate"].as_f64()?,
        bytes: meta["throughput"]["Bytes"].as_f64(),
    })
}

fn time(ns: f64) -> String {
    match ns {
        n if n < 1e3 => format!("{n:.1} ns"),
        n if n < 1e6 => format!("{:.2} µs", n / 1e3),
        n => format!("{:.2} ms", n / 1e6),
    }
}

fn rate(e: &Estimate) -> String {
    e.bytes.map_or_else(String::new, |b| format!("{:.0} MiB/s", b / e.mean_ns * 1e9 / 1048576.0))
}

/// Every bench found under `dir` (criterion's output), then the ratios to the baselines.
pub fn render(dir: &Path) -> Result<String, String> {
    let mut ids = Vec::new();
    for group in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
        for bench in fs::read_dir(group.path()).into_iter().flatten().flatten() {
            if bench.path().join("new/estimates.json").exists() {
                ids.push(format!(
                    "{}/{}",
                    group.file_name().to_string_lossy(),
                    bench.file_name().to_string_lossy()
                ));
            }
        }
    }
    ids.sort();
    let mut out = String::from("| bench | mean time | throughput |\n|---|---:|---:|\n");
    for id in &ids {
        if let Some(e) = read(dir, id) {
            let _ = writeln!(out, "| `{id}` | {} | {} |", time(e.mean_ns), rate(&e));
        }
    }
    out.push_str("\n| bench | baseline | ratio | meaning |\n|---|---|---:|---|\n");
    for (bench, base, meaning) in PAIRS {
        if let (Some(b), Some(l)) = (read(dir, bench), read(dir, base)) {
            let ratio = if meaning.starts_with("throughput") {
                format!("{:.0}%", l.mean_ns / b.mean_ns * 100.0)
            } else {
                format!("{:.2}x", b.mean_ns / l.mean_ns)
            };
            let _ = writeln!(out, "| `{bench}` | `{base}` | {ratio} | {meaning} |");
        }
    }
    Ok(out)
}
