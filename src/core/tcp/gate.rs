//! Who may connect (docs/PROTOCOL.md §8.11, §8.12): accepted connections counted per
//! address prefix, room made at the total cap by the busiest prefix, and peers cut off
//! for a while after input we refused (a forged record, an implausible clock). Loopback is
//! never cut off, as it is exempt from the limits.

use super::config::{canonical_ip, conn_prefix};
use super::{ConnId, TcpCore};
use crate::wire::status::SERVICE_UNAVAILABLE;
use crate::wire::tcp::{self, Role};
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

impl TcpCore {
    /// After accepting `newcomer`: past [`super::TcpBounds::max_conns`] live accepted
    /// connections, the longest-idle client connection (one without a hello first) of the
    /// prefix that holds the most is closed with 503, unless the newcomer's prefix holds as
    /// many; then the newcomer gets 503. Peers' connections and links are never chosen
    /// (docs/PROTOCOL.md §8.11). O(connections), only when full.
    pub(super) fn make_room(&mut self, newcomer: ConnId) {
        let live = |c: &super::conn::Conn| {
            c.link.is_none() && !c.input.refused && !c.out.close_when_flushed
        };
        if self.conns.len() <= self.cfg.bounds.max_conns
            || self.conns.values().filter(|c| live(c)).count() <= self.cfg.bounds.max_conns
        {
            return;
        }
        let mut held: HashMap<IpAddr, usize> = HashMap::new();
        for c in self
            .conns
            .values()
            .filter(|c| live(c) && c.role != Some(Role::Server))
        {
            *held.entry(conn_prefix(c.addr.ip())).or_default() += 1;
        }
        let Some(mine) = self.conns.get(&newcomer).map(|c| conn_prefix(c.addr.ip())) else {
            return;
        };
        let own = held.get(&mine).copied().unwrap_or(0);
        let busiest = held.iter().max_by_key(|(_, n)| **n).map(|(p, n)| (*p, *n));
        let victim = match busiest {
            Some((prefix, n)) if n > own => self
                .conns
                .iter()
                .filter(|(&id, c)| {
                    id != newcomer
                        && live(c)
                        && c.role != Some(Role::Server)
                        && conn_prefix(c.addr.ip()) == prefix
                })
                .min_by_key(|(_, c)| (c.role.is_some(), c.input.last_in_ms))
                .map(|(&id, _)| id),
            _ => None,
        };
        match victim {
            Some(v) => {
                tracing::debug!(
                    conn = v,
                    "connection cap reached; closed the busiest address's idlest"
                );
                let detail = "server full: closed to make room for another address";
                self.fail_now(v, SERVICE_UNAVAILABLE, tcp::REQUEST_UNKNOWN, detail);
            }
            None => {
                let detail = "server full: too many connections";
                self.fail_now(newcomer, SERVICE_UNAVAILABLE, tcp::REQUEST_HELLO, detail);
            }
        }
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
