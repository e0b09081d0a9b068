//! Store faults: a [`Store`] wrapper that, on a chosen upcoming commit, fails
//! the disk, or "crashes" the node just before or just after the commit.
//!
//! After a crash every further call fails, so nothing the dying node does
//! afterwards reaches the disk; the world then drops the node and later
//! restarts it from what the store holds.

use std::sync::{Arc, Mutex, MutexGuard};

use super::rng::SimRng;
use crate::error::StoreError;
use crate::model::{EventId, EventOutcome, EventRequest, NodeId};
use crate::replica::SealedBatch;
use crate::store::{ChangeRange, RemoteChange, Snapshot, StockRow, Store, StoredChange};

/// Which commits a fault waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitKind {
    /// A group commit of the node's own events.
    Local,
    /// A commit of other writers' changes.
    Remote,
}

/// What happens on the chosen commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Nothing is persisted and the commit returns an error; the node lives on.
    DiskFailure,
    /// Nothing is persisted and the node dies.
    CrashBefore,
    /// Everything is persisted, then the node dies before answering anyone.
    CrashAfter,
}

/// A fault armed for an upcoming commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The kind of commit it waits for.
    pub on: CommitKind,
    /// Commits of that kind to let through first.
    pub skip: u32,
    /// What happens.
    pub kind: FaultKind,
}

impl Fault {
    /// A fault drawn from the run's randomness.
    pub fn draw(rng: &mut SimRng) -> Self {
        let kind = match rng.pick(3) {
            0 => FaultKind::DiskFailure,
            1 => FaultKind::CrashBefore,
            _ => FaultKind::CrashAfter,
        };
        let on = if rng.chance(0.5) {
            CommitKind::Local
        } else {
            CommitKind::Remote
        };
        Self {
            on,
            skip: rng.range(0, 2) as u32,
            kind,
        }
    }
}

#[derive(Default)]
struct FaultState {
    armed: Option<Fault>,
    crashed: bool,
    fired: Vec<Fault>,
}

/// A store whose commits fail or crash the node as armed; clones share the
/// store and the fault state.
pub struct FaultyStore<S: Store> {
    inner: Arc<Mutex<S>>,
    state: Arc<Mutex<FaultState>>,
}

