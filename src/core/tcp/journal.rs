//! Journals (docs/PROTOCOL.md §8.10): ours pushed on the links this server opened (the
//! peer's cursor, pages of lines, a full push when the cursor is gone, live pushes), and
//! peers' journals received on connections they opened (cursor queries, lines held to drop
//! copies, JournalSince answers).

use super::config::TcpConfig;
use super::conn::{Output, PumpCtx, PushRoom, Step};
use super::links::LinkState;
use super::{StoreRequest, TcpAction, TcpCore};
use crate::store::Contact;
use crate::wire::tcp::{self, ContactFields, ServerCommand};
use std::collections::{BTreeMap, HashMap};

/// Our journal, and what we hold of peers' journals.
#[derive(Debug, Default)]
pub(super) struct Journal {
    /// Our journal's id.
    pub(super) id: u64,
    /// Our journal's last line, as the store has it (lines are made in the order the store
    /// applies changed merges, so the core numbers them the same way).
    pub(super) head: u64,
    /// Per peer journal id: the highest line applied from it (to drop copies); at most
    /// 1024 journals.
    pub(super) lines_held: HashMap<u64, u64>,
    /// Per peer name (its hello name): journal lines and full-push records received on
    /// connections it opened, since start; at most 1024 names.
    pub(super) received: BTreeMap<String, (u64, u64)>,
}

/// Where a link this server opened stands in pushing our journal to its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not connected, or waiting for the peer's cursor.
    AwaitCursor,
    /// Sending journal lines after `since`; `asked` when a page is on its way.
    Paging { since: u64, asked: bool },
    /// The journal no longer holds the peer's cursor: pushing a whole snapshot; `mark` is
    /// our journal head when it was taken.
    FullPush { mark: Option<u64> },
    /// Caught up: every new line is pushed as it is made.
    Live,
}

/// A link's push of our journal.
#[derive(Debug)]
pub(super) struct LinkJournal {
    /// Where the push stands.
    pub(super) phase: Phase,
    /// Last journal line written to the link.
    pub(super) pushed_line: u64,
    /// The last line the peer confirmed durable (a heartbeat barrier's 200 after it).
    pub(super) confirmed_line: u64,
    /// Journal lines sent on this link since the server started.
    pub(super) entries_sent: u64,
    /// Snapshot records (full pushes) sent on this link since the server started.
    pub(super) records_sent: u64,
}

impl LinkJournal {
    /// A link that has pushed nothing.
    pub(super) fn new() -> Self {
        LinkJournal {
            phase: Phase::AwaitCursor,
            pushed_line: 0,
            confirmed_line: 0,
            entries_sent: 0,
            records_sent: 0,
        }
    }
}

impl TcpCore {
    /// Pushes journal line `line` on every link that is live (caught up).
    pub(super) fn push_live(&mut self, line: u64, contact: &Contact) {
        let Some(rec) = journal_frame(line, contact) else {
            return;
        };
        let mut overfull = Vec::new();
        for l in &mut self.links {
            if l.journal.phase != Phase::Live {
                continue;
            }
            let LinkState::Up { conn, .. } = l.state else {
                continue;
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            match c.push_room(self.cfg.max_out) {
                PushRoom::Refused => {}
                PushRoom::Overfull => overfull.push(conn),
                PushRoom::Room => {
                    c.out.extend_from_slice(&rec);
                    l.journal.pushed_line = line;
                    l.journal.entries_sent += 1;
                }
            }
        }
        // A peer that does not keep up is dropped; it catches up from its cursor.
        for conn in overfull {
            tracing::info!(
                conn,
                "a peer link is more than 2 MiB behind; dropping it to resume from its cursor"
            );
            self.out.actions.push_back(TcpAction::Close(conn));
        }
    }

    /// Asks the store for the next page of our journal for link `i`, if its output has room.
    pub(super) fn next_page(&mut self, i: usize) {
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        let Phase::Paging {
            since,
            asked: false,
        } = l.journal.phase
        else {
            return;
        };
        if self.link_room(i).is_none() {
            return; // resumed from `consumed` when the peer reads
        }
        let l = &mut self.links[i];
        l.journal.phase = Phase::Paging { since, asked: true };
        let tag = self.out.tag();
        self.reads.page_reads.insert(tag, i);
        self.out.requests.push(StoreRequest::JournalPage {
            tag,
            since,
            limit: page_limit(&self.cfg),
        });
    }

    /// A full push's snapshot is open (`stream`, `count` records): it holds every line up
    /// to our head now (the store answers in order, after every earlier batch), the line
    /// its JournalMark will carry.
    pub(super) fn note_full_push(&mut self, stream: u64, count: u64) {
        let Some(i) = self.reads.push_streams.remove(&stream) else {
            return;
        };
        if let Some(l) = self.links.get_mut(i) {
            l.journal.phase = Phase::FullPush {
                mark: Some(self.journal.head),
            };
            l.journal.records_sent += count;
        }
    }
}

/// The JournalMark after a full push on link `i` (once its snapshot is taken): the peer
/// holds our journal up to the mark; then the lines since are paged.
pub(super) fn write_mark(i: usize, out: &mut Output, ctx: &mut PumpCtx<'_>) -> Step {
    let Some(l) = ctx.links.get_mut(i) else {
        return Step::Done;
    };
    let Phase::FullPush { mark: Some(mark) } = l.journal.phase else {
        return Step::Wait; // the snapshot is not taken yet
    };
    out.push(tcp::CMD_JOURNAL_MARK);
    out.extend_from_slice(&mark.to_be_bytes());
    l.journal.pushed_line = mark;
    l.journal.phase = Phase::Paging {
        since: mark,
        asked: true,
    };
    let tag = ctx.out.tag();
    ctx.reads.page_reads.insert(tag, i);
    ctx.out.requests.push(StoreRequest::JournalPage {
        tag,
        since: mark,
        limit: page_limit(ctx.cfg),
    });
    Step::Done
}

/// Journal lines asked per store read: the configured page.
fn page_limit(cfg: &TcpConfig) -> u32 {
    u32::try_from(cfg.page).unwrap_or(u32::MAX)
}

/// A JournalUpdate frame (13) for `line`; `None` if the contact does not fit the wire.
pub(super) fn journal_frame(line: u64, contact: &Contact) -> Option<Vec<u8>> {
    let cmd = ServerCommand::JournalUpdate {
        line,
        clock: contact.clock,
        fields: ContactFields {
            username: &contact.username,
            contact: &contact.contact,
            phone: &contact.phone,
        },
    };
    let mut buf = vec![0u8; cmd.buffer_len()];
    cmd.emit(&mut buf).ok()?;
    Some(buf)
}

/// The cursor key under which we keep how much of journal `id` we hold.
pub(super) fn cursor_key(id: u64) -> String {
    format!("journal:{id:016x}")
}
