//! `pop3-floor`: a minimal POP3 server that answers `RETR` by `sendfile` (or one `write`) of
//! a message already in wire form: the kernel's own cost beside every `RETR` figure of the
//! load test. See `pop3_benches::floor` and `docs/performance.md`.
//!
//! ```text
//! pop3-floor --prepare MAILDIR/cur WIRE_DIR          # wire form of each message, once
//! pop3-floor --listen 127.0.0.1:1110 --dir WIRE_DIR --send sendfile
//! ```

#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use pop3_benches::floor::{prepare, serve, Maildrop, SendWith};

/// Command-line options of `pop3-floor`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "pop3-floor",
    about = "Reference POP3 RETR server: sendfile or write of wire-form messages"
)]
struct Options {
    /// Write the wire form of every file of FROM to TO/0001, TO/0002 ... and exit.
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
    prepare: Option<Vec<PathBuf>>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1110")]
    listen: String,
    /// Directory of wire-form messages (every user sees them all).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How RETR sends a message.
    #[arg(long, value_enum, default_value = "sendfile")]
    send: SendWith,
}

fn main() -> ExitCode {
    let o = Options::parse();
    let result = match (&o.prepare, &o.dir) {
        (Some(p), _) => prepare(&p[0], &p[1]).map(|n| eprintln!("pop3-floor: {n} messages")),
        (None, Some(dir)) => Maildrop::load(dir).and_then(|m| {
            let listener =
                TcpListener::bind(&o.listen).map_err(|e| format!("{}: {e}", o.listen))?;
            eprintln!("pop3-floor: {} messages on {} ({:?})", m.len(), o.listen, o.send);
            serve(listener, Arc::new(m), o.send).map_err(|e| format!("accept: {e}"))
        }),
        (None, None) => Err("--dir DIR (or --prepare FROM TO) is needed".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pop3-floor: {e}");
            ExitCode::from(2)
        }
    }
}
