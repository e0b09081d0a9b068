//! The SQLite schema and its migrations. `PRAGMA user_version` holds the version.
//!
//! Tables (see docs/storage.md for the meaning of each column):
//! - `meta(key, value)`: node id, name, location, role.
//! - `changes(writer, epoch, seq, hash, bytes, sig)`: every Automerge change held, own
//!   and others'; `sig` is the writer's head signature where a received bundle ended.
//! - `heads(writer, epoch, seq, hash)`: the last change held per other writer (the
//!   node's own head is the last row of its own changes).
//! - `counters(writer, key, value)`: other writers' counters, as last changed (the
//!   node's own counters are the values of its current epoch's document).
//! - `events(event_id, ...)`: the own journal; one row per acknowledged event,
//!   `(epoch, seq, idx)` = its change and its place in that change's batch.
//! - `holds(reservation, location, sku, outstanding)`: open reservations.
//! - `stock(location, sku, on_hand, held, rights, deficit)`: the materialized view for plain SQL.
//! - `roster(id = 1, version, body, signature)` (version 2): the fleet roster the
//!   node installed last, as the fleet authority signed it; at most one row.
//! - `forks(writer, proof)` (version 3): one checked fork proof per writer seen
//!   signing two histories (see docs/escrow.md).
//! - version 4: `events.origin` (0 answered here, 1 recovered from a peer with
//!   its first answer, 2 recovered without it) and `own_seen(id = 1, epoch,
//!   seq)`: the furthest own position a peer showed (see docs/escrow.md, "Own
//!   history seen ahead").

use rusqlite::Connection;

use crate::error::StoreError;

/// The migrations, in order; migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE changes(
    writer BLOB NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    hash BLOB NOT NULL, bytes BLOB NOT NULL, sig BLOB,
    PRIMARY KEY(writer, epoch, seq)) WITHOUT ROWID;
CREATE TABLE heads(
    writer BLOB PRIMARY KEY, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    hash BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE counters(
    writer BLOB NOT NULL, key TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY(writer, key)) WITHOUT ROWID;
CREATE TABLE events(
    event_id TEXT PRIMARY KEY, kind TEXT NOT NULL, location TEXT NOT NULL,
    sku TEXT NOT NULL, qty INTEGER NOT NULL, deficit INTEGER NOT NULL,
    epoch INTEGER NOT NULL, seq INTEGER NOT NULL, idx INTEGER NOT NULL,
    request TEXT NOT NULL, rights_after INTEGER NOT NULL,
    on_hand_after INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX events_by_sku ON events(sku, epoch, seq, idx);
CREATE TABLE holds(
    reservation TEXT PRIMARY KEY, location TEXT NOT NULL, sku TEXT NOT NULL,
    outstanding INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE stock(
    location TEXT NOT NULL, sku TEXT NOT NULL, on_hand INTEGER NOT NULL,
    held INTEGER NOT NULL, rights INTEGER NOT NULL, deficit INTEGER NOT NULL,
    PRIMARY KEY(location, sku)) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE roster(
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL,
    body BLOB NOT NULL, signature BLOB NOT NULL) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE forks(writer BLOB PRIMARY KEY, proof BLOB NOT NULL) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE events ADD COLUMN origin INTEGER NOT NULL DEFAULT 0;
CREATE TABLE own_seen(
    id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL) WITHOUT ROWID;
"#,
];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`SCHEMA_VERSION`], each step in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
