//! The I/O-free UDP server: fed `(now, source address, datagram)`, it updates the
//! directory and calls `out(destination, bytes)` for each datagram to send. It never reads
//! a clock or touches a socket; the event loop in `net` (or a test) drives it.
//!
//! Invariants: nothing malformed changes state; no reply to a source that has not passed
//! the address check is larger than its request; server-sent packets (params 0x01) and
//! reply types (1, 3, 6, 7, 9) are never answered; every table is bounded. Keepalive and
//! lookup allocate nothing per packet. Source: BRIEF.md, "UDP plane".
//!
//! Federation (BRIEF.md, "TCP plane", "Federation of the fingerprint directory"): the
//! directory also holds remote entries (clients homed at other servers) learned through
//! [`UdpCore::apply_peer_record`]; local changes, and every peer record that changed
//! something, come out of [`UdpCore::poll_peer_out`] for the TCP plane to flood; punch
//! requests and relayed events for remote clients leave as forwards toward their home and
//! arrive through [`UdpCore::handle_forward`]. A fingerprint is local or remote, never both.
//!
//! Replaying captures (issue 5, `serve --accept-replayed`, [`UdpConfig::accept_replayed`]):
//! the freshness window and the address check are off, so a capture's signed packets work
//! again days later from other source ports. Everything else holds: a registration needs a
//! certificate and a signature that verify, and per fingerprint a signed packet older than
//! the newest accepted, or an exact replay of one accepted, is still 409 (so a capture
//! replayed twice at one server registers nothing the second time). The CLI allows it only
//! on a loopback listener.

mod admission;
pub mod config;
pub mod cookie;
mod emit;
mod federation;
mod fresh;
pub mod limits;
pub mod queue;
mod remote;
mod stats;

pub use config::UdpConfig;
pub use federation::PeerOut;
pub use stats::{DatagramStats, EmitStats, FederationStats, Stats};

use super::status;
use super::Now;
use crate::identity::{self, VerifyingKey};
use crate::wire::dir::{
    DirRecord, Forward, ForwardBody, RecordBody, Registration, CMD_DIR_RECORD, FRAME_HEADER_LEN,
    MAX_FORWARD_HOPS, MAX_RECORD_HOPS,
};
use crate::wire::root::{MAX_DATAGRAM, PARAM_FROM_SERVER};
use crate::wire::udp::{
    canonical_addr, cut_utf8, parse_lookup, LookupAnswer, LookupStatus, OkInfo, Payload, Register,
    Relay, ServerEvent,
};
use crate::wire::{Fingerprint, PacketType, Root, WireError};
use admission::{Admission, Admitted, Rejected};
use emit::{wire_detail, Emitter, Req};
use federation::Federation;
use limits::{Buckets, Interval};
use queue::{QueueError, RelayQueues};
use remote::{Remote, RemoteTable, Signed};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

/// One online client in the directory.
#[derive(Debug, Clone)]
struct Client {
    addr: SocketAddr,
    last_seen_ms: u64,
    deadline_ms: u64,
    shift: Option<u8>,
    kept_alive: bool,
    key: VerifyingKey,
    /// The signed timestamp of the registration held (Unix s).
    ts: u64,
    /// That registration's signature and payload, for records and directory pages.
    signed: Signed,
    /// `last_seen_ms` as last announced to peers (registration or refresh record).
    announced_ms: u64,
}

const SWEEP_EVERY_MS: u64 = 10_000;
/// A refresh that moves a remote entry's last-seen time by less than this changes nothing
/// worth passing on.
const REFRESH_STEP_MS: u64 = 1000;

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
/// (BRIEF.md, "TCP plane", federation of the directory).
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

/// Why a peer's DirRecord or Forward body was refused; nothing changed. `status` is one of
/// the HTTP-like codes of [`status`]: 400 malformed (or too many hops, or a fingerprint that
/// is not the certificate's), 401 bad certificate or signature, 503 remote table full.
/// Source: BRIEF.md, "TCP plane" (status codes as on the UDP plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status} {detail}")]
pub struct PeerRecordError {
    /// HTTP-like status code (400, 401 or 503).
    pub status: u16,
    /// What was wrong, for logs and status frames (at most 255 bytes).
    pub detail: &'static str,
}

fn peer_err(status: u16, detail: &'static str) -> PeerRecordError {
    PeerRecordError { status, detail }
}

/// The rendezvous server's UDP plane, free of I/O.
pub struct UdpCore {
    cfg: UdpConfig,
    alias: String,
    boot_epoch: u32,
    clients: HashMap<Fingerprint, Client>,
    by_addr: HashMap<SocketAddr, Fingerprint>,
    expiry: BTreeSet<(u64, Fingerprint)>,
    offline: HashMap<Fingerprint, u64>,
    admission: Admission,
    queues: RelayQueues,
    lookup_budget: Buckets<std::net::IpAddr>,
    punch_pairs: Interval<(Fingerprint, Fingerprint)>,
    next_sweep_ms: u64,
    emitter: Emitter,
    counters: DatagramStats,
    remote: RemoteTable,
    federation: Federation,
}

/// Where the core's datagrams go: `out(destination, bytes)`.
pub type Out<'a> = dyn FnMut(SocketAddr, &[u8]) + 'a;

