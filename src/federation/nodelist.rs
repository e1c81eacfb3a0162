//! The node list (docs/PROTOCOL.md §8.15): the servers this server knows of, as a value
//! ([`NodeList`]), its SHA-512 hash, the merge rule for two entries with one uid, the
//! entries a reconciliation moves ([`NodeList::items`], [`NodeList::with_ids`]), the diff a
//! server answers a full list with ([`NodeList::diff_for`]) and a pure simulation of one
//! sync between two lists ([`sync`]). The bytes (entries, canonical form, frames 10-12 and
//! 24) are [`crate::wire::tcp::nodelist`]'s.
//!
//! What it never does: I/O, reading a clock, liveness (a node in the list may be down;
//! liveness is tracked elsewhere), or judging whether an entry is true (entries are not
//! signed; role-1 peers are trusted by configuration or prove their node key,
//! docs/PROTOCOL.md §8.12, §8.17).
//!
//! Invariants of a [`NodeList`]: its entries are sorted by uid (bytewise), there is exactly
//! one entry per uid, there are at most [`MAX_ENTRIES`] (4096) of them, and every entry is
//! valid (alias and location at most 255 bytes of UTF-8, public key 1 to 255 bytes), so it
//! always has a canonical form and a hash: SHA-512 of the canonical form, 64 bytes, shown as
//! 128 lowercase hex digits.
//!
//! # One uid, two entries
//!
//! Exactly one survives: the greater under one total order, the bytewise order of the
//! encoded entries ([`NodeEntry`]'s `Ord`). For one uid that is the higher `version`, and
//! on equal versions the bytewise larger rest (`alias_len`, `alias`, `location_len`, ...).
//! Every server picks the same entry whatever the order of arrival, so [`NodeList::merge`]
//! is commutative, associative and idempotent. Should a list reach [`MAX_ENTRIES`], the
//! entries with the lowest uids are kept (again a rule that does not depend on the order of
//! arrival). A NodeList frame from [`NodeList::list_frame`] is `0x0b` followed by the
//! canonical form.
//!
//! # Why it never loops
//!
//! The canonical form is a function of the set of entries alone (one entry per uid, sorted
//! by uid, fixed-width integers and length-prefixed fields), so two servers holding the
//! same set hash equal whatever the order of arrival or formatting. Merging keeps, per uid,
//! the maximum under one total order (and, at the cap, the lowest uids). A reconciliation
//! tells the opener A exactly the entries it holds that B lacks and those B holds that A
//! lacks (two versions of one uid are two ids, so each side learns the other's version);
//! A's NodeSync gives B the first, and B's diff answers with the second, so after B merges
//! the sync B holds the join of both lists, and after A merges the diff A holds it too
//! (an entry of the join is in A's list, or in B's and so wanted): the hashes are equal
//! after one round. Nothing is ever sent in reaction to a diff (a hash is answered by a
//! hash, a reconciliation message by one, a sync by a diff, a diff by nothing, and a sync
//! is started by the opener's timer or a change of its list), so no frame can start a
//! chain of replies, and the next hash exchange matches. A whole list (11, from servers of
//! earlier versions) is merged and answered with [`NodeList::diff_for`], to the same end.
//!
//! # An entry beating an owner's own
//!
//! A server takes no entry for its own uid but its own, so an entry for its uid that beats
//! its own (a stale one of an earlier run, see [`reissue`]) would stay in every other list
//! and the hashes would never match. So the owner re-issues its entry just above it
//! ([`reissue`], docs/PROTOCOL.md §8.15 "own uid"): a new entry, the greatest for its uid,
//! which reaches every list as any change does. Each re-issue goes above a distinct entry
//! that beat the owner's, so they are finitely many (at most [`REISSUE_REACH`] in a run).

use crate::federation::reconcile::{
    node_id_parts, node_item, node_record_id, Initiator, Item, ReconcileError, Responder,
};
use crate::wire::tcp::nodelist::{
    EntryId, NodeEntry, NodeListFrame, Uid, COUNT_LEN, HASH_FRAME_LEN, HASH_LEN, MAX_ENTRIES,
    MAX_ENTRY_LEN,
};
use core::cmp::Ordering;
use sha2::{Digest, Sha512};

