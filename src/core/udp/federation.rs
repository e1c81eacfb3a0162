//! What the UDP core owes the peer servers (docs/PROTOCOL.md §8.16): the bounded outbox of
//! DirRecords and Forwards for the TCP plane to flood, forward ids with the set of ids
//! already seen, the schedule of the refresh pass and of directory requests, and the
//! federation counters. It builds and queues bodies; it never reads the directory.

use super::stats::FederationStats;
use super::UdpConfig;
use crate::core::Now;
use crate::wire::tcp::dir::{DirRecord, Forward, ForwardBody, HOPS_OFFSET};
use crate::wire::tcp::dir::{MAX_FORWARD_HOPS, MAX_RECORD_HOPS};
use crate::wire::Fingerprint;
use std::collections::{HashSet, VecDeque};

/// Most bytes of bodies waiting in the peer outbox (16 MiB).
const MAX_PEER_OUT_BYTES: usize = 16 << 20;
/// How long an unfinished refresh pass waits for the outbox to drain, ms.
const ANNOUNCE_RETRY_MS: u64 = 10;
/// How many forward ids are remembered for dropping copies.
const SEEN_FORWARDS: usize = 4096;

/// What the core hands the TCP plane for the peer servers; the loop sends each item to
/// every peer link (docs/PROTOCOL.md §8.16, "On the links"). Bodies only: the loop frames
/// them as `[cmd u8][len u16][body]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOut {
    /// A DirRecord body ([`crate::wire::tcp::dir::DirRecord`], frame command 16), 46 to 1729
    /// bytes.
    Record(Vec<u8>),
    /// A Forward body ([`crate::wire::tcp::dir::Forward`], frame command 18), 93 to 1274 bytes.
    Forward(Vec<u8>),
    /// Ask the peers for their whole directory (command 17) and feed the records of the
    /// answer to [`super::UdpCore::apply_peer_record`]. Yielded at most once per announce
    /// interval for unknown refreshes (and whenever the outbox overflowed).
    WantDirectory,
}

impl PeerOut {
    fn body_len(&self) -> usize {
        match self {
            PeerOut::Record(b) | PeerOut::Forward(b) => b.len(),
            PeerOut::WantDirectory => 0,
        }
    }
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

    /// Appends `item`, dropping the oldest while full; returns how many were dropped.
    fn push(&mut self, item: PeerOut) -> u64 {
        let mut dropped = 0;
        while !self.items.is_empty()
            && (self.items.len() >= self.cap || self.bytes + item.body_len() > MAX_PEER_OUT_BYTES)
        {
            if let Some(old) = self.items.pop_front() {
                self.bytes -= old.body_len();
            }
            dropped += 1;
            self.want_directory = true;
        }
        self.bytes += item.body_len();
        self.items.push_back(item);
        dropped
    }

    fn pop(&mut self) -> Option<PeerOut> {
        if std::mem::take(&mut self.want_directory) {
            return Some(PeerOut::WantDirectory);
        }
        let item = self.items.pop_front()?;
        self.bytes -= item.body_len();
        Some(item)
    }
}

/// Forward ids: a splitmix64 sequence from a seed-derived start, so that ids never repeat
/// here and look random across servers, and the last [`SEEN_FORWARDS`] ids seen (ours
/// included) to drop copies.
#[derive(Debug)]
struct ForwardIds {
    state: u64,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl ForwardIds {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let id = z ^ (z >> 31);
        self.remember(id);
        id
    }

    /// Remembers `id`; false when it was already remembered.
    fn remember(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        if self.order.len() >= SEEN_FORWARDS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id);
        true
    }
}

/// The federation part of the UDP core.
#[derive(Debug)]
pub(super) struct Federation {
    outbox: Outbox,
    ids: ForwardIds,
    /// The refresh interval in force, ms ([`UdpConfig::announce_interval_ms`]).
    announce_interval_ms: u64,
    /// Earliest monotonic time at which an unknown refresh may ask for the directory again.
    want_directory_ms: u64,
    /// When the next refresh pass starts, monotonic ms.
    next_announce_ms: u64,
    /// When an unfinished refresh pass (stopped for lack of outbox room) goes on.
    announce_more_ms: Option<u64>,
    /// The federation counters (the peer-record and forward handlers count into them).
    pub(super) stats: FederationStats,
}

