//! Range-based set reconciliation of contacts, directory entries and node-list entries
//! (docs/PROTOCOL.md §8.20): two servers find the records one holds and the other lacks
//! by comparing fingerprints of ranges of their record ids and recursing only into ranges
//! that differ, so d differences among n records cost O(d log n) bytes. The protocol is negentropy's (version 1, the
//! `negentropy` crate); this module gives each record its id and wraps the two roles.
//!
//! A record's id is `[key 20][clock u32][digest 8]`: which contact (SHA-256 of its
//! username and contactname fields), its Lamport clock, and which version (SHA-256 of the
//! key hash, the clock and the phone field); its negentropy timestamp is its Lamport
//! clock, so recent changes share the top of
//! the ordering and a small difference touches few ranges. Two versions of one contact
//! are two ids: each side sends what it holds but versions older than the other side's
//! ([`without_stale`]), and last-writer-wins (§8.9) keeps the newer. No I/O: the ids come from the store, the messages go through frame 22.

use crate::wire::tcp::nodelist::{NodeEntry, Uid, MAX_ENTRY_LEN};
use crate::wire::tcp::{ContactFields, MAX_RECONCILE_LEN, SERVER_RECORD_LEN};
use negentropy::{Id, Negentropy, NegentropyStorageVector};
use sha2::{Digest, Sha256};

/// A record's id: SHA-256 of its 536-byte server-role Update body (32 bytes).
pub type RecordId = [u8; 32];

/// One record as reconciliation sees it: its Lamport clock (a contact) or its signed
/// timestamp in Unix seconds (a directory entry), and its id.
pub type Item = (u32, RecordId);

/// A directory entry as reconciliation sees it: `(timestamp, id, fingerprint)`.
pub type DirItem = (u32, RecordId, [u8; 32]);

/// Why a reconciliation failed: a message that is not negentropy version 1, is cut short,
/// or breaks the protocol's order (the peer's fault: the connection is refused with 400
/// or the link dropped), or a set that cannot be indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reconciliation: {0}")]
pub struct ReconcileError(String);

impl From<negentropy::Error> for ReconcileError {
    fn from(e: negentropy::Error) -> Self {
        ReconcileError(e.to_string())
    }
}

/// The id of the record `(clock, fields)` (docs/PROTOCOL.md §8.20): `[key 20][clock u32]
/// [digest 8]`. The key is the first 20 bytes of SHA-256 over its username and
/// contactname fields (256 bytes each, NUL-padded: which contact); the digest the first 8
/// bytes of SHA-256 over that whole key hash, the clock and the 20-byte phone field
/// (which version: with the key and clock, the phone is all a record holds). Two versions
/// of one contact are two ids, and an id says which contact and which clock, so a side
/// that holds a newer version does not push its older one ([`without_stale`]). One pass
/// of SHA-256 over the record's 512 bytes of names, and one over 56 bytes. Fields that do
/// not fit their wire sizes (never stored) hash as the bytes that fit, so such a record is
/// still one id.
pub fn record_id(clock: u32, fields: &ContactFields<'_>) -> RecordId {
    let mut rec = [0u8; SERVER_RECORD_LEN];
    let (names, phone) = match crate::wire::tcp::emit_server_record(clock, fields, &mut rec) {
        Ok(_) => (&rec[5..517], &rec[517..]),
        Err(_) => (fields.username.as_bytes(), fields.phone.as_bytes()),
    };
    let key = Sha256::digest(names);
    let digest = Sha256::new()
        .chain_update(key)
        .chain_update(clock.to_be_bytes())
        .chain_update(phone)
        .finalize();
    let mut id = [0u8; 32];
    id[..20].copy_from_slice(&key[..20]);
    id[20..24].copy_from_slice(&clock.to_be_bytes());
    id[24..].copy_from_slice(&digest[..8]);
    id
}

