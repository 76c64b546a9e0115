//! The client session state machine.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};

use super::{AuthError, ClientConfig, ClientError, ClientEvent, ProtocolError, Reply, RequestId};
use crate::response::ListItem;
use crate::sasl::{Mechanism, SaslClient};
use crate::wire::CRLF;
use crate::{
    Capability, Command, DecodeError, DotUnstuffer, Expect, LangArg, LangListing, MsgNum, Response,
    ResponseDecoder, ResponseError, ScanListing, Secret, StatusLine, UidListing,
};

/// A POP3 client connection as a sans-IO state machine; see the [module docs](super).
pub struct ClientSession {
    config: ClientConfig,
    decoder: ResponseDecoder,
    state: State,
    /// The unfinished line carried over from the last [`handle_input`](Self::handle_input):
    /// never longer than [`Limits::response_line`](crate::Limits::response_line).
    read_buf: BytesMut,
    output: BytesMut,
    events: VecDeque<ClientEvent>,
    /// Commands not yet sent, in order.
    queue: VecDeque<Request>,
    /// Commands sent and not yet answered, in order; the front one is being answered.
    in_flight: VecDeque<Request>,
    next_id: u64,
    greeting: Option<StatusLine<'static>>,
    capabilities: Option<Vec<Capability<'static>>>,
    tls: bool,
    quit_queued: bool,
}

impl core::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Queued lines hold passwords: show only their number.
        f.debug_struct("ClientSession")
            .field("state", &self.state)
            .field("queued", &self.queue.len())
            .field("in_flight", &self.in_flight.len())
            .field("pending_output", &self.output.len())
            .field("pending_events", &self.events.len())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for the server's greeting.
    Greeting,
    /// Reading status lines (or SASL challenges) of the commands in flight.
    Ready,
    /// Reading the lines of a multi-line listing, after its `+OK`.
    Listing { id: RequestId, items: Listing, octets: usize },
    /// Streaming the body of a `RETR` or `TOP`, after its `+OK`.
    Body { id: RequestId, unstuffer: DotUnstuffer },
    /// The server accepted STLS: everything it sends is discarded until the TLS handshake is
    /// done.
    TlsPending,
    /// Over.
    Closed,
}

#[derive(Debug)]
enum Listing {
    Capa(Vec<Capability<'static>>),
    Scan(Vec<ScanListing>),
    Uid(Vec<UidListing<'static>>),
    Lang(Vec<LangListing<'static>>),
}

impl Listing {
    fn expect(&self) -> Expect {
        match self {
            Self::Capa(_) => Expect::Capa,
            Self::Scan(_) => Expect::List,
            Self::Uid(_) => Expect::Uidl,
            Self::Lang(_) => Expect::Lang,
        }
    }
}

/// A command, queued or in flight.
struct Request {
    id: RequestId,
    kind: Kind,
    /// The encoded command line; emptied once sent.
    line: Bytes,
}

impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// How the reply to a command is read and typed.
#[derive(Debug)]
enum Kind {
    /// A status line, reported as [`Reply::Ok`] or [`Reply::Err`].
    Plain,
    Stat,
    ScanOne,
    ScanAll,
    UidOne,
    UidAll,
    Capa,
    LangList,
    Last,
    /// RETR or TOP.
    Body,
    Stls,
    Quit,
    Auth(Box<AuthExchange>),
}

impl Kind {
    /// Sent only when nothing else is in flight (RFC 2595 §4, RFC 5034 §4: the client must
    /// not pipeline past STLS or AUTH).
    fn is_exclusive(&self) -> bool {
        matches!(self, Self::Stls | Self::Auth(_))
    }

    /// Nothing is sent after it until it is answered.
    fn blocks_followers(&self) -> bool {
        matches!(self, Self::Stls | Self::Auth(_) | Self::Quit)
    }
}

struct AuthExchange {
    sasl: SaslClient,
    /// Set when the client cancelled the exchange with `*`.
    error: Option<AuthError>,
}

impl core::fmt::Debug for AuthExchange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuthExchange")
            .field("mechanism", &self.sasl.mechanism())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl ClientSession {
    /// A session waiting for the server's greeting. Commands may be queued right away; they
    /// are sent once the greeting has arrived.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            decoder: ResponseDecoder::new(config.limits),
            config,
            state: State::Greeting,
            read_buf: BytesMut::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_id: 0,
            greeting: None,
            capabilities: None,
            tls: false,
            quit_queued: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    // ---------------------------------------------------------------------------------------
    // Input, output, events

    /// Feeds bytes read from the server, in chunks of any size and split.
    ///
    /// Afterwards call [`poll_event`](Self::poll_event) until it returns `None` (replies, body
    /// chunks, `StartTls`, errors), and [`take_output`](Self::take_output): a reply may release
    /// queued commands, and a SASL challenge is answered at once.
    ///
    /// Memory stays bounded: whole lines are decoded straight from `data`, only an unfinished
    /// line (at most [`Limits::response_line`](crate::Limits::response_line) octets) is kept
    /// for the next call, and message bodies are passed on as they are unstuffed. After
    /// `StartTls` and after `Closed`, input is discarded.
    pub fn handle_input(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Closed | State::TlsPending => return,
                State::Body { .. } => {
                    let used = self.feed_body(data);
                    data = &data[used..];
                }
                State::Greeting | State::Ready | State::Listing { .. } => {
                    if self.read_buf.is_empty() {
                        let used = self.decode_lines(data);
                        data = &data[used..];
                        if self.reads_lines() {
                            // An unfinished line, shorter than the limit (or the framer would
                            // have reported it): keep it for the next call.
                            self.read_buf.extend_from_slice(data);
                            data = &[];
                        }
                    } else {
                        // Complete the carried-over line, and no more: at most one line is
                        // ever copied.
                        let room = self
                            .config
                            .limits
                            .response_line
                            .saturating_sub(self.read_buf.len())
                            .max(1);
                        let take =
                            memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1).min(room);
                        self.read_buf.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        let mut buf = mem::take(&mut self.read_buf);
                        let used = self.decode_lines(&buf);
                        buf.advance(used);
                        // Only one line was copied: it was decoded whole (`buf` is now empty),
                        // or it is still unfinished and stays.
                        if self.reads_lines() {
                            self.read_buf = buf;
                        }
                    }
                }
            }
        }
    }

