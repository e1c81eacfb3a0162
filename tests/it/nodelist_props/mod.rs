//! The node-list sync between many servers (docs/PROTOCOL.md §8.15, §8.20 set 3; issue 13
//! item 6): the design notes' server-list loop cannot happen. A model of N servers (2 to 8)
//! that speaks the real bytes: frames 10, 11, 12 and 24 (`NodeListFrame::to_vec`) and 22
//! (`[22][len u16][set u8 = 3][message]`, len = 1 + the message's length, big endian), cut
//! out of each connection's byte stream with `command_len(Role::Server, ..)` and read with
//! `NodeListFrame::parse`; it keeps the real lists (`NodeList::merge`, `items`,
//! `sync_parts`, `with_ids`, `diff_for`, `reissue`'s rule) and reconciles them with the real `Initiator` and
//! `Responder` (negentropy), doing on each frame exactly what `src/core/tcp/nodes.rs` and
//! `src/core/tcp/reconcile/{mod,nodes}.rs` do (`sync()` in `src/federation/nodelist.rs`
//! is the same exchange on two lists):
//!
//! - the opener of a link sends its hash (10) when the link opens, on every heartbeat, and
//!   after its list changed ("spreading", on the links it opened and that are up), but
//!   never a second hash while one awaits its answer (`Conn::ask_node_hash`);
//! - the opener, reading a hash answer, compares it with its list *as it is then*; when
//!   they differ it starts a reconciliation (`Initiator::new(&list.items())`, its first
//!   message in a frame 22), unless one is under way on the link: then it only marks it
//!   `again`; a list of at most `WHOLE_LIST_MAX` (32) entries it sends whole (11)
//!   instead;
//! - the acceptor answers a hash with its hash, and each frame 22 with the frame 22 of
//!   `Responder::new(&list.items()).answer(message)`, from its list as it stands (no state
//!   between messages);
//! - the opener steps its initiator on each answer: the next message goes in a frame 22;
//!   at the end it sends the NodeSync (24) of `list.sync_parts(have, need)` (its list as
//!   it is then): its entries the acceptor lacks but those the acceptor holds a newer
//!   version of, and the ids it lacks but those of versions older than its own; unless
//!   both are empty; and then, if `again`, its hash (unless one awaits its answer);
//! - the acceptor merges a NodeSync (re-issue rule first, forged own-uid entries left out)
//!   and answers the diff (12) of the entries wanted, as they stand after the merge, with
//!   its own entry when it re-issued it; a whole list it merges and answers with the diff
//!   of what the opener lacks or holds in a losing form (`diff_for`); the opener merges a
//!   diff and answers nothing;
//! - an entry for a server's own uid that is not exactly its own entry is never merged, in a
//!   sync, in a diff and in the stored list it starts from (which drops every entry for its
//!   own uid); when a sync or diff holds one beating its own, the server first re-issues its
//!   own just above the greatest (`reissue`, §8.15 "own uid"; then its list changed, so it
//!   spreads its hash, and a sync's diff carries the new entry), and it starts just above a
//!   greater one in its stored list.
//!
//! Each link is a TCP connection: two FIFO byte streams (requests opener -> acceptor,
//! answers acceptor -> opener); proptest picks which stream delivers its next frame, so
//! frames interleave at random across connections and directions, and heartbeats, link
//! openings and entries merged from outside (an AuthProof, another peer) come at random
//! points between deliveries. Entries are drawn from a small uid space that overlaps the
//! servers' own uids: same uid with other versions, equal versions with another alias or
//! location. An entry for a server's uid that beats the server's own entry (stale) is left
//! out of the inputs of properties 1 to 3, and in those of property 4 (before the re-issue
//! rule, with one the lists never converged: the bug found here, see the last tests). One
//! scenario in five adds big lists (`BASE_A` entries every server holds, and `BASE_B`
//! entries of a greater version some hold): reconciliations of two round trips, during
//! which a hash answer can find one under way (`again`); with one round trip it cannot (a
//! hash sent during a reconciliation is answered after its only frame 22). Half the
//! scenarios use the servers' threshold for whole lists, half 0 (every list reconciled,
//! `Net::whole_max`), so that both paths meet every interleaving; the step-by-step tests
//! of reconciliations on short lists use 0.
//!
//! Bounds, with L links, M distinct entries in the whole run (initial lists, own entries,
//! entries merged from outside) and T link openings and heartbeats:
//!
//! - R, the round trips of one reconciliation (`Initiator::rounds`): 1 when the opener's
//!   list has fewer than 32 entries (negentropy sends them all as an IdList, the acceptor
//!   answers its own, done); at most 2 when it has at most 496 (16 fingerprints of ranges
//!   of at most 31 entries each; the acceptor answers each that differs with its ids there
//!   or 16 fingerprints of sub-ranges; the opener's entries within any of those are at
//!   most 31, so it answers with IdLists, the acceptor with its ids, done; the ids of
//!   either list fit one frame 22). Asserted on each reconciliation; the scenarios' lists
//!   have at most 76 entries, so R <= 2, and R = 1 without the big lists (at most 12);
//! - with stale entries, M also counts the re-issued entries: a server re-issues at most once
//!   per distinct input entry beating its own at start (each time above a greater one);
//! - a server's list changes at most M times (each change raises one uid's entry to a
//!   greater one of the M); a change of server P sends at most one hash on each of its
//!   out(P) links, so at most `B = T + sum(changes(P) x out(P)) <= T + M x L` hashes are
//!   sent by openings, heartbeats and spreading;
//! - a hash answer that finds a reconciliation under way only marks it `again` (2 frames);
//!   that reconciliation then sends at most one more hash, whose own answer never finds one
//!   under way (it is the only hash awaiting an answer, sent as the reconciliation ended,
//!   and only a hash answer starts one): so `again` hashes are at most B, one per hash of B
//!   that found a reconciliation under way, and all hashes at most `2 B`;
//! - any other hash costs at most `2 + 2 R + 2` frames (the hash, its answer, R round trips
//!   of frames 22, the NodeSync and its diff; or the hash, its answer, a whole list and
//!   its diff; a reconciliation starts only at a hash answer
//!   that differs, with none under way), so the run quiesces (no frame in flight) within
//!   `(6 + 2 R) x (T + M x L)` deliveries (asserted, the loop is not open-ended);
//! - reconciliations and whole lists together are at most the hashes; NodeSync frames at
//!   most the reconciliations, and NodeListDiff frames exactly the NodeSync and NodeList
//!   frames (each answered once, a diff never answered: handling a diff sends no frame 22,
//!   no sync, no list, no diff and no answer);
//!   frames 22 are as many each way, `R` per reconciliation at most;
//! - at quiescence, for every link P -> Q, P's list is contained in Q's (merging it into Q
//!   changes nothing): a change reaches the acceptors at once, the openers at their next
//!   heartbeat. So with links both ways between every pair (any strongly connected
//!   topology) all hashes are equal at quiescence; otherwise each heartbeat round carries
//!   every entry at least one hop further against the links' direction, and all hashes are
//!   equal after at most D rounds, D the diameter of the topology as an undirected graph
//!   (not after one round: a server learns an entry after its opener's exchange with it);
//!   with stale entries 2 D: within D the greatest stale entry reaches its owner, within D
//!   more the owner's last re-issued entry reaches every server;
//! - then all hashes equal the hash of the merge of every initial list and outside entry
//!   (each server's own entry as it stands for its uid, which beats every input for it),
//!   and one more heartbeat round sends exactly one hash and one hash answer per link:
//!   nothing else, it never loops.
//!
//! The properties: 1 `n_servers_quiesce_and_converge` (the bounds above on random
//! topologies); 2 `sync_and_diff_frames_are_bounded`; 3 `both_directions_of_a_pair_at_once`
//! and `a_change_while_our_exchanges_are_in_flight`, with its smallest cases step by step in
//! `a_change_while_our_hash_is_in_flight_is_not_lost` and
//! `a_change_while_our_reconciliation_is_under_way_is_reconciled_again`; 4
//! `stale_entries_are_outbid_by_their_owner_and_converge` and
//! `stale_entries_on_a_pair_converge_without_a_round` (the own-uid rule and its re-issue),
//! step by step in `a_stale_entry_beating_a_servers_own_is_outbid_at_once`. Each proptest
//! case is deterministic (no clock, no threads, no sleep). `model` holds the servers and
//! links, `inputs` the scenarios; this file runs them and asserts the properties.

