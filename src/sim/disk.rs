//! Where a simulated node's replica lives between crashes: a shared in-memory
//! store, or a SQLite database in the run's temporary directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StoreError;
use crate::model::{EventId, EventOutcome, EventRequest, NodeId, NodeMeta};
use crate::replica::SealedBatch;
use crate::store::memory::MemoryStore;
use crate::store::sqlite::{Durability, SqliteStore, DB_FILE};
use crate::store::{ChangeRange, RemoteChange, Snapshot, StockRow, Store, StoredChange};

/// What survives a crash of a simulated node.
pub enum Disk {
    /// An in-memory store (clones share its data).
    Memory(MemoryStore),
    /// A SQLite database in this directory (created on first boot).
    Sqlite(PathBuf),
}

impl Disk {
    /// Opens the store for a (re)start of node `meta`.
    pub fn open(&self, meta: &NodeMeta) -> Result<SimStore, StoreError> {
        match self {
            Disk::Memory(m) => Ok(SimStore::Memory(m.clone())),
            Disk::Sqlite(dir) if dir.join(DB_FILE).is_file() => Ok(SimStore::Sqlite(Box::new(
                SqliteStore::open(dir, Durability::Full)?,
            ))),
            Disk::Sqlite(dir) => Ok(SimStore::Sqlite(Box::new(SqliteStore::create(
                dir,
                meta,
                Durability::Full,
            )?))),
        }
    }

    /// True for a SQLite node.
    pub fn is_sqlite(&self) -> bool {
        matches!(self, Disk::Sqlite(_))
    }
}

/// An open store of either kind.
pub enum SimStore {
    /// In memory.
    Memory(MemoryStore),
    /// SQLite.
    Sqlite(Box<SqliteStore>),
}

impl SimStore {
    fn get(&mut self) -> &mut dyn Store {
        match self {
            SimStore::Memory(m) => m,
            SimStore::Sqlite(s) => s.as_mut(),
        }
    }
}

impl Store for SimStore {
    fn load(&mut self, me: &NodeId) -> Result<Snapshot, StoreError> {
        self.get().load(me)
    }

    fn find_event(
        &mut self,
        id: &EventId,
    ) -> Result<Option<(EventRequest, EventOutcome)>, StoreError> {
        self.get().find_event(id)
    }

    fn commit_local(
        &mut self,
        me: &NodeId,
        batch: &SealedBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        self.get().commit_local(me, batch, stock)
    }

    fn commit_remote(&mut self, changes: &[RemoteChange]) -> Result<(), StoreError> {
        self.get().commit_remote(changes)
    }

    fn changes(&mut self, range: &ChangeRange) -> Result<Vec<StoredChange>, StoreError> {
        self.get().changes(range)
    }

    fn durable(&self) -> bool {
        match self {
            SimStore::Memory(m) => m.durable(),
            SimStore::Sqlite(s) => s.durable(),
        }
    }

    fn roster(&mut self) -> Result<Option<crate::fleet::SignedRoster>, StoreError> {
        self.get().roster()
    }

    fn forks(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.get().forks()
    }

    fn record_fork(
        &mut self,
        writer: &crate::model::NodeId,
        proof: &[u8],
    ) -> Result<(), StoreError> {
        self.get().record_fork(writer, proof)
    }

    fn set_roster(&mut self, roster: &crate::fleet::VerifiedRoster) -> Result<(), StoreError> {
        self.get().set_roster(roster)
    }

    fn commit_recovered(
        &mut self,
        me: &NodeId,
        batch: &crate::store::RecoveredBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        self.get().commit_recovered(me, batch, stock)
    }

    fn own_seen(&mut self) -> Result<Option<crate::model::Position>, StoreError> {
        self.get().own_seen()
    }

    fn record_own_seen(&mut self, seen: crate::model::Position) -> Result<(), StoreError> {
        self.get().record_own_seen(seen)
    }
}

/// A run's temporary directory for SQLite nodes, removed when dropped.
pub struct RunDir(PathBuf);

impl RunDir {
    /// Creates a fresh directory for the run of `seed` under the system's temporary directory.
    pub fn new(seed: u64) -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("stocksync-sim-{}-{seed}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
