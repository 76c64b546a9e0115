//! Delivery to a mail server: LMTP (RFC 2033) over TCP or a Unix socket, or SMTP (RFC 5321)
//! over TCP, one recipient per message. A message counts as delivered only once the server
//! has answered 250 to its DATA (for LMTP: the reply for the one recipient, RFC 2033 section
//! 4.2); the caller records it in the ledger right after, before anything may delete it on
//! the POP3 server.
//!
//! The protocol is kept apart from the I/O: [`Reply::parse_line`] reads one reply line,
//! [`Stuffer`] prepares DATA (RFC 5321 section 4.5.2) chunk by chunk, and [`Session`] only
//! writes commands and reads replies over a blocking stream (the sink it serves is
//! synchronous, like an MDA).
//!
//! A message is streamed ([`Transfer`]): only its header is held, up to [`HEADER_LIMIT`], for
//! the envelope sender its `Return-Path` gives; then `MAIL`, `RCPT` and `DATA` go out and the
//! message follows as it arrives from the POP3 server, each chunk stuffed and sent. Memory
//! does not grow with the message. A download that fails half-way closes the connection
//! before the final dot, so the server keeps nothing of it (RFC 5321 section 4.1.1.4: the
//! data counts only once ended by the dot).
//!
//! A 4xx reply is temporary (RFC 5321 section 4.2.1): the message is left on the POP3 server
//! and tried again on the next run. A 5xx reply is permanent: the message is left too (the
//! retriever never bounces or drops mail on its own), and reported as refused on every run
//! until the server accepts it or the user removes it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Which protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 2033: LHLO, and one reply per recipient after DATA.
    Lmtp,
    /// RFC 5321: EHLO (HELO if refused).
    Smtp,
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A host name or address and a port.
    Tcp { host: String, port: u16 },
    /// A Unix-domain socket (LMTP only).
    Unix(PathBuf),
}

/// A delivery target on a mail server, with its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub protocol: Protocol,
    pub endpoint: Endpoint,
    /// `RCPT TO`: the one recipient.
    pub recipient: String,
    /// `MAIL FROM` of a message without a Return-Path field.
    pub sender: String,
    /// Longest wait for the server.
    pub timeout: Duration,
}

impl Relay {
    /// Parses what follows `lmtp:` (`HOST:PORT`, `[IPV6]:PORT` or `/path/to/socket`) or
    /// `smtp:` (`HOST[:PORT]`, port 25 by default); the envelope is filled in later.
    pub fn parse(protocol: Protocol, text: &str) -> Result<Self, String> {
        let endpoint = if text.starts_with('/') && protocol == Protocol::Lmtp {
            Endpoint::Unix(PathBuf::from(text))
        } else {
            let (host, port) = crate::config::split_host_port(text)?;
            let port = match (port, protocol) {
                (Some(port), _) => port,
                (None, Protocol::Smtp) => 25,
                (None, Protocol::Lmtp) => return Err("LMTP needs a port or a socket path".into()),
            };
            if host.is_empty() || host.contains('/') {
                return Err("expected HOST:PORT (a socket path only for lmtp:)".into());
            }
            Endpoint::Tcp { host, port }
        };
        let timeout = Duration::from_secs(60);
        Ok(Self { protocol, endpoint, recipient: String::new(), sender: String::new(), timeout })
    }
}

/// The envelope sender of a message whose header is `header`: its Return-Path (`<>` stays
/// the null sender), else `otherwise`.
fn sender_of(header: &[u8], otherwise: &str) -> String {
    let field = crate::account::header_field(header, "Return-Path");
    let field = field.trim();
    match field.strip_prefix('<').and_then(|f| f.split_once('>')) {
        Some((address, _)) if !address.contains([' ', '\r', '\n']) => address.to_owned(),
        _ => otherwise.to_owned(),
    }
}