use proptest::prelude::*;
use rendezvous::federation::nodelist::{NodeList, REISSUE_REACH, WHOLE_LIST_MAX};
use rendezvous::federation::reconcile::{node_record_id, Initiator, Item, Responder};
use rendezvous::wire::tcp::nodelist::{
    frame_len, has_duplicate_uids, NodeEntry, NodeListFrame, CMD_NODE_LIST_DIFF,
    CMD_NODE_LIST_HASH, CMD_NODE_SYNC,
};
use rendezvous::wire::tcp::{command_len, Role, CMD_RECONCILE};
use std::collections::{BTreeSet, VecDeque};

mod inputs;
mod model;

use inputs::*;
use model::*;

// ---------------------------------------------------------------------------------------
// A run, and what it must show
// ---------------------------------------------------------------------------------------

/// What a run of a scenario measured.
struct Run {
    net: Net,
    /// Deliveries up to the first quiescence, and their bound.
    deliveries: usize,
    bound: usize,
    /// Heartbeat rounds until all hashes were equal.
    rounds: usize,
    expected: NodeList,
}

/// R, the most round trips of one reconciliation in a scenario (see the header).
fn scenario_rounds(sc: &Scenario) -> usize {
    if sc.big {
        2
    } else {
        1
    }
}

/// The hashes and frames of a run so far against their bounds (see the header), `r` the
/// most round trips of a reconciliation.
fn assert_frames_bounded(net: &Net, r: usize) {
    let s = net.sent;
    let base = s.hashes - s.again_hashes;
    assert!(s.rounds_most as usize <= r, "{} round trips", s.rounds_most);
    assert!(base <= net.triggers + net.spreading_most());
    assert!(s.again_hashes <= s.marked && s.again_hashes <= base);
    assert!(s.recons + s.lists <= s.hashes && s.syncs <= s.recons_done);
    assert!(s.reconciles <= r * s.recons);
    assert!(net.deliveries <= (6 + 2 * r) * (net.triggers + net.spreading_most()));
}