/// A node list of at most this many entries is sent whole (NodeList, 11) when the hashes
/// differ, not reconciled (docs/PROTOCOL.md §8.15, "exchange"): a server that joins knows
/// itself and a few peers, and its whole list (about 80 bytes an entry) costs less than the
/// ids of the peer's list (32 bytes each) that a reconciliation would bring it and ask back.
pub const WHOLE_LIST_MAX: usize = 32;

/// How far above its version at start (the Unix seconds at start, or above its stored
/// entry) a server re-issues its own entry: one hour (docs/PROTOCOL.md §8.15 "own uid").
pub const REISSUE_REACH: u64 = 3600;

/// The owner's re-issue rule (docs/PROTOCOL.md §8.15 "own uid"): when the greatest entry of
/// `seen` for `own`'s uid beats `own` and its version is below `start + REISSUE_REACH`
/// (`start` the version of `own` at start; saturating), `own` again with that version + 1
/// (alias, location and key kept), which beats it. `None` otherwise: nothing beats `own`,
/// or the winner is out of reach (the owner keeps `own` and ignores it, as every other
/// entry for its uid). The version cannot overflow: it is below `u64::MAX` before the + 1.
///
/// The reach bounds the re-issues of one run to `REISSUE_REACH` (each raises the version
/// by at least 1), so two running servers sharing one node key, which outbid each other,
/// stop after at most that many; a stale entry of a restart after the clock stepped back
/// by up to an hour is replaced (further back only from the stored list, at start).
pub fn reissue(own: &NodeEntry, start: u64, seen: &[NodeEntry]) -> Option<NodeEntry> {
    let winner = seen.iter().filter(|e| e.uid() == own.uid()).max()?;
    let reach = start.saturating_add(REISSUE_REACH);
    if winner <= own || winner.version() >= reach {
        return None;
    }
    NodeEntry::new(
        *own.uid(),
        winner.version() + 1,
        own.alias(),
        own.location(),
        own.public_key(),
    )
    .ok()
}

/// `entries` sorted by uid with one per uid, the greatest (the duplicate rule); no cap.
fn winners(entries: &[NodeEntry]) -> Vec<&NodeEntry> {
    let mut v: Vec<&NodeEntry> = entries.iter().collect();
    // By uid ascending, and within a uid greatest first, so `dedup_by` keeps the winner.
    v.sort_unstable_by(|a, b| a.uid().cmp(b.uid()).then_with(|| b.cmp(a)));
    v.dedup_by(|later, first| later.uid() == first.uid());
    v
}

/// The list of known servers: sorted by uid, one entry per uid, at most [`MAX_ENTRIES`].
///
/// A value with no I/O: [`Self::merge`] applies what a peer sent, [`Self::diff_for`] says
/// what to answer a peer's full list with, [`Self::hash`] is what two servers compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeList {
    /// Sorted by uid, unique uids, at most `MAX_ENTRIES`.
    entries: Vec<NodeEntry>,
}

impl NodeList {
    /// An empty list (its canonical form is `00 00 00 00`).
    pub fn new() -> Self {
        NodeList::default()
    }

    /// A list of `entries` in any order: of two entries with one uid the greater survives
    /// (see the module header); beyond [`MAX_ENTRIES`] uids, those with the highest uids
    /// are dropped.
    pub fn from_entries(entries: Vec<NodeEntry>) -> Self {
        let mut list = NodeList::new();
        list.merge(&entries);
        list
    }

    /// The entries, sorted by uid (bytewise ascending), one per uid.
    pub fn entries(&self) -> &[NodeEntry] {
        &self.entries
    }

