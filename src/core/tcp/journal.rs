//! Journals (docs/PROTOCOL.md §8.10): ours pushed on the links this server opened (the
//! peer's cursor, pages of lines, a full push when the cursor is gone, live pushes), and
//! peers' journals received on connections they opened (cursor queries, lines held to drop
//! copies, JournalSince answers).

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
