//! The fingerprint directory (docs/PROTOCOL.md §5.6, §5.10, §5.11, §8.16): local clients by
//! fingerprint and by address with their expiry set, the offline fingerprints remembered
//! for lookups, and the remote entries (clients homed at other servers). It keeps those
//! tables in step and within their bounds and chooses whom to evict; `records` is what the
//! peers' DirRecords do to it, its digest and its pages. It never checks signatures and
//! never sends.

mod arena;
mod heap;
mod records;
pub(in crate::core::udp) mod slab;
mod spki;
mod unlisted;

pub use records::DirectoryPage;

pub(super) use records::{Refresh, Verdict};
pub(super) use unlisted::Binding;

use super::config::UdpConfig;
use super::remote::RemoteTable;
use crate::core::Now;
use crate::identity::VerifyingKey;
use crate::wire::name::cut_utf8;
use crate::wire::tcp::dir::{DirRecord, RecordBody};
use crate::wire::udp::LookupStatus;
use crate::wire::{Fingerprint, Root};
use arena::{Arena, Stored};
use heap::SlotHeap;
use slab::{Slab, SlotIndex};
use std::collections::HashMap;
use std::net::SocketAddr;
use unlisted::Unlisted;

/// One online client registered here: a fixed-size record (112 bytes on 64-bit targets)
/// in the directory's slab, plus its registration in the directory's arena.
#[derive(Debug, Clone)]
pub(super) struct Client {
    /// Its fingerprint (the key of the directory's index).
    fp: Fingerprint,
    /// Its reflexive address (the source of its registration).
    pub(super) addr: SocketAddr,
    /// Monotonic ms: its last registration or keepalive.
    pub(super) last_seen_ms: u64,
    /// Monotonic ms: the deadline it has in the expiry set (at most `last_seen_ms + TTL`).
    deadline_ms: u64,
    /// Its shifted layout length, if it registered shifted.
    pub(super) shift: Option<u8>,
    /// Whether it sent a keepalive since it registered (clients that never did are evicted
    /// first).
    kept_alive: bool,
    /// Where the key of its certificate is in `signed`'s payload (its SubjectPublicKeyInfo,
    /// byte offsets), to check its relays; `[0, 0]` when it was not found.
    spki: [u16; 2],
    /// The signed timestamp of the registration held (Unix s).
    pub(super) ts: u64,
    /// Where that registration's signature and payload are in the directory's arena, for
    /// records and directory pages.
    signed: Stored,
    /// `last_seen_ms` as last announced to peers (registration or refresh record).
    announced_ms: u64,
}

impl Client {
    /// The key of its certificate, read from its registration (`None` if it does not
    /// parse, which a certificate that passed admission does).
    fn key(&self, arena: &Arena) -> Option<VerifyingKey> {
        spki::key_at(arena.get(self.signed).1, self.spki)
    }

    /// A record (hops 0) of kind `body` about this client, its age taken at `now`.
    pub(super) fn record<'a>(
        &self,
        now: Now,
        fp: Fingerprint,
        body: RecordBody<'a>,
    ) -> DirRecord<'a> {
        DirRecord {
            hops: 0,
            fingerprint: fp,
            timestamp: self.ts,
            age_ms: age_u32(now, self.last_seen_ms),
            body,
        }
    }
}

/// Whether a new fingerprint fits in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    /// It fits (or is already there).
    Free,
    /// It fits once this client, which never kept alive, goes offline.
    Evict(Fingerprint),
    /// Full of clients that kept alive: refuse (503).
    Full,
}

/// Where a lookup finds its target, and where its punch request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Located<'a> {
    /// The answer's status (docs/PROTOCOL.md §5.6).
    pub(super) status: LookupStatus,
    /// The target's home alias ("" when unknown).
    pub(super) home: &'a str,
    /// Where the punch request for the target goes.
    pub(super) punch: PunchVia,
}

/// Where a punch request for a lookup's target goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PunchVia {
    /// Straight to the local client at this address, in this layout.
    Direct(SocketAddr, Option<u8>),
    /// As a Forward toward its home server (docs/PROTOCOL.md §8.16).
    Home,
    /// Nowhere: the target is offline or unknown.
    Nowhere,
}

