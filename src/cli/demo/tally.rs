//! The demo's own truth: what every accepted event did to each pool and
//! transfer, kept apart from any replica, so replicas can be checked against it.

use std::collections::BTreeMap;

use stocksync::model::{EventKind, PoolKey, TransferId};

/// On hand per pool and units in transit per transfer, by the events accepted.
#[derive(Default)]
pub struct Tally {
    /// Units on hand per pool.
    pub on_hand: BTreeMap<PoolKey, i64>,
    /// Units shipped and not yet received, per transfer.
    pub transit: BTreeMap<TransferId, i64>,
    /// Units brought in (receipts, returns, count increases).
    pub brought_in: i64,
    /// Units gone out (sales, online orders, fulfilments, count decreases).
    pub gone_out: i64,
}

impl Tally {
    /// Records an accepted event of `qty` units of `kind` on `pool`.
    pub fn apply(&mut self, pool: &PoolKey, qty: i64, kind: &EventKind) {
        let here = self.on_hand.entry(pool.clone()).or_default();
        match kind {
            EventKind::Receipt | EventKind::Return => {
                *here += qty;
                self.brought_in += qty;
            }
            EventKind::Adjustment { increase: true, .. } => {
                *here += qty;
                self.brought_in += qty;
            }
            EventKind::Sale
            | EventKind::OnlineOrder
            | EventKind::Fulfil { .. }
            | EventKind::Adjustment {
                increase: false, ..
            } => {
                *here -= qty;
                self.gone_out += qty;
            }
            EventKind::TransferOut { transfer, .. } => {
                *here -= qty;
                *self.transit.entry(transfer.clone()).or_default() += qty;
            }
            EventKind::TransferIn { transfer, .. } => {
                *here += qty;
                *self.transit.entry(transfer.clone()).or_default() -= qty;
            }
            EventKind::Reserve { .. } | EventKind::Release { .. } | EventKind::Grant { .. } => {}
        }
    }

    /// Units in transit over every transfer.
    pub fn in_transit(&self) -> i64 {
        self.transit.values().sum()
    }
}
