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
//! [`Server::apply_peer_record`]; local changes, and every peer record that changed
//! something, come out of [`Server::poll_peer_out`] for the TCP plane to flood; punch
//! requests and relayed events for remote clients leave as forwards toward their home and
//! arrive through [`Server::handle_forward`]. A fingerprint is local or remote, never both.
//!
//! Replaying captures (issue 5, `serve --accept-replayed`, [`Config::accept_replayed`]):
//! the freshness window and the address check are off, so a capture's signed packets work
//! again days later from other source ports. Everything else holds: a registration needs a
//! certificate and a signature that verify, and per fingerprint a signed packet older than
//! the newest accepted, or an exact replay of one accepted, is still 409 (so a capture
//! replayed twice at one server registers nothing the second time). The CLI allows it only
//! on a loopback listener.

use super::config::Config;
use super::cookie::CookieJar;
use super::directory::{Remote, RemoteTable, Signed};
use super::limits::{is_loopback, prefix_of, Buckets, Interval};
use super::queue::{QueueError, RelayQueues};
use crate::identity::{self, VerifyingKey};
use crate::wire::dir::{
    DirRecord, Forward, ForwardBody, RecordBody, Registration, CMD_DIR_RECORD, FRAME_HEADER_LEN,
    HOPS_OFFSET, MAX_FORWARD_HOPS, MAX_RECORD_HOPS,
};
use crate::wire::root::{MAX_DATAGRAM, PARAM_FROM_SERVER};
use crate::wire::udp::{
    canonical_addr, cut_utf8, parse_lookup, ErrorReply, LookupAnswer, LookupStatus, OkInfo,
    Payload, Register, Relay, ServerEvent,
};
use crate::wire::{Fingerprint, PacketType, Root, RootHeader, WireError};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

/// The time the core is fed: a monotonic clock for expiry and rate limits, and Unix time
/// for the freshness window and certificate validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (any origin; never goes backwards).
    pub mono_ms: u64,
    /// Unix time, seconds (UTC).
    pub unix_s: u64,
}

/// HTTP-like status codes of type-7 errors (BRIEF.md, type 7).
pub mod status {
    /// Malformed.
    pub const BAD_REQUEST: u16 = 400;
    /// Bad or missing signature or certificate.
    pub const UNAUTHORIZED: u16 = 401;
    /// Not allowed (e.g. lookup from an unregistered source).
    pub const FORBIDDEN: u16 = 403;
    /// Unknown (e.g. keepalive from an address the server does not know).
    pub const NOT_FOUND: u16 = 404;
    /// Stale or replayed.
    pub const CONFLICT: u16 = 409;
    /// Too large.
    pub const TOO_LARGE: u16 = 413;
    /// Rate limited.
    pub const RATE_LIMITED: u16 = 429;
    /// Full.
    pub const FULL: u16 = 503;
}

/// Counters of what the core has seen and done (for logs, metrics and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handled.
    pub datagrams_in: u64,
    /// Datagrams sent (replies, events, punch requests).
    pub datagrams_out: u64,
    /// Accepted registrations.
    pub registrations: u64,
    /// Keepalives that refreshed a client.
    pub keepalives: u64,
    /// Lookups answered.
    pub lookups: u64,
    /// Events relayed at once to an online client.
    pub relayed: u64,
    /// Events queued for an offline recipient.
    pub queued: u64,
    /// Queued events delivered.
    pub delivered: u64,
    /// Cookie challenges (type 9) sent.
    pub cookies_sent: u64,
    /// Packets dropped without an answer (server-sent, reply types, budgets, too small to
    /// answer).
    pub dropped: u64,
    /// Error replies sent, by status: 400, 401, 403, 404, 409, 413, 429, 503.
    pub errors: [u64; 8],
    /// Clients expired by the TTL.
    pub expired: u64,
    /// DirRecord bodies handed to [`Server::apply_peer_record`].
    pub peer_records_in: u64,
    /// Peer records that changed the directory (and were passed on).
    pub peer_records_applied: u64,
    /// Peer records refused with an error (400, 401, 503).
    pub peer_records_refused: u64,
    /// Peer records refused because the remote table was full (also in
    /// `peer_records_refused`).
    pub remote_full: u64,
    /// Forward bodies handed to [`Server::handle_forward`] (refused ones included).
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

fn status_index(code: u16) -> usize {
    match code {
        400 => 0,
        401 => 1,
        403 => 2,
        404 => 3,
        409 => 4,
        413 => 5,
        429 => 6,
        _ => 7,
    }
}

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

/// Per-fingerprint freshness state: the newest accepted signed timestamp and the digests
/// of the packets accepted with exactly that timestamp.
#[derive(Debug, Default)]
struct Fresh {
    last_ts: u64,
    digests: Vec<u64>,
}

