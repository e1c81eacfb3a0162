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
//! case is deterministic (no clock, no threads, no sleep).

use proptest::prelude::*;
use rendezvous::federation::nodelist::{NodeList, REISSUE_REACH, WHOLE_LIST_MAX};
use rendezvous::federation::reconcile::{node_record_id, Initiator, Item, Responder};
use rendezvous::wire::tcp::nodelist::{
    frame_len, has_duplicate_uids, NodeEntry, NodeListFrame, CMD_NODE_LIST_DIFF,
    CMD_NODE_LIST_HASH, CMD_NODE_SYNC,
};
use rendezvous::wire::tcp::{command_len, Role, CMD_RECONCILE};
use std::collections::{BTreeSet, VecDeque};

// ---------------------------------------------------------------------------------------
// The model: servers, links as two byte streams, and what a server does on each frame
// ---------------------------------------------------------------------------------------

/// The set byte of the node list in a frame 22 (docs/PROTOCOL.md §8.20).
const SET_NODES: u8 = 3;

/// What an opener asked on a link, in order (the core's `Conn::due`: frames 10, 22, 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// A hash; `again` when a reconciliation sent it at its end (it had been marked).
    Hash {
        again: bool,
    },
    Reconcile,
    Sync,
    /// A whole list (11), of a list of at most `Net::whole_max` entries.
    List,
}

struct Server {
    /// Its own entry as it stands: the only entry for its uid it takes.
    own: NodeEntry,
    /// Its own entry at start (the reach of a re-issue counts from its version).
    first: NodeEntry,
    /// Its own entries re-issued above an entry for its uid that beat it, in order.
    reissued: Vec<NodeEntry>,
    list: NodeList,
    /// `list.hash()`, taken again at each change, and `list.items()`, taken when needed
    /// after one (SHA-512 and SHA-256 in a debug build are most of the run's time).
    hash: [u8; 64],
    items: Option<Vec<Item>>,
    /// Times its list changed.
    changes: usize,
}

impl Server {
    /// Merges `entries` into its list (`NodeList::merge`), keeping `hash` and `items`.
    fn merge(&mut self, entries: &[NodeEntry]) -> Vec<NodeEntry> {
        let changed = self.list.merge(entries);
        if !changed.is_empty() {
            self.hash = self.list.hash();
            self.items = None;
        }
        changed
    }

    /// `list.items()`.
    fn items(&mut self) -> &[Item] {
        self.items.get_or_insert_with(|| self.list.items())
    }
}

/// One link: a TCP connection from `opener` to `acceptor`.
struct Link {
    opener: usize,
    acceptor: usize,
    up: bool,
    /// Bytes opener -> acceptor not yet read (hashes, frames 22, syncs).
    requests: Vec<u8>,
    /// Bytes acceptor -> opener not yet read (hash answers, frames 22, diffs).
    answers: Vec<u8>,
    /// What the opener awaits answers to, in order.
    due: VecDeque<Asked>,
    /// The opener's reconciliation of the lists under way, and whether a hash answer
    /// found them different meanwhile (`again`).
    recon: Option<(Initiator, bool)>,
}

/// Frames sent, by kind, over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sent {
    /// Hashes (10), `again` ones included.
    hashes: usize,
    /// Hashes sent at the end of a reconciliation marked `again`.
    again_hashes: usize,
    hash_answers: usize,
    /// Frames 22 of openers, and their answers.
    reconciles: usize,
    reconcile_answers: usize,
    /// NodeSync frames (24), whole NodeList frames (11), and NodeListDiff frames (12).
    syncs: usize,
    lists: usize,
    diffs: usize,
    /// Reconciliations started, and ended.
    recons: usize,
    recons_done: usize,
    /// Hash answers that found a reconciliation under way (marked it `again`).
    marked: usize,
    /// The most round trips of one reconciliation.
    rounds_most: u32,
}

struct Net {
    servers: Vec<Server>,
    links: Vec<Link>,
    sent: Sent,
    /// Frames read off the streams.
    deliveries: usize,
    /// Link openings and heartbeats (each may send one hash).
    triggers: usize,
    /// Entries merged from outside the exchange, as given.
    outside: Vec<NodeEntry>,
    /// Changes of a server's list while a frame it sent on a link it opened awaited its
    /// answer.
    changes_in_flight: usize,
    /// An opener whose list holds at most this many entries sends it whole (11) instead
    /// of reconciling: `WHOLE_LIST_MAX` as the servers do, or 0 (every list reconciled)
    /// so that reconciliations meet short lists and every interleaving too.
    whole_max: usize,
}

