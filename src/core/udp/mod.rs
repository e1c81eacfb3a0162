//! The I/O-free UDP plane (docs/PROTOCOL.md §2 to §5, and the directory federation of
//! §8.16): fed `(now, source address, datagram)`, [`UdpCore`] updates the directory and
//! calls `out(destination, bytes)` for each datagram to send. It never reads a clock or
//! touches a socket; the event loop in `net` (or a test) drives it.
//!
//! [`UdpCore`] owns the parts and routes each datagram, peer record and forward through
//! them; each part has one job and is tested alone:
//! - `admission`: the checks of a signed packet, in the order of §5.2, with the
//!   certificate cache and the cookies; `fresh`: the freshness and replay table (§5.3);
//! - `directory`: local clients with their expiry set, offline fingerprints, remote
//!   entries (`remote`), eviction, the digest and directory pages;
//! - `queue`: the offline relay queues (§5.8); `limits`: rate limits (§5.9);
//! - `federation`: the peer outbox, forward ids, the refresh pass schedule (§8.16);
//! - `emit`: the emitter of outgoing datagrams and its size limits (§4.2, §5.5);
//! - `stun`: STUN Binding requests on the same port (§11).
//!
//! What each client datagram does is in `client`, what a peer's record or forward does in
//! `peer`. Invariants: nothing malformed changes state; no reply to a source that has not
//! passed the address check is larger than its request; server-sent packets (params 0x01)
//! and reply types (1, 3, 6, 7, 9) are never answered; every table is bounded. Keepalive
//! and lookup allocate nothing per packet. A fingerprint is local or remote, never both.
//!
//! Replaying captures (docs/PROTOCOL.md §10, `serve --accept-replayed`,
//! [`UdpConfig::accept_replayed`]): the freshness window and the address check are off, so
//! a capture's signed packets work again days later from other source ports. Everything
//! else holds: a registration needs a certificate and a signature that verify, and per
//! fingerprint a signed packet older than the newest accepted, or an exact replay of one
//! accepted, is still 409 (so a capture replayed twice at one server registers nothing
//! the second time). The CLI allows it only on a loopback listener.

mod admission;
mod client;
pub mod config;
pub mod cookie;
mod directory;
mod emit;
mod federation;
mod fresh;
pub mod limits;
mod peer;
pub mod queue;
mod remote;
mod stats;
mod stun;

pub use config::{
    FederationConfig, QueueBounds, RateLimits, TableBounds, UdpConfig, UdpIdentity, UdpTimers,
};
pub use directory::DirectoryPage;
pub use federation::PeerOut;
pub use peer::PeerRecordError;
pub use stats::{
    DatagramStats, EmitStats, FederationStats, LookupResult, LookupStats, QueueStats, Stats,
};

use super::Now;
use crate::wire::status;
use crate::wire::tcp::dir::RecordBody;
use crate::wire::udp::canonical_addr;
use crate::wire::udp::root::PARAM_FROM_SERVER;
use crate::wire::{Fingerprint, PacketType, Root, WireError};
use admission::Admission;
use directory::Directory;
use emit::{wire_detail, Emitter, Req};
use federation::Federation;
use limits::{Buckets, Interval};
use queue::RelayQueues;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};

/// Most datagrams of a batch verified together ([`UdpCore::handle_batch`]).
const MAX_BATCH: usize = 64;

/// How often idle rate-limit entries and stale freshness state are swept, ms.
const SWEEP_EVERY_MS: u64 = 10_000;

/// A view of one client for tests and status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView {
    /// The client's public (reflexive) address.
    pub addr: SocketAddr,
    /// Milliseconds since it was last heard from.
    pub age_ms: u64,
    /// Its shifted layout length, if it registered shifted.
    pub shift: Option<u8>,
}

