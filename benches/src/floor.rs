//! `pop3-floor`: the least a POP3 server can do to answer `RETR`, as a reference beside every
//! `RETR` figure of the load test.
//!
//! The messages are prepared once, before the run, in wire form (RFC 1939 section 3: CRLF
//! line ends, a line that starts with `.` stuffed with a second one, the terminating `.` CRLF
//! included), one file each. The server then speaks just enough POP3 for `pop3-load` (any
//! `USER`/`PASS` is accepted, every user sees the same messages) and answers `RETR n` with
//! `+OK <size> octets` and the file, either by `sendfile(2)` from the page cache
//! ([`Sendfile`](crate::floor::SendWith::Sendfile): the kernel copies the file into the
//! socket, nothing passes through user space) or by `write(2)` of the reply prepared in
//! memory at start ([`Write`](crate::floor::SendWith::Write): one copy from user space per
//! `RETR`). Whatever a real server spends beyond this on the
//! same bytes is its own cost: parsing, the maildrop, dot-stuffing, reading the file.
//!
//! One thread per connection with blocking sockets: for the load test's few connections this
//! adds nothing between the command and the system calls that answer it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How `RETR` sends the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendWith {
    /// `sendfile(2)` of the wire-form file (status line sent first with `MSG_MORE`).
    Sendfile,
    /// `write(2)` of the whole reply, read into memory at start.
    Write,
}

/// The wire form of a message (RFC 1939 section 3): every line ends in CRLF (an LF alone
/// becomes CRLF; a last line without a line end gets one), a line that starts with `.` gets
/// a second `.`, and the `.` CRLF terminator follows: what pop3-proto's [`DotStuffer`], the
/// one pop3d sends with, makes of it.
///
/// [`DotStuffer`]: pop3_proto::DotStuffer
pub fn wire_form(message: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::with_capacity(message.len() + message.len() / 32 + 5);
    let mut stuffer = pop3_proto::DotStuffer::new();
    stuffer.stuff(message, &mut out);
    stuffer.finish(&mut out);
    out.to_vec()
}

/// The octets of the message a wire-form body carries (what `LIST` reports): the body
/// without its terminator and without the stuffed dots.
pub fn unstuffed_size(wire: &[u8]) -> Result<u64, String> {
    let body = wire.strip_suffix(b".\r\n").ok_or("no .CRLF terminator")?;
    if !(body.is_empty() || body.ends_with(b"\r\n")) {
        return Err("the terminator does not start a line".into());
    }
    // In a wire-form body every line that starts with `.` was stuffed.
    let stuffed = u64::from(body.first() == Some(&b'.'))
        + memchr::memmem::find_iter(body, b"\n.").count() as u64;
    Ok(body.len() as u64 - stuffed)
}

/// Writes the wire form of every file in `from` (sorted by name) to `to/0001`, `to/0002`
/// ...; returns how many.
pub fn prepare(from: &Path, to: &Path) -> Result<usize, String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(from)
        .map_err(|e| format!("{}: {e}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for (i, name) in names.iter().enumerate() {
        let text = std::fs::read(name).map_err(|e| format!("{}: {e}", name.display()))?;
        let out = to.join(format!("{:04}", i + 1));
        std::fs::write(&out, wire_form(&text)).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(names.len())
}

/// One message, ready to send both ways.
#[derive(Debug)]
struct Message {
    /// The wire-form file (sendfile).
    file: File,
    /// Its length.
    wire_len: u64,
    /// `+OK <size> octets` CRLF.
    status: Vec<u8>,
    /// Status line and wire form together (write).
    reply: Vec<u8>,
    /// The unstuffed size (`LIST`, `STAT`).
    size: u64,
}

/// The messages every user sees, loaded from a directory of wire-form files.
#[derive(Debug)]
pub struct Maildrop {
    messages: Vec<Message>,
}

impl Maildrop {
    /// Loads every file of `dir` (sorted by name) as a wire-form message.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        let mut messages = Vec::new();
        for name in names {
            let wire = std::fs::read(&name).map_err(|e| format!("{}: {e}", name.display()))?;
            let size = unstuffed_size(&wire).map_err(|e| format!("{}: {e}", name.display()))?;
            let status = format!("+OK {size} octets\r\n").into_bytes();
            let mut reply = status.clone();
            reply.extend_from_slice(&wire);
            let file = File::open(&name).map_err(|e| format!("{}: {e}", name.display()))?;
            messages.push(Message { file, wire_len: wire.len() as u64, status, reply, size });
        }
        Ok(Self { messages })
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// Accepts connections on `listener` for ever, a thread each.
pub fn serve(listener: TcpListener, maildrop: Arc<Maildrop>, send: SendWith) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept()?;
        let maildrop = Arc::clone(&maildrop);
        std::thread::spawn(move || {
            // A client that goes away is not the floor's concern.
            let _ = session(&stream, &maildrop, send);
        });
    }
}

