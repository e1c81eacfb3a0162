//! The I/O-free UDP server: fed `(now, source address, datagram)`, it updates the
//! directory and calls `out(destination, bytes)` for each datagram to send. It never reads
//! a clock or touches a socket; the event loop in `net` (or a test) drives it.
//!
//! Invariants: nothing malformed changes state; no reply to a source that has not passed
//! the address check is larger than its request; server-sent packets (params 0x01) and
//! reply types (1, 3, 6, 7, 9) are never answered; every table is bounded. Keepalive and
//! lookup allocate nothing per packet. Source: BRIEF.md, "UDP plane".

use super::config::Config;
use super::cookie::CookieJar;
use super::limits::{is_loopback, prefix_of, Buckets, Interval};
use super::queue::{QueueError, RelayQueues};
use crate::identity::{self, VerifyingKey};
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

    /// Number of clients online.
    pub fn online(&self) -> usize {
        self.clients.len()
    }

    /// The directory entry of `fp`, if online.
    pub fn client(&self, fp: &Fingerprint, now: Now) -> Option<ClientView> {
        self.clients.get(fp).map(|c| ClientView {
            addr: c.addr,
            age_ms: now.mono_ms.saturating_sub(c.last_seen_ms),
            shift: c.shift,
        })
    }

    /// The directory's canonical digest: `(online clients, SHA-512)` over the entries
    /// sorted by fingerprint, each `[fingerprint 32][family u8][addr 4|16][port u16]`
    /// (IPv4-mapped addresses as IPv4). For `rendezvous status`; O(n log n), not a hot path.
    pub fn directory_digest(&self) -> (u64, [u8; 64]) {
        use sha2::Sha512;
        let mut entries: Vec<(&Fingerprint, SocketAddr)> =
            self.clients.iter().map(|(fp, c)| (fp, c.addr)).collect();
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

    /// The next monotonic time (ms) at which [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let expiry = self.expiry.first().map(|&(d, _)| d);
        [
            expiry,
            self.queues.next_deadline(),
            Some(self.next_sweep_ms),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Expires clients past their TTL, drops queued events past their age and sweeps idle
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
        self.queues.purge(now.mono_ms);
        if now.mono_ms >= self.next_sweep_ms {
            self.next_sweep_ms = now.mono_ms + SWEEP_EVERY_MS;
            self.lookup_budget.sweep(now.mono_ms);
            self.register_rate.sweep(now.mono_ms);
            self.punch_pairs.sweep(now.mono_ms);
            let oldest = now.unix_s.saturating_sub(self.cfg.freshness_s);
            self.fresh.retain(|_, f| f.last_ts >= oldest);
        }
    }

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
        }
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

    fn check_window(&self, now: Now, ts: u64) -> bool {
        now.unix_s.abs_diff(ts) <= self.cfg.freshness_s
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
    /// timestamp has left the window (no packet that old passes the window check anyway),
    /// then entries of fingerprints that are not online. False when still full.
    fn fresh_room(&mut self, now: Now, fp: &Fingerprint) -> bool {
        if self.fresh.contains_key(fp) || self.fresh.len() < self.fresh_cap() {
            return true;
        }
        let oldest = now.unix_s.saturating_sub(self.cfg.freshness_s);
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
        let cookie_ok = reg
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
        let key = match self.certs.get(&fp) {
            Some(vc) if (vc.not_before..=vc.not_after).contains(&(now.unix_s as i64)) => {
                vc.key.clone()
            }
            _ => match identity::verify_self_signed(reg.cert, now.unix_s) {
                Ok(vc) => {
                    let key = vc.key.clone();
                    self.cache_cert(fp, vc);
                    key
                }
                Err(e) => {
                    let msg = identity_detail(e);
                    return self.refuse(out, req, status::UNAUTHORIZED, msg);
                }
            },
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
        match self.clients.get_mut(&fp) {
            Some(c) => {
                if c.addr != src {
                    self.by_addr.remove(&c.addr);
                }
                c.addr = src;
                c.last_seen_ms = now.mono_ms;
                c.shift = shift;
                c.key = key;
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
                    },
                );
                self.expiry.insert((deadline, fp));
            }
        }
        self.by_addr.insert(src, fp);
        self.stats.registrations += 1;
        let ok = Payload::Ok(Some(OkInfo {
            keepalive_s: self.cfg.advised_keepalive_s(),
            boot_epoch: self.boot_epoch,
            reflexive: src,
        }));
        self.send(out, now.unix_s, src, shift, &ok, MAX_DATAGRAM);
        self.deliver_queued(now, fp, out);
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
                true,
                Some((c.addr, c.shift)),
            ),
            None => match self.offline.get(&target) {
                Some(&seen) => (
                    LookupStatus::Offline {
                        age_s: secs(now.mono_ms.saturating_sub(seen)),
                    },
                    true,
                    None,
                ),
                None => (LookupStatus::Unknown, false, None),
            },
        };
        let home_len = if home { self.alias.len() } else { 0 };
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
        let alias = std::mem::take(&mut self.alias);
        let answer = LookupAnswer {
            target,
            status,
            home: if home { &alias } else { "" },
        };
        self.send(
            out,
            now.unix_s,
            src,
            shift,
            &Payload::LookupAnswer(answer),
            MAX_DATAGRAM,
        );
        self.alias = alias;
        self.stats.lookups += 1;
        if let Some((taddr, tshift)) = online {
            if target != asker && self.punch_pairs.allow((asker, target), now.mono_ms) {
                let punch = Payload::ServerEvent(ServerEvent::Punch {
                    peer: asker,
                    addr: src,
                });
                self.send(out, now.unix_s, taddr, tshift, &punch, MAX_DATAGRAM);
            }
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