/// A frame as a server reads it off a stream.
#[derive(Debug)]
enum Frame {
    /// 10, 11, 12 or 24.
    Nodes(NodeListFrame),
    /// 22 of set 3: the negentropy message.
    Reconcile(Vec<u8>),
}

/// The frame's bytes, as a server writes them.
fn bytes(frame: &NodeListFrame) -> Vec<u8> {
    frame.to_vec().expect("at most 4096 entries")
}

/// The frame 22 `[22][len u16][3][message]` (the core's `reconcile::frame`).
fn reconcile_bytes(message: &[u8]) -> Vec<u8> {
    let len = u16::try_from(1 + message.len()).expect("a message under 60,000 bytes");
    let mut out = vec![CMD_RECONCILE];
    out.extend_from_slice(&len.to_be_bytes());
    out.push(SET_NODES);
    out.extend_from_slice(message);
    out
}

/// Reads the first frame of a stream, as the core's reader does: delimited by
/// `command_len(Role::Server, ..)`, then parsed (a frame 22: its set byte, 3, and the
/// message).
fn take_frame(stream: &mut Vec<u8>) -> Frame {
    let n = command_len(Role::Server, stream)
        .expect("a server-role frame")
        .expect("whole frames only are queued");
    let frame: Vec<u8> = stream.drain(..n).collect();
    if frame[0] == CMD_RECONCILE {
        let len = usize::from(u16::from_be_bytes([frame[1], frame[2]]));
        assert_eq!(3 + len, n, "len counts the set byte and the message");
        assert_eq!(frame[3], SET_NODES, "a node-list reconciliation");
        return Frame::Reconcile(frame[4..].to_vec());
    }
    assert_eq!(frame_len(&frame), Ok(Some(n)), "a node-list frame");
    Frame::Nodes(NodeListFrame::parse(&frame).expect("a frame a server wrote parses"))
}

/// The most round trips of a reconciliation whose initiator holds `len` entries (see the
/// bounds in the header): 1 under 32 entries, 2 up to 496.
fn rounds_most(len: usize) -> u32 {
    assert!(
        len <= 496,
        "the bound is derived for lists of at most 496 entries"
    );
    if len < 32 {
        1
    } else {
        2
    }
}

impl Net {
    /// Servers `owns[i]` starting from the stored lists `stored[i]` (every entry for their
    /// own uid dropped, as `TcpCore::with_nodes` does), and the links `(opener, acceptor)`,
    /// none open yet.
    fn new(owns: &[NodeEntry], stored: &[Vec<NodeEntry>], links: &[(usize, usize)]) -> Net {
        let servers = owns
            .iter()
            .zip(stored)
            .map(|(own, stored)| {
                let own = start_above_stored(own, stored);
                let mut list = NodeList::from_entries(vec![own.clone()]);
                let rest: Vec<NodeEntry> = stored
                    .iter()
                    .filter(|e| e.uid() != own.uid())
                    .cloned()
                    .collect();
                list.merge(&rest);
                Server {
                    first: own.clone(),
                    own,
                    reissued: Vec::new(),
                    hash: list.hash(),
                    items: None,
                    list,
                    changes: 0,
                }
            })
            .collect();
        let links = links
            .iter()
            .map(|&(opener, acceptor)| Link {
                opener,
                acceptor,
                up: false,
                requests: Vec::new(),
                answers: Vec::new(),
                due: VecDeque::new(),
                recon: None,
            })
            .collect();
        Net {
            servers,
            links,
            sent: Sent::default(),
            deliveries: 0,
            triggers: 0,
            outside: Vec::new(),
            changes_in_flight: 0,
            whole_max: WHOLE_LIST_MAX,
        }
    }

    /// `entries` without those for server `s`'s uid that are not exactly its own entry.
    fn without_forged(&self, s: usize, entries: Vec<NodeEntry>) -> Vec<NodeEntry> {
        let own = &self.servers[s].own;
        entries
            .into_iter()
            .filter(|e| e.uid() != own.uid() || e == own)
            .collect()
    }