/// Of `have` (ids of contacts we hold that the peer lacks), those the peer holds no newer
/// version of: no id of `need` (the peer's that we lack) names the same contact with a
/// higher clock ([`record_id`]). Last-writer-wins (§8.9) would drop the older on arrival;
/// this keeps it off the wire. Equal clocks are kept (the phone field decides there).
pub fn without_stale(have: &[RecordId], need: &[RecordId]) -> Vec<RecordId> {
    let mut newest: std::collections::HashMap<&[u8], u32> =
        std::collections::HashMap::with_capacity(need.len());
    for id in need {
        let clock = u32::from_be_bytes([id[20], id[21], id[22], id[23]]);
        let slot = newest.entry(&id[..20]).or_insert(clock);
        *slot = (*slot).max(clock);
    }
    have.iter()
        .filter(|id| {
            let clock = u32::from_be_bytes([id[20], id[21], id[22], id[23]]);
            newest.get(&id[..20]).map_or(true, |&n| n <= clock)
        })
        .copied()
        .collect()
}

/// The id of a directory entry (docs/PROTOCOL.md §8.20): SHA-256 over `[fingerprint 32]
/// [timestamp u64][home uid 16][family u8][address 16][port u16]` (the address as a
/// DirRecord carries it, IPv4 in the first 4 bytes): what the entry is, not its age or
/// hops, so two servers that hold the same registration from the same home at the same
/// address hold the same id.
pub fn dir_record_id(
    fingerprint: &[u8; 32],
    timestamp: u64,
    home_uid: &[u8; 16],
    addr: std::net::SocketAddr,
) -> RecordId {
    let mut h = Sha256::new();
    h.update(fingerprint);
    h.update(timestamp.to_be_bytes());
    h.update(home_uid);
    let mut a = [0u8; 16];
    let family = match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            a[..4].copy_from_slice(&v4.octets());
            4u8
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                a[..4].copy_from_slice(&v4.octets());
                4
            }
            None => {
                a = v6.octets();
                6
            }
        },
    };
    h.update([family]);
    h.update(a);
    h.update(addr.port().to_be_bytes());
    h.finalize().into()
}

/// The id of a node-list entry (docs/PROTOCOL.md §8.15, §8.20): `[uid 16][version u64]
/// [the first 8 bytes of SHA-256 of its canonical bytes]`, so two versions of one server's
/// entry are two ids, and an id says whose entry it is and which version: a side that
/// holds a newer version of an entry the other lacks neither asks for the older nor sends
/// it ([`node_id_parts`]).
pub fn node_record_id(entry: &NodeEntry) -> RecordId {
    let mut buf = [0u8; MAX_ENTRY_LEN];
    // Cannot fail: the buffer holds the longest entry.
    let n = entry.emit(&mut buf).unwrap_or(0);
    let digest = Sha256::digest(&buf[..n]);
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(entry.uid());
    id[16..24].copy_from_slice(&entry.version().to_be_bytes());
    id[24..].copy_from_slice(&digest[..8]);
    id
}

/// The uid and version a node-list entry's id names ([`node_record_id`]).
pub fn node_id_parts(id: &RecordId) -> (Uid, u64) {
    let mut uid = [0u8; 16];
    uid.copy_from_slice(&id[..16]);
    let mut v = [0u8; 8];
    v.copy_from_slice(&id[16..24]);
    (uid, u64::from_be_bytes(v))
}

/// A node-list entry as reconciliation sees it: its version as the timestamp (saturating
/// at `u32::MAX`: a version is Unix seconds, or a few above) and its id.
pub fn node_item(entry: &NodeEntry) -> Item {
    let version = u32::try_from(entry.version()).unwrap_or(u32::MAX);
    (version, node_record_id(entry))
}

/// The negentropy index of `items` (any order; sorted by clock, then id).
fn storage(items: &[Item]) -> Result<NegentropyStorageVector, ReconcileError> {
    let mut s = NegentropyStorageVector::with_capacity(items.len());
    for &(clock, id) in items {
        s.insert(u64::from(clock), Id::from_byte_array(id))?;
    }
    s.seal()?;
    Ok(s)
}

/// The side that starts a reconciliation (the server pushing to a peer, on the link it
/// opened): it sends the first message, reads each answer, and learns the ids it holds
/// that the peer lacks ([`Self::have`]) and how many the peer holds that it lacks.
pub struct Initiator {
    neg: Negentropy<'static, NegentropyStorageVector>,
    /// Records in our set.
    len: usize,
    first: Vec<u8>,
    have: Vec<RecordId>,
    need: Vec<RecordId>,
    rounds: u32,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("have", &self.have.len())
            .field("need", &self.need)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// An initiator over `items` (our records), with its first message (at most
    /// [`MAX_RECONCILE_LEN`] bytes).
    ///
    /// # Errors
    /// [`ReconcileError`] if the set cannot be indexed (not expected: ids are fixed-size).
    pub fn new(items: &[Item]) -> Result<Self, ReconcileError> {
        let mut neg = Negentropy::owned(storage(items)?, MAX_RECONCILE_LEN as u64)?;
        let first = neg.initiate()?;
        Ok(Initiator {
            neg,
            len: items.len(),
            first,
            have: Vec::new(),
            need: Vec::new(),
            rounds: 0,
        })
    }

