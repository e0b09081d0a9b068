//! The hub's one-time enrolment tokens: `enrol-tokens.db` (SQLite, mode
//! 0600) in the hub's data directory holds, per token, only the hash of its
//! secret, the roster entry it is for, its expiry, and who used it. A token
//! is marked used by one conditional `UPDATE`, so two uses cannot both win.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use stocksync::model::NodeId;
use stocksync::net::enrol::{Applicant, TokenRecord};

use super::FleetError;

/// The token store's file name in the hub's data directory.
pub const TOKENS_FILE: &str = "enrol-tokens.db";

/// The longest a token may live.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);

/// One token as `fleet token list` shows it (never the secret nor its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRow {
    /// Its public id (the first 16 hex digits of its hash).
    pub id: String,
    /// The node name it is for.
    pub name: String,
    /// The location.
    pub location: String,
    /// The role.
    pub role: String,
    /// Made at, Unix seconds.
    pub created_at: u64,
    /// Refused from, Unix seconds.
    pub expires_at: u64,
    /// unused, used, expired or revoked.
    pub state: String,
    /// The node id that used it (hex).
    pub used_by: Option<String>,
}

fn db_err(e: rusqlite::Error) -> FleetError {
    FleetError::Io(std::io::Error::other(format!("{TOKENS_FILE}: {e}")))
}

/// The token store of a hub's data directory.
pub struct TokenStore {
    conn: Connection,
}

/// The public id of a token whose hash is `hash`.
pub fn token_id(hash: &[u8; 32]) -> String {
    super::bundle::hex(&hash[..8])
}

