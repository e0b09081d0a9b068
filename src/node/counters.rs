//! Counts of the events a node answered, by kind and outcome: one atomic per
//! (kind, outcome), so counting costs one relaxed increment and no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::NodeError;
use crate::model::{EventKind, EventOutcome};

/// Event kinds, in slot order (their [`EventKind::label`]s).
pub const KINDS: [&str; 11] = [
    "sale",
    "return",
    "receipt",
    "transfer_out",
    "transfer_in",
    "adjustment",
    "online_order",
    "reserve",
    "release",
    "fulfil",
    "grant",
];

/// How an answered event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed now.
    Applied,
    /// Its id was answered before: the first answer, nothing applied again.
    Replayed,
    /// Refused by the escrow rule, the fleet roster or the node's own-history
    /// state; nothing changed.
    Refused,
    /// Refused as invalid for the node's state (unknown SKU or reservation,
    /// reused id, `record` not allowed...); nothing changed.
    Invalid,
    /// Not answered by a decision: storage failed or the node stopped.
    Failed,
}

/// Outcomes, in slot order.
pub const OUTCOMES: [Outcome; 5] = [
    Outcome::Applied,
    Outcome::Replayed,
    Outcome::Refused,
    Outcome::Invalid,
    Outcome::Failed,
];

impl Outcome {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Replayed => "replayed",
            Outcome::Refused => "refused",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome of an answer.
    pub fn of(answer: &Result<EventOutcome, NodeError>) -> Self {
        use crate::error::EventError as E;
        match answer {
            Ok(o) if o.replayed => Outcome::Replayed,
            Ok(_) => Outcome::Applied,
            Err(
                NodeError::Event(
                    E::InsufficientRights { .. }
                    | E::InsufficientAfterBorrow(_)
                    | E::NotPermitted(_),
                )
                | NodeError::OwnHistoryConflict { .. }
                | NodeError::Recovering { .. }
                | NodeError::OwnHistoryInLaterEpoch { .. },
            ) => Outcome::Refused,
            Err(NodeError::Event(_)) => Outcome::Invalid,
            Err(_) => Outcome::Failed,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The slot of an event kind in [`KINDS`].
pub(crate) fn kind_slot(kind: &EventKind) -> usize {
    match kind {
        EventKind::Sale => 0,
        EventKind::Return => 1,
        EventKind::Receipt => 2,
        EventKind::TransferOut { .. } => 3,
        EventKind::TransferIn { .. } => 4,
        EventKind::Adjustment { .. } => 5,
        EventKind::OnlineOrder => 6,
        EventKind::Reserve { .. } => 7,
        EventKind::Release { .. } => 8,
        EventKind::Fulfil { .. } => 9,
        EventKind::Grant { .. } => 10,
    }
}

/// The node's event counters.
#[derive(Default)]
pub(crate) struct EventCounters {
    counts: [[AtomicU64; OUTCOMES.len()]; KINDS.len()],
}

impl EventCounters {
    /// Counts one answer to an event of kind slot `kind`.
    pub(crate) fn record(&self, kind: usize, answer: &Result<EventOutcome, NodeError>) {
        if let Some(row) = self.counts.get(kind) {
            row[Outcome::of(answer).slot()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every (kind, outcome) count, zeros included, in slot order.
    pub(crate) fn snapshot(&self) -> Vec<EventCount> {
        let mut out = Vec::with_capacity(KINDS.len() * OUTCOMES.len());
        for (kind, row) in KINDS.iter().zip(&self.counts) {
            for (outcome, n) in OUTCOMES.iter().zip(row) {
                out.push(EventCount {
                    kind,
                    outcome: outcome.label(),
                    count: n.load(Ordering::Relaxed),
                });
            }
        }
        out
    }
}

/// How many events of one kind ended with one outcome since the node started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EventCount {
    /// The kind's label (`sale`, `receipt`...).
    pub kind: &'static str,
    /// The outcome's label (`applied`, `replayed`, `refused`, `invalid`, `failed`).
    pub outcome: &'static str,
    /// Answers counted.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EventError, StoreError};
    use crate::model::{LocationId, NodeId, PoolKey, Sku, TransferId};

    #[test]
    fn slots_follow_the_labels() {
        let id = NodeId([1; 32]);
        let t = TransferId::new("t").unwrap();
        let l = LocationId::new("L").unwrap();
        let kinds = [
            EventKind::Sale,
            EventKind::Return,
            EventKind::Receipt,
            EventKind::TransferOut {
                to: l.clone(),
                transfer: t.clone(),
            },
            EventKind::TransferIn {
                from: l,
                transfer: t,
            },
            EventKind::OnlineOrder,
            EventKind::Grant { to: id },
        ];
        for k in kinds {
            assert_eq!(KINDS[kind_slot(&k)], k.label());
        }
    }

    #[test]
    fn each_answer_lands_in_its_own_cell() {
        let c = EventCounters::default();
        let pool = PoolKey::new(LocationId::new("L").unwrap(), Sku::new("A").unwrap());
        let refused: Result<EventOutcome, NodeError> = Err(EventError::InsufficientRights {
            pool,
            available: 0,
            requested: 1,
        }
        .into());
        let invalid: Result<EventOutcome, NodeError> =
            Err(EventError::UnknownSku(Sku::new("A").unwrap()).into());
        let failed: Result<EventOutcome, NodeError> = Err(StoreError::Corrupt("x".into()).into());
        c.record(0, &refused);
        c.record(0, &refused);
        c.record(2, &invalid);
        c.record(6, &failed);
        c.record(99, &failed); // out of range: ignored, no panic
        let snap = c.snapshot();
        assert_eq!(snap.len(), KINDS.len() * OUTCOMES.len());
        let get = |k: &str, o: &str| {
            snap.iter()
                .find(|e| e.kind == k && e.outcome == o)
                .unwrap()
                .count
        };
        assert_eq!(get("sale", "refused"), 2);
        assert_eq!(get("sale", "applied"), 0);
        assert_eq!(get("receipt", "invalid"), 1);
        assert_eq!(get("online_order", "failed"), 1);
        assert_eq!(snap.iter().map(|e| e.count).sum::<u64>(), 4);
    }
}
