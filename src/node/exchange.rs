//! The node's side of the rights exchange: sending requests and answers,
//! velocity and automatic pull after a commit, and borrowing on a strict
//! sale (the desk itself, under the core lock, is [`super::rights`]).

use std::time::{Duration, Instant};

use super::grant::{self, CommittedGrant, GrantSource};
use super::rights::RightsStats;
use super::{writer, Core, Node, Shared};
use crate::error::{EventError, NodeError};
use crate::model::{EventOutcome, EventRequest, NodeId, PoolKey};
use crate::rebalance::{RightsAnswer, RightsRequest};
use crate::sync::message::{self, Message};

impl Shared {
    /// Queues rights requests for their peers.
    pub(super) fn send_requests(&self, sends: Vec<(NodeId, RightsRequest)>) {
        for (to, req) in sends {
            self.outbox
                .push(to, message::encode(&Message::RightsRequest(req)));
        }
    }

    /// Queues an answer to a peer's rights request.
    pub(super) fn send_answer(&self, to: NodeId, answer: RightsAnswer) {
        self.outbox
            .push(to, message::encode(&Message::RightsAnswer(answer)));
    }

    /// Sales velocity and automatic pull after a group's commit.
    pub(super) fn after_commit(
        &self,
        core: &mut Core,
        kinds: &[crate::model::EventKind],
        answers: &[writer::Answer],
    ) {
        let now = self.now();
        let peers = Self::peers(core);
        let Core { writer, rights, .. } = core;
        let Some(replica) = writer.replica() else {
            return;
        };
        for (kind, answer) in kinds.iter().zip(answers) {
            if let Ok(outcome) = answer {
                // A donor's grant settles its promise in the same critical
                // section as its commit: no decision in between counts it
                // both as promised and as gone from the rights.
                if matches!(kind, crate::model::EventKind::Grant { .. }) {
                    rights.settle(outcome);
                }
                let asks = rights.on_local(kind, outcome, replica, &peers, now);
                self.send_requests(asks);
            }
        }
    }

    /// Keeps a grant the node committed by itself, if recording is on.
    pub(super) fn log_grant(
        &self,
        source: GrantSource,
        asker: NodeId,
        request: EventRequest,
        result: &Result<EventOutcome, NodeError>,
    ) {
        let mut log = self.grant_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = log.as_mut() {
            log.push(CommittedGrant {
                source,
                asker,
                request,
                result: result.as_ref().cloned().map_err(|e| e.to_string()),
            });
        }
    }

    /// The connected peers, as the engine knows them.
    pub(super) fn peers(core: &Core) -> Vec<NodeId> {
        core.engine.peers().copied().collect()
    }
}

impl Node {
    /// Counters of the rights exchange (requests, grants, rights moved).
    pub fn rights_stats(&self) -> RightsStats {
        self.shared.core().rights.stats()
    }

    /// Starts recording the grants this node commits by itself (answers to
    /// peers' requests and orders, its own rebalance moves), for an auditor
    /// such as the simulator's checker; drain them with [`Node::take_grants`].
    pub fn record_grants(&self) {
        let mut log = self
            .shared
            .grant_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        log.get_or_insert_with(Vec::new);
    }

    /// The grants committed by the node itself since the last call (empty
    /// unless [`Node::record_grants`] was called), in commit order.
    pub fn take_grants(&self) -> Vec<CommittedGrant> {
        let mut log = self
            .shared
            .grant_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Makes the ids of this node's rights requests and rebalance grants
    /// follow from `seed` (deterministic runs: the simulator gives each start
    /// of a node another seed). A node draws them at random otherwise.
    pub fn seed_request_ids(&self, seed: u64) {
        self.shared.core().rights.seed_ids(seed);
    }

    /// Asks connected peers for `need` more rights in `pool` now (what a
    /// borrow does before it waits, for a caller that waits by itself, such as
    /// the simulator's clock); returns the requests sent (0 when a round is
    /// already open, no peer is connected, or nothing is needed).
    pub fn pull(&self, pool: &PoolKey, need: u64) -> usize {
        let now = self.shared.now();
        let mut core = self.shared.core();
        let peers = Shared::peers(&core);
        let Core { writer, rights, .. } = &mut *core;
        let Some(replica) = writer.replica() else {
            return 0;
        };
        let asks = rights.pull(pool, need, replica, &peers, now);
        let n = asks.len();
        self.shared.send_requests(asks);
        n
    }

    /// Borrows `need` rights for `req` from connected peers, waiting up to the
    /// borrow deadline, then retries it; `None` when borrowing is off or no
    /// peer is connected (the first answer stands).
    pub(super) fn borrow(
        &self,
        req: EventRequest,
        need: u64,
    ) -> Option<Result<EventOutcome, NodeError>> {
        let started = Instant::now();
        let deadline_ms = {
            let core = self.shared.core();
            core.rights.settings.borrow_deadline_ms
        };
        if deadline_ms == 0 {
            return None;
        }
        let deadline = started + Duration::from_millis(deadline_ms);
        let pool = req.pool.clone();
        let requested = req.qty.get();
        let mut core = self.shared.core();
        let peers = Shared::peers(&core);
        if peers.is_empty() {
            return None;
        }
        // Starts a round for what the sale lacks; false when one was already
        // open (an automatic pull, another sale's borrow): that one is waited
        // for first, then this sale's own follows if still short.
        let ask = |core: &mut Core| -> Option<bool> {
            let now = self.shared.now();
            let Core { writer, rights, .. } = core;
            let replica = writer.replica()?;
            let asks = rights.pull(&pool, need, replica, &peers, now);
            let sent = !asks.is_empty();
            self.shared.send_requests(asks);
            Some(sent)
        };
        let mut own_round = ask(&mut core)?;
        loop {
            let replica = core.writer.replica()?;
            let enough = replica.book().rights(&pool, replica.me()) >= requested as i64;
            let settled = core
                .rights
                .round(&pool)
                .is_none_or(|r| !r.is_open() && grant::grants_arrived(r, replica));
            let left = deadline.saturating_duration_since(Instant::now());
            if enough || left.is_zero() {
                break;
            }
            if settled {
                if own_round {
                    break;
                }
                own_round = true;
                if !ask(&mut core)? {
                    break;
                }
                continue;
            }
            core = match self.shared.rights_changed.wait_timeout(core, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        drop(core);
        let second = self.submit_uncounted(req).wait();
        if let Err(NodeError::Event(EventError::InsufficientRights { .. })) = &second {
            let core = self.shared.core();
            let replica = core.writer.replica()?;
            let waited = started.elapsed().as_millis() as u64;
            let report =
                grant::borrow_report(&pool, core.rights.round(&pool), replica, requested, waited);
            return Some(Err(
                EventError::InsufficientAfterBorrow(Box::new(report)).into()
            ));
        }
        Some(second)
    }

    /// How long until [`Node::tick`] is due, by the node's clock.
    pub fn tick_in(&self) -> Option<Duration> {
        let due = self.poll_timeout()?;
        Some(Duration::from_millis(due.saturating_sub(self.shared.now())))
    }
}
