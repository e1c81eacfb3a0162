//! Tests of the node list (`src/federation/nodelist.rs`, its codec
//! `src/wire/tcp/nodelist.rs`; docs/PROTOCOL.md §8.15): the canonical bytes of a list written by hand in hex and its SHA-512 checked
//! against `sha512sum`; the hash does not depend on the order of insertion; the rule for two
//! entries with one uid, in both orders; merge is commutative, associative and idempotent;
//! the sync of ANY two lists ends in one round with equal hashes and a second sync sends
//! only the hashes (it never loops); frames 10-12 round-trip, a frame cut at any offset is
//! "need more" / `Truncated`, arbitrary bytes never panic, and 4097 entries are refused.

use proptest::prelude::*;
use rendezvous::federation::nodelist::{sync, NodeList, SyncStats, WHOLE_LIST_MAX};
use rendezvous::wire::tcp::nodelist::{
    frame_len, has_duplicate_uids, NodeEntry, NodeListFrame, CMD_NODE_LIST, CMD_NODE_LIST_DIFF,
    CMD_NODE_LIST_HASH, HASH_FRAME_LEN, MAX_ENTRIES, MAX_FRAME_LEN,
};
use rendezvous::wire::WireError;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Bytes from hand-written hex (whitespace ignored).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd hex fixture");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn node(uid: [u8; 16], version: u64, alias: &str, location: &str, key: &[u8]) -> NodeEntry {
    NodeEntry::new(uid, version, alias, location, key.to_vec()).unwrap()
}

/// A uid whose last two bytes are `i`.
fn uid_n(i: u16) -> [u8; 16] {
    let mut uid = [0u8; 16];
    uid[14..].copy_from_slice(&i.to_be_bytes());
    uid
}

/// The two entries of the hand-written fixture.
fn fixture_entries() -> (NodeEntry, NodeEntry) {
    (
        node([0x01; 16], 1, "a", "h:1", &[0xaa]),
        node(
            [0x02; 16],
            0x0102_0304_0506_0708,
            "bb",
            "10.0.0.2:47",
            &[0xbb, 0xcc],
        ),
    )
}

/// The canonical form of the fixture, by hand from the module header's diagram.
const FIXTURE_CANONICAL: &str = "
    00000002                            count 2
    01010101010101010101010101010101    uid 01 x 16
    0000000000000001                    version 1
    01 61                               alias \"a\"
    03 683a31                           location \"h:1\"
    01 aa                               key (1 byte)
    02020202020202020202020202020202    uid 02 x 16
    0102030405060708                    version
    02 6262                             alias \"bb\"
    0b 31302e302e302e323a3437           location \"10.0.0.2:47\"
    02 bbcc                             key (2 bytes)
";

/// Strips the comments (everything from the first non-hex word on a line) of a fixture.
fn fixture_hex(text: &str) -> Vec<u8> {
    let mut s = String::new();
    for line in text.lines() {
        for word in line.split_whitespace() {
            if word.bytes().all(|b| b.is_ascii_hexdigit()) {
                s.push_str(word);
            } else {
                break;
            }
        }
    }
    hex(&s)
}

/// SHA-512 of [`FIXTURE_CANONICAL`], from `xxd -r -p | sha512sum`.
const FIXTURE_HASH: &str = "6aa2e01b9be6987b3d090813ba040212dc914586746112425101e42a08f3133b\
                            6ff2b7e5e3e44ca543532732838833ada3291ee3206c74425c2b369f1859b8c2";

/// SHA-512 of `00 00 00 00` (the empty list), from `sha512sum`.
const EMPTY_HASH: &str = "ec2d57691d9b2d40182ac565032054b7d784ba96b18bcb5be0bb4e70e3fb041e\
                          ff582c8af66ee50256539f2181d7f9e53627c0189da7e75a4d5ef10ea93b20b3";

// ---------------------------------------------------------------------------------------
// Canonical form and hash
// ---------------------------------------------------------------------------------------

