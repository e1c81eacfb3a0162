//! The answering side of reconciliations (docs/PROTOCOL.md §8.20): one reconciliation of
//! each set at a time, answered from our ids read once it starts; another server's first
//! message meanwhile is answered busy. Stateless between messages but for the index.

use super::{frame, FpMap, IdsFor, Set, StoreRequest, TcpAction, TcpCore};
use crate::core::tcp::conn::{status_bytes, Answer};
use crate::core::tcp::ConnId;
use crate::federation::reconcile::{Item, Responder};
use crate::wire::status;
use crate::wire::tcp;

/// A reconciliation we answer given up after this long without a message from its
/// initiator (ms), so a stalled peer cannot keep the others busy.
const STALE_MS: u64 = 30_000;

/// The reconciliation of one set this server answers.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) conn: ConnId,
    /// `None` until our ids are read.
    responder: Option<Responder>,
    /// The first message, answered once the ids are read.
    pending: Option<Vec<u8>>,
    /// The tag of the ids read, and of the answer waiting for it.
    tag: u64,
    /// When the initiator last sent a message (ms).
    pub(super) last_ms: u64,
    /// The directory: our entries' fingerprints by id, for its DirWant.
    pub(super) fps: Option<FpMap>,
}

impl TcpCore {
    /// When the initiator of the reconciliation of `set` we answer last sent a message
    /// (ms), if we answer one.
    pub(super) fn answering(&self, set: Set) -> Option<u64> {
        self.journal.recon.sessions.get(&set).map(|s| s.last_ms)
    }

    /// The session of `set` we answer on `conn`, if any.
    pub(super) fn session_on(&self, conn: ConnId, set: Set) -> Option<&Session> {
        self.journal
            .recon
            .sessions
            .get(&set)
            .filter(|s| s.conn == conn)
    }

    /// Reconcile (22) from a peer on `conn`, `body` = `[set][message]`: answered from our
    /// ids; busy while we answer another server's of that set; the first message of a
    /// reconciliation waits for our ids.
    pub(in crate::core::tcp) fn reconcile_in(&mut self, now_ms: u64, conn: ConnId, body: &[u8]) {
        let cmd = tcp::CMD_RECONCILE;
        let Some((set, msg)) = body
            .split_first()
            .and_then(|(&b, m)| Some((Set::of(b)?, m)))
        else {
            let detail = "malformed command: a reconciliation names set 1, 2 or 3";
            return self.fail(conn, status::BAD_REQUEST, cmd, detail);
        };
        if set == Set::Nodes {
            return self.answer_nodes(conn, msg);
        }
        if let Some(s) = self.journal.recon.sessions.get(&set) {
            let other = s.conn;
            let held =
                other != conn && now_ms < s.last_ms + STALE_MS && self.conns.contains_key(&other);
            if held {
                return self.push_answer(conn, Answer::Ready(frame(set, &[])));
            }
            if other != conn {
                self.end_session(other, set);
            }
        }
        let Some(s) = self.journal.recon.sessions.get_mut(&set) else {
            return self.open_session(now_ms, (conn, set), msg);
        };
        s.last_ms = now_ms;
        let Some(responder) = s.responder.as_mut() else {
            let detail = "a reconciliation message before the last was answered";
            return self.fail(conn, status::BAD_REQUEST, cmd, detail);
        };
        match responder.answer(msg) {
            Ok(ans) => self.push_answer(conn, Answer::Ready(frame(set, &ans))),
            Err(e) => {
                self.end_session(conn, set);
                let detail = format!("malformed command: {e}");
                self.fail(conn, status::BAD_REQUEST, cmd, &detail);
            }
        }
    }

    /// Starts answering `conn`'s reconciliation of `set`: our ids are read (contacts:
    /// after every write accepted so far), then `msg` is answered.
    fn open_session(&mut self, now_ms: u64, (conn, set): (ConnId, Set), msg: &[u8]) {
        let cached = match set {
            Set::Contacts => self.cached_ids(),
            Set::Directory => None,
            // Answered without a session (`answer_nodes`); were it not, from the list.
            Set::Nodes => Some(std::sync::Arc::new(self.nodes.items())),
        };
        let tag = self.out.tag();
        if cached.is_none() {
            self.reads.ids_reads.insert(tag, IdsFor::Session(conn, set));
            match set {
                Set::Contacts => {
                    self.flush_batch();
                    self.out.request(StoreRequest::Ids { tag });
                }
                Set::Directory => self.out.actions.push_back(TcpAction::DirectoryIds { tag }),
                Set::Nodes => {}
            }
        }
        let session = Session {
            conn,
            responder: None,
            pending: Some(msg.to_vec()),
            tag,
            last_ms: now_ms,
            fps: None,
        };
        self.journal.recon.sessions.insert(set, session);
        self.push_answer(conn, Answer::Reconcile { tag });
        if let Some(items) = cached {
            self.respond_first(now_ms, (conn, set), tag, &items, None);
        }
    }

    /// Our ids for the reconciliation of `set` we answer on `conn`: answer its first
    /// message (busy, should that reconciliation have been given up meanwhile).
    pub(super) fn respond_first(
        &mut self,
        now_ms: u64,
        (conn, set): (ConnId, Set),
        tag: u64,
        items: &[Item],
        fps: Option<FpMap>,
    ) {
        let Some(s) = self
            .journal
            .recon
            .sessions
            .get_mut(&set)
            .filter(|s| s.conn == conn && s.tag == tag)
        else {
            return self.fill_first(conn, tag, Answer::Ready(frame(set, &[])));
        };
        s.last_ms = now_ms;
        s.fps = fps;
        let answer = Responder::new(items).and_then(|mut r| {
            let first = s.pending.take().unwrap_or_default();
            let ans = r.answer(&first);
            s.responder = Some(r);
            ans
        });
        let filled = match answer {
            Ok(ans) => Answer::Ready(frame(set, &ans)),
            Err(e) => {
                self.stats.errors += 1;
                self.journal.recon.sessions.remove(&set);
                let detail = format!("malformed command: {e}");
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.input.refused = true;
                    c.input.buf.clear();
                }
                let code = status::BAD_REQUEST;
                Answer::Refusal(status_bytes(code, tcp::CMD_RECONCILE, &detail))
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

    /// The reconciliation of `set` we answer on `conn` ends (contacts: its JournalMark
    /// came; the directory: its last DirWant; or it closed, or it was refused).
    pub(in crate::core::tcp) fn end_session(&mut self, conn: ConnId, set: Set) {
        if self.session_on(conn, set).is_some() {
            self.journal.recon.sessions.remove(&set);
        }
    }

    /// `conn` closed: every reconciliation we answer on it ends.
    pub(in crate::core::tcp) fn end_sessions(&mut self, conn: ConnId) {
        for set in Set::ALL {
            self.end_session(conn, set);
        }
    }
}
