//! Tunables of the UDP core, with the defaults of docs/PROTOCOL.md §5 (rate limits §5.9,
//! TTL §5.10, table bounds §5.11) and §8.16 (federation), grouped by job: who the server
//! is, its timers, its table and queue bounds, its rate limits and its federation. Every
//! table and queue bound lives here; plain data, no state of the core.

/// Configuration of a [`super::UdpCore`], one group per job. Times are milliseconds unless
/// the name says `_s`. `Default` gives the values of docs/PROTOCOL.md §5.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpConfig {
    /// Who this server is: its alias and node uid.
    pub identity: UdpIdentity,
    /// `serve --accept-replayed` (docs/PROTOCOL.md §10): no freshness window and no address check, so a
    /// capture can be replayed days later. Only allowed on a loopback-only listener (the
    /// CLI refuses it otherwise). Default false.
    ///
    /// When true, for registrations (type 2) and relays (type 4): a timestamp any distance
    /// from the server clock passes (no 409 for the window); a registration is never
    /// challenged (no type 9): it is accepted without a cookie, or with 16 cookie bytes
    /// that are not checked (a capture's cookie was minted by another server for another
    /// address). Unchanged: certificate and signature checks (401), and per fingerprint
    /// "older than the newest accepted" and exact replays (409); their state is then kept
    /// however old its timestamp (bounded as usual), so replaying one capture twice at one
    /// server accepts nothing the second time. A side effect: with no cookie in it, a
    /// client's registration repeated within the same second (same timestamp, same
    /// payload) from another socket is an exact replay too, and gets 409.
    pub accept_replayed: bool,
    /// Keepalive, TTL, freshness window and cookie period.
    pub timers: UdpTimers,
    /// Bounds of the directory's tables (docs/PROTOCOL.md §5.11).
    pub tables: TableBounds,
    /// Bounds of the offline relay queues (docs/PROTOCOL.md §5.8).
    pub queue: QueueBounds,
    /// Rate limits (docs/PROTOCOL.md §5.9).
    pub limits: RateLimits,
    /// Directory federation: re-announcements and the peer outbox (docs/PROTOCOL.md §8.16).
    pub federation: FederationConfig,
}

/// Who a UDP core is: the alias shown as its clients' home and the node uid that names it
/// in directory federation (docs/PROTOCOL.md §8.15, §8.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpIdentity {
    /// This server's alias, sent as the home alias in lookup answers (at most 255 bytes of
    /// UTF-8; longer is cut at a character boundary when the server is built). Default
    /// `rendezvous`.
    pub alias: String,
    /// This server's node uid (16 bytes, docs/PROTOCOL.md §8.15): its identity in
    /// directory federation, carried as the home of its clients' records (§8.16). Two
    /// servers with one alias are two homes; only the uid says a record is ours. `None`
    /// (the default) derives one from the boot seed, unique per server start, for a core
    /// without a node key.
    pub node_uid: Option<[u8; 16]>,
}

impl Default for UdpIdentity {
    fn default() -> Self {
        UdpIdentity {
            alias: "rendezvous".to_string(),
            node_uid: None,
        }
    }
}

/// The UDP plane's timers (docs/PROTOCOL.md §5.1, §5.3, §5.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpTimers {
    /// Keepalive interval advised in the OK, seconds (default 25, as WireGuard advises).
    /// The advised value is never more than a third of the TTL.
    pub keepalive_s: u16,
    /// A client not heard from for this long goes offline, milliseconds (default 75 000:
    /// three missed 25 s keepalives).
    pub ttl_ms: u64,
    /// Freshness window for signed packets, seconds either side of the server clock
    /// (default 60).
    pub freshness_s: u64,
    /// An address-check cookie is made under a secret that changes every this many
    /// milliseconds and is accepted for two periods (default 60 000: valid 1-2 minutes).
    pub cookie_period_ms: u64,
}

impl Default for UdpTimers {
    fn default() -> Self {
        UdpTimers {
            keepalive_s: 25,
            ttl_ms: 75_000,
            freshness_s: 60,
            cookie_period_ms: 60_000,
        }
    }
}

/// Bounds of the directory's tables, in entries (docs/PROTOCOL.md §5.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableBounds {
    /// Most clients online at once (directory entries); when full, a client that never
    /// kept alive is evicted, else registration gets 503 (default 1 000 000).
    pub max_clients: usize,
    /// Most offline fingerprints remembered for lookup status 1 (default 1 000 000).
    pub max_offline: usize,
    /// Most verified certificates cached by fingerprint (default 100 000).
    pub max_cert_cache: usize,
    /// Most remote directory entries (clients homed at other servers, learned from peers);
    /// when full, a record for a new fingerprint is refused with 503 and counted, and no
    /// local client is ever evicted for it (default 1 << 20).
    pub max_remote: usize,
}

impl Default for TableBounds {
    fn default() -> Self {
        TableBounds {
            max_clients: 1_000_000,
            max_offline: 1_000_000,
            max_cert_cache: 100_000,
            max_remote: 1 << 20,
        }
    }
}

