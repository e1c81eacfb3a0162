//! The write side of the SQLite store: one batch of [`Write`]s inside its transaction
//! (last-writer-wins merges with their journal lines, the clock, peers' cursors, the node
//! list), then the journal head raised and the journal trimmed. Never commits: the store
//! does (docs/PROTOCOL.md §8.8).

use rusqlite::params;

use super::{db_err, HEAD_SQL, KIND_CONTACT};
use crate::store::{Contact, StoreError, Write};

/// Last-writer-wins upsert, the same rule as [`Contact::wins_over`]: the higher clock wins,
/// on equal clocks the bytewise larger phone (BLOB comparison is `memcmp`, then length, as
/// Rust compares byte slices); an equal record changes nothing, so `changes()` is 0 for a
/// loser and 1 for an insert or a replacement.
const MERGE_SQL: &str = "
INSERT INTO contacts (username, contact, phone, clock) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (username, contact) DO UPDATE SET phone = excluded.phone, clock = excluded.clock
WHERE excluded.clock > contacts.clock
   OR (excluded.clock = contacts.clock AND excluded.phone > contacts.phone)";
/// Raises the persisted Lamport clock, never lowers it.
const RAISE_CLOCK_SQL: &str = "UPDATE meta SET value = max(value, ?1) WHERE key = 'clock'";
const APPEND_SQL: &str = "INSERT INTO journal (line, kind, username, contact, phone, clock)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const SET_HEAD_SQL: &str = "UPDATE meta SET value = ?1 WHERE key = 'journal_head'";
/// Trimming: drops every line at or below `?1` (= head - keep), a range at the start of the
/// rowid B-tree.
const TRIM_SQL: &str = "DELETE FROM journal WHERE line <= ?1";
const SET_CURSOR_SQL: &str = "INSERT INTO cursors (peer, journal_id, line) VALUES (?1, ?2, ?3)
ON CONFLICT (peer) DO UPDATE SET journal_id = excluded.journal_id, line = excluded.line";
const SET_NODE_LIST_SQL: &str = "INSERT INTO node_list (id, list) VALUES (1, ?1)
ON CONFLICT (id) DO UPDATE SET list = excluded.list";

/// The writes of one batch inside its transaction: the statements every batch uses,
/// prepared once, and the journal head as lines are appended.
pub(super) struct BatchWriter<'t> {
    tx: &'t rusqlite::Transaction<'t>,
    merge: rusqlite::CachedStatement<'t>,
    raise: rusqlite::CachedStatement<'t>,
    append: rusqlite::CachedStatement<'t>,
    /// The last journal line written so far (the stored head at the start).
    pub(super) head: u64,
}

impl<'t> BatchWriter<'t> {
    /// Prepares the statements and reads the journal head.
    pub(super) fn prepare(tx: &'t rusqlite::Transaction<'t>) -> Result<Self, StoreError> {
        let head = tx
            .prepare_cached(HEAD_SQL)
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map_err(db_err("read the journal head"))? as u64;
        Ok(BatchWriter {
            tx,
            merge: tx
                .prepare_cached(MERGE_SQL)
                .map_err(db_err("prepare merge"))?,
            raise: tx
                .prepare_cached(RAISE_CLOCK_SQL)
                .map_err(db_err("prepare clock update"))?,
            append: tx
                .prepare_cached(APPEND_SQL)
                .map_err(db_err("prepare journal append"))?,
            head,
        })
    }

    /// One write; a `Merge` pushes whether it changed the contact onto `changed`.
    pub(super) fn write(&mut self, w: &Write, changed: &mut Vec<bool>) -> Result<(), StoreError> {
        match w {
            Write::Merge(c) => changed.push(self.merge_contact(c)?),
            Write::Clock(c) => self.raise_clock(*c)?,
            Write::Cursor {
                peer,
                journal_id,
                line,
            } => {
                self.tx
                    .prepare_cached(SET_CURSOR_SQL)
                    .and_then(|mut s| s.execute(params![peer, *journal_id as i64, *line as i64]))
                    .map_err(db_err("record a peer's cursor"))?;
            }
            Write::NodeList(bytes) => {
                self.tx
                    .prepare_cached(SET_NODE_LIST_SQL)
                    .and_then(|mut s| s.execute([bytes]))
                    .map_err(db_err("store the node list"))?;
            }
        }
        Ok(())
    }

    /// Merges `c` by last-writer-wins; when it changed the row, appends its journal line.
    /// Returns whether it changed.
    fn merge_contact(&mut self, c: &Contact) -> Result<bool, StoreError> {
        let n = self
            .merge
            .execute(params![
                c.username.as_bytes(),
                c.contact.as_bytes(),
                c.phone.as_bytes(),
                c.clock
            ])
            .map_err(db_err("merge contact"))?;
        if n == 0 {
            return Ok(false);
        }
        self.head = self
            .head
            .checked_add(1)
            .ok_or_else(|| StoreError::Db("journal line numbers exhausted".into()))?;
        self.append
            .execute(params![
                self.head as i64,
                KIND_CONTACT,
                c.username.as_bytes(),
                c.contact.as_bytes(),
                c.phone.as_bytes(),
                c.clock
            ])
            .map_err(db_err("append to the journal"))?;
        Ok(true)
    }

    /// Raises the stored Lamport clock to `clock` (never lowers it).
    fn raise_clock(&mut self, clock: u32) -> Result<(), StoreError> {
        let n = self.raise.execute([clock]).map_err(db_err("raise clock"))?;
        if n != 1 {
            return Err(StoreError::Db(
                "the clock row of table meta is missing (damaged database)".into(),
            ));
        }
        Ok(())
    }
}

/// Sets the journal head to `head` and drops the lines at or below `head - keep`.
pub(super) fn advance_journal(
    tx: &rusqlite::Transaction<'_>,
    head: u64,
    keep: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(SET_HEAD_SQL)
        .and_then(|mut s| s.execute([head as i64]))
        .map_err(db_err("raise the journal head"))?;
    if head > keep {
        tx.prepare_cached(TRIM_SQL)
            .and_then(|mut s| s.execute([(head - keep) as i64]))
            .map_err(db_err("trim the journal"))?;
    }
    Ok(())
}
