//! An in-memory [`Store`]: what tests and the simulator use. Clones share the same
//! data, so a test can drop a node (a crash) and reopen it from what was committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{ChangeRange, RecoveredBatch, RemoteChange, Snapshot, StockRow, Store, StoredChange};
use crate::error::StoreError;
use crate::escrow::{CounterKey, Hold, StockBook};
use crate::fleet::{SignedRoster, VerifiedRoster};
use crate::model::{EventId, EventOutcome, EventRequest, NodeId, Position, ReservationId};
use crate::replica::{CommittedChange, SealedBatch, WriterHead};

/// A stored change's bytes and head signature.
type StoredBytes = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct Data {
    changes: BTreeMap<(NodeId, u32, u64), StoredBytes>,
    heads: HashMap<NodeId, WriterHead>,
    counters: BTreeMap<(NodeId, CounterKey), i64>,
    events: HashMap<EventId, (EventRequest, EventOutcome)>,
    holds: HashMap<ReservationId, Hold>,
    stock: BTreeMap<(String, String), StockRow>,
    roster: Option<SignedRoster>,
    forks: BTreeMap<NodeId, Vec<u8>>,
    /// Journal rows recovered from peers: true when their first answer is known.
    recovered: HashMap<EventId, bool>,
    own_seen: Option<Position>,
    fail_commits: u32,
    commits: u64,
}

/// A store in memory; clones share data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        // A panic while holding this lock can only come from a bug in this file's
        // plain map operations; recover the data rather than cascade the panic.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `n` commits fail with [`StoreError::DiskFull`], changing nothing.
    pub fn fail_next_commits(&self, n: u32) {
        self.data().fail_commits = n;
    }

    /// The materialized stock rows, in (location, SKU) order.
    pub fn stock_rows(&self) -> Vec<StockRow> {
        self.data().stock.values().cloned().collect()
    }

    /// Number of committed own events.
    pub fn event_count(&self) -> usize {
        self.data().events.len()
    }

    /// Journal rows recovered from peers, by event id: true when the first
    /// answer was recovered too.
    pub fn recovered_events(&self) -> HashMap<EventId, bool> {
        self.data().recovered.clone()
    }

    /// Number of transactions that succeeded, local and remote (a group commit
    /// of several events counts once).
    pub fn commits(&self) -> u64 {
        self.data().commits
    }
}

fn check_fail(d: &mut Data) -> Result<(), StoreError> {
    if d.fail_commits > 0 {
        d.fail_commits -= 1;
        return Err(StoreError::DiskFull);
    }
    // Every write below is infallible: the commit succeeds from here on.
    d.commits += 1;
    Ok(())
}

fn put_change(d: &mut Data, writer: &NodeId, c: &CommittedChange, signature: Option<&[u8]>) {
    d.changes.insert(
        (*writer, c.position.epoch, c.position.seq),
        (c.bytes.clone(), signature.map(<[u8]>::to_vec)),
    );
    d.heads.insert(
        *writer,
        WriterHead {
            position: c.position,
            hash: c.hash,
        },
    );
}

fn put_rows(d: &mut Data, writer: &NodeId, counters: &[(CounterKey, i64)], stock: &[StockRow]) {
    for (k, v) in counters {
        let e = d.counters.entry((*writer, k.clone())).or_insert(*v);
        *e = (*e).max(*v);
    }
    for r in stock {
        d.stock
            .insert((r.location.clone(), r.sku.clone()), r.clone());
    }
}

impl Store for MemoryStore {
    fn load(&mut self, me: &NodeId) -> Result<Snapshot, StoreError> {
        let d = self.data();
        let mut book = StockBook::new();
        for ((w, k), v) in &d.counters {
            book.raise(*w, k, *v)
                .map_err(|e| StoreError::Replica(e.to_string()))?;
        }
        let own_epoch = match d.heads.get(me) {
            Some(h) => d
                .changes
                .range((*me, h.position.epoch, 0)..=(*me, h.position.epoch, u64::MAX))
                .map(|(_, (b, _))| b.clone())
                .collect(),
            None => Vec::new(),
        };
        Ok(Snapshot {
            book,
            holds: d.holds.clone(),
            heads: d.heads.clone(),
            own_epoch,
        })
    }

