//! The stock book: every writer's counters and the per-pool sums derived from them.
//!
//! Pure state. Counters are absolute, grow-only values: raising a counter to a value
//! it already has (or below) changes nothing, which makes duplicate and reordered
//! delivery harmless at this level.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::counter_key::{CounterKey, TransferLeg};
use super::inherit::Inheritance;
use crate::error::EventError;
use crate::model::{NodeId, PoolKey, Sku};

/// Largest value any one counter may reach (2^40 ≈ 1.1 × 10^12 units).
///
/// With every counter at most 2^40, the sums in [`Share`] and [`PoolState`] stay
/// exact for up to 2^22 writers per pool; beyond that they saturate at the `i64`
/// bounds instead of wrapping (every sum below is saturating).
pub const MAX_COUNTER: i64 = 1 << 40;

/// One node's share of one pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Share {
    /// Units this node brought in.
    pub minted: i64,
    /// Units this node took out.
    pub consumed: i64,
    /// Units this node put on hold.
    pub reserved: i64,
    /// Held units this node released or fulfilled.
    pub released: i64,
    /// Rights this node handed out.
    pub granted_out: i64,
    /// Rights handed to this node (as far as this replica has seen).
    pub granted_in: i64,
}

impl Share {
    /// `minted + granted_in − granted_out − consumed − held`; negative means a deficit.
    pub fn rights(&self) -> i64 {
        self.minted
            .saturating_add(self.granted_in)
            .saturating_sub(self.granted_out)
            .saturating_sub(self.consumed)
            .saturating_sub(self.held())
    }

    /// Units on hold, still on hand but not available.
    pub fn held(&self) -> i64 {
        self.reserved.saturating_sub(self.released)
    }

    /// Units consumed beyond rights and not yet covered.
    pub fn deficit(&self) -> i64 {
        self.rights().saturating_neg().max(0)
    }
}

/// The sums of one pool over all nodes this replica knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Per-node shares.
    pub shares: BTreeMap<NodeId, Share>,
}

impl PoolState {
    /// `Σ minted − Σ consumed`: units physically in the location.
    pub fn on_hand(&self) -> i64 {
        self.shares
            .values()
            .map(|s| s.minted.saturating_sub(s.consumed))
            .fold(0, i64::saturating_add)
    }

    /// Units on hold in the pool.
    pub fn held(&self) -> i64 {
        self.shares
            .values()
            .map(Share::held)
            .fold(0, i64::saturating_add)
    }

    /// Total uncovered deficit over all nodes.
    pub fn deficit(&self) -> i64 {
        self.shares
            .values()
            .map(Share::deficit)
            .fold(0, i64::saturating_add)
    }

    /// The share of `node` (zero when it never took part).
    pub fn share(&self, node: &NodeId) -> Share {
        self.shares.get(node).copied().unwrap_or_default()
    }
}

/// Shipped and received units of one transfer, over all writers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransitState {
    /// Units shipped by the origin.
    pub shipped: i64,
    /// Units received by the destination.
    pub received: i64,
}

impl TransitState {
    /// Units shipped and not yet received.
    pub fn in_transit(&self) -> i64 {
        self.shipped.saturating_sub(self.received).max(0)
    }
}

/// Adds `d` to a running sum, saturating (see [`MAX_COUNTER`]).
fn add(sum: &mut i64, d: i64) {
    *sum = sum.saturating_add(d);
}

/// One counter raise the book applied: `writer`'s `key` went from `old` to `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raise {
    /// The writer whose counter it is.
    pub writer: NodeId,
    /// The counter.
    pub key: CounterKey,
    /// Its value before.
    pub old: i64,
    /// Its value after (always above `old`).
    pub new: i64,
}