    /// Tells the session that the server closed the connection (or the read failed).
    ///
    /// Afterwards [`poll_event`](Self::poll_event) returns [`ClientEvent::Closed`], preceded by
    /// [`ProtocolError::UnexpectedEof`] unless the session was idle: greeted, no command
    /// queued or in flight, no response cut short. (After the reply to `QUIT` the session is
    /// already closed and this does nothing.)
    pub fn handle_eof(&mut self) {
        match self.state {
            State::Closed => {}
            State::Ready
                if self.in_flight.is_empty()
                    && self.queue.is_empty()
                    && self.read_buf.is_empty() =>
            {
                self.close();
            }
            _ => self.fail(ProtocolError::UnexpectedEof),
        }
    }

    /// The next event, if any.
    ///
    /// Events are produced by [`handle_input`](Self::handle_input),
    /// [`handle_eof`](Self::handle_eof) and [`tls_established`](Self::tls_established); call
    /// this until it returns `None` after each of them. Queueing a command never produces an
    /// event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Takes the bytes to send to the server, leaving the session's output buffer empty.
    ///
    /// Output is produced by the command methods (when the command can be sent at once), by
    /// [`handle_input`](Self::handle_input) (a reply releases queued commands; SASL challenges
    /// are answered) and by [`tls_established`](Self::tls_established) (the CAPA that follows
    /// the handshake). Call this after each of them and write all of it, in order. The buffer
    /// holds at most the commands of one pipeline window.
    pub fn take_output(&mut self) -> Bytes {
        self.output.split().freeze()
    }

    /// True if [`take_output`](Self::take_output) has something to send.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The TLS handshake that followed [`ClientEvent::StartTls`] succeeded.
    ///
    /// The session forgets the capabilities learned before TLS (RFC 2595 §4: they may change),
    /// and queues a `CAPA` ahead of every other queued command; its id is returned, and its
    /// reply comes as any other. Call [`take_output`](Self::take_output) afterwards. If the
    /// handshake failed, drop the connection (and call [`handle_eof`](Self::handle_eof) if
    /// the session should report it).
    pub fn tls_established(&mut self) -> Result<RequestId, ClientError> {
        if !matches!(self.state, State::TlsPending) {
            return Err(ClientError::NotStartingTls);
        }
        self.tls = true;
        self.capabilities = None;
        self.read_buf = BytesMut::new();
        self.decoder = ResponseDecoder::new(self.config.limits);
        self.state = State::Ready;
        let id = self.next_id();
        self.queue.push_front(encode(id, Command::Capa, Kind::Capa)?);
        self.release();
        Ok(id)
    }

