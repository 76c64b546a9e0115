//! Executing commands: which command is legal in which state (one place), and the commands the
//! session answers from its own state.

use alloc::format;

use super::body::BodyStream;
use super::capa;
use super::event::{CloseReason, Event};
use super::session::{ServerSession, State, Transaction};
use crate::wire::{number_pair, numbered};
use crate::{Command, LangArg, LangListing, MsgNum, Response, StatusLine, TopFilter};

/// The states in which commands are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Authorization,
    Transaction,
}

/// The one place that decides which command is legal where (RFC 1939 §4-§7, RFC 2449 §5,
/// RFC 2595 §4, RFC 5034 §4, RFC 6856 §2-§3). `Err` carries the `-ERR` text.
fn legality(state: Reading, command: &Command<'_>, last_enabled: bool) -> Result<(), &'static str> {
    use Command::*;
    match (state, command) {
        // Allowed in both states.
        (_, Capa | Quit | Lang(_)) => Ok(()),
        (Reading::Authorization, User(_) | Pass(_) | Apop { .. } | Auth { .. } | Stls | Utf8) => {
            Ok(())
        }
        (
            Reading::Transaction,
            Stat | List(_) | Retr(_) | Dele(_) | Noop | Rset | Top { .. } | Uidl(_),
        ) => Ok(()),
        (Reading::Transaction, Last) if last_enabled => Ok(()),
        (_, Last) => Err("unknown command"),
        (Reading::Authorization, _) => Err("command not valid before login"),
        // RFC 6856 §2: UTF8 only before login; RFC 2595 §4: STLS only before login.
        (Reading::Transaction, _) => Err("command not valid after login"),
    }
}

impl ServerSession {
    /// Executes one decoded command in AUTHORIZATION or TRANSACTION state.
    pub(super) fn execute(&mut self, command: Command<'static>) {
        let reading = match self.state {
            State::Authorization { .. } => Reading::Authorization,
            State::Transaction(_) => Reading::Transaction,
            _ => return,
        };
        if let Err(reason) = legality(reading, &command, self.config.last_command) {
            self.bad_command(reason);
            return;
        }
        match command {
            Command::Capa => self.capa(),
            Command::Quit => self.quit(),
            Command::Lang(arg) => self.lang(arg),
            Command::Utf8 => {
                // RFC 6856 §2: UTF-8 user names and passwords are accepted from now on; we
                // accept valid UTF-8 anyway, so this only acknowledges.
                self.utf8 = true;
                self.reply(StatusLine::ok("UTF8 enabled"));
            }
            Command::Stls => self.stls(),
            Command::User(name) => self.user(name.into_owned()),
            Command::Pass(pass) => self.pass(pass.into_inner().into_owned()),
            Command::Apop { name, digest } => {
                self.apop(name.into_owned(), digest.into_inner().into_owned());
            }
            Command::Auth { mechanism, initial_response } => {
                let initial = initial_response.map(|r| r.into_inner().into_owned());
                self.auth(&mechanism, initial);
            }
            other => {
                if let State::Transaction(t) = &mut self.state {
                    let line = transaction_command(t, other, &mut self.events);
                    if let Some(response) = line {
                        response.encode(&mut self.output);
                    }
                }
            }
        }
    }

    /// CAPA (RFC 2449 §5): what is offered depends on the state, TLS and configuration.
    fn capa(&mut self) {
        let before_login = matches!(self.state, State::Authorization { .. });
        let list = capa::capabilities(
            &self.config,
            self.tls_active,
            self.plaintext_allowed(),
            before_login,
        );
        Response::Capabilities(StatusLine::ok("Capability list follows"), list)
            .encode(&mut self.output);
    }

    /// QUIT: before login, close without UPDATE; after, enter UPDATE (RFC 1939 §6).
    fn quit(&mut self) {
        match core::mem::replace(&mut self.state, State::Closed) {
            State::Transaction(t) => {
                let remaining = t.snapshot.stat().0;
                self.events.push_back(Event::Commit { deleted: t.snapshot.deleted_indices() });
                self.state = State::Update { remaining };
            }
            _ => {
                self.reply(StatusLine::ok("POP3 server signing off"));
                self.close(CloseReason::Quit);
            }
        }
    }

    /// LANG (RFC 6856 §3).
    fn lang(&mut self, arg: LangArg<'_>) {
        let languages = &self.config.languages;
        let chosen = match arg {
            LangArg::List => {
                let items = languages
                    .iter()
                    .map(|(tag, description)| LangListing {
                        tag: tag.as_str().into(),
                        description: description.as_str().into(),
                    })
                    .collect();
                Response::Languages(StatusLine::ok("Language listing follows"), items)
                    .encode(&mut self.output);
                return;
            }
            LangArg::Wildcard => Some(0),
            LangArg::Tag(tag) => languages.iter().position(|(t, _)| t.eq_ignore_ascii_case(&tag)),
        };
        match chosen.and_then(|i| Some((i, languages.get(i)?))) {
            Some((i, (tag, description))) => {
                let line = format!("{tag} {description}");
                self.language = i;
                self.reply(StatusLine::ok(line));
            }
            None => self.reply(StatusLine::err("invalid language")),
        }
    }

    /// STLS (RFC 2595 §4): only before login, only once, only if the embedder can do TLS.
    fn stls(&mut self) {
        if self.tls_active {
            self.reply(StatusLine::err("Command not permitted when TLS active"));
        } else if !self.config.tls_available {
            self.reply(StatusLine::err("STLS not available"));
        } else {
            self.reply(StatusLine::ok("Begin TLS negotiation"));
            // Anything the client pipelined after STLS arrived in plaintext: it must never be
            // executed once TLS is up (the STARTTLS command-injection class of attacks).
            self.input.clear();
            self.decoder = crate::CommandDecoder::new(self.config.limits);
            self.state = State::StlsPending;
            self.events.push_back(Event::StartTls);
        }
    }
}

/// A TRANSACTION command the session answers from its snapshot (RFC 1939 §5, §7); RETR and TOP
/// raise [`Event::RetrieveBody`] instead.
fn transaction_command<'t>(
    t: &'t mut Transaction,
    command: Command<'static>,
    events: &mut alloc::collections::VecDeque<Event>,
) -> Option<Response<'t>> {
    let no_such = |msg: MsgNum, t: &Transaction| {
        let text = if t.snapshot.is_deleted(msg) {
            format!("message {msg} already deleted")
        } else {
            format!("no such message, only {} messages in maildrop", t.snapshot.len())
        };
        Some(Response::Status(StatusLine::err(text)))
    };
    let summary = |t: &Transaction| {
        let (count, size) = t.snapshot.stat();
        format!("maildrop has {count} messages ({size} octets)")
    };
    match command {
        Command::Stat => {
            let (count, size) = t.snapshot.stat();
            Some(Response::Status(StatusLine::ok(number_pair(count.into(), size))))
        }
        Command::List(None) => {
            let items = t.snapshot.scan_listings().collect();
            Some(Response::ScanList(StatusLine::ok(summary(t)), items))
        }
        Command::List(Some(msg)) => match t.snapshot.get(msg) {
            Some(m) => {
                Some(Response::Status(StatusLine::ok(number_pair(msg.get().into(), m.size()))))
            }
            None => no_such(msg, t),
        },
        Command::Uidl(None) => {
            let items = t.snapshot.uid_listings().collect();
            Some(Response::UidList(StatusLine::ok(""), items))
        }
        Command::Uidl(Some(msg)) => match t.snapshot.get(msg) {
            Some(m) => Some(Response::Status(StatusLine::ok(numbered(msg.get().into(), m.uid())))),
            None => no_such(msg, t),
        },
        Command::Dele(msg) => {
            if t.snapshot.delete(msg) {
                Some(Response::Status(StatusLine::ok(format!("message {msg} deleted"))))
            } else {
                no_such(msg, t)
            }
        }
        Command::Rset => {
            t.snapshot.undelete_all();
            t.last_accessed = 0;
            Some(Response::Status(StatusLine::ok(summary(t))))
        }
        Command::Noop => Some(Response::Status(StatusLine::ok(""))),
        Command::Last => Some(Response::Status(StatusLine::ok(format!("{}", t.last_accessed)))),
        Command::Retr(msg) | Command::Top { msg, .. } => {
            let top = match command {
                Command::Top { lines, .. } => Some(TopFilter::new(lines)),
                _ => None,
            };
            let Some(m) = t.snapshot.get(msg) else { return no_such(msg, t) };
            if top.is_none() {
                t.last_accessed = t.last_accessed.max(msg.get());
            }
            t.body = Some(BodyStream::new(msg, m.size(), top));
            events.push_back(Event::RetrieveBody { msg, index: msg.index() });
            None
        }
        _ => Some(Response::Status(StatusLine::err("unknown command"))),
    }
}
