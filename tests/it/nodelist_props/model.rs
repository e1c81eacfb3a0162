//! The model of the node-list exchange: servers, links as two byte streams, and what a
//! server does on each frame (see the parent module's header for the protocol it follows).

use super::*;

/// The set byte of the node list in a frame 22 (docs/PROTOCOL.md §8.20).
pub(super) const SET_NODES: u8 = 3;

/// What an opener asked on a link, in order (the core's `Conn::due`: frames 10, 22, 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    /// A hash; `again` when a reconciliation sent it at its end (it had been marked).
    Hash {
        again: bool,
    },
    Reconcile,
    Sync,
    /// A whole list (11), of a list of at most `Net::whole_max` entries.
    List,
}

pub(super) struct Server {
    /// Its own entry as it stands: the only entry for its uid it takes.
    pub(super) own: NodeEntry,
    /// Its own entry at start (the reach of a re-issue counts from its version).
    pub(super) first: NodeEntry,
    /// Its own entries re-issued above an entry for its uid that beat it, in order.
    pub(super) reissued: Vec<NodeEntry>,
    pub(super) list: NodeList,
    /// `list.hash()`, taken again at each change, and `list.items()`, taken when needed
    /// after one (SHA-512 and SHA-256 in a debug build are most of the run's time).
    pub(super) hash: [u8; 64],
    pub(super) items: Option<Vec<Item>>,
    /// Times its list changed.
    pub(super) changes: usize,
}

impl Server {
    /// Merges `entries` into its list (`NodeList::merge`), keeping `hash` and `items`.
    pub(super) fn merge(&mut self, entries: &[NodeEntry]) -> Vec<NodeEntry> {
        let changed = self.list.merge(entries);
        if !changed.is_empty() {
            self.hash = self.list.hash();
            self.items = None;
        }
        changed
    }

    /// `list.items()`.
    pub(super) fn items(&mut self) -> &[Item] {
        self.items.get_or_insert_with(|| self.list.items())
    }
}

/// One link: a TCP connection from `opener` to `acceptor`.
pub(super) struct Link {
    pub(super) opener: usize,
    pub(super) acceptor: usize,
    pub(super) up: bool,
    /// Bytes opener -> acceptor not yet read (hashes, frames 22, syncs).
    pub(super) requests: Vec<u8>,
    /// Bytes acceptor -> opener not yet read (hash answers, frames 22, diffs).
    pub(super) answers: Vec<u8>,
    /// What the opener awaits answers to, in order.
    pub(super) due: VecDeque<Asked>,
    /// The opener's reconciliation of the lists under way, and whether a hash answer
    /// found them different meanwhile (`again`).
    pub(super) recon: Option<(Initiator, bool)>,
}

/// Frames sent, by kind, over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sent {
    /// Hashes (10), `again` ones included.
    pub(super) hashes: usize,
    /// Hashes sent at the end of a reconciliation marked `again`.
    pub(super) again_hashes: usize,
    pub(super) hash_answers: usize,
    /// Frames 22 of openers, and their answers.
    pub(super) reconciles: usize,
    pub(super) reconcile_answers: usize,
    /// NodeSync frames (24), whole NodeList frames (11), and NodeListDiff frames (12).
    pub(super) syncs: usize,
    pub(super) lists: usize,
    pub(super) diffs: usize,
    /// Reconciliations started, and ended.
    pub(super) recons: usize,
    pub(super) recons_done: usize,
    /// Hash answers that found a reconciliation under way (marked it `again`).
    pub(super) marked: usize,
    /// The most round trips of one reconciliation.
    pub(super) rounds_most: u32,
}

pub(super) struct Net {
    pub(super) servers: Vec<Server>,
    pub(super) links: Vec<Link>,
    pub(super) sent: Sent,
    /// Frames read off the streams.
    pub(super) deliveries: usize,
    /// Link openings and heartbeats (each may send one hash).
    pub(super) triggers: usize,
    /// Entries merged from outside the exchange, as given.
    pub(super) outside: Vec<NodeEntry>,
    /// Changes of a server's list while a frame it sent on a link it opened awaited its
    /// answer.
    pub(super) changes_in_flight: usize,
    /// An opener whose list holds at most this many entries sends it whole (11) instead
    /// of reconciling: `WHOLE_LIST_MAX` as the servers do, or 0 (every list reconciled)
    /// so that reconciliations meet short lists and every interleaving too.
    pub(super) whole_max: usize,
}

/// A frame as a server reads it off a stream.
#[derive(Debug)]
pub(super) enum Frame {
    /// 10, 11, 12 or 24.
    Nodes(NodeListFrame),
    /// 22 of set 3: the negentropy message.
    Reconcile(Vec<u8>),
}

/// The frame's bytes, as a server writes them.
pub(super) fn bytes(frame: &NodeListFrame) -> Vec<u8> {
    frame.to_vec().expect("at most 4096 entries")
}

