//! The node's rights desk: the adapter that runs the pure rebalancing parts
//! (`rebalance::{Donor, Rounds, RebalanceSettings}`) against the replica.
//!
//! As a donor it answers a peer's request from its surplus above its floor,
//! commits the grant as an ordinary escrow `grant` event of its own rights,
//! and only then answers. As a requester it pulls when a consumption leaves
//! it below its low-water mark (and when a peer connects), and a strict
//! consumption short of rights may borrow, waiting up to a deadline.
//! (The grants it decides are in [`super::grant`]; what a borrow reports, in
//! [`super::grant::borrow_report`].)

use std::collections::{HashMap, VecDeque};

use tracing::debug;

use crate::error::{EventError, NodeError};
use crate::model::{EventKind, EventOutcome, NodeId, PoolKey};
use crate::rebalance::{
    donor_floor, reserve_in, safety_stock_in, should_pull, Ask, Donor, PullRequest,
    RebalanceSettings, RightsAnswer, RightsRequest, Round, Rounds, RoundsConfig, Shortfall,
    Velocity,
};
use crate::replica::Replica;

use super::grant::{arrived, may_order, PendingGrant};

/// Most grants a donor commits at once for one requester; more requests from
/// it are answered `busy` (bounds the work one peer can cause).
const MAX_OPEN_PER_PEER: usize = 8;
/// Answers remembered per peer, so that a repeated request gets the same answer.
const ANSWERS_KEPT_PER_PEER: usize = 64;

/// Counters of the rights exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RightsStats {
    /// Requests received from peers.
    pub requests_received: u64,
    /// Grants committed for peers.
    pub grants_made: u64,
    /// Rights granted to peers in all.
    pub rights_given: u64,
    /// Requests sent to peers.
    pub asks_sent: u64,
    /// Rights peers granted this node in all (as answered).
    pub rights_received: u64,
    /// Answers that matched no open ask.
    pub stray_answers: u64,
}

/// The desk's state, kept under the node's core lock.
pub(crate) struct RightsDesk {
    pub(crate) settings: RebalanceSettings,
    rounds: Rounds,
    donors: HashMap<PoolKey, Donor>,
    velocity: HashMap<PoolKey, Velocity>,
    /// Other holders' consumption at this node's location, as their changes
    /// arrive: the last counter value seen and the velocity it gives.
    observed: HashMap<(NodeId, PoolKey), (i64, Velocity)>,
    open: HashMap<NodeId, usize>,
    answered: HashMap<NodeId, VecDeque<RightsAnswer>>,
    pending: Vec<PendingGrant>,
    /// Decided grants not yet settled, by their event id: pool and units.
    promises: HashMap<String, (PoolKey, i64)>,
    /// Orders this node sent as a manager: request id → the peer ordered and
    /// its answer once in.
    orders: HashMap<u64, (NodeId, Option<RightsAnswer>)>,
    next_id: u64,
    stats: RightsStats,
    /// Pulls to start after a channel's request this node could not meet in
    /// full: pool, units needed, and the channel (not asked back).
    relays: Vec<(PoolKey, u64, NodeId)>,
}

impl RightsDesk {
    pub(crate) fn new(settings: RebalanceSettings) -> Self {
        let mut seed = [0u8; 8];
        // Request ids only need to differ across restarts; a failing random
        // source falls back to the clock-free counter from 1.
        let _ = getrandom::fill(&mut seed);
        Self {
            rounds: Rounds::new(RoundsConfig {
                answer_timeout_ms: settings.answer_timeout_ms,
                ..RoundsConfig::default()
            }),
            settings,
            donors: HashMap::new(),
            velocity: HashMap::new(),
            observed: HashMap::new(),
            open: HashMap::new(),
            answered: HashMap::new(),
            pending: Vec::new(),
            promises: HashMap::new(),
            orders: HashMap::new(),
            next_id: u64::from_le_bytes(seed) | 1,
            stats: RightsStats::default(),
            relays: Vec::new(),
        }
    }

    /// Request ids follow from `seed` from now on.
    pub(crate) fn seed_ids(&mut self, seed: u64) {
        self.next_id = seed | 1;
    }

    /// A fresh id from the request id sequence (a rebalance's own grants).
    pub(crate) fn fresh_id(&mut self) -> u64 {
        id_source(&mut self.next_id)()
    }