    /// `TcpCore::reissue_own`: when `seen` holds an entry for server `s`'s uid that beats
    /// its own and is within reach (version below start + `REISSUE_REACH`), its own entry
    /// again with the greatest such version + 1, in its list. Returns whether it did.
    fn reissue_own(&mut self, s: usize, seen: &[NodeEntry]) -> bool {
        let srv = &mut self.servers[s];
        let Some(winner) = seen.iter().filter(|e| e.uid() == srv.own.uid()).max() else {
            return false;
        };
        if *winner <= srv.own
            || winner.version() >= srv.first.version().saturating_add(REISSUE_REACH)
        {
            return false;
        }
        let o = &srv.own;
        let again = NodeEntry::new(
            *o.uid(),
            winner.version() + 1,
            o.alias(),
            o.location(),
            o.public_key(),
        )
        .unwrap();
        assert!(again > *winner);
        srv.merge(std::slice::from_ref(&again));
        srv.reissued.push(again.clone());
        srv.own = again;
        true
    }

    /// `Conn::ask_node_hash`: the opener's hash, unless one awaits its answer. Returns
    /// whether it was sent.
    fn ask_node_hash(&mut self, l: usize, again: bool) -> bool {
        if self.links[l]
            .due
            .iter()
            .any(|a| matches!(a, Asked::Hash { .. }))
        {
            return false;
        }
        let hash = bytes(&NodeListFrame::Hash(
            self.servers[self.links[l].opener].hash,
        ));
        let link = &mut self.links[l];
        link.requests.extend_from_slice(&hash);
        link.due.push_back(Asked::Hash { again });
        self.sent.hashes += 1;
        true
    }

    /// `TcpCore::nodes_changed`: after a change, our hash on each link we opened that is up.
    fn nodes_changed(&mut self, s: usize, changed: usize) {
        if changed == 0 {
            return;
        }
        self.servers[s].changes += 1;
        if self
            .links
            .iter()
            .any(|l| l.opener == s && !l.due.is_empty())
        {
            self.changes_in_flight += 1;
        }
        for l in 0..self.links.len() {
            if self.links[l].opener == s && self.links[l].up {
                self.ask_node_hash(l, false);
            }
        }
    }

    /// Server `s` merges `entries` (other entries of its own uid ignored), first
    /// re-issuing its own entry above one that beats it if `reissue` (`merge_nodes`: a
    /// diff; not an AuthProof, where an entry for our uid is refused).
    fn merge_at(&mut self, s: usize, entries: Vec<NodeEntry>, reissue: bool) {
        let reissued = reissue && self.reissue_own(s, &entries);
        let entries = self.without_forged(s, entries);
        let changed = self.servers[s].merge(&entries);
        self.nodes_changed(s, changed.len() + usize::from(reissued));
    }

    /// The link opens (`TcpCore::link_start`): the opener's hash.
    fn open(&mut self, l: usize) {
        if !self.links[l].up {
            self.links[l].up = true;
            self.triggers += 1;
            self.ask_node_hash(l, false);
        }
    }

    /// A heartbeat on an open link: the opener's hash.
    fn heartbeat(&mut self, l: usize) {
        if self.links[l].up {
            self.triggers += 1;
            self.ask_node_hash(l, false);
        }
    }

    /// An entry reaches server `s` from outside the exchange (an AuthProof, a peer not in
    /// the model). One for its own uid is refused (an AuthProof for our uid: 401): it
    /// enters no list, and is not an input of the run.
    fn merge_outside(&mut self, s: usize, e: NodeEntry) {
        if e.uid() != self.servers[s].own.uid() {
            self.outside.push(e.clone());
        }
        self.merge_at(s, vec![e], false);
    }

    /// The streams with a frame to read: `2 l` the requests of link `l`, `2 l + 1` its
    /// answers.
    fn busy(&self) -> Vec<usize> {
        let mut v = Vec::new();
        for (l, link) in self.links.iter().enumerate() {
            if !link.requests.is_empty() {
                v.push(2 * l);
            }
            if !link.answers.is_empty() {
                v.push(2 * l + 1);
            }
        }
        v
    }

    /// Reads one frame off stream `q` (see [`Net::busy`]) and acts on it.
    fn deliver(&mut self, q: usize) {
        self.deliveries += 1;
        let l = q / 2;
        if q % 2 == 0 {
            let frame = take_frame(&mut self.links[l].requests);
            self.at_acceptor(l, frame);
        } else {
            let frame = take_frame(&mut self.links[l].answers);
            self.at_opener(l, frame);
        }
    }

