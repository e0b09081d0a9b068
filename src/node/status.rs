//! What a node's sync has seen: counters, the peers it is connected to, and a
//! bounded log of reported events (applied, refused, persist failures).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use crate::model::{NodeId, Position};
use crate::sync::{SyncEvent, SyncStats};

/// Reported events kept until a caller takes them; older ones are dropped (and counted).
const MAX_EVENTS: usize = 4096;

/// A snapshot of a node's sync state, for status pages and tests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncStatus {
    /// Peers the transport reported up.
    pub peers: Vec<String>,
    /// Remote changes applied and made durable.
    pub changes_applied: u64,
    /// Messages or changes refused, by any peer.
    pub rejected: u64,
    /// The last refusal, as text.
    pub last_rejection: Option<String>,
    /// Persists of remote changes that failed (the changes were dropped and are repaired later).
    pub persist_failures: u64,
    /// Bytes of messages handed to the outbox.
    pub bytes_sent: u64,
    /// Bytes of messages received.
    pub bytes_received: u64,
    /// Bytes waiting in the outbox.
    pub outbox_bytes: usize,
    /// Messages dropped because a peer's outbox queue was full.
    pub outbox_dropped: u64,
    /// Reported events dropped before anyone took them.
    pub events_dropped: u64,
    /// Set when a peer showed own changes this node does not hold (a restored
    /// backup or a cloned key): the node refuses events until resolved.
    pub own_history_conflict: Option<String>,
    /// Set while the node refuses events because peers showed it its own
    /// history beyond its head (being recovered, or in a later epoch): why.
    pub own_history_recovering: Option<String>,
    /// Out-of-order bundles held until their gap is filled.
    pub parked_bundles: usize,
    /// Bytes of those bundles.
    pub parked_bytes: usize,
    /// The version of the fleet roster the node holds (0: none, or open mode).
    pub roster_version: u64,
    /// The last refusal of this node's changes a peer answered, as text.
    pub last_refused_by_peer: Option<String>,
    /// Writers seen signing two histories (cloned devices, restored backups),
    /// as reported since the node started and as stored before.
    pub forks: Vec<ForkStatus>,
    /// Changes revoked (retired) writers signed after their revocation
    /// point, refused and reported: how many positions, over all writers.
    pub retired_writes: u64,
    /// Units those changes consumed or granted: left the store without
    /// rights, a deficit to reconcile.
    pub retired_units_spent: i64,
    /// The same, per revoked writer.
    pub retired: Vec<RetiredStatus>,
}

/// What one revoked writer did after its revocation point, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetiredStatus {
    /// The writer.
    pub writer: String,
    /// `epoch/seq` of its revocation point.
    pub after: String,
    /// `epoch/seq` of the furthest refused change seen.
    pub last: String,
    /// Refused positions after the revocation point.
    pub writes: u64,
    /// Units they consumed or granted.
    pub units_spent: i64,
}

/// The furthest refused change of one revoked writer and what it spent.
#[derive(Clone, Copy, Default)]
struct RetiredWrites {
    after: Position,
    last: Position,
    spent: i64,
}

impl RetiredWrites {
    /// Refused positions after the revocation point (in a later epoch, its
    /// positions only: the earlier epoch's tail is not known here).
    fn writes(&self) -> u64 {
        if self.last.epoch == self.after.epoch {
            self.last.seq.saturating_sub(self.after.seq)
        } else {
            self.last.seq
        }
    }
}

/// One fork, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForkStatus {
    /// The writer that forked.
    pub writer: String,
    /// `epoch/seq` of the first position where its histories differ.
    pub position: String,
}

/// The node's running record of sync reports.
#[derive(Default)]
pub(crate) struct StatusLog {
    pub(crate) peers: BTreeSet<NodeId>,
    events: VecDeque<SyncEvent>,
    events_dropped: u64,
    applied: u64,
    persist_failures: u64,
    last_rejection: Option<String>,
    own_conflict: Option<String>,
    last_refused_by_peer: Option<String>,
    retired: BTreeMap<NodeId, RetiredWrites>,
}

impl StatusLog {
    /// Records one reported event.
    pub(crate) fn record(&mut self, event: SyncEvent) {
        match &event {
            SyncEvent::Applied { .. } => self.applied += 1,
            SyncEvent::Rejected {
                from,
                writer,
                reason,
            } => {
                self.last_rejection = Some(match writer {
                    Some(w) => format!("from {from} (writer {w}): {reason}"),
                    None => format!("from {from}: {reason}"),
                });
            }
            SyncEvent::PersistFailed { .. } => self.persist_failures += 1,
            SyncEvent::Fork { .. } => {}
            SyncEvent::RefusedByPeer {
                peer,
                writer,
                position,
                reason,
            } => {
                self.last_refused_by_peer = Some(format!(
                    "peer {peer} refused changes of {writer} up to {}/{}: {reason}",
                    position.epoch, position.seq
                ));
            }
            SyncEvent::OwnHistoryRecovered { .. } => {}
            SyncEvent::RetiredNodeWrote {
                writer,
                after,
                last,
                spent,
                ..
            } => {
                // Spending is absolute (counter values): the furthest report wins.
                let r = self.retired.entry(*writer).or_default();
                if *last >= r.last {
                    r.after = *after;
                    r.last = *last;
                    r.spent = spent.iter().map(|(_, u)| *u).fold(0, i64::saturating_add);
                }
            }
            SyncEvent::OwnHistoryConflict { from, held, seen } => {
                self.own_conflict = Some(format!(
                    "peer {from} holds own change {}/{} signed with this node's key; this node holds {}/{}",
                    seen.epoch, seen.seq, held.epoch, held.seq
                ));
            }
        }
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Takes the events recorded since the last call.
    pub(crate) fn take(&mut self) -> Vec<SyncEvent> {
        self.events.drain(..).collect()
    }

    /// The status, with the engine's counters.
    pub(crate) fn status(&self, stats: SyncStats) -> SyncStatus {
        SyncStatus {
            peers: self.peers.iter().map(NodeId::to_hex).collect(),
            changes_applied: self.applied,
            rejected: stats.rejected,
            last_rejection: self.last_rejection.clone(),
            persist_failures: self.persist_failures,
            bytes_sent: stats.bytes_sent,
            bytes_received: stats.bytes_received,
            outbox_bytes: 0,
            outbox_dropped: 0,
            events_dropped: self.events_dropped,
            own_history_conflict: self.own_conflict.clone(),
            own_history_recovering: None,
            parked_bundles: stats.parked_bundles,
            parked_bytes: stats.parked_bytes,
            roster_version: 0,
            last_refused_by_peer: self.last_refused_by_peer.clone(),
            forks: Vec::new(),
            retired_writes: self.retired.values().map(RetiredWrites::writes).sum(),
            retired_units_spent: self
                .retired
                .values()
                .map(|r| r.spent)
                .fold(0, i64::saturating_add),
            retired: self
                .retired
                .iter()
                .map(|(w, r)| RetiredStatus {
                    writer: w.to_hex(),
                    after: format!("{}/{}", r.after.epoch, r.after.seq),
                    last: format!("{}/{}", r.last.epoch, r.last.seq),
                    writes: r.writes(),
                    units_spent: r.spent,
                })
                .collect(),
        }
    }
}