    pub(crate) fn stats(&self) -> RightsStats {
        RightsStats {
            stray_answers: self.rounds.stray_answers,
            ..self.stats
        }
    }

    /// A peer asks for rights: the answer to send now, or `None` when a grant
    /// was decided (see [`RightsDesk::take_pending`]).
    pub(crate) fn on_request(
        &mut self,
        from: NodeId,
        req: RightsRequest,
        replica: &Replica,
        now_ms: u64,
    ) -> Option<RightsAnswer> {
        self.stats.requests_received += 1;
        if let Some(a) = self
            .answered
            .get(&from)
            .and_then(|q| q.iter().find(|a| a.id == req.id))
        {
            return Some(a.clone());
        }
        let refuse = |shortfall| RightsAnswer {
            id: req.id,
            pool: req.pool.clone(),
            asked: req.qty,
            granted: 0,
            shortfall: Some(shortfall),
            grant_at: None,
        };
        if self.open.get(&from).copied().unwrap_or(0) >= MAX_OPEN_PER_PEER
            || self
                .pending
                .iter()
                .any(|g| g.to == from && g.request.id == req.id)
        {
            return Some(refuse(Shortfall::Busy));
        }
        let now = now_ms as i64;
        let mut levels = self.settings.levels(
            &self.velocity.get(&req.pool).copied().unwrap_or_default(),
            now,
        );
        let to = req.to.unwrap_or(from);
        let order = to != from;
        if order && !may_order(replica, &from, &req.pool) || to == *replica.me() {
            let a = refuse(Shortfall::NotPermitted);
            self.remember(from, a.clone());
            return Some(a);
        }
        // The floor this grant keeps: the node's own, or its reserve, raised
        // by the receiver's safety stock when the receiver is a channel.
        let safety = self.safety_stock(replica, &to, &req.pool);
        levels.floor = donor_floor(
            levels.floor,
            reserve_in(&self.settings.reserves, &req.pool),
            safety,
        );
        let qty = req.qty.min(i64::MAX as u64) as i64;
        // A pool this node holds no rights in gets no state: a peer's
        // requests for made-up pools cost nothing but their answer (a
        // configured channel's request is still pulled on from other peers).
        let held = replica.book().rights(&req.pool, replica.me());
        if held <= 0 {
            if safety.is_some() && !order {
                let need = levels.floor.saturating_add(qty).saturating_sub(held);
                self.relays
                    .push((req.pool.clone(), need.max(0) as u64, from));
            }
            let a = refuse(Shortfall::NoSurplus);
            self.remember(from, a.clone());
            return Some(a);
        }
        let donor = self.donors.entry(req.pool.clone()).or_default();
        donor.rights = held;
        let need = levels
            .floor
            .saturating_add(qty)
            .saturating_sub(donor.rights - donor.promised)
            .max(0) as u64;
        let bounce = donor
            .received_from
            .get(&from)
            .is_some_and(|&at| now < at.saturating_add(levels.cool_down_ms));
        let answer = if safety.is_some() && !order {
            // A channel's pull: no cool-down (rights this node just pulled
            // from stores are meant to reach the channel), but no bounce, and
            // what it cannot give now it pulls from its other peers.
            if need > 0 {
                self.relays.push((req.pool.clone(), need, from));
            }
            if bounce {
                (0, Some(Shortfall::WouldBounce))
            } else {
                let surplus = (donor.rights - donor.promised - levels.floor).max(0);
                let g = qty.min(surplus);
                donor.promised += g;
                (g, (g < qty).then_some(Shortfall::NoSurplus))
            }
        } else if order {
            // A manager's order: no cool-down or bounce rule (the manager
            // planned the move), but the donor keeps its floor.
            let surplus = (donor.rights - donor.promised - levels.floor).max(0);
            let g = qty.min(surplus);
            donor.promised += g;
            (g, (g < qty).then_some(Shortfall::NoSurplus))
        } else {
            donor
                .answer(&[PullRequest { from, qty }], &levels, now)
                .pop()
                .map(|a| (a.granted, a.shortfall))
                .unwrap_or((0, Some(Shortfall::Empty)))
        };
        match answer {
            (granted, _) if granted > 0 => {
                *self.open.entry(from).or_default() += 1;
                let g = PendingGrant {
                    to,
                    asker: from,
                    request: req,
                    qty: granted as u64,
                };
                if let Some(e) = g.event() {
                    self.promises
                        .insert(e.id.as_str().to_string(), (g.request.pool.clone(), granted));
                }
                self.pending.push(g);
                None
            }
            (_, shortfall) => {
                let a = refuse(shortfall.unwrap_or(Shortfall::NoSurplus));
                self.remember(from, a.clone());
                Some(a)
            }
        }
    }

