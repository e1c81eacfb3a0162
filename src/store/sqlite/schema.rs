//! The SQLite schema and its migrations (`PRAGMA user_version`): version 1 had `contacts`
//! and `meta` (the clock); 2 adds `journal`, `cursors` and the `meta` rows `journal_id` and
//! `journal_head`; 3 adds `node_list`. Only creates and upgrades tables; never reads or
//! writes rows of them.

use rusqlite::{Connection, TransactionBehavior};

use super::{db_err, SCHEMA_VERSION};
use crate::store::{new_journal_id, StoreError};

/// Version 1 (from an empty database). `STRICT` makes SQLite refuse a value of the wrong
/// type; the key columns are BLOBs, which compare with `memcmp` (then by length), the
/// required bytewise order, and `WITHOUT ROWID` stores rows in the primary-key B-tree
/// itself, in that order. Run inside the migration's transaction.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS contacts (
    username BLOB NOT NULL,
    contact  BLOB NOT NULL,
    phone    BLOB NOT NULL,
    clock    INTEGER NOT NULL,
    PRIMARY KEY (username, contact)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('clock', 0);
";

/// Version 1 to 2: the journal, the cursors and the journal's head (0: empty). The journal id
/// is inserted beside it with a parameter ([`JOURNAL_ID_INIT_SQL`]). `journal.line` is the
/// rowid (an `INTEGER PRIMARY KEY`), so reads by line and trimming by line are B-tree seeks;
/// `kind` says which [`Change`](crate::store::Change) the row holds (1: a contact, in the other four columns, as
/// stored after the change). Line numbers and journal ids are u64 kept as i64 bit for bit.
const MIGRATE_V2: &str = "
CREATE TABLE IF NOT EXISTS journal (
    line     INTEGER PRIMARY KEY,
    kind     INTEGER NOT NULL,
    username BLOB,
    contact  BLOB,
    phone    BLOB,
    clock    INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS cursors (
    peer       TEXT PRIMARY KEY NOT NULL,
    journal_id INTEGER NOT NULL,
    line       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('journal_head', 0);
";
/// Version 2 to 3: the node list, one row holding its canonical bytes.
const MIGRATE_V3: &str = "
CREATE TABLE IF NOT EXISTS node_list (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    list BLOB NOT NULL
) STRICT;
";
const JOURNAL_ID_INIT_SQL: &str =
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('journal_id', ?1)";

/// Creates or upgrades the schema to [`SCHEMA_VERSION`] in one `IMMEDIATE` transaction (the
/// directory lock already keeps other stores out): version 0 (a new file) gets
/// [`SCHEMA_V1`], then every version below 2 gets [`MIGRATE_V2`] and a new journal id, and
/// every version below 3 gets [`MIGRATE_V3`].
pub(super) fn migrate(conn: &mut Connection, shown: &str) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err(format_args!(
            "{shown}: begin the schema transaction"
        )))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err(format_args!(
            "{shown}: cannot read the schema version"
        )))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Db(format!(
            "{shown}: schema version {version} is newer than this build's {SCHEMA_VERSION}"
        )));
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(db_err(format_args!("{shown}: cannot create the schema")))?;
    }
    if version < 2 {
        tx.execute_batch(MIGRATE_V2).map_err(db_err(format_args!(
            "{shown}: cannot migrate the schema to version 2"
        )))?;
        tx.execute(JOURNAL_ID_INIT_SQL, [new_journal_id() as i64])
            .map_err(db_err(format_args!("{shown}: cannot make the journal id")))?;
    }
    if version < 3 {
        tx.execute_batch(MIGRATE_V3).map_err(db_err(format_args!(
            "{shown}: cannot migrate the schema to version 3"
        )))?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db_err(format_args!(
                "{shown}: cannot set the schema version"
            )))?;
    }
    tx.commit()
        .map_err(db_err(format_args!("{shown}: commit the schema")))
}
