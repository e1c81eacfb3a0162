//! Catch-up by range-based set reconciliation (docs/PROTOCOL.md §8.20), of three sets:
//! contacts, the directory and the node list. A link whose peer is far behind our journal, or new, or
//! whose cursor the journal no longer covers, compares contact ids with the peer and
//! pushes only the records the peer lacks, then marks and pages the lines since; every
//! link that opens compares directory ids and pushes (and asks for) only the entries one
//! side lacks. A server answers one reconciliation of each set at a time, so a joining
//! server fills from one peer and finds nothing missing at the others; and it starts its
//! own only while it answers none of that set, so it never compares a half-filled set.
//! `session` is the answering side; `dir` what the directory's reconciliation moves;
//! `nodes` the node lists' (set 3), both sides.

mod dir;
mod nodes;
mod session;

pub(super) use dir::FpMap;

use super::conn::Answer;
use super::journal::Phase;
use super::links::LinkState;
use super::stream::{Stream, StreamState};
use super::{ConnId, StoreRequest, TcpAction, TcpCore};
use crate::federation::reconcile::{without_stale, Initiator, Item};
use crate::store::IdFilter;
use crate::wire::tcp::answer::{AnswerPiece, Asked};
use crate::wire::tcp::Role;
use session::Session;
use std::collections::HashMap;
use std::sync::Arc;

/// A link whose peer is more than this many lines of our journal behind reconciles
/// instead of paging the lines (docs/PROTOCOL.md §8.20): past it, what other servers may
/// already have sent the peer outweighs the reconciliation's messages (about a record's
/// size a difference).
pub(super) const RECONCILE_GAP: u64 = 4096;
/// A new peer (its cursor is 0: it holds none of our journal) reconciles past this many
/// lines: it is joining, and another server may be filling it already.
pub(super) const NEW_PEER_GAP: u64 = 256;
/// After a busy answer, ask again this much later (ms).
pub(super) const BUSY_RETRY_MS: u64 = 250;

/// What a reconciliation compares: the first byte of a Reconcile body (frame 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Set {
    /// Contacts (set 1): ids of the 536-byte server-role records.
    Contacts,
    /// The directory (set 2): ids of the entries, local and remote.
    Directory,
    /// The node list (set 3): ids of its entries.
    Nodes,
}

impl Set {
    /// The three sets.
    pub(super) const ALL: [Set; 3] = [Set::Contacts, Set::Directory, Set::Nodes];

    /// The set byte: 1, 2 or 3.
    pub(super) fn byte(self) -> u8 {
        match self {
            Set::Contacts => 1,
            Set::Directory => 2,
            Set::Nodes => 3,
        }
    }

    /// The set of byte `b`, if any.
    pub(super) fn of(b: u8) -> Option<Set> {
        match b {
            1 => Some(Set::Contacts),
            2 => Some(Set::Directory),
            3 => Some(Set::Nodes),
            _ => None,
        }
    }
}

/// Who waits for a read of ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdsFor {
    /// Link `i`, to start its reconciliation of the set.
    Link(usize, Set),
    /// The reconciliation of the set we answer on this connection.
    Session(ConnId, Set),
}

/// A link's reconciliation of one set in progress.
#[derive(Debug)]
pub(super) struct LinkRecon {
    /// `None` until our ids are read.
    initiator: Option<Initiator>,
    /// Contacts: our journal head when the ids were read, the JournalMark after the push.
    mark: u64,
    /// After a busy answer: when to send the first message again; before our ids are
    /// read (we were answering a reconciliation of the set ourselves): when to try again
    /// (ms).
    retry_at_ms: Option<u64>,
    /// The directory: our entries' fingerprints by id, to push those the peer lacks.
    fps: Option<FpMap>,
    /// The node list: the lists were found to differ again while this one ran.
    again: bool,
}

/// Reconciliations in progress: our links', and the ones we answer.
#[derive(Debug, Default)]
pub(super) struct Reconciles {
    pub(super) links: HashMap<(usize, Set), LinkRecon>,
    /// The reconciliation of each set we answer: one at a time.
    sessions: HashMap<Set, Session>,
    /// The contact ids last read, with our journal head then: reused while nothing has
    /// changed (a server reconciling with many peers reads them once).
    cache: Option<(u64, Arc<Vec<Item>>)>,
}