impl UdpCore {
    /// A server with `cfg`, starting at `now`. `seed` (32 random bytes from the OS) keys the
    /// address-check cookies and picks the boot epoch and the junk of shifted replies.
    pub fn new(cfg: UdpConfig, seed: [u8; 32], now: Now) -> Self {
        let alias = cut_utf8(&cfg.alias, 255).to_string();
        // Independent values from the seed: the epoch and the junk of shifted replies are
        // visible on the wire, so the cookie key must share no bits with them.
        let derive = |label: &[u8]| {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(label);
            let d: [u8; 32] = h.finalize().into();
            d
        };
        let e = derive(b"boot epoch");
        let boot_epoch = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let j = derive(b"shift junk");
        let junk = u64::from_be_bytes([j[0], j[1], j[2], j[3], j[4], j[5], j[6], j[7]]) | 1;
        let cookie_key = derive(b"address-check cookie");
        let f = derive(b"forward ids");
        let forward_state = u64::from_be_bytes([f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]]);
        let cap = cfg.max_clients.min(1 << 16);
        UdpCore {
            admission: Admission::new(&cfg, cookie_key),
            queues: RelayQueues::new(
                cfg.queue_depth,
                cfg.queue_per_sender,
                cfg.queue_age_ms,
                cfg.queue_bytes,
            ),
            lookup_budget: Buckets::new(
                cfg.lookup_bytes_per_s,
                cfg.lookup_bytes_per_s,
                cfg.max_rate_entries,
            ),
            punch_pairs: Interval::new(cfg.punch_interval_ms, cfg.max_rate_entries),
            clients: HashMap::with_capacity(cap),
            by_addr: HashMap::with_capacity(cap),
            expiry: BTreeSet::new(),
            offline: HashMap::new(),
            next_sweep_ms: now.mono_ms + SWEEP_EVERY_MS,
            emitter: Emitter::new(junk),
            counters: DatagramStats::default(),
            remote: RemoteTable::new(cfg.max_remote),
            federation: Federation::new(&cfg, forward_state, now),
            alias,
            boot_epoch,
            cfg,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &UdpConfig {
        &self.cfg
    }

    /// The boot epoch sent in every OK (changes on each start).
    pub fn boot_epoch(&self) -> u32 {
        self.boot_epoch
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            datagrams: self.counters.clone(),
            emitted: self.emitter.stats().clone(),
            federation: self.federation.stats.clone(),
        }
    }

    /// Number of local clients online (registered here; remote entries not counted, see
    /// [`Self::remote_online`]).
    pub fn online(&self) -> usize {
        self.clients.len()
    }

    /// Number of remote entries: clients homed at other servers, learned from peers
    /// (BRIEF.md, "TCP plane", federation; bounded by [`UdpConfig::max_remote`]).
    pub fn remote_online(&self) -> usize {
        self.remote.len()
    }