/// Bounds of the offline relay queues (docs/PROTOCOL.md §5.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBounds {
    /// Most events queued for one offline recipient (default 32).
    pub depth: usize,
    /// Most events one sender may have queued (for all recipients together), so that one
    /// client cannot fill the global limit (default 256).
    pub per_sender: usize,
    /// A queued event is dropped after this many milliseconds (default 600 000: 10
    /// minutes).
    pub age_ms: u64,
    /// Total bytes of queued events across all recipients (default 16 MiB).
    pub bytes: usize,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds {
            depth: 32,
            per_sender: 256,
            age_ms: 600_000,
            bytes: 16 << 20,
        }
    }
}

/// Rate limits of the UDP plane (docs/PROTOCOL.md §5.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Lookup answers to one source IP: bytes per second (token bucket, burst = 1 s;
    /// default 16 KiB).
    pub lookup_bytes_per_s: u32,
    /// Registrations (certificate parsing and signature checks) per second per source
    /// prefix (/24 for IPv4, /64 for IPv6), burst twice that (default 20); an IPv6 /48 as a
    /// whole gets 4 times as many.
    pub register_per_s: u32,
    /// At most one punch request per (asker, target) pair per this many milliseconds
    /// (default 1 000).
    pub punch_interval_ms: u64,
    /// Relayed event bytes to one recipient fingerprint, all senders together: bytes per
    /// second (token bucket, burst twice that; default 16 KiB). Over it: 429.
    pub relay_bytes_per_s: u32,
    /// Most entries in each rate-limit table (per-IP, per-prefix, per-pair); when full, new
    /// sources are refused (fail closed) until idle entries are swept (default 100 000).
    pub max_entries: usize,
    /// Rate limits do not apply to loopback sources (127.0.0.0/8, ::1). Default true.
    pub exempt_loopback: bool,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            lookup_bytes_per_s: 16 * 1024,
            register_per_s: 20,
            punch_interval_ms: 1_000,
            relay_bytes_per_s: 16 * 1024,
            max_entries: 100_000,
            exempt_loopback: true,
        }
    }
}

/// Directory federation on the UDP side (docs/PROTOCOL.md §8.16): how often local clients
/// are re-announced, and the bound of the outbox to the peer servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationConfig {
    /// How often, in milliseconds, the server re-announces (DirRecord kind 2) the local
    /// clients heard from since their last announcement; 0 (the default) or anything over
    /// a third of the TTL means a third of the TTL (see
    /// [`UdpConfig::announce_interval_ms`]).
    pub announce_ms: u64,
    /// Most items (records and forwards for the peer servers) waiting in the core's peer
    /// outbox, besides a 16 MiB bound on their bytes; when full the oldest is dropped
    /// (counted) and the server asks its peers for their directory. The refresh pass fills
    /// at most half and goes on as the loop drains it (default 65 536).
    pub max_peer_out: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            announce_ms: 0,
            max_peer_out: 65_536,
        }
    }
}

impl UdpConfig {
    /// The keepalive interval sent in the OK, seconds: `timers.keepalive_s`, but at most a
    /// third of the TTL, and at least 1.
    pub fn advised_keepalive_s(&self) -> u16 {
        let third = (self.timers.ttl_ms / 3000).max(1);
        u16::try_from(u64::from(self.timers.keepalive_s).min(third).max(1)).unwrap_or(u16::MAX)
    }

    /// The re-announce interval in force, milliseconds: `federation.announce_ms`, but a
    /// third of the TTL when it is 0 or larger than that, and at least 1 (so a remote
    /// entry, which lapses a TTL after its last refresh, gets about three chances).
    pub fn announce_interval_ms(&self) -> u64 {
        let third = (self.timers.ttl_ms / 3).max(1);
        let every = self.federation.announce_ms;
        if every == 0 || every > third {
            third
        } else {
            every
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let c = UdpConfig::default();
        assert_eq!(c.identity.alias, "rendezvous");
        assert_eq!(c.identity.node_uid, None);
        assert!(!c.accept_replayed);
        let t = &c.timers;
        assert_eq!((t.keepalive_s, t.ttl_ms, t.freshness_s), (25, 75_000, 60));
        assert_eq!(t.cookie_period_ms, 60_000);
        let b = &c.tables;
        assert_eq!((b.max_clients, b.max_offline), (1_000_000, 1_000_000));
        assert_eq!((b.max_cert_cache, b.max_remote), (100_000, 1 << 20));
        let q = &c.queue;
        assert_eq!(
            (q.depth, q.per_sender, q.age_ms, q.bytes),
            (32, 256, 600_000, 16 << 20)
        );
        let l = &c.limits;
        assert_eq!((l.lookup_bytes_per_s, l.register_per_s), (16 * 1024, 20));
        assert_eq!((l.punch_interval_ms, l.max_entries), (1_000, 100_000));
        assert!(l.exempt_loopback);
        assert_eq!(
            (c.federation.announce_ms, c.federation.max_peer_out),
            (0, 65_536)
        );
        assert_eq!(
            (c.advised_keepalive_s(), c.announce_interval_ms()),
            (25, 25_000)
        );
    }
}
