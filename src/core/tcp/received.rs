//! Peers' journals received on connections they opened (docs/PROTOCOL.md §8.10): the
//! CursorQuery answer (how much of a peer's journal we hold), JournalUpdate and JournalMark
//! with their cursors written in the same batch, copies dropped by line number, and what
//! each peer has sent us (for `status`).

use super::conn::Answer;
use super::contacts::to_contact;
use super::journal::{cursor_key, Journal};
use super::{ConnId, StoreRequest, TcpAction, TcpCore};
use crate::store::Write;
use crate::wire::status;
use crate::wire::tcp::{self, ContactFields};

/// Peer journals tracked for copies, and peer names counted in `received_from`
/// (docs/PROTOCOL.md §8.11).
const MAX_TRACKED: usize = 1024;

impl Journal {
    /// Notes that we hold peer journal `id` up to `line` (the highest line applied or
    /// recorded; at most 1024 journals are tracked, the rest are merged unchecked).
    pub(super) fn note_line(&mut self, id: u64, line: u64) {
        if !self.lines_held.contains_key(&id) && self.lines_held.len() >= MAX_TRACKED {
            return;
        }
        let held = self.lines_held.entry(id).or_insert(0);
        *held = (*held).max(line);
    }

    /// True when line `line` of peer journal `id` is at or below the highest applied: a
    /// copy (lines of one journal come in order).
    fn is_copy(&self, id: u64, line: u64) -> bool {
        self.lines_held.get(&id).is_some_and(|&held| line <= held)
    }

    /// Counts a journal line (`line`) or a full-push record received from the peer named
    /// `name` (its hello name; for `status`: what catching up cost).
    pub(super) fn count_received(&mut self, name: &str, line: bool) {
        // A name is allocated once, when first seen, not for every line.
        if !self.received.contains_key(name) {
            if self.received.len() >= MAX_TRACKED {
                return;
            }
            self.received.insert(name.to_string(), (0, 0));
        }
        let Some(e) = self.received.get_mut(name) else {
            return;
        };
        if line {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
}

impl TcpCore {
    /// Counts a journal line (`line`) or a full-push record received on `conn`.
    pub(super) fn count_received(&mut self, conn: ConnId, line: bool) {
        if let Some(c) = self.conns.get(&conn) {
            self.journal.count_received(&c.name, line);
        }
    }

    /// CursorQuery (14): the line of the peer's journal `journal_id` we hold, read from the
    /// store after every write before it.
    pub(super) fn cursor_query(&mut self, now_ms: u64, conn: ConnId, journal_id: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer_journal = Some(journal_id);
        }
        self.close_stale(now_ms, conn, journal_id);
        self.flush_batch();
        let tag = self.out.tag();
        self.reads.cursor_reads.insert(tag, conn);
        self.out.request(StoreRequest::Cursor {
            tag,
            peer: cursor_key(journal_id),
        });
        self.push_answer(conn, Answer::Cursor { tag, line: None });
    }

    /// The peer opened a new link for `journal_id` on `conn`: an older connection of its
    /// that has been silent for two heartbeats (dead on its side, e.g. dropped in a
    /// partition) must not deliver retransmitted lines after this cursor is read, or they
    /// would come twice. A live one (heartbeats) is left alone.
    fn close_stale(&mut self, now_ms: u64, conn: ConnId, journal_id: u64) {
        let quiet = 2 * self.cfg.timers.heartbeat_ms;
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(&id, c)| {
                id != conn
                    && c.link.is_none()
                    && c.peer_journal == Some(journal_id)
                    && now_ms.saturating_sub(c.input.last_in_ms) >= quiet
            })
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            tracing::info!(
                conn = id,
                "closing a peer's older connection for the same journal"
            );
            if let Some(c) = self.conns.get_mut(&id) {
                c.input.refused = true;
                c.input.buf.clear();
            }
            self.drop_answers(id);
            self.out.actions.push_back(TcpAction::Close(id));
        }
    }

    /// The cursor read for `tag`: the CursorQuery's answer `[14][line u64]` goes out in its
    /// turn, and the line counts as held.
    pub(super) fn on_cursor(&mut self, tag: u64, line: u64) {
        let Some(conn) = self.reads.cursor_reads.remove(&tag) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            for a in c.answers.iter_mut() {
                if let Answer::Cursor { tag: t, line: l } = a {
                    if *t == tag {
                        *l = Some(line);
                    }
                }
            }
            if let Some(id) = c.peer_journal {
                self.journal.note_line(id, line);
            }
        }
        self.pump(conn);
    }

    /// The journal `conn`'s peer pushes from; without a CursorQuery first, 400 for command
    /// `cmd` and `None`.
    fn peer_journal_of(&mut self, conn: ConnId, cmd: u8, what: &str) -> Option<u64> {
        let id = self.conns.get(&conn).and_then(|c| c.peer_journal);
        if id.is_none() {
            self.fail(
                conn,
                status::BAD_REQUEST,
                cmd,
                &format!("{what} before a cursor query"),
            );
        }
        id
    }

    /// JournalUpdate (13): merged, with the cursor in the same batch; a copy of a line
    /// already applied is dropped.
    pub(super) fn journal_update(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        line: u64,
        clock: u32,
        fields: &ContactFields<'_>,
    ) {
        let cmd = tcp::CMD_JOURNAL_UPDATE;
        let Some(id) = self.peer_journal_of(conn, cmd, "journal update") else {
            return;
        };
        if !self.accept_clock(now_ms, conn, cmd, clock) {
            return;
        }
        if self.journal.is_copy(id, line) {
            // Already applied, from another connection of the same peer (an old one still
            // delivering after a partition healed while the new one resent from the
            // cursor).
            self.stats.duplicate_lines += 1;
            return;
        }
        self.journal.note_line(id, line);
        self.clock.observe(clock);
        let from = self.conns.get(&conn).and_then(|c| c.auth.uid);
        self.batch.merge(to_contact(fields, clock), from);
        self.batch.writes.push(Write::Cursor {
            peer: cursor_key(id),
            journal_id: id,
            line,
        });
        self.stats.peer_updates += 1;
        self.count_received(conn, true);
    }

    /// JournalMark (15): we hold the peer's journal up to `line`; its first catch-up is
    /// over.
    pub(super) fn journal_mark(&mut self, conn: ConnId, line: u64) {
        let Some(id) = self.peer_journal_of(conn, tcp::CMD_JOURNAL_MARK, "journal mark") else {
            return;
        };
        self.batch.writes.push(Write::Cursor {
            peer: cursor_key(id),
            journal_id: id,
            line,
        });
        self.journal.note_line(id, line);
        self.clock.catching_up = false;
    }
}