/// The directory's bounds on its local tables (docs/PROTOCOL.md §5.11) and the TTL.
struct Limits {
    /// A local client's time to live without a keepalive, ms (docs/PROTOCOL.md §5.10).
    ttl_ms: u64,
    /// Most local clients.
    max_clients: usize,
    /// Most offline fingerprints remembered.
    max_offline: usize,
}

/// The directory of local and remote clients. The local clients are records in one slab,
/// found by fingerprint and by address through two slot indexes, ordered by deadline and
/// (those that never kept alive) by registration time in two slot heaps, their
/// registrations in an arena of size classes: no allocation of its own per client
/// (docs/CAPACITY.md, "Memory per client").
pub(super) struct Directory {
    /// This server's alias: the home shown for local clients (at most 255 bytes).
    alias: String,
    /// This server's node uid: the home of local clients in federation.
    uid: [u8; 16],
    limits: Limits,
    /// The local clients.
    clients: Slab<Client>,
    /// Their registrations.
    arena: Arena,
    /// Their slots by fingerprint.
    by_fp: SlotIndex,
    /// Their slots by address.
    by_addr: SlotIndex,
    /// By `(deadline, fingerprint)`: every local client.
    expiry: SlotHeap,
    /// By `(last registration ms, fingerprint)`: the local clients that never sent a
    /// keepalive, the eviction candidates, the longest silent first.
    never_kept_alive: SlotHeap,
    /// Offline fingerprints and when they were last seen (monotonic ms).
    offline: HashMap<Fingerprint, u64>,
    remote: RemoteTable,
    /// Sources bound by unlisted registrations (never in `by_addr`).
    unlisted: Unlisted,
}

impl Directory {
    /// An empty directory with the bounds and alias of `cfg`, for the server `uid`.
    pub(super) fn new(cfg: &UdpConfig, uid: [u8; 16]) -> Self {
        Directory {
            alias: cut_utf8(&cfg.identity.alias, 255).to_string(),
            uid,
            limits: Limits {
                ttl_ms: cfg.timers.ttl_ms,
                max_clients: cfg.tables.max_clients,
                max_offline: cfg.tables.max_offline,
            },
            clients: Slab::default(),
            arena: Arena::default(),
            by_fp: SlotIndex::default(),
            by_addr: SlotIndex::default(),
            expiry: SlotHeap::default(),
            never_kept_alive: SlotHeap::default(),
            offline: HashMap::new(),
            remote: RemoteTable::new(cfg.tables.max_remote),
            unlisted: Unlisted::new(cfg.timers.ttl_ms, cfg.tables.max_clients),
        }
    }

    /// Bounds the local clients at `max_clients`. Lowered below the clients online, none is
    /// dropped: new registrations are refused until expiries bring the count under it.
    pub(super) fn set_max_clients(&mut self, max_clients: usize) {
        self.limits.max_clients = max_clients;
    }

    /// Number of local clients.
    pub(super) fn len(&self) -> usize {
        self.clients.len()
    }

    /// The local client `fp`.
    #[inline]
    pub(super) fn client(&self, fp: &Fingerprint) -> Option<&Client> {
        self.clients.get(self.slot(fp)?)
    }

    /// The slot of local client `fp`.
    #[inline]
    fn slot(&self, fp: &Fingerprint) -> Option<u32> {
        self.by_fp.find(&Some(*fp), fp_of(&self.clients))
    }

    /// The slot of the local client listed at `src`.
    #[inline]
    fn slot_at(&self, src: &SocketAddr) -> Option<u32> {
        self.by_addr.find(&Some(*src), addr_of(&self.clients))
    }

    /// The remote entries.
    pub(super) fn remote(&self) -> &RemoteTable {
        &self.remote
    }

    /// The fingerprint whose directory address is `src`, if any (listed registrations
    /// only; see [`Self::speaker`]).
    pub(super) fn at(&self, src: &SocketAddr) -> Option<Fingerprint> {
        self.clients.get(self.slot_at(src)?).map(|c| c.fp)
    }

