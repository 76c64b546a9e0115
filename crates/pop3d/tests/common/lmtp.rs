//! An LMTP (and SMTP) client for the tests: lines out, replies in.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An LMTP client: lines out, replies (all their lines) in.
pub struct Lmtp {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Lmtp {
    pub fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut c = Self { reader: BufReader::new(stream), writer };
        let greeting = c.reply();
        assert!(greeting[0].starts_with("220 "), "{greeting:?}");
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// One reply: its lines, up to the one with a space after the code.
    pub fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed; replies so far: {lines:?}");
            assert!(line.ends_with("\r\n"), "{line:?}");
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// The first line of the next reply.
    pub fn line(&mut self) -> String {
        self.reply().remove(0)
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }
}

/// `body` dot-stuffed (RFC 5321 §4.5.2), with the terminator.
pub fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}
