//! The hub's live aggregate: per SKU, every pool's share per node, the SKU's
//! totals, transfers in flight; per node, its rights, deficits and last change.
//!
//! Pure: fed with counter raises `(writer, key, new absolute value)`, it keeps
//! each writer's counters itself and applies a raise only if it is above the
//! value held, so duplicates and reordered raises change nothing (counters are
//! grow-only). Each raise updates the pool's row, the SKU's totals and the
//! node's totals in place: a binary search in the SKU's rows (sorted by
//! location, then node) and a constant amount of arithmetic; nothing is
//! recounted.
//!
//! Layout: SKUs, locations, nodes and transfers are interned to `u32`. Per SKU,
//! one `Vec<ShareRow>` (56 bytes a row: location, node, six `i64` counters)
//! sorted by (location, node), a sparse sorted `Vec` of per-location transit
//! sums, and four totals. Grant counters (one per granting and receiving node)
//! and transfer legs live in hash maps: they are few next to the pools.

use std::collections::{BTreeSet, HashMap};

use thiserror::Error;

use super::names::Interner;
use super::records::{GrantKey, LegKey, LegRecord, NodeRecord, Records, ShareRecord};
use crate::escrow::{CounterKey, Share, TransferLeg, MAX_COUNTER};
use crate::model::{LocationId, NodeId, PoolKey, Position, Role, Sku, TransferId};

/// Why a raise or a stored image was refused (nothing of it was applied).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AggregateError {
    /// A counter value outside `0..=MAX_COUNTER`.
    #[error("counter value {0} is out of range")]
    OutOfRange(i64),
    /// More than 2^32 names of one kind.
    #[error("too many distinct {0}")]
    TooManyNames(&'static str),
    /// A stored image that does not hold together (unknown or repeated id).
    #[error("stored aggregate is inconsistent: {0}")]
    BadImage(String),
}

/// One node's share of one pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ShareRow {
    pub(super) loc: u32,
    pub(super) node: u32,
    pub(super) share: Share,
}

/// Units in transit into and out of one location, for one SKU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TransitRow {
    pub(super) loc: u32,
    pub(super) inbound: i64,
    pub(super) outbound: i64,
}

/// Totals of one SKU over every location.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SkuTotals {
    pub(super) on_hand: i64,
    pub(super) held: i64,
    pub(super) deficit: i64,
    pub(super) in_transit: i64,
}

/// Everything the aggregate keeps for one SKU.
#[derive(Clone, Debug, Default)]
pub(super) struct SkuSlot {
    pub(super) shares: Vec<ShareRow>,
    pub(super) transit: Vec<TransitRow>,
    pub(super) legs: Vec<u32>,
    pub(super) totals: SkuTotals,
}

/// Running totals of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct NodeSlot {
    pub(super) role: Option<Role>,
    pub(super) position: Position,
    pub(super) last_heard_ms: Option<i64>,
    pub(super) pools_held: u64,
    pub(super) rights_total: i64,
    pub(super) deficit_total: i64,
}

/// One transfer leg: per-writer counters and their sums.
#[derive(Clone, Debug, Default)]
pub(super) struct LegSlot {
    pub(super) key: Option<LegKey>,
    pub(super) writers: Vec<(u32, i64, i64)>,
    pub(super) shipped: i64,
    pub(super) received: i64,
}

impl LegSlot {
    /// Units shipped and not yet received (never negative, as in the book).
    pub(super) fn in_transit(&self) -> i64 {
        self.shipped.saturating_sub(self.received).max(0)
    }
}

/// The hub's aggregate of every pool in the fleet.
#[derive(Clone, Debug, Default)]
pub struct Aggregate {
    pub(super) skus: Interner<Sku>,
    pub(super) locations: Interner<LocationId>,
    pub(super) node_ids: Interner<NodeId>,
    pub(super) transfers: Interner<TransferId>,
    pub(super) slots: Vec<SkuSlot>,
    pub(super) nodes: Vec<NodeSlot>,
    grants: HashMap<GrantKey, i64>,
    leg_ids: HashMap<LegKey, u32>,
    pub(super) legs: Vec<LegSlot>,
    /// (sku, location, node) of every share in deficit.
    pub(super) deficits: BTreeSet<(u32, u32, u32)>,
    /// Pools (SKU × location) with at least one share row, kept as rows are inserted.
    pub(super) pools: u64,
    dirty: Dirty,
}