    /// The remote entry of `fp` (a client homed at another server), if held.
    pub fn remote(&self, fp: &Fingerprint, now: Now) -> Option<RemoteView<'_>> {
        self.remote.get(fp).map(|r| RemoteView {
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
        self.clients.get(fp).map(|c| ClientView {
            addr: c.addr,
            age_ms: now.mono_ms.saturating_sub(c.last_seen_ms),
            shift: c.shift,
        })
    }

    /// The directory's canonical digest: `(online clients, SHA-512)` over the entries, local
    /// and remote, sorted by fingerprint, each `[fingerprint 32][family u8][addr 4|16][port
    /// u16]` (IPv4-mapped addresses as IPv4), so two federated servers that agree have equal
    /// digests. For `rendezvous status`; O(n log n), not a hot path.
    pub fn directory_digest(&self) -> (u64, [u8; 64]) {
        use sha2::Sha512;
        let mut entries: Vec<(&Fingerprint, SocketAddr)> = self
            .clients
            .iter()
            .map(|(fp, c)| (fp, c.addr))
            .chain(self.remote.iter().map(|(fp, r)| (fp, r.addr)))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut h = Sha512::new();
        let mut buf = [0u8; 19];
        for (fp, addr) in &entries {
            h.update(fp.0);
            if let Ok(n) = crate::wire::udp::emit_addr(*addr, &mut buf) {
                h.update(&buf[..n]);
            }
        }
        (entries.len() as u64, h.finalize().into())
    }

    /// Events queued for `fp`.
    pub fn queued_for(&self, fp: &Fingerprint) -> usize {
        self.queues.len_for(fp)
    }

    /// The next item for the peer servers, oldest first (a pending
    /// [`PeerOut::WantDirectory`] comes before the rest); `None` when the outbox is empty.
    /// The outbox holds at most [`UdpConfig::max_peer_out`] items and 16 MiB of bodies; past
    /// that the oldest is dropped (counted in [`FederationStats::peer_out_dropped`]) and a resync is
    /// asked for. The loop should drain it after every call into the core, also when it has
    /// no peer link. Source: BRIEF.md, "TCP plane", federation of the directory (seed 002).
    pub fn poll_peer_out(&mut self) -> Option<PeerOut> {
        self.federation.poll()
    }

    /// Applies one DirRecord body from a peer (the body of a command-16 frame, or of a
    /// directory page); returns whether it changed the directory. A record that changed
    /// something is passed on (hops + 1, while within 16) through [`Self::poll_peer_out`]; an
    /// unchanged one never is, which is what ends a flood.
    ///
    /// Kind 1: the embedded certificate must hash to the fingerprint (400), be self-signed
    /// and in date at `now.unix_s` (401), and the signature must verify over
    /// `timestamp || payload` (401); no freshness window or cookie check (those apply where
    /// the client's packet arrived). The newest timestamp per fingerprint wins, local or
    /// remote; on equal timestamps the same home and address is a refresh, the same home
    /// with another address replaces, and between two homes the bytewise larger alias wins.
    /// A local client beaten by a record has moved: its local entry goes (no expiry record).
    /// A record naming our own alias as home is ignored. Kind 2: moves the last-seen time of
    /// a remote entry with that timestamp to `now - age_ms` (changed when it moved by at
    /// least 1 s); a refresh of a registration we do not know makes the server ask the
    /// peers for their directory (at most once per announce interval). Kind 3: removes the
    /// remote entry with exactly that timestamp.
    ///
    /// # Errors
    /// [`PeerRecordError`] 400 (malformed, hops over 16, fingerprint not the certificate's,
    /// an embedded payload that is no registration), 401 (certificate or signature), 503
    /// (remote table full, [`UdpConfig::max_remote`]); nothing changes then.
    ///
    /// Source: BRIEF.md, "TCP plane", federation of the directory (seed 002).
    pub fn apply_peer_record(&mut self, now: Now, body: &[u8]) -> Result<bool, PeerRecordError> {
        self.federation.stats.peer_records_in += 1;
        let r = self.apply_record(now, body);
        match r {
            Ok(true) => self.federation.stats.peer_records_applied += 1,
            Ok(false) => {}
            Err(_) => self.federation.stats.peer_records_refused += 1,
        }
        r
    }

    fn apply_record(&mut self, now: Now, body: &[u8]) -> Result<bool, PeerRecordError> {
        let rec =
            DirRecord::parse(body).map_err(|e| peer_err(status::BAD_REQUEST, dir_detail(e)))?;
        if rec.hops > MAX_RECORD_HOPS {
            return Err(peer_err(
                status::BAD_REQUEST,
                "record passed on more than 16 times",
            ));
        }
        let fp = rec.fingerprint;
        let ts = rec.timestamp;
        let seen = now.mono_ms.saturating_sub(u64::from(rec.age_ms));
        let changed = match rec.body {
            RecordBody::Registration(reg) => self.apply_registration(now, &rec, reg, seen)?,
            RecordBody::Refresh => match self.remote.get(&fp) {
                Some(r) if r.ts == ts => {
                    self.remote.touch(&fp, seen, self.cfg.ttl_ms) >= REFRESH_STEP_MS
                }
                held => {
                    let known = held.is_some_and(|r| r.ts > ts)
                        || self.clients.get(&fp).is_some_and(|c| c.ts >= ts);
                    if !known {
                        self.federation.request_directory(now);
                    }
                    false
                }
            },
            RecordBody::Expiry => {
                if self.remote.get(&fp).is_some_and(|r| r.ts == ts) {
                    self.remote.remove(&fp);
                    true
                } else {
                    false
                }
            }
        };
        if changed {
            self.federation.pass_on_record(body, rec.hops);
        }
        Ok(changed)
    }

    /// Kind 1 of [`Self::apply_peer_record`]: cheap checks and the decision first, the
    /// certificate and signature only when the record would change more than a last-seen
    /// time.
    fn apply_registration(
        &mut self,
        now: Now,
        rec: &DirRecord<'_>,
        reg: Registration<'_>,
        seen: u64,
    ) -> Result<bool, PeerRecordError> {
        let fp = rec.fingerprint;
        let ts = rec.timestamp;
        let payload = Register::parse(reg.payload).map_err(|_| {
            peer_err(
                status::BAD_REQUEST,
                "malformed: the embedded payload is no type-2 registration",
            )
        })?;
        if identity::fingerprint(payload.cert) != fp {
            return Err(peer_err(
                status::BAD_REQUEST,
                "fingerprint is not the SHA-256 of the embedded certificate",
            ));
        }
        if reg.home == self.alias {
            return Ok(false); // our own record coming back, or stale news of us
        }
        let addr = canonical_addr(reg.addr);
        let mut moved = false;
        if let Some(c) = self.clients.get(&fp) {
            if c.ts > ts || (c.ts == ts && reg.home.as_bytes() < self.alias.as_bytes()) {
                return Ok(false);
            }
            moved = true;
        }
        match self.remote.get(&fp) {
            Some(r) if r.ts > ts => return Ok(false),
            Some(r) if r.ts == ts && r.home == reg.home && r.addr == addr => {
                // The registration we hold: only a refresh.
                let step = self.remote.touch(&fp, seen, self.cfg.ttl_ms);
                return Ok(step >= REFRESH_STEP_MS);
            }
            Some(r) if r.ts == ts && r.home != reg.home && reg.home < r.home.as_str() => {
                return Ok(false);
            }
            Some(_) => {}
            None if self.remote.len() >= self.cfg.max_remote => {
                self.federation.stats.remote_full += 1;
                return Err(peer_err(status::FULL, "remote directory full"));
            }
            None => {}
        }
        // Expensive checks: certificate (cached by fingerprint) and signature.
        let key = self
            .admission
            .verify_record(now, fp, payload.cert, ts, (reg.signature, reg.payload))
            .map_err(|r| peer_err(r.status, r.detail))?;
        let entry = Remote {
            ts,
            addr,
            home: reg.home.to_owned(),
            last_seen_ms: seen,
            deadline_ms: seen.saturating_add(self.cfg.ttl_ms),
            hops: rec.hops,
            key,
            signed: Signed::new(reg.signature, reg.payload),
        };
        if self.remote.insert(fp, entry).is_err() {
            self.federation.stats.remote_full += 1;
            return Err(peer_err(status::FULL, "remote directory full"));
        }
        if moved {
            // The client registered at another server since: it is theirs now.
            if let Some(c) = self.clients.remove(&fp) {
                self.by_addr.remove(&c.addr);
            }
        }
        Ok(true)
    }

    /// Handles one Forward body from a peer (the body of a command-18 frame). A copy of a
    /// forward already seen (same id; the last 4096 are remembered) is dropped. For a local
    /// client online here: a punch request (type 3 naming the source and the carried
    /// address, rate-limited per pair) or the relayed event (type 4 `[source][event]`) is
    /// sent through `out`; for a local client that went offline here, an event is queued
    /// as a local relay would be. Anything else (homed elsewhere, or unknown) is passed on
    /// with hops + 1 while within 8; the loop floods it to every peer link.
    ///
    /// # Errors
    /// [`PeerRecordError`] 400 for a malformed body or hops over 8; nothing changes then.
    /// Drops (a full queue, an event too large for the recipient's shifted layout) are
    /// counted in [`EmitStats::dropped`], not errors.
    ///
    /// Source: BRIEF.md, "TCP plane", federation of the directory (seed 002).
    pub fn handle_forward(
        &mut self,
        now: Now,
        body: &[u8],
        out: &mut Out<'_>,
    ) -> Result<(), PeerRecordError> {
        self.federation.stats.forwards_in += 1;
        let f = Forward::parse(body).map_err(|e| peer_err(status::BAD_REQUEST, dir_detail(e)))?;
        if f.hops > MAX_FORWARD_HOPS {
            return Err(peer_err(
                status::BAD_REQUEST,
                "forward passed on more than 8 times",
            ));
        }
        if !self.federation.first_sight(f.id) {
            return Ok(());
        }
        if let Some((addr, shift)) = self.clients.get(&f.target).map(|c| (c.addr, c.shift)) {
            let payload = match f.body {
                ForwardBody::Punch(from) => {
                    if f.source == f.target
                        || !self.punch_pairs.allow((f.source, f.target), now.mono_ms)
                    {
                        return Ok(());
                    }
                    Payload::ServerEvent(ServerEvent::Punch {
                        peer: f.source,
                        addr: from,
                    })
                }
                ForwardBody::Relay(event) => Payload::Relay(Relay {
                    peer: f.source,
                    event,
                }),
            };
            if self
                .emitter
                .send(out, now.unix_s, addr, shift, &payload, MAX_DATAGRAM)
            {
                self.federation.stats.forwards_delivered += 1;
                if matches!(f.body, ForwardBody::Relay(_)) {
                    self.counters.relayed += 1;
                }
            }
            return Ok(());
        }
        if !self.remote.contains(&f.target) && self.offline.contains_key(&f.target) {
            // Ours, offline: it comes back here; a punch request has no one to go to.
            if let ForwardBody::Relay(event) = f.body {
                match self.queues.push(f.target, f.source, event, now.mono_ms) {
                    Ok(()) => {
                        self.counters.queued += 1;
                        self.federation.stats.forwards_delivered += 1;
                    }
                    Err(_) => self.emitter.drop_one(),
                }
            }
            return Ok(());
        }
        self.federation.pass_on_forward(body, f.hops);
        Ok(())
    }

    /// Appends to `out` up to `max` complete frames `[16][len u16][DirRecord body]`, kind-1
    /// records of the directory's entries (local ones with hops 0 and our alias, remote
    /// ones with their stored hops + 1, at most 16, and their home's alias) whose
    /// fingerprint is greater than `after`, in ascending fingerprint order; ages are taken
    /// at `now`. Returns the last fingerprint written (`None` when none was) and whether
    /// entries remain after it. Call again with that fingerprint as `after` to go on. O(n
    /// log max) per page; allocates only the page's list of fingerprints and `out`'s growth.
    /// Source: BRIEF.md, "TCP plane": "a server that (re)connects asks for the full
    /// directory" (seed 002's client_update_request).
    pub fn directory_page(
        &self,
        now: Now,
        after: Option<Fingerprint>,
        max: usize,
        out: &mut Vec<u8>,
    ) -> (Option<Fingerprint>, bool) {
        let above = |fp: &Fingerprint| after.map_or(true, |a| *fp > a);
        let total = self.clients.len() + self.remote.len();
        let mut page: std::collections::BinaryHeap<Fingerprint> =
            std::collections::BinaryHeap::with_capacity(max.min(total));
        let mut candidates = 0usize;
        let keys = self
            .clients
            .keys()
            .chain(self.remote.iter().map(|(fp, _)| fp));
        for fp in keys.filter(|fp| above(fp)) {
            candidates += 1;
            if page.len() < max {
                page.push(*fp);
            } else if page.peek().is_some_and(|top| fp < top) {
                page.pop();
                page.push(*fp);
            }
        }
        let page = page.into_sorted_vec();
        for fp in &page {
            if let Some(c) = self.clients.get(fp) {
                push_frame(&local_record(&self.alias, now, *fp, c), out);
            } else if let Some(r) = self.remote.get(fp) {
                push_frame(&remote_record(now, *fp, r), out);
            }
        }
        (page.last().copied(), candidates > page.len())
    }

    /// The next monotonic time (ms) at which [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let expiry = self.expiry.first().map(|&(d, _)| d);
        [
            expiry,
            self.queues.next_deadline(),
            self.remote.next_deadline(),
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
    /// [`UdpConfig::announce_interval_ms`]), drops queued events past their age and sweeps idle
    /// rate-limit entries.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(&(deadline, fp)) = self.expiry.first() {
            if deadline > now.mono_ms {
                break;
            }
            self.expiry.pop_first();
            let Some(c) = self.clients.get_mut(&fp) else {
                continue;
            };
            if c.deadline_ms != deadline {
                continue; // a stale entry; the client has a later one
            }
            let real = c.last_seen_ms + self.cfg.ttl_ms;
            if real > now.mono_ms {
                c.deadline_ms = real;
                self.expiry.insert((real, fp));
            } else {
                self.counters.expired += 1;
                self.go_offline(fp, now);
            }
        }
        while self.remote.pop_expired(now.mono_ms).is_some() {
            self.federation.stats.remote_expired += 1;
        }
        if self.federation.refresh_due(now) {
            let finished = self.announce(now);
            self.federation.refresh_done(now, finished);
        }
        self.queues.purge(now.mono_ms);
        if now.mono_ms >= self.next_sweep_ms {
            self.next_sweep_ms = now.mono_ms + SWEEP_EVERY_MS;
            self.lookup_budget.sweep(now.mono_ms);
            self.punch_pairs.sweep(now.mono_ms);
            self.admission.sweep(now);
        }
    }

