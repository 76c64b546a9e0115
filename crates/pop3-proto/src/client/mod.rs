//! The client side of a POP3 connection as a sans-IO state machine: [`ClientSession`].
//!
//! The session does no I/O. The embedder reads bytes from the server and feeds them to
//! [`ClientSession::handle_input`], writes what [`ClientSession::take_output`] returns, and
//! drains [`ClientSession::poll_event`] for typed [`ClientEvent`]s: the greeting, one
//! [`Reply`] per command, message bodies as dot-unstuffed chunks, the STLS upgrade, the end of
//! the session and protocol errors. Commands are queued by methods that return a
//! [`RequestId`]; replies carry the same id.
//!
//! # Pipelining
//!
//! A response can only be decoded knowing the command it answers (is `+OK` followed by a
//! listing? by a message?), so the session keeps a FIFO of the commands in flight and decodes
//! each response with the right [`Expect`](crate::Expect). When the last `CAPA` reply
//! advertised `PIPELINING` (RFC 2449 §6.6), up to [`ClientConfig::pipeline_window`] commands are
//! sent without waiting; otherwise one at a time, each further command going out as the reply
//! to the previous one arrives. `STLS` and `AUTH` are sent only when nothing else is in flight,
//! and nothing is sent after `STLS`, `AUTH` or `QUIT` until they are answered.
//!
//! # STLS
//!
//! After `+OK` to `STLS` the session emits [`ClientEvent::StartTls`] and discards everything
//! the server sent after that `+OK`, in that read and later ones, until
//! [`ClientSession::tls_established`]: such bytes were not protected by TLS and are the vector of
//! the STARTTLS response-injection attacks (RFC 2595 §4). After the handshake the session drops
//! the capabilities it knew and sends `CAPA` again before any other queued command.
//!
//! # Time
//!
//! The session has no timers and reads no clock: timeouts (connect, idle, response) belong to
//! the driver that owns the socket. RFC 1939 §3 servers drop idle clients after 10 minutes or
//! more; a driver that stays connected longer should send [`ClientSession::noop`].
//!
//! # Errors
//!
//! Nothing the server sends can make the session panic or grow without bound. A line that does
//! not parse, is too long, or arrives unasked is a [`ProtocolError`]; since the client can then
//! no longer tell where responses begin, the session closes ([`ClientEvent::Closed`]).
//!
//! # Example
//!
//! A whole session against scripted server bytes (RFC 1939 §10's example, with USER/PASS):
//!
//! ```
//! use pop3_proto::client::{ClientConfig, ClientEvent, ClientSession, Reply};
//!
//! let mut client = ClientSession::new(ClientConfig::default());
//! // Commands may be queued before the greeting; they wait for it.
//! let user = client.user("mrose").unwrap();
//! assert!(client.take_output().is_empty());
//!
//! client.handle_input(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
//! let Some(ClientEvent::Greeting(greeting)) = client.poll_event() else { panic!() };
//! assert_eq!(greeting.apop_timestamp(), Some("<1896.697170952@dbc.mtview.ca.us>"));
//! // Without PIPELINING (no CAPA yet), one command at a time.
//! assert_eq!(&client.take_output()[..], b"USER mrose\r\n");
//!
//! let pass = client.pass("tanstaaf").unwrap();
//! let stat = client.stat().unwrap();
//! assert!(client.take_output().is_empty(), "PASS waits for the reply to USER");
//!
//! client.handle_input(b"+OK mrose is a real hoopy frood\r\n");
//! let Some(ClientEvent::Reply { id, reply: Reply::Ok(_) }) = client.poll_event() else { panic!() };
//! assert_eq!(id, user);
//! assert_eq!(&client.take_output()[..], b"PASS tanstaaf\r\n");
//!
//! client.handle_input(b"+OK mrose's maildrop has 2 messages (320 octets)\r\n");
//! let Some(ClientEvent::Reply { id, reply }) = client.poll_event() else { panic!() };
//! assert_eq!((id, reply.is_ok()), (pass, true));
//! assert_eq!(&client.take_output()[..], b"STAT\r\n");
//!
//! // Input may arrive in any split.
//! client.handle_input(b"+OK 2 ");
//! assert_eq!(client.poll_event(), None);
//! client.handle_input(b"320\r\n");
//! assert_eq!(
//!     client.poll_event(),
//!     Some(ClientEvent::Reply { id: stat, reply: Reply::Stat { count: 2, size: 320 } })
//! );
//!
//! let quit = client.quit().unwrap();
//! assert_eq!(&client.take_output()[..], b"QUIT\r\n");
//! client.handle_input(b"+OK dewey POP3 server signing off\r\n");
//! let Some(ClientEvent::Reply { id, .. }) = client.poll_event() else { panic!() };
//! assert_eq!(id, quit);
//! assert_eq!(client.poll_event(), Some(ClientEvent::Closed));
//! assert_eq!(client.poll_event(), None);
//! assert!(client.noop().is_err(), "the session is over");
//! ```

mod config;
mod event;
mod session;

pub use config::ClientConfig;
pub use event::{AuthError, ClientError, ClientEvent, ProtocolError, Reply, RequestId};
pub use session::ClientSession;
