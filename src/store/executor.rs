//! The one request executor: carries out [`StoreRequest`]s on a [`Store`] and its open
//! snapshots, one at a time, in the order given, and says what happened as a
//! [`StoreEvent`] (docs/PROTOCOL.md §8.8). The store thread is a loop around it; tests
//! drive it synchronously. It does no I/O of its own beyond the store's.

use super::request::IdFilter;
use super::{
    Change, ContactPage, ContactRef, Snapshot, Store, StoreError, StoreEvent, StoreRequest,
};
use crate::federation::reconcile::record_id;
use crate::wire::tcp::{emit_server_record, ContactFields, SERVER_RECORD_LEN};
use std::collections::HashMap;

/// Contacts read per page while hashing the status digest.
const DIGEST_PAGE: usize = 4096;

/// Owns a store and the snapshots open for streamed answers (stream id -> snapshot). The
/// snapshots are bounded by the streams the core has open (each an answer waiting on a
/// connection, at most 64 per connection: docs/PROTOCOL.md §8.11); each is dropped at its
/// last page, on a read error, or on [`StoreRequest::CloseStream`].
pub struct Executor {
    store: Box<dyn Store>,
    snapshots: HashMap<u64, Box<dyn Snapshot>>,
    /// The id filters of filtered snapshots (docs/PROTOCOL.md §8.20), by stream id.
    filters: HashMap<u64, IdFilter>,
}

impl Executor {
    /// An executor over `store`, with no snapshot open.
    pub fn new(store: Box<dyn Store>) -> Self {
        Executor {
            store,
            snapshots: HashMap::new(),
            filters: HashMap::new(),
        }
    }

    /// The store (to read it directly, as a test does).
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The store, to write it directly (a test preloading it).
    pub fn store_mut(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    /// Snapshots open now.
    pub fn open_snapshots(&self) -> usize {
        self.snapshots.len()
    }

    /// Carries out one request; `None` for those not answered ([`StoreRequest::CloseStream`],
    /// and [`StoreRequest::NextPage`] of a stream not open). Store errors come back as
    /// [`StoreEvent::Failed`] (a batch) or [`StoreEvent::StreamFailed`] (a read).
    pub fn execute(&mut self, req: StoreRequest) -> Option<StoreEvent> {
        Some(match req {
            StoreRequest::Apply { seq, batch } => {
                let mut changed = Vec::new();
                match self.store.apply(&batch, &mut changed) {
                    Ok(()) => StoreEvent::Applied { seq, changed },
                    Err(e) => StoreEvent::Failed {
                        seq,
                        error: e.to_string(),
                    },
                }
            }
            StoreRequest::Barrier { tag } => StoreEvent::BarrierDone { tag },
            StoreRequest::Snapshot { stream, owner } => self.open(stream, owner.as_deref()),
            StoreRequest::FilteredSnapshot { stream, only } => self.open_filtered(stream, only),
            StoreRequest::Ids { tag } => answer(tag, ids(self.store.as_ref(), tag)),
            StoreRequest::NextPage { stream, max } => return self.next_page(stream, max),
            StoreRequest::Digest { tag } => answer(tag, digest(self.store.as_ref(), tag)),
            StoreRequest::Cursor { tag, peer } => answer(tag, self.cursor(tag, &peer)),
            StoreRequest::JournalPage { tag, since, limit } => {
                answer(tag, self.journal_page(tag, since, limit))
            }
            StoreRequest::CloseStream { stream } => {
                self.snapshots.remove(&stream);
                self.filters.remove(&stream);
                return None;
            }
        })
    }

    /// Opens a snapshot for `stream`: of `owner`'s contacts, or of all.
    fn open(&mut self, stream: u64, owner: Option<&str>) -> StoreEvent {
        let snap = match owner {
            Some(o) => self.store.snapshot_of(o),
            None => self.store.snapshot(),
        };
        match snap {
            Ok(s) => {
                let count = s.count();
                self.snapshots.insert(stream, s);
                StoreEvent::SnapshotReady { stream, count }
            }
            Err(e) => failed(stream, &e),
        }
    }

    /// Opens a snapshot of every contact for `stream` that keeps only the records whose
    /// ids are in `only`; its count is the filter's size.
    fn open_filtered(&mut self, stream: u64, only: IdFilter) -> StoreEvent {
        match self.store.snapshot() {
            Ok(s) => {
                let count = only.0.len() as u64;
                self.snapshots.insert(stream, s);
                self.filters.insert(stream, only);
                StoreEvent::SnapshotReady { stream, count }
            }
            Err(e) => failed(stream, &e),
        }
    }

    /// The next page of `stream`'s snapshot; the snapshot is dropped after its last page
    /// or a read error.
    fn next_page(&mut self, stream: u64, max: usize) -> Option<StoreEvent> {
        let snap = self.snapshots.get_mut(&stream)?;
        // About 100 bytes of text per contact: a guess that saves most regrowth.
        let mut contacts = ContactPage::with_capacity(max, max.saturating_mul(100));
        let read = match self.filters.get(&stream) {
            Some(only) => filtered_page(snap.as_mut(), max, only, &mut contacts),
            None => snap.next_packed(max, &mut contacts),
        };
        Some(match read {
            Ok(more) => {
                if !more {
                    self.snapshots.remove(&stream);
                    self.filters.remove(&stream);
                }
                StoreEvent::Page {
                    stream,
                    contacts,
                    more,
                }
            }
            Err(e) => {
                self.snapshots.remove(&stream);
                self.filters.remove(&stream);
                failed(stream, &e)
            }
        })
    }

    /// The line of our journal `peer` holds (0 when none).
    fn cursor(&self, tag: u64, peer: &str) -> Result<StoreEvent, StoreError> {
        let line = self.store.cursor(peer)?.map_or(0, |(_, line)| line);
        Ok(StoreEvent::Cursor { tag, line })
    }

    /// Our journal's lines after `since`, at most `limit`.
    fn journal_page(&self, tag: u64, since: u64, limit: u32) -> Result<StoreEvent, StoreError> {
        let mut lines = Vec::new();
        let read = self.store.journal_since(since, limit, &mut lines)?;
        let entries = lines
            .into_iter()
            .map(|e| match e.change {
                Change::Contact(c) => (e.line, c),
            })
            .collect();
        Ok(StoreEvent::JournalPage { tag, entries, read })
    }
}

/// The wire fields of a stored contact.
fn fields_of<'a>(c: &ContactRef<'a>) -> ContactFields<'a> {
    ContactFields {
        username: c.username,
        contact: c.contact,
        phone: c.phone,
    }
}

