//! What the integration tests of this crate share: a server listening on loopback, plain and
//! implicit TLS, with a throwaway self-signed certificate for `localhost`. Each test file uses
//! the part it needs.
#![allow(dead_code)]

use std::net::SocketAddr;

use pop3_server::{ListenerKind, Server};
use tokio::net::TcpListener;

/// Where a test server listens, and the certificate its TLS listener presents (DER).
pub struct Listening {
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub cert_der: Vec<u8>,
}

/// Gives `server` a fresh `localhost` certificate and serves it on two new loopback ports,
/// one plain and one implicit TLS, until the test's runtime ends.
pub async fn listen(server: &Server) -> Listening {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = pop3_server::tls::config_from_pem(
        certified.cert.pem().as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    server.set_tls(Some(tls));
    let plain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain, tls) = (plain_listener.local_addr().unwrap(), tls_listener.local_addr().unwrap());
    for (listener, kind) in
        [(plain_listener, ListenerKind::Plain), (tls_listener, ListenerKind::ImplicitTls)]
    {
        let server = server.clone();
        tokio::spawn(async move { server.serve(listener, kind).await });
    }
    Listening { plain, tls, cert_der: certified.cert.der().to_vec() }
}
