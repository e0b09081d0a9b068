//! The `roster` table (the fleet roster the node installed last, one row) and
//! the `forks` table (one checked fork proof per forked writer).

use rusqlite::{params, Connection, OptionalExtension};

use super::map_err;
use crate::error::StoreError;
use crate::fleet::{SignedRoster, VerifiedRoster};
use crate::model::NodeId;

/// The stored signed roster, if any (verified again by the node that loads it).
pub(super) fn load(conn: &Connection) -> Result<Option<SignedRoster>, StoreError> {
    conn.query_row("SELECT body, signature FROM roster WHERE id = 1", [], |r| {
        Ok(SignedRoster {
            body: r.get(0)?,
            signature: r.get(1)?,
        })
    })
    .optional()
    .map_err(map_err)
}

/// Replaces the stored roster (one statement: atomic and, under
/// `synchronous=FULL`, durable when it returns).
pub(super) fn save(conn: &Connection, roster: &VerifiedRoster) -> Result<(), StoreError> {
    let signed = roster.signed();
    // Versions count signed edits at HQ: far below 2^63.
    let version = i64::try_from(roster.version()).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT OR REPLACE INTO roster(id, version, body, signature) VALUES (1, ?1, ?2, ?3)",
        params![version, signed.body, signed.signature],
    )
    .map_err(map_err)?;
    Ok(())
}

/// The stored fork proofs (checked again by the node that loads them).
pub(super) fn load_forks(conn: &Connection) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT proof FROM forks ORDER BY writer")
        .map_err(map_err)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(map_err)?;
    rows.collect::<Result<Vec<Vec<u8>>, _>>().map_err(map_err)
}

/// Records the fork proof of `writer`; the first one kept stays.
pub(super) fn save_fork(
    conn: &Connection,
    writer: &NodeId,
    proof: &[u8],
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO forks(writer, proof) VALUES (?1, ?2)",
        params![&writer.0[..], proof],
    )
    .map_err(map_err)?;
    Ok(())
}
