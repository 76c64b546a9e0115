//! Failed-login penalties shared by every connection, like Dovecot's anvil, but a rate.
//!
//! A fixed delay per failure and "three failures, then close" let an attacker guess at a fixed
//! rate forever: each new connection starts over, and parallel connections multiply the rate.
//! Here failures are counted in one table, per source network (an IPv4 address, an IPv6 /64:
//! one host's share of a typical allocation) and per user name, across connections, and the
//! count sets a pace: 2, 4, 8, then 15 s (capped) between attempts. Every attempt waits
//! *before* its credentials are checked: a client that hangs up early learns nothing sooner,
//! as the answer is not computed yet.
//!
//! - **Per network: a queue.** Attempts from one network are checked one pace apart, however
//!   many connections carry them: ten connections from one address guess no faster than one.
//!   An attempt that would wait longer than four paces (60 s by default) is refused unchecked
//!   (`-ERR [SYS/TEMP]`), so the queue, and what a client behind the same address waits, stay
//!   bounded.
//! - **Per user: a delay.** An attempt for a user waits the user's pace, but attempts for the
//!   same user from different networks are not queued behind each other: an attacker guessing
//!   a user's password from elsewhere slows the user's own logins by at most the cap (15 s),
//!   never locks them out, and a correct login clears the user's count.
//! - **Success** also clears its network's count when all of that network's failures were for
//!   that same user (a user who mistyped a password); an attacker who owns one account cannot
//!   wipe out the count earned guessing another.
//! - **Decay.** An entry is forgotten `window` after its last failure (default 15 min).
//! - **Bounded.** At most `max_entries` entries; when full, expired entries go first, then the
//!   eighth that failed longest ago.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How failed logins slow down later attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PenaltyLimits {
    /// The delay after the first counted failure; it doubles with each further one
    /// (default 2 s).
    pub initial: Duration,
    /// The longest delay (default 15 s, as Dovecot's).
    pub max: Duration,
    /// A count is forgotten this long after its last failure (default 15 min).
    pub window: Duration,
    /// Entries kept at most (networks and users together; default 100,000, about 10 MB).
    pub max_entries: usize,
}

impl Default for PenaltyLimits {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(15),
            window: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

impl PenaltyLimits {
    /// The delay earned by `failures` counted failures.
    pub fn delay(&self, failures: u32) -> Duration {
        match failures {
            0 => Duration::ZERO,
            n => self.initial.saturating_mul(1 << (n - 1).min(16)).min(self.max),
        }
    }
}

/// What a count is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// An IPv4 address, or the first 64 bits of an IPv6 one.
    Network(u64),
    /// A user name's keyed hash (names are not kept).
    User(u64),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    /// For a network: the user its failures were for, while it was only one.
    only_user: Option<u64>,
    /// For a network: when the next attempt may be checked (the queue's end).
    next_free: Instant,
}

/// An attempt from a network whose queue is already longer than four paces: refused without
/// a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull;

/// The shared table.
#[derive(Debug)]
pub(crate) struct Penalties {
    limits: PenaltyLimits,
    hasher: RandomState,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Penalties {
    pub(crate) fn new(limits: PenaltyLimits) -> Self {
        Self { limits, hasher: RandomState::new(), entries: Mutex::default() }
    }

    fn user_key(&self, user: &str) -> u64 {
        self.hasher.hash_one(user)
    }

    fn network(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(v4) => Key::Network(u64::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::Network(u64::from(u32::from(v4))),
                // The top bit set keeps v6 prefixes apart from v4 addresses.
                None => Key::Network((u128::from(v6) >> 64) as u64 | 1 << 63),
            },
        }
    }

    fn count(&self, map: &HashMap<Key, Entry>, key: Key, now: Instant) -> u32 {
        map.get(&key)
            .filter(|e| now.saturating_duration_since(e.last) < self.limits.window)
            .map_or(0, |e| e.failures)
    }

