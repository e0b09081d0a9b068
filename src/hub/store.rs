//! The storage seam of the hub's aggregate, and its SQLite implementation.
//!
//! A store keeps the aggregate's rows ([`Records`]): interned names and
//! absolute counters keyed by their ids. The hub loads it at start, writes the
//! rows each applied batch changed in one transaction, and can read one SKU's
//! rows back. Every row is an absolute value, so writing a row again is
//! harmless. A server database can back a larger hub by implementing the trait.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};
use thiserror::Error;

use super::records::{GrantKey, LegKey, LegRecord, NodeRecord, Records, ShareRecord};
use crate::escrow::Share;
use crate::model::{LocationId, NodeId, Position, Role, Sku, TransferId};

/// `PRAGMA application_id` of a hub aggregate file ("SSHA").
pub const APPLICATION_ID: i64 = 0x5353_4841;
/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

/// Why the aggregate store failed.
#[derive(Debug, Error)]
pub enum AggregateStoreError {
    /// SQLite failed.
    #[error("aggregate store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file is not a hub aggregate, or a row does not decode.
    #[error("aggregate store is corrupt: {0}")]
    Corrupt(String),
    /// The file was written by a newer build.
    #[error("aggregate store schema {found} is newer than {supported}")]
    SchemaTooNew {
        /// Found in the file.
        found: i64,
        /// This build's.
        supported: i64,
    },
}

/// Where the hub keeps its aggregate between restarts.
pub trait AggregateStore: Send {
    /// Every stored row (an empty image for a new store).
    fn load(&mut self) -> Result<Records, AggregateStoreError>;
    /// Writes the rows of one applied batch, all or nothing.
    fn apply(&mut self, batch: &Records) -> Result<(), AggregateStoreError>;
    /// The stored share rows of one SKU id, in (location, node) order.
    fn read_sku(&mut self, sku: u32) -> Result<Vec<ShareRecord>, AggregateStoreError>;
}