    /// `TcpCore::node_list_command` / `answer_nodes` / `node_sync_in`: a hash answered with
    /// ours, a frame 22 with our responder's answer from our list as it stands, a NodeSync
    /// merged and answered with the diff of the entries wanted.
    fn at_acceptor(&mut self, l: usize, frame: Frame) {
        let s = self.links[l].acceptor;
        let answer = match frame {
            Frame::Nodes(NodeListFrame::Hash(_)) => {
                self.sent.hash_answers += 1;
                bytes(&NodeListFrame::Hash(self.servers[s].hash))
            }
            Frame::Reconcile(message) => {
                let answer = Responder::new(self.servers[s].items())
                    .and_then(|mut r| r.answer(&message))
                    .expect("a message an initiator wrote");
                assert!(!answer.is_empty(), "an empty answer would read as busy");
                self.sent.reconcile_answers += 1;
                reconcile_bytes(&answer)
            }
            Frame::Nodes(NodeListFrame::Sync { entries, want }) => {
                assert!(!has_duplicate_uids(&entries), "a sync a server sent");
                let reissued = self.reissue_own(s, &entries);
                let entries = self.without_forged(s, entries);
                let changed = self.servers[s].merge(&entries);
                let changed = changed.len() + usize::from(reissued);
                let mut diff = self.servers[s].list.with_ids(&want);
                let own = &self.servers[s].own;
                if reissued && !diff.contains(own) {
                    diff.push(own.clone());
                }
                self.sent.diffs += 1;
                self.links[l]
                    .answers
                    .extend(bytes(&NodeListFrame::Diff(diff)));
                self.nodes_changed(s, changed);
                return;
            }
            Frame::Nodes(NodeListFrame::List(entries)) => {
                assert!(!has_duplicate_uids(&entries), "a list a server sent");
                let reissued = self.reissue_own(s, &entries);
                let entries = self.without_forged(s, entries);
                let changed = self.servers[s].merge(&entries);
                let changed = changed.len() + usize::from(reissued);
                let diff = self.servers[s].list.diff_for(&entries);
                self.sent.diffs += 1;
                self.links[l]
                    .answers
                    .extend(bytes(&NodeListFrame::Diff(diff)));
                self.nodes_changed(s, changed);
                return;
            }
            Frame::Nodes(NodeListFrame::Diff(_)) => {
                panic!("a diff reached an acceptor: it is only an answer")
            }
        };
        self.links[l].answers.extend(answer);
    }

    /// `TcpCore::peer_node_hash` / `reconcile_answer` / `merge_nodes`: the answers, read in
    /// the order asked.
    fn at_opener(&mut self, l: usize, frame: Frame) {
        let asked = self.links[l]
            .due
            .pop_front()
            .expect("an answer nobody asked for");
        match (asked, frame) {
            (Asked::Hash { again }, Frame::Nodes(NodeListFrame::Hash(h))) => {
                self.hash_answer(l, h, again)
            }
            (Asked::Reconcile, Frame::Reconcile(message)) => self.reconcile_answer(l, &message),
            (Asked::Sync | Asked::List, Frame::Nodes(NodeListFrame::Diff(entries))) => {
                assert!(!has_duplicate_uids(&entries), "a diff a server sent");
                let s = self.links[l].opener;
                let before = self.sent;
                let hashes_most = self.links.iter().filter(|k| k.opener == s).count();
                self.merge_at(s, entries, true);
                // A diff is never answered: merging it may spread our hash, nothing else.
                let after = self.sent;
                assert_eq!(
                    Sent {
                        hashes: before.hashes,
                        ..after
                    },
                    before,
                    "a diff was answered"
                );
                assert!(after.hashes - before.hashes <= hashes_most);
            }
            (asked, frame) => panic!("asked {asked:?}, answered {frame:?}"),
        }
    }

    /// The acceptor's hash `h`, answering ours on link `l`: compared with our list as it
    /// is now; when they differ, a reconciliation starts, or the one under way is marked.
    fn hash_answer(&mut self, l: usize, h: [u8; 64], again: bool) {
        let s = self.links[l].opener;
        if h == self.servers[s].hash {
            return;
        }
        if let Some((_, marked)) = self.links[l].recon.as_mut() {
            assert!(!again, "an again hash found a reconciliation under way");
            *marked = true;
            self.sent.marked += 1;
            return;
        }
        if self.servers[s].list.len() <= self.whole_max {
            let list = bytes(&self.servers[s].list.list_frame());
            let link = &mut self.links[l];
            link.requests.extend(list);
            link.due.push_back(Asked::List);
            self.sent.lists += 1;
            return;
        }
        let init = Initiator::new(self.servers[s].items()).expect("our ids index");
        let first = reconcile_bytes(init.first());
        let link = &mut self.links[l];
        link.recon = Some((init, false));
        link.requests.extend(first);
        link.due.push_back(Asked::Reconcile);
        self.sent.recons += 1;
        self.sent.reconciles += 1;
    }