/// A server reply: its code and its text (the lines of a multiline reply joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// Parses one line of a reply, `NNN text` (the last one) or `NNN-text` (more follow), RFC
    /// 5321 section 4.2: its code, whether it is the last line, and its text.
    pub fn parse_line(line: &str) -> Result<(u16, bool, &str), String> {
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| *c >= 200);
        let code = code.filter(|c| *c < 600).ok_or_else(|| format!("bad reply {line:?}"))?;
        match line.as_bytes().get(3) {
            None | Some(b' ') => Ok((code, true, line.get(4..).unwrap_or(""))),
            Some(b'-') => Ok((code, false, &line[4..])),
            _ => Err(format!("bad reply {line:?}")),
        }
    }

    fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Why a message was not delivered.
#[derive(Debug)]
pub enum Refused {
    /// 4xx: try again later.
    Temporary(String, Reply),
    /// 5xx: the server will not take it.
    Permanent(String, Reply),
    /// The connection failed: the session is unusable.
    Broken(io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Temporary(step, reply) => write!(
                f,
                "the server refused {step} for now ({reply}): left on the server, tried again next run"
            ),
            Refused::Permanent(step, reply) => write!(
                f,
                "the server refused {step} permanently ({reply}): left on the server"
            ),
            Refused::Broken(e) => write!(f, "mail server connection: {e}"),
        }
    }
}

/// A message as DATA sends it, chunk by chunk in any cut: every line end CRLF, a leading
/// dot doubled (RFC 5321 section 4.5.2), a last line end added if missing, and the final `.`
/// line. What it needs of the chunks before is two bits.
#[derive(Debug, Clone, Copy)]
pub struct Stuffer {
    at_line_start: bool,
    after_cr: bool,
}

impl Default for Stuffer {
    fn default() -> Self {
        Self { at_line_start: true, after_cr: false }
    }
}

impl Stuffer {
    /// Appends `data`, stuffed, to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len() + data.len() / 64 + 2);
        for &b in data {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            if b == b'\n' && !self.after_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.after_cr = b == b'\r';
            self.at_line_start = b == b'\n';
        }
    }

    /// Appends the end of the data to `out`: a line end if the last line lacks one, and the
    /// final `.` line.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// `message` whole as DATA sends it (see [`Stuffer`]).
#[cfg(test)]
pub fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stuffer = Stuffer::default();
    stuffer.feed(message, &mut out);
    stuffer.finish(&mut out);
    out
}

/// The most of a message's header held to find its `Return-Path` (the envelope sender)
/// before the transaction starts; a header longer than this is sent as it comes, from the
/// account's address. Real headers are a few KiB; the field is first when present.
pub const HEADER_LIMIT: usize = 64 * 1024;

/// One message on its way to the server, streamed: [`write`](Self::write) each chunk as it
/// arrives (as received, CRLF line ends), then [`finish`](Self::finish), or
/// [`abandon`](Self::abandon) a message whose download failed.
#[derive(Debug)]
pub struct Transfer {
    session: Session,
    /// `RCPT TO`.
    recipient: String,
    /// `MAIL FROM` of a message without a Return-Path.
    sender: String,
    stage: Stage,
    stuffer: Stuffer,
    /// The stuffed chunk being sent, kept for its capacity.
    out: Vec<u8>,
}

/// How far a [`Transfer`] is.
#[derive(Debug)]
enum Stage {
    /// Gathering the header (the envelope sender is in it); nothing sent yet.
    Header(Vec<u8>),
    /// `MAIL`, `RCPT` and `DATA` accepted: the message is being sent.
    Data,
    /// `MAIL`, `RCPT` or `DATA` refused, and the transaction reset: the rest of the message is
    /// read and dropped.
    Refused(Refused),
}