const MAX_SAME_SECOND: usize = 64;
const SWEEP_EVERY_MS: u64 = 10_000;
/// Most bytes of bodies waiting in the peer outbox (16 MiB).
const MAX_PEER_OUT_BYTES: usize = 16 << 20;
/// How long an unfinished refresh pass waits for the outbox to drain, ms.
const ANNOUNCE_RETRY_MS: u64 = 10;
/// How many forward ids are remembered for dropping copies.
const SEEN_FORWARDS: usize = 4096;
/// A refresh that moves a remote entry's last-seen time by less than this changes nothing
/// worth passing on.
const REFRESH_STEP_MS: u64 = 1000;

/// Outcome of a freshness check.
enum Freshness {
    Ok,
    Stale(&'static str),
}

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

/// What the core hands the TCP plane for the peer servers; the loop sends each item to
/// every peer link (BRIEF.md, "TCP plane", federation). Bodies only: the loop frames them
/// as `[cmd u8][len u16][body]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOut {
    /// A DirRecord body ([`crate::wire::dir::DirRecord`], frame command 16), 46 to 1713
    /// bytes.
    Record(Vec<u8>),
    /// A Forward body ([`crate::wire::dir::Forward`], frame command 18), 93 to 1274 bytes.
    Forward(Vec<u8>),
    /// Ask the peers for their whole directory (command 17) and feed the records of the
    /// answer to [`Server::apply_peer_record`]. Yielded at most once per announce interval
    /// for unknown refreshes (and whenever the outbox overflowed).
    WantDirectory,
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

/// The bounded peer outbox: drops the oldest item when full, and then asks for a resync.
#[derive(Debug)]
struct Outbox {
    items: VecDeque<PeerOut>,
    bytes: usize,
    cap: usize,
    want_directory: bool,
}

impl Outbox {
    fn new(cap: usize) -> Self {
        Outbox {
            items: VecDeque::new(),
            bytes: 0,
            cap: cap.max(1),
            want_directory: false,
        }
    }

    /// Whether a bulk producer (the refresh pass) may add more: under half of either bound,
    /// so that registrations, expiries and forwards always find room.
    fn has_room_for_bulk(&self) -> bool {
        self.items.len() < self.cap / 2 && self.bytes < MAX_PEER_OUT_BYTES / 2
    }

    fn push(&mut self, item: PeerOut, stats: &mut Stats) {
        while !self.items.is_empty()
            && (self.items.len() >= self.cap || self.bytes + body_len(&item) > MAX_PEER_OUT_BYTES)
        {
            if let Some(old) = self.items.pop_front() {
                self.bytes -= body_len(&old);
            }
            stats.peer_out_dropped += 1;
            self.want_directory = true;
        }
        self.bytes += body_len(&item);
        self.items.push_back(item);
    }