#[test]
fn canonical_bytes_of_two_entries_by_hand() {
    let (x, y) = fixture_entries();
    let want = fixture_hex(FIXTURE_CANONICAL);
    assert_eq!(want.len(), 4 + (27 + 1 + 3 + 1) + (27 + 2 + 11 + 2));
    // Inserted in reverse order: the canonical form sorts by uid.
    let list = NodeList::from_entries(vec![y.clone(), x.clone()]);
    assert_eq!(list.canonical_bytes(), want);
    assert_eq!(list.canonical_len(), want.len());
    assert_eq!(list.hash().to_vec(), hex(FIXTURE_HASH));
    assert_eq!(list.hash_hex(), FIXTURE_HASH);
    assert_eq!(list.entries(), &[x.clone(), y.clone()]);
    assert_eq!((x.encoded_len(), y.encoded_len()), (32, 42));

    // Frame 11 is 0x0b followed by the canonical form; frame 10 is 0x0a, 0x40 (64) and the hash.
    let list_frame = list.list_frame().to_vec().unwrap();
    assert_eq!(list_frame, [vec![0x0b], want.clone()].concat());
    assert_eq!(
        NodeListFrame::parse(&list_frame),
        Ok(NodeListFrame::List(vec![x, y]))
    );
    let hash_frame = list.hash_frame().to_vec().unwrap();
    assert_eq!(hash_frame, [vec![0x0a, 0x40], hex(FIXTURE_HASH)].concat());
    assert_eq!(hash_frame.len(), HASH_FRAME_LEN);
    // A diff of the same entries differs only in the command byte.
    let diff = NodeListFrame::Diff(list.entries().to_vec())
        .to_vec()
        .unwrap();
    assert_eq!(diff, [vec![0x0c], want].concat());
}

#[test]
fn empty_list() {
    let empty = NodeList::new();
    assert!(empty.is_empty());
    assert_eq!(empty.canonical_bytes(), hex("00000000"));
    assert_eq!(empty.hash_hex(), EMPTY_HASH);
    assert_eq!(empty.list_frame().to_vec().unwrap(), hex("0b 00000000"));
    assert_eq!(
        NodeListFrame::parse(&hex("0c 00000000")),
        Ok(NodeListFrame::Diff(vec![]))
    );
    assert_eq!(frame_len(&hex("0c 00000000 ff")), Ok(Some(5)));
}

#[test]
fn hash_ignores_insertion_order() {
    let (x, y) = fixture_entries();
    let z = node([0x00; 16], 7, "z", "[::1]:4747", &[9; 32]);
    let orders = [
        vec![x.clone(), y.clone(), z.clone()],
        vec![z.clone(), y.clone(), x.clone()],
        vec![y.clone(), z.clone(), x.clone()],
    ];
    let hashes: Vec<_> = orders
        .iter()
        .map(|o| NodeList::from_entries(o.clone()).hash())
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
    // One at a time gives the same list too.
    let mut one_by_one = NodeList::new();
    for e in [&y, &z, &x] {
        one_by_one.merge(std::slice::from_ref(e));
    }
    assert_eq!(one_by_one.hash(), hashes[0]);
    // And a different set hashes differently.
    assert_ne!(NodeList::from_entries(vec![x, y]).hash(), hashes[0]);
}

// ---------------------------------------------------------------------------------------
// Two entries with one uid
// ---------------------------------------------------------------------------------------

/// Checks that `winner` survives against `loser` whatever the order, in from_entries,
/// merge and the merge's report.
fn assert_wins(winner: &NodeEntry, loser: &NodeEntry) {
    assert!(winner.supersedes(loser) && !loser.supersedes(winner));
    for pair in [
        vec![winner.clone(), loser.clone()],
        vec![loser.clone(), winner.clone()],
    ] {
        let list = NodeList::from_entries(pair);
        assert_eq!(list.entries(), std::slice::from_ref(winner));
    }
    let mut l = NodeList::from_entries(vec![loser.clone()]);
    assert_eq!(
        l.merge(std::slice::from_ref(winner)),
        vec![winner.clone()],
        "a winner changes the list"
    );
    assert_eq!(l.get(winner.uid()), Some(winner));
    assert!(
        l.merge(std::slice::from_ref(loser)).is_empty(),
        "a loser does not"
    );
    assert_eq!(l.get(winner.uid()), Some(winner));
}

#[test]
fn duplicate_uid_higher_version_wins_both_orders() {
    let uid = [7; 16];
    let old = node(uid, 1, "zzzz", "zz:9", &[0xff; 32]);
    let new = node(uid, 2, "a", "a:1", &[0x00]);
    // The higher version wins even though the older entry's bytes after it are larger.
    assert_wins(&new, &old);
    assert_wins(
        &node(uid, u64::MAX, "", "", &[0]),
        &node(uid, u64::MAX - 1, "x", "x", &[1]),
    );
}