/// What changed since the store last took the changes.
#[derive(Clone, Debug, Default)]
struct Dirty {
    names: [usize; 4],
    shares: Vec<(u32, u32, u32)>,
    grants: Vec<GrantKey>,
    legs: Vec<(u32, u32)>,
    nodes: Vec<u32>,
}

/// The figures of one share that the totals are made of.
#[derive(Clone, Copy)]
struct Figures {
    on_hand: i64,
    held: i64,
    rights: i64,
    deficit: i64,
}

impl Figures {
    fn of(s: &Share) -> Self {
        Self {
            on_hand: s.minted.saturating_sub(s.consumed),
            held: s.held(),
            rights: s.rights(),
            deficit: s.deficit(),
        }
    }
}

/// Adds `after − before` to `sum`, saturating.
fn shift(sum: &mut i64, before: i64, after: i64) {
    *sum = sum.saturating_add(after.saturating_sub(before));
}

fn too_many(what: &'static str) -> AggregateError {
    AggregateError::TooManyNames(what)
}

impl Aggregate {
    /// An empty aggregate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one raise of `writer`'s counter `key` to `value`; returns whether
    /// anything changed (false for a value at or below the one held).
    pub fn raise(
        &mut self,
        writer: &NodeId,
        key: &CounterKey,
        value: i64,
    ) -> Result<bool, AggregateError> {
        if !(0..=MAX_COUNTER).contains(&value) {
            return Err(AggregateError::OutOfRange(value));
        }
        if value == 0 {
            // Every counter starts at zero: not a raise, and no row for it.
            return Ok(false);
        }
        let w = self.node_id(writer)?;
        match key {
            CounterKey::Minted(p) => self.raise_share(p, w, value, |s| &mut s.minted),
            CounterKey::Consumed(p) => self.raise_share(p, w, value, |s| &mut s.consumed),
            CounterKey::Reserved(p) => self.raise_share(p, w, value, |s| &mut s.reserved),
            CounterKey::Released(p) => self.raise_share(p, w, value, |s| &mut s.released),
            CounterKey::Granted(p, to) => self.raise_grant(p, w, to, value),
            CounterKey::Shipped(leg) => self.raise_leg(leg, w, value, true),
            CounterKey::Received(leg) => self.raise_leg(leg, w, value, false),
        }
    }

    /// Records that `writer`'s change at `position`, made at `time_ms`, was applied.
    pub fn heard(
        &mut self,
        writer: &NodeId,
        position: Position,
        time_ms: i64,
    ) -> Result<(), AggregateError> {
        let w = self.node_id(writer)?;
        let n = &mut self.nodes[w as usize];
        if position > n.position {
            n.position = position;
        }
        if n.last_heard_ms.is_none_or(|t| time_ms > t) {
            n.last_heard_ms = Some(time_ms);
        }
        self.dirty.nodes.push(w);
        Ok(())
    }

    /// Sets `node`'s newest applied position (a catch-up from the book, time unknown).
    pub fn set_position(
        &mut self,
        node: &NodeId,
        position: Position,
    ) -> Result<(), AggregateError> {
        let n = self.node_id(node)?;
        if self.nodes[n as usize].position != position {
            self.nodes[n as usize].position = position;
            self.dirty.nodes.push(n);
        }
        Ok(())
    }

    /// Sets `node`'s role (a `channel` node's rights are the channel's).
    pub fn set_role(&mut self, node: &NodeId, role: Role) -> Result<(), AggregateError> {
        let n = self.node_id(node)?;
        if self.nodes[n as usize].role != Some(role) {
            self.nodes[n as usize].role = Some(role);
            self.dirty.nodes.push(n);
        }
        Ok(())
    }

    /// The role of `node`, if known.
    pub fn role(&self, node: &NodeId) -> Option<Role> {
        let n = self.node_ids.get(node)?;
        self.nodes.get(n as usize)?.role
    }

    /// The newest position of `node` the aggregate holds (zero: none).
    pub fn position(&self, node: &NodeId) -> Position {
        self.node_ids
            .get(node)
            .and_then(|n| self.nodes.get(n as usize))
            .map(|n| n.position)
            .unwrap_or_default()
    }

