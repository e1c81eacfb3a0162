//! Tunables of the UDP core, with the defaults of docs/PROTOCOL.md §5 (rate limits §5.9,
//! TTL §5.10, table bounds §5.11) and §8.16 (federation). Every table and queue bound
//! lives here.

/// Configuration of a [`super::UdpCore`]. Times are milliseconds unless the name says `_s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// This server's alias, sent as the home alias in lookup answers (at most 255 bytes of
    /// UTF-8; longer is cut at a character boundary when the server is built).
    pub alias: String,
    /// This server's node uid (16 bytes, docs/PROTOCOL.md §8.15): its identity in
    /// directory federation, carried as the home of its clients' records (§8.16). Two
    /// servers with one alias are two homes; only the uid says a record is ours. `None`
    /// (the default) derives one from the boot seed, unique per server start, for a core
    /// without a node key.
    pub node_uid: Option<[u8; 16]>,
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
    /// Keepalive interval advised in the OK, seconds (default 25, as WireGuard advises).
    /// The advised value is never more than a third of the TTL.
    pub keepalive_s: u16,
    /// A client not heard from for this long goes offline (default 75 000 ms: three missed
    /// 25 s keepalives).
    pub ttl_ms: u64,
    /// Freshness window for signed packets, seconds either side of the server clock (60).
    pub freshness_s: u64,
    /// An address-check cookie is made under a secret that changes every this many
    /// milliseconds and is accepted for two periods (default 60 000: valid 1-2 minutes).
    pub cookie_period_ms: u64,
    /// Most clients online at once (directory entries); when full, a client that never
    /// kept alive is evicted, else registration gets 503.
    pub max_clients: usize,
    /// Most offline fingerprints remembered for lookup status 1.
    pub max_offline: usize,
    /// Most verified certificates cached by fingerprint.
    pub max_cert_cache: usize,
    /// Most events queued for one offline recipient.
    pub queue_depth: usize,
    /// Most events one sender may have queued (for all recipients together), so that one
    /// client cannot fill the global limit.
    pub queue_per_sender: usize,
    /// A queued event is dropped after this many milliseconds (default 10 minutes).
    pub queue_age_ms: u64,
    /// Total bytes of queued events across all recipients (default 16 MiB).
    pub queue_bytes: usize,
    /// Lookup answers to one source IP: bytes per second (token bucket, burst = 1 s).
    pub lookup_bytes_per_s: u32,
    /// Registrations (certificate parsing and signature checks) per second per source
    /// prefix (/24 for IPv4, /64 for IPv6), burst twice that.
    pub register_per_s: u32,
    /// At most one punch request per (asker, target) pair per this many milliseconds.
    pub punch_interval_ms: u64,
    /// Most entries in each rate-limit table (per-IP, per-prefix, per-pair); when full, new
    /// sources are refused (fail closed) until idle entries are swept.
    pub max_rate_entries: usize,
    /// Rate limits do not apply to loopback sources (127.0.0.0/8, ::1).
    pub exempt_loopback: bool,
    /// Most remote directory entries (clients homed at other servers, learned from peers);
    /// when full, a record for a new fingerprint is refused with 503 and counted, and no
    /// local client is ever evicted for it (default 1 << 20).
    pub max_remote: usize,
    /// How often, in milliseconds, the server re-announces (DirRecord kind 2) the local
    /// clients heard from since their last announcement; 0 (the default) or anything over
    /// a third of `ttl_ms` means a third of `ttl_ms` (see [`UdpConfig::announce_interval_ms`]).
    pub announce_ms: u64,
    /// Most items (records and forwards for the peer servers) waiting in the core's peer
    /// outbox, besides a 16 MiB bound on their bytes; when full the oldest is dropped
    /// (counted) and the server asks its peers for their directory. The refresh pass fills
    /// at most half and goes on as the loop drains it (default 65 536).
    pub max_peer_out: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            alias: "rendezvous".to_string(),
            node_uid: None,
            accept_replayed: false,
            keepalive_s: 25,
            ttl_ms: 75_000,
            freshness_s: 60,
            cookie_period_ms: 60_000,
            max_clients: 1_000_000,
            max_offline: 1_000_000,
            max_cert_cache: 100_000,
            queue_depth: 32,
            queue_per_sender: 256,
            queue_age_ms: 600_000,
            queue_bytes: 16 << 20,
            lookup_bytes_per_s: 16 * 1024,
            register_per_s: 20,
            punch_interval_ms: 1_000,
            max_rate_entries: 100_000,
            exempt_loopback: true,
            max_remote: 1 << 20,
            announce_ms: 0,
            max_peer_out: 65_536,
        }
    }
}

impl UdpConfig {
    /// The keepalive interval sent in the OK, seconds: `keepalive_s`, but at most a third of
    /// the TTL, and at least 1.
    pub fn advised_keepalive_s(&self) -> u16 {
        let third = (self.ttl_ms / 3000).max(1);
        u16::try_from(u64::from(self.keepalive_s).min(third).max(1)).unwrap_or(u16::MAX)
    }

    /// The re-announce interval in force, milliseconds: `announce_ms`, but a third of the
    /// TTL when it is 0 or larger than that, and at least 1 (so a remote entry, which lapses
    /// a TTL after its last refresh, gets about three chances).
    pub fn announce_interval_ms(&self) -> u64 {
        let third = (self.ttl_ms / 3).max(1);
        if self.announce_ms == 0 || self.announce_ms > third {
            third
        } else {
            self.announce_ms
        }
    }
}
