//! The writer: owns the replica and the store, decides a group of events in
//! order, writes them all in one transaction (group commit), and returns each
//! event's answer only after that transaction committed.

use std::collections::{HashMap, VecDeque};

use tracing::{debug, error, warn};

use crate::error::{EventError, NodeError, StoreError};
use crate::escrow::CounterKey;
use crate::fleet::{FleetId, FleetState, SignedRoster};
use crate::model::{EventId, EventOutcome, EventRequest, NodeId, NodeMeta};
use crate::replica::{Batch, CommittedChange, Replica, SealedBatch};
use crate::store::{StockRow, Store};
use crate::sync::{Effect, Input, SyncEngine, SyncEvent};

/// The answer to one event.
pub type Answer = Result<EventOutcome, NodeError>;

/// The answers of a group, by position in the group.
struct Slots(Vec<Option<Answer>>);

/// Where one event's answer goes: its position in the group.
type Slot = usize;

fn fill(slots: &mut Slots, slot: Slot, answer: Answer) {
    if let Some(s) = slots.0.get_mut(slot) {
        *s = Some(answer);
    }
}

/// A caller waiting for the group's commit.
struct Waiter {
    slot: Slot,
    /// Index of its event in the batch.
    idx: usize,
    /// Same id and request as an earlier event of the group: answered with its outcome, replayed.
    repeat: bool,
}

/// The replica and its store, used by one leader at a time.
pub(crate) struct Writer {
    meta: NodeMeta,
    store: Box<dyn Store>,
    replica: Option<Replica>,
    epoch_changes: u64,
    /// The fleet the node belongs to (`None`: open mode).
    fleet: Option<FleetId>,
    clock: super::Clock,
    /// Own changes committed and not yet taken by [`Writer::take_committed`].
    committed: Vec<CommittedChange>,
    /// Counters other writers' durable changes raised, not yet taken by
    /// [`Writer::take_applied`] (what the rights desk learns velocity from).
    applied: Vec<(NodeId, Vec<(CounterKey, i64)>)>,
    /// The replica's delta log is on (kept on across reloads).
    log_deltas: bool,
    /// The replica was rebuilt since the log was last drained: the log is incomplete.
    deltas_reset: bool,
}

/// Loads the replica of `me` from `store`, with the stored roster verified
/// under `fleet` (refused if it does not verify, or if no fleet is configured
/// while the store holds a roster: such a node must not fall back to open mode).
fn open_replica(
    store: &mut dyn Store,
    me: &crate::model::NodeId,
    epoch_changes: u64,
    fleet: Option<FleetId>,
) -> Result<Replica, StoreError> {
    let snapshot = store.load(me)?;
    let state = match (fleet, store.roster()?) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(StoreError::Roster(
                "the store holds a fleet roster but no fleet id is configured".into(),
            ))
        }
        (Some(id), stored) => Some(FleetState::new(id, stored.as_ref()).map_err(|e| {
            StoreError::Roster(format!("it does not verify under fleet {id}: {e}"))
        })?),
    };
    let mut replica = Replica::open(*me, snapshot, epoch_changes)
        .map_err(|e| StoreError::Replica(e.to_string()))?;
    replica.set_fleet(state);
    refresh_inherited_stock(store, &mut replica, me);
    Ok(replica)
}

/// Writes again the stock rows of the pools whose figures moved because a
/// retired node's rights started (or stopped) counting as its heir's. A
/// failure is logged: the rows are written again at the pool's next change.
fn refresh_inherited_stock(store: &mut dyn Store, replica: &mut Replica, me: &NodeId) {
    let pools = replica.take_inherited_pools();
    if pools.is_empty() {
        return;
    }
    let rows: Vec<StockRow> = pools
        .iter()
        .map(|p| StockRow::of(replica.book(), me, p))
        .collect();
    if let Err(e) = store.refresh_stock(&rows) {
        error!(error = %e, pools = rows.len(), "writing the stock rows of inherited rights failed");
    }
}

impl Writer {
    /// Loads the replica of `meta` from `store`.
    pub fn new(
        meta: NodeMeta,
        mut store: Box<dyn Store>,
        options: &super::NodeOptions,
        clock: super::Clock,
    ) -> Result<Self, StoreError> {
        let replica = open_replica(
            store.as_mut(),
            &meta.id,
            options.epoch_changes,
            options.fleet,
        )?;
        Ok(Self {
            meta,
            store,
            replica: Some(replica),
            epoch_changes: options.epoch_changes,
            fleet: options.fleet,
            clock,
            committed: Vec::new(),
            applied: Vec::new(),
            log_deltas: false,
            deltas_reset: false,
        })
    }

