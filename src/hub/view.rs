//! The read side of the aggregate: one SKU across every location, one node,
//! every deficit. Reads walk one SKU's rows (or the deficit set) only.

use serde::Serialize;

use super::aggregate::Aggregate;
use crate::model::{LocationId, NodeId, Position, Role, Sku, TransferId};

/// One SKU across the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkuView {
    /// The SKU.
    pub sku: Sku,
    /// On hand over every location.
    pub total_on_hand: i64,
    /// Held over every location.
    pub total_held: i64,
    /// Uncovered deficits over every location and node.
    pub total_deficit: i64,
    /// Units shipped and not yet received, over every transfer.
    pub total_in_transit: i64,
    /// Rights held by channel nodes, over every location.
    pub channel_rights: i64,
    /// Per location, in location order.
    pub per_location: Vec<LocationView>,
    /// Per node and location holding a share, in location then node order.
    pub rights: Vec<RightsView>,
    /// Every transfer leg of the SKU, by transfer id.
    pub transfers: Vec<LegView>,
}

/// One SKU's totals over the fleet (a row of the stock list).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkuSummary {
    /// The SKU.
    pub sku: Sku,
    /// On hand over every location.
    pub total_on_hand: i64,
    /// Held over every location.
    pub total_held: i64,
    /// Uncovered deficits over every location and node.
    pub total_deficit: i64,
    /// Units shipped and not yet received.
    pub total_in_transit: i64,
    /// Locations with a share of the SKU.
    pub locations: u64,
}

/// The whole fleet's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FleetTotals {
    /// SKUs tracked.
    pub skus: u64,
    /// Share rows (pool × node).
    pub shares: u64,
    /// Units on hand.
    pub on_hand: i64,
    /// Uncovered deficit units.
    pub deficit: i64,
    /// Units in transit.
    pub in_transit: i64,
}

/// One pool (SKU at a location).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocationView {
    /// The location.
    pub location: LocationId,
    /// Units physically there.
    pub on_hand: i64,
    /// Units on hold there.
    pub held: i64,
    /// Uncovered deficits there.
    pub deficit: i64,
    /// Units on their way in.
    pub in_transit_in: i64,
    /// Units shipped out and not yet received at the other end.
    pub in_transit_out: i64,
}

/// One node's rights in one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RightsView {
    /// The node (hex in JSON).
    #[serde(serialize_with = "hex_id")]
    pub node: NodeId,
    /// The pool's location.
    pub location: LocationId,
    /// Its rights (negative: a deficit).
    pub rights: i64,
    /// True when the node is a channel.
    pub channel: bool,
}

/// One transfer leg of a SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LegView {
    /// The transfer.
    pub transfer: TransferId,
    /// Origin.
    pub from: LocationId,
    /// Destination.
    pub to: LocationId,
    /// Units shipped.
    pub shipped: i64,
    /// Units received.
    pub received: i64,
    /// Units shipped and not yet received.
    pub in_transit: i64,
}

/// One node as the hub sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// The node (hex in JSON).
    #[serde(serialize_with = "hex_id")]
    pub node: NodeId,
    /// Its role, once known.
    pub role: Option<Role>,
    /// Time of its newest change the hub applied (Unix ms; `None`: never).
    pub last_heard_ms: Option<i64>,
    /// Position of that change.
    pub position: Position,
    /// Pools where it holds positive rights.
    pub pools_held: u64,
    /// Its rights summed over every pool (deficits count negative).
    pub rights_total: i64,
    /// Its uncovered deficits over every pool.
    pub deficit_total: i64,
}

/// One node's uncovered deficit in one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeficitView {
    /// The SKU.
    pub sku: Sku,
    /// The location.
    pub location: LocationId,
    /// The node (hex in JSON).
    #[serde(serialize_with = "hex_id")]
    pub node: NodeId,
    /// Units consumed beyond its rights.
    pub deficit: i64,
}

impl Aggregate {
    /// One SKU across every location (`None`: never seen).
    pub fn sku(&self, sku: &Sku) -> Option<SkuView> {
        let id = self.skus.get(sku)?;
        let slot = self.slots.get(id as usize)?;
        let loc = |l: u32| self.locations.value(l).cloned();
        let mut per_location: Vec<LocationView> = Vec::new();
        let mut rights = Vec::with_capacity(slot.shares.len());
        let mut channel_rights = 0i64;
        let mut last = None;
        for r in &slot.shares {
            if last != Some(r.loc) {
                last = Some(r.loc);
                per_location.push(LocationView {
                    location: loc(r.loc)?,
                    on_hand: 0,
                    held: 0,
                    deficit: 0,
                    in_transit_in: 0,
                    in_transit_out: 0,
                });
            }
            let v = per_location.last_mut()?;
            v.on_hand = v
                .on_hand
                .saturating_add(r.share.minted.saturating_sub(r.share.consumed));
            v.held = v.held.saturating_add(r.share.held());
            v.deficit = v.deficit.saturating_add(r.share.deficit());
            let channel = self.nodes.get(r.node as usize)?.role == Some(Role::Channel);
            let node_rights = r.share.rights();
            if channel {
                channel_rights = channel_rights.saturating_add(node_rights);
            }
            rights.push(RightsView {
                node: *self.node_ids.value(r.node)?,
                location: loc(r.loc)?,
                rights: node_rights,
                channel,
            });
        }
        for t in &slot.transit {
            if t.inbound == 0 && t.outbound == 0 {
                // A leg back at zero in transit leaves its row; it says nothing.
                continue;
            }
            let name = loc(t.loc)?;
            let i = match per_location.iter().position(|v| v.location == name) {
                Some(i) => i,
                None => {
                    per_location.push(LocationView {
                        location: name,
                        on_hand: 0,
                        held: 0,
                        deficit: 0,
                        in_transit_in: 0,
                        in_transit_out: 0,
                    });
                    per_location.len() - 1
                }
            };
            per_location[i].in_transit_in = t.inbound;
            per_location[i].in_transit_out = t.outbound;
        }
        per_location.sort_by(|a, b| a.location.cmp(&b.location));
        rights.sort_by(|a, b| (&a.location, a.node).cmp(&(&b.location, b.node)));
        let mut transfers = Vec::with_capacity(slot.legs.len());
        for l in &slot.legs {
            let leg = self.legs.get(*l as usize)?;
            let k = leg.key?;
            transfers.push(LegView {
                transfer: self.transfers.value(k.transfer)?.clone(),
                from: loc(k.from)?,
                to: loc(k.to)?,
                shipped: leg.shipped,
                received: leg.received,
                in_transit: leg.in_transit(),
            });
        }
        transfers.sort_by(|a, b| (&a.transfer, &a.from, &a.to).cmp(&(&b.transfer, &b.from, &b.to)));
        Some(SkuView {
            sku: sku.clone(),
            total_on_hand: slot.totals.on_hand,
            total_held: slot.totals.held,
            total_deficit: slot.totals.deficit,
            total_in_transit: slot.totals.in_transit,
            channel_rights,
            per_location,
            rights,
            transfers,
        })
    }

