//! Rights inheritance: a retired node's rights count as its heir's.
//!
//! Computed, never written: the replica derives the map from the roster it
//! holds (see docs/escrow.md, "Retiring a node") and the book applies it
//! whenever it computes a node's rights. Rights move, none is created: in every
//! pool the sum over nodes is the same with or without the map.

use std::collections::BTreeMap;

use super::book::PoolState;
use crate::model::NodeId;

/// Longest chain of heirs followed (a retired node's heir retired in turn...).
/// A longer chain, or a cycle, leaves the retired node its own rights.
pub const MAX_HEIR_DEPTH: usize = 16;

/// Retired nodes and the live heir their rights count as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inheritance {
    /// Retired node → the end of its chain of heirs.
    heir: BTreeMap<NodeId, NodeId>,
    /// Heir → the retired nodes whose rights it holds.
    estates: BTreeMap<NodeId, Vec<NodeId>>,
}

impl Inheritance {
    /// Resolves `direct` (retired node → named heir) to final heirs. A chain
    /// that loops or runs past [`MAX_HEIR_DEPTH`] is dropped whole: its retired
    /// node keeps its own rights, so the sum per pool stays the same.
    pub fn resolve(direct: &BTreeMap<NodeId, NodeId>) -> Self {
        let mut out = Self::default();
        for (retired, first) in direct {
            let mut at = *first;
            let mut depth = 1;
            let mut ok = at != *retired;
            while ok {
                match direct.get(&at) {
                    None => break,
                    Some(next) => {
                        depth += 1;
                        ok = *next != *retired && depth <= MAX_HEIR_DEPTH;
                        at = *next;
                    }
                }
            }
            if ok {
                out.heir.insert(*retired, at);
                out.estates.entry(at).or_default().push(*retired);
            }
        }
        out
    }

    /// The live heir of `node`, if its rights count as another's.
    pub fn heir_of(&self, node: &NodeId) -> Option<&NodeId> {
        self.heir.get(node)
    }

    /// The retired nodes whose rights count as `heir`'s.
    pub fn estate_of(&self, heir: &NodeId) -> &[NodeId] {
        self.estates.get(heir).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every retired node with its live heir.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &NodeId)> {
        self.heir.iter()
    }

    /// True when no rights move.
    pub fn is_empty(&self) -> bool {
        self.heir.is_empty()
    }

    /// `node`'s rights in `pool`: 0 when it is retired, else its own plus the
    /// rights of every node retired to it (a deficit counts too).
    pub fn rights(&self, pool: &PoolState, node: &NodeId) -> i64 {
        if self.heir.contains_key(node) {
            return 0;
        }
        self.estate_of(node)
            .iter()
            .map(|r| pool.share(r).rights())
            .fold(pool.share(node).rights(), i64::saturating_add)
    }

    /// Every node's rights in `pool` with inheritance applied (retired nodes
    /// left out; an heir with no share of its own included).
    pub fn rights_by_node(&self, pool: &PoolState) -> BTreeMap<NodeId, i64> {
        let mut out = BTreeMap::new();
        for n in pool.shares.keys() {
            let n = *self.heir.get(n).unwrap_or(n);
            out.entry(n).or_insert_with(|| self.rights(pool, &n));
        }
        out
    }

    /// The pool's uncovered deficit with inheritance applied: a retired node's
    /// deficit is its heir's to cover.
    pub fn deficit(&self, pool: &PoolState) -> i64 {
        self.rights_by_node(pool)
            .values()
            .map(|r| r.saturating_neg().max(0))
            .fold(0, i64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    #[test]
    fn chains_resolve_to_the_live_end_and_cycles_are_dropped() {
        let direct: BTreeMap<_, _> = [(n(1), n(2)), (n(2), n(3)), (n(4), n(5)), (n(5), n(4))]
            .into_iter()
            .collect();
        let inh = Inheritance::resolve(&direct);
        assert_eq!(inh.heir_of(&n(1)), Some(&n(3)));
        assert_eq!(inh.heir_of(&n(2)), Some(&n(3)));
        assert_eq!(inh.heir_of(&n(4)), None);
        assert_eq!(inh.heir_of(&n(5)), None);
        assert_eq!(inh.estate_of(&n(3)), &[n(1), n(2)]);
    }

    #[test]
    fn chains_past_the_depth_bound_are_dropped() {
        let direct: BTreeMap<_, _> = (0..=MAX_HEIR_DEPTH as u8)
            .map(|i| (n(i), n(i + 1)))
            .collect();
        let inh = Inheritance::resolve(&direct);
        assert_eq!(inh.heir_of(&n(0)), None);
        assert_eq!(inh.heir_of(&n(1)), Some(&n(MAX_HEIR_DEPTH as u8 + 1)));
    }

    mod props {
        use proptest::prelude::*;

        use super::n;
        use crate::escrow::{CounterKey, StockBook};
        use crate::model::{LocationId, PoolKey, Sku};
        use std::collections::BTreeMap;

        fn pool() -> PoolKey {
            PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap())
        }

        proptest! {
            /// Retiring moves rights and creates none: the pool's sum is the
            /// same, the retired node ends at 0, its heir gains exactly what it
            /// had (deficit included), and no other node changes.
            #[test]
            fn retiring_conserves_rights(
                minted in proptest::collection::vec(0i64..50, 4),
                consumed in proptest::collection::vec(0i64..60, 4),
                grants in proptest::collection::vec((0u8..4, 0u8..4, 0i64..20), 0..6),
                retired in 0u8..4,
                heir in 0u8..4,
            ) {
                prop_assume!(retired != heir);
                let mut book = StockBook::new();
                for i in 0..4u8 {
                    book.raise(n(i), &CounterKey::Minted(pool()), minted[i as usize]).unwrap();
                    book.raise(n(i), &CounterKey::Consumed(pool()), consumed[i as usize]).unwrap();
                }
                for (a, b, q) in grants {
                    if a != b {
                        book.raise(n(a), &CounterKey::Granted(pool(), n(b)), q).unwrap();
                    }
                }
                let before: Vec<i64> = (0..4).map(|i| book.rights(&pool(), &n(i))).collect();
                let sum = |b: &StockBook| -> i64 { b.rights_by_node(&pool()).values().sum() };
                let total = sum(&book);
                // A pool's figures move only where the retired node holds a
                // share (counters raised by 0 make none).
                let holds = book
                    .pools()
                    .any(|(k, p)| *k == pool() && p.shares.contains_key(&n(retired)));
                let direct: BTreeMap<_, _> = [(n(retired), n(heir))].into_iter().collect();
                let moved = book.set_inheritance(&direct);
                prop_assert_eq!(moved, if holds { vec![pool()] } else { Vec::new() });
                prop_assert_eq!(sum(&book), total);
                for i in 0..4u8 {
                    let now = book.rights(&pool(), &n(i));
                    let want = if i == retired {
                        0
                    } else if i == heir {
                        before[heir as usize] + before[retired as usize]
                    } else {
                        before[i as usize]
                    };
                    prop_assert_eq!(now, want, "node {}", i);
                }
                let deficit: i64 = (0..4u8)
                    .map(|i| book.rights(&pool(), &n(i)).saturating_neg().max(0))
                    .sum();
                prop_assert_eq!(book.deficit(&pool()), deficit);
            }
        }
    }
}
