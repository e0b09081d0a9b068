//! Where an import's good lines go: the node in group commits, or a dry run
//! that decides them as the node would and writes nothing.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use anyhow::Result;

use super::{shown, Report, IN_FLIGHT};
use stocksync::error::{EventError, NodeError, StoreError};
use stocksync::model::{EventId, EventRequest};
use stocksync::node::{Node, NodeOptions, Ticket};
use stocksync::replica::{Batch, Replica};
use stocksync::store::sqlite::SqliteStore;
use stocksync::store::Store;

/// Where the good lines go: the node, in group commits, or a dry run.
pub(super) trait Sink {
    /// Takes line `line`'s request; its answer may be counted only at the next `flush`.
    fn take(&mut self, line: u64, req: EventRequest, report: &mut Report) -> Result<(), NodeError>;
    /// Counts every answer still outstanding.
    fn flush(&mut self, report: &mut Report) -> Result<(), NodeError>;
}

/// Submits lines to a node, [`IN_FLIGHT`] at a time, so they share group commits.
pub(super) struct Live<'a> {
    /// The node.
    pub(super) node: &'a Node,
    /// Submitted lines not yet answered: line number, id, ticket.
    pub(super) pending: Vec<(u64, EventId, Ticket)>,
}

impl Sink for Live<'_> {
    fn take(&mut self, line: u64, req: EventRequest, report: &mut Report) -> Result<(), NodeError> {
        let id = req.id.clone();
        self.pending.push((line, id, self.node.submit(req)));
        if self.pending.len() >= IN_FLIGHT {
            self.flush(report)?;
        }
        Ok(())
    }

    fn flush(&mut self, report: &mut Report) -> Result<(), NodeError> {
        let mut fatal = None;
        for (line, id, ticket) in self.pending.drain(..) {
            match ticket.wait() {
                Ok(o) if o.replayed => report.replayed += 1,
                Ok(_) => report.applied += 1,
                Err(NodeError::Event(e)) => {
                    report.fail(line, Some(shown(id.as_str())), e.to_string())
                }
                Err(e) => {
                    fatal.get_or_insert(e);
                }
            }
        }
        fatal.map_or(Ok(()), Err)
    }
}

/// Decides lines as the node would, in order, against a replica loaded from the
/// store: each accepted line is staged in memory (so later lines see it) and
/// never sealed or written; the replica is dropped at the end.
pub(super) struct DryRun {
    /// The node's store, held (and locked) for reading its journal.
    pub(super) store: SqliteStore,
    /// The node's state, plus the lines staged so far.
    replica: Replica,
    /// Ids staged so far, with a 64-bit digest of their request (for repeats in
    /// the file): memory grows with the number of lines, unlike the real import.
    staged: HashMap<EventId, u64>,
}

impl DryRun {
    /// Loads the node in `dir` (taking its directory lock) without starting it.
    pub(super) fn open(dir: &Path) -> Result<Self> {
        let mut store = super::super::open_store(dir)?;
        let me = store.meta().id;
        let snapshot = store.load(&me)?;
        let replica = Replica::open(me, snapshot, NodeOptions::default().epoch_changes)
            .map_err(|e| StoreError::Replica(e.to_string()))?;
        Ok(Self {
            store,
            replica,
            staged: HashMap::new(),
        })
    }
}

/// A digest of a request, to tell a repeat from a reuse of its id.
fn digest(req: &EventRequest) -> u64 {
    let mut h = DefaultHasher::new();
    req.hash(&mut h);
    h.finish()
}

impl Sink for DryRun {
    fn take(&mut self, line: u64, req: EventRequest, report: &mut Report) -> Result<(), NodeError> {
        let d = digest(&req);
        // The writer's order: a repeat within the group, then the journal, then the rule.
        let same = match self.staged.get(&req.id) {
            Some(first) => Some(*first == d),
            None => self
                .store
                .find_event(&req.id)?
                .map(|(first, _)| first == req),
        };
        let id = Some(shown(req.id.as_str()));
        match same {
            Some(true) => report.replayed += 1,
            Some(false) => {
                let e = EventError::DuplicateEvent { id: req.id };
                report.fail(line, id, e.to_string());
            }
            None => {
                let key = req.id.clone();
                match self.replica.stage(&mut Batch::default(), req) {
                    Ok(_) => {
                        report.applied += 1;
                        self.staged.insert(key, d);
                    }
                    Err(e) => report.fail(line, id, e.to_string()),
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, _report: &mut Report) -> Result<(), NodeError> {
        Ok(())
    }
}
