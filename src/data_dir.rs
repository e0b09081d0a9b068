//! A node's data directory: create one ([`init`]), open it for writing
//! ([`open`], locked for the life of the node) or read it while a node may be
//! running ([`Reader`]). The one path the command line, the examples and the
//! benches use.
//!
//! A directory holds `node.key` (the ed25519 secret, mode 0600), the SQLite
//! database and a lock file; once enrolled in a fleet, also [`FLEET_FILE`]
//! (the fleet id), and the transport's certificate files (see `net::cert`).

use std::path::Path;

use crate::error::{InputError, StoreError};
use crate::fleet::FleetId;
use crate::identity::Identity;
use crate::model::{LocationId, NodeMeta, Role};
use crate::node::{Clock, Node, NodeOptions};
use crate::store::sqlite::{self, DirLock, Durability, HistoryRow, SqliteStore, DB_FILE};
use crate::store::StockRow;
use crate::verify::Report;

/// Why a data directory could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A name, location or role given is not well formed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The directory or its database could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new node is: its name, home location and role, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Human name (1 to 64 of `A-Z a-z 0-9 - _ .`).
    pub name: String,
    /// Home location.
    pub location: LocationId,
    /// Role in the fleet.
    pub role: Role,
}

impl NodeSpec {
    /// Validates a node's name, location and role as given by a user.
    pub fn parse(name: &str, location: &str, role: &str) -> Result<Self, InputError> {
        let location = LocationId::new(location)?;
        let role: Role = role.parse()?;
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok_name {
            return Err(InputError::BadNodeName(name.to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            location,
            role,
        })
    }
}

/// Creates a node in `dir` (made if missing): a fresh key pair and an empty database.
///
/// Refused if `dir` already holds a node. A key left without a database by an
/// interrupted `init` is replaced (that identity never acknowledged anything).
pub fn init(dir: &Path, spec: &NodeSpec) -> Result<NodeMeta, SetupError> {
    init_with_identity(dir, spec, &Identity::generate()?)
}

/// [`init`] with a key made beforehand (online enrolment proves the key to
/// the hub before anything is written).
pub fn init_with_identity(
    dir: &Path,
    spec: &NodeSpec,
    identity: &Identity,
) -> Result<NodeMeta, SetupError> {
    // The lock first, so two inits cannot interleave key and database.
    let lock = DirLock::acquire(dir)?;
    if dir.join(DB_FILE).exists() {
        return Err(StoreError::AlreadyInitialized(dir.display().to_string()).into());
    }
    let meta = NodeMeta {
        id: identity.node_id(),
        name: spec.name.clone(),
        location: spec.location.clone(),
        role: spec.role,
    };
    // The key first: a database without its key is unusable.
    identity.replace(dir)?;
    SqliteStore::create_locked(lock, dir, &meta, Durability::Full)?;
    Ok(meta)
}

/// Opens the node in `dir` for writing: takes the directory lock, checks that
/// the key belongs to the database, loads the replica.
pub fn open(dir: &Path, options: NodeOptions, clock: Clock) -> Result<Node, SetupError> {
    open_with_durability(dir, options, Durability::Full, clock)
}

/// [`open`] with a chosen durability. [`Durability::Normal`] may lose the last
/// commits on power loss: only for bulk loads and benchmarks of nodes that
/// do not sync (see docs/storage.md).
pub fn open_with_durability(
    dir: &Path,
    options: NodeOptions,
    durability: Durability,
    clock: Clock,
) -> Result<Node, SetupError> {
    let (store, identity) = open_store(dir, durability)?;
    let meta = store.meta().clone();
    let mut options = options;
    if let Some(fleet) = fleet_id(dir)? {
        match options.fleet {
            Some(given) if given != fleet => {
                return Err(StoreError::Corrupt(format!(
                    "{FLEET_FILE} names fleet {fleet}, the node was opened for fleet {given}"
                ))
                .into())
            }
            _ => options.fleet = Some(fleet),
        }
    }
    Ok(Node::start(identity, meta, store, options, clock)?)
}

/// The file naming the fleet a node belongs to: its id (the fleet
/// authority's public key) as 64 hex digits and a newline. Absent: open mode.
pub const FLEET_FILE: &str = "fleet.id";

/// The fleet `dir`'s node belongs to, if it was enrolled in one.
pub fn fleet_id(dir: &Path) -> Result<Option<FleetId>, StoreError> {
    let text = match std::fs::read_to_string(dir.join(FLEET_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    FleetId::from_hex(text.trim())
        .map(Some)
        .map_err(|_| StoreError::Corrupt(format!("{FLEET_FILE} does not hold a fleet id")))
}

/// Records that `dir`'s node belongs to `fleet` (written to a temporary file,
/// synced, then renamed, so the file is whole or absent). Refuses to change
/// the fleet of a node already enrolled in another.
pub fn write_fleet_id(dir: &Path, fleet: FleetId) -> Result<(), StoreError> {
    match fleet_id(dir)? {
        Some(held) if held == fleet => return Ok(()),
        Some(held) => {
            return Err(StoreError::Corrupt(format!(
                "this node already belongs to fleet {held}"
            )))
        }
        None => {}
    }
    let tmp = dir.join(format!("{FLEET_FILE}.new"));
    std::fs::write(&tmp, format!("{}\n", fleet.to_hex()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(FLEET_FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Opens the store of `dir` (taking the directory lock) and its key, checked
/// to belong together, without starting a node (for offline tools).
pub fn open_store(
    dir: &Path,
    durability: Durability,
) -> Result<(SqliteStore, Identity), SetupError> {
    let store = SqliteStore::open(dir, durability)?;
    let identity = Identity::load(dir)?;
    if identity.node_id() != store.meta().id {
        return Err(StoreError::Corrupt("node.key does not belong to this database".into()).into());
    }
    Ok((store, identity))
}

/// Read access to a node's database, without the directory lock (WAL lets it
/// read while the node writes).
pub struct Reader {
    conn: rusqlite::Connection,
}

impl Reader {
    /// Opens the database of `dir` read-only; refuses foreign, corrupt or newer files.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: sqlite::open_read_only(dir)?,
        })
    }

    fn db(&self) -> sqlite::ReadOnly<'_> {
        sqlite::ReadOnly::new(&self.conn)
    }

    /// The node this database belongs to.
    pub fn meta(&self) -> Result<NodeMeta, StoreError> {
        self.db().meta()
    }

    /// The stock rows, all or of one SKU, in (location, SKU) order.
    pub fn stock(&self, sku: Option<&str>) -> Result<Vec<StockRow>, StoreError> {
        self.db().stock(sku)
    }

    /// The own journal of one SKU, oldest first.
    pub fn history(&self, sku: &str) -> Result<Vec<HistoryRow>, StoreError> {
        self.db().history(sku)
    }

    /// The fleet roster the node installed last, as signed (not verified
    /// here: verify it under the directory's [`fleet_id`]).
    pub fn roster(&self) -> Result<Option<crate::fleet::SignedRoster>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT body, signature FROM roster WHERE id = 1", [], |r| {
                Ok(crate::fleet::SignedRoster {
                    body: r.get(0)?,
                    signature: r.get(1)?,
                })
            })
            .optional()
            .map_err(sqlite::map_err)
    }