    /// The acceptor's answer to our frame 22 on link `l`: the next message, or the end:
    /// the NodeSync of what it lacks and the ids we lack (nothing when both are empty),
    /// then our hash again if the reconciliation was marked.
    fn reconcile_answer(&mut self, l: usize, message: &[u8]) {
        let s = self.links[l].opener;
        let link = &mut self.links[l];
        let (init, _) = link.recon.as_mut().expect("a reconciliation under way");
        let next = init.step(message).expect("an answer a responder wrote");
        assert!(init.rounds() <= rounds_most(init.len()), "{init:?}");
        if let Some(next) = next {
            link.requests.extend(reconcile_bytes(&next));
            link.due.push_back(Asked::Reconcile);
            self.sent.reconciles += 1;
            return;
        }
        let (init, again) = link.recon.take().expect("under way");
        self.sent.recons_done += 1;
        self.sent.rounds_most = self.sent.rounds_most.max(init.rounds());
        let (entries, want) = self.servers[s]
            .list
            .sync_parts(init.have(), init.need_ids());
        if !(entries.is_empty() && want.is_empty()) {
            let link = &mut self.links[l];
            link.requests
                .extend(bytes(&NodeListFrame::Sync { entries, want }));
            link.due.push_back(Asked::Sync);
            self.sent.syncs += 1;
        }
        if again && self.ask_node_hash(l, true) {
            self.sent.again_hashes += 1;
        }
    }

    /// Delivers frames, stream picked by `picks` (cycled), until none is in flight; panics
    /// when `bound` deliveries did not get there. Returns the deliveries made.
    fn drain(&mut self, picks: &[usize], bound: usize) -> usize {
        let start = self.deliveries;
        let mut k = 0;
        loop {
            let busy = self.busy();
            if busy.is_empty() {
                assert!(
                    self.links.iter().all(|l| l.recon.is_none()),
                    "a reconciliation under way always has a frame in flight"
                );
                // The caches follow the list: every change goes through `Server::merge`.
                for srv in &self.servers {
                    assert_eq!(srv.hash, srv.list.hash());
                }
                return self.deliveries - start;
            }
            assert!(
                self.deliveries - start < bound,
                "no quiescence within {bound} deliveries"
            );
            self.deliver(busy[picks[k % picks.len()] % busy.len()]);
            k += 1;
        }
    }

    /// A heartbeat on every link, in link order, then deliveries until quiescence.
    fn heartbeat_round(&mut self, picks: &[usize], bound: usize) -> usize {
        for l in 0..self.links.len() {
            self.heartbeat(l);
        }
        self.drain(picks, bound)
    }

    fn all_equal(&self) -> bool {
        let h = self.servers[0].hash;
        self.servers.iter().all(|s| s.hash == h)
    }

    /// At quiescence: for every link P -> Q, P's list is contained in Q's.
    fn assert_openers_contained(&self) {
        for link in &self.links {
            let mut q = self.servers[link.acceptor].list.clone();
            let p = self.servers[link.opener].list.entries();
            assert!(
                q.merge(p).is_empty(),
                "link {} -> {}: the opener holds what the acceptor lacks",
                link.opener,
                link.acceptor
            );
        }
    }

    /// Sum over servers of changes x links opened: the hashes spreading may send.
    fn spreading_most(&self) -> usize {
        self.servers
            .iter()
            .enumerate()
            .map(|(s, srv)| srv.changes * self.links.iter().filter(|l| l.opener == s).count())
            .sum()
    }
}

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

