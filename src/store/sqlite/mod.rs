//! The durable store: SQLite (bundled) in the data directory, WAL journal, synchronous=FULL.
//! Contacts are kept in bytewise `(username, contact)` order and read back through pinned
//! read snapshots on separate connections. The change journal (docs/PROTOCOL.md §8.10) is
//! table `journal`, written in the same transaction as the contacts it records, so after
//! any crash every contact change has its line and every line its change; peers' cursors
//! are table `cursors`; the journal id, its head line and the Lamport clock are rows of
//! `meta`.
//!
//! Schema versions (`PRAGMA user_version`): 1 had `contacts` and `meta` (the clock); 2 adds
//! `journal`, `cursors` and the `meta` rows `journal_id` and `journal_head`; 3 adds
//! `node_list` (one row: the node list's canonical bytes). Opening an older database
//! migrates it in one transaction (`schema`): a version-1 database keeps its contacts and
//! its journal starts empty at line 0 with a new id. A batch's writes are `batch`. Source:
//! docs/PROTOCOL.md §8.8 (durability), §8.9 (last-writer-wins) and §8.10 (journal).

mod batch;
mod schema;

use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use batch::{advance_journal, BatchWriter};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use schema::migrate;

use super::memory::check_contact;
use super::{
    journal_window, Change, Contact, ContactPage, ContactRef, JournalEntry, JournalRead, Snapshot,
    Store, StoreError, Write, DEFAULT_JOURNAL_KEEP,
};

/// The database file inside the data directory.
pub const DB_FILE: &str = "rendezvous.db";
/// The lock file inside the data directory; held (`flock`, exclusive) while a
/// [`SqliteStore`] is open, so two servers never share one data directory.
pub const LOCK_FILE: &str = "rendezvous.lock";
/// The schema version this build writes (`PRAGMA user_version`); a database with a higher
/// version was written by a newer build and is refused.
pub const SCHEMA_VERSION: i64 = 3;

/// How long a statement waits for a lock held by another connection (a checkpoint, the
/// start of a snapshot) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const NODE_LIST_SQL: &str = "SELECT list FROM node_list WHERE id = 1";

/// `journal.kind` of a [`Change::Contact`].
const KIND_CONTACT: i64 = 1;

const CLOCK_SQL: &str = "SELECT value FROM meta WHERE key = 'clock'";
const JOURNAL_ID_SQL: &str = "SELECT value FROM meta WHERE key = 'journal_id'";
const HEAD_SQL: &str = "SELECT value FROM meta WHERE key = 'journal_head'";
/// The oldest retained line (NULL for an empty table): one seek to the B-tree's first row.
const FIRST_LINE_SQL: &str = "SELECT min(line) FROM journal";
const JOURNAL_PAGE_SQL: &str = "SELECT line, kind, username, contact, phone, clock FROM journal
WHERE line > ?1 ORDER BY line LIMIT ?2";
const CURSOR_SQL: &str = "SELECT journal_id, line FROM cursors WHERE peer = ?1";
const GET_SQL: &str = "SELECT phone, clock FROM contacts WHERE username = ?1 AND contact = ?2";
const COUNT_SQL: &str = "SELECT count(*) FROM contacts";
/// First page of a snapshot.
const FIRST_PAGE_SQL: &str = "SELECT username, contact, phone, clock FROM contacts
ORDER BY username, contact LIMIT ?1";
/// Later pages: keyset pagination from the last key returned (a seek in the primary-key
/// B-tree, no OFFSET scan).
const NEXT_PAGE_SQL: &str = "SELECT username, contact, phone, clock FROM contacts
WHERE (username, contact) > (?1, ?2) ORDER BY username, contact LIMIT ?3";
/// One owner's contacts (an authenticated client's list, docs/PROTOCOL.md §8.18): a range
/// of the primary key.
const COUNT_OWNED_SQL: &str = "SELECT count(*) FROM contacts WHERE username = ?1";
const FIRST_OWNED_SQL: &str = "SELECT username, contact, phone, clock FROM contacts
WHERE username = ?1 ORDER BY contact LIMIT ?2";
const NEXT_OWNED_SQL: &str = "SELECT username, contact, phone, clock FROM contacts
WHERE username = ?1 AND contact > ?2 ORDER BY contact LIMIT ?3";

