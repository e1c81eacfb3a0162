//! Catch-up by range-based set reconciliation (docs/PROTOCOL.md §8.20): when a link's
//! peer is far behind our journal, or the journal no longer covers its cursor, the link
//! compares record ids with the peer (frame 22) and pushes only the records the peer
//! lacks, then marks and pages the journal lines since. A server answers one
//! reconciliation at a time, so a joining server fills from one peer and then finds
//! nothing missing from the others; and it starts its own only while it answers none, so
//! it never compares a half-filled list.

use super::conn::{status_bytes, Answer};
use super::journal::Phase;
use super::links::LinkState;
use super::stream::{Stream, StreamState};
use super::{ConnId, StoreRequest, TcpCore};
use crate::federation::reconcile::{Initiator, Item, Responder};
use crate::store::IdFilter;
use crate::wire::status;
use crate::wire::tcp::answer::AnswerPiece;
use crate::wire::tcp::{self, Role};
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
/// A reconciliation we answer whose initiator has sent nothing for this long (ms) is
/// given up, so a stalled peer cannot keep the others busy.
const STALE_MS: u64 = 30_000;

/// Who waits for a [`StoreRequest::Ids`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdsFor {
    /// Link `i`, to start its reconciliation.
    Link(usize),
    /// The reconciliation we answer on this connection.
    Session(ConnId),
}

/// A link's reconciliation in progress.
#[derive(Debug)]
pub(super) struct LinkRecon {
    /// `None` until our ids are read.
    initiator: Option<Initiator>,
    /// Our journal head when the ids were read: the JournalMark after the push.
    mark: u64,
    /// After a busy answer: when to send the first message again; before our ids are
    /// read (we were answering a reconciliation ourselves): when to try again (ms).
    retry_at_ms: Option<u64>,
}

/// The reconciliation this server answers: one at a time.
#[derive(Debug)]
pub(super) struct Session {
    conn: ConnId,
    /// `None` until our ids are read.
    responder: Option<Responder>,
    /// The first message, answered once the ids are read.
    pending: Option<Vec<u8>>,
    /// The tag of the ids read, and of the answer waiting for it.
    tag: u64,
    /// When the initiator last sent a message (ms).
    last_ms: u64,
}

/// Reconciliations in progress, ours and the one we answer.
#[derive(Debug, Default)]
pub(super) struct Reconciles {
    pub(super) links: HashMap<usize, LinkRecon>,
    pub(super) session: Option<Session>,
    /// The last ids read, with our journal head then: reused while nothing has changed
    /// (a server reconciling with many peers reads its ids once).
    cache: Option<(u64, Arc<Vec<Item>>)>,
}

/// What a link's last reconciliation found, for `status` (docs/PROTOCOL.md §8.5).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReconcileNote {
    /// Reconciliations completed on the link since start.
    pub(super) count: u64,
    /// Round trips of the last one.
    pub(super) rounds: u32,
    /// Records we held that the peer lacked (pushed), in the last one.
    pub(super) sent: u64,
    /// Records the peer held that we lacked (its own link brings them), in the last one.
    pub(super) missing: u64,
    /// Bytes of reconciliation messages both ways, in the last one.
    pub(super) bytes: u64,
    /// When the last anti-entropy reconciliation started (ms; 0: none yet).
    pub(super) at_ms: u64,
}

/// The frame `[22][len u16][message]` (a Reconcile, or its answer; empty: busy).
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + message.len());
    let _ = AnswerPiece::Reconcile(message).append_to(&mut out); // <= 60,000: ours
    out
}