    /// The safety stock of receiver `to` in `pool`, if it is a channel with one.
    fn safety_stock(&self, replica: &Replica, to: &NodeId, pool: &PoolKey) -> Option<i64> {
        if self.settings.safety_stocks.is_empty() {
            return None;
        }
        let name = replica
            .roster()
            .and_then(|r| r.member(to))
            .map(|m| m.name.as_str());
        safety_stock_in(&self.settings.safety_stocks, to, name, pool)
    }

    /// Pulls to start for channels' requests not met in full (see `relays`).
    pub(crate) fn take_relays(&mut self) -> Vec<(PoolKey, u64, NodeId)> {
        std::mem::take(&mut self.relays)
    }

    /// Rights of `pool` promised in decided grants not yet committed.
    pub(crate) fn promised(&self, pool: &PoolKey) -> i64 {
        self.donors.get(pool).map_or(0, |d| d.promised)
    }

    /// Counters another writer's change raised: its consumption at `home`
    /// feeds that holder's velocity (the first value seen is a baseline, so a
    /// catch-up after an outage does not count as a burst of sales).
    pub(crate) fn observe(
        &mut self,
        writer: NodeId,
        counters: &[(crate::escrow::CounterKey, i64)],
        home: &crate::model::LocationId,
        now_ms: u64,
    ) {
        for (key, value) in counters {
            let crate::escrow::CounterKey::Consumed(pool) = key else {
                continue;
            };
            if &pool.location != home {
                continue;
            }
            let half = self.settings.velocity_half_life_ms as i64;
            match self.observed.get_mut(&(writer, pool.clone())) {
                Some((last, v)) => {
                    if *value > *last {
                        v.record((*value - *last) as u64, now_ms as i64, half);
                        *last = *value;
                    }
                }
                None => {
                    self.observed
                        .insert((writer, pool.clone()), (*value, Velocity::default()));
                }
            }
        }
    }

    /// `node`'s sales velocity in `pool` at `now_ms` (units per hour), as
    /// this node knows it: its own, or observed from the changes it received.
    pub(crate) fn velocity_of(
        &self,
        me: &NodeId,
        node: &NodeId,
        pool: &PoolKey,
        now_ms: u64,
    ) -> f64 {
        let half = self.settings.velocity_half_life_ms as i64;
        let v = if node == me {
            self.velocity.get(pool).copied()
        } else {
            self.observed.get(&(*node, pool.clone())).map(|(_, v)| *v)
        };
        v.map_or(0.0, |v| v.at(now_ms as i64, half))
    }

    /// A manager's order for `donor` to grant `qty` of `pool` to `to`: the
    /// request to send (its answer is kept for [`RightsDesk::order_answer`]).
    pub(crate) fn order(
        &mut self,
        donor: NodeId,
        pool: &PoolKey,
        to: NodeId,
        qty: u64,
    ) -> RightsRequest {
        let mut ids = id_source(&mut self.next_id);
        let id = ids();
        // Bounded: a manager keeps the answers of its last 65,536 orders.
        if self.orders.len() >= 1 << 16 {
            self.orders.retain(|_, (_, a)| a.is_none());
        }
        self.orders.insert(id, (donor, None));
        self.stats.asks_sent += 1;
        RightsRequest {
            id,
            pool: pool.clone(),
            qty,
            to: Some(to),
        }
    }

    /// The answer to order `id`, once in.
    pub(crate) fn order_answer(&self, id: u64) -> Option<&RightsAnswer> {
        self.orders.get(&id).and_then(|(_, a)| a.as_ref())
    }

    /// Forgets order `id` (its caller has its answer, or gave up).
    pub(crate) fn forget_order(&mut self, id: u64) {
        self.orders.remove(&id);
    }

    /// A grant event was committed: if it carries a decided grant (a pull or
    /// an order), its promise is settled now, under the same lock as the
    /// commit, as the replica's rights already count it.
    pub(crate) fn settle(&mut self, outcome: &EventOutcome) {
        self.release(outcome.id.as_str());
    }