    /// Number of entries (0 to 4096).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `uid`, if any.
    pub fn get(&self, uid: &Uid) -> Option<&NodeEntry> {
        self.entries
            .binary_search_by(|e| e.uid().cmp(uid))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Merges `other` (any order, duplicate uids allowed) into this list; returns the
    /// entries that changed it (new uids, or entries that replaced a losing one), sorted by
    /// uid, as they now stand in the list.
    ///
    /// Per uid the greater entry survives (higher version, then bytewise larger encoding);
    /// an entry equal to or losing against the one held changes nothing. If the list would
    /// exceed [`MAX_ENTRIES`], the entries with the highest uids are dropped (those are not
    /// in the returned vector). Commutative, associative and idempotent: the result depends
    /// only on the union of what was merged.
    pub fn merge(&mut self, other: &[NodeEntry]) -> Vec<NodeEntry> {
        let incoming = winners(other);
        if incoming.is_empty() {
            return Vec::new();
        }
        let old = core::mem::take(&mut self.entries);
        let mut merged = Vec::with_capacity(old.len() + incoming.len());
        let mut changed = Vec::new(); // indices into `merged`
        let mut old = old.into_iter().peekable();
        let mut new = incoming.into_iter().peekable();
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(o), Some(n)) => o.uid().cmp(n.uid()),
            };
            match order {
                Ordering::Less => merged.extend(old.next()),
                Ordering::Greater => {
                    changed.push(merged.len());
                    merged.extend(new.next().cloned());
                }
                Ordering::Equal => {
                    // Both were peeked, so both are there.
                    if let (Some(o), Some(n)) = (old.next(), new.next()) {
                        if n > &o {
                            changed.push(merged.len());
                            merged.push(n.clone());
                        } else {
                            merged.push(o);
                        }
                    }
                }
            }
        }
        merged.truncate(MAX_ENTRIES);
        self.entries = merged;
        changed
            .into_iter()
            .filter(|&i| i < self.entries.len())
            .map(|i| self.entries[i].clone())
            .collect()
    }

    /// The diff to answer a peer's full list with: the entries of this list that `theirs`
    /// lacks, or holds only in a losing form (an older version, or the smaller of equal
    /// versions), sorted by uid. `theirs` may be in any order and hold duplicate uids (the
    /// rule picks its winner per uid).
    ///
    /// Called after merging `theirs`, the peer's merge of the diff makes its list equal to
    /// this one (see "Why it never loops" in the module header).
    pub fn diff_for(&self, theirs: &[NodeEntry]) -> Vec<NodeEntry> {
        let theirs = winners(theirs);
        let mut t = theirs.into_iter().peekable();
        let mut diff = Vec::new();
        for mine in &self.entries {
            while t.next_if(|e| e.uid() < mine.uid()).is_some() {}
            let wanted = match t.peek() {
                Some(e) if e.uid() == mine.uid() => mine > *e,
                _ => true,
            };
            if wanted {
                diff.push(mine.clone());
            }
        }
        diff
    }

    /// Length of the canonical form, in bytes: 4 + the entries' encoded lengths.
    pub fn canonical_len(&self) -> usize {
        COUNT_LEN
            + self
                .entries
                .iter()
                .map(NodeEntry::encoded_len)
                .sum::<usize>()
    }

    /// The canonical form `[count u32][entries sorted by uid]` (module header).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.canonical_len());
        out.extend_from_slice(&self.count().to_be_bytes());
        for e in &self.entries {
            e.encode_into(&mut out);
        }
        out
    }

    /// SHA-512 of the canonical form: equal for two lists holding the same entries.
    pub fn hash(&self) -> [u8; HASH_LEN] {
        let mut h = Sha512::new();
        h.update(self.count().to_be_bytes());
        let mut buf = [0u8; MAX_ENTRY_LEN];
        for e in &self.entries {
            // Cannot fail: the buffer holds the longest entry.
            let n = e.emit(&mut buf).unwrap_or(0);
            h.update(&buf[..n]);
        }
        h.finalize().into()
    }

    /// [`Self::hash`] as 128 lowercase hex digits (for logs and status output).
    pub fn hash_hex(&self) -> String {
        hex(&self.hash())
    }

    /// The NodeListHash frame (10) of this list.
    pub fn hash_frame(&self) -> NodeListFrame {
        NodeListFrame::Hash(self.hash())
    }

    /// The entries as reconciliation sees them, in list order: `(version, id)` each
    /// ([`crate::federation::reconcile::node_item`]; docs/PROTOCOL.md §8.20, set 3).
    pub fn items(&self) -> Vec<Item> {
        self.entries.iter().map(node_item).collect()
    }

    /// The entries whose ids ([`crate::federation::reconcile::node_record_id`]) are in
    /// `ids`, in list order, each once: what a NodeSync's want asks for. An id names its
    /// uid, so each is looked up by uid and checked whole (ids not in the list, or of
    /// entries superseded since, are skipped): O(k log n) for k ids, not a hash of every
    /// entry.
    pub fn with_ids(&self, ids: &[EntryId]) -> Vec<NodeEntry> {
        let mut found: Vec<NodeEntry> = ids
            .iter()
            .filter_map(|id| {
                let (uid, _) = node_id_parts(id);
                self.get(&uid).filter(|e| node_record_id(e) == *id).cloned()
            })
            .collect();
        found.sort_unstable_by(|a, b| a.uid().cmp(b.uid()));
        found.dedup();
        found
    }

    /// What a reconciliation's findings move (docs/PROTOCOL.md §8.15, "exchange"): of
    /// `have` (ids of ours the peer lacks), our entries as they stand, but not those the
    /// peer holds a newer version of (an id of `need` for the same uid and a higher
    /// version); of `need` (ids of the peer's that we lack), those but of versions below
    /// ours for their uid (ids name their uid and version:
    /// [`crate::federation::reconcile::node_id_parts`]). Returns (entries to send, ids to
    /// want); equal versions of one uid are both sent and wanted (the merge's order picks).
    pub fn sync_parts(&self, have: &[EntryId], need: &[EntryId]) -> (Vec<NodeEntry>, Vec<EntryId>) {
        let newest_needed: std::collections::HashMap<Uid, u64> = need
            .iter()
            .map(node_id_parts)
            .fold(Default::default(), |mut m, (uid, v)| {
                let slot = m.entry(uid).or_insert(v);
                *slot = (*slot).max(v);
                m
            });
        let send = self
            .with_ids(have)
            .into_iter()
            .filter(|e| {
                newest_needed
                    .get(e.uid())
                    .map_or(true, |&v| v <= e.version())
            })
            .collect();
        let want = need
            .iter()
            .filter(|id| {
                let (uid, v) = node_id_parts(id);
                self.get(&uid).map_or(true, |e| e.version() <= v)
            })
            .copied()
            .collect();
        (send, want)
    }

    /// The NodeList frame (11) of this list: `0x0b` followed by the canonical form.
    pub fn list_frame(&self) -> NodeListFrame {
        NodeListFrame::List(self.entries.clone())
    }

    /// The entry count as the u32 of the canonical form (at most 4096).
    fn count(&self) -> u32 {
        self.entries.len() as u32
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// What one [`sync`] cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Exchanges that found the lists different (a reconciliation, then a NodeSync and its
    /// NodeListDiff): 0 when the hashes already matched, 1 otherwise; more would be a loop.
    pub rounds: u32,
    /// Entries sent, in syncs and diffs together.
    pub entries_sent: usize,
    /// Frames sent by both sides: 2 per hash exchange, 2 per reconciliation round trip,
    /// 2 per NodeSync and its diff.
    pub frames_sent: u32,
    /// Bytes of those frames.
    pub bytes_sent: usize,
}

