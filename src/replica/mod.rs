//! A node's replica: the stock book of all writers, its own holds, its own
//! Automerge document and the head of every writer it has heard from.
//!
//! Pure: no disk, no clock (times come in as arguments). The node's writer
//! stages events into a [`Batch`], seals it into one change, makes it durable, and
//! only then acknowledges.

mod audit;
mod fleet;
mod head_index;
mod own_doc;
pub mod raw_change;
mod recover;
mod remote;
mod retired;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use head_index::{HeadIndex, RangeSummary, WriterRange, MAX_DEPTH};
pub use own_doc::CommittedChange;
pub(crate) use own_doc::{CounterWrite, OwnDoc};
pub use recover::{RecoverError, RecoveredBatch, RecoveredEvent};
pub use remote::{validate, ValidChange, Verdict, WriterHead, MAX_CHANGE_BYTES};

use crate::error::{ChangeError, EventError};
use crate::escrow::{self, CounterKey, Hold, Holds, StockBook};
use crate::model::{EventOutcome, EventRequest, NodeId, PoolKey, ReservationId};

/// Events staged for one change, not yet sealed.
#[derive(Debug, Default)]
pub struct Batch {
    writes: BTreeMap<CounterKey, (i64, i64)>,
    events: Vec<(EventRequest, EventOutcome)>,
    holds: BTreeMap<ReservationId, Hold>,
}

impl Batch {
    /// True when nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// A batch turned into one durable-to-be change.
#[derive(Debug)]
pub struct SealedBatch {
    /// The own changes to store, in order: one for a group of events (none if no
    /// event was staged), or the snapshot changes of an epoch roll-over.
    pub changes: Vec<CommittedChange>,
    /// The events and their outcomes, positions filled in.
    pub events: Vec<(EventRequest, EventOutcome)>,
    /// Own counters after the batch: `(key, value)`.
    pub counters: Vec<(CounterKey, i64)>,
    /// Holds changed by the batch (`outstanding == 0` means closed).
    pub holds: Vec<(ReservationId, Hold)>,
    /// Pools whose sums changed.
    pub pools: BTreeSet<PoolKey>,
}

/// A writer's change this replica applied (own or remote), as the delta log records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heard {
    /// The writer.
    pub writer: NodeId,
    /// The change's position.
    pub position: crate::model::Position,
    /// The change's time (the writer's clock, Unix milliseconds).
    pub time_ms: i64,
}

/// What the replica applied since the delta log was last drained.
#[derive(Clone, Debug, Default)]
pub struct Deltas {
    /// Every counter raise, in order.
    pub raises: Vec<escrow::Raise>,
    /// Every change applied, in order.
    pub heard: Vec<Heard>,
    /// True when the log is incomplete (the replica was rebuilt from storage):
    /// a consumer must catch up from the whole book.
    pub reset: bool,
}

/// Everything a node needs to resume: every writer's counters, its own holds and heads.
#[derive(Default)]
pub struct Snapshot {
    /// Every writer's counters.
    pub book: StockBook,
    /// This node's open holds.
    pub holds: Holds,
    /// The last change held from each writer.
    pub heads: HashMap<NodeId, WriterHead>,
    /// The own document's changes in its current epoch, in order.
    pub own_epoch: Vec<Vec<u8>>,
}

/// A node's replica state.
pub struct Replica {
    me: NodeId,
    book: StockBook,
    holds: Holds,
    doc: OwnDoc,
    heads: HeadIndex,
    epoch_changes: u64,
    /// The fleet and its roster; `None` is open mode (no membership checks).
    fleet: Option<crate::fleet::FleetState>,
    /// Pools whose figures an inheritance change moved, for the stock table.
    inherited_pools: BTreeSet<PoolKey>,
    /// Changes applied since the last drain, kept only while the book logs raises.
    heard: Vec<Heard>,
}