    /// Drops the promise of decided grant `id`, if it is still held.
    fn release(&mut self, id: &str) {
        if let Some((pool, qty)) = self.promises.remove(id) {
            if let Some(d) = self.donors.get_mut(&pool) {
                d.promised = (d.promised - qty).max(0);
            }
        }
    }

    /// The grants decided since the last call, to commit outside the lock.
    pub(crate) fn take_pending(&mut self) -> Vec<PendingGrant> {
        std::mem::take(&mut self.pending)
    }

    /// A decided grant was committed (or not): the answer to send.
    pub(crate) fn grant_done(
        &mut self,
        g: &PendingGrant,
        result: &Result<EventOutcome, NodeError>,
    ) -> RightsAnswer {
        if let Some(n) = self.open.get_mut(&g.asker) {
            *n = n.saturating_sub(1);
        }
        // Not committed (or committed and somehow not settled): the promise
        // goes; a committed grant settled it at its commit ([`RightsDesk::settle`]).
        if let Some(id) = g.event().map(|e| e.id.as_str().to_string()) {
            self.release(&id);
        }
        let (granted, shortfall, grant_at) = match result {
            Ok(o) => {
                self.stats.grants_made += 1;
                self.stats.rights_given += o.qty;
                (
                    o.qty,
                    (o.qty < g.request.qty).then_some(Shortfall::NoSurplus),
                    Some(o.position),
                )
            }
            Err(NodeError::Event(EventError::InsufficientRights { .. })) => {
                (0, Some(Shortfall::NoSurplus), None)
            }
            Err(NodeError::Event(EventError::NotPermitted(_))) => {
                (0, Some(Shortfall::NotPermitted), None)
            }
            Err(_) => (0, Some(Shortfall::Failed), None),
        };
        let a = RightsAnswer {
            id: g.request.id,
            pool: g.request.pool.clone(),
            asked: g.request.qty,
            granted,
            shortfall,
            grant_at,
        };
        self.remember(g.asker, a.clone());
        a
    }

    fn remember(&mut self, peer: NodeId, a: RightsAnswer) {
        let q = self.answered.entry(peer).or_default();
        if q.len() >= ANSWERS_KEPT_PER_PEER {
            q.pop_front();
        }
        q.push_back(a);
    }

    /// A peer answered one of this node's requests: further requests to send.
    pub(crate) fn on_answer(
        &mut self,
        from: NodeId,
        answer: &RightsAnswer,
        now_ms: u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        if let Some((peer, slot)) = self.orders.get_mut(&answer.id) {
            if *peer == from && slot.is_none() {
                *slot = Some(answer.clone());
            } else {
                self.rounds.stray_answers += 1;
            }
            return Vec::new();
        }
        let before = self.rounds.stray_answers;
        let mut ids = id_source(&mut self.next_id);
        let sends = self.rounds.answered(from, answer, now_ms, &mut ids);
        if self.rounds.stray_answers == before && answer.granted > 0 {
            self.stats.rights_received += answer.granted;
            self.donors
                .entry(answer.pool.clone())
                .or_default()
                .received(from, 0, now_ms as i64);
        }
        self.stats.asks_sent += sends.len() as u64;
        sends
    }

    /// After an answer: a round that just closed with something granted is
    /// followed by another when the node is still below its mark, counting
    /// grants answered but not yet arrived (a sale may have taken the rights
    /// while the round was open). A round that got nothing is not repeated
    /// until the next consumption or connection.
    pub(crate) fn after_answer(
        &mut self,
        pool: &PoolKey,
        replica: &Replica,
        peers: &[NodeId],
        now_ms: u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        let Some(round) = self.rounds.round(pool) else {
            return Vec::new();
        };
        if !self.settings.auto_pull || round.is_open() || round.granted() == 0 {
            return Vec::new();
        }
        let in_flight: u64 = round
            .asks
            .iter()
            .filter(|a| {
                a.granted() > 0
                    && round
                        .grants()
                        .any(|(d, at)| d == a.peer && !arrived(replica, d, at))
            })
            .map(Ask::granted)
            .sum();
        let rights = replica.book().rights(pool, replica.me());
        let levels = self.settings.levels(
            &self.velocity.get(pool).copied().unwrap_or_default(),
            now_ms as i64,
        );
        if rights.saturating_add(in_flight as i64) >= levels.low_water {
            return Vec::new();
        }
        self.pull(pool, 0, replica, peers, now_ms)
    }