impl Transfer {
    /// Sends the next chunk of the message (or holds it while the header is not complete).
    /// An error means the connection failed; a refusal of the envelope is told by
    /// [`finish`](Self::finish).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.stage {
            Stage::Header(header) => {
                // The blank line ending the header may straddle the chunks.
                let from = header.len().saturating_sub(2);
                header.extend_from_slice(data);
                if header_ends(header, from) || header.len() >= HEADER_LIMIT {
                    self.open()?;
                }
                Ok(())
            }
            Stage::Data => self.send(data),
            Stage::Refused(_) => Ok(()),
        }
    }

    /// Starts the transaction with the sender the header names, then sends the header.
    fn open(&mut self) -> io::Result<()> {
        let Stage::Header(header) = &mut self.stage else { return Ok(()) };
        let header = std::mem::take(header);
        self.stage = Stage::Data;
        let sender = sender_of(&header, &self.sender);
        let session = &mut self.session;
        let opened = session
            .step("MAIL FROM", &format!("MAIL FROM:<{sender}>"))
            .and_then(|()| session.step("RCPT TO", &format!("RCPT TO:<{}>", self.recipient)))
            .and_then(|()| session.step("DATA", "DATA"));
        match opened {
            Ok(()) => self.send(&header),
            Err(Refused::Broken(e)) => Err(e),
            Err(refused) => {
                // The session stays usable for the next message (RFC 5321 section 4.1.1.5).
                self.session.command("RSET")?;
                self.stage = Stage::Refused(refused);
                Ok(())
            }
        }
    }

    /// Stuffs and sends `data`.
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.stuffer.feed(data, &mut self.out);
        self.session.writer.write_all(&self.out)
    }

    /// Ends the data and waits for the server's verdict: Ok only after its 250 (for LMTP:
    /// the reply for the one recipient, RFC 2033 section 4.2). Gives the session back unless
    /// the connection failed.
    pub fn finish(mut self) -> (Option<Session>, Result<(), Refused>) {
        if let Err(e) = self.open() {
            return (None, Err(Refused::Broken(e)));
        }
        match std::mem::replace(&mut self.stage, Stage::Data) {
            Stage::Refused(refused) => return (Some(self.session), Err(refused)),
            Stage::Header(_) => unreachable!("opened above"),
            Stage::Data => {}
        }
        self.out.clear();
        self.stuffer.finish(&mut self.out);
        if let Err(e) = self.session.writer.write_all(&self.out) {
            return (None, Err(Refused::Broken(e)));
        }
        let verdict = match self.session.reply() {
            Ok(reply) => judge("the message", reply),
            Err(e) => return (None, Err(Refused::Broken(e))),
        };
        if verdict.is_err() {
            if let Err(e) = self.session.command("RSET") {
                return (None, Err(Refused::Broken(e)));
            }
        }
        (Some(self.session), verdict)
    }

    /// Gives up the message (its download failed). The session comes back if nothing of the
    /// message was sent; once the data has begun it is closed, before the final dot, so that
    /// the server drops what it received.
    pub fn abandon(self) -> Option<Session> {
        match self.stage {
            Stage::Header(_) | Stage::Refused(_) => Some(self.session),
            Stage::Data => None,
        }
    }
}

