//! The store's request API: what the TCP core asks of the store ([`StoreRequest`]) and what
//! the store reports back ([`StoreEvent`]), carried out in the order issued by one
//! [`super::Executor`] (docs/PROTOCOL.md §8.8). Plain data: no I/O, no core types.

use super::{Contact, ContactPage, JournalRead, Write};
use crate::federation::reconcile::{Item, RecordId};
use std::collections::HashSet;
use std::sync::Arc;

/// The record ids a filtered snapshot keeps (docs/PROTOCOL.md §8.20): shared, not copied,
/// between the core and the store thread; its `Debug` shows only its size.
#[derive(Clone, PartialEq, Eq)]
pub struct IdFilter(pub Arc<HashSet<RecordId>>);

impl std::fmt::Debug for IdFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdFilter({} ids)", self.0.len())
    }
}

/// A request for the store, carried out in the order issued (docs/PROTOCOL.md §8.8): a
/// snapshot, barrier or read queued behind a write batch runs only after that batch
/// committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRequest {
    /// Apply a batch atomically and durably ([`super::Store::apply`]).
    Apply {
        /// Increasing batch number, echoed back.
        seq: u64,
        /// The writes, in order.
        batch: Vec<Write>,
    },
    /// Answer [`StoreEvent::BarrierDone`] (everything before is durable).
    Barrier {
        /// Echoed back.
        tag: u64,
    },
    /// Open a consistent snapshot for a streamed answer (ListAll, AskForUpdate, a full
    /// push; docs/PROTOCOL.md §8.5).
    Snapshot {
        /// Stream id, echoed back.
        stream: u64,
        /// Only the contacts of this username (an authenticated client's ListAll,
        /// docs/PROTOCOL.md §8.18); `None`: every contact.
        owner: Option<String>,
    },
    /// Open a consistent snapshot of every contact whose record id is in `only`, for a
    /// push after a reconciliation (docs/PROTOCOL.md §8.20); answered and paged as
    /// [`StoreRequest::Snapshot`], its count being the filter's size.
    FilteredSnapshot {
        /// Stream id, echoed back.
        stream: u64,
        /// The ids to keep.
        only: IdFilter,
    },
    /// List every contact's Lamport clock and record id from one snapshot, for a
    /// reconciliation (docs/PROTOCOL.md §8.20): answered with [`StoreEvent::Ids`]. About
    /// 36 bytes a contact while the list is held.
    Ids {
        /// Echoed back.
        tag: u64,
    },
    /// Read the next page of a stream's snapshot.
    NextPage {
        /// Stream id.
        stream: u64,
        /// Most contacts to return.
        max: usize,
    },
    /// Count the contacts and hash their canonical form (SHA-512 over the 536-byte
    /// server-role Update bodies in (username, contact) order) from one snapshot: the
    /// `contacts=` and `contacts_sha512=` of a status answer (docs/PROTOCOL.md §8.5).
    Digest {
        /// Echoed back.
        tag: u64,
    },
    /// Read a peer's cursor for one of our journals ([`super::Store::cursor`]).
    Cursor {
        /// Echoed back.
        tag: u64,
        /// Cursor key: `journal:<journal id in 16 hex digits>`.
        peer: String,
    },
    /// Read our journal's lines after `since`, at most `limit`
    /// ([`super::Store::journal_since`]).
    JournalPage {
        /// Echoed back.
        tag: u64,
        /// The last line the peer holds.
        since: u64,
        /// Most lines to return.
        limit: u32,
    },
    /// Drop a stream's snapshot. Not answered.
    CloseStream {
        /// Stream id.
        stream: u64,
    },
}

impl StoreRequest {
    /// Every value of [`Self::kind`].
    pub const KINDS: [&'static str; 9] = [
        "apply", "barrier", "snapshot", "page", "digest", "cursor", "journal", "close", "ids",
    ];

    /// The request's kind in one word (a metric label value; one of [`Self::KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            StoreRequest::Apply { .. } => "apply",
            StoreRequest::Barrier { .. } => "barrier",
            StoreRequest::Snapshot { .. } | StoreRequest::FilteredSnapshot { .. } => "snapshot",
            StoreRequest::Ids { .. } => "ids",
            StoreRequest::NextPage { .. } => "page",
            StoreRequest::Digest { .. } => "digest",
            StoreRequest::Cursor { .. } => "cursor",
            StoreRequest::JournalPage { .. } => "journal",
            StoreRequest::CloseStream { .. } => "close",
        }
    }
}

/// What the store reports back for a [`StoreRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A batch is durable; `changed[i]` tells whether its i-th merge altered state.
    Applied {
        /// The batch number.
        seq: u64,
        /// Per merge, in order.
        changed: Vec<bool>,
    },
    /// A batch failed (nothing of it applied).
    Failed {
        /// The batch number.
        seq: u64,
        /// The store's message.
        error: String,
    },
    /// Everything before the barrier is durable.
    BarrierDone {
        /// The tag.
        tag: u64,
    },
    /// A snapshot is open.
    SnapshotReady {
        /// Stream id.
        stream: u64,
        /// Contacts in it.
        count: u64,
    },
    /// Contacts of a stream, in (username, contact) bytewise order.
    Page {
        /// Stream id.
        stream: u64,
        /// The contacts, packed.
        contacts: ContactPage,
        /// More pages follow.
        more: bool,
    },
    /// The contacts digest asked for with [`StoreRequest::Digest`].
    Digest {
        /// The tag.
        tag: u64,
        /// Contacts counted.
        count: u64,
        /// SHA-512 of their canonical form (64 bytes).
        sha512: Vec<u8>,
    },
    /// The cursor asked for with [`StoreRequest::Cursor`]: the line held, 0 when none.
    Cursor {
        /// The tag.
        tag: u64,
        /// Line.
        line: u64,
    },
    /// Journal lines asked for with [`StoreRequest::JournalPage`].
    JournalPage {
        /// The tag.
        tag: u64,
        /// `(line, contact)` in line order.
        entries: Vec<(u64, Contact)>,
        /// Entries (with `more`), or the journal no longer holds / never held `since`.
        read: JournalRead,
    },
    /// The record ids asked for with [`StoreRequest::Ids`].
    Ids {
        /// The tag.
        tag: u64,
        /// Every contact's `(clock, record id)`, in (username, contact) order.
        items: Vec<Item>,
    },
    /// A read (stream, digest, cursor, journal page or ids) failed.
    StreamFailed {
        /// Stream id or tag.
        stream: u64,
        /// The store's message.
        error: String,
    },
}