    /// Takes this attempt's place in its network's queue: how long it waits before it is
    /// checked (the later of its network's turn and its user's pace), or [`QueueFull`].
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        user: Option<&str>,
        now: Instant,
    ) -> Result<Duration, QueueFull> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let user_wait = self
            .limits
            .delay(user.map_or(0, |u| self.count(&map, Key::User(self.user_key(u)), now)));
        let failures = self.count(&map, Self::network(ip), now);
        let Some(entry) = map.get_mut(&Self::network(ip)).filter(|_| failures > 0) else {
            return Ok(user_wait);
        };
        let pace = self.limits.delay(failures);
        let turn = entry.next_free.max(now);
        if turn.saturating_duration_since(now) > self.limits.max.saturating_mul(4) {
            return Err(QueueFull);
        }
        entry.next_free = turn + pace;
        Ok(turn.saturating_duration_since(now).max(user_wait))
    }

    /// Counts a failed login from `ip` (as `user`, when known).
    pub(crate) fn failed(&self, ip: IpAddr, user: Option<&str>, now: Instant) {
        let user = user.map(|u| self.user_key(u));
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.make_room(&mut map, now);
        let (window, limits) = (self.limits.window, self.limits);
        let mut bump = |key: Key, only_user: Option<u64>| {
            let fresh = Entry { failures: 0, last: now, only_user, next_free: now };
            let entry = map.entry(key).or_insert(fresh);
            if now.saturating_duration_since(entry.last) >= window {
                *entry = fresh;
            }
            if entry.only_user != only_user {
                entry.only_user = None;
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.last = now;
            // The network's next attempt is checked no sooner than one pace after this
            // failure, also when it was the first (the queue had no turn to hand out yet).
            entry.next_free = entry.next_free.max(now + limits.delay(entry.failures));
        };
        bump(Self::network(ip), user);
        if let Some(user) = user {
            bump(Key::User(user), None);
        }
    }

    /// A correct login as `user` from `ip`: see the module docs for what it clears.
    pub(crate) fn succeeded(&self, ip: IpAddr, user: &str) {
        let user = self.user_key(user);
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&Key::User(user));
        let network = Self::network(ip);
        if map.get(&network).is_some_and(|e| e.only_user == Some(user)) {
            map.remove(&network);
        }
    }

    /// Entries in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn make_room(&self, map: &mut HashMap<Key, Entry>, now: Instant) {
        if map.len() < self.limits.max_entries {
            return;
        }
        let window = self.limits.window;
        map.retain(|_, e| now.saturating_duration_since(e.last) < window);
        if map.len() < self.limits.max_entries {
            return;
        }
        // Still full of live entries (a spray of names or addresses): drop the eighth that
        // failed longest ago, so that this scan runs once per max_entries/8 failures.
        let mut lasts: Vec<Instant> = map.values().map(|e| e.last).collect();
        let cut = lasts.len() / 8;
        let (_, &mut cutoff, _) = lasts.select_nth_unstable(cut);
        map.retain(|_, e| e.last > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    impl Penalties {
        /// What an attempt would wait, without taking a place in the queue.
        fn delay(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Duration {
            let map = self.entries.lock().unwrap();
            let network = self.count(&map, Self::network(ip), now);
            let user = user.map_or(0, |u| self.count(&map, Key::User(self.user_key(u)), now));
            self.limits.delay(network.max(user))
        }
    }

    #[test]
    fn delays_grow_per_network_and_cap() {
        let limits = PenaltyLimits::default();
        let secs: Vec<u64> = (0..7).map(|n| limits.delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 2, 4, 8, 15, 15, 15]);
        let p = Penalties::new(limits);
        let t = Instant::now();
        for _ in 0..3 {
            p.failed(ip("192.0.2.1"), Some("alice"), t);
        }
        assert_eq!(p.delay(ip("192.0.2.1"), None, t), Duration::from_secs(8));
        // Another network, another user: nothing.
        assert_eq!(p.delay(ip("192.0.2.2"), Some("bob"), t), Duration::ZERO);
        // IPv6: one /64 counts as one network; another /64 is apart.
        for n in 0..4 {
            p.failed(ip(&format!("2001:db8:0:1::{n}")), Some("carol"), t);
        }
        assert_eq!(p.delay(ip("2001:db8:0:1:ffff::9"), None, t), Duration::from_secs(15));
        assert_eq!(p.delay(ip("2001:db8:0:2::1"), None, t), Duration::ZERO);
        // A v4-mapped address is its v4 address.
        assert_eq!(p.delay(ip("::ffff:192.0.2.1"), None, t), Duration::from_secs(8));
        // Decay: forgotten a window after the last failure.
        let later = t + limits.window;
        assert_eq!(p.delay(ip("192.0.2.1"), None, later), Duration::ZERO);
        p.failed(ip("192.0.2.1"), None, later);
        assert_eq!(p.delay(ip("192.0.2.1"), None, later), Duration::from_secs(2), "starts over");
    }

    #[test]
    fn a_users_count_follows_them_across_networks_and_success_clears_it() {
        let p = Penalties::new(PenaltyLimits::default());
        let t = Instant::now();
        for n in 0..3 {
            p.failed(ip(&format!("198.51.100.{n}")), Some("alice"), t);
        }
        // Alice from home waits (slowed, capped), others do not.
        assert_eq!(p.delay(ip("203.0.113.7"), Some("alice"), t), Duration::from_secs(8));
        assert_eq!(p.delay(ip("203.0.113.7"), Some("bob"), t), Duration::ZERO);
        p.succeeded(ip("203.0.113.7"), "alice");
        assert_eq!(p.delay(ip("203.0.113.7"), Some("alice"), t), Duration::ZERO);
        // The attackers' networks keep their counts.
        assert_eq!(p.delay(ip("198.51.100.0"), None, t), Duration::from_secs(2));
    }

    #[test]
    fn success_clears_a_networks_count_only_if_it_failed_for_that_user_alone() {
        let p = Penalties::new(PenaltyLimits::default());
        let t = Instant::now();
        let home = ip("192.0.2.10");
        p.failed(home, Some("alice"), t);
        p.failed(home, Some("alice"), t);
        p.succeeded(home, "alice");
        assert_eq!(p.delay(home, None, t), Duration::ZERO, "a typo, then the right password");
        // Guessing bob, then logging in as one's own mallory: the count stays.
        let attacker = ip("192.0.2.66");
        p.failed(attacker, Some("bob"), t);
        p.failed(attacker, Some("mallory"), t);
        p.succeeded(attacker, "mallory");
        assert_eq!(p.delay(attacker, None, t), Duration::from_secs(4));
        // A failure without a user name (a malformed SASL message) also mixes the network.
        let other = ip("192.0.2.77");
        p.failed(other, None, t);
        p.failed(other, Some("eve"), t);
        p.succeeded(other, "eve");
        assert_eq!(p.delay(other, None, t), Duration::from_secs(4));
    }

    #[test]
    fn attempts_from_one_network_are_queued_one_pace_apart_and_the_queue_is_bounded() {
        let p = Penalties::new(PenaltyLimits::default());
        let t = Instant::now();
        let net = ip("192.0.2.1");
        // No failures yet: no queue.
        assert_eq!(p.admit(net, Some("alice"), t), Ok(Duration::ZERO));
        assert_eq!(p.admit(net, Some("alice"), t), Ok(Duration::ZERO));
        for _ in 0..4 {
            p.failed(net, Some("bob"), t);
        }
        // Four failures: 15 s apart from the last one, however many connections ask at once,
        // for any user.
        let waits: Vec<_> = (0..4).map(|i| p.admit(net, Some(&format!("u{i}")), t)).collect();
        let secs = |s: u64| Ok(Duration::from_secs(s));
        assert_eq!(waits, [secs(15), secs(30), secs(45), secs(60)]);
        assert_eq!(p.admit(net, None, t), Err(QueueFull), "beyond four paces: refused");
        // Time moves on: the queue drains.
        assert_eq!(p.admit(net, None, t + Duration::from_secs(70)), secs(5));
        // Another network is not queued; bob's own pace applies to him everywhere, unqueued.
        assert_eq!(p.admit(ip("192.0.2.2"), Some("carol"), t), secs(0));
        assert_eq!(p.admit(ip("192.0.2.2"), Some("bob"), t), secs(15));
        assert_eq!(p.admit(ip("192.0.2.3"), Some("bob"), t), secs(15));
    }

    #[test]
    fn one_client_guessing_in_turn_is_checked_two_four_eight_seconds_apart() {
        let p = Penalties::new(PenaltyLimits::default());
        let net = ip("192.0.2.9");
        let mut t = Instant::now();
        let mut gaps = Vec::new();
        for n in 0..4 {
            // Each guess for another user, so that only the network's pace applies.
            let wait = p.admit(net, Some(&format!("user{n}")), t).unwrap();
            gaps.push(wait.as_secs());
            t += wait;
            p.failed(net, Some(&format!("user{n}")), t);
        }
        assert_eq!(gaps, [0, 2, 4, 8], "the first failure already sets the pace");
    }

    #[test]
    fn the_table_is_bounded() {
        let limits = PenaltyLimits { max_entries: 1000, ..PenaltyLimits::default() };
        let p = Penalties::new(limits);
        let t = Instant::now();
        for n in 0..10_000u32 {
            let at = t + Duration::from_millis(u64::from(n));
            p.failed(IpAddr::from(n.to_be_bytes()), Some(&format!("user{n}")), at);
            assert!(p.len() <= 1001, "{} entries after {n} failures", p.len());
        }
        // The newest are kept.
        let end = t + Duration::from_secs(10);
        assert_eq!(p.delay(IpAddr::from(9_999u32.to_be_bytes()), None, end), limits.initial);
        assert_eq!(p.delay(IpAddr::from(5u32.to_be_bytes()), None, end), Duration::ZERO);
    }
}
