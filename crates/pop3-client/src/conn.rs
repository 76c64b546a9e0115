//! The connection: a socket (plain or TLS), the sans-IO session, and the poll loop that moves
//! bytes between them with a timeout on every wait.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use pop3_proto::client::{ClientEvent, ClientSession};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::client::TlsStream;

use crate::{Error, Result};

/// The socket under the session.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between taking the plain socket for the STLS handshake and getting the TLS one back.
    Upgrading,
}

impl Stream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Upgrading => Poll::Ready(Ok(())),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

const READ_BUF: usize = 64 * 1024;

/// The session and its socket.
pub(crate) struct Conn {
    pub(crate) session: ClientSession,
    pub(crate) stream: Stream,
    out: Bytes,
    needs_flush: bool,
    read_buf: Box<[u8]>,
    pub(crate) timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// Octets read from the server, for progress reports.
    pub(crate) bytes_read: u64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("session", &self.session)
            .field("tls", &self.stream.is_tls())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub(crate) fn new(session: ClientSession, stream: Stream, timeout: Duration) -> Self {
        Self {
            session,
            stream,
            out: Bytes::new(),
            needs_flush: false,
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            bytes_read: 0,
        }
    }

    fn progress(&mut self) {
        let deadline = Instant::now() + self.timeout;
        self.sleep.as_mut().reset(deadline);
    }

    /// Writes what the session wants sent; `Ready(Ok)` once it is all written and flushed.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if self.out.is_empty() {
                if !self.session.has_output() {
                    break;
                }
                self.out = self.session.take_output();
            }
            match self.stream.poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Error::Closed)),
                Poll::Ready(Ok(n)) => {
                    self.out.advance(n);
                    self.needs_flush = true;
                    self.progress();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.needs_flush {
            match self.stream.poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The next event from the session, reading and writing as needed.
    ///
    /// `what` names the wait for a timeout error. A [`ClientEvent::ProtocolError`] is returned
    /// as [`Error::Protocol`]; after [`ClientEvent::Closed`], further calls fail with
    /// [`Error::Closed`].
    pub(crate) fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        what: &'static str,
    ) -> Poll<Result<ClientEvent>> {
        loop {
            let sent = self.poll_send(cx);
            if let Poll::Ready(Err(e)) = sent {
                return Poll::Ready(Err(e));
            }
            if let Some(event) = self.session.poll_event() {
                if let ClientEvent::ProtocolError(e) = event {
                    return Poll::Ready(Err(Error::Protocol(e)));
                }
                return Poll::Ready(Ok(event));
            }
            if self.session.is_closed() {
                return Poll::Ready(Err(Error::Closed));
            }
            if matches!(self.stream, Stream::Upgrading) {
                return Poll::Ready(Err(Error::Closed));
            }
            let mut buf = ReadBuf::new(&mut self.read_buf);
            match self.stream.poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    self.progress();
                    if n == 0 {
                        self.session.handle_eof();
                    } else {
                        self.bytes_read += n as u64;
                        self.session.handle_input(&self.read_buf[..n]);
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.session.handle_eof();
                    return Poll::Ready(Err(Error::Io(e)));
                }
                Poll::Pending => {
                    if self.sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(Error::Timeout { what }));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Starts the timer for a new wait.
    pub(crate) fn arm(&mut self) {
        self.progress();
    }

    pub(crate) async fn next_event(&mut self, what: &'static str) -> Result<ClientEvent> {
        self.arm();
        poll_fn(|cx| self.poll_event(cx, what)).await
    }

    /// Sends all pending output (before a TLS handshake).
    pub(crate) async fn flush(&mut self) -> Result<()> {
        self.arm();
        poll_fn(|cx| match self.poll_send(cx) {
            Poll::Pending if self.sleep.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(Error::Timeout { what: "sending" }))
            }
            other => other,
        })
        .await
    }
}

use std::future::Future as _;
