//! Storage: the trait the node's writer commits through, and its two
//! implementations (SQLite for real nodes, memory for tests and the simulator).

pub mod memory;
pub mod sqlite;

use serde::Serialize;

use crate::error::StoreError;
use crate::escrow::{CounterKey, StockBook};
use crate::fleet::{SignedRoster, VerifiedRoster};
use crate::model::{EventId, EventOutcome, EventRequest, NodeId, Position};
pub use crate::replica::Snapshot;
use crate::replica::{CommittedChange, SealedBatch};
pub use crate::replica::{RecoveredBatch, RecoveredEvent};

/// One row of the materialized `stock` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StockRow {
    /// Location.
    pub location: String,
    /// SKU.
    pub sku: String,
    /// Units in the location (Σ minted − Σ consumed).
    pub on_hand: i64,
    /// Units on hold.
    pub held: i64,
    /// This node's rights.
    pub rights: i64,
    /// Uncovered deficit over all nodes.
    pub deficit: i64,
}

/// Another writer's validated change, ready to make durable.
#[derive(Debug, Clone)]
pub struct RemoteChange {
    /// Its writer.
    pub writer: NodeId,
    /// The change.
    pub change: CommittedChange,
    /// The writer's head signature, when the change ended its bundle.
    pub signature: Option<Vec<u8>>,
    /// The writer's counters it raised.
    pub counters: Vec<(CounterKey, i64)>,
    /// Stock rows of the pools it touched, as they stand after it.
    pub stock: Vec<StockRow>,
}

/// One stored change of a writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChange {
    /// Its position.
    pub position: Position,
    /// Its Automerge bytes.
    pub bytes: Vec<u8>,
    /// The writer's head signature, when a bundle ended at this change.
    pub signature: Option<Vec<u8>>,
}

/// A durable home for one node's replica. Every method that writes is atomic:
/// all of it is durable when it returns `Ok`, none of it otherwise.
pub trait Store: Send {
    /// True when a commit is on disk when it returns (power loss included).
    /// A node syncs only over a durable store: what it sends must never be
    /// forgotten by a restart, or it would write other changes at the same
    /// positions (a fork of its own history).
    fn durable(&self) -> bool {
        true
    }
    /// Reads what the node needs to resume, for node `me`.
    fn load(&mut self, me: &NodeId) -> Result<Snapshot, StoreError>;
    /// The stored request and outcome of event `id`, if it was committed.
    fn find_event(
        &mut self,
        id: &EventId,
    ) -> Result<Option<(EventRequest, EventOutcome)>, StoreError>;
    /// Commits a sealed batch of own events with the stock rows it changed.
    fn commit_local(
        &mut self,
        me: &NodeId,
        batch: &SealedBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError>;
    /// Commits other writers' validated changes, all in one transaction.
    fn commit_remote(&mut self, changes: &[RemoteChange]) -> Result<(), StoreError>;
    /// The stored changes `range` asks for, in order (see [`ChangeRange::admits`]).
    fn changes(&mut self, range: &ChangeRange) -> Result<Vec<StoredChange>, StoreError>;
    /// The fleet roster the node installed last, as signed (`None`: none yet).
    /// The default, for stores of nodes in open mode, keeps none.
    fn roster(&mut self) -> Result<Option<SignedRoster>, StoreError> {
        Ok(None)
    }
    /// The fork proofs recorded (encoded messages' bodies, see
    /// [`crate::sync::ForkProof`]), one per forked writer. The default keeps none.
    fn forks(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(Vec::new())
    }
    /// Records the fork proof of `writer` (kept: a restart must not forget it).
    /// The default refuses: such a store cannot remember a fork.
    fn record_fork(&mut self, writer: &NodeId, proof: &[u8]) -> Result<(), StoreError> {
        let _ = (writer, proof);
        Err(StoreError::Failed("this store keeps no fork proofs".into()))
    }
    /// Commits own changes recovered from a peer (the node's own history beyond
    /// the head it held: see docs/escrow.md), their journal rows, holds and
    /// the stock rows they changed, all in one transaction. The default
    /// refuses: such a store cannot recover a node's history.
    fn commit_recovered(
        &mut self,
        me: &NodeId,
        batch: &RecoveredBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        let _ = (me, batch, stock);
        Err(StoreError::Failed(
            "this store cannot recover own history".into(),
        ))
    }
    /// The furthest own position a peer showed (`None`: none beyond what was
    /// held when it was recorded). The default keeps none.
    fn own_seen(&mut self) -> Result<Option<Position>, StoreError> {
        Ok(None)
    }
    /// Records `seen` as the furthest own position a peer showed (kept: a node
    /// restarted before it recovered that far must not write at its stale
    /// head). Keeps the furthest of what is recorded. The default refuses.
    fn record_own_seen(&mut self, seen: Position) -> Result<(), StoreError> {
        let _ = seen;
        Err(StoreError::Failed(
            "this store cannot remember own history seen ahead".into(),
        ))
    }
    /// Writes stock rows again (their pools' figures moved without a change:
    /// a retired node's rights started to count as its heir's). The default,
    /// for stores without a stock table, has nothing to write.
    fn refresh_stock(&mut self, stock: &[StockRow]) -> Result<(), StoreError> {
        let _ = stock;
        Ok(())
    }
    /// Replaces the stored roster. The default refuses: a store that keeps no
    /// roster cannot serve a node in a fleet.
    fn set_roster(&mut self, roster: &VerifiedRoster) -> Result<(), StoreError> {
        let _ = roster;
        Err(StoreError::Failed(
            "this store keeps no fleet roster".into(),
        ))
    }
}

/// Which stored changes of one writer to read, and how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRange {
    /// Whose changes.
    pub writer: NodeId,
    /// Which epoch.
    pub epoch: u32,
    /// Changes with a sequence number above this one.
    pub after: u64,
    /// Stop once this many changes are read...
    pub max_changes: usize,
    /// ...or once their bytes reach this many,
    pub max_bytes: usize,
    /// ...but, when set, only at a change that carries a head signature (a relay
    /// can only forward up to a signed change).
    pub end_signed: bool,
}

impl ChangeRange {
    /// Every change of `writer` in `epoch`.
    pub fn whole_epoch(writer: NodeId, epoch: u32) -> Self {
        Self {
            writer,
            epoch,
            after: 0,
            max_changes: usize::MAX,
            max_bytes: usize::MAX,
            end_signed: false,
        }
    }

    /// True while a change after `taken` changes of `bytes` bytes in total must
    /// still be read; `last_signed` tells whether the last one read was signed.
    pub fn admits(&self, taken: usize, bytes: usize, last_signed: bool) -> bool {
        let full = taken >= self.max_changes.max(1) || bytes >= self.max_bytes;
        !(full && (last_signed || !self.end_signed))
    }
}

impl StockRow {
    /// The row of `pool` as node `me` sees it in `book`.
    pub fn of(book: &StockBook, me: &NodeId, pool: &crate::model::PoolKey) -> Self {
        let state = book.pool(pool);
        Self {
            location: pool.location.to_string(),
            sku: pool.sku.to_string(),
            on_hand: state.map(|p| p.on_hand()).unwrap_or(0),
            held: state.map(|p| p.held()).unwrap_or(0),
            rights: book.rights(pool, me),
            deficit: book.deficit(pool),
        }
    }
}
