//! The checker's own model of the fleet: what every acknowledged or durable
//! event did to its pool (worked out by [`super::effect`] from the event alone),
//! and what the rule must have answered, given the node's view just before
//! the event.

use std::collections::{BTreeMap, HashMap};

use super::effect::{add, cover, effect, Cover, Effect, HoldChange, Tally};
use crate::error::{EventError, NodeError};
use crate::escrow::TransferLeg;
use crate::model::{EventId, EventOutcome, EventRequest, NodeId, Policy, PoolKey, ReservationId};

/// What the model made of one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Accepted and applied now.
    Applied,
    /// The stored answer of an event applied before.
    Replayed,
    /// Refused by the rule or the event model.
    Refused,
    /// Failed in storage; nothing applied.
    Failed,
}

/// A node's view of its own part of the pools, read from its replica before a
/// group and moved on by the group's accepted events.
pub struct View {
    /// The node.
    pub node: NodeId,
    /// Its name, for messages.
    pub name: String,
    /// Its share of each pool the group touches, as its replica showed it.
    pub pools: HashMap<PoolKey, Tally>,
}

/// Open holds of one node: reservation → (pool, units outstanding).
pub type ModelHolds = BTreeMap<ReservationId, (PoolKey, i64)>;

/// The truth: every applied event's effect, the deficits recorded, the holds.
#[derive(Default)]
pub struct Model {
    pools: BTreeMap<PoolKey, BTreeMap<NodeId, Tally>>,
    deficits: BTreeMap<PoolKey, BTreeMap<NodeId, i64>>,
    legs: BTreeMap<TransferLeg, (i64, i64)>,
    holds: HashMap<NodeId, ModelHolds>,
    applied: HashMap<(NodeId, EventId), (EventRequest, EventOutcome)>,
    names: HashMap<NodeId, String>,
}

impl Model {
    /// An empty model of the nodes `names`.
    pub fn new(names: HashMap<NodeId, String>) -> Self {
        Self {
            names,
            ..Self::default()
        }
    }

    fn name(&self, n: &NodeId) -> String {
        self.names.get(n).cloned().unwrap_or_else(|| n.to_string())
    }

    /// The stored request and first answer of an event applied on `node`.
    pub fn applied(&self, node: &NodeId, id: &EventId) -> Option<&(EventRequest, EventOutcome)> {
        self.applied.get(&(*node, id.clone()))
    }

    /// Checks `answer` to `req` against the rule and `view`, and applies an
    /// accepted event to the model and to the view.
    pub fn answer(
        &mut self,
        view: &mut View,
        req: &EventRequest,
        answer: &Result<EventOutcome, NodeError>,
    ) -> Result<Answered, String> {
        let (who, id, kind) = (&view.name, &req.id, req.kind.label());
        let key = (view.node, req.id.clone());
        let rights = view
            .pools
            .get(&req.pool)
            .copied()
            .unwrap_or_default()
            .rights();
        let cover = cover(req);
        let seen = self.applied.get(&key).is_some_and(|(r, _)| r == req);
        let o = match answer {
            // The same request again must get its first answer back.
            Err(NodeError::Event(e)) if seen => {
                return Err(format!(
                "{who} answered {kind} {id}, applied before, with \"{e}\" instead of replaying it"
            ))
            }
            Err(_) if seen => return Ok(Answered::Failed),
            Ok(o) if o.replayed => {
                let Some((first_req, first)) = self.applied.get(&key) else {
                    return Err(format!(
                        "{who} answered {kind} {id} `replayed`, but it was never applied"
                    ));
                };
                let same = |o: &EventOutcome| (o.position, o.deficit_created, o.rights_after);
                if first_req != req || same(first) != same(o) {
                    return Err(format!(
                        "{who} replayed {kind} {id} as {:?}, its first answer was {:?}",
                        same(o),
                        same(first)
                    ));
                }
                return Ok(Answered::Replayed);
            }
            Ok(o) => o,
            Err(NodeError::Event(EventError::InsufficientRights { .. })) => {
                return match cover {
                    Cover::Takes(q, Policy::Strict) if q > rights => Ok(Answered::Refused),
                    _ => Err(format!(
                        "{who} refused {kind} {id} of {} for rights {rights}, which it must accept",
                        req.qty
                    )),
                };
            }
            Err(NodeError::Event(EventError::RecordNotAllowed { .. })) => {
                return match cover {
                    Cover::Refuse => Ok(Answered::Refused),
                    _ => Err(format!(
                        "{who} refused record on {kind} {id}, which allows it"
                    )),
                };
            }
            Err(NodeError::Event(_)) => return Ok(Answered::Refused),
            Err(NodeError::Store(_)) => {
                // Staged, then its group's commit failed: nothing is applied, but
                // the rest of the group was decided with it staged.
                let staged = match cover {
                    Cover::Refuse => false,
                    Cover::Takes(q, Policy::Strict) => q <= rights,
                    _ => true,
                };
                if !staged {
                    return Err(format!(
                        "{who} staged {kind} {id} of {}, which the rule must refuse",
                        req.qty
                    ));
                }
                let mine = view.pools.entry(req.pool.clone()).or_default();
                add(mine, &effect(req).own);
                return Ok(Answered::Failed);
            }
            Err(_) => return Ok(Answered::Failed),
        };
        let deficit = self.accepted(view, req, o)?;
        self.commit(view, req, o, deficit);
        Ok(Answered::Applied)
    }