    // ---------------------------------------------------------------------------------------
    // What the session knows

    /// The server's greeting, once received.
    pub fn greeting(&self) -> Option<&StatusLine<'static>> {
        self.greeting.as_ref()
    }

    /// The capabilities from the last `CAPA` reply (`None` before any, after a `-ERR` to CAPA,
    /// and after STLS until the new CAPA reply).
    pub fn capabilities(&self) -> Option<&[Capability<'static>]> {
        self.capabilities.as_deref()
    }

    /// True when the last CAPA reply advertised `PIPELINING`: up to
    /// [`ClientConfig::pipeline_window`] commands are sent without waiting.
    pub fn is_pipelining(&self) -> bool {
        self.capabilities.as_ref().is_some_and(|caps| caps.contains(&Capability::Pipelining))
    }

    /// True after [`tls_established`](Self::tls_established).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True once the session is over ([`ClientEvent::Closed`] has been queued).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Octets of an unfinished server line held until the rest arrives; never more than
    /// [`Limits::response_line`](crate::Limits::response_line). (For tests and fuzzing: the
    /// session buffers nothing else of the input.)
    pub fn buffered_input(&self) -> usize {
        self.read_buf.len()
    }

    /// Commands sent and not yet completely answered (a listing or body being received
    /// counts).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
            + usize::from(matches!(self.state, State::Listing { .. } | State::Body { .. }))
    }

    /// Commands queued and not yet sent (waiting for the greeting, the pipeline window, or
    /// the end of an STLS, AUTH or the previous command).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    // ---------------------------------------------------------------------------------------
    // Commands

    /// `CAPA` (RFC 2449 §5). Reply: [`Reply::Capabilities`]; the session also keeps them and
    /// pipelines if they include `PIPELINING`.
    pub fn capa(&mut self) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Capa, Kind::Capa)
    }

    /// `STAT` (RFC 1939 §5). Reply: [`Reply::Stat`].
    pub fn stat(&mut self) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Stat, Kind::Stat)
    }

    /// `LIST [msg]` (RFC 1939 §5). Reply: [`Reply::Scan`] for one message,
    /// [`Reply::ScanList`] for all.
    pub fn list(&mut self, msg: Option<MsgNum>) -> Result<RequestId, ClientError> {
        let kind = if msg.is_some() { Kind::ScanOne } else { Kind::ScanAll };
        self.enqueue(Command::List(msg), kind)
    }

    /// `UIDL [msg]` (RFC 1939 §7). Reply: [`Reply::Uid`] for one message, [`Reply::UidList`]
    /// for all.
    pub fn uidl(&mut self, msg: Option<MsgNum>) -> Result<RequestId, ClientError> {
        let kind = if msg.is_some() { Kind::UidOne } else { Kind::UidAll };
        self.enqueue(Command::Uidl(msg), kind)
    }

    /// `RETR msg` (RFC 1939 §5). `+OK`: [`ClientEvent::BodyStart`], chunks,
    /// [`ClientEvent::BodyEnd`]; `-ERR`: [`Reply::Err`].
    pub fn retr(&mut self, msg: MsgNum) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Retr(msg), Kind::Body)
    }

    /// `TOP msg lines` (RFC 1939 §7): headers and the first `lines` body lines, as body
    /// events like [`retr`](Self::retr).
    pub fn top(&mut self, msg: MsgNum, lines: u32) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Top { msg, lines }, Kind::Body)
    }

    /// `DELE msg` (RFC 1939 §5).
    pub fn dele(&mut self, msg: MsgNum) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Dele(msg), Kind::Plain)
    }

    /// `RSET` (RFC 1939 §5).
    pub fn rset(&mut self) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Rset, Kind::Plain)
    }

    /// `NOOP` (RFC 1939 §5).
    pub fn noop(&mut self) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Noop, Kind::Plain)
    }

    /// `LAST` (RFC 1460; removed from the standard, answered by some old servers). Reply:
    /// [`Reply::Last`].
    pub fn last(&mut self) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Last, Kind::Last)
    }

    /// `QUIT` (RFC 1939 §5 and §6). Its reply (`-ERR` when the server could not remove all
    /// deleted messages) is followed by [`ClientEvent::Closed`]. Nothing can be queued after
    /// it.
    pub fn quit(&mut self) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Quit, Kind::Quit)
    }

    /// `USER name` (RFC 1939 §7).
    pub fn user(&mut self, name: &str) -> Result<RequestId, ClientError> {
        self.enqueue(Command::User(Cow::Borrowed(name)), Kind::Plain)
    }

    /// `PASS password` (RFC 1939 §7). The password may hold spaces, not CR, LF or NUL.
    pub fn pass(&mut self, password: impl AsRef<[u8]>) -> Result<RequestId, ClientError> {
        let password = Secret::new(Cow::Borrowed(password.as_ref()));
        self.enqueue(Command::Pass(password), Kind::Plain)
    }

    /// `APOP name digest` (RFC 1939 §7), the digest being the lower-case hexadecimal MD5 of the
    /// greeting's timestamp followed by `secret`.
    ///
    /// Fails with [`ClientError::NoApopTimestamp`] before the greeting and when the greeting
    /// has no timestamp (the server does not offer APOP).
    pub fn apop(&mut self, name: &str, secret: impl AsRef<[u8]>) -> Result<RequestId, ClientError> {
        let timestamp = self
            .greeting
            .as_ref()
            .and_then(StatusLine::apop_timestamp)
            .ok_or(ClientError::NoApopTimestamp)?;
        let digest = crate::sasl::apop_digest(timestamp, secret.as_ref());
        let command =
            Command::Apop { name: Cow::Borrowed(name), digest: Secret::new(Cow::Owned(digest)) };
        self.enqueue(command, Kind::Plain)
    }

    /// `STLS` (RFC 2595 §4). On `+OK` the reply is followed by [`ClientEvent::StartTls`]. It is
    /// sent only when no other command is in flight, and nothing is sent after it until the
    /// handshake is done.
    pub fn stls(&mut self) -> Result<RequestId, ClientError> {
        if self.tls {
            return Err(ClientError::TlsActive);
        }
        self.enqueue(Command::Stls, Kind::Stls)
    }

    /// `UTF8` (RFC 6856 §2).
    pub fn utf8(&mut self) -> Result<RequestId, ClientError> {
        self.enqueue(Command::Utf8, Kind::Plain)
    }

    /// `LANG [tag | *]` (RFC 6856 §3). Reply: [`Reply::Languages`] for [`LangArg::List`],
    /// [`Reply::Ok`] otherwise.
    pub fn lang(&mut self, arg: LangArg<'_>) -> Result<RequestId, ClientError> {
        let kind = match arg {
            LangArg::List => Kind::LangList,
            _ => Kind::Plain,
        };
        self.enqueue(Command::Lang(arg), kind)
    }

    /// `AUTH mechanism [initial-response]` (RFC 5034), driven by `sasl`.
    ///
    /// The initial response, if the mechanism has one, goes on the AUTH line (`=` when empty),
    /// unless [`ClientConfig::sasl_initial_response`] is off.
    /// Each `+ challenge` from the server is answered with the mechanism's next step, or with
    /// `*` (cancel) if the mechanism rejects it. The final status line is the reply:
    /// [`Reply::Ok`], [`Reply::Err`] with the server's response code (`[AUTH]`, `[SYS/TEMP]`,
    /// `[IN-USE]`, ...), or [`Reply::AuthFailed`] when the client cancelled or, for SCRAM, the
    /// server said `+OK` without proving its identity. Sent only when no other command is in
    /// flight; nothing is sent after it until the exchange is over.
    pub fn auth(&mut self, mut sasl: SaslClient) -> Result<RequestId, ClientError> {
        let mechanism = sasl.mechanism().name();
        let initial_response =
            if self.config.sasl_initial_response { sasl.initial_response() } else { None };
        let initial_response =
            initial_response.map(|data| Secret::new(Cow::Owned(STANDARD.encode(data.expose()))));
        let command = Command::Auth { mechanism: Cow::Borrowed(mechanism), initial_response };
        let exchange = AuthExchange { sasl, error: None };
        self.enqueue(command, Kind::Auth(Box::new(exchange)))
    }

    // ---------------------------------------------------------------------------------------
    // Internals

    fn next_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    fn enqueue(&mut self, command: Command<'_>, kind: Kind) -> Result<RequestId, ClientError> {
        if self.quit_queued || matches!(self.state, State::Closed) {
            return Err(ClientError::Closed);
        }
        let id = RequestId(self.next_id);
        let is_quit = matches!(kind, Kind::Quit);
        let request = encode(id, command, kind)?;
        self.next_id += 1;
        self.quit_queued = is_quit;
        self.queue.push_back(request);
        self.release();
        Ok(id)
    }

    /// Moves queued commands to the output as far as the pipeline rules allow.
    fn release(&mut self) {
        if matches!(self.state, State::Greeting | State::TlsPending | State::Closed) {
            return;
        }
        let window = if self.is_pipelining() { self.config.effective_window() } else { 1 };
        while let Some(next) = self.queue.front() {
            let in_flight = self.in_flight();
            let blocked = in_flight >= window
                || self.in_flight.back().is_some_and(|r| r.kind.blocks_followers())
                || (next.kind.is_exclusive() && in_flight > 0);
            if blocked {
                break;
            }
            let Some(mut request) = self.queue.pop_front() else {
                break;
            };
            self.output.extend_from_slice(&request.line);
            request.line = Bytes::new();
            self.in_flight.push_back(request);
        }
    }

    /// True in the states where input is framed as lines.
    fn reads_lines(&self) -> bool {
        matches!(self.state, State::Greeting | State::Ready | State::Listing { .. })
    }

    /// Decodes and handles whole lines from the front of `input` while the session reads
    /// lines. Returns the octets consumed; stops at an unfinished line, or where the state
    /// switches to a body (the rest is body data), to TLS or to closed.
    fn decode_lines(&mut self, input: &[u8]) -> usize {
        let mut at = 0;
        while at < input.len() {
            let rest = &input[at..];
            let used = match &self.state {
                State::Listing { items, .. } => {
                    let expect = items.expect();
                    let decoded = self.decoder.decode_item(rest, expect);
                    let used = decoded.consumed;
                    match decoded.outcome {
                        Ok(None) => return at + used,
                        Ok(Some(item)) => self.on_item(item, used),
                        Err(e) => self.on_decode_error(e),
                    }
                    used
                }
                State::Greeting | State::Ready => {
                    let expect = match self.in_flight.front() {
                        Some(Request { kind: Kind::Auth(_), .. }) => Expect::Sasl,
                        _ => Expect::Status,
                    };
                    let decoded = self.decoder.decode(rest, expect);
                    let used = decoded.consumed;
                    match decoded.outcome {
                        Ok(None) => return at + used,
                        Ok(Some(response)) => self.on_response(response),
                        Err(e) => self.on_decode_error(e),
                    }
                    used
                }
                State::Body { .. } | State::TlsPending | State::Closed => return at,
            };
            if used == 0 {
                // Cannot happen (a decoded or rejected line consumes its octets); stops a loop
                // if it ever did.
                return at;
            }
            at += used;
        }
        at
    }

    fn on_decode_error(&mut self, error: DecodeError<ResponseError>) {
        let error = match error {
            DecodeError::LineTooLong { limit } => ProtocolError::LineTooLong { limit },
            DecodeError::Invalid(error) => ProtocolError::Malformed {
                request: match &self.state {
                    State::Listing { id, .. } => Some(*id),
                    State::Greeting => None,
                    _ => self.in_flight.front().map(|r| r.id),
                },
                error,
            },
        };
        self.fail(error);
    }

    fn on_response(&mut self, response: Response<'_>) {
        let status = match response {
            Response::Status(status) => status,
            Response::Challenge(data) => return self.on_challenge(data.expose()),
            // Only whole listings carry these, and the session decodes listings line by line.
            Response::Capabilities(status, _)
            | Response::ScanList(status, _)
            | Response::UidList(status, _)
            | Response::Languages(status, _) => status,
        };
        if matches!(self.state, State::Greeting) {
            return self.on_greeting(status.into_owned());
        }
        let Some(request) = self.in_flight.pop_front() else {
            return self.fail(ProtocolError::Unsolicited(status.into_owned()));
        };
        let id = request.id;
        if !status.is_ok() {
            let reply = match request.kind {
                Kind::Auth(exchange) => match exchange.error {
                    Some(error) => Reply::AuthFailed { status: status.into_owned(), error },
                    None => Reply::Err(status.into_owned()),
                },
                Kind::Quit => {
                    // RFC 1939 §6: -ERR to QUIT in UPDATE (some deletions failed); the server
                    // closes the connection all the same.
                    self.reply(id, Reply::Err(status.into_owned()));
                    return self.close();
                }
                Kind::Capa => {
                    // The server has no CAPA: it has no capabilities we may rely on.
                    self.capabilities = None;
                    Reply::Err(status.into_owned())
                }
                _ => Reply::Err(status.into_owned()),
            };
            self.reply(id, reply);
            return self.release();
        }
        let reply = match request.kind {
            Kind::Plain => Reply::Ok(status.into_owned()),
            Kind::Stat => match status.stat() {
                Some((count, size)) => Reply::Stat { count, size },
                None => return self.fail(ProtocolError::MissingValues { request: id }),
            },
            Kind::ScanOne => match status.scan_listing() {
                Some(listing) => Reply::Scan(listing),
                None => return self.fail(ProtocolError::MissingValues { request: id }),
            },
            Kind::UidOne => match status.uid_listing() {
                Some(listing) => Reply::Uid(listing.into_owned()),
                None => return self.fail(ProtocolError::MissingValues { request: id }),
            },
            Kind::Last => match status.text.split(' ').next().and_then(|n| n.parse().ok()) {
                Some(n) => Reply::Last(n),
                None => return self.fail(ProtocolError::MissingValues { request: id }),
            },
            Kind::ScanAll => return self.start_listing(id, Listing::Scan(Vec::new())),
            Kind::UidAll => return self.start_listing(id, Listing::Uid(Vec::new())),
            Kind::Capa => return self.start_listing(id, Listing::Capa(Vec::new())),
            Kind::LangList => return self.start_listing(id, Listing::Lang(Vec::new())),
            Kind::Body => {
                self.events.push_back(ClientEvent::BodyStart { id, status: status.into_owned() });
                self.state = State::Body { id, unstuffer: DotUnstuffer::new() };
                return;
            }
            Kind::Stls => {
                self.reply(id, Reply::Ok(status.into_owned()));
                self.events.push_back(ClientEvent::StartTls);
                // RFC 2595 §4: whatever the server sent after its +OK arrived before TLS and
                // is not to be trusted; the caller stops decoding at this state. The
                // capabilities may change under TLS: forget them now.
                self.state = State::TlsPending;
                self.capabilities = None;
                self.read_buf = BytesMut::new();
                return;
            }
            Kind::Quit => {
                self.reply(id, Reply::Ok(status.into_owned()));
                return self.close();
            }
            Kind::Auth(exchange) => {
                let error = exchange.error.or_else(|| {
                    (exchange.sasl.mechanism() == Mechanism::ScramSha256
                        && !exchange.sasl.server_verified())
                    .then_some(AuthError::ServerNotVerified)
                });
                match error {
                    Some(error) => Reply::AuthFailed { status: status.into_owned(), error },
                    None => Reply::Ok(status.into_owned()),
                }
            }
        };
        self.reply(id, reply);
        self.release();
    }

    fn on_greeting(&mut self, status: StatusLine<'static>) {
        let ok = status.is_ok();
        self.greeting = Some(status.clone());
        self.events.push_back(ClientEvent::Greeting(status));
        if ok {
            self.state = State::Ready;
            self.release();
        } else {
            self.close();
        }
    }

    fn start_listing(&mut self, id: RequestId, items: Listing) {
        self.state = State::Listing { id, items, octets: 0 };
    }

    fn on_item(&mut self, item: ListItem<'_>, line_octets: usize) {
        let limit = self.config.limits.multiline_block;
        let State::Listing { id, items, octets } = &mut self.state else {
            return;
        };
        let id = *id;
        *octets = octets.saturating_add(line_octets);
        if *octets > limit {
            return self.fail(ProtocolError::ListingTooLarge { request: id, limit });
        }
        match (items, item) {
            (_, ListItem::End) => {}
            (Listing::Capa(v), ListItem::Capability(c)) => return v.push(c.into_owned()),
            (Listing::Scan(v), ListItem::Scan(s)) => return v.push(s),
            (Listing::Uid(v), ListItem::Uid(u)) => return v.push(u.into_owned()),
            (Listing::Lang(v), ListItem::Language(l)) => return v.push(l.into_owned()),
            // The decoder returns only items of the kind asked for.
            _ => return,
        }
        let State::Listing { items, .. } = mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        let reply = match items {
            Listing::Capa(caps) => {
                self.capabilities = Some(caps.clone());
                Reply::Capabilities(caps)
            }
            Listing::Scan(v) => Reply::ScanList(v),
            Listing::Uid(v) => Reply::UidList(v),
            Listing::Lang(v) => Reply::Languages(v),
        };
        self.reply(id, reply);
        self.release();
    }

    fn feed_body(&mut self, data: &[u8]) -> usize {
        let State::Body { id, unstuffer } = &mut self.state else {
            return 0;
        };
        let id = *id;
        let mut chunk = BytesMut::new();
        let step = unstuffer.unstuff(data, &mut chunk);
        if !chunk.is_empty() {
            self.events.push_back(ClientEvent::BodyChunk { id, data: chunk.freeze() });
        }
        if step.done {
            self.events.push_back(ClientEvent::BodyEnd { id });
            self.state = State::Ready;
            self.release();
        }
        step.consumed
    }

    /// Answers a SASL challenge (RFC 5034 §4): the mechanism's next response in base64, or
    /// `*` to cancel.
    fn on_challenge(&mut self, data: &str) {
        let Some(Request { kind: Kind::Auth(exchange), .. }) = self.in_flight.front_mut() else {
            // The decoder returns challenges only while AUTH is in flight.
            return;
        };
        let response = match exchange.error {
            Some(_) => None,
            None => match STANDARD.decode(data) {
                Err(_) => {
                    exchange.error = Some(AuthError::InvalidChallenge);
                    None
                }
                Ok(challenge) => match exchange.sasl.step(&challenge) {
                    Ok(response) => Some(STANDARD.encode(response.expose())),
                    Err(e) => {
                        exchange.error = Some(AuthError::Mechanism(e));
                        None
                    }
                },
            },
        };
        let response: Secret<String> = Secret::new(response.unwrap_or_else(|| "*".into()));
        self.output.extend_from_slice(response.expose().as_bytes());
        self.output.extend_from_slice(CRLF);
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.events.push_back(ClientEvent::Reply { id, reply });
    }

    fn fail(&mut self, error: ProtocolError) {
        self.events.push_back(ClientEvent::ProtocolError(error));
        self.close();
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.queue.clear();
        self.in_flight.clear();
        self.read_buf = BytesMut::new();
        self.output.clear();
        self.events.push_back(ClientEvent::Closed);
    }
}

