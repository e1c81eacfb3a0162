//! An indexed binary min-heap of slab slots (the directory's expiry order and its
//! eviction candidates, docs/PROTOCOL.md §5.10, §5.11): 4 bytes per element plus 4 per
//! slot for its position, so an element is removed or re-keyed in O(log n) without a
//! search. The keys live in the records: every operation is given `key`, which reads the
//! ordering key of a slot (e.g. `(deadline ms, fingerprint)`), and the caller re-keys a
//! slot with [`SlotHeap::update`] after changing its key. Replaces a
//! `BTreeSet<(u64, Fingerprint)>` (40-byte elements in B-tree nodes, about 60 bytes each).

/// Position of a slot that is not in the heap.
const ABSENT: u32 = u32::MAX;

/// Slots ordered by a key read from their records, the smallest first.
#[derive(Debug, Default)]
pub(super) struct SlotHeap {
    /// The heap array of slots.
    items: Vec<u32>,
    /// By slot: its index in `items`, or [`ABSENT`].
    pos: Vec<u32>,
}

impl SlotHeap {
    /// Slots in the heap.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether `slot` is in the heap.
    #[cfg(test)]
    pub(super) fn contains(&self, slot: u32) -> bool {
        self.pos.get(slot as usize).is_some_and(|&p| p != ABSENT)
    }

    /// The slot with the smallest key.
    #[inline]
    pub(super) fn peek(&self) -> Option<u32> {
        self.items.first().copied()
    }

    /// Adds `slot` (not in the heap yet).
    pub(super) fn push<K: Ord>(&mut self, slot: u32, key: impl Fn(u32) -> K) {
        let s = slot as usize;
        if self.pos.len() <= s {
            self.pos.resize(s + 1, ABSENT);
        }
        debug_assert_eq!(self.pos[s], ABSENT, "slot pushed twice");
        let at = self.items.len();
        self.items.push(slot);
        self.pos[s] = at as u32;
        self.sift_up(at, &key);
    }

    /// Takes `slot` out; false when it was not in.
    pub(super) fn remove<K: Ord>(&mut self, slot: u32, key: impl Fn(u32) -> K) -> bool {
        let Some(&p) = self.pos.get(slot as usize).filter(|&&p| p != ABSENT) else {
            return false;
        };
        self.pos[slot as usize] = ABSENT;
        let last = self.items.pop().unwrap_or(slot);
        let p = p as usize;
        if p < self.items.len() {
            self.items[p] = last;
            self.pos[last as usize] = p as u32;
            self.update_at(p, &key);
        }
        true
    }

    /// Restores the order after the key of `slot` changed (nothing when it is not in).
    pub(super) fn update<K: Ord>(&mut self, slot: u32, key: impl Fn(u32) -> K) {
        if let Some(&p) = self.pos.get(slot as usize).filter(|&&p| p != ABSENT) {
            self.update_at(p as usize, &key);
        }
    }

    fn update_at<K: Ord>(&mut self, i: usize, key: &impl Fn(u32) -> K) {
        let i = self.sift_up(i, key);
        self.sift_down(i, key);
    }

    /// Moves the element at `i` up while it is smaller than its parent; its new index.
    fn sift_up<K: Ord>(&mut self, mut i: usize, key: &impl Fn(u32) -> K) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if key(self.items[i]) >= key(self.items[parent]) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
        i
    }

    /// Moves the element at `i` down while a child is smaller.
    fn sift_down<K: Ord>(&mut self, mut i: usize, key: &impl Fn(u32) -> K) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.items.len() && key(self.items[l]) < key(self.items[least]) {
                least = l;
            }
            if r < self.items.len() && key(self.items[r]) < key(self.items[least]) {
                least = r;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.items.swap(i, j);
        self.pos[self.items[i] as usize] = i as u32;
        self.pos[self.items[j] as usize] = j as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn pops_in_key_order_through_removals_and_rekeying() {
        // Keys by slot: (deadline, tie-breaker), as the directory's (ms, fingerprint).
        let keys = RefCell::new(vec![(50u64, 1u8), (10, 2), (30, 3), (10, 1), (70, 5)]);
        let key = |s: u32| keys.borrow()[s as usize];
        let mut h = SlotHeap::default();
        for s in 0..5 {
            h.push(s, key);
        }
        assert_eq!(h.peek(), Some(3), "(10, 1) before (10, 2)");
        assert!(h.remove(3, key) && !h.remove(3, key), "removed once");
        assert!(!h.contains(3) && h.contains(1));
        keys.borrow_mut()[1] = (60, 2); // slot 1 kept alive: a later deadline
        h.update(1, key);
        keys.borrow_mut()[4] = (20, 5);
        h.update(4, key);
        let mut order = Vec::new();
        while let Some(s) = h.peek() {
            order.push(s);
            h.remove(s, key);
        }
        assert_eq!(order, [4, 2, 0, 1]);
        assert_eq!(h.len(), 0);
        h.push(3, key);
        assert_eq!(h.peek(), Some(3), "a removed slot can come back");
    }

    #[test]
    fn stays_a_heap_under_random_operations() {
        let keys = RefCell::new(vec![0u64; 64]);
        let key = |s: u32| (keys.borrow()[s as usize], s);
        let mut h = SlotHeap::default();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5_000 {
            let s = (next() % 64) as u32;
            match next() % 3 {
                0 if !h.contains(s) => {
                    keys.borrow_mut()[s as usize] = next() % 1000;
                    h.push(s, key);
                }
                1 => {
                    h.remove(s, key);
                }
                _ => {
                    keys.borrow_mut()[s as usize] = next() % 1000;
                    h.update(s, key);
                }
            }
            let least = (0..64u32).filter(|&s| h.contains(s)).map(key).min();
            assert_eq!(h.peek().map(key), least);
        }
    }
}