    /// Whom `src` speaks for at `now`: the fingerprint whose directory address it is, else
    /// the one a live unlisted registration bound it to. Allocates nothing.
    #[inline]
    pub(super) fn speaker(&self, now: Now, src: &SocketAddr) -> Option<Fingerprint> {
        match self.slot_at(src) {
            Some(s) => self.clients.get(s).map(|c| c.fp),
            None => self.unlisted.at(now, src).map(|b| b.fp),
        }
    }

    /// [`Self::speaker`] with that client's key (to check a relay): read from the listed
    /// client's registration, or the unlisted binding's (cloned); `None` for the key when
    /// it does not parse.
    pub(super) fn speaker_key(
        &self,
        now: Now,
        src: &SocketAddr,
    ) -> Option<(Fingerprint, Option<VerifyingKey>)> {
        match self.slot_at(src) {
            Some(s) => self.clients.get(s).map(|c| (c.fp, c.key(&self.arena))),
            None => self
                .unlisted
                .at(now, src)
                .map(|b| (b.fp, Some(b.key.clone()))),
        }
    }

    /// The live unlisted binding of `src` at `now`, if `src` has one.
    pub(super) fn unlisted_at(&self, now: Now, src: &SocketAddr) -> Option<&Binding> {
        self.unlisted.at(now, src)
    }

    /// Whether `src` is bound, listed or unlisted (the address check of docs/PROTOCOL.md
    /// §5.5).
    #[inline]
    pub(super) fn is_bound(&self, now: Now, src: &SocketAddr) -> bool {
        self.slot_at(src).is_some() || self.unlisted.at(now, src).is_some()
    }

    /// Binds `src` to `fp` by an unlisted registration accepted at `now` (key `key`, layout
    /// `shift`; docs/PROTOCOL.md §5.2): for the client's own requests from there, until
    /// the TTL passes without a keepalive from it. The directory's address of `fp` does
    /// not change. The caller has taken offline another fingerprint listed at `src`; when
    /// `fp` itself is listed there, nothing is bound (the listed binding speaks for it).
    pub(super) fn bind_unlisted(
        &mut self,
        now: Now,
        src: SocketAddr,
        fp: Fingerprint,
        key: VerifyingKey,
        shift: Option<u8>,
    ) {
        if self.slot_at(&src).is_none() {
            self.unlisted.bind(now, src, fp, key, shift);
        }
    }

    /// Forgets the unlisted bindings that have lapsed at `now`.
    pub(super) fn sweep_unlisted(&mut self, now: Now) {
        self.unlisted.sweep(now);
    }

    /// Unlisted bindings held.
    pub(super) fn unlisted_len(&self) -> usize {
        self.unlisted.len()
    }

    /// Whether `fp` is a client of ours that went offline here (and is not held remotely).
    pub(super) fn is_offline_here(&self, fp: &Fingerprint) -> bool {
        !self.remote.contains(fp) && self.offline.contains_key(fp)
    }

    /// A keepalive from `src`: refreshes the client listed there, or the unlisted binding
    /// of `src`; false when there is neither.
    #[inline]
    pub(super) fn keepalive(&mut self, now: Now, src: &SocketAddr) -> bool {
        let Some(s) = self.slot_at(src) else {
            return self.unlisted.keepalive(now, src);
        };
        if self.clients.get(s).is_some_and(|c| !c.kept_alive) {
            self.never_kept_alive.remove(s, seen_key(&self.clients));
        }
        let Some(c) = self.clients.get_mut(s) else {
            return false;
        };
        c.kept_alive = true;
        c.last_seen_ms = now.mono_ms;
        true
    }