    /// An own event was committed: velocity, then a pull if it left the node low.
    pub(crate) fn on_local(
        &mut self,
        kind: &EventKind,
        outcome: &EventOutcome,
        replica: &Replica,
        peers: &[NodeId],
        now_ms: u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        if outcome.replayed {
            return Vec::new();
        }
        if matches!(kind, EventKind::Sale | EventKind::OnlineOrder) {
            self.velocity
                .entry(outcome.pool.clone())
                .or_default()
                .record(
                    outcome.qty,
                    now_ms as i64,
                    self.settings.velocity_half_life_ms as i64,
                );
        }
        if !self.settings.auto_pull || matches!(kind, EventKind::Grant { .. }) {
            return Vec::new();
        }
        self.pull(&outcome.pool, 0, replica, peers, now_ms)
    }

    /// Starts a round for `pool` when below the low-water mark, or when
    /// `need` more rights are needed now (a borrow); returns the requests.
    pub(crate) fn pull(
        &mut self,
        pool: &PoolKey,
        need: u64,
        replica: &Replica,
        peers: &[NodeId],
        now_ms: u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        if peers.is_empty() {
            return Vec::new();
        }
        let me = replica.me();
        let rights = replica.book().rights(pool, me);
        let levels = self.settings.levels(
            &self.velocity.get(pool).copied().unwrap_or_default(),
            now_ms as i64,
        );
        let open = self.rounds.round(pool).is_some_and(Round::is_open);
        let refill = should_pull(rights, &levels, open).unwrap_or(0).max(0) as u64;
        let want = refill.max(need);
        if want == 0 || open {
            return Vec::new();
        }
        let candidates = peers
            .iter()
            .filter(|p| *p != me)
            .map(|p| (*p, replica.book().rights(pool, p)))
            .collect();
        let mut ids = id_source(&mut self.next_id);
        let sends = self.rounds.start(pool, want, candidates, now_ms, &mut ids);
        if !sends.is_empty() {
            debug!(%pool, rights, want, asks = sends.len(), "asking peers for rights");
        }
        self.stats.asks_sent += sends.len() as u64;
        sends
    }

    /// Pools where this node holds a share and is below its low-water mark:
    /// pulled when a peer connects.
    pub(crate) fn pull_all(
        &mut self,
        replica: &Replica,
        peers: &[NodeId],
        now_ms: u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        if !self.settings.auto_pull {
            return Vec::new();
        }
        let me = *replica.me();
        let low: Vec<PoolKey> = replica
            .book()
            .pools()
            .filter(|(_, p)| p.shares.contains_key(&me))
            .map(|(k, _)| k.clone())
            .collect();
        low.iter()
            .flat_map(|pool| self.pull(pool, 0, replica, peers, now_ms))
            .collect()
    }

    /// Ends unanswered asks that timed out; further requests to send.
    pub(crate) fn tick(&mut self, now_ms: u64) -> Vec<(NodeId, RightsRequest)> {
        let mut ids = id_source(&mut self.next_id);
        let sends = self.rounds.tick(now_ms, &mut ids);
        self.stats.asks_sent += sends.len() as u64;
        self.rounds
            .forget_finished(now_ms.saturating_sub(10 * 60 * 1000));
        sends
    }

    /// A peer disconnected.
    pub(crate) fn peer_down(&mut self, peer: NodeId, now_ms: u64) -> Vec<(NodeId, RightsRequest)> {
        self.answered.remove(&peer);
        let mut ids = id_source(&mut self.next_id);
        let sends = self.rounds.peer_down(peer, now_ms, &mut ids);
        self.stats.asks_sent += sends.len() as u64;
        sends
    }

    /// When [`RightsDesk::tick`] next has something to do.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.rounds.next_due()
    }

    /// The latest round of `pool`.
    pub(crate) fn round(&self, pool: &PoolKey) -> Option<&Round> {
        self.rounds.round(pool)
    }
}

/// Request ids: one up from the last.
fn id_source(next: &mut u64) -> impl FnMut() -> u64 + '_ {
    move || {
        *next = next.wrapping_add(1);
        *next
    }
}
