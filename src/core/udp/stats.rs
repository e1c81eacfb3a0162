//! Counters of the UDP core, one group per part that keeps them: what client datagrams did
//! ([`DatagramStats`], with lookups by result in [`LookupStats`]), what the emitter sent or
//! dropped ([`EmitStats`]), what came from and went to the peer servers
//! ([`FederationStats`]), and the offline relay queues ([`QueueStats`]). For logs, metrics
//! (docs/METRICS.md) and tests. Plain integers and fixed arrays: counting allocates nothing.

use crate::wire::status;

/// Counters of what the core has seen and done, by part ([`super::UdpCore::stats`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Client datagrams and what they did to the directory.
    pub datagrams: DatagramStats,
    /// Datagrams sent, dropped and refused with an error.
    pub emitted: EmitStats,
    /// DirRecords and Forwards in from and out to the peer servers.
    pub federation: FederationStats,
    /// The offline relay queues: what they hold now and what they dropped.
    pub queue: QueueStats,
}

/// The offline relay queues (docs/PROTOCOL.md §5.8).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Events queued now.
    pub events: u64,
    /// Event bytes queued now.
    pub bytes: u64,
    /// Events evicted to make room for a sender with a smaller share.
    pub evicted: u64,
    /// Events dropped undelivered because they outlived their age.
    pub expired: u64,
}

/// What a lookup found (docs/PROTOCOL.md §5.6): the index into [`LookupStats::results`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    /// Online here.
    Online = 0,
    /// Online at another server (a remote entry).
    Remote = 1,
    /// Known here and offline.
    Offline = 2,
    /// Not known.
    Unknown = 3,
}

impl LookupResult {
    /// Every result, in index order.
    pub const ALL: [LookupResult; 4] = [
        LookupResult::Online,
        LookupResult::Remote,
        LookupResult::Offline,
        LookupResult::Unknown,
    ];

    /// Its name (a metric label value).
    pub fn label(self) -> &'static str {
        match self {
            LookupResult::Online => "online",
            LookupResult::Remote => "remote",
            LookupResult::Offline => "offline",
            LookupResult::Unknown => "unknown",
        }
    }
}

/// Lookups answered by result, and the punch requests they caused (docs/PROTOCOL.md §5.6).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LookupStats {
    /// Answers sent, indexed by [`LookupResult`].
    pub results: [u64; 4],
    /// Punch requests sent to a target online here.
    pub punches_sent: u64,
    /// Punch requests forwarded to the target's home server.
    pub punches_forwarded: u64,
}

/// What client datagrams did (docs/PROTOCOL.md §3, §5).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DatagramStats {
    /// Datagrams handled.
    pub datagrams_in: u64,
    /// Accepted registrations.
    pub registrations: u64,
    /// Keepalives that refreshed a client.
    pub keepalives: u64,
    /// Lookups answered.
    pub lookups: u64,
    /// Events relayed at once to an online client (also those delivered from a peer's
    /// Forward).
    pub relayed: u64,
    /// Events queued for an offline recipient (also those from a peer's Forward).
    pub queued: u64,
    /// Queued events delivered.
    pub delivered: u64,
    /// Cookie challenges (type 9) sent.
    pub cookies_sent: u64,
    /// Clients expired by the TTL.
    pub expired: u64,
    /// STUN Binding requests answered (docs/PROTOCOL.md §11).
    pub stun_answered: u64,
    /// STUN datagrams dropped unanswered: malformed, not a Binding request, over the
    /// budget, or an RFC 3489 request with attributes not acted on (docs/PROTOCOL.md §11).
    pub stun_dropped: u64,
    /// Lookups by result, and punch requests.
    pub lookup: LookupStats,
}

/// What the emitter of outgoing datagrams did (docs/PROTOCOL.md §4, §5.5).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EmitStats {
    /// Datagrams sent (replies, events, punch requests).
    pub datagrams_out: u64,
    /// Packets dropped without an answer (server-sent, reply types, budgets, too small to
    /// answer, a full queue for a peer's Forward).
    pub dropped: u64,
    /// Error replies sent, by status: 400, 401, 403, 404, 409, 413, 429, 503 (named in
    /// [`EmitStats::ERROR_REASONS`]).
    pub errors: [u64; 8],
}

/// What came from and went to the peer servers (docs/PROTOCOL.md §8.16).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FederationStats {
    /// DirRecord bodies handed to [`super::UdpCore::apply_peer_record`].
    pub peer_records_in: u64,
    /// Peer records that changed the directory (and were passed on).
    pub peer_records_applied: u64,
    /// Peer records refused with an error (400, 401, 503).
    pub peer_records_refused: u64,
    /// Peer records refused because the remote table was full (also in
    /// `peer_records_refused`).
    pub remote_full: u64,
    /// Forward bodies handed to [`super::UdpCore::handle_forward`] (refused ones included).
    pub forwards_in: u64,
    /// Forwards put in the peer outbox (made here or passed on).
    pub forwards_out: u64,
    /// Forwards delivered to a local client here (sent, or queued while it is offline).
    pub forwards_delivered: u64,
    /// Forwards dropped as copies of one already seen (same id).
    pub forwards_duplicate: u64,
    /// Remote entries that lapsed: no refresh from their home within the TTL.
    pub remote_expired: u64,
    /// Peer outbox items dropped (the oldest first) because the outbox was full.
    pub peer_out_dropped: u64,
}

impl EmitStats {
    /// The reason of each slot of [`Self::errors`] (a metric label value), in order.
    pub const ERROR_REASONS: [&'static str; 8] = [
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "conflict",
        "too_large",
        "rate_limited",
        "unavailable",
    ];

    /// Counts one error reply with status `code` (anything unknown counts as 503).
    pub(super) fn count_error(&mut self, code: u16) {
        let i = match code {
            status::BAD_REQUEST => 0,
            status::UNAUTHORIZED => 1,
            status::FORBIDDEN => 2,
            status::NOT_FOUND => 3,
            status::CONFLICT => 4,
            status::PAYLOAD_TOO_LARGE => 5,
            status::TOO_MANY_REQUESTS => 6,
            _ => 7,
        };
        self.errors[i] += 1;
    }
}
