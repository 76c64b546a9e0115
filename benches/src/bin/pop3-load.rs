//! `pop3-load`: a POP3 load generator; see `pop3_benches::load` and `docs/performance.md`.
//!
//! ```text
//! pop3-load --mode retr --target 127.0.0.1:1110 -c 4 -d 10s --pid $(pidof pop3d)
//! ```
//!
//! Prints a table, then the same figures as one JSON line; exits 1 if any check failed.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use pop3_benches::load::{run, Options};

fn main() -> ExitCode {
    let options = Options::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if options.threads > 0 {
        rt.worker_threads(options.threads);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pop3-load: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(&options)) {
        Ok(report) => {
            if !options.json {
                print!("{}", report.table());
            }
            println!("{}", report.json());
            if report.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("pop3-load: {e}");
            ExitCode::from(2)
        }
    }
}