    /// One node's figures (`None`: never seen).
    pub fn node(&self, node: &NodeId) -> Option<NodeView> {
        let id = self.node_ids.get(node)?;
        let s = self.nodes.get(id as usize)?;
        Some(NodeView {
            node: *node,
            role: s.role,
            last_heard_ms: s.last_heard_ms,
            position: s.position,
            pools_held: s.pools_held,
            rights_total: s.rights_total,
            deficit_total: s.deficit_total,
        })
    }

    /// Every node the aggregate knows.
    pub fn nodes(&self) -> Vec<NodeView> {
        (0..self.node_ids.len() as u32)
            .filter_map(|i| self.node(self.node_ids.value(i)?))
            .collect()
    }

    /// Every uncovered deficit, by SKU, location and node id.
    pub fn deficits(&self) -> Vec<DeficitView> {
        self.deficits
            .iter()
            .filter_map(|&(sku, loc, node)| {
                let rows = &self.slots.get(sku as usize)?.shares;
                let i = rows
                    .binary_search_by_key(&(loc, node), |r| (r.loc, r.node))
                    .ok()?;
                Some(DeficitView {
                    sku: self.skus.value(sku)?.clone(),
                    location: self.locations.value(loc)?.clone(),
                    node: *self.node_ids.value(node)?,
                    deficit: rows[i].share.deficit(),
                })
            })
            .collect()
    }

    /// One SKU's totals, without walking its rows' names (`None`: never seen).
    pub fn sku_summary(&self, sku: &Sku) -> Option<SkuSummary> {
        let slot = self.slots.get(self.skus.get(sku)? as usize)?;
        Some(SkuSummary {
            sku: sku.clone(),
            total_on_hand: slot.totals.on_hand,
            total_held: slot.totals.held,
            total_deficit: slot.totals.deficit,
            total_in_transit: slot.totals.in_transit,
            locations: distinct_locations(slot),
        })
    }

    /// The fleet's totals: one step per SKU (its totals are kept).
    pub fn totals(&self) -> FleetTotals {
        let mut t = FleetTotals {
            skus: self.skus.len() as u64,
            ..FleetTotals::default()
        };
        for slot in &self.slots {
            t.shares += slot.shares.len() as u64;
            t.on_hand = t.on_hand.saturating_add(slot.totals.on_hand);
            t.deficit = t.deficit.saturating_add(slot.totals.deficit);
            t.in_transit = t.in_transit.saturating_add(slot.totals.in_transit);
        }
        t
    }

    /// Pools (SKU × location) tracked (a kept count).
    pub fn pool_count(&self) -> u64 {
        self.pools
    }

    /// Every transfer leg with its SKU, by SKU then transfer.
    pub fn legs(&self) -> Vec<(Sku, LegView)> {
        let mut out = Vec::with_capacity(self.legs.len());
        for leg in &self.legs {
            let Some(k) = leg.key else { continue };
            let names = (
                self.skus.value(k.sku),
                self.transfers.value(k.transfer),
                self.locations.value(k.from),
                self.locations.value(k.to),
            );
            if let (Some(sku), Some(transfer), Some(from), Some(to)) = names {
                out.push((
                    sku.clone(),
                    LegView {
                        transfer: transfer.clone(),
                        from: from.clone(),
                        to: to.clone(),
                        shipped: leg.shipped,
                        received: leg.received,
                        in_transit: leg.in_transit(),
                    },
                ));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1.transfer, &a.1.from).cmp(&(&b.0, &b.1.transfer, &b.1.from)));
        out
    }

    /// How many SKUs the aggregate knows (names are never removed).
    pub fn sku_count(&self) -> usize {
        self.skus.len()
    }

    /// Every SKU the aggregate knows, in id order.
    pub fn sku_names(&self) -> impl Iterator<Item = &Sku> {
        (0..self.skus.len() as u32).filter_map(|i| self.skus.value(i))
    }
}

/// Locations with a share in `slot` (its rows are sorted by location).
fn distinct_locations(slot: &super::aggregate::SkuSlot) -> u64 {
    let mut n = 0u64;
    let mut last = None;
    for r in &slot.shares {
        if last != Some(r.loc) {
            last = Some(r.loc);
            n += 1;
        }
    }
    n
}

/// A node id as hex in JSON, as everywhere else in the API.
fn hex_id<S: serde::Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}