    /// The fork proofs the store kept (one that does not decode is logged and skipped).
    pub(crate) fn stored_forks(&mut self) -> Result<Vec<crate::sync::ForkProof>, StoreError> {
        let mut out = Vec::new();
        for body in self.store.forks()? {
            match crate::sync::fork::decode(&body) {
                Ok(p) => out.push(p),
                Err(e) => error!(error = %e, "a stored fork proof does not decode; skipped"),
            }
        }
        Ok(out)
    }

    /// The furthest own position a peer showed, as the store kept it.
    pub(crate) fn stored_own_seen(&mut self) -> Result<Option<crate::model::Position>, StoreError> {
        self.store.own_seen()
    }

    /// True when the store's commits survive power loss.
    pub(crate) fn durable(&self) -> bool {
        self.store.durable()
    }

    /// The replica (`None` after a failed reload).
    pub fn replica(&self) -> Option<&Replica> {
        self.replica.as_ref()
    }

    /// Verifies `roster` under the node's fleet, checks it is newer than the one
    /// held, stores it, and only then installs it; returns its version.
    pub(crate) fn install_roster(&mut self, roster: SignedRoster) -> Result<u64, NodeError> {
        let replica = self.replica.as_ref().ok_or(NodeError::Stopped)?;
        let verified = replica.check_roster(&roster)?;
        let version = verified.version();
        self.store.set_roster(&verified)?;
        let replica = self.replica.as_mut().ok_or(NodeError::Stopped)?;
        replica.install_roster(verified)?;
        refresh_inherited_stock(self.store.as_mut(), replica, &self.meta.id);
        Ok(version)
    }

    /// Turns the replica's delta log on, now and after every reload.
    pub(crate) fn log_deltas(&mut self) {
        self.log_deltas = true;
        if let Some(r) = self.replica.as_mut() {
            r.log_deltas();
        }
    }

    /// Drains the replica's delta log (`None` when it is off or there is no replica).
    pub(crate) fn take_deltas(&mut self) -> Option<crate::replica::Deltas> {
        if !self.log_deltas {
            return None;
        }
        let mut d = self.replica.as_mut()?.take_deltas();
        d.reset = std::mem::take(&mut self.deltas_reset);
        Some(d)
    }

    /// Own changes committed since the last call, in order (for the sync engine).
    pub fn take_committed(&mut self) -> Vec<CommittedChange> {
        std::mem::take(&mut self.committed)
    }

    /// Takes the counters remote changes raised since the last call.
    pub(crate) fn take_applied(&mut self) -> Vec<(NodeId, Vec<(CounterKey, i64)>)> {
        std::mem::take(&mut self.applied)
    }

