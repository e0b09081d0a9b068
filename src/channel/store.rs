//! The durable outbox: one SQLite file (`channels.db` in the data directory,
//! WAL, `synchronous=FULL`) shared by every channel of a process.
//!
//! Tables (schema version in `PRAGMA user_version`, the file marked by
//! `PRAGMA application_id`):
//! - `pools(channel, location, sku, ...)`: per pool, the last value the
//!   publisher enqueued, the newest undelivered value (pending, or in flight at
//!   a crash: re-sent with the same sequence), attempts, next attempt time, last
//!   error, the dead letter, and the highest sequence delivered.
//! - `sequences(channel, sku, seq)`: the last sequence assigned per (channel, SKU).

use std::path::Path;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, Row};

use super::config::ChannelId;
use super::outbox::{DeadLetter, SlotRecord};
use super::publisher::{PublisherState, Update};
use crate::model::{LocationId, PoolKey, Sku};

/// The outbox file's name inside the data directory.
pub const CHANNELS_DB: &str = "channels.db";

/// `PRAGMA application_id` of a channel outbox ("SSCH").
const APPLICATION_ID: i64 = 0x5353_4348;

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE pools(
    channel TEXT NOT NULL, location TEXT NOT NULL, sku TEXT NOT NULL,
    published INTEGER,
    head_available INTEGER, head_seq INTEGER, head_at INTEGER,
    attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, last_error TEXT,
    dead_available INTEGER, dead_seq INTEGER, dead_at INTEGER,
    dead_attempts INTEGER, dead_error TEXT, dead_failed_at INTEGER,
    delivered_seq INTEGER NOT NULL,
    PRIMARY KEY(channel, location, sku)) WITHOUT ROWID;
CREATE TABLE sequences(
    channel TEXT NOT NULL, sku TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY(channel, sku)) WITHOUT ROWID;
"#];

/// The schema version this program writes.
pub const OUTBOX_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the outbox file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxStoreError {
    /// Not a readable channel outbox (damaged, or another kind of file).
    #[error("channel outbox is corrupt or not a channel outbox: {0}; nothing was changed")]
    Corrupt(String),
    /// Written by a newer program.
    #[error("channel outbox schema version {found} is newer than this program's {supported}; upgrade stocksync")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Highest version known.
        supported: i64,
    },
    /// The disk is full; the write did not happen.
    #[error("disk full: the channel outbox was not updated")]
    DiskFull,
    /// Any other SQLite failure.
    #[error("channel outbox: sqlite: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for OutboxStoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Self::DiskFull,
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
                Self::Corrupt(e.to_string())
            }
            _ => Self::Sqlite(e),
        }
    }
}

/// What a channel resumes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The publisher's published values and sequences.
    pub publisher: PublisherState,
    /// The outbox's slots.
    pub slots: Vec<(PoolKey, SlotRecord)>,
}

/// One pool's row to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRow {
    /// The pool.
    pub pool: PoolKey,
    /// The last value the publisher enqueued.
    pub published: Option<u64>,
    /// The outbox's state of the pool.
    pub slot: SlotRecord,
}

/// The outbox file, open.
pub struct OutboxStore {
    conn: Connection,
}