/// Every counter of every writer, and the sums per pool and per transfer.
#[derive(Clone, Debug, Default)]
pub struct StockBook {
    counters: HashMap<NodeId, HashMap<CounterKey, i64>>,
    pools: BTreeMap<PoolKey, PoolState>,
    transits: BTreeMap<TransferLeg, TransitState>,
    skus: HashSet<Sku>,
    inheritance: Inheritance,
    /// Opt-in log of applied raises (`None`: nobody drains it, nothing is kept).
    raises: Option<Vec<Raise>>,
}

impl StockBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current value of `writer`'s counter `key` (0 when never written).
    pub fn counter(&self, writer: &NodeId, key: &CounterKey) -> i64 {
        self.counters
            .get(writer)
            .and_then(|m| m.get(key))
            .copied()
            .unwrap_or(0)
    }

    /// All counters of `writer`.
    pub fn counters_of(&self, writer: &NodeId) -> impl Iterator<Item = (&CounterKey, i64)> {
        self.counters
            .get(writer)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k, *v)))
    }

    /// Starts logging every raise that changes a counter (for [`StockBook::take_raises`]).
    pub fn log_raises(&mut self) {
        self.raises.get_or_insert_with(Vec::new);
    }

    /// True when raises are being logged.
    pub fn logs_raises(&self) -> bool {
        self.raises.is_some()
    }

    /// Takes the raises logged since the last call (empty when logging is off).
    pub fn take_raises(&mut self) -> Vec<Raise> {
        self.raises.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Every writer that has at least one counter.
    pub fn writers(&self) -> impl Iterator<Item = &NodeId> {
        self.counters.keys()
    }

    /// Raises `writer`'s counter `key` to `value`; returns the increase (0 if none).
    ///
    /// Negative values and sums that would overflow are errors and change nothing.
    pub fn raise(
        &mut self,
        writer: NodeId,
        key: &CounterKey,
        value: i64,
    ) -> Result<i64, EventError> {
        if !(0..=MAX_COUNTER).contains(&value) {
            return Err(EventError::Overflow);
        }
        let old = self.counter(&writer, key);
        if value <= old {
            return Ok(0);
        }
        let d = value - old;
        if let Some(log) = &mut self.raises {
            log.push(Raise {
                writer,
                key: key.clone(),
                old,
                new: value,
            });
        }
        self.counters
            .entry(writer)
            .or_default()
            .insert(key.clone(), value);
        match key {
            CounterKey::Minted(p) => {
                self.skus.insert(p.sku.clone());
                add(&mut self.share_mut(p, writer).minted, d);
            }
            CounterKey::Consumed(p) => add(&mut self.share_mut(p, writer).consumed, d),
            CounterKey::Reserved(p) => add(&mut self.share_mut(p, writer).reserved, d),
            CounterKey::Released(p) => add(&mut self.share_mut(p, writer).released, d),
            CounterKey::Granted(p, to) => {
                add(&mut self.share_mut(p, writer).granted_out, d);
                add(&mut self.share_mut(p, *to).granted_in, d);
            }
            CounterKey::Shipped(leg) => {
                self.skus.insert(leg.sku.clone());
                add(
                    &mut self.transits.entry(leg.clone()).or_default().shipped,
                    d,
                );
            }
            CounterKey::Received(leg) => {
                add(
                    &mut self.transits.entry(leg.clone()).or_default().received,
                    d,
                );
            }
        }
        Ok(d)
    }

    fn share_mut(&mut self, pool: &PoolKey, node: NodeId) -> &mut Share {
        self.pools
            .entry(pool.clone())
            .or_default()
            .shares
            .entry(node)
            .or_default()
    }

    /// The pool's sums, if anyone ever wrote to it.
    pub fn pool(&self, key: &PoolKey) -> Option<&PoolState> {
        self.pools.get(key)
    }

    /// Every pool, in key order.
    pub fn pools(&self) -> impl Iterator<Item = (&PoolKey, &PoolState)> {
        self.pools.iter()
    }

    /// Every transfer seen, in key order.
    pub fn transits(&self) -> impl Iterator<Item = (&TransferLeg, &TransitState)> {
        self.transits.iter()
    }

    /// `node`'s rights in `pool` as this replica sees them: its own share's,
    /// plus those of the nodes retired to it; 0 for a retired node.
    pub fn rights(&self, pool: &PoolKey, node: &NodeId) -> i64 {
        self.pools
            .get(pool)
            .map(|p| self.inheritance.rights(p, node))
            .unwrap_or(0)
    }

    /// The pool's uncovered deficit, a retired node's counted at its heir.
    pub fn deficit(&self, pool: &PoolKey) -> i64 {
        self.pools
            .get(pool)
            .map(|p| self.inheritance.deficit(p))
            .unwrap_or(0)
    }

    /// Every node's rights in `pool` (see [`StockBook::rights`]); retired nodes left out.
    pub fn rights_by_node(&self, pool: &PoolKey) -> BTreeMap<NodeId, i64> {
        self.pools
            .get(pool)
            .map(|p| self.inheritance.rights_by_node(p))
            .unwrap_or_default()
    }

    /// The inheritance in force.
    pub fn inheritance(&self) -> &Inheritance {
        &self.inheritance
    }

    /// Sets which retired node's rights count as which heir's (`direct`:
    /// retired → named heir; chains resolved by [`Inheritance::resolve`]).
    /// Returns the pools whose figures changed (where a node whose heir
    /// changed holds a share).
    pub fn set_inheritance(&mut self, direct: &BTreeMap<NodeId, NodeId>) -> Vec<PoolKey> {
        let next = Inheritance::resolve(direct);
        if next == self.inheritance {
            return Vec::new();
        }
        let moved: HashSet<NodeId> = self
            .inheritance
            .iter()
            .chain(next.iter())
            .filter(|(r, h)| self.inheritance.heir_of(r) != Some(h) || next.heir_of(r) != Some(h))
            .map(|(r, _)| *r)
            .collect();
        self.inheritance = next;
        self.pools
            .iter()
            .filter(|(_, p)| p.shares.keys().any(|n| moved.contains(n)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// True when some pool or transfer mentions `sku`.
    pub fn knows_sku(&self, sku: &Sku) -> bool {
        self.skus.contains(sku)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LocationId;

    fn pool() -> PoolKey {
        PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap())
    }

    #[test]
    fn rights_follow_the_formula() {
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        let mut book = StockBook::new();
        book.raise(a, &CounterKey::Minted(pool()), 10).unwrap();
        book.raise(a, &CounterKey::Granted(pool(), b), 4).unwrap();
        book.raise(b, &CounterKey::Consumed(pool()), 3).unwrap();
        book.raise(a, &CounterKey::Reserved(pool()), 2).unwrap();
        assert_eq!(book.rights(&pool(), &a), 10 - 4 - 2);
        assert_eq!(book.rights(&pool(), &b), 4 - 3);
        assert_eq!(book.pool(&pool()).unwrap().on_hand(), 7);
        // Stale or repeated values change nothing.
        assert_eq!(book.raise(a, &CounterKey::Minted(pool()), 5).unwrap(), 0);
        assert_eq!(book.raise(a, &CounterKey::Minted(pool()), 10).unwrap(), 0);
        assert_eq!(book.rights(&pool(), &a), 4);
    }

    #[test]
    fn overflow_is_an_error_and_changes_nothing() {
        let a = NodeId([1; 32]);
        let mut book = StockBook::new();
        book.raise(a, &CounterKey::Minted(pool()), 10).unwrap();
        assert!(matches!(
            book.raise(a, &CounterKey::Minted(pool()), i64::MAX),
            Err(EventError::Overflow)
        ));
        assert_eq!(book.counter(&a, &CounterKey::Minted(pool())), 10);
        assert!(book.raise(a, &CounterKey::Minted(pool()), -1).is_err());
    }
}
