//! The SQLite [`Store`]: WAL, `synchronous=FULL` by default, one transaction per
//! group commit. The data directory is locked for the life of the store.

mod read;
mod recover;
mod roster;
mod schema;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

pub use read::HistoryRow;
pub(crate) use read::{open_read_only, ReadOnly};
pub use schema::SCHEMA_VERSION;

use super::{ChangeRange, RecoveredBatch, RemoteChange, Snapshot, StockRow, Store, StoredChange};
use crate::error::StoreError;
use crate::escrow::{CounterKey, Hold, StockBook};
use crate::fleet::{SignedRoster, VerifiedRoster};
use crate::model::{
    EventId, EventOutcome, EventRequest, LocationId, NodeId, NodeMeta, PoolKey, Position, Sku,
};
use crate::replica::{CommittedChange, SealedBatch};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "stocksync.db";
const LOCK_FILE: &str = "lock";

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit is on disk when it returns (the default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: faster; the last commits can be lost on power loss
    /// (not on a process crash). A node on such a store refuses to sync.
    Normal,
}

/// Maps SQLite's error codes to the typed errors users act on.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::DiskFull,
        Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Sqlite(e),
    }
}

/// A lock on the data directory, released when dropped.
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir` (created if missing), or fails with [`StoreError::Locked`].
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.display().to_string())),
            Err(fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// A node's replica in SQLite.
pub struct SqliteStore {
    conn: Connection,
    meta: NodeMeta,
    durability: Durability,
    _lock: DirLock,
}

fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Failed(format!(
            "journal_mode is {mode}, WAL expected"
        )));
    }
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl SqliteStore {
    /// Creates a new node's database in `dir` (created if missing).
    pub fn create(dir: &Path, meta: &NodeMeta, durability: Durability) -> Result<Self, StoreError> {
        Self::create_locked(DirLock::acquire(dir)?, dir, meta, durability)
    }

    /// Like [`SqliteStore::create`], under a lock the caller already holds.
    pub(crate) fn create_locked(
        lock: DirLock,
        dir: &Path,
        meta: &NodeMeta,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if path.exists() {
            return Err(StoreError::AlreadyInitialized(dir.display().to_string()));
        }
        let mut conn = Connection::open(&path).map_err(map_err)?;
        configure(&conn, durability)?;
        schema::migrate(&mut conn)?;
        let tx = conn.transaction()?;
        for (k, v) in [
            ("node_id", meta.id.to_hex()),
            ("name", meta.name.clone()),
            ("location", meta.location.to_string()),
            ("role", meta.role.as_str().to_string()),
        ] {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)",
                params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(Self {
            conn,
            meta: meta.clone(),
            durability,
            _lock: lock,
        })
    }

    /// Opens an existing node's database in `dir`; refuses a corrupt or foreign file untouched.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        let path = db_path(dir)?;
        let lock = DirLock::acquire(dir)?;
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(map_err)?;
        // Read before writing anything: a file that is not ours fails here, unchanged.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(map_err)?;
        if version == 0 || !read::has_meta_table(&conn)? {
            return Err(StoreError::Corrupt(
                "no stocksync schema in the file".into(),
            ));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        configure(&conn, durability).map_err(|e| match e {
            StoreError::Sqlite(s) => map_err(s),
            e => e,
        })?;
        schema::migrate(&mut conn)?;
        let meta = read::load_meta(&conn)?;
        Ok(Self {
            conn,
            meta,
            durability,
            _lock: lock,
        })
    }

    /// The node this database belongs to.
    pub fn meta(&self) -> &NodeMeta {
        &self.meta
    }

    /// The connection's `PRAGMA synchronous` as SQLite reports it (0 OFF,
    /// 1 NORMAL, 2 FULL, 3 EXTRA): what the chosen [`Durability`] really set.
    pub fn synchronous(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(map_err)
    }

    /// The connection's `PRAGMA journal_mode` as SQLite reports it (`wal`).
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(map_err)
    }

    /// Stores a change; `head` also records it as the writer's head (other writers
    /// only: the own head is the last own change row, one page fewer per sale).
    fn write_change(
        tx: &rusqlite::Transaction<'_>,
        writer: &NodeId,
        c: &CommittedChange,
        signature: Option<&[u8]>,
        head: bool,
    ) -> Result<(), rusqlite::Error> {
        tx.prepare_cached(
            "INSERT INTO changes(writer, epoch, seq, hash, bytes, sig) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            &writer.0[..],
            c.position.epoch,
            c.position.seq as i64,
            &c.hash[..],
            &c.bytes,
            signature
        ])?;
        if !head {
            return Ok(());
        }
        tx.prepare_cached(
            "INSERT INTO heads(writer, epoch, seq, hash) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(writer) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, hash = excluded.hash",
        )?
        .execute(params![&writer.0[..], c.position.epoch, c.position.seq as i64, &c.hash[..]])?;
        Ok(())
    }

    fn write_rows(
        tx: &rusqlite::Transaction<'_>,
        writer: &NodeId,
        counters: &[(CounterKey, i64)],
        stock: &[StockRow],
    ) -> Result<(), rusqlite::Error> {
        let mut up = tx.prepare_cached(
            "INSERT INTO counters(writer, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(writer, key) DO UPDATE SET value = max(value, excluded.value)",
        )?;
        for (k, v) in counters {
            up.execute(params![&writer.0[..], k.to_string(), v])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO stock(location, sku, on_hand, held, rights, deficit) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for r in stock {
            st.execute(params![
                r.location, r.sku, r.on_hand, r.held, r.rights, r.deficit
            ])?;
        }
        Ok(())
    }
}

fn db_path(dir: &Path) -> Result<PathBuf, StoreError> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::NotInitialized(dir.display().to_string()));
    }
    Ok(path)
}

impl Store for SqliteStore {
    fn durable(&self) -> bool {
        self.durability == Durability::Full
    }

    fn load(&mut self, me: &NodeId) -> Result<Snapshot, StoreError> {
        let mut book = StockBook::new();
        let mut stmt = self
            .conn
            .prepare("SELECT writer, key, value FROM counters")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let w: Vec<u8> = r.get(0)?;
            let k: String = r.get(1)?;
            let v: i64 = r.get(2)?;
            let w = NodeId::from_slice(&w).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let k = CounterKey::parse(&k).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            book.raise(w, &k, v)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        let mut holds = HashMap::new();
        drop(rows);
        drop(stmt);
        let mut stmt = self
            .conn
            .prepare("SELECT reservation, location, sku, outstanding FROM holds")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let bad = |e: crate::error::InputError| StoreError::Corrupt(e.to_string());
            let id: String = r.get(0)?;
            let pool = PoolKey::new(
                LocationId::new(r.get::<_, String>(1)?).map_err(bad)?,
                Sku::new(r.get::<_, String>(2)?).map_err(bad)?,
            );
            holds.insert(
                id.parse().map_err(bad)?,
                Hold {
                    pool,
                    outstanding: r.get(3)?,
                },
            );
        }
        drop(rows);
        drop(stmt);
        let heads = read::load_heads(&self.conn, me)?;
        let own_epoch = match heads.get(me) {
            Some(h) => self
                .changes(&ChangeRange::whole_epoch(*me, h.position.epoch))?
                .into_iter()
                .map(|c| c.bytes)
                .collect(),
            None => Vec::new(),
        };
        Ok(Snapshot {
            book,
            holds,
            heads,
            own_epoch,
        })
    }

    fn find_event(
        &mut self,
        id: &EventId,
    ) -> Result<Option<(EventRequest, EventOutcome)>, StoreError> {
        type Row = (String, i64, u32, i64, i64, i64);
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT request, deficit, epoch, seq, rights_after, on_hand_after FROM events WHERE event_id = ?1",
            )?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .optional()
            .map_err(map_err)?;
        row.map(|(req, deficit, epoch, seq, rights_after, on_hand_after)| {
            let req: EventRequest =
                serde_json::from_str(&req).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // The outcome is the request plus the columns written with it.
            let out = EventOutcome {
                id: req.id.clone(),
                kind: req.kind.label().to_string(),
                pool: req.pool.clone(),
                qty: req.qty.get(),
                deficit_created: deficit.max(0) as u64,
                rights_after,
                on_hand_after,
                position: Position {
                    epoch,
                    seq: seq.max(0) as u64,
                },
                replayed: false,
            };
            Ok((req, out))
        })
        .transpose()
    }

    fn commit_local(
        &mut self,
        me: &NodeId,
        batch: &SealedBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        (|| -> Result<(), rusqlite::Error> {
            for c in &batch.changes {
                Self::write_change(&tx, me, c, None, false)?;
            }
            // Own counters live in the own document (its epoch snapshot plus puts),
            // which restart loads anyway: no counter rows on the sale's path.
            Self::write_rows(&tx, me, &[], stock)?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO events(event_id, kind, location, sku, qty, deficit, epoch, seq, idx, request,
                                    rights_after, on_hand_after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for (idx, (r, o)) in batch.events.iter().enumerate() {
                // Plain structs of strings and integers always serialize.
                let req = serde_json::to_string(r).expect("request serializes");
                ins.execute(params![
                    r.id.as_str(),
                    o.kind,
                    r.pool.location.as_str(),
                    r.pool.sku.as_str(),
                    o.qty as i64,
                    o.deficit_created as i64,
                    o.position.epoch,
                    o.position.seq as i64,
                    idx as i64,
                    req,
                    o.rights_after,
                    o.on_hand_after
                ])?;
            }
            for (id, h) in &batch.holds {
                if h.outstanding == 0 {
                    tx.prepare_cached("DELETE FROM holds WHERE reservation = ?1")?.execute([id.as_str()])?;
                } else {
                    tx.prepare_cached("INSERT OR REPLACE INTO holds(reservation, location, sku, outstanding) VALUES (?1, ?2, ?3, ?4)")?
                        .execute(params![id.as_str(), h.pool.location.as_str(), h.pool.sku.as_str(), h.outstanding])?;
                }
            }
            Ok(())
        })()
        .map_err(map_err)?;
        tx.commit().map_err(map_err)
    }

    fn commit_remote(&mut self, changes: &[RemoteChange]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        for c in changes {
            Self::write_change(&tx, &c.writer, &c.change, c.signature.as_deref(), true)
                .map_err(map_err)?;
            Self::write_rows(&tx, &c.writer, &c.counters, &c.stock).map_err(map_err)?;
        }
        tx.commit().map_err(map_err)
    }

    fn changes(&mut self, range: &ChangeRange) -> Result<Vec<StoredChange>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, bytes, sig FROM changes WHERE writer = ?1 AND epoch = ?2 AND seq > ?3 ORDER BY seq",
        )?;
        let epoch = range.epoch;
        let rows = stmt.query_map(
            params![&range.writer.0[..], epoch, range.after as i64],
            |r| {
                Ok(StoredChange {
                    position: Position {
                        epoch,
                        seq: r.get::<_, i64>(0)? as u64,
                    },
                    bytes: r.get(1)?,
                    signature: r.get(2)?,
                })
            },
        )?;
        // Rows are read lazily: the cursor stops where the range does.
        let mut out = Vec::new();
        let mut bytes = 0;
        for row in rows {
            let c = row.map_err(map_err)?;
            let signed = c.signature.is_some();
            bytes += c.bytes.len();
            out.push(c);
            if !range.admits(out.len(), bytes, signed) {
                break;
            }
        }
        Ok(out)
    }

    fn roster(&mut self) -> Result<Option<SignedRoster>, StoreError> {
        roster::load(&self.conn)
    }

    fn forks(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        roster::load_forks(&self.conn)
    }

    fn record_fork(&mut self, writer: &NodeId, proof: &[u8]) -> Result<(), StoreError> {
        roster::save_fork(&self.conn, writer, proof)
    }

    fn set_roster(&mut self, roster: &VerifiedRoster) -> Result<(), StoreError> {
        roster::save(&self.conn, roster)
    }

    fn refresh_stock(&mut self, stock: &[StockRow]) -> Result<(), StoreError> {
        let me = NodeId([0; 32]);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        Self::write_rows(&tx, &me, &[], stock).map_err(map_err)?;
        tx.commit().map_err(map_err)
    }

    fn commit_recovered(
        &mut self,
        me: &NodeId,
        batch: &RecoveredBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        recover::commit(&mut self.conn, me, batch, stock)
    }

    fn own_seen(&mut self) -> Result<Option<Position>, StoreError> {
        recover::seen(&self.conn)
    }

    fn record_own_seen(&mut self, seen: Position) -> Result<(), StoreError> {
        recover::record_seen(&self.conn, seen)
    }
}