/// Wraps a SQLite error with what was being done.
fn db_err<C: Display>(context: C) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Db(format!("{context}: {e}"))
}

/// Contacts, the Lamport clock, the journal and peers' cursors in `DIR/rendezvous.db` (see
/// [`SqliteStore::open`]).
///
/// Durability: the database runs in WAL mode with `synchronous=FULL`, so [`Store::apply`]
/// returns only after its transaction's WAL frames are fsynced: a batch whose `apply`
/// returned `Ok` survives a crash of the process, a crash of the OS and a power loss
/// (provided the storage honours fsync/flush); a batch whose `apply` did not return (or
/// returned an error) is either wholly present or wholly absent afterwards, never in part.
///
/// Reads: [`Store::snapshot`] opens a separate read-only connection and pins a read
/// transaction, so a snapshot sees one moment while this writer goes on (WAL readers never
/// block the writer). A snapshot held for a long time keeps the WAL from being checkpointed
/// past it, so the `-wal` file grows until the snapshot is dropped.
///
/// Journal: each changed merge appends a row to `journal` and the head in `meta` is raised,
/// in the batch's transaction; the same transaction deletes the lines at or below
/// `head - keep`. Reads of the journal run on the writer connection (they are short: at most
/// [`super::JOURNAL_READ_CAP`] rows). The node list (docs/PROTOCOL.md §8.15) is
/// one row of table `node_list` (schema version 3); [`SCHEMA_VERSION`] tells the versions
/// apart.
pub struct SqliteStore {
    /// The writer connection (also serves `clock`, `get` and the journal reads).
    conn: Connection,
    /// The journal id, read from `meta` at open (it never changes).
    journal_id: u64,
    /// The most journal lines retained.
    keep: u64,
    /// `DIR/rendezvous.db`, for snapshot connections.
    path: PathBuf,
    /// Holds the exclusive `flock` on `DIR/rendezvous.lock`; dropped after `conn`.
    _lock: File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in data directory `dir`, retaining
    /// [`DEFAULT_JOURNAL_KEEP`] journal lines: see [`SqliteStore::open_with`].
    ///
    /// # Errors
    /// As [`SqliteStore::open_with`].
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(dir, DEFAULT_JOURNAL_KEEP)
    }

    /// Opens (creating if needed) the store in data directory `dir`: creates `dir`, takes an
    /// exclusive lock on `dir/rendezvous.lock`, opens or creates `dir/rendezvous.db`, switches
    /// it to WAL with `synchronous=FULL`, creates or migrates the schema to
    /// [`SCHEMA_VERSION`] in one transaction (a new database: the clock at 0, an empty
    /// journal with a new random id; a version-1 database keeps its contacts and clock and
    /// gains an empty journal) and fsyncs the directory so the new files' entries are durable
    /// too. Each later `apply` trims the journal to its newest `keep` lines (0 keeps none).
    ///
    /// # Errors
    /// [`StoreError::Db`] when the directory cannot be created or synced, another process
    /// holds the data directory, the file is not a SQLite database, WAL mode is unavailable
    /// (e.g. a filesystem without shared memory), the schema is newer than this build's, or
    /// the database is damaged (no journal id).
    pub fn open_with(dir: &Path, keep: u64) -> Result<SqliteStore, StoreError> {
        let existed = dir.is_dir();
        fs::create_dir_all(dir).map_err(|e| {
            StoreError::Db(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DB_FILE);
        let shown = path.display().to_string();
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err(format_args!("cannot open {shown}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err(format_args!("{shown}: busy_timeout")))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(db_err(format_args!("{shown}: cannot switch to WAL")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Db(format!(
                "{shown}: WAL journal mode unavailable (got {mode:?})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err(format_args!("{shown}: cannot set synchronous=FULL")))?;
        migrate(&mut conn, &shown)?;
        let id: i64 = conn
            .query_row(JOURNAL_ID_SQL, [], |r| r.get(0))
            .optional()
            .map_err(db_err(format_args!("{shown}: read the journal id")))?
            .unwrap_or(0);
        if id == 0 {
            return Err(StoreError::Db(format!(
                "{shown}: the journal id is missing (damaged database)"
            )));
        }
        conn.set_prepared_statement_cache_capacity(32);
        sync_dir(dir)?;
        if !existed {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(SqliteStore {
            conn,
            journal_id: id as u64,
            keep,
            path,
            _lock: lock,
        })
    }

    /// The database file, `DIR/rendezvous.db`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The transaction of [`Store::apply`]: each write in order, then the journal head
    /// raised and the journal trimmed; on error it is rolled back (by dropping it).
    fn apply_tx(&mut self, batch: &[Write], changed: &mut Vec<bool>) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err("begin write transaction"))?;
        {
            let mut writer = BatchWriter::prepare(&tx)?;
            let start = writer.head;
            for w in batch {
                writer.write(w, changed)?;
            }
            if writer.head != start {
                advance_journal(&tx, writer.head, self.keep)?;
            }
        }
        tx.commit().map_err(db_err("commit"))
    }
}

impl Store for SqliteStore {
    /// One `IMMEDIATE` transaction for the whole batch with cached prepared statements,
    /// fsynced before returning (see the type's doc). Every `Merge` is checked first (at most
    /// 256 / 256 / 20 bytes, no NUL); on any error nothing is applied and `changed` is left
    /// as it was. An empty batch does nothing.
    fn apply(&mut self, batch: &[Write], changed: &mut Vec<bool>) -> Result<(), StoreError> {
        for w in batch {
            if let Write::Merge(c) = w {
                check_contact(c)?;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mark = changed.len();
        let result = self.apply_tx(batch, changed);
        if result.is_err() {
            changed.truncate(mark);
        }
        result
    }

    fn node_list(&self) -> Result<Vec<u8>, StoreError> {
        self.conn
            .prepare_cached(NODE_LIST_SQL)
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map(Option::unwrap_or_default)
            .map_err(db_err("read the node list"))
    }

    fn clock(&self) -> Result<u32, StoreError> {
        let v: i64 = self
            .conn
            .prepare_cached(CLOCK_SQL)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_err("read clock"))?;
        clock_of(v)
    }

    fn get(&self, username: &str, contact: &str) -> Result<Option<Contact>, StoreError> {
        let found = self
            .conn
            .prepare_cached(GET_SQL)
            .and_then(|mut s| {
                s.query_row(params![username.as_bytes(), contact.as_bytes()], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()
            })
            .map_err(db_err("read contact"))?;
        match found {
            None => Ok(None),
            Some((phone, clock)) => Ok(Some(Contact {
                username: username.to_owned(),
                contact: contact.to_owned(),
                phone: text(phone, "phone")?,
                clock: clock_of(clock)?,
            })),
        }
    }

    /// Opens a read-only connection to the same file, begins a read transaction and pins it
    /// by counting the contacts (the first read fixes the WAL snapshot); pages then come from
    /// that moment whatever the writer does. Memory is bounded by the page size.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        self.open_snapshot(None)
    }

    /// As [`Self::snapshot`], over the primary-key range of `owner`.
    fn snapshot_of(&self, owner: &str) -> Result<Box<dyn Snapshot>, StoreError> {
        self.open_snapshot(Some(owner))
    }
    fn journal_id(&self) -> Result<u64, StoreError> {
        Ok(self.journal_id)
    }

    fn journal_head(&self) -> Result<u64, StoreError> {
        let v: i64 = self
            .conn
            .prepare_cached(HEAD_SQL)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_err("read the journal head"))?;
        Ok(v as u64)
    }

    /// Reads the head and the oldest retained line, then at most
    /// [`super::JOURNAL_READ_CAP`] rows by a range seek on the line. All on the writer
    /// connection, which only this store's `&mut` methods write through, so the three reads
    /// see one state.
    fn journal_since(
        &self,
        since: u64,
        limit: u32,
        out: &mut Vec<JournalEntry>,
    ) -> Result<JournalRead, StoreError> {
        let head = self.journal_head()?;
        let first: Option<i64> = self
            .conn
            .prepare_cached(FIRST_LINE_SQL)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_err("read the journal's first line"))?;
        let first = first.map_or(head.saturating_add(1), |f| f as u64);
        let (count, more) = match journal_window(since, limit, first, head) {
            Err(answer) => return Ok(answer),
            Ok(window) => window,
        };
        if count == 0 {
            return Ok(JournalRead::Entries { more });
        }
        let mut stmt = self
            .conn
            .prepare_cached(JOURNAL_PAGE_SQL)
            .map_err(db_err("journal: prepare read"))?;
        let mut rows = stmt
            .query(params![since as i64, count as i64])
            .map_err(db_err("journal: read"))?;
        out.reserve(count as usize);
        let mut expect = since + 1;
        while let Some(row) = rows.next().map_err(db_err("journal: read"))? {
            let entry = decode_line(row)?;
            if entry.line != expect {
                return Err(StoreError::Db(format!(
                    "journal line {expect} is missing (found {}; damaged database)",
                    entry.line
                )));
            }
            out.push(entry);
            expect += 1;
        }
        if expect != since + 1 + count {
            return Err(StoreError::Db(format!(
                "journal ends at line {} below its head {head} (damaged database)",
                expect - 1
            )));
        }
        Ok(JournalRead::Entries { more })
    }

    fn cursor(&self, peer: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let found = self
            .conn
            .prepare_cached(CURSOR_SQL)
            .and_then(|mut s| {
                s.query_row([peer], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .optional()
            })
            .map_err(db_err("read a peer's cursor"))?;
        Ok(found.map(|(id, line)| (id as u64, line as u64)))
    }
}

/// A journal row back to a [`JournalEntry`].
fn decode_line(row: &Row<'_>) -> Result<JournalEntry, StoreError> {
    let line: i64 = row.get(0).map_err(db_err("journal: read row"))?;
    let kind: i64 = row.get(1).map_err(db_err("journal: read row"))?;
    if kind != KIND_CONTACT {
        return Err(StoreError::Db(format!(
            "journal line {line} has unknown kind {kind} (damaged database)"
        )));
    }
    let blob = |i: usize| -> Result<Vec<u8>, StoreError> {
        row.get(i).map_err(db_err("journal: read row"))
    };
    let clock: i64 = row.get(5).map_err(db_err("journal: read row"))?;
    Ok(JournalEntry {
        line: line as u64,
        change: Change::Contact(Contact {
            username: text(blob(2)?, "username")?,
            contact: text(blob(3)?, "contact name")?,
            phone: text(blob(4)?, "phone")?,
            clock: clock_of(clock)?,
        }),
    })
}

impl SqliteStore {
    /// Opens a read-only connection to the same file, begins a read transaction and pins
    /// it by counting the contacts (all, or `owner`'s); pages then come from that moment
    /// whatever the writer does. Memory is bounded by the page size.
    fn open_snapshot(&self, owner: Option<&str>) -> Result<Box<dyn Snapshot>, StoreError> {
        let shown = self.path.display();
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err(format_args!("snapshot: cannot open {shown}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err("snapshot: busy_timeout"))?;
        conn.execute_batch("BEGIN DEFERRED")
            .map_err(db_err("snapshot: begin read transaction"))?;
        let count: i64 = match owner {
            Some(o) => conn.query_row(COUNT_OWNED_SQL, params![o.as_bytes()], |r| r.get(0)),
            None => conn.query_row(COUNT_SQL, [], |r| r.get(0)),
        }
        .map_err(db_err("snapshot: count contacts"))?;
        let count = u64::try_from(count)
            .map_err(|_| StoreError::Db(format!("snapshot: impossible count {count}")))?;
        Ok(Box::new(SqliteSnapshot {
            conn,
            count,
            owner: owner.map(str::to_string),
            last: (String::new(), String::new()),
            yielded: 0,
        }))
    }
}

/// A pinned read transaction on its own connection (Send: it owns its connection).
struct SqliteSnapshot {
    conn: Connection,
    count: u64,
    /// Only this username's contacts (`None`: all).
    owner: Option<String>,
    /// Key of the last record returned (meaningless before the first page, while
    /// `yielded` is 0); its buffers are reused from page to page.
    last: (String, String),
    /// Records returned so far.
    yielded: u64,
}

impl Snapshot for SqliteSnapshot {
    fn count(&self) -> u64 {
        self.count
    }

    fn next_page(&mut self, max: usize, out: &mut Vec<Contact>) -> Result<bool, StoreError> {
        let start = out.len();
        let more = self.visit(max, |c| out.push(c.to_contact()))?;
        if let Some(c) = out.get(start..).and_then(<[Contact]>::last) {
            self.last = (c.username.clone(), c.contact.clone());
        }
        Ok(more)
    }

    fn next_packed(&mut self, max: usize, out: &mut ContactPage) -> Result<bool, StoreError> {
        let start = out.len();
        let more = self.visit(max, |c| out.push(c.username, c.contact, c.phone, c.clock))?;
        if let Some(c) = out.last().filter(|_| out.len() > start) {
            let (u, k) = &mut self.last;
            u.clear();
            u.push_str(c.username);
            k.clear();
            k.push_str(c.contact);
        }
        Ok(more)
    }
}

impl SqliteSnapshot {
    /// Reads up to `max` further contacts by keyset pagination, handing each to `each`
    /// borrowed from SQLite's row (no allocation per contact); returns whether more follow.
    /// The caller records the last key handed over in `self.last`.
    fn visit(
        &mut self,
        max: usize,
        mut each: impl FnMut(ContactRef<'_>),
    ) -> Result<bool, StoreError> {
        if max == 0 || self.yielded >= self.count {
            return Ok(self.yielded < self.count);
        }
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let mut got = 0u64;
        let first = self.yielded == 0;
        {
            let sql = match (&self.owner, first) {
                (None, true) => FIRST_PAGE_SQL,
                (None, false) => NEXT_PAGE_SQL,
                (Some(_), true) => FIRST_OWNED_SQL,
                (Some(_), false) => NEXT_OWNED_SQL,
            };
            let mut stmt = self
                .conn
                .prepare_cached(sql)
                .map_err(db_err("snapshot: prepare page"))?;
            // The owner's key range, or all: `(username, contact) > last` either way.
            let mut rows = match (&self.owner, first) {
                (None, true) => stmt.query(params![limit]),
                (Some(o), true) => stmt.query(params![o.as_bytes(), limit]),
                (_, false) => {
                    let (u, c) = &self.last;
                    stmt.query(params![u.as_bytes(), c.as_bytes(), limit])
                }
            }
            .map_err(db_err("snapshot: read page"))?;
            while let Some(row) = rows.next().map_err(db_err("snapshot: read page"))? {
                each(decode_ref(row)?);
                got += 1;
            }
        }
        self.yielded += got;
        if got == 0 {
            return Err(StoreError::Db(format!(
                "snapshot ended after {} of {} contacts (damaged database)",
                self.yielded, self.count
            )));
        }
        Ok(self.yielded < self.count)
    }
}

/// A `(username, contact, phone, clock)` row, borrowed from SQLite, checked: text that is
/// UTF-8 and a clock in range.
fn decode_ref<'r>(row: &'r Row<'_>) -> Result<ContactRef<'r>, StoreError> {
    let field = |i: usize, what: &str| -> Result<&'r str, StoreError> {
        let value = row.get_ref(i).map_err(db_err("snapshot: read row"))?;
        let bytes = value
            .as_blob()
            .map_err(|e| StoreError::Db(format!("snapshot: read row: {what}: {e}")))?;
        std::str::from_utf8(bytes)
            .map_err(|_| StoreError::Db(format!("stored {what} is not UTF-8 (damaged database)")))
    };
    let clock: i64 = row.get(3).map_err(db_err("snapshot: read row"))?;
    Ok(ContactRef {
        username: field(0, "username")?,
        contact: field(1, "contact name")?,
        phone: field(2, "phone")?,
        clock: clock_of(clock)?,
    })
}

/// A stored text field back to a `String`.
fn text(bytes: Vec<u8>, what: &str) -> Result<String, StoreError> {
    String::from_utf8(bytes)
        .map_err(|_| StoreError::Db(format!("stored {what} is not UTF-8 (damaged database)")))
}

/// A stored clock back to `u32`.
fn clock_of(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| {
        StoreError::Db(format!(
            "stored clock {v} is out of range (damaged database)"
        ))
    })
}

/// Takes the exclusive, non-blocking `flock` on `dir/rendezvous.lock` (released by the
/// kernel when the file is closed or the process dies, so a crash never leaves it stale).
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StoreError::Db(format!(
            "data directory {} is in use by another store",
            dir.display()
        ))),
        Err(e) => Err(StoreError::Db(format!(
            "cannot lock {}: {}",
            path.display(),
            std::io::Error::from(e)
        ))),
    }
}

/// Fsyncs a directory so that the entries of files created in it are durable. Filesystems
/// that cannot sync a directory (EINVAL) are tolerated.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let result = File::open(dir).and_then(|d| d.sync_all());
    match result {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => Err(StoreError::Db(format!(
            "cannot sync directory {}: {e}",
            dir.display()
        ))),
        _ => Ok(()),
    }
}