    fn find_event(
        &mut self,
        id: &EventId,
    ) -> Result<Option<(EventRequest, EventOutcome)>, StoreError> {
        Ok(self.data().events.get(id).cloned())
    }

    fn commit_local(
        &mut self,
        me: &NodeId,
        batch: &SealedBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        let mut d = self.data();
        check_fail(&mut d)?;
        for c in &batch.changes {
            put_change(&mut d, me, c, None);
        }
        // As in SQLite: own counters are rebuilt from the own document on load.
        put_rows(&mut d, me, &[], stock);
        for (r, o) in &batch.events {
            d.events.insert(r.id.clone(), (r.clone(), o.clone()));
        }
        for (id, h) in &batch.holds {
            if h.outstanding == 0 {
                d.holds.remove(id);
            } else {
                d.holds.insert(id.clone(), h.clone());
            }
        }
        Ok(())
    }

    fn commit_remote(&mut self, changes: &[RemoteChange]) -> Result<(), StoreError> {
        let mut d = self.data();
        check_fail(&mut d)?;
        for c in changes {
            put_change(&mut d, &c.writer, &c.change, c.signature.as_deref());
            put_rows(&mut d, &c.writer, &c.counters, &c.stock);
        }
        Ok(())
    }

    fn changes(&mut self, range: &ChangeRange) -> Result<Vec<StoredChange>, StoreError> {
        let d = self.data();
        let (w, e) = (range.writer, range.epoch);
        let mut out = Vec::new();
        let mut bytes = 0;
        for ((_, e, s), (b, sig)) in d
            .changes
            .range((w, e, range.after.saturating_add(1))..=(w, e, u64::MAX))
        {
            bytes += b.len();
            out.push(StoredChange {
                position: Position { epoch: *e, seq: *s },
                bytes: b.clone(),
                signature: sig.clone(),
            });
            if !range.admits(out.len(), bytes, sig.is_some()) {
                break;
            }
        }
        Ok(out)
    }

    fn roster(&mut self) -> Result<Option<SignedRoster>, StoreError> {
        Ok(self.data().roster.clone())
    }

    fn forks(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.data().forks.values().cloned().collect())
    }

    fn record_fork(&mut self, writer: &NodeId, proof: &[u8]) -> Result<(), StoreError> {
        let mut d = self.data();
        check_fail(&mut d)?;
        d.forks.entry(*writer).or_insert_with(|| proof.to_vec());
        Ok(())
    }

    fn commit_recovered(
        &mut self,
        me: &NodeId,
        batch: &RecoveredBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        let mut d = self.data();
        check_fail(&mut d)?;
        for c in &batch.changes {
            put_change(&mut d, me, c, None);
        }
        put_rows(&mut d, me, &[], stock);
        for e in &batch.events {
            let id = e.request.id.clone();
            if !d.events.contains_key(&id) {
                d.events
                    .insert(id.clone(), (e.request.clone(), e.outcome.clone()));
                d.recovered.insert(id, e.answered);
            }
        }
        for (id, h) in &batch.holds {
            if h.outstanding == 0 {
                d.holds.remove(id);
            } else {
                d.holds.insert(id.clone(), h.clone());
            }
        }
        Ok(())
    }

    fn own_seen(&mut self) -> Result<Option<Position>, StoreError> {
        Ok(self.data().own_seen)
    }

    fn record_own_seen(&mut self, seen: Position) -> Result<(), StoreError> {
        let mut d = self.data();
        check_fail(&mut d)?;
        if d.own_seen.is_none_or(|s| seen > s) {
            d.own_seen = Some(seen);
        }
        Ok(())
    }

    fn set_roster(&mut self, roster: &VerifiedRoster) -> Result<(), StoreError> {
        let mut d = self.data();
        check_fail(&mut d)?;
        d.roster = Some(roster.signed().clone());
        Ok(())
    }
}
