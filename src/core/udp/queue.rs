//! The bounded RAM queue of relayed events waiting for offline recipients
//! (docs/PROTOCOL.md §5.8): per-recipient depth and age limits, a per-sender share and a
//! global byte limit shared fairly (a sender with less queued evicts the oldest event of
//! the sender with the most); an event is delivered once, then dropped. Nothing here is
//! ever written to disk.

use crate::wire::Fingerprint;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The sender's fingerprint.
    pub from: Fingerprint,
    /// The opaque event (1..=1200 bytes).
    pub event: Box<[u8]>,
    /// Dropped when the monotonic clock passes this, in milliseconds.
    pub expires_ms: u64,
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The recipient already has `QueueBounds::depth` events waiting.
    #[error("recipient's queue is full")]
    RecipientFull,
    /// The global byte limit is reached.
    #[error("server's relay queue is full")]
    GlobalFull,
    /// The sender already has its share of queued events waiting.
    #[error("too many of your events are waiting for offline recipients")]
    SenderFull,
}

/// What one sender has queued: event bytes, and the recipient of each event in push order
/// (at most the per-sender share).
#[derive(Debug, Default)]
struct Share {
    bytes: usize,
    to: VecDeque<Fingerprint>,
}

/// Queues of events per recipient fingerprint.
#[derive(Debug)]
pub struct RelayQueues {
    depth: usize,
    per_sender: usize,
    count: usize,
    senders: HashMap<Fingerprint, Share>,
    /// `(bytes queued, sender)` for every sender: the largest holder is the last.
    by_bytes: BTreeSet<(usize, Fingerprint)>,
    /// Events evicted to make room for a sender with a smaller share.
    evicted: u64,
    /// Events dropped undelivered because they outlived their age.
    expired: u64,
    age_ms: u64,
    max_bytes: usize,
    bytes: usize,
    per: HashMap<Fingerprint, VecDeque<Queued>>,
    // (expires_ms, recipient) in push order; push times are monotonic, so this is also
    // deadline order.
    order: VecDeque<(u64, Fingerprint)>,
}

impl RelayQueues {
    /// Changes the bounds as [`Self::new`] gives them. Events already queued stay, with the
    /// deadline they were queued with; the new bounds refuse or evict from the next push.
    pub fn set_bounds(&mut self, depth: usize, per_sender: usize, age_ms: u64, max_bytes: usize) {
        (self.depth, self.per_sender) = (depth, per_sender);
        (self.age_ms, self.max_bytes) = (age_ms, max_bytes);
    }