/// A view of one remote entry (a client homed at another server), for tests and status
/// (docs/PROTOCOL.md §8.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteView<'a> {
    /// The client's public (reflexive) address as its home server saw it.
    pub addr: SocketAddr,
    /// Milliseconds since its home server last heard from it, as far as we know.
    pub age_ms: u64,
    /// The home server's alias (at most 255 bytes).
    pub home: &'a str,
    /// Unix seconds: the signed timestamp of the registration held.
    pub timestamp: u64,
    /// Hops of the record that installed the entry (0: straight from its home).
    pub hops: u8,
}

/// The signature checks of a batch of registrations (docs/PROTOCOL.md §5.2, "Batch
/// verification"): gathered by [`UdpCore::gather_batch`], checked by [`Self::verify`]
/// (no server state: a worker runs it without the UDP plane's lock), used by
/// [`UdpCore::handle_verified`]. The default has none: for a batch without registrations.
#[derive(Debug, Default)]
pub struct BatchChecks(admission::Prepass);

impl BatchChecks {
    /// Whether `batch` has a datagram whose type byte says registration: only then can
    /// [`UdpCore::gather_batch`] find anything to check (a peek at one byte each, no
    /// parse).
    pub fn wanted(batch: &[(SocketAddr, &[u8])]) -> bool {
        let register = Some(PacketType::Register);
        batch.iter().any(|(_, d)| Root::peek_type(d) == register)
    }

    /// Checks every gathered signature: a first registration's two (the certificate's
    /// self-signature and the packet's) in one Ed25519 batch when there are at least two
    /// such registrations, else (or when the batch fails) each alone with ring; a
    /// re-registration's one, with the cached certificate's key, alone. About 20 us a
    /// signature in a batch on this machine (docs/CAPACITY.md).
    pub fn verify(&mut self) {
        self.0.verify();
    }
}

/// Where the core's datagrams go: `out(destination, bytes)`.
pub type Out<'a> = dyn FnMut(SocketAddr, &[u8]) + 'a;

/// The rendezvous server's UDP plane, free of I/O: the owner of the parts.
pub struct UdpCore {
    cfg: UdpConfig,
    /// Sent in every OK; changes on each start.
    boot_epoch: u32,
    directory: Directory,
    admission: Admission,
    queues: RelayQueues,
    /// Lookup answer bytes per source IP (docs/PROTOCOL.md §5.6).
    lookup_budget: Buckets<IpAddr>,
    /// Relayed event bytes per recipient (docs/PROTOCOL.md §5.9).
    relay_budget: Buckets<Fingerprint>,
    /// One punch request per (asker, target) per interval.
    punch_pairs: Interval<(Fingerprint, Fingerprint)>,
    /// When rate tables and freshness state are next swept, monotonic ms.
    next_sweep_ms: u64,
    emitter: Emitter,
    federation: Federation,
    counters: DatagramStats,
}

/// The independent values a server derives from its 32-byte seed. The boot epoch and the
/// junk of shifted replies are visible on the wire, so the cookie key shares no bits with
/// them (docs/PROTOCOL.md §5.1).
struct Seeds {
    boot_epoch: u32,
    junk: u64,
    cookie_key: [u8; 32],
    forward_ids: u64,
    node_uid: [u8; 16],
}

impl Seeds {
    fn derive(seed: [u8; 32]) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(label);
            h.finalize().into()
        };
        let u64_of =
            |d: [u8; 32]| u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let e = derive(b"boot epoch");
        Seeds {
            boot_epoch: u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            junk: u64_of(derive(b"shift junk")) | 1,
            cookie_key: derive(b"address-check cookie"),
            forward_ids: u64_of(derive(b"forward ids")),
            node_uid: derive(b"node uid")[..16].try_into().unwrap_or_default(),
        }
    }
}

