//! A manager-triggered rebalance of one location: the node plans each pool
//! with [`crate::rebalance::plan`] from what its replica shows (every holder's
//! rights, floors, sales velocity as observed, who is connected), then grants
//! its own share of the moves and orders each connected donor to grant its
//! own (a `RightsRequest` naming the receiver); each donor keeps its floor.
//! The report lists, per pool, the holders, the moves and their outcome, the
//! holders not reachable, and the imbalance left.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::grant::GrantSource;
use super::{Core, Node, Shared};
use crate::error::NodeError;
use crate::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, PoolKey, Quantity, Role, Sku,
};
use crate::rebalance::{plan, reserve_in, safety_stock_in, Holder, Strategy};
use crate::replica::Replica;

/// Most pools one rebalance may cover.
pub const MAX_POOLS: usize = 50_000;

/// What a manager asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceCommand {
    /// The location whose pools are rebalanced.
    pub location: LocationId,
    /// The SKUs; empty means every SKU held at the location.
    #[serde(default)]
    pub skus: Vec<Sku>,
    /// How the rights are split.
    pub strategy: Strategy,
    /// Plan only: nothing is granted.
    #[serde(default)]
    pub dry_run: bool,
}

/// One holder of a pool in a rebalance report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HolderRow {
    /// Its roster name (its id when unknown).
    pub node: String,
    /// Its id, hex.
    pub node_id: String,
    /// Its rights before.
    pub rights: i64,
    /// The floor it keeps.
    pub floor: i64,
    /// Its sales velocity (units per hour) as this node observed it.
    pub velocity: f64,
    /// Its rights after the plan.
    pub target: i64,
    /// Connected (or this node itself).
    pub reachable: bool,
}

/// One move of a rebalance report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoveRow {
    /// The donor.
    pub from: String,
    /// The receiver.
    pub to: String,
    /// Units planned.
    pub planned: i64,
    /// Units granted (0 in a dry run).
    pub granted: u64,
    /// `planned` (dry run), `granted`, a shortfall's label, `no_answer`, or an error.
    pub outcome: String,
}

/// The plan and outcome of one pool.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolRebalance {
    /// The SKU.
    pub sku: Sku,
    /// Every holder.
    pub holders: Vec<HolderRow>,
    /// The grants planned, with their outcome.
    pub moves: Vec<MoveRow>,
    /// Holders that could not take part.
    pub unreachable: Vec<String>,
    /// What no move could cover (the pool is in deficit overall).
    pub imbalance_left: i64,
}

/// What a rebalance did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RebalanceReport {
    /// The location.
    pub location: LocationId,
    /// The strategy used.
    pub strategy: Strategy,
    /// True when nothing was granted.
    pub dry_run: bool,
    /// Per pool, in SKU order (pools with no move and no imbalance left out).
    pub pools: Vec<PoolRebalance>,
    /// Pools looked at.
    pub pools_planned: usize,
    /// Units moved in all.
    pub moved: u64,
    /// How long it took.
    pub elapsed_ms: u64,
}

/// A move to carry out: pool index, move index, donor, receiver, units.
struct Work {
    pool: usize,
    mv: usize,
    from: NodeId,
    to: NodeId,
    qty: u64,
}

fn name(replica: &Replica, id: &NodeId) -> String {
    replica
        .roster()
        .and_then(|r| r.member(id))
        .map(|m| m.name.clone())
        .unwrap_or_else(|| id.to_string())
}

