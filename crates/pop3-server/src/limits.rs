//! Connection limits: in total, per client address before login, and per user and address
//! after login.
//!
//! Before login a connection is anonymous, so the cap is per address and generous (an office
//! behind one NAT address, a webmail host): what keeps an address from hoarding slots is the
//! login deadline and the command budget of the session, not a tight count. After login the
//! connection has a name, and the cap is per (user, address), as Dovecot's
//! `mail_max_userip_connections`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How many connections the server takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Sessions in total (default 1000).
    pub total: usize,
    /// Sessions not yet logged in per client IP address (default 100: 50 clients behind one
    /// NAT address connecting at once are all greeted).
    pub per_ip: usize,
    /// Logged-in sessions per user and client IP address (default 10, Dovecot's
    /// `mail_max_userip_connections`).
    pub per_user_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { total: 1000, per_ip: 100, per_user_ip: 10 }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_user_ip: HashMap<(String, IpAddr), usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    limits: ConnectionLimits,
    counts: Arc<Mutex<Counts>>,
}

/// Held by a session; releases what it counts for when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    ip: IpAddr,
    /// Counted against the per-address cap (until login).
    anonymous: bool,
    /// Counted against the per-(user, address) cap (after login).
    user: Option<String>,
    counts: Arc<Mutex<Counts>>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Tracker {
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Self { limits, counts: Arc::default() }
    }

    /// A slot for a new connection from `ip`, or `None` when a limit is reached.
    pub(crate) fn acquire(&self, ip: IpAddr) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let for_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if counts.total >= self.limits.total {
            crate::metrics::refused(crate::metrics::Limit::Total);
            return None;
        }
        if for_ip >= self.limits.per_ip {
            crate::metrics::refused(crate::metrics::Limit::PerIp);
            return None;
        }
        counts.total += 1;
        crate::metrics::connections_open(1);
        counts.per_ip.insert(ip, for_ip + 1);
        Some(Slot { ip, anonymous: true, user: None, counts: Arc::clone(&self.counts) })
    }

    /// Moves `slot` from the per-address count to `user`'s; false (and nothing changed) when
    /// `user` already has [`ConnectionLimits::per_user_ip`] sessions from this address.
    pub(crate) fn logged_in(&self, slot: &mut Slot, user: &str) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_owned(), slot.ip);
        let n = counts.per_user_ip.get(&key).copied().unwrap_or(0);
        if n >= self.limits.per_user_ip {
            crate::metrics::refused(crate::metrics::Limit::PerUserIp);
            return false;
        }
        counts.per_user_ip.insert(key, n + 1);
        if slot.anonymous {
            decrement(&mut counts.per_ip, &slot.ip);
            slot.anonymous = false;
        }
        slot.user = Some(user.to_owned());
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        crate::metrics::connections_open(-1);
        if self.anonymous {
            decrement(&mut counts.per_ip, &self.ip);
        }
        if let Some(user) = self.user.take() {
            decrement(&mut counts.per_user_ip, &(user, self.ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_per_ip_before_login_and_per_user_ip_after() {
        let tracker = Tracker::new(ConnectionLimits { total: 4, per_ip: 2, per_user_ip: 1 });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut a1 = tracker.acquire(a).unwrap();
        let _a2 = tracker.acquire(a).unwrap();
        assert!(tracker.acquire(a).is_none(), "per-IP limit before login");
        // A login frees the per-address place, and counts for the user instead.
        assert!(tracker.logged_in(&mut a1, "alice"));
        let mut a3 = tracker.acquire(a).unwrap();
        assert!(!tracker.logged_in(&mut a3, "alice"), "per-(user, IP) limit");
        assert!(tracker.logged_in(&mut a3, "bob"));
        let _b1 = tracker.acquire(b).unwrap();
        assert!(tracker.acquire(b).is_none(), "total limit");
        drop(a1);
        let mut a4 = tracker.acquire(a).unwrap();
        assert!(tracker.logged_in(&mut a4, "alice"), "released on drop");
        let counts = tracker.counts.lock().unwrap();
        assert_eq!(counts.total, 4);
        assert_eq!(counts.per_ip.get(&a), Some(&1));
    }
}
