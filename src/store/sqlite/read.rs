//! Read-only queries: what the CLI's `stock`, `history` and `verify` show.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::{db_path, map_err};
use crate::error::StoreError;
use crate::model::{EventRequest, LocationId, NodeId, NodeMeta, PoolKey, Position, Sku};
use crate::replica::WriterHead;
use crate::store::{StockRow, StoredChange};

/// Opens the database of `dir` read-only, without taking the directory lock
/// (WAL lets it read while a node writes).
pub fn open_read_only(dir: &Path) -> Result<Connection, StoreError> {
    let path = db_path(dir)?;
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_err)?;
    if version == 0 || !has_meta_table(&conn)? {
        return Err(StoreError::Corrupt(
            "no stocksync schema in the file".into(),
        ));
    }
    if version > super::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: super::SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

/// One line of an SKU's history.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryRow {
    /// Event id.
    pub id: String,
    /// Kind label.
    pub kind: String,
    /// Location.
    pub location: String,
    /// Units.
    pub qty: i64,
    /// Units beyond rights.
    pub deficit: i64,
    /// The change carrying it.
    pub position: Position,
    /// The request as given, JSON.
    pub request: serde_json::Value,
}

/// Totals of the own journal in one pool.
#[derive(Clone, Debug)]
pub struct JournalTotal {
    /// Location.
    pub location: String,
    /// SKU.
    pub sku: String,
    /// Number of events.
    pub count: i64,
    /// Units recorded beyond rights.
    pub deficit: i64,
}

/// Read queries over one connection.
pub struct ReadOnly<'a> {
    pub(super) conn: &'a Connection,
}

/// True when the file has stocksync's `meta` table.
pub(super) fn has_meta_table(conn: &Connection) -> Result<bool, StoreError> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )
        .map_err(map_err)?;
    Ok(n == 1)
}

pub(super) fn load_meta(conn: &Connection) -> Result<NodeMeta, StoreError> {
    let mut stmt = conn
        .prepare("SELECT key, value FROM meta")
        .map_err(map_err)?;
    let map: HashMap<String, String> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(map_err)?
        .collect::<Result<_, _>>()
        .map_err(map_err)?;
    let get = |k: &str| {
        map.get(k)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("meta has no {k}")))
    };
    let bad = |e: crate::error::InputError| StoreError::Corrupt(e.to_string());
    Ok(NodeMeta {
        id: NodeId::from_hex(&get("node_id")?).map_err(bad)?,
        name: get("name")?,
        location: LocationId::new(get("location")?).map_err(bad)?,
        role: get("role")?.parse().map_err(bad)?,
    })
}

/// The last change held per writer: other writers from `heads`, `me` from its own changes.
pub(super) fn load_heads(
    conn: &Connection,
    me: &NodeId,
) -> Result<HashMap<NodeId, WriterHead>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT writer, epoch, seq, hash FROM heads")
        .map_err(map_err)?;
    let mut rows = stmt.query([]).map_err(map_err)?;
    let mut heads = HashMap::new();
    while let Some(r) = rows.next().map_err(map_err)? {
        let w: Vec<u8> = r.get(0)?;
        let h: Vec<u8> = r.get(3)?;
        let writer = NodeId::from_slice(&w).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let hash: [u8; 32] = h
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("head hash is not 32 bytes".into()))?;
        let position = Position {
            epoch: r.get(1)?,
            seq: r.get::<_, i64>(2)? as u64,
        };
        heads.insert(writer, WriterHead { position, hash });
    }
    drop(rows);
    let own = conn
        .prepare_cached(
            "SELECT epoch, seq, hash FROM changes WHERE writer = ?1 ORDER BY epoch DESC, seq DESC LIMIT 1",
        )
        .map_err(map_err)?
        .query_row([&me.0[..]], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
        })
        .optional()
        .map_err(map_err)?;
    if let Some((epoch, seq, h)) = own {
        let hash: [u8; 32] = h
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("change hash is not 32 bytes".into()))?;
        let position = Position {
            epoch,
            seq: seq as u64,
        };
        heads.insert(*me, WriterHead { position, hash });
    }
    Ok(heads)
}

impl<'a> ReadOnly<'a> {
    /// Queries over `conn`.
    pub fn new(conn: &'a Connection) -> Self {
        Self { conn }
    }

    /// The node this database belongs to.
    pub fn meta(&self) -> Result<NodeMeta, StoreError> {
        load_meta(self.conn)
    }