/// Server `i`'s own entry: uid `[i; 16]`, a small version, so that other lists hold
/// conflicting entries for it.
fn own_entry(i: usize, version: u64) -> NodeEntry {
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
fn start_above_stored(own: &NodeEntry, stored: &[NodeEntry]) -> NodeEntry {
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
fn beating_inputs(net: &Net, stored: &[Vec<NodeEntry>]) -> Vec<usize> {
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
fn arb_entry() -> impl Strategy<Value = NodeEntry> {
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
fn respects_owners(e: &NodeEntry, owns: &[NodeEntry]) -> bool {
    owns.iter().all(|o| o.uid() != e.uid() || o >= e)
}

#[derive(Debug, Clone)]
enum Step {
    /// The busy stream to read a frame from (modulo their number).
    Deliver(usize),
    /// The link to open (modulo the number of links; nothing if open).
    Open(usize),
    /// The link to send a heartbeat on (nothing if not open yet).
    Heartbeat(usize),
    /// An entry merged by a server from outside the exchange.
    Outside(usize, NodeEntry),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => any::<usize>().prop_map(Step::Deliver),
        2 => any::<usize>().prop_map(Step::Open),
        2 => any::<usize>().prop_map(Step::Heartbeat),
        1 => (any::<usize>(), arb_entry()).prop_map(|(s, e)| Step::Outside(s, e)),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    owns: Vec<NodeEntry>,
    stored: Vec<Vec<NodeEntry>>,
    /// `(opener, acceptor)`, no two alike, connected as an undirected graph.
    links: Vec<(usize, usize)>,
    steps: Vec<Step>,
    /// Which busy stream delivers next, once the steps are done (cycled).
    picks: Vec<usize>,
    /// Big lists (see [`arb_big`]): reconciliations of up to 2 round trips, not 1.
    big: bool,
    /// The servers' threshold for sending a list whole (`Net::whole_max`): theirs, or 0.
    whole_max: usize,
}

/// Entries every server holds in a big scenario: version 0, among the small space's.
const BASE_A: u8 = 32;
/// Entries some servers hold in a big scenario: version 1000, so that they sort last
/// (negentropy orders by version, then id), in the last range of an opener's 16: a
/// server holding them answers that range with fingerprints, a second round trip.
const BASE_B: u8 = 32;

fn base_a(k: u8) -> NodeEntry {
    NodeEntry::new([0x40 + k; 16], 0, "a", "h:1", vec![1]).unwrap()
}

fn base_b(k: u8) -> NodeEntry {
    NodeEntry::new([0x80 + k; 16], 1000, "b", "h:1", vec![1]).unwrap()
}

/// One time in five, big lists: which of the `n` servers hold the `BASE_B` entries
/// (all hold the `BASE_A` ones); and whether short lists are sent whole, as the servers
/// do, or reconciled like long ones (half the time each).
fn arb_big(n: usize) -> impl Strategy<Value = (Option<Vec<bool>>, bool)> {
    (
        prop::option::weighted(0.2, prop::collection::vec(any::<bool>(), n)),
        any::<bool>(),
    )
}

/// The threshold a scenario's servers send lists whole under: `WHOLE_LIST_MAX`, or 0.
fn whole_max((_, whole): &(Option<Vec<bool>>, bool)) -> usize {
    if *whole {
        WHOLE_LIST_MAX
    } else {
        0
    }
}

/// Adds the big lists to the stored lists; returns whether there are any.
fn add_big(stored: &mut [Vec<NodeEntry>], (big, _): (Option<Vec<bool>>, bool)) -> bool {
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
fn arb_scenario(stale: bool) -> impl Strategy<Value = Scenario> {
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
            let owns: Vec<NodeEntry> = versions
                .iter()
                .enumerate()
                .map(|(i, &v)| own_entry(i, v))
                .collect();
            let mut stored: Vec<Vec<NodeEntry>> = stored
                .into_iter()
                .map(|l| {
                    l.into_iter()
                        .filter(|e| stale || respects_owners(e, &owns))
                        .collect()
                })
                .collect();
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
fn diameter(n: usize, links: &[(usize, usize)]) -> usize {
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
fn strongly_connected(n: usize, links: &[(usize, usize)]) -> bool {
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
fn expected(owns: &[NodeEntry], stored: &[Vec<NodeEntry>], outside: &[NodeEntry]) -> NodeList {
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
fn distinct_entries(owns: &[NodeEntry], stored: &[Vec<NodeEntry>], outside: &[NodeEntry]) -> usize {
    let all: BTreeSet<&NodeEntry> = owns
        .iter()
        .chain(stored.iter().flatten())
        .chain(outside)
        .collect();
    all.len()
}

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
            let owns: Vec<NodeEntry> = (0..2).map(|i| own_entry(i, versions[i])).collect();
            let mut stored: Vec<Vec<NodeEntry>> = stored
                .into_iter()
                .map(|l| {
                    l.into_iter()
                        .filter(|e| stale || respects_owners(e, &owns))
                        .collect()
                })
                .collect();
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
            let owns: Vec<NodeEntry> = (0..3).map(|i| own_entry(i, versions[i])).collect();
            let mut stored: Vec<Vec<NodeEntry>> = stored
                .into_iter()
                .map(|l| {
                    l.into_iter()
                        .filter(|e| respects_owners(e, &owns))
                        .collect()
                })
                .collect();
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
