//! What the server holds: the listing (`LIST` and `UIDL`, one round trip), each message as
//! a [`Listed`], without the messages whose UIDL cannot tell them apart.

use std::collections::{HashMap, HashSet};

use pop3_client::MsgNum;

/// A message as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its number in this session.
    pub msg: MsgNum,
    /// Its size in octets, as `LIST` gives it.
    pub size: u64,
    /// Its unique id (`UIDL`), what the ledger knows it by across sessions.
    pub uid: String,
}

/// The server's listing, less the messages that share a UIDL.
#[derive(Debug, Default)]
pub struct Listing {
    /// The messages to work on, in the server's order.
    pub messages: Vec<Listed>,
    /// UIDLs the server gives to more than one message: still on the server, but none of
    /// their messages is fetched, recorded or deleted.
    pub shared: HashSet<String>,
}

impl Listing {
    /// Builds the listing from `LIST` and `UIDL` as the client pairs them. A UIDL that the
    /// server gives to more than one message (RFC 1939 section 7 forbids it) cannot say which
    /// of them was fetched: none of them is kept, and each is reported in `errors`.
    pub fn new(listed: Vec<(MsgNum, u64, String)>, errors: &mut Vec<String>) -> Self {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (_, _, uid) in &listed {
            *count.entry(uid.as_str()).or_default() += 1;
        }
        let shared: HashSet<String> =
            count.into_iter().filter(|&(_, n)| n > 1).map(|(uid, _)| uid.to_owned()).collect();
        let messages = listed
            .into_iter()
            .map(|(msg, size, uid)| Listed { msg, size, uid })
            .filter(|l| {
                let keep = !shared.contains(&l.uid);
                if !keep {
                    errors.push(format!(
                        "message {}: the server gives its UIDL {:?} to another message too; \
                         skipped",
                        l.msg, l.uid
                    ));
                }
                keep
            })
            .collect();
        Self { messages, shared }
    }

    /// Every UIDL still on the server, shared ones included.
    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.messages.iter().map(|l| l.uid.as_str()).chain(self.shared.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_sharing_a_uidl_are_left_out_and_reported() {
        let n = |k| MsgNum::new(k).unwrap();
        let listed = vec![
            (n(1), 10, "a".to_owned()),
            (n(2), 20, "b".to_owned()),
            (n(3), 30, "a".to_owned()),
        ];
        let mut errors = Vec::new();
        let listing = Listing::new(listed, &mut errors);
        assert_eq!(listing.messages, [Listed { msg: n(2), size: 20, uid: "b".to_owned() }]);
        assert_eq!(listing.shared, ["a".to_owned()].into_iter().collect());
        assert_eq!(errors.len(), 2, "{errors:?}");
        let mut uids: Vec<&str> = listing.uids().collect();
        uids.sort();
        assert_eq!(uids, ["a", "b"]);
    }
}
