//! Maildir delivery of one message: a batch of one through the [`MaildirSink`].

use std::io::Read;

use super::Maildir;
use crate::sink::{deliver_one, BatchLimits, Incoming, MaildirSink, Modes};
use crate::{Error, Result};

impl Maildir {
    /// Delivers a message durably: writes it to an unnamed file in `tmp/` (or `tmp/NAME`),
    /// syncs it, names it in `new/` as `SECONDS.UNIQUE.HOST,S=<stored size>,W=<RFC 1939
    /// size>` (never replacing a file) and fsyncs `new/` (see [`crate::sink`]). Returns the
    /// file name in `new/`.
    ///
    /// Delivery does not take the maildrop lock: a Maildir needs none, and a message
    /// delivered during a POP3 session is simply not part of that session's snapshot.
    pub fn deliver(&self, message: &mut dyn Read) -> Result<String> {
        self.ensure_dirs()?;
        let mut sink = MaildirSink::open(self.path(), Modes::PRIVATE, BatchLimits::default())?;
        let name = deliver_one(&mut sink, &Incoming::default(), message)?;
        name.ok_or_else(|| Error::io("deliver to", self.path(), std::io::Error::other("not named")))
    }
}