/// Applies the steps (outside entries beating an owner's entry only if `stale`), opens
/// every link left closed, and drains to quiescence, asserting the bound `(6 + 2 R) (T +
/// M L)` on every delivery since the start. Returns the model, M and the bound.
fn start(sc: &Scenario, stale: bool) -> (Net, usize, usize) {
    let n = sc.owns.len();
    let mut net = Net::new(&sc.owns, &sc.stored, &sc.links);
    net.whole_max = sc.whole_max;
    let nl = net.links.len();
    for step in &sc.steps {
        match step {
            Step::Deliver(i) => {
                let busy = net.busy();
                if !busy.is_empty() {
                    net.deliver(busy[i % busy.len()]);
                }
            }
            Step::Open(i) => net.open(i % nl),
            Step::Heartbeat(i) => net.heartbeat(i % nl),
            Step::Outside(s, e) => {
                if stale || respects_owners(e, &sc.owns) {
                    net.merge_outside(s % n, e.clone());
                }
            }
        }
    }
    for l in 0..nl {
        net.open(l);
    }
    // M: the distinct inputs, and at most one re-issued entry per input beating an owner.
    let most = beating_inputs(&net, &sc.stored);
    let m = distinct_entries(&sc.owns, &sc.stored, &net.outside) + most.iter().sum::<usize>();
    // T is known once every link is open: no trigger comes after.
    let r = scenario_rounds(sc);
    let bound = (6 + 2 * r) * (net.triggers + m * nl);
    net.drain(&sc.picks, bound.saturating_sub(net.deliveries));
    assert!(net.deliveries <= bound);
    assert_frames_bounded(&net, r);
    for (s, most) in net.servers.iter().zip(most) {
        assert!(
            s.changes <= m,
            "a list changed {} times, M = {m}",
            s.changes
        );
        assert!(
            s.reissued.len() <= most,
            "more re-issues than entries beating"
        );
        assert!(s.reissued.windows(2).all(|w| w[0] < w[1]));
    }
    (net, m, bound)
}