    /// Where a lookup of `target` at `now` finds it (docs/PROTOCOL.md §5.6).
    pub(super) fn locate(&self, now: Now, target: &Fingerprint) -> Located<'_> {
        let age_s = |seen: u64| secs(now.mono_ms.saturating_sub(seen));
        if let Some(c) = self.client(target) {
            return Located {
                status: LookupStatus::Online {
                    addr: c.addr,
                    age_s: age_s(c.last_seen_ms),
                },
                home: &self.alias,
                punch: PunchVia::Direct(c.addr, c.shift),
            };
        }
        match (self.remote.get(target), self.offline.get(target)) {
            (Some(r), _) => Located {
                status: LookupStatus::Online {
                    addr: r.addr,
                    age_s: age_s(r.last_seen_ms),
                },
                home: &r.home,
                punch: PunchVia::Home,
            },
            (None, Some(&seen)) => Located {
                status: LookupStatus::Offline { age_s: age_s(seen) },
                home: &self.alias,
                punch: PunchVia::Nowhere,
            },
            (None, None) => Located {
                status: LookupStatus::Unknown,
                home: "",
                punch: PunchVia::Nowhere,
            },
        }
    }

    /// Whether `fp` fits (docs/PROTOCOL.md §5.11): when full, the client that never kept
    /// alive and registered longest ago is chosen to make room.
    pub(super) fn room_for(&self, fp: &Fingerprint) -> Room {
        if self.clients.len() < self.limits.max_clients || self.slot(fp).is_some() {
            return Room::Free;
        }
        let victim = self
            .never_kept_alive
            .peek()
            .and_then(|s| self.clients.get(s));
        victim.map_or(Room::Full, |c| Room::Evict(c.fp))
    }

    /// Binds `fp` to `src` for registration `root`, accepted at `now`: a new
    /// client, or a known one refreshed (moved, when `src` is another address). A remote
    /// entry of `fp` goes: it is ours now; so does an unlisted binding of `src`. The caller
    /// has made room ([`Self::room_for`]) and taken any other fingerprint bound to `src`
    /// offline. Returns whether this is news for the peers: a new client, a newer
    /// registration, or a move.
    pub(super) fn register(
        &mut self,
        now: Now,
        fp: Fingerprint,
        src: SocketAddr,
        root: &Root<'_>,
    ) -> bool {
        let (news, s) = match self.slot(&fp) {
            Some(s) => (self.reregister(now, s, src, root), s),
            None => {
                self.offline.remove(&fp);
                let signed = self.arena.store(root.signature, root.payload);
                let s = self.clients.insert(Client {
                    fp,
                    addr: src,
                    last_seen_ms: now.mono_ms,
                    deadline_ms: now.mono_ms + self.limits.ttl_ms,
                    shift: root.shift_len,
                    kept_alive: false,
                    spki: spki::spki_in(root.payload).unwrap_or_default(),
                    ts: root.timestamp,
                    signed: signed.unwrap_or_default(),
                    announced_ms: now.mono_ms,
                });
                self.by_fp.insert(&Some(fp), s, fp_of(&self.clients));
                self.expiry.push(s, deadline_key(&self.clients));
                self.never_kept_alive.push(s, seen_key(&self.clients));
                (true, s)
            }
        };
        self.remote.remove(&fp);
        self.unlisted.remove(&src);
        self.by_addr.insert(&Some(src), s, addr_of(&self.clients));
        news
    }

    /// A new registration `root` of the client in slot `s` from `src` (see
    /// [`Self::register`]); its address is indexed again by the caller. Returns whether it
    /// is news.
    fn reregister(&mut self, now: Now, s: u32, src: SocketAddr, root: &Root<'_>) -> bool {
        let Some(&Client { addr, .. }) = self.clients.get(s) else {
            return false;
        };
        if addr != src {
            self.by_addr.remove(&Some(addr), s, addr_of(&self.clients));
        }
        let Some(c) = self.clients.get_mut(s) else {
            return false;
        };
        let ts = root.timestamp;
        let news = ts > c.ts || (ts == c.ts && c.addr != src);
        c.addr = src;
        c.last_seen_ms = now.mono_ms;
        c.shift = root.shift_len;
        if news {
            c.ts = ts;
            self.arena.free(c.signed);
            c.signed = self
                .arena
                .store(root.signature, root.payload)
                .unwrap_or_default();
            c.spki = spki::spki_in(root.payload).unwrap_or_default();
        }
        // A client that never kept alive moves to the back of the eviction order.
        self.never_kept_alive.update(s, seen_key(&self.clients));
        news
    }

    /// Takes the client in slot `s` out of the slab, its indexes and its heaps.
    fn unlink(&mut self, s: u32) -> Option<Client> {
        let &Client { fp, addr, .. } = self.clients.get(s)?;
        self.by_fp.remove(&Some(fp), s, fp_of(&self.clients));
        self.by_addr.remove(&Some(addr), s, addr_of(&self.clients));
        self.expiry.remove(s, deadline_key(&self.clients));
        self.never_kept_alive.remove(s, seen_key(&self.clients));
        let c = self.clients.remove(s)?;
        self.arena.free(c.signed);
        Some(c)
    }

    /// Takes local client `fp` out of the directory (TTL, eviction, its address taken by
    /// another fingerprint) and remembers it as offline (forgetting an arbitrary offline
    /// fingerprint when that table is full). Returns the client, for its expiry record.
    pub(super) fn go_offline(&mut self, now: Now, fp: Fingerprint) -> Option<Client> {
        let c = self.unlink(self.slot(&fp)?)?;
        if self.offline.len() >= self.limits.max_offline {
            if let Some(k) = self.offline.keys().next().copied() {
                self.offline.remove(&k);
            }
        }
        if self.limits.max_offline > 0 {
            self.offline.insert(fp, c.last_seen_ms.min(now.mono_ms));
        }
        Some(c)
    }

    /// Takes offline the next local client past its TTL at `now` and returns it (for its
    /// expiry record); `None` when no deadline is due. A client heard from since its
    /// deadline was set gets a later deadline instead.
    pub(super) fn pop_expired(&mut self, now: Now) -> Option<(Fingerprint, Client)> {
        while let Some(s) = self.expiry.peek() {
            let Some(c) = self.clients.get_mut(s) else {
                // Cannot happen: `unlink` takes a client out of the heap.
                self.expiry.remove(s, deadline_key(&self.clients));
                continue;
            };
            if c.deadline_ms > now.mono_ms {
                return None;
            }
            let real = c.last_seen_ms + self.limits.ttl_ms;
            if real > now.mono_ms {
                c.deadline_ms = real;
                self.expiry.update(s, deadline_key(&self.clients));
            } else {
                let fp = c.fp;
                return self.go_offline(now, fp).map(|c| (fp, c));
            }
        }
        None
    }

    /// Removes one remote entry past its deadline at `now`.
    pub(super) fn pop_remote_expired(&mut self, now: Now) -> Option<Fingerprint> {
        self.remote.pop_expired(now.mono_ms)
    }

    /// The earliest deadline of a local or remote entry, monotonic ms.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        let local = self.expiry.peek().and_then(|s| self.clients.get(s));
        let local = local.map(|c| c.deadline_ms);
        [local, self.remote.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Reads the fingerprint of a slot (the key of `by_fp`).
fn fp_of(clients: &Slab<Client>) -> impl Fn(u32) -> Option<Fingerprint> + '_ {
    |s| clients.get(s).map(|c| c.fp)
}