impl Node {
    /// Plans and carries out a rebalance of `cmd.location`, waiting up to
    /// `wait` for connected donors to answer their orders.
    pub fn rebalance(
        &self,
        cmd: &RebalanceCommand,
        wait: Duration,
    ) -> Result<RebalanceReport, NodeError> {
        let started = Instant::now();
        let (mut report, work) = {
            let core = self.shared.core();
            plan_all(&self.shared, &core, cmd)?
        };
        if cmd.dry_run {
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        let me = self.id();
        let nonce = self.shared.core().rights.fresh_id();
        // Own grants: submitted together, so they share group commits.
        let mut local = Vec::new();
        let mut orders = Vec::new();
        for (n, w) in work.iter().enumerate() {
            let pool = PoolKey::new(cmd.location.clone(), report.pools[w.pool].sku.clone());
            if w.from == me {
                let id = EventId::new(format!("rebalance-{nonce:x}-{n}"))
                    .map_err(|e| NodeError::Event(e.into()))?;
                let qty = Quantity::new(w.qty).map_err(|e| NodeError::Event(e.into()))?;
                let mut req = EventRequest::new(
                    id,
                    pool.location,
                    pool.sku,
                    qty,
                    EventKind::Grant { to: w.to },
                );
                req.reference = Some("manager rebalance".into());
                local.push((n, req.clone(), self.submit(req)));
            } else {
                let req = self.shared.core().rights.order(w.from, &pool, w.to, w.qty);
                orders.push((n, req.id));
                self.shared.send_requests(vec![(w.from, req)]);
            }
        }
        let mut outcomes: Vec<(u64, String)> = vec![(0, "no_answer".into()); work.len()];
        for (n, req, ticket) in local {
            let result = ticket.wait();
            self.shared
                .log_grant(GrantSource::Rebalance, me, req, &result);
            outcomes[n] = match result {
                Ok(o) => (o.qty, "granted".into()),
                Err(e) => (0, e.to_string()),
            };
        }
        let deadline = started + wait;
        let mut core = self.shared.core();
        loop {
            let done = orders
                .iter()
                .all(|(_, id)| core.rights.order_answer(*id).is_some());
            let left = deadline.saturating_duration_since(Instant::now());
            if done || left.is_zero() {
                break;
            }
            core = match self.shared.rights_changed.wait_timeout(core, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        for (n, id) in orders {
            if let Some(a) = core.rights.order_answer(id) {
                let label = a.shortfall.map_or("granted", |s| s.label());
                outcomes[n] = (a.granted, label.into());
            }
            core.rights.forget_order(id);
        }
        drop(core);
        for (w, (granted, outcome)) in work.iter().zip(outcomes) {
            let row = &mut report.pools[w.pool].moves[w.mv];
            row.granted = granted;
            row.outcome = outcome;
            report.moved += granted;
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

/// Plans every pool of the command under the node's lock.
fn plan_all(
    shared: &Shared,
    core: &Core,
    cmd: &RebalanceCommand,
) -> Result<(RebalanceReport, Vec<Work>), NodeError> {
    let replica = core.writer.replica().ok_or(NodeError::Stopped)?;
    let me = *replica.me();
    let now = shared.now();
    let peers: BTreeSet<NodeId> = core.engine.peers().copied().collect();
    let skus: Vec<Sku> = if cmd.skus.is_empty() {
        replica
            .book()
            .pools()
            .filter(|(k, _)| k.location == cmd.location)
            .map(|(k, _)| k.sku.clone())
            .collect()
    } else {
        cmd.skus.clone()
    };
    if skus.len() > MAX_POOLS {
        return Err(NodeError::Event(crate::error::EventError::Input(
            crate::error::InputError::TooLong {
                what: "rebalance (pools)",
                len: skus.len(),
                max: MAX_POOLS,
            },
        )));
    }
    // Members that may hold rights here even with none yet.
    let members: Vec<NodeId> = replica
        .roster()
        .map(|r| {
            r.members
                .iter()
                .filter(|(id, m)| {
                    m.revoked.is_none()
                        && m.locations.contains(&cmd.location)
                        && m.role != Role::Hub
                        && r.admits(id, None).is_ok()
                })
                .map(|(id, _)| *id)
                .collect()
        })
        .unwrap_or_default();
    let mut report = RebalanceReport {
        location: cmd.location.clone(),
        strategy: cmd.strategy,
        dry_run: cmd.dry_run,
        pools: Vec::new(),
        pools_planned: skus.len(),
        moved: 0,
        elapsed_ms: 0,
    };
    let mut work = Vec::new();
    for sku in skus {
        let pool = PoolKey::new(cmd.location.clone(), sku.clone());
        let mut ids: BTreeSet<NodeId> = members.iter().copied().collect();
        if let Some(p) = replica.book().pool(&pool) {
            ids.extend(p.shares.keys().copied());
        }
        ids.insert(me);
        let holders: Vec<Holder> = ids
            .iter()
            .map(|id| {
                let velocity = core.rights.velocity_of(&me, id, &pool, now);
                let floor = core
                    .rights
                    .settings
                    .levels(
                        &crate::rebalance::Velocity {
                            per_hour: velocity,
                            at_ms: now as i64,
                        },
                        now as i64,
                    )
                    .floor;
                // This node keeps its reserve; a channel is never planned
                // its safety stock.
                let settings = &core.rights.settings;
                let floor = if *id == me {
                    floor.max(reserve_in(&settings.reserves, &pool))
                } else {
                    floor
                };
                let who = replica
                    .roster()
                    .and_then(|r| r.member(id))
                    .map(|m| m.name.as_str());
                Holder {
                    node: *id,
                    rights: replica.book().rights(&pool, id),
                    floor,
                    velocity,
                    safety_stock: safety_stock_in(&settings.safety_stocks, id, who, &pool),
                    reachable: *id == me || peers.contains(id),
                }
            })
            .collect();
        let planned = plan(&holders, cmd.strategy);
        if planned.moves.is_empty() && planned.imbalance_left == 0 {
            continue;
        }
        let index = report.pools.len();
        let rows = holders
            .iter()
            .map(|h| HolderRow {
                node: name(replica, &h.node),
                node_id: h.node.to_hex(),
                rights: h.rights,
                floor: h.floor,
                velocity: (h.velocity * 100.0).round() / 100.0,
                target: planned
                    .targets
                    .iter()
                    .find(|(n, _)| *n == h.node)
                    .map_or(h.rights, |(_, t)| *t),
                reachable: h.reachable,
            })
            .collect();
        let mut moves = Vec::new();
        for (mv, m) in planned.moves.iter().enumerate() {
            moves.push(MoveRow {
                from: name(replica, &m.from),
                to: name(replica, &m.to),
                planned: m.qty,
                granted: 0,
                outcome: "planned".into(),
            });
            if m.qty > 0 {
                work.push(Work {
                    pool: index,
                    mv,
                    from: m.from,
                    to: m.to,
                    qty: m.qty as u64,
                });
            }
        }
        report.pools.push(PoolRebalance {
            sku,
            holders: rows,
            moves,
            unreachable: holders
                .iter()
                .filter(|h| !h.reachable)
                .map(|h| name(replica, &h.node))
                .collect(),
            imbalance_left: planned.imbalance_left,
        });
    }
    Ok((report, work))
}
