//! Connection limits: in total and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How many connections the server takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Sessions in total (default 1000).
    pub total: usize,
    /// Sessions per client IP address (default 10: a client fetching several accounts, or a
    /// household behind one NAT address, stays well below it).
    pub per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { total: 1000, per_ip: 10 }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    limits: ConnectionLimits,
    counts: Arc<Mutex<Counts>>,
}

/// Held by a session; releases its slot when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Tracker {
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Self { limits, counts: Arc::default() }
    }

    /// A slot for a connection from `ip`, or `None` when a limit is reached.
    pub(crate) fn acquire(&self, ip: IpAddr) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let for_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if counts.total >= self.limits.total || for_ip >= self.limits.per_ip {
            return None;
        }
        counts.total += 1;
        counts.per_ip.insert(ip, for_ip + 1);
        Some(Slot { ip, counts: Arc::clone(&self.counts) })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_ip() {
        let tracker = Tracker::new(ConnectionLimits { total: 3, per_ip: 2 });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = tracker.acquire(a).unwrap();
        let _a2 = tracker.acquire(a).unwrap();
        assert!(tracker.acquire(a).is_none(), "per-IP limit");
        let _b1 = tracker.acquire(b).unwrap();
        assert!(tracker.acquire(b).is_none(), "total limit");
        drop(a1);
        assert!(tracker.acquire(a).is_some(), "a slot is released on drop");
    }
}