#[test]
fn duplicate_uid_equal_versions_bytewise_larger_wins_both_orders() {
    let uid = [7; 16];
    // alias_len comes first: "ab" (02 61 62) is larger than "b" (01 62).
    assert_wins(
        &node(uid, 3, "ab", "h:1", &[1]),
        &node(uid, 3, "b", "h:1", &[1]),
    );
    // Same alias: the location decides.
    assert_wins(
        &node(uid, 3, "n", "h:2", &[1]),
        &node(uid, 3, "n", "h:1", &[1]),
    );
    // Same alias and location: the key decides.
    assert_wins(
        &node(uid, 3, "n", "h:1", &[2]),
        &node(uid, 3, "n", "h:1", &[1]),
    );
    assert_wins(
        &node(uid, 3, "n", "h:1", &[0, 0]),
        &node(uid, 3, "n", "h:1", &[9]),
    );
    // And the winner is the one whose encoding is bytewise larger.
    let (a, b) = (
        node(uid, 3, "n", "h:1", &[2]),
        node(uid, 3, "n", "h:1", &[1]),
    );
    assert!(a.to_bytes() > b.to_bytes());
}

#[test]
fn duplicate_uids_in_a_received_list_parse_and_merge_by_the_rule() {
    let uid = [5; 16];
    let (lo, hi) = (
        node(uid, 1, "old", "h:1", &[1]),
        node(uid, 2, "new", "h:1", &[1]),
    );
    let other = node([6; 16], 0, "o", "h:1", &[1]);
    for entries in [
        vec![hi.clone(), other.clone(), lo.clone()],
        vec![lo.clone(), other.clone(), hi.clone()],
    ] {
        let bytes = NodeListFrame::List(entries.clone()).to_vec().unwrap();
        let frame = NodeListFrame::parse(&bytes).unwrap();
        assert!(frame.has_duplicate_uids());
        assert_eq!(frame.entries(), &entries[..]);
        let mut l = NodeList::new();
        l.merge(frame.entries());
        assert_eq!(l.entries(), &[hi.clone(), other.clone()]);
    }
    assert!(!has_duplicate_uids(&[hi.clone(), other.clone()]));
    assert!(has_duplicate_uids(&[hi.clone(), hi]));
    assert!(!NodeListFrame::Hash([0; 64]).has_duplicate_uids());
}

