//! The checker's side of rebalancing: it learns every grant the nodes commit
//! by themselves (a donor answering a pull or a manager's order inside
//! `receive`, a manager's own moves) from what the nodes report
//! ([`crate::node::Node::take_grants`]) and their replicas' raw counters, and
//! checks each one against its own model: a grant is a strict consumption of
//! the donor's rights, never below the donor's floor, never more in all than
//! the request asked, and it leaves every pool's total rights unchanged.

use std::collections::{BTreeMap, HashMap};

use super::effect::Tally;
use super::model::{Model, View};
use super::world::World;
use crate::model::{EventOutcome, NodeId, PoolKey};
use crate::node::{CommittedGrant, GrantSource};

/// The grants one call into one node committed, with the node's own tally
/// in each of their pools right after (`None`: the node died in the call).
pub struct GrantBatch {
    /// The node's index.
    pub node: usize,
    /// The grants, in commit order.
    pub grants: Vec<CommittedGrant>,
    /// The node's raw counters in each pool of the grants, read after them.
    pub after: Option<Vec<(PoolKey, Tally)>>,
}

/// What the rebalancing part of the run counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct RebalanceCounts {
    /// Grants answering a peer's pull or borrow.
    pub pulls: usize,
    /// Grants obeying a manager's order.
    pub orders: usize,
    /// A manager's own moves.
    pub own_moves: usize,
    /// Units moved by all of them.
    pub units: u64,
    /// Manager rebalances issued.
    pub rebalances: usize,
    /// Strict consumptions refused that borrowed and were retried.
    pub borrows: usize,
    /// Of those, retries that went through.
    pub borrows_ok: usize,
    /// Grants made during the quiet rounds after the heal.
    pub quiet_grants: usize,
}

/// The checker's state for grants.
pub struct GrantCheck {
    /// Grants of a node's life that ended in a crash: settled at its restart.
    pending: Vec<Vec<CommittedGrant>>,
    /// Per (donor, asker, request id): units asked and granted so far.
    requests: HashMap<(NodeId, NodeId, u64), (u64, u64)>,
    /// The floor every donor keeps (the run's fixed setting).
    floor: i64,
    /// Once the workload stopped and the network healed: the grants made
    /// since, as (pool, donor, receiver).
    pub quiet: Option<Vec<(PoolKey, NodeId, NodeId)>>,
    /// What was counted.
    pub counts: RebalanceCounts,
}

impl GrantCheck {
    /// A check for `nodes` nodes whose donors keep `floor`.
    pub fn new(nodes: usize, floor: i64) -> Self {
        Self {
            pending: vec![Vec::new(); nodes],
            requests: HashMap::new(),
            floor,
            quiet: None,
            counts: RebalanceCounts::default(),
        }
    }

    /// Learns every batch the world collected since the last call.
    pub fn learn(&mut self, model: &mut Model, world: &mut World) -> Result<(), String> {
        for batch in std::mem::take(&mut world.grants) {
            match batch.after {
                Some(after) => {
                    let mut done = Vec::new();
                    let up = world.nodes[batch.node].live.is_some();
                    for g in batch.grants {
                        match &g.result {
                            Ok(o) => done.push((g.clone(), o.clone())),
                            // Died since: its journal is read at its restart.
                            Err(_) if !up => self.pending[batch.node].push(g),
                            Err(e) => not_durable(model, world, batch.node, &g, e)?,
                        }
                    }
                    self.apply(model, world, batch.node, done, after)?;
                }
                None => self.pending[batch.node].extend(batch.grants),
            }
        }
        Ok(())
    }

    /// Node `i` restarted: the grants of its last life count if its journal
    /// holds them (it died before reporting some of them).
    pub fn restarted(&mut self, model: &mut Model, world: &World, i: usize) -> Result<(), String> {
        let node = &world.nodes[i];
        let mut done = Vec::new();
        for g in std::mem::take(&mut self.pending[i]) {
            match node.journal(&g.request.id)? {
                Some((stored, o)) if stored == g.request => done.push((g, o)),
                Some((stored, _)) if model.applied(&node.meta.id, &g.request.id).is_none() => {
                    return Err(format!(
                        "{}: journal holds {stored:?} under the id of its grant {:?}",
                        node.meta.name, g.request
                    ))
                }
                _ => {}
            }
        }
        if done.is_empty() {
            return Ok(());
        }
        let after = tallies(world, i, done.iter().map(|(g, _)| &g.request.pool))?;
        self.apply(model, world, i, done, after)
    }