/// [`start`], then heartbeat rounds until the hashes are equal: every opener contained in
/// its acceptor at each quiescence, no round when strongly connected, at most D rounds
/// (2 D with `stale` entries beating an owner's: D for the greatest to reach its owner, D
/// for the owner's re-issued entry to reach every server).
fn run(sc: &Scenario, stale: bool) -> Run {
    let n = sc.owns.len();
    let (mut net, m, bound) = start(sc, stale);
    let deliveries = net.deliveries;
    net.assert_openers_contained();
    if strongly_connected(n, &sc.links) {
        assert!(
            net.all_equal(),
            "strongly connected, yet unequal at quiescence"
        );
    }
    let d = diameter(n, &sc.links) * if stale { 2 } else { 1 };
    let nl = net.links.len();
    let r = scenario_rounds(sc);
    let round_bound = (6 + 2 * r) * (nl + m * nl);
    let mut rounds = 0;
    while !net.all_equal() {
        assert!(
            rounds < d,
            "hashes still unequal after {d} heartbeat rounds (D, or 2 D with stale entries)"
        );
        net.heartbeat_round(&sc.picks, round_bound);
        net.assert_openers_contained();
        assert_frames_bounded(&net, r);
        rounds += 1;
    }
    let owns: Vec<NodeEntry> = net.servers.iter().map(|s| s.own.clone()).collect();
    let expected = expected(&owns, &sc.stored, &net.outside);
    for own in &owns {
        let inputs = sc.stored.iter().flatten().chain(&net.outside);
        for e in inputs.filter(|e| e.uid() == own.uid()) {
            assert!(
                own >= e,
                "an owner's entry at the end beats every input for its uid"
            );
        }
    }
    Run {
        net,
        deliveries,
        bound,
        rounds,
        expected,
    }
}

/// At the end of a run: every hash is the expected one's, and one more heartbeat round
/// sends one hash and one hash answer per link, nothing else.
fn assert_converged_and_quiet(r: &mut Run, picks: &[usize]) {
    let want = r.expected.hash();
    for (i, s) in r.net.servers.iter().enumerate() {
        assert_eq!(s.list, r.expected, "server {i}'s list");
        assert_eq!(s.list.hash(), want);
    }
    let nl = r.net.links.len();
    let before = r.net.sent;
    let delivered = r.net.heartbeat_round(picks, 2 * nl);
    let after = r.net.sent;
    assert_eq!(
        delivered,
        2 * nl,
        "a round of agreeing servers: 2 frames a link"
    );
    assert_eq!(
        after,
        Sent {
            hashes: before.hashes + nl,
            hash_answers: before.hash_answers + nl,
            ..before
        },
        "one hash and one hash answer a link, nothing else"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Property 1: N servers, random lists, topology, interleaving, heartbeats and outside
    /// entries: quiescence within (6 + 2 R) (T + M L) deliveries, every link's opener
    /// contained in its acceptor, equal hashes after at most D heartbeat rounds (none when
    /// strongly connected), the expected list everywhere, then a round of hashes only.
    #[test]
    fn n_servers_quiesce_and_converge(sc in arb_scenario(false)) {
        let mut r = run(&sc, false);
        prop_assert!(r.rounds <= diameter(sc.owns.len(), &sc.links));
        prop_assert!(r.deliveries <= r.bound);
        assert_converged_and_quiet(&mut r, &sc.picks);
    }

    /// Property 2: hashes are at most T + M L plus one `again` hash per hash answer that
    /// found a reconciliation under way; reconciliations and whole lists at most the
    /// hashes, reconciliations of at most R round trips each (R = 1 under 32 entries);
    /// NodeSync frames at most the reconciliations, every sync and list answered by exactly
    /// one diff, and (checked on each diff) a diff never answered; no whole list when the
    /// threshold is 0. Every frame on the wire is 10, 11, 22, 24 or 12.
    #[test]
    fn sync_and_diff_frames_are_bounded(sc in arb_scenario(false)) {
        let r = run(&sc, false);
        let net = &r.net;
        let s = net.sent;
        let m = distinct_entries(&sc.owns, &sc.stored, &net.outside);
        let nl = net.links.len();
        let base = s.hashes - s.again_hashes;
        prop_assert!(base <= net.triggers + net.spreading_most());
        prop_assert!(base <= net.triggers + m * nl);
        prop_assert!(s.again_hashes <= s.marked);
        prop_assert!(s.hashes <= 2 * (net.triggers + m * nl));
        prop_assert!(s.recons + s.lists <= s.hashes);
        prop_assert_eq!(s.recons_done, s.recons);
        prop_assert!(s.rounds_most as usize <= scenario_rounds(&sc));
        if !sc.big {
            prop_assert!(s.rounds_most <= 1);
            prop_assert_eq!(s.reconciles, s.recons);
            prop_assert_eq!(s.marked, 0, "one round trip: no hash answer finds one under way");
        }
        prop_assert!(s.reconciles <= scenario_rounds(&sc) * s.recons);
        prop_assert_eq!(s.reconcile_answers, s.reconciles);
        prop_assert!(s.syncs <= s.recons_done);
        prop_assert_eq!(s.diffs, s.syncs + s.lists);
        prop_assert_eq!(s.hash_answers, s.hashes);
        if sc.whole_max == 0 {
            prop_assert_eq!(s.lists, 0, "every list reconciled");
        }
        let lists = s.lists + s.syncs;
        prop_assert_eq!(
            net.deliveries,
            s.hashes + s.hash_answers + s.reconciles + s.reconcile_answers + lists + s.diffs
        );
        prop_assert!(net.links.iter().all(|l| l.due.is_empty() && l.recon.is_none()));
    }
}

// ---------------------------------------------------------------------------------------
// Property 3: adversarial interleavings
// ---------------------------------------------------------------------------------------

/// An entry for a uid no server or input uses: merging it always changes a list.
fn fresh_entry(tag: u8) -> NodeEntry {
    NodeEntry::new([0xf0 | tag; 16], 0, "fresh", "h:99", vec![tag]).unwrap()
}

/// Two servers linked both ways (two connections), both links opened at once so that both
/// exchanges run concurrently, then random steps (heartbeats on either, outside entries at
/// either, any interleaving of the four streams).
fn arb_pair_scenario(stale: bool) -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(0u64..=3, 2),
        prop::collection::vec(prop::collection::vec(arb_entry(), 0..6), 2),
        prop::collection::vec(arb_step(), 0..60),
        prop::collection::vec(any::<usize>(), 1..16),
        arb_big(2),
    )
        .prop_map(move |(versions, stored, steps, picks, big)| {
            let (owns, mut stored) = owns_and_stored(&versions, stored, stale);
            let whole_max = whole_max(&big);
            let big = add_big(&mut stored, big);
            let mut all = vec![Step::Open(0), Step::Open(1)];
            all.extend(steps);
            Scenario {
                owns,
                stored,
                links: vec![(0, 1), (1, 0)],
                steps: all,
                picks,
                big,
                whole_max,
            }
        })
}