    fn pop(&mut self) -> Option<PeerOut> {
        if std::mem::take(&mut self.want_directory) {
            return Some(PeerOut::WantDirectory);
        }
        let item = self.items.pop_front()?;
        self.bytes -= body_len(&item);
        Some(item)
    }
}

fn body_len(item: &PeerOut) -> usize {
    match item {
        PeerOut::Record(b) | PeerOut::Forward(b) => b.len(),
        PeerOut::WantDirectory => 0,
    }
}

/// The rendezvous server's UDP plane, free of I/O.
pub struct Server {
    cfg: Config,
    alias: String,
    boot_epoch: u32,
    cookies: CookieJar,
    clients: HashMap<Fingerprint, Client>,
    by_addr: HashMap<SocketAddr, Fingerprint>,
    expiry: BTreeSet<(u64, Fingerprint)>,
    offline: HashMap<Fingerprint, u64>,
    fresh: HashMap<Fingerprint, Fresh>,
    certs: HashMap<Fingerprint, identity::VerifiedCertificate>,
    cert_order: VecDeque<Fingerprint>,
    queues: RelayQueues,
    lookup_budget: Buckets<std::net::IpAddr>,
    register_rate: Buckets<[u8; 8]>,
    punch_pairs: Interval<(Fingerprint, Fingerprint)>,
    next_sweep_ms: u64,
    junk: u64,
    buf: Box<[u8; MAX_DATAGRAM]>,
    scratch: Box<[u8; MAX_DATAGRAM]>,
    stats: Stats,
    remote: RemoteTable,
    outbox: Outbox,
    /// Earliest monotonic time at which an unknown refresh may ask for the directory again.
    want_directory_ms: u64,
    next_announce_ms: u64,
    /// When an unfinished refresh pass (stopped for lack of outbox room) goes on.
    announce_more_ms: Option<u64>,
    /// State of the forward id sequence (splitmix64 from a seed-derived start).
    forward_state: u64,
    seen_forwards: std::collections::HashSet<u64>,
    seen_order: VecDeque<u64>,
}

/// What a refusal needs to know of its request: where to answer, in which layout, how
/// large the answer may be (no amplification), and the request's type byte.
#[derive(Debug, Clone, Copy)]
struct Req {
    src: SocketAddr,
    shift: Option<u8>,
    limit: usize,
    ty: u8,
}

/// Where the core's datagrams go: `out(destination, bytes)`.
pub type Out<'a> = dyn FnMut(SocketAddr, &[u8]) + 'a;

impl Server {
    /// A server with `cfg`, starting at `now`. `seed` (32 random bytes from the OS) keys the
    /// address-check cookies and picks the boot epoch and the junk of shifted replies.
    pub fn new(cfg: Config, seed: [u8; 32], now: Now) -> Self {
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
        Server {
            cookies: CookieJar::new(cookie_key, cfg.cookie_period_ms),
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
            register_rate: Buckets::new(
                cfg.register_per_s,
                cfg.register_per_s.saturating_mul(2),
                cfg.max_rate_entries,
            ),
            punch_pairs: Interval::new(cfg.punch_interval_ms, cfg.max_rate_entries),
            clients: HashMap::with_capacity(cap),
            by_addr: HashMap::with_capacity(cap),
            expiry: BTreeSet::new(),
            offline: HashMap::new(),
            fresh: HashMap::with_capacity(cap),
            certs: HashMap::new(),
            cert_order: VecDeque::new(),
            next_sweep_ms: now.mono_ms + SWEEP_EVERY_MS,
            junk,
            buf: Box::new([0; MAX_DATAGRAM]),
            scratch: Box::new([0; MAX_DATAGRAM]),
            stats: Stats::default(),
            remote: RemoteTable::new(cfg.max_remote),
            outbox: Outbox::new(cfg.max_peer_out),
            want_directory_ms: 0,
            next_announce_ms: now.mono_ms + cfg.announce_interval_ms(),
            announce_more_ms: None,
            forward_state,
            seen_forwards: std::collections::HashSet::with_capacity(SEEN_FORWARDS),
            seen_order: VecDeque::with_capacity(SEEN_FORWARDS),
            alias,
            boot_epoch,
            cfg,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The boot epoch sent in every OK (changes on each start).
    pub fn boot_epoch(&self) -> u32 {
        self.boot_epoch
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of local clients online (registered here; remote entries not counted, see
    /// [`Self::remote_online`]).
    pub fn online(&self) -> usize {
        self.clients.len()
    }

    /// Number of remote entries: clients homed at other servers, learned from peers
    /// (BRIEF.md, "TCP plane", federation; bounded by [`Config::max_remote`]).
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
    /// The outbox holds at most [`Config::max_peer_out`] items and 16 MiB of bodies; past
    /// that the oldest is dropped (counted in [`Stats::peer_out_dropped`]) and a resync is
    /// asked for. The loop should drain it after every call into the core, also when it has
    /// no peer link. Source: BRIEF.md, "TCP plane", federation of the directory (seed 002).
    pub fn poll_peer_out(&mut self) -> Option<PeerOut> {
        self.outbox.pop()
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
    /// (remote table full, [`Config::max_remote`]); nothing changes then.
    ///
    /// Source: BRIEF.md, "TCP plane", federation of the directory (seed 002).
    pub fn apply_peer_record(&mut self, now: Now, body: &[u8]) -> Result<bool, PeerRecordError> {
        self.stats.peer_records_in += 1;
        let r = self.apply_record(now, body);
        match r {
            Ok(true) => self.stats.peer_records_applied += 1,
            Ok(false) => {}
            Err(_) => self.stats.peer_records_refused += 1,
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
                        self.request_directory(now);
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
        if changed && rec.hops < MAX_RECORD_HOPS {
            let mut v = body.to_vec();
            v[HOPS_OFFSET] = rec.hops + 1;
            self.outbox.push(PeerOut::Record(v), &mut self.stats);
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
                self.stats.remote_full += 1;
                return Err(peer_err(status::FULL, "remote directory full"));
            }
            None => {}
        }
        // Expensive checks: certificate (cached by fingerprint) and signature.
        let key = self
            .cert_key(now, fp, payload.cert)
            .map_err(|e| peer_err(status::UNAUTHORIZED, identity_detail(e)))?;
        let n = 8 + reg.payload.len();
        let Some(msg) = self.scratch.get_mut(..n) else {
            return Err(peer_err(status::BAD_REQUEST, "registration too large"));
        };
        msg[..8].copy_from_slice(&ts.to_be_bytes());
        msg[8..].copy_from_slice(reg.payload);
        if key.verify(msg, reg.signature).is_err() {
            return Err(peer_err(
                status::UNAUTHORIZED,
                "signature does not verify with the certificate's key",
            ));
        }
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
            self.stats.remote_full += 1;
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
    /// counted in [`Stats::dropped`], not errors.
    ///
    /// Source: BRIEF.md, "TCP plane", federation of the directory (seed 002).
    pub fn handle_forward(
        &mut self,
        now: Now,
        body: &[u8],
        out: &mut Out<'_>,
    ) -> Result<(), PeerRecordError> {
        self.stats.forwards_in += 1;
        let f = Forward::parse(body).map_err(|e| peer_err(status::BAD_REQUEST, dir_detail(e)))?;
        if f.hops > MAX_FORWARD_HOPS {
            return Err(peer_err(
                status::BAD_REQUEST,
                "forward passed on more than 8 times",
            ));
        }
        if !self.remember_forward(f.id) {
            self.stats.forwards_duplicate += 1;
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
            if self.send(out, now.unix_s, addr, shift, &payload, MAX_DATAGRAM) {
                self.stats.forwards_delivered += 1;
                if matches!(f.body, ForwardBody::Relay(_)) {
                    self.stats.relayed += 1;
                }
            }
            return Ok(());
        }
        if !self.remote.contains(&f.target) && self.offline.contains_key(&f.target) {
            // Ours, offline: it comes back here; a punch request has no one to go to.
            if let ForwardBody::Relay(event) = f.body {
                match self.queues.push(f.target, f.source, event, now.mono_ms) {
                    Ok(()) => {
                        self.stats.queued += 1;
                        self.stats.forwards_delivered += 1;
                    }
                    Err(_) => self.stats.dropped += 1,
                }
            }
            return Ok(());
        }
        if f.hops < MAX_FORWARD_HOPS {
            let mut v = body.to_vec();
            v[HOPS_OFFSET] = f.hops + 1;
            self.outbox.push(PeerOut::Forward(v), &mut self.stats);
            self.stats.forwards_out += 1;
        }
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

    /// Puts a new forward (hops 0, a fresh id) toward the home of `target` in the outbox.
    fn push_forward(&mut self, target: Fingerprint, source: Fingerprint, body: ForwardBody<'_>) {
        let id = self.next_forward_id();
        let f = Forward {
            hops: 0,
            id,
            target,
            source,
            body,
        };
        if let Ok(v) = f.to_vec() {
            self.outbox.push(PeerOut::Forward(v), &mut self.stats);
            self.stats.forwards_out += 1;
        }
    }

    /// The next forward id: splitmix64 over a sequence started from the seed, so ids never
    /// repeat here and look random across servers. Remembered, so copies coming back are
    /// dropped.
    fn next_forward_id(&mut self) -> u64 {
        self.forward_state = self.forward_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.forward_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let id = z ^ (z >> 31);
        self.remember_forward(id);
        id
    }

    /// Remembers forward `id`; false when it was already remembered.
    fn remember_forward(&mut self, id: u64) -> bool {
        if !self.seen_forwards.insert(id) {
            return false;
        }
        if self.seen_order.len() >= SEEN_FORWARDS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen_forwards.remove(&old);
            }
        }
        self.seen_order.push_back(id);
        true
    }

    /// Asks the loop for the peers' directory, at most once per announce interval.
    fn request_directory(&mut self, now: Now) {
        if now.mono_ms >= self.want_directory_ms {
            self.want_directory_ms = now.mono_ms + self.cfg.announce_interval_ms();
            self.outbox.want_directory = true;
        }
    }

    /// The next monotonic time (ms) at which [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let expiry = self.expiry.first().map(|&(d, _)| d);
        [
            expiry,
            self.queues.next_deadline(),
            self.remote.next_deadline(),
            Some(self.next_announce_ms),
            self.announce_more_ms,
            Some(self.next_sweep_ms),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Expires clients past their TTL (each leaves an expiry record for the peers), lets
    /// remote entries lapse past their deadline (no record), re-announces local clients
    /// heard from since their last announcement (refresh records, every
    /// [`Config::announce_interval_ms`]), drops queued events past their age and sweeps idle
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
                self.stats.expired += 1;
                self.go_offline(fp, now);
            }
        }
        while self.remote.pop_expired(now.mono_ms).is_some() {
            self.stats.remote_expired += 1;
        }
        if now.mono_ms >= self.next_announce_ms {
            self.next_announce_ms = now.mono_ms + self.cfg.announce_interval_ms();
            self.announce_more_ms = Some(now.mono_ms);
        }
        if self.announce_more_ms.is_some_and(|t| t <= now.mono_ms) {
            self.announce_more_ms = if self.announce(now) {
                None
            } else {
                Some(now.mono_ms + ANNOUNCE_RETRY_MS)
            };
        }
        self.queues.purge(now.mono_ms);
        if now.mono_ms >= self.next_sweep_ms {
            self.next_sweep_ms = now.mono_ms + SWEEP_EVERY_MS;
            self.lookup_budget.sweep(now.mono_ms);
            self.register_rate.sweep(now.mono_ms);
            self.punch_pairs.sweep(now.mono_ms);
            let oldest = self.fresh_horizon(now);
            self.fresh.retain(|_, f| f.last_ts >= oldest);
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
            if let Ok(v) = rec.to_vec() {
                self.outbox.push(PeerOut::Record(v), &mut self.stats);
            }
        }
    }

    /// Refresh records (kind 2) for the local clients heard from since they were last
    /// announced, while the outbox has room for bulk; true when none is left to announce.
    /// A pass that stops early goes on [`ANNOUNCE_RETRY_MS`] later, once the loop has
    /// drained the outbox (each call scans the table: O(n)).
    fn announce(&mut self, now: Now) -> bool {
        let Server {
            clients,
            outbox,
            stats,
            ..
        } = self;
        for (fp, c) in clients.iter_mut() {
            if c.last_seen_ms <= c.announced_ms {
                continue;
            }
            if !outbox.has_room_for_bulk() {
                return false;
            }
            c.announced_ms = c.last_seen_ms;
            let rec = DirRecord {
                hops: 0,
                fingerprint: *fp,
                timestamp: c.ts,
                age_ms: age_u32(now, c.last_seen_ms),
                body: RecordBody::Refresh,
            };
            if let Ok(v) = rec.to_vec() {
                outbox.push(PeerOut::Record(v), stats);
            }
        }
        true
    }

    /// Handles one datagram from `src` at `now`; each datagram to send is passed to `out`.
    pub fn handle_datagram(&mut self, now: Now, src: SocketAddr, data: &[u8], out: &mut Out<'_>) {
        self.stats.datagrams_in += 1;
        let src = canonical_addr(src);
        // Never answer a server, nor anything that could be a reply (no error ping-pong).
        let from_server = data.first().is_some_and(|p| p & PARAM_FROM_SERVER != 0);
        let root = match Root::parse(data) {
            Ok(r) => r,
            Err(e) => {
                if from_server {
                    self.stats.dropped += 1;
                    return;
                }
                let code = if e == WireError::TooLarge {
                    status::TOO_LARGE
                } else {
                    status::BAD_REQUEST
                };
                let limit = self.reply_limit(src, data.len());
                self.error(out, src, None, limit, code, 0xFF, wire_detail(e));
                return;
            }
        };
        if root.from_server() || root.packet_type.is_reply() {
            self.stats.dropped += 1;
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
                self.refuse(out, req, status::BAD_REQUEST, "unknown packet type");
            }
        }
    }

    /// How large a reply to `src` may be: unlimited for an address-checked (registered)
    /// source, else no larger than the request (no amplification).
    fn reply_limit(&self, src: SocketAddr, request_len: usize) -> usize {
        if self.by_addr.contains_key(&src) {
            MAX_DATAGRAM
        } else {
            request_len.min(MAX_DATAGRAM)
        }
    }

    /// Emits a server packet of `payload` to `dst` if it fits in `limit` bytes; returns
    /// whether it was sent.
    fn send(
        &mut self,
        out: &mut Out<'_>,
        now_unix: u64,
        dst: SocketAddr,
        shift: Option<u8>,
        payload: &Payload<'_>,
        limit: usize,
    ) -> bool {
        let header = RootHeader {
            params: PARAM_FROM_SERVER,
            shift_len: shift,
            packet_type: payload.packet_type(),
            signature: &[],
            timestamp: now_unix,
        };
        let total = header.len() + payload.buffer_len();
        if total > limit.min(MAX_DATAGRAM) {
            self.stats.dropped += 1;
            return false;
        }
        let Ok(h) = header.emit(&mut self.buf[..], &mut self.junk) else {
            self.stats.dropped += 1;
            return false;
        };
        match payload.emit(&mut self.buf[h..total]) {
            Ok(n) => {
                out(dst, &self.buf[..h + n]);
                self.stats.datagrams_out += 1;
                true
            }
            Err(_) => {
                self.stats.dropped += 1;
                false
            }
        }
    }

    /// Sends a type-7 error, its detail cut so the whole reply fits `limit` bytes; nothing
    /// when not even the fixed part fits.
    #[allow(clippy::too_many_arguments)]
    fn error(
        &mut self,
        out: &mut Out<'_>,
        dst: SocketAddr,
        shift: Option<u8>,
        limit: usize,
        code: u16,
        request_type: u8,
        detail: &str,
    ) {
        let header = RootHeader {
            params: PARAM_FROM_SERVER,
            shift_len: shift,
            packet_type: PacketType::Error,
            signature: &[],
            timestamp: 0,
        };
        let room = limit.min(MAX_DATAGRAM).saturating_sub(header.len());
        if room < ErrorReply::FIXED_LEN {
            self.stats.dropped += 1;
            return;
        }
        let detail = cut_utf8(detail, room - ErrorReply::FIXED_LEN);
        let reply = Payload::Error(ErrorReply {
            status: code,
            request_type,
            detail,
        });
        // The timestamp of a server packet is informational; errors carry 0 so that their
        // size never depends on the clock. (Size is fixed anyway: u64.)
        if self.send(out, 0, dst, shift, &reply, limit) {
            self.stats.errors[status_index(code)] += 1;
        }
    }

    /// Answers `req` with a type-7 error (see [`Self::error`]).
    fn refuse(&mut self, out: &mut Out<'_>, req: Req, code: u16, detail: &str) {
        self.error(out, req.src, req.shift, req.limit, code, req.ty, detail);
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
                self.stats.keepalives += 1;
                return;
            }
        }
        // Unknown address: a 404 tells a client that the server restarted, but only when
        // the keepalive is at least as large as the answer.
        self.error(
            out,
            src,
            shift,
            len,
            status::NOT_FOUND,
            0,
            "unknown address: register again",
        );
    }

