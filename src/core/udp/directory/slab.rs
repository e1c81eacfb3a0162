//! Compact storage for the per-client tables (docs/PROTOCOL.md §5.11, "Bounds"): a slab of
//! fixed-size records in one `Vec`, freed slots reused, and a hash index from a key (a
//! fingerprint, an address) to a slot that holds only the 4-byte slot number (the key is
//! read back from the record). Together they cost the record's size plus about 5 to 10
//! bytes per entry, where a `HashMap<K, V>` costs `size_of::<(K, V)>()` over its load
//! factor (up to twice that) and a second map by another key repeats the key.

use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash, RandomState};

/// Records in slots numbered from 0, a freed slot reused by the next insert (the most
/// recently freed first). At most `u32::MAX` slots.
#[derive(Debug)]
pub(in crate::core::udp) struct Slab<T> {
    slots: Vec<Option<T>>,
    /// Free slots, the next one to reuse last.
    pub(super) free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Records held.
    pub(in crate::core::udp) fn len(&self) -> usize {
        self.len
    }

    /// Stores `v` in a free slot (or a new one) and returns the slot.
    ///
    /// # Panics
    /// With `u32::MAX` slots in use (about 100 GB of records: beyond every bound).
    pub(in crate::core::udp) fn insert(&mut self, v: T) -> u32 {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(v);
            return i;
        }
        let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 slots");
        self.slots.push(Some(v));
        i
    }

    /// Takes the record out of slot `i`, which becomes free.
    pub(in crate::core::udp) fn remove(&mut self, i: u32) -> Option<T> {
        let v = self.slots.get_mut(i as usize)?.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(v)
    }

    /// The record in slot `i`.
    #[inline]
    pub(in crate::core::udp) fn get(&self, i: u32) -> Option<&T> {
        self.slots.get(i as usize)?.as_ref()
    }

    /// The record in slot `i`, to change.
    #[inline]
    pub(in crate::core::udp) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.slots.get_mut(i as usize)?.as_mut()
    }

    /// The records with their slots, in slot order.
    pub(in crate::core::udp) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|v| (i as u32, v)))
    }

    /// The records with their slots, in slot order, to change.
    pub(in crate::core::udp) fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|v| (i as u32, v)))
    }
}

/// A hash index from keys of type `K` to slots: it stores slot numbers only, and every
/// operation is given `key_of`, which reads a slot's key from the records. Keys are
/// hashed with a per-process random SipHash key ([`RandomState`]), so chosen fingerprints
/// or addresses cannot pile up in one probe sequence.
#[derive(Debug, Default)]
pub(in crate::core::udp) struct SlotIndex {
    table: HashTable<u32>,
    state: RandomState,
}

impl SlotIndex {
    /// Slots indexed.
    #[cfg(test)]
    pub(in crate::core::udp) fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot whose key is `key`.
    #[inline]
    pub(in crate::core::udp) fn find<K: Hash + Eq>(
        &self,
        key: &K,
        key_of: impl Fn(u32) -> K,
    ) -> Option<u32> {
        let h = self.state.hash_one(key);
        self.table.find(h, |&s| key_of(s) == *key).copied()
    }

    /// Indexes `slot` under `key`; a slot already indexed under `key` is replaced and
    /// returned.
    pub(in crate::core::udp) fn insert<K: Hash + Eq>(
        &mut self,
        key: &K,
        slot: u32,
        key_of: impl Fn(u32) -> K,
    ) -> Option<u32> {
        let state = &self.state;
        let h = state.hash_one(key);
        match self
            .table
            .entry(h, |&s| key_of(s) == *key, |&s| state.hash_one(key_of(s)))
        {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                Some(std::mem::replace(e.get_mut(), slot))
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(slot);
                None
            }
        }
    }

    /// Removes `slot` from under `key` (nothing when `key` indexes another slot).
    pub(in crate::core::udp) fn remove<K: Hash + Eq>(
        &mut self,
        key: &K,
        slot: u32,
        key_of: impl Fn(u32) -> K,
    ) -> bool {
        let h = self.state.hash_one(key);
        match self.table.find_entry(h, |&s| key_of(s) == *key) {
            Ok(e) if *e.get() == slot => {
                e.remove();
                true
            }
            _ => false,
        }
    }

    /// Keeps the slots for which `keep` is true.
    pub(in crate::core::udp) fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.table.retain(|s| keep(*s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_the_index_follows_the_records() {
        let mut slab: Slab<(u64, char)> = Slab::default();
        let mut index = SlotIndex::default();
        for (k, c) in [(10, 'a'), (20, 'b'), (30, 'c')] {
            let s = slab.insert((k, c));
            let key_of = |s: u32| slab.get(s).map(|r| r.0);
            assert_eq!(index.insert(&Some(k), s, key_of), None);
        }
        assert_eq!((slab.len(), index.len()), (3, 3));
        let key_of = |s: u32| slab.get(s).map(|r| r.0);
        let b = index.find(&Some(20), key_of).expect("indexed");
        assert_eq!(slab.get(b), Some(&(20, 'b')));
        assert!(
            !index.remove(&Some(20), b + 1, key_of),
            "another slot's key"
        );
        assert!(index.remove(&Some(20), b, key_of));
        assert_eq!(slab.remove(b), Some((20, 'b')));
        assert_eq!(slab.remove(b), None, "already free");
        let d = slab.insert((40, 'd'));
        assert_eq!(d, b, "the freed slot is reused");
        let key_of = |s: u32| slab.get(s).map(|r| r.0);
        index.insert(&Some(40), d, key_of);
        assert_eq!(index.find(&Some(20), key_of), None);
        assert_eq!(index.find(&Some(40), key_of), Some(d));
        let all: Vec<char> = slab.iter().map(|(_, r)| r.1).collect();
        assert_eq!(all, ['a', 'd', 'c']);
        index.retain(|s| s != d);
        assert_eq!(index.find(&Some(40), key_of), None);
        assert_eq!(index.len(), 2);
    }
}