/// Reads `snap` until `max` contacts whose record ids are in `only` are in `out`, or the
/// snapshot ends (returns whether more follow).
fn filtered_page(
    snap: &mut dyn Snapshot,
    max: usize,
    only: &IdFilter,
    out: &mut ContactPage,
) -> Result<bool, StoreError> {
    let mut page = ContactPage::default();
    loop {
        page.clear();
        let more = snap.next_packed(DIGEST_PAGE, &mut page)?;
        for c in page.iter() {
            if only.0.contains(&record_id(c.clock, &fields_of(&c))) {
                out.push(c.username, c.contact, c.phone, c.clock);
            }
        }
        if !more || out.len() >= max {
            return Ok(more);
        }
    }
}

/// Every contact's `(clock, record id)` from one snapshot (docs/PROTOCOL.md §8.20).
fn ids(store: &dyn Store, tag: u64) -> Result<StoreEvent, StoreError> {
    let mut snap = store.snapshot()?;
    let mut items = Vec::with_capacity(usize::try_from(snap.count()).unwrap_or(0));
    let mut page = ContactPage::default();
    loop {
        page.clear();
        let more = snap.next_packed(DIGEST_PAGE, &mut page)?;
        for c in page.iter() {
            items.push((c.clock, record_id(c.clock, &fields_of(&c))));
        }
        if !more {
            return Ok(StoreEvent::Ids { tag, items });
        }
    }
}

/// A read's event, or [`StoreEvent::StreamFailed`] for `tag`.
fn answer(tag: u64, read: Result<StoreEvent, StoreError>) -> StoreEvent {
    read.unwrap_or_else(|e| failed(tag, &e))
}

fn failed(stream: u64, e: &StoreError) -> StoreEvent {
    StoreEvent::StreamFailed {
        stream,
        error: e.to_string(),
    }
}

/// Counts the contacts of one snapshot and hashes their canonical form: SHA-512 over the
/// 536-byte server-role Update bodies (`[clock u32][username 256][contact 256][phone 20]`)
/// in (username, contact) order (docs/PROTOCOL.md §8.5, `contacts_sha512`).
fn digest(store: &dyn Store, tag: u64) -> Result<StoreEvent, StoreError> {
    use sha2::{Digest, Sha512};
    let mut snap = store.snapshot()?;
    let mut h = Sha512::new();
    let mut page = ContactPage::default();
    let mut rec = [0u8; SERVER_RECORD_LEN];
    let mut count = 0u64;
    loop {
        page.clear();
        let more = snap.next_packed(DIGEST_PAGE, &mut page)?;
        for c in page.iter() {
            if emit_server_record(c.clock, &fields_of(&c), &mut rec).is_ok() {
                h.update(&rec[1..]);
                count += 1;
            }
        }
        if !more {
            break;
        }
    }
    Ok(StoreEvent::Digest {
        tag,
        count,
        sha512: h.finalize().to_vec(),
    })
}
