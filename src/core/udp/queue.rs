//! The bounded RAM queue of relayed events waiting for offline recipients
//! (docs/PROTOCOL.md §5.8): per-recipient depth and age limits, a per-sender share and a
//! global byte limit; an event is delivered once, then dropped. Nothing here is ever
//! written to disk.

use crate::wire::Fingerprint;
use std::collections::{HashMap, VecDeque};

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

/// Queues of events per recipient fingerprint.
#[derive(Debug)]
pub struct RelayQueues {
    depth: usize,
    per_sender: usize,
    count: usize,
    senders: HashMap<Fingerprint, usize>,
    age_ms: u64,
    max_bytes: usize,
    bytes: usize,
    per: HashMap<Fingerprint, VecDeque<Queued>>,
    // (expires_ms, recipient) in push order; push times are monotonic, so this is also
    // deadline order.
    order: VecDeque<(u64, Fingerprint)>,
}

impl RelayQueues {
    /// Queues holding at most `depth` events per recipient and `per_sender` events from one
    /// sender, each for `age_ms` milliseconds, and `max_bytes` event bytes in all.
    pub fn new(depth: usize, per_sender: usize, age_ms: u64, max_bytes: usize) -> Self {
        RelayQueues {
            depth,
            per_sender,
            count: 0,
            senders: HashMap::new(),
            age_ms,
            max_bytes,
            bytes: 0,
            per: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Queues `event` from `from` for `to` at `now_ms`.
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
        if self.bytes + event.len() > self.max_bytes {
            return Err(QueueError::GlobalFull);
        }
        if self.senders.get(&from).copied().unwrap_or(0) >= self.per_sender {
            return Err(QueueError::SenderFull);
        }
        let q = self.per.entry(to).or_default();
        if q.len() >= self.depth {
            if q.is_empty() {
                self.per.remove(&to);
            }
            return Err(QueueError::RecipientFull);
        }
        let expires_ms = now_ms + self.age_ms;
        q.push_back(Queued {
            from,
            event: event.into(),
            expires_ms,
        });
        self.bytes += event.len();
        self.count += 1;
        *self.senders.entry(from).or_default() += 1;
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

    /// Accounts for one event leaving the queue.
    fn forget(&mut self, item: &Queued) {
        self.bytes -= item.event.len();
        self.count -= 1;
        if let Some(n) = self.senders.get_mut(&item.from) {
            *n -= 1;
            if *n == 0 {
                self.senders.remove(&item.from);
            }
        }
    }

    /// Removes and returns every event waiting for `to` (oldest first) that has not expired.
    pub fn take(&mut self, to: &Fingerprint, now_ms: u64) -> Vec<Queued> {
        match self.per.remove(to) {
            None => Vec::new(),
            Some(q) => {
                let mut out = Vec::with_capacity(q.len());
                for item in q {
                    self.forget(&item);
                    if item.expires_ms > now_ms {
                        out.push(item);
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
            for e in &gone {
                self.forget(e);
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
        assert_eq!(q.push(b, a, b"xyz", 20), Err(QueueError::GlobalFull));
        assert_eq!(q.purge(1000), Some(1010));
        assert_eq!(q.len_for(&a), 1);
        let got = q.take(&a, 1005);
        assert_eq!(&*got[0].event, b"5678");
        assert!(q.take(&a, 1005).is_empty());
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.purge(5000), None);
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