    /// Rows of the `stock` table, optionally for one SKU.
    pub fn stock(&self, sku: Option<&str>) -> Result<Vec<StockRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT location, sku, on_hand, held, rights, deficit FROM stock
                 WHERE ?1 IS NULL OR sku = ?1 ORDER BY sku, location",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map([sku], |r| {
                Ok(StockRow {
                    location: r.get(0)?,
                    sku: r.get(1)?,
                    on_hand: r.get(2)?,
                    held: r.get(3)?,
                    rights: r.get(4)?,
                    deficit: r.get(5)?,
                })
            })
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        Ok(rows)
    }

    /// The own journal's events for `sku`, oldest first.
    pub fn history(&self, sku: &str) -> Result<Vec<HistoryRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT event_id, kind, location, qty, deficit, epoch, seq, request FROM events
                 WHERE sku = ?1 ORDER BY epoch, seq, idx",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map([sku], |r| {
                let req: String = r.get(7)?;
                Ok(HistoryRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    location: r.get(2)?,
                    qty: r.get(3)?,
                    deficit: r.get(4)?,
                    position: Position {
                        epoch: r.get(5)?,
                        seq: r.get::<_, i64>(6)? as u64,
                    },
                    request: serde_json::from_str(&req).unwrap_or(serde_json::Value::String(req)),
                })
            })
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        Ok(rows)
    }

    /// The stored signed roster, if any (its signature is not checked here).
    pub fn roster(&self) -> Result<Option<crate::fleet::SignedRoster>, StoreError> {
        super::roster::load(self.conn)
    }

    /// Every stored change, grouped by writer and in order.
    pub fn all_changes(&self) -> Result<Vec<(NodeId, StoredChange)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT writer, epoch, seq, bytes FROM changes ORDER BY writer, epoch, seq")
            .map_err(map_err)?;
        let mut rows = stmt.query([]).map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(map_err)? {
            let w: Vec<u8> = r.get(0)?;
            let writer = NodeId::from_slice(&w).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let position = Position {
                epoch: r.get(1)?,
                seq: r.get::<_, i64>(2)? as u64,
            };
            out.push((
                writer,
                StoredChange {
                    position,
                    bytes: r.get(3)?,
                    signature: None,
                },
            ));
        }
        Ok(out)
    }

    /// Every stored counter value, as `(writer, key, value)`.
    pub fn counters(&self) -> Result<Vec<(NodeId, String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT writer, key, value FROM counters")
            .map_err(map_err)?;
        let mut rows = stmt.query([]).map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(map_err)? {
            let w: Vec<u8> = r.get(0)?;
            let writer = NodeId::from_slice(&w).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((writer, r.get(1)?, r.get(2)?));
        }
        Ok(out)
    }

    /// Number of own journal events and the deficits they recorded, per pool.
    pub fn journal_totals(&self) -> Result<Vec<JournalTotal>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT location, sku, count(*), sum(deficit) FROM events GROUP BY location, sku",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JournalTotal {
                    location: r.get(0)?,
                    sku: r.get(1)?,
                    count: r.get(2)?,
                    deficit: r.get(3)?,
                })
            })
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        Ok(rows)
    }

    /// Calls `f` with every request of the own journal, in commit order, and
    /// whether the row's plain columns (kind, location, SKU, quantity) agree with it.
    pub fn journal_requests(
        &self,
        mut f: impl FnMut(EventRequest, bool),
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT request, kind, location, sku, qty FROM events ORDER BY epoch, seq, idx",
            )
            .map_err(map_err)?;
        let mut rows = stmt.query([]).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let text: String = r.get(0)?;
            let req: EventRequest =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let agree = req.kind.label() == r.get::<_, String>(1)?
                && req.pool.location.as_str() == r.get::<_, String>(2)?
                && req.pool.sku.as_str() == r.get::<_, String>(3)?
                && req.qty.as_i64() == r.get::<_, i64>(4)?;
            f(req, agree);
        }
        Ok(())
    }

    /// Open holds as `(pool, outstanding)`.
    pub fn holds(&self) -> Result<Vec<(PoolKey, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT location, sku, outstanding FROM holds")
            .map_err(map_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        let bad = |e: crate::error::InputError| StoreError::Corrupt(e.to_string());
        rows.into_iter()
            .map(|(l, k, o)| {
                Ok((
                    PoolKey::new(LocationId::new(l).map_err(bad)?, Sku::new(k).map_err(bad)?),
                    o,
                ))
            })
            .collect()
    }

    /// `PRAGMA integrity_check`: `Ok` when SQLite finds the file sound.
    pub fn integrity(&self) -> Result<(), StoreError> {
        let res: String = self
            .conn
            .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
            .map_err(map_err)?;
        if res == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(res))
        }
    }
}