impl UdpCore {
    /// A server with `cfg`, starting at `now`. `seed` (32 random bytes from the OS) keys the
    /// address-check cookies and picks the boot epoch, the junk of shifted replies and the
    /// start of the forward ids (and the node uid, when `cfg` gives none).
    pub fn new(cfg: UdpConfig, seed: [u8; 32], now: Now) -> Self {
        let seeds = Seeds::derive(seed);
        let uid = cfg.identity.node_uid.unwrap_or(seeds.node_uid);
        UdpCore {
            boot_epoch: seeds.boot_epoch,
            directory: Directory::new(&cfg, uid),
            admission: Admission::new(&cfg, seeds.cookie_key),
            queues: RelayQueues::new(
                cfg.queue.depth,
                cfg.queue.per_sender,
                cfg.queue.age_ms,
                cfg.queue.bytes,
            ),
            lookup_budget: Buckets::new(
                cfg.limits.lookup_bytes_per_s,
                cfg.limits.lookup_bytes_per_s,
                cfg.limits.max_entries,
            ),
            relay_budget: Buckets::new(
                cfg.limits.relay_bytes_per_s,
                cfg.limits.relay_bytes_per_s.saturating_mul(2),
                cfg.limits.max_entries,
            ),
            punch_pairs: Interval::new(cfg.limits.punch_interval_ms, cfg.limits.max_entries),
            next_sweep_ms: now.mono_ms + SWEEP_EVERY_MS,
            emitter: Emitter::new(seeds.junk),
            federation: Federation::new(&cfg, seeds.forward_ids, now),
            counters: DatagramStats::default(),
            cfg,
        }
    }

    /// Takes new rate limits, a new bound of local clients and new relay-queue bounds
    /// while running (a reload, docs/PROTOCOL.md §7, "Reload"): the directory, the queued
    /// events and every source's rate state stay; the new values apply from the next
    /// datagram. `limits.max_entries` and `limits.exempt_loopback` are kept as they were
    /// (fixed at start).
    pub fn set_limits(&mut self, limits: RateLimits, max_clients: usize, queue: QueueBounds) {
        let kept = (self.cfg.limits.max_entries, self.cfg.limits.exempt_loopback);
        self.cfg.limits = RateLimits {
            max_entries: kept.0,
            exempt_loopback: kept.1,
            ..limits
        };
        self.cfg.tables.max_clients = max_clients;
        self.cfg.queue = queue;
        let (l, q) = (&self.cfg.limits, &self.cfg.queue);
        self.lookup_budget
            .set_rate(l.lookup_bytes_per_s, l.lookup_bytes_per_s);
        self.relay_budget
            .set_rate(l.relay_bytes_per_s, l.relay_bytes_per_s.saturating_mul(2));
        self.punch_pairs.set_interval(l.punch_interval_ms);
        self.queues
            .set_bounds(q.depth, q.per_sender, q.age_ms, q.bytes);
        self.directory.set_max_clients(max_clients);
        self.admission.set_limits(&self.cfg);
    }

    /// The configuration in force.
    pub fn config(&self) -> &UdpConfig {
        &self.cfg
    }

    /// The boot epoch sent in every OK (changes on each start).
    pub fn boot_epoch(&self) -> u32 {
        self.boot_epoch
    }

    /// Counters so far, gathered from the parts that keep them.
    pub fn stats(&self) -> Stats {
        Stats {
            datagrams: self.counters.clone(),
            emitted: self.emitter.stats().clone(),
            federation: self.federation.stats.clone(),
            queue: QueueStats {
                events: self.queues.len() as u64,
                bytes: self.queues.bytes() as u64,
                evicted: self.queues.evicted(),
                expired: self.queues.expired(),
            },
        }
    }

    /// Number of local clients online (registered here; remote entries not counted, see
    /// [`Self::remote_online`]).
    pub fn online(&self) -> usize {
        self.directory.len()
    }

    /// Number of sources bound by unlisted registrations (docs/PROTOCOL.md §5.2; lapsed
    /// ones count until the next sweep, every 10 s).
    pub fn unlisted(&self) -> usize {
        self.directory.unlisted_len()
    }