    /// Re-derives every count from the stored changes and journal (see [`crate::verify`]).
    pub fn verify(&self) -> Result<Report, StoreError> {
        let db = self.db();
        crate::verify::verify(&db, &db.meta()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetAuthority;
    use crate::node::system_clock;

    #[test]
    fn the_fleet_file_sets_the_fleet_and_is_never_changed_to_another() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        init(&dir, &NodeSpec::parse("till-1", "S1", "till").unwrap()).unwrap();
        assert_eq!(fleet_id(&dir).unwrap(), None, "open mode until enrolled");
        let a = FleetAuthority::from_seed([7; 32]).fleet();
        let b = FleetAuthority::from_seed([8; 32]).fleet();
        write_fleet_id(&dir, a).unwrap();
        write_fleet_id(&dir, a).unwrap();
        assert_eq!(fleet_id(&dir).unwrap(), Some(a));
        assert!(write_fleet_id(&dir, b).is_err());
        assert_eq!(fleet_id(&dir).unwrap(), Some(a));
        // The node opens in its fleet (no roster installed yet); not in another.
        let node = open(&dir, NodeOptions::default(), system_clock()).unwrap();
        assert_eq!(node.roster_version(), 0);
        drop(node);
        let other = NodeOptions {
            fleet: Some(b),
            ..NodeOptions::default()
        };
        assert!(open(&dir, other, system_clock()).is_err());
        std::fs::write(dir.join(FLEET_FILE), "not hex\n").unwrap();
        assert!(fleet_id(&dir).is_err());
        assert!(Reader::open(&dir).unwrap().roster().unwrap().is_none());
    }
}