impl Replica {
    /// Rebuilds a replica from what storage held for node `me`.
    ///
    /// Loads only the own document's current epoch, so the cost is bounded by
    /// `epoch_changes`, not by the length of the history.
    pub fn open(me: NodeId, snapshot: Snapshot, epoch_changes: u64) -> Result<Self, ChangeError> {
        let Snapshot {
            book,
            holds,
            heads,
            own_epoch,
        } = snapshot;
        let (doc, own) = match heads.get(&me) {
            Some(h) => {
                let (doc, own) = OwnDoc::load(&me, h.position.epoch, &own_epoch)
                    .map_err(ChangeError::Malformed)?;
                if doc.seq() != h.position.seq {
                    return Err(ChangeError::Malformed(format!(
                        "own epoch {} has {} changes, head says {}",
                        h.position.epoch,
                        doc.seq(),
                        h.position.seq
                    )));
                }
                (doc, own)
            }
            None => (OwnDoc::new(&me, 1), Vec::new()),
        };
        // The own counters are the values of the current epoch's document: its
        // snapshot change put every non-zero counter, later changes put the rest.
        let mut book = book;
        for (k, v) in own {
            book.raise(me, &k, v)?;
        }
        Ok(Self {
            me,
            book,
            holds,
            doc,
            heads: HeadIndex::from_heads(heads),
            epoch_changes: epoch_changes.max(1),
            fleet: None,
            inherited_pools: BTreeSet::new(),
            heard: Vec::new(),
        })
    }

    /// This node's id.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// The stock book.
    pub fn book(&self) -> &StockBook {
        &self.book
    }

    /// Starts the opt-in delta log: every counter raise and applied change from
    /// now on is kept until [`Replica::take_deltas`] (one `Vec` push each).
    pub fn log_deltas(&mut self) {
        self.book.log_raises();
    }

    /// Takes what the delta log holds (empty when it is off).
    pub fn take_deltas(&mut self) -> Deltas {
        Deltas {
            raises: self.book.take_raises(),
            heard: std::mem::take(&mut self.heard),
            reset: false,
        }
    }

    /// This node's open holds.
    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    /// The last change held from each writer.
    pub fn heads(&self) -> &HeadIndex {
        &self.heads
    }

    /// Decides `req` and, if accepted, applies it to the book and stages it in `batch`.
    pub fn stage(
        &mut self,
        batch: &mut Batch,
        req: EventRequest,
    ) -> Result<EventOutcome, EventError> {
        req.validate()?;
        if let Some(roster) = self.roster() {
            // A writer never builds a change its receivers would refuse.
            for (key, _) in escrow::counter_deltas(&req) {
                roster
                    .check_write(&self.me, &key)
                    .map_err(EventError::NotPermitted)?;
            }
        }
        let plan = escrow::plan(&self.book, &self.holds, &self.me, &req)?;
        for (k, v) in &plan.writes {
            let old = self.book.counter(&self.me, k);
            batch.writes.entry(k.clone()).or_insert((old, *v)).1 = *v;
        }
        escrow::apply(&mut self.book, &mut self.holds, &self.me, &plan)?;
        if let Some((id, h)) = &plan.hold {
            batch.holds.insert(id.clone(), h.clone());
        }
        let pool = self.book.pool(&req.pool);
        let outcome = EventOutcome {
            id: req.id.clone(),
            kind: req.kind.label().to_string(),
            pool: req.pool.clone(),
            qty: req.qty.get(),
            deficit_created: plan.deficit_created,
            rights_after: self.book.rights(&req.pool, &self.me),
            on_hand_after: pool.map(|p| p.on_hand()).unwrap_or(0),
            position: Default::default(),
            replayed: false,
        };
        batch.events.push((req, outcome.clone()));
        Ok(outcome)
    }