impl Federation {
    /// The federation state of `cfg` at `now`; forward ids start from `forward_seed`.
    pub(super) fn new(cfg: &UdpConfig, forward_seed: u64, now: Now) -> Self {
        let announce_interval_ms = cfg.announce_interval_ms();
        Federation {
            outbox: Outbox::new(cfg.federation.max_peer_out),
            ids: ForwardIds {
                state: forward_seed,
                seen: HashSet::with_capacity(SEEN_FORWARDS),
                order: VecDeque::with_capacity(SEEN_FORWARDS),
            },
            announce_interval_ms,
            want_directory_ms: 0,
            next_announce_ms: now.mono_ms + announce_interval_ms,
            announce_more_ms: None,
            stats: FederationStats::default(),
        }
    }

    /// The next item for the peers: see [`super::UdpCore::poll_peer_out`].
    pub(super) fn poll(&mut self) -> Option<PeerOut> {
        self.outbox.pop()
    }

    /// True when [`Self::poll`] has an item.
    pub(super) fn pending(&self) -> bool {
        !self.outbox.items.is_empty() || self.outbox.want_directory
    }

    fn push(&mut self, item: PeerOut) {
        self.stats.peer_out_dropped += self.outbox.push(item);
    }

    /// Queues record `rec` for the peers.
    pub(super) fn push_record(&mut self, rec: &DirRecord<'_>) {
        if let Ok(v) = rec.to_vec() {
            self.push(PeerOut::Record(v));
        }
    }

    /// Queues record `rec` of the refresh pass if the outbox has room for bulk; false (and
    /// nothing queued) when it has not.
    pub(super) fn push_bulk_record(&mut self, rec: &DirRecord<'_>) -> bool {
        if !self.outbox.has_room_for_bulk() {
            return false;
        }
        self.push_record(rec);
        true
    }

    /// Passes on a peer's record `body` that changed our directory: hops + 1, while
    /// `hops` is under 16.
    pub(super) fn pass_on_record(&mut self, body: &[u8], hops: u8) {
        if hops < MAX_RECORD_HOPS {
            let mut v = body.to_vec();
            v[HOPS_OFFSET] = hops + 1;
            self.push(PeerOut::Record(v));
        }
    }

    /// Passes on a peer's forward `body` for a client not ours: hops + 1, while `hops` is
    /// under 8.
    pub(super) fn pass_on_forward(&mut self, body: &[u8], hops: u8) {
        if hops < MAX_FORWARD_HOPS {
            let mut v = body.to_vec();
            v[HOPS_OFFSET] = hops + 1;
            self.push(PeerOut::Forward(v));
            self.stats.forwards_out += 1;
        }
    }

    /// Queues a new forward (hops 0, a fresh id) of `body` from `source` toward the home of
    /// `target`.
    pub(super) fn forward(
        &mut self,
        target: Fingerprint,
        source: Fingerprint,
        body: ForwardBody<'_>,
    ) {
        let f = Forward {
            hops: 0,
            id: self.ids.next(),
            target,
            source,
            body,
        };
        if let Ok(v) = f.to_vec() {
            self.push(PeerOut::Forward(v));
            self.stats.forwards_out += 1;
        }
    }

    /// Remembers forward id `id`; false (counted as a duplicate) when it was seen before.
    pub(super) fn first_sight(&mut self, id: u64) -> bool {
        let new = self.ids.remember(id);
        if !new {
            self.stats.forwards_duplicate += 1;
        }
        new
    }

    /// Asks the loop for the peers' directory, at most once per announce interval.
    pub(super) fn request_directory(&mut self, now: Now) {
        if now.mono_ms >= self.want_directory_ms {
            self.want_directory_ms = now.mono_ms + self.announce_interval_ms;
            self.outbox.want_directory = true;
        }
    }

    /// The next monotonic time (ms) at which the refresh pass has work.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        [Some(self.next_announce_ms), self.announce_more_ms]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a refresh pass should run at `now`: one starts every announce interval, and
    /// an unfinished one goes on [`ANNOUNCE_RETRY_MS`] after it stopped. Report how it went
    /// with [`Self::refresh_done`].
    pub(super) fn refresh_due(&mut self, now: Now) -> bool {
        if now.mono_ms >= self.next_announce_ms {
            self.next_announce_ms = now.mono_ms + self.announce_interval_ms;
            self.announce_more_ms = Some(now.mono_ms);
        }
        self.announce_more_ms.is_some_and(|t| t <= now.mono_ms)
    }

