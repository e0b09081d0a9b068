//! The commit loop: one thread owns the replica and the store, takes every event
//! waiting in its queue, decides each, writes them all in one transaction (group
//! commit) and answers each caller only after that transaction committed.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

use tracing::{debug, error, info_span, warn};

use crate::error::{EventError, NodeError, StoreError};
use crate::model::{EventId, EventOutcome, EventRequest, NodeMeta};
use crate::replica::{Batch, Replica, SealedBatch};
use crate::store::{StockRow, Store};

/// A caller's answer channel.
pub type Reply = Sender<Result<EventOutcome, NodeError>>;

/// A read of the replica, run on the loop's thread between batches.
pub type Query = Box<dyn FnOnce(&Replica) + Send>;

/// Work for the commit loop.
pub enum Command {
    /// Decide, commit and answer an event.
    Event(EventRequest, Reply),
    /// Run a read of the replica once the current batch is committed.
    Query(Query),
}

/// A caller waiting for the batch's commit.
struct Waiter {
    reply: Reply,
    /// Index of its event in the batch.
    idx: usize,
    /// Same id and request as an earlier event of the batch: answered with its outcome, replayed.
    repeat: bool,
}

/// The loop's state.
pub struct CommitLoop<S: Store> {
    pub(super) meta: NodeMeta,
    pub(super) store: S,
    pub(super) replica: Option<Replica>,
    pub(super) epoch_changes: u64,
    pub(super) max_batch: usize,
    pub(super) clock: super::Clock,
}

impl<S: Store> CommitLoop<S> {
    /// Runs until every sender is dropped.
    pub fn run(mut self, rx: Receiver<Command>) {
        let span = info_span!("commit_loop", node = %self.meta.id, name = %self.meta.name);
        let _g = span.enter();
        while let Ok(first) = rx.recv() {
            let mut batch = Batch::default();
            let mut waiters = Vec::new();
            let mut in_batch: HashMap<EventId, (EventRequest, usize)> = HashMap::new();
            let mut queries = Vec::new();
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                self.take(cmd, &mut batch, &mut waiters, &mut in_batch, &mut queries);
                if waiters.len() >= self.max_batch {
                    break;
                }
                match rx.try_recv() {
                    Ok(c) => next = Some(c),
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
                }
            }
            if !batch.is_empty() {
                self.commit(batch, waiters);
            }
            for f in queries {
                if let Some(r) = &self.replica {
                    f(r);
                }
            }
        }
    }

    fn take(
        &mut self,
        cmd: Command,
        batch: &mut Batch,
        waiters: &mut Vec<Waiter>,
        in_batch: &mut HashMap<EventId, (EventRequest, usize)>,
        queries: &mut Vec<Query>,
    ) {
        let (req, reply) = match cmd {
            Command::Query(f) => {
                // Run after the batch commits, so a query never sees staged state.
                queries.push(f);
                return;
            }
            Command::Event(req, reply) => (req, reply),
        };
        if let Some((first, idx)) = in_batch.get(&req.id) {
            if *first == req {
                waiters.push(Waiter {
                    reply,
                    idx: *idx,
                    repeat: true,
                });
            } else {
                let _ = reply.send(Err(EventError::DuplicateEvent { id: req.id }.into()));
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
                let _ = reply.send(answer);
                return;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        }
        let Some(replica) = self.replica.as_mut() else {
            let _ = reply.send(Err(NodeError::Stopped));
            return;
        };
        match replica.stage(batch, req.clone()) {
            Ok(_) => {
                let idx = in_batch.len();
                in_batch.insert(req.id.clone(), (req, idx));
                waiters.push(Waiter {
                    reply,
                    idx,
                    repeat: false,
                });
            }
            Err(e) => {
                debug!(event = %req.id, error = %e, "refused");
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn commit(&mut self, batch: Batch, waiters: Vec<Waiter>) {
        let now = (self.clock)();
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let sealed = replica.seal(batch, now);
        let result = self.persist(&sealed).and_then(|()| self.maybe_roll(now));
        match result {
            Ok(()) => {
                for w in waiters {
                    // Staged events and their indices come from the same batch, in order.
                    let mut o = sealed.events.get(w.idx).map(|(_, o)| o.clone());
                    if let Some(o) = o.as_mut() {
                        o.replayed = w.repeat;
                    }
                    let _ = w.reply.send(o.ok_or(NodeError::Stopped));
                }
            }
            Err(e) => {
                error!(error = %e, events = sealed.events.len(), "group commit failed; reloading the replica from storage");
                for w in waiters {
                    let _ = w.reply.send(Err(e.duplicate().into()));
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

    fn maybe_roll(&mut self, now: i64) -> Result<(), StoreError> {
        let Some(replica) = self.replica.as_mut() else {
            return Ok(());
        };
        if !replica.epoch_full() {
            return Ok(());
        }
        let change = replica.roll_epoch(now);
        let sealed = SealedBatch {
            change,
            events: Vec::new(),
            counters: Vec::new(),
            holds: Vec::new(),
            pools: Default::default(),
        };
        // The events of the batch are durable already; a failure here only
        // leaves the old epoch in force, which the reload below restores.
        if let Err(e) = self.store.commit_local(&self.meta.id, &sealed, &[]) {
            warn!(error = %e, "epoch roll-over failed");
            self.reload();
        }
        Ok(())
    }

    /// Drops the in-memory state and rebuilds it from what the store committed.
    fn reload(&mut self) {
        self.replica = None;
        match self.store.load(&self.meta.id).and_then(|s| {
            Replica::open(self.meta.id, s, self.epoch_changes)
                .map_err(|e| StoreError::Replica(e.to_string()))
        }) {
            Ok(r) => self.replica = Some(r),
            Err(e) => error!(error = %e, "reload failed; the node refuses events until restarted"),
        }
    }
}
