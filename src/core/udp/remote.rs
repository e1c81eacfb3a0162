//! The remote half of the directory: clients registered at other servers, learned from
//! DirRecords, each with its own TTL deadline (docs/PROTOCOL.md §8.16). Owns no I/O and
//! makes no policy decisions (which record wins is the directory's, `directory::records`);
//! it keeps its expiry set exactly in step with its map and never holds more than its
//! bound.

use crate::identity::VerifyingKey;
use crate::wire::Fingerprint;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

/// A client's signed registration as accepted: `signature || payload` in one allocation
/// (at most 1388 bytes), kept so that records and directory pages can be made later.
#[derive(Debug, Clone, Default)]
pub(super) struct Signed {
    bytes: Box<[u8]>,
    sig_len: usize,
}

impl Signed {
    /// Copies `signature` and `payload`.
    pub(super) fn new(signature: &[u8], payload: &[u8]) -> Self {
        let mut v = Vec::with_capacity(signature.len() + payload.len());
        v.extend_from_slice(signature);
        v.extend_from_slice(payload);
        Signed {
            bytes: v.into_boxed_slice(),
            sig_len: signature.len(),
        }
    }

    /// The signature bytes.
    pub(super) fn signature(&self) -> &[u8] {
        &self.bytes[..self.sig_len]
    }

    /// The type-2 payload bytes.
    pub(super) fn payload(&self) -> &[u8] {
        &self.bytes[self.sig_len..]
    }
}

/// One client homed at another server.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    /// Unix seconds: the signed timestamp of the registration held.
    pub(super) ts: u64,
    /// The client's reflexive address as its home server saw it.
    pub(super) addr: SocketAddr,
    /// The home server's node uid (who the home is).
    pub(super) home_uid: [u8; 16],
    /// The home server's alias (at most 255 bytes; for lookup answers).
    pub(super) home: String,
    /// Monotonic ms: when the home server last heard from the client, as far as we know.
    pub(super) last_seen_ms: u64,
    /// Monotonic ms: `last_seen_ms + TTL`; the entry lapses after it.
    pub(super) deadline_ms: u64,
    /// Hops of the record that installed the entry.
    pub(super) hops: u8,
    /// The key of the verified certificate.
    #[allow(dead_code)]
    pub(super) key: VerifyingKey,
    /// The registration itself, for directory pages.
    pub(super) signed: Signed,
}

/// Why [`RemoteTable::insert`] refused an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full;

/// Remote entries by fingerprint, with a `(deadline, fingerprint)` set beside the map
/// (mini-redis's expiry shape): every entry has exactly one element in the set.
#[derive(Debug)]
pub(super) struct RemoteTable {
    map: HashMap<Fingerprint, Remote>,
    expiry: BTreeSet<(u64, Fingerprint)>,
    cap: usize,
}

