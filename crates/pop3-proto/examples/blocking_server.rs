//! A complete POP3 server over `std::net`, one thread per connection, with an in-memory
//! maildrop: all of the protocol is pop3-proto's sans-IO `ServerSession`.
//!
//! ```sh
//! cargo run -p pop3-proto --example blocking_server   # 127.0.0.1:2110 (beside pop3d's 1110)
//! curl -s pop3://alice:secret@127.0.0.1:2110/1
//! ```
//! User `alice`, password `secret` (USER/PASS, AUTH PLAIN, LOGIN or SCRAM-SHA-256; plaintext is
//! allowed because it listens only where you tell it to: use loopback).

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{Error, ErrorKind, Read, Result, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pop3_proto::dot::wire_size;
use pop3_proto::sasl::ScramKeys;
use pop3_proto::server::{AuthRequest, BodyFlow, Event, Greeting, LoginError, MessageInfo};
use pop3_proto::server::{ServerConfig, ServerSession, Snapshot};

/// Each user's messages (unique id, text) and whether a session holds the maildrop.
type Store = Mutex<HashMap<String, (Vec<(String, Vec<u8>)>, bool)>>;

fn main() -> Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:2110".to_owned());
    let note = |n| format!("Subject: note {n}\n\n.dot-led line\nbye\n").into_bytes();
    let inbox = (1..=3).map(|n| (format!("uid-{n}"), note(n))).collect();
    let store: Arc<Store> = Arc::new(Mutex::new(HashMap::from([("alice".into(), (inbox, false))])));
    let listener =
        TcpListener::bind(&addr).map_err(|e| Error::new(e.kind(), format!("{addr}: {e}")))?;
    println!("POP3 on {addr}: user alice, password secret");
    for (n, stream) in listener.incoming().enumerate() {
        let (store, stream) = (Arc::clone(&store), stream?);
        std::thread::spawn(move || serve(stream, &store, n).map_err(|e| eprintln!("#{n}: {e}")));
    }
    Ok(())
}

fn serve(mut stream: TcpStream, store: &Store, n: usize) -> Result<()> {
    let start = Instant::now();
    let config = ServerConfig { plaintext_without_tls: true, ..ServerConfig::default() };
    let nonce = format!("{n}x{}", start.elapsed().as_nanos());
    let greeting = Greeting {
        apop_timestamp: format!("<{nonce}@localhost>"),
        sasl_nonce: nonce,
        hostname: "localhost".to_owned(),
        tls_active: false,
    };
    let mut session = ServerSession::new(config, greeting, start.elapsed());
    let mut user = None;
    let mut buf = [0u8; 8192];
    let result = loop {
        flush(&mut session, &mut stream)?;
        while let Some(event) = session.poll_event() {
            answer(&mut session, &mut stream, store, &mut user, event)?;
            flush(&mut session, &mut stream)?;
        }
        if session.is_closed() {
            break Ok(());
        }
        let deadline = session.poll_timeout().unwrap_or(Duration::MAX);
        let wait = deadline.saturating_sub(start.elapsed()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(len) => session.handle_input(&buf[..len], start.elapsed()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                session.handle_timeout(start.elapsed());
            }
            Err(e) => break Err(e),
        }
    };
    if let Some((_, locked)) = store.lock().unwrap().get_mut(&user.unwrap_or_default()) {
        *locked = false; // release the maildrop
    }
    result
}

/// Answers one event; a body goes out in 4 KiB pieces under the session's back-pressure.
fn answer(
    session: &mut ServerSession,
    stream: &mut TcpStream,
    store: &Store,
    user: &mut Option<String>,
    event: Event,
) -> Result<()> {
    let mut store = store.lock().unwrap();
    match event {
        Event::Authenticate(request) => {
            let ok = match &request {
                AuthRequest::Verified { .. } => true, // SCRAM proved it
                _ => request.password_matches(b"secret"),
            };
            let username = request.username().to_owned();
            match store.get_mut(&username) {
                Some((_, true)) if ok => session.login_rejected(LoginError::InUse),
                Some((mail, locked)) if ok => {
                    *locked = true;
                    let info = |(uid, text): &(String, Vec<u8>)| {
                        MessageInfo::new(wire_size(text), uid.as_str()).expect("valid unique id")
                    };
                    let snapshot = Snapshot::new(mail.iter().map(info).collect());
                    *user = Some(username);
                    session.login_accepted(snapshot)
                }
                _ => session.login_rejected(LoginError::BadCredentials),
            }
        }
        Event::RetrieveBody { index, .. } => {
            let text = store[user.as_deref().unwrap_or_default()].0[index].1.clone();
            for chunk in text.chunks(4096) {
                while !session.wants_body_data() {
                    flush(session, stream)?;
                }
                if session.body_data(chunk)? == BodyFlow::Done {
                    break;
                }
            }
            session.body_end()
        }
        Event::Commit { deleted } => {
            // `deleted` is in ascending order: remove from the back so indices stay valid.
            if let Some((mail, _)) = store.get_mut(user.as_deref().unwrap_or_default()) {
                deleted.iter().rev().for_each(|&index| drop(mail.remove(index)));
            }
            session.commit_done(Ok(()))
        }
        Event::SaslFailed { .. } => session.login_rejected(LoginError::BadCredentials),
        Event::ScramKeysNeeded { username } => {
            let keys = ScramKeys::from_password(b"secret", b"example salt", 4096);
            session.scram_keys(store.contains_key(&username).then_some(keys))
        }
        Event::StartTls => return Err(Error::other("this example has no TLS")),
    }?;
    Ok(())
}

fn flush(session: &mut ServerSession, stream: &mut TcpStream) -> Result<()> {
    while session.has_output() {
        stream.write_all(&session.take_output())?;
    }
    Ok(())
}
