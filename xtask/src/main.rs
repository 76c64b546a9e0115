//! `cargo xtask`: the project's tasks, so that CI and developers run exactly the same commands.
//!
//! - `test`: the whole test suite (unit, integration and doc tests of every crate).
//! - `gates`: the quality gates: fmt, clippy, rustdoc, the `no_std` build of pop3-proto,
//!   `cargo bench --no-run`, and a fuzz smoke run of every target (skipped with a loud notice
//!   when cargo-fuzz is missing, except under `CI=true`, where that fails).
//! - `ci`: `gates`, then `test`.
//! - `fuzz [TARGET] [--runs N]`: run one or every fuzz target (default 20,000 runs each).
//! - `bench [FILTER]`: run the criterion benches and print the figures with their ratios.
//! - `loadtest [--quick] [--rounds N] [--duration SECS] [--write]`: pop3d and Dovecot side by
//!   side under `pop3-load`; prints the table, and with `--write` puts it into
//!   `docs/performance.md`.
//! - `fetchbench [--quick] [--messages N] [--size OCTETS] [--rounds N] [--repeats N]
//!   [--write]`: `pop3 fetch` against mpop and fetchmail from one Dovecot; prints the table,
//!   and with `--write` puts it into `docs/performance.md`.
//! - `lmtpbench [--quick] [--messages N] [--rounds N] [--write]`: durable deliveries per
//!   second through pop3d's LMTP, Dovecot's LMTP and `pop3d deliver`, side by side.
//! - `attack [--no-build]`: pop3d (release, default limits) under the attacks of
//!   `docs/security.md` (login flood, paced guessing, user enumeration, a crowd behind one
//!   address), with their targets; fails if one is missed. About two and a half minutes.

#![forbid(unsafe_code)]

mod attack;
mod authbench;
mod bench_report;
mod deb;
mod dist;
mod fetchbench;
mod lmtpbench;
mod loadtest;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

const USAGE: &str =
    "usage: cargo xtask <test | gates | ci | fuzz [TARGET] [--runs N] | bench [FILTER] | \
                     loadtest [--quick] [--write] | fetchbench [--quick] [--write] | lmtpbench [--quick] [--write] | authbench [--quick] [--write] | dist [--check] | deb [--check] | attack>";

/// How to get cargo-fuzz, for the messages that need it.
const GET_CARGO_FUZZ: &str = "cargo install --locked cargo-fuzz (it runs on a nightly \
                              toolchain, `rustup toolchain install nightly`, or on stable with \
                              RUSTC_BOOTSTRAP=1, which xtask sets when nightly is missing)";

