//! RETR of a message stored in wire form, by `sendfile(2)`: the file's octets go from the
//! page cache to the socket without being copied through user space or dot-stuffed.
//!
//! A message in wire form ([`pop3_storage::wire`]) is stored exactly as RFC 1939 counts its
//! size: CRLF line ends, the last line complete. What RETR must add (RFC 1939 §3) is one `.`
//! in front of each line that begins with `.` (delivery recorded where they are) and the
//! terminator. So the body is the file's stretches between those lines, each sent with
//! `sendfile`, and a one-octet `.` before each of them; the session writes the status line
//! before and the terminator after ([`ServerSession::body_direct_begin`]).
//!
//! Only a plain TCP connection qualifies (a PROXY header has been read off it by then, so
//! the socket carries POP3 alone). Under TLS the octets must be encrypted in user space
//! (rustls), so TLS keeps the streaming path; kernel TLS (kTLS) would let `sendfile` work
//! there too, but the kernel this was written on has no `tls` module, so such a path could
//! not be tested (`docs/performance.md`).
//!
//! A stretch shorter than [`SMALL_STRETCH`] (the header before a dot line right after it,
//! the lines between two dot lines, a whole small message) is not worth a `sendfile` of its
//! own: each call is a segment pushed and a reader woken. It is read from the file (in the
//! page cache, as for `read_small` on the streaming path) and sent with the pieces around it
//! (the status line, the stuffing dots) in one `send`.
//!
//! The socket is tokio's, non-blocking: a send that would block waits for writability
//! ([`TcpStream::writable`], [`TcpStream::try_io`]), bounded by the connection's write
//! timeout and interrupted by a server shutdown, as every other write. `sendfile` may send
//! less than asked (a full socket buffer); the loop goes on from where it stopped. The file
//! is never `stat`ed: its length comes from its name, and a file found shorter (`sendfile`
//! reaching its end early) is an error, after which the reply is never completed; a longer
//! one is sent only up to the recorded length. The octet count on the wire is therefore
//! never wrong.
//!
//! [`ServerSession::body_direct_begin`]: pop3_proto::server::ServerSession::body_direct_begin

use std::io;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use pop3_storage::WireMessage;
use rustix::net::SendFlags;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// The most one `sendfile` call is asked for (Linux transfers at most 0x7ffff000 octets).
const MAX_SENDFILE: u64 = 1 << 30;

/// Stretches shorter than this (a page) are read and sent with the pieces around them rather
/// than by a `sendfile` of their own: copying a page costs less than a call that pushes a
/// segment. The load test's messages have a dot line right after their headers; sending the
/// headers this way took pop3d's CPU per MB of RETR from 2.04 to 1.57 ms (medians of five
/// alternating runs; `docs/performance.md`).
pub(crate) const SMALL_STRETCH: u64 = 4096;

/// The file ended before the length its name records: it changed behind the snapshot.
#[derive(Debug)]
pub(crate) struct FileShort {
    /// Where it ended.
    pub(crate) at: u64,
}

/// Why a direct send stopped.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection failed (or stalled past the write timeout, or the server is shutting
    /// down): the session ends.
    Conn(io::Error),
    /// The file is shorter than recorded: the reply cannot be completed.
    File(FileShort),
}

/// The socket, its write timeout and the server's shutdown: what every wait needs.
pub(crate) struct Sender<'a> {
    pub(crate) tcp: &'a TcpStream,
    /// Longest a write may stall.
    pub(crate) limit: Duration,
    pub(crate) shutdown: &'a CancellationToken,
    /// Octets written so far (status line, body, stuffing dots), for the counters.
    pub(crate) sent: u64,
}

impl Sender<'_> {
    /// Sends `head` (the replies before the body and its status line), then the stuffed body
    /// of `wire`: each long stretch of the file by `sendfile`, short ones read into the
    /// pieces sent around them, a `.` before each dot line. Everything is sent with
    /// `MSG_MORE` but the `sendfile`s, so the small pieces leave in the segments of the
    /// stretches that follow them; what is left after the last `sendfile` waits for the
    /// terminator, which the caller always sends next.
    pub(crate) async fn send_body(
        &mut self,
        head: &[u8],
        wire: &WireMessage,
    ) -> Result<(), SendError> {
        let mut pending = Vec::with_capacity(head.len() + 64);
        pending.extend_from_slice(head);
        let mut from = 0;
        for &dot in &wire.dot_lines {
            self.stretch(&mut pending, wire, from, dot).await?;
            pending.push(b'.');
            from = dot;
        }
        self.stretch(&mut pending, wire, from, wire.len).await?;
        self.send_all(&pending).await.map_err(SendError::Conn)
    }

    /// Adds the file's octets `from..to` to what is sent: read into `pending` if short, else
    /// `pending` is sent and the stretch goes by `sendfile`.
    async fn stretch(
        &mut self,
        pending: &mut Vec<u8>,
        wire: &WireMessage,
        from: u64,
        to: u64,
    ) -> Result<(), SendError> {
        if to - from < SMALL_STRETCH {
            let start = pending.len();
            pending.resize(start + (to - from) as usize, 0);
            if wire.file.read_exact_at(&mut pending[start..], from).is_ok() {
                return Ok(());
            }
            // The file ends early (or cannot be read): the reply cannot be completed. What
            // came before goes out, as it would have on the `sendfile` path.
            pending.truncate(start);
            self.send_all(pending).await.map_err(SendError::Conn)?;
            return Err(SendError::File(FileShort { at: from }));
        }
        self.send_all(pending).await.map_err(SendError::Conn)?;
        pending.clear();
        self.send_file(wire, from, to).await
    }

    /// Sends `bytes` whole, with `MSG_MORE`.
    async fn send_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let tcp = self.tcp;
            let n = self
                .retry(|| Ok(rustix::net::send(tcp, bytes, SendFlags::MORE | SendFlags::NOSIGNAL)?))
                .await?;
            bytes = &bytes[n..];
            self.sent += n as u64;
        }
        Ok(())
    }

    /// Sends the file's octets `from..to` with `sendfile`.
    async fn send_file(&mut self, wire: &WireMessage, from: u64, to: u64) -> Result<(), SendError> {
        let mut offset = from;
        while offset < to {
            let (tcp, file) = (self.tcp, &wire.file);
            let count = usize::try_from((to - offset).min(MAX_SENDFILE)).unwrap_or(usize::MAX);
            let n = self
                .retry(|| Ok(rustix::fs::sendfile(tcp, file, Some(&mut offset), count)?))
                .await
                .map_err(SendError::Conn)?;
            if n == 0 {
                return Err(SendError::File(FileShort { at: offset }));
            }
            self.sent += n as u64;
        }
        Ok(())
    }

    /// Runs `op` until it does not block: on `WouldBlock`, waits until the socket is
    /// writable, at most the write timeout, unless the server shuts down meanwhile.
    async fn retry(&self, mut op: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
        loop {
            match self.tcp.try_io(Interest::WRITABLE, &mut op) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::select! {
                        biased;
                        ready = timeout(self.limit, self.tcp.writable()) => {
                            ready.map_err(|_| {
                                io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")
                            })??;
                        }
                        () = self.shutdown.cancelled() => {
                            return Err(io::Error::other(
                                "server shutting down while the client was reading",
                            ));
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