    /// The freshness window (BRIEF.md, "Freshness"): `ts` within `freshness_s` of the
    /// server clock, either side. Always true with [`Config::accept_replayed`], which turns
    /// the window off so that a capture's old signed packets can be replayed.
    fn check_window(&self, now: Now, ts: u64) -> bool {
        self.cfg.accept_replayed || now.unix_s.abs_diff(ts) <= self.cfg.freshness_s
    }

    /// The oldest timestamp whose freshness state is still worth keeping: anything older
    /// fails the window check anyway. 0 (keep everything, within the table's bound) with
    /// [`Config::accept_replayed`], where old timestamps pass and the per-fingerprint
    /// "newest accepted" and replay rules are all that stands against a replay.
    fn fresh_horizon(&self, now: Now) -> u64 {
        if self.cfg.accept_replayed {
            0
        } else {
            now.unix_s.saturating_sub(self.cfg.freshness_s)
        }
    }

    /// Checks `ts`/`digest` against the freshness state of `fp` without changing it.
    fn check_fresh(&self, fp: &Fingerprint, ts: u64, digest: u64) -> Freshness {
        match self.fresh.get(fp) {
            None => Freshness::Ok,
            Some(f) if ts > f.last_ts => Freshness::Ok,
            Some(f) if ts < f.last_ts => {
                Freshness::Stale("older than the last packet accepted for this fingerprint")
            }
            Some(f) if f.digests.contains(&digest) => Freshness::Stale("replayed packet"),
            Some(f) if f.digests.len() >= MAX_SAME_SECOND => {
                Freshness::Stale("too many signed packets in one second")
            }
            Some(_) => Freshness::Ok,
        }
    }