/// Server 0 opens links to 1 and 2 at once (two exchanges of its own in flight), and
/// merges a new entry from outside before any answer came back; 1 and 2 are linked or not,
/// either way. Then random steps, where the diff of one of 0's exchanges changes its list
/// while the other is in flight, and (with the big lists) a hash answer finds a
/// reconciliation under way.
fn arb_in_flight_scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(0u64..=3, 3),
        prop::collection::vec(prop::collection::vec(arb_entry(), 0..6), 3),
        0usize..3,
        prop::collection::vec(arb_step(), 0..60),
        prop::collection::vec(any::<usize>(), 1..16),
        arb_big(3),
    )
        .prop_map(|(versions, stored, third, steps, picks, big)| {
            let (owns, mut stored) = owns_and_stored(&versions, stored, false);
            let whole_max = whole_max(&big);
            let big = add_big(&mut stored, big);
            let mut links = vec![(0, 1), (0, 2)];
            match third {
                1 => links.push((1, 2)),
                2 => links.push((2, 1)),
                _ => {}
            }
            let mut all = vec![
                Step::Open(0),
                Step::Open(1),
                Step::Outside(0, fresh_entry(0)),
            ];
            all.extend(steps);
            Scenario {
                owns,
                stored,
                links,
                steps: all,
                picks,
                big,
                whole_max,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Property 3a: exchanges on both directions of a pair at once: equal hashes as soon
    /// as nothing is in flight (no heartbeat round needed), the expected list, then a round
    /// of hashes only.
    #[test]
    fn both_directions_of_a_pair_at_once(sc in arb_pair_scenario(false)) {
        let mut r = run(&sc, false);
        prop_assert_eq!(r.rounds, 0);
        prop_assert!(r.net.sent.hashes >= 2);
        assert_converged_and_quiet(&mut r, &sc.picks);
    }

    /// Property 3b: a server's list changes while its own exchanges are in flight (an
    /// outside entry before its hashes are answered, diffs of one exchange while the other
    /// runs, hash answers while a reconciliation runs): still quiescence within the bound
    /// and the expected list everywhere.
    #[test]
    fn a_change_while_our_exchanges_are_in_flight(sc in arb_in_flight_scenario()) {
        let mut r = run(&sc, false);
        prop_assert!(r.net.changes_in_flight >= 1);
        prop_assert!(r.rounds <= diameter(3, &sc.links));
        assert_converged_and_quiet(&mut r, &sc.picks);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Property 4, the own-uid rule, with entries that beat a server's own entry in the
    /// inputs (stale entries of an earlier run, or forged): a server's entry for its uid is
    /// always exactly its own as it stands; it re-issues its own above each one it sees
    /// (at most once per beating input, each time greater); every exchange quiesces within
    /// (6 + 2 R) (T + M L) deliveries (M counting the re-issued entries), the hashes are
    /// equal after at most 2 D heartbeat rounds, every server holds each owner's last
    /// entry, which beats every input for its uid, and then a round sends hashes only.
    #[test]
    fn stale_entries_are_outbid_by_their_owner_and_converge(sc in arb_scenario(true)) {
        let mut r = run(&sc, true);
        prop_assert!(r.rounds <= 2 * diameter(sc.owns.len(), &sc.links));
        prop_assert!(r.deliveries <= r.bound);
        for s in &r.net.servers {
            prop_assert_eq!(s.list.get(s.own.uid()), Some(&s.own));
        }
        assert_converged_and_quiet(&mut r, &sc.picks);
    }

    /// Property 4 on a pair linked both ways (strongly connected): with stale entries too,
    /// equal hashes as soon as nothing is in flight, no heartbeat round needed.
    #[test]
    fn stale_entries_on_a_pair_converge_without_a_round(sc in arb_pair_scenario(true)) {
        let mut r = run(&sc, true);
        prop_assert_eq!(r.rounds, 0);
        assert_converged_and_quiet(&mut r, &sc.picks);
    }
}

/// The smallest case of 3b, step by step: our hash is in flight when our list changes, so
/// the change sends no second hash (one awaits its answer); the answer, our old hash, is
/// compared with our list as it is now: a reconciliation finds the entry the acceptor
/// lacks, and our NodeSync carries it.
#[test]
fn a_change_while_our_hash_is_in_flight_is_not_lost() {
    let owns = [own_entry(0, 1), own_entry(1, 1)];
    let both = owns.to_vec();
    let mut net = Net::new(&owns, &[both.clone(), both], &[(0, 1)]);
    net.whole_max = 0; // short lists reconciled, as long ones are
    assert!(net.all_equal());
    net.open(0);
    net.merge_outside(0, fresh_entry(1));
    assert_eq!(net.sent.hashes, 1, "one hash awaiting its answer is enough");
    assert_eq!(net.changes_in_flight, 1);
    net.deliver(0); // 1 answers with its hash: 0's hash before the change
    net.deliver(1); // 0 compares it with its list now: they differ, a reconciliation
    assert_eq!((net.sent.recons, net.sent.reconciles), (1, 1));
    net.deliver(0); // 1 answers from its list
    net.deliver(1); // 0 is done (one round trip): its NodeSync carries the new entry
    assert_eq!(net.sent.syncs, 1);
    net.deliver(0); // 1 merges it, answers the (empty) diff
    net.deliver(1);
    assert!(net.busy().is_empty());
    assert_eq!(
        net.servers[1].list.get(fresh_entry(1).uid()),
        Some(&fresh_entry(1))
    );
    assert!(net.all_equal());
    assert_eq!((net.sent.diffs, net.sent.rounds_most), (1, 1));
    assert_eq!(
        net.sent.hashes, 1,
        "an empty diff changes nothing: no hash after it"
    );
}

/// The `again` rule step by step: with big lists a reconciliation takes two round trips;
/// our list changes during the first, so our hash goes out behind our first frame 22 and
/// its answer comes while the reconciliation is under way: it only marks it. The
/// reconciliation ends with a NodeSync that cannot carry the change (its ids were taken
/// before), then our hash again, and that exchange's reconciliation carries it. Without
/// the mark the change would wait for the next heartbeat.
#[test]
fn a_change_while_our_reconciliation_is_under_way_is_reconciled_again() {
    let owns = [own_entry(0, 1), own_entry(1, 1)];
    let mut p: Vec<NodeEntry> = owns.to_vec();
    p.extend((0..BASE_A).map(base_a));
    let mut q = p.clone();
    q.extend((0..BASE_B).map(base_b));
    let mut net = Net::new(&owns, &[p, q], &[(0, 1)]);
    net.open(0);
    net.deliver(0);
    net.deliver(1); // they differ: 0's first frame 22 (16 fingerprints)
    assert_eq!(net.sent.recons, 1);
    net.merge_outside(0, fresh_entry(1)); // spreading: a hash, behind the frame 22
    assert_eq!(net.sent.hashes, 2);
    net.deliver(0); // 1 answers the frame 22 (fingerprints of the range holding BASE_B)
    net.deliver(0); // 1 answers the hash
    net.deliver(1); // 0's second frame 22
    assert_eq!(net.sent.reconciles, 2);
    net.deliver(1); // the hash answer differs, but a reconciliation is under way
    assert_eq!((net.sent.marked, net.sent.recons), (1, 1));
    net.deliver(0);
    net.deliver(1); // done: the NodeSync wants BASE_B; then the hash again
    assert_eq!(net.sent.rounds_most, 2);
    assert_eq!((net.sent.syncs, net.sent.again_hashes), (1, 1));
    net.deliver(0); // 1 answers the sync: BASE_B
    net.deliver(0); // 1 answers the hash: its list lacks the fresh entry
    net.deliver(1); // 0 merges BASE_B (a hash awaits: none more)
    assert_eq!(net.sent.hashes, 3);
    net.deliver(1); // they differ: a new reconciliation, of one round trip (one range)
    assert_eq!(net.sent.recons, 2);
    net.drain(&[0], 4);
    assert!(net.all_equal());
    assert_eq!(
        net.servers[1].list.get(fresh_entry(1).uid()),
        Some(&fresh_entry(1))
    );
    let s = net.sent;
    assert_eq!(
        (s.hashes, s.recons, s.reconciles, s.syncs, s.diffs),
        (3, 2, 3, 2, 2)
    );
}

/// The wire bytes of the model: a hash frame is 66 bytes starting with 10, a frame 22
/// `[22][len][3]` and the real initiator's or responder's message, a NodeSync 24 and a
/// diff 12, as `command_len` delimits them in a stream holding several.
#[test]
fn frames_on_the_streams_are_the_wire_bytes() {
    let owns = [own_entry(0, 1), own_entry(1, 2)];
    let mut net = Net::new(&owns, &[vec![], vec![]], &[(0, 1)]);
    net.whole_max = 0; // short lists reconciled, as long ones are
    net.open(0);
    assert_eq!(net.links[0].requests.len(), 66);
    assert_eq!(net.links[0].requests[..2], [CMD_NODE_LIST_HASH, 64]);
    net.deliver(0);
    net.deliver(1);
    let first = Initiator::new(&net.servers[0].list.items()).unwrap();
    let framed = &net.links[0].requests;
    let len = 1 + first.first().len();
    assert_eq!(framed[..4], [CMD_RECONCILE, (len >> 8) as u8, len as u8, 3]);
    assert_eq!(framed[4..], *first.first());
    assert_eq!(command_len(Role::Server, framed), Ok(Some(framed.len())));
    net.deliver(0);
    let answer = Responder::new(&net.servers[1].list.items())
        .unwrap()
        .answer(first.first())
        .unwrap();
    assert_eq!(net.links[0].answers, reconcile_bytes(&answer));
    net.deliver(1);
    let sync = net.links[0].requests.clone();
    assert_eq!(sync[0], CMD_NODE_SYNC);
    assert_eq!(command_len(Role::Server, &sync), Ok(Some(sync.len())));
    assert_eq!(
        NodeListFrame::parse(&sync),
        Ok(NodeListFrame::Sync {
            entries: vec![owns[0].clone()],
            want: vec![node_record_id(&owns[1])],
        })
    );
    net.deliver(0);
    let diff = &net.links[0].answers;
    assert_eq!(diff[0], CMD_NODE_LIST_DIFF);
    assert_eq!(command_len(Role::Server, diff), Ok(Some(diff.len())));
    assert_eq!(
        NodeListFrame::parse(diff),
        Ok(NodeListFrame::Diff(vec![owns[1].clone()]))
    );
    net.deliver(1);
    // 0 learned 1's entry, so it spreads its hash; 1 learned 0's, but opened no link.
    assert_eq!(net.sent.hashes, 2);
    net.drain(&[0], 2);
    assert!(net.all_equal());
    // A stream of several frames: each cut where it ends.
    let mut stream = bytes(&net.servers[0].list.hash_frame());
    stream.extend(reconcile_bytes(first.first()));
    stream.extend(&sync);
    stream.extend(bytes(&NodeListFrame::Diff(vec![])));
    let mut cuts = Vec::new();
    while !stream.is_empty() {
        let n = command_len(Role::Server, &stream).unwrap().unwrap();
        cuts.push((stream[0], n));
        stream.drain(..n);
    }
    assert_eq!(
        cuts,
        [
            (CMD_NODE_LIST_HASH, 66),
            (CMD_RECONCILE, 4 + first.first().len()),
            (CMD_NODE_SYNC, sync.len()),
            (CMD_NODE_LIST_DIFF, 5),
        ]
    );
}

/// Found here (issue 13 item 6), and fixed: an entry for a server's uid that beats the
/// server's own entry (a restart within the second, version = Unix seconds at start, under
/// another `--alias` or `--announce` whose old entry encodes bytewise larger; or a restart
/// after the clock stepped back) used to stay in the other lists forever, the owner
/// ignoring it (§8.15 "own uid"): the hashes never matched and every heartbeat cost a
/// reconciliation. Now the owner re-issues its entry just above it: equal after the
/// exchange that brought it (and the one its spreading starts at once), then hashes only.
#[test]
fn a_stale_entry_beating_a_servers_own_is_outbid_at_once() {
    let own = NodeEntry::new([0; 16], 5, "new", "h:0", vec![0; 32]).unwrap();
    let old = NodeEntry::new([0; 16], 5, "old-name", "h:0", vec![0; 32]).unwrap();
    assert!(old > own, "equal versions: the longer alias wins");
    let again = NodeEntry::new([0; 16], 6, "new", "h:0", vec![0; 32]).unwrap();
    let owns = [own, own_entry(1, 1)];
    // 0 opens to 1, which holds the stale entry: 1's diff brings it, 0 re-issues and
    // spreads its hash at once; its next NodeSync brings `again` to 1. No heartbeat needed.
    let mut net = Net::new(&owns, &[vec![], vec![old.clone()]], &[(0, 1)]);
    net.whole_max = 0; // short lists reconciled, as long ones are
    net.open(0);
    net.drain(&[0], 12);
    assert_eq!(net.servers[0].reissued, std::slice::from_ref(&again));
    for s in &net.servers {
        assert_eq!(s.list.get(&[0; 16]), Some(&again));
    }
    assert!(net.all_equal(), "equal after one round (§8.15)");
    assert_eq!((net.sent.syncs, net.sent.diffs), (2, 2));
    net.heartbeat_round(&[0], 2);
    assert_eq!(net.sent.syncs, 2, "a heartbeat round of hashes only");
    // 1 opens to 0 instead: 0 sees the stale entry in 1's NodeSync and answers the diff
    // with its re-issued entry: equal within that one exchange.
    let mut net = Net::new(&owns, &[vec![], vec![old]], &[(1, 0)]);
    net.whole_max = 0;
    net.open(0);
    net.drain(&[0], 8);
    assert_eq!((net.sent.syncs, net.sent.diffs), (1, 1));
    assert_eq!(
        net.sent.hashes, 2,
        "1 learned `again`: its hash spreads, and matches"
    );
    for s in &net.servers {
        assert_eq!(s.list.get(&[0; 16]), Some(&again));
    }
    assert!(net.all_equal());
}

/// At start: a stored entry of its own uid greater than its configured one (its own from an
/// earlier run) makes a server start just above it, before any exchange.
#[test]
fn a_greater_stored_own_entry_is_started_above() {
    let own = own_entry(0, 5);
    let old = NodeEntry::new([0; 16], 9, "s0", "h:old", vec![0; 32]).unwrap();
    let net = Net::new(
        &[own.clone(), own_entry(1, 1)],
        &[vec![old], vec![]],
        &[(0, 1)],
    );
    let first = &net.servers[0].own;
    assert_eq!(first.version(), 10);
    assert_eq!(
        (first.alias(), first.location()),
        (own.alias(), own.location())
    );
    assert_eq!(net.servers[0].list.get(&[0; 16]), Some(first));
    let top = NodeEntry::new([0; 16], u64::MAX, "s0", "h:old", vec![0; 32]).unwrap();
    let net = Net::new(&[own, own_entry(1, 1)], &[vec![top], vec![]], &[(0, 1)]);
    assert_eq!(net.servers[0].own.version(), u64::MAX, "saturates");
}