    /// The first message, to send (again, after a busy answer: the responder keeps no
    /// state between messages).
    pub fn first(&self) -> &[u8] {
        &self.first
    }

    /// Reads the peer's answer: `Ok(Some(message))` to send next, `Ok(None)` when the
    /// reconciliation is complete.
    ///
    /// # Errors
    /// [`ReconcileError`] for an answer that is not a valid negentropy message.
    pub fn step(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, ReconcileError> {
        self.rounds += 1;
        let mut have = Vec::new();
        let mut need = Vec::new();
        let next = self.neg.reconcile_with_ids(answer, &mut have, &mut need)?;
        self.have.extend(have.iter().map(|id| id.to_bytes()));
        self.need.extend(need.iter().map(|id| id.to_bytes()));
        if next.is_none() {
            // A range the message limit cut is compared again in a later round, and its
            // ids reported again (negentropy 0.5): each id once.
            for ids in [&mut self.have, &mut self.need] {
                ids.sort_unstable();
                ids.dedup();
            }
        }
        Ok(next)
    }

    /// Records in our set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty set.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ids we hold that the peer lacks (found so far; each once, sorted, once complete).
    pub fn have(&self) -> &[RecordId] {
        &self.have
    }

    /// How many ids the peer holds that we lack (found so far).
    pub fn need(&self) -> u64 {
        self.need.len() as u64
    }

    /// The ids the peer holds that we lack (found so far; each once, sorted, once
    /// complete).
    pub fn need_ids(&self) -> &[RecordId] {
        &self.need
    }

    /// Answers read so far (round trips).
    pub fn rounds(&self) -> u32 {
        self.rounds
    }
}

/// The side that answers (the acceptor of a link): stateless between messages but for
/// its index of ids.
pub struct Responder {
    neg: Negentropy<'static, NegentropyStorageVector>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder over `items` (our records).
    ///
    /// # Errors
    /// [`ReconcileError`] if the set cannot be indexed (not expected).
    pub fn new(items: &[Item]) -> Result<Self, ReconcileError> {
        Ok(Responder {
            neg: Negentropy::owned(storage(items)?, MAX_RECONCILE_LEN as u64)?,
        })
    }