    /// Takes `fp` out of the local directory (TTL, eviction, its address taken by another
    /// fingerprint) and tells the peers with an expiry record.
    fn go_offline(&mut self, fp: Fingerprint, now: Now) {
        if let Some(c) = self.clients.remove(&fp) {
            self.by_addr.remove(&c.addr);
            if self.offline.len() >= self.cfg.max_offline {
                if let Some(k) = self.offline.keys().next().copied() {
                    self.offline.remove(&k);
                }
            }
            if self.cfg.max_offline > 0 {
                self.offline.insert(fp, c.last_seen_ms.min(now.mono_ms));
            }
            let rec = DirRecord {
                hops: 0,
                fingerprint: fp,
                timestamp: c.ts,
                age_ms: age_u32(now, c.last_seen_ms),
                body: RecordBody::Expiry,
            };
            self.federation.push_record(&rec);
        }
    }

    /// Refresh records (kind 2) for the local clients heard from since they were last
    /// announced, while the outbox has room for bulk; true when none is left to announce.
    /// A pass that stops early goes on [`ANNOUNCE_RETRY_MS`] later, once the loop has
    /// drained the outbox (each call scans the table: O(n)).
    fn announce(&mut self, now: Now) -> bool {
        for (fp, c) in self.clients.iter_mut() {
            if c.last_seen_ms <= c.announced_ms {
                continue;
            }
            let rec = DirRecord {
                hops: 0,
                fingerprint: *fp,
                timestamp: c.ts,
                age_ms: age_u32(now, c.last_seen_ms),
                body: RecordBody::Refresh,
            };
            if !self.federation.push_bulk_record(&rec) {
                return false;
            }
            c.announced_ms = c.last_seen_ms;
        }
        true
    }

