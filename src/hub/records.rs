//! The rows the aggregate hands to its store: every value absolute, keyed by
//! interned ids, so applying a row twice (or a later row after an earlier one)
//! leaves the same state.

use crate::escrow::Share;
use crate::model::{LocationId, NodeId, Position, Role, Sku, TransferId};

/// One node's share of one pool (its own counters, and grants in and out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareRecord {
    /// Interned SKU.
    pub sku: u32,
    /// Interned location.
    pub loc: u32,
    /// Interned node.
    pub node: u32,
    /// The share's counters.
    pub share: Share,
}

/// One grant counter: `from` handed `to` this many rights in the pool, in total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantKey {
    /// Interned SKU.
    pub sku: u32,
    /// Interned location.
    pub loc: u32,
    /// Interned granting node.
    pub from: u32,
    /// Interned receiving node.
    pub to: u32,
}

/// One transfer leg: transfer id, both ends and the SKU, all interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegKey {
    /// Interned transfer id.
    pub transfer: u32,
    /// Interned origin.
    pub from: u32,
    /// Interned destination.
    pub to: u32,
    /// Interned SKU.
    pub sku: u32,
}

/// One writer's shipped and received counters of one leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegRecord {
    /// The leg.
    pub leg: LegKey,
    /// Interned writer.
    pub writer: u32,
    /// Its `Shipped` counter.
    pub shipped: i64,
    /// Its `Received` counter.
    pub received: i64,
}

/// What the hub knows of one node besides its shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// Interned node.
    pub node: u32,
    /// Its role, once known.
    pub role: Option<Role>,
    /// Its newest change the hub applied (zero: none).
    pub position: Position,
    /// That change's time (Unix ms; `None`: never heard).
    pub last_heard_ms: Option<i64>,
}

/// A set of rows: the changes of one applied batch, or a whole stored image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// New SKUs, by id.
    pub skus: Vec<(u32, Sku)>,
    /// New locations, by id.
    pub locations: Vec<(u32, LocationId)>,
    /// New nodes, by id.
    pub nodes: Vec<(u32, NodeId)>,
    /// New transfer ids, by id.
    pub transfers: Vec<(u32, TransferId)>,
    /// Shares changed.
    pub shares: Vec<ShareRecord>,
    /// Grant counters changed.
    pub grants: Vec<(GrantKey, i64)>,
    /// Leg counters changed.
    pub legs: Vec<LegRecord>,
    /// Node records changed.
    pub node_records: Vec<NodeRecord>,
}

impl Records {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.skus.is_empty()
            && self.locations.is_empty()
            && self.nodes.is_empty()
            && self.transfers.is_empty()
            && self.shares.is_empty()
            && self.grants.is_empty()
            && self.legs.is_empty()
            && self.node_records.is_empty()
    }
}