    /// The answer to one message of the initiator (at most [`MAX_RECONCILE_LEN`] bytes).
    ///
    /// # Errors
    /// [`ReconcileError`] for a message that is not a valid negentropy message.
    pub fn answer(&mut self, message: &[u8]) -> Result<Vec<u8>, ReconcileError> {
        Ok(self.neg.reconcile(message)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(range: std::ops::Range<u32>) -> Vec<Item> {
        range
            .map(|i| {
                let fields = ContactFields {
                    username: "user",
                    contact: &format!("c{i}"),
                    phone: "555",
                };
                // Leak-free: record_id copies what it hashes.
                (i, record_id(i, &fields))
            })
            .collect()
    }

    /// Runs a whole reconciliation; returns (have, need, bytes both ways, rounds).
    fn run(ours: &[Item], theirs: &[Item]) -> (Vec<RecordId>, u64, usize, u32) {
        let mut a = Initiator::new(ours).unwrap();
        let mut b = Responder::new(theirs).unwrap();
        let mut msg = a.first().to_vec();
        let mut bytes = 0;
        loop {
            assert!(msg.len() <= MAX_RECONCILE_LEN);
            bytes += msg.len();
            let ans = b.answer(&msg).unwrap();
            assert!(ans.len() <= MAX_RECONCILE_LEN);
            bytes += ans.len();
            match a.step(&ans).unwrap() {
                Some(next) => msg = next,
                None => break,
            }
        }
        let mut have = a.have().to_vec();
        have.sort_unstable();
        (have, a.need(), bytes, a.rounds())
    }

    #[test]
    fn equal_sets_agree_in_one_round_of_a_few_bytes() {
        let s = items(0..10_000);
        let (have, need, bytes, rounds) = run(&s, &s);
        assert!(have.is_empty());
        assert_eq!(need, 0);
        assert_eq!(rounds, 1);
        assert!(bytes < 1000, "{bytes} bytes");
    }

    #[test]
    fn differences_both_ways_are_found_exactly() {
        let ours = items(0..5_000);
        let mut theirs = items(100..5_000);
        theirs.extend(items(7_000..7_050));
        let (have, need, _, _) = run(&ours, &theirs);
        let mut want: Vec<RecordId> = items(0..100).into_iter().map(|(_, id)| id).collect();
        want.sort_unstable();
        assert_eq!(have, want);
        assert_eq!(need, 50);
    }

    #[test]
    fn an_empty_peer_lacks_everything() {
        let ours = items(0..3_000);
        let (have, need, _, _) = run(&ours, &[]);
        assert_eq!(have.len(), 3_000);
        assert_eq!(need, 0);
    }

    #[test]
    fn disjoint_sets_past_a_frame_report_each_id_once() {
        // Every id differs and the ids do not fit one 60,000-byte message: several rounds,
        // each id still reported once (`have`, `need`).
        let ours = items(0..5_000);
        let theirs: Vec<Item> = items(10_000..15_000)
            .into_iter()
            .map(|(c, id)| (c - 10_000, id))
            .collect();
        let (have, need, _, rounds) = run(&ours, &theirs);
        assert!(rounds > 1, "{rounds} rounds");
        let mut unique = have.clone();
        unique.dedup();
        assert_eq!((have.len(), unique.len(), need), (5_000, 5_000, 5_000));
        // Node-list entries, every one a version apart: negentropy reports ids of a range
        // the message limit cut again in a later round.
        let entry = |i: u64, v: u64| {
            let mut uid = [0x5a; 16];
            uid[..8].copy_from_slice(&i.to_be_bytes());
            NodeEntry::new(uid, v, format!("node{i:04}"), format!("h:{i}"), vec![7; 32]).unwrap()
        };
        let ours: Vec<Item> = (0..4094).map(|i| node_item(&entry(i, 2))).collect();
        let theirs: Vec<Item> = (0..4094).map(|i| node_item(&entry(i, 1))).collect();
        let (have, need, _, rounds) = run(&ours, &theirs);
        assert!(rounds > 1, "{rounds} rounds");
        let mut unique = have.clone();
        unique.dedup();
        assert_eq!((have.len(), unique.len(), need), (4094, 4094, 4094));
    }

    #[test]
    fn versions_older_than_the_peers_are_not_pushed() {
        let rec = |contact: &str, clock: u32, phone: &str| {
            let fields = ContactFields {
                username: "u",
                contact,
                phone,
            };
            record_id(clock, &fields)
        };
        // a: we hold 3, the peer 5 (ours stale); b: we hold 7, the peer 2 (theirs stale);
        // c: equal clocks, other phones (both kept: the phone decides); d: only ours.
        let have = [
            rec("a", 3, "1"),
            rec("b", 7, "1"),
            rec("c", 4, "1"),
            rec("d", 1, "1"),
        ];
        let need = [rec("a", 5, "1"), rec("b", 2, "1"), rec("c", 4, "2")];
        assert_eq!(without_stale(&have, &need), have[1..]);
        assert_eq!(without_stale(&have, &[]), have);
        // The id names its contact and clock; two versions differ.
        assert_eq!(rec("a", 3, "1")[..20], rec("a", 5, "2")[..20]);
        assert_eq!(rec("a", 3, "1")[20..24], 3u32.to_be_bytes());
        assert_ne!(rec("a", 3, "1"), rec("a", 3, "2"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut b = Responder::new(&items(0..10)).unwrap();
        assert!(b.answer(&[]).is_err(), "empty");
        assert!(b.answer(&[0x10, 0x00]).is_err(), "another protocol");
        let mut a = Initiator::new(&items(0..10)).unwrap();
        assert!(a.step(&[0x10]).is_err());
        // Arbitrary bytes after the version byte: an answer or an error, never a panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let mut msg = vec![0x61];
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                msg.push(x as u8);
            }
            let _ = b.answer(&msg);
        }
    }
}