    /// How many share rows (pool × node) the aggregate holds.
    pub fn share_rows(&self) -> usize {
        self.slots.iter().map(|s| s.shares.len()).sum()
    }

    fn node_id(&mut self, id: &NodeId) -> Result<u32, AggregateError> {
        let n = self.node_ids.intern(id).ok_or_else(|| too_many("nodes"))?;
        if self.nodes.len() <= n as usize {
            self.nodes.resize(n as usize + 1, NodeSlot::default());
        }
        Ok(n)
    }

    fn pool_ids(&mut self, p: &PoolKey) -> Result<(u32, u32), AggregateError> {
        let sku = self.skus.intern(&p.sku).ok_or_else(|| too_many("SKUs"))?;
        let loc = self
            .locations
            .intern(&p.location)
            .ok_or_else(|| too_many("locations"))?;
        if self.slots.len() <= sku as usize {
            self.slots.resize_with(sku as usize + 1, SkuSlot::default);
        }
        Ok((sku, loc))
    }

    /// The index of the (loc, node) row in `sku`'s rows, inserted (zero) if absent.
    fn row(&mut self, sku: u32, loc: u32, node: u32) -> usize {
        let rows = &mut self.slots[sku as usize].shares;
        match rows.binary_search_by_key(&(loc, node), |r| (r.loc, r.node)) {
            Ok(i) => i,
            Err(i) => {
                // Rows are sorted by location: a new pool has no neighbour at it.
                let left = i.checked_sub(1).and_then(|j| rows.get(j));
                if left.is_none_or(|r| r.loc != loc) && rows.get(i).is_none_or(|r| r.loc != loc) {
                    self.pools += 1;
                }
                rows.insert(
                    i,
                    ShareRow {
                        loc,
                        node,
                        share: Share::default(),
                    },
                );
                i
            }
        }
    }

    /// Changes one share through `f` and moves every total by the difference.
    fn update_share(&mut self, sku: u32, loc: u32, node: u32, f: impl FnOnce(&mut Share)) {
        let i = self.row(sku, loc, node);
        let slot = &mut self.slots[sku as usize];
        let share = &mut slot.shares[i].share;
        let before = Figures::of(share);
        f(share);
        let after = Figures::of(share);
        let t = &mut slot.totals;
        shift(&mut t.on_hand, before.on_hand, after.on_hand);
        shift(&mut t.held, before.held, after.held);
        shift(&mut t.deficit, before.deficit, after.deficit);
        let n = &mut self.nodes[node as usize];
        shift(&mut n.rights_total, before.rights, after.rights);
        shift(&mut n.deficit_total, before.deficit, after.deficit);
        match (before.rights > 0, after.rights > 0) {
            (false, true) => n.pools_held += 1,
            (true, false) => n.pools_held = n.pools_held.saturating_sub(1),
            _ => {}
        }
        match (before.deficit > 0, after.deficit > 0) {
            (false, true) => {
                self.deficits.insert((sku, loc, node));
            }
            (true, false) => {
                self.deficits.remove(&(sku, loc, node));
            }
            _ => {}
        }
        self.dirty.shares.push((sku, loc, node));
    }

    fn raise_share(
        &mut self,
        p: &PoolKey,
        w: u32,
        value: i64,
        field: fn(&mut Share) -> &mut i64,
    ) -> Result<bool, AggregateError> {
        let (sku, loc) = self.pool_ids(p)?;
        let i = self.row(sku, loc, w);
        let mut s = self.slots[sku as usize].shares[i].share;
        if value <= *field(&mut s) {
            return Ok(false);
        }
        self.update_share(sku, loc, w, |s| *field(s) = value);
        Ok(true)
    }

    fn raise_grant(
        &mut self,
        p: &PoolKey,
        from: u32,
        to: &NodeId,
        value: i64,
    ) -> Result<bool, AggregateError> {
        let (sku, loc) = self.pool_ids(p)?;
        let to = self.node_id(to)?;
        let key = GrantKey { sku, loc, from, to };
        let old = self.grants.get(&key).copied().unwrap_or(0);
        if value <= old {
            return Ok(false);
        }
        let d = value - old;
        self.grants.insert(key, value);
        self.dirty.grants.push(key);
        self.update_share(sku, loc, from, |s| {
            s.granted_out = s.granted_out.saturating_add(d)
        });
        self.update_share(sku, loc, to, |s| {
            s.granted_in = s.granted_in.saturating_add(d)
        });
        Ok(true)
    }

