//! Recovery of the own history in SQLite: recovered own changes with their
//! journal rows in one transaction, and the furthest own position seen.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{map_err, SqliteStore};
use crate::error::StoreError;
use crate::model::{NodeId, Position};
use crate::store::{RecoveredBatch, StockRow};

/// `events.origin` of a row recovered with its first answer.
const RECOVERED: i64 = 1;
/// `events.origin` of a row recovered from a line without its answer.
const RECOVERED_WITHOUT_ANSWER: i64 = 2;

/// Commits recovered own changes, their journal rows, holds and stock rows.
pub(super) fn commit(
    conn: &mut Connection,
    me: &NodeId,
    batch: &RecoveredBatch,
    stock: &[StockRow],
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    (|| -> Result<(), rusqlite::Error> {
        for c in &batch.changes {
            SqliteStore::write_change(&tx, me, c, None, false)?;
        }
        SqliteStore::write_rows(&tx, me, &[], stock)?;
        // A row already there (never expected: the node had not written past
        // its head) keeps its first answer.
        let mut ins = tx.prepare_cached(
            "INSERT OR IGNORE INTO events(event_id, kind, location, sku, qty, deficit, epoch, seq, idx,
                                request, rights_after, on_hand_after, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for e in &batch.events {
            let (r, o) = (&e.request, &e.outcome);
            // Plain structs of strings and integers always serialize.
            let req = serde_json::to_string(r).expect("request serializes");
            let origin = if e.answered {
                RECOVERED
            } else {
                RECOVERED_WITHOUT_ANSWER
            };
            ins.execute(params![
                r.id.as_str(),
                o.kind,
                r.pool.location.as_str(),
                r.pool.sku.as_str(),
                o.qty as i64,
                o.deficit_created as i64,
                o.position.epoch,
                o.position.seq as i64,
                e.idx as i64,
                req,
                o.rights_after,
                o.on_hand_after,
                origin
            ])?;
        }
        for (id, h) in &batch.holds {
            if h.outstanding == 0 {
                tx.prepare_cached("DELETE FROM holds WHERE reservation = ?1")?
                    .execute([id.as_str()])?;
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

/// The furthest own position recorded as seen at a peer.
pub(super) fn seen(conn: &Connection) -> Result<Option<Position>, StoreError> {
    conn.query_row("SELECT epoch, seq FROM own_seen WHERE id = 1", [], |r| {
        Ok(Position {
            epoch: r.get(0)?,
            seq: r.get::<_, i64>(1)?.max(0) as u64,
        })
    })
    .optional()
    .map_err(map_err)
}

/// Records `at` as seen, unless a further position is recorded already.
pub(super) fn record_seen(conn: &Connection, at: Position) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO own_seen(id, epoch, seq) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq
         WHERE (excluded.epoch, excluded.seq) > (own_seen.epoch, own_seen.seq)",
        params![at.epoch, at.seq as i64],
    )
    .map_err(map_err)?;
    Ok(())
}
