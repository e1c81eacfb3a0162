//! The inputs of the node-list exchange's properties: own entries, stored lists, steps and
//! scenarios, and what a run of them must end with (the merge of every input).

use super::*;

/// Server `i`'s own entry: uid `[i; 16]`, a small version, so that other lists hold
/// conflicting entries for it.
pub(super) fn own_entry(i: usize, version: u64) -> NodeEntry {
    let i8 = i as u8;
    NodeEntry::new(
        [i8; 16],
        version,
        format!("s{i}"),
        format!("h:{i}"),
        vec![i8; 32],
    )
    .unwrap()
}

/// `TcpCore::start_above_stored`: `own`, or, when `stored` holds a greater entry for its
/// uid (its own from an earlier run), `own` with that version + 1 (saturating).
pub(super) fn start_above_stored(own: &NodeEntry, stored: &[NodeEntry]) -> NodeEntry {
    match stored.iter().filter(|e| e.uid() == own.uid()).max() {
        Some(old) if old > own => NodeEntry::new(
            *own.uid(),
            old.version().saturating_add(1),
            own.alias(),
            own.location(),
            own.public_key(),
        )
        .unwrap(),
        _ => own.clone(),
    }
}

/// Per server, the distinct entries for its uid in the stored lists and the outside entries
/// that beat its own entry at start: each of its re-issues goes above a distinct one of
/// them (a greater one each time), so they bound its re-issues.
pub(super) fn beating_inputs(net: &Net, stored: &[Vec<NodeEntry>]) -> Vec<usize> {
    net.servers
        .iter()
        .map(|srv| {
            let beating: BTreeSet<&NodeEntry> = stored
                .iter()
                .flatten()
                .chain(&net.outside)
                .filter(|e| e.supersedes(&srv.first))
                .collect();
            beating.len()
        })
        .collect()
}

/// An entry from a small space: uids 0 to 9 (0 to 7 are servers' uids; with the two fresh
/// ones of property 3, a list holds at most 12 entries without the big lists, so R = 1),
/// versions 0 to 3, two aliases and locations, so that one uid often holds entries of
/// equal version that differ.
pub(super) fn arb_entry() -> impl Strategy<Value = NodeEntry> {
    (
        0u8..10,
        0u64..=3,
        prop::sample::select(vec!["", "a", "s0", "bb"]),
        prop::sample::select(vec!["h:1", "h:22"]),
        prop::collection::vec(0u8..2, 1..=2),
    )
        .prop_map(|(u, v, a, l, k)| NodeEntry::new([u; 16], v, a, l, k).unwrap())
}

/// True unless `e` is for a server's uid and beats that server's own entry (a stale entry:
/// its owner must re-issue its own above it, property 4).
pub(super) fn respects_owners(e: &NodeEntry, owns: &[NodeEntry]) -> bool {
    owns.iter().all(|o| o.uid() != e.uid() || o >= e)
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    /// The busy stream to read a frame from (modulo their number).
    Deliver(usize),
    /// The link to open (modulo the number of links; nothing if open).
    Open(usize),
    /// The link to send a heartbeat on (nothing if not open yet).
    Heartbeat(usize),
    /// An entry merged by a server from outside the exchange.
    Outside(usize, NodeEntry),
}

pub(super) fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => any::<usize>().prop_map(Step::Deliver),
        2 => any::<usize>().prop_map(Step::Open),
        2 => any::<usize>().prop_map(Step::Heartbeat),
        1 => (any::<usize>(), arb_entry()).prop_map(|(s, e)| Step::Outside(s, e)),
    ]
}

#[derive(Debug, Clone)]
pub(super) struct Scenario {
    pub(super) owns: Vec<NodeEntry>,
    pub(super) stored: Vec<Vec<NodeEntry>>,
    /// `(opener, acceptor)`, no two alike, connected as an undirected graph.
    pub(super) links: Vec<(usize, usize)>,
    pub(super) steps: Vec<Step>,
    /// Which busy stream delivers next, once the steps are done (cycled).
    pub(super) picks: Vec<usize>,
    /// Big lists (see [`arb_big`]): reconciliations of up to 2 round trips, not 1.
    pub(super) big: bool,
    /// The servers' threshold for sending a list whole (`Net::whole_max`): theirs, or 0.
    pub(super) whole_max: usize,
}

/// Entries every server holds in a big scenario: version 0, among the small space's.
pub(super) const BASE_A: u8 = 32;
/// Entries some servers hold in a big scenario: version 1000, so that they sort last
/// (negentropy orders by version, then id), in the last range of an opener's 16: a
/// server holding them answers that range with fingerprints, a second round trip.
pub(super) const BASE_B: u8 = 32;

pub(super) fn base_a(k: u8) -> NodeEntry {
    NodeEntry::new([0x40 + k; 16], 0, "a", "h:1", vec![1]).unwrap()
}

pub(super) fn base_b(k: u8) -> NodeEntry {
    NodeEntry::new([0x80 + k; 16], 1000, "b", "h:1", vec![1]).unwrap()
}

/// The servers' own entries at `versions`, and their stored lists without entries beating
/// an owner's own unless `stale`.
pub(super) fn owns_and_stored(
    versions: &[u64],
    stored: Vec<Vec<NodeEntry>>,
    stale: bool,
) -> (Vec<NodeEntry>, Vec<Vec<NodeEntry>>) {
    let owns: Vec<NodeEntry> = versions
        .iter()
        .enumerate()
        .map(|(i, &v)| own_entry(i, v))
        .collect();
    let stored = stored
        .into_iter()
        .map(|l| {
            l.into_iter()
                .filter(|e| stale || respects_owners(e, &owns))
                .collect()
        })
        .collect();
    (owns, stored)
}

