//! The download: pipelined `RETR` of the planned messages, each streamed into the sink as it
//! arrives, and the ledger told of every message the sink settles. Order per message: store,
//! make durable, record (only then may it be deleted on the server). This loop is the hot
//! path of a fetch: it keeps no per-message allocation, lock or system call of its own
//! beyond what the client and the sink do (asking the sink for settled batches is a look
//! at a queue).

use indicatif::ProgressBar;
use pop3_client::{Client, Retrieved};

use crate::ledger::Ledger;
use crate::listing::Listed;
use crate::report::Report;
use crate::sink::{Message, Sink};
use crate::stop::Stop;

/// What a download works with.
#[derive(Debug)]
pub struct Retriever<'a, S> {
    /// Where settled messages are noted; also gives each message its first-seen time.
    pub ledger: &'a mut Ledger,
    /// Where mail goes.
    pub sink: S,
    /// Counts and errors.
    pub report: &'a mut Report,
    /// Progress in octets, on a terminal.
    pub bar: Option<ProgressBar>,
    /// When this run started (the first-seen time of messages the ledger lacks).
    pub now: u64,
    /// Looked at between messages: once asked for, no more `RETR`s are sent.
    pub stop: &'a Stop,
}

impl<S: Sink> Retriever<'_, S> {
    /// Downloads `todo` into the sink. A message the server refuses, or the sink cannot
    /// store, is reported and skipped; a broken connection or a batch that could not be made
    /// durable ends the download (call [`finish`](Self::finish) in any case).
    ///
    /// Once a stop is asked for, no more `RETR`s are sent: the messages already asked for
    /// (at most the pipelining window) are stored as usual, the rest is left on the server.
    pub async fn retrieve(&mut self, client: &mut Client, todo: &[&Listed]) -> Result<(), String> {
        let mut retrieval = client.retrieve(todo.iter().map(|l| l.msg));
        let mut planned = todo.iter();
        let mut stopped = false;
        loop {
            if !stopped && self.stop.requested() {
                stopped = true;
                self.report.left_by_stop += retrieval.stop().len();
            }
            let Some(item) = retrieval.next().await.map_err(|e| e.to_string())? else { break };
            let uid = &planned.next().ok_or("the server answered more RETRs than were sent")?.uid;
            let mut body = match item {
                Retrieved::Message(_, body) => body,
                Retrieved::Refused(msg, e) => {
                    self.report.errors.push(format!("message {msg} ({uid}): {e}"));
                    continue;
                }
            };
            let seen = self.ledger.entries.get(uid).map_or(self.now, |e| e.seen);
            let mut message = self.sink.start(uid, seen).map_err(|e| e.to_string())?;
            let mut failed = None;
            let mut received = 0u64;
            loop {
                match body.chunk().await {
                    Ok(Some(chunk)) => {
                        received += chunk.len() as u64;
                        if let Some(bar) = &self.bar {
                            bar.inc(chunk.len() as u64);
                        }
                        if failed.is_none() && !message.is_present() {
                            if let Err(e) = message.write(&chunk) {
                                failed = Some(e.to_string());
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.sink.abort(message);
                        return Err(e.to_string());
                    }
                }
            }
            if let Some(e) = failed {
                self.sink.abort(message);
                self.report.errors.push(format!("delivering {uid}: {e}"));
                continue;
            }
            if let Err(e) = self.sink.stage(message, received) {
                self.report.errors.push(format!("delivering {uid}: {e}"));
            }
            if self.sink.should_seal() {
                self.sink.seal();
            }
            self.note_settled()?;
        }
        Ok(())
    }

    /// Seals what is staged, waits until all of it is settled and notes it: what was
    /// downloaded is kept, whatever ended the download.
    pub fn finish(mut self) -> Result<(), String> {
        self.sink.seal_and_wait();
        let noted = self.note_settled();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        noted
    }

    /// Notes in the ledger, and in the report, the messages the sink settled since last
    /// asked. Every batch is noted; the first one that is not durable is the error.
    fn note_settled(&mut self) -> Result<(), String> {
        let mut outcome = Ok(());
        while let Some(settled) = self.sink.settled() {
            match self.ledger.note(settled) {
                Ok(noted) => {
                    self.report.fetched += noted.messages;
                    self.report.bytes += noted.octets;
                }
                Err(e) => outcome = outcome.and(Err(e)),
            }
        }
        outcome
    }
}