/// What a link's last reconciliation of a set found, for `status` (docs/PROTOCOL.md
/// §8.5).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReconcileNote {
    /// Reconciliations completed on the link since start.
    pub(super) count: u64,
    /// Round trips of the last one.
    pub(super) rounds: u32,
    /// Records we held that the peer lacked (pushed), in the last one.
    pub(super) sent: u64,
    /// Records the peer held that we lacked, in the last one.
    pub(super) missing: u64,
    /// Bytes of reconciliation messages both ways, in the last one.
    pub(super) bytes: u64,
    /// When the last anti-entropy reconciliation started (ms; 0: none yet).
    pub(super) at_ms: u64,
}

/// The frame `[22][len u16][set u8][message]` (a Reconcile, or its answer; an empty
/// message: busy).
fn frame(set: Set, message: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + message.len());
    body.push(set.byte());
    body.extend_from_slice(message);
    let mut out = Vec::with_capacity(3 + body.len());
    let _ = AnswerPiece::Reconcile(&body).append_to(&mut out); // <= 60,000: ours
    out
}

impl TcpCore {
    /// Link `i` reconciles `set`: read our ids (contacts: after every write accepted so
    /// far), then send the first message. While we answer another server's reconciliation
    /// of that set (we are being filled), the read waits for it to end.
    pub(super) fn start_reconcile(&mut self, i: usize, set: Set) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        if set == Set::Contacts {
            l.journal.phase = Phase::Reconcile;
        }
        let retry_at_ms = self.answering(set).map(|last_ms| last_ms + BUSY_RETRY_MS);
        let r = LinkRecon {
            initiator: None,
            mark: 0,
            retry_at_ms,
            fps: None,
            again: false,
        };
        self.journal.recon.links.insert((i, set), r);
        if retry_at_ms.is_none() {
            self.read_ids(i, set);
        }
    }

    /// Asks for our ids of `set`, for link `i` (contacts: from the store, or the cache;
    /// the directory: from the UDP core; the node list: at once, from it).
    fn read_ids(&mut self, i: usize, set: Set) {
        if set == Set::Nodes {
            let items = self.nodes.items();
            return self.initiate(i, set, &items, None);
        }
        if set == Set::Contacts {
            if let Some(items) = self.cached_ids() {
                return self.initiate(i, set, &items, None);
            }
            self.flush_batch();
        }
        let tag = self.out.tag();
        self.reads.ids_reads.insert(tag, IdsFor::Link(i, set));
        match set {
            Set::Contacts => self.out.request(StoreRequest::Ids { tag }),
            Set::Directory => self.out.actions.push_back(TcpAction::DirectoryIds { tag }),
            Set::Nodes => {} // read at once, above
        }
    }

    /// Drops the cached contact ids once our journal moved past them.
    pub(super) fn drop_stale_ids(&mut self) {
        let head = self.journal.head;
        let recon = &mut self.journal.recon;
        if recon.cache.as_ref().is_some_and(|(h, _)| *h != head) {
            recon.cache = None;
        }
    }

    /// The cached contact ids, when nothing was written since they were read: our
    /// journal head is the same and no write waits in a batch.
    fn cached_ids(&self) -> Option<Arc<Vec<Item>>> {
        let (head, items) = self.journal.recon.cache.as_ref()?;
        let idle = self.batch.writes.is_empty() && self.batch.by_seq.is_empty();
        (idle && *head == self.journal.head).then(|| Arc::clone(items))
    }

    /// Our contact ids, read for `tag`: start a link's reconciliation or answer the first
    /// message of the one we answer.
    pub(super) fn on_ids(&mut self, now_ms: u64, tag: u64, items: Vec<Item>) {
        // Read after every batch before it and before any after it: our head now is the
        // head they show.
        let items = Arc::new(items);
        self.journal.recon.cache = Some((self.journal.head, Arc::clone(&items)));
        self.ids_read(now_ms, tag, &items, None);
    }

    /// Our ids of a set, read for `tag` (`fps`: the directory's fingerprints by id).
    fn ids_read(&mut self, now_ms: u64, tag: u64, items: &[Item], fps: Option<FpMap>) {
        match self.reads.ids_reads.remove(&tag) {
            Some(IdsFor::Link(i, set)) => self.initiate(i, set, items, fps),
            Some(IdsFor::Session(conn, set)) => {
                self.respond_first(now_ms, (conn, set), tag, items, fps);
            }
            None => {}
        }
    }

    /// Sends link `i`'s first message of `set` over `items`, marked at our journal head
    /// now.
    fn initiate(&mut self, i: usize, set: Set, items: &[Item], fps: Option<FpMap>) {
        let Some(conn) = self.recon_conn(i, set) else {
            self.journal.recon.links.remove(&(i, set));
            return;
        };
        let Some(r) = self.journal.recon.links.get_mut(&(i, set)) else {
            return;
        };
        match Initiator::new(items) {
            Ok(init) => {
                r.mark = self.journal.head;
                r.fps = fps;
                let first = frame(set, init.first());
                r.initiator = Some(init);
                self.note_recon_bytes(i, set, first.len(), true);
                self.send_reconcile(conn, &first);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot index our records; dropping the link");
                self.close_link(conn, "its reconciliation failed");
            }
        }
    }

    /// Link `i`'s connection while it is up and reconciling `set`.
    fn recon_conn(&self, i: usize, set: Set) -> Option<ConnId> {
        let l = self.links.get(i)?;
        let LinkState::Up { conn, .. } = l.state else {
            return None;
        };
        let reconciling = match set {
            Set::Contacts => l.journal.phase == Phase::Reconcile,
            Set::Directory | Set::Nodes => self.journal.recon.links.contains_key(&(i, set)),
        };
        reconciling.then_some(conn)
    }

    /// Writes a Reconcile frame (already framed) on `conn` and awaits its answer.
    fn send_reconcile(&mut self, conn: ConnId, framed: &[u8]) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.extend_from_slice(framed);
            c.expect(Asked::Reconcile, 0);
        }
    }

    /// The note of link `i`'s reconciliations of `set`.
    fn recon_note(&mut self, i: usize, set: Set) -> Option<&mut ReconcileNote> {
        let l = self.links.get_mut(i)?;
        Some(match set {
            Set::Contacts => &mut l.journal.recon,
            Set::Directory => &mut l.dir.recon,
            Set::Nodes => &mut l.nodes_recon,
        })
    }

    /// Counts reconciliation bytes on link `i` (a new reconciliation starts the count when
    /// `first`).
    fn note_recon_bytes(&mut self, i: usize, set: Set, n: usize, first: bool) {
        if let Some(note) = self.recon_note(i, set) {
            if first {
                note.bytes = 0;
            }
            note.bytes += n as u64;
        }
    }

    /// The peer's answer on link `conn` (`body`: `[set][message]`): busy (ask again soon),
    /// the next message, or the end (push what the peer lacks). False when the link was
    /// dropped.
    pub(super) fn reconcile_answer(&mut self, now_ms: u64, conn: ConnId, body: &[u8]) -> bool {
        let Some(i) = self.conns.get(&conn).and_then(|c| c.link) else {
            return true;
        };
        let Some((set, msg)) = body
            .split_first()
            .and_then(|(&b, m)| Some((Set::of(b)?, m)))
        else {
            self.close_link(conn, "its reconciliation answer named no set");
            return false;
        };
        self.note_recon_bytes(i, set, 3 + body.len(), false);
        let Some(r) = self.journal.recon.links.get_mut(&(i, set)) else {
            return true;
        };
        let Some(init) = r.initiator.as_mut() else {
            return true;
        };
        if msg.is_empty() {
            r.retry_at_ms = Some(now_ms + BUSY_RETRY_MS);
            return true;
        }
        match init.step(msg) {
            Ok(Some(next)) => {
                let framed = frame(set, &next);
                self.note_recon_bytes(i, set, framed.len(), false);
                self.send_reconcile(conn, &framed);
                true
            }
            Ok(None) => {
                self.finish_reconcile(i, set, conn);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "a peer's reconciliation answer was malformed");
                self.close_link(conn, "its reconciliation answer was malformed");
                false
            }
        }
    }

    /// Link `i`'s reconciliation of `set` is complete: note what it found, then move the
    /// records.
    fn finish_reconcile(&mut self, i: usize, set: Set, conn: ConnId) {
        let Some(r) = self.journal.recon.links.remove(&(i, set)) else {
            return;
        };
        let Some(init) = r.initiator else {
            return;
        };
        if let Some(n) = self.recon_note(i, set) {
            n.count += 1;
            n.rounds = init.rounds();
            n.sent = init.have().len() as u64;
            n.missing = init.need();
        }
        match set {
            Set::Contacts => self.push_contacts(i, conn, &init, r.mark),
            Set::Directory => self.move_entries(i, conn, &init, r.fps.as_ref()),
            Set::Nodes => self.sync_nodes(conn, &init, r.again),
        }
    }

    /// Pushes the contacts the peer lacks from one snapshot (none: mark at once), but
    /// those it holds a newer version of, then marks at `mark` and pages the lines since.
    fn push_contacts(&mut self, i: usize, conn: ConnId, init: &Initiator, mark: u64) {
        if let Some(l) = self.links.get_mut(i) {
            l.journal.phase = Phase::FullPush { mark: Some(mark) };
        }
        // Not the versions the peer holds a newer one of: it would drop them.
        let have = without_stale(init.have(), init.need_ids());
        if !have.is_empty() {
            // The peer lacks all we hold (it is new): one plain snapshot, no filter.
            let only =
                (have.len() < init.len()).then(|| IdFilter(Arc::new(have.into_iter().collect())));
            self.push_snapshot(i, conn, only);
        }
        self.push_answer(conn, Answer::Mark { link: i });
    }

    /// Pushes on link `i` (connection `conn`) every record of a new snapshot, or only
    /// those whose ids are in `only`, as server-role Updates (no count).
    fn push_snapshot(&mut self, i: usize, conn: ConnId, only: Option<IdFilter>) {
        self.flush_batch();
        let id = self.out.tag();
        self.reads.streams.insert(id, conn);
        self.reads.push_streams.insert(id, i);
        self.out.request(match only {
            Some(only) => StoreRequest::FilteredSnapshot { stream: id, only },
            None => StoreRequest::Snapshot {
                stream: id,
                owner: None,
            },
        });
        let stream = Stream {
            id,
            kind: Role::Server,
            counted: false,
            state: StreamState::Opening,
        };
        self.push_answer(conn, Answer::Stream(stream));
    }

    /// Sends again the first message of each link whose peer was busy, once due; reads
    /// the ids of each link that waited for our own answering to end, once it has.
    pub(super) fn reconcile_retries(&mut self, now_ms: u64) {
        let due: Vec<(usize, Set)> = self
            .journal
            .recon
            .links
            .iter()
            .filter(|(_, r)| r.retry_at_ms.is_some_and(|t| now_ms >= t))
            .map(|(&k, _)| k)
            .collect();
        for (i, set) in due {
            let Some(conn) = self.recon_conn(i, set) else {
                self.journal.recon.links.remove(&(i, set));
                continue;
            };
            let answering = self.answering(set).is_some();
            let Some(r) = self.journal.recon.links.get_mut(&(i, set)) else {
                continue;
            };
            r.retry_at_ms = None;
            let Some(first) = r.initiator.as_ref().map(|x| frame(set, x.first())) else {
                match answering {
                    true => r.retry_at_ms = Some(now_ms + BUSY_RETRY_MS),
                    false => self.read_ids(i, set),
                }
                continue;
            };
            self.note_recon_bytes(i, set, first.len(), false);
            self.send_reconcile(conn, &first);
        }
    }

    /// The next busy retry or anti-entropy reconciliation due (ms).
    pub(super) fn reconcile_deadline(&self) -> Option<u64> {
        let retries = self
            .journal
            .recon
            .links
            .values()
            .filter_map(|r| r.retry_at_ms);
        let every = self.cfg.timers.anti_entropy_ms;
        let due = self
            .links
            .iter()
            .filter(|l| every > 0 && l.journal.phase == Phase::Live)
            .map(|l| l.journal.recon.at_ms.max(l.up_since_ms) + every);
        retries.chain(due).min()
    }

    /// Anti-entropy: each live link whose last reconciliation (or coming up) is
    /// [`super::TcpTimers::anti_entropy_ms`] old reconciles both sets again, so a record a
    /// link missed (a relay withheld while the server it came from could not reach the
    /// peer, a lost directory record) is found within that time (docs/PROTOCOL.md §8.20).
    pub(super) fn anti_entropy(&mut self, now_ms: u64) {
        let every = self.cfg.timers.anti_entropy_ms;
        if every == 0 {
            return;
        }
        for i in 0..self.links.len() {
            let l = &mut self.links[i];
            let due = l.journal.recon.at_ms.max(l.up_since_ms) + every;
            if l.journal.phase == Phase::Live && now_ms >= due {
                l.journal.recon.at_ms = now_ms;
                self.start_reconcile(i, Set::Contacts);
                if !self.journal.recon.links.contains_key(&(i, Set::Directory)) {
                    self.start_reconcile(i, Set::Directory);
                }
            }
        }
    }

    /// Forgets link `i`'s reconciliations (it went down).
    pub(super) fn forget_link_recon(&mut self, i: usize) {
        for set in Set::ALL {
            self.journal.recon.links.remove(&(i, set));
        }
    }
}
