//! The durable store of the TCP plane behind a small trait: contacts (last-writer-wins by
//! Lamport clock), the server's Lamport clock, the journal of changes, each peer's journal
//! cursor and the node list. Two implementations: SQLite in the data directory (durable,
//! the default) and RAM only (`--memory-only`). Source: docs/PROTOCOL.md §8.8 (durability),
//! §8.9 (Lamport clock and last-writer-wins), §8.10 (journal and cursors).
//!
//! Layering: the store never imports `crate::core`. The TCP core speaks to it only through
//! this module's API: it sends [`StoreRequest`]s and receives [`StoreEvent`]s, built of
//! [`Contact`], [`Write`] and [`JournalRead`]. One [`Executor`] carries the requests out on a
//! [`Store`]; the store thread (`store::thread`) is a loop around it, so an fsync never
//! stalls the event loop, and tests drive the same executor synchronously.
//!
//! The journal: every [`Write::Merge`] that altered state appends one [`JournalEntry`] with
//! the next line number (lines start at 1 and increase by one), in the same transaction as
//! the change, so after a crash the journal and the contacts never disagree. Clock and
//! cursor writes are not journaled. The journal has a random non-zero id
//! ([`Store::journal_id`]) made when the store is created, so a cursor `(journal id, line)`
//! held by a peer tells a reset journal apart. Only the newest `keep` lines are retained
//! ([`DEFAULT_JOURNAL_KEEP`] unless configured); [`Store::journal_since`] answers "since N,
//! limit L" with [`JournalRead::Gone`] for a line no longer held and [`JournalRead::Beyond`]
//! for a line the journal never had (the peer falls back to a full AskForUpdate; 404 on the
//! wire). A receiver records what a peer's journal delivered with [`Write::Cursor`] in the
//! same batch as the merges it delivered, and reads it back with [`Store::cursor`].

mod executor;
mod request;
#[cfg(feature = "net")]
pub mod thread;

/// Width of a username or contact name, bytes (docs/PROTOCOL.md §8.1).
pub const NAME_LEN: usize = crate::wire::name::NAME_LEN;
/// Width of a phone number, bytes (docs/PROTOCOL.md §8.1).
pub const PHONE_LEN: usize = crate::wire::name::PHONE_LEN;

/// One contact record: `(username, contactname) -> phone`, stamped with a Lamport clock.
/// Text fields are UTF-8 without NUL bytes, at most 256 / 256 / 20 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Contact {
    /// The owner's name (at most 256 bytes).
    pub username: String,
    /// The contact's name (at most 256 bytes).
    pub contact: String,
    /// The phone number (at most 20 bytes).
    pub phone: String,
    /// Lamport clock of the write that set it.
    pub clock: u32,
}

impl Contact {
    /// Last-writer-wins (docs/PROTOCOL.md §8.9): true when `self` replaces `old` for the
    /// same key: the higher clock wins; on equal clocks the bytewise larger phone field (as
    /// the 20-byte NUL-padded field compares, which is the same as comparing the text
    /// bytewise) wins. Equal records do not replace each other (no change).
    pub fn wins_over(&self, old: &Contact) -> bool {
        (self.clock, self.phone.as_bytes()) > (old.clock, old.phone.as_bytes())
    }
}

/// Lines kept in the journal unless configured otherwise
/// (`SqliteStore::open`, [`MemoryStore::new`]).
pub const DEFAULT_JOURNAL_KEEP: u64 = 1_000_000;
/// The most entries one [`Store::journal_since`] returns, whatever limit was asked: a huge
/// limit never allocates unboundedly (the answer then says `more`).
pub const JOURNAL_READ_CAP: u32 = 10_000;

/// One journal line (docs/PROTOCOL.md §8.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The line number: 1 for the first change, then one more per change.
    pub line: u64,
    /// What changed.
    pub change: Change,
}

/// What a journal line records (room for node-list changes next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A contact was merged and altered state: the record as stored after the change.
    Contact(Contact),
}

/// The answer to "since N, limit L" ([`Store::journal_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalRead {
    /// The entries after `since` were appended to `out` (at most `limit`, at most
    /// [`JOURNAL_READ_CAP`]); `more` when further lines exist after the last one appended.
    Entries {
        /// Lines after the last one appended exist.
        more: bool,
    },
    /// `since` is older than what the journal still holds (trimmed): the asker must fall
    /// back to a full sync (404 on the wire).
    Gone,
    /// `since` is beyond the journal's last line (e.g. a cursor of another, reset journal):
    /// 404 too.
    Beyond,
}

/// A failure of the store (I/O, corruption, full disk).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("store: {0}")]
    Db(String),
}

/// A write applied by [`Store::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Merge a contact by last-writer-wins: stored only if it wins over the record with the
    /// same key (or there is none).
    Merge(Contact),
    /// Set the persisted Lamport clock (only ever raised).
    Clock(u32),
    /// Record what `peer`'s journal has delivered to us: its journal id and the last line
    /// applied. Put it in the same batch as the merges that line delivered, so the cursor
    /// never runs ahead of (or behind) the data. Replaces the peer's previous cursor.
    Cursor {
        /// The peer's name (its node-list alias).
        peer: String,
        /// The peer's [`Store::journal_id`].
        journal_id: u64,
        /// The last line of that journal applied here.
        line: u64,
    },
    /// Replace the stored node list with this one: its canonical form (count and entries,
    /// `src/federation/nodelist.rs`), at most 3 244 033 bytes. Not a journal line.
    NodeList(Vec<u8>),
}