    /// Most fingerprints with freshness state: twice the directory, so that every online
    /// client always has room whatever the offline ones hold.
    fn fresh_cap(&self) -> usize {
        self.cfg.max_clients.saturating_mul(2).max(16)
    }

    /// Makes room for freshness state of `fp` if needed: drops entries whose newest
    /// timestamp has left the window (no packet that old passes the window check anyway;
    /// none with [`Config::accept_replayed`]), then entries of fingerprints that are not
    /// online. False when still full.
    fn fresh_room(&mut self, now: Now, fp: &Fingerprint) -> bool {
        if self.fresh.contains_key(fp) || self.fresh.len() < self.fresh_cap() {
            return true;
        }
        let oldest = self.fresh_horizon(now);
        self.fresh.retain(|_, f| f.last_ts >= oldest);
        if self.fresh.len() < self.fresh_cap() {
            return true;
        }
        let clients = &self.clients;
        self.fresh.retain(|k, _| clients.contains_key(k));
        self.fresh.len() < self.fresh_cap()
    }

    /// Records an accepted signed packet; the caller has made room with
    /// [`Self::fresh_room`].
    fn record_fresh(&mut self, fp: Fingerprint, ts: u64, digest: u64) {
        let f = self.fresh.entry(fp).or_default();
        if ts > f.last_ts {
            f.last_ts = ts;
            f.digests.clear();
        }
        f.digests.push(digest);
    }