/// Rounds after which [`sync`] gives up (a loop; never reached).
const SYNC_ROUND_LIMIT: u32 = 8;

/// Runs the node list sync between opener `a` and acceptor `b`, in memory, as two servers
/// do it (docs/PROTOCOL.md §8.15): hash exchange; if the hashes differ, a reconciliation
/// of the lists (frame 22, set 3: A initiates, B answers each message from its list), A's
/// NodeSync of the entries B lacks and the ids A lacks ([`NodeList::sync_parts`]), B's
/// merge and its diff of the entries wanted, A's merge (or, when A's list holds at most
/// [`WHOLE_LIST_MAX`] entries, A's whole list, B's merge and its diff); then the hash
/// exchange again. Stops when the hashes match
/// (or after 8 rounds, which would be a loop; the properties in the tests show it never
/// happens).
///
/// A first sync of two different lists costs one round: 2 hash frames, 2 a reconciliation
/// round trip (one for lists of under a few hundred entries that differ little), the
/// NodeSync and its diff, and 2 hash frames; a second costs the 2 hash frames only. Its
/// bytes grow with the differences, not the lists: one changed entry of 4096 costs a few
/// hundred bytes beside the entry (docs/CAPACITY.md, "Federation").
pub fn sync(a: &mut NodeList, b: &mut NodeList) -> SyncStats {
    let mut stats = SyncStats::default();
    loop {
        stats.frames_sent += 2;
        stats.bytes_sent += 2 * HASH_FRAME_LEN;
        if a.hash() == b.hash() || stats.rounds >= SYNC_ROUND_LIMIT {
            return stats;
        }
        stats.rounds += 1;
        if a.len() <= WHOLE_LIST_MAX {
            whole_list(a, b, &mut stats);
            continue;
        }
        let Ok((have, need)) = reconcile_lists(a, b, &mut stats) else {
            return stats;
        };
        let (entries, want) = a.sync_parts(&have, &need);
        b.merge(&entries);
        let diff = b.with_ids(&want);
        let sync = NodeListFrame::Sync { entries, want };
        stats.frames_sent += 2;
        stats.entries_sent += sync.entries().len() + diff.len();
        stats.bytes_sent += sync.buffer_len() + NodeListFrame::Diff(diff.clone()).buffer_len();
        a.merge(&diff);
    }
}

