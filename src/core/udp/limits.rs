//! Bounded rate limiters of the core: token buckets keyed by source IP or prefix, and a
//! per-pair interval limiter. Driven by the `now` the core is given; never read a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// A token bucket table: `rate` tokens per second, burst `burst`, at most `cap` keys.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: u64,
    burst: u64,
    cap: usize,
    // key -> (tokens in milli-tokens, last refill ms)
    map: HashMap<K, (u64, u64)>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    /// A table refilling `rate` tokens per second up to `burst`, holding at most `cap` keys.
    pub fn new(rate: u32, burst: u32, cap: usize) -> Self {
        Buckets {
            rate: u64::from(rate),
            burst: u64::from(burst),
            cap,
            map: HashMap::with_capacity(cap.min(4096)),
        }
    }

    /// Takes `cost` tokens for `key` at `now_ms`; false when the bucket lacks them or the
    /// table is full of other keys (fail closed).
    pub fn take(&mut self, key: K, cost: u64, now_ms: u64) -> bool {
        let full = self.burst * 1000;
        let len = self.map.len();
        let entry = match self.map.get_mut(&key) {
            Some(e) => e,
            None => {
                if len >= self.cap {
                    return false;
                }
                self.map.entry(key).or_insert((full, now_ms))
            }
        };
        let elapsed = now_ms.saturating_sub(entry.1);
        entry.0 = (entry.0 + elapsed.saturating_mul(self.rate)).min(full);
        entry.1 = now_ms;
        let need = cost * 1000;
        if entry.0 >= need {
            entry.0 -= need;
            true
        } else {
            false
        }
    }

    /// Whether [`Self::take`] of `cost` tokens for `key` at `now_ms` would succeed; takes
    /// nothing (a guess for work done ahead, never a decision).
    pub fn would_take(&self, key: &K, cost: u64, now_ms: u64) -> bool {
        let full = self.burst * 1000;
        let tokens = match self.map.get(key) {
            Some(&(tokens, last)) => {
                (tokens + now_ms.saturating_sub(last).saturating_mul(self.rate)).min(full)
            }
            None if self.map.len() >= self.cap => return false,
            None => full,
        };
        tokens >= cost * 1000
    }

    /// Changes the rate to `rate` tokens per second and the burst to `burst`, keeping each
    /// key's tokens (cut to the new burst): a reload's new limit applies from the next take.
    pub fn set_rate(&mut self, rate: u32, burst: u32) {
        self.rate = u64::from(rate);
        self.burst = u64::from(burst);
        let full = self.burst * 1000;
        for e in self.map.values_mut() {
            e.0 = e.0.min(full);
        }
    }

    /// Forgets keys whose bucket has been full again for a while (idle since `idle_before`).
    pub fn sweep(&mut self, now_ms: u64) {
        let full = self.burst * 1000;
        let rate = self.rate.max(1);
        self.map
            .retain(|_, (tokens, last)| *tokens + now_ms.saturating_sub(*last) * rate < full);
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The rate-limit key of a source: its /24 (IPv4) or /64 (IPv6) prefix, tagged 4 or 6.
pub fn prefix_of(ip: IpAddr) -> [u8; 9] {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [4, o[0], o[1], o[2], 0, 0, 0, 0, 0]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [6, o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
        }
    }
}

/// The wider rate-limit key of an IPv6 source: its /48 (what one site is usually given),
/// tagged 48; `None` for IPv4.
pub fn site_of(ip: IpAddr) -> Option<[u8; 9]> {
    match ip {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Some([48, o[0], o[1], o[2], o[3], o[4], o[5], 0, 0])
        }
    }
}

/// True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// At most one event per key per `interval_ms`, holding at most `cap` keys.
#[derive(Debug)]
pub struct Interval<K> {
    interval_ms: u64,
    cap: usize,
    map: HashMap<K, u64>,
}

impl<K: Hash + Eq + Copy> Interval<K> {
    /// A limiter of one event per `interval_ms` per key, at most `cap` keys.
    pub fn new(interval_ms: u64, cap: usize) -> Self {
        Interval {
            interval_ms,
            cap,
            map: HashMap::with_capacity(cap.min(4096)),
        }
    }

    /// True (and records `now_ms`) when `key` had no event in the last interval.
    pub fn allow(&mut self, key: K, now_ms: u64) -> bool {
        let len = self.map.len();
        match self.map.get_mut(&key) {
            Some(last) if now_ms.saturating_sub(*last) < self.interval_ms => false,
            Some(last) => {
                *last = now_ms;
                true
            }
            None if len >= self.cap => false,
            None => {
                self.map.insert(key, now_ms);
                true
            }
        }
    }

    /// Changes the interval to `interval_ms`; the events already recorded count against it.
    pub fn set_interval(&mut self, interval_ms: u64) {
        self.interval_ms = interval_ms;
    }

    /// Forgets keys whose interval has passed.
    pub fn sweep(&mut self, now_ms: u64) {
        let i = self.interval_ms;
        self.map.retain(|_, last| now_ms.saturating_sub(*last) < i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_and_fails_closed() {
        let mut b = Buckets::new(10, 2, 1);
        assert!(b.take(1u8, 1, 0));
        assert!(b.take(1u8, 1, 0));
        assert!(!b.take(1u8, 1, 0));
        assert!(b.take(1u8, 1, 100)); // 100 ms at 10/s = 1 token
        assert!(!b.take(2u8, 1, 100)); // table full
        b.sweep(10_000);
        assert!(b.is_empty());
        assert!(b.take(2u8, 1, 10_000));
    }

    #[test]
    fn interval_per_pair() {
        let mut i = Interval::new(1000, 10);
        assert!(i.allow((1, 2), 0));
        assert!(!i.allow((1, 2), 999));
        assert!(i.allow((2, 1), 999));
        assert!(i.allow((1, 2), 1000));
    }
}