    #[allow(clippy::too_many_lines)] // issue 9: to be split into named steps
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
        // Cheap checks first: layout, freshness window, cookie, rate per prefix.
        let reg = match Register::parse(root.payload) {
            Ok(r) => r,
            Err(e) => return self.refuse(out, req, status::BAD_REQUEST, wire_detail(e)),
        };
        if !self.check_window(now, root.timestamp) {
            return self.refuse(
                out,
                req,
                status::CONFLICT,
                "timestamp outside the freshness window; check the clock",
            );
        }
        // `accept_replayed`: no address check. The cookie bytes, if any, are whatever the
        // capture had (minted by another server, for another address): covered by the
        // signature, but not checked.
        let cookie_ok = self.cfg.accept_replayed
            || reg
                .cookie
                .is_some_and(|c| self.cookies.check(src, c, now.mono_ms));
        if !cookie_ok {
            let cookie = self.cookies.make(src, now.mono_ms);
            if self.send(out, now.unix_s, src, shift, &Payload::Cookie(cookie), limit) {
                self.stats.cookies_sent += 1;
            }
            return;
        }
        if !self.exempt(src) && !self.register_rate.take(prefix_of(src.ip()), 1, now.mono_ms) {
            return self.refuse(
                out,
                req,
                status::RATE_LIMITED,
                "too many registrations from this network; slow down",
            );
        }
        // Expensive checks: certificate (cached by fingerprint) and signature.
        let fp = identity::fingerprint(reg.cert);
        let key = match self.cert_key(now, fp, reg.cert) {
            Ok(key) => key,
            Err(e) => {
                let msg = identity_detail(e);
                return self.refuse(out, req, status::UNAUTHORIZED, msg);
            }
        };
        let Some(msg) = root.signed_message(&mut self.scratch[..]) else {
            return self.refuse(out, req, status::TOO_LARGE, "too large");
        };
        if key.verify(msg, root.signature).is_err() {
            return self.refuse(
                out,
                req,
                status::UNAUTHORIZED,
                "signature does not verify with the certificate's key",
            );
        }
        let digest = packet_digest(PacketType::Register, root.payload);
        if let Freshness::Stale(why) = self.check_fresh(&fp, root.timestamp, digest) {
            return self.refuse(out, req, status::CONFLICT, why);
        }
        if !self.fresh_room(now, &fp) {
            return self.refuse(out, req, status::FULL, "freshness table full");
        }
        // Newest timestamp per fingerprint wins across the federation.
        if self.remote.get(&fp).is_some_and(|r| r.ts >= root.timestamp) {
            return self.refuse(
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
                None => return self.refuse(out, req, status::FULL, "directory full"),
            }
        }
        self.record_fresh(fp, root.timestamp, digest);
        // Accept: bind fp -> src (moving it if it had another address, and unbinding any
        // other fingerprint that held src).
        if let Some(other) = self.by_addr.get(&src).copied() {
            if other != fp {
                self.go_offline(other, now);
            }
        }
        let deadline = now.mono_ms + self.cfg.ttl_ms;
        let ts = root.timestamp;
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
        self.stats.registrations += 1;
        if announce {
            self.announce_registration(now, fp);
        }
        let ok = Payload::Ok(Some(OkInfo {
            keepalive_s: self.cfg.advised_keepalive_s(),
            boot_epoch: self.boot_epoch,
            reflexive: src,
        }));
        self.send(out, now.unix_s, src, shift, &ok, MAX_DATAGRAM);
        self.deliver_queued(now, fp, out);
    }