    /// Checks and applies grants node `i` made durable, given its raw
    /// counters right after them.
    fn apply(
        &mut self,
        model: &mut Model,
        world: &World,
        i: usize,
        grants: Vec<(CommittedGrant, EventOutcome)>,
        after: Vec<(PoolKey, Tally)>,
    ) -> Result<(), String> {
        let node = &world.nodes[i];
        let (me, name) = (node.meta.id, node.meta.name.clone());
        // The node's counters before the batch: after, less its new grants.
        let mut pools: HashMap<PoolKey, Tally> = after.into_iter().collect();
        for (g, o) in &grants {
            if !o.replayed {
                if let Some(t) = pools.get_mut(&g.request.pool) {
                    t.granted_out -= g.request.qty.as_i64();
                }
            }
        }
        let mut view = View {
            node: me,
            name: name.clone(),
            pools,
        };
        for (g, o) in grants {
            let req = &g.request;
            if o.replayed {
                match model.applied(&me, &req.id) {
                    Some((first, _)) if first == req => continue,
                    _ => {
                        return Err(format!(
                        "{name} answered its grant {} `replayed`, but the model never applied it",
                        req.id
                    ))
                    }
                }
            }
            let before = total(model, &req.pool);
            model
                .durable(&mut view, req, &o, false)
                .map_err(|e| format!("{e}\n  (a grant {name} made by itself: {:?})", g.source))?;
            let after = total(model, &req.pool);
            if before != after {
                return Err(format!(
                    "{name}'s grant {} changed the rights of {} from {before} to {after}",
                    req.id, req.pool
                ));
            }
            let qty = req.qty.get();
            self.counts.units += qty;
            if let (Some(quiet), crate::model::EventKind::Grant { to }) =
                (&mut self.quiet, &req.kind)
            {
                // With no sales, a holder that gave never needs rights back.
                if quiet
                    .iter()
                    .any(|(p, from, back)| p == &req.pool && *from == *to && *back == me)
                {
                    return Err(format!(
                        "ping-pong: {name} granted {qty} of {} back to {}, which granted it rights there after the heal",
                        req.pool,
                        world.index_of(to).map_or_else(|| to.to_string(), |a| world.nodes[a].meta.name.clone())
                    ));
                }
                quiet.push((req.pool.clone(), me, *to));
            }
            let asked = match g.source {
                GrantSource::Pull { request, asked } => {
                    self.counts.pulls += 1;
                    Some((request, asked))
                }
                GrantSource::Order { request, asked } => {
                    self.counts.orders += 1;
                    Some((request, asked))
                }
                GrantSource::Rebalance => {
                    self.counts.own_moves += 1;
                    None
                }
            };
            let Some((request, asked)) = asked else {
                continue;
            };
            let left = view
                .pools
                .get(&req.pool)
                .copied()
                .unwrap_or_default()
                .rights();
            if left < self.floor {
                return Err(format!(
                    "over-grant: {name} granted {qty} of {} for request {request:016x}, leaving itself {left}, below its floor {}",
                    req.pool, self.floor
                ));
            }
            let seen = self.requests.entry((me, g.asker, request)).or_default();
            seen.0 = asked;
            seen.1 += qty;
            if seen.1 > seen.0 {
                return Err(format!(
                    "over-grant: {name} granted {} in all for request {request:016x} of {}, which asked {asked} of {}",
                    seen.1,
                    world.index_of(&g.asker).map_or_else(|| g.asker.to_string(), |a| world.nodes[a].meta.name.clone()),
                    req.pool
                ));
            }
        }
        Ok(())
    }
}

/// A grant that failed while its node lived on: nothing of it may be durable.
fn not_durable(
    model: &Model,
    world: &World,
    i: usize,
    g: &CommittedGrant,
    error: &str,
) -> Result<(), String> {
    let node = &world.nodes[i];
    if model.applied(&node.meta.id, &g.request.id).is_some() {
        return Ok(());
    }
    match node.journal(&g.request.id)? {
        None => Ok(()),
        Some(_) => Err(format!(
            "{}: its grant {} failed (\"{error}\") but is in its journal",
            node.meta.name, g.request.id
        )),
    }
}

/// Rights in `pool`, all holders together, as the model counts them.
fn total(model: &Model, pool: &PoolKey) -> i64 {
    model
        .pools()
        .get(pool)
        .map_or(0, |p| p.values().map(Tally::rights).sum())
}

/// Node `i`'s raw counters in `pools`, from its replica (it must be up).
pub fn tallies<'a>(
    world: &World,
    i: usize,
    pools: impl Iterator<Item = &'a PoolKey>,
) -> Result<Vec<(PoolKey, Tally)>, String> {
    let node = &world.nodes[i];
    let live = node
        .live
        .as_ref()
        .ok_or_else(|| format!("{} is down", node.meta.name))?;
    let me = node.meta.id;
    let pools: Vec<PoolKey> = pools.cloned().collect();
    live.query(|r| {
        pools
            .into_iter()
            .map(|p| {
                let t = r.book().pool(&p).map(|s| Tally::of(&s.share(&me)));
                (p, t.unwrap_or_default())
            })
            .collect()
    })
    .map_err(|e| format!("{}: {e}", node.meta.name))
}

/// Every live replica's rights in every pool sum to its on hand less its
/// holds, whoever granted what to whom (raw counters, the checker's formulas).
pub fn conserved(world: &World) -> Result<(), String> {
    for node in &world.nodes {
        let Some(live) = &node.live else { continue };
        let bad = live
            .query(|r| {
                r.book().pools().find_map(|(pool, state)| {
                    let shares: BTreeMap<_, _> = state
                        .shares
                        .keys()
                        .map(|n| (*n, Tally::of(&state.share(n))))
                        .collect();
                    let rights: i64 = shares.values().map(Tally::rights).sum();
                    let stock: i64 = shares
                        .values()
                        .map(|t| t.minted - t.consumed - t.held())
                        .sum();
                    (rights != stock).then(|| {
                        format!("{pool}: rights {rights} in all, on hand less holds {stock}")
                    })
                })
            })
            .map_err(|e| format!("{}: {e}", node.meta.name))?;
        if let Some(b) = bad {
            return Err(format!("{} does not conserve rights: {b}", node.meta.name));
        }
    }
    Ok(())
}