    /// Node `view.node` made `req` durable (outcome `o`) but died before
    /// answering; read from its journal at restart. When the same id comes
    /// again later in its group (`repeated`), this occurrence may have been
    /// refused and a later one staged: it is taken here only if the rule
    /// accepts it here with exactly this outcome (`Ok(false)` otherwise).
    pub fn durable(
        &mut self,
        view: &mut View,
        req: &EventRequest,
        o: &EventOutcome,
        repeated: bool,
    ) -> Result<bool, String> {
        match self.accepted(view, req, o) {
            Ok(deficit) => {
                self.commit(view, req, o, deficit);
                Ok(true)
            }
            Err(_) if repeated => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks an accepted `req` with outcome `o` against the rule and the
    /// view; returns the deficit it must have recorded. Changes nothing.
    fn accepted(&self, view: &View, req: &EventRequest, o: &EventOutcome) -> Result<i64, String> {
        let (who, id, kind) = (&view.name, &req.id, req.kind.label());
        if self.applied.contains_key(&(view.node, req.id.clone())) {
            return Err(format!("{who} applied {kind} {id} twice"));
        }
        let mut mine = view.pools.get(&req.pool).copied().unwrap_or_default();
        let rights = mine.rights();
        let deficit = match cover(req) {
            Cover::Free => 0,
            Cover::Refuse => {
                return Err(format!(
                    "{who} accepted {kind} {id} under record, which it must refuse"
                ))
            }
            Cover::Takes(q, _) if q <= rights => 0,
            Cover::Takes(q, Policy::Strict) => {
                return Err(format!(
                    "oversell: {who} accepted strict {kind} {id} of {q} in {} with rights {rights}",
                    req.pool
                ))
            }
            Cover::Takes(q, Policy::Record) => q - rights.max(0),
        };
        if o.deficit_created as i64 != deficit {
            return Err(format!(
                "{who}: {kind} {id} of {} in {} recorded a deficit of {}, its shortfall against rights {rights} is {deficit}",
                req.qty, req.pool, o.deficit_created
            ));
        }
        let e = effect(req);
        self.check_hold(view, req, &e)?;
        add(&mut mine, &e.own);
        if o.rights_after != mine.rights() {
            return Err(format!(
                "{who}: {kind} {id} in {} answered rights {} after, the model says {}",
                req.pool,
                o.rights_after,
                mine.rights()
            ));
        }
        Ok(deficit)
    }

    /// Applies an accepted event to the model and to the node's view.
    fn commit(&mut self, view: &mut View, req: &EventRequest, o: &EventOutcome, deficit: i64) {
        let e = effect(req);
        self.apply(view.node, req, &e);
        add(view.pools.entry(req.pool.clone()).or_default(), &e.own);
        *self
            .deficits
            .entry(req.pool.clone())
            .or_default()
            .entry(view.node)
            .or_default() += deficit;
        self.applied
            .insert((view.node, req.id.clone()), (req.clone(), o.clone()));
    }

    fn check_hold(&self, view: &View, req: &EventRequest, e: &Effect) -> Result<(), String> {
        let holds = self.holds.get(&view.node);
        let who = &view.name;
        match &e.hold {
            Some(HoldChange::Open(r, _)) if holds.is_some_and(|h| h.contains_key(r)) => Err(
                format!("{who} reopened reservation {r}, which is still open"),
            ),
            Some(HoldChange::Take(r, q)) => match holds.and_then(|h| h.get(r)) {
                Some((pool, out)) if *pool == req.pool && q <= out => Ok(()),
                other => Err(format!(
                    "{who} accepted {} {} of {q} from reservation {r}, which holds {other:?}",
                    req.kind.label(),
                    req.id
                )),
            },
            _ => Ok(()),
        }
    }

    fn apply(&mut self, node: NodeId, req: &EventRequest, e: &Effect) {
        let pool = self.pools.entry(req.pool.clone()).or_default();
        add(pool.entry(node).or_default(), &e.own);
        if let Some(to) = e.grant_to {
            pool.entry(to).or_default().granted_in += e.own.granted_out;
        }
        if let Some(leg) = &e.shipped {
            self.legs.entry(leg.clone()).or_default().0 += req.qty.as_i64();
        }
        if let Some(leg) = &e.received {
            self.legs.entry(leg.clone()).or_default().1 += req.qty.as_i64();
        }
        let holds = self.holds.entry(node).or_default();
        match &e.hold {
            Some(HoldChange::Open(r, q)) => {
                holds.insert(r.clone(), (req.pool.clone(), *q));
            }
            Some(HoldChange::Take(r, q)) => {
                if let Some((_, out)) = holds.get_mut(r) {
                    *out -= q;
                    if *out == 0 {
                        holds.remove(r);
                    }
                }
            }
            None => {}
        }
    }

    /// Every pool and every node's tally in it.
    pub fn pools(&self) -> &BTreeMap<PoolKey, BTreeMap<NodeId, Tally>> {
        &self.pools
    }

    /// `node`'s tally in `pool` (zero when it never took part).
    pub fn tally(&self, pool: &PoolKey, node: &NodeId) -> Tally {
        self.pools
            .get(pool)
            .and_then(|p| p.get(node))
            .copied()
            .unwrap_or_default()
    }

    /// Shipped and received units of every transfer leg.
    pub fn legs(&self) -> &BTreeMap<TransferLeg, (i64, i64)> {
        &self.legs
    }

    /// `node`'s open holds.
    pub fn holds(&self, node: &NodeId) -> ModelHolds {
        self.holds.get(node).cloned().unwrap_or_default()
    }

    /// The exact oversell bound: every pool's on-hand count at least minus the
    /// deficits recorded in it, every node's rights at least minus its own
    /// recorded deficits, and no node holding fewer than zero units.
    pub fn invariant(&self) -> Result<(), String> {
        let none = BTreeMap::new();
        for (pool, nodes) in &self.pools {
            let deficits = self.deficits.get(pool).unwrap_or(&none);
            let recorded: i64 = deficits.values().sum();
            let on_hand: i64 = nodes.values().map(|t| t.minted - t.consumed).sum();
            if on_hand < -recorded {
                return Err(format!(
                    "oversell: {pool} on hand {on_hand}, deficits recorded {recorded}"
                ));
            }
            for (n, t) in nodes {
                let d = deficits.get(n).copied().unwrap_or(0);
                if t.rights() < -d {
                    return Err(format!(
                        "oversell: {} has rights {} in {pool}, deficits recorded {d}",
                        self.name(n),
                        t.rights()
                    ));
                }
                if t.held() < 0 {
                    return Err(format!("{} holds {} in {pool}", self.name(n), t.held()));
                }
            }
        }
        Ok(())
    }
}
