//! The peer's answers on links this server opened (docs/PROTOCOL.md §8.7, §8.10): read with
//! the answer codec ([`crate::wire::tcp::answer`]) in the order asked (`Conn::due`) and
//! handed to the part that asked. Anything the opener did not ask for, a malformed piece,
//! or a refusal drops the link (it is redialled).

use super::conn::status_detail;
use super::{ConnId, TcpAction, TcpCore};
use crate::wire::tcp::answer::{AnswerPiece, Outcome, Piece};
use crate::wire::tcp::nodelist::{self, NodeListFrame};
use crate::wire::tcp::NONCE_LEN;

/// One answer piece, copied out of the input buffer so that it can be consumed before the
/// part that asked acts on it.
enum LinkAnswer {
    /// AuthChallenge's nonce: prove our node key, then send the link's opening requests.
    Nonce([u8; NONCE_LEN]),
    /// CursorQuery's answer: push our journal from this line.
    Cursor(u64),
    /// HeartBeat's answer: the peer's clock, or `None` when it took ours.
    Clock(Option<u32>),
    /// A 200 to a Barrier (or AuthProof): confirms our journal up to this line (0: none).
    Ok { confirms: u64 },
    /// The peer's node-list hash.
    NodeHash([u8; nodelist::HASH_LEN]),
    /// The peer's node-list diff frame.
    NodeDiff(Vec<u8>),
    /// A DirRecord body of a DirRequest's answer, for the UDP plane.
    DirRecord(Vec<u8>),
    /// The end of a DirRequest's answer.
    DirEnd,
    /// A Reconcile's answer: the peer's message (empty: busy).
    Reconcile(Vec<u8>),
    /// A refusal, a malformed piece or a piece nobody asked for: drop the link.
    Drop(String),
}

impl LinkAnswer {
    fn of(p: &Piece<'_, u64>) -> LinkAnswer {
        match (&p.piece, &p.outcome) {
            (_, Outcome::Refused) => {
                LinkAnswer::Drop(format!("peer refused: {}", describe(&p.piece)))
            }
            (AnswerPiece::Nonce(n), _) => LinkAnswer::Nonce(**n),
            (AnswerPiece::Cursor(line), _) => LinkAnswer::Cursor(*line),
            (AnswerPiece::UpdateClock(c), _) => LinkAnswer::Clock(Some(*c)),
            (AnswerPiece::NoUpdateClock, _) => LinkAnswer::Clock(None),
            (AnswerPiece::Status(_), Outcome::Answered(confirms)) => LinkAnswer::Ok {
                confirms: *confirms,
            },
            (AnswerPiece::NodeListHash(h), _) => LinkAnswer::NodeHash(**h),
            (AnswerPiece::NodeListDiff(frame), _) => LinkAnswer::NodeDiff(frame.to_vec()),
            (AnswerPiece::DirRecord(body), _) => LinkAnswer::DirRecord(body.to_vec()),
            (AnswerPiece::DirEnd(_), _) => LinkAnswer::DirEnd,
            (AnswerPiece::Reconcile(m), _) => LinkAnswer::Reconcile(m.to_vec()),
            (other, _) => LinkAnswer::Drop(format!("unexpected answer: {}", describe(other))),
        }
    }
}

fn describe(piece: &AnswerPiece<'_>) -> String {
    match piece {
        AnswerPiece::Status(f) => format!("{} {}", f.status, f.detail),
        AnswerPiece::Malformed { kind, error } => format!("malformed {}: {error}", kind.name()),
        other => other.kind().name().to_string(),
    }
}

impl TcpCore {
    /// Reads one answer piece on link `conn` and acts on it; false when more bytes are
    /// needed (or the link was closed for a protocol error).
    pub(super) fn parse_answer(&mut self, now_ms: u64, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.input.buf.is_empty() {
            return false;
        }
        let (answer, len) = match c.due.read(&c.input.buf) {
            Ok(None) => return false,
            Ok(Some(p)) => (LinkAnswer::of(&p), p.len),
            // The acceptor speaks only when asked, in order: anything else is a protocol
            // error (or its status frame before it closes).
            Err(e) => (
                LinkAnswer::Drop(format!("{e}: {}", status_detail(&c.input.buf))),
                0,
            ),
        };
        c.input.buf.drain(..len);
        self.on_answer(now_ms, conn, answer)
    }

    /// Hands one answer to the part that asked; false when the link was dropped.
    fn on_answer(&mut self, now_ms: u64, conn: ConnId, answer: LinkAnswer) -> bool {
        let link = self.conns.get(&conn).and_then(|c| c.link);
        match answer {
            LinkAnswer::Nonce(nonce) => {
                if let Some(peer) = link {
                    self.send_proof(now_ms, peer, conn, &nonce);
                }
            }
            LinkAnswer::Cursor(line) => {
                if let Some(i) = link {
                    self.start_journal_push(i, line);
                }
            }
            LinkAnswer::Clock(clock) => self.peer_clock(link, clock),
            LinkAnswer::Ok { confirms } => {
                if let Some(l) = link.and_then(|i| self.links.get_mut(i)) {
                    l.last_heartbeat_ms = Some(now_ms);
                    l.journal.confirmed_line = l.journal.confirmed_line.max(confirms);
                }
            }
            LinkAnswer::NodeHash(h) => {
                if let Some(i) = link {
                    self.peer_node_hash(i, conn, &h);
                }
            }
            LinkAnswer::NodeDiff(frame) => return self.peer_node_diff(now_ms, conn, &frame),
            LinkAnswer::DirRecord(body) => {
                self.stats.dir_records_in += 1;
                self.out
                    .actions
                    .push_back(TcpAction::PeerRecord { conn, body });
            }
            LinkAnswer::DirEnd => {}
            LinkAnswer::Reconcile(msg) => return self.reconcile_answer(now_ms, conn, &msg),
            LinkAnswer::Drop(why) => {
                let peer = self.conns.get(&conn).map(|c| c.addr);
                tracing::warn!(?peer, why, "closing the link");
                self.close_link(conn, "an answer it sent was refused");
                return false;
            }
        }
        true
    }

    /// HeartBeat's answer: the peer's clock (observed when plausible), or nothing (the peer
    /// took ours; the barrier's status frame follows).
    fn peer_clock(&mut self, link: Option<usize>, clock: Option<u32>) {
        let Some(v) = clock else {
            return;
        };
        if let Some(l) = link.and_then(|i| self.links.get_mut(i)) {
            l.peer_clock = v;
        }
        if self.clock.plausible(v) {
            self.clock.observe(v);
        }
    }

    /// The peer's node-list diff, answering our list: merged unless malformed (then the
    /// link is dropped).
    fn peer_node_diff(&mut self, now_ms: u64, conn: ConnId, frame: &[u8]) -> bool {
        match NodeListFrame::parse(frame) {
            Ok(NodeListFrame::Diff(entries)) if !nodelist::has_duplicate_uids(&entries) => {
                self.merge_nodes(now_ms, entries);
                true
            }
            _ => self.on_answer(
                now_ms,
                conn,
                LinkAnswer::Drop("malformed node list answer".into()),
            ),
        }
    }
}