    /// Handles one datagram from `src` at `now`; each datagram to send is passed to `out`.
    pub fn handle_datagram(&mut self, now: Now, src: SocketAddr, data: &[u8], out: &mut Out<'_>) {
        self.counters.datagrams_in += 1;
        let src = canonical_addr(src);
        // Never answer a server, nor anything that could be a reply (no error ping-pong).
        let from_server = data.first().is_some_and(|p| p & PARAM_FROM_SERVER != 0);
        let root = match Root::parse(data) {
            Ok(r) => r,
            Err(e) => {
                if from_server {
                    self.emitter.drop_one();
                    return;
                }
                let code = if e == WireError::TooLarge {
                    status::TOO_LARGE
                } else {
                    status::BAD_REQUEST
                };
                let req = Req {
                    src,
                    shift: None,
                    limit: self.reply_limit(src, data.len()),
                    ty: 0xFF,
                };
                return self.emitter.refuse(out, req, code, wire_detail(e));
            }
        };
        if root.from_server() || root.packet_type.is_reply() {
            self.emitter.drop_one();
            return;
        }
        let limit = self.reply_limit(src, data.len());
        let shift = root.shift_len;
        let ty = root.packet_type;
        match ty {
            PacketType::Keepalive => self.keepalive(now, src, data.len(), shift, out),
            PacketType::Register => self.register(now, src, &root, data.len(), out),
            PacketType::Relay => self.relay(now, src, &root, limit, out),
            PacketType::Lookup => self.lookup(now, src, &root, limit, out),
            PacketType::Fetch => self.fetch(now, src, &root, limit, out),
            _ => {
                let req = Req {
                    src,
                    shift,
                    limit,
                    ty: u8::from(ty),
                };
                self.emitter
                    .refuse(out, req, status::BAD_REQUEST, "unknown packet type");
            }
        }
    }

