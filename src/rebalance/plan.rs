//! A rebalance plan for one pool: the target split of its rights among the
//! holders at that location, and the grants that reach it.
//!
//! Pure and deterministic. Each move is a grant a holder makes of its own
//! rights, so a plan never creates or destroys rights: the total is conserved,
//! and no holder is asked to give more than it holds above its own target.

use serde::Serialize;

use crate::model::NodeId;

/// How the rights of a pool are split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// In proportion to recent sales velocity (holders with none get their floor).
    Velocity,
    /// Equally.
    Even,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "velocity" => Ok(Strategy::Velocity),
            "even" => Ok(Strategy::Even),
            other => Err(format!("unknown strategy {other:?} (velocity or even)")),
        }
    }
}

/// One holder of rights in the pool, as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Holder {
    /// The node.
    pub node: NodeId,
    /// Its rights now (negative: a deficit it recorded).
    pub rights: i64,
    /// The least it should keep or be brought to, when the pool allows.
    pub floor: i64,
    /// Recent sales per hour (see [`super::Velocity`]).
    pub velocity: f64,
    /// For an online channel: units of the pool never allocated to it.
    pub safety_stock: Option<i64>,
    /// False when the holder cannot be reached now: it neither gives nor
    /// receives, and its rights stay out of the split.
    pub reachable: bool,
}

/// One grant of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Move {
    /// The holder that grants (its own rights).
    pub from: NodeId,
    /// The holder that receives.
    pub to: NodeId,
    /// Units.
    pub qty: i64,
}

/// The plan for one pool.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// Each reachable holder's target, in the holders' order.
    pub targets: Vec<(NodeId, i64)>,
    /// The grants, donors in the holders' order.
    pub moves: Vec<Move>,
    /// Units still away from the targets after the moves (0 when every
    /// holder is reachable and no deficit is in the way).
    pub imbalance_left: i64,
}

