//! A complete POP3 mail fetcher over `std::net`: all of the protocol is pop3-proto's sans-IO
//! `ClientSession`. It logs in (SCRAM-SHA-256 if offered, else USER/PASS), lists the maildrop,
//! pipelines a RETR of every message, writes each one to `DIR/<uidl>.eml`, and with `--delete`
//! deletes what it stored before QUIT.
//!
//! ```sh
//! cargo run -p pop3-proto --example blocking_server -- 127.0.0.1:1110 &
//! cargo run -p pop3-proto --example blocking_client -- 127.0.0.1:1110 alice secret ./mail
//! ```

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pop3_proto::client::{ClientEvent, ClientSession, Reply, RequestId};
use pop3_proto::sasl::SaslClient;
use pop3_proto::{Capability, MsgNum};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn error(text: String) -> Box<dyn std::error::Error> {
    text.into()
}

/// A connection: the session, its socket, and the events read so far.
struct Conn {
    session: ClientSession,
    stream: TcpStream,
    events: Vec<ClientEvent>,
}

impl Conn {
    /// Sends what the session wants sent, then reads until `done` holds for the events.
    fn run_until(&mut self, done: impl Fn(&[ClientEvent]) -> bool) -> Result<()> {
        let mut buf = [0u8; 16384];
        loop {
            while self.session.has_output() {
                self.stream.write_all(&self.session.take_output())?;
            }
            while let Some(event) = self.session.poll_event() {
                if let ClientEvent::ProtocolError(e) = &event {
                    return Err(error(format!("protocol error: {e:?}")));
                }
                self.events.push(event);
            }
            if done(&self.events) {
                return Ok(());
            }
            if self.session.is_closed() {
                return Err(error("the server closed the connection".into()));
            }
            match self.stream.read(&mut buf)? {
                0 => self.session.handle_eof(),
                n => self.session.handle_input(&buf[..n]),
            }
        }
    }

    /// Waits for the reply to `id`.
    fn reply(&mut self, id: RequestId) -> Result<Reply> {
        let is_reply = |e: &ClientEvent| matches!(e, ClientEvent::Reply { id: i, .. } if *i == id);
        self.run_until(|events| events.iter().any(is_reply))?;
        let at = self.events.iter().position(is_reply).expect("found above");
        let ClientEvent::Reply { reply, .. } = self.events.remove(at) else { unreachable!() };
        match reply {
            Reply::Err(status) => Err(error(format!("-ERR {}", status.text))),
            Reply::AuthFailed { error: e, .. } => Err(error(format!("login: {e:?}"))),
            ok => Ok(ok),
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, user, password, dir, rest @ ..] = args.as_slice() else {
        return Err(error("usage: blocking_client ADDR USER PASSWORD DIR [--delete]".into()));
    };
    let delete = rest.iter().any(|a| a == "--delete");
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let session = ClientSession::new(Default::default());
    let mut conn = Conn { session, stream, events: Vec::new() };

    let capa = conn.session.capa()?;
    let Reply::Capabilities(caps) = conn.reply(capa)? else { unreachable!() };
    let scram = caps
        .iter()
        .any(|c| matches!(c, Capability::Sasl(m) if m.iter().any(|m| m == "SCRAM-SHA-256")));
    if scram {
        // The client nonce must be unpredictable in real use; the clock is enough for a demo.
        let nonce = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let login =
            conn.session.auth(SaslClient::scram_sha256(user, password, &format!("{nonce:x}")))?;
        conn.reply(login)?;
    } else {
        let ids = [conn.session.user(user)?, conn.session.pass(password)?];
        for id in ids {
            conn.reply(id)?;
        }
    }

    let uidl = conn.session.uidl(None)?;
    let Reply::UidList(uids) = conn.reply(uidl)? else { unreachable!() };
    std::fs::create_dir_all(dir)?;
    // Pipelined when the server said PIPELINING: every RETR goes out at once.
    let mut files: HashMap<RequestId, (MsgNum, std::fs::File)> = HashMap::new();
    for u in &uids {
        let path = std::path::Path::new(dir).join(format!("{}.eml", u.uid().replace('/', "_")));
        files.insert(conn.session.retr(u.msg())?, (u.msg(), std::fs::File::create(path)?));
    }
    let mut stored = Vec::new();
    while !files.is_empty() {
        conn.run_until(|events| !events.is_empty())?;
        for event in std::mem::take(&mut conn.events) {
            match event {
                ClientEvent::BodyChunk { id, data } => {
                    files.get_mut(&id).map_or(Ok(()), |f| f.1.write_all(&data))?
                }
                ClientEvent::BodyEnd { id } => {
                    let (msg, file) = files.remove(&id).expect("a RETR we sent");
                    file.sync_all()?; // stored durably before it may be deleted
                    stored.push(msg);
                }
                ClientEvent::Reply { id, reply: Reply::Err(status) } => {
                    eprintln!("message {:?}: -ERR {}", files.remove(&id).map(|f| f.0), status.text);
                }
                _ => {}
            }
        }
    }
    if delete {
        for msg in &stored {
            conn.session.dele(*msg)?;
        }
    }
    let quit = conn.session.quit()?;
    conn.reply(quit)?;
    println!(
        "stored {} of {} messages in {dir}{}",
        stored.len(),
        uids.len(),
        if delete { ", deleted them" } else { "" }
    );
    Ok(())
}