    /// Turns the staged events into one change of the own document.
    pub fn seal(&mut self, batch: Batch, time_ms: i64) -> SealedBatch {
        let writes: Vec<CounterWrite> = batch
            .writes
            .iter()
            .map(|(k, (old, new))| CounterWrite {
                key: k.clone(),
                old: *old,
                new: *new,
            })
            .collect();
        let lines: Vec<audit::AuditLine> = batch
            .events
            .iter()
            .map(|(r, o)| audit::AuditLine {
                id: r.id.as_str(),
                kind: &r.kind,
                loc: r.pool.location.as_str(),
                sku: r.pool.sku.as_str(),
                qty: r.qty.get(),
                r#ref: r.reference.as_deref(),
                deficit: o.deficit_created,
                policy: r.policy,
                rights: o.rights_after,
                on_hand: o.on_hand_after,
            })
            .collect();
        // Serializing plain structs of strings and integers cannot fail.
        let events_json = serde_json::to_string(&lines).expect("audit lines serialize");
        let change = self.doc.commit(&writes, &events_json, time_ms);
        if let Some(c) = &change {
            self.heads.insert(
                self.me,
                WriterHead {
                    position: c.position,
                    hash: c.hash,
                },
            );
            if self.book.logs_raises() {
                self.heard.push(Heard {
                    writer: self.me,
                    position: c.position,
                    time_ms,
                });
            }
        }
        let position = change.as_ref().map(|c| c.position).unwrap_or_default();
        let events = batch
            .events
            .into_iter()
            .map(|(r, mut o)| {
                o.position = position;
                (r, o)
            })
            .collect();
        let pools = writes
            .iter()
            .filter_map(|w| w.key.pool().cloned())
            .collect();
        SealedBatch {
            changes: change.into_iter().collect(),
            events,
            counters: writes.into_iter().map(|w| (w.key, w.new)).collect(),
            holds: batch.holds.into_iter().collect(),
            pools,
        }
    }

    /// The own document's epoch and number of changes in it.
    pub fn own_position(&self) -> crate::model::Position {
        crate::model::Position {
            epoch: self.doc.epoch(),
            seq: self.doc.seq(),
        }
    }

    /// True when the own document has reached its epoch length and should roll over.
    pub fn epoch_full(&self) -> bool {
        self.doc.seq() >= self.epoch_changes
    }

    /// Starts a new epoch: a fresh own document whose first changes snapshot
    /// every own counter. They must be made durable together (one transaction).
    pub fn roll_epoch(&mut self, time_ms: i64) -> Vec<CommittedChange> {
        let snapshot: Vec<(CounterKey, i64)> = self
            .book
            .counters_of(&self.me)
            .map(|(k, v)| (k.clone(), v))
            .collect();
        let (doc, changes) = OwnDoc::start_epoch(
            &self.me,
            self.doc.epoch() + 1,
            snapshot.into_iter(),
            time_ms,
        );
        self.doc = doc;
        if let Some(c) = changes.last() {
            self.heads.insert(
                self.me,
                WriterHead {
                    position: c.position,
                    hash: c.hash,
                },
            );
        }
        changes
    }

    /// Validates and applies a change of another writer; returns the counters it raised.
    pub fn apply_remote(
        &mut self,
        writer: &NodeId,
        epoch: u32,
        bytes: &[u8],
    ) -> Result<Option<ValidChange>, ChangeError> {
        if writer == &self.me {
            // Only this node writes its own document; a copy coming back is never news.
            return Ok(None);
        }
        let roster = self.roster();
        match validate(
            &self.book,
            self.heads.get(writer),
            roster,
            writer,
            epoch,
            bytes,
        )? {
            Verdict::Stale => Ok(None),
            Verdict::Apply(valid) => {
                // `validate` checked every value lies in 0..=MAX_COUNTER, the only
                // condition under which `raise` fails, so no write below can fail
                // half-way through.
                for (k, v) in &valid.writes {
                    self.book.raise(*writer, k, *v)?;
                }
                self.heads.insert(*writer, valid.head);
                if self.roster().is_some_and(|r| r.heir_of(writer).is_some()) {
                    // A retired writer's history may now reach its revocation point.
                    self.refresh_inheritance();
                }
                if self.book.logs_raises() {
                    self.heard.push(Heard {
                        writer: *writer,
                        position: valid.head.position,
                        time_ms: valid.time_ms,
                    });
                }
                Ok(Some(valid))
            }
        }
    }
}
