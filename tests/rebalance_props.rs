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

#[derive(Debug, Clone)]
enum DonorOp {
    Ask(Vec<(u8, i64)>),
    Receive(u8, i64),
    Commit,
    Wait(i64),
}

fn donor_ops() -> impl Strategy<Value = Vec<DonorOp>> {
    let op = prop_oneof![
        prop::collection::vec((0u8..4, -2i64..12), 1..5).prop_map(DonorOp::Ask),
        (0u8..4, 1i64..10).prop_map(|(f, q)| DonorOp::Receive(f, q)),
        Just(DonorOp::Commit),
        (0i64..40_000).prop_map(DonorOp::Wait),
    ];
    prop::collection::vec(op, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_donor_never_promises_below_its_floor_nor_back_to_a_recent_giver(
        start in 0i64..40,
        ops in donor_ops(),
    ) {
        use stocksync::rebalance::{Donor, PullLevels, PullRequest, Shortfall};
        let levels = PullLevels { low_water: 3, refill_to: 10, floor: 5, cool_down_ms: 30_000 };
        let mut d = Donor { rights: start, ..Donor::default() };
        let mut now = 0i64;
        let mut last_from: BTreeMap<u8, i64> = BTreeMap::new();
        let mut last_any: Option<i64> = None;
        for op in ops {
            match op {
                DonorOp::Ask(asks) => {
                    let reqs: Vec<PullRequest> = asks
                        .iter()
                        .map(|(f, q)| PullRequest { from: NodeId([*f; 32]), qty: *q })
                        .collect();
                    let before = d.rights - d.promised;
                    let answers = d.answer(&reqs, &levels, now);
                    let given: i64 = answers.iter().map(|a| a.granted).sum();
                    prop_assert_eq!(answers.len(), reqs.len());
                    for (a, (f, q)) in answers.iter().zip(&asks) {
                        prop_assert!(a.granted >= 0 && a.granted <= (*q).max(0));
                        if a.granted < (*q).max(0) || *q <= 0 {
                            prop_assert!(a.shortfall.is_some(), "{a:?}");
                        }
                        let recent = |at: &i64| now < at + levels.cool_down_ms;
                        if *q > 0 && last_from.get(f).is_some_and(recent) {
                            prop_assert_eq!(a.shortfall, Some(Shortfall::WouldBounce));
                        }
                        if a.granted > 0 {
                            prop_assert!(!last_from.get(f).is_some_and(recent), "gave back to a recent giver");
                            prop_assert!(!last_any.as_ref().is_some_and(recent), "gave while cooling down");
                        }
                    }
                    if given > 0 {
                        prop_assert!(d.rights - d.promised >= levels.floor, "{d:?}");
                        prop_assert!(given <= (before - levels.floor).max(0));
                    }
                }
                DonorOp::Receive(f, q) => {
                    d.received(NodeId([f; 32]), q, now);
                    last_from.insert(f, now);
                    last_any = Some(now);
                }
                DonorOp::Commit => {
                    let p = d.promised;
                    d.granted(p);
                    prop_assert_eq!(d.promised, 0);
                }
                DonorOp::Wait(ms) => now += ms,
            }
        }
    }
}
