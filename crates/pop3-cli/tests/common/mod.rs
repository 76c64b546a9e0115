//! Helpers shared by the tests that run the `pop3` binary: a command with its own state and
//! config directories, and a run that captures everything.

#![allow(dead_code)]

pub mod dante;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `pop3 ARGS`, with state and config under `home`, the test server's password, no stdin.
pub fn pop3(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pop3"));
    cmd.args(args)
        .env("POP3_PASSWORD", "secret")
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null());
    cmd
}

/// What a run gave.
#[derive(Debug)]
pub struct Output {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `cmd` (off the async runtime's worker, if any) and checks that it did not panic.
pub fn run(cmd: &mut Command) -> Output {
    let out = match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| cmd.output().unwrap()),
        Err(_) => cmd.output().unwrap(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Writes `text` as the config file under `home` (where `pop3` looks by default).
pub fn write_config(home: &Path, text: &str) {
    let dir = home.join("config").join("pop3");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

/// The pop3d binary, built once per test run (next to `pop3`).
pub fn pop3d_binary() -> PathBuf {
    pop3_testkit::peer::sibling_binary(env!("CARGO_BIN_EXE_pop3"), "pop3d", "pop3d")
}