/// True if `header`, being gathered, holds the empty line that ends a header (RFC 5322
/// section 2.1): a line end followed by CRLF or LF, or an empty first line. Only what follows
/// `from` is searched (the octets before were searched already; `from` is 2 octets before the
/// new data, as the line end may straddle the chunks).
fn header_ends(header: &[u8], from: usize) -> bool {
    let tail = &header[from..];
    header.starts_with(b"\r\n")
        || header.starts_with(b"\n")
        || tail.windows(2).any(|w| w == b"\n\n")
        || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// A byte stream to the server.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection to the server, greeted and introduced, ready for transactions.
#[derive(Debug)]
pub struct Session {
    reader: BufReader<Stream>,
    writer: Stream,
}

impl Session {
    /// Connects, reads the greeting (220) and introduces itself (LHLO, or EHLO then HELO).
    /// Every read and write gives up after `timeout`.
    pub fn connect(endpoint: &Endpoint, protocol: Protocol, timeout: Duration) -> io::Result<Self> {
        let stream = match endpoint {
            Endpoint::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port))?;
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                Stream::Tcp(stream)
            }
            Endpoint::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                Stream::Unix(stream)
            }
        };
        let writer = stream.try_clone()?;
        let mut session = Self { reader: BufReader::new(stream), writer };
        let greeting = session.reply()?;
        if greeting.code != 220 {
            return Err(io::Error::other(format!("the mail server greeted with {greeting}")));
        }
        let name = rustix::system::uname().nodename().to_string_lossy().into_owned();
        let name = if name.is_empty() { "localhost".to_owned() } else { name };
        let hello = match protocol {
            Protocol::Lmtp => session.command(&format!("LHLO {name}"))?,
            Protocol::Smtp => match session.command(&format!("EHLO {name}"))? {
                reply if reply.code == 250 => reply,
                _ => session.command(&format!("HELO {name}"))?,
            },
        };
        if hello.code != 250 {
            return Err(io::Error::other(format!("the mail server refused us: {hello}")));
        }
        Ok(session)
    }

    /// Starts a message for `recipient`, from the sender its `Return-Path` names, else
    /// from `sender`: see [`Transfer`]. The session comes back from the transfer.
    pub fn begin(self, sender: &str, recipient: &str) -> Transfer {
        Transfer {
            session: self,
            recipient: recipient.to_owned(),
            sender: sender.to_owned(),
            stage: Stage::Header(Vec::new()),
            stuffer: Stuffer::default(),
            out: Vec::new(),
        }
    }

    /// Sends one command and judges its reply.
    fn step(&mut self, step: &str, command: &str) -> Result<(), Refused> {
        let reply = self.command(command).map_err(Refused::Broken)?;
        judge(step, reply)
    }

    /// Sends `line` and reads its reply.
    fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Reads one reply, all its lines.
    fn reply(&mut self) -> io::Result<Reply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let (code, last, part) = Reply::parse_line(&line).map_err(io::Error::other)?;
            if !text.is_empty() {
                text.push_str(" / ");
            }
            text.push_str(part);
            if last {
                return Ok(Reply { code, text });
            }
        }
    }

    /// Ends the session politely.
    pub fn quit(mut self) {
        let _ = self.command("QUIT");
    }
}