    /// Queues holding at most `depth` events per recipient and `per_sender` events from one
    /// sender, each for `age_ms` milliseconds, and `max_bytes` event bytes in all.
    pub fn new(depth: usize, per_sender: usize, age_ms: u64, max_bytes: usize) -> Self {
        RelayQueues {
            depth,
            per_sender,
            count: 0,
            senders: HashMap::new(),
            by_bytes: BTreeSet::new(),
            evicted: 0,
            expired: 0,
            age_ms,
            max_bytes,
            bytes: 0,
            per: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Queues `event` from `from` for `to` at `now_ms`. When the global byte limit is
    /// reached, the oldest events of the sender holding the most bytes are evicted to make
    /// room, as long as that sender would still hold more than `from` (so every sender
    /// keeps a fair share however many identities flood the queue).
    ///
    /// # Errors
    /// [`QueueError::RecipientFull`], [`QueueError::SenderFull`] or
    /// [`QueueError::GlobalFull`]; nothing changes then.
    pub fn push(
        &mut self,
        to: Fingerprint,
        from: Fingerprint,
        event: &[u8],
        now_ms: u64,
    ) -> Result<(), QueueError> {
        let share = self.senders.get(&from);
        if share.map_or(0, |s| s.to.len()) >= self.per_sender {
            return Err(QueueError::SenderFull);
        }
        if self.per.get(&to).is_some_and(|q| q.len() >= self.depth) {
            return Err(QueueError::RecipientFull);
        }
        let mine = share.map_or(0, |s| s.bytes) + event.len();
        if event.len() > self.max_bytes || !self.room_for(from, mine, event.len()) {
            return Err(QueueError::GlobalFull);
        }
        self.make_room(from, mine, event.len());
        let q = self.per.entry(to).or_default();
        let expires_ms = now_ms + self.age_ms;
        q.push_back(Queued {
            from,
            event: event.into(),
            expires_ms,
        });
        self.bytes += event.len();
        self.count += 1;
        let share = self.senders.entry(from).or_default();
        self.by_bytes.remove(&(share.bytes, from));
        share.bytes += event.len();
        share.to.push_back(to);
        self.by_bytes.insert((share.bytes, from));
        self.order.push_back((expires_ms, to));
        // Deadlines of delivered events stay in `order` until they pass; keep it in
        // proportion to what is actually queued.
        if self.order.len() > 2 * self.count + 1024 {
            self.compact();
        }
        Ok(())
    }

    /// Rebuilds the deadline list from the events still queued.
    fn compact(&mut self) {
        let mut all: Vec<(u64, Fingerprint)> = self
            .per
            .iter()
            .flat_map(|(to, q)| q.iter().map(move |e| (e.expires_ms, *to)))
            .collect();
        all.sort_unstable();
        all.dedup();
        self.order = all.into();
    }

    /// Whether `len` more bytes fit, counting what evictions may free: the bytes of the
    /// senders (other than `from`) holding more than `mine` once `from`'s event is in.
    fn room_for(&self, from: Fingerprint, mine: usize, len: usize) -> bool {
        let mut free = self.max_bytes - self.bytes.min(self.max_bytes);
        for &(held, sender) in self.by_bytes.iter().rev() {
            if free >= len || held <= mine {
                break;
            }
            if sender != from {
                free += held - mine.min(held);
            }
        }
        free >= len
    }

    /// Evicts the oldest events of the largest holder, while it holds more than `mine`,
    /// until `len` more bytes fit. Each sender it touches ends at or below `mine`, so it
    /// frees at least what [`Self::room_for`] counted.
    fn make_room(&mut self, from: Fingerprint, mine: usize, len: usize) {
        while self.bytes + len > self.max_bytes {
            let Some(&(held, top)) = self.by_bytes.last() else {
                return;
            };
            if top == from || held <= mine || !self.evict_oldest_of(top) {
                return;
            }
        }
    }

    /// Drops the oldest queued event of `sender`; false when it has none.
    fn evict_oldest_of(&mut self, sender: Fingerprint) -> bool {
        let Some(to) = self
            .senders
            .get(&sender)
            .and_then(|s| s.to.front().copied())
        else {
            return false;
        };
        let Some(q) = self.per.get_mut(&to) else {
            return false;
        };
        let Some(i) = q.iter().position(|e| e.from == sender) else {
            return false;
        };
        let Some(item) = q.remove(i) else {
            return false;
        };
        if q.is_empty() {
            self.per.remove(&to);
        }
        self.forget(&item, to);
        self.evicted += 1;
        true
    }

    /// Accounts for one event for `to` leaving the queue.
    fn forget(&mut self, item: &Queued, to: Fingerprint) {
        self.bytes -= item.event.len();
        self.count -= 1;
        if let Some(share) = self.senders.get_mut(&item.from) {
            self.by_bytes.remove(&(share.bytes, item.from));
            share.bytes -= item.event.len();
            if let Some(i) = share.to.iter().position(|r| *r == to) {
                share.to.remove(i);
            }
            if share.to.is_empty() {
                self.senders.remove(&item.from);
            } else {
                self.by_bytes.insert((share.bytes, item.from));
            }
        }
    }

    /// Events evicted so far to make room for senders with smaller shares.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Events dropped so far because they outlived their age undelivered.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Events queued now.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no event is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes and returns every event waiting for `to` (oldest first) that has not expired.
    pub fn take(&mut self, to: &Fingerprint, now_ms: u64) -> Vec<Queued> {
        match self.per.remove(to) {
            None => Vec::new(),
            Some(q) => {
                let mut out = Vec::with_capacity(q.len());
                for item in q {
                    self.forget(&item, *to);
                    if item.expires_ms > now_ms {
                        out.push(item);
                    } else {
                        self.expired += 1;
                    }
                }
                out
            }
        }
    }

    /// Drops events past their age; returns the next expiry (ms) if any remain.
    pub fn purge(&mut self, now_ms: u64) -> Option<u64> {
        while let Some(&(deadline, to)) = self.order.front() {
            if deadline > now_ms {
                return Some(deadline);
            }
            self.order.pop_front();
            let mut gone = Vec::new();
            if let Some(q) = self.per.get_mut(&to) {
                while q.front().is_some_and(|e| e.expires_ms <= now_ms) {
                    if let Some(e) = q.pop_front() {
                        gone.push(e);
                    }
                }
                if q.is_empty() {
                    self.per.remove(&to);
                }
            }
            self.expired += gone.len() as u64;
            for e in &gone {
                self.forget(e, to);
            }
        }
        None
    }

    /// Next expiry deadline (ms), if anything may be queued.
    pub fn next_deadline(&self) -> Option<u64> {
        self.order.front().map(|&(d, _)| d)
    }

    /// Event bytes queued now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries in the deadline list (for tests of its bound).
    pub fn deadlines(&self) -> usize {
        self.order.len()
    }

    /// Events queued for `to`.
    pub fn len_for(&self, to: &Fingerprint) -> usize {
        self.per.get(to).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_age_and_once() {
        let a = Fingerprint([1; 32]);
        let b = Fingerprint([2; 32]);
        let mut q = RelayQueues::new(2, 100, 1000, 10);
        q.push(a, b, b"1234", 0).unwrap();
        q.push(a, b, b"5678", 10).unwrap();
        assert_eq!(q.push(a, b, b"9", 20), Err(QueueError::RecipientFull));
        // The sender holding the most cannot evict its own events.
        assert_eq!(q.push(b, b, b"xyz", 20), Err(QueueError::GlobalFull));
        assert_eq!(q.purge(1000), Some(1010));
        assert_eq!(q.len_for(&a), 1);
        assert_eq!(
            (q.expired(), q.len()),
            (1, 1),
            "the aged event is counted as expired"
        );
        let got = q.take(&a, 1005);
        assert_eq!(&*got[0].event, b"5678");
        assert!(q.take(&a, 1005).is_empty());
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.purge(5000), None);
    }

    /// T10 (docs/SECURITY.md): 60 identities once filled the 16 MiB queue in 4.6 s and
    /// every other sender got 503 for 10 minutes. A sender with a smaller share evicts the
    /// oldest events of the largest holder; the flooders cannot evict it back.
    #[test]
    fn a_full_queue_is_shared_fairly() {
        let fp = |i: u8| Fingerprint([i; 32]);
        // 16 KiB in all; 4 flooders with 1 KiB events fill it (4 KiB each).
        let mut q = RelayQueues::new(32, 256, 60_000, 16 * 1024);
        let ev = [0x42; 1024];
        for i in 0..16u8 {
            q.push(fp(100 + i), fp(1 + i % 4), &ev, 0).unwrap();
        }
        assert_eq!(q.push(fp(200), fp(1), &ev, 0), Err(QueueError::GlobalFull));
        // An honest sender gets in, by evicting one flooder's oldest event.
        q.push(fp(201), fp(9), b"hello", 1).unwrap();
        assert_eq!(q.evicted(), 1);
        assert_eq!(q.len_for(&fp(201)), 1);
        assert!(q.bytes() <= 16 * 1024);
        // A flooder cannot evict the honest sender's event (it holds far more).
        assert_eq!(q.push(fp(202), fp(2), &ev, 2), Err(QueueError::GlobalFull));
        assert_eq!(q.len_for(&fp(201)), 1);
        // Many small honest senders each get in.
        for i in 0..8u8 {
            q.push(fp(210 + i), fp(20 + i), &[i; 100], 3).unwrap();
        }
        assert!(q.bytes() <= 16 * 1024);
        // Everything still adds up once delivered.
        for i in 0..=255u8 {
            q.take(&fp(i), 4);
        }
        assert_eq!((q.bytes(), q.count), (0, 0));
        assert!(q.senders.is_empty() && q.by_bytes.is_empty());
    }

    #[test]
    fn per_sender_quota_and_bounded_deadlines() {
        let (a, b, c) = (
            Fingerprint([1; 32]),
            Fingerprint([2; 32]),
            Fingerprint([3; 32]),
        );
        let mut q = RelayQueues::new(10, 3, 60_000, 1 << 20);
        for _ in 0..3 {
            q.push(a, b, b"x", 0).unwrap();
        }
        assert_eq!(q.push(c, b, b"x", 0), Err(QueueError::SenderFull));
        q.push(c, a, b"x", 0).unwrap(); // another sender still may
        assert_eq!(q.take(&a, 1).len(), 3);
        q.push(c, b, b"x", 1).unwrap(); // b's share is free again
                                        // Push-and-deliver churn keeps the deadline list in proportion.
        for t in 0..100_000u64 {
            q.push(a, b, b"y", t).unwrap();
            assert_eq!(q.take(&a, t).len(), 1);
        }
        assert!(q.deadlines() <= 2 * 2 + 1024 + 1, "{}", q.deadlines());
    }
}