    fn raise_leg(
        &mut self,
        leg: &TransferLeg,
        w: u32,
        value: i64,
        shipped: bool,
    ) -> Result<bool, AggregateError> {
        let (sku, from) = self.pool_ids(&PoolKey::new(leg.from.clone(), leg.sku.clone()))?;
        let to = self
            .locations
            .intern(&leg.to)
            .ok_or_else(|| too_many("locations"))?;
        let transfer = self
            .transfers
            .intern(&leg.transfer)
            .ok_or_else(|| too_many("transfers"))?;
        let key = LegKey {
            transfer,
            from,
            to,
            sku,
        };
        let id = match self.leg_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.legs.len()).map_err(|_| too_many("legs"))?;
                self.legs.push(LegSlot {
                    key: Some(key),
                    ..LegSlot::default()
                });
                self.leg_ids.insert(key, id);
                self.slots[sku as usize].legs.push(id);
                id
            }
        };
        let slot = &mut self.legs[id as usize];
        let row = match slot.writers.iter().position(|r| r.0 == w) {
            Some(i) => i,
            None => {
                slot.writers.push((w, 0, 0));
                slot.writers.len() - 1
            }
        };
        let before = slot.in_transit();
        let r = &mut slot.writers[row];
        let (held, sum) = if shipped {
            (&mut r.1, &mut slot.shipped)
        } else {
            (&mut r.2, &mut slot.received)
        };
        if value <= *held {
            return Ok(false);
        }
        *sum = sum.saturating_add(value - *held);
        *held = value;
        let after = slot.in_transit();
        self.dirty.legs.push((id, w));
        self.shift_transit(sku, from, to, before, after);
        Ok(true)
    }

    /// Moves the transit sums of `sku` by a leg's change from `before` to `after`.
    fn shift_transit(&mut self, sku: u32, from: u32, to: u32, before: i64, after: i64) {
        if before == after {
            return;
        }
        let slot = &mut self.slots[sku as usize];
        shift(&mut slot.totals.in_transit, before, after);
        for (loc, inbound) in [(from, false), (to, true)] {
            let i = match slot.transit.binary_search_by_key(&loc, |r| r.loc) {
                Ok(i) => i,
                Err(i) => {
                    slot.transit.insert(
                        i,
                        TransitRow {
                            loc,
                            ..TransitRow::default()
                        },
                    );
                    i
                }
            };
            let r = &mut slot.transit[i];
            shift(
                if inbound {
                    &mut r.inbound
                } else {
                    &mut r.outbound
                },
                before,
                after,
            );
        }
    }

    /// Takes the rows changed since the last call (what the store must write).
    pub fn take_changes(&mut self) -> Records {
        let mut d = std::mem::take(&mut self.dirty);
        let mut out = Records {
            skus: self
                .skus
                .since(d.names[0])
                .map(|(i, v)| (i, v.clone()))
                .collect(),
            locations: self
                .locations
                .since(d.names[1])
                .map(|(i, v)| (i, v.clone()))
                .collect(),
            nodes: self
                .node_ids
                .since(d.names[2])
                .map(|(i, v)| (i, *v))
                .collect(),
            transfers: self
                .transfers
                .since(d.names[3])
                .map(|(i, v)| (i, v.clone()))
                .collect(),
            ..Records::default()
        };
        self.dirty.names = [
            self.skus.len(),
            self.locations.len(),
            self.node_ids.len(),
            self.transfers.len(),
        ];
        d.shares.sort_unstable();
        d.shares.dedup();
        for (sku, loc, node) in d.shares {
            let rows = &self.slots[sku as usize].shares;
            if let Ok(i) = rows.binary_search_by_key(&(loc, node), |r| (r.loc, r.node)) {
                out.shares.push(ShareRecord {
                    sku,
                    loc,
                    node,
                    share: rows[i].share,
                });
            }
        }
        d.grants.sort_unstable();
        d.grants.dedup();
        out.grants = d
            .grants
            .into_iter()
            .filter_map(|k| self.grants.get(&k).map(|v| (k, *v)))
            .collect();
        d.legs.sort_unstable();
        d.legs.dedup();
        for (id, w) in d.legs {
            let slot = &self.legs[id as usize];
            if let (Some(leg), Some(r)) = (slot.key, slot.writers.iter().find(|r| r.0 == w)) {
                out.legs.push(LegRecord {
                    leg,
                    writer: w,
                    shipped: r.1,
                    received: r.2,
                });
            }
        }
        d.nodes.sort_unstable();
        d.nodes.dedup();
        out.node_records = d.nodes.into_iter().map(|n| self.node_record(n)).collect();
        out
    }

    fn node_record(&self, n: u32) -> NodeRecord {
        let s = self.nodes.get(n as usize).copied().unwrap_or_default();
        NodeRecord {
            node: n,
            role: s.role,
            position: s.position,
            last_heard_ms: s.last_heard_ms,
        }
    }

    /// Rebuilds an aggregate from a stored image (every row of a store),
    /// without replaying any change: rows are placed and totals summed once.
    pub fn restore(image: Records) -> Result<Self, AggregateError> {
        let bad = |what: String| AggregateError::BadImage(what);
        let mut a = Aggregate::new();
        for (i, v) in image.skus {
            a.skus
                .restore(i, v)
                .then_some(())
                .ok_or_else(|| bad(format!("SKU id {i}")))?;
        }
        for (i, v) in image.locations {
            a.locations
                .restore(i, v)
                .then_some(())
                .ok_or_else(|| bad(format!("location id {i}")))?;
        }
        for (i, v) in image.nodes {
            a.node_ids
                .restore(i, v)
                .then_some(())
                .ok_or_else(|| bad(format!("node id {i}")))?;
        }
        for (i, v) in image.transfers {
            a.transfers
                .restore(i, v)
                .then_some(())
                .ok_or_else(|| bad(format!("transfer id {i}")))?;
        }
        a.slots.resize_with(a.skus.len(), SkuSlot::default);
        a.nodes.resize(a.node_ids.len(), NodeSlot::default());
        let known = |a: &Aggregate, sku: u32, loc: u32, nodes: &[u32]| {
            (sku as usize) < a.skus.len()
                && (loc as usize) < a.locations.len()
                && nodes.iter().all(|n| (*n as usize) < a.node_ids.len())
        };
        for r in image.node_records {
            let slot = a
                .nodes
                .get_mut(r.node as usize)
                .ok_or_else(|| bad(format!("node record {}", r.node)))?;
            slot.role = r.role;
            slot.position = r.position;
            slot.last_heard_ms = r.last_heard_ms;
        }
        for r in image.shares {
            if !known(&a, r.sku, r.loc, &[r.node]) {
                return Err(bad(format!("share row {}/{}/{}", r.sku, r.loc, r.node)));
            }
            a.update_share(r.sku, r.loc, r.node, |s| *s = r.share);
        }
        for (k, v) in image.grants {
            if !known(&a, k.sku, k.loc, &[k.from, k.to]) {
                return Err(bad(format!("grant {k:?}")));
            }
            a.grants.insert(k, v);
        }
        for r in image.legs {
            let k = r.leg;
            if !known(&a, k.sku, k.from, &[r.writer])
                || (k.to as usize) >= a.locations.len()
                || (k.transfer as usize) >= a.transfers.len()
            {
                return Err(bad(format!("leg {k:?}")));
            }
            let (leg, from, to, sku) = a.leg_names(k).ok_or_else(|| bad(format!("{k:?}")))?;
            let leg = TransferLeg {
                transfer: leg,
                from,
                to,
                sku,
            };
            let w = a
                .node_ids
                .value(r.writer)
                .copied()
                .ok_or_else(|| bad("writer".into()))?;
            a.raise(&w, &CounterKey::Shipped(leg.clone()), r.shipped)?;
            a.raise(&w, &CounterKey::Received(leg), r.received)?;
        }
        a.dirty = Dirty {
            names: [
                a.skus.len(),
                a.locations.len(),
                a.node_ids.len(),
                a.transfers.len(),
            ],
            ..Dirty::default()
        };
        Ok(a)
    }

    fn leg_names(&self, k: LegKey) -> Option<(TransferId, LocationId, LocationId, Sku)> {
        Some((
            self.transfers.value(k.transfer)?.clone(),
            self.locations.value(k.from)?.clone(),
            self.locations.value(k.to)?.clone(),
            self.skus.value(k.sku)?.clone(),
        ))
    }
}
