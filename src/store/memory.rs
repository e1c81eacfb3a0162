//! The RAM-only store (`--memory-only`): contacts and the Lamport clock live in a persistent
//! ordered map, the journal in a persistent vector of its newest `keep` lines, peers' cursors
//! in a map; nothing ever touches the disk, so nothing survives a restart (the DCSC stance on
//! seizure), and each instance makes a new random journal id, so peers holding a cursor into
//! the previous run's journal see [`JournalRead::Beyond`] or a different id and fall back to
//! a full sync. Snapshots are O(1) structural clones. Source: docs/PROTOCOL.md §8.8
//! and §8.10 (journal).

use std::collections::HashMap;
use std::ops::Bound;

use im::{OrdMap, Vector};

use super::{
    journal_window, new_journal_id, Change, Contact, ContactPage, ContactRef, JournalEntry,
    JournalRead, Snapshot, Store, StoreError, Write, DEFAULT_JOURNAL_KEEP, NAME_LEN, PHONE_LEN,
};

/// Key: `(username, contact)`. `String`'s order is bytewise (`memcmp`) order, the same as
/// the SQLite store's BLOB order. Value: `(clock, phone)`.
type Map = OrdMap<(String, String), (u32, String)>;

/// Checks a contact's fields against the record's contract (docs/PROTOCOL.md §1 and §8.1): at most
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

/// Contacts, the Lamport clock, the journal and cursors in RAM only; see the module doc.
///
/// Same semantics as the SQLite store (last-writer-wins by [`Contact::wins_over`], the clock
/// only ever raised, bytewise `(username, contact)` order, one journal line per changed
/// merge, the newest `keep` lines retained), without durability: `apply` returns as soon as
/// the maps are updated. A clone shares the journal id: it is a copy of the same journal.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    contacts: Map,
    clock: u32,
    /// Random, non-zero, per instance.
    journal_id: u64,
    /// The retained lines, oldest first: lines `head - journal.len() + 1 ..= head`.
    journal: Vector<JournalEntry>,
    /// The last line number ever appended (0 for none).
    head: u64,
    /// The most lines retained.
    keep: u64,
    /// peer -> (journal id, line).
    cursors: HashMap<String, (u64, u64)>,
    /// The node list's canonical bytes (empty: none stored).
    node_list: Vec<u8>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store with clock 0, an empty journal with a new random id, keeping
    /// [`DEFAULT_JOURNAL_KEEP`] lines.
    pub fn new() -> MemoryStore {
        MemoryStore::with_keep(DEFAULT_JOURNAL_KEEP)
    }

    /// As [`MemoryStore::new`], retaining at most `keep` journal lines (0 keeps none: every
    /// `since` below the head is then [`JournalRead::Gone`]).
    pub fn with_keep(keep: u64) -> MemoryStore {
        MemoryStore {
            contacts: Map::new(),
            clock: 0,
            journal_id: new_journal_id(),
            journal: Vector::new(),
            head: 0,
            keep,
            cursors: HashMap::new(),
            node_list: Vec::new(),
        }
    }

    /// The first retained line (`head + 1` when none is).
    fn first_line(&self) -> u64 {
        self.head + 1 - self.journal.len() as u64
    }
}

