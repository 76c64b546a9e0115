//! Filters before download, like mpop's `filter`: a command that reads a message's header
//! (`TOP n 0`, RFC 1939 section 7) on its standard input and decides by its exit status
//! whether the message is downloaded, left on the server, or deleted without being
//! downloaded.
//!
//! | exit | verdict                                                               |
//! |------|-----------------------------------------------------------------------|
//! | 0    | fetch                                                                 |
//! | 1    | skip: left on the server, not recorded as fetched                     |
//! | 2    | delete without downloading (only when the policy deletes; else skip)  |
//! | else | an error for that message: left on the server and reported           |
//!
//! A filter that has not exited after the account's timeout is killed with its process
//! group (a shell pipeline included), and that is an error for the message.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What a filter decided for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Download it (exit 0).
    Fetch,
    /// Leave it on the server (exit 2).
    Skip,
    /// Delete it without downloading it (exit 1).
    Delete,
}

/// What a filter learns of a message besides its header, as environment variables.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    /// `POP3_FILTER_ACCOUNT`: the account's name.
    pub account: &'a str,
    /// `POP3_FILTER_HOST`: the server.
    pub host: &'a str,
    /// `POP3_FILTER_USER`: the login name.
    pub user: &'a str,
    /// `POP3_FILTER_MSG`: the message number in this session.
    pub msg: u32,
    /// `POP3_FILTER_SIZE`: the size in octets, as `LIST` gave it.
    pub size: u64,
    /// `POP3_FILTER_UIDL`: the unique id, as `UIDL` gave it.
    pub uidl: &'a str,
}

/// Runs `command` with `sh -c`, `header` on its standard input, and returns its verdict; an
/// error (other exit status, killed by a signal, not exited after `timeout`, not started)
/// says what happened.
pub async fn judge(
    command: &str,
    header: &[u8],
    about: About<'_>,
    timeout: Duration,
) -> Result<Verdict, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("POP3_FILTER_ACCOUNT", about.account)
        .env("POP3_FILTER_HOST", about.host)
        .env("POP3_FILTER_USER", about.user)
        .env("POP3_FILTER_MSG", about.msg.to_string())
        .env("POP3_FILTER_SIZE", about.size.to_string())
        .env("POP3_FILTER_UIDL", about.uidl)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // Its own process group, so that a timeout kills a pipeline and not only the shell.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("filter {command:?}: {e}"))?;
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let feed = async move {
        if let Some(stdin) = stdin.as_mut() {
            // A filter may decide without reading everything (or anything): a broken pipe
            // is not an error.
            let _ = stdin.write_all(header).await;
        }
        drop(stdin);
    };
    let run = async { tokio::join!(feed, child.wait()).1 };
    let status = match tokio::time::timeout(timeout, run).await {
        Ok(status) => status.map_err(|e| format!("filter {command:?}: {e}"))?,
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            return Err(format!("filter timed out after {} s and was killed", timeout.as_secs()));
        }
    };
    match status.code() {
        Some(0) => Ok(Verdict::Fetch),
        // mpop's codes: 1 kills (deletes unread), 2 skips.
        Some(1) => Ok(Verdict::Delete),
        Some(2) => Ok(Verdict::Skip),
        _ => Err(format!("filter failed: {status} (expected exit 0 fetch, 1 skip, 2 delete)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABOUT: About<'static> =
        About { account: "work", host: "h", user: "u", msg: 3, size: 1234, uidl: "abc" };

    async fn verdict(command: &str, timeout: u64) -> Result<Verdict, String> {
        judge(command, b"Subject: hi\r\n\r\n", ABOUT, Duration::from_secs(timeout)).await
    }

    #[tokio::test]
    async fn exit_codes_and_environment() {
        assert_eq!(verdict("exit 0", 5).await, Ok(Verdict::Fetch));
        assert_eq!(verdict("exit 1", 5).await, Ok(Verdict::Delete));
        assert_eq!(verdict("exit 2", 5).await, Ok(Verdict::Skip));
        assert!(verdict("exit 3", 5).await.unwrap_err().contains("exit status: 3"));
        assert!(verdict("kill -9 $$", 5).await.unwrap_err().contains("signal"));
        let env = r#"test "$POP3_FILTER_SIZE/$POP3_FILTER_UIDL/$POP3_FILTER_ACCOUNT/$POP3_FILTER_MSG" = 1234/abc/work/3"#;
        assert_eq!(verdict(env, 5).await, Ok(Verdict::Fetch));
        assert_eq!(verdict("grep -q '^Subject: hi' || exit 2", 5).await, Ok(Verdict::Fetch));
        assert_eq!(verdict("grep -q '^Subject: no' || exit 2", 5).await, Ok(Verdict::Skip));
    }

    #[tokio::test]
    async fn a_hanging_filter_is_killed_with_its_pipeline() {
        let started = std::time::Instant::now();
        let e = verdict("sleep 30 | cat; exit 0", 1).await.unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_filter_that_reads_nothing_of_a_large_header_is_fine() {
        let header = vec![b'x'; 1 << 20];
        let v = judge("exit 2", &header, ABOUT, Duration::from_secs(5)).await;
        assert_eq!(v, Ok(Verdict::Skip));
    }
}