/// Splits `total` units by `weights` (largest remainder; ties to the earlier).
pub(super) fn apportion(total: i64, weights: &[f64]) -> Vec<i64> {
    let sum: f64 = weights.iter().sum();
    if total <= 0 || weights.is_empty() {
        return vec![0; weights.len()];
    }
    if sum <= 0.0 || !sum.is_finite() {
        return apportion(total, &vec![1.0; weights.len()]);
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut out: Vec<i64> = exact.iter().map(|e| e.floor() as i64).collect();
    let mut left = total - out.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.partial_cmp(&ra)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    for i in order.into_iter().cycle() {
        if left <= 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

/// The plan for `holders` under `strategy`.
///
/// Targets: the reachable holders' rights, net of their deficits, are the
/// pool to split (so a holder in deficit is brought back up first).
/// Floors come first (in the holders' order while the pool lasts); the rest
/// goes by velocity or evenly; a channel's target is capped at the pool less
/// its safety stock, the excess going to the others. Moves then take from
/// holders above their target and give to those below, never more than a
/// donor holds above its target.
pub fn plan(holders: &[Holder], strategy: Strategy) -> Plan {
    let live: Vec<&Holder> = holders.iter().filter(|h| h.reachable).collect();
    // The pool: what the reachable holders hold net of their deficits (a
    // deficit is units already sold beyond rights: covering it comes first).
    let total: i64 = live.iter().map(|h| h.rights).sum::<i64>().max(0);
    let mut targets = vec![0i64; live.len()];
    // Floors, in order, while the pool lasts.
    let mut left = total;
    for (t, h) in targets.iter_mut().zip(&live) {
        let f = h.floor.max(0).min(left);
        *t = f;
        left -= f;
    }
    // Caps: a channel never gets its safety stock.
    let cap = |h: &Holder| h.safety_stock.map(|s| (total - s.max(0)).max(0));
    for (t, h) in targets.iter_mut().zip(&live) {
        if let Some(c) = cap(h) {
            if *t > c {
                left += *t - c;
                *t = c;
            }
        }
    }
    // The rest, by weight, over holders not yet at their cap; repeat while a
    // cap sends units back.
    for _ in 0..live.len() + 1 {
        if left <= 0 {
            break;
        }
        let open: Vec<usize> = (0..live.len())
            .filter(|&i| cap(live[i]).is_none_or(|c| targets[i] < c))
            .collect();
        if open.is_empty() {
            break;
        }
        let weights: Vec<f64> = open
            .iter()
            .map(|&i| match strategy {
                Strategy::Even => 1.0,
                Strategy::Velocity => live[i].velocity.max(0.0),
            })
            .collect();
        let share = apportion(left, &weights);
        left = 0;
        for (&i, s) in open.iter().zip(share) {
            targets[i] += s;
            if let Some(c) = cap(live[i]) {
                if targets[i] > c {
                    left += targets[i] - c;
                    targets[i] = c;
                }
            }
        }
    }
    // Units no one may take (every holder capped) stay where they are: the
    // donors keep them.
    let mut surplus: Vec<(usize, i64)> = (0..live.len())
        .map(|i| (i, live[i].rights - targets[i]))
        .filter(|(_, s)| *s > 0)
        .collect();
    let mut need: Vec<(usize, i64)> = (0..live.len())
        .map(|i| (i, targets[i] - live[i].rights))
        .filter(|(_, n)| *n > 0)
        .collect();
    let mut moves = Vec::new();
    let (mut d, mut r) = (0, 0);
    while d < surplus.len() && r < need.len() {
        let qty = surplus[d].1.min(need[r].1);
        moves.push(Move {
            from: live[surplus[d].0].node,
            to: live[need[r].0].node,
            qty,
        });
        surplus[d].1 -= qty;
        need[r].1 -= qty;
        if surplus[d].1 == 0 {
            d += 1;
        }
        if need[r].1 == 0 {
            r += 1;
        }
    }
    let imbalance_left = need.iter().map(|(_, n)| n).sum();
    Plan {
        targets: live.iter().map(|h| h.node).zip(targets).collect(),
        moves,
        imbalance_left,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(n: u8, rights: i64, velocity: f64) -> Holder {
        Holder {
            node: NodeId([n; 32]),
            rights,
            floor: 0,
            velocity,
            safety_stock: None,
            reachable: true,
        }
    }

    #[test]
    fn velocity_moves_rights_to_where_the_sales_are() {
        // 30 units, all at the store node; till 2 sells twice as fast as till 1.
        let h = [holder(0, 30, 0.0), holder(1, 0, 5.0), holder(2, 0, 10.0)];
        let p = plan(&h, Strategy::Velocity);
        assert_eq!(
            p.targets.iter().map(|t| t.1).collect::<Vec<_>>(),
            [0, 10, 20]
        );
        assert_eq!(p.moves.len(), 2);
        assert_eq!(p.moves.iter().map(|m| m.qty).sum::<i64>(), 30);
        assert_eq!(p.imbalance_left, 0);
    }

    #[test]
    fn floors_first_and_a_channel_never_gets_its_safety_stock() {
        let mut store = holder(0, 20, 0.0);
        store.floor = 5;
        let mut web = holder(1, 0, 100.0);
        web.safety_stock = Some(8);
        let p = plan(&[store, web], Strategy::Velocity);
        // The web channel may hold at most 20 − 8 = 12; the store keeps the rest.
        assert_eq!(p.targets.iter().map(|t| t.1).collect::<Vec<_>>(), [8, 12]);
    }

    #[test]
    fn the_worked_example_of_docs_rebalancing() {
        let mut store = holder(0, 34, 0.0);
        store.floor = 4;
        let mut t1 = holder(1, 5, 10.0);
        t1.floor = 2;
        let mut t2 = holder(2, -1, 30.0);
        t2.floor = 2;
        let mut web = holder(3, 2, 20.0);
        web.safety_stock = Some(8);
        let p = plan(&[store, t1, t2, web], Strategy::Velocity);
        assert_eq!(
            p.targets.iter().map(|t| t.1).collect::<Vec<_>>(),
            [4, 7, 18, 11]
        );
        let moves: Vec<(u8, u8, i64)> = p
            .moves
            .iter()
            .map(|m| (m.from.0[0], m.to.0[0], m.qty))
            .collect();
        assert_eq!(moves, [(0, 1, 2), (0, 2, 19), (0, 3, 9)]);
        assert_eq!(p.imbalance_left, 0);
    }

    #[test]
    fn an_unreachable_holder_neither_gives_nor_receives() {
        let mut away = holder(2, 50, 1.0);
        away.reachable = false;
        let p = plan(
            &[holder(0, 10, 1.0), holder(1, 0, 1.0), away],
            Strategy::Even,
        );
        assert_eq!(p.targets.len(), 2);
        assert!(p
            .moves
            .iter()
            .all(|m| m.from != NodeId([2; 32]) && m.to != NodeId([2; 32])));
        assert_eq!(
            p.moves,
            [Move {
                from: NodeId([0; 32]),
                to: NodeId([1; 32]),
                qty: 5
            }]
        );
    }
}