/// The frame 22 `[22][len u16][3][message]` (the core's `reconcile::frame`).
pub(super) fn reconcile_bytes(message: &[u8]) -> Vec<u8> {
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
pub(super) fn take_frame(stream: &mut Vec<u8>) -> Frame {
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
pub(super) fn rounds_most(len: usize) -> u32 {
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
    pub(super) fn new(
        owns: &[NodeEntry],
        stored: &[Vec<NodeEntry>],
        links: &[(usize, usize)],
    ) -> Net {
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
    pub(super) fn without_forged(&self, s: usize, entries: Vec<NodeEntry>) -> Vec<NodeEntry> {
        let own = &self.servers[s].own;
        entries
            .into_iter()
            .filter(|e| e.uid() != own.uid() || e == own)
            .collect()
    }

    /// `TcpCore::reissue_own`: when `seen` holds an entry for server `s`'s uid that beats
    /// its own and is within reach (version below start + `REISSUE_REACH`), its own entry
    /// again with the greatest such version + 1, in its list. Returns whether it did.
    pub(super) fn reissue_own(&mut self, s: usize, seen: &[NodeEntry]) -> bool {
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
    pub(super) fn ask_node_hash(&mut self, l: usize, again: bool) -> bool {
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
    pub(super) fn nodes_changed(&mut self, s: usize, changed: usize) {
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

    /// `TcpCore::merge_sent`: entries a peer sent, merged at server `s` (its entry
    /// re-issued first when one beats it, forged entries of its uid left out). Returns the
    /// entries merged, whether it re-issued, and the changes (re-issue included).
    pub(super) fn merge_sent(
        &mut self,
        s: usize,
        entries: Vec<NodeEntry>,
    ) -> (Vec<NodeEntry>, bool, usize) {
        let reissued = self.reissue_own(s, &entries);
        let entries = self.without_forged(s, entries);
        let changed = self.servers[s].merge(&entries).len() + usize::from(reissued);
        (entries, reissued, changed)
    }

    /// `TcpCore::answer_diff`: the acceptor of link `l` answers with the diff.
    pub(super) fn answer_diff(&mut self, l: usize, diff: Vec<NodeEntry>) {
        self.sent.diffs += 1;
        self.links[l]
            .answers
            .extend(bytes(&NodeListFrame::Diff(diff)));
    }

    /// Server `s` merges `entries` (other entries of its own uid ignored), first
    /// re-issuing its own entry above one that beats it if `reissue` (`merge_nodes`: a
    /// diff; not an AuthProof, where an entry for our uid is refused).
    pub(super) fn merge_at(&mut self, s: usize, entries: Vec<NodeEntry>, reissue: bool) {
        let reissued = reissue && self.reissue_own(s, &entries);
        let entries = self.without_forged(s, entries);
        let changed = self.servers[s].merge(&entries);
        self.nodes_changed(s, changed.len() + usize::from(reissued));
    }

    /// The link opens (`TcpCore::link_start`): the opener's hash.
    pub(super) fn open(&mut self, l: usize) {
        if !self.links[l].up {
            self.links[l].up = true;
            self.triggers += 1;
            self.ask_node_hash(l, false);
        }
    }

    /// A heartbeat on an open link: the opener's hash.
    pub(super) fn heartbeat(&mut self, l: usize) {
        if self.links[l].up {
            self.triggers += 1;
            self.ask_node_hash(l, false);
        }
    }

    /// An entry reaches server `s` from outside the exchange (an AuthProof, a peer not in
    /// the model). One for its own uid is refused (an AuthProof for our uid: 401): it
    /// enters no list, and is not an input of the run.
    pub(super) fn merge_outside(&mut self, s: usize, e: NodeEntry) {
        if e.uid() != self.servers[s].own.uid() {
            self.outside.push(e.clone());
        }
        self.merge_at(s, vec![e], false);
    }

    /// The streams with a frame to read: `2 l` the requests of link `l`, `2 l + 1` its
    /// answers.
    pub(super) fn busy(&self) -> Vec<usize> {
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
    pub(super) fn deliver(&mut self, q: usize) {
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
    pub(super) fn at_acceptor(&mut self, l: usize, frame: Frame) {
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
                let (_, reissued, changed) = self.merge_sent(s, entries);
                let mut diff = self.servers[s].list.with_ids(&want);
                let own = &self.servers[s].own;
                if reissued && !diff.contains(own) {
                    diff.push(own.clone());
                }
                self.answer_diff(l, diff);
                self.nodes_changed(s, changed);
                return;
            }
            Frame::Nodes(NodeListFrame::List(entries)) => {
                assert!(!has_duplicate_uids(&entries), "a list a server sent");
                let (entries, _, changed) = self.merge_sent(s, entries);
                let diff = self.servers[s].list.diff_for(&entries);
                self.answer_diff(l, diff);
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
    pub(super) fn at_opener(&mut self, l: usize, frame: Frame) {
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
    pub(super) fn hash_answer(&mut self, l: usize, h: [u8; 64], again: bool) {
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
    pub(super) fn reconcile_answer(&mut self, l: usize, message: &[u8]) {
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
    pub(super) fn drain(&mut self, picks: &[usize], bound: usize) -> usize {
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
    pub(super) fn heartbeat_round(&mut self, picks: &[usize], bound: usize) -> usize {
        for l in 0..self.links.len() {
            self.heartbeat(l);
        }
        self.drain(picks, bound)
    }

    pub(super) fn all_equal(&self) -> bool {
        let h = self.servers[0].hash;
        self.servers.iter().all(|s| s.hash == h)
    }

    /// At quiescence: for every link P -> Q, P's list is contained in Q's.
    pub(super) fn assert_openers_contained(&self) {
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
    pub(super) fn spreading_most(&self) -> usize {
        self.servers
            .iter()
            .enumerate()
            .map(|(s, srv)| srv.changes * self.links.iter().filter(|l| l.opener == s).count())
            .sum()
    }
}