/// Fuzz runs per target in CI (the project's minimum).
const CI_FUZZ_RUNS: u64 = 20_000;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("gates") => gates(),
        Some("ci") => gates().and_then(|()| test()),
        Some("fuzz") => fuzz_command(&args[1..]),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("loadtest") => loadtest::loadtest(&args[1..]),
        Some("fetchbench") => fetchbench::fetchbench(&args[1..]),
        Some("lmtpbench") => lmtpbench::lmtpbench(&args[1..]),
        Some("attack") => attack::attack(&args[1..]),
        Some("dist") => dist::dist(&args[1..]),
        Some("deb") => deb::deb(&args[1..]),
        Some("authbench") => authbench::authbench(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

/// Where `cargo build --release` puts binaries: `CARGO_TARGET_DIR` (relative to the
/// workspace) or `target/`, then `release/`.
fn release_dir() -> PathBuf {
    let target =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let target = if target.is_absolute() { target } else { root().join(target) };
    target.join("release")
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    c.current_dir(root());
    c
}

/// Runs `command`, echoing it first; fails with its description if it fails.
fn run(mut command: Command) -> Result {
    let shown = format!("{command:?}");
    eprintln!("\n==> {shown}");
    let status = command.status().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn cargo_with(args: &[&str]) -> Command {
    let mut c = cargo();
    c.args(args);
    c
}

/// The whole test suite.
fn test() -> Result {
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    let all = ["test", "--workspace", "--no-fail-fast", "--lib", "--bins", "--tests", "--examples"];
    run(cargo_with(&all))?;
    // pop3-proto's unit tests without `std` too: a feature must not change behaviour (SCRAM's
    // keys among it: `scram_keys_of_non_ascii_passwords_are_known_answers`).
    run(cargo_with(&["test", "-p", "pop3-proto", "--no-default-features", "--lib"]))?;
    run(cargo_with(&["test", "--workspace", "--no-fail-fast", "--doc"]))
}

/// The quality gates, in order of cost.
fn gates() -> Result {
    run(cargo_with(&["fmt", "--all", "--", "--check"]))?;
    run(cargo_with(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    let mut doc = cargo_with(&["doc", "--workspace", "--no-deps"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    // pop3-proto is `no_std` + `alloc` without its default features.
    run(cargo_with(&["build", "-p", "pop3-proto", "--no-default-features"]))?;
    run(cargo_with(&["bench", "--workspace", "--no-run"]))?;
    // The man pages and completions build, and every page renders without a groff warning.
    dist::dist(&["--check".to_owned()])?;
    match fuzz_gate(has_cargo_fuzz(), env::var("CI").as_deref() == Ok("true")) {
        FuzzGate::Run => fuzz(None, CI_FUZZ_RUNS),
        FuzzGate::Fail(why) => Err(why),
        FuzzGate::Skip(why) => {
            eprintln!("\n==> SKIPPED: {why}; NOT RUN (CI runs it)");
            Ok(())
        }
    }
}

/// What `gates` does about the fuzz smoke run.
#[derive(Debug, PartialEq, Eq)]
enum FuzzGate {
    Run,
    /// Outside CI a newcomer without cargo-fuzz still gets every other gate.
    Skip(String),
    /// CI must never pass with a gate missing.
    Fail(String),
}

fn fuzz_gate(has_cargo_fuzz: bool, ci: bool) -> FuzzGate {
    let why =
        || format!("fuzz smoke run: cargo-fuzz is not installed; to get it: {GET_CARGO_FUZZ}");
    match (has_cargo_fuzz, ci) {
        (true, _) => FuzzGate::Run,
        (false, false) => FuzzGate::Skip(why()),
        (false, true) => FuzzGate::Fail(format!("{} (CI=true)", why())),
    }
}

fn has_cargo_fuzz() -> bool {
    Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success())
}

fn fuzz_command(args: &[String]) -> Result {
    let mut target = None;
    let mut runs = CI_FUZZ_RUNS;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                let n = it.next().ok_or("--runs needs a number")?;
                runs = n.parse().map_err(|_| format!("--runs: not a number: {n}"))?;
            }
            t if !t.starts_with('-') && target.is_none() => target = Some(t.to_owned()),
            other => return Err(format!("fuzz: unexpected argument {other}\n{USAGE}")),
        }
    }
    fuzz(target.as_deref(), runs)
}

/// A `cargo fuzz` command: nightly when rustup has it, else stable with `RUSTC_BOOTSTRAP=1`
/// (cargo-fuzz needs unstable sanitizer flags; the compiler is the same).
fn cargo_fuzz() -> Result<Command> {
    if !has_cargo_fuzz() {
        return Err(format!("cargo-fuzz is not installed: {GET_CARGO_FUZZ}"));
    }
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut c = Command::new("cargo");
    if nightly {
        c.arg("+nightly");
    } else {
        c.env("RUSTC_BOOTSTRAP", "1");
    }
    c.arg("fuzz").current_dir(root().join("fuzz"));
    Ok(c)
}

/// Runs one target, or every target, for `runs` iterations with the POP3 dictionary.
fn fuzz(target: Option<&str>, runs: u64) -> Result {
    let targets = match target {
        Some(t) => vec![t.to_owned()],
        None => {
            let mut list = cargo_fuzz()?;
            list.arg("list");
            let out = list.output().map_err(|e| format!("cargo fuzz list: {e}"))?;
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
        }
    };
    if targets.is_empty() {
        return Err("no fuzz targets found".to_owned());
    }
    let dict = root().join("fuzz").join("pop3.dict");
    for t in &targets {
        let mut c = cargo_fuzz()?;
        c.args(["run", t, "--", &format!("-runs={runs}"), "-max_total_time=600"]);
        c.arg(format!("-dict={}", dict.display()));
        run(c)?;
    }
    Ok(())
}

/// Runs the criterion benches, then prints the figures and ratios from their estimates.
fn bench(filter: Option<&str>) -> Result {
    let mut c = cargo_with(&["bench", "-p", "pop3-benches", "--bench", "codec", "--"]);
    c.args(["--warm-up-time", "1", "--measurement-time", "3"]);
    if let Some(f) = filter {
        c.arg(f);
    }
    run(c)?;
    let report = bench_report::render(&root().join("target").join("criterion"))?;
    println!("{report}");
    // The pipeline target as a robust figure (alternating runs, fastest of each side).
    run(cargo_with(&["bench", "-p", "pop3-benches", "--bench", "pipeline_ratio"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_gate_skips_loudly_outside_ci_and_fails_in_it() {
        assert_eq!(fuzz_gate(true, true), FuzzGate::Run);
        assert_eq!(fuzz_gate(true, false), FuzzGate::Run);
        let FuzzGate::Skip(why) = fuzz_gate(false, false) else { panic!("not skipped") };
        assert!(why.contains("cargo install --locked cargo-fuzz"), "{why}");
        let FuzzGate::Fail(why) = fuzz_gate(false, true) else { panic!("not failed under CI") };
        assert!(why.contains("cargo install --locked cargo-fuzz") && why.contains("CI=true"));
    }
}
