//! Who may connect (docs/PROTOCOL.md §8.11, §8.12): accepted connections counted per
//! address prefix, and peers cut off for a while after input we refused (a forged record,
//! an implausible clock). Loopback is never cut off, as it is exempt from the limits.

use super::config::{canonical_ip, conn_prefix};
use std::collections::HashMap;
use std::net::IpAddr;

/// How long a peer is cut off after input we refused: 10 minutes, in ms.
pub(super) const PEER_BAN_MS: u64 = 600_000;
/// Most addresses cut off at once; when full, the one whose ban ends first goes.
const MAX_BANNED: usize = 4096;

/// Connection counts per prefix and the addresses cut off.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Accepted connections open per address prefix ([`conn_prefix`]).
    per_prefix: HashMap<IpAddr, usize>,
    /// Addresses whose server-role connections are refused, and until when (ms).
    banned: HashMap<IpAddr, u64>,
}

impl Gate {
    /// An accepted connection from `ip` opened; returns how many are open from its prefix.
    pub(super) fn opened(&mut self, ip: IpAddr) -> usize {
        let open = self.per_prefix.entry(conn_prefix(ip)).or_default();
        *open += 1;
        *open
    }

    /// An accepted connection from `ip` closed.
    pub(super) fn closed(&mut self, ip: IpAddr) {
        let key = conn_prefix(ip);
        if let Some(open) = self.per_prefix.get_mut(&key) {
            *open -= 1;
            if *open == 0 {
                self.per_prefix.remove(&key);
            }
        }
    }

    /// Cuts `ip` off until `now_ms` + [`PEER_BAN_MS`] (never loopback).
    pub(super) fn ban(&mut self, ip: IpAddr, now_ms: u64) {
        let ip = canonical_ip(ip);
        if ip.is_loopback() {
            return;
        }
        if self.banned.len() >= MAX_BANNED && !self.banned.contains_key(&ip) {
            self.banned.retain(|_, until| *until > now_ms);
            if self.banned.len() >= MAX_BANNED {
                if let Some(first) = self.banned.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) {
                    self.banned.remove(&first);
                }
            }
        }
        self.banned.insert(ip, now_ms + PEER_BAN_MS);
    }

    /// Until when `ip` is cut off (ms), if it is at `now_ms`.
    pub(super) fn banned_until(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        self.banned
            .get(&canonical_ip(ip))
            .copied()
            .filter(|until| *until > now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_expire_spare_loopback_and_are_bounded() {
        let mut g = Gate::default();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        g.ban(ip, 1_000);
        assert_eq!(g.banned_until(ip, 1_000), Some(1_000 + PEER_BAN_MS));
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert!(
            g.banned_until(mapped, 2_000).is_some(),
            "mapped is the same address"
        );
        assert_eq!(g.banned_until(ip, 1_000 + PEER_BAN_MS), None, "expired");
        g.ban("127.0.0.1".parse().unwrap(), 0);
        assert_eq!(g.banned_until("127.0.0.1".parse().unwrap(), 1), None);
        for i in 0..(MAX_BANNED as u32 + 10) {
            g.ban(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), u64::from(i));
        }
        assert!(g.banned.len() <= MAX_BANNED);
    }
}