    /// How large a reply to `src` may be (no amplification, docs/PROTOCOL.md §5.5).
    fn reply_limit(&self, src: SocketAddr, request_len: usize) -> usize {
        emit::reply_limit(self.by_addr.contains_key(&src), request_len)
    }

    fn keepalive(
        &mut self,
        now: Now,
        src: SocketAddr,
        len: usize,
        shift: Option<u8>,
        out: &mut Out<'_>,
    ) {
        if let Some(fp) = self.by_addr.get(&src) {
            if let Some(c) = self.clients.get_mut(fp) {
                c.last_seen_ms = now.mono_ms;
                c.kept_alive = true;
                self.counters.keepalives += 1;
                return;
            }
        }
        // Unknown address: a 404 tells a client that the server restarted, but only when
        // the keepalive is at least as large as the answer.
        let req = Req {
            src,
            shift,
            limit: len,
            ty: 0,
        };
        let detail = "unknown address: register again";
        self.emitter.refuse(out, req, status::NOT_FOUND, detail);
    }

    fn register(
        &mut self,
        now: Now,
        src: SocketAddr,
        root: &Root<'_>,
        len: usize,
        out: &mut Out<'_>,
    ) {
        let shift = root.shift_len;
        let limit = self.reply_limit(src, len);
        let req = Req {
            src,
            shift,
            limit,
            ty: u8::from(PacketType::Register),
        };
        let clients = &self.clients;
        let checked = self
            .admission
            .check_registration(now, src, root, |fp| clients.contains_key(fp));
        let Admitted {
            fp,
            key,
            ts,
            digest,
        } = match checked {
            Ok(a) => a,
            Err(Rejected::Challenge(cookie)) => {
                let cookie = Payload::Cookie(cookie);
                if self
                    .emitter
                    .send(out, now.unix_s, src, shift, &cookie, limit)
                {
                    self.counters.cookies_sent += 1;
                }
                return;
            }
            Err(Rejected::Refused(r)) => return self.emitter.reject(out, req, r),
        };
        // Newest timestamp per fingerprint wins across the federation.
        if self.remote.get(&fp).is_some_and(|r| r.ts >= ts) {
            return self.emitter.refuse(
                out,
                req,
                status::CONFLICT,
                "a registration at least as new is held at another server",
            );
        }
        // Room in the directory (evicting a client that never kept alive if full).
        if !self.clients.contains_key(&fp) && self.clients.len() >= self.cfg.max_clients {
            let victim = self
                .expiry
                .iter()
                .take(64)
                .map(|&(_, f)| f)
                .find(|f| self.clients.get(f).is_some_and(|c| !c.kept_alive));
            match victim {
                Some(v) => self.go_offline(v, now),
                None => {
                    return self
                        .emitter
                        .refuse(out, req, status::FULL, "directory full")
                }
            }
        }
        self.admission.record(fp, ts, digest);
        // Accept: bind fp -> src (moving it if it had another address, and unbinding any
        // other fingerprint that held src).
        if let Some(other) = self.by_addr.get(&src).copied() {
            if other != fp {
                self.go_offline(other, now);
            }
        }
        let deadline = now.mono_ms + self.cfg.ttl_ms;
        let announce = match self.clients.get_mut(&fp) {
            Some(c) => {
                // A newer registration, or a move to another address, is news for peers.
                let news = ts > c.ts || (ts == c.ts && c.addr != src);
                if c.addr != src {
                    self.by_addr.remove(&c.addr);
                }
                c.addr = src;
                c.last_seen_ms = now.mono_ms;
                c.shift = shift;
                c.key = key;
                if news {
                    c.ts = ts;
                    c.signed = Signed::new(root.signature, root.payload);
                }
                news
            }
            None => {
                self.offline.remove(&fp);
                self.clients.insert(
                    fp,
                    Client {
                        addr: src,
                        last_seen_ms: now.mono_ms,
                        deadline_ms: deadline,
                        shift,
                        kept_alive: false,
                        key,
                        ts,
                        signed: Signed::new(root.signature, root.payload),
                        announced_ms: now.mono_ms,
                    },
                );
                self.expiry.insert((deadline, fp));
                true
            }
        };
        // It was homed elsewhere: it is ours now (the record below supersedes that entry).
        self.remote.remove(&fp);
        self.by_addr.insert(src, fp);
        self.counters.registrations += 1;
        if announce {
            self.announce_registration(now, fp);
        }
        let ok = Payload::Ok(Some(OkInfo {
            keepalive_s: self.cfg.advised_keepalive_s(),
            boot_epoch: self.boot_epoch,
            reflexive: src,
        }));
        self.emitter
            .send(out, now.unix_s, src, shift, &ok, MAX_DATAGRAM);
        self.deliver_queued(now, fp, out);
    }

