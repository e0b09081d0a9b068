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
use crate::store::{RemoteChange, Snapshot, StockRow, Store, StoredChange};

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

    fn changes(
        &mut self,
        writer: &NodeId,
        epoch: u32,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredChange>, StoreError> {
        self.read(|s| s.changes(writer, epoch, after, limit))
    }
}