    /// Ends a refresh pass at `now`: `finished`, or to go on once the outbox drained.
    pub(super) fn refresh_done(&mut self, now: Now, finished: bool) {
        self.announce_more_ms = if finished {
            None
        } else {
            Some(now.mono_ms + ANNOUNCE_RETRY_MS)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::udp::{FederationConfig, UdpTimers};
    use crate::wire::tcp::dir::RecordBody;

    fn at(mono_ms: u64) -> Now {
        Now { mono_ms, unix_s: 0 }
    }

    fn federation(max_peer_out: usize) -> Federation {
        let cfg = UdpConfig {
            federation: FederationConfig {
                max_peer_out,
                ..FederationConfig::default()
            },
            timers: UdpTimers {
                ttl_ms: 3_000, // announce every 1 000 ms
                ..UdpTimers::default()
            },
            ..UdpConfig::default()
        };
        Federation::new(&cfg, 42, at(0))
    }

    fn expiry(n: u8) -> DirRecord<'static> {
        DirRecord {
            hops: 0,
            fingerprint: Fingerprint([n; 32]),
            timestamp: 1,
            age_ms: 0,
            body: RecordBody::Expiry,
        }
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_asks_for_the_directory() {
        let mut f = federation(4);
        for n in 0..6 {
            f.push_record(&expiry(n));
        }
        assert_eq!(f.stats.peer_out_dropped, 2);
        assert_eq!(f.poll(), Some(PeerOut::WantDirectory));
        let left: Vec<u8> = std::iter::from_fn(|| f.poll())
            .map(|p| match p {
                PeerOut::Record(b) => DirRecord::parse(&b).unwrap().fingerprint.0[0],
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(left, [2, 3, 4, 5], "the oldest went first");
        // Bulk (the refresh pass) stops at half of the outbox.
        assert!(f.push_bulk_record(&expiry(0)));
        assert!(f.push_bulk_record(&expiry(1)));
        assert!(!f.push_bulk_record(&expiry(2)));
    }

    #[test]
    fn forwards_are_passed_on_within_their_hops_and_copies_are_dropped() {
        let mut f = federation(100);
        f.forward(
            Fingerprint([1; 32]),
            Fingerprint([2; 32]),
            ForwardBody::Relay(b"e"),
        );
        let Some(PeerOut::Forward(body)) = f.poll() else {
            panic!("no forward");
        };
        let id = Forward::parse(&body).unwrap().id;
        assert!(!f.first_sight(id), "our own id coming back is a copy");
        assert!(f.first_sight(id ^ 1));
        assert_eq!(f.stats.forwards_duplicate, 1);
        f.pass_on_forward(&body, MAX_FORWARD_HOPS - 1);
        f.pass_on_forward(&body, MAX_FORWARD_HOPS);
        let Some(PeerOut::Forward(passed)) = f.poll() else {
            panic!("not passed on");
        };
        assert_eq!(Forward::parse(&passed).unwrap().hops, MAX_FORWARD_HOPS);
        assert_eq!(f.poll(), None, "not past 8 hops");
        assert_eq!(f.stats.forwards_out, 2);
        let rec = expiry(7).to_vec().unwrap();
        f.pass_on_record(&rec, 0);
        f.pass_on_record(&rec, MAX_RECORD_HOPS);
        let Some(PeerOut::Record(r)) = f.poll() else {
            panic!("record not passed on");
        };
        assert_eq!(DirRecord::parse(&r).unwrap().hops, 1);
        assert_eq!(f.poll(), None);
    }

    #[test]
    fn refresh_pass_and_directory_requests_keep_their_schedule() {
        let mut f = federation(100);
        assert_eq!(f.next_deadline(), Some(1_000));
        assert!(!f.refresh_due(at(999)));
        assert!(f.refresh_due(at(1_000)));
        f.refresh_done(at(1_000), false);
        assert_eq!(
            f.next_deadline(),
            Some(1_010),
            "an unfinished pass goes on soon"
        );
        assert!(f.refresh_due(at(1_010)));
        f.refresh_done(at(1_010), true);
        assert_eq!(f.next_deadline(), Some(2_000));
        f.request_directory(at(1_500));
        f.request_directory(at(2_499));
        assert_eq!(f.poll(), Some(PeerOut::WantDirectory));
        assert_eq!(f.poll(), None, "once per announce interval");
        f.request_directory(at(2_500));
        assert_eq!(f.poll(), Some(PeerOut::WantDirectory));
    }
}