    /// A registration record (kind 1, hops 0, home = our alias) for local client `fp`.
    fn announce_registration(&mut self, now: Now, fp: Fingerprint) {
        let Some(c) = self.clients.get_mut(&fp) else {
            return;
        };
        c.announced_ms = c.last_seen_ms;
        let rec = local_record(&self.alias, now, fp, c);
        self.federation.push_record(&rec);
    }

    fn deliver_queued(&mut self, now: Now, fp: Fingerprint, out: &mut Out<'_>) {
        let Some((addr, shift)) = self.clients.get(&fp).map(|c| (c.addr, c.shift)) else {
            return;
        };
        for item in self.queues.take(&fp, now.mono_ms) {
            let p = Payload::Relay(Relay {
                peer: item.from,
                event: &item.event,
            });
            if self
                .emitter
                .send(out, now.unix_s, addr, shift, &p, MAX_DATAGRAM)
            {
                self.counters.delivered += 1;
            }
        }
    }

    fn relay(
        &mut self,
        now: Now,
        src: SocketAddr,
        root: &Root<'_>,
        limit: usize,
        out: &mut Out<'_>,
    ) {
        let shift = root.shift_len;
        let req = Req {
            src,
            shift,
            limit,
            ty: u8::from(PacketType::Relay),
        };
        let Some(from) = self.by_addr.get(&src).copied() else {
            return self
                .emitter
                .refuse(out, req, status::FORBIDDEN, "register before relaying");
        };
        let relay = match Relay::parse(root.payload) {
            Ok(r) => r,
            Err(WireError::BadLength) => {
                return self.emitter.refuse(
                    out,
                    req,
                    status::TOO_LARGE,
                    "event larger than 1200 bytes",
                )
            }
            Err(e) => {
                return self
                    .emitter
                    .refuse(out, req, status::BAD_REQUEST, wire_detail(e))
            }
        };
        let clients = &self.clients;
        let key = clients.get(&from).map(|c| &c.key);
        let online = |fp: &Fingerprint| clients.contains_key(fp);
        let digest = match self.admission.check_relay(now, root, from, key, online) {
            Ok(d) => d,
            Err(r) => return self.emitter.reject(out, req, r),
        };
        let dest = relay.peer;
        let forward = Payload::Relay(Relay {
            peer: from,
            event: relay.event,
        });
        if let Some((addr, dshift)) = self.clients.get(&dest).map(|c| (c.addr, c.shift)) {
            if emit::packet_len(dshift, &forward) > MAX_DATAGRAM {
                return self.emitter.refuse(
                    out,
                    req,
                    status::TOO_LARGE,
                    "event too large for the recipient's shifted layout",
                );
            }
            self.admission.record(from, root.timestamp, digest);
            self.emitter
                .send(out, now.unix_s, addr, dshift, &forward, MAX_DATAGRAM);
            self.counters.relayed += 1;
        } else if self.remote.contains(&dest) {
            // Homed elsewhere: its NAT mapping is open to its home server only.
            self.admission.record(from, root.timestamp, digest);
            self.federation
                .forward(dest, from, ForwardBody::Relay(relay.event));
        } else {
            match self.queues.push(dest, from, relay.event, now.mono_ms) {
                Ok(()) => {
                    self.admission.record(from, root.timestamp, digest);
                    self.counters.queued += 1;
                }
                Err(QueueError::RecipientFull) => {
                    self.emitter
                        .refuse(out, req, status::FULL, "recipient's queue is full")
                }
                Err(QueueError::GlobalFull) => {
                    self.emitter
                        .refuse(out, req, status::FULL, "relay queue full")
                }
                Err(QueueError::SenderFull) => self.emitter.refuse(
                    out,
                    req,
                    status::RATE_LIMITED,
                    "too many of your events wait for offline recipients",
                ),
            }
        }
    }