/// Reads the address of a slot (the key of `by_addr`).
fn addr_of(clients: &Slab<Client>) -> impl Fn(u32) -> Option<SocketAddr> + '_ {
    |s| clients.get(s).map(|c| c.addr)
}

/// The expiry order: `(deadline ms, fingerprint)`.
fn deadline_key(clients: &Slab<Client>) -> impl Fn(u32) -> (u64, Fingerprint) + '_ {
    order_key(clients, |c| c.deadline_ms)
}

/// The eviction order of clients that never kept alive: `(last registration ms,
/// fingerprint)`.
fn seen_key(clients: &Slab<Client>) -> impl Fn(u32) -> (u64, Fingerprint) + '_ {
    order_key(clients, |c| c.last_seen_ms)
}

/// An order of the slots by `(ms(client), fingerprint)` (a free slot, never in a heap,
/// last).
fn order_key(
    clients: &Slab<Client>,
    ms: fn(&Client) -> u64,
) -> impl Fn(u32) -> (u64, Fingerprint) + '_ {
    move |s| {
        let last = (u64::MAX, Fingerprint([0xFF; 32]));
        clients.get(s).map_or(last, |c| (ms(c), c.fp))
    }
}

/// Milliseconds from `seen_ms` to `now`, saturated to a u32 (a record's age).
fn age_u32(now: Now, seen_ms: u64) -> u32 {
    u32::try_from(now.mono_ms.saturating_sub(seen_ms)).unwrap_or(u32::MAX)
}