/// Encodes `command` into a request, or says why it cannot be sent.
fn encode(id: RequestId, command: Command<'_>, kind: Kind) -> Result<Request, ClientError> {
    let mut line = BytesMut::new();
    command.encode(&mut line)?;
    Ok(Request { id, kind, line: line.freeze() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn debug_output_never_shows_queued_credentials() {
        let mut client = ClientSession::new(ClientConfig::default());
        client.user("mrose").unwrap();
        client.pass("tanstaaf").unwrap();
        client.auth(SaslClient::plain(None, "tim", "hunter2")).unwrap();
        let printed = format!("{client:?} {:?}", client.queue);
        assert!(!printed.contains("tanstaaf") && !printed.contains("hunter2"), "{printed}");
        // base64 of the PLAIN message must not show either.
        assert!(!printed.contains("aHVudGVyMg"), "{printed}");
        assert!(printed.contains("queued: 3"), "{printed}");
    }

    #[test]
    fn a_carried_over_line_is_completed_without_copying_what_follows() {
        let mut client = ClientSession::new(ClientConfig::default());
        client.handle_input(b"+OK hel");
        assert_eq!(client.read_buf.len(), 7);
        client.noop().unwrap();
        // The rest of the greeting, then a whole reply: only the greeting's rest is copied
        // into the carry-over buffer; the reply is decoded straight from the input.
        client.handle_input(b"lo\r\n+OK\r\n+O");
        assert_eq!(&client.read_buf[..], b"+O");
        assert!(matches!(client.poll_event(), Some(ClientEvent::Greeting(_))));
        assert!(matches!(client.poll_event(), Some(ClientEvent::Reply { .. })));
    }
}