    fn lookup(
        &mut self,
        now: Now,
        src: SocketAddr,
        root: &Root<'_>,
        limit: usize,
        out: &mut Out<'_>,
    ) {
        let shift = root.shift_len;
        let req = Req {
            src,
            shift,
            limit,
            ty: u8::from(PacketType::Lookup),
        };
        let Some(asker) = self.by_addr.get(&src).copied() else {
            return self
                .emitter
                .refuse(out, req, status::FORBIDDEN, "register before looking up");
        };
        let target = match parse_lookup(root.payload) {
            Ok(fp) => fp,
            Err(e) => {
                return self
                    .emitter
                    .refuse(out, req, status::BAD_REQUEST, wire_detail(e))
            }
        };
        let (status, home, online) = match self.clients.get(&target) {
            Some(c) => (
                LookupStatus::Online {
                    addr: c.addr,
                    age_s: secs(now.mono_ms.saturating_sub(c.last_seen_ms)),
                },
                Home::Ours,
                Some((c.addr, c.shift)),
            ),
            None => match (self.remote.get(&target), self.offline.get(&target)) {
                (Some(r), _) => (
                    LookupStatus::Online {
                        addr: r.addr,
                        age_s: secs(now.mono_ms.saturating_sub(r.last_seen_ms)),
                    },
                    Home::Remote,
                    None,
                ),
                (None, Some(&seen)) => (
                    LookupStatus::Offline {
                        age_s: secs(now.mono_ms.saturating_sub(seen)),
                    },
                    Home::Ours,
                    None,
                ),
                (None, None) => (LookupStatus::Unknown, Home::None, None),
            },
        };
        let home_alias = match home {
            Home::Ours => self.alias.as_str(),
            Home::Remote => self.remote.get(&target).map_or("", |r| r.home.as_str()),
            Home::None => "",
        };
        let answer = Payload::LookupAnswer(LookupAnswer {
            target,
            status,
            home: home_alias,
        });
        let cost = emit::packet_len(shift, &answer) as u64;
        if !self.admission.exempt(src) && !self.lookup_budget.take(src.ip(), cost, now.mono_ms) {
            self.emitter.drop_one();
            return;
        }
        self.emitter
            .send(out, now.unix_s, src, shift, &answer, MAX_DATAGRAM);
        self.counters.lookups += 1;
        if let Some((taddr, tshift)) = online {
            if target != asker && self.punch_pairs.allow((asker, target), now.mono_ms) {
                let punch = Payload::ServerEvent(ServerEvent::Punch {
                    peer: asker,
                    addr: src,
                });
                self.emitter
                    .send(out, now.unix_s, taddr, tshift, &punch, MAX_DATAGRAM);
            }
        } else if home == Home::Remote
            && target != asker
            && self.punch_pairs.allow((asker, target), now.mono_ms)
        {
            // The target's NAT mapping is open to its home server only: the punch request
            // goes out from there.
            self.federation
                .forward(target, asker, ForwardBody::Punch(src));
        }
    }

    fn fetch(
        &mut self,
        now: Now,
        src: SocketAddr,
        root: &Root<'_>,
        limit: usize,
        out: &mut Out<'_>,
    ) {
        let shift = root.shift_len;
        let req = Req {
            src,
            shift,
            limit,
            ty: u8::from(PacketType::Fetch),
        };
        let Some(fp) = self.by_addr.get(&src).copied() else {
            return self
                .emitter
                .refuse(out, req, status::FORBIDDEN, "register before fetching");
        };
        if !root.payload.is_empty() {
            return self
                .emitter
                .refuse(out, req, status::BAD_REQUEST, "fetch has no payload");
        }
        self.deliver_queued(now, fp, out);
    }
}

/// Whose alias a lookup answer names as the target's home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Home {
    /// Ours: a local client (online or offline).
    Ours,
    /// The remote entry's home.
    Remote,
    /// None: unknown.
    None,
}

/// Milliseconds from `seen_ms` to `now`, saturated to a u32 (a record's age).
fn age_u32(now: Now, seen_ms: u64) -> u32 {
    u32::try_from(now.mono_ms.saturating_sub(seen_ms)).unwrap_or(u32::MAX)
}

/// The registration record (kind 1, hops 0, home = `alias`) of local client `c`.
fn local_record<'a>(alias: &'a str, now: Now, fp: Fingerprint, c: &'a Client) -> DirRecord<'a> {
    DirRecord {
        hops: 0,
        fingerprint: fp,
        timestamp: c.ts,
        age_ms: age_u32(now, c.last_seen_ms),
        body: RecordBody::Registration(Registration {
            addr: c.addr,
            home: alias,
            signature: c.signed.signature(),
            payload: c.signed.payload(),
        }),
    }
}

/// The registration record of remote entry `r` as a directory page carries it: its
/// stored hops plus one (at most 16), its own home alias.
fn remote_record(now: Now, fp: Fingerprint, r: &Remote) -> DirRecord<'_> {
    DirRecord {
        hops: r.hops.saturating_add(1).min(MAX_RECORD_HOPS),
        fingerprint: fp,
        timestamp: r.ts,
        age_ms: age_u32(now, r.last_seen_ms),
        body: RecordBody::Registration(Registration {
            addr: r.addr,
            home: &r.home,
            signature: r.signed.signature(),
            payload: r.signed.payload(),
        }),
    }
}

/// Appends one frame `[16][len u16][body]` for `rec` to `out` (nothing if it cannot be
/// emitted).
fn push_frame(rec: &DirRecord<'_>, out: &mut Vec<u8>) {
    let n = rec.buffer_len();
    let Ok(len) = u16::try_from(n) else {
        return;
    };
    let start = out.len();
    out.push(CMD_DIR_RECORD);
    out.extend_from_slice(&len.to_be_bytes());
    out.resize(start + FRAME_HEADER_LEN + n, 0);
    if rec.emit(&mut out[start + FRAME_HEADER_LEN..]).is_err() {
        out.truncate(start);
    }
}

fn dir_detail(e: WireError) -> &'static str {
    match e {
        WireError::UnknownCommand => "malformed: unknown kind",
        WireError::BadFamily => "malformed: address family must be 4 or 6 (IPv4 zero-padded)",
        WireError::BadUtf8 => "malformed: home alias is not UTF-8",
        WireError::BadLength => {
            "malformed: signature and payload over 1388 bytes, or event over 1200"
        }
        other => wire_detail(other),
    }
}

fn secs(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}
