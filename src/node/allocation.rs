//! The node side of allocation: a hub gives its rights above its reserve to
//! the channels and stores its settings name ([`crate::rebalance::AllocationRule`]),
//! by share and up to a target, on a receipt at its own location (the new
//! units) and on request ([`Node::allocate`]). The split is decided by the
//! pure [`crate::rebalance::allocate`]; each grant is an ordinary escrow
//! `grant` of the node's own rights with an id fixed by the allocation, so a
//! repeated allocation never grants twice.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::Node;
use crate::error::{EventError, InputError, NodeError};
use crate::model::{
    EventId, EventKind, EventOutcome, EventRequest, LocationId, NodeId, PoolKey, Quantity, Sku,
};
use crate::rebalance::{
    allocate, donor_floor, reserve_in, safety_stock_in, AllocationInput, NodeRef, Recipient,
};
use crate::replica::Replica;

/// Most pools one allocation may cover.
pub const MAX_POOLS: usize = 50_000;

/// What an allocation on request covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationCommand {
    /// The location whose pools are allocated.
    pub location: LocationId,
    /// The SKUs; empty means every SKU this node holds rights in there.
    #[serde(default)]
    pub skus: Vec<Sku>,
    /// Plan only: nothing is granted.
    #[serde(default)]
    pub dry_run: bool,
    /// An idempotency key: the same key allocates at most once (its grants'
    /// ids derive from it); none: a fresh one.
    #[serde(default)]
    pub id: Option<String>,
}

/// One grant of an allocation report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantRow {
    /// The receiver's roster name (its id when unknown).
    pub to: String,
    /// Its id, hex.
    pub node_id: String,
    /// Units planned.
    pub planned: i64,
    /// Units granted (0 in a dry run).
    pub granted: u64,
    /// `planned` (dry run), `granted`, `replayed`, or the error.
    pub outcome: String,
}

/// The allocation of one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolAllocation {
    /// The SKU.
    pub sku: Sku,
    /// This node's rights before.
    pub rights: i64,
    /// The floor it kept (its reserve included).
    pub floor: i64,
    /// Units that could be allocated.
    pub available: i64,
    /// The grants, in commit order.
    pub grants: Vec<GrantRow>,
}

/// What an allocation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllocationReport {
    /// The location.
    pub location: LocationId,
    /// True when nothing was granted.
    pub dry_run: bool,
    /// Per pool with something to allocate, in SKU order.
    pub pools: Vec<PoolAllocation>,
    /// Pools looked at.
    pub pools_planned: usize,
    /// Units granted in all.
    pub allocated: u64,
    /// Receivers named in the settings but not found in the roster.
    pub unknown_receivers: Vec<String>,
    /// How long it took.
    pub elapsed_ms: u64,
}

fn too_long(len: usize) -> NodeError {
    NodeError::Event(EventError::Input(InputError::TooLong {
        what: "allocation (pools)",
        len,
        max: MAX_POOLS,
    }))
}

fn name(replica: &Replica, id: &NodeId) -> String {
    replica
        .roster()
        .and_then(|r| r.member(id))
        .map(|m| m.name.clone())
        .unwrap_or_else(|| id.to_string())
}

/// The node a rule names, if it can be found.
fn resolve(replica: &Replica, r: &NodeRef) -> Option<NodeId> {
    match r {
        NodeRef::Id(id) => Some(*id),
        NodeRef::Name(n) => replica.roster().and_then(|ro| {
            ro.members
                .iter()
                .find(|(_, m)| m.name == *n && m.revoked.is_none())
                .map(|(id, _)| *id)
        }),
    }
}