    /// The key of the certificate `cert` (whose fingerprint is `fp`), from the cache when it
    /// is there and in date, else verified (self-signed, valid at `now`) and cached.
    fn cert_key(
        &mut self,
        now: Now,
        fp: Fingerprint,
        cert: &[u8],
    ) -> Result<VerifyingKey, identity::IdentityError> {
        match self.certs.get(&fp) {
            Some(vc) if vc.is_valid_at(now.unix_s) => Ok(vc.key.clone()),
            _ => {
                let vc = identity::verify_self_signed(cert, now.unix_s)?;
                let key = vc.key.clone();
                self.cache_cert(fp, vc);
                Ok(key)
            }
        }
    }

    /// A registration record (kind 1, hops 0, home = our alias) for local client `fp`.
    fn announce_registration(&mut self, now: Now, fp: Fingerprint) {
        let Some(c) = self.clients.get_mut(&fp) else {
            return;
        };
        c.announced_ms = c.last_seen_ms;
        let rec = local_record(&self.alias, now, fp, c);
        if let Ok(v) = rec.to_vec() {
            self.outbox.push(PeerOut::Record(v), &mut self.stats);
        }
    }

    fn cache_cert(&mut self, fp: Fingerprint, vc: identity::VerifiedCertificate) {
        if self.cfg.max_cert_cache == 0 {
            return;
        }
        while self.certs.len() >= self.cfg.max_cert_cache {
            match self.cert_order.pop_front() {
                Some(old) => {
                    self.certs.remove(&old);
                }
                None => break,
            }
        }
        if self.certs.insert(fp, vc).is_none() {
            self.cert_order.push_back(fp);
        }
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
            if self.send(out, now.unix_s, addr, shift, &p, MAX_DATAGRAM) {
                self.stats.delivered += 1;
            }
        }
    }

    fn exempt(&self, src: SocketAddr) -> bool {
        self.cfg.exempt_loopback && is_loopback(src.ip())
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
            return self.refuse(out, req, status::FORBIDDEN, "register before relaying");
        };
        let relay = match Relay::parse(root.payload) {
            Ok(r) => r,
            Err(WireError::BadLength) => {
                return self.refuse(out, req, status::TOO_LARGE, "event larger than 1200 bytes")
            }
            Err(e) => return self.refuse(out, req, status::BAD_REQUEST, wire_detail(e)),
        };
        if root.signature.is_empty() {
            return self.refuse(out, req, status::UNAUTHORIZED, "relay must be signed");
        }
        if !self.check_window(now, root.timestamp) {
            return self.refuse(
                out,
                req,
                status::CONFLICT,
                "timestamp outside the freshness window; check the clock",
            );
        }
        let Some(msg) = root.signed_message(&mut self.scratch[..]) else {
            return self.refuse(out, req, status::TOO_LARGE, "too large");
        };
        let verified = self
            .clients
            .get(&from)
            .is_some_and(|c| c.key.verify(msg, root.signature).is_ok());
        if !verified {
            return self.refuse(
                out,
                req,
                status::UNAUTHORIZED,
                "signature does not verify with the registered certificate",
            );
        }
        let digest = packet_digest(PacketType::Relay, root.payload);
        if let Freshness::Stale(why) = self.check_fresh(&from, root.timestamp, digest) {
            return self.refuse(out, req, status::CONFLICT, why);
        }
        if !self.fresh_room(now, &from) {
            return self.refuse(out, req, status::FULL, "freshness table full");
        }
        let dest = relay.peer;
        let forward = Payload::Relay(Relay {
            peer: from,
            event: relay.event,
        });
        if let Some((addr, dshift)) = self.clients.get(&dest).map(|c| (c.addr, c.shift)) {
            let header = RootHeader {
                params: PARAM_FROM_SERVER,
                shift_len: dshift,
                packet_type: PacketType::Relay,
                signature: &[],
                timestamp: now.unix_s,
            };
            if header.len() + forward.buffer_len() > MAX_DATAGRAM {
                return self.refuse(
                    out,
                    req,
                    status::TOO_LARGE,
                    "event too large for the recipient's shifted layout",
                );
            }
            self.record_fresh(from, root.timestamp, digest);
            self.send(out, now.unix_s, addr, dshift, &forward, MAX_DATAGRAM);
            self.stats.relayed += 1;
        } else if self.remote.contains(&dest) {
            // Homed elsewhere: its NAT mapping is open to its home server only.
            self.record_fresh(from, root.timestamp, digest);
            self.push_forward(dest, from, ForwardBody::Relay(relay.event));
        } else {
            match self.queues.push(dest, from, relay.event, now.mono_ms) {
                Ok(()) => {
                    self.record_fresh(from, root.timestamp, digest);
                    self.stats.queued += 1;
                }
                Err(QueueError::RecipientFull) => {
                    self.refuse(out, req, status::FULL, "recipient's queue is full")
                }
                Err(QueueError::GlobalFull) => {
                    self.refuse(out, req, status::FULL, "relay queue full")
                }
                Err(QueueError::SenderFull) => self.refuse(
                    out,
                    req,
                    status::RATE_LIMITED,
                    "too many of your events wait for offline recipients",
                ),
            }
        }
    }

    #[allow(clippy::too_many_lines)] // issue 9: to be split into named steps
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
            return self.refuse(out, req, status::FORBIDDEN, "register before looking up");
        };
        let target = match parse_lookup(root.payload) {
            Ok(fp) => fp,
            Err(e) => return self.refuse(out, req, status::BAD_REQUEST, wire_detail(e)),
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
        let home_len = match home {
            Home::Ours => self.alias.len(),
            Home::Remote => self.remote.get(&target).map_or(0, |r| r.home.len()),
            Home::None => 0,
        };
        let probe = LookupAnswer {
            target,
            status,
            home: "",
        };
        let header = RootHeader {
            params: PARAM_FROM_SERVER,
            shift_len: shift,
            packet_type: PacketType::LookupAnswer,
            signature: &[],
            timestamp: 0,
        };
        let cost = (header.len() + probe.buffer_len() + home_len) as u64;
        if !self.exempt(src) && !self.lookup_budget.take(src.ip(), cost, now.mono_ms) {
            self.stats.dropped += 1;
            return;
        }
        // The answer borrows the alias while `send` needs `&mut self`: move it out and back
        // (no allocation).
        let alias = match home {
            Home::Ours => std::mem::take(&mut self.alias),
            Home::Remote => self.remote.take_home(&target),
            Home::None => String::new(),
        };
        let answer = LookupAnswer {
            target,
            status,
            home: &alias,
        };
        self.send(
            out,
            now.unix_s,
            src,
            shift,
            &Payload::LookupAnswer(answer),
            MAX_DATAGRAM,
        );
        match home {
            Home::Ours => self.alias = alias,
            Home::Remote => self.remote.put_home(&target, alias),
            Home::None => {}
        }
        self.stats.lookups += 1;
        if let Some((taddr, tshift)) = online {
            if target != asker && self.punch_pairs.allow((asker, target), now.mono_ms) {
                let punch = Payload::ServerEvent(ServerEvent::Punch {
                    peer: asker,
                    addr: src,
                });
                self.send(out, now.unix_s, taddr, tshift, &punch, MAX_DATAGRAM);
            }
        } else if home == Home::Remote
            && target != asker
            && self.punch_pairs.allow((asker, target), now.mono_ms)
        {
            // The target's NAT mapping is open to its home server only: the punch request
            // goes out from there.
            self.push_forward(target, asker, ForwardBody::Punch(src));
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
            return self.refuse(out, req, status::FORBIDDEN, "register before fetching");
        };
        if !root.payload.is_empty() {
            return self.refuse(out, req, status::BAD_REQUEST, "fetch has no payload");
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

/// Digest of `(type, payload)` for replay detection (the signature bytes are left out:
/// ECDSA lets an attacker vary them).
fn packet_digest(ty: PacketType, payload: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update([u8::from(ty)]);
    h.update(payload);
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

fn wire_detail(e: WireError) -> &'static str {
    match e {
        WireError::Truncated => "malformed: packet ends inside a field",
        WireError::TrailingData => "malformed: trailing bytes after the last field",
        WireError::TooLarge => "datagram larger than 1400 bytes",
        WireError::BadParams => "malformed: reserved params bits set",
        WireError::BadLength => "malformed: a length field does not fit",
        WireError::UnknownType => "unknown packet type",
        _ => "malformed",
    }
}

fn identity_detail(e: identity::IdentityError) -> &'static str {
    e.detail()
}