    /// Runs `input` through the sync engine against this replica, performing the
    /// storage effects (loads, persists) here; returns the sends and reports.
    ///
    /// Every change one input applied goes to disk in one transaction, before
    /// any send of that input leaves: if the transaction fails, the input's sends
    /// (its ack, the relays of what it applied) are dropped, the engine forgets
    /// those changes, and the replica is rebuilt from the store, so nothing that
    /// is not durable is acknowledged or passed on.
    pub(crate) fn sync(
        &mut self,
        engine: &mut SyncEngine,
        now_ms: u64,
        input: Input,
    ) -> Vec<Effect> {
        let mut pending = VecDeque::from([input]);
        let mut out = Vec::new();
        while let Some(input) = pending.pop_front() {
            let Some(replica) = self.replica.as_mut() else {
                break;
            };
            let mut persist = Vec::new();
            let mut sends = Vec::new();
            let mut reports = Vec::new();
            let mut rosters = Vec::new();
            let mut recovered = Vec::new();
            for effect in engine.handle(replica, now_ms, input) {
                match effect {
                    Effect::Load { peer, range } => {
                        let changes = self.store.changes(&range).unwrap_or_else(|e| {
                            error!(error = %e, "loading changes to send failed");
                            Vec::new()
                        });
                        pending.push_back(Input::Loaded {
                            peer,
                            writer: range.writer,
                            changes,
                        });
                    }
                    Effect::Persist(p) => persist.push(p),
                    Effect::PersistRoster(r) => rosters.push(r),
                    Effect::RecoverOwn { batch, stock } => recovered.push((batch, stock)),
                    Effect::PersistOwnSeen(at) => {
                        // Kept in memory even if this fails: the node refuses
                        // events until it holds `at` (a restart before then
                        // relearns it from the peer).
                        if let Err(e) = self.store.record_own_seen(at) {
                            error!(error = %e, ?at, "storing the own position seen failed");
                            reports.push(Effect::Report(SyncEvent::PersistFailed {
                                changes: 0,
                                error: format!("own position seen: {e}"),
                            }));
                        }
                    }
                    Effect::PersistFork(proof) => {
                        let writer = proof.a.writer;
                        let body = crate::sync::fork::encode(&proof);
                        if let Err(e) = self.store.record_fork(&writer, &body) {
                            error!(error = %e, %writer, "storing a fork proof failed");
                            reports.push(Effect::Report(SyncEvent::PersistFailed {
                                changes: 0,
                                error: format!("fork proof: {e}"),
                            }));
                        }
                    }
                    send @ Effect::Send { .. } => sends.push(send),
                    report => reports.push(report),
                }
            }
            for r in rosters {
                // The roster stays installed in memory (it verified; a restart
                // before it is stored fetches it again from a peer).
                if let Err(e) = self.store.set_roster(&r) {
                    error!(error = %e, version = r.version(), "storing the fleet roster failed");
                    reports.push(Effect::Report(SyncEvent::PersistFailed {
                        changes: 0,
                        error: format!("fleet roster: {e}"),
                    }));
                }
            }
            // Own history recovered: one transaction per bundle, before any send
            // of this input (its ack, the announce of the new own head) leaves.
            let mut failed = None;
            for (batch, stock) in &recovered {
                if let Err(e) = self.store.commit_recovered(&self.meta.id, batch, stock) {
                    error!(error = %e, changes = batch.changes.len(), "persisting recovered own history failed; reloading");
                    failed = Some((batch.changes.len(), e));
                    break;
                }
            }
            if let Some((changes, e)) = failed {
                reports.retain(|e| {
                    !matches!(
                        e,
                        Effect::Report(SyncEvent::Applied { .. })
                            | Effect::Report(SyncEvent::OwnHistoryRecovered { .. })
                    )
                });
                out.extend(reports);
                engine.forget_recent(persist.iter().map(|p| p.writer));
                out.push(Effect::Report(SyncEvent::PersistFailed {
                    changes,
                    error: e.to_string(),
                }));
                self.reload();
                continue;
            }
            if !persist.is_empty() {
                if let Err(e) = self.store.commit_remote(&persist) {
                    error!(error = %e, changes = persist.len(), "persisting remote changes failed; dropping them");
                    reports.retain(|e| !matches!(e, Effect::Report(SyncEvent::Applied { .. })));
                    out.extend(reports);
                    engine.forget_recent(persist.iter().map(|p| p.writer));
                    out.push(Effect::Report(SyncEvent::PersistFailed {
                        changes: persist.len(),
                        error: e.to_string(),
                    }));
                    self.reload();
                    continue;
                }
                self.applied
                    .extend(persist.iter().map(|p| (p.writer, p.counters.clone())));
            }
            if let Some(replica) = self.replica.as_mut() {
                refresh_inherited_stock(self.store.as_mut(), replica, &self.meta.id);
            }
            out.extend(reports);
            out.extend(sends);
        }
        out
    }

    /// Decides and commits one group of requests; returns their answers in order.
    pub fn commit_group(&mut self, group: Vec<EventRequest>) -> Vec<Answer> {
        let mut slots = Slots((0..group.len()).map(|_| None).collect());
        let mut batch = Batch::default();
        let mut waiters = Vec::with_capacity(group.len());
        let mut in_batch: HashMap<EventId, (EventRequest, usize)> = HashMap::new();
        for (slot, req) in group.into_iter().enumerate() {
            self.take(
                req,
                slot,
                &mut slots,
                &mut batch,
                &mut waiters,
                &mut in_batch,
            );
        }
        if !batch.is_empty() {
            self.commit(batch, waiters, &mut slots);
        }
        slots
            .0
            .into_iter()
            .map(|a| a.unwrap_or(Err(NodeError::Stopped)))
            .collect()
    }