/// A short tag from `key`, for grant ids (at most 64 characters in all).
fn tag(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Node {
    /// Allocates this node's rights above its reserve in `cmd`'s pools to the
    /// receivers its settings name.
    pub fn allocate(&self, cmd: &AllocationCommand) -> Result<AllocationReport, NodeError> {
        let key = match &cmd.id {
            Some(k) => format!("request/{k}"),
            None => {
                let mut b = [0u8; 8];
                // Only uniqueness matters; without randomness, the clock.
                if getrandom::fill(&mut b).is_err() {
                    b = self.shared.now().to_le_bytes();
                }
                format!("request/{}", u64::from_le_bytes(b))
            }
        };
        self.run_allocation(&cmd.location, &cmd.skus, None, &key, cmd.dry_run)
    }

    /// A receipt (or transfer in) at this node's own location was committed:
    /// its units are allocated by the settings' rules, if any match.
    pub(super) fn allocate_receipt(&self, req: &EventRequest, outcome: &EventOutcome) {
        if outcome.replayed
            || !matches!(req.kind, EventKind::Receipt | EventKind::TransferIn { .. })
            || req.pool.location != self.shared.meta.location
        {
            return;
        }
        let covered = {
            let core = self.shared.core();
            core.rights
                .settings
                .allocation
                .iter()
                .any(|r| r.scope.matches(&req.pool))
        };
        if !covered {
            return;
        }
        let key = format!("receipt/{}/{}", req.pool, req.id.as_str());
        let units = outcome.qty.min(i64::MAX as u64) as i64;
        match self.run_allocation(
            &req.pool.location,
            std::slice::from_ref(&req.pool.sku),
            Some(units),
            &key,
            false,
        ) {
            Ok(r) => {
                info!(pool = %req.pool, receipt = req.id.as_str(), allocated = r.allocated, "receipt allocated")
            }
            Err(e) => {
                warn!(pool = %req.pool, receipt = req.id.as_str(), error = %e, "receipt not allocated")
            }
        }
    }

    fn run_allocation(
        &self,
        location: &LocationId,
        skus: &[Sku],
        units: Option<i64>,
        key: &str,
        dry_run: bool,
    ) -> Result<AllocationReport, NodeError> {
        let started = Instant::now();
        let tag = tag(key);
        let mut report = AllocationReport {
            location: location.clone(),
            dry_run,
            pools: Vec::new(),
            pools_planned: 0,
            allocated: 0,
            unknown_receivers: Vec::new(),
            elapsed_ms: 0,
        };
        // (pool index, grant index, request)
        let mut work = Vec::new();
        {
            let core = self.shared.core();
            let replica = core.writer.replica().ok_or(NodeError::Stopped)?;
            let me = *replica.me();
            let now = self.shared.now();
            let settings = &core.rights.settings;
            let skus: Vec<Sku> = if skus.is_empty() {
                replica
                    .book()
                    .pools()
                    .filter(|(k, p)| k.location == *location && p.shares.contains_key(&me))
                    .map(|(k, _)| k.sku.clone())
                    .collect()
            } else {
                skus.to_vec()
            };
            if skus.len() > MAX_POOLS {
                return Err(too_long(skus.len()));
            }
            report.pools_planned = skus.len();
            for sku in skus {
                let pool = PoolKey::new(location.clone(), sku.clone());
                let mut recipients = Vec::new();
                for rule in settings
                    .allocation
                    .iter()
                    .filter(|r| r.scope.matches(&pool))
                {
                    let Some(id) = resolve(replica, &rule.node) else {
                        let n = match &rule.node {
                            NodeRef::Name(n) => n.clone(),
                            NodeRef::Id(id) => id.to_hex(),
                        };
                        if !report.unknown_receivers.contains(&n) {
                            report.unknown_receivers.push(n);
                        }
                        continue;
                    };
                    if id == me || recipients.iter().any(|r: &Recipient| r.node == id) {
                        continue;
                    }
                    let nm = name(replica, &id);
                    recipients.push(Recipient {
                        node: id,
                        rights: replica.book().rights(&pool, &id),
                        share: rule.share,
                        target: rule.target.map(|t| t.min(i64::MAX as u64 / 4) as i64),
                        safety_stock: safety_stock_in(
                            &settings.safety_stocks,
                            &id,
                            replica.roster().map(|_| nm.as_str()),
                            &pool,
                        )
                        .unwrap_or(0),
                    });
                }
                if recipients.is_empty() {
                    continue;
                }
                let own = core.rights.velocity_of(&me, &me, &pool, now);
                let levels = settings.levels(
                    &crate::rebalance::Velocity {
                        per_hour: own,
                        at_ms: now as i64,
                    },
                    now as i64,
                );
                let floor = donor_floor(levels.floor, reserve_in(&settings.reserves, &pool), None);
                let rights = replica.book().rights(&pool, &me) - core.rights.promised(&pool);
                let a = allocate(&AllocationInput {
                    rights,
                    floor,
                    units,
                    recipients,
                });
                if a.grants.is_empty() {
                    continue;
                }
                let index = report.pools.len();
                let mut rows = Vec::new();
                for (n, g) in a.grants.iter().enumerate() {
                    rows.push(GrantRow {
                        to: name(replica, &g.to),
                        node_id: g.to.to_hex(),
                        planned: g.qty,
                        granted: 0,
                        outcome: "planned".into(),
                    });
                    let id = EventId::new(format!("alloc-{tag}-{index}-{n}"))
                        .map_err(|e| NodeError::Event(e.into()))?;
                    let qty =
                        Quantity::new(g.qty as u64).map_err(|e| NodeError::Event(e.into()))?;
                    let mut req = EventRequest::new(
                        id,
                        location.clone(),
                        sku.clone(),
                        qty,
                        EventKind::Grant { to: g.to },
                    );
                    req.reference = Some(format!("allocation {key}"));
                    work.push((index, n, req));
                }
                report.pools.push(PoolAllocation {
                    sku,
                    rights,
                    floor,
                    available: a.available,
                    grants: rows,
                });
            }
        }
        if !dry_run {
            // Submitted together, in order: they share group commits, and
            // the escrow rule checks each against the rights the earlier left.
            let tickets: Vec<_> = work
                .into_iter()
                .map(|(p, n, req)| (p, n, self.submit(req)))
                .collect();
            for (p, n, t) in tickets {
                let row = &mut report.pools[p].grants[n];
                match t.wait() {
                    Ok(o) => {
                        row.granted = o.qty;
                        row.outcome = if o.replayed { "replayed" } else { "granted" }.into();
                        report.allocated += o.qty;
                    }
                    Err(e) => row.outcome = e.to_string(),
                }
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}