impl Store for MemoryStore {
    /// Applies `batch` atomically: it is validated first, then applied to copies of the map
    /// and the journal that replace the current ones, so a refused batch leaves no trace (and
    /// `changed` is left as it was). Trimming pops the lines beyond `keep` from the front.
    fn apply(&mut self, batch: &[Write], changed: &mut Vec<bool>) -> Result<(), StoreError> {
        for w in batch {
            if let Write::Merge(c) = w {
                check_contact(c)?;
            }
        }
        let mut contacts = self.contacts.clone();
        let mut clock = self.clock;
        let mut journal = self.journal.clone();
        let mut head = self.head;
        let mut cursors: Vec<(&String, (u64, u64))> = Vec::new();
        let mut node_list: Option<&Vec<u8>> = None;
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
                        head = head.checked_add(1).ok_or_else(|| {
                            StoreError::Db("journal line numbers exhausted".into())
                        })?;
                        journal.push_back(JournalEntry {
                            line: head,
                            change: Change::Contact(c.clone()),
                        });
                    }
                    changed.push(wins);
                }
                Write::Clock(c) => clock = clock.max(*c),
                Write::Cursor {
                    peer,
                    journal_id,
                    line,
                } => cursors.push((peer, (*journal_id, *line))),
                Write::NodeList(bytes) => node_list = Some(bytes),
            }
        }
        while journal.len() as u64 > self.keep {
            journal.pop_front();
        }
        self.contacts = contacts;
        self.clock = clock;
        self.journal = journal;
        self.head = head;
        for (peer, at) in cursors {
            self.cursors.insert(peer.clone(), at);
        }
        if let Some(bytes) = node_list {
            self.node_list = bytes.clone();
        }
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
            owner: None,
            last: None,
            yielded: 0,
        }))
    }

    /// A structural clone, and one pass over `owner`'s contacts to count them.
    fn snapshot_of(&self, owner: &str) -> Result<Box<dyn Snapshot>, StoreError> {
        let map = self.contacts.clone();
        let count = owned(&map, owner, Bound::Unbounded).count() as u64;
        Ok(Box::new(MemorySnapshot {
            count,
            map,
            owner: Some(owner.to_string()),
            last: None,
            yielded: 0,
        }))
    }

    fn journal_id(&self) -> Result<u64, StoreError> {
        Ok(self.journal_id)
    }

    fn journal_head(&self) -> Result<u64, StoreError> {
        Ok(self.head)
    }

    /// O(log n) to seek to `since + 1`, then one clone per entry returned.
    fn journal_since(
        &self,
        since: u64,
        limit: u32,
        out: &mut Vec<JournalEntry>,
    ) -> Result<JournalRead, StoreError> {
        let first = self.first_line();
        match journal_window(since, limit, first, self.head) {
            Err(answer) => Ok(answer),
            Ok((0, more)) => Ok(JournalRead::Entries { more }),
            Ok((count, more)) => {
                // `since + 1 >= first` and `0 < count <= head - since`: the range is in
                // bounds and not empty (`narrow` panics on either).
                let start = (since + 1 - first) as usize;
                let window = self.journal.focus().narrow(start..start + count as usize);
                out.reserve(count as usize);
                out.extend(window.into_iter().cloned());
                Ok(JournalRead::Entries { more })
            }
        }
    }

    fn cursor(&self, peer: &str) -> Result<Option<(u64, u64)>, StoreError> {
        Ok(self.cursors.get(peer).copied())
    }

    fn node_list(&self) -> Result<Vec<u8>, StoreError> {
        Ok(self.node_list.clone())
    }
}

/// `owner`'s entries of `map` after `after` (a key of `owner`'s, or unbounded: from the
/// first), in contact-name order.
fn owned<'a>(
    map: &'a Map,
    owner: &'a str,
    after: Bound<(String, String)>,
) -> impl Iterator<Item = (&'a (String, String), &'a (u32, String))> + 'a {
    let lower = match after {
        Bound::Unbounded => Bound::Included((owner.to_string(), String::new())),
        other => other,
    };
    map.range((lower, Bound::Unbounded))
        .take_while(move |((u, _), _)| u == owner)
}

/// A frozen view of a [`MemoryStore`]; each page seeks past the last key it returned
/// (O(log n)), so it never materialises the whole list.
struct MemorySnapshot {
    map: Map,
    count: u64,
    /// Only this username's contacts (`None`: all).
    owner: Option<String>,
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
        Ok(self.visit(max, |c| out.push(c.to_contact())))
    }

    fn next_packed(&mut self, max: usize, out: &mut ContactPage) -> Result<bool, StoreError> {
        Ok(self.visit(max, |c| out.push(c.username, c.contact, c.phone, c.clock)))
    }
}

impl MemorySnapshot {
    /// Hands up to `max` further contacts to `each`, borrowed from the map; returns whether
    /// more follow.
    fn visit(&mut self, max: usize, mut each: impl FnMut(ContactRef<'_>)) -> bool {
        let lower = match &self.last {
            None => Bound::Unbounded,
            Some(k) => Bound::Excluded(k.clone()),
        };
        let mut last = None;
        let entries: Box<dyn Iterator<Item = _>> = match &self.owner {
            Some(o) => Box::new(owned(&self.map, o, lower)),
            None => Box::new(self.map.range((lower, Bound::Unbounded))),
        };
        for (key, (clock, phone)) in entries.take(max) {
            each(ContactRef {
                username: &key.0,
                contact: &key.1,
                phone,
                clock: *clock,
            });
            self.yielded += 1;
            last = Some(key);
        }
        if let Some(k) = last {
            self.last = Some(k.clone());
        }
        self.yielded < self.count
    }
}