/// One time in five, big lists: which of the `n` servers hold the `BASE_B` entries
/// (all hold the `BASE_A` ones); and whether short lists are sent whole, as the servers
/// do, or reconciled like long ones (half the time each).
pub(super) fn arb_big(n: usize) -> impl Strategy<Value = (Option<Vec<bool>>, bool)> {
    (
        prop::option::weighted(0.2, prop::collection::vec(any::<bool>(), n)),
        any::<bool>(),
    )
}

/// The threshold a scenario's servers send lists whole under: `WHOLE_LIST_MAX`, or 0.
pub(super) fn whole_max((_, whole): &(Option<Vec<bool>>, bool)) -> usize {
    if *whole {
        WHOLE_LIST_MAX
    } else {
        0
    }
}

/// Adds the big lists to the stored lists; returns whether there are any.
pub(super) fn add_big(stored: &mut [Vec<NodeEntry>], (big, _): (Option<Vec<bool>>, bool)) -> bool {
    let Some(holds_b) = big else {
        return false;
    };
    for (list, b) in stored.iter_mut().zip(holds_b) {
        list.extend((0..BASE_A).map(base_a));
        if b {
            list.extend((0..BASE_B).map(base_b));
        }
    }
    true
}

/// N servers (2 to 8), their stored lists, a random connected topology (a random tree with
/// random directions, then up to N more links, both directions of a pair allowed), the
/// steps and the picks. Entries beating a server's own entry are left out unless `stale`.
pub(super) fn arb_scenario(stale: bool) -> impl Strategy<Value = Scenario> {
    (2usize..=8)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(0u64..=3, n),
                prop::collection::vec(prop::collection::vec(arb_entry(), 0..6), n),
                prop::collection::vec((any::<usize>(), any::<bool>()), n - 1),
                prop::collection::vec((0..n, 0..n), 0..=n),
                prop::collection::vec(arb_step(), 0..80),
                prop::collection::vec(any::<usize>(), 1..16),
                arb_big(n),
            )
        })
        .prop_map(move |(versions, stored, tree, extra, steps, picks, big)| {
            let (owns, mut stored) = owns_and_stored(&versions, stored, stale);
            let whole_max = whole_max(&big);
            let big = add_big(&mut stored, big);
            let mut links = Vec::new();
            for (i, (parent, up)) in tree.into_iter().enumerate() {
                let (child, parent) = (i + 1, parent % (i + 1));
                links.push(if up { (child, parent) } else { (parent, child) });
            }
            links.extend(extra.into_iter().filter(|(a, b)| a != b));
            let mut seen = BTreeSet::new();
            links.retain(|l| seen.insert(*l));
            Scenario {
                owns,
                stored,
                links,
                steps,
                picks,
                big,
                whole_max,
            }
        })
}

/// The diameter of the topology as an undirected graph (it is connected).
pub(super) fn diameter(n: usize, links: &[(usize, usize)]) -> usize {
    let mut best = 0;
    for from in 0..n {
        let mut dist = vec![usize::MAX; n];
        dist[from] = 0;
        let mut queue = VecDeque::from([from]);
        while let Some(x) = queue.pop_front() {
            for &(a, b) in links {
                let y = if a == x {
                    b
                } else if b == x {
                    a
                } else {
                    continue;
                };
                if dist[y] == usize::MAX {
                    dist[y] = dist[x] + 1;
                    queue.push_back(y);
                }
            }
        }
        assert!(
            dist.iter().all(|&d| d != usize::MAX),
            "a connected topology"
        );
        best = best.max(dist.into_iter().max().unwrap_or(0));
    }
    best
}

/// True when every server reaches every other along the links' direction.
pub(super) fn strongly_connected(n: usize, links: &[(usize, usize)]) -> bool {
    let reach = |forward: bool| {
        let mut seen = vec![false; n];
        seen[0] = true;
        let mut stack = vec![0];
        while let Some(x) = stack.pop() {
            for &(a, b) in links {
                let (from, to) = if forward { (a, b) } else { (b, a) };
                if from == x && !seen[to] {
                    seen[to] = true;
                    stack.push(to);
                }
            }
        }
        seen.into_iter().all(|s| s)
    };
    reach(true) && reach(false)
}

/// What every server ends with: each server's own entry for its uid, and for every other
/// uid the greatest entry of the stored lists and the outside entries.
pub(super) fn expected(
    owns: &[NodeEntry],
    stored: &[Vec<NodeEntry>],
    outside: &[NodeEntry],
) -> NodeList {
    let mut l = NodeList::from_entries(owns.to_vec());
    let others: Vec<NodeEntry> = stored
        .iter()
        .flatten()
        .chain(outside)
        .filter(|e| owns.iter().all(|o| o.uid() != e.uid()))
        .cloned()
        .collect();
    l.merge(&others);
    l
}

/// Distinct entries in the run: own entries, stored lists, outside entries.
pub(super) fn distinct_entries(
    owns: &[NodeEntry],
    stored: &[Vec<NodeEntry>],
    outside: &[NodeEntry],
) -> usize {
    let all: BTreeSet<&NodeEntry> = owns
        .iter()
        .chain(stored.iter().flatten())
        .chain(outside)
        .collect();
    all.len()
}