impl TokenStore {
    /// Opens (creating, mode 0600) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, FleetError> {
        let path = dir.join(TOKENS_FILE);
        // Created owner-only before SQLite opens it.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        let conn = Connection::open(&path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS tokens(
               hash BLOB PRIMARY KEY NOT NULL,
               id TEXT NOT NULL UNIQUE,
               name TEXT NOT NULL, location TEXT NOT NULL, role TEXT NOT NULL,
               created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
               used_at INTEGER, used_by BLOB, revoked_at INTEGER);",
        )
        .map_err(db_err)?;
        Ok(Self { conn })
    }

    /// Stores a new token: the hash of its secret and the entry it is for.
    pub fn create(
        &self,
        hash: &[u8; 32],
        who: &Applicant,
        created_at: u64,
        expires_at: u64,
    ) -> Result<String, FleetError> {
        let id = token_id(hash);
        self.conn
            .execute(
                "INSERT INTO tokens(hash, id, name, location, role, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    &hash[..],
                    id,
                    who.name,
                    who.location,
                    who.role,
                    created_at as i64,
                    expires_at as i64
                ],
            )
            .map_err(db_err)?;
        Ok(id)
    }

    /// The token whose secret hashes to `hash`.
    pub fn get(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, FleetError> {
        self.conn
            .query_row(
                "SELECT name, location, role, expires_at, used_by, revoked_at
                 FROM tokens WHERE hash = ?1",
                params![&hash[..]],
                |r| {
                    let used_by: Option<Vec<u8>> = r.get(4)?;
                    Ok(TokenRecord {
                        hash: *hash,
                        who: Applicant {
                            name: r.get(0)?,
                            location: r.get(1)?,
                            role: r.get(2)?,
                        },
                        expires_at: r.get::<_, i64>(3)?.max(0) as u64,
                        used_by: used_by
                            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                            .map(NodeId),
                        revoked: r.get::<_, Option<i64>>(5)?.is_some(),
                    })
                },
            )
            .optional()
            .map_err(db_err)
    }

    /// Marks the token used by `node` at `now` if it is still unused,
    /// unrevoked and unexpired; false if another use won.
    pub fn claim(&self, hash: &[u8; 32], node: NodeId, now: u64) -> Result<bool, FleetError> {
        let changed = self
            .conn
            .execute(
                "UPDATE tokens SET used_at = ?1, used_by = ?2
                 WHERE hash = ?3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?1",
                params![now as i64, &node.0[..], &hash[..]],
            )
            .map_err(db_err)?;
        Ok(changed == 1)
    }

    /// Gives back a claim by `node` whose enrolment then failed.
    pub fn release(&self, hash: &[u8; 32], node: NodeId) -> Result<(), FleetError> {
        self.conn
            .execute(
                "UPDATE tokens SET used_at = NULL, used_by = NULL WHERE hash = ?1 AND used_by = ?2",
                params![&hash[..], &node.0[..]],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Every token, oldest first, with its state at `now`.
    pub fn list(&self, now: u64) -> Result<Vec<TokenRow>, FleetError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, name, location, role, created_at, expires_at, used_by, revoked_at
                 FROM tokens ORDER BY created_at, id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                let used_by: Option<Vec<u8>> = r.get(6)?;
                let revoked = r.get::<_, Option<i64>>(7)?.is_some();
                let expires_at = r.get::<_, i64>(5)?.max(0) as u64;
                let state = match (&used_by, revoked) {
                    (Some(_), _) => "used",
                    (None, true) => "revoked",
                    (None, false) if now >= expires_at => "expired",
                    _ => "unused",
                };
                Ok(TokenRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    location: r.get(2)?,
                    role: r.get(3)?,
                    created_at: r.get::<_, i64>(4)?.max(0) as u64,
                    expires_at,
                    state: state.into(),
                    used_by: used_by.map(|b| super::bundle::hex(&b)),
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Revokes the unused token `id` at `now`.
    pub fn revoke(&self, id: &str, now: u64) -> Result<(), FleetError> {
        let changed = self
            .conn
            .execute(
                "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND used_at IS NULL",
                params![now as i64, id],
            )
            .map_err(db_err)?;
        if changed == 1 {
            return Ok(());
        }
        let used: Option<Option<Vec<u8>>> = self
            .conn
            .query_row(
                "SELECT used_by FROM tokens WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        Err(FleetError::Invalid(match used {
            None => format!("no enrolment token {id}"),
            Some(by) => format!(
                "token {id} was already used by {}: revoke the member instead (`fleet revoke`)",
                by.map(|b| super::bundle::hex(&b)).unwrap_or_default()
            ),
        }))
    }
}

/// Parses a time to live: seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_ttl(text: &str) -> Result<Duration, FleetError> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = digits.parse().map_err(|_| {
        FleetError::Invalid(format!("--ttl {text:?}: expected e.g. 90s, 30m, 1h, 2d"))
    })?;
    let secs = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86_400),
        _ => None,
    };
    match secs.map(Duration::from_secs) {
        Some(d) if !d.is_zero() && d <= MAX_TTL => Ok(d),
        _ => Err(FleetError::Invalid(format!(
            "--ttl {text:?}: between 1s and 30d (units s, m, h, d)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Applicant {
        Applicant {
            name: "till-9".into(),
            location: "S2".into(),
            role: "till".into(),
        }
    }

    #[test]
    fn a_token_is_claimed_once_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let hash = [4u8; 32];
        let id = TokenStore::open(dir.path())
            .unwrap()
            .create(&hash, &who(), 10, 100)
            .unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let rec = store.get(&hash).unwrap().unwrap();
        assert_eq!((rec.who, rec.expires_at, rec.used_by), (who(), 100, None));
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        assert!(!store.claim(&hash, a, 100).unwrap(), "expired: not claimed");
        assert!(store.claim(&hash, a, 50).unwrap());
        assert!(!store.claim(&hash, b, 51).unwrap(), "the second use loses");
        assert_eq!(store.get(&hash).unwrap().unwrap().used_by, Some(a));
        assert_eq!(store.list(60).unwrap()[0].state, "used");
        assert!(
            store.revoke(&id, 60).is_err(),
            "a used token is not revoked"
        );
        store.release(&hash, b).unwrap();
        assert_eq!(
            store.get(&hash).unwrap().unwrap().used_by,
            Some(a),
            "only its user releases"
        );
        store.release(&hash, a).unwrap();
        store.revoke(&id, 60).unwrap();
        assert!(!store.claim(&hash, a, 61).unwrap(), "revoked: not claimed");
        assert_eq!(store.list(61).unwrap()[0].state, "revoked");
        assert!(store.revoke("nope", 1).is_err());
    }

    #[test]
    fn ttl_forms() {
        let s = |t: &str| parse_ttl(t).map(|d| d.as_secs()).ok();
        assert_eq!(
            (s("90"), s("90s"), s("30m"), s("1h"), s("2d")),
            (Some(90), Some(90), Some(1800), Some(3600), Some(172_800))
        );
        for bad in [
            "",
            "0",
            "0s",
            "31d",
            "1w",
            "h",
            "-1h",
            "99999999999999999999d",
        ] {
            assert_eq!(s(bad), None, "{bad}");
        }
    }
}
