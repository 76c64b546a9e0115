//! Retrieves every message of a maildrop with pipelined `RETR` and throws the bytes away:
//! what the wire alone costs a retriever, with nothing stored. `cargo xtask fetchbench` uses
//! it as the floor for `pop3 fetch`.
//!
//! ```sh
//! POP3_PASSWORD=secret cargo run --release -p pop3-client --example retrieve_all -- 127.0.0.1 110 alice [WINDOW]
//! ```
//!
//! Plain TCP (no TLS), USER/PASS or the best SASL mechanism offered; WINDOW commands in flight
//! when the server pipelines (default: the library's). Prints one line:
//! `messages octets seconds`, where the time runs from the connect to the `QUIT` reply.

#![forbid(unsafe_code)]

use std::time::Instant;

use pop3_client::{AuthMethod, Client, ConnectOptions, Retrieved, TlsMode};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (host, port, user, window) = match args.as_slice() {
        [host, port, user] => (host, port, user, None),
        [host, port, user, window] => (host, port, user, Some(window.parse()?)),
        _ => {
            return Err(
                "usage: retrieve_all HOST PORT USER [WINDOW] (password in POP3_PASSWORD)".into()
            )
        }
    };
    let password = std::env::var("POP3_PASSWORD").map_err(|_| "POP3_PASSWORD is not set")?;
    let started = Instant::now();
    let mut options = ConnectOptions::new(host.as_str());
    options.port = Some(port.parse()?);
    options.tls = TlsMode::None;
    if let Some(window) = window {
        options.pipeline_window = window;
    }
    let mut client = Client::connect(&options).await?;
    client.login(user, &password, AuthMethod::Auto).await?;
    let listing = client.list().await?;
    let (mut messages, mut octets) = (0u64, 0u64);
    let mut retrieval = client.retrieve(listing.iter().map(|l| l.msg));
    while let Some(item) = retrieval.next().await? {
        match item {
            Retrieved::Message(_, mut body) => {
                while let Some(chunk) = body.chunk().await? {
                    octets += chunk.len() as u64;
                }
                messages += 1;
            }
            Retrieved::Refused(msg, e) => return Err(format!("RETR {msg}: {e}").into()),
        }
    }
    drop(retrieval);
    client.quit().await?;
    println!("{messages} {octets} {:.3}", started.elapsed().as_secs_f64());
    Ok(())
}
