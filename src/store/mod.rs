//! The durable store of the TCP plane behind a small trait: contacts (last-writer-wins by
//! Lamport clock) and the server's Lamport clock. Two implementations: SQLite in the data
//! directory (durable, the default) and RAM only (`--memory-only`).
//!
//! The store never runs on the event loop: the loop hands it batches through the store
//! thread (see `store::thread`), so an fsync never stalls the UDP plane. Source: BRIEF.md,
//! "TCP plane" and "State"; seed 003.

#[cfg(feature = "net")]
pub mod thread;

/// Width of a username or contact name, bytes (seed 003).
pub const NAME_LEN: usize = crate::wire::name::NAME_LEN;
/// Width of a phone number, bytes (seed 003).
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
    /// Last-writer-wins (BRIEF.md, "Lamport rules"): true when `self` replaces `old` for the
    /// same key: the higher clock wins; on equal clocks the bytewise larger phone field (as
    /// the 20-byte NUL-padded field compares, which is the same as comparing the text
    /// bytewise) wins. Equal records do not replace each other (no change).
    pub fn wins_over(&self, old: &Contact) -> bool {
        (self.clock, self.phone.as_bytes()) > (old.clock, old.phone.as_bytes())
    }
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
}

/// Contacts and the Lamport clock.
pub trait Store: Send {
    /// Applies `batch` atomically and durably (one transaction; synced before returning in
    /// the durable implementation). For each `Merge`, in order, pushes to `changed` whether
    /// it altered state.
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
}

pub mod memory;
#[cfg(feature = "net")]
pub mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "net")]
pub use sqlite::SqliteStore;