impl OutboxStore {
    /// Opens (creating if missing) the outbox at `path`; a damaged or foreign
    /// file, or a newer schema, is a typed error and is left as it is.
    pub fn open(path: &Path) -> Result<Self, OutboxStoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        if found > 0 && app != APPLICATION_ID {
            return Err(OutboxStoreError::Corrupt(format!(
                "{}: application id {app:#x}",
                path.display()
            )));
        }
        if found > OUTBOX_SCHEMA_VERSION {
            return Err(OutboxStoreError::SchemaTooNew {
                found,
                supported: OUTBOX_SCHEMA_VERSION,
            });
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OutboxStoreError::Corrupt(format!(
                "journal_mode is {mode}, WAL expected"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Self { conn })
    }

    /// Everything stored for `channel`.
    pub fn load(&self, channel: &ChannelId) -> Result<Loaded, OutboxStoreError> {
        let mut out = Loaded::default();
        let mut stmt = self.conn.prepare(
            "SELECT location, sku, published, head_available, head_seq, head_at,
                    attempts, next_at, last_error, dead_available, dead_seq, dead_at,
                    dead_attempts, dead_error, dead_failed_at, delivered_seq
             FROM pools WHERE channel = ?1",
        )?;
        let mut rows = stmt.query([channel.as_str()])?;
        while let Some(r) = rows.next()? {
            let row = decode_pool(r)?;
            if let Some(v) = row.published {
                out.publisher.published.insert(row.pool.clone(), v);
            }
            out.slots.push((row.pool, row.slot));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT sku, seq FROM sequences WHERE channel = ?1")?;
        let mut rows = stmt.query([channel.as_str()])?;
        while let Some(r) = rows.next()? {
            let sku = Sku::new(r.get::<_, String>(0)?).map_err(corrupt)?;
            out.publisher.sequences.insert(sku, unsigned(r.get(1)?)?);
        }
        Ok(out)
    }

    /// Writes `rows` and `sequences` of `channel` in one durable transaction.
    pub fn save(
        &mut self,
        channel: &ChannelId,
        rows: &[PoolRow],
        sequences: &[(Sku, u64)],
    ) -> Result<(), OutboxStoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO pools VALUES
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )?;
            for row in rows {
                let s = &row.slot;
                let h = s.head.as_ref();
                let d = s.dead.as_ref();
                put.execute(params![
                    channel.as_str(),
                    row.pool.location.as_str(),
                    row.pool.sku.as_str(),
                    row.published.map(signed),
                    h.map(|u| signed(u.available)),
                    h.map(|u| signed(u.sequence)),
                    h.map(|u| signed(u.updated_at_ms)),
                    i64::from(s.attempts),
                    signed(s.next_at_ms),
                    s.last_error,
                    d.map(|d| signed(d.update.available)),
                    d.map(|d| signed(d.update.sequence)),
                    d.map(|d| signed(d.update.updated_at_ms)),
                    d.map(|d| i64::from(d.attempts)),
                    d.map(|d| d.error.as_str()),
                    d.map(|d| signed(d.failed_at_ms)),
                    signed(s.delivered_seq),
                ])?;
            }
            let mut seq =
                tx.prepare_cached("INSERT OR REPLACE INTO sequences VALUES (?1, ?2, ?3)")?;
            for (sku, n) in sequences {
                seq.execute(params![channel.as_str(), sku.as_str(), signed(*n)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn corrupt(e: impl std::fmt::Display) -> OutboxStoreError {
    OutboxStoreError::Corrupt(e.to_string())
}

/// Values above `i64::MAX` never occur (quantities and times are far below); saturate.
fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> Result<u64, OutboxStoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative value {v}")))
}

fn opt_unsigned(v: Option<i64>) -> Result<Option<u64>, OutboxStoreError> {
    v.map(unsigned).transpose()
}

fn decode_pool(r: &Row<'_>) -> Result<PoolRow, OutboxStoreError> {
    let location = LocationId::new(r.get::<_, String>(0)?).map_err(corrupt)?;
    let sku = Sku::new(r.get::<_, String>(1)?).map_err(corrupt)?;
    let update = |a: Option<i64>, s: Option<i64>, t: Option<i64>| -> Result<_, OutboxStoreError> {
        Ok(
            match (opt_unsigned(a)?, opt_unsigned(s)?, opt_unsigned(t)?) {
                (Some(available), Some(sequence), Some(updated_at_ms)) => Some(Update {
                    location: location.clone(),
                    sku: sku.clone(),
                    available,
                    updated_at_ms,
                    sequence,
                }),
                (None, None, None) => None,
                _ => return Err(corrupt("a half-written value")),
            },
        )
    };
    let head = update(r.get(3)?, r.get(4)?, r.get(5)?)?;
    let dead_update = update(r.get(9)?, r.get(10)?, r.get(11)?)?;
    let dead = match dead_update {
        Some(update) => Some(DeadLetter {
            update,
            attempts: u32::try_from(r.get::<_, Option<i64>>(12)?.unwrap_or(0)).map_err(corrupt)?,
            error: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
            failed_at_ms: opt_unsigned(r.get(14)?)?.unwrap_or(0),
        }),
        None => None,
    };
    Ok(PoolRow {
        pool: PoolKey::new(location.clone(), sku.clone()),
        published: opt_unsigned(r.get(2)?)?,
        slot: SlotRecord {
            head,
            attempts: u32::try_from(r.get::<_, i64>(6)?).map_err(corrupt)?,
            next_at_ms: unsigned(r.get(7)?)?,
            last_error: r.get(8)?,
            dead,
            delivered_seq: unsigned(r.get(15)?)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolKey {
        PoolKey::new(LocationId::new("WH").unwrap(), Sku::new("A").unwrap())
    }

    fn update(seq: u64) -> Update {
        Update {
            location: LocationId::new("WH").unwrap(),
            sku: Sku::new("A").unwrap(),
            available: 10 + seq,
            updated_at_ms: 1_000 * seq,
            sequence: seq,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHANNELS_DB);
        let ch = ChannelId::new("web").unwrap();
        let row = PoolRow {
            pool: pool(),
            published: Some(13),
            slot: SlotRecord {
                head: Some(update(3)),
                attempts: 2,
                next_at_ms: 77,
                last_error: Some("503".into()),
                dead: Some(DeadLetter {
                    update: update(1),
                    attempts: 1,
                    error: "400 bad".into(),
                    failed_at_ms: 5,
                }),
                delivered_seq: 2,
            },
        };
        {
            let mut s = OutboxStore::open(&path).unwrap();
            s.save(&ch, std::slice::from_ref(&row), &[(pool().sku, 3)])
                .unwrap();
        }
        let s = OutboxStore::open(&path).unwrap();
        let l = s.load(&ch).unwrap();
        assert_eq!(l.slots, vec![(pool(), row.slot)]);
        assert_eq!(l.publisher.published.get(&pool()), Some(&13));
        assert_eq!(l.publisher.sequences.get(&pool().sku), Some(&3));
        assert!(s
            .load(&ChannelId::new("other").unwrap())
            .unwrap()
            .slots
            .is_empty());
    }

    #[test]
    fn foreign_corrupt_and_newer_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        assert!(matches!(
            OutboxStore::open(&garbage),
            Err(OutboxStoreError::Corrupt(_))
        ));
        assert_eq!(std::fs::read(&garbage).unwrap(), vec![0x5a; 8192]);

        let newer = dir.path().join("newer.db");
        drop(OutboxStore::open(&newer).unwrap());
        let c = Connection::open(&newer).unwrap();
        c.pragma_update(None, "user_version", OUTBOX_SCHEMA_VERSION + 1)
            .unwrap();
        drop(c);
        assert!(matches!(
            OutboxStore::open(&newer),
            Err(OutboxStoreError::SchemaTooNew { .. })
        ));

        let foreign = dir.path().join("foreign.db");
        let c = Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t(x); PRAGMA user_version = 1;")
            .unwrap();
        drop(c);
        assert!(matches!(
            OutboxStore::open(&foreign),
            Err(OutboxStoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_bad_row_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHANNELS_DB);
        drop(OutboxStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO pools VALUES ('web','WH','A',NULL,5,NULL,NULL,0,0,NULL,NULL,NULL,NULL,NULL,NULL,NULL,0)",
            [],
        )
        .unwrap();
        drop(c);
        let s = OutboxStore::open(&path).unwrap();
        assert!(matches!(
            s.load(&ChannelId::new("web").unwrap()),
            Err(OutboxStoreError::Corrupt(_))
        ));
    }
}