/// The longest command line accepted (RFC 2449 section 4: 255 octets with CRLF).
const MAX_LINE: usize = 255;

/// One connection: replies to each command in turn (pipelined commands simply wait in the
/// socket buffer).
fn session(stream: &TcpStream, maildrop: &Maildrop, send: SendWith) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream;
    out.write_all(b"+OK pop3-floor ready\r\n")?;
    let mut input = BufReader::with_capacity(4096, stream);
    let mut line = Vec::with_capacity(64);
    loop {
        line.clear();
        let n = (&mut input).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE || !line.ends_with(b"\r\n") {
            out.write_all(b"-ERR line too long or without CRLF\r\n")?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let mut words = text.split(' ');
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        let arg = words.next();
        let msg = arg.and_then(|a| a.parse::<usize>().ok()).and_then(|n| {
            let m = maildrop.messages.get(n.checked_sub(1)?)?;
            Some((n, m))
        });
        match (keyword.as_str(), msg) {
            ("RETR", Some((_, m))) => retr(stream, m, send)?,
            ("LIST", Some((n, m))) => {
                out.write_all(format!("+OK {n} {}\r\n", m.size).as_bytes())?
            }
            ("LIST", None) if arg.is_none() => {
                let mut listing = format!("+OK {} messages\r\n", maildrop.len());
                for (i, m) in maildrop.messages.iter().enumerate() {
                    listing.push_str(&format!("{} {}\r\n", i + 1, m.size));
                }
                listing.push_str(".\r\n");
                out.write_all(listing.as_bytes())?;
            }
            ("STAT", _) => {
                let total: u64 = maildrop.messages.iter().map(|m| m.size).sum();
                out.write_all(format!("+OK {} {total}\r\n", maildrop.len()).as_bytes())?;
            }
            ("CAPA", _) => out.write_all(b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n")?,
            ("USER", _) | ("NOOP", _) => out.write_all(b"+OK\r\n")?,
            ("PASS", _) => out.write_all(b"+OK logged in\r\n")?,
            ("QUIT", _) => {
                out.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            ("RETR", None) | ("LIST", None) => out.write_all(b"-ERR no such message\r\n")?,
            _ => out.write_all(b"-ERR not known to pop3-floor\r\n")?,
        }
    }
}

/// `+OK <size> octets` and the wire form, by `sendfile` or by one `write`.
fn retr(stream: &TcpStream, m: &Message, send: SendWith) -> io::Result<()> {
    match send {
        SendWith::Write => {
            let mut out = stream;
            out.write_all(&m.reply)
        }
        SendWith::Sendfile => {
            // MSG_MORE: the status line leaves with the file's first octets, not alone.
            let mut status = &m.status[..];
            while !status.is_empty() {
                let n = rustix::net::send(stream, status, rustix::net::SendFlags::MORE)?;
                status = &status[n..];
            }
            let mut offset = 0u64;
            while offset < m.wire_len {
                let left = (m.wire_len - offset) as usize;
                let n = rustix::fs::sendfile(stream, &m.file, Some(&mut offset), left)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_rfc_1939() {
        assert_eq!(wire_form(b""), b".\r\n");
        assert_eq!(wire_form(b"a\n.b\n\n..\n"), b"a\r\n..b\r\n\r\n...\r\n.\r\n");
        assert_eq!(wire_form(b"a\r\nb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(wire_form(b".\r\n"), b"..\r\n.\r\n");
        // A CR that does not end a line is text.
        assert_eq!(wire_form(b"a\rb\n"), b"a\rb\r\n.\r\n");
    }

    #[test]
    fn unstuffed_size_is_what_list_reports() {
        // The message with CRLF line ends, before stuffing.
        let cases: [(&[u8], u64); 5] =
            [(b"", 0), (b"a\n.b\n\n..\n", 13), (b"a\r\nb", 6), (b".\r\n", 3), (b".\n.\n.x", 10)];
        for (m, size) in cases {
            assert_eq!(unstuffed_size(&wire_form(m)).unwrap(), size, "{m:?}");
        }
        assert!(unstuffed_size(b"a\r\n").is_err());
        assert!(unstuffed_size(b"a.\r\n").is_err());
    }
}
