//! A grant the rights desk decided (committed outside the node's lock as an
//! escrow `grant` event), who may order one, and what a borrow that stayed
//! short reports.

use tracing::info;

use crate::model::{EventId, EventKind, EventOutcome, EventRequest, NodeId, PoolKey, Quantity};
use crate::rebalance::{AskOutcome, BorrowAnswer, BorrowReport, RightsRequest, Round};
use crate::replica::Replica;

/// Why the node committed a grant on its own initiative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantSource {
    /// Answering a peer's request for rights (an automatic pull or a borrow).
    Pull {
        /// The asker's request id.
        request: u64,
        /// Units the asker asked for.
        asked: u64,
    },
    /// Obeying a manager's order (a peer's rebalance).
    Order {
        /// The order's request id.
        request: u64,
        /// Units the manager ordered.
        asked: u64,
    },
    /// This node's own move in a rebalance it ran ([`super::Node::rebalance`]).
    Rebalance,
}

/// A grant the node committed by itself, not asked by its caller: what it
/// submitted and the writer's answer (an auditor's view of the exchange; see
/// [`super::Node::record_grants`]).
#[derive(Clone, Debug)]
pub struct CommittedGrant {
    /// Why it was made.
    pub source: GrantSource,
    /// Who asked (the receiver, a manager, or this node itself).
    pub asker: NodeId,
    /// The `grant` event submitted.
    pub request: EventRequest,
    /// Its answer: applied (or replayed), else the error's message (refused,
    /// or failed in storage).
    pub result: Result<EventOutcome, String>,
}

/// A grant decided for a peer, to be committed outside the node's lock.
#[derive(Clone, Debug)]
pub(crate) struct PendingGrant {
    /// Who receives the rights.
    pub(crate) to: NodeId,
    /// Who asked (the receiver, or the manager that ordered the grant).
    pub(crate) asker: NodeId,
    pub(crate) request: RightsRequest,
    pub(crate) qty: u64,
}

impl PendingGrant {
    /// Why this grant is made, for [`CommittedGrant`].
    pub(crate) fn source(&self) -> GrantSource {
        let (request, asked) = (self.request.id, self.request.qty);
        match self.request.to {
            Some(_) => GrantSource::Order { request, asked },
            None => GrantSource::Pull { request, asked },
        }
    }

    /// The grant event: its id is fixed by the asker and its request id,
    /// so a repeated request can never grant twice.
    pub(crate) fn event(&self) -> Option<EventRequest> {
        let prefix = if self.request.to.is_some() {
            "order"
        } else {
            "pull"
        };
        let id = EventId::new(format!("{prefix}-{}-{:016x}", self.asker, self.request.id)).ok()?;
        let qty = Quantity::new(self.qty).ok()?;
        let mut req = EventRequest::new(
            id,
            self.request.pool.location.clone(),
            self.request.pool.sku.clone(),
            qty,
            EventKind::Grant { to: self.to },
        );
        req.reference = Some(match self.request.to {
            Some(_) => format!(
                "rebalance order {:016x} from {}",
                self.request.id, self.asker
            ),
            None => format!("rights request {:016x}", self.request.id),
        });
        Some(req)
    }
}

/// May `from` order this node to grant rights in `pool` to another node (a
/// manager's rebalance)? A store or hub member at the pool's location, not
/// revoked; anyone in open mode (no roster: a node on its own, or tests).
pub(super) fn may_order(replica: &Replica, from: &NodeId, pool: &PoolKey) -> bool {
    let Some(roster) = replica.roster() else {
        return replica.fleet().is_none();
    };
    roster.admits(from, None).is_ok_and(|m| {
        matches!(m.role, crate::model::Role::Store | crate::model::Role::Hub)
            && m.locations.contains(&pool.location)
    })
}

/// True when `replica` holds `donor`'s history up to `at`.
pub(super) fn arrived(replica: &Replica, donor: NodeId, at: crate::model::Position) -> bool {
    replica
        .heads()
        .get(&donor)
        .is_some_and(|h| h.position >= at)
}

/// True when every grant `round` obtained is held by `replica`.
pub(crate) fn grants_arrived(round: &Round, replica: &Replica) -> bool {
    round
        .grants()
        .all(|(donor, at)| arrived(replica, donor, at))
}

/// The report a borrow that stayed short returns.
pub(crate) fn borrow_report(
    pool: &PoolKey,
    round: Option<&Round>,
    replica: &Replica,
    requested: u64,
    waited_ms: u64,
) -> BorrowReport {
    let name = |id: &NodeId| {
        replica
            .roster()
            .and_then(|r| r.member(id))
            .map(|m| m.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let answers: Vec<BorrowAnswer> = round
        .map(|r| {
            r.asks
                .iter()
                .map(|a| BorrowAnswer {
                    peer: name(&a.peer),
                    asked: a.qty,
                    granted: a.granted(),
                    outcome: match a.outcome {
                        None => "waiting".into(),
                        Some(AskOutcome::NoAnswer) => "no_answer".into(),
                        Some(AskOutcome::Answered {
                            shortfall: Some(s), ..
                        }) => s.label().into(),
                        Some(AskOutcome::Answered { .. }) => "granted".into(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let report = BorrowReport {
        pool: pool.clone(),
        available: replica.book().rights(pool, replica.me()),
        requested,
        asked: answers.iter().map(|a| a.asked).sum(),
        granted: answers.iter().map(|a| a.granted).sum(),
        waited_ms,
        answers,
    };
    info!(%pool, requested, asked = report.asked, granted = report.granted, waited_ms, "borrow stayed short");
    report
}