    /// Number of remote entries: clients homed at other servers, learned from peers
    /// (docs/PROTOCOL.md §8.16; bounded by [`TableBounds::max_remote`]).
    pub fn remote_online(&self) -> usize {
        self.directory.remote().len()
    }

    /// The remote entry of `fp` (a client homed at another server), if held.
    pub fn remote(&self, fp: &Fingerprint, now: Now) -> Option<RemoteView<'_>> {
        self.directory.remote().get(fp).map(|r| RemoteView {
            addr: r.addr,
            age_ms: now.mono_ms.saturating_sub(r.last_seen_ms),
            home: &r.home,
            timestamp: r.ts,
            hops: r.hops,
        })
    }

    /// The local directory entry of `fp`, if online here (see [`Self::remote`] for clients
    /// homed elsewhere).
    pub fn client(&self, fp: &Fingerprint, now: Now) -> Option<ClientView> {
        self.directory.client(fp).map(|c| ClientView {
            addr: c.addr,
            age_ms: now.mono_ms.saturating_sub(c.last_seen_ms),
            shift: c.shift,
        })
    }

    /// The directory's canonical digest: `(online clients, SHA-512)` over the entries, local
    /// and remote, sorted by fingerprint, each `[fingerprint 32][family u8][addr 4|16][port
    /// u16]` (IPv4-mapped addresses as IPv4), so two federated servers that agree have equal
    /// digests (docs/PROTOCOL.md §8.16, "Digest"). For `rendezvous status`; O(n log n), not
    /// a hot path.
    pub fn directory_digest(&self) -> (u64, [u8; 64]) {
        self.directory.digest()
    }

    /// Appends to `out` up to `max` complete frames `[16][len u16][DirRecord body]`, kind-1
    /// records of the directory's entries (local ones with hops 0 and our alias, remote
    /// ones with their stored hops + 1, at most 16, and their home's alias) whose
    /// fingerprint is greater than `after`, in ascending fingerprint order; ages are taken
    /// at `now`. Returns the last fingerprint of the page (`None` when it is empty), whether
    /// entries remain after it, and how many frames were written. Call again with
    /// that fingerprint as `after` to go on. O(n
    /// log max) per page; allocates only the page's list of fingerprints and `out`'s growth.
    /// Source: docs/PROTOCOL.md §8.16, "Full directory (DirRequest 17)".
    pub fn directory_page(
        &self,
        now: Now,
        after: Option<Fingerprint>,
        max: usize,
        out: &mut Vec<u8>,
    ) -> DirectoryPage {
        self.directory.page(now, after, max, None, out)
    }

    /// As [`Self::directory_page`], of the entries whose fingerprints are in `only`
    /// (a push after a reconciliation, docs/PROTOCOL.md §8.20).
    pub fn directory_page_of(
        &self,
        now: Now,
        after: Option<Fingerprint>,
        max: usize,
        only: &std::collections::HashSet<[u8; 32]>,
        out: &mut Vec<u8>,
    ) -> DirectoryPage {
        self.directory.page(now, after, max, Some(only), out)
    }

    /// Every directory entry's `(timestamp, id, fingerprint)`, local and remote, for a
    /// reconciliation of directories (docs/PROTOCOL.md §8.20): the id is
    /// [`crate::federation::reconcile::dir_record_id`]. O(n), one SHA-256 of 75 bytes an
    /// entry; 68 bytes an entry returned.
    pub fn directory_ids(&self) -> Vec<crate::federation::reconcile::DirItem> {
        self.directory.ids()
    }

    /// Events queued for `fp`.
    pub fn queued_for(&self, fp: &Fingerprint) -> usize {
        self.queues.len_for(fp)
    }

    /// The next item for the peer servers, oldest first (a pending
    /// [`PeerOut::WantDirectory`] comes before the rest); `None` when the outbox is empty.
    /// The outbox holds at most [`FederationConfig::max_peer_out`] items and 16 MiB of
    /// bodies; past that the oldest is dropped (counted in
    /// [`FederationStats::peer_out_dropped`]) and a resync is asked for. The loop should
    /// drain it after every call into the core, also when it has no peer link. Source:
    /// docs/PROTOCOL.md §8.16, "Outbox".
    pub fn poll_peer_out(&mut self) -> Option<PeerOut> {
        self.federation.poll()
    }

    /// True when [`Self::poll_peer_out`] has an item: the loop's UDP workers tell the TCP
    /// loop, which routes it (docs/PROTOCOL.md §7, "Workers").
    pub fn peer_out_pending(&self) -> bool {
        self.federation.pending()
    }

    /// The next monotonic time (ms) at which [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.directory.next_deadline(),
            self.queues.next_deadline(),
            self.federation.next_deadline(),
            Some(self.next_sweep_ms),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Expires clients past their TTL (each leaves an expiry record for the peers), lets
    /// remote entries lapse past their deadline (no record), re-announces local clients
    /// heard from since their last announcement (refresh records, every
    /// [`UdpConfig::announce_interval_ms`]), drops queued events past their age and sweeps
    /// idle rate-limit entries and lapsed unlisted bindings (docs/PROTOCOL.md §5.2, §5.10,
    /// §8.16).
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some((fp, c)) = self.directory.pop_expired(now) {
            self.counters.expired += 1;
            tracing::debug!(fingerprint = %fp, "client expired: no keepalive within the TTL");
            self.federation
                .push_record(&c.record(now, fp, RecordBody::Expiry));
        }
        while self.directory.pop_remote_expired(now).is_some() {
            self.federation.stats.remote_expired += 1;
        }
        if self.federation.refresh_due(now) {
            let federation = &mut self.federation;
            let finished = self
                .directory
                .refresh_pass(now, |rec| federation.push_bulk_record(rec));
            federation.refresh_done(now, finished);
        }
        self.queues.purge(now.mono_ms);
        if now.mono_ms >= self.next_sweep_ms {
            self.next_sweep_ms = now.mono_ms + SWEEP_EVERY_MS;
            self.lookup_budget.sweep(now.mono_ms);
            self.relay_budget.sweep(now.mono_ms);
            self.punch_pairs.sweep(now.mono_ms);
            self.admission.sweep(now);
            self.directory.sweep_unlisted(now);
        }
    }

    /// Handles one datagram from `src` at `now`; each datagram to send is passed to `out`.
    /// Routes it by type to `client`'s handlers (docs/PROTOCOL.md §3); refuses what cannot
    /// be read (400, 413) and drops what must get no answer (§4.2).
    pub fn handle_datagram(&mut self, now: Now, src: SocketAddr, data: &[u8], out: &mut Out<'_>) {
        self.counters.datagrams_in += 1;
        let src = canonical_addr(src);
        // STUN first (docs/PROTOCOL.md §11.1): such a datagram is never a Root packet.
        if self.stun(now, src, data, out) {
            return;
        }
        let limit = emit::reply_limit(self.directory.is_bound(now, &src), data.len());
        // Never answer a server, nor anything that could be a reply (no error ping-pong).
        let from_server = data.first().is_some_and(|p| p & PARAM_FROM_SERVER != 0);
        let root = match Root::parse(data) {
            Ok(r) => r,
            Err(_) if from_server => return self.emitter.drop_one(),
            Err(e) => {
                let code = if e == WireError::TooLarge {
                    status::PAYLOAD_TOO_LARGE
                } else {
                    status::BAD_REQUEST
                };
                let req = Req {
                    src,
                    shift: None,
                    limit,
                    ty: 0xFF,
                };
                return self.emitter.refuse(out, req, code, wire_detail(e));
            }
        };
        if root.from_server() || root.packet_type.is_reply() {
            return self.emitter.drop_one();
        }
        let req = Req {
            src,
            shift: root.shift_len,
            limit,
            ty: u8::from(root.packet_type),
        };
        match root.packet_type {
            PacketType::Keepalive => self.keepalive(now, req, data.len(), out),
            PacketType::Register => self.register(now, req, &root, out),
            PacketType::Relay => self.relay(now, req, &root, out),
            PacketType::Lookup => self.lookup(now, req, &root, out),
            PacketType::Fetch => self.fetch(now, req, &root, out),
            _ => self
                .emitter
                .refuse(out, req, status::BAD_REQUEST, "unknown packet type"),
        }
    }

    /// The first step of a batch of datagrams `(source, bytes)` received together at
    /// `now`, taken under the loop's lock: picks the registrations that pass the window,
    /// the cookie and, as a guess, the rate (Ed25519 ones whose certificate is not cached,
    /// and any whose certificate is) and returns their signatures to check. [`BatchChecks::verify`] then checks
    /// them without the lock, and [`Self::handle_verified`] handles the batch with the
    /// verdicts (docs/PROTOCOL.md §5.2, "Batch verification", and §7, "Workers"). Reads
    /// the admission state; changes nothing. Allocates only for registrations.
    pub fn gather_batch(&mut self, now: Now, batch: &[(SocketAddr, &[u8])]) -> BatchChecks {
        BatchChecks(self.admission.gather_batch(now, batch))
    }

    /// Handles `batch`, the same datagrams [`Self::gather_batch`] was given at the same
    /// `now`, in order, with the verdicts of `checks` (verified): exactly as
    /// [`Self::handle_datagram`] one at a time would, same datagrams to `out`, same state.
    /// The state may have changed since the gathering (another worker's batch): a verdict
    /// depends only on the datagram's bytes and `now`, so it still holds.
    pub fn handle_verified(
        &mut self,
        now: Now,
        batch: &[(SocketAddr, &[u8])],
        checks: BatchChecks,
        out: &mut Out<'_>,
    ) {
        self.admission.put_batch(checks.0);
        for (i, &(src, data)) in batch.iter().enumerate() {
            self.admission.batch_at(i);
            self.handle_datagram(now, src, data, out);
        }
        self.admission.end_batch();
    }

    /// Handles datagrams `(source, bytes)` received together at `now` (a recvmmsg batch),
    /// in order, exactly as [`Self::handle_datagram`] one at a time would: same datagrams
    /// to `out`, same state. Taken in chunks of up to 64; in each, the Ed25519
    /// registrations whose certificate is not cached have their certificate and packet
    /// signatures verified together first (docs/PROTOCOL.md §5.2, "Batch verification"):
    /// [`Self::gather_batch`], [`BatchChecks::verify`] and [`Self::handle_verified`] in
    /// one call. A chunk without registrations costs one pass over its type bytes and
    /// allocates nothing.
    pub fn handle_batch<'d>(
        &mut self,
        now: Now,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'d [u8])>,
        out: &mut Out<'_>,
    ) {
        let none = (SocketAddr::from(([0, 0, 0, 0], 0)), &[][..]);
        let mut chunk = [none; MAX_BATCH];
        let mut datagrams = datagrams.into_iter();
        loop {
            let mut n = 0;
            for (slot, d) in chunk.iter_mut().zip(datagrams.by_ref()) {
                *slot = d;
                n += 1;
            }
            let chunk = &chunk[..n];
            let mut checks = self.gather_batch(now, chunk);
            checks.verify();
            self.handle_verified(now, chunk, checks, out);
            if n < MAX_BATCH {
                return;
            }
        }
    }

    /// Takes local client `fp` out of the directory (TTL, eviction, its address taken by
    /// another fingerprint) and tells the peers with an expiry record.
    fn go_offline(&mut self, now: Now, fp: Fingerprint) {
        if let Some(c) = self.directory.go_offline(now, fp) {
            self.federation
                .push_record(&c.record(now, fp, RecordBody::Expiry));
        }
    }
}