impl<S: Store> Clone for FaultyStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: self.state.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Both locks guard plain data used by one call at a time; a panic in a
    // caller cannot leave them half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn crashed() -> StoreError {
    StoreError::Failed("the node crashed".into())
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner` with no fault armed.
    pub fn new(inner: S) -> Self {
        Self {
            inner: Arc::new(Mutex::new(inner)),
            state: Arc::new(Mutex::new(FaultState::default())),
        }
    }

    /// Arms `fault`, replacing any fault not yet fired.
    pub fn arm(&self, fault: Fault) {
        lock(&self.state).armed = Some(fault);
    }

    /// Removes the armed fault, if any.
    pub fn disarm(&self) {
        lock(&self.state).armed = None;
    }

    /// True once a crash fault fired: the node must be dropped.
    pub fn crashed(&self) -> bool {
        lock(&self.state).crashed
    }

    /// The faults fired since the last call.
    pub fn take_fired(&self) -> Vec<Fault> {
        std::mem::take(&mut lock(&self.state).fired)
    }

    /// Runs `f` on the wrapped store, bypassing the faults (the checker's reads).
    pub fn with_inner<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut lock(&self.inner))
    }

    /// The fault to inject on this commit of kind `on`, if one is due.
    fn due(&self, on: CommitKind) -> Result<Option<FaultKind>, StoreError> {
        let mut s = lock(&self.state);
        if s.crashed {
            return Err(crashed());
        }
        let Some(f) = s.armed.as_mut().filter(|f| f.on == on) else {
            return Ok(None);
        };
        if f.skip > 0 {
            f.skip -= 1;
            return Ok(None);
        }
        let f = *f;
        s.armed = None;
        s.fired.push(f);
        Ok(Some(f.kind))
    }

    fn commit(
        &mut self,
        on: CommitKind,
        commit: impl FnOnce(&mut S) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self.due(on)? {
            None => commit(&mut lock(&self.inner)),
            Some(FaultKind::DiskFailure) => Err(StoreError::DiskFull),
            Some(FaultKind::CrashBefore) => {
                lock(&self.state).crashed = true;
                Err(StoreError::Failed("crashed before the commit".into()))
            }
            Some(FaultKind::CrashAfter) => {
                let r = commit(&mut lock(&self.inner));
                lock(&self.state).crashed = true;
                r.and(Err(StoreError::Failed("crashed after the commit".into())))
            }
        }
    }

    fn read<R>(
        &mut self,
        f: impl FnOnce(&mut S) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if self.crashed() {
            return Err(crashed());
        }
        f(&mut lock(&self.inner))
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn load(&mut self, me: &NodeId) -> Result<Snapshot, StoreError> {
        self.read(|s| s.load(me))
    }

    fn find_event(
        &mut self,
        id: &EventId,
    ) -> Result<Option<(EventRequest, EventOutcome)>, StoreError> {
        self.read(|s| s.find_event(id))
    }

    fn commit_local(
        &mut self,
        me: &NodeId,
        batch: &SealedBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        self.commit(CommitKind::Local, |s| s.commit_local(me, batch, stock))
    }

    fn commit_remote(&mut self, changes: &[RemoteChange]) -> Result<(), StoreError> {
        self.commit(CommitKind::Remote, |s| s.commit_remote(changes))
    }

    fn changes(&mut self, range: &ChangeRange) -> Result<Vec<StoredChange>, StoreError> {
        self.read(|s| s.changes(range))
    }

    fn durable(&self) -> bool {
        lock(&self.inner).durable()
    }

    fn roster(&mut self) -> Result<Option<crate::fleet::SignedRoster>, StoreError> {
        self.read(|s| s.roster())
    }

    fn forks(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|s| s.forks())
    }

    fn record_fork(
        &mut self,
        writer: &crate::model::NodeId,
        proof: &[u8],
    ) -> Result<(), StoreError> {
        self.commit(CommitKind::Local, |s| s.record_fork(writer, proof))
    }

    fn set_roster(&mut self, roster: &crate::fleet::VerifiedRoster) -> Result<(), StoreError> {
        self.commit(CommitKind::Local, |s| s.set_roster(roster))
    }

    fn commit_recovered(
        &mut self,
        me: &NodeId,
        batch: &crate::store::RecoveredBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        // Recovered own history comes in over sync, like remote changes.
        self.commit(CommitKind::Remote, |s| s.commit_recovered(me, batch, stock))
    }

    fn own_seen(&mut self) -> Result<Option<crate::model::Position>, StoreError> {
        self.read(|s| s.own_seen())
    }

    fn record_own_seen(&mut self, seen: crate::model::Position) -> Result<(), StoreError> {
        self.commit(CommitKind::Remote, |s| s.record_own_seen(seen))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::identity::Identity;
    use crate::model::{EventKind, LocationId, NodeMeta, Quantity, Role, Sku};
    use crate::node::{Node, NodeOptions};
    use crate::store::memory::MemoryStore;

    fn receipt(id: &str) -> EventRequest {
        EventRequest::new(
            EventId::new(id).unwrap(),
            LocationId::new("S1").unwrap(),
            Sku::new("A").unwrap(),
            Quantity::new(5).unwrap(),
            EventKind::Receipt,
        )
    }

    fn start(disk: &MemoryStore) -> (Node, FaultyStore<MemoryStore>) {
        let identity = Identity::from_seed([7; 32]);
        let meta = NodeMeta {
            id: identity.node_id(),
            name: "till-1".into(),
            location: LocationId::new("S1").unwrap(),
            role: Role::Till,
        };
        let store = FaultyStore::new(disk.clone());
        let node = Node::start(
            identity,
            meta,
            store.clone(),
            NodeOptions::default(),
            Arc::new(|| 0),
        )
        .unwrap();
        (node, store)
    }

    fn fault(skip: u32, kind: FaultKind) -> Fault {
        let on = CommitKind::Local;
        Fault { on, skip, kind }
    }

    #[test]
    fn each_fault_fires_on_its_commit_and_persists_what_it_says() {
        let disk = MemoryStore::new();
        let (node, store) = start(&disk);
        // A disk failure on the second commit: the first goes through.
        store.arm(fault(1, FaultKind::DiskFailure));
        node.execute(receipt("a")).unwrap();
        assert!(node.execute(receipt("b")).is_err());
        assert_eq!((disk.event_count(), store.crashed()), (1, false));
        assert_eq!(store.take_fired().len(), 1);
        // The node lives on; a crash before the commit persists nothing.
        node.execute(receipt("c")).unwrap();
        store.arm(fault(0, FaultKind::CrashBefore));
        assert!(node.execute(receipt("d")).is_err());
        assert_eq!((disk.event_count(), store.crashed()), (2, true));
        assert!(
            node.execute(receipt("e")).is_err(),
            "a crashed store refuses"
        );
        drop(node);
        // After a restart, a crash after the commit persists the group.
        let (node, store) = start(&disk);
        store.arm(fault(0, FaultKind::CrashAfter));
        assert!(node.execute(receipt("f")).is_err());
        assert_eq!((disk.event_count(), store.crashed()), (3, true));
        drop(node);
        let (node, _) = start(&disk);
        assert!(node.execute(receipt("f")).unwrap().replayed);
    }
}