impl RemoteTable {
    /// An empty table of at most `cap` entries.
    pub(super) fn new(cap: usize) -> Self {
        RemoteTable {
            map: HashMap::new(),
            expiry: BTreeSet::new(),
            cap,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table holds its bound of entries (a new fingerprint would not fit).
    pub(super) fn is_full(&self) -> bool {
        self.map.len() >= self.cap
    }

    pub(super) fn get(&self, fp: &Fingerprint) -> Option<&Remote> {
        self.map.get(fp)
    }

    pub(super) fn contains(&self, fp: &Fingerprint) -> bool {
        self.map.contains_key(fp)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Fingerprint, &Remote)> {
        self.map.iter()
    }

    /// Inserts or replaces the entry of `fp` (its deadline taken from the entry).
    ///
    /// # Errors
    /// [`Full`] when `fp` is new and the table holds `cap` entries; nothing changes then.
    pub(super) fn insert(&mut self, fp: Fingerprint, entry: Remote) -> Result<(), Full> {
        if !self.map.contains_key(&fp) && self.map.len() >= self.cap {
            return Err(Full);
        }
        self.expiry.insert((entry.deadline_ms, fp));
        if let Some(old) = self.map.insert(fp, entry) {
            if old.deadline_ms != self.map[&fp].deadline_ms {
                self.expiry.remove(&(old.deadline_ms, fp));
            }
        }
        Ok(())
    }

    /// Removes the entry of `fp`.
    pub(super) fn remove(&mut self, fp: &Fingerprint) -> Option<Remote> {
        let old = self.map.remove(fp)?;
        self.expiry.remove(&(old.deadline_ms, *fp));
        Some(old)
    }

    /// Moves the last-seen time of `fp` forward to `seen_ms` (never back) and its deadline
    /// to `seen_ms + ttl_ms`; returns by how many milliseconds it moved (0 when it did not,
    /// or when there is no entry).
    pub(super) fn touch(&mut self, fp: &Fingerprint, seen_ms: u64, ttl_ms: u64) -> u64 {
        let Some(e) = self.map.get_mut(fp) else {
            return 0;
        };
        if seen_ms <= e.last_seen_ms {
            return 0;
        }
        let advanced = seen_ms - e.last_seen_ms;
        e.last_seen_ms = seen_ms;
        let deadline = seen_ms.saturating_add(ttl_ms);
        if deadline != e.deadline_ms {
            self.expiry.remove(&(e.deadline_ms, *fp));
            e.deadline_ms = deadline;
            self.expiry.insert((deadline, *fp));
        }
        advanced
    }

    /// The earliest deadline, monotonic ms.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.expiry.first().map(|&(d, _)| d)
    }

    /// Removes and returns one entry whose deadline is at or before `now_ms`.
    pub(super) fn pop_expired(&mut self, now_ms: u64) -> Option<Fingerprint> {
        let &(deadline, fp) = self.expiry.first()?;
        if deadline > now_ms {
            return None;
        }
        self.expiry.pop_first();
        self.map.remove(&fp);
        Some(fp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, KeyAlgorithm};

    fn entry(key: &VerifyingKey, seen: u64) -> Remote {
        Remote {
            ts: 1,
            addr: "192.0.2.1:1".parse().unwrap(),
            home_uid: [0xA; 16],
            home: "A".into(),
            last_seen_ms: seen,
            deadline_ms: seen + 100,
            hops: 0,
            key: key.clone(),
            signed: Signed::new(&[1, 2], &[3]),
        }
    }

    #[test]
    fn bounded_touch_and_expiry_stay_in_step() {
        let id = Identity::generate(KeyAlgorithm::Ed25519, "t").unwrap();
        let key = id.verifying_key().clone();
        let mut t = RemoteTable::new(2);
        let (a, b, c) = (
            Fingerprint([1; 32]),
            Fingerprint([2; 32]),
            Fingerprint([3; 32]),
        );
        assert_eq!(t.insert(a, entry(&key, 0)), Ok(()));
        assert_eq!(t.insert(b, entry(&key, 10)), Ok(()));
        assert_eq!(t.insert(c, entry(&key, 10)), Err(Full));
        assert_eq!(
            t.insert(a, entry(&key, 5)),
            Ok(()),
            "replacing is not growing"
        );
        assert_eq!(t.next_deadline(), Some(105));
        assert_eq!(t.touch(&a, 3, 100), 0, "never backwards");
        assert_eq!(t.touch(&a, 50, 100), 45);
        assert_eq!(t.next_deadline(), Some(110));
        assert_eq!(t.pop_expired(109), None);
        assert_eq!(t.pop_expired(110), Some(b));
        assert_eq!(t.expiry.len(), t.map.len());
        assert_eq!(t.get(&a).map(|e| e.signed.signature()), Some(&[1u8, 2][..]));
        assert_eq!(t.get(&a).map(|e| e.signed.payload()), Some(&[3u8][..]));
        assert_eq!(t.get(&a).map(|e| e.home.as_str()), Some("A"));
        assert!(t.remove(&a).is_some());
        assert_eq!(t.len(), 0);
        assert!(t.expiry.is_empty());
    }
}
