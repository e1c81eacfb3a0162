//! Counters of the UDP core, one group per part that keeps them: what client datagrams did
//! ([`DatagramStats`]), what the emitter sent or dropped ([`EmitStats`]), and what came
//! from and went to the peer servers ([`FederationStats`]). For logs, metrics and tests.

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
}

/// What the emitter of outgoing datagrams did (docs/PROTOCOL.md §4, §5.5).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EmitStats {
    /// Datagrams sent (replies, events, punch requests).
    pub datagrams_out: u64,
    /// Packets dropped without an answer (server-sent, reply types, budgets, too small to
    /// answer, a full queue for a peer's Forward).
    pub dropped: u64,
    /// Error replies sent, by status: 400, 401, 403, 404, 409, 413, 429, 503.
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