impl TcpCore {
    /// Link `i` catches up by reconciliation: read our ids (after every write accepted so
    /// far), then send the first message. While we answer another server's
    /// reconciliation (we are being filled), the read waits for it to end.
    pub(super) fn start_reconcile(&mut self, i: usize) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        l.journal.phase = Phase::Reconcile;
        let retry_at_ms = self
            .journal
            .recon
            .session
            .as_ref()
            .map(|s| s.last_ms + BUSY_RETRY_MS);
        self.journal.recon.links.insert(
            i,
            LinkRecon {
                initiator: None,
                mark: 0,
                retry_at_ms,
            },
        );
        if retry_at_ms.is_none() {
            self.read_ids(i);
        }
    }

    /// Asks the store for our ids, for link `i` (or takes them from the cache).
    fn read_ids(&mut self, i: usize) {
        if let Some(items) = self.cached_ids() {
            return self.initiate(i, &items);
        }
        self.flush_batch();
        let tag = self.out.tag();
        self.reads.ids_reads.insert(tag, IdsFor::Link(i));
        self.out.request(StoreRequest::Ids { tag });
    }

    /// Drops the cached ids once our journal moved past them (they would never be used).
    pub(super) fn drop_stale_ids(&mut self) {
        let head = self.journal.head;
        if self
            .journal
            .recon
            .cache
            .as_ref()
            .is_some_and(|(h, _)| *h != head)
        {
            self.journal.recon.cache = None;
        }
    }

    /// The cached ids, when nothing was written since they were read: our journal head is
    /// the same and no write waits in a batch.
    fn cached_ids(&self) -> Option<Arc<Vec<Item>>> {
        let (head, items) = self.journal.recon.cache.as_ref()?;
        let idle = self.batch.writes.is_empty() && self.batch.by_seq.is_empty();
        (idle && *head == self.journal.head).then(|| Arc::clone(items))
    }

    /// Our ids, read for `tag`: start a link's reconciliation or answer the first message
    /// of the one we answer.
    pub(super) fn on_ids(&mut self, now_ms: u64, tag: u64, items: Vec<Item>) {
        // Read after every batch before it and before any after it: our head now is the
        // head they show.
        let items = Arc::new(items);
        self.journal.recon.cache = Some((self.journal.head, Arc::clone(&items)));
        match self.reads.ids_reads.remove(&tag) {
            Some(IdsFor::Link(i)) => self.initiate(i, &items),
            Some(IdsFor::Session(conn)) => self.respond_first(now_ms, conn, tag, &items),
            None => {}
        }
    }

    /// Sends link `i`'s first message over `items`, marked at our journal head now.
    fn initiate(&mut self, i: usize, items: &[Item]) {
        let Some(conn) = self.link_conn(i) else {
            self.journal.recon.links.remove(&i);
            return;
        };
        let Some(r) = self.journal.recon.links.get_mut(&i) else {
            return;
        };
        match Initiator::new(items) {
            Ok(init) => {
                r.mark = self.journal.head;
                let first = frame(init.first());
                r.initiator = Some(init);
                self.note_recon_bytes(i, first.len(), true);
                self.send_reconcile(conn, &first);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot index our records; dropping the link");
                self.close_link(conn, "its reconciliation failed");
            }
        }
    }

    /// Link `i`'s connection while the link is up and reconciling.
    fn link_conn(&self, i: usize) -> Option<ConnId> {
        let l = self.links.get(i)?;
        match (l.journal.phase, &l.state) {
            (Phase::Reconcile, LinkState::Up { conn, .. }) => Some(*conn),
            _ => None,
        }
    }

    /// Writes a Reconcile frame (already framed) on `conn` and awaits its answer.
    fn send_reconcile(&mut self, conn: ConnId, framed: &[u8]) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.extend_from_slice(framed);
            c.expect(tcp::answer::Asked::Reconcile, 0);
        }
    }

    /// Counts reconciliation bytes on link `i` (a new reconciliation starts the count when
    /// `first`).
    fn note_recon_bytes(&mut self, i: usize, n: usize, first: bool) {
        if let Some(l) = self.links.get_mut(i) {
            if first {
                l.journal.recon.bytes = 0;
            }
            l.journal.recon.bytes += n as u64;
        }
    }

    /// The peer's answer on link `conn`: busy (ask again soon), the next message, or the
    /// end (push what the peer lacks). False when the link was dropped.
    pub(super) fn reconcile_answer(&mut self, now_ms: u64, conn: ConnId, msg: &[u8]) -> bool {
        let Some(i) = self.conns.get(&conn).and_then(|c| c.link) else {
            return true;
        };
        self.note_recon_bytes(i, 3 + msg.len(), false);
        let Some(r) = self.journal.recon.links.get_mut(&i) else {
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
                let framed = frame(&next);
                self.note_recon_bytes(i, framed.len(), false);
                self.send_reconcile(conn, &framed);
                true
            }
            Ok(None) => {
                self.finish_reconcile(i, conn);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "a peer's reconciliation answer was malformed");
                self.close_link(conn, "its reconciliation answer was malformed");
                false
            }
        }
    }

    /// Link `i`'s reconciliation is complete: push the records the peer lacks from one
    /// snapshot (none: mark at once), then mark and page the lines since.
    fn finish_reconcile(&mut self, i: usize, conn: ConnId) {
        let Some(r) = self.journal.recon.links.remove(&i) else {
            return;
        };
        let Some(init) = r.initiator else {
            return;
        };
        if let Some(l) = self.links.get_mut(i) {
            let n = &mut l.journal.recon;
            n.count += 1;
            n.rounds = init.rounds();
            n.sent = init.have().len() as u64;
            n.missing = init.need();
            l.journal.phase = Phase::FullPush { mark: Some(r.mark) };
        }
        if !init.have().is_empty() {
            // The peer lacks all we hold (it is new): one plain snapshot, no filter.
            let only = (init.have().len() < init.len())
                .then(|| IdFilter(Arc::new(init.have().iter().copied().collect())));
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
        let due: Vec<usize> = self
            .journal
            .recon
            .links
            .iter()
            .filter(|(_, r)| r.retry_at_ms.is_some_and(|t| now_ms >= t))
            .map(|(&i, _)| i)
            .collect();
        for i in due {
            let Some(conn) = self.link_conn(i) else {
                self.journal.recon.links.remove(&i);
                continue;
            };
            let answering = self.journal.recon.session.is_some();
            let Some(r) = self.journal.recon.links.get_mut(&i) else {
                continue;
            };
            r.retry_at_ms = None;
            let Some(first) = r.initiator.as_ref().map(|x| frame(x.first())) else {
                match answering {
                    true => r.retry_at_ms = Some(now_ms + BUSY_RETRY_MS),
                    false => self.read_ids(i),
                }
                continue;
            };
            self.note_recon_bytes(i, first.len(), false);
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
    /// [`super::TcpTimers::anti_entropy_ms`] old reconciles again, so a record a link
    /// missed (a relay withheld while the server it came from could not reach the peer)
    /// is found within that time (docs/PROTOCOL.md §8.20).
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
                self.start_reconcile(i);
            }
        }
    }

    /// Reconcile (22) from a peer on `conn`: answered from our ids; busy while we answer
    /// another server's; the first message of a reconciliation waits for our ids.
    pub(super) fn reconcile_in(&mut self, now_ms: u64, conn: ConnId, msg: &[u8]) {
        if let Some(s) = &self.journal.recon.session {
            let held =
                s.conn != conn && now_ms < s.last_ms + STALE_MS && self.conns.contains_key(&s.conn);
            if held {
                return self.push_answer(conn, Answer::Ready(frame(&[])));
            }
            if s.conn != conn {
                self.end_session(s.conn);
            }
        }
        let Some(s) = self.journal.recon.session.as_mut() else {
            return self.open_session(now_ms, conn, msg);
        };
        s.last_ms = now_ms;
        let Some(responder) = s.responder.as_mut() else {
            let detail = "a reconciliation message before the last was answered";
            return self.fail(conn, status::BAD_REQUEST, tcp::CMD_RECONCILE, detail);
        };
        match responder.answer(msg) {
            Ok(ans) => self.push_answer(conn, Answer::Ready(frame(&ans))),
            Err(e) => {
                self.end_session(conn);
                let detail = format!("malformed command: {e}");
                self.fail(conn, status::BAD_REQUEST, tcp::CMD_RECONCILE, &detail);
            }
        }
    }

    /// Starts answering `conn`'s reconciliation: our ids are read after every write
    /// accepted so far, then `msg` is answered.
    fn open_session(&mut self, now_ms: u64, conn: ConnId, msg: &[u8]) {
        let cached = self.cached_ids();
        let tag = self.out.tag();
        if cached.is_none() {
            self.flush_batch();
            self.reads.ids_reads.insert(tag, IdsFor::Session(conn));
            self.out.request(StoreRequest::Ids { tag });
        }
        self.journal.recon.session = Some(Session {
            conn,
            responder: None,
            pending: Some(msg.to_vec()),
            tag,
            last_ms: now_ms,
        });
        self.push_answer(conn, Answer::Reconcile { tag });
        if let Some(items) = cached {
            self.respond_first(now_ms, conn, tag, &items);
        }
    }

    /// Our ids for the reconciliation we answer on `conn`: answer its first message (busy,
    /// should that reconciliation have been given up meanwhile).
    fn respond_first(&mut self, now_ms: u64, conn: ConnId, tag: u64, items: &[Item]) {
        let Some(s) = self
            .journal
            .recon
            .session
            .as_mut()
            .filter(|s| s.conn == conn && s.tag == tag)
        else {
            return self.fill_first(conn, tag, Answer::Ready(frame(&[])));
        };
        s.last_ms = now_ms;
        let answer = Responder::new(items).and_then(|mut r| {
            let first = s.pending.take().unwrap_or_default();
            let ans = r.answer(&first);
            s.responder = Some(r);
            ans
        });
        let filled = match answer {
            Ok(ans) => Answer::Ready(frame(&ans)),
            Err(e) => {
                self.stats.errors += 1;
                self.journal.recon.session = None;
                let detail = format!("malformed command: {e}");
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.input.refused = true;
                    c.input.buf.clear();
                }
                Answer::Refusal(status_bytes(
                    status::BAD_REQUEST,
                    tcp::CMD_RECONCILE,
                    &detail,
                ))
            }
        };
        self.fill_first(conn, tag, filled);
    }

    /// Puts `filled` in place of the answer to the first message (`tag`) on `conn`.
    fn fill_first(&mut self, conn: ConnId, tag: u64, filled: Answer) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(a) = c
                .answers
                .iter_mut()
                .find(|a| matches!(a, Answer::Reconcile { tag: t } if *t == tag))
            {
                *a = filled;
            }
        }
        self.pump(conn);
    }

    /// The reconciliation we answer on `conn` ends (its JournalMark came, it closed, or
    /// it was refused).
    pub(super) fn end_session(&mut self, conn: ConnId) {
        if self
            .journal
            .recon
            .session
            .as_ref()
            .is_some_and(|s| s.conn == conn)
        {
            self.journal.recon.session = None;
        }
    }
}
