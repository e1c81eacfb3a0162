//! The RAM-only store (`--memory-only`): contacts and the Lamport clock live in a persistent
//! ordered map and nothing ever touches the disk, so nothing survives a restart (the DCSC
//! stance on seizure). Snapshots are O(1) structural clones. Source: BRIEF.md, "State".

use std::ops::Bound;

use im::OrdMap;

use super::{Contact, Snapshot, Store, StoreError, Write, NAME_LEN, PHONE_LEN};

/// Key: `(username, contact)`. `String`'s order is bytewise (`memcmp`) order, the same as
/// the SQLite store's BLOB order. Value: `(clock, phone)`.
type Map = OrdMap<(String, String), (u32, String)>;

/// Checks a contact's fields against the record's contract (BRIEF.md, "Conventions"): at most
/// 256 / 256 / 20 bytes of UTF-8 without NUL bytes, so every stored record can be sent back
/// as a fixed-width wire field. Shared by both stores so they refuse the same input.
///
/// # Errors
/// [`StoreError::Db`] naming the offending field.
pub(crate) fn check_contact(c: &Contact) -> Result<(), StoreError> {
    for (what, text, max) in [
        ("username", &c.username, NAME_LEN),
        ("contact name", &c.contact, NAME_LEN),
        ("phone", &c.phone, PHONE_LEN),
    ] {
        if text.len() > max {
            return Err(StoreError::Db(format!(
                "refused contact: {what} is {} bytes, at most {max} allowed",
                text.len()
            )));
        }
        if text.as_bytes().contains(&0) {
            return Err(StoreError::Db(format!(
                "refused contact: {what} contains a NUL byte"
            )));
        }
    }
    Ok(())
}

/// Contacts and the Lamport clock in RAM only; see the module doc.
///
/// Same semantics as [`super::SqliteStore`] (last-writer-wins by [`Contact::wins_over`],
/// the clock only ever raised, bytewise `(username, contact)` order), without durability:
/// `apply` returns as soon as the map is updated.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    contacts: Map,
    clock: u32,
}

impl MemoryStore {
    /// An empty store with clock 0.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    /// Applies `batch` atomically: it is validated first, then applied to a copy of the map
    /// that replaces the current one, so a refused batch leaves no trace (and `changed` is
    /// left as it was).
    fn apply(&mut self, batch: &[Write], changed: &mut Vec<bool>) -> Result<(), StoreError> {
        for w in batch {
            if let Write::Merge(c) = w {
                check_contact(c)?;
            }
        }
        let mut contacts = self.contacts.clone();
        let mut clock = self.clock;
        for w in batch {
            match w {
                Write::Merge(c) => {
                    let key = (c.username.clone(), c.contact.clone());
                    // Exactly `Contact::wins_over`, without building the old record.
                    let wins = match contacts.get(&key) {
                        None => true,
                        Some((old_clock, old_phone)) => {
                            (c.clock, c.phone.as_bytes()) > (*old_clock, old_phone.as_bytes())
                        }
                    };
                    if wins {
                        contacts.insert(key, (c.clock, c.phone.clone()));
                    }
                    changed.push(wins);
                }
                Write::Clock(c) => clock = clock.max(*c),
            }
        }
        self.contacts = contacts;
        self.clock = clock;
        Ok(())
    }

    fn clock(&self) -> Result<u32, StoreError> {
        Ok(self.clock)
    }

    fn get(&self, username: &str, contact: &str) -> Result<Option<Contact>, StoreError> {
        let key = (username.to_owned(), contact.to_owned());
        Ok(self.contacts.get(&key).map(|(clock, phone)| Contact {
            username: key.0.clone(),
            contact: key.1.clone(),
            phone: phone.clone(),
            clock: *clock,
        }))
    }

    /// O(1): a structural clone of the map, unaffected by later writes.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        Ok(Box::new(MemorySnapshot {
            count: self.contacts.len() as u64,
            map: self.contacts.clone(),
            last: None,
            yielded: 0,
        }))
    }
}

/// A frozen view of a [`MemoryStore`]; each page seeks past the last key it returned
/// (O(log n)), so it never materialises the whole list.
struct MemorySnapshot {
    map: Map,
    count: u64,
    /// The last key returned, `None` before the first page.
    last: Option<(String, String)>,
    /// Records returned so far.
    yielded: u64,
}

impl Snapshot for MemorySnapshot {
    fn count(&self) -> u64 {
        self.count
    }

    fn next_page(&mut self, max: usize, out: &mut Vec<Contact>) -> Result<bool, StoreError> {
        let lower = match &self.last {
            None => Bound::Unbounded,
            Some(k) => Bound::Excluded(k.clone()),
        };
        let mut last = None;
        for ((username, contact), (clock, phone)) in
            self.map.range((lower, Bound::Unbounded)).take(max)
        {
            out.push(Contact {
                username: username.clone(),
                contact: contact.clone(),
                phone: phone.clone(),
                clock: *clock,
            });
            self.yielded += 1;
            last = Some((username.clone(), contact.clone()));
        }
        if last.is_some() {
            self.last = last;
        }
        Ok(self.yielded < self.count)
    }
}