/// A positive reply passes; 4xx is temporary, 5xx permanent.
fn judge(step: &str, reply: Reply) -> Result<(), Refused> {
    match reply.code {
        _ if reply.is_positive() => Ok(()),
        400..=499 => Err(Refused::Temporary(step.to_owned(), reply)),
        _ => Err(Refused::Permanent(step.to_owned(), reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(Reply::parse_line("250-PIPELINING\r\n"), Ok((250, false, "PIPELINING")));
        assert_eq!(Reply::parse_line("250 OK\r\n"), Ok((250, true, "OK")));
        assert_eq!(Reply::parse_line("354\r\n"), Ok((354, true, "")));
        assert_eq!(Reply::parse_line("451 4.3.0 later"), Ok((451, true, "4.3.0 later")));
        for bad in ["", "25", "abc def", "250x", "199 no", "600 no"] {
            assert!(Reply::parse_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn data_is_stuffed_and_terminated() {
        assert_eq!(stuff(b"a\r\n.b\r\n..c\r\n"), b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(stuff(b".\r\nx"), b"..\r\nx\r\n.\r\n", "a lone dot line and no final CRLF");
        assert_eq!(stuff(b"lf\nonly\n"), b"lf\r\nonly\r\n.\r\n");
        assert_eq!(stuff(b""), b".\r\n");
        assert_eq!(stuff(b"a\rb\r\n"), b"a\rb\r\n.\r\n", "a lone CR is left alone");
    }

    #[test]
    fn targets_and_senders() {
        let lmtp = Relay::parse(Protocol::Lmtp, "127.0.0.1:24").unwrap();
        assert_eq!(lmtp.endpoint, Endpoint::Tcp { host: "127.0.0.1".into(), port: 24 });
        let unix = Relay::parse(Protocol::Lmtp, "/run/lmtp").unwrap();
        assert_eq!(unix.endpoint, Endpoint::Unix("/run/lmtp".into()));
        let smtp = Relay::parse(Protocol::Smtp, "[::1]").unwrap();
        assert_eq!(smtp.endpoint, Endpoint::Tcp { host: "::1".into(), port: 25 });
        assert!(Relay::parse(Protocol::Lmtp, "host").is_err(), "LMTP has no default port");
        assert!(Relay::parse(Protocol::Smtp, "/sock").is_err());
        assert!(Relay::parse(Protocol::Smtp, "h:x").is_err());

        let sender = |m: &[u8]| sender_of(m, "alice@pop.example");
        assert_eq!(sender(b"Return-Path: <b@x.org>\r\nSubject: s\r\n\r\n"), "b@x.org");
        assert_eq!(sender(b"Subject: s\r\nReturn-Path: <>\r\n\r\n"), "", "the null sender");
        assert_eq!(sender(b"Subject: s\r\n\r\nReturn-Path: <b@x>\r\n"), "alice@pop.example");
        assert_eq!(sender(b"Return-Path: b@x\r\n\r\n"), "alice@pop.example");
    }

    /// A scripted server on a loopback port: answers each line it reads with the next
    /// reply of `script` (DATA's content is read up to its final dot as one line).
    fn scripted(
        script: &'static [&'static str],
    ) -> (Endpoint, std::thread::JoinHandle<Vec<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut heard = Vec::new();
            writer.write_all(b"220 test\r\n").unwrap();
            let mut in_data = false;
            for reply in script {
                let mut line = String::new();
                loop {
                    let mut part = String::new();
                    if reader.read_line(&mut part).unwrap() == 0 {
                        return heard;
                    }
                    line.push_str(&part);
                    if !in_data || part == ".\r\n" {
                        break;
                    }
                }
                in_data = reply.starts_with("354");
                heard.push(line);
                writer.write_all(format!("{reply}\r\n").as_bytes()).unwrap();
            }
            heard
        });
        (Endpoint::Tcp { host: "127.0.0.1".into(), port }, server)
    }

    /// `message` through a transfer, in chunks of `chunk` octets.
    fn deliver(
        session: Session,
        sender: &str,
        recipient: &str,
        message: &[u8],
        chunk: usize,
    ) -> (Option<Session>, Result<(), Refused>) {
        let mut transfer = session.begin(sender, recipient);
        for part in message.chunks(chunk) {
            transfer.write(part).unwrap();
        }
        transfer.finish()
    }

    #[test]
    fn stuffing_does_not_depend_on_where_the_chunks_are_cut() {
        let message = b".a\r\n..b\nc\r\r\n.\r\n\n.d\re";
        let whole = stuff(message);
        assert_eq!(whole, b"..a\r\n...b\r\nc\r\r\n..\r\n\r\n..d\re\r\n.\r\n");
        for size in 1..message.len() {
            let mut out = Vec::new();
            let mut stuffer = Stuffer::default();
            for part in message.chunks(size) {
                stuffer.feed(part, &mut out);
            }
            stuffer.finish(&mut out);
            assert_eq!(out, whole, "chunks of {size}");
        }
    }

    #[test]
    fn the_end_of_a_header() {
        let ends = |header: &[u8]| (0..header.len()).all(|from| header_ends(header, from));
        assert!(header_ends(b"A: b\r\n\r\n", 0) && header_ends(b"A: b\r\n\r\n", 5));
        assert!(header_ends(b"A: b\n\nbody", 3));
        assert!(ends(b"\r\nbody") && ends(b"\nbody"), "an empty header");
        for open in [&b"A: b\r\n"[..], b"A: b\r\n C\r\n", b"Q\r\nYZ", b"A: b\r\n\r"] {
            assert!(!header_ends(open, 0), "{:?}", String::from_utf8_lossy(open));
        }
    }

    #[test]
    fn the_envelope_sender_comes_from_the_header_however_long() {
        let script = &[
            "250 test",   // LHLO
            "250 ok",     // MAIL
            "250 ok",     // RCPT
            "354 go",     // DATA
            "250 stored", // the message
            "250 ok",     // MAIL
            "250 ok",     // RCPT
            "354 go",     // DATA
            "250 stored", // the message
        ];
        let (endpoint, server) = scripted(script);
        let session = Session::connect(&endpoint, Protocol::Lmtp, Duration::from_secs(5)).unwrap();
        let listed = b"Return-Path: <list@x.org>\r\nSubject: s\r\n\r\nbody\r\n";
        let (session, delivered) = deliver(session, "me@here", "bob", listed, 3);
        delivered.unwrap();
        // A header longer than the limit: sent as it comes, from the account's address.
        let mut long = b"X-Long: ".to_vec();
        long.resize(HEADER_LIMIT + 10, b'x');
        long.extend_from_slice(b"\r\nReturn-Path: <late@x.org>\r\n\r\nbody\r\n");
        let (_, delivered) = deliver(session.unwrap(), "me@here", "bob", &long, 4096);
        delivered.unwrap();
        let heard = server.join().unwrap();
        assert_eq!(heard[1], "MAIL FROM:<list@x.org>\r\n");
        assert_eq!(heard[4].as_bytes(), [&listed[..], b".\r\n"].concat());
        assert_eq!(heard[5], "MAIL FROM:<me@here>\r\n");
        assert_eq!(heard[8].as_bytes(), [&long[..], b".\r\n"].concat());
    }

    #[test]
    fn temporary_and_permanent_refusals_then_a_delivery_on_the_same_session() {
        let script = &[
            "250-test\r\n250 PIPELINING", // LHLO
            "250 ok",                     // MAIL
            "250 ok",                     // RCPT
            "354 go",                     // DATA
            "451 4.3.0 try later",        // the message
            "250 reset",                  // RSET
            "550 5.1.1 no such user",     // MAIL
            "250 reset",                  // RSET
            "250 ok",                     // MAIL
            "250 ok",                     // RCPT
            "354 go",                     // DATA
            "250 2.0.0 delivered",        // the message
        ];
        let (endpoint, server) = scripted(script);
        let session = Session::connect(&endpoint, Protocol::Lmtp, Duration::from_secs(5)).unwrap();
        let message = b"Subject: s\r\n\r\n.x\r\n";
        // Octet by octet: the header's end is found across the chunks.
        let (session, e) = deliver(session, "a@b", "bob", message, 1);
        let e = e.unwrap_err();
        assert!(
            matches!(&e, Refused::Temporary(step, r) if step == "the message" && r.code == 451),
            "{e}"
        );
        assert!(e.to_string().contains("tried again next run"), "{e}");
        let (session, e) = deliver(session.unwrap(), "a@b", "bob", message, 5);
        let e = e.unwrap_err();
        assert!(
            matches!(&e, Refused::Permanent(step, r) if step == "MAIL FROM" && r.code == 550),
            "{e}"
        );
        let (session, delivered) = deliver(session.unwrap(), "", "bob", message, 64);
        delivered.unwrap();
        drop(session);
        let heard = server.join().unwrap();
        assert!(heard[0].starts_with("LHLO "), "{heard:?}");
        assert_eq!(heard[1], "MAIL FROM:<a@b>\r\n");
        assert_eq!(heard[4], "Subject: s\r\n\r\n..x\r\n.\r\n");
        assert_eq!(heard[5], "RSET\r\n");
        assert_eq!(heard[8], "MAIL FROM:<>\r\n", "the null sender");
    }
}
