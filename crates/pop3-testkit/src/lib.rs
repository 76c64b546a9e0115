//! What the workspace's tests share (`publish = false`, only ever a
//! dev-dependency):
//!
//! - [`transmitted`]: the reference for what POP3 sends for a stored message;
//! - [`file_names`]: a directory's entries, sorted (what a Maildir holds);
//! - [`peer`]: helpers for the tests that start real peers (Dovecot);
//! - [`server`]: an in-process POP3 server (pop3-proto's `ServerSession` over tokio, an
//!   in-memory maildrop, optional TLS) for the client's and the retriever's tests, with the
//!   test certificates it needs;
//! - [`postgres`]: a throwaway PostgreSQL cluster (initdb, pg_ctl) shared by a test binary.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod oauth;
pub mod peer;
pub mod postfix;
pub mod postgres;
pub mod server;
pub mod slapd;

/// What the protocol layer transmits for a stored message, before dot-stuffing (RFC 1939 §3:
/// lines end in CRLF): every bare LF becomes CRLF, and an unterminated last line is completed
/// (a final CR just gets its LF). Built byte by byte, independently of the code under test.
pub fn transmitted(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    match message.last() {
        None | Some(b'\n') => {}
        Some(b'\r') => out.push(b'\n'),
        Some(_) => out.extend_from_slice(b"\r\n"),
    }
    out
}

/// The names of the entries of `dir`, sorted; panics if it cannot be read (a test's
/// precondition).
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::transmitted;

    #[test]
    fn line_ends_become_crlf_and_the_last_line_is_completed() {
        assert_eq!(transmitted(b""), b"");
        assert_eq!(transmitted(b"a\nb\r\n"), b"a\r\nb\r\n");
        assert_eq!(transmitted(b"\n"), b"\r\n");
        assert_eq!(transmitted(b"no end"), b"no end\r\n");
        assert_eq!(transmitted(b"cr\r"), b"cr\r\n");
        assert_eq!(transmitted(b"x\r\ny"), b"x\r\ny\r\n");
    }
}