fn secs(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::udp::remote::{Remote, Signed};
    use crate::core::udp::{TableBounds, UdpIdentity, UdpTimers};
    use crate::identity::{Identity, KeyAlgorithm};
    use crate::wire::udp::root::PARAM_TO_SERVER;
    use crate::wire::{PacketType, RootHeader};

    fn at(mono_ms: u64) -> Now {
        Now {
            mono_ms,
            unix_s: 1_000,
        }
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 4000))
    }

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    fn key() -> VerifyingKey {
        let id = Identity::generate(KeyAlgorithm::Ed25519, "directory").unwrap();
        id.verifying_key().clone()
    }

    /// A registration packet with timestamp `ts` (its signature and payload are only
    /// stored, never checked here).
    fn root_bytes(ts: u64) -> Vec<u8> {
        let header = RootHeader {
            params: PARAM_TO_SERVER,
            shift_len: None,
            packet_type: PacketType::Register,
            signature: &[1, 2, 3],
            timestamp: ts,
        };
        header.to_vec(&[0, 1, 9]).unwrap()
    }

    /// The node uid of the server named `home` in these tests: "A" < "B" < "C" < "D".
    fn uid(home: &str) -> [u8; 16] {
        [home.as_bytes()[0]; 16]
    }

    /// Server B's directory.
    fn directory(max_clients: usize, max_offline: usize) -> Directory {
        let cfg = UdpConfig {
            identity: UdpIdentity {
                alias: "B".into(),
                node_uid: None,
            },
            timers: UdpTimers {
                ttl_ms: 1_000,
                ..UdpTimers::default()
            },
            tables: TableBounds {
                max_clients,
                max_offline,
                max_remote: 2,
                ..TableBounds::default()
            },
            ..UdpConfig::default()
        };
        Directory::new(&cfg, uid("B"))
    }

    fn register(d: &mut Directory, now: Now, n: u8, ts: u64, k: &VerifyingKey) -> bool {
        let bytes = root_bytes(ts);
        let root = Root::parse(&bytes).unwrap();
        let _ = k; // the key is read from the registration's certificate
        d.register(now, fp(n), addr(n), &root)
    }

    fn remote(home: &str, ts: u64, n: u8, k: &VerifyingKey) -> Remote {
        Remote {
            ts,
            addr: addr(n),
            home_uid: uid(home),
            home: home.into(),
            last_seen_ms: 0,
            deadline_ms: 1_000,
            hops: 0,
            key: k.clone(),
            signed: Signed::new(&[1], &[2]),
        }
    }

    /// The record sizes docs/CAPACITY.md ("Memory per client") adds up.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_client_record_stays_small() {
        assert_eq!(std::mem::size_of::<Option<Client>>(), 112);
        assert_eq!(std::mem::size_of::<Stored>(), 8);
    }

    #[test]
    fn removed_clients_leave_no_trace_and_their_slots_are_reused() {
        let k = key();
        let mut d = directory(10, 10);
        for n in 1..=3 {
            register(&mut d, at(0), n, 5, &k);
        }
        assert!(d.go_offline(at(10), fp(2)).is_some());
        assert!(d.go_offline(at(10), fp(2)).is_none(), "once");
        assert_eq!((d.at(&addr(2)), d.len()), (None, 2));
        assert_eq!(d.clients.free.len(), 1);
        register(&mut d, at(20), 4, 5, &k);
        assert_eq!(d.clients.free.len(), 0, "slot reused");
        assert_eq!(d.at(&addr(4)), Some(fp(4)));
        assert_eq!(d.room_for(&fp(9)), Room::Free);
        // Expiry order survives the reuse: 1 and 3 at 1000, then 4 at 1020.
        let gone: Vec<_> =
            std::iter::from_fn(|| d.pop_expired(at(1_020)).map(|(f, _)| f)).collect();
        assert_eq!(gone, [fp(1), fp(3), fp(4)]);
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn eviction_chooses_a_client_that_never_kept_alive() {
        let k = key();
        let mut d = directory(2, 10);
        assert!(register(&mut d, at(0), 1, 5, &k), "a new client is news");
        assert!(register(&mut d, at(10), 2, 5, &k));
        assert!(
            !register(&mut d, at(20), 2, 5, &k),
            "the same registration is not"
        );
        assert_eq!(d.room_for(&fp(1)), Room::Free, "already there");
        assert_eq!(
            d.room_for(&fp(3)),
            Room::Evict(fp(1)),
            "closest to expiry first"
        );
        assert!(d.keepalive(at(30), &addr(1)));
        assert_eq!(d.room_for(&fp(3)), Room::Evict(fp(2)));
        assert!(d.keepalive(at(30), &addr(2)));
        assert_eq!(d.room_for(&fp(3)), Room::Full);
        assert!(!d.keepalive(at(30), &addr(3)), "unknown address");
    }

    #[test]
    fn expiry_follows_keepalives_and_offline_is_bounded() {
        let k = key();
        let mut d = directory(10, 1);
        register(&mut d, at(0), 1, 5, &k);
        register(&mut d, at(0), 2, 5, &k);
        assert!(d.keepalive(at(600), &addr(1)));
        assert_eq!(d.next_deadline(), Some(1_000));
        let (gone, c) = d.pop_expired(at(1_000)).expect("2 expires");
        assert_eq!((gone, c.ts), (fp(2), 5));
        assert!(
            d.pop_expired(at(1_000)).is_none(),
            "1 was heard from at 600"
        );
        assert_eq!(d.next_deadline(), Some(1_600));
        assert_eq!(d.at(&addr(2)), None);
        let found = d.locate(at(3_000), &fp(2));
        assert_eq!(found.status, LookupStatus::Offline { age_s: 3 });
        assert_eq!((found.home, found.punch), ("B", PunchVia::Nowhere));
        assert_eq!(d.pop_expired(at(1_600)).map(|(f, _)| f), Some(fp(1)));
        let forgotten = d.locate(at(3_000), &fp(2));
        assert_eq!(
            forgotten.status,
            LookupStatus::Unknown,
            "one offline entry at most"
        );
        assert!(d.is_offline_here(&fp(1)));
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn peer_registrations_follow_timestamps_then_home_uids() {
        let k = key();
        let mut d = directory(10, 10);
        register(&mut d, at(0), 1, 5, &k);
        let judge = |d: &mut Directory, home: &str, ts: u64| {
            d.judge_registration(fp(1), ts, uid(home), addr(9), 500)
        };
        assert_eq!(judge(&mut d, "B", 9), Verdict::Unchanged, "our own uid");
        assert_eq!(judge(&mut d, "C", 4), Verdict::Unchanged, "older");
        assert_eq!(
            judge(&mut d, "A", 5),
            Verdict::Unchanged,
            "a tie lost to our uid"
        );
        assert_eq!(judge(&mut d, "C", 5), Verdict::Install { moved: true });
        assert_eq!(d.install_remote(fp(1), remote("C", 5, 9, &k), true), Ok(()));
        assert!(
            d.client(&fp(1)).is_none() && d.at(&addr(1)).is_none(),
            "it moved"
        );
        assert_eq!(judge(&mut d, "C", 5), Verdict::Refreshed(500));
        assert_eq!(judge(&mut d, "A", 5), Verdict::Unchanged, "a tie lost to C");
        assert_eq!(judge(&mut d, "D", 5), Verdict::Install { moved: false });
        let found = d.locate(at(2_000), &fp(1));
        assert_eq!((found.home, found.punch), ("C", PunchVia::Home));
        assert_eq!(d.refresh_remote(fp(1), 5, 1_700), Refresh::Moved(1_200));
        assert_eq!(d.refresh_remote(fp(1), 4, 1_700), Refresh::Known);
        assert_eq!(d.refresh_remote(fp(2), 4, 1_700), Refresh::Unknown);
        d.install_remote(fp(2), remote("C", 5, 8, &k), false)
            .unwrap();
        let new = d.judge_registration(fp(3), 5, uid("C"), addr(7), 0);
        assert_eq!(new, Verdict::Full, "two remote entries at most");
        assert!(
            !d.expire_remote(fp(1), 4),
            "only with exactly that timestamp"
        );
        assert!(d.expire_remote(fp(1), 5));
        assert!(register(&mut d, at(2_000), 2, 6, &k));
        assert!(
            d.remote().get(&fp(2)).is_none(),
            "registered here: ours now"
        );
    }
}