/// A consistent, read-only view of all contacts at one moment, read page by page in
/// `(username, contact)` bytewise order without holding the whole list in memory.
pub trait Snapshot: Send {
    /// Number of contacts in the snapshot.
    fn count(&self) -> u64;
    /// Appends up to `max` further contacts to `out`; returns false when the snapshot is
    /// exhausted (after this page).
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    fn next_page(&mut self, max: usize, out: &mut Vec<Contact>) -> Result<bool, StoreError>;
    /// As [`Self::next_page`], packed: appends up to `max` further contacts to `out` (two
    /// buffers for the whole page, no allocation per contact: what streamed answers read).
    /// The default packs what [`Self::next_page`] returns; both stores read packed directly.
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    fn next_packed(&mut self, max: usize, out: &mut ContactPage) -> Result<bool, StoreError> {
        let mut page = Vec::new();
        let more = self.next_page(max, &mut page)?;
        for c in &page {
            out.push_contact(c);
        }
        Ok(more)
    }
}

/// Contacts, the Lamport clock, the journal and peers' journal cursors.
pub trait Store: Send {
    /// Applies `batch` atomically and durably (one transaction; synced before returning in
    /// the durable implementation). For each `Merge`, in order, pushes to `changed` whether
    /// it altered state, and appends one journal line for each that did, in the same
    /// transaction; then trims the journal to the newest `keep` lines.
    ///
    /// # Errors
    /// [`StoreError`]; then nothing of the batch is applied.
    fn apply(&mut self, batch: &[Write], changed: &mut Vec<bool>) -> Result<(), StoreError>;
    /// The persisted Lamport clock (0 for a new store).
    ///
    /// # Errors
    /// [`StoreError`].
    fn clock(&self) -> Result<u32, StoreError>;
    /// One contact by key.
    ///
    /// # Errors
    /// [`StoreError`].
    fn get(&self, username: &str, contact: &str) -> Result<Option<Contact>, StoreError>;
    /// A consistent snapshot of all contacts (writes applied later are not seen by it).
    ///
    /// # Errors
    /// [`StoreError`].
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError>;
    /// A consistent snapshot of the contacts whose username is `owner` (an authenticated
    /// client's own list, docs/PROTOCOL.md §8.18), in contact-name order; its count is
    /// theirs alone.
    ///
    /// # Errors
    /// [`StoreError`].
    fn snapshot_of(&self, owner: &str) -> Result<Box<dyn Snapshot>, StoreError>;
    /// The journal's id: random, non-zero, made when the store was created (kept across
    /// restarts by the durable store; new for every RAM-only store).
    ///
    /// # Errors
    /// [`StoreError`].
    fn journal_id(&self) -> Result<u64, StoreError>;
    /// The journal's last line number; 0 for a journal that never had a line (lines start
    /// at 1). Trimming does not lower it.
    ///
    /// # Errors
    /// [`StoreError`].
    fn journal_head(&self) -> Result<u64, StoreError>;
    /// "Since `since`, limit `limit`" (docs/PROTOCOL.md §8.4, JournalSince): appends to `out` the entries with lines
    /// `since + 1 ..`, in order, at most `limit` and at most [`JOURNAL_READ_CAP`] of them.
    /// `since == head` gives `Entries { more: false }` and nothing; `limit == 0` gives
    /// `Entries { more: since < head }` and nothing; `since` older than the oldest retained
    /// line minus one gives [`JournalRead::Gone`], `since > head` [`JournalRead::Beyond`],
    /// both appending nothing.
    ///
    /// # Errors
    /// [`StoreError`]; `out` may then hold part of the answer.
    fn journal_since(
        &self,
        since: u64,
        limit: u32,
        out: &mut Vec<JournalEntry>,
    ) -> Result<JournalRead, StoreError>;
    /// The cursor last recorded for `peer` by [`Write::Cursor`]: `(journal id, line)`.
    ///
    /// # Errors
    /// [`StoreError`].
    fn cursor(&self, peer: &str) -> Result<Option<(u64, u64)>, StoreError>;
    /// The node list last stored with [`Write::NodeList`] (its canonical bytes), empty when
    /// none was.
    ///
    /// # Errors
    /// [`StoreError`].
    fn node_list(&self) -> Result<Vec<u8>, StoreError>;
}

/// A new journal id: a random non-zero u64 from the system's CSPRNG (ring's
/// `SystemRandom`), or, should that fail, from std's randomly seeded hasher.
pub(crate) fn new_journal_id() -> u64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let rng = SystemRandom::new();
    loop {
        let mut bytes = [0u8; 8];
        let id = match rng.fill(&mut bytes) {
            Ok(()) => u64::from_be_bytes(bytes),
            Err(_) => {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                h.finish()
            }
        };
        if id != 0 {
            return id;
        }
    }
}

/// Where "since `since`, limit `limit`" starts and how many entries it returns, for a
/// journal holding lines `first ..= head` (`first == head + 1` when it holds none):
/// `Err(answer)` when nothing is to be read, else `Ok((count, more))`. Shared by both stores
/// so they answer alike.
pub(crate) fn journal_window(
    since: u64,
    limit: u32,
    first: u64,
    head: u64,
) -> Result<(u64, bool), JournalRead> {
    if since > head {
        return Err(JournalRead::Beyond);
    }
    if since.saturating_add(1) < first {
        return Err(JournalRead::Gone);
    }
    let left = head - since;
    let count = left.min(u64::from(limit.min(JOURNAL_READ_CAP)));
    Ok((count, count < left))
}

pub mod memory;
mod page;
#[cfg(feature = "net")]
pub mod sqlite;

pub use executor::Executor;
pub use memory::MemoryStore;
pub use page::{ContactPage, ContactRef};
pub use request::{IdFilter, StoreEvent, StoreRequest};
#[cfg(feature = "net")]
pub use sqlite::SqliteStore;
