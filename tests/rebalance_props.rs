//! Properties of the rebalance planner, checked from the outside: whatever the
//! holders, a plan conserves rights, never asks a holder for more than it holds
//! above its target, never over-fills a receiver, keeps channels' safety stock
//! away from them, serves floors first, and leaves unreachable holders alone.

use std::collections::BTreeMap;

use proptest::prelude::*;
use stocksync::model::NodeId;
use stocksync::rebalance::{plan, Holder, Strategy as Split};

fn holders() -> impl Strategy<Value = Vec<Holder>> {
    prop::collection::vec(
        (
            -5i64..60,
            0i64..15,
            0.0f64..50.0,
            prop::option::weighted(0.2, 0i64..40),
            prop::bool::weighted(0.85),
        ),
        1..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(
                |(i, (rights, floor, velocity, safety_stock, reachable))| Holder {
                    node: NodeId([i as u8; 32]),
                    rights,
                    floor,
                    velocity,
                    safety_stock,
                    reachable,
                },
            )
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_plan_moves_only_surplus_and_keeps_every_promise(h in holders(), even in any::<bool>()) {
        let strategy = if even { Split::Even } else { Split::Velocity };
        let p = plan(&h, strategy);
        let by_node: BTreeMap<NodeId, &Holder> = h.iter().map(|x| (x.node, x)).collect();
        let target: BTreeMap<NodeId, i64> = p.targets.iter().copied().collect();
        // Rights after the plan, for every holder.
        let mut after: BTreeMap<NodeId, i64> = h.iter().map(|x| (x.node, x.rights)).collect();
        for m in &p.moves {
            prop_assert!(m.qty > 0, "{m:?}");
            prop_assert!(m.from != m.to, "{m:?}");
            prop_assert!(by_node[&m.from].reachable && by_node[&m.to].reachable, "{m:?}");
            *after.get_mut(&m.from).unwrap() -= m.qty;
            *after.get_mut(&m.to).unwrap() += m.qty;
        }
        // Conserved.
        prop_assert_eq!(after.values().sum::<i64>(), h.iter().map(|x| x.rights).sum::<i64>());
        let pool: i64 = h.iter().filter(|x| x.reachable).map(|x| x.rights).sum::<i64>().max(0);
        for x in &h {
            let a = after[&x.node];
            if !x.reachable {
                prop_assert_eq!(a, x.rights);
                prop_assert!(!target.contains_key(&x.node));
                continue;
            }
            let t = target[&x.node];
            // A donor keeps at least its target; a receiver gets at most it.
            if a < x.rights {
                prop_assert!(a >= t, "{:?} gave below its target {t}: {a}", x.node);
            }
            if a > x.rights {
                prop_assert!(a <= t, "{:?} got past its target {t}: {a}", x.node);
            }
            // A channel never holds its safety stock's worth.
            if let Some(s) = x.safety_stock {
                prop_assert!(t <= (pool - s).max(0), "target {t}, pool {pool}, safety {s}");
            }
            prop_assert!(t >= 0);
        }
        // Targets split the pool (units only stay unassigned when every
        // reachable holder is a capped channel).
        let assigned: i64 = target.values().sum();
        prop_assert!(assigned <= pool);
        let uncapped = h.iter().any(|x| x.reachable && x.safety_stock.is_none());
        if uncapped {
            prop_assert_eq!(assigned, pool);
        }
        // Floors first: when the floors of the reachable holders fit the pool
        // and no channel is involved, each holder's target reaches its floor.
        let floors: i64 = h.iter().filter(|x| x.reachable).map(|x| x.floor).sum();
        if floors <= pool && h.iter().all(|x| x.safety_stock.is_none()) {
            for x in h.iter().filter(|x| x.reachable) {
                prop_assert!(target[&x.node] >= x.floor);
            }
        }
        // What is left is exactly what the moves could not cover.
        let left: i64 = h
            .iter()
            .filter(|x| x.reachable)
            .map(|x| (target[&x.node] - after[&x.node]).max(0))
            .sum();
        prop_assert_eq!(left, p.imbalance_left);
        // Deterministic.
        prop_assert_eq!(plan(&h, strategy), p);
    }
}