#[test]
fn entry_bounds() {
    let e = |a: usize, l: usize, k: usize| {
        NodeEntry::new([0; 16], 0, "é".repeat(a / 2), "l".repeat(l), vec![1; k])
    };
    assert!(e(254, 255, 255).is_ok());
    assert_eq!(e(256, 0, 1), Err(WireError::NameTooLong));
    assert_eq!(e(0, 256, 1), Err(WireError::NameTooLong));
    assert_eq!(e(0, 0, 0), Err(WireError::BadLength));
    assert_eq!(e(0, 0, 256), Err(WireError::BadLength));
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Entries drawn from a small space, so that uids collide often and equal versions with
/// different content are common; now and then a random uid, a large version, a real-size
/// key.
fn arb_entry() -> impl Strategy<Value = NodeEntry> {
    (
        prop_oneof![4 => (0u8..6).prop_map(|u| [u; 16]), 1 => any::<[u8; 16]>()],
        prop_oneof![4 => 0u64..3, 1 => any::<u64>()],
        prop::sample::select(vec!["", "a", "b", "ab", "etk", "nvp", "é", "a\0b"]),
        prop::sample::select(vec!["10.0.0.1:4747", "10.0.0.2:4747", "[::1]:1", ""]),
        prop_oneof![
            3 => prop::collection::vec(0u8..3, 1..3),
            1 => prop::collection::vec(any::<u8>(), 32..=32),
            1 => prop::collection::vec(any::<u8>(), 1..=255),
        ],
    )
        .prop_map(|(uid, v, a, l, k)| NodeEntry::new(uid, v, a, l, k).unwrap())
}

fn arb_entries(max: usize) -> impl Strategy<Value = Vec<NodeEntry>> {
    prop::collection::vec(arb_entry(), 0..=max)
}

fn arb_frame() -> impl Strategy<Value = NodeListFrame> {
    prop_oneof![
        any::<[u8; 64]>().prop_map(NodeListFrame::Hash),
        arb_entries(12).prop_map(NodeListFrame::List),
        arb_entries(12).prop_map(NodeListFrame::Diff),
    ]
}

// ---------------------------------------------------------------------------------------
// Merge properties and the sync
// ---------------------------------------------------------------------------------------

fn merged(parts: &[&[NodeEntry]]) -> NodeList {
    let mut l = NodeList::new();
    for p in parts {
        l.merge(p);
    }
    l
}

/// Checks a list's invariants: sorted by uid, unique uids, at most 4096.
fn assert_invariants(l: &NodeList) {
    assert!(l.len() <= MAX_ENTRIES);
    assert!(l.entries().windows(2).all(|w| w[0].uid() < w[1].uid()));
    assert!(!has_duplicate_uids(l.entries()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn merge_is_commutative(a in arb_entries(10), b in arb_entries(10)) {
        let ab = merged(&[&a, &b]);
        let ba = merged(&[&b, &a]);
        assert_invariants(&ab);
        prop_assert_eq!(&ab, &ba);
        prop_assert_eq!(ab.hash(), ba.hash());
        // Merging lists (not only raw entries) commutes too.
        let (la, lb) = (NodeList::from_entries(a.clone()), NodeList::from_entries(b.clone()));
        let mut x = la.clone();
        x.merge(lb.entries());
        let mut y = lb.clone();
        y.merge(la.entries());
        prop_assert_eq!(&x, &y);
        prop_assert_eq!(&x, &ab);
    }

    #[test]
    fn merge_is_associative(a in arb_entries(8), b in arb_entries(8), c in arb_entries(8)) {
        let mut ab = merged(&[&a, &b]);
        ab.merge(&c);
        let bc = merged(&[&b, &c]);
        let mut a_bc = merged(&[&a]);
        a_bc.merge(bc.entries());
        prop_assert_eq!(&ab, &a_bc);
        let all: Vec<NodeEntry> = [a, b, c].concat();
        prop_assert_eq!(&ab, &NodeList::from_entries(all));
    }

    #[test]
    fn merge_is_idempotent(a in arb_entries(10), b in arb_entries(10)) {
        let mut l = merged(&[&a, &b]);
        let before = l.clone();
        prop_assert!(l.merge(&a).is_empty());
        prop_assert!(l.merge(&b).is_empty());
        let own = l.entries().to_vec();
        prop_assert!(l.merge(&own).is_empty());
        prop_assert_eq!(&l, &before);
    }

    #[test]
    fn merge_reports_exactly_what_changed(a in arb_entries(10), b in arb_entries(10)) {
        let mut l = NodeList::from_entries(a);
        let before = l.clone();
        let changed = l.merge(&b);
        let expect: Vec<NodeEntry> = l
            .entries()
            .iter()
            .filter(|e| before.get(e.uid()) != Some(*e))
            .cloned()
            .collect();
        prop_assert_eq!(changed, expect);
    }

    #[test]
    fn hash_is_independent_of_order(a in arb_entries(12), seed in any::<u64>()) {
        let mut shuffled = a.clone();
        // A deterministic shuffle from the seed (Fisher-Yates on an LCG).
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(
            NodeList::from_entries(a).hash(),
            NodeList::from_entries(shuffled).hash()
        );
    }

    #[test]
    fn sync_never_loops(a in arb_entries(12), b in arb_entries(12)) {
        let (mut la, mut lb) = (NodeList::from_entries(a.clone()), NodeList::from_entries(b.clone()));
        let differed = la.hash() != lb.hash();
        let union = NodeList::from_entries([a, b].concat());
        let first = sync(&mut la, &mut lb);
        prop_assert_eq!(la.hash(), lb.hash());
        prop_assert_eq!(&la, &union);
        prop_assert_eq!(&lb, &union);
        if differed {
            // Lists this short are sent whole: hashes, the list and its diff, hashes.
            prop_assert_eq!(first.rounds, 1);
            prop_assert_eq!(first.frames_sent, 6);
        } else {
            prop_assert_eq!(first, SyncStats { rounds: 0, entries_sent: 0, frames_sent: 2, bytes_sent: 2 * HASH_FRAME_LEN });
        }
        let second = sync(&mut la, &mut lb);
        prop_assert_eq!(second, SyncStats { rounds: 0, entries_sent: 0, frames_sent: 2, bytes_sent: 2 * HASH_FRAME_LEN });
        // The other direction has nothing to do either.
        prop_assert_eq!(sync(&mut lb, &mut la).rounds, 0);
    }

    #[test]
    fn sync_over_the_wire(a in arb_entries(12), b in arb_entries(12)) {
        // The same exchange, every message encoded and parsed, B using what it parsed.
        let (mut la, mut lb) = (NodeList::from_entries(a), NodeList::from_entries(b));
        let ask = NodeListFrame::parse(&la.hash_frame().to_vec().unwrap()).unwrap();
        let answer = NodeListFrame::parse(&lb.hash_frame().to_vec().unwrap()).unwrap();
        if ask != answer {
            let bytes = la.list_frame().to_vec().unwrap();
            prop_assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
            let NodeListFrame::List(list) = NodeListFrame::parse(&bytes).unwrap() else {
                panic!("not a list");
            };
            lb.merge(&list);
            let diff = NodeListFrame::Diff(lb.diff_for(&list)).to_vec().unwrap();
            let NodeListFrame::Diff(diff) = NodeListFrame::parse(&diff).unwrap() else {
                panic!("not a diff");
            };
            la.merge(&diff);
        }
        prop_assert_eq!(la.hash(), lb.hash());
    }

    #[test]
    fn diff_for_raw_lists_with_duplicates(a in arb_entries(12), b in arb_entries(12)) {
        // B answers a raw received list (duplicates, any order); A merges its raw list
        // and the diff: equal to B.
        let mut lb = NodeList::from_entries(b);
        lb.merge(&a);
        let diff = lb.diff_for(&a);
        prop_assert!(diff.windows(2).all(|w| w[0].uid() < w[1].uid()));
        let mut la = NodeList::from_entries(a.clone());
        la.merge(&diff);
        prop_assert_eq!(&la, &lb);
        // Nothing in the diff is something A already held in that form or better.
        let orig = NodeList::from_entries(a);
        for e in &diff {
            if let Some(o) = orig.get(e.uid()) {
                prop_assert!(e.supersedes(o));
            }
        }
    }

    #[test]
    fn three_servers_converge(a in arb_entries(8), b in arb_entries(8), c in arb_entries(8)) {
        let mut l = [a.clone(), b.clone(), c.clone()].map(NodeList::from_entries);
        let union = NodeList::from_entries([a, b, c].concat());
        let [x, y, z] = &mut l;
        sync(x, y);
        sync(y, z);
        sync(z, x);
        for s in &l {
            prop_assert_eq!(s, &union);
        }
    }
}

#[test]
fn sync_identical_and_empty_lists() {
    let (x, y) = fixture_entries();
    let hashes_only = SyncStats {
        rounds: 0,
        entries_sent: 0,
        frames_sent: 2,
        bytes_sent: 2 * HASH_FRAME_LEN,
    };
    let (mut e1, mut e2) = (NodeList::new(), NodeList::new());
    assert_eq!(sync(&mut e1, &mut e2), hashes_only);
    let mut full = NodeList::from_entries(vec![x.clone(), y.clone()]);
    let mut same = full.clone();
    assert_eq!(sync(&mut full, &mut same), hashes_only);
    // Empty opener: sends an empty list (5 bytes), gets both entries back.
    let mut empty = NodeList::new();
    let s = sync(&mut empty, &mut full);
    assert_eq!(s.rounds, 1);
    assert_eq!(s.entries_sent, 2);
    assert_eq!(
        s.bytes_sent,
        4 * HASH_FRAME_LEN + 5 + (5 + x.encoded_len() + y.encoded_len())
    );
    assert_eq!(empty, full);
    // Empty acceptor: gets the list, answers an empty diff.
    let mut empty = NodeList::new();
    let s = sync(&mut full, &mut empty);
    assert_eq!((s.rounds, s.entries_sent), (1, 2));
    assert_eq!(empty, full);
}

/// Two lists of 33 to 120 servers (past [`WHOLE_LIST_MAX`], so reconciled): each uid is
/// held by A, B or both, at versions 1 to 3 (one version of a uid is one entry).
fn arb_large_pair() -> impl Strategy<Value = (Vec<NodeEntry>, Vec<NodeEntry>)> {
    prop::collection::vec((0u8..3, 1u64..4, 1u64..4), 33..120).prop_map(|uids| {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (i, (held, va, vb)) in uids.into_iter().enumerate() {
            let e = |v: u64| node(uid_n(i as u16), v, &format!("n{i}"), "h:1", &[1]);
            if held != 1 {
                a.push(e(va));
            }
            if held != 0 {
                b.push(e(vb));
            }
        }
        (a, b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Lists past [`WHOLE_LIST_MAX`] are reconciled: one round, equal to their merge
    /// after it, and only the winning version of each uid that differs moves (an older
    /// version is neither sent nor asked for), so the entries sent are exactly the uids
    /// the lists differ on.
    #[test]
    fn long_lists_reconcile_moving_only_the_winners((a, b) in arb_large_pair()) {
        prop_assume!(a.len() > WHOLE_LIST_MAX);
        let union = NodeList::from_entries([a.clone(), b.clone()].concat());
        let (mut la, mut lb) = (NodeList::from_entries(a), NodeList::from_entries(b));
        let differ = union
            .entries()
            .iter()
            .filter(|e| la.get(e.uid()) != Some(*e) || lb.get(e.uid()) != Some(*e))
            .count();
        let s = sync(&mut la, &mut lb);
        prop_assert_eq!(&la, &union);
        prop_assert_eq!(&lb, &union);
        prop_assert_eq!(s.rounds, u32::from(differ > 0));
        prop_assert_eq!(s.entries_sent, differ);
        prop_assert!(s.frames_sent >= 2 + 4 * u32::from(differ > 0));
        prop_assert_eq!(sync(&mut la, &mut lb).rounds, 0);
    }
}

#[test]
fn sync_at_the_cap_converges() {
    // A holds the even uids, B the odd ones, 3000 each: the union is over 4096, and both
    // keep the same 4096 lowest uids after one round.
    let make = |parity: u16| -> Vec<NodeEntry> {
        (0..3000)
            .map(|i| node(uid_n(2 * i + parity), 1, "n", "h:1", &[1]))
            .collect()
    };
    let (mut a, mut b) = (
        NodeList::from_entries(make(0)),
        NodeList::from_entries(make(1)),
    );
    let s = sync(&mut a, &mut b);
    assert_eq!(s.rounds, 1);
    assert_eq!(a, b);
    assert_eq!(a.len(), MAX_ENTRIES);
    assert_eq!(a.entries().last().unwrap().uid(), &uid_n(4095));
    assert_eq!(sync(&mut a, &mut b).rounds, 0);
    assert!(a.list_frame().to_vec().is_ok());
}

// ---------------------------------------------------------------------------------------
// Wire
// ---------------------------------------------------------------------------------------

#[test]
fn command_bytes() {
    assert_eq!(
        (CMD_NODE_LIST_HASH, CMD_NODE_LIST, CMD_NODE_LIST_DIFF),
        (10, 11, 12)
    );
    assert_eq!(NodeListFrame::Hash([0; 64]).command_byte(), 10);
    assert_eq!(NodeListFrame::List(vec![]).command_byte(), 11);
    assert_eq!(NodeListFrame::Diff(vec![]).command_byte(), 12);
}

#[test]
fn hash_of_the_wrong_length() {
    // The length byte frames the hash; anything but 64 is one whole frame, refused.
    for len in [0u8, 1, 32, 63, 65, 255] {
        let mut f = vec![0x0a, len];
        f.extend(vec![0x5a; usize::from(len)]);
        assert_eq!(frame_len(&f), Ok(Some(2 + usize::from(len))));
        assert_eq!(NodeListFrame::parse(&f), Err(WireError::BadLength));
    }
    let mut f = hex("0a 40");
    f.extend([0x5a; 63]);
    assert_eq!(NodeListFrame::parse(&f), Err(WireError::Truncated));
    assert_eq!(frame_len(&f), Ok(None));
    assert_eq!(frame_len(&f[..1]), Ok(None));
    f.push(0x5a);
    assert_eq!(frame_len(&f), Ok(Some(66)));
    assert_eq!(
        NodeListFrame::parse(&f),
        Ok(NodeListFrame::Hash([0x5a; 64]))
    );
    f.push(0x5a);
    assert_eq!(NodeListFrame::parse(&f), Err(WireError::TrailingData));
    assert_eq!(frame_len(&f), Ok(Some(66)));
}

#[test]
fn malformed_frames() {
    assert_eq!(NodeListFrame::parse(&[]), Err(WireError::Truncated));
    assert_eq!(frame_len(&[]), Ok(None));
    for b in [0u8, 1, 7, 9, 13, 0xff] {
        assert_eq!(NodeListFrame::parse(&[b]), Err(WireError::UnknownCommand));
        assert_eq!(frame_len(&[b, 0, 0]), Err(WireError::UnknownCommand));
    }
    // Count 1, an entry with a key length of 0.
    let zero_key = hex("0b 00000001 01010101010101010101010101010101 0000000000000000 00 00 00");
    assert_eq!(frame_len(&zero_key), Ok(Some(zero_key.len())));
    assert_eq!(NodeListFrame::parse(&zero_key), Err(WireError::BadLength));
    // An alias that is not UTF-8, then one location that is not.
    let bad_alias =
        hex("0b 00000001 01010101010101010101010101010101 0000000000000000 01 ff 00 01 aa");
    assert_eq!(NodeListFrame::parse(&bad_alias), Err(WireError::BadUtf8));
    let bad_loc =
        hex("0c 00000001 01010101010101010101010101010101 0000000000000000 00 02 c3 28 01 aa");
    assert_eq!(NodeListFrame::parse(&bad_loc), Err(WireError::BadUtf8));
    // A NUL inside an alias is text like any other (length-prefixed, not padded).
    let nul = hex("0c 00000001 01010101010101010101010101010101 0000000000000000 02 6100 00 01 aa");
    let NodeListFrame::Diff(e) = NodeListFrame::parse(&nul).unwrap() else {
        panic!("not a diff");
    };
    assert_eq!(e[0].alias(), "a\0");
    // Count 2 with one entry: truncated; count 0 with an entry: trailing data.
    let (x, _) = fixture_entries();
    let mut short = hex("0b 00000002");
    short.extend(x.to_bytes());
    assert_eq!(frame_len(&short), Ok(None));
    assert_eq!(NodeListFrame::parse(&short), Err(WireError::Truncated));
    let mut long = hex("0b 00000000");
    long.extend(x.to_bytes());
    assert_eq!(frame_len(&long), Ok(Some(5)));
    assert_eq!(NodeListFrame::parse(&long), Err(WireError::TrailingData));
}

#[test]
fn more_than_4096_entries_refused() {
    // The count alone is enough to refuse, for both the framer and the parser.
    for cmd in ["0b", "0c"] {
        let head = hex(&format!("{cmd} 00001001"));
        assert_eq!(frame_len(&head), Err(WireError::BadLength));
        assert_eq!(NodeListFrame::parse(&head), Err(WireError::BadLength));
        let huge = hex(&format!("{cmd} ffffffff"));
        assert_eq!(frame_len(&huge), Err(WireError::BadLength));
        assert_eq!(NodeListFrame::parse(&huge), Err(WireError::BadLength));
    }
    // 4097 real entries: refused by emit and by parse; 4096 pass.
    let entries: Vec<NodeEntry> = (0..=4096u16)
        .map(|i| node(uid_n(i), 0, "", "h:1", &[1]))
        .collect();
    let over = NodeListFrame::List(entries.clone());
    let mut buf = vec![0u8; over.buffer_len()];
    assert_eq!(over.emit(&mut buf), Err(WireError::BadLength));
    assert_eq!(buf, vec![0u8; buf.len()], "nothing written");
    assert_eq!(over.to_vec(), Err(WireError::BadLength));
    let ok = NodeListFrame::List(entries[..4096].to_vec())
        .to_vec()
        .unwrap();
    assert_eq!(frame_len(&ok), Ok(Some(ok.len())));
    let mut bytes = ok.clone();
    bytes[1..5].copy_from_slice(&4097u32.to_be_bytes());
    bytes.extend(entries[4096].to_bytes());
    assert_eq!(NodeListFrame::parse(&bytes), Err(WireError::BadLength));
    assert_eq!(frame_len(&bytes), Err(WireError::BadLength));
    assert_eq!(
        NodeListFrame::parse(&ok).unwrap().entries(),
        &entries[..4096]
    );
    // A list keeps at most 4096: the highest uid is dropped.
    let list = NodeList::from_entries(entries);
    assert_eq!(list.len(), 4096);
    assert!(list.get(&uid_n(4096)).is_none());
}

#[test]
fn largest_frame() {
    let big: Vec<NodeEntry> = (0..MAX_ENTRIES as u16)
        .map(|i| {
            NodeEntry::new(
                uid_n(i),
                u64::MAX,
                "a".repeat(255),
                "l".repeat(255),
                vec![7; 255],
            )
            .unwrap()
        })
        .collect();
    // The largest list or diff: 3,244,037 bytes.
    let diff = NodeListFrame::Diff(big.clone());
    let bytes = diff.to_vec().unwrap();
    assert_eq!(bytes.len(), 3_244_037);
    assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
    assert_eq!(NodeListFrame::parse(&bytes), Ok(diff));
    // The largest frame: a NodeSync of those entries, wanting 4096 ids.
    let frame = NodeListFrame::Sync {
        entries: big,
        want: vec![[7; 32]; MAX_ENTRIES],
    };
    let bytes = frame.to_vec().unwrap();
    assert_eq!(bytes.len(), MAX_FRAME_LEN);
    assert_eq!(frame_len(&bytes), Ok(Some(MAX_FRAME_LEN)));
    assert_eq!(frame_len(&bytes[..MAX_FRAME_LEN - 1]), Ok(None));
    assert_eq!(NodeListFrame::parse(&bytes), Ok(frame));
}

#[test]
fn emit_into_a_short_buffer() {
    let (x, y) = fixture_entries();
    let f = NodeListFrame::List(vec![x, y]);
    let mut buf = vec![0u8; f.buffer_len() - 1];
    assert_eq!(f.emit(&mut buf), Err(WireError::BufferTooSmall));
    assert_eq!(buf, vec![0u8; buf.len()], "nothing written");
    let mut h = [0u8; 64];
    assert_eq!(
        NodeListFrame::Hash([1; 64]).emit(&mut h),
        Err(WireError::BufferTooSmall)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_round_trip(frame in arb_frame()) {
        let bytes = frame.to_vec().unwrap();
        prop_assert_eq!(bytes.len(), frame.buffer_len());
        prop_assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
        prop_assert_eq!(NodeListFrame::parse(&bytes), Ok(frame.clone()));
        // Into a larger buffer, and followed by another frame in a stream.
        let mut stream = bytes.clone();
        stream.extend(NodeListFrame::Hash([3; 64]).to_vec().unwrap());
        prop_assert_eq!(frame_len(&stream), Ok(Some(bytes.len())));
        let mut buf = vec![0xeeu8; bytes.len() + 9];
        prop_assert_eq!(frame.emit(&mut buf), Ok(bytes.len()));
        prop_assert_eq!(&buf[..bytes.len()], &bytes[..]);
    }

    #[test]
    fn cut_at_every_offset(frame in arb_frame()) {
        let bytes = frame.to_vec().unwrap();
        for cut in 0..bytes.len() {
            prop_assert_eq!(frame_len(&bytes[..cut]), Ok(None), "cut {}", cut);
            prop_assert_eq!(NodeListFrame::parse(&bytes[..cut]), Err(WireError::Truncated), "cut {}", cut);
        }
        let mut long = bytes.clone();
        long.push(0);
        prop_assert_eq!(NodeListFrame::parse(&long), Err(WireError::TrailingData));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        cmd in prop_oneof![Just(10u8), Just(11u8), Just(12u8), Just(24u8), any::<u8>()],
        count in prop_oneof![0u32..4, Just(4096), Just(4097), any::<u32>()],
        rest in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = vec![cmd];
        bytes.extend(count.to_be_bytes());
        bytes.extend(rest);
        for cut in [0, 1, 3, 5, 40, bytes.len()] {
            let b = &bytes[..cut.min(bytes.len())];
            let parsed = NodeListFrame::parse(b);
            match frame_len(b) {
                // "Need more": the parser cannot have a whole frame either.
                Ok(None) => prop_assert!(parsed.is_err()),
                // A whole frame: the parser judges exactly those bytes, and whatever it
                // accepts re-emits to the same bytes.
                Ok(Some(n)) => {
                    let one = NodeListFrame::parse(&b[..n]);
                    prop_assert!(!matches!(one, Err(WireError::Truncated | WireError::TrailingData)));
                    if let Ok(f) = one {
                        prop_assert_eq!(f.to_vec().unwrap(), b[..n].to_vec());
                    }
                }
                Err(e) => prop_assert_eq!(parsed, Err(e)),
            }
        }
    }

    #[test]
    fn mutated_frames_never_panic(frame in arb_frame(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = frame.to_vec().unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(f) = NodeListFrame::parse(&bytes) {
            prop_assert_eq!(f.to_vec().unwrap(), bytes.clone());
            prop_assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
        }
        let _ = frame_len(&bytes);
    }
}
