//! Per-pool rules a node's desk applies on top of its levels, as plain data:
//! a reserve it keeps (a hub's floor), each channel's safety stock (a
//! donor's floor raised for that receiver), and the allocation of its rights
//! to channels and stores (docs/rebalancing.md, "Hub reserve", "Channel
//! safety stock", "Allocation").

use serde::{Deserialize, Serialize};

use crate::model::{LocationId, NodeId, PoolKey, Sku};

/// Pools a rule covers: one SKU at a location, or every SKU there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolScope {
    /// The location.
    pub location: LocationId,
    /// One SKU; none covers every SKU at the location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
}

impl PoolScope {
    /// Whether `pool` is covered.
    pub fn matches(&self, pool: &PoolKey) -> bool {
        self.location == pool.location && self.sku.as_ref().is_none_or(|s| *s == pool.sku)
    }

    /// How closely `pool` is covered: 2 for its SKU, 1 for its whole location, 0 not at all.
    fn rank(&self, pool: &PoolKey) -> u8 {
        match (&self.sku, self.matches(pool)) {
            (_, false) => 0,
            (Some(_), true) => 2,
            (None, true) => 1,
        }
    }
}

/// A node a rule names: by id, or by its roster name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRef {
    /// The node's id.
    Id(NodeId),
    /// The node's name in the fleet roster.
    Name(String),
}

impl NodeRef {
    /// Whether this names `id`, whose roster name is `name` (if known).
    pub fn names(&self, id: &NodeId, name: Option<&str>) -> bool {
        match self {
            NodeRef::Id(n) => n == id,
            NodeRef::Name(s) => name == Some(s.as_str()),
        }
    }
}

/// Units a node keeps in some pools: it never grants below them, to anyone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    /// The pools.
    pub scope: PoolScope,
    /// Units kept.
    pub units: u64,
}

/// A channel's safety stock in some pools: no grant to that channel leaves
/// the donor with fewer than `units` of its own rights above its floor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyStock {
    /// The channel node.
    pub channel: NodeRef,
    /// The pools.
    pub scope: PoolScope,
    /// Units never granted to the channel.
    pub units: u64,
}

/// One receiver of an allocation in some pools: its weight, and the most
/// rights it should hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRule {
    /// The receiver (a channel or a store node).
    pub node: NodeRef,
    /// The pools.
    pub scope: PoolScope,
    /// Its weight in the split (0: receives nothing).
    pub share: u64,
    /// Fill it up to this many rights at most; none: no limit.
    pub target: Option<u64>,
}

/// Caps a configured unit count to a safe `i64`.
fn units(u: u64) -> i64 {
    u.min(i64::MAX as u64 / 4) as i64
}

/// The reserve kept in `pool`: the most specific rule's (a SKU's before its
/// location's), the largest if several are equally specific; 0 without one.
pub fn reserve_in(reserves: &[Reserve], pool: &PoolKey) -> i64 {
    let best = reserves
        .iter()
        .map(|r| r.scope.rank(pool))
        .max()
        .unwrap_or(0);
    if best == 0 {
        return 0;
    }
    reserves
        .iter()
        .filter(|r| r.scope.rank(pool) == best)
        .map(|r| units(r.units))
        .max()
        .unwrap_or(0)
}

/// The safety stock of receiver `id` (roster name `name`) in `pool`, if it
/// is a channel with one configured (most specific rule first, as for reserves).
pub fn safety_stock_in(
    stocks: &[SafetyStock],
    id: &NodeId,
    name: Option<&str>,
    pool: &PoolKey,
) -> Option<i64> {
    let mine = || stocks.iter().filter(|s| s.channel.names(id, name));
    let best = mine().map(|s| s.scope.rank(pool)).max().unwrap_or(0);
    if best == 0 {
        return None;
    }
    mine()
        .filter(|s| s.scope.rank(pool) == best)
        .map(|s| units(s.units))
        .max()
}

/// A donor's floor for a grant in `pool` to a receiver whose safety stock
/// there is `safety`: its own floor or its reserve, whichever is higher,
/// raised by the safety stock.
pub fn donor_floor(floor: i64, reserve: i64, safety: Option<i64>) -> i64 {
    floor
        .max(reserve)
        .saturating_add(safety.unwrap_or(0).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(sku: &str) -> PoolKey {
        PoolKey::new(LocationId::new("WH").unwrap(), Sku::new(sku).unwrap())
    }

    fn scope(sku: Option<&str>) -> PoolScope {
        PoolScope {
            location: LocationId::new("WH").unwrap(),
            sku: sku.map(|s| Sku::new(s).unwrap()),
        }
    }

    #[test]
    fn a_skus_rule_beats_its_locations_and_a_channel_is_known_by_id_or_name() {
        let reserves = [
            Reserve {
                scope: scope(None),
                units: 10,
            },
            Reserve {
                scope: scope(Some("A")),
                units: 3,
            },
        ];
        assert_eq!(reserve_in(&reserves, &pool("A")), 3);
        assert_eq!(reserve_in(&reserves, &pool("B")), 10);
        assert_eq!(reserve_in(&[], &pool("B")), 0);
        let web = NodeId([7; 32]);
        let stocks = [SafetyStock {
            channel: NodeRef::Name("web".into()),
            scope: scope(None),
            units: 8,
        }];
        assert_eq!(
            safety_stock_in(&stocks, &web, Some("web"), &pool("A")),
            Some(8)
        );
        assert_eq!(safety_stock_in(&stocks, &web, None, &pool("A")), None);
        assert_eq!(donor_floor(2, 10, Some(8)), 18);
        assert_eq!(donor_floor(12, 10, None), 12);
    }
}