/// A's whole list (11) to B, B's merge and its diff (12), A's merge.
fn whole_list(a: &mut NodeList, b: &mut NodeList, stats: &mut SyncStats) {
    let list = a.entries();
    b.merge(list);
    let diff = b.diff_for(list);
    stats.frames_sent += 2;
    stats.entries_sent += list.len() + diff.len();
    stats.bytes_sent += 1 + a.canonical_len();
    stats.bytes_sent += 1 + COUNT_LEN + diff.iter().map(NodeEntry::encoded_len).sum::<usize>();
    a.merge(&diff);
}

/// One reconciliation of `a`'s list (initiating) with `b`'s (answering), its messages
/// counted in `stats` as frames 22 (`[22][len u16][set 3][message]`): the ids A holds
/// that B lacks, and those B holds that A lacks.
fn reconcile_lists(
    a: &NodeList,
    b: &NodeList,
    stats: &mut SyncStats,
) -> Result<(Vec<EntryId>, Vec<EntryId>), ReconcileError> {
    let mut init = Initiator::new(&a.items())?;
    let mut responder = Responder::new(&b.items())?;
    let mut msg = init.first().to_vec();
    loop {
        let answer = responder.answer(&msg)?;
        stats.frames_sent += 2;
        stats.bytes_sent += 2 * 4 + msg.len() + answer.len();
        match init.step(&answer)? {
            Some(next) => msg = next,
            None => return Ok((init.have().to_vec(), init.need_ids().to_vec())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::nodelist::test_entries::{arb_entry, entry};
    use proptest::prelude::*;

    #[test]
    fn with_ids_finds_each_entry_once_and_not_a_superseded_version() {
        let list = NodeList::from_entries(vec![entry(1, 2, "a"), entry(2, 5, "b")]);
        let id = |e: &NodeEntry| node_record_id(e);
        let (v2, old, b) = (entry(1, 2, "a"), entry(1, 1, "a"), entry(2, 5, "b"));
        assert_eq!(list.with_ids(&[id(&b), id(&v2), id(&b)]), [v2.clone(), b]);
        assert!(list.with_ids(&[id(&old)]).is_empty(), "superseded: skipped");
        assert!(
            list.with_ids(&[id(&entry(9, 1, "z"))]).is_empty(),
            "unknown: skipped"
        );
    }

    #[test]
    fn cap_keeps_lowest_uids() {
        let many: Vec<NodeEntry> = (0..=MAX_ENTRIES as u16)
            .rev()
            .map(|i| {
                let mut uid = [0u8; 16];
                uid[14..].copy_from_slice(&i.to_be_bytes());
                NodeEntry::new(uid, 0, "", "h:1", vec![1]).unwrap()
            })
            .collect();
        let list = NodeList::from_entries(many.clone());
        assert_eq!(list.len(), MAX_ENTRIES);
        assert_eq!(list.entries().last().unwrap().uid()[14..], [0x0f, 0xff]);
        // Merging the highest uid again changes nothing and reports nothing.
        let mut l2 = list.clone();
        assert!(l2.merge(&many[..1]).is_empty());
        assert_eq!(l2, list);
    }

    #[test]
    fn merge_reports_final_entries() {
        let mut l = NodeList::from_entries(vec![entry(1, 1, "a")]);
        let changed = l.merge(&[entry(2, 0, "x"), entry(2, 5, "y"), entry(1, 0, "old")]);
        assert_eq!(changed, vec![entry(2, 5, "y")]);
        assert_eq!(l.entries(), &[entry(1, 1, "a"), entry(2, 5, "y")]);
        assert!(l.merge(&[entry(2, 5, "y")]).is_empty());
        assert_eq!(l.get(&[2; 16]), Some(&entry(2, 5, "y")));
        assert_eq!(l.get(&[3; 16]), None);
    }

    #[test]
    fn reissue_goes_just_above_the_greatest_winner_within_reach() {
        let own = entry(1, 5, "new");
        // Equal version, bytewise larger rest: beats ours; so does a higher version.
        let stale = [entry(1, 5, "old-name"), entry(1, 7, "a"), entry(2, 99, "x")];
        let again = reissue(&own, 5, &stale).unwrap();
        assert_eq!(
            again,
            NodeEntry::new([1; 16], 8, "new", own.location(), own.public_key()).unwrap()
        );
        assert!(again > stale[1]);
        assert_eq!(reissue(&own, 5, &stale[..1]).unwrap().version(), 6);
        // Nothing beats ours, or only other uids.
        assert_eq!(
            reissue(
                &own,
                5,
                &[entry(1, 4, "zzz"), own.clone(), stale[2].clone()]
            ),
            None
        );
        // Out of reach: start + REISSUE_REACH or above.
        let far = entry(1, 5 + REISSUE_REACH, "a");
        assert_eq!(reissue(&own, 5, std::slice::from_ref(&far)), None);
        assert_eq!(
            reissue(&own, 6, &[far]).unwrap().version(),
            6 + REISSUE_REACH
        );
    }

    #[test]
    fn reissue_never_overflows() {
        let own = entry(1, u64::MAX - 1, "a");
        let top = entry(1, u64::MAX, "b");
        assert_eq!(
            reissue(&own, u64::MAX - 1, std::slice::from_ref(&top)),
            None
        );
        let own = entry(1, u64::MAX - 2, "a");
        let near = entry(1, u64::MAX - 1, "b");
        let again = reissue(&own, u64::MAX - 2, &[near]).unwrap();
        assert_eq!(again.version(), u64::MAX);
        assert_eq!(reissue(&again, u64::MAX - 2, &[top]), None);
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0x00, 0x9f, 0xa0]), "009fa0");
        assert_eq!(NodeList::new().hash_hex().len(), 128);
    }

    proptest! {
        #[test]
        fn hash_is_hash_of_canonical_bytes(v in prop::collection::vec(arb_entry(), 0..8)) {
            let l = NodeList::from_entries(v);
            let want: [u8; 64] = Sha512::digest(l.canonical_bytes()).into();
            prop_assert_eq!(l.hash(), want);
            prop_assert_eq!(l.canonical_bytes().len(), l.canonical_len());
            let frame = l.list_frame().to_vec().unwrap();
            prop_assert_eq!(&frame[1..], &l.canonical_bytes()[..]);
        }
    }
}
