//! The `roster` table: the fleet roster the node installed last, one row.

use rusqlite::{params, Connection, OptionalExtension};

use super::map_err;
use crate::error::StoreError;
use crate::fleet::{SignedRoster, VerifiedRoster};

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