    fn take(
        &mut self,
        req: EventRequest,
        slot: Slot,
        slots: &mut Slots,
        batch: &mut Batch,
        waiters: &mut Vec<Waiter>,
        in_batch: &mut HashMap<EventId, (EventRequest, usize)>,
    ) {
        if let Some((first, idx)) = in_batch.get(&req.id) {
            if *first == req {
                waiters.push(Waiter {
                    slot,
                    idx: *idx,
                    repeat: true,
                });
            } else {
                fill(
                    slots,
                    slot,
                    Err(EventError::DuplicateEvent { id: req.id }.into()),
                );
            }
            return;
        }
        match self.store.find_event(&req.id) {
            Ok(Some((first, mut outcome))) => {
                let answer = if first == req {
                    outcome.replayed = true;
                    Ok(outcome)
                } else {
                    Err(EventError::DuplicateEvent { id: req.id }.into())
                };
                fill(slots, slot, answer);
                return;
            }
            Ok(None) => {}
            Err(e) => {
                fill(slots, slot, Err(e.into()));
                return;
            }
        }
        let Some(replica) = self.replica.as_mut() else {
            fill(slots, slot, Err(NodeError::Stopped));
            return;
        };
        match replica.stage(batch, req.clone()) {
            Ok(_) => {
                let idx = in_batch.len();
                in_batch.insert(req.id.clone(), (req, idx));
                waiters.push(Waiter {
                    slot,
                    idx,
                    repeat: false,
                });
            }
            Err(e) => {
                debug!(event = %req.id, error = %e, "refused");
                fill(slots, slot, Err(e.into()));
            }
        }
    }

    fn commit(&mut self, batch: Batch, waiters: Vec<Waiter>, slots: &mut Slots) {
        let now = (self.clock)();
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let sealed = replica.seal(batch, now);
        match self.persist(&sealed) {
            Ok(()) => {
                self.committed.extend(sealed.changes.iter().cloned());
                for w in waiters {
                    // Staged events and their indices come from the same batch, in order.
                    let mut o = sealed.events.get(w.idx).map(|(_, o)| o.clone());
                    if let Some(o) = o.as_mut() {
                        o.replayed = w.repeat;
                    }
                    fill(slots, w.slot, o.ok_or(NodeError::Stopped));
                }
                self.maybe_roll(now);
            }
            Err(e) => {
                error!(error = %e, events = sealed.events.len(), "group commit failed; reloading the replica from storage");
                for w in waiters {
                    fill(slots, w.slot, Err(e.duplicate().into()));
                }
                self.reload();
            }
        }
    }

    fn persist(&mut self, sealed: &SealedBatch) -> Result<(), StoreError> {
        let Some(replica) = self.replica.as_ref() else {
            return Err(StoreError::Failed("replica unavailable".into()));
        };
        let rows: Vec<StockRow> = sealed
            .pools
            .iter()
            .map(|p| StockRow::of(replica.book(), &self.meta.id, p))
            .collect();
        self.store.commit_local(&self.meta.id, sealed, &rows)
    }

    fn maybe_roll(&mut self, now: i64) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        if !replica.epoch_full() {
            return;
        }
        let sealed = SealedBatch {
            changes: replica.roll_epoch(now),
            events: Vec::new(),
            counters: Vec::new(),
            holds: Vec::new(),
            pools: Default::default(),
        };
        // The events before it are durable already; a failure here only leaves
        // the old epoch in force, which the reload restores.
        match self.store.commit_local(&self.meta.id, &sealed, &[]) {
            Ok(()) => self.committed.extend(sealed.changes),
            Err(e) => {
                warn!(error = %e, "epoch roll-over failed");
                self.reload();
            }
        }
    }

    /// Drops the in-memory state and rebuilds it from what the store committed.
    pub fn reload(&mut self) {
        self.replica = None;
        match open_replica(
            self.store.as_mut(),
            &self.meta.id,
            self.epoch_changes,
            self.fleet,
        ) {
            Ok(mut r) => {
                if self.log_deltas {
                    // What the old replica logged may not be durable, and what
                    // was durable may not have been drained: consumers catch up.
                    r.log_deltas();
                    self.deltas_reset = true;
                }
                self.replica = Some(r)
            }
            Err(e) => error!(error = %e, "reload failed; the node refuses events until restarted"),
        }
    }
}