const SCHEMA: &str = "
CREATE TABLE skus (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE locations (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE nodes (id INTEGER PRIMARY KEY, node BLOB NOT NULL UNIQUE, role TEXT,
    epoch INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0, heard_ms INTEGER);
CREATE TABLE transfers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE shares (sku INTEGER NOT NULL, loc INTEGER NOT NULL, node INTEGER NOT NULL,
    minted INTEGER NOT NULL, consumed INTEGER NOT NULL, reserved INTEGER NOT NULL,
    released INTEGER NOT NULL, granted_out INTEGER NOT NULL, granted_in INTEGER NOT NULL,
    PRIMARY KEY (sku, loc, node)) WITHOUT ROWID;
CREATE TABLE grants (sku INTEGER NOT NULL, loc INTEGER NOT NULL, giver INTEGER NOT NULL,
    taker INTEGER NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (sku, loc, giver, taker)) WITHOUT ROWID;
CREATE TABLE legs (transfer INTEGER NOT NULL, origin INTEGER NOT NULL, dest INTEGER NOT NULL,
    sku INTEGER NOT NULL, writer INTEGER NOT NULL, shipped INTEGER NOT NULL,
    received INTEGER NOT NULL,
    PRIMARY KEY (transfer, origin, dest, sku, writer)) WITHOUT ROWID;
";

/// The aggregate in a SQLite file (WAL; one transaction per applied batch).
///
/// `synchronous=NORMAL`: a power cut may lose the last batches, never tear
/// one. The hub then finds the lost writers behind the replica's heads and
/// catches them up from its book (see [`super::Hub`]).
pub struct SqliteAggregateStore {
    conn: Connection,
}

fn corrupt(what: impl Into<String>) -> AggregateStoreError {
    AggregateStoreError::Corrupt(what.into())
}

impl SqliteAggregateStore {
    /// Opens (creating if missing) the aggregate file at `path`; a foreign file
    /// or a newer schema is a typed error and is left as it is.
    pub fn open(path: &Path) -> Result<Self, AggregateStoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        if found > 0 && app != APPLICATION_ID {
            return Err(corrupt(format!("application id {app:#x}")));
        }
        if found > SCHEMA_VERSION {
            return Err(AggregateStoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(corrupt(format!("journal_mode is {mode}, WAL expected")));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        if found == 0 {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        Ok(Self { conn })
    }
}

fn role_text(r: Option<Role>) -> Option<&'static str> {
    r.map(|r| r.as_str())
}

fn share_of(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Share> {
    Ok(Share {
        minted: r.get(at)?,
        consumed: r.get(at + 1)?,
        reserved: r.get(at + 2)?,
        released: r.get(at + 3)?,
        granted_out: r.get(at + 4)?,
        granted_in: r.get(at + 5)?,
    })
}

/// Reads `(id, name)` rows of a name table through `make`.
fn names<T>(
    conn: &Connection,
    table: &str,
    make: impl Fn(String) -> Option<T>,
) -> Result<Vec<(u32, T)>, AggregateStoreError> {
    let mut stmt = conn.prepare(&format!("SELECT id, name FROM {table} ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let (id, name): (u32, String) = (r.get(0)?, r.get(1)?);
        let v = make(name).ok_or_else(|| corrupt(format!("bad name in {table}")))?;
        out.push((id, v));
    }
    Ok(out)
}

impl AggregateStore for SqliteAggregateStore {
    fn load(&mut self) -> Result<Records, AggregateStoreError> {
        let c = &self.conn;
        let mut out = Records {
            skus: names(c, "skus", |s| Sku::new(s).ok())?,
            locations: names(c, "locations", |s| LocationId::new(s).ok())?,
            transfers: names(c, "transfers", |s| TransferId::new(s).ok())?,
            ..Records::default()
        };
        let mut stmt =
            c.prepare("SELECT id, node, role, epoch, seq, heard_ms FROM nodes ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: u32 = r.get(0)?;
            let bytes: Vec<u8> = r.get(1)?;
            let node: [u8; 32] = bytes
                .try_into()
                .map_err(|_| corrupt("node id is not 32 bytes"))?;
            let role = match r.get::<_, Option<String>>(2)? {
                Some(s) => Some(s.parse::<Role>().map_err(|e| corrupt(e.to_string()))?),
                None => None,
            };
            out.nodes.push((id, NodeId(node)));
            out.node_records.push(NodeRecord {
                node: id,
                role,
                position: Position {
                    epoch: r.get(3)?,
                    seq: r.get(4)?,
                },
                last_heard_ms: r.get(5)?,
            });
        }
        let mut stmt = c.prepare(
            "SELECT sku, loc, node, minted, consumed, reserved, released, granted_out, granted_in
             FROM shares",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            out.shares.push(ShareRecord {
                sku: r.get(0)?,
                loc: r.get(1)?,
                node: r.get(2)?,
                share: share_of(r, 3)?,
            });
        }
        let mut stmt = c.prepare("SELECT sku, loc, giver, taker, value FROM grants")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let k = GrantKey {
                sku: r.get(0)?,
                loc: r.get(1)?,
                from: r.get(2)?,
                to: r.get(3)?,
            };
            out.grants.push((k, r.get(4)?));
        }
        let mut stmt =
            c.prepare("SELECT transfer, origin, dest, sku, writer, shipped, received FROM legs")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            out.legs.push(LegRecord {
                leg: LegKey {
                    transfer: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    sku: r.get(3)?,
                },
                writer: r.get(4)?,
                shipped: r.get(5)?,
                received: r.get(6)?,
            });
        }
        Ok(out)
    }

    fn apply(&mut self, b: &Records) -> Result<(), AggregateStoreError> {
        if b.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut s = tx.prepare_cached("INSERT INTO skus (id, name) VALUES (?1, ?2)")?;
            for (i, v) in &b.skus {
                s.execute(params![i, v.as_str()])?;
            }
            let mut s = tx.prepare_cached("INSERT INTO locations (id, name) VALUES (?1, ?2)")?;
            for (i, v) in &b.locations {
                s.execute(params![i, v.as_str()])?;
            }
            let mut s = tx.prepare_cached("INSERT INTO transfers (id, name) VALUES (?1, ?2)")?;
            for (i, v) in &b.transfers {
                s.execute(params![i, v.as_str()])?;
            }
            let mut s = tx.prepare_cached("INSERT INTO nodes (id, node) VALUES (?1, ?2)")?;
            for (i, v) in &b.nodes {
                s.execute(params![i, &v.0[..]])?;
            }
            let mut s = tx.prepare_cached(
                "UPDATE nodes SET role = ?2, epoch = ?3, seq = ?4, heard_ms = ?5 WHERE id = ?1",
            )?;
            for r in &b.node_records {
                s.execute(params![
                    r.node,
                    role_text(r.role),
                    r.position.epoch,
                    r.position.seq,
                    r.last_heard_ms
                ])?;
            }
            let mut s = tx.prepare_cached(
                "INSERT OR REPLACE INTO shares VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for r in &b.shares {
                let h = &r.share;
                s.execute(params![
                    r.sku,
                    r.loc,
                    r.node,
                    h.minted,
                    h.consumed,
                    h.reserved,
                    h.released,
                    h.granted_out,
                    h.granted_in
                ])?;
            }
            let mut s =
                tx.prepare_cached("INSERT OR REPLACE INTO grants VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for (k, v) in &b.grants {
                s.execute(params![k.sku, k.loc, k.from, k.to, v])?;
            }
            let mut s = tx.prepare_cached(
                "INSERT OR REPLACE INTO legs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in &b.legs {
                let k = r.leg;
                s.execute(params![
                    k.transfer, k.from, k.to, k.sku, r.writer, r.shipped, r.received
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn read_sku(&mut self, sku: u32) -> Result<Vec<ShareRecord>, AggregateStoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sku, loc, node, minted, consumed, reserved, released, granted_out, granted_in
             FROM shares WHERE sku = ?1 ORDER BY loc, node",
        )?;
        let mut rows = stmt.query([sku])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(ShareRecord {
                sku: r.get(0)?,
                loc: r.get(1)?,
                node: r.get(2)?,
                share: share_of(r, 3)?,
            });
        }
        Ok(out)
    }
}
